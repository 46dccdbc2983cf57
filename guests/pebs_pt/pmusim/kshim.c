// SPDX-License-Identifier: GPL-2.0
/*
 * pmusim kernel-side shim: the host the KVM code runs on, compiled against
 * the kernel's headers.  Everything here answers from pmusim_cfg (the
 * op-script's S line): the boot CPU's features and model, host MSRs
 * (rdmsrl of MSR_IA32_PERF_CAPABILITIES, MSR_IA32_VMX_MISC), perf's
 * x86_pmu capability and LBR description, and perf's refusal to create
 * events (there is no host perf here).  The vCPU itself is made by pmusim.c
 * through pmusim_setup() below.  Kernel functions the compiled KVM files
 * reference but pmusim's paths do not reach are the builder's generated
 * definitions (stubs.S: a called function is a trap that names itself,
 * exit 3; anything else is zeroed storage).
 */
#include <linux/kernel.h>
#include <linux/printk.h>
#include <linux/ratelimit.h>
#include <linux/sched.h>
#include <linux/kvm_host.h>
#include <linux/perf_event.h>
#include <asm/perf_event.h>
#include <asm/processor.h>
#include <asm/intel_pt.h>
#include "pmusim_api.h"

int cpuid_query_maxphyaddr(struct kvm_vcpu *vcpu);
u64 kvm_vcpu_reserved_gpa_bits_raw(struct kvm_vcpu *vcpu);

/* module parameters (x86.c, vmx.c) */
extern bool enable_pmu;
extern int pt_mode;

struct cpuinfo_x86 boot_cpu_data;

/* current: the VMM's task (vcpu_unimpl() prints current->tgid) */
static struct task_struct pmusim_task = { .pid = 1, .tgid = 1 };
DEFINE_PER_CPU(struct task_struct *, current_task) = &pmusim_task;

/* bridges */
int pmusim_vmx_hardware_setup(int host_pt);
struct kvm_x86_init_ops *pmusim_vmx_init_ops(void);
unsigned long pmusim_vcpu_size(void);
unsigned long pmusim_kvm_size(void);
void pmusim_vmx_after_set_cpuid(struct kvm_vcpu *vcpu);
void pmusim_vmx_init_vmcs_pt(struct kvm_vcpu *vcpu);
int pmusim_guest_rdmsr(struct kvm_vcpu *vcpu, u32 index, u64 *data);
int pmusim_guest_wrmsr(struct kvm_vcpu *vcpu, u32 index, u64 data);
int pmusim_host_get(struct kvm_vcpu *vcpu, u32 index, u64 *data);
int pmusim_host_set(struct kvm_vcpu *vcpu, u32 index, u64 *data);
int pmusim_feature_get(u32 index, u64 *data);
void pmusim_x86_pmu_capability(void);
void pmusim_x86_ops_update(struct kvm_x86_init_ops *ops);

/* hosted allocator (pmusim.c) */
void *pmusim_zalloc(unsigned long size);

/* ---- host MSRs ---- */
static int host_msr(u32 msr, u64 *val)
{
	switch (msr) {
	case MSR_IA32_PERF_CAPABILITIES:
		*val = pmusim_cfg.host_pdcm ? pmusim_cfg.host_perf_caps : 0;
		return pmusim_cfg.host_pdcm ? 0 : -EIO;
	case MSR_IA32_VMX_MISC:
		*val = pmusim_cfg.host_pt ? MSR_IA32_VMX_MISC_INTEL_PT : 0;
		return 0;
	case MSR_IA32_ARCH_CAPABILITIES:
	case MSR_IA32_UCODE_REV:
	case MSR_EFER:
		*val = 0;
		return 0;
	}
	*val = 0;
	return -EIO;
}

u64 pmusim_rdmsr(u32 msr)
{
	u64 val;

	if (host_msr(msr, &val))
		pmusim_note("host rdmsr of MSR 0x%x the shim does not have (read as 0)", msr);
	return val;
}

u64 pmusim_read_msr_safe(u32 msr, int *err)
{
	u64 val;

	*err = host_msr(msr, &val);
	return val;
}

void pmusim_wrmsr(u32 msr, u64 val)
{
	pmusim_note("host wrmsr 0x%x <- 0x%llx (dropped)", msr, val);
}

int pmusim_wrmsr_safe(u32 msr, u64 val)
{
	pmusim_note("host wrmsr_safe 0x%x <- 0x%llx (dropped)", msr, val);
	return 0;
}

/* ---- printk, ratelimit, WARN, BUG ---- */
int _printk(const char *fmt, ...)
{
	/* the format only (kernel conversions are not the C library's) */
	pmusim_note("printk: %s", printk_skip_level(fmt));
	return 0;
}

void __warn_printk(const char *fmt, ...)
{
	pmusim_note("warn: %s", printk_skip_level(fmt));
}

int ___ratelimit(struct ratelimit_state *rs, const char *func)
{
	return 1;  /* every message printed (printing decides nothing in the MSR paths) */
}

void pmusim_warn(const char *file, int line)
{
	pmusim_note("WARN at %s:%d", file, line);
}

void pmusim_bug(const char *file, int line)
{
	pmusim_note("BUG() at %s:%d", file, line);
	pmusim_unexpected("BUG()");
}

/* ---- perf (arch/x86/events) as the host's driver would report ---- */
void perf_get_x86_pmu_capability(struct x86_pmu_capability *cap)
{
	/* arch/x86/events/core.c: zero without a PMU, else x86_pmu's numbers */
	memset(cap, 0, sizeof(*cap));
	if (!pmusim_cfg.host_pmu_version)
		return;
	cap->version = pmusim_cfg.host_pmu_version;
	cap->num_counters_gp = pmusim_cfg.host_gp;
	cap->num_counters_fixed = pmusim_cfg.host_fixed;
	cap->bit_width_gp = 48;
	cap->bit_width_fixed = 48;
	cap->events_mask = 0;
	cap->events_mask_len = 7;
	cap->pebs_ept = !!pmusim_cfg.host_pebs_ept;
}

void x86_perf_get_lbr(struct x86_pmu_lbr *lbr)
{
	/* arch/x86/events/intel/lbr.c: the Skylake-style LBR stack */
	lbr->nr = pmusim_cfg.host_lbr_nr;
	lbr->from = lbr->nr ? MSR_LBR_NHM_FROM : 0;
	lbr->to = lbr->nr ? MSR_LBR_NHM_TO : 0;
	lbr->info = lbr->nr ? MSR_LBR_INFO_0 : 0;
}

struct perf_event *perf_event_create_kernel_counter(struct perf_event_attr *attr, int cpu,
						    struct task_struct *task,
						    perf_overflow_handler_t callback, void *context)
{
	/* no host perf: every counter KVM asks for is refused (pmc_reprogram_counter
	 * and intel_pmu_create_guest_lbr_event handle the error) */
	return ERR_PTR(-EOPNOTSUPP);
}

/* ---- set-up: module load, KVM_CREATE_VM, KVM_CREATE_VCPU, KVM_SET_CPUID2 ---- */
static struct kvm_vcpu *vcpu;
static struct kvm_cpuid_entry2 guest_cpuid_tab[8];

static void set_cap(int bit, int on)
{
	if (on)
		set_bit(bit, (unsigned long *)boot_cpu_data.x86_capability);
}

static int guest_cpuid(void)
{
	int n = 0;
	u32 model = pmusim_cfg.guest_model;
	struct kvm_cpuid_entry2 *e;

	e = &guest_cpuid_tab[n++];
	*e = (struct kvm_cpuid_entry2){ .function = 0, .eax = 0x1f };
	e = &guest_cpuid_tab[n++];
	/* family 6, the model in bits 7:4 and 19:16 */
	*e = (struct kvm_cpuid_entry2){ .function = 1,
		.eax = (6 << 8) | ((model & 0xf) << 4) | ((model >> 4) << 16) };
	if (pmusim_cfg.pdcm)
		e->ecx |= BIT(15) /* PDCM */;
	if (pmusim_cfg.dtes64)
		e->ecx |= BIT(2) /* DTES64 */;
	if (pmusim_cfg.ds)
		e->edx |= BIT(21) /* DS */;
	e = &guest_cpuid_tab[n++];
	*e = (struct kvm_cpuid_entry2){ .function = 7, .index = 0,
					.flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX };
	if (pmusim_cfg.pt)
		e->ebx |= BIT(25) /* INTEL_PT */;
	e = &guest_cpuid_tab[n++];
	/* leaf 0xA: version, GP counters, width 48, 7 events; fixed counters, width 48 */
	*e = (struct kvm_cpuid_entry2){ .function = 0xa,
		.eax = pmusim_cfg.pmu_version | (pmusim_cfg.gp << 8) | (48 << 16) | (7 << 24),
		.edx = pmusim_cfg.fixed | (48 << 5) };
	if (pmusim_cfg.pt) {
		/* leaf 0x14 of an Ice Lake server (CR3 filter, PSB/CYC, IP filter, MTC,
		 * PTWRITE, power events; ToPA, multi-entry ToPA, single range; 2 ranges) */
		e = &guest_cpuid_tab[n++];
		*e = (struct kvm_cpuid_entry2){ .function = 0x14, .index = 0,
			.flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX,
			.eax = 1, .ebx = 0x3f, .ecx = 0x7 };
		e = &guest_cpuid_tab[n++];
		*e = (struct kvm_cpuid_entry2){ .function = 0x14, .index = 1,
			.flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX,
			.eax = 0x02490002, .ebx = 0x003f3fff };
	}
	return n;
}

void pmusim_setup(void)
{
	struct kvm *kvm;

	/* the boot CPU */
	memset(&boot_cpu_data, 0, sizeof(boot_cpu_data));
	boot_cpu_data.x86_vendor = pmusim_cfg.intel ? X86_VENDOR_INTEL : X86_VENDOR_AMD;
	boot_cpu_data.x86 = 6;
	boot_cpu_data.x86_model = pmusim_cfg.host_model;
	set_cap(X86_FEATURE_PDCM, pmusim_cfg.host_pdcm);
	set_cap(X86_FEATURE_PEBS, pmusim_cfg.host_pebs);
	set_cap(X86_FEATURE_DS, pmusim_cfg.host_pebs);
	set_cap(X86_FEATURE_DTES64, pmusim_cfg.host_pebs);
	set_cap(X86_FEATURE_INTEL_PT, pmusim_cfg.host_pt);
	set_cap(X86_FEATURE_ARCH_LBR, pmusim_cfg.host_arch_lbr);
	set_cap(X86_FEATURE_HLE, pmusim_cfg.host_rtm);
	set_cap(X86_FEATURE_RTM, pmusim_cfg.host_rtm);
	set_cap(X86_FEATURE_VMX, 1);
	set_cap(X86_FEATURE_NX, 1);

	/* module parameters */
	enable_pmu = pmusim_cfg.enable_pmu;
	pt_mode = pmusim_cfg.pt_mode;

	/* kvm_arch_hardware_setup(): kvm_init_pmu_capability(), ops->hardware_setup()
	 * (its PT-mode rule and vmx_set_cpu_caps()'s supported_perf_cap), kvm_ops_update() */
	pmusim_x86_pmu_capability();
	if (pmusim_vmx_hardware_setup(pmusim_cfg.host_pt))
		pmusim_unexpected("hardware_setup: pt_mode is neither 0 nor 1 (-EINVAL: kvm_intel does not load)");
	pmusim_x86_ops_update(pmusim_vmx_init_ops());

	/* KVM_CREATE_VM: kvm_arch_init_vm()'s kvm->arch.enable_pmu = enable_pmu */
	kvm = pmusim_zalloc(pmusim_kvm_size());
	kvm->arch.enable_pmu = enable_pmu;

	/* KVM_CREATE_VCPU: kvm_arch_vcpu_create()'s kvm_pmu_init() (intel_pmu_init,
	 * then a refresh without CPUID) */
	vcpu = pmusim_zalloc(pmusim_vcpu_size());
	vcpu->kvm = kvm;
	kvm_pmu_init(vcpu);
	pmusim_vmx_init_vmcs_pt(vcpu);

	/* KVM_SET_CPUID2: kvm_set_cpuid() stores the entries, kvm_vcpu_after_set_cpuid()
	 * refreshes the PMU (and vmx_vcpu_after_set_cpuid() the PT configuration) */
	vcpu->arch.cpuid_nent = guest_cpuid();
	vcpu->arch.cpuid_entries = guest_cpuid_tab;
	/* kvm_vcpu_after_set_cpuid()'s two lines for the guest's physical address width
	 * (cpuid.c's own functions; no leaf 0x80000008 here: 36 bits, as the kernel's
	 * cpuid_query_maxphyaddr() decides), read by vmx_set_msr's RTIT_OUTPUT_BASE check */
	vcpu->arch.maxphyaddr = cpuid_query_maxphyaddr(vcpu);
	vcpu->arch.reserved_gpa_bits = kvm_vcpu_reserved_gpa_bits_raw(vcpu);
	pmusim_vmx_after_set_cpuid(vcpu);
	kvm_pmu_refresh(vcpu);
}

int pmusim_msr(int op, unsigned int msr, unsigned long long *value)
{
	u64 v = *value;
	int r;

	switch (op) {
	case PMUSIM_GUEST_RDMSR:
		r = pmusim_guest_rdmsr(vcpu, msr, &v);
		break;
	case PMUSIM_GUEST_WRMSR:
		r = pmusim_guest_wrmsr(vcpu, msr, v);
		break;
	case PMUSIM_HOST_GET:
		r = pmusim_host_get(vcpu, msr, &v);
		break;
	case PMUSIM_HOST_SET:
		r = pmusim_host_set(vcpu, msr, &v);
		break;
	case PMUSIM_FEATURE_GET:
		r = pmusim_feature_get(msr, &v);
		break;
	default:
		pmusim_unexpected("bad op");
	}
	*value = v;
	return r;
}
