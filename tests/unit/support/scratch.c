/* scratch.c — a scratch database for unit tests (see scratch.h). */
#include "scratch.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store_internal.h"
#include "util.h"

int scratch_db(void **state)
{
	char dir[] = "/tmp/cutoff-unit.XXXXXX";

	if (mkdtemp(dir) == NULL)
		return -1;
	*state = xasprintf("%s/t.db", dir);
	return 0;
}

int scratch_db_remove(void **state)
{
	static const char *const suffix[] = {"", "-wal", "-shm", "-journal"};
	char *db = *state, *dir = xstrdup(db);

	for (size_t i = 0; i < sizeof suffix / sizeof *suffix; i++) {
		char *f = xasprintf("%s%s", db, suffix[i]);

		unlink(f);
		free(f);
	}
	*strrchr(dir, '/') = '\0';
	rmdir(dir);
	free(dir);
	free(db);
	return 0;
}

int64_t scratch_int(struct store *s, const char *sql)
{
	sqlite3_stmt *st = NULL;
	int64_t v;

	assert_int_equal(sqlite3_prepare_v2(s->db, sql, -1, &st, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return v;
}

char *scratch_read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	struct buf b;
	char chunk[65536];
	size_t n;

	if (f == NULL)
		return NULL;
	buf_init(&b);
	while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
		buf_append(&b, chunk, n);
	fclose(f);
	*len = b.len;
	return b.data ? buf_steal(&b) : xstrdup("");
}
