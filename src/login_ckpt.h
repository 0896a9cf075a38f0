/* login_ckpt.h — a thread that checkpoints the WAL beside a stream of login transactions, so
 * that the writer's thread spends its time deciding logins rather than copying pages. */
#ifndef CUTOFF_LOGIN_CKPT_H
#define CUTOFF_LOGIN_CKPT_H

/*
 * Why: a login stream's writer (cutoff login --batch) commits a batch every ~200 ms, and every
 * 32768 WAL pages its own automatic checkpoint copied them all into the database, in its own
 * thread: a tenth of its time. This thread, with its own connection, copies the pages of the
 * latest commits soon after them, at most every 200 ms (a PASSIVE checkpoint: it never blocks
 * the writer nor waits for it), so that the writer's automatic checkpoint finds almost
 * nothing left to copy, and starts the WAL over as before. Durability is the writer's (its
 * commit syncs the WAL); the copy is only an earlier start of work SQLite would do anyway.
 */
struct login_ckpt;

/*
 * Opens a connection to the database at path and starts the thread. Returns NULL (with a
 * warning logged) when either fails: the writer's own checkpoints then do the work, as before.
 * Free with login_ckpt_stop.
 */
struct login_ckpt *login_ckpt_start(const char *path);

/* Tells the thread a transaction committed: it copies the new pages when it is free and its
 * last copy is 200 ms old. NULL is fine (nothing). */
void login_ckpt_poke(struct login_ckpt *c);

/* Stops the thread (after the copy under way, if any), closes its connection, frees c (NULL
 * is fine). Call before the writer's connection closes, so that the writer's is the last one
 * and its close checkpoints and removes the WAL as usual. */
void login_ckpt_stop(struct login_ckpt *c);

#endif
