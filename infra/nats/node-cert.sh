#!/usr/bin/env bash
# Issues one NATS node's certificate from the deployment's CA, at boot on the node itself
# (infra/aws/nats.yaml), because only the node knows the stable address it serves on. The
# certificate names the cluster's DNS name (what clients dial) and the node's IP (what peers'
# routes and reconnecting clients dial, from the server's advertisements); it serves both as
# server and as client certificate (routes are mutual TLS). The key never leaves the node.
#
# Usage: node-cert.sh CA_CERT CA_KEY OUT_DIR DNS_NAME IP [DAYS]
#   writes OUT_DIR/server.pem (certificate), OUT_DIR/server-key.pem, OUT_DIR/ca.pem
set -euo pipefail
usage="usage: node-cert.sh CA_CERT CA_KEY OUT_DIR DNS_NAME IP [DAYS]"
ca_cert=${1:?$usage} ca_key=${2:?$usage} out=${3:?$usage} name=${4:?$usage} ip=${5:?$usage}
days=${6:-825}
umask 077
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$out/server-key.pem" 2>/dev/null
openssl req -new -key "$out/server-key.pem" -subj "/CN=$name" -out "$work/node.csr"
cat > "$work/ext" <<EXT
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth,clientAuth
subjectAltName=DNS:$name,IP:$ip
authorityKeyIdentifier=keyid
subjectKeyIdentifier=hash
EXT
openssl x509 -req -in "$work/node.csr" -CA "$ca_cert" -CAkey "$ca_key" -set_serial "0x$(openssl rand -hex 16)" \
  -sha256 -days "$days" -extfile "$work/ext" -out "$out/server.pem" 2>/dev/null
cp "$ca_cert" "$out/ca.pem"
chmod 644 "$out/server.pem" "$out/ca.pem"
openssl verify -CAfile "$out/ca.pem" "$out/server.pem" >/dev/null
