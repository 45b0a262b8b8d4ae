#!/usr/bin/env python3
"""Reads the stats file xvs-director writes (--stats-file) for the testbed.

  xvs-stats.py table FILE [PROTO VIP PORT]   per-real-server table of a service
                                             (default tcp 203.0.113.10 80)
  xvs-stats.py conns FILE PROTO VIP PORT     "ADDRESS CONNS" per real server
  xvs-stats.py traffic FILE PROTO VIP PORT   "CONNS PKTS_IN PKTS_OUT BYTES_IN BYTES_OUT" of a service
  xvs-stats.py servers FILE PROTO VIP PORT   "ADDRESS METHOD CONNS PKTS_IN PKTS_OUT BYTES_IN BYTES_OUT"
                                             per real server
  xvs-stats.py get FILE KEY                  a top-level number (time_ms, too_big_sent…)

Fields read: time_ms, frames, transmitted, passed, too_big_sent, drops{},
services[].{proto,vip,port,scheduler,conns,packets_in,packets_out,bytes_in,
bytes_out,real_servers[]} and
real_servers[].{address,port,method,weight,conns,active_conns,inactive_conns,
packets_in,packets_out,bytes_in,bytes_out}.
"""
import json
import sys


def load(path):
    with open(path) as f:
        return json.load(f)


def service(stats, proto, vip, port):
    for svc in stats.get("services", []):
        if svc.get("proto") == proto and svc.get("vip") == vip and int(svc.get("port", -1)) == int(port):
            return svc
    sys.exit(f"xvs-stats: no service {proto} {vip}:{port} in the stats file")


def table(stats, proto, vip, port):
    svc = service(stats, proto, vip, port)
    print(f"  {proto} {vip}:{port}  scheduler {svc.get('scheduler', '?')}  connections {svc.get('conns', 0)}")
    print(f"  {'real server':<22} {'weight':>6} {'conns':>7} {'active':>7} {'inactive':>8} {'pkts in':>9} {'pkts out':>9}")
    for rs in svc.get("real_servers", []):
        print(
            f"  {rs['address'] + ':' + str(rs.get('port', port)):<22} {rs.get('weight', 0):>6} {rs.get('conns', 0):>7}"
            f" {rs.get('active_conns', 0):>7} {rs.get('inactive_conns', 0):>8}"
            f" {rs.get('packets_in', 0):>9} {rs.get('packets_out', 0):>9}"
        )
    drops = stats.get("drops", {}) or {}
    dropped = ", ".join(f"{k} {v}" for k, v in sorted(drops.items()) if v) or "none"
    print(
        f"  director: frames {stats.get('frames', 0)}, transmitted {stats.get('transmitted', 0)},"
        f" passed to kernel {stats.get('passed', 0)}, frag-needed sent {stats.get('too_big_sent', 0)}, drops: {dropped}"
    )


def main(argv):
    if len(argv) < 3:
        sys.exit(__doc__)
    cmd, path = argv[1], argv[2]
    stats = load(path)
    if cmd == "table":
        proto, vip, port = (argv[3:6] if len(argv) >= 6 else ("tcp", "203.0.113.10", "80"))
        table(stats, proto, vip, port)
    elif cmd == "conns" and len(argv) == 6:
        for rs in service(stats, argv[3], argv[4], argv[5]).get("real_servers", []):
            print(rs["address"], rs.get("conns", 0))
    elif cmd == "traffic" and len(argv) == 6:
        svc = service(stats, argv[3], argv[4], argv[5])
        keys = ("conns", "packets_in", "packets_out", "bytes_in", "bytes_out")
        print(" ".join(str(svc.get(k, 0)) for k in keys))
    elif cmd == "servers" and len(argv) == 6:
        keys = ("conns", "packets_in", "packets_out", "bytes_in", "bytes_out")
        for rs in service(stats, argv[3], argv[4], argv[5]).get("real_servers", []):
            print(rs["address"], rs.get("method", "?"), " ".join(str(rs.get(k, 0)) for k in keys))
    elif cmd == "get" and len(argv) == 4:
        print(stats.get(argv[3], 0))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
