/* sync_shim.c — an LD_PRELOAD library for tests/e2e/test_serve_sync.sh: fdatasync and fsync of
 * a database's WAL (a file whose path ends in -wal) through a read-only descriptor, which is
 * how `cutoff serve`'s syncer holds it, made slow or failing, and logged; SQLite's own syncs
 * (read-write descriptors) go through untouched.
 * Environment: SYNC_SHIM_DELAY_MS (each such sync sleeps this long first), SYNC_SHIM_FAIL=1
 * (each such sync fails with EIO), SYNC_SHIM_LOG (a path: one line per such sync done,
 * "SECONDS.NANOSECONDS RESULT", wall clock, written once the sync returned).
 * Also SYNC_SHIM_SCHED_EPERM=1: sched_setscheduler fails with EPERM, as under a system call
 * filter that denies it (systemd's SystemCallFilter=~@resources).
 * The database file: SYNC_SHIM_DB (its absolute path) and SYNC_SHIM_DB_LOG (a path): one line
 * per sync_file_range, fdatasync or fsync of that file, once it returned: "sync_file_range
 * ro|rw OFFSET NBYTES RESULT" or "fdatasync|fsync ro|rw RESULT" (ro: a read-only descriptor,
 * the checkpointer's own; rw: SQLite's). SYNC_SHIM_DB_FAIL=1: fdatasync and fsync of it through
 * a read-only descriptor fail with EIO; SYNC_SHIM_DB_REFUSE=1: sync_file_range of it fails with
 * EINVAL, as on a file system without it. */
#include <dlfcn.h>
#include <stdarg.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int fdatasync(int fd);
int fsync(int fd);
int sync_file_range(int fd, off_t offset, off_t nbytes, unsigned int flags);
int sched_setscheduler(pid_t pid, int policy, const struct sched_param *param);

/* True when fd is a read-only descriptor of a file whose path ends in -wal. */
static int is_wal(int fd)
{
	char link[64], path[4096];
	ssize_t n;

	if ((fcntl(fd, F_GETFL) & O_ACCMODE) != O_RDONLY)
		return 0;
	snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
	if ((n = readlink(link, path, sizeof path - 1)) < 4)
		return 0;
	path[n] = '\0';
	return strcmp(path + n - 4, "-wal") == 0 ||
	       (n > 14 && strcmp(path + n - 14, "-wal (deleted)") == 0);
}

/* The path of fd (readlink of /proc/self/fd); "" when unknown. */
static void fd_path(int fd, char *path, size_t size)
{
	char link[64];
	ssize_t n;

	snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
	if ((n = readlink(link, path, size - 1)) < 0)
		n = 0;
	path[n] = '\0';
}

/* True when fd is the database file SYNC_SHIM_DB names; *ro: through a read-only descriptor. */
static int is_db(int fd, int *ro)
{
	const char *db = getenv("SYNC_SHIM_DB");
	char path[4096];

	if (db == NULL)
		return 0;
	fd_path(fd, path, sizeof path);
	*ro = (fcntl(fd, F_GETFL) & O_ACCMODE) == O_RDONLY;
	return strcmp(path, db) == 0;
}

/* Appends one line to SYNC_SHIM_DB_LOG, if set. */
static void log_db(const char *fmt, ...)
{
	const char *path = getenv("SYNC_SHIM_DB_LOG");
	va_list ap;
	FILE *f;

	if (path == NULL || (f = fopen(path, "a")) == NULL)
		return;
	va_start(ap, fmt);
	vfprintf(f, fmt, ap);
	va_end(ap);
	fclose(f);
}

static long env_long(const char *name)
{
	const char *v = getenv(name);

	return v != NULL ? strtol(v, NULL, 10) : 0;
}

/* Appends "SECONDS.NANOSECONDS RESULT" to SYNC_SHIM_LOG, if set. */
static void log_sync(int result)
{
	const char *path = getenv("SYNC_SHIM_LOG");
	struct timespec ts;
	FILE *f;

	if (path == NULL || (f = fopen(path, "a")) == NULL)
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	fprintf(f, "%lld.%09ld %d\n", (long long)ts.tv_sec, ts.tv_nsec, result);
	fclose(f);
}

/* A sync of the database around real, logged; failing through a read-only descriptor when
 * SYNC_SHIM_DB_FAIL=1. */
static int db_sync(int fd, int ro, const char *name, int (*real)(int))
{
	int rc, err;

	if (ro && env_long("SYNC_SHIM_DB_FAIL") == 1) {
		rc = -1, err = EIO;
	} else {
		rc = real(fd);
		err = errno;
	}
	log_db("%s %s %d\n", name, ro ? "ro" : "rw", rc);
	errno = err;
	return rc;
}

/* The slow or failing WAL sync around real (the libc function); the database's, db_sync. */
static int wal_sync(int fd, int (*real)(int), const char *name)
{
	long ms = env_long("SYNC_SHIM_DELAY_MS");
	const char *fail = getenv("SYNC_SHIM_FAIL");
	struct timespec d = {ms / 1000, (ms % 1000) * 1000000};
	int ro, rc;

	if (is_db(fd, &ro))
		return db_sync(fd, ro, name, real);
	if (!is_wal(fd))
		return real(fd);
	if (ms > 0)
		nanosleep(&d, NULL);
	if (fail != NULL && strcmp(fail, "1") == 0) {
		log_sync(-1);
		errno = EIO;
		return -1;
	}
	rc = real(fd);
	log_sync(rc);
	return rc;
}

int fdatasync(int fd)
{
	int (*real)(int) = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");

	return wal_sync(fd, real, "fdatasync");
}

int fsync(int fd)
{
	int (*real)(int) = (int (*)(int))dlsym(RTLD_NEXT, "fsync");

	return wal_sync(fd, real, "fsync");
}

int sync_file_range(int fd, off_t offset, off_t nbytes, unsigned int flags)
{
	int (*real)(int, off_t, off_t, unsigned int);
	int ro = 0, db = is_db(fd, &ro), rc, err;

	real = (int (*)(int, off_t, off_t, unsigned int))dlsym(RTLD_NEXT, "sync_file_range");
	if (db && env_long("SYNC_SHIM_DB_REFUSE") == 1) {
		rc = -1, err = EINVAL;
	} else {
		rc = real(fd, offset, nbytes, flags);
		err = errno;
	}
	if (db)
		log_db("sync_file_range %s %lld %lld %d\n", ro ? "ro" : "rw", (long long)offset,
		       (long long)nbytes, rc);
	errno = err;
	return rc;
}

int sched_setscheduler(pid_t pid, int policy, const struct sched_param *param)
{
	int (*real)(pid_t, int, const struct sched_param *);

	if (env_long("SYNC_SHIM_SCHED_EPERM") == 1) {
		errno = EPERM;
		return -1;
	}
	real = (int (*)(pid_t, int, const struct sched_param *))dlsym(RTLD_NEXT,
								      "sched_setscheduler");
	return real(pid, policy, param);
}
