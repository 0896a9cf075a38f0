/* cmd_init.c — `cutoff init`: create the database or bring its schema up to date. */
#include <stdio.h>

#include "cli.h"
#include "import.h"

static int init_run(struct ctx *x, int argc, char **argv, struct err *e)
{
	struct store *s;
	int rc, before;

	(void)argv;
	if (argc > 1)
		return cli_usage(&cmd_init, e, "init takes no arguments");
	if ((rc = ctx_store(x, STORE_CREATE | STORE_MIGRATE, &s, e)) != 0)
		return rc;
	before = store_schema_version_at_open(s);
	if (before == store_schema_version(s))
		fprintf(x->out, "database %s: schema version %d, up to date\n", x->db_path, before);
	else if (before == 0)
		fprintf(x->out, "database %s: created, schema version %d\n", x->db_path,
			store_schema_version(s));
	else
		fprintf(x->out, "database %s: migrated from schema version %d to %d\n", x->db_path,
			before, store_schema_version(s));
	/* An import that died before its end left its new recipients' keys to add. */
	return import_finish_pending(s, x->db_path, ctx_now(x), e);
}

const struct command cmd_init = {
	"init", init_run, "init", "create the database, or migrate it to this version's schema",
	"\nCreates the SQLite database named by --db or the config's 'database' (WAL mode),\n"
	"or applies the migrations it lacks. Refuses a database from a newer cutoff.\n"
	"Adds the address keys an import that died before its end left (unless an import\n"
	"is running). Safe to run any number of times.\n",
};
