#!/usr/bin/env bash
# Makes the certificate authority of one Herald NATS deployment: a P-256 key and a self-signed
# CA certificate (10 years). deploy.sh runs it once per environment and keeps the key in
# Secrets Manager and the certificate in Parameter Store; the nodes sign their own
# certificates with it at boot (node-cert.sh), and clients trust it alone for NATS.
#
# Usage: infra/nats/make-ca.sh OUT_DIR NAME   (writes OUT_DIR/ca.pem and OUT_DIR/ca-key.pem)
set -euo pipefail
out=${1:?usage: make-ca.sh OUT_DIR NAME}
name=${2:?usage: make-ca.sh OUT_DIR NAME}
umask 077
mkdir -p "$out"
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$out/ca-key.pem"
# pathlen:0: the CA signs node certificates only, never another CA.
openssl req -x509 -new -key "$out/ca-key.pem" -sha256 -days 3650 -subj "/CN=$name" \
  -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
  -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -addext "subjectKeyIdentifier=hash" \
  -out "$out/ca.pem"
chmod 644 "$out/ca.pem"
