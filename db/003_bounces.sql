-- 003: returned mail (cutoff bounces): which messages were processed, the soft bounces that
-- count toward bounces.soft_threshold, and unsubscribes that hold for one campaign.

-- One row per returned message acted on, keyed by the SHA-256 of its raw bytes: the same
-- message read again (a second run, a crash before the Maildir move, an MTA retry) counts
-- nothing. Quarantined messages are not recorded, so one put back after a fix is processed.
CREATE TABLE bounce_message (
    sha256        TEXT PRIMARY KEY,       -- hex SHA-256 of the message as read
    source        TEXT NOT NULL,          -- file name, "mbox:N" or "-" (stdin)
    kind          TEXT NOT NULL,          -- bounce, delay, autoreply, complaint, unsubscribe, other
    attributed_by TEXT NOT NULL,          -- verp, message-id, header, recipient, text
    delivery_id   INTEGER REFERENCES delivery(id) ON DELETE SET NULL,
    outcome       TEXT NOT NULL,          -- suppress, count, unsubscribe, record
    processed_at  INTEGER NOT NULL
);

-- Soft bounces (DSNs of class soft), one per delivery. Keyed like suppression by the hash of
-- the address, so the count outlives `forget`. sent_at is when the bounced delivery was sent
-- (else when its bounce was read): N of them on distinct UTC days suppress the address.
CREATE TABLE soft_bounce (
    id           INTEGER PRIMARY KEY,
    address_hash TEXT NOT NULL,           -- hex SHA-256 of the address as stored
    delivery_id  INTEGER UNIQUE REFERENCES delivery(id) ON DELETE SET NULL,
    sent_at      INTEGER NOT NULL,
    at           INTEGER NOT NULL         -- when the bounce was processed
);
CREATE INDEX soft_bounce_address ON soft_bounce (address_hash, sent_at);

-- Attribution by a DSN's Final-Recipient: addresses compared without regard to case.
CREATE INDEX recipient_email_nocase ON recipient (email COLLATE NOCASE);

-- An unsubscribe that holds for one campaign (bounces.unsubscribe = "campaign"; "global"
-- suppresses the address instead).
CREATE TABLE campaign_unsubscribe (
    campaign_id  INTEGER NOT NULL REFERENCES campaign(id) ON DELETE CASCADE,
    recipient_id INTEGER NOT NULL REFERENCES recipient(id) ON DELETE CASCADE,
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (campaign_id, recipient_id)
);

-- A delivery queued later for an unsubscribed recipient is settled at once as suppressed,
-- so no sender can ever claim it (the ledger keeps the row, and says why).
CREATE TRIGGER delivery_unsubscribed AFTER INSERT ON delivery
WHEN EXISTS (SELECT 1 FROM campaign_unsubscribe u
             WHERE u.campaign_id = NEW.campaign_id AND u.recipient_id = NEW.recipient_id)
BEGIN
    UPDATE delivery SET state = 'suppressed', reason = 'unsubscribe' WHERE id = NEW.id;
END;
