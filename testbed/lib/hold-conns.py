#!/usr/bin/env python3
"""Holds N HTTP keep-alive connections open for the sync drills
(e2e/sync-bulk.sh): long-lived TCP connections, ESTABLISHED in the
director's table, made while other load runs. Each connection makes a
request at once, then one every --every seconds (well inside nginx's 75 s
keep-alive timeout), until STOP_FILE appears or --seconds have passed;
then they are closed. Writes a JSON summary: connections opened, those
that failed (a request failed or a connection could not be made), and the
first few reasons.

  hold-conns.py URL --count N --every S --seconds T --stop-file F --out summary.json
"""
import argparse
import http.client
import json
import os
import time
import urllib.parse


def get(conn, path, port=None):
    """One request; with PORT, on the connection of that local port still
    (http.client would silently open a new one if the server closed it)."""
    conn.request("GET", path)
    r = conn.getresponse()
    r.read()
    if r.status != 200:
        raise RuntimeError("status %d" % r.status)
    if port is not None and (conn.sock is None or conn.sock.getsockname()[1] != port):
        raise RuntimeError("connection from port %d closed" % port)
    return conn.sock.getsockname()[1] if conn.sock else None


def main():
    p = argparse.ArgumentParser()
    p.add_argument("url")
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--every", type=float, default=1.0)
    p.add_argument("--seconds", type=float, required=True)
    p.add_argument("--stop-file", required=True)
    p.add_argument("--out", required=True)
    a = p.parse_args()
    u = urllib.parse.urlsplit(a.url)
    path = u.path or "/"
    deadline = time.monotonic() + a.seconds
    conns, failed, errors = {}, 0, []

    def failure(e):
        nonlocal failed
        failed += 1
        if len(errors) < 5:
            errors.append(str(e) or type(e).__name__)

    for _ in range(a.count):
        c = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=5)
        try:
            conns[c] = get(c, path)
        except Exception as e:  # every failure counts, whatever its kind
            failure(e)
    opened = len(conns)
    while time.monotonic() < deadline and not os.path.exists(a.stop_file):
        time.sleep(a.every)
        for c, port in list(conns.items()):
            try:
                get(c, path, port)
            except Exception as e:
                failure(e)
                del conns[c]
    for c in conns:
        c.close()
    with open(a.out, "w") as f:
        json.dump({"opened": opened, "failed": failed, "errors": errors}, f)


if __name__ == "__main__":
    main()
