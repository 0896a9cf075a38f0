/* scratch.h — a scratch database for unit tests: cmocka setup and teardown functions. */
#ifndef CUTOFF_TEST_SCRATCH_H
#define CUTOFF_TEST_SCRATCH_H

/* Setup: a new directory under /tmp; *state is the path of a database in it (not created).
 * 0, or -1 when the directory cannot be made. */
int scratch_db(void **state);

/* Teardown: the database, its -wal, -shm and -journal files, the directory, and the path. */
int scratch_db_remove(void **state);

#endif
