#!/usr/bin/env python3
"""CPU used by processes other than the benchmark's own during a run, in
cores (2.0 = both cores of this machine busy), as a check beside the load
average: the 1-minute load also counts the benchmark itself and the run
before it.

  others_cpu.py snap FILE     # before the run
  others_cpu.py diff FILE     # after: prints the cores others used

The benchmark's own processes are the descendants of the calling script
(the outermost ancestor whose command line names a scripts/bench script:
its servers and load generators) and the nchan anchor's nginx (master and
workers, from /tmp/nchan/logs/nginx.pid). Other people's copies of coop,
wrk or nginx count as others. A process that started and ended between the
two snapshots is not seen, nor the part of one that ended before the
second: a lower bound."""
import json
import os
import sys
import time

HZ = os.sysconf("SC_CLK_TCK")
NGINX_PID = "/tmp/nchan/logs/nginx.pid"


def read_procs():
    procs = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                raw = f.read()
        except OSError:
            continue
        fields = raw[raw.rindex(")") + 2 :].split()
        # fields[0] is field 3 (state): ppid 4, utime 14, stime 15, starttime 22
        procs[pid] = (fields[1], int(fields[11]) + int(fields[12]), int(fields[19]))
    return procs


def cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def ours(procs):
    root, pid = None, str(os.getpid())
    while pid in procs and pid != "1":
        if "scripts/bench/" in cmdline(pid):
            root = pid
        pid = procs[pid][0]
    roots = {root} if root else set()
    try:
        with open(NGINX_PID) as f:
            roots.add(f.read().strip())
    except OSError:
        pass
    mine, grew = set(roots), True
    while grew:
        grew = False
        for p, (ppid, _, _) in procs.items():
            if ppid in mine and p not in mine:
                mine.add(p)
                grew = True
    return mine


def snapshot():
    procs = read_procs()
    with open("/proc/uptime") as f:
        uptime = float(f.read().split()[0])
    return {"t": time.time(), "uptime_ticks": uptime * HZ, "procs": procs, "ours": sorted(ours(procs))}


def main():
    cmd, path = sys.argv[1], sys.argv[2]
    if cmd == "snap":
        with open(path + ".new", "w") as f:
            json.dump(snapshot(), f)
        os.replace(path + ".new", path)
        return
    with open(path) as f:
        then = json.load(f)
    now = snapshot()
    mine = set(then["ours"]) | set(now["ours"])
    used = 0
    for pid, (_, ticks, start) in now["procs"].items():
        if pid in mine:
            continue
        old = then["procs"].get(pid)
        if old and old[2] == start:
            used += ticks - old[1]
        elif start >= then["uptime_ticks"]:
            used += ticks  # started during the run
    secs = max(now["t"] - then["t"], 1e-3)
    print(f"{used / HZ / secs:.2f}")


main()
