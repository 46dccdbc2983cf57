"""The pebs_pt PMU MSR program's codec (guests/pebs_pt/pmusim; docs/pebs-pt-suite.md
section 2 is the contract): normalising op-scripts, encoding them as pmusim's stdin
lines, decoding its JSON trace, locating an event's action, ELF checks.

An op-script::

    {"cpu": {"vendor": "intel" | "amd", "pdcm": True, "pt": False,
             "pmu_version": 2, "gp_counters": 4, "fixed_counters": 3,
             "host_perf_caps": 0x164c5, "host_pebs": True, "host_pt": True,
             "host_pebs_output_pt": True},
     "actions": [{"op": "guest_rdmsr", "msr": 0x345},
                 {"op": "guest_wrmsr", "msr": 0x3f1, "value": 1 << 61},
                 {"op": "host_get", "msr": 0x345},
                 {"op": "host_set", "msr": 0x345, "value": 0x2000},
                 {"op": "feature_get", "msr": 0x345}]}

`normalise` fills every default (the program has none of its own) and refuses, with a
one-line ValueError naming the field, what the model does not cover: an MSR outside
`harness.reference.pebs_pt.MSRS`, a value on a read, a missing value on a write, CPUID
fields beyond their leaf's bit widths.

Besides section 2's cpu keys a script may give `ds`, `dtes64` (guest CPUID.1 DS/DTES64,
default true), `pt_mode` (kvm_intel.pt_mode, default 0: PT_MODE_SYSTEM, the module's
default; 1: host-guest, kept only with host_pt), `host_gp`, `host_fixed` (the host
perf's counters, default 8 and 3): pmusim reads them as extra S keys.

Lines (stdin): `S <index> vendor=intel pdcm=0x1 pt=0x0 pmu_version=0x2 gp=0x4 fixed=0x3
host_perf_caps=0x164c5 host_pebs=0x1 host_pt=0x1 host_pebs_output_pt=0x1 ds=0x1
dtes64=0x1 pt_mode=0x0 host_gp=0x8 host_fixed=0x3`, then
`A op=<op> msr=<hex> [value=<hex>]` per action, then `E`. Numbers are hex with 0x.
"""
from __future__ import annotations

from typing import Iterable

from harness.payloads.trace import split_traces
from harness.reference import pebs_pt as model

ACTION_OPS = ("guest_rdmsr", "guest_wrmsr", "host_get", "host_set", "feature_get")
WRITES = ("guest_wrmsr", "host_set")
VENDORS = ("intel", "amd")
BOOLS = ("pdcm", "pt", "host_pebs", "host_pt", "host_pebs_output_pt", "ds", "dtes64")
# field -> (default, limit): guest CPUID.0xA EAX[7:0] version, EAX[15:8] GP counters,
# EDX[4:0] fixed counters; the host's IA32_PERF_CAPABILITIES is a 64-bit MSR
INTS = {"pmu_version": (2, 1 << 8), "gp_counters": (4, 1 << 8), "fixed_counters": (3, 1 << 5),
        "host_perf_caps": (0x164C5, 1 << 64), "pt_mode": (0, 2), "host_gp": (8, 1 << 8),
        "host_fixed": (3, 1 << 5)}
# the S line's key order: section 2's keys, then the ones pmusim adds (guests/pebs_pt/pmusim/
# pmusim.c): guest CPUID.1 DS/DTES64, kvm_intel.pt_mode (module default 0, PT_MODE_SYSTEM),
# the host's perf_get_x86_pmu_capability() counters
DEFAULTS = {"vendor": "intel", "pdcm": True, "pt": False, "pmu_version": 2, "gp_counters": 4,
            "fixed_counters": 3, "host_perf_caps": 0x164C5, "host_pebs": True, "host_pt": True,
            "host_pebs_output_pt": True, "ds": True, "dtes64": True, "pt_mode": 0, "host_gp": 8,
            "host_fixed": 3}
LINE_KEYS = {"gp_counters": "gp", "fixed_counters": "fixed"}     # S-line key of a cpu field
MAX_ACTIONS = 256
MAX_LINE = 1 << 12


def _int(value, what: str, limit: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < limit:
        raise ValueError(f"pebs_pt op-script: {what} = {value!r} is not an integer in [0, {limit:#x})")
    return value


def _bool(value, what: str) -> bool:
    if value not in (True, False, 0, 1) or isinstance(value, float):
        raise ValueError(f"pebs_pt op-script: {what} = {value!r} is not a boolean")
    return bool(value)


def normalise_cpu(cpu) -> dict:
    if not isinstance(cpu, dict):
        raise ValueError("pebs_pt op-script: cpu must be an object")
    unknown = set(cpu) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"pebs_pt op-script: cpu has unknown keys {sorted(unknown)}")
    vendor = cpu.get("vendor", DEFAULTS["vendor"])
    if vendor not in VENDORS:
        raise ValueError(f"pebs_pt op-script: cpu.vendor = {vendor!r} is not intel or amd")
    out: dict = {"vendor": vendor}
    for k in BOOLS:
        out[k] = _bool(cpu.get(k, DEFAULTS[k]), f"cpu.{k}")
    for k, (default, limit) in INTS.items():
        out[k] = _int(cpu.get(k, default), f"cpu.{k}", limit)
    return {k: out[k] for k in DEFAULTS}


def normalise_action(a, step: int) -> dict:
    op = a.get("op") if isinstance(a, dict) else None
    if op not in ACTION_OPS:
        raise ValueError(f"pebs_pt op-script: actions[{step}].op = {op!r} is not one of {', '.join(ACTION_OPS)}")
    unknown = set(a) - {"op", "msr", "value"}
    if unknown:
        raise ValueError(f"pebs_pt op-script: actions[{step}] has unknown keys {sorted(unknown)}")
    msr = _int(a.get("msr"), f"actions[{step}].msr", 1 << 32)
    if msr not in model.MSR_NAMES:
        raise ValueError(f"pebs_pt op-script: actions[{step}].msr = {msr:#x} is outside the model "
                         "(harness/reference/pebs_pt.py MSRS)")
    if op in WRITES:
        if "value" not in a:
            raise ValueError(f"pebs_pt op-script: actions[{step}].value is missing ({op} writes a value)")
        return {"op": op, "msr": msr, "value": _int(a["value"], f"actions[{step}].value", 1 << 64)}
    if "value" in a:
        raise ValueError(f"pebs_pt op-script: actions[{step}].value given to {op}, which reads")
    return {"op": op, "msr": msr}


def normalise(script: dict) -> dict:
    if not isinstance(script, dict):
        raise ValueError("pebs_pt op-script: a script must be an object")
    unknown = set(script) - {"cpu", "actions"}
    if unknown:
        raise ValueError(f"pebs_pt op-script: unknown keys {sorted(unknown)}")
    actions = script.get("actions", [])
    if not isinstance(actions, list):
        raise ValueError("pebs_pt op-script: actions must be a list")
    if len(actions) > MAX_ACTIONS:
        raise ValueError(f"pebs_pt op-script: actions has {len(actions)} entries, at most {MAX_ACTIONS}")
    return {"cpu": normalise_cpu(script.get("cpu", {})),
            "actions": [normalise_action(a, i) for i, a in enumerate(actions)]}


# ---------------------------------------------------------------- encoding
def _n(v: int) -> str:
    return f"{v:#x}"


def encode_action(a: dict) -> str:
    line = f"A op={a['op']} msr={_n(a['msr'])}"
    return line + (f" value={_n(a['value'])}" if a["op"] in WRITES else "")


def encode_head(index: int, cpu: dict) -> str:
    parts = [f"S {_n(index)}", f"vendor={cpu['vendor']}"]
    for k in DEFAULTS:
        if k != "vendor":
            parts.append(f"{LINE_KEYS.get(k, k)}={_n(int(cpu[k]))}")
    # the model's shim facts pmusim must share (harness/reference/pebs_pt.py SHIM)
    parts.append(f"host_lbr={_n(model.SHIM['lbr_nr'])}")
    return " ".join(parts)


def encode(scripts: Iterable[dict], first: int = 0) -> bytes:
    """pmusim's stdin for normalised scripts, numbered from `first`."""
    lines = []
    for index, s in enumerate(scripts, first):
        lines.append(encode_head(index, s["cpu"]))
        lines += [encode_action(a) for a in s["actions"]]
        lines.append("E")
    return ("\n".join(lines) + "\n").encode()


RESULTS = ("ok", "fault", "refused")


def decode(stdout: bytes, count: int, first: int = 0) -> list[list[dict]]:
    """pmusim's JSON lines per script, the "script" tag and the "done" marker removed.
    Events are passed on as printed (the model's comparison judges them); split_traces
    checks the framing."""
    return split_traces("pebs_pt", stdout, count, MAX_LINE, first)


def describe(action: dict) -> str:
    """One line for a divergence message: `guest_wrmsr PEBS_ENABLE (0x3f1) value=0x2000000000000000`."""
    text = f"{action['op']} {model.MSR_NAMES.get(action['msr'], '?')} ({_n(action['msr'])})"
    return text + (f" value={_n(action['value'])}" if action["op"] in WRITES else "")


def locate(script: dict, index: int, event: dict) -> tuple[int, str]:
    """(step, action text) of event `index`: every event names its action's step."""
    step = event.get("step") if isinstance(event, dict) else None
    if isinstance(step, int) and not isinstance(step, bool) and 0 <= step < len(script["actions"]):
        return step, describe(script["actions"][step])
    return index, str(event.get("op", "?") if isinstance(event, dict) else "?")


# ---------------------------------------------------------------- ELF checks
# main, and pmu_intel.c's own functions (intel_pmu_ops takes their addresses, so they
# keep a symbol; a compiler suffix such as .constprop.0 is accepted)
REQUIRED_SYMBOLS = ("main", "intel_pmu_set_msr", "intel_pmu_get_msr", "intel_is_valid_msr",
                    "intel_pmu_refresh")
# pmusim runs the kernel's MSR code in user space: a real rdmsr/wrmsr (the kernel's
# rdmsrl/wrmsrl inline asm) in .text would fault (#GP -> SIGSEGV) or, worse, be the
# host's: every MSR access must go through the shim
FORBIDDEN = {"rdmsr": b"\x0f\x32", "wrmsr": b"\x0f\x30"}


def _functions(elf) -> list[tuple[int, int, str]]:
    tab = elf.get_section_by_name(".symtab")
    if tab is None:
        return []
    return sorted((s["st_value"], s["st_value"] + s["st_size"], s.name) for s in tab.iter_symbols()
                  if s["st_info"]["type"] == "STT_FUNC" and s["st_size"])


def forbidden_instructions(text: bytes, addr: int, functions: list[tuple[int, int, str]]) -> list[str]:
    """rdmsr/wrmsr instructions in `text` (loaded at `addr`), as problems."""
    if not any(p in text for p in FORBIDDEN.values()):
        return []
    import capstone

    md = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
    md.skipdata = True
    problems = []
    ranges = [(lo, hi) for lo, hi, _ in functions] or [(addr, addr + len(text))]
    for lo, hi in ranges:
        lo, hi = max(lo, addr), min(hi, addr + len(text))
        if lo >= hi or not any(p in text[lo - addr:hi - addr] for p in FORBIDDEN.values()):
            continue
        for ins in md.disasm_lite(text[lo - addr:hi - addr], lo):
            if ins[2] in FORBIDDEN:
                where = next((name for a, b, name in functions if a <= ins[0] < b), "?")
                problems.append(f"{ins[2]} at {ins[0]:#x} in {where}: MSR accesses must be the shim's")
    return problems


def elf_checks(elf, symbols: dict[str, int]) -> list[str]:
    """Problems with a built pmusim (empty when fine)."""
    present = {name.split(".")[0] for name in symbols}
    problems = [f"symbol {name} missing (not pmusim, or not the kernel's pmu_intel.c?)"
                for name in REQUIRED_SYMBOLS if name not in present]
    text = elf.get_section_by_name(".text")
    if text is not None:
        problems += forbidden_instructions(text.data(), text["sh_addr"], _functions(elf))
    return problems
