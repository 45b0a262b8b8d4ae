#!/usr/bin/env python3
"""Compares two directors' connection tables, as `xvsadm -L -c -n` lists
them, for the sync drills (e2e/sync-bulk.sh): the master's and the
backup's, each listed once, the master first.

  conn-compare.py MASTER_LISTING BACKUP_LISTING [--margin S] [--json F]

Prints one line per real server: its entries on each side, by protocol and
state (the issue's measure: counts per real server), then what differs.

Exactness. The two listings are taken a few seconds apart, and an entry
may expire in between: on the master, or on the backup a little earlier or
later (the backup's timer is the master's remaining time when it was last
sent). So an entry that either listing gives less than --margin seconds
(default 15: more than the time between the two listings) is "expiring":
it is left out on both sides, and counted. Every other entry must be on
both sides with the same real server and the same state: none missing on
the backup, none on the backup only. The long-timeout entries (UDP's
300 s, TCP ESTABLISHED's 900 s, and TIME_WAIT's 120 s ones made in the
last minute) are thus compared with a tolerance of 0: the entries
themselves, and so their counts per real server, must be equal.

Exits 0 when nothing differs, 1 otherwise (2 on a listing it cannot read).
"""
import argparse
import collections
import ipaddress
import json
import sys


def parse(path):
    """{(proto, client, virtual): (server, state, expire_s)} of one listing."""
    entries = {}
    with open(path) as f:
        for n, line in enumerate(f, 1):
            words = line.split()
            if not words or line.startswith("IPVS connection entries") or words[0] == "pro":
                continue
            if len(words) != 6 or ":" not in words[1]:
                print(f"conn-compare: {path}:{n}: not an `xvsadm -L -c -n` line: {line.rstrip()}", file=sys.stderr)
                sys.exit(2)
            proto, expire, state, client, virtual, dest = words
            minutes, seconds = expire.split(":")
            server = dest.rsplit(":", 1)[0].strip("[]")
            entries[(proto, client, virtual)] = (server, state, int(minutes) * 60 + int(seconds))
    return entries


def per_server(entries):
    """{server: Counter("UDP"/"TCP ESTABLISHED"…)} of a listing."""
    out = collections.defaultdict(collections.Counter)
    for (proto, _c, _v), (server, state, _e) in entries.items():
        out[server][proto if proto == "UDP" else f"{proto} {state}"] += 1
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("master")
    p.add_argument("backup")
    p.add_argument("--margin", type=int, default=15)
    p.add_argument("--json")
    a = p.parse_args()
    master, backup = parse(a.master), parse(a.backup)

    # An entry either side gives less than the margin is left out on both.
    def short(entries, key):
        return key in entries and entries[key][2] < a.margin

    kept_master = {k: v for k, v in master.items() if not short(master, k) and not short(backup, k)}
    kept_backup = {k: v for k, v in backup.items() if not short(backup, k) and not short(master, k)}
    expiring = {"master": len(master) - len(kept_master), "backup": len(backup) - len(kept_backup)}
    missing = [k for k in kept_master if k not in backup]
    extra = [k for k in kept_backup if k not in master]
    moved, state_differs = [], []
    for key, (server, state, _e) in kept_master.items():
        theirs = kept_backup.get(key)
        if theirs is None:
            continue
        if theirs[0] != server:
            moved.append((key, server, theirs[0]))
        elif theirs[1] != state:
            state_differs.append((key, state, theirs[1]))

    # The per-server counts of the compared entries (the measure):
    # equal when nothing above differs.
    ms, bs = per_server(kept_master), per_server(kept_backup)
    servers = sorted(set(ms) | set(bs), key=lambda s: (ipaddress.ip_address(s).version, ipaddress.ip_address(s)))
    counts_equal = True
    for server in servers:
        m, b = ms.get(server, collections.Counter()), bs.get(server, collections.Counter())
        kinds = sorted(set(m) | set(b))
        detail = ", ".join(f"{k} {m[k]}/{b[k]}" for k in kinds)
        same = m == b
        counts_equal &= same
        print(f"  {server}: master {sum(m.values())}, backup {sum(b.values())} ({detail}){'' if same else '  DIFFER'}")
    print(
        f"  compared {len(master) - expiring['master']} of the master's {len(master)} entries "
        f"and {len(backup) - expiring['backup']} of the backup's {len(backup)}; "
        f"left out as expiring (< {a.margin} s left): master {expiring['master']}, backup {expiring['backup']}"
    )
    for what, items in (("missing on the backup", missing), ("on the backup only", extra)):
        if items:
            print(f"  {len(items)} {what}, e.g. " + "; ".join(" ".join(k) for k in items[:3]))
    if moved:
        print(f"  {len(moved)} on another real server on the backup, e.g. "
              + "; ".join(f"{' '.join(k)}: {m} vs {b}" for k, m, b in moved[:3]))
    if state_differs:
        print(f"  {len(state_differs)} in another state on the backup, e.g. "
              + "; ".join(f"{' '.join(k)}: {m} vs {b}" for k, m, b in state_differs[:3]))
    if a.json:
        with open(a.json, "w") as f:
            json.dump({
                "master": len(master), "backup": len(backup), "expiring": expiring,
                "missing": len(missing), "extra": len(extra), "moved": len(moved),
                "state_differs": len(state_differs),
                "per_server": {s: {"master": sum(ms.get(s, {}).values()), "backup": sum(bs.get(s, {}).values())}
                               for s in servers},
            }, f)
    ok = counts_equal and not (missing or extra or moved or state_differs)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
