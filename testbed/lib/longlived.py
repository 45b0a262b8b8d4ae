#!/usr/bin/env python3
"""Long-lived HTTP/1.1 keep-alive sessions to a VIP, for the sync drills
(e2e/sync.sh): each session is ONE TCP connection that sends a request
every --every seconds (100 ms) for --seconds, and is lost at the first
thing a takeover without the connection's state would show:

  reset, refused     the connection was reset (or never opened)
  closed             the peer closed it (a reconnect is never made: a
                     session is its connection)
  timeout            a response not complete within --timeout
  status N           a response other than 200
  bad body           a body that is not the testbed's page ("rsK\\n",
                     Content-Length bytes, naming the server its
                     X-Real-Server header names)
  moved rsA -> rsB   a page from another real server than the session's
                     first: its packets were scheduled anew (DR, TUN), so
                     the connection the client thinks it has is gone

Two ways to open them:

  longlived.py URL --sessions 50 --seconds 12 --out F [--ready-file R] [--stop-file S]
      N sessions opened at once; R is written once every one has had
      its first response (the drill kills the master after that): a
      JSON list of the sessions that have one, {session, port, server}
      each (port: the client's).

  longlived.py URL --burst 20 --at EPOCH --seconds 6 --out F
  longlived.py URL --burst 20 --on-signal --seconds 6 --out F
      K sessions opened one after the other over the --window (100 ms)
      that ends at EPOCH (seconds since the epoch, as `date +%s.%N`), or
      that starts when SIGUSR1 arrives (--on-signal; R is written when it
      is ready for the signal): the connections opened just before a
      kill, some still half-open when it comes. Each runs for --seconds
      from its opening.

--source-port P has session i connect from the client's port P + i (a
drill can then single out some sessions' packets, in nftables rules).
Every session ends by --seconds (at most 600), or when the stop file
appears, and is then closed by us. The summary (JSON, --out):

  sessions    how many were opened (or tried)
  completed   how many ran to their end with every response right
  lost        how many did not; reasons: {reason: count}; lost_sessions:
              the first 20 lost, each {session, server, reason, at}
              (at: seconds since the epoch when it was lost)
  requests    responses received right, over every session
  servers     {rsK: sessions whose first page it served}
  max_wait    the longest a right response took (seconds): the stall a
              takeover caused the sessions that survived it
  opened      per session: its client port, seconds since the epoch
              when its connect began (at) and when it returned
              (established: null if never), and why it was lost (null)
"""
import argparse
import json
import os
import re
import signal
import socket
import threading
import time
import urllib.parse

PAGE = re.compile(rb"^(rs[0-9]+)\n$")
MAX_SECONDS = 600.0


class Lost(Exception):
    """The session's connection is gone (or was never right); the message
    is the reason."""


def read_response(sock, buf, deadline):
    """One HTTP/1.1 response from sock (buf: bytes already read past the
    previous one): returns (status, headers, body, rest)."""
    while b"\r\n\r\n" not in buf:
        buf += recv(sock, deadline)
    head, _, buf = buf.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise Lost("bad status line %r" % lines[0][:60])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    length = headers.get(b"content-length")
    if length is None or not length.isdigit():
        raise Lost("no Content-Length")
    length = int(length)
    while len(buf) < length:
        buf += recv(sock, deadline)
    return int(parts[1]), headers, buf[:length], buf[length:]


def recv(sock, deadline):
    left = deadline - time.monotonic()
    if left <= 0:
        raise Lost("timeout")
    sock.settimeout(left)
    try:
        data = sock.recv(65536)
    except socket.timeout:
        raise Lost("timeout") from None
    except ConnectionResetError:
        raise Lost("reset") from None
    except OSError as e:
        raise Lost(os.strerror(e.errno) if e.errno else str(e)) from None
    if not data:
        raise Lost("closed")
    return data


class Session:
    def __init__(self, index, opts, host, port, request):
        self.index = index
        self.opts = opts
        self.host, self.port, self.request = host, port, request
        self.server = None
        self.requests = 0
        self.max_wait = 0.0
        self.lost = None
        self.lost_at = None
        self.opened = None
        self.established = None
        self.client_port = None
        self.first = threading.Event()
        self.done = False

    def run(self, stop):
        try:
            self.opened = time.time()
            try:
                source = ("", self.opts.source_port + self.index) if self.opts.source_port else None
                sock = socket.create_connection((self.host, self.port), self.opts.timeout, source)
            except ConnectionRefusedError:
                raise Lost("refused") from None
            except ConnectionResetError:
                raise Lost("reset") from None
            except socket.timeout:
                raise Lost("timeout (connect)") from None
            except OSError as e:
                raise Lost("connect: %s" % (os.strerror(e.errno) if e.errno else e)) from None
            self.established = time.time()
            self.client_port = sock.getsockname()[1]
            try:
                self.talk(sock, stop)
            finally:
                sock.close()
        except Lost as e:
            self.lost, self.lost_at = str(e), time.time()
        finally:
            self.done = True
            self.first.set()

    def talk(self, sock, stop):
        end = time.monotonic() + self.opts.seconds
        buf = b""
        next_at = time.monotonic()
        while True:
            start = time.monotonic()
            try:
                sock.sendall(self.request)
            except ConnectionResetError:
                raise Lost("reset") from None
            except OSError as e:
                raise Lost(os.strerror(e.errno) if e.errno else str(e)) from None
            status, headers, body, buf = read_response(sock, buf, start + self.opts.timeout)
            if status != 200:
                raise Lost("status %d" % status)
            m = PAGE.match(body)
            if not m or headers.get(b"x-real-server") != m.group(1):
                raise Lost("bad body %r" % body[:40])
            page = m.group(1).decode()
            if self.server is None:
                self.server = page
                self.first.set()
            elif page != self.server:
                raise Lost("moved %s -> %s" % (self.server, page))
            if headers.get(b"connection", b"").lower() == b"close":
                raise Lost("closed")
            self.requests += 1
            self.max_wait = max(self.max_wait, time.monotonic() - start)
            # After a stall, the next request goes at once, then the pace
            # resumes (no burst to catch up).
            now = time.monotonic()
            next_at = max(next_at + self.opts.every, now)
            if now >= end or stop.is_set():
                return
            stop.wait(max(0.0, min(next_at, end) - now))
            if stop.is_set():
                return


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("url")
    p.add_argument("--sessions", type=int, default=50, help="sessions opened at once (default 50)")
    p.add_argument("--burst", type=int, help="K sessions opened over --window before --at, or after SIGUSR1")
    p.add_argument("--at", type=float, help="with --burst: the instant (seconds since the epoch) the window ends")
    p.add_argument("--on-signal", action="store_true", help="with --burst: open them when SIGUSR1 arrives")
    p.add_argument("--source-port", type=int, default=0, help="session i connects from this port + i (default: any)")
    p.add_argument("--window", type=float, default=0.1, help="seconds the burst is spread over (default 0.1)")
    p.add_argument("--seconds", type=float, default=10.0, help="each session's life (at most 600)")
    p.add_argument("--every", type=float, default=0.1, help="seconds between a session's requests (default 0.1)")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds a response (or the connect) may take")
    p.add_argument("--ready-file", help="written once every session has its first page (--on-signal: once it waits)")
    p.add_argument("--stop-file", help="every session ends when this file appears")
    p.add_argument("--out", required=True)
    a = p.parse_args()
    if not 0 < a.seconds <= MAX_SECONDS:
        p.error("--seconds: from 0 to %d" % MAX_SECONDS)
    if a.burst is not None and (a.at is None) == (not a.on_signal):
        p.error("--burst takes one of --at EPOCH and --on-signal")
    if a.burst is None and (a.at is not None or a.on_signal):
        p.error("--at and --on-signal go with --burst")
    count = a.burst if a.burst is not None else a.sessions
    if not 1 <= count <= 1000:
        p.error("from 1 to 1000 sessions")

    u = urllib.parse.urlsplit(a.url)
    host, port = u.hostname, u.port or 80
    hostport = "[%s]" % host if ":" in host else host
    request = ("GET %s HTTP/1.1\r\nHost: %s\r\nConnection: keep-alive\r\n\r\n" % (u.path or "/", hostport)).encode()
    sessions = [Session(i, a, host, port, request) for i in range(count)]
    stop = threading.Event()
    threads = []

    def watch_stop_file():
        while not stop.is_set():
            if a.stop_file and os.path.exists(a.stop_file):
                stop.set()
            stop.wait(0.05)

    def start(s):
        t = threading.Thread(target=s.run, args=(stop,), daemon=True)
        t.start()
        threads.append(t)

    if a.stop_file:
        threading.Thread(target=watch_stop_file, daemon=True).start()
    if a.burst is None:
        for s in sessions:
            start(s)
        if a.ready_file:
            for s in sessions:
                s.first.wait(a.timeout + 1)
            ready = [{"session": s.index, "port": s.client_port, "server": s.server} for s in sessions if s.server]
            write(a.ready_file, json.dumps(ready) + "\n")
    else:
        go = threading.Event()
        if a.on_signal:
            signal.signal(signal.SIGUSR1, lambda *_: go.set())
            if a.ready_file:
                write(a.ready_file, "waiting for SIGUSR1\n")
            if not go.wait(MAX_SECONDS):
                raise SystemExit("longlived.py: no SIGUSR1 within %d s" % MAX_SECONDS)
            first = time.time()
        else:
            first = a.at - a.window
        for i, s in enumerate(sessions):
            time.sleep(max(0.0, first + i * a.window / count - time.time()))
            start(s)
    for t in threads:
        t.join(a.seconds + 2 * a.timeout + 5)

    for s in sessions:
        if not s.done and s.lost is None:
            s.lost = "still running"  # past every bound: a hang
    lost = [s for s in sessions if s.lost is not None or s.server is None]
    reasons = {}
    for s in lost:
        r = s.lost or "no page"
        kind = r if not r.startswith(("moved", "bad", "status", "connect")) else r.split(" ")[0]
        reasons[kind] = reasons.get(kind, 0) + 1
    servers = {}
    for s in sessions:
        if s.server:
            servers[s.server] = servers.get(s.server, 0) + 1
    summary = {
        "sessions": count,
        "completed": count - len(lost),
        "lost": len(lost),
        "reasons": reasons,
        "lost_sessions": [
            {"session": s.index, "server": s.server, "reason": s.lost or "no page", "at": s.lost_at} for s in lost[:20]
        ],
        "requests": sum(s.requests for s in sessions),
        "servers": servers,
        "max_wait": round(max((s.max_wait for s in sessions), default=0.0), 3),
        "opened": [
            {"session": s.index, "port": s.client_port, "at": s.opened, "established": s.established, "lost": s.lost}
            for s in sessions
        ],
    }
    write(a.out, json.dumps(summary) + "\n")


def write(path, text):
    with open(path, "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
