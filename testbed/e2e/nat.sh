#!/usr/bin/env bash
# End-to-end suite for every forwarding method: real HTTP and UDP traffic
# from a client namespace through the director to nginx on the real
# servers, on the cluster of testbed/cluster.sh (topologies drawn at the top
# of that script):
#
#   xvs-client --- d-cli [xvs-director] d-srv --- br0 [xvs-switch] --- xvs-rs1..3 (NAT, DR)
#   198.51.100.2   VIP 203.0.113.10, 2001:db8:f::10 on lo      |        192.0.2.11..13
#     eth1 <------------------ [xvs-router] <-----------------+ (DR, TUN: the replies)
#                                   +-------- br1 ----------------- xvs-rsK (TUN)
#                                                                   203.0.113.141..143
#
#   testbed/e2e/nat.sh [--mode nat|dr|tun|mixed] [--backend xdp|packet|mixed] [--balancer xvs|nft]
#
# --mode dr, tun and mixed (xvs only) run the same checks on a DR, TUN or
# mixed cluster (rs1 NAT, rs2 DR, rs3 TUN in one service), plus their own:
# the frames on the DR and TUN real servers' segments (tcpdump on their
# switch ports): a DR server receives the client's packet untouched but for
# the TTL and the MACs, a TUN server the client's packet untouched but for
# the TTL inside an outer header from the director's address to its own
# (protocol 4, next header 41); the replies go from the VIP to the client
# through the router; the director counts no reply of theirs.
#
# --backend mixed: AF_XDP on the client side, AF_PACKET on the server side
# (one worker serving both, frames copied between the two backends).
#
# Prints one PASS or FAIL line per check and exits 1 if any failed. Skips
# (exit 0, says why; a failure under XVS_REQUIRE_ALL=1) when not root or
# when the kernel has no network namespaces; fails when a binary it needs
# is not built.
# Namespaces are named by XVS_NS_PREFIX (default xvs; see cluster.sh).
# Three clusters, one after the other:
#   A. wrr, weights 1,2,3: for IPv4 and IPv6, 600 short connections (exact
#      shares) and keep-alive; UDP; captures (DR, TUN); counters; offload
#      on; crash resilience;
#   B. wlc, weights 1,2,3, and a client link MTU of 1400 (NAT) or 1490
#      (mixed; DR and TUN keep 1500, their replies do not cross the
#      director): shares; 1 MiB downloads and uploads until every real
#      server has served one, for IPv4 and IPv6 — NAT downloads need
#      frag-needed / packet-too-big from the director to the real server,
#      TUN uploads need them to the client (the tunnel header makes the
#      client's full-sized segments too big for the server side) —;
#      counters;
#   C. transmit checksum offload on (cluster.sh's default, as in A and B):
#      connections over IPv4 and IPv6 and UDP succeed, and xvs says it
#      completed partial checksums on each side their frames came from.
set -euo pipefail
# shellcheck source=../lib/common.sh
. "$(dirname "$0")/../lib/common.sh"
# shellcheck source=../lib/e2e.sh
. "$(dirname "$0")/../lib/e2e.sh"

mode=nat
backend=xdp
balancer=xvs
while [ $# -gt 0 ]; do
    case $1 in
    --mode) mode=${2:?}; shift 2 ;;
    --backend) backend=${2:?}; shift 2 ;;
    --balancer) balancer=${2:?}; shift 2 ;;
    *) echo "usage: $0 [--mode nat|dr|tun|mixed] [--backend xdp|packet|mixed] [--balancer xvs|nft]" >&2; exit 2 ;;
    esac
done
case $mode in nat | dr | tun | mixed) ;; *) die "--mode: '$mode' is not nat, dr, tun or mixed" ;; esac
[ "$mode" = nat ] || [ "$balancer" = xvs ] || die "--mode $mode: nftables DNAT balances NAT only: use --balancer xvs"
case $backend in
    xdp | packet) director_args=(--backend "$backend") ;;
    mixed) director_args=(--backend xdp -- --iface d-srv=packet) ;;
    *) die "--backend: '$backend' is not xdp, packet or mixed" ;;
esac
case $balancer in xvs | nft) ;; *) die "--balancer: '$balancer' is not xvs or nft" ;; esac

e2e_env
VIP6=2001:db8:f::10
MODE=${mode^^}
if [ "$balancer" = xvs ]; then label="xvs-director ($backend backend)"; else label="nftables DNAT (the kernel)"; fi

binaries=()
if [ "$balancer" = xvs ]; then binaries+=(xvs-director); fi
if [ "$mode" != nat ]; then binaries+=(xvs-agent); fi
e2e_preflight nat.sh "${binaries[@]}"

cluster_up=0
work=$(mktemp -d)
cleanup() {
    local rc=$?
    e2e_cluster_down 20
    rm -rf "$work"
    exit "$rc"
}
trap cleanup EXIT


# What cluster.sh up wrote: real server K's method (XVS_METHODS) and
# addresses (XVS_RS4, XVS_RS6), read back after each bring-up.
XVS_METHODS=""
XVS_RS4=""
XVS_RS6=""
rs_method() { cut -d, -f"$1" <<<"$XVS_METHODS"; }
rs_addr() { # K FAMILY
    if [ "$2" = 4 ]; then tr ' ' '\n' <<<"$XVS_RS4" | sed -n "${1}p"; else tr ' ' '\n' <<<"$XVS_RS6" | sed -n "${1}p"; fi
}
# rs_index ADDRESS: the K of the real server with that address.
rs_index() {
    tr ' ' '\n' <<<"$XVS_RS4 $XVS_RS6" | awk -v a="$1" -v n="$(wc -w <<<"$XVS_RS4")" '$1 == a { print (NR - 1) % n + 1; exit }'
}
# servers_using METHOD: the K of every real server with that method.
servers_using() { tr ',' '\n' <<<"$XVS_METHODS" | awk -v m="$1" '$1 == m { print NR }'; }
vip_of() { if [ "$1" = 4 ]; then echo "$VIP4"; else echo "$VIP6"; fi; }
url_of() { if [ "$1" = 4 ]; then echo "http://$VIP4"; else echo "http://[$VIP6]"; fi; }
client_of() { if [ "$1" = 4 ]; then echo 198.51.100.2; else echo 2001:db8:c::2; fi; }

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
    # shellcheck disable=SC1091
    . "$STATE/cluster.env"
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
            k=$(rs_index "$address")
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
    if [ "$ok" != 0 ]; then
        # What the director did besides: drops by reason, stateless sends.
        "$PY" -c 'import json, sys
s = json.load(open(sys.argv[1]))
print("  director: drops", s.get("drops"), "stateless", s.get("stateless"), "connections in the table", s.get("connections"))' "$STATE/stats.json" || true
    fi
    return $ok
}

# udp_traffic_matches: each UDP echo check sent 5 datagrams of 32 bytes,
# each on a new flow, and got 5 back: per VIP the director must count 5
# connections, 5 packets and 5 IP lengths in, and per real server one
# datagram per connection in; out, the echoes of its NAT servers, none of
# its DR and TUN servers' (they bypass it).
udp_traffic_matches() {
    local vip ip_len ok=0 address method conns pin pout bin bout sum_conns sum_in sum_bytes
    fresh_stats || return 1
    for vip in "$VIP4" "$VIP6"; do
        if [ "$vip" = "$VIP4" ]; then ip_len=$((20 + 8 + 32)); else ip_len=$((40 + 8 + 32)); fi
        sum_conns=0 sum_in=0 sum_bytes=0
        while read -r address method conns pin pout bin bout; do
            echo "  udp $vip:7 -> $address ($method): conns $conns, packets in $pin, out $pout, bytes in $bin, out $bout"
            sum_conns=$((sum_conns + conns)) sum_in=$((sum_in + pin)) sum_bytes=$((sum_bytes + bin))
            if [ "$pin" != "$conns" ] || [ "$bin" != $((conns * ip_len)) ]; then
                echo "  udp $vip:7 -> $address: not one datagram of $ip_len bytes per connection in"
                ok=1
            fi
            if [ "$method" = nat ]; then
                if [ "$pout" != "$pin" ] || [ "$bout" != "$bin" ]; then
                    echo "  udp $vip:7 -> $address (NAT): the echoes back are not the datagrams in"
                    ok=1
                fi
            elif [ "$pout" != 0 ] || [ "$bout" != 0 ]; then
                echo "  udp $vip:7 -> $address (${method^^}): the director counted echoes, which bypass it"
                ok=1
            fi
        done < <("$PY" "$XVS_ROOT/testbed/lib/xvs-stats.py" servers "$STATE/stats.json" udp "$vip" 7)
        if [ "$sum_conns $sum_in $sum_bytes" != "5 5 $((5 * ip_len))" ]; then
            echo "  udp $vip:7: conns, packets in, bytes in are '$sum_conns $sum_in $sum_bytes', the client's traffic makes '5 5 $((5 * ip_len))'"
            ok=1
        fi
    done
    return $ok
}

# offload_on_everywhere: the client and the real servers send with transmit
# checksum offload on, so that every check goes through partial checksums.
offload_on_everywhere() {
    local nsif ok=0
    for nsif in client/eth0 rs1/eth0 rs2/eth0 rs3/eth0; do
        if ! ip netns exec "$(ns_of "${nsif%/*}")" ethtool -k "${nsif#*/}" | grep -qx 'tx-checksumming: on'; then
            echo "  $nsif: transmit checksum offload is off"
            ok=1
        fi
    done
    return $ok
}

# udp_echo_both: 5 UDP echo flows through each VIP, the same bytes back.
udp_echo_both() {
    client "$PY" "$XVS_ROOT/testbed/udp-echo.py" check "$VIP4" 7 --count 5 &&
        client "$PY" "$XVS_ROOT/testbed/udp-echo.py" check "$VIP6" 7 --count 5
}

# partial_checksums_completed IFACE...: a fresh stats file says the director
# completed partial checksums of frames that arrived on every IFACE.
partial_checksums_completed() {
    fresh_stats || return 1
    "$PY" -c 'import json, sys
s = json.load(open(sys.argv[1]))
by = s.get("partial_checksum_completed_by_interface", {})
print("  partial checksums completed:", s.get("partial_checksum_completed", 0), "by interface:", by)
sys.exit(0 if all(by.get(i, 0) > 0 for i in sys.argv[2:]) else 1)' "$STATE/stats.json" "$@"
}

# replies_path_right: the director sees every request and, of the
# replies, only its NAT servers': per service packets in > 0, and per real
# server packets (and bytes) out = 0 for DR and TUN, > 0 for NAT when it
# was given connections.
replies_path_right() {
    local proto vip port address method conns pin pout bin bout total ok=0
    fresh_stats || return 1
    for proto in tcp udp; do
        if [ "$proto" = tcp ]; then port=80; else port=7; fi
        for vip in "$VIP4" "$VIP6"; do
            total=0
            while read -r address method conns pin pout bin bout; do
                echo "  $proto $vip:$port -> $address ($method): conns $conns, packets in $pin, out $pout, bytes in $bin, out $bout"
                total=$((total + pin))
                if [ "$method" = nat ]; then
                    if [ "$conns" -gt 0 ] && [ "$pout" -le 0 ]; then ok=1; fi
                elif [ "$pout" != 0 ] || [ "$bout" != 0 ]; then
                    ok=1
                fi
            done < <("$PY" "$XVS_ROOT/testbed/lib/xvs-stats.py" servers "$STATE/stats.json" "$proto" "$vip" "$port")
            [ "$total" -gt 0 ] || ok=1
        done
    done
    return $ok
}

# mac_of NS IFACE
mac_of() { ip -n "$1" -br link show dev "$2" | awk '{ print $3 }'; }

# frames_right K...: with tcpdump on the client's eth0 and on the switch
# ports of real servers K... (their segment, as the wire carries it: a TUN
# server's XDP program strips the outer header before a capture on its own
# eth0 would see it), HTTP requests to both VIPs; then, per real server,
#   DR:  every frame it received for a VIP is one the client sent (same
#        digest: untouched but for the TTL), TTL one less, MACs director
#        d-srv -> rsK, and no tunnel frame;
#   TUN: every frame it received for a VIP is IP in IP: outer protocol 4
#        (IPv4) or next header 41 (IPv6), outer source the director's d-srv
#        address, outer destination rsK's own, outer TTL two less than the
#        client's (the director's, then the router's decrement), an outer
#        IPv4 header with DF (the client's TCP segments carry it), the inner
#        packet one the client sent with its TTL one less, MACs router
#        r-tun -> rsK, and no bare frame for the VIP;
#   both: every reply it sent goes from the VIP to the client through the
#        router (its MAC as destination), not the director;
# and for each family some frames each way.
# A capture that lost frames (tcpdump's "N packets dropped by kernel", on
# a loaded machine) cannot show that every frame is right: the check is
# then run once more, and says so.
frames_right() {
    capture_dropped=0
    frames_right_once "$@" && return 0
    [ "$capture_dropped" = 1 ] || return 1
    echo "  a capture dropped frames (machine busy): once more"
    capture_dropped=0
    frames_right_once "$@"
}

capture_dropped=0
frames_right_once() {
    # "wrong", not "ok": http sets ok (the requests it saw answered).
    local k wrong=0 client_ttl rs_mac dir_mac gw_mac method family vip cl n i cap outer_proto outer_src outer_df partial
    local -A pids
    local caps=(client)
    for k in "$@"; do caps+=("sw-rs$k"); done
    for cap in "${caps[@]}"; do
        # --immediate-mode: frames reach the file at once, none waits in the
        # kernel ring buffer's block (up to a second) when tcpdump is stopped.
        if [ "$cap" = client ]; then
            ip netns exec "$(ns_of client)" tcpdump -Z root --immediate-mode -U -n -i eth0 -w "$work/$cap.pcap" 'tcp port 80' \
                >/dev/null 2>"$work/tcpdump-$cap.err" &
        else
            ip netns exec "$(ns_of switch)" tcpdump -Z root --immediate-mode -U -n -i "$cap" -w "$work/$cap.pcap" \
                'tcp port 80 or ip proto 4 or ip proto 41 or ip6 proto 41 or ip6 proto 4' \
                >/dev/null 2>"$work/tcpdump-$cap.err" &
        fi
        pids[$cap]=$!
    done
    for cap in "${caps[@]}"; do
        for ((i = 0; i < 50; i++)); do # 5 s
            grep -qs 'listening on' "$work/tcpdump-$cap.err" && break
            sleep 0.1
        done
    done
    # wrr 1,2,3 gives every real server a connection in any six, per service.
    http "http://$VIP4/?h=[1-12]" 4 -H 'Connection: close'
    http "http://[$VIP6]/?h=[1-12]" 6 -H 'Connection: close'
    sleep 0.2
    for cap in "${caps[@]}"; do
        kill -TERM "${pids[$cap]}" 2>/dev/null || true
        wait "${pids[$cap]}" 2>/dev/null || true
    done
    for cap in "${caps[@]}"; do
        if grep -Eq '^[1-9][0-9]* packets? dropped by kernel' "$work/tcpdump-$cap.err"; then
            echo "  tcpdump on $cap: $(grep -E 'dropped by kernel' "$work/tcpdump-$cap.err")"
            capture_dropped=1
        fi
        grep -q 'listening on' "$work/tcpdump-$cap.err" || { echo "  tcpdump on $cap did not start:"; cat "$work/tcpdump-$cap.err"; return 1; }
        # The client sends with checksum offload on: its capture holds
        # partial checksums, which the director must complete; the real
        # server's must hold exactly the completed ones.
        if [ "$cap" = client ]; then partial=(--complete-partial); else partial=(); fi
        "$PY" "$XVS_ROOT/testbed/lib/pcap-frames.py" "${partial[@]}" "$work/$cap.pcap" >"$work/$cap.frames" || return 1
    done
    dir_mac=$(mac_of "$(ns_of director)" d-srv)
    for k in "$@"; do
        method=$(rs_method "$k")
        rs_mac=$(mac_of "$(ns_of "rs$k")" eth0)
        if [ "$method" = tun ]; then gw_mac=$(mac_of "$(ns_of router)" r-tun); else gw_mac=$(mac_of "$(ns_of router)" r-sw); fi
        echo "  rs$k (${method^^}): MACs rs$k eth0 $rs_mac, director d-srv $dir_mac, its router leg $gw_mac"
        for family in 4 6; do
            vip=$(vip_of "$family") cl=$(client_of "$family")
            # What the client sent to the VIP: one TTL for all of it.
            client_ttl=$(awk -v v="$vip" '$4 == v && $8 == 80 { print $5 }' "$work/client.frames" | sort -u)
            if [ "$(wc -w <<<"$client_ttl")" != 1 ]; then
                echo "  IPv$family: the client's frames to $vip carry TTLs '$client_ttl', not one value"
                wrong=1
                continue
            fi
            n=$(awk -v v="$vip" '$4 == v && $8 == 80' "$work/sw-rs$k.frames" | wc -l)
            echo "  IPv$family: the client sent TTL $client_ttl; rs$k received $n frames for $vip:80"
            [ "$n" -gt 0 ] || wrong=1
            if [ "$method" = tun ]; then
                # Outer header: protocol 4 for IPv4 inside, 41 for IPv6;
                # from the director's d-srv address; an IPv4 one copies the
                # inner DF (set on every segment of the client's TCP).
                if [ "$family" = 4 ]; then
                    outer_proto=4 outer_src=192.0.2.1 outer_df=df
                else
                    outer_proto=41 outer_src=2001:db8:5::1 outer_df=-
                fi
                awk -v v="$vip" -v c="$cl" -v m="$rs_mac" -v g="$gw_mac" -v t=$((client_ttl - 1)) \
                    -v op="$outer_proto" -v os="$outer_src" -v od="$(rs_addr "$k" "$family")" -v ot=$((client_ttl - 2)) -v df="$outer_df" '
                    FNR == NR { if ($4 == v && $8 == 80) sent[$9] = 1; next }
                    $4 == v && $8 == 80 {
                        if (NF != 14) { print "  received bare, not tunnelled: " $0; bad = 1; next }
                        if ($3 != c || $1 != g || $2 != m || $5 != t || $10 != op || $11 != os || $12 != od || $13 != ot || $14 != df || !($9 in sent)) {
                            print "  received, wrong: " $0
                            print "    (want inner src " c ", TTL " t ", a packet the client sent; outer proto " op " " os " -> " od ", TTL " ot ", DF " df "; MACs " g " -> " m ")"
                            bad = 1
                        }
                    }
                    END { exit bad }' "$work/client.frames" "$work/sw-rs$k.frames" || wrong=1
                awk -v v="$vip" 'NF == 14 && $4 == v' "$work/sw-rs$k.frames" | head -n 1 | sed 's/^/  e.g. /'
            else
                awk -v v="$vip" -v c="$cl" -v m="$rs_mac" -v d="$dir_mac" -v t=$((client_ttl - 1)) '
                    FNR == NR { if ($4 == v && $8 == 80) sent[$9] = 1; next }
                    $4 == v && $8 == 80 && (NF != 9 || $3 != c || $1 != d || $2 != m || $5 != t || !($9 in sent)) {
                        print "  received, wrong: " $0 "  (want src " c ", MACs " d " -> " m ", TTL " t ", a packet the client sent)"; bad = 1
                    }
                    END { exit bad }' "$work/client.frames" "$work/sw-rs$k.frames" || wrong=1
            fi
            n=$(awk -v v="$vip" '$3 == v && $7 == 80' "$work/sw-rs$k.frames" | wc -l)
            echo "  IPv$family: rs$k sent $n reply frames from $vip:80"
            [ "$n" -gt 0 ] || wrong=1
            awk -v v="$vip" -v c="$cl" -v m="$rs_mac" -v r="$gw_mac" '
                $3 == v && $7 == 80 && (NF != 9 || $4 != c || $1 != m || $2 != r) {
                    print "  sent, wrong: " $0 "  (want dst " c ", MACs " m " -> " r " (the router))"; bad = 1
                }
                END { exit bad }' "$work/sw-rs$k.frames" || wrong=1
        done
    done
    if [ "$wrong" != 0 ]; then
        for cap in "${caps[@]}"; do
            echo "  tcpdump on $cap: $(grep -E 'captured|received by filter|dropped by kernel' "$work/tcpdump-$cap.err" | tr '\n' ' ')"
        done
    fi
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

# big_upload URL FAMILY: PUTs the 1 MiB $work/up.bin to URL (under /up/);
# the real server that answered must have stored it byte for byte. Sets
# big_server to it.
big_upload() {
    local url=$1 family=$2 hdr=$work/up.hdr code server name
    rm -f "$hdr"
    big_server=""
    code=$(client curl -s -g --connect-timeout 3 --max-time 30 -D "$hdr" -o /dev/null -w '%{http_code}' -T "$work/up.bin" "$url") || {
        echo "  curl -T $url failed"
        return 1
    }
    if [ "$family" = 4 ]; then conns4=$((conns4 + 1)); else conns6=$((conns6 + 1)); fi
    server=$(tr -d '\r' <"$hdr" | sed -n 's/^[Xx]-[Rr]eal-[Ss]erver: //p')
    [ -n "$server" ] || { echo "  $url: no X-Real-Server header in the response (HTTP $code)"; return 1; }
    served[$family.$server]=$((${served[$family.$server]:-0} + 1))
    big_server=$server
    [ "$code" = 201 ] || { echo "  PUT $url: HTTP $code from $server, not 201"; return 1; }
    name=${url##*/}
    if ! cmp -s "$work/up.bin" "$STATE/$server/www/up/$name"; then
        echo "  PUT $url: what $server stored differs from the 1 MiB sent"
        return 1
    fi
    echo "  PUT $url: 1048576 bytes to $server, stored identical"
}

# big_transfers DIRECTION FAMILY: 1 MiB downloads of /big (DIRECTION down)
# or uploads (up) through the VIP, each checked byte for byte, until every
# real server has served one (at most 12: wlc spreads consecutive
# connections over all of them well within that). Sets big_servers.
big_servers=""
big_transfers() {
    local direction=$1 family=$2 i k url missing
    big_servers=""
    for ((i = 1; i <= 12; i++)); do
        if [ "$direction" = down ]; then
            big_download "$(url_of "$family")/big" "$family" || return 1
        else
            big_upload "$(url_of "$family")/up/$family-$i" "$family" || return 1
        fi
        grep -qw "$big_server" <<<"$big_servers" || big_servers+="${big_servers:+ }$big_server"
        missing=0
        for ((k = 1; k <= 3; k++)); do grep -qw "rs$k" <<<"$big_servers" || missing=1; done
        [ "$missing" = 0 ] && return 0
    done
    echo "  after 12 transfers, only $big_servers served one"
    return 1
}

# pmtu_learned NS DST MTU: NS's route to DST carries MTU, which it can only
# have learned from a frag-needed / packet-too-big the director sent (a
# real server's route back to the client across the narrow client link in
# NAT; the client's route to the VIP in TUN).
pmtu_learned() {
    local route
    route=$(ip -n "$(ns_of "$1")" route get "$2")
    echo "$route"
    grep -q "mtu $3\b" <<<"$route"
}

# stat_positive KEY: a fresh stats file says KEY > 0.
stat_positive() { fresh_stats && [ "$("$PY" "$XVS_ROOT/testbed/lib/xvs-stats.py" get "$STATE/stats.json" "$1")" -gt 0 ]; }
say "VS/$MODE end-to-end suite through $label"
head -c 1048576 /dev/urandom >"$work/up.bin"

# ---- A: wrr 1,2,3 -----------------------------------------------------------
up --scheduler wrr --weights 1,2,3

check "endpoints (client, rs1..rs3) send partial checksums: tx-checksumming on on their eth0" offload_on_everywhere

for family in 4 6; do
    url=$(url_of "$family")
    http "$url/?a=[1-600]" "$family" -H 'Connection: close'
    s=$(shares)
    check "IPv$family: 600 short HTTP connections to $url all answered ($ok ok, $connects connections)" \
        test "$ok" = 600 -a "$connects" = 600
    check "IPv$family: wrr 1,2,3 shares exactly 100/200/300 ($s)" test "$s" = "rs1=100 rs2=200 rs3=300"

    http "$url/?k=[1-20]" "$family"
    s=$(shares)
    servers=$( (grep -E '^rs[0-9]+$' "$work/http.out" || true) | sort -u | wc -l)
    check "IPv$family: keep-alive: 20 requests answered on $connects connection by $servers server ($s)" \
        test "$ok" = 20 -a "$connects" = 1 -a "$servers" = 1
done

check "UDP echo through $VIP4:7 (5 flows, same bytes back from the VIP)" \
    client "$PY" "$XVS_ROOT/testbed/udp-echo.py" check "$VIP4" 7 --count 5
check "UDP echo through [$VIP6]:7 (5 flows, same bytes back from the VIP)" \
    client "$PY" "$XVS_ROOT/testbed/udp-echo.py" check "$VIP6" 7 --count 5

# The first DR and the first TUN real server, if any.
captured=$(servers_using dr | head -n 1; servers_using tun | head -n 1)
if [ -n "$captured" ]; then
    names=""
    for k in $captured; do names+="${names:+ }rs$k"; done
    # shellcheck disable=SC2086 # one word per real server
    check "frames on the segments of $names (tcpdump, IPv4 and IPv6): DR = the client's packet, TTL - 1, MACs director -> rsK; TUN = the client's packet, TTL - 1, inside IPIP / ip6ip6 from the director's address to rsK's; replies from the VIP to the router's MAC" \
        frames_right $captured
fi
if [ "$balancer" = xvs ]; then
    check "counters: per real server, the director's conns equal the client's connections it answered; their sum, all the client made" counters_match
    if [ "$mode" = nat ]; then
        check "counters: the UDP services saw exactly the client's datagrams and the echoes (packets and bytes, both ways)" udp_traffic_matches
    else
        check "counters: the UDP services saw exactly the client's datagrams, and the echoes of NAT servers only (DR and TUN ones bypass the director)" udp_traffic_matches
        check "replies of DR and TUN servers bypass the director (packets out = 0), NAT servers' come back through it; every service has packets in" replies_path_right
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

# ---- B: wlc 1,2,3, large transfers ------------------------------------------
# A narrow client link where replies cross the director (NAT, mixed): NAT
# replies of 1500 bytes must make the director send frag-needed to the real
# server. In mixed mode the link is 1490, not 1400, so that the client's
# own full-sized segments still exceed the director's server side once a
# tunnel header is added (1490 + 20 or 40 > 1500).
case $mode in
nat) client_mtu=1400 ;;
mixed) client_mtu=1490 ;;
*) client_mtu="" ;;
esac
if [ -n "$client_mtu" ]; then
    up --scheduler wlc --weights 1,2,3 --client-mtu "$client_mtu"
    link="client link MTU $client_mtu: "
else
    up --scheduler wlc --weights 1,2,3
    link=""
fi

http "http://$VIP4/?c=[1-600]" 4 -H 'Connection: close'
s=$(shares)
check "600 short HTTP connections to $VIP4:80 all answered ($ok ok, $connects connections)" \
    test "$ok" = 600 -a "$connects" = 600
check "wlc 1,2,3 shares within 10 % of 100/200/300 ($s)" within_10pct "$s" 600

for family in 4 6; do
    check "${link}IPv$family: 1 MiB downloads of $(url_of "$family")/big until every real server sent one, each byte for byte" \
        big_transfers down "$family"
    if [ -n "$client_mtu" ]; then
        for k in $(servers_using nat); do
            check "IPv$family: frag-needed / packet-too-big reached rs$k (NAT): its route to the client learned MTU $client_mtu" \
                pmtu_learned "rs$k" "$(client_of "$family")" "$client_mtu"
        done
    fi
    check "${link}IPv$family: 1 MiB uploads (PUT) to $(url_of "$family")/up/ until every real server received one, each byte for byte" \
        big_transfers up "$family"
    if [ -n "$(servers_using tun)" ]; then
        if [ "$family" = 4 ]; then tunnel_mtu=1480; else tunnel_mtu=1460; fi
        check "IPv$family: frag-needed / packet-too-big from the director reached the client: its route to $(vip_of "$family") learned MTU $tunnel_mtu (1500 less the tunnel header)" \
            pmtu_learned client "$(vip_of "$family")" "$tunnel_mtu"
    fi
done
if [ "$balancer" = xvs ]; then
    if [ -n "$client_mtu" ] || [ -n "$(servers_using tun)" ]; then
        check "the director sent frag-needed / packet-too-big (stats: too_big_sent > 0)" stat_positive too_big_sent
    fi
    check "counters: per real server, the director's conns equal the client's connections it answered; their sum, all the client made" counters_match
fi
down

# ---- C: offload on -----------------------------------------------------------
# With transmit checksum offload on (cluster.sh's default, so A and B ran
# so too), a veth hands the balancer frames whose TCP/UDP checksum holds
# only the pseudo-header sum (CHECKSUM_PARTIAL: "the NIC will finish it").
# The kernel's NAT knows the checksum is partial; AF_XDP and AF_PACKET see
# bytes only, so xvs must recognise and complete it, or the real server (and
# for NAT replies the client) drops the segment as corrupt. Here the
# connections must succeed and the director must say that it completed
# partial checksums — of the client's frames, and of NAT servers' replies —
# which shows that the path was exercised.
up --scheduler wrr --weights 1,2,3
check "offload on: endpoints (client, rs1..rs3) send partial checksums" offload_on_everywhere
for family in 4 6; do
    http "$(url_of "$family")/?o=[1-30]" "$family" -H 'Connection: close'
    check "offload on: IPv$family: 30 short HTTP connections all answered ($ok ok, $connects connections)" \
        test "$ok" = 30 -a "$connects" = 30
done
check "offload on: UDP echo through $VIP4:7 and [$VIP6]:7 (5 flows each, same bytes back)" \
    udp_echo_both
if [ "$balancer" = xvs ]; then
    if [ -n "$(servers_using nat)" ]; then
        check "the director completed partial checksums of frames from the client (d-cli) and from NAT real servers (d-srv)" \
            partial_checksums_completed d-cli d-srv
    else
        check "the director completed partial checksums of frames from the client (d-cli)" \
            partial_checksums_completed d-cli
    fi
fi
down

if [ "$failures" -gt 0 ]; then
    say "$failures check(s) FAILED through $label"
    exit 1
fi
say "all checks passed through $label"
