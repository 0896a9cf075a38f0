/* diag.h — collects every problem found in one pass over a file, each with file:line. */
#ifndef CUTOFF_DIAG_H
#define CUTOFF_DIAG_H

#include <libconfig.h>

#include "err.h"
#include "util.h"

/*
 * Configuration and campaign files are checked in one pass that reports all
 * problems at once (style.md rule 6). A diag collects them as lines of
 * "file:line: message".
 */
struct diag_entry {
	char *file;
	int line;
	int seq; /* order of discovery, to keep ties stable */
	char *msg;
};

struct diag {
	struct buf text; /* the messages, one per line, by file and line (diag_to_err) */
	struct diag_entry *entries;
	int count;       /* how many problems */
	int code;        /* a code more specific than the caller's (e.g. ERR_NOPERM), or 0 */
};

void diag_init(struct diag *d);
void diag_free(struct diag *d);

/* Adds "file:line: message"; line 0 prints "file: message". */
void diag_add(struct diag *d, const char *file, int line, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* Adds a message located at a libconfig setting (its file and line). */
void diag_at(struct diag *d, const config_setting_t *s, const char *fallback_file,
	     const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Records that a problem needs a more specific code than the default (ERR_NOPERM). */
void diag_raise(struct diag *d, int code);

/*
 * If any problem was collected, moves them into e with code (or the code
 * given to diag_raise) and returns it
 * ("3 problems in FILE:\n..."); otherwise returns 0.
 */
int diag_to_err(struct diag *d, int code, struct err *e);

/* What a key of a libconfig group may hold; checked by diag_check_group. */
enum schema_type {
	SCHEMA_STRING,
	SCHEMA_INT,
	SCHEMA_NUMBER,        /* int or float */
	SCHEMA_BOOL,
	SCHEMA_GROUP,
	SCHEMA_GROUP_LIST,    /* a list (or array) of groups */
	SCHEMA_STRINGS,       /* a string or an array/list of strings */
	SCHEMA_STRING_MAP     /* a group whose every member is a string: { key = "value"; } */
};

struct schema_key {
	const char *name;
	enum schema_type type;
	bool required;
	double min, max;                  /* numbers: inclusive range (both 0 = unbounded) */
	const struct schema_key *children; /* groups: their keys, ending with {NULL} */
};

/*
 * Checks group against schema: unknown keys, missing required keys, wrong
 * types and numbers out of range, recursing into groups and lists of groups.
 * Every problem is added to d; nothing stops at the first. path names the
 * group in messages ("relays[1]"), or NULL for the top level.
 */
void diag_check_group(struct diag *d, const config_setting_t *group,
		      const struct schema_key *schema, const char *path,
		      const char *file);

/* Reads a libconfig file; a syntax error becomes one diag entry. Returns 0 or -1. */
int diag_read_config(struct diag *d, config_t *cfg, const char *path);

#endif
