#!/usr/bin/env python3
"""One HTTP keep-alive connection, driven line by line on stdin, for the
end-to-end drills: prints the server that answered its first request
("rsK"), then for every "go N" line makes N more requests on the same
connection and prints "ok rsK" or "fail REASON" for each; "quit" ends it.
Bounded: it gives up after 120 s without a command.

  keepalive.py URL
"""
import http.client
import select
import sys
import urllib.parse


def get(c, path):
    c.request("GET", path)
    r = c.getresponse()
    body = r.read().decode(errors="replace").strip()
    if r.status != 200:
        raise RuntimeError("status %d" % r.status)
    return body


def main():
    u = urllib.parse.urlsplit(sys.argv[1])
    path = u.path or "/"
    c = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=5)
    try:
        print(get(c, path), flush=True)
    except Exception as e:
        print("fail %s" % e, flush=True)
        return
    while True:
        ready, _, _ = select.select([sys.stdin], [], [], 120)
        if not ready:
            return
        line = sys.stdin.readline()
        if not line or line.strip() == "quit":
            return
        words = line.split()
        n = int(words[1]) if len(words) > 1 else 1
        for _ in range(min(n, 100)):
            try:
                print("ok %s" % get(c, path), flush=True)
            except Exception as e:
                print("fail %s" % e, flush=True)


if __name__ == "__main__":
    main()
