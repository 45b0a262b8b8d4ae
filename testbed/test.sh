#!/usr/bin/env bash
# Runs every test of xvs: formatting, lints, unit and property tests,
# integration tests (scheduler scenarios, pcap replay) and the bounded fuzz
# smoke run. Installs what it needs first. Run as root on a fresh machine:
#
#   testbed/test.sh
#
# Environment: XVS_SKIP_FUZZ=1 skips the fuzz smoke run.
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"
cd "$XVS_ROOT"

need_root "testbed/test.sh"
ensure_packages "${XVS_PACKAGES[@]}"
ensure_rust

say "cargo fmt --check"
cargo fmt --all -- --check

say "cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets --quiet -- -D warnings

say "cargo test (unit, property and integration tests)"
cargo test --workspace

if [ "${XVS_SKIP_FUZZ:-0}" != 1 ] && [ -x testbed/fuzz-smoke.sh ]; then
    say "fuzz smoke run"
    testbed/fuzz-smoke.sh
fi

say "all tests passed"
