/* log.h — messages to stderr by level, and one key=value line per event for journald. */
#ifndef CUTOFF_LOG_H
#define CUTOFF_LOG_H

enum log_level { LOG_LEVEL_QUIET = 0, LOG_LEVEL_WARN = 1, LOG_LEVEL_INFO = 2, LOG_LEVEL_DEBUG = 3 };

/* Sets the level (the one mutable global besides the frozen config). */
void log_set_level(enum log_level level);
enum log_level log_get_level(void);

/* "cutoff: message: strerror(errno)" at warn level (OpenSMTPD's log_warn). */
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* "cutoff: message" at warn level, without errno. */
void log_warnx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/*
 * Writes one journald-friendly line of key=value pairs at info level, e.g.
 * log_kv("event", "delivery", "campaign", name, "code", "250", NULL).
 * Values with spaces, quotes or '=' are double-quoted with escapes; control
 * characters are escaped so one event is always one line. Never pass secrets.
 */
void log_kv(const char *key, const char *value, ...) __attribute__((sentinel));

#endif
