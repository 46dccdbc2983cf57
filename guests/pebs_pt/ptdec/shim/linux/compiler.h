/* ptdec shim for <linux/compiler.h> (tools/include/linux/compiler.h in a perf build).
 *
 * intel-pt-pkt-decoder.c uses only __fallthrough from it; the rest are the
 * usual helpers, defined as tools/include/linux/compiler*.h define them, in
 * case a tree's decoder uses them too.
 */
#ifndef PTDEC_SHIM_LINUX_COMPILER_H
#define PTDEC_SHIM_LINUX_COMPILER_H

#ifndef __fallthrough
#if defined(__GNUC__) && __GNUC__ >= 7
#define __fallthrough __attribute__((__fallthrough__))
#else
#define __fallthrough
#endif
#endif
#ifndef fallthrough
#define fallthrough __fallthrough
#endif
#ifndef __maybe_unused
#define __maybe_unused __attribute__((unused))
#endif
#ifndef __always_inline
#define __always_inline inline __attribute__((always_inline))
#endif
#ifndef likely
#define likely(x) __builtin_expect(!!(x), 1)
#endif
#ifndef unlikely
#define unlikely(x) __builtin_expect(!!(x), 0)
#endif
#ifndef __packed
#define __packed __attribute__((packed))
#endif
#ifndef noinline
#define noinline __attribute__((noinline))
#endif

#endif
