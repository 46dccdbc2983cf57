// SPDX-License-Identifier: GPL-2.0
/*
 * kvmconf_vc: execute a fixed catalogue of CPL0 trigger instructions (the
 * SEV-ES "baseline triggers": each one is intercepted under SEV-ES and raises
 * #VC in the guest kernel) with register inputs from user space, catching
 * faults, and return the registers after. The ABI is kvc_abi.h.
 *
 * Each op is one noinline, noclone function holding one inline asm block:
 *
 *   kvc_<op>_start: <the instruction>
 *   kvc_<op>_end:   jmp 1f
 *   2:              mov %rax, vec ; movl $1, flt     (fault path)
 *   1:              pushfq ; popq rflags
 *   __ex_table:     (kvc_<op>_start, 2b, EX_TYPE_FAULT)
 *
 * EX_TYPE_FAULT (arch/x86/mm/extable.c ex_handler_fault) sets regs->ax to the
 * trap number and resumes at the entry's fixup address. Resuming at the end
 * label itself would make a fault indistinguishable from an instruction that
 * left the trap number in rax, so the fixup address is label 2, right after
 * the end label and the jmp that skips it: it copies rax (the trap number)
 * into a separate output and sets a fault flag. The bytes between the start
 * and end labels are exactly the instruction; KVC_OPS copies them from there.
 * Every register the instruction reads or writes is an explicit "+a" "+b"
 * "+c" "+d" "+S" operand; wbinvd, which has none, clobbers rax (the fault
 * path writes it).
 */
#include <linux/compiler.h>
#include <linux/fs.h>
#include <linux/io.h>
#include <linux/irqflags.h>
#include <linux/miscdevice.h>
#include <linux/module.h>
#include <linux/preempt.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <linux/uaccess.h>
#include <asm/asm.h>
#include <asm/debugreg.h>
#include <asm/extable_fixup_types.h>
#include <asm/msr.h>

#include "kvc_abi.h"

#define KVC_R(x) (1u << KVC_REG_##x)

/* The monitor line used when a monitor step gives rax = 0. */
static u8 kvc_monitor_line[64] __aligned(64);

/* QEMU pc-testdev's iomem (hw/misc/pc-testdev.c: 64 KiB at 0xff000000), for the mmio_* ops. */
#define KVC_IOMEM_PA	0xff000000UL
#define KVC_IOMEM_LEN	0x10000UL
static void __iomem *kvc_iomem;

static bool kvc_is_mmio(u32 op)
{
	return op >= KVC_OP_MMIO_LOAD8 && op < KVC_OP_COUNT;
}

struct kvc_ctx {
	u64 rax, rbx, rcx, rdx, rsi;
	u64 vec;
	u64 rflags;
	u32 faulted;
};

#define KVC_CLOB_none
#define KVC_CLOB_rax , "rax"

#define KVC_FN(name, insn, clob, ...)					\
static noinline __attribute__((__noclone__)) void kvc_fn_##name(struct kvc_ctx *x) \
{									\
	u64 rax = x->rax, rbx = x->rbx, rcx = x->rcx, rdx = x->rdx, rsi = x->rsi; \
	u64 vec = 0, fl;						\
	u32 flt = 0;							\
									\
	asm volatile("kvc_" #name "_start:\n\t"				\
		     insn "\n"						\
		     "kvc_" #name "_end:\n\t"				\
		     "jmp 1f\n"						\
		     "2:\n\t"						\
		     "mov %%rax, %[vec]\n\t"				\
		     "movl $1, %k[flt]\n"				\
		     "1:\n\t"						\
		     "pushfq\n\t"					\
		     "popq %[fl]\n"					\
		     _ASM_EXTABLE_TYPE(kvc_##name##_start, 2b, EX_TYPE_FAULT) \
		     : [vec] "+r" (vec), [flt] "+r" (flt), [fl] "=&r" (fl) \
		       , ##__VA_ARGS__					\
		     : : "memory", "cc" KVC_CLOB_##clob);		\
	(void)rax; (void)rbx; (void)rcx; (void)rdx; (void)rsi;		\
	x->rax = rax; x->rbx = rbx; x->rcx = rcx; x->rdx = rdx; x->rsi = rsi; \
	x->vec = vec; x->faulted = flt; x->rflags = fl;			\
}									\
extern const u8 kvc_##name##_start[], kvc_##name##_end[];

/*
 * The catalogue: KVC_OP(op number, name, instruction, registers, extra clobber
 * (none, or rax for wbinvd, whose fault path writes rax), operands...).
 * The registers mask and the operand constraints name the same registers
 * (tests/test_sev_es_module.py checks both against harness OPS).
 */
#define KVC_OP_TABLE(KVC_OP)							\
	KVC_OP(RDMSR,       rdmsr,       "rdmsr",             KVC_R(RAX) | KVC_R(RCX) | KVC_R(RDX), none, "+a" (rax), "+c" (rcx), "+d" (rdx)) \
	KVC_OP(WRMSR,       wrmsr,       "wrmsr",             KVC_R(RAX) | KVC_R(RCX) | KVC_R(RDX), none, "+a" (rax), "+c" (rcx), "+d" (rdx)) \
	KVC_OP(WBINVD,      wbinvd,      "wbinvd",            0, rax) \
	KVC_OP(DR7_WRITE,   dr7_write,   "mov %%rax, %%dr7",  KVC_R(RAX), none, "+a" (rax)) \
	KVC_OP(DR7_READ,    dr7_read,    "mov %%dr7, %%rax",  KVC_R(RAX), none, "+a" (rax)) \
	KVC_OP(VMMCALL,     vmmcall,     "vmmcall",           KVC_R(RAX) | KVC_R(RBX) | KVC_R(RCX) | KVC_R(RDX) | KVC_R(RSI), none, "+a" (rax), "+b" (rbx), "+c" (rcx), "+d" (rdx), "+S" (rsi)) \
	KVC_OP(RDPMC,       rdpmc,       "rdpmc",             KVC_R(RAX) | KVC_R(RCX) | KVC_R(RDX), none, "+a" (rax), "+c" (rcx), "+d" (rdx)) \
	KVC_OP(MONITOR,     monitor,     "monitor",           KVC_R(RAX) | KVC_R(RCX) | KVC_R(RDX), none, "+a" (rax), "+c" (rcx), "+d" (rdx)) \
	KVC_OP(MWAIT,       mwait,       "mwait",             KVC_R(RAX) | KVC_R(RCX), none, "+a" (rax), "+c" (rcx)) \
	KVC_OP(CPUID,       cpuid,       "cpuid",             KVC_R(RAX) | KVC_R(RBX) | KVC_R(RCX) | KVC_R(RDX), none, "+a" (rax), "+b" (rbx), "+c" (rcx), "+d" (rdx)) \
	KVC_OP(RDTSC,       rdtsc,       "rdtsc",             KVC_R(RAX) | KVC_R(RDX), none, "+a" (rax), "+d" (rdx)) \
	KVC_OP(RDTSCP,      rdtscp,      "rdtscp",            KVC_R(RAX) | KVC_R(RCX) | KVC_R(RDX), none, "+a" (rax), "+c" (rcx), "+d" (rdx)) \
	KVC_OP(IN_AL_IMM,   in_al_imm,   "inb $0xe0, %%al",   KVC_R(RAX), none, "+a" (rax)) \
	KVC_OP(IN_AX_IMM,   in_ax_imm,   "inw $0xe0, %%ax",   KVC_R(RAX), none, "+a" (rax)) \
	KVC_OP(IN_EAX_IMM,  in_eax_imm,  "inl $0xe0, %%eax",  KVC_R(RAX), none, "+a" (rax)) \
	KVC_OP(OUT_AL_IMM,  out_al_imm,  "outb %%al, $0xe0",  KVC_R(RAX), none, "+a" (rax)) \
	KVC_OP(OUT_AX_IMM,  out_ax_imm,  "outw %%ax, $0xe0",  KVC_R(RAX), none, "+a" (rax)) \
	KVC_OP(OUT_EAX_IMM, out_eax_imm, "outl %%eax, $0xe0", KVC_R(RAX), none, "+a" (rax)) \
	KVC_OP(IN_AL_DX,    in_al_dx,    "inb %%dx, %%al",    KVC_R(RAX) | KVC_R(RDX), none, "+a" (rax), "+d" (rdx)) \
	KVC_OP(IN_AX_DX,    in_ax_dx,    "inw %%dx, %%ax",    KVC_R(RAX) | KVC_R(RDX), none, "+a" (rax), "+d" (rdx)) \
	KVC_OP(IN_EAX_DX,   in_eax_dx,   "inl %%dx, %%eax",   KVC_R(RAX) | KVC_R(RDX), none, "+a" (rax), "+d" (rdx)) \
	KVC_OP(OUT_AL_DX,   out_al_dx,   "outb %%al, %%dx",   KVC_R(RAX) | KVC_R(RDX), none, "+a" (rax), "+d" (rdx)) \
	KVC_OP(OUT_AX_DX,   out_ax_dx,   "outw %%ax, %%dx",   KVC_R(RAX) | KVC_R(RDX), none, "+a" (rax), "+d" (rdx)) \
	KVC_OP(OUT_EAX_DX,  out_eax_dx,  "outl %%eax, %%dx",  KVC_R(RAX) | KVC_R(RDX), none, "+a" (rax), "+d" (rdx)) \
	KVC_OP(MMIO_LOAD8,   mmio_load8,   "movb (%%rsi), %%al", KVC_R(RAX) | KVC_R(RSI), none, "+a" (rax), "+S" (rsi)) \
	KVC_OP(MMIO_LOAD16,  mmio_load16,  "movw (%%rsi), %%ax", KVC_R(RAX) | KVC_R(RSI), none, "+a" (rax), "+S" (rsi)) \
	KVC_OP(MMIO_LOAD32,  mmio_load32,  "movl (%%rsi), %%eax", KVC_R(RAX) | KVC_R(RSI), none, "+a" (rax), "+S" (rsi)) \
	KVC_OP(MMIO_LOAD64,  mmio_load64,  "movq (%%rsi), %%rax", KVC_R(RAX) | KVC_R(RSI), none, "+a" (rax), "+S" (rsi)) \
	KVC_OP(MMIO_LOAD_AH, mmio_load_ah, "movb (%%rsi), %%ah", KVC_R(RAX) | KVC_R(RSI), none, "+a" (rax), "+S" (rsi)) \
	KVC_OP(MMIO_STORE8,  mmio_store8,  "movb %%al, (%%rsi)", KVC_R(RAX) | KVC_R(RSI), none, "+a" (rax), "+S" (rsi)) \
	KVC_OP(MMIO_STORE16, mmio_store16, "movw %%ax, (%%rsi)", KVC_R(RAX) | KVC_R(RSI), none, "+a" (rax), "+S" (rsi)) \
	KVC_OP(MMIO_STORE32, mmio_store32, "movl %%eax, (%%rsi)", KVC_R(RAX) | KVC_R(RSI), none, "+a" (rax), "+S" (rsi)) \
	KVC_OP(MMIO_STORE64, mmio_store64, "movq %%rax, (%%rsi)", KVC_R(RAX) | KVC_R(RSI), none, "+a" (rax), "+S" (rsi)) \
	KVC_OP(MMIO_MOVZX8,  mmio_movzx8,  "movzbl (%%rsi), %%eax", KVC_R(RAX) | KVC_R(RSI), none, "+a" (rax), "+S" (rsi)) \
	KVC_OP(MMIO_MOVZX16, mmio_movzx16, "movzwl (%%rsi), %%eax", KVC_R(RAX) | KVC_R(RSI), none, "+a" (rax), "+S" (rsi)) \
	KVC_OP(MMIO_MOVSX8,  mmio_movsx8,  "movsbq (%%rsi), %%rax", KVC_R(RAX) | KVC_R(RSI), none, "+a" (rax), "+S" (rsi)) \
	KVC_OP(MMIO_MOVSX16, mmio_movsx16, "movswl (%%rsi), %%eax", KVC_R(RAX) | KVC_R(RSI), none, "+a" (rax), "+S" (rsi))

#define KVC_DEFINE(num, name, insn, regs, clob, ...) KVC_FN(name, insn, clob, ##__VA_ARGS__)
KVC_OP_TABLE(KVC_DEFINE)

struct kvc_op_def {
	const char *name;
	const u8 *start, *end;
	u32 regs;
	void (*fn)(struct kvc_ctx *x);
};

#define KVC_ENTRY(num, name, insn, regs_, clob, ...)			\
	[KVC_OP_##num] = { #name, kvc_##name##_start, kvc_##name##_end, regs_, kvc_fn_##name },
static const struct kvc_op_def kvc_ops[KVC_OP_COUNT] = {
	KVC_OP_TABLE(KVC_ENTRY)
};

static void kvc_exec(struct kvc_step *s)
{
	const struct kvc_op_def *def = &kvc_ops[s->op];
	struct kvc_ctx x = {
		.rax = s->regs[KVC_REG_RAX], .rbx = s->regs[KVC_REG_RBX],
		.rcx = s->regs[KVC_REG_RCX], .rdx = s->regs[KVC_REG_RDX],
		.rsi = s->regs[KVC_REG_RSI],
	};
	bool own_line = s->op == KVC_OP_MONITOR && x.rax == 0;

	if (own_line)
		x.rax = (u64)(unsigned long)kvc_monitor_line;
	/* Direct calls (no indirect branch between the steps of a run). */
	switch (s->op) {
#define KVC_CALL(num, name, ...) case KVC_OP_##num: kvc_fn_##name(&x); break;
	KVC_OP_TABLE(KVC_CALL)
#undef KVC_CALL
	}
	if (own_line)
		x.rax = 0;

	s->faulted = x.faulted;
	s->vector = x.faulted ? x.vec : 0;
	s->rflags = x.rflags;
	if (x.faulted)
		return;		/* regs stay as given */
	if (def->regs & KVC_R(RAX))
		s->regs[KVC_REG_RAX] = x.rax;
	if (def->regs & KVC_R(RBX))
		s->regs[KVC_REG_RBX] = x.rbx;
	if (def->regs & KVC_R(RCX))
		s->regs[KVC_REG_RCX] = x.rcx;
	if (def->regs & KVC_R(RDX))
		s->regs[KVC_REG_RDX] = x.rdx;
	if (def->regs & KVC_R(RSI))
		s->regs[KVC_REG_RSI] = x.rsi;
}

struct kvc_msr_save {
	u32 msr;
	bool valid;
	u64 value;
};

static long kvc_run(struct kvc_run __user *arg)
{
	struct kvc_msr_save saved[KVC_MAX_STEPS] = {};
	struct kvc_run *run;
	unsigned long dr7 = 0;
	bool has_dr7_write = false, dr7_written = false;
	long ret = 0;
	u32 i;

	run = kmalloc(sizeof(*run), GFP_KERNEL);
	if (!run)
		return -ENOMEM;
	if (copy_from_user(run, arg, sizeof(*run))) {
		ret = -EFAULT;
		goto out;
	}
	if (run->n < 1 || run->n > KVC_MAX_STEPS) {
		ret = -EINVAL;
		goto out;
	}
	for (i = 0; i < run->n; i++) {
		if (run->step[i].op >= KVC_OP_COUNT) {
			ret = -EINVAL;
			goto out;
		}
		if (run->step[i].op == KVC_OP_DR7_WRITE)
			has_dr7_write = true;
		/* an mmio_* address outside the mapping would be an access anywhere */
		if (kvc_is_mmio(run->step[i].op) &&
		    (!kvc_iomem || run->step[i].regs[KVC_REG_RSI] < (u64)(unsigned long)kvc_iomem ||
		     run->step[i].regs[KVC_REG_RSI] > (u64)(unsigned long)kvc_iomem + KVC_IOMEM_LEN - 8)) {
			ret = -EINVAL;
			goto out;
		}
	}

	preempt_disable();
	local_irq_disable();
	if (has_dr7_write)
		get_debugreg(dr7, 7);
	for (i = 0; i < run->n; i++) {
		if (run->step[i].op != KVC_OP_WRMSR)
			continue;
		saved[i].msr = (u32)run->step[i].regs[KVC_REG_RCX];
		saved[i].valid = !rdmsrl_safe(saved[i].msr, &saved[i].value);
	}

	for (i = 0; i < run->n; i++) {
		struct kvc_step *s = &run->step[i];

		if (s->op == KVC_OP_MWAIT) {
			local_irq_enable();
			kvc_exec(s);
			local_irq_disable();
		} else {
			kvc_exec(s);
		}
		if (s->op == KVC_OP_DR7_WRITE && !s->faulted)
			dr7_written = true;
	}

	for (i = run->n; i-- > 0;) {
		if (run->step[i].op == KVC_OP_WRMSR && !run->step[i].faulted && saved[i].valid)
			wrmsrl_safe(saved[i].msr, saved[i].value);
	}
	if (dr7_written)
		set_debugreg(dr7, 7);
	local_irq_enable();
	preempt_enable();

	if (copy_to_user(arg, run, sizeof(*run)))
		ret = -EFAULT;
out:
	kfree(run);
	return ret;
}

static long kvc_list_ops(struct kvc_ops __user *arg)
{
	struct kvc_ops *ops;
	long ret = 0;
	u32 i;

	ops = kzalloc(sizeof(*ops), GFP_KERNEL);
	if (!ops)
		return -ENOMEM;
	ops->count = KVC_OP_COUNT;
	for (i = 0; i < KVC_OP_COUNT; i++) {
		const struct kvc_op_def *def = &kvc_ops[i];
		size_t len = def->end - def->start;

		strscpy(ops->op[i].name, def->name, sizeof(ops->op[i].name));
		if (WARN_ON_ONCE(len > sizeof(ops->op[i].bytes)))
			len = sizeof(ops->op[i].bytes);
		memcpy(ops->op[i].bytes, def->start, len);
		ops->op[i].len = len;
		ops->op[i].regs = def->regs;
	}
	if (copy_to_user(arg, ops, sizeof(*ops)))
		ret = -EFAULT;
	kfree(ops);
	return ret;
}

static long kvc_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	switch (cmd) {
	case KVC_RUN:
		return kvc_run((struct kvc_run __user *)arg);
	case KVC_OPS:
		return kvc_list_ops((struct kvc_ops __user *)arg);
	case KVC_IOMEM: {
		__u64 va = (__u64)(unsigned long)kvc_iomem;

		return copy_to_user((void __user *)arg, &va, sizeof(va)) ? -EFAULT : 0;
	}
	default:
		return -ENOTTY;
	}
}

static const struct file_operations kvc_fops = {
	.owner = THIS_MODULE,
	.unlocked_ioctl = kvc_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
	.llseek = noop_llseek,
};

static struct miscdevice kvc_dev = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = "kvmconf_vc",
	.fops = &kvc_fops,
	.mode = 0600,
};

static int __init kvc_init(void)
{
	int ret;

	BUILD_BUG_ON(sizeof(struct kvc_step) != 152);
	BUILD_BUG_ON(sizeof(struct kvc_run) != 1224);
	BUILD_BUG_ON(sizeof(struct kvc_op_info) != 36);
	BUILD_BUG_ON(sizeof(struct kvc_ops) != 1448);
	BUILD_BUG_ON(KVC_OP_COUNT > KVC_MAX_OPS);
	kvc_iomem = ioremap(KVC_IOMEM_PA, KVC_IOMEM_LEN);   /* NULL: mmio_* steps refused */
	ret = misc_register(&kvc_dev);
	if (ret && kvc_iomem)
		iounmap(kvc_iomem);
	return ret;
}

static void __exit kvc_exit(void)
{
	misc_deregister(&kvc_dev);
	if (kvc_iomem)
		iounmap(kvc_iomem);
}

module_init(kvc_init);
module_exit(kvc_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("kvmconf: CPL0 SEV-ES baseline trigger instructions, driven from user space");
