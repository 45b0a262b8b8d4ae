#!/usr/bin/env bash
# End-to-end: xvs-director's VRRP against Debian's keepalived (issue #17),
# on a NAT pair of testbed/cluster.sh up --ha where keepalived (VRRP only,
# no LVS) runs in director2's namespace instead of xvs. keepalived 2.2.7 has
# no auth_hmac, so director1's [ha] says auth = "none"; keepalived's
# instance has the same VRID (51), version 3, advert_int 0.1, the IPv4 VIP
# as virtual_ipaddress (the address list of the adverts) and the IPv6 VIP
# and the real servers' gateway as virtual_ipaddress_excluded, as xvs moves
# them.
#
#   xvs-client ──┐                  ┌── d-cli  xvs-director   xvs-director (director1, 150, then 50)
#                ├── brc (switch) ──┤       VRRP 224.0.0.18 ↕ tshark -i brc -f 'ip proto 112'
#                                   └── d-cli  xvs-director2  keepalived --vrrp (priority 100)
#
# Checks:
#   1. keepalived as the backup of an xvs master: it hears xvs's adverts
#      and stays BACKUP, holding no address; tshark decodes xvs's adverts as
#      VRRPv3 advertisements with a good checksum, nothing malformed;
#   2. kill -9 xvs: keepalived takes the VIPs (`ip -n director2 addr`), and
#      the client's neighbour entry for the VIP points to director2's MAC;
#   3. keepalived as the master of an xvs backup (director1 restarted with
#      priority 50): xvs stays BACKUP and holds no address (not even those
#      its kill left); tshark decodes keepalived's adverts as above;
#   4. keepalived stopped (it advertises priority 0): xvs becomes MASTER,
#      holds the addresses, the client's entry points to it and the VIP
#      serves a page.
#
#   testbed/e2e/ha-keepalived.sh [--backend xdp|packet]   (under flock /tmp/xvs-netns.lock)
#
# Prints one PASS or FAIL line per check, exits 1 if any failed. Skips (exit
# 0, says why; a failure under XVS_REQUIRE_ALL=1) when not root or without
# network namespaces.
set -euo pipefail
# shellcheck source=../lib/common.sh
. "$(dirname "$0")/../lib/common.sh"
# shellcheck source=../lib/e2e.sh
. "$(dirname "$0")/../lib/e2e.sh"

e2e_parse_backend "$@"
e2e_env
VIP6=2001:db8:f::10
e2e_preflight ha-keepalived.sh xvs-director xvsadm

NS_D1=$(ns_of director)
NS_D2=$(ns_of director2)
cluster_up=0
ka_pid=""
work=$(mktemp -d)
post_mortem() {
    echo "--- keepalived's log ---"
    tail -n 30 "$work/keepalived.log" 2>/dev/null || true
}
cleanup() {
    local rc=$?
    if [ -n "$ka_pid" ]; then
        kill "$ka_pid" 2>/dev/null || true
        wait "$ka_pid" 2>/dev/null || true
    fi
    e2e_cluster_down 30 post_mortem
    rm -rf "$work"
    exit "$rc"
}
trap cleanup EXIT

ha_line() { XVSADM_SOCKET=$STATE/control.sock "$XVS_BIN/xvsadm" -L --daemon 2>/dev/null | grep -A2 '^HA ' || true; }
is_state() { [ "$(ha_line | awk 'NR == 1 { print $3 }')" = "$1" ]; }
# The floating addresses, "interface address/len" each.
floating() { printf 'd-cli %s/32\nd-cli %s/128\nd-srv 192.0.2.1/24\nd-srv 2001:db8:5::1/64\n' "$VIP4" "$VIP6"; }
holds() { ha_holds "$@"; }
holds_all() { ha_holds_all "$1" "$1"; }
holds_none() { ha_holds_none "$1" "$1"; }
neigh_is() { ha_neigh_is "$1" "$1" "$VIP4"; }
ka_says() { grep -q "$1" "$work/keepalived.log"; }
start_director1() { "$CLUSTER" balancer start xvs --director 1 --backend "$backend" -- --log-interval 0 >/dev/null; }
edit_director1() {
    "$PY" "$LIB/edit-config.py" "$STATE/director1.toml" "${@/#/--ha=}" >"$work/director1.toml"
    cat "$work/director1.toml" >"$STATE/director1.toml"
}
# capture NAME: two seconds of VRRP on the client segment, into $work/NAME.pcap.
capture() {
    ip netns exec "$(ns_of switch)" tshark -q -i brc -f 'ip proto 112' -a duration:2 -w "$work/$1.pcap" >"$work/$1.tshark" 2>&1
}
# vrrp3_from NAME SOURCE: every frame of the capture is a VRRPv3
# advertisement of VRID 51 from SOURCE with a good checksum (tshark's
# checksum status 1), at least 5 of them, and tshark's verbose decode has
# nothing malformed and no bad checksum.
vrrp3_from() {
    local lines bad
    tshark -n -r "$work/$1.pcap" -o vrrp.v3_checksum_as_in_v2:FALSE -T fields -E separator=, \
        -e ip.src -e vrrp.version -e vrrp.type -e vrrp.virt_rtr_id -e vrrp.checksum.status \
        >"$work/$1.fields" 2>"$work/$1.stderr"
    tshark -n -r "$work/$1.pcap" -o vrrp.v3_checksum_as_in_v2:FALSE -V >"$work/$1.verbose" 2>"$work/$1.stderr"
    lines=$(wc -l <"$work/$1.fields")
    bad=$(grep -cvx "$2,3,1,51,1" "$work/$1.fields" || true)
    echo "$1: $lines adverts captured in 2 s, $bad other than '$2,3,1,51,1' (source, version, type, VRID, checksum good)"
    head -n 3 "$work/$1.fields"
    grep -m1 -A12 'Virtual Router Redundancy Protocol' "$work/$1.verbose" || true
    [ "$lines" -ge 5 ] && [ "$bad" = 0 ] &&
        ! grep -qi 'malformed' "$work/$1.verbose" && ! grep -q 'Checksum Status: Bad' "$work/$1.verbose"
}

say "a NAT pair: xvs-director (director1, $backend, auth none) and keepalived $(keepalived --version 2>&1 | head -1 | awk '{ print $2 }') in director2's namespace"
"$CLUSTER" up --ha --mode nat >"$work/up.log" 2>&1 || { cat "$work/up.log"; die "testbed/cluster.sh up --ha failed"; }
cluster_up=1
edit_director1 'auth="none"' key_file= key_id=
start_director1
check "director1 (xvs, alone) is MASTER" wait_for 5 is_state MASTER
check "director1 holds every floating address" wait_for 2 holds_all "$NS_D1"
# The client talks to the VIP (a gratuitous ARP updates its entry, and
# creates none: arp_accept is 0).
page_served() { [[ "$(client curl -s --max-time 1 "$URL")" =~ ^rs[0-9]+$ ]]; }
check "the VIP serves a page through xvs" page_served

# --- 1. keepalived, the backup of xvs --------------------------------------------
write_keepalived_conf() {
    cat >"$work/keepalived.conf" <<EOF
global_defs {
    router_id director2
    vrrp_version 3
    vrrp_garp_master_delay 1
}
vrrp_instance xvs {
    state BACKUP
    interface d-cli
    virtual_router_id 51
    priority $1
    advert_int 0.1
    virtual_ipaddress {
        $VIP4/32 dev d-cli
    }
    virtual_ipaddress_excluded {
        $VIP6/128 dev d-cli
        192.0.2.1/24 dev d-srv
        2001:db8:5::1/64 dev d-srv
    }
}
EOF
}
write_keepalived_conf 100
say "keepalived (priority 100) started in $NS_D2"
# Started with `ip netns exec` itself (it execs keepalived): $! is keepalived.
ip netns exec "$NS_D2" keepalived --vrrp --dont-fork --log-console --log-detail --use-file "$work/keepalived.conf" \
    --pid "$work/keepalived.pid" --vrrp_pid "$work/vrrp.pid" </dev/null >"$work/keepalived.log" 2>&1 &
ka_pid=$!
check "keepalived enters BACKUP" wait_for 5 ka_says 'Entering BACKUP STATE'
check "it hears xvs's adverts: it stays BACKUP for 2 s, xvs MASTER" stays_for 2 is_state MASTER
never_master() { ! ka_says 'Entering MASTER STATE'; }
check "keepalived never became MASTER" never_master
check "keepalived holds no floating address" holds_none "$NS_D2"
capture xvs
check "tshark decodes xvs's adverts as VRRPv3 from 198.51.100.11, checksum good, nothing malformed" vrrp3_from xvs 198.51.100.11
echo "$(grep -c . "$work/xvs.fields") adverts of xvs decoded"

# --- 2. kill -9 xvs: keepalived takes over ---------------------------------------
say "kill -9 xvs-director: keepalived takes over"
at=$(now)
"$CLUSTER" balancer kill --director 1 >/dev/null
check "keepalived takes the VIP (ip -n $NS_D2 addr)" wait_for 5 holds "$NS_D2" d-cli "$VIP4/32"
echo "VIP on director2 $(since "$at") s after the kill"
check "keepalived holds the excluded addresses too" wait_for 3 holds_all "$NS_D2"
check "the client's neighbour entry for the VIP points to director2" wait_for 5 neigh_is "$NS_D2"
ip -n "$NS_D2" -br addr show | sed 's/^/    /'

# --- 3. keepalived, the master of xvs ----------------------------------------------
say "xvs-director restarted with priority 50: keepalived (100) stays master"
edit_director1 priority=50
start_director1
check "xvs comes up BACKUP" wait_for 5 is_state BACKUP
check "xvs stays BACKUP for 2 s" stays_for 2 is_state BACKUP
ha_line
names_keepalived() { ha_line | grep -F 'master 198.51.100.12 (priority 100)'; }
check "xvs names keepalived (198.51.100.12, priority 100) as master" names_keepalived
check "xvs holds no floating address (not even those its kill left)" holds_none "$NS_D1"
capture keepalived
check "tshark decodes keepalived's adverts as VRRPv3 from 198.51.100.12, checksum good, nothing malformed" vrrp3_from keepalived 198.51.100.12
echo "$(grep -c . "$work/keepalived.fields") adverts of keepalived decoded"

# --- 4. keepalived stops: xvs takes over -------------------------------------------
say "keepalived stopped (SIGTERM): it advertises priority 0"
at=$(now)
kill -TERM "$ka_pid"
check "xvs becomes MASTER" wait_for 5 is_state MASTER
echo "xvs MASTER $(since "$at") s after keepalived's stop began"
grep -h 'ha: BACKUP -> MASTER' "$STATE/director.log" | tail -1
wait "$ka_pid" 2>/dev/null || true
ka_pid=""
check "xvs holds every floating address" wait_for 3 holds_all "$NS_D1"
check "keepalived released them" holds_none "$NS_D2"
check "the client's neighbour entry for the VIP points to director1" wait_for 5 neigh_is "$NS_D1"
check "the VIP serves a page through xvs" wait_for 5 page_served
grep -h 'ha: [A-Z]* -> ' "$STATE/director.log" | sed 's/^/  director1: /' || true

if [ "$failures" -gt 0 ]; then
    echo "e2e/ha-keepalived.sh: $failures check(s) failed"
    exit 1
fi
echo "e2e/ha-keepalived.sh: all checks passed"
