/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The op-script input lines: "word ... key=value key=value ...", split at
 * blanks, values integers in C syntax (strtoull base 0: 0x1f, 017, 31).
 */
#ifndef KVMCONF_LINES_H
#define KVMCONF_LINES_H

#include <stdbool.h>
#include <stdint.h>

#define KV_MAX 24        /* pairs per line */
#define KV_LEN 24        /* longest name or key, plus one */

struct kv {
	char name[KV_LEN];   /* the last of the leading words ("" when none) */
	int n;
	char key[KV_MAX][KV_LEN];
	uint64_t val[KV_MAX];
};

/* Parses `line` (modified in place): `words` leading words, the last of which
 * becomes kv->name, then only key=value pairs.  NULL when the line is well
 * formed, else what is wrong with it. */
const char *kv_parse(char *line, int words, struct kv *kv);
bool kv_has(const struct kv *kv, const char *key);
uint64_t kv_get(const struct kv *kv, const char *key, uint64_t def);

#endif
