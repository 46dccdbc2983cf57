/* include/generated/bounds.h (kernel/bounds.c's values for the shim configuration) */
#ifndef __LINUX_BOUNDS_H__
#define __LINUX_BOUNDS_H__
#define NR_PAGEFLAGS 22
#define MAX_NR_ZONES 3
#define NR_CPUS_BITS 0
#define SPINLOCK_SIZE 4
#define LRU_GEN_WIDTH 0
#define __LRU_REFS_WIDTH 0
#endif
