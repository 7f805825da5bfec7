#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs its tools into .venv,
# starts a local DynamoDB + SQS emulator on a free loopback port, and runs
# formatting, lints, unit and integration tests (the console's in a headless
# Chromium, installed when missing), template checks and the cargo lambda
# local-invocation script. Stops everything it started.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$TERIMA_ROOT"
ensure_browser

start_moto
trap 'kill "$MOTO_PID" 2>/dev/null || true' EXIT
export TERIMA_TEST_AWS_ENDPOINT="$MOTO_URL"

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "==> cargo test"
cargo test --workspace --locked
echo "==> template checks"
python3 scripts/check_template.py
echo "==> metric names in the template vs the code"
python3 scripts/check_metrics.py
sam validate --lint --region ap-southeast-3
cfn-lint template.yaml
echo "==> cargo lambda local invocation"
bash scripts/local_invoke.sh
