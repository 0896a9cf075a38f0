/* point_lookup.c — bench/login's floor: per login event, one indexed SQLite point lookup of the
 * user (the least any login hook must do), on the same database and the same events file as
 * `cutoff login --batch`. No JSON library, no writes, no answer beyond a count.
 * Usage: point_lookup DB EVENTS.jsonl   Prints one JSON line: events, found, seconds. */
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The value of "user":"..." in a line (no escapes in the generated ids); NULL if none. */
static const char *user_of(char *line, size_t *len)
{
	char *p = strstr(line, "\"user\": \""), *q;
	size_t skip = 9;

	if (p == NULL && (p = strstr(line, "\"user\":\"")) != NULL)
		skip = 8;
	if (p == NULL || (q = strchr(p + skip, '"')) == NULL)
		return NULL;
	*len = (size_t)(q - (p + skip));
	return p + skip;
}

int main(int argc, char **argv)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	FILE *f;
	char *line = NULL;
	size_t cap = 0, len;
	long long events = 0, found = 0;
	double t0;

	if (argc != 3 || (f = fopen(argv[2], "r")) == NULL) {
		fprintf(stderr, "usage: point_lookup DB EVENTS.jsonl\n");
		return 64;
	}
	if (sqlite3_open_v2(argv[1], &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(db, "SELECT id FROM recipient WHERE campaign_id = 1"
			       " AND user_id = ?1", -1, &st, NULL) != SQLITE_OK) {
		fprintf(stderr, "point_lookup: %s\n", sqlite3_errmsg(db));
		return 74;
	}
	sqlite3_exec(db, "PRAGMA cache_size = -32768", NULL, NULL, NULL); /* as cutoff's store */
	t0 = now_s();
	while (getline(&line, &cap, f) > 0) {
		const char *u = user_of(line, &len);
		if (u == NULL)
			continue;
		events++;
		sqlite3_bind_text(st, 1, u, (int)len, SQLITE_STATIC);
		if (sqlite3_step(st) == SQLITE_ROW)
			found++;
		sqlite3_reset(st);
	}
	printf("{\"events\": %lld, \"found\": %lld, \"seconds\": %.3f}\n", events, found,
	       now_s() - t0);
	free(line);
	fclose(f);
	sqlite3_finalize(st);
	sqlite3_close(db);
	return 0;
}
