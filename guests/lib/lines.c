// SPDX-License-Identifier: GPL-2.0
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lines.h"

const char *kv_parse(char *line, int words, struct kv *kv)
{
	static char why[80];
	char *save = NULL, *tok, *eq, *end;
	int w = 0;

	memset(kv, 0, sizeof(*kv));
	for (tok = strtok_r(line, " \t\n", &save); tok; tok = strtok_r(NULL, " \t\n", &save)) {
		if (w < words) {
			if (++w < words)
				continue;
			if (strlen(tok) >= sizeof(kv->name))
				return "name too long";
			strcpy(kv->name, tok);
			continue;
		}
		eq = strchr(tok, '=');
		if (!eq || eq == tok || (size_t)(eq - tok) >= sizeof(kv->key[0]) || kv->n == KV_MAX) {
			snprintf(why, sizeof(why), "bad key=value '%.40s'", tok);
			return why;
		}
		errno = 0;
		kv->val[kv->n] = strtoull(eq + 1, &end, 0);
		if (errno || *end || end == eq + 1) {
			snprintf(why, sizeof(why), "bad number '%.40s'", eq + 1);
			return why;
		}
		memcpy(kv->key[kv->n], tok, eq - tok);
		kv->n++;
	}
	return w < words ? "missing name" : NULL;
}

bool kv_has(const struct kv *kv, const char *key)
{
	for (int i = 0; i < kv->n; i++)
		if (!strcmp(kv->key[i], key))
			return true;
	return false;
}

uint64_t kv_get(const struct kv *kv, const char *key, uint64_t def)
{
	for (int i = 0; i < kv->n; i++)
		if (!strcmp(kv->key[i], key))
			return kv->val[i];
	return def;
}
