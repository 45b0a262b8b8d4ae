#!/usr/bin/env bash
# End-to-end: a pair of directors electing a master by VRRP (issue #17),
# on testbed/cluster.sh up --ha: director1 (priority 150) and director2
# (priority 100) on one client segment and one server segment, adverts
# every 100 ms signed with the pair's key, preempt after 1 s; the master
# holds the VIPs on its d-cli and, for VS/NAT, the real servers' gateway
# (192.0.2.1/24, 2001:db8:5::1/64) on its d-srv.
#
#   xvs-client ──┐                  ┌── d-cli  xvs-director  (director1, 150) d-srv ──┐
#   request      ├── brc (switch) ──┤     VRRP 224.0.0.18 ↕                           ├── br0 ── rs1..3
#   loops        │                  └── d-cli  xvs-director2 (director2, 100) d-srv ──┘   (DR, TUN: the
#   (eth0)       │                                                                         router too)
#
# Each drill runs request loops from the client (a new connection every
# 20 ms, each given 1 s, http-loop.py --every) and reports, from their
# logs (outage.py), the failed requests and the time from the event to the
# end of the first request served after the last failed one (served again
# for good):
#   1. the pair comes up: director1 MASTER holding every floating address,
#      director2 BACKUP holding none; the VIPs answer over IPv4 and IPv6;
#      the client's neighbour entries point to director1's d-cli;
#   2. kill -9 director1 (IPv4 and IPv6 loops): director2 takes over, and
#      requests are served again within 3 s of the kill (the target is 1 s);
#   3. director1 restarted with preempt = false: it stays BACKUP (3 s,
#      thrice preempt_delay) holding none of the addresses its kill left,
#      and no request fails;
#   4. director1 restarted with preempt = true: MASTER again, not before
#      preempt_delay (1 s), director2 BACKUP holding nothing, the client's
#      neighbour entry back on director1; failed requests counted;
#   5. heartbeat cut (nftables drops VRRP in and out of director2): both
#      MASTER, the client follows director2's announcements; restored:
#      director1 the one MASTER, and it re-announces (the client's entry
#      points to it again: keepalived's bug #166 is the opposite);
#   6. faults in director1, the master: its d-srv link down (FAULT: it
#      releases everything, director2 takes over; link up: it recovers and
#      preempts), then its track script failing and passing again; the
#      notify hooks ran for each transition (notify-directorN.log);
#   7. SIGTERM director1, the master: director2 takes over on its priority 0
#      advert, without waiting for the master-down interval: requests are
#      served again within 1 s.
# --kill-only runs 1 and 2 (test.sh's DR and TUN runs). --family ipv6 has
# the pair advertise over IPv6 (ff02::12, from their link-local addresses).
#
#   testbed/e2e/ha.sh [--mode nat|dr|tun] [--backend xdp|packet] [--kill-only] [--family ipv4|ipv6]
#                                                    (under flock /tmp/xvs-netns.lock)
#
# Prints one PASS or FAIL line per check, exits 1 if any failed. Skips (exit
# 0, says why; a failure under XVS_REQUIRE_ALL=1) when not root or without
# network namespaces.
set -euo pipefail
# shellcheck source=../lib/common.sh
. "$(dirname "$0")/../lib/common.sh"
# shellcheck source=../lib/e2e.sh
. "$(dirname "$0")/../lib/e2e.sh"

mode=nat backend=xdp kill_only=0 family=ipv4
while [ $# -gt 0 ]; do
    case $1 in
    --mode) mode=${2:?}; shift 2 ;;
    --backend) backend=${2:?}; shift 2 ;;
    --kill-only) kill_only=1; shift ;;
    --family) family=${2:?}; shift 2 ;;
    *) echo "usage: $0 [--mode nat|dr|tun] [--backend xdp|packet] [--kill-only] [--family ipv4|ipv6]" >&2; exit 2 ;;
    esac
done
case $mode in nat | dr | tun) ;; *) die "--mode: '$mode' is not nat, dr or tun" ;; esac
case $backend in xdp | packet) ;; *) die "--backend: '$backend' is not xdp or packet" ;; esac

e2e_env
VIP6=2001:db8:f::10
URL6=http://[$VIP6]/
bins=(xvs-director xvsadm)
[ "$mode" = nat ] || bins+=(xvs-agent)
e2e_preflight ha.sh "${bins[@]}"

cluster_up=0
loops=()
declare -A loop_pid
work=$(mktemp -d)
# post_mortem: what the end of director.log (e2e_cluster_down) leaves out.
post_mortem() {
    echo "--- the end of $STATE/director2.log ---"
    tail -n 30 "$STATE/director2.log" 2>/dev/null || true
    echo "--- testbed/cluster.sh status ---"
    "$CLUSTER" status 2>&1 | grep -v '^ *rs[0-9]' || true
}
cleanup() {
    local rc=$? p
    for p in "${!loop_pid[@]}"; do touch "$work/stop-$p"; done
    for p in "${loops[@]}"; do wait "$p" 2>/dev/null || true; done
    e2e_cluster_down 30 post_mortem
    rm -rf "$work"
    exit "$rc"
}
trap cleanup EXIT

# --- the pair's state, addresses and neighbours -----------------------------
# ha_line N: director N's HA line of xvsadm -L --daemon (empty if it runs not).
ha_line() { dir_daemons "$1" | grep '^HA ' || true; }
# The floating addresses, "interface address/len" each.
floating() {
    printf 'd-cli %s/32\nd-cli %s/128\n' "$VIP4" "$VIP6"
    [ "$mode" != nat ] || printf 'd-srv 192.0.2.1/24\nd-srv 2001:db8:5::1/64\n'
}
holds_all() { ha_holds_all "$(dir_ns "$1")" "director$1"; }
holds_none() { ha_holds_none "$(dir_ns "$1")" "director$1"; }
# neigh_is N [ADDR]: the client's entry for ADDR (default VIP4) is director N's MAC.
neigh_is() { ha_neigh_is "$(dir_ns "$1")" "director$1" "${2:-$VIP4}"; }
page_from() { [[ "$(client curl -s --max-time 2 "$1")" =~ ^rs[0-9]+$ ]]; }

# --- request loops ------------------------------------------------------------
# loop_start NAME URL: a request every 20 ms, 1 s each, for at most 30 s,
# until loop_end NAME; its log is $work/NAME.log.
loop_start() {
    rm -f "$work/stop-$1"
    client "$PY" "$LIB/http-loop.py" "$2" --every 0.02 --timeout 1 --seconds 30 --max 1500 \
        --stop-file "$work/stop-$1" --out "$work/$1.json" --log "$work/$1.log" &
    loop_pid[$1]=$!
    loops+=("$!")
    wait_for 5 served_since "$1" 0 >/dev/null || echo "($1: nothing served yet)"
}
loop_end() {
    touch "$work/stop-$1"
    wait "${loop_pid[$1]}" || true
}
# outage NAME AT: outage.py's key=value line for loop NAME and an event at AT.
outage() { "$PY" "$LIB/outage.py" "$work/$1.log" --at "$2"; }
# served_since NAME AT: loop NAME has had a request started at or after AT served.
served_since() { [ -s "$work/$1.log" ] && [ "$(field served_after "$(outage "$1" "$2")")" != - ]; }
# takeover NAME AT LIMIT WHAT: waits for loop NAME to be served again after
# the failures that followed AT (outage.py's served_after); passes if that
# came within LIMIT s. Sets numbers to what it found (the caller prints it).
numbers=""
takeover() {
    local name=$1 at=$2 limit=$3 what=$4 res after i
    # A request is logged when it ends: a failure 1 s after it began. So
    # once one is served, the requests started before it are given time to
    # end (served, or failed) and it is checked again.
    for ((i = 0; i < 3; i++)); do
        wait_for 5 served_since "$name" "$at" >/dev/null || break
        sleep 1.1
        ! served_since "$name" "$at" || break
    done
    res=$(outage "$name" "$at")
    after=$(field served_after "$res")
    numbers="$what: requests served again for good $after s after it ($res)"
    echo "$numbers"
    [ "$after" != - ] && awk -v t="$after" -v l="$limit" 'BEGIN { exit !(t < l) }'
}
edit_director1() {
    "$PY" "$LIB/edit-config.py" "$STATE/director1.toml" "${@/#/--ha=}" >"$work/director1.toml"
    cat "$work/director1.toml" >"$STATE/director1.toml"
}

# --- 1. the pair --------------------------------------------------------------
say "a ${mode^^} pair: director1 (150) and director2 (100), $family adverts, xvs-director on $backend"
"$CLUSTER" up --ha --ha-family "$family" --mode "$mode" >"$work/up.log" 2>&1 || { cat "$work/up.log"; die "testbed/cluster.sh up --ha --ha-family $family --mode $mode failed"; }
cluster_up=1
start_director 1
start_director 2
check "director1 is MASTER, director2 BACKUP" wait_for 10 pair_is MASTER BACKUP
ha_line 1
ha_line 2
# (The control socket may say MASTER a moment before the last address is in.)
check "director1 holds every floating address" wait_for 2 holds_all 1
check "director2 holds none" holds_none 2
check "the IPv4 VIP serves a page" page_from "$URL"
check "the IPv6 VIP serves a page" page_from "$URL6"
check "the client's neighbour entry for the IPv4 VIP points to director1" neigh_is 1
check "the client's neighbour entry for the IPv6 VIP points to director1" neigh_is 1 "$VIP6"

# --- 2. kill -9 the master ------------------------------------------------------
say "kill -9 director1, the master, under IPv4 and IPv6 request loops"
loop_start kill4 "$URL"
loop_start kill6 "$URL6"
at=$(now)
"$CLUSTER" balancer kill --director 1 >/dev/null
check "director2 becomes MASTER" wait_for 5 is_state 2 MASTER
echo "director2 MASTER $(since "$at") s after the kill"
check "director2 holds every floating address" wait_for 3 holds_all 2
check "the client's neighbour entry for the IPv4 VIP follows to director2" wait_for 3 neigh_is 2
check "IPv4: served again within 3 s of the kill (target 1 s)" takeover kill4 "$at" 3 "kill -9, IPv4"
echo "$numbers"
check "IPv6: served again within 3 s of the kill (target 1 s)" takeover kill6 "$at" 3 "kill -9, IPv6"
echo "$numbers"
loop_end kill4
loop_end kill6
echo "kill -9, whole loops: IPv4 $(outage kill4 "$at"); IPv6 $(outage kill6 "$at")"
echo "kill -9 left on director1's d-cli: $(ip -n "$(dir_ns 1)" -o addr show dev d-cli | grep -oE "inet6? ($VIP4|$VIP6)/[0-9]+" | xargs || true)"

if [ "$kill_only" = 0 ]; then
    # --- 3. restart without preempt -----------------------------------------------
    say "director1 restarted with preempt = false"
    edit_director1 preempt=false
    loop_start nopreempt "$URL"
    at=$(now)
    start_director 1
    check "director1 comes up BACKUP" wait_for 5 is_state 1 BACKUP
    check "director1 stays BACKUP for 3 s, director2 MASTER" stays_for 3 pair_is BACKUP MASTER
    check "director1 holds none of the floating addresses (its kill left some)" holds_none 1
    check "director2 still holds them all" holds_all 2
    loop_end nopreempt
    res=$(outage nopreempt "$at")
    echo "requests while director1 came back without preempt: $res"
    no_failures() { [ "$(field failed "$res")" = 0 ]; }
    check "no request failed" no_failures

    # --- 4. restart with preempt ---------------------------------------------------
    say "director1 restarted with preempt = true (preempt_delay 1 s)"
    "$CLUSTER" balancer stop --director 1 >/dev/null
    edit_director1 preempt=true
    loop_start preempt "$URL"
    at=$(now)
    start_director 1
    check "director1 takes the addresses back: MASTER, director2 BACKUP" wait_for 8 pair_is MASTER BACKUP
    took=$(since "$at")
    echo "director1 MASTER $took s after its start"
    not_before_delay() { awk -v t="$took" 'BEGIN { exit !(t >= 1.0) }'; }
    check "not before preempt_delay (1 s)" not_before_delay
    check "director1 holds every floating address" wait_for 3 holds_all 1
    check "director2 holds none" wait_for 3 holds_none 2
    check "the client's neighbour entry points to director1 again" wait_for 3 neigh_is 1
    check "the VIP serves after the preemption" takeover preempt "$(now)" 3 "preemption"
    echo "$numbers"
    loop_end preempt
    echo "requests through the preemption: $(outage preempt "$at")"

    # --- 5. heartbeat cut -------------------------------------------------------------
    say "heartbeat cut: nftables drops VRRP in and out of director2"
    ip netns exec "$(dir_ns 2)" nft -f - <<'EOF'
table inet xvs_ha_cut {
    chain input { type filter hook input priority filter; policy accept; meta l4proto 112 drop; }
    chain output { type filter hook output priority filter; policy accept; meta l4proto 112 drop; }
}
EOF
    check "both directors MASTER" wait_for 5 pair_is MASTER MASTER
    check "director2 holds every floating address too" wait_for 3 holds_all 2
    check "the client's neighbour entry follows director2's announcements" wait_for 5 neigh_is 2
    ip netns exec "$(dir_ns 2)" nft delete table inet xvs_ha_cut
    at=$(now)
    check "restored: director1 the one MASTER, director2 BACKUP" wait_for 5 pair_is MASTER BACKUP
    echo "one master again $(since "$at") s after the restore"
    check "director2 holds none of the floating addresses" wait_for 3 holds_none 2
    check "director1 re-announces: the client's entry for the IPv4 VIP points to it" wait_for 5 neigh_is 1
    check "the IPv4 VIP serves a page" page_from "$URL"

    # --- 6. faults ---------------------------------------------------------------------
    say "faults in director1, the master: its server-side link down, then its track script failing"
    loop_start fault "$URL"
    at=$(now)
    ip -n "$(dir_ns 1)" link set d-srv down
    check "link down: director1 FAULT, director2 MASTER" wait_for 3 pair_is FAULT MASTER
    echo "director2 MASTER $(since "$at") s after the link went down"
    check "director1 in FAULT holds none of the floating addresses" wait_for 2 holds_none 1
    check "director2 holds every floating address" wait_for 3 holds_all 2
    check "the VIP serves through director2" takeover fault "$at" 3 "link down"
    echo "$numbers"
    ip -n "$(dir_ns 1)" link set d-srv up
    check "link up: director1 recovers and preempts (MASTER), director2 BACKUP" wait_for 8 pair_is MASTER BACKUP
    touch "$STATE/fault-director1"
    check "track script failing: director1 FAULT, director2 MASTER" wait_for 3 pair_is FAULT MASTER
    rm -f "$STATE/fault-director1"
    check "track script passing again: director1 MASTER, director2 BACKUP" wait_for 8 pair_is MASTER BACKUP
    check "the client's entry points to director1 again" wait_for 3 neigh_is 1
    loop_end fault
    echo "requests through both faults: $(outage fault "$at")"
    notified() { grep -q "^$2 $3" "$STATE/notify-director$1.log"; }
    check "notify_fault ran in director1 for each fault" notified 1 FAULT "fault: an interface is down"
    check "notify_fault ran for the track script" notified 1 FAULT "fault: the track script failed"
    check "notify_backup ran in director1 as each fault cleared" notified 1 BACKUP "the fault cleared"
    check "notify_master ran in director2 at its takeovers" notified 2 MASTER "the master is stopping"
    echo "director1's hooks saw: $(cut -d' ' -f1 "$STATE/notify-director1.log" | xargs)"

    # --- 7. clean stop ------------------------------------------------------------------
    say "SIGTERM director1, the master (it advertises priority 0 as it goes)"
    loop_start stop4 "$URL"
    at=$(now)
    "$CLUSTER" balancer stop --director 1 >/dev/null
    check "director2 becomes MASTER" wait_for 3 is_state 2 MASTER
    check "served again within 1 s of the stop" takeover stop4 "$at" 1 "SIGTERM"
    echo "$numbers"
    loop_end stop4
    check "director1 released every floating address as it stopped" holds_none 1
    grep -h 'ha: BACKUP -> MASTER' "$STATE/director2.log" | tail -1 | sed 's/^/director2: /'
fi

echo "transitions logged:"
grep -h 'ha: [A-Z]* -> ' "$STATE/director.log" | sed 's/^/  director1: /' || true
grep -h 'ha: [A-Z]* -> ' "$STATE/director2.log" | sed 's/^/  director2: /' || true

if [ "$failures" -gt 0 ]; then
    echo "e2e/ha.sh: $failures check(s) failed"
    exit 1
fi
echo "e2e/ha.sh: all checks passed"
