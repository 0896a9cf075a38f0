/* runlock.h — one sending run (and one import) per database at a time: a lock file beside the
 * database. */
#ifndef CUTOFF_RUNLOCK_H
#define CUTOFF_RUNLOCK_H

#include <stdint.h>

#include "err.h"

struct runlock;

/*
 * Takes the run lock of the database at db_path: flock(2) on "DB.lock", which
 * the kernel releases when the holder dies, so a stale lock from a dead
 * process is simply taken over. The file records the holder (pid, host, start
 * time, command) for the message another run gets: ERR_TEMPFAIL "cutoff send
 * is already running on this database: pid 123 on host h since ...".
 * Free with runlock_release.
 */
int runlock_acquire(struct runlock **out, const char *db_path, const char *command, int64_t now,
		    struct err *e);

/* The same on the file db_path + suffix, the lock of what kind names ("another cutoff KIND is
 * already working on ..."): ".import-lock", kind "import", is held by an import from start to
 * end (src/import.c) and by `cutoff forget`, since an import keeps its new recipients'
 * address keys in memory until its end. */
int runlock_acquire_file(struct runlock **out, const char *db_path, const char *suffix,
			 const char *kind, const char *command, int64_t now, struct err *e);

/* Releases the lock (NULL is fine). */
void runlock_release(struct runlock *l);

#endif
