#!/usr/bin/env bash
# The worked example walked day by day, 17 August to 16 October 2003, against a private Postfix:
# the daily run each day (twice: the second must change nothing; none while the machine is off
# 27 September - 7 October), a day's simulated logins through `cutoff login --batch`, bounces read
# back from Postfix's DSNs, completion by login, by `cutoff complete` and by `--file` while a
# final notice is queued. Then: the exact e-mails each person received (from the inbox), the
# reminder periods each was reminded in (from the answers and from the ledger), the calendar
# read back by python3-icalendar.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/postfix.sh"
/usr/bin/python3 -c 'import icalendar' 2>/dev/null || { echo "SKIP: python3-icalendar is not installed"; exit 77; }
start_postfix walk
# The bounce mailbox exists before the first bounce arrives, as an operator would set it up.
mkdir -p "$PF_MAIL/bounces/new" "$PF_MAIL/bounces/cur" "$PF_MAIL/bounces/tmp"
chown -R postfix:postfix "$PF_MAIL/bounces"
CONF=$T/cutoff.conf DB=$T/cutoff.db
write_config "$CONF" "$PF_PORT"
sed -i "s|^bounces = { |bounces = { maildir = \"$PF_MAIL/bounces\"; quarantine = \"$T/quarantine\"; |" "$CONF"
copy_campaign
# Reminder e-mails on Mondays at 09:00 until 6 October (22 Sep, 29 Sep, 6 Oct).
sed -i 's|^final_notice = .*|&\nreminder_emails = "FREQ=WEEKLY;BYDAY=MO;BYHOUR=9;UNTIL=20031007T000000Z";|' \
    "$T/campaigns/$C.cfg"
cut() { "$CUTOFF_BIN" --config "$CONF" "$@"; }

# The scenario: who is who, when they log in, and what each must get. One place for all of it.
cat >"$T/walk.py" <<'PY'
import csv, email, email.policy, email.utils, glob, json, os, sqlite3, sys
from datetime import date, datetime, timedelta, timezone
UTC = timezone.utc
START, END = date(2003, 8, 17), date(2003, 10, 16)
DOWN = {date(2003, 9, 27) + timedelta(i) for i in range(11)}      # the machine is off
WINDOW = {date(2003, 9, 18) + timedelta(i) for i in range(27)}    # 18 Sep .. 14 Oct (PDT)
OCT = lambda d: date(2003, 10, d)
SEP = lambda d: date(2003, 9, d)
# uid: client, version, platform, os
USERS = {
    "w-never": ("msn-messenger", "4.6", "windows", "XP"),
    "w-daily": ("msn-messenger", "4.6", "windows", "XP"),
    "w-many": ("msn-messenger", "4.5", "windows", "98"),
    "w-sep25": ("msn-messenger", "4.6", "windows", "XP"),
    "w-aug30": ("windows-messenger", "4.7.300", "windows", "XP"),
    "w-mac9": ("msn-messenger", "2.5", "mac", "9.2.2"),
    "w-mac9up": ("msn-messenger", "2.1", "mac", "9.1"),
    "w-mac8": ("msn-messenger", "2.0", "mac", "8.6"),
    "w-companion": ("msn-messenger", "1.0", "msn-companion", ""),
    "w-trillian": ("trillian", "2.0", "windows", "XP"),
    "w-sometimes": ("msn-messenger", "4.6", "windows", "ME"),
    "w-edge": ("msn-messenger", "4.6", "windows", "XP"),
    "w-cmd": ("msn-messenger", "4.6", "windows", "XP"),
    "w-file": ("msn-messenger", "4.6", "windows", "XP"),
    "w-oct12": ("msn-messenger", "4.6", "windows", "XP"),
    "w-oct8": ("msn-messenger", "4.6", "windows", "XP"),
    "w-bounce": ("msn-messenger", "4.6", "windows", "XP"),
}
def addr(uid):
    return ("unknown-" if uid == "w-bounce" else "") + uid + "@users.example.test"

def days():
    d = START
    while d <= END:
        yield d
        d += timedelta(1)

def logins(uid, d):
    """The logins of uid on UTC date d: (time, client version)."""
    i = (d - START).days
    at = lambda h, m=0, s=0: datetime(d.year, d.month, d.day, h, m, s, tzinfo=UTC)
    old = USERS.get(uid, ("", "4.6"))[1]
    if uid in ("w-daily", "w-bounce", "w-stranger"):
        return [(at(17), old)]
    if uid == "w-many":
        return [(at(h), old) for h in (8, 12, 16, 20, 23)]
    if uid == "w-sep25":
        return [(at(17), "5.0" if d >= SEP(25) else old)]
    if uid == "w-aug30":
        return [(at(17), "4.7.2009" if d >= date(2003, 8, 30) else old)]
    if uid == "w-mac9":
        return [(at(18), old)] if i % 3 == 0 else []
    if uid == "w-mac9up":
        return [(at(18), "2.5.1" if d >= SEP(1) else old)]
    if uid in ("w-mac8", "w-companion"):
        return [(at(15), "9.9")]  # no version completes a discontinued segment
    if uid == "w-trillian":
        return [(at(19), old)] if i % 2 == 0 else []
    if uid == "w-sometimes":
        return [(at(20), old)] if i % 3 == 1 else []
    if uid == "w-edge":  # 06:59:59Z is 23:59:59 PDT the day before
        if d in (SEP(18), OCT(15)):
            return [(at(6, 59, 59), old), (at(7), old)]
        return [(at(7), old)] if d == OCT(16) else []
    if uid in ("w-cmd", "w-file"):
        return [(at(16), old)]
    if uid == "w-oct12":  # on 12 Oct they log in with 5.0 by hand, after the failed run
        return [] if d == OCT(12) else [(at(16), old)]
    if uid == "w-oct8":
        return [(at(8), "5.0" if d >= OCT(8) else old)]
    return []

def expected_reminders(uid):
    i = lambda d: (d - START).days
    rule = {
        "w-daily": lambda d: True, "w-many": lambda d: True,
        "w-mac8": lambda d: True, "w-companion": lambda d: True,
        "w-sep25": lambda d: d < SEP(25),
        "w-mac9": lambda d: i(d) % 3 == 0,
        "w-trillian": lambda d: i(d) % 2 == 0,
        "w-sometimes": lambda d: i(d) % 3 == 1,
        "w-edge": lambda d: d in (SEP(18), OCT(14)),
        "w-cmd": lambda d: d <= OCT(12), "w-file": lambda d: d <= OCT(12),
        "w-oct12": lambda d: d < OCT(12),
        "w-oct8": lambda d: d < OCT(8),
    }.get(uid, lambda d: False)
    return sorted(d for d in WINDOW if rule(d))

FULL = [("reminder", "2003-09-22"), ("reminder", "2003-10-08"), ("final", "2003-10-12")]
def expected_mail(uid, segment):
    first = [("initial", "2003-08-25" if segment == "mac-os9" else "2003-08-18")]
    n = {"w-sep25": 1, "w-aug30": 0, "w-mac9up": 0, "w-cmd": 2, "w-file": 2, "w-oct12": 2,
         "w-oct8": 1}.get(uid, 3)
    return [] if uid == "w-bounce" else first + FULL[:n]

PREFIX = [("final", ("Final notice:", "Dernier avis :", "Letzte Erinnerung:", "Último aviso:")),
          ("reminder", ("Reminder:", "Rappel :", "Erinnerung:", "Lembrete:"))]
def kind_of(subject):
    for kind, words in PREFIX:
        if subject.startswith(words):
            return kind
    return "initial"

def cmd_users(out):
    w = csv.writer(open(out, "a", newline=""), lineterminator="\n")
    for uid, (client, version, platform, os_) in USERS.items():
        w.writerow([uid, addr(uid), "Walk " + uid, "en-US", "America/Los_Angeles", client,
                    version, platform, os_, "US", "2001"])

def cmd_events(folder):
    os.makedirs(folder, exist_ok=True)
    for d in days():
        ev = [(t, uid, v) for uid in list(USERS) + ["w-stranger"] for t, v in logins(uid, d)]
        with open(f"{folder}/{d}.jsonl", "w") as f:
            for t, uid, v in sorted(ev):
                f.write(json.dumps({"user": uid, "client_version": v, "platform": "windows",
                                    "time": t.strftime("%Y-%m-%dT%H:%M:%SZ")}) + "\n")
    print(" ".join(str(d) for d in days()))

problems = []
def expect(got, want, what):
    if got != want:
        problems.append(f"{what}: got {got}, wanted {want}")

def check_answers(folder):
    got = {}
    for d in days():
        evs = [json.loads(l) for l in open(f"{folder}/events/{d}.jsonl")]
        ans = [json.loads(l) for l in open(f"{folder}/answers/{d}.jsonl")]
        expect(len(ans), len(evs), f"{d}: one answer per login")
        for ev, a in zip(evs, ans):
            expect(a["user"], ev["user"], f"{d}: answers in order")
            if a["reminder"] is None:
                continue
            t = datetime.strptime(ev["time"], "%Y-%m-%dT%H:%M:%SZ") - timedelta(hours=7)
            got.setdefault(ev["user"], []).append(t.date())
            r = a["reminder"]
            expect(r["days_left"], (OCT(15) - t.date()).days, f"{ev['user']} {d}: days_left")
            expect((r["campaign"], r["upgrade_url"] is not None), ("messenger-upgrade", True),
                   f"{ev['user']} {d}: the reminder's campaign and link")
            if "stops working on Wednesday, October 15, 2003" not in r["text"] and \
               "will no longer connect" not in r["text"]:
                problems.append(f"{ev['user']} {d}: unexpected text {r['text']!r}")
        for ev, a in zip(evs, ans):
            if ev["user"] == "w-sep25" and ev["client_version"] == "5.0" and d <= OCT(15):
                expect(a["completed"], True, f"w-sep25 {d}: completed")
            if ev["user"] in ("w-mac8", "w-companion"):
                expect(a["completed"], False, f"{ev['user']} {d}: discontinued, never completed")
    for uid in list(USERS) + ["w-stranger"]:
        expect(got.get(uid, []), expected_reminders(uid), f"{uid}: days reminded at login")

def check_ledger(db):
    con = sqlite3.connect(db)
    for uid in USERS:
        rows = con.execute("SELECT lr.period_index FROM login_reminder lr JOIN recipient r"
                           " ON r.id = lr.recipient_id WHERE r.user_id = ? ORDER BY 1",
                           (uid,)).fetchall()
        want = [(d - SEP(18)).days for d in expected_reminders(uid)]
        expect([r[0] for r in rows], want, f"{uid}: reminder periods in the ledger")
    occ = con.execute("SELECT DISTINCT occurrence FROM delivery WHERE kind = 'reminder'"
                      " ORDER BY 1").fetchall()
    expect([datetime.fromtimestamp(o[0], UTC).isoformat() for o in occ],
           ["2003-09-22T16:00:00+00:00", "2003-10-06T16:00:00+00:00"],
           "reminder e-mail occurrences (29 Sep was missed and collapsed into 6 Oct)")
    states = con.execute("SELECT d.kind, d.state FROM delivery d JOIN recipient r ON"
                         " r.id = d.recipient_id WHERE r.user_id = 'w-bounce' ORDER BY d.id").fetchall()
    expect(states, [("initial", "bounced"), ("reminder", "suppressed"), ("reminder", "suppressed"),
                    ("final", "suppressed")], "w-bounce: bounced, then suppressed")
    for uid in ("w-cmd", "w-file", "w-oct12"):
        st = con.execute("SELECT d.state, d.reason FROM delivery d JOIN recipient r ON"
                         " r.id = d.recipient_id WHERE r.user_id = ? AND d.kind = 'final'",
                         (uid,)).fetchall()
        expect(st, [("cancelled", "completed")], f"{uid}: its queued final notice cancelled")

def check_inbox(maildir, db):
    con = sqlite3.connect(db)
    seg = dict(con.execute("SELECT r.email, s.name FROM recipient r JOIN segment s"
                           " ON s.id = r.segment_id"))
    uid_of = dict(con.execute("SELECT email, user_id FROM recipient"))
    got = {}
    for f in glob.glob(f"{maildir}/new/*"):
        m = email.message_from_binary_file(open(f, "rb"), policy=email.policy.default)
        to = str(m["Delivered-To"]).strip()
        kind = kind_of(str(m["Subject"]))
        day = email.utils.parsedate_to_datetime(str(m["Date"])).astimezone(UTC).date()
        ledger = con.execute("SELECT kind FROM delivery WHERE id = ?",
                             (int(str(m["X-Cutoff-Delivery"])),)).fetchone()
        expect(ledger, (kind,), f"{to}: the subject says {kind}, the ledger")
        got.setdefault(to, []).append((kind, str(day)))
    total = 0
    for a, s in seg.items():
        want = expected_mail(uid_of[a], s)
        total += len(want)
        expect(sorted(got.get(a, []), key=lambda x: x[1]), want, f"{uid_of[a]} ({s}): e-mails")
    extra = set(got) - set(seg)
    expect(sorted(extra), [], "mail to addresses that are not recipients")
    return total

def cmd_expected_total(db):
    con = sqlite3.connect(db)
    return sum(len(expected_mail(u, s)) for u, s in con.execute(
        "SELECT r.user_id, s.name FROM recipient r JOIN segment s ON s.id = r.segment_id"))

if __name__ == "__main__":
    what = sys.argv[1]
    if what == "users":
        cmd_users(sys.argv[2])
    elif what == "events":
        cmd_events(sys.argv[2])
    elif what == "total":
        print(cmd_expected_total(sys.argv[2]))
    elif what == "down":
        print(" ".join(str(d) for d in sorted(DOWN)))
    elif what == "check":
        folder, maildir, db = sys.argv[2:5]
        check_answers(folder)
        check_ledger(db)
        check_inbox(maildir, db)
        for p in problems[:40]:
            print("  " + p)
        print(f"{len(problems)} problems")
        sys.exit(1 if problems else 0)
PY
W=/usr/bin/python3
gen_users 300 11 "$T/users.csv"
$W "$T/walk.py" users "$T/users.csv"
load_campaign "$CONF" "$T/users.csv"
check "$(sql "$DB" "SELECT count(*) FROM recipient WHERE state = 'pending'")" "317" "317 affected users"
mac9=$(sql "$DB" "SELECT count(*) FROM recipient r JOIN segment s ON s.id = r.segment_id WHERE s.name = 'mac-os9'")
read -r -a DAYS <<<"$($W "$T/walk.py" events "$T/events")"
DOWN=" $($W "$T/walk.py" down) "
mkdir -p "$T/answers"
snapshot() {
    sql "$DB" "SELECT (SELECT group_concat(id || ':' || state || ':' || attempts || ':' || due_at, ',')
                       FROM delivery), (SELECT count(*) FROM attempt), (SELECT count(*) FROM event),
                      (SELECT group_concat(state) FROM campaign), (SELECT count(*) FROM suppression),
                      (SELECT count(*) FROM login_reminder)" | md5sum
}
# run_day NOW [CONFIG]: the daily run, then the same run again, which must change nothing.
run_day() {
    local want=${3:-0} before
    run --config "${2:-$CONF}" --now "$1" run
    expect_rc "$want" "the run of $1"
    before=$(snapshot)
    run --config "${2:-$CONF}" --now "$1" run
    [ "$want" -ne 0 ] || expect_rc 0 "the second run of $1"
    check "$(snapshot)" "$before" "a second run of $1 changes nothing"
    grep -q "queued now" "$OUT" && not_ok "the second run of $1 queued something"
}

for d in "${DAYS[@]}"; do
    now="${d}T17:00:00Z"
    "$CUTOFF_BIN" --config "$CONF" --now "$now" login --batch <"$T/events/$d.jsonl" \
        >"$T/answers/$d.jsonl" 2>"$T/login.err" || { RC=$?; not_ok "login --batch on $d"; }
    [[ "$DOWN" == *" $d "* ]] && continue
    case $d in
    2003-08-18)
        run --config "$CONF" --now "$now" run
        expect_rc 0 "the announcement's run"
        expect_out "queued now: $((317 - mac9)) initial" "the first wave: everyone but Mac OS 9 (a week later)"
        check "$(pf_wait pf_count_bounces 1 60)" "1" "Postfix returned a DSN for the unknown mailbox"
        run_day "$now" ;;
    2003-08-19)
        run_day "$now"
        check "$(sql "$DB" "SELECT reason FROM suppression WHERE email LIKE 'unknown-w-bounce@%'")" \
            "hard-bounce" "the daily run read the DSN and suppressed the address" ;;
    2003-08-25)
        run --config "$CONF" --now "$now" run
        expect_out "queued now: $mac9 initial" "Mac OS 9's first e-mail waits for its upgrade (25 August)"
        run_day "$now" ;;
    2003-10-12)
        # The relay is down: the final notice is queued, nothing is sent ...
        sed "s|127.0.0.1:$PF_PORT|127.0.0.1:$(free_port)|" "$CONF" >"$T/down.conf"
        pending=$(sql "$DB" "SELECT count(*) FROM recipient WHERE state = 'pending'")
        run --config "$T/down.conf" --now "$now" run
        expect_rc 75 "every relay down: exit 75"
        expect_out "queued now: 0 initial, 0 reminder, $pending final notice" "the final notice is queued"
        # ... then three users complete while their final notice waits in the queue.
        run --config "$CONF" --now "2003-10-12T17:30:00Z" complete $C w-cmd
        expect_out "completed in $C: 1 user (1 queued e-mail cancelled)" "cutoff complete USER"
        printf 'email,note\nw-file@users.example.test,x\nnobody@users.example.test,y\nw-sep25@users.example.test,z\n' >"$T/upgraded.csv"
        run --config "$CONF" --now "2003-10-12T17:30:00Z" complete $C --file "$T/upgraded.csv"
        expect_rc 0 "complete --file"
        expect_out "1 user (1 queued e-mail cancelled); 1 already completed, 0 not affected, 1 not found" \
            "complete --file counts each row"
        run --config "$CONF" --now "2003-10-12T17:30:00Z" login w-oct12 --client-version 5.0 --json
        check "$(cat "$OUT")" '{"user":"w-oct12","reminder":null,"completed":true}' "a login with 5.0 completes"
        run_day "$now" ;;
    2003-10-15)
        run_day "$now"
        check "$(sql "$DB" "SELECT state FROM campaign")" "ended" "the cutoff passed: the campaign ended" ;;
    2003-10-16)
        run --config "$CONF" --now "$now" run
        expect_out "no active campaign" "after the cutoff there is nothing to do" ;;
    *)
        run_day "$now" ;;
    esac
done

# A login day replayed: every reminder of that day was already shown.
"$CUTOFF_BIN" --config "$CONF" login --batch <"$T/events/2003-09-20.jsonl" >"$T/replay.jsonl" 2>/dev/null
check "$(grep -c '"reminder":{' "$T/replay.jsonl")" "0" "replaying 20 September's logins shows nothing again"
n=$(grep -c '"reminder":{' "$T/answers/2003-09-20.jsonl")
[ "$n" -gt 5 ] && ok || not_ok "the first pass of 20 September showed reminders ($n)"

total=$($W "$T/walk.py" total "$DB")
check "$(pf_wait pf_count_delivered "$total" 120)" "$total" "Postfix delivered the $total e-mails expected"
sleep 1
if $W "$T/walk.py" check "$T" "$PF_MAIL/inbox" "$DB" >"$T/check.out"; then ok; else
    RC=- ; cp "$T/check.out" "$OUT"; : >"$ERR"; not_ok "each person's e-mails and reminders"; fi
tail -1 "$T/check.out"

# The calendar, read back by a peer parser: by zone name, and through its own VTIMEZONE.
cut calendar $C >"$T/cal.ics"
$W - "$T/cal.ics" >"$T/cal.out" <<'PY'
import icalendar, sys
from datetime import timezone
cal = icalendar.Calendar.from_ical(open(sys.argv[1], "rb").read())
own = [c for c in cal.walk("VTIMEZONE")][0].to_tz()
for ev in cal.walk("VEVENT"):
    t = ev["DTSTART"].dt
    mine = own.localize(t.replace(tzinfo=None)).astimezone(timezone.utc)
    print(ev["X-CUTOFF-MILESTONE"], ev.get("X-CUTOFF-SEGMENT", "-"), str(ev["DTSTART"].params["TZID"]),
          t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%MZ"), mine.strftime("%Y-%m-%dT%H:%MZ"))
PY
check "$(sort "$T/cal.out")" "$(sort <<'EOF'
announce msn-windows America/Los_Angeles 2003-08-18T16:00Z 2003-08-18T16:00Z
announce windows-messenger America/Los_Angeles 2003-08-18T16:00Z 2003-08-18T16:00Z
announce mac-osx America/Los_Angeles 2003-08-18T16:00Z 2003-08-18T16:00Z
announce mac-os8 America/Los_Angeles 2003-08-18T16:00Z 2003-08-18T16:00Z
announce msn-companion America/Los_Angeles 2003-08-18T16:00Z 2003-08-18T16:00Z
announce third-party America/Los_Angeles 2003-08-18T16:00Z 2003-08-18T16:00Z
announce mac-os9 America/Los_Angeles 2003-08-25T16:00Z 2003-08-25T16:00Z
reminder-start - America/Los_Angeles 2003-09-18T07:00Z 2003-09-18T07:00Z
reminder-email - America/Los_Angeles 2003-09-22T16:00Z 2003-09-22T16:00Z
reminder-email - America/Los_Angeles 2003-09-29T16:00Z 2003-09-29T16:00Z
reminder-email - America/Los_Angeles 2003-10-06T16:00Z 2003-10-06T16:00Z
final-notice - America/Los_Angeles 2003-10-12T07:00Z 2003-10-12T07:00Z
cutoff - America/Los_Angeles 2003-10-15T07:00Z 2003-10-15T07:00Z
EOF
)" "python3-icalendar reads the calendar back to the campaign's dates"
finish
