/* test_rrule_vectors.c — libical and ical.js RRULE vectors (RFC 5545) through schedule_expand. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h> /* after the three headers it needs */

#include <jansson.h>
#include <libical/ical.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "schedule.h"
#include "util.h"

/*
 * Corpus: $CUTOFF_SHARED/corpora/ical/
 *   libical-icalrecur-vectors.json  libical's icalrecur_test.txt as JSON: line, rrule,
 *       dtstart, start_at, expected (every instance from DTSTART; libical's harness
 *       compares those at or after START-AT), expected_error.
 *   icaljs-recur-vectors.json  ical.js recur_iterator tests: rrule, dtstart, expected
 *       (the first instances; all of them when finite), finite, no_instance.
 *   crosscheck-dateutil.json  python-dateutil run on both: status "agree" or "DIFFER".
 */
#define VECTOR_MAX_INSTANCES 5000

struct vector {
	const char *source; /* "libical" or "ical.js" */
	int line;           /* libical: line in icalrecur_test.txt */
	size_t index;       /* ical.js: position in the file */
	const char *rrule;
	const char *dtstart_raw;        /* as the corpus writes it, to find it in the crosscheck */
	char dtstart[32], start_at[32]; /* iCalendar basic form; start_at may be "" */
	json_t *expected;
	bool finite;       /* every instance is listed: the expansion must end there */
	bool expect_error; /* the corpus expects the rule to be refused */
};

/*
 * Where libical 3.0.16 itself does not produce what the vectors expect (they come
 * from newer libical and from ical.js). A listed vector is skipped only when
 * libical, called directly, also differs from the vector, and schedule_expand
 * either gives what libical gives or refuses the rule with an error; otherwise
 * it fails like any other mismatch.
 */
enum category {
	CAT_WEEKNO,
	CAT_SETPOS,
	CAT_INTERVAL,
	CAT_NEGATIVE,
	CAT_DTSTART_FIRST,
	CAT_REFUSED,
	CAT_COUNT,
	CAT_NONE = -1
};

static const char *const category_reason[CAT_COUNT] = {
    [CAT_WEEKNO] = "libical 3.0.16 puts BYWEEKNO instances in other weeks (week 1 across New "
                   "Year, week 53, negative weeks, BYWEEKNO without BYDAY); fixed in newer libical",
    [CAT_SETPOS] = "libical 3.0.16 ignores BYSETPOS with FREQ=WEEKLY, DAILY and finer, and "
                   "applies it to whole days, not to the times BYHOUR/BYMINUTE/BYSECOND make",
    [CAT_INTERVAL] = "libical 3.0.16 ignores INTERVAL when the rule lists values of its own "
                     "unit (HOURLY with BYHOUR, MINUTELY with BYMINUTE, SECONDLY with BYSECOND)",
    [CAT_NEGATIVE] = "libical 3.0.16 ignores a negative BYMONTHDAY or BYYEARDAY where it "
                     "filters (FREQ=DAILY and finer)",
    [CAT_DTSTART_FIRST] = "ical.js counts a DTSTART the rule does not match as the first "
                          "instance; libical returns only instances the rule matches",
    [CAT_REFUSED] = "RFC 5545 forbids the rule (BYWEEKNO with FREQ=WEEKLY) or libical 3.0.16 "
                    "does not implement it (BYWEEKNO with BYMONTHDAY, or with BYMONTH and no "
                    "BYDAY): libical refuses it and so does schedule_expand, with an error",
};

struct known {
	const char *source;
	int line;          /* libical vectors */
	const char *rrule; /* ical.js vectors: rrule and DTSTART as written */
	const char *dtstart;
	enum category category;
};

static const struct known known_disagreements[] = {
    {"libical", 516, NULL, NULL, CAT_WEEKNO},
    {"libical", 521, NULL, NULL, CAT_WEEKNO},
    {"libical", 526, NULL, NULL, CAT_WEEKNO},
    {"libical", 531, NULL, NULL, CAT_WEEKNO},
    {"libical", 536, NULL, NULL, CAT_WEEKNO},
    {"libical", 541, NULL, NULL, CAT_WEEKNO},
    {"libical", 546, NULL, NULL, CAT_WEEKNO},
    {"libical", 551, NULL, NULL, CAT_WEEKNO},
    {"libical", 556, NULL, NULL, CAT_WEEKNO},
    {"libical", 561, NULL, NULL, CAT_WEEKNO},
    {"libical", 661, NULL, NULL, CAT_WEEKNO},
    {"libical", 666, NULL, NULL, CAT_WEEKNO},
    {"libical", 676, NULL, NULL, CAT_WEEKNO},
    {"libical", 720, NULL, NULL, CAT_WEEKNO},
    {"libical", 725, NULL, NULL, CAT_WEEKNO},
    {"libical", 730, NULL, NULL, CAT_WEEKNO},
    {"libical", 735, NULL, NULL, CAT_WEEKNO},
    {"libical", 740, NULL, NULL, CAT_WEEKNO},
    {"libical", 566, NULL, NULL, CAT_SETPOS},
    {"libical", 583, NULL, NULL, CAT_SETPOS},
    {"libical", 590, NULL, NULL, CAT_SETPOS},
    {"libical", 595, NULL, NULL, CAT_SETPOS},
    {"libical", 600, NULL, NULL, CAT_SETPOS},
    {"libical", 605, NULL, NULL, CAT_SETPOS},
    {"libical", 610, NULL, NULL, CAT_SETPOS},
    {"libical", 615, NULL, NULL, CAT_SETPOS},
    {"libical", 620, NULL, NULL, CAT_SETPOS},
    {"libical", 625, NULL, NULL, CAT_SETPOS},
    {"libical", 630, NULL, NULL, CAT_SETPOS},
    {"libical", 641, NULL, NULL, CAT_SETPOS},
    {"libical", 691, NULL, NULL, CAT_INTERVAL},
    {"libical", 696, NULL, NULL, CAT_INTERVAL},
    {"libical", 701, NULL, NULL, CAT_INTERVAL},
    {"libical", 706, NULL, NULL, CAT_INTERVAL},
    {"libical", 711, NULL, NULL, CAT_INTERVAL},
    {"libical", 238, NULL, NULL, CAT_NEGATIVE},
    {"libical", 313, NULL, NULL, CAT_NEGATIVE},
    {"libical", 410, NULL, NULL, CAT_NEGATIVE},
    {"libical", 415, NULL, NULL, CAT_NEGATIVE},
    {"ical.js", 0, "FREQ=MONTHLY;BYSETPOS=-1;BYDAY=SU,MO,TU,WE,TH,FR,SA;INTERVAL=1;COUNT=4",
     "2016-01-01", CAT_DTSTART_FIRST},
    {"ical.js", 0, "FREQ=MONTHLY;BYSETPOS=2;BYDAY=SU,MO,TU,WE,TH,FR,SA;INTERVAL=1;COUNT=4",
     "2016-01-01", CAT_DTSTART_FIRST},
    {"ical.js", 0, "FREQ=WEEKLY;BYWEEKNO=2,4,6", "2015-01-11T08:00:00", CAT_REFUSED},
    {"ical.js", 0, "FREQ=YEARLY;BYMONTH=6,9;BYWEEKNO=23", "2015-06-08T08:00:00", CAT_REFUSED},
    {"ical.js", 0, "FREQ=YEARLY;BYMONTH=6,9;BYWEEKNO=-28", "2015-06-15T08:00:00", CAT_REFUSED},
    {"ical.js", 0, "FREQ=YEARLY;BYMONTHDAY=-27,-26,-25,-24,-23;BYWEEKNO=-28", "2016-06-06T08:00:00",
     CAT_REFUSED},
    {"ical.js", 0, "FREQ=YEARLY;BYMONTHDAY=4,5,6,7,8;BYWEEKNO=23", "2015-06-08T08:00:00",
     CAT_REFUSED},
    {"ical.js", 0, "FREQ=YEARLY;BYMONTHDAY=4,5,6,7,8;BYWEEKNO=-28", "2016-06-06T08:00:00",
     CAT_REFUSED},
};

struct tally {
	int passed, failed, skipped;
	int by_category[CAT_COUNT];
	int dateutil_agrees[CAT_COUNT]; /* skipped vectors where dateutil gives what they expect */
	struct buf ids[CAT_COUNT];
	json_t *crosscheck;
};

/* "2015-04-30T08:00:00" -> "20150430T080000"; basic form is left alone. */
static void to_basic(const char *in, char *out, size_t n)
{
	size_t k = 0;

	for (; in != NULL && *in != '\0' && k + 1 < n; in++) {
		if (*in != '-' && *in != ':')
			out[k++] = *in;
	}
	out[k] = '\0';
}

static bool vector_from_libical(json_t *j, struct vector *v)
{
	json_t *start_at = json_object_get(j, "start_at");

	memset(v, 0, sizeof *v);
	v->source = "libical";
	v->line = (int)json_integer_value(json_object_get(j, "line"));
	v->rrule = json_string_value(json_object_get(j, "rrule"));
	v->dtstart_raw = json_string_value(json_object_get(j, "dtstart"));
	to_basic(v->dtstart_raw, v->dtstart, sizeof v->dtstart);
	if (json_is_string(start_at))
		to_basic(json_string_value(start_at), v->start_at, sizeof v->start_at);
	v->expected = json_object_get(j, "expected");
	v->finite = true; /* libical's harness iterates to the end */
	v->expect_error = json_is_string(json_object_get(j, "expected_error"));
	return v->rrule != NULL && v->dtstart_raw != NULL && json_is_array(v->expected);
}

static bool vector_from_icaljs(json_t *j, size_t index, struct vector *v)
{
	memset(v, 0, sizeof *v);
	v->source = "ical.js";
	v->index = index;
	v->rrule = json_string_value(json_object_get(j, "rrule"));
	v->dtstart_raw = json_string_value(json_object_get(j, "dtstart"));
	to_basic(v->dtstart_raw, v->dtstart, sizeof v->dtstart);
	v->expected = json_object_get(j, "expected");
	v->finite = json_is_true(json_object_get(j, "finite")) ||
	            json_is_true(json_object_get(j, "no_instance"));
	return v->rrule != NULL && v->dtstart_raw != NULL && json_is_array(v->expected);
}

static void vector_id(const struct vector *v, char *buf, size_t n)
{
	if (v->line != 0)
		snprintf(buf, n, "libical:%d", v->line);
	else
		snprintf(buf, n, "ical.js#%zu", v->index);
}

static void list_add(struct buf *b, const char *s)
{
	if (b->len != 0)
		buf_putc(b, ',');
	buf_puts(b, s);
}

/* The expected instances normalised through schedule_civil_parse/format, from START-AT on. */
static bool expected_list(const struct vector *v, struct buf *b, size_t *count)
{
	struct schedule_civil c;
	struct err e = {0, ""};
	char basic[32], out[32];
	size_t i;
	json_t *s;

	json_array_foreach(v->expected, i, s)
	{
		to_basic(json_string_value(s), basic, sizeof basic);
		if (schedule_civil_parse(basic, &c, &e) != 0 ||
		    schedule_civil_format(&c, out, sizeof out) != 0) {
			print_message("%s line %d: bad expected instance: %s\n", v->source, v->line,
			              e.msg);
			return false;
		}
		if (v->start_at[0] != '\0' && strcmp(out, v->start_at) < 0)
			continue;
		list_add(b, out);
		(*count)++;
	}
	return true;
}

/* How many instances to ask for: one more than listed for finite rules, to see the end. */
static size_t wanted(const struct vector *v, size_t expected)
{
	size_t w = v->finite ? expected + 1 : expected;

	return w == 0 ? 1 : (w > VECTOR_MAX_INSTANCES ? VECTOR_MAX_INSTANCES : w);
}

/* What schedule_expand gives: the instances, or "error: ...". */
static void actual_list(const struct vector *v, size_t max, struct buf *b)
{
	struct schedule_civil dtstart, start_at, *inst = NULL;
	struct err e = {0, ""};
	const struct schedule_civil *from = v->start_at[0] != '\0' ? &start_at : NULL;
	char out[32];
	size_t n = 0;

	if (schedule_civil_parse(v->dtstart, &dtstart, &e) != 0 ||
	    (from != NULL && schedule_civil_parse(v->start_at, &start_at, &e) != 0) ||
	    schedule_expand(v->rrule, &dtstart, NULL, from, max, &inst, &n, &e) != 0) {
		buf_printf(b, "error: %s", e.msg);
		return;
	}
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(schedule_civil_format(&inst[i], out, sizeof out), 0);
		list_add(b, out);
	}
	free(inst);
}

/* What libical 3.0.16 gives when called directly, as its own harness does. */
static void libical_list(const struct vector *v, size_t max, struct buf *b)
{
	struct icalrecurrencetype r = icalrecurrencetype_from_string(v->rrule);
	struct icaltimetype start = icaltime_from_string(v->dtstart), next;
	struct icaltimetype from =
	    v->start_at[0] != '\0' ? icaltime_from_string(v->start_at) : icaltime_null_time();
	icalrecur_iterator *it =
	    r.freq != ICAL_NO_RECURRENCE ? icalrecur_iterator_new(r, start) : NULL;
	char out[32];
	size_t n = 0;

	if (r.freq == ICAL_NO_RECURRENCE)
		buf_puts(b, "error: libical cannot parse the rule");
	if (it == NULL) /* no first instance, or a rule libical does not implement */
		return;
	while (n < max && !icaltime_is_null_time(next = icalrecur_iterator_next(it))) {
		if (!icaltime_is_null_time(from) && icaltime_compare(next, from) < 0)
			continue;
		snprintf(out, sizeof out, "%s", icaltime_as_ical_string(next));
		list_add(b, out);
		n++;
	}
	icalrecur_iterator_free(it);
}

static int known_category(const struct vector *v)
{
	for (size_t i = 0; i < sizeof known_disagreements / sizeof known_disagreements[0]; i++) {
		const struct known *k = &known_disagreements[i];

		if (strcmp(k->source, v->source) != 0)
			continue;
		if (k->line != 0 ? k->line == v->line
		                 : strcmp(k->rrule, v->rrule) == 0 &&
		                       strcmp(k->dtstart, v->dtstart_raw) == 0)
			return (int)k->category;
	}
	return CAT_NONE;
}

/* Whether python-dateutil gives what the vector expects (crosscheck-dateutil.json). */
static bool dateutil_agrees(const struct tally *t, const struct vector *v)
{
	size_t i;
	json_t *c;

	json_array_foreach(t->crosscheck, i, c)
	{
		const char *src = json_string_value(json_object_get(c, "source"));
		const char *rrule = json_string_value(json_object_get(c, "rrule"));
		const char *dtstart = json_string_value(json_object_get(c, "dtstart"));
		const char *status = json_string_value(json_object_get(c, "status"));

		if (src != NULL && rrule != NULL && dtstart != NULL && status != NULL &&
		    strcmp(src, v->source) == 0 && strcmp(rrule, v->rrule) == 0 &&
		    strcmp(dtstart, v->dtstart_raw) == 0 &&
		    (v->line == 0 || json_integer_value(json_object_get(c, "line")) == v->line))
			return str_starts_with(status, "agree");
	}
	return false;
}

/* A listed disagreement that really is libical's: skip it, and say so. */
static bool skip_known(const struct vector *v, const char *want, const char *got, const char *lib,
                       struct tally *t)
{
	int cat = known_category(v);
	char id[32];

	if (cat == CAT_NONE || strcmp(lib, want) == 0)
		return false;
	if (!str_starts_with(got, "error:") && strcmp(got, lib) != 0)
		return false;
	t->skipped++;
	t->by_category[cat]++;
	t->dateutil_agrees[cat] += dateutil_agrees(t, v);
	vector_id(v, id, sizeof id);
	list_add(&t->ids[cat], id);
	return true;
}

static void run_vector(const struct vector *v, struct tally *t)
{
	struct buf want, got, lib;
	size_t count = 0;
	char id[32];

	buf_init(&want);
	buf_init(&got);
	buf_init(&lib);
	buf_puts(&want, "");
	buf_puts(&got, "");
	buf_puts(&lib, "");
	if (!expected_list(v, &want, &count)) {
		t->failed++;
		goto out;
	}
	actual_list(v, wanted(v, count), &got);
	if (v->expect_error ? str_starts_with(got.data, "error:")
	                    : strcmp(want.data, got.data) == 0) {
		t->passed++;
		goto out;
	}
	libical_list(v, wanted(v, count), &lib);
	if (skip_known(v, want.data, got.data, lib.data, t))
		goto out;
	t->failed++;
	vector_id(v, id, sizeof id);
	print_message("MISMATCH %s\n  RRULE:%s DTSTART:%s%s%s\n  expected: %s%s\n  got:      %s\n"
	              "  libical:  %s\n",
	              id, v->rrule, v->dtstart, v->start_at[0] != '\0' ? " START-AT:" : "",
	              v->start_at, v->expect_error ? "an error " : "", want.data, got.data,
	              lib.data);
out:
	buf_free(&want);
	buf_free(&got);
	buf_free(&lib);
}

static json_t *load(const char *dir, const char *name)
{
	char *path = xasprintf("%s/%s", dir, name);
	json_error_t je;
	json_t *j = json_load_file(path, 0, &je);

	if (j == NULL || !json_is_array(j))
		fail_msg("%s: %s (line %d)", path, je.text, je.line);
	free(path);
	return j;
}

static void report(struct tally *t)
{
	printf("rrule vectors: %d passed, %d failed, %d skipped%s\n", t->passed, t->failed,
	       t->skipped, t->skipped != 0 ? " (libical 3.0.16 disagrees with the vector):" : "");
	for (int c = 0; c < CAT_COUNT; c++) {
		if (t->by_category[c] == 0)
			continue;
		printf(
		    "  %d skipped: %s [python-dateutil gives the expected result for %d of them] "
		    "(%s)\n",
		    t->by_category[c], category_reason[c], t->dateutil_agrees[c], t->ids[c].data);
	}
}

static void test_rrule_vectors(void **state)
{
	const char *dir = *state;
	json_t *lib = load(dir, "libical-icalrecur-vectors.json");
	json_t *js = load(dir, "icaljs-recur-vectors.json");
	struct tally t;
	struct vector v;
	size_t i;
	json_t *j;

	memset(&t, 0, sizeof t);
	for (int c = 0; c < CAT_COUNT; c++)
		buf_init(&t.ids[c]);
	t.crosscheck = load(dir, "crosscheck-dateutil.json");
	json_array_foreach(lib, i, j)
	{
		assert_true(vector_from_libical(j, &v));
		run_vector(&v, &t);
	}
	json_array_foreach(js, i, j)
	{
		assert_true(vector_from_icaljs(j, i, &v));
		run_vector(&v, &t);
	}
	report(&t);
	for (int c = 0; c < CAT_COUNT; c++)
		buf_free(&t.ids[c]);
	json_decref(t.crosscheck);
	json_decref(lib);
	json_decref(js);
	assert_true(t.passed > 200);
	assert_int_equal(t.failed, 0);
}

int main(void)
{
	const char *shared = getenv("CUTOFF_SHARED");
	char *dir, *probe;
	int rc;

	if (shared == NULL || *shared == '\0') {
		printf("rrule vectors: skipped: CUTOFF_SHARED is not set (point it at the shared/ "
		       "folder holding corpora/ical)\n");
		return 77;
	}
	dir = xasprintf("%s/corpora/ical", shared);
	probe = xasprintf("%s/libical-icalrecur-vectors.json", dir);
	if (access(probe, R_OK) != 0) {
		printf("rrule vectors: skipped: %s is absent\n", probe);
		free(probe);
		free(dir);
		return 77;
	}
	free(probe);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_prestate(test_rrule_vectors, dir),
	};
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	free(dir);
	icaltimezone_free_builtin_timezones();
	return rc;
}
