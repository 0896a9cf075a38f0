#!/usr/bin/env python3
"""measure.py — runs a command and prints its wall time and peak RSS as JSON.

Usage: bench/measure.py [--stdin FILE] -- COMMAND ARGS...
Peak RSS comes from getrusage(RUSAGE_CHILDREN) of the one child, so only that process is
counted. The command's own output goes to stderr (the JSON alone to stdout).
"""
import json
import os
import resource
import subprocess
import sys
import time


def main():
    args = sys.argv[1:]
    stdin = None
    if args[:1] == ["--stdin"]:
        stdin = open(args[1], "rb")
        args = args[2:]
    if args[:1] == ["--"]:
        args = args[1:]
    t0 = time.monotonic()
    p = subprocess.run(args, stdin=stdin, stdout=sys.stderr, stderr=sys.stderr)
    wall = time.monotonic() - t0
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(json.dumps({"rc": p.returncode, "wall_s": wall, "max_rss_kib": ru.ru_maxrss,
                      "user_s": ru.ru_utime, "sys_s": ru.ru_stime}))


if __name__ == "__main__":
    main()
