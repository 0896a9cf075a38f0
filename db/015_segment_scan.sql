-- 015: no index on a recipient's segment. recipient_segment (campaign_id, segment_id, db/006)
-- took each imported row's entry at one insertion point a segment, in the middle of the B-tree:
-- page splits, and those pages held in the cache, on every row (issue 2, the importer's speed).
-- bench/import, 1M rows, alternated: without it the storing thread took 5.6-5.9 CPU-s against
-- 6.6-7.4, the import 6.3-7.0 s against 7.4-8.3 s; with the address index re-keyed too (db/016)
-- 5.1-5.2 CPU-s against 6.7-7.4, and 0.52-0.54x the speed of `sqlite3 .import` against 0.34x.
-- Its readers read the rows by rowid instead: a queueing chunk is a span of recipient ids above
-- the segments' queue marks (store_ledger.c), the segment counts one pass over the campaign's
-- recipients grouped by segment (store.c).
DROP INDEX recipient_segment;
