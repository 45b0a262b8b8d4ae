#!/usr/bin/env bash
# The first thing to run: a live VS/NAT cluster on this machine, in network
# namespaces, with xvs-director balancing real HTTP load across three nginx
# real servers of weights 1, 2 and 3.
#
#   testbed/demo.sh
#
# Installs what it needs, builds the workspace (release), brings the cluster
# of testbed/cluster.sh up, starts the director on AF_XDP, drives 20 s of
# short HTTP connections from the client with wrk while printing the
# director's per-real-server counters every 2 s, then tears everything down.
# Non-interactive; cleans up whatever happens.
set -euo pipefail
# shellcheck source=lib/common.sh
. "$(dirname "$0")/lib/common.sh"
cd "$XVS_ROOT"

need_root "testbed/demo.sh"
ensure_packages "${XVS_PACKAGES[@]}"
ensure_rust

check_ns_prefix
STATE=${XVS_TESTBED_STATE:-$(xvs_default_state)}
XVS_BIN=${XVS_BIN:-$XVS_ROOT/target/release}
export XVS_TESTBED_STATE=$STATE XVS_BIN
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
CLUSTER=testbed/cluster.sh
STATS=$STATE/stats.json
VIP=203.0.113.10
explain() { printf '    %s\n' "$@"; }
table() { "$PY" testbed/lib/xvs-stats.py table "$STATS" tcp "$VIP" 80; }

say "1/6 building xvs (cargo build --release --workspace)"
cargo build --release --workspace --quiet

[ -z "$(ip netns list | grep -E "^$XVS_NS_PREFIX-(client|director|switch|router|rs[0-9]+)( |\$)" || true)" ] ||
    die "a testbed cluster is already up: run testbed/cluster.sh down first"
work=$(mktemp -d)
wrk_pid=""
cleanup() {
    local rc=$?
    if [ -n "$wrk_pid" ]; then kill "$wrk_pid" 2>/dev/null || true; fi
    if [ -f "$STATE/cluster.env" ]; then
        say "6/6 tearing the cluster down"
        "$CLUSTER" down >/dev/null 2>&1 || true
    fi
    rm -rf "$work"
    exit "$rc"
}
trap cleanup EXIT

say "2/6 bringing up the cluster: one namespace per machine"
explain "client 198.51.100.2 --- d-cli [director, VIP $VIP] d-srv --- switch --- rs1 rs2 rs3 (192.0.2.11-13)" \
    "Each real server runs nginx, whose page is its own name ('rs1'...), and a UDP echo." \
    "NAT: the real servers' default route is the director, so replies come back through it."
"$CLUSTER" up --servers 3 --weights 1,2,3 --scheduler wlc </dev/null | sed 's/^/    /'

[ -x "$XVS_BIN/xvs-director" ] || die "the build left no $XVS_BIN/xvs-director"
say "3/6 starting xvs-director on AF_XDP (config $STATE/cluster.toml)"
explain "Its XDP program hands VIP traffic and the real servers' replies to the director's" \
    "AF_XDP sockets; everything else (ARP, ping, SSH) goes on to the kernel. Kernel forwarding" \
    "is off: every forwarded packet is the director's work. Scheduler wlc, weights 1:2:3."
"$CLUSTER" balancer start xvs --backend xdp </dev/null | sed 's/^/    /'

say "4/6 six requests through the VIP, each on a new connection"
explain "The page names the real server that answered:"
pages=$(ip netns exec "$(ns_of client)" curl -s --max-time 5 -H 'Connection: close' "http://$VIP/?[1-6]" </dev/null | xargs || true)
explain "  $pages"

say "5/6 load: wrk from the client, 16 connections at a time, each request on a new connection, 20 s"
explain "Every 2 s, the director's counters per real server (from its stats file):" \
    "conns = connections scheduled to it so far; active = established now; inactive = closing" \
    "or closed but still remembered (TIME_WAIT...); packets in/out = forwarded to it / from it." \
    "wlc gives each new connection to the server with the least (256 x active + inactive) / weight."
timeout 40 ip netns exec "$(ns_of client)" wrk -t1 -c16 -d20s -H 'Connection: close' "http://$VIP/" \
    </dev/null >"$work/wrk.out" 2>&1 &
wrk_pid=$!
start=$SECONDS
for ((i = 0; i < 15; i++)); do # 30 s at most
    sleep 2
    kill -0 "$wrk_pid" 2>/dev/null || break
    echo "  -- t = $((SECONDS - start)) s"
    table || true
done
rc=0
wait "$wrk_pid" || rc=$?
wrk_pid=""
[ "$rc" -eq 0 ] || { cat "$work/wrk.out"; die "wrk failed (exit $rc)"; }

"$CLUSTER" balancer stop </dev/null >/dev/null # its last stats write comes at exit
say "final counters (written by the director as it stopped)"
table
explain "wlc at work: the conns column should stand about 1:2:3, as the weights do."
say "wrk's summary (requests/s: each request is a whole TCP connection through the director)"
sed 's/^/    /' "$work/wrk.out"
explain "" "Next, the same cluster by hand (as root; the cluster is down again now):" \
    "  testbed/cluster.sh up --servers 3 --weights 1,2,3 --scheduler wlc" \
    "  testbed/cluster.sh balancer start xvs                    # the director, on AF_XDP" \
    "  testbed/cluster.sh exec client curl http://$VIP/   # one request: rs1, rs2 or rs3" \
    "  testbed/cluster.sh exec director xvsadm -L -n            # its table, as ipvsadm -L -n" \
    "  testbed/cluster.sh status                                # namespaces, addresses, processes" \
    "  testbed/cluster.sh down" \
    "testbed/test.sh runs every test; testbed/e2e/nat.sh, control.sh and health.sh run the" \
    "end-to-end suites one at a time."
