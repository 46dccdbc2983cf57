"""The decoder differential's encodings and capstone's reading of them.

Every MMIO opcode insn_decode_mmio() knows (88 89 8A 8B C6 C7 A4 A5 0F B6 0F B7 0F BE
0F BF), a few it must refuse (63 MOVSXD, 83 /0, 8C), each with every ModRM byte,
SIB and displacement forms, REX, operand- and address-size, REP and segment prefixes:
`encodings(seed)` yields at least 10,000 of them, deterministic for a seed.
`capstone_view(code, regs)` says what the SDM (as capstone encodes it) makes of one:
its length, the memory operand's size and effective address, and the register operand.
"""
from __future__ import annotations

import random

import capstone
from capstone import x86

# The register file the decoder differential evaluates effective addresses with
# (distinct values, so a wrong base or index shows).
REGS = {name: 0x1000 * (i + 1) + 0x11 * i for i, name in enumerate(
    ("rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi",
     "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15"))}
RIP = 0xFFFFFFFF81000000

SUPPORTED = ("88", "89", "8a", "8b", "c6", "c7", "a4", "a5", "0fb6", "0fb7", "0fbe", "0fbf")
REFUSED = ("63", "83", "8c")
PREFIXES = ("", "66", "67", "f3", "f2", "2e", "3e", "26", "64", "65", "66 67", "f3 66", "65 66")


def _modrm_tail(rng: random.Random, modrm: int) -> bytes:
    mod, rm = modrm >> 6, modrm & 7
    out = b""
    if mod != 3 and rm == 4:
        out += bytes([rng.randrange(256)])                     # SIB
        if mod == 0 and out[0] & 7 == 5:
            out += rng.randbytes(4)                            # SIB base 101: disp32
    if mod == 1:
        out += rng.randbytes(1)
    elif mod == 2 or (mod == 0 and rm == 5):
        out += rng.randbytes(4)                                # disp32 or RIP-relative
    return out


def encodings(seed: int) -> list[bytes]:
    rng = random.Random(seed)
    found: list[bytes] = []
    for opcode in SUPPORTED + REFUSED:
        op = bytes.fromhex(opcode)
        if opcode in ("a4", "a5"):
            for prefix in PREFIXES:
                for rex in (b"", b"\x48", b"\x41"):
                    found.append(bytes.fromhex(prefix.replace(" ", "")) + rex + op)
            continue
        for modrm in list(range(256)) * 3:         # each ModRM byte with three prefix/REX draws
            if opcode in ("c6", "c7", "83") and (modrm >> 3) & 7:
                modrm &= 0xC7                                  # /0 only: the MOV (ADD) forms
            prefix = bytes.fromhex(rng.choice(PREFIXES).replace(" ", ""))
            rex = bytes([0x40 | rng.randrange(16)]) if rng.random() < 0.5 else b""
            imm = b""
            if opcode in ("c6", "83"):
                imm = rng.randbytes(1)
            elif opcode == "c7":
                imm = rng.randbytes(2 if prefix.count(0x66) and not (rex and rex[0] & 8) else 4)
            found.append(prefix + rex + op + bytes([modrm]) + _modrm_tail(rng, modrm) + imm)
    rng.shuffle(found)
    return found


_MD = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
_MD.detail = True

_REG64 = {}
for _name in REGS:
    _REG64[_name] = _name
for _i, _row in enumerate((("eax", "ax", "al"), ("ecx", "cx", "cl"), ("edx", "dx", "dl"), ("ebx", "bx", "bl"),
                           ("esp", "sp", "spl"), ("ebp", "bp", "bpl"), ("esi", "si", "sil"), ("edi", "di", "dil"))):
    for _alias in _row:
        _REG64[_alias] = list(REGS)[_i]
for _n in range(8, 16):
    for _suffix in ("d", "w", "b"):
        _REG64[f"r{_n}{_suffix}"] = f"r{_n}"
HIGH_BYTE = {"ah": "rax", "ch": "rcx", "dh": "rdx", "bh": "rbx"}


def capstone_view(code: bytes, regs: dict[str, int] = REGS, rip: int = RIP) -> dict | None:
    """{len, mem_bytes, ea, reg, high_byte} by capstone, or None when it does not decode."""
    insn = next(_MD.disasm(code, rip, 1), None)
    if insn is None or insn.size != len(code):
        return None
    view = {"len": insn.size, "mnemonic": insn.mnemonic, "mem_bytes": None, "ea": None, "reg": None,
            "high_byte": False}
    for op in insn.operands:
        if op.type == x86.X86_OP_MEM:
            view["mem_bytes"] = op.size
            base = insn.reg_name(op.mem.base) if op.mem.base else None
            index = insn.reg_name(op.mem.index) if op.mem.index else None
            index = None if index in ("riz", "eiz") else index
            ea = op.mem.disp
            if base in ("rip", "eip"):
                ea += rip + insn.size
            elif base:
                ea += regs[_REG64[base]]
            if index:
                ea += regs[_REG64[index]] * op.mem.scale
            view["ea"] = ea & ((1 << (8 * insn.addr_size)) - 1)    # 67: 32-bit addressing
            view["segment"] = insn.reg_name(op.mem.segment) if op.mem.segment else None
        elif op.type == x86.X86_OP_REG:
            name = insn.reg_name(op.reg)
            view["high_byte"] = name in HIGH_BYTE
            view["reg"] = HIGH_BYTE.get(name) or _REG64.get(name, name)
            view["segment_register"] = name in ("es", "cs", "ss", "ds", "fs", "gs")
    return view
