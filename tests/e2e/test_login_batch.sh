#!/usr/bin/env bash
# `cutoff login --batch` as a login server or a log replay uses it: one answer per line, in
# order; JSON in every shape a peer may write (escapes, extra and nested members, numbers and
# strings for the time, CRLF, no final newline); a clear error answer for what is not a login,
# without losing the others; and an answer as soon as a line is decided when no more input is
# waiting (a login server writes one line and waits).
. "$(dirname "$0")/lib.sh"
copy_campaign
write_config "$T/cutoff.conf" "$(free_port)"
{
    echo "user_id,email,name,locale,timezone,client,version,platform,os,country"
    echo "ana,ana@users.example.test,Ana,en-US,America/Los_Angeles,msn-messenger,4.6,windows,XP,US"
    echo "jérôme,jerome@users.example.test,J,fr-FR,Europe/Paris,msn-messenger,4.6,windows,XP,FR"
    echo "bob,bob@users.example.test,Bob,en-US,America/Los_Angeles,msn-messenger,4.6,windows,XP,US"
    echo "cy,cy@users.example.test,Cy,en-US,America/Los_Angeles,msn-messenger,4.6,windows,XP,US"
} >"$T/users.csv"
load_campaign "$T/cutoff.conf" "$T/users.csv"
DB=$T/cutoff.db
batch() { "$CUTOFF_BIN" --config "$T/cutoff.conf" --now 2003-09-20T17:00:00Z login --batch "$@"; }

# One line per case; the answer expected for each, by line.
printf '%s\r\n' '{"user":"ana","client_version":"4.6","time":"2003-09-20T17:00:00Z"}' >"$T/in.jsonl"
cat >>"$T/in.jsonl" <<'EOF'
{ "user" : "j\u00e9r\u00f4me" , "client_version" : "4.6", "platform": null, "extra": [1, {"a": 2}] }

{"user":"ana","client_version":"4.6","time":1064077260}
{"user":"bob","client_version":"5.0","time":"2003-09-20T10:00:00-07:00","geo":{"country":"US"}}
{"user":"nobody","client_version":"4.6"}
{"user":"cy","user":"ana"}
{"user":42}
{"user":"cy","time":true}
{"user":"cy","time":"yesterday"}
{"user":"cy","client_version":4.6}
{"user":"cy"} trailing
[1,2]
{"user":"cy","note":"a \"quoted\" \\ value \ud83d\ude00","time":1064077300.5}
EOF
printf '%s' '{"user":"cy","client_version":"4.6","time":"2003-09-20T17:05:00Z"}' >>"$T/in.jsonl"
batch <"$T/in.jsonl" >"$T/out.jsonl" 2>"$ERR"
RC=$?
expect_rc 65 "some lines were not logins: exit 65, after answering all"
/usr/bin/python3 - "$T/out.jsonl" >"$T/cases.out" <<'PY'
import json, sys
for line in open(sys.argv[1], encoding="utf-8"):
    a = json.loads(line)
    r = a["reminder"]
    print(a["user"], "reminder" if r else "-", "completed" if a["completed"] else "-",
          ("error: " + a["error"].split(": ", 1)[1][:24]) if "error" in a else "")
PY
check "$(cat "$T/cases.out")" "$(cat <<'EOF'
ana reminder - 
jérôme reminder - 
ana - - 
bob - completed 
nobody - - 
None - - error: duplicate object key nea
None - - error: "user" must be a non-emp
cy - - error: "time" must be Unix seco
cy - - error: "time" must be Unix seco
cy - - error: "client_version" must be
None - - error: end of file expected nea
None - - error: not a JSON object
cy - - error: "time" must be Unix seco
cy reminder - 
EOF
)" "every case answered in order, with the reason when it is not a login"
expect_err "8 input line(s) were not logins" "the summary on stderr"
grep -q '"text":"Votre version' "$T/out.jsonl"; check $? 0 "jérôme (escaped in the input) gets the French text"
check "$(sql "$DB" "SELECT count(*) FROM login")" "6" "every login recorded, and nothing for the bad lines"
check "$(sql "$DB" "SELECT group_concat(outcome, ' ') FROM (SELECT outcome FROM login ORDER BY id)")" \
    "reminder reminder none completed unknown reminder" "with its outcome"

# An over-long line is refused on its own and the next one still answered, whether it is read
# whole (from a file) or arrives in pieces (a pipe, the newline much later).
{ printf '{"user":"cy","pad":"'; head -c 70000 /dev/zero | tr '\0' 'x'; printf '"}\n'
  echo '{"user":"zed"}'; } >"$T/long.in"
batch <"$T/long.in" >"$T/long.jsonl" 2>/dev/null
{ head -c 40000 "$T/long.in"; sleep 0.3; head -c 70000 "$T/long.in" | tail -c 30000; sleep 0.3
  tail -c +70001 "$T/long.in"; } | batch >"$T/long2.jsonl" 2>/dev/null
for f in long long2; do
    check "$(sed -n 1p "$T/$f.jsonl" | grep -c 'longer than 65536 bytes')" "1" "$f: an over-long line gets an error"
    check "$(sed -n 2p "$T/$f.jsonl")" '{"user":"zed","reminder":null,"completed":false}' "$f: and the next line its answer"
done

# Escapes the fast reader decodes itself (a surrogate pair, quotes, solidus), and a lone
# surrogate it leaves to jansson, which refuses it.
printf '%s\n' '{"user":"bob","note":"\ud83d\ude00 \"q\" \\ \/","client_version":"4.6"}' \
    '{"user":"b\udc00ob"}' | batch >"$T/esc.jsonl" 2>/dev/null
check "$(sed -n 1p "$T/esc.jsonl")" '{"user":"bob","reminder":null,"completed":true}' "escapes decoded"
check "$(sed -n 2p "$T/esc.jsonl" | grep -c '"error":"line 2: invalid Unicode')" "1" "a lone surrogate refused"

# A long stream goes through the input thread in blocks of 2,048 parsed lines, four at a
# time: 9,000 lines (blank ones and errors among them, one over-long) all answered, in order,
# with the right line numbers past every block boundary.
/usr/bin/python3 - "$T/long.jsonl" <<'PY'
import sys
with open(sys.argv[1], "w") as f:
    for i in range(1, 9001):
        if i % 1000 == 0:
            f.write('{"user":"u%d","time":"soon"}\n' % i)
        elif i % 777 == 0:
            f.write("\n")
        elif i == 4100:
            f.write('{"user":"%s"}\n' % ("x" * 70000))
        else:
            f.write('{"user":"u%d","client_version":"4.6","time":1064077260}\n' % i)
PY
batch <"$T/long.jsonl" >"$T/long.out" 2>"$ERR"
RC=$?
expect_rc 65 "the long stream: exit 65 for its bad lines"
check "$(wc -l <"$T/long.out")" "8989" "one answer per non-blank line (9,000 less 11 blank)"
check "$(grep -o '"error":"line [0-9]*' "$T/long.out" | cut -d' ' -f2 | tr '\n' ' ')" \
    "1000 2000 3000 4000 4100 5000 6000 7000 8000 9000 " "errors carry their line numbers"
check "$(grep -o '"user":"u[0-9]*' "$T/long.out" | cut -d'u' -f3 | sort -n | uniq | wc -l)" \
    "$(grep -o '"user":"u[0-9]*' "$T/long.out" | wc -l)" "no line answered twice"
check "$(grep -o '"user":"u[0-9]*' "$T/long.out" | cut -d'u' -f3 | sort -n -c && echo sorted)" \
    "sorted" "answers in input order"
check "$(sql "$DB" "SELECT count(*) FROM login WHERE user_id GLOB 'u[0-9]*'")" \
    "8979" "every login of the stream recorded (8,989 answers less 10 errors)"

# The stream's connection gathers a commit's WAL frames into a few large writes (SQLite
# writes each frame as two: header, then page): 3,000 logins in one commit take a handful of
# writes to the -wal file, not two per frame (strace, which Debian machines have; else skipped).
if command -v strace >/dev/null; then
    /usr/bin/python3 - "$T/wal.jsonl" <<'PY'
import sys
with open(sys.argv[1], "w") as f:
    for i in range(3000):
        f.write('{"user":"w%05d","client_version":"4.6","time":1064077260}\n' % i)
PY
    strace -f -qq -e trace=openat,pwrite64 -o "$T/wal.strace" \
        "$CUTOFF_BIN" --config "$T/cutoff.conf" --now 2003-09-20T17:00:00Z login --batch \
        <"$T/wal.jsonl" >/dev/null 2>"$ERR"
    # Every descriptor opened on the -wal (the checkpoint thread's connection opens it too, and
    # may do so first); only the batch's connection writes to it.
    walfds=$(grep -- '-wal", ' "$T/wal.strace" | grep -o '= [0-9]*$' | cut -c3- | sort -u |
        paste -sd'|')
    writes=$(grep -cE "pwrite64\(($walfds), " "$T/wal.strace")
    pages=$(grep -E "pwrite64\(($walfds), " "$T/wal.strace" | grep -o '= [0-9]*$' | cut -c3- |
        awk '{s += $1} END {print int(s / 4120)}')
    # The batch commits every so many logins or milliseconds: on a busy machine twice. Each
    # commit may write the WAL's header (a restart) and then its frames in one piece.
    commits=$(grep -o '[0-9]* commits' "$ERR" | cut -d' ' -f1)
    check "$([ "$pages" -ge 20 ] && [ "$writes" -le $((2 * ${commits:-1})) ] &&
        [ "$writes" -le $((pages / 5)) ] && echo few)" "few" \
        "the WAL gets $commits commits' $pages frames in $writes writes"
else
    echo "skipped: no strace for the WAL write count"
fi

# A login server writes one line and waits: the answer comes without closing the input.
coproc LOGIN { batch 2>/dev/null; }
echo '{"user":"ana","client_version":"4.6","time":"2003-09-21T17:00:00Z"}' >&"${LOGIN[1]}"
if read -r -t 10 answer <&"${LOGIN[0]}"; then ok; else RC=-; not_ok "no answer within 10 s while the input stays open"; fi
check "$(echo "$answer" | grep -c '"reminder":{')" "1" "and it is the next day's reminder"
check "$(sql "$DB" "SELECT count(*) FROM login_reminder")" "4" "committed before it was answered"
exec {LOGIN[1]}>&-
wait "$LOGIN_PID"
finish
