#!/usr/bin/env python3
"""Summary of front_door.sh's JSON lines: medians and ratios per figure,
with the load (1-minute) before and after each run.
Usage: front_door_report.py front_door.jsonl"""
import json
import statistics
import sys
from collections import defaultdict

rows = defaultdict(list)
with open(sys.argv[1]) as f:
    for line in f:
        r = json.loads(line)
        rows[r["label"]].append(r)


def l1(s):
    return float(s.split(",")[0])


def loads(rs):
    xs = [l1(r["load_before"]) for r in rs] + [l1(r["load"]) for r in rs]
    quiet = "" if all(r.get("quiet", True) for r in rs) else " UNDER LOAD"
    oc = [r["others_cores"] for r in rs if r.get("others_cores") is not None]
    others = f", others' CPU {min(oc):.2f}-{max(oc):.2f} cores" if oc else ""
    return f"load {min(xs):.2f}-{max(xs):.2f}{others}{quiet}"


def ld(r):
    return f"load {r['load_before']} -> {r['load']}, others {r.get('others_cores')}"


def med(label, key):
    rs = rows.get(label, [])
    vals = [key(r["report"]) for r in rs if not r["report"].get("failed")]
    return (statistics.median(vals) if vals else None), vals, rs


def line(label, key, unit="", fmt="{:,.0f}"):
    m, vals, rs = med(label, key)
    if m is None:
        return None
    each = ", ".join(fmt.format(v) for v in vals)
    print(f"  {label:26} median {fmt.format(m)}{unit} ({each}) {loads(rs)}")
    return m


def ratio(a, b, what):
    if a and b:
        print(f"  -> {what}: {a / b:.2f} x")


print("wrk -t2 -c100 -d10s /animals/cow, --delay 0 (req/s)")
new = line("wrk-new", lambda r: r["value"])
ngx = line("wrk-nginx", lambda r: r["value"])
base = line("wrk-base", lambda r: r["value"])
ratio(new, ngx, "new / nginx (goal >= 0.9)")
ratio(new, base, "new / base")
for lab in ("wrk-new", "wrk-nginx", "wrk-base"):
    for r in rows.get(lab, []):
        if r["report"].get("non2xx") or r["report"].get("socket_errors"):
            print(f"  !! {lab} run {r['run']}: non-2xx {r['report']['non2xx']}, socket errors {r['report']['socket_errors']}")


def hold(label):
    for r in rows.get(label, []):
        h = r["report"]
        if h.get("failed"):
            print(f"  {label:26} FAILED: {h.get('stderr', '')!r} load {r['load_before']}")
            continue
        s = h.get("server") or {}
        lat = h["latency"]
        print(
            f"  {label:26} ok {h['ok']:,}/{h['expected']:,} late {h['late']:,} wrong {h['wrong']:,}"
            f" errors {h['errors']:,} peak in flight {h['peak_in_flight']:,}"
            f" p50 {lat['p50_us'] / 1e6:.3f}s p99 {lat['p99_us'] / 1e6:.3f}s max {lat['max_us'] / 1e6:.3f}s"
            f" wall {h['wall_secs']:.1f}s"
            f" rss idle {s.get('rss_idle_kib', 0) / 1024:.1f} peak {max(s.get('rss_peak_kib', 0), s.get('rss_sampled_peak_kib', 0)) / 1024:.1f} MiB"
            f" ({s.get('bytes_per_in_flight', 0):,.0f} B/req) {ld(r)}"
        )
        if h.get("first_error"):
            print(f"  {'':26} first error: {h['first_error'][:160]!r}")
    for r in rows.get(label + "-refused", []):
        print(f"  {'':26} server gate_refused_total: {r['report']}")


print("held requests at --delay 5s")
for lab in ("hold-new-16src", "hold-base-16src", "hold-new-1src-default", "hold-new-1src-perip16384",
            "h2-new-raised", "h2-new-default", "h2-base"):
    hold(lab)


def fan(label):
    for r in rows.get(label, []):
        f = r["report"]
        if f.get("failed"):
            print(f"  {label:14} run {r['run']} FAILED load {r['load_before']}")
            continue
        s = f.get("server") or {}
        print(
            f"  {label:14} run {r['run']} {f['deliveries_per_sec']:,.0f}/s lost {f['lost']} dup {f['duplicates']}"
            f" p99 {f['latency']['p99_us'] / 1000:.0f}ms cpu/deliv {s.get('cpu_us_per_delivery', 0):.3f}us"
            f" rss connected {s.get('rss_connected_kib', 0) / 1024:.1f} peak {s.get('rss_peak_kib', 0) / 1024:.1f} MiB"
            f" {ld(r)}{'' if r.get('quiet', True) else ' UNDER LOAD'}"
        )


print("fan-out memory: 10,000 subscribers, 10 msg/s for 30 s")
fan("fanmem-new")
fan("fanmem-base")
a = line("fanmem-new", lambda r: r["server"]["rss_peak_kib"] / 1024, " MiB", "{:.1f}")
b = line("fanmem-base", lambda r: r["server"]["rss_peak_kib"] / 1024, " MiB", "{:.1f}")
ratio(a, b, "peak RSS new / base")

print("fan-out throughput: 1,000 subscribers x 5,000 messages, 1 publisher")
fan("fantput-new")
fan("fantput-base")
a = line("fantput-new", lambda r: r["deliveries_per_sec"])
b = line("fantput-base", lambda r: r["deliveries_per_sec"])
ratio(a, b, "median new / base (goal >= 0.95)")
pairs = {}
for lab in ("fantput-new", "fantput-base"):
    for r in rows.get(lab, []):
        if not r["report"].get("failed"):
            pairs.setdefault(r["run"], {})[lab] = r["report"]["deliveries_per_sec"]
pr = [p["fantput-new"] / p["fantput-base"] for _, p in sorted(pairs.items()) if len(p) == 2]
if pr:
    print(f"  -> pair by pair: {', '.join(f'{x:.2f}' for x in pr)}; median of pair ratios {statistics.median(pr):.2f}")
a = line("fantput-new", lambda r: r["server"]["cpu_us_per_delivery"], " us CPU/delivery", "{:.3f}")
b = line("fantput-base", lambda r: r["server"]["cpu_us_per_delivery"], " us CPU/delivery", "{:.3f}")

print("TLS: wrk -t2 -c100 -d10s /animals/cow, --delay 0 (req/s)")
for r in rows.get("tls-clients", []):
    for k, v in r["report"].items():
        print(f"  client {k}: {v}")
h = line("tls-https", lambda r: r["value"])
p = line("tls-http-fast", lambda r: r["value"])
y = line("tls-http-hyper", lambda r: r["value"])
ratio(h, p, "https / http (fast path)")
ratio(h, y, "https / http through hyper (--no-direct)")
for lab in ("tls-https", "tls-http-fast", "tls-http-hyper"):
    for r in rows.get(lab, []):
        if r["report"].get("non2xx") or r["report"].get("socket_errors"):
            print(f"  !! {lab} run {r['run']}: non-2xx {r['report']['non2xx']}, socket errors {r['report']['socket_errors']}")

print("coop speak, 10,000 cows at --delay 1s (wall s, peak RSS MiB)")
for lab in ("speak-h2-new", "speak-h2-base", "speak-h1-new"):
    for r in rows.get(lab, []):
        s = r["report"]
        print(f"  {lab:14} run {r['run']} wall {s['wall_secs']:.2f}s rss {s['rss_mib']:.0f} MiB moos {s['moos']:,} {ld(r)}")
        for t in s["timing"]:
            print(f"  {'':14}   {t}")
for r in rows.get("speak-new-refused", []):
    print(f"  server gate_refused_total after the speak runs: {r['report']}")
