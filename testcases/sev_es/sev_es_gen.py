"""Hypothesis strategy of random SEV-ES trigger scripts (the driver's strategy protocol).

A script is a kernel- or user-mode register file, a fixed memory layout (RAM at RAM_VA,
two MMIO pages at MMIO_VA, a RAM page 4 GiB above RAM_VA, where the 6.1 DF=1 string
copies land), hypervisor tables and 1..max_actions triggers. Each trigger kind
(KINDS) is drawn from a static weight table; register values aim at the pages, at
their edges and at unmapped addresses; instructions get random prefixes (66, 67, REX,
F2/F3, segment overrides), ModRM/SIB/displacement forms, and about one trigger in four
a fault-injected reply (a dropped valid bit, a forced register with upper bits, an
exception event with #GP/#UD/#PF vectors and the valid/error-code bits varied,
info1 2 or 3). The reference model, not this generator, predicts every outcome.
"""
from __future__ import annotations

from hypothesis import strategies as st

from harness.payloads.sev_es import normalise
from harness.reference import sev_es as model

RAM_VA, RAM_PA = 0xFFFF888000100000, 0x100000
WRAP_VA, WRAP_PA = RAM_VA + (1 << 32), 0x300000     # element i of a DF=1 copy: +2^32 - i*size
MMIO_VA, MMIO_PA = 0xFFFFC90000000000, 0xFEBF0000
USER_RAM_VA = 0x7F0000000000
UNMAPPED = 0xFFFF888040000000
PAGES = [{"va": RAM_VA, "pa": RAM_PA, "len": 0x2000, "kind": "ram"},
         {"va": WRAP_VA, "pa": WRAP_PA, "len": 0x1000, "kind": "ram"},
         {"va": MMIO_VA, "pa": MMIO_PA, "len": 0x2000, "kind": "mmio"}]
USER_PAGE = {"va": USER_RAM_VA, "pa": 0x200000, "len": 0x1000, "kind": "ram"}

EXIT = model.EXIT
KINDS = ("cpuid", "in", "out", "ins", "outs", "ioio_bad", "rdmsr", "wrmsr", "dr7_read", "dr7_write",
         "wbinvd", "rdtsc", "rdtscp", "rdpmc", "invd", "monitor", "mwait", "vmmcall", "ac", "db",
         "unknown_exit", "mmio_write", "mmio_write_imm", "mmio_read", "mmio_zero_extend",
         "mmio_sign_extend", "mmio_movs", "mmio_unsupported", "early_cpuid", "negotiate",
         "terminate", "decode")
_BY_EXIT = {v: k for k, v in EXIT.items()}
_MMIO_KIND = {"write": "mmio_write", "write_imm": "mmio_write_imm", "read": "mmio_read",
              "read_zero_extend": "mmio_zero_extend", "read_sign_extend": "mmio_sign_extend",
              "movs": "mmio_movs", "decode_failed": "mmio_unsupported"}


def kind(action: dict) -> str:
    """The kind counted in run.json's random.action_kinds."""
    op = action["op"]
    if op != "insn":
        return op
    code, exit_code = bytes.fromhex(action["bytes"]), action["exit"]
    if exit_code == EXIT["ioio"]:
        insn = model.insn_decode(code + b"\x90" * 15)
        op0 = insn.op0 if len(insn.opcode) == 1 else 0
        return {0x6C: "ins", 0x6D: "ins", 0x6E: "outs", 0x6F: "outs", 0xE4: "in", 0xE5: "in",
                0xEC: "in", 0xED: "in", 0xE6: "out", 0xE7: "out", 0xEE: "out", 0xEF: "out"}.get(op0, "ioio_bad")
    if exit_code == EXIT["npf"]:
        return _MMIO_KIND[model.insn_decode_mmio(model.insn_decode(code + b"\x90" * 15))[0]]
    if exit_code == EXIT["msr"]:
        return "wrmsr" if code[-1:] == b"\x30" else "rdmsr"
    name = {"read_dr7": "dr7_read", "write_dr7": "dr7_write"}.get(_BY_EXIT.get(exit_code), _BY_EXIT.get(exit_code))
    return name if name in KINDS else "unknown_exit"


WEIGHTS = (["cpuid"] * 4 + ["in"] * 4 + ["out"] * 3 + ["ins"] * 4 + ["outs"] * 4 + ["ioio_bad"]
           + ["rdmsr"] * 3 + ["wrmsr"] * 2 + ["dr7_read"] + ["dr7_write"] * 2 + ["wbinvd"] + ["rdtsc"]
           + ["rdtscp"] + ["rdpmc"] * 2 + ["invd"] + ["monitor"] + ["mwait"] + ["vmmcall"] * 2 + ["ac"]
           + ["db"] + ["unknown_exit"] + ["mmio_write"] * 5 + ["mmio_write_imm"] * 4 + ["mmio_read"] * 5
           + ["mmio_zero_extend"] * 3 + ["mmio_sign_extend"] * 3 + ["mmio_movs"] * 4
           + ["mmio_unsupported"] * 2 + ["early_cpuid"] * 3 + ["negotiate"] * 2 + ["terminate"]
           + ["decode"] * 6)
PORTS = (0x80, 0x71, 0xE0, 0x3F8, 0xCF8, 0xCFC, 0x1F0, 0xFFFF)
MSRS = (0x1B, 0x10, 0xC0000080, 0x6E0, 0xC0010130, 0x8B)
LEAVES = (0, 1, 7, 0xD, 0x80000000, 0x8000001F, 0x40000000, 0x4, 0xB)
VALUES = (0, 1, 0x5A, 0x7F, 0x80, 0xFF, 0x1234, 0x8001, 0xFFFF, 0x12345678, 0x80000000,
          0xFFFFFFFF, 0x100000000, 0xDEADBEEFCAFEF00D, (1 << 64) - 1, 0xFFFFFFFFFFFF0000)
COUNTS = (0, 1, 2, 3, 5, 16, 508, 1016, 1017, 2032, 2033, 5000, (1 << 32) + 3, 1 << 32)
GPR8 = ("rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi")
REGNO = model.REGNO
EVENTS = (0x8000030D, 0x80000306, 0x8000030E, 0x80000B0D, 0x0000030D, 0x0000000D | (1 << 32),
          0x8000020D, 0x80000311)


def scripts(min_actions: int = 1, max_actions: int = 12):
    """Normalised SEV-ES op-scripts of `min_actions` to `max_actions` triggers."""

    @st.composite
    def build(draw):
        user = draw(st.integers(0, 5)) == 0
        regs = {r: draw(st.sampled_from(VALUES)) for r in model.GPRS if draw(st.integers(0, 2)) == 0}
        regs["rflags"] = 0x402 if draw(st.integers(0, 3)) == 0 else 0x2
        script: dict = {"mode": "user" if user else "kernel", "regs": regs,
                        "cr4_osxsave": draw(st.sampled_from([1, 1, 1, 0])),
                        "xcr0": draw(st.sampled_from([7, 3, 1, 0xE7])),
                        "pages": PAGES + ([USER_PAGE] if user else [])}
        if user:
            # no I/O bitmap, every port, or ioperm(first, count, 1) around a drawn port
            # (vc_ioio_check tests bits port..port+size-1; 0xffff: an access crossing it)
            perm = draw(st.integers(0, 3))
            if perm < 2:
                script["ioperm"] = bool(perm)
            else:
                first = min(max(draw(st.sampled_from(PORTS)) + draw(st.sampled_from([-1, 0, 0, 1])), 0), 0xFFFF)
                count = min(draw(st.sampled_from([1, 2, 3, 4])), 0x10000 - first)
                script["ioperm"] = [first, count]
        if draw(st.integers(0, 5)) == 0:
            script["kvm"] = 0                              # no x86_platform.hyper hcall hooks
        hv: dict = {"cpuid": [], "ports": {}, "msrs": {}, "mmio": [], "pmc": {}}
        for leaf in LEAVES:
            if draw(st.integers(0, 2)):
                sub = draw(st.sampled_from([0, 0, 1]))
                eax = {0x80000000: draw(st.sampled_from([0x8000001F, 0x80000008, 0x80000021])),
                       0x8000001F: draw(st.sampled_from([0xF, 0xD, 0x1, 0x2]))}.get(leaf, draw(st.sampled_from(VALUES)) & 0xFFFFFFFF)
                hv["cpuid"].append([leaf, sub, eax, draw(st.sampled_from(VALUES)) & 0xFFFFFFFF,
                                    draw(st.sampled_from(VALUES)) & 0xFFFFFFFF, leaf & 0xFFFF])
        for port in PORTS:
            if draw(st.booleans()):
                hv["ports"][hex(port)] = draw(st.binary(min_size=1, max_size=24)).hex()
        for msr in MSRS:
            if draw(st.booleans()):
                hv["msrs"][hex(msr)] = draw(st.sampled_from(VALUES))
        hv["mmio"].append({"pa": MMIO_PA, "data": draw(st.binary(min_size=16, max_size=64)).hex()})
        if draw(st.booleans()):
            hv["mmio"].append({"pa": MMIO_PA + 0x1000 - 8, "data": draw(st.binary(min_size=16, max_size=16)).hex()})
        hv["tsc"], hv["tsc_aux"] = draw(st.sampled_from(VALUES)), draw(st.sampled_from(VALUES)) & 0xFFFFFFFF
        if draw(st.booleans()):
            hv["pmc"]["0x0"] = draw(st.sampled_from(VALUES))
        if draw(st.integers(0, 3)) == 0:
            hv["vmmcall_rax"] = draw(st.sampled_from(VALUES))
        if draw(st.integers(0, 4)) == 0:
            hv["sev_info"] = draw(st.sampled_from([[2, 1, 51], [2, 2, 51], [3, 3, 51], [0, 0, 51], [1, 1, 47]]))
        script["hv"] = hv

        def pointer(mmio_ok: bool = True, size: int = 8) -> int:
            """An address in a page, at an edge, or unmapped."""
            where = draw(st.integers(0, 9))
            if user and where < 6:
                return USER_RAM_VA + draw(st.integers(0, 0x1000 - size))
            if where < 4 or not mmio_ok:
                return RAM_VA + draw(st.sampled_from([0, 0x10, 0x800, 0xFF8, 0x1FF8, 0x1FFE]))
            if where < 8:
                return MMIO_VA + draw(st.sampled_from([0, 0x10, 0x7F0, 0xFF8, 0x1000, 0x1FF8]))
            return draw(st.sampled_from([UNMAPPED, RAM_VA + 0x2000, 0x1000, (1 << 47) + 0x1000]))

        def reply(a: dict, nested: bool = False) -> dict:
            """About one trigger in six: a fault-injected reply."""
            if nested or draw(st.integers(0, 3)):
                return a
            what = draw(st.integers(0, 5))
            if what == 0:
                a["reply"] = {"drop": draw(st.lists(st.sampled_from(["rax", "rbx", "rcx", "rdx"]), min_size=1,
                                                    max_size=4, unique=True))}
            elif what == 1:
                reg = draw(st.sampled_from(["rax", "rbx", "rcx", "rdx"]))
                a["reply"] = {"set": {reg: draw(st.sampled_from(VALUES))}}
            elif what in (2, 3):
                a["reply"] = {"info1": 1, "info2": draw(st.sampled_from(EVENTS))}
            else:
                a["reply"] = {"info1": draw(st.sampled_from([2, 3, 0x100000001])),
                              "info2": draw(st.sampled_from([4, 0, 2]))}
            return a

        def prefixes(allowed: str) -> bytes:
            out = b""
            for p in allowed:
                if draw(st.integers(0, 5)) == 0:
                    out += {"o": b"\x66", "a": b"\x67", "r": b"\xf3", "n": b"\xf2", "f": b"\x64",
                            "g": b"\x65", "d": b"\x3e"}[p]
            return out[:3]                                 # the decoder keeps 4 distinct at most

        def rex(always_w: bool = False) -> bytes:
            if always_w or draw(st.integers(0, 3)) == 0:
                return bytes([0x40 | (8 if always_w else draw(st.integers(0, 15)))])
            return b""

        def mmio_operand(a: dict) -> bytes:
            """A ModRM (+SIB, +disp) whose operand is on the MMIO page (mostly)."""
            reg = draw(st.integers(0, 7))
            form = draw(st.integers(0, 9))
            target = pointer(True)
            if form < 5:                                   # [rdi], [rdi+disp8], [rdi+disp32]
                mod = draw(st.sampled_from([0, 1, 2]))
                disp = {0: b"", 1: bytes([draw(st.sampled_from([0, 8, 0x10, 0xF8]))]),
                        2: draw(st.sampled_from([0, 0x100, 0xFFFFFF00])).to_bytes(4, "little")}[mod]
                dv = {0: 0, 1: model._sx(disp[0], 1) if disp else 0,
                      2: model._sx(int.from_bytes(disp, "little"), 4) if disp else 0}[mod]
                a["regs"]["rdi"] = (target - dv) & model.U64
                return bytes([(mod << 6) | (reg << 3) | 7]) + disp
            if form < 7:                                   # [rbx + rcx*scale]
                scale = draw(st.integers(0, 3))
                idx = draw(st.sampled_from([0, 1, 2]))
                a["regs"]["rcx"] = idx
                a["regs"]["rbx"] = (target - (idx << scale)) & model.U64
                return bytes([(0 << 6) | (reg << 3) | 4, (scale << 6) | (1 << 3) | 3])
            if form == 7:                                  # [rbx] via SIB without index, or disp32 only
                if draw(st.booleans()):
                    a["regs"]["rbx"] = target
                    return bytes([(reg << 3) | 4, (4 << 3) | 3])
                return bytes([(reg << 3) | 4, (4 << 3) | 5]) + (target & 0xFFFFFFFF).to_bytes(4, "little")
            if form == 8:                                  # RIP-relative (usually unmapped)
                return bytes([(reg << 3) | 5]) + draw(st.sampled_from([0, 0x1000])).to_bytes(4, "little")
            # register form: the "address" is RSI (now and then all ones: the -1 error value)
            a["regs"]["rsi"] = (1 << 64) - 1 if draw(st.integers(0, 5)) == 0 else target
            return bytes([0xC0 | (reg << 3) | 6])

        actions: list[dict] = []
        n = draw(st.integers(min_actions, max_actions))
        for _ in range(n):
            k = draw(st.sampled_from(WEIGHTS))
            a: dict = {"op": "insn", "regs": {}}
            if k == "cpuid":
                a.update(bytes="0fa2", exit=EXIT["cpuid"])
                a["regs"] = {"rax": draw(st.sampled_from(LEAVES + (0xFFFFFFFF00000001,))),
                             "rcx": draw(st.sampled_from([0, 1, 0x100000000]))}
                reply(a)
            elif k in ("in", "out"):
                op = draw(st.sampled_from([0xE4, 0xE5, 0xEC, 0xED] if k == "in" else [0xE6, 0xE7, 0xEE, 0xEF]))
                code = prefixes("oar") + bytes([op])
                if op in (0xE4, 0xE5, 0xE6, 0xE7):
                    code += bytes([draw(st.sampled_from(PORTS)) & 0xFF])
                a.update(bytes=code.hex(), exit=EXIT["ioio"])
                a["regs"] = {"rdx": draw(st.sampled_from(PORTS + (0x100E0,))), "rax": draw(st.sampled_from(VALUES))}
                reply(a)
            elif k in ("ins", "outs"):
                op = draw(st.sampled_from([0x6C, 0x6D] if k == "ins" else [0x6E, 0x6F]))
                code = prefixes("orfga") + rex() + bytes([op])
                target = pointer(draw(st.integers(0, 3)) == 0, 4)
                a.update(bytes=code.hex(), exit=EXIT["ioio"])
                a["regs"] = {"rdx": draw(st.sampled_from(PORTS)), "rcx": draw(st.sampled_from(COUNTS)),
                             ("rdi" if k == "ins" else "rsi"): target}
                reply(a, nested=target >= MMIO_VA and target < MMIO_VA + 0x2000)
            elif k == "ioio_bad":
                a.update(bytes=draw(st.sampled_from(["90", "0fa2", "8b07"])), exit=EXIT["ioio"])
                if draw(st.integers(0, 2)) == 0:               # no opcode within 15 bytes
                    a.update(bytes="66" * 15, exit=draw(st.sampled_from([EXIT["ioio"], EXIT["cpuid"]])))
            elif k in ("rdmsr", "wrmsr"):
                a.update(bytes="0f32" if k == "rdmsr" else "0f30", exit=EXIT["msr"])
                a["regs"] = {"rcx": draw(st.sampled_from(MSRS + (0x12345,))), "rax": draw(st.sampled_from(VALUES)),
                             "rdx": draw(st.sampled_from(VALUES))}
                reply(a)
            elif k in ("dr7_read", "dr7_write"):
                modrm = draw(st.sampled_from([0xF8, 0xF8, 0xF9, 0xFF, 0x3D, 0xC7]))
                code = rex() + bytes([0x0F, 0x21 if k == "dr7_read" else 0x23, modrm])
                if modrm == 0x3D:
                    code += bytes(4)
                a.update(bytes=code.hex(), exit=EXIT["read_dr7" if k == "dr7_read" else "write_dr7"])
                a["regs"] = {"rax": draw(st.sampled_from(VALUES)), "rcx": draw(st.sampled_from(VALUES))}
                reply(a)
            elif k in ("wbinvd", "rdtsc", "rdtscp", "rdpmc", "invd", "monitor", "mwait", "vmmcall"):
                code = {"wbinvd": "0f09", "rdtsc": "0f31", "rdtscp": "0f01f9", "rdpmc": "0f33", "invd": "0f08",
                        "monitor": draw(st.sampled_from(["0f01c8", "0f01fa"])),
                        "mwait": draw(st.sampled_from(["0f01c9", "0f01fb"])), "vmmcall": "0f01d9"}[k]
                a.update(bytes=code, exit=EXIT[k])
                a["regs"] = {"rax": draw(st.sampled_from(VALUES)), "rcx": draw(st.sampled_from([0, 1, 0x100000000]))}
                reply(a)
            elif k == "ac":
                a.update(bytes="8b07", exit=EXIT["ac"])
            elif k == "db":
                a.update(bytes="90", exit=EXIT["db"])
            elif k == "unknown_exit":
                a.update(bytes=draw(st.sampled_from(["90", "0f01d1", "0fa2"])),
                         exit=draw(st.sampled_from([0x7A, 0x8D, 0x4E, 0x80000003, 0x40])))
            elif k.startswith("mmio"):
                a["exit"] = EXIT["npf"]
                if k == "mmio_movs":
                    rep = b"\xf3" if draw(st.booleans()) else b""
                    code = prefixes("of") + rep + rex() + bytes([draw(st.sampled_from([0xA4, 0xA5]))])
                    src_mmio = draw(st.booleans())
                    a["regs"] = {"rsi": pointer(True) if src_mmio else pointer(False),
                                 "rdi": pointer(False) if src_mmio else pointer(True),
                                 "rcx": draw(st.sampled_from([1, 2, 3, 0, 70]))}
                    a["bytes"] = code.hex()
                else:
                    pre = prefixes("oaf")
                    if k == "mmio_write":
                        op = bytes([draw(st.sampled_from([0x88, 0x89]))])
                    elif k == "mmio_write_imm":
                        op = bytes([draw(st.sampled_from([0xC6, 0xC7]))])
                    elif k == "mmio_read":
                        op = bytes([draw(st.sampled_from([0x8A, 0x8B]))])
                    elif k == "mmio_zero_extend":
                        op = bytes([0x0F, draw(st.sampled_from([0xB6, 0xB7]))])
                    elif k == "mmio_sign_extend":
                        op = bytes([0x0F, draw(st.sampled_from([0xBE, 0xBF]))])
                    else:
                        op = bytes.fromhex(draw(st.sampled_from(["63", "83", "01", "80", "85"])))
                    r = rex(draw(st.integers(0, 4)) == 0)
                    operand = mmio_operand(a)
                    if op[0] in (0xC6, 0xC7, 0x80, 0x83):
                        operand = bytes([operand[0] & 0xC7]) + operand[1:]      # the /0 forms
                    opnd = 8 if r and r[0] & 8 else (2 if b"\x66" in pre else 4)
                    imm = b""
                    if op[0] in (0xC6, 0x80, 0x83):
                        imm = bytes([draw(st.sampled_from([0x5A, 0xFF, 0x80]))])
                    elif op[0] == 0xC7:
                        imm = draw(st.sampled_from([0x12345678, 0xFFFFFFFF, 0x80000000])).to_bytes(
                            4, "little")[:2 if opnd == 2 else 4]
                    a["bytes"] = (pre + r + op + operand + imm).hex()
                    for name in GPR8:
                        if name not in a["regs"] and draw(st.integers(0, 2)) == 0:
                            a["regs"][name] = draw(st.sampled_from(VALUES))
                    reply(a)
            elif k == "early_cpuid":
                a = {"op": "early_cpuid", "leaf": draw(st.sampled_from(LEAVES)),
                     "regs": {"rcx": draw(st.sampled_from([0, 0, 1]))}}
            elif k == "negotiate":
                a = {"op": "negotiate"}
            elif k == "terminate":
                a = {"op": "terminate", "set": draw(st.integers(0, 15)), "reason": draw(st.sampled_from([0, 1, 2, 0xFF]))}
            else:
                a = {"op": "decode", "bytes": decode_bytes(draw)}
            actions.append(a)
        script["actions"] = actions
        # drawn last (the draws above stay those of earlier versions for a seed): FS/GS bases
        # that move an fs:/gs: operand by a page or a few bytes (insn_get_seg_base)
        base = draw(st.integers(0, 11))          # one draw: fs_base, gs_base or neither
        if base < 6:
            script["fs_base" if base < 3 else "gs_base"] = (0x1000, 0x10, (1 << 64) - 0x1000)[base % 3]
        return normalise(script)

    return build()


DECODE_OPCODES = ("88", "89", "8a", "8b", "c6", "c7", "a4", "a5", "0fb6", "0fb7", "0fbe", "0fbf",
                  "63", "83", "01", "85", "90", "0fa2", "e4", "6c")


def decode_bytes(draw) -> str:
    """An encoding for the decoder differential: prefixes, REX, an MMIO (or other) opcode,
    a random ModRM with its SIB/displacement, the immediate; now and then truncated."""
    drawn = draw(st.lists(st.sampled_from([0x66, 0x67, 0xF3, 0xF2, 0x2E, 0x3E, 0x26, 0x64, 0x65, 0xF0]),
                          max_size=5))
    # up to 4 distinct (a fifth would be the opcode) and a repeat: insn_get_prefixes()'s swap
    pre = bytes(p for i, p in enumerate(drawn) if len(set(drawn[:i + 1])) <= 4)
    r = bytes([0x40 | draw(st.integers(0, 15))]) if draw(st.booleans()) else b""
    op = bytes.fromhex(draw(st.sampled_from(DECODE_OPCODES)))
    code = pre + r + op
    insn = model.insn_decode(code + b"\x00" * 15)      # which fields follow
    if insn.has_modrm:
        modrm = draw(st.integers(0, 255))
        if op[0] in (0xC6, 0xC7):
            modrm &= 0xC7
        code += bytes([modrm])
        mod, rm = modrm >> 6, modrm & 7
        if mod != 3 and rm == 4:                       # insn_get_sib(): addr_bytes is never 2
            code += bytes([draw(st.integers(0, 255))])
        full = model.insn_decode(code + bytes(15))
        rest = max(full.length - len(code), 0)        # 0: too long for MAX_INSN_SIZE (refused)
        code += draw(st.binary(min_size=rest, max_size=rest))
    else:
        full = model.insn_decode(code + bytes(15))
        rest = max(full.length - len(code), 0)
        code += draw(st.binary(min_size=rest, max_size=rest))
    if draw(st.integers(0, 9)) == 0 and len(code) > 1:
        code = code[:draw(st.integers(1, len(code) - 1))]
    return code[:model.MAX_INSN_SIZE].hex()
