/* serve_client.c — a C load client for `cutoff serve` in the tests: N connections (one thread
 * and one keep-alive libcurl handle each) posting logins, answers tallied and optionally kept.
 *
 * usage: serve_client URL TOKEN_FILE CONNECTIONS REQUESTS USER [VERSION [ANSWERS]]
 *   URL          e.g. http://127.0.0.1:8625 (POST URL/v1/logins)
 *   REQUESTS     per connection
 *   USER         one user id, or PREFIX%N: user PREFIX followed by an 8-digit number in 1..N,
 *                spread over the connections and requests (u%500 -> u00000001 .. u00000500)
 *   ANSWERS      a file that gets every 200 answer, one a line
 * Prints "requests=R ok=O reminders=M completed=C http_errors=H transport_errors=T" and exits
 * 0 when every request got 200, 1 otherwise, 2 on a usage error.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

struct shared {
	const char *url, *version, *user, *prefix;
	long users, requests;
	char auth[512];
	FILE *answers;
	pthread_mutex_t lock;
	long ok, reminders, completed, http_errors, transport_errors;
};

struct worker {
	struct shared *sh;
	long index, connections;
	pthread_t thread;
};

struct body {
	char data[8192];
	size_t len;
};

static size_t on_data(char *p, size_t size, size_t n, void *ud)
{
	struct body *b = ud;
	size_t len = size * n;

	if (len > sizeof b->data - 1 - b->len)
		len = sizeof b->data - 1 - b->len;
	memcpy(b->data + b->len, p, len);
	b->len += len;
	b->data[b->len] = '\0';
	return size * n;
}

/* One login; tallies its outcome. */
static void post_one(struct shared *sh, CURL *c, long k)
{
	char user[300], json[600];
	struct body b = {.len = 0};
	long status = 0;
	CURLcode res;

	if (sh->prefix != NULL)
		snprintf(user, sizeof user, "%s%08ld", sh->prefix, k % sh->users + 1);
	else
		snprintf(user, sizeof user, "%s", sh->user);
	snprintf(json, sizeof json, "{\"user\":\"%s\",\"client_version\":\"%s\",\"platform\":"
		 "\"windows\"}", user, sh->version);
	b.data[0] = '\0';
	curl_easy_setopt(c, CURLOPT_POSTFIELDS, json);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
	res = curl_easy_perform(c);
	if (res == CURLE_OK)
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	pthread_mutex_lock(&sh->lock);
	if (res != CURLE_OK) {
		sh->transport_errors++;
		fprintf(stderr, "serve_client: %s\n", curl_easy_strerror(res));
	} else if (status != 200) {
		sh->http_errors++;
		fprintf(stderr, "serve_client: HTTP %ld: %s", status, b.data);
	} else {
		sh->ok++;
		sh->reminders += strstr(b.data, "\"reminder\":{") != NULL;
		sh->completed += strstr(b.data, "\"completed\":true") != NULL;
		if (sh->answers != NULL)
			fputs(b.data, sh->answers);
	}
	pthread_mutex_unlock(&sh->lock);
}

static void *work(void *arg)
{
	struct worker *w = arg;
	struct shared *sh = w->sh;
	struct curl_slist *h = NULL;
	char url[1024];
	CURL *c = curl_easy_init();

	if (c == NULL)
		return NULL;
	snprintf(url, sizeof url, "%s/v1/logins", sh->url);
	h = curl_slist_append(h, sh->auth);
	h = curl_slist_append(h, "Content-Type: application/json");
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	for (long i = 0; i < sh->requests; i++)
		post_one(sh, c, i * w->connections + w->index);
	curl_slist_free_all(h);
	curl_easy_cleanup(c);
	return NULL;
}

static int read_token(const char *path, char *auth, size_t n)
{
	char token[400] = "";
	FILE *f = fopen(path, "r");

	if (f == NULL || fgets(token, sizeof token, f) == NULL) {
		perror(path);
		if (f != NULL)
			fclose(f);
		return -1;
	}
	fclose(f);
	token[strcspn(token, "\r\n")] = '\0';
	snprintf(auth, n, "Authorization: Bearer %s", token);
	return 0;
}

int main(int argc, char **argv)
{
	struct shared sh = {.version = "4.6", .lock = PTHREAD_MUTEX_INITIALIZER};
	struct worker *w;
	long connections;
	char *pct;

	if (argc < 6 || argc > 8 || (connections = strtol(argv[3], NULL, 10)) < 1 ||
	    (sh.requests = strtol(argv[4], NULL, 10)) < 1) {
		fprintf(stderr, "usage: serve_client URL TOKEN_FILE CONNECTIONS REQUESTS USER"
				" [VERSION [ANSWERS]]\n");
		return 2;
	}
	sh.url = argv[1], sh.user = argv[5];
	if ((pct = strchr(argv[5], '%')) != NULL) {
		*pct = '\0';
		sh.prefix = argv[5], sh.users = strtol(pct + 1, NULL, 10);
		if (sh.users < 1)
			return fprintf(stderr, "serve_client: bad USER %s\n", argv[5]), 2;
	}
	if (argc > 6)
		sh.version = argv[6];
	if (argc > 7 && (sh.answers = fopen(argv[7], "w")) == NULL)
		return perror(argv[7]), 2;
	if (read_token(argv[2], sh.auth, sizeof sh.auth) != 0)
		return 2;
	curl_global_init(CURL_GLOBAL_DEFAULT);
	w = calloc((size_t)connections, sizeof *w);
	for (long i = 0; i < connections; i++) {
		w[i] = (struct worker){&sh, i, connections, 0};
		pthread_create(&w[i].thread, NULL, work, &w[i]);
	}
	for (long i = 0; i < connections; i++)
		pthread_join(w[i].thread, NULL);
	printf("requests=%ld ok=%ld reminders=%ld completed=%ld http_errors=%ld"
	       " transport_errors=%ld\n", connections * sh.requests, sh.ok, sh.reminders,
	       sh.completed, sh.http_errors, sh.transport_errors);
	if (sh.answers != NULL)
		fclose(sh.answers);
	free(w);
	curl_global_cleanup();
	return sh.ok == connections * sh.requests ? 0 : 1;
}
