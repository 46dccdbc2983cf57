"""vcsim: the kernel's own #VC code (the default tree's sev.c, sev-shared.c,
insn.c, inat.c, insn-eval.c) run under the shim hypervisor, checked against
the values of /work/shared/specs/sev_es.md sections 3 and 6 (and, where
they differ, against what the 6.1 source does)."""
from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.payloads import sev_es_build

RIP = 0xffffffff81000000
GHCB = 0x7ffe000
RAM_VA, RAM_PA = 0xffff888000100000, 0x100000
MMIO_VA, MMIO_PA = 0xffffc90000000000, 0xfebf0000
W1_BASE = 0x001C000000000000   # sw_exit_code, info1, info2


@pytest.fixture(scope="module")
def tree():
    from harness.kernel import build
    tree, _digest = build.pristine_tree(build.DEFAULT_SOURCE)
    return Path(tree)


@pytest.fixture(scope="module")
def vcsim(tree):
    return sev_es_build.build_vcsim(tree)


def run(vcsim, text: str) -> list[dict]:
    done = subprocess.run([str(vcsim.path)], input=text, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def script(head: str, *lines: str) -> str:
    return "\n".join([f"S 0 mode=k rip={RIP:#x} {head}".rstrip(), *lines, "E"]) + "\n"


def by_step(events: list[dict], step: int, op: str) -> list[dict]:
    return [e for e in events if e.get("step") == step and e["op"] == op]


def one(events, step, op):
    found = by_step(events, step, op)
    assert len(found) == 1, (op, step, events)
    return found[0]


# ---------------------------------------------------------------- IOIO

def test_outb_imm8(vcsim):
    ev = run(vcsim, script("", "A op=insn bytes=e680 exit=0x7b rax=0x5a"))
    g = one(ev, 0, "vmgexit")
    assert (g["exit"], g["info1"], g["info2"]) == (0x7b, 0x00800210, 0)
    assert g["regs"] == {"rax": 0x5A}
    assert g["valid"] == [1 << 63, W1_BASE]
    assert g["scratch"] is None and g["usage"] == 0
    r = one(ev, 0, "result")
    assert r["result"] == "ok" and r["rip"] == RIP + 2 and r["passes"] == 1
    assert ev[-1] == {"script": 0, "op": "done"}


def test_inb_imm8_replaces_whole_rax(vcsim):
    ev = run(vcsim, script("", "H port=0x71,12",
                           "A op=insn bytes=e471 exit=0x7b rax=0xffffffffffffff00"))
    g = one(ev, 0, "vmgexit")
    assert (g["info1"], g["regs"]) == (0x00710211, {"rax": 0})
    r = one(ev, 0, "result")
    assert r["regs"]["rax"] == 0x12 and r["rip"] == RIP + 2     # [obs #4]


def test_inl_dx_and_outw(vcsim):
    ev = run(vcsim, script("rdx=0xcfc", "H port=0xcfc,78563412",
                           "A op=insn bytes=ed exit=0x7b rax=0xffffffffffffffff",
                           "A op=insn bytes=66ef exit=0x7b rdx=0x1f0 rax=0xabcd1234"))
    assert one(ev, 0, "vmgexit")["info1"] == 0x0CFC0241
    r = one(ev, 0, "result")
    assert r["regs"]["rax"] == 0x12345678 and r["rip"] == RIP + 1
    g = one(ev, 1, "vmgexit")
    assert g["info1"] == 0x01F00220 and g["regs"] == {"rax": 0x1234}
    assert one(ev, 1, "result")["rip"] == RIP + 3


def test_in_reply_without_rax_is_vmm_error(vcsim):
    ev = run(vcsim, script("", "A op=insn bytes=e471 exit=0x7b drop=rax"))
    r = one(ev, 0, "result")
    assert r["result"] == "vmm-error" and r["rip"] == RIP
    # kernel mode: exc_vmm_communication asks for termination (set 0, reason 0)
    assert [m["value"] for m in by_step(ev, 0, "msr")] == [0x100]


def test_source_puts_ds_in_outs_seg_field(tree):
    """The spec's 0x03F80E1C has SEG = DS (3 << 10) for OUTS: check the source says so."""
    src = (tree / "arch/x86/kernel/sev-shared.c").read_text()
    outs = re.search(r"case 0x6e:\s*case 0x6f:(.*?)break;", src, re.S).group(1)
    assert "IOIO_SEG_DS" in outs and re.search(r"IOIO_SEG_DS\s+\(3 << 10\)", src)
    assert re.search(r"case 8:\s*\*exitinfo \|= IOIO_ADDR_64;", src)


def test_rep_outsb(vcsim):
    ev = run(vcsim, script(f"rsi={RAM_VA:#x} rdx=0x3f8 rcx=5",
                           f"P va={RAM_VA:#x} pa={RAM_PA:#x} len=4096 kind=ram data=68656c6c6f",
                           "A op=insn bytes=f36e exit=0x7b"))
    g = one(ev, 0, "vmgexit")
    assert (g["info1"], g["info2"], g["scratch"]) == (0x03F80E1C, 5, GHCB + 0x800)
    assert g["valid"] == [0, 0x003C000000000000] and g["buf"] == "68656c6c6f"
    r = one(ev, 0, "result")
    assert r["result"] == "ok" and r["rip"] == RIP + 2
    assert (r["regs"]["rsi"], r["regs"]["rcx"]) == (RAM_VA + 5, 0)


def test_rep_insb_5000_three_exits(vcsim):
    data = "".join(f"{i % 255 + 1:02x}" for i in range(5000))
    ev = run(vcsim, script(f"rdi={RAM_VA:#x} rdx=0xe0 rcx=5000",
                           f"P va={RAM_VA:#x} pa={RAM_PA:#x} len=8192 kind=ram",
                           f"H port=0xe0,{data}",
                           "A op=insn bytes=f36c exit=0x7b"))
    exits = by_step(ev, 0, "vmgexit")
    assert [g["info2"] for g in exits] == [2032, 2032, 936]
    assert {g["info1"] for g in exits} == {0x00E0021D}
    r = one(ev, 0, "result")
    assert (r["result"], r["passes"], r["rip"]) == ("ok", 3, RIP + 2)
    assert (r["regs"]["rdi"], r["regs"]["rcx"]) == (RAM_VA + 5000, 0)
    assert r["ram"] == [{"va": RAM_VA, "data": data}]


def test_rep_outsw_backwards_6_1_address_bug(vcsim, tree):
    """Spec: words at p, p-2, p-4.  6.1's vc_insn_string_read() computes
    `src + (i * data_size * b)` with `unsigned int data_size`, so the product
    is an unsigned 32-bit value: the second element is read at p + 0xfffffffe
    (a #PF here, where nothing is mapped), not at p - 2."""
    src = (tree / "arch/x86/kernel/sev-shared.c").read_text()
    assert "void *s = src + (i * data_size * b);" in src
    assert re.search(r"unsigned int data_size,", src)
    p = RAM_VA + 0x100
    ev = run(vcsim, script(f"rsi={p:#x} rdx=0xe0 rcx=3 rflags=0x402",
                           f"P va={RAM_VA:#x} pa={RAM_PA:#x} len=4096 kind=ram",
                           "A op=insn bytes=f3666f exit=0x7b"))
    assert not by_step(ev, 0, "vmgexit")
    r = one(ev, 0, "result")
    assert r["result"] == "exception" and r["rip"] == RIP
    assert r["exception"] == {"vector": 14, "error_code": 1, "cr2": p + 0xfffffffe}
    # one element backwards works: 0x00E00E2C / 1
    ev = run(vcsim, script(f"rsi={p:#x} rdx=0xe0 rcx=1 rflags=0x402",
                           f"P va={RAM_VA:#x} pa={RAM_PA:#x} len=4096 kind=ram data=" + "00" * 0x100 + "3412",
                           "A op=insn bytes=f3666f exit=0x7b"))
    g = one(ev, 0, "vmgexit")
    assert (g["info1"], g["info2"], g["buf"]) == (0x00E00E2C, 1, "3412")
    assert one(ev, 0, "result")["regs"]["rsi"] == p - 2


# ---------------------------------------------------------------- CPUID, MSR

def test_cpuid(vcsim):
    ev = run(vcsim, script("", "H cpuid=0,0,0xd,0x68747541,0x444d4163,0x69746e65",
                           "A op=insn bytes=0fa2 exit=0x72 rax=0 rcx=0"))
    g = one(ev, 0, "vmgexit")
    assert g["valid"] == [0x8000000000000000, 0x201C000200000000]
    assert g["xcr0"] == 7 and g["regs"] == {"rax": 0, "rcx": 0}
    r = one(ev, 0, "result")
    assert [r["regs"][k] for k in ("rax", "rbx", "rcx", "rdx")] == \
        [0xd, 0x68747541, 0x444d4163, 0x69746e65]
    assert r["rip"] == RIP + 2


def test_cpuid_without_osxsave_sends_xcr0_1(vcsim):
    ev = run(vcsim, script("osxsave=0", "A op=insn bytes=0fa2 exit=0x72 rax=1"))
    assert one(ev, 0, "vmgexit")["xcr0"] == 1


def test_cpuid_reply_without_rbx(vcsim):
    ev = run(vcsim, script("", "A op=insn bytes=0fa2 exit=0x72 drop=rbx"))
    assert one(ev, 0, "result")["result"] == "vmm-error"
    assert [m["value"] for m in by_step(ev, 0, "msr")] == [0x100]


def test_wrmsr(vcsim):
    ev = run(vcsim, script("", "A op=insn bytes=0f30 exit=0x7c rcx=0x6e0 rax=1 rdx=2"))
    g = one(ev, 0, "vmgexit")
    assert (g["info1"], g["info2"]) == (1, 0)
    assert g["valid"] == [0x8000000000000000, 0x001C000600000000]
    assert one(ev, 0, "result")["rip"] == RIP + 2


def test_rdmsr_known_and_rejected(vcsim):
    ev = run(vcsim, script("", "H msr=0x1b,0x12345678fee00900",
                           "A op=insn bytes=0f32 exit=0x7c rcx=0x1b",
                           "A op=insn bytes=0f32 exit=0x7c rcx=0x1234"))
    g = one(ev, 0, "vmgexit")
    assert g["valid"] == [0, 0x001C000200000000] and g["info1"] == 0
    r = one(ev, 0, "result")
    assert (r["regs"]["rax"], r["regs"]["rdx"], r["rip"]) == (0xfee00900, 0x12345678, RIP + 2)
    r = one(ev, 1, "result")
    assert r["result"] == "exception" and r["rip"] == RIP + 2       # no advance
    assert (r["exception"]["vector"], r["exception"]["error_code"]) == (13, 0)


def test_hv_error_reply(vcsim):
    ev = run(vcsim, script("", "A op=insn bytes=0f30 exit=0x7c rcx=0x6e0 info1=2 info2=4",
                           "A op=insn bytes=0f30 exit=0x7c rcx=0x6e0 info1=1 info2=0x2a80000b0d"))
    assert one(ev, 0, "result")["result"] == "vmm-error"        # since 06f2ac3d4219
    r = one(ev, 1, "result")
    assert r["result"] == "exception" and r["exception"]["error_code"] == 0x2a


# ---------------------------------------------------------------- DR7, misc

def test_dr7_write_then_read(vcsim):
    ev = run(vcsim, script("", "A op=insn bytes=0f21f8 exit=0x27 rax=0x5",
                           "A op=insn bytes=0f23f8 exit=0x37 rax=0x401",
                           "A op=insn bytes=0f21f8 exit=0x27 rax=0",
                           "A op=insn bytes=0f23f8 exit=0x37 rax=0x100000000"))
    # 6.1: the runtime data come zeroed from memblock and init_ghcb() does not set
    # dr7, so a read before any write gives 0 (the spec says 0x400)
    assert one(ev, 0, "result")["regs"]["rax"] == 0
    g = one(ev, 1, "vmgexit")
    assert (g["exit"], g["regs"]) == (0x37, {"rax": 0x401})
    assert one(ev, 1, "result")["dr7"] == 0x401
    assert not by_step(ev, 2, "vmgexit")
    r = one(ev, 2, "result")
    assert r["regs"]["rax"] == 0x401 and r["rip"] == RIP + 9
    r = one(ev, 3, "result")
    assert not by_step(ev, 3, "vmgexit")
    assert r["result"] == "exception" and r["exception"]["vector"] == 13


@pytest.mark.parametrize("bytes_,exit_", [("0f01c8", 0x8a), ("0f01c9", 0x8b),
                                          ("0f01fa", 0x8a), ("0f01fb", 0x8b)])
def test_monitor_mwait_are_nops(vcsim, bytes_, exit_):
    ev = run(vcsim, script("", f"A op=insn bytes={bytes_} exit={exit_:#x}"))
    assert not [e for e in ev if e["op"] == "vmgexit"]
    r = one(ev, 0, "result")
    assert r["result"] == "ok" and r["rip"] == RIP + 3


def test_wbinvd_rdtsc_rdtscp_rdpmc(vcsim):
    ev = run(vcsim, script("", "H tsc=0x1122334455667788", "H tsc_aux=7", "H pmc=0,0xaabbccdd11",
                           "A op=insn bytes=0f09 exit=0x89",
                           "A op=insn bytes=0f31 exit=0x6e",
                           "A op=insn bytes=0f01f9 exit=0x87",
                           "A op=insn bytes=0f33 exit=0x6f rcx=0"))
    assert one(ev, 0, "vmgexit")["valid"] == [0, W1_BASE]
    r = one(ev, 1, "result")
    assert (r["regs"]["rax"], r["regs"]["rdx"]) == (0x55667788, 0x11223344)
    r = one(ev, 2, "result")
    assert r["regs"]["rcx"] == 7 and r["rip"] == RIP + 2 + 2 + 3
    assert one(ev, 3, "vmgexit")["regs"] == {"rcx": 0}
    r = one(ev, 3, "result")
    assert (r["regs"]["rax"], r["regs"]["rdx"]) == (0xbbccdd11, 0xaa)


def test_vmmcall_kernel_and_user(vcsim):
    ev = run(vcsim, script("rbx=2 rcx=3 rdx=4 rsi=5", "A op=insn bytes=0f01d9 exit=0x81 rax=1",
                           "H vmmcall_rax=0"))
    g = one(ev, 0, "vmgexit")
    assert g["cpl"] == 0 and g["valid"][0] == 0x8000000002000000
    # kvm.c's kvm_sev_es_hcall_prepare adds RBX RCX RDX RSI (a guest on KVM)
    assert g["valid"][1] == 0x001C004E00000000
    assert g["regs"] == {"rax": 1, "rbx": 2, "rcx": 3, "rdx": 4, "rsi": 5}
    r = one(ev, 0, "result")
    assert r["rip"] == RIP + 3 and r["regs"]["rax"] == 0
    ev = run(vcsim, script("kvm=0", "A op=insn bytes=0f01d9 exit=0x81 rax=1"))
    g = one(ev, 0, "vmgexit")
    assert g["valid"] == [0x8000000002000000, W1_BASE] and g["regs"] == {"rax": 1}
    assert one(ev, 0, "result")["regs"]["rax"] == (1 << 64) - 1000   # -KVM_ENOSYS
    ev = run(vcsim, "S 0 mode=u rip=0x401000\nA op=insn bytes=0f01d9 exit=0x81 rax=1\nE\n")
    assert one(ev, 0, "vmgexit")["cpl"] == 3
    r = one(ev, 0, "result")
    assert r["result"] == "ok" and r["regs"]["rax"] == (1 << 64) - 1   # -KVM_EPERM


def test_exit_code_not_checked_against_opcode_in_6_1(vcsim, tree):
    """Spec case 45: without e3ef461af35a (vc_check_opcode_bytes, not in this 6.1
    source) an injected #VC(0x72) on a NOP is emulated as CPUID."""
    assert "vc_check_opcode_bytes" not in (tree / "arch/x86/kernel/sev.c").read_text()
    ev = run(vcsim, script("", "H cpuid=0,0,0x10,1,2,3", "A op=insn bytes=90 exit=0x72 rax=0"))
    assert one(ev, 0, "vmgexit")["exit"] == 0x72
    r = one(ev, 0, "result")
    assert r["result"] == "ok" and r["rip"] == RIP + 1
    assert [r["regs"][k] for k in ("rax", "rbx", "rcx", "rdx")] == [0x10, 1, 2, 3]


def test_invd_terminates(vcsim):
    ev = run(vcsim, script("", "A op=insn bytes=0f08 exit=0x76"))
    assert one(ev, 0, "result")["result"] == "unsupported"
    assert [m["value"] for m in by_step(ev, 0, "msr")] == [0x100]


# ---------------------------------------------------------------- MMIO

MMIO_PAGES = (f"P va={MMIO_VA:#x} pa={MMIO_PA:#x} len=4096 kind=mmio",
              f"P va={RAM_VA:#x} pa={RAM_PA:#x} len=8192 kind=ram",
              f"H mmio={MMIO_PA + 0x10:#x},8180ffee")


def test_mmio_read_32(vcsim):
    ev = run(vcsim, script(f"rdi={MMIO_VA + 0x10:#x}", *MMIO_PAGES,
                           "A op=insn bytes=8b07 exit=0x400 rax=0xffffffffffffffff"))
    g = one(ev, 0, "vmgexit")
    assert (g["exit"], g["info1"], g["info2"], g["scratch"]) == \
        (0x80000001, MMIO_PA + 0x10, 4, GHCB + 0x800)
    assert g["valid"] == [0, 0x003C000000000000]
    r = one(ev, 0, "result")
    assert r["regs"]["rax"] == 0xeeff8081 and r["rip"] == RIP + 2


def test_mmio_write_64(vcsim):
    ev = run(vcsim, script(f"rdi={MMIO_VA + 0x10:#x}", *MMIO_PAGES,
                           "A op=insn bytes=488907 exit=0x400 rax=0x1122334455667788"))
    g = one(ev, 0, "vmgexit")
    assert (g["exit"], g["info2"], g["buf"]) == (0x80000002, 8, "8877665544332211")
    assert one(ev, 0, "result")["rip"] == RIP + 3


def test_movzx_keeps_upper_half_in_6_1(vcsim):
    ev = run(vcsim, script(f"rdi={MMIO_VA + 0x10:#x}", *MMIO_PAGES,
                           "A op=insn bytes=0fb607 exit=0x400 rax=0xffffffffffffffff"))
    assert one(ev, 0, "vmgexit")["info2"] == 1
    r = one(ev, 0, "result")
    # vc_handle_mmio MMIO_READ_ZERO_EXTEND: memset(reg, 0, opnd_bytes = 4) [obs #1]
    assert r["regs"]["rax"] == 0xffffffff00000081 and r["rip"] == RIP + 3


def test_movsx_word(vcsim):
    ev = run(vcsim, script(f"rdi={MMIO_VA + 0x10:#x}", *MMIO_PAGES,
                           "A op=insn bytes=480fbf07 exit=0x400"))
    r = one(ev, 0, "result")
    assert r["regs"]["rax"] == 0xffffffffffff8081 and r["rip"] == RIP + 4


def test_movsl_mmio_to_ram_is_a_nested_vc(vcsim):
    ev = run(vcsim, script(f"rsi={MMIO_VA + 0x10:#x} rdi={RAM_VA:#x}", *MMIO_PAGES,
                           "A op=insn bytes=a5 exit=0x400"))
    g = one(ev, 0, "vmgexit")
    assert (g["exit"], g["info1"], g["info2"]) == (0x80000001, MMIO_PA + 0x10, 4)
    r = one(ev, 0, "result")
    assert r["result"] == "ok" and r["rip"] == RIP + 1
    assert (r["regs"]["rsi"], r["regs"]["rdi"]) == (MMIO_VA + 0x14, RAM_VA + 4)
    assert r["ram"] == [{"va": RAM_VA, "data": "8180ffee"}]


def test_mmio_unsupported_and_decode(vcsim):
    ev = run(vcsim, script(f"rdi={MMIO_VA:#x}", *MMIO_PAGES,
                           "A op=insn bytes=830701 exit=0x400",
                           "A op=decode bytes=48c707ffffffff",
                           "A op=decode bytes=8a07"))
    # 6.1: insn_decode_mmio() gives MMIO_DECODE_FAILED for an opcode it does not
    # know, so vc_handle_mmio() returns ES_DECODE_FAILED (the spec: ES_UNSUPPORTED);
    # either way kernel mode terminates
    assert one(ev, 0, "result")["result"] == "decode-failed"
    assert [m["value"] for m in by_step(ev, 0, "msr")] == [0x100]
    d = one(ev, 1, "decode")
    assert (d["ok"], d["mmio"], d["bytes"], d["len"], d["reg"], d["ea"]) == \
        (True, "write_imm", 8, 7, None, MMIO_VA)
    d = one(ev, 2, "decode")
    assert (d["mmio"], d["bytes"], d["reg"]) == ("read", 1, "rax")


# ---------------------------------------------------------------- MSR protocol

def test_early_cpuid_msr_protocol(vcsim):
    ev = run(vcsim, script("", "H cpuid=0x8000001f,0,0xb,0x33,0,0",
                           "A op=early_cpuid leaf=0x8000001f"))
    assert [m["value"] for m in by_step(ev, 0, "msr")] == [
        0x8000001F_00000004, 0x8000001F_40000004, 0x8000001F_80000004, 0x8000001F_C0000004]
    r = one(ev, 0, "result")
    assert r["result"] == "ok" and r["rip"] == RIP + 2
    assert (r["regs"]["rax"], r["regs"]["rbx"]) == (0xb, 0x33)


def test_early_cpuid_without_sev_bit_terminates(vcsim):
    ev = run(vcsim, script("", "A op=early_cpuid leaf=0x8000001f"))
    assert one(ev, 0, "result")["result"] == "terminate"
    assert by_step(ev, 0, "msr")[-1]["value"] == 0x100


def test_negotiate_and_terminate(vcsim):
    ev = run(vcsim, script("", "H sev_info=2,2,51", "A op=negotiate",
                           "A op=terminate set=0 reason=1"))
    assert [m["value"] for m in by_step(ev, 0, "msr")] == [0x002]
    assert one(ev, 0, "result")["result"] == "ok"      # 6.1 speaks versions 1..2
    assert [m["value"] for m in by_step(ev, 1, "msr")] == [0x10100]
    assert one(ev, 1, "result")["result"] == "terminate"
    ev = run(vcsim, script("", "H sev_info=3,3,51", "A op=negotiate"))
    assert one(ev, 0, "result")["result"] == "terminate"


# ---------------------------------------------------------------- the build

def test_binary_has_no_privileged_instructions(vcsim):
    assert sev_es_build.check_binary(vcsim.path) == []
    text = subprocess.run(["objdump", "-d", str(vcsim.path)], capture_output=True,
                          text=True, check=True).stdout
    assert not re.search(r"\t(rep[a-z]* )?(vmmcall|vmgexit|rdmsr|wrmsr)\b", text)
    assert "<vc_handle_exitcode>" in text or "<bridge_handle_vc>" in text


def test_kernel_files_and_cache(vcsim, tree):
    assert set(vcsim.kernel_files) >= {
        "arch/x86/kernel/sev.c", "arch/x86/kernel/sev-shared.c", "arch/x86/lib/insn.c",
        "arch/x86/lib/inat.c", "arch/x86/lib/insn-eval.c", "arch/x86/lib/x86-opcode-map.txt",
        "arch/x86/tools/gen-insn-attr-x86.awk", "headers"}
    assert all(re.fullmatch(r"[0-9a-f]{64}", v) for v in vcsim.kernel_files.values())
    assert not (tree / "arch/x86/lib/inat-tables.c").exists()
    assert not (tree / "include/generated").exists()
    assert sev_es_build.build_vcsim(tree).path == vcsim.path


def test_user_mode_paths(vcsim):
    user = "S 0 mode=u rip=0x401000"
    ev = run(vcsim, "\n".join([user, "H cpuid=1,0,0x800f12,0,0,0",
                               "A op=insn bytes=0fa2 exit=0x72 rax=1 rcx=9", "E"]) + "\n")
    assert one(ev, 0, "vmgexit")["regs"] == {"rax": 1, "rcx": 9}
    r = one(ev, 0, "result")
    assert r["regs"]["rax"] == 0x800f12 and r["rip"] == 0x401002
    # IN from user space without an I/O bitmap: vc_ioio_check() gives #GP(0)
    ev = run(vcsim, user + "\nA op=insn bytes=e471 exit=0x7b\nE\n")
    assert not by_step(ev, 0, "vmgexit")
    r = one(ev, 0, "result")
    assert r["result"] == "exception" and r["exception"]["vector"] == 13
    ev = run(vcsim, user + " ioperm=1\nA op=insn bytes=e471 exit=0x7b\nE\n")
    assert one(ev, 0, "vmgexit")["info1"] == 0x00710211
    # user MMIO: ES_UNSUPPORTED (a37cd2a59d0c), no termination request (SIGBUS)
    ev = run(vcsim, "\n".join([user + " rax=0x10000", "P va=0x10000 pa=0xfebf0000 len=4096 kind=mmio",
                               "A op=insn bytes=8b00 exit=0x400", "E"]) + "\n")
    assert one(ev, 0, "result")["result"] == "unsupported"
    assert not [e for e in ev if e["op"] in ("msr", "vmgexit")]


def test_check_binary_finds_vmgexit(tmp_path):
    src = tmp_path / "x.c"
    src.write_text('void f(void) { asm volatile("rep; vmmcall"); }\n'
                   'void g(void) { asm volatile("rdmsr" ::: "rax", "rdx"); }\n')
    obj = tmp_path / "x.o"
    subprocess.run(["gcc", "-c", "-o", str(obj), str(src)], check=True)
    found = sev_es_build.check_binary(obj)
    assert len(found) == 2 and found[0].startswith("f:") and "vmgexit" in found[0]


def _view(tree: Path, root: Path, patched: dict[str, str]) -> Path:
    """A symlink view of `tree` with real, edited copies of `patched` (as
    harness/kernel/source.patched_view makes them)."""
    real = {Path(rel).parent for rel in patched}
    real = {q for d in real for q in (d, *d.parents)} - {Path(".")}
    for d in [Path("."), *sorted(real, key=lambda p: len(p.parts))]:
        (root / d).mkdir(parents=True, exist_ok=True)
        for child in (tree / d).iterdir():
            rel = d / child.name
            if rel not in real and str(rel) not in patched:
                (root / rel).symlink_to(child)
    for rel, text in patched.items():
        (root / rel).write_text(text)
    return root


def test_patched_symlink_view(vcsim, tree, tmp_path):
    sev = (tree / "arch/x86/kernel/sev.c").read_text()
    old = "\t/* Treat the same as MONITOR/MONITORX */\n\treturn ES_OK;"
    assert old in sev
    view = _view(tree, tmp_path / "view",
                 {"arch/x86/kernel/sev.c": sev.replace(old, "\treturn ES_UNSUPPORTED;")})
    patched = sev_es_build.build_vcsim(view)
    assert patched.path != vcsim.path
    changed = {k for k in vcsim.kernel_files if vcsim.kernel_files[k] != patched.kernel_files[k]}
    assert changed == {"arch/x86/kernel/sev.c"}
    ev = run(patched, script("", "A op=insn bytes=0f01c9 exit=0x8b"))
    assert one(ev, 0, "result")["result"] == "unsupported"
    ev = run(vcsim, script("", "A op=insn bytes=0f01c9 exit=0x8b"))
    assert one(ev, 0, "result")["result"] == "ok"


def test_missing_kernel_file_names_it(tmp_path):
    (tmp_path / "arch/x86/kernel").mkdir(parents=True)
    with pytest.raises(HarnessError, match="arch/x86/kernel/sev.c"):
        sev_es_build.build_vcsim(tmp_path)


def test_crash_in_the_kernel_code_is_fail(tree, tmp_path):
    """The mutant of the seed-1 campaign that made vcsim segfault (__sev_get_ghcb() without
    `state->ghcb = &data->backup_ghcb`: the nested #VC of outsb from MMIO writes through a
    NULL state->ghcb): FAIL with the signal and vcsim's crash note, not ERROR."""
    from types import SimpleNamespace

    from harness import features
    from harness.driver import Suite
    from harness.errors import KernelFailure
    from harness.payloads import sev_es as codec
    from harness.targets.host import HarnessSide

    sev = (tree / "arch/x86/kernel/sev.c").read_text()
    old = "\t\tstate->ghcb = &data->backup_ghcb;\n"
    assert sev.count(old) == 1
    view = _view(tree, tmp_path / "view", {"arch/x86/kernel/sev.c": sev.replace(old, "\t\t;\n")})
    folder = tmp_path / "payloads"
    folder.mkdir()
    (folder / "sev_es").symlink_to(sev_es_build.build_vcsim(view).path)
    suite = Suite(features.get("sev_es"), HarnessSide(str(folder), tmp_path), "6.1",
                  SimpleNamespace(version="6.1.0-57-amd64", config=lambda: None))
    outsb = {"pages": [{"va": MMIO_VA, "pa": MMIO_PA, "len": 4096, "kind": "mmio"}],
             "actions": [{"op": "insn", "bytes": "6e", "exit": 0x7B,
                          "regs": {"rdx": 0xE0, "rsi": MMIO_VA}}]}
    ok = {"actions": [{"op": "insn", "bytes": "0f09", "exit": 0x89}]}
    with pytest.raises(KernelFailure) as got:
        suite.run([codec.normalise(ok), codec.normalise(outsb)])
    text = str(got.value)
    assert "SIGSEGV" in text
    assert "vcsim: signal 11 in script 1 step 0 (in the kernel's #VC code)" in text
    assert '"op": "done"' in text or '"op":"done"' in text     # script 0's trace came out
