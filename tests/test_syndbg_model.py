"""Unit tests of the syndbg reference model (harness/reference/syndbg.py); no guest."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from harness.compare import first_divergence
from harness.reference import syndbg as m

ROOT = Path(__file__).resolve().parents[1]
OSID = 0x1000101010001


def load(name):
    spec = importlib.util.spec_from_file_location(f"t_{name}", ROOT / "testcases/syndbg" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def run(actions, profile="mainline", **script):
    events = m.predict({"actions": actions, **script}, profile)
    assert events[0] == {"op": "setup", "ok": True}
    assert [e["step"] for e in events[1:]] == list(range(len(actions)))
    return events[1:]


def wr(msr, value, **kw):
    return {"op": "wrmsr", "msr": msr, "value": value, **kw}


def rd(msr, **kw):
    return {"op": "rdmsr", "msr": msr, **kw}


def hc(control, **kw):
    return {"op": "hcall", "insn": "native", "control": control, "ingpa": 0x30000, "outgpa": 0x31000, **kw}


KDNET = [wr(m.MSR_GUEST_OS_ID, OSID), wr(m.MSR_OPTIONS, 4)]


def test_every_named_case_predicts_under_both_profiles():
    cases = load("syndbg_cases").CASES
    assert len(cases) >= 40
    for case in cases:
        for profile in m.PROFILES:
            events = m.predict(case["script"], profile)
            assert len(events) == len(case["script"]["actions"]) + 1, case["id"]


def test_control_write_exits_with_the_stored_pages():
    ev = run([wr(m.MSR_SEND, 0xA000), wr(m.MSR_RECV, 0xB000), wr(m.MSR_PENDING, 0xC000),
              wr(m.MSR_CONTROL, 0x401)])
    assert ev[0]["exits"] == [] and ev[1]["exits"] == []
    assert ev[2]["exits"][0]["msr"] == m.MSR_PENDING
    assert ev[3]["exits"] == [{"reason": "hyperv", "type": 3, "msr": m.MSR_CONTROL, "control": 0x401,
                               "status": 0, "send_page": 0xA000, "recv_page": 0xB000,
                               "pending_page": 0xC000, "rip": 2}]
    assert ev[3]["vector"] is None


def test_status_written_back_only_after_control_exits():
    ev = run([wr(m.MSR_CONTROL, 1, status=0x77), rd(m.MSR_STATUS),
              wr(m.MSR_PENDING, 0x1000, status=0x99), rd(m.MSR_STATUS),
              wr(m.MSR_CONTROL, 2), rd(m.MSR_STATUS)])
    assert ev[1]["value"] == 0x77
    assert ev[3]["value"] == 0x77          # PENDING completion copies nothing
    assert ev[5]["value"] == 0             # no reply: KVM's zero status is copied


def test_guest_gates_in_order():
    # no Hv#1: #GP before anything else
    assert run([rd(m.MSR_STATUS)], vcpus=[{"hv": False}])[0]["vector"] == 13
    # 0x40000082 absent / EAX 0: #GP
    for sd in ("absent", "zero"):
        assert run([rd(m.MSR_STATUS)], vcpus=[{"sd": sd}])[0]["vector"] == 13
    # DM only matters under ENFORCE_CPUID
    assert run([rd(m.MSR_STATUS)], vcpus=[{"dm": False}])[0]["vector"] is None
    assert run([rd(m.MSR_STATUS)], vcpus=[{"dm": False, "enforce": True}])[0]["vector"] == 13
    # CPL3 RDMSR faults in hardware
    assert run([rd(m.MSR_STATUS, cpl=3)])[0]["vector"] == 13


def test_user_space_msr_exit_only_for_hyperv_failures():
    ev = run([wr(m.MSR_CONTROL, 5), rd(0x400000F0)], vcpus=[{"sd": "absent"}], user_msr=True)
    assert ev[0]["exits"] == [{"reason": "x86_wrmsr", "msr_reason": 1, "index": m.MSR_CONTROL, "data": 5}]
    assert ev[0]["vector"] == 13
    assert ev[1]["exits"] == [] and ev[1]["vector"] == 13


def test_host_access_skips_gates_and_never_exits_in_mainline():
    acts = [{"op": "set_msr", "msr": msr, "value": 0xFFFFFFFFFFFFFFFF} for msr in m.SYNDBG_MSRS]
    acts += [{"op": "get_msr", "msr": msr} for msr in m.SYNDBG_MSRS]
    ev = run(acts, vcpus=[{"hv": False, "sd": "absent"}])
    assert all(e["ret"] == 1 for e in ev)
    assert [e["value"] for e in ev[6:]] == [0xFFFFFFFFFFFFFFFF] * 6
    ev = run([{"op": "set_msr", "msr": m.MSR_CONTROL, "value": 1}, {"op": "nop"}])
    assert ev[1]["exits"] == []


@pytest.mark.parametrize("control,extra,status", [
    (0x6B, {}, 8),                                   # OPTIONS clear
    (0x69 | 1 << 16, {}, 5),                         # fast POST
    (0x6B | 1 << 63, {}, 3),                         # reserved bit
    (0x6C, {}, 2),                                   # unknown code
])
def test_hypercall_statuses_without_exit(control, extra, status):
    ev = run([wr(m.MSR_GUEST_OS_ID, OSID), hc(control, **extra)])
    assert ev[1]["exits"] == [] and ev[1]["rax"] == status


def test_hypercall_status_order():
    # ACCESS_DENIED before the reserved bits, only with syndbg on
    enf = [{"dbg": False, "enforce": True}]
    assert run(KDNET + [hc(0x6B | 1 << 63)], vcpus=enf)[2]["rax"] == 6
    enf_off = [{"dbg": False, "enforce": True, "sd": "absent"}]
    assert run([wr(m.MSR_GUEST_OS_ID, OSID), hc(0x6B)], vcpus=enf_off)[1]["rax"] == 2
    # fast POST is refused before the syndbg check
    assert run([wr(m.MSR_GUEST_OS_ID, OSID), hc(0x10069)], vcpus=[{"sd": "absent"}])[1]["rax"] == 5


def test_hypercall_exit_and_result():
    ev = run(KDNET + [hc(0x1006B, result=0x1234567800000013)])
    assert ev[2]["exits"] == [{"reason": "hyperv", "type": 2, "input": 0x1006B,
                               "params": [0x30000, 0x31000], "rip": 0}]
    assert ev[2]["rax"] == 0x1234567800000013 and ev[2]["rdx"] == 0x30000


def test_32bit_register_pairs():
    ev = run(KDNET + [hc(0x6B, result=0x1234567800000013)], mode=32)
    assert ev[2]["rax"] == 0x13 and ev[2]["rdx"] == 0x12345678
    ev = run([hc(0x6B)], mode=32)                     # PV path, truncated -KVM_ENOSYS
    assert ev[0]["rax"] == 0xFFFFFC18


def test_pv_path_without_guest_os_id():
    assert run([hc(0x6B, rax=0)])[0]["rax"] == 0xFFFFFFFFFFFFFC18
    assert run([hc(0x6B, rax=1)])[0]["rax"] == 0          # KVM_HC_VAPIC_POLL_IRQ
    assert run([hc(0x6B, cpl=3)])[0]["rax"] == 0xFFFFFFFFFFFFFFFF


def test_cpl3_and_foreign_instruction():
    ev = run(KDNET + [hc(0x6B, cpl=3)])
    assert ev[2]["vector"] == 6
    ev = run(KDNET + [hc(0x6B, insn="foreign", cpl=3)], vendor="amd")
    assert ev[2]["vector"] == 13 and ev[2]["insn_after"] == m.VMCALL
    ev = run(KDNET + [hc(0x6B, insn="foreign", cpl=3)], vendor="intel")
    assert ev[2]["vector"] == 6 and ev[2]["insn_after"] == m.VMCALL   # patched, then #UD


def test_quirk_rewrites_foreign_instruction():
    ev = run(KDNET + [hc(0x6B, insn="vmcall")], vendor="amd")
    assert ev[2]["insn_after"] == m.VMMCALL and ev[2]["exits"]
    ev = run(KDNET + [hc(0x6B, insn="vmcall")], vendor="amd", quirk_fix=False)
    assert ev[2]["insn_after"] == m.VMCALL and ev[2]["vector"] == 6 and not ev[2]["exits"]


def test_set_cpuid_after_run():
    ev = run([{"op": "nop"}, {"op": "set_cpuid", "sd": "absent"}, rd(m.MSR_STATUS),
              {"op": "set_cpuid"}])
    assert ev[1]["ret"] == -1 and ev[1]["errno"] == 22
    assert ev[2]["vector"] is None
    assert ev[3]["ret"] == 0
    ev = run([{"op": "set_cpuid", "sd": "absent"}, rd(m.MSR_STATUS)])
    assert ev[1]["vector"] == 13


def test_hypercall_msr_rules():
    ev = run([wr(m.MSR_HYPERCALL, 0x50001), rd(m.MSR_HYPERCALL), wr(m.MSR_GUEST_OS_ID, OSID),
              wr(m.MSR_HYPERCALL, 0x50001), rd(m.MSR_HYPERCALL), wr(m.MSR_GUEST_OS_ID, 0),
              rd(m.MSR_HYPERCALL), wr(m.MSR_GUEST_OS_ID, OSID), wr(m.MSR_HYPERCALL, 0x300001)])
    assert ev[1]["value"] == 0
    assert ev[4]["value"] == 0x50001
    assert ev[6]["value"] == 0x50000
    assert ev[8]["vector"] == 13          # page outside guest memory


def test_v7_profile_differences():
    gated = [rd(m.MSR_STATUS), wr(m.MSR_STATUS, 5), rd(m.MSR_STATUS)]
    main = run(gated, vcpus=[{"sd": "absent"}])
    v7 = run(gated, "v7", vcpus=[{"sd": "absent"}])
    assert [e["vector"] for e in main] == [13, 13, 13]
    assert [e["vector"] for e in v7] == [None, None, None] and v7[2]["value"] == 0
    # the capability, then reads still 0 and host writes exit
    ev = run([{"op": "check_ext", "cap": 180}, {"op": "enable_cap", "cap": 180},
              {"op": "set_msr", "msr": m.MSR_CONTROL, "value": 3}, {"op": "nop"},
              {"op": "get_msr", "msr": m.MSR_CONTROL}], "v7")
    assert ev[0]["ret"] == 1 and ev[1]["ret"] == 0
    assert ev[3]["exits"][0]["msr"] == m.MSR_CONTROL and ev[3]["exits"][0]["rip"] == 0
    assert ev[4]["value"] == 0
    main = run([{"op": "check_ext", "cap": 180}, {"op": "enable_cap", "cap": 180}])
    assert main[0]["ret"] == 0 and main[1]["errno"] == 22
    # hypercalls need the page or active + GUEST_OS_ID
    assert run(KDNET + [hc(0x6B)], "v7")[2]["rax"] == 0xFFFFFFFFFFFFFC18
    hv = run([{"op": "hv_cpuid", "fd": "vcpu"}], "v7")[0]
    assert hv["nent"] == 9 and 0x40000082 not in hv["functions"]
    assert hv["entries"][0][:2] == [0x40000000, 0x4000000A]


def test_profiles_disagree_where_the_v7_mutant_acts():
    case = next(c for c in load("syndbg_cases").CASES
                if c["id"] == "syndbg/gating/platform-caps-absent-gp")
    d = first_divergence(m.predict(case["script"], "mainline"), m.predict(case["script"], "v7"))
    assert d is not None and d.field == "vector"


def test_unknown_profile_and_bad_scripts():
    with pytest.raises(ValueError):
        m.predict({"actions": []}, "v9")
    with pytest.raises(ValueError):
        m.predict({"actions": [{"op": "reboot"}]})
    with pytest.raises(ValueError):
        m.predict({"actions": [rd(m.MSR_STATUS, vcpu=1)]})
    with pytest.raises(ValueError):
        m.predict({"mode": 32, "actions": [rd(m.MSR_STATUS, cpl=3)]})


def test_hv_cpuid_entries_every_register():
    sys_ = run([{"op": "hv_cpuid"}])[0]
    ent = {e[0]: e[1:] for e in sys_["entries"]}
    assert [e[0] for e in sys_["entries"]] == m.HV_CPUID_FUNCTIONS_61
    assert ent[0x40000003] == [0x2AFF, 0x830, 0, 0x80D12]
    assert ent[0x40000004] == [0x40E2C, 0xFFF, 0, 0]
    vc = run([{"op": "hv_cpuid", "fd": "vcpu"}])[0]
    ent = {e[0]: e[1:] for e in vc["entries"]}
    assert ent[0x40000003][3] == 0xD12 and ent[0x40000004][0] == 0x40A2C


def test_other_partition_wide_msrs():
    ev = run([{"op": "set_msr", "msr": m.MSR_CRASH_CTL, "value": (1 << 63) | 5},
              {"op": "get_msr", "msr": m.MSR_CRASH_CTL},
              {"op": "wrmsr", "msr": m.MSR_CRASH_CTL, "value": 1 << 63},
              {"op": "wrmsr", "msr": m.MSR_RESET, "value": 1},
              {"op": "set_msr", "msr": m.MSR_RESET, "value": 1},
              {"op": "nop"},
              {"op": "wrmsr", "msr": m.MSR_TSC_EMULATION_STATUS, "value": 1},
              {"op": "rdmsr", "msr": m.MSR_RESET}])
    assert ev[1]["value"] == 1 << 63
    assert ev[2]["exits"] == [{"reason": "system_event", "type": 3, "rip": 2}]
    assert ev[3]["exits"] == [{"reason": "system_event", "type": 2, "rip": 2}]
    assert ev[5]["exits"] == [{"reason": "system_event", "type": 2, "rip": 0}]
    assert ev[6]["vector"] == 13 and ev[7]["value"] == 0


def test_hypercall_page_peek():
    ev = run([{"op": "wrmsr", "msr": m.MSR_GUEST_OS_ID, "value": 1},
              {"op": "wrmsr", "msr": m.MSR_HYPERCALL, "value": 0x50001},
              {"op": "peek", "gpa": 0x50000}, {"op": "peek", "gpa": 0x30000}])
    assert ev[2]["value"] == 0xC3D9010F and ev[3]["value"] == 0


# ---- issue 10: the rules no case checked before --------------------------------------

def test_only_platform_caps_bit1_enables_syndbg():
    for eax, on in ((0xFFFFFFFD, False), (0x1, False), (0x2, True), (0x3, True), (0xFFFFFFFF, True)):
        ev = run(KDNET + [rd(m.MSR_SEND), hc(0x6B, result=5)], vcpus=[{"sd": eax}])
        assert (ev[2]["vector"] is None) is on, hex(eax)
        assert ev[3]["rax"] == (5 if on else 2), hex(eax)
    # "set" and EAX 2 are the same CPUID table; EAX 3 is not (kvm_cpuid_check_equal)
    ev = run([{"op": "nop"}, {"op": "set_cpuid", "sd": 2}, {"op": "set_cpuid", "sd": 3}])
    assert [e["ret"] for e in ev[1:]] == [0, -1]


def test_operation_denied_without_use_hcalls_bit():
    for options, status in ((0x3, 8), (0xFFFFFFFFFFFFFFFB, 8), (0xFFFFFFFFFFFFFFFF, 0x42)):
        ev = run([wr(m.MSR_GUEST_OS_ID, OSID), wr(m.MSR_OPTIONS, options), hc(0x69, result=0x42)])
        assert ev[2]["rax"] == status


def test_completion_follows_the_msr_user_space_leaves():
    ev = run([wr(m.MSR_STATUS, 0x11), wr(m.MSR_CONTROL, 1, status=0x22, exit_msr=m.MSR_PENDING),
              rd(m.MSR_STATUS), wr(m.MSR_PENDING, 0xD000, status=0x33, exit_msr=m.MSR_CONTROL),
              rd(m.MSR_STATUS), wr(m.MSR_PENDING, 0xE000, exit_msr=m.MSR_CONTROL), rd(m.MSR_STATUS)])
    assert ev[1]["exits"][0]["msr"] == m.MSR_CONTROL       # the exit shows KVM's msr
    assert [ev[i]["value"] for i in (2, 4, 6)] == [0x11, 0x33, 0]


def test_real_and_compatibility_mode():
    ev = run(KDNET + [hc(0x6B, cpu_mode="real"), hc(0x6B, cpu_mode="compat", result=0x100000002),
                      rd(m.MSR_OPTIONS, cpu_mode="real")])
    assert ev[2]["vector"] == 6 and ev[2]["exits"] == [] and ev[2]["rax"] == 0x6B
    assert ev[3]["exits"][0]["type"] == 2 and (ev[3]["rdx"], ev[3]["rax"]) == (1, 2)
    assert ev[4]["value"] == 4
    assert run([hc(0x6B, cpu_mode="real")])[0]["rax"] == 0xFFFFFC18       # PV path, 32-bit
    with pytest.raises(ValueError):
        m.predict({"actions": [hc(0x6B, cpu_mode="real", insn="foreign")]})
    with pytest.raises(ValueError):
        m.predict({"actions": [hc(0x6B, cpu_mode="compat", cpl=3)]})


@pytest.mark.parametrize("key,msr", [("time_ref", m.MSR_TIME_REF_COUNT), ("reset", m.MSR_RESET),
                                     ("ref_tsc", m.MSR_REFERENCE_TSC),
                                     ("reenlight", m.MSR_TSC_EMULATION_CONTROL),
                                     ("crash", m.MSR_CRASH_P0), ("hc", m.MSR_GUEST_OS_ID),
                                     ("dm", m.MSR_SEND)])
def test_enforce_cpuid_bit_gates_its_msrs(key, msr):
    vcpus = [{key: False, "enforce": True}, {"enforce": True}, {key: False}]
    ev = run([rd(msr, vcpu=i) for i in range(3)], vcpus=vcpus)
    assert [e["vector"] for e in ev] == [13, None, None]


def test_enforce_cpuid_hypercall_access():
    vcpus = [{"post_msg": False, "tlb_flush": False, "enforce": True}, {"enforce": True}]
    acts = [wr(m.MSR_GUEST_OS_ID, OSID)] + [hc(c, vcpu=i) for i in (0, 1) for c in (0x5C, 0x2, 0x6C)]
    assert [e["rax"] for e in run(acts, vcpus=vcpus)[1:]] == [6, 6, 2, 3, 0, 2]


def test_tsc_page():
    page = 0x3E000
    ev = run([wr(m.MSR_REFERENCE_TSC, page | 1), {"op": "peek", "gpa": page},
              {"op": "nop", "vcpu": 1}, {"op": "peek", "gpa": page},
              {"op": "set_msr", "msr": m.MSR_TSC_EMULATION_CONTROL, "value": 1},
              {"op": "set_msr", "msr": m.MSR_REFERENCE_TSC, "value": page | 1}, {"op": "nop"},
              {"op": "peek", "gpa": page}, rd(m.MSR_TIME_REF_COUNT)], vcpus=[{}, {}])
    assert [ev[i]["value"] for i in (1, 3, 7, 8)] == [1, 2, 2, 1]
    # no master clock: the page keeps sequence 0 (HV_TSC_PAGE_BROKEN)
    ev = run([wr(m.MSR_REFERENCE_TSC, page | 1), {"op": "peek", "gpa": page}], master_clock=False)
    assert ev[1]["value"] == 0
    with pytest.raises(ValueError):     # the clock-dependent scale is not predicted
        m.predict({"actions": [wr(m.MSR_REFERENCE_TSC, page | 1), {"op": "peek", "gpa": page + 8}]})


def test_hypercalls_preserve_the_other_registers():
    ev = run(KDNET + [hc(0x6B), hc(0x6B, cpl=3), hc(0x6B, insn="foreign", result=3)])
    for e in ev[2:]:
        assert e["preserved"] == {**m.SENTINELS, "rcx": 0x6B, "r8": 0x31000}
    ev = run([hc(0x6B, ingpa=0x1111111122222222, outgpa=0x3333333344444444)], mode=32)
    assert ev[0]["preserved"] == {**m.SENTINELS, "rbx": 0x11111111, "rcx": 0x22222222,
                                  "rsi": 0x44444444, "rdi": 0x33333333}


def test_a_page_kvm_would_write_over_the_payload_is_refused_with_the_reason():
    import pytest
    from harness.reference import syndbg as model
    for msr, value, owner in ((0x40000001, 0x2297, "page tables"), (0x40000021, 0x10001, "guest code")):
        with pytest.raises(ValueError, match=f"{msr:#x} = {value:#x} makes KVM write .* over the "
                                             f"payload's {owner}"):
            model.normalise({"actions": [{"op": "set_msr", "vcpu": 0, "msr": msr, "value": value}]})
    ok = model.normalise({"actions": [{"op": "wrmsr", "msr": 0x40000001, "value": 0x50001}]})
    assert ok["actions"][0]["value"] == 0x50001
