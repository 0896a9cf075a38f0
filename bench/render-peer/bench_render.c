/* bench_render.c — messages rendered and composed per second by render_message, one core, for bench/render. */
/*
 * Usage: bench_render CAMPAIGN.cfg [SECONDS] [RECIPIENTS]
 * Loads the campaign and its templates, makes RECIPIENTS (default 10,000) synthetic
 * recipients spread over every segment, ten locales and their time zones (the same list
 * bench/render-peer/peer.js builds), then renders and composes their messages in a loop
 * for SECONDS (default 5) with an unsubscribe token per message, as the sender would;
 * then for SECONDS more rendering the parts only (render_parts: templates, context, dates,
 * token; no mime_compose). Prints one JSON line for each: what, messages, seconds,
 * messages_per_second, average bytes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "campaign.h"
#include "mime.h"
#include "render.h"
#include "util.h"

/* Kept in step with peer.js. */
static const struct {
	const char *locale, *tz, *name, *country;
} people[] = {
	{"en-US", "America/New_York", "John Smith", "US"},
	{"en-GB", "Europe/London", "Amelia Clarke", "GB"},
	{"fr-FR", "Europe/Paris", "François Dubois", "FR"},
	{"de-DE", "Europe/Berlin", "Jürgen Müller", "DE"},
	{"pt-BR", "America/Sao_Paulo", "João Silva", "BR"},
	{"es-ES", "Europe/Madrid", "María Núñez", "ES"},
	{"ja-JP", "Asia/Tokyo", "山田 太郎", "JP"},
	{"it-IT", "Europe/Rome", "Giovanni Rossi", "IT"},
	{"nl-NL", "Europe/Amsterdam", "", "NL"},
	{"en-US", "America/Los_Angeles", "Chris O'Neil", "US"},
};

static const struct {
	const char *client, *version, *platform, *os;
} clients[] = {
	{"msn-messenger", "4.6", "windows", "XP"},
	{"windows-messenger", "4.7.300", "windows", "XP"},
	{"msn-messenger", "2.5", "mac", "9.2.2"},
	{"msn-messenger", "3.0", "mac", "10.2.6"},
	{"msn-messenger", "2.0", "mac", "8.6"},
	{"msn-messenger", "1.0", "msn-companion", ""},
	{"trillian", "2.0", "windows", "XP"},
};

struct person {
	struct store_recipient r;
	const struct segment *g;
	char user_id[32], email[64], attrs[64];
};

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void person_make(struct person *p, const struct campaign *c, size_t i)
{
	size_t k = i % (sizeof people / sizeof people[0]), m = i % (sizeof clients / sizeof clients[0]);
	struct recipient_fields f = {clients[m].client, clients[m].version, clients[m].platform,
				     clients[m].os};

	snprintf(p->user_id, sizeof p->user_id, "u%zu", i);
	snprintf(p->email, sizeof p->email, "user%zu@users.example.test", i);
	snprintf(p->attrs, sizeof p->attrs, "{\"country\":\"%s\"}", people[k].country);
	memset(&p->r, 0, sizeof p->r);
	p->r.id = (int64_t)i + 1;
	p->r.user_id = p->user_id;
	p->r.email = p->email;
	p->r.name = people[k].name[0] ? people[k].name : NULL;
	p->r.locale = people[k].locale;
	p->r.timezone = people[k].tz;
	p->r.client = f.client, p->r.version = f.version, p->r.platform = f.platform;
	p->r.os = f.os[0] ? f.os : NULL;
	p->r.attrs = p->attrs;
	p->g = campaign_match(c, &f);
}

int main(int argc, char **argv)
{
	static const unsigned char secret[] = "bench secret, 32 bytes long ....";
	struct render_options o = {secret, sizeof secret - 1, false};
	struct campaign *c = NULL;
	struct render_templates *t = NULL;
	struct render_result res;
	struct render *r;
	struct err e = {0};
	double seconds = argc > 2 ? atof(argv[2]) : 5.0, t0, elapsed;
	size_t n = argc > 3 ? (size_t)atol(argv[3]) : 10000, done = 0, bytes = 0;
	struct person *ps;

	if (argc < 2 || n == 0) {
		fprintf(stderr, "usage: bench_render CAMPAIGN.cfg [SECONDS] [RECIPIENTS]\n");
		return 64;
	}
	mime_init();
	if (campaign_load_file(&c, argv[1], NULL, &e) != 0 ||
	    render_templates_load(&t, c, &e) != 0) {
		fprintf(stderr, "bench_render: %s\n", e.msg);
		return 78;
	}
	ps = xcalloc(n, sizeof *ps);
	for (size_t i = 0; i < n; i++)
		person_make(&ps[i], c, i);
	r = render_new(t, &o);
	render_result_init(&res);
	for (int mode = 0; mode < 2; mode++) {
		done = 0, bytes = 0, t0 = now_s();
		do {
			for (int k = 0; k < 1000; k++, done++) {
				struct person *p = &ps[done % n];
				struct render_request q = {&p->r, p->g, c->announce_at, NULL, NULL,
							   NULL, NULL};
				if ((mode == 0 ? render_message(r, &q, &res, &e)
					       : render_parts(r, &q, &res, &e)) != 0) {
					fprintf(stderr, "bench_render: %s\n", e.msg);
					return 70;
				}
				bytes += mode == 0 ? res.message.len
						   : res.part[RENDER_SUBJECT].len +
							     res.part[RENDER_TEXT].len +
							     res.part[RENDER_HTML].len;
			}
			elapsed = now_s() - t0;
		} while (elapsed < seconds);
		printf("{\"what\": \"%s\", \"messages\": %zu, \"seconds\": %.3f,"
		       " \"messages_per_second\": %.0f, \"average_bytes\": %.0f}\n",
		       mode == 0 ? "render+compose" : "render only", done, elapsed,
		       (double)done / elapsed, (double)bytes / (double)done);
	}
	render_result_free(&res);
	render_free(r);
	render_templates_free(t);
	free(ps);
	campaign_free(c);
	mime_shutdown();
	return 0;
}
