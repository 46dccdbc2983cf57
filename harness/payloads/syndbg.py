"""The syndbg payload's Python side: ELF checks, op-script encoder, trace decoder.

`check_elf` is called by harness/payloads/build.py after the generic checks.
`encode` turns op-scripts (harness/reference/syndbg.py format) into the line
format guests/syndbg/syndbg.c reads; `decode` parses its JSON lines back,
strictly, into one event list per script.
"""
from __future__ import annotations


from elftools.elf.elffile import ELFFile

from harness.errors import HarnessError
from harness.payloads.trace import split_traces
from harness.reference import syndbg as model

VMCALL = bytes.fromhex("0f01c1")
VMMCALL = bytes.fromhex("0f01d9")
# Symbol -> the bytes it must label (guests/syndbg/guest_syndbg.S).
SITES = {
    "syndbg_vmcall_64": VMCALL,
    "syndbg_vmmcall_64": VMMCALL,
    "syndbg_vmcall_32": VMCALL,
    "syndbg_vmmcall_32": VMMCALL,
}
# Symbols the payload needs in its guest code blob.
REQUIRED = ("__start_guest_text", "__stop_guest_text", "g64_vectors", "g32_vectors",
            "g64_rdmsr", "g64_wrmsr", "g64_nop", "g32_rdmsr", "g32_wrmsr", "g32_nop")

MAX_LINE = 16384          # a payload event line is at most 8 KiB (guests/lib/json.h)


def _bytes_at(elf: ELFFile, addr: int, size: int) -> bytes:
    for section in elf.iter_sections():
        start = section["sh_addr"]
        if section["sh_type"] == "SHT_PROGBITS" and start <= addr and addr + size <= start + section["sh_size"]:
            off = addr - start
            return section.data()[off:off + size]
    raise HarnessError(f"payload syndbg: address {addr:#x} is in no PROGBITS section")


def check_elf(elf: ELFFile, symbols: dict[str, int]) -> None:
    """The raw hypercall sites hold exactly VMCALL / VMMCALL, inside guest_text."""
    missing = [s for s in (*SITES, *REQUIRED) if s not in symbols]
    if missing:
        raise HarnessError(f"payload syndbg: missing symbols {', '.join(missing)}")
    start, stop = symbols["__start_guest_text"], symbols["__stop_guest_text"]
    if not start < stop or stop - start > 0x10000:
        raise HarnessError(f"payload syndbg: guest_text [{start:#x}, {stop:#x}) is empty or "
                           "larger than the 64 KiB guests/lib copies")
    for name, want in SITES.items():
        addr = symbols[name]
        if not start <= addr < stop:
            raise HarnessError(f"payload syndbg: {name} at {addr:#x} is outside guest_text")
        got = _bytes_at(elf, addr, len(want))
        if got != want:
            raise HarnessError(f"payload syndbg: {name} at {addr:#x} holds {got.hex()}, "
                               f"expected {want.hex()}")


def check_file(path) -> dict[str, int]:
    """Run check_elf on a built payload file; returns its symbols."""
    with open(path, "rb") as f:
        elf = ELFFile(f)
        symtab = elf.get_section_by_name(".symtab")
        if symtab is None:
            raise HarnessError(f"payload syndbg: {path} has no symbol table")
        symbols = {s.name: s["st_value"] for s in symtab.iter_symbols() if s.name}
        check_elf(elf, symbols)
    return symbols


# ---- encoding -------------------------------------------------------------

_SD = {"absent": 0, "zero": 1, "set": 2}
_INSN = {"vmcall": 0, "vmmcall": 1}
_FD = {"system": 0, "vcpu": 1}


def _num(v) -> str:
    if isinstance(v, bool):
        return "1" if v else "0"
    if not isinstance(v, int) or v < 0 or v > model.U64:
        raise ValueError(f"not a u64: {v!r}")
    return hex(v)


def encode_one(index: int, script: dict) -> str:
    s = model.normalize(script)
    lines = [f"script {index}",
             f"vm vcpus={len(s['vcpus'])} mode={s['mode']} quirk_fix={int(s['quirk_fix'])} "
             f"user_msr={int(s['user_msr'])}"]
    for i, v in enumerate(s["vcpus"]):
        lines.append(f"cpuid {i} hv={int(v['hv'])} sd={_SD[v['sd']]} dm={int(v['dm'])} "
                     f"dbg={int(v['dbg'])} hc={int(v['hc'])} xmm={int(v['xmm'])}")
        if v["enforce"]:
            lines.append(f"enforce {i}")
    for a in s["actions"]:
        kv = []
        for key, val in a.items():
            if key == "op":
                continue
            if key == "insn":
                val = _INSN[val]
            elif key == "fd":
                val = _FD[val]
            elif key == "sd":
                val = _SD[val]
            kv.append(f"{key}={_num(val)}")
        lines.append(f"op {a['op']} " + " ".join(kv))
    lines.append("end")
    return "\n".join(lines) + "\n"


def encode(scripts: list[dict]) -> bytes:
    return "".join(encode_one(i, s) for i, s in enumerate(scripts)).encode()


# ---- decoding -------------------------------------------------------------

def decode(stdout: bytes, count: int) -> list[list[dict]]:
    """One event list per script (without the `script` tag), in script order."""
    return split_traces("syndbg", stdout, count, MAX_LINE)
