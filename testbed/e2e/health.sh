#!/usr/bin/env bash
# End-to-end drills for health checks (issue #8), on a NAT cluster of
# testbed/cluster.sh with four real servers: rs1..rs3 serve the IPv4 HTTP
# service (rr), rs4 is its fallback ("sorry") server. The service is checked
# with an HTTP negotiate check (GET /, expect "rs", interval 0.5 s, 2
# failures to go down, 2 successes to come back, 1 s timeouts), removal
# mode (not quiescent), and passive checks on. A bounded request loop runs
# from the client throughout, and each drill reports the requests that
# failed.
#
#   1. nginx on rs1 stopped: out of rotation within interval x failures +
#      timeout (and at once through the passive check: the director sees
#      rs1's RST to the SYNs it sends there); no new connection goes to it.
#   2. nginx on rs1 started again: back in rotation after 2 successes.
#   3. rs2 answers the wrong content: down, and the log says why.
#   4. rs3 hangs (accepts, never answers): down by the negotiate timeout.
#   5. Every server down: the fallback (rs4) answers; one back: it stops.
#
#   testbed/e2e/health.sh [--backend xdp|packet]
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

e2e_preflight health.sh xvs-director xvsadm

cluster_up=0
loop_pid=""
hang_pid=""
work=$(mktemp -d)
cleanup() {
    local rc=$?
    [ -n "$loop_pid" ] && kill "$loop_pid" 2>/dev/null || true
    [ -n "$hang_pid" ] && kill "$hang_pid" 2>/dev/null || true
    e2e_cluster_down 30
    rm -rf "$work"
    exit "$rc"
}
trap cleanup EXIT

in_rotation() { [ -n "$(listed "$(rs4 "$1")")" ]; }
not_in_rotation() { ! in_rotation "$1"; }
none_in_rotation() { ! in_rotation 1 && ! in_rotation 2 && ! in_rotation 3; }

nginx_stop() { kill -TERM "$(cat "$STATE/rs$1/nginx.pid")"; }
nginx_start() { ip netns exec "$(ns_of "rs$1")" nginx -q -c "$STATE/rs$1/nginx.conf" -e "$STATE/rs$1/error.log"; }

# loop_start NAME / loop_stop NAME: a background request loop; loop_stop
# prints its summary and sets loop_failed.
# loop_start returns once the loop's connections reach the director.
loop_start() {
    local before
    before=$(service_conns)
    rm -f "$work/stop"
    client "$PY" "$LIB/http-loop.py" "$URL" --seconds 60 --max 30000 --pause 0.01 \
        --stop-file "$work/stop" --out "$work/loop-$1.json" &
    loop_pid=$!
    poll "the '$1' request loop's first connections through the director" 10 more_conns "$before" ||
        fail "the '$1' request loop got no connection through the director"
}
loop_failed=0
loop_stop() {
    touch "$work/stop"
    wait "$loop_pid" || true
    loop_pid=""
    loop_failed=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["failed"])' "$work/loop-$1.json")
    echo "request loop during '$1': $(cat "$work/loop-$1.json")"
}

say "NAT cluster for the health drills (xvs-director, $backend backend)"
"$CLUSTER" up --mode nat --servers 4 --weights 1,1,1,1 --scheduler rr >"$work/up.log" 2>&1 ||
    { cat "$work/up.log"; die "testbed/cluster.sh up failed"; }
cluster_up=1
# The IPv4 HTTP service: rs1..rs3 checked, rs4 its fallback.
"$PY" - "$STATE/cluster.toml" "$(rs4 4)" >"$work/health.toml" <<'EOF'
import re, sys
path, sorry = sys.argv[1], sys.argv[2]
text = open(path).read()
head, *blocks = re.split(r"(?m)^(?=\[\[services\]\])", text)
out = [head]
for b in blocks:
    if 'proto = "tcp"' in b and 'vip = "203.0.113.10"' in b:
        parts = re.split(r"(?m)^(?=\[\[services\.real_servers\]\])", b)
        svc, servers = parts[0], [p for p in parts[1:] if 'address = "%s"' % sorry not in p]
        svc = svc.rstrip("\n") + '\nfallback = { address = "%s", port = 80, method = "nat" }\n\n' % sorry
        svc += ('[services.health]\ncheck = "negotiate"\nservice = "http"\nrequest = "/"\nreceive = "rs"\n'
                'interval = "500ms"\nconnect_timeout = 1\nnegotiate_timeout = 1\nfailures = 2\nsuccesses = 2\n'
                'quiescent = false\npassive = true\n\n')
        b = svc + "".join(servers)
    out.append(b)
sys.stdout.write("".join(out))
EOF
cp "$work/health.toml" "$STATE/cluster.toml"
"$CLUSTER" balancer start xvs --backend "$backend" -- --log-interval 0 --metrics-listen 127.0.0.1:9532

# The first checks (every 0.5 s) bring the servers up, if they start down.
all_three() { in_rotation 1 && in_rotation 2 && in_rotation 3 && ! in_rotation 4; }
three_in_rotation() {
    wait_for 6 all_three || { xvsadm -L -n -t "$VIP4:80"; return 1; }
    xvsadm -L -n -t "$VIP4:80"
}
check "three checked real servers in rotation, the fallback not listed" three_in_rotation

# service_conns: the connections the service has scheduled so far.
service_conns() { xvsadm -L -n --stats --exact -t "$VIP4:80" | awk '$1 == "TCP" { print $3 }'; }
more_conns() { [ "$(service_conns)" -gt "$1" ]; }

# --- 1 and 2: a server stops and comes back --------------------------------
say "nginx on rs1 stops, then starts again"
loop_start stop
nginx_stop 1
# interval x failures + timeout = 2 s; one second more for a loaded machine
# and the 0.1 s polling of xvsadm.
out_of_rotation() { wait_for 3 not_in_rotation 1; }
check "rs1 leaves the rotation within 3 s (interval x failures + timeout = 2 s, plus 1 s of slack)" out_of_rotation
echo "      rs1 out of rotation $(cat "$work/check.out") of stopping nginx"
# Not a wait for anything: the loop runs on for a second after detection,
# so that its failures count what an undetected rs1 would cost.
sleep 1
loop_stop stop
stop_failed=$loop_failed
check_no_new() {
    requests 60
    echo "after detection: ${got[*]} failed $bad"
    [ "$bad" = 0 ] && [ "${got[rs1]:-0}" = 0 ] && [ "${got[rs4]:-0}" = 0 ]
}
check "after detection no new connection goes to rs1 (nor the fallback), none fails" check_no_new
echo "      requests that failed while rs1 was being detected: $stop_failed"
check "the log says why rs1 went down" grep -Eq "health: .*$(rs4 1):80 out of rotation" "$STATE/director.log"

loop_start start
nginx_start 1
back_in() { wait_for 6 in_rotation 1; }
check "rs1 back in rotation after 2 passed checks" back_in
# Not a wait for anything: the loop runs on for a second with rs1 back in
# rotation, which must cost no request.
sleep 1
loop_stop start
check "no request failed while rs1 came back" test "$loop_failed" = 0
gets_again() {
    requests 60
    echo "${got[*]} failed $bad"
    [ "$bad" = 0 ] && [ "${got[rs1]:-0}" -ge 15 ]
}
check "rs1 gets its share again" gets_again

# --- 3: wrong content ----------------------------------------------------
say "rs2 answers the wrong content"
cp "$STATE/rs2/www/index.html" "$work/rs2-index.html"
echo "broken" >"$STATE/rs2/www/index.html"
wrong_content() {
    wait_for 5 not_in_rotation 2 || return 1
    grep -E "$(rs4 2)" "$STATE/director.log" | grep -i 'content' | tail -1
    grep -E "$(rs4 2)" "$STATE/director.log" | grep -qi 'content'
}
check "rs2 with the wrong content: down, and the log names the reason" wrong_content
cp "$work/rs2-index.html" "$STATE/rs2/www/index.html"
check "rs2 back once its content is right" wait_for 6 in_rotation 2

# --- 4: a hung server -----------------------------------------------------
say "rs3 hangs: accepts connections and never answers"
nginx_stop 3
port80_free() { ! ip netns exec "$(ns_of rs3)" ss -Htln 'sport = :80' | grep -q .; }
poll "nginx on rs3 to release port 80" 5 port80_free || fail "nginx on rs3 kept port 80"
ip netns exec "$(ns_of rs3)" "$PY" -c '
import socket, time
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 80)); s.listen(64)
held = []
end = time.monotonic() + 30
s.settimeout(0.5)
while time.monotonic() < end:
    try:
        held.append(s.accept()[0])
    except socket.timeout:
        pass
' &
hang_pid=$!
hung() {
    wait_for 6 not_in_rotation 3 || return 1
    grep -E "$(rs4 3)" "$STATE/director.log" | grep -i 'time' | tail -1
    grep -E "$(rs4 3)" "$STATE/director.log" | grep -qi 'time'
}
check "rs3 hung: down by the negotiate timeout, and the log says so" hung
kill "$hang_pid" 2>/dev/null || true
wait "$hang_pid" 2>/dev/null || true
hang_pid=""
nginx_start 3
check "rs3 back with nginx" wait_for 6 in_rotation 3

# --- 5: every server down: the fallback ------------------------------------
say "every real server down: the fallback answers"
for k in 1 2 3; do nginx_stop "$k"; done
all_down() { wait_for 6 none_in_rotation; }
check "rs1..rs3 all out of rotation" all_down
fallback_answers() {
    requests 20
    echo "${got[*]} failed $bad"
    [ "$bad" = 0 ] && [ "${got[rs4]:-0}" = 20 ]
}
check "the fallback (rs4) answers every request" fallback_answers
nginx_start 2
check "rs2 back" wait_for 6 in_rotation 2
fallback_stops() {
    requests 20
    echo "${got[*]} failed $bad"
    [ "$bad" = 0 ] && [ "${got[rs2]:-0}" = 20 ]
}
check "one server back: the fallback is no longer used" fallback_stops
nginx_start 1
nginx_start 3

health_metrics() {
    local text
    text=$(ip netns exec "$(ns_of director)" curl -s --max-time 5 "http://127.0.0.1:9532/metrics")
    grep '^xvs_backend_up' <<<"$text"
    [ "$(grep -c '^xvs_backend_up{.*local_address="203.0.113.10".* 1$' <<<"$text")" = 3 ] || return 1
    grep '^xvs_backend_health_transitions_total' <<<"$text" | grep -q 'remote_address="192.0.2.11"'
}
check "metrics: xvs_backend_up for the three servers, transitions counted" wait_for 8 health_metrics

# --- 6: a flapping server -----------------------------------------------------
say "rs1 flaps: nginx stopped and started every 0.5 s for 6 s"
transitions_rs1() {
    ip netns exec "$(ns_of director)" curl -s --max-time 5 "http://127.0.0.1:9532/metrics" |
        awk '/^xvs_backend_health_transitions_total\{/ && /remote_address="192.0.2.11"/ && /local_port="80"/ { print $NF }'
}
flapping() {
    local before after i
    wait_for 6 in_rotation 1 || return 1
    before=$(transitions_rs1)
    # The sleeps are the flapping under test, not waits: 0.5 s down, 0.5 s up.
    for ((i = 0; i < 6; i++)); do
        nginx_stop 1
        sleep 0.5
        nginx_start 1
        sleep 0.5
    done
    after=$(transitions_rs1)
    # Each change needs 2 results in a row, one per 0.5 s interval: at most
    # one change per second, 7 in 6 s (a failure count of 1 would allow 12).
    echo "rs1 transitions while flapping: $((after - before))"
    [ $((after - before)) -le 7 ]
}
check "flapping: the rotation changes at most as often as the counts allow" flapping

"$CLUSTER" down >/dev/null
cluster_up=0
if [ "$failures" -gt 0 ]; then
    echo "e2e/health.sh ($backend): $failures check(s) failed"
    exit 1
fi
echo "e2e/health.sh ($backend): all checks passed"
