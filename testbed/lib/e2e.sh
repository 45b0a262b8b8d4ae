# shellcheck shell=bash
# Shared by the end-to-end scripts (testbed/e2e/*.sh): the PASS/FAIL tally,
# the pre-flight checks, and the client's bounded request loops. Source it
# after lib/common.sh; the script sets `work` (a temporary directory) before
# the first check (e2e_env sets PY, LIB, URL, VIP4 for the requests).

# e2e_parse_backend "$@": the options of a script that takes --backend
# xdp|packet only (default xdp); sets backend. Anything else: the usage line
# and exit 2; a backend other than xdp or packet: die.
e2e_parse_backend() {
    backend=xdp
    while [ $# -gt 0 ]; do
        case $1 in
        --backend) backend=${2:?}; shift 2 ;;
        *) echo "usage: $0 [--backend xdp|packet]" >&2; exit 2 ;;
        esac
    done
    case $backend in xdp | packet) ;; *) die "--backend: '$backend' is not xdp or packet" ;; esac
}

# e2e_env: the testbed's state directory and binaries (XVS_TESTBED_STATE
# and XVS_BIN exported for cluster.sh, XVSADM_SOCKET for xvsadm) and what
# the checks use: STATE, PY, CLUSTER, LIB, VIP4, URL.
# shellcheck disable=SC2034 # used by the scripts that source this
e2e_env() {
    check_ns_prefix
    STATE=${XVS_TESTBED_STATE:-$(xvs_default_state)}
    XVS_BIN=${XVS_BIN:-$XVS_ROOT/target/release}
    export XVS_TESTBED_STATE=$STATE XVS_BIN
    PY=/usr/bin/python3
    [ -x "$PY" ] || PY=python3
    CLUSTER=$XVS_ROOT/testbed/cluster.sh
    LIB=$XVS_ROOT/testbed/lib
    VIP4=203.0.113.10
    URL=http://$VIP4/
    export XVSADM_SOCKET=$STATE/control.sock
}

# e2e_preflight NAME BINARY...: skips the script (skip_missing: exit 0,
# says why; a failure under XVS_REQUIRE_ALL=1) without root or network
# namespaces; fails it when a binary is not built; installs the packages.
e2e_preflight() {
    local name=$1 b
    shift
    [ "$(id -u)" -eq 0 ] || skip_missing "e2e/$name" "root (it creates network namespaces: run it as root)"
    unshare --net true 2>/dev/null || skip_missing "e2e/$name" "network namespaces (unshare --net fails)"

    for b in "$@"; do
        [ -x "$XVS_BIN/$b" ] || { echo "FAIL e2e/$name: $XVS_BIN/$b does not exist: build it first (cargo build --release --workspace)"; exit 1; }
    done
    ensure_packages "${XVS_PACKAGES[@]}"
}

# e2e_cluster_down LINES [CMD...]: for a script's cleanup. When the
# cluster is up (cluster_up=1) and a check failed, the last LINES of the
# director's log and what CMD prints; then cluster.sh down.
# shellcheck disable=SC2154 # cluster_up is the script's
e2e_cluster_down() {
    local lines=$1
    shift
    [ "$cluster_up" = 1 ] || return 0
    if [ "$failures" -gt 0 ] && [ -f "$STATE/director.log" ]; then
        echo "--- the end of $STATE/director.log ---"
        tail -n "$lines" "$STATE/director.log" || true
        if [ $# -gt 0 ]; then
            echo "--- $* ---"
            "$@" || true
        fi
    fi
    "$CLUSTER" down >/dev/null || true
}

failures=0
pass() { printf 'PASS  %s\n' "$*"; }
fail() { printf 'FAIL  %s\n' "$*"; failures=$((failures + 1)); }
# check DESCRIPTION CMD...: PASS if CMD succeeds. CMD runs in this shell (it
# may add to the tallies); what it prints is shown only when it fails.
check() {
    local what=$1
    shift
    if "$@" >"$work/check.out" 2>&1; then
        pass "$what"
    else
        fail "$what"
        sed 's/^/      /' "$work/check.out"
    fi
}

# wait_for SECONDS CMD...: polls CMD every 0.1 s until it succeeds or
# SECONDS have passed on the clock (however long each CMD takes: some list
# 100,000 connections); prints how long it took and sets waited to it (in
# seconds), or says it gave up after SECONDS.
waited=0
wait_for() {
    local limit=$1 start
    shift
    start=$(now)
    until "$@"; do
        if awk -v t="$(since "$start")" -v l="$limit" 'BEGIN { exit !(t >= l) }'; then
            echo "not within $limit s"
            return 1
        fi
        sleep 0.1
    done
    waited=$(awk -v a="$start" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }')
    echo "after $waited s"
}

# scrape: the director's metrics page (it listens on METRICS in its namespace).
scrape() { ip netns exec "$(ns_of director)" curl -s --max-time 5 "http://$METRICS/metrics"; }

client() { ip netns exec "$(ns_of client)" "$@"; }
xvsadm() { "$XVS_BIN/xvsadm" "$@"; }
# rs4 K: real server K's IPv4 address in the testbed.
rs4() { echo "192.0.2.$((10 + $1))"; }
# listed ADDR: the -L -n line of that real server in the TCP VIP4:80 service.
listed() { xvsadm -L -n -t "$VIP4:80" | grep -F -- "-> $1:80 " || true; }

# requests N: N short requests to URL from the client, one connection each;
# sets got[page] (how many each real server answered) and bad (failures).
declare -A got
bad=0
requests() {
    client "$PY" "$LIB/http-loop.py" "$URL" --max "$1" --seconds 60 --pause 0 --out "$work/req.json"
    got=()
    bad=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["failed"])' "$work/req.json")
    local page n
    while read -r page n; do got[$page]=$n; done < <("$PY" -c '
import json, sys
for k, v in json.load(open(sys.argv[1]))["servers"].items():
    print(k, v)' "$work/req.json")
}

# now: seconds since the epoch; since T: seconds from T to now (2 decimals).
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }
# stays_for SECONDS CMD...: CMD holds at every poll (0.1 s) for SECONDS
# (the opposite of wait_for: a state that must last).
stays_for() {
    local i
    for ((i = 0; i < $1 * 10; i++)); do
        "${@:2}" >/dev/null || { echo "no longer after $((i / 10)).$((i % 10)) s: $*"; return 1; }
        sleep 0.1
    done
}

# The HA drills' views of a pair (e2e/ha.sh, e2e/ha-keepalived.sh). The
# script defines `floating`: one "IFNAME ADDR/LEN" line per address that
# moves with the master.
# ha_holds NS IFNAME ADDR/LEN: the address is on IFNAME in namespace NS.
# (The listing is read whole first: `grep -q` leaving early would have ip
# die of SIGPIPE, and pipefail call the address missing.)
ha_holds() { local out; out=$(ip -n "$1" -o addr show dev "$2") && grep -qF -- " $3 " <<<"$out"; }
# ha_holds_all NS LABEL: every floating address is in NS (says which are not).
ha_holds_all() {
    local ifname addr lacking=0
    while read -r ifname addr; do
        ha_holds "$1" "$ifname" "$addr" || { echo "$2 lacks $addr on $ifname"; lacking=1; }
    done < <(floating)
    return "$lacking"
}
# ha_holds_none NS LABEL: no floating address is in NS (says which are).
ha_holds_none() {
    local ifname addr held=0
    while read -r ifname addr; do
        ! ha_holds "$1" "$ifname" "$addr" || { echo "$2 holds $addr on $ifname"; held=1; }
    done < <(floating)
    return "$held"
}
# ha_mac_of NS: the MAC of d-cli in NS.
ha_mac_of() { ip -n "$1" -o link show d-cli | grep -o 'link/ether [0-9a-f:]*' | cut -d' ' -f2; }
# ha_neigh_mac ADDR: the client's neighbour entry for ADDR (its MAC, or nothing).
ha_neigh_mac() { ip -n "$(ns_of client)" neigh show "$1" dev eth0 | awk '{ for (i = 1; i < NF; i++) if ($i == "lladdr") print $(i + 1) }'; }
# The pair of `cluster.sh up --ha` (e2e/ha.sh, e2e/sync.sh,
# e2e/sync-bulk.sh), director N = 1 or 2:
# dir_ns N: its namespace; dir_socket N: its control socket;
# dir_daemons N: its `xvsadm -L --daemon` (empty if it runs not);
# dir_state N: its HA state (MASTER, BACKUP, FAULT, INIT or nothing);
# is_state N STATE; pair_is STATE1 STATE2: director1's and director2's.
dir_ns() { if [ "$1" = 1 ]; then ns_of director; else ns_of director2; fi; }
dir_socket() { if [ "$1" = 1 ]; then echo "$STATE/control.sock"; else echo "$STATE/control2.sock"; fi; }
dir_daemons() { XVSADM_SOCKET=$(dir_socket "$1") "$XVS_BIN/xvsadm" -L --daemon 2>/dev/null || true; }
dir_state() { dir_daemons "$1" | awk '/^HA / { print $3 }'; }
is_state() { [ "$(dir_state "$1")" = "$2" ]; }
pair_is() { is_state 1 "$1" && is_state 2 "$2"; }
# start_director N [DIRECTOR-OPTION...]: director N started on $backend.
start_director() {
    local n=$1
    shift
    "$CLUSTER" balancer start xvs --director "$n" --backend "$backend" -- --log-interval 0 "$@" >/dev/null
}
# field NAME "A=1 B=2 ...": NAME's value in a line of NAME=VALUE pairs.
field() { tr ' ' '\n' <<<"$2" | sed -n "s/^$1=//p"; }
# ha_neigh_is NS LABEL ADDR: the client's entry for ADDR is NS's d-cli MAC.
ha_neigh_is() {
    local got
    got=$(ha_neigh_mac "$3")
    echo "client: $3 at ${got:-(none)}; $2's d-cli is $(ha_mac_of "$1")"
    [ "$got" = "$(ha_mac_of "$1")" ]
}
