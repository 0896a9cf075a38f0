-- 017: the holders of address keys move from an index of recipient (recipient_email_key,
-- db/016) to a table of their own, so that an import can add its keys after its rows.
--
-- The key is a hash: a UNIQUE index on it takes each new recipient's entry at a random leaf,
-- and a commit of 50,000 rows dirtied nearly every leaf of it, so each of an import's commits
-- wrote the whole index again (bench/import, 1M rows: the storing thread 4.3 CPU-s with the
-- index kept row by row, 2.5 with it built at the end; docs/import.md). An import now leaves
-- its new recipients out of recipient_key (they keep email_key in their row), records where
-- they begin in import_pending, finds duplicate addresses among them in memory, and adds their
-- keys at its end in key order, in one pass (src/store.c, "Deferred keys").
--
-- recipient.email_key keeps its meaning: the key of the recipient's address when it holds the
-- key in its campaign, NULL when another address of the campaign holds it (a case variant of
-- the local part, or a collision: found by recipient_email_spill) or when there is no address.
-- recipient_key has one row for each holder, except the recipients of import_pending's spans,
-- whose keys are not added yet. Every lookup by address reads recipient_key, the spill index,
-- and the pending spans (STORE_ADDRESS_IDS); a crash in an import leaves its span pending, and
-- the next init, daily run or import finishes it. Campaigns and recipients are never deleted,
-- so nothing here cascades.
CREATE TABLE recipient_key (
    email_key    INTEGER NOT NULL,
    campaign_id  INTEGER NOT NULL,
    recipient_id INTEGER NOT NULL,
    PRIMARY KEY (email_key, campaign_id)
) WITHOUT ROWID;
INSERT INTO recipient_key (email_key, campaign_id, recipient_id)
SELECT email_key, campaign_id, id FROM recipient WHERE email_key IS NOT NULL
 ORDER BY email_key, campaign_id;
DROP INDEX recipient_email_key;

-- The recipients of campaign_id from first_id on were added by an import whose keys are not
-- in recipient_key yet (at most one span a campaign: one import at a time, src/import.c).
CREATE TABLE import_pending (
    campaign_id INTEGER PRIMARY KEY,
    first_id    INTEGER NOT NULL
);
