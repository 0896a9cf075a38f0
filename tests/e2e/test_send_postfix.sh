#!/usr/bin/env bash
# End to end through a real MTA: a 2,000-user campaign sent through a private Postfix on
# loopback; every recipient receives exactly one message, with its headers intact.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/postfix.sh"
start_postfix send2000
CONF=$T/cutoff.conf DB=$T/cutoff.db
write_config "$CONF" "$PF_PORT"
sed -i 's/connections = 4/connections = 8/' "$CONF"
copy_campaign
gen_users 2000 42 "$T/users.csv"
"$CUTOFF_BIN" --config "$CONF" init >/dev/null
"$CUTOFF_BIN" --config "$CONF" campaign add "$T/campaigns/$C.cfg" >/dev/null
run --config "$CONF" import $C "$T/users.csv"
expect_rc 0 "a clean list of 2,000 imports without rejects"
n=$(sql "$DB" "SELECT count(*) FROM recipient WHERE state = 'pending'")
check "$n" "2000" "2,000 affected recipients"

# 26 August: every segment's first e-mail is due (Mac OS 9 waited a week).
run --config "$CONF" --now 2003-08-26T17:00:00Z send $C
expect_rc 0 "the wave goes out"
expect_out "2000 sent, 0 deferred, 0 failed" "every message accepted by Postfix"
got=$(pf_wait pf_count_delivered 2000 120)
check "$got" "2000" "Postfix delivered 2,000 messages"
pf_recipients | sort >"$T/delivered"
sql "$DB" "SELECT email FROM recipient" | sort >"$T/expected"
check "$(sort -u "$T/delivered" | wc -l)" "2000" "2,000 distinct recipients"
if cmp -s "$T/delivered" "$T/expected"; then ok; else RC=-; not_ok "each recipient exactly once (diff: $(diff "$T/expected" "$T/delivered" | head -5))"; fi

# Headers intact: every message parses strictly; one is checked field by field.
bad=0
for f in $(find "$PF_MAIL/inbox/new" -type f | head -200); do
    /usr/bin/python3 "$SRC/tests/tools/strict_parse.py" "$f" >/dev/null 2>"$T/strict.err" || { bad=$((bad + 1)); cat "$T/strict.err"; }
done
check "$bad" "0" "200 delivered messages parse under Python's strict policy"
f=$(grep -l '^Delivered-To: ' "$PF_MAIL/inbox/new/"* | head -1)
to=$(grep -m1 '^Delivered-To:' "$f" | sed 's/^Delivered-To: *//')
uid=$(sql "$DB" "SELECT user_id FROM recipient WHERE email = '$to'")
grep -q "^X-Cutoff-Campaign: $C" "$f"; check $? 0 "the campaign header arrived"
grep -q "^X-Cutoff-Recipient: $uid" "$f"; check $? 0 "the recipient header names the user"
grep -q "^Return-Path: <bounces+" "$f"; check $? 0 "the VERP envelope sender arrived as Return-Path"
grep -q '^Auto-Submitted: auto-generated' "$f"; check $? 0 "Auto-Submitted survives"
mid=$(grep -m1 -i '^Message-ID:' "$f" | sed 's/^[^<]*<//; s/>.*//')
check "$(sql "$DB" "SELECT count(*) FROM delivery d JOIN recipient r ON r.id = d.recipient_id WHERE r.email = '$to' AND d.message_id = '$mid' AND d.state = 'sent'")" \
    "1" "the ledger holds the delivered Message-ID"

run --config "$CONF" --now 2003-08-26T17:00:00Z send $C
expect_out "0 sent" "a second run the same day sends nothing"
sleep 1
check "$(pf_count_delivered)" "2000" "and Postfix got nothing more"
finish
