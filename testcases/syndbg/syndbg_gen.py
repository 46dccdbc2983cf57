"""Hypothesis strategies for random syndbg op-scripts (5 to 30 actions).

Every action kind of harness/reference/syndbg.py and every CPUID / ENFORCE_CPUID
/ OPTIONS configuration is reachable; values favour the ones the rules care
about (the six MSRs, GUEST_OS_ID, OPTIONS bit 2, the debug hypercall codes,
reserved and fast control bits) and mix in arbitrary 64-bit numbers.
"""
from __future__ import annotations

from hypothesis import strategies as st

from harness.reference.syndbg import ACTION_KINDS

KINDS = ACTION_KINDS   # every kind the random scripts must draw


def kind(action: dict) -> str:
    """The kind counted in run.json's random.action_kinds."""
    return action["op"]


OSID = 0x1000101010001
SYNDBG_MSRS = [0x400000F1, 0x400000F2, 0x400000F3, 0x400000F4, 0x400000F5, 0x400000FF]
HV_MSRS = [0x40000000, 0x40000001]
UNHANDLED = [0x400000F0, 0x400000F6, 0x400000FE]
# The other partition-wide MSRs of kvm_hv_set_msr_pw(): RESET, REFERENCE_TSC, CRASH_P0-P4,
# CRASH_CTL, REENLIGHTENMENT_CONTROL, TSC_EMULATION_CONTROL/STATUS (readable), and
# TIME_REF_COUNT (written only: reads give a clock)
OTHER_MSRS = [0x40000003, 0x40000021, 0x40000100, 0x40000104, 0x40000105, 0x40000106,
              0x40000107, 0x40000108]
TIME_REF_COUNT = 0x40000020
REFERENCE_TSC = 0x40000021
PEEK = [0x0, 0x50000, 0x50004, 0x30000]      # where the hypercall pages of msr_value() land

u64 = st.integers(0, (1 << 64) - 1)
msrs = st.sampled_from(SYNDBG_MSRS * 3 + HV_MSRS * 2 + UNHANDLED + OTHER_MSRS)
wr_msrs = st.sampled_from(SYNDBG_MSRS * 3 + HV_MSRS * 2 + UNHANDLED + OTHER_MSRS + [TIME_REF_COUNT])


def msr_value(msr_strategy=msrs):
    """(msr, value) pairs where the value suits the MSR often enough."""
    interesting = st.sampled_from([0, 1, 2, 4, 5, 0x1000, 0x50000, 0x50001, OSID,
                                   0xFFFFFFFFFFFFFFFF, 0x00200001, 0x3000001, 1 << 63,
                                   (1 << 63) | (1 << 62) | 7])

    def fix(pair):
        msr, value = pair
        # REFERENCE_TSC with the enable bit would make KVM write a TSC page into guest
        # memory (over the payload's code, for most values): keep it clear
        return (msr, value & ~1) if msr == REFERENCE_TSC else pair
    return st.tuples(msr_strategy, st.one_of(interesting, interesting, u64)).map(fix)


@st.composite
def vcpu_config(draw):
    return {
        "hv": draw(st.sampled_from([True, True, True, False])),
        "sd": draw(st.sampled_from(["set", "set", "zero", "absent"])),
        "dm": draw(st.booleans()),
        "dbg": draw(st.booleans()),
        "hc": draw(st.sampled_from([True, True, False])),
        "xmm": draw(st.sampled_from([True, True, False])),
        "enforce": draw(st.booleans()),
    }


@st.composite
def hcall_control(draw):
    code = draw(st.sampled_from([0x69, 0x6A, 0x6B, 0x6B, 0x6C, 0x02, 0x5C]))
    ctl = code
    if draw(st.booleans()):
        ctl |= 1 << 16                                    # fast
    if draw(st.integers(0, 3)) == 0:
        ctl |= draw(st.integers(0, 0x3FF)) << 17          # var-header size
        ctl |= draw(st.integers(0, 0xFFF)) << 32          # rep count
        ctl |= draw(st.integers(0, 0xFFF)) << 48          # rep start
    if draw(st.integers(0, 4)) == 0:
        ctl |= 1 << draw(st.sampled_from([27, 31, 44, 47, 60, 63]))   # reserved
    return ctl


def action(nr_vcpus: int, mode: int):
    vcpu = st.integers(0, nr_vcpus - 1)
    cpl = st.sampled_from([0, 0, 0, 3]) if mode == 64 else st.just(0)

    @st.composite
    def wrmsr(draw):
        msr, value = draw(msr_value(wr_msrs))
        a = {"op": "wrmsr", "vcpu": draw(vcpu), "msr": msr, "value": value, "cpl": draw(cpl)}
        if draw(st.booleans()):
            a["status"] = draw(st.one_of(st.sampled_from([0, 1, 4, 0x100005]), u64))
        return a

    @st.composite
    def osid(draw):          # the writes that turn the Hyper-V hypercall path on
        msr, value = draw(st.sampled_from([(0x40000000, OSID), (0x400000FF, 4)]))
        return {"op": "wrmsr", "vcpu": draw(vcpu), "msr": msr, "value": value, "cpl": 0}

    @st.composite
    def rdmsr(draw):
        return {"op": "rdmsr", "vcpu": draw(vcpu), "msr": draw(msrs), "cpl": draw(cpl)}

    @st.composite
    def hcall(draw):
        rax = draw(st.sampled_from([0, 1, 0x6B, 0xDEAD0000]))
        return {"op": "hcall", "vcpu": draw(vcpu), "insn": draw(st.sampled_from(["vmcall", "vmmcall"])),
                "control": draw(hcall_control()), "ingpa": draw(st.one_of(st.just(0x30000), u64)),
                "outgpa": draw(st.one_of(st.just(0x31000), u64)), "rax": rax,
                "result": draw(st.one_of(st.sampled_from([0, 0x13, 0x1234567800000013]), u64)),
                "cpl": draw(cpl)}

    @st.composite
    def nop(draw):
        return {"op": "nop", "vcpu": draw(vcpu), "cpl": draw(cpl)}

    @st.composite
    def set_msr(draw):
        msr, value = draw(msr_value(st.sampled_from(SYNDBG_MSRS + HV_MSRS + OTHER_MSRS +
                                                    [TIME_REF_COUNT])))
        return {"op": "set_msr", "vcpu": draw(vcpu), "msr": msr, "value": value}

    @st.composite
    def get_msr(draw):
        return {"op": "get_msr", "vcpu": draw(vcpu),
                "msr": draw(st.sampled_from(SYNDBG_MSRS + HV_MSRS + OTHER_MSRS))}

    @st.composite
    def set_cpuid(draw):
        cfg = draw(vcpu_config())
        cfg.pop("enforce")
        return {"op": "set_cpuid", "vcpu": draw(vcpu), **cfg}

    @st.composite
    def caps(draw):
        if draw(st.booleans()):
            return {"op": "check_ext", "cap": 180}
        return {"op": "enable_cap", "vcpu": draw(vcpu), "cap": 180, "arg": 0}

    @st.composite
    def hv_cpuid(draw):
        fd = draw(st.sampled_from(["system", "vcpu"]))
        a = {"op": "hv_cpuid", "fd": fd, "nent": draw(st.sampled_from([0, 9, 10, 64]))}
        if fd == "vcpu":
            a["vcpu"] = draw(vcpu)
        return a

    return st.one_of(
        wrmsr(), wrmsr(), wrmsr(), osid(), rdmsr(), rdmsr(), hcall(), hcall(), hcall(),
        nop(), set_msr(), get_msr(), set_cpuid(), caps(), hv_cpuid(),
        st.just({"op": "msr_list"}), st.sampled_from(PEEK).map(lambda g: {"op": "peek", "gpa": g}),
    )


@st.composite
def scripts(draw, vendor: str = "amd", smt: bool = False, master_clock: bool = True):
    mode = draw(st.sampled_from([64, 64, 64, 32]))
    nr_vcpus = draw(st.sampled_from([1, 1, 2]))
    # Half of the scripts start as KDNet does (GUEST_OS_ID, then OPTIONS = USE_HCALLS), so
    # that hypercalls reach the userspace exit often enough.
    prelude = []
    if draw(st.booleans()):
        prelude = [{"op": "wrmsr", "vcpu": 0, "msr": 0x40000000, "value": OSID, "cpl": 0},
                   {"op": "wrmsr", "vcpu": 0, "msr": 0x400000FF, "value": 4, "cpl": 0}]
    return {
        "vendor": vendor,
        "smt": smt,
        "mode": mode,
        "quirk_fix": draw(st.sampled_from([True, True, False])),
        "user_msr": draw(st.sampled_from([False, False, True])),
        "vcpus": [draw(vcpu_config()) for _ in range(nr_vcpus)],
        "actions": prelude + draw(st.lists(action(nr_vcpus, mode), min_size=5 - len(prelude),
                                           max_size=30 - len(prelude))),
    }
