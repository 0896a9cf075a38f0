/* checkpointer.h — a thread with its own connection that copies the WAL into the database
 * when asked, so that the connection committing never spends its time doing it. */
#ifndef CUTOFF_CHECKPOINTER_H
#define CUTOFF_CHECKPOINTER_H

#include <stdbool.h>

#include "err.h"

struct store;

struct checkpointer;

/*
 * Opens a second connection to the database at path and starts the thread. Each pass it runs
 * is a PASSIVE checkpoint that then syncs the database (store_wal_checkpoint's PASSIVE_SYNC:
 * SQLite itself would not sync when a commit came in during the copy, leaving the writer's
 * final copy to sync everything): it copies the committed frames no reader needs into the
 * database, never blocking the writer. A writer can then start the
 * WAL over cheaply (checkpointer_restart). 0, or ERR_IO / ERR_NOTFOUND / ERR_TEMPFAIL with e
 * filled (no thread).
 */
int checkpointer_start(struct checkpointer **out, const char *path, struct err *e);

/* Asks for a pass after the writer's commit; returns at once (a pass asked for while one runs
 * is run after it, once). */
void checkpointer_kick(struct checkpointer *c);

/*
 * The writer's side after each commit on writer (a connection to the same database whose own
 * checkpoints are off, store_wal_autocheckpoint 0): a pass is asked for, and returns at once;
 * or, once the WAL holds wal_frames frames or more (store_wal_frames), the writer waits for the
 * running pass and copies what it left (the last commits' frames) itself, so that its next
 * transaction writes the WAL from the start. A failed copy is logged: the WAL grows, nothing
 * is lost.
 */
void checkpointer_committed(struct checkpointer *c, struct store *writer, int wal_frames);

/* Waits until no pass runs or is asked for. */
void checkpointer_idle(struct checkpointer *c);

/* Passes run and failed so far, and the frames the last pass found in the WAL. */
void checkpointer_stats(struct checkpointer *c, long *passes, long *failed, int *frames);

/* Waits for a running pass, stops the thread and closes its connection. NULL is ignored. */
void checkpointer_stop(struct checkpointer *c);

#endif
