#!/usr/bin/env bash
# End to end, the wave queued a piece at a time while it is sent (sender.c, QUEUE_CHUNK): the
# queue marks (db/004) are the durable progress. Runs killed with SIGKILL early, while the
# wave is being queued, leave a ledger that matches the marks exactly (every pending recipient
# up to a segment's mark queued once, nobody above it); the run after them sends everyone
# once. A run stopped early (--limit) still leaves the whole wave queued, as when it was queued
# up front. 6,000 users, Postfix's smtp-sink; skipped without it.
. "$(dirname "$0")/lib.sh"
start_sink
CONF=$T/cutoff.conf DB=$T/cutoff.db N=6000 NOW=2003-08-26T17:00:00Z
write_config "$CONF" "$SINK_PORT"
sed -i 's/connections = 4;/connections = 8;/' "$CONF"
copy_campaign
gen_users $N 17 "$T/users.csv"
load_campaign "$CONF" "$T/users.csv"
cp "$DB" "$T/base.db"

# The deliveries the marks account for: pending recipients of a marked segment up to its mark.
marked="SELECT count(*) FROM recipient r JOIN queue_mark m ON m.segment_id = r.segment_id
        AND m.kind = 'initial' WHERE r.state = 'pending' AND r.id <= m.watermark"
queued="SELECT count(*) FROM delivery WHERE kind = 'initial'"

# SIGKILL the run (and its workers: its own process group) 10 to 80 ms after it starts.
partial=0 kills=0
for ms in 10 15 20 30 40 50 60 80; do
    setsid "$CUTOFF_BIN" --config "$CONF" --now $NOW send $C >>"$T/runs.log" 2>&1 &
    pid=$!
    sleep "0.0${ms}"
    if kill -9 -- -$pid 2>/dev/null; then
        kills=$((kills + 1))
    fi
    wait $pid 2>/dev/null
    while pgrep -g $pid >/dev/null; do sleep 0.02; done
    q=$(sql "$DB" "$queued") m=$(sql "$DB" "$marked")
    check "$q" "$m" "after a kill at $ms ms, the ledger holds what the marks say was queued"
    check "$(sql "$DB" "SELECT count(*) - count(DISTINCT recipient_id) FROM delivery")" 0 \
        "after a kill at $ms ms, nobody queued twice"
    [ "$(sql "$DB" "SELECT count(*) FROM queue_mark m WHERE m.watermark <
        (SELECT max(id) FROM recipient)")" -gt 0 ] && partial=$((partial + 1))
done
echo "queue chunks: $kills kills, $partial of them with the wave partly queued"

run --config "$CONF" --now $NOW send $C
expect_rc 0 "the run after the kills completes"
pending_due=$(sql "$DB" "$queued")
check "$(sql "$DB" "SELECT count(*) FROM delivery WHERE state = 'sent'")" "$pending_due" \
    "every queued delivery is sent"
check "$(sql "$DB" "$marked")" "$pending_due" "the marks account for every delivery"
check "$(sql "$DB" "SELECT count(*) FROM queue_mark WHERE watermark <> (SELECT max(id) FROM recipient)")" \
    0 "every due segment is queued in full"
check "$(sql "$DB" "SELECT count(*) FROM recipient r JOIN queue_mark m ON m.segment_id =
    r.segment_id WHERE r.state = 'pending' AND NOT EXISTS (SELECT 1 FROM delivery d
    WHERE d.recipient_id = r.id)")" 0 "nobody of a due segment is skipped"
[ "$pending_due" -gt $((N / 2)) ]; check $? 0 "most users are due ($pending_due of $N)"

# --limit: ten messages go, the whole wave is queued all the same, and the summary says so.
# Two workers send five each; what is left is counted once both are done (a worker that
# finished first used to count the other's messages in flight as left to send: 5995 for
# 5990, now and then), so the run is repeated to give that race its chances.
for round in 1 2 3 4; do
    rm -f "$DB" "$DB-wal" "$DB-shm"; cp "$T/base.db" "$DB"
    run --config "$CONF" --now $NOW send $C --limit 10 --workers 2
    expect_rc 0 "a limited run ends well ($round)"
    check "$(sql "$DB" "SELECT count(*) FROM delivery WHERE state = 'sent'")" 10 \
        "ten are sent ($round)"
    check "$(sql "$DB" "$queued")" "$pending_due" "the rest of the wave is queued ($round)"
    expect_out "queued now: $pending_due initial" \
        "the summary counts the whole wave queued ($round)"
    expect_out "$((pending_due - 10)) due and not sent" "and what is left to send ($round)"
    check "$(sql "$DB" "SELECT count(*) FROM delivery WHERE state = 'sending'")" 0 \
        "nothing left in flight ($round)"
done
finish
