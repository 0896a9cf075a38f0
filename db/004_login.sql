-- 004: logins and login reminders (cutoff login), and the marks that let the daily run skip
-- segments it has already queued in full.

-- Every login a login server reported: who, when, with which client. user_id is the login
-- name as given, whether or not any campaign knows it. outcome: reminder (one was shown),
-- completed (this login completed the user somewhere), none (known, nothing to show),
-- unknown (in no active campaign).
CREATE TABLE login (
    id             INTEGER PRIMARY KEY,
    user_id        TEXT NOT NULL,
    at             INTEGER NOT NULL,
    client_version TEXT,
    platform       TEXT,
    outcome        TEXT NOT NULL
);
-- A user's logins, for support. Only those of users a campaign knows: most logins are from
-- users no campaign concerns (fewer than 30% of clients are affected), and indexing them
-- would cost every login a random index write for nothing anyone asks about. Their rows are
-- kept in time order (id). Queries must say "AND outcome <> 'unknown'" to use this index.
CREATE INDEX login_user ON login (user_id, at) WHERE outcome <> 'unknown';

-- A login reminder shown to a recipient: at most one per reminder period. The primary key is
-- what makes two concurrent logins unable to both show one (INSERT ... ON CONFLICT DO NOTHING,
-- then changes() tells which login got it).
CREATE TABLE login_reminder (
    recipient_id   INTEGER NOT NULL REFERENCES recipient(id) ON DELETE CASCADE,
    period_start   INTEGER NOT NULL,      -- UTC start of the cadence period
    campaign_id    INTEGER NOT NULL,
    period_index   INTEGER NOT NULL,      -- 0 = the period that opens at reminder start
    shown_at       INTEGER NOT NULL,      -- the login that showed it
    client_version TEXT,
    PRIMARY KEY (recipient_id, period_start)
) WITHOUT ROWID;

-- A segment's deliveries of one (kind, occurrence) queued for every pending recipient whose
-- id is at most watermark (max(recipient.id) then). While no recipient is added above it, and
-- none moves into a segment or back to pending (the triggers below drop every mark), queueing
-- that segment again could add nothing, so the daily run skips its INSERT ... SELECT.
CREATE TABLE queue_mark (
    segment_id  INTEGER NOT NULL REFERENCES segment(id) ON DELETE CASCADE,
    kind        TEXT NOT NULL,
    occurrence  INTEGER NOT NULL,
    watermark   INTEGER NOT NULL,
    queued_at   INTEGER NOT NULL,
    PRIMARY KEY (segment_id, kind, occurrence)
) WITHOUT ROWID;

CREATE TRIGGER queue_mark_moved AFTER UPDATE OF segment_id, state ON recipient
WHEN NEW.state = 'pending' AND (OLD.segment_id IS NOT NEW.segment_id OR OLD.state <> 'pending')
BEGIN
    DELETE FROM queue_mark;
END;

-- A deleted recipient frees its id for reuse below a watermark.
CREATE TRIGGER queue_mark_deleted AFTER DELETE ON recipient
BEGIN
    DELETE FROM queue_mark;
END;
