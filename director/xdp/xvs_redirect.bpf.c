// SPDX-License-Identifier: GPL-2.0 OR MIT
//
// xvs's XDP program: redirect to the director's AF_XDP sockets only the
// frames the director handles, and pass everything else to the kernel.
//
// Redirected:
//   - TCP/UDP to a virtual service (proto, VIP, port), or to a VIP with a
//     port-0 ("every port") service;
//   - ICMP/ICMPv6 errors addressed to a VIP (they quote a NAT reply);
//   - later IPv4 fragments addressed to a VIP (the director counts them);
//   - in NAT mode, TCP/UDP from a real server's (address, port) — any port
//     for a real server of a port-0 service — and ICMP
//     from a real server's address, unless addressed to the director
//     itself (health-check replies, ssh, heartbeats stay with the kernel).
// Everything else (ARP, neighbour discovery, ping to a VIP, traffic to
// the host) is passed.
//
// A frame is redirected to the socket of the queue it arrived on; when no
// socket is bound there (the director is not running, or died, or does not
// serve that queue), the redirect falls back to XDP_PASS: a stopped
// director never black-holes the host. Such a frame is counted
// (COUNT_NO_SOCKET): the kernel refuses a new connection to a local VIP
// with a reset, and the count is what tells the operator why.
//
// Self-contained on purpose: no kernel or libbpf headers, so the build
// needs only clang.

typedef unsigned char __u8;
typedef unsigned short __u16;
typedef unsigned int __u32;
typedef unsigned long long __u64;

#define SEC(name) __attribute__((section(name), used))
#define __uint(name, val) int(*name)[val]
#define __type(name, val) typeof(val) *name
#define always_inline inline __attribute__((always_inline))

enum { XDP_ABORTED, XDP_DROP, XDP_PASS, XDP_TX, XDP_REDIRECT };
enum { BPF_MAP_TYPE_HASH = 1, BPF_MAP_TYPE_PERCPU_ARRAY = 6, BPF_MAP_TYPE_XSKMAP = 17 };

struct xdp_md {
	__u32 data;
	__u32 data_end;
	__u32 data_meta;
	__u32 ingress_ifindex;
	__u32 rx_queue_index;
	__u32 egress_ifindex;
};

static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)1;
static long (*bpf_redirect_map)(void *map, __u64 key, __u64 flags) = (void *)51;

// Keys. Addresses are 16 bytes; an IPv4 address fills the first 4, the
// rest is zero. Ports are in network byte order, as in the frame.
struct service_key {
	__u8 family; // 4 or 6
	__u8 proto;  // IPPROTO_TCP, IPPROTO_UDP, IPPROTO_ICMP(V6) (real servers)
	__u16 port;
	__u8 addr[16];
};

struct addr_key {
	__u8 family;
	__u8 pad[3];
	__u8 addr[16];
};

#define MAX_QUEUES 64
#define MAX_INTERFACES 16

// The director's sockets, at slot * MAX_QUEUES + queue: a socket is bound
// to one (interface, queue), and the kernel refuses a redirect to a socket
// of another interface.
struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, MAX_QUEUES * MAX_INTERFACES);
	__type(key, __u32);
	__type(value, __u32);
} xsks SEC(".maps");

// ifindex -> the interface's slot in `xsks`.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_INTERFACES);
	__type(key, __u32);
	__type(value, __u32);
} if_slots SEC(".maps");

// (proto, VIP, port) of every virtual service.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct service_key);
	__type(value, __u8);
} services SEC(".maps");

// Every VIP.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct addr_key);
	__type(value, __u8);
} vips SEC(".maps");

// (proto, address, port) of every NAT real server; ICMP with port 0.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct service_key);
	__type(value, __u8);
} real_servers SEC(".maps");

// The director's own addresses.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct addr_key);
	__type(value, __u8);
} local_addrs SEC(".maps");

// Per-CPU counters: frames seen, frames sent towards the director's
// sockets (the rest went to the kernel), and of those the ones that found
// no socket on their queue and went to the kernel after all. Read by the
// director for its stats and by the program's tests.
enum { COUNT_FRAMES, COUNT_TO_DIRECTOR, COUNT_NO_SOCKET, COUNT_MAX };
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, COUNT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

static always_inline void count(__u32 what)
{
	__u64 *c = bpf_map_lookup_elem(&counters, &what);
	if (c)
		*c += 1;
}

#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define ETH_P_8021Q 0x8100
#define ETH_P_8021AD 0x88A8
#define IPPROTO_ICMP 1
#define IPPROTO_TCP 6
#define IPPROTO_UDP 17
#define IPPROTO_ICMPV6 58

static always_inline __u16 be16(__u16 x)
{
	return __builtin_bswap16(x);
}

static always_inline int redirect(struct xdp_md *ctx)
{
	count(COUNT_TO_DIRECTOR);
	__u32 ifindex = ctx->ingress_ifindex;
	__u32 *slot = bpf_map_lookup_elem(&if_slots, &ifindex);
	if (!slot || ctx->rx_queue_index >= MAX_QUEUES) {
		count(COUNT_NO_SOCKET);
		return XDP_PASS;
	}
	// An empty xsks slot makes the helper return the flags' action.
	long action = bpf_redirect_map(&xsks, *slot * MAX_QUEUES + ctx->rx_queue_index, XDP_PASS);
	if (action != XDP_REDIRECT)
		count(COUNT_NO_SOCKET);
	return action;
}

static always_inline int is_icmp4_error(__u8 type)
{
	// destination unreachable, source quench, time exceeded, parameter problem
	return type == 3 || type == 4 || type == 11 || type == 12;
}

static always_inline int is_icmp6_error(__u8 type)
{
	// destination unreachable, packet too big, time exceeded, parameter problem
	return type >= 1 && type <= 4;
}

// Decides for an IP packet whose addresses are in `src`/`dst` keys, whose
// transport header starts at `l4` (NULL for a later fragment).
static always_inline int decide(struct xdp_md *ctx, void *end, __u8 proto, void *l4,
				struct addr_key *src, struct addr_key *dst, int later_fragment)
{
	int icmp = proto == IPPROTO_ICMP || proto == IPPROTO_ICMPV6;
	int ports = proto == IPPROTO_TCP || proto == IPPROTO_UDP;
	__u16 sport = 0, dport = 0;
	__u8 icmp_type = 0;

	if (l4 && ports) {
		__u16 *p = l4;
		if ((void *)(p + 2) > end)
			return XDP_PASS;
		sport = p[0];
		dport = p[1];
	} else if (l4 && icmp) {
		__u8 *t = l4;
		if ((void *)(t + 1) > end)
			return XDP_PASS;
		icmp_type = t[0];
	}

	if (bpf_map_lookup_elem(&vips, dst)) {
		if (later_fragment)
			return redirect(ctx);
		if (ports) {
			struct service_key k = { .family = dst->family, .proto = proto, .port = dport };
			__builtin_memcpy(k.addr, dst->addr, 16);
			if (bpf_map_lookup_elem(&services, &k))
				return redirect(ctx);
			k.port = 0;
			if (bpf_map_lookup_elem(&services, &k))
				return redirect(ctx);
			return XDP_PASS;
		}
		if (icmp && (proto == IPPROTO_ICMP ? is_icmp4_error(icmp_type)
						   : is_icmp6_error(icmp_type)))
			return redirect(ctx);
		return XDP_PASS;
	}

	if (later_fragment || !(ports || icmp))
		return XDP_PASS;
	struct service_key k = { .family = src->family, .proto = proto, .port = icmp ? 0 : sport };
	__builtin_memcpy(k.addr, src->addr, 16);
	if (!bpf_map_lookup_elem(&real_servers, &k)) {
		// A real server of a port-0 service answers from any port.
		if (icmp)
			return XDP_PASS;
		k.port = 0;
		if (!bpf_map_lookup_elem(&real_servers, &k))
			return XDP_PASS;
	}
	if (bpf_map_lookup_elem(&local_addrs, dst))
		return XDP_PASS;
	return redirect(ctx);
}

static always_inline int decide_frame(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__u8 *eth = data;
	__u32 off = 14;

	if (data + 14 > end)
		return XDP_PASS;
	__u16 type = be16(*(__u16 *)(eth + 12));
	if (type == ETH_P_8021Q || type == ETH_P_8021AD) {
		if (data + 18 > end)
			return XDP_PASS;
		type = be16(*(__u16 *)(eth + 16));
		off = 18;
	}

	struct addr_key src = {}, dst = {};
	if (type == ETH_P_IP) {
		__u8 *ip = data + off;
		if ((void *)(ip + 20) > end)
			return XDP_PASS;
		__u32 ihl = (ip[0] & 0x0f) * 4;
		if ((ip[0] >> 4) != 4 || ihl < 20)
			return XDP_PASS;
		src.family = 4;
		dst.family = 4;
		__builtin_memcpy(src.addr, ip + 12, 4);
		__builtin_memcpy(dst.addr, ip + 16, 4);
		__u16 frag = be16(*(__u16 *)(ip + 6)) & 0x1fff;
		void *l4 = ip + ihl;
		if (l4 > end)
			return XDP_PASS;
		return decide(ctx, end, ip[9], frag ? 0 : l4, &src, &dst, frag != 0);
	}
	if (type == ETH_P_IPV6) {
		__u8 *ip = data + off;
		if ((void *)(ip + 40) > end)
			return XDP_PASS;
		if ((ip[0] >> 4) != 6)
			return XDP_PASS;
		src.family = 6;
		dst.family = 6;
		__builtin_memcpy(src.addr, ip + 8, 16);
		__builtin_memcpy(dst.addr, ip + 24, 16);
		// Extension headers are not walked here: a packet with one goes
		// to the kernel unless it is for a VIP, where the director decides.
		__u8 next = ip[6];
		if (next != IPPROTO_TCP && next != IPPROTO_UDP && next != IPPROTO_ICMPV6) {
			if (bpf_map_lookup_elem(&vips, &dst))
				return redirect(ctx);
			return XDP_PASS;
		}
		return decide(ctx, end, next, ip + 40, &src, &dst, 0);
	}
	return XDP_PASS;
}

SEC("xdp")
int xvs_redirect(struct xdp_md *ctx)
{
	count(COUNT_FRAMES);
	return decide_frame(ctx);
}

char _license[] SEC("license") = "Dual MIT/GPL";
