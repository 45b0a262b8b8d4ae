#!/usr/bin/env bash
# Bounded fuzz smoke run of the packet crate's cargo-fuzz targets
# (packet/fuzz/, their own workspace).
#
# Installs cargo-fuzz if missing, builds every target, then runs each for
# FUZZ_SECONDS (default 6) over its seed corpus, and runs every saved crash
# input in packet/fuzz/regressions/<target>/ once. Exits non-zero if any
# target crashed; the crashing input is left in packet/fuzz/artifacts/<target>/.
#
# The toolchain is stable: RUSTC_BOOTSTRAP=1 lets cargo-fuzz pass its
# nightly-only flags (-Zsanitizer=…, -Cpasses=sancov-module). No sanitizer
# (-s none): the crate is #![forbid(unsafe_code)], so ASan would find
# nothing that a panic does not, at a third of the speed.
#
# libFuzzer grows the corpus it is given; it writes into a temporary
# directory here, so the committed seeds stay as gen_corpus.py made them.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
seconds="${FUZZ_SECONDS:-6}"
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz-smoke: installing cargo-fuzz"
    cargo install cargo-fuzz --locked --quiet
fi

cd "$here/packet"
cargo fuzz build -s none

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

failed=()
for target in $(cargo fuzz list); do
    regressions="fuzz/regressions/$target"
    if [ -d "$regressions" ] && [ -n "$(ls -A "$regressions")" ]; then
        echo "fuzz-smoke: $target: saved crash inputs"
        # Files, not a directory: libFuzzer runs each once and exits.
        if ! cargo fuzz run -s none "$target" "$regressions"/* \
            >"$scratch/$target.regressions.log" 2>&1; then
            tail -n 40 "$scratch/$target.regressions.log"
            failed+=("$target (regressions)")
        fi
    fi
    echo "fuzz-smoke: $target: ${seconds}s"
    mkdir -p "$scratch/$target"
    if ! cargo fuzz run -s none "$target" "$scratch/$target" "fuzz/corpus/$target" -- \
        -max_total_time="$seconds" >"$scratch/$target.log" 2>&1; then
        tail -n 40 "$scratch/$target.log"
        failed+=("$target")
    else
        grep -E '^Done [0-9]+ runs' "$scratch/$target.log" | sed "s/^/fuzz-smoke: $target: /" || true
    fi
done

if [ "${#failed[@]}" -ne 0 ]; then
    echo "fuzz-smoke: FAILED: ${failed[*]} (inputs under packet/fuzz/artifacts/)" >&2
    exit 1
fi
echo "fuzz-smoke: all targets clean"
