"""Reference model of KVM's Hyper-V synthetic debugger (syndbg).

`predict(script, profile)` executes an op-script and returns the events the
payload (guests/syndbg/syndbg.c) prints for it, without the `script` tag.

Profiles:

- ``mainline``: the merged semantics (5.8 onwards), as in Linux 6.1
  (Debian 6.1.192) arch/x86/kvm/hyperv.c; later kernels keep this logic.
- ``v7``: the v7 posting of the series (2020-03-19) applied to the same base:
  KVM_CAP_HYPERV_SYNDBG (180) and the VM-wide ``active`` flag replace the
  CPUID 0x40000082 gate; inactive MSR access is ignored (no #GP) and every
  syndbg MSR read returns 0 (``*pdata = data`` with ``data = 0`` after
  ``syndbg_get_msr()`` in v7's kvm_hv_get_msr_pw()); host writes to CONTROL
  and PENDING_BUFFER exit too (no ``host`` parameter yet); hypercalls need
  ``active``, and the Hyper-V hypercall path needs the hypercall page or
  (``active`` and GUEST_OS_ID != 0); KVM_GET_SUPPORTED_HV_CPUID always lists
  0x40000080/81/82 after NESTED_FEATURES and still drops the last entry when
  eVMCS is off (so 0x40000082 is dropped), with 0x40000000.EAX 0x40000082
  only when active.

Rules: every branch that decides an observable outcome calls ``hit()`` with a
rule id ``<kernel file>:<function>:<branch>`` (harness/reference/rules.py)
naming the 6.1 function it mirrors; ``UNREACHABLE`` lists, with the reason,
the rules no script can reach on this machine under the default profile.

Op-script (a dict; every key but ``actions`` optional)::

    {"vendor": "amd" | "intel",          # CPU vendor of the host running the guest kernel
     "mode": 64 | 32,                    # long mode or 32-bit protected mode
     "quirk_fix": True,                  # False: KVM_CAP_DISABLE_QUIRKS2(FIX_HYPERCALL_INSN)
     "user_msr": False,                  # True: KVM_CAP_X86_USER_SPACE_MSR(INVAL)
     "smt": False,                       # cpu_smt_possible() in the kernel under test
     "master_clock": True,               # KVM's master clock (guest kernel clocksource tsc)
     "vcpus": [{"hv": True, "sd": "set" | "zero" | "absent" | <EAX>, "dm": True,
                "dbg": True, "hc": True, "xmm": True, "time_ref": True, "reset": True,
                "ref_tsc": True, "reenlight": True, "crash": True, "post_msg": True,
                "tlb_flush": True, "enforce": False}],
     "actions": [{"op": "wrmsr", "vcpu": 0, "msr": 0x400000f1, "value": 1, "status": 7}, ...]}

The vCPU keys are its CPUID: ``hv`` Hv#1 in 0x40000001.EAX; ``sd`` the
0x40000082 entry (absent, EAX 0, EAX 2, or any EAX); FEATURES (0x40000003)
``hc`` EAX bit 5, ``time_ref`` EAX bit 1, ``reset`` EAX bit 7, ``ref_tsc`` EAX
bit 9, ``reenlight`` EAX bit 13, ``dbg`` EBX bit 11, ``post_msg`` EBX bit 4,
``dm`` EDX bit 11, ``xmm`` EDX bit 4, ``crash`` EDX bit 10; ENLIGHTMENT_INFO
(0x40000004) ``tlb_flush`` EAX bit 2; ``enforce`` KVM_CAP_HYPERV_ENFORCE_CPUID.

Action kinds (see ACTION_KINDS): guest ``rdmsr``, ``wrmsr``, ``hcall``, ``nop``
(optional ``cpl``: 0 or 3, long mode only; optional ``cpu_mode``: "real" or
"compat" runs the action in real mode or in compatibility mode instead of the
script's mode); host ``set_msr``, ``get_msr``, ``set_cpuid``, ``check_ext``,
``enable_cap``, ``hv_cpuid``, ``msr_list``, ``peek`` (8 bytes of guest memory
at ``gpa``: shows the hypercall page and the TSC page KVM writes).  A ``wrmsr``
may carry ``status`` and ``exit_msr``: what the VMM writes into
run->hyperv.u.syndbg.status / .msr at a syndbg exit before re-entry.  An
``hcall`` event lists the registers the hypercall must preserve (the payload
loads SENTINELS into the registers that carry no input).

Besides the six syndbg MSRs the model covers every partition-wide Hyper-V MSR that
kvm_hv_set_msr_pw() / kvm_hv_get_msr_pw() handle (GUEST_OS_ID, HYPERCALL, RESET,
TIME_REF_COUNT, REFERENCE_TSC and its TSC page, CRASH_P0-P4, CRASH_CTL,
REENLIGHTENMENT_CONTROL, TSC_EMULATION_CONTROL/STATUS), since a broken dispatcher
breaks syndbg too.  TIME_REF_COUNT is a clock: the payload prints a read of it as
1 when it is a plausible count (0 < value < 2^40).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

from harness.reference.rules import hit

PROFILES = ("mainline", "v7")

# arch/x86/kvm/hyperv.h
MSR_GUEST_OS_ID = 0x40000000
MSR_HYPERCALL = 0x40000001
MSR_CONTROL = 0x400000F1
MSR_STATUS = 0x400000F2
MSR_SEND = 0x400000F3
MSR_RECV = 0x400000F4
MSR_PENDING = 0x400000F5
MSR_OPTIONS = 0x400000FF
SYNDBG_MSRS = (MSR_CONTROL, MSR_STATUS, MSR_SEND, MSR_RECV, MSR_PENDING, MSR_OPTIONS)
OPTION_USE_HCALLS = 1 << 2
# arch/x86/include/asm/hyperv-tlfs.h, include/asm-generic/hyperv-tlfs.h
MSR_RESET = 0x40000003
MSR_TIME_REF_COUNT = 0x40000020
MSR_REFERENCE_TSC = 0x40000021
MSR_CRASH_P0 = 0x40000100
MSR_CRASH_CTL = 0x40000105
MSR_REENLIGHTENMENT_CONTROL = 0x40000106
MSR_TSC_EMULATION_CONTROL = 0x40000107
MSR_TSC_EMULATION_STATUS = 0x40000108
CRASH_MSRS = tuple(range(MSR_CRASH_P0, MSR_CRASH_P0 + 5))
REENLIGHTENMENT_MSRS = (MSR_REENLIGHTENMENT_CONTROL, MSR_TSC_EMULATION_CONTROL,
                        MSR_TSC_EMULATION_STATUS)
# partition-wide MSRs stored as written (kvm_hv_set_msr_pw() / kvm_hv_get_msr_pw())
STORED_MSRS = (MSR_REFERENCE_TSC,) + REENLIGHTENMENT_MSRS + CRASH_MSRS
OTHER_PW_MSRS = STORED_MSRS + (MSR_RESET, MSR_TIME_REF_COUNT, MSR_CRASH_CTL)
CRASH_CTL_NOTIFY = 1 << 63
TSC_REFERENCE_ENABLE = 1
KVM_EXIT_SYSTEM_EVENT_RESET, KVM_EXIT_SYSTEM_EVENT_CRASH = 2, 3   # include/uapi/linux/kvm.h

# include/asm-generic/hyperv-tlfs.h
HVCALL_POST_DEBUG_DATA = 0x69
HVCALL_RETRIEVE_DEBUG_DATA = 0x6A
HVCALL_RESET_DEBUG_SESSION = 0x6B
DEBUG_CALLS = (HVCALL_POST_DEBUG_DATA, HVCALL_RETRIEVE_DEBUG_DATA, HVCALL_RESET_DEBUG_SESSION)
FAST_BIT = 1 << 16
RSVD_MASK = (0xF << 60) | (0xF << 44) | (0x1F << 27)
ST_INVALID_HYPERCALL_CODE = 2
ST_INVALID_HYPERCALL_INPUT = 3
ST_INVALID_PARAMETER = 5
ST_ACCESS_DENIED = 6
ST_OPERATION_DENIED = 8

KVM_EXIT_HYPERV_HCALL = 2
KVM_EXIT_HYPERV_SYNDBG = 3
KVM_MSR_EXIT_REASON_INVAL = 1
KVM_ENOSYS = 1000
KVM_EPERM = 1
EINVAL, E2BIG = 22, 7
CAP_HYPERV_SYNDBG_V7 = 180          # KVM_CAP_S390_PROTECTED in mainline
UD, GP = 6, 13

VMCALL = 0x0F01C1
VMMCALL = 0x0F01D9
INSN_BYTES = {"vmcall": VMCALL, "vmmcall": VMMCALL}
GUEST_MEM = 0x200000                 # guests/lib/kvmlib.h GUEST_MEM_SIZE

SIG = (0x756E694C, 0x564B2078, 0x7648204D)   # "Linux KVM Hv"
HV_CPUID_FUNCTIONS_61 = [0x40000000, 0x40000001, 0x40000002, 0x40000003, 0x40000004,
                         0x40000005, 0x40000080, 0x40000081, 0x40000082, 0x4000000A]
HV_CPUID_FUNCTIONS_V7 = [0x40000000, 0x40000001, 0x40000002, 0x40000003, 0x40000004,
                         0x40000005, 0x4000000A, 0x40000080, 0x40000081, 0x40000082]

GUEST_OPS = ("rdmsr", "wrmsr", "hcall", "nop")
HOST_OPS = ("set_msr", "get_msr", "set_cpuid", "check_ext", "enable_cap", "hv_cpuid", "msr_list",
            "peek")
ACTION_KINDS = GUEST_OPS + HOST_OPS
# A guest action's mode: the script's ("long" for mode 64, "prot32" for 32) or cpu_mode
CPU_MODES = ("real", "compat")

U64 = (1 << 64) - 1
U32 = (1 << 32) - 1

DEFAULT_VCPU = {"hv": True, "sd": "set", "dm": True, "dbg": True, "hc": True, "xmm": True,
                "time_ref": True, "reset": True, "ref_tsc": True, "reenlight": True,
                "crash": True, "post_msg": True, "tlb_flush": True, "enforce": False}
CPUID_KEYS = ("hv", "sd", "dm", "dbg", "hc", "xmm", "time_ref", "reset", "ref_tsc", "reenlight",
              "crash", "post_msg", "tlb_flush")
SD_NAMES = {"absent": None, "zero": 0, "set": 2}
# HVCALL_FLUSH_VIRTUAL_ADDRESS_SPACE: the one XMM fast-input code the model knows
HVCALL_FLUSH_VIRTUAL_ADDRESS_SPACE = 0x0002
HVCALL_POST_MESSAGE = 0x005C

# What the payload loads into the registers an hcall does not use as input (the
# hypercall must preserve them); guests/syndbg/syndbg.c SENT_*.
SENTINELS = {"rbx": 0xB0B1B2B3B4B5B6B7, "rsi": 0x5050515152525353, "rdi": 0xD0D1D2D3D4D5D6D7,
             "r8": 0x0808080808080808, "r9": 0x0909090909090909, "r10": 0x1010101010101010,
             "r11": 0x1111111111111111, "r12": 0x1212121212121212, "r13": 0x1313131313131313,
             "r14": 0x1414141414141414}

# hv->hv_tsc_page_status (arch/x86/include/asm/kvm_host.h enum hv_tsc_page_status)
TSC_UNSET, TSC_GUEST_CHANGED, TSC_HOST_CHANGED, TSC_SET, TSC_BROKEN = (
    "unset", "guest_changed", "host_changed", "set", "broken")
TSC_REF_SIZE = 24                    # struct ms_hyperv_tsc_page: sequence, reserved1, scale, offset

# Rules this model states that no script reaches on this machine under the default
# profile (the rules of the v7 profile are reached only when a run expects v7).
_V7 = ("profile v7 only (the 2020 v7 posting, never merged): reached when a run is "
       "judged against --profile syndbg=v7, not under the default mainline profile")
UNREACHABLE = {
    "hyperv.c:kvm_hv_is_syndbg_enabled:v7-active-flag": _V7,
    "hyperv.h:kvm_hv_hypercall_enabled:v7-page-or-active": _V7,
    "hyperv.c:syndbg_set_msr:v7-inactive-ignored": _V7,
    "hyperv.c:syndbg_set_msr:v7-control-pending-exit": _V7,
    "hyperv.c:syndbg_set_msr:v7-stored": _V7,
    "hyperv.c:kvm_hv_get_msr_pw:v7-syndbg-reads-zero": _V7,
    "x86.c:vcpu_enter_guest:v7-host-write-exit": _V7,
    "hyperv.c:syndbg_exit:v7-host-write-pending": _V7,
    "x86.c:kvm_vm_ioctl_check_extension:v7-syndbg-cap": _V7,
    "x86.c:kvm_vcpu_ioctl_enable_cap:v7-syndbg-cap-activates": _V7,
    "hyperv.c:kvm_vcpu_ioctl_get_hv_cpuid:v7-entries": _V7,
    "hyperv.c:kvm_get_hv_cpuid:smt-possible":
        "cpu_smt_possible() is false in the guest kernel here (QEMU -smp 2 gives one "
        "thread per core; /sys/devices/system/cpu/smt/control is neither on nor off)",
    "hyperv.c:kvm_get_hv_cpuid:evmcs":
        "the machine's CPU is AMD (EPYC under TCG): kvm-amd has no enlightened VMCS",
    "hyperv.c:compute_tsc_page_parameters:tsc-not-stable":
        "needs a guest kernel whose clocksource is not tsc (no KVM master clock, so no "
        "PVCLOCK_TSC_STABLE_BIT); the QEMU guest here boots with tsc=reliable",
}


def _sd_eax(sd) -> int | None:  # not a rule: input normalisation
    """EAX of the vCPU's 0x40000082 entry, None when there is no entry."""
    return SD_NAMES[sd] if isinstance(sd, str) else sd


def cpu_mode(script: dict, action: dict) -> str:
    """A guest action's CPU mode: "long", "prot32", "real" or "compat"."""
    return action.get("cpu_mode") or {64: "long", 32: "prot32"}[script["mode"]]


# The guest pages the payload itself occupies (guests/lib/kvmlib.h): an enabled
# hypercall or TSC page there makes KVM overwrite the payload's tables, code or
# stacks, which no model predicts (the vCPU then runs garbage and never exits).
PAYLOAD_PAGES = ((0x1000, 0x8000, "page tables, GDT, TSS and IDTs"),
                 (0x10000, 0x20000, "guest code"), (0x40000, 0x4C000, "stacks"))
PAGE_MSRS = {MSR_HYPERCALL: "hypercall page", MSR_REFERENCE_TSC: "TSC page"}


def payload_page(gpa: int) -> str | None:  # not a rule: the payload's memory layout
    """What of the payload's own lives at `gpa`, or None for a page it leaves free."""
    return next((what for lo, hi, what in PAYLOAD_PAGES if lo <= gpa < hi), None)


def normalise(script: dict) -> dict:  # not a rule: input normalisation
    """The script with every default filled in (what the encoder and the model see)."""
    s = copy.deepcopy(script)
    s.setdefault("vendor", "amd")
    s.setdefault("mode", 64)
    s.setdefault("quirk_fix", True)
    s.setdefault("user_msr", False)
    s.setdefault("smt", False)
    s.setdefault("master_clock", True)
    if s["mode"] not in (64, 32):
        raise ValueError(f"mode {s['mode']!r}: 64 or 32")
    vcpus = s.get("vcpus") or [{}]
    s["vcpus"] = [{**DEFAULT_VCPU, **v} for v in vcpus]
    for v in s["vcpus"]:
        _check_sd(v["sd"])
    s.setdefault("actions", [])
    for a in s["actions"]:
        if a["op"] not in ACTION_KINDS:
            raise ValueError(f"unknown op {a['op']!r}")
        if a["op"] == "peek":
            a.setdefault("gpa", 0)
            if not 0 <= a["gpa"] <= GUEST_MEM - 8:
                raise ValueError(f"peek at {a['gpa']:#x}, outside guest memory")
        if a["op"] not in ("check_ext", "msr_list", "peek") and not (a["op"] == "hv_cpuid" and a.get("fd", "system") == "system"):
            a.setdefault("vcpu", 0)
            if not 0 <= a["vcpu"] < len(s["vcpus"]):
                raise ValueError(f"{a['op']} on vcpu {a['vcpu']}, the script has {len(s['vcpus'])}")
        if a["op"] in ("wrmsr", "set_msr") and a.get("msr") in PAGE_MSRS and a.get("value", 0) & 1:
            owner = payload_page(a["value"] & ~0xFFF)
            if owner:
                raise ValueError(f"{a['op']} {a['msr']:#x} = {a['value']:#x} makes KVM write its "
                                 f"{PAGE_MSRS[a['msr']]} over the payload's {owner} "
                                 f"(guests/lib/kvmlib.h)")
        if a["op"] == "set_cpuid" and "sd" in a:
            _check_sd(a["sd"])
        if a["op"] in GUEST_OPS:
            a.setdefault("cpl", 0)
            if a["cpl"] not in (0, 3) or (a["cpl"] == 3 and cpu_mode(s, a) != "long"):
                raise ValueError(f"cpl {a['cpl']} in {cpu_mode(s, a)} mode")
            if a.get("cpu_mode") is not None and a["cpu_mode"] not in CPU_MODES:
                raise ValueError(f"cpu_mode {a['cpu_mode']!r}: one of {', '.join(CPU_MODES)}")
        if a["op"] == "hcall":
            a.setdefault("insn", "vmcall")
            # "native"/"foreign": the vendor's own hypercall instruction or the other one
            native = "vmmcall" if s["vendor"] == "amd" else "vmcall"
            if a["insn"] == "native":
                a["insn"] = native
            elif a["insn"] == "foreign":
                a["insn"] = "vmcall" if native == "vmmcall" else "vmmcall"
            if a["insn"] not in INSN_BYTES:
                raise ValueError(f"hcall insn {a['insn']!r}")
            if a["insn"] != native and a.get("cpu_mode") == "real":
                # x86.c emulator_fix_hypercall() writes the native instruction at the
                # linear address RIP, without CS.base: in real mode (CS.base = the code
                # blob) it would overwrite other guest memory and re-execute for ever
                raise ValueError("the foreign hypercall instruction in real mode")
            a.setdefault("ingpa", 0)
            a.setdefault("outgpa", 0)
            a.setdefault("rax", 0)
            a.setdefault("result", 0)
        if a["op"] == "hv_cpuid":
            a.setdefault("fd", "system")
            a.setdefault("nent", 64)
    return s


def _check_sd(sd) -> None:  # not a rule: input validation
    if not (sd in SD_NAMES or (isinstance(sd, int) and not isinstance(sd, bool) and 0 <= sd <= U32)):
        raise ValueError(f"sd {sd!r}: absent, zero, set or a 32-bit EAX")


def cpuid_table(cfg: dict) -> tuple:
    """What KVM_SET_CPUID2 receives for a vCPU configuration (two configurations
    that build the same table are the same table: "set" is EAX 2)."""
    return tuple(_sd_eax(cfg[k]) if k == "sd" else bool(cfg[k]) for k in CPUID_KEYS)


@dataclass
class _Vcpu:
    cfg: dict
    enforce: bool
    ran: bool = False
    # hv_vcpu->exit buffered by a host write (v7 only), delivered on the next KVM_RUN
    pending_exit: dict | None = None
    # KVM_REQ_HV_RESET made by a host write of RESET = 1, delivered on the next KVM_RUN
    pending_reset: bool = False
    # KVM_REQ_MASTERCLOCK_UPDATE, handled on the next KVM_RUN: made at vCPU creation
    # (x86.c: kvm_synchronize_tsc() -> kvm_track_tsc_matching(): the host clock is TSC
    # based and the vCPUs' TSCs match) and by a host write of REFERENCE_TSC
    pending_clock: bool = False

    @property
    def hv_enabled(self) -> bool:
        # arch/x86/kvm/cpuid.c: kvm_cpuid_has_hyperv(): 0x40000001.EAX == "Hv#1"
        return bool(self.cfg["hv"])


@dataclass
class _Vm:
    syndbg: dict = field(default_factory=lambda: {m: 0 for m in SYNDBG_MSRS})
    guest_os_id: int = 0
    hypercall: int = 0
    active: bool = False              # v7: KVM_CAP_HYPERV_SYNDBG enabled on some vCPU
    sites: dict = field(default_factory=dict)
    # the other partition-wide MSRs: STORED_MSRS as written, CRASH_CTL (host-written)
    other: dict = field(default_factory=lambda: {m: 0 for m in STORED_MSRS + (MSR_CRASH_CTL,)})
    # guest memory bytes KVM wrote (hypercall page, TSC page; None: the TSC page's
    # clock-dependent scale and offset); everything else peeks as 0
    mem: dict = field(default_factory=dict)
    tsc_status: str = TSC_UNSET       # hv->hv_tsc_page_status
    tsc_reserved1: int = 0            # hv->tsc_ref.reserved1, written back with the page


class _Model:
    def __init__(self, script: dict, profile: str):
        if profile not in PROFILES:  # not a rule: input validation
            raise ValueError(f"unknown syndbg profile {profile!r}; known: {', '.join(PROFILES)}")
        self.s = normalise(script)
        self.v7 = profile == "v7"
        self.vm = _Vm()
        self.vcpus = [_Vcpu(cfg=v, enforce=bool(v["enforce"]), pending_clock=self.s["master_clock"])
                      for v in self.s["vcpus"]]
        self.native = "vmmcall" if self.s["vendor"] == "amd" else "vmcall"

    # ---- predicates ------------------------------------------------------
    def syndbg_on(self, v: _Vcpu) -> bool:
        """hyperv.c: kvm_hv_is_syndbg_enabled(); callers have checked hyperv_enabled
        (kvm_hv_set_cpuid() caches 0x40000082.EAX only for a Hyper-V vCPU)."""
        if self.v7:
            # v7 hyperv.c: syndbg->active, set by KVM_ENABLE_CAP(KVM_CAP_HYPERV_SYNDBG)
            hit("hyperv.c:kvm_hv_is_syndbg_enabled:v7-active-flag")
            return self.vm.active
        eax = _sd_eax(v.cfg["sd"])
        if eax is None:
            # kvm_hv_set_cpuid(): no 0x40000082 entry, cpuid_cache.syndbg_cap_eax stays 0
            hit("hyperv.c:kvm_hv_set_cpuid:no-syndbg-platform-leaf")
            return False
        if eax & 0x2:
            # syndbg_cap_eax & HV_X64_SYNDBG_CAP_ALLOW_KERNEL_DEBUGGING (bit 1), whatever
            # the other EAX bits are
            hit("hyperv.c:kvm_hv_is_syndbg_enabled:allow-kernel-debugging")
            return True
        hit("hyperv.c:kvm_hv_is_syndbg_enabled:allow-kernel-debugging-clear")
        return False

    def msr_access_ok(self, v: _Vcpu, msr: int) -> bool:
        """hyperv.c: hv_check_msr_access() for a guest access of a Hyper-V vCPU."""
        if not v.enforce:
            hit("hyperv.c:hv_check_msr_access:not-enforced")
            return True
        cfg = v.cfg
        if msr in (MSR_GUEST_OS_ID, MSR_HYPERCALL):
            if cfg["hc"]:               # FEATURES.EAX HV_MSR_HYPERCALL_AVAILABLE
                hit("hyperv.c:hv_check_msr_access:hypercall-available")
                return True
            hit("hyperv.c:hv_check_msr_access:hypercall-denied")
            return False
        if msr == MSR_TIME_REF_COUNT:
            if cfg["time_ref"]:         # FEATURES.EAX HV_MSR_TIME_REF_COUNT_AVAILABLE
                hit("hyperv.c:hv_check_msr_access:time-ref-count-available")
                return True
            hit("hyperv.c:hv_check_msr_access:time-ref-count-denied")
            return False
        if msr == MSR_RESET:
            if cfg["reset"]:            # FEATURES.EAX HV_MSR_RESET_AVAILABLE
                hit("hyperv.c:hv_check_msr_access:reset-available")
                return True
            hit("hyperv.c:hv_check_msr_access:reset-denied")
            return False
        if msr == MSR_REFERENCE_TSC:
            if cfg["ref_tsc"]:          # FEATURES.EAX HV_MSR_REFERENCE_TSC_AVAILABLE
                hit("hyperv.c:hv_check_msr_access:reference-tsc-available")
                return True
            hit("hyperv.c:hv_check_msr_access:reference-tsc-denied")
            return False
        if msr in REENLIGHTENMENT_MSRS:
            if cfg["reenlight"]:        # FEATURES.EAX HV_ACCESS_REENLIGHTENMENT
                hit("hyperv.c:hv_check_msr_access:reenlightenment-available")
                return True
            hit("hyperv.c:hv_check_msr_access:reenlightenment-denied")
            return False
        if msr in CRASH_MSRS or msr == MSR_CRASH_CTL:
            if cfg["crash"]:            # FEATURES.EDX HV_FEATURE_GUEST_CRASH_MSR_AVAILABLE
                hit("hyperv.c:hv_check_msr_access:crash-msrs-available")
                return True
            hit("hyperv.c:hv_check_msr_access:crash-msrs-denied")
            return False
        # the six syndbg MSRs
        if cfg["dm"]:                   # FEATURES.EDX HV_FEATURE_DEBUG_MSRS_AVAILABLE
            hit("hyperv.c:hv_check_msr_access:debug-msrs-available")
            return True
        hit("hyperv.c:hv_check_msr_access:debug-msrs-denied")
        return False

    def hypercall_enabled(self, v: _Vcpu) -> bool:
        """hyperv.h: kvm_hv_hypercall_enabled(): hyperv_enabled && hv_guest_os_id."""
        if self.v7:
            # v7 patch 4: hypercall page enabled, or syndbg active and GUEST_OS_ID set
            hit("hyperv.h:kvm_hv_hypercall_enabled:v7-page-or-active")
            on = bool(self.vm.hypercall & 1) or (self.vm.active and self.vm.guest_os_id != 0)
            return v.hv_enabled and on
        if not v.hv_enabled:
            hit("hyperv.h:kvm_hv_hypercall_enabled:hyperv-disabled")
            return False
        if self.vm.guest_os_id == 0:
            hit("hyperv.h:kvm_hv_hypercall_enabled:no-guest-os-id")
            return False
        hit("hyperv.h:kvm_hv_hypercall_enabled:guest-os-id-set")
        return True

    def hypercall_access_ok(self, v: _Vcpu, code: int) -> bool:
        """hyperv.c: hv_check_hypercall_access()."""
        if not v.enforce:
            hit("hyperv.c:hv_check_hypercall_access:not-enforced")
            return True
        cfg = v.cfg
        if code == HVCALL_POST_MESSAGE:
            if cfg["post_msg"]:         # FEATURES.EBX HV_POST_MESSAGES
                hit("hyperv.c:hv_check_hypercall_access:post-messages")
                return True
            hit("hyperv.c:hv_check_hypercall_access:post-messages-denied")
            return False
        if code in DEBUG_CALLS:
            if not self.syndbg_on(v):
                # "Return 'true' when SynDBG is disabled so the resulting code will be
                # HV_STATUS_INVALID_HYPERCALL_CODE"
                hit("hyperv.c:hv_check_hypercall_access:debug-syndbg-disabled-passes")
                return True
            if cfg["dbg"]:              # FEATURES.EBX HV_DEBUGGING
                hit("hyperv.c:hv_check_hypercall_access:debugging")
                return True
            hit("hyperv.c:hv_check_hypercall_access:debugging-denied")
            return False
        if code == HVCALL_FLUSH_VIRTUAL_ADDRESS_SPACE:
            if cfg["tlb_flush"]:        # ENLIGHTMENT_INFO.EAX HV_X64_REMOTE_TLB_FLUSH_RECOMMENDED
                hit("hyperv.c:hv_check_hypercall_access:remote-tlb-flush")
                return True
            hit("hyperv.c:hv_check_hypercall_access:remote-tlb-flush-denied")
            return False
        hit("hyperv.c:hv_check_hypercall_access:other-codes-allowed")
        return True

    # ---- MSR semantics ----------------------------------------------------
    def _syndbg_exit(self, msr: int, rip: int) -> dict:
        # arch/x86/kvm/hyperv.c: syndbg_exit(); `status` is never written by KVM, so the
        # exit carries the zeroed hv_vcpu->exit buffer's 0 (no SynIC exits here)
        d = self.vm.syndbg
        return {"reason": "hyperv", "type": KVM_EXIT_HYPERV_SYNDBG, "msr": msr,
                "control": d[MSR_CONTROL], "status": 0, "send_page": d[MSR_SEND],
                "recv_page": d[MSR_RECV], "pending_page": d[MSR_PENDING], "rip": rip}

    def hv_set_msr(self, v: _Vcpu, msr: int, value: int, host: bool) -> tuple[int, dict | None]:
        """(return code, exit or None); return code 0 = ok, 1 = fail (as the kernel)."""
        # arch/x86/kvm/hyperv.c: kvm_hv_set_msr_common(): guest access needs hyperv_enabled
        if not host and not v.hv_enabled:
            hit("hyperv.c:kvm_hv_set_msr_common:hyperv-disabled")
            return 1, None
        # kvm_hv_set_msr_pw(): hv_check_msr_access() for guest access
        if not host and not self.msr_access_ok(v, msr):
            hit("hyperv.c:kvm_hv_set_msr_pw:access-denied")
            return 1, None
        if msr == MSR_GUEST_OS_ID:
            hit("hyperv.c:kvm_hv_set_msr_pw:guest-os-id")
            self.vm.guest_os_id = value
            if value == 0:
                # "setting guest os id to zero disables hypercall page"
                hit("hyperv.c:kvm_hv_set_msr_pw:guest-os-id-zero-disables-page")
                self.vm.hypercall &= ~1
            return 0, None
        if msr == MSR_HYPERCALL:
            hit("hyperv.c:kvm_hv_set_msr_pw:hypercall")
            return self._hypercall_set(value)
        if msr in OTHER_PW_MSRS:
            hit("hyperv.c:kvm_hv_set_msr_pw:other-partition-wide")
            return self._other_set(v, msr, value, host)
        if self.v7:
            # v7 hyperv.c: void syndbg_set_msr(): silently ignored when inactive, exits
            # for CONTROL/PENDING_BUFFER whoever writes (no `host` parameter)
            if not self.vm.active:
                hit("hyperv.c:syndbg_set_msr:v7-inactive-ignored")
                return 0, None
            self.vm.syndbg[msr] = value
            if msr in (MSR_CONTROL, MSR_PENDING):
                hit("hyperv.c:syndbg_set_msr:v7-control-pending-exit")
                return 0, self._syndbg_exit(msr, 2 if not host else 0)
            hit("hyperv.c:syndbg_set_msr:v7-stored")
            return 0, None
        # arch/x86/kvm/hyperv.c: syndbg_set_msr(): guest access needs syndbg enabled
        if not host and not self.syndbg_on(v):
            hit("hyperv.c:syndbg_set_msr:syndbg-disabled")
            return 1, None
        self.vm.syndbg[msr] = value
        if host:
            # syndbg_set_msr(): `if (!host) syndbg_exit()`: host writes store only
            hit("hyperv.c:syndbg_set_msr:host-write-no-exit")
            return 0, None
        if msr == MSR_CONTROL:
            hit("hyperv.c:syndbg_set_msr:control-exits")
            return 0, self._syndbg_exit(msr, 2)
        if msr == MSR_PENDING:
            hit("hyperv.c:syndbg_set_msr:pending-buffer-exits")
            return 0, self._syndbg_exit(msr, 2)
        hit("hyperv.c:syndbg_set_msr:stored-no-exit")       # STATUS, SEND, RECV, OPTIONS
        return 0, None

    def _hypercall_set(self, value: int) -> tuple[int, None]:
        """kvm_hv_set_msr_pw(): HV_X64_MSR_HYPERCALL."""
        if self.vm.guest_os_id == 0:
            # "if guest os id is not set hypercall should remain disabled"
            hit("hyperv.c:kvm_hv_set_msr_pw:hypercall-ignored-without-guest-os-id")
            return 0, None
        if not value & 1:
            hit("hyperv.c:kvm_hv_set_msr_pw:hypercall-page-disabled")
            self.vm.hypercall = value
            return 0, None
        # the vendor's vmcall/vmmcall (kvm_x86_patch_hypercall) then `ret`, 4 bytes at the
        # page start (no Xen prefix), written with kvm_vcpu_write_guest()
        page = value & ~0xFFF & U64
        if page + 4 > GUEST_MEM:
            hit("hyperv.c:kvm_hv_set_msr_pw:hypercall-page-write-fails")
            return 1, None
        hit("hyperv.c:kvm_hv_set_msr_pw:hypercall-page-written")
        for i, b in enumerate(INSN_BYTES[self.native].to_bytes(3, "big") + b"\xc3"):
            self.vm.mem[page + i] = b
        self.vm.hypercall = value
        return 0, None

    def hv_get_msr(self, v: _Vcpu, msr: int, host: bool) -> tuple[int, int]:
        # arch/x86/kvm/hyperv.c: kvm_hv_get_msr_common()
        if not host and not v.hv_enabled:
            hit("hyperv.c:kvm_hv_get_msr_common:hyperv-disabled")
            return 1, 0
        # kvm_hv_get_msr_pw(): hv_check_msr_access()
        if not host and not self.msr_access_ok(v, msr):
            hit("hyperv.c:kvm_hv_get_msr_pw:access-denied")
            return 1, 0
        if msr == MSR_GUEST_OS_ID:
            hit("hyperv.c:kvm_hv_get_msr_pw:guest-os-id")
            return 0, self.vm.guest_os_id
        if msr == MSR_HYPERCALL:
            hit("hyperv.c:kvm_hv_get_msr_pw:hypercall")
            return 0, self.vm.hypercall
        if msr == MSR_RESET:
            hit("hyperv.c:kvm_hv_get_msr_pw:reset-reads-zero")
            return 0, 0
        if msr == MSR_TIME_REF_COUNT:
            # hyperv.c get_time_ref_counter: 100 ns units since the VM was created, from
            # kvmclock or the TSC page; the payload prints a plausible count as 1 (the
            # value is a clock, so the function is cited without "()": not a mutation scope)
            hit("hyperv.c:kvm_hv_get_msr_pw:time-ref-count-clock")
            return 0, 1
        if msr in OTHER_PW_MSRS:
            # REFERENCE_TSC, CRASH_P0-P4 (kvm_hv_msr_get_crash_data()), CRASH_CTL
            # (kvm_hv_msr_get_crash_ctl()), REENLIGHTENMENT_CONTROL, TSC_EMULATION_*
            hit("hyperv.c:kvm_hv_get_msr_pw:stored")
            return 0, self.vm.other[msr]
        if self.v7:
            # v7 hyperv.c: kvm_hv_get_msr_pw() calls void syndbg_get_msr() then `break`,
            # and ends with `*pdata = data` where data = 0: every read returns 0
            hit("hyperv.c:kvm_hv_get_msr_pw:v7-syndbg-reads-zero")
            return 0, 0
        # syndbg_get_msr(): guest access needs syndbg enabled
        if not host and not self.syndbg_on(v):
            hit("hyperv.c:syndbg_get_msr:syndbg-disabled")
            return 1, 0
        hit("hyperv.c:syndbg_get_msr:stored")
        return 0, self.vm.syndbg[msr]

    def _other_set(self, v: _Vcpu, msr: int, value: int, host: bool) -> tuple[int, dict | None]:
        """kvm_hv_set_msr_pw() for the partition-wide MSRs outside syndbg."""
        if msr == MSR_RESET:
            # kvm_hv_set_msr_pw(): data == 1 makes KVM_REQ_HV_RESET, whoever writes;
            # vcpu_enter_guest() turns it into KVM_EXIT_SYSTEM_EVENT(RESET). Reads give 0.
            if value != 1:
                hit("hyperv.c:kvm_hv_set_msr_pw:reset-not-one-ignored")
                return 0, None
            if host:
                hit("hyperv.c:kvm_hv_set_msr_pw:reset-request-by-host")
                v.pending_reset = True
                return 0, None
            hit("hyperv.c:kvm_hv_set_msr_pw:reset-request-by-guest")
            return 0, self._system_event(KVM_EXIT_SYSTEM_EVENT_RESET, 2)
        if msr == MSR_TIME_REF_COUNT:
            # kvm_hv_set_msr_pw(): "read-only, but still ignore it if host-initiated"
            if host:
                hit("hyperv.c:kvm_hv_set_msr_pw:time-ref-count-host-ignored")
                return 0, None
            hit("hyperv.c:kvm_hv_set_msr_pw:time-ref-count-read-only")
            return 1, None
        if msr == MSR_CRASH_CTL:
            # kvm_hv_set_msr_pw(): the host stores the NOTIFY bit (kvm_hv_msr_set_crash_ctl());
            # a guest write stores nothing, and with NOTIFY makes KVM_REQ_HV_CRASH ->
            # KVM_EXIT_SYSTEM_EVENT(CRASH)
            if host:
                hit("hyperv.c:kvm_hv_msr_set_crash_ctl:host-stores-notify")
                self.vm.other[MSR_CRASH_CTL] = value & CRASH_CTL_NOTIFY
                return 0, None
            if value & CRASH_CTL_NOTIFY:
                hit("hyperv.c:kvm_hv_set_msr_pw:crash-ctl-notify")
                return 0, self._system_event(KVM_EXIT_SYSTEM_EVENT_CRASH, 2)
            hit("hyperv.c:kvm_hv_set_msr_pw:crash-ctl-no-notify")
            return 0, None
        if msr == MSR_TSC_EMULATION_STATUS and value and not host:
            hit("hyperv.c:kvm_hv_set_msr_pw:tsc-emulation-status-guest-sets")
            return 1, None           # kvm_hv_set_msr_pw(): the guest may only clear it
        if msr == MSR_REFERENCE_TSC:
            hit("hyperv.c:kvm_hv_set_msr_pw:reference-tsc")
            return self._reference_tsc_set(v, value, host)
        # CRASH_P0-P4 (kvm_hv_msr_set_crash_data()), REENLIGHTENMENT_CONTROL,
        # TSC_EMULATION_CONTROL/STATUS: stored as written
        hit("hyperv.c:kvm_hv_set_msr_pw:stored")
        self.vm.other[msr] = value
        return 0, None

    def _reference_tsc_set(self, v: _Vcpu, value: int, host: bool) -> tuple[int, None]:
        """kvm_hv_set_msr_pw(): HV_X64_MSR_REFERENCE_TSC."""
        self.vm.other[MSR_REFERENCE_TSC] = value
        if not value & TSC_REFERENCE_ENABLE:
            hit("hyperv.c:kvm_hv_set_msr_pw:reference-tsc-disabled")
            self.vm.tsc_status = TSC_UNSET
            return 0, None
        if host:
            # HV_TSC_PAGE_HOST_CHANGED and KVM_REQ_MASTERCLOCK_UPDATE on this vCPU: the
            # page is written when it next enters the guest
            hit("hyperv.c:kvm_hv_set_msr_pw:reference-tsc-host-changed")
            self.vm.tsc_status = TSC_HOST_CHANGED
            v.pending_clock = True
            return 0, None
        # HV_TSC_PAGE_GUEST_CHANGED; the vCPU handles KVM_REQ_MASTERCLOCK_UPDATE and then
        # KVM_REQ_CLOCK_UPDATE (x86.c: vcpu_enter_guest() -> kvm_guest_time_update())
        # before it re-enters the guest after the WRMSR
        hit("hyperv.c:kvm_hv_set_msr_pw:reference-tsc-guest-changed")
        self.vm.tsc_status = TSC_GUEST_CHANGED
        self._setup_tsc_page()
        return 0, None

    def _mem_u32(self, gpa: int) -> int:
        return int.from_bytes(bytes(self.vm.mem.get(gpa + i, 0) for i in range(4)), "little")

    def _mem_write(self, gpa: int, data: bytes) -> None:
        for i, b in enumerate(data):
            self.vm.mem[gpa + i] = b

    def _request_tsc_page_update(self) -> None:
        """hyperv.c: kvm_hv_request_tsc_page_update(): a master clock update rewrites a
        set-up TSC page (HV_TSC_PAGE_HOST_CHANGED) unless tsc_page_update_unsafe()."""
        vm = self.vm
        if vm.tsc_status == TSC_SET and not vm.other[MSR_TSC_EMULATION_CONTROL]:
            hit("hyperv.c:kvm_hv_request_tsc_page_update:set-page-host-changed")
            vm.tsc_status = TSC_HOST_CHANGED

    def _setup_tsc_page(self) -> None:
        """hyperv.c: kvm_hv_setup_tsc_page(), from kvm_guest_time_update()."""
        vm = self.vm
        if vm.tsc_status in (TSC_UNSET, TSC_SET, TSC_BROKEN):
            hit("hyperv.c:kvm_hv_setup_tsc_page:no-change-pending")
            return
        gpa = vm.other[MSR_REFERENCE_TSC] & ~0xFFF & U64
        if gpa + 4 > GUEST_MEM:
            # kvm_read_guest() of tsc_sequence fails: HV_TSC_PAGE_BROKEN, nothing written
            hit("hyperv.c:kvm_hv_setup_tsc_page:page-outside-memory")
            vm.tsc_status = TSC_BROKEN
            return
        seq = self._mem_u32(gpa)
        if seq and vm.tsc_status != TSC_GUEST_CHANGED and vm.other[MSR_TSC_EMULATION_CONTROL]:
            # tsc_page_update_unsafe(): a host change while the guest uses TSC emulation
            # keeps the guest's page (read into hv->tsc_ref) and writes nothing
            hit("hyperv.c:kvm_hv_setup_tsc_page:update-unsafe-keeps-guest-page")
            vm.tsc_reserved1 = int.from_bytes(bytes(vm.mem.get(gpa + 4 + i, 0) for i in range(4)),
                                              "little")
            vm.tsc_status = TSC_SET
            return
        self._mem_write(gpa, bytes(4))           # tsc_sequence = 0 first
        if not self.s["master_clock"]:
            # hyperv.c compute_tsc_page_parameters: no PVCLOCK_TSC_STABLE_BIT without KVM's
            # master clock: HV_TSC_PAGE_BROKEN, the page keeps sequence 0 (only this test
            # is observable, the scale and offset are clock-dependent: cited without "()",
            # so it is not a mutation scope)
            hit("hyperv.c:compute_tsc_page_parameters:tsc-not-stable")
            vm.tsc_status = TSC_BROKEN
            return
        hit("hyperv.c:kvm_hv_setup_tsc_page:page-written")
        # the whole struct (scale and offset depend on the clock), then sequence + 1,
        # never 0 or 0xFFFFFFFF
        self._mem_write(gpa, bytes(4) + vm.tsc_reserved1.to_bytes(4, "little"))
        for i in range(8, TSC_REF_SIZE):
            vm.mem[gpa + i] = None
        seq = (seq + 1) & U32
        seq = 1 if seq in (0, U32) else seq
        self._mem_write(gpa, seq.to_bytes(4, "little"))
        vm.tsc_status = TSC_SET

    @staticmethod
    def _system_event(kind: int, rip: int) -> dict:
        return {"reason": "system_event", "type": kind, "rip": rip}

    @staticmethod
    def is_hv_msr(msr: int) -> bool:
        # arch/x86/kvm/x86.c: kvm_{set,get}_msr_common() route these to hyperv.c
        return msr in (MSR_GUEST_OS_ID, MSR_HYPERCALL) or msr in SYNDBG_MSRS or msr in OTHER_PW_MSRS

    # ---- guest actions ----------------------------------------------------
    def _deliver_pending(self, v: _Vcpu, a: dict, exits: list) -> None:
        """x86.c: vcpu_enter_guest()'s requests before it enters the guest: the clock
        (KVM_REQ_MASTERCLOCK_UPDATE, KVM_REQ_CLOCK_UPDATE), then KVM_REQ_HV_RESET, then
        KVM_REQ_HV_EXIT; each of the last two exits before entering the guest (rip 0)."""
        if v.pending_clock:
            # x86.c: kvm_update_masterclock() -> kvm_hv_request_tsc_page_update(), then
            # KVM_REQ_CLOCK_UPDATE -> kvm_guest_time_update() -> kvm_hv_setup_tsc_page()
            hit("x86.c:vcpu_enter_guest:masterclock-update")
            v.pending_clock = False
            self._request_tsc_page_update()
            self._setup_tsc_page()
        if v.pending_reset:
            hit("x86.c:vcpu_enter_guest:hv-reset-request")
            exits.append(self._system_event(KVM_EXIT_SYSTEM_EVENT_RESET, 0))
            v.pending_reset = False
        # v7 only: a host write left KVM_REQ_HV_EXIT pending; completion on the next KVM_RUN
        if v.pending_exit is not None:
            hit("x86.c:vcpu_enter_guest:v7-host-write-exit")
            exits.append(v.pending_exit)
            self._complete_syndbg(v.pending_exit, a)
            v.pending_exit = None

    def _complete_syndbg(self, ex: dict, a: dict) -> None:
        """hyperv.c: kvm_hv_syndbg_complete_userspace(): on the next KVM_RUN, copies
        run->hyperv.u.syndbg.status into STATUS if run->hyperv.u.syndbg.msr (what the
        VMM left there: KVM's msr unless it wrote `exit_msr`) is CONTROL."""
        if a.get("exit_msr", ex["msr"]) & U32 == MSR_CONTROL:
            hit("hyperv.c:kvm_hv_syndbg_complete_userspace:control-copies-status")
            self.vm.syndbg[MSR_STATUS] = a.get("status", ex["status"]) & U64
        else:
            hit("hyperv.c:kvm_hv_syndbg_complete_userspace:not-control-no-copy")

    def guest_msr(self, v: _Vcpu, a: dict) -> dict:
        ev = {"vcpu": a["vcpu"], "exits": []}
        exits = ev["exits"]
        self._deliver_pending(v, a, exits)
        msr, write = a["msr"], a["op"] == "wrmsr"
        value = a.get("value", 0) & U64
        vector = None
        got = None
        if a["cpl"] != 0:
            # RDMSR/WRMSR at CPL>0: #GP before any intercept, as KVM's emulator does for
            # its Priv instructions (emulate.c: x86_emulate_insn())
            hit("emulate.c:x86_emulate_insn:msr-priv-gp")
            vector = GP
        elif not self.is_hv_msr(msr):
            # x86.c: unknown MSR -> KVM_MSR_RET_INVALID -> kvm_msr_reason() UNKNOWN, which
            # the INVAL-only user-space MSR mask does not forward: #GP
            hit("x86.c:kvm_msr_user_space:unknown-msr-not-forwarded")
            vector = GP
        else:
            if write:  # not a rule: RDMSR and WRMSR are separate actions
                r, ex = self.hv_set_msr(v, msr, value, host=False)
            else:
                r, got = self.hv_get_msr(v, msr, host=False)
                ex = None
            if r and self.s["user_msr"]:
                # x86.c: kvm_emulate_{rd,wr}msr() -> kvm_msr_user_space(): reason INVAL;
                # the payload answers msr.error = 1, so KVM injects #GP
                hit("x86.c:kvm_msr_user_space:inval-exit")
                exits.append({"reason": "x86_wrmsr" if write else "x86_rdmsr",
                              "msr_reason": KVM_MSR_EXIT_REASON_INVAL, "index": msr,
                              "data": value if write else 0})
                vector = GP
                got = None
            elif r:
                hit("x86.c:kvm_msr_user_space:no-user-space-msr-gp")
                vector = GP
                got = None
            elif ex is not None and ex["reason"] == "hyperv":
                # x86.c: vcpu_enter_guest(): KVM_REQ_HV_EXIT -> KVM_EXIT_HYPERV, RIP past
                # the WRMSR; the completion runs on the next KVM_RUN
                hit("x86.c:vcpu_enter_guest:hv-exit-request")
                exits.append(ex)
                self._complete_syndbg(ex, a)
            elif ex is not None:
                # x86.c: vcpu_enter_guest(): KVM_REQ_HV_CRASH / KVM_REQ_HV_RESET
                hit("x86.c:vcpu_enter_guest:hv-system-event")
                exits.append(ex)
        ev["vector"] = vector
        if not write:  # not a rule: rendering (RDMSR prints its value)
            ev["value"] = got if vector is None else None
        ev["rip_advance"] = 2
        return ev

    def hcall(self, v: _Vcpu, a: dict) -> dict:
        mode = cpu_mode(self.s, a)
        m64 = mode == "long"
        ctl = a["control"] & U64
        ingpa, outgpa = a["ingpa"] & U64, a["outgpa"] & U64
        if m64:  # not a rule: how the payload loads the registers
            rax, rdx = a["rax"] & U64, ingpa
            preserved = {**SENTINELS, "rcx": ctl, "r8": outgpa}
        else:
            rax, rdx = ctl & U32, ctl >> 32      # EDX:EAX as the payload loads them
            preserved = {**SENTINELS, "rbx": ingpa >> 32, "rcx": ingpa & U32,
                         "rsi": outgpa & U32, "rdi": outgpa >> 32}
        ev = {"vcpu": a["vcpu"], "exits": []}
        exits = ev["exits"]
        self._deliver_pending(v, a, exits)
        # the 64-bit or the 32-bit stub (real and compatibility mode run the 32-bit one)
        site = (a["insn"], 64 if m64 else 32)
        insn = self.vm.sites.get(site, INSN_BYTES[a["insn"]])
        vector = None

        def done():
            ev.update({"vector": vector, "rax": rax, "rdx": rdx,
                       "insn_after": self.vm.sites.get(site, INSN_BYTES[a["insn"]]),
                       "preserved": {k: preserved[k] for k in PRESERVED_ORDER},
                       "rip_advance": 3})
            return ev

        if insn != INSN_BYTES[self.native]:
            # The other vendor's instruction: #UD intercepted, x86.c handle_ud() emulates it
            # (emulate.c: VMCALL is Priv, VMMCALL Prot, both EmulateOnUD -> em_hypercall)
            if insn == VMCALL and a["cpl"] != 0:
                hit("emulate.c:x86_emulate_insn:vmcall-priv-gp")
                vector = GP
                return done()
            if not self.s["quirk_fix"]:
                hit("x86.c:emulator_fix_hypercall:quirk-disabled-ud")
                vector = UD
                return done()
            # x86.c: emulator_fix_hypercall() patches the native instruction in place, RIP
            # unchanged; the guest re-executes it
            hit("x86.c:emulator_fix_hypercall:patch-native-insn")
            self.vm.sites[site] = INSN_BYTES[self.native]

        # x86.c: kvm_emulate_hypercall()
        if not self.hypercall_enabled(v):
            # the KVM PV ABI: nr in RAX, truncated outside 64-bit mode (is_64_bit_hypercall())
            nr = rax if m64 else rax & U32
            if a["cpl"] != 0:
                hit("x86.c:kvm_emulate_hypercall:cpl-eperm")
                ret = -KVM_EPERM
            elif nr == 1:                # KVM_HC_VAPIC_POLL_IRQ
                hit("x86.c:kvm_emulate_hypercall:vapic-poll-irq")
                ret = 0
            else:
                hit("x86.c:kvm_emulate_hypercall:enosys")
                ret = -KVM_ENOSYS
            rax = ret & (U64 if m64 else U32)
            return done()

        # arch/x86/kvm/hyperv.c: kvm_hv_hypercall()
        if a["cpl"] != 0:
            hit("hyperv.c:kvm_hv_hypercall:cpl-ud")     # "UD from non zero cpl and real mode"
            vector = UD
            return done()
        if mode == "real":
            hit("hyperv.c:kvm_hv_hypercall:real-mode-ud")   # !is_protmode()
            vector = UD
            return done()
        code = ctl & 0xFFFF
        fast = bool(ctl & FAST_BIT)
        var_cnt, rep_cnt, rep_idx = (ctl >> 17) & 0x3FF, (ctl >> 32) & 0xFFF, (ctl >> 48) & 0xFFF
        status = None
        if not self.hypercall_access_ok(v, code):
            hit("hyperv.c:kvm_hv_hypercall:access-denied")
            status = ST_ACCESS_DENIED
        elif ctl & RSVD_MASK:
            hit("hyperv.c:kvm_hv_hypercall:reserved-bits-invalid-input")
            status = ST_INVALID_HYPERCALL_INPUT
        elif (fast and code == HVCALL_FLUSH_VIRTUAL_ADDRESS_SPACE and v.enforce
              and not v.cfg["xmm"]):
            # a fast XMM-input call (is_xmm_fast_hypercall()) under ENFORCE_CPUID needs
            # FEATURES.EDX HV_X64_HYPERCALL_XMM_INPUT_AVAILABLE, else #UD
            hit("hyperv.c:kvm_hv_hypercall:xmm-input-unavailable-ud")
            vector = UD
            return done()
        elif code == HVCALL_FLUSH_VIRTUAL_ADDRESS_SPACE:
            hit("hyperv.c:kvm_hv_hypercall:flush-virtual-address-space")
            status = self._flush_space(fast, var_cnt, rep_cnt, rep_idx, ingpa)
        elif code == HVCALL_POST_MESSAGE:
            # rep, var_cnt or an inactive SynIC (never activated here: no
            # KVM_CAP_HYPERV_SYNIC) -> INVALID_HYPERCALL_INPUT
            hit("hyperv.c:kvm_hv_hypercall:post-message-synic-inactive")
            status = ST_INVALID_HYPERCALL_INPUT
        elif code in (HVCALL_POST_DEBUG_DATA, HVCALL_RETRIEVE_DEBUG_DATA) and fast:
            hit("hyperv.c:kvm_hv_hypercall:fast-post-retrieve-invalid-parameter")
            status = ST_INVALID_PARAMETER
        elif code in DEBUG_CALLS:
            if not self.syndbg_on(v):
                hit("hyperv.c:kvm_hv_hypercall:debug-syndbg-disabled-invalid-code")
                status = ST_INVALID_HYPERCALL_CODE
            elif not self.vm.syndbg[MSR_OPTIONS] & OPTION_USE_HCALLS:
                # any OPTIONS value without HV_X64_SYNDBG_OPTION_USE_HCALLS (bit 2)
                hit("hyperv.c:kvm_hv_hypercall:debug-use-hcalls-clear-operation-denied")
                status = ST_OPERATION_DENIED
            else:
                # KVM_EXIT_HYPERV_HCALL with the whole control word; the payload replies
                # `result`, kvm_hv_hypercall_complete_userspace() hands it to the guest
                # (outside 64-bit mode the GPAs come from EBX:ECX and EDI:ESI)
                hit("hyperv.c:kvm_hv_hypercall:debug-userspace-exit")
                exits.append({"reason": "hyperv", "type": KVM_EXIT_HYPERV_HCALL, "input": ctl,
                              "params": [ingpa, outgpa], "rip": 0})
                status = a["result"] & U64
        else:
            hit("hyperv.c:kvm_hv_hypercall:unknown-code-invalid-code")
            status = ST_INVALID_HYPERCALL_CODE
        # kvm_hv_hypercall_set_result(): RAX, or EDX:EAX outside 64-bit mode
        if m64:
            hit("hyperv.c:kvm_hv_hypercall_set_result:rax")
            rax = status
        else:
            hit("hyperv.c:kvm_hv_hypercall_set_result:edx-eax")
            rdx, rax = status >> 32, status & U32
        return done()

    def _flush_space(self, fast: bool, var_cnt: int, rep_cnt: int, rep_idx: int,
                     ingpa: int) -> int:
        """kvm_hv_hypercall(): HVCALL_FLUSH_VIRTUAL_ADDRESS_SPACE -> kvm_hv_flush_tlb()."""
        if var_cnt:
            hit("hyperv.c:kvm_hv_hypercall:flush-space-var-cnt-invalid-input")
            return ST_INVALID_HYPERCALL_INPUT
        if rep_cnt or rep_idx:
            hit("hyperv.c:kvm_hv_hypercall:flush-space-rep-invalid-input")
            return ST_INVALID_HYPERCALL_INPUT
        if not fast and ingpa + 24 > GUEST_MEM:
            # kvm_read_guest() of struct hv_tlb_flush fails
            hit("hyperv.c:kvm_hv_flush_tlb:read-input-fails")
            return ST_INVALID_HYPERCALL_INPUT
        # SUCCESS | rep_cnt << 32 (rep_cnt is 0 here)
        hit("hyperv.c:kvm_hv_flush_tlb:success")
        return 0

    # ---- host actions -------------------------------------------------------
    def host(self, a: dict) -> dict:  # not a rule: dispatch on the op-script action
        op = a["op"]
        if op in ("set_msr", "get_msr"):
            return self.host_msr(a)
        if op == "set_cpuid":
            return self.set_cpuid(a)
        if op == "check_ext":
            return self.check_ext(a)
        if op == "enable_cap":
            return self.enable_cap(a)
        if op == "hv_cpuid":
            return self.hv_cpuid(a)
        if op == "peek":
            return self.peek(a)
        if op == "msr_list":
            # x86.c: emulated_msrs_all lists the six syndbg MSRs, and nothing else in
            # 0x400000F0-0x400000FF
            return {"ret": 0, "errno": 0,
                    "present": [MSR_CONTROL, MSR_STATUS, MSR_SEND, MSR_RECV, MSR_PENDING,
                                MSR_OPTIONS]}
        raise ValueError(op)

    def host_msr(self, a: dict) -> dict:
        v = self.vcpus[a["vcpu"]]
        msr = a["msr"]
        ev = {"vcpu": a["vcpu"]}
        if not self.is_hv_msr(msr):
            # x86.c: __msr_io() stops at the first MSR that fails (KVM_MSR_RET_INVALID,
            # ignore_msrs off): 0 MSRs processed
            hit("x86.c:__msr_io:unknown-msr-stops")
            ev.update({"ret": 0, "errno": 0})
            if a["op"] == "get_msr":  # not a rule: rendering
                ev["value"] = None
            return ev
        if a["op"] == "set_msr":  # not a rule: KVM_SET_MSRS and KVM_GET_MSRS are separate actions
            # arch/x86/kvm/hyperv.c: host writes skip every gate (kvm_hv_set_msr_common)
            r, ex = self.hv_set_msr(v, msr, a.get("value", 0) & U64, host=True)
            if ex is not None:       # v7 only: host writes exit as well
                hit("hyperv.c:syndbg_exit:v7-host-write-pending")
                v.pending_exit = ex
            ev.update({"ret": 0 if r else 1, "errno": 0})
        else:
            r, val = self.hv_get_msr(v, msr, host=True)
            ev.update({"ret": 0 if r else 1, "errno": 0, "value": None if r else val})
        return ev

    def set_cpuid(self, a: dict) -> dict:
        v = self.vcpus[a["vcpu"]]
        cfg = {k: a.get(k, DEFAULT_VCPU[k]) for k in CPUID_KEYS}
        # arch/x86/kvm/cpuid.c: kvm_set_cpuid(): after the first KVM_RUN only an
        # identical table is accepted (kvm_cpuid_check_equal), and it changes nothing
        if not v.ran:
            hit("cpuid.c:kvm_set_cpuid:before-first-run")
            v.cfg = {**v.cfg, **cfg}     # kvm_hv_set_cpuid() recaches
            return {"vcpu": a["vcpu"], "ret": 0, "errno": 0}
        if cpuid_table(cfg) == cpuid_table(v.cfg):
            hit("cpuid.c:kvm_cpuid_check_equal:identical-after-run")
            return {"vcpu": a["vcpu"], "ret": 0, "errno": 0}
        hit("cpuid.c:kvm_cpuid_check_equal:differs-after-run-einval")
        return {"vcpu": a["vcpu"], "ret": -1, "errno": EINVAL}

    def check_ext(self, a: dict) -> dict:
        # arch/x86/kvm/x86.c: kvm_vm_ioctl_check_extension(); 180 is not an x86 cap
        # in mainline (KVM_CAP_S390_PROTECTED); v7 advertised KVM_CAP_HYPERV_SYNDBG
        if a["cap"] != CAP_HYPERV_SYNDBG_V7:  # not a rule: input validation
            raise ValueError(f"check_ext: the model knows cap 180 only, not {a['cap']}")
        if self.v7:
            hit("x86.c:kvm_vm_ioctl_check_extension:v7-syndbg-cap")
            return {"ret": 1}
        hit("x86.c:kvm_vm_ioctl_check_extension:cap-180-not-x86")
        return {"ret": 0}

    def enable_cap(self, a: dict) -> dict:
        # x86.c: kvm_vcpu_ioctl_enable_cap(): unknown caps are -EINVAL;
        # v7: KVM_CAP_HYPERV_SYNDBG -> kvm_hv_activate_syndbg() (VM-wide active)
        if a["cap"] != CAP_HYPERV_SYNDBG_V7:  # not a rule: input validation
            raise ValueError(f"enable_cap: the model knows cap 180 only, not {a['cap']}")
        if self.v7:
            hit("x86.c:kvm_vcpu_ioctl_enable_cap:v7-syndbg-cap-activates")
            self.vm.active = True
            return {"vcpu": a["vcpu"], "ret": 0, "errno": 0}
        hit("x86.c:kvm_vcpu_ioctl_enable_cap:unknown-cap-einval")
        return {"vcpu": a["vcpu"], "ret": -1, "errno": EINVAL}

    def peek(self, a: dict) -> dict:
        gpa = a["gpa"]
        raw = [self.vm.mem.get(gpa + i, 0) for i in range(8)]
        if None in raw:  # not a rule: input validation
            raise ValueError(f"peek at {gpa:#x} reads the TSC page's clock-dependent "
                             f"scale/offset (bytes 8-23 of the page)")
        return {"value": int.from_bytes(bytes(raw), "little")}

    def _hv_cpuid_leaves(self, max_leaf: int, on_vcpu: bool) -> dict[int, list[int]]:
        """{function: [eax, ebx, ecx, edx]}: arch/x86/kvm/hyperv.c kvm_get_hv_cpuid()."""
        # `!vcpu || lapic_in_kernel(vcpu)`: the payload's VMs have no in-kernel irqchip
        if on_vcpu:
            hit("hyperv.c:kvm_get_hv_cpuid:vcpu-without-in-kernel-lapic")
            lapic = False
        else:
            hit("hyperv.c:kvm_get_hv_cpuid:system-fd-assumes-lapic")
            lapic = True
        # nested_ops->get_evmcs_version: SVM has none; VMX reports eVMCS 1.0 for the
        # system ioctl, and for a vCPU only once KVM_CAP_HYPERV_ENLIGHTENED_VMCS is on
        # (never here)  (inference for Intel: not run on this machine)
        if self.s["vendor"] == "intel" and not on_vcpu:
            hit("hyperv.c:kvm_get_hv_cpuid:evmcs")
            evmcs = 0x101
        else:
            hit("hyperv.c:kvm_get_hv_cpuid:no-evmcs")
            evmcs = 0
        # HV_X64_NO_NONARCH_CORESHARING when !cpu_smt_possible()
        if self.s["smt"]:
            hit("hyperv.c:kvm_get_hv_cpuid:smt-possible")
            coresharing = 0
        else:
            hit("hyperv.c:kvm_get_hv_cpuid:no-nonarch-coresharing")
            coresharing = 1 << 18
        # FEATURES EAX: VP_RUNTIME, TIME_REF_COUNT, SYNIC, SYNTIMER, APIC_ACCESS, HYPERCALL,
        # VP_INDEX, RESET, REFERENCE_TSC (bit 9), ACCESS_FREQUENCY_MSRS (11),
        # ACCESS_REENLIGHTENMENT (13); EBX: POST_MESSAGES (4), SIGNAL_EVENTS (5),
        # DEBUGGING (11); EDX: GUEST_DEBUGGING (1), HYPERCALL_XMM_INPUT (4),
        # FREQUENCY_MSRS (8), GUEST_CRASH_MSR (10), DEBUG_MSRS (11), STIMER_DIRECT (19)
        # with an in-kernel LAPIC
        features = [0xFF | (1 << 9) | (1 << 11) | (1 << 13),
                    (1 << 4) | (1 << 5) | (1 << 11), 0,
                    (1 << 1) | (1 << 4) | (1 << 8) | (1 << 10) | (1 << 11) | (lapic << 19)]
        # ENLIGHTMENT_INFO: REMOTE_TLB_FLUSH (2), APIC_ACCESS (3), RELAXED_TIMING (5),
        # DEPRECATING_AEOI (9), CLUSTER_IPI (10, in-kernel LAPIC), EX_PROCESSOR_MASKS
        # (11), ENLIGHTENED_VMCS (14, eVMCS), NO_NONARCH_CORESHARING (18); EBX: 0xFFF
        # spinlock retries
        enlightenments = [(1 << 2) | (1 << 3) | (1 << 5) | (1 << 9) | (1 << 11) | (lapic << 10)
                          | ((evmcs != 0) << 14) | coresharing, 0xFFF, 0, 0]
        return {
            0x40000000: [max_leaf, *SIG],
            0x40000001: [0x31237648, 0, 0, 0],           # HYPERV_CPUID_SIGNATURE_EAX "Hv#1"
            0x40000002: [0x00003839, 0x000A0000, 0, 0],  # "Hyper-V 2016" version
            0x40000003: features,
            0x40000004: enlightenments,
            0x40000005: [1024, 64, 0, 0],                # KVM_MAX_VCPUS, 64 LPs
            # NESTED_FEATURES: evmcs_ver | NESTED_MSR_BITMAP (19); EBX EVMCS1_PERF_GLOBAL_CTRL
            0x4000000A: [evmcs | (1 << 19), 1, 0, 0],
            0x40000080: [0, *SIG],
            0x40000081: [0x31235356, 0, 0, 0],           # "VS#1"
            0x40000082: [0x2, 0, 0, 0],                  # ALLOW_KERNEL_DEBUGGING
        }

    def hv_cpuid(self, a: dict) -> dict:
        ev = {"fd": a["fd"]}
        if self.v7:
            # v7 hyperv.c: kvm_vcpu_ioctl_get_hv_cpuid(): the syndbg leaves follow
            # NESTED_FEATURES and `--nent` without eVMCS drops the last one (0x40000082)
            hit("hyperv.c:kvm_vcpu_ioctl_get_hv_cpuid:v7-entries")
            functions = HV_CPUID_FUNCTIONS_V7[:-1]
            max_leaf = 0x40000082 if (self.vm.active and a["fd"] == "vcpu") else 0x4000000A
        else:
            # arch/x86/kvm/hyperv.c: kvm_get_hv_cpuid(): 10 fixed entries
            hit("hyperv.c:kvm_get_hv_cpuid:ten-entries")
            functions = HV_CPUID_FUNCTIONS_61
            max_leaf = 0x40000082
        if a["nent"] < len(functions):
            hit("hyperv.c:kvm_get_hv_cpuid:nent-too-small-e2big")
            ev.update({"ret": -1, "errno": E2BIG})
            return ev
        leaves = self._hv_cpuid_leaves(max_leaf, a["fd"] == "vcpu")
        ev.update({"ret": 0, "errno": 0, "nent": len(functions), "functions": functions,
                   "index_flags_zero": True,
                   "entries": [[f, *leaves[f]] for f in functions]})
        return ev

    # ---- driver -------------------------------------------------------------
    def run(self) -> list[dict]:  # not a rule: dispatch on the op-script action
        events = [{"op": "setup", "ok": True}]
        for step, a in enumerate(self.s["actions"]):
            head = {"step": step, "op": a["op"]}
            if a["op"] in GUEST_OPS:
                v = self.vcpus[a["vcpu"]]
                if a["op"] in ("rdmsr", "wrmsr"):
                    body = self.guest_msr(v, a)
                elif a["op"] == "hcall":
                    body = self.hcall(v, a)
                else:
                    body = {"vcpu": a["vcpu"], "exits": []}
                    self._deliver_pending(v, a, body["exits"])
                    body.update({"vector": None, "rip_advance": 1})   # guest_lib.S: nop; out
                v.ran = True
            else:
                body = self.host(a)
            events.append({**head, **body})
        return events


PRESERVED_ORDER = ("rbx", "rcx", "rsi", "rdi", "r8", "r9", "r10", "r11", "r12", "r13", "r14")


def predict(script: dict, profile: str = PROFILES[0]) -> list[dict]:
    """The events the payload prints for `script`, under `profile`."""
    return _Model(script, profile).run()


def describe(action: dict) -> str:  # not a rule: rendering
    """One-line rendering of an action for divergence messages."""
    op = action["op"]
    vcpu = f"vcpu{action.get('vcpu', 0)}"
    cpl = " cpl3" if action.get("cpl") == 3 else ""
    mode = f" {action['cpu_mode']}-mode" if action.get("cpu_mode") else ""
    if op == "wrmsr":
        extra = "".join(f" {k}={action[k]:#x}" for k in ("status", "exit_msr") if k in action)
        return f"{vcpu}{cpl}{mode} wrmsr {action['msr']:#x} = {action.get('value', 0):#x}{extra}"
    if op == "rdmsr":
        return f"{vcpu}{cpl}{mode} rdmsr {action['msr']:#x}"
    if op == "hcall":
        return (f"{vcpu}{cpl}{mode} {action.get('insn', 'vmcall')} control={action['control']:#x} "
                f"in={action.get('ingpa', 0):#x} out={action.get('outgpa', 0):#x}")
    if op in ("set_msr", "get_msr"):
        val = f" = {action.get('value', 0):#x}" if op == "set_msr" else ""
        return f"{vcpu} KVM_{op.upper()}S {action['msr']:#x}{val}"
    if op == "set_cpuid":
        return f"{vcpu} KVM_SET_CPUID2 " + " ".join(
            f"{k}={action[k]}" for k in CPUID_KEYS if k in action)
    if op == "check_ext":
        return f"KVM_CHECK_EXTENSION({action['cap']})"
    if op == "enable_cap":
        return f"{vcpu} KVM_ENABLE_CAP({action['cap']})"
    if op == "hv_cpuid":
        return f"KVM_GET_SUPPORTED_HV_CPUID on {action.get('fd', 'system')} fd, nent={action.get('nent', 64)}"
    if op == "msr_list":
        return "KVM_GET_MSR_INDEX_LIST"
    if op == "peek":
        return f"peek guest memory at {action.get('gpa', 0):#x}"
    return f"{vcpu} {op}"
