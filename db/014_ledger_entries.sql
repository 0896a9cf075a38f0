-- 014: fewer index entries written a message. delivery_message_id held an entry for every
-- delivery, NULL until one is accepted: each queued row inserted a (NULL, id) entry and each
-- settlement deleted it before inserting the Message-ID's. The only look-up by Message-ID
-- (store_bounces.c, "message_id = ?") can use a partial index WHERE message_id IS NOT NULL
-- (SQLite knows "x = ?" implies "x IS NOT NULL"), which holds no NULL entry to write or delete.
-- The trigger delivery_unsubscribed (db/003) ran a sub-program for every delivery queued, to
-- find the rare one of a recipient unsubscribed from the campaign; the one statement that
-- inserts deliveries (store_ledger.c, LD_DELIVERY_QUEUE) now joins campaign_unsubscribe and
-- inserts such a row as suppressed ('unsubscribe') itself, as the trigger left it (updated_at
-- unchanged: the trigger did not set it). Existing rows keep their states: the index is
-- rebuilt from them.
DROP INDEX delivery_message_id;
CREATE INDEX delivery_message_id ON delivery (message_id) WHERE message_id IS NOT NULL;
DROP TRIGGER delivery_unsubscribed;
