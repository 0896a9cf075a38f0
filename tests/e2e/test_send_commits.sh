#!/usr/bin/env bash
# End to end, how the sender writes its ledger: settlements wait for the next claim's commit
# (one fsync for both) rather than taking a commit of their own every 128 messages, and take
# one only when they have waited 50 ms; the process that runs `cutoff send` writes its WAL
# frames in a few large writes, as its workers do; 6,000 messages to Postfix's smtp-sink,
# nothing lost or left in flight. Commits are counted as fdatasync calls on the -wal file
# (synchronous=FULL: one per commit), writes as pwrite64 calls on it, with strace. Needs
# smtp-sink and strace, else skipped.
. "$(dirname "$0")/lib.sh"
command -v strace >/dev/null || { echo "SKIP: no strace to count the ledger's commits"; exit 77; }
start_sink
CONF=$T/cutoff.conf DB=$T/cutoff.db N=6000
write_config "$CONF" "$SINK_PORT"
sed -i 's/connections = 4;/connections = 8;/' "$CONF"
copy_campaign
gen_users $N 11 "$T/users.csv"
load_campaign "$CONF" "$T/users.csv"
cp "$DB" "$T/base.db"

# wal_writes STRACE: the writes to the -wal file in an strace -y log (writes) and the frames
# they carry (pages; a frame is 24 + 4,096 octets).
wal_writes() {
    writes=$(grep -c -- 'pwrite64([0-9]*<[^>]*-wal>, ' "$1")
    pages=$(grep -- 'pwrite64([0-9]*<[^>]*-wal>, ' "$1" | grep -o '= [0-9]*$' | cut -c3- |
        awk '{s += $1} END {print int(s / 4120)}')
}

# One worker, 8 connections: claims of 500 deliveries (the configured batch_size).
# (LeakSanitizer cannot run under ptrace: in a sanitizer build, the traced run skips it.)
start=$(date +%s%N)
ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0 strace --seccomp-bpf -f -qq -y -e trace=fdatasync,pwrite64 -o "$T/sync.strace" \
    "$CUTOFF_BIN" --config "$CONF" --now 2003-08-26T17:00:00Z send $C --workers 1 >"$OUT" 2>"$ERR"
RC=$?
ms=$((($(date +%s%N) - start) / 1000000))
expect_rc 0 "the send ends well"
sent=$(sql "$DB" "SELECT count(*) FROM delivery WHERE state = 'sent'")
check "$sent" "$(sql "$DB" "SELECT count(*) FROM recipient WHERE state = 'pending'")" \
    "every pending recipient is recorded sent"
check "$(sql "$DB" "SELECT count(*) FROM delivery WHERE state = 'sending'")" "0" \
    "nothing left in flight"
check "$(sql "$DB" "SELECT count(*) FROM attempt WHERE outcome = 'sent'")" "$sent" \
    "one attempt recorded for each"
commits=$(grep -c -- 'fdatasync(.*-wal>) ' "$T/sync.strace")
claims=$(((sent + 479) / 480 + 1)) # of about 500 (topping the queue up), and a last empty one
echo "ledger commits for $sent messages in $ms ms: $commits (about $claims claims)"
# Besides the claims: queueing at the start, the last settlements at the end, and a commit of
# settlements on their own only when they have waited 50 ms (so at most one per 50 ms). Before,
# settlements took a commit of their own every 128 messages as well, whatever the speed.
[ "$commits" -le $((claims + ms / 50 + 4)) ]
check $? 0 "ledger commits: the claims', plus at most one per 50 ms ($commits in $ms ms)"
# The process that runs `cutoff send` sends too (here it is the only worker): its commits write
# their WAL frames in a few large writes, not two writes a frame (frame: 24 + 4,096 octets).
wal_writes "$T/sync.strace"
echo "WAL: $pages frames in $writes writes"
[ "$pages" -ge 100 ] && [ "$writes" -le $((pages / 10)) ]
check $? 0 "the ledger's WAL frames go in few large writes ($pages frames, $writes writes)"

# The daily `cutoff run` sends on its own connection too: the same few large writes.
rm -f "$DB" "$DB-wal" "$DB-shm"; cp "$T/base.db" "$DB"
ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0 strace --seccomp-bpf -f -qq -y -e trace=pwrite64 -o "$T/run.strace" \
    "$CUTOFF_BIN" --config "$CONF" --now 2003-08-26T17:00:00Z run --workers 1 >"$OUT" 2>"$ERR"
RC=$?
expect_rc 0 "the daily run ends well"
check "$(sql "$DB" "SELECT count(*) FROM delivery WHERE state = 'sent'")" "$sent" \
    "the run sends the same messages"
wal_writes "$T/run.strace"
echo "run's WAL: $pages frames in $writes writes"
[ "$pages" -ge 100 ] && [ "$writes" -le $((pages / 10)) ]
check $? 0 "the run's WAL frames go in few large writes ($pages frames, $writes writes)"
finish
