/* SPDX-License-Identifier: GPL-2.0 */
/*
 * A hostile payload: the harness's test of its own bounds (tests/test_hostile_*.py).
 * Guest output is untrusted; this program produces the worst of it on purpose.
 *
 *   hostile MODE [N]          one behaviour, chosen on the command line
 *   hostile                   op-script lines on stdin ("MODE N", "E" ends a script):
 *                             "ok N" answers {"script":i,"op":"answer","value":N},
 *                             any other mode behaves as on the command line
 *
 * Modes (N in MiB where it is a size):
 *   ok N            a well-formed answer
 *   flood-stdout N  N MiB of 1 KiB lines on stdout, then exit 0
 *   flood-stderr N  the same on stderr
 *   flood-both N    the same on both
 *   flood-forever   stdout without end; SIGPIPE and EPIPE ignored
 *   newlines N      N MiB of "\n" (the most lines per byte)
 *   events N        N MiB of well-formed events of script 0 that never ends
 *   endless-line N  one line of N MiB without a newline, then exit 0
 *   garbage K       a setup event, bad line K (see BAD below), the end marker
 *   hang            SIGTERM/HUP/INT/PIPE ignored, a forked child, both asleep forever
 *   busy            the same, spinning
 *   close-stdout    stdin, stdout and stderr closed, then asleep forever
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define B(s) { s, sizeof(s) - 1 }
static const struct { const char *text; size_t len; } BAD[] = {
	B("{\"script\":0,\"op\":\"x\0y\"}"),          /* 0 NUL inside a string */
	B("{\"script\":0,\"op\":\"x\"}\0\0\0"),      /* 1 NULs after the object */
	B("\0\0\0\0\0\0\0\0"),                       /* 2 NULs only */
	B("{\"script\":0,\"op\":"),                  /* 3 cut short */
	B("[\"script\",0]"),                         /* 4 not an object */
	B("{\"script\":0,\"op\":\"x\",\"v\":NaN}"),  /* 5 not JSON: NaN */
	B("{\"script\":0,\"op\":\"x\",\"v\":-Infinity}"), /* 6 not JSON: Infinity */
	B("\xff\xfe{\"script\":0,\"op\":\"x\"}"),    /* 7 not UTF-8 */
	B("{\"script\":0,\"error\":\"payload broke\",\"op\":\"x\"}"), /* 8 a payload's own error */
	B("{\"script\":7,\"op\":\"x\"}"),            /* 9 a script out of range */
	B("{\"script\":true,\"op\":\"x\"}"),         /* 10 a bool for the script */
};
#define NBAD (sizeof(BAD) / sizeof(BAD[0]))
#define DEEP 11                               /* nesting deeper than any parser's stack */
#define BIGINT 12                             /* an integer of 4000 digits */

static char block[1 << 16];

static void put(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len) {
		ssize_t n = write(fd, p, len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			_exit(3);
		}
		p += n;
		len -= n;
	}
}

static void fill(char c, int every)
{
	for (size_t i = 0; i < sizeof(block); i++)
		block[i] = every && (i + 1) % every == 0 ? '\n' : c;
}

static void flood(int fd1, int fd2, long mib)
{
	fill('A', 1024);
	for (long i = 0; i < mib * 16; i++) {
		if (fd1 >= 0)
			put(fd1, block, sizeof(block));
		if (fd2 >= 0)
			put(fd2, block, sizeof(block));
	}
}

static void deaf(void)
{
	signal(SIGTERM, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	signal(SIGINT, SIG_IGN);
	signal(SIGPIPE, SIG_IGN);
}

static void sleep_forever(void)
{
	for (;;)
		pause();
}

static void garbage(long kind)
{
	static char deep[8192];
	size_t n;

	put(1, "{\"script\":0,\"op\":\"setup\"}\n", 26);
	if (kind >= 0 && (size_t)kind < NBAD) {
		put(1, BAD[kind].text, BAD[kind].len);
	} else if (kind == DEEP) {
		memset(deep, '[', 4000);
		put(1, deep, 4000);
	} else if (kind == BIGINT) {
		n = sprintf(deep, "{\"script\":0,\"op\":\"x\",\"v\":");
		memset(deep + n, '7', 4000);
		put(1, deep, n + 4000);
		put(1, "}", 1);
	}
	put(1, "\n{\"script\":0,\"op\":\"done\"}\n", 27);
}

/* One behaviour; returns only for "ok". */
static void act(const char *mode, long n, long script)
{
	char line[128];
	long i;

	if (!strcmp(mode, "ok")) {
		printf("{\"script\":%ld,\"op\":\"answer\",\"value\":%ld}\n", script, n);
		return;
	}
	fflush(stdout);
	if (!strcmp(mode, "flood-stdout")) {
		flood(1, -1, n);
	} else if (!strcmp(mode, "flood-stderr")) {
		flood(-1, 2, n);
	} else if (!strcmp(mode, "flood-both")) {
		flood(1, 2, n);
	} else if (!strcmp(mode, "flood-forever")) {
		deaf();
		fill('F', 1024);
		for (;;)
			if (write(1, block, sizeof(block)) < 0 && errno != EINTR && errno != EAGAIN)
				usleep(1000);    /* EPIPE: the reader is gone; keep trying */
	} else if (!strcmp(mode, "newlines")) {
		fill('\n', 0);
		for (i = 0; i < n * 16; i++)
			put(1, block, sizeof(block));
	} else if (!strcmp(mode, "events")) {
		int len = snprintf(line, sizeof(line), "{\"script\":0,\"op\":\"x\"}\n");

		for (i = 0; i + len <= (long)sizeof(block); i += len)
			memcpy(block + i, line, len);
		for (long k = 0; k < n * 16; k++)
			put(1, block, i);
	} else if (!strcmp(mode, "endless-line")) {
		fill('L', 0);
		for (i = 0; i < n * 16; i++)
			put(1, block, sizeof(block));
	} else if (!strcmp(mode, "garbage")) {
		garbage(n);
	} else if (!strcmp(mode, "hang") || !strcmp(mode, "busy")) {
		deaf();
		if (fork() < 0)
			_exit(4);
		if (!strcmp(mode, "busy"))
			for (volatile unsigned long spin = 0;; spin++)
				;
		sleep_forever();
	} else if (!strcmp(mode, "close-stdout")) {
		deaf();
		close(0);
		close(1);
		close(2);
		sleep_forever();
	} else {
		fprintf(stderr, "hostile: unknown mode %s\n", mode);
		_exit(2);
	}
	_exit(0);
}

int main(int argc, char **argv)
{
	char line[256], mode[64];
	long script = 0, n;

	if (argc > 1) {
		act(argv[1], argc > 2 ? strtol(argv[2], NULL, 0) : 0, 0);
		return 0;
	}
	while (fgets(line, sizeof(line), stdin)) {
		if (line[0] == 'E') {
			printf("{\"script\":%ld,\"op\":\"done\"}\n", script++);
			fflush(stdout);
			continue;
		}
		n = 0;
		if (sscanf(line, "%63s %ld", mode, &n) < 1) {
			fprintf(stderr, "hostile: bad input line: %s", line);
			return 2;
		}
		act(mode, n, script);
	}
	return 0;
}
