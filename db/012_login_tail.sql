-- 012: login_by_user may lag behind login. A login's key used to go into login_by_user in the
-- transaction that recorded it: with cutoff serve's commits of 20 to 50 logins among a
-- million users, one more random leaf written to the WAL a login (2.2 frames a login, half of
-- them this index's). A connection may now leave the keys of its logins out (the tail) and
-- add them later in bulk, in key order, many keys to a leaf (store_login_index). Every known
-- login (outcome <> 'unknown') with id <= through has its key in login_by_user; above it
-- some may (a bulk in steps not finished): readers of login_by_user also scan the logins
-- above through (by rowid, bounded by the bulk's threshold) whose key is not there, and a
-- login is found exactly once either way.
-- (Numbered 012 on its branch; renumber if another 012 lands first: nothing depends on it.)
-- One row (one = 1), written only by store_login.c.
CREATE TABLE login_indexed (
    one     INTEGER PRIMARY KEY,  -- 1
    through INTEGER NOT NULL  -- login.id: the keys of every known login up to it, none above
);
-- Until now every login's key was added with it: the whole table is indexed.
INSERT INTO login_indexed (one, through) SELECT 1, coalesce(max(id), 0) FROM login;
