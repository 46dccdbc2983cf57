// SPDX-License-Identifier: GPL-2.0
/*
 * vcsim shim hypervisor: answers VMGEXIT from the op-script's H tables the
 * way KVM does (arch/x86/kvm/svm/sev.c): the MSR protocol
 * (sev_handle_vmgexit_msr_protocol), sev_es_validate_vmgexit's input checks
 * (info1 2 = malformed input, info2 = GHCB_ERR_*), sev_es_sync_from_ghcb
 * (RAX..RDX taken only when valid, else 0; the bitmap cleared) and
 * sev_es_sync_to_ghcb (RAX RBX RCX RDX always written back, marked valid).
 * Compiled against the kernel's headers: the GHCB is the kernel's struct
 * ghcb and its accessors (arch/x86/include/asm/svm.h).  Records each
 * request before answering it, as the guest left it.
 */
#include <asm/svm.h>
#include <asm/sev-common.h>
#include <asm/msr-index.h>
#include <asm/trapnr.h>
#include <asm/cpuid.h>

struct vcsim_hv vcsim_hv;

/* GHCB save-area offsets of the registers, in VCSIM_R_* order */
static const unsigned int reg_off[16] = {
	offsetof(struct ghcb_save_area, rax), offsetof(struct ghcb_save_area, rbx),
	offsetof(struct ghcb_save_area, rcx), offsetof(struct ghcb_save_area, rdx),
	offsetof(struct ghcb_save_area, rsi), offsetof(struct ghcb_save_area, rdi),
	offsetof(struct ghcb_save_area, rbp), offsetof(struct ghcb_save_area, rsp),
	offsetof(struct ghcb_save_area, r8), offsetof(struct ghcb_save_area, r9),
	offsetof(struct ghcb_save_area, r10), offsetof(struct ghcb_save_area, r11),
	offsetof(struct ghcb_save_area, r12), offsetof(struct ghcb_save_area, r13),
	offsetof(struct ghcb_save_area, r14), offsetof(struct ghcb_save_area, r15),
};

static bool reg_valid(struct ghcb *g, int i)
{
	return test_bit(reg_off[i] / 8, (unsigned long *)&g->save.valid_bitmap);
}

static u64 *reg_ptr(struct ghcb *g, int i)
{
	return (u64 *)((char *)&g->save + reg_off[i]);
}

static void reg_set(struct ghcb *g, int i, u64 v)
{
	*reg_ptr(g, i) = v;
	__set_bit(reg_off[i] / 8, (unsigned long *)&g->save.valid_bitmap);
}

static void reg_drop(struct ghcb *g, int i)
{
	__clear_bit(reg_off[i] / 8, (unsigned long *)&g->save.valid_bitmap);
}

void vcsim_wrmsr(unsigned int msr, unsigned long long v)
{
	if (msr != MSR_AMD64_SEV_ES_GHCB)
		vcsim_panic("wrmsr of an MSR the shim does not model");
	vcsim_hv.ghcb_msr = v;
	if ((v & GHCB_MSR_INFO_MASK) && !vcsim_hv.quiet)
		vcsim_trace_msr(v);
}

unsigned long long vcsim_rdmsr(unsigned int msr)
{
	switch (msr) {
	case MSR_AMD64_SEV_ES_GHCB:
		return vcsim_hv.ghcb_msr;
	case MSR_FS_BASE:
		return vcsim_hv.fs_base;
	case MSR_GS_BASE:           /* kernel mode */
	case MSR_KERNEL_GS_BASE:    /* user mode, after swapgs */
		return vcsim_hv.gs_base;
	}
	vcsim_panic("rdmsr of an MSR the shim does not model");
}

/* kvm_cpuid(): the sub-leaf matters only for indexed functions */
static void cpuid_lookup(u32 leaf, u32 sub, u32 out[4])
{
	int i;

	if (!cpuid_function_is_indexed(leaf))
		sub = 0;
	out[0] = out[1] = out[2] = out[3] = 0;
	for (i = 0; i < vcsim_hv.ncpuid; i++) {
		if (vcsim_hv.cpuid[i][0] == leaf && vcsim_hv.cpuid[i][1] == sub) {
			memcpy(out, &vcsim_hv.cpuid[i][2], 16);
			return;
		}
	}
}

/* sev_handle_vmgexit_msr_protocol() */
static void msr_protocol(u64 val)
{
	u64 code = val & GHCB_MSR_INFO_MASK, resp = val;

	switch (code) {
	case GHCB_MSR_SEV_INFO_REQ:
		resp = ((u64)vcsim_hv.sev_info[0] << 48) | ((u64)vcsim_hv.sev_info[1] << 32) |
		       ((u64)(vcsim_hv.sev_info[2] & 0xff) << 24) | GHCB_MSR_SEV_INFO_RESP;
		break;
	case GHCB_MSR_CPUID_REQ: {
		u32 r[4], fn = val >> 32, reg = (val >> 30) & 3;

		cpuid_lookup(fn, 0, r);
		resp = ((u64)r[reg] << 32) | GHCB_MSR_CPUID_RESP;
		break;
	}
	case GHCB_MSR_HV_FT_REQ:
		resp = GHCB_MSR_HV_FT_RESP;   /* no SNP features */
		break;
	case GHCB_MSR_TERM_REQ:
		vcsim_hv.terminated = 1;
		vcsim_hv.term_val = val;
		return;                       /* KVM exits to user space; the MSR stays */
	default:
		return;                       /* "keep GHCB MSR value as-is" */
	}
	if (vcsim_hv.has_resp)            /* fault injection: a wrong response code */
		resp = (resp & ~(u64)GHCB_MSR_INFO_MASK) | (vcsim_hv.resp_code & GHCB_MSR_INFO_MASK);
	vcsim_hv.ghcb_msr = resp;
}

static unsigned int port_in(unsigned int port, unsigned char *dst, unsigned int n)
{
	unsigned int i;
	int p;

	for (p = 0; p < vcsim_hv.nports; p++)
		if (vcsim_hv.ports[p].port == port)
			break;
	for (i = 0; i < n; i++) {
		struct vcsim_port *pp = p < vcsim_hv.nports ? &vcsim_hv.ports[p] : NULL;

		dst[i] = (pp && pp->pos < pp->len) ? pp->data[pp->pos++] : 0xff;
	}
	return n;
}

static void mmio_access(u64 pa, unsigned char *buf, unsigned int n, bool write)
{
	unsigned int i;
	int m;

	for (i = 0; i < n; i++) {
		u64 a = pa + i;
		bool done = false;

		for (m = 0; m < vcsim_hv.nmmio && !done; m++) {
			struct vcsim_mmio *mm = &vcsim_hv.mmio[m];

			if (a >= mm->pa && a < mm->pa + mm->len) {
				if (write)
					mm->data[a - mm->pa] = buf[i];
				else
					buf[i] = mm->data[a - mm->pa];
				done = true;
			}
		}
		if (!done && !write)
			buf[i] = 0xff;
	}
}

static bool find_val(const unsigned int *idx, const unsigned long long *val, int n,
		     unsigned int key, u64 *out)
{
	int i;

	for (i = 0; i < n; i++)
		if (idx[i] == key) {
			*out = val[i];
			return true;
		}
	return false;
}

static void record(struct ghcb *g)
{
	struct vcsim_exit_rec e = { 0 };
	u64 gpa = VCSIM_GHCB_GPA + offsetof(struct ghcb, shared_buffer);
	int i;

	e.exit = g->save.sw_exit_code;
	e.info1 = g->save.sw_exit_info_1;
	e.info2 = g->save.sw_exit_info_2;
	e.has_scratch = ghcb_sw_scratch_is_valid(g);
	e.scratch = g->save.sw_scratch;
	memcpy(e.valid, g->save.valid_bitmap, 16);
	for (i = 0; i < 16; i++) {
		if (reg_valid(g, i)) {
			e.reg_valid |= 1u << i;
			e.regs[i] = *reg_ptr(g, i);
		}
	}
	e.has_cpl = ghcb_cpl_is_valid(g);
	e.cpl = g->save.cpl;
	e.has_xcr0 = ghcb_xcr0_is_valid(g);
	e.xcr0 = g->save.xcr0;
	e.usage = g->ghcb_usage;
	e.version = g->protocol_version;
	if (e.has_scratch && e.scratch >= gpa && e.scratch < gpa + sizeof(g->shared_buffer)) {
		u64 len = 0, off = e.scratch - gpa;

		if (e.exit == SVM_EXIT_IOIO && (e.info1 & SVM_IOIO_STR_MASK))
			len = e.info2 * ((e.info1 >> 4) & 7);
		else if (e.exit == SVM_VMGEXIT_MMIO_READ || e.exit == SVM_VMGEXIT_MMIO_WRITE)
			len = e.info2;
		if (len > sizeof(g->shared_buffer) - off)
			len = sizeof(g->shared_buffer) - off;
		e.buf = (const unsigned char *)g->shared_buffer + off;
		e.buf_len = len;
	}
	if (!vcsim_hv.quiet)
		vcsim_trace_vmgexit(&e);
}

/* setup_vmgexit_scratch(): inside the GHCB only within the shared buffer */
static bool scratch_ok(struct ghcb *g, u64 len)
{
	u64 start = VCSIM_GHCB_GPA + offsetof(struct ghcb, shared_buffer);
	u64 s = g->save.sw_scratch;

	return ghcb_sw_scratch_is_valid(g) && s >= start && len <= sizeof(g->shared_buffer) &&
	       s + len <= start + sizeof(g->shared_buffer);
}

#define BAD(reason) do { info1 = 2; info2 = (reason); goto reply; } while (0)
#define NEED(cond) do { if (!(cond)) BAD(GHCB_ERR_MISSING_INPUT); } while (0)

static void ghcb_protocol(struct ghcb *g)
{
	u64 exit = g->save.sw_exit_code, in1 = g->save.sw_exit_info_1, in2 = g->save.sw_exit_info_2;
	u64 info1 = 0, info2 = 0, *vr = vcsim_hv.vcpu, v;
	unsigned char *buf = g->shared_buffer;
	struct vcsim_reply *rp = &vcsim_hv.reply;
	int i;

	/* sev_es_sync_from_ghcb() */
	for (i = 0; i < 4; i++)
		vr[i] = reg_valid(g, i) ? *reg_ptr(g, i) : 0;

	/* sev_es_validate_vmgexit() */
	if (g->ghcb_usage)
		BAD(GHCB_ERR_INVALID_USAGE);
	NEED(ghcb_sw_exit_code_is_valid(g) && ghcb_sw_exit_info_1_is_valid(g) &&
	     ghcb_sw_exit_info_2_is_valid(g));

	switch (exit) {
	case SVM_EXIT_CPUID: {
		u32 r[4];

		NEED(ghcb_rax_is_valid(g) && ghcb_rcx_is_valid(g));
		if (vr[0] == 0xd)
			NEED(ghcb_xcr0_is_valid(g));
		cpuid_lookup(vr[0], vr[2], r);
		vr[0] = r[0]; vr[1] = r[1]; vr[2] = r[2]; vr[3] = r[3];
		break;
	}
	case SVM_EXIT_IOIO: {
		unsigned int size = (in1 >> 4) & 7, port = in1 >> 16;

		if (in1 & SVM_IOIO_STR_MASK) {
			if (!scratch_ok(g, in2 * size))
				BAD(GHCB_ERR_INVALID_SCRATCH_AREA);
			if (in1 & SVM_IOIO_TYPE_MASK)
				port_in(port, buf + (g->save.sw_scratch - VCSIM_GHCB_GPA -
						     offsetof(struct ghcb, shared_buffer)), in2 * size);
		} else if (in1 & SVM_IOIO_TYPE_MASK) {
			unsigned char d[4];

			v = size < 4 ? vr[0] : 0;
			port_in(port, d, size);
			memcpy(&v, d, size);
			vr[0] = v;
		} else {
			NEED(ghcb_rax_is_valid(g));
		}
		break;
	}
	case SVM_EXIT_MSR:
		NEED(ghcb_rcx_is_valid(g));
		if (in1) {
			NEED(ghcb_rax_is_valid(g) && ghcb_rdx_is_valid(g));
			v = (vr[3] << 32) | (u32)vr[0];
			for (i = 0; i < vcsim_hv.nmsrs; i++)
				if (vcsim_hv.msr_idx[i] == (u32)vr[2])
					break;
			if (i == vcsim_hv.nmsrs && i < VCSIM_MAX_MSRS) {
				vcsim_hv.nmsrs++;
				vcsim_hv.msr_idx[i] = vr[2];
			}
			if (i < VCSIM_MAX_MSRS)
				vcsim_hv.msr_val[i] = v;
		} else if (find_val(vcsim_hv.msr_idx, vcsim_hv.msr_val, vcsim_hv.nmsrs, vr[2], &v)) {
			vr[0] = (u32)v;
			vr[3] = v >> 32;
		} else {
			/* svm_complete_emulated_msr(): #GP */
			info1 = 1;
			info2 = X86_TRAP_GP | SVM_EVTINJ_TYPE_EXEPT | SVM_EVTINJ_VALID;
		}
		break;
	case SVM_EXIT_VMMCALL:
		NEED(ghcb_rax_is_valid(g) && ghcb_cpl_is_valid(g));
		if (vcsim_hv.has_vmmcall_rax)
			vr[0] = vcsim_hv.vmmcall_rax;
		else if (g->save.cpl)
			vr[0] = -1ULL;      /* -KVM_EPERM */
		else
			vr[0] = -1000ULL;   /* -KVM_ENOSYS */
		break;
	case SVM_EXIT_RDTSC:
	case SVM_EXIT_RDTSCP:
		vr[0] = (u32)vcsim_hv.tsc;
		vr[3] = vcsim_hv.tsc >> 32;
		if (exit == SVM_EXIT_RDTSCP)
			vr[2] = (u32)vcsim_hv.tsc_aux;
		break;
	case SVM_EXIT_RDPMC:
		NEED(ghcb_rcx_is_valid(g));
		if (!find_val(vcsim_hv.pmc_idx, vcsim_hv.pmc_val, vcsim_hv.npmc, vr[2], &v))
			v = 0;
		vr[0] = (u32)v;
		vr[3] = v >> 32;
		break;
	case SVM_EXIT_WRITE_DR7:
		NEED(ghcb_rax_is_valid(g));
		vcsim_hv.dr7 = vr[0];
		break;
	case SVM_EXIT_READ_DR7:
	case SVM_EXIT_WBINVD:
	case SVM_EXIT_INVD:
		break;
	case SVM_EXIT_MONITOR:
		NEED(ghcb_rax_is_valid(g) && ghcb_rcx_is_valid(g) && ghcb_rdx_is_valid(g));
		break;
	case SVM_EXIT_MWAIT:
		NEED(ghcb_rax_is_valid(g) && ghcb_rcx_is_valid(g));
		break;
	case SVM_VMGEXIT_MMIO_READ:
	case SVM_VMGEXIT_MMIO_WRITE:
		if (!scratch_ok(g, in2))
			BAD(GHCB_ERR_INVALID_SCRATCH_AREA);
		mmio_access(in1, buf + (g->save.sw_scratch - VCSIM_GHCB_GPA -
					offsetof(struct ghcb, shared_buffer)),
			    in2, exit == SVM_VMGEXIT_MMIO_WRITE);
		break;
	case SVM_VMGEXIT_NMI_COMPLETE:
		break;
	default:
		BAD(GHCB_ERR_INVALID_EVENT);
	}

reply:
	memset(g->save.valid_bitmap, 0, sizeof(g->save.valid_bitmap));
	/* sev_es_sync_to_ghcb() */
	ghcb_set_rax(g, vr[0]);
	ghcb_set_rbx(g, vr[1]);
	ghcb_set_rcx(g, vr[2]);
	ghcb_set_rdx(g, vr[3]);
	ghcb_set_sw_exit_info_1(g, info1);
	ghcb_set_sw_exit_info_2(g, info2);

	/* the trigger's fault injection */
	if (rp->has_info1)
		ghcb_set_sw_exit_info_1(g, rp->info1);
	if (rp->has_info2)
		ghcb_set_sw_exit_info_2(g, rp->info2);
	for (i = 0; i < 16; i++) {
		if (rp->set & (1u << i))
			reg_set(g, i, rp->set_val[i]);
		if (rp->drop & (1u << i))
			reg_drop(g, i);
	}
}

/* VMGEXIT() */
void hv_vmgexit(void)
{
	u64 msr = vcsim_hv.ghcb_msr;

	if (msr & GHCB_MSR_INFO_MASK) {
		msr_protocol(msr);
		return;
	}
	if (msr != VCSIM_GHCB_GPA)
		vcsim_panic("VMGEXIT with the GHCB MSR at an unknown GPA");
	record(bridge_ghcb());
	ghcb_protocol(bridge_ghcb());
}
