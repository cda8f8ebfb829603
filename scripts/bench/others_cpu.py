#!/usr/bin/env python3
"""CPU used by processes other than the benchmark's own during a run, in
cores (2.0 = both cores of this machine busy), as a check beside the load
average: the 1-minute load also counts the benchmark itself and the run
before it.

  others_cpu.py snap FILE     # before the run
  others_cpu.py diff FILE     # after: prints the cores others used

The benchmark's own processes are told by name: the private copies of coop
(`coop-bench-*`, `coop-other-*`), nginx (the nchan anchor), wrk, time.
A process that started and ended between the two snapshots is not seen,
nor the part of one that ended before the second: a lower bound."""
import json
import os
import sys
import time

OURS = ("coop-bench-", "coop-other-", "nginx", "wrk", "time")
HZ = os.sysconf("SC_CLK_TCK")


def snapshot():
    procs = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                raw = f.read()
        except OSError:
            continue
        comm = raw[raw.index("(") + 1 : raw.rindex(")")]
        fields = raw[raw.rindex(")") + 2 :].split()
        # fields[0] is field 3 (state): utime is field 14, stime 15, starttime 22
        procs[pid] = (comm, int(fields[11]) + int(fields[12]), int(fields[19]))
    with open("/proc/uptime") as f:
        uptime = float(f.read().split()[0])
    return {"t": time.time(), "uptime_ticks": uptime * HZ, "procs": procs}


def main():
    cmd, path = sys.argv[1], sys.argv[2]
    if cmd == "snap":
        with open(path, "w") as f:
            json.dump(snapshot(), f)
        return
    with open(path) as f:
        then = json.load(f)
    now = snapshot()
    used = 0
    for pid, (comm, ticks, start) in now["procs"].items():
        if comm.startswith(OURS):
            continue
        old = then["procs"].get(pid)
        if old and old[2] == start:
            used += ticks - old[1]
        elif start >= then["uptime_ticks"]:
            used += ticks  # started during the run
    secs = max(now["t"] - then["t"], 1e-3)
    print(f"{used / HZ / secs:.2f}")


main()
