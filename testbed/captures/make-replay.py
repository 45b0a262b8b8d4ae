#!/usr/bin/env python3
"""Writes the input captures and configs of xvs-replay's tests into
tools/tests/replay/ (or the directory given as the only argument).

Standard library only; every checksum is computed here (helpers shared with
make-sample.py), independently of xvs. Run it again after editing a scenario,
then bless and review the expected outputs:

    python3 testbed/captures/make-replay.py
    XVS_BLESS=1 cargo test -p xvs-tools --test replay
    # read every changed *.expected.verdicts and the frames in
    # *.expected.pcapng (tshark -r FILE -V) before committing

Topology shared by all configs (director MACs 02:00:00:00:01:01 on client0,
02:00:00:00:02:01 on server0):

  clients 198.51.100.7, .8            [client0]  director  [server0]  real servers 192.0.2.11-.14
          2001:db8:5100::7            198.51.100.1/24      192.0.2.1/24      2001:db8:200::11
                                      2001:db8:5100::1/64  2001:db8:200::1/64
  VIPs 203.0.113.10, 2001:db8:113::10

Captures are pcapng (interface 0 = client0, 1 = server0, microsecond
timestamps), except nat-udp and misc, which are plain pcap so that the
receiving interface comes from the destination MAC.
"""
import importlib.util
import os
import struct
import sys

_here = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location("make_sample", os.path.join(_here, "make-sample.py"))
_sample = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_sample)
csum, ip4, ip6 = _sample.csum, _sample.ip4, _sample.ip6
ipv4, ipv6 = _sample.ipv4, _sample.ipv6
pseudo4, pseudo6, with_l4_checksum = _sample.pseudo4, _sample.pseudo6, _sample.with_l4_checksum

DIR_CLIENT_MAC = bytes.fromhex("020000000101")
DIR_SERVER_MAC = bytes.fromhex("020000000201")
CLIENT_MAC = {"198.51.100.7": bytes.fromhex("020000000007"),
              "198.51.100.8": bytes.fromhex("020000000008"),
              "2001:db8:5100::7": bytes.fromhex("020000000007")}
RS_MAC = {"192.0.2.11": bytes.fromhex("020000000211"),
          "192.0.2.12": bytes.fromhex("020000000212"),
          "192.0.2.13": bytes.fromhex("020000000213"),
          "192.0.2.14": bytes.fromhex("020000000214"),
          "2001:db8:200::11": bytes.fromhex("020000000211")}
OTHER_MAC = bytes.fromhex("02000000ee01")

C4, C4B, C6 = "198.51.100.7", "198.51.100.8", "2001:db8:5100::7"
VIP4, VIP6 = "203.0.113.10", "2001:db8:113::10"
RS11, RS12, RS13, RS14, RS6 = "192.0.2.11", "192.0.2.12", "192.0.2.13", "192.0.2.14", "2001:db8:200::11"

FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10
CLIENT, SERVER = 0, 1  # pcapng interface numbers = config order


def is6(addr):
    return ":" in addr


def tcp_seg(src, dst, sport, dport, flags, payload=b"", seq=1000, ack=0, doff=5):
    seg = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, doff << 4, flags, 64240, 0, 0) + payload
    if is6(src):
        return with_l4_checksum(seg, pseudo6(src, dst, 6, len(seg)), 16)
    return with_l4_checksum(seg, pseudo4(src, dst, 6, len(seg)), 16)


def tcp(src, dst, sport, dport, flags, payload=b"", seq=1000, ack=0, df=True, ident=1):
    seg = tcp_seg(src, dst, sport, dport, flags, payload, seq, ack)
    if is6(src):
        return ipv6(src, dst, 6, seg)
    return ipv4(src, dst, 6, seg, ident=ident, df=df)


def udp(src, dst, sport, dport, payload, ident=1):
    seg = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    if is6(src):
        return ipv6(src, dst, 17, with_l4_checksum(seg, pseudo6(src, dst, 17, len(seg)), 6, udp=True))
    return ipv4(src, dst, 17, with_l4_checksum(seg, pseudo4(src, dst, 17, len(seg)), 6, udp=True), ident=ident)


def icmp4(src, dst, typ, code, rest, body):
    msg = struct.pack("!BBHI", typ, code, 0, rest) + body
    msg = msg[:2] + struct.pack("!H", csum(msg)) + msg[4:]
    return ipv4(src, dst, 1, msg)


def icmp6(src, dst, typ, code, rest, body):
    msg = struct.pack("!BBHI", typ, code, 0, rest) + body
    msg = msg[:2] + struct.pack("!H", csum(pseudo6(src, dst, 58, len(msg)) + msg)) + msg[4:]
    return ipv6(src, dst, 58, msg)


def eth(dst_mac, src_mac, packet, ethertype=None):
    if ethertype is None:
        ethertype = 0x86DD if packet[0] >> 4 == 6 else 0x0800
    return dst_mac + src_mac + struct.pack("!H", ethertype) + packet


def from_client(packet, client=C4):
    """A frame a client sends to the director (client0)."""
    return (CLIENT, eth(DIR_CLIENT_MAC, CLIENT_MAC[client], packet))


def from_rs(packet, rs):
    """A frame a real server sends to the director (server0)."""
    return (SERVER, eth(DIR_SERVER_MAC, RS_MAC[rs], packet))


# ---- scenarios: (name, config, format, [(interface, frame, gap_ms)]) ---------------
# Frames are 10 ms apart unless a third element gives the gap before the frame.

HTTP_GET = b"GET / HTTP/1.1\r\nHost: vip\r\n\r\n"
HTTP_OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def nat_tcp():
    # rr over .11 and .12 (list newest first: the first connection goes to
    # .12, the second to .11). Connection A: handshake, request, reply,
    # FIN/ACK teardown from both sides. Connection B: SYN, SYN-ACK, RST.
    a, b = 40000, 40001
    return [
        from_client(tcp(C4, VIP4, a, 80, SYN, seq=1000)),
        from_rs(tcp(RS12, C4, 80, a, SYN | ACK, seq=5000, ack=1001), RS12),
        from_client(tcp(C4, VIP4, a, 80, ACK, seq=1001, ack=5001)),
        from_client(tcp(C4, VIP4, a, 80, ACK | PSH, HTTP_GET, seq=1001, ack=5001)),
        from_rs(tcp(RS12, C4, 80, a, ACK, seq=5001, ack=1001 + len(HTTP_GET)), RS12),
        from_rs(tcp(RS12, C4, 80, a, ACK | PSH, HTTP_OK, seq=5001, ack=1001 + len(HTTP_GET)), RS12),
        from_client(tcp(C4, VIP4, a, 80, ACK, seq=1001 + len(HTTP_GET), ack=5001 + len(HTTP_OK))),
        from_client(tcp(C4, VIP4, b, 80, SYN, seq=7000), C4),
        from_rs(tcp(RS11, C4, 80, b, SYN | ACK, seq=9000, ack=7001), RS11),
        from_client(tcp(C4, VIP4, a, 80, FIN | ACK, seq=1001 + len(HTTP_GET), ack=5001 + len(HTTP_OK))),
        from_rs(tcp(RS12, C4, 80, a, ACK, seq=5001 + len(HTTP_OK), ack=1002 + len(HTTP_GET)), RS12),
        from_rs(tcp(RS12, C4, 80, a, FIN | ACK, seq=5001 + len(HTTP_OK), ack=1002 + len(HTTP_GET)), RS12),
        from_client(tcp(C4, VIP4, a, 80, ACK, seq=1002 + len(HTTP_GET), ack=5002 + len(HTTP_OK))),
        from_client(tcp(C4, VIP4, b, 80, RST, seq=7001)),
    ]


DNS_Q = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x03www\x07example\x00\x00\x01\x00\x01"
DNS_A = b"\x12\x34\x81\x80\x00\x01\x00\x01\x00\x00\x00\x00\x03www\x07example\x00\x00\x01\x00\x01" \
        b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04\xcb\x00\x71\x63"


def nat_udp():
    # VIP:53 -> .13:5353 (NAT changes the port). Query, answer, a second
    # query on the same flow, its answer; then, 301 s later (past the UDP
    # timeout of 300 s), the same flow again: a new connection.
    return [
        from_client(udp(C4, VIP4, 53000, 53, DNS_Q)),
        from_rs(udp(RS13, C4, 5353, 53000, DNS_A), RS13),
        from_client(udp(C4, VIP4, 53000, 53, DNS_Q, ident=2)),
        from_rs(udp(RS13, C4, 5353, 53000, DNS_A, ident=2), RS13),
        from_client(udp(C4, VIP4, 53000, 53, DNS_Q, ident=3)) + (301_000,),
        from_rs(udp(RS13, C4, 5353, 53000, DNS_A, ident=3), RS13),
    ]


def nat_icmp():
    # A UDP flow to VIP:53 (-> .13:5353). The real server answers a later
    # datagram with port unreachable (quoting client -> .13:5353): it must
    # reach the client from the VIP, quoting client -> VIP:53. The client
    # answers a reply with port unreachable (quoting VIP:53 -> client): it
    # must reach .13, quoting .13:5353 -> client. An error about a flow we
    # do not know is dropped.
    sent = udp(C4, RS13, 53001, 5353, DNS_Q, ident=2)  # as .13 received it
    reply = udp(VIP4, C4, 53, 53001, DNS_A, ident=7)  # as the client received it
    stray = udp(VIP4, C4, 53, 53999, DNS_A, ident=8)
    return [
        from_client(udp(C4, VIP4, 53001, 53, DNS_Q)),
        from_client(udp(C4, VIP4, 53001, 53, DNS_Q, ident=2)),
        from_rs(icmp4(RS13, C4, 3, 3, 0, sent), RS13),
        from_client(icmp4(C4, VIP4, 3, 3, 0, reply)),
        from_client(icmp4(C4, VIP4, 3, 3, 0, stray)),
    ]


def nat_v6():
    # [VIP6]:80 -> [2001:db8:200::11]:8080, NAT over IPv6: handshake,
    # request, reply, FIN from the client. An ICMPv6 echo request to the
    # VIP is no service's: passed to the kernel.
    p = 41000
    return [
        from_client(tcp(C6, VIP6, p, 80, SYN, seq=100), C6),
        from_rs(tcp(RS6, C6, 8080, p, SYN | ACK, seq=900, ack=101), RS6),
        from_client(tcp(C6, VIP6, p, 80, ACK, seq=101, ack=901), C6),
        from_client(tcp(C6, VIP6, p, 80, ACK | PSH, HTTP_GET, seq=101, ack=901), C6),
        from_rs(tcp(RS6, C6, 8080, p, ACK | PSH, HTTP_OK, seq=901, ack=101 + len(HTTP_GET)), RS6),
        from_client(tcp(C6, VIP6, p, 80, FIN | ACK, seq=101 + len(HTTP_GET), ack=901 + len(HTTP_OK)), C6),
        from_client(icmp6(C6, VIP6, 128, 0, 0x00010001, b"xvs ping"), C6),
    ]


def nat_too_big():
    # server0's MTU is 1400. A 1450-byte IPv4 packet with DF on an
    # established connection -> fragmentation needed (MTU 1400) from the
    # VIP, out of client0; the same without DF -> dropped; IPv6 1450 bytes
    # -> packet too big (MTU 1400) from the VIP. A 1400-byte packet fits.
    body4 = b"x" * (1450 - 40)
    body6 = b"y" * (1450 - 60)
    fits = b"z" * (1400 - 40)
    return [
        from_client(tcp(C4, VIP4, 42000, 80, SYN, seq=1)),
        from_client(tcp(C4, VIP4, 42000, 80, ACK | PSH, body4, seq=2, ack=1, ident=2)),
        from_client(tcp(C4, VIP4, 42000, 80, ACK | PSH, body4, seq=2, ack=1, df=False, ident=3)),
        from_client(tcp(C4, VIP4, 42000, 80, ACK | PSH, fits, seq=2, ack=1, ident=4)),
        from_client(tcp(C6, VIP6, 42001, 80, SYN, seq=1), C6),
        from_client(tcp(C6, VIP6, 42001, 80, ACK | PSH, body6, seq=2, ack=1), C6),
    ]


def nat_fallback():
    # :8080 has two real servers of weight 0 and a fallback .14: the SYN
    # goes to .14, whose SYN-ACK comes back from VIP:8080. :81 has no real
    # server and no fallback: dropped (no_real_server).
    return [
        from_client(tcp(C4B, VIP4, 43000, 8080, SYN, seq=1), C4B),
        from_rs(tcp(RS14, C4B, 8080, 43000, SYN | ACK, seq=50, ack=2), RS14),
        from_client(tcp(C4B, VIP4, 43000, 8080, ACK, seq=2, ack=51), C4B),
        from_client(tcp(C4B, VIP4, 43001, 81, SYN, seq=1), C4B),
    ]


def misc():
    # Plain pcap: the receiving interface is the one whose MAC the frame is
    # addressed to. Passed to the kernel: ARP (broadcast), traffic to the
    # director's own address, to a VIP port with no service, an ICMP echo
    # to the VIP. Dropped: bad IPv4 checksum, truncated TCP header, IHL 4,
    # TCP data offset 4, a TCP ACK with no connection, a 10-byte frame.
    # Skipped: a frame to a MAC the director does not have.
    out = []
    arp = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, CLIENT_MAC[C4], ip4(C4), b"\0" * 6, ip4(VIP4))
    out.append((None, b"\xff" * 6 + CLIENT_MAC[C4] + b"\x08\x06" + arp + b"\0" * 18))
    out.append(from_client(tcp(C4, "198.51.100.1", 44000, 22, SYN)))
    out.append(from_client(tcp(C4, VIP4, 44001, 443, SYN)))
    echo = struct.pack("!BBHHH", 8, 0, 0, 0x0777, 1) + b"xvs ping"
    echo = echo[:2] + struct.pack("!H", csum(echo)) + echo[4:]
    out.append(from_client(ipv4(C4, VIP4, 1, echo)))
    bad = bytearray(from_client(tcp(C4, VIP4, 44002, 80, SYN))[1])
    bad[14 + 10] ^= 0xFF
    out.append((CLIENT, bytes(bad)))
    # A whole IPv4 header (total length 30) carrying 10 of the TCP
    # header's 20 bytes.
    cut = ipv4(C4, VIP4, 6, tcp_seg(C4, VIP4, 44003, 80, SYN)[:10])
    out.append((CLIENT, eth(DIR_CLIENT_MAC, CLIENT_MAC[C4], cut)))
    ihl4 = bytearray(tcp(C4, VIP4, 44004, 80, SYN))
    ihl4[0] = 0x44
    ihl4[10:12] = b"\0\0"
    ihl4[10:12] = struct.pack("!H", csum(bytes(ihl4[:16])))
    out.append((CLIENT, eth(DIR_CLIENT_MAC, CLIENT_MAC[C4], bytes(ihl4))))
    doff4 = ipv4(C4, VIP4, 6, tcp_seg(C4, VIP4, 44005, 80, SYN, doff=4))
    out.append((CLIENT, eth(DIR_CLIENT_MAC, CLIENT_MAC[C4], doff4)))
    out.append(from_client(tcp(C4, VIP4, 44006, 80, ACK, seq=5, ack=9)))
    out.append((None, DIR_CLIENT_MAC + CLIENT_MAC[C4][:4]))
    out.append((None, eth(OTHER_MAC, CLIENT_MAC[C4], tcp(C4, VIP4, 44007, 80, SYN))))
    return out


def dr_tcp():
    # VS/DR, rr over .11 and .12 (first connection -> .12) and IPv6 -> ::11:
    # only the MACs change (and the TTL / hop limit, which IPVS decrements
    # too). The real servers answer the clients directly: no replies here.
    a = 45000
    return [
        from_client(tcp(C4, VIP4, a, 80, SYN, seq=1)),
        from_client(tcp(C4, VIP4, a, 80, ACK, seq=2, ack=11)),
        from_client(tcp(C4, VIP4, a, 80, ACK | PSH, HTTP_GET, seq=2, ack=11)),
        from_client(tcp(C4, VIP4, a, 80, FIN | ACK, seq=2 + len(HTTP_GET), ack=60)),
        from_client(tcp(C4, VIP4, a + 1, 80, SYN, seq=1)),
        from_client(tcp(C6, VIP6, a, 80, SYN, seq=1), C6),
        from_client(tcp(C6, VIP6, a, 80, ACK | PSH, HTTP_GET, seq=2, ack=11), C6),
    ]


def tun_tcp():
    # VS/TUN to .11 (IPIP) and to 2001:db8:200::11 (ip6ip6): the client's
    # packet, TTL -1, inside an outer header from the director's server0
    # address to the real server.
    a = 46000
    return [
        from_client(tcp(C4, VIP4, a, 80, SYN, seq=1)),
        from_client(tcp(C4, VIP4, a, 80, ACK, seq=2, ack=11)),
        from_client(tcp(C4, VIP4, a, 80, ACK | PSH, HTTP_GET, seq=2, ack=11)),
        from_client(tcp(C4, VIP4, a, 80, FIN | ACK, seq=2 + len(HTTP_GET), ack=60)),
        from_client(tcp(C6, VIP6, a, 80, SYN, seq=1), C6),
        from_client(tcp(C6, VIP6, a, 80, ACK | PSH, HTTP_GET, seq=2, ack=11), C6),
    ]


def tun_too_big():
    # MTU 1500 everywhere: a 1490-byte IPv4 packet with DF fits the link but
    # not the 20-byte IPIP header -> fragmentation needed, MTU 1480; a
    # 1480-byte one fits exactly. IPv6 1470 bytes + 40 -> packet too big,
    # MTU 1460.
    return [
        from_client(tcp(C4, VIP4, 47000, 80, SYN, seq=1)),
        from_client(tcp(C4, VIP4, 47000, 80, ACK | PSH, b"a" * (1490 - 40), seq=2, ack=1, ident=2)),
        from_client(tcp(C4, VIP4, 47000, 80, ACK | PSH, b"b" * (1480 - 40), seq=2, ack=1, ident=3)),
        from_client(tcp(C6, VIP6, 47001, 80, SYN, seq=1), C6),
        from_client(tcp(C6, VIP6, 47001, 80, ACK | PSH, b"c" * (1470 - 60), seq=2, ack=1), C6),
    ]


SCENARIOS = [
    ("nat-tcp", "pcapng", nat_tcp),
    ("nat-udp", "pcap", nat_udp),
    ("nat-icmp", "pcapng", nat_icmp),
    ("nat-v6", "pcapng", nat_v6),
    ("nat-too-big", "pcapng", nat_too_big),
    ("nat-fallback", "pcapng", nat_fallback),
    ("misc", "pcap", misc),
    ("dr-tcp", "pcapng", dr_tcp),
    ("tun-tcp", "pcapng", tun_tcp),
    ("tun-too-big", "pcapng", tun_too_big),
]

BASE_S = 1_790_000_000


def timeline(frames):
    """(interface, frame, microseconds since BASE_S) for each frame."""
    t, out = 0, []
    for i, f in enumerate(frames):
        gap_ms = f[2] if len(f) > 2 else 10
        if i:
            t += gap_ms * 1000
        out.append((f[0], f[1], t))
    return out


def write_pcap(path, frames):
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for _, frame, us in timeline(frames):
            f.write(struct.pack("<IIII", BASE_S + us // 1_000_000, us % 1_000_000, len(frame), len(frame)))
            f.write(frame)


def block(btype, body):
    body += b"\0" * (-len(body) % 4)
    n = 12 + len(body)
    return struct.pack("<II", btype, n) + body + struct.pack("<I", n)


def option(code, value):
    return struct.pack("<HH", code, len(value)) + value + b"\0" * (-len(value) % 4)


def write_pcapng(path, frames):
    with open(path, "wb") as f:
        f.write(block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1)))
        for name in ("client0", "server0"):
            # No if_tsresol: microseconds, the pcapng default.
            f.write(block(1, struct.pack("<HHI", 1, 0, 0) + option(2, name.encode()) + option(0, b"")))
        for iface, frame, us in timeline(frames):
            ts = BASE_S * 1_000_000 + us
            body = struct.pack("<IIIII", iface, ts >> 32, ts & 0xFFFFFFFF, len(frame), len(frame)) + frame
            f.write(block(6, body + b"\0" * (-len(frame) % 4)))


# ---- configs -------------------------------------------------------------------------

COMMON = """\
# Written by testbed/captures/make-replay.py: edit it there.
# {what}

[conn_table]
capacity = 1024

[[interfaces]]
name = "client0"
role = "client"
mac = "02:00:00:00:01:01"
addresses = ["198.51.100.1/24", "2001:db8:5100::1/64"]

[[interfaces]]
name = "server0"
role = "server"
mac = "02:00:00:00:02:01"
addresses = ["192.0.2.1/24", "2001:db8:200::1/64"]
mtu = {server_mtu}
"""

NEIGHBOURS = """
[[neighbours]]
interface = "client0"
address = "198.51.100.7"
mac = "02:00:00:00:00:07"

[[neighbours]]
interface = "client0"
address = "198.51.100.8"
mac = "02:00:00:00:00:08"

[[neighbours]]
interface = "client0"
address = "2001:db8:5100::7"
mac = "02:00:00:00:00:07"
""" + "".join(f"""
[[neighbours]]
interface = "server0"
address = "{a}"
mac = "02:00:00:00:02:{a.split(':')[-1] if ':' in a else a.split('.')[-1]}"
""" for a in (RS11, RS12, RS13, RS14, RS6))


def service(proto, vip, port, scheduler, servers, fallback=None):
    text = f"""
[[services]]
proto = "{proto}"
vip = "{vip}"
port = {port}
scheduler = "{scheduler}"
"""
    if fallback:
        addr, p, method = fallback
        text += f'fallback = {{ address = "{addr}", port = {p}, method = "{method}" }}\n'
    for addr, p, method, weight in servers:
        text += f"""
[[services.real_servers]]
address = "{addr}"
port = {p}
method = "{method}"
weight = {weight}
"""
    return text


def nat_config():
    return (COMMON.format(what="VS/NAT: TCP and UDP over IPv4, TCP over IPv6; server0's MTU is 1400.",
                          server_mtu=1400)
            + service("tcp", VIP4, 80, "rr", [(RS11, 80, "nat", 1), (RS12, 80, "nat", 1)])
            + service("udp", VIP4, 53, "rr", [(RS13, 5353, "nat", 1)])
            + service("tcp", VIP4, 8080, "wlc", [(RS11, 8080, "nat", 0), (RS12, 8080, "nat", 0)],
                      fallback=(RS14, 8080, "nat"))
            + service("tcp", VIP4, 81, "wlc", [])
            + service("tcp", VIP6, 80, "rr", [(RS6, 8080, "nat", 1)])
            + NEIGHBOURS)


def dr_config():
    return (COMMON.format(what="VS/DR over IPv4 and IPv6.", server_mtu=1500)
            + service("tcp", VIP4, 80, "rr", [(RS11, 80, "dr", 1), (RS12, 80, "dr", 1)])
            + service("tcp", VIP6, 80, "rr", [(RS6, 80, "dr", 1)])
            + NEIGHBOURS)


def tun_config():
    return (COMMON.format(what="VS/TUN: IPIP over IPv4, ip6ip6 over IPv6.", server_mtu=1500)
            + service("tcp", VIP4, 80, "rr", [(RS11, 80, "tun", 1)])
            + service("tcp", VIP6, 80, "rr", [(RS6, 80, "tun", 1)])
            + NEIGHBOURS)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(_here, "..", "..", "tools", "tests", "replay")
    os.makedirs(out, exist_ok=True)
    for name, text in (("nat", nat_config()), ("dr", dr_config()), ("tun", tun_config())):
        with open(os.path.join(out, name + ".toml"), "w") as f:
            f.write(text)
    for name, fmt, make in SCENARIOS:
        frames = make()
        # Plain pcap has no interfaces: its frames say nothing more.
        if fmt == "pcap":
            write_pcap(os.path.join(out, name + ".pcap"), frames)
        else:
            assert all(f[0] is not None for f in frames), name
            write_pcapng(os.path.join(out, name + ".pcapng"), frames)


if __name__ == "__main__":
    main()
