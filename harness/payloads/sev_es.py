"""The SEV-ES payload's codec (guests/sev_es/vcsim; docs/sev-es-suite.md is the contract):
normalising op-scripts, encoding them as vcsim's stdin lines, decoding its JSON trace,
locating an event's action, ELF checks.

An op-script (docs/sev-es-suite.md "Op-script")::

    {"mode": "kernel" | "user", "cr4_osxsave": 1, "xcr0": 7,
     "fs_base": 0, "gs_base": 0, "ioperm": False | [first, count], "kvm": 1,
     "regs": {"rax": 0, ..., "rflags": 0x2}, "rip": 0xffffffff81000000,
     "pages": [{"va", "pa", "len", "kind": "ram" | "mmio", "data": "hex"}],
     "hv": {"cpuid": [[leaf, sub, eax, ebx, ecx, edx]], "ports": {"0x71": "hex"},
            "msrs": {"0x1b": value}, "mmio": [{"pa", "data"}], "tsc", "tsc_aux",
            "pmc": {"0": value}, "vmmcall_rax", "sev_info": [max, min, cbit]},
     "actions": [{"op": "insn", "bytes": "e671", "exit": 0x7b, "regs": {...},
                  "reply": {"info1", "info2", "drop": ["rbx"], "set": {"rax": 5}}},
                 {"op": "early_cpuid", "leaf": 0x8000001f, "exit": 0x72, "regs": {}, "resp": None},
                 {"op": "negotiate", "resp": None}, {"op": "terminate", "set": 0, "reason": 1},
                 {"op": "decode", "bytes": "8b07"}]}

`normalise` fills every default (the payload has none of its own) and refuses what the
model cannot predict: an instruction its decoder does not cover or whose decoded length
is not its byte count, fault injection on a MOVS (the nested #VC's failure), pages that
overlap each other or the GHCB.
"""
from __future__ import annotations

from typing import Iterable

from harness.payloads.trace import split_traces
from harness.reference import sev_es as model

GPRS = model.GPRS
REG_KEYS = GPRS + ("rflags",)
REPLY_REGS = ("rax", "rbx", "rcx", "rdx")
MODES = {"kernel": "k", "user": "u"}
KERNEL_RIP = 0xFFFFFFFF81000000
USER_RIP = 0x401000
PAGE = model.PAGE
MAX_PAGE_LEN = 1 << 20
IO_BITMAP_BITS = 0x10000
ACTION_OPS = ("insn", "early_cpuid", "negotiate", "terminate", "decode")
# vcsim's tables (guests/sev_es/vcsim/shim/vcsim_api.h, vcsim.c)
LIMITS = {"pages": 16, "actions": 256, "cpuid": 64, "ports": 32, "msrs": 64, "mmio": 16, "pmc": 16,
          "port_bytes": 65536, "mmio_bytes": 4096}


def _u64(value, what: str, limit: int = 1 << 64) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < limit:
        raise ValueError(f"sev_es op-script: {what} = {value!r} is not an integer in [0, {limit:#x})")
    return value


def _hex(value, what: str, max_len: int | None = None) -> str:
    if not isinstance(value, str):
        raise ValueError(f"sev_es op-script: {what} must be a hex string")
    try:
        data = bytes.fromhex(value)
    except ValueError:
        raise ValueError(f"sev_es op-script: {what} = {value!r} is not hex") from None
    if max_len is not None and len(data) > max_len:
        raise ValueError(f"sev_es op-script: {what} is {len(data)} bytes, at most {max_len}")
    return data.hex()


def _regs(regs, what: str, full: bool) -> dict:
    if not isinstance(regs, dict):
        raise ValueError(f"sev_es op-script: {what} must be an object")
    # an action sets GPRs only (vcsim's A lines carry no rflags: DF is the script's)
    unknown = set(regs) - set(REG_KEYS if full else GPRS)
    if unknown:
        raise ValueError(f"sev_es op-script: {what} has unknown registers {sorted(unknown)}")
    out = {k: _u64(regs[k], f"{what}.{k}") for k in REG_KEYS if k in regs}
    if full:
        out = {k: out.get(k, 0x2 if k == "rflags" else 0) for k in REG_KEYS}
    return out


def _keyed(table, what: str, value_kind: str) -> dict:
    if not isinstance(table, dict):
        raise ValueError(f"sev_es op-script: hv.{what} must be an object")
    out = {}
    for k, v in table.items():
        key = int(k, 0) if isinstance(k, str) else k
        key = _u64(key, f"hv.{what} key", 1 << 32)
        out[hex(key)] = _hex(v, f"hv.{what}[{k}]") if value_kind == "hex" else _u64(v, f"hv.{what}[{k}]")
    return dict(sorted(out.items(), key=lambda kv: int(kv[0], 16)))


def normalise_hv(hv: dict) -> dict:
    unknown = set(hv) - {"cpuid", "ports", "msrs", "mmio", "tsc", "tsc_aux", "pmc", "vmmcall_rax", "sev_info"}
    if unknown:
        raise ValueError(f"sev_es op-script: hv has unknown keys {sorted(unknown)}")
    cpuid = []
    for e in hv.get("cpuid", []):
        if not isinstance(e, (list, tuple)) or len(e) != 6:
            raise ValueError(f"sev_es op-script: hv.cpuid entry {e!r} is not [leaf, sub, eax, ebx, ecx, edx]")
        cpuid.append([_u64(x, "hv.cpuid value", 1 << 32) for x in e])
    mmio = []
    for m in hv.get("mmio", []):
        if not isinstance(m, dict) or set(m) != {"pa", "data"}:
            raise ValueError(f"sev_es op-script: hv.mmio entry {m!r} is not {{pa, data}}")
        mmio.append({"pa": _u64(m["pa"], "hv.mmio.pa", 1 << 52), "data": _hex(m["data"], "hv.mmio.data", 1 << 16)})
    info = hv.get("sev_info", [1, 1, 51])
    if not isinstance(info, (list, tuple)) or len(info) != 3:
        raise ValueError("sev_es op-script: hv.sev_info must be [max, min, cbit]")
    ports = _keyed(hv.get("ports", {}), "ports", "hex")
    for what, n, limit in (("cpuid", len(cpuid), LIMITS["cpuid"]), ("ports", len(ports), LIMITS["ports"]),
                           ("msrs", len(hv.get("msrs", {})), LIMITS["msrs"]), ("mmio", len(mmio), LIMITS["mmio"]),
                           ("pmc", len(hv.get("pmc", {})), LIMITS["pmc"])):
        if n > limit:
            raise ValueError(f"sev_es op-script: hv.{what} has {n} entries, vcsim takes {limit}")
    if any(len(v) > 2 * LIMITS["port_bytes"] for v in ports.values()) or any(
            len(m["data"]) > 2 * LIMITS["mmio_bytes"] for m in mmio):
        raise ValueError("sev_es op-script: port data is limited to 64 KiB, mmio data to 4 KiB per entry")
    return {"cpuid": cpuid, "ports": ports,
            "msrs": _keyed(hv.get("msrs", {}), "msrs", "u64"), "mmio": mmio,
            "tsc": _u64(hv.get("tsc", 0), "hv.tsc"), "tsc_aux": _u64(hv.get("tsc_aux", 0), "hv.tsc_aux", 1 << 32),
            "pmc": _keyed(hv.get("pmc", {}), "pmc", "u64"),
            "vmmcall_rax": None if hv.get("vmmcall_rax") is None else _u64(hv["vmmcall_rax"], "hv.vmmcall_rax"),
            "sev_info": [_u64(info[0], "sev_info max", 1 << 16), _u64(info[1], "sev_info min", 1 << 16),
                         _u64(info[2], "sev_info cbit", 1 << 8)]}


def normalise_reply(reply) -> dict:
    if not isinstance(reply, dict) or set(reply) - {"info1", "info2", "drop", "set"}:
        raise ValueError(f"sev_es op-script: reply {reply!r} has keys other than info1 info2 drop set")
    out = {"info1": None if reply.get("info1") is None else _u64(reply["info1"], "reply.info1"),
           "info2": None if reply.get("info2") is None else _u64(reply["info2"], "reply.info2"),
           "drop": [], "set": {}}
    drop = reply.get("drop", [])
    if not isinstance(drop, list) or any(r not in REPLY_REGS for r in drop):
        raise ValueError(f"sev_es op-script: reply.drop must list registers of {REPLY_REGS}")
    out["drop"] = [r for r in REPLY_REGS if r in drop]
    forced = reply.get("set", {})
    if not isinstance(forced, dict) or any(r not in REPLY_REGS for r in forced):
        raise ValueError(f"sev_es op-script: reply.set may force only {REPLY_REGS}")
    out["set"] = {r: _u64(forced[r], f"reply.set.{r}") for r in REPLY_REGS if r in forced}
    return out


def check_trigger(code: bytes, exit_code: int) -> model.Insn | None:
    """The model's decode of a trigger as vcsim places it (0x90 after the bytes, 15 in all;
    None when the #VC needs no decode); refuses bytes the model cannot predict."""
    if model.SVM_EXIT_EXCP_BASE <= exit_code <= model.SVM_EXIT_LAST_EXCP:
        return None
    fetched = code + b"\x90" * (model.MAX_INSN_SIZE - len(code))
    insn = model.insn_decode(fetched, model.MAX_INSN_SIZE)    # ModelError (a ValueError) if not covered
    if insn.ok and insn.length != len(code):
        raise ValueError(f"sev_es op-script: insn {code.hex()} decodes as {insn.length} bytes "
                         "(vcsim pads with 0x90): give exactly one instruction")
    return insn


def normalise_action(a: dict) -> dict:
    op = a.get("op") if isinstance(a, dict) else None
    if op not in ACTION_OPS:
        raise ValueError(f"sev_es op-script: unknown action {op!r} (one of {', '.join(ACTION_OPS)})")
    keys = {"insn": {"bytes", "exit", "regs", "reply"}, "early_cpuid": {"leaf", "exit", "regs", "resp"},
            "negotiate": {"resp"}, "terminate": {"set", "reason"}, "decode": {"bytes"}}[op]
    unknown = set(a) - keys - {"op"}
    if unknown:
        raise ValueError(f"sev_es op-script: action {op} has unknown keys {sorted(unknown)}")
    if op == "insn":
        code = _hex(a.get("bytes", ""), "insn.bytes", model.MAX_INSN_SIZE)
        if not code:
            raise ValueError("sev_es op-script: insn needs bytes")
        exit_code = _u64(a.get("exit"), "insn.exit")
        insn = check_trigger(bytes.fromhex(code), exit_code)
        reply = normalise_reply(a.get("reply", {}))
        if (insn is not None and insn.ok and insn.op0 in (0xA4, 0xA5) and exit_code == model.EXIT["npf"]
                and (reply["drop"] or reply["set"] or reply["info1"] is not None or reply["info2"] is not None)):
            raise ValueError("sev_es op-script: no fault injection on MOVS (its nested #VC's failure "
                             "is not modelled)")
        return {"op": op, "bytes": code, "exit": exit_code, "regs": _regs(a.get("regs", {}), "insn.regs", False),
                "reply": reply}
    if op == "early_cpuid":
        resp = a.get("resp")
        return {"op": op, "leaf": _u64(a.get("leaf"), "early_cpuid.leaf", 1 << 32),
                "exit": _u64(a.get("exit", model.EXIT["cpuid"]), "early_cpuid.exit"),
                "regs": _regs(a.get("regs", {}), "early_cpuid.regs", False),
                "resp": None if resp is None else _u64(resp, "early_cpuid.resp", 1 << 12)}
    if op == "negotiate":
        resp = a.get("resp")
        return {"op": op, "resp": None if resp is None else _u64(resp, "negotiate.resp", 1 << 12)}
    if op == "terminate":
        return {"op": op, "set": _u64(a.get("set", 0), "terminate.set", 16),
                "reason": _u64(a.get("reason", 0), "terminate.reason", 256)}
    code = _hex(a.get("bytes", ""), "decode.bytes", model.MAX_INSN_SIZE)
    if not code:
        raise ValueError("sev_es op-script: decode needs bytes")
    model.insn_decode(bytes.fromhex(code), len(code) // 2)      # ModelError if not covered
    return {"op": op, "bytes": code}


SCRIPT_KEYS = {"mode", "cr4_osxsave", "xcr0", "fs_base", "gs_base", "ioperm", "kvm", "regs", "rip", "pages",
               "hv", "actions"}


def _ioperm(perm) -> bool | list[int]:
    """False (no I/O bitmap), or [first, count]: the task called ioperm(first, count, 1)
    (true: [0, 0x10000], every port); ksys_ioperm()'s -EINVAL cases are refused."""
    if perm is False:
        return False
    if perm is True:
        return [0, IO_BITMAP_BITS]
    if (not isinstance(perm, (list, tuple)) or len(perm) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in perm)):
        raise ValueError("sev_es op-script: ioperm must be false, true or [first, count]")
    first, count = perm
    if first < 0 or count <= 0 or first + count > IO_BITMAP_BITS:
        raise ValueError(f"sev_es op-script: ioperm [{first}, {count}]: ioperm() refuses it "
                         f"(0 < count, first + count <= {IO_BITMAP_BITS:#x})")
    return [first, count]


def normalise(script: dict) -> dict:
    unknown = set(script) - SCRIPT_KEYS
    if unknown:
        raise ValueError(f"sev_es op-script: unknown keys {sorted(unknown)}")
    mode = script.get("mode", "kernel")
    if mode not in MODES:
        raise ValueError("sev_es op-script: mode must be kernel or user")
    out = {"mode": mode, "cr4_osxsave": _u64(script.get("cr4_osxsave", 1), "cr4_osxsave", 2),
           "xcr0": _u64(script.get("xcr0", 7), "xcr0"),
           "fs_base": _u64(script.get("fs_base", 0), "fs_base"), "gs_base": _u64(script.get("gs_base", 0), "gs_base")}
    out["ioperm"] = _ioperm(script.get("ioperm", False))
    kvm = script.get("kvm", 1)
    if kvm not in (0, 1) or isinstance(kvm, float):
        raise ValueError("sev_es op-script: kvm must be 0 or 1")
    out["kvm"] = int(kvm)
    out["regs"] = _regs(script.get("regs", {}), "regs", True)
    rip = _u64(script.get("rip", USER_RIP if mode == "user" else KERNEL_RIP), "rip")
    if mode == "user" and rip >= model.TASK_SIZE_MAX:
        raise ValueError("sev_es op-script: a user-mode rip must be below TASK_SIZE_MAX")
    out["rip"] = rip
    pages = []
    for p in script.get("pages", []):
        if not isinstance(p, dict) or set(p) - {"va", "pa", "len", "kind", "data"}:
            raise ValueError(f"sev_es op-script: page {p!r} has keys other than va pa len kind data")
        va, pa = _u64(p.get("va"), "page.va"), _u64(p.get("pa"), "page.pa", 1 << 52)
        length = _u64(p.get("len", PAGE), "page.len", MAX_PAGE_LEN + 1)
        kind = p.get("kind", "ram")
        if kind not in ("ram", "mmio"):
            raise ValueError("sev_es op-script: page kind must be ram or mmio")
        if va % PAGE or pa % PAGE or not length or length % PAGE or va + length > 1 << 64:
            raise ValueError(f"sev_es op-script: page va {va:#x} pa {pa:#x} len {length:#x} is not page aligned")
        data = _hex(p.get("data", ""), "page.data", length)
        if kind == "mmio" and data:
            raise ValueError("sev_es op-script: an mmio page has no data (device memory is hv.mmio)")
        if pa <= model.GHCB_PA < pa + length:
            raise ValueError(f"sev_es op-script: page pa {pa:#x} covers the GHCB ({model.GHCB_PA:#x})")
        for q in pages:
            if va < q["va"] + q["len"] and q["va"] < va + length:
                raise ValueError(f"sev_es op-script: pages at {va:#x} and {q['va']:#x} overlap")
        pages.append({"va": va, "pa": pa, "len": length, "kind": kind, "data": data})
    out["pages"] = pages
    out["hv"] = normalise_hv(script.get("hv", {}))
    actions = script.get("actions", [])
    if not isinstance(actions, list):
        raise ValueError("sev_es op-script: actions must be a list")
    if len(actions) > LIMITS["actions"] or len(pages) > LIMITS["pages"]:
        raise ValueError(f"sev_es op-script: at most {LIMITS['actions']} actions and {LIMITS['pages']} pages")
    out["actions"] = [normalise_action(a) for a in actions]
    return out


# ---------------------------------------------------------------- encoding
def _n(v: int) -> str:
    return f"{v:#x}"


def encode_action(a: dict) -> str:
    op = a["op"]
    parts = [f"A op={op}"]
    if op == "insn":
        parts += [f"bytes={a['bytes']}", f"exit={_n(a['exit'])}"]
        parts += [f"{k}={_n(v)}" for k, v in a["regs"].items()]
        rep = a["reply"]
        parts += [f"{k}={_n(rep[k])}" for k in ("info1", "info2") if rep[k] is not None]
        if rep["drop"]:
            parts.append("drop=" + "+".join(rep["drop"]))
        parts += [f"set_{k}={_n(v)}" for k, v in rep["set"].items()]
    elif op == "early_cpuid":
        parts.append(f"leaf={_n(a['leaf'])}")
        if a["exit"] != model.EXIT["cpuid"]:
            parts.append(f"exit={_n(a['exit'])}")
        parts += [f"{k}={_n(v)}" for k, v in a["regs"].items()]
        if a["resp"] is not None:
            parts.append(f"resp={_n(a['resp'])}")
    elif op == "negotiate":
        if a["resp"] is not None:
            parts.append(f"resp={_n(a['resp'])}")
    elif op == "terminate":
        parts += [f"set={_n(a['set'])}", f"reason={_n(a['reason'])}"]
    else:
        parts.append(f"bytes={a['bytes']}")
    return " ".join(parts)


def encode(scripts: Iterable[dict], first: int = 0) -> bytes:
    """vcsim's stdin for normalised scripts, numbered from `first`."""
    lines = []
    for index, s in enumerate(scripts, first):
        head = [f"S {_n(index)}", f"mode={MODES[s['mode']]}", f"osxsave={_n(s['cr4_osxsave'])}",
                f"xcr0={_n(s['xcr0'])}", f"rip={_n(s['rip'])}"]
        head += [f"{k}={_n(s['regs'][k])}" for k in REG_KEYS]
        head += [f"{k}={_n(s[k])}" for k in ("fs_base", "gs_base") if s[k]]
        if s["ioperm"]:
            head.append("ioperm={},{}".format(*map(_n, s["ioperm"])))
        if not s["kvm"]:
            head.append("kvm=0x0")
        lines.append(" ".join(head))
        for p in s["pages"]:
            line = f"P va={_n(p['va'])} pa={_n(p['pa'])} len={_n(p['len'])} kind={p['kind']}"
            lines.append(line + (f" data={p['data']}" if p["data"] else ""))
        hv = s["hv"]
        lines += ["H cpuid=" + ",".join(_n(x) for x in e) for e in hv["cpuid"]]
        lines += [f"H port={k},{v}" for k, v in hv["ports"].items()]
        lines += [f"H msr={k},{_n(v)}" for k, v in hv["msrs"].items()]
        lines += [f"H mmio={_n(m['pa'])},{m['data']}" for m in hv["mmio"]]
        lines += [f"H tsc={_n(hv['tsc'])}", f"H tsc_aux={_n(hv['tsc_aux'])}"]
        lines += [f"H pmc={k},{_n(v)}" for k, v in hv["pmc"].items()]
        if hv["vmmcall_rax"] is not None:
            lines.append(f"H vmmcall_rax={_n(hv['vmmcall_rax'])}")
        lines.append("H sev_info=" + ",".join(_n(x) for x in hv["sev_info"]))
        lines += [encode_action(a) for a in s["actions"]]
        lines.append("E")
    return ("\n".join(lines) + "\n").encode()


MAX_LINE = 1 << 16


def decode(stdout: bytes, count: int, first: int = 0) -> list[list[dict]]:
    """vcsim's JSON lines per script, the "script" tag and the "done" marker removed."""
    return split_traces("sev_es", stdout, count, MAX_LINE, first)


def describe(action: dict) -> str:
    """One line for a divergence message: `insn e671 exit=0x7b rax=0x5a`."""
    return encode_action(action)[len("A op="):]


def locate(script: dict, index: int, event: dict) -> tuple[int, str]:
    """(step, action text) of event `index`: every event names its action's step."""
    step = event.get("step") if isinstance(event, dict) else None
    if isinstance(step, int) and 0 <= step < len(script["actions"]):
        return step, describe(script["actions"][step])
    return index, str(event.get("op", "?") if isinstance(event, dict) else "?")


# ---------------------------------------------------------------- ELF checks
REQUIRED_SYMBOLS = ("main",)
# vcsim must route VMGEXIT and the GHCB MSR through the shim: a real vmmcall / rdmsr /
# wrmsr in .text would run on the host. sev-shared.c's snp_cpuid_postprocess() has a
# literal asm("rdmsr") (MSR_IA32_XSS, SNP CPUID table only, never taken in vcsim):
# allowed inside the functions named here.
RDMSR_ALLOWED_IN = ("snp_cpuid_postprocess",)
FORBIDDEN = {"vmmcall": b"\x0f\x01\xd9", "rdmsr": b"\x0f\x32", "wrmsr": b"\x0f\x30"}


def _functions(elf) -> list[tuple[int, int, str]]:
    tab = elf.get_section_by_name(".symtab")
    if tab is None:
        return []
    return sorted((s["st_value"], s["st_value"] + s["st_size"], s.name) for s in tab.iter_symbols()
                  if s["st_info"]["type"] == "STT_FUNC" and s["st_size"])


def forbidden_instructions(text: bytes, addr: int, functions: list[tuple[int, int, str]]) -> list[str]:
    """vmmcall/rdmsr/wrmsr instructions in `text` (loaded at `addr`), as problems."""
    if not any(pattern in text for pattern in FORBIDDEN.values()):
        return []
    import capstone

    md = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
    md.skipdata = True
    problems = []

    def owner(a: int) -> str:
        return next((name for lo, hi, name in functions if lo <= a < hi), "?")
    ranges = [(lo, hi) for lo, hi, _ in functions] or [(addr, addr + len(text))]
    for lo, hi in ranges:
        lo, hi = max(lo, addr), min(hi, addr + len(text))
        if lo >= hi or not any(p in text[lo - addr:hi - addr] for p in FORBIDDEN.values()):
            continue
        for ins in md.disasm_lite(text[lo - addr:hi - addr], lo):
            mnemonic = ins[2]
            if mnemonic in FORBIDDEN:
                where = owner(ins[0])
                if mnemonic == "rdmsr" and any(name in where for name in RDMSR_ALLOWED_IN):
                    continue
                problems.append(f"{mnemonic} at {ins[0]:#x} in {where}: VMGEXIT and the GHCB MSR "
                                "must be the shim's")
    return problems


def elf_checks(elf, symbols: dict[str, int]) -> list[str]:
    """Problems with a built vcsim (empty when fine)."""
    problems = [f"symbol {name} missing (not vcsim?)" for name in REQUIRED_SYMBOLS if name not in symbols]
    text = elf.get_section_by_name(".text")
    if text is not None:
        problems += forbidden_instructions(text.data(), text["sh_addr"], _functions(elf))
    return problems
