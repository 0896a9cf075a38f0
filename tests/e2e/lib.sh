# lib.sh — a small harness for end-to-end tests: run the real cutoff binary, check what it did.
# Source it; it makes a scratch folder ($T), and gives check/expect helpers that count
# failures. End the script with `finish`: "N passed, N failed" and the exit status.
set -u
: "${CUTOFF_BIN:?run through ctest, or set CUTOFF_BIN}"
: "${CUTOFF_SOURCE_DIR:?run through ctest, or set CUTOFF_SOURCE_DIR}"
SRC=$CUTOFF_SOURCE_DIR
T=$(mktemp -d "${TMPDIR:-/tmp}/cutoff-e2e.XXXXXX")
CLEANUP=()
cleanup() {
    local c
    for c in "${CLEANUP[@]}"; do eval "$c" >/dev/null 2>&1 || true; done
    [ -n "${KEEP:-}" ] || rm -rf "$T"
}
trap cleanup EXIT
passed=0 failed=0
OUT=$T/out ERR=$T/err

# run ARGS...: runs cutoff with stdout in $OUT, stderr in $ERR, exit status in $RC.
run() { "$CUTOFF_BIN" "$@" >"$OUT" 2>"$ERR"; RC=$?; [ -z "${TRACE:-}" ] || { echo "[$SECONDS s] $*"; cat "$OUT"; }; }
ok() { passed=$((passed + 1)); }
not_ok() {
    failed=$((failed + 1))
    echo "FAIL: $*"
    echo "  exit status: ${RC:-?}"; sed 's/^/  stdout: /' "$OUT" | head -20
    sed 's/^/  stderr: /' "$ERR" | head -20
}
# expect_rc N DESCRIPTION: the last run exited with N.
expect_rc() { if [ "$RC" -eq "$1" ]; then ok; else not_ok "$2 (wanted exit $1)"; fi; }
# expect_out TEXT DESCRIPTION / expect_err TEXT DESCRIPTION: fixed text in stdout / stderr.
expect_out() { if grep -qF -- "$1" "$OUT"; then ok; else not_ok "$2 (stdout lacks: $1)"; fi; }
expect_err() { if grep -qF -- "$1" "$ERR"; then ok; else not_ok "$2 (stderr lacks: $1)"; fi; }
# check VALUE WANT DESCRIPTION: equality of two strings (e.g. a query's answer).
check() { if [ "$1" = "$2" ]; then ok; else RC=-; not_ok "$3 (got '$1', wanted '$2')"; fi; }
# sql DB QUERY: one answer from the database, through the sqlite3 shell.
sql() { sqlite3 -batch -noheader "$1" "$2"; }
finish() { echo "$passed passed, $failed failed"; [ "$failed" -eq 0 ]; exit $?; }
# needs_shared: exit 77 (skipped) with a message when ../shared is absent.
needs_shared() {
    [ -d "${CUTOFF_SHARED:-}/corpora" ] && return 0
    echo "SKIP: ${CUTOFF_SHARED:-../shared}/corpora is absent"; exit 77
}

# free_port: prints a TCP port nobody listens on, on 127.0.0.1.
free_port() {
    /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
# start_smtpd ARGS...: the scripted aiosmtpd server (tests/tools/smtpd.py) on a free port;
# sets SMTP_PORT and SMTP_OUT (one JSON line per accepted message); stopped at exit.
start_smtpd() {
    /usr/bin/python3 -c 'import aiosmtpd' 2>/dev/null || { echo "SKIP: python3-aiosmtpd is not installed"; exit 77; }
    SMTP_PORT=$(free_port) SMTP_OUT=$T/smtpd-$SMTP_PORT.jsonl
    # Emptied first: a server started later in a test may get the port, and so the file, of one
    # stopped before it (test_send_pipelining once counted 40 messages for 20 that way).
    : >"$SMTP_OUT"
    rm -f "$T/smtpd.ready"
    /usr/bin/python3 "$SRC/tests/tools/smtpd.py" --port "$SMTP_PORT" --out "$SMTP_OUT" \
        --ready "$T/smtpd.ready" "$@" >"$T/smtpd.log" 2>&1 &
    local pid=$! i
    CLEANUP+=("kill $pid; wait $pid")
    for i in $(seq 100); do [ -s "$T/smtpd.ready" ] && break; sleep 0.1; done
    [ -s "$T/smtpd.ready" ] || { echo "FAIL: smtpd did not start"; cat "$T/smtpd.log"; exit 1; }
}
# start_sink: Postfix's smtp-sink (accepts everything, stores nothing) on a free port; sets
# SINK_PORT; stopped at exit. Skips the test without it.
start_sink() {
    [ -x /usr/sbin/smtp-sink ] || { echo "SKIP: no /usr/sbin/smtp-sink (Postfix)"; exit 77; }
    SINK_PORT=$(free_port)
    /usr/sbin/smtp-sink -u postfix -c 127.0.0.1:"$SINK_PORT" 256 >"$T/sink.log" 2>&1 &
    local pid=$!
    CLEANUP+=("kill $pid; wait $pid")
    sleep 0.3
}
# write_config FILE PORT [EXTRA]: a cutoff.conf for a relay on loopback with a VERP secret. The
# relay's timeout is $RELAY_TIMEOUT seconds (default 3, which the fault tests' stalls rely on;
# start_postfix raises it: a real MTA on a loaded machine may take longer to answer).
write_config() {
    head -c 32 /dev/urandom | base64 >"$T/verp.key"; chmod 600 "$T/verp.key"
    cat >"$1" <<CONF
database = "$T/cutoff.db";
relays = ( { name = "loopback"; url = "smtp://127.0.0.1:$2"; tls = "none"; connections = 4; timeout = ${RELAY_TIMEOUT:-3}; } );
bounces = { return_path_domain = "bounces.example.test"; secret_file = "$T/verp.key"; };
${3:-}
CONF
}

# copy_campaign: the worked example's campaign and templates in $T, without its rate limit
# (tests should not wait 20 ms a message); sets C to its name.
copy_campaign() {
    C=messenger-upgrade
    cp -r "$SRC/campaigns" "$SRC/templates" "$T/"
    sed -i 's/^rate = .*/rate = 0;/' "$T/campaigns/$C.cfg"
}
# load_campaign CONF CSV: init the database CONF names, add the copied campaign, import CSV.
load_campaign() {
    "$CUTOFF_BIN" --config "$1" init >/dev/null
    "$CUTOFF_BIN" --config "$1" campaign add "$T/campaigns/$C.cfg" >/dev/null
    "$CUTOFF_BIN" --config "$1" import "$C" "$2" >/dev/null
}
# gen_users N SEED FILE: a clean generated list (no malformed, duplicate or unaffected rows).
gen_users() {
    python3 "$SRC/tools/gen-users" --count "$1" --seed "$2" --malformed 0 --duplicates 0 \
        --unaffected 0 -o "$3"
}
