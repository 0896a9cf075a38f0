/* err.c — error values and their mapping to sysexits.h. */
#include "err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sysexits.h>

static void err_vset(struct err *e, int code, const char *fmt, va_list ap)
{
	e->code = code;
	vsnprintf(e->msg, sizeof e->msg, fmt, ap);
}

int err_set(struct err *e, int code, const char *fmt, ...)
{
	va_list ap;

	if (e == NULL || e->code != 0)
		return code;
	va_start(ap, fmt);
	err_vset(e, code, fmt, ap);
	va_end(ap);
	return code;
}

int err_sys(struct err *e, int code, int errno_value, const char *fmt, ...)
{
	va_list ap;
	size_t len;

	if (e == NULL || e->code != 0)
		return code;
	va_start(ap, fmt);
	err_vset(e, code, fmt, ap);
	va_end(ap);
	len = strlen(e->msg);
	snprintf(e->msg + len, sizeof e->msg - len, ": %s", strerror(errno_value));
	return code;
}

void err_prefix(struct err *e, const char *fmt, ...)
{
	char prefix[512], old[sizeof e->msg];
	va_list ap;

	if (e == NULL)
		return;
	va_start(ap, fmt);
	vsnprintf(prefix, sizeof prefix, fmt, ap);
	va_end(ap);
	memcpy(old, e->msg, sizeof old);
	snprintf(e->msg, sizeof e->msg, "%s%s", prefix, old);
}

void err_clear(struct err *e)
{
	e->code = 0;
	e->msg[0] = '\0';
}

int err_exit_code(int code)
{
	switch (code) {
	case ERR_OK: return EX_OK;
	case ERR_NOMEM: return EX_OSERR;
	case ERR_IO: return EX_IOERR;
	case ERR_CONFIG: return EX_CONFIG;
	case ERR_DATA: return EX_DATAERR;
	case ERR_TEMPFAIL: return EX_TEMPFAIL;
	case ERR_USAGE: return EX_USAGE;
	case ERR_NOTFOUND: return EX_NOINPUT;
	case ERR_REFUSED: return EX_DATAERR;
	case ERR_NOPERM: return EX_NOPERM;
	case ERR_PROTOCOL: return EX_PROTOCOL;
	default: return EX_SOFTWARE;
	}
}

const char *err_code_name(int code)
{
	switch (code) {
	case ERR_OK: return "ok";
	case ERR_NOMEM: return "nomem";
	case ERR_IO: return "io";
	case ERR_CONFIG: return "config";
	case ERR_DATA: return "data";
	case ERR_TEMPFAIL: return "tempfail";
	case ERR_USAGE: return "usage";
	case ERR_NOTFOUND: return "notfound";
	case ERR_REFUSED: return "state";
	case ERR_NOPERM: return "noperm";
	case ERR_PROTOCOL: return "protocol";
	default: return "software";
	}
}
