/* import.h — streams an affected-user CSV (RFC 4180) into a campaign, idempotently. */
#ifndef CUTOFF_IMPORT_H
#define CUTOFF_IMPORT_H

#include <stdbool.h>
#include <stdint.h>

#include "campaign.h"
#include "err.h"
#include "store.h"
#include "util.h"

struct import_options {
	const char *rejects_path; /* NULL: "<file>.rejects.csv" beside the input */
	bool progress;            /* draw a progress line on stderr (a terminal) */
	int64_t now;              /* the clock, UTC seconds */
	int64_t commit_every;     /* rows per transaction; 0 = 50,000 */
	const char *db_path;      /* the database's file, for a checkpoint thread; NULL: none */
	int wal_frames;           /* with that thread, start the WAL over past this; 0 = 32,768 */
	size_t defer_keys;        /* new addresses' keys kept in memory before they are added to
				   * recipient_key (store_keys_defer); 0 = the store's default;
				   * IMPORT_KEYS_NOW: each added with its row (tests compare) */
};

#define IMPORT_KEYS_NOW ((size_t)-1)

struct import_result {
	struct store_import_counts counts;
	char *rejects_path; /* where rejected rows went, or NULL if none; caller frees */
	int64_t run_id;
};

/*
 * Imports path (a CSV with a header row; "email" required; user_id, name,
 * locale, timezone, client, version, platform, os known; other columns kept
 * as template attributes) into campaign c (stored as campaign_id). Each row is
 * matched to a segment; rows matching none count as not affected. Existing
 * recipients are found by user_id (or, without that column, by address) and
 * updated; a different user_id with a known address is merged into it.
 *
 * A bad row is written to the rejects file with its line number and reason
 * and the rest goes on. Problems with the file as a whole (cannot be read,
 * no header, no email column, duplicate columns) fail with ERR_NOTFOUND /
 * ERR_DATA before anything is written. A database failure is ERR_IO or
 * ERR_TEMPFAIL; rows committed before it stay (a re-run is idempotent).
 * Batches are committed without fsync and the run's last commit with it, so
 * once this returns 0 the whole import is durable. A second thread reads,
 * checks and matches rows ahead of the store through a bounded queue (memory
 * does not grow with the file); rows are stored and rejected in file order,
 * and only the calling thread uses s.
 */
int import_csv(struct store *s, const struct campaign *c, int64_t campaign_id, const char *path,
	       const struct import_options *o, struct import_result *r, struct err *e);

/*
 * Adds the address keys of any import that died before its end (import_pending, db/017), when
 * no import is running: `cutoff init` and the daily `cutoff run` call it, so that a span a
 * crash left does not wait for the next import (lookups by address scan it meanwhile). Takes
 * the import lock beside db_path without waiting: while an import holds it (or when the lock
 * cannot be opened, which is logged), does nothing. Returns 0 or the database error.
 */
int import_finish_pending(struct store *s, const char *db_path, int64_t now, struct err *e);

/*
 * Re-matches every stored recipient of c against its segments (after the
 * segments changed, before sending began), moving them between segments or
 * to "unaffected". *moved counts those that changed.
 */
int import_rematch(struct store *s, const struct campaign *c, int64_t campaign_id, int64_t now,
		   int64_t *moved, struct err *e);

/*
 * Writes the JSON object {names[i]: values[i], ...} (values[i] is lens[i] bytes of UTF-8
 * without NUL) into out, replacing its contents, byte for byte as jansson's
 * json_dumps(JSON_COMPACT) would (so stored digests stay comparable); out is left empty when
 * n is 0. Nothing can fail; out stays the caller's.
 */
void import_attrs_json(struct buf *out, const char *const *names, const char *const *values,
		       const size_t *lens, size_t n);

/* Normalises a locale ("pt_BR" -> "pt-BR"); false if it is not BCP 47-shaped. */
bool import_locale_normalize(char *locale);

#endif
