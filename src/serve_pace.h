/* serve_pace.h — sizes each step of the service's bulks by its time, not a fixed count of keys
 * (docs/api.md, Performance, eighth pass). */
#ifndef CUTOFF_SERVE_PACE_H
#define CUTOFF_SERVE_PACE_H

#include <stddef.h>
#include <stdint.h>

#define SERVE_PACE_PARTS 8 /* parts of a bulk paced apart (store_login_bulk_part's values) */

/* How many keys the next step of each part of a bulk takes, learnt from the steps before. */
struct serve_pace {
	size_t keys[SERVE_PACE_PARTS];
	int64_t target_ns;       /* the time a step should take */
	size_t min_keys, max_keys;
};

/* Every part starts at start_keys; min_keys <= start_keys <= max_keys, min_keys >= 1,
 * target_ns > 0 (else the values are clamped to that). */
void serve_pace_init(struct serve_pace *p, int64_t target_ns, size_t min_keys, size_t start_keys,
		     size_t max_keys);

/* The keys for the next step of part (0 .. SERVE_PACE_PARTS-1; another value: min_keys). */
size_t serve_pace_keys(const struct serve_pace *p, int part);

/* A step of part took ns for keys keys (a whole step: one that ended its part took fewer and
 * should not be reported): the part's next size moves halfway towards the size that would have
 * taken target_ns, within [min_keys, max_keys]. */
void serve_pace_done(struct serve_pace *p, int part, size_t keys, int64_t ns);

#endif
