/* store_walbuf.c — a SQLite VFS shim that gathers a transaction's WAL frames into one write
 * (SQLite writes each frame as two: its 24-byte header, then its page). */
#include "store_walbuf.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "util.h"

#define WALBUF_NAME "cutoff-walbuf"
#define WALBUF_CAP (1024 * 1024) /* bytes kept before a write: ~250 frames of 4 KiB pages */
/* The unix VFS writes a request's size modulo 128 KiB first (seekAndWriteFd: nBuf &= 0x1ffff),
 * so a multiple of 128 KiB would be written as nothing and fail as SQLITE_FULL: the kept bytes
 * go in pieces below that. */
#define WALBUF_WRITE_MAX (124 * 1024)

/* One open file: ours, with the default VFS's right after it. */
struct wb_file {
	sqlite3_file base;   /* pMethods: wb_methods */
	sqlite3_file *real;  /* the default VFS's file */
	bool is_wal;
	struct wb_file *db;  /* a WAL file: its database's file, while both are open */
	struct wb_file *wal; /* a database file: its WAL file, while both are open */
	char *buf;           /* a WAL file: bytes written to us, not yet to the file */
	size_t len;
	sqlite3_int64 off;   /* the file offset of buf[0] */
	bool commit_frame;   /* the last write was a commit frame's header: its page is next */
};

static sqlite3_vfs walbuf_vfs; /* filled once by walbuf_register, then only read */
static pthread_once_t walbuf_once = PTHREAD_ONCE_INIT;
static bool walbuf_ok;

static sqlite3_vfs *real_vfs(void)
{
	return walbuf_vfs.pAppData;
}

/* Writes what is kept to the file, in pieces of WALBUF_WRITE_MAX. On error the bytes are
 * dropped: the write error goes to the transaction (its sync fails), which rolls back, so
 * nothing refers to them. */
static int wb_flush(struct wb_file *p)
{
	int rc = SQLITE_OK;
	size_t n;

	if (p == NULL)
		return SQLITE_OK;
	for (size_t done = 0; done < p->len && rc == SQLITE_OK; done += n) {
		n = p->len - done < WALBUF_WRITE_MAX ? p->len - done : WALBUF_WRITE_MAX;
		rc = p->real->pMethods->xWrite(p->real, p->buf + done, (int)n,
					      p->off + (sqlite3_int64)done);
	}
	p->len = 0;
	return rc;
}

static int wb_close(sqlite3_file *f)
{
	struct wb_file *p = (struct wb_file *)f;
	int rc = p->is_wal ? wb_flush(p) : wb_flush(p->wal), rc2;

	if (p->is_wal && p->db != NULL)
		p->db->wal = NULL;
	if (!p->is_wal && p->wal != NULL)
		p->wal->db = NULL;
	free(p->buf);
	p->buf = NULL;
	rc2 = p->real->pMethods->xClose(p->real);
	return rc != SQLITE_OK ? rc : rc2;
}

static int wb_read(sqlite3_file *f, void *data, int amt, sqlite3_int64 off)
{
	struct wb_file *p = (struct wb_file *)f;
	int rc;

	if (p->is_wal && (rc = wb_flush(p)) != SQLITE_OK)
		return rc;
	return p->real->pMethods->xRead(p->real, data, amt, off);
}

/*
 * SQLite writes a frame as its 24-byte header, then its page; a commit frame's header holds the
 * database size after the commit (bytes 4-7, big-endian), other frames' hold 0. Once a commit
 * frame's page is kept, everything is written at once, so that a write error fails the COMMIT
 * itself: with synchronous=NORMAL no sync follows, and the flush at the shared-memory barrier
 * that publishes the commit cannot report one (the service's decider commits so, and syncs
 * the WAL on another thread: serve.c).
 */
static int wb_commit_frame(struct wb_file *p, const void *data, int amt)
{
	const unsigned char *h = data;

	if (p->commit_frame) {
		p->commit_frame = false;
		return wb_flush(p);
	}
	p->commit_frame = amt == 24 && (h[4] | h[5] | h[6] | h[7]) != 0;
	return SQLITE_OK;
}

/* A WAL write that continues the kept bytes is kept; any other write first flushes them, so
 * the file sees every write in SQLite's order. */
static int wb_write(sqlite3_file *f, const void *data, int amt, sqlite3_int64 off)
{
	struct wb_file *p = (struct wb_file *)f;
	bool follows = p->len > 0 && off == p->off + (sqlite3_int64)p->len;
	int rc;

	if (!p->is_wal || amt <= 0)
		return p->real->pMethods->xWrite(p->real, data, amt, off);
	if (p->len > 0 && (!follows || p->len + (size_t)amt > WALBUF_CAP) &&
	    (rc = wb_flush(p)) != SQLITE_OK)
		return rc;
	if ((size_t)amt > WALBUF_CAP)
		return p->real->pMethods->xWrite(p->real, data, amt, off);
	if (p->buf == NULL)
		p->buf = xmalloc(WALBUF_CAP);
	if (p->len == 0)
		p->off = off;
	memcpy(p->buf + p->len, data, (size_t)amt);
	p->len += (size_t)amt;
	return wb_commit_frame(p, data, amt);
}

static int wb_truncate(sqlite3_file *f, sqlite3_int64 size)
{
	struct wb_file *p = (struct wb_file *)f;
	int rc = p->is_wal ? wb_flush(p) : SQLITE_OK;

	return rc != SQLITE_OK ? rc : p->real->pMethods->xTruncate(p->real, size);
}

static int wb_sync(sqlite3_file *f, int flags)
{
	struct wb_file *p = (struct wb_file *)f;
	int rc = p->is_wal ? wb_flush(p) : SQLITE_OK;

	return rc != SQLITE_OK ? rc : p->real->pMethods->xSync(p->real, flags);
}

static int wb_file_size(sqlite3_file *f, sqlite3_int64 *size)
{
	struct wb_file *p = (struct wb_file *)f;
	int rc = p->is_wal ? wb_flush(p) : SQLITE_OK;

	return rc != SQLITE_OK ? rc : p->real->pMethods->xFileSize(p->real, size);
}

static int wb_lock(sqlite3_file *f, int level)
{
	struct wb_file *p = (struct wb_file *)f;

	return p->real->pMethods->xLock(p->real, level);
}

static int wb_unlock(sqlite3_file *f, int level)
{
	struct wb_file *p = (struct wb_file *)f;

	return p->real->pMethods->xUnlock(p->real, level);
}

static int wb_check_reserved(sqlite3_file *f, int *out)
{
	struct wb_file *p = (struct wb_file *)f;

	return p->real->pMethods->xCheckReservedLock(p->real, out);
}

static int wb_file_control(sqlite3_file *f, int op, void *arg)
{
	struct wb_file *p = (struct wb_file *)f;
	int rc = p->is_wal ? wb_flush(p) : SQLITE_OK;

	return rc != SQLITE_OK ? rc : p->real->pMethods->xFileControl(p->real, op, arg);
}

static int wb_sector_size(sqlite3_file *f)
{
	struct wb_file *p = (struct wb_file *)f;

	return p->real->pMethods->xSectorSize(p->real);
}

static int wb_device(sqlite3_file *f)
{
	struct wb_file *p = (struct wb_file *)f;

	return p->real->pMethods->xDeviceCharacteristics(p->real);
}

static int wb_shm_map(sqlite3_file *f, int page, int size, int extend, void volatile **out)
{
	struct wb_file *p = (struct wb_file *)f;

	return p->real->pMethods->xShmMap(p->real, page, size, extend, out);
}

/* Shared-memory locks and the barrier are how a commit (and a WAL restart) becomes visible
 * to other connections: the WAL's kept bytes go to the file first. A synchronous=FULL commit
 * has flushed them at its sync already. */
static int wb_shm_lock(sqlite3_file *f, int offset, int n, int flags)
{
	struct wb_file *p = (struct wb_file *)f;
	int rc = wb_flush(p->wal);

	return rc != SQLITE_OK ? rc : p->real->pMethods->xShmLock(p->real, offset, n, flags);
}

static void wb_shm_barrier(sqlite3_file *f)
{
	struct wb_file *p = (struct wb_file *)f;

	(void)wb_flush(p->wal); /* a commit's frames were flushed already (wb_commit_frame) */
	p->real->pMethods->xShmBarrier(p->real);
}

static int wb_shm_unmap(sqlite3_file *f, int delete_flag)
{
	struct wb_file *p = (struct wb_file *)f;

	return p->real->pMethods->xShmUnmap(p->real, delete_flag);
}

static int wb_fetch(sqlite3_file *f, sqlite3_int64 off, int amt, void **out)
{
	struct wb_file *p = (struct wb_file *)f;
	int rc = p->is_wal ? wb_flush(p) : SQLITE_OK;

	return rc != SQLITE_OK ? rc : p->real->pMethods->xFetch(p->real, off, amt, out);
}

static int wb_unfetch(sqlite3_file *f, sqlite3_int64 off, void *mem)
{
	struct wb_file *p = (struct wb_file *)f;

	return p->real->pMethods->xUnfetch(p->real, off, mem);
}

static const sqlite3_io_methods wb_methods = {
	3,
	wb_close, wb_read, wb_write, wb_truncate, wb_sync, wb_file_size, wb_lock, wb_unlock,
	wb_check_reserved, wb_file_control, wb_sector_size, wb_device, wb_shm_map, wb_shm_lock,
	wb_shm_barrier, wb_shm_unmap, wb_fetch, wb_unfetch,
};

/* Opens with the default VFS; a WAL file is tied to its database's file (the barrier and
 * the locks are called on the database's). */
static int wb_open(sqlite3_vfs *vfs, sqlite3_filename name, sqlite3_file *f, int flags,
		   int *out_flags)
{
	struct wb_file *p = (struct wb_file *)f;
	sqlite3_file *dbf;
	int rc;

	(void)vfs;
	memset(p, 0, sizeof *p);
	p->real = (sqlite3_file *)&p[1];
	rc = real_vfs()->xOpen(real_vfs(), name, p->real, flags, out_flags);
	if (rc != SQLITE_OK || p->real->pMethods == NULL || p->real->pMethods->iVersion < 3) {
		if (p->real->pMethods != NULL)
			p->real->pMethods->xClose(p->real);
		p->base.pMethods = NULL;
		return rc != SQLITE_OK ? rc : SQLITE_CANTOPEN;
	}
	p->base.pMethods = &wb_methods;
	if ((flags & SQLITE_OPEN_WAL) && name != NULL) {
		p->is_wal = true;
		dbf = sqlite3_database_file_object(name);
		if (dbf != NULL && dbf->pMethods == &wb_methods) {
			p->db = (struct wb_file *)dbf;
			p->db->wal = p;
		}
	}
	return SQLITE_OK;
}

static int wb_delete(sqlite3_vfs *vfs, const char *name, int sync_dir)
{
	(void)vfs;
	return real_vfs()->xDelete(real_vfs(), name, sync_dir);
}

static int wb_access(sqlite3_vfs *vfs, const char *name, int flags, int *out)
{
	(void)vfs;
	return real_vfs()->xAccess(real_vfs(), name, flags, out);
}

static int wb_full_pathname(sqlite3_vfs *vfs, const char *name, int n, char *out)
{
	(void)vfs;
	return real_vfs()->xFullPathname(real_vfs(), name, n, out);
}

static void *wb_dlopen(sqlite3_vfs *vfs, const char *name)
{
	(void)vfs;
	return real_vfs()->xDlOpen(real_vfs(), name);
}

static void wb_dlerror(sqlite3_vfs *vfs, int n, char *msg)
{
	(void)vfs;
	real_vfs()->xDlError(real_vfs(), n, msg);
}

static void (*wb_dlsym(sqlite3_vfs *vfs, void *h, const char *sym))(void)
{
	(void)vfs;
	return real_vfs()->xDlSym(real_vfs(), h, sym);
}

static void wb_dlclose(sqlite3_vfs *vfs, void *h)
{
	(void)vfs;
	real_vfs()->xDlClose(real_vfs(), h);
}

static int wb_randomness(sqlite3_vfs *vfs, int n, char *out)
{
	(void)vfs;
	return real_vfs()->xRandomness(real_vfs(), n, out);
}

static int wb_sleep(sqlite3_vfs *vfs, int us)
{
	(void)vfs;
	return real_vfs()->xSleep(real_vfs(), us);
}

static int wb_current_time(sqlite3_vfs *vfs, double *out)
{
	(void)vfs;
	return real_vfs()->xCurrentTime(real_vfs(), out);
}

static int wb_last_error(sqlite3_vfs *vfs, int n, char *out)
{
	(void)vfs;
	return real_vfs()->xGetLastError(real_vfs(), n, out);
}

static int wb_current_time64(sqlite3_vfs *vfs, sqlite3_int64 *out)
{
	(void)vfs;
	return real_vfs()->xCurrentTimeInt64(real_vfs(), out);
}

static void walbuf_register(void)
{
	sqlite3_vfs *real;

	if (sqlite3_initialize() != SQLITE_OK || (real = sqlite3_vfs_find(NULL)) == NULL ||
	    real->iVersion < 2)
		return;
	walbuf_vfs = (sqlite3_vfs){
		.iVersion = 2,
		.szOsFile = (int)sizeof(struct wb_file) + real->szOsFile,
		.mxPathname = real->mxPathname,
		.zName = WALBUF_NAME,
		.pAppData = real,
		.xOpen = wb_open,
		.xDelete = wb_delete,
		.xAccess = wb_access,
		.xFullPathname = wb_full_pathname,
		.xDlOpen = wb_dlopen,
		.xDlError = wb_dlerror,
		.xDlSym = wb_dlsym,
		.xDlClose = wb_dlclose,
		.xRandomness = wb_randomness,
		.xSleep = wb_sleep,
		.xCurrentTime = wb_current_time,
		.xGetLastError = wb_last_error,
		.xCurrentTimeInt64 = wb_current_time64,
	};
	walbuf_ok = sqlite3_vfs_register(&walbuf_vfs, 0) == SQLITE_OK;
}

const char *store_walbuf_vfs(void)
{
	pthread_once(&walbuf_once, walbuf_register);
	return walbuf_ok ? WALBUF_NAME : NULL;
}
