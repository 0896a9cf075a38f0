-- 002: the delivery ledger, its attempts, and the run lock's record.
-- One delivery per (recipient, kind, occurrence): the UNIQUE key is what makes a second
-- run, or a second sender, unable to create a second message for the same occurrence.

CREATE TABLE delivery (
    id            INTEGER PRIMARY KEY,
    campaign_id   INTEGER NOT NULL REFERENCES campaign(id) ON DELETE CASCADE,
    recipient_id  INTEGER NOT NULL REFERENCES recipient(id) ON DELETE CASCADE,
    kind          TEXT NOT NULL CHECK (kind IN ('initial', 'reminder', 'final')),
    occurrence    INTEGER NOT NULL,       -- the scheduled instant it is for (0: initial)
    state         TEXT NOT NULL DEFAULT 'queued'
                  CHECK (state IN ('queued', 'sending', 'sent', 'deferred', 'failed',
                                   'bounced', 'suppressed', 'cancelled')),
    due_at        INTEGER NOT NULL,       -- when it may be sent: first, or after a deferral
    attempts      INTEGER NOT NULL DEFAULT 0,
    claimed_by    TEXT,                   -- the run holding it while state = 'sending'
    lease_until   INTEGER,
    message_id    TEXT,                   -- of the accepted (or last) attempt
    relay         TEXT,
    last_code     INTEGER,                -- SMTP reply code of the last attempt
    last_reply    TEXT,                   -- its text, as the server said it
    reason        TEXT,                   -- why failed/suppressed/cancelled (expired, hard, completed...)
    possibly_duplicated INTEGER NOT NULL DEFAULT 0,  -- recovered from a run that died mid-send
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    sent_at       INTEGER,
    UNIQUE (recipient_id, kind, occurrence)
);
CREATE INDEX delivery_due ON delivery (campaign_id, due_at) WHERE state IN ('queued', 'deferred');
CREATE INDEX delivery_sending ON delivery (state) WHERE state = 'sending';
CREATE INDEX delivery_campaign ON delivery (campaign_id, state);
CREATE INDEX delivery_message_id ON delivery (message_id);

-- Every SMTP attempt, accepted or not, with the relay's exact reply.
CREATE TABLE attempt (
    id           INTEGER PRIMARY KEY,
    delivery_id  INTEGER NOT NULL REFERENCES delivery(id) ON DELETE CASCADE,
    run_id       TEXT NOT NULL,
    at           INTEGER NOT NULL,
    relay        TEXT,
    code         INTEGER,                 -- SMTP reply code, 0 when there was none
    reply        TEXT,                    -- the server's reply text
    local_error  TEXT,                    -- cutoff's own account (timeout, connection lost...)
    message_id   TEXT,
    outcome      TEXT NOT NULL            -- sent, deferred, failed, throttled, relay-down, recovered
);
CREATE INDEX attempt_delivery ON attempt (delivery_id);
-- No index on attempt.message_id: only an accepted attempt can bounce, and its Message-ID is
-- the delivery's (delivery_message_id); one random-key index fewer to write per message.

-- Where the bookkeeping of each campaign's schedule stands (what the daily run queued).
CREATE TABLE schedule_mark (
    campaign_id  INTEGER NOT NULL REFERENCES campaign(id) ON DELETE CASCADE,
    kind         TEXT NOT NULL,
    occurrence   INTEGER NOT NULL,
    queued_at    INTEGER NOT NULL,
    PRIMARY KEY (campaign_id, kind, occurrence)
);
