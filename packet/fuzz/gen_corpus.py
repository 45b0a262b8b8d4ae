#!/usr/bin/env python3
"""Writes the seed corpus of every fuzz target into corpus/<target>/.

Standard library only: frames are packed with struct and checksummed here
(RFC 1071), independently of the crate under test. Deterministic: running it
again rewrites the same files. Usage: python3 gen_corpus.py [corpus-dir]
"""

import hashlib
import hmac
import os
import struct
import sys

CLIENT_MAC = bytes.fromhex("020000000001")
DIRECTOR_MAC = bytes.fromhex("020000000002")
RS_MAC = bytes.fromhex("020000000011")

CLIENT4, VIP4, RS4, ROUTER4 = "198.51.100.7", "203.0.113.10", "192.0.2.11", "192.0.2.254"
CLIENT6, VIP6, RS6, ROUTER6 = "2001:db8:1::7", "2001:db8::10", "2001:db8:2::11", "2001:db8:2::fe"


def ip4(s):
    return bytes(int(x) for x in s.split("."))


def ip6(s):
    head, _, tail = s.partition("::")
    h = [int(x, 16) for x in head.split(":") if x]
    t = [int(x, 16) for x in tail.split(":") if x]
    return struct.pack("!8H", *(h + [0] * (8 - len(h) - len(t)) + t))


def csum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def pseudo(src, dst, proto, length):
    if len(src) == 4:
        return src + dst + struct.pack("!BBH", 0, proto, length)
    return src + dst + struct.pack("!IxxxB", length, proto)


def with_csum(seg, at, src, dst, proto, udp=False):
    """Fills the checksum at offset `at` of a transport segment."""
    c = csum(pseudo(src, dst, proto, len(seg)) + seg) if proto != 1 else csum(seg)
    if udp and c == 0:
        c = 0xFFFF
    return seg[:at] + struct.pack("!H", c) + seg[at + 2 :]


def tcp(src, dst, sport, dport, flags, payload=b"", mss=True, seq=1000, ack=0):
    opts = struct.pack("!BBH", 2, 4, 1460) if mss else b""
    hlen = 20 + len(opts)
    seg = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, (hlen // 4) << 4, flags, 64240, 0, 0)
    return with_csum(seg + opts + payload, 16, src, dst, 6)


def udp(src, dst, sport, dport, payload=b"", checksum=True):
    seg = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    return with_csum(seg, 6, src, dst, 17, udp=True) if checksum else seg


def icmp4(t, code, rest, payload):
    msg = struct.pack("!BBH", t, code, 0) + rest + payload
    return msg[:2] + struct.pack("!H", csum(msg)) + msg[4:]


def icmp6(src, dst, t, code, rest, payload):
    msg = struct.pack("!BBH", t, code, 0) + rest + payload
    return with_csum(msg, 2, src, dst, 58)


def ipv4(src, dst, proto, payload, ttl=64, df=True, mf=False, frag_off=0, options=b"", ident=0x1234):
    hlen = 20 + len(options)
    flags = (0x4000 if df else 0) | (0x2000 if mf else 0) | (frag_off // 8)
    h = struct.pack("!BBHHHBBH4s4s", 0x40 | hlen // 4, 0, hlen + len(payload), ident, flags, ttl, proto, 0, src, dst)
    h += options
    h = h[:10] + struct.pack("!H", csum(h)) + h[12:]
    return h + payload


def ipv6(src, dst, next_header, payload, hop=64, flow=0):
    return struct.pack("!IHBB16s16s", 0x60000000 | flow, len(payload), next_header, hop, src, dst) + payload


def ext(next_header, body):
    """A hop-by-hop / destination-options / routing header padded to 8n bytes."""
    raw = bytes([next_header, 0]) + body
    pad = -len(raw) % 8
    raw += bytes([1, pad - 2] + [0] * (pad - 2)) if pad >= 2 else b"\0" * pad
    return bytes([next_header, len(raw) // 8 - 1]) + raw[2:]


def frag6(next_header, offset, more, ident=0xABCD):
    return struct.pack("!BBHI", next_header, 0, offset | (1 if more else 0), ident)


def eth(ethertype, payload, src=CLIENT_MAC, dst=DIRECTOR_MAC, vlan=None, pad_to=0):
    if vlan is None:
        f = dst + src + struct.pack("!H", ethertype) + payload
    else:
        f = dst + src + struct.pack("!HHH", 0x8100, vlan, ethertype) + payload
    return f + b"\0" * max(0, pad_to - len(f))


def v4frame(src, dst, proto, seg, **kw):
    vlan = kw.pop("vlan", None)
    pad_to = kw.pop("pad_to", 0)
    return eth(0x0800, ipv4(ip4(src), ip4(dst), proto, seg, **kw), vlan=vlan, pad_to=pad_to)


def v6frame(src, dst, nh, payload, vlan=None, **kw):
    return eth(0x86DD, ipv6(ip6(src), ip6(dst), nh, payload, **kw), vlan=vlan)


def frames():
    """Every kind of frame, as (name, bytes, kind) with kind in
    {"flow", "error", "other"}."""
    c4, v4, r4, rt4 = ip4(CLIENT4), ip4(VIP4), ip4(RS4), ip4(ROUTER4)
    c6, v6, r6, rt6 = ip6(CLIENT6), ip6(VIP6), ip6(RS6), ip6(ROUTER6)
    out = []

    def add(name, frame, kind="flow"):
        out.append((name, frame, kind))

    # TCP v4/v6: the client's SYN (74 bytes with MSS like Linux's would be
    # longer; MSS alone keeps it small), an ACK with data, the server's reply.
    add("tcp_syn_v4", v4frame(CLIENT4, VIP4, 6, tcp(c4, v4, 40000, 80, 0x02)))
    add("tcp_ack_data_v4", v4frame(CLIENT4, VIP4, 6, tcp(c4, v4, 40000, 80, 0x18, b"GET / HTTP/1.0\r\n\r\n", mss=False, ack=5001)))
    add("tcp_synack_from_rs_v4", v4frame(RS4, CLIENT4, 6, tcp(r4, c4, 8080, 40000, 0x12, ack=1001)))
    add("tcp_syn_v6", v6frame(CLIENT6, VIP6, 6, tcp(c6, v6, 40000, 443, 0x02)))
    add("tcp_fin_v6", v6frame(CLIENT6, VIP6, 6, tcp(c6, v6, 40000, 443, 0x11, mss=False)))
    # UDP, with and without checksum (v4), and a short one with Ethernet padding.
    add("udp_dns_v4", v4frame(CLIENT4, VIP4, 17, udp(c4, v4, 5000, 53, b"\x12\x34\x01\x00\x00\x01")))
    add("udp_nocsum_v4", v4frame(CLIENT4, VIP4, 17, udp(c4, v4, 5000, 53, b"q", checksum=False)))
    add("udp_padded_v4", v4frame(CLIENT4, VIP4, 17, udp(c4, v4, 5000, 53, b"x"), pad_to=60))
    add("udp_v6", v6frame(CLIENT6, VIP6, 17, udp(c6, v6, 5000, 53, b"q")))
    # ICMP echo.
    add("echo_request_v4", v4frame(CLIENT4, VIP4, 1, icmp4(8, 0, struct.pack("!HH", 77, 1), b"ping")))
    add("echo_reply_v4", v4frame(RS4, CLIENT4, 1, icmp4(0, 0, struct.pack("!HH", 77, 1), b"ping")))
    add("echo_request_v6", v6frame(CLIENT6, VIP6, 58, icmp6(c6, v6, 128, 0, struct.pack("!HH", 9, 1), b"ping")))
    add("echo_reply_v6", v6frame(RS6, CLIENT6, 58, icmp6(r6, c6, 129, 0, struct.pack("!HH", 9, 1), b"ping")))
    # VLAN-tagged.
    add("vlan_tcp_syn_v4", v4frame(CLIENT4, VIP4, 6, tcp(c4, v4, 40001, 80, 0x02), vlan=100))
    add("vlan_udp_v6", v6frame(CLIENT6, VIP6, 17, udp(c6, v6, 5001, 53, b"q"), vlan=0x2064))
    # IPv4 with options: record route (7, len 11) + end of list, IHL 8.
    rr = bytes([7, 11, 4]) + b"\0" * 8 + b"\0"
    add("ipv4_options_tcp", v4frame(CLIENT4, VIP4, 6, tcp(c4, v4, 40002, 80, 0x02), options=rr))
    # Router alert (IHL 6) on UDP, low TTL.
    add("ipv4_router_alert_udp_ttl1", v4frame(CLIENT4, VIP4, 17, udp(c4, v4, 5002, 53, b"q"), options=bytes([0x94, 4, 0, 0]), ttl=1))
    # IPv6 extension headers: hop-by-hop + destination options before TCP;
    # a routing header (type 0 segments left 0) before UDP.
    add("ipv6_hbh_dstopts_tcp", v6frame(CLIENT6, VIP6, 0, ext(60, bytes([5, 2, 0, 0])) + ext(6, b"") + tcp(c6, v6, 40003, 443, 0x02)))
    add("ipv6_routing_udp", v6frame(CLIENT6, VIP6, 43, ext(17, bytes([0, 0]) + b"\0" * 4) + udp(c6, v6, 5003, 53, b"q")))
    # Fragments: first and later, v4 and v6, and a v6 atomic fragment.
    big = udp(c4, v4, 5004, 53, bytes(range(40)))
    add("frag_first_udp_v4", v4frame(CLIENT4, VIP4, 17, big[:24], df=False, mf=True))
    add("frag_later_udp_v4", v4frame(CLIENT4, VIP4, 17, big[24:], df=False, frag_off=24))
    big6 = udp(c6, v6, 5004, 53, bytes(range(40)))
    add("frag_first_udp_v6", v6frame(CLIENT6, VIP6, 44, frag6(17, 0, True) + big6[:24]))
    add("frag_later_udp_v6", v6frame(CLIENT6, VIP6, 44, frag6(17, 24, False) + big6[24:]))
    add("frag_atomic_tcp_v6", v6frame(CLIENT6, VIP6, 44, frag6(6, 0, False) + tcp(c6, v6, 40004, 443, 0x02)))

    # ICMP errors. The director sent client -> rs after NAT; the real server
    # (or a router) answers about it, quoting it.
    sent_udp4 = ipv4(c4, r4, 17, udp(c4, r4, 5000, 5353, b"query"))
    add("icmp4_port_unreach_udp", v4frame(RS4, CLIENT4, 1, icmp4(3, 3, b"\0" * 4, sent_udp4)), "error")
    # A reply rs -> client that was too big on the way: a router tells the
    # real server (through the VIP), quoting only the first 8 bytes of TCP.
    reply_tcp4 = ipv4(v4, c4, 6, tcp(v4, c4, 80, 40000, 0x10, b"x" * 40, mss=False))
    add("icmp4_frag_needed_tcp", v4frame(ROUTER4, VIP4, 1, icmp4(3, 4, struct.pack("!HH", 0, 1400), reply_tcp4[:28])), "error")
    add("icmp4_time_exceeded_tcp", v4frame(ROUTER4, CLIENT4, 1, icmp4(11, 0, b"\0" * 4, ipv4(c4, r4, 6, tcp(c4, r4, 40000, 8080, 0x02), ttl=1))), "error")
    add("icmp4_unreach_echo", v4frame(ROUTER4, CLIENT4, 1, icmp4(3, 1, b"\0" * 4, ipv4(c4, r4, 1, icmp4(8, 0, struct.pack("!HH", 77, 1), b"ping")))), "error")
    add("icmp4_unreach_udp_vlan", v4frame(RS4, CLIENT4, 1, icmp4(3, 3, b"\0" * 4, sent_udp4), vlan=7), "error")
    sent_udp6 = ipv6(c6, r6, 17, udp(c6, r6, 5000, 5353, b"query"))
    add("icmp6_port_unreach_udp", v6frame(RS6, CLIENT6, 58, icmp6(r6, c6, 1, 4, b"\0" * 4, sent_udp6)), "error")
    reply_tcp6 = ipv6(v6, c6, 6, tcp(v6, c6, 443, 40000, 0x10, b"y" * 24, mss=False))
    add("icmp6_too_big_tcp", v6frame(ROUTER6, VIP6, 58, icmp6(rt6, v6, 2, 0, struct.pack("!I", 1280), reply_tcp6)), "error")
    add("icmp6_time_exceeded_hbh_tcp", v6frame(ROUTER6, CLIENT6, 58, icmp6(rt6, c6, 3, 0, b"\0" * 4, ipv6(c6, r6, 0, ext(6, b"") + tcp(c6, r6, 40000, 8080, 0x02), hop=1))), "error")

    # Others: ARP, an IPIP-encapsulated SYN (what VS/TUN sends), ICMP
    # router solicitation (neither echo nor error).
    arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + CLIENT_MAC + c4 + b"\0" * 6 + v4
    add("arp_request", eth(0x0806, arp, dst=b"\xff" * 6, pad_to=60), "other")
    add("ipip_tcp_syn", v4frame("192.0.2.1", RS4, 4, ipv4(c4, v4, 6, tcp(c4, v4, 40000, 80, 0x02))), "other")
    add("ip6ip6_udp", v6frame("2001:db8:2::1", RS6, 41, ipv6(c6, v6, 17, udp(c6, v6, 5000, 53, b"q"))), "other")
    add("icmp4_router_solicit", v4frame(CLIENT4, "224.0.0.2", 1, icmp4(10, 0, b"\0" * 4, b""), ttl=1), "flow")
    return out


def params_nat(i, frame_is_v4):
    """mode, 16 address bytes, port: inbound to the real server or outbound
    to the VIP, alternating."""
    outbound = i % 2
    if frame_is_v4:
        a = ip4(VIP4 if outbound else RS4) + b"\0" * 12
    else:
        a = ip6(VIP6 if outbound else RS6)
    return bytes([outbound]) + a + struct.pack("!H", 80 if outbound else 8080)


def is_v4(frame):
    et = struct.unpack("!H", frame[12:14])[0]
    if et == 0x8100:
        et = struct.unpack("!H", frame[16:18])[0]
    return et == 0x0800


# Which frames seed each rewrite target (parse_frame gets them all): enough
# to reach every branch of the rewrite, few enough to stay a small corpus.
SEEDS = {
    "nat_rewrite": [
        "tcp_syn_v4", "tcp_synack_from_rs_v4", "tcp_syn_v6", "udp_dns_v4", "udp_nocsum_v4",
        "udp_v6", "echo_request_v4", "echo_request_v6", "vlan_tcp_syn_v4", "ipv4_options_tcp",
        "ipv6_hbh_dstopts_tcp", "frag_first_udp_v4", "frag_later_udp_v6",
    ],
    "tunnel_encap": [
        "tcp_syn_v4", "tcp_syn_v6", "udp_padded_v4", "vlan_udp_v6", "ipv4_options_tcp",
        "frag_later_udp_v4", "echo_request_v6", "ipv6_routing_udp",
    ],
    "ttl_dr": [
        "tcp_syn_v4", "tcp_syn_v6", "ipv4_options_tcp", "ipv4_router_alert_udp_ttl1",
        "vlan_udp_v6", "frag_first_udp_v6",
    ],
    "build_too_big": [
        "tcp_syn_v4", "tcp_ack_data_v4", "tcp_syn_v6", "udp_v6", "vlan_tcp_syn_v4",
        "ipv6_hbh_dstopts_tcp", "frag_first_udp_v4", "frag_later_udp_v4", "echo_request_v4",
        "icmp4_router_solicit", "icmp4_port_unreach_udp",
    ],
    # Every error, and one frame that is not an error (refused).
    "icmp_error_nat": None,
}


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
    targets = {t: [] for t in ("parse_frame", "nat_rewrite", "tunnel_encap", "icmp_error_nat", "build_too_big", "ttl_dr")}
    for i, (name, f, kind) in enumerate(frames()):
        v4 = is_v4(f)
        targets["parse_frame"].append((name, f))
        if kind == "flow":
            targets["nat_rewrite"].append((name, params_nat(i, v4) + f))
            # ttl_dr: the real server's MAC and ours.
            targets["ttl_dr"].append((name, RS_MAC + DIRECTOR_MAC + f))
            # build_too_big: MTU, source (the VIP), output buffer size.
            src = ip4(VIP4) + b"\0" * 12 if v4 else ip6(VIP6)
            mtu = 1480 if v4 else 1280
            targets["build_too_big"].append((name, struct.pack("!H", mtu) + src + struct.pack("!H", 1599) + f))
            # tunnel_encap: v4 outer for v4 inner, v6 for v6; every third
            # one with the source derived from the flow.
            from_flow = 2 if i % 3 == 0 else 0
            if v4:
                p = bytes([0 | from_flow]) + ip4(RS4) + b"\0" * 12 + ip4("192.0.2.0") + b"\0" * 12 + bytes([24])
            else:
                p = bytes([1 | from_flow]) + ip6(RS6) + ip6("2001:db8:2::") + bytes([64])
            p += bytes([64]) + struct.pack("!H", i) + bytes([40])
            targets["tunnel_encap"].append((name, p + f))
        if kind == "error" or name == "tcp_syn_v4":
            mode = i % 2  # outbound (0) or inbound (1)
            if v4:
                a = ip4(RS4 if mode else VIP4) + b"\0" * 12
            else:
                a = ip6(RS6 if mode else VIP6)
            targets["icmp_error_nat"].append((name, bytes([mode]) + a + struct.pack("!H", 8080 if mode else 80) + f))
            if kind == "error":  # refused: no reply to an error
                src = ip4(VIP4) + b"\0" * 12 if v4 else ip6(VIP6)
                targets["build_too_big"].append((name, struct.pack("!H", 1400) + src + struct.pack("!H", 1599) + f))
    for target, seeds in targets.items():
        keep = SEEDS.get(target)
        if keep is not None:
            seeds = [(n, s) for n, s in seeds if n in keep]
            assert len(seeds) == len(keep), (target, [n for n in keep if n not in dict(seeds)])
        d = os.path.join(root, target)
        os.makedirs(d, exist_ok=True)
        for old in os.listdir(d):
            os.remove(os.path.join(d, old))
        for name, data in seeds:
            with open(os.path.join(d, name), "wb") as fh:
                fh.write(data)
        print(f"{target}: {len(seeds)} seeds, largest {max(len(s) for _, s in seeds)} bytes")
    load_report_seeds(root)
    vrrp_seeds(root)
    sync_seeds(root)


# The load_report target verifies with this key (its id is 1); the seeds are
# reports signed with it, written here independently of the crate's encoder.
LOAD_REPORT_KEY = b"xvs-fuzz-load-report-key-32bytes"


def load_report(state, family, addr, seq, figures, identity=b"rs1", key_id=1):
    """A version-1 load report (packet/src/load_report.rs), signed."""
    body = b"XVSL" + bytes([1, state, family, 0]) + struct.pack("!I", key_id)
    body += identity.ljust(32, b"\0") + addr.ljust(16, b"\0")
    body += struct.pack("!QQI", 1_790_000_000_000, seq, 1000)
    body += struct.pack("!HHIIIIII", *figures)
    return body + hmac.new(LOAD_REPORT_KEY, body, hashlib.sha256).digest()


def load_report_seeds(root):
    unknown = (0xFFFF, 0xFFFF) + (0xFFFFFFFF,) * 6
    seeds = {
        "ready_v4": load_report(0, 4, ip4(RS4), 1, (425, 610, 12345, 12000, 3, 40, 157, 42)),
        "drain_v6": load_report(1, 6, ip6(RS6), 2, (1000, 1000, 0, 0, 0, 0, 0, 0), identity=b"rs2.example"),
        "maint_unknown_figures": load_report(2, 4, ip4(RS4), 3, unknown),
        "other_key_id": load_report(0, 4, ip4(RS4), 4, (1, 2, 3, 4, 5, 6, 7, 8), key_id=2),
    }
    d = os.path.join(root, "load_report")
    os.makedirs(d, exist_ok=True)
    for old in os.listdir(d):
        os.remove(os.path.join(d, old))
    for name, data in seeds.items():
        with open(os.path.join(d, name), "wb") as fh:
            fh.write(data)
    print(f"load_report: {len(seeds)} seeds, largest {max(len(s) for s in seeds.values())} bytes")


# The vrrp target verifies with keepalived's test key: bytes 00..1f, id 1.
VRRP_KEY = bytes(range(32))


def vrrp_signed(family, vrid, prio, interval, addrs, src, seq):
    """A VRRPv3 advert with keepalived's auth_hmac trailer, as a bare message
    (the checksum left zero: the tag reads it as zero, and the target
    checks the tag, not the checksum, of a bare message)."""
    msg = bytes([0x31, vrid, prio, len(addrs)]) + struct.pack("!HH", interval, 0) + b"".join(addrs)
    pseudo = bytes([4 if family == 4 else 6, 3, vrid, 0]) + src.ljust(16, b"\0")
    head = bytes([1, 1, 0, 0]) + struct.pack("!IHH", seq >> 32, (seq >> 16) & 0xFFFF, seq & 0xFFFF)
    tag = hmac.new(VRRP_KEY, pseudo + msg + head + b"\0" * 16, hashlib.sha256).digest()[:16]
    return msg + head + tag


def pcap_datagrams(path):
    """The IP datagrams of a classic little-endian Ethernet pcap."""
    with open(path, "rb") as fh:
        data = fh.read()
    out, at = [], 24
    while at + 16 <= len(data):
        (n,) = struct.unpack("<I", data[at + 8:at + 12])
        out.append(data[at + 16 + 14:at + 16 + n])
        at += 16 + n
    return out


def vrrp_seeds(root):
    here = os.path.dirname(os.path.abspath(__file__))
    fixtures = os.path.join(here, "..", "tests", "fixtures")
    seeds = {
        # keepalived's draft appendix vectors (test/auth_hmac_test.c).
        "draft_v4": bytes([0]) + bytes.fromhex(
            "3133c80100644402c0000264010100006800000080000000"
            "1b84bc4e8e43892dc6d98448f8ee2265"),
        "draft_v6": bytes([1]) + bytes.fromhex(
            "3133c8010064a2e9fe800000000000000000000000000100"
            "010100006800000080000000c8c56146ebfd66ee10ec4d8186461b78"),
        "signed_v4_two_addresses": bytes([0]) + vrrp_signed(
            4, 51, 150, 100, [ip4("192.0.2.100"), ip4("192.0.2.101")], ip4("198.51.100.10"), 5 << 32),
        "signed_v6_priority_0": bytes([1]) + vrrp_signed(
            6, 52, 0, 50, [ip6("2001:db8::100")], ip6("fe80::10"), (7 << 32) | 3),
    }
    for family in ("v4", "v6"):
        path = os.path.join(fixtures, f"keepalived-vrrp3-{family}.pcap")
        grams = pcap_datagrams(path)
        seeds[f"keepalived_{family}_advert"] = bytes([2]) + grams[0]
        seeds[f"keepalived_{family}_stopping"] = bytes([2]) + grams[-1]
    d = os.path.join(root, "vrrp")
    os.makedirs(d, exist_ok=True)
    for old in os.listdir(d):
        os.remove(os.path.join(d, old))
    for name, data in seeds.items():
        with open(os.path.join(d, name), "wb") as fh:
            fh.write(data)
    print(f"vrrp: {len(seeds)} seeds, largest {max(len(s) for s in seeds.values())} bytes")


if __name__ == "__main__":
    main()


# The sync target verifies with this key under id 1; the seeds are messages
# signed with it, written here independently of the crate's encoder.
SYNC_KEY = b"xvs-fuzz-sync-message-key-32byte"


def sync_message(kind, flags, epoch, seq, peer_epoch, ack, body=b"", count=0, syncid=7, key_id=1):
    """A version-1 sync message (packet/src/sync.rs), signed."""
    length = 28 + len(body) + 20
    head = b"XVSS" + bytes([1, kind, syncid, flags]) + struct.pack("!IIIIHH", epoch, seq, peer_epoch, ack, count, length)
    unsigned = head + body + bytes([key_id, 0, 0, 0])
    tag = hmac.new(SYNC_KEY, unsigned + b"\0" * 16, hashlib.sha256).digest()[:16]
    return unsigned + tag


def sync_addr(a):
    return ip6(a) if ":" in a else ip4(a)


def sync_upsert(proto, client, cport, vip, vport, server, rport, method, state, flags, timeout_ms):
    fam = (1 if ":" in client else 0) | (2 if ":" in vip else 0) | (4 if ":" in server else 0)
    addrs = sync_addr(client) + sync_addr(vip) + sync_addr(server)
    rec = bytes([proto, fam, flags, method, state, 0]) + struct.pack("!HHHI", cport, vport, rport, timeout_ms) + addrs
    return bytes([1, 2 + len(rec)]) + rec


def sync_delete(proto, client, cport, vip, vport, template=False):
    fam = (1 if ":" in client else 0) | (2 if ":" in vip else 0)
    rec = bytes([proto, fam, 4 if template else 0, 0]) + struct.pack("!HH", cport, vport) + sync_addr(client) + sync_addr(vip)
    return bytes([2, 2 + len(rec)]) + rec


def sync_seeds(root):
    records = [
        sync_upsert(6, "198.51.100.7", 40000, "203.0.113.1", 443, "192.0.2.11", 8443, 1, 3, 0b011, 900000),
        sync_upsert(6, "2001:db8:1::7", 40001, "2001:db8:2::1", 443, "2001:db8:3::11", 443, 2, 1, 0b001, 60000),
        sync_upsert(17, "198.51.100.0", 0, "203.0.113.1", 53, "192.0.2.12", 53, 0, 0, 0b100, 300000),
        sync_delete(6, "198.51.100.8", 40002, "203.0.113.1", 443),
        sync_delete(17, "2001:db8:1::", 0, "2001:db8:2::1", 53, template=True),
    ]
    seeds = {
        "data_bulk_start": sync_message(1, 1, 0xDEADBEEF, 1, 0x01020304, 0, b"".join(records), len(records)),
        "data_bulk_end_empty": sync_message(1, 2, 0xDEADBEEF, 2, 0x01020304, 0),
        "ack": sync_message(2, 0, 0x01020304, 0, 0xDEADBEEF, 41),
        "nack": sync_message(3, 0, 0x01020304, 0, 0xDEADBEEF, 41, struct.pack("!II", 42, 50)),
        "hello_unaddressed": sync_message(4, 0, 0xDEADBEEF, 0xFFFFFFFF, 0, 0),
        "bulk_request": sync_message(5, 0, 0x01020304, 0, 0, 0),
        "other_key_id": sync_message(4, 0, 0xDEADBEEF, 9, 0x01020304, 0, key_id=2),
    }
    d = os.path.join(root, "sync")
    os.makedirs(d, exist_ok=True)
    for old in os.listdir(d):
        os.remove(os.path.join(d, old))
    for name, data in seeds.items():
        with open(os.path.join(d, name), "wb") as fh:
            fh.write(data)
    print(f"sync: {len(seeds)} seeds, largest {max(len(s) for s in seeds.values())} bytes")
