#!/usr/bin/env bash
# A whole LVS cluster on one machine, in network namespaces: VS/NAT (the
# default, `up --mode nat`), VS/DR (`up --mode dr`), VS/TUN (`up --mode
# tun`) or one service whose real servers use all three (`up --mode mixed`).
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
# keeps forwarding off in every mode (xvs forwards; the kernel must not).
#
# VS/TUN: the real servers live on a LAN of their own (br1: 203.0.113.128/26,
# 2001:db8:7::/64) behind the router; the director's server-side LAN (br0)
# holds only the director and the router's r-sw:
#
#   xvs-client            xvs-director                     xvs-router
#  +----------------+    +-------------------------+      +-------------------------------+
#  | eth0           |    | d-cli            d-srv  | br0  | r-sw 192.0.2.254              |
#  | 198.51.100.2   |----| 198.51.100.1  192.0.2.1 |------|      2001:db8:5::fe           |
#  | 2001:db8:c::2  |===>| 2001:db8:c::1 2001:db8: |=====>|  forwarding on (the outer     |
#  | default via    |VIP |                   5::1  | IPIP |  header is just IP to it)     |
#  |  the director  |    | xvs encapsulates: outer |ip6ip6|                               |
#  |                |    | src = d-srv's address,  |      | r-tun 203.0.113.129/26        |
#  |                |    | dst = rsK, proto 4 (v4) |      |       2001:db8:7::fe/64 ---+  |
#  |                |    | or 41 (v6), to the      |      |                            |  |
#  |                |    | router (its gateway)    |      | r-cli 203.0.113.65/26      |  |
#  | eth1           |    +-------------------------+      |       2001:db8:e::1/64     |  |
#  | 203.0.113.66/26|<====================================| routes 198.51.100.0/24,    |  |
#  | 2001:db8:e::2  |------------------------------------ |  2001:db8:c::/64 via eth1  |  |
#  | rp_filter off  |          replies, from the VIP      +----------------------------|--+
#  +----------------+                                                      br1 (xvs-switch)
#                                                                                      |
#     xvs-rsK (K = 1..N): eth0 203.0.113.(140+K)/26, 2001:db8:7::(10+K)/64, default   |
#     via the router's r-tun; xvs-agent setup --method tun: VIPs on lo, arp_ignore, ---+
#     and our XDP program on eth0 strips the outer header (this kernel has no ipip
#     module); nginx and UDP echo answer from the VIP, straight to the client.
#
# The director reaches the tunnel LAN through the router: its config names
# the router as d-srv's gateway (and its kernel has a route there for its
# own pings). The outer TTL is the inner one after the director's
# decrement; the router takes one more off the outer header only.
#
# Mixed (`--mode mixed`): one service, real server K's method by K: nat,
# dr, tun, nat, dr, tun... All three live at once on the union of the
# topologies above: NAT and DR servers on br0 with addresses 192.0.2.(10+K)
# (a NAT server's default route is the director, a DR server's the
# router's r-sw), TUN servers on br1 behind the router with addresses
# 203.0.113.(140+K). NAT replies come back through the director, DR and TUN
# replies go through the router to the client's eth1. --client-mtu applies
# (NAT replies cross the director's client link).
#
# --agents runs `xvs-agent run` on every real server (issue #15): each
# real server's nginx lives in a cgroup v1 of its own, named PREFIX-rsK
# under the cpu, cpuacct, memory and blkio controllers of /sys/fs/cgroup,
# with a CPU quota of half a CPU (cpu.cfs_quota_us 50000 of 100000, so
# that one busy process saturates it on any machine), and the agent's
# scope is that cgroup; it reports the real server's IPv4 address every
# 0.5 s to the director's 192.0.2.1:7405, signed with a key generated at
# `up` ($STATE/agent.key, mode 0600, id 1), and the director's config gets
# `[agents]` with that key and `timeout = "3s"`. The IPv6 services' real
# servers have no agent: their weights stay the configured ones.
#
# --rx-queues N (default 1) gives the director's two links N receive and
# N transmit queues at both ends (veth numrxqueues/numtxqueues): a veth
# receives a frame on the queue its peer sent it on, and the peer picks one
# per flow, so the client's connections (and the replies the switch
# forwards) spread over the director's queues as RSS spreads them on a
# multi-queue NIC.
#
# --ha (issue #17; with --mode nat, dr or tun) brings up two directors that
# elect a master by VRRP: PREFIX-director is director1 (priority 150),
# PREFIX-director2 is director2 (priority 100). They share the client
# segment (a second bridge of the switch, brc) and the server segment (br0):
#
#   xvs-client            xvs-switch     xvs-director (director1, 150)         xvs-switch
#  +----------------+    +-----------+  +-----------------------------------+  +-----------+
#  | eth0           |----| sw-client |  | d-cli 198.51.100.11  d-srv        |  |  br0      |
#  | 198.51.100.2   |    |           |--|       2001:db8:c::11 192.0.2.2    |--| sw-dir    |
#  | 2001:db8:c::2  |    |   brc     |  |                      2001:db8:5::2|  |           |
#  | the VIPs on-   |    |           |  +-----------------------------------+  | sw-dir2   |-- real
#  | link (dev eth0)|    |   sw-cli1 |  xvs-director2 (director2, 100)         |           |   servers,
#  | no default     |    |   sw-cli2 |  +-----------------------------------+  | (sw-rsK,  |   router:
#  | route          |    |           |--| d-cli 198.51.100.12  d-srv        |--|  sw-rtr)  |   as above
#  +----------------+    +-----------+  |       2001:db8:c::12 192.0.2.3    |  +-----------+
#                                       |                      2001:db8:5::3|
#                                       +-----------------------------------+
#
# The master holds the floating addresses, which the directors' VRRP moves
# (the backup holds none): the VIPs 203.0.113.10/32 and 2001:db8:f::10/128
# on its d-cli and, in NAT mode, the real servers' gateway 192.0.2.1/24 and
# 2001:db8:5::1/64 on its d-srv (`gateways` of `[ha]`), announced by
# gratuitous ARP and unsolicited NA. No VIP is on the directors' lo; the
# client reaches the VIPs on-link and learns the master's MAC from ARP/ND.
# DR and TUN replies come back through the router as above. Each director
# has its config ($STATE/director1.toml, director2.toml: the same services,
# their own `[ha]` node, priority and advert source, adverts every 100 ms
# to 224.0.0.18 on d-cli, signed with $STATE/vrrp.key, 32 random bytes
# made at `up`, preempt with a delay of 1 s), and its own files: director1
# the usual control.sock, stats.json, director.log and director.pid,
# director2 control2.sock, stats2.json, director2.log and director2.pid.
# --ha takes neither --mode mixed, --rx-queues above 1, --client-mtu nor
# --agents, and its balancer is xvs only.
#
# --sync (issue #18; with --ha only) turns the connection-state sync on:
# each director's config gets a [sync] table (director/CONFIG.md) with both
# roles (master and backup: state flows back after a failback), on d-cli
# (the segment the pair shares), sent by unicast to the other director's
# own d-cli address from its own (IPv4, or IPv6 with --ha-family ipv6:
# 198.51.100.11 <-> .12, 2001:db8:c::11 <-> ::12) rather than multicast,
# signed with the pair's key (vrrp.key), and every live connection
# re-sent every 2 s (refresh_interval), so that a drill's long-lived idle
# connections are refreshed on the backup within it. XVS_SYNC=1 in
# cluster.env says so.
#
#   testbed/cluster.sh up [--mode nat|dr|tun|mixed] [--servers N] [--weights 1,2,3] [--scheduler wlc]
#                         [--client-mtu M] [--offload-off] [--rx-queues N] [--agents] [--ha [--ha-family ipv4|ipv6] [--sync]]
#   testbed/cluster.sh balancer start xvs [--director 1|2] [--backend xdp|packet] [-- DIRECTOR_ARGS...]
#   testbed/cluster.sh balancer start nft       (NAT mode only)
#   testbed/cluster.sh balancer stop|kill [--director 1|2]
#   testbed/cluster.sh balancer status
#   testbed/cluster.sh status
#   testbed/cluster.sh exec client|director|director2|switch|router|rsK CMD...
#                         (with XVS_BIN first on PATH and XVSADM_SOCKET set to
#                         this cluster's director: `exec director xvsadm -L -n`;
#                         director2's with --ha: `exec director2 xvsadm -L --daemon`)
#   testbed/cluster.sh down
#
# With --ha, `balancer start xvs` starts director1, then director2 (the
# same --backend and DIRECTOR_ARGS for both); --director N starts, stops
# or kills (SIGKILL) that one only; `status` shows each one's HA line
# (xvsadm -L --daemon).
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
#     (cluster.toml), its stats file, control socket (control.sock: `exec
#     director xvsadm` finds it), logs and pid files, cluster.env (the
#     mode, and each real server's method and addresses, for the e2e
#     suite), and for DR and TUN servers xvs-agent's run directories
#     (agent-rsK).
#   XVS_BIN (default target/release of the repo) holds xvs-director,
#     xvs-agent and xvsadm.
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
NS_ROUTER=$(ns_of router) # every mode but NAT
NS_DIRECTOR2=$(ns_of director2) # --ha only
VIP4=203.0.113.10
VIP6=2001:db8:f::10
CLIENT4=198.51.100.2
CLIENT6=2001:db8:c::2
DCLI4=198.51.100.1
DCLI6=2001:db8:c::1
DSRV4=192.0.2.1
DSRV6=2001:db8:5::1
# DR, TUN and mixed modes: the router's leg on the director's server-side
# LAN, the client's second link (router side, client side).
RSW4=192.0.2.254
RSW6=2001:db8:5::fe
RCLI4=203.0.113.65
RCLI6=2001:db8:e::1
CLIENT4_ETH1=203.0.113.66
CLIENT6_ETH1=2001:db8:e::2
# TUN and mixed modes: the router's leg on the tunnel real servers' LAN,
# and that LAN's prefixes.
RTUN4=203.0.113.129
RTUN6=2001:db8:7::fe
TUNNET4=203.0.113.128/26
TUNNET6=2001:db8:7::/64
NFT_TABLE=xvs_testbed

# The cluster's mode (cmd_up sets it, load_cluster_env reads it back), and
# whether it has two directors (--ha: XVS_HA=1 in cluster.env).
XVS_MODE=nat
XVS_HA=0
# --ha-family: the family of the pair's VRRP adverts (and, with --sync,
# of its sync datagrams).
HA_FAMILY=ipv4
# --sync: the pair syncs its connection tables ([sync] in both configs).
HA_SYNC=0

# --ha: director N's own addresses (N = 1, 2) on d-cli and d-srv; the
# floating ones are VIP4, VIP6 and, in NAT mode, DSRV4/24 and DSRV6/64 (the
# real servers' gateway), which VRRP moves. The virtual router (VRID) and
# each director's priority.
ha_cli4() { echo "198.51.100.1$1"; }
ha_cli6() { echo "2001:db8:c::1$1"; }
ha_srv4() { echo "192.0.2.$((1 + $1))"; }
ha_srv6() { echo "2001:db8:5::$((1 + $1))"; }
HA_VRID=51
ha_priority() { if [ "$1" = 1 ]; then echo 150; else echo 100; fi; }

# Director N's namespace and files: director1 is the only director of a
# cluster without --ha, and keeps the names it has there (director.pid,
# director.log, stats.json, control.sock); director2's carry a 2. The
# config is cluster.toml without --ha, directorN.toml with it.
dir_ns() { if [ "$1" = 1 ]; then echo "$NS_DIRECTOR"; else echo "$NS_DIRECTOR2"; fi; }
dir_tag() { if [ "$1" = 1 ]; then echo ""; else echo "$1"; fi; }
dir_pidfile() { echo "$STATE/director$(dir_tag "$1").pid"; }
dir_logfile() { echo "$STATE/director$(dir_tag "$1").log"; }
dir_stats() { echo "$STATE/stats$(dir_tag "$1").json"; }
dir_socket() { echo "$STATE/control$(dir_tag "$1").sock"; }
dir_config() { if [ "$XVS_HA" = 1 ]; then echo "$STATE/director$1.toml"; else echo "$STATE/cluster.toml"; fi; }

# rs_method K: real server K's forwarding method: the cluster's mode, or in
# mixed mode nat, dr, tun, nat, dr, tun... by K.
rs_method() {
    if [ "$XVS_MODE" = mixed ]; then
        case $((($1 - 1) % 3)) in 0) echo nat ;; 1) echo dr ;; *) echo tun ;; esac
    else
        echo "$XVS_MODE"
    fi
}
# rs4 K, rs6 K: real server K's addresses: on the director's server-side
# LAN (NAT, DR) or on the tunnel LAN behind the router (TUN).
rs4() { if [ "$(rs_method "$1")" = tun ]; then echo "203.0.113.$((140 + $1))"; else echo "192.0.2.$((10 + $1))"; fi; }
rs6() { if [ "$(rs_method "$1")" = tun ]; then echo "2001:db8:7::$((10 + $1))"; else echo "2001:db8:5::$((10 + $1))"; fi; }
# has_method M N: one of real servers 1..N uses method M.
has_method() {
    local k
    for ((k = 1; k <= $2; k++)); do [ "$(rs_method "$k")" = "$1" ] && return 0; done
    return 1
}

usage() {
    sed -n '/^#   testbed\/cluster.sh/s/^#   //p' "$0" >&2
    exit 2
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
    ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^($NS_CLIENT|$NS_DIRECTOR|$NS_DIRECTOR2|$NS_SWITCH|$NS_ROUTER)$" || true
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
        # Uploads (the e2e suite's large transfers towards the server):
        # PUT /up/NAME stores the body, GET /up/NAME returns it.
        location /up/ {
            dav_methods PUT;
            client_max_body_size 4m;
        }
    }
}
EOF
}

# Writes the director's config from the kernel's view of its interfaces.
# Each real server's method is rs_method's; tunnel real servers are reached
# through the router, the server side's gateway. With N (--ha): director N's
# config, its own addresses only (the director's data plane leaves traffic
# to them to the kernel: a floating address listed there would take a VIP
# away from the data plane), and its [ha].
write_director_config() {
    local servers=$1 weights=$2 scheduler=$3 mode=$4 n=${5:-} out=$STATE/cluster.toml ns=$NS_DIRECTOR
    local ifname role addrs mac mtu proto vip port k gateways
    [ -n "$n" ] && out=$STATE/director$n.toml ns=$(dir_ns "$n")
    {
        if [ -n "$n" ]; then
            echo "# xvs-director config for director$n of the testbed's ${mode^^} pair (written by testbed/cluster.sh up --ha)."
        else
            echo "# xvs-director config for the testbed's ${mode^^} cluster (written by testbed/cluster.sh up)."
        fi
        echo "# Keys: director/CONFIG.md. Neighbours come from the kernel; connection table and"
        echo "# timeouts are the defaults (IPVS's)."
        for ifname in d-cli d-srv; do
            if [ "$ifname" = d-cli ]; then role=client addrs="\"$DCLI4/24\", \"$DCLI6/64\""; else role=server addrs="\"$DSRV4/24\", \"$DSRV6/64\""; fi
            if [ -n "$n" ]; then
                if [ "$ifname" = d-cli ]; then addrs="\"$(ha_cli4 "$n")/24\", \"$(ha_cli6 "$n")/64\""; else addrs="\"$(ha_srv4 "$n")/24\", \"$(ha_srv6 "$n")/64\""; fi
            fi
            read -r mac mtu < <(ip -n "$ns" -j link show "$ifname" |
                "$PY" -c 'import json,sys; l=json.load(sys.stdin)[0]; print(l["address"], l["mtu"])')
            printf '\n[[interfaces]]\nname = "%s"\nrole = "%s"\nmac = "%s"\nmtu = %s\naddresses = [%s]\n' \
                "$ifname" "$role" "$mac" "$mtu" "$addrs"
            if [ "$role" = server ] && has_method tun "$servers"; then
                gateways="\"$RSW4\", \"$RSW6\""
                printf 'gateways = [%s]\n' "$gateways"
            fi
        done
        for vip in "$VIP4" "$VIP6"; do
            for proto in tcp udp; do
                if [ "$proto" = tcp ]; then port=80; else port=7; fi
                printf '\n[[services]]\nproto = "%s"\nvip = "%s"\nport = %s\nscheduler = "%s"\n' "$proto" "$vip" "$port" "$scheduler"
                for ((k = 1; k <= servers; k++)); do
                    printf '\n[[services.real_servers]]\naddress = "%s"\nport = %s\nmethod = "%s"\nweight = %s\n' \
                        "$(if [ "$vip" = "$VIP4" ]; then rs4 "$k"; else rs6 "$k"; fi)" "$port" "$(rs_method "$k")" "$(cut -d, -f"$k" <<<"$weights")"
                done
            done
        done
        [ -z "$n" ] || [ "$HA_SYNC" = 0 ] || write_sync_table "$n"
        [ -z "$n" ] || write_ha_table "$n" "$mode"
    } >"$out"
}

# write_sync_table N: director N's [sync] (director/CONFIG.md), on stdout:
# both roles, unicast between the two directors' own d-cli addresses of
# the adverts' family, the pair's key, a refresh every 2 s.
write_sync_table() {
    local n=$1 self peer
    if [ "$HA_FAMILY" = ipv6 ]; then
        self=$(ha_cli6 "$n") peer=$(ha_cli6 $((3 - n)))
    else
        self=$(ha_cli4 "$n") peer=$(ha_cli4 $((3 - n)))
    fi
    printf '\n[sync]\nroles = ["master", "backup"]\ninterface = "d-cli"\n'
    printf 'peers = ["%s"]\nsource = "%s"\n' "$peer" "$self"
    printf 'key_file = "%s"\nkey_id = 1\n' "$STATE/vrrp.key"
    printf 'refresh_interval = "2s"\n'
}

# write_ha_table N MODE: director N's [ha] (director/CONFIG.md), on stdout.
# The two directors differ in node, priority and advert source only.
write_ha_table() {
    local n=$1 mode=$2
    printf '\n[ha]\nnode = "director%s"\nvrid = %s\npriority = %s\ninterface = "d-cli"\nfamily = "%s"\n' \
        "$n" "$HA_VRID" "$(ha_priority "$n")" "$HA_FAMILY"
    printf 'advert_interval = "100ms"\npreempt = true\npreempt_delay = "1s"\n'
    # IPv4 adverts come from the director's own d-cli address; IPv6 ones
    # from its link-local address (RFC 9568), the default.
    [ "$HA_FAMILY" = ipv6 ] || printf 'source = "%s"\n' "$(ha_cli4 "$n")"
    printf 'auth = "hmac"\nkey_file = "%s"\nkey_id = 1\n' "$STATE/vrrp.key"
    # VS/NAT: the real servers' default route moves with the VIPs.
    [ "$mode" = nat ] && printf 'gateways = ["%s/24", "%s/64"]\n' "$DSRV4" "$DSRV6"
    printf 'garp_master_delay = "1s"\n'
    # Each transition appended to notify-directorN.log; a fault on demand:
    # the track script fails while fault-directorN exists (e2e/ha.sh).
    local hook="echo \"\$XVS_HA_STATE \$XVS_HA_REASON\" >> $STATE/notify-director$n.log"
    printf "notify_master = '%s'\nnotify_backup = '%s'\nnotify_fault = '%s'\n" "$hook" "$hook" "$hook"
    printf "track_script = { command = 'test ! -e %s', interval = \"200ms\" }\n" "$STATE/fault-director$n"
}

# An address is usable once it is no longer tentative (DAD is off, so this
# is immediate; checked all the same).
no_tentative() { [ -z "$(ip -n "$1" -6 addr show tentative)" ]; }
page_is() { [ "$(ip netns exec "$1" curl -s --max-time 1 "$2")" = "$3" ]; }
udp_listening() { ip netns exec "$1" ss -Hlun 'sport = :7' | grep -q .; }

cmd_up() {
    local mode=nat servers=3 weights="" scheduler=wlc client_mtu="" offload=on rx_queues=1 agents=0 ha=0 k w ns method n
    while [ $# -gt 0 ]; do
        case $1 in
        --mode) mode=${2:?}; shift 2 ;;
        --servers) servers=${2:?}; shift 2 ;;
        --weights) weights=${2:?}; shift 2 ;;
        --scheduler) scheduler=${2:?}; shift 2 ;;
        --client-mtu) client_mtu=${2:?}; shift 2 ;;
        --offload-off) offload=off; shift ;;
        --rx-queues) rx_queues=${2:?}; shift 2 ;;
        --agents) agents=1; shift ;;
        --ha) ha=1; shift ;;
        --ha-family) HA_FAMILY=${2:?}; shift 2 ;;
        --sync) HA_SYNC=1; shift ;;
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
    { [[ "$rx_queues" =~ ^[0-9]+$ ]] && [ "$rx_queues" -ge 1 ] && [ "$rx_queues" -le 64 ]; } || die "--rx-queues: $rx_queues is not a number from 1 to 64"
    case $mode in nat | dr | tun | mixed) ;; *) die "--mode: '$mode' is not nat, dr, tun or mixed" ;; esac
    XVS_MODE=$mode
    if [ "$ha" = 1 ]; then
        # One pair, one method: the drills measure a takeover per mode.
        [ "$mode" != mixed ] || die "--ha: a pair of directors per mode (nat, dr or tun), not --mode mixed"
        [ "$rx_queues" = 1 ] || die "--ha: the pair's links have one queue (leave --rx-queues out)"
        [ -z "$client_mtu" ] || die "--ha: the client segment is a bridge of 1500-byte links (leave --client-mtu out)"
        [ "$agents" = 0 ] || die "--ha: agents report to one director's address (leave --agents out)"
        XVS_HA=1
    fi
    case $HA_FAMILY in ipv4 | ipv6) ;; *) die "--ha-family: '$HA_FAMILY' is not ipv4 or ipv6" ;; esac
    [ "$ha" = 1 ] || [ "$HA_FAMILY" = ipv4 ] || die "--ha-family: only with --ha"
    [ "$ha" = 1 ] || [ "$HA_SYNC" = 0 ] || die "--sync: the connection-state sync runs between the two directors of a pair: add --ha"
    # The narrow client link exists to make the director send frag-needed
    # for the replies it forwards; DR and TUN forward none.
    case $mode in nat | mixed) ;; *) [ -z "$client_mtu" ] || die "--client-mtu: only with --mode nat or mixed (${mode^^} replies do not cross the director's client link)" ;; esac
    [ "$mode" = nat ] || [ -x "$XVS_BIN/xvs-agent" ] ||
        die "$XVS_BIN/xvs-agent does not exist (DR and TUN real servers are set up by it): build it with 'cargo build --release --workspace' (or set XVS_BIN)"
    [ "$agents" = 0 ] || [ -x "$XVS_BIN/xvs-agent" ] ||
        die "$XVS_BIN/xvs-agent does not exist (--agents runs it on every real server): build it with 'cargo build --release --workspace' (or set XVS_BIN)"
    [ "$agents" = 0 ] || [ -d "$CGROUP_ROOT/cpuacct" ] ||
        die "--agents: no cgroup v1 cpuacct controller under $CGROUP_ROOT (each real server's nginx gets a cgroup of its own there)"
    [ -z "$client_mtu" ] || { [[ "$client_mtu" =~ ^[0-9]+$ ]] && [ "$client_mtu" -ge 1280 ] && [ "$client_mtu" -le 1500 ]; } ||
        die "--client-mtu: $client_mtu is not a number from 1280 (IPv6's minimum) to 1500"
    need_root "testbed/cluster.sh up"
    [ -z "$(our_namespaces)" ] || die "a testbed cluster is already up ($(our_namespaces | xargs)): run testbed/cluster.sh down first"
    case $STATE in /?*) ;; *) die "XVS_TESTBED_STATE must be an absolute path, not '$STATE'" ;; esac

    # Whatever fails from here on, leave nothing behind.
    trap 'echo "cluster.sh up failed: tearing down what was built" >&2; cmd_down >/dev/null 2>&1 || true' EXIT

    local router="" tun_lan=0 rs4_list="" rs6_list="" methods=""
    [ "$mode" = nat ] || router=$NS_ROUTER
    has_method tun "$servers" && tun_lan=1
    for ((k = 1; k <= servers; k++)); do
        rs4_list+="${rs4_list:+ }$(rs4 "$k")"
        rs6_list+="${rs6_list:+ }$(rs6 "$k")"
        methods+="${methods:+,}$(rs_method "$k")"
    done

    mkdir -p "$STATE"
    chmod 755 "$STATE" # nginx workers (nobody) read the pages under it
    rm -f "$STATE/stats.json" "$STATE/director.log" "$STATE/balancer" "$STATE/stats2.json" "$STATE/director2.log" "$STATE"/notify-director[12].log "$STATE"/fault-director[12]
    # What the e2e suite reads back: real server K is the K-th address of
    # XVS_RS4 / XVS_RS6 and uses the K-th method of XVS_METHODS.
    printf 'XVS_MODE=%s\nXVS_SERVERS=%s\nXVS_WEIGHTS=%s\nXVS_SCHEDULER=%s\nXVS_CLIENT_MTU=%s\nXVS_OFFLOAD=%s\nXVS_RX_QUEUES=%s\nXVS_METHODS=%s\nXVS_RS4="%s"\nXVS_RS6="%s"\nXVS_AGENTS=%s\n' \
        "$mode" "$servers" "$weights" "$scheduler" "$client_mtu" "$offload" "$rx_queues" "$methods" "$rs4_list" "$rs6_list" "$agents" >"$STATE/cluster.env"
    [ "$ha" = 0 ] || printf 'XVS_HA=1\nXVS_HA_FAMILY=%s\nXVS_SYNC=%s\n' "$HA_FAMILY" "$HA_SYNC" >>"$STATE/cluster.env"

    local director2=""
    [ "$ha" = 1 ] && director2=$NS_DIRECTOR2
    say "namespaces ($mode${director2:+, two directors}): $NS_CLIENT $NS_DIRECTOR ${director2:+$director2 }$NS_SWITCH ${router:+$router }$(ns_rs 1)..$(ns_rs "$servers")"
    for ns in "$NS_CLIENT" "$NS_DIRECTOR" $director2 "$NS_SWITCH" $router $(for ((k = 1; k <= servers; k++)); do ns_rs "$k"; done); do
        ip netns add "$ns"
        # No duplicate address detection: addresses are usable at once.
        ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0
        ip -n "$ns" link set lo up
    done
    # The switch is a pure layer-2 bridge (two, with a tunnel LAN): no
    # addresses of its own.
    ip netns exec "$NS_SWITCH" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1

    # Links are created directly inside their namespaces: nothing appears,
    # even briefly, in the caller's namespace. br0 is the director's
    # server-side LAN (NAT and DR real servers, the router), br1 the tunnel
    # real servers' LAN (only the router's other leg and them).
    local mq=()
    [ "$rx_queues" -gt 1 ] && mq=(numrxqueues "$rx_queues" numtxqueues "$rx_queues")
    if [ "$ha" = 1 ]; then
        # The client segment is a bridge too (brc): the client and both
        # directors' d-cli, where the adverts (multicast: no snooping) and
        # the gratuitous ARPs and NAs go.
        ip -n "$NS_SWITCH" link add brc type bridge mcast_snooping 0
        ip link add eth0 netns "$NS_CLIENT" type veth peer name sw-client netns "$NS_SWITCH"
        ip -n "$NS_SWITCH" link set sw-client master brc up
        for n in 1 2; do
            ip link add d-cli netns "$(dir_ns "$n")" type veth peer name "sw-cli$n" netns "$NS_SWITCH"
            ip -n "$NS_SWITCH" link set "sw-cli$n" master brc up
        done
        ip link add d-srv netns "$NS_DIRECTOR2" type veth peer name sw-dir2 netns "$NS_SWITCH"
    else
        ip link add eth0 netns "$NS_CLIENT" "${mq[@]}" type veth peer name d-cli netns "$NS_DIRECTOR" "${mq[@]}"
    fi
    ip link add d-srv netns "$NS_DIRECTOR" "${mq[@]}" type veth peer name sw-dir netns "$NS_SWITCH" "${mq[@]}"
    ip -n "$NS_SWITCH" link add br0 type bridge mcast_snooping 0
    ip -n "$NS_SWITCH" link set sw-dir master br0 up
    [ "$ha" = 1 ] && ip -n "$NS_SWITCH" link set sw-dir2 master br0 up
    [ "$tun_lan" = 1 ] && ip -n "$NS_SWITCH" link add br1 type bridge mcast_snooping 0
    for ((k = 1; k <= servers; k++)); do
        ip link add eth0 netns "$(ns_rs "$k")" type veth peer name "sw-rs$k" netns "$NS_SWITCH"
        if [ "$(rs_method "$k")" = tun ]; then
            ip -n "$NS_SWITCH" link set "sw-rs$k" master br1 up
        else
            ip -n "$NS_SWITCH" link set "sw-rs$k" master br0 up
        fi
    done
    ip -n "$NS_SWITCH" link set br0 up
    [ "$tun_lan" = 1 ] && ip -n "$NS_SWITCH" link set br1 up
    [ "$ha" = 1 ] && ip -n "$NS_SWITCH" link set brc up

    # Director.
    if [ "$ha" = 1 ]; then
        up_directors_ha "$tun_lan"
    else
        ip -n "$NS_DIRECTOR" addr add "$DCLI4/24" dev d-cli
        ip -n "$NS_DIRECTOR" addr add "$DCLI6/64" dev d-cli nodad
        ip -n "$NS_DIRECTOR" addr add "$DSRV4/24" dev d-srv
        ip -n "$NS_DIRECTOR" addr add "$DSRV6/64" dev d-srv nodad
        ip -n "$NS_DIRECTOR" addr add "$VIP4/32" dev lo
        ip -n "$NS_DIRECTOR" addr add "$VIP6/128" dev lo nodad
        ip -n "$NS_DIRECTOR" link set d-srv up
        if [ "$tun_lan" = 1 ]; then
            # The director's own route to the tunnel LAN (its health checks, the
            # readiness pings below); xvs itself reads the router as the server
            # side's gateway from its config.
            ip -n "$NS_DIRECTOR" route add "$TUNNET4" via "$RSW4"
            ip -n "$NS_DIRECTOR" -6 route add "$TUNNET6" via "$RSW6"
        fi
    fi

    # Client.
    ip -n "$NS_CLIENT" addr add "$CLIENT4/24" dev eth0
    ip -n "$NS_CLIENT" addr add "$CLIENT6/64" dev eth0 nodad
    if [ -n "$client_mtu" ]; then
        ip -n "$NS_DIRECTOR" link set d-cli mtu "$client_mtu"
        ip -n "$NS_CLIENT" link set eth0 mtu "$client_mtu"
    fi
    [ "$ha" = 1 ] || ip -n "$NS_DIRECTOR" link set d-cli up
    ip -n "$NS_CLIENT" link set eth0 up
    if [ "$ha" = 1 ]; then
        # The VIPs are on the client's link, at whichever director is
        # master: ARP and ND find it (gratuitous ARP and unsolicited NA
        # update the entry when the master changes).
        ip -n "$NS_CLIENT" route add "$VIP4/32" dev eth0
        ip -n "$NS_CLIENT" -6 route add "$VIP6/128" dev eth0
    elif [ -n "$client_mtu" ]; then
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

    [ -n "$router" ] && up_router "$tun_lan"

    # Real servers: a NAT server's replies must go back through the
    # director, a DR or TUN server's around it, through the router.
    local gw4 gw6 plen4
    for ((k = 1; k <= servers; k++)); do
        ns=$(ns_rs "$k")
        method=$(rs_method "$k")
        case $method in
        nat) gw4=$DSRV4 gw6=$DSRV6 plen4=24 ;;
        dr) gw4=$RSW4 gw6=$RSW6 plen4=24 ;;
        tun) gw4=$RTUN4 gw6=$RTUN6 plen4=${TUNNET4#*/} ;;
        esac
        ip -n "$ns" addr add "$(rs4 "$k")/$plen4" dev eth0
        ip -n "$ns" addr add "$(rs6 "$k")/64" dev eth0 nodad
        ip -n "$ns" link set eth0 up
        ip -n "$ns" route add default via "$gw4"
        ip -n "$ns" -6 route add default via "$gw6"
        if [ "$method" != nat ]; then
            # What the LVS HOWTO has an operator do by hand on a DR or TUN
            # real server (VIPs on lo, never answer ARP for them; for TUN,
            # decapsulation) is the agent's job.
            ip netns exec "$ns" "$XVS_BIN/xvs-agent" --run-dir "$STATE/agent-rs$k" \
                setup --vip "$VIP4" --vip "$VIP6" --method "$method" --iface eth0 | sed "s/^/    rs$k: /"
        fi
    done

    # A veth hands a locally sent frame over with a partial checksum (the
    # "NIC" is expected to finish it), as containers and VMs on one host
    # do: the director must complete it (it counts them,
    # partial_checksum_completed), so transmit checksum offload stays on by
    # default. --offload-off turns it off on every endpoint (full checksums,
    # as on a wire), and on the router's veths and the client's eth1 too,
    # so that no veth of the testbed hands anyone a partial checksum.
    #
    # Segmentation offload (TSO/GSO) goes off on the endpoints all the same:
    # with it a veth hands AF_PACKET whole 64 KiB super-frames, which the
    # director's AF_PACKET backend does not segment (its ring truncates
    # them; AF_XDP is spared: attaching XDP to a veth turns GSO off on its
    # peer). Turning transmit checksums off used to hide this too (TSO
    # needs them); it is a limit of the AF_PACKET backend of its own.
    if [ "$offload" = on ]; then
        say "transmit checksum offload left ON on the endpoints (the default; --offload-off turns it off); TSO/GSO off"
        for ns in "$NS_CLIENT" $(for ((k = 1; k <= servers; k++)); do ns_rs "$k"; done); do
            ip netns exec "$ns" ethtool -K eth0 tso off gso off >/dev/null
        done
    else
        say "transmit checksum offload OFF on the endpoints (--offload-off)"
        for ns in "$NS_CLIENT" $(for ((k = 1; k <= servers; k++)); do ns_rs "$k"; done); do
            ip netns exec "$ns" ethtool -K eth0 tx off >/dev/null
        done
        if [ -n "$router" ]; then
            ip netns exec "$NS_CLIENT" ethtool -K eth1 tx off >/dev/null
            ip netns exec "$NS_ROUTER" ethtool -K r-cli tx off >/dev/null
            ip netns exec "$NS_ROUTER" ethtool -K r-sw tx off >/dev/null
            [ "$tun_lan" = 1 ] && ip netns exec "$NS_ROUTER" ethtool -K r-tun tx off >/dev/null
        fi
    fi

    say "real servers: nginx on :80 (page 'rsK', /big = 1 MiB, PUT to /up/) and UDP echo on :7"
    for ((k = 1; k <= servers; k++)); do
        ns=$(ns_rs "$k")
        local dir=$STATE/rs$k
        rm -rf "$dir"
        mkdir -p "$dir/www/up" "$dir/tmp"
        printf 'rs%s\n' "$k" >"$dir/www/index.html"
        head -c 1048576 /dev/urandom >"$dir/www/big"
        chmod 644 "$dir/www/index.html" "$dir/www/big"
        # Uploads are written by nginx's workers (nobody).
        chown nobody:nogroup "$dir/www/up"
        write_nginx_conf "$k" "$dir"
        if [ "$agents" = 1 ]; then
            # nginx starts inside its cgroup (joined from here: `ip netns
            # exec` mounts a sysfs of its own, without the cgroup
            # hierarchies): its workers inherit it.
            rs_cgroup_make "$k"
            sh -c 'for c in $2; do echo $$ >"$1/$c$3/cgroup.procs"; done; shift 3; exec "$@"' \
                sh "$CGROUP_ROOT" "$CGROUP_CONTROLLERS" "$(rs_cgroup "$k")" \
                ip netns exec "$ns" nginx -q -c "$dir/nginx.conf" -e "$dir/error.log"
        else
            ip netns exec "$ns" nginx -q -c "$dir/nginx.conf" -e "$dir/error.log"
        fi
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
        if [ "$ha" = 1 ]; then
            poll "director2 -> rs$k over IPv4" 5 ip netns exec "$NS_DIRECTOR2" ping -c1 -W1 "$(rs4 "$k")"
            poll "director2 -> rs$k over IPv6" 5 ip netns exec "$NS_DIRECTOR2" ping -c1 -W1 "$(rs6 "$k")"
        fi
        case $(rs_method "$k") in
        dr)
            poll "rs$k -> router over IPv4" 5 ip netns exec "$ns" ping -c1 -W1 "$RSW4"
            poll "rs$k -> router over IPv6" 5 ip netns exec "$ns" ping -c1 -W1 "$RSW6"
            ;;
        tun)
            poll "rs$k -> router over IPv4" 5 ip netns exec "$ns" ping -c1 -W1 "$RTUN4"
            poll "rs$k -> router over IPv6" 5 ip netns exec "$ns" ping -c1 -W1 "$RTUN6"
            ;;
        esac
    done
    if [ -n "$router" ]; then
        poll "router -> client's eth1 over IPv4" 5 ip netns exec "$NS_ROUTER" ping -c1 -W1 "$CLIENT4_ETH1"
        poll "router -> client's eth1 over IPv6" 5 ip netns exec "$NS_ROUTER" ping -c1 -W1 "$CLIENT6_ETH1"
    fi
    if [ "$ha" = 1 ]; then
        for n in 1 2; do
            poll "client -> director$n over IPv4" 5 ip netns exec "$NS_CLIENT" ping -c1 -W1 "$(ha_cli4 "$n")"
            poll "client -> director$n over IPv6" 5 ip netns exec "$NS_CLIENT" ping -c1 -W1 "$(ha_cli6 "$n")"
        done
        poll "director1 <-> director2 (their adverts' link)" 5 ip netns exec "$NS_DIRECTOR" ping -c1 -W1 "$(ha_cli4 2)"
        # One key for the pair's adverts (auth_hmac), readable by root only.
        (umask 077 && head -c 32 /dev/urandom >"$STATE/vrrp.key")
        for n in 1 2; do write_director_config "$servers" "$weights" "$scheduler" "$mode" "$n"; done
    else
        poll "client -> director over IPv4" 5 ip netns exec "$NS_CLIENT" ping -c1 -W1 "$DCLI4"
        poll "client -> director over IPv6" 5 ip netns exec "$NS_CLIENT" ping -c1 -W1 "$DCLI6"
        write_director_config "$servers" "$weights" "$scheduler" "$mode"
    fi
    if [ "$agents" = 1 ]; then
        start_agents "$servers"
        printf '\n[agents]\nkeys = [{ id = 1, file = "%s" }]\ntimeout = "3s"\n' "$STATE/agent.key" >>"$STATE/cluster.toml"
    fi
    trap - EXIT
    if [ "$ha" = 1 ]; then
        say "${mode^^} pair up: director1 (priority $(ha_priority 1)) and director2 (priority $(ha_priority 2))$([ "$HA_SYNC" = 1 ] && echo ", syncing their connections"), $servers real servers (weights $weights, scheduler $scheduler); configs $STATE/director1.toml, $STATE/director2.toml"
        echo "    next: testbed/cluster.sh balancer start xvs   (both; then: testbed/cluster.sh status)"
        return 0
    fi
    say "${mode^^} cluster up: $servers real servers (methods $methods, weights $weights, scheduler $scheduler${client_mtu:+, client link MTU $client_mtu}$([ "$rx_queues" -gt 1 ] && echo ", $rx_queues queues on the director's links")); director config $STATE/cluster.toml"
    if [ "$mode" = nat ]; then
        echo "    next: testbed/cluster.sh balancer start xvs   (or: balancer start nft)"
    else
        echo "    next: testbed/cluster.sh balancer start xvs"
    fi
}

# --agents: real server K's cgroup (as /proc/PID/cgroup names it) under
# each v1 controller of CGROUP_ROOT.
CGROUP_ROOT=/sys/fs/cgroup
CGROUP_CONTROLLERS="cpu cpuacct memory blkio"
rs_cgroup() { echo "/$XVS_NS_PREFIX-rs$1"; }
rs_cgroup_make() {
    local c
    for c in $CGROUP_CONTROLLERS; do mkdir -p "$CGROUP_ROOT/$c$(rs_cgroup "$1")"; done
    echo 100000 >"$CGROUP_ROOT/cpu$(rs_cgroup "$1")/cpu.cfs_period_us"
    echo 50000 >"$CGROUP_ROOT/cpu$(rs_cgroup "$1")/cpu.cfs_quota_us"
}
# Removes the real servers' cgroups (each empty by then: its processes
# were stopped with their namespace).
rs_cgroups_remove() {
    local dir c
    for dir in "$CGROUP_ROOT"/cpuacct/"$XVS_NS_PREFIX"-rs[0-9]*; do
        [ -d "$dir" ] || continue
        for c in $CGROUP_CONTROLLERS; do
            rmdir "$CGROUP_ROOT/$c/${dir##*/}" 2>/dev/null ||
                [ ! -d "$CGROUP_ROOT/$c/${dir##*/}" ] ||
                echo "cgroup $CGROUP_ROOT/$c/${dir##*/} not removed (processes left in it?)" >&2
        done
    done
}

# --agents: the cluster key, then one `xvs-agent run` per real server
# reporting its IPv4 address, its nginx's cgroup as scope, and the
# established connections to port 80; started in its network namespace,
# outside that cgroup (the agent's own CPU is not the server's load).
start_agents() {
    local servers=$1 k ns dir
    (umask 077 && head -c 32 /dev/urandom >"$STATE/agent.key")
    for ((k = 1; k <= servers; k++)); do
        ns=$(ns_rs "$k")
        dir=$STATE/rs$k
        cat >"$dir/agent.toml" <<EOF
# xvs-agent run on rs$k of the xvs testbed (written by testbed/cluster.sh up --agents)
directors = ["$DSRV4:7405"]
address = "$(rs4 "$k")"
key_file = "$STATE/agent.key"
key_id = 1
identity = "rs$k"
interval = 0.5
service_ports = [80]
scope = "$(rs_cgroup "$k")"
state_file = "$dir/agent.state"
EOF
        # nsenter rather than `ip netns exec`: the agent reads the cgroup
        # hierarchies under /sys/fs/cgroup, which the sysfs `ip netns exec`
        # mounts does not have; /proc/net is its namespace's either way.
        setsid nsenter --net="/run/netns/$ns" "$XVS_BIN/xvs-agent" run --config "$dir/agent.toml" \
            </dev/null >"$dir/agent.log" 2>&1 &
        echo $! >"$dir/agent.pid"
    done
    say "real servers: xvs-agent run on each (scope: its nginx's cgroup, reports every 0.5 s to $DSRV4:7405)"
}

# --ha: both directors' own addresses, links up, and with TUN_LAN=1 their
# kernel's route to the tunnel LAN (as the single director's). No VIP and
# no gateway address: VRRP puts them on the master.
up_directors_ha() {
    local tun_lan=$1 n ns
    for n in 1 2; do
        ns=$(dir_ns "$n")
        ip -n "$ns" addr add "$(ha_cli4 "$n")/24" dev d-cli
        ip -n "$ns" addr add "$(ha_cli6 "$n")/64" dev d-cli nodad
        ip -n "$ns" addr add "$(ha_srv4 "$n")/24" dev d-srv
        ip -n "$ns" addr add "$(ha_srv6 "$n")/64" dev d-srv nodad
        ip -n "$ns" link set d-srv up
        ip -n "$ns" link set d-cli up
        if [ "$tun_lan" = 1 ]; then
            ip -n "$ns" route add "$TUNNET4" via "$RSW4"
            ip -n "$ns" -6 route add "$TUNNET6" via "$RSW6"
        fi
    done
}

# DR, TUN and mixed: the router namespace, its link to the director's
# server-side LAN (br0), with TUN_LAN=1 its link to the tunnel LAN (br1),
# and its link to the client's second interface (eth1), over which the
# replies arrive.
up_router() {
    local tun_lan=$1
    ip link add r-sw netns "$NS_ROUTER" type veth peer name sw-rtr netns "$NS_SWITCH"
    ip -n "$NS_SWITCH" link set sw-rtr master br0 up
    ip link add r-cli netns "$NS_ROUTER" type veth peer name eth1 netns "$NS_CLIENT"
    ip -n "$NS_ROUTER" addr add "$RSW4/24" dev r-sw
    ip -n "$NS_ROUTER" addr add "$RSW6/64" dev r-sw nodad
    ip -n "$NS_ROUTER" addr add "$RCLI4/26" dev r-cli
    ip -n "$NS_ROUTER" addr add "$RCLI6/64" dev r-cli nodad
    ip -n "$NS_ROUTER" link set r-sw up
    ip -n "$NS_ROUTER" link set r-cli up
    if [ "$tun_lan" = 1 ]; then
        ip link add r-tun netns "$NS_ROUTER" type veth peer name sw-rtun netns "$NS_SWITCH"
        ip -n "$NS_SWITCH" link set sw-rtun master br1 up
        ip -n "$NS_ROUTER" addr add "$RTUN4/${TUNNET4#*/}" dev r-tun
        ip -n "$NS_ROUTER" addr add "$RTUN6/64" dev r-tun nodad
        ip -n "$NS_ROUTER" link set r-tun up
    fi
    ip netns exec "$NS_ROUTER" sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1
    ip -n "$NS_ROUTER" route add 198.51.100.0/24 via "$CLIENT4_ETH1"
    ip -n "$NS_ROUTER" -6 route add 2001:db8:c::/64 via "$CLIENT6_ETH1"

    # The client's replies from a VIP arrive on eth1, while its route to the
    # VIP leaves by eth0 (towards the director): reverse-path filtering
    # would drop them as spoofed. Asymmetric routing is the point of DR and
    # TUN, so it is off (the effective value is the larger of all and eth1).
    # IPv6 has no reverse-path filter unless a firewall adds one.
    ip netns exec "$NS_CLIENT" sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0
    ip -n "$NS_CLIENT" addr add "$CLIENT4_ETH1/26" dev eth1
    ip -n "$NS_CLIENT" addr add "$CLIENT6_ETH1/64" dev eth1 nodad
    ip netns exec "$NS_CLIENT" sysctl -qw net.ipv4.conf.eth1.rp_filter=0
    ip -n "$NS_CLIENT" link set eth1 up
}

# ---------------------------------------------------------- balancer -------

balancer_kind() { cat "$STATE/balancer" 2>/dev/null || echo none; }
# director_pid [N]: the PID of director N (default 1), if it runs.
director_pid() { live_pid "$(dir_pidfile "${1:-1}")" xvs-director; }
# dir_name N: how messages name director N: "xvs-director" alone without
# --ha, "xvs-director (directorN)" with it.
dir_name() { if [ "$XVS_HA" = 1 ]; then echo "xvs-director (director$1)"; else echo xvs-director; fi; }

# select_directors N|"": sets DIRECTORS to the directors a balancer
# subcommand acts on: N (--director, with --ha only), or every director of
# the cluster.
DIRECTORS=(1)
select_directors() {
    if [ -z "$1" ]; then
        if [ "$XVS_HA" = 1 ]; then DIRECTORS=(1 2); else DIRECTORS=(1); fi
        return 0
    fi
    [ "$XVS_HA" = 1 ] || die "--director: this cluster has one director (bring it up with --ha for two)"
    case $1 in 1 | 2) DIRECTORS=("$1") ;; *) die "--director: '$1' is not 1 or 2" ;; esac
}

start_xvs() {
    local backend=xdp extra=() director="" n
    while [ $# -gt 0 ]; do
        case $1 in
        --backend) backend=${2:?}; shift 2 ;;
        --director) director=${2:?}; shift 2 ;;
        --) shift; extra=("$@"); break ;;
        *) usage ;;
        esac
    done
    case $backend in xdp | packet) ;; *) die "--backend: '$backend' is not xdp or packet" ;; esac
    [ -x "$XVS_BIN/xvs-director" ] || die "$XVS_BIN/xvs-director does not exist: build it with 'cargo build --release --workspace' (or set XVS_BIN)"
    select_directors "$director"
    for n in "${DIRECTORS[@]}"; do
        start_director "$n" "$backend" "${extra[@]}" || return 1
    done
}

# start_director N BACKEND [DIRECTOR_ARGS...]: starts director N in its
# namespace and waits for its first stats file. With --ha its log is
# appended to (a restart in a drill keeps what the killed one wrote).
start_director() {
    local n=$1 backend=$2 bin=$XVS_BIN/xvs-director pid i ns stats log pidfile name
    shift 2
    ns=$(dir_ns "$n") stats=$(dir_stats "$n") log=$(dir_logfile "$n") pidfile=$(dir_pidfile "$n") name=$(dir_name "$n")
    ip netns exec "$ns" sysctl -qw net.ipv4.ip_forward=0 net.ipv6.conf.all.forwarding=0
    rm -f "$stats"
    echo "xvs $backend" >"$STATE/balancer"
    if [ "$XVS_HA" = 1 ]; then
        echo "--- testbed/cluster.sh: $name starting at $(date -u +%H:%M:%S.%N) ---" >>"$log"
    else
        : >"$log"
    fi
    RUST_LOG=${RUST_LOG:-info} setsid ip netns exec "$ns" "$bin" --config "$(dir_config "$n")" \
        --backend "$backend" --stats-file "$stats" --control-socket "$(dir_socket "$n")" "$@" \
        </dev/null >>"$log" 2>&1 &
    pid=$!
    echo "$pid" >"$pidfile"
    for ((i = 0; i < 200; i++)); do # 20 s
        [ -f "$stats" ] && break
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "$name exited during start; the end of $log:" >&2
            tail -n 30 "$log" >&2
            rm -f "$pidfile"
            any_director_running || rm -f "$STATE/balancer"
            return 1
        fi
        sleep 0.1
    done
    if [ ! -f "$stats" ]; then
        echo "$name wrote no $stats within 20 s; the end of $log:" >&2
        tail -n 30 "$log" >&2
        stop_pid "$pidfile" xvs-director "$name" TERM
        any_director_running || rm -f "$STATE/balancer"
        return 1
    fi
    say "$name running (pid $pid, backend $backend); log $log, stats $stats"
}

# any_director_running: director1 or (with --ha) director2 runs.
any_director_running() {
    director_pid 1 >/dev/null || { [ "$XVS_HA" = 1 ] && director_pid 2 >/dev/null; }
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
    local sub=${1:-status} kind pid director="" n
    shift || true
    need_root "testbed/cluster.sh balancer"
    [ -n "$(our_namespaces)" ] || die "no cluster is up: run testbed/cluster.sh up first"
    [ -f "$STATE/cluster.env" ] && load_cluster_env
    kind=$(balancer_kind)
    case $sub in
    start)
        local what=${1:-} arg
        shift || true
        if [ "$kind" = nft ]; then
            die "a balancer is already running ($kind): testbed/cluster.sh balancer stop first"
        fi
        # --director N, before the director's own arguments.
        for ((arg = 1; arg <= $#; arg++)); do
            [ "${!arg}" != -- ] || break
            [ "${!arg}" = --director ] && { arg=$((arg + 1)); director=${!arg:-}; }
        done
        select_directors "$director"
        if [ "$kind" != none ]; then
            for n in "${DIRECTORS[@]}"; do
                if director_pid "$n" >/dev/null; then
                    if [ "$XVS_HA" = 1 ]; then
                        die "director$n is already running: testbed/cluster.sh balancer stop --director $n first"
                    fi
                    die "a balancer is already running ($kind): testbed/cluster.sh balancer stop first"
                fi
            done
        fi
        case $what in
        xvs) start_xvs "$@" ;;
        nft)
            [ $# -eq 0 ] || usage
            [ "$XVS_HA" = 0 ] || die "nftables DNAT is one balancer: a pair (--ha) runs xvs-director ('balancer start xvs')"
            start_nft
            ;;
        *) usage ;;
        esac
        ;;
    stop | kill)
        while [ $# -gt 0 ]; do
            case $1 in
            --director) director=${2:?}; shift 2 ;;
            *) usage ;;
            esac
        done
        select_directors "$director"
        case $kind in
        xvs*)
            for n in "${DIRECTORS[@]}"; do
                if [ "$sub" = stop ]; then
                    stop_pid "$(dir_pidfile "$n")" xvs-director "$(dir_name "$n")" TERM
                    say "$(dir_name "$n") stopped"
                    continue
                fi
                pid=$(director_pid "$n") || die "$(dir_name "$n") is not running"
                kill -KILL "$pid"
                poll "$(dir_name "$n") (pid $pid) to die" 5 pid_gone "$pid" || die "$(dir_name "$n") (pid $pid) survived SIGKILL"
                rm -f "$(dir_pidfile "$n")"
                say "$(dir_name "$n") killed with SIGKILL (pid $pid): whatever it left in the kernel stays"
            done
            any_director_running || rm -f "$STATE/balancer"
            ;;
        # nftables has no process to crash: its rules go, as on stop.
        nft)
            stop_nft
            if [ "$sub" = stop ]; then say "nftables balancing removed"; else say "nftables balancing removed (nft has no process to kill)"; fi
            rm -f "$STATE/balancer"
            ;;
        *)
            if [ "$sub" = stop ]; then echo "no balancer is running"; else die "no balancer is running"; fi
            rm -f "$STATE/balancer"
            ;;
        esac
        ;;
    status) balancer_status ;;
    *) usage ;;
    esac
}

balancer_status() {
    local kind pid n
    kind=$(balancer_kind)
    case $kind in
    xvs*)
        if [ "$XVS_HA" = 1 ]; then
            for n in 1 2; do
                if pid=$(director_pid "$n"); then
                    echo "balancer: director$n: xvs-director running (pid $pid, backend ${kind#xvs }), stats $(dir_stats "$n")"
                    ha_line "$n"
                else
                    echo "balancer: director$n: xvs-director NOT running (see $(dir_logfile "$n"))"
                fi
            done
        elif pid=$(director_pid); then
            echo "balancer: xvs-director running (pid $pid, backend ${kind#xvs }), stats $STATE/stats.json"
        else
            echo "balancer: xvs-director NOT running (it was started; see $STATE/director.log)"
        fi
        ;;
    nft) echo "balancer: nftables DNAT (table inet $NFT_TABLE in $NS_DIRECTOR)" ;;
    *) echo "balancer: none" ;;
    esac
}

# ha_line N: director N's HA lines of `xvsadm -L --daemon` (its state; the
# master it hears, or the addresses it holds) and, with --sync, its sync
# daemons' lines, indented, or why there are none.
ha_line() {
    local out
    if out=$(XVSADM_SOCKET=$(dir_socket "$1") "$XVS_BIN/xvsadm" -L --daemon 2>&1); then
        awk '/^(HA |master sync daemon|backup sync daemon)/ { ha = 1; print; next } ha && /^  / { print; next } { ha = 0 }' <<<"$out" | sed 's/^/    /' | grep . ||
            echo "    (xvsadm -L --daemon shows no HA line: $(head -1 <<<"$out"))"
    else
        echo "    (xvsadm -L --daemon: $(head -1 <<<"$out"))"
    fi
}

# ------------------------------------------------------ status / down ------

cmd_status() {
    local ns k pid
    if [ -z "$(our_namespaces)" ]; then
        echo "no testbed cluster is up"
        return 0
    fi
    if [ -f "$STATE/cluster.env" ]; then
        load_cluster_env
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
        [ -f "$STATE/agent-rs$k/state.json" ] && echo "rs$k xvs-agent: set up (record $STATE/agent-rs$k/state.json)"
    done
    balancer_status
}

cmd_down() {
    local ns k pid kept="$STATE/cluster.toml, director.log, stats.json"
    need_root "testbed/cluster.sh down"
    if [ -f "$STATE/director.pid" ]; then
        stop_pid "$STATE/director.pid" xvs-director xvs-director TERM
    fi
    if [ -f "$STATE/director2.pid" ]; then
        stop_pid "$STATE/director2.pid" xvs-director "xvs-director (director2)" TERM
    fi
    grep -qx 'XVS_HA=1' "$STATE/cluster.env" 2>/dev/null &&
        kept="$STATE/director1.toml, director2.toml, director.log, director2.log, stats.json, stats2.json"
    for ns in $(rs_namespaces); do
        k=${ns#"$XVS_NS_PREFIX"-rs}
        stop_pid "$STATE/rs$k/nginx.pid" nginx "nginx on rs$k" TERM
        stop_pid "$STATE/rs$k/udp-echo.pid" udp-echo "UDP echo on rs$k" TERM
        stop_pid "$STATE/rs$k/agent.pid" xvs-agent "xvs-agent on rs$k" TERM
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
    rs_cgroups_remove
    if [ -d "$STATE" ]; then
        rm -rf "$STATE"/rs[0-9]* "$STATE"/agent-rs[0-9]*
        rm -f "$STATE/cluster.env" "$STATE/balancer" "$STATE/director.pid" "$STATE/agent.key"
        rm -f "$STATE/director2.pid" "$STATE/vrrp.key"
    fi
    echo "testbed cluster down (kept for a post-mortem, if present: $kept)"
}

cmd_exec() {
    local role=${1:-}
    shift || true
    [ $# -gt 0 ] || usage
    case $role in
    client | director | director2 | switch | router | rs[0-9]*) ;;
    *) die "exec: unknown role '$role' (client, director, director2 (--ha), switch, router (not NAT), rs1..rsN)" ;;
    esac
    ip netns list | awk '{print $1}' | grep -qx "$(ns_of "$role")" || die "exec: namespace $(ns_of "$role") does not exist (is the cluster up?)"
    # What an operator types after the demo must just work: the built
    # binaries (xvsadm, xvs-agent...) on PATH, and xvsadm pointed at this
    # cluster's director. The testbed's director keeps its socket in the
    # state directory rather than at the default /run/xvs/control.sock:
    # that path is shared by every namespace, so two clusters (XVS_NS_PREFIX)
    # or a real director on this host would collide there.
    local socket=$STATE/control.sock
    [ "$role" = director2 ] && socket=$(dir_socket 2)
    PATH="$XVS_BIN:$PATH" XVSADM_SOCKET="$socket" \
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
