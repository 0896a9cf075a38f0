#!/usr/bin/env bash
# Login reminders across daylight-saving changes: a campaign in America/Los_Angeles and one in
# Europe/Berlin, each from 20 October 2003 to 10 April 2004 (both clock changes of each zone).
# A user logging in every hour is reminded exactly once per local calendar day (23- and
# 25-hour days included): no period skipped, none doubled, each at the first login of the
# day. One-shot `cutoff --now T login` calls check the instants around each change, and
# python3-icalendar reads the calendars back across the changes.
. "$(dirname "$0")/lib.sh"
/usr/bin/python3 -c 'import zoneinfo; zoneinfo.ZoneInfo("Europe/Berlin")' 2>/dev/null ||
    { echo "SKIP: Python's zoneinfo has no tz database"; exit 77; }
copy_campaign
write_config "$T/cutoff.conf" "$(free_port)"

# setup ZONE DB: the example campaign moved to ZONE and to the winter of 2003-2004.
setup() {
    sed -e "s|^timezone = .*|timezone = \"$1\";|" \
        -e 's|^announce = .*|announce = "2003-10-01 09:00";|' \
        -e 's|^reminder_start = .*|reminder_start = "2003-10-20";|' \
        -e 's|^cutoff = .*|cutoff = "2004-04-10";|' \
        -e 's|send = "2003-08-25 09:00";|send = "2003-10-08 09:00";|' \
        "$T/campaigns/$C.cfg" >"$T/campaigns/dst.cfg"
    sed -i "s|^name = .*|name = \"$C\";|" "$T/campaigns/dst.cfg"
    {
        echo "user_id,email,name,locale,timezone,client,version,platform,os,country"
        echo "hourly,hourly@users.example.test,H,en-US,$1,msn-messenger,4.6,windows,XP,US"
        echo "edges,edges@users.example.test,E,en-US,$1,msn-messenger,4.6,windows,XP,US"
    } >"$T/dst.csv"
    "$CUTOFF_BIN" --config "$T/cutoff.conf" --db "$2" init >/dev/null
    "$CUTOFF_BIN" --config "$T/cutoff.conf" --db "$2" campaign add "$T/campaigns/dst.cfg" >/dev/null
    "$CUTOFF_BIN" --config "$T/cutoff.conf" --db "$2" import "$C" "$T/dst.csv" >/dev/null
}

cat >"$T/dst.py" <<'PY'
import json, sqlite3, sys
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo
UTC = timezone.utc
what, zone = sys.argv[1], ZoneInfo(sys.argv[2])
first, cutoff = date(2003, 10, 20), date(2004, 4, 10)
midnight = lambda d: datetime(d.year, d.month, d.day, tzinfo=zone).astimezone(UTC)
local_days = [first + timedelta(i) for i in range((cutoff - first).days)]
if what == "events":   # every hour at :30 UTC, from a day before to a day after the window
    t = midnight(first) - timedelta(days=1)
    while t < midnight(cutoff) + timedelta(days=1):
        t += timedelta(hours=1)
        print(json.dumps({"user": "hourly", "client_version": "4.6",
                          "time": (t.replace(minute=30)).strftime("%Y-%m-%dT%H:%M:%SZ")}))
elif what == "check":
    events = [json.loads(l) for l in open(sys.argv[3])]
    answers = [json.loads(l) for l in open(sys.argv[4])]
    problems, seen = [], {}
    for ev, a in zip(events, answers):
        t = datetime.strptime(ev["time"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        day = t.astimezone(zone).date()
        if a["reminder"] is not None:
            if day in seen:
                problems.append(f"{day}: reminded twice ({seen[day]} and {t})")
            seen[day] = t
        elif first <= day < cutoff and day not in seen:
            problems.append(f"{day}: the login at {t} was the day's first and got nothing")
    missing = [d for d in local_days if d not in seen]
    if missing:
        problems.append(f"{len(missing)} local days without a reminder: {missing[:5]}")
    extra = [d for d in seen if d not in local_days]
    if extra:
        problems.append(f"reminded outside the window: {extra[:5]}")
    lengths = {(midnight(d + timedelta(1)) - midnight(d)).total_seconds() / 3600 for d in local_days}
    if lengths != {23.0, 24.0, 25.0}:
        problems.append(f"the window should hold 23-, 24- and 25-hour days: {lengths}")
    rows = sqlite3.connect(sys.argv[5]).execute(
        "SELECT period_index, period_start FROM login_reminder lr JOIN recipient r"
        " ON r.id = lr.recipient_id WHERE r.user_id = 'hourly' ORDER BY period_start").fetchall()
    want = [(i, int(midnight(d).timestamp())) for i, d in enumerate(local_days)]
    if rows != want:
        problems.append(f"ledger periods differ: first difference at "
                        f"{next((i for i, (a, b) in enumerate(zip(rows, want)) if a != b), len(rows))}")
    print("\n".join(problems) or f"{len(seen)} local days, {len(seen)} reminders")
    sys.exit(1 if problems else 0)
PY

# edge DB ZONE INSTANT WANT: a one-shot login of user "edges" at INSTANT; WANT is 1 when a
# reminder must be shown, 0 when not.
edge() {
    run --config "$T/cutoff.conf" --db "$1" --now "$2" login edges --client-version 4.6 --json
    expect_rc 0 "login at $2"
    if grep -q '"reminder":{' "$OUT"; then got=1; else got=0; fi
    check "$got" "$3" "$(basename "$1" .db): a login at $2 $([ "$3" = 1 ] && echo shows || echo 'shows no') reminder"
}

for zone in America/Los_Angeles Europe/Berlin; do
    db=$T/$(echo "$zone" | tr '/' '_').db
    setup "$zone" "$db"
    /usr/bin/python3 "$T/dst.py" events "$zone" >"$T/events.jsonl"
    run --config "$T/cutoff.conf" --db "$db" login --batch <"$T/events.jsonl"
    expect_rc 0 "$zone: $(wc -l <"$T/events.jsonl") hourly logins"
    cp "$OUT" "$T/answers.jsonl"
    if /usr/bin/python3 "$T/dst.py" check "$zone" "$T/events.jsonl" "$T/answers.jsonl" "$db" >"$T/dst.out"; then
        ok
    else
        RC=-; cp "$T/dst.out" "$OUT"; not_ok "$zone: one reminder per local day"
    fi
    echo "$zone: $(tail -1 "$T/dst.out")"
    "$CUTOFF_BIN" --config "$T/cutoff.conf" --db "$db" calendar "$C" >"$T/cal.ics"
    /usr/bin/python3 - "$T/cal.ics" "$zone" >"$T/cal.out" <<'PY'
import icalendar, sys
from datetime import timezone
from zoneinfo import ZoneInfo
cal = icalendar.Calendar.from_ical(open(sys.argv[1], "rb").read())
own = [c for c in cal.walk("VTIMEZONE")][0].to_tz()
for ev in cal.walk("VEVENT"):
    t = ev["DTSTART"].dt.replace(tzinfo=None)
    a = own.localize(t).astimezone(timezone.utc)
    b = t.replace(tzinfo=ZoneInfo(sys.argv[2])).astimezone(timezone.utc)
    print("same" if a == b else f"differ {t} {a} {b}")
PY
    check "$(sort -u "$T/cal.out")" "same" "$zone: the calendar's own VTIMEZONE agrees with tzdata"
done

# The instants around each change, one login at a time (the "edges" user).
LA=$T/America_Los_Angeles.db BER=$T/Europe_Berlin.db
edge "$LA" 2003-10-26T06:59:59Z 1   # 25 Oct 23:59:59 PDT
edge "$LA" 2003-10-26T07:00:00Z 1   # 26 Oct 00:00 PDT: a new day, a new period
edge "$LA" 2003-10-26T09:30:00Z 0   # 01:30 PST, the second 01:30 of the day
edge "$LA" 2003-10-27T07:59:59Z 0   # 26 Oct 23:59:59 PST: the 25-hour day is one period
edge "$LA" 2003-10-27T08:00:00Z 1   # 27 Oct 00:00 PST
edge "$LA" 2004-04-03T20:00:00Z 1   # 3 Apr 12:00 PST
edge "$LA" 2004-04-04T07:59:59Z 0   # 3 Apr 23:59:59 PST: the same day
edge "$LA" 2004-04-04T08:00:00Z 1   # 4 Apr 00:00 PST: the 23-hour day
edge "$LA" 2004-04-05T06:59:59Z 0   # 4 Apr 23:59:59 PDT
edge "$LA" 2004-04-05T07:00:00Z 1   # 5 Apr 00:00 PDT
edge "$BER" 2003-10-25T22:00:00Z 1  # 26 Oct 00:00 CEST
edge "$BER" 2003-10-26T22:59:59Z 0  # 26 Oct 23:59:59 CET: the 25-hour day
edge "$BER" 2003-10-26T23:00:00Z 1  # 27 Oct 00:00 CET
edge "$BER" 2004-03-27T23:00:00Z 1  # 28 Mar 00:00 CET
edge "$BER" 2004-03-28T21:59:59Z 0  # 28 Mar 23:59:59 CEST: the 23-hour day
edge "$BER" 2004-03-28T22:00:00Z 1  # 29 Mar 00:00 CEST
edge "$BER" 2004-04-09T21:59:59Z 1  # the last second before the cutoff
edge "$BER" 2004-04-09T22:00:00Z 0  # the cutoff
finish
