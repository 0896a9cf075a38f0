/* test_mime.c — composes messages with mime_compose, parses them back with GMime and with
 * tests/tools/strict_parse.py (Python's strict email policy); hostile values are refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <gmime/gmime.h>
#include <jansson.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mime.h"

#define PYTHON "/usr/bin/python3"
#define DATE_2003_08_18_1600 INT64_C(1061222400)

/* A plain ASCII message: every test starts from it and changes what it tests. */
static struct mime_message_spec spec_base(void)
{
	struct mime_message_spec s = {
		.from_name = "MSN Messenger",
		.from_addr = "noreply@msn.example.test",
		.to_name = "Alice Example",
		.to_addr = "alice@example.test",
		.subject = "Please upgrade MSN Messenger before 15 October 2003",
		.text = "Hello Alice,\n\nPlease upgrade before 15 October 2003.\n",
		.message_id_domain = "msn.example.test",
		.recipient_id = "u123",
		.date = DATE_2003_08_18_1600,
	};
	return s;
}

static char *compose_ok(const struct mime_message_spec *s, struct buf *out)
{
	struct err e = {0};
	char *id = NULL;
	int rc = mime_compose(s, out, &id, &e);

	if (rc != 0)
		fail_msg("mime_compose failed: %s", e.msg);
	assert_non_null(id);
	return id;
}

/* The bytes as SMTP needs them: CRLF everywhere, short lines, 7-bit, final CRLF. */
static void assert_wire_format(const struct buf *b)
{
	size_t start = 0;

	assert_true(b->len > 2);
	assert_memory_equal(b->data + b->len - 2, "\r\n", 2);
	for (size_t i = 0; i < b->len; i++) {
		unsigned char c = (unsigned char)b->data[i];

		assert_true(c < 0x80);
		if (c == '\r')
			assert_true(i + 1 < b->len && b->data[i + 1] == '\n');
		if (c == '\n') {
			assert_true(i > 0 && b->data[i - 1] == '\r');
			assert_true(i - 1 - start <= 998);
			start = i + 1;
		}
	}
}

static GMimeMessage *parse_back(const struct buf *b)
{
	GMimeStream *stream = g_mime_stream_mem_new_with_buffer(b->data, b->len);
	GMimeParser *parser = g_mime_parser_new_with_stream(stream);
	GMimeMessage *msg = g_mime_parser_construct_message(parser, NULL);

	g_object_unref(parser);
	g_object_unref(stream);
	assert_non_null(msg);
	return msg;
}

/* The decoded content of a leaf part, as it was encoded; the caller frees it. */
static char *part_raw(GMimeObject *obj)
{
	GMimeStream *stream = g_mime_stream_mem_new();
	GByteArray *bytes;
	struct buf b;

	assert_true(GMIME_IS_PART(obj));
	g_mime_data_wrapper_write_to_stream(g_mime_part_get_content(GMIME_PART(obj)), stream);
	bytes = g_mime_stream_mem_get_byte_array(GMIME_STREAM_MEM(stream));
	buf_init(&b);
	buf_append(&b, bytes->data, bytes->len);
	g_object_unref(stream);
	return buf_steal(&b);
}

/* The decoded content of a leaf part, CRLF turned back into LF; the caller frees it. */
static char *part_text(GMimeObject *obj)
{
	struct buf b;

	b.data = part_raw(obj);
	b.len = strlen(b.data);
	b.cap = b.len + 1;
	mime_crlf_to_lf(&b);
	return b.data;
}

/* A copy of s with CRLF turned into LF; the caller frees it. */
static char *lf_copy(const char *s)
{
	struct buf b;

	buf_init(&b);
	buf_puts(&b, s);
	mime_crlf_to_lf(&b);
	return buf_steal(&b);
}

static void assert_part(GMimeObject *obj, const char *type, GMimeContentEncoding encoding,
			const char *text)
{
	char *got = part_text(obj);
	char *ct = g_mime_content_type_get_mime_type(g_mime_object_get_content_type(obj));

	assert_string_equal(ct, type);
	assert_string_equal(g_mime_object_get_content_type_parameter(obj, "charset"), "utf-8");
	assert_int_equal(g_mime_part_get_content_encoding(GMIME_PART(obj)), encoding);
	assert_string_equal(got, text);
	g_free(ct);
	free(got);
}

static void assert_mailbox(InternetAddressList *list, const char *name, const char *addr)
{
	InternetAddress *ia;

	assert_int_equal(internet_address_list_length(list), 1);
	ia = internet_address_list_get_address(list, 0);
	assert_true(INTERNET_ADDRESS_IS_MAILBOX(ia));
	assert_string_equal(internet_address_get_name(ia) ? internet_address_get_name(ia) : "",
			    name);
	assert_string_equal(internet_address_mailbox_get_addr(INTERNET_ADDRESS_MAILBOX(ia)), addr);
}

/* Writes b to a temporary file; returns its path (the caller unlinks and frees it). */
static char *temp_message(const struct buf *b)
{
	const char *dir = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	char *path = xasprintf("%s/test_mime.XXXXXX", dir);
	int fd = mkstemp(path);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, b->data, b->len), (ssize_t)b->len);
	close(fd);
	return path;
}

static char *strict_parse_script(void)
{
	const char *src = getenv("CUTOFF_SOURCE_DIR");
	const char *slash = strrchr(__FILE__, '/');

	if (src != NULL)
		return xasprintf("%s/tests/tools/strict_parse.py", src);
	/* __FILE__ is .../tests/unit/test_mime.c */
	if (slash == NULL)
		return xstrdup("../tools/strict_parse.py");
	return xasprintf("%.*s/../tools/strict_parse.py", (int)(slash - __FILE__), __FILE__);
}

/* True (after saying so) when Debian's Python is not there to run strict_parse.py. */
static bool python_missing(void)
{
	if (access(PYTHON, X_OK) == 0)
		return false;
	print_message("skipping the strict_parse.py checks: " PYTHON " is missing\n");
	return true;
}

/*
 * Runs strict_parse.py --require-crlf on b (Python must be there). Returns its
 * JSON verdict when it exits 0, else NULL with *status its exit status and
 * *output what it printed.
 */
static json_t *strict_parse(const struct buf *b, int *status, struct buf *output)
{
	char *script = strict_parse_script(), *path = NULL, *cmd = NULL, chunk[4096];
	json_t *verdict = NULL;
	json_error_t jerr;
	FILE *p;
	size_t n;

	assert_null(strchr(script, '\''));
	path = temp_message(b);
	cmd = xasprintf(PYTHON " '%s' --require-crlf '%s' 2>&1", script, path);
	p = popen(cmd, "r");
	assert_non_null(p);
	while ((n = fread(chunk, 1, sizeof chunk, p)) > 0)
		buf_append(output, chunk, n);
	*status = pclose(p);
	*status = WIFEXITED(*status) ? WEXITSTATUS(*status) : -1;
	if (*status == 0) {
		verdict = json_loadb(output->data, output->len, 0, &jerr);
		if (verdict == NULL)
			fail_msg("strict_parse.py printed no JSON: %s", jerr.text);
	}
	unlink(path);
	free(path);
	free(cmd);
	free(script);
	return verdict;
}

/*
 * strict_parse.py must accept b; returns the verdict (json_decref it), or NULL
 * when Python is missing and that part of the test is skipped.
 */
static json_t *strict_parse_ok(const struct buf *b)
{
	struct buf output;
	int status;
	json_t *verdict;

	if (python_missing())
		return NULL;
	buf_init(&output);
	verdict = strict_parse(b, &status, &output);
	if (verdict == NULL)
		fail_msg("strict_parse.py refused the message (exit %d): %s", status,
			 output.data ? output.data : "");
	buf_free(&output);
	return verdict;
}

static const char *verdict_part(json_t *verdict, size_t i, const char *key)
{
	json_t *v = json_object_get(json_array_get(json_object_get(verdict, "parts"), i), key);

	return json_is_string(v) ? json_string_value(v) : NULL;
}

static const char *verdict_address(json_t *verdict, const char *header, const char *key)
{
	json_t *list = json_object_get(json_object_get(verdict, "addresses"), header);

	assert_int_equal(json_array_size(list), 1);
	return json_string_value(json_object_get(json_array_get(list, 0), key));
}

static const char *verdict_header(json_t *verdict, const char *name)
{
	json_t *headers = json_object_get(verdict, "headers");
	const char *found = NULL;

	for (size_t i = 0; i < json_array_size(headers); i++) {
		json_t *pair = json_array_get(headers, i);

		if (strcasecmp(json_string_value(json_array_get(pair, 0)), name) == 0) {
			assert_null(found);
			found = json_string_value(json_array_get(pair, 1));
		}
	}
	return found;
}

static bool is_hex(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return true;
}

/* s composes, and its Message-ID is head, 24 hex digits and "@msn.example.test". */
static void assert_message_id(const struct mime_message_spec *s, const char *head)
{
	size_t n = strlen(head);
	struct buf b;
	char *id;

	buf_init(&b);
	id = compose_ok(s, &b);
	assert_true(str_starts_with(id, head));
	assert_true(is_hex(id + n, 24));
	assert_string_equal(id + n + 24, "@msn.example.test");
	free(id);
	buf_free(&b);
}

/*
 * A numeric delivery id goes into the Message-ID zero-padded to 18 digits, so that
 * one run's ids sort in delivery order; any other id is left out of it.
 */
static void test_message_id_forms(void **state)
{
	const struct {
		const char *delivery, *head;
	} cases[] = {
		{"42", "20030818160000.000000000000000042."},
		{"123456789012345678", "20030818160000.123456789012345678."},
		{"1234567890123456789", "20030818160000."}, /* 19 digits: not numbered */
		{"d-000042", "20030818160000."},
	};

	(void)state;
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct mime_message_spec s = spec_base();

		s.delivery_id = cases[i].delivery;
		assert_message_id(&s, cases[i].head);
	}
}

/* The Message-ID's time is Date's, every field zero-padded, from year 1 to 9999, and the
 * delivery number zero-padded to 18 digits. */
static void test_message_id_dates(void **state)
{
	const struct {
		int64_t date;
		const char *delivery, *head;
	} cases[] = {
		{INT64_C(-62132730894), "7", "00010203040506.000000000000000007."},
		{INT64_C(946684799), "0", "19991231235959.000000000000000000."},
		{INT64_C(253402300799), "999999999999999999", "99991231235959.999999999999999999."},
		{INT64_C(946684799), NULL, "19991231235959."},
	};

	(void)state;
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct mime_message_spec s = spec_base();

		s.date = cases[i].date, s.delivery_id = cases[i].delivery;
		assert_message_id(&s, cases[i].head);
	}
}

static void test_ascii_text_only(void **state)
{
	struct mime_message_spec s = spec_base();
	struct buf b;
	GMimeMessage *msg;
	char *id, *header_id;
	json_t *v;

	(void)state;
	buf_init(&b);
	id = compose_ok(&s, &b);
	assert_wire_format(&b);
	assert_true(str_starts_with(b.data, "Date: Mon, 18 Aug 2003 16:00:00 +0000\r\n"));
	assert_non_null(strstr(b.data, "\r\nFrom: MSN Messenger <noreply@msn.example.test>\r\n"));
	assert_non_null(strstr(b.data, "\r\nTo: Alice Example <alice@example.test>\r\n"));
	assert_non_null(strstr(b.data, "\r\nMIME-Version: 1.0\r\n"));
	assert_non_null(strstr(b.data, "\r\nAuto-Submitted: auto-generated\r\n"));
	assert_non_null(strstr(b.data, "\r\nX-Cutoff-Recipient: u123\r\n"));
	assert_null(strstr(b.data, "List-Unsubscribe"));
	assert_null(strstr(b.data, "X-Cutoff-Campaign"));
	assert_null(strstr(b.data, "Reply-To"));
	assert_non_null(strstr(b.data, "\r\nContent-Transfer-Encoding: 7bit\r\n"));

	/* 20030818160000.<24 hex>@msn.example.test */
	assert_int_equal(strlen(id), 15 + 24 + 1 + strlen("msn.example.test"));
	assert_true(str_starts_with(id, "20030818160000."));
	assert_true(is_hex(id + 15, 24));
	assert_string_equal(id + 39, "@msn.example.test");

	msg = parse_back(&b);
	assert_string_equal(g_mime_message_get_message_id(msg), id);
	header_id = xasprintf("<%s>", id);
	assert_string_equal(g_mime_object_get_header(GMIME_OBJECT(msg), "Message-Id"), header_id);
	assert_string_equal(g_mime_message_get_subject(msg), s.subject);
	assert_mailbox(g_mime_message_get_from(msg), "MSN Messenger", "noreply@msn.example.test");
	assert_mailbox(g_mime_message_get_to(msg), "Alice Example", "alice@example.test");
	assert_int_equal(internet_address_list_length(g_mime_message_get_reply_to(msg)), 0);
	assert_part(g_mime_message_get_mime_part(msg), "text/plain", GMIME_CONTENT_ENCODING_7BIT,
		    s.text);

	v = strict_parse_ok(&b);
	if (v != NULL) {
		assert_string_equal(json_string_value(json_object_get(v, "linesep")), "crlf");
		assert_int_equal(json_array_size(json_object_get(v, "parts")), 1);
		assert_string_equal(verdict_part(v, 0, "content_type"), "text/plain");
		assert_string_equal(verdict_part(v, 0, "text"), s.text);
		assert_string_equal(verdict_header(v, "Subject"), s.subject);
		assert_string_equal(verdict_header(v, "Message-ID"), header_id);
		assert_string_equal(verdict_address(v, "To", "display_name"), "Alice Example");
		json_decref(v);
	}
	g_object_unref(msg);
	free(header_id);
	free(id);
	buf_free(&b);
}

static void test_international_names_and_subjects(void **state)
{
	static const struct {
		const char *name, *subject, *text;
		GMimeContentEncoding encoding;
	} cases[] = {
		{"Amélie Poulain, Équipe", "Mise à jour requise avant le 15 octobre",
		 "Bonjour,\nVotre client MSN Messenger doit être mis à jour.\n",
		 GMIME_CONTENT_ENCODING_QUOTEDPRINTABLE},
		{"Jürgen \"JJ\" Müller", "Bitte aktualisieren Sie Ihren Messenger (Größe: 5 MB)",
		 "Hallo Jürgen,\nbitte aktualisieren Sie den Messenger bis zum 15. Oktober.\n",
		 GMIME_CONTENT_ENCODING_QUOTEDPRINTABLE},
		{"山田 太郎", "MSN メッセンジャーを更新してください",
		 "こんにちは。\n10月15日までにメッセンジャーを更新してください。\n",
		 GMIME_CONTENT_ENCODING_BASE64},
		{"Zoë 🎉 <not an address>", "Upgrade now 🚀 — it takes under a minute",
		 "🎉🎉🎉🎉🎉🎉🎉🎉🎉🎉🎉🎉🎉🎉🎉🎉🎉\n", GMIME_CONTENT_ENCODING_BASE64},
	};

	(void)state;
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct mime_message_spec s = spec_base();
		struct buf b;
		GMimeMessage *msg;
		json_t *v;
		char *id;

		s.to_name = cases[i].name;
		s.from_name = cases[i].name;
		s.subject = cases[i].subject;
		s.text = cases[i].text;
		s.reply_to = "Équipe d'assistance <support@msn.example.test>";
		buf_init(&b);
		id = compose_ok(&s, &b);
		assert_wire_format(&b);
		assert_non_null(strstr(b.data, "=?UTF-8?")); /* encoded words, in UTF-8 */
		assert_null(strstr(b.data, "iso-8859"));

		msg = parse_back(&b);
		assert_string_equal(g_mime_message_get_subject(msg), cases[i].subject);
		assert_mailbox(g_mime_message_get_to(msg), cases[i].name, "alice@example.test");
		assert_mailbox(g_mime_message_get_from(msg), cases[i].name,
			       "noreply@msn.example.test");
		assert_mailbox(g_mime_message_get_reply_to(msg), "Équipe d'assistance",
			       "support@msn.example.test");
		assert_part(g_mime_message_get_mime_part(msg), "text/plain", cases[i].encoding,
			    cases[i].text);
		if (cases[i].encoding == GMIME_CONTENT_ENCODING_BASE64) {
			/* base64 carries the canonical form of text: CRLF line breaks */
			char *raw = part_raw(g_mime_message_get_mime_part(msg));

			assert_non_null(strstr(raw, "\r\n"));
			free(raw);
		}

		v = strict_parse_ok(&b);
		if (v != NULL) {
			assert_string_equal(verdict_header(v, "Subject"), cases[i].subject);
			assert_string_equal(verdict_address(v, "To", "display_name"), cases[i].name);
			assert_string_equal(verdict_address(v, "To", "addr_spec"), "alice@example.test");
			assert_string_equal(verdict_address(v, "Reply-To", "display_name"),
					    "Équipe d'assistance");
			assert_string_equal(verdict_part(v, 0, "text"), cases[i].text);
			json_decref(v);
		}
		g_object_unref(msg);
		free(id);
		buf_free(&b);
	}
}

static char *repeat(char c, size_t n, const char *suffix)
{
	struct buf b;

	buf_init(&b);
	for (size_t i = 0; i < n; i++)
		buf_putc(&b, c);
	buf_puts(&b, suffix);
	return buf_steal(&b);
}

static void test_html_alternative_and_long_lines(void **state)
{
	struct mime_message_spec s = spec_base();
	char *long_html = repeat('x', 5000, "</p>\n");
	char *line998 = repeat('a', 998, "\n");
	char *line999 = repeat('a', 999, "\n");
	char *html = xasprintf("<html><body><p>%s</body></html>\n", long_html);
	char *long_subject = repeat('S', 300, " end");
	struct buf b;
	GMimeMessage *msg;
	GMimeMultipart *alt;
	json_t *v;
	char *id;

	(void)state;
	s.html = html;
	s.text = line998;
	s.subject = long_subject;
	buf_init(&b);
	id = compose_ok(&s, &b);
	assert_wire_format(&b);
	msg = parse_back(&b);
	assert_string_equal(g_mime_message_get_subject(msg), long_subject);
	alt = GMIME_MULTIPART(g_mime_message_get_mime_part(msg));
	assert_true(GMIME_IS_MULTIPART(alt));
	assert_string_equal(g_mime_content_type_get_media_subtype(
				    g_mime_object_get_content_type(GMIME_OBJECT(alt))),
			    "alternative");
	assert_int_equal(g_mime_multipart_get_count(alt), 2);
	/* 998 octets fit in 7bit; a 5000-octet HTML line has to be quoted-printable. */
	assert_part(g_mime_multipart_get_part(alt, 0), "text/plain", GMIME_CONTENT_ENCODING_7BIT,
		    line998);
	assert_part(g_mime_multipart_get_part(alt, 1), "text/html",
		    GMIME_CONTENT_ENCODING_QUOTEDPRINTABLE, html);
	v = strict_parse_ok(&b);
	if (v != NULL) {
		assert_string_equal(verdict_part(v, 0, "content_type"), "text/plain");
		assert_string_equal(verdict_part(v, 1, "content_type"), "text/html");
		assert_string_equal(verdict_part(v, 1, "text"), html);
		assert_string_equal(verdict_header(v, "Subject"), long_subject);
		json_decref(v);
	}
	g_object_unref(msg);
	free(id);

	s.html = NULL;
	s.text = line999;
	id = compose_ok(&s, &b);
	assert_wire_format(&b);
	msg = parse_back(&b);
	assert_part(g_mime_message_get_mime_part(msg), "text/plain",
		    GMIME_CONTENT_ENCODING_QUOTEDPRINTABLE, line999);
	g_object_unref(msg);
	free(id);
	buf_free(&b);
	free(long_html);
	free(line998);
	free(line999);
	free(html);
	free(long_subject);
}

static const char ICS[] = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//cutoff//EN\r\n"
			  "METHOD:PUBLISH\r\nBEGIN:VEVENT\r\nUID:cutoff-msn-2003@msn.example.test\r\n"
			  "DTSTAMP:20030818T160000Z\r\nDTSTART;VALUE=DATE:20031015\r\n"
			  "SUMMARY:MSN Messenger cutoff\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";

static void test_ics_and_unsubscribe(void **state)
{
	struct mime_message_spec s = spec_base();
	char *url = xasprintf("https://msn.example.test/unsubscribe?u=u123&t=%s",
			      "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
			      "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
	char *expected_lu = xasprintf("<mailto:unsubscribe@msn.example.test?subject=u123>, <%s>", url);
	char *ics_lf;
	struct buf b;
	GMimeMessage *msg;
	GMimeMultipart *mixed, *alt;
	GMimeObject *cal;
	json_t *v;
	char *id;

	(void)state;
	s.html = "<p>Hello Alice</p>\n";
	s.ics = ICS;
	s.unsubscribe_mailto = "mailto:unsubscribe@msn.example.test?subject=u123";
	s.unsubscribe_url = url;
	s.campaign = "msn-2003";
	s.delivery_id = "d-000042";
	buf_init(&b);
	id = compose_ok(&s, &b);
	assert_wire_format(&b);
	/* The URL goes out whole, on its own folded line, never RFC 2047-encoded. */
	assert_non_null(strstr(b.data, url));
	assert_non_null(strstr(b.data, "\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"));
	assert_non_null(strstr(b.data, "\r\nX-Cutoff-Campaign: msn-2003\r\n"));
	assert_non_null(strstr(b.data, "\r\nX-Cutoff-Delivery: d-000042\r\n"));

	msg = parse_back(&b);
	mixed = GMIME_MULTIPART(g_mime_message_get_mime_part(msg));
	assert_string_equal(g_mime_content_type_get_media_subtype(
				    g_mime_object_get_content_type(GMIME_OBJECT(mixed))),
			    "mixed");
	assert_int_equal(g_mime_multipart_get_count(mixed), 2);
	alt = GMIME_MULTIPART(g_mime_multipart_get_part(mixed, 0));
	assert_true(GMIME_IS_MULTIPART(alt));
	assert_part(g_mime_multipart_get_part(alt, 0), "text/plain", GMIME_CONTENT_ENCODING_7BIT,
		    s.text);
	assert_part(g_mime_multipart_get_part(alt, 1), "text/html", GMIME_CONTENT_ENCODING_7BIT,
		    s.html);
	cal = g_mime_multipart_get_part(mixed, 1);
	ics_lf = lf_copy(ICS);
	assert_part(cal, "text/calendar", GMIME_CONTENT_ENCODING_7BIT, ics_lf);
	assert_string_equal(g_mime_object_get_content_type_parameter(cal, "method"), "PUBLISH");
	assert_string_equal(g_mime_part_get_filename(GMIME_PART(cal)), "cutoff.ics");
	assert_string_equal(g_mime_object_get_disposition(cal), "attachment");

	v = strict_parse_ok(&b);
	if (v != NULL) {
		assert_int_equal(json_array_size(json_object_get(v, "parts")), 3);
		assert_string_equal(verdict_part(v, 2, "content_type"), "text/calendar");
		assert_string_equal(verdict_part(v, 2, "filename"), "cutoff.ics");
		assert_string_equal(verdict_part(v, 2, "disposition"), "attachment");
		assert_string_equal(verdict_part(v, 2, "text"), ics_lf);
		assert_string_equal(verdict_header(v, "List-Unsubscribe"), expected_lu);
		assert_string_equal(verdict_header(v, "List-Unsubscribe-Post"),
				    "List-Unsubscribe=One-Click");
		json_decref(v);
	}
	g_object_unref(msg);
	free(id);

	/* A bare address becomes a mailto: URI; without a URL there is no one-click header. */
	s.unsubscribe_mailto = "unsubscribe@msn.example.test";
	s.unsubscribe_url = NULL;
	s.ics = NULL;
	id = compose_ok(&s, &b);
	assert_non_null(strstr(b.data, "\r\nList-Unsubscribe: <mailto:unsubscribe@msn.example.test>\r\n"));
	assert_null(strstr(b.data, "List-Unsubscribe-Post"));
	free(id);

	free(ics_lf);
	free(expected_lu);
	free(url);
	buf_free(&b);
}

enum field { F_TO_NAME, F_TO_ADDR, F_FROM_NAME, F_FROM_ADDR, F_REPLY_TO, F_SUBJECT, F_URL,
	     F_MAILTO, F_CAMPAIGN, F_RECIPIENT, F_DELIVERY, F_DOMAIN, F_TEXT, F_ICS };

static void spec_set(struct mime_message_spec *s, enum field f, const char *v)
{
	switch (f) {
	case F_TO_NAME: s->to_name = v; break;
	case F_TO_ADDR: s->to_addr = v; break;
	case F_FROM_NAME: s->from_name = v; break;
	case F_FROM_ADDR: s->from_addr = v; break;
	case F_REPLY_TO: s->reply_to = v; break;
	case F_SUBJECT: s->subject = v; break;
	case F_URL: s->unsubscribe_url = v; break;
	case F_MAILTO: s->unsubscribe_mailto = v; break;
	case F_CAMPAIGN: s->campaign = v; break;
	case F_RECIPIENT: s->recipient_id = v; break;
	case F_DELIVERY: s->delivery_id = v; break;
	case F_DOMAIN: s->message_id_domain = v; break;
	case F_TEXT: s->text = v; break;
	case F_ICS: s->ics = v; break;
	}
}

static void test_hostile_values_refused(void **state)
{
	static const struct {
		enum field field;
		const char *value, *message;
	} cases[] = {
		{F_TO_NAME, "Alice\r\nBcc: victim@example.test",
		 "recipient u123: the display name contains a line break; refusing to compose a "
		 "header from it"},
		{F_TO_NAME, "Alice\nBcc: victim@example.test",
		 "recipient u123: the display name contains a line break; refusing to compose a "
		 "header from it"},
		{F_TO_NAME, "Alice\tExample",
		 "recipient u123: the display name contains a control character (U+0009); "
		 "refusing to compose a header from it"},
		{F_TO_NAME, "Alice\xc2\x85" "Bcc: x@example.test",
		 "recipient u123: the display name contains a control character (U+0085)"},
		{F_TO_NAME, "=?utf-8?q?Alice=0D=0ABcc:_x@example.test?=",
		 "recipient u123: the display name contains \"=?\""},
		{F_FROM_NAME, "MSN\rBcc: x@example.test",
		 "recipient u123: the sender display name contains a line break"},
		{F_SUBJECT, "Upgrade\r\nBcc: victim@example.test",
		 "recipient u123: the subject contains a line break; refusing to compose a header "
		 "from it"},
		{F_SUBJECT, "Upgrade \xff\xfe now", "recipient u123: the subject is not valid UTF-8"},
		{F_SUBJECT, "", "recipient u123: the subject is missing"},
		{F_REPLY_TO, "support@msn.example.test\r\nBcc: victim@example.test",
		 "recipient u123: the Reply-To address contains a line break"},
		{F_REPLY_TO, "support@msn.example.test, Bcc: victim@example.test",
		 "recipient u123: the Reply-To address is not exactly one address"},
		{F_REPLY_TO, "Support <support@msn.example.test>, <victim@example.test>",
		 "recipient u123: the Reply-To address is not exactly one address"},
		{F_TO_ADDR, "alice@example.test\r\nBcc: victim@example.test",
		 "recipient u123: the e-mail address contains a line break"},
		{F_TO_ADDR, "alice@example.test, victim@example.test",
		 "recipient u123: the e-mail address contains ','"},
		{F_TO_ADDR, "alice@example.test>Bcc:victim@example.test",
		 "recipient u123: the e-mail address contains '>'"},
		{F_TO_ADDR, "Alice <alice@example.test>",
		 "recipient u123: the e-mail address contains a space"},
		{F_TO_ADDR, "alice example@example.test",
		 "recipient u123: the e-mail address contains a space"},
		{F_TO_ADDR, "alice@@example.test",
		 "recipient u123: the e-mail address is not an e-mail address (it needs exactly one @)"},
		{F_TO_ADDR, "alice..x@example.test",
		 "recipient u123: the e-mail address has an invalid local part"},
		{F_TO_ADDR, "alice@-example.test",
		 "recipient u123: the e-mail address has an invalid domain"},
		{F_TO_ADDR, "alice@exämple.test",
		 "recipient u123: the e-mail address contains non-ASCII characters"},
		{F_TO_ADDR, NULL, "recipient u123: the e-mail address is missing"},
		{F_FROM_ADDR, "noreply@msn.example.test\nBcc: x@example.test",
		 "recipient u123: the sender address contains a line break"},
		{F_URL, "https://msn.example.test/u?x=1\r\nBcc: victim@example.test",
		 "recipient u123: the unsubscribe URL contains a line break"},
		{F_URL, "https://msn.example.test/u?x=1, https://evil.example.test/",
		 "recipient u123: the unsubscribe URL contains ' ', which must be percent-encoded"},
		{F_URL, "https://msn.example.test/u?x=1><https://evil.example.test/",
		 "recipient u123: the unsubscribe URL contains '>', which must be percent-encoded"},
		{F_URL, "http://msn.example.test/u",
		 "recipient u123: the unsubscribe URL is not an https:// URL"},
		{F_MAILTO, "mailto:unsub@msn.example.test\nBcc: x@example.test",
		 "recipient u123: the unsubscribe mailto contains a line break"},
		{F_MAILTO, "mailto:not-an-address",
		 "recipient u123: the unsubscribe mailto is not an e-mail address"},
		{F_CAMPAIGN, "msn\r\nBcc: x@example.test",
		 "recipient u123: the campaign name contains a line break"},
		{F_CAMPAIGN, "msn 2003", "recipient u123: the campaign name contains a space"},
		{F_DELIVERY, "d1\n", "recipient u123: the delivery id contains a line break"},
		{F_RECIPIENT, "u123\r\nBcc: x@example.test",
		 "the recipient id contains a line break; refusing to compose a header from it"},
		{F_DOMAIN, "msn.example.test>\r\nBcc: x",
		 "recipient u123: the Message-ID domain contains a line break"},
		{F_DOMAIN, "msn example", "recipient u123: the Message-ID domain is not a host name"},
		{F_TEXT, "caf\xe9\n",
		 "recipient u123: the text body is not valid UTF-8; refusing to compose the message"},
		/* the bad octet after ASCII runs of every length modulo 8 (body_check skips
		 * ASCII 8 octets at a time), and a sequence cut short at the very end */
		{F_TEXT, "Hello, this is plain ASCII for a while: caf\xe9\n",
		 "recipient u123: the text body is not valid UTF-8; refusing to compose the message"},
		{F_TEXT, "Hello, this is plain ASCII for a while, then: caf\xe9\n",
		 "recipient u123: the text body is not valid UTF-8; refusing to compose the message"},
		{F_TEXT, "0123456789abcdef\xc3\xa9 then an overlong slash \xc0\xaf here\n",
		 "recipient u123: the text body is not valid UTF-8; refusing to compose the message"},
		{F_TEXT, "0123456789abcdef0123456\xe2\x82",
		 "recipient u123: the text body is not valid UTF-8; refusing to compose the message"},
		{F_TEXT, "caf\xc3\xa9, caf\xc3\xa9, and a lone continuation octet \x80 here\n",
		 "recipient u123: the text body is not valid UTF-8; refusing to compose the message"},
		{F_TEXT, "a sequence cut by ASCII: \xe2\x82 and on\n",
		 "recipient u123: the text body is not valid UTF-8; refusing to compose the message"},
		{F_TEXT, NULL, "recipient u123: the text body is missing"},
		{F_ICS, "not a calendar",
		 "recipient u123: the calendar attachment does not start with BEGIN:VCALENDAR"},
	};

	(void)state;
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct mime_message_spec s = spec_base();
		struct err e = {0};
		struct buf b;
		char *id = (char *)"untouched";
		int rc;

		spec_set(&s, cases[i].field, cases[i].value);
		buf_init(&b);
		buf_puts(&b, "stale bytes from an earlier message");
		rc = mime_compose(&s, &b, &id, &e);
		if (rc != ERR_DATA || !str_starts_with(e.msg, cases[i].message))
			fail_msg("case %zu: rc %d, message \"%s\", expected \"%s...\"", i, rc, e.msg,
				 cases[i].message);
		assert_int_equal(e.code, ERR_DATA);
		assert_null(id);
		assert_int_equal(b.len, 0);
		buf_free(&b);
	}
}

static void test_error_without_recipient_id(void **state)
{
	struct mime_message_spec s = spec_base();
	struct err e = {0};
	struct buf b;
	char *id;

	(void)state;
	s.recipient_id = NULL;
	s.to_name = "Alice\r\nBcc: victim@example.test";
	buf_init(&b);
	assert_int_equal(mime_compose(&s, &b, &id, &e), ERR_DATA);
	assert_string_equal(e.msg, "the display name contains a line break; refusing to compose a "
				   "header from it");
	buf_free(&b);
}

static void test_date_header_and_range(void **state)
{
	struct mime_message_spec s = spec_base();
	struct err e = {0};
	struct buf b;
	char *id;

	(void)state;
	s.date = INT64_C(1066201200); /* the cutoff: 2003-10-15 07:00:00 UTC */
	buf_init(&b);
	id = compose_ok(&s, &b);
	assert_true(str_starts_with(b.data, "Date: Wed, 15 Oct 2003 07:00:00 +0000\r\n"));
	assert_true(str_starts_with(id, "20031015070000."));
	free(id);

	s.date = INT64_C(400000000000); /* year 14645 */
	assert_int_equal(mime_compose(&s, &b, &id, &e), ERR_DATA);
	assert_string_equal(e.msg, "recipient u123: the date is out of range (years 1 to 9999); "
				   "refusing to compose a header from it");
	assert_null(id);
	buf_free(&b);
}

/* Header-looking text in a display name is harmless once GMime quotes it. */
static void test_injection_text_stays_inside_the_name(void **state)
{
	struct mime_message_spec s = spec_base();
	struct buf b;
	GMimeMessage *msg;
	json_t *v;
	char *id;

	(void)state;
	s.to_name = "Alice, Bcc: victim@example.test; <evil@example.test>";
	s.subject = "Hello Bcc: victim@example.test";
	buf_init(&b);
	id = compose_ok(&s, &b);
	msg = parse_back(&b);
	assert_mailbox(g_mime_message_get_to(msg), s.to_name, "alice@example.test");
	assert_int_equal(internet_address_list_length(g_mime_message_get_bcc(msg)), 0);
	assert_int_equal(internet_address_list_length(g_mime_message_get_cc(msg)), 0);
	assert_null(g_mime_object_get_header(GMIME_OBJECT(msg), "Bcc"));
	v = strict_parse_ok(&b);
	if (v != NULL) {
		assert_string_equal(verdict_address(v, "To", "display_name"), s.to_name);
		assert_null(verdict_header(v, "Bcc"));
		json_decref(v);
	}
	g_object_unref(msg);
	free(id);
	buf_free(&b);
}

static void test_message_ids_unique(void **state)
{
	struct mime_message_spec s = spec_base();
	struct buf b;
	char *id1, *id2;

	(void)state;
	buf_init(&b);
	id1 = compose_ok(&s, &b);
	id2 = compose_ok(&s, &b);
	assert_string_not_equal(id1, id2);
	assert_memory_equal(id1, id2, 15); /* same Date, same timestamp part */
	free(id1);
	free(id2);
	buf_free(&b);
}

static void test_body_newlines_normalised(void **state)
{
	struct mime_message_spec s = spec_base();
	struct buf b;
	GMimeMessage *msg;
	char *id;

	(void)state;
	s.text = "line one\r\nline two\rline three"; /* CRLF, lone CR, no final newline */
	buf_init(&b);
	id = compose_ok(&s, &b);
	assert_wire_format(&b);
	msg = parse_back(&b);
	assert_part(g_mime_message_get_mime_part(msg), "text/plain", GMIME_CONTENT_ENCODING_7BIT,
		    "line one\nline two\nline three\n");
	g_object_unref(msg);
	free(id);

	/* A line starting "From " is quoted-printable, so no mbox tool mangles it. */
	s.text = "Hello,\nFrom 15 October old clients cannot sign in.\n";
	id = compose_ok(&s, &b);
	msg = parse_back(&b);
	assert_part(g_mime_message_get_mime_part(msg), "text/plain",
		    GMIME_CONTENT_ENCODING_QUOTEDPRINTABLE, s.text);
	g_object_unref(msg);
	free(id);
	buf_free(&b);
}

static void test_crlf_to_lf_for_display(void **state)
{
	struct mime_message_spec s = spec_base();
	struct buf b;
	size_t crlf_len, lines = 0;
	char *id;

	(void)state;
	s.html = "<p>Hello</p>\n";
	buf_init(&b);
	id = compose_ok(&s, &b);
	crlf_len = b.len;
	for (size_t i = 0; i < b.len; i++)
		lines += b.data[i] == '\n';
	mime_crlf_to_lf(&b);
	assert_null(strchr(b.data, '\r'));
	assert_int_equal(b.len, crlf_len - lines);
	assert_int_equal(strlen(b.data), b.len);
	assert_true(str_starts_with(b.data, "Date: Mon, 18 Aug 2003 16:00:00 +0000\nFrom: "));
	free(id);
	buf_free(&b);
}

/* The checker itself must be able to fail: feed it broken messages. */
static void test_strict_parse_rejects_defects(void **state)
{
	static const char *const broken[] = {
		/* bare LF among CRLF */
		"Date: Mon, 18 Aug 2003 16:00:00 +0000\r\nFrom: a@example.test\n\r\nbody\r\n",
		/* raw 8-bit header */
		"Date: Mon, 18 Aug 2003 16:00:00 +0000\r\nFrom: J\xc3\xbcrgen <a@example.test>\r\n"
		"\r\nbody\r\n",
		/* no Date */
		"From: a@example.test\r\nSubject: x\r\n\r\nbody\r\n",
		/* two From headers */
		"Date: Mon, 18 Aug 2003 16:00:00 +0000\r\nFrom: a@example.test\r\n"
		"From: b@example.test\r\n\r\nbody\r\n",
		/* invalid base64 */
		"Date: Mon, 18 Aug 2003 16:00:00 +0000\r\nFrom: a@example.test\r\nMIME-Version: 1.0\r\n"
		"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"
		"!!!not base64!!!\r\n",
		/* 8-bit body declared 7bit */
		"Date: Mon, 18 Aug 2003 16:00:00 +0000\r\nFrom: a@example.test\r\nMIME-Version: 1.0\r\n"
		"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 7bit\r\n\r\n"
		"caf\xc3\xa9\r\n",
		/* bad address */
		"Date: Mon, 18 Aug 2003 16:00:00 +0000\r\nFrom: <a@>\r\n\r\nbody\r\n",
		/* multipart never closed */
		"Date: Mon, 18 Aug 2003 16:00:00 +0000\r\nFrom: a@example.test\r\nMIME-Version: 1.0\r\n"
		"Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\n"
		"Content-Type: text/plain\r\n\r\nhi\r\n",
		/* RFC 2047 word that is not UTF-8 */
		"Date: Mon, 18 Aug 2003 16:00:00 +0000\r\nFrom: a@example.test\r\n"
		"Subject: =?utf-8?q?caf=E9?=\r\n\r\nbody\r\n",
	};
	char *long_line = repeat('x', 1200, "\r\n");
	char *with_long = xasprintf("Date: Mon, 18 Aug 2003 16:00:00 +0000\r\nFrom: a@example.test\r\n"
				    "\r\n%s",
				    long_line);
	struct buf b, output;
	int status;

	(void)state;
	if (python_missing()) {
		free(with_long);
		free(long_line);
		skip();
	}
	buf_init(&b);
	buf_init(&output);
	for (size_t i = 0; i <= sizeof broken / sizeof broken[0]; i++) {
		buf_reset(&b);
		buf_reset(&output);
		buf_puts(&b, i < sizeof broken / sizeof broken[0] ? broken[i] : with_long);
		assert_null(strict_parse(&b, &status, &output));
		if (status != 1 || strstr(output.data, "strict_parse: ") == NULL)
			fail_msg("case %zu: exit %d, output %s", i, status, output.data);
	}
	buf_free(&b);
	buf_free(&output);
	free(with_long);
	free(long_line);
}

/* The header line(s) "Name: ..." of a composed message, up to the next header; caller frees. */
static char *header_of(const struct buf *b, const char *name)
{
	size_t n = strlen(name);
	const char *p = b->data, *end;

	while (!(strncmp(p, name, n) == 0 && p[n] == ':'))
		p = strstr(p, "\r\n") + 2;
	for (end = strstr(p, "\r\n"); end[2] == ' ' || end[2] == '\t'; end = strstr(end + 2, "\r\n"))
		;
	return strndup(p, (size_t)(end + 2 - p));
}

/* What GMime's own InternetAddress encoder writes for one mailbox (its IDN step included). */
static char *gmime_mailbox_header(const char *header, const char *name, const char *addr)
{
	InternetAddressList *list = internet_address_list_new();
	InternetAddress *ia = internet_address_mailbox_new(name, addr);
	GString *str = g_string_new(header);
	struct buf b;

	internet_address_set_charset(ia, "utf-8");
	internet_address_list_add(list, ia);
	g_string_append(str, ": ");
	internet_address_list_encode(list, NULL, str);
	buf_init(&b);
	for (size_t i = 0; i < str->len; i++) {
		if (str->str[i] == '\n' && (i == 0 || str->str[i - 1] != '\r'))
			buf_putc(&b, '\r');
		buf_putc(&b, str->str[i]);
	}
	g_string_free(str, TRUE);
	g_object_unref(ia);
	g_object_unref(list);
	return buf_steal(&b);
}

/* What GMime writes for a Reply-To value parsed by GMime itself. */
static char *gmime_reply_to_header(const char *value)
{
	InternetAddressList *list = internet_address_list_parse(NULL, value);
	InternetAddress *ia = internet_address_list_get_address(list, 0);
	char *h;

	h = gmime_mailbox_header("Reply-To", internet_address_get_name(ia),
				 internet_address_mailbox_get_addr(INTERNET_ADDRESS_MAILBOX(ia)));
	g_object_unref(list);
	return h;
}

/*
 * The From, To and Reply-To headers are byte for byte what GMime's encoder (with its IDN
 * step) writes, for domains in any case, A-labels valid or not, "--" in the third
 * and fourth place, long names that fold and names that need encoding or quoting.
 */
static void test_mailboxes_as_gmime_writes_them(void **state)
{
	static const char *const addrs[] = {
		"alice@example.test", "Bob.Smith@Example.COM", "x@MiXeD-Case.Users.Example.Test",
		"u@xn--bcher-kva.example", "u@XN--BCHER-KVA.example", "u@xn--zz.example",
		"u@ab--cd.example", "u@a-b--c.example", "u@1.2.3.example", "u@A.bc--d.example",
		"user+tag@sub.EXAMPLE.org", "u@xn--ls8h.la",
		"a.very.long.local.part.that.goes.on@a-rather-long-subdomain-label-here.example.test",
	};
	static const char *const names[] = {
		"", "Alice Example", "Smith, Bob", "Zoë Ünicode", "A \"quoted\" one",
		"An extraordinarily long display name that will certainly need folding somewhere",
	};
	(void)state;
	for (size_t i = 0; i < sizeof addrs / sizeof *addrs; i++) {
		for (size_t j = 0; j < sizeof names / sizeof *names; j++) {
			struct mime_message_spec s = spec_base();
			struct buf b;
			char *id, *want_to, *want_from, *got_to, *got_from, *want_rt, *got_rt;
			char reply_to[300];

			s.to_addr = addrs[i], s.to_name = names[j];
			s.from_addr = addrs[(i + 1) % (sizeof addrs / sizeof *addrs)];
			s.from_name = names[(j + 1) % (sizeof names / sizeof *names)];
			/* (not the xn-- ones: GMime's parser turns them into U-labels, refused) */
			snprintf(reply_to, sizeof reply_to, j % 2 ? "Support Desk <%s>" : "%s",
				 strstr(addrs[i], "xn--") ? "help@Support.Example" : addrs[i]);
			s.reply_to = reply_to;
			buf_init(&b);
			id = compose_ok(&s, &b);
			want_to = gmime_mailbox_header("To", s.to_name, s.to_addr);
			want_from = gmime_mailbox_header("From", s.from_name, s.from_addr);
			got_to = header_of(&b, "To");
			got_from = header_of(&b, "From");
			assert_string_equal(got_to, want_to);
			assert_string_equal(got_from, want_from);
			want_rt = gmime_reply_to_header(reply_to);
			got_rt = header_of(&b, "Reply-To");
			assert_string_equal(got_rt, want_rt);
			free(want_to), free(want_from), free(got_to), free(got_from);
			free(want_rt), free(got_rt);
			free(id);
			buf_free(&b);
		}
	}
}

/*
 * Mailboxes that cutoff writes without GMime (plain ASCII names, simple addresses, short
 * lines) are byte for byte what GMime writes, up to and past the length where GMime folds;
 * and the ones next to them (a dot, an apostrophe, a double space, a long word, an xn--
 * label, a line one column longer) too, whichever way they are written.
 */
static void test_plain_mailboxes_as_gmime_writes_them(void **state)
{
	static const char *const addrs[] = {
		"a@b.example.test", "Jane.Doe@Users.Example.TEST", "user+tag_1@sub-d.example.org",
		"u@xn--bcher-kva.example", "u@ab--cd.example", "x@y.z",
	};
	static const char *const names[] = {
		"", "Jane Doe", "J", "123", "Jane  Doe", " Jane", "Jane ", "Jr.", "O'Brien",
		"A-B", "Ann_Lee", "Jos\xc3\xa9", "Ann (Lee)",
		"JaneDoeJaneDoeJaneDoeJaneDoeJaneDoeJaneDoeJaneDoeJaneDoeJaneDoeJaneDoeJane",
	};
	char name[128];

	(void)state;
	for (size_t i = 0; i < sizeof addrs / sizeof *addrs; i++) {
		for (size_t j = 0; j < sizeof names / sizeof *names + 40; j++) {
			struct mime_message_spec s = spec_base();
			struct buf b;
			char *id, *want, *got;

			if (j < sizeof names / sizeof *names) {
				snprintf(name, sizeof name, "%s", names[j]);
			} else { /* words of five letters, lines of 44 to 125 columns */
				size_t n = 2 * (j - sizeof names / sizeof *names) + 20;
				for (size_t k = 0; k < n; k++)
					name[k] = k % 6 == 5 ? ' ' : (char)('a' + k % 26);
				name[n] = '\0';
				if (name[n - 1] == ' ')
					name[n - 1] = 'Z';
			}
			s.to_addr = addrs[i], s.to_name = name;
			buf_init(&b);
			id = compose_ok(&s, &b);
			want = gmime_mailbox_header("To", s.to_name, s.to_addr);
			got = header_of(&b, "To");
			assert_string_equal(got, want);
			free(want), free(got), free(id);
			buf_free(&b);
		}
	}
}

/* A copy of the message with its random parts (24 hex digits) masked; the caller frees it. */
static char *masked(const struct buf *b)
{
	char *m = b->data != NULL ? strndup(b->data, b->len) : strdup(""); /* empty on errors */

	for (size_t i = 0; m[i]; i++) {
		size_t n = strspn(m + i, "0123456789abcdef");
		if (n == 24)
			memset(m + i, '#', n);
		i += n ? n - 1 : 0;
	}
	return m;
}

/*
 * A composer with a cache writes byte for byte what one without writes, and
 * refuses what it refuses, whatever changes between messages: the cache never
 * hands out a line made for another sender, Reply-To or date.
 */
static void test_cache_changes_nothing(void **state)
{
	struct mime_cache *cache = mime_cache_new();
	struct mime_message_spec seq[10];
	(void)state;

	for (size_t i = 0; i < 10; i++)
		seq[i] = spec_base();
	seq[1].to_addr = "bob@example.test", seq[1].to_name = "Bob";
	seq[2].from_name = "MSN Messenger Team";
	seq[3].reply_to = "Support <help@msn.example.test>";
	seq[4].reply_to = "Other Support <other@msn.example.test>";
	seq[5].reply_to = NULL, seq[5].subject = "Zoë, please upgrade before the 15th";
	seq[6].date = DATE_2003_08_18_1600 + 86400;
	seq[7].from_addr = "not an address";
	seq[8].reply_to = "two@a.example, three@b.example";
	seq[9].from_name = "Zoë Ünicode, the sender";
	for (int round = 0; round < 8; round++) {
		for (size_t i = 0; i < 10; i++) {
			char subject[64];

			/* from round 2: 45 subjects in turn, more than the cache holds */
			snprintf(subject, sizeof subject, "Subject number %zu, Ünicode",
				 (i + 10 * (size_t)round) % 45);
			if (round >= 2)
				seq[i].subject = subject;
			struct err e1 = {0}, e2 = {0};
			struct buf b1, b2;
			char *id1 = NULL, *id2 = NULL, *m1, *m2;
			int rc1, rc2;

			buf_init(&b1), buf_init(&b2);
			rc1 = mime_compose(&seq[i], &b1, &id1, &e1);
			rc2 = mime_compose_cached(cache, &seq[i], &b2, &id2, &e2);
			assert_int_equal(rc2, rc1);
			assert_string_equal(e2.msg, e1.msg);
			assert_int_equal(rc1 == 0, i != 7 && i != 8);
			m1 = masked(&b1), m2 = masked(&b2);
			assert_string_equal(m2, m1);
			free(m1), free(m2), free(id1), free(id2);
			buf_free(&b1), buf_free(&b2);
		}
	}
	mime_cache_free(cache);
	mime_cache_free(NULL);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The text after needle in b up to the next CR (a boundary, say), or NULL. */
static char *text_after(const struct buf *b, const char *needle)
{
	const char *p = strstr(b->data, needle);

	return p == NULL ? NULL : strndup(p, strcspn(p, "\r"));
}

/*
 * A cache draws its random octets ahead of use, many messages' worth at once: every
 * message still gets its own Message-ID and boundaries, past several refills, and a
 * process forked with the cache does not reuse its parent's octets.
 */
static void test_cache_random_ids(void **state)
{
	enum { N = 300 };
	struct mime_cache *cache = mime_cache_new();
	struct mime_message_spec s = spec_base();
	char *seen[2 * N + 2];
	struct err e = {0};
	struct buf b;
	size_t n = 0;
	int fds[2];
	pid_t pid;
	char child_id[256] = "";
	ssize_t got;

	(void)state;
	s.html = "<p>Hello Alice</p>\n"; /* multipart/alternative: a boundary too */
	buf_init(&b);
	for (int i = 0; i < N; i++) {
		char *id = NULL;
		assert_int_equal(mime_compose_cached(cache, &s, &b, &id, &e), 0);
		seen[n++] = id;
		seen[n++] = text_after(&b, "boundary=\"=-alt-");
		assert_non_null(seen[n - 1]);
	}
	assert_int_equal(pipe(fds), 0);
	if ((pid = fork()) == 0) {
		char *id = NULL;
		int ok = mime_compose_cached(cache, &s, &b, &id, &e) == 0 &&
			 write(fds[1], id, strlen(id)) == (ssize_t)strlen(id);
		_exit(ok ? 0 : 1);
	}
	assert_true(pid > 0);
	close(fds[1]);
	assert_int_equal(mime_compose_cached(cache, &s, &b, &seen[n], &e), 0);
	n++;
	got = read(fds[0], child_id, sizeof child_id - 1);
	close(fds[0]);
	assert_true(got > 0);
	child_id[got] = '\0';
	seen[n++] = strdup(child_id);
	waitpid(pid, NULL, 0);
	qsort(seen, n, sizeof *seen, cmp_str);
	for (size_t i = 1; i < n; i++)
		assert_string_not_equal(seen[i - 1], seen[i]);
	for (size_t i = 0; i < n; i++)
		free(seen[i]);
	buf_free(&b);
	mime_cache_free(cache);
}

/* GMime's own pick for a body (GMimeFilterBest under the 7-bit constraint), as named in headers. */
static const char *gmime_best(const char *body)
{
	GMimeFilter *f = g_mime_filter_best_new(GMIME_FILTER_BEST_ENCODING);
	GMimeContentEncoding enc;
	size_t outlen, outprespace;
	char *outbuf;

	g_mime_filter_complete(f, (char *)body, strlen(body), 0, &outbuf, &outlen, &outprespace);
	enc = g_mime_filter_best_encoding(GMIME_FILTER_BEST(f), GMIME_ENCODING_CONSTRAINT_7BIT);
	g_object_unref(f);
	return g_mime_content_encoding_to_string(enc == GMIME_CONTENT_ENCODING_DEFAULT
							 ? GMIME_CONTENT_ENCODING_7BIT : enc);
}

/* A body of about len octets, per_mille of them 8-bit (in "é"), lines of line_len. */
static char *body_make(size_t len, size_t per_mille, size_t line_len, bool from_line)
{
	size_t high = len * per_mille / 1000 / 2 * 2, col = 0;
	struct buf b;

	buf_init(&b);
	if (from_line)
		buf_puts(&b, "Hello,\nFrom now on, upgrade.\n");
	for (size_t i = 0; b.len < len; i++) {
		if (col >= line_len) {
			buf_putc(&b, '\n');
			col = 0;
		} else if (high >= 2 && i % 3 == 0) {
			buf_puts(&b, "\xc3\xa9");
			high -= 2, col++;
		} else {
			buf_putc(&b, "abcdefg "[i % 8]);
			col++;
		}
	}
	while (high >= 2) {
		buf_puts(&b, "\xc3\xa9");
		high -= 2;
	}
	buf_putc(&b, '\n');
	return buf_steal(&b);
}

/*
 * The Content-Transfer-Encoding is GMime's pick, whether mime.c sees it at once
 * or asks GMime's filter: swept over the share of 8-bit octets (finely around
 * 17%), long lines and lines starting with "From ".
 */
static void test_encoding_is_gmimes_pick(void **state)
{
	static const size_t sizes[] = {40, 700, 3000};
	(void)state;
	for (size_t per_mille = 0; per_mille <= 1000; per_mille += per_mille >= 140 && per_mille < 200 ? 2 : 10)
		for (size_t k = 0; k < 3 * 2 * 2; k++) {
			struct mime_message_spec s = spec_base();
			size_t line_len = k % 2 ? 1200 : 70;
			char *body = body_make(sizes[k / 4], per_mille, line_len, (k / 2) % 2);
			char *id, *cte;
			struct buf b;

			buf_init(&b);
			s.text = body;
			id = compose_ok(&s, &b);
			cte = strstr(b.data, "Content-Transfer-Encoding: ");
			assert_non_null(cte);
			cte += strlen("Content-Transfer-Encoding: ");
			if (strncmp(cte, gmime_best(body), strlen(gmime_best(body))) != 0 ||
			    cte[strlen(gmime_best(body))] != '\r')
				fail_msg("%zu per mille 8-bit, %zu octets, lines of %zu%s: got %.20s, GMime "
					 "picks %s", per_mille, strlen(body), line_len,
					 (k / 2) % 2 ? ", a From line" : "", cte, gmime_best(body));
			free(id), free(body);
			buf_free(&b);
		}
}

static int group_setup(void **state)
{
	(void)state;
	mime_init();
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	mime_shutdown();
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ascii_text_only),
		cmocka_unit_test(test_message_id_forms),
		cmocka_unit_test(test_message_id_dates),
		cmocka_unit_test(test_international_names_and_subjects),
		cmocka_unit_test(test_html_alternative_and_long_lines),
		cmocka_unit_test(test_ics_and_unsubscribe),
		cmocka_unit_test(test_hostile_values_refused),
		cmocka_unit_test(test_plain_mailboxes_as_gmime_writes_them),
		cmocka_unit_test(test_error_without_recipient_id),
		cmocka_unit_test(test_date_header_and_range),
		cmocka_unit_test(test_injection_text_stays_inside_the_name),
		cmocka_unit_test(test_message_ids_unique),
		cmocka_unit_test(test_cache_random_ids),
		cmocka_unit_test(test_body_newlines_normalised),
		cmocka_unit_test(test_crlf_to_lf_for_display),
		cmocka_unit_test(test_strict_parse_rejects_defects),
		cmocka_unit_test(test_mailboxes_as_gmime_writes_them),
		cmocka_unit_test(test_cache_changes_nothing),
		cmocka_unit_test(test_encoding_is_gmimes_pick),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
