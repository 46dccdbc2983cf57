/* SPDX-License-Identifier: GPL-2.0 */
/*
 * pmusim: forced first (-include, after the kernel's kconfig.h and
 * compiler_types.h) into every translation unit compiled against the
 * kernel's headers.  It points the host MSR accessors the KVM code uses at
 * the shim's host (kshim.c: the op-script's host_perf_caps and friends) and
 * turns privileged instructions left in the code into something a user
 * process can run:
 *   - rdmsr/wrmsr/hlt/vmcall/... become ud2 (reached only through a path the
 *     shim did not redirect: the program dies with SIGILL, a finding);
 *   - vmwrite is dropped and vmread reads 0, both reporting success (ZF=CF=0):
 *     the VMCS is not part of what pmusim simulates (e.g. vmx_set_msr's
 *     vmcs_write64(GUEST_IA32_RTIT_CTL) for pt_mode=1); other VMX instructions
 *     (vmptrld, invept, ...) become ud2.
 */
#ifndef PMUSIM_PRE_H
#define PMUSIM_PRE_H

#ifndef __ASSEMBLY__
asm(".macro vmmcall\n\tud2\n.endm\n"
    ".macro vmcall\n\tud2\n.endm\n"
    ".macro rdmsr\n\tud2\n.endm\n"
    ".macro wrmsr\n\tud2\n.endm\n"
    ".macro hlt\n\tud2\n.endm\n"
    ".macro wbinvd\n\tud2\n.endm\n"
    ".macro vmwrite a:vararg\n\ttest %rsp, %rsp\n.endm\n"
    ".macro vmread a, b\n\tmovq $0, \\b\n\ttest %rsp, %rsp\n.endm\n"
    ".macro vmptrld a:vararg\n\tud2\n.endm\n"
    ".macro vmclear a:vararg\n\tud2\n.endm\n"
    ".macro invept a:vararg\n\tud2\n.endm\n"
    ".macro invvpid a:vararg\n\tud2\n.endm\n"
    ".macro vmxon a:vararg\n\tud2\n.endm\n"
    ".macro vmxoff a:vararg\n\tud2\n.endm\n");

#include <linux/types.h>
#include <linux/compiler.h>
#include <asm/msr.h>

u64 pmusim_rdmsr(u32 msr);
void pmusim_wrmsr(u32 msr, u64 val);
u64 pmusim_read_msr_safe(u32 msr, int *err);
int pmusim_wrmsr_safe(u32 msr, u64 val);

/* host MSRs: the shim's host (after asm/msr.h, so its inline functions that
 * are not redirected here keep the instruction, i.e. ud2) */
#define native_read_msr(msr) pmusim_rdmsr(msr)
#define __rdmsr(msr) pmusim_rdmsr(msr)
#define native_read_msr_safe(msr, err) pmusim_read_msr_safe((msr), (err))
#define native_write_msr(msr, low, high) pmusim_wrmsr((msr), ((u64)(u32)(high) << 32) | (u32)(low))
#define native_write_msr_safe(msr, low, high) \
	pmusim_wrmsr_safe((msr), ((u64)(u32)(high) << 32) | (u32)(low))
#define rdmsrl_safe(msr, p) ({ int __pm_err; *(p) = pmusim_read_msr_safe((msr), &__pm_err); __pm_err; })
#define wrmsrl_safe(msr, val) pmusim_wrmsr_safe((msr), (val))

/* WARN and BUG report to the shim instead of executing ud2 (a WARN is noted on
 * stderr and the code goes on, as in the kernel; BUG ends the program) */
#include <linux/bug.h>
void pmusim_warn(const char *file, int line);
void pmusim_bug(const char *file, int line) __attribute__((noreturn));
#undef __WARN_FLAGS
#define __WARN_FLAGS(flags) pmusim_warn(__FILE__, __LINE__)
#undef BUG
#define BUG() pmusim_bug(__FILE__, __LINE__)

#endif /* __ASSEMBLY__ */
#endif
