#!/usr/bin/env bash
# `cutoff login --batch` keeps its WAL bounded while it commits: a thread of its own copies each
# commit's frames into the database, and past --checkpoint-frames the WAL is started over
# between two commits. Every answer and every login is still recorded, and the database is
# intact. Compared with a run whose threshold is never reached (the WAL only grows).
. "$(dirname "$0")/lib.sh"
copy_campaign
write_config "$T/cutoff.conf" "$(free_port)"
gen_users 3000 11 "$T/users.csv"
load_campaign "$T/cutoff.conf" "$T/users.csv"
DB=$T/cutoff.db
cp "$DB" "$T/base.db"

# 6,000 logins: a first login of the day, a later one, or an upgrade, in random order.
python3 - "$T/users.csv" >"$T/in.jsonl" <<'PY'
import csv, json, random, sys
users = [r["user_id"] for r in csv.DictReader(open(sys.argv[1], encoding="utf-8"))]
rng = random.Random(3)
for i in range(6000):
    print(json.dumps({"user": rng.choice(users), "client_version": rng.choice(["4.6", "4.6", "9.9"]),
                      "time": 1064077200 + i}))
PY

# run FRAMES: a fresh copy of the database, held open by a reader (so that the WAL file is
# left as the batch left it), one batch of 100 events per commit; WAL gets the WAL's bytes.
run_batch() {
    rm -f "$DB" "$DB-wal" "$DB-shm"; cp "$T/base.db" "$DB"
    python3 -c "import sqlite3, sys, time
d = sqlite3.connect(sys.argv[1]); d.execute('SELECT count(*) FROM sqlite_schema').fetchall()
open(sys.argv[2], 'w').close(); time.sleep(60)" "$DB" "$T/reader.up" &
    READER=$!
    while [ ! -e "$T/reader.up" ]; do sleep 0.05; done
    "$CUTOFF_BIN" --config "$T/cutoff.conf" --now 2003-09-20T17:00:00Z login --batch \
        --commit-every 100 --checkpoint-frames "$1" <"$T/in.jsonl" >"$T/out.jsonl" 2>"$ERR"
    RC=$?
    WAL=$(stat -c %s "$DB-wal")
    kill "$READER"; wait "$READER" 2>/dev/null; rm -f "$T/reader.up"
}

run_batch 1000000000
never=$WAL
expect_rc 0 "a batch with a WAL that only grows"
check "$(wc -l <"$T/out.jsonl")" 6000 "one answer per event"
cp "$T/out.jsonl" "$T/out.never"
run_batch 64
bounded=$WAL
expect_rc 0 "a batch that starts its WAL over"
check "$(wc -l <"$T/out.jsonl")" 6000 "one answer per event"
check "$(cmp -s "$T/out.jsonl" "$T/out.never" && echo same)" same "the same answers either way"
check "$(sql "$DB" "SELECT count(*) FROM login")" 6000 "every login recorded"
check "$(sql "$DB" "PRAGMA integrity_check")" ok "the database is intact"
[ "$(sql "$DB" "SELECT count(*) FROM login_reminder")" -gt 500 ] && ok || not_ok "reminders recorded"
# Started over: a few commits' frames, where the other run's WAL holds all 60 commits'.
echo "wal: bounded=$bounded never=$never" >&2
if [ "$((bounded * 4))" -lt "$never" ]; then ok; else not_ok "WAL bounded ($bounded vs $never bytes)"; fi
finish
