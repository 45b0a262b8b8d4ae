#!/usr/bin/env python3
"""Lists the TCP and UDP frames of a capture, one line each, for the testbed's checks.

  pcap-frames.py [--complete-partial] FILE

FILE is a classic pcap (what `tcpdump -w` writes) of Ethernet frames. Each
IPv4 or IPv6 frame carrying TCP or UDP (no IPv6 extension headers, no
802.1Q tag: the testbed has neither) becomes

  SRC_MAC DST_MAC SRC_IP DST_IP TTL PROTO SRC_PORT DST_PORT DIGEST

with TTL the IPv4 TTL or the IPv6 hop limit and PROTO tcp or udp. DIGEST
identifies the IP packet (IP header and all it carries, up to the IP
length) apart from its TTL / hop limit and the IPv4 header checksum that
follows the TTL: a packet forwarded untouched but for its TTL has the
digest it had before.

A frame carrying IP in IP (outer IPv4 protocol 4 or 41, outer IPv6 next
header 4 or 41), as VS/TUN sends, describes the inner packet as above,
followed by the outer header's fields:

  ... DIGEST OUTER_PROTO OUTER_SRC OUTER_DST OUTER_TTL OUTER_DF

(OUTER_PROTO is the number, 4 for IPv4 inside, 41 for IPv6 inside;
OUTER_DF is "df" when an outer IPv4 header has don't-fragment set, "-"
otherwise and for an outer IPv6 header). Other
frames are left out. Addresses are printed as Python's ipaddress prints
them (IPv6 compressed), MACs in lower case.

--complete-partial: for a capture on a sender with transmit checksum
offload on, whose TCP/UDP checksums hold only the pseudo-header sum (the
stack leaves the rest to the "NIC"; tcpdump sees the bytes before): such a
checksum is replaced by the full one before the digest, which then is that
of the packet as it should arrive, and as the director must forward it.
"""
import hashlib
import ipaddress
import struct
import sys

LINKTYPE_ETHERNET = 1


def mac(raw):
    return ":".join(f"{b:02x}" for b in raw)


def frames(path):
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 24:
        sys.exit(f"pcap-frames: {path}: {len(data)} bytes, too short for a pcap header")
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        endian = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        endian = ">"
    else:
        sys.exit(f"pcap-frames: {path}: not a classic pcap file (magic {magic.hex()}; pcapng is not read)")
    linktype = struct.unpack(endian + "I", data[20:24])[0] & 0xFFFF
    if linktype != LINKTYPE_ETHERNET:
        sys.exit(f"pcap-frames: {path}: link type {linktype}, not Ethernet")
    off = 24
    while off + 16 <= len(data):
        incl = struct.unpack(endian + "I", data[off + 8 : off + 12])[0]
        yield data[off + 16 : off + 16 + incl]
        off += 16 + incl


def ip_header(ip):
    """(version, header length, total length, TTL, protocol, src, dst) of an
    IP packet, or None when it is neither a whole IPv4 nor IPv6 header."""
    if len(ip) >= 20 and ip[0] >> 4 == 4:
        ihl = (ip[0] & 0x0F) * 4
        total = struct.unpack("!H", ip[2:4])[0]
        src, dst = ipaddress.IPv4Address(ip[12:16]), ipaddress.IPv4Address(ip[16:20])
        return 4, ihl, total, ip[8], ip[9], src, dst
    if len(ip) >= 40 and ip[0] >> 4 == 6:
        total = 40 + struct.unpack("!H", ip[4:6])[0]
        src, dst = ipaddress.IPv6Address(ip[8:24]), ipaddress.IPv6Address(ip[24:40])
        return 6, 40, total, ip[7], ip[6], src, dst
    return None


def fold(acc):
    while acc > 0xFFFF:
        acc = (acc & 0xFFFF) + (acc >> 16)
    return acc


def words(data):
    if len(data) % 2:
        data = bytes(data) + b"\0"
    return sum(struct.unpack(f"!{len(data) // 2}H", data))


def completed(ip, version, hlen, total, proto, src, dst):
    """The packet with a partial TCP/UDP checksum (the folded pseudo-header
    sum, RFC 793 / RFC 8200) replaced by the full one; as it was otherwise."""
    l4 = bytearray(ip[hlen:total])
    at = 16 if proto == 6 else 6
    length = len(l4) if proto == 6 else struct.unpack("!H", l4[4:6])[0]
    if len(l4) < at + 2 or length < at + 2 or length > len(l4):
        return ip
    pseudo = words(src.packed) + words(dst.packed) + proto + (length >> 16) + (length & 0xFFFF)
    if struct.unpack("!H", l4[at : at + 2])[0] != fold(pseudo):
        return ip
    l4[at : at + 2] = b"\0\0"
    check = 0xFFFF - fold(pseudo + words(l4[:length]))
    if proto == 17 and check == 0:
        check = 0xFFFF
    l4[at : at + 2] = struct.pack("!H", check)
    return bytes(ip[:hlen]) + bytes(l4) + bytes(ip[total:])


def digest(ip, version, total):
    """The packet's identity apart from TTL / hop limit (and the IPv4
    header checksum, which follows the TTL)."""
    packet = bytearray(ip[:total])
    if version == 4:
        packet[8] = 0
        packet[10:12] = b"\0\0"
    else:
        packet[7] = 0
    return hashlib.sha1(packet).hexdigest()[:16]


def describe_ip(ip, complete_partial=False):
    """'SRC DST TTL PROTO SPORT DPORT DIGEST' of a TCP or UDP packet, or None."""
    header = ip_header(ip)
    if header is None:
        return None
    version, hlen, total, ttl, proto, src, dst = header
    l4 = ip[hlen:total]
    if proto not in (6, 17) or len(l4) < 4:
        return None
    if complete_partial:
        ip = completed(ip, version, hlen, total, proto, src, dst)
    sport, dport = struct.unpack("!HH", l4[:4])
    name = "tcp" if proto == 6 else "udp"
    return f"{src} {dst} {ttl} {name} {sport} {dport} {digest(ip, version, total)}"


def describe(frame, complete_partial=False):
    if len(frame) < 14:
        return None
    ethertype = struct.unpack("!H", frame[12:14])[0]
    if ethertype not in (0x0800, 0x86DD):
        return None
    ip = frame[14:]
    header = ip_header(ip)
    if header is None:
        return None
    macs = f"{mac(frame[6:12])} {mac(frame[0:6])}"
    _, hlen, total, ttl, proto, src, dst = header
    if proto in (4, 41):
        inner = describe_ip(ip[hlen:total], complete_partial)
        df = "df" if ip[0] >> 4 == 4 and ip[6] & 0x40 else "-"
        return f"{macs} {inner} {proto} {src} {dst} {ttl} {df}" if inner else None
    inner = describe_ip(ip, complete_partial)
    return f"{macs} {inner}" if inner else None


def main(argv):
    complete_partial = len(argv) == 3 and argv[1] == "--complete-partial"
    if len(argv) != 2 + complete_partial:
        sys.exit(__doc__)
    for frame in frames(argv[-1]):
        line = describe(frame, complete_partial)
        if line:
            print(line)


if __name__ == "__main__":
    main(sys.argv)
