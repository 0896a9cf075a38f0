-- 008: delivery_campaign without the state column. Every claim (queued -> sending) and every
-- settlement (sending -> sent...) changed state, so each moved its entry in this index: two
-- index deletes and two inserts per message. No query wants (campaign_id, state) from it: the
-- ledger's due work comes from the partial index delivery_due, the rows in flight from
-- delivery_sending, each person's deliveries from delivery_person, and the per-campaign counts
-- read every row of the campaign (they need due_at and possibly_duplicated too). What is left
-- is campaign_id, for those counts and for ON DELETE CASCADE from campaign. The claim/settle
-- loop's SQLite work per message: 110,411 to 93,230 instructions (callgrind, 3,000 messages).
DROP INDEX delivery_campaign;
CREATE INDEX delivery_campaign ON delivery (campaign_id);
