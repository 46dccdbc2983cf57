/* SPDX-License-Identifier: GPL-2.0 */
/*
 * What every payload needs, whether or not it runs a VM.
 */
#ifndef KVMCONF_UTIL_H
#define KVMCONF_UTIL_H

/* Fatal payload errors (not kernel behaviour): stdout flushed, the message
 * on stderr, exit 2. */
void die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));

/* The first line of a (sysfs) file, newline dropped, in buf[32]; NULL when
 * the file cannot be opened. */
const char *sysfs_word(const char *path, char buf[32]);

#endif
