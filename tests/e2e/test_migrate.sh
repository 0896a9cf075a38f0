#!/usr/bin/env bash
# Upgrading a database that holds data: one made by the migrations up to 008 (as a cutoff of
# that schema left it, with a campaign, recipients (two addresses differing in case), a
# delivery and an import run) is brought to the latest schema by `cutoff init`; its rows are
# intact, the database passes SQLite's integrity check, its logins are indexed for support
# (011, 012), the segment index is gone (015), its addresses are keyed (016), and migration
# 009's CHECK constraints (comparisons, not IN lists) refuse what the old ones refused, on a
# fresh connection that reads the rewritten schema.
. "$(dirname "$0")/lib.sh"
command -v sqlite3 >/dev/null || { echo "SKIP: the sqlite3 shell is missing (apt-get install sqlite3)"; exit 77; }
DB=$T/old.db
# rows: every row of the tables with a CHECK, as one line of text.
rows() {
    sql "$DB" "SELECT group_concat(x, ';') FROM (
      SELECT name || ',' || state AS x FROM campaign UNION ALL
      SELECT user_id || ',' || email || ',' || state || ',' || digest FROM recipient UNION ALL
      SELECT file || ',' || state FROM import_run UNION ALL
      SELECT kind || ',' || occurrence || ',' || state || ',' || due_at FROM delivery)"
}

# The database as schema version 8 left it: each migration in its own transaction, as
# store.c applies them.
sql "$DB" "PRAGMA journal_mode = WAL" >/dev/null
for f in "$SRC"/db/00[1-8]_*.sql; do
    v=$(basename "$f" | cut -c1-3)
    { echo "PRAGMA foreign_keys = ON; BEGIN;"; cat "$f"; echo "PRAGMA user_version = $((10#$v)); COMMIT;"; } |
        sqlite3 -batch "$DB" >"$OUT" 2>"$ERR"
    check "$(cat "$ERR")" "" "migration $(basename "$f") applies by hand"
done
check "$(sql "$DB" 'PRAGMA user_version')" "8" "the database is at schema version 8"
check "$(sql "$DB" "SELECT count(*) FROM sqlite_schema WHERE sql LIKE '%CHECK (state IN (%'")" "4" \
    "with the IN-list CHECKs of 001 and 002"
sql "$DB" "PRAGMA foreign_keys = ON;
  INSERT INTO campaign (id, name, title, state, timezone, announce_at, reminder_start_at, cutoff_at,
    definition, source_path, templates_dir, digest, created_at, updated_at)
    VALUES (1, 'old', 'Old', 'paused', 'UTC', 1, 2, 3, 'x', 'x', 'x', 'd', 0, 0);
  INSERT INTO recipient (id, campaign_id, user_id, email, digest, state, created_at, updated_at)
    VALUES (1, 1, 'u1', 'u1@example.test', 7, 'pending', 0, 0),
           (2, 1, 'u2', 'U2@example.test', 8, 'completed', 0, 0),
           (3, 1, 'u3', 'u2@example.test', 9, 'pending', 0, 0);
  INSERT INTO import_run (campaign_id, file, started_at, state) VALUES (1, 'users.csv', 0, 'done');
  INSERT INTO delivery (campaign_id, recipient_id, kind, occurrence, state, due_at, created_at,
    updated_at) VALUES (1, 1, 'reminder', 5, 'deferred', 9, 0, 0);
  INSERT INTO login (id, user_id, at, client_version, platform, outcome)
    VALUES (1, 'u1', 10, '4.6', 'windows', 'none'), (2, 'x9', 11, NULL, NULL, 'unknown'),
           (3, 'u2', 12, '5.0', NULL, 'completed');
  INSERT INTO login_reminder (recipient_id, period_start, campaign_id, period_index, shown_at,
    client_version) VALUES (1, 86400, 1, 1, 86500, '4.6');" >"$OUT" 2>"$ERR"
check "$(cat "$ERR")" "" "rows go into the old schema"
before=$(rows)

run --db "$DB" init
expect_rc 0 "init migrates the old database"
expect_out "migrated from schema version 8 to" "it says from which version"
check "$(sql "$DB" 'PRAGMA integrity_check')" "ok" "the migrated database passes the integrity check"
after=$(rows)
check "$after" "$before" "every row is as it was"
# 016 keyed the addresses: the SHA-256 of the case-folded address, its first 8 octets as a
# signed integer; of two addresses that share a key the first holds it, the other goes without.
key() { python3 -c 'import hashlib, struct, sys
print(struct.unpack(">q", hashlib.sha256(sys.argv[1].lower().encode()).digest()[:8])[0])' "$1"; }
check "$(sql "$DB" "SELECT group_concat(user_id || '=' || coalesce(email_key, 'none'), ' ')
    FROM recipient")" "u1=$(key u1@example.test) u2=$(key u2@example.test) u3=none" \
    "the addresses have their keys, and the case variant none"
check "$(sql "$DB" "SELECT group_concat(name, ' ') FROM sqlite_schema WHERE tbl_name = 'recipient'
    AND type = 'index' AND sql LIKE '%email%'")" "recipient_email_spill" \
    "found by the spill index, and (017) no index of the key on recipient"
# 017 moved the keys' holders into recipient_key, one row each, and nothing is pending.
check "$(sql "$DB" "SELECT group_concat(r.user_id || '=' || (k.email_key = r.email_key), ' ')
    FROM recipient_key k JOIN recipient r ON r.id = k.recipient_id AND r.campaign_id = k.campaign_id
    ORDER BY r.id")" "u1=1 u2=1" "the holders' keys are in recipient_key"
check "$(sql "$DB" "SELECT count(*) FROM import_pending")" "0" "no import is pending"
# 011 indexed the known users' logins; 012's mark says all of them are (no tail to scan).
check "$(sql "$DB" "SELECT group_concat(user_id || '@' || at || '#' || login_id, ' ')
    FROM login_by_user")" "u1@10#1 u2@12#3" "the logins' keys are in login_by_user"
check "$(sql "$DB" "SELECT through FROM login_indexed")" "3" "and marked indexed up to the last login"
# 013 kept the login reminders in their B-tree, read through the view, with an empty tail.
check "$(sql "$DB" "SELECT group_concat(recipient_id || '@' || period_start || '#' || shown_at, ' ')
    FROM login_reminder_indexed")" "1@86400#86500" "the login reminders are in login_reminder_indexed"
check "$(sql "$DB" "SELECT count(*) || ',' || (SELECT count(*) FROM login_reminder_tail)
    FROM login_reminder")" "1,0" "read once through the view login_reminder; the tail is empty"
check "$(sql "$DB" "SELECT count(*) FROM sqlite_schema WHERE name = 'recipient_segment'")" "0" \
    "015 dropped the segment index"
check "$(sql "$DB" "SELECT count(*) FROM sqlite_schema WHERE sql LIKE '%CHECK%' AND sql LIKE '% IN (%'")" \
    "0" "no CHECK is an IN list any more"
check "$(sql "$DB" "SELECT count(*) FROM sqlite_schema WHERE sql LIKE '%CHECK (state = ''%'")" "4" \
    "the four state CHECKs are comparisons"

# The rewritten constraints hold on a new connection (which parses the new schema text).
for stmt in "UPDATE campaign SET state = 'bogus'" "UPDATE recipient SET state = 'bogus'" \
    "UPDATE import_run SET state = 'bogus'" "UPDATE delivery SET state = 'bogus'" \
    "UPDATE delivery SET kind = 'bogus'"; do
    sql "$DB" "$stmt" >"$OUT" 2>"$ERR"
    expect_err "CHECK constraint failed" "refused: $stmt"
done
sql "$DB" "UPDATE delivery SET state = 'cancelled', kind = 'final'; UPDATE recipient SET state = 'forgotten'
           WHERE id = 1; UPDATE campaign SET state = 'ended'" >"$OUT" 2>"$ERR"
check "$(cat "$ERR")" "" "allowed values are still allowed"
check "$(sql "$DB" "SELECT state FROM delivery")" "cancelled" "and written"
run --db "$DB" init
expect_out "up to date" "a second init changes nothing"
finish
