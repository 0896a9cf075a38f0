#!/usr/bin/env bash
# End to end for returned mail: (a) a campaign through a private Postfix where some users do
# not exist; Postfix's own DSNs come back to the VERP Maildir; `cutoff bounces` attributes
# every one by VERP to the right delivery, suppresses those users for good, moves the
# messages to cur/ and counts nothing twice; (b) --dry-run --format json over the corpus;
# (c) garbage is quarantined with its reason and the run goes on; (d) stdin exit codes.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/postfix.sh"
needs_shared
start_postfix bounces
CONF=$T/cutoff.conf C=messenger-upgrade DB=$T/cutoff.db
write_config "$CONF" "$PF_PORT"
cp -r "$SRC/campaigns" "$SRC/templates" "$T/"
sed -i 's/^rate = .*/rate = 0;/' "$T/campaigns/$C.cfg"
cut() { "$CUTOFF_BIN" --config "$CONF" "$@"; }
cut init >/dev/null && cut campaign add "$T/campaigns/$C.cfg" >/dev/null
{
    echo "user_id,email,name,client,version,platform,os,country"
    for i in $(seq 1 15); do echo "ok$i,ok$i@users.example.test,User $i,msn-messenger,4.6,windows,XP,US"; done
    for i in $(seq 1 5); do echo "gone$i,unknown$i@hotmail.example.test,Gone $i,msn-messenger,4.6,windows,XP,US"; done
} >"$T/users.csv"
cut import $C "$T/users.csv" >/dev/null
BOX=$PF_MAIL/bounces

# ---- (a) Postfix's DSNs, attributed by VERP ------------------------------------------------
run --config "$CONF" --now 2003-08-26T17:00:00Z send $C
expect_out "20 sent, 0 deferred, 0 failed" "Postfix accepts all 20 at RCPT (unknown users bounce later)"
got=$(pf_wait pf_count_bounces 5 60)
check "$got" "5" "Postfix returned a DSN for each of the 5 unknown users"
ls "$BOX/new" >"$T/bounce-files"
run --config "$CONF" --now 2003-08-27T08:00:00Z bounces --maildir "$BOX" --format json
expect_rc 0 "cutoff bounces over the Maildir"
cp "$OUT" "$T/bounces.jsonl"
python3 - "$T/bounces.jsonl" "$DB" >"$T/attrib" 2>&1 <<'PY'
import json, sqlite3, sys
db = sqlite3.connect(sys.argv[2])
lines = [json.loads(l) for l in open(sys.argv[1])]
bad = []
for j in lines:
    d = j["delivery"]
    row = db.execute("SELECT r.email, d.state FROM delivery d JOIN recipient r"
                     " ON r.id = d.recipient_id WHERE d.id = ?", (d,)).fetchone()
    addrs = [r["address"] for r in j["recipients"]]
    ok = (j["kind"] == "bounce" and j["attributed_by"] == "verp" and j["action"] == "suppress"
          and row is not None and row[0].startswith("unknown") and row[1] == "bounced"
          and row[0] in addrs and all(r["class"] == "hard" for r in j["recipients"]))
    if not ok:
        bad.append((j, row))
print(len(lines), len(bad))
for b in bad:
    print("BAD", b)
PY
check "$(head -1 "$T/attrib")" "5 0" "every DSN attributed by VERP to the unknown user's own delivery ($(tail -n +2 "$T/attrib" | head -3))"
check "$(sql "$DB" "SELECT group_concat(email, ' ') FROM (SELECT email FROM suppression WHERE reason = 'hard-bounce' ORDER BY email)")" \
    "unknown1@hotmail.example.test unknown2@hotmail.example.test unknown3@hotmail.example.test unknown4@hotmail.example.test unknown5@hotmail.example.test" \
    "the five unknown users, and only they, are suppressed as hard bounces"
check "$(sql "$DB" "SELECT count(*) FROM delivery WHERE state = 'bounced'")" "5" "their deliveries are bounced"
check "$(sql "$DB" "SELECT count(*) FROM event WHERE kind = 'bounce'")" "5" "one bounce event each"
check "$(find "$BOX/new" -type f | wc -l)" "0" "nothing is left in new/"
check "$(find "$BOX/cur" -type f -name '*:2,S' | wc -l)" "5" "the five are in cur/ with the S flag, not deleted"
moved=0
while read -r f; do [ -f "$BOX/cur/$f:2,S" ] && moved=$((moved + 1)); done <"$T/bounce-files"
check "$moved" "5" "each file kept its name"

# Read again (put back into new/): nothing counts twice.
for f in "$BOX"/cur/*:2,S; do b=$(basename "$f"); mv "$f" "$BOX/new/${b%:2,S}"; done
run --config "$CONF" --now 2003-08-28T08:00:00Z bounces --maildir "$BOX"
expect_rc 0 "a second run over the same messages"
expect_out "5 already processed" "reports them as processed before"
expect_out "0 addresses suppressed" "suppresses nothing new"
check "$(sql "$DB" "SELECT count(*) FROM event WHERE kind = 'bounce'")" "5" "and logs no second event"
check "$(find "$BOX/cur" -type f | wc -l)" "5" "they go back to cur/"

# The final notice (12 October): the suppressed users are never mailed again.
before=$(pf_count_delivered)
run --config "$CONF" --now 2003-10-12T17:00:00Z send $C
expect_out "15 sent" "the final notice goes to the 15 who exist"
expect_out "5 suppressed" "and is suppressed for the 5 who bounced"
check "$(sql "$DB" "SELECT count(*) FROM delivery d JOIN recipient r ON r.id = d.recipient_id WHERE r.email LIKE 'unknown%' AND d.kind = 'final' AND d.state = 'suppressed'")" \
    "5" "the ledger says suppressed for each of them"
check "$(pf_wait pf_count_delivered $((before + 15)) 60)" "$((before + 15))" "Postfix delivered the 15"
sleep 2
check "$(pf_count_bounces)" "0" "no new DSN came back: they were not mailed"

# ---- (b) the corpus, classified without touching anything -----------------------------------
CORPUS=$CUTOFF_SHARED/corpora/bounces
run --db "$T/absent.db" bounces --dry-run --format json --maildir "$CORPUS/maildir/bsd"
expect_rc 0 "a dry run over the corpus folder"
[ ! -e "$T/absent.db" ]; check $? 0 "a dry run creates no database"
python3 - "$OUT" "$CORPUS" >"$T/corpus" 2>&1 <<'PY'
import csv, json, os, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
files = sorted(os.listdir(os.path.join(sys.argv[2], "maildir/bsd")))
kinds = {"bounce", "delay", "autoreply", "complaint", "unsubscribe", "other"}
rkeys = {"address", "status", "reply_code", "reason", "class"}
shape = all(j["kind"] in kinds and j["attributed_by"] == "none" and isinstance(j["recipients"], list)
            and all(set(r) >= rkeys for r in j["recipients"]) for j in lines)
names = [os.path.basename(j["file"]) for j in lines]
got = {os.path.basename(j["file"]): {r["address"]: r["class"] for r in j["recipients"]} for j in lines}
rows = [r for r in csv.DictReader(open(os.path.join(sys.argv[2], "expected.tsv")), delimiter="\t")
        if r["file"].startswith("maildir/bsd/") and r["hard_soft"] in ("hard", "soft")]
found = sum(1 for r in rows if got.get(r["file"][12:], {}).get(r["recipient"].lower()) == r["hard_soft"])
print(len(lines), len(files), names == files, shape, f"{found / len(rows):.2f}")
PY
read -r n nfiles same shape agree <"$T/corpus"
check "$n" "$nfiles" "one JSON line per corpus message ($(cat "$T/corpus"))"
check "$same" "True" "in file name order"
check "$shape" "True" "each line has kind, attributed_by and recipients with address/status/reply_code/reason/class"
check "$(python3 -c "print($agree >= 0.95)")" "True" "the recipients and hard/soft agree with expected.tsv ($agree)"
run --db "$T/absent.db" bounces --dry-run --format json --mbox "$CORPUS/mailbox/mbox-0"
check "$(python3 -c 'import json,sys; print([json.loads(l)["index"] for l in open(sys.argv[1])] == list(range(1, 38)))' "$OUT")" \
    "True" "an mbox gives one line per message with its index"

# ---- (c) garbage is quarantined, the run goes on ----------------------------------------------
Q=$T/quarantine-c
mkdir -p "$T/box2/new" "$T/box2/cur" "$T/box2/tmp"
printf '\001\002 not a message at all\n' >"$T/box2/new/1.garbage"
printf 'Subject: hello\n\nA person wrote to the bounce address.\n' >"$T/box2/new/2.human"
cp "$BOX/cur/$(head -1 "$T/bounce-files"):2,S" "$T/box2/new/3.dsn"
run --config "$CONF" bounces --maildir "$T/box2" --quarantine "$Q"
expect_rc 0 "quarantining is not a failure"
expect_out "2 quarantined, 1 already processed" "the garbage and the human's message are set aside"
[ -f "$Q/1.garbage" ] && [ -f "$Q/1.garbage.reason" ]; check $? 0 "the garbage is in quarantine with a reason file"
grep -q '^reason: ' "$Q/1.garbage.reason"; check $? 0 "which says why"
grep -q 'left for a person' "$Q/2.human.reason"; check $? 0 "an unrecognised message is left for a person"
check "$(find "$T/box2/new" -type f | wc -l)" "0" "nothing stays in new/"
check "$(find "$T/box2/cur" -type f | wc -l)" "1" "the DSN went on to cur/"

# ---- (d) stdin, for an MTA pipe alias ----------------------------------------------------------
verp=$(grep -m1 -h '^Delivered-To: bounces+' "$BOX"/cur/* | sed 's/^Delivered-To: *//')
sed '/^Delivered-To:/d; /^X-Original-To:/d; s/^To: .*/To: bounces@bounces.example.test/' \
    "$(ls "$BOX"/cur/* | head -1)" >"$T/stripped.eml"
"$CUTOFF_BIN" --config "$CONF" bounces - <"$T/stripped.eml" >"$OUT" 2>"$ERR"; RC=$?
expect_rc 0 "another copy of a DSN already counted, on stdin (attributed by its quoted headers)"
printf 'Subject: x\n\nnothing\n' | "$CUTOFF_BIN" --config "$CONF" bounces - --quarantine "$T/q-stdin" >"$OUT" 2>"$ERR"; RC=$?
expect_rc 0 "unattributable mail on stdin is quarantined and exits 0"
check "$(find "$T/q-stdin" -name 'stdin-*.reason' | wc -l)" "1" "its reason is written beside it"
"$CUTOFF_BIN" --config "$CONF" --db "$T/missing.db" bounces - <"$T/stripped.eml" >"$OUT" 2>"$ERR"; RC=$?
expect_rc 75 "no database: 75, so the MTA keeps the message and retries"
expect_err "will retry" "and says so"
python3 -c 'import sqlite3, sys, time
c = sqlite3.connect(sys.argv[1], isolation_level=None); c.execute("BEGIN EXCLUSIVE")
open(sys.argv[2], "w").close(); time.sleep(14)' "$DB" "$T/locked" &
lock=$!
CLEANUP+=("kill $lock")
for i in $(seq 50); do [ -f "$T/locked" ] && break; sleep 0.1; done
printf 'Subject: x\n\nheld\n' | "$CUTOFF_BIN" --config "$CONF" bounces - --quarantine "$T/q-busy" >"$OUT" 2>"$ERR"; RC=$?
expect_rc 75 "a busy database: 75"
check "$(find "$T/q-busy" -type f 2>/dev/null | wc -l)" "0" "and nothing was quarantined: the MTA still has it"
kill "$lock" 2>/dev/null; wait "$lock" 2>/dev/null
# With the envelope recipient the MTA passes ($ORIGINAL_RECIPIENT), a DSN whose own headers
# lost the VERP address is still attributed by it.
sed -i 's/^Subject: /Subject: (copy) /' "$T/stripped.eml"
ORIGINAL_RECIPIENT=$verp "$CUTOFF_BIN" --config "$CONF" bounces - --format json <"$T/stripped.eml" >"$OUT" 2>"$ERR"; RC=$?
expect_rc 0 "a DSN piped with the envelope recipient in the environment"
expect_out '"attributed_by":"verp"' "is attributed by the VERP token the MTA passed"
finish
