#!/usr/bin/env python3
"""Publishes N messages of SIZE bytes, each to a new topic, over one
keep-alive connection, and prints one JSON line: statuses, time, the
slowest answer and the server's peak RSS (VmHWM of --pid).

    flood.py --port 8081 --pid 1234 [-n 100000] [--size 65536]
"""
import argparse, http.client, json, time

ap = argparse.ArgumentParser()
ap.add_argument("--port", type=int, required=True)
ap.add_argument("--pid", type=int, required=True)
ap.add_argument("-n", type=int, default=100_000)
ap.add_argument("--size", type=int, default=64 * 1024)
a = ap.parse_args()

def rss(pid):
    out = {}
    for line in open(f"/proc/{pid}/status"):
        k, _, v = line.partition(":")
        if k in ("VmHWM", "VmRSS"):
            out[k] = int(v.split()[0]) * 1024
    return out

body = b"m" * a.size
conn = http.client.HTTPConnection("127.0.0.1", a.port)
statuses = {}
base = rss(a.pid)["VmRSS"]
slowest = 0.0
t0 = time.monotonic()
for i in range(a.n):
    t = time.monotonic()
    conn.request("POST", f"/topics/flood.{i}", body=body)
    r = conn.getresponse()
    r.read()
    slowest = max(slowest, time.monotonic() - t)
    statuses[r.status] = statuses.get(r.status, 0) + 1
elapsed = time.monotonic() - t0
m = rss(a.pid)
print(json.dumps({
    "published": a.n, "size": a.size, "statuses": statuses,
    "seconds": round(elapsed, 2), "slowest_ms": round(slowest * 1000, 1),
    "rss_start_mib": round(base / 2**20, 1), "peak_rss_mib": round(m["VmHWM"] / 2**20, 1),
    "rss_end_mib": round(m["VmRSS"] / 2**20, 1),
}))
