#!/usr/bin/env bash
# Runs every test of xvs: formatting, lints, unit and property tests,
# integration tests (scheduler scenarios, pcap replay), the end-to-end suite
# on namespaced clusters (testbed/e2e/) and the bounded fuzz smoke run.
# Installs what it needs first. Run as root on a fresh machine:
#
#   testbed/test.sh
#
# No test may skip here: XVS_REQUIRE_ALL=1 (exported below) turns the skip
# of a test that lacks root, a kernel feature or a tool into a failure, in
# the Rust tests (director/tests/common/skip.rs) and the end-to-end scripts
# (skip_missing in lib/common.sh). Only you can leave parts out:
# XVS_SKIP_FUZZ=1 skips the fuzz smoke run, XVS_SKIP_E2E=1 the end-to-end
# suite, and the last line says so.
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"
cd "$XVS_ROOT"

need_root "testbed/test.sh"
export XVS_REQUIRE_ALL=1
left_out=()
ensure_packages "${XVS_PACKAGES[@]}"
ensure_rust

say "cargo fmt --check"
cargo fmt --all -- --check

say "cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets --quiet -- -D warnings

say "cargo doc (every intra-doc link resolves)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --quiet

say "cargo test (unit, property and integration tests)"
cargo test --workspace

say "cargo build --release (the binaries the end-to-end suite drives)"
cargo build --release --workspace --quiet

if [ "${XVS_SKIP_E2E:-0}" != 1 ]; then
    # The testbed itself, against the kernel's NAT: keeps cluster.sh honest
    # whatever state the director is in.
    say "end-to-end: VS/NAT through nftables (the testbed's own check)"
    testbed/e2e/nat.sh --balancer nft
    say "end-to-end: VS/NAT through xvs-director on AF_XDP"
    testbed/e2e/nat.sh --balancer xvs --backend xdp
    say "end-to-end: VS/NAT through xvs-director on AF_PACKET"
    testbed/e2e/nat.sh --balancer xvs --backend packet
    say "end-to-end: VS/NAT through xvs-director, AF_XDP client side and AF_PACKET server side"
    testbed/e2e/nat.sh --balancer xvs --backend mixed
    # DR, TUN and one service mixing NAT, DR and TUN real servers, each for
    # IPv4 and IPv6 inside the run, on both backends.
    for mode in dr tun mixed; do
        for backend in xdp packet; do
            say "end-to-end: VS/${mode^^} through xvs-director on $([ "$backend" = xdp ] && echo AF_XDP || echo AF_PACKET) (DR and TUN replies bypass it, through the testbed's router)"
            testbed/e2e/nat.sh --mode "$mode" --balancer xvs --backend "$backend"
        done
    done
    say "end-to-end: multi-queue links, every queue served with the default flags (AF_XDP)"
    testbed/e2e/multiqueue.sh
    say "end-to-end: operating the director (xvsadm, reloads under traffic, metrics) on AF_XDP"
    testbed/e2e/control.sh --backend xdp
    say "end-to-end: health checks (a server stops, hangs, answers wrongly; the fallback) on AF_XDP"
    testbed/e2e/health.sh --backend xdp
    say "end-to-end: the agent's signed reports, and its HAProxy agent-check answers read by HAProxy"
    testbed/e2e/agent.sh
    say "end-to-end: the director's weights following its agents' load reports (a loaded server, a silent agent, forged reports) on AF_XDP"
    testbed/e2e/agents.sh --backend xdp
    # The pair of directors (a minute or so in all): every drill on VS/NAT,
    # the kill -9 drill on DR (with IPv6 adverts) and TUN, and keepalived
    # on the other side.
    say "end-to-end: two directors (VRRP) on VS/NAT: kill -9, restarts with and without preempt, a heartbeat cut, a clean stop (AF_XDP)"
    testbed/e2e/ha.sh --mode nat --backend xdp
    say "end-to-end: two directors on VS/DR, adverts over IPv6: kill -9 the master (AF_XDP)"
    testbed/e2e/ha.sh --mode dr --backend xdp --kill-only --family ipv6
    say "end-to-end: two directors on VS/TUN: kill -9 the master (AF_XDP)"
    testbed/e2e/ha.sh --mode tun --backend xdp --kill-only
    say "end-to-end: the pair's connection sync: a backup started late gets 100,000 connections; 5 % of the sync datagrams dropped under load (AF_XDP)"
    testbed/e2e/sync-bulk.sh --backend xdp
    # The pair syncing its connections (half a minute a mode): kill -9 of
    # the master's process and of its whole host under long-lived sessions,
    # a failback, sessions opened in the last 100 ms; DR syncs over IPv6.
    say "end-to-end: two directors with connection sync on VS/NAT: kill -9, a host crash, failback, the last 100 ms (AF_XDP)"
    testbed/e2e/sync.sh --mode nat --backend xdp
    say "end-to-end: two directors with connection sync on VS/DR, adverts and sync over IPv6 (AF_XDP)"
    testbed/e2e/sync.sh --mode dr --backend xdp --family ipv6
    say "end-to-end: two directors with connection sync on VS/TUN (AF_XDP)"
    testbed/e2e/sync.sh --mode tun --backend xdp
    say "end-to-end: xvs-director's VRRP against keepalived, as master and as backup; tshark decodes both"
    testbed/e2e/ha-keepalived.sh --backend xdp
else
    left_out+=("the end-to-end suite (XVS_SKIP_E2E=1)")
fi

if [ "${XVS_SKIP_FUZZ:-0}" != 1 ]; then
    say "fuzz smoke run"
    testbed/fuzz-smoke.sh
else
    left_out+=("the fuzz smoke run (XVS_SKIP_FUZZ=1)")
fi

if [ ${#left_out[@]} -eq 0 ]; then
    say "all tests passed"
else
    say "all tests run passed; left out at your request: $(IFS=,; echo "${left_out[*]}")"
fi
