/* migrations.h — the schema migrations compiled into the binary (from db/). */
#ifndef CUTOFF_MIGRATIONS_H
#define CUTOFF_MIGRATIONS_H

struct migration {
	int version;      /* the NNN of db/NNN_name.sql; user_version after it */
	const char *name; /* file name, for messages */
	const char *sql;  /* the whole file, NUL-terminated */
};

/* Sorted by version, 1..migrations_count without gaps (store.c checks). */
extern const struct migration migrations[];
extern const int migrations_count;

#endif
