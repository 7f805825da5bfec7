#!/usr/bin/env bash
# Creates, or updates, one of Terima's secrets in Secrets Manager without the
# value ever appearing on a command line, in the shell history or in `ps`.
#
#   export AWS_REGION=ap-southeast-3              # the stack's region, first
#   scripts/put_secret.sh terima/bitbybit         # prompts; the input is hidden
#   scripts/put_secret.sh terima/bitbybit < FILE  # or reads the value from a file
#
# The value is the comma-separated list of accepted secrets: one, or two
# during a rotation (new,old). A secret in another region than the stack's
# cannot be read by the functions, which then refuse to start.
set -euo pipefail

name="${1:-}"
if [[ -z "$name" || $# -ne 1 ]]; then
  echo "usage: $0 <secret name> [< file]" >&2
  exit 2
fi
region="${AWS_REGION:-${AWS_DEFAULT_REGION:-}}"
if [[ -z "$region" ]]; then
  echo "Set AWS_REGION to the stack's region first, e.g. export AWS_REGION=ap-southeast-3" >&2
  exit 2
fi
if ! command -v aws >/dev/null; then
  echo "The AWS CLI is not installed: run 'source scripts/env.sh' (it installs it into .venv)" >&2
  exit 2
fi

umask 077
file="$(mktemp)"
trap 'rm -f "$file"' EXIT
if [[ -t 0 ]]; then
  read -rsp "Value of $name in $region (not shown; several: new,old): " value
  echo >&2
else
  value="$(cat)"
fi
value="${value%$'\r'}"
if [[ -z "$value" ]]; then
  echo "Empty value: nothing stored" >&2
  exit 1
fi
printf '%s' "$value" >"$file"
unset value

if aws secretsmanager describe-secret --region "$region" --secret-id "$name" >/dev/null 2>&1; then
  aws secretsmanager put-secret-value --region "$region" --secret-id "$name" \
    --secret-string "file://$file" >/dev/null
  echo "Updated $name in $region" >&2
else
  aws secretsmanager create-secret --region "$region" --name "$name" \
    --secret-string "file://$file" >/dev/null
  echo "Created $name in $region" >&2
fi
