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

Op-script (a dict; every key but ``actions`` optional)::

    {"vendor": "amd" | "intel",          # CPU vendor of the host running the guest kernel
     "mode": 64 | 32,                    # long mode or 32-bit protected mode
     "quirk_fix": True,                  # False: KVM_CAP_DISABLE_QUIRKS2(FIX_HYPERCALL_INSN)
     "user_msr": False,                  # True: KVM_CAP_X86_USER_SPACE_MSR(INVAL)
     "smt": False,                       # cpu_smt_possible() in the kernel under test
     "vcpus": [{"hv": True, "sd": "set" | "zero" | "absent", "dm": True, "dbg": True,
                "hc": True, "xmm": True, "enforce": False}],
     "actions": [{"op": "wrmsr", "vcpu": 0, "msr": 0x400000f1, "value": 1, "status": 7}, ...]}

Action kinds (see ACTION_KINDS): guest ``rdmsr``, ``wrmsr``, ``hcall``, ``nop``
(optional ``cpl``: 0 or 3, long mode only); host ``set_msr``, ``get_msr``,
``set_cpuid``, ``check_ext``, ``enable_cap``, ``hv_cpuid``, ``msr_list``, ``peek``
(8 bytes of guest memory at ``gpa``: shows the hypercall page KVM writes).

Besides the six syndbg MSRs the model covers every partition-wide Hyper-V MSR that
kvm_hv_set_msr_pw() / kvm_hv_get_msr_pw() handle (GUEST_OS_ID, HYPERCALL, RESET,
TIME_REF_COUNT writes, REFERENCE_TSC, CRASH_P0-P4, CRASH_CTL, REENLIGHTENMENT_CONTROL,
TSC_EMULATION_CONTROL/STATUS), since a broken dispatcher breaks syndbg too.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

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
# partition-wide MSRs stored as written (kvm_hv_set_msr_pw() / kvm_hv_get_msr_pw())
STORED_MSRS = (MSR_REFERENCE_TSC, MSR_REENLIGHTENMENT_CONTROL, MSR_TSC_EMULATION_CONTROL,
               MSR_TSC_EMULATION_STATUS) + CRASH_MSRS
OTHER_PW_MSRS = STORED_MSRS + (MSR_RESET, MSR_TIME_REF_COUNT, MSR_CRASH_CTL)
CRASH_CTL_NOTIFY = 1 << 63
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

U64 = (1 << 64) - 1
U32 = (1 << 32) - 1

DEFAULT_VCPU = {"hv": True, "sd": "set", "dm": True, "dbg": True, "hc": True, "xmm": True,
                "enforce": False}
CPUID_KEYS = ("hv", "sd", "dm", "dbg", "hc", "xmm")
# HVCALL_FLUSH_VIRTUAL_ADDRESS_SPACE: the one non-debug code the model knows (XMM fast input)
HVCALL_FLUSH_VIRTUAL_ADDRESS_SPACE = 0x0002
HVCALL_POST_MESSAGE = 0x005C


def normalise(script: dict) -> dict:
    """The script with every default filled in (what the encoder and the model see)."""
    s = copy.deepcopy(script)
    s.setdefault("vendor", "amd")
    s.setdefault("mode", 64)
    s.setdefault("quirk_fix", True)
    s.setdefault("user_msr", False)
    s.setdefault("smt", False)
    vcpus = s.get("vcpus") or [{}]
    s["vcpus"] = [{**DEFAULT_VCPU, **v} for v in vcpus]
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
        if a["op"] in GUEST_OPS:
            a.setdefault("cpl", 0)
            if a["cpl"] not in (0, 3) or (a["cpl"] == 3 and s["mode"] != 64):
                raise ValueError(f"cpl {a['cpl']} in mode {s['mode']}")
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
            a.setdefault("ingpa", 0)
            a.setdefault("outgpa", 0)
            a.setdefault("rax", 0)
            a.setdefault("result", 0)
        if a["op"] == "hv_cpuid":
            a.setdefault("fd", "system")
            a.setdefault("nent", 64)
    return s


@dataclass
class _Vcpu:
    cfg: dict
    enforce: bool
    ran: bool = False
    # hv_vcpu->exit buffered by a host write (v7 only), delivered on the next KVM_RUN
    pending_exit: dict | None = None
    # KVM_REQ_HV_RESET made by a host write of RESET = 1, delivered on the next KVM_RUN
    pending_reset: bool = False

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
    # guest memory bytes KVM wrote (hypercall page); everything else peeks as 0
    mem: dict = field(default_factory=dict)


class _Model:
    def __init__(self, script: dict, profile: str):
        if profile not in PROFILES:
            raise ValueError(f"unknown syndbg profile {profile!r}; known: {', '.join(PROFILES)}")
        self.s = normalise(script)
        self.v7 = profile == "v7"
        self.vm = _Vm()
        self.vcpus = [_Vcpu(cfg=v, enforce=bool(v["enforce"])) for v in self.s["vcpus"]]
        self.native = "vmmcall" if self.s["vendor"] == "amd" else "vmcall"

    # ---- predicates ------------------------------------------------------
    def syndbg_on(self, v: _Vcpu) -> bool:
        if self.v7:
            # v7 hyperv.c: syndbg->active, set by KVM_ENABLE_CAP(KVM_CAP_HYPERV_SYNDBG)
            return self.vm.active
        # arch/x86/kvm/hyperv.c: kvm_hv_is_syndbg_enabled(): cpuid_cache.syndbg_cap_eax
        # & HV_X64_SYNDBG_CAP_ALLOW_KERNEL_DEBUGGING, cached by kvm_hv_set_cpuid() only
        # when Hyper-V is enabled in CPUID
        return v.hv_enabled and v.cfg["sd"] == "set"

    def msr_access_ok(self, v: _Vcpu, msr: int) -> bool:
        # arch/x86/kvm/hyperv.c: hv_check_msr_access(), only with ENFORCE_CPUID
        if not v.enforce:
            return True
        if not v.hv_enabled:        # kvm_hv_set_cpuid() leaves the cache zeroed
            return False
        if msr in (MSR_GUEST_OS_ID, MSR_HYPERCALL):
            return bool(v.cfg["hc"])        # FEATURES.EAX HV_MSR_HYPERCALL_AVAILABLE
        if msr in OTHER_PW_MSRS:
            # TIME_REF_COUNT / RESET / REFERENCE_TSC / REENLIGHTENMENT (EAX bits 1, 7, 9,
            # 13) and GUEST_CRASH_MSR_AVAILABLE (EDX bit 10): the payload's CPUID keeps
            # KVM's supported FEATURES bits, all set
            return True
        return bool(v.cfg["dm"])            # FEATURES.EDX HV_FEATURE_DEBUG_MSRS_AVAILABLE

    def hypercall_enabled(self, v: _Vcpu) -> bool:
        if self.v7:
            # v7 patch 4: hypercall page enabled, or syndbg active and GUEST_OS_ID set
            on = bool(self.vm.hypercall & 1) or (self.vm.active and self.vm.guest_os_id != 0)
            return v.hv_enabled and on
        # arch/x86/kvm/hyperv.h: kvm_hv_hypercall_enabled(): hyperv_enabled && hv_guest_os_id
        return v.hv_enabled and self.vm.guest_os_id != 0

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
            return 1, None
        # kvm_hv_set_msr_pw(): hv_check_msr_access() for guest access
        if not host and not self.msr_access_ok(v, msr):
            return 1, None
        if msr == MSR_GUEST_OS_ID:
            # kvm_hv_set_msr_pw(): GUEST_OS_ID = 0 disables the hypercall page
            self.vm.guest_os_id = value
            if value == 0:
                self.vm.hypercall &= ~1
            return 0, None
        if msr == MSR_HYPERCALL:
            # kvm_hv_set_msr_pw(): ignored while GUEST_OS_ID is 0
            if self.vm.guest_os_id == 0:
                return 0, None
            if value & 1:
                # writes the page with kvm_vcpu_write_guest(); fails outside memory
                page = value & ~0xFFF & U64
                if page + 4 > GUEST_MEM:
                    return 1, None
                # kvm_hv_set_msr_pw(): the vendor's vmcall/vmmcall
                # (kvm_x86_patch_hypercall) then `ret`, 4 bytes at the page start (no Xen)
                for i, b in enumerate(INSN_BYTES[self.native].to_bytes(3, "big") + b"\xc3"):
                    self.vm.mem[page + i] = b
            self.vm.hypercall = value
            return 0, None
        if msr in OTHER_PW_MSRS:
            return self._other_set(v, msr, value, host)
        if self.v7:
            # v7 hyperv.c: void syndbg_set_msr(): silently ignored when inactive, exits
            # for CONTROL/PENDING_BUFFER whoever writes (no `host` parameter)
            if not self.vm.active:
                return 0, None
            self.vm.syndbg[msr] = value
            if msr in (MSR_CONTROL, MSR_PENDING):
                return 0, self._syndbg_exit(msr, 2 if not host else 0)
            return 0, None
        # arch/x86/kvm/hyperv.c: syndbg_set_msr(): guest access needs syndbg enabled
        if not host and not self.syndbg_on(v):
            return 1, None
        self.vm.syndbg[msr] = value
        # syndbg_set_msr(): only guest writes of CONTROL / PENDING_BUFFER exit
        if not host and msr in (MSR_CONTROL, MSR_PENDING):
            return 0, self._syndbg_exit(msr, 2)
        return 0, None

    def hv_get_msr(self, v: _Vcpu, msr: int, host: bool) -> tuple[int, int]:
        # arch/x86/kvm/hyperv.c: kvm_hv_get_msr_common()
        if not host and not v.hv_enabled:
            return 1, 0
        # kvm_hv_get_msr_pw(): hv_check_msr_access()
        if not host and not self.msr_access_ok(v, msr):
            return 1, 0
        if msr == MSR_GUEST_OS_ID:
            return 0, self.vm.guest_os_id
        if msr == MSR_HYPERCALL:
            return 0, self.vm.hypercall
        if msr in OTHER_PW_MSRS:
            # kvm_hv_get_msr_pw(): RESET reads 0; TIME_REF_COUNT is never read by scripts
            # (a clock); the rest read back what was stored
            return 0, 0 if msr == MSR_RESET else self.vm.other[msr]
        if self.v7:
            # v7 hyperv.c: kvm_hv_get_msr_pw() calls void syndbg_get_msr() then `break`,
            # and ends with `*pdata = data` where data = 0: every read returns 0
            return 0, 0
        # syndbg_get_msr(): guest access needs syndbg enabled
        if not host and not self.syndbg_on(v):
            return 1, 0
        return 0, self.vm.syndbg[msr]

    def _other_set(self, v: _Vcpu, msr: int, value: int, host: bool) -> tuple[int, dict | None]:
        """kvm_hv_set_msr_pw() for the partition-wide MSRs outside syndbg."""
        if msr == MSR_RESET:
            # kvm_hv_set_msr_pw(): data == 1 makes KVM_REQ_HV_RESET, whoever writes;
            # vcpu_enter_guest() turns it into KVM_EXIT_SYSTEM_EVENT(RESET). Reads give 0.
            if value == 1:
                if host:
                    v.pending_reset = True
                    return 0, None
                return 0, self._system_event(KVM_EXIT_SYSTEM_EVENT_RESET, 2)
            return 0, None
        if msr == MSR_TIME_REF_COUNT:
            # kvm_hv_set_msr_pw(): read-only, a host write is ignored
            return (1 if not host else 0), None
        if msr == MSR_CRASH_CTL:
            # kvm_hv_set_msr_pw(): the host stores the NOTIFY bit (kvm_hv_msr_set_crash_ctl());
            # a guest write stores nothing, and with NOTIFY makes KVM_REQ_HV_CRASH ->
            # KVM_EXIT_SYSTEM_EVENT(CRASH)
            if host:
                self.vm.other[MSR_CRASH_CTL] = value & CRASH_CTL_NOTIFY
                return 0, None
            if value & CRASH_CTL_NOTIFY:
                return 0, self._system_event(KVM_EXIT_SYSTEM_EVENT_CRASH, 2)
            return 0, None
        if msr == MSR_TSC_EMULATION_STATUS and value and not host:
            return 1, None           # kvm_hv_set_msr_pw(): the guest may only clear it
        # REFERENCE_TSC, CRASH_P0-P4 (kvm_hv_msr_set_crash_data()), REENLIGHTENMENT_CONTROL,
        # TSC_EMULATION_CONTROL/STATUS: stored as written
        self.vm.other[msr] = value
        return 0, None

    @staticmethod
    def _system_event(kind: int, rip: int) -> dict:
        return {"reason": "system_event", "type": kind, "rip": rip}

    @staticmethod
    def is_hv_msr(msr: int) -> bool:
        # arch/x86/kvm/x86.c: kvm_{set,get}_msr_common() route these to hyperv.c
        return msr in (MSR_GUEST_OS_ID, MSR_HYPERCALL) or msr in SYNDBG_MSRS or msr in OTHER_PW_MSRS

    # ---- guest actions ----------------------------------------------------
    def _deliver_pending(self, v: _Vcpu, a: dict, exits: list) -> None:
        # x86.c: vcpu_enter_guest() checks KVM_REQ_HV_RESET before KVM_REQ_HV_EXIT, each
        # exits before entering the guest (rip 0)
        if v.pending_reset:
            exits.append(self._system_event(KVM_EXIT_SYSTEM_EVENT_RESET, 0))
            v.pending_reset = False
        # v7 only: a host write left KVM_REQ_HV_EXIT pending; completion on the next KVM_RUN
        if v.pending_exit is not None:
            exits.append(v.pending_exit)
            self._complete_syndbg(v.pending_exit, a)
            v.pending_exit = None

    def _complete_syndbg(self, ex: dict, a: dict) -> None:
        # arch/x86/kvm/hyperv.c: kvm_hv_syndbg_complete_userspace(): only a CONTROL exit
        # copies run->hyperv.u.syndbg.status (the reply, else the 0 KVM put there)
        if ex["msr"] == MSR_CONTROL:
            self.vm.syndbg[MSR_STATUS] = a.get("status", ex["status"]) & U64

    def guest_msr(self, v: _Vcpu, a: dict) -> dict:
        ev = {"vcpu": a["vcpu"], "exits": []}
        exits = ev["exits"]
        self._deliver_pending(v, a, exits)
        msr, write = a["msr"], a["op"] == "wrmsr"
        value = a.get("value", 0) & U64
        vector = None
        got = None
        if a["cpl"] != 0:
            vector = GP                  # RDMSR/WRMSR at CPL>0: #GP before any intercept
        elif not self.is_hv_msr(msr):
            # x86.c: unknown MSR -> KVM_MSR_RET_UNSUPPORTED -> reason UNKNOWN, which the
            # INVAL-only user-space MSR mask does not forward: #GP
            vector = GP
        else:
            if write:
                r, ex = self.hv_set_msr(v, msr, value, host=False)
            else:
                r, got = self.hv_get_msr(v, msr, host=False)
                ex = None
            if r:
                # x86.c: kvm_emulate_{rd,wr}msr() -> kvm_msr_user_space(): reason INVAL
                if self.s["user_msr"]:
                    exits.append({"reason": "x86_wrmsr" if write else "x86_rdmsr",
                                  "msr_reason": KVM_MSR_EXIT_REASON_INVAL, "index": msr,
                                  "data": value if write else 0})
                vector = GP              # the payload answers msr.error = 1
                got = None
            elif ex is not None:
                exits.append(ex)
                if ex["reason"] == "hyperv":
                    self._complete_syndbg(ex, a)
        ev["vector"] = vector
        if not write:
            ev["value"] = got if vector is None else None
        ev["rip_advance"] = 2
        return ev

    def hcall(self, v: _Vcpu, a: dict) -> dict:
        m64 = self.s["mode"] == 64
        ctl = a["control"] & U64
        ingpa, outgpa = a["ingpa"] & U64, a["outgpa"] & U64
        if m64:
            rax, rdx = a["rax"] & U64, ingpa
        else:
            rax, rdx = ctl & U32, ctl >> 32      # EDX:EAX as the payload loads them
        ev = {"vcpu": a["vcpu"], "exits": []}
        exits = ev["exits"]
        self._deliver_pending(v, a, exits)
        site = (a["insn"], self.s["mode"])
        insn = self.vm.sites.get(site, INSN_BYTES[a["insn"]])
        vector = None

        def done():
            ev.update({"vector": vector, "rax": rax, "rdx": rdx,
                       "insn_after": self.vm.sites.get(site, INSN_BYTES[a["insn"]]),
                       "rip_advance": 3})
            return ev

        if insn != INSN_BYTES[self.native]:
            # The other vendor's instruction: #UD intercepted, x86.c handle_ud() emulates it
            # (emulate.c: VMCALL is Priv, VMMCALL Prot, both EmulateOnUD -> em_hypercall)
            if insn == VMCALL and a["cpl"] != 0:
                vector = GP              # emulate.c: x86_emulate_insn() Priv check at CPL>0
                return done()
            if not self.s["quirk_fix"]:
                vector = UD              # x86.c: emulator_fix_hypercall(), quirk disabled
                return done()
            # x86.c: emulator_fix_hypercall() patches the native instruction in place, RIP
            # unchanged; the guest re-executes it
            self.vm.sites[site] = INSN_BYTES[self.native]

        # x86.c: kvm_emulate_hypercall()
        if not self.hypercall_enabled(v):
            nr = rax if m64 else rax & U32
            if a["cpl"] != 0:
                ret = -KVM_EPERM
            elif nr == 1:                # KVM_HC_VAPIC_POLL_IRQ
                ret = 0
            else:
                ret = -KVM_ENOSYS
            rax = ret & (U64 if m64 else U32)
            return done()

        # arch/x86/kvm/hyperv.c: kvm_hv_hypercall()
        if a["cpl"] != 0:
            vector = UD                  # "hypercall generates UD from non zero cpl"
            return done()
        code = ctl & 0xFFFF
        fast = bool(ctl & FAST_BIT)
        status = None
        if (v.enforce and code in DEBUG_CALLS and self.syndbg_on(v)
                and not (v.hv_enabled and v.cfg["dbg"])):
            status = ST_ACCESS_DENIED    # hv_check_hypercall_access(): FEATURES.EBX HV_DEBUGGING
        elif ctl & RSVD_MASK:
            status = ST_INVALID_HYPERCALL_INPUT
        elif (fast and code == HVCALL_FLUSH_VIRTUAL_ADDRESS_SPACE and v.enforce
              and not (v.hv_enabled and v.cfg["xmm"])):
            # kvm_hv_hypercall(): a fast XMM-input call (is_xmm_fast_hypercall()) under
            # ENFORCE_CPUID needs FEATURES.EDX HV_X64_HYPERCALL_XMM_INPUT_AVAILABLE, else #UD
            vector = UD
            return done()
        elif code == HVCALL_FLUSH_VIRTUAL_ADDRESS_SPACE:
            # kvm_hv_hypercall(): var_cnt or rep -> INVALID_HYPERCALL_INPUT, else
            # kvm_hv_flush_tlb() -> SUCCESS | rep_cnt << 32 (rep_cnt is 0 here)
            var_cnt, rep_cnt, rep_idx = (ctl >> 17) & 0x3FF, (ctl >> 32) & 0xFFF, (ctl >> 48) & 0xFFF
            if var_cnt or rep_cnt or rep_idx:
                status = ST_INVALID_HYPERCALL_INPUT
            elif not fast and ingpa + 24 > GUEST_MEM:
                status = ST_INVALID_HYPERCALL_INPUT   # kvm_read_guest() of struct hv_tlb_flush
            else:
                status = 0
        elif code == HVCALL_POST_MESSAGE:
            # kvm_hv_hypercall(): rep, var_cnt or an inactive SynIC (never activated here:
            # no KVM_CAP_HYPERV_SYNIC) -> INVALID_HYPERCALL_INPUT
            status = ST_INVALID_HYPERCALL_INPUT
        elif code in (HVCALL_POST_DEBUG_DATA, HVCALL_RETRIEVE_DEBUG_DATA) and fast:
            status = ST_INVALID_PARAMETER
        elif code in DEBUG_CALLS:
            if not self.syndbg_on(v):
                status = ST_INVALID_HYPERCALL_CODE
            elif not self.vm.syndbg[MSR_OPTIONS] & OPTION_USE_HCALLS:
                status = ST_OPERATION_DENIED
            else:
                # KVM_EXIT_HYPERV_HCALL with the whole control word; the payload replies
                # `result`, kvm_hv_hypercall_complete_userspace() hands it to the guest
                # (outside 64-bit mode the GPAs come from EBX:ECX and EDI:ESI)
                exits.append({"reason": "hyperv", "type": KVM_EXIT_HYPERV_HCALL, "input": ctl,
                              "params": [ingpa, outgpa], "rip": 0})
                status = a["result"] & U64
        else:
            status = ST_INVALID_HYPERCALL_CODE
        # kvm_hv_hypercall_set_result(): RAX, or EDX:EAX outside 64-bit mode
        if m64:
            rax = status
        else:
            rdx, rax = status >> 32, status & U32
        return done()

    # ---- host actions -------------------------------------------------------
    def host(self, a: dict) -> dict:
        op = a["op"]
        if op in ("set_msr", "get_msr"):
            v = self.vcpus[a["vcpu"]]
            msr = a["msr"]
            ev = {"vcpu": a["vcpu"]}
            if not self.is_hv_msr(msr):
                # x86.c: __msr_io() stops at the first MSR that fails
                ev.update({"ret": 0, "errno": 0})
                if op == "get_msr":
                    ev["value"] = None
                return ev
            if op == "set_msr":
                # arch/x86/kvm/hyperv.c: host writes skip every gate (kvm_hv_set_msr_common)
                r, ex = self.hv_set_msr(v, msr, a.get("value", 0) & U64, host=True)
                if ex is not None:       # v7 only: host writes exit as well
                    v.pending_exit = ex
                ev.update({"ret": 0 if r else 1, "errno": 0})
            else:
                r, val = self.hv_get_msr(v, msr, host=True)
                ev.update({"ret": 0 if r else 1, "errno": 0, "value": None if r else val})
            return ev
        if op == "set_cpuid":
            v = self.vcpus[a["vcpu"]]
            cfg = {k: a.get(k, DEFAULT_VCPU[k]) for k in CPUID_KEYS}
            same = all(cfg[k] == v.cfg[k] for k in cfg)
            # arch/x86/kvm/cpuid.c: kvm_set_cpuid(): after the first KVM_RUN only an
            # identical table is accepted (kvm_cpuid_check_equal), and it changes nothing
            if v.ran and not same:
                return {"vcpu": a["vcpu"], "ret": -1, "errno": EINVAL}
            if not v.ran:
                v.cfg = {**v.cfg, **cfg}     # kvm_hv_set_cpuid() recaches
            return {"vcpu": a["vcpu"], "ret": 0, "errno": 0}
        if op == "check_ext":
            # arch/x86/kvm/x86.c: kvm_vm_ioctl_check_extension(); 180 is not an x86 cap
            # in mainline (KVM_CAP_S390_PROTECTED); v7 advertised KVM_CAP_HYPERV_SYNDBG
            cap = a["cap"]
            if cap == CAP_HYPERV_SYNDBG_V7:
                return {"ret": 1 if self.v7 else 0}
            raise ValueError(f"check_ext: the model knows cap 180 only, not {cap}")
        if op == "enable_cap":
            cap = a["cap"]
            # x86.c: kvm_vcpu_ioctl_enable_cap(): unknown caps are -EINVAL;
            # v7: KVM_CAP_HYPERV_SYNDBG -> kvm_hv_activate_syndbg() (VM-wide active)
            if cap == CAP_HYPERV_SYNDBG_V7 and self.v7:
                self.vm.active = True
                return {"vcpu": a["vcpu"], "ret": 0, "errno": 0}
            if cap == CAP_HYPERV_SYNDBG_V7:
                return {"vcpu": a["vcpu"], "ret": -1, "errno": EINVAL}
            raise ValueError(f"enable_cap: the model knows cap 180 only, not {cap}")
        if op == "hv_cpuid":
            return self.hv_cpuid(a)
        if op == "peek":
            gpa = a["gpa"]
            return {"value": int.from_bytes(bytes(self.vm.mem.get(gpa + i, 0) for i in range(8)),
                                            "little")}
        if op == "msr_list":
            # x86.c: emulated_msrs_all lists the six syndbg MSRs, and nothing else in
            # 0x400000F0-0x400000FF
            return {"ret": 0, "errno": 0,
                    "present": [MSR_CONTROL, MSR_STATUS, MSR_SEND, MSR_RECV, MSR_PENDING,
                                MSR_OPTIONS]}
        raise ValueError(op)

    def _hv_cpuid_leaf(self, function: int, max_leaf: int, on_vcpu: bool) -> list[int]:
        """[eax, ebx, ecx, edx] of one entry: arch/x86/kvm/hyperv.c kvm_get_hv_cpuid()."""
        # `!vcpu || lapic_in_kernel(vcpu)`: the payload's VMs have no in-kernel irqchip
        lapic = not on_vcpu
        # nested_ops->get_evmcs_version: SVM has none; VMX reports eVMCS 1.0 for the
        # system ioctl, and for a vCPU only once KVM_CAP_HYPERV_ENLIGHTENED_VMCS is on
        # (never here)  (inference for Intel: not run on this machine)
        evmcs = 0x101 if (self.s["vendor"] == "intel" and not on_vcpu) else 0
        if function == 0x40000000:
            return [max_leaf, *SIG]
        if function == 0x40000001:
            return [0x31237648, 0, 0, 0]                 # HYPERV_CPUID_SIGNATURE_EAX "Hv#1"
        if function == 0x40000002:
            return [0x00003839, 0x000A0000, 0, 0]        # "Hyper-V 2016" version
        if function == 0x40000003:
            # EAX: VP_RUNTIME, TIME_REF_COUNT, SYNIC, SYNTIMER, APIC_ACCESS, HYPERCALL,
            # VP_INDEX, RESET, REFERENCE_TSC (bit 9), ACCESS_FREQUENCY_MSRS (11),
            # ACCESS_REENLIGHTENMENT (13); EBX: POST_MESSAGES (4), SIGNAL_EVENTS (5),
            # DEBUGGING (11); EDX: GUEST_DEBUGGING (1), HYPERCALL_XMM_INPUT (4),
            # FREQUENCY_MSRS (8), GUEST_CRASH_MSR (10), DEBUG_MSRS (11), STIMER_DIRECT
            # (19) with an in-kernel LAPIC
            eax = 0xFF | (1 << 9) | (1 << 11) | (1 << 13)
            ebx = (1 << 4) | (1 << 5) | (1 << 11)
            edx = (1 << 1) | (1 << 4) | (1 << 8) | (1 << 10) | (1 << 11) | ((1 << 19) if lapic else 0)
            return [eax, ebx, 0, edx]
        if function == 0x40000004:
            # ENLIGHTMENT_INFO: REMOTE_TLB_FLUSH (2), APIC_ACCESS (3), RELAXED_TIMING (5),
            # DEPRECATING_AEOI (9), CLUSTER_IPI (10, in-kernel LAPIC), EX_PROCESSOR_MASKS
            # (11), ENLIGHTENED_VMCS (14, eVMCS), NO_NONARCH_CORESHARING (18,
            # !cpu_smt_possible()); EBX: 0xFFF spinlock retries
            eax = (1 << 2) | (1 << 3) | (1 << 5) | (1 << 9) | (1 << 11)
            eax |= (1 << 10) if lapic else 0
            eax |= (1 << 14) if evmcs else 0
            eax |= 0 if self.s["smt"] else (1 << 18)
            return [eax, 0xFFF, 0, 0]
        if function == 0x40000005:
            return [1024, 64, 0, 0]                      # KVM_MAX_VCPUS, 64 LPs
        if function == 0x4000000A:
            # NESTED_FEATURES: evmcs_ver | NESTED_MSR_BITMAP (19); EBX EVMCS1_PERF_GLOBAL_CTRL
            return [evmcs | (1 << 19), 1, 0, 0]
        if function == 0x40000080:
            return [0, *SIG]
        if function == 0x40000081:
            return [0x31235356, 0, 0, 0]                 # "VS#1"
        if function == 0x40000082:
            return [0x2, 0, 0, 0]                        # ALLOW_KERNEL_DEBUGGING
        raise ValueError(f"hv_cpuid: no leaf {function:#x}")

    def hv_cpuid(self, a: dict) -> dict:
        ev = {"fd": a["fd"]}
        if self.v7:
            # v7 hyperv.c: kvm_vcpu_ioctl_get_hv_cpuid(): the syndbg leaves follow
            # NESTED_FEATURES and `--nent` without eVMCS drops the last one (0x40000082)
            functions = HV_CPUID_FUNCTIONS_V7[:-1]
            max_leaf = 0x40000082 if (self.vm.active and a["fd"] == "vcpu") else 0x4000000A
        else:
            # arch/x86/kvm/hyperv.c: kvm_get_hv_cpuid(): 10 fixed entries
            functions = HV_CPUID_FUNCTIONS_61
            max_leaf = 0x40000082
        if a["nent"] < len(functions):
            ev.update({"ret": -1, "errno": E2BIG})
            return ev
        ev.update({"ret": 0, "errno": 0, "nent": len(functions), "functions": functions,
                   "index_flags_zero": True,
                   "entries": [[f, *self._hv_cpuid_leaf(f, max_leaf, a["fd"] == "vcpu")]
                               for f in functions]})
        return ev

    # ---- driver -------------------------------------------------------------
    def run(self) -> list[dict]:
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


def predict(script: dict, profile: str = PROFILES[0]) -> list[dict]:
    """The events the payload prints for `script`, under `profile`."""
    return _Model(script, profile).run()


def describe(action: dict) -> str:
    """One-line rendering of an action for divergence messages."""
    op = action["op"]
    vcpu = f"vcpu{action.get('vcpu', 0)}"
    cpl = " cpl3" if action.get("cpl") == 3 else ""
    if op == "wrmsr":
        return f"{vcpu}{cpl} wrmsr {action['msr']:#x} = {action.get('value', 0):#x}"
    if op == "rdmsr":
        return f"{vcpu}{cpl} rdmsr {action['msr']:#x}"
    if op == "hcall":
        return (f"{vcpu}{cpl} {action.get('insn', 'vmcall')} control={action['control']:#x} "
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
