#!/usr/bin/env bash
# End-to-end: xvs-agent's HAProxy agent-check face against HAProxy itself,
# and its signed UDP reports as a director would receive them (issue #15).
#
#   netns $XVS_NS_PREFIX-agent-lb                 netns $XVS_NS_PREFIX-agent-rs
#   HAProxy (backend "be", server rs1,            xvs-agent run (interval 0.2 s),
#     weight 100, agent-check on rs:5555)         [haproxy] listen 198.51.100.2:5555,
#   a UDP receiver on :7405 (the "director")        counting established connections
#   holder: keeps N connections to rs:80            to port 80 (the only input of its
#   lb0 198.51.100.1/24 <──────── veth ────────>  rs0 198.51.100.2/24   formula here)
#                                                 a TCP server on :80 that keeps them
#
# Checks:
#   1. a report reaches the receiver: 140 bytes, HMAC-SHA256 valid under the
#      key file, for the real server's address 198.51.100.2, state ready;
#   2. no connections: HAProxy's stats show weight 100 (the agent said 100%);
#   3. 3 of connections_full = 10 held: the agent says 70%, HAProxy's weight 70;
#   4. `xvs-agent state drain`: HAProxy shows the server DRAIN;
#   5. `xvs-agent state maint`: MAINT; `ready`: in service again, weight 70;
#   6. the connections closed: weight 100 again.
#
#   testbed/e2e/agent.sh        (run it under flock /tmp/xvs-netns.lock)
#
# Prints one PASS or FAIL line per check, exits 1 if any failed. Skips (exit
# 0, says why; a failure under XVS_REQUIRE_ALL=1) when not root or without
# network namespaces.
set -euo pipefail
# shellcheck source=../lib/common.sh
. "$(dirname "$0")/../lib/common.sh"
# shellcheck source=../lib/e2e.sh
. "$(dirname "$0")/../lib/e2e.sh"

[ $# -eq 0 ] || { echo "usage: $0" >&2; exit 2; }
check_ns_prefix
XVS_BIN=${XVS_BIN:-$XVS_ROOT/target/release}
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
LB=$(ns_of agent-lb)
RS=$(ns_of agent-rs)
LB_IP=198.51.100.1
RS_IP=198.51.100.2

e2e_preflight agent.sh xvs-agent
command -v haproxy >/dev/null || skip_missing e2e/agent.sh "haproxy (install it)"

work=$(mktemp -d)
made_ns=()
pids=()
cleanup() {
    local rc=$? p ns
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    if [ "$failures" -gt 0 ] && [ -f "$work/agent.log" ]; then
        echo "--- the agent's log ---"
        tail -n 20 "$work/agent.log" || true
        echo "--- HAProxy's log ---"
        tail -n 20 "$work/haproxy.log" || true
    fi
    for ns in "${made_ns[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
    rm -rf "$work"
    exit "$rc"
}
trap cleanup EXIT

for ns in "$LB" "$RS"; do
    ! ip netns list | grep -qw "$ns" || die "namespace $ns exists already: another run? remove it with 'ip netns del $ns' if it is a leftover"
done
for ns in "$LB" "$RS"; do
    ip netns add "$ns"
    made_ns+=("$ns")
    ip -n "$ns" link set lo up
done
# Made directly inside the namespaces: no interface name in the host's.
ip link add lb0 netns "$LB" type veth peer name rs0 netns "$RS"
ip -n "$LB" addr add "$LB_IP/24" dev lb0
ip -n "$RS" addr add "$RS_IP/24" dev rs0
ip -n "$LB" link set lb0 up
ip -n "$RS" link set rs0 up

# The real server's service: accepts on :80 and keeps every connection.
ip netns exec "$RS" "$PY" -c '
import socket, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("'"$RS_IP"'", 80)); s.listen(64); held = []
while True:
    held.append(s.accept()[0])
' &
pids+=($!)

# The "director": receives reports on :7405 and writes each to a file.
ip netns exec "$LB" "$PY" -c '
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("'"$LB_IP"'", 7405)); n = 0
while True:
    data, _ = s.recvfrom(2048); n += 1
    open(sys.argv[1] + ".new", "wb").write(data)
    __import__("os").replace(sys.argv[1] + ".new", sys.argv[1])
' "$work/report.bin" &
pids+=($!)

head -c 32 /dev/urandom >"$work/agent.key"
chmod 600 "$work/agent.key"
cat >"$work/agent.toml" <<EOF
directors = ["$LB_IP:7405"]
address = "$RS_IP"
key_file = "$work/agent.key"
key_id = 1
identity = "rs1"
interval = 0.2
service_ports = [80]
state_file = "$work/state"

[haproxy]
listen = "$RS_IP:5555"
cpu_weight = 0
connections_weight = 1
connections_full = 10
min_fraction = 0.2
EOF
ip netns exec "$RS" "$XVS_BIN/xvs-agent" run --config "$work/agent.toml" 2>"$work/agent.log" &
pids+=($!)
poll "the agent's HAProxy listener" 10 ip netns exec "$RS" "$PY" -c "import socket; socket.create_connection(('$RS_IP', 5555), 1)" ||
    { fail "xvs-agent run starts"; exit 1; }

cat >"$work/haproxy.cfg" <<EOF
global
    stats socket $work/haproxy.sock mode 600 level admin
defaults
    mode tcp
    timeout connect 1s
    timeout client 5s
    timeout server 5s
backend be
    balance roundrobin
    server rs1 $RS_IP:80 weight 100 agent-check agent-addr $RS_IP agent-port 5555 agent-inter 300ms
EOF
ip netns exec "$LB" haproxy -db -f "$work/haproxy.cfg" >"$work/haproxy.log" 2>&1 &
pids+=($!)
poll "HAProxy's stats socket" 10 test -S "$work/haproxy.sock" || { fail "HAProxy starts"; exit 1; }

# server_is STATUS WEIGHT: HAProxy's `show stat` line of be/rs1 has a
# status starting with STATUS and that weight. The server has an agent
# check and no health check: in service, its status reads "no check";
# drained, "DRAIN (agent)"; in maintenance, "MAINT".
server_is() {
    "$PY" - "$work/haproxy.sock" "$1" "$2" <<'EOF'
import csv, socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.sendall(b"show stat\n")
text = b""
while chunk := s.recv(65536):
    text += chunk
rows = list(csv.DictReader(text.decode().lstrip("# ").splitlines()))
row = next(r for r in rows if r["pxname"] == "be" and r["svname"] == "rs1")
print(row["status"], row["weight"], row.get("agent_status"), row.get("last_agt"))
sys.exit(0 if row["status"].startswith(sys.argv[2]) and row["weight"] == sys.argv[3] else 1)
EOF
}
# expect_server STATUS WEIGHT: polls for it (HAProxy asks every 0.3 s, the
# agent samples every 0.2 s); the check's output is the last line seen.
expect_server() { poll "be/rs1 $1 weight $2" 10 server_is "$1" "$2" || server_is "$1" "$2"; }

verify_report() {
    "$PY" - "$work/report.bin" "$work/agent.key" "$RS_IP" <<'EOF'
import hashlib, hmac, ipaddress, sys
data = open(sys.argv[1], "rb").read(); key = open(sys.argv[2], "rb").read()
assert len(data) == 140, len(data)
assert data[:5] == b"XVSL\x01", data[:5]
assert hmac.compare_digest(hmac.new(key, data[:108], hashlib.sha256).digest(), data[108:]), "bad tag"
assert data[6] == 4 and ipaddress.ip_address(data[44:48]) == ipaddress.ip_address(sys.argv[3]), data[44:60]
assert data[12:15] == b"rs1" and data[5] == 0, (data[12:44], data[5])
print("report ok: seq", int.from_bytes(data[68:76], "big"), "established", int.from_bytes(data[104:108], "big"))
EOF
}
poll "a report at the receiver" 10 test -s "$work/report.bin" || true
check "a signed report for $RS_IP reaches the director's port (HMAC verified by Python's hmac)" verify_report

check "no connections: HAProxy's weight is 100 (agent: 100%)" expect_server "no check" 100

# Three connections held from the load balancer's side.
ip netns exec "$LB" "$PY" -c '
import socket, time
held = [socket.create_connection(("'"$RS_IP"'", 80)) for _ in range(3)]
time.sleep(3600)
' &
holder=$!
pids+=("$holder")
check "3 of 10 connections: HAProxy's weight is 70 (agent: 70%)" expect_server "no check" 70

"$XVS_BIN/xvs-agent" state --config "$work/agent.toml" drain >/dev/null
check "xvs-agent state drain: HAProxy shows DRAIN" expect_server DRAIN 70
"$XVS_BIN/xvs-agent" state --config "$work/agent.toml" maint >/dev/null
check "xvs-agent state maint: HAProxy shows MAINT" expect_server MAINT 70
"$XVS_BIN/xvs-agent" state --config "$work/agent.toml" ready >/dev/null
check "xvs-agent state ready: in service again, weight 70" expect_server "no check" 70

kill "$holder"
check "connections closed: weight 100 again" expect_server "no check" 100

if [ "$failures" -gt 0 ]; then
    echo "e2e/agent.sh: $failures check(s) failed"
    exit 1
fi
echo "e2e/agent.sh: all checks passed"
