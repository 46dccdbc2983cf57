/* The decoder programs' line format (docs/pebs-pt-suite.md section 1), shared by
 * ptdec (perf's decoder) and ipt (libipt).
 *
 * stdin:  "D <index> <hex bytes>" per stream (index decimal or 0x-hex; the hex may be
 *         empty; at most DEC_MAX_BYTES bytes), then EOF.
 * stdout: one JSON line per stream {"stream": i, "packets": [...], "error": {...}|null},
 *         then {"op": "done"}.
 * A malformed line: a one-line message on stderr, exit 2.
 *
 * A program defines decode_stream(buf, len) and uses dec_packet()/dec_error() to print.
 */
#ifndef PEBS_PT_DECLINES_H
#define PEBS_PT_DECLINES_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE	/* program_invocation_short_name, getline */
#endif

#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEC_MAX_BYTES (64 * 1024)

static int dec_first;   /* no packet printed yet in this stream */

static void dec_packet(size_t off, int len, const char *type, long long count,
		       uint64_t payload)
{
	printf("%s{\"off\": %zu, \"len\": %d, \"type\": \"%s\", \"count\": %lld, "
	       "\"payload\": %llu}", dec_first ? "" : ", ", off, len, type, count,
	       (unsigned long long)payload);
	dec_first = 0;
}

/* Ends the packet list: error == NULL for a clean end. */
static void dec_end(const char *error, size_t off)
{
	if (error)
		printf("], \"error\": {\"error\": \"%s\", \"off\": %zu}}\n", error, off);
	else
		printf("], \"error\": null}\n");
}

static void decode_stream(const unsigned char *buf, size_t len);

static void __attribute__((noreturn)) dec_malformed(unsigned long lineno, const char *why)
{
	fflush(stdout);
	fprintf(stderr, "%s: input line %lu: %s\n", program_invocation_short_name, lineno, why);
	exit(2);
}

static int dec_hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static int dec_main(void)
{
	static unsigned char buf[DEC_MAX_BYTES];
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	unsigned long lineno = 0;

	while ((n = getline(&line, &cap, stdin)) >= 0) {
		char *p = line, *end;
		unsigned long long index;
		size_t len = 0;

		lineno++;
		while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
			line[--n] = 0;
		if (n == 0)
			continue;	/* blank line */
		if (p[0] != 'D' || p[1] != ' ')
			dec_malformed(lineno, "expected 'D <index> <hex>'");
		p += 2;
		if (!isdigit((unsigned char)*p))
			dec_malformed(lineno, "bad stream index");
		errno = 0;
		if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X'))
			index = strtoull(p + 2, &end, 16);
		else
			index = strtoull(p, &end, 10);
		if (errno || (*end && *end != ' ') || end == p)
			dec_malformed(lineno, "bad stream index");
		p = end;
		while (*p == ' ')
			p++;
		while (*p && *p != ' ') {
			int hi = dec_hexval(p[0]), lo = hi < 0 ? -1 : dec_hexval(p[1]);

			if (hi < 0 || lo < 0)
				dec_malformed(lineno, "bad hex bytes (odd length or not hex)");
			if (len == DEC_MAX_BYTES)
				dec_malformed(lineno, "more than 64 KiB of data");
			buf[len++] = (unsigned char)(hi << 4 | lo);
			p += 2;
		}
		while (*p == ' ')
			p++;
		if (*p)
			dec_malformed(lineno, "trailing text after the hex bytes");
		printf("{\"stream\": %llu, \"packets\": [", index);
		dec_first = 1;
		decode_stream(buf, len);
	}
	free(line);
	if (ferror(stdin)) {
		fprintf(stderr, "%s: reading stdin: %s\n", program_invocation_short_name,
			strerror(errno));
		return 2;
	}
	printf("{\"op\": \"done\"}\n");
	return fflush(stdout) ? 1 : 0;
}

#endif
