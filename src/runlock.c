/* runlock.c — flock-based run lock with the holder's identity written inside. */
#include "runlock.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdbool.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include "util.h"

struct runlock {
	int fd;
	bool held; /* only the holder may clear the holder's text */
	char *path;
};

static void holder_text(int fd, char *out, size_t n)
{
	ssize_t got = pread(fd, out, n - 1, 0);

	out[got > 0 ? got : 0] = '\0';
	out[strcspn(out, "\n")] = '\0';
	if (out[0] == '\0')
		snprintf(out, n, "a process that has not written its name yet");
}

int runlock_acquire(struct runlock **out, const char *db_path, const char *command, int64_t now,
		    struct err *e)
{
	return runlock_acquire_file(out, db_path, ".lock", "run", command, now, e);
}

int runlock_acquire_file(struct runlock **out, const char *db_path, const char *suffix,
			 const char *kind, const char *command, int64_t now, struct err *e)
{
	struct runlock *l = xcalloc(1, sizeof *l);
	char host[128] = "?", info[512], stamp[32];
	time_t t = (time_t)now;
	struct tm tm;
	int rc;

	*out = NULL;
	l->path = xasprintf("%s%s", db_path, suffix);
	l->fd = -1;
	if ((l->fd = open(l->path, O_RDWR | O_CREAT | O_CLOEXEC, 0600)) < 0) {
		rc = err_sys(e, ERR_IO, errno, "cannot open the %s lock %s", kind, l->path);
		goto fail;
	}
	if (flock(l->fd, LOCK_EX | LOCK_NB) != 0) {
		holder_text(l->fd, info, sizeof info);
		rc = err_set(e, ERR_TEMPFAIL, "another cutoff %s is already working on %s: %s"
			     " (lock %s); try again when it has finished", kind, db_path, info,
			     l->path);
		goto fail;
	}
	l->held = true;
	gethostname(host, sizeof host - 1);
	gmtime_r(&t, &tm);
	strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%SZ", &tm);
	snprintf(info, sizeof info, "cutoff %s, pid %ld on host %s since %s\n", command,
		 (long)getpid(), host, stamp);
	if (ftruncate(l->fd, 0) != 0 || pwrite(l->fd, info, strlen(info), 0) < 0) {
		rc = err_sys(e, ERR_IO, errno, "cannot write the %s lock %s", kind, l->path);
		goto fail;
	}
	*out = l;
	return 0;
fail:
	runlock_release(l);
	return rc;
}

void runlock_release(struct runlock *l)
{
	if (l == NULL)
		return;
	if (l->held && ftruncate(l->fd, 0) != 0) {
		/* The lock goes with the descriptor either way; the text is only a hint. */
	}
	if (l->fd >= 0)
		close(l->fd);
	free(l->path);
	free(l);
}
