/* SPDX-License-Identifier: GPL-2.0 */
/*
 * pmusim: the plain-C interface between the hosted side (pmusim.c: op-script
 * reader, JSON events) and the side compiled against the kernel's headers
 * (bridge_x86.c, bridge_vmx.c, kshim.c).  Only basic C types here: both
 * sides include it.
 */
#ifndef PMUSIM_API_H
#define PMUSIM_API_H

/* What the shim pretends about the host and what user space configures. */
struct pmusim_cfg {
	int intel;                      /* boot_cpu_data.x86_vendor (only intel is compiled) */
	unsigned long long host_perf_caps;   /* rdmsrl(MSR_IA32_PERF_CAPABILITIES) */
	int host_pdcm;                  /* boot_cpu_has(X86_FEATURE_PDCM) */
	int host_pebs;                  /* boot_cpu_has(X86_FEATURE_PEBS) (and DS, DTES64) */
	int host_pebs_ept;              /* x86_pmu_capability.pebs_ept */
	int host_pt;                    /* X86_FEATURE_INTEL_PT; VMX: MISC.INTEL_PT, PT_USE_GPA, RTIT_CTL load/clear */
	int host_pebs_output_pt;        /* x86_pmu.intel_cap.pebs_output_pt_available (not read by 6.1 KVM) */
	int host_arch_lbr;              /* X86_FEATURE_ARCH_LBR */
	int host_lbr_nr;                /* x86_perf_get_lbr(): nr (from/to/info of Skylake: 0x680/0x6c0/0xdc0) */
	int host_rtm;                   /* X86_FEATURE_HLE and X86_FEATURE_RTM */
	int host_pmu_version, host_gp, host_fixed;   /* perf_get_x86_pmu_capability() */
	int host_model;                 /* boot_cpu_data.x86_model (cpuid_model_is_consistent) */
	int pt_mode;                    /* kvm_intel.pt_mode module parameter (0 system, 1 host_guest) */
	int enable_pmu;                 /* kvm.enable_pmu module parameter */
	/* guest CPUID as user space set it (KVM_SET_CPUID2) */
	int pdcm, pt, ds, dtes64;
	int pmu_version, gp, fixed;
	int guest_model;                /* CPUID.1:EAX model (family 6) */
};

enum pmusim_op { PMUSIM_GUEST_RDMSR, PMUSIM_GUEST_WRMSR, PMUSIM_HOST_GET, PMUSIM_HOST_SET,
		 PMUSIM_FEATURE_GET };

extern struct pmusim_cfg pmusim_cfg;

/* kernel side */
void pmusim_setup(void);                /* module load, VM and vCPU creation, KVM_SET_CPUID2 */
int pmusim_msr(int op, unsigned int msr, unsigned long long *value);   /* the kernel's return */
/* hosted side, called by the shim */
void pmusim_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void pmusim_unexpected(const char *what) __attribute__((noreturn));
#endif
