/* SPDX-License-Identifier: GPL-2.0 */
/*
 * vcsim: forced first (-include, after the kernel's kconfig.h and
 * compiler_types.h) into every translation unit compiled against the
 * kernel's headers.  It includes the headers that hold the privileged
 * primitives and then points the names the kernel's .c files use at the
 * shim: MSRs, CR2/CR3/CR4, XGETBV, SGDT, the GHCB's __pa(), user/kernel
 * memory accessors, WARN/BUG, the interrupt flag.  The kernel's own inline
 * functions built on the primitives are left alone; the ones the #VC code
 * reaches are redirected here, and the assembler macros below turn any
 * privileged instruction left in the code (e.g. the SNP-only rdmsr of
 * MSR_IA32_XSS in sev-shared.c) into ud2, and hlt (sev_es_terminate's
 * loop) into a call to the shim, which returns to the trigger loop.
 */
#ifndef VCSIM_PRE_H
#define VCSIM_PRE_H

#ifndef __ASSEMBLY__
asm(".macro vmmcall\n\tud2\n.endm\n"
    ".macro vmcall\n\tud2\n.endm\n"
    ".macro rdmsr\n\tud2\n.endm\n"
    ".macro wrmsr\n\tud2\n.endm\n"
    ".macro xgetbv\n\tud2\n.endm\n"
    ".macro wbinvd\n\tud2\n.endm\n"
    ".macro invd\n\tud2\n.endm\n"
    ".macro hlt\n\tcall vcsim_halt\n.endm\n");

#include <linux/types.h>
#include <linux/compiler.h>
#include <asm/msr.h>
#include <asm/special_insns.h>
#include <asm/fpu/xcr.h>
#include <asm/processor.h>
#include <asm/page.h>
#include <asm/desc.h>
#include <linux/uaccess.h>
#include <linux/irqflags.h>
#include <linux/bug.h>
#include <asm/sev.h>
#include <linux/init.h>
#include "vcsim_api.h"

/* Text-section annotations: every function in its own section (the build
 * uses -ffunction-sections and --gc-sections, so only what the handlers
 * reach is linked); .init.text/.noinstr.text/.head.text would keep all of
 * the kernel's boot-time functions together. */
#undef __init
#define __init __cold
#undef noinstr
#define noinstr noinline notrace
#undef __head
#define __head

/* VMGEXIT(): the shim hypervisor */
#undef VMGEXIT
#define VMGEXIT() { hv_vmgexit(); }

/* MSRs: the GHCB MSR goes to the shim hypervisor, FS/GS base to the script */
#undef native_wrmsr
#define native_wrmsr(msr, low, high) vcsim_wrmsr((msr), ((u64)(u32)(high) << 32) | (u32)(low))
#undef native_wrmsrl
#define native_wrmsrl(msr, val) vcsim_wrmsr((msr), (val))
#define __rdmsr(msr) vcsim_rdmsr(msr)
#define native_read_msr(msr) vcsim_rdmsr(msr)

/* control registers, XCR0, the GDT */
#define native_read_cr4() vcsim_cr4()
#define __read_cr4() vcsim_cr4()
#define read_cr3_pa() 0UL
#define write_cr2(x) vcsim_cr2(x)
#define native_write_cr2(x) vcsim_cr2(x)
#define xgetbv(i) vcsim_xgetbv(i)
void vcsim_store_gdt(struct desc_ptr *dtr);
#define native_store_gdt(dtr) vcsim_store_gdt(dtr)

/* __pa() of the GHCB: the fixed GHCB GPA */
#undef __pa
#define __pa(x) vcsim_pa((const void *)(x))
#undef __pa_nodebug
#define __pa_nodebug(x) vcsim_pa((const void *)(x))

/* #VC handlers run with interrupts off */
#undef irqs_disabled
#define irqs_disabled() 1

/* WARN and BUG report to the shim instead of executing ud2 */
#undef __WARN_FLAGS
#define __WARN_FLAGS(flags) vcsim_warn(__FILE__, __LINE__)
#undef BUG
#define BUG() vcsim_panic("BUG() at " __FILE__)

/* guest memory: the script's pages; an MMIO page is a nested #VC */
#undef __get_user
#define __get_user(x, ptr) ({							\
	__typeof__(*(ptr)) __vg_v;							\
	int __vg_r = vcsim_read_mem((unsigned long)(ptr), &__vg_v, sizeof(*(ptr)));	\
	(x) = __vg_v;									\
	__vg_r; })
#undef __put_user
#define __put_user(x, ptr) ({							\
	__typeof__(*(ptr)) __vp_v = (x);						\
	vcsim_write_mem((unsigned long)(ptr), &__vp_v, sizeof(*(ptr))); })
#define __copy_from_user_inatomic(to, from, n) vcsim_fetch((to), (unsigned long)(from), (n))

#endif /* __ASSEMBLY__ */
#endif
