#!/usr/bin/env python3
"""The benchmark's arithmetic and its table (testbed/bench.sh).

  bench-report.py wrk FILE            one wrk output -> JSON: rps, errors,
                                      non_2xx, p50_us, p99_us (with --latency)
  bench-report.py cpu                 a snapshot of /proc/stat as JSON: busy and
                                      softirq ticks, all CPUs and per CPU
  bench-report.py ticks PID           utime+stime of PID (all its threads), ticks
  bench-report.py record RESULTS KEY=VALUE...
                                      appends one measurement (two for a latency
                                      run): test path rep, and wrk=FILE (HTTP) or
                                      value= (pps); window_s, lb_ticks (the
                                      balancer process's CPU ticks over the run),
                                      cpu_before/cpu_after (snapshot files: CPU 1's
                                      busy time becomes the balancer's), units,
                                      offered, note
  bench-report.py table RESULTS META  the markdown section: the table, the
                                      targets (PASS/MISS) and notes

RESULTS is JSON lines, one per measurement:
  {"test", "path", "rep", "value", "unit", "lb_cpu_s", "lb_cpu_what",
   "window_s", "busy_s", "units", "errors", "offered", "note"}
META is a JSON object: date, machine, commit, mode, reps, durations, generator;
sync (the file director/benches/sync.rs wrote with XVS_SYNC_BENCH_JSON, or
""), sync_cmd, sync_only (no cluster measurements: the sync part alone).
"""
import json
import os
import re
import statistics
import time
import sys

HZ = os.sysconf("SC_CLK_TCK")

# Tests in the order of the table, their unit, whether more is better, and
# the path their ratio is taken against.
TESTS = [
    ("http-short", "HTTP short connections", "req/s", True, "direct"),
    ("http-keepalive", "HTTP keep-alive", "req/s", True, "direct"),
    ("latency-p50", "latency p50, 1 connection", "µs", False, "direct"),
    ("latency-p99", "latency p99, 1 connection", "µs", False, "direct"),
    ("udp-pps", "64-byte UDP delivered, best offered rate", "Mpps", True, "xdpfwd"),
    ("udp-overload", "64-byte UDP delivered, generator flat out", "Mpps", True, "xdpfwd"),
]
PATHS = [
    ("direct", "direct to rs1 (kernel routing)"),
    ("xvs-nat", "xvs NAT (AF_XDP)"),
    ("xvs-dr", "xvs DR (AF_XDP)"),
    ("nft", "nftables DNAT"),
    ("haproxy", "HAProxy mode tcp"),
    ("kernel-fwd", "kernel forwarding (routing only)"),
    ("xdpfwd", "xvs-xdpfwd (AF_XDP floor)"),
]
# A repetition below this share of its scenario's median is a collapse.
COLLAPSE = 0.5


def parse_wrk(text):
    out = {"rps": None, "errors": 0, "non_2xx": 0, "p50_us": None, "p99_us": None, "requests": None}
    m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if m:
        out["rps"] = float(m.group(1))
    m = re.search(r"(\d+) requests in", text)
    if m:
        out["requests"] = int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        out["errors"] = sum(int(x) for x in m.groups())
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if m:
        out["non_2xx"] = int(m.group(1))
    scale = {"us": 1.0, "ms": 1e3, "s": 1e6}
    for pct, key in (("50", "p50_us"), ("99", "p99_us")):
        m = re.search(r"^\s+" + pct + r"(?:\.000)?%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
        if m:
            out[key] = float(m.group(1)) * scale[m.group(2)]
    return out


def cpu_snapshot():
    snap = {"time": time.time()}
    with open("/proc/stat") as f:
        for line in f:
            if not line.startswith("cpu"):
                break
            name, *vals = line.split()
            v = [int(x) for x in vals]
            # user nice system idle iowait irq softirq steal ...
            snap[name] = {"busy": sum(v[:8]) - v[3] - v[4], "softirq": v[6], "total": sum(v[:8])}
    return snap


def pid_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    fields = stat[stat.rindex(")") + 2:].split()
    # utime and stime are fields 14 and 15 of stat(5); fields[0] is field 3.
    return int(fields[11]) + int(fields[12])


def record(results_path, args):
    a = dict(x.split("=", 1) for x in args)
    base = {"test": a["test"], "path": a["path"], "rep": int(a["rep"]), "note": a.get("note") or None}
    window = float(a["window_s"]) if a.get("window_s") else None
    base["window_s"] = window
    lb_cpu = None
    what = ""
    if a.get("lb_ticks"):
        lb_cpu = int(a["lb_ticks"]) / HZ
        what = "(process)"
    elif a.get("cpu_before") and a.get("cpu_after"):
        with open(a["cpu_before"]) as f:
            before = json.load(f)
        with open(a["cpu_after"]) as f:
            after = json.load(f)
        cpu = a.get("cpu", "cpu1")
        lb_cpu = (after[cpu]["busy"] - before[cpu]["busy"]) / HZ
        what = f"({cpu})"
        # The share is over the snapshots' own interval (a little longer
        # than the generator's run).
        base["cpu_window_s"] = after["time"] - before["time"]
    base["lb_cpu_s"] = lb_cpu
    base["lb_cpu_what"] = what
    recs = []
    if a.get("wrk"):
        w = {}
        if os.path.exists(a["wrk"]):
            with open(a["wrk"]) as f:
                w = parse_wrk(f.read())
        errors = (w.get("errors") or 0) + (w.get("non_2xx") or 0)
        if a["test"] == "latency":
            for key, test in (("p50_us", "latency-p50"), ("p99_us", "latency-p99")):
                r = dict(base, test=test, value=w.get(key), unit="µs", errors=errors, units=None)
                r["lb_cpu_s"] = None
                recs.append(r)
        else:
            recs.append(dict(base, value=w.get("rps"), unit="req/s", errors=errors, units=w.get("requests")))
    else:
        value = float(a["value"]) if a.get("value") not in (None, "") else None
        recs.append(dict(
            base,
            value=value,
            unit=a.get("unit", "Mpps"),
            errors=0,
            units=float(a["units"]) if a.get("units") else None,
            offered=float(a["offered"]) if a.get("offered") else None,
        ))
    with open(results_path, "a") as f:
        for r in recs:
            f.write(json.dumps(r) + "\n")
    for r in recs:
        print(f"    {r['test']} {r['path']} rep {r['rep']}: {fmt(r['value'], r['unit'])} {r['unit']}"
              + (f", balancer CPU {100 * r['lb_cpu_s'] / (r.get('cpu_window_s') or r['window_s']):.0f}%"
                 if r.get('lb_cpu_s') is not None and r.get('window_s') else "")
              + (f", {r['errors']} errors" if r.get("errors") else "")
              + (f", offered {fmt(r['offered'], 'Mpps')} Mpps" if r.get("offered") else ""))


def fmt(value, unit):
    if value is None:
        return "–"
    if unit == "Mpps":
        return f"{value:.3f}"
    if unit == "req/s":
        return f"{value / 1000:.1f}k"
    return f"{value:.0f}"


def sync_part(meta):
    """The state sync benchmark's lines (a table) and its targets."""
    cmd = meta.get("sync_cmd", "cargo bench -p xvs-director --bench sync")
    path = meta.get("sync")
    if not path:
        return [f"State sync (`{cmd}`): not measured (the benchmark failed)."], [
            "- sync: backup absorbs ≥ the master's SYN-path rate: not measured — MISS",
            "- sync: sync adds < 10 % to the master's SYN path: not measured — MISS"]
    with open(path) as f:
        s = json.load(f)

    def row(what, ns, rate=True):
        per_s = f"{1e3 / ns:.2f} M" if rate else "–"
        return f"| {what} | {ns:.0f} ns | {per_s} |"

    lines = [
        f"State sync (`{cmd}`, director/benches/sync.rs; one thread; medians of "
        f"{s['phases']} interleaved phases, per new connection of the master: the SYN path in a "
        "table of 1M connections; the master's work from its feed to signed messages of 1472 "
        f"bytes, {s['events_per_conn']:.2f} events per connection (its creation, its removal); "
        "a backup absorbing a full transfer of 100,000 connections, and the master's live "
        "stream, each into a fresh director):",
        "",
        "| measurement | per connection | connections/s |",
        "|---|---|---|",
        row("SYN path, sync off", s["syn_off_ns"]),
        row("SYN path, sync on", s["syn_on_ns"]),
        row("master's sync work", s["master_work_ns"], rate=False),
        row("backup absorbs a transfer", s["absorb_transfer_ns"]),
        row("backup absorbs the live stream", s["absorb_live_ns"]),
    ]

    def verdict(ok):
        return "PASS" if ok else "MISS"

    targets = [
        f"- sync: backup absorbs a transfer ≥ the master's SYN-path rate: {s['keeps_up']:.2f} "
        f"(need ≥ 1.00) — **{verdict(s['keeps_up'] >= 1)}**",
        f"- sync: backup absorbs the live stream ≥ the master's SYN-path rate: {s['keeps_up_live']:.2f} "
        f"(need ≥ 1.00) — **{verdict(s['keeps_up_live'] >= 1)}**",
        f"- sync: (SYN path sync on − off + master's sync work) ÷ SYN path sync off: "
        f"{100 * s['master_cost']:.1f} % (need < 10 %) — **{verdict(s['master_cost'] < 0.1)}**",
    ]
    return lines, targets


def table(results_path, meta_path):
    with open(meta_path) as f:
        meta = json.load(f)
    rows = []
    with open(results_path) as f:
        for line in f:
            line = line.strip()
            if line:
                rows.append(json.loads(line))

    def runs(test, path):
        return [r for r in rows if r["test"] == test and r["path"] == path]

    medians = {}
    for test, _, _, _, _ in TESTS:
        for path, _ in PATHS:
            vals = [r["value"] for r in runs(test, path) if r.get("value") is not None]
            if vals:
                medians[(test, path)] = statistics.median(vals)
    out = []
    out.append(f"## {meta['date']} — {meta['mode']} run, commit {meta['commit']}")
    out.append("")
    out.append(f"Machine: {meta['machine']}; {meta.get('load', 'load not recorded')} "
               "(the machine is shared with other work: the load before is theirs).")
    out.append("")
    sync_lines, sync_targets = sync_part(meta)
    if meta.get("sync_only"):
        out.extend(sync_lines)
        out.append("")
        out.append("Targets (medians of this run):")
        out.append("")
        out.extend(sync_targets)
        out.append("")
        return "\n".join(out)
    out.append(
        f"HTTP: {meta['reps']} repetitions per path, {meta['http_s']} s per wrk run; small packets: "
        f"{meta.get('pps_reps', meta['reps'])} repetitions, offered rates {meta.get('rates', '?')}/s, "
        f"{meta.get('step_s', '?')} s each, until less than 80% is delivered (best kept), then "
        f"{meta['pps_s']} s flat out. Paths interleaved (each round runs every path once). "
        f"{meta['generator']}"
    )
    out.append("")
    out.append("| test | path | median | min | max | unit | ratio | LB CPU | CPU per unit | flags |")
    out.append("|---|---|---|---|---|---|---|---|---|---|")
    for test, title, unit, more_is_better, ref in TESTS:
        for path, path_title in PATHS:
            rs = runs(test, path)
            if not rs:
                continue
            flags = []
            ok = [r for r in rs if r.get("value") is not None]
            failed = len(rs) - len(ok)
            if failed:
                flags.append(f"FAILED {failed}/{len(rs)}")
            vals = [r["value"] for r in ok]
            med = medians.get((test, path))
            if med and more_is_better:
                for r in ok:
                    if r["value"] < COLLAPSE * med:
                        flags.append(f"COLLAPSE rep {r['rep']}: {fmt(r['value'], unit)}")
            if med and not more_is_better:
                for r in ok:
                    if r["value"] > med / COLLAPSE:
                        flags.append(f"OUTLIER rep {r['rep']}: {fmt(r['value'], unit)}")
            errors = sum(r.get("errors") or 0 for r in ok)
            if errors:
                flags.append(f"{errors} socket errors/non-2xx")
            if test == "udp-overload":
                gen_bound = [r for r in ok if r.get("offered") and r["value"] >= 0.9 * r["offered"]]
                if gen_bound:
                    flags.append("generator-bound (≥ 90% of offered)")
            notes = sorted({r["note"] for r in ok if r.get("note")})
            flags.extend(notes)
            # CPU: the balancer's own (a process) or its core (pps).
            cpu = [r for r in ok if r.get("lb_cpu_s") is not None and r.get("window_s")]
            lb_cpu = "–"
            per_unit = "–"
            if cpu:
                share = statistics.median(r["lb_cpu_s"] / (r.get("cpu_window_s") or r["window_s"]) for r in cpu)
                lb_cpu = f"{100 * share:.0f}% {cpu[0].get('lb_cpu_what', '')}".strip()
                per = [r["lb_cpu_s"] / r["units"] for r in cpu if r.get("units")]
                if per:
                    p = statistics.median(per)
                    per_unit = f"{p * 1e9:.0f} ns/pkt" if unit == "Mpps" else f"{p * 1e6:.1f} µs/req"
            rows_ref = medians.get((test, ref))
            ratio = "–"
            if med is not None and rows_ref:
                ratio = "1.00 (ref)" if path == ref else f"{med / rows_ref:.2f}"
            out.append(
                f"| {title} | {path_title} | {fmt(med, unit)} | {fmt(min(vals) if vals else None, unit)} "
                f"| {fmt(max(vals) if vals else None, unit)} | {unit} | {ratio} | {lb_cpu} | {per_unit} "
                f"| {'; '.join(flags)} |"
            )
    out.append("")
    out.extend(sync_lines)
    out.append("")
    out.append("Targets (medians of this run):")
    out.append("")

    def target(name, num, den, factor):
        a = medians.get(num)
        b = medians.get(den)
        if a is None or not b:
            out.append(f"- {name}: not measured (a scenario failed) — MISS")
            return
        ratio = a / b
        verdict = "PASS" if ratio >= factor else "MISS"
        out.append(f"- {name}: {ratio:.2f} (need ≥ {factor:.2f}) — **{verdict}**")

    target("xvs NAT pps ≥ 90% of xvs-xdpfwd (best offered rate)", ("udp-pps", "xvs-nat"), ("udp-pps", "xdpfwd"), 0.9)
    target("xvs NAT pps ≥ 90% of xvs-xdpfwd (flat out)", ("udp-overload", "xvs-nat"), ("udp-overload", "xdpfwd"), 0.9)
    target("HTTP short, xvs NAT ≥ nftables DNAT", ("http-short", "xvs-nat"), ("http-short", "nft"), 1.0)
    target("HTTP short, xvs NAT ≥ 1.5× HAProxy", ("http-short", "xvs-nat"), ("http-short", "haproxy"), 1.5)
    target("HTTP short, xvs DR ≥ nftables DNAT", ("http-short", "xvs-dr"), ("http-short", "nft"), 1.0)
    target("HTTP short, xvs DR ≥ 1.5× HAProxy", ("http-short", "xvs-dr"), ("http-short", "haproxy"), 1.5)
    out.extend(sync_targets)
    out.append("")
    out.append(
        "Columns: ratio = median / the reference path's median (HTTP and latency: direct; "
        "small packets: xvs-xdpfwd; for latency, lower is better). LB CPU: HTTP rows, the balancer "
        "process's utime+stime over the run as % of one core (nftables and kernel routing work in "
        "softirq, not attributable to a namespace: –); small-packet rows, CPU 1's busy time, the "
        "core the balancer (and everything downstream of it) is given. CPU per unit: that CPU time "
        "divided by requests or delivered packets. Flags: a repetition below half its median "
        "(COLLAPSE), wrk socket errors, a flat-out generator that offered barely more than was "
        "delivered, a sweep that never found the path's limit."
    )
    out.append("")
    return "\n".join(out)


def main():
    cmd = sys.argv[1] if len(sys.argv) > 1 else ""
    if cmd == "wrk":
        with open(sys.argv[2]) as f:
            print(json.dumps(parse_wrk(f.read())))
    elif cmd == "cpu":
        print(json.dumps(cpu_snapshot()))
    elif cmd == "ticks":
        print(pid_ticks(int(sys.argv[2])))
    elif cmd == "record":
        record(sys.argv[2], sys.argv[3:])
    elif cmd == "table":
        print(table(sys.argv[2], sys.argv[3]))
    elif cmd == "hz":
        print(HZ)
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
