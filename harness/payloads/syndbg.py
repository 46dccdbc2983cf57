"""The syndbg payload's codec (the driver protocol of harness/driver.py).

`elf_checks` is called by harness/payloads/build.py after the generic checks.
`encode` turns op-scripts (harness/reference/syndbg.py format) into the line
format guests/syndbg/syndbg.c reads; `decode` parses its JSON lines back,
strictly, into one event list per script; `env` takes from the payload's probe
the machine facts the model needs; `locate` names the op-script step of an event.
"""
from __future__ import annotations


from elftools.elf.elffile import ELFFile

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
            "g64_rdmsr", "g64_wrmsr", "g64_nop", "g32_rdmsr", "g32_wrmsr", "g32_nop",
            "g16_vectors", "g16_ivt")
# Real mode reaches guest_text through CS (base GPA_CODE, 64 KiB limit): these must lie in it.
IN_TEXT = ("g16_vectors", "g16_ivt")

MAX_LINE = 16384          # a payload event line is at most 8 KiB (guests/lib/json.h)


def _bytes_at(elf: ELFFile, addr: int, size: int) -> bytes | None:
    for section in elf.iter_sections():
        start = section["sh_addr"]
        if section["sh_type"] == "SHT_PROGBITS" and start <= addr and addr + size <= start + section["sh_size"]:
            off = addr - start
            return section.data()[off:off + size]
    return None


def elf_checks(elf: ELFFile, symbols: dict[str, int]) -> list[str]:
    """Problems with a built syndbg payload (empty when fine): the raw hypercall
    sites hold exactly VMCALL / VMMCALL, inside guest_text."""
    missing = [s for s in (*SITES, *REQUIRED) if s not in symbols]
    if missing:
        return [f"missing symbols {', '.join(missing)}"]
    start, stop = symbols["__start_guest_text"], symbols["__stop_guest_text"]
    if not start < stop or stop - start > 0x10000:
        return [f"guest_text [{start:#x}, {stop:#x}) is empty or larger than the 64 KiB guests/lib copies"]
    problems = [f"{name} at {symbols[name]:#x} is outside guest_text" for name in IN_TEXT
                if not start <= symbols[name] < stop]
    for name, want in SITES.items():
        addr = symbols[name]
        if not start <= addr < stop:
            problems.append(f"{name} at {addr:#x} is outside guest_text")
            continue
        got = _bytes_at(elf, addr, len(want))
        if got is None:
            problems.append(f"{name} at {addr:#x} is in no PROGBITS section")
        elif got != want:
            problems.append(f"{name} at {addr:#x} holds {got.hex()}, expected {want.hex()}")
    return problems


# ---- encoding -------------------------------------------------------------

_SD = {"absent": 0, "zero": 1, "set": 2}     # 3: the entry with EAX = sd_eax
_INSN = {"vmcall": 0, "vmmcall": 1}
_FD = {"system": 0, "vcpu": 1}
_CPU_MODE = {"real": 1, "compat": 2}
# CPUID bits the payload keeps unless a key clears them (printed only when False)
_CLEARABLE = ("time_ref", "reset", "ref_tsc", "reenlight", "crash", "post_msg", "tlb_flush")


def _num(v) -> str:
    if isinstance(v, bool):
        return "1" if v else "0"
    if not isinstance(v, int) or v < 0 or v > model.U64:
        raise ValueError(f"not a u64: {v!r}")
    return hex(v)


normalise = model.normalise


def env(probe: dict) -> dict:
    """The CPU vendor, whether cpu_smt_possible() (CPUID 0x40000004
    NO_NONARCH_CORESHARING follows the SMT control), and whether KVM has its master
    clock for the Hyper-V TSC page (the guest kernel's clocksource is tsc; a probe
    that does not say is taken to, as x86-64 kernels default to it)."""
    return {"vendor": probe["vendor"], "smt": probe.get("smt_control") in ("on", "off"),
            "master_clock": probe.get("clocksource", "tsc") == "tsc"}


def _sd(val, num=str) -> list[str]:
    """The sd key(s) of a cpuid line (decimal) or a set_cpuid op (`num`: hex)."""
    if isinstance(val, str):
        return [f"sd={num(_SD[val])}"]
    return [f"sd={num(3)}", f"sd_eax={_num(val)}"]


def locate(script: dict, index: int, event: dict) -> tuple[int, str]:
    """(op-script step, action text) of event `index`; event 0 is the VM setup."""
    step = event.get("step")
    if isinstance(step, int) and 0 <= step < len(script["actions"]):
        return step, model.describe(script["actions"][step])
    return index, str(event.get("op", "?"))


def encode_one(index: int, script: dict) -> str:
    s = model.normalise(script)
    lines = [f"script {index}",
             f"vm vcpus={len(s['vcpus'])} mode={s['mode']} quirk_fix={int(s['quirk_fix'])} "
             f"user_msr={int(s['user_msr'])}"]
    for i, v in enumerate(s["vcpus"]):
        cleared = "".join(f" {k}=0" for k in _CLEARABLE if not v[k])
        lines.append(f"cpuid {i} hv={int(v['hv'])} {' '.join(_sd(v['sd']))} dm={int(v['dm'])} "
                     f"dbg={int(v['dbg'])} hc={int(v['hc'])} xmm={int(v['xmm'])}{cleared}")
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
                kv += _sd(val, _num)
                continue
            elif key == "cpu_mode":
                if val is None:
                    continue
                val = _CPU_MODE[val]
            kv.append(f"{key}={_num(val)}")
        lines.append(f"op {a['op']} " + " ".join(kv))
    lines.append("end")
    return "\n".join(lines) + "\n"


def encode(scripts: list[dict], first: int = 0) -> bytes:
    return "".join(encode_one(first + i, s) for i, s in enumerate(scripts)).encode()


# ---- decoding -------------------------------------------------------------

def decode(stdout: bytes, count: int, first: int = 0) -> list[list[dict]]:
    """One event list per script (without the `script` tag), in script order."""
    return split_traces("syndbg", stdout, count, MAX_LINE, first)
