// SPDX-License-Identifier: GPL-2.0
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "util.h"

size_t json_max = JSON_MAX;

static void put(struct json *j, const char *fmt, ...)
{
	va_list ap;
	int n;

	while (!j->overflow) {
		va_start(ap, fmt);
		n = vsnprintf(j->buf + j->len, j->cap - j->len, fmt, ap);
		va_end(ap);
		if (n < 0 || j->len + n >= json_max) {
			j->overflow = true;
		} else if (j->len + n < j->cap) {
			j->len += n;
			return;
		} else {
			j->cap = j->len + n + 1 > 2 * j->cap ? j->len + n + 1 : 2 * j->cap;
			j->buf = realloc(j->buf, j->cap);
			if (!j->buf)
				die("out of memory");
		}
	}
}

static void sep(struct json *j)
{
	if (!j->first[j->depth])
		put(j, ",");
	j->first[j->depth] = false;
}

void json_begin(struct json *j)
{
	j->cap = 256;
	j->buf = malloc(j->cap);
	if (!j->buf)
		die("out of memory");
	j->len = 0;
	j->depth = 0;
	j->overflow = false;
	put(j, "{");
	j->first[0] = true;
}

void json_end_line(struct json *j)
{
	put(j, "}");
	if (j->overflow) {
		/* Never print a truncated object: the harness must see a clear error. */
		printf("{\"error\":\"event larger than %zu bytes\"}\n", json_max);
	} else {
		fwrite(j->buf, 1, j->len, stdout);
		fputc('\n', stdout);
	}
	free(j->buf);
	j->buf = NULL;
}

void json_key(struct json *j, const char *key)
{
	sep(j);
	if (key)
		put(j, "\"%s\":", key);
}

static void open(struct json *j, const char *key, const char *br)
{
	json_key(j, key);
	put(j, "%s", br);
	if (j->depth + 1 < JSON_DEPTH)
		j->depth++;
	else
		j->overflow = true;
	j->first[j->depth] = true;
}

void json_obj_open(struct json *j, const char *key) { open(j, key, "{"); }
void json_list_open(struct json *j, const char *key) { open(j, key, "["); }

void json_obj_close(struct json *j)
{
	put(j, "}");
	if (j->depth > 0)
		j->depth--;
}

void json_list_close(struct json *j)
{
	put(j, "]");
	if (j->depth > 0)
		j->depth--;
}

void json_u64(struct json *j, const char *key, uint64_t v)
{
	json_key(j, key);
	put(j, "%" PRIu64, v);
}

void json_i64(struct json *j, const char *key, int64_t v)
{
	json_key(j, key);
	put(j, "%" PRId64, v);
}

void json_bool(struct json *j, const char *key, bool v)
{
	json_key(j, key);
	put(j, v ? "true" : "false");
}

void json_null(struct json *j, const char *key)
{
	json_key(j, key);
	put(j, "null");
}

void json_str(struct json *j, const char *key, const char *s)
{
	json_key(j, key);
	put(j, "\"");
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			put(j, "\\%c", c);
		else if (c < 0x20 || c >= 0x7f)
			put(j, "\\u%04x", c);
		else
			put(j, "%c", c);
	}
	put(j, "\"");
}

void script_done(long index)
{
	struct json j;

	json_begin(&j);
	json_i64(&j, "script", index);
	json_str(&j, "op", "done");
	json_end_line(&j);
	fflush(stdout);
}
