#!/usr/bin/env python3
"""Edits the director config that testbed/cluster.sh writes (its layout
only: one [[services.real_servers]] block per server, keys one per line),
for the reload drills. Writes the result to stdout.

  edit-config.py FILE --weight 192.0.2.12=3      every service's server at that address
  edit-config.py FILE --remove 192.0.2.13        drop that server from every service
  edit-config.py FILE --scheduler nosuch         every service's scheduler (an invalid one too)
  edit-config.py FILE --ha preempt=false         a key of [ha] set (its value as TOML text:
                                                 'auth="none"'), added if missing;
  edit-config.py FILE --ha key_file=             removed with nothing after the '='
"""
import argparse
import re
import sys


def main():
    p = argparse.ArgumentParser()
    p.add_argument("file")
    p.add_argument("--weight", action="append", default=[])
    p.add_argument("--remove", action="append", default=[])
    p.add_argument("--scheduler")
    p.add_argument("--ha", action="append", default=[])
    a = p.parse_args()
    text = open(a.file).read()
    if a.ha:
        text = edit_ha(text, a.ha)
    head, *blocks = re.split(r"(?m)^(?=\[\[services(?:\.real_servers)?\]\])", text)
    out = [head]
    for b in blocks:
        m = re.search(r'(?m)^address = "([^"]+)"', b)
        if b.startswith("[[services.real_servers]]") and m:
            addr = m.group(1)
            if addr in a.remove:
                continue
            for w in a.weight:
                wa, wv = w.split("=")
                if wa == addr:
                    b = re.sub(r"(?m)^weight = \d+", "weight = %d" % int(wv), b)
        elif b.startswith("[[services]]") and a.scheduler:
            b = re.sub(r'(?m)^scheduler = "[^"]*"', 'scheduler = "%s"' % a.scheduler, b)
        out.append(b)
    sys.stdout.write("".join(out))


def edit_ha(text, settings):
    """The file with the [ha] table's keys set or removed (cluster.sh up
    --ha writes that table last, one key a line)."""
    m = re.search(r"(?m)^\[ha\]\n", text)
    if not m:
        sys.exit("edit-config.py: no [ha] table in the file")
    end = re.search(r"(?m)^\[", text[m.end():])
    stop = m.end() + end.start() if end else len(text)
    lines = text[m.end():stop].splitlines()
    for setting in settings:
        key, _, value = setting.partition("=")
        lines = [l for l in lines if not re.match(r"%s\s*=" % re.escape(key), l)]
        if value:
            lines.append("%s = %s" % (key, value))
    return text[: m.end()] + "".join(l + "\n" for l in lines) + text[stop:]


if __name__ == "__main__":
    main()
