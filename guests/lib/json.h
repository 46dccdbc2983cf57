/* SPDX-License-Identifier: GPL-2.0 */
/*
 * JSON-line output helpers: build one event object in a buffer, then print
 * it as a single line on stdout.  Integers are printed as JSON numbers
 * (unsigned 64-bit where the value is a register or MSR).
 */
#ifndef KVMCONF_JSON_H
#define KVMCONF_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define JSON_MAX 8192
#define JSON_DEPTH 8

/* The longest event in bytes: JSON_MAX unless the payload raises it (before
 * its first event).  A larger event is printed as {"error": ...} instead. */
extern size_t json_max;

struct json {
	char *buf;           /* grows as needed up to json_max; json_end_line frees it */
	size_t len, cap;
	int depth;
	bool first[JSON_DEPTH];
	bool overflow;
};

void json_begin(struct json *j);                     /* top-level { */
void json_end_line(struct json *j);                  /* } + newline to stdout */
void json_key(struct json *j, const char *key);      /* "key": (in an object) */
void json_obj_open(struct json *j, const char *key); /* key may be NULL in a list */
void json_obj_close(struct json *j);
void json_list_open(struct json *j, const char *key);
void json_list_close(struct json *j);
void json_u64(struct json *j, const char *key, uint64_t v);
void json_i64(struct json *j, const char *key, int64_t v);
void json_bool(struct json *j, const char *key, bool v);
void json_null(struct json *j, const char *key);
void json_str(struct json *j, const char *key, const char *s);

/* The end of script `index`: {"script":<index>,"op":"done"}, then stdout is
 * flushed, so that a harness streaming scripts one at a time sees the whole
 * answer before it sends the next. */
void script_done(long index);

#endif
