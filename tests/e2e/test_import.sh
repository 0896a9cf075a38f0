#!/usr/bin/env bash
# End to end: `cutoff import` on generated and hand-made CSVs: counts, idempotence, merges,
# and every bad input with a clear error and nothing partial left behind.
. "$(dirname "$0")/lib.sh"
DB=$T/cutoff.db
C=messenger-upgrade
"$CUTOFF_BIN" --db "$DB" init >/dev/null
"$CUTOFF_BIN" --db "$DB" campaign add "$SRC/campaigns/$C.cfg" >/dev/null
count() { sql "$DB" "SELECT count(*) FROM recipient $1"; }
H="user_id,email,name,locale,timezone,client,version,platform,os,country"

# A generated list: every row is accounted for, re-importing changes nothing.
python3 "$SRC/tools/gen-users" --count 3000 --seed 7 -o "$T/users.csv"
run --db "$DB" import $C "$T/users.csv"
expect_rc 65 "a list with malformed rows imports the rest and exits 65"
rows=$(awk '/ rows$/ {print $(NF-1)}' "$OUT")
check "$rows" "3000" "every data row is counted"
sum=$(awk '$1=="added"||$1=="updated"||$1=="unchanged"||$1=="merged"||$1=="rejected"{s+=$2}
           $1=="not"{s+=$3} END{print s}' "$OUT")
check "$sum" "3000" "added+updated+unchanged+merged+not affected+rejected = rows"
added=$(awk '$1=="added"{print $2}' "$OUT")
check "$(count "")" "$added" "the database holds exactly the added recipients"
rejected=$(awk '$1=="rejected"{print $2}' "$OUT")
check "$(($(wc -l <"$T/users.csv.rejects.csv") - 1))" "$rejected" "one rejects line per rejected row"
run --db "$DB" import $C "$T/users.csv"
check "$(awk '$1=="added"{print $2}' "$OUT")" "0" "a second import adds nothing"
check "$(awk '$1=="updated"{print $2}' "$OUT")" "0" "and updates nothing"
check "$(count "")" "$added" "and the count is unchanged"

# Hand-made edge cases, one file, with line numbers to check.
printf '\xef\xbb\xbf%s\r\n' "$H" >"$T/edge.csv"
cat >>"$T/edge.csv" <<'CSV'
a1,alice@Users.Example.Test,"Smith, Alice",fr_FR,Europe/Paris,msn-messenger,4.6,windows,XP,"FR"
a2,bob@users.example.test,"Bob ""the builder"" Jones",de,Europe/Berlin,windows-messenger,4.7.300,windows,XP,"D
E"
a3,carol@users.example.test,Carol,en,,msn-messenger,6.0,windows,XP,US
a4,no-at-sign.example.test,Dan,en,,msn-messenger,4.0,windows,XP,US
a5,erin@users.example.test,Erin,en,,msn-messenger,4.0,windows
a6,frank@users.example.test,Frank,en,Mars/Base,msn-messenger,4.0,windows,XP,US
a7,grace@users.example.test,Grace,en,,msn-messenger,v4,windows,XP,US
a8,heidi@users.example.test,He"idi,en,,msn-messenger,4.0,windows,XP,US
a9,alice@users.example.test,Alice again,fr,,msn-messenger,4.6,windows,XP,FR
a1,alice@users.example.test,"Smith, Alice",fr_FR,Europe/Paris,msn-messenger,4.6,windows,XP,"FR"
a10,ivan@users.example.test,Ivan,en,,trillian,2.0,windows,XP,US
CSV
printf 'a11,judy@users.example.test,J\xffdy,en,,msn-messenger,4.0,windows,XP,US\r\n' >>"$T/edge.csv"
printf 'a12,mallory@users.example.test,"Mallory\r\nBcc: x@evil.example.test",en,,msn-messenger,4.0,windows,XP,US\r\n' >>"$T/edge.csv"
run --db "$DB" import $C "$T/edge.csv" --rejects "$T/edge.rejects.csv"
expect_rc 65 "edge cases: some rejected"
rej=$T/edge.rejects.csv
grep -q '^6,"email .no-at-sign.example.test.: no @' "$rej"; check $? 0 "bad address rejected at line 6 (after a 2-line row)"
grep -q '^7,"expected 10 fields as in the header, found 8"' "$rej"; check $? 0 "wrong column count at line 7"
grep -q "^8,\"timezone 'Mars/Base' is not an IANA time zone" "$rej"; check $? 0 "bad time zone at line 8"
grep -q "^9,\"version 'v4' is not dotted numbers" "$rej"; check $? 0 "bad version at line 9"
grep -q '^10,"malformed CSV' "$rej"; check $? 0 "stray quote at line 10"
grep -q "^14,\"column 'name' is not valid UTF-8\"" "$rej"; check $? 0 "invalid UTF-8 at line 14"
grep -q "^15,\"column 'name' contains a line break" "$rej"; check $? 0 "CR/LF in a name is refused"
check "$(sql "$DB" "SELECT email FROM recipient WHERE user_id='a1'")" "alice@users.example.test" \
    "the domain is lower-cased"
check "$(sql "$DB" "SELECT name FROM recipient WHERE user_id='a1'")" "Smith, Alice" "quoted comma kept"
check "$(sql "$DB" "SELECT locale FROM recipient WHERE user_id='a1'")" "fr-FR" "locale normalised"
# The reader measures each field for the store (store_recipient.text_len): all of it is stored.
check "$(sql "$DB" "SELECT user_id || '|' || email || '|' || locale || '|' || timezone || '|' ||
    client || '|' || version || '|' || platform || '|' || os FROM recipient WHERE user_id='a2'")" \
    "a2|bob@users.example.test|de|Europe/Berlin|windows-messenger|4.7.300|windows|XP" \
    "every field stored whole"
check "$(sql "$DB" "SELECT name FROM recipient WHERE user_id='a2'")" 'Bob "the builder" Jones' \
    "doubled quotes kept"
check "$(sql "$DB" "SELECT attrs FROM recipient WHERE user_id='a2'")" '{"country":"D\nE"}' \
    "a quoted newline is kept in an attribute"
check "$(sql "$DB" "SELECT attrs FROM recipient WHERE user_id='a1'")" '{"country":"FR"}' \
    "extra columns kept as attributes"
check "$(sql "$DB" "SELECT count(*) FROM recipient WHERE user_id='a3'")" "0" \
    "an upgraded user is not affected and not stored"
check "$(sql "$DB" "SELECT count(*) FROM recipient WHERE user_id='a9'")" "0" \
    "the same address under another user id is merged, not doubled"
check "$(sql "$DB" "SELECT count(*) FROM recipient WHERE email='alice@users.example.test'")" "1" \
    "one recipient for alice"
check "$(awk '$1=="merged"{print $2}' "$OUT")" "2" "two rows merged (a9, and a1 twice)"
check "$(sql "$DB" "SELECT s.name FROM recipient r JOIN segment s ON s.id=r.segment_id WHERE user_id='a10'")" \
    "third-party" "Trillian goes to the third-party segment"

# A rejected row goes to the rejects file as it was read: blanks around a value are kept (not
# cut by a NUL byte), so the fixed file imports again; the value stored is trimmed.
printf '%s\nw1,not-an-address  ,Walt  ,en,,msn-messenger,4.0,windows,XP,US\nw2,  w2@users.example.test  ,  Wanda  ,en,,msn-messenger,4.0,windows,XP,US\n' "$H" >"$T/blanks.csv"
run --db "$DB" import $C "$T/blanks.csv"
expect_rc 65 "a row with a bad address among blanks"
check "$(tr -d '\000' <"$T/blanks.csv.rejects.csv" | cmp -s - "$T/blanks.csv.rejects.csv"; echo $?)" "0" \
    "the rejects file holds no NUL byte"
grep -q '^2,"email .not-an-address.: no @ in address","w1","not-an-address  ","Walt  ",' "$T/blanks.csv.rejects.csv"
check $? 0 "the rejected row is written as read, blanks and all"
check "$(sql "$DB" "SELECT email || '|' || name FROM recipient WHERE user_id='w2'")" \
    "w2@users.example.test|Wanda" "the stored values are trimmed"

# Files that cannot be imported at all leave nothing behind.
before=$(count "")
printf 'user_id,name,country\nz1,Zed,US\n' >"$T/noemail.csv"
run --db "$DB" import $C "$T/noemail.csv"
expect_rc 65 "a header without email is bad data"
expect_err "the header has no 'email' column" "and says so"
: >"$T/empty.csv"
run --db "$DB" import $C "$T/empty.csv"
expect_rc 65 "an empty file is bad data"
expect_err "is empty" "and says so"
printf 'user_id,email\nz2,z2@users.example.test\n' >"$T/noattr.csv"
run --db "$DB" import $C "$T/noattr.csv"
expect_rc 65 "a file without a column the templates use is bad data"
expect_err "the header has no 'country' column" "and names the column"
run --db "$DB" import $C "$T/does-not-exist.csv"
expect_rc 66 "a missing file is 'not found'"
printf '%s\nu1,u1@users.example.test,,,,msn-messenger,4.0,windows,XP,US\n' "$H" >"$T/locked.csv"
chmod 000 "$T/locked.csv"
if [ "$(id -u)" -ne 0 ]; then
    run --db "$DB" import $C "$T/locked.csv"
    expect_rc 74 "an unreadable file is an I/O error"
fi
run --db "$DB" import no-such-campaign "$T/users.csv"
expect_rc 66 "an unknown campaign is 'not found'"
check "$(count "")" "$before" "none of these changed the database"

# Truncated inside a quoted field: the last row is rejected, the rest imported.
printf '%s\nt1,t1@users.example.test,T1,,,msn-messenger,4.0,windows,XP,US\nt2,t2@users.example.test,"T2 unterminated,,,msn-messenger,4.0,windows,XP,US\n' "$H" >"$T/trunc.csv"
run --db "$DB" import $C "$T/trunc.csv"
expect_rc 65 "a truncated file"
grep -q '^3,"the file ends inside a quoted field' "$T/trunc.csv.rejects.csv"; check $? 0 "truncation reported at line 3"
check "$(count "WHERE user_id='t1'")" "1" "the complete row before it is imported"

# A 10 MB line is rejected without swallowing the file; LF-only and CR-only files work.
{ echo "$H"; printf 'big,big@users.example.test,'; head -c 10485760 /dev/zero | tr '\0' x
  printf ',,,msn-messenger,4.0,windows,XP,US\n'; echo "after,after@users.example.test,,,,msn-messenger,4.0,windows,XP,US"; } >"$T/big.csv"
run --db "$DB" import $C "$T/big.csv"
expect_rc 65 "a 10 MB line"
grep -q '^2,"the row is longer than' "$T/big.csv.rejects.csv"; check $? 0 "the long row is rejected at line 2"
check "$(count "WHERE user_id='after'")" "1" "the row after it is imported"
printf '%s\rcr1,cr1@users.example.test,,,,msn-messenger,4.0,windows,XP,US\rcr2,bad,,,,msn-messenger,4.0,windows,XP,US\r' "$H" >"$T/cr.csv"
run --db "$DB" import $C "$T/cr.csv"
check "$(count "WHERE user_id='cr1'")" "1" "CR-only line endings"
grep -q '^3,' "$T/cr.csv.rejects.csv"; check $? 0 "CR-only files count lines too"

# An updated list: changed rows are updated, the rest unchanged.
sed -e 's/^u00000010,\([^,]*\),\([^,]*\),/u00000010,\1,Renamed Person,/' "$T/users.csv" >"$T/users2.csv"
run --db "$DB" import $C "$T/users2.csv"
if grep -q '^u00000010,' "$T/users.csv" && [ "$(sql "$DB" "SELECT count(*) FROM recipient WHERE user_id='u00000010'")" = 1 ]; then
    check "$(awk '$1=="updated"{print $2}' "$OUT")" "1" "one changed row is one update"
    check "$(sql "$DB" "SELECT name FROM recipient WHERE user_id='u00000010'")" "Renamed Person" "with the new name"
fi

# One import a database at a time, and no `cutoff forget` during one (db/017: an import keeps
# its new recipients' address keys in memory until its end): both refused with exit 75 while
# another process holds the import lock, both fine once it is released.
exec 8>"$DB.import-lock"
flock -x 8
run --db "$DB" import $C "$T/cr.csv"
expect_rc 75 "an import while another holds the import lock"
expect_err "another cutoff import is already working on" "it says an import is running"
run --db "$DB" forget cr1
expect_rc 75 "forget while an import holds the lock"
check "$(count "WHERE user_id='cr1'")" "1" "and cr1 is still there"
exec 8>&-
run --db "$DB" import $C "$T/cr.csv"
expect_rc 65 "the import goes ahead once the lock is free"

# A crash in the middle of an import: the batches it committed stay, their recipients are
# found by address (their keys not added yet: the span in import_pending), and cutoff init
# adds those keys (as the next import and the daily run would). The CSV comes through a FIFO held open, so the importer is
# killed mid-file at a known point: after whole batches, with the rest uncommitted.
CDB=$T/crash.db
"$CUTOFF_BIN" --db "$CDB" init >/dev/null
"$CUTOFF_BIN" --db "$CDB" campaign add "$SRC/campaigns/$C.cfg" >/dev/null
python3 "$SRC/tools/gen-users" --count 120000 --seed 11 --malformed 0 --duplicates 0 -o "$T/crash.csv"
mkfifo "$T/fifo.csv"
"$CUTOFF_BIN" --db "$CDB" import $C "$T/fifo.csv" >/dev/null 2>&1 &
importer=$!
exec 9>"$T/fifo.csv"
cat "$T/crash.csv" >&9
for _ in $(seq 1 300); do
    [ "$(sql "$CDB" "SELECT count(*) FROM recipient")" -ge 50000 ] && break
    sleep 0.1
done
kill -9 "$importer"; wait "$importer" 2>/dev/null
exec 9>&-
n=$(sql "$CDB" "SELECT count(*) FROM recipient")
check "$((n >= 50000 && n < 120000))" "1" "the killed import left whole batches ($n recipients)"
check "$(sql "$CDB" "SELECT count(*) FROM import_pending")" "1" "its span is pending"
check "$(sql "$CDB" "SELECT count(*) FROM recipient_key")" "0" "with no key added yet"
addr=$(sql "$CDB" "SELECT email FROM recipient WHERE id = 1000")
run --db "$CDB" user "$addr"
expect_rc 0 "cutoff user finds a pending recipient by address"
expect_out "<$addr>" "and shows it"
# cutoff init (and the daily cutoff run) add the keys of a dead import, but not while an
# import holds the lock: that one's keys are its own.
exec 8>"$CDB.import-lock"
flock -x 8
run --db "$CDB" init
expect_rc 0 "init while an import holds the lock"
check "$(sql "$CDB" "SELECT count(*) FROM import_pending")" "1" "leaves the span pending"
exec 8>&-
# A lock that cannot be opened (here a directory in its place) leaves the span too, and says so.
mkdir "$CDB.import-lock.d"; mv "$CDB.import-lock" "$CDB.import-lock.f"; mv "$CDB.import-lock.d" "$CDB.import-lock"
run --db "$CDB" -v init
expect_rc 0 "init when the import lock cannot be opened"
expect_err "the address keys of an import that did not finish wait" "says the keys wait"
check "$(sql "$CDB" "SELECT count(*) FROM import_pending")" "1" "and leaves the span pending"
rmdir "$CDB.import-lock"; mv "$CDB.import-lock.f" "$CDB.import-lock"
run --db "$CDB" -v init
expect_rc 0 "init after the crash"
expect_err "adding the address keys of an import that did not finish" "says it finishes the pending span"
check "$(sql "$CDB" "SELECT count(*) FROM import_pending")" "0" "nothing is pending after it"
check "$(sql "$CDB" "SELECT count(*) FROM recipient_key")" "$n" "every recipient's key is added"
# The daily run does the same first thing (here it then stops: no relay is configured).
sql "$CDB" "INSERT INTO import_pending SELECT 1, max(id) - 99 FROM recipient;
    DELETE FROM recipient_key WHERE recipient_id >= (SELECT first_id FROM import_pending)"
run --db "$CDB" --now 2003-01-01T00:00:00Z run
check "$(sql "$CDB" "SELECT count(*) FROM import_pending")" "0" "cutoff run adds a dead import's keys"
check "$(sql "$CDB" "SELECT count(*) FROM recipient_key")" "$n" "all of them"
printf '%s\nz1,z1@users.example.test,,,,msn-messenger,4.0,windows,XP,US\n' "$H" >"$T/one.csv"
run --db "$CDB" import $C "$T/one.csv"
expect_rc 0 "the next import"
check "$(sql "$CDB" "SELECT count(*) FROM recipient_key")" "$((n + 1))" "adds its own key"
check "$(sql "$CDB" "SELECT count(*) FROM recipient r WHERE NOT EXISTS (SELECT 1 FROM recipient_key k
    WHERE k.recipient_id = r.id AND k.email_key = r.email_key)")" "0" "each under its own key"
run --db "$CDB" import $C "$T/crash.csv"
expect_rc 0 "importing the whole file again"
# The same people with the same data as one import of the file into a new database.
RDB=$T/ref.db
"$CUTOFF_BIN" --db "$RDB" init >/dev/null
"$CUTOFF_BIN" --db "$RDB" campaign add "$SRC/campaigns/$C.cfg" >/dev/null
"$CUTOFF_BIN" --db "$RDB" import $C "$T/crash.csv" >/dev/null
people() { sql "$1" "SELECT user_id, email, name, segment_id, state FROM recipient
    WHERE user_id <> 'z1' ORDER BY user_id" | md5sum; }
check "$(people "$CDB")" "$(people "$RDB")" "the crash, the next import and a re-import leave what one import does"
check "$(sql "$CDB" "SELECT count(*) FROM recipient_key")" "$(sql "$CDB" "SELECT count(*) FROM recipient
    WHERE email_key IS NOT NULL")" "one key row for each holder"
check "$(sql "$CDB" "PRAGMA integrity_check")" "ok" "and the database is sound"
finish
