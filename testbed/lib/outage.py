#!/usr/bin/env python3
"""Reads the per-request log of http-loop.py --log and says what an event
at time AT (seconds since the epoch: a kill, a stop, a start) cost the
client, as one line of key=value pairs:

  requests=N       requests in the log
  failed=N         of them failed (whenever they started)
  first_fail=S     seconds from AT to the start of the first failed request
                   that started at or after AT ("-": none failed)
  last_fail=S      the same for the last one
  served_after=S   seconds from AT to the end of the first request served
                   that started after the last failed one (at or after AT
                   if none failed): when the service came back for good,
                   not a request the old master answered in its last
                   moments ("-": none was served after the last failure)
  served_by=PAGE   the page that request got (rsK)

  outage.py LOG --at EPOCH
"""
import argparse


def main():
    p = argparse.ArgumentParser()
    p.add_argument("log")
    p.add_argument("--at", type=float, required=True)
    a = p.parse_args()
    rows = []
    with open(a.log) as f:
        for line in f:
            start, end, result, what = (line.rstrip("\n").split(" ", 3) + [""])[:4]
            rows.append((float(start), float(end), result == "ok", what))
    rows.sort()
    fails_after = [r for r in rows if r[0] >= a.at and not r[2]]
    since = fails_after[-1][0] if fails_after else a.at
    served = next((r for r in rows if r[0] >= since and r[2]), None)
    print(
        "requests=%d failed=%d first_fail=%s last_fail=%s served_after=%s served_by=%s"
        % (
            len(rows),
            sum(1 for r in rows if not r[2]),
            "%.3f" % (fails_after[0][0] - a.at) if fails_after else "-",
            "%.3f" % (fails_after[-1][0] - a.at) if fails_after else "-",
            "%.3f" % (served[1] - a.at) if served else "-",
            served[3] if served else "-",
        )
    )


if __name__ == "__main__":
    main()
