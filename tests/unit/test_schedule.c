/* test_schedule.c — schedule unit tests: local times across DST, RRULEs, periods, durations. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h> /* after the three headers it needs */

#include <libical/ical.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "schedule.h"

#define LA "America/Los_Angeles"
#define BERLIN "Europe/Berlin"
#define HOUR 3600
#define DAY 86400

/* ---- helpers ------------------------------------------------------------------------- */

static int64_t utc(const char *text)
{
	struct err e = {0, ""};
	int64_t t = 0;

	if (schedule_parse_instant(text, &t, &e) != 0)
		fail_msg("parse_instant(\"%s\"): %s", text, e.msg);
	return t;
}

static int64_t local(const char *text, const char *tzid)
{
	struct err e = {0, ""};
	int64_t t = 0;

	if (schedule_parse_local(text, tzid, &t, &e) != 0)
		fail_msg("parse_local(\"%s\", %s): %s", text, tzid, e.msg);
	return t;
}

static void assert_utc(int64_t t, const char *want)
{
	char buf[SCHEDULE_FORMAT_SIZE];

	assert_int_equal(schedule_format_utc(t, buf, sizeof buf), 0);
	assert_string_equal(buf, want);
}

static void assert_local(int64_t t, const char *tzid, const char *want)
{
	char buf[SCHEDULE_FORMAT_SIZE];

	assert_int_equal(schedule_format_local(t, tzid, buf, sizeof buf), 0);
	assert_string_equal(buf, want);
}

static void assert_local_iso(int64_t t, const char *tzid, const char *want)
{
	char buf[SCHEDULE_FORMAT_SIZE];

	assert_int_equal(schedule_format_local_iso(t, tzid, buf, sizeof buf), 0);
	assert_string_equal(buf, want);
}

/* rc is ERR_DATA (or code) and the message mentions needle. */
static void assert_err(int rc, int code, const struct err *e, const char *needle)
{
	if (rc != code || e->code != code || strstr(e->msg, needle) == NULL)
		fail_msg("expected error %d mentioning \"%s\", got %d: \"%s\"", code, needle, rc,
		         e->msg);
}

static void expect_local_error(const char *text, const char *tzid, const char *needle)
{
	struct err e = {0, ""};
	int64_t t = 42;

	assert_err(schedule_parse_local(text, tzid, &t, &e), ERR_DATA, &e, needle);
	assert_int_equal(t, 42); /* untouched on error */
}

static void expect_instant_error(const char *text, const char *needle)
{
	struct err e = {0, ""};
	int64_t t = 42;

	assert_err(schedule_parse_instant(text, &t, &e), ERR_DATA, &e, needle);
	assert_int_equal(t, 42);
}

static void expect_rule_error(const char *rrule, const char *needle)
{
	struct err e = {0, ""};

	assert_err(schedule_rrule_check(rrule, &e), ERR_DATA, &e, needle);
}

static void expect_rule_ok(const char *rrule)
{
	struct err e = {0, ""};

	if (schedule_rrule_check(rrule, &e) != 0)
		fail_msg("RRULE %s refused: %s", rrule, e.msg);
}

/* The occurrences of rrule from dtstart in [from, until), as "...Z" strings joined by ','. */
static char *occurrences(const char *rrule, int64_t dtstart, const char *tzid, int64_t from,
                         int64_t until)
{
	char buf[SCHEDULE_FORMAT_SIZE], *out = calloc(1, 1);
	struct err e = {0, ""};
	int64_t *v = NULL;
	size_t n = 0, len = 0;

	if (schedule_occurrences(rrule, dtstart, tzid, from, until, &v, &n, &e) != 0)
		fail_msg("occurrences(%s): %s", rrule, e.msg);
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(schedule_format_utc(v[i], buf, sizeof buf), 0);
		out = realloc(out, len + strlen(buf) + 2);
		assert_non_null(out);
		len += (size_t)sprintf(out + len, "%s%s", i != 0 ? "," : "", buf);
	}
	free(v);
	return out;
}

static void assert_occurrences(const char *rrule, int64_t dtstart, const char *tzid, int64_t from,
                               int64_t until, const char *want)
{
	char *got = occurrences(rrule, dtstart, tzid, from, until);

	assert_string_equal(got, want);
	free(got);
}

/* ---- time zones and parsing -------------------------------------------------------------- */

static void test_tz_check(void **state)
{
	struct err e = {0, ""};

	(void)state;
	assert_int_equal(schedule_tz_check(LA, &e), 0);
	assert_int_equal(schedule_tz_check(BERLIN, &e), 0);
	assert_int_equal(schedule_tz_check("UTC", &e), 0);
	assert_int_equal(schedule_tz_check("Etc/UTC", &e), 0);
	assert_err(schedule_tz_check("Mars/Olympus_Mons", &e), ERR_DATA, &e,
	           "\"Mars/Olympus_Mons\"");
	err_clear(&e);
	assert_err(schedule_tz_check("america/los_angeles", &e), ERR_DATA, &e, "unknown time zone");
	err_clear(&e);
	assert_err(schedule_tz_check("../../etc/passwd", &e), ERR_DATA, &e, "not a time zone name");
	err_clear(&e);
	assert_err(schedule_tz_check("", &e), ERR_DATA, &e, "not a time zone name");
	err_clear(&e);
	assert_err(schedule_tz_check(NULL, &e), ERR_DATA, &e, "no time zone");
	assert_int_equal(schedule_tz_check("Nowhere", NULL), ERR_DATA); /* e may be NULL */
}

static void test_parse_instant(void **state)
{
	(void)state;
	assert_int_equal(utc("2003-08-18T16:00:00Z"), 1061222400);
	assert_int_equal(utc("2003-08-18T16:00Z"), 1061222400);
	assert_int_equal(utc("2003-08-18t16:00:00z"), 1061222400);
	assert_int_equal(utc("2003-08-18T09:00:00-07:00"), 1061222400);
	assert_int_equal(utc("2003-08-18T18:00:00+0200"), 1061222400);
	assert_int_equal(utc("2003-08-18 16:00"), 1061222400); /* no zone: UTC */
	assert_int_equal(utc("2003-08-18 16:00:00"), 1061222400);
	assert_int_equal(utc("2003-08-18"), 1061222400 - 16 * HOUR);
	assert_int_equal(utc("1970-01-01"), 0);
	assert_int_equal(utc("0001-01-01"), INT64_C(-62135596800));
	assert_int_equal(utc("9999-12-31T23:59:59Z"), INT64_C(253402300799));
	expect_instant_error("2003-08-18T16:00:00+25:00", "unexpected \"+25:00\"");
	expect_instant_error("2003-08-18T16:00:00 PDT", "unexpected \" PDT\"");
	expect_instant_error("2003-08-18Z", "unexpected \"Z\"");
	expect_instant_error("2003-8-18", "is not a date");
	expect_instant_error("yesterday", "is not a date");
	expect_instant_error("", "is not a date");
	expect_instant_error("2003-08-18T16", "expected HH:MM");
	expect_instant_error("2003-02-29", "no day 29");
	expect_instant_error(NULL, "no time given");
}

static void test_parse_local(void **state)
{
	int64_t cutoff = 1066201200; /* 2003-10-15T07:00:00Z */

	(void)state;
	assert_int_equal(local("2003-10-15", LA), cutoff);
	assert_int_equal(local("2003-10-15 00:00", LA), cutoff);
	assert_int_equal(local("2003-10-15T00:00:00", LA), cutoff);
	assert_int_equal(local("2003-10-15 00:00:00", LA), cutoff);
	assert_int_equal(local("2003-10-15", "UTC"), cutoff - 7 * HOUR);
	assert_utc(local("2003-10-15", BERLIN), "2003-10-14T22:00:00Z");
	assert_utc(local("2003-12-01 09:30", BERLIN), "2003-12-01T08:30:00Z");
	assert_utc(local("2003-09-18", LA), "2003-09-18T07:00:00Z");
	assert_utc(local("2003-12-24 18:00", LA), "2003-12-25T02:00:00Z");
	assert_utc(local("2004-02-29", LA), "2004-02-29T08:00:00Z");
}

static void test_parse_local_impossible(void **state)
{
	(void)state;
	expect_local_error("2003-02-30", LA, "no day 30 in 2003-02");
	expect_local_error("2003-02-29", LA, "no day 29 in 2003-02");
	expect_local_error("2003-04-31", LA, "no day 31");
	expect_local_error("2003-13-01", LA, "month 13 does not exist");
	expect_local_error("2003-00-10", LA, "month 00 does not exist");
	expect_local_error("2003-10-00", LA, "no day 00");
	expect_local_error("2003-10-15 24:00", LA, "hour 24 does not exist (00-23); write 00:00");
	expect_local_error("2003-10-15 23:60", LA, "minute 60 does not exist");
	expect_local_error("2003-10-15 23:59:60", LA, "leap second");
	expect_local_error("0000-01-01", LA, "year 0000 is out of range");
	expect_local_error("2003-10-15 9:00", LA, "expected HH:MM");
	expect_local_error("2003-10-15 09:00Z", LA, "without a zone or offset");
	expect_local_error("2003-10-15 09:00 PDT", LA, "unexpected \" PDT\"");
	expect_local_error("15/10/2003", LA, "is not a date");
	expect_local_error("", LA, "is not a date");
	expect_local_error(NULL, LA, "no date given");
	expect_local_error("2003-10-15", "Mars/Base", "unknown time zone \"Mars/Base\"");
}

static void test_parse_local_spring_forward(void **state)
{
	(void)state;
	/* America/Los_Angeles, 2003-04-06: 02:00 PST becomes 03:00 PDT */
	expect_local_error("2003-04-06 02:30", LA, "does not exist in America/Los_Angeles");
	expect_local_error("2003-04-06 02:30", LA, "spring forward");
	expect_local_error("2003-04-06 02:00", LA, "UTC-08:00 to UTC-07:00");
	expect_local_error("2003-04-06 02:59:59", LA, "does not exist");
	assert_utc(local("2003-04-06 01:59:59", LA), "2003-04-06T09:59:59Z");
	assert_utc(local("2003-04-06 03:00", LA), "2003-04-06T10:00:00Z");
	assert_utc(local("2003-04-06", LA), "2003-04-06T08:00:00Z");
	/* Europe/Berlin, 2003-03-30: 02:00 CET becomes 03:00 CEST */
	expect_local_error("2003-03-30 02:30", BERLIN, "UTC+01:00 to UTC+02:00");
	assert_utc(local("2003-03-30 01:59", BERLIN), "2003-03-30T00:59:00Z");
	assert_utc(local("2003-03-30 03:00", BERLIN), "2003-03-30T01:00:00Z");
}

static void test_parse_local_fall_back(void **state)
{
	(void)state;
	/* 01:00-01:59 happens twice in Los Angeles on 2003-10-26: the first (PDT) wins */
	assert_utc(local("2003-10-26 01:30", LA), "2003-10-26T08:30:00Z");
	assert_utc(local("2003-10-26 01:00", LA), "2003-10-26T08:00:00Z");
	assert_utc(local("2003-10-26 00:59", LA), "2003-10-26T07:59:00Z");
	assert_utc(local("2003-10-26 02:00", LA), "2003-10-26T10:00:00Z");
	assert_local(utc("2003-10-26T08:30:00Z"), LA, "2003-10-26 01:30 PDT");
	assert_local(utc("2003-10-26T09:30:00Z"), LA, "2003-10-26 01:30 PST");
	/* 02:00-02:59 twice in Berlin on 2003-10-26 */
	assert_utc(local("2003-10-26 02:30", BERLIN), "2003-10-26T00:30:00Z");
	assert_local(utc("2003-10-26T00:30:00Z"), BERLIN, "2003-10-26 02:30 CEST");
	assert_local(utc("2003-10-26T01:30:00Z"), BERLIN, "2003-10-26 02:30 CET");
	assert_utc(local("2003-10-26 03:00", BERLIN), "2003-10-26T02:00:00Z");
}

static void test_format(void **state)
{
	char buf[SCHEDULE_FORMAT_SIZE], tiny[8] = "x";

	(void)state;
	assert_utc(0, "1970-01-01T00:00:00Z");
	assert_utc(1061222400, "2003-08-18T16:00:00Z");
	assert_local(1066201200, LA, "2003-10-15 00:00 PDT");
	assert_local_iso(1066201200, LA, "2003-10-15T00:00:00-07:00");
	assert_local(1066201200 + 30, LA, "2003-10-15 00:00:30 PDT");
	assert_local(utc("2003-12-01T08:00:00Z"), LA, "2003-12-01 00:00 PST");
	assert_local_iso(utc("2003-12-01T08:00:00Z"), BERLIN, "2003-12-01T09:00:00+01:00");
	assert_local(utc("2003-07-01T10:00:00Z"), BERLIN, "2003-07-01 12:00 CEST");
	assert_local(utc("2003-07-01T10:00:00Z"), "UTC", "2003-07-01 10:00 UTC");
	assert_local_iso(utc("2003-07-01T10:00:00Z"), "UTC", "2003-07-01T10:00:00+00:00");
	assert_local(utc("2003-07-01T10:00:00Z"), "Asia/Kolkata", "2003-07-01 15:30 IST");
	assert_local_iso(utc("2003-07-01T10:00:00Z"), "Asia/Kolkata", "2003-07-01T15:30:00+05:30");
	/* names follow tzdata's history: war time, and Moscow's summer time before 2011 */
	assert_local(utc("1943-07-01T19:00:00Z"), LA, "1943-07-01 12:00 PWT");
	assert_local(utc("2003-07-01T08:00:00Z"), "Europe/Moscow", "2003-07-01 12:00 MSD");
	assert_local(utc("2012-07-01T08:00:00Z"), "Europe/Moscow", "2012-07-01 12:00 MSK");
	assert_local(utc("2020-07-01T08:00:00Z"), "Europe/Moscow", "2020-07-01 11:00 MSK");
	/* failures leave an empty string */
	assert_int_equal(schedule_format_utc(INT64_C(253402300800), buf, sizeof buf), ERR_DATA);
	assert_string_equal(buf, "");
	assert_int_equal(schedule_format_utc(0, tiny, sizeof tiny), ERR_DATA);
	assert_string_equal(tiny, "");
	assert_int_equal(schedule_format_local(0, "Mars/Base", buf, sizeof buf), ERR_DATA);
	assert_string_equal(buf, "");
	assert_int_equal(schedule_format_local_iso(0, NULL, buf, sizeof buf), ERR_DATA);
	assert_int_equal(schedule_format_utc(0, NULL, 0), ERR_DATA);
}

/* schedule_local_civil gives in fields what schedule_format_local_iso writes, across zones,
 * offsets and DST changes, and fails where it fails. */
static void test_local_civil(void **state)
{
	static const char *const zones[] = {LA, BERLIN, "UTC", "Asia/Kolkata", "Europe/Moscow",
					    "Australia/Lord_Howe"};
	char iso[SCHEDULE_FORMAT_SIZE], mine[SCHEDULE_FORMAT_SIZE];
	struct schedule_civil c;

	(void)state;
	for (size_t z = 0; z < sizeof zones / sizeof *zones; z++)
		for (int64_t t = utc("2003-01-01T00:00:00Z"); t < utc("2004-01-01T00:00:00Z");
		     t += 3 * 3600 + 17 * 60 + 11) {
			assert_int_equal(schedule_local_civil(t, zones[z], &c), 0);
			assert_int_equal(schedule_format_local_iso(t, zones[z], iso, sizeof iso), 0);
			snprintf(mine, sizeof mine, "%04d-%02d-%02dT%02d:%02d:%02d", c.year, c.month,
				 c.day, c.hour, c.minute, c.second);
			assert_memory_equal(mine, iso, 19);
			assert_false(c.is_date || c.is_utc);
		}
	assert_int_equal(schedule_local_civil(0, "Mars/Base", &c), ERR_DATA);
	assert_int_equal(schedule_local_civil(0, NULL, &c), ERR_DATA);
	assert_int_equal(schedule_local_civil(INT64_C(253402300800), "UTC", &c), ERR_DATA);
}

/* A wall-clock time and offset as the C library reads the same zoneinfo. */
static void libc_local_iso(time_t t, char *buf, size_t n)
{
	char z[8];
	struct tm tm;

	localtime_r(&t, &tm);
	strftime(buf, n, "%Y-%m-%dT%H:%M:%S", &tm);
	strftime(z, sizeof z, "%z", &tm);
	snprintf(buf + strlen(buf), n - strlen(buf), "%.3s:%.2s", z, z + 3);
}

/* libical's reading of the zone agrees with glibc's, sampled every 7 h 7 min for decades. */
static void test_offsets_agree_with_libc(void **state)
{
	/*
	 * Not every zone: libical 3.0.16 misses some transitions of other zones
	 * (Europe/London in 1977, America/Sao_Paulo in 2014, Asia/Tehran in 2018).
	 */
	const char *zones[] = {LA, BERLIN, "America/New_York", "Australia/Sydney"};
	char ours[SCHEDULE_FORMAT_SIZE], theirs[SCHEDULE_FORMAT_SIZE];
	const char *old = getenv("TZ");
	char *saved = old != NULL ? strdup(old) : NULL;

	(void)state;
	for (size_t z = 0; z < sizeof zones / sizeof zones[0]; z++) {
		setenv("TZ", zones[z], 1);
		tzset();
		/* 1970 to 2100 for the campaign zones of the tests, 1995 to 2040 for the others */
		int64_t from = z < 2 ? 0 : utc("1995-01-01"),
		        to = utc(z < 2 ? "2100-01-01" : "2040-01-01");

		for (int64_t t = from; t < to;
		     t += 7 * HOUR + 7 * 60) { /* every minute of the day, in time */
			assert_int_equal(schedule_format_local_iso(t, zones[z], ours, sizeof ours),
			                 0);
			libc_local_iso((time_t)t, theirs, sizeof theirs);
			if (strcmp(ours, theirs) != 0)
				fail_msg("%s at %lld: schedule says %s, libc says %s", zones[z],
				         (long long)t, ours, theirs);
		}
	}
	if (saved != NULL)
		setenv("TZ", saved, 1);
	else
		unsetenv("TZ");
	tzset();
	free(saved);
}

/* ---- RRULE validation ------------------------------------------------------------------ */

static void test_rrule_check_accepts(void **state)
{
	(void)state;
	expect_rule_ok("FREQ=DAILY");
	expect_rule_ok("FREQ=DAILY;");
	expect_rule_ok("freq=daily");
	expect_rule_ok("FREQ=WEEKLY;BYDAY=MO");
	expect_rule_ok("FREQ=WEEKLY;INTERVAL=2;BYDAY=MO,TH;WKST=SU");
	expect_rule_ok("FREQ=MONTHLY;BYDAY=1MO");
	expect_rule_ok("FREQ=MONTHLY;BYMONTHDAY=-1");
	expect_rule_ok("FREQ=MONTHLY;BYDAY=MO,TU,WE,TH,FR;BYSETPOS=-1;BYHOUR=9");
	expect_rule_ok("FREQ=HOURLY;INTERVAL=6");
	expect_rule_ok("FREQ=DAILY;BYHOUR=9,17");
	expect_rule_ok("FREQ=DAILY;UNTIL=20031015T070000Z");
	expect_rule_ok("FREQ=DAILY;COUNT=10");
	expect_rule_ok("FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=29");
	expect_rule_ok("RSCALE=GREGORIAN;FREQ=YEARLY");
}

static void test_rrule_check_refuses(void **state)
{
	(void)state;
	expect_rule_error(NULL, "empty RRULE");
	expect_rule_error("", "empty RRULE");
	expect_rule_error("BYDAY=MO", "has no FREQ part");
	expect_rule_error("RRULE:FREQ=DAILY", "without the \"RRULE:\" prefix");
	expect_rule_error("FREQ=MINUTELY", "too frequent");
	expect_rule_error("FREQ=SECONDLY;COUNT=3", "FREQ=SECONDLY is too frequent");
	expect_rule_error("FREQ=FORTNIGHTLY", "FREQ=FORTNIGHTLY is not a frequency");
	expect_rule_error("FREQ=DAILY;BYHOUR=25", "the part \"BYHOUR=25\"");
	expect_rule_error("FREQ=DAILY;FOO=1", "the part \"FOO=1\"");
	expect_rule_error("FREQ=DAILY;INTERVAL=0", "the part \"INTERVAL=0\"");
	expect_rule_error("FREQ=WEEKLY;BYDAY=XX", "the part \"BYDAY=XX\"");
	expect_rule_error("FREQ=DAILY;COUNT=3;UNTIL=20031015T000000Z", "COUNT and UNTIL");
	expect_rule_error("FREQ=DAILY;FREQ=WEEKLY", "FREQ appears twice");
	expect_rule_error("FREQ=DAILY;;BYHOUR=9", "is not NAME=VALUE");
	expect_rule_error("FREQ=DAILY;BYHOUR", "\"BYHOUR\" is not NAME=VALUE");
	expect_rule_error("FREQ=DAILY; BYHOUR=9", "space");
	expect_rule_error("FREQ=MONTHLY;BYWEEKNO=2", "BYWEEKNO is only allowed with FREQ=YEARLY");
	expect_rule_error("FREQ=WEEKLY;BYMONTHDAY=1", "BYMONTHDAY is not allowed with FREQ=WEEKLY");
	expect_rule_error("FREQ=DAILY;BYYEARDAY=1", "BYYEARDAY is not allowed with FREQ=DAILY");
	expect_rule_error("FREQ=WEEKLY;BYDAY=1MO", "needs FREQ=MONTHLY or FREQ=YEARLY");
	expect_rule_error("FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30", "matches no date");
	expect_rule_error("FREQ=HOURLY;BYMONTH=4,6;BYMONTHDAY=31", "matches no date");
	expect_rule_error("FREQ=YEARLY;BYMONTH=13", "BYMONTH");
	expect_rule_error("RSCALE=HEBREW;FREQ=YEARLY", "RSCALE");
	expect_rule_error("FREQ=YEARLY;BYWEEKNO=20;BYDAY=MO", "BYWEEKNO is not supported");
	expect_rule_error("FREQ=YEARLY;BYYEARDAY=100;BYMONTH=4", "cannot expand BYYEARDAY");
	expect_rule_error("FREQ=WEEKLY;BYDAY=MO,TU;BYSETPOS=1", "BYSETPOS needs FREQ=MONTHLY");
	expect_rule_error("FREQ=MONTHLY;BYDAY=MO;BYHOUR=9,17;BYSETPOS=1", "BYSETPOS");
	expect_rule_error("FREQ=HOURLY;INTERVAL=2;BYHOUR=9,17", "ignores INTERVAL");
	expect_rule_error("FREQ=MONTHLY;INTERVAL=2;BYMONTH=1,6", "ignores INTERVAL");
	expect_rule_error("FREQ=DAILY;BYMONTHDAY=-1", "negative BYMONTHDAY");
	expect_rule_error("FREQ=DAILY;UNTIL=20031015", "write UNTIL in UTC");
	expect_rule_error("FREQ=DAILY;UNTIL=20031015T000000", "write UNTIL in UTC");
}

/* ---- occurrence expansion --------------------------------------------------------------- */

static void test_occurrences_daily_across_dst(void **state)
{
	(void)state;
	/* 09:00 in Los Angeles is 16:00Z in summer and 17:00Z in winter */
	assert_occurrences("FREQ=DAILY", local("2003-10-20 09:00", LA), LA, utc("2003-10-24"),
	                   utc("2003-10-29"),
	                   "2003-10-24T16:00:00Z,2003-10-25T16:00:00Z,2003-10-26T17:00:00Z,"
	                   "2003-10-27T17:00:00Z,2003-10-28T17:00:00Z");
	assert_occurrences("FREQ=DAILY", local("2003-04-01 09:00", LA), LA, utc("2003-04-04"),
	                   utc("2003-04-09"),
	                   "2003-04-04T17:00:00Z,2003-04-05T17:00:00Z,2003-04-06T16:00:00Z,"
	                   "2003-04-07T16:00:00Z,2003-04-08T16:00:00Z");
	assert_occurrences("FREQ=DAILY", local("2003-03-27 09:00", BERLIN), BERLIN,
	                   utc("2003-03-29"), utc("2003-04-01"),
	                   "2003-03-29T08:00:00Z,2003-03-30T07:00:00Z,2003-03-31T07:00:00Z");
	assert_occurrences("FREQ=DAILY", local("2003-10-24 09:00", BERLIN), BERLIN,
	                   utc("2003-10-25"), utc("2003-10-28"),
	                   "2003-10-25T07:00:00Z,2003-10-26T08:00:00Z,2003-10-27T08:00:00Z");
}

static void test_occurrences_in_gap_and_overlap(void **state)
{
	(void)state;
	/* 02:30 does not exist on 2003-04-06: that day's instance is 03:30 PDT (RFC 5545) */
	assert_occurrences("FREQ=DAILY", local("2003-04-04 02:30", LA), LA, utc("2003-04-05"),
	                   utc("2003-04-08"),
	                   "2003-04-05T10:30:00Z,2003-04-06T10:30:00Z,2003-04-07T09:30:00Z");
	/* 01:30 happens twice on 2003-10-26: once, the first time */
	assert_occurrences("FREQ=DAILY", local("2003-10-24 01:30", LA), LA, utc("2003-10-25"),
	                   utc("2003-10-28"),
	                   "2003-10-25T08:30:00Z,2003-10-26T08:30:00Z,2003-10-27T09:30:00Z");
	/* hourly across the gap: 02:00 moves onto 03:00, which is not doubled */
	assert_occurrences("FREQ=HOURLY", local("2003-04-06 00:00", LA), LA,
	                   utc("2003-04-06T08:00Z"), utc("2003-04-06T12:00Z"),
	                   "2003-04-06T08:00:00Z,2003-04-06T09:00:00Z,2003-04-06T10:00:00Z,"
	                   "2003-04-06T11:00:00Z");
}

static void test_occurrences_window_until_count(void **state)
{
	int64_t start = local("2003-10-14", LA);
	struct err e = {0, ""};
	int64_t sentinel = 0, *v = &sentinel;
	size_t n = 7;

	(void)state;
	/* [from, until): an instance at from is in, one at until is out */
	assert_occurrences("FREQ=DAILY", start, LA, local("2003-10-15", LA),
	                   local("2003-10-17", LA), "2003-10-15T07:00:00Z,2003-10-16T07:00:00Z");
	/* UNTIL in UTC is inclusive and compared as an instant */
	assert_occurrences("FREQ=DAILY;UNTIL=20031016T070000Z", start, LA, 0, utc("2004-01-01"),
	                   "2003-10-14T07:00:00Z,2003-10-15T07:00:00Z,2003-10-16T07:00:00Z");
	assert_occurrences("FREQ=DAILY;COUNT=2", start, LA, 0, utc("2004-01-01"),
	                   "2003-10-14T07:00:00Z,2003-10-15T07:00:00Z");
	/* DTSTART that does not match the rule is not an instance (libical) */
	assert_occurrences("FREQ=WEEKLY;BYDAY=MO", local("2003-09-18", LA), LA, 0,
	                   utc("2003-10-07"),
	                   "2003-09-22T07:00:00Z,2003-09-29T07:00:00Z,2003-10-06T07:00:00Z");
	/* several BY values in any order, each instance once */
	assert_occurrences("FREQ=DAILY;BYHOUR=17,9,9", local("2003-10-14 17:00", LA), LA, 0,
	                   utc("2003-10-16"), "2003-10-15T00:00:00Z,2003-10-15T16:00:00Z");
	assert_occurrences("FREQ=DAILY", start, LA, utc("2003-10-01"), utc("2003-10-14"), "");
	assert_occurrences("FREQ=DAILY", start, LA, utc("2003-10-20"), utc("2003-10-20"), "");
	/* errors leave *out NULL and *n 0 */
	assert_err(schedule_occurrences("FREQ=MINUTELY", start, LA, 0, 1, &v, &n, &e), ERR_DATA, &e,
	           "too frequent");
	assert_null(v);
	assert_int_equal(n, 0);
	err_clear(&e);
	assert_err(schedule_occurrences("FREQ=DAILY", start, "Mars/Base", 0, 1, &v, &n, &e),
	           ERR_DATA, &e, "Mars/Base");
}

static void test_occurrences_runaway(void **state)
{
	struct err e = {0, ""};
	int64_t *v = NULL;
	size_t n = 0;

	(void)state;
	assert_err(schedule_occurrences("FREQ=HOURLY", utc("2003-01-01"), LA, utc("2003-01-01"),
	                                utc("2023-01-01"), &v, &n, &e),
	           ERR_DATA, &e, "more than 100000 instances");
	assert_null(v);
	err_clear(&e);
	assert_err(schedule_occurrences("FREQ=HOURLY", utc("1850-01-01"), "UTC", utc("2003-01-01"),
	                                utc("2003-01-02"), &v, &n, &e),
	           ERR_DATA, &e, "needs more than 1000000 instances");
	assert_null(v);
	/* an endless rule stops at the end of the window */
	err_clear(&e);
	assert_int_equal(schedule_occurrences("FREQ=HOURLY", utc("2003-01-01"), "UTC",
	                                      utc("2003-01-01"), utc("2003-01-01T03:00Z"), &v, &n,
	                                      &e),
	                 0);
	assert_int_equal(n, 3);
	free(v);
}

static void test_expand_civil(void **state)
{
	struct schedule_civil start, at, *v = NULL;
	struct err e = {0, ""};
	char buf[32];
	size_t n = 0;

	(void)state;
	assert_int_equal(schedule_civil_parse("19970902T090000", &start, &e), 0);
	assert_int_equal(schedule_expand("FREQ=DAILY;COUNT=10", &start, NULL, NULL, 3, &v, &n, &e),
	                 0);
	assert_int_equal(n, 3);
	assert_int_equal(schedule_civil_format(&v[2], buf, sizeof buf), 0);
	assert_string_equal(buf, "19970904T090000");
	free(v);
	/* START-AT leaves earlier instances out, but they still count for COUNT */
	assert_int_equal(schedule_civil_parse("19970910T000000", &at, &e), 0);
	assert_int_equal(schedule_expand("FREQ=DAILY;COUNT=10", &start, LA, &at, 100, &v, &n, &e),
	                 0);
	assert_int_equal(n, 2);
	assert_int_equal(schedule_civil_format(&v[0], buf, sizeof buf), 0);
	assert_string_equal(buf, "19970910T090000");
	free(v);
	/* DATE values stay DATE values; UTC values stay UTC */
	assert_int_equal(schedule_civil_parse("20160101", &start, &e), 0);
	assert_int_equal(
	    schedule_expand("FREQ=MONTHLY;BYMONTHDAY=-1", &start, NULL, NULL, 2, &v, &n, &e), 0);
	assert_int_equal(schedule_civil_format(&v[1], buf, sizeof buf), 0);
	assert_string_equal(buf, "20160229");
	free(v);
	assert_int_equal(schedule_civil_parse("20150301T080000Z", &start, &e), 0);
	assert_int_equal(schedule_expand("FREQ=WEEKLY", &start, NULL, NULL, 2, &v, &n, &e), 0);
	assert_int_equal(schedule_civil_format(&v[1], buf, sizeof buf), 0);
	assert_string_equal(buf, "20150308T080000Z");
	free(v);
}

static void test_expand_civil_edges(void **state)
{
	struct schedule_civil start, *v = NULL;
	struct err e = {0, ""};
	size_t n = 0;
	clock_t t0;

	(void)state;
	/* no instance at all: an empty answer, quickly */
	assert_int_equal(schedule_civil_parse("20220201T080000", &start, &e), 0);
	assert_int_equal(schedule_expand("FREQ=MONTHLY;INTERVAL=12;BYMONTHDAY=31", &start, NULL,
	                                 NULL, 5, &v, &n, &e),
	                 0);
	assert_int_equal(n, 0);
	assert_null(v);
	t0 = clock();
	assert_int_equal(schedule_civil_parse("20030101T100000", &start, &e), 0);
	assert_int_equal(schedule_expand("FREQ=MINUTELY;INTERVAL=120;BYHOUR=9", &start, NULL, NULL,
	                                 5, &v, &n, &e),
	                 0);
	assert_int_equal(n, 0);
	assert_true(clock() - t0 < CLOCKS_PER_SEC);
	/* refusals */
	assert_err(schedule_expand("FREQ=SECONDLY;BYMONTH=2", &start, NULL, NULL, 5, &v, &n, &e),
	           ERR_DATA, &e, "second by second");
	err_clear(&e);
	assert_err(schedule_expand("FREQ=DAILY", &start, NULL, NULL, 0, &v, &n, &e), ERR_DATA, &e,
	           "at most 1 to 100000");
	err_clear(&e);
	assert_int_equal(schedule_civil_parse("20150301T080000Z", &start, &e), 0);
	assert_err(schedule_expand("FREQ=DAILY", &start, LA, NULL, 5, &v, &n, &e), ERR_DATA, &e,
	           "takes no time zone");
}

static void test_civil_parse_format(void **state)
{
	struct schedule_civil c;
	struct err e = {0, ""};
	char buf[32], tiny[4];

	(void)state;
	assert_int_equal(schedule_civil_parse("20031015T070000Z", &c, &e), 0);
	assert_true(c.is_utc);
	assert_false(c.is_date);
	assert_int_equal(c.hour, 7);
	assert_int_equal(schedule_civil_format(&c, buf, sizeof buf), 0);
	assert_string_equal(buf, "20031015T070000Z");
	assert_int_equal(schedule_civil_parse("20031015", &c, &e), 0);
	assert_true(c.is_date);
	assert_int_equal(schedule_civil_format(&c, tiny, sizeof tiny), ERR_DATA);
	assert_err(schedule_civil_parse("20030230", &c, &e), ERR_DATA, &e, "no day 30");
	err_clear(&e);
	assert_err(schedule_civil_parse("2003-10-15", &c, &e), ERR_DATA, &e,
	           "not an iCalendar date");
	err_clear(&e);
	assert_err(schedule_civil_parse("20031015T0700", &c, &e), ERR_DATA, &e, "YYYYMMDDTHHMMSS");
	err_clear(&e);
	assert_err(schedule_civil_parse("20031015T240000", &c, &e), ERR_DATA, &e, "hour 24");
}

/* ---- login-reminder periods ------------------------------------------------------------ */

static struct schedule_cadence *cadence(const char *rrule, int64_t start, int64_t cutoff,
                                        const char *tzid)
{
	struct schedule_cadence *c = NULL;
	struct err e = {0, ""};

	if (schedule_cadence_new(rrule, start, cutoff, tzid, &c, &e) != 0)
		fail_msg("cadence_new(%s): %s", rrule != NULL ? rrule : "default", e.msg);
	return c;
}

/*
 * Daily periods from first_day 00:00 to end_day 00:00 are the ndays local
 * calendar days in between, each exactly once, lasting 24 hours except the day
 * listed as short (23 h) and the one listed as long (25 h).
 */
static void check_calendar_days(const char *tzid, const char *first_day, const char *end_day,
                                size_t ndays, const char *short_day, const char *long_day)
{
	int64_t start = local(first_day, tzid), end = local(end_day, tzid);
	struct schedule_cadence *c = cadence(NULL, start, end, tzid);
	char day[SCHEDULE_FORMAT_SIZE], prev[SCHEDULE_FORMAT_SIZE] = "",
	                                before[SCHEDULE_FORMAT_SIZE];
	struct schedule_period p, q;
	int64_t expect_begin = start;

	assert_int_equal(schedule_cadence_count(c), ndays);
	for (size_t k = 0; k < ndays; k++) {
		assert_int_equal(schedule_cadence_period(c, k, &p, NULL), 0);
		assert_int_equal(p.begin, expect_begin); /* no gap, no overlap */
		expect_begin = p.end;
		assert_int_equal(schedule_format_local_iso(p.begin, tzid, day, sizeof day), 0);
		assert_memory_equal(day + 10, "T00:00:00", 9); /* begins at local midnight */
		day[10] = '\0';
		if (k > 0) { /* the calendar day before this one is the previous period's */
			assert_int_equal(schedule_format_local_iso(p.begin - 12 * HOUR, tzid,
			                                           before, sizeof before),
			                 0);
			assert_memory_equal(before, prev, 10);
		}
		memcpy(prev, day, sizeof prev);
		if (short_day != NULL && strcmp(day, short_day) == 0)
			assert_int_equal(p.end - p.begin, 23 * HOUR);
		else if (long_day != NULL && strcmp(day, long_day) == 0)
			assert_int_equal(p.end - p.begin, 25 * HOUR);
		else
			assert_int_equal(p.end - p.begin, DAY);
		/* every instant of the day maps back to this period */
		schedule_cadence_period_at(c, p.begin, &q);
		assert_int_equal(q.index, k);
		schedule_cadence_period_at(c, p.end - 1, &q);
		assert_int_equal(q.index, k);
	}
	assert_int_equal(expect_begin, end);
	schedule_cadence_free(c);
}

static void test_periods_daily_across_dst(void **state)
{
	(void)state;
	check_calendar_days(LA, "2003-04-01", "2003-04-11", 10, "2003-04-06", NULL);
	check_calendar_days(LA, "2003-10-20", "2003-11-01", 12, NULL, "2003-10-26");
	check_calendar_days(BERLIN, "2003-03-25", "2003-04-04", 10, "2003-03-30", NULL);
	check_calendar_days(BERLIN, "2003-10-20", "2003-11-01", 12, NULL, "2003-10-26");
	check_calendar_days(LA, "2003-01-01", "2004-01-01", 365, "2003-04-06", "2003-10-26");
	check_calendar_days(BERLIN, "2003-01-01", "2004-01-01", 365, "2003-03-30", "2003-10-26");
}

static void test_periods_msn_campaign(void **state)
{
	int64_t start = local("2003-09-18", LA), cutoff = local("2003-10-15", LA);
	struct schedule_cadence *c = cadence(NULL, start, cutoff, LA);
	struct schedule_period p, q;
	struct err e = {0, ""};

	(void)state;
	assert_int_equal(schedule_cadence_count(c), 27);
	schedule_cadence_period_at(c, local("2003-10-01 23:59:59", LA), &p);
	assert_true(p.inside);
	assert_int_equal(p.index, 13);
	assert_int_equal(p.begin, local("2003-10-01", LA));
	assert_int_equal(p.end, local("2003-10-02", LA));
	schedule_cadence_period_at(c, start, &p);
	assert_true(p.inside);
	assert_int_equal(p.index, 0);
	schedule_cadence_period_at(c, cutoff - 1, &p);
	assert_true(p.inside);
	assert_int_equal(p.index, 26);
	assert_int_equal(p.end, cutoff);
	schedule_cadence_period_at(c, cutoff, &p);
	assert_false(p.inside);
	assert_int_equal(p.begin, cutoff);
	assert_int_equal(p.end, cutoff);
	schedule_cadence_period_at(c, start - 1, &p);
	assert_false(p.inside);
	assert_int_equal(p.begin, start);
	assert_int_equal(p.index, 0);
	assert_err(schedule_cadence_period(c, 27, &p, &e), ERR_NOTFOUND, &e, "no period 27");
	/* the one-shot form agrees with the table */
	err_clear(&e);
	assert_int_equal(
	    schedule_period_at(NULL, start, cutoff, LA, local("2003-10-01 12:00", LA), &q, &e), 0);
	schedule_cadence_period_at(c, local("2003-10-01 12:00", LA), &p);
	assert_true(q.inside);
	assert_int_equal(q.index, p.index);
	assert_int_equal(q.begin, p.begin);
	assert_int_equal(q.end, p.end);
	schedule_cadence_free(c);
	schedule_cadence_free(NULL);
}

static void test_periods_weekly_and_errors(void **state)
{
	int64_t start = local("2003-09-18", LA), cutoff = local("2003-10-15", LA);
	struct schedule_cadence *c = cadence("FREQ=WEEKLY;BYDAY=MO", start, cutoff, LA);
	const char *begins[] = {"2003-09-18", "2003-09-22", "2003-09-29", "2003-10-06",
	                        "2003-10-13"};
	struct schedule_period p;
	struct err e = {0, ""};

	(void)state;
	/* the reminder start (a Thursday) opens period 0; Mondays open the others */
	assert_int_equal(schedule_cadence_count(c), 5);
	for (size_t k = 0; k < 5; k++) {
		assert_int_equal(schedule_cadence_period(c, k, &p, &e), 0);
		assert_int_equal(p.begin, local(begins[k], LA));
		assert_int_equal(p.end, k < 4 ? local(begins[k + 1], LA) : cutoff);
	}
	schedule_cadence_free(c);
	c = (struct schedule_cadence *)&p; /* any non-NULL value: must come back NULL */
	assert_err(schedule_cadence_new(NULL, cutoff, cutoff, LA, &c, &e), ERR_DATA, &e,
	           "is not before the cutoff");
	assert_null(c);
	err_clear(&e);
	assert_err(schedule_cadence_new("FREQ=MINUTELY", start, cutoff, LA, &c, &e), ERR_DATA, &e,
	           "too frequent");
	err_clear(&e);
	assert_err(schedule_period_at(NULL, start, cutoff, "Mars/Base", start, &p, &e), ERR_DATA,
	           &e, "Mars/Base");
}

static void test_periods_lookup_speed(void **state)
{
	int64_t start = local("2003-09-18", LA), cutoff = local("2003-10-15", LA);
	struct schedule_cadence *daily = cadence(NULL, start, cutoff, LA);
	struct schedule_cadence *hourly =
	    cadence("FREQ=HOURLY", start, local("2004-09-18", LA), LA);
	struct schedule_period p;
	uint64_t x = 88172645463325252u, sum = 0;
	const long lookups = 4000000;
	clock_t t0 = clock();
	double secs;

	(void)state;
	/*
	 * 366 days of wall-clock hours, less one: 02:00 on 2004-04-04 does not exist
	 * and moves onto 03:00. (On 2003-10-26 the period from 01:00 PDT lasts two
	 * hours: a wall-clock rule does not repeat 01:00.)
	 */
	assert_int_equal(schedule_cadence_count(hourly), 366 * 24 - 1);
	for (long i = 0; i < lookups; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		schedule_cadence_period_at(i % 2 ? daily : hourly,
		                           start - DAY + (int64_t)(x % (uint64_t)(400 * DAY)), &p);
		sum += p.index;
	}
	secs = (double)(clock() - t0) / CLOCKS_PER_SEC;
	print_message("period lookups: %.1f million/s (checksum %llu)\n",
	              (double)lookups / (secs > 0 ? secs : 1e-9) / 1e6, (unsigned long long)sum);
	/* the target is 100k logins/s overall: one core must do many times that */
	assert_true((double)lookups / secs > 1e6);
	schedule_cadence_free(daily);
	schedule_cadence_free(hourly);
}

/* ---- durations and the final notice ----------------------------------------------------- */

static void expect_duration(const char *text, int64_t days, int64_t seconds)
{
	struct schedule_duration d = {-1, -1};
	struct err e = {0, ""};

	if (schedule_parse_duration(text, &d, &e) != 0)
		fail_msg("duration %s: %s", text, e.msg);
	assert_int_equal(d.days, days);
	assert_int_equal(d.seconds, seconds);
}

static void expect_duration_error(const char *text, const char *needle)
{
	struct schedule_duration d = {-1, -1};
	struct err e = {0, ""};

	assert_err(schedule_parse_duration(text, &d, &e), ERR_DATA, &e, needle);
	assert_int_equal(d.days, -1);
}

static void test_parse_duration(void **state)
{
	(void)state;
	expect_duration("P3D", 3, 0);
	expect_duration("P1W", 7, 0);
	expect_duration("PT12H", 0, 12 * HOUR);
	expect_duration("P1DT12H", 1, 12 * HOUR);
	expect_duration("PT1H30M", 0, 90 * 60);
	expect_duration("PT90M", 0, 90 * 60);
	expect_duration("PT1H5S", 0, HOUR + 5);
	expect_duration("p2dt1h", 2, HOUR);
	expect_duration("+P1D", 1, 0);
	expect_duration("P0D", 0, 0);
	expect_duration_error(NULL, "empty duration");
	expect_duration_error("", "empty duration");
	expect_duration_error("P", "has no length");
	expect_duration_error("PT", "nothing after 'T'");
	expect_duration_error("P1DT", "nothing after 'T'");
	expect_duration_error("3D", "not an ISO 8601 duration");
	expect_duration_error("P1Y", "years have no fixed length");
	expect_duration_error("P1M", "months have no fixed length");
	expect_duration_error("-P1D", "negative");
	expect_duration_error("P1.5D", "fractions");
	expect_duration_error("PT1,5H", "fractions");
	expect_duration_error("P1W2D", "weeks cannot be mixed");
	expect_duration_error("PT1S1H", "in the order");
	expect_duration_error("P1D1D", "in the order");
	expect_duration_error("P1H", "in the order");
	expect_duration_error("PD", "expected a number");
	expect_duration_error("P1234567890D", "at most 9 digits");
}

static int64_t minus(const char *cutoff_local, const char *duration, const char *tzid)
{
	struct err e = {0, ""};
	int64_t t = 0;

	if (schedule_final_notice(local(cutoff_local, tzid), duration, tzid, &t, &e) != 0)
		fail_msg("%s - %s: %s", cutoff_local, duration, e.msg);
	return t;
}

static void test_subtract_duration(void **state)
{
	struct schedule_duration d = {1, 0};
	struct err e = {0, ""};
	int64_t t = 0;

	(void)state;
	/* the MSN campaign: a final notice three days before the cutoff */
	assert_local(minus("2003-10-15", "P3D", LA), LA, "2003-10-12 00:00 PDT");
	/* days are calendar days: three of them across the fall-back are 73 hours */
	assert_local(minus("2003-10-28", "P3D", LA), LA, "2003-10-25 00:00 PDT");
	assert_int_equal(local("2003-10-28", LA) - minus("2003-10-28", "P3D", LA), 73 * HOUR);
	assert_local(minus("2003-10-28", "PT72H", LA), LA, "2003-10-25 01:00 PDT");
	assert_local(minus("2003-11-01", "P1W", LA), LA, "2003-10-25 00:00 PDT");
	assert_local(minus("2003-10-28", "P2DT12H", LA), LA, "2003-10-25 12:00 PDT");
	/* and across the spring-forward, 71 hours */
	assert_local(minus("2003-04-01", "P3D", BERLIN), BERLIN, "2003-03-29 00:00 CET");
	assert_int_equal(local("2003-04-01", BERLIN) - minus("2003-04-01", "P3D", BERLIN),
	                 71 * HOUR);
	/* a day earlier is in the gap: moved forward past it; in the overlap: the first */
	assert_utc(minus("2003-04-07 02:30", "P1D", LA), "2003-04-06T10:30:00Z");
	assert_local(minus("2003-10-27 01:30", "P1D", LA), LA, "2003-10-26 01:30 PDT");
	/* errors */
	assert_err(schedule_final_notice(0, "P1Y", LA, &t, &e), ERR_DATA, &e, "years");
	err_clear(&e);
	assert_err(schedule_final_notice(0, "P1D", "Mars/Base", &t, &e), ERR_DATA, &e, "Mars/Base");
	err_clear(&e);
	assert_err(schedule_subtract_duration(utc("0001-01-01"), &d, "UTC", &t, &e), ERR_DATA, &e,
	           "before year 0001");
}

/* ---- what is due ---------------------------------------------------------------------- */

static struct schedule_due due(const char *rrule, int64_t start, int64_t cutoff, int64_t last_run,
                               int64_t now)
{
	struct schedule_due d = {99, 99};
	struct err e = {0, ""};

	if (schedule_due_reminder(rrule, start, cutoff, LA, last_run, now, &d, &e) != 0)
		fail_msg("due: %s", e.msg);
	return d;
}

static void test_due_reminders(void **state)
{
	const char *mondays = "FREQ=WEEKLY;BYDAY=MO";
	int64_t start = local("2003-09-18 09:00", LA), cutoff = local("2003-10-15", LA);
	struct schedule_due d;

	(void)state;
	d = due(mondays, start, cutoff, INT64_MIN, local("2003-09-21 12:00", LA));
	assert_int_equal(d.missed, 0);
	assert_int_equal(d.occurrence, 0);
	d = due(mondays, start, cutoff, local("2003-09-21 12:00", LA),
	        local("2003-09-22 12:00", LA));
	assert_int_equal(d.missed, 1);
	assert_int_equal(d.occurrence, local("2003-09-22 09:00", LA));
	/* the same day again: nothing new */
	d = due(mondays, start, cutoff, local("2003-09-22 12:00", LA),
	        local("2003-09-22 18:00", LA));
	assert_int_equal(d.missed, 0);
	/* two weeks without a run: two instances missed, one e-mail, for the later */
	d = due(mondays, start, cutoff, local("2003-09-22 12:00", LA),
	        local("2003-10-07 12:00", LA));
	assert_int_equal(d.missed, 2);
	assert_int_equal(d.occurrence, local("2003-10-06 09:00", LA));
	/* (last_run, now]: due at exactly now, not at exactly last_run */
	d = due(mondays, start, cutoff, local("2003-09-29 08:00", LA),
	        local("2003-09-29 09:00", LA));
	assert_int_equal(d.missed, 1);
	d = due(mondays, start, cutoff, local("2003-09-29 09:00", LA),
	        local("2003-09-29 10:00", LA));
	assert_int_equal(d.missed, 0);
	/* never after the cutoff, and never at it */
	d = due(mondays, start, cutoff, local("2003-10-13 12:00", LA), local("2003-11-30", LA));
	assert_int_equal(d.missed, 0);
	d = due("FREQ=WEEKLY;BYDAY=WE", local("2003-09-18", LA), cutoff, INT64_MIN, INT64_MAX);
	assert_int_equal(d.missed, 3);
	assert_int_equal(d.occurrence, local("2003-10-08", LA));
	/* one-off events: the final notice */
	assert_true(schedule_instant_due(100, 99, 100));
	assert_false(schedule_instant_due(100, 100, 200));
	assert_false(schedule_instant_due(100, 0, 99));
	assert_true(schedule_instant_due(100, INT64_MIN, INT64_MAX));
}

/* A daily run at 16:30Z every day across the fall-back sends each daily 09:00 reminder once. */
static void test_due_daily_runs_across_dst(void **state)
{
	int64_t start = local("2003-10-20 09:00", LA), cutoff = local("2003-11-03", LA);
	int64_t last = INT64_MIN, *all = NULL, *v = NULL;
	struct err e = {0, ""};
	size_t nall = 0, n = 0, seen = 0;

	(void)state;
	assert_int_equal(
	    schedule_occurrences("FREQ=DAILY", start, LA, start, cutoff, &all, &nall, &e), 0);
	assert_int_equal(nall, 14);
	for (int64_t now = utc("2003-10-19T16:30:00Z"); now < utc("2003-11-05"); now += DAY) {
		assert_int_equal(schedule_due_occurrences("FREQ=DAILY", start, cutoff, LA, last,
		                                          now, &v, &n, &e),
		                 0);
		for (size_t i = 0; i < n; i++, seen++) {
			assert_true(seen < nall);
			assert_int_equal(v[i], all[seen]);
		}
		free(v);
		last = now;
	}
	assert_int_equal(seen, nall);
	free(all);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_tz_check),
	    cmocka_unit_test(test_parse_instant),
	    cmocka_unit_test(test_local_civil),
	    cmocka_unit_test(test_parse_local),
	    cmocka_unit_test(test_parse_local_impossible),
	    cmocka_unit_test(test_parse_local_spring_forward),
	    cmocka_unit_test(test_parse_local_fall_back),
	    cmocka_unit_test(test_format),
	    cmocka_unit_test(test_offsets_agree_with_libc),
	    cmocka_unit_test(test_rrule_check_accepts),
	    cmocka_unit_test(test_rrule_check_refuses),
	    cmocka_unit_test(test_occurrences_daily_across_dst),
	    cmocka_unit_test(test_occurrences_in_gap_and_overlap),
	    cmocka_unit_test(test_occurrences_window_until_count),
	    cmocka_unit_test(test_occurrences_runaway),
	    cmocka_unit_test(test_expand_civil),
	    cmocka_unit_test(test_expand_civil_edges),
	    cmocka_unit_test(test_civil_parse_format),
	    cmocka_unit_test(test_periods_daily_across_dst),
	    cmocka_unit_test(test_periods_msn_campaign),
	    cmocka_unit_test(test_periods_weekly_and_errors),
	    cmocka_unit_test(test_periods_lookup_speed),
	    cmocka_unit_test(test_parse_duration),
	    cmocka_unit_test(test_subtract_duration),
	    cmocka_unit_test(test_due_reminders),
	    cmocka_unit_test(test_due_daily_runs_across_dst),
	};
	int rc = cmocka_run_group_tests(tests, NULL, NULL);

	icaltimezone_free_builtin_timezones();
	return rc;
}
