#!/usr/bin/env bash
# The first thing to run: shows what xvs can do today, on real bytes.
#
#   testbed/demo.sh
#
# Until the live director lands (it will bring up a namespaced NAT cluster
# here), the demo runs the finished layers for real, offline:
#   1. the packet layer: a capture of client traffic (testbed/captures/
#      sample.pcap) is rewritten for VS/NAT, VS/DR and VS/TUN, frame by frame,
#      with the checksums before and after;
#   2. the director's own per-frame pipeline (the code live workers will
#      run): captured NAT and TUN sessions replayed through xvs-replay, with
#      what happened to every frame and the per-real-server counters;
#   3. the schedulers: 600 new connections to a service with three real
#      servers of weights 1, 2 and 3 under wlc, rr and wrr, decided exactly as
#      the kernel's IPVS would decide them.
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"
cd "$XVS_ROOT"

need_root "testbed/demo.sh"
ensure_packages "${XVS_PACKAGES[@]}"
ensure_rust

say "building xvs (release)"
cargo build --release --quiet -p xvs-tools
bin="$XVS_ROOT/target/release"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

for method in nat dr tun; do
    say "packet layer: VS/${method^^} rewrite of testbed/captures/sample.pcap"
    "$bin/xvs-rewrite" --in testbed/captures/sample.pcap --out "$work/$method.pcap" --method "$method"
    echo
done

replay() {
    local config=$1 capture=$2
    say "director pipeline: $capture through xvs-replay with $config"
    "$bin/xvs-replay" --config "$config" --in "$capture" --out "$work/out.pcapng" --verdicts "$work/verdicts"
    echo "  frame  verdict            reason  real server"
    awk -F'\t' '{ printf "  %5s  %-17s  %-6s  %s\n", $1, $2, $3, $4 }' "$work/verdicts"
    echo
}
replay tools/tests/replay/nat.toml tools/tests/replay/nat-tcp.pcapng
replay tools/tests/replay/tun.toml tools/tests/replay/tun-tcp.pcapng

# A scenario in xvs-schedsim's format: three real servers, 600 connections
# from distinct clients, none of which ends (so wlc sees them all as active).
scenario() {
    local sched=$1 i
    printf '{"scheduler":"%s","vip":"203.0.113.10","vport":80,"servers":[' "$sched"
    printf '{"addr":"192.0.2.11","port":80,"weight":1},'
    printf '{"addr":"192.0.2.12","port":80,"weight":2},'
    printf '{"addr":"192.0.2.13","port":80,"weight":3}],"events":['
    for i in $(seq 1 600); do
        [ "$i" -gt 1 ] && printf ','
        printf '{"op":"new","client":"198.51.100.%d","cport":%d}' $((i % 250 + 1)) $((40000 + i))
    done
    printf ']}\n'
}

for sched in wlc wrr rr; do
    say "scheduler $sched: 600 new connections, real servers rs1..rs3 with weights 1, 2, 3"
    scenario "$sched" > "$work/$sched.json"
    "$bin/xvs-schedsim" "$work/$sched.json" > "$work/$sched.out"
    printf '  first 12 decisions: %s\n' "$(head -12 "$work/$sched.out" | awk '{printf "rs%d ", $1+1}')"
    for s in 0 1 2; do
        printf '  rs%d (weight %d): %3d connections\n' $((s + 1)) $((s + 1)) "$(grep -cx "$s" "$work/$sched.out" || true)"
    done
    echo
done

say "done: next, testbed/test.sh runs every test"
