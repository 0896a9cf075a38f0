-- 013: login reminders may be claimed in a tail before they go into their B-tree. The claim of
-- a period's reminder used to be an INSERT into login_reminder keyed (recipient, period) over a
-- million recipients: with cutoff serve's commits of 20 to 50 logins, one random leaf written
-- to the WAL a login (after db/012, most of a login's frames), and as many random pages for the
-- checkpointer to write and sync. A connection may now append its claims to
-- login_reminder_tail (rowid order: the commit's claims share its last page) and move them
-- into login_reminder_indexed later in bulk, in key order, many keys to a leaf
-- (store_login_bulk_step). A claim is in exactly one of the two, or in both while a bulk in
-- steps has copied it and not yet deleted the tail's rows: the view login_reminder, which
-- every reader reads, counts the tail's rows whose key is not in the B-tree, so each claim once.
-- Whoever claims checks both (store_login_reminder_claim, inside its write transaction).
-- (Numbered 013 on its branch; renumber if another 013 lands first: nothing depends on it.)
ALTER TABLE login_reminder RENAME TO login_reminder_indexed;

-- No index on recipient_id (that would be a random leaf a claim again): a recipient's delete
-- scans the tail, which a running cutoff serve keeps short and leaves empty when it stops.
-- Nothing in cutoff deletes recipients (forget scrubs them and keeps their reminders).
CREATE TABLE login_reminder_tail (
    id             INTEGER PRIMARY KEY,
    recipient_id   INTEGER NOT NULL REFERENCES recipient(id) ON DELETE CASCADE,
    period_start   INTEGER NOT NULL,
    campaign_id    INTEGER NOT NULL,
    period_index   INTEGER NOT NULL,
    shown_at       INTEGER NOT NULL,
    client_version TEXT
);

-- Changes whenever rows leave the tail other than by the release of a claim in the transaction
-- that made it: a bulk moved them (and the tail's rowids may start again at 1), a recipient
-- was deleted (its claims went with it, and its id may come back), or a claim was deleted
-- through the view. Only these three delete from the tail (and store_login.c's release). A connection that
-- keeps the tail's keys in memory reads them all again when it changed. One row (one = 1).
CREATE TABLE login_reminder_tail_epoch (
    one   INTEGER PRIMARY KEY, -- 1
    epoch INTEGER NOT NULL
);
INSERT INTO login_reminder_tail_epoch (one, epoch) VALUES (1, 0);
CREATE TRIGGER login_reminder_recipient_deleted AFTER DELETE ON recipient
BEGIN
    UPDATE login_reminder_tail_epoch SET epoch = epoch + 1;
END;

-- Every claim once: the B-tree's, and the tail's not copied into it yet.
CREATE VIEW login_reminder AS
    SELECT recipient_id, period_start, campaign_id, period_index, shown_at, client_version
    FROM login_reminder_indexed
    UNION ALL
    SELECT t.recipient_id, t.period_start, t.campaign_id, t.period_index, t.shown_at,
           t.client_version
    FROM login_reminder_tail t
    WHERE NOT EXISTS (SELECT 1 FROM login_reminder_indexed i
                      WHERE i.recipient_id = t.recipient_id AND i.period_start = t.period_start);

-- Written as the table was (tools, tests, bench/support): into the B-tree; a key claimed in
-- either place is refused, as the primary key refused it.
CREATE TRIGGER login_reminder_insert INSTEAD OF INSERT ON login_reminder
BEGIN
    SELECT RAISE(ABORT, 'UNIQUE constraint failed: login_reminder.recipient_id, login_reminder.period_start')
    WHERE EXISTS (SELECT 1 FROM login_reminder_tail t WHERE t.recipient_id = NEW.recipient_id
                  AND t.period_start = NEW.period_start);
    INSERT INTO login_reminder_indexed (recipient_id, period_start, campaign_id, period_index,
                                        shown_at, client_version)
    VALUES (NEW.recipient_id, NEW.period_start, NEW.campaign_id, NEW.period_index,
            NEW.shown_at, NEW.client_version);
END;

CREATE TRIGGER login_reminder_delete INSTEAD OF DELETE ON login_reminder
BEGIN
    DELETE FROM login_reminder_indexed WHERE recipient_id = OLD.recipient_id
        AND period_start = OLD.period_start;
    DELETE FROM login_reminder_tail WHERE recipient_id = OLD.recipient_id
        AND period_start = OLD.period_start;
    UPDATE login_reminder_tail_epoch SET epoch = epoch + 1;
END;
