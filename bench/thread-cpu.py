#!/usr/bin/env python3
"""thread-cpu.py — measure.py's JSON for one command, plus the CPU seconds of each of its threads.

Usage: bench/thread-cpu.py -- COMMAND ARGS...
Prints {"rc", "wall_s", "max_rss_kib", "user_s", "sys_s", "main_cpu_s", "other_cpu_s": [...]}.
A thread's CPU time (utime + stime from /proc/PID/task/TID/stat) is sampled every 20 ms until
the process exits, so its last 20 ms may be missed; main_cpu_s is the first thread's (cutoff
import's storing thread), other_cpu_s the others', largest first. The command's own output goes
to stderr (the JSON alone to stdout).
"""
import json
import os
import resource
import subprocess
import sys
import time


def sample(pid, last):
    """Records the CPU seconds of each live thread of pid into last (tid -> seconds)."""
    tck = os.sysconf("SC_CLK_TCK")
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        last[int(tid)] = (int(fields[11]) + int(fields[12])) / tck


def main():
    args = sys.argv[1:]
    if args[:1] == ["--"]:
        args = args[1:]
    last = {}
    t0 = time.monotonic()
    p = subprocess.Popen(args, stdout=sys.stderr, stderr=sys.stderr)
    while p.poll() is None:
        sample(p.pid, last)
        time.sleep(0.02)
    wall = time.monotonic() - t0
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    others = sorted((v for k, v in last.items() if k != p.pid), reverse=True)
    print(json.dumps({"rc": p.returncode, "wall_s": wall, "max_rss_kib": ru.ru_maxrss,
                      "user_s": ru.ru_utime, "sys_s": ru.ru_stime,
                      "main_cpu_s": last.get(p.pid, 0.0), "other_cpu_s": others}))


if __name__ == "__main__":
    main()
