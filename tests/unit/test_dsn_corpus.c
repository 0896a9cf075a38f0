/* test_dsn_corpus.c — runs the DSN parser over the shared bounce corpus (sisimai's messages)
 * and measures recipient, hard/soft, status and reason agreement with expected.tsv. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "dsn.h"
#include "scratch.h"
#include "util.h"

/* sisimai's stand-in for "the complaint names no recipient". */
#define UNDISCLOSED "undisclosed-recipient-in-headers@libsisimai.org.invalid"

/* One row of expected.tsv. */
struct row {
	char *file;
	long index;      /* recipient number in a file; message number in an mbox */
	char *recipient;
	char *status;
	char *reply;
	char *reason;
	char *hard_soft; /* hard, soft, n/a */
	bool pseudo;     /* status invented by sisimai: judge recipient and class only */
	bool used;
};

struct tally {
	size_t rcpt_ok, rcpt_total;
	size_t class_ok, class_total;
	size_t status_ok, status_total;
	size_t reason_ok, reason_total;
	size_t kind_ok, kind_total;
	size_t messages, not_bounces_bad, twin_diffs;
	double seconds;
};

static char *corpus_dir;
static struct row *rows;
static size_t n_rows;

/* Splits a TSV line in place into at most max fields; returns how many. */
static size_t split_tabs(char *line, char **fields, size_t max)
{
	size_t n = 0;

	while (n < max) {
		char *tab = strchr(line, '\t');

		fields[n++] = line;
		if (tab == NULL)
			break;
		*tab = '\0';
		line = tab + 1;
	}
	return n;
}

static void load_expected(void)
{
	char *path = xasprintf("%s/expected.tsv", corpus_dir);
	size_t len;
	char *data = scratch_read_file(path, &len), *save = NULL;

	assert_non_null(data);
	for (char *line = strtok_r(data, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char *f[16];
		size_t n = split_tabs(line, f, 16);

		if (n < 10 || strcmp(f[0], "file") == 0 || f[2][0] == '\0')
			continue;
		rows = xrealloc(rows, (n_rows + 1) * sizeof *rows);
		rows[n_rows++] = (struct row){ xstrdup(f[0]), strtol(f[1], NULL, 10), xstrdup(f[2]),
					       xstrdup(f[3]), xstrdup(f[4]), xstrdup(f[5]),
					       xstrdup(f[7]), strcmp(f[9], "yes") == 0, false };
	}
	free(data);
	free(path);
}

static const char *class_label(enum bounce_class c)
{
	return c == BOUNCE_CLASS_NONE ? "n/a" : classify_class_name(c);
}

static void print_got(const struct dsn_recipient *r)
{
	printf("%s %s %d %s %s", r->address, r->status[0] ? r->status : "-", r->reply_code,
	       classify_reason_name(r->reason), class_label(r->class));
}

/* The kind of report an expected reason implies. */
static const char *expected_kind(const char *reason)
{
	if (strcmp(reason, "feedback") == 0)
		return "complaint";
	if (strcmp(reason, "vacation") == 0)
		return "autoreply";
	if (strcmp(reason, "delivered") == 0)
		return "other";
	return "bounce";
}

/* A failure may come in a bounce or a delay notice; the rest must match exactly. */
static bool kind_agrees(const char *reason, enum dsn_kind kind)
{
	const char *want = expected_kind(reason);

	if (strcmp(want, "bounce") == 0)
		return kind == DSN_KIND_BOUNCE || kind == DSN_KIND_DELAY;
	return strcmp(want, dsn_kind_name(kind)) == 0;
}

/* Compares one expected row with what was found. */
static void judge_row(struct tally *t, struct row *e, const struct dsn_result *res,
		      const struct dsn_recipient *g)
{
	bool class_ok, status_ok = true;

	e->used = true;
	t->rcpt_total++;
	t->class_total++;
	if (!e->pseudo && e->status[0] != '\0')
		t->status_total++;
	t->reason_total++;
	if (strcmp(e->recipient, UNDISCLOSED) == 0 && res->kind == DSN_KIND_COMPLAINT) {
		t->rcpt_ok++, t->class_ok++, t->reason_ok++;
		t->status_ok += !e->pseudo && e->status[0] != '\0';
		return;
	}
	if (g == NULL) {
		printf("MISMATCH %s: expected %s %s %s %s %s, got no such recipient (kind %s)\n",
		       e->file, e->recipient, e->status, e->reply, e->reason, e->hard_soft,
		       dsn_kind_name(res->kind));
		return;
	}
	t->rcpt_ok++;
	t->kind_total++;
	if (kind_agrees(e->reason, res->kind))
		t->kind_ok++;
	else
		printf("MISMATCH %s: expected a report of kind %s for reason %s, got %s\n", e->file,
		       expected_kind(e->reason), e->reason, dsn_kind_name(res->kind));
	class_ok = strcmp(e->hard_soft, class_label(g->class)) == 0;
	t->class_ok += class_ok;
	if (!e->pseudo && e->status[0] != '\0') {
		status_ok = strcmp(e->status, g->status) == 0;
		t->status_ok += status_ok;
	}
	t->reason_ok += strcmp(e->reason, classify_reason_name(g->reason)) == 0;
	if (getenv("CUTOFF_TEST_VERBOSE") != NULL &&
	    strcmp(e->reason, classify_reason_name(g->reason)) != 0)
		printf("REASON %s: %s expected %s, got %s\n", e->file, e->recipient, e->reason,
		       classify_reason_name(g->reason));
	if (!class_ok || !status_ok) {
		printf("MISMATCH %s: expected %s %s %s %s %s, got ", e->file, e->recipient,
		       e->status, e->reply, e->reason, e->hard_soft);
		print_got(g);
		printf("%s\n", class_ok ? " (status only)" : "");
	}
}

static const struct dsn_recipient *find_got(const struct dsn_result *const *res, size_t n_res,
					    const char *addr, const struct dsn_result **owner)
{
	for (size_t i = 0; i < n_res; i++)
		for (size_t j = 0; j < res[i]->n_recipients; j++)
			if (strcasecmp(res[i]->recipients[j].address, addr) == 0) {
				*owner = res[i];
				return &res[i]->recipients[j];
			}
	return NULL;
}

/* The rows about one file, or about message index of an mbox (index > 0). */
static bool row_is_for(const struct row *r, const char *key, long index)
{
	return strcmp(r->file, key) == 0 && (index <= 0 || r->index == index);
}

/* Judges the results of one file: one message, or one message of an mbox (index > 0). */
static void judge_file(struct tally *t, const char *key, long index,
		       const struct dsn_result *const *res, size_t n_res)
{
	static const struct dsn_result empty = { 0 };
	bool undisclosed = false;

	for (size_t i = 0; i < n_rows; i++) {
		const struct dsn_result *owner = n_res ? res[0] : &empty;
		const struct dsn_recipient *g;

		if (!row_is_for(&rows[i], key, index))
			continue;
		undisclosed |= strcmp(rows[i].recipient, UNDISCLOSED) == 0;
		g = find_got(res, n_res, rows[i].recipient, &owner);
		judge_row(t, &rows[i], owner, g);
	}
	/* Recipients nobody expected count against recipient accuracy. */
	for (size_t i = 0; i < n_res && !undisclosed; i++) {
		for (size_t j = 0; j < res[i]->n_recipients; j++) {
			bool known = false;

			for (size_t k = 0; k < n_rows && !known; k++)
				known = row_is_for(&rows[k], key, index) &&
				        strcasecmp(rows[k].recipient,
				                   res[i]->recipients[j].address) == 0;
			if (known)
				continue;
			t->rcpt_total++;
			printf("MISMATCH %s: unexpected recipient ", key);
			print_got(&res[i]->recipients[j]);
			printf(" (kind %s)\n", dsn_kind_name(res[i]->kind));
		}
	}
}

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The sorted regular file names of a directory (NULL-terminated). */
static char **list_dir(const char *dir, size_t *n)
{
	DIR *d = opendir(dir);
	char **names = NULL;
	struct dirent *de;

	*n = 0;
	if (d == NULL)
		return NULL;
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		names = xrealloc(names, (*n + 1) * sizeof *names);
		names[(*n)++] = xstrdup(de->d_name);
	}
	closedir(d);
	if (*n > 0)
		qsort(names, *n, sizeof *names, name_cmp);
	return names;
}

static double now_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Parses one file; the JSON of its result goes to *json (caller frees). */
static struct dsn_result *parse_file(struct tally *t, const char *path, char **json)
{
	size_t len;
	char *data = scratch_read_file(path, &len);
	struct dsn_result *res = NULL;
	struct err e = { 0 };
	double start;
	json_t *j;

	assert_non_null(data);
	start = now_seconds();
	if (dsn_parse_buffer(data, len, &res, &e) != 0)
		printf("note: %s: %s\n", path, e.msg);
	t->seconds += now_seconds() - start;
	t->messages++;
	free(data);
	if (res == NULL) {
		*json = xstrdup("null");
		return NULL;
	}
	/* The JSON plus what attribution reads: the twins must agree on all of it. */
	j = dsn_result_to_json(res);
	json_object_set_new(j, "message_id",
	                    json_string(res->original_message_id ? res->original_message_id : ""));
	json_object_set_new(j, "envelope",
	                    json_string(res->envelope_recipient ? res->envelope_recipient : ""));
	json_object_set_new(j, "cutoff_headers", json_integer((json_int_t)res->n_cutoff_headers));
	*json = json_dumps(j, JSON_SORT_KEYS);
	json_decref(j);
	return res;
}

/* maildir/mac holds maildir/dos's messages with CR instead of CRLF: same answers. */
static void compare_twin(struct tally *t, const char *key, const char *name, const char *json)
{
	char *twin = xasprintf("%s/maildir/dos/%s", corpus_dir, name);
	char *twin_json;
	struct tally scratch = { 0 };
	struct dsn_result *tres = parse_file(&scratch, twin, &twin_json);

	if (strcmp(json, twin_json) != 0) {
		t->twin_diffs++;
		printf("MISMATCH %s: differs from its CRLF twin:\n  %s\n  %s\n", key, json,
		       twin_json);
	}
	dsn_result_free(tres);
	free(twin_json);
	free(twin);
}

static void run_maildir(struct tally *t, const char *sub)
{
	char *dir = xasprintf("%s/maildir/%s", corpus_dir, sub);
	size_t n;
	char **names = list_dir(dir, &n);

	for (size_t i = 0; i < n; i++) {
		char *path = xasprintf("%s/%s", dir, names[i]);
		char *key = xasprintf("maildir/%s/%s", sub, names[i]);
		char *json;
		struct dsn_result *res = parse_file(t, path, &json);
		const struct dsn_result *list[1] = { res };

		judge_file(t, key, 0, list, res ? 1 : 0);
		if (strcmp(sub, "not") == 0 && res != NULL && res->kind == DSN_KIND_BOUNCE) {
			t->not_bounces_bad++;
			printf("MISMATCH %s: not a bounce, classified a bounce\n", key);
		}
		if (strcmp(sub, "mac") == 0)
			compare_twin(t, key, names[i], json);
		dsn_result_free(res);
		free(json);
		free(key);
		free(path);
		free(names[i]);
	}
	free(names);
	free(dir);
}

static void run_mbox(struct tally *t, const char *name)
{
	char *path = xasprintf("%s/mailbox/%s", corpus_dir, name);
	char *key = xasprintf("mailbox/%s", name);
	struct dsn_mbox *mb = NULL;
	struct err e = { 0 };
	struct dsn_result *r;
	size_t n = 0, index;
	double start = now_seconds(), spent = 0;

	assert_int_equal(dsn_mbox_open(path, &mb, &e), 0);
	while (dsn_mbox_next(mb, &r, &index) == 1) {
		const struct dsn_result *list[1] = { r };

		spent += now_seconds() - start;
		assert_int_equal(index, ++n);
		judge_file(t, key, (long)index, list, 1);
		dsn_result_free(r);
		start = now_seconds();
	}
	/* The end stays the end. */
	assert_int_equal(dsn_mbox_next(mb, &r, &index), 0);
	t->seconds += spent + now_seconds() - start;
	t->messages += n;
	dsn_mbox_free(mb);
	free(key);
	free(path);
}

static double pct(size_t ok, size_t total)
{
	return total ? 100.0 * (double)ok / (double)total : 100.0;
}

static void test_corpus(void **state)
{
	static const char *const dirs[] = { "bsd", "dos", "mac", "err", "not", "tmp" };
	struct tally t = { 0 };
	size_t n;
	char *mbox_dir = xasprintf("%s/mailbox", corpus_dir);
	char **mboxes = list_dir(mbox_dir, &n);

	(void)state;
	load_expected();
	assert_true(n_rows > 500);
	for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++)
		run_maildir(&t, dirs[i]);
	for (size_t i = 0; i < n; i++) {
		run_mbox(&t, mboxes[i]);
		free(mboxes[i]);
	}
	free(mboxes);
	free(mbox_dir);
	for (size_t i = 0; i < n_rows; i++)
		if (!rows[i].used)
			printf("MISMATCH %s: expected row for %s never judged (file missing?)\n",
			       rows[i].file, rows[i].recipient);
	printf("bounces: recipients %.1f%% (%zu/%zu), hard/soft %.1f%% (%zu/%zu), "
	       "status %.1f%% (%zu/%zu), reason %.1f%% (%zu/%zu)\n",
	       pct(t.rcpt_ok, t.rcpt_total), t.rcpt_ok, t.rcpt_total,
	       pct(t.class_ok, t.class_total), t.class_ok, t.class_total,
	       pct(t.status_ok, t.status_total), t.status_ok, t.status_total,
	       pct(t.reason_ok, t.reason_total), t.reason_ok, t.reason_total);
	printf("bounces: kind %.1f%% (%zu/%zu); %zu messages in %.3f s (%.0f messages/s), "
	       "%zu CRLF/CR twins differ, %zu non-bounces taken for bounces\n",
	       pct(t.kind_ok, t.kind_total), t.kind_ok, t.kind_total, t.messages, t.seconds,
	       t.seconds > 0 ? (double)t.messages / t.seconds : 0.0, t.twin_diffs,
	       t.not_bounces_bad);
	fflush(stdout);
	assert_true(pct(t.rcpt_ok, t.rcpt_total) >= 97.0);
	assert_true(pct(t.class_ok, t.class_total) >= 97.0);
	assert_true(pct(t.kind_ok, t.kind_total) >= 99.0);
	assert_int_equal(t.not_bounces_bad, 0);
	assert_int_equal(t.twin_diffs, 0);
}

/* Parses data[0..len) and checks the result is coherent: the parser must never crash. */
static void parse_damaged(const char *data, size_t len)
{
	struct dsn_result *res = NULL;
	struct err e = { 0 };

	if (dsn_parse_buffer(data, len, &res, &e) != 0) {
		assert_null(res);
		return;
	}
	if (res->kind == DSN_KIND_BOUNCE)
		assert_true(res->n_recipients > 0);
	json_decref(dsn_result_to_json(res));
	dsn_result_free(res);
}

/* Every corpus message cut short at seven points and with bytes overwritten. */
static void test_corpus_damaged(void **state)
{
	static const char junk[] = "\n\r\0:;<>@\"=-5";
	char *dir = xasprintf("%s/maildir/bsd", corpus_dir);
	size_t n;
	char **names = list_dir(dir, &n);

	(void)state;
	assert_true(n > 0);
	for (size_t i = 0; i < n; i++) {
		char *path = xasprintf("%s/%s", dir, names[i]);
		size_t len;
		char *data = scratch_read_file(path, &len);

		assert_non_null(data);
		for (size_t cut = 1; cut < 8; cut++)
			parse_damaged(data, len * cut / 8);
		for (size_t k = 0; k < len; k += 97)
			data[k] = junk[(k / 97) % (sizeof junk - 1)];
		parse_damaged(data, len);
		free(data);
		free(path);
		free(names[i]);
	}
	free(names);
	free(dir);
}

/* ---- what GMime is given: slimming changes no result ---------------------------------- */

/* Everything a result holds, as text (NULL: no message). The caller frees it. */
static char *result_text(const struct dsn_result *r)
{
	struct buf b;

	buf_init(&b);
	if (r == NULL) {
		buf_puts(&b, "no message");
		return buf_steal(&b);
	}
	buf_printf(&b, "kind %d id %s env %s fb %s\n", r->kind,
		   r->original_message_id ? r->original_message_id : "-",
		   r->envelope_recipient ? r->envelope_recipient : "-",
		   r->feedback_type ? r->feedback_type : "-");
	for (size_t i = 0; i < r->n_cutoff_headers; i++)
		buf_printf(&b, "header %s: %s\n", r->cutoff_headers[i].name,
			   r->cutoff_headers[i].value);
	for (size_t i = 0; i < r->n_recipients; i++) {
		const struct dsn_recipient *x = &r->recipients[i];

		buf_printf(&b, "rcpt %s %s %d %d %d %d %d %s [%s]\n", x->address, x->status,
			   x->reply_code, x->action, x->reason, x->class, x->stage,
			   x->remote_mta ? x->remote_mta : "-", x->diagnostic ? x->diagnostic : "-");
	}
	return buf_steal(&b);
}

/* The result of the whole message as GMime reads it, unslimmed: line ends made LF, NULs
 * spaces and a leading "From " line skipped, as dsn_parse_buffer does, then GMime's
 * parser and dsn_parse_message. */
static char *reference_text(const char *data, size_t len)
{
	struct buf lf;
	GMimeStream *stream;
	GMimeParser *parser;
	GMimeMessage *msg;
	struct dsn_result *r = NULL;
	size_t i = 0;
	char *text;

	if (len >= 5 && memcmp(data, "From ", 5) == 0) {
		while (i < len && data[i] != '\n' && data[i] != '\r')
			i++;
		i += i < len && data[i] == '\r' && i + 1 < len && data[i + 1] == '\n' ? 2 : 1;
		if (i > len)
			i = len;
	}
	buf_init(&lf);
	buf_append(&lf, "", 0);
	for (; i < len; i++) {
		char c = data[i];

		if (c == '\r' && i + 1 < len && data[i + 1] == '\n')
			continue;
		buf_putc(&lf, c == '\r' ? '\n' : c == '\0' ? ' ' : c);
	}
	stream = g_mime_stream_mem_new_with_buffer(lf.data, lf.len);
	parser = g_mime_parser_new_with_stream(stream);
	if ((msg = g_mime_parser_construct_message(parser, NULL)) != NULL) {
		r = dsn_parse_message(msg);
		g_object_unref(msg);
	}
	g_object_unref(parser);
	g_object_unref(stream);
	buf_free(&lf);
	text = result_text(r);
	dsn_result_free(r);
	return text;
}

static void assert_same_as_reference(const char *name, const char *data, size_t len)
{
	struct dsn_result *r = NULL;
	struct err e = { 0 };
	char *got, *want = reference_text(data, len);

	if (dsn_parse_buffer(data, len, &r, &e) != 0)
		assert_null(r);
	got = result_text(r);
	if (strcmp(got, want) != 0)
		fail_msg("%s (%zu bytes): slimmed parse differs:\n%s\nwhole:\n%s", name, len, got,
			 want);
	dsn_result_free(r);
	free(got);
	free(want);
}

/*
 * dsn_parse_buffer gives GMime a slimmed copy (fields nobody reads and returned messages'
 * bodies left out). Over every corpus message, cut short, and with its boundary lines
 * spoiled (trailing junk, white space), the result must be the one of the whole message.
 */
static void test_slimming_changes_nothing(void **state)
{
	static const char *const subs[] = { "bsd", "err", "not", "tmp" };

	(void)state;
	for (size_t d = 0; d < sizeof subs / sizeof subs[0]; d++) {
		char *dir = xasprintf("%s/maildir/%s", corpus_dir, subs[d]);
		size_t n;
		char **names = list_dir(dir, &n);

		for (size_t i = 0; i < n; i++) {
			char *path = xasprintf("%s/%s", dir, names[i]);
			size_t len, k = 0;
			char *data = scratch_read_file(path, &len);

			assert_non_null(data);
			assert_same_as_reference(path, data, len);
			assert_same_as_reference(path, data, len / 3);
			assert_same_as_reference(path, data, len * 2 / 3);
			/* Every other boundary-like line spoiled, so that GMime and the slimming
			 * must agree on what is and is not a boundary. */
			for (char *p = data; (p = memmem(p, len - (size_t)(p - data), "\n--", 3));
			     p += 3)
				if (k++ % 2 == 0 && p + 3 < data + len && p[3] != '\n' && p[3] != '\r')
					p[3] = p[3] == '-' ? ' ' : '-';
			assert_same_as_reference(path, data, len);
			free(data), free(path), free(names[i]);
		}
		free(names);
		free(dir);
	}
}

int main(void)
{
	const char *shared = getenv("CUTOFF_SHARED");
	const struct CMUnitTest tests[] = { cmocka_unit_test(test_corpus),
					    cmocka_unit_test(test_corpus_damaged),
					    cmocka_unit_test(test_slimming_changes_nothing) };
	DIR *d;
	int rc;

	if (shared == NULL || shared[0] == '\0') {
		printf("skipped: CUTOFF_SHARED is not set (it names the shared/ folder with the "
		       "corpora)\n");
		return 77;
	}
	corpus_dir = xasprintf("%s/corpora/bounces", shared);
	if ((d = opendir(corpus_dir)) == NULL) {
		printf("skipped: %s is absent (the bounce corpus)\n", corpus_dir);
		free(corpus_dir);
		return 77;
	}
	closedir(d);
	dsn_init();
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	dsn_shutdown();
	for (size_t i = 0; i < n_rows; i++) {
		free(rows[i].file);
		free(rows[i].recipient);
		free(rows[i].status);
		free(rows[i].reply);
		free(rows[i].reason);
		free(rows[i].hard_soft);
	}
	free(rows);
	free(corpus_dir);
	return rc;
}
