#!/usr/bin/env bash
# The first thing to run: a live VS/NAT cluster on this machine, in network
# namespaces, with xvs-director balancing real HTTP load across three nginx
# real servers of weights 1, 2 and 3 — and a second director as its backup.
#
#   testbed/demo.sh
#
# Installs what it needs, builds the workspace (release), brings the pair
# cluster of testbed/cluster.sh up (`up --ha --sync`), starts both directors
# on AF_XDP, drives 20 s of short HTTP connections from the client with wrk
# while printing the master's per-real-server counters every 2 s; then, in a
# second act, kills the master (SIGKILL) under a loop of requests and 20
# long-lived keep-alive sessions, and shows the backup taking over and the
# sessions carrying on (connection sync); then tears everything down. Non-interactive;
# cleans up whatever happens.
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
STATS2=$STATE/stats2.json
VIP=203.0.113.10
explain() { printf '    %s\n' "$@"; }
table() { "$PY" testbed/lib/xvs-stats.py table "${1:-$STATS}" tcp "$VIP" 80; }

say "1/8 building xvs (cargo build --release --workspace)"
cargo build --release --workspace --quiet

[ -z "$(ip netns list | grep -E "^$XVS_NS_PREFIX-(client|director|director2|switch|router|rs[0-9]+)( |\$)" || true)" ] ||
    die "a testbed cluster is already up: run testbed/cluster.sh down first"
work=$(mktemp -d)
wrk_pid=""
long_pid=""
cleanup() {
    local rc=$?
    if [ -n "$wrk_pid" ]; then kill "$wrk_pid" 2>/dev/null || true; fi
    if [ -n "$long_pid" ]; then kill "$long_pid" 2>/dev/null || true; fi
    if [ -f "$STATE/cluster.env" ]; then
        say "8/8 tearing the cluster down"
        "$CLUSTER" down >/dev/null 2>&1 || true
    fi
    rm -rf "$work"
    exit "$rc"
}
trap cleanup EXIT

say "2/8 bringing up the cluster: one namespace per machine"
explain "client 198.51.100.2 --+-- d-cli [director1, priority 150] d-srv --+-- rs1 rs2 rs3 (192.0.2.11-13)" \
    "                       +-- d-cli [director2, priority 100] d-srv --+" \
    "Two directors share the client's segment and the servers' segment. They elect a master by" \
    "VRRP (adverts every 100 ms, HMAC-signed); the master holds the VIP $VIP and the real" \
    "servers' gateway 192.0.2.1, the backup holds neither. They sync their connection tables" \
    "both ways (UDP, signed). Each real server runs nginx, whose page is its own name" \
    "('rs1'...). NAT: replies come back through the master."
"$CLUSTER" up --ha --sync --servers 3 --weights 1,2,3 --scheduler wlc </dev/null | sed 's/^/    /'

[ -x "$XVS_BIN/xvs-director" ] || die "the build left no $XVS_BIN/xvs-director"
say "3/8 starting both directors on AF_XDP (configs $STATE/director1.toml, director2.toml)"
explain "Their XDP program hands VIP traffic and the real servers' replies to the director's" \
    "AF_XDP sockets; everything else (ARP, VRRP, ping) goes on to the kernel. Kernel forwarding" \
    "is off: every forwarded packet is the director's work. Scheduler wlc, weights 1:2:3."
"$CLUSTER" balancer start xvs --backend xdp </dev/null | sed 's/^/    /'
ha_lines() {
    "$CLUSTER" exec director xvsadm -L --daemon </dev/null 2>/dev/null | sed 's/^/    director1: /' || true
    "$CLUSTER" exec director2 xvsadm -L --daemon </dev/null 2>/dev/null | sed 's/^/    director2: /' || true
}
master_is() { "$CLUSTER" exec "$1" xvsadm -L --daemon </dev/null 2>/dev/null | grep -q ': MASTER '; }
for ((i = 0; i < 50; i++)); do master_is director && break; sleep 0.1; done
explain "Who is master (xvsadm -L --daemon on each):"
ha_lines

say "4/8 six requests through the VIP, each on a new connection"
explain "The page names the real server that answered:"
pages=$(ip netns exec "$(ns_of client)" curl -s --max-time 5 -H 'Connection: close' "http://$VIP/?[1-6]" </dev/null | xargs || true)
explain "  $pages"

say "5/8 load: wrk from the client, 16 connections at a time, each request on a new connection, 20 s"
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
sleep 1 # the stats file is written every second
say "counters after the load"
table
explain "wlc at work: the conns column should stand about 1:2:3, as the weights do."
say "wrk's summary (requests/s: each request is a whole TCP connection through the director)"
sed 's/^/    /' "$work/wrk.out"

say "6/8 second act: kill -9 the master while the client keeps making requests"
explain "A new connection every 20 ms for 6 s (each given 1 s); after 2 s director1 is killed with" \
    "SIGKILL: no goodbye advert. director2 hears no advert for its master-down interval" \
    "(3 x 100 ms + skew = 0.36 s), takes the VIP and the gateway, and announces them (gratuitous" \
    "ARP / unsolicited NA) so that the client and the real servers send to its MAC." \
    "Meanwhile 20 keep-alive sessions each send a request every 100 ms on one connection:" \
    "director2 holds their connections (synced), so they carry on through the takeover."
ip netns exec "$(ns_of client)" "$PY" testbed/lib/longlived.py "http://$VIP/" --sessions 20 --seconds 6 \
    --out "$work/longlived.json" </dev/null >/dev/null 2>&1 &
long_pid=$!
ip netns exec "$(ns_of client)" "$PY" testbed/lib/http-loop.py "http://$VIP/" --every 0.02 --timeout 1 \
    --seconds 6 --max 400 --out "$work/loop.json" --log "$work/loop.log" </dev/null >/dev/null 2>&1 &
wrk_pid=$!
sleep 2
at=$(date +%s.%N)
"$CLUSTER" balancer kill --director 1 </dev/null >/dev/null
rc=0
wait "$wrk_pid" || rc=$?
wrk_pid=""
[ "$rc" -eq 0 ] || [ -s "$work/loop.log" ] || die "the request loop failed (exit $rc)"
read -r requests failed after < <("$PY" testbed/lib/outage.py "$work/loop.log" --at "$at" |
    tr ' ' '\n' | sed -n 's/^\(requests\|failed\|served_after\)=//p' | xargs)
explain "requests: $requests, failed: $failed; served again ${after} s after the kill (each failed" \
    "request is one that the dead master was to answer before the client's ARP entry moved)."
wait "$long_pid" || true
long_pid=""
if [ -s "$work/longlived.json" ]; then
    read -r completed sessions stall < <("$PY" -c 'import json,sys; j=json.load(open(sys.argv[1])); print(j["completed"], j["sessions"], "%.2f" % j["max_wait"])' "$work/longlived.json")
    explain "long-lived sessions: $completed of $sessions kept their connection to the end (the longest" \
        "wait for a response, the takeover's stall: $stall s)."
fi
explain "Who is master now:"
ha_lines
sleep 1
say "7/8 director2's counters (its own stats file: the connections it forwarded since the takeover)"
table "$STATS2"
"$CLUSTER" balancer stop </dev/null >/dev/null
explain "" "Next, the same cluster by hand (as root; the cluster is down again now):" \
    "  testbed/cluster.sh up --servers 3 --weights 1,2,3 --scheduler wlc   # one director" \
    "  testbed/cluster.sh balancer start xvs                    # the director, on AF_XDP" \
    "  testbed/cluster.sh exec client curl http://$VIP/   # one request: rs1, rs2 or rs3" \
    "  testbed/cluster.sh exec director xvsadm -L -n            # its table, as ipvsadm -L -n" \
    "  testbed/cluster.sh status                                # namespaces, addresses, processes" \
    "  testbed/cluster.sh down" \
    "(add --ha --sync to up for the pair; testbed/cluster.sh balancer kill --director 1 is the second act)" \
    "testbed/test.sh runs every test; testbed/e2e/nat.sh, control.sh, health.sh and ha.sh run the" \
    "end-to-end suites one at a time."
