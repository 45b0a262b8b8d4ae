#!/usr/bin/env python3
"""Writes sample.pcap: a small capture of what a director's client-side
interface sees, for demo.sh and tests. Standard library only, so that it
runs anywhere; checksums are computed here, independently of xvs.

Frames (client 198.51.100.7 / 2001:db8:1::7 -> VIP 203.0.113.10 / 2001:db8::10):
  1  TCP SYN to VIP:80 (IPv4)            6  ICMP echo request to the VIP
  2  TCP ACK + HTTP GET (IPv4)           7  TCP SYN behind an 802.1Q tag (VLAN 42)
  3  TCP FIN (IPv4)                      8  ICMP port unreachable quoting a UDP reply
  4  UDP DNS query to VIP:53 (IPv4)      9  ARP who-has for the VIP
  5  TCP SYN to [VIP]:80 (IPv6)         10  IPv4 header with a bad checksum
                                        11  a frame cut short inside the TCP header
"""
import struct
import sys

CLIENT_MAC = bytes.fromhex("020000000001")
DIRECTOR_MAC = bytes.fromhex("020000000002")


def csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ip4(a: str) -> bytes:
    return bytes(int(x) for x in a.split("."))


def ip6(a: str) -> bytes:
    import ipaddress
    return ipaddress.IPv6Address(a).packed


def ipv4(src, dst, proto, payload, ttl=64, ident=1, df=True):
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), ident,
                      0x4000 if df else 0, ttl, proto, 0, ip4(src), ip4(dst))
    hdr = hdr[:10] + struct.pack("!H", csum(hdr)) + hdr[12:]
    return hdr + payload


def ipv6(src, dst, nxt, payload, hop=64):
    return struct.pack("!IHBB16s16s", 6 << 28, len(payload), nxt, hop, ip6(src), ip6(dst)) + payload


def pseudo4(src, dst, proto, length):
    return ip4(src) + ip4(dst) + struct.pack("!BBH", 0, proto, length)


def pseudo6(src, dst, nxt, length):
    return ip6(src) + ip6(dst) + struct.pack("!IxxxB", length, nxt)


def tcp(sport, dport, flags, payload=b"", seq=1000, ack=0):
    return struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 5 << 4, flags, 64240, 0, 0) + payload


def with_l4_checksum(seg, pseudo, at, udp=False):
    c = csum(pseudo + seg)
    if udp and c == 0:
        c = 0xFFFF
    return seg[:at] + struct.pack("!H", c) + seg[at + 2:]


def tcp4(src, dst, sport, dport, flags, payload=b""):
    seg = tcp(sport, dport, flags, payload, ack=5001 if flags & 0x10 else 0)
    return ipv4(src, dst, 6, with_l4_checksum(seg, pseudo4(src, dst, 6, len(seg)), 16))


def udp4(src, dst, sport, dport, payload):
    seg = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    return ipv4(src, dst, 17, with_l4_checksum(seg, pseudo4(src, dst, 17, len(seg)), 6, udp=True))


def eth(payload, ethertype=0x0800, vlan=None):
    if vlan is None:
        return DIRECTOR_MAC + CLIENT_MAC + struct.pack("!H", ethertype) + payload
    return DIRECTOR_MAC + CLIENT_MAC + struct.pack("!HHH", 0x8100, vlan, ethertype) + payload


def frames():
    c4, v4, c6, v6 = "198.51.100.7", "203.0.113.10", "2001:db8:1::7", "2001:db8::10"
    SYN, ACK, PSH, FIN = 0x02, 0x10, 0x08, 0x01
    out = []
    out.append(eth(tcp4(c4, v4, 40000, 80, SYN)))
    out.append(eth(tcp4(c4, v4, 40000, 80, ACK | PSH, b"GET / HTTP/1.1\r\nHost: vip\r\n\r\n")))
    out.append(eth(tcp4(c4, v4, 40000, 80, FIN | ACK)))
    out.append(eth(udp4(c4, v4, 53000, 53, b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x03www\x00\x00\x01\x00\x01")))
    seg = tcp(40001, 80, SYN)
    out.append(eth(ipv6(c6, v6, 6, with_l4_checksum(seg, pseudo6(c6, v6, 6, len(seg)), 16)), 0x86DD))
    echo = struct.pack("!BBHHH", 8, 0, 0, 0x0777, 1) + b"xvs ping"
    echo = echo[:2] + struct.pack("!H", csum(echo)) + echo[4:]
    out.append(eth(ipv4(c4, v4, 1, echo)))
    out.append(eth(tcp4(c4, v4, 40002, 80, SYN), vlan=42))
    reply = udp4(v4, c4, 53, 53000, b"answer")
    unreach = struct.pack("!BBHI", 3, 3, 0, 0) + reply
    unreach = unreach[:2] + struct.pack("!H", csum(unreach)) + unreach[4:]
    out.append(eth(ipv4(c4, v4, 1, unreach)))
    arp = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, CLIENT_MAC, ip4(c4), b"\0" * 6, ip4(v4))
    out.append(b"\xff" * 6 + CLIENT_MAC + b"\x08\x06" + arp + b"\0" * 18)
    bad = bytearray(eth(tcp4(c4, v4, 40003, 80, SYN)))
    bad[14 + 10] ^= 0xFF
    out.append(bytes(bad))
    out.append(eth(tcp4(c4, v4, 40004, 80, SYN))[:14 + 20 + 10])
    return out


def write_pcap(path, frames):
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for i, frame in enumerate(frames):
            # One frame every 10 ms from a fixed instant: reproducible bytes.
            f.write(struct.pack("<IIII", 1_790_000_000, i * 10_000, len(frame), len(frame)))
            f.write(frame)


if __name__ == "__main__":
    write_pcap(sys.argv[1] if len(sys.argv) > 1 else "sample.pcap", frames())
