#!/usr/bin/env bash
# `cutoff serve`'s durability: the decider commits without waiting for the disk and a syncer
# thread fdatasyncs the WAL; no answer may leave before the sync that covers its login, and a
# failed sync must not be answered 200. Driven with an LD_PRELOAD library (tests/tools/
# sync_shim.c) that makes the syncer's syncs slow or failing, and logs them. Also: the service
# runs as usual when sched_setscheduler is refused (a system call filter). And the checkpointer's
# syncs of the database: written back in 4 MiB pieces that wait for the WAL's syncs, then
# fdatasynced; a failed one logged, counted, the WAL kept; sync_file_range refused, fdatasync alone.
. "$(dirname "$0")/lib.sh"
command -v curl >/dev/null || { echo "SKIP: curl is not installed (apt-get install curl)"; exit 77; }
SHIM=${CUTOFF_SYNC_SHIM:-}
[ -f "$SHIM" ] || { echo "FAIL: CUTOFF_SYNC_SHIM (tests/tools/sync_shim.c) is not built"; exit 1; }
export ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0 # the shim comes first
copy_campaign
start_smtpd
write_config "$T/cutoff.conf" "$SMTP_PORT"
{
    echo "user_id,email,name,locale,timezone,client,version,platform,os,country"
    for u in ana bob cy dee eve fay; do
        echo "$u,$u@users.example.test,${u^},en-US,America/Los_Angeles,msn-messenger,4.6,windows,XP,US"
    done
} >"$T/users.csv"
load_campaign "$T/cutoff.conf" "$T/users.csv"
DB=$T/cutoff.db
NOW=2003-09-20T17:00:00Z
openssl rand -hex 32 >"$T/token"; chmod 600 "$T/token"
AUTH="Authorization: Bearer $(cat "$T/token")"

# start_serve ENV...: cutoff serve under the shim with the environment ENV (URL, SPID).
start_serve() {
    local i
    PORT=$(free_port) URL=http://127.0.0.1:$PORT
    env LD_PRELOAD="$SHIM" "$@" "$CUTOFF_BIN" --config "$T/cutoff.conf" --now "$NOW" serve \
        --listen "127.0.0.1:$PORT" --token-file "$T/token" >"$T/serve.out" 2>"$T/serve.err" &
    SPID=$!
    CLEANUP+=("kill $SPID; wait $SPID")
    for i in $(seq 100); do curl -sf "$URL/healthz" >/dev/null 2>&1 && return 0; sleep 0.1; done
    echo "FAIL: cutoff serve did not start"; cat "$T/serve.err"; exit 1
}
# login USER OUTFILE: one login with curl; writes "STATUS SECONDS" to OUTFILE, the body to
# OUTFILE.body.
login() {
    curl -s -o "$2.body" -w '%{http_code} %{time_total}\n' -H "$AUTH" \
        -H 'Content-Type: application/json' \
        --data-binary "{\"user\":\"$1\",\"client_version\":\"4.6\",\"platform\":\"windows\"}" \
        "$URL/v1/logins" >"$2"
}
logins() { sql "$DB" "SELECT count(*) FROM login WHERE user_id = '$1'"; }
now_s() { date +%s.%N; }

# ---- the syncer's syncs take 600 ms each: the answer waits for the one that covers it ----
start_serve SYNC_SHIM_DELAY_MS=600 SYNC_SHIM_LOG="$T/syncs"
login ana "$T/warm"
check "$(cut -d' ' -f1 "$T/warm")" "200" "a login is answered under slow syncs"
sent=$(now_s)
login bob "$T/bob" &
CPID=$!
sleep 0.3
check "$(logins bob)" "1" "the login is committed (visible to others) within 300 ms"
check "$(cat "$T/bob" 2>/dev/null)" "" "but not answered while the WAL's sync runs"
wait "$CPID"
answered=$(now_s)
check "$(cut -d' ' -f1 "$T/bob")" "200" "answered once the sync is done"
check "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["reminder"]["campaign"])' \
    "$T/bob.body")" "messenger-upgrade" "with its reminder"
# A WAL sync began after the login was sent and returned before its answer came.
python3 - "$T/syncs" "$sent" "$answered" "$(cut -d' ' -f2 "$T/bob")" <<'PY'
import sys
done = [float(l.split()[0]) for l in open(sys.argv[1]) if l.split()[1] == "0"]
sent, answered, took = float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
covering = [t for t in done if sent + 0.6 <= t <= answered]
sys.exit(0 if covering and took >= 0.6 else 1)
PY
check "$?" "0" "a sync that began after the request ended before its answer (>= 600 ms)"
kill -TERM "$SPID"; wait "$SPID"; check "$?" "0" "stopped"

# ---- SIGTERM while a batch waits for its sync: answered, recorded, exit 0 ----
start_serve SYNC_SHIM_DELAY_MS=600
login cy "$T/warm2"
login cy "$T/cy" &
CPID=$!
sleep 0.2
kill -TERM "$SPID"
wait "$CPID"
check "$(cut -d' ' -f1 "$T/cy")" "200" "a login waiting for its sync at SIGTERM is answered"
wait "$SPID"; check "$?" "0" "then the service exits 0"
check "$(logins cy)" "2" "and both logins are recorded"

# ---- the syncer's fdatasync fails: 500, never 200, and nothing more is decided ----
start_serve SYNC_SHIM_FAIL=1
login dee "$T/dee"
check "$(cut -d' ' -f1 "$T/dee")" "500" "a login whose sync failed is not answered 200"
grep -q "could not be synced" "$T/dee.body"; check "$?" "0" "the error says the sync failed"
login eve "$T/eve"
check "$(cut -d' ' -f1 "$T/eve")" "500" "nor is any later login (the disk cannot be trusted)"
check "$(logins eve)" "0" "which is not even decided"
grep -q "fdatasync of the WAL failed" "$T/serve.err"; check "$?" "0" "logged"
kill -TERM "$SPID"; wait "$SPID"; check "$?" "0" "stopped"
# ---- the database, written back by the checkpointer between the WAL's syncs ----
# 13 MiB of padding: a database of more than three 4 MiB pieces.
sql "$DB" "CREATE TABLE pad(b BLOB); WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1
    FROM n WHERE i < 13) INSERT INTO pad SELECT randomblob(1048576) FROM n;
    PRAGMA wal_checkpoint(TRUNCATE);" >/dev/null
DBPATH=$(realpath "$DB")
metric() { curl -s -H "$AUTH" "$URL/metrics" | awk -v k="$1" '$1 == k {print $2}'; }
# load SECONDS: three clients logging in one login after another, for SECONDS.
load() {
    local end=$(($(date +%s) + $1)) k pids=()
    for k in 1 2 3; do
        (i=0; while [ "$(date +%s)" -lt "$end" ]; do
            i=$((i + 1)); login ana "$T/load$k"
            [ "$(cut -d' ' -f1 "$T/load$k")" = 200 ] || echo "$k $i $(cat "$T/load$k")"
        done) >>"$T/load-errors" &
        pids+=($!)
    done
    wait "${pids[@]}" # not the service's
}
# Under load, with WAL syncs of 20 ms: the writeback waits for them, a bounded time a piece.
: >"$T/load-errors"
start_serve SYNC_SHIM_DELAY_MS=20 SYNC_SHIM_DB="$DBPATH" SYNC_SHIM_DB_LOG="$T/db-syncs"
load 2
check "$(cat "$T/load-errors")" "" "every login under load is answered 200"
# A writeback: pieces from offset 0, back to back, of 4 MiB at most, through the checkpointer's
# read-only descriptor, covering the whole file, then its fdatasync; all succeeded.
python3 - "$T/db-syncs" "$(stat -c %s "$DB")" <<'PY'
import sys
lines = [l.split() for l in open(sys.argv[1])]
size, found = int(sys.argv[2]), 0
for i, l in enumerate(lines):
    if l[:3] != ["sync_file_range", "ro", "0"]:
        continue
    at, j = 0, i
    while j < len(lines) and lines[j][:2] == ["sync_file_range", "ro"] and int(lines[j][2]) == at \
            and 0 < int(lines[j][3]) <= 4 << 20 and lines[j][4] == "0":
        at += int(lines[j][3]); j += 1
    if j - i >= 4 and at >= 13 << 20 and j < len(lines) and lines[j] == ["fdatasync", "ro", "0"]:
        found += 1
sys.exit(0 if found > 0 else 1)
PY
check "$?" "0" "the checkpointer wrote the database back in 4 MiB pieces, then fdatasynced it"
check "$(metric cutoff_serve_checkpoint_db_sync_failures_total)" "0" "no sync of it failed"
python3 -c 'import sys; sys.exit(0 if float(sys.argv[1]) > 0 else 1)' \
    "$(metric cutoff_serve_checkpoint_writeback_wait_seconds_total)"
check "$?" "0" "its pieces waited for the WAL's syncs (the syncer publishes them)"
[ "$(metric cutoff_serve_checkpoint_writeback_waits_cut_total)" -gt 0 ]
check "$?" "0" "a bounded time: 20 ms syncs cut the wait"
sleep 1
check "$(stat -c %s "$DB-wal")" "0" "once idle, the WAL is emptied (TRUNCATE)"
kill -TERM "$SPID"; wait "$SPID"; check "$?" "0" "stopped"

# The checkpointer's fdatasync of the database fails: logged and counted, the WAL (which holds
# what the database may lack) is never started over again, logins go on being answered.
: >"$T/load-errors"
start_serve SYNC_SHIM_DB="$DBPATH" SYNC_SHIM_DB_FAIL=1
load 1
check "$(cat "$T/load-errors")" "" "logins are answered 200 when the database's sync fails"
check "$(metric cutoff_serve_checkpoint_db_sync_failures_total)" "1" "the failure is counted, once"
grep -q "fdatasync: Input/output error: the database file may be missing pages" "$T/serve.err"
check "$?" "0" "and logged"
sleep 1
[ "$(stat -c %s "$DB-wal")" -gt 0 ]; check "$?" "0" "once idle, the WAL is kept (no TRUNCATE)"
kill -TERM "$SPID"; wait "$SPID"; check "$?" "0" "stopped"

# A file system that refuses sync_file_range: said once, then fdatasync alone.
: >"$T/load-errors" >"$T/db-syncs"
start_serve SYNC_SHIM_DB="$DBPATH" SYNC_SHIM_DB_LOG="$T/db-syncs" SYNC_SHIM_DB_REFUSE=1
load 1
check "$(cat "$T/load-errors")" "" "logins are answered 200 without sync_file_range"
check "$(grep -c "no paced writeback" "$T/serve.err")" "1" "the refusal is logged once"
check "$(grep -c "^sync_file_range" "$T/db-syncs")" "1" "and not tried again"
check "$(grep -c "^fdatasync ro 0" "$T/db-syncs" | awk '{print ($1 > 0)}')" "1" \
    "the database is still fdatasynced after its checkpoints"
check "$(metric cutoff_serve_checkpoint_db_sync_failures_total)" "0" "which is no failure"
kill -TERM "$SPID"; wait "$SPID"; check "$?" "0" "stopped"

# ---- sched_setscheduler refused (a seccomp filter): the threads stay SCHED_OTHER (neither
# SCHED_BATCH nor the syncer's SCHED_FIFO), all works ----
start_serve SYNC_SHIM_SCHED_EPERM=1
login fay "$T/fay"
check "$(cut -d' ' -f1 "$T/fay")" "200" "a login is answered when SCHED_BATCH is refused"
for t in /proc/"$SPID"/task/*; do sed 's/.*) //' "$t/stat" | awk '{print $39}'; done | sort -u >"$T/pol"
check "$(cat "$T/pol")" "0" "and every thread stays SCHED_OTHER"
kill -TERM "$SPID"; wait "$SPID"; check "$?" "0" "stopped"
finish
