/* schedule.c — pure time functions on libical: zones, RRULEs, durations, periods (RFC 5545). */
#include "schedule.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <libical/ical.h>

#include "util.h"

/* Instants in years 0001-9999, the range ISO 8601 four-digit years can write. */
#define TIME_MIN INT64_C(-62135596800) /* 0001-01-01T00:00:00Z */
#define TIME_MAX INT64_C(253402300799) /* 9999-12-31T23:59:59Z */
#define DAY 86400
/* Larger than any UTC offset plus any DST gap: how far to look for the offsets around a time. */
#define OFFSET_PROBE (2 * DAY)
/* libical stops expanding after this year (MAX_TIME_T_YEAR in icalrecur.c). */
#define LIBICAL_LAST_YEAR 2582
/* Instances one expansion may walk through, counting those before the window. */
#define EXPANSION_MAX_STEPS 1000000
#define RULE_MAX_LEN 1024
#define RULE_MAX_PARTS 32
/* Duration parts beyond these would leave the range of years anyway. */
#define DURATION_MAX_DAYS INT64_C(3700000)
#define DURATION_MAX_SECONDS (DURATION_MAX_DAYS * DAY)

/* ---- Gregorian calendar arithmetic ---------------------------------------------------- */

static bool is_leap(int64_t y)
{
	return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int days_in_month(int64_t y, int m)
{
	static const int days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};

	return m == 2 && is_leap(y) ? 29 : days[m - 1];
}

static int64_t floor_div(int64_t a, int64_t b)
{
	return a / b - (a % b != 0 && (a < 0) != (b < 0));
}

/* Days from 1970-01-01 to y-m-d, proleptic Gregorian (400-year eras of 146097 days). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
	int64_t era, yoe, doy, doe;

	y -= m <= 2;
	era = floor_div(y, 400);
	yoe = y - era * 400;
	doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

/* The inverse of days_from_civil. */
static void civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
	int64_t era, doe, yoe, doy, mp;

	z += 719468;
	era = floor_div(z, 146097);
	doe = z - era * 146097;
	yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	mp = (5 * doy + 2) / 153;
	*d = (int)(doy - (153 * mp + 2) / 5 + 1);
	*m = (int)(mp < 10 ? mp + 3 : mp - 9);
	*y = yoe + era * 400 + (*m <= 2);
}

/* Wall-clock fields as seconds since 1970-01-01 00:00 of the same wall clock ("local seconds"). */
static int64_t civil_to_seconds(const struct schedule_civil *c)
{
	return days_from_civil(c->year, c->month, c->day) * DAY + c->hour * 3600 + c->minute * 60 +
	       c->second;
}

static void civil_from_seconds(int64_t s, struct schedule_civil *c)
{
	int64_t days = floor_div(s, DAY), secs = s - days * DAY, y;

	memset(c, 0, sizeof *c);
	civil_from_days(days, &y, &c->month, &c->day);
	c->year = (int)y;
	c->hour = (int)(secs / 3600);
	c->minute = (int)(secs / 60 % 60);
	c->second = (int)(secs % 60);
}

static int civil_cmp(const struct schedule_civil *a, const struct schedule_civil *b)
{
	int64_t x = civil_to_seconds(a), y = civil_to_seconds(b);

	return (x > y) - (x < y);
}

static bool time_in_range(int64_t t)
{
	return t >= TIME_MIN && t <= TIME_MAX;
}

/* Checks the fields of c; what names the value in messages. */
static int civil_check(const struct schedule_civil *c, const char *what, struct err *e)
{
	if (c->year < 1 || c->year > 9999)
		return err_set(e, ERR_DATA, "%s: year %04d is out of range (0001-9999)", what,
		               c->year);
	if (c->month < 1 || c->month > 12)
		return err_set(e, ERR_DATA, "%s: month %02d does not exist (01-12)", what,
		               c->month);
	if (c->day < 1 || c->day > days_in_month(c->year, c->month))
		return err_set(e, ERR_DATA,
		               "%s: there is no day %02d in %04d-%02d, which has %d days", what,
		               c->day, c->year, c->month, days_in_month(c->year, c->month));
	if (c->hour < 0 || c->hour > 23)
		return err_set(e, ERR_DATA, "%s: hour %02d does not exist (00-23)%s", what, c->hour,
		               c->hour == 24 ? "; write 00:00 of the next day" : "");
	if (c->minute < 0 || c->minute > 59)
		return err_set(e, ERR_DATA, "%s: minute %02d does not exist (00-59)", what,
		               c->minute);
	if (c->second == 60)
		return err_set(e, ERR_DATA, "%s: second 60 (a leap second) is not supported", what);
	if (c->second < 0 || c->second > 59)
		return err_set(e, ERR_DATA, "%s: second %02d does not exist (00-59)", what,
		               c->second);
	return 0;
}

/* ---- time zones ----------------------------------------------------------------------- */

/* An IANA name: letters, digits, "_+-" and '/', no "..", no leading '/'. */
static bool tzid_well_formed(const char *tzid)
{
	size_t len = strlen(tzid);

	if (len == 0 || len > 64 || tzid[0] == '/' || strstr(tzid, "..") != NULL)
		return false;
	for (const char *p = tzid; *p != '\0'; p++) {
		if (!isalnum((unsigned char)*p) && strchr("/_+-", *p) == NULL)
			return false;
	}
	return true;
}

static icaltimezone *zone_lookup(const char *tzid, struct err *e)
{
	icaltimezone *z;

	if (tzid == NULL) {
		err_set(e, ERR_DATA, "no time zone given: name an IANA zone such as Europe/Berlin");
		return NULL;
	}
	if (!tzid_well_formed(tzid)) {
		err_set(e, ERR_DATA,
		        "\"%s\" is not a time zone name: expected an IANA name such as "
		        "America/Los_Angeles",
		        tzid);
		return NULL;
	}
	if (strcmp(tzid, "UTC") == 0)
		return icaltimezone_get_utc_timezone();
	z = icaltimezone_get_builtin_timezone(tzid);
	if (z == NULL)
		err_set(e, ERR_DATA,
		        "unknown time zone \"%s\": expected an IANA name such as "
		        "America/Los_Angeles (see /usr/share/zoneinfo)",
		        tzid);
	return z;
}

static struct icaltimetype civil_to_ical(const struct schedule_civil *c, const icaltimezone *z)
{
	struct icaltimetype t = icaltime_null_time();

	t.year = c->year;
	t.month = c->month;
	t.day = c->day;
	t.hour = c->is_date ? 0 : c->hour;
	t.minute = c->is_date ? 0 : c->minute;
	t.second = c->is_date ? 0 : c->second;
	t.is_date = c->is_date;
	t.zone = z;
	return t;
}

static void civil_from_ical(struct icaltimetype t, struct schedule_civil *c)
{
	c->year = t.year;
	c->month = t.month;
	c->day = t.day;
	c->hour = t.is_date ? 0 : t.hour;
	c->minute = t.is_date ? 0 : t.minute;
	c->second = t.is_date ? 0 : t.second;
	c->is_date = t.is_date != 0;
	c->is_utc = !t.is_date && icaltime_is_utc(t);
}

/* The UTC offset in seconds (east positive) in effect at instant t. */
static int zone_offset(icaltimezone *z, int64_t t)
{
	struct schedule_civil c;
	struct icaltimetype tt;
	int is_daylight = 0;

	civil_from_seconds(t, &c);
	tt = civil_to_ical(&c, icaltimezone_get_utc_timezone());
	return icaltimezone_get_utc_offset_of_utc_time(z, &tt, &is_daylight);
}

enum local_kind { LOCAL_UNIQUE, LOCAL_AMBIGUOUS, LOCAL_GAP };

/* How a wall-clock time maps to UTC, and the offsets before and after it. */
struct local_fit {
	enum local_kind kind;
	int64_t t; /* the instant RFC 5545 chooses: the first of two, or shifted past a gap */
	int before, after;
};

/*
 * Finds the instants whose wall clock reads `local`. Either offset around it may
 * be the right one; whichever reproduces itself at its instant is a solution.
 */
static void local_fit(icaltimezone *z, int64_t local, struct local_fit *f)
{
	int64_t tb, ta;
	bool vb, va;

	f->before = zone_offset(z, local - OFFSET_PROBE);
	f->after = zone_offset(z, local + OFFSET_PROBE);
	tb = local - f->before;
	ta = local - f->after;
	vb = zone_offset(z, tb) == f->before;
	va = zone_offset(z, ta) == f->after;
	if (vb && va && tb != ta) {
		f->kind = LOCAL_AMBIGUOUS;
		f->t = tb < ta ? tb : ta;
	} else if (vb || va) {
		f->kind = LOCAL_UNIQUE;
		f->t = vb ? tb : ta;
	} else {
		f->kind = LOCAL_GAP; /* read with the offset before the gap (RFC 5545 3.3.5) */
		f->t = tb;
	}
}

/* "+05:30" (sep ":") or "+0530"; seconds appended when the offset has them (old LMT). */
static void format_offset(int off, const char *sep, char *buf, size_t n)
{
	int a = off < 0 ? -off : off;

	if (a % 60 != 0)
		snprintf(buf, n, "%c%02d%s%02d%s%02d", off < 0 ? '-' : '+', a / 3600, sep,
		         a / 60 % 60, sep, a % 60);
	else
		snprintf(buf, n, "%c%02d%s%02d", off < 0 ? '-' : '+', a / 3600, sep, a / 60 % 60);
}

/* Reads one STANDARD/DAYLIGHT observance switching to offset off: its first onset and name. */
static bool observance_read(icalcomponent *obs, int off, int64_t *onset, const char **name)
{
	icalcomponent_kind kind = icalcomponent_isa(obs);
	icalproperty *to, *from, *tzname;
	struct icaltimetype start;
	struct schedule_civil c;

	if (kind != ICAL_XSTANDARD_COMPONENT && kind != ICAL_XDAYLIGHT_COMPONENT)
		return false;
	to = icalcomponent_get_first_property(obs, ICAL_TZOFFSETTO_PROPERTY);
	from = icalcomponent_get_first_property(obs, ICAL_TZOFFSETFROM_PROPERTY);
	tzname = icalcomponent_get_first_property(obs, ICAL_TZNAME_PROPERTY);
	if (to == NULL || from == NULL || tzname == NULL || icalproperty_get_tzoffsetto(to) != off)
		return false;
	start = icalcomponent_get_dtstart(obs);
	if (icaltime_is_null_time(start))
		return false;
	civil_from_ical(start, &c);
	*onset = civil_to_seconds(&c) - icalproperty_get_tzoffsetfrom(from);
	*name = icalproperty_get_tzname(tzname);
	return *name != NULL && **name != '\0';
}

/*
 * The tzdata abbreviation in effect at t: the name of the most recently begun
 * observance with that offset (libical's "STD/DST" pair is wrong for zones whose
 * names changed, and its daylight flag is unreliable far from today).
 */
static void zone_abbrev(icaltimezone *z, int64_t t, int off, char *buf, size_t n)
{
	icalcomponent *vtz =
	    z == icaltimezone_get_utc_timezone() ? NULL : icaltimezone_get_component(z);
	const char *best = NULL, *name;
	int64_t best_onset = INT64_MIN, onset;
	icalcompiter it;

	if (vtz != NULL) {
		for (it = icalcomponent_begin_component(vtz, ICAL_ANY_COMPONENT);
		     icalcompiter_deref(&it) != NULL; icalcompiter_next(&it)) {
			if (observance_read(icalcompiter_deref(&it), off, &onset, &name) &&
			    onset <= t && onset >= best_onset) {
				best = name;
				best_onset = onset;
			}
		}
	}
	if (best != NULL) {
		snprintf(buf, n, "%s", best);
	} else if (off == 0) {
		snprintf(buf, n, "UTC");
	} else {
		char o[16];

		format_offset(off, ":", o, sizeof o);
		snprintf(buf, n, "UTC%s", o);
	}
}

int schedule_tz_check(const char *tzid, struct err *e)
{
	return zone_lookup(tzid, e) != NULL ? 0 : ERR_DATA;
}

/* ---- reading and writing times -------------------------------------------------------- */

/* Reads exactly n ASCII digits; advances *p only on success. */
static bool scan_digits(const char **p, int n, int *out)
{
	int v = 0;

	for (int i = 0; i < n; i++) {
		if ((*p)[i] < '0' || (*p)[i] > '9')
			return false;
		v = v * 10 + ((*p)[i] - '0');
	}
	*p += n;
	*out = v;
	return true;
}

static bool scan_char(const char **p, char c)
{
	if (**p != c)
		return false;
	(*p)++;
	return true;
}

/* Reads "HH:MM[:SS]" into c. */
static bool scan_clock(const char **p, struct schedule_civil *c)
{
	if (!scan_digits(p, 2, &c->hour) || !scan_char(p, ':') || !scan_digits(p, 2, &c->minute))
		return false;
	if (scan_char(p, ':') && !scan_digits(p, 2, &c->second))
		return false;
	return true;
}

/* Reads "YYYY-MM-DD[( |T)HH:MM[:SS]]" from the start of text; *rest points after it. */
static int scan_iso(const char *text, struct schedule_civil *c, const char **rest, struct err *e)
{
	const char *p = text;

	memset(c, 0, sizeof *c);
	if (!scan_digits(&p, 4, &c->year) || !scan_char(&p, '-') ||
	    !scan_digits(&p, 2, &c->month) || !scan_char(&p, '-') || !scan_digits(&p, 2, &c->day))
		return err_set(e, ERR_DATA,
		               "\"%s\" is not a date: expected YYYY-MM-DD, optionally "
		               "followed by HH:MM or HH:MM:SS",
		               text);
	c->is_date = true;
	if ((*p == ' ' || *p == 'T' || *p == 't') && isdigit((unsigned char)p[1])) {
		p++;
		if (!scan_clock(&p, c))
			return err_set(e, ERR_DATA,
			               "\"%s\": expected HH:MM or HH:MM:SS after the date", text);
		c->is_date = false;
	}
	*rest = p;
	return civil_check(c, text, e);
}

int schedule_parse_local(const char *text, const char *tzid, int64_t *out, struct err *e)
{
	struct schedule_civil c;
	struct local_fit f;
	const char *rest;
	icaltimezone *z;
	char b[16], a[16];
	int rc;

	if (text == NULL)
		return err_set(e, ERR_DATA,
		               "no date given: expected YYYY-MM-DD or YYYY-MM-DD HH:MM");
	if ((rc = scan_iso(text, &c, &rest, e)) != 0)
		return rc;
	if (*rest != '\0')
		return err_set(e, ERR_DATA,
		               "\"%s\": unexpected \"%s\"; write a wall-clock time without "
		               "a zone or offset (the time zone %s applies)",
		               text, rest, tzid != NULL ? tzid : "of the campaign");
	if ((z = zone_lookup(tzid, e)) == NULL)
		return ERR_DATA;
	local_fit(z, civil_to_seconds(&c), &f);
	if (f.kind == LOCAL_GAP) {
		format_offset(f.before, ":", b, sizeof b);
		format_offset(f.after, ":", a, sizeof a);
		return err_set(
		    e, ERR_DATA,
		    "\"%s\" does not exist in %s: the clocks spring forward "
		    "there from UTC%s to UTC%s and skip it; choose a time outside the gap",
		    text, tzid, b, a);
	}
	if (!time_in_range(f.t))
		return err_set(e, ERR_DATA, "\"%s\" is out of range in %s", text, tzid);
	*out = f.t;
	return 0;
}

/* Reads "+HH:MM", "+HHMM" or the '-' forms at p, the whole rest of the text. */
static bool scan_offset(const char *p, int *off)
{
	int sign = *p == '-' ? -1 : 1, hh, mm;

	if (*p != '+' && *p != '-')
		return false;
	p++;
	if (!scan_digits(&p, 2, &hh))
		return false;
	scan_char(&p, ':');
	if (!scan_digits(&p, 2, &mm) || *p != '\0' || hh > 23 || mm > 59)
		return false;
	*off = sign * (hh * 3600 + mm * 60);
	return true;
}

int schedule_parse_instant(const char *text, int64_t *out, struct err *e)
{
	struct schedule_civil c;
	const char *rest;
	int64_t t;
	int off = 0, rc;

	if (text == NULL)
		return err_set(e, ERR_DATA, "no time given: expected e.g. 2003-08-18T16:00:00Z");
	if ((rc = scan_iso(text, &c, &rest, e)) != 0)
		return rc;
	if (*rest != '\0' && (c.is_date || !((strcmp(rest, "Z") == 0 || strcmp(rest, "z") == 0) ||
	                                     scan_offset(rest, &off))))
		return err_set(
		    e, ERR_DATA,
		    "\"%s\": unexpected \"%s\"; expected a UTC time such as "
		    "2003-08-18T16:00:00Z, an offset such as 2003-08-18T09:00:00-07:00, or "
		    "a date",
		    text, rest);
	t = civil_to_seconds(&c) - off;
	if (!time_in_range(t))
		return err_set(e, ERR_DATA, "\"%s\" is out of range (years 0001-9999)", text);
	*out = t;
	return 0;
}

static int format_fail(char *buf, size_t n)
{
	if (n > 0)
		buf[0] = '\0';
	return ERR_DATA;
}

static int format_done(int len, char *buf, size_t n)
{
	if (len < 0 || (size_t)len >= n)
		return format_fail(buf, n);
	return 0;
}

int schedule_format_utc(int64_t t, char *buf, size_t n)
{
	struct schedule_civil c;

	if (!time_in_range(t))
		return format_fail(buf, n);
	civil_from_seconds(t, &c);
	return format_done(snprintf(buf, n, "%04d-%02d-%02dT%02d:%02d:%02dZ", c.year, c.month,
	                            c.day, c.hour, c.minute, c.second),
	                   buf, n);
}

/* Looks up tzid and splits t into wall-clock fields and offset there. */
static icaltimezone *local_fields(int64_t t, const char *tzid, struct schedule_civil *c, int *off)
{
	icaltimezone *z = zone_lookup(tzid, NULL);

	if (z == NULL || !time_in_range(t))
		return NULL;
	*off = zone_offset(z, t);
	civil_from_seconds(t + *off, c);
	return z;
}

int schedule_format_local(int64_t t, const char *tzid, char *buf, size_t n)
{
	struct schedule_civil c;
	icaltimezone *z;
	char abbr[32], sec[8] = "";
	int off;

	if ((z = local_fields(t, tzid, &c, &off)) == NULL)
		return format_fail(buf, n);
	zone_abbrev(z, t, off, abbr, sizeof abbr);
	if (c.second != 0)
		snprintf(sec, sizeof sec, ":%02d", c.second);
	return format_done(snprintf(buf, n, "%04d-%02d-%02d %02d:%02d%s %s", c.year, c.month, c.day,
	                            c.hour, c.minute, sec, abbr),
	                   buf, n);
}

int schedule_local_civil(int64_t t, const char *tzid, struct schedule_civil *out)
{
	int off;

	memset(out, 0, sizeof *out);
	return local_fields(t, tzid, out, &off) != NULL ? 0 : ERR_DATA;
}

int schedule_format_local_iso(int64_t t, const char *tzid, char *buf, size_t n)
{
	struct schedule_civil c;
	char o[16];
	int off;

	if (local_fields(t, tzid, &c, &off) == NULL)
		return format_fail(buf, n);
	format_offset(off, ":", o, sizeof o);
	return format_done(snprintf(buf, n, "%04d-%02d-%02dT%02d:%02d:%02d%s", c.year, c.month,
	                            c.day, c.hour, c.minute, c.second, o),
	                   buf, n);
}

int schedule_civil_parse(const char *text, struct schedule_civil *out, struct err *e)
{
	struct schedule_civil c;
	const char *p = text;

	memset(&c, 0, sizeof c);
	if (text == NULL || !scan_digits(&p, 4, &c.year) || !scan_digits(&p, 2, &c.month) ||
	    !scan_digits(&p, 2, &c.day))
		goto bad;
	c.is_date = *p == '\0';
	if (!c.is_date) {
		if (!scan_char(&p, 'T') || !scan_digits(&p, 2, &c.hour) ||
		    !scan_digits(&p, 2, &c.minute) || !scan_digits(&p, 2, &c.second))
			goto bad;
		c.is_utc = scan_char(&p, 'Z');
		if (*p != '\0')
			goto bad;
	}
	if (civil_check(&c, text, e) != 0)
		return ERR_DATA;
	*out = c;
	return 0;
bad:
	return err_set(e, ERR_DATA,
	               "\"%s\" is not an iCalendar date or date-time: expected "
	               "YYYYMMDD, YYYYMMDDTHHMMSS or YYYYMMDDTHHMMSSZ",
	               text != NULL ? text : "");
}

int schedule_civil_format(const struct schedule_civil *c, char *buf, size_t n)
{
	if (civil_check(c, "date-time", NULL) != 0)
		return format_fail(buf, n);
	if (c->is_date)
		return format_done(snprintf(buf, n, "%04d%02d%02d", c->year, c->month, c->day), buf,
		                   n);
	return format_done(snprintf(buf, n, "%04d%02d%02dT%02d%02d%02d%s", c->year, c->month,
	                            c->day, c->hour, c->minute, c->second, c->is_utc ? "Z" : ""),
	                   buf, n);
}

/* ---- durations ------------------------------------------------------------------------ */

/* Units in the order ISO 8601 writes them; each may appear once. */
enum dur_unit { DUR_WEEK, DUR_DAY, DUR_HOUR, DUR_MINUTE, DUR_SECOND, DUR_NONE };

/* Which unit designator c means, in the date part or after 'T'. */
static int dur_unit_of(char c, bool in_time, const char *text, struct err *e)
{
	switch (toupper((unsigned char)c)) {
	case 'W': return in_time ? DUR_NONE : DUR_WEEK;
	case 'D': return in_time ? DUR_NONE : DUR_DAY;
	case 'H': return in_time ? DUR_HOUR : DUR_NONE;
	case 'S': return in_time ? DUR_SECOND : DUR_NONE;
	case 'M':
		if (in_time)
			return DUR_MINUTE;
		err_set(e, ERR_DATA,
		        "duration \"%s\": months have no fixed length; write days or "
		        "weeks (P30D, P4W), or PT..M for minutes",
		        text);
		return ERR_DATA;
	case 'Y':
		err_set(e, ERR_DATA,
		        "duration \"%s\": years have no fixed length; write days or weeks", text);
		return ERR_DATA;
	case '.':
	case ',':
		err_set(e, ERR_DATA,
		        "duration \"%s\": fractions are not supported; use a smaller "
		        "unit (PT90M, not PT1.5H)",
		        text);
		return ERR_DATA;
	default: return DUR_NONE;
	}
}

static void dur_add(struct schedule_duration *d, int unit, int64_t v)
{
	static const int64_t scale[] = {7, 1, 3600, 60, 1};

	if (unit <= DUR_DAY)
		d->days += v * scale[unit];
	else
		d->seconds += v * scale[unit];
}

/* Reads the components after 'P'; *seen is a bit mask of the units read. */
static int dur_components(const char *text, const char *p, struct schedule_duration *d,
                          unsigned *seen, struct err *e)
{
	bool in_time = false;
	int last = -1, unit, digits;
	int64_t v;

	for (; *p != '\0'; p++) {
		if (toupper((unsigned char)*p) == 'T' && !in_time) {
			in_time = true;
			if (p[1] == '\0')
				return err_set(e, ERR_DATA, "duration \"%s\": nothing after 'T'",
				               text);
			continue;
		}
		for (v = 0, digits = 0; isdigit((unsigned char)*p) && digits < 10; p++, digits++)
			v = v * 10 + (*p - '0');
		if (digits == 0 || digits > 9)
			return err_set(e, ERR_DATA,
			               "duration \"%s\": expected a number of at most 9 "
			               "digits before each unit (P3D, PT12H, P1W)",
			               text);
		if ((unit = dur_unit_of(*p, in_time, text, e)) < 0)
			return unit;
		if (unit == DUR_NONE || unit <= last)
			return err_set(e, ERR_DATA,
			               "duration \"%s\": expected units in the order "
			               "W or D, then T and H, M, S, each at most once",
			               text);
		dur_add(d, unit, v);
		*seen |= 1u << unit;
		last = unit;
	}
	return 0;
}

int schedule_parse_duration(const char *text, struct schedule_duration *out, struct err *e)
{
	struct schedule_duration d = {0, 0};
	const char *p = text;
	unsigned seen = 0;
	int rc;

	if (text == NULL || *text == '\0')
		return err_set(e, ERR_DATA, "empty duration: write e.g. P3D, PT12H or P1W");
	if (*p == '+')
		p++;
	else if (*p == '-')
		return err_set(e, ERR_DATA,
		               "duration \"%s\" is negative; write it without the sign "
		               "(it is counted back from the cutoff)",
		               text);
	if (toupper((unsigned char)*p) != 'P')
		return err_set(e, ERR_DATA,
		               "\"%s\" is not an ISO 8601 duration: expected e.g. P3D, "
		               "PT12H or P1W",
		               text);
	if ((rc = dur_components(text, p + 1, &d, &seen, e)) != 0)
		return rc;
	if (seen == 0)
		return err_set(e, ERR_DATA,
		               "duration \"%s\" has no length: write e.g. P3D or PT12H", text);
	if ((seen & (1u << DUR_WEEK)) != 0 && seen != 1u << DUR_WEEK)
		return err_set(e, ERR_DATA,
		               "duration \"%s\": weeks cannot be mixed with other units "
		               "(RFC 5545); write days instead (P9D)",
		               text);
	*out = d;
	return 0;
}

int schedule_subtract_duration(int64_t t, const struct schedule_duration *d, const char *tzid,
                               int64_t *out, struct err *e)
{
	struct local_fit f;
	icaltimezone *z;
	int64_t r = t;

	if ((z = zone_lookup(tzid, e)) == NULL)
		return ERR_DATA;
	if (!time_in_range(t) || d->days < 0 || d->days > DURATION_MAX_DAYS || d->seconds < 0 ||
	    d->seconds > DURATION_MAX_SECONDS)
		return err_set(e, ERR_DATA, "time or duration out of range (years 0001-9999)");
	if (d->days != 0) {
		/* the same wall-clock time, d->days calendar days earlier */
		r = t + zone_offset(z, t) - d->days * DAY;
		if (!time_in_range(r))
			return err_set(e, ERR_DATA, "the duration reaches before year 0001");
		local_fit(z, r, &f);
		r = f.t;
	}
	r -= d->seconds;
	if (!time_in_range(r))
		return err_set(e, ERR_DATA, "the duration reaches before year 0001");
	*out = r;
	return 0;
}

int schedule_final_notice(int64_t cutoff, const char *duration, const char *tzid, int64_t *out,
                          struct err *e)
{
	struct schedule_duration d;
	int rc;

	if ((rc = schedule_parse_duration(duration, &d, e)) != 0)
		return rc;
	return schedule_subtract_duration(cutoff, &d, tzid, out, e);
}

/* ---- recurrence rules ----------------------------------------------------------------- */

static bool by_set(const short *a)
{
	return a[0] != ICAL_RECURRENCE_ARRAY_MAX;
}

static bool by_has(const short *a, size_t size, int v)
{
	for (size_t i = 0; i < size && a[i] != ICAL_RECURRENCE_ARRAY_MAX; i++) {
		if (a[i] == v)
			return true;
	}
	return false;
}

/* Whether every element of a lies in [-max, max] (negative_ok) or in [1, max]; libical refuses 0.
 */
static bool by_in_range(const short *a, size_t size, int max, bool negative_ok)
{
	for (size_t i = 0; i < size && a[i] != ICAL_RECURRENCE_ARRAY_MAX; i++) {
		if (a[i] > max || a[i] < (negative_ok ? -max : 1))
			return false;
	}
	return true;
}

/* Checks that rrule reads as NAME=VALUE parts separated by ';', each name once. */
static int rule_prescan(const char *rrule, struct err *e)
{
	const char *names[RULE_MAX_PARTS], *p, *end, *eq;
	size_t lens[RULE_MAX_PARTS], nparts = 0, len;

	for (p = rrule; *p != '\0'; p = *end != '\0' ? end + 1 : end) {
		end = p + strcspn(p, ";");
		len = (size_t)(end - p);
		if (len == 0 && end[0] == ';' && end[1] == '\0' && nparts > 0)
			break; /* one trailing ';' is tolerated, as libical does */
		eq = memchr(p, '=', len);
		if (eq == NULL || eq == p || eq == end - 1)
			return err_set(e, ERR_DATA, "RRULE \"%s\": part \"%.*s\" is not NAME=VALUE",
			               rrule, (int)len, p);
		if (nparts == RULE_MAX_PARTS)
			return err_set(e, ERR_DATA, "RRULE \"%s\" has more than %d parts", rrule,
			               RULE_MAX_PARTS);
		names[nparts] = p;
		lens[nparts] = (size_t)(eq - p);
		for (size_t i = 0; i < nparts; i++) {
			if (lens[i] == lens[nparts] && strncasecmp(names[i], p, lens[i]) == 0)
				return err_set(e, ERR_DATA, "RRULE \"%s\": %.*s appears twice",
				               rrule, (int)lens[i], p);
		}
		nparts++;
	}
	return 0;
}

/* True if rrule has a part called name. */
static bool rule_has_part(const char *rrule, const char *name)
{
	size_t n = strlen(name);

	for (const char *p = rrule; p != NULL;
	     p = strchr(p, ';') != NULL ? strchr(p, ';') + 1 : NULL) {
		if (strncasecmp(p, name, n) == 0 && p[n] == '=')
			return true;
	}
	return false;
}

/* libical rejected rrule: find the part it objects to, by parsing each one alone. */
static int rule_blame(const char *rrule, struct err *e)
{
	struct icalrecurrencetype r;
	char one[RULE_MAX_LEN + 32];
	const char *p, *end;
	int len;

	for (p = rrule; *p != '\0'; p = *end != '\0' ? end + 1 : end) {
		end = p + strcspn(p, ";");
		len = (int)(end - p);
		if (len > 5 && strncasecmp(p, "FREQ=", 5) == 0) {
			snprintf(one, sizeof one, "%.*s", len - 5, p + 5);
			if (icalrecur_string_to_freq(one) == ICAL_NO_RECURRENCE)
				return err_set(
				    e, ERR_DATA,
				    "RRULE \"%s\": FREQ=%s is not a frequency (SECONDLY, "
				    "MINUTELY, HOURLY, DAILY, WEEKLY, MONTHLY or YEARLY)",
				    rrule, one);
			continue;
		}
		snprintf(one, sizeof one, "FREQ=YEARLY;%.*s", len, p);
		r = icalrecurrencetype_from_string(one);
		free(r.rscale);
		if (len > 0 && r.freq == ICAL_NO_RECURRENCE)
			return err_set(e, ERR_DATA,
			               "RRULE \"%s\": libical rejects the part \"%.*s\" (check "
			               "its name, its values and their ranges)",
			               rrule, len, p);
	}
	if (!rule_has_part(rrule, "FREQ"))
		return err_set(e, ERR_DATA,
		               "RRULE \"%s\" has no FREQ part (RFC 5545 requires one): "
		               "write e.g. FREQ=DAILY",
		               rrule);
	return err_set(e, ERR_DATA, "RRULE \"%s\": libical rejects it", rrule);
}

static int rule_from_libical(const char *rrule, struct icalrecurrencetype *r, struct err *e)
{
	if (rule_has_part(rrule, "COUNT") && rule_has_part(rrule, "UNTIL"))
		return err_set(e, ERR_DATA,
		               "RRULE \"%s\": COUNT and UNTIL exclude each other "
		               "(RFC 5545 3.3.10); keep one",
		               rrule);
	icalerror_clear_errno();
	*r = icalrecurrencetype_from_string(rrule);
	if (r->freq == ICAL_NO_RECURRENCE)
		return rule_blame(rrule, e);
	if (r->rscale != NULL) { /* libical 3.0.16 strdup()s it; Gregorian is the default */
		bool gregorian = strcasecmp(r->rscale, "GREGORIAN") == 0;

		free(r->rscale);
		r->rscale = NULL;
		if (!gregorian)
			return err_set(e, ERR_DATA,
			               "RRULE \"%s\": only RSCALE=GREGORIAN is supported; "
			               "cutoff expands Gregorian rules only",
			               rrule);
	}
	return 0;
}

/* The BY parts RFC 5545 3.3.10 (and libical) forbid for a frequency. */
static int rule_check_combination(const struct icalrecurrencetype *r, const char *rrule,
                                  struct err *e)
{
	const char *freq = icalrecur_freq_to_string(r->freq);
	bool no_yearday = r->freq >= ICAL_DAILY_RECURRENCE && r->freq <= ICAL_MONTHLY_RECURRENCE;

	if (by_set(r->by_week_no) && r->freq != ICAL_YEARLY_RECURRENCE)
		return err_set(e, ERR_DATA,
		               "RRULE \"%s\": BYWEEKNO is only allowed with FREQ=YEARLY "
		               "(RFC 5545 3.3.10)",
		               rrule);
	if (by_set(r->by_year_day) && no_yearday)
		return err_set(e, ERR_DATA,
		               "RRULE \"%s\": BYYEARDAY is not allowed with FREQ=%s "
		               "(RFC 5545 3.3.10)",
		               rrule, freq);
	if (by_set(r->by_month_day) && r->freq == ICAL_WEEKLY_RECURRENCE)
		return err_set(e, ERR_DATA,
		               "RRULE \"%s\": BYMONTHDAY is not allowed with FREQ=WEEKLY "
		               "(RFC 5545 3.3.10)",
		               rrule);
	if (r->freq == ICAL_YEARLY_RECURRENCE && by_set(r->by_year_day) &&
	    (by_set(r->by_week_no) || by_set(r->by_month) || by_set(r->by_month_day)))
		return err_set(e, ERR_DATA,
		               "RRULE \"%s\": libical cannot expand BYYEARDAY together "
		               "with BYWEEKNO, BYMONTH or BYMONTHDAY",
		               rrule);
	if (r->freq == ICAL_YEARLY_RECURRENCE && by_set(r->by_week_no) &&
	    (by_set(r->by_month_day) || (by_set(r->by_month) && !by_set(r->by_day))))
		return err_set(e, ERR_DATA,
		               "RRULE \"%s\": libical cannot expand BYWEEKNO together "
		               "with BYMONTHDAY, or with BYMONTH but no BYDAY",
		               rrule);
	for (size_t i = 0; i < ICAL_BY_DAY_SIZE && r->by_day[i] != ICAL_RECURRENCE_ARRAY_MAX; i++) {
		if (icalrecurrencetype_day_position(r->by_day[i]) != 0 &&
		    r->freq != ICAL_MONTHLY_RECURRENCE && r->freq != ICAL_YEARLY_RECURRENCE)
			return err_set(e, ERR_DATA,
			               "RRULE \"%s\": a BYDAY with a position (like 1MO) "
			               "needs FREQ=MONTHLY or FREQ=YEARLY (RFC 5545 3.3.10)",
			               rrule);
	}
	return 0;
}

/* Values the Gregorian calendar cannot have, which libical only refuses later, if at all. */
static int rule_check_ranges(const struct icalrecurrencetype *r, const char *rrule, struct err *e)
{
	for (size_t i = 0; i < ICAL_BY_DAY_SIZE && r->by_day[i] != ICAL_RECURRENCE_ARRAY_MAX; i++) {
		int pos = icalrecurrencetype_day_position(r->by_day[i]);

		if (pos < -53 || pos > 53)
			return err_set(e, ERR_DATA,
			               "RRULE \"%s\": BYDAY position %d is out of range "
			               "(-53 to 53)",
			               rrule, pos);
	}
	if (!by_in_range(r->by_month, ICAL_BY_MONTH_SIZE, 12, false))
		return err_set(e, ERR_DATA, "RRULE \"%s\": BYMONTH takes 1 to 12", rrule);
	if (!by_in_range(r->by_year_day, ICAL_BY_YEARDAY_SIZE, 366, true) ||
	    !by_in_range(r->by_set_pos, ICAL_BY_SETPOS_SIZE, 366, true))
		return err_set(e, ERR_DATA,
		               "RRULE \"%s\": BYYEARDAY and BYSETPOS take 1 to 366 or "
		               "-366 to -1",
		               rrule);
	if (!by_in_range(r->by_week_no, ICAL_BY_WEEKNO_SIZE, 53, true))
		return err_set(e, ERR_DATA, "RRULE \"%s\": BYWEEKNO takes 1 to 53 or -53 to -1",
		               rrule);
	return 0;
}

/*
 * Whether some day of a common or a leap year satisfies BYMONTH, BYMONTHDAY and
 * (for sub-daily rules, where it is a filter) BYYEARDAY together. A rule that
 * fails this would make libical search day by day, or hour by hour, for centuries.
 */
static bool rule_date_possible(const struct icalrecurrencetype *r)
{
	bool yd = by_set(r->by_year_day) && r->freq < ICAL_DAILY_RECURRENCE;

	if (!by_set(r->by_month_day) && !yd)
		return true;
	for (int y = 2003; y <= 2004; y++) {
		int doy = 0, diy = is_leap(y) ? 366 : 365;

		for (int m = 1; m <= 12; m++) {
			int dim = days_in_month(y, m);

			for (int d = 1; d <= dim; d++) {
				doy++;
				if ((by_set(r->by_month) &&
				     !by_has(r->by_month, ICAL_BY_MONTH_SIZE, m)) ||
				    (by_set(r->by_month_day) &&
				     !by_has(r->by_month_day, ICAL_BY_MONTHDAY_SIZE, d) &&
				     !by_has(r->by_month_day, ICAL_BY_MONTHDAY_SIZE,
				             d - dim - 1)) ||
				    (yd && !by_has(r->by_year_day, ICAL_BY_YEARDAY_SIZE, doy) &&
				     !by_has(r->by_year_day, ICAL_BY_YEARDAY_SIZE, doy - diy - 1)))
					continue;
				return true;
			}
		}
	}
	return false;
}

static size_t by_count(const short *a, size_t size)
{
	size_t n = 0;

	while (n < size && a[n] != ICAL_RECURRENCE_ARRAY_MAX)
		n++;
	return n;
}

static bool by_negative(const short *a, size_t size)
{
	for (size_t i = 0; i < size && a[i] != ICAL_RECURRENCE_ARRAY_MAX; i++) {
		if (a[i] < 0)
			return true;
	}
	return false;
}

/*
 * A BY list is a set (RFC 5545), but libical 3.0.16 walks BYSECOND, BYMINUTE,
 * BYHOUR and BYMONTH in the order written and repeats an instance for a repeated
 * value: sort those lists and drop repeats from all of them.
 */
static void by_normalize(short *a, size_t size, bool sort)
{
	size_t n = by_count(a, size), k = 0;

	for (size_t i = 1; sort && i < n; i++) {
		short v = a[i];
		size_t j = i;

		for (; j > 0 && a[j - 1] > v; j--)
			a[j] = a[j - 1];
		a[j] = v;
	}
	for (size_t i = 0; i < n; i++) {
		bool seen = false;

		for (size_t j = 0; j < k && !seen; j++)
			seen = a[j] == a[i];
		if (!seen)
			a[k++] = a[i];
	}
	if (k < size)
		a[k] = ICAL_RECURRENCE_ARRAY_MAX;
}

static void rule_normalize(struct icalrecurrencetype *r)
{
	by_normalize(r->by_second, ICAL_BY_SECOND_SIZE, true);
	by_normalize(r->by_minute, ICAL_BY_MINUTE_SIZE, true);
	by_normalize(r->by_hour, ICAL_BY_HOUR_SIZE, true);
	by_normalize(r->by_month, ICAL_BY_MONTH_SIZE, true);
	by_normalize(r->by_day, ICAL_BY_DAY_SIZE, false); /* libical orders it by WKST */
	by_normalize(r->by_month_day, ICAL_BY_MONTHDAY_SIZE, false);
	by_normalize(r->by_year_day, ICAL_BY_YEARDAY_SIZE, false);
	by_normalize(r->by_week_no, ICAL_BY_WEEKNO_SIZE, false);
	by_normalize(r->by_set_pos, ICAL_BY_SETPOS_SIZE, false);
}

/*
 * Rule shapes libical 3.0.16 expands wrongly without a word (each one shows in
 * the libical and ical.js vectors; see tests/unit/test_rrule_vectors.c).
 * A campaign's mail must go out when its rule says, so these are refused.
 */
static int rule_check_campaign_shape(const struct icalrecurrencetype *r, const char *rrule,
                                     struct err *e)
{
	const char *freq = icalrecur_freq_to_string(r->freq);

	if (!icaltime_is_null_time(r->until) && !icaltime_is_utc(r->until))
		return err_set(
		    e, ERR_DATA,
		    "RRULE \"%s\": write UNTIL in UTC, such as "
		    "UNTIL=20031015T070000Z (RFC 5545: the rule starts at a time in a zone)",
		    rrule);
	if (by_set(r->by_week_no))
		return err_set(
		    e, ERR_DATA,
		    "RRULE \"%s\": BYWEEKNO is not supported in campaign rules "
		    "(libical 3.0 misplaces week 1 and week 53); use BYMONTH with BYDAY or "
		    "BYMONTHDAY",
		    rrule);
	if (by_set(r->by_set_pos) &&
	    (r->freq < ICAL_MONTHLY_RECURRENCE || by_count(r->by_hour, ICAL_BY_HOUR_SIZE) > 1 ||
	     by_count(r->by_minute, ICAL_BY_MINUTE_SIZE) > 1 ||
	     by_count(r->by_second, ICAL_BY_SECOND_SIZE) > 1))
		return err_set(
		    e, ERR_DATA,
		    "RRULE \"%s\": BYSETPOS needs FREQ=MONTHLY or YEARLY and at "
		    "most one BYHOUR, BYMINUTE and BYSECOND value (libical 3.0 applies it to "
		    "whole days only)",
		    rrule);
	if (r->interval > 1 && ((r->freq == ICAL_HOURLY_RECURRENCE && by_set(r->by_hour)) ||
	                        (r->freq == ICAL_MONTHLY_RECURRENCE && by_set(r->by_month))))
		return err_set(e, ERR_DATA,
		               "RRULE \"%s\": libical 3.0 ignores INTERVAL when FREQ=%s "
		               "has %s; drop one of them",
		               rrule, freq,
		               r->freq == ICAL_HOURLY_RECURRENCE ? "BYHOUR" : "BYMONTH");
	if (r->freq <= ICAL_DAILY_RECURRENCE &&
	    (by_negative(r->by_month_day, ICAL_BY_MONTHDAY_SIZE) ||
	     by_negative(r->by_year_day, ICAL_BY_YEARDAY_SIZE)))
		return err_set(
		    e, ERR_DATA,
		    "RRULE \"%s\": libical 3.0 ignores a negative BYMONTHDAY "
		    "or BYYEARDAY with FREQ=%s; write FREQ=MONTHLY;BYMONTHDAY=-1 (or YEARLY) "
		    "instead",
		    rrule, freq);
	return 0;
}

/* Frequency limits: campaigns need HOURLY or slower; any rule needs to terminate quickly. */
static int rule_check_frequency(const struct icalrecurrencetype *r, const char *rrule,
                                bool campaign, struct err *e)
{
	const char *freq = icalrecur_freq_to_string(r->freq);

	if (campaign && r->freq < ICAL_HOURLY_RECURRENCE)
		return err_set(
		    e, ERR_DATA,
		    "RRULE \"%s\": FREQ=%s is too frequent for a campaign: "
		    "reminder e-mails and login-reminder periods must be HOURLY or slower, "
		    "or people would be mailed (or re-reminded) every few minutes",
		    rrule, freq);
	if (r->freq < ICAL_HOURLY_RECURRENCE &&
	    (by_set(r->by_month) || by_set(r->by_month_day) || by_set(r->by_year_day)))
		return err_set(e, ERR_DATA,
		               "RRULE \"%s\": FREQ=%s with BYMONTH, BYMONTHDAY or "
		               "BYYEARDAY is not supported (libical would search %s by %s)",
		               rrule, freq,
		               r->freq == ICAL_SECONDLY_RECURRENCE ? "second" : "minute",
		               r->freq == ICAL_SECONDLY_RECURRENCE ? "second" : "minute");
	if (!rule_date_possible(r))
		return err_set(e, ERR_DATA,
		               "RRULE \"%s\" matches no date: no month has the days its "
		               "BYMONTH, BYMONTHDAY and BYYEARDAY ask for",
		               rrule);
	return 0;
}

/* Parses and checks rrule; campaign adds the campaign frequency limit. */
static int rule_parse(const char *rrule, bool campaign, struct icalrecurrencetype *r, struct err *e)
{
	int rc;

	if (rrule == NULL || *rrule == '\0')
		return err_set(e, ERR_DATA,
		               "empty RRULE: write a rule such as FREQ=DAILY or "
		               "FREQ=WEEKLY;BYDAY=MO");
	if (strlen(rrule) > RULE_MAX_LEN)
		return err_set(e, ERR_DATA, "RRULE is longer than %d characters", RULE_MAX_LEN);
	if (strncasecmp(rrule, "RRULE:", 6) == 0)
		return err_set(e, ERR_DATA,
		               "RRULE \"%s\": write the value without the \"RRULE:\" "
		               "prefix",
		               rrule);
	for (const char *p = rrule; *p != '\0'; p++) {
		if (*p <= ' ' || *p >= 0x7f)
			return err_set(e, ERR_DATA,
			               "RRULE \"%s\": unexpected space, control or non-ASCII "
			               "character at position %zu",
			               rrule, (size_t)(p - rrule) + 1);
	}
	if ((rc = rule_prescan(rrule, e)) != 0 || (rc = rule_from_libical(rrule, r, e)) != 0 ||
	    (rc = rule_check_combination(r, rrule, e)) != 0 ||
	    (rc = rule_check_ranges(r, rrule, e)) != 0 ||
	    (rc = rule_check_frequency(r, rrule, campaign, e)) != 0 ||
	    (campaign && (rc = rule_check_campaign_shape(r, rrule, e)) != 0))
		return rc;
	rule_normalize(r);
	return 0;
}

int schedule_rrule_check(const char *rrule, struct err *e)
{
	struct icalrecurrencetype r;

	return rule_parse(rrule, true, &r, e);
}

/* ---- expansion ------------------------------------------------------------------------ */

static int64_t gcd(int64_t a, int64_t b)
{
	while (b != 0) {
		int64_t r = a % b;

		a = b;
		b = r;
	}
	return a;
}

/*
 * Whether a SECONDLY rule without BYSECOND (or MINUTELY without BYMINUTE) can
 * ever reach the minutes and hours its BYMINUTE/BYHOUR allow: libical steps
 * INTERVAL units from DTSTART, so the times of day it visits repeat with period
 * gcd(INTERVAL, one day). With BYSECOND (BYMINUTE) libical walks the list and
 * ignores INTERVAL, so every minute (hour) is reached.
 */
static bool rule_time_possible(const struct icalrecurrencetype *r, struct icaltimetype dtstart)
{
	int64_t unit, step, s0;

	if (r->freq == ICAL_SECONDLY_RECURRENCE && !by_set(r->by_second))
		unit = 1;
	else if (r->freq == ICAL_MINUTELY_RECURRENCE && !by_set(r->by_minute))
		unit = 60;
	else
		return true;
	step = gcd(r->interval * unit, DAY);
	s0 = dtstart.hour * 3600 + dtstart.minute * 60 + (unit == 1 ? dtstart.second : 0);
	for (int64_t s = s0 % step; s < DAY; s += step) {
		if ((!by_set(r->by_hour) ||
		     by_has(r->by_hour, ICAL_BY_HOUR_SIZE, (int)(s / 3600))) &&
		    (unit == 60 || !by_set(r->by_minute) ||
		     by_has(r->by_minute, ICAL_BY_MINUTE_SIZE, (int)(s / 60 % 60))))
			return true;
	}
	return false;
}

/*
 * One walk through a rule's instances, bounded in steps.
 * libical iterates the wall clock; it is given DTSTART floating even when the
 * rule belongs to a zone, because with a zone libical 3.0.16 moves the instances
 * that follow a spring-forward gap by an hour (a daily 02:30 becomes 03:30 for
 * two days). The zone is applied here instead, and so is an UNTIL in UTC, which
 * libical would otherwise compare with floating times as if they were UTC.
 * COUNT is counted here too: libical can return an instance twice in a row
 * (DTSTART inside a BYSECOND walk, a DATE with BYMINUTE) and would count both.
 */
struct expansion {
	icalrecur_iterator *it; /* NULL: no (more) instances */
	size_t steps;
	int count;          /* the rule's COUNT; 0: none */
	int produced;       /* distinct instances returned so far */
	icaltimezone *zone; /* the wall clock's zone, when libical iterates it floating */
	bool has_until;     /* an UNTIL in UTC, checked here */
	int64_t until;
	struct icaltimetype last;
};

/* Takes COUNT, and UNTIL when it is an instant in a zoned rule, away from libical. */
static void expansion_take_limits(struct expansion *x, struct icalrecurrencetype *r)
{
	struct schedule_civil c;

	x->count = r->count;
	r->count = 0;
	if (x->zone != NULL && !icaltime_is_null_time(r->until) && icaltime_is_utc(r->until)) {
		civil_from_ical(r->until, &c);
		x->has_until = true;
		x->until = civil_to_seconds(&c);
		r->until = icaltime_null_time();
	}
}

static int expansion_open(struct expansion *x, const char *rrule, bool campaign,
                          const struct schedule_civil *dtstart, icaltimezone *zone, struct err *e)
{
	icaltimezone *utc = icaltimezone_get_utc_timezone();
	struct icaltimetype start = civil_to_ical(dtstart, zone == utc ? utc : NULL);
	struct icalrecurrencetype r;
	int rc;

	memset(x, 0, sizeof *x);
	x->zone = zone == utc ? NULL : zone;
	if ((rc = rule_parse(rrule, campaign, &r, e)) != 0)
		return rc;
	expansion_take_limits(x, &r);
	if (start.year > LIBICAL_LAST_YEAR)
		return err_set(e, ERR_DATA,
		               "DTSTART year %d is after %d, the last year libical expands",
		               start.year, LIBICAL_LAST_YEAR);
	if (!rule_time_possible(&r, start))
		return 0; /* no instance, and libical would search until year 2582 to find that out
		           */
	icalerror_clear_errno();
	x->it = icalrecur_iterator_new(r, start);
	/*
	 * Every malformed rule was refused above, so libical refusing now means it
	 * found no first instance (FREQ=MONTHLY;INTERVAL=12;BYMONTHDAY=31 from a
	 * February), except for these:
	 */
	if (x->it == NULL && icalerrno == ICAL_NEWFAILED_ERROR)
		return err_set(e, ERR_NOMEM, "out of memory expanding RRULE \"%s\"", rrule);
	if (x->it == NULL && icalerrno == ICAL_UNIMPLEMENTED_ERROR)
		return err_set(e, ERR_DATA, "RRULE \"%s\": libical cannot expand it", rrule);
	return 0;
}

static bool same_wall_time(struct icaltimetype a, struct icaltimetype b)
{
	return a.year == b.year && a.month == b.month && a.day == b.day && a.hour == b.hour &&
	       a.minute == b.minute && a.second == b.second && a.is_date == b.is_date;
}

/* Whether wall-clock instance t (in x->zone) lies after a UTC UNTIL. */
static bool past_until(const struct expansion *x, struct icaltimetype t)
{
	struct schedule_civil c;
	struct local_fit f;

	if (!x->has_until)
		return false;
	civil_from_ical(t, &c);
	local_fit(x->zone, civil_to_seconds(&c), &f);
	return f.t > x->until;
}

/* 1 and *out set: the next instance; 0: no more; negative: the walk was too long. */
static int expansion_next(struct expansion *x, const char *rrule, struct icaltimetype *out,
                          struct err *e)
{
	struct icaltimetype t;

	while (x->it != NULL && (x->count == 0 || x->produced < x->count)) {
		if (++x->steps > EXPANSION_MAX_STEPS)
			return err_set(
			    e, ERR_DATA,
			    "RRULE \"%s\" needs more than %d instances to reach "
			    "the requested window; start it closer to the window or make it less "
			    "frequent",
			    rrule, EXPANSION_MAX_STEPS);
		t = icalrecur_iterator_next(x->it);
		if (icaltime_is_null_time(t) || past_until(x, t))
			return 0;
		if (x->produced > 0 && same_wall_time(t, x->last))
			continue;
		x->last = t;
		x->produced++;
		*out = t;
		return 1;
	}
	return 0;
}

static void expansion_close(struct expansion *x)
{
	if (x->it != NULL)
		icalrecur_iterator_free(x->it);
	x->it = NULL;
}

/* Makes room for one more element of size elem in *p (*cap elements now). */
static void *grow(void *p, size_t n, size_t *cap, size_t elem)
{
	if (n < *cap)
		return p;
	*cap = *cap != 0 ? *cap * 2 : 16;
	return xrealloc(p, *cap * elem);
}

/* Checks the arguments of schedule_expand and picks the zone DTSTART lives in. */
static int expand_args(const struct schedule_civil *dtstart, const char *tzid,
                       const struct schedule_civil *start_at, size_t max, icaltimezone **z,
                       struct err *e)
{
	if (max == 0 || max > SCHEDULE_MAX_OCCURRENCES)
		return err_set(e, ERR_DATA, "at most 1 to %d instances can be asked for",
		               SCHEDULE_MAX_OCCURRENCES);
	if (civil_check(dtstart, "DTSTART", e) != 0 ||
	    (start_at != NULL && civil_check(start_at, "start", e) != 0))
		return ERR_DATA;
	*z = dtstart->is_utc ? icaltimezone_get_utc_timezone() : NULL;
	if (tzid != NULL && (dtstart->is_utc || dtstart->is_date))
		return err_set(e, ERR_DATA, "a UTC or DATE DTSTART takes no time zone");
	if (tzid != NULL && (*z = zone_lookup(tzid, e)) == NULL)
		return ERR_DATA;
	return 0;
}

int schedule_expand(const char *rrule, const struct schedule_civil *dtstart, const char *tzid,
                    const struct schedule_civil *start_at, size_t max, struct schedule_civil **out,
                    size_t *n, struct err *e)
{
	struct expansion x = {.it = NULL};
	struct schedule_civil *v = NULL, c;
	struct icaltimetype next;
	icaltimezone *z = NULL;
	size_t count = 0, cap = 0;
	int rc;

	*out = NULL;
	*n = 0;
	if ((rc = expand_args(dtstart, tzid, start_at, max, &z, e)) != 0 ||
	    (rc = expansion_open(&x, rrule, false, dtstart, z, e)) != 0)
		goto out;
	while (count < max && (rc = expansion_next(&x, rrule, &next, e)) == 1) {
		civil_from_ical(next, &c);
		if (start_at != NULL && civil_cmp(&c, start_at) < 0)
			continue;
		v = grow(v, count, &cap, sizeof *v);
		v[count++] = c;
	}
	if (rc < 0)
		goto out;
	rc = 0;
	*out = v;
	*n = count;
	v = NULL;
out:
	free(v);
	expansion_close(&x);
	return rc;
}

static int cmp_int64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return (x > y) - (x < y);
}

/* Sorts v and drops repeated values (two wall-clock instances can meet after a DST gap). */
static size_t sort_unique(int64_t *v, size_t n)
{
	size_t k = 0;

	if (n == 0)
		return 0;
	qsort(v, n, sizeof *v, cmp_int64);
	for (size_t i = 1; i < n; i++) {
		if (v[i] != v[k])
			v[++k] = v[i];
	}
	return k + 1;
}

/* Walks the instances of an open expansion and keeps the UTC ones in [from, until). */
static int collect_utc(struct expansion *x, const char *rrule, icaltimezone *z, int64_t dtstart,
                       int64_t from, int64_t until, int64_t **out, size_t *n, struct err *e)
{
	int64_t l0 = dtstart + zone_offset(z, dtstart), *v = NULL, t;
	struct icaltimetype next;
	struct schedule_civil c;
	struct local_fit f;
	size_t count = 0, cap = 0;
	int rc;

	while ((rc = expansion_next(x, rrule, &next, e)) == 1) {
		civil_from_ical(next, &c);
		local_fit(z, civil_to_seconds(&c), &f);
		t = civil_to_seconds(&c) == l0 ? dtstart : f.t;
		if (t >=
		    until + OFFSET_PROBE) /* past the window, even for a gap-shifted instance */
			break;
		if (t < from || t >= until)
			continue;
		if (count == SCHEDULE_MAX_OCCURRENCES) {
			rc = err_set(e, ERR_DATA,
			             "RRULE \"%s\" has more than %d instances in the window; "
			             "make it less frequent",
			             rrule, SCHEDULE_MAX_OCCURRENCES);
			break;
		}
		v = grow(v, count, &cap, sizeof *v);
		v[count++] = t;
	}
	if (rc < 0) {
		free(v);
		return rc;
	}
	*n = sort_unique(v, count);
	*out = *n != 0 ? v : NULL;
	if (*n == 0)
		free(v);
	return 0;
}

int schedule_occurrences(const char *rrule, int64_t dtstart, const char *tzid, int64_t from,
                         int64_t until, int64_t **out, size_t *n, struct err *e)
{
	struct expansion x = {.it = NULL};
	struct schedule_civil c;
	icaltimezone *z;
	int rc;

	*out = NULL;
	*n = 0;
	if ((z = zone_lookup(tzid, e)) == NULL)
		return ERR_DATA;
	if (!time_in_range(dtstart))
		return err_set(e, ERR_DATA, "DTSTART %" PRId64 " is out of range (years 0001-9999)",
		               dtstart);
	civil_from_seconds(dtstart + zone_offset(z, dtstart), &c);
	if ((rc = expansion_open(&x, rrule, true, &c, z, e)) != 0)
		goto out;
	from = from < TIME_MIN ? TIME_MIN : from;
	until = until > TIME_MAX ? TIME_MAX + 1 : until;
	if (from < until)
		rc = collect_utc(&x, rrule, z, dtstart, from, until, out, n, e);
out:
	expansion_close(&x);
	return rc;
}

/* ---- login-reminder periods ----------------------------------------------------------- */

struct schedule_cadence {
	size_t count;     /* periods */
	int64_t bounds[]; /* count + 1 boundaries, ascending: start, instances, cutoff */
};

int schedule_cadence_new(const char *rrule, int64_t start, int64_t cutoff, const char *tzid,
                         struct schedule_cadence **out, struct err *e)
{
	struct schedule_cadence *c;
	int64_t *inst = NULL;
	size_t n = 0;
	int rc;

	*out = NULL;
	if (rrule == NULL)
		rrule = SCHEDULE_DEFAULT_CADENCE;
	if (start >= cutoff) {
		char s[SCHEDULE_FORMAT_SIZE], t[SCHEDULE_FORMAT_SIZE];

		schedule_format_utc(start, s, sizeof s);
		schedule_format_utc(cutoff, t, sizeof t);
		return err_set(e, ERR_DATA, "the reminder start %s is not before the cutoff %s", s,
		               t);
	}
	/* instances strictly after start: start itself always opens period 0 */
	if ((rc = schedule_occurrences(rrule, start, tzid, start + 1, cutoff, &inst, &n, e)) != 0)
		return rc;
	c = xmalloc(sizeof *c + (n + 2) * sizeof c->bounds[0]);
	c->count = n + 1;
	c->bounds[0] = start;
	if (n != 0)
		memcpy(&c->bounds[1], inst, n * sizeof inst[0]);
	c->bounds[n + 1] = cutoff;
	free(inst);
	*out = c;
	return 0;
}

void schedule_cadence_free(struct schedule_cadence *c)
{
	free(c);
}

size_t schedule_cadence_count(const struct schedule_cadence *c)
{
	return c->count;
}

void schedule_cadence_period_at(const struct schedule_cadence *c, int64_t t,
                                struct schedule_period *out)
{
	const int64_t *b = c->bounds;
	size_t lo = 0, hi = c->count, mid;

	if (t < b[0] || t >= b[c->count]) {
		out->inside = false;
		out->index = 0;
		out->begin = out->end = t < b[0] ? b[0] : b[c->count];
		return;
	}
	while (hi - lo > 1) { /* b[lo] <= t < b[hi] */
		mid = lo + (hi - lo) / 2;
		if (b[mid] <= t)
			lo = mid;
		else
			hi = mid;
	}
	out->inside = true;
	out->index = lo;
	out->begin = b[lo];
	out->end = b[lo + 1];
}

int schedule_cadence_period(const struct schedule_cadence *c, size_t index,
                            struct schedule_period *out, struct err *e)
{
	if (index >= c->count)
		return err_set(e, ERR_NOTFOUND, "there is no period %zu: the cadence has %zu",
		               index, c->count);
	out->inside = true;
	out->index = index;
	out->begin = c->bounds[index];
	out->end = c->bounds[index + 1];
	return 0;
}

int schedule_period_at(const char *rrule, int64_t start, int64_t cutoff, const char *tzid,
                       int64_t t, struct schedule_period *out, struct err *e)
{
	struct schedule_cadence *c;
	int rc;

	if ((rc = schedule_cadence_new(rrule, start, cutoff, tzid, &c, e)) != 0)
		return rc;
	schedule_cadence_period_at(c, t, out);
	schedule_cadence_free(c);
	return 0;
}

/* ---- what is due ---------------------------------------------------------------------- */

bool schedule_instant_due(int64_t at, int64_t last_run, int64_t now)
{
	return last_run < at && at <= now;
}

int schedule_due_occurrences(const char *rrule, int64_t start, int64_t cutoff, const char *tzid,
                             int64_t last_run, int64_t now, int64_t **out, size_t *n, struct err *e)
{
	/* [start, cutoff) intersected with (last_run, now] */
	int64_t from = last_run == INT64_MAX ? INT64_MAX : last_run + 1;
	int64_t until = now == INT64_MAX ? INT64_MAX : now + 1;

	if (from < start)
		from = start;
	if (until > cutoff)
		until = cutoff;
	return schedule_occurrences(rrule, start, tzid, from, until, out, n, e);
}

int schedule_due_reminder(const char *rrule, int64_t start, int64_t cutoff, const char *tzid,
                          int64_t last_run, int64_t now, struct schedule_due *out, struct err *e)
{
	int64_t *v;
	size_t n;
	int rc;

	rc = schedule_due_occurrences(rrule, start, cutoff, tzid, last_run, now, &v, &n, e);
	if (rc != 0)
		return rc;
	out->missed = n;
	out->occurrence = n != 0 ? v[n - 1] : 0;
	free(v);
	return 0;
}
