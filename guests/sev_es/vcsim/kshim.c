// SPDX-License-Identifier: GPL-2.0
/*
 * vcsim kernel-side shim: definitions of the kernel symbols the #VC code
 * reaches, compiled against the kernel's headers.  Each one hands over to
 * the hosted side (vcsim.c) through vcsim_api.h.
 */
#include <linux/kernel.h>
#include <linux/sched.h>
#include <linux/sched/signal.h>
#include <linux/memblock.h>
#include <linux/ratelimit.h>
#include <linux/mutex.h>
#include <linux/mm.h>
#include <asm/traps.h>
#include <asm/desc.h>
#include <asm/io_bitmap.h>
#include <asm/x86_init.h>
#include <asm/set_memory.h>
#include <asm/vsyscall.h>

/* page-table globals of a 4-level x86-64 kernel without encryption mask */
phys_addr_t physical_mask = (1ULL << __PHYSICAL_MASK_SHIFT) - 1;
u64 sme_me_mask;
u64 sev_status;
unsigned long page_offset_base = __PAGE_OFFSET_BASE_L4;
unsigned long vmemmap_base = __VMEMMAP_BASE_L4;
unsigned long phys_base;
struct x86_platform_ops x86_platform;

/* current: one task whose I/O bitmap vcsim decides */
static struct task_struct vcsim_task;
/* ksys_ioperm(first, count, 1)'s bitmap: all ones, then the range cleared.
 * `beyond` follows bitmap[] directly: vc_ioio_check() tests bits up to
 * port + size - 1, past bit 65535 for an access crossing port 0xffff, which
 * in the kernel reads memory after the kmalloc'ed struct io_bitmap; here
 * that word is all ones (denied), as the CPU's TSS bitmap ends in 0xff. */
static struct {
	struct io_bitmap iobm;
	unsigned long beyond;
} vcsim_io;
DEFINE_PER_CPU(struct task_struct *, current_task) = &vcsim_task;

/* kvm.c's x86_hyper_kvm.runtime (cut out of the tree's kvm.c by the builder) */
extern const struct x86_hyper_runtime vcsim_kvm_runtime;

void kshim_reset(void)
{
	static const struct x86_hyper_runtime none;

	unsigned long first, count, i;

	static_assert(offsetof(typeof(vcsim_io), beyond) ==
		      offsetof(struct io_bitmap, bitmap) + sizeof(vcsim_io.iobm.bitmap));
	vcsim_task.thread.io_bitmap = NULL;
	if (vcsim_user_ioperm(&first, &count)) {
		memset(vcsim_io.iobm.bitmap, 0xff, sizeof(vcsim_io.iobm.bitmap));
		for (i = first; i < first + count && i < IO_BITMAP_BITS; i++)
			__clear_bit(i, vcsim_io.iobm.bitmap);
		vcsim_io.beyond = ~0UL;
		vcsim_task.thread.io_bitmap = &vcsim_io.iobm;
	}
	/* init_hypervisor_platform(): the detected hypervisor's runtime hooks */
	x86_platform.hyper = vcsim_guest_on_kvm() ? vcsim_kvm_runtime : none;
}

/* a GDT as cpu/common.c sets it up: kernel CS/DS, user CS32/DS/CS64 */
static struct desc_struct vcsim_gdt[16] = {
	[GDT_ENTRY_KERNEL_CS] = GDT_ENTRY_INIT(0xa09b, 0, 0xfffff),
	[GDT_ENTRY_KERNEL_DS] = GDT_ENTRY_INIT(0xc093, 0, 0xfffff),
	[GDT_ENTRY_DEFAULT_USER32_CS] = GDT_ENTRY_INIT(0xc0fb, 0, 0xfffff),
	[GDT_ENTRY_DEFAULT_USER_DS] = GDT_ENTRY_INIT(0xc0f3, 0, 0xfffff),
	[GDT_ENTRY_DEFAULT_USER_CS] = GDT_ENTRY_INIT(0xa0fb, 0, 0xfffff),
};

void vcsim_store_gdt(struct desc_ptr *dtr)
{
	dtr->address = (unsigned long)vcsim_gdt;
	dtr->size = sizeof(vcsim_gdt) - 1;
}

/* the exception the #VC handler forwards (vc_forward_exception) */
void exc_general_protection(struct pt_regs *regs, unsigned long error_code)
{
	vcsim_exception(X86_TRAP_GP, error_code);
}

void exc_invalid_op(struct pt_regs *regs)
{
	vcsim_exception(X86_TRAP_UD, 0);
}

void exc_page_fault(struct pt_regs *regs, unsigned long error_code)
{
	vcsim_exception(X86_TRAP_PF, error_code);
}

void exc_alignment_check(struct pt_regs *regs, unsigned long error_code)
{
	vcsim_exception(X86_TRAP_AC, error_code);
}

void exc_debug(struct pt_regs *regs)
{
	vcsim_exception(X86_TRAP_DB, 0);
}

void noist_exc_debug(struct pt_regs *regs)
{
	vcsim_exception(X86_TRAP_DB, 0);
}

int force_sig_fault(int sig, int code, void __user *addr)
{
	vcsim_signal(sig, code);
	return 0;
}

/* arch/x86/mm/fault.c */
bool fault_in_kernel_space(unsigned long address)
{
	if (IS_ENABLED(CONFIG_X86_64) && is_vsyscall_vaddr(address))
		return false;

	return address >= TASK_SIZE_MAX;
}

/* the page walk: the script's pages, 4K mappings, no C-bit */
pte_t *lookup_address_in_pgd(pgd_t *pgd, unsigned long address, unsigned int *level)
{
	static pte_t pte;
	unsigned long long pa;

	*level = PG_LEVEL_4K;
	if (!vcsim_translate(address, &pa))
		return NULL;
	pte = __pte((pa & PAGE_MASK) | _PAGE_PRESENT | _PAGE_RW | _PAGE_NX);
	return &pte;
}

long copy_from_kernel_nofault(void *dst, const void *src, size_t size)
{
	return vcsim_fetch(dst, (unsigned long)src, size) ? -EFAULT : 0;
}

void *memblock_alloc_try_nid(phys_addr_t size, phys_addr_t align, phys_addr_t min_addr,
			     phys_addr_t max_addr, int nid)
{
	return vcsim_alloc(size, align);
}

int early_set_memory_decrypted(unsigned long vaddr, unsigned long size)
{
	return 0;
}

void mutex_lock(struct mutex *lock) { }
void mutex_unlock(struct mutex *lock) { }

void show_regs(struct pt_regs *regs) { }

int ___ratelimit(struct ratelimit_state *rs, const char *func)
{
	return 1;
}

void bridge_printk(const char *fmt);

static void vlog(const char *fmt, va_list ap)
{
	bridge_printk(fmt);
	if (fmt[0] == KERN_SOH_ASCII && fmt[1])
		fmt += 2;
	vcsim_vlog(fmt, ap);
}

asmlinkage __visible int _printk(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog(fmt, ap);
	va_end(ap);
	return 0;
}

void __warn_printk(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog(fmt, ap);
	va_end(ap);
}

void panic(const char *fmt, ...)
{
	vcsim_panic(fmt);
}

/* static_cpu_has()'s out-of-line test (.altinstr_aux) reads it: no features */
struct cpuinfo_x86 boot_cpu_data;
