#!/usr/bin/env bash
# End-to-end VS/NAT suite: real HTTP and UDP traffic from a client namespace
# through the director to nginx on the real servers, on the cluster of
# testbed/cluster.sh (topology drawn at the top of that script):
#
#   xvs-client --- d-cli [xvs-director] d-srv --- br0 [xvs-switch] --- xvs-rs1..3
#   198.51.100.2   VIP 203.0.113.10, 2001:db8:f::10 on lo             192.0.2.11..13
#
#   testbed/e2e/nat.sh [--backend xdp|packet|mixed] [--balancer xvs|nft]
#
# mixed: AF_XDP on the client side, AF_PACKET on the server side (one
# worker serving both, frames copied between the two backends).
#
# Prints one PASS or FAIL line per check and exits 1 if any failed. Skips
# (exit 0, says why) when not root, when the kernel has no network
# namespaces, or, for --balancer xvs, while xvs-director is not built.
# Three clusters, one after the other:
#   A. wrr, weights 1,2,3: shares, keep-alive, IPv6, UDP, counters, offload
#      guard, crash resilience;
#   B. wlc, weights 1,2,3, client link MTU 1400: shares, 1 MiB downloads that
#      need frag-needed / packet-too-big from the director, counters;
#   C. (xvs over AF_XDP only) transmit checksum offload left on: connections
#      must fail, which shows that the offload guard of A guards something.
set -euo pipefail
# shellcheck source=../lib/common.sh
. "$(dirname "$0")/../lib/common.sh"

backend=xdp
balancer=xvs
while [ $# -gt 0 ]; do
    case $1 in
    --backend) backend=${2:?}; shift 2 ;;
    --balancer) balancer=${2:?}; shift 2 ;;
    *) echo "usage: $0 [--backend xdp|packet|mixed] [--balancer xvs|nft]" >&2; exit 2 ;;
    esac
done
case $backend in
    xdp | packet) director_args=(--backend "$backend") ;;
    mixed) director_args=(--backend xdp -- --iface d-srv=packet) ;;
    *) die "--backend: '$backend' is not xdp, packet or mixed" ;;
esac
case $balancer in xvs | nft) ;; *) die "--balancer: '$balancer' is not xvs or nft" ;; esac

STATE=${XVS_TESTBED_STATE:-/run/xvs-testbed}
XVS_BIN=${XVS_BIN:-$XVS_ROOT/target/release}
export XVS_TESTBED_STATE=$STATE XVS_BIN
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
CLUSTER=$XVS_ROOT/testbed/cluster.sh
VIP4=203.0.113.10
VIP6=2001:db8:f::10
if [ "$balancer" = xvs ]; then label="xvs-director ($backend backend)"; else label="nftables DNAT (the kernel)"; fi

if [ "$(id -u)" -ne 0 ]; then
    echo "SKIP e2e/nat.sh: needs root to create network namespaces"
    exit 0
fi
if ! unshare --net true 2>/dev/null; then
    echo "SKIP e2e/nat.sh: this kernel cannot create network namespaces"
    exit 0
fi
if [ "$balancer" = xvs ] && [ ! -x "$XVS_BIN/xvs-director" ]; then
    echo "FAIL e2e/nat.sh (xvs, $backend): $XVS_BIN/xvs-director does not exist: build it first (cargo build --release --workspace)"
    exit 1
fi
ensure_packages "${XVS_PACKAGES[@]}"

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

cluster_up=0
work=$(mktemp -d)
cleanup() {
    local rc=$?
    if [ "$cluster_up" = 1 ]; then
        if [ "$failures" -gt 0 ] && [ -f "$STATE/director.log" ]; then
            echo "--- the end of $STATE/director.log ---"
            tail -n 20 "$STATE/director.log" || true
        fi
        "$CLUSTER" down >/dev/null || true
    fi
    rm -rf "$work"
    exit "$rc"
}
trap cleanup EXIT

client() { ip netns exec xvs-client "$@"; }

# Per cluster: TCP connections the client made to each VIP, and how many of
# them each real server answered (by the page of the connection's first
# response), per address family: served[4.rs2] = 200.
declare -A served
conns4=0
conns6=0

up() {
    say "cluster: $*"
    "$CLUSTER" up "$@" >"$work/up.log" 2>&1 || { cat "$work/up.log"; die "testbed/cluster.sh up $* failed"; }
    cluster_up=1
    served=()
    conns4=0
    conns6=0
    if [ "$balancer" = xvs ]; then
        "$CLUSTER" balancer start xvs "${director_args[@]}"
    else
        "$CLUSTER" balancer start nft
    fi
}

down() {
    "$CLUSTER" down >/dev/null
    cluster_up=0
}

# http URL_GLOB FAMILY [CURL_ARGS...]: one curl for every URL of the glob;
# sets ok (requests answered 200) and connects (TCP connections made) and
# adds to the tallies. The bodies are "rsK"; -w adds "code connects".
ok=0
connects=0
http() {
    local url=$1 family=$2 out n page
    shift 2
    out=$work/http.out
    timeout 300 ip netns exec xvs-client curl -s --fail-early --connect-timeout 3 --max-time 10 \
        -w '\n%{http_code} %{num_connects}\n' "$@" "$url" >"$out" 2>/dev/null || true
    ok=$(grep -cE '^200 [0-9]+$' "$out" || true)
    connects=$(awk '/^[0-9][0-9][0-9] [0-9]+$/ { n += $2 } END { print n + 0 }' "$out")
    # A transfer's body line is followed by its "code connects" line: the
    # connections it opened were answered by the server that body names.
    while read -r page n; do
        served[$family.$page]=$((${served[$family.$page]:-0} + n))
    done < <(awk '/^rs[0-9]+$/ { page = $1 } /^[0-9][0-9][0-9] [0-9]+$/ { if (page != "" && $2 > 0) print page, $2; page = "" }' "$out")
    if [ "$family" = 4 ]; then conns4=$((conns4 + connects)); else conns6=$((conns6 + connects)); fi
}

# shares: "rs1=N rs2=N rs3=N", the pages of the last http burst.
shares() {
    local k out=""
    for k in 1 2 3; do out+="rs$k=$(grep -cx "rs$k" "$work/http.out" || true) "; done
    echo "${out% }"
}

# Waits for two fresh writes of the stats file (written every second), so
# that what it says includes everything sent before the call.
fresh_stats() {
    local t0 t1 i seen_change=0
    t0=$("$PY" "$XVS_ROOT/testbed/lib/xvs-stats.py" get "$STATE/stats.json" time_ms)
    for ((i = 0; i < 50; i++)); do # 5 s
        sleep 0.1
        t1=$("$PY" "$XVS_ROOT/testbed/lib/xvs-stats.py" get "$STATE/stats.json" time_ms 2>/dev/null) || continue
        if [ "$t1" != "$t0" ]; then
            seen_change=$((seen_change + 1))
            t0=$t1
            [ "$seen_change" -ge 2 ] && return 0
        fi
    done
    echo "  the stats file was not rewritten within 5 s" >&2
    return 1
}

# counters_match: the director counted exactly the connections the client
# made, per VIP, and gave each real server as many as the client saw it
# answer.
counters_match() {
    local family vip total expected address conns k ok=0 sum
    fresh_stats || return 1
    for family in 4 6; do
        if [ "$family" = 4 ]; then vip=$VIP4 total=$conns4; else vip=$VIP6 total=$conns6; fi
        sum=0
        while read -r address conns; do
            sum=$((sum + conns))
            k=$((${address##*[.:]} - 10))
            expected=${served[$family.rs$k]:-0}
            if [ "$conns" != "$expected" ]; then
                echo "  tcp $vip:80 -> $address: the director counted $conns connections, rs$k answered $expected of the client's"
                ok=1
            fi
        done < <("$PY" "$XVS_ROOT/testbed/lib/xvs-stats.py" conns "$STATE/stats.json" tcp "$vip" 80)
        if [ "$sum" != "$total" ]; then
            echo "  tcp $vip:80: the director counted $sum connections, the client made $total"
            ok=1
        fi
    done
    return $ok
}

# udp_traffic_matches: each UDP echo check sent 5 datagrams of 32 bytes,
# each on a new flow, and got 5 back: the director must count 5
# connections, 5 packets and 5 IP lengths each way per VIP.
udp_traffic_matches() {
    local vip ip_len got want ok=0
    fresh_stats || return 1
    for vip in "$VIP4" "$VIP6"; do
        if [ "$vip" = "$VIP4" ]; then ip_len=$((20 + 8 + 32)); else ip_len=$((40 + 8 + 32)); fi
        want="5 5 5 $((5 * ip_len)) $((5 * ip_len))"
        got=$("$PY" "$XVS_ROOT/testbed/lib/xvs-stats.py" traffic "$STATE/stats.json" udp "$vip" 7)
        if [ "$got" != "$want" ]; then
            echo "  udp $vip:7: conns, packets in/out, bytes in/out are '$got', the client's traffic makes '$want'"
            ok=1
        fi
    done
    return $ok
}

offload_off_everywhere() {
    local ns ok=0
    for ns in xvs-client xvs-rs1 xvs-rs2 xvs-rs3; do
        if ! ip netns exec "$ns" ethtool -k eth0 | grep -qx 'tx-checksumming: off'; then
            echo "  $ns eth0: transmit checksum offload is on"
            ok=1
        fi
    done
    return $ok
}

# within_10pct "rs1=N rs2=N rs3=N" TOTAL: each share within 10 % of
# TOTAL * weight / 6 for weights 1, 2, 3.
within_10pct() {
    local shares=$1 total=$2 k n expected
    for k in 1 2 3; do
        n=$(tr ' ' '\n' <<<"$shares" | sed -n "s/^rs$k=//p")
        expected=$((total * k / 6))
        # |n - expected| <= expected / 10, in integers: 10 * |n - e| <= e
        [ $((10 * (n > expected ? n - expected : expected - n))) -le "$expected" ] || return 1
    done
}

# big_download URL FAMILY: the whole 1 MiB /big, byte for byte; sets
# big_server to the real server that sent it.
big_server=""
big_download() {
    local url=$1 family=$2 hdr=$work/big.hdr body=$work/big.body size server
    rm -f "$hdr" "$body"
    big_server=""
    client curl -s -g --connect-timeout 3 --max-time 30 -D "$hdr" -o "$body" "$url" || {
        echo "  curl $url failed"
        return 1
    }
    if [ "$family" = 4 ]; then conns4=$((conns4 + 1)); else conns6=$((conns6 + 1)); fi
    server=$(tr -d '\r' <"$hdr" | sed -n 's/^[Xx]-[Rr]eal-[Ss]erver: //p')
    [ -n "$server" ] || { echo "  $url: no X-Real-Server header in the response"; return 1; }
    served[$family.$server]=$((${served[$family.$server]:-0} + 1))
    big_server=$server
    size=$(stat -c %s "$body")
    if [ "$size" != 1048576 ]; then
        echo "  $url: got $size bytes, not 1048576"
        return 1
    fi
    if ! cmp -s "$body" "$STATE/$server/www/big"; then
        echo "  $url: the 1 MiB body differs from $server's /big"
        return 1
    fi
    echo "  $url: 1048576 bytes from $server, identical to its /big"
}

# stat_positive KEY: a fresh stats file says KEY > 0.
# pmtu_learned RS FAMILY: RS's route back to the client carries the MTU of
# the narrow link, which it can only have learned from a frag-needed /
# packet-too-big sent by the director.
pmtu_learned() {
    local route
    [ -n "$1" ] || return 1
    if [ "$2" = 4 ]; then route=$(ip -n "xvs-$1" route get 198.51.100.2); else route=$(ip -n "xvs-$1" -6 route get 2001:db8:c::2); fi
    echo "$route"
    grep -q 'mtu 1400' <<<"$route"
}

stat_positive() { fresh_stats && [ "$("$PY" "$XVS_ROOT/testbed/lib/xvs-stats.py" get "$STATE/stats.json" "$1")" -gt 0 ]; }
# offload_breaks_xvs: with offload on, a connection through the VIP fails
# although the director received and scheduled it (so it failed on the way,
# not because the director was deaf).
offload_breaks_xvs() {
    local scheduled
    if client curl -s -o /dev/null --connect-timeout 3 --max-time 4 "http://$VIP4/"; then
        echo "  the connection succeeded: partial checksums did not break it (does the director now recompute them?)"
        return 1
    fi
    fresh_stats || return 1
    scheduled=$("$PY" "$XVS_ROOT/testbed/lib/xvs-stats.py" conns "$STATE/stats.json" tcp "$VIP4" 80 | awk '{ n += $2 } END { print n + 0 }')
    echo "  the connection failed; the director scheduled $scheduled connection(s)"
    [ "$scheduled" -gt 0 ]
}

say "VS/NAT end-to-end suite through $label"

# ---- A: wrr 1,2,3 -----------------------------------------------------------
up --scheduler wrr --weights 1,2,3

check "endpoints (client, rs1..rs3) transmit full checksums: tx-checksumming off on every eth0" offload_off_everywhere

http "http://$VIP4/?a=[1-600]" 4 -H 'Connection: close'
s=$(shares)
check "600 short HTTP connections to $VIP4:80 all answered ($ok ok, $connects connections)" \
    test "$ok" = 600 -a "$connects" = 600
check "wrr 1,2,3 shares exactly 100/200/300 ($s)" test "$s" = "rs1=100 rs2=200 rs3=300"

http "http://$VIP4/?k=[1-20]" 4
s=$(shares)
servers=$( (grep -E '^rs[0-9]+$' "$work/http.out" || true) | sort -u | wc -l)
check "keep-alive: 20 requests answered on $connects connection by $servers server ($s)" \
    test "$ok" = 20 -a "$connects" = 1 -a "$servers" = 1

http "http://[$VIP6]/?b=[1-60]" 6 -H 'Connection: close'
check "IPv6: 60 short HTTP connections to [$VIP6]:80 all answered ($ok ok, $connects connections, $(shares))" \
    test "$ok" = 60 -a "$connects" = 60

check "UDP echo through $VIP4:7 (5 flows, same bytes back from the VIP)" \
    client "$PY" "$XVS_ROOT/testbed/udp-echo.py" check "$VIP4" 7 --count 5
check "UDP echo through [$VIP6]:7 (5 flows, same bytes back from the VIP)" \
    client "$PY" "$XVS_ROOT/testbed/udp-echo.py" check "$VIP6" 7 --count 5

if [ "$balancer" = xvs ]; then
    check "counters: per real server, the director's conns equal the client's connections it answered; their sum, all the client made" counters_match
    check "counters: the UDP services saw exactly the client's datagrams and the echoes (packets and bytes, both ways)" udp_traffic_matches
fi

"$CLUSTER" balancer kill
check "after the balancer is killed (SIGKILL), the director host still answers ping from the client" \
    client ping -c1 -W2 198.51.100.1
if [ "$balancer" = xvs ]; then
    "$CLUSTER" balancer start xvs "${director_args[@]}"
else
    "$CLUSTER" balancer start nft
fi
http "http://$VIP4/?r=1" 4
check "after a restart of the balancer, an HTTP request through $VIP4 is answered" test "$ok" = 1
down

# ---- B: wlc 1,2,3 and a narrow client link ----------------------------------
up --scheduler wlc --weights 1,2,3 --client-mtu 1400

http "http://$VIP4/?c=[1-600]" 4 -H 'Connection: close'
s=$(shares)
check "600 short HTTP connections to $VIP4:80 all answered ($ok ok, $connects connections)" \
    test "$ok" = 600 -a "$connects" = 600
check "wlc 1,2,3 shares within 10 % of 100/200/300 ($s)" within_10pct "$s" 600

check "client link MTU 1400: http://$VIP4/big downloads the whole 1 MiB, byte for byte" big_download "http://$VIP4/big" 4
check "frag-needed reached ${big_server:-the real server}: its route to the client learned MTU 1400" pmtu_learned "$big_server" 4
check "client link MTU 1400: http://[$VIP6]/big downloads the whole 1 MiB, byte for byte" big_download "http://[$VIP6]/big" 6
check "packet-too-big reached ${big_server:-the real server}: its route to the client learned MTU 1400" pmtu_learned "$big_server" 6
if [ "$balancer" = xvs ]; then
    check "the director sent frag-needed / packet-too-big (stats: too_big_sent > 0)" \
        stat_positive too_big_sent
    check "counters: per real server, the director's conns equal the client's connections it answered; their sum, all the client made" counters_match
fi
down

# ---- C: offload left on (xvs over AF_XDP) -----------------------------------
# With transmit checksum offload on, a veth hands the director frames whose
# TCP checksum holds only the pseudo-header sum (CHECKSUM_PARTIAL: "the NIC
# will finish it"). AF_XDP sees those bytes as they are; after the NAT
# rewrite's incremental update the real server receives a wrong checksum
# and drops the SYN. So connections must fail here: if they did not, the
# guard in A would guard nothing. (The kernel's own NAT is immune: it knows
# the checksum is partial.)
if [ "$balancer" = xvs ] && [ "$backend" = xdp ]; then
    up --scheduler wrr --weights 1,2,3 --keep-offload
    check "with offload left on, a connection the director scheduled fails (partial checksums reach the real server)" \
        offload_breaks_xvs
    down
fi

if [ "$failures" -gt 0 ]; then
    say "$failures check(s) FAILED through $label"
    exit 1
fi
say "all checks passed through $label"
