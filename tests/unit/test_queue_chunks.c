/* test_queue_chunks.c — queueing a wave a piece at a time (store_delivery_queue_chunk,
 * queue_due_some): a chunk is a span of recipient ids of every segment and campaign (no index
 * has the segment, db/015); every pending recipient of the segment gets exactly one delivery
 * whatever the span, nobody else gets one, a crash between two chunks skips nobody and queues
 * nobody twice, and the queue marks are the progress another process or the next run carries
 * on from. Also the per-segment counts, the other reader of a segment's rows. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "campaign.h"
#include "queue.h"
#include "schedule.h"
#include "store.h"
#include "store_internal.h" /* the connection itself: the ledger is checked with SQL */
#include "store_login.h"
#include "scratch.h"
#include "util.h"

#define N_OLD 40 /* pending recipients of segment "old" */

struct fx {
	const char *db;
	char *dir;
	struct store *s;
	struct campaign *c;
	int64_t t_id, u_id, t_seg[3], u_seg[3];
	int64_t completed_id; /* one of "old" who completed: never queued */
	int64_t now;
};

static void write_file(const char *dir, const char *rel, const char *text)
{
	char *path = xasprintf("%s/%s", dir, rel);
	FILE *f;

	assert_non_null(f = fopen(path, "w"));
	fputs(text, f);
	fclose(f);
	free(path);
}

static char *campaign_text(const char *name)
{
	return xasprintf(
		"name = \"%s\";\ntitle = \"Test %s\";\n"
		"from = \"Test Team <team@test.example.test>\";\n"
		"timezone = \"America/Los_Angeles\";\n"
		"announce = \"2003-08-18 09:00\";\nreminder_start = \"2003-09-18\";\n"
		"cutoff = \"2003-10-15\";\nupgrade_url = \"https://test.example.test/\";\n"
		"segments = (\n"
		"  { name = \"old\"; match = { client = \"c1\"; }; template = \"t\";"
		" target_version = \"5.0\"; },\n"
		"  { name = \"late\"; match = { client = \"c3\"; }; template = \"t\";\n"
		"    send = \"2003-09-25 09:00\"; target_version = \"2.0\"; },\n"
		"  { name = \"gone\"; match = { client = \"c2\"; }; template = \"t\";"
		" discontinued = true; }\n);\n",
		name, name);
}

/* Stores the campaign of text and its segments (seg: room for all of them); *keep gets the
 * campaign when asked for. */
static int64_t store_campaign(struct fx *f, const char *text, int64_t *seg,
			      struct campaign **keep)
{
	struct campaign *c = NULL;
	struct store_campaign row = {0};
	struct store_segment segs[16];
	struct err e = {0};

	if (campaign_load_text(&c, text, "t.cfg", f->dir, &e) != 0)
		fail_msg("campaign: %s", e.msg);
	assert_true(c->n_segments <= 16);
	row.name = c->name, row.title = c->title, row.timezone = c->timezone;
	row.announce_at = c->announce_at, row.reminder_start_at = c->reminder_start_at;
	row.cutoff_at = c->cutoff_at, row.definition = c->source_text;
	row.source_path = "t.cfg", row.templates_dir = f->dir, row.digest = "d";
	assert_int_equal(store_campaign_put(f->s, &row, 0, &e), 0);
	for (size_t i = 0; i < c->n_segments; i++)
		segs[i] = (struct store_segment){
			0, c->segments[i].name, (int)i, c->segments[i].template_name,
			c->segments[i].send_at, c->segments[i].target_version};
	assert_int_equal(store_segments_put(f->s, row.id, segs, c->n_segments, &e), 0);
	for (size_t i = 0; i < c->n_segments; i++)
		seg[i] = segs[i].id;
	if (keep != NULL)
		*keep = c;
	else
		campaign_free(c);
	return row.id;
}

static int64_t add_campaign(struct fx *f, const char *name, int64_t seg[3], bool keep)
{
	char *text = campaign_text(name);
	int64_t id = store_campaign(f, text, seg, keep ? &f->c : NULL);

	free(text);
	return id;
}

static int64_t add_user(struct store *s, int64_t cid, int64_t seg, const char *user)
{
	char *email = xasprintf("%s@users.example.test", user);
	struct store_recipient r = {.campaign_id = cid, .user_id = user, .email = email,
				    .client = "c1", .version = "4.6", .segment_id = seg};
	struct err e = {0};
	int64_t id = 0;

	if (store_recipient_insert(s, &r, 0, &id, &e) != 0)
		fail_msg("%s", e.msg);
	free(email);
	return id;
}

/*
 * Campaign t: N_OLD + 1 recipients in "old" (one of them completed), interleaved by id with
 * recipients of "gone" (due too) and of another campaign u, and 3 in "late" (not due yet).
 */
static int setup(void **state)
{
	struct fx *f = xcalloc(1, sizeof *f);
	struct err e = {0};
	char name[32], *tdir;
	bool changed;

	if (scratch_db(state) != 0)
		return -1;
	f->db = *state;
	f->dir = xstrdup(f->db);
	*strrchr(f->dir, '/') = '\0';
	tdir = xasprintf("%s/t", f->dir);
	assert_int_equal(mkdir(tdir, 0700), 0);
	free(tdir);
	write_file(f->dir, "t/subject.mustache", "Upgrade\n");
	write_file(f->dir, "t/text.mustache", "Upgrade\n");
	write_file(f->dir, "t/login.mustache", "Upgrade\n");
	if (store_open(&f->s, f->db, STORE_CREATE | STORE_MIGRATE, &e) != 0)
		fail_msg("%s", e.msg);
	f->t_id = add_campaign(f, "t", f->t_seg, true);
	f->u_id = add_campaign(f, "u", f->u_seg, false);
	for (int i = 0; i <= N_OLD; i++) {
		snprintf(name, sizeof name, "old%d", i);
		int64_t id = add_user(f->s, f->t_id, f->t_seg[0], name);
		if (i == 5)
			f->completed_id = id;
		snprintf(name, sizeof name, "other%d", i);
		add_user(f->s, f->u_id, f->u_seg[0], name);
		if (i % 4 == 0) {
			snprintf(name, sizeof name, "gone%d", i);
			add_user(f->s, f->t_id, f->t_seg[2], name);
		}
		if (i % 15 == 0) {
			snprintf(name, sizeof name, "late%d", i);
			add_user(f->s, f->t_id, f->t_seg[1], name);
		}
	}
	assert_int_equal(store_recipient_complete(f->s, f->t_id, f->completed_id, 0, "{}",
						  &changed, NULL, &e), 0);
	assert_true(changed);
	assert_int_equal(schedule_parse_instant("2003-08-26T17:00:00Z", &f->now, &e), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	void *db = (void *)f->db;

	static const char *const files[] = {"t/subject.mustache", "t/text.mustache",
					    "t/login.mustache", "t"};

	store_close(f->s);
	campaign_free(f->c);
	for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
		char *path = xasprintf("%s/%s", f->dir, files[i]);
		remove(path);
		free(path);
	}
	free(f->dir);
	free(f);
	return scratch_db_remove(&db);
}

/* Every pending recipient of campaign t's segments named in segments (an SQL list) has
 * exactly one initial delivery, and nobody else has one. */
static void assert_each_once(struct store *s, const char *segments, int64_t expected)
{
	char *missing = xasprintf("SELECT count(*) FROM recipient r JOIN segment g"
				  " ON g.id = r.segment_id JOIN campaign c ON c.id = r.campaign_id"
				  " WHERE c.name = 't' AND g.name IN (%s) AND r.state = 'pending'"
				  " AND NOT EXISTS (SELECT 1 FROM delivery d"
				  "                 WHERE d.recipient_id = r.id)", segments);

	assert_int_equal(scratch_int(s, "SELECT count(*) FROM delivery WHERE kind = 'initial'"),
			 expected);
	assert_int_equal(scratch_int(s, "SELECT count(DISTINCT recipient_id) FROM delivery"),
			 expected);
	assert_int_equal(scratch_int(s, missing), 0);
	free(missing);
	assert_int_equal(scratch_int(s, "SELECT count(*) FROM delivery d JOIN recipient r"
				 " ON r.id = d.recipient_id WHERE r.state <> 'pending'"), 0);
}

/* Pending recipients of campaign t's segment named seg with an id up to id. */
static int64_t pending_upto(struct store *s, const char *seg, int64_t id)
{
	char *sql = xasprintf("SELECT count(*) FROM recipient r JOIN segment g"
			      " ON g.id = r.segment_id JOIN campaign c ON c.id = r.campaign_id"
			      " WHERE c.name = 't' AND g.name = '%s' AND r.state = 'pending'"
			      " AND r.id <= %lld", seg, (long long)id);
	int64_t n = scratch_int(s, sql);

	free(sql);
	return n;
}

static int64_t max_id(struct store *s)
{
	return scratch_int(s, "SELECT max(id) FROM recipient");
}

/* The queue mark of segment seg_id's initial e-mail (-1: none). */
static int64_t mark_of(struct store *s, int64_t seg_id)
{
	char *sql = xasprintf("SELECT coalesce((SELECT watermark FROM queue_mark"
			      " WHERE segment_id = %lld AND kind = 'initial'), -1)",
			      (long long)seg_id);
	int64_t mark = scratch_int(s, sql);

	free(sql);
	return mark;
}

/* One chunk of segment seg_id's initial e-mail on s, in a transaction of its own. */
static struct store_queue_step chunk_of(struct fx *f, struct store *s, int64_t seg_id,
					int64_t max_ids)
{
	struct store_queue_chunk q = {f->t_id, "initial", 0, 1, {seg_id}, {1}, max_ids};
	struct store_queue_step step;
	struct err e = {0};

	assert_int_equal(store_begin(s, &e), 0);
	assert_int_equal(store_delivery_queue_chunk(s, &q, f->now, &step, &e), 0);
	assert_int_equal(store_commit(s, &e), 0);
	return step;
}

/* One chunk of segment "old". */
static void chunk(struct fx *f, int64_t max_ids, int64_t *queued, bool *done)
{
	struct store_queue_step step = chunk_of(f, f->s, f->t_seg[0], max_ids);

	*queued = step.queued, *done = step.done;
}

/* Whatever the span, the chunks add up to the segment, each pending recipient once: a chunk
 * spans max_ids ids (the last one what is left), so the calls are the ids over the span. */
static void test_chunks_add_up(void **state)
{
	struct fx *f = *state;
	int64_t sizes[] = {1, 7, N_OLD + 1, 1000}, total, last = max_id(f->s);
	struct store_queue_step step;
	int calls;

	for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
		sqlite3_exec(f->s->db, "DELETE FROM delivery; DELETE FROM queue_mark", NULL, NULL,
			     NULL);
		total = 0, calls = 0, step.done = false;
		while (!step.done && calls++ < 1000) {
			int64_t from = mark_of(f->s, f->t_seg[0]);

			step = chunk_of(f, f->s, f->t_seg[0], sizes[i]);
			from = from < 0 ? 0 : from;
			assert_int_equal(step.looked_at, step.done ? last - from : sizes[i]);
			assert_int_equal(mark_of(f->s, f->t_seg[0]), from + step.looked_at);
			assert_int_equal(step.queued, pending_upto(f->s, "old", from + step.looked_at) -
							      pending_upto(f->s, "old", from));
			total += step.queued;
		}
		assert_true(step.done);
		assert_int_equal(mark_of(f->s, f->t_seg[0]), last);
		assert_int_equal(total, N_OLD); /* N_OLD + 1 recipients, one completed */
		assert_int_equal(calls, (last + sizes[i] - 1) / sizes[i]);
		step = chunk_of(f, f->s, f->t_seg[0], sizes[i]);
		assert_int_equal(step.queued, 0);
		assert_int_equal(step.looked_at, 0);
		assert_true(step.done);
	}
	assert_int_equal(scratch_int(f->s, "SELECT count(*) FROM delivery"), N_OLD);
}

/*
 * Both due segments of t, interleaved by id with each other, with "late" (not queued here) and
 * with campaign u, queued in spans of 3 ids, a chunk of one and a chunk of the other in turn:
 * each pending recipient of the two gets its delivery once and nobody else gets one, and both
 * marks reach the highest id. Then a run dies with a chunk of each in its transaction, and
 * another connection resumes with other spans from the marks; once the marks are dropped (as a
 * move into a segment drops them), queueing everything again from the first id adds nothing.
 */
static void test_interleaved_segments(void **state)
{
	struct fx *f = *state;
	int64_t gone = pending_upto(f->s, "gone", INT64_MAX), last = max_id(f->s), queued = 0;
	struct store_queue_chunk q = {f->t_id, "initial", 0, 1, {f->t_seg[2]}, {1}, 3};
	struct store_queue_step a = {0, 0, false}, b = {0, 0, false}, step;
	struct store *next = NULL;
	struct err e = {0};

	assert_true(gone > 1);
	for (int i = 0; i < 4; i++) { /* part of each: 12 ids */
		a = chunk_of(f, f->s, f->t_seg[0], 3), b = chunk_of(f, f->s, f->t_seg[2], 3);
		assert_true(a.queued <= 3 && b.queued <= 3 && !a.done && !b.done);
		queued += a.queued + b.queued;
	}
	assert_int_equal(queued, pending_upto(f->s, "old", 12) + pending_upto(f->s, "gone", 12));
	assert_int_equal(store_begin(f->s, &e), 0); /* killed before its commit */
	assert_int_equal(store_delivery_queue_chunk(f->s, &q, f->now, &step, &e), 0);
	q.segment_ids[0] = f->t_seg[0];
	assert_int_equal(store_delivery_queue_chunk(f->s, &q, f->now, &step, &e), 0);
	store_rollback(f->s);
	assert_int_equal(mark_of(f->s, f->t_seg[0]), 12);
	assert_int_equal(mark_of(f->s, f->t_seg[2]), 12);

	assert_int_equal(store_open(&next, f->db, 0, &e), 0);
	while (!a.done || !b.done) {
		if (!a.done)
			a = chunk_of(f, next, f->t_seg[0], 5);
		if (!b.done)
			b = chunk_of(f, next, f->t_seg[2], 2);
		assert_true(a.queued <= 5 && b.queued <= 2);
	}
	assert_int_equal(mark_of(f->s, f->t_seg[0]), last);
	assert_int_equal(mark_of(f->s, f->t_seg[2]), last);
	assert_each_once(f->s, "'old', 'gone'", N_OLD + gone);
	assert_int_equal(scratch_int(f->s, "SELECT count(*) FROM delivery WHERE campaign_id <> "
					   "(SELECT id FROM campaign WHERE name = 't')"), 0);

	sqlite3_exec(f->s->db, "DELETE FROM queue_mark", NULL, NULL, NULL);
	a = chunk_of(f, next, f->t_seg[0], 0), b = chunk_of(f, next, f->t_seg[2], 7);
	assert_true(a.done && !b.done);
	assert_int_equal(a.looked_at, last);
	assert_int_equal(a.queued + b.queued, 0);
	store_close(next);
	assert_each_once(f->s, "'old', 'gone'", N_OLD + gone);
}

/*
 * Two segments in one chunk, their marks apart: "old" queued alone up to id 12 (and one of its
 * deliveries then deleted behind the store's back), "gone" not at all. Chunks of both start
 * at the lower mark and queue each segment above its own mark only: gone's recipients from the
 * first id, old's above 12 (the deleted one stays missing), each due at its own segment's time;
 * old's mark stays while the spans are below it, and both marks end at the highest id.
 */
static void test_joint_chunks(void **state)
{
	struct fx *f = *state;
	struct store_queue_chunk q = {f->t_id, "initial", 0, 2, {f->t_seg[0], f->t_seg[2]},
				      {100, 200}, 5};
	int64_t gone = pending_upto(f->s, "gone", INT64_MAX), first, total = 0, to = 0;
	struct store_queue_step step = chunk_of(f, f->s, f->t_seg[0], 12); /* due at 1 */
	struct err e = {0};
	char *sql;

	first = step.queued;
	assert_int_equal(first, pending_upto(f->s, "old", 12));
	sqlite3_exec(f->s->db, "DELETE FROM delivery WHERE id = (SELECT min(id) FROM delivery)",
		     NULL, NULL, NULL);
	for (int calls = 0; !step.done && calls < 100; calls++) {
		assert_int_equal(store_begin(f->s, &e), 0);
		assert_int_equal(store_delivery_queue_chunk(f->s, &q, f->now, &step, &e), 0);
		assert_int_equal(store_commit(f->s, &e), 0);
		to += step.looked_at;
		assert_int_equal(mark_of(f->s, f->t_seg[0]), to > 12 ? to : 12);
		assert_int_equal(mark_of(f->s, f->t_seg[2]), to);
		total += step.queued;
	}
	assert_true(step.done);
	assert_int_equal(to, max_id(f->s));
	assert_int_equal(total, N_OLD - first + gone);
	assert_int_equal(scratch_int(f->s, "SELECT count(*) FROM delivery"), N_OLD - 1 + gone);
	assert_int_equal(scratch_int(f->s, "SELECT count(*) - count(DISTINCT recipient_id)"
				 " FROM delivery"), 0);
	sql = xasprintf("SELECT count(*) FROM delivery d JOIN recipient r ON r.id = d.recipient_id"
			" WHERE d.due_at <> CASE WHEN r.segment_id = %lld THEN 200"
			" WHEN r.id <= 12 THEN 1 ELSE 100 END", (long long)f->t_seg[2]);
	assert_int_equal(scratch_int(f->s, sql), 0);
	free(sql);
	sql = xasprintf("SELECT count(*) FROM delivery d JOIN recipient r ON r.id = d.recipient_id"
			" WHERE r.segment_id NOT IN (%lld, %lld) OR r.state <> 'pending'",
			(long long)f->t_seg[0], (long long)f->t_seg[2]);
	assert_int_equal(scratch_int(f->s, sql), 0);
	free(sql);
}

/* A campaign of n segments s0, s1 ... (clients k0, k1 ...), all due at the announcement. */
static char *segments_text(const char *name, int n)
{
	struct buf b;

	buf_init(&b);
	buf_printf(&b, "name = \"%s\";\ntitle = \"Test %s\";\n"
		   "from = \"Test Team <team@test.example.test>\";\n"
		   "timezone = \"America/Los_Angeles\";\n"
		   "announce = \"2003-08-18 09:00\";\nreminder_start = \"2003-09-18\";\n"
		   "cutoff = \"2003-10-15\";\nupgrade_url = \"https://test.example.test/\";\n"
		   "segments = (\n", name, name);
	for (int i = 0; i < n; i++)
		buf_printf(&b, "  { name = \"s%d\"; match = { client = \"k%d\"; }; template = \"t\";"
			   " target_version = \"5.0\"; }%s\n", i, i, i + 1 < n ? "," : "");
	buf_puts(&b, ");\n");
	return b.data;
}

/*
 * More due segments than one chunk takes (STORE_QUEUE_SEGMENTS): queue_due_some queues them a
 * batch at a time, in budgets of a few deliveries, until done; each pending recipient of every
 * segment once, the other campaigns' none, every mark at the highest id; then nothing more.
 */
static void test_many_segments(void **state)
{
	struct fx *f = *state;
	enum { N_SEG = STORE_QUEUE_SEGMENTS + 3, PER_SEG = 4 };
	int64_t seg[N_SEG], w_id;
	struct campaign *w = NULL;
	struct queue_counts n, all = {0, 0, 0};
	struct err e = {0};
	char *text = segments_text("w", N_SEG), name[32], *sql;
	bool done = false;
	int calls = 0;

	w_id = store_campaign(f, text, seg, &w);
	free(text);
	for (int i = 0; i < N_SEG * PER_SEG; i++) {
		snprintf(name, sizeof name, "w%d", i);
		add_user(f->s, w_id, seg[i % N_SEG], name);
	}
	while (!done && calls++ < 1000) {
		assert_int_equal(store_begin(f->s, &e), 0);
		assert_int_equal(queue_due_some(f->s, w, w_id, f->now, 3, &n, &done, &e), 0);
		assert_int_equal(store_commit(f->s, &e), 0);
		assert_true(n.initial < 2 * 3);
		all.initial += n.initial;
	}
	assert_true(done);
	assert_int_equal(all.initial, N_SEG * PER_SEG);
	assert_int_equal(scratch_int(f->s, "SELECT count(*) FROM delivery"), N_SEG * PER_SEG);
	sql = xasprintf("SELECT count(*) FROM delivery WHERE campaign_id <> %lld OR recipient_id"
			" NOT IN (SELECT id FROM recipient WHERE campaign_id = %lld)",
			(long long)w_id, (long long)w_id);
	assert_int_equal(scratch_int(f->s, sql), 0);
	free(sql);
	assert_int_equal(scratch_int(f->s, "SELECT count(DISTINCT recipient_id) FROM delivery"),
			 N_SEG * PER_SEG);
	for (int i = 0; i < N_SEG; i++)
		assert_int_equal(mark_of(f->s, seg[i]), max_id(f->s));
	assert_int_equal(queue_due(f->s, w, w_id, f->now, &n, &e), 0);
	assert_int_equal(n.initial, 0);
	campaign_free(w);
}

/*
 * A run dies between two chunks: the first is committed, the second rolled back. The next run
 * (another connection) carries on from the mark: what the first chunk queued is not queued
 * again, what the second would have queued is, and so is a recipient imported meanwhile.
 */
static void test_crash_between_chunks(void **state)
{
	struct fx *f = *state;
	struct store_queue_chunk q = {f->t_id, "initial", 0, 1, {f->t_seg[0]}, {1}, 10};
	struct store_queue_step step;
	struct store *next = NULL;
	struct err e = {0};
	int64_t queued, first, mark;
	bool done;

	chunk(f, 10, &first, &done);
	assert_int_equal(first, pending_upto(f->s, "old", 10)); /* old0..old3 */
	assert_false(done);
	mark = scratch_int(f->s, "SELECT watermark FROM queue_mark");
	assert_int_equal(mark, 10);
	assert_int_equal(store_begin(f->s, &e), 0);
	assert_int_equal(store_delivery_queue_chunk(f->s, &q, f->now, &step, &e), 0);
	assert_int_equal(step.queued, pending_upto(f->s, "old", 20) - first);
	store_rollback(f->s);          /* killed before its commit */
	assert_int_equal(scratch_int(f->s, "SELECT watermark FROM queue_mark"), mark);
	add_user(f->s, f->t_id, f->t_seg[0], "imported-meanwhile");

	assert_int_equal(store_open(&next, f->db, 0, &e), 0);
	assert_int_equal(store_delivery_queue_segment(next, f->t_id, f->t_seg[0], "initial", 0, 1,
						      f->now, &queued, &e), 0);
	assert_int_equal(queued, N_OLD + 1 - first);
	store_close(next);
	assert_each_once(f->s, "'old'", N_OLD + 1);
}

/* A chunk carries on above the mark and does not look below it again: that is what makes
 * each chunk cost its own span, not the table's. (Here a delivery below the mark is deleted
 * behind the store's back, which nothing in cutoff does: it stays missing until a mark drops.) */
static void test_carries_on_from_the_mark(void **state)
{
	struct fx *f = *state;
	int64_t queued, first = pending_upto(f->s, "old", 10);
	bool done;

	chunk(f, 10, &queued, &done);
	assert_int_equal(queued, first);
	sqlite3_exec(f->s->db, "DELETE FROM delivery WHERE id = (SELECT min(id) FROM delivery)",
		     NULL, NULL, NULL);
	chunk(f, 0, &queued, &done); /* the rest, in one piece */
	assert_true(done);
	assert_int_equal(queued, N_OLD - first);
	assert_int_equal(scratch_int(f->s, "SELECT count(*) FROM delivery"), N_OLD - 1);
	/* A move into the segment drops the marks: the next queueing looks at everyone. */
	sqlite3_exec(f->s->db, "DELETE FROM queue_mark", NULL, NULL, NULL);
	chunk(f, 0, &queued, &done);
	assert_int_equal(queued, 1);
	assert_each_once(f->s, "'old'", N_OLD);
}

/* Someone moved into the segment below the mark between two chunks is queued all the same:
 * the move drops the marks (db/010), and the next chunk starts over from the first id. */
static void test_moved_in_below_the_mark(void **state)
{
	struct fx *f = *state;
	struct err e = {0};
	int64_t queued, total, moved;
	char *sql;
	bool done;

	moved = scratch_int(f->s, "SELECT min(r.id) FROM recipient r JOIN segment g"
			" ON g.id = r.segment_id WHERE g.name = 'gone'");
	chunk(f, 20, &total, &done);
	assert_true(scratch_int(f->s, "SELECT watermark FROM queue_mark") > moved);
	assert_int_equal(store_recipient_set_segment(f->s, moved, f->t_seg[0], 0, &e), 0);
	assert_int_equal(scratch_int(f->s, "SELECT count(*) FROM queue_mark"), 0);
	for (int calls = 0; !done && calls < 100; calls++) {
		chunk(f, 20, &queued, &done);
		total += queued;
	}
	assert_true(done);
	assert_int_equal(total, N_OLD + 1);
	sql = xasprintf("SELECT count(*) FROM delivery WHERE recipient_id = %lld",
			(long long)moved);
	assert_int_equal(scratch_int(f->s, sql), 1);
	free(sql);
	assert_each_once(f->s, "'old'", N_OLD + 1);
}

/* queue_due_some: a budget at a time over every due segment, done once all is in; then the
 * same as queue_due (nothing more to add). */
static void test_queue_due_some(void **state)
{
	struct fx *f = *state;
	struct queue_counts n, all = {0, 0, 0};
	struct err e = {0};
	int64_t gone = scratch_int(f->s, "SELECT count(*) FROM recipient r JOIN segment g"
			       " ON g.id = r.segment_id WHERE g.name = 'gone'");
	bool done = false;
	int calls = 0;

	while (!done && calls++ < 100) {
		assert_int_equal(store_begin(f->s, &e), 0);
		assert_int_equal(queue_due_some(f->s, f->c, f->t_id, f->now, 6, &n, &done, &e), 0);
		assert_int_equal(store_commit(f->s, &e), 0);
		assert_true(n.initial < 2 * 6); /* chunks of 6 ids until 6 or more are queued */
		all.initial += n.initial;
		if (calls == 1)
			assert_false(done);
	}
	assert_true(done);
	assert_true(calls >= (N_OLD + (int)gone) / (2 * 6 - 1));
	assert_int_equal(all.initial, N_OLD + gone);
	assert_each_once(f->s, "'old', 'gone'", N_OLD + gone);
	assert_int_equal(queue_due(f->s, f->c, f->t_id, f->now, &n, &e), 0);
	assert_int_equal(n.initial, 0);
	assert_int_equal(scratch_int(f->s, "SELECT count(*) FROM campaign"
				 " WHERE name = 't' AND sending_started_at IS NOT NULL"), 1);
}

/* A call looks at a bounded span of ids when it finds nobody to queue (here everyone of the
 * due segments has completed): it stops with its budget of ids spent, not at the end of the
 * table, and the next calls carry on to the end. */
static void test_queue_due_some_bounded(void **state)
{
	struct fx *f = *state;
	struct queue_counts n;
	struct err e = {0};
	int64_t mark;
	char *sql = xasprintf("UPDATE recipient SET state = 'completed' WHERE segment_id IN"
			      " (%lld, %lld)", (long long)f->t_seg[0], (long long)f->t_seg[2]);
	bool done = false;
	int calls = 1;

	assert_int_equal(sqlite3_exec(f->s->db, sql, NULL, NULL, NULL), SQLITE_OK);
	free(sql);
	assert_int_equal(queue_due_some(f->s, f->c, f->t_id, f->now, 2, &n, &done, &e), 0);
	mark = mark_of(f->s, f->t_seg[0]);
	assert_false(done);
	assert_int_equal(n.initial, 0);
	assert_true(mark > 0 && mark < max_id(f->s) && mark % 2 == 0);
	assert_int_equal(mark_of(f->s, f->t_seg[2]), mark);
	while (!done && calls++ < 1000) {
		assert_int_equal(queue_due_some(f->s, f->c, f->t_id, f->now, 2, &n, &done, &e), 0);
		assert_int_equal(n.initial, 0);
	}
	assert_true(done);
	assert_true(calls > 2);
	assert_int_equal(mark_of(f->s, f->t_seg[0]), max_id(f->s));
	assert_int_equal(scratch_int(f->s, "SELECT count(*) FROM delivery"), 0);
}

/* One row of store_segment_counts: its segment's name (NULL: no segment) and its counts. */
static void assert_counts(const struct store_segment_counts *v, int64_t id, const char *name,
			  int64_t total, int64_t pending, int64_t completed)
{
	assert_int_equal(v->segment_id, id);
	if (name == NULL)
		assert_null(v->name);
	else
		assert_string_equal(v->name, name);
	assert_int_equal(v->total, total);
	assert_int_equal(v->pending, pending);
	assert_int_equal(v->completed, completed);
}

/*
 * The per-segment counts read every recipient of the campaign once: segments in position
 * order with the "no segment" row last, a segment nobody is in (here "late", after its
 * recipients became unaffected) counted zero, the unaffected counted apart, and another
 * campaign's recipients (interleaved by id) not counted.
 */
static void test_segment_counts(void **state)
{
	struct fx *f = *state;
	int64_t gone = pending_upto(f->s, "gone", INT64_MAX), late[8];
	struct store_segment_counts *v = NULL;
	struct err e = {0};
	size_t n = 0, n_late = 0;
	sqlite3_stmt *st;

	assert_int_equal(sqlite3_prepare_v2(f->s->db, "SELECT id FROM recipient WHERE segment_id = ?1",
					    -1, &st, NULL), SQLITE_OK);
	sqlite3_bind_int64(st, 1, f->t_seg[1]);
	while (sqlite3_step(st) == SQLITE_ROW && n_late < 8)
		late[n_late++] = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	assert_int_equal(n_late, 3);
	for (size_t i = 0; i < n_late; i++)
		assert_int_equal(store_recipient_set_segment(f->s, late[i], 0, 0, &e), 0);

	assert_int_equal(store_segment_counts(f->s, f->t_id, &v, &n, &e), 0);
	assert_int_equal(n, 4);
	assert_counts(&v[0], f->t_seg[0], "old", N_OLD + 1, N_OLD, 1);
	assert_counts(&v[1], f->t_seg[1], "late", 0, 0, 0);
	assert_counts(&v[2], f->t_seg[2], "gone", gone, gone, 0);
	assert_counts(&v[3], 0, NULL, 3, 0, 0);
	store_segment_counts_free(v, n);

	assert_int_equal(store_segment_counts(f->s, f->u_id, &v, &n, &e), 0);
	assert_int_equal(n, 4);
	assert_counts(&v[0], f->u_seg[0], "old", N_OLD + 1, N_OLD + 1, 0);
	assert_counts(&v[1], f->u_seg[1], "late", 0, 0, 0);
	assert_counts(&v[2], f->u_seg[2], "gone", 0, 0, 0);
	assert_counts(&v[3], 0, NULL, 0, 0, 0);
	store_segment_counts_free(v, n);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_chunks_add_up, setup, teardown),
		cmocka_unit_test_setup_teardown(test_interleaved_segments, setup, teardown),
		cmocka_unit_test_setup_teardown(test_joint_chunks, setup, teardown),
		cmocka_unit_test_setup_teardown(test_many_segments, setup, teardown),
		cmocka_unit_test_setup_teardown(test_crash_between_chunks, setup, teardown),
		cmocka_unit_test_setup_teardown(test_carries_on_from_the_mark, setup, teardown),
		cmocka_unit_test_setup_teardown(test_moved_in_below_the_mark, setup, teardown),
		cmocka_unit_test_setup_teardown(test_queue_due_some, setup, teardown),
		cmocka_unit_test_setup_teardown(test_queue_due_some_bounded, setup, teardown),
		cmocka_unit_test_setup_teardown(test_segment_counts, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
