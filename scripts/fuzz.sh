#!/usr/bin/env bash
# Fuzzes terima-core's verify + inspect path, one target per provider, for a
# bounded time each.
#
#   scripts/fuzz.sh            # 30 s per target
#   scripts/fuzz.sh 300        # 5 min per target
#   scripts/fuzz.sh 60 oms     # only the named targets
#
# Needs a nightly toolchain (rustup toolchain install nightly). Installs
# cargo-fuzz when it is missing. Crashes are written to fuzz/artifacts/<target>/
# and the script exits non-zero if any target found one.
set -euo pipefail

seconds="${1:-30}"
shift || true
targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then
    targets=(bebaskirim bitbybit oms biteship)
fi

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
fuzz="$root/fuzz"
fixtures="$root/shared/core/tests/fixtures"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "cargo-fuzz is missing: installing it" >&2
    cargo install cargo-fuzz --locked
fi

# Seeds: every fixture as a properly signed delivery (flags byte 0x01, an
# empty signature line, for BitByBit the event and id lines, then the body),
# so the fuzzer starts from real payloads. See fuzz/src/lib.rs for the layout.
seed() {
    local target="$1" dir="$fuzz/corpus/$1" file stem event
    mkdir -p "$dir"
    for file in "$fixtures/$target"/*.json; do
        stem="$(basename "$file" .json)"
        event="${stem%%--*}"
        {
            printf '\001\n'
            if [ "$target" = bitbybit ]; then
                printf '%s\nwhd_%s\n' "$event" "$stem"
            fi
            cat "$file"
        } >"$dir/seed-$stem"
    done
}

cd "$fuzz"
status=0
for target in "${targets[@]}"; do
    seed "$target"
    echo "== fuzzing $target for ${seconds}s" >&2
    if ! cargo +nightly fuzz run "$target" -- \
        -max_total_time="$seconds" -rss_limit_mb=512 -max_len=65536; then
        echo "!! $target found a crash: see fuzz/artifacts/$target/" >&2
        status=1
    fi
done
exit "$status"
