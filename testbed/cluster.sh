#!/usr/bin/env bash
# A whole VS/NAT cluster on one machine, in network namespaces:
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
#   testbed/cluster.sh up [--servers N] [--weights 1,2,3] [--scheduler wlc]
#                         [--client-mtu M] [--keep-offload]
#   testbed/cluster.sh balancer start xvs [--backend xdp|packet] [-- DIRECTOR_ARGS...]
#   testbed/cluster.sh balancer start nft
#   testbed/cluster.sh balancer stop|kill|status
#   testbed/cluster.sh status
#   testbed/cluster.sh exec client|director|switch|rsK CMD...
#   testbed/cluster.sh down
#
# Environment: XVS_TESTBED_STATE (default /run/xvs-testbed) holds the
# director's config (cluster.toml), its stats file, logs and pid files;
# XVS_BIN (default target/release of the repo) holds xvs-director.
set -euo pipefail
# shellcheck source=lib/common.sh
. "$(dirname "$0")/lib/common.sh"

STATE=${XVS_TESTBED_STATE:-/run/xvs-testbed}
XVS_BIN=${XVS_BIN:-$XVS_ROOT/target/release}
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3

NS_CLIENT=xvs-client
NS_DIRECTOR=xvs-director
NS_SWITCH=xvs-switch
VIP4=203.0.113.10
VIP6=2001:db8:f::10
CLIENT4=198.51.100.2
CLIENT6=2001:db8:c::2
DCLI4=198.51.100.1
DCLI6=2001:db8:c::1
DSRV4=192.0.2.1
DSRV6=2001:db8:5::1
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

rs_namespaces() { ip netns list 2>/dev/null | awk '{print $1}' | grep -E '^xvs-rs[0-9]+$' | sort -V || true; }
our_namespaces() {
    ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^($NS_CLIENT|$NS_DIRECTOR|$NS_SWITCH)$" || true
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
worker_processes 1;
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
write_director_config() {
    local servers=$1 weights=$2 scheduler=$3 out=$STATE/cluster.toml
    local ifname role addrs mac mtu proto vip port k
    {
        echo "# xvs-director config for the testbed's NAT cluster (written by testbed/cluster.sh up)."
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
                    printf '\n[[services.real_servers]]\naddress = "%s"\nport = %s\nmethod = "nat"\nweight = %s\n' \
                        "$(if [ "$vip" = "$VIP4" ]; then rs4 "$k"; else rs6 "$k"; fi)" "$port" "$(cut -d, -f"$k" <<<"$weights")"
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
    local servers=3 weights="" scheduler=wlc client_mtu="" keep_offload=0 k w ns
    while [ $# -gt 0 ]; do
        case $1 in
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
    printf 'XVS_SERVERS=%s\nXVS_WEIGHTS=%s\nXVS_SCHEDULER=%s\nXVS_CLIENT_MTU=%s\nXVS_KEEP_OFFLOAD=%s\n' \
        "$servers" "$weights" "$scheduler" "$client_mtu" "$keep_offload" >"$STATE/cluster.env"

    say "namespaces: $NS_CLIENT $NS_DIRECTOR $NS_SWITCH xvs-rs1..xvs-rs$servers"
    for ns in "$NS_CLIENT" "$NS_DIRECTOR" "$NS_SWITCH" $(for ((k = 1; k <= servers; k++)); do echo "xvs-rs$k"; done); do
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
        ip link add eth0 netns "xvs-rs$k" type veth peer name "sw-rs$k" netns "$NS_SWITCH"
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

    # Real servers.
    for ((k = 1; k <= servers; k++)); do
        ns=xvs-rs$k
        ip -n "$ns" addr add "$(rs4 "$k")/24" dev eth0
        ip -n "$ns" addr add "$(rs6 "$k")/64" dev eth0 nodad
        ip -n "$ns" link set eth0 up
        ip -n "$ns" route add default via "$DSRV4"
        ip -n "$ns" -6 route add default via "$DSRV6"
    done

    # A veth hands a locally sent frame over with a partial checksum (the
    # "NIC" is expected to finish it); AF_XDP then sees a frame that no real
    # wire carries. Endpoints compute full checksums, as on a wire.
    if [ "$keep_offload" = 1 ]; then
        say "transmit checksum offload left ON on the endpoints (--keep-offload)"
    else
        for ns in "$NS_CLIENT" $(for ((k = 1; k <= servers; k++)); do echo "xvs-rs$k"; done); do
            ip netns exec "$ns" ethtool -K eth0 tx off >/dev/null
        done
    fi

    say "real servers: nginx on :80 (page 'rsK', /big = 1 MiB) and UDP echo on :7"
    for ((k = 1; k <= servers; k++)); do
        ns=xvs-rs$k
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
        ns=xvs-rs$k
        poll "nginx on rs$k (IPv4)" 10 page_is "$ns" "http://127.0.0.1/" "rs$k"
        poll "nginx on rs$k (IPv6)" 10 page_is "$ns" "http://[::1]/" "rs$k"
        poll "UDP echo on rs$k" 10 udp_listening "$ns"
        poll "director -> rs$k over IPv4" 5 ip netns exec "$NS_DIRECTOR" ping -c1 -W1 "$(rs4 "$k")"
        poll "director -> rs$k over IPv6" 5 ip netns exec "$NS_DIRECTOR" ping -c1 -W1 "$(rs6 "$k")"
    done
    poll "client -> director over IPv4" 5 ip netns exec "$NS_CLIENT" ping -c1 -W1 "$DCLI4"
    poll "client -> director over IPv6" 5 ip netns exec "$NS_CLIENT" ping -c1 -W1 "$DCLI6"

    write_director_config "$servers" "$weights" "$scheduler"
    trap - EXIT
    say "cluster up: $servers real servers (weights $weights, scheduler $scheduler${client_mtu:+, client link MTU $client_mtu}); director config $STATE/cluster.toml"
    echo "    next: testbed/cluster.sh balancer start xvs   (or: balancer start nft)"
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
    [ -f "$STATE/cluster.env" ] && sed 's/^XVS_/  /' "$STATE/cluster.env"
    for ns in $(our_namespaces); do
        echo "$ns:"
        ip -n "$ns" -br addr show | grep -v '^lo ' | sed 's/^/    /'
        ip -n "$ns" -br addr show dev lo | awk '{ for (i = 3; i <= NF; i++) if ($i !~ /^(127\.|::1)/) printf "    lo: %s\n", $i }'
    done
    for ns in $(rs_namespaces); do
        k=${ns#xvs-rs}
        if pid=$(live_pid "$STATE/rs$k/nginx.pid" nginx); then echo "rs$k nginx: pid $pid"; else echo "rs$k nginx: NOT running"; fi
        if pid=$(live_pid "$STATE/rs$k/udp-echo.pid" udp-echo); then echo "rs$k udp echo: pid $pid"; else echo "rs$k udp echo: NOT running"; fi
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
        k=${ns#xvs-rs}
        stop_pid "$STATE/rs$k/nginx.pid" nginx "nginx on rs$k" TERM
        stop_pid "$STATE/rs$k/udp-echo.pid" udp-echo "UDP echo on rs$k" TERM
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
        rm -rf "$STATE"/rs[0-9]*
        rm -f "$STATE/cluster.env" "$STATE/balancer" "$STATE/director.pid"
    fi
    echo "testbed cluster down (kept for a post-mortem, if present: $STATE/cluster.toml, director.log, stats.json)"
}

cmd_exec() {
    local role=${1:-}
    shift || true
    [ $# -gt 0 ] || usage
    case $role in
    client | director | switch | rs[0-9]*) ;;
    *) die "exec: unknown role '$role' (client, director, switch, rs1..rsN)" ;;
    esac
    ip netns list | awk '{print $1}' | grep -qx "xvs-$role" || die "exec: namespace xvs-$role does not exist (is the cluster up?)"
    exec ip netns exec "xvs-$role" "$@"
}

case ${1:-} in
up) shift; cmd_up "$@" ;;
down) shift; cmd_down ;;
status) shift; cmd_status ;;
balancer) shift; cmd_balancer "$@" ;;
exec) shift; cmd_exec "$@" ;;
*) usage ;;
esac
