#!/usr/bin/env python3
"""UDP echo for the testbed's real servers, and the client that checks it.

  udp-echo.py serve [--port 7]
      Echoes every datagram back to its sender, on IPv4 and IPv6 (one
      dual-stack socket), from the address it was sent to (a VIP on lo, for
      VS/DR). It only echoes: no state, no replies to anything else, one
      datagram out per datagram in.

  udp-echo.py check HOST PORT [--count N] [--timeout S]
      Sends N datagrams of random bytes to HOST:PORT, each from its own
      socket (so each is a new UDP flow for a load balancer), and requires
      the same bytes back from exactly HOST:PORT. Prints one line per
      datagram; exits 1 if any reply is missing, different or comes from
      another address.
"""
import argparse
import os
import socket
import sys


# struct in6_pktinfo: the address (16 bytes), then the interface index.
PKTINFO_LEN = 16 + 4


def serve(port):
    sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # A socket bound to the wildcard address does not answer from the
    # address a datagram was sent to: the kernel picks the reply's source by
    # the route back (a VS/DR real server would answer from its own address,
    # not the VIP on its lo, and the client would drop it). So learn each
    # datagram's destination (IPV6_PKTINFO, IPv4-mapped for IPv4) and send
    # the echo from exactly that address.
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
    sock.bind(("::", port))
    while True:
        data, ancillary, _flags, peer = sock.recvmsg(65535, socket.CMSG_SPACE(PKTINFO_LEN))
        reply_from = [
            (level, kind, info[:16] + bytes(4))  # interface 0: whichever the route says
            for level, kind, info in ancillary
            if level == socket.IPPROTO_IPV6 and kind == socket.IPV6_PKTINFO and len(info) >= PKTINFO_LEN
        ]
        try:
            sock.sendmsg([data], reply_from, 0, peer)
        except OSError as err:  # e.g. no route back: drop it, keep serving
            print(f"udp-echo: reply to {peer[0]} failed: {err}", file=sys.stderr)


def check(host, port, count, timeout):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    failures = 0
    for i in range(count):
        payload = os.urandom(32)
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.settimeout(timeout)
            sock.sendto(payload, (host, port))
            try:
                data, peer = sock.recvfrom(65535)
            except socket.timeout:
                print(f"  datagram {i + 1}: no reply from {host}:{port} within {timeout} s")
                failures += 1
                continue
        if data != payload:
            print(f"  datagram {i + 1}: reply differs from what was sent")
            failures += 1
        elif peer[0] != host or peer[1] != port:
            print(f"  datagram {i + 1}: reply came from {peer[0]}:{peer[1]}, not {host}:{port}")
            failures += 1
        else:
            print(f"  datagram {i + 1}: 32 bytes echoed by {peer[0]}:{peer[1]}")
    return 1 if failures else 0


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="mode", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--port", type=int, default=7)
    c = sub.add_parser("check")
    c.add_argument("host")
    c.add_argument("port", type=int)
    c.add_argument("--count", type=int, default=5)
    c.add_argument("--timeout", type=float, default=2.0)
    args = parser.parse_args()
    if args.mode == "serve":
        serve(args.port)
        return 0
    return check(args.host, args.port, args.count, args.timeout)


if __name__ == "__main__":
    sys.exit(main())
