#!/usr/bin/env bash
# End-to-end check that a director on multi-queue interfaces serves every
# queue with its default flags: the NAT cluster of testbed/cluster.sh with
# N-queue veths on both of the director's links (`up --rx-queues N`):
#
#   xvs-client                 xvs-director                    xvs-switch        xvs-rs1, rs2
#   eth0 ==== N queues ==== d-cli [xvs-director] d-srv ==== N queues ==== sw-dir br0 --- eth0
#   198.51.100.2            VIP 203.0.113.10 on lo                                 192.0.2.11, .12
#
# A veth receives a frame on the queue its peer transmitted it on, and the
# peer picks a queue per connection (its socket's hash): the client's
# connections spread over d-cli's queues as RSS would spread them on a
# NIC. An AF_XDP socket receives one queue only; a frame for the VIP on a
# queue the director does not serve goes to the kernel, which answers the
# SYN with a reset.
#
#   testbed/e2e/multiqueue.sh [--queues N] [--connections C]
#
# Checks, with xvs-director started with no queue flags (AF_XDP):
#   - it says it serves all N queues of d-cli and d-srv;
#   - C short connections from the client (one each) all succeed, and the
#     director's XDP program saw them arrive on at least two of d-cli's
#     queues (the per-queue counters of `ethtool -S d-cli`), and every one
#     of the N when C is large enough for that to be all but certain;
#   - the XDP program counted no frame for the director on a queue without
#     a socket (metric xvs_xdp_no_socket_total);
#   - `--queues 1` is refused at start, the message naming d-cli, its N
#     queues and the `ethtool -L` fix.
# Prints one PASS or FAIL line per check and exits 1 if any failed. Skips
# (exit 0, says why) when not root or without network namespaces; takes
# under a minute.
set -euo pipefail
# shellcheck source=../lib/common.sh
. "$(dirname "$0")/../lib/common.sh"
# shellcheck source=../lib/e2e.sh
. "$(dirname "$0")/../lib/e2e.sh"

queues=4
connections=400
while [ $# -gt 0 ]; do
    case $1 in
    --queues) queues=${2:?}; shift 2 ;;
    --connections) connections=${2:?}; shift 2 ;;
    *) echo "usage: $0 [--queues N] [--connections C]" >&2; exit 2 ;;
    esac
done
{ [[ "$queues" =~ ^[0-9]+$ ]] && [ "$queues" -ge 2 ] && [ "$queues" -le 16 ]; } || die "--queues: $queues is not a number from 2 to 16"
{ [[ "$connections" =~ ^[0-9]+$ ]] && [ "$connections" -ge 1 ] && [ "$connections" -le 5000 ]; } || die "--connections: $connections is not a number from 1 to 5000"

e2e_env
METRICS=127.0.0.1:9464
NS_DIRECTOR=$(ns_of director)

e2e_preflight multiqueue.sh xvs-director

cluster_up=0
work=$(mktemp -d)
cleanup() {
    local rc=$?
    e2e_cluster_down 20
    rm -rf "$work"
    exit "$rc"
}
trap cleanup EXIT

director() { ip netns exec "$NS_DIRECTOR" "$@"; }
# rx_counts IFACE: the frames the XDP program saw on each receive queue, one
# line per queue ("QUEUE FRAMES"), from the veth's per-queue counters.
rx_counts() {
    director ethtool -S "$1" | awk -F'[_:]' '/rx_queue_[0-9]+_xdp_packets:/ { gsub(/ /, "", $NF); print $3, $NF }'
}
metric() { director curl -s --max-time 2 "http://$METRICS/metrics" | awk -v m="$1" '$1 == m { print $2 }'; }

say "NAT cluster with $queues receive queues on the director's links"
"$CLUSTER" up --servers 2 --rx-queues "$queues" >"$work/up.log" 2>&1 || {
    cat "$work/up.log"
    die "cluster.sh up --rx-queues $queues failed"
}
cluster_up=1

has_queues() {
    local n
    n=$(director sh -c 'ls /sys/class/net/d-cli/queues' | grep -c '^rx-')
    echo "d-cli has $n receive queues"
    [ "$n" = "$queues" ]
}
check "the director's client link has $queues receive queues" has_queues

say "--queues 1 on $queues-queue interfaces"
refused() {
    if "$CLUSTER" balancer start xvs -- --queues 1; then
        echo "the director started"
        "$CLUSTER" balancer stop
        return 1
    fi
    grep -F "\"d-cli\" has $queues receive queues" "$STATE/director.log" &&
        grep -F "ethtool -L d-cli combined 1" "$STATE/director.log"
}
check "--queues 1 is refused at start, naming d-cli, its $queues queues and the fix" refused

say "xvs-director with its default queue flags"
"$CLUSTER" balancer start xvs -- --metrics-listen "$METRICS" || die "the director did not start"
serves_all() {
    grep -E "interface d-cli: $queues receive queue\(s\), $queues served" "$STATE/director.log" &&
        grep -E "interface d-srv: $queues receive queue\(s\), $queues served" "$STATE/director.log"
}
check "the director serves all $queues queues of d-cli and d-srv" serves_all
grep -E "worker: " "$STATE/director.log" | sed 's/^.*worker: /    worker: /'

rx_counts d-cli >"$work/before"
requests "$connections"
rx_counts d-cli >"$work/after"
total=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["total"])' "$work/req.json")
all_succeed() {
    echo "$total connections, $bad failed; answered: $(for k in "${!got[@]}"; do printf '%s=%s ' "$k" "${got[$k]}"; done)"
    "$PY" -c 'import json,sys; [print("   ", e) for e in json.load(open(sys.argv[1]))["errors"]]' "$work/req.json"
    [ "$total" = "$connections" ] && [ "$bad" = 0 ]
}
check "$connections connections from the client, every one answered" all_succeed

# Frames per queue during the connections.
awk 'NR == FNR { before[$1] = $2; next } { print $1, $2 - before[$1] }' "$work/before" "$work/after" >"$work/per-queue"
echo "    frames per d-cli receive queue during the run (queue frames): $(tr '\n' ' ' <"$work/per-queue")"
busy=$(awk '$2 >= 5 { n++ } END { print n + 0 }' "$work/per-queue")
spread() {
    echo "$busy of $queues queues received 5 frames or more"
    [ "$busy" -ge 2 ] || return 1
    # With 100 connections or more per queue a queue left without one is
    # vanishingly unlikely: every queue must have been used.
    [ "$connections" -lt $((100 * queues)) ] || [ "$busy" = "$queues" ]
}
check "the connections arrived on several of d-cli's queues" spread

no_socket_zero() {
    local n
    n=$(metric xvs_xdp_no_socket_total)
    echo "xvs_xdp_no_socket_total: ${n:-missing}"
    [ "$n" = 0 ]
}
check "no frame for the director arrived on a queue without its socket" no_socket_zero

"$CLUSTER" balancer stop >/dev/null
if [ "$failures" -gt 0 ]; then
    echo "multiqueue.sh: $failures check(s) failed"
    exit 1
fi
echo "multiqueue.sh: every check passed"
