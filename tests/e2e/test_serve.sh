#!/usr/bin/env bash
# `cutoff serve`, the real service on loopback, driven with curl and the C client
# (tests/tools/serve_client.c): the login decisions of `cutoff login` (due, already reminded,
# completed, unknown, outside the window, suppressed), authentication, every kind of bad input
# with its status and JSON error, 16 connections logging in one user at once (one reminder),
# the daily run beside a load (nothing lost), batch order, metrics, a busy database (retried,
# or 503 with nothing recorded), the WAL checkpointed by the service (bounded under load,
# truncated when idle), a Unix socket, socket activation, and SIGTERM with requests
# in flight (all answered, all recorded, exit 0).
. "$(dirname "$0")/lib.sh"
command -v curl >/dev/null || { echo "SKIP: curl is not installed (apt-get install curl)"; exit 77; }
CLIENT=${CUTOFF_SERVE_CLIENT:-}
[ -x "$CLIENT" ] || { echo "FAIL: CUTOFF_SERVE_CLIENT (tests/tools/serve_client.c) is not built"; exit 1; }
copy_campaign
start_smtpd
write_config "$T/cutoff.conf" "$SMTP_PORT"
{
    echo "user_id,email,name,locale,timezone,client,version,platform,os,country"
    for u in ana bob cy dee eve fay gus; do
        echo "$u,$u@users.example.test,${u^},en-US,America/Los_Angeles,msn-messenger,4.6,windows,XP,US"
    done
    for i in $(seq 1 310); do
        printf 'u%08d,u%d@users.example.test,U %d,en-US,America/Los_Angeles,msn-messenger,4.6,windows,XP,US\n' "$i" "$i" "$i"
    done
} >"$T/users.csv"
load_campaign "$T/cutoff.conf" "$T/users.csv"
DB=$T/cutoff.db
NOW=2003-09-20T17:00:00Z
openssl rand -hex 32 >"$T/token"; chmod 600 "$T/token"
AUTH="Authorization: Bearer $(cat "$T/token")"

# start_serve NOW ARGS...: cutoff serve at time NOW on a free port (URL, SPID), answering once
# /healthz does; stopped at exit.
# WRAP (an array) goes before the binary: a command that starts it under other limits; OPTS
# (an array) after it, before the command.
WRAP=() OPTS=()
start_serve() {
    local now=$1 i; shift
    PORT=$(free_port) URL=http://127.0.0.1:$PORT
    "${WRAP[@]}" "$CUTOFF_BIN" "${OPTS[@]}" --config "$T/cutoff.conf" --now "$now" \
        serve --listen "127.0.0.1:$PORT" --token-file "$T/token" "$@" >"$T/serve.out" 2>"$T/serve.err" &
    SPID=$!
    CLEANUP+=("kill $SPID; wait $SPID")
    for i in $(seq 100); do curl -sf "$URL/healthz" >/dev/null 2>&1 && return 0; sleep 0.1; done
    echo "FAIL: cutoff serve did not start"; cat "$T/serve.err"; exit 1
}
# post PATH BODY [CURL ARGS...]: POSTs with the token; status in $STATUS, body in $OUT.
post() {
    local path=$1 body=$2; shift 2
    STATUS=$(curl -s -o "$OUT" -w '%{http_code}' -H "$AUTH" -H 'Content-Type: application/json' \
        --data-binary "$body" "$@" "$URL$path")
}
# get PATH [CURL ARGS...]: a GET with the token.
get() { local path=$1; shift; STATUS=$(curl -s -o "$OUT" -w '%{http_code}' -H "$AUTH" "$@" "$URL$path"); }
# json EXPR: a Python expression over the last answer (a).
json() { python3 -c "import json,sys; a=json.load(open(sys.argv[1])); print($1)" "$OUT"; }
# login USER VERSION: one login; prints the campaign of the reminder shown, or - for none.
login() {
    post /v1/logins "{\"user\":\"$1\",\"client_version\":\"$2\",\"platform\":\"windows\"}"
    [ "$STATUS" = 200 ] || { echo "HTTP $STATUS"; return; }
    json '(a["reminder"] or {}).get("campaign", "-") + (" completed" if a["completed"] else "")'
}
logins() { sql "$DB" "SELECT count(*) FROM login $1"; }

# ---- the decisions: those of `cutoff login` ----
printf '%s' "eve@users.example.test" | sha256sum | cut -c1-64 >"$T/eve.hash"
sql "$DB" "INSERT INTO suppression (address_hash, email, reason, created_at)
           VALUES ('$(cat "$T/eve.hash")', 'eve@users.example.test', 'hard-bounce', 0)"
start_serve "$NOW"
check "$(login ana 4.6)" "messenger-upgrade" "due: the first login in the period gets the reminder"
# Threads that the decider or a timer wakes must not preempt the decider: the HTTP thread that
# took a connection and the checkpointer run SCHED_BATCH (policy 3); the decider does not. The
# WAL's syncer (the disk wakes it, and the answers it releases must not wait for a CPU) runs
# SCHED_FIFO 1 (policy 1) where this process may raise a thread to it, as chrt tells, and
# SCHED_OTHER otherwise. Each of ours has its name.
if chrt -f 1 true 2>/dev/null; then RT=1; else RT=0; fi
policies() {
    local t
    for t in /proc/"$SPID"/task/*; do
        echo "$(cat "$t/comm") $(sed 's/.*) //' "$t/stat" | awk '{print $39}')"
    done
}
# rt_priorities: each thread's realtime priority (0: none), a line each.
rt_priorities() {
    local t
    for t in /proc/"$SPID"/task/*; do sed 's/.*) //' "$t/stat" | awk '{print $38}'; done
}
policies >"$T/policies"
[ "$(grep -c '^MHD-worker 3$' "$T/policies")" -ge 1 ]; check $? 0 "an HTTP thread that took a connection runs SCHED_BATCH"
check "$(grep -c '^cutoff-ckpt 3$' "$T/policies")" "1" "so does the checkpointer"
check "$(grep -c '^cutoff-decider 0$' "$T/policies")" "1" "but not the decider (SCHED_OTHER)"
if [ "$RT" = 1 ]; then
    check "$(grep -c '^cutoff-syncer 1$' "$T/policies")" "1" "the WAL's syncer runs SCHED_FIFO"
    check "$(rt_priorities | grep -c '^1$')" "1" \
        "at priority 1, the lowest, and no other thread is realtime"
else
    check "$(grep -c '^cutoff-syncer 0$' "$T/policies")" "1" \
        "realtime refused here: the WAL's syncer stays SCHED_OTHER"
fi
check "$(grep -c ' 3$' "$T/policies")" "$(($(grep -c '^MHD-worker 3$' "$T/policies") + 1))" "and no other thread of ours"
check "$(grep -c '^cutoff 0$' "$T/policies")" "1" "the main thread stays SCHED_OTHER"
# The decider, and the syncer when it is not realtime, which every answer waits for in turn,
# ask for the shortest time slice (0.1 ms), so that Linux's EEVDF scheduler (6.12 and later)
# runs them as soon as they wake; every other thread keeps the default. Checked where the
# kernel shows and honours a thread's own slice (se.slice in /proc/PID/task/TID/sched), which a
# probe of this shell's own thread tells.
custom_slices() {
    python3 - <<'PY'
import ctypes, os, struct, sys
nr = {"x86_64": 314, "aarch64": 274}.get(os.uname().machine)
if nr is None:
    sys.exit(1)
libc = ctypes.CDLL(None, use_errno=True)
attr = ctypes.create_string_buffer(struct.pack("IIQiIQQQ", 48, 0, 0, os.nice(0), 0, 100000, 0, 0), 48)
if libc.syscall(nr, 0, attr, 0) != 0:
    sys.exit(1)
for line in open("/proc/thread-self/sched"):
    if line.split()[:1] == ["se.slice"]:
        sys.exit(0 if line.split()[-1] == "100000" else 1)
sys.exit(1)
PY
}
if custom_slices; then
    for t in /proc/"$SPID"/task/*; do
        echo "$(cat "$t/comm") $(awk '$1 == "se.slice" {print $3}' "$t/sched")"
    done >"$T/slices"
    check "$(grep -c '^cutoff-decider 100000$' "$T/slices")" "1" "the decider runs with a 0.1 ms time slice"
    if [ "$RT" = 0 ]; then
        check "$(grep -c '^cutoff-syncer 100000$' "$T/slices")" "1" "so does the WAL's syncer, not realtime"
    fi
    check "$(grep -c ' 100000$' "$T/slices")" "$((2 - RT))" "and no other thread"
else
    echo "note: this kernel does not show or honour a thread's own time slice: not checked"
fi
json 'a["reminder"]["days_left"], a["reminder"]["upgrade_url"], a["reminder"]["text"][:29]' >"$T/r"
check "$(cat "$T/r")" "25 https://messenger.example.test/upgrade Your version of MSN Messenger" \
    "with its days left, upgrade URL and text"
get /metrics
check "$(grep '^cutoff_serve_syncer_realtime ' "$OUT")" "cutoff_serve_syncer_realtime $RT" \
    "/metrics tells whether the syncer is realtime"
check "$(login ana 4.6)" "-" "already reminded in this period: nothing"
check "$(login bob 5.0)" "- completed" "a version at the target completes the user"
check "$(login bob 4.6)" "- completed" "and a completed user is never reminded"
check "$(login nobody 4.6)" "-" "an unknown user: nothing"
check "$(login eve 4.6)" "-" "a suppressed user: nothing"
check "$(sql "$DB" "SELECT group_concat(outcome, ' ') FROM (SELECT outcome FROM login ORDER BY id)")" \
    "reminder none completed none unknown none" "every login recorded with its outcome"
check "$(sql "$DB" "SELECT group_concat(client_version || '/' || platform, ' ') FROM (SELECT * FROM login ORDER BY id LIMIT 2)")" \
    "4.6/windows 4.6/windows" "with the version and platform reported"
check "$(sql "$DB" "SELECT state FROM recipient WHERE user_id = 'bob'")" "completed" "bob is completed in the store"
"$CUTOFF_BIN" --config "$T/cutoff.conf" --now "$NOW" login ana --client-version 4.6 --json >"$T/hook.json"
check "$(cat "$T/hook.json")" '{"user":"ana","reminder":null,"completed":false}' \
    "the login hook sees the reminder the service showed"
kill -TERM "$SPID"; wait "$SPID"

start_serve 2003-09-10T17:00:00Z
check "$(login cy 4.6)" "-" "before the reminder start: nothing"
kill -TERM "$SPID"; wait "$SPID"
start_serve 2003-10-15T08:00:00Z
check "$(login cy 4.6)" "-" "at the cutoff: nothing"
kill -TERM "$SPID"; wait "$SPID"
start_serve "$NOW"
check "$(login cy 4.6)" "messenger-upgrade" "in the window, cy's reminder was still due"

# Where realtime is refused (no CAP_SYS_NICE, RLIMIT_RTPRIO 0: a unit with RestrictRealtime=yes
# or without LimitRTPRIO=), the syncer stays a normal thread with the shortest slice, says so
# once, and logins are answered as before. Tried where this shell can take the capability away.
if [ "$RT" = 1 ] && command -v setpriv >/dev/null && command -v prlimit >/dev/null &&
    setpriv --bounding-set=-sys_nice prlimit --rtprio=0 true 2>/dev/null &&
    ! setpriv --bounding-set=-sys_nice prlimit --rtprio=0 chrt -f 1 true 2>/dev/null; then
    kill -TERM "$SPID"; wait "$SPID"
    WRAP=(setpriv --bounding-set=-sys_nice prlimit --rtprio=0) OPTS=(-v)
    start_serve "$NOW"
    WRAP=() OPTS=()
    check "$(login u00000297 4.6)" "messenger-upgrade" "realtime refused: logins are answered as before"
    policies >"$T/policies"
    check "$(grep -c '^cutoff-syncer 0$' "$T/policies")" "1" "the syncer stays SCHED_OTHER"
    check "$(rt_priorities | grep -vc '^0$')" "0" "no thread is realtime"
    get /metrics
    check "$(grep '^cutoff_serve_syncer_realtime ' "$OUT")" "cutoff_serve_syncer_realtime 0" \
        "/metrics says the syncer is not realtime"
    check "$(grep -c "the WAL's syncer stays a normal thread (SCHED_FIFO 1: Operation not permitted" \
        "$T/serve.err")" "1" "and the log says why, once"
    kill -TERM "$SPID"; wait "$SPID"
    start_serve "$NOW"
else
    echo "note: realtime cannot be taken away here (or was never given): the fallback ran above"
fi

# Campaign changes are seen within a second, between transactions.
run --config "$T/cutoff.conf" campaign pause "$C"
sleep 1.5
check "$(login u00000306 4.6)" "-" "a paused campaign: nothing"
run --config "$T/cutoff.conf" campaign resume "$C"
sleep 1.5
check "$(login u00000306 4.6)" "messenger-upgrade" "resumed: the reminder"
# A reload that fails keeps the campaigns loaded before: logins go on.
mv "$T/templates" "$T/templates.away"
run --config "$T/cutoff.conf" campaign pause "$C"
run --config "$T/cutoff.conf" campaign resume "$C"
sleep 1.5
check "$(login u00000307 4.6)" "messenger-upgrade" "the templates gone, the reload fails: still answered"
grep -q "could not be reloaded" "$T/serve.err"; check $? 0 "with a warning in the log"
mv "$T/templates.away" "$T/templates"

# ---- authentication ----
STATUS=$(curl -s -o "$OUT" -w '%{http_code}' --data-binary '{"user":"dee"}' "$URL/v1/logins")
check "$STATUS $(json 'a["error"][:23]')" "401 missing or wrong bearer" "no token: 401 with a JSON error"
for h in "Authorization: Bearer wrong-token-0123456789" "Authorization: Bearer $(cat "$T/token")x" \
    "Authorization: Basic $(cat "$T/token")" "Authorization: Bearer"; do
    STATUS=$(curl -s -o "$OUT" -w '%{http_code}' -H "$h" --data-binary '{"user":"dee"}' "$URL/v1/logins")
    check "$STATUS" "401" "refused: $h"
done
STATUS=$(curl -s -o "$OUT" -w '%{http_code}' "$URL/metrics")
check "$STATUS" "401" "/metrics needs the token too"
curl -s -D "$T/h" -o /dev/null --data-binary '{"user":"dee"}' "$URL/v1/logins"
grep -qi '^WWW-Authenticate: Bearer' "$T/h"; check $? 0 "a 401 says which scheme (RFC 6750)"
check "$(logins "WHERE user_id = 'dee'")" "0" "nothing recorded for a refused login"

cp "$T/token" "$T/token.open"; chmod 644 "$T/token.open"
run --config "$T/cutoff.conf" serve --listen "127.0.0.1:$(free_port)" --token-file "$T/token.open"
expect_rc 77 "a token file others may read: refuses to start (EX_NOPERM)"
expect_err "group or others may read it" "and says why"
expect_err "chmod 600" "and how to fix it"
printf 'short\n' >"$T/token.short"; chmod 600 "$T/token.short"
run --config "$T/cutoff.conf" serve --listen "127.0.0.1:$(free_port)" --token-file "$T/token.short"
expect_rc 78 "a short token: refuses to start"
run --config "$T/cutoff.conf" serve --listen "127.0.0.1:$(free_port)"
expect_rc 64 "no token file at all: a usage error"
run --config "$T/cutoff.conf" serve --listen "nonsense" --token-file "$T/token"
expect_rc 64 "a malformed --listen"
expect_err "ADDRESS:PORT" "says what to give"

# ---- bad input: 400 with a JSON error, nothing recorded, the service unharmed ----
n0=$(logins "")
bad() {
    local want=$1 msg=$2 path=$3 body=$4; shift 4
    post "$path" "$body" "$@"
    check "$STATUS" "$want" "$msg: HTTP $want"
    json 'a["error"]' >"$T/err.txt" 2>/dev/null || echo "(not JSON)" >"$T/err.txt"
}
bad 400 "malformed JSON" /v1/logins '{"user":"dee",'
grep -q "^malformed JSON" "$T/err.txt"; check $? 0 "malformed JSON: says so ($(cat "$T/err.txt"))"
bad 400 "not an object" /v1/logins '["dee"]'
bad 400 "an empty body" /v1/logins ''
bad 400 "an unknown field" /v1/logins '{"user":"dee","admin":true}'
check "$(cat "$T/err.txt")" 'unknown field "admin" (known: user, client_version, platform)' "names the field"
bad 400 "a missing user" /v1/logins '{"client_version":"4.6"}'
check "$(cat "$T/err.txt")" '"user" is missing' "says the user is missing"
bad 400 "an empty user" /v1/logins '{"user":""}'
bad 400 "a user that is not a string" /v1/logins '{"user":42}'
bad 400 "a version that is not a string" /v1/logins '{"user":"dee","client_version":4.6}'
bad 400 "a duplicate key" /v1/logins '{"user":"dee","user":"ana"}'
bad 400 "a control character" /v1/logins '{"user":"de\u0007e"}'
bad 400 "a NUL in a string" /v1/logins '{"user":"de\u0000e"}'
bad 400 "an overlong user" /v1/logins "{\"user\":\"$(head -c 257 /dev/zero | tr '\0' u)\"}"
check "$(cat "$T/err.txt")" '"user" is longer than 256 bytes' "says the limit"
bad 400 "an overlong version" /v1/logins "{\"user\":\"dee\",\"client_version\":\"$(head -c 65 /dev/zero | tr '\0' 9)\"}"
head -c 5000 /dev/zero | tr '\0' ' ' >"$T/big"; printf '{"user":"dee"}' >>"$T/big"
bad 400 "an oversized body" /v1/logins "@$T/big"
check "$(cat "$T/err.txt")" "the body is larger than 4096 bytes" "says the limit"
bad 400 "an oversized chunked body" /v1/logins "@$T/big" -H "Transfer-Encoding: chunked"
head -c $((3 * 1024 * 1024)) /dev/zero | tr '\0' ' ' >"$T/huge"
bad 400 "a 3 MB body" /v1/logins:batch "@$T/huge"
bad 405 "GET on /v1/logins" /v1/logins '' -X GET
check "$(cat "$T/err.txt")" "method GET not allowed here" "says so"
bad 405 "DELETE on /v1/users" /v1/users/ana '' -X DELETE
curl -s -D "$T/h405" -o /dev/null -H "$AUTH" -X DELETE "$URL/v1/users/ana"
check "$(grep -i '^Allow:' "$T/h405" | tr -d '\r')" "Allow: GET, HEAD" "a 405 says which methods the route takes"
curl -s -D "$T/h405" -o /dev/null -H "$AUTH" "$URL/v1/logins"
check "$(grep -i '^Allow:' "$T/h405" | tr -d '\r')" "Allow: POST" "POST for the logins"
bad 404 "an unknown route" /v1/nothing '{}'
bad 404 "no user in /v1/users/" /v1/users/ '' -X GET
bad 400 "a batch that is not {events}" /v1/logins:batch '[{"user":"dee"}]'
bad 400 "an empty batch" /v1/logins:batch '{"events":[]}'
python3 -c 'import json; print(json.dumps({"events": [{"user": "dee"}] * 1001}))' >"$T/b1001"
bad 400 "a batch of 1001" /v1/logins:batch "@$T/b1001"
check "$(cat "$T/err.txt")" "a batch holds 1 to 1000 events, not 1001" "says the limit"
bad 400 "a batch with one bad event" /v1/logins:batch '{"events":[{"user":"dee"},{"user":"ana","x":1}]}'
check "$(cat "$T/err.txt")" 'events[1]: unknown field "x" (known: user, client_version, platform)' "names the event"
check "$(logins "")" "$n0" "no bad request recorded anything (not even the good event of a bad batch)"
python3 - "$PORT" <<'PY'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
s.sendall(b"GARBAGE / HTTP/9\r\n\r\n")   # not HTTP: answered 400 or closed, nothing more
s.recv(1000)
PY
check "$(curl -s "$URL/healthz")" '{"status":"ok","campaigns":1}' "still answering after all of it"

# A slow client is cut off after --timeout; it holds no more than its own connection.
kill -TERM "$SPID"; wait "$SPID"
start_serve "$NOW" --timeout 1 --per-ip 4
python3 - "$PORT" >"$T/slow.out" <<'PY'
import socket, sys, time
port = int(sys.argv[1])
held = []
for i in range(4):   # the per-IP limit's worth of connections, sending nothing
    s = socket.create_connection(("127.0.0.1", port)); s.sendall(b"POST /v1/logins HTTP/1.1\r\n"); held.append(s)
# closed: the service ended the connection without an answer, by a FIN (recv returns b"") or
# by a reset: libmicrohttpd resets a connection it drops with bytes of the request still
# unread, which happens now and then under the sanitizers' slower threads. Anything else
# (an answer, or still open after 3 s: TimeoutError) fails the check.
def ended(s):
    s.settimeout(3)
    try:
        return "closed" if s.recv(100) == b"" else "answered"
    except ConnectionResetError:
        return "closed"
    except Exception as e:
        return type(e).__name__
extra = socket.create_connection(("127.0.0.1", port))
print("fifth:", ended(extra))
time.sleep(2)
for s in held:
    print("slow:", ended(s))
PY
check "$(sort -u "$T/slow.out" | tr '\n' ' ')" "fifth: closed slow: closed " \
    "beyond the per-IP limit a connection is closed; a stalled one after --timeout"
check "$(curl -s "$URL/healthz")" '{"status":"ok","campaigns":1}' "and the service answers again"
kill -TERM "$SPID"; wait "$SPID"

# ---- 16 connections logging in the same user at once: one reminder ----
start_serve "$NOW"
"$CLIENT" "$URL" "$T/token" 16 20 dee 4.6 "$T/dee.jsonl" >"$T/c16" 2>"$T/c16.err"
check "$?" "0" "320 logins of dee from 16 connections: all answered 200"
check "$(cat "$T/c16")" "requests=320 ok=320 reminders=1 completed=0 http_errors=0 transport_errors=0" \
    "exactly one reminder shown"
check "$(sql "$DB" "SELECT count(*) FROM login_reminder lr JOIN recipient r ON r.id = lr.recipient_id WHERE r.user_id = 'dee'")" \
    "1" "and one in the database"
check "$(logins "WHERE user_id = 'dee'")" "320" "every login recorded"
check "$(logins "WHERE user_id = 'dee' AND outcome = 'reminder'")" "1" "one with the reminder"

# ---- batch: one answer per event, in order ----
python3 - >"$T/batch.json" <<'PY'
import json
ev = [{"user": u, "client_version": v} for u, v in
      [("fay", "4.6"), ("zz-unknown", "4.6"), ("fay", "4.6"), ("gus", "5.0"), ("u00000300", "4.6")]]
ev += [{"user": "u%08d" % i, "platform": "mac"} for i in range(1, 51)]
print(json.dumps({"events": ev}))
PY
post /v1/logins:batch "@$T/batch.json"
check "$STATUS" "200" "a batch of 55"
json '" ".join(x["user"] for x in a["answers"][:5]), len(a["answers"])' >"$T/order"
check "$(cat "$T/order")" "fay zz-unknown fay gus u00000300 55" "answers in the order of the events"
json '[bool(x["reminder"]) for x in a["answers"][:5]], [x["completed"] for x in a["answers"][:5]]' >"$T/kinds"
check "$(cat "$T/kinds")" "[True, False, False, False, True] [False, False, False, True, False]" \
    "each decided as one login: the second fay already reminded, gus completed"
check "$(json '" ".join(x["user"] for x in a["answers"][5:]) == " ".join("u%08d" % i for i in range(1, 51))')" \
    "True" "the 50 others in order too"
check "$(logins "WHERE platform = 'mac'")" "50" "all recorded"

# ---- GET /v1/users/USER: what `cutoff user --format json` says ----
get /v1/users/fay
check "$STATUS" "200" "a known user"
"$CUTOFF_BIN" --config "$T/cutoff.conf" user fay --format json >"$T/user.json"
check "$(cat "$OUT")" "$(cat "$T/user.json")" "the same document as cutoff user --format json"
check "$(json '[h["what"] for h in a["people"][0]["history"]].count("login")')" "2" \
    "with fay's two logins in its history"
get /v1/users/j%C3%A9r%C3%B4me-nobody
check "$STATUS $(json 'a["error"][:11]')" "404 no one with" "an unknown user: 404 with a JSON error"

# ---- metrics ----
get /metrics
check "$STATUS" "200" "/metrics"
m() { awk -v k="$1" '$1 == k {print $2}' "$OUT"; }
check "$(m 'cutoff_serve_requests_total{route="logins",code="200"}')" "320" "logins answered 200 since this start"
check "$(m 'cutoff_serve_requests_total{route="logins_batch",code="200"}')" "1" "the batch"
check "$(m 'cutoff_serve_requests_total{route="users",code="404"}')" "1" "the unknown user"
check "$(m cutoff_serve_logins_total)" "375" "logins decided: 320 + 55"
check "$(m cutoff_serve_reminders_shown_total)" "53" "reminders shown: dee, fay, u00000300 and the 50 of the batch"
check "$(m cutoff_serve_completions_total)" "1" "completions: gus"
check "$(m cutoff_serve_unknown_users_total)" "1" "unknown users"
check "$(m cutoff_serve_request_duration_seconds_count)" "324" "every answered request in the histogram (and the first /healthz)"
check "$(m 'cutoff_serve_request_duration_seconds_bucket{le="+Inf"}')" "324" "the +Inf bucket counts all"
grep -q '^# TYPE cutoff_serve_request_duration_seconds histogram$' "$OUT"; check $? 0 "typed as a histogram"
commits=$(m cutoff_serve_commits_total)
[ "$commits" -ge 1 ] && [ "$commits" -le 321 ]; check $? 0 "group commits: $commits transactions for 321 requests"

# The same with a thread per connection (--threads 0) instead of the pool.
kill -TERM "$SPID"; wait "$SPID"
start_serve "$NOW" --threads 0
"$CLIENT" "$URL" "$T/token" 16 20 u00000305 4.6 >"$T/c16t" 2>"$T/c16t.err"
check "$(cat "$T/c16t")" "requests=320 ok=320 reminders=1 completed=0 http_errors=0 transport_errors=0" \
    "--threads 0: 320 logins from 16 connections, one reminder"
check "$(logins "WHERE user_id = 'u00000305'")" "320" "every login recorded"
kill -TERM "$SPID"; wait "$SPID"; check "$?" "0" "--threads 0: SIGTERM, exit 0"

# The same with the pool waiting on epoll (--epoll) instead of poll.
start_serve "$NOW" --epoll
"$CLIENT" "$URL" "$T/token" 16 20 u00000309 4.6 >"$T/c16e" 2>"$T/c16e.err"
check "$(cat "$T/c16e")" "requests=320 ok=320 reminders=1 completed=0 http_errors=0 transport_errors=0" \
    "--epoll: 320 logins from 16 connections, one reminder"
check "$(logins "WHERE user_id = 'u00000309'")" "320" "every login recorded"
kill -TERM "$SPID"; wait "$SPID"; check "$?" "0" "--epoll: SIGTERM, exit 0"

# A group commit waits for the requests in flight, never for those that are not: with a wait
# of up to 0.9 s allowed, a lone login is still answered at once.
start_serve "$NOW" --group-wait-us 900000
t=$(curl -s -o "$OUT" -w '%{time_total}' -H "$AUTH" --data-binary '{"user":"u00000308"}' "$URL/v1/logins")
check "$(json '(a["reminder"] or {}).get("campaign")')" "messenger-upgrade" "a lone login, decided"
python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) < 0.5 else 1)" "$t"
check $? 0 "and answered without waiting for the others ($t s)"
# It waits for a request in flight that is not queued yet (here one whose body stalls), and
# stops waiting as soon as that one is over (here its client gives up after 0.3 s), not when
# the wait allowed (1 s) runs out: a request leaving the count wakes the gathering decider.
kill -TERM "$SPID"; wait "$SPID"
start_serve "$NOW" --group-wait-us 1000000
python3 - "$PORT" "$(cat "$T/token")" >"$T/gather.out" <<'PY'
import socket, sys, time
port, token = int(sys.argv[1]), sys.argv[2]
stalled = socket.create_connection(("127.0.0.1", port), timeout=5)
stalled.sendall(b"POST /v1/logins HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + token.encode()
                + b"\r\nContent-Type: application/json\r\nContent-Length: 40\r\n\r\n{\"us")
time.sleep(0.3)   # its headers read: in flight
body = b'{"user":"u00000296"}'
s = socket.create_connection(("127.0.0.1", port), timeout=5)
t0 = time.monotonic()
s.sendall(b"POST /v1/logins HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + token.encode()
          + b"\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: "
          + str(len(body)).encode() + b"\r\n\r\n" + body)
time.sleep(0.3)
stalled.close()
answer = b""
while True:
    chunk = s.recv(4096)
    if not chunk:
        break
    answer += chunk
t = time.monotonic() - t0
print("answered" if answer.startswith(b"HTTP/1.1 200") and b'"messenger-upgrade"' in answer
      else "not answered: %r" % answer[:200])
print("waited" if 0.25 <= t < 0.75 else "took %.3f s" % t)
PY
check "$(cat "$T/gather.out" | tr '\n' ' ')" "answered waited " \
    "a login gathered with a stalled request is answered once that request is gone (0.3 s), not after the 1 s wait"
kill -TERM "$SPID"; wait "$SPID"
start_serve "$NOW"

# ---- the daily run beside a load: no errors, nothing lost ----
n0=$(logins "")
"$CLIENT" "$URL" "$T/token" 8 1500 'u%300' 4.6 >"$T/load" 2>"$T/load.err" &
CPID=$!
run --config "$T/cutoff.conf" --now "$NOW" run
RUNRC=$RC
wait "$CPID"; check "$?" "0" "the load beside cutoff run: every request answered 200"
check "$(grep -o 'http_errors=0 transport_errors=0' "$T/load")" "http_errors=0 transport_errors=0" "no errors ($(cat "$T/load"))"
RC=$RUNRC; expect_rc 0 "cutoff run beside the service: exit 0"
check "$(( $(logins "") - n0 ))" "12000" "all 12000 logins recorded"
check "$(sql "$DB" "SELECT count(*) FROM delivery WHERE kind = 'initial' AND state = 'sent'")" \
    "$(sql "$DB" "SELECT count(*) FROM recipient WHERE state = 'pending' AND user_id NOT IN ('eve')")" \
    "and the run sent the wave to every pending recipient"
# The service checkpoints the WAL itself, off the decider: PASSIVE while logins come in, every
# commit timed in a histogram, and a TRUNCATE once idle (the WAL file back to 0 bytes; the
# decider's own connection never checkpoints, or the WAL would keep its frames until then).
get /metrics
check "$(m cutoff_serve_commit_duration_seconds_count)" "$(m cutoff_serve_commits_total)" \
    "every group commit timed in the commit histogram"
check "$(m 'cutoff_serve_commit_duration_seconds_bucket{le="+Inf"}')" "$(m cutoff_serve_commits_total)" "its +Inf bucket counts all"
grep -q '^# TYPE cutoff_serve_commit_duration_seconds histogram$' "$OUT"; check $? 0 "typed as a histogram"
# The decider's steps, one histogram each, one count per batch: what a slow batch spent its time
# on (a p99 made of stalls shows here as a few batches in the 10 ms+ buckets).
grep -q '^# TYPE cutoff_serve_decider_step_duration_seconds histogram$' "$OUT"; check $? 0 "the decider's steps: one histogram family"
for step in decide commit; do
    check "$(m "cutoff_serve_decider_step_duration_seconds_count{step=\"$step\"}")" "$(m cutoff_serve_commits_total)" \
        "every committed batch timed in step=\"$step\""
    check "$(m "cutoff_serve_decider_step_duration_seconds_bucket{step=\"$step\",le=\"+Inf\"}")" \
        "$(m cutoff_serve_commits_total)" "and its +Inf bucket counts them all"
done
[ "$(m 'cutoff_serve_decider_step_duration_seconds_count{step="gather"}')" -ge "$(m cutoff_serve_commits_total)" ]
check $? 0 "every batch's gathering timed (retried batches gather once)"
# An answered login's way through the service, phase by phase: one count a request in each
# phase, the parts of its latency (they add up to it: at most the latency of every request).
grep -q '^# TYPE cutoff_serve_login_phase_duration_seconds histogram$' "$OUT"; check $? 0 "the logins' phases: one histogram family"
answered=$(( $(m 'cutoff_serve_requests_total{route="logins",code="200"}') + $(m 'cutoff_serve_requests_total{route="logins_batch",code="200"}') ))
for phase in read queue decide sync send; do
    check "$(m "cutoff_serve_login_phase_duration_seconds_count{phase=\"$phase\"}")" "$answered" \
        "every answered login request timed in phase=\"$phase\""
done
python3 - "$OUT" <<'PY'
import sys
m = {}
for line in open(sys.argv[1]):
    if line[0] != "#":
        k, v = line.rsplit(" ", 1)
        m[k] = float(v)
name = "cutoff_serve_login_phase_duration_seconds_sum"
parts = {p: m[name + '{phase="%s"}' % p] for p in ("read", "queue", "decide", "sync", "send")}
total = m["cutoff_serve_request_duration_seconds_sum"]
ok = all(v > 0 for v in parts.values()) and sum(parts.values()) <= total + 1e-5  # %.6f each
print("phases", parts, "latency", total, file=sys.stderr)
sys.exit(0 if ok else 1)
PY
check $? 0 "each phase took some time, and together no more than the requests' latency"
[ "$(m 'cutoff_serve_checkpoints_total{mode="passive"}')" -ge 1 ]; check $? 0 "PASSIVE checkpoints while the load ran"
# Wait for the TRUNCATE to be counted, not for the file: it reaches 0 bytes inside the
# checkpoint, a moment before the checkpointer updates its metrics. And for the WAL it left
# empty: a pause in the load above (the daily run holding the write lock) may have been
# counted as idle and truncated the WAL before the last logins wrote it again, or an idle
# bulk (the logins' keys, the claims) may write it again just after a TRUNCATE: the next idle
# period truncates it once more.
for i in $(seq 100); do
    get /metrics
    [ "$(m 'cutoff_serve_checkpoints_total{mode="truncate"}')" -ge 1 ] &&
        [ "$(m cutoff_serve_wal_frames)" = 0 ] && [ "$(stat -c %s "$DB-wal")" = 0 ] && break
    sleep 0.1
done
[ "$(m 'cutoff_serve_checkpoints_total{mode="truncate"}')" -ge 1 ]; check $? 0 "idle: a TRUNCATE checkpoint by the service while it runs"
check "$(m cutoff_serve_wal_frames)" "0" "the WAL is empty"
check "$(stat -c %s "$DB-wal")" "0" "and its file back to 0 bytes"
kill -TERM "$SPID"; wait "$SPID"; check "$?" "0" "SIGTERM: exit 0"

# A WAL written without a pause is never wholly copied by PASSIVE checkpoints: past
# --checkpoint-frames the decider starts it over between two commits, so it stays bounded.
start_serve "$NOW" --checkpoint-frames 64 --group-wait-us 0
n0=$(logins "")
"$CLIENT" "$URL" "$T/token" 8 1600 'u%300' 4.6 >"$T/walload" 2>"$T/walload.err" &
CPID=$!
walmax=0
while kill -0 "$CPID" 2>/dev/null; do
    w=$(stat -c %s "$DB-wal" 2>/dev/null || echo 0); [ "$w" -gt "$walmax" ] && walmax=$w; sleep 0.05
done
wait "$CPID"; check "$?" "0" "12800 logins under --checkpoint-frames 64: all answered 200"
check "$(( $(logins "") - n0 ))" "12800" "all recorded"
get /metrics
restarts=$(m 'cutoff_serve_checkpoints_total{mode="restart"}')
[ "$restarts" -ge 1 ]; check $? 0 "the WAL started over $restarts time(s)"
[ "$(m 'cutoff_serve_decider_step_duration_seconds_count{step="checkpoint"}')" -ge "$restarts" ]
check $? 0 "each restart timed in step=\"checkpoint\" (and those a reader kept from restarting)"
# Each PASSIVE pass syncs the database itself (so the restart's sync has only the restart's own
# pages to write) and is timed; the frames a restart still had to copy are reported.
check "$(m cutoff_serve_checkpoint_pass_duration_seconds_count)" \
    "$(m 'cutoff_serve_checkpoints_total{mode="passive"}')" "every PASSIVE pass timed"
[ "$(m cutoff_serve_restart_frames)" -ge 0 ]; check $? 0 "the frames the last restart copied: $(m cutoff_serve_restart_frames)"
commits=$(m cutoff_serve_commits_total)
echo "note: WAL high-water mark $walmax bytes, $restarts restart(s), $commits commits"
# Without restarts the file grows with every commit (~70 MiB for these 12,800 logins); with
# them its high-water mark is what is written between two looks of the checkpointer (every
# 200 ms): 16-18 MB in our runs, quiet or loaded; the bound leaves room for that.
[ "$walmax" -lt $(( 40 * 1024 * 1024 )) ]; check $? 0 "its file stayed under 40 MiB (~70 MiB without) ($walmax bytes at most, $commits commits)"
check "$(sql "$DB" "PRAGMA integrity_check")" "ok" "the database is sound"
kill -TERM "$SPID"; wait "$SPID"; check "$?" "0" "SIGTERM: exit 0"

# ---- login_by_user in bulk (db/012): the service's commits leave their logins' keys out (the
# tail, above login_indexed.through); the history lists those logins at once, exactly once;
# a bulk adds them after --index-every logins, after --index-idle-ms without any, and at the
# stop; a kill -9 at any point loses nothing and doubles nothing ----
# keys_off: keys missing from login_by_user below the mark, plus keys in it that should not be.
keys_off() {
    sql "$DB" "SELECT (SELECT count(*) FROM (SELECT user_id, at, id FROM login
        WHERE outcome <> 'unknown' AND id <= (SELECT through FROM login_indexed)
        EXCEPT SELECT user_id, at, login_id FROM login_by_user))
      + (SELECT count(*) FROM (SELECT user_id, at, login_id FROM login_by_user
        EXCEPT SELECT user_id, at, id FROM login WHERE outcome <> 'unknown'
        AND id <= (SELECT through FROM login_indexed)))"
}
tail_n() { sql "$DB" "SELECT coalesce((SELECT max(id) FROM login), 0) - through FROM login_indexed"; }
history_logins() {
    get "/v1/users/$1"
    json '[h["what"] for p in a["people"] for h in p["history"]].count("login")'
}
check "$(tail_n) $(keys_off)" "0 0" "the service's stop left no tail, and login_by_user is exact"
start_serve "$NOW" --index-every 1000000 --index-idle-ms 0
before=$(history_logins u00000299)
check "$(login u00000299 4.6) $(login u00000299 4.6) $(login nobody2 4.6)" "- - -" "three logins"
check "$(tail_n)" "3" "in the tail"
check "$(sql "$DB" "SELECT count(*) FROM login_by_user WHERE login_id > (SELECT through FROM login_indexed)")"     "0" "their keys not in login_by_user"
check "$(history_logins u00000299)" "$((before + 2))" "GET /v1/users lists the known user's two, once each"
"$CUTOFF_BIN" --config "$T/cutoff.conf" user u00000299 --format json >"$T/user299.json"
check "$(cat "$OUT")" "$(cat "$T/user299.json")" "as cutoff user does"
kill -KILL "$SPID"; wait "$SPID" 2>/dev/null
check "$(tail_n) $(keys_off)" "3 0" "killed: the tail is still there, login_by_user as it was"
# Bulks every 50 logins under load, and a kill -9 in the middle of it.
start_serve "$NOW" --index-every 50 --index-idle-ms 0
n0=$(logins "")
"$CLIENT" "$URL" "$T/token" 8 2000 'u%300' 4.6 >"$T/idxload" 2>"$T/idxload.err" &
CPID=$!
sleep 1
kill -KILL "$SPID"; wait "$SPID" 2>/dev/null
wait "$CPID"
answered=$(grep -o 'ok=[0-9]*' "$T/idxload" | cut -d= -f2)
n1=$(logins "")
[ "$((n1 - n0))" -ge "${answered:-0}" ]; check $? 0 "killed under load: every answered login recorded ($((n1 - n0)) for ${answered:-0} answers)"
check "$(keys_off)" "0" "and login_by_user exact up to the mark"
echo "note: killed under load after ${answered:-0} answers, leaving a tail of $(tail_n) logins"
check "$(sql "$DB" "PRAGMA integrity_check")" "ok" "the database is sound"
start_serve "$NOW" --index-every 1000000
login u00000298 4.6 >/dev/null
for i in $(seq 100); do [ "$(tail_n)" = 0 ] && break; sleep 0.1; done # a few bulks of 1,024
check "$(tail_n) $(keys_off)" "0 0" "idle for --index-idle-ms (100 by default): the tail indexed"
get /metrics
[ "$(m cutoff_serve_logins_indexed_total)" -ge 1 ]; check $? 0 "counted in cutoff_serve_logins_indexed_total"
# (the tail the kill left is indexed first, as soon as the decider is idle)
[ "$(m 'cutoff_serve_decider_step_duration_seconds_count{step="index"}')" -ge 1 ]
check $? 0 "and timed in step=\"index\""
kill -TERM "$SPID"; wait "$SPID"; check "$?" "0" "SIGTERM: exit 0"
check "$(sql "$DB" "SELECT count(*) FROM login_by_user") $(tail_n)" \
    "$(logins "WHERE outcome <> 'unknown'") 0" "every known login has its key, once"

# ---- reminder claims in the tail (db/013): the service's claims go to login_reminder_tail and
# are moved into login_reminder_indexed by the same bulks; a claim in the tail blocks the
# reminder in another process (cutoff login) and is read once by support and the view; a
# kill -9 loses and doubles nothing ----
rid310=$(sql "$DB" "SELECT id FROM recipient WHERE user_id = 'u00000310'")
claims() { sql "$DB" "SELECT (SELECT count(*) FROM login_reminder WHERE recipient_id = $rid310) || ','
    || (SELECT count(*) FROM login_reminder_tail WHERE recipient_id = $rid310) || ','
    || (SELECT count(*) FROM login_reminder_indexed WHERE recipient_id = $rid310)"; }
start_serve "$NOW" --index-every 1000000 --index-idle-ms 0
check "$(login u00000310 4.6)" "messenger-upgrade" "a first login: the reminder"
check "$(claims)" "1,1,0" "its claim in the tail, read once through the view"
"$CUTOFF_BIN" --config "$T/cutoff.conf" --now "$NOW" login u00000310 --client-version 4.6 --json >"$OUT"
check "$(json 'a["reminder"]')" "None" "cutoff login, another process, finds it claimed: no second reminder"
check "$(login u00000310 4.6)" "-" "nor a second login to the service"
get /v1/users/u00000310
check "$(json '[h["what"] for p in a["people"] for h in p["history"]].count("reminder")')" "1" \
    "GET /v1/users lists the reminder once"
"$CUTOFF_BIN" --config "$T/cutoff.conf" user u00000310 --format json >"$T/user310.json"
check "$(cat "$OUT")" "$(cat "$T/user310.json")" "as cutoff user does"
kill -KILL "$SPID"; wait "$SPID" 2>/dev/null
check "$(claims)" "1,1,0" "killed: the claim still in the tail, once"
start_serve "$NOW"
"$CUTOFF_BIN" --config "$T/cutoff.conf" --now "$NOW" login u00000310 --client-version 4.6 --json >"$OUT"
check "$(json 'a["reminder"]')" "None" "after the restart too"
for i in $(seq 100); do [ "$(claims)" = "1,0,1" ] && break; sleep 0.1; done
check "$(claims)" "1,0,1" "idle: the claim moved into login_reminder_indexed, once"
check "$(login u00000310 4.6)" "-" "and still blocks a second reminder"
kill -TERM "$SPID"; wait "$SPID"; check "$?" "0" "SIGTERM: exit 0"
check "$(sql "$DB" "SELECT count(*) FROM login_reminder_tail") $(sql "$DB" "SELECT count(*) FROM
    (SELECT recipient_id, period_start FROM login_reminder GROUP BY 1, 2 HAVING count(*) > 1)")" \
    "0 0" "the stop left no claim in the tail, and none is read twice"

# hold_db SECONDS: another writer (the sqlite3 shell) holds the database's write lock for
# SECONDS, in the background (LPID); returns once the lock is taken. The shell waits for the
# lock (the service's checkpointer or an idle bulk step may hold it for a moment): without
# .timeout its BEGIN failed at once, held nothing, and the case saw no busy database at all.
hold_db() {
    rm -f "$T/held"
    { echo ".timeout 10000"; echo ".bail on"; echo "BEGIN IMMEDIATE;"; echo ".system touch $T/held"
      sleep "$1"; echo "COMMIT;"; } | sqlite3 "$DB" &
    LPID=$!
    for i in $(seq 100); do [ -e "$T/held" ] && return 0; sleep 0.05; done
    echo "FAIL: the sqlite3 shell did not take the write lock within 5 s"; exit 1
}

# ---- a busy database: retried while another writer holds it; 503 once it gives up ----
# No bulk while idle (--index-idle-ms 0): a step begun just after the shell took the lock waited
# out the busy timeout itself, and the login queued behind it then found the lock free (200).
start_serve "$NOW" --busy-wait-ms 0 --index-idle-ms 0
n0=$(logins "")
hold_db 3
login u00000301 4.6 >"$T/busy1"
wait "$LPID"
check "$STATUS" "200" "held for 3 s (under the 10 s busy timeout): waited, then answered"
check "$(( $(logins "") - n0 ))" "1" "and recorded"
hold_db 13
post /v1/logins '{"user":"u00000302","client_version":"4.6"}'
wait "$LPID"
check "$STATUS" "503" "held for longer than the busy timeout: 503"
grep -q 'nothing was recorded; try again' "$OUT"; check $? 0 "with a JSON error saying nothing was recorded ($(cat "$OUT"))"
check "$(logins "WHERE user_id = 'u00000302'")" "0" "and nothing was"
check "$(login u00000302 4.6)" "messenger-upgrade" "the retry is decided as a first login"
kill -TERM "$SPID"; wait "$SPID"

# ---- SIGTERM with requests in flight: all answered, all recorded, exit 0 ----
start_serve "$NOW"
n0=$(logins "")
hold_db 2
"$CLIENT" "$URL" "$T/token" 12 1 'u%300' 4.6 >"$T/term" 2>"$T/term.err" &
CPID=$!
sleep 0.5
kill -TERM "$SPID"
wait "$CPID"; check "$?" "0" "12 requests in flight at SIGTERM: all answered 200 ($(cat "$T/term"))"
wait "$SPID"; check "$?" "0" "the service then exits 0"
wait "$LPID"
check "$(( $(logins "") - n0 ))" "12" "all 12 recorded"
curl -s -m 2 "$URL/healthz" >/dev/null; check "$?" "7" "and no longer listens"

# ---- a Unix socket ----
SOCK=$T/serve.sock
"$CUTOFF_BIN" --config "$T/cutoff.conf" --now "$NOW" serve --socket "$SOCK" --token-file "$T/token" \
    2>"$T/unix.err" &
SPID=$!
CLEANUP+=("kill $SPID; wait $SPID")
for i in $(seq 100); do [ -S "$SOCK" ] && break; sleep 0.1; done
check "$(stat -c %a "$SOCK")" "660" "the socket, mode 0660"
STATUS=$(curl -s -o "$OUT" -w '%{http_code}' --unix-socket "$SOCK" -H "$AUTH" \
    --data-binary '{"user":"u00000303","client_version":"4.6"}' http://localhost/v1/logins)
check "$STATUS $(json 'a["reminder"]["campaign"]')" "200 messenger-upgrade" "a login over the Unix socket"
kill -TERM "$SPID"; wait "$SPID"; check "$?" "0" "stopped"
[ -e "$SOCK" ]; check "$?" "1" "and the socket removed"
: >"$SOCK.file"
run --config "$T/cutoff.conf" serve --socket "$SOCK.file" --token-file "$T/token"
expect_rc 74 "a file that is not a socket is not replaced"

# ---- socket activation (what cutoff-serve.socket does) ----
if command -v systemd-socket-activate >/dev/null; then
    PORT=$(free_port) URL=http://127.0.0.1:$PORT
    systemd-socket-activate -l "127.0.0.1:$PORT" "$CUTOFF_BIN" --config "$T/cutoff.conf" \
        --now "$NOW" serve --token-file "$T/token" 2>"$T/act.err" &
    SPID=$!
    CLEANUP+=("kill $SPID; wait $SPID")
    for i in $(seq 50); do [ -s "$T/act.err" ] && break; sleep 0.1; done
    check "$(login u00000304 4.6)" "messenger-upgrade" "a login on the socket systemd passed"
    kill -TERM "$SPID"; wait "$SPID"; check "$?" "0" "stopped"
fi
finish
