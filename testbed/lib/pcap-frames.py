#!/usr/bin/env python3
"""Lists the TCP and UDP frames of a capture, one line each, for the testbed's checks.

  pcap-frames.py FILE

FILE is a classic pcap (what `tcpdump -w` writes) of Ethernet frames. Each
IPv4 or IPv6 frame carrying TCP or UDP (no IPv6 extension headers, no
802.1Q tag: the testbed has neither) becomes

  SRC_MAC DST_MAC SRC_IP DST_IP TTL PROTO SRC_PORT DST_PORT

with TTL the IPv4 TTL or the IPv6 hop limit and PROTO tcp or udp. Other
frames are left out. Addresses are printed as Python's ipaddress prints
them (IPv6 compressed), MACs in lower case.
"""
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


def describe(frame):
    if len(frame) < 14:
        return None
    ethertype = struct.unpack("!H", frame[12:14])[0]
    ip = frame[14:]
    if ethertype == 0x0800 and len(ip) >= 20 and ip[0] >> 4 == 4:
        ihl = (ip[0] & 0x0F) * 4
        ttl, proto = ip[8], ip[9]
        src, dst = ipaddress.IPv4Address(ip[12:16]), ipaddress.IPv4Address(ip[16:20])
        l4 = ip[ihl:]
    elif ethertype == 0x86DD and len(ip) >= 40 and ip[0] >> 4 == 6:
        proto, ttl = ip[6], ip[7]
        src, dst = ipaddress.IPv6Address(ip[8:24]), ipaddress.IPv6Address(ip[24:40])
        l4 = ip[40:]
    else:
        return None
    if proto not in (6, 17) or len(l4) < 4:
        return None
    sport, dport = struct.unpack("!HH", l4[:4])
    name = "tcp" if proto == 6 else "udp"
    return f"{mac(frame[6:12])} {mac(frame[0:6])} {src} {dst} {ttl} {name} {sport} {dport}"


def main(argv):
    if len(argv) != 2:
        sys.exit(__doc__)
    for frame in frames(argv[1]):
        line = describe(frame)
        if line:
            print(line)


if __name__ == "__main__":
    main(sys.argv)
