#!/usr/bin/env python3
"""A bounded loop of short HTTP requests (one TCP connection each), for
the end-to-end drills: it runs until STOP_FILE appears, or for SECONDS, or
MAX requests, whichever comes first, and writes a JSON summary: total
requests, failures (with the first few reasons), and how many each real
server answered (the testbed's pages say "rsK").

  http-loop.py URL --seconds 60 --max 20000 --stop-file F --out summary.json

By default one request follows the other (--pause between them). With
--every S a request starts every S seconds whatever the others are doing,
each in a thread of its own, so that a request stuck on a dead director
does not hold the next ones back (the failover drills: a request started
after the takeover is served at once). --log F writes one line per request,
in the order they ended: its start and end (seconds since the epoch), ok
or fail, and the page or the error; lib/outage.py reads it.
"""
import argparse
import http.client
import json
import os
import threading
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
    p.add_argument("--every", type=float, help="start a request every this many seconds (paced, concurrent)")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds a request may take")
    p.add_argument("--log", help="one line per request: start end ok|fail page-or-error")
    a = p.parse_args()
    u = urllib.parse.urlsplit(a.url)
    host, port = u.hostname, u.port or 80
    deadline = time.monotonic() + a.seconds
    lock = threading.Lock()
    counts = {"total": 0, "failed": 0}
    servers = {}
    errors = []
    log = open(a.log, "w") if a.log else None

    def one():
        start = time.time()
        try:
            c = http.client.HTTPConnection(host, port, timeout=a.timeout)
            c.request("GET", u.path or "/")
            r = c.getresponse()
            body = r.read().decode(errors="replace").strip()
            c.close()
            if r.status != 200:
                raise RuntimeError("status %d" % r.status)
            ok, what = True, body
        except Exception as e:  # every failure counts, whatever its kind
            ok, what = False, str(e) or type(e).__name__
        end = time.time()
        with lock:
            if ok:
                servers[what] = servers.get(what, 0) + 1
            else:
                counts["failed"] += 1
                if len(errors) < 10:
                    errors.append("%.3f %s" % (time.monotonic(), what))
            if log:
                log.write("%.6f %.6f %s %s\n" % (start, end, "ok" if ok else "fail", " ".join(what.split())))
                log.flush()  # read while the loop runs

    threads = []
    next_start = time.monotonic()
    while counts["total"] < a.max and time.monotonic() < deadline:
        if a.stop_file and os.path.exists(a.stop_file):
            break
        counts["total"] += 1
        if a.every is None:
            one()
            time.sleep(a.pause)
            continue
        t = threading.Thread(target=one)
        t.start()
        threads.append(t)
        threads = [t for t in threads if t.is_alive()]
        next_start += a.every
        time.sleep(max(0.0, next_start - time.monotonic()))
    for t in threads:
        t.join()
    if log:
        log.close()
    with open(a.out, "w") as f:
        json.dump({"total": counts["total"], "failed": counts["failed"], "servers": servers, "errors": errors}, f)


if __name__ == "__main__":
    main()
