#!/usr/bin/env bash
# End-to-end VS/NAT and VS/DR suite: real HTTP and UDP traffic from a client
# namespace through the director to nginx on the real servers, on the cluster
# of testbed/cluster.sh (topologies drawn at the top of that script):
#
#   xvs-client --- d-cli [xvs-director] d-srv --- br0 [xvs-switch] --- xvs-rs1..3
#   198.51.100.2   VIP 203.0.113.10, 2001:db8:f::10 on lo             192.0.2.11..13
#     eth1 <------------------ [xvs-router] <----------- br0 (DR: the replies)
#
#   testbed/e2e/nat.sh [--mode nat|dr] [--backend xdp|packet|mixed] [--balancer xvs|nft]
#
# --mode dr (xvs only) runs the same checks on a DR cluster, where the
# replies bypass the director, plus DR's own: the frames a real server
# receives and sends (captured with tcpdump), and no reply counted by the
# director.
#
# mixed: AF_XDP on the client side, AF_PACKET on the server side (one
# worker serving both, frames copied between the two backends).
#
# Prints one PASS or FAIL line per check and exits 1 if any failed. Skips
# (exit 0, says why) when not root, when the kernel has no network
# namespaces, or, for --balancer xvs, while xvs-director is not built.
# Namespaces are named by XVS_NS_PREFIX (default xvs; see cluster.sh).
# Three clusters, one after the other:
#   A. wrr, weights 1,2,3: shares, keep-alive, IPv6, UDP, counters, offload
#      guard, crash resilience;
#   B. wlc, weights 1,2,3, client link MTU 1400 (NAT; DR keeps 1500, its
#      replies do not cross the director): shares, 1 MiB downloads (in NAT
#      they need frag-needed / packet-too-big from the director), counters;
#   C. (xvs over AF_XDP only) transmit checksum offload left on: connections
#      must fail, which shows that the offload guard of A guards something.
set -euo pipefail
# shellcheck source=../lib/common.sh
. "$(dirname "$0")/../lib/common.sh"

mode=nat
backend=xdp
balancer=xvs
while [ $# -gt 0 ]; do
    case $1 in
    --mode) mode=${2:?}; shift 2 ;;
    --backend) backend=${2:?}; shift 2 ;;
    --balancer) balancer=${2:?}; shift 2 ;;
    *) echo "usage: $0 [--mode nat|dr] [--backend xdp|packet|mixed] [--balancer xvs|nft]" >&2; exit 2 ;;
    esac
done
case $mode in nat | dr) ;; *) die "--mode: '$mode' is not nat or dr" ;; esac
[ "$mode" = nat ] || [ "$balancer" = xvs ] || die "--mode $mode: nftables DNAT balances NAT only: use --balancer xvs"
case $backend in
    xdp | packet) director_args=(--backend "$backend") ;;
    mixed) director_args=(--backend xdp -- --iface d-srv=packet) ;;
    *) die "--backend: '$backend' is not xdp, packet or mixed" ;;
esac
case $balancer in xvs | nft) ;; *) die "--balancer: '$balancer' is not xvs or nft" ;; esac

check_ns_prefix
STATE=${XVS_TESTBED_STATE:-$(xvs_default_state)}
XVS_BIN=${XVS_BIN:-$XVS_ROOT/target/release}
export XVS_TESTBED_STATE=$STATE XVS_BIN
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
CLUSTER=$XVS_ROOT/testbed/cluster.sh
VIP4=203.0.113.10
VIP6=2001:db8:f::10
MODE=${mode^^}
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
if [ "$mode" = dr ] && [ ! -x "$XVS_BIN/xvs-agent" ]; then
    echo "FAIL e2e/nat.sh (dr): $XVS_BIN/xvs-agent does not exist: build it first (cargo build --release --workspace)"
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

client() { ip netns exec "$(ns_of client)" "$@"; }

# Per cluster: TCP connections the client made to each VIP, and how many of
# them each real server answered (by the page of the connection's first
# response), per address family: served[4.rs2] = 200.
declare -A served
conns4=0
conns6=0

up() {
    say "$MODE cluster: $*"
    "$CLUSTER" up --mode "$mode" "$@" >"$work/up.log" 2>&1 || { cat "$work/up.log"; die "testbed/cluster.sh up --mode $mode $* failed"; }
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
    timeout 300 ip netns exec "$(ns_of client)" curl -s --fail-early --connect-timeout 3 --max-time 10 \
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
# connections, 5 packets and 5 IP lengths each way per VIP (in DR, the
# echoes bypass it: none back).
udp_traffic_matches() {
    local vip ip_len got want ok=0 back=5
    [ "$mode" = dr ] && back=0
    fresh_stats || return 1
    for vip in "$VIP4" "$VIP6"; do
        if [ "$vip" = "$VIP4" ]; then ip_len=$((20 + 8 + 32)); else ip_len=$((40 + 8 + 32)); fi
        want="5 5 $back $((5 * ip_len)) $((back * ip_len))"
        got=$("$PY" "$XVS_ROOT/testbed/lib/xvs-stats.py" traffic "$STATE/stats.json" udp "$vip" 7)
        if [ "$got" != "$want" ]; then
            echo "  udp $vip:7: conns, packets in/out, bytes in/out are '$got', the client's traffic makes '$want'"
            ok=1
        fi
    done
    return $ok
}

offload_off_everywhere() {
    local nsif ok=0 extra=()
    [ "$mode" = dr ] && extra=(client/eth1 router/r-cli router/r-sw)
    for nsif in client/eth0 rs1/eth0 rs2/eth0 rs3/eth0 "${extra[@]}"; do
        if ! ip netns exec "$(ns_of "${nsif%/*}")" ethtool -k "${nsif#*/}" | grep -qx 'tx-checksumming: off'; then
            echo "  $nsif: transmit checksum offload is on"
            ok=1
        fi
    done
    return $ok
}

# replies_bypass_director: in DR the director sees every request and no
# reply: per service, packets in > 0 and packets (and bytes) out = 0.
replies_bypass_director() {
    local proto vip port conns pin pout bin bout ok=0
    fresh_stats || return 1
    for proto in tcp udp; do
        if [ "$proto" = tcp ]; then port=80; else port=7; fi
        for vip in "$VIP4" "$VIP6"; do
            read -r conns pin pout bin bout < <("$PY" "$XVS_ROOT/testbed/lib/xvs-stats.py" traffic "$STATE/stats.json" "$proto" "$vip" "$port")
            echo "  $proto $vip:$port: conns $conns, packets in $pin, out $pout, bytes in $bin, out $bout"
            if [ "$pin" -le 0 ] || [ "$pout" != 0 ] || [ "$bout" != 0 ]; then ok=1; fi
        done
    done
    return $ok
}

# mac_of NS IFACE
mac_of() { ip -n "$1" -br link show dev "$2" | awk '{ print $3 }'; }

# dr_frames_right: with tcpdump on the client's eth0 and on rs1's eth0,
# HTTP requests to both VIPs; then every frame rs1 received for a VIP must
# be the client's, unchanged but for the MACs (rs1's as destination, the
# director's d-srv as source) and the TTL / hop limit (one less than the
# client sent), and every reply rs1 sent must go from the VIP to the
# client through the router (its MAC as destination), not the director.
dr_frames_right() {
    # "wrong", not "ok": http sets ok (the requests it saw answered).
    local side wrong=0 client_ttl rs_mac dir_mac rtr_mac family vip cl n i
    local -A pids
    for side in client rs1; do
        # --immediate-mode: frames reach the file at once, none waits in the
        # kernel ring buffer's block (up to a second) when tcpdump is stopped.
        ip netns exec "$(ns_of "$side")" tcpdump -Z root --immediate-mode -U -n -i eth0 -w "$work/$side.pcap" 'tcp port 80' \
            >/dev/null 2>"$work/tcpdump-$side.err" &
        pids[$side]=$!
    done
    for side in client rs1; do
        for ((i = 0; i < 50; i++)); do # 5 s
            grep -q 'listening on' "$work/tcpdump-$side.err" && break
            sleep 0.1
        done
    done
    # wrr 1,2,3 gives rs1 one connection in six, per service.
    http "http://$VIP4/?h=[1-12]" 4 -H 'Connection: close'
    http "http://[$VIP6]/?h=[1-12]" 6 -H 'Connection: close'
    sleep 0.2
    for side in client rs1; do
        kill -TERM "${pids[$side]}" 2>/dev/null || true
        wait "${pids[$side]}" 2>/dev/null || true
    done
    for side in client rs1; do
        grep -q 'listening on' "$work/tcpdump-$side.err" || { echo "  tcpdump in $(ns_of "$side") did not start:"; cat "$work/tcpdump-$side.err"; return 1; }
        "$PY" "$XVS_ROOT/testbed/lib/pcap-frames.py" "$work/$side.pcap" >"$work/$side.frames" || return 1
    done
    rs_mac=$(mac_of "$(ns_of rs1)" eth0)
    dir_mac=$(mac_of "$(ns_of director)" d-srv)
    rtr_mac=$(mac_of "$(ns_of router)" r-sw)
    echo "  MACs: rs1 eth0 $rs_mac, director d-srv $dir_mac, router r-sw $rtr_mac"
    for family in 4 6; do
        if [ "$family" = 4 ]; then vip=$VIP4 cl=198.51.100.2; else vip=$VIP6 cl=2001:db8:c::2; fi
        # What the client sent to the VIP: one TTL for all of it.
        client_ttl=$(awk -v v="$vip" '$4 == v && $8 == 80 { print $5 }' "$work/client.frames" | sort -u)
        if [ "$(wc -w <<<"$client_ttl")" != 1 ]; then
            echo "  IPv$family: the client's frames to $vip carry TTLs '$client_ttl', not one value"
            wrong=1
            continue
        fi
        n=$(awk -v v="$vip" '$4 == v && $8 == 80' "$work/rs1.frames" | wc -l)
        echo "  IPv$family: the client sent TTL $client_ttl; rs1 received $n frames for $vip:80"
        [ "$n" -gt 0 ] || wrong=1
        awk -v v="$vip" -v c="$cl" -v m="$rs_mac" -v d="$dir_mac" -v t=$((client_ttl - 1)) '
            $4 == v && $8 == 80 && ($3 != c || $1 != d || $2 != m || $5 != t) {
                print "  received, wrong: " $0 "  (want src " c ", MACs " d " -> " m ", TTL " t ")"; bad = 1
            }
            END { exit bad }' "$work/rs1.frames" || wrong=1
        n=$(awk -v v="$vip" '$3 == v && $7 == 80' "$work/rs1.frames" | wc -l)
        echo "  IPv$family: rs1 sent $n reply frames from $vip:80"
        [ "$n" -gt 0 ] || wrong=1
        awk -v v="$vip" -v c="$cl" -v m="$rs_mac" -v r="$rtr_mac" '
            $3 == v && $7 == 80 && ($4 != c || $1 != m || $2 != r) {
                print "  sent, wrong: " $0 "  (want dst " c ", MACs " m " -> " r " (the router))"; bad = 1
            }
            END { exit bad }' "$work/rs1.frames" || wrong=1
    done
    return $wrong
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
    if [ "$2" = 4 ]; then route=$(ip -n "$(ns_of "$1")" route get 198.51.100.2); else route=$(ip -n "$(ns_of "$1")" -6 route get 2001:db8:c::2); fi
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

say "VS/$MODE end-to-end suite through $label"

# ---- A: wrr 1,2,3 -----------------------------------------------------------
up --scheduler wrr --weights 1,2,3

if [ "$mode" = dr ]; then endpoints="every eth0, the client's eth1 and the router's veths"; else endpoints="every eth0"; fi
check "endpoints (client, rs1..rs3) transmit full checksums: tx-checksumming off on $endpoints" offload_off_everywhere

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

if [ "$mode" = dr ]; then
    check "DR frames at rs1 (tcpdump): client's source and the VIP unchanged, TTL - 1, MACs director d-srv -> rs1; replies from the VIP go to the router's MAC" \
        dr_frames_right
fi
if [ "$balancer" = xvs ]; then
    check "counters: per real server, the director's conns equal the client's connections it answered; their sum, all the client made" counters_match
    if [ "$mode" = dr ]; then
        check "counters: the UDP services saw exactly the client's datagrams, and none of the echoes (they bypass the director)" udp_traffic_matches
        check "DR replies bypass the director: every service has packets in > 0 and packets out = 0" replies_bypass_director
    else
        check "counters: the UDP services saw exactly the client's datagrams and the echoes (packets and bytes, both ways)" udp_traffic_matches
    fi
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

# ---- B: wlc 1,2,3 and (NAT) a narrow client link ----------------------------
if [ "$mode" = nat ]; then
    up --scheduler wlc --weights 1,2,3 --client-mtu 1400
    link="client link MTU 1400: "
else
    up --scheduler wlc --weights 1,2,3
    link=""
fi

http "http://$VIP4/?c=[1-600]" 4 -H 'Connection: close'
s=$(shares)
check "600 short HTTP connections to $VIP4:80 all answered ($ok ok, $connects connections)" \
    test "$ok" = 600 -a "$connects" = 600
check "wlc 1,2,3 shares within 10 % of 100/200/300 ($s)" within_10pct "$s" 600

check "${link}http://$VIP4/big downloads the whole 1 MiB, byte for byte" big_download "http://$VIP4/big" 4
[ "$mode" = nat ] && check "frag-needed reached ${big_server:-the real server}: its route to the client learned MTU 1400" pmtu_learned "$big_server" 4
check "${link}http://[$VIP6]/big downloads the whole 1 MiB, byte for byte" big_download "http://[$VIP6]/big" 6
[ "$mode" = nat ] && check "packet-too-big reached ${big_server:-the real server}: its route to the client learned MTU 1400" pmtu_learned "$big_server" 6
if [ "$balancer" = xvs ]; then
    [ "$mode" = nat ] && check "the director sent frag-needed / packet-too-big (stats: too_big_sent > 0)" \
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
# the checksum is partial.) DR does not touch the checksum, but forwards the
# partial one as it is, which the real server drops all the same.
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
