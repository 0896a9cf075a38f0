/* test_calendar.c — the campaign calendar parsed back with libical: every milestone at its
 * instant, the VTIMEZONE truncated but still right (its own offsets give the same instants,
 * across DST), RFC 5545 line rules. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <ftw.h>
#include <libical/ical.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "calendar.h"
#include "campaign.h"
#include "schedule.h"
#include "util.h"

static char scratch[64];

static void write_file(const char *rel, const char *text)
{
	char *path = xasprintf("%s/%s", scratch, rel);
	FILE *f;

	for (char *p = path + strlen(scratch) + 1; (p = strchr(p, '/')) != NULL; p++) {
		*p = '\0';
		if (mkdir(path, 0700) != 0 && errno != EEXIST)
			fail_msg("mkdir %s: %s", path, strerror(errno));
		*p = '/';
	}
	assert_non_null(f = fopen(path, "w"));
	fputs(text, f);
	fclose(f);
	free(path);
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st, (void)flag, (void)ftw;
	return remove(path);
}

static int setup(void **state)
{
	(void)state;
	snprintf(scratch, sizeof scratch, "/tmp/test_calendar.XXXXXX");
	if (mkdtemp(scratch) == NULL)
		return -1;
	write_file("t/subject.mustache", "s\n");
	write_file("t/text.mustache", "t\n");
	write_file("t/login.mustache", "l\n");
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	nftw(scratch, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	return 0;
}

static int64_t at(const char *instant)
{
	int64_t t = 0;
	struct err e = {0};

	if (schedule_parse_instant(instant, &t, &e) != 0)
		fail_msg("%s", e.msg);
	return t;
}

/* A campaign in tz with the given dates, a second segment starting later, and options. */
static struct campaign *campaign(const char *tz, const char *dates, const char *extra,
				 const char *b_send)
{
	char *text = xasprintf("name = \"cal\";\ntitle = \"Calendar test\";\n"
			       "from = \"T <t@cal.example.test>\";\ntimezone = \"%s\";\n%s\n%s\n"
			       "upgrade_url = \"https://cal.example.test/up\";\n"
			       "segments = (\n"
			       "  { name = \"a\"; match = { client = \"c1\"; }; template = \"t\";"
			       " target_version = \"2\"; },\n"
			       "  { name = \"b\"; match = { client = \"c2\"; }; template = \"t\";"
			       " send = \"%s\"; discontinued = true; }\n);\n",
			       tz, dates, extra, b_send);
	struct campaign *c = NULL;
	struct err e = {0};

	if (campaign_load_text(&c, text, "cal.cfg", scratch, &e) != 0)
		fail_msg("campaign: %s", e.msg);
	free(text);
	return c;
}

/* The X-CUTOFF-MILESTONE of an event. */
static const char *milestone(icalcomponent *ev)
{
	for (icalproperty *p = icalcomponent_get_first_property(ev, ICAL_X_PROPERTY); p;
	     p = icalcomponent_get_next_property(ev, ICAL_X_PROPERTY))
		if (strcmp(icalproperty_get_x_name(p), "X-CUTOFF-MILESTONE") == 0)
			return icalproperty_get_x(p);
	return "";
}

struct expect {
	const char *kind;
	const char *instant;
};

/* Parses text back; checks the events against want, with libical's zone and with the file's. */
static void check_calendar(const char *text, const char *tz, const struct expect *want,
			   size_t n)
{
	icalcomponent *cal = icalparser_parse_string(text), *vtz, *ev;
	icaltimezone *own = icaltimezone_new(), *lib = icaltimezone_get_builtin_timezone(tz);
	size_t i = 0;

	assert_non_null(cal);
	assert_non_null(vtz = icalcomponent_get_first_component(cal, ICAL_VTIMEZONE_COMPONENT));
	assert_string_equal(icalproperty_get_tzid(icalcomponent_get_first_property(
				    vtz, ICAL_TZID_PROPERTY)), tz);
	assert_true(icaltimezone_set_component(own, icalcomponent_new_clone(vtz)));
	for (ev = icalcomponent_get_first_component(cal, ICAL_VEVENT_COMPONENT); ev;
	     ev = icalcomponent_get_next_component(cal, ICAL_VEVENT_COMPONENT), i++) {
		icalproperty *p = icalcomponent_get_first_property(ev, ICAL_DTSTART_PROPERTY);
		icalparameter *id = icalproperty_get_first_parameter(p, ICAL_TZID_PARAMETER);
		struct icaltimetype t = icalproperty_get_dtstart(p);
		assert_true(i < n);
		assert_non_null(id);
		assert_string_equal(icalparameter_get_tzid(id), tz);
		assert_string_equal(milestone(ev), want[i].kind);
		t.zone = NULL;
		assert_int_equal((int64_t)icaltime_as_timet_with_zone(t, lib), at(want[i].instant));
		assert_int_equal((int64_t)icaltime_as_timet_with_zone(t, own), at(want[i].instant));
		assert_non_null(icalcomponent_get_first_property(ev, ICAL_UID_PROPERTY));
	}
	assert_int_equal(i, n);
	icaltimezone_free(own, 1);
	icalcomponent_free(cal);
}

/* RFC 5545 3.1: CRLF line ends, lines of at most 75 octets. */
static void check_lines(const char *text)
{
	for (const char *p = text; *p;) {
		const char *nl = strstr(p, "\r\n");
		assert_non_null(nl);
		assert_true(nl - p <= 75);
		assert_null(memchr(p, '\n', (size_t)(nl - p)));
		p = nl + 2;
	}
}

static void test_worked_example_dates(void **state)
{
	static const struct expect want[] = {
		{"announce", "2003-08-18T16:00:00Z"},       /* 09:00 PDT, segment a */
		{"announce", "2003-08-25T16:00:00Z"},       /* segment b: its own date */
		{"reminder-start", "2003-09-18T07:00:00Z"}, /* 00:00 PDT */
		{"reminder-email", "2003-09-22T16:00:00Z"}, /* Mondays 09:00 */
		{"reminder-email", "2003-09-29T16:00:00Z"},
		{"reminder-email", "2003-10-06T16:00:00Z"},
		{"final-notice", "2003-10-12T07:00:00Z"},   /* P3D before the cutoff */
		{"reminder-email", "2003-10-13T16:00:00Z"},
		{"cutoff", "2003-10-15T07:00:00Z"},
	};
	struct campaign *c = campaign("America/Los_Angeles",
				      "announce = \"2003-08-18 09:00\";\n"
				      "reminder_start = \"2003-09-18\";\ncutoff = \"2003-10-15\";",
				      "reminder_emails = \"FREQ=WEEKLY;BYDAY=MO;BYHOUR=9\";\n"
				      "final_notice = \"P3D\";", "2003-08-25 09:00");
	char *text = NULL;
	struct err e = {0};

	(void)state;
	assert_int_equal(calendar_campaign(c, at("2003-08-01T00:00:00Z"), &text, &e), 0);
	check_lines(text);
	check_calendar(text, "America/Los_Angeles", want, sizeof want / sizeof *want);
	assert_non_null(strstr(text, "METHOD:PUBLISH\r\n"));
	assert_non_null(strstr(text, "DTSTAMP:20030801T000000Z\r\n"));
	assert_non_null(strstr(text, "UID:cutoff-cal-cutoff@cal.example.test\r\n"));
	assert_non_null(strstr(text, "X-CUTOFF-SEGMENT:b\r\n"));
	free(text);
	campaign_free(c);
}

/* Berlin across both clock changes: the truncated VTIMEZONE still has them, with local RDATEs. */
static void test_dst_and_truncation(void **state)
{
	static const struct expect want[] = {
		{"announce", "2003-10-01T07:00:00Z"},       /* 09:00 CEST */
		{"reminder-start", "2003-10-19T22:00:00Z"}, /* 00:00 CEST */
		{"reminder-email", "2003-10-20T08:00:00Z"}, /* Mondays 10:00: CEST ... */
		{"announce", "2003-10-20T09:00:00Z"},       /* segment b, 11:00 CEST */
		{"reminder-email", "2003-10-27T09:00:00Z"}, /* ... then CET */
		{"reminder-email", "2004-03-01T09:00:00Z"},
		{"reminder-email", "2004-03-08T09:00:00Z"},
		{"reminder-email", "2004-03-15T09:00:00Z"},
		{"reminder-email", "2004-03-22T09:00:00Z"},
		{"reminder-email", "2004-03-29T08:00:00Z"}, /* CEST again */
		{"cutoff", "2004-04-01T22:00:00Z"},         /* 00:00 CEST, 2 April */
	};
	struct campaign *c = campaign("Europe/Berlin",
				      "announce = \"2003-10-01 09:00\";\n"
				      "reminder_start = \"2003-10-20\";\ncutoff = \"2004-04-02\";",
				      "reminder_emails = \"FREQ=WEEKLY;BYDAY=MO;BYHOUR=10;"
				      "BYMONTH=10,3\";", "2003-10-20 11:00");
	char *text = NULL, *vtz;
	struct err e = {0};

	(void)state;
	assert_int_equal(calendar_campaign(c, 0, &text, &e), 0);
	check_lines(text);
	check_calendar(text, "Europe/Berlin", want, sizeof want / sizeof *want);
	vtz = strstr(text, "BEGIN:VTIMEZONE");
	assert_non_null(vtz);
	assert_non_null(strstr(vtz, "BEGIN:DAYLIGHT"));
	assert_non_null(strstr(vtz, "BEGIN:STANDARD"));
	assert_null(strstr(vtz, "DTSTART:19")); /* truncated: no transitions from the 1900s */
	for (const char *p = vtz; (p = strstr(p, "RDATE:")) != NULL; p++)
		assert_int_not_equal(p[6 + 15], 'Z'); /* RFC 5545 3.6.5: local time */
	free(text);
	campaign_free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_worked_example_dates),
		cmocka_unit_test(test_dst_and_truncation),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
