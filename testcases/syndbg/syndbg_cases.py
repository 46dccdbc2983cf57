"""Named syndbg conformance cases, as data (spec syndbg.md section 6).

Each case: id (`syndbg/<group>/<name>`), rationale, script (the op-script
format of harness/reference/syndbg.py).  The expected trace is never written
here: the reference model predicts it, so a case checks the kernel against
the model's cited rules.  `spec` names the row of the spec's table.
"""
from __future__ import annotations

OSID = 0x1000101010001          # the KDNet GUEST_OS_ID
IN, OUT = 0x30000, 0x31000      # guest pages for hypercall input/output
CONTROL, STATUS, SEND, RECV, PENDING, OPTIONS = (
    0x400000F1, 0x400000F2, 0x400000F3, 0x400000F4, 0x400000F5, 0x400000FF)
SIX = (CONTROL, STATUS, SEND, RECV, PENDING, OPTIONS)
GUEST_OS_ID, HYPERCALL = 0x40000000, 0x40000001
RESET, TIME_REF_COUNT, REFERENCE_TSC = 0x40000003, 0x40000020, 0x40000021
CRASH_P0, CRASH_P4, CRASH_CTL = 0x40000100, 0x40000104, 0x40000105
REENLIGHTENMENT, TSC_EMU_CONTROL, TSC_EMU_STATUS = 0x40000106, 0x40000107, 0x40000108
NOTIFY = 1 << 63


def wr(msr, value, vcpu=0, **kw):
    return {"op": "wrmsr", "vcpu": vcpu, "msr": msr, "value": value, **kw}


def rd(msr, vcpu=0, **kw):
    return {"op": "rdmsr", "vcpu": vcpu, "msr": msr, **kw}


def hset(msr, value, vcpu=0):
    return {"op": "set_msr", "vcpu": vcpu, "msr": msr, "value": value}


def hget(msr, vcpu=0):
    return {"op": "get_msr", "vcpu": vcpu, "msr": msr}


def peek(gpa):
    return {"op": "peek", "gpa": gpa}


def hc(control, insn="native", vcpu=0, ingpa=IN, outgpa=OUT, **kw):
    return {"op": "hcall", "vcpu": vcpu, "insn": insn, "control": control,
            "ingpa": ingpa, "outgpa": outgpa, **kw}


def osid(vcpu=0):
    return wr(GUEST_OS_ID, OSID, vcpu)


def opt(vcpu=0):
    return wr(OPTIONS, 0x4, vcpu)


def vcpu(**kw):
    return kw


NO_SD = vcpu(sd="absent")
HV_OFF = vcpu(hv=False, sd="absent")


def case(id, spec, rationale, actions, vcpus=None, **script):
    return {"id": f"syndbg/{id}", "spec": spec, "rationale": rationale,
            "script": {"vcpus": vcpus or [{}], "actions": actions, **script}}


CASES = [
    # ---- discovery -----------------------------------------------------------
    case("discovery/hv-cpuid-e2big", "#1",
         "KVM_GET_SUPPORTED_HV_CPUID with nent=0 on the system fd fails with E2BIG.",
         [{"op": "hv_cpuid", "fd": "system", "nent": 0}]),
    case("discovery/hv-cpuid-system", "#2",
         "The system-fd HV CPUID lists 10 leaves with the syndbg leaves and feature bits.",
         [{"op": "hv_cpuid", "fd": "system", "nent": 64}]),
    case("discovery/hv-cpuid-vcpu", "#3",
         "The vCPU-fd HV CPUID reports the same syndbg leaves as the system fd.",
         [{"op": "hv_cpuid", "fd": "vcpu", "vcpu": 0, "nent": 64},
          {"op": "hv_cpuid", "fd": "vcpu", "vcpu": 0, "nent": 9}]),
    case("discovery/msr-index-list", "#4",
         "KVM_GET_MSR_INDEX_LIST has F1-F5 and FF, and nothing else in 0x400000F0-FF.",
         [{"op": "msr_list"}]),
    case("discovery/no-syndbg-capability", "4.2",
         "Mainline never had KVM_CAP_HYPERV_SYNDBG (180, v7/v8 only): not advertised and "
         "KVM_ENABLE_CAP(180) on a vCPU fails with EINVAL.",
         [{"op": "check_ext", "cap": 180}, {"op": "enable_cap", "vcpu": 0, "cap": 180, "arg": 0}]),

    # ---- host-initiated access ----------------------------------------------
    case("host/set-get-all-six-without-hyperv", "#6",
         "Host KVM_SET_MSRS/KVM_GET_MSRS skip every gate: arbitrary values read back "
         "exactly with no Hv#1 and no 0x40000082.",
         [hset(m, v) for m, v in zip(SIX, (0xFFFFFFFFFFFFFFFF, 0xDEADBEEFCAFEF00D, 0x1000,
                                           0x2000, 0x8000000000000001, 0x4))]
         + [hget(m) for m in SIX], vcpus=[HV_OFF]),
    case("host/control-pending-writes-never-exit", "#7",
         "Host writes of CONTROL and PENDING_BUFFER do not exit (syndbg_set_msr `if (!host)`); "
         "the first KVM_RUN reaches the guest's ucall.",
         [hset(CONTROL, 1), hset(PENDING, 0x1000), {"op": "nop", "vcpu": 0}, rd(CONTROL)]),
    case("host/options-shared-across-vcpus", "#8",
         "The syndbg state is per VM: OPTIONS set on vCPU0 reads back on vCPU1.",
         [hset(OPTIONS, 0x4, vcpu=0), hget(OPTIONS, vcpu=1)], vcpus=[{}, {}]),
    case("host/guest-and-host-see-one-state", "3.3",
         "A guest write is seen by KVM_GET_MSRS and a host write by the guest's RDMSR.",
         [wr(SEND, 0xA000), hget(SEND), hset(RECV, 0xB000), rd(RECV)]),

    # ---- guest MSR gating --------------------------------------------------
    case("gating/no-hv-signature-gp", "#9",
         "Without Hv#1 in 0x40000001.EAX, guest access to STATUS is #GP even with 0x40000082.",
         [rd(STATUS), wr(STATUS, 0)], vcpus=[vcpu(hv=False)]),
    case("gating/platform-caps-absent-gp", "#10",
         "Without the 0x40000082 entry every guest RDMSR/WRMSR of the six MSRs is #GP and "
         "nothing exits (v7 ignored such accesses and read 0).",
         [a for m in SIX for a in (rd(m), wr(m, 0))], vcpus=[NO_SD]),
    case("gating/platform-caps-eax-zero-gp", "#10",
         "An 0x40000082 entry with EAX bit 1 clear does not enable syndbg either.",
         [a for m in SIX for a in (rd(m), wr(m, 0))], vcpus=[vcpu(sd="zero")]),
    case("gating/debug-msrs-bit-not-needed-without-enforce", "#11",
         "With ENFORCE_CPUID off, FEATURES.EDX bit 11 is not checked: all six work.",
         [a for m in SIX for a in (wr(m, 0x10 + m - CONTROL), rd(m))], vcpus=[vcpu(dm=False)]),
    case("gating/enforce-debug-msrs-bit-clear-gp", "#12",
         "With ENFORCE_CPUID, FEATURES.EDX bit 11 clear makes STATUS #GP (hv_check_msr_access).",
         [rd(STATUS), wr(STATUS, 0)], vcpus=[vcpu(dm=False, enforce=True)]),
    case("gating/enforce-platform-caps-clear-gp", "#13",
         "With ENFORCE_CPUID and EDX bit 11 but no 0x40000082 bit 1: #GP.",
         [rd(STATUS), wr(STATUS, 0)], vcpus=[vcpu(sd="absent", enforce=True)]),
    case("gating/enforce-all-bits-ok", "#14",
         "With ENFORCE_CPUID, EDX bit 11 and 0x40000082 bit 1, STATUS reads 0 and accepts 0 "
         "(selftest hyperv_features stages 41-43).",
         [rd(STATUS), wr(STATUS, 0), rd(STATUS)], vcpus=[vcpu(enforce=True)]),
    case("gating/unhandled-neighbours-gp", "#15",
         "0x400000F0 and 0x400000F6-FE are not syndbg MSRs: #GP.",
         [rd(0x400000F0), rd(0x400000F6), rd(0x400000FE), wr(0x400000F0, 0)]),
    case("gating/user-space-msr-inval-exit", "#16",
         "With KVM_CAP_X86_USER_SPACE_MSR(INVAL), a refused syndbg access exits as "
         "KVM_EXIT_X86_{WR,RD}MSR reason INVAL; the VMM's error=1 gives #GP.",
         [wr(CONTROL, 0x1234), rd(STATUS)], vcpus=[NO_SD], user_msr=True),
    case("gating/user-space-msr-unknown-not-forwarded", "#16",
         "An unknown MSR fails with reason UNKNOWN, which an INVAL-only mask does not "
         "forward: plain #GP.",
         [rd(0x400000F0)], user_msr=True),

    # ---- guest MSR semantics -------------------------------------------------
    case("msr/control-write-exits", "#17",
         "A CONTROL write exits (type 3) with control, send/recv/pending pages, RIP past WRMSR.",
         [wr(SEND, 0xA000), wr(RECV, 0xB000), wr(PENDING, 0xC000), wr(CONTROL, 0x00400001)]),
    case("msr/control-status-write-back", "#18",
         "After a CONTROL exit, the VMM's u.syndbg.status becomes the STATUS MSR.",
         [wr(CONTROL, 2, status=0x00200005), rd(STATUS), hget(STATUS)]),
    case("msr/control-without-reply-zeroes-status", "2, 3.2",
         "KVM never writes the exit's status (0 in the buffer); a VMM that leaves it alone "
         "turns STATUS into 0 on completion.",
         [wr(STATUS, 0x55), wr(CONTROL, 1), rd(STATUS)]),
    case("msr/pending-exit-no-write-back", "#19",
         "A PENDING_BUFFER write exits with msr F5; its completion copies nothing to STATUS.",
         [wr(STATUS, 0x11), wr(PENDING, 0xD000, status=0x99), rd(STATUS)]),
    case("msr/plain-writes-no-exit", "#20",
         "STATUS, SEND, RECV and OPTIONS writes do not exit and read back from guest and host.",
         [wr(STATUS, 0x1), wr(SEND, 0x2000), wr(RECV, 0x3000), wr(OPTIONS, 0x7),
          rd(STATUS), rd(SEND), rd(RECV), rd(OPTIONS),
          hget(STATUS), hget(SEND), hget(RECV), hget(OPTIONS)]),
    case("msr/reads-never-exit", "#21",
         "RDMSR never exits; CONTROL keeps the SEND/RECV bits KVM never clears.",
         [wr(CONTROL, 0x00100003, status=1)] + [rd(m) for m in SIX] + [rd(m) for m in SIX]),
    case("msr/all-ones", "#22",
         "All-ones writes are stored unvalidated; only F1 and F5 exit.",
         [wr(m, 0xFFFFFFFFFFFFFFFF) for m in SIX] + [rd(m) for m in SIX]),
    case("msr/back-to-back-control", "#23",
         "Two CONTROL writes give two exits, control X1 then X2.",
         [wr(CONTROL, 0x11, status=1), wr(CONTROL, 0x22, status=4), rd(STATUS)]),
    case("msr/pending-exit-on-writing-vcpu", "#24",
         "vCPU1's PENDING write exits on vCPU1; vCPU0 reads the shared value.",
         [wr(PENDING, 0xE000, vcpu=1), rd(PENDING, vcpu=0), {"op": "nop", "vcpu": 0}],
         vcpus=[{}, {}]),
    case("msr/per-vcpu-cpuid-gate", "#25",
         "The state is shared but each vCPU is gated by its own CPUID: vCPU1 without "
         "0x40000082 gets #GP while vCPU0 reads.",
         [wr(SEND, 0xF000, vcpu=0), rd(SEND, vcpu=1), rd(SEND, vcpu=0)],
         vcpus=[{}, NO_SD]),
    case("msr/control-status-shared-across-vcpus", "3.2",
         "A CONTROL completion on vCPU0 sets the VM-wide STATUS that vCPU1 reads.",
         [wr(CONTROL, 1, vcpu=0, status=0x77), rd(STATUS, vcpu=1)], vcpus=[{}, {}]),

    # ---- hypercalls -------------------------------------------------------
    case("hcall/syndbg-off-invalid-code", "#26",
         "Without syndbg, slow 0x69/0x6a/0x6b return INVALID_HYPERCALL_CODE (2), no exit.",
         [osid(), opt(), hc(0x69), hc(0x6A), hc(0x6B)], vcpus=[NO_SD]),
    case("hcall/fast-post-retrieve-invalid-parameter-syndbg-off", "#27",
         "The fast bit on POST/RETRIEVE is checked before syndbg: INVALID_PARAMETER (5).",
         [osid(), hc(0x10069), hc(0x1006A)], vcpus=[NO_SD]),
    case("hcall/options-clear-operation-denied", "#28",
         "Syndbg on but OPTIONS bit 2 clear: OPERATION_DENIED (8), no exit.",
         [osid(), hc(0x69), hc(0x6A), hc(0x6B)]),
    case("hcall/post-exits-result-to-rax", "#29",
         "A slow POST exits (type 2) with input and GPAs; the VMM result lands in RAX.",
         [osid(), opt(), hc(0x69, result=0x1234567800000013)]),
    case("hcall/fast-post-retrieve-invalid-parameter", "#30",
         "Fast POST/RETRIEVE with syndbg on: INVALID_PARAMETER (5), no exit.",
         [osid(), opt(), hc(0x10069), hc(0x1006A)]),
    case("hcall/fast-reset-passes-through", "#30b",
         "Fast RESET is not refused: it exits with bit 16 in input.",
         [osid(), opt(), hc(0x1006B, ingpa=0x1111, outgpa=0x2222, result=0)]),
    case("hcall/rep-fields-unvalidated", "#31",
         "Rep count, rep start and var-header size reach userspace unvalidated in input.",
         [osid(), opt(), hc(0x6A | (1 << 17) | (3 << 32) | (2 << 48), result=0x300000000)]),
    case("hcall/reserved-bits-invalid-input", "#32",
         "Reserved control bits 27, 44 or 63: INVALID_HYPERCALL_INPUT (3), no exit.",
         [osid(), opt(), hc(0x6B | (1 << 27)), hc(0x6B | (1 << 44)), hc(0x6B | (1 << 63))]),
    case("hcall/enforce-no-debugging-privilege-access-denied", "#33",
         "ENFORCE_CPUID with syndbg but FEATURES.EBX bit 11 clear: ACCESS_DENIED (6).",
         [osid(), opt(), hc(0x69), hc(0x6A), hc(0x6B)], vcpus=[vcpu(dbg=False, enforce=True)]),
    case("hcall/enforce-syndbg-off-invalid-code", "#33b",
         "ENFORCE_CPUID without syndbg: the access check passes on purpose, code 2.",
         [osid(), hc(0x69), hc(0x6A), hc(0x6B)],
         vcpus=[vcpu(sd="absent", dbg=False, enforce=True)]),
    case("hcall/enforce-all-bits-options-clear-denied", "#33c",
         "ENFORCE_CPUID with every bit but OPTIONS = 0: OPERATION_DENIED (8).",
         [osid(), hc(0x69), hc(0x6A), hc(0x6B)], vcpus=[vcpu(enforce=True)]),
    case("hcall/reserved-bits-after-access-check", "3.5",
         "ACCESS_DENIED is checked before the reserved bits.",
         [osid(), opt(), hc(0x6B | (1 << 63))], vcpus=[vcpu(dbg=False, enforce=True)]),
    case("hcall/cpl3-native-ud", "#34",
         "The native instruction at CPL3 with Hyper-V hypercalls on: #UD, no exit.",
         [osid(), opt(), hc(0x6B, cpl=3)]),
    case("hcall/cpl3-foreign-insn", "3.7",
         "The other vendor's instruction at CPL3: on AMD VMCALL is Priv in the emulator "
         "(#GP); on Intel VMMCALL is patched and then #UD.",
         [osid(), opt(), hc(0x6B, insn="foreign", cpl=3)]),
    case("hcall/no-guest-os-id-pv-path", "#35",
         "Without GUEST_OS_ID the Hyper-V path is off: KVM PV ABI, RAX = -KVM_ENOSYS.",
         [opt(), hc(0x6B, rax=0)]),
    case("hcall/no-guest-os-id-pv-path-cpl3", "3.4",
         "PV path at CPL3: RAX = -KVM_EPERM.",
         [opt(), hc(0x6B, rax=0, cpl=3)]),
    case("hcall/no-hypercall-page-needed", "#36",
         "GUEST_OS_ID alone enables the Hyper-V path; HV_X64_MSR_HYPERCALL never written.",
         [osid(), opt(), hc(0x6B, result=0x42)]),
    case("hcall/hypercall-msr-ignored-without-guest-os-id", "#36b",
         "Writing HV_X64_MSR_HYPERCALL while GUEST_OS_ID is 0 is silently ignored.",
         [wr(HYPERCALL, 0x50001), rd(HYPERCALL)], vcpus=[NO_SD]),
    case("hcall/guest-os-id-zero-clears-page-enable", "3.6",
         "GUEST_OS_ID = 0 clears the hypercall page enable bit and turns the Hyper-V path off.",
         [osid(), wr(HYPERCALL, 0x50001), rd(HYPERCALL), wr(GUEST_OS_ID, 0), rd(HYPERCALL),
          opt(), hc(0x6B)]),
    case("hcall/enforce-no-hypercall-msrs-bit", "3.6",
         "Under ENFORCE_CPUID without FEATURES.EAX bit 5 the guest cannot set GUEST_OS_ID, "
         "so hypercalls stay on the PV path.",
         [osid(), opt(), hc(0x6B)], vcpus=[vcpu(hc=False, enforce=True)]),

    # ---- both instructions, the quirk -----------------------------------------
    case("insn/foreign-insn-rewritten", "#37",
         "The other vendor's hypercall instruction is rewritten in place to the native one "
         "(KVM_X86_QUIRK_FIX_HYPERCALL_INSN) and then exits.",
         [osid(), opt(), hc(0x6B, insn="foreign", result=7), hc(0x6B, insn="foreign", result=8)]),
    case("insn/native-insn-untouched", "#37",
         "The native instruction exits directly and its bytes are left alone.",
         [osid(), opt(), hc(0x6B, insn="native", result=9)]),
    case("insn/quirk-disabled-foreign-ud", "#38",
         "With the quirk disabled the foreign instruction gets #UD, code unchanged.",
         [osid(), opt(), hc(0x6B, insn="foreign")], quirk_fix=False),
    case("insn/quirk-disabled-native-exits", "#38",
         "Disabling the quirk does not affect the native instruction.",
         [osid(), opt(), hc(0x6B, insn="native", result=3)], quirk_fix=False),

    # ---- 32-bit ABI -----------------------------------------------------------
    case("abi32/register-pairs", "#39",
         "32-bit protected mode: control EDX:EAX, GPAs EBX:ECX and EDI:ESI, result in EDX:EAX.",
         [osid(), opt(), hc(0x6B, ingpa=0x1234567800030000, outgpa=0xABCDEF0000031000,
                            result=0x1234567800000013)], mode=32),
    case("abi32/status-in-edx-eax", "#34b",
         "32-bit: KVM's own status (OPERATION_DENIED) comes back as EDX=0, EAX=8.",
         [osid(), hc(0x6B | (0x12 << 32))], mode=32),
    case("abi32/foreign-insn-rewritten", "#37",
         "32-bit: the foreign instruction is rewritten too.",
         [osid(), opt(), hc(0x69, insn="foreign", result=0xFFFFFFFF00000000)], mode=32),
    case("abi32/no-guest-os-id-pv-path", "3.4",
         "32-bit PV path: -KVM_ENOSYS truncated to 32 bits.",
         [hc(0x6B)], mode=32),


    # ---- the hypercall page (kvm_hv_set_msr_pw() HV_X64_MSR_HYPERCALL) -----------
    case("page/contents", "3.4",
         "Enabling the hypercall page writes the native vmcall/vmmcall and `ret` (4 bytes, "
         "nothing more, no Xen prefix) at the page address; disabling writes nothing.",
         [osid(), wr(HYPERCALL, 0x50001), peek(0x50000), peek(0x50004), rd(HYPERCALL),
          wr(HYPERCALL, 0x52000), peek(0x52000), rd(HYPERCALL), peek(0x4FFF8)]),
    case("page/host-write-writes-page", "3.4",
         "A host KVM_SET_MSRS of HYPERCALL writes the page too, and reads back.",
         [hset(GUEST_OS_ID, OSID), hset(HYPERCALL, 0x51FFF), peek(0x51000), peek(0x51004),
          hget(HYPERCALL), hget(GUEST_OS_ID)]),
    case("page/outside-memory-inval-exit", "3.4",
         "A page outside guest memory fails the write (kvm_vcpu_write_guest) with return 1: "
         "a user-space MSR exit with reason INVAL, the MSR unchanged.",
         [osid(), wr(HYPERCALL, 0x3000001), rd(HYPERCALL), wr(HYPERCALL, 0x201),
          peek(0x0), rd(HYPERCALL)], user_msr=True),

    # ---- every failing MSR path returns 1 (INVAL), not another code ----------------
    case("inval/no-hyperv-rd-wr", "3.2",
         "Without Hv#1 guest access fails with 1 (kvm_hv_{set,get}_msr_common): INVAL exits.",
         [wr(CONTROL, 1), rd(STATUS), wr(GUEST_OS_ID, OSID), rd(GUEST_OS_ID)],
         vcpus=[HV_OFF], user_msr=True),
    case("inval/syndbg-off-rd-wr", "3.2",
         "Syndbg disabled: syndbg_{set,get}_msr return 1: INVAL exits.",
         [wr(SEND, 1), rd(SEND), rd(OPTIONS)], vcpus=[NO_SD], user_msr=True),
    case("inval/enforce-denied-rd-wr", "3.2",
         "ENFORCE_CPUID without the MSR's CPUID bit: hv_check_msr_access fails, 1: INVAL exits.",
         [wr(RECV, 1), rd(RECV), rd(GUEST_OS_ID), wr(HYPERCALL, 0)],
         vcpus=[vcpu(enforce=True, dm=False, hc=False)], user_msr=True),
    case("inval/read-only-msrs", "3.2",
         "A guest write of TIME_REF_COUNT, or of a nonzero TSC_EMULATION_STATUS, returns 1: "
         "INVAL exits; writing 0 to TSC_EMULATION_STATUS is fine.",
         [wr(TIME_REF_COUNT, 5), wr(TSC_EMU_STATUS, 2), wr(TSC_EMU_STATUS, 0),
          rd(TSC_EMU_STATUS)], user_msr=True),

    # ---- the other partition-wide MSRs of kvm_hv_set_msr_pw() / get_msr_pw() --------
    case("pw/crash-params", "1.6",
         "CRASH_P0-P4 store what guest or host writes, each its own slot, per VM.",
         [wr(CRASH_P0, 0x11), wr(CRASH_P0 + 1, 0x22), hset(CRASH_P0 + 2, 0x33),
          hset(CRASH_P0 + 3, 0x44), wr(CRASH_P4, 0x55),
          rd(CRASH_P0), rd(CRASH_P0 + 1), rd(CRASH_P0 + 2), hget(CRASH_P0 + 3), hget(CRASH_P4),
          rd(CRASH_P4, vcpu=1)], vcpus=[{}, {}]),
    case("pw/crash-ctl", "1.6",
         "Host CRASH_CTL writes keep only CRASH_NOTIFY; guest writes store nothing, and with "
         "CRASH_NOTIFY exit KVM_EXIT_SYSTEM_EVENT(CRASH) after the WRMSR.",
         [hset(CRASH_CTL, NOTIFY | 0x4000000000000007), hget(CRASH_CTL), rd(CRASH_CTL),
          wr(CRASH_CTL, 0x4000000000000001), hset(CRASH_CTL, 0x7), rd(CRASH_CTL),
          wr(CRASH_CTL, NOTIFY), rd(CRASH_CTL), hget(CRASH_CTL)]),
    case("pw/reset", "3.2",
         "RESET = 1 asks for a reset (KVM_EXIT_SYSTEM_EVENT RESET), from the guest right "
         "after the WRMSR, from the host at the next KVM_RUN; other values do nothing; it "
         "reads 0.",
         [wr(RESET, 2), wr(RESET, 0), wr(RESET, 1), rd(RESET), hset(RESET, 3), {"op": "nop"},
          hset(RESET, 1), {"op": "nop"}, {"op": "nop"}, hget(RESET),
          hset(RESET, 1), wr(SEND, 5)]),
    case("pw/tsc-msrs", "3.2",
         "REFERENCE_TSC (enable bit clear), REENLIGHTENMENT_CONTROL, TSC_EMULATION_CONTROL and "
         "TSC_EMULATION_STATUS read back what was written; the host may set any STATUS.",
         [wr(REFERENCE_TSC, 0x50000), rd(REFERENCE_TSC), hset(REFERENCE_TSC, 0x52000),
          hget(REFERENCE_TSC), wr(REENLIGHTENMENT, 0x1234), rd(REENLIGHTENMENT),
          wr(TSC_EMU_CONTROL, 0x3), rd(TSC_EMU_CONTROL), hset(TSC_EMU_STATUS, 0x1),
          rd(TSC_EMU_STATUS), hset(TIME_REF_COUNT, 5), hget(REENLIGHTENMENT),
          hget(TSC_EMU_CONTROL)]),

    # ---- XMM fast input and the other hypercall codes ------------------------------
    case("hcall/enforce-xmm-clear-fast-flush-ud", "3.5",
         "Under ENFORCE_CPUID without HYPERCALL_XMM_INPUT_AVAILABLE a fast XMM-input call "
         "(FLUSH_VIRTUAL_ADDRESS_SPACE) is #UD; fast and slow debug calls are unaffected.",
         [osid(), opt(), hc(0x10002), hc(0x1006B, result=0x13), hc(0x6B, result=0x14), hc(0x2)],
         vcpus=[vcpu(enforce=True, xmm=False)]),
    case("hcall/xmm-clear-no-enforce-fast-flush", "3.5",
         "Without ENFORCE_CPUID the XMM bit is not checked: a fast flush succeeds, a slow one "
         "reads its input, a rep/var-header one is INVALID_HYPERCALL_INPUT.",
         [osid(), hc(0x10002), hc(0x2), hc(0x2, ingpa=0x3000000), hc(0x2 | (1 << 32)),
          hc(0x2 | (1 << 17))],
         vcpus=[vcpu(xmm=False)]),

    case("hcall/post-message-synic-inactive", "3.5",
         "POST_MESSAGE without an active SynIC is INVALID_HYPERCALL_INPUT and never exits, "
         "slow, fast or rep, with or without ENFORCE_CPUID.",
         [osid(), opt(), hc(0x5C), hc(0x1005C), hc(0x5C | (2 << 32)), hc(0x5C, vcpu=1)],
         vcpus=[{}, vcpu(enforce=True)]),
    # ---- CPUID changes ---------------------------------------------------------
    case("cpuid/set-cpuid-after-run-einval", "#40",
         "A different KVM_SET_CPUID2 after KVM_RUN is EINVAL and syndbg stays on; "
         "the identical table is accepted.",
         [{"op": "nop", "vcpu": 0}, {"op": "set_cpuid", "vcpu": 0, "sd": "absent"},
          wr(SEND, 0x1000), rd(SEND), {"op": "set_cpuid", "vcpu": 0}]),
    case("cpuid/set-cpuid-before-run-applies", "3.8",
         "Before the first KVM_RUN a new table takes effect: removing 0x40000082 gates the MSRs.",
         [{"op": "set_cpuid", "vcpu": 0, "sd": "absent"}, rd(SEND)]),
    case("cpuid/hv-cpuid-exact-nent", "1.5",
         "nent exactly 10 is enough; every register of every entry, system and vCPU fd.",
         [{"op": "hv_cpuid", "fd": "system", "nent": 10}, {"op": "hv_cpuid", "fd": "vcpu", "nent": 10},
          {"op": "hv_cpuid", "fd": "system", "nent": 9}]),
]


# ---- issue 10: the kernel rules no case checked before ----------------------------
TSC_PAGE = 0x3E000              # a free guest page for the Hyper-V TSC page


def real(action):
    return {**action, "cpu_mode": "real"}


def compat(action):
    return {**action, "cpu_mode": "compat"}


def enforce_bit(key):
    """vCPU0: ENFORCE_CPUID with the bit clear; vCPU1: ENFORCE_CPUID with it; vCPU2: the
    bit clear without ENFORCE_CPUID (never checked)."""
    return [vcpu(enforce=True, **{key: False}), vcpu(enforce=True), vcpu(**{key: False})]


def on_each(actions, n=3):
    return [{**a, "vcpu": i} for i in range(n) for a in actions]


CASES += [
    # ---- 0x40000082.EAX: only bit 1 (HV_X64_SYNDBG_CAP_ALLOW_KERNEL_DEBUGGING) counts
    case("gating/platform-caps-other-bits-without-bit1", "1.5",
         "0x40000082.EAX with every bit but bit 1 (0xFFFFFFFD) leaves syndbg off: the MSRs "
         "are #GP and the debug hypercalls INVALID_HYPERCALL_CODE (kvm_hv_is_syndbg_enabled "
         "tests ALLOW_KERNEL_DEBUGGING only).",
         [rd(STATUS), wr(SEND, 0x1000), osid(), hc(0x69), hc(0x6B), rd(STATUS, vcpu=1),
          hc(0x6B, vcpu=1)],
         vcpus=[vcpu(sd=0xFFFFFFFD), vcpu(sd=0x1)]),
    case("gating/platform-caps-bit1-among-others", "1.5",
         "Bit 1 among other 0x40000082.EAX bits (0xFFFFFFFF, 0x3, 0x80000002) enables syndbg "
         "on each vCPU: MSRs work and the debug hypercall exits.",
         [wr(SEND, 0x2000), osid(), opt(), rd(SEND, vcpu=1), rd(SEND, vcpu=2),
          hc(0x6B, vcpu=0, result=0x10), hc(0x69, vcpu=1, result=0x11),
          hc(0x6A, vcpu=2, result=0x12)],
         vcpus=[vcpu(sd=0xFFFFFFFF), vcpu(sd=0x3), vcpu(sd=0x80000002)]),
    case("cpuid/set-cpuid-same-table-other-spelling", "#40",
         "After KVM_RUN, 0x40000082.EAX=2 written as a number is the same table as \"set\": "
         "accepted; EAX=3 is a different table: EINVAL.",
         [{"op": "nop"}, {"op": "set_cpuid", "sd": 2}, {"op": "set_cpuid", "sd": 3}, rd(SEND)]),

    # ---- OPTIONS: only bit 2 (HV_X64_SYNDBG_OPTION_USE_HCALLS) counts
    case("hcall/options-without-use-hcalls-operation-denied", "#28",
         "OPTIONS non-zero but bit 2 clear (0x3, 0xFFFFFFFFFFFFFFFB): OPERATION_DENIED (8) for "
         "POST, RETRIEVE and RESET; bit 2 among others (0xFFFFFFFFFFFFFFFF) exits.",
         [osid(), wr(OPTIONS, 0x3), hc(0x69), hc(0x6A), hc(0x6B),
          wr(OPTIONS, 0xFFFFFFFFFFFFFFFB), hc(0x69), hc(0x6A), hc(0x6B),
          hset(OPTIONS, 0xFFFFFFFFFFFFFFFF), hc(0x6B, result=0x77)]),

    # ---- the VMM edits run->hyperv.u.syndbg.msr before re-entry
    case("msr/user-space-changes-exit-msr", "#18, #19",
         "kvm_hv_syndbg_complete_userspace() copies u.syndbg.status to STATUS when u.syndbg.msr "
         "is CONTROL at re-entry, whatever the exit was: a CONTROL exit rewritten to PENDING "
         "(or to 0x12345678) copies nothing, a PENDING exit rewritten to CONTROL copies the "
         "status (the VMM's, or the exit's 0 when it leaves it).",
         [wr(STATUS, 0x11), wr(CONTROL, 1, status=0x22, exit_msr=PENDING), rd(STATUS),
          wr(CONTROL, 2, status=0x23, exit_msr=0x12345678), rd(STATUS),
          wr(PENDING, 0xD000, status=0x33, exit_msr=CONTROL), rd(STATUS),
          wr(STATUS, 0x44), wr(PENDING, 0xE000, exit_msr=CONTROL), rd(STATUS),
          wr(CONTROL, 3, status=0x55, exit_msr=CONTROL), hget(STATUS)]),

    # ---- real mode and compatibility mode
    case("hcall/real-mode-ud", "3.5",
         "In real mode (CR0.PE clear) a Hyper-V hypercall gets #UD (kvm_hv_hypercall: "
         "!is_protmode), no exit, registers untouched; the syndbg MSRs still work there.",
         [osid(), opt(), real(hc(0x6B, result=1)), real(hc(0x69)), real(wr(SEND, 0x1234)),
          real(rd(SEND)), real(rd(0x400000F0)), hc(0x6B, result=2)]),
    case("hcall/real-mode-pv-path", "3.4",
         "In real mode without GUEST_OS_ID the KVM PV ABI answers: nr from EAX, -KVM_ENOSYS "
         "truncated to 32 bits; nr 1 (KVM_HC_VAPIC_POLL_IRQ) returns 0.",
         [real(hc(0x6B)), real(hc(0x1))]),
    case("abi32/compat-mode-register-pairs", "#39",
         "Compatibility mode (EFER.LMA, CS.L=0) is not 64-bit for is_64_bit_hypercall(): "
         "control in EDX:EAX, GPAs from EBX:ECX and EDI:ESI, the result in EDX:EAX.",
         [osid(), opt(), compat(hc(0x6B | (0x12 << 32), ingpa=0x1234567800030000,
                                   outgpa=0xABCDEF0000031000, result=0x1234567800000013)),
          compat(hc(0x6B | (1 << 63))), compat(hc(0x10069))]),
    case("abi32/compat-mode-foreign-insn-and-pv", "#37, 3.4",
         "Compatibility mode: the foreign instruction is rewritten and exits; without "
         "GUEST_OS_ID the PV path truncates -KVM_ENOSYS to 32 bits.",
         [compat(hc(0x6B, insn="foreign")), osid(), opt(),
          compat(hc(0x69, insn="foreign", result=0xFFFFFFFF00000001)),
          compat(rd(OPTIONS)), compat(wr(RECV, 0x4000)), rd(RECV)]),

    # ---- ENFORCE_CPUID access checks, one CPUID bit each
    case("gating/enforce-reset-bit", "3.2",
         "ENFORCE_CPUID without HV_MSR_RESET_AVAILABLE (FEATURES.EAX bit 7): RESET is #GP; "
         "with the bit, or without ENFORCE_CPUID, it reads 0 and a write of 0 is fine.",
         on_each([rd(RESET), wr(RESET, 0)]), vcpus=enforce_bit("reset")),
    case("gating/enforce-time-ref-count-bit", "3.2",
         "ENFORCE_CPUID without HV_MSR_TIME_REF_COUNT_AVAILABLE (FEATURES.EAX bit 1): "
         "TIME_REF_COUNT reads #GP; otherwise it reads a clock; a guest write is #GP always.",
         on_each([rd(TIME_REF_COUNT), wr(TIME_REF_COUNT, 0)]) + [hget(TIME_REF_COUNT)],
         vcpus=enforce_bit("time_ref")),
    case("gating/enforce-reference-tsc-bit", "3.2",
         "ENFORCE_CPUID without HV_MSR_REFERENCE_TSC_AVAILABLE (FEATURES.EAX bit 9): "
         "REFERENCE_TSC is #GP; otherwise it reads back what was written.",
         [wr(REFERENCE_TSC, 0x3F000, vcpu=0), rd(REFERENCE_TSC, vcpu=0),
          wr(REFERENCE_TSC, 0x3F000, vcpu=1), rd(REFERENCE_TSC, vcpu=1),
          wr(REFERENCE_TSC, 0x3E000, vcpu=2), rd(REFERENCE_TSC, vcpu=2),
          rd(REFERENCE_TSC, vcpu=0)],
         vcpus=enforce_bit("ref_tsc")),
    case("gating/enforce-reenlightenment-bit", "3.2",
         "ENFORCE_CPUID without HV_ACCESS_REENLIGHTENMENT (FEATURES.EAX bit 13): "
         "REENLIGHTENMENT_CONTROL, TSC_EMULATION_CONTROL and TSC_EMULATION_STATUS are #GP.",
         on_each([wr(REENLIGHTENMENT, 0x11), rd(REENLIGHTENMENT), wr(TSC_EMU_CONTROL, 0x1),
                  rd(TSC_EMU_CONTROL), wr(TSC_EMU_CONTROL, 0), wr(TSC_EMU_STATUS, 0),
                  rd(TSC_EMU_STATUS)]),
         vcpus=enforce_bit("reenlight")),
    case("gating/enforce-crash-bit", "1.6",
         "ENFORCE_CPUID without HV_FEATURE_GUEST_CRASH_MSR_AVAILABLE (FEATURES.EDX bit 10): "
         "CRASH_P0-P4 and CRASH_CTL are #GP.",
         on_each([wr(CRASH_P0, 0x5), rd(CRASH_P0), rd(CRASH_P4), wr(CRASH_CTL, 1), rd(CRASH_CTL)]),
         vcpus=enforce_bit("crash")),
    case("hcall/enforce-post-messages-bit", "3.5",
         "ENFORCE_CPUID without HV_POST_MESSAGES (FEATURES.EBX bit 4): POST_MESSAGE is "
         "ACCESS_DENIED before its own checks; an unknown code passes the access check "
         "(INVALID_HYPERCALL_CODE).",
         [osid()] + on_each([hc(0x5C), hc(0x5C | (1 << 63)), hc(0x6C)]),
         vcpus=enforce_bit("post_msg")),
    case("hcall/enforce-remote-tlb-flush-bit", "3.5",
         "ENFORCE_CPUID without HV_X64_REMOTE_TLB_FLUSH_RECOMMENDED (0x40000004.EAX bit 2): "
         "FLUSH_VIRTUAL_ADDRESS_SPACE is ACCESS_DENIED, slow or fast; otherwise it succeeds.",
         [osid()] + on_each([hc(0x2), hc(0x10002), hc(0x2 | (1 << 17))]),
         vcpus=enforce_bit("tlb_flush")),

    # ---- REFERENCE_TSC with the enable bit: the TSC page
    case("pw/reference-tsc-enable-guest", "3.2",
         "A guest write of REFERENCE_TSC with the enable bit makes KVM write the TSC page "
         "before the guest resumes (sequence 1), again with sequence + 1 on the next such "
         "write; clearing the bit leaves the page alone; TIME_REF_COUNT still reads a clock.",
         [wr(REFERENCE_TSC, TSC_PAGE | 1), peek(TSC_PAGE), rd(REFERENCE_TSC),
          wr(REFERENCE_TSC, TSC_PAGE | 1), peek(TSC_PAGE), wr(REFERENCE_TSC, TSC_PAGE),
          peek(TSC_PAGE), rd(TIME_REF_COUNT), hget(REFERENCE_TSC)]),
    case("pw/reference-tsc-master-clock-rewrites-page", "3.2",
         "A master clock update (the other vCPU's first KVM_RUN: its TSC matching request) "
         "rewrites a set-up TSC page with sequence + 1 (kvm_hv_request_tsc_page_update).",
         [wr(REFERENCE_TSC, TSC_PAGE | 1), peek(TSC_PAGE), {"op": "nop", "vcpu": 1},
          peek(TSC_PAGE), {"op": "nop", "vcpu": 0}, peek(TSC_PAGE)], vcpus=[{}, {}]),
    case("pw/reference-tsc-enable-host", "3.2",
         "A host write with the enable bit writes the page only when the vCPU next runs; a "
         "host write that clears the bit before that leaves nothing to write.",
         [hset(REFERENCE_TSC, TSC_PAGE | 1), peek(TSC_PAGE), {"op": "nop"}, peek(TSC_PAGE),
          hset(REFERENCE_TSC, 0x3F001), hset(REFERENCE_TSC, 0x3F000), {"op": "nop"},
          peek(0x3F000), hget(REFERENCE_TSC)]),
    case("pw/reference-tsc-outside-memory", "3.2",
         "A TSC page outside guest memory cannot be read (the page is broken): the MSR keeps "
         "the value and nothing is written.",
         [wr(REFERENCE_TSC, 0x3000001), rd(REFERENCE_TSC), rd(TIME_REF_COUNT),
          wr(REFERENCE_TSC, TSC_PAGE | 1), peek(TSC_PAGE)]),
    case("pw/reference-tsc-unsafe-host-update", "3.2",
         "With TSC_EMULATION_CONTROL set, a host change of a page the guest uses keeps the "
         "guest's page (tsc_page_update_unsafe), and so does a master clock update; once "
         "emulation is off the host change rewrites it.",
         [wr(REFERENCE_TSC, TSC_PAGE | 1), hset(TSC_EMU_CONTROL, 1),
          hset(REFERENCE_TSC, TSC_PAGE | 1), {"op": "nop"}, peek(TSC_PAGE),
          {"op": "nop", "vcpu": 1}, peek(TSC_PAGE), hset(TSC_EMU_CONTROL, 0),
          hset(REFERENCE_TSC, TSC_PAGE | 1), {"op": "nop"}, peek(TSC_PAGE)], vcpus=[{}, {}]),

    # ---- paths no case took
    case("msr/cpl3-rdmsr-wrmsr-gp", "3.2",
         "RDMSR/WRMSR of a syndbg MSR at CPL3: #GP before KVM sees it, nothing stored.",
         [rd(STATUS, cpl=3), wr(STATUS, 5, cpl=3), wr(CONTROL, 1, cpl=3), rd(STATUS)]),
    case("host/unknown-msr-stops-msr-io", "#15",
         "KVM_SET_MSRS/KVM_GET_MSRS of 0x400000F0 (not handled) process 0 MSRs.",
         [hset(0x400000F0, 1), hget(0x400000F0), hget(0x400000FE)]),
    case("hcall/no-hyperv-pv-path", "3.4",
         "Without Hv#1 the Hyper-V path is off even after a GUEST_OS_ID write (which #GPs): "
         "PV ABI, -KVM_ENOSYS, and 0 for KVM_HC_VAPIC_POLL_IRQ.",
         [osid(), hc(0x6B, rax=0x6B), hc(0x6B, rax=1)], vcpus=[HV_OFF]),
    case("hcall/unknown-code-invalid-code", "3.5",
         "Codes KVM does not know (0x6C, 0x0, 0xFFFF) are INVALID_HYPERCALL_CODE, slow or fast.",
         [osid(), opt(), hc(0x6C), hc(0x0), hc(0xFFFF), hc(0x1006C)]),
    case("hcall/registers-preserved", "1.4",
         "Every hypercall outcome (exit, status, #UD at CPL3, PV path, rewritten foreign "
         "instruction) leaves the registers that carry no output as they were: RBX, RSI, RDI, "
         "R9-R14 hold sentinels, RCX/R8 the input.",
         [hc(0x6B, rax=0x1234), osid(), hc(0x6B), opt(), hc(0x6B, result=0x99),
          hc(0x6B, cpl=3), hc(0x6B, insn="foreign", result=0x98), hc(0x10002)]),
    case("abi32/registers-preserved", "1.4",
         "32-bit protected mode: EBX:ECX and EDI:ESI (the GPAs) and R8-R14 are preserved by "
         "every outcome; only EDX:EAX change.",
         [hc(0x6B, ingpa=0x1111111122222222, outgpa=0x3333333344444444), osid(),
          hc(0x6B, ingpa=0x5555555566666666, outgpa=0x7777777788888888), opt(),
          hc(0x6A, ingpa=0x99999999AAAAAAAA, outgpa=0xBBBBBBBBCCCCCCCC, result=0xDDDDDDDDEEEEEEEE),
          hc(0x6B, insn="foreign", result=0x12)], mode=32),
]

assert len({c["id"] for c in CASES}) == len(CASES), "duplicate case ids"
