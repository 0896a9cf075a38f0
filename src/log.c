/* log.c — leveled logging to stderr; key=value event lines. */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "util.h"

static enum log_level current_level = LOG_LEVEL_WARN;

void log_set_level(enum log_level level)
{
	current_level = level;
}

enum log_level log_get_level(void)
{
	return current_level;
}

static void log_vprint(enum log_level level, int errnum, const char *fmt, va_list ap)
{
	struct buf b;

	if (level > current_level)
		return;
	buf_init(&b);
	buf_puts(&b, "cutoff: ");
	{
		va_list cp;
		int n;

		va_copy(cp, ap);
		n = vsnprintf(NULL, 0, fmt, cp);
		va_end(cp);
		if (n > 0) {
			buf_grow(&b, (size_t)n);
			vsnprintf(b.data + b.len, (size_t)n + 1, fmt, ap);
			b.len += (size_t)n;
		}
	}
	if (errnum != 0)
		buf_printf(&b, ": %s", strerror(errnum));
	buf_putc(&b, '\n');
	fwrite(b.data, 1, b.len, stderr);
	buf_free(&b);
}

void log_warn(const char *fmt, ...)
{
	int saved = errno;
	va_list ap;

	va_start(ap, fmt);
	log_vprint(LOG_LEVEL_WARN, saved, fmt, ap);
	va_end(ap);
	errno = saved;
}

void log_warnx(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vprint(LOG_LEVEL_WARN, 0, fmt, ap);
	va_end(ap);
}

void log_info(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vprint(LOG_LEVEL_INFO, 0, fmt, ap);
	va_end(ap);
}

void log_debug(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vprint(LOG_LEVEL_DEBUG, 0, fmt, ap);
	va_end(ap);
}

/* Appends value, quoted and escaped when it would not survive as one token. */
static void kv_append_value(struct buf *b, const char *v)
{
	bool quote = *v == '\0' || strpbrk(v, " \"=\\") != NULL || str_has_control(v);

	if (!quote) {
		buf_puts(b, v);
		return;
	}
	buf_putc(b, '"');
	for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
		if (*p == '"' || *p == '\\')
			buf_printf(b, "\\%c", *p);
		else if (*p < 0x20 || *p == 0x7f)
			buf_printf(b, "\\x%02x", *p);
		else
			buf_putc(b, (char)*p);
	}
	buf_putc(b, '"');
}

void log_kv(const char *key, const char *value, ...)
{
	struct buf b;
	va_list ap;

	if (current_level < LOG_LEVEL_INFO)
		return;
	buf_init(&b);
	va_start(ap, value);
	while (key != NULL) {
		if (b.len > 0)
			buf_putc(&b, ' ');
		buf_puts(&b, key);
		buf_putc(&b, '=');
		kv_append_value(&b, value ? value : "");
		key = va_arg(ap, const char *);
		if (key != NULL)
			value = va_arg(ap, const char *);
	}
	va_end(ap);
	buf_putc(&b, '\n');
	fwrite(b.data, 1, b.len, stderr);
	buf_free(&b);
}
