"""Reference model of KVM's guest PMU MSRs around PEBS and Intel PT (Linux 6.1).

`predict(script, profile)` returns the events the harness-side program
`guests/pebs_pt/pmusim` prints for an op-script (docs/pebs-pt-suite.md section 2),
without the "script" tag and the "done" marker: one
`{"op": "result", "step": i, "result": "ok" | "fault" | "refused", "value": n | None}`
per action (`value`: what an ok read returned; None for writes, faults, refusals).
The script is normalised by `harness.payloads.pebs_pt.normalise` (every key present).

The model mirrors Debian's linux-source-6.1 (6.1.192):
arch/x86/kvm/vmx/pmu_intel.c (intel_is_valid_msr, intel_msr_idx_to_pmc,
intel_pmu_get_msr, intel_pmu_set_msr, intel_pmu_refresh, intel_pmu_init),
arch/x86/kvm/pmu.h (get_gp_pmc, get_fixed_pmc, pmc_read_counter, pmc_write_counter,
kvm_valid_perf_global_ctrl), arch/x86/kvm/pmu.c (kvm_pmu_is_valid_msr),
arch/x86/kvm/vmx/vmx.c (vmx_get_perf_capabilities, vmx_get_msr_feature, vmx_get_msr,
vmx_set_msr, vmx_rtit_ctl_check, update_intel_pt_cfg, init_vmcs),
arch/x86/kvm/svm/svm.c (svm_get_msr_feature), arch/x86/kvm/svm/pmu.c
(amd_is_valid_msr, amd_msr_idx_to_pmc), arch/x86/kvm/x86.c (kvm_get_msr_feature,
do_get_msr_feature, kvm_set_msr_common, kvm_get_msr_common, kvm_is_msr_to_save,
kvm_init_msr_list, kvm_get_msr_ignored_check, kvm_set_msr_ignored_check,
kvm_msr_ignored_check) and arch/x86/kvm/cpuid.c (kvm_vcpu_after_set_cpuid,
cpuid_query_maxphyaddr). Every branch that decides an observable outcome calls
`hit()` with a rule id `<file>:<function>:<branch>` (harness/reference/rules.py).

What a script's run is (the program's fixed sequence): kvm_intel (or kvm_amd) hardware
setup with the script's host facts, KVM_CREATE_VM, KVM_CREATE_VCPU (intel_pmu_init:
vcpu->arch.perf_capabilities = kvm_caps.supported_perf_cap; init_vmcs: the PT context
zeroed, RTIT_OUTPUT_MASK 0x7f), one KVM_SET_CPUID2 from the script's cpu facts
(kvm_vcpu_after_set_cpuid: kvm_pmu_refresh, then update_intel_pt_cfg), then the
actions: guest_rdmsr/guest_wrmsr through kvm_get_msr_with_filter/kvm_set_msr_with_filter
(host_initiated false; no MSR filter; ignore_msrs=0, so a non-zero return is #GP),
host_get/host_set through KVM_GET_MSRS/KVM_SET_MSRS on the vCPU (host_initiated; a
non-zero return stops msr_io: refused), feature_get through KVM_GET_MSRS on /dev/kvm
(do_get_msr_feature).

Inputs beyond section 2's line format, which pmusim reads as extra S keys
(guests/pebs_pt/pmusim/pmusim.c) and the codec always sends: `ds`, `dtes64` (guest
CPUID.1 DS/DTES64), `pt_mode` (kvm_intel.pt_mode; host-guest only with `host_pt`, as
vmx.c hardware_setup() decides), `host_gp`, `host_fixed` (perf_get_x86_pmu_capability()).
Facts pmusim's shim fixes (kshim.c; SHIM below): host PMU version 5 and 48-bit counters,
host PDCM, pebs_ept == host_pebs (vmx_pebs_supported() == host_pebs), no architectural
LBR and x86_perf_get_lbr() with no records (the LBR format bits 5:0 never reach
kvm_caps.supported_perf_cap), no TSX, guest and host CPUID model 0
(cpuid_model_is_consistent), the guest leaf 0xA bit widths 48, leaf 0x14 (with `pt`)
PT_CAPS, no leaf 0x80000008 (cpuid_query_maxphyaddr: 36), no nested VMXON, perf refusing
every counter (no observable effect on the MSRs), and no PMU MSR in msrs_to_save
(host_msrs). host_pebs_output_pt is read by no 6.1 code.

Profiles:
  "6.1"     what the Debian 6.1 code does: PEBS via DS only (PEBS_ENABLE, DS_AREA,
            PEBS_DATA_CFG under their conditions), PERF_CAPABILITIES bit 16 never
            reported (vmx_get_perf_capabilities copies only PERF_CAP_PEBS_MASK, and
            masks PERF_CAP_PEBS_BASELINE), the reload MSRs unknown to KVM (#GP /
            refused), the RTIT MSRs only with pt_mode host-guest;
  "series"  the PEBS-via-PT series as /work/shared/specs/pebs_pt.md describes it (the
            posted patches are in no tree here): vmx_get_perf_capabilities adds bit 16
            when the host has PEBS-via-PT (host_pebs_output_pt) and pt_mode is
            host-guest; intel_pmu_refresh keeps it in the vCPU's PERF_CAPABILITIES only
            when the guest CPUID has PT (pebs_via_pt), and then accepts the output bits
            (61 PEBS_OUTPUT_PT, 60 PMI after each record) in PEBS_ENABLE and makes
            MSR_RELOAD_PMC0+i / MSR_RELOAD_FIXED_CTR0+i valid for the vCPU's counters;
            vmx_set_msr refuses a PERF_CAPABILITIES with bit 16 without guest PT.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from harness.reference.rules import hit

PROFILES: tuple[str, ...] = ("6.1", "series")

U64 = (1 << 64) - 1

# ---------------------------------------------------------------- MSRs (arch/x86/include/asm/msr-index.h)
MSR_IA32_PERFCTR0 = 0xC1            # == MSR_P6_PERFCTR0
MSR_P6_PERFCTR0, MSR_P6_PERFCTR1 = 0xC1, 0xC2
MSR_P6_EVNTSEL0, MSR_P6_EVNTSEL1 = 0x186, 0x187
MSR_IA32_PMC0 = 0x4C1
MSR_CORE_PERF_FIXED_CTR0 = 0x309
MSR_CORE_PERF_FIXED_CTR_CTRL = 0x38D
MSR_CORE_PERF_GLOBAL_STATUS = 0x38E
MSR_CORE_PERF_GLOBAL_CTRL = 0x38F
MSR_CORE_PERF_GLOBAL_OVF_CTRL = 0x390
MSR_IA32_PERF_CAPABILITIES = 0x345
MSR_IA32_PEBS_ENABLE = 0x3F1
MSR_PEBS_DATA_CFG = 0x3F2
MSR_IA32_DS_AREA = 0x600
MSR_IA32_RTIT_OUTPUT_BASE = 0x560
MSR_IA32_RTIT_OUTPUT_MASK = 0x561
MSR_IA32_RTIT_CTL = 0x570
MSR_IA32_RTIT_STATUS = 0x571
MSR_IA32_RTIT_CR3_MATCH = 0x572
MSR_IA32_RTIT_ADDR0_A = 0x580
MSR_IA32_RTIT_ADDR3_B = 0x587
MSR_RELOAD_PMC0 = 0x14C1
MSR_RELOAD_FIXED_CTR0 = 0x1309
MSR_PMC_FULL_WIDTH_BIT = MSR_IA32_PMC0 - MSR_IA32_PERFCTR0       # pmu_intel.c

KVM_INTEL_PMC_MAX_GENERIC = 8       # asm/kvm_host.h
KVM_PMC_MAX_FIXED = 3
INTEL_PMC_IDX_FIXED = 32            # asm/perf_event.h
MAX_RELOAD_FIXED = 4                # the spec's MSR_RELOAD_FIXED_CTR0..3

# the MSRs the model covers (the codec refuses others), by name for cases and messages
MSR_NAMES: dict[int, str] = {
    MSR_IA32_PERF_CAPABILITIES: "PERF_CAPABILITIES", MSR_IA32_PEBS_ENABLE: "PEBS_ENABLE",
    MSR_PEBS_DATA_CFG: "PEBS_DATA_CFG", MSR_IA32_DS_AREA: "DS_AREA",
    MSR_IA32_RTIT_OUTPUT_BASE: "RTIT_OUTPUT_BASE", MSR_IA32_RTIT_OUTPUT_MASK: "RTIT_OUTPUT_MASK",
    MSR_IA32_RTIT_CTL: "RTIT_CTL", MSR_IA32_RTIT_STATUS: "RTIT_STATUS",
    MSR_IA32_RTIT_CR3_MATCH: "RTIT_CR3_MATCH",
    **{MSR_IA32_RTIT_ADDR0_A + i: f"RTIT_ADDR{i // 2}_{'AB'[i % 2]}" for i in range(8)},
    **{MSR_RELOAD_PMC0 + i: f"RELOAD_PMC{i}" for i in range(KVM_INTEL_PMC_MAX_GENERIC)},
    **{MSR_RELOAD_FIXED_CTR0 + i: f"RELOAD_FIXED_CTR{i}" for i in range(MAX_RELOAD_FIXED)},
    **{MSR_IA32_PERFCTR0 + i: f"PERFCTR{i}" for i in range(KVM_INTEL_PMC_MAX_GENERIC)},
    **{MSR_IA32_PMC0 + i: f"PMC{i}" for i in range(KVM_INTEL_PMC_MAX_GENERIC)},
    **{MSR_P6_EVNTSEL0 + i: f"EVNTSEL{i}" for i in range(KVM_INTEL_PMC_MAX_GENERIC)},
    **{MSR_CORE_PERF_FIXED_CTR0 + i: f"FIXED_CTR{i}" for i in range(KVM_PMC_MAX_FIXED + 1)},
    MSR_CORE_PERF_FIXED_CTR_CTRL: "FIXED_CTR_CTRL", MSR_CORE_PERF_GLOBAL_STATUS: "GLOBAL_STATUS",
    MSR_CORE_PERF_GLOBAL_CTRL: "GLOBAL_CTRL", MSR_CORE_PERF_GLOBAL_OVF_CTRL: "GLOBAL_OVF_CTRL",
}
MSRS: tuple[int, ...] = tuple(sorted(MSR_NAMES))

# ---------------------------------------------------------------- bits
PMU_CAP_LBR_FMT = 0x3F              # vmx/capabilities.h
PERF_CAP_PEBS_TRAP = 1 << 6         # asm/msr-index.h
PERF_CAP_ARCH_REG = 1 << 7
PERF_CAP_PEBS_FORMAT = 0xF00
PMU_CAP_FW_WRITES = 1 << 13
PERF_CAP_PEBS_BASELINE = 1 << 14
PERF_CAP_METRICS = 1 << 15
PERF_CAP_PT = 1 << 16               # PERF_CAP_PT_IDX
PERF_CAP_PEBS_MASK = PERF_CAP_PEBS_TRAP | PERF_CAP_ARCH_REG | PERF_CAP_PEBS_FORMAT | PERF_CAP_PEBS_BASELINE
PEBS_PMI_AFTER_EACH_RECORD = 1 << 60   # arch/x86/events/perf_event.h
PEBS_OUTPUT_PT = 1 << 61
OVF_BUF, COND_CHGD, TRACE_TOPA_PMI = 1 << 62, 1 << 63, 1 << 55
ICL_EVENTSEL_ADAPTIVE = 1 << 34

RTIT_CTL_TRACEEN, RTIT_CTL_CYCLEACC, RTIT_CTL_OS, RTIT_CTL_USR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
RTIT_CTL_PWR_EVT_EN, RTIT_CTL_FUP_ON_PTW, RTIT_CTL_FABRIC_EN, RTIT_CTL_CR3EN = 1 << 4, 1 << 5, 1 << 6, 1 << 7
RTIT_CTL_TOPA, RTIT_CTL_MTC_EN, RTIT_CTL_TSC_EN, RTIT_CTL_DISRETC = 1 << 8, 1 << 9, 1 << 10, 1 << 11
RTIT_CTL_PTW_EN, RTIT_CTL_BRANCH_EN = 1 << 12, 1 << 13
RTIT_CTL_MTC_RANGE, RTIT_CTL_CYC_THRESH, RTIT_CTL_PSB_FREQ = 0xF << 14, 0xF << 19, 0xF << 24
RTIT_STATUS_ALLOWED = (1 << 0) | (1 << 1) | (1 << 2) | (1 << 4) | (1 << 5) | (0x1FFFF << 32)
MSR_IA32_RTIT_STATUS_MASK = ~RTIT_STATUS_ALLOWED & U64   # vmx.c (BUFFOVF, bit 3, is reserved)

# ---------------------------------------------------------------- what the shim fixes
SHIM = {
    "host_bit_width": 48,                                    # perf_get_x86_pmu_capability()
    "guest_bit_width": 48, "guest_bit_width_fixed": 48,      # guest CPUID.0xA EAX[23:16], EDX[12:5]
    "lbr_nr": 0,                                             # x86_perf_get_lbr(): no LBR records
    "maxphyaddr": 36,                                        # cpuid_query_maxphyaddr(): no 0x80000008
    "virt_addr_bits": 48,                                    # vcpu_virt_addr_bits(): no LA57
}
# the host's CPUID leaf 0x14, which the guest gets with `pt` (update_intel_pt_cfg reads it):
# subleaf 0 EBX: cr3_filtering psb_cyc ip_filtering mtc ptwrite power_event_trace;
# ECX: topa_output topa_multiple_entries single_range_output payloads_lip;
# subleaf 1 EAX: 2 address ranges, mtc_periods 0x249; EBX: cycle_thresholds 0x3fff, psb_periods 0x3f
PT_CAPS = {"ebx0": 0x3F, "ecx0": 0x80000007, "eax1": 0x02490002, "ebx1": 0x003F3FFF}
NO_PT_CAPS = {"ebx0": 0, "ecx0": 0, "eax1": 0, "ebx1": 0}


def host_msrs(cpu: dict) -> frozenset[int]:
    """msrs_to_save restricted to the modelled MSRs (x86.c: kvm_init_msr_list keeps the
    msrs_to_save_all entries the host's rdmsr_safe() reads). pmusim's host answers
    rdmsr_safe() only for PERF_CAPABILITIES, VMX_MISC, ARCH_CAPABILITIES, UCODE_REV and EFER
    (guests/pebs_pt/pmusim/kshim.c: host_msr), and its set-up does not run
    kvm_init_msr_list(): none of the PMU or RTIT MSRs is in msrs_to_save, so a host access
    to one the vCPU lacks is refused, as on a host without them. (A real PEBS host would keep
    PEBS_ENABLE, DS_AREA, the counters and GLOBAL_* there: host reads 0, writes of 0 accepted,
    kvm_get_msr_common/kvm_set_msr_common's msrs_to_save branches below.)"""
    return frozenset()


def _cap(caps: dict, reg: str, mask: int) -> int:
    """arch/x86/events/intel/pt.c: intel_pt_validate_cap()."""
    shift = (mask & -mask).bit_length() - 1
    return (caps[reg] & mask) >> shift


def _canonical(value: int, bits: int) -> bool:
    """arch/x86/kvm/x86.h: is_noncanonical_address() negated."""
    top = value >> (bits - 1)
    return top == 0 or top == (U64 >> (bits - 1))


class Vcpu:
    """One vCPU after KVM_SET_CPUID2, with the PMU and PT state the MSRs read and write."""

    def __init__(self, cpu: dict, profile: str):
        self.cpu = cpu
        self.series = profile == "series"
        self.intel = cpu["vendor"] == "intel"
        # vmx.c: hardware_setup(): pt_mode (kvm_intel.pt_mode) falls back to PT_MODE_SYSTEM
        # without cpu_has_vmx_intel_pt() (host_pt)
        self.pt_host_guest = self.intel and cpu["pt_mode"] == 1 and bool(cpu["host_pt"])
        self.pebs_supported = self.intel and bool(cpu["host_pebs"])  # capabilities.h: vmx_pebs_supported()
        self.guest_ds = bool(cpu["ds"])                              # guest CPUID.1:EDX[21]
        self.guest_dtes64 = bool(cpu["dtes64"])                      # guest CPUID.1:ECX[2]
        self.msrs_to_save = host_msrs(cpu)
        self.supported_perf_cap = self.get_perf_capabilities()
        # pmu_intel.c: intel_pmu_init(); svm: perf_capabilities never set (0)
        self.perf_capabilities = self.supported_perf_cap if self.intel else 0
        self.pmu = {"fixed_ctr_ctrl": 0, "global_status": 0, "global_ctrl": 0, "pebs_enable": 0,
                    "ds_area": 0, "pebs_data_cfg": 0}
        self.counter = {}          # ("gp" | "fixed", i) -> counter
        self.eventsel = {}         # i -> eventsel
        self.reload = {}           # ("gp" | "fixed", i) -> reload value (series)
        # vmx.c: init_vmcs(): memset(&vmx->pt_desc, 0), output_mask = 0x7F (host-guest mode)
        self.pt = {"ctl": 0, "status": 0, "cr3_match": 0, "output_base": 0,
                   "output_mask": 0x7F if self.pt_host_guest else 0, "addr": [0] * 8}
        self.pt_caps = dict(NO_PT_CAPS)
        self.ctl_bitmask = 0
        self.num_address_ranges = 0
        # cpuid.c: kvm_vcpu_after_set_cpuid(): kvm_pmu_refresh() then the vendor hook
        self.refresh()
        if self.intel and cpu["host_pt"] and cpu["pt"]:
            # vmx.c: vmx_vcpu_after_set_cpuid(): boot_cpu_has(INTEL_PT) && guest has INTEL_PT
            hit("vmx.c:vmx_vcpu_after_set_cpuid:update-intel-pt-cfg")
            self.update_intel_pt_cfg()
        else:
            hit("vmx.c:vmx_vcpu_after_set_cpuid:no-pt-cfg")

    # ------------------------------------------------------------ set-up
    def get_perf_capabilities(self) -> int:
        if not self.intel:
            hit("svm.c:svm_hardware_setup:no-perf-cap")      # kvm_caps.supported_perf_cap = 0
            return 0
        # vmx.c: vmx_get_perf_capabilities()
        perf_cap = PMU_CAP_FW_WRITES
        host = self.cpu["host_perf_caps"]                    # boot_cpu_has(PDCM): rdmsrl
        if SHIM["lbr_nr"]:
            hit("vmx.c:vmx_get_perf_capabilities:lbr-fmt")
            perf_cap |= host & PMU_CAP_LBR_FMT
        else:
            hit("vmx.c:vmx_get_perf_capabilities:no-lbr")
        if self.pebs_supported:
            hit("vmx.c:vmx_get_perf_capabilities:pebs")
            perf_cap |= host & PERF_CAP_PEBS_MASK
            perf_cap &= ~PERF_CAP_PEBS_BASELINE             # adaptive PEBS disallowed
        else:
            hit("vmx.c:vmx_get_perf_capabilities:no-pebs")
        if self.series and self.pebs_supported and self.cpu["host_pebs_output_pt"] and self.pt_host_guest:
            # series: vmx_get_perf_capabilities() reports PEBS output to PT
            hit("vmx.c:vmx_get_perf_capabilities:series-pebs-output-pt")
            perf_cap |= PERF_CAP_PT
        return perf_cap

    def vcpu_perf_caps(self) -> int:
        """pmu_intel.c: vcpu_get_perf_capabilities(): 0 without PDCM in guest CPUID."""
        if not self.cpu["pdcm"]:
            hit("pmu_intel.c:vcpu_get_perf_capabilities:no-pdcm")
            return 0
        hit("pmu_intel.c:vcpu_get_perf_capabilities:pdcm")
        return self.perf_capabilities

    def refresh(self) -> None:
        self.nr_gp = self.nr_fixed = 0
        self.bitmask = {"gp": 0, "fixed": 0}
        self.version = 0
        self.reserved_bits = 0xFFFFFFFF00200000
        self.global_ctrl_mask = self.global_ovf_ctrl_mask = U64
        self.fixed_ctr_ctrl_mask = self.pebs_enable_mask = self.pebs_data_cfg_mask = U64
        self.pebs_via_pt = False
        if not self.intel:
            # svm/pmu.c: amd_pmu_refresh(): none of the Intel PMU MSRs (amd_is_valid_msr: false)
            hit("pmu.c:amd_pmu_refresh:amd")
            return
        if self.series:
            # series: intel_pmu_refresh() keeps PEBS output to PT in the vCPU's PERF_CAPABILITIES
            # only with PT in the guest (pebs_via_pt); first, so a guest without a PMU loses it too
            if (self.vcpu_perf_caps() & PERF_CAP_PT) and self.cpu["pt"] and self.pt_host_guest:
                hit("pmu_intel.c:intel_pmu_refresh:series-pebs-via-pt")
                self.pebs_via_pt = bool(self.vcpu_perf_caps() & PERF_CAP_PEBS_FORMAT)
            else:
                hit("pmu_intel.c:intel_pmu_refresh:series-no-pebs-via-pt")
                self.perf_capabilities &= ~PERF_CAP_PT
        # pmu_intel.c: intel_pmu_refresh()
        self.version = self.cpu["pmu_version"]
        if not self.version:
            hit("pmu_intel.c:intel_pmu_refresh:version-0")
            return
        self.nr_gp = min(self.cpu["gp_counters"], self.cpu["host_gp"], KVM_INTEL_PMC_MAX_GENERIC)
        self.bitmask["gp"] = (1 << min(SHIM["guest_bit_width"], SHIM["host_bit_width"])) - 1
        if self.version == 1:
            hit("pmu_intel.c:intel_pmu_refresh:version-1-no-fixed")
        else:
            hit("pmu_intel.c:intel_pmu_refresh:fixed")
            # kvm_pmu_cap.num_counters_fixed is clamped to KVM_PMC_MAX_FIXED (pmu.h: kvm_init_pmu_capability)
            self.nr_fixed = min(KVM_PMC_MAX_FIXED, self.cpu["fixed_counters"], self.cpu["host_fixed"])
            self.bitmask["fixed"] = (1 << min(SHIM["guest_bit_width_fixed"], SHIM["host_bit_width"])) - 1
        for i in range(self.nr_fixed):
            self.fixed_ctr_ctrl_mask &= ~(0xB << (i * 4))
        counter_mask = ~(((1 << self.nr_gp) - 1) | (((1 << self.nr_fixed) - 1) << INTEL_PMC_IDX_FIXED)) & U64
        self.global_ctrl_mask = counter_mask
        self.global_ovf_ctrl_mask = counter_mask & ~(OVF_BUF | COND_CHGD)
        if self.pt_host_guest:
            hit("pmu_intel.c:intel_pmu_refresh:pt-host-guest-topa-pmi")
            self.global_ovf_ctrl_mask &= ~TRACE_TOPA_PMI
        perf_caps = self.vcpu_perf_caps()
        if perf_caps & PERF_CAP_PEBS_FORMAT:
            if perf_caps & PERF_CAP_PEBS_BASELINE:
                # unreachable in 6.1.192 (vmx_get_perf_capabilities masks the baseline bit and
                # kvm_set_msr_common refuses bits outside it); kept as the code has it
                hit("pmu_intel.c:intel_pmu_refresh:pebs-baseline")
                self.pebs_enable_mask = counter_mask
                self.reserved_bits &= ~ICL_EVENTSEL_ADAPTIVE
                for i in range(self.nr_fixed):
                    self.fixed_ctr_ctrl_mask &= ~(1 << (INTEL_PMC_IDX_FIXED + i * 4))
                self.pebs_data_cfg_mask = ~0xFF00000F & U64
            else:
                hit("pmu_intel.c:intel_pmu_refresh:pebs-gp-only")
                self.pebs_enable_mask = ~((1 << self.nr_gp) - 1) & U64
            if self.pebs_via_pt:
                # series: intel_pmu_refresh(): PEBS_ENABLE's output bits accepted with pebs_via_pt
                hit("pmu_intel.c:intel_pmu_refresh:series-pebs-output-bits")
                self.pebs_enable_mask &= ~(PEBS_OUTPUT_PT | PEBS_PMI_AFTER_EACH_RECORD)
        else:
            hit("pmu_intel.c:intel_pmu_refresh:no-pebs")
            self.pebs_via_pt = False

    def update_intel_pt_cfg(self) -> None:
        # vmx.c: update_intel_pt_cfg()
        caps = self.pt_caps = dict(PT_CAPS)
        self.num_address_ranges = _cap(caps, "eax1", 0x7)
        mask = ~(RTIT_CTL_TRACEEN | RTIT_CTL_OS | RTIT_CTL_USR | RTIT_CTL_TSC_EN | RTIT_CTL_DISRETC
                 | RTIT_CTL_BRANCH_EN) & U64
        for cap_reg, cap_mask, bits in (
                ("ebx0", 1 << 0, RTIT_CTL_CR3EN),
                ("ebx0", 1 << 1, RTIT_CTL_CYCLEACC | RTIT_CTL_CYC_THRESH | RTIT_CTL_PSB_FREQ),
                ("ebx0", 1 << 3, RTIT_CTL_MTC_EN | RTIT_CTL_MTC_RANGE),
                ("ebx0", 1 << 4, RTIT_CTL_FUP_ON_PTW | RTIT_CTL_PTW_EN),
                ("ebx0", 1 << 5, RTIT_CTL_PWR_EVT_EN),
                ("ecx0", 1 << 0, RTIT_CTL_TOPA),
                ("ecx0", 1 << 3, RTIT_CTL_FABRIC_EN)):
            if _cap(caps, cap_reg, cap_mask):  # not a rule: PT_CAPS is fixed; the ctl checks rule
                mask &= ~bits
        for i in range(self.num_address_ranges):
            mask &= ~(0xF << (32 + i * 4))
        self.ctl_bitmask = mask

    # ------------------------------------------------------------ PMU lookups (pmu.h)
    def gp(self, msr: int, base: int) -> int | None:
        """pmu.h: get_gp_pmc()."""
        return msr - base if base <= msr < base + self.nr_gp else None

    def fixed(self, msr: int) -> int | None:
        """pmu.h: get_fixed_pmc()."""
        return msr - MSR_CORE_PERF_FIXED_CTR0 if 0 <= msr - MSR_CORE_PERF_FIXED_CTR0 < self.nr_fixed else None

    def fw_gp(self, msr: int) -> int | None:
        """pmu_intel.c: get_fw_gp_pmc(): only with full-width writes in PERF_CAPABILITIES."""
        if not self.vcpu_perf_caps() & PMU_CAP_FW_WRITES:
            return None
        return self.gp(msr, MSR_IA32_PMC0)

    def reload_idx(self, msr: int) -> tuple[str, int] | None:
        if 0 <= msr - MSR_RELOAD_PMC0 < self.nr_gp:  # not a rule: index arithmetic; the callers rule
            return ("gp", msr - MSR_RELOAD_PMC0)
        if 0 <= msr - MSR_RELOAD_FIXED_CTR0 < self.nr_fixed:  # not a rule: index arithmetic
            return ("fixed", msr - MSR_RELOAD_FIXED_CTR0)
        return None

    def read_counter(self, kind: str, i: int) -> int:
        """pmu.h: pmc_read_counter() (the shim's perf events count nothing)."""
        return self.counter.get((kind, i), 0) & self.bitmask[kind]

    def write_counter(self, kind: str, i: int, val: int) -> None:
        """pmu.h: pmc_write_counter()."""
        c = self.counter.get((kind, i), 0)
        self.counter[(kind, i)] = (c + val - self.read_counter(kind, i)) & self.bitmask[kind]

    def is_valid_msr(self, msr: int) -> bool:
        """pmu.c: kvm_pmu_is_valid_msr(): msr_idx_to_pmc || is_valid_msr."""
        if not self.intel:
            hit("pmu.c:kvm_pmu_is_valid_msr:amd-none")      # amd_msr_idx_to_pmc: K7/F15H MSRs only
            return False
        # pmu_intel.c: intel_msr_idx_to_pmc()
        if (self.fixed(msr) is not None or self.gp(msr, MSR_P6_EVNTSEL0) is not None
                or self.gp(msr, MSR_IA32_PERFCTR0) is not None):
            hit("pmu_intel.c:intel_msr_idx_to_pmc:pmc")
            return True
        # pmu_intel.c: intel_is_valid_msr()
        if msr in (MSR_CORE_PERF_FIXED_CTR_CTRL, MSR_CORE_PERF_GLOBAL_STATUS, MSR_CORE_PERF_GLOBAL_CTRL,
                   MSR_CORE_PERF_GLOBAL_OVF_CTRL):
            hit("pmu_intel.c:intel_is_valid_msr:global-ctrl-version")
            return self.version > 1                          # intel_pmu_has_perf_global_ctrl()
        if msr == MSR_IA32_PEBS_ENABLE:
            hit("pmu_intel.c:intel_is_valid_msr:pebs-enable-format")
            return bool(self.vcpu_perf_caps() & PERF_CAP_PEBS_FORMAT)
        if msr == MSR_IA32_DS_AREA:
            hit("pmu_intel.c:intel_is_valid_msr:ds-area-cpuid-ds")
            return self.guest_ds
        if msr == MSR_PEBS_DATA_CFG:
            caps = self.vcpu_perf_caps()
            hit("pmu_intel.c:intel_is_valid_msr:pebs-data-cfg-baseline")
            return bool(caps & PERF_CAP_PEBS_BASELINE) and (caps & PERF_CAP_PEBS_FORMAT) > 0x300
        if self.series and self.reload_idx(msr) is not None:
            # series: intel_is_valid_msr(): MSR_RELOAD_PMC0.. / MSR_RELOAD_FIXED_CTR0.. with pebs_via_pt
            hit("pmu_intel.c:intel_is_valid_msr:series-reload")
            return self.pebs_via_pt
        if self.fw_gp(msr) is not None:
            hit("pmu_intel.c:intel_is_valid_msr:fw-gp")
            return True
        hit("pmu_intel.c:intel_is_valid_msr:invalid")       # LBR MSRs: none (lbr_nr 0)
        return False

    # ------------------------------------------------------------ pmu_intel.c get/set
    def pmu_get(self, msr: int) -> int | None:
        """pmu_intel.c: intel_pmu_get_msr(); None: returns 1."""
        if msr == MSR_CORE_PERF_FIXED_CTR_CTRL:
            hit("pmu_intel.c:intel_pmu_get_msr:fixed-ctr-ctrl")
            return self.pmu["fixed_ctr_ctrl"]
        if msr == MSR_CORE_PERF_GLOBAL_STATUS:
            hit("pmu_intel.c:intel_pmu_get_msr:global-status")
            return self.pmu["global_status"]
        if msr == MSR_CORE_PERF_GLOBAL_CTRL:
            hit("pmu_intel.c:intel_pmu_get_msr:global-ctrl")
            return self.pmu["global_ctrl"]
        if msr == MSR_IA32_PEBS_ENABLE:
            hit("pmu_intel.c:intel_pmu_get_msr:pebs-enable")
            return self.pmu["pebs_enable"]
        if msr == MSR_IA32_DS_AREA:
            hit("pmu_intel.c:intel_pmu_get_msr:ds-area")
            return self.pmu["ds_area"]
        if msr == MSR_PEBS_DATA_CFG:
            hit("pmu_intel.c:intel_pmu_get_msr:pebs-data-cfg")
            return self.pmu["pebs_data_cfg"]
        if msr == MSR_CORE_PERF_GLOBAL_OVF_CTRL:
            hit("pmu_intel.c:intel_pmu_get_msr:global-ovf-ctrl-zero")
            return 0
        if self.series and self.reload_idx(msr) is not None:
            hit("pmu_intel.c:intel_pmu_get_msr:series-reload")
            return self.reload.get(self.reload_idx(msr), 0)
        i = self.gp(msr, MSR_IA32_PERFCTR0)
        i = i if i is not None else self.gp(msr, MSR_IA32_PMC0)
        if i is not None:
            hit("pmu_intel.c:intel_pmu_get_msr:gp-counter")
            return self.read_counter("gp", i)
        if self.fixed(msr) is not None:
            hit("pmu_intel.c:intel_pmu_get_msr:fixed-counter")
            return self.read_counter("fixed", self.fixed(msr))
        if self.gp(msr, MSR_P6_EVNTSEL0) is not None:
            hit("pmu_intel.c:intel_pmu_get_msr:eventsel")
            return self.eventsel.get(self.gp(msr, MSR_P6_EVNTSEL0), 0)
        hit("pmu_intel.c:intel_pmu_get_msr:unhandled")     # intel_pmu_handle_lbr_msrs_access: no LBR
        return None

    def pmu_set(self, msr: int, data: int, host: bool) -> bool:
        """pmu_intel.c: intel_pmu_set_msr(); False: returns 1."""
        p = self.pmu
        if msr == MSR_CORE_PERF_FIXED_CTR_CTRL:
            if p["fixed_ctr_ctrl"] == data or not data & self.fixed_ctr_ctrl_mask:
                hit("pmu_intel.c:intel_pmu_set_msr:fixed-ctr-ctrl-ok")
                p["fixed_ctr_ctrl"] = data
                return True
            hit("pmu_intel.c:intel_pmu_set_msr:fixed-ctr-ctrl-reserved")
            return False
        if msr == MSR_CORE_PERF_GLOBAL_STATUS:
            if host:
                hit("pmu_intel.c:intel_pmu_set_msr:global-status-host")
                p["global_status"] = data
                return True
            hit("pmu_intel.c:intel_pmu_set_msr:global-status-read-only")
            return False
        if msr == MSR_CORE_PERF_GLOBAL_CTRL:
            if p["global_ctrl"] == data or not data & self.global_ctrl_mask:   # kvm_valid_perf_global_ctrl
                hit("pmu_intel.c:intel_pmu_set_msr:global-ctrl-ok")
                p["global_ctrl"] = data
                return True
            hit("pmu_intel.c:intel_pmu_set_msr:global-ctrl-reserved")
            return False
        if msr == MSR_CORE_PERF_GLOBAL_OVF_CTRL:
            if not data & self.global_ovf_ctrl_mask:
                hit("pmu_intel.c:intel_pmu_set_msr:global-ovf-ctrl-ok")
                if not host:  # not a rule: the status change is ruled by global-ovf-ctrl-ok's reads
                    p["global_status"] &= ~data
                return True
            hit("pmu_intel.c:intel_pmu_set_msr:global-ovf-ctrl-reserved")
            return False
        if msr == MSR_IA32_PEBS_ENABLE:
            if p["pebs_enable"] == data or not data & self.pebs_enable_mask:
                hit("pmu_intel.c:intel_pmu_set_msr:pebs-enable-ok")
                p["pebs_enable"] = data
                return True
            hit("pmu_intel.c:intel_pmu_set_msr:pebs-enable-reserved")
            return False
        if msr == MSR_IA32_DS_AREA:
            if host and data and not self.guest_ds:
                hit("pmu_intel.c:intel_pmu_set_msr:ds-area-host-no-ds")   # unreachable: valid needs DS
                return False
            if not _canonical(data, SHIM["virt_addr_bits"]):
                hit("pmu_intel.c:intel_pmu_set_msr:ds-area-noncanonical")
                return False
            hit("pmu_intel.c:intel_pmu_set_msr:ds-area-ok")
            p["ds_area"] = data
            return True
        if msr == MSR_PEBS_DATA_CFG:
            if p["pebs_data_cfg"] == data or not data & self.pebs_data_cfg_mask:
                hit("pmu_intel.c:intel_pmu_set_msr:pebs-data-cfg-ok")
                p["pebs_data_cfg"] = data
                return True
            hit("pmu_intel.c:intel_pmu_set_msr:pebs-data-cfg-reserved")
            return False
        if self.series and self.reload_idx(msr) is not None:
            idx = self.reload_idx(msr)
            # series: intel_pmu_set_msr(): a reload value wider than the counter is reserved
            if data & ~self.bitmask[idx[0]]:
                hit("pmu_intel.c:intel_pmu_set_msr:series-reload-too-wide")
                return False
            hit("pmu_intel.c:intel_pmu_set_msr:series-reload-ok")
            self.reload[idx] = data
            return True
        i = self.gp(msr, MSR_IA32_PERFCTR0)
        i = i if i is not None else self.gp(msr, MSR_IA32_PMC0)
        if i is not None:
            if (msr & MSR_PMC_FULL_WIDTH_BIT) and data & ~self.bitmask["gp"]:
                hit("pmu_intel.c:intel_pmu_set_msr:full-width-too-wide")
                return False
            if not host and not msr & MSR_PMC_FULL_WIDTH_BIT:
                hit("pmu_intel.c:intel_pmu_set_msr:gp-sign-extend-32")
                data = (data & 0xFFFFFFFF) | (U64 ^ 0xFFFFFFFF if data & 0x80000000 else 0)
            else:
                hit("pmu_intel.c:intel_pmu_set_msr:gp-full-value")
            self.write_counter("gp", i, data)
            return True
        if self.fixed(msr) is not None:
            hit("pmu_intel.c:intel_pmu_set_msr:fixed-counter")
            self.write_counter("fixed", self.fixed(msr), data)
            return True
        i = self.gp(msr, MSR_P6_EVNTSEL0)
        if i is not None:
            if data == self.eventsel.get(i, 0) or not data & self.reserved_bits:
                hit("pmu_intel.c:intel_pmu_set_msr:eventsel-ok")
                self.eventsel[i] = data
                return True
            hit("pmu_intel.c:intel_pmu_set_msr:eventsel-reserved")
            return False
        hit("pmu_intel.c:intel_pmu_set_msr:unhandled")
        return False

    # ------------------------------------------------------------ RTIT (vmx.c)
    def rtit_ctl_check(self, data: int) -> bool:
        """vmx.c: vmx_rtit_ctl_check(); True: #GP (returns 1)."""
        caps = self.pt_caps
        if data & self.ctl_bitmask:
            hit("vmx.c:vmx_rtit_ctl_check:reserved-bits")
            return True
        if (self.pt["ctl"] & RTIT_CTL_TRACEEN) and (self.pt["ctl"] ^ data) & ~RTIT_CTL_TRACEEN:
            hit("vmx.c:vmx_rtit_ctl_check:change-while-traceen")
            return True
        if (data & RTIT_CTL_TRACEEN and not data & RTIT_CTL_TOPA and not data & RTIT_CTL_FABRIC_EN
                and not _cap(caps, "ecx0", 1 << 2)):
            hit("vmx.c:vmx_rtit_ctl_check:no-single-range-output")
            return True
        if _cap(caps, "ebx0", 1 << 3) and not _cap(caps, "eax1", 0xFFFF0000) >> ((data >> 14) & 0xF) & 1:
            hit("vmx.c:vmx_rtit_ctl_check:mtc-freq")
            return True
        if _cap(caps, "ebx0", 1 << 1) and not _cap(caps, "ebx1", 0xFFFF) >> ((data >> 19) & 0xF) & 1:
            hit("vmx.c:vmx_rtit_ctl_check:cyc-thresh")
            return True
        if _cap(caps, "ebx0", 1 << 1) and not _cap(caps, "ebx1", 0xFFFF0000) >> ((data >> 24) & 0xF) & 1:
            hit("vmx.c:vmx_rtit_ctl_check:psb-freq")
            return True
        for n in range(4):
            value = (data >> (32 + 4 * n)) & 0xF
            if (value and self.num_address_ranges < n + 1) or value > 2:
                hit("vmx.c:vmx_rtit_ctl_check:addr-cfg")
                return True
        hit("vmx.c:vmx_rtit_ctl_check:ok")
        return False

    def rtit_output_ok(self) -> bool:
        return bool(_cap(self.pt_caps, "ecx0", 1 << 0) or _cap(self.pt_caps, "ecx0", 1 << 2))

    def rtit_get(self, msr: int) -> int | None:
        """vmx.c: vmx_get_msr() RTIT cases; None: returns 1."""
        if not self.pt_host_guest:
            hit("vmx.c:vmx_get_msr:rtit-not-host-guest")
            return None
        if msr in (MSR_IA32_RTIT_CTL, MSR_IA32_RTIT_STATUS):
            hit("vmx.c:vmx_get_msr:rtit-ctl-status")
            return self.pt["ctl" if msr == MSR_IA32_RTIT_CTL else "status"]
        if msr == MSR_IA32_RTIT_CR3_MATCH:
            if not _cap(self.pt_caps, "ebx0", 1 << 0):
                hit("vmx.c:vmx_get_msr:rtit-cr3-no-cap")
                return None
            hit("vmx.c:vmx_get_msr:rtit-cr3")
            return self.pt["cr3_match"]
        if msr in (MSR_IA32_RTIT_OUTPUT_BASE, MSR_IA32_RTIT_OUTPUT_MASK):
            if not self.rtit_output_ok():
                hit("vmx.c:vmx_get_msr:rtit-output-no-cap")
                return None
            hit("vmx.c:vmx_get_msr:rtit-output")
            return self.pt["output_base" if msr == MSR_IA32_RTIT_OUTPUT_BASE else "output_mask"]
        index = msr - MSR_IA32_RTIT_ADDR0_A
        if index >= 2 * self.num_address_ranges:
            hit("vmx.c:vmx_get_msr:rtit-addr-beyond-ranges")
            return None
        hit("vmx.c:vmx_get_msr:rtit-addr")
        return self.pt["addr"][index]

    def rtit_set(self, msr: int, data: int) -> bool:
        """vmx.c: vmx_set_msr() RTIT cases; False: returns 1."""
        if msr == MSR_IA32_RTIT_CTL:
            if not self.pt_host_guest:
                hit("vmx.c:vmx_set_msr:rtit-not-host-guest")
                return False
            if self.rtit_ctl_check(data):  # not a rule: vmx_rtit_ctl_check rules each reason
                return False
            hit("vmx.c:vmx_set_msr:rtit-ctl")
            self.pt["ctl"] = data
            return True
        # vmx.c: pt_can_write_msr(): host-guest mode and TraceEn clear
        if not self.pt_host_guest or self.pt["ctl"] & RTIT_CTL_TRACEEN:
            hit("vmx.c:vmx_set_msr:rtit-cannot-write")
            return False
        if msr == MSR_IA32_RTIT_STATUS:
            if data & MSR_IA32_RTIT_STATUS_MASK:
                hit("vmx.c:vmx_set_msr:rtit-status-reserved")
                return False
            hit("vmx.c:vmx_set_msr:rtit-status")
            self.pt["status"] = data
            return True
        if msr == MSR_IA32_RTIT_CR3_MATCH:
            if not _cap(self.pt_caps, "ebx0", 1 << 0):
                hit("vmx.c:vmx_set_msr:rtit-cr3-no-cap")
                return False
            hit("vmx.c:vmx_set_msr:rtit-cr3")
            self.pt["cr3_match"] = data
            return True
        if msr in (MSR_IA32_RTIT_OUTPUT_BASE, MSR_IA32_RTIT_OUTPUT_MASK):
            if not self.rtit_output_ok():
                hit("vmx.c:vmx_set_msr:rtit-output-no-cap")
                return False
            if msr == MSR_IA32_RTIT_OUTPUT_BASE:
                # vmx.c: pt_output_base_valid(): kvm_vcpu_is_legal_aligned_gpa(vcpu, base, 128)
                if data % 128 or data >> SHIM["maxphyaddr"]:
                    hit("vmx.c:vmx_set_msr:rtit-output-base-invalid")
                    return False
                hit("vmx.c:vmx_set_msr:rtit-output-base")
                self.pt["output_base"] = data
                return True
            hit("vmx.c:vmx_set_msr:rtit-output-mask")
            self.pt["output_mask"] = data
            return True
        index = msr - MSR_IA32_RTIT_ADDR0_A
        if index >= 2 * self.num_address_ranges:
            hit("vmx.c:vmx_set_msr:rtit-addr-beyond-ranges")
            return False
        if not _canonical(data, SHIM["virt_addr_bits"]):
            hit("vmx.c:vmx_set_msr:rtit-addr-noncanonical")
            return False
        hit("vmx.c:vmx_set_msr:rtit-addr")
        self.pt["addr"][index] = data
        return True

    # ------------------------------------------------------------ vendor get/set, x86.c common
    def get_msr(self, msr: int, host: bool) -> int | None:
        """__kvm_get_msr() -> vmx_get_msr() / svm_get_msr() -> kvm_get_msr_common(); None: non-zero."""
        if self.intel and MSR_IA32_RTIT_OUTPUT_BASE <= msr <= MSR_IA32_RTIT_ADDR3_B and msr in MSR_NAMES:
            hit("vmx.c:vmx_get_msr:rtit")
            return self.rtit_get(msr)
        # x86.c: kvm_get_msr_common()
        if msr == MSR_IA32_PERF_CAPABILITIES:
            if not host and not self.cpu["pdcm"]:
                hit("x86.c:kvm_get_msr_common:perf-capabilities-no-pdcm")
                return None
            hit("x86.c:kvm_get_msr_common:perf-capabilities")
            return self.perf_capabilities
        if msr in (MSR_P6_PERFCTR0, MSR_P6_PERFCTR1, MSR_P6_EVNTSEL0, MSR_P6_EVNTSEL1):
            if self.is_valid_msr(msr):
                hit("x86.c:kvm_get_msr_common:p6-pmu")
                return self.pmu_get(msr)
            hit("x86.c:kvm_get_msr_common:p6-invalid-reads-zero")
            return 0
        if self.is_valid_msr(msr):
            hit("x86.c:kvm_get_msr_common:pmu")
            return self.pmu_get(msr)
        if host and msr in self.msrs_to_save:
            hit("x86.c:kvm_get_msr_common:host-msr-to-save-zero")
            return 0
        # KVM_MSR_RET_UNSUPPORTED; kvm_get_msr_ignored_check: ignore_msrs=0
        hit("x86.c:kvm_get_msr_common:unsupported")
        return None

    def set_msr(self, msr: int, data: int, host: bool) -> bool:
        """__kvm_set_msr() -> vmx_set_msr() / svm_set_msr() -> kvm_set_msr_common(); False: non-zero."""
        if self.intel and MSR_IA32_RTIT_OUTPUT_BASE <= msr <= MSR_IA32_RTIT_ADDR3_B and msr in MSR_NAMES:
            hit("vmx.c:vmx_set_msr:rtit")
            return self.rtit_set(msr, data)
        if msr == MSR_IA32_PERF_CAPABILITIES:
            if self.intel and not self.vmx_perf_caps_ok(data):  # not a rule: vmx_perf_caps_ok rules
                return False
            # x86.c: kvm_set_msr_common()
            if not host:
                hit("x86.c:kvm_set_msr_common:perf-capabilities-guest")
                return False
            if data & ~self.supported_perf_cap:             # kvm_get_msr_feature()
                hit("x86.c:kvm_set_msr_common:perf-capabilities-unsupported-bits")
                return False
            hit("x86.c:kvm_set_msr_common:perf-capabilities-refresh")
            self.perf_capabilities = data
            self.refresh()
            return True
        if msr in (MSR_P6_PERFCTR0, MSR_P6_PERFCTR1, MSR_P6_EVNTSEL0, MSR_P6_EVNTSEL1):
            if self.is_valid_msr(msr):
                hit("x86.c:kvm_set_msr_common:p6-pmu")
                return self.pmu_set(msr, data, host)
            hit("x86.c:kvm_set_msr_common:p6-invalid-ignored")
            return True
        if self.is_valid_msr(msr):
            hit("x86.c:kvm_set_msr_common:pmu")
            return self.pmu_set(msr, data, host)
        if host and not data and msr in self.msrs_to_save:
            hit("x86.c:kvm_set_msr_common:host-zero-msr-to-save")
            return True
        hit("x86.c:kvm_set_msr_common:unsupported")
        return False

    def vmx_perf_caps_ok(self, data: int) -> bool:
        """vmx.c: vmx_set_msr() case MSR_IA32_PERF_CAPABILITIES, before kvm_set_msr_common()."""
        if data and not self.version:
            hit("vmx.c:vmx_set_msr:perf-caps-no-pmu")
            return False
        if data & PMU_CAP_LBR_FMT and (data & PMU_CAP_LBR_FMT) != (self.supported_perf_cap & PMU_CAP_LBR_FMT):
            hit("vmx.c:vmx_set_msr:perf-caps-lbr-fmt")      # cpuid_model_is_consistent: true (SHIM)
            return False
        if data & PERF_CAP_PEBS_FORMAT:
            if (data & PERF_CAP_PEBS_MASK) != (self.supported_perf_cap & PERF_CAP_PEBS_MASK):
                hit("vmx.c:vmx_set_msr:perf-caps-pebs-mask")
                return False
            if not self.guest_ds:
                hit("vmx.c:vmx_set_msr:perf-caps-pebs-no-ds")
                return False
            if not self.guest_dtes64:
                hit("vmx.c:vmx_set_msr:perf-caps-pebs-no-dtes64")
                return False
        if self.series and data & PERF_CAP_PT and not (self.cpu["pt"] and self.pt_host_guest):
            # series: vmx_set_msr(): PEBS output to PT only with PT in the guest
            hit("vmx.c:vmx_set_msr:series-perf-caps-pt-without-guest-pt")
            return False
        hit("vmx.c:vmx_set_msr:perf-caps-checked")
        return True

    def feature_get(self, msr: int) -> int | None:
        """x86.c: do_get_msr_feature() -> kvm_get_msr_feature() -> vmx/svm_get_msr_feature()."""
        if not self.intel:
            if msr == MSR_IA32_PERF_CAPABILITIES:
                hit("svm.c:svm_get_msr_feature:perf-capabilities")
                return self.supported_perf_cap
            hit("svm.c:svm_get_msr_feature:unsupported")
            return None
        if msr == MSR_IA32_PERF_CAPABILITIES:
            hit("vmx.c:vmx_get_msr_feature:perf-capabilities")
            return self.supported_perf_cap
        hit("vmx.c:vmx_get_msr_feature:unsupported")        # KVM_MSR_RET_UNSUPPORTED, ignore_msrs=0
        return None


def _result(step: int, ok: bool, value: int | None = None) -> dict:
    return {"op": "result", "step": step, "result": "ok" if ok else "fault", "value": value if ok else None}


def predict(script: dict, profile: str = PROFILES[0]) -> list[dict]:
    if profile not in PROFILES:  # not a rule: argument check
        raise ValueError(f"pebs_pt model: unknown profile {profile!r} (one of {', '.join(PROFILES)})")
    vcpu = Vcpu(script["cpu"], profile)
    events = []
    for step, a in enumerate(script["actions"]):
        op, msr = a["op"], a["msr"]
        if op == "guest_rdmsr":
            # x86.c: kvm_emulate_rdmsr(): a non-zero return injects #GP
            value = vcpu.get_msr(msr, host=False)
            events.append(_result(step, value is not None, value))
        elif op == "guest_wrmsr":
            # x86.c: kvm_emulate_wrmsr()
            events.append(_result(step, vcpu.set_msr(msr, a["value"], host=False)))
        else:
            if op == "host_get":
                # x86.c: msr_io(do_get_msr): KVM_GET_MSRS stops at the first failing entry
                value = vcpu.get_msr(msr, host=True)
            elif op == "host_set":
                value = 0 if vcpu.set_msr(msr, a["value"], host=True) else None
            else:
                value = vcpu.feature_get(msr)
            ok = value is not None
            events.append({"op": "result", "step": step, "result": "ok" if ok else "refused",
                           "value": value if ok and op != "host_set" else None})
    return events


def findings(script: dict, observed: list[dict]) -> list[dict]:  # not a rule: run-record bookkeeping
    return []


UNREACHABLE = {
    "pmu_intel.c:intel_pmu_refresh:pebs-baseline": "6.1.192 never lets PERF_CAP_PEBS_BASELINE into a vCPU's "
                                                   "PERF_CAPABILITIES (vmx_get_perf_capabilities masks it)",
    "pmu_intel.c:intel_pmu_set_msr:ds-area-host-no-ds": "DS_AREA is a valid PMU MSR only with DS in guest CPUID",
    "x86.c:kvm_get_msr_common:host-msr-to-save-zero": "pmusim's host has no PMU MSR in msrs_to_save (host_msrs)",
    "x86.c:kvm_set_msr_common:host-zero-msr-to-save": "pmusim's host has no PMU MSR in msrs_to_save (host_msrs)",
    "pmu_intel.c:intel_pmu_get_msr:unhandled": "only valid PMU MSRs reach intel_pmu_get_msr",
    "pmu_intel.c:intel_pmu_set_msr:unhandled": "only valid PMU MSRs reach intel_pmu_set_msr",
    "vmx.c:vmx_get_perf_capabilities:lbr-fmt": "the shim's x86_perf_get_lbr() reports no LBR records",
    "pmu_intel.c:intel_pmu_set_msr:pebs-data-cfg-ok": "PEBS_DATA_CFG needs the baseline bit",
    "pmu_intel.c:intel_pmu_set_msr:pebs-data-cfg-reserved": "PEBS_DATA_CFG needs the baseline bit",
    "pmu_intel.c:intel_pmu_get_msr:pebs-data-cfg": "PEBS_DATA_CFG needs the baseline bit",
}
