/* serve_pace.c — sizes each step of the service's bulks by its time (see serve_pace.h). */
#include "serve_pace.h"

static size_t clamp_keys(const struct serve_pace *p, double keys)
{
	if (keys <= (double)p->min_keys)
		return p->min_keys;
	if (keys >= (double)p->max_keys)
		return p->max_keys;
	return (size_t)keys;
}

void serve_pace_init(struct serve_pace *p, int64_t target_ns, size_t min_keys, size_t start_keys,
		     size_t max_keys)
{
	p->target_ns = target_ns > 0 ? target_ns : 1;
	p->min_keys = min_keys > 0 ? min_keys : 1;
	p->max_keys = max_keys > p->min_keys ? max_keys : p->min_keys;
	for (int i = 0; i < SERVE_PACE_PARTS; i++)
		p->keys[i] = clamp_keys(p, (double)start_keys);
}

size_t serve_pace_keys(const struct serve_pace *p, int part)
{
	return part >= 0 && part < SERVE_PACE_PARTS ? p->keys[part] : p->min_keys;
}

void serve_pace_done(struct serve_pace *p, int part, size_t keys, int64_t ns)
{
	double fit;

	if (part < 0 || part >= SERVE_PACE_PARTS || keys == 0)
		return;
	/* halfway: one step preempted for a while does not send the part to min_keys at once */
	fit = (double)keys * (double)p->target_ns / (double)(ns > 0 ? ns : 1);
	p->keys[part] = clamp_keys(p, ((double)p->keys[part] + fit) / 2);
}
