/* config.h — the global configuration (cutoff.conf): parsed, validated, then frozen. */
#ifndef CUTOFF_CONFIG_H
#define CUTOFF_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include "err.h"

enum relay_tls {
	RELAY_TLS_STARTTLS, /* smtp:// with STARTTLS required (the default) */
	RELAY_TLS_SMTPS,    /* smtps://, TLS from the first byte */
	RELAY_TLS_NONE      /* plain text: loopback, or allow_insecure = true */
};

struct relay {
	char *name;
	char *url;        /* smtp://host:port or smtps://host:port */
	char *host;       /* parsed from url */
	enum relay_tls tls;
	bool verify;      /* verify the certificate and host name */
	bool loopback;    /* host is 127.0.0.0/8, ::1 or localhost */
	char *user;       /* NULL: no AUTH */
	char *password;   /* from password_file or inline; never logged */
	int connections;  /* parallel connections to this relay */
	int timeout;      /* seconds for connect and each reply */
	int line;         /* where it was defined, for messages */
};

struct domain_rate {
	char *domain;      /* recipient domain, lower case */
	double per_second; /* at most this many messages a second to it */
};

struct config {
	char *path;           /* the file read, or NULL when built from defaults */
	char *database;       /* SQLite database path */
	char *campaigns_dir;
	char *templates_dir;  /* NULL: each campaign's ../templates/NAME beside its file */
	struct relay *relays;
	size_t n_relays;
	double rate;          /* global messages a second, 0 = no limit */
	struct domain_rate *domain_rates;
	size_t n_domain_rates;
	int batch_size;       /* deliveries claimed per batch */
	int lease_seconds;    /* how long a claim holds before another run may recover it */
	struct {
		char *return_path_domain; /* VERP domain: bounces+TOKEN@domain */
		char *secret_file;
		unsigned char *secret;    /* HMAC key for VERP and unsubscribe tokens */
		size_t secret_len;
		char *maildir;            /* bounce mailbox the daily run reads, or NULL */
		char *quarantine;         /* where unparseable bounces go */
		int soft_threshold;       /* soft bounces on distinct days before suppression */
		bool unsubscribe_global;  /* an unsubscribe suppresses for every campaign */
	} bounces;
};

/*
 * Loads path, or the built-in defaults when path is NULL (database
 * "cutoff.db" in the current directory, templates beside each campaign file,
 * no relays).
 * Every problem is reported at once with file:line (ERR_CONFIG); a file holding
 * a secret that group or others can read is refused (ERR_NOPERM) with the
 * chmod that fixes it. Relative paths are taken from the config file's folder.
 * On success *out is the frozen config; free it with config_free.
 */
int config_load(struct config **out, const char *path, struct err *e);

/* Releases a config from config_load (NULL is fine). Wipes secrets first. */
void config_free(struct config *c);

/*
 * Refuses a secret file that group or others can read (ERR_NOPERM), or that
 * cannot be read (ERR_CONFIG). what names it in the message ("password_file").
 */
int config_check_secret_file(const char *path, const char *what, struct err *e);

/*
 * Reads a whole secret file into *out (NUL-terminated, trailing newline
 * removed, length in *len), after config_check_secret_file. Caller frees.
 */
int config_read_secret(const char *path, const char *what, unsigned char **out, size_t *len,
		       struct err *e);

/* True if host names the loopback interface. */
bool config_host_is_loopback(const char *host);

#endif
