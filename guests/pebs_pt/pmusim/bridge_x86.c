// SPDX-License-Identifier: GPL-2.0
/*
 * pmusim bridge: #includes the kernel's arch/x86/kvm/x86.c whole (the
 * builder passes its path as PMUSIM_X86_C) so that its static MSR paths
 * (kvm_get_msr_with_filter / kvm_set_msr_with_filter: what
 * kvm_emulate_rdmsr/wrmsr call for a guest RDMSR/WRMSR exit; do_get_msr /
 * do_set_msr: KVM_GET_MSRS / KVM_SET_MSRS on a vCPU; do_get_msr_feature:
 * KVM_GET_MSRS on /dev/kvm; kvm_ops_update: module load) are reachable.
 */
#include PMUSIM_X86_C

int pmusim_guest_rdmsr(struct kvm_vcpu *vcpu, u32 index, u64 *data)
{
	return kvm_get_msr_with_filter(vcpu, index, data);
}

int pmusim_guest_wrmsr(struct kvm_vcpu *vcpu, u32 index, u64 data)
{
	return kvm_set_msr_with_filter(vcpu, index, data);
}

int pmusim_host_get(struct kvm_vcpu *vcpu, u32 index, u64 *data)
{
	return do_get_msr(vcpu, index, data);
}

int pmusim_host_set(struct kvm_vcpu *vcpu, u32 index, u64 *data)
{
	return do_set_msr(vcpu, index, data);
}

int pmusim_feature_get(u32 index, u64 *data)
{
	return do_get_msr_feature(NULL, index, data);
}

/* kvm_arch_hardware_setup() before ops->hardware_setup() (the PMU part) */
void pmusim_x86_pmu_capability(void)
{
	kvm_init_pmu_capability();
}

/* kvm_arch_hardware_setup() after ops->hardware_setup() */
void pmusim_x86_ops_update(struct kvm_x86_init_ops *ops)
{
	kvm_ops_update(ops);
}
