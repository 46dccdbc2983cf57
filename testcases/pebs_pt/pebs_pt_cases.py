"""Named pebs_pt PMU MSR cases, as data.

Each case: id (`pebs_pt/msr/<name>`), rationale (what it pins down, with the kernel
function), script (an op-script, see harness/payloads/pebs_pt.py). Expected results
come from the reference model (harness/reference/pebs_pt.py, profile 6.1 by default),
never from here; the rationale says what 6.1 does and, where it differs, what the
PEBS-via-PT series (profile "series") does.

Host CPU by default: Intel with PEBS (format 4, trap, arch regs), adaptive PEBS
(baseline), full-width writes, LBR format 5 and PEBS output to PT in its
IA32_PERF_CAPABILITIES (0x164c5), VMX PT support with kvm_intel.pt_mode 0 (its default,
PT_MODE_SYSTEM) unless a case sets pt_mode=1 (host-guest: the RTIT MSRs and the series'
PEBS via PT need it); guest CPUID: PDCM, DS, DTES64, no PT, PMU version 2 with 4 GP and 3
fixed counters.
"""
from __future__ import annotations

from harness.reference import pebs_pt as m

HOST_CAPS = 0x164C5
PERF_CAPS, PEBS_ENABLE, PEBS_DATA_CFG, DS_AREA = 0x345, 0x3F1, 0x3F2, 0x600
RTIT_CTL, RTIT_STATUS, RTIT_CR3, RTIT_BASE, RTIT_MASK = 0x570, 0x571, 0x572, 0x560, 0x561
RTIT_ADDR = [0x580 + i for i in range(8)]
RELOAD_PMC = [0x14C1 + i for i in range(8)]
RELOAD_FIXED = [0x1309 + i for i in range(4)]
PERFCTR, PMC, EVNTSEL, FIXED = 0xC1, 0x4C1, 0x186, 0x309
FIXED_CTR_CTRL, GLOBAL_STATUS, GLOBAL_CTRL, GLOBAL_OVF_CTRL = 0x38D, 0x38E, 0x38F, 0x390
OUTPUT_PT, PMI_EACH = 1 << 61, 1 << 60


def rd(msr: int) -> dict:
    return {"op": "guest_rdmsr", "msr": msr}


def wr(msr: int, value: int) -> dict:
    return {"op": "guest_wrmsr", "msr": msr, "value": value}


def get(msr: int) -> dict:
    return {"op": "host_get", "msr": msr}


def put(msr: int, value: int) -> dict:
    return {"op": "host_set", "msr": msr, "value": value}


def feat(msr: int) -> dict:
    return {"op": "feature_get", "msr": msr}


def case(name: str, rationale: str, actions: list, **cpu) -> dict:
    return {"id": f"pebs_pt/msr/{name}", "rationale": rationale,
            "script": {"cpu": {"host_perf_caps": HOST_CAPS, **cpu}, "actions": actions}}


def both(msr: int, value: int) -> list:
    """Guest and host, read and write, then read back."""
    return [rd(msr), wr(msr, value), rd(msr), get(msr), put(msr, value), get(msr), put(msr, 0), get(msr)]


CASES = [
    # ---------------------------------------------------------------- PERF_CAPABILITIES (0x345)
    case("perf-caps-guest-read-pdcm",
         "RDMSR 0x345 with PDCM: vcpu->arch.perf_capabilities = kvm_caps.supported_perf_cap "
         "(x86.c: kvm_get_msr_common; pmu_intel.c: intel_pmu_init): FW_WRITES | PEBS trap/arch "
         "regs/format, baseline and bit 16 masked, no LBR format (vmx.c: vmx_get_perf_capabilities)",
         [rd(PERF_CAPS), get(PERF_CAPS), feat(PERF_CAPS)]),
    case("perf-caps-guest-read-no-pdcm",
         "RDMSR 0x345 without PDCM: #GP (x86.c: kvm_get_msr_common); the host still reads it",
         [rd(PERF_CAPS), get(PERF_CAPS)], pdcm=False),
    case("perf-caps-guest-write-faults",
         "WRMSR 0x345 from the guest: #GP whatever the value (x86.c: kvm_set_msr_common: "
         "!host_initiated), the value unchanged",
         [wr(PERF_CAPS, 0), wr(PERF_CAPS, 0x2000), rd(PERF_CAPS)]),
    case("perf-caps-bit16-masked-with-pt",
         "Host with PEBS-via-PT and PT exposed to the guest: 6.1 still reports bit 16 clear "
         "(vmx_get_perf_capabilities copies PERF_CAP_PEBS_MASK only); the series reports it",
         [feat(PERF_CAPS), rd(PERF_CAPS), get(PERF_CAPS)], pt=True, pt_mode=1),
    case("perf-caps-host-set-bit16",
         "KVM_SET_MSRS 0x345 with bit 16: refused in 6.1 (x86.c: kvm_set_msr_common: data & "
         "~kvm_get_msr_feature()); the series accepts it with guest PT",
         [put(PERF_CAPS, 0x24C0 | (1 << 16)), get(PERF_CAPS)], pt=True, pt_mode=1),
    case("perf-caps-host-set-bit16-without-guest-pt",
         "bit 16 without PT in guest CPUID: refused in both profiles (series: vmx_set_msr)",
         [put(PERF_CAPS, 0x24C0 | (1 << 16)), get(PERF_CAPS)]),
    case("perf-caps-host-bits",
         "KVM_SET_MSRS 0x345 bit by bit (0..16 and 63): only supported bits are accepted "
         "(vmx.c: vmx_set_msr: LBR format must equal the supported one, PEBS bits must equal "
         "the supported PEBS mask; x86.c: kvm_set_msr_common: no bit outside supported_perf_cap)",
         [a for bit in list(range(17)) + [63] for a in (put(PERF_CAPS, 1 << bit), get(PERF_CAPS))]),
    case("perf-caps-host-set-zero-then-pebs-gone",
         "KVM_SET_MSRS 0x345 = 0 then PEBS_ENABLE: no PEBS format in the vCPU's capabilities, "
         "PEBS_ENABLE invalid (pmu_intel.c: intel_is_valid_msr); full-width PMC0 gone too "
         "(get_fw_gp_pmc)",
         [put(PERF_CAPS, 0), rd(PEBS_ENABLE), rd(PMC), get(PEBS_ENABLE), put(PERF_CAPS, 0x24C0), rd(PEBS_ENABLE)]),
    case("perf-caps-host-set-no-pmu",
         "KVM_SET_MSRS 0x345 non-zero with PMU version 0: refused (vmx.c: vmx_set_msr: "
         "!pmu->version); zero accepted",
         [put(PERF_CAPS, 0x2000), put(PERF_CAPS, 0), get(PERF_CAPS)], pmu_version=0),
    case("perf-caps-no-host-pebs",
         "Host without PEBS (vmx_pebs_supported false): no PEBS bits in supported_perf_cap, "
         "setting the PEBS format refused",
         [feat(PERF_CAPS), rd(PERF_CAPS), put(PERF_CAPS, 0x24C0), put(PERF_CAPS, 0x2000), get(PERF_CAPS)],
         host_pebs=False),
    case("perf-caps-host-lbr-format",
         "LBR format 5 on the host: the shim's x86_perf_get_lbr() reports no records, so "
         "vmx_get_perf_capabilities drops it and vmx_set_msr refuses any LBR format",
         [put(PERF_CAPS, 0x24C5), put(PERF_CAPS, 0x24C0), get(PERF_CAPS)]),
    # ---------------------------------------------------------------- PEBS_ENABLE (0x3f1)
    case("pebs-enable-gp-bits",
         "PEBS_ENABLE with PEBS format, no baseline: bits of the 4 GP counters accepted, "
         "bit 4 and fixed-counter bits #GP (pmu_intel.c: intel_pmu_refresh: pebs_enable_mask "
         "= ~((1 << nr_gp) - 1); intel_pmu_set_msr)",
         [wr(PEBS_ENABLE, 0xF), rd(PEBS_ENABLE), wr(PEBS_ENABLE, 0x10), wr(PEBS_ENABLE, 1 << 32),
          rd(PEBS_ENABLE), get(PEBS_ENABLE), put(PEBS_ENABLE, 1 << 32), put(PEBS_ENABLE, 0), get(PEBS_ENABLE)]),
    case("pebs-enable-output-pt-without-pt",
         "WRMSR PEBS_ENABLE bit 61 (PEBS_OUTPUT_PT) without PT: #GP in both profiles",
         [wr(PEBS_ENABLE, OUTPUT_PT | 1), wr(PEBS_ENABLE, OUTPUT_PT), rd(PEBS_ENABLE)]),
    case("pebs-enable-output-pt-with-pt",
         "WRMSR PEBS_ENABLE bits 61 and 60 with PT in the guest: #GP in 6.1 (no output bits in "
         "pebs_enable_mask); accepted by the series (pebs_via_pt); bit 62 reserved in both",
         [wr(PEBS_ENABLE, OUTPUT_PT | 1), rd(PEBS_ENABLE), wr(PEBS_ENABLE, OUTPUT_PT | PMI_EACH | 1),
          rd(PEBS_ENABLE), wr(PEBS_ENABLE, 1 << 62), put(PEBS_ENABLE, OUTPUT_PT), get(PEBS_ENABLE)], pt=True, pt_mode=1),
    case("pebs-enable-no-pdcm",
         "Without PDCM vcpu_get_perf_capabilities() is 0: PEBS_ENABLE invalid, #GP; host reads 0 "
         "(x86.c: kvm_get_msr_common: msrs_to_save), sets only 0",
         [rd(PEBS_ENABLE), wr(PEBS_ENABLE, 0), get(PEBS_ENABLE), put(PEBS_ENABLE, 1), put(PEBS_ENABLE, 0)],
         pdcm=False),
    case("pebs-enable-no-host-pebs",
         "Host without PEBS: PEBS_ENABLE not valid and not in msrs_to_save: #GP, refused",
         [rd(PEBS_ENABLE), wr(PEBS_ENABLE, 1), get(PEBS_ENABLE), put(PEBS_ENABLE, 0)], host_pebs=False),
    case("pebs-enable-version-0",
         "PMU version 0: intel_pmu_refresh returns early, pebs_enable_mask ~0: PEBS_ENABLE valid "
         "(format bits present) yet only the current value 0 may be written",
         [rd(PEBS_ENABLE), wr(PEBS_ENABLE, 0), wr(PEBS_ENABLE, 1)], pmu_version=0),
    # ---------------------------------------------------------------- PEBS_DATA_CFG (0x3f2), DS_AREA (0x600)
    case("pebs-data-cfg-no-baseline",
         "PEBS_DATA_CFG needs the baseline bit in the vCPU's capabilities, which 6.1.192 never "
         "grants (vmx_get_perf_capabilities masks PERF_CAP_PEBS_BASELINE): #GP; the host reads 0 "
         "and writes 0 (in msrs_to_save on this adaptive-PEBS host)",
         [rd(PEBS_DATA_CFG), wr(PEBS_DATA_CFG, 1), get(PEBS_DATA_CFG), put(PEBS_DATA_CFG, 0),
          put(PEBS_DATA_CFG, 1), put(PERF_CAPS, 0x24C0 | (1 << 14))]),
    case("pebs-data-cfg-host-without-baseline",
         "Host without adaptive PEBS: PEBS_DATA_CFG not in msrs_to_save, refused",
         [get(PEBS_DATA_CFG), put(PEBS_DATA_CFG, 0)], host_perf_caps=0x24C5),
    case("ds-area",
         "DS_AREA with DS in guest CPUID (vmx_pebs_supported): any canonical address "
         "(pmu_intel.c: intel_pmu_set_msr), non-canonical #GP/refused",
         both(DS_AREA, 0xFFFF888000100000) + [wr(DS_AREA, 0x0000800000000000), put(DS_AREA, 1 << 63), rd(DS_AREA)]),
    case("ds-area-no-host-pebs",
         "DS_AREA without DS (host without PEBS): #GP, refused",
         [rd(DS_AREA), wr(DS_AREA, 0x1000), get(DS_AREA), put(DS_AREA, 0)], host_pebs=False),
    # ---------------------------------------------------------------- reload MSRs
    case("reload-pmc-absent",
         "MSR_RELOAD_PMC0..7: unknown to 6.1 (not a PMU MSR, not in msrs_to_save): #GP and "
         "refused, with PT in the guest too",
         [a for msr in RELOAD_PMC for a in (rd(msr), wr(msr, 0), get(msr), put(msr, 0))], pt=True, pt_mode=1),
    case("reload-fixed-absent",
         "MSR_RELOAD_FIXED_CTR0..3: unknown to 6.1: #GP and refused",
         [a for msr in RELOAD_FIXED for a in (rd(msr), wr(msr, 1), get(msr), put(msr, 0))], pt=True, pt_mode=1),
    case("reload-absent-without-pt",
         "Reload MSRs without PT in the guest: #GP in both profiles",
         [rd(RELOAD_PMC[0]), wr(RELOAD_PMC[0], 5), get(RELOAD_FIXED[0]), put(RELOAD_FIXED[0], 0)]),
    case("reload-values-series",
         "Reload values with PT in the guest (series: valid for the vCPU's 4 GP and 3 fixed "
         "counters, at most 48 bits; 6.1: #GP)",
         [wr(RELOAD_PMC[0], 0xFFFFFFF0), rd(RELOAD_PMC[0]), wr(RELOAD_PMC[3], 1 << 48), wr(RELOAD_PMC[4], 1),
          put(RELOAD_FIXED[2], 0x1234), get(RELOAD_FIXED[2]), rd(RELOAD_FIXED[3])], pt=True, pt_mode=1),
    # ---------------------------------------------------------------- RTIT MSRs
    case("rtit-without-guest-pt",
         "pt_mode host-guest, no PT in guest CPUID: update_intel_pt_cfg not run (vmx.c: "
         "vmx_vcpu_after_set_cpuid), caps zero, ctl_bitmask 0: RTIT_CTL/STATUS read, "
         "RTIT_CTL takes OS/User, TraceEn without ToPA/FabricEn #GP (no single-range output), "
         "OUTPUT_*/CR3_MATCH/ADDRn #GP (vmx.c: vmx_get_msr, vmx_set_msr, vmx_rtit_ctl_check)",
         [rd(RTIT_CTL), rd(RTIT_STATUS), wr(RTIT_CTL, 0xC), rd(RTIT_CTL), wr(RTIT_CTL, 1), rd(RTIT_BASE),
          rd(RTIT_MASK), rd(RTIT_CR3), rd(RTIT_ADDR[0]), wr(RTIT_STATUS, 0), get(RTIT_CTL), get(RTIT_BASE)], pt_mode=1),
    case("rtit-pt-mode-system",
         "Host without PT for guests (pt_mode system): every RTIT MSR #GP and refused "
         "(vmx.c: vmx_get_msr: !vmx_pt_mode_is_host_guest())",
         [a for msr in (RTIT_CTL, RTIT_STATUS, RTIT_CR3, RTIT_BASE, RTIT_MASK, RTIT_ADDR[0])
          for a in (rd(msr), wr(msr, 0), get(msr), put(msr, 0))], host_pt=False, pt=True),
    case("rtit-with-guest-pt",
         "PT in guest CPUID: the output, CR3 and two address ranges' MSRs valid; OUTPUT_MASK "
         "starts at 0x7f (init_vmcs); OUTPUT_BASE 128-byte aligned below MAXPHYADDR 36",
         [rd(RTIT_MASK), wr(RTIT_BASE, 0x100000), rd(RTIT_BASE), wr(RTIT_BASE, 0x100040), wr(RTIT_BASE, 1 << 36),
          wr(RTIT_CR3, 0x1000), rd(RTIT_CR3), wr(RTIT_ADDR[3], 0xFFFFFFFF81000000), rd(RTIT_ADDR[3]),
          rd(RTIT_ADDR[4]), wr(RTIT_ADDR[0], 1 << 47), wr(RTIT_MASK, 0x7F), put(RTIT_ADDR[1], 0x401000),
          get(RTIT_ADDR[1])], pt=True, pt_mode=1),
    case("rtit-ctl-checks",
         "RTIT_CTL with PT in the guest (vmx.c: vmx_rtit_ctl_check): TraceEn|ToPA|OS|BranchEn ok; "
         "then a change while TraceEn #GP, clearing TraceEn ok; ADDR0_CFG 1 ok, ADDR2_CFG #GP "
         "(2 ranges), ADDR0_CFG 3 #GP; MTCFreq 15 not in mtc_periods #GP; reserved bit 30 #GP; "
         "CycThresh 15 (not in cycle_thresholds 0x3fff) #GP, 13 ok; PSBFreq 15 (psb_periods 0x3f) #GP; "
         "ADDR2_A beyond the 2 ranges #GP; "
         "writes to STATUS while TraceEn #GP (pt_can_write_msr)",
         [wr(RTIT_CTL, 0x2105), rd(RTIT_CTL), wr(RTIT_CTL, 0x2107), wr(RTIT_STATUS, 0), wr(RTIT_CTL, 0x2104),
          wr(RTIT_CTL, 1 << 32), wr(RTIT_CTL, 1 << 40), wr(RTIT_CTL, 3 << 32), wr(RTIT_CTL, 0xF << 14),
          wr(RTIT_CTL, 1 << 30), wr(RTIT_CTL, 0xF << 19), wr(RTIT_CTL, 0xD << 19), wr(RTIT_CTL, 0xF << 24),
          wr(RTIT_CTL, 1), rd(RTIT_CTL), rd(RTIT_ADDR[4]), wr(RTIT_ADDR[4], 0)], pt=True, pt_mode=1),
    case("rtit-status-bits",
         "RTIT_STATUS: FilterEn, ContextEn, TriggerEn, Error, Stopped and PacketByteCnt "
         "writable, BuffOvf (bit 3) and bits 31:6 reserved (vmx.c: MSR_IA32_RTIT_STATUS_MASK)",
         [wr(RTIT_STATUS, 0x37), rd(RTIT_STATUS), wr(RTIT_STATUS, 0x8), wr(RTIT_STATUS, 1 << 40),
          rd(RTIT_STATUS), put(RTIT_STATUS, 1 << 6), get(RTIT_STATUS)], pt=True, pt_mode=1),
    case("rtit-host-writes-without-guest-pt",
         "pt_mode host-guest, no PT in guest CPUID (caps zero): host writes to CR3_MATCH, "
         "OUTPUT_BASE and ADDR0_A refused (vmx.c: vmx_set_msr: no cr3_filtering, no "
         "ToPA/single-range output, no address ranges), RTIT_CTL 0 accepted",
         [put(RTIT_CR3, 0), put(RTIT_BASE, 0x1000), put(RTIT_ADDR[0], 0), put(RTIT_CTL, 0), get(RTIT_STATUS)], pt_mode=1),
    case("perf-caps-host-set-bit16-alone",
         "KVM_SET_MSRS 0x345 = bit 16 alone, guest without PT: refused in both profiles (6.1: not "
         "a supported bit; series: vmx_set_msr refuses bit 16 without guest PT first)",
         [put(PERF_CAPS, 1 << 16), get(PERF_CAPS)]),
    # ---------------------------------------------------------------- architectural counters
    case("gp-counters-legacy-and-full-width",
         "PERFCTR0 writes sign-extend bit 31 from the guest, not from the host; PMC0 (full "
         "width, FW_WRITES) takes 48 bits, #GP beyond; reads masked to 48 bits "
         "(pmu_intel.c: intel_pmu_set_msr; pmu.h: pmc_write_counter)",
         [wr(PERFCTR, 0x80000000), rd(PERFCTR), put(PERFCTR, 0x80000000), get(PERFCTR), wr(PMC, 0xFFFFFFFFFFFF),
          rd(PMC + 0), wr(PMC, 1 << 48), put(PMC, 1 << 48), rd(PERFCTR)]),
    case("gp-counters-clamped",
         "CPUID asks 10 GP counters: clamped to the host's 8 (intel_pmu_refresh); PERFCTR7/EVNTSEL7 "
         "valid; with 2 counters PERFCTR2 #GP from the guest and 0 to the host (msrs_to_save)",
         [rd(PERFCTR + 7), wr(EVNTSEL + 7, 0x4300C0), rd(EVNTSEL + 7)], gp_counters=10),
    case("gp-counters-beyond",
         "2 GP counters: PERFCTR2 #GP, host reads 0 / writes 0 (msrs_to_save); P6 aliases "
         "PERFCTR1/EVNTSEL1 (0xc2, 0x187) read 0 and ignore writes when invalid (x86.c: "
         "kvm_get_msr_common/kvm_set_msr_common P6 cases): here valid",
         [rd(PERFCTR + 2), wr(PERFCTR + 2, 0), get(PERFCTR + 2), put(PERFCTR + 2, 0), put(PERFCTR + 2, 1),
          rd(PMC + 2), get(PMC + 2)], gp_counters=2),
    case("p6-aliases-without-pmu",
         "PMU version 0: no counters; PERFCTR0/1 and EVNTSEL0/1 read 0 and ignore writes for "
         "guest and host (x86.c: P6 cases), EVNTSEL2 #GP",
         [rd(PERFCTR), wr(PERFCTR, 5), rd(PERFCTR), rd(EVNTSEL + 1), wr(EVNTSEL + 1, 1), rd(EVNTSEL + 2),
          get(PERFCTR + 1), put(PERFCTR + 1, 7)], pmu_version=0),
    case("eventsel-reserved",
         "EVNTSEL0: bit 21 and bits 63:32 reserved (reserved_bits 0xffffffff00200000; no TSX, "
         "no adaptive PEBS so bit 34 stays reserved)",
         [wr(EVNTSEL, 0x5300C0), rd(EVNTSEL), wr(EVNTSEL, 1 << 21), wr(EVNTSEL, 1 << 34), wr(EVNTSEL, 1 << 32),
          put(EVNTSEL, 1 << 32), rd(EVNTSEL)]),
    case("fixed-counters",
         "FIXED_CTR0..2 with 3 fixed counters, FIXED_CTR3 #GP; FIXED_CTR_CTRL takes EN/PMI bits "
         "(0xb per counter), AnyThread (bit 2) and bits of absent counters #GP",
         [wr(FIXED, 0xFFFFFFFFFFFFFFFF), rd(FIXED), rd(FIXED + 2), rd(FIXED + 3), get(FIXED + 3),
          wr(FIXED_CTR_CTRL, 0xBBB), rd(FIXED_CTR_CTRL), wr(FIXED_CTR_CTRL, 0x4), wr(FIXED_CTR_CTRL, 0xB000)]),
    case("fixed-counters-version-1",
         "PMU version 1: no fixed counters, no global MSRs (intel_pmu_has_perf_global_ctrl): "
         "#GP; the host reads them as 0 (msrs_to_save)",
         [rd(FIXED), rd(FIXED_CTR_CTRL), rd(GLOBAL_CTRL), get(GLOBAL_CTRL), put(GLOBAL_CTRL, 1)], pmu_version=1),
    case("global-ctrl-status-ovf",
         "GLOBAL_CTRL takes the 4 GP and 3 fixed bits; GLOBAL_STATUS read-only for the guest, "
         "host-writable; GLOBAL_OVF_CTRL clears status bits (guest only), bits 62/63 and 55 "
         "(pt_mode host-guest) allowed, reads 0",
         [wr(GLOBAL_CTRL, 0x70000000F), rd(GLOBAL_CTRL), wr(GLOBAL_CTRL, 0x10), wr(GLOBAL_STATUS, 0),
          put(GLOBAL_STATUS, 0xC08000000000000F), rd(GLOBAL_STATUS), wr(GLOBAL_OVF_CTRL, 0xC080000000000003),
          rd(GLOBAL_STATUS), rd(GLOBAL_OVF_CTRL), put(GLOBAL_OVF_CTRL, 0xC), get(GLOBAL_STATUS),
          wr(GLOBAL_OVF_CTRL, 1 << 40)], pt_mode=1),
    case("global-ovf-ctrl-topa-pmi-system",
         "pt_mode system: GLOBAL_OVF_CTRL bit 55 (Trace_ToPA_PMI) reserved (intel_pmu_refresh)",
         [wr(GLOBAL_OVF_CTRL, 1 << 55), wr(GLOBAL_OVF_CTRL, 1 << 62)], host_pt=False),
    case("feature-msrs",
         "KVM_GET_MSRS on /dev/kvm: only PERF_CAPABILITIES is a feature MSR here "
         "(x86.c: kvm_get_msr_feature; vmx.c: vmx_get_msr_feature), others refused",
         [feat(PERF_CAPS), feat(PEBS_ENABLE), feat(DS_AREA), feat(RTIT_CTL), feat(RELOAD_PMC[0]), feat(PERFCTR)],
         pt=True, pt_mode=1),
    case("rtit-pt-mode-host-guest-without-host-pt",
         "kvm_intel.pt_mode=1 on a host without VMX PT support: hardware_setup falls back to "
         "PT_MODE_SYSTEM, the RTIT MSRs #GP and refused, GLOBAL_OVF_CTRL bit 55 reserved",
         [rd(RTIT_CTL), get(RTIT_CTL), wr(GLOBAL_OVF_CTRL, 1 << 55)], host_pt=False, pt=True, pt_mode=1),
    case("pebs-without-ds",
         "Guest CPUID without DS: DS_AREA #GP and refused (intel_is_valid_msr); a host "
         "PERF_CAPABILITIES with the PEBS format refused (vmx.c: vmx_set_msr), accepted "
         "without the format",
         [rd(DS_AREA), get(DS_AREA), put(PERF_CAPS, 0x24C0), put(PERF_CAPS, 0x2000), rd(PEBS_ENABLE)], ds=False),
    case("pebs-without-dtes64",
         "DS but no DTES64: DS_AREA valid; PERF_CAPABILITIES with the PEBS format refused "
         "(vmx.c: vmx_set_msr: !guest_cpuid_has(DTES64)), PEBS_ENABLE still valid from the "
         "initial supported_perf_cap",
         [wr(DS_AREA, 0x1000), rd(DS_AREA), put(PERF_CAPS, 0x24C0), wr(PEBS_ENABLE, 1), rd(PEBS_ENABLE)],
         dtes64=False),
    case("gp-counters-host-perf-clamp",
         "Host perf with 2 GP and 1 fixed counter: the guest's 4 and 3 clamped "
         "(intel_pmu_refresh: min with kvm_pmu_cap)",
         [rd(PERFCTR + 1), rd(PERFCTR + 2), rd(FIXED), rd(FIXED + 1), wr(GLOBAL_CTRL, 0x100000003),
          wr(GLOBAL_CTRL, 0x200000003)], host_gp=2, host_fixed=1),
]

# kvm-amd is not compiled into pmusim (it exits 2 on vendor=amd): these run against the
# model only (tests/test_pebs_pt_model.py); the AMD guest cases are pebs_pt/absent/
AMD_CASES = [
    case("perf-caps-amd",
         "AMD host: supported_perf_cap 0 (svm.c: svm_hardware_setup, svm_get_msr_feature); "
         "RDMSR 0x345 reads 0 with PDCM, KVM_SET_MSRS only 0",
         [rd(PERF_CAPS), feat(PERF_CAPS), put(PERF_CAPS, 0x2000), put(PERF_CAPS, 0), get(PERF_CAPS)],
         vendor="amd"),
    case("perf-caps-amd-no-pdcm",
         "AMD without PDCM: RDMSR 0x345 #GP (x86.c: kvm_get_msr_common)",
         [rd(PERF_CAPS), get(PERF_CAPS)], vendor="amd", pdcm=False),
    case("pebs-enable-amd",
         "AMD: PEBS_ENABLE unknown (amd_is_valid_msr false, not in msrs_to_save)",
         [rd(PEBS_ENABLE), wr(PEBS_ENABLE, 0), get(PEBS_ENABLE), put(PEBS_ENABLE, 0), feat(PEBS_ENABLE)],
         vendor="amd"),
    case("reload-amd",
         "AMD: the reload MSRs unknown",
         [rd(RELOAD_PMC[0]), get(RELOAD_FIXED[0])], vendor="amd", pt=True),
    case("rtit-amd",
         "AMD: the RTIT MSRs unknown (svm_get_msr -> kvm_get_msr_common)",
         [rd(RTIT_CTL), wr(RTIT_CTL, 0), get(RTIT_STATUS), put(RTIT_BASE, 0)], vendor="amd", pt=True),
]

assert len({c["id"] for c in CASES + AMD_CASES}) == len(CASES + AMD_CASES)
assert all(a["msr"] in m.MSR_NAMES for c in CASES + AMD_CASES for a in c["script"]["actions"])
