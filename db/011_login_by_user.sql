-- 011: a user's logins are found through login_by_user, a table cutoff fills in key order when
-- a transaction's logins are inserted, instead of the partial index login_user, which SQLite
-- filled in arrival order: one B-tree seek to a random leaf per login of a known user, 20% of
-- a login batch's time (1M balanced events: 10.3-11.0 s with it, 8.2-8.5 s without). In key
-- order, consecutive keys land in the same leaf, already in the CPU's cache.
CREATE TABLE login_by_user (
    user_id  TEXT NOT NULL,
    at       INTEGER NOT NULL,
    login_id INTEGER NOT NULL,  -- login.id
    PRIMARY KEY (user_id, at, login_id)
) WITHOUT ROWID;
INSERT INTO login_by_user (user_id, at, login_id)
    SELECT user_id, at, id FROM login WHERE outcome <> 'unknown';
DROP INDEX login_user;
