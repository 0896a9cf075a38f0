/* store_pcache.c — cutoff's SQLite page cache (see store_pcache.h for why and what). */
#include "store_pcache.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "util.h"

#define CHUNK_BITS 10 /* page numbers per index chunk: 1,024 pointers, 8 KiB */
#define CHUNK_KEYS (1u << CHUNK_BITS)
#define SLAB_MIN ((size_t)64 << 10)
#define SLAB_MAX ((size_t)4 << 20)
#define HUGE_PAGE ((size_t)2 << 20)
#define QUEUE_MIN 64

/* One cached page: SQLite's view of it first, then ours. A slab slot holds the page's content,
 * this, then the extra bytes: SQLite's page header starts in the cache line this ends in, so
 * the line a lookup brings in is the one SQLite reads next. */
struct pc_page {
	sqlite3_pcache_page base; /* pBuf: the content; pExtra: SQLite's header */
	unsigned key;             /* the page number */
	bool cached;              /* in the index (false: on the free list) */
	bool pinned;
	uint32_t queued;          /* items in the eviction queue that name this page */
	struct pc_page *next_free;
};

struct pc_slab {
	char *mem;
	size_t size;  /* mapped bytes */
	size_t slots; /* pages carved from it so far */
};

struct pc_cache {
	size_t page_size, extra_size, stride; /* stride: one slot's bytes */
	size_t head_size;                     /* struct pc_page, rounded up to 8 */
	bool purgeable;
	unsigned max;                         /* cache_size in pages */
	unsigned npage, nunpinned;
	unsigned maxkey;                      /* no cached page has a larger number */
	struct pc_page ***chunks;             /* chunks[key >> CHUNK_BITS][key % CHUNK_KEYS] */
	size_t nchunks;
	struct pc_page *free;
	struct pc_slab *slabs;
	size_t nslabs, slab_cap, next_slab_size;
	/* Unpinned pages, oldest first: a page's latest item is the one that counts. Kept from the
	 * first time a page has to be reused (tracking), not before. */
	bool tracking;
	struct pc_page **queue;
	size_t qhead, qtail, qcap;
};

static inline struct pc_page *page_of(sqlite3_pcache_page *pg)
{
	return (struct pc_page *)pg; /* base is the first member */
}

static inline struct pc_page *lookup(const struct pc_cache *c, unsigned key)
{
	size_t hi = key >> CHUNK_BITS;

	return hi < c->nchunks && c->chunks[hi] ? c->chunks[hi][key & (CHUNK_KEYS - 1)] : NULL;
}

static void index_set(struct pc_cache *c, unsigned key, struct pc_page *p)
{
	size_t hi = key >> CHUNK_BITS;

	if (!p && (hi >= c->nchunks || !c->chunks[hi]))
		return;
	if (hi >= c->nchunks) {
		size_t n = c->nchunks ? c->nchunks : 8;
		while (n <= hi)
			n *= 2;
		c->chunks = xrealloc(c->chunks, n * sizeof *c->chunks);
		memset(c->chunks + c->nchunks, 0, (n - c->nchunks) * sizeof *c->chunks);
		c->nchunks = n;
	}
	if (!c->chunks[hi])
		c->chunks[hi] = xcalloc(CHUNK_KEYS, sizeof **c->chunks);
	c->chunks[hi][key & (CHUNK_KEYS - 1)] = p;
}

/* ---- memory ------------------------------------------------------------------------------- */

/* size bytes of zeroed memory from the system; from 2 MiB up aligned to and advised as huge
 * pages. NULL when the system has none. */
static char *map_slab(size_t size)
{
	size_t extra = size >= HUGE_PAGE ? HUGE_PAGE : 0;
	char *m = mmap(NULL, size + extra, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1,
		       0);

	if (m == MAP_FAILED)
		return NULL;
	if (extra) {
		size_t lead = (HUGE_PAGE - (uintptr_t)m % HUGE_PAGE) % HUGE_PAGE;
		if (lead)
			munmap(m, lead);
		if (extra - lead)
			munmap(m + lead + size, extra - lead);
		m += lead;
		madvise(m, size, MADV_HUGEPAGE); /* advice: without it the same pages, smaller */
	}
	return m;
}

/* A page never used before, carved from the last slab or a new one; NULL without memory. */
static struct pc_page *carve(struct pc_cache *c)
{
	struct pc_slab *sl = c->nslabs ? &c->slabs[c->nslabs - 1] : NULL;

	if (!sl || (sl->slots + 1) * c->stride > sl->size) {
		size_t size = c->next_slab_size;
		while (size < c->stride)
			size *= 2;
		char *mem = map_slab(size);
		if (!mem)
			return NULL;
		if (c->nslabs == c->slab_cap) {
			c->slab_cap = c->slab_cap ? 2 * c->slab_cap : 16;
			c->slabs = xrealloc(c->slabs, c->slab_cap * sizeof *c->slabs);
		}
		sl = &c->slabs[c->nslabs++];
		*sl = (struct pc_slab){.mem = mem, .size = size};
		if (c->next_slab_size < SLAB_MAX)
			c->next_slab_size *= 2;
	}
	char *slot = sl->mem + sl->slots++ * c->stride;
	struct pc_page *p = (struct pc_page *)(slot + c->page_size);
	p->base.pBuf = slot;
	p->base.pExtra = slot + c->page_size + c->head_size;
	return p;
}

/* ---- the eviction queue ------------------------------------------------------------------- */

static void queue_append(struct pc_cache *c, struct pc_page *p)
{
	c->queue[c->qtail++] = p;
	p->queued++;
}

/* Drops the items that no longer count (a later item names the same page, or the page is
 * pinned or gone), keeping the order; then makes room for at least one more. */
static void queue_compact(struct pc_cache *c)
{
	size_t n = 0;

	for (size_t i = c->qhead; i < c->qtail; i++) {
		struct pc_page *p = c->queue[i];
		if (p->queued > 1 || !p->cached || p->pinned)
			p->queued--;
		else
			c->queue[n++] = p;
	}
	c->qhead = 0;
	c->qtail = n;
	if (2 * n >= c->qcap) {
		c->qcap = c->qcap ? 2 * c->qcap : QUEUE_MIN;
		c->queue = xrealloc(c->queue, c->qcap * sizeof *c->queue);
	}
}

static void queue_push(struct pc_cache *c, struct pc_page *p)
{
	if (c->qtail == c->qcap)
		queue_compact(c);
	queue_append(c, p);
}

/* Starts the queue: every unpinned page, in page-number order (their unpin order is unknown;
 * no page has been queued before). */
static void start_tracking(struct pc_cache *c)
{
	c->tracking = true;
	for (size_t hi = 0; hi < c->nchunks; hi++)
		for (size_t lo = 0; c->chunks[hi] && lo < CHUNK_KEYS; lo++) {
			struct pc_page *p = c->chunks[hi][lo];
			if (p && !p->pinned)
				queue_push(c, p);
		}
}

/* ---- pages in and out --------------------------------------------------------------------- */

/* Takes p out of the index (pinned or not). */
static void forget(struct pc_cache *c, struct pc_page *p)
{
	index_set(c, p->key, NULL);
	if (!p->pinned)
		c->nunpinned--;
	p->cached = false;
	p->pinned = false;
	c->npage--;
}

/* Takes p out of the index onto the free list. */
static void drop(struct pc_cache *c, struct pc_page *p)
{
	forget(c, p);
	p->next_free = c->free;
	c->free = p;
}

/* The unpinned page unpinned longest ago, taken out of the index; NULL when none is. */
static struct pc_page *take_victim(struct pc_cache *c)
{
	if (!c->tracking)
		start_tracking(c);
	while (c->qhead < c->qtail) {
		struct pc_page *p = c->queue[c->qhead++];
		if (--p->queued == 0 && p->cached && !p->pinned) {
			forget(c, p);
			return p;
		}
	}
	return NULL;
}

static struct pc_page *fetch_new(struct pc_cache *c, unsigned key, int create)
{
	struct pc_page *p = NULL;

	if (c->purgeable && create == 1 && c->npage - c->nunpinned >= (uint64_t)c->max * 9 / 10)
		return NULL; /* nearly all pinned: SQLite spills dirty pages and asks again */
	if (c->purgeable && c->nunpinned > 0 && c->npage >= c->max)
		p = take_victim(c);
	if (!p && c->free) {
		p = c->free;
		c->free = p->next_free;
	}
	if (!p && !(p = carve(c)))
		return NULL;
	memset(p->base.pExtra, 0, c->extra_size);
	p->key = key;
	p->cached = true;
	p->pinned = true;
	index_set(c, key, p);
	c->npage++;
	if (key > c->maxkey)
		c->maxkey = key;
	return p;
}

/* While the cache holds more than cache_size pages, reuses unpinned ones' memory. */
static void enforce_max(struct pc_cache *c)
{
	struct pc_page *p;

	while (c->purgeable && c->npage > c->max && c->nunpinned > 0 && (p = take_victim(c))) {
		p->next_free = c->free;
		c->free = p;
	}
}

/* ---- the methods -------------------------------------------------------------------------- */

static int pc_init(void *arg)
{
	(void)arg;
	return SQLITE_OK;
}

static sqlite3_pcache *pc_create(int page_size, int extra_size, int purgeable)
{
	struct pc_cache *c = calloc(1, sizeof *c);

	if (!c)
		return NULL;
	c->page_size = (size_t)page_size;
	c->extra_size = ((size_t)extra_size + 7) & ~(size_t)7;
	c->head_size = (sizeof(struct pc_page) + 7) & ~(size_t)7;
	c->stride = (c->page_size + c->head_size + c->extra_size + 15) & ~(size_t)15;
	c->purgeable = purgeable != 0;
	c->next_slab_size = SLAB_MIN;
	return (sqlite3_pcache *)c;
}

static void pc_cachesize(sqlite3_pcache *pc, int n)
{
	struct pc_cache *c = (struct pc_cache *)pc;

	c->max = n > 0 ? (unsigned)n : 0;
	enforce_max(c);
}

static int pc_pagecount(sqlite3_pcache *pc)
{
	return (int)((struct pc_cache *)pc)->npage;
}

static sqlite3_pcache_page *pc_fetch(sqlite3_pcache *pc, unsigned key, int create)
{
	struct pc_cache *c = (struct pc_cache *)pc;
	struct pc_page *p = lookup(c, key);

	if (p) {
		if (!p->pinned) {
			p->pinned = true;
			c->nunpinned--;
		}
		return &p->base;
	}
	p = create ? fetch_new(c, key, create) : NULL;
	return p ? &p->base : NULL;
}

static void pc_unpin(sqlite3_pcache *pc, sqlite3_pcache_page *pg, int discard)
{
	struct pc_cache *c = (struct pc_cache *)pc;
	struct pc_page *p = page_of(pg);

	if (discard || !c->purgeable || c->npage > c->max) {
		drop(c, p);
		return;
	}
	p->pinned = false;
	c->nunpinned++;
	if (c->tracking)
		queue_push(c, p);
}

static void pc_rekey(sqlite3_pcache *pc, sqlite3_pcache_page *pg, unsigned old_key,
		     unsigned new_key)
{
	struct pc_cache *c = (struct pc_cache *)pc;
	struct pc_page *p = page_of(pg), *other = lookup(c, new_key);

	if (lookup(c, old_key) == p)
		index_set(c, old_key, NULL);
	if (other && other != p)
		drop(c, other);
	p->key = new_key;
	index_set(c, new_key, p);
	if (new_key > c->maxkey)
		c->maxkey = new_key;
}

static void pc_truncate(sqlite3_pcache *pc, unsigned limit)
{
	struct pc_cache *c = (struct pc_cache *)pc;

	if (c->npage == 0 || limit > c->maxkey)
		return;
	/* Keys limit..maxkey, a chunk at a time, skipping chunks never made. */
	for (uint64_t key = limit; key <= c->maxkey;) {
		size_t hi = (size_t)(key >> CHUNK_BITS);
		uint64_t end = ((uint64_t)hi + 1) << CHUNK_BITS; /* the next chunk's first key */
		if (hi < c->nchunks && c->chunks[hi])
			for (uint64_t k = key; k < end && k <= c->maxkey; k++)
				if (c->chunks[hi][k & (CHUNK_KEYS - 1)])
					drop(c, c->chunks[hi][k & (CHUNK_KEYS - 1)]);
		key = end;
	}
	c->maxkey = limit ? limit - 1 : 0;
}

static void pc_destroy(sqlite3_pcache *pc)
{
	struct pc_cache *c = (struct pc_cache *)pc;

	for (size_t i = 0; i < c->nchunks; i++)
		free(c->chunks[i]);
	free(c->chunks);
	for (size_t i = 0; i < c->nslabs; i++)
		munmap(c->slabs[i].mem, c->slabs[i].size);
	free(c->slabs);
	free(c->queue);
	free(c);
}

static void pc_shrink(sqlite3_pcache *pc)
{
	struct pc_cache *c = (struct pc_cache *)pc;
	unsigned max = c->max;

	c->max = 0;
	enforce_max(c);
	c->max = max;
}

const sqlite3_pcache_methods2 *store_pcache_methods(void)
{
	static const sqlite3_pcache_methods2 methods = {
		.iVersion = 1,
		.xInit = pc_init,
		.xCreate = pc_create,
		.xCachesize = pc_cachesize,
		.xPagecount = pc_pagecount,
		.xFetch = pc_fetch,
		.xUnpin = pc_unpin,
		.xRekey = pc_rekey,
		.xTruncate = pc_truncate,
		.xDestroy = pc_destroy,
		.xShrink = pc_shrink,
	};
	return &methods;
}
