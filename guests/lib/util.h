/* SPDX-License-Identifier: GPL-2.0 */
/*
 * What every payload needs, whether or not it runs a VM.
 */
#ifndef KVMCONF_UTIL_H
#define KVMCONF_UTIL_H

/* Fatal payload errors (not kernel behaviour): stdout flushed, the message
 * on stderr, exit 2. */
void die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));

#endif
