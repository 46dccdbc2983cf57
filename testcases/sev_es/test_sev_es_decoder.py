"""sev_es/decoder/differential: the kernel's own MMIO decoder (insn_decode +
insn_decode_mmio + insn_get_modrm_reg_off + insn_get_addr_ref, run in vcsim), the
model's (harness/reference/sev_es.py: decode_mmio) and capstone read the same 10,000+
encodings (testcases/sev_es/decoder_corpus.py).

- kernel vs model: every field must agree (length, MMIO class, access size, register,
  effective address); a disagreement is the kernel's FAIL, as in every other case.
- kernel vs capstone (the SDM's reading): each disagreement has a class. A class the
  SDM decides against the kernel and the model already states is a finding (listed in
  run.json); a class nobody has decided yet FAILs the case, so it gets decided.
"""
from __future__ import annotations

from collections import Counter

import pytest

from harness.compare import Divergence
from harness.errors import HarnessError, KernelFailure

from decoder_corpus import REGS, RIP, capstone_view, encodings   # noqa: E402 (the case's own folder)

FEATURE = "sev_es"
BATCH = 250          # vcsim takes at most 256 actions per script
FIELDS = ("ok", "len", "mmio", "bytes", "reg", "ea")
# The MOV forms that move data between memory and a register or an immediate; the
# SDM gives each a memory access, so a decoder that refuses one cannot emulate it.
MOV_FORMS = {"mov", "movzx", "movsx", "movsxd", "movsb", "movsw", "movsd", "movsq"}

# Disagreements with the SDM that 6.1 has on purpose or by omission, decided from the
# SDM (Vol. 2A "MOV", "MOVSX/MOVSXD", Table 2-2 / 3-1 register encodings).
KNOWN = {
    "high-byte-register": dict(
        title="AH, CH, DH, BH operands are taken as the low byte of RSP, RBP, RSI, RDI",
        intended="without REX, ModRM.reg 4-7 of an 8-bit operand names AH, CH, DH, BH (SDM Vol. 2A, "
                 "Table 3-1)",
        observed="insn_get_modrm_reg_off() returns the pt_regs offset of RSP/RBP/RSI/RDI; vc_handle_mmio() "
                 "reads/writes its low byte",
        mechanism="arch/x86/lib/insn-eval.c get_reg_offset(): the 8-bit register table is the 64-bit one; "
                  "no case for legacy high-byte registers"),
    "movsxd-unsupported": dict(
        title="MOVSXD (63 /r) from MMIO is not emulated",
        intended="MOVSXD r64, m32 reads 4 bytes and sign-extends (SDM Vol. 2A MOVSX/MOVSXD)",
        observed="insn_decode_mmio() returns INSN_MMIO_DECODE_FAILED for opcode 0x63; the #VC handler "
                 "terminates the guest",
        mechanism="arch/x86/lib/insn-eval.c insn_decode_mmio(): no case 0x63"),
    "mov-sreg-unsupported": dict(
        title="MOV m16, Sreg (8C /r) to MMIO is not emulated",
        intended="MOV r/m16, Sreg stores the 16-bit selector (SDM Vol. 2A MOV)",
        observed="insn_decode_mmio() returns INSN_MMIO_DECODE_FAILED for opcode 0x8c; the #VC handler "
                 "terminates the guest",
        mechanism="arch/x86/lib/insn-eval.c insn_decode_mmio(): no case 0x8c (only 88 89 8a 8b c6 c7 a4 a5 "
                  "and 0f b6/b7/be/bf)"),
}


def classify(kernel: dict, cap: dict | None) -> str | None:
    """The class of a kernel/capstone disagreement on one encoding (None: they agree)."""
    if cap is None:
        return "capstone-refuses" if kernel["ok"] and kernel["mmio"] != "decode_failed" else None
    if cap["mem_bytes"] is None:
        return None      # a register form: no memory access, so never an MMIO #VC
    if kernel["mmio"] == "decode_failed":
        if cap["mnemonic"].split()[-1] in MOV_FORMS:
            return ("movsxd-unsupported" if cap["mnemonic"] == "movsxd" else
                    "mov-sreg-unsupported" if cap.get("segment_register") else "mov-unsupported")
        return None
    if kernel["len"] != cap["len"]:
        return "length"
    if cap["mem_bytes"] is not None and kernel["bytes"] != cap["mem_bytes"]:
        return "access-size"
    if kernel["reg"] is not None and cap["reg"] is not None and kernel["reg"] != cap["reg"]:
        return "high-byte-register" if cap["high_byte"] else "register"
    if kernel["ea"] is not None and cap["ea"] is not None and cap.get("segment") not in ("fs", "gs") \
            and kernel["ea"] != cap["ea"]:
        return "effective-address"
    return None


@pytest.mark.parametrize("cid", ["sev_es/decoder/differential"])
def test_decoder_differential(cid, suite, kvmconf_seed, run_record):
    """The kernel's MMIO decoder, the model's and capstone read 10,000+ encodings: kernel and
    model agree on every field, each kernel/capstone disagreement class is decided."""
    driver = suite(FEATURE)
    model = driver.model
    codes = encodings(kvmconf_seed)
    if len(codes) < 10_000:
        raise HarnessError(f"decoder corpus: {len(codes)} encodings, fewer than the 10,000 the differential needs")
    scripts = [driver.prepare({"mode": "kernel", "regs": dict(REGS), "rip": RIP,
                               "actions": [{"op": "decode", "bytes": c.hex()} for c in codes[i:i + BATCH]]})
               for i in range(0, len(codes), BATCH)]
    traces = driver.run(scripts)
    regs = {**REGS, "rip": RIP}
    against_model: list[tuple[int, str, object, object, bytes]] = []
    classes: Counter = Counter()
    examples: dict[str, str] = {}
    for n, (script, trace) in enumerate(zip(scripts, traces)):
        decoded = [e for e in trace if e.get("op") == "decode"]
        if len(decoded) != len(script["actions"]):
            raise HarnessError(f"vcsim answered {len(decoded)} of {len(script['actions'])} decode actions")
        for event in decoded:
            code = bytes.fromhex(script["actions"][event["step"]]["bytes"])
            kernel = {k: event[k] for k in FIELDS}
            predicted = model.decode_mmio(code, regs, "kernel")
            for field in FIELDS:
                if kernel[field] != predicted[field]:
                    against_model.append((n * BATCH + event["step"], field, predicted[field], kernel[field], code))
                    break
            found = classify(kernel, capstone_view(code))
            if found:
                classes[found] += 1
                examples.setdefault(found, code.hex())
    run_record.add_differential(FEATURE, "mmio-decoder", len(codes), ["kernel insn_decode_mmio", "model", "capstone"],
                                {"kernel-vs-model": len(against_model),
                                 **{f"kernel-vs-capstone:{k}": v for k, v in classes.items()}})
    for name in classes.keys() & KNOWN.keys():
        run_record.add_finding(id=f"sev_es/decoder-{name}", feature=FEATURE,
                               **{**KNOWN[name], "observed": f"{KNOWN[name]['observed']} ({classes[name]} of "
                                                             f"{len(codes)} encodings, e.g. {examples[name]})"})
    explained = set(model.PROFILES)
    for script, trace in zip(scripts, traces):
        explained &= set(driver.explained_by(script, trace))
    run_record.explained([p for p in model.PROFILES if p in explained])
    if against_model:
        step, field, expected, observed, code = against_model[0]
        raise Divergence(step, f"decode {code.hex()}", field, expected, observed,
                         detail=f"{len(against_model)} of {len(codes)} encodings differ between the kernel's "
                                f"decoder and the model's")
    undecided = {k: v for k, v in classes.items() if k not in KNOWN}
    if undecided:
        raise KernelFailure("the kernel's decoder and the SDM (capstone) disagree in classes not decided yet: "
                             + ", ".join(f"{k} x{v} (e.g. {examples[k]})" for k, v in undecided.items()))
