-- 001: campaigns, segments, recipients, the import log and the per-recipient event log.
-- Times are UTC Unix seconds (INTEGER). Applied by `cutoff init` inside one transaction;
-- PRAGMA user_version records the last migration applied.

CREATE TABLE campaign (
    id                 INTEGER PRIMARY KEY,
    name               TEXT NOT NULL UNIQUE,
    title              TEXT NOT NULL,
    state              TEXT NOT NULL DEFAULT 'active'
                       CHECK (state IN ('active', 'paused', 'cancelled', 'ended')),
    timezone           TEXT NOT NULL,
    announce_at        INTEGER NOT NULL,
    reminder_start_at  INTEGER NOT NULL,
    cutoff_at          INTEGER NOT NULL,
    definition         TEXT NOT NULL,      -- the campaign file as added
    source_path        TEXT NOT NULL,      -- where it was added from
    templates_dir      TEXT NOT NULL,      -- resolved when added
    digest             TEXT NOT NULL,      -- of the definition, to tell an update from a no-op
    sending_started_at INTEGER,            -- set by the sender on its first claim
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL
);

CREATE TABLE segment (
    id             INTEGER PRIMARY KEY,
    campaign_id    INTEGER NOT NULL REFERENCES campaign(id) ON DELETE CASCADE,
    name           TEXT NOT NULL,
    position       INTEGER NOT NULL,
    template       TEXT NOT NULL,
    send_at        INTEGER NOT NULL,
    target_version TEXT,                   -- NULL: discontinued, no upgrade path
    UNIQUE (campaign_id, name)
);

-- One affected user of one campaign. email is NULL once the person is forgotten.
CREATE TABLE recipient (
    id           INTEGER PRIMARY KEY,
    campaign_id  INTEGER NOT NULL REFERENCES campaign(id) ON DELETE CASCADE,
    user_id      TEXT NOT NULL,
    email        TEXT,
    name         TEXT,
    locale       TEXT,
    timezone     TEXT,
    client       TEXT,
    version      TEXT,
    platform     TEXT,
    os           TEXT,
    attrs        TEXT,                     -- JSON object of the extra CSV columns
    segment_id   INTEGER REFERENCES segment(id),
    digest       INTEGER NOT NULL,         -- of the imported fields, to report "unchanged"
    import_run   INTEGER,                  -- the import that last wrote it (duplicates in one file)
    state        TEXT NOT NULL DEFAULT 'pending'
                 CHECK (state IN ('pending', 'completed', 'unaffected', 'forgotten')),
    completed_at INTEGER,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    UNIQUE (campaign_id, user_id)
);
CREATE UNIQUE INDEX recipient_email ON recipient (campaign_id, email);
CREATE INDEX recipient_segment ON recipient (campaign_id, segment_id, state);

-- Addresses never to be mailed again, across campaigns. address_hash survives forget.
CREATE TABLE suppression (
    address_hash TEXT PRIMARY KEY,         -- hex SHA-256 of the normalised address
    email        TEXT,                     -- NULL once forgotten
    reason       TEXT NOT NULL,            -- hard-bounce, complaint, unsubscribe, forgotten, manual
    campaign_id  INTEGER REFERENCES campaign(id) ON DELETE SET NULL,
    detail       TEXT,
    created_at   INTEGER NOT NULL
);

CREATE TABLE import_run (
    id           INTEGER PRIMARY KEY,
    campaign_id  INTEGER NOT NULL REFERENCES campaign(id) ON DELETE CASCADE,
    file         TEXT NOT NULL,
    started_at   INTEGER NOT NULL,
    finished_at  INTEGER,
    state        TEXT NOT NULL DEFAULT 'running' CHECK (state IN ('running', 'done', 'failed')),
    rows         INTEGER NOT NULL DEFAULT 0,
    added        INTEGER NOT NULL DEFAULT 0,
    updated      INTEGER NOT NULL DEFAULT 0,
    unchanged    INTEGER NOT NULL DEFAULT 0,
    merged       INTEGER NOT NULL DEFAULT 0,
    not_affected INTEGER NOT NULL DEFAULT 0,
    rejected     INTEGER NOT NULL DEFAULT 0,
    rejects_file TEXT
);

-- Append-only: everything that happened to a recipient, the answer to support's questions.
CREATE TABLE event (
    id           INTEGER PRIMARY KEY,
    campaign_id  INTEGER REFERENCES campaign(id) ON DELETE CASCADE,
    recipient_id INTEGER REFERENCES recipient(id) ON DELETE CASCADE,
    at           INTEGER NOT NULL,
    kind         TEXT NOT NULL,
    detail       TEXT                      -- JSON object
);
CREATE INDEX event_recipient ON event (recipient_id, at);
CREATE INDEX event_campaign ON event (campaign_id, at);
