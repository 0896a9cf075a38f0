/* store_walbuf.h — a SQLite VFS that writes a transaction's WAL frames in a few large write
 * calls (pieces of up to 124 KiB) instead of two per frame (a frame header, then its page). */
#ifndef CUTOFF_STORE_WALBUF_H
#define CUTOFF_STORE_WALBUF_H

/*
 * The name of the VFS to open a connection with (sqlite3_open_v2's zVfs), registered on the
 * first call (thread-safe) as a shim over the VFS that was the default then; NULL when SQLite
 * refused to register it (the caller opens with the default VFS: slower, the same data).
 *
 * What it does: writes to a -wal file that follow each other are kept in memory (up to 1 MiB)
 * and handed to the file when SQLite syncs the WAL, reads it, truncates it, asks its size,
 * closes it, or before the shared-memory barrier and lock calls by which a commit becomes
 * visible to other connections. The database file and everything else go straight through.
 * A commit of N frames of 4 KiB costs about N / 30 pwrites (at least one) instead of 2N, and
 * the frames reach the file before any reader can see their commit.
 *
 * A commit's frames are written (not synced) before the COMMIT returns, with synchronous=FULL
 * (at its sync) and with NORMAL (at the commit frame): a write error fails the COMMIT either
 * way. With NORMAL, an fdatasync of the -wal file after the COMMIT returned makes it durable.
 */
const char *store_walbuf_vfs(void);

#endif
