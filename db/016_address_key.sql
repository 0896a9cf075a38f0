-- 016: recipient addresses are found through a 64-bit key instead of an index of the
-- addresses themselves. recipient_address (db/007) held each address twice (case-folded and
-- as given) and the campaign: 81 MB for a million recipients, written at a random leaf a row,
-- more than the importer's 32 MiB page cache, so a commit's leaves were spilled and written
-- again (bench/import, scratch builds: with this and 015 the storing thread went from 6.7-7.4
-- to 5.1-5.2 CPU-s for a million rows). email_key is the first 8 octets of the SHA-256 of the address
-- with its ASCII letters folded (cutoff_address_key(), src/store.c): the index is about a
-- fifth of the size and fits the cache.
--
-- One recipient of a campaign holds a key (the UNIQUE index): two addresses of a campaign that
-- share one (equal but for the case of the local part, which RFC 5321 lets a server tell
-- apart, or a collision of the hash) keep the key on the first, and the others are stored
-- with email_key NULL, found by recipient_email_spill, a partial index of those few. So an
-- exact address stays unique per campaign as before: the store looks up the key's holder
-- before it stores a second address under it (src/store.c, address_key_place), and every
-- lookup by address reads both (STORE_ADDRESS_IDS) and compares the address itself.
-- Forgotten recipients have no address and no key.
ALTER TABLE recipient ADD COLUMN email_key INTEGER;
UPDATE recipient SET email_key = cutoff_address_key(email) WHERE email IS NOT NULL;
CREATE INDEX recipient_email_key_fill ON recipient (email_key, campaign_id);
UPDATE recipient SET email_key = NULL
 WHERE email_key IS NOT NULL
   AND EXISTS (SELECT 1 FROM recipient o WHERE o.email_key = recipient.email_key
               AND o.campaign_id = recipient.campaign_id AND o.id < recipient.id);
DROP INDEX recipient_email_key_fill;
DROP INDEX recipient_address;
CREATE UNIQUE INDEX recipient_email_key ON recipient (email_key, campaign_id);
CREATE INDEX recipient_email_spill ON recipient (email COLLATE NOCASE)
 WHERE email_key IS NULL AND email IS NOT NULL;
