/* schedule.h — pure time: local times, RRULEs, durations, periods, what is due (RFC 5545). */
#ifndef CUTOFF_SCHEDULE_H
#define CUTOFF_SCHEDULE_H

/*
 * Everything here is a pure function of its arguments: no clock, no database,
 * no files beyond the system zoneinfo that libical reads. Stored times are UTC
 * Unix seconds (int64_t); campaign dates are wall-clock times in the campaign's
 * IANA time zone ("America/Los_Angeles"), converted with libical's builtin zones.
 *
 * Daylight-saving rules used throughout (RFC 5545 section 3.3.5):
 * - a local time that occurs twice (clocks fall back) means the FIRST instance,
 *   the one still on daylight time: 2003-10-26 01:30 America/Los_Angeles is
 *   08:30Z (PDT), not 09:30Z (PST);
 * - a local time that does not exist (clocks spring forward) is an error when a
 *   person typed it (schedule_parse_local); when a rule generates it, it is read
 *   with the UTC offset before the gap, i.e. moved forward by the gap's length:
 *   a daily 02:30 rule gives 03:30 PDT on 2003-04-06;
 * - days and weeks are calendar days in local time (23 or 25 hours long when the
 *   clocks change), hours, minutes and seconds are exact elapsed time.
 *
 * Zone data is libical's reading of /usr/share/zoneinfo. It matches the C
 * library's for America/Los_Angeles and Europe/Berlin from 1970 to 2100 (tested),
 * but libical 3.0.16 misses a few past transitions of other zones (Europe/London
 * in 1977, America/Sao_Paulo in 2014, Asia/Tehran in 2018).
 *
 * Errors: functions return 0 or a negative enum err_code and fill e (which may be
 * NULL). Text that comes from a person (a date, a rule, a duration, a zone name)
 * is wrong with ERR_DATA; a campaign loader that wants EX_CONFIG re-raises with
 * ERR_CONFIG and its file:line.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

/* Room for any string the schedule_format_* functions write. */
#define SCHEDULE_FORMAT_SIZE 64
/* At most this many instances come out of one expansion; more is an error (a runaway rule). */
#define SCHEDULE_MAX_OCCURRENCES 100000
/* The login-reminder cadence when a campaign names none: one period per local calendar day. */
#define SCHEDULE_DEFAULT_CADENCE "FREQ=DAILY"

/* ---- time zones and wall-clock times ---------------------------------------------------- */

/*
 * Checks that tzid names an IANA time zone libical knows ("Europe/Berlin", "UTC").
 * Returns 0, or ERR_DATA naming the zone when it is unknown or malformed.
 */
int schedule_tz_check(const char *tzid, struct err *e);

/*
 * Parses a wall-clock time in zone tzid and stores the UTC instant in *out.
 * Accepts "YYYY-MM-DD" (00:00 local), "YYYY-MM-DD HH:MM" and "YYYY-MM-DD HH:MM:SS",
 * with a space or 'T' between date and time; years 0001-9999.
 * An ambiguous time (clocks fall back) is its first, daylight-time instance.
 * Returns ERR_DATA for malformed text, impossible dates (2003-02-30, month 13,
 * 24:00, a leap second), an unknown zone, and a time that does not exist because
 * the clocks spring forward (the message says so). *out is unchanged on error.
 */
int schedule_parse_local(const char *text, const char *tzid, int64_t *out, struct err *e);

/*
 * Parses an absolute instant, as given to --now: "2003-08-18T16:00:00Z",
 * "2003-08-18T09:00:00-07:00" (or -0700), "2003-08-18 16:00" (no zone: UTC) and
 * "2003-08-18" (00:00 UTC). Seconds are optional; 'T' or a space separates.
 * Returns ERR_DATA for anything else; *out is unchanged on error.
 */
int schedule_parse_instant(const char *text, int64_t *out, struct err *e);

/*
 * Writes t as a wall-clock time in tzid for people: "2003-10-15 00:00 PDT"
 * (":SS" is added when the seconds are not zero; the zone abbreviation comes from
 * tzdata, or a numeric offset when tzdata has none).
 * Returns 0, or ERR_DATA (unknown zone, t outside years 0001-9999, buf shorter
 * than needed; SCHEDULE_FORMAT_SIZE is always enough), leaving buf empty.
 * Not for concurrent use from several threads: finding the abbreviation walks
 * libical's shared zone component (schedule_format_local_iso has no such limit).
 */
int schedule_format_local(int64_t t, const char *tzid, char *buf, size_t n);

/* Like schedule_format_local, in ISO 8601 / RFC 3339 form: "2003-10-15T00:00:00-07:00". */
int schedule_format_local_iso(int64_t t, const char *tzid, char *buf, size_t n);

/* Writes t in UTC, ISO 8601 / RFC 3339: "2003-08-18T16:00:00Z". Errors as schedule_format_local. */
int schedule_format_utc(int64_t t, char *buf, size_t n);

/* ---- durations ------------------------------------------------------------------------ */

/* An RFC 5545 / ISO 8601 duration, split into its nominal and its exact part. */
struct schedule_duration {
	int64_t days;    /* weeks x 7 + days: local calendar days */
	int64_t seconds; /* hours, minutes, seconds: exact elapsed seconds */
};

/*
 * Parses "P3D", "P1W", "PT12H", "P1DT12H", "PT1H30M", "PT90S" (designators in
 * either case, an optional leading '+'). Years and months (no fixed length),
 * fractions, negative and empty durations ("P", "PT"), and weeks mixed with
 * other units are ERR_DATA.
 */
int schedule_parse_duration(const char *text, struct schedule_duration *out, struct err *e);

/*
 * Stores t - d in *out: the days go back in local calendar days in tzid (the same
 * wall-clock time d->days days earlier, so "P3D" before a DST change is 71 or 73
 * hours), then the exact seconds are subtracted. A wall-clock result that falls
 * in a spring-forward gap moves forward by the gap (RFC 5545).
 * Returns ERR_DATA for an unknown zone or a result outside years 0001-9999.
 */
int schedule_subtract_duration(int64_t t, const struct schedule_duration *d, const char *tzid,
                               int64_t *out, struct err *e);

/*
 * The final notice's time: cutoff minus the duration text (see the two functions
 * above). Returns ERR_DATA for a bad duration or zone.
 */
int schedule_final_notice(int64_t cutoff, const char *duration, const char *tzid, int64_t *out,
                          struct err *e);

/* ---- recurrence rules ----------------------------------------------------------------- */

/*
 * Validates an RFC 5545 RRULE value ("FREQ=WEEKLY;BYDAY=MO", without "RRULE:")
 * for use as a campaign cadence or reminder e-mail rule. Rejects, with ERR_DATA
 * and a message naming the offending part:
 * - whatever libical's icalrecurrencetype_from_string rejects; a missing FREQ;
 *   repeated parts; COUNT with UNTIL; spaces or control characters; an UNTIL
 *   that is not in UTC (RFC 5545, since campaign rules start at a zoned time);
 * - BY parts RFC 5545 forbids for the FREQ (BYWEEKNO outside YEARLY, ...), and
 *   combinations libical 3.0 does not implement (BYWEEKNO with BYMONTHDAY, ...);
 * - values outside the Gregorian calendar (BYMONTH=13), RSCALE other than
 *   GREGORIAN, and BYMONTH/BYMONTHDAY/BYYEARDAY that no date satisfies
 *   (BYMONTH=2;BYMONTHDAY=30);
 * - FREQ=SECONDLY or MINUTELY: a cadence firing more than once an hour would
 *   mail people, or re-arm their login reminder, every few minutes;
 * - shapes libical 3.0.16 expands wrongly without saying so, because a
 *   campaign's mail must go out exactly when its rule says: BYWEEKNO, BYSETPOS
 *   outside MONTHLY/YEARLY or with several BYHOUR/BYMINUTE/BYSECOND values,
 *   INTERVAL with FREQ=HOURLY;BYHOUR or FREQ=MONTHLY;BYMONTH, and a negative
 *   BYMONTHDAY/BYYEARDAY with FREQ=DAILY or HOURLY. The message says what to
 *   write instead.
 */
int schedule_rrule_check(const char *rrule, struct err *e);

/*
 * Expands a campaign rule (schedule_rrule_check) whose DTSTART is the instant
 * dtstart seen as wall-clock time in tzid: a daily rule started at 09:00 local
 * stays at 09:00 local across DST (16:00Z in summer, 17:00Z in winter for
 * America/Los_Angeles). Stores the instances in [from, until), ascending and
 * without duplicates, in a new array *out (NULL when *n is 0) that the caller
 * frees with free(). As in libical, DTSTART itself is an instance only if it
 * matches the rule.
 * Returns ERR_DATA for a bad rule or zone, or when more than
 * SCHEDULE_MAX_OCCURRENCES instances fall in the window or the rule needs more
 * than a million steps to get there (a runaway rule); *out is NULL then.
 */
int schedule_occurrences(const char *rrule, int64_t dtstart, const char *tzid, int64_t from,
                         int64_t until, int64_t **out, size_t *n, struct err *e);

/* A date-time as iCalendar writes it (basic format), without time zone arithmetic. */
struct schedule_civil {
	int year, month, day;     /* 0001-9999, 1-12, 1-31 */
	int hour, minute, second; /* zero for a DATE */
	bool is_date;             /* a DATE value, "19970902" */
	bool is_utc;              /* written with a trailing 'Z' */
};

/*
 * The wall-clock date and time at t in tzid, as schedule_format_local_iso writes them, in
 * fields (is_date and is_utc false). Returns 0, or ERR_DATA (unknown zone, t outside years
 * 0001-9999). Safe from several threads, as schedule_format_local_iso.
 */
int schedule_local_civil(int64_t t, const char *tzid, struct schedule_civil *out);

/*
 * Parses "19970902" (DATE), "19970902T090000" (floating) or "19970902T090000Z".
 * Returns ERR_DATA for anything else or an impossible date or time.
 */
int schedule_civil_parse(const char *text, struct schedule_civil *out, struct err *e);

/* Writes c in the same basic format. Returns 0, or ERR_DATA if buf is too small or c invalid. */
int schedule_civil_format(const struct schedule_civil *c, char *buf, size_t n);

/*
 * Expands any rule libical accepts (SECONDLY and MINUTELY included, but not with
 * BYMONTH, BYMONTHDAY or BYYEARDAY, which would make libical search second by
 * second for decades) from a floating, UTC ('Z') or, with tzid, zoned DTSTART,
 * the way an iCalendar file gives it. Instances are wall-clock times like
 * DTSTART, as libical 3.0.16 computes them, with two corrections: BY lists are
 * read as sets (sorted, repeats dropped) and an instance libical returns twice
 * in a row is returned, and counted for COUNT, once. With start_at, instances
 * before it are left out (they still count for COUNT). Stores at most max
 * (1..SCHEDULE_MAX_OCCURRENCES) instances in a new array *out (NULL when *n is
 * 0) that the caller frees. A rule with no instance from this DTSTART gives
 * *n = 0. Returns ERR_DATA for a bad rule, DTSTART or zone, or a runaway
 * expansion. schedule_occurrences uses this same expansion before converting
 * to UTC.
 */
int schedule_expand(const char *rrule, const struct schedule_civil *dtstart, const char *tzid,
                    const struct schedule_civil *start_at, size_t max, struct schedule_civil **out,
                    size_t *n, struct err *e);

/* ---- login-reminder periods ----------------------------------------------------------- */

/*
 * The cadence rule, started at the reminder start (wall-clock time in the
 * campaign zone), cuts [start, cutoff) into periods: period 0 runs from start to
 * the first rule instance after start, period k from instance k to instance k+1,
 * and the last ends at the cutoff. The start always opens period 0, even when
 * the rule does not match it (DTSTART is the first instance in RFC 5545), so
 * no part of the window is without a period. With FREQ=DAILY and a start at
 * 00:00, a period is one local calendar day: 23 or 25 hours long on the days the
 * clocks change, never skipped, never doubled. Rules follow the wall clock, so
 * an HOURLY cadence has no period of its own for the repeated hour when the
 * clocks fall back (the 01:00 period lasts two hours) nor for the skipped one.
 */
struct schedule_period {
	bool inside;   /* t lies in [start, cutoff) */
	size_t index;  /* 0-based period number; 0 when outside */
	int64_t begin; /* the period is [begin, end); when outside, begin = end = */
	int64_t end;   /* start (t before it) or cutoff (t at or after it) */
};

/* The expanded period table of one campaign; immutable, so threads may share it. */
struct schedule_cadence;

/*
 * Builds the period table for rrule (NULL: SCHEDULE_DEFAULT_CADENCE) between
 * start and cutoff in tzid, once per campaign; *out is freed with
 * schedule_cadence_free. Returns ERR_DATA for a bad rule or zone, start not
 * before cutoff, or more than SCHEDULE_MAX_OCCURRENCES periods; *out is NULL then.
 */
int schedule_cadence_new(const char *rrule, int64_t start, int64_t cutoff, const char *tzid,
                         struct schedule_cadence **out, struct err *e);

/* Frees c; c may be NULL. */
void schedule_cadence_free(struct schedule_cadence *c);

/* Number of periods (at least 1). */
size_t schedule_cadence_count(const struct schedule_cadence *c);

/* The period containing t: a binary search, no allocation, no libical call; cannot fail. */
void schedule_cadence_period_at(const struct schedule_cadence *c, int64_t t,
                                struct schedule_period *out);

/* Period number index (inside = true). Returns ERR_NOTFOUND if index >= the count. */
int schedule_cadence_period(const struct schedule_cadence *c, size_t index,
                            struct schedule_period *out, struct err *e);

/*
 * One-shot schedule_cadence_new + schedule_cadence_period_at + free. It expands
 * the rule on every call: for logins, build a cadence once per campaign instead.
 * Errors as schedule_cadence_new.
 */
int schedule_period_at(const char *rrule, int64_t start, int64_t cutoff, const char *tzid,
                       int64_t t, struct schedule_period *out, struct err *e);

/* ---- what is due at time T ------------------------------------------------------------ */

/*
 * Whether a one-off event at `at` (the initial e-mail, the final notice) is due
 * in a run that covers (last_run, now]: last_run < at <= now. A run that was
 * missed makes it due at the next run, exactly once. Use INT64_MIN for "never ran".
 */
bool schedule_instant_due(int64_t at, int64_t last_run, int64_t now);

/*
 * The reminder e-mail instances of rrule (DTSTART = start, wall-clock in tzid)
 * that lie in [start, cutoff) and in (last_run, now], ascending, in a new array
 * the caller frees (NULL when *n is 0). An instance at the cutoff is never due:
 * access ends then. Errors as schedule_occurrences.
 */
int schedule_due_occurrences(const char *rrule, int64_t start, int64_t cutoff, const char *tzid,
                             int64_t last_run, int64_t now, int64_t **out, size_t *n,
                             struct err *e);

/*
 * What a daily run sends for one reminder e-mail rule. Several instances missed
 * since last_run (the timer did not run, the host was down) collapse into ONE
 * e-mail, for the latest of them: nobody gets three identical reminders at once,
 * and the ledger keys the delivery by that instance's time, so a re-run sends
 * nothing new.
 */
struct schedule_due {
	size_t missed;      /* instances in (last_run, now]; 0 means nothing is due */
	int64_t occurrence; /* the latest of them (the one to send); 0 when missed is 0 */
};

/* Fills *out from schedule_due_occurrences. Errors as schedule_occurrences. */
int schedule_due_reminder(const char *rrule, int64_t start, int64_t cutoff, const char *tzid,
                          int64_t last_run, int64_t now, struct schedule_due *out, struct err *e);

#endif
