/* scratch.c — a scratch database for unit tests (see scratch.h). */
#include "scratch.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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
