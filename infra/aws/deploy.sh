#!/usr/bin/env bash
# Deploys Herald's CloudFormation stacks in dependency order (network, tables, nats, ecs, functions, gateway), wiring each stack's outputs into the next.
#
# Usage: infra/aws/deploy.sh infra/aws/parameters.json
# The parameters file has the shape of parameters.example.json. Needs the AWS CLI v2 and
# python3, and credentials for the target account. Run it again for every change: each
# `aws cloudformation deploy` is a change set, and a stack without changes is left alone.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
params=${1:?usage: infra/aws/deploy.sh PARAMETERS_JSON}
[ -f "$params" ] || { echo "deploy.sh: no such file: $params" >&2; exit 1; }
for tool in aws python3 gzip base64 sha256sum; do
  command -v "$tool" >/dev/null || { echo "deploy.sh: $tool is required" >&2; exit 1; }
done

# A top-level value of the parameters file ("" when absent or null).
setting() {
  python3 -c 'import json,sys; v=json.load(open(sys.argv[1])).get(sys.argv[2]); print("" if v is None else v)' "$params" "$1"
}
# The Key=Value overrides of one section; keys starting with "_" are comments.
section() {
  python3 -c '
import json, sys
s = json.load(open(sys.argv[1])).get(sys.argv[2]) or {}
for k, v in s.items():
    if not k.startswith("_"):
        print(f"{k}={v}")' "$params" "$1"
}
# One value of one section ("" when absent).
section_value() {
  python3 -c 'import json,sys; print((json.load(open(sys.argv[1])).get(sys.argv[2]) or {}).get(sys.argv[3], ""))' "$params" "$1" "$2"
}

env_name=$(setting environment)
region=$(setting region)
if [ -z "$env_name" ] || [ -z "$region" ]; then
  echo "deploy.sh: 'environment' and 'region' are required" >&2
  exit 1
fi
prefix="herald-$env_name"

output() { # stack key
  aws cloudformation describe-stacks --region "$region" --stack-name "$prefix-$1" \
    --query "Stacks[0].Outputs[?OutputKey=='$2'].OutputValue | [0]" --output text
}
stack_parameter() { # stack key -> the value the deployed stack has, or ""
  aws cloudformation describe-stacks --region "$region" --stack-name "$prefix-$1" \
    --query "Stacks[0].Parameters[?ParameterKey=='$2'].ParameterValue | [0]" --output text 2>/dev/null \
    | sed 's/^None$//' || true
}

deploy() { # stack template [Key=Value ...]: the file's section for the stack first, wiring after (wins)
  local name=$1 template=$2
  shift 2
  local -a overrides
  mapfile -t overrides < <(section "$name")
  overrides+=("$@")
  echo "deploy.sh: $prefix-$name ($template.yaml)" >&2
  local -a args=(--region "$region" --stack-name "$prefix-$name" --template-file "$here/$template.yaml"
    --capabilities CAPABILITY_IAM --no-fail-on-empty-changeset
    --tags "app=herald" "environment=$env_name")
  [ "${#overrides[@]}" -gt 0 ] && args+=(--parameter-overrides "${overrides[@]}")
  aws cloudformation deploy "${args[@]}"
}

# 1. Network: ours, or an existing VPC described in "existing_network".
existing_vpc=$(section_value existing_network VpcId)
if [ -n "$existing_vpc" ]; then
  vpc_id=$existing_vpc
  vpc_cidr=$(section_value existing_network VpcCidr)
  public_subnets=$(section_value existing_network PublicSubnetIds)
  private_subnets=$(section_value existing_network PrivateSubnetIds)
  azs=$(section_value existing_network AvailabilityZones)
else
  deploy network network
  vpc_id=$(output network VpcId)
  vpc_cidr=$(output network VpcCidr)
  public_subnets=$(output network PublicSubnetIds)
  private_subnets=$(output network PrivateSubnetIds)
  azs=$(output network AvailabilityZones)
fi

# 2. Tables.
deploy tables tables
table_prefix=$(output tables TablePrefix)

# 3. NATS. The config is infra/nats/cluster.conf itself, comment lines dropped to fit a
# parameter. The AMI is pinned: the one given, else the one the stack already runs, else
# today's Amazon Linux 2023 for the instance type's architecture (a new AMI replaces
# every node, one at a time, so it should be a decision, not a side effect of a deploy).
# Its `include "permissions.conf"` is replaced by that file's text (what nats-server does).
nats_config=$(python3 -c '
import sys
conf, perms = open(sys.argv[1]).read(), open(sys.argv[2]).read()
sys.stdout.write(conf.replace("include \"permissions.conf\"", perms))' \
  "$root/infra/nats/cluster.conf" "$root/infra/nats/permissions.conf" \
  | grep -v '^[[:space:]]*#' | grep -v '^[[:space:]]*$' | gzip -9n | base64 | tr -d '\n')
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
  "ImageId=$image_id" "NatsConfigGzB64=$nats_config"
nats_url=$(output nats NatsUrl)
nats_clients=$(output nats NatsClientSecurityGroupId)

# 4. ECS cluster.
deploy ecs ecs
cluster=$(output ecs ClusterName)

# 5. Functions. In lambda mode the zip built by scripts/build-lambda goes to S3 under its
# content hash: a new build is a new key, so CloudFormation updates the function.
mode=$(section_value functions DeliveryMode)
lambda_args=()
if [ "${mode:-lambda}" = lambda ]; then
  bucket=$(setting artifacts_bucket)
  zip="$root/target/lambda/deliver/bootstrap.zip"
  [ -n "$bucket" ] || { echo "deploy.sh: lambda mode needs 'artifacts_bucket'" >&2; exit 1; }
  [ -f "$zip" ] || { echo "deploy.sh: $zip is missing; run scripts/build-lambda first" >&2; exit 1; }
  key="herald/deliver/$(sha256sum "$zip" | cut -c1-64).zip"
  aws s3api head-object --region "$region" --bucket "$bucket" --key "$key" >/dev/null 2>&1 \
    || aws s3 cp --region "$region" "$zip" "s3://$bucket/$key"
  lambda_args=("LambdaCodeBucket=$bucket" "LambdaCodeKey=$key")
fi
deploy functions functions \
  "VpcId=$vpc_id" "VpcCidr=$vpc_cidr" "PrivateSubnetIds=$private_subnets" \
  "NatsUrl=$nats_url" "NatsClientSecurityGroupId=$nats_clients" \
  "EcsClusterName=$cluster" "TablePrefix=$table_prefix" "${lambda_args[@]}"

# 6. Gateway.
deploy gateway gateway \
  "VpcId=$vpc_id" "PublicSubnetIds=$public_subnets" "PrivateSubnetIds=$private_subnets" \
  "NatsUrl=$nats_url" "NatsClientSecurityGroupId=$nats_clients" \
  "EcsClusterName=$cluster" "TablePrefix=$table_prefix"

echo "deploy.sh: done. WebSocket endpoint: $(output gateway WebSocketUrl)" >&2
