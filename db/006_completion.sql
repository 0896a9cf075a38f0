-- 006: recipient_segment without the state column. A completion (a login at the target
-- version) changes a recipient's state, and with state in this index every completion moved
-- its index entry: bench/login's balanced mix (a quarter of the logins complete) went from
-- 43,043 to 49,557-55,347 events/s (two runs) without it. Queueing a segment and counting its
-- states now read the rows they find through the index (the first run of a day on 866,800
-- deliveries: 11.7 s to 12.5-12.7 s), which happens once a day, not once a login.
DROP INDEX recipient_segment;
CREATE INDEX recipient_segment ON recipient (campaign_id, segment_id);
