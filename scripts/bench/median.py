#!/usr/bin/env python3
"""Medians per label of the JSON lines the bench scripts record.
Usage: median.py results.jsonl [LABEL_PREFIX...]"""
import json
import statistics
import sys
from collections import defaultdict

rows = defaultdict(list)
with open(sys.argv[1]) as f:
    for line in f:
        r = json.loads(line)
        if len(sys.argv) > 2 and not any(r["label"].startswith(p) for p in sys.argv[2:]):
            continue
        rows[r["label"]].append(r)


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(v, unit=""):
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.1f}{unit}" if v < 100 else f"{v:,.0f}{unit}"
    return f"{v:,}{unit}"


for label, rs in rows.items():
    reps = [r["report"] for r in rs]
    n = len(reps)
    if "deliveries_per_sec" in reps[0]:
        srv = [r.get("server") or {} for r in reps]
        print(
            f"{label:24} n={n} deliveries/s {fmt(med([r['deliveries_per_sec'] for r in reps]))}"
            f" lost {sum(r['lost'] for r in reps)} dup {sum(r['duplicates'] for r in reps)}"
            f" p50 {fmt(med([r['latency']['p50_us'] / 1000 for r in reps]), 'ms')}"
            f" p99 {fmt(med([r['latency']['p99_us'] / 1000 for r in reps]), 'ms')}"
            f" max {fmt(med([r['latency']['max_us'] / 1000 for r in reps]), 'ms')}"
            f" cpu/deliv {fmt(med([s.get('cpu_us_per_delivery') for s in srv]), 'us')}"
            f" rss conn {fmt(med([s.get('rss_connected_kib', 0) / 1024 for s in srv]), 'MiB')}"
            f" peak {fmt(med([s.get('rss_peak_kib', 0) / 1024 for s in srv]), 'MiB')}"
            f" (each: {', '.join(fmt(r['deliveries_per_sec']) for r in reps)})"
        )
    elif "peak_in_flight" in reps[0]:
        for r in reps:
            s = r.get("server") or {}
            print(
                f"{label:24} {r['protocol']} ok {r['ok']}/{r['expected']} late {r['late']}"
                f" errors {r['errors']} peak in flight {r['peak_in_flight']}"
                f" p50 {r['latency']['p50_us'] / 1e6:.3f}s p99 {r['latency']['p99_us'] / 1e6:.3f}s"
                f" max {r['latency']['max_us'] / 1e6:.3f}s"
                f" rss peak {s.get('rss_peak_kib', 0) / 1024:.1f}MiB"
                f" B/req {s.get('bytes_per_in_flight', 0):,.0f}"
            )
    else:
        vals = [r.get("value") for r in reps]
        print(f"{label:24} n={n} median {fmt(med(vals))} (each: {', '.join(fmt(v) for v in vals)})")
