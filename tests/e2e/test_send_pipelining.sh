#!/usr/bin/env bash
# End to end, the SMTP dialogue cutoff carries itself (RFC 2920) over connections libcurl sets
# up: pipelined when the server announces PIPELINING, one command at a time when it does not,
# with the same ledger outcome for every fault either way; a large body with lines starting
# with "." arrives intact; STARTTLS is still required and its certificate verified; AUTH works.
. "$(dirname "$0")/lib.sh"
copy_campaign
{
    echo "user_id,email,name,client,version,platform,os,country"
    for i in $(seq 1 20); do echo "ok$i,ok$i@users.example.test,User $i,msn-messenger,4.6,windows,XP,US"; done
    for k in bad temp full drop stall; do echo "$k,${k}1@users.example.test,$k,msn-messenger,4.6,windows,XP,US"; done
} >"$T/users.csv"
state() { sql "$1" "SELECT d.state || coalesce('/' || d.reason, '') FROM delivery d JOIN recipient r ON r.id = d.recipient_id WHERE r.user_id = '$2' AND d.kind = 'initial'"; }

# faults NAME SMTPD-ARGS...: the fault campaign against a server started with those arguments.
faults() {
    local name=$1 db=$T/$1.db
    shift
    [ -s "$T/smtpd.ready" ] && { kill "$(cat "$T/smtpd.ready")"; sleep 0.3; }
    start_smtpd --stall 8 "$@"
    write_config "$T/$name.conf" "$SMTP_PORT" "database = \"$db\";"
    sed -i '0,/^database = .*/{/^database = .*cutoff.db";$/d}' "$T/$name.conf"
    load_campaign "$T/$name.conf" "$T/users.csv"
    run --config "$T/$name.conf" --now 2003-08-19T00:00:00Z send $C --workers 1
    expect_rc 75 "$name: some deliveries deferred"
    expect_out "20 sent, 3 deferred, 2 failed" "$name: each outcome counted as before"
    check "$(wc -l <"$SMTP_OUT")" "20" "$name: the server accepted exactly the 20 good ones"
    check "$(sort -u "$SMTP_OUT" | wc -l)" "20" "$name: each once"
    check "$(state "$db" bad)/$(state "$db" full)" "failed/hard/failed/soft" "$name: 5xx at RCPT and after DATA fail"
    check "$(state "$db" temp)/$(state "$db" drop)/$(state "$db" stall)" "deferred/deferred/deferred" \
        "$name: 450, a dropped connection and a stall defer"
    check "$(sql "$db" "SELECT code || ' ' || reply FROM attempt a JOIN delivery d ON d.id = a.delivery_id JOIN recipient r ON r.id = d.recipient_id WHERE r.user_id = 'bad'")" \
        "550 5.1.1 <bad1@users.example.test>: Recipient address rejected: User unknown" \
        "$name: the reply to the refused RCPT is the one recorded"
    check "$(sql "$db" "SELECT count(*) FROM delivery WHERE state = 'sending'")" "0" "$name: nothing left in flight"
}

# With PIPELINING: MAIL, RCPT and DATA arrive together (DATA is there when RCPT is answered).
faults pipelined
check "$(grep -c '"pipelined": true' "$SMTP_OUT")" "20" "every message's envelope came in one group"

# Without PIPELINING: the same outcomes, and never a command before the previous reply.
faults lockstep --no-pipelining
check "$(grep -c '"pipelined": true' "$SMTP_OUT")" "0" "no command was sent ahead of a reply"

# A 130 KB body whose lines start with "." (dot-stuffed across many writes and reads) arrives
# exactly as `cutoff preview` shows it.
kill "$(cat "$T/smtpd.ready")"; sleep 0.3
start_smtpd --content
for i in $(seq 1 2500); do echo ".$i starts with a dot, .. and so on ....................."; done \
    >>"$T/templates/$C/upgrade/text.mustache"
write_config "$T/dots.conf" "$SMTP_PORT" "database = \"$T/dots.db\";"
sed -i '0,/^database = .*/{/^database = .*cutoff.db";$/d}' "$T/dots.conf"
head -3 "$T/users.csv" >"$T/two.csv"
load_campaign "$T/dots.conf" "$T/two.csv"
run --config "$T/dots.conf" --now 2003-08-19T00:00:00Z send $C
expect_rc 0 "a large message with dot lines"
expect_out "2 sent, 0 deferred, 0 failed" "is sent"
"$CUTOFF_BIN" --config "$T/dots.conf" --now 2003-08-19T00:00:00Z preview $C ok1 >"$T/preview.eml"
/usr/bin/python3 - "$SMTP_OUT" "$T/preview.eml" >"$T/dots.out" <<'PY'
import json, re, sys
got = [json.loads(l) for l in open(sys.argv[1])]
msg = next(m["content"] for m in got if m["rcpt"] == ["ok1@users.example.test"])
want = open(sys.argv[2], "rb").read().decode("utf-8").replace("\r\n", "\n")
msg = msg.replace("\r\n", "\n")
# past the header (its Date differs), and with the MIME boundary (random) made the same
body = lambda s: re.sub(r"=-alt-[0-9a-f]+", "=-alt-", s.split("\n\n", 1)[1])
print(len(msg) > 130000, sum(1 for l in msg.split("\n") if l.startswith(".")) >= 2500,
      body(msg) == body(want))
PY
check "$(cat "$T/dots.out")" "True True True" "arrived whole, every dot line as composed"

# STARTTLS: a certificate nobody vouches for stops the run (75); relaxed (loopback), TLS is used.
kill "$(cat "$T/smtpd.ready")"; sleep 0.3
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=127.0.0.1" \
    -addext "subjectAltName=IP:127.0.0.1" -keyout "$T/key.pem" -out "$T/cert.pem" 2>/dev/null
start_smtpd --tls-cert "$T/cert.pem" --tls-key "$T/key.pem"
write_config "$T/tls.conf" "$SMTP_PORT" "database = \"$T/tls.db\";"
sed -i '0,/^database = .*/{/^database = .*cutoff.db";$/d}' "$T/tls.conf"
sed -i 's/tls = "none";/tls = "starttls";/' "$T/tls.conf"
grep -v -E '^(bad|temp|full|drop|stall),' "$T/users.csv" >"$T/ok.csv"
load_campaign "$T/tls.conf" "$T/ok.csv"
run --config "$T/tls.conf" --now 2003-08-19T00:00:00Z send $C
expect_rc 75 "STARTTLS with a certificate that does not verify"
expect_err "every SMTP relay stayed down" "ends the run as a relay down"
check "$(wc -l <"$SMTP_OUT")" "0" "and nothing reaches the server"
check "$(sql "$T/tls.db" "SELECT count(*) FROM delivery WHERE state = 'queued' AND attempts = 0")" "20" \
    "everything stays queued"
sed -i 's/tls = "starttls";/tls = "starttls"; tls_verify = false;/' "$T/tls.conf"
run --config "$T/tls.conf" --now 2003-08-19T00:00:00Z send $C
expect_rc 0 "verification relaxed for a relay on loopback"
expect_out "20 sent, 0 deferred, 0 failed" "everything is sent"
check "$(grep -c '"tls": true' "$SMTP_OUT")" "20" "every message went over TLS"
check "$(grep -c '"pipelined": true' "$SMTP_OUT")" "20" "pipelined inside TLS too"

# AUTH (libcurl's, in the connection's setup; the server refuses MAIL without it).
kill "$(cat "$T/smtpd.ready")"; sleep 0.3
start_smtpd --tls-cert "$T/cert.pem" --tls-key "$T/key.pem" --auth "cutoff:s3cret"
write_config "$T/auth.conf" "$SMTP_PORT" "database = \"$T/auth.db\";"
sed -i '0,/^database = .*/{/^database = .*cutoff.db";$/d}' "$T/auth.conf"
printf 's3cret\n' >"$T/relay.password"; chmod 600 "$T/relay.password"
sed -i "s|tls = \"none\";|tls = \"starttls\"; tls_verify = false; user = \"cutoff\"; password_file = \"$T/relay.password\";|" "$T/auth.conf"
load_campaign "$T/auth.conf" "$T/ok.csv"
run --config "$T/auth.conf" --now 2003-08-19T00:00:00Z send $C
expect_rc 0 "AUTH accepted"
expect_out "20 sent, 0 deferred, 0 failed" "everything is sent once authenticated"
check "$(wc -l <"$SMTP_OUT")" "20" "and arrives once"
check "$(grep -c '"pipelined": true' "$SMTP_OUT")" "20" "pipelined after AUTH"
finish
