#!/usr/bin/env bash
# End to end: init, campaign check/add/list/show/pause/resume/cancel on the worked example,
# and every class of campaign-file error reported at once with file:line.
. "$(dirname "$0")/lib.sh"
DB=$T/cutoff.db
cp -r "$SRC/campaigns" "$SRC/templates" "$T/"
CFG=$T/campaigns/messenger-upgrade.cfg

run --db "$DB" campaign list
expect_rc 66 "a missing database is 'not found'"
expect_err "create it with: cutoff init" "the error says what to do"

run --db "$DB" init
expect_rc 0 "init creates the database"
expect_out "created, schema version" "init says it created the schema"
check "$(sql "$DB" 'PRAGMA journal_mode')" "wal" "the database is in WAL mode"
run --db "$DB" init
expect_out "up to date" "a second init changes nothing"

run campaign check "$CFG"
expect_rc 0 "the worked example passes check"
expect_out "cutoff          2003-10-15 00:00" "check prints the cutoff in the campaign's zone"
expect_out "mac-os9                  first e-mail 2003-08-25 09:00" "Mac OS 9 waits a week"

# Every problem in one pass, each with file:line.
bad=$T/campaigns/bad.cfg
sed -e 's|^timezone = .*|timezone = "Mars/Olympus_Mons";|' \
    -e 's|^login_reminders = .*|login_reminders = "FREQ=SOMETIMES";|' \
    -e 's|^rate = 50.0;|rate = "fast";|' \
    -e 's|^list_unsubscribe = true;|list_unsubscribe = true;\ncolour = "blue";|' \
    -e 's|template = "third-party";|template = "no-such-template";|' "$CFG" >"$bad"
run campaign check "$bad"
expect_rc 78 "a broken campaign file is a configuration error"
expect_err "bad.cfg:12: timezone:" "unknown time zone with its line"
expect_err "Mars/Olympus_Mons" "the message names the zone"
expect_err "login_reminders:" "a bad RRULE is reported"
expect_err "'rate' must be a number" "a wrong type is reported"
expect_err "unknown setting 'colour'" "an unknown key is reported"
expect_err "no-such-template/subject.mustache cannot be read" "a missing template is reported"

sed -e 's|^reminder_start = .*|reminder_start = "2003-10-20";|' "$CFG" >"$bad"
run campaign check "$bad"
expect_rc 78 "reversed dates are refused"
expect_err "bad.cfg:16: cutoff (2003-10-15) is not after reminder_start (2003-10-20)" \
    "the date order error names both dates and the line"

sed -e 's|^cutoff = .*|cutoff = "2003-02-30";|' "$CFG" >"$bad"
run campaign check "$bad"
expect_rc 78 "an impossible date is refused"
expect_err "bad.cfg:16: cutoff: 2003-02-30: there is no day 30" "with its line"

sed -e 's|version_below = "3.5"; };|version_below = "3.5"; version_min = "3.5"; };|' "$CFG" >"$bad"
run campaign check "$bad"
expect_rc 78 "an empty version range is refused"
expect_err "segment mac-osx: version_min 3.5 is not below version_below 3.5" "it says why"

# A segment that an earlier one already covers can never match.
sed -e 's|match = { platform = "msn-companion"; };|match = { client = "msn-messenger"; platform = "windows"; version_below = "4.0"; };|' \
    "$CFG" >"$bad"
run campaign check "$bad"
expect_rc 78 "a shadowed segment is refused"
expect_err "segment msn-companion matches nothing: segment msn-windows" "it names the earlier one"

run --db "$DB" campaign add "$CFG"
expect_rc 0 "campaign add"
expect_out "campaign messenger-upgrade: added (7 segments)" "add says what it did"
check "$(sql "$DB" 'SELECT count(*) FROM segment')" "7" "seven segments stored"
run --db "$DB" campaign add "$CFG"
expect_out "campaign messenger-upgrade: unchanged" "adding the same file again is a no-op"

run --db "$DB" campaign list
expect_out "messenger-upgrade" "list shows the campaign"
expect_out "active" "a new campaign is active"
run --db "$DB" campaign show messenger-upgrade
expect_rc 0 "show"
expect_out "state: active (nothing sent yet)" "show gives the state"
run --db "$DB" campaign show no-such-campaign
expect_rc 66 "show of an unknown campaign is 'not found'"
expect_err "no campaign named 'no-such-campaign'" "and names it"

run --db "$DB" campaign pause messenger-upgrade
expect_out "paused (was active)" "pause"
run --db "$DB" campaign resume messenger-upgrade
expect_out "active (was paused)" "resume"
check "$(sql "$DB" "SELECT state FROM campaign")" "active" "state stored"

# Before sending begins any change is allowed; afterwards only safe ones.
sed -e 's|^title = .*|title = "MSN Messenger: please upgrade";|' "$CFG" >"$T/campaigns/title.cfg"
run --db "$DB" campaign add "$T/campaigns/title.cfg"
expect_out "updated" "an update before sending is accepted"
sql "$DB" "UPDATE campaign SET sending_started_at = 1061222400"
sed -e 's|^timezone = .*|timezone = "Europe/London";|' "$CFG" >"$T/campaigns/tz.cfg"
run --db "$DB" campaign add "$T/campaigns/tz.cfg"
expect_rc 65 "an unsafe change after sending began is refused"
expect_err "timezone changed (America/Los_Angeles -> Europe/London)" "and says which"
check "$(sql "$DB" "SELECT timezone FROM campaign")" "America/Los_Angeles" "nothing was changed"
sed -e 's|^cutoff = .*|cutoff = "2003-10-22";|' "$CFG" >"$T/campaigns/later.cfg"
run --db "$DB" campaign add "$T/campaigns/later.cfg"
expect_rc 0 "a later cutoff is a safe change"
sed -e 's|^cutoff = .*|cutoff = "2003-10-01";|' "$CFG" >"$T/campaigns/earlier.cfg"
run --db "$DB" campaign add "$T/campaigns/earlier.cfg"
expect_rc 65 "an earlier cutoff is refused"
expect_err "cutoff moved earlier" "and says so"

run --db "$DB" campaign cancel messenger-upgrade
expect_out "cancelled (was active)" "cancel"
run --db "$DB" campaign resume messenger-upgrade
expect_rc 65 "a cancelled campaign cannot be resumed"

# A database of an older schema is migrated by init, keeping what it holds: one built by the
# first five migrations (db/001-005) with a campaign's people in it.
OLD=$T/old.db
cat "$SRC"/db/00[1-5]_*.sql | sqlite3 -batch "$OLD"
sql "$OLD" "PRAGMA user_version = 5; PRAGMA journal_mode = WAL;" >/dev/null
sql "$OLD" "INSERT INTO campaign (id, name, title, timezone, announce_at, reminder_start_at,
    cutoff_at, definition, source_path, templates_dir, digest, created_at, updated_at)
    VALUES (1, 'old', 'Old', 'UTC', 1, 2, 3, '', '', '', '', 0, 0);
    INSERT INTO segment (id, campaign_id, name, position, template, send_at) VALUES (1, 1, 's', 0, 't', 1);
    INSERT INTO recipient (campaign_id, user_id, email, segment_id, digest, created_at, updated_at)
    VALUES (1, 'u1', 'u1@example.org', 1, 0, 0, 0), (1, 'u2', 'u2@example.org', 1, 0, 0, 0);"
run --db "$OLD" campaign list
expect_rc 65 "an older schema is not used before it is migrated"
expect_err "cutoff init" "and the message says how to migrate it"
run --db "$OLD" init
expect_rc 0 "init migrates an older schema"
check "$(sql "$OLD" "PRAGMA user_version")" "$(ls "$SRC"/db/[0-9]*.sql | wc -l)" "to the latest version"
check "$(sql "$OLD" "SELECT count(*) FROM recipient WHERE state = 'pending'")" "2" "keeping the people it held"
check "$(sql "$OLD" "SELECT count(*) FROM pragma_index_list('recipient') AS l,
    pragma_index_info(l.name) AS i WHERE i.name IN ('state', 'segment_id')")" "0" \
    "no index holds state (006: a completion moves no entry) or the segment (015)"
check "$(sql "$OLD" "PRAGMA integrity_check")" "ok" "the migrated database is sound"

# A database from a newer cutoff is refused.
sql "$DB" "PRAGMA user_version = 999"
run --db "$DB" campaign list
expect_rc 65 "a newer schema is refused"
expect_err "newer than this cutoff knows" "and says why"

run frobnicate
expect_rc 64 "an unknown command is a usage error"
run --help
expect_out "campaign check|add FILE" "--help lists the commands"
finish
