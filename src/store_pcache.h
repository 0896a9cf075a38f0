/* store_pcache.h — cutoff's SQLite page cache: a page found by its number in two loads, pinned
 * and unpinned without touching any other page, memory taken in large huge-page slabs. */
#ifndef CUTOFF_STORE_PCACHE_H
#define CUTOFF_STORE_PCACHE_H

#include <sqlite3.h>

/*
 * The page cache methods to hand to sqlite3_config(SQLITE_CONFIG_PCACHE2) before SQLite is
 * initialised (store.c does, once per process). Why not SQLite's own (pcache1): a login seeks
 * ~20 pages; pcache1 finds each through a hash chain and, to pin it, unlinks it from an LRU list
 * shared by every page, which writes into the two pages beside it in that list: four dependent
 * cache misses per page, 16% of a balanced login batch's time. Here a page is found through a
 * two-level table indexed by page number, and pinning writes only the page's own header.
 *
 * Behaviour, per the interface's contract (sqlite3.h, "Application Defined Page Cache"):
 * - a cache holds at most its cache_size pages plus the pages SQLite keeps pinned; at that limit a
 *   new page reuses the unpinned page unpinned longest ago (a queue kept only once a cache has
 *   been full, so a cache that never fills pays nothing for it);
 * - createFlag 1 refuses a new page when 90% of cache_size is pinned (SQLite then spills dirty
 *   pages and asks with 2), as pcache1 does; 2 allocates unless memory is exhausted;
 * - a new page's extra bytes are zeroed (SQLite's page header lives there);
 * - page memory comes in slabs of 64 KiB doubling to 4 MiB; slabs of 2 MiB and more are aligned
 *   and advised as transparent huge pages (fewer TLB misses on random seeks, 512 times fewer page
 *   faults while the cache fills). Memory goes back to the system when the cache is destroyed
 *   (the connection closes); a discarded page is reused by the same cache.
 * - No global state: each cache is used under its connection's mutex, so nothing locks.
 */
const sqlite3_pcache_methods2 *store_pcache_methods(void);

#endif
