// SPDX-License-Identifier: GPL-2.0
/*
 * pmusim bridge: #includes the kernel's arch/x86/kvm/vmx/vmx.c whole (the
 * builder passes its path as PMUSIM_VMX_C) so that its static functions
 * (vmx_get_msr, vmx_set_msr, vmx_get_msr_feature, vmx_get_perf_capabilities,
 * update_intel_pt_cfg, vmx_init_ops) are reachable, and exports plain
 * entry points.
 */
#include PMUSIM_VMX_C

/* hardware_setup()'s PT mode rule, vmx.c (the function itself needs a real
 * VMX: setup_vmcs_config):
 *	if (pt_mode != PT_MODE_SYSTEM && pt_mode != PT_MODE_HOST_GUEST)
 *		return -EINVAL;
 *	if (!enable_ept || !enable_pmu || !cpu_has_vmx_intel_pt())
 *		pt_mode = PT_MODE_SYSTEM;
 * with the tree's own cpu_has_vmx_intel_pt() over the vmcs_config the shim
 * fills from host_pt (VMX_MISC.INTEL_PT, PT_USE_GPA, the RTIT_CTL entry/exit
 * controls: a host with PT that KVM can hand to a guest). */
int pmusim_vmx_hardware_setup(int host_pt)
{
	memset(&vmcs_config, 0, sizeof(vmcs_config));
	if (host_pt) {
		/* setup_vmcs_config(): vmcs_conf->misc = rdmsrl(MSR_IA32_VMX_MISC) */
		vmcs_config.misc = MSR_IA32_VMX_MISC_INTEL_PT;
		vmcs_config.cpu_based_2nd_exec_ctrl |= SECONDARY_EXEC_PT_USE_GPA;
		vmcs_config.vmexit_ctrl |= VM_EXIT_CLEAR_IA32_RTIT_CTL;
		vmcs_config.vmentry_ctrl |= VM_ENTRY_LOAD_IA32_RTIT_CTL;
	}
	if (pt_mode != PT_MODE_SYSTEM && pt_mode != PT_MODE_HOST_GUEST)
		return -EINVAL;
	if (!enable_ept || !enable_pmu || !cpu_has_vmx_intel_pt())
		pt_mode = PT_MODE_SYSTEM;
	/* vmx_set_cpu_caps(): the PERF_CAPABILITIES KVM supports */
	kvm_caps.supported_perf_cap = vmx_get_perf_capabilities();
	return 0;
}

struct kvm_x86_init_ops *pmusim_vmx_init_ops(void)
{
	return &vmx_init_ops;
}

unsigned long pmusim_vcpu_size(void)
{
	return sizeof(struct vcpu_vmx);
}

unsigned long pmusim_kvm_size(void)
{
	return sizeof(struct kvm_vmx);
}

/* init_vmcs() (from vmx_vcpu_reset() at KVM_CREATE_VCPU): its PT part, the only part
 * that is not a VMCS write: "Bit[6~0] are forced to 1, writes are ignored." */
void pmusim_vmx_init_vmcs_pt(struct kvm_vcpu *vcpu)
{
	struct vcpu_vmx *vmx = to_vmx(vcpu);

	if (vmx_pt_mode_is_host_guest()) {
		memset(&vmx->pt_desc, 0, sizeof(vmx->pt_desc));
		vmx->pt_desc.guest.output_mask = 0x7F;
	}
}

/* vmx_vcpu_after_set_cpuid(): the PT part (the rest writes the VMCS) */
void pmusim_vmx_after_set_cpuid(struct kvm_vcpu *vcpu)
{
	if (vmx_pt_mode_is_host_guest())
		update_intel_pt_cfg(vcpu);
}
