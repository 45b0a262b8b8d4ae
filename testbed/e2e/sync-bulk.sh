#!/usr/bin/env bash
# End-to-end: the connection-state sync of a pair of directors (issue #18)
# at scale and under loss, on testbed/cluster.sh up --ha --sync: director1
# (priority 150, the master) and director2 (100), each with its `[sync]`
# (both roles: each sends its table and receives the other's).
#
#   xvs-client ──┐                  ┌── d-cli  xvs-director  (director1, 150) d-srv ──┐
#   xvs-pktgen   ├── brc (switch) ──┤   VRRP ↕   sync (UDP, the [sync] port) ↕       ├── br0 ── rs1..3
#   UDP flows,   │                  └── d-cli  xvs-director2 (director2, 100) d-srv ──┘   UDP echo :7,
#   HTTP (eth0)  │                                                                         nginx :80
#
# The UDP flows are one datagram each from xvs-pktgen (its source ports
# 10000-59999 from each of the client's addresses 198.51.100.2 and .3, .4
# in drill 2), to the UDP service 203.0.113.10:7: each is a connection of
# the director's table, for UDP's 300 s.
#   1. A late backup: director1 alone (MASTER) gets 100,000 flows (sent
#      again, at most twice, if some were lost on the way: a flow sent
#      again refreshes its entry, it makes no second one) and must hold at
#      least 100,000 connections; then director2 starts and must report
#      itself in sync (the stats file's `sync.in_sync`) within 60 s, holding
#      by then as many connections as director1 (its stats file's
#      `connections`, the same snapshot), and its table listed with
#      `xvsadm -L -c -n` must equal director1's, per real server and entry
#      by entry (lib/conn-compare.py). Reported: both counts, the time from
#      director2's start to in sync.
#   2. 5 % loss under load: nftables in both directors' namespaces drops
#      5 % of the sync datagrams they send (output hook, udp dport of the
#      [sync] port: each datagram, either way, crosses one such rule); for
#      10 s, new connections: 20,000 UDP flows (2,000 a second) and a loop
#      of HTTP requests (one connection each), while 20 keep-alive
#      connections opened at the start stay ESTABLISHED (a request every
#      second); the load stops; within 30 s the backup's table must equal
#      the master's (lib/conn-compare.py: per real server and entry by
#      entry, with a tolerance of 0 but for entries either side gives less
#      than 15 s: those may expire between the two listings). Reported:
#      the datagrams nftables saw and dropped (some each way, checked),
#      director2's receiver's `lost` and `repaired` (stats file,
#      `sync.receiver`: both above 0, checked, as the testbed's 2 s refresh
#      would make the tables converge without any repair), the time to
#      converge. The nftables table goes at the end.
#
#   testbed/e2e/sync-bulk.sh [--mode nat|dr|tun] [--backend xdp|packet]
#                                                    (under flock /tmp/xvs-netns.lock)
#
# Prints one PASS or FAIL line per check and a summary, exits 1 if any
# failed. Skips (exit 0, says why; a failure under XVS_REQUIRE_ALL=1) when
# not root or without network namespaces.
set -euo pipefail
# shellcheck source=../lib/common.sh
. "$(dirname "$0")/../lib/common.sh"
# shellcheck source=../lib/e2e.sh
. "$(dirname "$0")/../lib/e2e.sh"

mode=nat backend=xdp
while [ $# -gt 0 ]; do
    case $1 in
    --mode) mode=${2:?}; shift 2 ;;
    --backend) backend=${2:?}; shift 2 ;;
    *) echo "usage: $0 [--mode nat|dr|tun] [--backend xdp|packet]" >&2; exit 2 ;;
    esac
done
case $mode in nat | dr | tun) ;; *) die "--mode: '$mode' is not nat, dr or tun" ;; esac
case $backend in xdp | packet) ;; *) die "--backend: '$backend' is not xdp or packet" ;; esac

e2e_env
bins=(xvs-director xvsadm xvs-pktgen)
[ "$mode" = nat ] || bins+=(xvs-agent)
e2e_preflight sync-bulk.sh "${bins[@]}"

# The drills' sizes and bounds.
BULK_FLOWS=50000 # per source address; two addresses
BULK_RATE=25000  # datagrams per second
LOAD_SECONDS=10
LOAD_FLOWS=20000
HELD=20
UDP_SERVICE=$VIP4:7
LOSS_TABLE=xvs_sync_loss

cluster_up=0
work=$(mktemp -d)
bg=()
post_mortem() {
    echo "--- the end of $STATE/director2.log ---"
    tail -n 30 "$STATE/director2.log" 2>/dev/null || true
    echo "--- xvsadm -L --daemon, each director ---"
    dir_daemon 1 || true
    dir_daemon 2 || true
}
cleanup() {
    local rc=$? p n
    touch "$work/stop-hold"
    for p in "${bg[@]}"; do wait "$p" 2>/dev/null || true; done
    if [ "$cluster_up" = 1 ]; then
        for n in 1 2; do ip netns exec "$(dir_ns "$n")" nft delete table inet "$LOSS_TABLE" 2>/dev/null || true; done
    fi
    e2e_cluster_down 30 post_mortem
    rm -rf "$work"
    exit "$rc"
}
trap cleanup EXIT


# --- the pair -----------------------------------------------------------------
dir_stats() { if [ "$1" = 1 ]; then echo "$STATE/stats.json"; else echo "$STATE/stats2.json"; fi; }
dir_daemon() { dir_daemons "$1" | sed "s/^/director$1: /"; }
# The stats file is written every 0.2 s (--stats-interval below).
# stat N EXPR: a value of director N's stats file (EXPR in Python, over d).
stat() { "$PY" -c 'import json, sys; d = json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$(dir_stats "$1")" "$2"; }
# in_sync N: director N's stats file says its sync receiver is in sync;
# sets at_sync to the connections of its table in that same snapshot, and
# synced to 1 when it is.
at_sync=0 synced=0
in_sync() {
    local v
    v=$(stat "$1" '"%s %s" % (d.get("sync", {}).get("in_sync", False), d["connections"])' 2>/dev/null) || return 1
    at_sync=${v#* }
    [ "${v% *}" = True ] && synced=1
}
# listing N FILE: director N's connection table, as xvsadm -L -c -n lists it.
listing() { XVSADM_SOCKET=$(dir_socket "$1") "$XVS_BIN/xvsadm" -L -c -n >"$2"; }
entries() { tail -n +3 "$1" | wc -l; }
udp_entries() { awk -v vip="$UDP_SERVICE" '$1 == "UDP" && $5 == vip' "$1" | wc -l; }
# compare NAME: both tables listed (director1 first) into NAME-1.txt and
# NAME-2.txt and compared; lib/conn-compare.py's report in NAME.out.
compare() {
    listing 1 "$work/$1-1.txt" && listing 2 "$work/$1-2.txt" || return 1
    "$PY" "$LIB/conn-compare.py" "$work/$1-1.txt" "$work/$1-2.txt" --json "$work/$1.json" >"$work/$1.out"
}

# flows SRC FIRST_PORT FLOWS RATE: one UDP datagram per flow (source port
# FIRST_PORT + i) from SRC to the UDP service, to director1's d-cli (the
# master's MAC: the VIP is on-link at the client), at RATE a second.
dir1_mac=""
flows() {
    client "$XVS_BIN/xvs-pktgen" send --iface eth0 --dst-mac "$dir1_mac" --src "$1" --dst "$UDP_SERVICE" \
        --src-port "$2" --flows "$3" --count "$3" --rate "$4" --duration $(($3 / $4 + 10)) >>"$work/pktgen.log"
}

# sync_port: the [sync] port of director1's config (8848 without one).
sync_port() {
    "$PY" -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb")).get("sync", {}).get("port", 8848))' "$STATE/director1.toml"
}
# loss_counters N: "SEEN DROPPED" sync datagrams of director N's rules.
loss_counters() {
    ip netns exec "$(dir_ns "$1")" nft -j list table inet "$LOSS_TABLE" | "$PY" -c '
import json, sys
counts = [e["rule"]["expr"] for e in json.load(sys.stdin)["nftables"] if "rule" in e]
print(*(next(x["counter"]["packets"] for x in r if "counter" in x) for r in counts))'
}

# --- 1. a late backup, 100,000 connections ------------------------------------
say "a ${mode^^} pair with sync, xvs-director on $backend: director1 alone, then director2 late"
"$CLUSTER" up --ha --sync --mode "$mode" >"$work/up.log" 2>&1 || { cat "$work/up.log"; die "testbed/cluster.sh up --ha --sync --mode $mode failed"; }
cluster_up=1
sed -n '/^\[sync\]/,/^$/p' "$STATE/director1.toml" | sed 's/^/director1.toml: /'
# Both drills' connections must fit each director's table (the configs
# leave it at the default, 1,048,576 entries).
for n in 1 2; do
    capacity=$("$PY" -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb")).get("conn_table", {}).get("capacity", 1048576))' "$STATE/director$n.toml")
    [ "$capacity" -ge $((2 * BULK_FLOWS + LOAD_FLOWS + 100000)) ] ||
        die "director$n.toml: conn_table.capacity $capacity is too small for the drills' $((2 * BULK_FLOWS + LOAD_FLOWS)) UDP flows and HTTP connections"
done
start_director 1 --stats-interval 0.2
check "director1 alone is MASTER" wait_for 5 is_state 1 MASTER
dir1_mac=$(ip -n "$(dir_ns 1)" -o link show d-cli | grep -o 'link/ether [0-9a-f:]*' | cut -d' ' -f2)
client ip addr add 198.51.100.3/24 dev eth0
client ip addr add 198.51.100.4/24 dev eth0

say "director1 gets $((2 * BULK_FLOWS)) UDP flows (one datagram each, $BULK_RATE a second)"
at=$(now)
for pass in 1 2 3; do
    flows 198.51.100.2 10000 "$BULK_FLOWS" "$BULK_RATE"
    flows 198.51.100.3 10000 "$BULK_FLOWS" "$BULK_RATE"
    listing 1 "$work/bulk-master.txt"
    held=$(udp_entries "$work/bulk-master.txt")
    echo "pass $pass: director1 holds $held UDP connections to $UDP_SERVICE ($(entries "$work/bulk-master.txt") in all)"
    [ "$held" -lt $((2 * BULK_FLOWS)) ] || break
done
echo "flows sent in $(since "$at") s: $(grep -c '^sent' "$work/pktgen.log") runs of xvs-pktgen"
bulk_master=$(entries "$work/bulk-master.txt")
holds_bulk() { [ "$held" -ge $((2 * BULK_FLOWS)) ]; }
check "director1 holds at least $((2 * BULK_FLOWS)) connections ($held)" holds_bulk

say "director2 starts: its sync receiver asks director1 for its table"
at=$(now)
start_director 2 --stats-interval 0.2
check "director2 reports itself in sync (stats file: sync.in_sync)" wait_for 60 in_sync 2
transfer=$(since "$at")
if [ "$synced" = 1 ]; then
    sync_note="in sync $transfer s after its start (holding $at_sync then)"
else
    sync_note="NOT in sync $transfer s after its start (holding $at_sync)"
fi
echo "director2 $sync_note; director1 holds $bulk_master"
all_at_sync() { [ "$at_sync" -ge "$bulk_master" ]; }
check "director2 held all of director1's connections when it first said in sync" all_at_sync
check "director2 is BACKUP" is_state 2 BACKUP
check "director2's table equals director1's, per real server and entry by entry" compare bulk
cat "$work/bulk.out"
bulk_backup=$(entries "$work/bulk-2.txt" 2>/dev/null || echo 0)
dir_daemon 2 | grep -i sync || true

# --- 2. 5 % of the sync datagrams dropped, under load ------------------------------
port=$(sync_port)
say "5 % of the sync datagrams (udp dport $port) dropped as each director sends them; $LOAD_SECONDS s of new connections"
for n in 1 2; do
    ip netns exec "$(dir_ns "$n")" nft -f - <<EOF
table inet $LOSS_TABLE {
    chain output {
        type filter hook output priority filter; policy accept;
        udp dport $port counter
        udp dport $port numgen random mod 100 < 5 counter drop
    }
}
EOF
done
rm -f "$work/stop-hold"
client "$PY" "$LIB/hold-conns.py" "$URL" --count "$HELD" --every 1 --seconds 90 \
    --stop-file "$work/stop-hold" --out "$work/hold.json" &
bg+=("$!")
client "$PY" "$LIB/http-loop.py" "$URL" --seconds "$LOAD_SECONDS" --pause 0 --max 100000 --out "$work/loop.json" &
bg+=("$!")
at=$(now)
flows 198.51.100.4 10000 "$LOAD_FLOWS" $((LOAD_FLOWS / LOAD_SECONDS))
wait "${bg[-1]}" || true
stopped=$(now)
echo "load for $(since "$at") s: $(tail -1 "$work/pktgen.log"); HTTP loop: $(cat "$work/loop.json")"

say "the load stopped: the backup's table must converge to the master's (at most 30 s; the loss goes on)"
converged() {
    local c1 c2
    # Listing both tables is the exact comparison but not a cheap one: it
    # waits until the stats files' counts agree, or 5 s since the last try.
    c1=$(stat 1 'd["connections"]') c2=$(stat 2 'd["connections"]')
    if [ "$c1" != "$c2" ] && [ "$(awk -v a="${last_try:-0}" -v b="$(now)" 'BEGIN { print (b - a < 5) }')" = 1 ]; then
        return 1
    fi
    last_try=$(now)
    compare loss || return 1
    converge_note="equal $(awk -v a="$stopped" -v b="$last_try" 'BEGIN { printf "%.1f", b - a }') s after the load stopped (the listings that matched began then)"
}
last_try=$(now)
converge_note="NOT equal 30 s after the load stopped"
check "director2's table equals director1's, per real server and entry by entry" wait_for 30 converged
echo "the tables: $converge_note"
cat "$work/loss.out"
read -r seen1 dropped1 < <(loss_counters 1)
read -r seen2 dropped2 < <(loss_counters 2)
echo "sync datagrams sent: director1 $seen1 ($dropped1 dropped), director2 $seen2 ($dropped2 dropped)"
# director2's receiver, read once (the refresh goes on, and the loss with it).
read -r rx_lost rx_repaired receiver < <(stat 2 '(lambda r: "%s %s %s" % (r.get("lost", "-"), r.get("repaired", "-"), r))(d.get("sync", {}).get("receiver", {}))' || echo "- - (no stats file)")
echo "director2's receiver: $receiver"
dropped_some() { [ "$dropped1" -gt 0 ] && [ "$dropped2" -gt 0 ]; }
check "nftables dropped sync datagrams both ways" dropped_some
# Both above 0: the drill made the receiver repair (the refresh alone
# would make the tables converge too, repair or not).
lost_repaired() { [[ "$rx_lost $rx_repaired" =~ ^[0-9]+\ [0-9]+$ ]] && [ "$rx_lost" -gt 0 ] && [ "$rx_repaired" -gt 0 ]; }
check "director2's receiver counted datagrams lost, and repaired (lost $rx_lost, repaired $rx_repaired)" lost_repaired
touch "$work/stop-hold"
wait "${bg[0]}" || true
echo "held connections: $(cat "$work/hold.json")"
held_all() { "$PY" -c 'import json, sys; d = json.load(open(sys.argv[1])); sys.exit(d["opened"] != int(sys.argv[2]) or d["failed"] > 0)' "$work/hold.json" "$HELD"; }
check "the $HELD keep-alive connections stayed up through the drill" held_all
for n in 1 2; do ip netns exec "$(dir_ns "$n")" nft delete table inet "$LOSS_TABLE"; done

loss_master=$(entries "$work/loss-1.txt" 2>/dev/null || echo 0)
loss_backup=$(entries "$work/loss-2.txt" 2>/dev/null || echo 0)
echo "summary:"
echo "  late backup: director1 $bulk_master connections, director2 $bulk_backup, $sync_note"
echo "  5 % loss: director1 $loss_master connections, director2 $loss_backup, $converge_note;" \
    "sync datagrams dropped: $dropped1 of $seen1 sent by director1, $dropped2 of $seen2 by director2;" \
    "director2's receiver: lost $rx_lost, repaired $rx_repaired"

if [ "$failures" -gt 0 ]; then
    echo "e2e/sync-bulk.sh: $failures check(s) failed"
    exit 1
fi
echo "e2e/sync-bulk.sh: all checks passed"
