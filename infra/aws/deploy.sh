#!/usr/bin/env bash
# Deploys Herald's CloudFormation stacks in dependency order (network, tables, nats, ecs, functions, gateway), wiring each stack's outputs into the next.
#
# Usage: infra/aws/deploy.sh plan|apply|destroy [--yes] PARAMETERS_JSON
#   plan     creates a change set for each stack, in order, prints what it would change and
#            deletes it again: nothing is executed. A stack that does not exist yet is shown
#            as created; the stacks after it need its outputs, so the plan stops there.
#   apply    deploys every stack in order (each `aws cloudformation deploy` is a change set,
#            and a stack without changes is left alone). Run it again for every change.
#            The first apply also makes the deployment's NATS CA (infra/nats/make-ca.sh): its
#            key goes to Secrets Manager, its certificate to Parameter Store.
#   destroy  deletes the stacks in reverse order after asking (--yes: without asking). The
#            tables and the NATS volumes outlive it (retained, snapshotted); so do the CA and
#            the secrets made outside the stacks, which it lists.
#   nats-config   prints the NATS server configuration as shipped to the nodes (gzip+base64;
#            needs no AWS access; infra/nats/check-cluster runs it).
# The parameters file has the shape of parameters.example.json. Needs the AWS CLI v2,
# python3 and openssl, and credentials for the target account.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
usage="usage: infra/aws/deploy.sh plan|apply|destroy [--yes] PARAMETERS_JSON"
die() { echo "deploy.sh: $*" >&2; exit 1; }

# infra/nats/cluster.conf with its `include "permissions.conf"` replaced by that file's text
# (what nats-server does), comment lines dropped to fit a parameter, gzipped, base64.
nats_config() {
  python3 -c '
import sys
conf, perms = open(sys.argv[1]).read(), open(sys.argv[2]).read()
if "include \"permissions.conf\"" not in conf:
    sys.exit("deploy.sh: cluster.conf no longer includes permissions.conf")
sys.stdout.write(conf.replace("include \"permissions.conf\"", perms))' \
    "$root/infra/nats/cluster.conf" "$root/infra/nats/permissions.conf" \
    | grep -v '^[[:space:]]*#' | grep -v '^[[:space:]]*$' | gzip -9n | base64 | tr -d '\n'
}

command=${1:-}
shift || true
yes=0
params=
for arg in "$@"; do
  case $arg in
    --yes | -y) yes=1 ;;
    -*) die "unknown option $arg ($usage)" ;;
    *) [ -z "$params" ] || die "one parameters file only ($usage)"; params=$arg ;;
  esac
done
case $command in
  nats-config)
    nats_config
    echo
    exit 0
    ;;
  plan | apply | destroy) ;;
  "" | -h | --help) echo "$usage" >&2; exit 2 ;;
  *)
    # The old form, `deploy.sh PARAMETERS_JSON`, still applies.
    if [ -f "$command" ] && [ -z "$params" ]; then
      echo "deploy.sh: no command given; applying (say 'apply' explicitly, or 'plan' to look first)" >&2
      params=$command
      command=apply
    else
      die "unknown command '$command' ($usage)"
    fi
    ;;
esac
[ -n "$params" ] || die "$usage"
[ -f "$params" ] || die "no such file: $params"
# The parameters file, read once (each python3 start costs): top-level values as
# setting_<key>, each section as the array section_<name> of Key=Value lines (keys starting
# with "_" are comments), and section_<name>__<Key> for single values.
read -r -d '' read_params_py <<'PY' || true
import json, re, shlex, sys
try:
    d = json.load(open(sys.argv[1]))
except ValueError as e:
    sys.exit(f"deploy.sh: {sys.argv[1]} is not JSON: {e} (see infra/aws/parameters.example.json)")
if not isinstance(d, dict):
    sys.exit(f"deploy.sh: {sys.argv[1]} is not a JSON object (see infra/aws/parameters.example.json)")
def name(k, pattern):
    if not re.fullmatch(pattern, k):
        sys.exit(f"deploy.sh: {sys.argv[1]}: {k!r} is not a setting or parameter name")
    return k
for key, value in d.items():
    if key.startswith("_"):
        continue
    name(key, r"[a-z][a-z0-9_]*")
    if isinstance(value, dict):
        pairs = [(name(k, r"[A-Za-z][A-Za-z0-9]*"), "" if v is None else str(v))
                 for k, v in value.items() if not k.startswith("_")]
        print(f"section_{key}=(" + " ".join(shlex.quote(f"{k}={v}") for k, v in pairs) + ")")
        for k, v in pairs:
            print(f"section_{key}__{k}={shlex.quote(v)}")
    elif value is not None:
        print(f"setting_{key}={shlex.quote(str(value))}")
PY
parsed=$(python3 -c "$read_params_py" "$params") || exit 1
eval "$parsed"

# A top-level value of the parameters file ("" when absent or null).
setting() { local v="setting_$1"; echo "${!v:-}"; }
# The Key=Value overrides of one section.
section() {
  local v="section_$1[@]" pair
  for pair in ${!v+"${!v}"}; do printf '%s\n' "$pair"; done
}
# One value of one section ("" when absent).
section_value() { local v="section_$1__$2"; echo "${!v:-}"; }

env_name=$(setting environment)
region=$(setting region)
if [ -z "$env_name" ] || [ -z "$region" ]; then
  die "'environment' and 'region' are required in $params"
fi
[[ $env_name =~ ^[a-z0-9][a-z0-9-]{0,30}$ ]] || die "environment '$env_name': lower-case letters, digits and '-' (it names stacks and secrets)"
prefix="herald-$env_name"
existing_vpc=$(section_value existing_network VpcId)
mode=$(section_value functions DeliveryMode)
mode=${mode:-lambda}
case $mode in lambda | runner) ;; *) die "functions.DeliveryMode must be lambda or runner, not '$mode'" ;; esac
if [ "$mode" = lambda ] && [ "$command" != destroy ]; then
  [ -n "$(setting artifacts_bucket)" ] || die "lambda mode needs 'artifacts_bucket'"
fi

for tool in aws python3 gzip base64 sha256sum openssl; do
  command -v "$tool" >/dev/null || die "$tool is required"
done

stack_status() { # stack -> its status, or "" when it does not exist
  aws cloudformation describe-stacks --region "$region" --stack-name "$prefix-$1" \
    --query 'Stacks[0].StackStatus' --output text 2>/dev/null || true
}

# ---------------------------------------------------------------------------------- destroy
if [ "$command" = destroy ]; then
  stacks=(gateway functions ecs nats tables)
  [ -n "$existing_vpc" ] || stacks+=(network)
  present=()
  for s in "${stacks[@]}"; do
    [ -z "$(stack_status "$s")" ] || present+=("$s")
  done
  if [ "${#present[@]}" -eq 0 ]; then
    echo "deploy.sh: no stack of $prefix exists in $region; nothing to delete" >&2
    exit 0
  fi
  echo "deploy.sh: will delete, in this order: ${present[*]/#/$prefix-}" >&2
  echo "  Kept: the DynamoDB tables (retained, deletion-protected) and a snapshot of each NATS volume." >&2
  if [ "$yes" != 1 ]; then
    [ -t 0 ] || die "not a terminal: pass --yes to delete without asking"
    read -r -p "Type the environment name ($env_name) to delete its stacks: " answer
    [ "$answer" = "$env_name" ] || die "not confirmed; nothing deleted"
  fi
  for s in "${present[@]}"; do
    echo "deploy.sh: deleting $prefix-$s" >&2
    aws cloudformation delete-stack --region "$region" --stack-name "$prefix-$s"
    aws cloudformation wait stack-delete-complete --region "$region" --stack-name "$prefix-$s"
  done
  echo "deploy.sh: deleted. Left outside the stacks (delete them by hand if the environment is gone for good):" >&2
  echo "  secret herald/$env_name/nats-ca-key and parameter /herald/$env_name/nats-ca-cert (unless the file named others)," >&2
  echo "  the JWT secrets named in the gateway section, the tables ${prefix}'s TablePrefix names, the volume snapshots." >&2
  exit 0
fi

# ------------------------------------------------------------------------------ plan, apply
output() { # stack key
  aws cloudformation describe-stacks --region "$region" --stack-name "$prefix-$1" \
    --query "Stacks[0].Outputs[?OutputKey=='$2'].OutputValue | [0]" --output text
}
stack_parameter() { # stack key -> the value the deployed stack has, or ""
  aws cloudformation describe-stacks --region "$region" --stack-name "$prefix-$1" \
    --query "Stacks[0].Parameters[?ParameterKey=='$2'].ParameterValue | [0]" --output text 2>/dev/null \
    | sed 's/^None$//' || true
}

# A change set, readable: one line per resource it adds, modifies or removes.
read -r -d '' show_change_set_py <<'PY' || true
import json, sys
cs = json.load(sys.stdin)
changes = cs.get("Changes") or []
reason = f" - {cs['StatusReason']}" if cs.get("StatusReason") else ""
print(f"  {cs.get('StackName')}: {len(changes)} change(s){reason}")
for c in changes:
    r = c.get("ResourceChange", {})
    replace = {"True": "  REPLACES the resource", "Conditional": "  may replace the resource"}.get(r.get("Replacement", ""), "")
    scope = ",".join(r.get("Scope") or [])
    names = sorted({d["Target"].get("Name") or d["Target"].get("Attribute") or "" for d in r.get("Details") or []} - {""})
    what = f" ({scope}: {', '.join(names)})" if names else (f" ({scope})" if scope else "")
    line = f"    {r.get('Action', '?'):<7} {r.get('LogicalResourceId', '?'):<34} {r.get('ResourceType', ''):<42}{what}{replace}"
    print(line.rstrip())
PY
show_change_set() { # arn
  aws cloudformation describe-change-set --region "$region" --change-set-name "$1" --output json \
    | python3 -c "$show_change_set_py"
}

planning_stopped=0
deploy() { # stack template [Key=Value ...]: the file's section for the stack first, wiring after (wins)
  local name=$1 template=$2
  shift 2
  local -a overrides
  mapfile -t overrides < <(section "$name")
  overrides+=("$@")
  local -a args=(--region "$region" --stack-name "$prefix-$name" --template-file "$here/$template.yaml"
    --capabilities CAPABILITY_IAM --no-fail-on-empty-changeset
    --tags "app=herald" "environment=$env_name")
  [ "${#overrides[@]}" -gt 0 ] && args+=(--parameter-overrides "${overrides[@]}")
  if [ "$command" = apply ]; then
    echo "deploy.sh: $prefix-$name ($template.yaml)" >&2
    aws cloudformation deploy "${args[@]}"
    return
  fi
  # plan: the same command as apply, stopped before the change set is executed.
  local before out arn
  before=$(stack_status "$name")
  if [ -n "$before" ]; then
    echo "deploy.sh: plan $prefix-$name ($template.yaml), now $before" >&2
  else
    echo "deploy.sh: plan $prefix-$name ($template.yaml): does not exist yet, would be created" >&2
  fi
  out=$(aws cloudformation deploy "${args[@]}" --no-execute-changeset 2>&1) || {
    echo "$out" >&2
    die "the change set of $prefix-$name could not be created"
  }
  arn=$(grep -o 'arn:aws[a-z-]*:cloudformation:[^ ]*:changeSet/[^ ]*' <<<"$out" | head -1 || true)
  if [ -z "$arn" ]; then
    echo "  $prefix-$name: no changes"
    return
  fi
  show_change_set "$arn"
  if [ -z "$before" ]; then
    # The stack the change set made (REVIEW_IN_PROGRESS, no resources) goes again.
    aws cloudformation delete-stack --region "$region" --stack-name "$prefix-$name"
    echo "deploy.sh: $prefix-$name does not exist yet, and the stacks after it need its outputs: plan stops here (apply, then plan again)" >&2
    planning_stopped=1
  else
    aws cloudformation delete-change-set --region "$region" --change-set-name "$arn"
  fi
}

# The deployment's NATS CA: the key in Secrets Manager (only the NATS nodes read it), the
# certificate in Parameter Store (every client trusts it). Given in the file's nats section
# (NatsCaKeySecretArn, NatsCaCertParameterName), or made here on the first apply.
ensure_nats_ca() {
  ca_key_arn=$(section_value nats NatsCaKeySecretArn)
  ca_cert_param=$(section_value nats NatsCaCertParameterName)
  if [ -n "$ca_key_arn" ] || [ -n "$ca_cert_param" ]; then
    if [ -z "$ca_key_arn" ] || [ -z "$ca_cert_param" ]; then
      die "nats: give both NatsCaKeySecretArn and NatsCaCertParameterName, or neither"
    fi
    return
  fi
  local key_name="herald/$env_name/nats-ca-key"
  ca_cert_param="/herald/$env_name/nats-ca-cert"
  ca_key_arn=$(aws secretsmanager describe-secret --region "$region" --secret-id "$key_name" --query ARN --output text 2>/dev/null || true)
  local has_cert=1
  aws ssm get-parameter --region "$region" --name "$ca_cert_param" --query Parameter.Name --output text >/dev/null 2>&1 || has_cert=0
  if [ -n "$ca_key_arn" ] && [ "$has_cert" = 1 ]; then
    return
  fi
  if [ -n "$ca_key_arn" ] || [ "$has_cert" = 1 ]; then
    die "half a NATS CA: secret $key_name and parameter $ca_cert_param must both exist (or neither); fix by hand"
  fi
  if [ "$command" = plan ]; then
    local account
    account=$(aws sts get-caller-identity --query Account --output text)
    ca_key_arn="arn:aws:secretsmanager:$region:$account:secret:$key_name"
    echo "deploy.sh: apply will make the NATS CA (secret $key_name, parameter $ca_cert_param)" >&2
    return
  fi
  echo "deploy.sh: making the NATS CA of $env_name (secret $key_name, parameter $ca_cert_param)" >&2
  local work
  work=$(mktemp -d)
  # shellcheck disable=SC2064 # expand now: $work is local
  trap "rm -rf '$work'" EXIT
  "$root/infra/nats/make-ca.sh" "$work" "Herald NATS CA ($env_name)"
  # From files, never the command line (which other users of the machine can see).
  ca_key_arn=$(aws secretsmanager create-secret --region "$region" --name "$key_name" \
    --description "Herald $env_name: private key of the NATS CA (read by the NATS nodes only)" \
    --secret-string "file://$work/ca-key.pem" --tags Key=app,Value=herald --query ARN --output text)
  aws ssm put-parameter --region "$region" --name "$ca_cert_param" --type String \
    --description "Herald $env_name: certificate of the NATS CA (trusted by every NATS client)" \
    --value "file://$work/ca.pem" --tags Key=app,Value=herald >/dev/null
  rm -rf "$work"
  trap - EXIT
}

# 1. Network: ours, or an existing VPC described in "existing_network".
if [ -n "$existing_vpc" ]; then
  vpc_id=$existing_vpc
  vpc_cidr=$(section_value existing_network VpcCidr)
  public_subnets=$(section_value existing_network PublicSubnetIds)
  private_subnets=$(section_value existing_network PrivateSubnetIds)
  azs=$(section_value existing_network AvailabilityZones)
else
  deploy network network
  [ "$planning_stopped" = 0 ] || exit 0
  vpc_id=$(output network VpcId)
  vpc_cidr=$(output network VpcCidr)
  public_subnets=$(output network PublicSubnetIds)
  private_subnets=$(output network PrivateSubnetIds)
  azs=$(output network AvailabilityZones)
fi

# 2. Tables.
deploy tables tables
[ "$planning_stopped" = 0 ] || exit 0
table_prefix=$(output tables TablePrefix)

# 3. NATS. The config is infra/nats/cluster.conf itself (nats_config above), and the script
# that issues each node's certificate rides along the same way. The AMI is pinned: the one
# given, else the one the stack already runs, else today's Amazon Linux 2023 for the
# instance type's architecture (a new AMI replaces every node, one at a time, so it should
# be a decision, not a side effect of a deploy).
nats_conf=$(nats_config)
cert_script=$(gzip -9n <"$root/infra/nats/node-cert.sh" | base64 | tr -d '\n')
ensure_nats_ca
image_id=$(section_value nats ImageId)
[ -n "$image_id" ] || image_id=$(stack_parameter nats ImageId)
if [ -z "$image_id" ]; then
  instance_type=$(section_value nats InstanceType)
  arch=$(aws ec2 describe-instance-types --region "$region" --instance-types "${instance_type:-m7g.large}" \
    --query 'InstanceTypes[0].ProcessorInfo.SupportedArchitectures[0]' --output text)
  image_id=$(aws ssm get-parameter --region "$region" \
    --name "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-$arch" --query Parameter.Value --output text)
fi
deploy nats nats \
  "VpcId=$vpc_id" "PrivateSubnetIds=$private_subnets" "AvailabilityZones=$azs" \
  "ImageId=$image_id" "NatsConfigGzB64=$nats_conf" "NatsCertScriptGzB64=$cert_script" \
  "NatsCaKeySecretArn=$ca_key_arn" "NatsCaCertParameterName=$ca_cert_param"
[ "$planning_stopped" = 0 ] || exit 0
nats_clients=$(output nats NatsClientSecurityGroupId)
functions_url=$(output nats FunctionsNatsUrlSecretArn)
gateway_url=$(output nats GatewayNatsUrlSecretArn)
creator_url=$(output nats CreatorNatsUrlSecretArn)
admin_url=$(output nats AdminNatsUrlSecretArn)
if [ "$command" = plan ] && { [ -z "$gateway_url" ] || [ "$gateway_url" = None ]; }; then
  echo "deploy.sh: $prefix-nats does not have its NATS user secrets yet (apply adds them): plan stops here" >&2
  exit 0
fi

# 4. ECS cluster.
deploy ecs ecs
[ "$planning_stopped" = 0 ] || exit 0
cluster=$(output ecs ClusterName)

# 5. Functions. In lambda mode the zip built by scripts/build-lambda goes to S3 under its
# content hash: a new build is a new key, so CloudFormation updates the function.
lambda_args=()
if [ "$mode" = lambda ]; then
  bucket=$(setting artifacts_bucket)
  zip="$root/target/lambda/deliver/bootstrap.zip"
  [ -f "$zip" ] || die "$zip is missing; run scripts/build-lambda first"
  key="herald/deliver/$(sha256sum "$zip" | cut -c1-64).zip"
  if ! aws s3api head-object --region "$region" --bucket "$bucket" --key "$key" >/dev/null 2>&1; then
    if [ "$command" = plan ]; then
      echo "deploy.sh: apply will upload $zip to s3://$bucket/$key" >&2
    else
      aws s3 cp --region "$region" "$zip" "s3://$bucket/$key"
    fi
  fi
  lambda_args=("LambdaCodeBucket=$bucket" "LambdaCodeKey=$key")
fi
deploy functions functions \
  "VpcId=$vpc_id" "VpcCidr=$vpc_cidr" "PrivateSubnetIds=$private_subnets" \
  "FunctionsNatsUrlSecretArn=$functions_url" "NatsCaCertParameterName=$ca_cert_param" \
  "NatsClientSecurityGroupId=$nats_clients" \
  "EcsClusterName=$cluster" "TablePrefix=$table_prefix" "${lambda_args[@]}"
[ "$planning_stopped" = 0 ] || exit 0

# 6. Gateway.
deploy gateway gateway \
  "VpcId=$vpc_id" "VpcCidr=$vpc_cidr" "PublicSubnetIds=$public_subnets" "PrivateSubnetIds=$private_subnets" \
  "GatewayNatsUrlSecretArn=$gateway_url" "CreatorNatsUrlSecretArn=$creator_url" "AdminNatsUrlSecretArn=$admin_url" \
  "NatsCaCertParameterName=$ca_cert_param" "NatsClientSecurityGroupId=$nats_clients" \
  "EcsClusterName=$cluster" "TablePrefix=$table_prefix"

if [ "$command" = plan ]; then
  echo "deploy.sh: plan done; nothing was changed. Stacks after a changed one were planned with the outputs they have now." >&2
else
  echo "deploy.sh: done. WebSocket endpoint: $(output gateway WebSocketUrl)" >&2
fi
