#!/usr/bin/python3
"""bench/send's Python peer: smtplib, P processes, each on one persistent connection, sending
a fixed message N/P times (raw: no composition)."""
import smtplib
import sys
from multiprocessing import Pool

PORT, TOTAL, PROCS = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
MSG = (b"From: bench@example.test\r\nTo: user@users.example.test\r\nSubject: bench\r\n\r\n"
       b"Hello, this is a fixed benchmark message.\r\n")


def work(n):
    s = smtplib.SMTP("127.0.0.1", PORT)
    for _ in range(n):
        s.sendmail("bench@example.test", ["user@users.example.test"], MSG)
    s.quit()
    return n


if __name__ == "__main__":
    with Pool(PROCS) as p:
        print(sum(p.map(work, [TOTAL // PROCS] * PROCS)), "sent")
