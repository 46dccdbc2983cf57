/* SPDX-License-Identifier: GPL-2.0 */
/*
 * kvmconf mini VMM library: VM, vCPU, CPUID, capabilities, guest modes,
 * exception recording, port-I/O result channel and deadlines around KVM_RUN.
 *
 * In the spirit of tools/testing/selftests/kvm/lib: each payload stays short
 * and about one feature.  Everything runs in one thread; vCPUs of one VM are
 * run one at a time, so they may share the guest stacks and the TSS.
 */
#ifndef KVMCONF_KVMLIB_H
#define KVMCONF_KVMLIB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <linux/kvm.h>

#include "util.h"

typedef uint8_t u8;
typedef uint16_t u16;
typedef uint32_t u32;
typedef uint64_t u64;

/* Guest physical memory layout (one 2 MiB slot, identity mapped). */
#define GUEST_MEM_SIZE      0x200000ULL
#define GPA_PML4            0x1000ULL
#define GPA_PDPT            0x2000ULL
#define GPA_PD              0x3000ULL
#define GPA_GDT             0x4000ULL
#define GPA_TSS             0x5000ULL
#define GPA_IDT64           0x6000ULL
#define GPA_IDT32           0x7000ULL
#define GPA_CODE            0x10000ULL   /* the guest_text blob is copied here */
#define GPA_CODE_MAX        0x10000ULL   /* its maximum size */
#define GPA_DATA            0x30000ULL   /* free pages for payload use */
#define GPA_KSTACK_TOP      0x48000ULL
#define GPA_USTACK_TOP      0x4c000ULL

/* GDT selectors (guests/lib/guest_lib.S and kvmlib.c agree on them). */
#define SEL_CODE64          0x08
#define SEL_DATA            0x10
#define SEL_CODE32          0x18
#define SEL_UDATA           0x23
#define SEL_UCODE64         0x2b
#define SEL_TSS             0x30

/* Result channel: the guest ends each action with `out %al, $port`. */
#define UCALL_PORT_DONE     0xe0
#define UCALL_PORT_FATAL    0xe1

/* The exception handlers put the vector in R15 (64-bit) or EBP (32-bit). */
#define NO_VECTOR           0xffffffffULL

enum guest_mode { MODE_LONG64 = 64, MODE_PROT32 = 32 };

struct vcpu {
	int fd;
	int id;
	struct kvm_run *run;
	struct vm *vm;
	int cur_mode;   /* mode/cpl last loaded with KVM_SET_SREGS, 0 = none */
	int cur_cpl;
};

#define VM_MAX_VCPUS 4

struct vm {
	int fd;
	u8 *mem;
	size_t mem_size;
	int nr_vcpus;
	struct vcpu vcpus[VM_MAX_VCPUS];
};

/* The blob of guest code: every guests/ .S file puts its guest code in the
 * section "guest_text"; the linker brackets it with these symbols. */
extern const u8 __start_guest_text[], __stop_guest_text[];
/* Guest physical address of a symbol inside guest_text. */
u64 guest_sym_gpa(const void *sym);

int kvm_fd(void);                 /* /dev/kvm, opened once; exits on failure */
int kvm_check_extension(long cap);/* on the system fd */
const char *kvm_cpu_vendor(void); /* "amd", "intel" or "unknown" (host CPUID) */

/* The CPUID bases, fetched once.  NULL with errno set when the ioctl fails. */
struct kvm_cpuid2 *kvm_supported_cpuid(void);
struct kvm_cpuid2 *kvm_supported_hv_cpuid(void);
struct kvm_cpuid2 *cpuid_alloc(int nent);
struct kvm_cpuid2 *cpuid_dup(const struct kvm_cpuid2 *c);
struct kvm_cpuid_entry2 *cpuid_find(struct kvm_cpuid2 *c, u32 function, u32 index);
void cpuid_remove(struct kvm_cpuid2 *c, u32 function);
void cpuid_remove_range(struct kvm_cpuid2 *c, u32 first, u32 last);
/* Appends (c is reallocated: use the return value). */
struct kvm_cpuid2 *cpuid_append(struct kvm_cpuid2 *c, const struct kvm_cpuid_entry2 *e);

/* VM lifecycle.  vm_create() maps GUEST_MEM_SIZE bytes and builds page
 * tables, GDT, TSS and both IDTs, and copies the guest_text blob. */
struct vm *vm_create(void);
void vm_destroy(struct vm *vm);
struct vcpu *vm_add_vcpu(struct vm *vm);
/* ioctl return value; on failure -1 with errno set. */
int vm_enable_cap(struct vm *vm, u32 cap, u64 arg0);
int vcpu_enable_cap(struct vcpu *v, u32 cap, u64 arg0);
int vcpu_set_cpuid(struct vcpu *v, struct kvm_cpuid2 *c);

/* Load segment state for a mode and privilege level (cached: only issues
 * KVM_SET_SREGS when it changes).  0 or -1 with errno. */
int vcpu_set_mode(struct vcpu *v, enum guest_mode mode, int cpl);

/* KVM_RUN with a deadline (SIGALRM, no SA_RESTART).  Returns 0 on a normal
 * exit, -1 with errno (EINTR when the deadline passed). */
int vcpu_run(struct vcpu *v, unsigned int deadline_ms);

void vcpu_get_regs(struct vcpu *v, struct kvm_regs *r);
void vcpu_set_regs(struct vcpu *v, const struct kvm_regs *r);

void *gpa_ptr(struct vm *vm, u64 gpa);

/* KVM_GET_MSRS / KVM_SET_MSRS (req) of one MSR on a system or vCPU fd: the
 * ioctl's return value (the number done: 1, or 0 when KVM refused it; -1
 * with errno); *data is the value sent and, for a get, the value read. */
int kvm_msr_ioctl(int fd, unsigned long req, u32 msr, u64 *data);

#endif
