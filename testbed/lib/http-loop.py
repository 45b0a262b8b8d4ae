#!/usr/bin/env python3
"""A bounded loop of short HTTP requests (one TCP connection each), for
the end-to-end drills: it runs until STOP_FILE appears, or for SECONDS, or
MAX requests, whichever comes first, and writes a JSON summary: total
requests, failures (with the first few reasons), and how many each real
server answered (the testbed's pages say "rsK").

  http-loop.py URL --seconds 60 --max 20000 --stop-file F --out summary.json
"""
import argparse
import http.client
import json
import os
import time
import urllib.parse


def main():
    p = argparse.ArgumentParser()
    p.add_argument("url")
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--max", type=int, default=20000)
    p.add_argument("--stop-file")
    p.add_argument("--out", required=True)
    p.add_argument("--pause", type=float, default=0.005, help="seconds between requests")
    a = p.parse_args()
    u = urllib.parse.urlsplit(a.url)
    host, port = u.hostname, u.port or 80
    deadline = time.monotonic() + a.seconds
    total = failed = 0
    servers = {}
    errors = []
    while total < a.max and time.monotonic() < deadline:
        if a.stop_file and os.path.exists(a.stop_file):
            break
        total += 1
        try:
            c = http.client.HTTPConnection(host, port, timeout=5)
            c.request("GET", u.path or "/")
            r = c.getresponse()
            body = r.read().decode(errors="replace").strip()
            c.close()
            if r.status != 200:
                raise RuntimeError("status %d" % r.status)
            servers[body] = servers.get(body, 0) + 1
        except Exception as e:  # every failure counts, whatever its kind
            failed += 1
            if len(errors) < 10:
                errors.append("%.3f %s" % (time.monotonic(), e))
        time.sleep(a.pause)
    with open(a.out, "w") as f:
        json.dump({"total": total, "failed": failed, "servers": servers, "errors": errors}, f)


if __name__ == "__main__":
    main()
