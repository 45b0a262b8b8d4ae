#!/usr/bin/env bash
# End-to-end drills for operating the director (issue #7), on a NAT cluster
# of testbed/cluster.sh (3 real servers, rr, weights 1,1,1):
#
#   1. xvsadm changes live forwarding: -L -n shows the table; a deleted real
#      server gets no new connections, an added one does; weight 0 on the
#      server of an open keep-alive connection: no new connections for it,
#      the open one keeps working; deleted: the open one still drains;
#      -S -n | -C | -R leaves -S -n identical and traffic flowing.
#   2. Reloads with traffic running (a bounded loop of short requests from
#      the client): SIGHUP with the file unchanged, a weight changed, a real
#      server removed and added back, an invalid file (refused, state kept),
#      and a change picked up by autoreload — zero failed requests, and
#      xvsadm -L -n shows the expected state after each.
#   3. Metrics scraped during traffic: node_ipvs_* and xvs_* parse, and the
#      connections counted for the service equal the requests the client
#      made in the window.
#
#   testbed/e2e/control.sh [--backend xdp|packet]
#
# Prints one PASS or FAIL line per check, exits 1 if any failed. Skips (exit
# 0, says why; a failure under XVS_REQUIRE_ALL=1) when not root or without
# network namespaces. Namespaces are named by XVS_NS_PREFIX (default xvs;
# see cluster.sh).
set -euo pipefail
# shellcheck source=../lib/common.sh
. "$(dirname "$0")/../lib/common.sh"
# shellcheck source=../lib/e2e.sh
. "$(dirname "$0")/../lib/e2e.sh"

e2e_parse_backend "$@"

e2e_env
METRICS=127.0.0.1:9531

e2e_preflight control.sh xvs-director xvsadm

cluster_up=0
ka_pid=""
loop_pid=""
work=$(mktemp -d)
cleanup() {
    local rc=$?
    [ -n "$ka_pid" ] && kill "$ka_pid" 2>/dev/null || true
    [ -n "$loop_pid" ] && kill "$loop_pid" 2>/dev/null || true
    e2e_cluster_down 30
    rm -rf "$work"
    exit "$rc"
}
trap cleanup EXIT

say "NAT cluster for the control drills (xvs-director, $backend backend)"
"$CLUSTER" up --mode nat --servers 3 --weights 1,1,1 --scheduler rr >"$work/up.log" 2>&1 ||
    { cat "$work/up.log"; die "testbed/cluster.sh up failed"; }
cluster_up=1
# Autoreload on (ldirectord's autoreload): a changed file is applied without
# a signal. The table goes first in the file, before [[interfaces]].
{ printf '[control]\nautoreload = true\n\n'; cat "$STATE/cluster.toml"; } >"$work/with-control.toml"
cp "$work/with-control.toml" "$STATE/cluster.toml"
"$CLUSTER" balancer start xvs --backend "$backend" -- --metrics-listen "$METRICS" --log-interval 0
PID=$(cat "$STATE/director.pid")
CONFIG=$STATE/cluster.toml
cp "$CONFIG" "$work/original.toml"

# --- 1. xvsadm changes live forwarding -------------------------------------
say "xvsadm: the table, and changes to it"
table_has_three() {
    local out
    out=$(xvsadm -L -n)
    echo "$out"
    head -1 <<<"$out" | grep -q '^IP Virtual Server version 1.2.1 (size=' &&
        grep -q "^TCP  $VIP4:80 rr\$" <<<"$out" &&
        [ "$(grep -c -- '-> 192.0.2.1[123]:80 *Masq    1 ' <<<"$out")" = 3 ]
}
check "xvsadm -L -n lists the service and its three NAT real servers, as ipvsadm lays them out" table_has_three

# What a new user types after the demo, from the repository, in a shell
# that has neither the built binaries on PATH nor XVSADM_SOCKET set.
by_hand() {
    local out
    out=$(cd "$XVS_ROOT" && env -u XVSADM_SOCKET PATH=/usr/sbin:/usr/bin:/sbin:/bin \
        testbed/cluster.sh exec director xvsadm -L -n) || { echo "$out"; return 1; }
    echo "$out"
    grep -q "^TCP  $VIP4:80 rr\$" <<<"$out" &&
        [ "$(grep -c -- '-> 192.0.2.1[123]:80 *Masq    1 ' <<<"$out")" = 3 ]
}
check "testbed/cluster.sh exec director xvsadm -L -n, typed by hand, lists the table" by_hand

deleted_gets_none() {
    xvsadm -d -t "$VIP4:80" -r "$(rs4 3):80" || return 1
    [ -z "$(listed "$(rs4 3)")" ] || { echo "still listed"; return 1; }
    requests 60
    echo "served: ${got[*]} failed $bad"
    [ "$bad" = 0 ] && [ "${got[rs3]:-0}" = 0 ] && [ "${got[rs1]:-0}" -gt 0 ] && [ "${got[rs2]:-0}" -gt 0 ]
}
check "xvsadm -d: the deleted real server gets no new connection, the others get all 60" deleted_gets_none

added_gets_some() {
    xvsadm -a -t "$VIP4:80" -r "$(rs4 3):80" -m -w 1 || return 1
    requests 60
    echo "served: rs1 ${got[rs1]:-0} rs2 ${got[rs2]:-0} rs3 ${got[rs3]:-0}, failed $bad"
    [ "$bad" = 0 ] && [ "${got[rs3]:-0}" -ge 15 ]
}
check "xvsadm -a: the added real server gets its share of new connections at once" added_gets_some

# A keep-alive connection, driven through a coprocess.
coproc KA { ip netns exec "$(ns_of client)" "$PY" "$LIB/keepalive.py" "$URL"; }
ka_pid=$KA_PID
read -r -t 10 ka_server <&"${KA[0]}" || ka_server=""
ka() { # N: N requests on the keep-alive connection; all must come from $ka_server
    local i line ok=0
    echo "go $1" >&"${KA[1]}"
    for ((i = 0; i < $1; i++)); do
        read -r -t 10 line <&"${KA[0]}" || { echo "no answer"; return 1; }
        echo "$line"
        [ "$line" = "ok $ka_server" ] && ok=$((ok + 1))
    done
    [ "$ok" = "$1" ]
}
ka_k=${ka_server#rs}
quiesced_keeps_keepalive() {
    [ -n "$ka_server" ] || { echo "the keep-alive connection got no first answer"; return 1; }
    xvsadm -e -t "$VIP4:80" -r "$(rs4 "$ka_k"):80" -m -w 0 || return 1
    listed "$(rs4 "$ka_k")" | grep -q 'Masq    0 ' || { listed "$(rs4 "$ka_k")"; return 1; }
    ka 5 || return 1
    requests 60
    echo "new connections: rs1 ${got[rs1]:-0} rs2 ${got[rs2]:-0} rs3 ${got[rs3]:-0}, failed $bad"
    [ "$bad" = 0 ] && [ "${got[$ka_server]:-0}" = 0 ] || return 1
    ka 5
}
check "weight 0 (xvsadm -e -w 0): no new connection for $ka_server, its open keep-alive connection keeps working" quiesced_keeps_keepalive

deleted_drains() {
    xvsadm -d -t "$VIP4:80" -r "$(rs4 "$ka_k"):80" || return 1
    ka 5
}
check "xvsadm -d of that server: its open keep-alive connection drains (expire_nodest_conn off)" deleted_drains
echo quit >&"${KA[1]}" || true
wait "$ka_pid" 2>/dev/null || true
ka_pid=""
xvsadm -a -t "$VIP4:80" -r "$(rs4 "$ka_k"):80" -m -w 1 || true

save_restore() {
    xvsadm -S -n >"$work/saved" || return 1
    xvsadm -C || return 1
    [ -z "$(xvsadm -S -n)" ] || { echo "-C left a table"; return 1; }
    xvsadm -R <"$work/saved" || return 1
    xvsadm -S -n >"$work/again" || return 1
    diff "$work/saved" "$work/again" || return 1
    requests 30
    [ "$bad" = 0 ] && [ "${got[rs1]:-0}" -gt 0 ]
}
check "xvsadm -S -n | -C | -R: -S -n identical, and traffic flows" save_restore

errors_as_ipvsadm() {
    local out rc=0
    out=$(xvsadm -A -t "$VIP4:80" -s rr 2>&1) || rc=$?
    echo "$out (exit $rc)"
    [ "$rc" = 255 ] && [ "$(head -1 <<<"$out")" = "Service already exists" ] || return 1
    rc=0
    out=$(xvsadm -a -t "$VIP4:81" -r "$(rs4 1)" -m 2>&1) || rc=$?
    echo "$out (exit $rc)"
    [ "$rc" = 255 ] && [ "$(head -1 <<<"$out")" = "Service not defined" ]
}
check "errors as ipvsadm gives them (message, exit status 255)" errors_as_ipvsadm

# --- 2. reloads with traffic running ---------------------------------------
say "reloads under a bounded request loop"
# weight_is K W: real server K is listed with weight W.
weight_is() { listed "$(rs4 "$1")" | grep -q "Masq    $2 "; }
# logged TEXT: how many lines of the director's log contain TEXT.
logged() { grep -c -F -- "$1" "$STATE/director.log" || true; }
more_logged() { [ "$(logged "$1")" -gt "$2" ]; }
# service_conns: the connections the service has scheduled so far.
service_conns() { xvsadm -L -n --stats --exact -t "$VIP4:80" | awk '$1 == "TCP" { print $3 }'; }
more_conns() { [ "$(service_conns)" -gt "$1" ]; }
is_listed() { [ -n "$(listed "$1")" ]; }
not_listed() { [ -z "$(listed "$1")" ]; }
# The file is unchanged since the start, so autoreload does nothing here:
# the signal alone brings the table back to the file's state.
sighup_reapplies() {
    xvsadm -e -t "$VIP4:80" -r "$(rs4 1):80" -m -w 5 || return 1
    listed "$(rs4 1)" | grep -q 'Masq    5 ' || return 1
    kill -HUP "$PID"
    poll "rs1 back at the file's weight 1" 10 weight_is 1 1 || { listed "$(rs4 1)"; return 1; }
}
check "SIGHUP re-applies the file over a runtime change (weight 5 -> the file's 1)" sighup_reapplies
rm -f "$work/stop"
conns_before=$(service_conns)
client "$PY" "$LIB/http-loop.py" "$URL" --seconds 90 --max 40000 --pause 0.002 \
    --stop-file "$work/stop" --out "$work/loop.json" &
loop_pid=$!
# The reloads below must happen with traffic running: wait until it is.
poll "the request loop's first connections through the director" 10 more_conns "$conns_before" ||
    fail "the request loop got no connection through the director"

# table_state: -L -n without the connection counts, which move with the
# traffic (protocol/address/scheduler, or arrow/address/method/weight).
table_state() { xvsadm -L -n | awk '{ print $1, $2, $3, $4 }'; }
# reload_with FILE OUTCOME: installs FILE as the config, sends SIGHUP, and
# waits until the director's log says OUTCOME ("configuration reloaded" or
# "reload refused") once more than before. Autoreload may reload the file
# as well, a moment before or after the signal's reload: a check that
# expects a change polls -L -n for it too.
reload_with() {
    local n
    n=$(logged "$2")
    cp "$1" "$CONFIG"
    kill -HUP "$PID"
    poll "the director's log to say '$2'" 10 more_logged "$2" "$n"
}
before=$(table_state)
unchanged() {
    reload_with "$work/original.toml" "configuration reloaded" || return 1
    diff <(echo "$before") <(table_state)
}
check "reload of an unchanged file: -L -n unchanged" unchanged

"$PY" "$LIB/edit-config.py" "$work/original.toml" --weight "$(rs4 2)=3" >"$work/weight.toml"
weight_changed() {
    reload_with "$work/weight.toml" "configuration reloaded" || return 1
    poll "rs2 listed at weight 3" 10 weight_is 2 3 || { listed "$(rs4 2)"; return 1; }
    listed "$(rs4 2)"
    weight_is 1 1
}
check "reload with rs2's weight 1 -> 3: -L -n shows it" weight_changed

"$PY" "$LIB/edit-config.py" "$work/weight.toml" --remove "$(rs4 3)" >"$work/removed.toml"
server_removed() {
    reload_with "$work/removed.toml" "configuration reloaded" || return 1
    poll "rs3 no longer listed" 10 not_listed "$(rs4 3)"
    xvsadm -L -n -t "$VIP4:80"
    [ -z "$(listed "$(rs4 3)")" ] && [ -n "$(listed "$(rs4 1)")" ]
}
check "reload without rs3: -L -n no longer lists it" server_removed

server_added() {
    reload_with "$work/weight.toml" "configuration reloaded" || return 1
    poll "rs3 listed again" 10 is_listed "$(rs4 3)"
}
check "reload with rs3 back: -L -n lists it again" server_added

"$PY" "$LIB/edit-config.py" "$work/weight.toml" --scheduler nosuch >"$work/invalid.toml"
invalid_refused() {
    local state
    state=$(table_state)
    reload_with "$work/invalid.toml" "reload refused, the running state is kept" || return 1
    grep 'reload refused' "$STATE/director.log" | tail -1
    diff <(echo "$state") <(table_state)
}
check "reload of an invalid file (unknown scheduler): refused, logged, running state kept" invalid_refused
reload_with "$work/original.toml" "configuration reloaded" || fail "the original file was not reloaded"

autoreloaded() {
    local i
    cp "$work/weight.toml" "$CONFIG" # no signal
    for ((i = 0; i < 50; i++)); do
        listed "$(rs4 2)" | grep -q 'Masq    3 ' && return 0
        sleep 0.1
    done
    listed "$(rs4 2)"
    return 1
}
check "autoreload: a changed file is applied without a signal" autoreloaded

# The reloads no longer wait fixed seconds: let the loop reach the 500
# requests the next check asks for (one per 2 ms pause and round trip).
at_least_500() { [ $(($(service_conns) - conns_before)) -ge 500 ]; }
poll "500 requests from the loop" 30 at_least_500 || true
touch "$work/stop"
wait "$loop_pid" || true
loop_pid=""
loop_clean() {
    cat "$work/loop.json"
    "$PY" -c '
import json, sys
s = json.load(open(sys.argv[1]))
sys.exit(0 if s["failed"] == 0 and s["total"] >= 500 else 1)' "$work/loop.json"
}
check "zero failed requests through every reload (and at least 500 made)" loop_clean
echo "      request loop through the reloads: $(cat "$work/loop.json")"

# --- 3. metrics --------------------------------------------------------------
say "metrics during traffic"
# conns_metric: the service's connections, summed over its real servers.
conns_metric() {
    scrape | awk -v vip="$VIP4" '
        /^xvs_backend_connections_total\{/ && index($0, "local_address=\"" vip "\"") && index($0, "local_port=\"80\"") { n += $NF }
        END { print n + 0 }'
}
# settled_conns: conns_metric once two scrapes 0.3 s apart agree (workers
# publish their counters every 100 ms: a scrape right after traffic may
# miss the last of it).
settled_conns() {
    local a b i
    a=$(conns_metric)
    for ((i = 0; i < 20; i++)); do
        sleep 0.3
        b=$(conns_metric)
        [ "$a" = "$b" ] && break
        a=$b
    done
    echo "$a"
}
metrics_match() {
    local before after text
    text=$(scrape)
    for m in node_ipvs_connections_total node_ipvs_incoming_packets_total node_ipvs_backend_connections_active \
        node_ipvs_backend_connections_inactive node_ipvs_backend_weight xvs_drops_total xvs_conn_table_entries \
        xvs_conn_table_capacity xvs_worker_frames_total xvs_worker_polls_total xvs_neighbour_misses_total; do
        grep -q "^$m" <<<"$text" || { echo "no $m"; return 1; }
    done
    grep -q "^node_ipvs_backend_weight{local_address=\"$VIP4\",local_mark=\"\",local_port=\"80\",proto=\"TCP\",remote_address=\"$(rs4 1)\",remote_port=\"80\"} 1\$" <<<"$text" ||
        { grep '^node_ipvs_backend_weight' <<<"$text"; return 1; }
    before=$(settled_conns)
    requests 200
    after=$(settled_conns)
    echo "client: 200 requests, $bad failed; metrics: $before -> $after"
    [ "$bad" = 0 ] && [ $((after - before)) = 200 ]
}
check "metrics: node_ipvs_* and xvs_* present; connections counted = the client's 200 requests" metrics_match

"$CLUSTER" down >/dev/null
cluster_up=0
if [ "$failures" -gt 0 ]; then
    echo "e2e/control.sh ($backend): $failures check(s) failed"
    exit 1
fi
echo "e2e/control.sh ($backend): all checks passed"
