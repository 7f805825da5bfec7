# Sourced by the scripts: the project's Python virtual environment with the
# local AWS emulator and the Lambda tooling, created on first use.
# shellcheck shell=bash
TERIMA_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV="$TERIMA_ROOT/.venv"
REQUIREMENTS="$TERIMA_ROOT/scripts/requirements.txt"
# The Rust pieces every build and check reaches for, installed once and in
# order before anything runs in parallel: `sam build` starts one
# `cargo lambda build --arm64` per function at once, and each would otherwise
# race to install the arm64 target itself (the losers then build without its
# standard library). Both commands return at once when the piece is there.
ensure_rust_toolchain() {
    local target=aarch64-unknown-linux-gnu components targets
    components=$(rustup component list --installed)
    if ! grep -q '^rustfmt' <<<"$components" || ! grep -q '^clippy' <<<"$components"; then
        echo "==> installing rustfmt and clippy" >&2
        rustup component add rustfmt clippy
    fi
    targets=$(rustup target list --installed)
    if ! grep -qx "$target" <<<"$targets"; then
        echo "==> installing the $target target" >&2
        rustup target add "$target"
    fi
}
ensure_rust_toolchain

if [ ! -f "$VENV/.installed" ] || ! cmp -s "$REQUIREMENTS" "$VENV/.installed"; then
    echo "==> installing test tools into .venv (scripts/requirements.txt)" >&2
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$REQUIREMENTS"
    cp "$REQUIREMENTS" "$VENV/.installed"
fi
# cargo lambda finds zig through `python3 -m ziglang`: the venv comes first.
export PATH="$VENV/bin:$PATH"
export SAM_CLI_TELEMETRY=0
# The SDK must never probe the instance-metadata address from here.
export AWS_EC2_METADATA_DISABLED=true

# The console's test drives a headless Chromium through chromedriver
# (Debian's `chromium` and `chromium-driver`). Installed when missing, as
# root or through passwordless sudo; the test is never skipped, so a machine
# that can do neither stops here with what to install.
ensure_browser() {
    if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
        return 0
    fi
    local sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
            sudo=(sudo -n)
        else
            echo "chromium and chromedriver are missing, and installing them needs root or passwordless sudo: apt-get install chromium chromium-driver" >&2
            return 1
        fi
    fi
    if ! command -v apt-get >/dev/null; then
        echo "chromium and chromedriver are missing and there is no apt-get: install both on PATH (the console's browser test needs them)" >&2
        return 1
    fi
    echo "==> installing chromium and chromium-driver (the console's browser test)" >&2
    if ! { "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; }; then
        echo "installing chromium and chromium-driver failed (see above)" >&2
        return 1
    fi
    command -v chromium >/dev/null && command -v chromedriver >/dev/null
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Starts the DynamoDB + SQS emulator (moto, one request at a time: see
# scripts/moto_serial.py) on a free loopback port; sets MOTO_URL and MOTO_PID.
start_moto() {
    local port log
    port=$(free_port)
    log="$TERIMA_ROOT/target/moto-$port.log"
    mkdir -p "$TERIMA_ROOT/target"
    python3 "$TERIMA_ROOT/scripts/moto_serial.py" "$port" >"$log" 2>&1 &
    MOTO_PID=$!
    MOTO_URL="http://127.0.0.1:$port"
    for _ in $(seq 1 100); do
        if python3 -c "import urllib.request,sys; urllib.request.urlopen('$MOTO_URL/moto-api/')" 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    echo "moto_server did not start; see $log" >&2
    return 1
}
