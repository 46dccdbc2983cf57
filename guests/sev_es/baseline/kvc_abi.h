/* SPDX-License-Identifier: GPL-2.0 */
/*
 * kvmconf_vc: the ABI between the SEV-ES "baseline triggers" kernel module
 * (guests/sev_es/baseline/module/kvmconf_vc.c) and the user-space program that
 * drives it. Plain C types from <linux/types.h>: this header is included by
 * both the module and user space.
 *
 * Device: /dev/kvmconf_vc, a misc device (dynamic minor, mode 0600).
 *
 * Register order everywhere (struct kvc_step.regs, struct kvc_op_info.regs
 * bits): rax rbx rcx rdx rsi rdi rsp rbp r8 r9 r10 r11 r12 r13 r14 r15,
 * index 0..15 (KVC_REG_*).
 *
 * KVC_RUN runs steps 0..n-1 back to back on one CPU with preemption and
 * interrupts disabled, so a DR7 write followed by a DR7 read observes the
 * write. The one exception is an mwait step: interrupts are enabled around
 * that one instruction only (local_irq_enable just before, local_irq_disable
 * just after), because under QEMU TCG mwait halts the vCPU like hlt and only
 * an interrupt (the timer tick) wakes it.
 *
 * Besides the steps, a run executes only these (all on the same CPU, with
 * interrupts off), which a caller counting #VC exits must account for:
 *   - before step 0: if any step is dr7_write, one DR7 read (get_debugreg);
 *     for every wrmsr step, in step order, one rdmsrl_safe of the MSR in that
 *     step's ecx (the value to restore);
 *   - after the last step: for every wrmsr step that did not fault and whose
 *     MSR read succeeded, in reverse step order, one wrmsrl_safe restoring the
 *     value read before; then, if any dr7_write step did not fault, one DR7
 *     write (set_debugreg) restoring the value read before.
 * No other state is saved or restored: DR0-3, port devices, the monitor line
 * etc. are the caller's business, as is choosing MSRs and ports that are safe
 * to touch.
 */
#ifndef KVC_ABI_H
#define KVC_ABI_H

#include <linux/types.h>
#include <linux/ioctl.h>

#define KVC_DEVICE "/dev/kvmconf_vc"

/* Register indexes of struct kvc_step.regs and bits of struct kvc_op_info.regs. */
enum {
	KVC_REG_RAX = 0, KVC_REG_RBX = 1, KVC_REG_RCX = 2, KVC_REG_RDX = 3,
	KVC_REG_RSI = 4, KVC_REG_RDI = 5, KVC_REG_RSP = 6, KVC_REG_RBP = 7,
	KVC_REG_R8 = 8, KVC_REG_R9 = 9, KVC_REG_R10 = 10, KVC_REG_R11 = 11,
	KVC_REG_R12 = 12, KVC_REG_R13 = 13, KVC_REG_R14 = 14, KVC_REG_R15 = 15,
	KVC_NREGS = 16,
};

/*
 * The catalogue, in op-number order (struct kvc_step.op). Each op is exactly
 * one instruction executed at CPL0; bytes and the registers it loads/stores
 * (bitmask of KVC_REG_*) in brackets. KVC_OPS returns the same data from the
 * running module.
 *
 *  rdmsr       0f 32     [rax rcx rdx]
 *  wrmsr       0f 30     [rax rcx rdx]
 *  wbinvd      0f 09     []
 *  dr7_write   0f 23 f8  [rax]      mov %rax,%dr7
 *  dr7_read    0f 21 f8  [rax]      mov %dr7,%rax
 *  vmmcall     0f 01 d9  [rax rbx rcx rdx rsi]
 *  rdpmc       0f 33     [rax rcx rdx]
 *  monitor     0f 01 c8  [rax rcx rdx]  rax is the address; when the caller
 *                        gives 0 the module uses a static 64-byte aligned
 *                        variable of its own, and rax comes back 0 (the
 *                        module's address is not returned)
 *  mwait       0f 01 c9  [rax rcx]  run with interrupts enabled (see above)
 *  cpuid       0f a2     [rax rbx rcx rdx]
 *  rdtsc       0f 31     [rax rdx]
 *  rdtscp      0f 01 f9  [rax rcx rdx]
 *  in_al_imm   e4 e0     [rax]      in $0xe0,%al
 *  in_ax_imm   66 e5 e0  [rax]
 *  in_eax_imm  e5 e0     [rax]
 *  out_al_imm  e6 e0     [rax]      out %al,$0xe0
 *  out_ax_imm  66 e7 e0  [rax]
 *  out_eax_imm e7 e0     [rax]
 *  in_al_dx    ec        [rax rdx]  in (%dx),%al
 *  in_ax_dx    66 ed     [rax rdx]
 *  in_eax_dx   ed        [rax rdx]
 *  out_al_dx   ee        [rax rdx]  out %al,(%dx)
 *  out_ax_dx   66 ef     [rax rdx]
 *  out_eax_dx  ef        [rax rdx]
 *  mmio_load8   8a 06       [rax rsi]  mov (%rsi),%al
 *  mmio_load16  66 8b 06    [rax rsi]
 *  mmio_load32  8b 06       [rax rsi]
 *  mmio_load64  48 8b 06    [rax rsi]
 *  mmio_load_ah 8a 26       [rax rsi]  mov (%rsi),%ah
 *  mmio_store8  88 06       [rax rsi]  mov %al,(%rsi)
 *  mmio_store16 66 89 06    [rax rsi]
 *  mmio_store32 89 06       [rax rsi]
 *  mmio_store64 48 89 06    [rax rsi]
 *  mmio_movzx8  0f b6 06    [rax rsi]  movzx (%rsi),%eax
 *  mmio_movzx16 0f b7 06    [rax rsi]
 *  mmio_movsx8  48 0f be 06 [rax rsi]  movsx (%rsi),%rax
 *  mmio_movsx16 0f bf 06    [rax rsi]  movsx (%rsi),%eax
 *
 * The mmio_* ops access QEMU pc-testdev's iomem (0xff000000, 64 KiB), which the
 * module ioremaps at load: rsi must lie in [KVC_IOMEM's address, + 0x10000 - 8],
 * else KVC_RUN fails with EINVAL and runs nothing.
 *
 * Port 0xe0 is QEMU's pc-testdev loopback register (ports 0xe0-0xe3); the dx
 * forms take any port the caller gives.
 */
enum {
	KVC_OP_RDMSR = 0,
	KVC_OP_WRMSR,
	KVC_OP_WBINVD,
	KVC_OP_DR7_WRITE,
	KVC_OP_DR7_READ,
	KVC_OP_VMMCALL,
	KVC_OP_RDPMC,
	KVC_OP_MONITOR,
	KVC_OP_MWAIT,
	KVC_OP_CPUID,
	KVC_OP_RDTSC,
	KVC_OP_RDTSCP,
	KVC_OP_IN_AL_IMM,
	KVC_OP_IN_AX_IMM,
	KVC_OP_IN_EAX_IMM,
	KVC_OP_OUT_AL_IMM,
	KVC_OP_OUT_AX_IMM,
	KVC_OP_OUT_EAX_IMM,
	KVC_OP_IN_AL_DX,
	KVC_OP_IN_AX_DX,
	KVC_OP_IN_EAX_DX,
	KVC_OP_OUT_AL_DX,
	KVC_OP_OUT_AX_DX,
	KVC_OP_OUT_EAX_DX,
	KVC_OP_MMIO_LOAD8,
	KVC_OP_MMIO_LOAD16,
	KVC_OP_MMIO_LOAD32,
	KVC_OP_MMIO_LOAD64,
	KVC_OP_MMIO_LOAD_AH,
	KVC_OP_MMIO_STORE8,
	KVC_OP_MMIO_STORE16,
	KVC_OP_MMIO_STORE32,
	KVC_OP_MMIO_STORE64,
	KVC_OP_MMIO_MOVZX8,
	KVC_OP_MMIO_MOVZX16,
	KVC_OP_MMIO_MOVSX8,
	KVC_OP_MMIO_MOVSX16,
	KVC_OP_COUNT		/* 37 */
};

/*
 * One step of a run.
 * in:  op (KVC_OP_*); regs: only the registers the op uses are loaded into the
 *      CPU (rsp and rbp are never loaded); faulted, vector and rflags are
 *      ignored.
 * out: regs after the instruction; the registers the op does not use come back
 *      unchanged as given. faulted = 1 when the instruction faulted: then
 *      vector is the trap number (X86_TRAP_GP = 13, X86_TRAP_UD = 6, ...) and
 *      regs come back exactly as given; otherwise faulted = 0 and vector = 0.
 *      rflags is RFLAGS right after the instruction (after the fault's
 *      return, for a faulted step).
 */
struct kvc_step {
	__u32 op;
	__u32 faulted;
	__u64 regs[KVC_NREGS];
	__u64 vector;
	__u64 rflags;
};

#define KVC_MAX_STEPS 8

/*
 * KVC_RUN: run step[0..n-1] back to back (see the top of this file). n must be
 * 1..KVC_MAX_STEPS and every op < KVC_OP_COUNT, else the ioctl fails with
 * EINVAL and runs nothing. pad is ignored.
 */
struct kvc_run {
	__u32 n;
	__u32 pad;
	struct kvc_step step[KVC_MAX_STEPS];
};

/*
 * One catalogue entry: name (NUL-terminated), the exact instruction bytes the
 * module executes (copied at ioctl time from the module's own code between the
 * op's start and end labels; len of them are valid, the rest are 0) and the
 * bitmask (1 << KVC_REG_*) of the registers the op loads and stores.
 */
struct kvc_op_info {
	char name[16];
	__u8 bytes[15];
	__u8 len;
	__u32 regs;
};

#define KVC_MAX_OPS 40

/* KVC_OPS: count = KVC_OP_COUNT; op[i] describes op number i. */
struct kvc_ops {
	__u32 count;
	__u32 pad;
	struct kvc_op_info op[KVC_MAX_OPS];
};

#define KVC_RUN _IOWR('k', 1, struct kvc_run)
#define KVC_OPS _IOR('k', 2, struct kvc_ops)
/* KVC_IOMEM: the kernel address of the module's mapping of pc-testdev's iomem
 * (0 when the ioremap failed: then every mmio_* step is refused). */
#define KVC_IOMEM _IOR('k', 3, __u64)

#endif /* KVC_ABI_H */
