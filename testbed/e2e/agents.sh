#!/usr/bin/env bash
# End-to-end: the director's weights follow its real-server agents' load
# reports (issue #15), on a NAT cluster of testbed/cluster.sh up --agents:
# three real servers of weight 10 (wrr, so that shares follow weights
# exactly), each nginx in a cgroup v1 of its own (half a CPU of quota),
# each with `xvs-agent run` reporting every 0.5 s; the director's
# `[agents]` has timeout 3 s.
#
#   xvs-client ── xvs-director (xvs-director, [agents] on UDP 7405) ── xvs-switch ── xvs-rs1..3
#   request loops,                 ^                                               nginx in cgroup
#   forged reports                 └──────── signed reports every 0.5 s ────────── PREFIX-rsK,
#                                                                                  xvs-agent run
#
# Checks:
#   1. every agent's report arrives: `xvsadm -L -n --load` shows rs1..rs3
#      ready, with fresh reports, weights 10 (configured 10);
#   2. a CPU burner in rs1's cgroup (bounded to 60 s, killed by PID): within
#      15 s rs1's effective weight falls (and -S still saves 10), and its
#      share of 300 new connections falls below the unloaded share (both
#      measured and printed);
#   3. the burner killed: rs1's weight comes back to 10;
#   4. rs2 loaded, then its agent stopped: its weight returns to the
#      configured 10 after the timeout (not before 2 s);
#   5. truncated, forged (another key), unknown-key, replayed (an old
#      sequence of rs3's identity), stale (a minute old) and unknown-server
#      reports from the client and from rs3 (a Python sender signing with
#      `hmac`, as agent.sh verifies): all refused, each counted by reason in
#      xvs_agent_reports_total, and rs3's weight and state unchanged
#      although every one of them says `maint` at full CPU.
#
#   testbed/e2e/agents.sh [--backend xdp|packet]   (under flock /tmp/xvs-netns.lock)
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
METRICS=127.0.0.1:9531

e2e_preflight agents.sh xvs-director xvsadm xvs-agent
[ -d /sys/fs/cgroup/cpuacct ] || skip_missing e2e/agents.sh "cgroup v1 controllers under /sys/fs/cgroup (cpu, cpuacct, memory, blkio)"

cluster_up=0
burners=()
work=$(mktemp -d)
cleanup() {
    local rc=$? p
    for p in "${burners[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${burners[@]}"; do wait "$p" 2>/dev/null || true; done
    e2e_cluster_down 30 xvsadm -L -n --load
    rm -rf "$work"
    exit "$rc"
}
trap cleanup EXIT

say "NAT cluster with an agent on every real server (xvs-director, $backend backend)"
"$CLUSTER" up --mode nat --servers 3 --weights 10,10,10 --scheduler wrr --agents >"$work/up.log" 2>&1 ||
    { cat "$work/up.log"; die "testbed/cluster.sh up --agents failed"; }
cluster_up=1
"$CLUSTER" balancer start xvs --backend "$backend" -- --metrics-listen "$METRICS" --log-interval 0

# load_field K COLUMN: a column of rsK's line of `-L -n --load` (2: address,
# 3: weight in force, 4: configured, 5: agent, 6: state, 7: age).
load_field() { xvsadm -L -n --load -t "$VIP4:80" | awk -v rs="$(rs4 "$1"):80" -v c="$2" '$2 == rs { print $c }'; }
weight() { load_field "$1" 3; }
weight_is() { [ "$(weight "$1")" = "$2" ]; }
weight_at_most() { local w; w=$(weight "$1"); [ -n "$w" ] && [ "$w" != out ] && [ "$w" -le "$2" ]; }
all_reporting() {
    local k
    for k in 1 2 3; do
        [ "$(load_field "$k" 5)" = "rs$k" ] && [ "$(load_field "$k" 6)" = ready ] || return 1
    done
}

# share K N: rsK's share, in percent, of N new connections from the client.
share() {
    requests "$2"
    [ "$bad" = 0 ] || echo "($bad of $2 requests failed)" >&2
    echo $((100 * ${got[rs$1]:-0} / $2))
}

# burn K: a CPU burner in rsK's cgroup (at most 60 s); its PID in burner.
# It needs no network: it joins the cgroup from here and stays in this
# namespace.
burner=""
burn() {
    local cg=/$XVS_NS_PREFIX-rs$1
    sh -c 'echo $$ >"/sys/fs/cgroup/cpu$1/cgroup.procs"; echo $$ >"/sys/fs/cgroup/cpuacct$1/cgroup.procs"; exec "$2" -c "import time
end = time.monotonic() + 60
while time.monotonic() < end:
    pass"' sh "$cg" "$PY" &
    burner=$!
    burners+=("$burner")
}

# --- 1. reports arrive ---------------------------------------------------
poll "every agent's first report" 15 all_reporting || true
check "xvsadm -L -n --load: rs1..rs3 report, ready, weight 10 of 10" all_reporting
xvsadm -L -n --load

# --- 2. load on rs1 --------------------------------------------------------
say "rs1 loaded: a CPU burner in its cgroup"
before=$(share 1 300)
echo "rs1's share of 300 new connections, unloaded: $before %"
burn 1
rs1_burner=$burner
check "rs1's effective weight falls within 15 s" wait_for 15 weight_at_most 1 6
echo "rs1 under load: weight $(weight 1) (configured $(load_field 1 4)), after $waited s"
xvsadm -L -n --load -t "$VIP4:80"
saves_configured() { xvsadm -S -n | grep -F -- "-r $(rs4 1):80 -m -w 10"; }
check "xvsadm -S still saves rs1's configured weight 10" saves_configured
during=$(share 1 300)
echo "rs1's share of 300 new connections, loaded: $during % (unloaded: $before %)"
share_fell() { [ "$during" -lt $((before - 5)) ]; }
check "rs1's share of new connections falls ($before % -> $during %)" share_fell

# --- 3. load removed --------------------------------------------------------
kill "$rs1_burner"
wait "$rs1_burner" 2>/dev/null || true
check "the burner stopped: rs1's weight is 10 again within 15 s" wait_for 15 weight_is 1 10

# --- 4. an agent stops -------------------------------------------------------
say "rs2 loaded, then its agent stopped"
burn 2
rs2_burner=$burner
check "rs2's effective weight falls" wait_for 15 weight_at_most 2 6
kill "$(cat "$STATE/rs2/agent.pid")"
stopped=$(date +%s.%N)
back_after_timeout() {
    wait_for 15 weight_is 2 10 || return 1
    local took
    took=$(awk -v a="$stopped" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
    echo "rs2's weight back to 10 ${took} s after its agent stopped (timeout 3 s)"
    awk -v t="$took" 'BEGIN { exit !(t >= 2.0) }'
}
check "rs2's agent silent: its weight returns to the configured 10 after the timeout" back_after_timeout
kill "$rs2_burner"
wait "$rs2_burner" 2>/dev/null || true

# --- 5. forged reports ---------------------------------------------------------
say "forged, replayed, truncated, stale and unknown reports, from the client and from rs3"
cat >"$work/send.py" <<'EOF'
"""Sends one report of each bad kind to DIRECTOR:7405, all for ADDRESS,
all asking `maint` at full CPU, so that one accepted would show."""
import hashlib, hmac, ipaddress, os, socket, sys, time

key_file, director, address = sys.argv[1:4]
key = open(key_file, "rb").read()

def report(key, key_id=1, identity=b"rs3", address=address, ts=None, seq=None):
    b = bytearray(140)
    b[0:4] = b"XVSL"; b[4] = 1; b[5] = 2; b[6] = 4
    b[8:12] = key_id.to_bytes(4, "big")
    b[12:44] = identity.ljust(32, b"\0")
    b[44:48] = ipaddress.ip_address(address).packed
    now = int(time.time() * 1000)
    b[60:68] = (now if ts is None else ts).to_bytes(8, "big")
    b[68:76] = (now * 1000 if seq is None else seq).to_bytes(8, "big")
    b[76:80] = (500).to_bytes(4, "big")
    b[80:82] = (1000).to_bytes(2, "big")
    b[82:108] = b"\xff" * 26
    b[108:140] = hmac.new(key, bytes(b[:108]), hashlib.sha256).digest()
    return bytes(b)

kinds = {
    "malformed": report(key)[:100],
    "bad_mac": report(os.urandom(32)),
    "unknown_key": report(key, key_id=9),
    "replayed": report(key, seq=1),
    "stale": report(key, ts=int(time.time() * 1000) - 60_000),
    "unknown_server": report(key, address="192.0.2.99"),
}
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for kind, datagram in kinds.items():
    s.sendto(datagram, (director, 7405))
    print("sent", kind, len(datagram), "bytes")
EOF
reports_by() { scrape | awk -v r="result=\"$1\"" '/^xvs_agent_reports_total\{/ && index($0, r) { print $NF }'; }
reasons=(malformed bad_mac unknown_key replayed stale unknown_server)
declare -A was
for r in "${reasons[@]}"; do was[$r]=$(reports_by "$r"); done
rs3_before="$(weight 3) $(load_field 3 6)"
client "$PY" "$work/send.py" "$STATE/agent.key" 198.51.100.1 "$(rs4 3)"
ip netns exec "$(ns_of rs3)" "$PY" "$work/send.py" "$STATE/agent.key" 192.0.2.1 "$(rs4 3)"
sent=$(date +%s.%N)
counted() {
    local r n ok=0
    for r in "${reasons[@]}"; do
        n=$(reports_by "$r")
        echo "xvs_agent_reports_total{result=\"$r\"}: ${was[$r]:-0} -> $n"
        [ "$((n - ${was[$r]:-0}))" = 2 ] || ok=1
    done
    return "$ok"
}
poll "the refusals to be counted" 5 counted >/dev/null || true
check "each bad report refused and counted by reason (two of each)" counted
# reported_since_sent: rs3's own agent has had a report accepted after the
# bad ones were sent (its report's age, shown to a tenth of a second and cut
# down, plus 0.1 s is less than the time since).
reported_since_sent() {
    local age
    age=$(load_field 3 7)
    awk -v age="${age%s}" -v a="$sent" -v b="$(date +%s.%N)" 'BEGIN { exit !(age ~ /^[0-9.]+$/ && age + 0.1 < b - a) }'
}
unchanged() {
    wait_for 5 reported_since_sent || return 1
    local now
    now="$(weight 3) $(load_field 3 6)"
    echo "rs3 before: $rs3_before, after: $now"
    [ "$now" = "$rs3_before" ] && [ "$now" = "10 ready" ]
}
check "rs3's weight and state unchanged (10, ready) though each bad report said maint" unchanged
accepted_still_growing() { [ "$(reports_by accepted)" -gt 0 ]; }
check "the agents' own reports are still accepted" accepted_still_growing

if [ "$failures" -gt 0 ]; then
    echo "e2e/agents.sh: $failures check(s) failed"
    exit 1
fi
echo "e2e/agents.sh: all checks passed"
