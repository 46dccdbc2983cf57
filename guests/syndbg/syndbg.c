// SPDX-License-Identifier: GPL-2.0
/*
 * syndbg payload: runs op-scripts against KVM's Hyper-V synthetic debugger
 * (MSRs 0x400000F1-F5/FF, hypercalls 0x69-0x6b) and prints what it observed
 * as JSON lines, one event per action.  The reference model in
 * harness/reference/syndbg.py predicts the same events.
 *
 * Input (stdin), one script after another, line format encoded by
 * harness/payloads/syndbg.py:
 *
 *   script <index>
 *   vm vcpus=N mode=64|32 quirk_fix=0|1 user_msr=0|1
 *   cpuid <vcpu> hv=0|1 sd=0|1|2|3 dm=0|1 dbg=0|1 hc=0|1 xmm=0|1 [sd_eax=N]
 *         [time_ref=0] [reset=0] [ref_tsc=0] [reenlight=0] [crash=0] [post_msg=0]
 *         [tlb_flush=0]
 *         (sd: 0x40000082 absent, EAX=0, EAX=2, EAX=sd_eax; the bracketed keys
 *         clear one more CPUID bit each, see build_cpuid())
 *   enforce <vcpu>
 *   op <name> key=value ...
 *   end
 *
 * Guest ops (rdmsr, wrmsr, hcall, nop) run in the script's mode unless
 * cpu_mode=1 (real mode) or cpu_mode=2 (compatibility mode: EFER.LMA with a
 * 32-bit code segment) says otherwise; wrmsr's status=N and exit_msr=N are
 * what the VMM writes into run->hyperv.u.syndbg before re-entry.
 *
 * Output: the events of each script, then {"script":N,"op":"done"}, printed
 * and flushed when its "end" line is read (the next script may not exist yet).
 * A read of HV_X64_MSR_TIME_REF_COUNT (a clock) prints value 1 when it is a
 * plausible count of 100 ns units since the VM was created (0 < v < 2^40),
 * else the raw value.  An hcall prints the registers it must preserve.
 *
 * Usage: syndbg            run the scripts on stdin
 *        syndbg --probe    print the environment (vendor, capabilities)
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "json.h"
#include "kvmlib.h"
#include "lines.h"

#define HV_CPUID_INTERFACE          0x40000001
#define HV_CPUID_FEATURES           0x40000003
#define HV_CPUID_ENLIGHTMENT_INFO   0x40000004
#define HV_CPUID_SYNDBG_PLATFORM    0x40000082
#define HV_SIGNATURE_HV1            0x31237648   /* "Hv#1" */
#define HV_MSR_TIME_REF_COUNT       0x40000020

#define CAP_HYPERV_ENFORCE_CPUID    199
#define CAP_DISABLE_QUIRKS2         213
#define CAP_X86_USER_SPACE_MSR      188
#define QUIRK_FIX_HYPERCALL_INSN    (1 << 5)

#define MAX_OPS     64
#define RUN_DEADLINE_MS 5000
#define MAX_EXITS_PER_ACTION 8

extern const u8 g64_rdmsr[], g64_wrmsr[], g64_nop[];
extern const u8 g32_rdmsr[], g32_wrmsr[], g32_nop[];
extern const u8 syndbg_vmcall_64[], syndbg_vmmcall_64[];
extern const u8 syndbg_vmcall_32[], syndbg_vmmcall_32[];
extern const u8 g16_vectors[], g16_ivt[];

/* Guest ops' cpu_mode values (0: the script's mode). */
#define CPU_MODE_REAL   1
#define CPU_MODE_COMPAT 2
/* Real mode: CS covers guest_text, SS the kernel stack. */
#define REAL_CS_BASE    GPA_CODE
#define REAL_SS_BASE    0x40000ULL
#define G16_STUB_SIZE   16

/* Values an hcall loads into the registers that carry no hypercall input and
 * that the hypercall must preserve (harness/reference/syndbg.py: SENTINELS). */
#define SENT_RBX 0xb0b1b2b3b4b5b6b7ULL
#define SENT_RSI 0x5050515152525353ULL
#define SENT_RDI 0xd0d1d2d3d4d5d6d7ULL
#define SENT_R8  0x0808080808080808ULL
#define SENT_R9  0x0909090909090909ULL
#define SENT_R10 0x1010101010101010ULL
#define SENT_R11 0x1111111111111111ULL
#define SENT_R12 0x1212121212121212ULL
#define SENT_R13 0x1313131313131313ULL
#define SENT_R14 0x1414141414141414ULL

struct cpuid_cfg {
	int hv, sd, dm, dbg, hc, xmm;
	u32 sd_eax;
	int time_ref, reset, ref_tsc, reenlight, crash, post_msg, tlb_flush;
};

#define CPUID_CFG_DEFAULT ((struct cpuid_cfg){ .hv = 1, .sd = 2, .dm = 1, .dbg = 1, .hc = 1, \
	.xmm = 1, .time_ref = 1, .reset = 1, .ref_tsc = 1, .reenlight = 1, .crash = 1,     \
	.post_msg = 1, .tlb_flush = 1 })

/* The CPUID keys of a "cpuid" line or a set_cpuid op; absent keys keep the default. */
static struct cpuid_cfg cpuid_cfg_from(const struct kv *kv)
{
	struct cpuid_cfg d = CPUID_CFG_DEFAULT;

	return (struct cpuid_cfg){
		.hv = (int)kv_get(kv, "hv", d.hv), .sd = (int)kv_get(kv, "sd", d.sd),
		.dm = (int)kv_get(kv, "dm", d.dm), .dbg = (int)kv_get(kv, "dbg", d.dbg),
		.hc = (int)kv_get(kv, "hc", d.hc), .xmm = (int)kv_get(kv, "xmm", d.xmm),
		.sd_eax = (u32)kv_get(kv, "sd_eax", 0),
		.time_ref = (int)kv_get(kv, "time_ref", 1), .reset = (int)kv_get(kv, "reset", 1),
		.ref_tsc = (int)kv_get(kv, "ref_tsc", 1),
		.reenlight = (int)kv_get(kv, "reenlight", 1), .crash = (int)kv_get(kv, "crash", 1),
		.post_msg = (int)kv_get(kv, "post_msg", 1),
		.tlb_flush = (int)kv_get(kv, "tlb_flush", 1),
	};
}

static u32 bit(u32 reg, int n, int on)
{
	return on ? reg | (1u << n) : reg & ~(1u << n);
}

struct script {
	long index;
	int nr_vcpus, mode, quirk_fix, user_msr;
	struct cpuid_cfg cpuid[VM_MAX_VCPUS];
	int enforce[VM_MAX_VCPUS];
	int nops;
	struct kv ops[MAX_OPS];
};

/* ---- CPUID per configuration ---------------------------------------- */

static struct kvm_cpuid2 *build_cpuid(const struct cpuid_cfg *cfg)
{
	struct kvm_cpuid2 *base = kvm_supported_cpuid(), *hv = kvm_supported_hv_cpuid();
	struct kvm_cpuid2 *c;
	struct kvm_cpuid_entry2 *e;

	if (!base || !hv)
		return NULL;
	c = cpuid_dup(base);
	/* Drop KVM's own PV leaves; the Hyper-V ones take their place. */
	cpuid_remove_range(c, 0x40000000, 0x4fffffff);
	for (u32 i = 0; i < hv->nent; i++)
		c = cpuid_append(c, &hv->entries[i]);

	e = cpuid_find(c, HV_CPUID_INTERFACE, 0);
	if (e)
		e->eax = cfg->hv ? HV_SIGNATURE_HV1 : 0;
	e = cpuid_find(c, HV_CPUID_FEATURES, 0);
	if (e) {
		/* HV_MSR_HYPERCALL_AVAILABLE; the other bits only clear what KVM offers */
		e->eax = bit(e->eax, 5, cfg->hc);
		if (!cfg->time_ref)
			e->eax = bit(e->eax, 1, 0);     /* HV_MSR_TIME_REF_COUNT_AVAILABLE */
		if (!cfg->reset)
			e->eax = bit(e->eax, 7, 0);     /* HV_MSR_RESET_AVAILABLE */
		if (!cfg->ref_tsc)
			e->eax = bit(e->eax, 9, 0);     /* HV_MSR_REFERENCE_TSC_AVAILABLE */
		if (!cfg->reenlight)
			e->eax = bit(e->eax, 13, 0);    /* HV_ACCESS_REENLIGHTENMENT */
		e->ebx = bit(e->ebx, 11, cfg->dbg);     /* HV_DEBUGGING */
		if (!cfg->post_msg)
			e->ebx = bit(e->ebx, 4, 0);     /* HV_POST_MESSAGES */
		e->edx = bit(e->edx, 11, cfg->dm);      /* HV_FEATURE_DEBUG_MSRS_AVAILABLE */
		e->edx = bit(e->edx, 4, cfg->xmm);      /* HV_X64_HYPERCALL_XMM_INPUT_AVAILABLE */
		if (!cfg->crash)
			e->edx = bit(e->edx, 10, 0);    /* HV_FEATURE_GUEST_CRASH_MSR_AVAILABLE */
	}
	e = cpuid_find(c, HV_CPUID_ENLIGHTMENT_INFO, 0);
	if (e && !cfg->tlb_flush)
		e->eax = bit(e->eax, 2, 0);             /* HV_X64_REMOTE_TLB_FLUSH_RECOMMENDED */
	if (cfg->sd == 0) {
		cpuid_remove(c, HV_CPUID_SYNDBG_PLATFORM);
	} else {
		e = cpuid_find(c, HV_CPUID_SYNDBG_PLATFORM, 0);
		if (!e) {
			struct kvm_cpuid_entry2 n = { .function = HV_CPUID_SYNDBG_PLATFORM };

			c = cpuid_append(c, &n);
			e = cpuid_find(c, HV_CPUID_SYNDBG_PLATFORM, 0);
		}
		e->eax = cfg->sd == 3 ? cfg->sd_eax : cfg->sd == 2 ? 0x2 : 0;
	}
	return c;
}

/* ---- one script ------------------------------------------------------ */

struct ctx {
	const struct script *s;
	struct vm *vm;
	bool aborted;
};

static void ev_begin(struct json *j, const struct ctx *x, int step, const char *op)
{
	json_begin(j);
	json_i64(j, "script", x->s->index);
	json_i64(j, "step", step);
	json_str(j, "op", op);
}

static void ev_errno(struct json *j, int ret)
{
	json_i64(j, "ret", ret);
	json_i64(j, "errno", ret < 0 ? errno : 0);
}

static struct vcpu *op_vcpu(struct ctx *x, const struct kv *op)
{
	u64 i = kv_get(op, "vcpu", 0);

	if (i >= (u64)x->vm->nr_vcpus)
		die("script %ld: %s on vcpu %llu, the VM has %d", x->s->index, op->name,
		    (unsigned long long)i, x->vm->nr_vcpus);
	return &x->vm->vcpus[i];
}

static void put_exit_hyperv(struct json *j, struct vcpu *v, u64 stub)
{
	struct kvm_hyperv_exit *h = &v->run->hyperv;
	struct kvm_regs r;

	vcpu_get_regs(v, &r);
	json_obj_open(j, NULL);
	json_str(j, "reason", "hyperv");
	json_u64(j, "type", h->type);
	if (h->type == KVM_EXIT_HYPERV_SYNDBG) {
		json_u64(j, "msr", h->u.syndbg.msr);
		json_u64(j, "control", h->u.syndbg.control);
		json_u64(j, "status", h->u.syndbg.status);
		json_u64(j, "send_page", h->u.syndbg.send_page);
		json_u64(j, "recv_page", h->u.syndbg.recv_page);
		json_u64(j, "pending_page", h->u.syndbg.pending_page);
	} else if (h->type == KVM_EXIT_HYPERV_HCALL) {
		json_u64(j, "input", h->u.hcall.input);
		json_list_open(j, "params");
		json_u64(j, NULL, h->u.hcall.params[0]);
		json_u64(j, NULL, h->u.hcall.params[1]);
		json_list_close(j);
	}
	/* Where the guest stands at the exit, relative to the instruction. */
	json_i64(j, "rip", (int64_t)(r.rip - stub));
	json_obj_close(j);
}

/* Segment state for real mode or compatibility mode (guests/lib's
 * vcpu_set_mode() knows long and 32-bit protected mode only).  The lib's
 * cached mode is reset, so that its next vcpu_set_mode() reloads. */
static int set_special_mode(struct vcpu *v, int cpu_mode)
{
	struct kvm_sregs sr;
	int r;

	/* Start from the lib's long mode: GDT, TSS, page tables, IDT. */
	if (vcpu_set_mode(v, MODE_LONG64, 0))
		return -1;
	if (ioctl(v->fd, KVM_GET_SREGS, &sr))
		die("KVM_GET_SREGS: %s", strerror(errno));
	if (cpu_mode == CPU_MODE_COMPAT) {
		/* EFER.LMA with CS.L=0, CS.D=1: the GDT's 32-bit code segment,
		 * which the 64-bit exception handlers' IRETQ reloads. */
		sr.cs = (struct kvm_segment){
			.base = 0, .limit = 0xffffffff, .selector = SEL_CODE32, .type = 11,
			.present = 1, .dpl = 0, .db = 1, .s = 1, .l = 0, .g = 1,
		};
	} else {
		struct kvm_segment data = {
			.base = 0, .limit = 0xffff, .selector = 0, .type = 3, .present = 1, .s = 1,
		};

		sr.cr0 = 0x00000030;          /* NE|ET: PE and PG clear */
		sr.cr3 = 0;
		sr.cr4 = 0;
		sr.efer = 0;
		sr.idt.base = guest_sym_gpa(g16_ivt);
		sr.idt.limit = 32 * 4 - 1;
		sr.cs = (struct kvm_segment){
			.base = REAL_CS_BASE, .limit = 0xffff, .selector = REAL_CS_BASE >> 4,
			.type = 11, .present = 1, .s = 1,
		};
		sr.ds = sr.es = sr.fs = sr.gs = data;
		sr.ss = data;
		sr.ss.base = REAL_SS_BASE;
		sr.ss.selector = REAL_SS_BASE >> 4;
	}
	r = ioctl(v->fd, KVM_SET_SREGS, &sr);
	v->cur_mode = 0;
	return r;
}

/* The real-mode interrupt table in the VM's copy of guest_text: IP:CS of
 * each g16_vectors stub. */
static void put_ivt(struct vm *vm)
{
	u16 *ivt = gpa_ptr(vm, guest_sym_gpa(g16_ivt));

	for (int v = 0; v < 32; v++) {
		ivt[2 * v] = (u16)(guest_sym_gpa(g16_vectors) + v * G16_STUB_SIZE - REAL_CS_BASE);
		ivt[2 * v + 1] = (u16)(REAL_CS_BASE >> 4);
	}
}

static void put_preserved(struct json *j, const struct kvm_regs *r)
{
	json_obj_open(j, "preserved");
	json_u64(j, "rbx", r->rbx);
	json_u64(j, "rcx", r->rcx);
	json_u64(j, "rsi", r->rsi);
	json_u64(j, "rdi", r->rdi);
	json_u64(j, "r8", r->r8);
	json_u64(j, "r9", r->r9);
	json_u64(j, "r10", r->r10);
	json_u64(j, "r11", r->r11);
	json_u64(j, "r12", r->r12);
	json_u64(j, "r13", r->r13);
	json_u64(j, "r14", r->r14);
	json_obj_close(j);
}

/* Guest actions: rdmsr, wrmsr, hcall, nop. */
static void guest_action(struct ctx *x, int step, const struct kv *op)
{
	const struct script *s = x->s;
	struct vcpu *v = op_vcpu(x, op);
	int cpl = (int)kv_get(op, "cpl", 0);
	int cpu_mode = (int)kv_get(op, "cpu_mode", 0);
	/* 64-bit code (the 64-bit stubs) only in long mode proper; the vector is
	 * in R15 wherever the 64-bit IDT handles exceptions (long, compat). */
	bool m64 = s->mode == MODE_LONG64 && cpu_mode == 0;
	bool r15_vector = m64 || cpu_mode == CPU_MODE_COMPAT;
	struct kvm_regs r = { 0 };
	const char *abort = NULL;
	char why[96];
	u64 stub, base, vector;
	struct json j;
	int n, err;

	ev_begin(&j, x, step, op->name);
	json_i64(&j, "vcpu", v->id);

	r.rflags = 0x3002;   /* IOPL=3: the completion OUT works at CPL3 too */
	r.rsp = cpl == 3 ? GPA_USTACK_TOP : GPA_KSTACK_TOP;
	r.r15 = NO_VECTOR;
	r.rbp = NO_VECTOR;
	if (!strcmp(op->name, "rdmsr")) {
		stub = guest_sym_gpa(m64 ? g64_rdmsr : g32_rdmsr);
		r.rcx = kv_get(op, "msr", 0);
	} else if (!strcmp(op->name, "wrmsr")) {
		u64 val = kv_get(op, "value", 0);

		stub = guest_sym_gpa(m64 ? g64_wrmsr : g32_wrmsr);
		r.rcx = kv_get(op, "msr", 0);
		r.rax = val & 0xffffffff;
		r.rdx = val >> 32;
	} else if (!strcmp(op->name, "nop")) {
		stub = guest_sym_gpa(m64 ? g64_nop : g32_nop);
	} else { /* hcall */
		u64 ctl = kv_get(op, "control", 0), in = kv_get(op, "ingpa", 0);
		u64 out = kv_get(op, "outgpa", 0);
		bool vmmcall = kv_get(op, "insn", 0) == 1;

		r.r9 = SENT_R9;
		r.r10 = SENT_R10;
		r.r11 = SENT_R11;
		r.r12 = SENT_R12;
		r.r13 = SENT_R13;
		r.r14 = SENT_R14;
		if (m64) {
			stub = guest_sym_gpa(vmmcall ? syndbg_vmmcall_64 : syndbg_vmcall_64);
			r.rcx = ctl;
			r.rdx = in;
			r.r8 = out;
			r.rax = kv_get(op, "rax", 0);
			r.rbx = SENT_RBX;
			r.rsi = SENT_RSI;
			r.rdi = SENT_RDI;
		} else {
			/* 32-bit register-pair ABI: EDX:EAX, EBX:ECX, EDI:ESI */
			stub = guest_sym_gpa(vmmcall ? syndbg_vmmcall_32 : syndbg_vmcall_32);
			r.rax = ctl & 0xffffffff;
			r.rdx = ctl >> 32;
			r.rcx = in & 0xffffffff;
			r.rbx = in >> 32;
			r.rsi = out & 0xffffffff;
			r.rdi = out >> 32;
			r.r8 = SENT_R8;
		}
	}
	/* RIP is relative to CS: real mode's CS starts at guest_text. */
	base = cpu_mode == CPU_MODE_REAL ? stub - REAL_CS_BASE : stub;
	r.rip = base;
	if (cpu_mode == CPU_MODE_REAL)
		r.rsp = GPA_KSTACK_TOP - REAL_SS_BASE;

	if (cpu_mode == CPU_MODE_REAL || cpu_mode == CPU_MODE_COMPAT) {
		err = cpl ? (errno = EINVAL, -1) : set_special_mode(v, cpu_mode);
	} else {
		err = vcpu_set_mode(v, s->mode, cpl);
	}
	if (err) {
		snprintf(why, sizeof(why), "KVM_SET_SREGS mode %d/%d cpl %d: %s", s->mode, cpu_mode,
			 cpl, strerror(errno));
		json_str(&j, "abort", why);
		json_end_line(&j);
		x->aborted = true;
		return;
	}
	vcpu_set_regs(v, &r);

	json_list_open(&j, "exits");
	for (n = 0; !abort; n++) {
		struct kvm_run *run = v->run;

		if (n == MAX_EXITS_PER_ACTION) {
			abort = "too many exits";
			break;
		}
		if (vcpu_run(v, RUN_DEADLINE_MS)) {
			if (errno == EINTR) {
				snprintf(why, sizeof(why), "timeout: no exit within %d ms",
					 RUN_DEADLINE_MS);
			} else {
				snprintf(why, sizeof(why), "KVM_RUN: %s", strerror(errno));
			}
			abort = why;
			break;
		}
		if (run->exit_reason == KVM_EXIT_IO && run->io.port == UCALL_PORT_DONE)
			break;
		if (run->exit_reason == KVM_EXIT_IO && run->io.port == UCALL_PORT_FATAL) {
			struct kvm_regs f;

			vcpu_get_regs(v, &f);
			snprintf(why, sizeof(why), "guest exception vector %llu",
				 (unsigned long long)(r15_vector ? f.r15 : f.rbp & 0xffffffff));
			abort = why;
			break;
		}
		switch (run->exit_reason) {
		case KVM_EXIT_HYPERV:
			put_exit_hyperv(&j, v, base);
			if (run->hyperv.type == KVM_EXIT_HYPERV_SYNDBG && kv_has(op, "status"))
				run->hyperv.u.syndbg.status = kv_get(op, "status", 0);
			if (run->hyperv.type == KVM_EXIT_HYPERV_SYNDBG && kv_has(op, "exit_msr"))
				run->hyperv.u.syndbg.msr = (u32)kv_get(op, "exit_msr", 0);
			if (run->hyperv.type == KVM_EXIT_HYPERV_HCALL)
				run->hyperv.u.hcall.result = kv_get(op, "result", 0);
			break;
		case KVM_EXIT_SYSTEM_EVENT: {
			struct kvm_regs sr;

			/* Hyper-V crash (CRASH_CTL) and reset (RESET MSR) requests */
			vcpu_get_regs(v, &sr);
			json_obj_open(&j, NULL);
			json_str(&j, "reason", "system_event");
			json_u64(&j, "type", run->system_event.type);
			json_i64(&j, "rip", (int64_t)(sr.rip - base));
			json_obj_close(&j);
			break;
		}
		case KVM_EXIT_X86_RDMSR:
		case KVM_EXIT_X86_WRMSR:
			json_obj_open(&j, NULL);
			json_str(&j, "reason", run->exit_reason == KVM_EXIT_X86_RDMSR ?
				 "x86_rdmsr" : "x86_wrmsr");
			json_u64(&j, "msr_reason", run->msr.reason);
			json_u64(&j, "index", run->msr.index);
			json_u64(&j, "data", run->msr.data);
			json_obj_close(&j);
			run->msr.error = 1;   /* userspace refuses: KVM injects #GP */
			break;
		default:
			json_obj_open(&j, NULL);
			json_u64(&j, "reason", run->exit_reason);
			if (run->exit_reason == KVM_EXIT_IO)
				json_u64(&j, "port", run->io.port);
			json_obj_close(&j);
			snprintf(why, sizeof(why), "unexpected exit reason %u", run->exit_reason);
			abort = why;
			break;
		}
	}
	json_list_close(&j);
	if (abort) {
		json_str(&j, "abort", abort);
		json_end_line(&j);
		x->aborted = true;
		return;
	}

	vcpu_get_regs(v, &r);
	vector = (r15_vector ? r.r15 : r.rbp) & 0xffffffff;
	if (vector == NO_VECTOR)
		json_null(&j, "vector");
	else
		json_u64(&j, "vector", vector);
	if (!strcmp(op->name, "rdmsr")) {
		u64 val = (r.rdx & 0xffffffff) << 32 | (r.rax & 0xffffffff);

		if (kv_get(op, "msr", 0) == HV_MSR_TIME_REF_COUNT && val > 0 && val < (1ULL << 40))
			val = 1;    /* a plausible clock */
		if (vector == NO_VECTOR)
			json_u64(&j, "value", val);
		else
			json_null(&j, "value");
	} else if (!strcmp(op->name, "hcall")) {
		const u8 *site = gpa_ptr(x->vm, stub);

		json_u64(&j, "rax", r.rax);
		json_u64(&j, "rdx", r.rdx);
		/* The 3 bytes at the site afterwards: KVM may have rewritten them. */
		json_u64(&j, "insn_after", (u64)site[0] << 16 | site[1] << 8 | site[2]);
		put_preserved(&j, &r);
	}
	/* RIP at the completion OUT, relative to the action's instruction. */
	json_i64(&j, "rip_advance", (int64_t)(r.rip - base));
	json_end_line(&j);
}

static void host_hv_cpuid(struct ctx *x, int step, const struct kv *op)
{
	bool on_vcpu = kv_get(op, "fd", 0) == 1;
	int nent = (int)kv_get(op, "nent", 64), ret;
	struct kvm_cpuid2 *c = cpuid_alloc(nent > 0 ? nent : 1);
	struct json j;

	c->nent = nent;
	ret = ioctl(on_vcpu ? op_vcpu(x, op)->fd : kvm_fd(), KVM_GET_SUPPORTED_HV_CPUID, c);
	ev_begin(&j, x, step, op->name);
	json_str(&j, "fd", on_vcpu ? "vcpu" : "system");
	ev_errno(&j, ret);
	if (ret == 0) {
		bool zero = true;

		json_u64(&j, "nent", c->nent);
		json_list_open(&j, "functions");
		for (u32 i = 0; i < c->nent; i++) {
			json_u64(&j, NULL, c->entries[i].function);
			zero &= !c->entries[i].index && !c->entries[i].flags &&
				!c->entries[i].padding[0] && !c->entries[i].padding[1] &&
				!c->entries[i].padding[2];
		}
		json_list_close(&j);
		json_bool(&j, "index_flags_zero", zero);
		/* Every entry, every register: [function, eax, ebx, ecx, edx]. */
		json_list_open(&j, "entries");
		for (u32 i = 0; i < c->nent; i++) {
			struct kvm_cpuid_entry2 *e = &c->entries[i];

			json_list_open(&j, NULL);
			json_u64(&j, NULL, e->function);
			json_u64(&j, NULL, e->eax);
			json_u64(&j, NULL, e->ebx);
			json_u64(&j, NULL, e->ecx);
			json_u64(&j, NULL, e->edx);
			json_list_close(&j);
		}
		json_list_close(&j);
	}
	json_end_line(&j);
	free(c);
}

static void host_msr_list(struct ctx *x, int step, const struct kv *op)
{
	struct kvm_msr_list probe = { .nmsrs = 0 }, *l;
	struct json j;
	int ret;

	ioctl(kvm_fd(), KVM_GET_MSR_INDEX_LIST, &probe);   /* E2BIG, sets nmsrs */
	l = calloc(1, sizeof(*l) + (probe.nmsrs + 16) * sizeof(u32));
	if (!l)
		die("out of memory");
	l->nmsrs = probe.nmsrs + 16;
	ret = ioctl(kvm_fd(), KVM_GET_MSR_INDEX_LIST, l);
	ev_begin(&j, x, step, op->name);
	ev_errno(&j, ret);
	json_list_open(&j, "present");
	if (ret == 0) {
		for (u32 m = 0x400000f0; m <= 0x400000ff; m++)
			for (u32 i = 0; i < l->nmsrs; i++)
				if (l->indices[i] == m) {
					json_u64(&j, NULL, m);
					break;
				}
	}
	json_list_close(&j);
	json_end_line(&j);
	free(l);
}

static void host_action(struct ctx *x, int step, const struct kv *op)
{
	struct {
		struct kvm_msrs hdr;
		struct kvm_msr_entry e;
	} m = { 0 };
	struct json j;
	int ret;

	if (!strcmp(op->name, "set_msr") || !strcmp(op->name, "get_msr")) {
		bool set = op->name[0] == 's';

		m.hdr.nmsrs = 1;
		m.e.index = (u32)kv_get(op, "msr", 0);
		m.e.data = kv_get(op, "value", 0);
		ret = ioctl(op_vcpu(x, op)->fd, set ? KVM_SET_MSRS : KVM_GET_MSRS, &m);
		ev_begin(&j, x, step, op->name);
		json_i64(&j, "vcpu", kv_get(op, "vcpu", 0));
		ev_errno(&j, ret);
		if (!set) {
			if (ret == 1 && m.e.index == HV_MSR_TIME_REF_COUNT && m.e.data > 0 &&
			    m.e.data < (1ULL << 40))
				json_u64(&j, "value", 1);   /* a plausible clock */
			else if (ret == 1)
				json_u64(&j, "value", m.e.data);
			else
				json_null(&j, "value");
		}
		json_end_line(&j);
	} else if (!strcmp(op->name, "set_cpuid")) {
		struct cpuid_cfg cfg = cpuid_cfg_from(op);
		struct kvm_cpuid2 *c = build_cpuid(&cfg);

		if (!c)
			die("script %ld: cannot build CPUID: %s", x->s->index, strerror(errno));
		ret = vcpu_set_cpuid(op_vcpu(x, op), c);
		ev_begin(&j, x, step, op->name);
		json_i64(&j, "vcpu", kv_get(op, "vcpu", 0));
		ev_errno(&j, ret);
		json_end_line(&j);
		free(c);
	} else if (!strcmp(op->name, "check_ext")) {
		ret = kvm_check_extension((long)kv_get(op, "cap", 0));
		ev_begin(&j, x, step, op->name);
		json_i64(&j, "ret", ret);
		json_end_line(&j);
	} else if (!strcmp(op->name, "enable_cap")) {
		ret = vcpu_enable_cap(op_vcpu(x, op), (u32)kv_get(op, "cap", 0),
				      kv_get(op, "arg", 0));
		ev_begin(&j, x, step, op->name);
		json_i64(&j, "vcpu", kv_get(op, "vcpu", 0));
		ev_errno(&j, ret);
		json_end_line(&j);
	} else if (!strcmp(op->name, "peek")) {
		/* 8 bytes of guest memory, little-endian (e.g. the hypercall page) */
		u64 gpa = kv_get(op, "gpa", 0), val = 0;
		const u8 *p;

		if (gpa > GUEST_MEM_SIZE - 8)
			die("script %ld: peek at %#llx, outside guest memory", x->s->index,
			    (unsigned long long)gpa);
		p = gpa_ptr(x->vm, gpa);
		for (int b = 7; b >= 0; b--)
			val = val << 8 | p[b];
		ev_begin(&j, x, step, op->name);
		json_u64(&j, "value", val);
		json_end_line(&j);
	} else if (!strcmp(op->name, "hv_cpuid")) {
		host_hv_cpuid(x, step, op);
	} else if (!strcmp(op->name, "msr_list")) {
		host_msr_list(x, step, op);
	} else {
		die("script %ld: unknown op '%s'", x->s->index, op->name);
	}
}

/* KVM refused to set the VM up as the script asks: an observation, not a
 * payload error ("failed" names the refused call). */
static void setup_fail(struct ctx *x, const char *what, int err)
{
	struct json j;

	json_begin(&j);
	json_i64(&j, "script", x->s->index);
	json_str(&j, "op", "setup");
	json_bool(&j, "ok", false);
	json_str(&j, "failed", what);
	json_i64(&j, "errno", err);
	json_end_line(&j);
	x->aborted = true;
}

static void run_script(const struct script *s)
{
	struct ctx x = { .s = s };
	char what[96];
	struct json j;

	x.vm = vm_create();
	put_ivt(x.vm);
	if (!s->quirk_fix &&
	    vm_enable_cap(x.vm, CAP_DISABLE_QUIRKS2, QUIRK_FIX_HYPERCALL_INSN)) {
		setup_fail(&x, "KVM_ENABLE_CAP(KVM_CAP_DISABLE_QUIRKS2)", errno);
		goto out;
	}
	if (s->user_msr &&
	    vm_enable_cap(x.vm, CAP_X86_USER_SPACE_MSR, KVM_MSR_EXIT_REASON_INVAL)) {
		setup_fail(&x, "KVM_ENABLE_CAP(KVM_CAP_X86_USER_SPACE_MSR)", errno);
		goto out;
	}
	for (int i = 0; i < s->nr_vcpus; i++)
		vm_add_vcpu(x.vm);
	for (int i = 0; i < s->nr_vcpus; i++) {
		struct kvm_cpuid2 *c;

		if (s->enforce[i] &&
		    vcpu_enable_cap(&x.vm->vcpus[i], CAP_HYPERV_ENFORCE_CPUID, 1)) {
			snprintf(what, sizeof(what),
				 "KVM_ENABLE_CAP(KVM_CAP_HYPERV_ENFORCE_CPUID) vcpu %d", i);
			setup_fail(&x, what, errno);
			goto out;
		}
		c = build_cpuid(&s->cpuid[i]);
		if (!c) {
			setup_fail(&x, "KVM_GET_SUPPORTED_HV_CPUID", errno);
			goto out;
		}
		if (vcpu_set_cpuid(&x.vm->vcpus[i], c)) {
			snprintf(what, sizeof(what), "KVM_SET_CPUID2 vcpu %d", i);
			setup_fail(&x, what, errno);
			free(c);
			goto out;
		}
		free(c);
	}
	json_begin(&j);
	json_i64(&j, "script", s->index);
	json_str(&j, "op", "setup");
	json_bool(&j, "ok", true);
	json_end_line(&j);

	for (int i = 0; i < s->nops && !x.aborted; i++) {
		const char *n = s->ops[i].name;

		if (!strcmp(n, "rdmsr") || !strcmp(n, "wrmsr") || !strcmp(n, "hcall") ||
		    !strcmp(n, "nop"))
			guest_action(&x, i, &s->ops[i]);
		else
			host_action(&x, i, &s->ops[i]);
	}
out:
	vm_destroy(x.vm);
	script_done(s->index);
}

/* ---- input ----------------------------------------------------------- */

/* Parses "word k=v k=v" (words: how many leading words, the last one is the name). */
static void parse_line_kv(char *line, long lineno, struct kv *kv, int words)
{
	char copy[1024];
	const char *err;

	snprintf(copy, sizeof(copy), "%s", line);
	copy[strcspn(copy, "\n")] = 0;
	err = kv_parse(line, words, kv);
	if (err)
		die("stdin line %ld: %s in '%s'", lineno, err, copy);
}

static int run_stdin(void)
{
	static struct script s;
	char line[1024];
	long lineno = 0, scripts = 0;
	bool in = false;

	while (fgets(line, sizeof(line), stdin)) {
		struct kv tmp;
		char *p = line;
		long v;

		lineno++;
		if (!strchr(line, '\n') && !feof(stdin))
			die("stdin line %ld: longer than %zu bytes", lineno, sizeof(line) - 2);
		while (*p == ' ' || *p == '\t')
			p++;
		if (*p == '\n' || *p == '#' || *p == 0)
			continue;
		if (!strncmp(p, "script ", 7)) {
			if (in)
				die("stdin line %ld: 'script' before 'end'", lineno);
			memset(&s, 0, sizeof(s));
			s.index = strtol(p + 7, NULL, 0);
			s.nr_vcpus = 1;
			s.mode = MODE_LONG64;
			s.quirk_fix = 1;
			for (int i = 0; i < VM_MAX_VCPUS; i++)
				s.cpuid[i] = CPUID_CFG_DEFAULT;
			in = true;
		} else if (!in) {
			die("stdin line %ld: expected 'script N'", lineno);
		} else if (!strncmp(p, "vm", 2) && (p[2] == ' ' || p[2] == '\n')) {
			parse_line_kv(p, lineno, &tmp, 1);
			s.nr_vcpus = (int)kv_get(&tmp, "vcpus", 1);
			s.mode = (int)kv_get(&tmp, "mode", 64);
			s.quirk_fix = (int)kv_get(&tmp, "quirk_fix", 1);
			s.user_msr = (int)kv_get(&tmp, "user_msr", 0);
			if (s.nr_vcpus < 1 || s.nr_vcpus > VM_MAX_VCPUS ||
			    (s.mode != MODE_LONG64 && s.mode != MODE_PROT32))
				die("stdin line %ld: bad vm line", lineno);
		} else if (!strncmp(p, "cpuid ", 6)) {
			char *end;

			v = strtol(p + 6, &end, 0);
			if (v < 0 || v >= VM_MAX_VCPUS)
				die("stdin line %ld: bad vcpu", lineno);
			parse_line_kv(end, lineno, &tmp, 0);
			s.cpuid[v] = cpuid_cfg_from(&tmp);
		} else if (!strncmp(p, "enforce ", 8)) {
			v = strtol(p + 8, NULL, 0);
			if (v < 0 || v >= VM_MAX_VCPUS)
				die("stdin line %ld: bad vcpu", lineno);
			s.enforce[v] = 1;
		} else if (!strncmp(p, "op ", 3)) {
			if (s.nops == MAX_OPS)
				die("stdin line %ld: more than %d ops", lineno, MAX_OPS);
			parse_line_kv(p, lineno, &s.ops[s.nops], 2);
			s.nops++;
		} else if (!strncmp(p, "end", 3)) {
			run_script(&s);
			scripts++;
			in = false;
		} else {
			die("stdin line %ld: cannot parse '%.40s'", lineno, p);
		}
	}
	if (in)
		die("stdin: script %ld has no 'end'", s.index);
	fprintf(stderr, "syndbg: %ld scripts\n", scripts);
	return 0;
}

/* The first line of a sysfs file, or "absent". */
static const char *sysfs_line(const char *path, char buf[32])
{
	return sysfs_word(path, buf) ? buf : strcpy(buf, "absent");
}

static int probe(void)
{
	struct kvm_cpuid2 *hv = kvm_supported_hv_cpuid();
	int hv_errno = hv ? 0 : errno;
	char smt[32], cs[32];
	struct json j;

	json_begin(&j);
	json_str(&j, "probe", "syndbg");
	json_str(&j, "vendor", kvm_cpu_vendor());
	json_obj_open(&j, "caps");
	json_i64(&j, "hyperv", kvm_check_extension(KVM_CAP_HYPERV));
	json_i64(&j, "hyperv_cpuid", kvm_check_extension(KVM_CAP_HYPERV_CPUID));
	json_i64(&j, "sys_hyperv_cpuid", kvm_check_extension(KVM_CAP_SYS_HYPERV_CPUID));
	json_i64(&j, "hyperv_enforce_cpuid", kvm_check_extension(CAP_HYPERV_ENFORCE_CPUID));
	json_i64(&j, "disable_quirks2", kvm_check_extension(CAP_DISABLE_QUIRKS2));
	json_i64(&j, "x86_user_space_msr", kvm_check_extension(CAP_X86_USER_SPACE_MSR));
	json_obj_close(&j);
	if (hv)
		json_u64(&j, "hv_cpuid_nent", hv->nent);
	else
		json_null(&j, "hv_cpuid_nent");
	json_i64(&j, "hv_cpuid_errno", hv_errno);
	/* cpu_smt_possible() decides HV_X64_NO_NONARCH_CORESHARING in CPUID */
	json_str(&j, "smt_control", sysfs_line("/sys/devices/system/cpu/smt/control", smt));
	/* A tsc clocksource gives KVM its master clock, which the Hyper-V TSC
	 * page (HV_X64_MSR_REFERENCE_TSC) needs (compute_tsc_page_parameters) */
	json_str(&j, "clocksource",
		 sysfs_line("/sys/devices/system/clocksource/clocksource0/current_clocksource", cs));
	json_end_line(&j);
	return 0;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOFBF, 1 << 16);
	if (argc == 2 && !strcmp(argv[1], "--probe"))
		return probe();
	if (argc != 1)
		die("usage: %s [--probe] < scripts", argv[0]);
	return run_stdin();
}
