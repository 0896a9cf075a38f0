/* fuzz_dsn.c — libFuzzer target for the returned-mail parser: any bytes, read as one message
 * (dsn_parse_buffer) and as an mbox (dsn_mbox_next), must give a result without a crash, a
 * leak or undefined behaviour (built with -fsanitize=fuzzer,address,undefined). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "dsn.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	dsn_init();
	return 0;
}

/* Every result must also turn into JSON (what --format json prints). */
static void use(struct dsn_result *res)
{
	json_t *j = dsn_result_to_json(res);
	char *text = json_dumps(j, JSON_COMPACT);

	free(text);
	json_decref(j);
	dsn_result_free(res);
}

static void as_mbox(const uint8_t *data, size_t size)
{
	GMimeStream *stream = g_mime_stream_mem_new_with_buffer((const char *)data, size);
	struct dsn_mbox *mb = dsn_mbox_new(stream);
	struct dsn_result *res;
	size_t index;

	g_object_unref(stream);
	for (int i = 0; i < 64 && dsn_mbox_next(mb, &res, &index) == 1; i++)
		use(res);
	dsn_mbox_free(mb);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct dsn_result *res = NULL;
	struct err e = {0};

	if (dsn_parse_buffer((const char *)data, size, &res, &e) == 0)
		use(res);
	else if (res != NULL || e.code != ERR_DATA)
		abort(); /* the only failure is "not a message", and it leaves nothing behind */
	if (size > 0 && data[0] == 'F')
		as_mbox(data, size); /* inputs that may start with "From " */
	return 0;
}
