"""Hypothesis strategies for random syndbg op-scripts (5 to 30 actions).

Every action kind of harness/reference/syndbg.py and every CPUID / ENFORCE_CPUID
/ OPTIONS configuration is reachable; values favour the ones the rules care
about (the six MSRs, GUEST_OS_ID, OPTIONS bit 2, the debug hypercall codes,
reserved and fast control bits) and mix in arbitrary 64-bit numbers.

Steering: a script is a list of *chunks*; a chunk is one free action (any kind,
any value) or a short *scenario* aimed at the model rules a free action seldom
reaches on its own (an enforce-CPUID access check, the TSC page, a reset or crash
request, the hypercall page, the flush and debug hypercall statuses, a syndbg exit
whose msr the VMM rewrites, real and compatibility mode). The weights are static
(the repeated entries of the `sampled_from` lists below, marked `weight`): they
were chosen by measuring, for seeds 1 to 10, which rules 300 scripts reach
(`model_coverage` of the shared driver, tests/test_model_rules.py) and raising the
weight of the scenario behind each rule left unreached, until every seed reached
at least 95% of the reachable rules; nothing is computed at run time, so a seed
replays.
"""
from __future__ import annotations

from hypothesis import strategies as st

from harness.reference.syndbg import ACTION_KINDS, payload_page

KINDS = ACTION_KINDS   # every kind the random scripts must draw


def kind(action: dict) -> str:
    """The kind counted in run.json's random.action_kinds."""
    return action["op"]


OSID = 0x1000101010001
GUEST_OS_ID, HYPERCALL = 0x40000000, 0x40000001
CONTROL, STATUS, SEND, RECV, PENDING, OPTIONS = (
    0x400000F1, 0x400000F2, 0x400000F3, 0x400000F4, 0x400000F5, 0x400000FF)
SYNDBG_MSRS = [CONTROL, STATUS, SEND, RECV, PENDING, OPTIONS]
HV_MSRS = [GUEST_OS_ID, HYPERCALL]
UNHANDLED = [0x400000F0, 0x400000F6, 0x400000FE]
RESET, TIME_REF_COUNT, REFERENCE_TSC = 0x40000003, 0x40000020, 0x40000021
CRASH_P0, CRASH_P4, CRASH_CTL = 0x40000100, 0x40000104, 0x40000105
REENLIGHTENMENT, TSC_EMU_CONTROL, TSC_EMU_STATUS = 0x40000106, 0x40000107, 0x40000108
# The other partition-wide MSRs of kvm_hv_set_msr_pw(): RESET, TIME_REF_COUNT (a clock:
# the payload prints a plausible read as 1), REFERENCE_TSC, CRASH_P0-P4, CRASH_CTL,
# REENLIGHTENMENT_CONTROL, TSC_EMULATION_CONTROL/STATUS
OTHER_MSRS = [RESET, TIME_REF_COUNT, REFERENCE_TSC, CRASH_P0, CRASH_P4, CRASH_CTL,
              REENLIGHTENMENT, TSC_EMU_CONTROL, TSC_EMU_STATUS]
NOTIFY = 1 << 63
GUEST_MEM = 0x200000
TSC_PAGE = 0x3E000                          # the one guest page a TSC page may use
# where the hypercall pages of msr_value() and the TSC page land
PEEK = [0x0, 0x50000, 0x50004, 0x30000, TSC_PAGE]
IN, OUT = 0x30000, 0x31000

u64 = st.integers(0, (1 << 64) - 1)
# weight: the syndbg MSRs three times, GUEST_OS_ID/HYPERCALL twice, the rest once
msrs = st.sampled_from(SYNDBG_MSRS * 3 + HV_MSRS * 2 + UNHANDLED + OTHER_MSRS)


def safe_reference_tsc(value: int) -> int:
    """REFERENCE_TSC with the enable bit makes KVM write a TSC page into guest memory
    (over the payload's code, for most values): an enabled page inside guest memory is
    moved to TSC_PAGE, whose bytes 8-23 (scale, offset: clock-dependent) are never peeked."""
    if value & 1 and (value & ~0xFFF) < GUEST_MEM:
        return TSC_PAGE | (value & 0xFFF)
    return value


def safe_hypercall_page(value: int) -> int:
    """HYPERCALL with the enable bit makes KVM write the hypercall page into guest
    memory: one on a page the payload uses itself (model.payload_page(); hypothesis
    favours small numbers) is moved to 0x50000. Seen: 0x2297 from a host write
    overwrote the page tables, and the next KVM_RUN never came back."""
    if value & 1 and payload_page(value & ~0xFFF):
        return 0x50000 | (value & 0xFFF)
    return value


def msr_value(msr_strategy=msrs, tsc_enable: bool = True):
    """(msr, value) pairs where the value suits the MSR often enough."""
    interesting = st.sampled_from([0, 1, 2, 3, 4, 5, 0x1000, 0x50000, 0x50001, OSID,
                                   0xFFFFFFFFFFFFFFFF, 0xFFFFFFFFFFFFFFFB, 0x00200001,
                                   0x3000001, 1 << 63, (1 << 63) | (1 << 62) | 7,
                                   TSC_PAGE | 1])

    def fix(pair):
        msr, value = pair
        if msr == HYPERCALL:
            return msr, safe_hypercall_page(value)
        if msr != REFERENCE_TSC:
            return pair
        return msr, safe_reference_tsc(value) if tsc_enable else value & ~1
    return st.tuples(msr_strategy, st.one_of(interesting, interesting, u64)).map(fix)


ENABLED = {"hv": True, "sd": "set", "dm": True, "dbg": True, "hc": True, "xmm": True,
           "time_ref": True, "reset": True, "ref_tsc": True, "reenlight": True, "crash": True,
           "post_msg": True, "tlb_flush": True}


@st.composite
def vcpu_config(draw):
    # weight: half of the vCPUs have everything KVM offers (the KDNet setup), with or
    # without ENFORCE_CPUID, so that the syndbg MSRs and hypercalls work often
    if draw(st.booleans()):
        return {**ENABLED, "enforce": draw(st.booleans())}

    def clear(p_of_4=1):             # weight: a CPUID bit is cleared in p_of_4 of 4 vCPUs
        return draw(st.integers(0, 3)) >= p_of_4
    sd = draw(st.sampled_from(["set", "set", "set", "zero", "absent", "absent", 0xFFFFFFFD,
                               0x3, 0xFFFFFFFF, 0x1]))
    return {
        "hv": draw(st.sampled_from([True, True, True, True, True, False])),
        "sd": sd,
        "dm": draw(st.booleans()),
        "dbg": draw(st.booleans()),
        "hc": draw(st.sampled_from([True, True, True, False])),
        "xmm": draw(st.sampled_from([True, True, False])),
        "time_ref": clear(), "reset": clear(), "ref_tsc": clear(), "reenlight": clear(),
        "crash": clear(), "post_msg": clear(), "tlb_flush": clear(),
        "enforce": draw(st.sampled_from([True, True, True, False, False])),
    }


@st.composite
def hcall_control(draw):
    # weight: RESET twice; FLUSH_VIRTUAL_ADDRESS_SPACE and POST_MESSAGE once each
    code = draw(st.sampled_from([0x69, 0x6A, 0x6B, 0x6B, 0x6C, 0x02, 0x5C]))
    ctl = code
    if draw(st.booleans()):
        ctl |= 1 << 16                                    # fast
    shape = draw(st.integers(0, 5))
    if shape == 0:
        ctl |= draw(st.integers(0, 0x3FF)) << 17          # var-header size
        ctl |= draw(st.integers(0, 0xFFF)) << 32          # rep count
        ctl |= draw(st.integers(0, 0xFFF)) << 48          # rep start
    elif shape == 1:
        ctl |= draw(st.integers(1, 0x3FF)) << 17          # var-header size only
    elif shape == 2:
        ctl |= draw(st.integers(1, 0xFFF)) << 32          # rep count only
    if draw(st.integers(0, 4)) == 0:
        ctl |= 1 << draw(st.sampled_from([27, 31, 44, 47, 60, 63]))   # reserved
    return ctl


def action(nr_vcpus: int, mode: int):
    """One free action: any kind, any value."""
    vcpu = st.integers(0, nr_vcpus - 1)
    cpl = st.sampled_from([0, 0, 0, 3]) if mode == 64 else st.just(0)

    @st.composite
    def wrmsr(draw):
        msr, value = draw(msr_value(st.sampled_from(SYNDBG_MSRS * 3 + HV_MSRS * 2 + UNHANDLED
                                                    + OTHER_MSRS)))
        a = {"op": "wrmsr", "vcpu": draw(vcpu), "msr": msr, "value": value, "cpl": draw(cpl)}
        if draw(st.booleans()):
            a["status"] = draw(st.one_of(st.sampled_from([0, 1, 4, 0x100005]), u64))
        return a

    @st.composite
    def osid(draw):          # the writes that turn the Hyper-V hypercall path on
        msr, value = draw(st.sampled_from([(GUEST_OS_ID, OSID), (OPTIONS, 4)]))
        return {"op": "wrmsr", "vcpu": draw(vcpu), "msr": msr, "value": value, "cpl": 0}

    @st.composite
    def rdmsr(draw):
        return {"op": "rdmsr", "vcpu": draw(vcpu), "msr": draw(msrs), "cpl": draw(cpl)}

    @st.composite
    def hcall(draw):
        rax = draw(st.sampled_from([0, 1, 0x6B, 0xDEAD0000]))
        return {"op": "hcall", "vcpu": draw(vcpu), "insn": draw(st.sampled_from(["vmcall", "vmmcall"])),
                "control": draw(hcall_control()), "ingpa": draw(st.one_of(st.just(IN), u64)),
                "outgpa": draw(st.one_of(st.just(OUT), u64)), "rax": rax,
                "result": draw(st.one_of(st.sampled_from([0, 0x13, 0x1234567800000013]), u64)),
                "cpl": draw(cpl)}

    @st.composite
    def nop(draw):
        return {"op": "nop", "vcpu": draw(vcpu), "cpl": draw(cpl)}

    @st.composite
    def set_msr(draw):
        msr, value = draw(msr_value(st.sampled_from(SYNDBG_MSRS + HV_MSRS + OTHER_MSRS + UNHANDLED),
                                    # a host write with the enable bit is written by
                                    # whichever vCPU next runs with a clock update
                                    # pending: only one-vCPU scripts keep the bit
                                    tsc_enable=nr_vcpus == 1))
        return {"op": "set_msr", "vcpu": draw(vcpu), "msr": msr, "value": value}

    @st.composite
    def get_msr(draw):
        return {"op": "get_msr", "vcpu": draw(vcpu),
                "msr": draw(st.sampled_from(SYNDBG_MSRS + HV_MSRS + OTHER_MSRS + UNHANDLED))}

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

    # weight: wrmsr and hcall three times, rdmsr twice, the rest once
    return st.one_of(
        wrmsr(), wrmsr(), wrmsr(), osid(), rdmsr(), rdmsr(), hcall(), hcall(), hcall(),
        nop(), set_msr(), get_msr(), set_cpuid(), caps(), hv_cpuid(),
        st.just({"op": "msr_list"}), st.sampled_from(PEEK).map(lambda g: {"op": "peek", "gpa": g}),
    )


def scenario(nr_vcpus: int, mode: int):
    """A few actions aimed at rules a free action seldom reaches."""
    vcpu = st.integers(0, nr_vcpus - 1)

    def wr(msr, value, v, **kw):
        return {"op": "wrmsr", "vcpu": v, "msr": msr, "value": value, "cpl": 0, **kw}

    def hc(control, v, **kw):
        return {"op": "hcall", "vcpu": v, "insn": "native", "control": control, "ingpa": IN,
                "outgpa": OUT, "cpl": 0, **kw}

    @st.composite
    def access(draw):        # hv_check_msr_access(): one MSR of each CPUID-gated group
        v = draw(vcpu)
        msr = draw(st.sampled_from([GUEST_OS_ID, TIME_REF_COUNT, RESET, REFERENCE_TSC,
                                    REENLIGHTENMENT, TSC_EMU_CONTROL, TSC_EMU_STATUS,
                                    CRASH_P0, CRASH_CTL, STATUS, SEND]))
        if draw(st.booleans()):
            return [{"op": "rdmsr", "vcpu": v, "msr": msr, "cpl": 0}]
        return [wr(msr, safe_reference_tsc(draw(st.sampled_from([0, 1, 2]))), v)]

    @st.composite
    def tsc_page(draw):      # REFERENCE_TSC with the enable bit: kvm_hv_setup_tsc_page()
        v = draw(vcpu)
        page = draw(st.sampled_from([TSC_PAGE | 1, TSC_PAGE | 1, 0x3000001, TSC_PAGE]))
        acts = [wr(REFERENCE_TSC, page, v), {"op": "peek", "gpa": TSC_PAGE}]
        if nr_vcpus == 1 and draw(st.booleans()):
            # a host change, with TSC emulation on or off (tsc_page_update_unsafe())
            acts += [{"op": "set_msr", "vcpu": 0, "msr": TSC_EMU_CONTROL,
                      "value": draw(st.sampled_from([0, 1]))},
                     {"op": "set_msr", "vcpu": 0, "msr": REFERENCE_TSC, "value": TSC_PAGE | 1},
                     {"op": "nop", "vcpu": 0, "cpl": 0}, {"op": "peek", "gpa": TSC_PAGE}]
        else:
            # the other vCPU's first run: a master clock update rewrites a set-up page
            acts += [{"op": "nop", "vcpu": nr_vcpus - 1 - v, "cpl": 0},
                     {"op": "peek", "gpa": TSC_PAGE}]
        return acts

    @st.composite
    def requests(draw):      # RESET and CRASH_CTL: KVM_REQ_HV_RESET, KVM_REQ_HV_CRASH
        v = draw(vcpu)
        return draw(st.sampled_from([
            [{"op": "set_msr", "vcpu": v, "msr": RESET, "value": 1}, {"op": "nop", "vcpu": v, "cpl": 0}],
            [wr(RESET, 1, v)],
            [wr(CRASH_CTL, NOTIFY, v)],
            [wr(CRASH_CTL, 0x4000000000000001, v), wr(RESET, 2, v)],
            [{"op": "set_msr", "vcpu": v, "msr": CRASH_CTL, "value": NOTIFY | 5},
             {"op": "rdmsr", "vcpu": v, "msr": CRASH_CTL, "cpl": 0}],
            [wr(TIME_REF_COUNT, 5, v), {"op": "set_msr", "vcpu": v, "msr": TIME_REF_COUNT, "value": 5}],
            [wr(TSC_EMU_STATUS, 1, v), {"op": "get_msr", "vcpu": v, "msr": TSC_EMU_STATUS}],
        ]))

    @st.composite
    def hypercall_page(draw):   # HV_X64_MSR_HYPERCALL: written, disabled, outside, ignored
        v = draw(vcpu)
        value = draw(st.sampled_from([0x50001, 0x50001, 0x50000, 0x3000001]))
        acts = [wr(GUEST_OS_ID, draw(st.sampled_from([OSID, OSID, 0])), v), wr(HYPERCALL, value, v),
                {"op": "peek", "gpa": 0x50000}]
        if draw(st.booleans()):
            acts += [wr(GUEST_OS_ID, 0, v), {"op": "rdmsr", "vcpu": v, "msr": HYPERCALL, "cpl": 0}]
        return acts

    @st.composite
    def hypercalls(draw):    # kvm_hv_hypercall() statuses after GUEST_OS_ID (and OPTIONS)
        v = draw(vcpu)
        acts = [wr(GUEST_OS_ID, OSID, v)]
        options = draw(st.sampled_from([4, 4, 0, 3, 0xFFFFFFFFFFFFFFFB, 0xFFFFFFFFFFFFFFFF]))
        acts.append(wr(OPTIONS, options, v))
        for _ in range(draw(st.integers(1, 3))):
            # weight: FLUSH_VIRTUAL_ADDRESS_SPACE slow and fast twice
            control = draw(st.sampled_from([
                0x69, 0x6A, 0x6B, 0x1006B, 0x10069, 0x6C, 0x5C, 0x2, 0x2, 0x10002, 0x10002,
                0x2 | (1 << 17), 0x2 | (3 << 32), 0x6B | (1 << 63), 0x6A | (1 << 17) | (2 << 32)]))
            ingpa = draw(st.sampled_from([IN, IN, 0x1FFFF0, 0xFFFFFFFF000]))
            acts.append(hc(control, draw(vcpu), ingpa=ingpa,
                           result=draw(st.sampled_from([0, 0x13, 0x1234567800000013]))))
        return acts

    @st.composite
    def syndbg_exit(draw):   # kvm_hv_syndbg_complete_userspace() with the VMM's msr
        v = draw(vcpu)
        msr = draw(st.sampled_from([CONTROL, PENDING]))
        a = wr(msr, draw(st.sampled_from([1, 2, 0xD000])), v,
               status=draw(st.sampled_from([0x11, 0x22, 0x100005])))
        if draw(st.booleans()):
            a["exit_msr"] = draw(st.sampled_from([CONTROL, PENDING, 0x12345678]))
        return [a, {"op": "rdmsr", "vcpu": v, "msr": STATUS, "cpl": 0}]

    @st.composite
    def other_mode(draw):    # real mode and compatibility mode
        v = draw(vcpu)
        mode_ = draw(st.sampled_from(["real", "real", "compat"]))
        pick = draw(st.integers(0, 3))
        if pick == 0:
            return [{"op": "rdmsr", "vcpu": v, "msr": draw(msrs), "cpl": 0, "cpu_mode": mode_}]
        if pick == 1:
            return [{"op": "nop", "vcpu": v, "cpl": 0, "cpu_mode": mode_}]
        insn = "native" if mode_ == "real" else draw(st.sampled_from(["native", "foreign"]))
        return [hc(draw(st.sampled_from([0x6B, 0x69, 0x1, 0x6B | (1 << 63)])), v, insn=insn,
                   cpu_mode=mode_, result=draw(st.sampled_from([0, 0x1234567800000013])))]

    @st.composite
    def syndbg_msrs(draw):   # syndbg_set_msr() / syndbg_get_msr(): the six MSRs
        acts = []
        for msr in draw(st.lists(st.sampled_from(SYNDBG_MSRS), min_size=1, max_size=3)):
            value = draw(st.one_of(st.sampled_from([0, 1, 4, 0x1000, 0xFFFFFFFFFFFFFFFF]), u64))
            acts.append(wr(msr, value, draw(vcpu)))
        return acts + [{"op": "rdmsr", "vcpu": draw(vcpu), "msr": STATUS, "cpl": 0}]

    @st.composite
    def host_unknown(draw):  # __msr_io() stops at an MSR KVM does not handle
        op = draw(st.sampled_from(["set_msr", "get_msr"]))
        a = {"op": op, "vcpu": draw(vcpu), "msr": draw(st.sampled_from(UNHANDLED))}
        if op == "set_msr":
            a["value"] = 1
        return [a]

    # weight: the syndbg MSRs, hypercall statuses and access checks three times, the
    # others once or twice
    return st.one_of(access(), access(), access(), tsc_page(), tsc_page(), requests(), requests(),
                     hypercall_page(), hypercalls(), hypercalls(), hypercalls(), syndbg_exit(),
                     syndbg_msrs(), syndbg_msrs(), syndbg_msrs(), other_mode(), other_mode(),
                     host_unknown())


def chunks(nr_vcpus: int, mode: int):
    free = action(nr_vcpus, mode).map(lambda a: [a])
    # weight: two free actions for every scenario
    return st.one_of(free, free, scenario(nr_vcpus, mode))


@st.composite
def scripts(draw, vendor: str = "amd", smt: bool = False, master_clock: bool = True):
    mode = draw(st.sampled_from([64, 64, 64, 32]))
    nr_vcpus = draw(st.sampled_from([1, 1, 2]))
    # Half of the scripts start as KDNet does (GUEST_OS_ID, then OPTIONS = USE_HCALLS), so
    # that hypercalls reach the userspace exit often enough.
    prelude = []
    if draw(st.booleans()):
        prelude = [{"op": "wrmsr", "vcpu": 0, "msr": GUEST_OS_ID, "value": OSID, "cpl": 0},
                   {"op": "wrmsr", "vcpu": 0, "msr": OPTIONS, "value": 4, "cpl": 0}]
    actions = list(prelude)
    for chunk in draw(st.lists(chunks(nr_vcpus, mode), min_size=3, max_size=20)):
        if len(actions) + len(chunk) > 30:
            break
        actions += chunk
    while len(actions) < 5:
        actions.append({"op": "nop", "vcpu": 0, "cpl": 0})
    return {
        "vendor": vendor,
        "smt": smt,
        "master_clock": master_clock,
        "mode": mode,
        "quirk_fix": draw(st.sampled_from([True, True, False])),
        "user_msr": draw(st.sampled_from([False, False, True])),
        "vcpus": [draw(vcpu_config()) for _ in range(nr_vcpus)],
        "actions": actions,
    }
