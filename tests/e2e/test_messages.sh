#!/usr/bin/env bash
# End to end: `cutoff preview` of the worked example for every segment and several locales,
# hostile names and a CR/LF in an attribute; each message parsed strictly (RFC 5322, MIME,
# CRLF), its headers and decoded parts asserted, and scored by SpamAssassin (local tests).
. "$(dirname "$0")/lib.sh"
PY=/usr/bin/python3
STRICT=$SRC/tests/tools/strict_parse.py
C=messenger-upgrade
NOW=2003-08-18T16:00:00Z
DB=$T/cutoff.db
head -c 32 /dev/urandom >"$T/verp.key"
chmod 600 "$T/verp.key"
cat >"$T/cutoff.conf" <<EOF
database = "$DB";
bounces = { return_path_domain = "bounces.example.test"; secret_file = "$T/verp.key"; };
EOF
run --config "$T/cutoff.conf" init
expect_rc 0 "init"
run --config "$T/cutoff.conf" campaign add "$SRC/campaigns/$C.cfg"
expect_rc 0 "campaign add"

# One recipient per segment, several locales and zones, hostile names, and a CR/LF attempt in
# an attribute (the campaign declares "country"). Columns: the CSV's, then what to expect:
# segment, template locale, the cutoff date as the recipient reads it, the To display name.
printf 'user_id,email,name,locale,timezone,client,version,platform,os,country\r\n' >"$T/users.csv"
cat >"$T/expect.tsv" <<'EOF'
w1	msn-windows	en	Wednesday, October 15, 2003	Alice Smith
w2	windows-messenger	fr	mercredi 15 octobre 2003	François Dubois
m9	mac-os9	de	Mittwoch, 15. Oktober 2003	Jürgen Müller
mx	mac-osx	pt-BR	quarta-feira, 15 de outubro de 2003	João Silva
m8	mac-os8	en	Wednesday, 15 October 2003	山田 太郎
cp	msn-companion	en	Wednesday, 15 October 2003	O'Brien "Buzz" <admin@evil.example.test>
t1	third-party	en	Tuesday, 14 October 2003	-
t2	third-party	en	Wednesday, 15 October 2003	María Núñez
e1	msn-windows	en	Wednesday, 15 October 2003	Iñigo López, Bcc: x@evil.example.test
EOF
cat >>"$T/users.csv" <<'EOF'
w1,win1@users.example.test,Alice Smith,en-US,America/New_York,msn-messenger,4.6,windows,XP,US
w2,win2@users.example.test,François Dubois,fr_FR,Europe/Paris,windows-messenger,4.7.300,windows,XP,FR
m9,mac9@users.example.test,Jürgen Müller,de-DE,Europe/Berlin,msn-messenger,2.1,mac,9.2.2,DE
mx,macx@users.example.test,João Silva,pt-BR,America/Sao_Paulo,msn-messenger,3.0,mac,10.2.6,BR
m8,mac8@users.example.test,山田 太郎,ja-JP,Asia/Tokyo,msn-messenger,2.0,mac,8.6,JP
cp,companion@users.example.test,"O'Brien ""Buzz"" <admin@evil.example.test>",en-GB,Europe/London,msn-messenger,1.0,msn-companion,,GB
t1,trillian@users.example.test,=?utf-8?B?QWRtaW4=?=,en,Pacific/Honolulu,trillian,2.0,windows,XP,US
e1,es@users.example.test,"Iñigo López, Bcc: x@evil.example.test",es-ES,Europe/Madrid,msn-messenger,4.5,windows,98,ES
u0,upgraded@users.example.test,Up Graded,en,,msn-messenger,6.0,windows,XP,US
EOF
printf 't2,gaim@users.example.test,María Núñez,pt-PT,Europe/Lisbon,gaim,0.66,linux,,"PT\r\nBcc: victim@evil.example.test"\r\n' >>"$T/users.csv"
run --config "$T/cutoff.conf" import $C "$T/users.csv" --no-progress
expect_rc 0 "the test list imports without rejects"
check "$(sql "$DB" "SELECT count(*) FROM recipient")" "9" "nine affected recipients stored"

# Every message: strict parse with CRLF, then the headers and parts against expect.tsv.
while IFS=$'\t' read -r user segment locale date name; do
    run --config "$T/cutoff.conf" --now "$NOW" preview $C "$user" --crlf
    expect_rc 0 "preview $user"
    cp "$OUT" "$T/$user.eml"
    if "$PY" "$STRICT" --require-crlf "$T/$user.eml" >"$T/$user.json" 2>"$T/$user.err"; then
        ok
    else
        RC=1; not_ok "$user: strict_parse: $(cat "$T/$user.err")"; continue
    fi
    email=$(sql "$DB" "SELECT email FROM recipient WHERE user_id='$user'")
    id=$(sql "$DB" "SELECT id FROM recipient WHERE user_id='$user'")
    problems=$("$PY" - "$T/$user.json" "$user" "$email" "$id" "$locale" "$date" "$name" <<'PY'
import json, re, sys
d = json.load(open(sys.argv[1]))
user, email, rid, locale, date, name = sys.argv[2:]
h = {}
for k, v in d["headers"]:
    h.setdefault(k.lower(), []).append(v)
bad = []
allowed = {"date", "from", "reply-to", "subject", "to", "message-id", "auto-submitted",
           "list-unsubscribe", "list-unsubscribe-post", "x-cutoff-campaign", "x-cutoff-recipient",
           "mime-version", "content-type", "content-transfer-encoding"}
if set(h) - allowed:
    bad.append("unexpected headers (injected?): %s" % sorted(set(h) - allowed))
if allowed - {"content-transfer-encoding"} - set(h):
    bad.append("missing headers: %s" % sorted(allowed - {"content-transfer-encoding"} - set(h)))
def one(k):
    return h.get(k, [""])[0]
if one("date") != "Mon, 18 Aug 2003 16:00:00 +0000":
    bad.append("Date is %r" % one("date"))
to = d["addresses"].get("To", [])
want_name = "" if name == "-" else name
if len(to) != 1 or to[0]["addr_spec"] != email or to[0]["display_name"] != want_name:
    bad.append("To is %r, wanted %r <%s>" % (to, want_name, email))
frm = d["addresses"]["From"][0]
if frm != {"display_name": "MSN Messenger Team", "addr_spec": "messenger-upgrade@msn.example.test"}:
    bad.append("From is %r" % frm)
if d["addresses"]["Reply-To"][0]["addr_spec"] != "messenger-support@msn.example.test":
    bad.append("Reply-To is %r" % d["addresses"]["Reply-To"])
if not re.fullmatch(r"<20030818160000\.[0-9a-f]{24}@msn\.example\.test>", one("message-id")):
    bad.append("Message-ID is %r" % one("message-id"))
if one("auto-submitted") != "auto-generated":
    bad.append("Auto-Submitted is %r" % one("auto-submitted"))
unsub = "https://messenger.example.test/unsubscribe?c=messenger-upgrade&r=%s&t=" % rid
m = re.fullmatch(r"<(%s[A-Za-z0-9_-]{22})>" % re.escape(unsub), one("list-unsubscribe"))
if not m:
    bad.append("List-Unsubscribe is %r" % one("list-unsubscribe"))
if one("list-unsubscribe-post") != "List-Unsubscribe=One-Click":
    bad.append("List-Unsubscribe-Post is %r" % one("list-unsubscribe-post"))
if one("x-cutoff-campaign") != "messenger-upgrade" or one("x-cutoff-recipient") != user:
    bad.append("X-Cutoff ids are %r %r" % (one("x-cutoff-campaign"), one("x-cutoff-recipient")))
if date not in one("subject"):
    bad.append("the subject %r lacks the date %r" % (one("subject"), date))
types = [p["content_type"] for p in d["parts"]]
if types != ["text/plain", "text/html"]:
    bad.append("parts are %r, wanted text/plain then text/html" % types)
else:
    text, html = d["parts"][0]["text"], d["parts"][1]["text"]
    for p in d["parts"]:
        if p["params"].get("charset") != "utf-8":
            bad.append("part %s charset %r" % (p["content_type"], p["params"]))
    if date not in text or date not in html:
        bad.append("the cutoff date %r is missing from a part" % date)
    if m and m.group(1) not in text:
        bad.append("the text lacks the unsubscribe URL")
    if 'lang="%s"' % locale not in html:
        bad.append("the HTML is not lang=%s" % locale)
    greet = {"en": "Hello", "fr": "Bonjour", "de": "Hallo", "pt-BR": "Olá"}[locale]
    real = None if name == "-" else name
    if real and ("%s %s," % (greet, real)) not in text:
        bad.append("the text does not greet %r" % real)
    if real and "<" in real and "<" + real.split("<")[1] in html:
        bad.append("the HTML does not escape the name")
    if "victim" in text or "Bcc: victim" in json.dumps(d["headers"]):
        bad.append("the attribute's injected text reached the message")
print("\n".join(bad))
PY
)
    check "$problems" "" "$user ($segment, $locale): headers and parts"
done <"$T/expect.tsv"

# The =?-name is kept as text in the body but not put into To.
grep -q "^Hello =?utf-8?B?QWRtaW4=?=,"$'\r'"$" "$T/t1.eml"; check $? 0 "t1 is greeted by the name as written"

# Parts decoded, LF display, and errors.
run --config "$T/cutoff.conf" --now "$NOW" preview $C win2@users.example.test --part subject
expect_rc 0 "preview by address"
check "$(cat "$OUT")" "Veuillez mettre à jour Windows Messenger avant le mercredi 15 octobre 2003" \
    "--part subject prints the decoded French subject"
run --config "$T/cutoff.conf" --now 2003-10-14T16:00:00Z preview $C w2 --part login
check "$(cat "$OUT")" "Votre version de Windows Messenger cessera de fonctionner le mercredi 15 octobre 2003 (jours restants : 1). La mise à jour vers la version 4.7.2009 est gratuite et prend environ une minute : https://messenger.example.test/upgrade" \
    "--part login, one day before the cutoff"
run --config "$T/cutoff.conf" --now "$NOW" preview $C m9 --part text
expect_out "Hallo Jürgen Müller," "--part text is decoded UTF-8"
expect_out "    https://messenger.example.test/upgrade/mac-os9" "the segment's own upgrade URL"
run --config "$T/cutoff.conf" --now "$NOW" preview $C mx --part html
expect_out '<a href="https://messenger.example.test/upgrade/mac">' "--part html"
run --config "$T/cutoff.conf" --now "$NOW" preview $C w1
expect_rc 0 "preview for display"
check "$(grep -c $'\r' "$OUT")" "0" "the display form has LF line endings"
check "$(head -c 5 "$OUT")" "Date:" "and starts with the headers"
run --config "$T/cutoff.conf" preview $C u0
expect_rc 66 "an unaffected (upgraded) user has no message"
expect_err "no recipient 'u0'" "and the error names the user"
run --config "$T/cutoff.conf" preview nosuch w1
expect_rc 66 "an unknown campaign"
run --config "$T/cutoff.conf" preview $C w1 --part body
expect_rc 64 "an unknown part is a usage error"

# A copy of the campaign whose subject uses the attribute: the CR/LF is refused, naming the
# recipient and the field; a typo in a template stops preview (and sending) with file:line:col.
mkdir -p "$T/copy/campaigns" "$T/copy/templates"
sed 's/^name = .*/name = "messenger-copy";/' "$SRC/campaigns/$C.cfg" \
    >"$T/copy/campaigns/messenger-copy.cfg"
cp -r "$SRC/templates/$C" "$T/copy/templates/messenger-copy"
TPL=$T/copy/templates/messenger-copy
echo '{{client_name}} ({{attributes.country}}) will no longer connect from {{cutoff_date}}' \
    >"$TPL/third-party/subject.mustache"
run --config "$T/cutoff.conf" campaign add "$T/copy/campaigns/messenger-copy.cfg"
expect_rc 0 "the copy is added"
run --config "$T/cutoff.conf" import messenger-copy "$T/users.csv" --no-progress
run --config "$T/cutoff.conf" --now "$NOW" preview messenger-copy t2
expect_rc 65 "a line break from an attribute into the subject is refused"
expect_err "recipient t2: the subject contains a line break" "naming the recipient and the field"
run --config "$T/cutoff.conf" --now "$NOW" preview messenger-copy t1 --part subject
check "$(cat "$OUT")" "Trillian (US) will no longer connect from Tuesday, 14 October 2003" \
    "the same template for a clean attribute"
sed -i 's/{{cutoff_date}}/{{cutof_date}}/' "$TPL/upgrade/login.mustache"
run --config "$T/cutoff.conf" --now "$NOW" preview messenger-copy w1
expect_rc 78 "a template with an unknown variable is refused before rendering"
expect_err "upgrade/login.mustache:1:" "with file:line:col"
expect_err "unknown variable 'cutof_date'; did you mean 'cutoff_date'?" "and a suggestion"
run --config "$T/cutoff.conf" campaign check "$T/copy/campaigns/messenger-copy.cfg"
expect_rc 78 "campaign check finds the template problem"
expect_err "unknown variable 'cutof_date'" "campaign check names it"

# SpamAssassin, local tests only (no network): every message must score at most 2.0.
if ! command -v spamassassin >/dev/null; then
    echo "SKIP: spamassassin is not installed (apt-get install spamassassin); not scoring"
else
    echo "SpamAssassin scores (local tests, threshold 2.0):"
    while IFS=$'\t' read -r user _; do
        HOME=$T spamassassin -L -t <"$T/$user.eml" >"$T/$user.sa" 2>"$T/$user.sa.err"
        # X-Spam-Status: No, score=-0.0 required=5.0 tests=A,B ... (folded): unfold, read.
        read -r score rules < <("$PY" - "$T/$user.sa" <<'PY'
import email, email.policy, re, sys
msg = email.message_from_binary_file(open(sys.argv[1], "rb"), policy=email.policy.compat32)
status = re.sub(r"\s+", " ", str(msg.get("X-Spam-Status", "")))
score = re.search(r"score=(-?[0-9.]+)", status)
tests = re.search(r"tests=(.*?)(?: autolearn=| version=|$)", status)
print(score.group(1) if score else "?", tests.group(1).replace(" ", "") if tests else "-")
PY
)
        printf '  %-3s %5s  %s\n' "$user" "$score" "$rules"
        if "$PY" -c "import sys; sys.exit(0 if float(sys.argv[1]) <= 2.0 else 1)" "$score" 2>/dev/null
        then
            ok
        else
            RC=-; not_ok "$user: SpamAssassin score $score is above 2.0 (or missing: $(head -c 300 "$T/$user.sa.err"))"
        fi
    done <"$T/expect.tsv"
fi
finish
