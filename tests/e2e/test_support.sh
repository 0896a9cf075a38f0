#!/usr/bin/env bash
# Support and reporting on a campaign walked for real: the worked example sent through a private
# Postfix (a DSN comes back for the unknown mailbox and the daily run reads it), logins and login
# reminders through `cutoff login --batch`, completion by login and by `cutoff complete`. Then the
# answers of `cutoff user`, `who` and `report` are asserted exactly, in every format: CSV read back
# by Python's csv module, JSON by Python's json module, both against an oracle that recomputes
# every person and every day from the raw tables. Then `cutoff forget` erases one person and the
# whole database is searched for what it must no longer hold.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/postfix.sh"
start_postfix support
mkdir -p "$PF_MAIL/bounces/new" "$PF_MAIL/bounces/cur" "$PF_MAIL/bounces/tmp"
chown -R postfix:postfix "$PF_MAIL/bounces"
CONF=$T/cutoff.conf DB=$T/cutoff.db
write_config "$CONF" "$PF_PORT"
sed -i "s|^bounces = { |bounces = { maildir = \"$PF_MAIL/bounces\"; quarantine = \"$T/quarantine\"; |" "$CONF"
copy_campaign
cutoff() { "$CUTOFF_BIN" --config "$CONF" "$@"; }
W=/usr/bin/python3
ORACLE=$T/oracle.py

# The oracle: every person and every day recomputed from the raw tables, as cutoff(1) defines them.
cat >"$ORACLE" <<'PY'
import csv, datetime, json, sqlite3, sys
from zoneinfo import ZoneInfo
UTC = datetime.timezone.utc
problems = []
def expect(got, want, what):
    if got != want:
        problems.append(f"{what}: got {got!r}, wanted {want!r}")
def iso(t):
    return datetime.datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if t else ""
REASONS = {"hard-bounce", "soft-bounce", "complaint", "unsubscribe", "forgotten", "manual", "suppressed"}

def people(db):
    (cid,) = db.execute("SELECT id FROM campaign WHERE name = 'messenger-upgrade'").fetchone()
    seg = dict(db.execute("SELECT id, name FROM segment"))
    sup = {e: (r, t) for e, r, t in db.execute("SELECT email, reason, created_at FROM suppression WHERE email IS NOT NULL")}
    unsub = dict(db.execute("SELECT recipient_id, created_at FROM campaign_unsubscribe"))
    rem = {r: (n, a, b) for r, n, a, b in db.execute(
        "SELECT recipient_id, count(*), min(shown_at), max(shown_at) FROM login_reminder GROUP BY 1")}
    dels = {}
    for row in db.execute("SELECT recipient_id, id, kind, state, reason, coalesce(sent_at, 0), updated_at FROM delivery"):
        dels.setdefault(row[0], []).append(row[1:])
    out = []
    for rid, uid, email, sid, state, created, completed, updated in db.execute(
            "SELECT id, user_id, email, segment_id, state, created_at, coalesce(completed_at, 0), updated_at"
            " FROM recipient WHERE campaign_id = ? AND segment_id IS NOT NULL ORDER BY id", (cid,)):
        ds = dels.get(rid, [])
        sent = [d[4] for d in ds if d[4]]
        told = [d[4] for d in ds if d[2] == "sent"]
        bounces = [d for d in ds if d[2] == "bounced" or (d[2] == "failed" and d[3] in ("hard", "soft"))]
        deferred = [d[5] for d in ds if d[2] == "deferred"]
        n, fr, lr = rem.get(rid, (0, 0, 0))
        p = dict(user_id=uid, email=email or "", segment=seg[sid], state=state, emails=len(sent),
                 first_email=min(sent, default=0), last_email=max(sent, default=0),
                 delivered=len(told), reminders=n, first_reminder=fr, last_reminder=lr,
                 completed=completed, created=created, done=bool(completed) or state == "completed")
        last = max(ds, default=None)
        p["last_kind"], p["last_result"] = (last[1], last[2]) if last else ("", "")
        b = max(bounces, key=lambda d: d[5], default=None)
        p["bounced_at"] = b[5] if b else 0
        p["bounce"] = ("hard" if b[3] == "hard" else "soft") if b else ""
        p["deferred_at"] = max(deferred, default=0)
        if state == "forgotten":
            p["suppressed"], p["suppressed_at"] = "forgotten", updated
        elif email in sup:
            p["suppressed"], p["suppressed_at"] = sup[email][0] if sup[email][0] in REASONS else "suppressed", sup[email][1]
        elif rid in unsub:
            p["suppressed"], p["suppressed_at"] = "unsubscribe", unsub[rid]
        else:
            s = [d for d in ds if d[2] == "suppressed"]
            p["suppressed"] = (s[0][3] if s[0][3] in REASONS else "suppressed") if s else ""
            p["suppressed_at"] = s[0][5] if s else 0
        p["first_told"] = min([t for t in (min(told, default=0), fr) if t], default=0)
        p["last_told"] = max(max(told, default=0), lr)
        p["last_activity"] = max([created, completed, lr, p["suppressed_at"]] + [d[5] for d in ds] + sent)
        out.append(p)
    return out

STATES = {
    "all": (lambda p: True, "last_activity"),
    "notified": (lambda p: p["delivered"] > 0 or p["reminders"] > 0, "last_told"),
    "not-notified": (lambda p: p["delivered"] == 0 and p["reminders"] == 0, "last_activity"),
    "bounced": (lambda p: p["bounced_at"] != 0, "bounced_at"),
    "deferred": (lambda p: p["deferred_at"] != 0, "deferred_at"),
    "reminded": (lambda p: p["reminders"] > 0, "last_reminder"),
    "completed": (lambda p: p["done"], "completed"),
    "pending": (lambda p: not p["done"], "last_activity"),
    "suppressed": (lambda p: p["suppressed"] != "", "suppressed_at"),
}
COLS = ["user_id", "email", "segment", "state", "emails", "first_email", "last_email", "last_kind",
        "last_result", "bounce", "reminders", "last_reminder", "completed", "suppressed"]
def row(p):
    return [p["user_id"], p["email"], p["segment"], p["state"], str(p["emails"]), iso(p["first_email"]),
            iso(p["last_email"]), p["last_kind"], p["last_result"], p["bounce"], str(p["reminders"]),
            iso(p["last_reminder"]), iso(p["completed"]), p["suppressed"]]

def check_who(db, folder):
    ps = people(db)
    for st, (sel, _) in STATES.items():
        want = [row(p) for p in ps if sel(p)]
        with open(f"{folder}/who-{st}.csv", newline="") as f:
            got = list(csv.reader(f, strict=True))
        expect(got[0], COLS, f"{st}: CSV header")
        expect(got[1:], want, f"who --state {st} --format csv")
        lines = [json.loads(l) for l in open(f"{folder}/who-{st}.jsonl")]
        conv = [[str(v) if isinstance(v, int) else (v if v is not None else "") for v in (l[c] for c in COLS)] for l in lines]
        expect(conv, want, f"who --state {st} --format json")
        expect([list(l) for l in lines][:1], [COLS][:len(lines[:1])], f"{st}: JSON keys in order")
    since = int(datetime.datetime(2003, 9, 18, tzinfo=UTC).timestamp())
    want = [row(p) for p in ps if STATES["notified"][0](p) and p["last_told"] >= since]
    expect(list(csv.reader(open(f"{folder}/who-since.csv", newline="")))[1:], want, "--since")

def check_report(db, folder, now_text):
    tz = ZoneInfo("America/Los_Angeles")
    now = int(datetime.datetime.strptime(now_text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp())
    ps = people(db)
    doc = json.load(open(f"{folder}/report.json"))
    def funnel(sel):
        f = dict(affected=0, emailed=0, delivered=0, reminded=0, completed=0, bounced=0, suppressed=0, pending=0)
        for p in ps:
            if not sel(p):
                continue
            f["affected"] += 1; f["emailed"] += p["emails"] > 0; f["delivered"] += p["delivered"] > 0
            f["reminded"] += p["reminders"] > 0; f["completed"] += p["done"]
            f["bounced"] += p["bounced_at"] != 0; f["suppressed"] += p["suppressed"] != ""
            f["pending"] += not p["done"]
        return f
    expect(doc["funnel"], funnel(lambda p: True), "the funnel")
    segs = db.execute("SELECT name, target_version, send_at FROM segment ORDER BY position").fetchall()
    expect([s["name"] for s in doc["segments"]], [s[0] for s in segs], "the segments, in order")
    for s, (name, target, send_at) in zip(doc["segments"], segs):
        expect((s["target_version"], s["send_at"]), (target, iso(send_at)), f"segment {name}")
        expect(s["funnel"], funnel(lambda p: p["segment"] == name), f"segment {name}'s funnel")
    (announce, tzname) = db.execute("SELECT announce_at, timezone FROM campaign").fetchone()
    d0 = datetime.datetime.fromtimestamp(announce, tz).date()
    d1 = datetime.datetime.fromtimestamp(now, tz).date()
    start = lambda d: int(datetime.datetime(d.year, d.month, d.day, tzinfo=tz).timestamp())
    days, d = [], d0
    while d <= d1:
        days.append(d); d += datetime.timedelta(1)
    def day_of(t):
        if not t:
            return None
        x = datetime.datetime.fromtimestamp(t, tz).date()
        return x if d0 <= x <= d1 else ("before" if x < d0 else None)
    count = lambda ts: {x: sum(1 for t in ts if day_of(t) == x) for x in days + ["before"]}
    sent = count([t for (t,) in db.execute("SELECT sent_at FROM delivery WHERE sent_at IS NOT NULL")])
    rems = count([t for (t,) in db.execute("SELECT shown_at FROM login_reminder")])
    told = count([p["first_told"] for p in ps])
    done = count([p["completed"] for p in ps if p["done"]])
    bounced = count([p["bounced_at"] for p in ps])
    want, nt, ct = [], told["before"], done["before"]
    for x in days:
        nt += told[x]; ct += done[x]
        want.append(dict(date=str(x), start=iso(start(x)), emails=sent[x], reminders=rems[x],
                         notified=told[x], completed=done[x], bounced=bounced[x],
                         notified_total=nt, completed_total=ct))
    expect(doc["days"], want, "the days")
    expect((doc["campaign"], doc["timezone"], doc["as_of"], doc["announce"]),
           ("messenger-upgrade", tzname, now_text, iso(announce)), "the heading")

db = sqlite3.connect(sys.argv[2])
if sys.argv[1] == "who":
    check_who(db, sys.argv[3])
else:
    check_report(db, sys.argv[3], sys.argv[4])
for p in problems[:20]:
    print("  " + p[:400])
print(f"{len(problems)} problems")
PY

# 120 generated users and eight written for the story, one with a comma in its user id.
gen_users 120 23 "$T/users.csv"
cat >>"$T/users.csv" <<'CSV'
s-told,s-told@users.example.test,Told Person,en-US,America/Los_Angeles,msn-messenger,4.6,windows,XP,US,2001
s-bounce,unknown-s-bounce@users.example.test,Bounce Person,en-US,America/Chicago,msn-messenger,4.5,windows,98,US,2000
s-mac9,s-mac9@users.example.test,Mac Person,fr-FR,Europe/Paris,msn-messenger,2.5,mac,9.2.2,FR,2002
s-done,s-done@users.example.test,Done Person,en-US,America/New_York,windows-messenger,4.7.300,windows,XP,US,2001
s-forget,s-forget@users.example.test,Forget Me,de-DE,Europe/Berlin,msn-messenger,4.6,windows,XP,DE,1999
s-upper,S-Upper@USERS.EXAMPLE.TEST,Upper Case,en-GB,Europe/London,msn-messenger,4.7,windows,2000,GB,2003
s-quiet,s-quiet@users.example.test,,en-US,America/Denver,trillian,2.0,windows,XP,US,2001
"s-comma,1",s-comma@users.example.test,"Comma, ""Q"" Person",en-US,America/Denver,gaim,0.66,linux,,US,2002
CSV
cutoff init >/dev/null
cutoff campaign add "$T/campaigns/$C.cfg" >/dev/null
run --config "$CONF" --now 2003-08-17T17:00:00Z import $C "$T/users.csv"
expect_rc 0 "the list imports"
AFFECTED=$(sql "$DB" "SELECT count(*) FROM recipient WHERE segment_id IS NOT NULL")
check "$AFFECTED" "128" "128 affected people"
mac9=$(sql "$DB" "SELECT count(*) FROM recipient r JOIN segment s ON s.id = r.segment_id WHERE s.name = 'mac-os9'")

# 18 August: the first wave (all but Mac OS 9); Postfix returns a DSN for the unknown mailbox.
run --config "$CONF" --now 2003-08-18T17:00:00Z run
expect_rc 0 "the announcement's run"
check "$(pf_wait pf_count_bounces 1 60)" "1" "Postfix returned a DSN for unknown-s-bounce"
check "$(pf_wait pf_count_delivered $((AFFECTED - mac9 - 1)) 60)" "$((AFFECTED - mac9 - 1))" \
    "Postfix delivered the first wave"
run --config "$CONF" --now 2003-08-19T17:00:00Z run
expect_rc 0 "19 August: the run reads the DSN"
check "$(sql "$DB" "SELECT d.state || ' ' || d.reason FROM delivery d JOIN recipient r ON r.id = d.recipient_id WHERE r.user_id = 's-bounce'")" \
    "bounced hard" "the DSN bounced s-bounce's e-mail"
run --config "$CONF" --now 2003-08-25T17:00:00Z run
expect_rc 0 "25 August: Mac OS 9's wave"

# Logins in the reminder window; one completes by logging in with 5.0, one by `cutoff complete`.
cat >"$T/logins.jsonl" <<'JSON'
{"user":"s-told","client_version":"4.6","platform":"windows","time":"2003-09-18T17:00:00Z"}
{"user":"s-forget","client_version":"4.6","platform":"windows","time":"2003-09-18T18:00:00Z"}
{"user":"s-told","client_version":"4.6","platform":"windows","time":"2003-09-19T17:00:00Z"}
{"user":"s-told","client_version":"4.6","platform":"windows","time":"2003-09-19T18:00:00Z"}
{"user":"s-told","client_version":"5.0","platform":"windows","time":"2003-09-22T17:00:00Z"}
{"user":"s-bounce","client_version":"4.5","platform":"windows","time":"2003-09-23T17:00:00Z"}
JSON
cutoff --now 2003-09-23T18:00:00Z login --batch <"$T/logins.jsonl" >"$T/answers.jsonl" 2>"$T/login.err"
check "$?" "0" "the logins are answered"
check "$(grep -c '"reminder":{' "$T/answers.jsonl")" "3" "three reminders shown (one a day a person; none to the bounced)"
run --config "$CONF" --now 2003-09-20T17:00:00Z complete $C s-done
expect_rc 0 "cutoff complete s-done"
# A deferral: a queued delivery settled as deferred by a relay that says 451 (simulated in the
# ledger through sqlite3: the fault-injecting relay is another test's business).
sql "$DB" "INSERT INTO delivery (campaign_id, recipient_id, kind, occurrence, state, due_at, attempts, relay, last_code, last_reply, created_at, updated_at)
           SELECT campaign_id, id, 'reminder', 1063900800, 'deferred', 1065000000, 1, 'loopback', 451, '4.7.1 Try again later', 1063900800, 1063904400 FROM recipient WHERE user_id = 's-quiet';
           INSERT INTO attempt (delivery_id, run_id, at, relay, code, reply, outcome)
           SELECT id, 'test', 1063904400, 'loopback', 451, '4.7.1 Try again later', 'deferred' FROM delivery WHERE kind = 'reminder';"

NOW=2003-09-25T17:00:00Z
q() { "$CUTOFF_BIN" --config "$CONF" --now "$NOW" "$@"; }

# ---- cutoff user: exact text and JSON ---------------------------------------------------------
mid() { sql "$DB" "SELECT a.message_id FROM attempt a JOIN delivery d ON d.id = a.delivery_id JOIN recipient r ON r.id = d.recipient_id WHERE r.user_id = '$1' AND a.outcome = 'sent'"; }
reply() { sql "$DB" "SELECT a.reply FROM attempt a JOIN delivery d ON d.id = a.delivery_id JOIN recipient r ON r.id = d.recipient_id WHERE r.user_id = '$1' AND a.outcome = 'sent'"; }
cat >"$T/want-told.txt" <<TXT
messenger-upgrade: s-told, Told Person <s-told@users.example.test>
  campaign     MSN Messenger service upgrade (active)
  segment      msn-windows, completed 2003-09-22 10:00:00 PDT
  client       msn-messenger 4.6, windows XP
  locale       en-US, America/Los_Angeles
  attributes   country=US, member_since=2001
  suppressed   no
  history (America/Los_Angeles):
    2003-08-17 10:00:00 PDT  imported        segment msn-windows, import 1 ($T/users.csv)
    2003-08-18 10:00:00 PDT  queued          initial e-mail
    2003-08-18 10:00:00 PDT  e-mail sent     initial e-mail via loopback: 250 $(reply s-told); Message-ID <$(mid s-told)>
    2003-09-18 10:00:00 PDT  login           client 4.6 on windows: reminder
    2003-09-18 10:00:00 PDT  reminder shown  period 1, client 4.6
    2003-09-19 10:00:00 PDT  login           client 4.6 on windows: reminder
    2003-09-19 10:00:00 PDT  reminder shown  period 2, client 4.6
    2003-09-19 11:00:00 PDT  login           client 4.6 on windows: none
    2003-09-22 10:00:00 PDT  login           client 5.0 on windows: completed
    2003-09-22 10:00:00 PDT  completed       by login, client_version 5.0, platform windows
TXT
run --now "$NOW" --config "$CONF" user s-told
expect_rc 0 "cutoff user s-told"
if diff -u "$T/want-told.txt" "$OUT" >"$T/diff"; then ok; else RC=-; not_ok "user s-told, exactly: $(cat "$T/diff")"; fi

bounce_at=$(sql "$DB" "SELECT at FROM event e JOIN recipient r ON r.id = e.recipient_id WHERE r.user_id = 's-bounce' AND e.kind = 'bounce'")
run --now "$NOW" --config "$CONF" user unknown-s-bounce@USERS.example.TEST --format json
expect_rc 0 "cutoff user by address, the domain in another case"
$W - "$OUT" "$DB" "$(mid s-bounce)" >"$T/py.out" 2>&1 <<'PY'
import json, sqlite3, sys
doc = json.load(open(sys.argv[1]))
db = sqlite3.connect(sys.argv[2])
p = doc["people"]
assert doc["address"] == "unknown-s-bounce@users.example.test", doc["address"]
assert len(p) == 1 and p[0]["user_id"] == "s-bounce", p
p = p[0]
assert p["suppression"]["reason"] == "hard-bounce", p["suppression"]
assert doc["address_suppression"]["reason"] == "hard-bounce"
whats = [(h["what"], h.get("kind") or h.get("outcome")) for h in p["history"]]
want = [("imported", None), ("queued", None), ("attempt", "sent"), ("event", "bounce"),
        ("login", "none")]
assert whats == want, whats
sent = p["history"][2]
assert sent["code"] == 250 and sent["message_id"] == sys.argv[3] and sent["relay"] == "loopback", sent
bounce = p["history"][3]["detail"]
assert bounce["class"] == "hard" and bounce["status"].startswith("5.1."), bounce
assert bounce["address"] == "unknown-s-bounce@users.example.test", bounce
(at,) = db.execute("SELECT at FROM event WHERE kind = 'bounce'").fetchone()
import datetime
assert p["history"][3]["at"] == datetime.datetime.fromtimestamp(at, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
print("ok")
PY
check "$(cat "$T/py.out")" "ok" "user --format json: the bounce, its DSN and the Message-ID"

run --now "$NOW" --config "$CONF" user S-Upper@users.EXAMPLE.test
expect_out "messenger-upgrade: s-upper, Upper Case <S-Upper@users.example.test>" "the domain matched without regard to case"
run --now "$NOW" --config "$CONF" user s-upper@users.example.test
expect_rc 66 "the local part is not case-folded"
run --now "$NOW" --config "$CONF" user nobody-at-all
expect_rc 66 "an unknown user: exit 66"
expect_err "no one with the user id or address 'nobody-at-all'" "and says so"
run --now "$NOW" --config "$CONF" user s-told --format yaml
expect_rc 64 "a bad --format is a usage error"

# ---- cutoff who: CSV and JSON lines against the oracle, the table's alignment ------------------
for st in all notified not-notified bounced deferred reminded completed pending suppressed; do
    opt=(); [ "$st" = all ] || opt=(--state "$st")
    q who $C "${opt[@]}" --format csv >"$T/who-$st.csv" 2>"$ERR" || { RC=$?; not_ok "who --state $st --format csv"; }
    q who $C "${opt[@]}" --format json >"$T/who-$st.jsonl" 2>"$ERR" || { RC=$?; not_ok "who --state $st --format json"; }
done
q who $C --state notified --since 2003-09-18 --format csv >"$T/who-since.csv"
q who $C --segment mac-os9 --format csv >"$T/who-mac9.csv"
$W "$ORACLE" who "$DB" "$T" >"$T/oracle.out" 2>&1
check "$(tail -1 "$T/oracle.out")" "0 problems" "who, every state, CSV and JSON lines, as the oracle has them: $(head -5 "$T/oracle.out")"
check "$(grep -c . "$T/who-all.csv")" "$((AFFECTED + 1))" "who lists every affected person, and a header row"
check "$(sed -n 1p "$T/who-all.csv")" "$(printf 'user_id,email,segment,state,emails,first_email,last_email,last_kind,last_result,bounce,reminders,last_reminder,completed,suppressed\r')" "the CSV header"
check "$(grep '^s-told,' "$T/who-all.csv")" "$(printf 's-told,s-told@users.example.test,msn-windows,completed,1,2003-08-18T17:00:00Z,2003-08-18T17:00:00Z,initial,sent,,2,2003-09-19T17:00:00Z,2003-09-22T17:00:00Z,\r')" "s-told's CSV row, exactly"
check "$(grep '^"s-comma,1",' "$T/who-all.csv")" "$(printf '"s-comma,1",s-comma@users.example.test,third-party,pending,1,2003-08-18T17:00:00Z,2003-08-18T17:00:00Z,initial,sent,,0,,,\r')" "a comma in a value is quoted"
check "$(grep '"user_id":"s-bounce"' "$T/who-bounced.jsonl")" '{"user_id":"s-bounce","email":"unknown-s-bounce@users.example.test","segment":"msn-windows","state":"pending","emails":1,"first_email":"2003-08-18T17:00:00Z","last_email":"2003-08-18T17:00:00Z","last_kind":"initial","last_result":"bounced","bounce":"hard","reminders":0,"last_reminder":null,"completed":null,"suppressed":"hard-bounce"}' \
    "s-bounce's JSON line, exactly"
check "$(cut -d, -f1 "$T/who-bounced.csv" | tail -n +2 | tr '\n' ' ')" "s-bounce " "--state bounced: only s-bounce"
check "$(cut -d, -f1 "$T/who-reminded.csv" | tail -n +2 | tr '\n' ' ')" "s-told s-forget " "--state reminded"
check "$(cut -d, -f1 "$T/who-deferred.csv" | tail -n +2 | tr '\n' ' ')" "s-quiet " "--state deferred"
check "$(grep -c . "$T/who-completed.csv")" "3" "--state completed: s-told and s-done"
check "$(cut -d, -f1 "$T/who-since.csv" | tail -n +2 | tr '\n' ' ')" "s-told s-forget " "--state notified --since 18 September"
check "$(tail -n +2 "$T/who-mac9.csv" | cut -d, -f3 | sort -u | tr '\n' ' ')" "mac-os9 " "--segment mac-os9"
check "$(($(grep -c . "$T/who-mac9.csv") - 1))" "$mac9" "--segment: every Mac OS 9 person"
run --now "$NOW" --config "$CONF" who $C --state bounced
expect_rc 0 "who as a table"
cat >"$T/want-table.txt" <<'TXT'
USER_ID        EMAIL                              SEGMENT           STATE     EMAILS FIRST_EMAIL      LAST_RESULT BOUNCE REMINDERS COMPLETED        SUPPRESSED
s-bounce       unknown-s-bounce@users.example.te~ msn-windows       pending        1 2003-08-18 10:00 bounced     hard           0 -                hard-bounce
TXT
if diff -u "$T/want-table.txt" "$OUT" >"$T/diff"; then ok; else RC=-; not_ok "who table, exactly: $(cat "$T/diff")"; fi
q who $C >"$T/who-table.txt"
check "$(grep -c . "$T/who-table.txt")" "$((AFFECTED + 1))" "the table: a header and a line a person"
check "$(cut -c 15,50,68,78,85,102,114,121,131,148 "$T/who-table.txt" | sort -u | tr -d '\n')" "          " \
    "every table row has its column gaps at the same places"
run --now "$NOW" --config "$CONF" who $C --state bogus
expect_rc 64 "an unknown state is a usage error"
run --now "$NOW" --config "$CONF" who $C --segment no-such
expect_rc 66 "an unknown segment: exit 66"
run --now "$NOW" --config "$CONF" who no-such-campaign
expect_rc 66 "an unknown campaign: exit 66"

# ---- cutoff report: JSON against the oracle, the table's lines ---------------------------------
q report $C --format json >"$T/report.json"
check "$?" "0" "report --format json"
$W "$ORACLE" report "$DB" "$T" "$NOW" >"$T/oracle.out" 2>&1
check "$(tail -1 "$T/oracle.out")" "0 problems" "report JSON: funnel, segments and days as the oracle has them: $(head -5 "$T/oracle.out")"
q report $C >"$T/report.txt"
for line in "affected                        128   100.0%" "reminded at login                 2     1.6%" \
    "completed                         2     1.6%" "bounced                           1     0.8%" \
    "still pending                   126    98.4%" \
    "$(printf '2003-08-18 Mon %8d %9d %8d %9d %8d %8.1f%% %9.1f%%' $((AFFECTED - mac9)) 0 $((AFFECTED - mac9 - 1)) 0 0 "$(awk "BEGIN { print 100*($AFFECTED-$mac9-1)/$AFFECTED }")" 0)" \
    "$(printf '2003-08-19 Tue %8d %9d %8d %9d %8d %8.1f%% %9.1f%%' 0 0 0 0 1 "$(awk "BEGIN { print 100*($AFFECTED-$mac9-1)/$AFFECTED }")" 0)" \
    "$(printf '2003-09-22 Mon %8d %9d %8d %9d %8d %8.1f%% %9.1f%%' 0 0 0 1 0 "$(awk "BEGIN { print 100*($AFFECTED-1)/$AFFECTED }")" "$(awk "BEGIN { print 100*2/$AFFECTED }")")" \
    "as of 2003-09-25 10:00:00 PDT"; do
    grep -qxF -- "$line" "$T/report.txt" && ok || { RC=-; not_ok "report table lacks: $line"; }
done
check "$(grep -c '^2003-' "$T/report.txt")" "39" "one line a day, 18 August to 25 September"
# Who and report agree: each --state count is the funnel's.
for pair in notified:delivered reminded:reminded completed:completed bounced:bounced suppressed:suppressed pending:pending; do
    st=${pair%%:*} key=${pair#*:}
    [ "$st" = notified ] && continue
    n=$(($(grep -c . "$T/who-$st.csv") - 1))
    check "$n" "$($W -c "import json; print(json.load(open('$T/report.json'))['funnel']['$key'])")" "who --state $st agrees with the report's $key"
done

# ---- safe beside a writer: who and report while another process holds the write lock -----------
/usr/bin/python3 - "$DB" "$T/locked" <<'PY' &
import sqlite3, sys, time
c = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=10)
c.execute("BEGIN IMMEDIATE"); c.execute("UPDATE campaign SET updated_at = updated_at")
open(sys.argv[2], "w").close()
time.sleep(4); c.execute("ROLLBACK")
PY
hold=$!
for i in $(seq 50); do [ -e "$T/locked" ] && break; sleep 0.1; done
start=$SECONDS
q report $C --format json >"$T/report-locked.json"
check "$?" "0" "report while another process holds the write lock"
q who $C --format csv >/dev/null
check "$?" "0" "who while another process holds the write lock"
q user s-told >/dev/null
check "$?" "0" "user while another process holds the write lock"
check "$((SECONDS - start < 3 ? 1 : 0))" "1" "none of them waited for the writer"
cmp -s "$T/report.json" "$T/report-locked.json" && ok || not_ok "the same report beside a writer"
wait $hold

# ---- forget --------------------------------------------------------------------------------------
run --config "$CONF" --now 2003-09-26T17:00:00Z forget s-forget
expect_rc 0 "cutoff forget s-forget"
expect_out "forgot s-forget: 1 recipient record erased" "forget says what it did"
fid=$(sql "$DB" "SELECT id FROM recipient WHERE user_id = 'forgotten-' || id")
check "$(sql "$DB" "SELECT state || '|' || coalesce(email, '') || '|' || coalesce(name, '') || '|' || coalesce(attrs, '') || '|' || coalesce(locale, '') FROM recipient WHERE id = $fid")" \
    "forgotten||||" "the recipient row keeps no personal field"
sqlite3 "$DB" .dump >"$T/dump.sql"
check "$(grep -ci 's-forget' "$T/dump.sql")" "0" "no trace of the address or user id anywhere in the database"
check "$(grep -c 'Forget Me' "$T/dump.sql")" "0" "nor of the name"
check "$(sql "$DB" "SELECT reason || '|' || coalesce(email, 'NULL') FROM suppression WHERE address_hash = '$(printf %s s-forget@users.example.test | sha256sum | cut -c1-64)'")" \
    "forgotten|NULL" "the address stays suppressed by its SHA-256 alone"
check "$(sql "$DB" "SELECT count(*) FROM event WHERE kind = 'forgotten' AND recipient_id = $fid")" "1" "the event log records the forgetting"
check "$(sql "$DB" "SELECT count(*) FROM login WHERE user_id = 'forgotten-$fid'")" "1" "the logins are kept, re-keyed"
check "$(sql "$DB" "SELECT count(*) FROM login_by_user WHERE user_id = 'forgotten-$fid'")" "1" "and found by their new key"
q report $C --format json >"$T/report-after.json"
$W - "$T/report.json" "$T/report-after.json" >"$T/py.out" <<'PY'
import json, sys
a, b = (json.load(open(f)) for f in sys.argv[1:3])
for k in ("affected", "emailed", "delivered", "reminded", "completed", "bounced", "pending"):
    assert a["funnel"][k] == b["funnel"][k], (k, a["funnel"][k], b["funnel"][k])
assert b["funnel"]["suppressed"] == a["funnel"]["suppressed"] + 1
assert [d for d in a["days"]] == [d for d in b["days"]]
print("ok")
PY
check "$(cat "$T/py.out")" "ok" "the report's counts survive forget (one more person suppressed)"
run --config "$CONF" --now "$NOW" user s-forget@users.example.test
expect_rc 0 "user by a forgotten address"
check "$(cat "$OUT")" "address s-forget@users.example.test: suppressed, forgotten since 2003-09-26 17:00:00 UTC (campaign messenger-upgrade)" \
    "says it was forgotten, and nothing else"
run --config "$CONF" --now "$NOW" user s-forget
expect_rc 66 "the user id is gone"
run --config "$CONF" --now "$NOW" user "forgotten-$fid"
expect_out "messenger-upgrade: forgotten-$fid (personal data erased)" "the anonymous row can still be looked at"
expect_out "reminder shown  period 1, client 4.6" "with its anonymous history"
q who $C --format csv >"$T/who-after.csv"
check "$(grep -c "^forgotten-$fid,,msn-windows,forgotten," "$T/who-after.csv")" "1" "who lists the forgotten row without an address"
run --config "$CONF" --now 2003-09-26T17:00:00Z forget no-such-user
expect_rc 66 "forget of an unknown user id: exit 66"

# Imported again: never mailed again (the address is suppressed by its hash).
before=$(pf_count_delivered)
run --config "$CONF" --now 2003-09-27T17:00:00Z import $C "$T/users.csv"
expect_rc 0 "the same list imported again"
run --config "$CONF" --now 2003-09-27T17:00:00Z run
sleep 1
check "$(pf_count_delivered)" "$before" "nothing is mailed to the forgotten address"
check "$(sql "$DB" "SELECT count(*) FROM delivery d JOIN recipient r ON r.id = d.recipient_id WHERE r.email = 's-forget@users.example.test' AND d.state NOT IN ('suppressed', 'cancelled')")" \
    "0" "any delivery to it is suppressed"
check "$(sql "$DB" "SELECT count(*) FROM recipient WHERE email = 's-forget@users.example.test' OR name = 'Forget Me' OR user_id = 's-forget'")" \
    "0" "a re-import does not bring the forgotten person's data back"
finish
