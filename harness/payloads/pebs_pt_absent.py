"""pebs_pt absent (issue 13 item 4): the Python side of guests/pebs_pt/absent/.

`encode` writes the cases (testcases/pebs_pt/absent_cases.py) as the payload's
`case N key=value...` lines, `decode` parses its JSON lines strictly
(harness/payloads/trace.py), `parse_probe` reads `pebs_pt_absent --probe`, and
`predict(case, probe)` is what a kernel *without* PEBS-via-PT must answer, per
Linux 6.1 (Debian's linux-source-6.1, arch/x86/kvm/) for kvm-amd and for kvm-intel,
the vendor taken from the probe. `compare` lists the differences as
(MSR, field, expected, observed).

Every rule names the kernel file and function it mirrors. Where 6.1 leaves a value
to the host (Intel's PERF_CAPABILITIES bits, leaf 0xA), the prediction is a
constraint (`Within`, `Leaf0xA`) rather than a number; where the model does not
cover a configuration (kvm_intel pt_mode=1) it is `Unmodelled`, and the case SKIPs
naming it.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

from harness.errors import HarnessError
from harness.features import kernel_version
from harness.payloads.trace import split_traces

PAYLOAD = "pebs_pt_absent"
MAX_LINE = 16384

# ---- MSRs (arch/x86/include/asm/msr-index.h) ---------------------------------
PERF_CAPABILITIES = 0x345
PEBS_ENABLE = 0x3F1
PEBS_DATA_CFG = 0x3F2
DS_AREA = 0x600
RTIT_CTL, RTIT_STATUS = 0x570, 0x571
RTIT_OUTPUT_BASE, RTIT_OUTPUT_MASK, RTIT_CR3_MATCH = 0x560, 0x561, 0x572
RTIT_ADDR = tuple(range(0x580, 0x588))          # ADDR0_A .. ADDR3_B
RELOAD_PMC = tuple(0x14C1 + n for n in range(8))      # MSR_RELOAD_PMC0..7
RELOAD_FIXED = tuple(0x1309 + n for n in range(4))    # MSR_RELOAD_FIXED_CTR0..3
RTIT = (RTIT_CTL, RTIT_STATUS, RTIT_OUTPUT_BASE, RTIT_OUTPUT_MASK, RTIT_CR3_MATCH, *RTIT_ADDR)
PEBS = (PEBS_ENABLE, PEBS_DATA_CFG, DS_AREA)
RELOAD = (*RELOAD_PMC, *RELOAD_FIXED)

# PERF_CAPABILITIES bits (msr-index.h; vmx/capabilities.h)
PERF_CAP_LBR_FMT = 0x3F
PERF_CAP_PEBS_TRAP = 1 << 6
PERF_CAP_ARCH_REG = 1 << 7
PERF_CAP_PEBS_FORMAT = 0xF00
PERF_CAP_FW_WRITES = 1 << 13
PERF_CAP_PEBS_BASELINE = 1 << 14
PERF_CAP_PT = 1 << 16                                 # PERF_CAP_PT_IDX
PERF_CAP_PEBS_MASK = PERF_CAP_PEBS_TRAP | PERF_CAP_ARCH_REG | PERF_CAP_PEBS_FORMAT | PERF_CAP_PEBS_BASELINE
PEBS_OUTPUT_PT = 1 << 61
PEBS_PMI_AFTER_EACH_RECORD = 1 << 60

NAMES = {PERF_CAPABILITIES: "IA32_PERF_CAPABILITIES", PEBS_ENABLE: "IA32_PEBS_ENABLE",
         PEBS_DATA_CFG: "MSR_PEBS_DATA_CFG", DS_AREA: "IA32_DS_AREA", RTIT_CTL: "IA32_RTIT_CTL",
         RTIT_STATUS: "IA32_RTIT_STATUS", RTIT_OUTPUT_BASE: "IA32_RTIT_OUTPUT_BASE",
         RTIT_OUTPUT_MASK: "IA32_RTIT_OUTPUT_MASK", RTIT_CR3_MATCH: "IA32_RTIT_CR3_MATCH",
         **{m: f"IA32_RTIT_ADDR{(m - 0x580) // 2}_{'AB'[(m - 0x580) % 2]}" for m in RTIT_ADDR},
         **{m: f"MSR_RELOAD_PMC{m - 0x14C1}" for m in RELOAD_PMC},
         **{m: f"MSR_RELOAD_FIXED_CTR{m - 0x1309}" for m in RELOAD_FIXED}}


def msr_name(msr: int | None) -> str:
    if msr is None:
        return "CPUID"
    return f"{NAMES.get(msr, 'MSR')} ({msr:#x})"


# ---- the line format (guests/pebs_pt/absent/pebs_pt_absent.c) -----------------
# The payload's OP_* bits, in the order it performs them.
OPS = ("cpuid", "msr_list", "feature_list", "feature_get", "guest_rdmsr", "guest_wrmsr",
       "host_get", "host_set", "host_set0", "guest_rdmsr2")
BIT = {name: 1 << i for i, name in enumerate(OPS)}
NEEDS_VM = {"guest_rdmsr", "guest_wrmsr", "host_get", "host_set", "host_set0", "guest_rdmsr2"}
_CPUID_BIT = {"clear": 0, "set": 1, "keep": 2}


def normalise(case: dict) -> dict:
    """A case with its defaults: msr (None for CPUID-only), value 0, pdcm/pt 'keep'."""
    ops = list(case["ops"])
    unknown = [o for o in ops if o not in BIT]
    if unknown or len(set(ops)) != len(ops):
        raise HarnessError(f"pebs_pt_absent case: bad ops {ops}")
    out = {"msr": case.get("msr"), "value": int(case.get("value", 0)),
           "pdcm": case.get("pdcm", "keep"), "pt": case.get("pt", "keep"),
           "ops": sorted(ops, key=OPS.index)}
    if out["pdcm"] not in _CPUID_BIT or out["pt"] not in _CPUID_BIT:
        raise HarnessError(f"pebs_pt_absent case: pdcm/pt must be one of {sorted(_CPUID_BIT)}")
    if out["msr"] is None and any(o != "cpuid" for o in ops):
        raise HarnessError("pebs_pt_absent case: MSR ops without an msr")
    return out


def encode(cases: list[dict], first: int = 0) -> bytes:
    """One `case N ...` line per case, numbered from `first`."""
    lines = []
    for n, case in enumerate(cases, first):
        c = normalise(case)
        mask = sum(BIT[o] for o in c["ops"])
        words = [f"case {n}"]
        if c["msr"] is not None:
            words.append(f"msr={c['msr']:#x}")
        words += [f"value={c['value']:#x}", f"pdcm={_CPUID_BIT[c['pdcm']]}",
                  f"pt={_CPUID_BIT[c['pt']]}", f"ops={mask:#x}"]
        lines.append(" ".join(words))
    return ("\n".join(lines) + "\n").encode()


def decode(stdout: bytes, count: int, first: int = 0) -> list[list[dict]]:
    """The events of each case, strictly (one `done` per case, indexes in range)."""
    return split_traces(PAYLOAD, stdout, count, MAX_LINE, first)


def parse_probe(stdout: bytes | str) -> dict:
    text = stdout.decode(errors="replace") if isinstance(stdout, bytes) else stdout
    lines = [line for line in text.splitlines() if line.strip()]
    try:
        probe = json.loads(lines[0]) if len(lines) == 1 else None
    except (ValueError, RecursionError):    # RecursionError: nesting past json's stack (hypothesis)
        probe = None
    if not isinstance(probe, dict) or probe.get("probe") != PAYLOAD:
        raise HarnessError(f"pebs_pt_absent --probe printed no probe line: {text[:300]!r}")
    return probe


# ---- predicates for values 6.1 leaves to the host ------------------------------

@dataclass(frozen=True)
class Within:
    """An integer with no bit outside `allowed` (and none of `forbidden`)."""
    allowed: int
    why: str

    def __eq__(self, other):
        return isinstance(other, int) and not isinstance(other, bool) and other & ~self.allowed == 0

    def __repr__(self):
        return f"<bits within {self.allowed:#x}: {self.why}>"


@dataclass(frozen=True)
class Leaf0xA:
    """Intel's CPUID 0xA as KVM reports it (cpuid.c __do_cpuid_func case 0xa from
    kvm_pmu_cap, pmu.h kvm_init_pmu_capability: version <= 2; counters capped by
    KVM_INTEL_PMC_MAX_GENERIC 8 and KVM_PMC_MAX_FIXED 3; ECX 0)."""

    def __eq__(self, other):
        if other is None:
            return True
        if not (isinstance(other, list) and len(other) == 4):
            return False
        eax, _, ecx, edx = other
        return (eax & 0xFF) <= 2 and (eax >> 8 & 0xFF) <= 8 and ecx == 0 and (edx & 0x1F) <= 3

    def __repr__(self):
        return "<leaf 0xA: version <= 2, <= 8 GP, <= 3 fixed counters, ECX 0>"


class Unmodelled(HarnessError):
    """The model does not cover this kernel configuration (the case SKIPs)."""


# ---- the facts the rules read, from the probe ----------------------------------

# The kernel from which KVM reads a guest feature through guest_cpu_cap_has() (the
# user's CPUID bit AND KVM's own caps) instead of guest_cpuid_has() (the user's bit):
# torvalds/linux arch/x86/kvm/x86.c kvm_get_msr_common(MSR_IA32_PERF_CAPABILITIES) today.
GUEST_CPU_CAPS_SINCE = (6, 14)


@dataclass
class Facts:
    vendor: str
    ignore_msrs: bool
    enable_pmu: bool
    pt_mode: int | None
    host: dict             # the host CPU's CPUID bits as user space reads them
    host_rdmsr: dict       # msr -> True (rdmsr_safe succeeds) / False / None
    supported: dict        # KVM_GET_SUPPORTED_CPUID bits (probe)
    feature_perf_caps: int | None
    kernel: tuple[int, int] | None = None   # the kernel under test's version (the run's, not the probe's)

    @classmethod
    def of(cls, probe: dict) -> "Facts":
        vendor = probe.get("vendor")
        if vendor not in ("amd", "intel"):
            raise Unmodelled(f"CPU vendor {vendor!r} (pebs_pt_absent --probe): the model knows kvm-amd and kvm-intel")
        yes = lambda v: v in ("Y", "y", "1")       # noqa: E731 (module parameters)
        rd = {int(k, 16): (None if v is None else v == "ok")
              for k, v in (probe.get("host_rdmsr") or {}).items()}
        fpc = probe.get("feature_perf_caps") or {}
        pt_mode = probe.get("pt_mode")
        return cls(vendor, yes(probe.get("ignore_msrs")), yes(probe.get("enable_pmu")),
                   None if pt_mode is None else int(pt_mode), probe.get("host_cpuid") or {}, rd,
                   probe.get("supported") or {}, fpc.get("value") if fpc.get("ret") == 1 else None,
                   kernel_version(probe.get("kernel") or ""))


# ---- the rules -------------------------------------------------------------------

def _feature_perf_caps(f: Facts):
    """KVM_GET_MSRS(PERF_CAPABILITIES) on /dev/kvm: kvm_caps.supported_perf_cap."""
    if f.vendor == "amd":
        # arch/x86/kvm/svm/svm.c: svm_set_cpu_caps() sets kvm_caps.supported_perf_cap = 0;
        # svm_get_msr_feature() returns it for MSR_IA32_PERF_CAPABILITIES.
        return 0
    # arch/x86/kvm/vmx/vmx.c: vmx_get_perf_capabilities(): FW_WRITES, the host's LBR format,
    # the host's PEBS_MASK bits only when vmx_pebs_supported(), PEBS_BASELINE always
    # cleared (adaptive PEBS disallowed); PERF_CAP_PT_IDX (bit 16) is never copied.
    if not f.enable_pmu:
        return 0          # vmx_get_perf_capabilities(): if (!enable_pmu) return 0
    return Within(PERF_CAP_FW_WRITES | PERF_CAP_LBR_FMT | (PERF_CAP_PEBS_MASK & ~PERF_CAP_PEBS_BASELINE),
                  "vmx_get_perf_capabilities(): no bit 16, no PEBS baseline")


def _to_save(f: Facts, msr: int) -> bool:
    """Whether msr is in KVM's msrs_to_save (arch/x86/kvm/x86.c: kvm_init_msr_list())."""
    if msr in RELOAD or msr == PERF_CAPABILITIES:
        return False      # x86.c: not in msrs_to_save_all[]
    if msr in RTIT:
        # x86.c kvm_init_msr_list(): the RTIT MSRs only if kvm_cpu_cap_has(X86_FEATURE_INTEL_PT)
        if f.vendor == "amd" or not f.supported.get("pt"):
            return False  # svm: never set (cpuid.c "0 /*INTEL_PT*/"); vmx: pt_mode != host_guest
        raise Unmodelled("kvm-intel with Intel PT exposed (pt_mode=1): RTIT MSR list membership "
                         "depends on the PT capability leaf (intel_pt_validate_hw_cap)")
    # PEBS_ENABLE, DS_AREA, PEBS_DATA_CFG: in msrs_to_save_all[] without a filter in
    # kvm_init_msr_list(): listed iff the host's rdmsr_safe() of the MSR succeeds.
    ok = f.host_rdmsr.get(msr)
    if ok is None:
        raise Unmodelled(f"no /dev/cpu/0/msr (pebs_pt_absent --probe host_rdmsr): whether "
                         f"{msr_name(msr)} is in msrs_to_save depends on the host's rdmsr_safe()")
    return ok


def _emulated(f: Facts, msr: int) -> bool:
    # x86.c emulated_msrs_all[] holds MSR_IA32_PERF_CAPABILITIES; svm_has_emulated_msr() /
    # vmx_has_emulated_msr() keep it. None of the PEBS, RTIT or reload MSRs is there.
    return msr == PERF_CAPABILITIES


def _feature_msr(msr: int) -> bool:
    # x86.c msr_based_features_all[] (KVM_GET_MSR_FEATURE_INDEX_LIST) has PERF_CAPABILITIES,
    # which kvm_get_msr_feature() -> svm_get_msr_feature()/vmx_get_msr_feature() answers.
    return msr == PERF_CAPABILITIES


class _Vcpu:
    """One vCPU of a case: the state the MSR rules read and write."""

    def __init__(self, f: Facts, case: dict):
        self.f = f
        keep = {"keep": None, "set": 1, "clear": 0}
        self.pdcm = bool(f.supported.get("pdcm") if keep[case["pdcm"]] is None else keep[case["pdcm"]])
        if f.kernel is not None and f.kernel >= GUEST_CPU_CAPS_SINCE:
            # cpuid.h guest_cpu_cap_has() (6.14+, in place of guest_cpuid_has() in x86.c
            # kvm_get_msr_common() and pmu.h vcpu_get_perf_capabilities()): the guest's
            # CPUID bit only counts where KVM itself supports the feature
            self.pdcm = self.pdcm and bool(f.supported.get("pdcm"))
        self.pt = bool(f.supported.get("pt") if keep[case["pt"]] is None else keep[case["pt"]])
        self.ds = bool(f.supported.get("ds"))
        if f.vendor == "amd":
            # svm: vcpu->arch.perf_capabilities is never set at creation (zeroed vcpu;
            # amd_pmu_init() leaves it): 0 until user space writes it.
            self.perf_caps = 0
        else:
            # vmx/pmu_intel.c intel_pmu_init(): perf_capabilities = kvm_caps.supported_perf_cap
            if f.feature_perf_caps is None:
                raise Unmodelled("the system fd's PERF_CAPABILITIES was not readable (probe feature_perf_caps)")
            self.perf_caps = f.feature_perf_caps
        leaf_a = f.supported.get("leaf_a") or [0, 0, 0, 0]
        # pmu_intel.c intel_pmu_refresh(): version/counters from the guest's leaf 0xA, only
        # with kvm->arch.enable_pmu (the VM's copy of enable_pmu)
        self.pmu_version = (leaf_a[0] & 0xFF) if f.enable_pmu else 0
        self.nr_gp = (leaf_a[0] >> 8 & 0xFF) if f.enable_pmu else 0
        self.values: dict[int, int] = {}

    # pmu_intel.c vcpu_get_perf_capabilities(): 0 without PDCM in the guest's CPUID
    def _vcpu_perf_caps(self) -> int:
        return self.perf_caps if self.pdcm else 0

    def _intel_pmu_valid(self, msr: int) -> bool:
        """pmu.c kvm_pmu_is_valid_msr() -> pmu_intel.c intel_is_valid_msr()."""
        caps = self._vcpu_perf_caps()
        if msr == PEBS_ENABLE:
            return bool(caps & PERF_CAP_PEBS_FORMAT)
        if msr == DS_AREA:
            return self.ds                    # guest_cpuid_has(vcpu, X86_FEATURE_DS)
        if msr == PEBS_DATA_CFG:
            return bool(caps & PERF_CAP_PEBS_BASELINE) and (caps & PERF_CAP_PEBS_FORMAT) >> 8 > 3
        # default: get_gp_pmc (0xc1, 0x186, 0x4c1 + nr_gp), get_fixed_pmc (0x309 + <= 3),
        # the LBR ranges: none reaches 0x14c1.. or 0x1309..
        return False

    def _common(self, msr: int, host: bool, write: bool, data: int):
        """x86.c kvm_{get,set}_msr_common() default: the PMU, then host-initiated access to
        msrs_to_save, else KVM_MSR_RET_UNSUPPORTED, which kvm_msr_ignored_check() turns
        into success when kvm.ignore_msrs is set (kvm_{get,set}_msr_ignored_check())."""
        if host and _to_save(self.f, msr):
            if not write:
                return True, 0     # "Userspace is allowed to read MSRs that KVM reports as to-be-saved"
            if data == 0:
                return True, None  # "... allowed to write '0' to MSRs that KVM reports as to-be-saved"
        if self.f.ignore_msrs:
            return True, (None if write else 0)
        return False, None

    def access(self, msr: int, host: bool, write: bool, data: int = 0):
        """(succeeded, value read)."""
        f = self.f
        if msr == PERF_CAPABILITIES:
            if not write:
                # x86.c kvm_get_msr_common(): a guest read needs PDCM in the guest's CPUID
                if not host and not self.pdcm:
                    return False, None
                return True, self.perf_caps
            if not host:
                return False, None    # x86.c kvm_set_msr_common(): guest writes always #GP
            if f.vendor == "intel":
                # vmx.c vmx_set_msr() case MSR_IA32_PERF_CAPABILITIES
                if data and not self.pmu_version:
                    return False, None
                supported = f.feature_perf_caps or 0     # kvm_caps.supported_perf_cap
                if data & PERF_CAP_LBR_FMT and (data ^ supported) & PERF_CAP_LBR_FMT:
                    return False, None
                if data & PERF_CAP_PEBS_FORMAT and ((data ^ supported) & PERF_CAP_PEBS_MASK
                                                    or not self.ds):
                    return False, None    # (and DTES64, cpuid_model_is_consistent(): as supported)
            # x86.c kvm_set_msr_common(): data must be within kvm_get_msr_feature()'s value
            feature = _feature_perf_caps(f)
            if isinstance(feature, Within):
                feature = f.feature_perf_caps
            if data & ~feature:
                return False, None
            self.perf_caps = data
            return True, None
        if f.vendor == "amd":
            # svm.c svm_get_msr()/svm_set_msr() have no case for any of them: default ->
            # kvm_{get,set}_msr_common(); pmu.c kvm_pmu_is_valid_msr(): amd_msr_idx_to_pmc()
            # knows only the K7/F15H counter ranges and amd_is_valid_msr() returns false.
            return self._common(msr, host, write, data)
        # ---- kvm-intel
        if msr in RTIT:
            # vmx.c vmx_get_msr()/vmx_set_msr(): every RTIT case returns 1 unless
            # vmx_pt_mode_is_host_guest() (1 is not KVM_MSR_RET_UNSUPPORTED: ignore_msrs
            # does not apply, host-initiated or not)
            if f.pt_mode == 1:
                raise Unmodelled("kvm_intel.pt_mode=1 (host_guest): the RTIT MSR rules then read "
                                 "the guest's PT capabilities (vmx.c update_intel_pt_cfg)")
            return False, None
        if self._intel_pmu_valid(msr):
            if not write:
                return True, self.values.get(msr, 0)   # pmu_intel.c intel_pmu_get_msr()
            # pmu_intel.c intel_pmu_set_msr()
            if msr == PEBS_ENABLE:
                mask = ~((1 << self.nr_gp) - 1)     # intel_pmu_refresh(): no baseline
                if data != self.values.get(msr, 0) and data & mask:
                    return False, None
            elif msr == DS_AREA:
                if data >> 47 not in (0, (1 << 17) - 1):   # is_noncanonical_address (4-level)
                    return False, None
            self.values[msr] = data
            return True, None
        return self._common(msr, host, write, data)


def _cpuid_event(f: Facts) -> dict:
    """KVM_GET_SUPPORTED_CPUID (arch/x86/kvm/cpuid.c kvm_set_cpu_caps(), __do_cpuid_func())."""
    host_max = int(f.host.get("max_basic", 0))
    max_basic = min(host_max, 0x1F)              # __do_cpuid_func() case 0: min(eax, 0x1f)
    if f.vendor == "amd":
        pdcm = int(f.host.get("pdcm", 0))        # kvm_cpu_cap_mask(CPUID_1_ECX, F(PDCM)): the host's
        pt = 0                                   # "0 /*INTEL_PT*/"; svm_set_cpu_caps() never sets it
        ds = dtes64 = 0                          # "0 /* Reserved, DS, ACPI */", "0 /* DTES64, MONITOR */"
        # case 0xa: !static_cpu_has(X86_FEATURE_ARCH_PERFMON) (an AMD CPU): all zero
        leaf_a = [0, 0, 0, 0] if max_basic >= 0xA else None
    else:
        # vmx.c vmx_set_cpu_caps(): PDCM cleared without enable_pmu; INTEL_PT set only when
        # vmx_pt_mode_is_host_guest(); DS and DTES64 only when vmx_pebs_supported()
        pdcm = int(bool(f.host.get("pdcm")) and f.enable_pmu)
        pt = int(f.pt_mode == 1 and bool(f.host.get("pt")))
        ds = Within(1, "vmx_pebs_supported()")
        dtes64 = Within(1, "vmx_pebs_supported()")
        leaf_a = Leaf0xA() if max_basic >= 0xA else None
    # case 0x14: all zero without kvm_cpu_cap_has(X86_FEATURE_INTEL_PT), no subleaves
    if pt and max_basic >= 0x14:
        leaf_14, n14 = Within((1 << 32) - 1, "PT exposed: the host's leaf 0x14"), Within(0xFF, "subleaves")
    elif max_basic >= 0x14:
        leaf_14, n14 = [0, 0, 0, 0], 1
    else:
        leaf_14, n14 = None, 0
    if isinstance(leaf_14, Within):
        leaf_14 = _AnyList()
    return {"op": "cpuid", "ret": 0, "pdcm": pdcm, "dtes64": dtes64, "ds": ds, "pt": pt,
            "max_basic": max_basic, "leaf_a": leaf_a, "leaf_14": leaf_14, "leaf_14_entries": n14}


class _AnyList:
    def __eq__(self, other):
        return other is None or isinstance(other, list)

    def __repr__(self):
        return "<any leaf>"


def predict(case: dict, probe: dict) -> list[dict]:
    """The events a kernel without PEBS-via-PT prints for `case` (no `script` tag, no
    `done`), for the vendor and module parameters the probe saw. Raises Unmodelled."""
    c = normalise(case)
    f = Facts.of(probe)
    msr, value = c["msr"], c["value"]
    events: list[dict] = []
    vcpu = None
    for op in c["ops"]:
        if op in NEEDS_VM and vcpu is None:
            vcpu = _Vcpu(f, c)
            # KVM_SET_CPUID2 takes the supported CPUID with PDCM/PT flipped: x86 KVM does not
            # check feature bits against what it supports (cpuid.c kvm_vcpu_ioctl_set_cpuid2)
            events.append({"op": "setup", "ok": True})
        if op == "cpuid":
            events.append(_cpuid_event(f))
        elif op == "msr_list":
            # x86.c kvm_arch_dev_ioctl(KVM_GET_MSR_INDEX_LIST): msrs_to_save + emulated_msrs
            events.append({"op": "msr_list", "msr": msr,
                           "listed": _to_save(f, msr) or _emulated(f, msr)})
        elif op == "feature_list":
            events.append({"op": "feature_list", "msr": msr, "listed": _feature_msr(msr)})
        elif op == "feature_get":
            # x86.c do_get_msr_feature(): kvm_get_msr_feature(); any other MSR is
            # KVM_MSR_RET_UNSUPPORTED from svm/vmx_get_msr_feature() (ignore_msrs: 0)
            if msr == PERF_CAPABILITIES:
                events.append({"op": "feature_get", "msr": msr, "ret": 1, "value": _feature_perf_caps(f)})
            elif f.ignore_msrs:
                events.append({"op": "feature_get", "msr": msr, "ret": 1, "value": 0})
            else:
                events.append({"op": "feature_get", "msr": msr, "ret": 0, "value": None})
        elif op in ("guest_rdmsr", "guest_rdmsr2"):
            # x86.c kvm_emulate_rdmsr(): a non-zero result is #GP (no user-space MSR exits
            # enabled); the guest's RDMSR is intercepted (svm msrpm / vmx MSR bitmap)
            ok, val = vcpu.access(msr, host=False, write=False)
            events.append({"op": "guest_rdmsr", "msr": msr, "result": "ok" if ok else "fault",
                           "value": val if ok else None})
        elif op == "guest_wrmsr":
            ok, _ = vcpu.access(msr, host=False, write=True, data=value)
            events.append({"op": "guest_wrmsr", "msr": msr, "value": value,
                           "result": "ok" if ok else "fault"})
        elif op == "host_get":
            # x86.c msr_io()/__msr_io(): the number of MSRs done, 0 when the first is refused
            ok, val = vcpu.access(msr, host=True, write=False)
            events.append({"op": "host_get", "msr": msr, "ret": int(ok), "value": val if ok else None})
        elif op in ("host_set", "host_set0"):
            data = value if op == "host_set" else 0
            ok, _ = vcpu.access(msr, host=True, write=True, data=data)
            events.append({"op": "host_set", "msr": msr, "value": data, "ret": int(ok)})
    return events


def compare(case: dict, predicted: list[dict], observed: list[dict]) -> list[tuple[str, str, object, object]]:
    """The differences (MSR or CPUID, field, expected, observed), in event order. A case's
    `fields` (CPUID cases) limits the comparison of its cpuid event to those keys."""
    fields = case.get("fields")
    if fields:
        keep = lambda ev: {k: v for k, v in ev.items() if ev.get("op") != "cpuid" or k in ("op", *fields)}  # noqa: E731
        predicted, observed = [keep(e) for e in predicted], [keep(e) for e in observed]
    diffs = []
    for i in range(max(len(predicted), len(observed))):
        want = predicted[i] if i < len(predicted) else None
        got = observed[i] if i < len(observed) else None
        if want is None or got is None:
            ev = want or got
            diffs.append((msr_name(ev.get("msr")), f"event {i} ({ev['op']})",
                          want, got))
            continue
        where = msr_name(want.get("msr"))
        if want.get("op") != got.get("op"):
            diffs.append((where, f"event {i} op", want.get("op"), got.get("op")))
            continue
        for key in sorted(set(want) | set(got)):
            if key not in want or key not in got or not (want[key] == got[key]):
                diffs.append((where, f"{want['op']}.{key}", want.get(key, "<absent>"), got.get(key, "<absent>")))
    return diffs
