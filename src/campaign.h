/* campaign.h — a campaign definition (campaigns/NAME.cfg): parsed, validated, and matched against recipients. */
#ifndef CUTOFF_CAMPAIGN_H
#define CUTOFF_CAMPAIGN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

/* The recipient fields a segment can match on; NULL or "" means unknown. */
struct recipient_fields {
	const char *client;
	const char *version;
	const char *platform;
	const char *os;
};

/* A list of accepted values; for os they are fnmatch(3) patterns ("9.*"). */
struct match_list {
	char **values;
	size_t n; /* 0 = any value */
};

/* One key and its value, e.g. a client id and its display name. */
struct string_pair {
	char *key;
	char *value;
};

struct segment {
	char *name;
	struct match_list clients;   /* exact, case-insensitive */
	struct match_list platforms; /* exact, case-insensitive */
	struct match_list os;        /* patterns, case-insensitive */
	char *version_min;           /* inclusive, or NULL */
	char *version_below;         /* exclusive, or NULL */
	char *template_name;         /* folder under the campaign's templates */
	char *send_text;             /* the segment's own first-send time as written, or NULL */
	int64_t send_at;             /* UTC: its own date, else the campaign's announce */
	char *target_version;        /* completion: at least this version; NULL = discontinued */
	char *upgrade_url;           /* overrides the campaign's, or NULL */
	int line;                    /* where it is defined */
};

struct campaign {
	char *name;         /* [a-z0-9][a-z0-9-]*, the key everywhere */
	char *title;
	char *from;         /* "Display Name <addr@domain>" as written */
	char *from_name;    /* parsed display name, may be "" */
	char *from_addr;    /* parsed address */
	char *reply_to;     /* or NULL */
	char *timezone;     /* IANA name */
	char *announce_text, *reminder_start_text, *cutoff_text;
	int64_t announce_at, reminder_start_at, cutoff_at; /* UTC */
	char *login_cadence;   /* RRULE, default FREQ=DAILY */
	char *reminder_emails; /* RRULE or NULL */
	char *final_notice;    /* ISO 8601 duration before the cutoff, or NULL */
	int64_t final_notice_at; /* UTC, 0 when none */
	char *upgrade_url;
	double rate;           /* messages a second for this campaign, 0 = the global rate */
	bool list_unsubscribe; /* add List-Unsubscribe headers */
	char *unsubscribe_url; /* base https URL for one-click unsubscribe, or NULL */
	char *templates_dir;   /* resolved folder of this campaign's templates */
	struct string_pair *client_names; /* client id -> name shown to people */
	size_t n_client_names;
	struct match_list attributes; /* extra CSV columns the templates use (import requires them) */
	struct segment *segments;
	size_t n_segments;
	char *source_path;     /* the file it was read from */
	char *source_text;     /* the whole file, as stored in the database */
};

/*
 * Reads and validates a campaign file. Every problem is reported at once,
 * each with file:line (ERR_CONFIG): unknown keys, wrong types, impossible or
 * out-of-order dates (announce <= reminder start < cutoff), an unknown time
 * zone, an RRULE libical rejects, a segment that can match nothing, a missing
 * template file. templates_root (the global templates_dir, may be NULL) is
 * where "templates" is looked up when the file does not name a folder; a
 * relative "templates" is taken from the campaign file's folder.
 * On success *out is owned by the caller: campaign_free.
 */
int campaign_load_file(struct campaign **out, const char *path, const char *templates_root,
		       struct err *e);

/*
 * Like campaign_load_file, for a definition kept in the database: origin names
 * it in messages and templates_dir is the folder resolved when it was added.
 */
int campaign_load_text(struct campaign **out, const char *text, const char *origin,
		       const char *templates_dir, struct err *e);

void campaign_free(struct campaign *c);

/*
 * The first segment that r matches, or NULL when r is not affected. A
 * recipient with no version never matches a segment that has a version range.
 */
const struct segment *campaign_match(const struct campaign *c, const struct recipient_fields *r);

/* The segment called name, or NULL. */
const struct segment *campaign_segment(const struct campaign *c, const char *name);

/* The display name of a client id ("msn-messenger" -> "MSN Messenger"), or the id itself. */
const char *campaign_client_name(const struct campaign *c, const char *client);

/* True if version completes segment s (at or above its target; never for discontinued). */
bool segment_completed_by(const struct segment *s, const char *version);

/*
 * Compares a stored campaign with a new definition of it once sending has
 * begun. Safe changes: title, reply-to, a later cutoff, rate, templates and
 * their folder, upgrade URLs, unsubscribe settings. Anything else (time zone,
 * announce, reminder start, an earlier cutoff, sender, segments' matching,
 * targets or send dates, cadences) is refused with ERR_REFUSED listing each
 * unsafe change.
 */
int campaign_check_update(const struct campaign *old, const struct campaign *new_c,
			  struct err *e);

/* Template files a segment needs: "subject", "text", "login" required, "html" optional. */
extern const char *const campaign_template_parts[];
extern const bool campaign_template_required[];

#endif
