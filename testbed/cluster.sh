#!/usr/bin/env bash
# A whole LVS cluster on one machine, in network namespaces: VS/NAT (the
# default, `up --mode nat`) or VS/DR (`up --mode dr`).
#
# VS/NAT:
#
#   xvs-client               xvs-director                          xvs-switch           xvs-rsK (K = 1..N)
#  +----------------+       +-----------------------------+       +-------------+      +-------------------+
#  | eth0           |  veth | d-cli            d-srv      | veth  | sw-dir      | veth | eth0              |
#  | 198.51.100.2   |-------| 198.51.100.1     192.0.2.1  |-------|   br0       |------| 192.0.2.(10+K)    |
#  | 2001:db8:c::2  |       | 2001:db8:c::1    2001:db8:5::1      |      sw-rsK |      | 2001:db8:5::(10+K)|
#  | default via    |       |                             |       +-------------+      | default via       |
#  |   the director |       | lo: VIP 203.0.113.10        |                            |   the director    |
#  +----------------+       |     VIP 2001:db8:f::10      |                            | nginx :80 (v4+v6) |
#                           | balancer: xvs-director      |                            |   / -> "rsK\n"    |
#                           |   (AF_XDP or AF_PACKET),    |                            |   /big -> 1 MiB   |
#                           |   or nftables DNAT          |                            | UDP echo :7       |
#                           +-----------------------------+                            +-------------------+
#
# NAT topology: the real servers' default route is the director, so their
# replies come back through it. The VIPs sit on the director's lo, so the
# director's own stack answers a ping to a VIP.
#
# VS/DR: the same client, director, switch and real servers, plus a router
# that carries the replies back to the client around the director:
#
#   xvs-client               xvs-director                xvs-switch              xvs-rsK (K = 1..N)
#  +------------------+ veth +--------------------+ veth +--------------+ veth +------------------------+
#  | eth0 198.51.100.2|------| d-cli        d-srv |------| sw-dir       |------| eth0 192.0.2.(10+K)    |
#  |   2001:db8:c::2  |      | VIPs on lo, as in  |      |   br0        |      |   2001:db8:5::(10+K)   |
#  |   default via the| ===> | NAT; xvs rewrites  | ===> |       sw-rsK | ===> | lo: VIP 203.0.113.10,  |
#  |   director       | VIP  | the MACs only      |      |       sw-rtr |      |     VIP 2001:db8:f::10 |
#  |                  |      +--------------------+      +---------|----+      |   (xvs-agent setup:    |
#  | eth1             |                                            |           |   VIPs, arp_ignore,    |
#  | 203.0.113.66/26  |      xvs-router                            | veth      |   arp_announce)        |
#  | 2001:db8:e::2/64 | veth +---------------------------------+   |           | default via the router |
#  | rp_filter off    |------| r-cli             r-sw          |---+           | nginx, UDP echo (they  |
#  |                  | <=== | 203.0.113.65/26   192.0.2.254   | <== replies = |   answer from the VIP) |
#  +------------------+      | 2001:db8:e::1/64  2001:db8:5::fe|               +------------------------+
#                            | forwarding on; routes           |
#                            | 198.51.100.0/24, 2001:db8:c::/64|
#                            | via the client's eth1           |
#                            +---------------------------------+
#
# DR topology: requests to a VIP go client eth0 -> director (the client's
# default route) -> switch -> rsK, with only the MAC addresses rewritten;
# rsK accepts them for the VIP on its lo and answers from the VIP to the
# client through its default route, the router, which hands them to the
# client's eth1. Replies never reach the director. The director's kernel
# keeps forwarding off in both modes (xvs forwards; the kernel must not).
#
#   testbed/cluster.sh up [--mode nat|dr] [--servers N] [--weights 1,2,3] [--scheduler wlc]
#                         [--client-mtu M] [--keep-offload]
#   testbed/cluster.sh balancer start xvs [--backend xdp|packet] [-- DIRECTOR_ARGS...]
#   testbed/cluster.sh balancer start nft       (NAT mode only)
#   testbed/cluster.sh balancer stop|kill|status
#   testbed/cluster.sh status
#   testbed/cluster.sh exec client|director|switch|router|rsK CMD...
#   testbed/cluster.sh down
#
# Environment:
#   XVS_NS_PREFIX (default xvs) names every namespace: PREFIX-client,
#     PREFIX-director, PREFIX-switch, PREFIX-router, PREFIX-rsK (the names
#     drawn above are the default's). Two clusters with different prefixes
#     run side by side: interface names and addresses are the same in both,
#     but each lives in its own namespaces. Every script of testbed/ (e2e,
#     demo) follows it. 1 to 12 lower-case letters, digits or dashes.
#   XVS_TESTBED_STATE (default /run/xvs-testbed, or /run/xvs-testbed-PREFIX
#     for a prefix other than xvs) holds the director's config
#     (cluster.toml), its stats file, logs and pid files, and in DR mode
#     xvs-agent's run directories (agent-rsK).
#   XVS_BIN (default target/release of the repo) holds xvs-director and
#     xvs-agent.
set -euo pipefail
# shellcheck source=lib/common.sh
. "$(dirname "$0")/lib/common.sh"

check_ns_prefix
STATE=${XVS_TESTBED_STATE:-$(xvs_default_state)}
XVS_BIN=${XVS_BIN:-$XVS_ROOT/target/release}
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3

NS_CLIENT=$(ns_of client)
NS_DIRECTOR=$(ns_of director)
NS_SWITCH=$(ns_of switch)
NS_ROUTER=$(ns_of router) # DR mode only
VIP4=203.0.113.10
VIP6=2001:db8:f::10
CLIENT4=198.51.100.2
CLIENT6=2001:db8:c::2
DCLI4=198.51.100.1
DCLI6=2001:db8:c::1
DSRV4=192.0.2.1
DSRV6=2001:db8:5::1
# DR mode: the router's leg on the real servers' LAN, the client's second
# link (router side, client side).
RSW4=192.0.2.254
RSW6=2001:db8:5::fe
RCLI4=203.0.113.65
RCLI6=2001:db8:e::1
CLIENT4_ETH1=203.0.113.66
CLIENT6_ETH1=2001:db8:e::2
NFT_TABLE=xvs_testbed

rs4() { echo "192.0.2.$((10 + $1))"; }
rs6() { echo "2001:db8:5::$((10 + $1))"; }

usage() {
    sed -n '/^#   testbed\/cluster.sh/s/^#   //p' "$0" >&2
    exit 2
}

# poll DESCRIPTION SECONDS CMD...: runs CMD every 0.1 s until it succeeds;
# fails (returns 1, says what it waited for) after SECONDS.
poll() {
    local what=$1 secs=$2 i
    shift 2
    for ((i = 0; i < secs * 10; i++)); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "timed out after ${secs} s waiting for: $what" >&2
    return 1
}

# The PID in FILE, if that process is alive and its command line contains
# PATTERN (so a recycled PID is never signalled).
live_pid() {
    local file=$1 pattern=$2 pid
    [ -f "$file" ] || return 1
    pid=$(cat "$file" 2>/dev/null) || return 1
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    [ -r "/proc/$pid/cmdline" ] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$pattern" || return 1
    echo "$pid"
}

# pid_gone PID: the process has exited. A zombie whose threads have all
# exited counts as exited (its files, sockets and locks are closed by then):
# nginx daemonizes, so its parent is PID 1, and this machine's PID 1 reaps
# only every few seconds (waiting for the reaping made every `down` ~10 s
# slower). A zombie main thread alone is not enough: the director's other
# threads may still hold its interface lock and sockets.
pid_gone() {
    local stat tasks
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
    stat=${stat##*) } # the fields after "(comm)", which may hold spaces
    [ "${stat%% *}" = Z ] || return 1
    tasks=$(find "/proc/$1/task" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
    [ "$tasks" -le 1 ]
}

# stop_pid FILE PATTERN NAME SIG: sends SIG to the process of FILE and waits
# up to 10 s for it to exit, then SIGKILLs it (and says so). Removes FILE.
stop_pid() {
    local file=$1 pattern=$2 name=$3 sig=${4:-TERM} pid
    if pid=$(live_pid "$file" "$pattern"); then
        kill "-$sig" "$pid" 2>/dev/null || true
        if ! poll "$name (pid $pid) to exit" 10 pid_gone "$pid"; then
            echo "$name (pid $pid) did not exit within 10 s of SIG$sig: sending SIGKILL" >&2
            kill -KILL "$pid" 2>/dev/null || true
            poll "$name (pid $pid) to exit after SIGKILL" 5 pid_gone "$pid" || true
        fi
    fi
    rm -f "$file"
}

ns_rs() { ns_of "rs$1"; }
rs_namespaces() { ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^$XVS_NS_PREFIX-rs[0-9]+\$" | sort -V || true; }
our_namespaces() {
    ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^($NS_CLIENT|$NS_DIRECTOR|$NS_SWITCH|$NS_ROUTER)$" || true
    rs_namespaces
}

load_cluster_env() {
    [ -f "$STATE/cluster.env" ] || die "no cluster is up (no $STATE/cluster.env): run testbed/cluster.sh up"
    # shellcheck disable=SC1091
    . "$STATE/cluster.env"
}

# ---------------------------------------------------------------- up -------

write_nginx_conf() {
    local k=$1 dir=$2
    cat >"$dir/nginx.conf" <<EOF
# rs$k of the xvs testbed (written by testbed/cluster.sh)
user nobody nogroup;
worker_processes auto;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $dir/tmp/body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    keepalive_requests 10000;
    server {
        listen 80 backlog=4096;
        listen [::]:80 ipv6only=on backlog=4096;
        root $dir/www;
        index index.html;
        add_header X-Real-Server rs$k always;
    }
}
EOF
}

# Writes the director's config from the kernel's view of its interfaces.
# MODE (nat or dr) is every real server's forwarding method.
write_director_config() {
    local servers=$1 weights=$2 scheduler=$3 mode=$4 out=$STATE/cluster.toml
    local ifname role addrs mac mtu proto vip port k
    {
        echo "# xvs-director config for the testbed's ${mode^^} cluster (written by testbed/cluster.sh up)."
        echo "# Keys: director/CONFIG.md. Neighbours come from the kernel; connection table and"
        echo "# timeouts are the defaults (IPVS's)."
        for ifname in d-cli d-srv; do
            if [ "$ifname" = d-cli ]; then role=client addrs="\"$DCLI4/24\", \"$DCLI6/64\""; else role=server addrs="\"$DSRV4/24\", \"$DSRV6/64\""; fi
            read -r mac mtu < <(ip -n "$NS_DIRECTOR" -j link show "$ifname" |
                "$PY" -c 'import json,sys; l=json.load(sys.stdin)[0]; print(l["address"], l["mtu"])')
            printf '\n[[interfaces]]\nname = "%s"\nrole = "%s"\nmac = "%s"\nmtu = %s\naddresses = [%s]\n' \
                "$ifname" "$role" "$mac" "$mtu" "$addrs"
        done
        for vip in "$VIP4" "$VIP6"; do
            for proto in tcp udp; do
                if [ "$proto" = tcp ]; then port=80; else port=7; fi
                printf '\n[[services]]\nproto = "%s"\nvip = "%s"\nport = %s\nscheduler = "%s"\n' "$proto" "$vip" "$port" "$scheduler"
                for ((k = 1; k <= servers; k++)); do
                    printf '\n[[services.real_servers]]\naddress = "%s"\nport = %s\nmethod = "%s"\nweight = %s\n' \
                        "$(if [ "$vip" = "$VIP4" ]; then rs4 "$k"; else rs6 "$k"; fi)" "$port" "$mode" "$(cut -d, -f"$k" <<<"$weights")"
                done
            done
        done
    } >"$out"
}

# An address is usable once it is no longer tentative (DAD is off, so this
# is immediate; checked all the same).
no_tentative() { [ -z "$(ip -n "$1" -6 addr show tentative)" ]; }
page_is() { [ "$(ip netns exec "$1" curl -s --max-time 1 "$2")" = "$3" ]; }
udp_listening() { ip netns exec "$1" ss -Hlun 'sport = :7' | grep -q .; }

cmd_up() {
    local mode=nat servers=3 weights="" scheduler=wlc client_mtu="" keep_offload=0 k w ns
    while [ $# -gt 0 ]; do
        case $1 in
        --mode) mode=${2:?}; shift 2 ;;
        --servers) servers=${2:?}; shift 2 ;;
        --weights) weights=${2:?}; shift 2 ;;
        --scheduler) scheduler=${2:?}; shift 2 ;;
        --client-mtu) client_mtu=${2:?}; shift 2 ;;
        --keep-offload) keep_offload=1; shift ;;
        *) usage ;;
        esac
    done
    { [[ "$servers" =~ ^[0-9]+$ ]] && [ "$servers" -ge 1 ] && [ "$servers" -le 50 ]; } || die "--servers: $servers is not a number from 1 to 50"
    if [ -z "$weights" ]; then
        weights=$(printf '1%.0s,' $(seq "$servers"))
        weights=${weights%,}
    fi
    [[ "$weights" =~ ^[0-9]+(,[0-9]+)*$ ]] || die "--weights: '$weights' is not a comma-separated list of integers"
    [ "$(tr ',' '\n' <<<"$weights" | wc -l)" -eq "$servers" ] || die "--weights: '$weights' has not $servers entries (one per real server)"
    [[ "$scheduler" =~ ^[a-z]+$ ]] || die "--scheduler: '$scheduler' is not a scheduler name"
    case $mode in nat | dr) ;; *) die "--mode: '$mode' is not nat or dr" ;; esac
    # The narrow client link exists to make the director send frag-needed
    # for the replies it forwards; in DR it forwards none.
    [ "$mode" = nat ] || [ -z "$client_mtu" ] || die "--client-mtu: only with --mode nat (DR replies do not cross the director's client link)"
    [ "$mode" = nat ] || [ -x "$XVS_BIN/xvs-agent" ] ||
        die "$XVS_BIN/xvs-agent does not exist (DR real servers are set up by it): build it with 'cargo build --release --workspace' (or set XVS_BIN)"
    [ -z "$client_mtu" ] || { [[ "$client_mtu" =~ ^[0-9]+$ ]] && [ "$client_mtu" -ge 1280 ] && [ "$client_mtu" -le 1500 ]; } ||
        die "--client-mtu: $client_mtu is not a number from 1280 (IPv6's minimum) to 1500"
    need_root "testbed/cluster.sh up"
    [ -z "$(our_namespaces)" ] || die "a testbed cluster is already up ($(our_namespaces | xargs)): run testbed/cluster.sh down first"
    case $STATE in /?*) ;; *) die "XVS_TESTBED_STATE must be an absolute path, not '$STATE'" ;; esac

    # Whatever fails from here on, leave nothing behind.
    trap 'echo "cluster.sh up failed: tearing down what was built" >&2; cmd_down >/dev/null 2>&1 || true' EXIT

    mkdir -p "$STATE"
    chmod 755 "$STATE" # nginx workers (nobody) read the pages under it
    rm -f "$STATE/stats.json" "$STATE/director.log" "$STATE/balancer"
    printf 'XVS_MODE=%s\nXVS_SERVERS=%s\nXVS_WEIGHTS=%s\nXVS_SCHEDULER=%s\nXVS_CLIENT_MTU=%s\nXVS_KEEP_OFFLOAD=%s\n' \
        "$mode" "$servers" "$weights" "$scheduler" "$client_mtu" "$keep_offload" >"$STATE/cluster.env"

    local router=""
    [ "$mode" = dr ] && router=$NS_ROUTER
    say "namespaces ($mode): $NS_CLIENT $NS_DIRECTOR $NS_SWITCH ${router:+$router }$(ns_rs 1)..$(ns_rs "$servers")"
    for ns in "$NS_CLIENT" "$NS_DIRECTOR" "$NS_SWITCH" $router $(for ((k = 1; k <= servers; k++)); do ns_rs "$k"; done); do
        ip netns add "$ns"
        # No duplicate address detection: addresses are usable at once.
        ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0
        ip -n "$ns" link set lo up
    done
    # The switch is a pure layer-2 bridge: no addresses of its own.
    ip netns exec "$NS_SWITCH" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1

    # Links are created directly inside their namespaces: nothing appears,
    # even briefly, in the caller's namespace.
    ip link add eth0 netns "$NS_CLIENT" type veth peer name d-cli netns "$NS_DIRECTOR"
    ip link add d-srv netns "$NS_DIRECTOR" type veth peer name sw-dir netns "$NS_SWITCH"
    ip -n "$NS_SWITCH" link add br0 type bridge mcast_snooping 0
    ip -n "$NS_SWITCH" link set sw-dir master br0 up
    for ((k = 1; k <= servers; k++)); do
        ip link add eth0 netns "$(ns_rs "$k")" type veth peer name "sw-rs$k" netns "$NS_SWITCH"
        ip -n "$NS_SWITCH" link set "sw-rs$k" master br0 up
    done
    ip -n "$NS_SWITCH" link set br0 up

    # Director.
    ip -n "$NS_DIRECTOR" addr add "$DCLI4/24" dev d-cli
    ip -n "$NS_DIRECTOR" addr add "$DCLI6/64" dev d-cli nodad
    ip -n "$NS_DIRECTOR" addr add "$DSRV4/24" dev d-srv
    ip -n "$NS_DIRECTOR" addr add "$DSRV6/64" dev d-srv nodad
    ip -n "$NS_DIRECTOR" addr add "$VIP4/32" dev lo
    ip -n "$NS_DIRECTOR" addr add "$VIP6/128" dev lo nodad
    ip -n "$NS_DIRECTOR" link set d-srv up

    # Client.
    ip -n "$NS_CLIENT" addr add "$CLIENT4/24" dev eth0
    ip -n "$NS_CLIENT" addr add "$CLIENT6/64" dev eth0 nodad
    if [ -n "$client_mtu" ]; then
        ip -n "$NS_DIRECTOR" link set d-cli mtu "$client_mtu"
        ip -n "$NS_CLIENT" link set eth0 mtu "$client_mtu"
    fi
    ip -n "$NS_DIRECTOR" link set d-cli up
    ip -n "$NS_CLIENT" link set eth0 up
    if [ -n "$client_mtu" ]; then
        # The client still advertises the MSS of a 1500-byte link (as a
        # client whose own LAN is Ethernet, behind the narrower hop, would):
        # otherwise the real servers would never send a segment too big for
        # the director's client link, and frag-needed would go untested.
        ip -n "$NS_CLIENT" route add default via "$DCLI4" advmss 1460
        ip -n "$NS_CLIENT" -6 route add default via "$DCLI6" advmss 1440
    else
        ip -n "$NS_CLIENT" route add default via "$DCLI4"
        ip -n "$NS_CLIENT" -6 route add default via "$DCLI6"
    fi

    [ "$mode" = dr ] && up_router

    # Real servers: in NAT their replies must go back through the director,
    # in DR around it, through the router.
    local gw4=$DSRV4 gw6=$DSRV6
    [ "$mode" = dr ] && gw4=$RSW4 gw6=$RSW6
    for ((k = 1; k <= servers; k++)); do
        ns=$(ns_rs "$k")
        ip -n "$ns" addr add "$(rs4 "$k")/24" dev eth0
        ip -n "$ns" addr add "$(rs6 "$k")/64" dev eth0 nodad
        ip -n "$ns" link set eth0 up
        ip -n "$ns" route add default via "$gw4"
        ip -n "$ns" -6 route add default via "$gw6"
        if [ "$mode" = dr ]; then
            # What the LVS HOWTO has an operator do by hand on a DR real
            # server (VIPs on lo, never answer ARP for them) is the agent's job.
            ip netns exec "$ns" "$XVS_BIN/xvs-agent" --run-dir "$STATE/agent-rs$k" \
                setup --vip "$VIP4" --vip "$VIP6" --method dr --iface eth0 | sed "s/^/    rs$k: /"
        fi
    done

    # A veth hands a locally sent frame over with a partial checksum (the
    # "NIC" is expected to finish it); AF_XDP then sees a frame that no real
    # wire carries. Endpoints compute full checksums, as on a wire.
    if [ "$keep_offload" = 1 ]; then
        say "transmit checksum offload left ON on the endpoints (--keep-offload)"
    else
        for ns in "$NS_CLIENT" $(for ((k = 1; k <= servers; k++)); do ns_rs "$k"; done); do
            ip netns exec "$ns" ethtool -K eth0 tx off >/dev/null
        done
        # DR: no frame from the router or the client's eth1 ever reaches the
        # director (the router only forwards replies to the client, and
        # forwarding keeps the sender's full checksum), so this is not
        # needed today; it is done all the same, so that no veth of the
        # testbed hands anyone a partial checksum if a path changes.
        if [ "$mode" = dr ]; then
            ip netns exec "$NS_CLIENT" ethtool -K eth1 tx off >/dev/null
            ip netns exec "$NS_ROUTER" ethtool -K r-cli tx off >/dev/null
            ip netns exec "$NS_ROUTER" ethtool -K r-sw tx off >/dev/null
        fi
    fi

    say "real servers: nginx on :80 (page 'rsK', /big = 1 MiB) and UDP echo on :7"
    for ((k = 1; k <= servers; k++)); do
        ns=$(ns_rs "$k")
        local dir=$STATE/rs$k
        rm -rf "$dir"
        mkdir -p "$dir/www" "$dir/tmp"
        printf 'rs%s\n' "$k" >"$dir/www/index.html"
        head -c 1048576 /dev/urandom >"$dir/www/big"
        chmod 644 "$dir/www/index.html" "$dir/www/big"
        write_nginx_conf "$k" "$dir"
        ip netns exec "$ns" nginx -q -c "$dir/nginx.conf" -e "$dir/error.log"
        setsid ip netns exec "$ns" "$PY" "$XVS_ROOT/testbed/udp-echo.py" serve --port 7 \
            </dev/null >"$dir/udp-echo.log" 2>&1 &
        echo $! >"$dir/udp-echo.pid"
    done

    # Readiness, by polling: addresses usable, every server answering, and
    # the wiring from the director to every real server and the client.
    for ns in $(our_namespaces); do
        poll "IPv6 addresses in $ns to leave the tentative state" 5 no_tentative "$ns"
    done
    for ((k = 1; k <= servers; k++)); do
        ns=$(ns_rs "$k")
        poll "nginx on rs$k (IPv4)" 10 page_is "$ns" "http://127.0.0.1/" "rs$k"
        poll "nginx on rs$k (IPv6)" 10 page_is "$ns" "http://[::1]/" "rs$k"
        poll "UDP echo on rs$k" 10 udp_listening "$ns"
        poll "director -> rs$k over IPv4" 5 ip netns exec "$NS_DIRECTOR" ping -c1 -W1 "$(rs4 "$k")"
        poll "director -> rs$k over IPv6" 5 ip netns exec "$NS_DIRECTOR" ping -c1 -W1 "$(rs6 "$k")"
        if [ "$mode" = dr ]; then
            poll "rs$k -> router over IPv4" 5 ip netns exec "$ns" ping -c1 -W1 "$RSW4"
            poll "rs$k -> router over IPv6" 5 ip netns exec "$ns" ping -c1 -W1 "$RSW6"
        fi
    done
    if [ "$mode" = dr ]; then
        poll "router -> client's eth1 over IPv4" 5 ip netns exec "$NS_ROUTER" ping -c1 -W1 "$CLIENT4_ETH1"
        poll "router -> client's eth1 over IPv6" 5 ip netns exec "$NS_ROUTER" ping -c1 -W1 "$CLIENT6_ETH1"
    fi
    poll "client -> director over IPv4" 5 ip netns exec "$NS_CLIENT" ping -c1 -W1 "$DCLI4"
    poll "client -> director over IPv6" 5 ip netns exec "$NS_CLIENT" ping -c1 -W1 "$DCLI6"

    write_director_config "$servers" "$weights" "$scheduler" "$mode"
    trap - EXIT
    say "${mode^^} cluster up: $servers real servers (weights $weights, scheduler $scheduler${client_mtu:+, client link MTU $client_mtu}); director config $STATE/cluster.toml"
    if [ "$mode" = nat ]; then
        echo "    next: testbed/cluster.sh balancer start xvs   (or: balancer start nft)"
    else
        echo "    next: testbed/cluster.sh balancer start xvs"
    fi
}

# DR: the router namespace, its link to the switch and its link to the
# client's second interface (eth1), over which the replies arrive.
up_router() {
    ip link add r-sw netns "$NS_ROUTER" type veth peer name sw-rtr netns "$NS_SWITCH"
    ip -n "$NS_SWITCH" link set sw-rtr master br0 up
    ip link add r-cli netns "$NS_ROUTER" type veth peer name eth1 netns "$NS_CLIENT"
    ip -n "$NS_ROUTER" addr add "$RSW4/24" dev r-sw
    ip -n "$NS_ROUTER" addr add "$RSW6/64" dev r-sw nodad
    ip -n "$NS_ROUTER" addr add "$RCLI4/26" dev r-cli
    ip -n "$NS_ROUTER" addr add "$RCLI6/64" dev r-cli nodad
    ip -n "$NS_ROUTER" link set r-sw up
    ip -n "$NS_ROUTER" link set r-cli up
    ip netns exec "$NS_ROUTER" sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1
    ip -n "$NS_ROUTER" route add 198.51.100.0/24 via "$CLIENT4_ETH1"
    ip -n "$NS_ROUTER" -6 route add 2001:db8:c::/64 via "$CLIENT6_ETH1"

    # The client's replies from a VIP arrive on eth1, while its route to the
    # VIP leaves by eth0 (towards the director): reverse-path filtering
    # would drop them as spoofed. Asymmetric routing is the point of DR, so
    # it is off (the effective value is the larger of all and eth1). IPv6
    # has no reverse-path filter unless a firewall adds one.
    ip netns exec "$NS_CLIENT" sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0
    ip -n "$NS_CLIENT" addr add "$CLIENT4_ETH1/26" dev eth1
    ip -n "$NS_CLIENT" addr add "$CLIENT6_ETH1/64" dev eth1 nodad
    ip netns exec "$NS_CLIENT" sysctl -qw net.ipv4.conf.eth1.rp_filter=0
    ip -n "$NS_CLIENT" link set eth1 up
}

# ---------------------------------------------------------- balancer -------

balancer_kind() { cat "$STATE/balancer" 2>/dev/null || echo none; }
director_pid() { live_pid "$STATE/director.pid" xvs-director; }

start_xvs() {
    local backend=xdp extra=() bin=$XVS_BIN/xvs-director pid i
    while [ $# -gt 0 ]; do
        case $1 in
        --backend) backend=${2:?}; shift 2 ;;
        --) shift; extra=("$@"); break ;;
        *) usage ;;
        esac
    done
    case $backend in xdp | packet) ;; *) die "--backend: '$backend' is not xdp or packet" ;; esac
    [ -x "$bin" ] || die "$bin does not exist: build it with 'cargo build --release --workspace' (or set XVS_BIN)"
    ip netns exec "$NS_DIRECTOR" sysctl -qw net.ipv4.ip_forward=0 net.ipv6.conf.all.forwarding=0
    rm -f "$STATE/stats.json"
    echo "xvs $backend" >"$STATE/balancer"
    RUST_LOG=${RUST_LOG:-info} setsid ip netns exec "$NS_DIRECTOR" "$bin" --config "$STATE/cluster.toml" \
        --backend "$backend" --stats-file "$STATE/stats.json" "${extra[@]}" \
        </dev/null >"$STATE/director.log" 2>&1 &
    pid=$!
    echo "$pid" >"$STATE/director.pid"
    for ((i = 0; i < 200; i++)); do # 20 s
        [ -f "$STATE/stats.json" ] && break
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "xvs-director exited during start; the end of $STATE/director.log:" >&2
            tail -n 30 "$STATE/director.log" >&2
            rm -f "$STATE/director.pid" "$STATE/balancer"
            return 1
        fi
        sleep 0.1
    done
    if [ ! -f "$STATE/stats.json" ]; then
        echo "xvs-director wrote no $STATE/stats.json within 20 s; the end of $STATE/director.log:" >&2
        tail -n 30 "$STATE/director.log" >&2
        stop_pid "$STATE/director.pid" xvs-director xvs-director TERM
        rm -f "$STATE/balancer"
        return 1
    fi
    say "xvs-director running (pid $pid, backend $backend); log $STATE/director.log, stats $STATE/stats.json"
}

start_nft() {
    load_cluster_env
    [ "${XVS_MODE:-nat}" = nat ] || die "nftables DNAT is a NAT balancer: a ${XVS_MODE^^} cluster needs 'balancer start xvs'"
    local k w j n=0 map4="" map6="" rules
    for ((k = 1; k <= XVS_SERVERS; k++)); do
        w=$(cut -d, -f"$k" <<<"$XVS_WEIGHTS")
        for ((j = 0; j < w; j++)); do # weight = number of slots in the map
            map4+="${map4:+, }$n : $(rs4 "$k")"
            map6+="${map6:+, }$n : $(rs6 "$k")"
            n=$((n + 1))
        done
    done
    [ "$n" -gt 0 ] || die "every real server has weight 0: nftables has nowhere to send connections"
    rules=$(
        cat <<EOF
table inet $NFT_TABLE {
    chain prerouting {
        type nat hook prerouting priority dstnat; policy accept;
        ip daddr $VIP4 tcp dport 80 dnat ip to numgen inc mod $n map { $map4 }
        ip daddr $VIP4 udp dport 7 dnat ip to numgen inc mod $n map { $map4 }
        ip6 daddr $VIP6 tcp dport 80 dnat ip6 to numgen inc mod $n map { $map6 }
        ip6 daddr $VIP6 udp dport 7 dnat ip6 to numgen inc mod $n map { $map6 }
    }
}
EOF
    )
    ip netns exec "$NS_DIRECTOR" sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1
    ip netns exec "$NS_DIRECTOR" nft -f - <<<"$rules"
    echo nft >"$STATE/balancer"
    say "nftables DNAT balancing in $NS_DIRECTOR (table inet $NFT_TABLE, numgen inc over $n weighted slots; the scheduler option does not apply)"
}

stop_nft() {
    ip netns exec "$NS_DIRECTOR" nft delete table inet "$NFT_TABLE" 2>/dev/null || true
    ip netns exec "$NS_DIRECTOR" sysctl -qw net.ipv4.ip_forward=0 net.ipv6.conf.all.forwarding=0 2>/dev/null || true
}

cmd_balancer() {
    local sub=${1:-status} kind pid
    shift || true
    need_root "testbed/cluster.sh balancer"
    [ -n "$(our_namespaces)" ] || die "no cluster is up: run testbed/cluster.sh up first"
    kind=$(balancer_kind)
    case $sub in
    start)
        local what=${1:-}
        shift || true
        if [ "$kind" != none ] && { [ "$kind" = nft ] || director_pid >/dev/null; }; then
            die "a balancer is already running ($kind): testbed/cluster.sh balancer stop first"
        fi
        case $what in
        xvs) start_xvs "$@" ;;
        nft) [ $# -eq 0 ] || usage; start_nft ;;
        *) usage ;;
        esac
        ;;
    stop)
        case $kind in
        xvs*)
            stop_pid "$STATE/director.pid" xvs-director xvs-director TERM
            say "xvs-director stopped"
            ;;
        nft) stop_nft; say "nftables balancing removed" ;;
        *) echo "no balancer is running" ;;
        esac
        rm -f "$STATE/balancer"
        ;;
    kill)
        case $kind in
        xvs*)
            pid=$(director_pid) || die "xvs-director is not running"
            kill -KILL "$pid"
            poll "xvs-director (pid $pid) to die" 5 pid_gone "$pid" || die "xvs-director (pid $pid) survived SIGKILL"
            rm -f "$STATE/director.pid"
            say "xvs-director killed with SIGKILL (pid $pid): whatever it left in the kernel stays"
            ;;
        # nftables has no process to crash: its rules go, as on stop.
        nft) stop_nft; say "nftables balancing removed (nft has no process to kill)" ;;
        *) die "no balancer is running" ;;
        esac
        rm -f "$STATE/balancer"
        ;;
    status) balancer_status ;;
    *) usage ;;
    esac
}

balancer_status() {
    local kind pid
    kind=$(balancer_kind)
    case $kind in
    xvs*)
        if pid=$(director_pid); then
            echo "balancer: xvs-director running (pid $pid, backend ${kind#xvs }), stats $STATE/stats.json"
        else
            echo "balancer: xvs-director NOT running (it was started; see $STATE/director.log)"
        fi
        ;;
    nft) echo "balancer: nftables DNAT (table inet $NFT_TABLE in $NS_DIRECTOR)" ;;
    *) echo "balancer: none" ;;
    esac
}

# ------------------------------------------------------ status / down ------

cmd_status() {
    local ns k pid
    if [ -z "$(our_namespaces)" ]; then
        echo "no testbed cluster is up"
        return 0
    fi
    if [ -f "$STATE/cluster.env" ]; then
        echo "mode: $(sed -n 's/^XVS_MODE=//p' "$STATE/cluster.env" | grep . || echo nat)"
        grep -v '^XVS_MODE=' "$STATE/cluster.env" | sed 's/^XVS_/  /'
    fi
    for ns in $(our_namespaces); do
        echo "$ns:"
        ip -n "$ns" -br addr show | grep -v '^lo ' | sed 's/^/    /'
        ip -n "$ns" -br addr show dev lo | awk '{ for (i = 3; i <= NF; i++) if ($i !~ /^(127\.|::1)/) printf "    lo: %s\n", $i }'
    done
    for ns in $(rs_namespaces); do
        k=${ns#"$XVS_NS_PREFIX"-rs}
        if pid=$(live_pid "$STATE/rs$k/nginx.pid" nginx); then echo "rs$k nginx: pid $pid"; else echo "rs$k nginx: NOT running"; fi
        if pid=$(live_pid "$STATE/rs$k/udp-echo.pid" udp-echo); then echo "rs$k udp echo: pid $pid"; else echo "rs$k udp echo: NOT running"; fi
        [ -f "$STATE/agent-rs$k/state.json" ] && echo "rs$k xvs-agent: set up for DR (record $STATE/agent-rs$k/state.json)"
    done
    balancer_status
}

cmd_down() {
    local ns k pid
    need_root "testbed/cluster.sh down"
    if [ -f "$STATE/director.pid" ]; then
        stop_pid "$STATE/director.pid" xvs-director xvs-director TERM
    fi
    for ns in $(rs_namespaces); do
        k=${ns#"$XVS_NS_PREFIX"-rs}
        stop_pid "$STATE/rs$k/nginx.pid" nginx "nginx on rs$k" TERM
        stop_pid "$STATE/rs$k/udp-echo.pid" udp-echo "UDP echo on rs$k" TERM
        # DR: the agent undoes its own set-up (deleting the namespace would
        # take it away too, but the record in its run directory would stay).
        if [ -d "$STATE/agent-rs$k" ]; then
            if [ -x "$XVS_BIN/xvs-agent" ]; then
                ip netns exec "$ns" "$XVS_BIN/xvs-agent" --run-dir "$STATE/agent-rs$k" teardown | sed "s/^/rs$k: /" ||
                    echo "xvs-agent teardown on rs$k failed: the namespace goes all the same" >&2
            fi
            rm -rf "$STATE/agent-rs$k"
        fi
    done
    # Anything still inside our namespaces was started in them (by hand with
    # `cluster.sh exec`, say): stop it by PID so that no namespace outlives us.
    for ns in $(our_namespaces); do
        for pid in $(ip netns pids "$ns" 2>/dev/null); do
            echo "stopping pid $pid still running in $ns: $(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" >&2
            kill -TERM "$pid" 2>/dev/null || true
        done
        for pid in $(ip netns pids "$ns" 2>/dev/null); do
            poll "pid $pid in $ns to exit" 3 pid_gone "$pid" || kill -KILL "$pid" 2>/dev/null || true
        done
    done
    for ns in $(our_namespaces); do
        ip netns del "$ns"
    done
    if [ -d "$STATE" ]; then
        rm -rf "$STATE"/rs[0-9]* "$STATE"/agent-rs[0-9]*
        rm -f "$STATE/cluster.env" "$STATE/balancer" "$STATE/director.pid"
    fi
    echo "testbed cluster down (kept for a post-mortem, if present: $STATE/cluster.toml, director.log, stats.json)"
}

cmd_exec() {
    local role=${1:-}
    shift || true
    [ $# -gt 0 ] || usage
    case $role in
    client | director | switch | router | rs[0-9]*) ;;
    *) die "exec: unknown role '$role' (client, director, switch, router (DR), rs1..rsN)" ;;
    esac
    ip netns list | awk '{print $1}' | grep -qx "$(ns_of "$role")" || die "exec: namespace $(ns_of "$role") does not exist (is the cluster up?)"
    exec ip netns exec "$(ns_of "$role")" "$@"
}

case ${1:-} in
up) shift; cmd_up "$@" ;;
down) shift; cmd_down ;;
status) shift; cmd_status ;;
balancer) shift; cmd_balancer "$@" ;;
exec) shift; cmd_exec "$@" ;;
*) usage ;;
esac
