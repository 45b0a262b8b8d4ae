// SPDX-License-Identifier: GPL-2.0 OR MIT
//
// xvs-agent's VS/TUN decapsulation for real servers whose kernel has no
// ipip / ip6_tunnel modules.
//
// A frame carrying an IP-in-IP packet — outer IPv4 with protocol 4 (IPIP)
// or 41 (IPv6), or outer IPv6 with next header 4 or 41 — loses its outer
// header here: the Ethernet header (and a single 802.1Q tag) moves forward
// over it, its EtherType becomes the inner packet's, and the inner packet
// goes up the stack as if it had arrived bare. Everything else passes
// untouched.
//
// No map and no VIP list: on a real server the director addresses tunnel
// packets to the server's own address, and the kernel routes the inner
// packet as it would after its own tunnel device: a packet for a VIP on lo
// is delivered, anything else is dropped (or forwarded, on a router — a
// host that routes IP-in-IP for others should not run this program).
//
// Not decapsulated (passed to the kernel, which drops them for want of a
// tunnel device): outer IPv4 fragments, outer IPv4 headers whose version
// or length is wrong, outer IPv6 packets with extension headers before the
// tunnel header, and inner packets whose version disagrees with the outer
// protocol number or that are shorter than their own header.
//
// Self-contained on purpose: no kernel or libbpf headers, so the build
// needs only clang.

typedef unsigned char __u8;
typedef unsigned short __u16;
typedef unsigned int __u32;
typedef unsigned long long __u64;

#define SEC(name) __attribute__((section(name), used))
#define always_inline inline __attribute__((always_inline))

enum { XDP_ABORTED, XDP_DROP, XDP_PASS, XDP_TX, XDP_REDIRECT };

struct xdp_md {
	__u32 data;
	__u32 data_end;
	__u32 data_meta;
	__u32 ingress_ifindex;
	__u32 rx_queue_index;
	__u32 egress_ifindex;
};

static long (*bpf_xdp_adjust_head)(struct xdp_md *ctx, int delta) = (void *)44;

#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define ETH_P_8021Q 0x8100
#define ETH_P_8021AD 0x88A8
#define IPPROTO_IPIP 4
#define IPPROTO_IPV6 41

#define ETH_LEN 14
#define VLAN_LEN 4
#define IPV4_MIN_LEN 20
#define IPV6_LEN 40

static always_inline __u16 be16(__u16 x)
{
	return __builtin_bswap16(x);
}

// Whether an inner packet of this protocol number starts at `inner`
// with a whole header of the right version.
static always_inline int inner_ok(__u8 proto, __u8 *inner, void *end)
{
	if (proto == IPPROTO_IPIP)
		return (void *)(inner + IPV4_MIN_LEN) <= end && (inner[0] >> 4) == 4 &&
		       (inner[0] & 0x0f) >= 5;
	if (proto == IPPROTO_IPV6)
		return (void *)(inner + IPV6_LEN) <= end && (inner[0] >> 4) == 6;
	return 0;
}

// Removes `outer` bytes of outer header behind an Ethernet header of
// `l2` bytes (14, or 18 with a VLAN tag), giving the frame the EtherType
// of the inner packet.
static always_inline int strip(struct xdp_md *ctx, __u32 l2, __u32 outer, __u8 proto)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__u16 type = be16(proto == IPPROTO_IPIP ? ETH_P_IP : ETH_P_IPV6);

	// The verifier wants constant-size copies: one branch per L2 length.
	// `outer` is at most 60 (IPv4 with options) or 40 (IPv6).
	if (outer > 60)
		return XDP_PASS;
	if (l2 == ETH_LEN) {
		__u8 *dst = data + outer;
		if ((void *)(dst + ETH_LEN) > end || data + ETH_LEN > end)
			return XDP_PASS;
		__builtin_memmove(dst, data, ETH_LEN - 2);
		*(__u16 *)(dst + ETH_LEN - 2) = type;
	} else {
		__u8 *dst = data + outer;
		if ((void *)(dst + ETH_LEN + VLAN_LEN) > end || data + ETH_LEN + VLAN_LEN > end)
			return XDP_PASS;
		__builtin_memmove(dst, data, ETH_LEN + VLAN_LEN - 2);
		*(__u16 *)(dst + ETH_LEN + VLAN_LEN - 2) = type;
	}
	if (bpf_xdp_adjust_head(ctx, (int)outer))
		return XDP_DROP; // the frame is half rewritten: never pass it on
	return XDP_PASS;
}

SEC("xdp")
int xvs_decap(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__u8 *eth = data;
	__u32 l2 = ETH_LEN;

	if (data + ETH_LEN > end)
		return XDP_PASS;
	__u16 type = be16(*(__u16 *)(eth + 12));
	if (type == ETH_P_8021Q || type == ETH_P_8021AD) {
		if (data + ETH_LEN + VLAN_LEN > end)
			return XDP_PASS;
		type = be16(*(__u16 *)(eth + 16));
		l2 = ETH_LEN + VLAN_LEN;
	}

	__u8 *ip = data + l2;
	if (type == ETH_P_IP) {
		if ((void *)(ip + IPV4_MIN_LEN) > end)
			return XDP_PASS;
		__u32 ihl = (ip[0] & 0x0f) * 4;
		if ((ip[0] >> 4) != 4 || ihl < IPV4_MIN_LEN)
			return XDP_PASS;
		// MF set or a fragment offset: the kernel reassembles, we don't.
		if (be16(*(__u16 *)(ip + 6)) & 0x3fff)
			return XDP_PASS;
		__u8 proto = ip[9];
		__u8 *inner = ip + ihl;
		if (!inner_ok(proto, inner, end))
			return XDP_PASS;
		return strip(ctx, l2, ihl, proto);
	}
	if (type == ETH_P_IPV6) {
		if ((void *)(ip + IPV6_LEN) > end)
			return XDP_PASS;
		if ((ip[0] >> 4) != 6)
			return XDP_PASS;
		__u8 proto = ip[6];
		if (!inner_ok(proto, ip + IPV6_LEN, end))
			return XDP_PASS;
		return strip(ctx, l2, IPV6_LEN, proto);
	}
	return XDP_PASS;
}

char _license[] SEC("license") = "Dual MIT/GPL";
