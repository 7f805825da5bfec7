#!/usr/bin/env bash
# End-to-end local run, no Docker: moto_server stands in for DynamoDB, SQS (and
# Secrets Manager), `cargo lambda watch` runs the functions, and
# `cargo lambda invoke` sends them the sample events from events/.
#
#   scripts/local_invoke.sh                    # secrets from events/test-secrets.env
#   scripts/local_invoke.sh --secrets-manager  # secrets read from (moto's) Secrets
#                                              # Manager via TERIMA_<P>_SECRETS_ID,
#                                              # as in a deployment
#
# Checks: one event per provider is answered 200 accepted; the queue then holds
# 4 messages and the acks wrote nothing to the table; the Biteship probe is
# ignored and a tampered body is refused 401; the processor takes
# events/processor/batch.json with no failures and records 4 processed work
# records; a redelivery of processed work is a duplicate. Prints
# `N passed, M failed` and exits non-zero on any failure.
#
# Needs the virtual environment at .venv (moto[server], boto3, cfn-lint,
# cargo-lambda). Every background process is stopped on exit.

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PY="$VENV/bin/python"
export PATH="$VENV/bin:$PATH"
cd "$ROOT"

MODE=env
case "${1:-}" in
  "") ;;
  --secrets-manager) MODE=secrets-manager ;;
  *) echo "usage: $0 [--secrets-manager]" >&2; exit 2 ;;
esac

WORK="$(mktemp -d "${TMPDIR:-/tmp}/terima-local.XXXXXX")"
PIDS=()

cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do
    # Each background job leads its own process group (setsid): stop the
    # group, which includes the function processes cargo lambda started.
    kill -TERM -- "-$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

PASSED=0
FAILED=0
pass() { PASSED=$((PASSED + 1)); echo "PASS: $*"; }
fail() { FAILED=$((FAILED + 1)); echo "FAIL: $*"; }
check() { # check <description> <command...>
  local what="$1"; shift
  if "$@"; then pass "$what"; else fail "$what"; fi
}

free_port() {
  "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_for_port() { # wait_for_port <port> <seconds> <pid>
  local port="$1" deadline=$((SECONDS + $2)) pid="$3"
  until "$PY" -c 'import socket, sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1).close()' "$port" 2>/dev/null; do
    if ! kill -0 "$pid" 2>/dev/null; then return 1; fi
    if ((SECONDS > deadline)); then return 1; fi
    sleep 0.5
  done
}

# ---------------------------------------------------------------- emulator
MOTO_PORT="$(free_port)"
setsid "$VENV/bin/moto_server" -H 127.0.0.1 -p "$MOTO_PORT" >"$WORK/moto.log" 2>&1 &
PIDS+=($!)
if ! wait_for_port "$MOTO_PORT" 30 "${PIDS[-1]}"; then
  cat "$WORK/moto.log" >&2
  echo "moto_server did not start" >&2
  exit 1
fi

export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_SESSION_TOKEN=test
export AWS_DEFAULT_REGION=ap-southeast-3 AWS_REGION=ap-southeast-3
export AWS_EC2_METADATA_DISABLED=true
export AWS_ENDPOINT_URL="http://127.0.0.1:$MOTO_PORT"

# The table and queues, created from template.yaml's own definitions so that
# the local schema cannot drift from the deployed one, and a body bucket.
RESOURCES=("$ROOT/scripts/local_resources.py" terima-local)
if [[ "$MODE" == secrets-manager ]]; then
  RESOURCES+=(--secrets-manager "$ROOT/events/test-secrets.env")
fi
"$PY" "${RESOURCES[@]}" >"$WORK/resources.env"

set -a
# shellcheck source=/dev/null
source "$ROOT/events/test-secrets.env"
# shellcheck source=/dev/null
source "$WORK/resources.env"
set +a
if [[ "$MODE" == secrets-manager ]]; then
  # Only the Secrets Manager copy remains: a function that did not fetch it
  # would refuse to start.
  unset TERIMA_BEBASKIRIM_SECRETS TERIMA_BITBYBIT_SECRETS TERIMA_OMS_SECRETS TERIMA_BITESHIP_SECRETS
fi
echo "moto_server on :$MOTO_PORT, table $TERIMA_TABLE, secrets from $MODE"

# ---------------------------------------------------------------- functions
FUNCTIONS=(bebaskirim bitbybit oms biteship processor)
echo "building the functions (debug)..."
cargo build --quiet $(printf -- '-p %s ' "${FUNCTIONS[@]}")

INVOKE_PORT="$(free_port)"
setsid cargo lambda watch --invoke-address 127.0.0.1 --invoke-port "$INVOKE_PORT" \
  >"$WORK/watch.log" 2>&1 &
PIDS+=($!)
if ! wait_for_port "$INVOKE_PORT" 120 "${PIDS[-1]}"; then
  cat "$WORK/watch.log" >&2
  echo "cargo lambda watch did not start" >&2
  exit 1
fi
echo "cargo lambda watch on :$INVOKE_PORT"

invoke() { # invoke <function> <event file>; the response JSON goes to stdout
  cargo lambda invoke "$1" --invoke-address 127.0.0.1 --invoke-port "$INVOKE_PORT" \
    --output-format json --data-file "$2" 2>>"$WORK/invoke.log"
}

answered() { # answered <function> <event file> <status code> <status label>
  local out
  if ! out="$(invoke "$1" "$2")"; then
    echo "  invoke failed:"; tail -5 "$WORK/invoke.log" | sed 's/^/  /'
    return 1
  fi
  "$PY" - "$3" "$4" "$out" <<'PY'
import json, sys
code, label, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
response = json.loads(out)
body = json.loads(response.get("body") or "{}")
ok = response.get("statusCode") == code and body.get("status") == label
if not ok:
    print(f"  got {response.get('statusCode')} {body}")
sys.exit(0 if ok else 1)
PY
}

aws_count() { # aws_count <what> <expected>
  "$PY" - "$1" "$2" <<'PY'
import os, sys
import boto3
what, expected = sys.argv[1], int(sys.argv[2])
table = os.environ["TERIMA_TABLE"]
if what == "queue":
    attrs = boto3.client("sqs").get_queue_attributes(
        QueueUrl=os.environ["TERIMA_QUEUE_URL"], AttributeNames=["ApproximateNumberOfMessages"]
    )["Attributes"]
    found = int(attrs["ApproximateNumberOfMessages"])
else:
    items = []
    pages = boto3.client("dynamodb").get_paginator("scan").paginate(TableName=table)
    for page in pages:
        items.extend(page["Items"])
    if what == "items":
        found = len(items)
    elif what == "processed":
        # Work records (shared/aws/src/dynamo.rs): items with sk W#<work key>#<digest>,
        # and the entries of a resource state item's map `wm` (shared/aws/src/markers.rs).
        found = sum(
            1 for i in items if i["sk"]["S"].startswith("W#") and i.get("st", {}).get("S") == "processed"
        ) + sum(len(i.get("wm", {}).get("M", {})) for i in items if i["sk"]["S"] == "S")
    else:
        sys.exit(f"unknown count {what}")
if found != expected:
    print(f"  found {found}, expected {expected}")
sys.exit(0 if found == expected else 1)
PY
}

# ---------------------------------------------------------------- the run
SAMPLES=(
  "bebaskirim events/bebaskirim/order.to_process.json"
  "bitbybit events/bitbybit/order.created.json"
  "oms events/oms/package.created.json"
  "biteship events/biteship/order.status.json"
)
for sample in "${SAMPLES[@]}"; do
  read -r fn file <<<"$sample"
  check "$fn: $file answered 200 accepted" answered "$fn" "$file" 200 accepted
done
check "queue holds 4 messages" aws_count queue 4
check "the acks wrote nothing to the table" aws_count items 0

# The probe and a forgery.
check "biteship: installation probe answered 200 ignored" \
  answered biteship events/biteship/probe.json 200 ignored
"$PY" - events/oms/shipment.created.json "$WORK/tampered.json" <<'PY'
import json, sys
event = json.load(open(sys.argv[1]))
event["body"] = event["body"].replace("3001", "3002")
json.dump(event, open(sys.argv[2], "w"))
PY
check "oms: tampered body answered 401 unauthorized" \
  answered oms "$WORK/tampered.json" 401 unauthorized
check "still nothing in the table" aws_count items 0

batch_ok() {
  local out
  if ! out="$(invoke processor events/processor/batch.json)"; then
    echo "  invoke failed:"; tail -5 "$WORK/invoke.log" | sed 's/^/  /'
    return 1
  fi
  "$PY" -c '
import json, sys
response = json.loads(sys.argv[1])
failures = response.get("batchItemFailures")
if failures != []:
    print(f"  got {response}")
sys.exit(0 if failures == [] else 1)' "$out"
}
check "processor: events/processor/batch.json with no batchItemFailures" batch_ok
check "table holds 4 processed work records" aws_count processed 4
# Redelivery of processed work (the same event through a REST API this time).
check "biteship: REST v1 redelivery answered 200 duplicate" \
  answered biteship events/biteship/order.status--rest-v1.json 200 duplicate

echo
if ((FAILED > 0)); then
  echo "--- cargo lambda watch log (last 40 lines)"
  tail -40 "$WORK/watch.log"
fi
echo "$PASSED passed, $FAILED failed"
((FAILED == 0))
