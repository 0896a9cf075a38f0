#!/usr/bin/env bash
# The HTML report of a campaign walked for real (the worked example sent through a private Postfix,
# logins with login reminders, completions day after day), opened in headless Chromium with no
# network: the page must render the chart (its SVG series are in the DOM Chromium built), hold
# nothing external, and agree with the JSON report. The screenshot is kept as a test artefact
# ($CUTOFF_BUILD_DIR/artefacts/report.png).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/postfix.sh"
if ! command -v chromium >/dev/null; then
    [ "$(id -u)" -eq 0 ] && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends chromium >"$T/apt.log" 2>&1
    command -v chromium >/dev/null || { echo "SKIP: chromium is not installed and cannot be (tools/deps --test)"; exit 77; }
fi
start_postfix reporthtml
CONF=$T/cutoff.conf DB=$T/cutoff.db
write_config "$CONF" "$PF_PORT"
copy_campaign
gen_users 150 5 "$T/users.csv"
"$CUTOFF_BIN" --config "$CONF" init >/dev/null
"$CUTOFF_BIN" --config "$CONF" campaign add "$T/campaigns/$C.cfg" >/dev/null
run --config "$CONF" --now 2003-08-17T17:00:00Z import $C "$T/users.csv"
expect_rc 0 "the list imports"
for d in 2003-08-18 2003-08-25; do
    run --config "$CONF" --now "${d}T17:00:00Z" run
    expect_rc 0 "the daily run of $d"
done
check "$(pf_wait pf_count_delivered 150 60)" "150" "Postfix delivered every first e-mail"

# Day after day some people upgrade (cutoff complete), and from 18 September the others see a
# login reminder when they log in.
sql "$DB" "SELECT user_id FROM recipient ORDER BY id" >"$T/uids"
/usr/bin/python3 - "$T/uids" "$T" <<'PY'
import datetime, json, sys
uids = open(sys.argv[1]).read().split()
day = datetime.date(2003, 8, 19)
done, plan = 0, {}
while day <= datetime.date(2003, 9, 30):
    n = 1 + (day.day % 3)
    plan[str(day)] = uids[done:done + n]
    done += n
    day += datetime.timedelta(1)
with open(sys.argv[2] + "/complete.plan", "w") as f:
    for d, us in plan.items():
        f.write(d + " " + " ".join(us) + "\n")
with open(sys.argv[2] + "/logins.jsonl", "w") as f:
    for k in range(18, 31):
        for i, u in enumerate(uids[::-1][:40]):
            if (i + k) % 3 == 0:
                f.write(json.dumps({"user": u, "client_version": "4.6", "platform": "windows",
                                    "time": f"2003-09-{k:02d}T{15 + i % 6:02d}:00:00Z"}) + "\n")
PY
while read -r d users; do
    "$CUTOFF_BIN" --config "$CONF" --now "${d}T20:00:00Z" complete $C $users >/dev/null || not_ok "complete on $d"
done <"$T/complete.plan"
"$CUTOFF_BIN" --config "$CONF" login --batch <"$T/logins.jsonl" >"$T/answers.jsonl" 2>/dev/null
reminders=$(grep -c '"reminder":{' "$T/answers.jsonl")
[ "$reminders" -gt 50 ] && ok || not_ok "logins showed reminders ($reminders)"

NOW=2003-10-01T17:00:00Z
run --config "$CONF" --now "$NOW" report $C --format html -o "$T/report.html"
expect_rc 0 "report --format html -o FILE"
check "$(cat "$OUT")" "" "with -o nothing goes to standard output"
"$CUTOFF_BIN" --config "$CONF" --now "$NOW" report $C --format html >"$T/stdout.html"
cmp -s "$T/report.html" "$T/stdout.html" && ok || not_ok "the same page on standard output"
"$CUTOFF_BIN" --config "$CONF" --now "$NOW" report $C --format json >"$T/report.json"

# Self-contained: no script, no external style sheet, font or image, nothing fetched.
for bad in '<script' '<link' '@import' 'url(' ' src=' '@font-face' 'https://' 'href='; do
    grep -qiF -- "$bad" "$T/report.html" && not_ok "the page contains $bad" || ok
done
check "$(grep -o 'http://[^"]*' "$T/report.html" | sort -u)" "http://www.w3.org/2000/svg" "the only URL is the SVG namespace"

# Headless Chromium without network: the DOM it built, and a screenshot.
chrome() {
    timeout 90 chromium --headless --no-sandbox --disable-gpu --disable-background-networking \
        --disable-component-update --disable-sync --no-first-run --disable-extensions \
        --user-data-dir="$T/chrome" --proxy-server=127.0.0.1:9 "$@" "file://$T/report.html" 2>>"$T/chrome.log"
}
chrome --dump-dom >"$T/dom.html"
check "$?" "0" "Chromium loaded the page"
/usr/bin/python3 - "$T/dom.html" "$T/report.json" >"$T/py.out" 2>&1 <<'PY'
import json, re, sys
from html.parser import HTMLParser
dom, rep = open(sys.argv[1]).read(), json.load(open(sys.argv[2]))
class P(HTMLParser):
    def __init__(self):
        super().__init__(); self.el = {}; self.svg = 0; self.rects = {}; self.cur = None
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "svg": self.svg += 1
        if "id" in a: self.el[a["id"]] = (tag, a)
        if tag == "g" and a.get("id", "").startswith("series-"): self.cur = a["id"]
        if tag == "rect" and self.cur: self.rects[self.cur] = self.rects.get(self.cur, 0) + 1
    def handle_endtag(self, tag):
        if tag == "g": self.cur = None
p = P(); p.feed(dom)
assert p.svg == 1, f"{p.svg} svg elements"
days = rep["days"]
for name, key in (("notified", "notified_total"), ("completed", "completed_total")):
    tag, a = p.el[f"series-{name}"]
    assert tag == "polyline", tag
    pts = [tuple(map(float, xy.split(","))) for xy in a["points"].split()]
    assert len(pts) == len(days), (name, len(pts), len(days))
    xs = [x for x, _ in pts]
    assert xs == sorted(xs) and len(set(xs)) == len(xs), "x grows day by day"
    aff = rep["funnel"]["affected"]
    # y = 48 + 316 * (1 - share): the plot is 316 units high, from y 48 down to y 364.
    for (x, y), d in zip(pts, days):
        want = 48 + 316 * (1 - d[key] / aff)
        assert abs(y - want) < 0.06, (name, d["date"], y, want)
    ys = [y for _, y in pts]
    assert ys == sorted(ys, reverse=True), f"{name}: a cumulative line never goes down"
assert p.rects.get("series-emails") == sum(1 for d in days if d["emails"]), p.rects
assert p.rects.get("series-reminders") == sum(1 for d in days if d["reminders"]), p.rects
for m in ("marker-reminder-start", "marker-cutoff", "marker-today"):
    assert m in p.el, m
assert "reminders from Sep 18" in dom and "cutoff Oct 15" in dom
assert re.search(r'<table id="funnel">', dom)
print("ok", len(days), "days")
PY
check "$(head -1 "$T/py.out")" "ok 45 days" "the DOM holds the chart: both series point for point, bars, markers"
rm -f "$T/report.png"
(cd "$T" && chrome --screenshot="$T/report.png" --window-size=1200,900 >/dev/null)
/usr/bin/python3 - "$T/report.png" >"$T/png.out" 2>&1 <<'PY'
import struct, sys, zlib
data = open(sys.argv[1], "rb").read()
assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
w, h = struct.unpack(">II", data[16:24])
assert (w, h) == (1200, 900), (w, h)
# Decode the image (8-bit RGB or RGBA, no interlace) and look for the series' colours.
depth, ctype = data[24], data[25]
pos, idat = 8, b""
while pos < len(data):
    n, t = struct.unpack(">I4s", data[pos:pos + 8]); pos += 8
    if t == b"IDAT": idat += data[pos:pos + n]
    pos += n + 4
raw, bpp = zlib.decompress(idat), {2: 3, 6: 4}[ctype]
stride, prev, seen = w * bpp, bytearray(w * bpp), set()
for y in range(h):
    f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
    for i in range(stride):
        a = line[i - bpp] if i >= bpp else 0
        b, c = prev[i], prev[i - bpp] if i >= bpp else 0
        if f == 1: line[i] = (line[i] + a) & 255
        elif f == 2: line[i] = (line[i] + b) & 255
        elif f == 3: line[i] = (line[i] + (a + b) // 2) & 255
        elif f == 4:
            p = a + b - c; pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
    seen.update(bytes(line[i:i + 3]) for i in range(0, stride, bpp))
    prev = line
want = {"notified line": b"\x1f\x6f\xb2", "completed line": b"\x2e\x8b\x57", "e-mail bars": b"\x9d\xbb\xdb"}
missing = [k for k, v in want.items() if v not in seen]
assert not missing, f"not drawn: {missing}"
print("ok")
PY
check "$(cat "$T/png.out")" "ok" "the screenshot is 1200x900 and shows both lines and the bars"
if [ -n "${CUTOFF_BUILD_DIR:-}" ] && [ -s "$T/report.png" ]; then
    mkdir -p "$CUTOFF_BUILD_DIR/artefacts"
    cp "$T/report.png" "$CUTOFF_BUILD_DIR/artefacts/report.png"
    cp "$T/report.html" "$CUTOFF_BUILD_DIR/artefacts/report.html"
fi
finish
