#!/usr/bin/env bash
# Where xvs stands against what an operator would use instead, measured in
# one run on one machine, and appended as a dated section to BENCHMARKS.md.
#
#   testbed/bench.sh [--quick] [--no-append] [--profile] [--sync-only]
#
# Two clusters of testbed/cluster.sh, up side by side (two real servers,
# round robin), PREFIX = $XVS_NS_PREFIX (default "bench", so that it never
# meets the e2e suite's "xvs"):
#
#   PREFIX-client --- PREFIX-director --- PREFIX-switch --- PREFIX-rs1, -rs2     (NAT: every path but DR)
#   PREFIX-dr-client --- PREFIX-dr-director --- ... --- rs1, rs2, + the router   (DR: the replies bypass the director)
#
# Paths (the balancer in the director namespace; nothing else changes):
#   direct      the client to rs1's own address, the director's kernel routing
#   xvs-nat     xvs-director on AF_XDP, VS/NAT           (cluster.sh balancer start xvs)
#   xvs-dr      xvs-director on AF_XDP, VS/DR            (the DR cluster)
#   nft         nftables DNAT, numgen over the servers   (cluster.sh balancer start nft)
#   haproxy     HAProxy `mode tcp` on the VIP, roundrobin (started here, stopped by PID)
#   kernel-fwd  small packets only: plain routing to rs1, no NAT
#   xdpfwd      small packets only: tools' xvs-xdpfwd, the same AF_XDP I/O as
#               xvs with one fixed DNAT and no logic (the floor of our overhead)
#
# Tests:
#   HTTP        wrk from the client: -t2 -c64 short connections (Connection:
#               close) and keep-alive; -t1 -c1 --latency for p50/p99 at one
#               connection. Everything shares the machine's two cores.
#   small pkts  64-byte UDP frames from `xvs-pktgen send --engine xdp-live`
#               (16 flows, on CPU 0) to VIP:7, offered at rising rates
#               (PPS_RATES) until a path delivers less than 80% of what it
#               is offered: the best delivered rate is the path's figure.
#               Then one run flat out: the delivered rate under overload
#               (a kernel path on veth can livelock: its upstream hop fills
#               the per-CPU backlog its downstream hops need). What reaches the real servers
#               is counted and dropped at their eth0 ingress by an nftables
#               netdev rule (no socket, so the sink costs little). The
#               balancer gets CPU 1: xvs and xdpfwd are pinned there, and
#               the kernel paths' forwarding is steered there by RPS on the
#               director's client-side veth. GRO is on on that veth during
#               these runs: a veth peer must have NAPI to take XDP frames.
#   sync        before the clusters come up, the connection-state sync's
#               micro-benchmark (`cargo bench -p xvs-director --bench sync`,
#               director/benches/sync.rs, one process, no namespaces): the
#               SYN path with sync off and on, the master's sync work and
#               the connections per second a backup absorbs, per new
#               connection, and the issue's two targets from them (the
#               backup keeps up with the master's new-connection rate; sync
#               adds under 10 % to the master's SYN path).
#
# Isolation: each path has its own client source-port range
# (ip_local_port_range in the client namespace), so short connections of
# one path never meet another's TIME_WAIT entries on the real servers;
# paths are interleaved (each round runs every path once), so background
# load spreads over all of them. A repetition below half its median is
# flagged COLLAPSE in the table, never averaged away.
#
# CPU: HTTP rows give the balancer process's utime+stime (/proc/PID/stat:
# xvs-director, haproxy) over the run; nftables and routing work in
# softirq, which no counter attributes to a namespace, so those rows say
# "–". Small-packet rows give CPU 1's busy time (/proc/stat), the core the
# balancer and everything downstream of it run on.
#
# --quick: fewer and shorter runs (under 2 min in all, plus about half a
# minute for the sync benchmark; a full run's takes about a minute). --no-append:
# print the section, leave BENCHMARKS.md alone. --sync-only: the sync
# benchmark alone (no namespaces, no root needed). --profile: after the
# measurements, one more xvs NAT small-packet run and one more short-
# connection run under `perf record` (CPU 1, and the whole machine), their
# hottest symbols written to the work directory (/run/xvs-bench-PREFIX).
#
# The machine is not ours alone: the load average before and after the
# measurements goes into the section, so that a disturbed run shows.
#
# Environment: XVS_NS_PREFIX (default bench), XVS_BIN (default
# target/release), XVS_BENCH_REPS / XVS_BENCH_HTTP_S / XVS_BENCH_PPS_S to
# override the repetitions and durations.
set -euo pipefail
: "${XVS_NS_PREFIX:=bench}"
export XVS_NS_PREFIX
# shellcheck source=lib/common.sh
. "$(dirname "$0")/lib/common.sh"
cd "$XVS_ROOT"

quick=0 append=1 profile=0 sync_only=0
while [ $# -gt 0 ]; do
    case $1 in
    --quick) quick=1; shift ;;
    --no-append) append=0; shift ;;
    --profile) profile=1; shift ;;
    --sync-only) sync_only=1; shift ;;
    *) sed -n '/^#   testbed\/bench.sh/s/^#   //p' "$0" >&2; exit 2 ;;
    esac
done

check_ns_prefix
NAT_PREFIX=$XVS_NS_PREFIX
DR_PREFIX=$XVS_NS_PREFIX-dr
[[ "$DR_PREFIX" =~ ^[a-z0-9][a-z0-9-]{0,11}$ ]] || die "XVS_NS_PREFIX: '$XVS_NS_PREFIX' leaves no room for the DR cluster's '-dr' (9 characters at most)"
# Each cluster keeps its state under its own prefix's default.
unset XVS_TESTBED_STATE
XVS_BIN=${XVS_BIN:-$XVS_ROOT/target/release}
export XVS_BIN
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
REPORT=(timeout 30 "$PY" "$XVS_ROOT/testbed/lib/bench-report.py")
CLUSTER=$XVS_ROOT/testbed/cluster.sh

if [ "$quick" = 1 ]; then
    REPS=${XVS_BENCH_REPS:-2} PPS_REPS=${XVS_BENCH_REPS:-1} HTTP_S=${XVS_BENCH_HTTP_S:-2} PPS_S=${XVS_BENCH_PPS_S:-2} STEP_S=1
else
    REPS=${XVS_BENCH_REPS:-3} PPS_REPS=${XVS_BENCH_REPS:-3} HTTP_S=${XVS_BENCH_HTTP_S:-10} PPS_S=${XVS_BENCH_PPS_S:-5} STEP_S=2
fi
# Offered rates of the small-packet sweep, frames per second.
PPS_RATES=(100000 200000 300000 450000 650000 900000 1200000)
[ "$sync_only" = 1 ] && [ "$profile" = 1 ] && die "--profile profiles the clusters' paths: not with --sync-only"
for v in REPS PPS_REPS HTTP_S PPS_S; do
    if ! [[ "${!v}" =~ ^[0-9]+$ ]] || [ "${!v}" -lt 1 ] || [ "${!v}" -gt 120 ]; then
        die "$v=${!v}: give a whole number from 1 to 120"
    fi
done

VIP4=203.0.113.10
RS1=192.0.2.11
RS2=192.0.2.12
CLIENT4=198.51.100.2

if [ "$sync_only" = 0 ]; then
    need_root "testbed/bench.sh"
    # shellcheck disable=SC2153 # XVS_BENCH_PACKAGES comes from common.sh
    ensure_packages "${XVS_PACKAGES[@]}" "${XVS_BENCH_PACKAGES[@]}"
fi
ensure_rust
if [ "$sync_only" = 0 ]; then
    say "building (cargo build --release: director, agent, tools)"
    cargo build --release -p xvs-director -p xvs-agent -p xvs-tools --quiet
fi

ours() { ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^($NAT_PREFIX|$DR_PREFIX)-(client|director|switch|router|rs[0-9]+)\$" || true; }
[ "$sync_only" = 1 ] || [ -z "$(ours)" ] || die "namespaces of a previous run are up ($(ours | xargs)): XVS_NS_PREFIX=$NAT_PREFIX testbed/cluster.sh down; XVS_NS_PREFIX=$DR_PREFIX testbed/cluster.sh down"

WORK=/run/xvs-bench-$NAT_PREFIX
[ "$sync_only" = 1 ] && [ ! -w /run ] && WORK=${TMPDIR:-/tmp}/xvs-bench-$NAT_PREFIX
rm -rf "$WORK"
mkdir -p "$WORK"
RESULTS=$WORK/results.jsonl
: >"$RESULTS"
HAPROXY_PID=""
XDPFWD_PID=""

# stop_pid PID NAME: SIGTERM, up to 10 s, then SIGKILL. Only PIDs this
# script started are ever given to it.
stop_pid() {
    local pid=$1 name=$2 i
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || return 0
        # A zombie has exited; its parent (this shell) reaps it at wait.
        [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" = Z ] && { wait "$pid" 2>/dev/null || true; return 0; }
        sleep 0.1
    done
    echo "$name (pid $pid) ignored SIGTERM for 10 s: SIGKILL" >&2
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_pid "$XDPFWD_PID" xvs-xdpfwd
    stop_pid "$HAPROXY_PID" haproxy
    # --sync-only brought no cluster up: namespaces of that prefix are
    # someone else's.
    [ "$sync_only" = 1 ] && exit "$rc"
    XVS_NS_PREFIX=$NAT_PREFIX "$CLUSTER" down >/dev/null 2>&1 || true
    XVS_NS_PREFIX=$DR_PREFIX "$CLUSTER" down >/dev/null 2>&1 || true
    if [ -n "$(ours)" ]; then
        echo "bench.sh: namespaces left behind: $(ours | xargs)" >&2
        rc=1
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

nat() { XVS_NS_PREFIX=$NAT_PREFIX "$CLUSTER" "$@"; }
dr() { XVS_NS_PREFIX=$DR_PREFIX "$CLUSTER" "$@"; }
state_of() { echo "/run/xvs-testbed-$1"; }

mac_of() { ip -n "$1" -j link show "$2" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)[0]["address"])'; }

# ----------------------------------------------------------------- sync ---

# The state sync's micro-benchmark, before any cluster loads the machine:
# its figures go to $WORK/sync.json for the report (none if it failed).
started=$(date +%s)
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
say "the connection-state sync's benchmark (cargo bench -p xvs-director --bench sync)"
sync_args=()
[ "$quick" = 1 ] && sync_args=(-- --warm-up-time 0.5 --measurement-time 1.5)
if ! XVS_SYNC_BENCH_JSON=$WORK/sync.json cargo bench -p xvs-director --bench sync --quiet "${sync_args[@]}" \
    >"$WORK/sync-bench.log" 2>&1; then
    echo "    the sync benchmark failed (its output: $WORK/sync-bench.log)" >&2
    rm -f "$WORK/sync.json"
fi
# Criterion's estimates, not its comparisons with an earlier run.
grep -E '^sync:|^sync/|time:' "$WORK/sync-bench.log" | grep -v 'time: *\[[-+−]' | sed 's/^/    /' || true
say "sync benchmark: $(($(date +%s) - started)) s"
if [ "$sync_only" = 1 ]; then
    REPS=0 PPS_REPS=0
else
    say "bringing up two clusters: $NAT_PREFIX-* (NAT) and $DR_PREFIX-* (DR), two real servers each, round robin"
    # Offload off, as every figure of BENCHMARKS.md was measured: the director
    # then forwards full checksums and never sums a payload to complete one.
    nat up --mode nat --servers 2 --weights 1,1 --scheduler rr --offload-off </dev/null | sed 's/^/    /'
    dr up --mode dr --servers 2 --weights 1,1 --scheduler rr --offload-off </dev/null | sed 's/^/    /'
fi

# The small-packet sink: every real server counts and drops UDP to port 7
# at its interface's ingress (the clusters' UDP echo never sees the load).
[ "$sync_only" = 1 ] || for prefix in "$NAT_PREFIX" "$DR_PREFIX"; do
    for k in 1 2; do
        ip netns exec "$prefix-rs$k" nft -f - <<EOF
table netdev bench_sink {
    chain ingress {
        type filter hook ingress device eth0 priority 0; policy accept;
        udp dport 7 counter drop
    }
}
EOF
    done
done
sink_count() { # PREFIX: UDP frames the real servers' sinks counted
    local prefix=$1 k n total=0
    for k in 1 2; do
        n=$(ip netns exec "$prefix-rs$k" nft -j list table netdev bench_sink |
            "$PY" -c 'import json,sys; print(sum(o["rule"]["expr"][1]["counter"]["packets"] for o in json.load(sys.stdin)["nftables"] if "rule" in o))')
        total=$((total + n))
    done
    echo "$total"
}

# Client source ports by path: disjoint ranges (see the header).
port_range() {
    case $1 in
    direct) echo "10000 14999" ;; xvs-nat) echo "15000 19999" ;; xvs-dr) echo "20000 24999" ;;
    nft) echo "25000 29999" ;; haproxy) echo "30000 34999" ;; *) die "no port range for $1" ;;
    esac
}
src_port() { # the generator's first source port by path (16 flows each)
    case $1 in
    xvs-nat) echo 40000 ;; xvs-dr) echo 40100 ;; nft) echo 40200 ;; kernel-fwd) echo 40300 ;; xdpfwd) echo 40400 ;;
    esac
}
prefix_of() { if [ "$1" = xvs-dr ]; then echo "$DR_PREFIX"; else echo "$NAT_PREFIX"; fi; }

# ------------------------------------------------------------ balancers ---

start_haproxy() {
    cat >"$WORK/haproxy.cfg" <<EOF
# HAProxy for testbed/bench.sh: layer 4 (mode tcp) on the VIP, the same real
# servers and round robin as the other balancers.
global
    maxconn 8000
    log stdout format raw local0 err
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend vip
    bind $VIP4:80
    default_backend realservers
backend realservers
    balance roundrobin
    server rs1 $RS1:80
    server rs2 $RS2:80
EOF
    setsid ip netns exec "$NAT_PREFIX-director" haproxy -db -f "$WORK/haproxy.cfg" </dev/null >"$WORK/haproxy.log" 2>&1 &
    HAPROXY_PID=$!
    poll "haproxy on $VIP4:80" 10 ip netns exec "$NAT_PREFIX-director" sh -c "ss -Hltn 'sport = :80' | grep -q ." ||
        { cat "$WORK/haproxy.log" >&2; return 1; }
}

# start_path PATH PHASE: makes PATH the one in service (PHASE http|pps).
# Sets LB_PID to the process whose CPU is the balancer's, or "". Runs in
# this shell (never in $(...)): the PIDs it records must outlive it.
LB_PID=""
start_path() {
    local path=$1 phase=$2 pin=()
    LB_PID=""
    [ "$phase" = pps ] && pin=(-- --cpus 1)
    case $path in
    direct | kernel-fwd) ip netns exec "$NAT_PREFIX-director" sysctl -qw net.ipv4.ip_forward=1 ;;
    xvs-nat) nat balancer start xvs --backend xdp "${pin[@]}" >/dev/null && LB_PID=$(cat "$(state_of "$NAT_PREFIX")/director.pid") ;;
    xvs-dr) dr balancer start xvs --backend xdp "${pin[@]}" >/dev/null && LB_PID=$(cat "$(state_of "$DR_PREFIX")/director.pid") ;;
    nft) nat balancer start nft >/dev/null ;;
    haproxy) start_haproxy && LB_PID=$HAPROXY_PID ;;
    xdpfwd)
        setsid ip netns exec "$NAT_PREFIX-director" "$XVS_BIN/xvs-xdpfwd" --in d-cli --out d-srv \
            --vip "$VIP4:7" --to "$RS1:7" --to-mac "$(mac_of "$NAT_PREFIX-rs1" eth0)" \
            --duration $((PPS_S + 30)) --cpu 1 </dev/null >"$WORK/xdpfwd.log" 2>&1 &
        XDPFWD_PID=$!
        poll "xvs-xdpfwd's program on d-cli" 10 sh -c "ip -n $NAT_PREFIX-director link show d-cli | grep -q xdp" ||
            { cat "$WORK/xdpfwd.log" >&2; return 1; }
        LB_PID=$XDPFWD_PID
        ;;
    esac
}

stop_path() {
    case $1 in
    direct | kernel-fwd) ip netns exec "$NAT_PREFIX-director" sysctl -qw net.ipv4.ip_forward=0 ;;
    xvs-nat | nft) nat balancer stop >/dev/null ;;
    xvs-dr) dr balancer stop >/dev/null ;;
    haproxy) stop_pid "$HAPROXY_PID" haproxy; HAPROXY_PID="" ;;
    xdpfwd)
        stop_pid "$XDPFWD_PID" xvs-xdpfwd
        XDPFWD_PID=""
        sed 's/^/    xvs-xdpfwd: /' "$WORK/xdpfwd.log"
        ;;
    esac
}

pid_ticks() { if [ -n "$1" ]; then "${REPORT[@]}" ticks "$1" 2>/dev/null || echo 0; fi; }

# ----------------------------------------------------------------- HTTP ---

url_of() { if [ "$1" = direct ]; then echo "http://$RS1/"; else echo "http://$VIP4/"; fi; }

# http_round REP PATH: the three HTTP tests of one path, one repetition.
http_round() {
    local rep=$1 path=$2 prefix url t0 t1 kind
    prefix=$(prefix_of "$path")
    url=$(url_of "$path")
    ip netns exec "$prefix-client" sysctl -qw net.ipv4.ip_local_port_range="$(port_range "$path")"
    if ! start_path "$path" http; then
        echo "    $path: did not start" >&2
        for kind in http-short http-keepalive latency; do
            "${REPORT[@]}" record "$RESULTS" test=$kind path="$path" rep="$rep" wrk=/nonexistent note="start failed"
        done
        return 0
    fi
    # The path answers (and neighbours are resolved) before anything counts.
    if ! poll "$path to answer $url" 10 ip netns exec "$prefix-client" curl -sf --max-time 1 -o /dev/null "$url"; then
        for kind in http-short http-keepalive latency; do
            "${REPORT[@]}" record "$RESULTS" test=$kind path="$path" rep="$rep" wrk=/nonexistent note="no answer"
        done
        stop_path "$path"
        return 0
    fi
    for kind in http-short http-keepalive latency; do
        local args=(-t2 -c64)
        case $kind in
        http-short) args+=(-H "Connection: close") ;;
        latency) args=(-t1 -c1 --latency) ;;
        esac
        t0=$(pid_ticks "$LB_PID")
        timeout $((HTTP_S + 20)) ip netns exec "$prefix-client" wrk "${args[@]}" -d"${HTTP_S}s" --timeout 2s "$url" \
            >"$WORK/wrk.out" 2>&1 || true
        t1=$(pid_ticks "$LB_PID")
        "${REPORT[@]}" record "$RESULTS" test=$kind path="$path" rep="$rep" wrk="$WORK/wrk.out" window_s="$HTTP_S" \
            ${LB_PID:+lb_ticks=$((t1 - t0))}
    done
    stop_path "$path"
}

# ------------------------------------------------------- small packets ---

# Once for the phase: GRO (NAPI for XDP frames) and RPS to CPU 1 on both
# directors' client-side veths.
pps_setup() {
    local prefix
    for prefix in "$NAT_PREFIX" "$DR_PREFIX"; do
        ip netns exec "$prefix-director" ethtool -K d-cli gro on >/dev/null
        ip netns exec "$prefix-director" sh -c 'echo 2 >/sys/class/net/d-cli/queues/rx-0/rps_cpus'
    done
}

# pps_step PATH RATE SECONDS TAG: one generator run at RATE frames/s (0:
# flat out); prints "OFFERED_PPS DELIVERED ELAPSED_S", leaves CPU
# snapshots in $WORK/cpu.TAG.before/after.
pps_step() {
    local path=$1 rate=$2 secs=$3 tag=$4 prefix dst sunk delivered gen rate_args=()
    prefix=$(prefix_of "$path")
    [ "$rate" != 0 ] && rate_args=(--rate "$rate")
    dst=$VIP4:7
    [ "$path" = kernel-fwd ] && dst=$RS1:7
    sunk=$(sink_count "$prefix")
    "${REPORT[@]}" cpu >"$WORK/cpu.$tag.before"
    gen=$(timeout $((secs + 20)) ip netns exec "$prefix-client" "$XVS_BIN/xvs-pktgen" send --engine xdp-live \
        --iface eth0 --dst-mac "$(mac_of "$prefix-director" d-cli)" --src "$CLIENT4" --dst "$dst" \
        --src-port "$(src_port "$path")" --flows 16 --count $((secs * 50000000)) --duration "$secs" --cpu 0 \
        "${rate_args[@]}" --json) || return 1
    "${REPORT[@]}" cpu >"$WORK/cpu.$tag.after"
    sleep 0.3 # frames in flight reach the sink
    delivered=$(($(sink_count "$prefix") - sunk))
    "$PY" -c 'import json,sys; g=json.loads(sys.argv[1]); print(g["sent"] / g["elapsed_s"], sys.argv[2], g["elapsed_s"])' "$gen" "$delivered"
}

# pps_round REP PATH: offered rates from PPS_RATES in turn until the
# delivered rate falls below 80% of the offered one (past the knee), the
# best of them recorded as udp-pps; then one run flat out (udp-overload):
# where a path goes when it is offered more than it can take.
pps_round() {
    local rep=$1 path=$2 rate out offered delivered elapsed best=0 best_tag="" best_line="" step=0 knee=0
    if ! start_path "$path" pps; then
        "${REPORT[@]}" record "$RESULTS" test=udp-pps path="$path" rep="$rep" value= note="start failed"
        "${REPORT[@]}" record "$RESULTS" test=udp-overload path="$path" rep="$rep" value= note="start failed"
        return 0
    fi
    for rate in "${PPS_RATES[@]}"; do
        step=$((step + 1))
        out=$(pps_step "$path" "$rate" "$STEP_S" "s$step") || { echo "    $path: generator failed at $rate/s" >&2; continue; }
        read -r offered delivered elapsed <<<"$out"
        printf '    %s rep %s: offered %.3f Mpps, delivered %.3f Mpps\n' "$path" "$rep" \
            "$("$PY" -c "print($offered / 1e6)")" "$("$PY" -c "print($delivered / $elapsed / 1e6)")"
        if "$PY" -c "import sys; sys.exit(0 if $delivered / $elapsed > $best else 1)"; then
            best=$("$PY" -c "print($delivered / $elapsed)")
            best_tag=s$step
            best_line="$offered $delivered $elapsed"
        fi
        if "$PY" -c "import sys; sys.exit(0 if $delivered / $elapsed < 0.8 * $offered else 1)"; then
            knee=1
            break
        fi
    done
    if [ -n "$best_line" ]; then
        read -r offered delivered elapsed <<<"$best_line"
        "${REPORT[@]}" record "$RESULTS" test=udp-pps path="$path" rep="$rep" \
            value="$("$PY" -c "print($delivered / $elapsed / 1e6)")" unit=Mpps window_s="$elapsed" units="$delivered" \
            offered="$("$PY" -c "print($offered / 1e6)")" cpu_before="$WORK/cpu.$best_tag.before" cpu_after="$WORK/cpu.$best_tag.after" \
            note="$([ "$knee" = 0 ] && echo "no knee below ${PPS_RATES[-1]}/s")"
    else
        "${REPORT[@]}" record "$RESULTS" test=udp-pps path="$path" rep="$rep" value= note="generator failed"
    fi
    if out=$(pps_step "$path" 0 "$PPS_S" flat); then
        read -r offered delivered elapsed <<<"$out"
        "${REPORT[@]}" record "$RESULTS" test=udp-overload path="$path" rep="$rep" \
            value="$("$PY" -c "print($delivered / $elapsed / 1e6)")" unit=Mpps window_s="$elapsed" units="$delivered" \
            offered="$("$PY" -c "print($offered / 1e6)")" cpu_before="$WORK/cpu.flat.before" cpu_after="$WORK/cpu.flat.after"
    else
        "${REPORT[@]}" record "$RESULTS" test=udp-overload path="$path" rep="$rep" value= note="generator failed"
    fi
    stop_path "$path"
}

# ---------------------------------------------------------------- runs ---

HTTP_PATHS=(direct xvs-nat xvs-dr nft haproxy)
PPS_PATHS=(xdpfwd xvs-nat xvs-dr nft kernel-fwd)
for ((rep = 1; rep <= REPS; rep++)); do
    say "HTTP, round $rep of $REPS (${HTTP_S} s per wrk run): ${HTTP_PATHS[*]}"
    for path in "${HTTP_PATHS[@]}"; do http_round "$rep" "$path"; done
done
[ "$sync_only" = 1 ] || pps_setup
for ((rep = 1; rep <= PPS_REPS; rep++)); do
    say "64-byte UDP, round $rep of $PPS_REPS (${STEP_S} s per offered rate, then ${PPS_S} s flat out): ${PPS_PATHS[*]}"
    for path in "${PPS_PATHS[@]}"; do pps_round "$rep" "$path"; done
done

load_after=$(cut -d' ' -f1-3 /proc/loadavg)

# perf_top FILE PERF_ARGS...: records while the caller's load runs (PERF_S
# seconds), then writes the hottest symbols to FILE.
perf_top() {
    local out=$1
    shift
    timeout $((PPS_S + 30)) perf record -q -o "$out.data" "$@" -- sleep "$PPS_S" >/dev/null 2>&1 || true
    perf report -q -i "$out.data" --no-children --sort comm,dso,sym --percent-limit 0.5 2>/dev/null | head -60 >"$out"
    rm -f "$out.data"
}
if [ "$profile" = 1 ]; then
    ensure_packages linux-perf
    say "profiling xvs NAT: 64-byte UDP (CPU 1) and HTTP short connections (both CPUs)"
    start_path xvs-nat pps
    perf_top "$WORK/profile-pps-cpu1.txt" -C 1 &
    perf_pid=$!
    timeout $((PPS_S + 20)) ip netns exec "$NAT_PREFIX-client" "$XVS_BIN/xvs-pktgen" send --engine xdp-live \
        --iface eth0 --dst-mac "$(mac_of "$NAT_PREFIX-director" d-cli)" --src "$CLIENT4" --dst "$VIP4:7" \
        --src-port 41000 --flows 16 --count $((PPS_S * 50000000)) --duration "$PPS_S" --cpu 0 >/dev/null || true
    wait "$perf_pid" || true
    stop_path xvs-nat
    start_path xvs-nat http
    ip netns exec "$NAT_PREFIX-client" sysctl -qw net.ipv4.ip_local_port_range="35000 39999"
    perf_top "$WORK/profile-http-short.txt" -a &
    perf_pid=$!
    timeout $((PPS_S + 20)) ip netns exec "$NAT_PREFIX-client" wrk -t2 -c64 -H "Connection: close" -d"${PPS_S}s" \
        "http://$VIP4/" >/dev/null 2>&1 || true
    wait "$perf_pid" || true
    stop_path xvs-nat
    echo "    $WORK/profile-pps-cpu1.txt, $WORK/profile-http-short.txt"
fi

# ---------------------------------------------------------------- report ---

commit=$(git -C "$XVS_ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
git -C "$XVS_ROOT" diff --quiet HEAD 2>/dev/null || commit="$commit (with uncommitted changes)"
cpu_model=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
mem=$(awk '/^MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo)
"$PY" - "$WORK/meta.json" <<EOF
import json, sys
json.dump({
    "date": "$(date -u '+%Y-%m-%d %H:%M UTC')",
    "machine": "$(nproc) vCPU ($cpu_model), $mem, kernel $(uname -r)",
    "commit": "$commit",
    "mode": "$([ "$quick" = 1 ] && echo quick || echo full)$([ "$sync_only" = 1 ] && echo ", sync only")",
    "sync": "$([ -f "$WORK/sync.json" ] && echo "$WORK/sync.json")",
    "sync_cmd": "cargo bench -p xvs-director --bench sync${sync_args[*]:+ ${sync_args[*]}}",
    "sync_only": $([ "$sync_only" = 1 ] && echo True || echo False),
    "reps": $REPS, "pps_reps": $PPS_REPS, "http_s": $HTTP_S, "pps_s": $PPS_S, "step_s": $STEP_S,
    "rates": "$(IFS=,; echo "${PPS_RATES[*]}")",
    "load": "load average $load_before before the measurements, $load_after after",
    "generator": "Small packets: xvs-pktgen --engine xdp-live (BPF_PROG_TEST_RUN live frames, XDP_TX) on CPU 0, 16 flows; balancer on CPU 1.",
}, open(sys.argv[1], "w"))
EOF
section=$("${REPORT[@]}" table "$RESULTS" "$WORK/meta.json")
echo
echo "$section"
echo
say "measured in $(($(date +%s) - started)) s (results: $RESULTS)"
if [ "$append" = 1 ]; then
    if [ ! -f "$XVS_ROOT/BENCHMARKS.md" ]; then
        cat >"$XVS_ROOT/BENCHMARKS.md" <<'EOF'
# Benchmarks

Whole-system measurements of xvs against the peers an operator would use
instead, each section written by one run of `testbed/bench.sh` (what it
measures and how: the comment at its top). Sections are appended, newest
last, and never edited: numbers from different days and machines are not
comparable, so each section carries its own machine, commit and date.
EOF
    fi
    printf '\n%s\n' "$section" >>"$XVS_ROOT/BENCHMARKS.md"
    say "appended to BENCHMARKS.md"
fi
