/* SPDX-License-Identifier: GPL-2.0 */
/*
 * JSON-line output helpers: build one event object in a buffer, then print
 * it as a single line on stdout.  Integers are printed as JSON numbers
 * (unsigned 64-bit where the value is a register or MSR).
 */
#ifndef KVMCONF_JSON_H
#define KVMCONF_JSON_H

#include <stdbool.h>
#include <stdint.h>

#define JSON_MAX 8192
#define JSON_DEPTH 8

struct json {
	char buf[JSON_MAX];
	int len;
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

#endif
