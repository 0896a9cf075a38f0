#!/usr/bin/env bash
# Two senders started together on the same database produce no duplicate: the run lock turns
# the second away; and even two senders that bypass the lock (the database reached through a
# second path, so the lock files differ) never send a delivery twice, because each batch is
# claimed with one atomic UPDATE ... RETURNING.
. "$(dirname "$0")/lib.sh"
start_smtpd --delay-ms 1
CONF=$T/cutoff.conf DB=$T/cutoff.db
write_config "$CONF" "$SMTP_PORT"
copy_campaign
gen_users 3000 9 "$T/users.csv"
load_campaign "$CONF" "$T/users.csv"
NOW=2003-08-26T17:00:00Z

# 1. Through the same path: the lock lets one run, the other exits 75 naming it.
"$CUTOFF_BIN" --config "$CONF" --now $NOW send $C --limit 1000 >"$T/a.out" 2>"$T/a.err" &
a=$!
"$CUTOFF_BIN" --config "$CONF" --now $NOW send $C --limit 1000 >"$T/b.out" 2>"$T/b.err" &
b=$!
wait $a; ra=$?
wait $b; rb=$?
[ $((ra == 75 || rb == 75)) -eq 1 ]; check $? 0 "one of two simultaneous runs is turned away (exit 75)"
grep -q "another cutoff run is already working" "$T/a.err" "$T/b.err"; check $? 0 "it says another run is working"

# 2. Around the lock: two senders on one database file through two paths.
ln -s "$DB" "$T/same.db"
"$CUTOFF_BIN" --config "$CONF" --now $NOW send $C >"$T/c.out" 2>&1 &
c=$!
"$CUTOFF_BIN" --config "$CONF" --db "$T/same.db" --now $NOW send $C >"$T/d.out" 2>&1 &
d=$!
wait $c; wait $d
sent_c=$(sed -n 's/^sent [^:]*: \([0-9]*\) sent.*/\1/p' "$T/c.out")
sent_d=$(sed -n 's/^sent [^:]*: \([0-9]*\) sent.*/\1/p' "$T/d.out")
echo "concurrent senders: ${sent_c:-?} and ${sent_d:-?} messages; $(wc -l <"$SMTP_OUT") accepted in all"
[ "${sent_c:-0}" -gt 0 ] && [ "${sent_d:-0}" -gt 0 ]; check $? 0 "both senders really sent (they ran at once)"
accepted=$(wc -l <"$SMTP_OUT")
unique=$(/usr/bin/python3 -c 'import json,sys; print(len({tuple(json.loads(l)["rcpt"]) for l in open(sys.argv[1])}))' "$SMTP_OUT")
check "$unique" "3000" "every recipient got the message"
check "$accepted" "3000" "and no one got it twice"
check "$(sql "$DB" "SELECT count(*) FROM delivery WHERE state = 'sent'")" "3000" "the ledger agrees"
finish
