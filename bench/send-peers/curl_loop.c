/* curl_loop.c — bench/send's reference: a plain C loop sending one prebuilt message N times
 * with libcurl's multi interface over C reused connections (NOSIGNAL, 16 KiB upload buffer);
 * bench/send also runs two of these at once, 4 connections each, as the two-core reference. */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct slot {
	CURL *h;
	struct curl_slist *rcpt;
	size_t off;
};

static const char *msg;
static size_t msg_len;

static size_t rd(char *dst, size_t size, size_t n, void *ud)
{
	struct slot *s = ud;
	size_t left = msg_len - s->off, room = size * n, k = left < room ? left : room;

	memcpy(dst, msg + s->off, k);
	s->off += k;
	return k;
}

static void start(CURLM *m, struct slot *s, const char *url)
{
	s->off = 0;
	curl_easy_reset(s->h);
	curl_easy_setopt(s->h, CURLOPT_URL, url);
	curl_easy_setopt(s->h, CURLOPT_MAIL_FROM, "<bench@example.test>");
	curl_easy_setopt(s->h, CURLOPT_MAIL_RCPT, s->rcpt);
	curl_easy_setopt(s->h, CURLOPT_UPLOAD, 1L);
	curl_easy_setopt(s->h, CURLOPT_READFUNCTION, rd);
	curl_easy_setopt(s->h, CURLOPT_READDATA, s);
	curl_easy_setopt(s->h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(s->h, CURLOPT_UPLOAD_BUFFERSIZE, 16384L);
	curl_easy_setopt(s->h, CURLOPT_PRIVATE, s);
	curl_multi_add_handle(m, s->h);
}

int main(int argc, char **argv)
{
	long total = argc > 2 ? strtol(argv[2], NULL, 10) : 20000, started = 0, done = 0, failed = 0;
	int conns = argc > 3 ? atoi(argv[3]) : 8, running, left;
	static char body[4096];
	struct slot *slots;
	CURLMsg *cm;
	CURLM *m;

	snprintf(body, sizeof body, "From: bench@example.test\r\nTo: user@users.example.test\r\n"
		 "Subject: bench\r\n\r\n%s\r\n", "Hello, this is a fixed benchmark message.");
	msg = body, msg_len = strlen(body);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	m = curl_multi_init();
	slots = calloc((size_t)conns, sizeof *slots);
	for (int i = 0; i < conns && started < total; i++, started++) {
		slots[i].h = curl_easy_init();
		slots[i].rcpt = curl_slist_append(NULL, "<user@users.example.test>");
		start(m, &slots[i], argv[1]);
	}
	/*
	 * Finished transfers are collected (and their connections given the next message)
	 * after every perform, before any poll: a transfer that finishes inside a perform
	 * followed directly by a poll would otherwise sit until another socket woke the poll
	 * or its 100 ms ran out (one connection: 10 messages a second).
	 */
	while (done < total) {
		curl_multi_perform(m, &running);
		while ((cm = curl_multi_info_read(m, &left)) != NULL) {
			struct slot *s;
			if (cm->msg != CURLMSG_DONE)
				continue;
			curl_easy_getinfo(cm->easy_handle, CURLINFO_PRIVATE, (char **)&s);
			failed += cm->data.result != CURLE_OK;
			curl_multi_remove_handle(m, s->h);
			done++;
			if (started < total) {
				started++;
				start(m, s, argv[1]);
			}
		}
		if (done < total) /* returns at once when a transfer was just added */
			curl_multi_poll(m, NULL, 0, 100, NULL);
	}
	printf("%ld sent, %ld failed\n", done - failed, failed);
	return failed != 0;
}
