"""Op-scripts for the VFIO payload (guests/vfio/vfio.c): normalising, encoding,
parsing its output, random generation (hypothesis) and shrinking.

An op-script is a dict::

    {"iommu": "v2" | "v1" | "none",
     "actions": [{"op": "map", "iova": 0x100000, "size": 0x10000}, ...]}

Actions may leave out keys; `normalise` fills the defaults the payload needs
(the payload itself has no defaults: it refuses a missing key).
"""
from __future__ import annotations

import json
from typing import Iterable

from harness.errors import HarnessError

PAGE = 4096
ARENA = 16 << 20           # the payload's MAP_DMA backing memory
EDU_DMA_LIMIT = 1 << 28    # edu's DMA mask (hw/misc/edu.c)
IOMMU_CODE = {"v2": 3, "v1": 1, "none": 0}

# keys of each action, in the order the payload line carries them; None = required
ACTION_KEYS: dict[str, dict[str, int | None]] = {
    "info": {"argsz": 4096},
    "map": {"argsz": 32, "flags": 3, "iova": None, "size": None, "voff": 0},
    "unmap": {"argsz": None, "flags": 0, "iova": None, "size": None, "pgsize": PAGE,
              "bsize": None, "data": 0, "fill": 0},
    "dirty": {"argsz": 8, "flags": None, "null": 0},
    "get": {"argsz": 48, "flags": 4, "iova": None, "size": None, "pgsize": PAGE,
            "bsize": None, "data": 0, "fill": 0},
    "dma": {"src": None, "dst": None, "len": 256},
    "ext": {"arg": None},
    "devdirty": {},
    "migprobe": {},
    "mig1": {"state": None},
}


def bitmap_bytes(npages: int) -> int:
    """DIRTY_BITMAP_BYTES(): whole u64 words."""
    return ((npages + 63) // 64) * 8


def normalise_action(action: dict) -> dict:
    op = action.get("op")
    if op not in ACTION_KEYS:
        raise ValueError(f"vfio op-script: unknown action {op!r}")
    keys = ACTION_KEYS[op]
    unknown = set(action) - set(keys) - {"op"}
    if unknown:
        raise ValueError(f"vfio op-script: action {op} has unknown keys {sorted(unknown)}")
    out = {"op": op}
    for key, default in keys.items():
        if key in action:
            value = action[key]
        elif key == "argsz" and op == "unmap":
            value = 48 if action.get("flags", 0) & 1 else 24
        elif key == "bsize":
            value = max(8, bitmap_bytes(action.get("size", 0) // PAGE)) if (
                op == "get" or action.get("flags", 0) & 1) else 0
        elif default is None:
            raise ValueError(f"vfio op-script: action {op} needs {key!r}")
        else:
            value = default
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 1 << 64:
            raise ValueError(f"vfio op-script: {op}.{key} = {value!r} is not a u64")
        out[key] = value
    if op == "map" and out["voff"] + out["size"] > ARENA and not out["flags"] & 4:
        raise ValueError(f"vfio op-script: map voff+size {out['voff'] + out['size']:#x} "
                         f"exceeds the payload's {ARENA >> 20} MiB arena")
    if op == "dma" and not (0 < out["len"] <= PAGE and out["src"] + out["len"] <= EDU_DMA_LIMIT
                            and out["dst"] + out["len"] <= EDU_DMA_LIMIT):
        raise ValueError("vfio op-script: dma needs 0 < len <= 4096 and both ranges below "
                         "edu's 28-bit DMA mask")
    if op in ("get", "unmap") and out["fill"] and min(out["bsize"], (1 << 28) + 8) > 1 << 20:
        raise ValueError(f"vfio op-script: {op} with fill=1 needs bsize <= 1 MiB")
    if op == "info" and out["argsz"] > 8192:
        raise ValueError("vfio op-script: info argsz is limited to the payload's 8 KiB buffer")
    return out


def normalise(script: dict) -> dict:
    iommu = script.get("iommu", "v2")
    if iommu not in IOMMU_CODE:
        raise ValueError(f"vfio op-script: iommu must be one of {sorted(IOMMU_CODE)}")
    return {"iommu": iommu, "actions": [normalise_action(a) for a in script.get("actions", [])]}


def encode(scripts: Iterable[dict]) -> bytes:
    """The payload's stdin for normalised scripts (see guests/vfio/vfio.c)."""
    lines = []
    for script in scripts:
        lines.append(f"S {IOMMU_CODE[script['iommu']]}")
        for a in script["actions"]:
            fields = " ".join(f"{k}={a[k]:#x}" for k in ACTION_KEYS[a["op"]])
            lines.append(f"A {a['op']} {fields}".rstrip())
        lines.append("E")
    return ("\n".join(lines) + "\n").encode()


MAX_LINE = 1 << 20


def parse_output(stdout: bytes, nscripts: int) -> list[list[dict]]:
    """Split the payload's JSON lines per script, stripping the "script" tag.

    Untrusted input: every line must be a JSON object with an integer
    "script" in range and a string "op"; anything else is a HarnessError
    naming the line.
    """
    traces: list[list[dict]] = [[] for _ in range(nscripts)]
    for n, raw in enumerate(stdout.splitlines(), 1):
        if not raw.strip():
            continue
        if len(raw) > MAX_LINE:
            raise HarnessError(f"vfio payload: output line {n} is longer than {MAX_LINE} bytes")
        try:
            event = json.loads(raw)
        except ValueError as e:
            raise HarnessError(f"vfio payload: output line {n} is not JSON ({e}): {raw[:200]!r}")
        if not isinstance(event, dict) or not isinstance(event.get("script"), int) \
                or not isinstance(event.get("op"), str):
            raise HarnessError(f"vfio payload: output line {n} lacks script/op: {raw[:200]!r}")
        index = event.pop("script")
        if not 0 <= index < nscripts:
            raise HarnessError(f"vfio payload: output line {n} names script {index} of {nscripts}")
        traces[index].append(event)
    return traces


def describe_action(action: dict) -> str:
    """One line for a divergence message: `get iova=0x100000 size=0x5000 ...`."""
    if action.get("op") == "setup":
        return f"setup iommu={action.get('iommu')}"
    keys = ACTION_KEYS.get(action["op"], {})
    parts = [f"{k}={action[k]:#x}" for k in keys if k in action]
    return " ".join([action["op"], *parts])


def action_kind(action: dict) -> str:
    """The kind counted in run.json's random.action_kinds."""
    op = action["op"]
    if op == "dirty":
        return {1: "start", 2: "stop"}.get(action["flags"], "dirty_bad")
    if op == "unmap":
        return "unmap_bitmap" if action["flags"] & 1 else "unmap"
    return op


RANDOM_KINDS = ("info", "map", "unmap", "unmap_bitmap", "start", "stop", "dirty_bad", "get",
                "dma", "ext")


# ---------------------------------------------------------------------------
# ELF checks (optional part of the contract)

def check_elf(path: str) -> list[str]:
    """Problems with a built VFIO payload (empty when fine): static, x86-64, main."""
    from elftools.elf.elffile import ELFFile

    problems = []
    with open(path, "rb") as f:
        elf = ELFFile(f)
        if elf["e_machine"] != "EM_X86_64":
            problems.append(f"{path}: not x86-64 ({elf['e_machine']})")
        if any(seg["p_type"] == "PT_INTERP" for seg in elf.iter_segments()):
            problems.append(f"{path}: dynamically linked (has PT_INTERP)")
        symtab = elf.get_section_by_name(".symtab")
        names = {s.name for s in symtab.iter_symbols()} if symtab else set()
        if symtab is not None and "main" not in names:
            problems.append(f"{path}: symbol main missing")
    return problems
