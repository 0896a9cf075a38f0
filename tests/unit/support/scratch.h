/* scratch.h — a scratch database for unit tests: cmocka setup and teardown functions, and a
 * one-value query on a store's connection. */
#ifndef CUTOFF_TEST_SCRATCH_H
#define CUTOFF_TEST_SCRATCH_H

#include <stddef.h>
#include <stdint.h>

struct store;

/* Setup: a new directory under /tmp; *state is the path of a database in it (not created).
 * 0, or -1 when the directory cannot be made. */
int scratch_db(void **state);

/* Teardown: the database, its -wal, -shm and -journal files, the directory, and the path. */
int scratch_db_remove(void **state);

/* The integer the one-row, one-value query sql returns on s's connection; a failed
 * prepare or no row fails the test. */
int64_t scratch_int(struct store *s, const char *sql);

/* The whole of file path, NUL-terminated, its length in *len; NULL when it cannot be opened.
 * The caller frees it. */
char *scratch_read_file(const char *path, size_t *len);

#endif
