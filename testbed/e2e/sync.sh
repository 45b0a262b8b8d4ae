#!/usr/bin/env bash
# End-to-end: the pair's connection-state sync (issue #18) through a
# takeover, on testbed/cluster.sh up --ha --sync: director1 (priority 150)
# and director2 (priority 100) sync their tables both ways by unicast on
# the client segment (d-cli), signed with the pair's key, every live
# connection refreshed every 2 s.
#
#   xvs-client ──┐                  ┌── d-cli  xvs-director  (director1, 150) d-srv ──┐
#   50 long-     ├── brc (switch) ──┤     VRRP + sync (UDP 8848) ↕                    ├── br0 ── rs1..3
#   lived, new   │                  └── d-cli  xvs-director2 (director2, 100) d-srv ──┘   (DR, TUN: the
#   connections  │                                                                         router too)
#
# Load: 50 long-lived sessions (lib/longlived.py: one keep-alive
# connection each, a request every 100 ms, lost at a reset, a timeout, a
# wrong or short page or a page from another real server than its first)
# and a loop of new connections (a request every 20 ms, 1 s each,
# lib/http-loop.py; outage.py reads its log). Per mode:
#   1. the pair comes up, director1 MASTER, director2 BACKUP, and
#      director2's backup sync daemon says "in sync";
#   2. kill -9 director1 (the process) under the load, once director2's
#      table holds the 50 sessions' connections (same real server as
#      director1's): every long-lived session completes; the new
#      connections that failed and when they were served again for good
#      are reported;
#   3. director1 started again under the same load (fresh sessions, on
#      director2): it holds director2's table before it preempts (its log:
#      "sync: in sync" before "-> MASTER", and how long the preemption
#      waited for it), and no long-lived session is lost;
#   4. the last 100 ms: 20 sessions opened one after the other in the
#      100 ms before a kill -9 of director1 (the process; some may still be
#      half-open): the share that survived is reported (with sync on, none
#      surviving on VS/NAT fails the drill);
#   5. director1 (started again, preempting as in 3) dies with its host:
#      the switch cuts it off both segments, then kill -9, under 50
#      long-lived sessions, new connections and 20 sessions opened in its
#      last 100 ms, half of them held half-open (the real servers drop
#      their SYN-ACKs until the kill, then send them again): the checks of
#      2 and 4 again, and, with sync on, every one still half-open at the
#      kill must survive (their SYN_RECV entries were synced).
# Why 2 and 5 both: a killed process leaves its host up, holding the
# floating addresses, its XDP program gone with it: what still reaches
# that host (until the client's neighbour entry moves) would be answered
# by its kernel with resets of its own, but for the nftables table the
# director keeps with [ha] (2 checks it does not); a dead host answers
# nothing. One summary line per mode at the end.
#
# --no-sync runs the same drills on a pair without [sync]: the control that
# shows the checks can fail (the long-lived sessions die at each kill and
# at the failback, in every mode, and the drill fails).
#
#   testbed/e2e/sync.sh [--mode nat|dr|tun|all] [--backend xdp|packet] [--family ipv4|ipv6] [--no-sync]
#                                                    (under flock /tmp/xvs-netns.lock)
#
# --mode all (the default) runs NAT, DR and TUN one after the other, each
# on a cluster of its own; --family is the family of the pair's adverts and
# sync datagrams (default ipv4). Prints one PASS or FAIL line per check,
# exits 1 if any failed. Skips (exit 0, says why; a failure under
# XVS_REQUIRE_ALL=1) when not root or without network namespaces.
set -euo pipefail
# shellcheck source=../lib/common.sh
. "$(dirname "$0")/../lib/common.sh"
# shellcheck source=../lib/e2e.sh
. "$(dirname "$0")/../lib/e2e.sh"

modes=(nat dr tun) backend=xdp family=ipv4 sync=1
usage() { echo "usage: $0 [--mode nat|dr|tun|all] [--backend xdp|packet] [--family ipv4|ipv6] [--no-sync]" >&2; exit 2; }
while [ $# -gt 0 ]; do
    case $1 in
    --mode)
        case ${2:?} in all) modes=(nat dr tun) ;; nat | dr | tun) modes=("$2") ;; *) die "--mode: '$2' is not nat, dr, tun or all" ;; esac
        shift 2
        ;;
    --backend) backend=${2:?}; shift 2 ;;
    --family) family=${2:?}; shift 2 ;;
    --no-sync) sync=0; shift ;;
    *) usage ;;
    esac
done
case $backend in xdp | packet) ;; *) die "--backend: '$backend' is not xdp or packet" ;; esac
case $family in ipv4 | ipv6) ;; *) die "--family: '$family' is not ipv4 or ipv6" ;; esac

e2e_env
bins=(xvs-director xvsadm)
[ "${modes[*]}" = nat ] || bins+=(xvs-agent)
e2e_preflight sync.sh "${bins[@]}"

# How the load is shaped (seconds): the long-lived sessions' life in the
# kill drill (the kill comes KILL_AFTER s after they all have a page) and
# in the failback drill (director1 starts FAILBACK_AFTER s after), and the
# last-100-ms sessions' life.
LONG=50 KILL_LIFE=6 KILL_AFTER=2 FAILBACK_LIFE=10 FAILBACK_AFTER=1 BURST=20 BURST_LIFE=5
# The burst's client ports (outside the client's ephemeral range).
HALF_OPEN_PORT=20000

cluster_up=0
work=$(mktemp -d)
pids=()
summary=()
post_mortem() {
    echo "--- the end of $STATE/director2.log ---"
    tail -n 30 "$STATE/director2.log" 2>/dev/null || true
    echo "--- testbed/cluster.sh status ---"
    "$CLUSTER" status 2>&1 | grep -v '^ *rs[0-9]' || true
}
# down: the current mode's load stopped and its cluster taken down.
down() {
    local p
    touch "$work/stop"
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    pids=()
    e2e_cluster_down 30 post_mortem
    cluster_up=0
}
cleanup() {
    local rc=$?
    down
    rm -rf "$work"
    exit "$rc"
}
trap cleanup EXIT

# check_shown DESCRIPTION CMD...: check, and what CMD printed shown on a
# PASS too (the numbers).
check_shown() {
    local before=$failures
    check "$@"
    [ "$failures" != "$before" ] || sed 's/^/      /' "$work/check.out"
}

# --- the pair ---------------------------------------------------------------------
# in_sync N: director N's backup sync daemon says it holds its peer's table.
in_sync() { dir_daemons "$1" | grep -q '^backup sync daemon.*: in sync'; }
sync_lines() { dir_daemons "$1" | grep ' sync daemon' | sed "s/^/  director$1: /"; }

# --- the load ---------------------------------------------------------------------
# sessions NAME LIFE: LONG long-lived sessions of LIFE s in the background
# ($work/NAME.json at their end), waiting until each has its first page.
sessions() {
    rm -f "$work/$1.ready" "$work/$1.json"
    client "$PY" "$LIB/longlived.py" "$URL" --sessions "$LONG" --seconds "$2" \
        --ready-file "$work/$1.ready" --stop-file "$work/stop" --out "$work/$1.json" &
    pids+=("$!")
    sessions_pid=$!
    wait_for 10 test -s "$work/$1.ready" >/dev/null || echo "($1: not every session has a page)"
}
# sessions_end NAME: waits for the sessions; their summary in $work/NAME.json.
sessions_end() { wait "$sessions_pid" || true; [ -s "$work/$1.json" ]; }
# json FILE EXPR: EXPR (Python, over the summary j) printed.
json() { "$PY" -c 'import json, sys; j = json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2"; }
# all_completed NAME: every session of NAME ran to its end.
all_completed() {
    local j=$work/$1.json
    echo "$1: $(json "$j" 'j["completed"]') of $(json "$j" 'j["sessions"]') sessions completed, $(json "$j" 'j["requests"]') requests, longest wait $(json "$j" 'j["max_wait"]') s; lost: $(json "$j" 'j["reasons"] or "none"')"
    [ "$(json "$j" 'j["lost"]')" = 0 ]
}
# loop NAME: new connections (one request each) every 20 ms for at most 30 s.
loop() {
    client "$PY" "$LIB/http-loop.py" "$URL" --every 0.02 --timeout 1 --seconds 30 --max 1500 \
        --stop-file "$work/stop-$1" --out "$work/$1-loop.json" --log "$work/$1-loop.log" &
    pids+=("$!")
    loop_pid=$!
}
loop_end() { touch "$work/stop-$1"; wait "$loop_pid" || true; }
outage() { "$PY" "$LIB/outage.py" "$work/$1-loop.log" --at "$2"; }

# conns N: director N's established connections from the client to the
# IPv4 VIP's port 80, "client-port real-server" a line.
conns() {
    XVSADM_SOCKET=$(dir_socket "$1") "$XVS_BIN/xvsadm" -L -c -n 2>/dev/null |
        awk -v vip="$VIP4:80" '$3 == "ESTABLISHED" && $5 == vip { n = split($4, s, ":"); print s[n], $6 }' | sort
}
# backup_holds NAME: director2's table holds every session of NAME that
# had a page (its client port: longlived.py's ready file), with the real
# server director1 chose.
backup_holds() {
    conns 1 >"$work/conns1"
    conns 2 >"$work/conns2"
    "$PY" - "$work/$1.ready" "$work/conns1" "$work/conns2" <<'EOF'
import json, sys
ports = [s["port"] for s in json.load(open(sys.argv[1]))]
one, two = ({int(p): d for p, d in (l.split() for l in open(f))} for f in sys.argv[2:])
missing = [p for p in ports if p not in two]
differ = [p for p in ports if p in two and one.get(p) != two[p]]
print("director1 lists %d of the %d sessions' connections, director2 %d; %d with another real server"
      % (sum(p in one for p in ports), len(ports), len(ports) - len(missing), len(differ)))
sys.exit(1 if missing or differ or not ports else 0)
EOF
}

# --- killing director1 ------------------------------------------------------------
# kill_at AT HOW: at AT (seconds since the epoch; now if in the past),
# SIGKILL director1: the process only (HOW=process: its host lives on, with
# the addresses it held and its XDP program), or its whole host (HOW=host:
# first the switch drops every frame to and from director1's two ports, in
# one nftables transaction, then the process is killed). Sets killed to
# the instant. The host is cut off at the switch rather than by taking
# its links down: a port going down empties the bridge's forwarding
# entries for it, the bridge then floods director1's frames to every port,
# and director2's XDP program (a veth has no MAC filter before it) would
# see and forward them as a backup, hiding the takeover.
kill_at() {
    local pid
    pid=$(cat "$STATE/director.pid")
    sleep "$(awk -v t="$1" -v n="$(now)" 'BEGIN { d = t - n; printf "%.3f", (d > 0 ? d : 0) }')"
    if [ "$2" = host ]; then
        ip netns exec "$(ns_of switch)" nft -f - <<'NFT'
table bridge xvs_sync_cut {
    chain forward {
        type filter hook forward priority filter; policy accept;
        iifname { "sw-cli1", "sw-dir" } drop
        oifname { "sw-cli1", "sw-dir" } drop
    }
}
NFT
    fi
    killed=$(now)
    kill -KILL "$pid"
    rm -f "$STATE/director.pid"
}
# hold_synacks on|off: every real server drops (on), or sends again (off),
# its SYN-ACKs to the first half of a burst's sessions (client ports
# HALF_OPEN_PORT onwards): held from before the burst to just after the
# kill, those connections are half-open when it comes, in the director's
# table as SYN_RECV (what IPVS never syncs). A real server sends its
# SYN-ACK again 1 s later, and the client its SYN: a takeover has to
# forward them as director1 would have.
hold_synacks() {
    local k servers
    servers=$(sed -n 's/^XVS_SERVERS=//p' "$STATE/cluster.env")
    for ((k = 1; k <= servers; k++)); do
        if [ "$1" = on ]; then
            ip netns exec "$(ns_of "rs$k")" nft -f - <<NFT
table inet xvs_sync_half_open {
    chain output {
        type filter hook output priority filter; policy accept;
        tcp sport 80 tcp dport $HALF_OPEN_PORT-$((HALF_OPEN_PORT + BURST / 2 - 1)) tcp flags & (syn | ack) == syn | ack drop
    }
}
NFT
        else
            ip netns exec "$(ns_of "rs$k")" nft delete table inet xvs_sync_half_open
        fi
    done
}
# burst_start NAME AT PORT: BURST sessions opened over the 100 ms before
# AT, session i from the client's port PORT + i (each burst its own ports:
# the sessions of one that completed leave theirs in TIME_WAIT).
burst_start() {
    client "$PY" "$LIB/longlived.py" "$URL" --burst "$BURST" --at "$2" --seconds "$BURST_LIFE" \
        --source-port "$3" --stop-file "$work/stop" --out "$work/$1.json" &
    pids+=("$!")
    burst_pid=$!
}
# burst_end NAME: waits for them; sets burst_res to the share that survived
# the kill at `killed`, and prints the details.
burst_end() {
    local res
    wait "$burst_pid" || true
    res=$("$PY" - "$work/$1.json" "$killed" <<'PY'
import json, sys
j, killed = json.load(open(sys.argv[1])), float(sys.argv[2])
o = j["opened"]
before = [s for s in o if s["at"] < killed]
est = [s for s in before if s["established"] and s["established"] < killed]
half = [s for s in before if s not in est]
alive = lambda group: sum(1 for s in group if not s["lost"])
print("survived=%d/%d opened_before=%d established=%d/%d half_open=%d/%d first_opened=%+.3f last_opened=%+.3f lost=%s"
      % (j["completed"], j["sessions"], len(before), alive(est), len(est), alive(half), len(half),
         min(s["at"] for s in o) - killed, max(s["at"] for s in o) - killed,
         json.dumps(j["reasons"] or "none").replace(" ", "")))
lost = [s for s in o if s["lost"]]
if len(lost) > 8:
    print("  lost: %d sessions; the first 8:" % len(lost), file=sys.stderr)
for s in lost[:8]:
    if s["lost"]:
        print("  lost: session %d (client port %s) opened %+.3f s, established %s, then %s at %+.3f s" % (
            s["session"], s["port"], s["at"] - killed,
            "%+.3f s" % (s["established"] - killed) if s["established"] else "never", s["lost"],
            next(l["at"] for l in j["lost_sessions"] if l["session"] == s["session"]) - killed
            if any(l["session"] == s["session"] for l in j["lost_sessions"]) else float("nan")), file=sys.stderr)
PY
    )
    echo "$1, the last 100 ms (times relative to the kill): $res"
    burst_res="$(field survived "$res") survived (of those established at the kill $(field established "$res"), of those half-open $(field half_open "$res"))"
}
# some_survived NAME: one session of NAME at least ran to its end.
some_survived() { echo "$(json "$work/$1.json" 'j["completed"]') of $BURST survived"; [ "$(json "$work/$1.json" 'j["completed"]')" != 0 ]; }
# half_open_survived: every session of the last burst (burst_res) that was
# still half-open at the kill survived: its SYN_RECV entry, held 100 ms and
# more, was synced (what IPVS never syncs).
half_open_survived() {
    local h
    h=$(sed -n 's/.*of those half-open \([0-9]*\/[0-9]*\).*/\1/p' <<<"$burst_res")
    echo "half-open at the kill: ${h:-none} survived"
    [ -n "$h" ] && [ "${h#*/}" != 0 ] && [ "${h%/*}" = "${h#*/}" ]
}
# long_res NAME: NAME's long-lived sessions, for the summary.
long_res() { echo "$(json "$work/$1.json" 'j["completed"]')/$LONG long-lived (longest wait $(json "$work/$1.json" 'j["max_wait"]') s)"; }
# loop_res NAME AT: NAME's new connections through an event at AT.
loop_res() {
    local res
    res=$(outage "$1" "$2")
    echo "$1, new connections: $res" >&2
    echo "new connections: $(field failed "$res") of $(field requests "$res") failed, served again $(field served_after "$res") s after"
}

# restart1 NAME: director1 started again; it preempts once its sync holds
# director2's table. Sets took, and restart_res to what it did.
restart1() {
    local at synced log section
    at=$(now)
    start_director 1
    synced=-
    if [ "$sync" = 1 ] && wait_for 8 in_sync 1 >/dev/null; then synced=$(since "$at"); fi
    check "$1: director1 preempts: MASTER, director2 BACKUP" wait_for 8 pair_is MASTER BACKUP
    took=$(since "$at")
    # director1's log since this start: the sync's and the preemption's lines.
    # shellcheck disable=SC2016 # sed's $ (the last line)
    section=$(sed -n '/^--- testbed\/cluster.sh: .*(director1) starting at/h; //!H; ${x;p}' "$STATE/director.log")
    log=$(grep -E 'sync: in sync|ha: would preempt|ha: the connection sync holds|ha: the peer.s table did not arrive|ha: BACKUP -> MASTER' <<<"$section" || true)
    [ -z "$log" ] || awk '{ print "  director1: " $0 }' <<<"$log"
    restart_res="MASTER $took s after its start"
    [ "$sync" = 1 ] || return 0
    restart_res+=", in sync after $synced s, $(
        sed -n 's/.*holds the peer.s table after \([0-9]*\) ms: preempting.*/waited \1 ms for the table/p' <<<"$log" | grep . ||
            echo "no wait (in sync before its preempt delay ran out)"
    )"
    # The table first, then the VIPs: "in sync" logged before "-> MASTER",
    # and no preemption without it.
    table_first() {
        awk '/sync: in sync/ && !m { s = 1 } /-> MASTER/ { m = 1 } /did not arrive/ { bad = 1 } END { exit !(s && m && !bad) }' <<<"$log"
    }
    check "$1: director1 held director2's table before it preempted (its log)" table_first
}

# --- the drills, per mode -----------------------------------------------------------
drill() {
    local mode=$1 at line kill_res fail_res burst1_res host_res
    rm -f "$work"/stop*
    say "a ${mode^^} pair $([ "$sync" = 1 ] && echo "with sync" || echo "WITHOUT sync (--no-sync)"): director1 (150) and director2 (100), $family adverts, xvs-director on $backend"
    local up=(up --ha --ha-family "$family" --mode "$mode")
    [ "$sync" = 0 ] || up+=(--sync)
    "$CLUSTER" "${up[@]}" >"$work/up.log" 2>&1 || { cat "$work/up.log"; die "testbed/cluster.sh ${up[*]} failed"; }
    cluster_up=1
    start_director 1
    start_director 2

    # 1. The pair, in sync.
    check "director1 is MASTER, director2 BACKUP" wait_for 10 pair_is MASTER BACKUP
    if [ "$sync" = 1 ]; then
        check "director2's backup sync daemon is in sync" wait_for 10 in_sync 2
        sync_lines 1
        sync_lines 2
    fi

    # 2. kill -9 the master under load.
    say "${mode^^}: kill -9 director1 (the process) under $LONG long-lived sessions and new connections"
    sessions kill "$KILL_LIFE"
    loop kill
    sleep "$KILL_AFTER" # the load runs a while before the kill
    [ "$sync" = 0 ] || wait_for 5 backup_holds kill >/dev/null || true
    [ "$sync" = 0 ] || check_shown "director2's table holds the $LONG sessions' connections, same real servers" backup_holds kill
    kill_at "$(now)" process
    check "director2 becomes MASTER" wait_for 5 is_state 2 MASTER
    echo "director2 MASTER $(since "$killed") s after the kill"
    sessions_end kill
    loop_end kill
    check_shown "kill -9: all $LONG long-lived sessions completed" all_completed kill
    kill_res="$(long_res kill), $(loop_res kill "$killed")"

    # 3. director1 back: it preempts once it holds director2's table.
    say "${mode^^}: director1 started again under $LONG fresh long-lived sessions (on director2) and new connections"
    sessions failback "$FAILBACK_LIFE"
    loop failback
    sleep "$FAILBACK_AFTER"
    at=$(now)
    restart1 failback
    # The sessions must outlive the preemption, or it tested nothing.
    preempted_in_time() { awk -v t="$took" -v l="$((FAILBACK_LIFE - FAILBACK_AFTER - 2))" 'BEGIN { exit !(t < l) }'; }
    check "failback: the preemption came while the sessions ran (before the last 2 s of their life)" preempted_in_time
    sessions_end failback
    loop_end failback
    check_shown "failback: no long-lived session lost" all_completed failback
    fail_res="$(long_res failback), director1 $restart_res, $(loop_res failback "$at")"

    # 4. The last 100 ms before a kill -9 of the process.
    say "${mode^^}: $BURST sessions opened in the 100 ms before kill -9 director1 (the process)"
    [ "$sync" = 0 ] || check "director2's backup sync daemon is in sync again" wait_for 10 in_sync 2
    at=$(awk -v t="$(now)" 'BEGIN { printf "%.3f", t + 1.5 }')
    burst_start burst "$at" "$((HALF_OPEN_PORT + 1000))"
    kill_at "$at" process
    check "director2 becomes MASTER" wait_for 5 is_state 2 MASTER
    burst_end burst
    burst1_res=$burst_res
    [ "$sync" = 0 ] || [ "$mode" != nat ] || check_shown "the last 100 ms before kill -9: some sessions survived on VS/NAT" some_survived burst

    # 5. The master's host dies: kill -9 and its links down at once, under
    # long-lived sessions, new connections and a burst in the last 100 ms.
    say "${mode^^}: director1's host dies (cut off at the switch, then kill -9) under $LONG long-lived sessions, new connections and $BURST sessions opened in its last 100 ms"
    restart1 "host crash"
    [ "$sync" = 0 ] || check "director2's backup sync daemon is in sync again" wait_for 10 in_sync 2
    sessions host "$KILL_LIFE"
    loop host
    [ "$sync" = 0 ] || wait_for 5 backup_holds host >/dev/null || true
    [ "$sync" = 0 ] || check_shown "director2's table holds the $LONG sessions' connections, same real servers" backup_holds host
    at=$(awk -v t="$(now)" 'BEGIN { printf "%.3f", t + 1 }')
    hold_synacks on
    # The cut takes effect some 20-40 ms after nft starts (its transaction,
    # in the switch's namespace): the burst's window ends then.
    burst_start hostburst "$(awk -v t="$at" 'BEGIN { printf "%.3f", t + 0.02 }')" "$HALF_OPEN_PORT"
    kill_at "$at" host
    hold_synacks off
    check "director2 becomes MASTER" wait_for 5 is_state 2 MASTER
    echo "director2 MASTER $(since "$killed") s after the crash"
    sessions_end host
    loop_end host
    burst_end hostburst
    check_shown "host crash: all $LONG long-lived sessions completed" all_completed host
    [ "$sync" = 0 ] || json "$STATE/stats2.json" '"director2 imported %s; its receiver: %s" % (j["sync"]["import"], {k: v for k, v in j["sync"]["receiver"].items() if v})' ||
        echo "(director2's stats file has no sync figures)"
    [ "$sync" = 0 ] || [ "$mode" != nat ] || check_shown "host crash, the last 100 ms: some sessions survived on VS/NAT" some_survived hostburst
    [ "$sync" = 0 ] || check_shown "host crash, the last 100 ms: every session still half-open at the kill survived" half_open_survived
    host_res="$(long_res host), $(loop_res host "$killed"), last 100 ms: $burst_res"

    line="$([ "$sync" = 1 ] && echo sync || echo "no sync") ${mode^^}: kill -9: $kill_res; failback: $fail_res; last 100 ms before kill -9: $burst1_res; host crash: $host_res"
    echo "$line"
    summary+=("$line")
    down
}

for mode in "${modes[@]}"; do drill "$mode"; done

echo "summary ($([ "$sync" = 1 ] && echo "sync on" || echo "no sync"), $family, $backend):"
printf '  %s\n' "${summary[@]}"
if [ "$failures" -gt 0 ]; then
    echo "e2e/sync.sh: $failures check(s) failed"
    exit 1
fi
echo "e2e/sync.sh: all checks passed"
