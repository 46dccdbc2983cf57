/* SPDX-License-Identifier: GPL-2.0 */
/*
 * vcsim: the plain-C interface between the translation units compiled
 * freestanding against the kernel's headers (bridge.c with the kernel's
 * sev.c, hv.c, kshim.c, the kernel's insn.c/inat.c/insn-eval.c) and the
 * hosted main program (vcsim.c, glibc).  Only C base types here: the two
 * sides have different headers (u64 vs uint64_t).
 */
#ifndef VCSIM_API_H
#define VCSIM_API_H

#define VCSIM_GHCB_GPA     0x7ffe000UL           /* __pa() of the per-CPU GHCB */
#define VCSIM_NESTED_RIP   0xffffffff81fff000UL  /* where a nested #VC's mov lives */
#define VCSIM_MAX_BUF      2048

/* The registers of one #VC (converted to/from struct pt_regs by bridge.c). */
struct vcsim_regs {
	unsigned long ax, cx, dx, bx, sp, bp, si, di;
	unsigned long r8, r9, r10, r11, r12, r13, r14, r15;
	unsigned long ip, flags, cs, ss;
};

/* enum es_result as the kernel names it (bridge.c checks the values). */
enum vcsim_result {
	VCSIM_ES_OK, VCSIM_ES_UNSUPPORTED, VCSIM_ES_VMM_ERROR, VCSIM_ES_DECODE_FAILED,
	VCSIM_ES_EXCEPTION, VCSIM_ES_RETRY,
};

/* ---- kernel side (bridge.c): the kernel's entry points ---- */
void bridge_reset(void);                 /* fresh per-CPU runtime data (alloc_runtime_data + init_ghcb) */
int bridge_negotiate(void);              /* sev_es_negotiate_protocol(); 0 = false */
void bridge_negotiate_or_terminate(void);/* as setup_ghcb(): terminate when negotiation fails */
int bridge_handle_vc(struct vcsim_regs *r, unsigned long exit_code);  /* one #VC: the kernel's
					  * vc_raw_handle_exception(); returns its es_result */
void bridge_forwarded(void);             /* an exception entry point was called (vc_forward_exception) */
void bridge_early_cpuid(struct vcsim_regs *r, unsigned long exit_code); /* do_vc_no_ghcb() */
void bridge_terminate(unsigned int set, unsigned int reason);         /* sev_es_terminate() */
unsigned long bridge_dr7(void);
void *bridge_ghcb(void);                 /* the per-CPU GHCB page */
/* insn_decode(64-bit) + insn_decode_mmio(): ok, class (enum mmio_type), bytes, the
 * ModRM.reg offset into struct vcsim_regs (-1 none), the effective address (ea_ok) */
struct vcsim_decode { int ok, len, mmio, bytes, reg_off, ea_ok; unsigned long ea; };
void bridge_decode(const unsigned char *buf, int len, struct vcsim_regs *r, struct vcsim_decode *d);
extern const char *const bridge_mmio_names[];
extern const int bridge_mmio_count;

/* ---- hypervisor (hv.c): the model KVM ---- */
#define VCSIM_MAX_CPUID 64
#define VCSIM_MAX_PORTS 32
#define VCSIM_MAX_MSRS  64
#define VCSIM_MAX_MMIO  16
#define VCSIM_MAX_PMC   16
struct vcsim_port { unsigned int port; unsigned int len, pos; unsigned char data[65536]; };
struct vcsim_mmio { unsigned long long pa; unsigned int len; unsigned char data[4096]; };
struct vcsim_reply {             /* fault injection for one trigger's VMGEXIT replies */
	int has_info1, has_info2; unsigned long long info1, info2;
	unsigned int drop;           /* bit i: drop the valid bit of register i (VCSIM_R_*) */
	unsigned int set;            /* bit i: force register i to set_val[i] */
	unsigned long long set_val[16];
};
enum { VCSIM_R_RAX, VCSIM_R_RBX, VCSIM_R_RCX, VCSIM_R_RDX, VCSIM_R_RSI, VCSIM_R_RDI,
       VCSIM_R_RBP, VCSIM_R_RSP, VCSIM_R_R8 };  /* ... R15 = R8 + 7 */
struct vcsim_hv {
	int ncpuid; unsigned int cpuid[VCSIM_MAX_CPUID][6];
	int nports; struct vcsim_port ports[VCSIM_MAX_PORTS];
	int nmsrs; unsigned int msr_idx[VCSIM_MAX_MSRS]; unsigned long long msr_val[VCSIM_MAX_MSRS];
	int nmmio; struct vcsim_mmio mmio[VCSIM_MAX_MMIO];
	int npmc; unsigned int pmc_idx[VCSIM_MAX_PMC]; unsigned long long pmc_val[VCSIM_MAX_PMC];
	unsigned long long tsc, tsc_aux, vmmcall_rax; int has_vmmcall_rax;
	unsigned int sev_info[3];
	unsigned long long ghcb_msr;       /* the GHCB MSR as the guest sees it */
	unsigned long long vcpu[4];        /* KVM's copies of RAX RBX RCX RDX */
	unsigned long long dr7;
	struct vcsim_reply reply;          /* for the current trigger */
	int quiet;                         /* no trace events (the set-up negotiation) */
	int terminated; unsigned long long term_val;
	unsigned long long fs_base, gs_base;  /* what rdmsr of the FS/GS base MSRs gives */
	int has_resp; unsigned int resp_code; /* forced GHCBInfo of MSR-protocol replies */
};
extern struct vcsim_hv vcsim_hv;
void hv_vmgexit(void);                   /* VMGEXIT() */

/* ---- hosted side (vcsim.c) ---- */
void vcsim_trace_msr(unsigned long long value);
struct vcsim_exit_rec {
	unsigned long long exit, info1, info2, scratch, valid[2], regs[16], cpl, xcr0;
	int has_scratch, has_cpl, has_xcr0; unsigned int reg_valid;  /* bit i: regs[i] (VCSIM_R_*) */
	unsigned int usage, version, buf_len; const unsigned char *buf;
};
void vcsim_trace_vmgexit(const struct vcsim_exit_rec *e);
int vcsim_read_mem(unsigned long va, void *dst, unsigned long n);        /* 0 or -14 */
int vcsim_write_mem(unsigned long va, const void *src, unsigned long n);
unsigned long vcsim_fetch(void *dst, unsigned long va, unsigned long n); /* bytes not copied */
int vcsim_translate(unsigned long va, unsigned long long *pa);           /* 1 = mapped */
unsigned long vcsim_pa(const void *p);
unsigned long vcsim_cr4(void);
unsigned long long vcsim_xgetbv(unsigned int idx);
unsigned long long vcsim_rdmsr(unsigned int msr);      /* FS/GS base and the GHCB MSR */
void vcsim_wrmsr(unsigned int msr, unsigned long long v);
void vcsim_exception(int vector, unsigned long error_code);
void vcsim_cr2(unsigned long cr2);
void vcsim_signal(int sig, int code);
void vcsim_halt(void) __attribute__((noreturn));       /* hlt: back to the trigger loop */
void vcsim_panic(const char *msg) __attribute__((noreturn));
void vcsim_vlog(const char *fmt, __builtin_va_list ap);
void vcsim_warn(const char *file, int line);
void *vcsim_alloc(unsigned long size, unsigned long align);
int vcsim_user_ioperm(unsigned long *first, unsigned long *count);  /* the task has an I/O bitmap
                                         * permitting [first, first + count) */
int vcsim_guest_on_kvm(void);            /* x86_platform.hyper = x86_hyper_kvm.runtime */

#endif
