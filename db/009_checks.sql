-- 009: every CHECK (x IN (...)) rewritten as x = ... OR x = ..., the same constraint. SQLite
-- (3.40) evaluates an IN list of three or more constants by building a temporary b-tree, once
-- per statement execution: every INSERT or UPDATE of a recipient, a delivery or a campaign paid
-- for it (about 2 us each; a fifth of a completing login's instructions), which is why the
-- import and login connections had turned CHECK constraints off. The comparisons cost next to
-- nothing, so every connection now keeps the constraints on.
-- The tables are not rebuilt: only the text of their CHECK constraints changes, not what rows
-- they accept or how rows are stored, which SQLite documents as a change that may be made by
-- editing sqlite_schema (https://sqlite.org/lang_altertable.html, "making other kinds of table
-- schema changes"). The table created and dropped at the end increments the schema cookie, so
-- every other connection re-reads the schema.
PRAGMA writable_schema = ON;
UPDATE sqlite_schema
   SET sql = replace(sql, 'CHECK (state IN (''active'', ''paused'', ''cancelled'', ''ended''))',
                     'CHECK (state = ''active'' OR state = ''paused'' OR state = ''cancelled'''
                     || ' OR state = ''ended'')')
 WHERE type = 'table' AND name = 'campaign';
UPDATE sqlite_schema
   SET sql = replace(sql,
                     'CHECK (state IN (''pending'', ''completed'', ''unaffected'', ''forgotten''))',
                     'CHECK (state = ''pending'' OR state = ''completed'''
                     || ' OR state = ''unaffected'' OR state = ''forgotten'')')
 WHERE type = 'table' AND name = 'recipient';
UPDATE sqlite_schema
   SET sql = replace(sql, 'CHECK (state IN (''running'', ''done'', ''failed''))',
                     'CHECK (state = ''running'' OR state = ''done'' OR state = ''failed'')')
 WHERE type = 'table' AND name = 'import_run';
UPDATE sqlite_schema
   SET sql = replace(replace(sql,
                     'CHECK (kind IN (''initial'', ''reminder'', ''final''))',
                     'CHECK (kind = ''initial'' OR kind = ''reminder'' OR kind = ''final'')'),
                     'CHECK (state IN (''queued'', ''sending'', ''sent'', ''deferred'', ''failed'','
                     || char(10) || '                                   '
                     || '''bounced'', ''suppressed'', ''cancelled''))',
                     'CHECK (state = ''queued'' OR state = ''sending'' OR state = ''sent'''
                     || ' OR state = ''deferred'' OR state = ''failed'' OR state = ''bounced'''
                     || ' OR state = ''suppressed'' OR state = ''cancelled'')')
 WHERE type = 'table' AND name = 'delivery';
PRAGMA writable_schema = OFF;
CREATE TABLE migration_009 (x);
DROP TABLE migration_009;
-- This connection still holds the tables as it parsed them before the edit: reload them, or a
-- later ALTER TABLE ... ADD COLUMN on it (a fresh init running every migration) would splice
-- the column in at an offset into the old text.
PRAGMA writable_schema = RESET;
