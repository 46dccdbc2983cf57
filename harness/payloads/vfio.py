"""The VFIO payload's codec (guests/vfio/vfio.c; the driver protocol of
harness/driver.py): normalising, encoding, decoding its output, ELF checks.

An op-script is a dict::

    {"iommu": "v2" | "v1" | "none" | "noiommu",
     "dma_entry_limit": 65535, "memlock": 0,          (optional, see below)
     "actions": [{"op": "map", "iova": 0x100000, "size": 0x10000}, ...]}

"none" joins the group without VFIO_SET_IOMMU; "noiommu" asks for
VFIO_NOIOMMU_IOMMU (8). `dma_entry_limit` is written to the vfio_iommu_type1
module parameter for the script's VFIO_SET_IOMMU (and restored right after);
`memlock` non-zero makes the payload drop CAP_IPC_LOCK and set RLIMIT_MEMLOCK
to that many bytes for the script.

Argument placement (`arg`): 0 the normal buffer, 1 NULL, 2 "split": the
ioctl's fixed header (info 24, unmap 24, get 8 bytes) ends at a page boundary
and the rest lies on a PROT_NONE page. `child=1` (unmap): a forked child
issues the ioctl on the inherited container fd. `vaddr` (map): 0 = the
payload's arena + voff, else that address (only addresses no VMA of the
payload covers: below 64 KiB or from 2^47 on, not the vsyscall page).

Actions may leave out keys; `normalise` fills the defaults the payload needs
(the payload itself has no defaults: it refuses a missing key).
"""
from __future__ import annotations

from typing import Iterable

from harness.payloads.trace import split_traces

PAGE = 4096
ARENA = 16 << 20           # the payload's MAP_DMA backing memory
EDU_DMA_LIMIT = 1 << 28    # edu's DMA mask (hw/misc/edu.c)
# QEMU 7.2's edu aborts (hw_error) on a transfer that reaches the end of its
# 4 KiB buffer; the payload refuses more than 2 KiB
EDU_DMA_MAX = 2048
IOMMU_CODE = {"v2": 3, "v1": 1, "none": 0, "noiommu": 8}
DMA_ENTRY_LIMIT = 0xFFFF   # vfio_iommu_type1's default (U16_MAX)
VSYSCALL_PAGE = 0xFFFFFFFFFF600000

# keys of each action, in the order the payload line carries them; None = required
ACTION_KEYS: dict[str, dict[str, int | None]] = {
    "info": {"argsz": 4096, "arg": 0},
    "map": {"argsz": 32, "flags": 3, "iova": None, "size": None, "voff": 0, "vaddr": 0, "arg": 0},
    "unmap": {"argsz": None, "flags": 0, "iova": None, "size": None, "pgsize": PAGE,
              "bsize": None, "data": 0, "fill": 0, "arg": 0, "child": 0},
    "dirty": {"argsz": 8, "flags": None, "null": 0},
    "get": {"argsz": 48, "flags": 4, "iova": None, "size": None, "pgsize": PAGE,
            "bsize": None, "data": 0, "fill": 0, "arg": 0},
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
    for key in ("argsz", "flags"):          # __u32 in every struct
        if key in out and out[key] >= 1 << 32:
            raise ValueError(f"vfio op-script: {op}.{key} = {out[key]:#x} is not a u32")
    if op in ("info", "map", "unmap", "get") and out["arg"] > (1 if op == "map" else 2):
        raise ValueError(f"vfio op-script: {op}.arg must be 0 (buffer), 1 (NULL)"
                         + ("" if op == "map" else " or 2 (split)"))
    if op == "unmap" and out["child"] > 1:
        raise ValueError("vfio op-script: unmap.child must be 0 or 1")
    if op == "map" and out["vaddr"] and not (
            out["vaddr"] < 0x10000 or (out["vaddr"] >= 1 << 47
                                       and out["vaddr"] & ~(PAGE - 1) != VSYSCALL_PAGE)):
        raise ValueError(f"vfio op-script: map vaddr {out['vaddr']:#x} may be payload memory: "
                         "use one below 64 KiB or from 2^47 on (not the vsyscall page)")
    if op == "map" and not out["vaddr"] and out["voff"] + out["size"] > ARENA and not out["flags"] & 4:
        raise ValueError(f"vfio op-script: map voff+size {out['voff'] + out['size']:#x} "
                         f"exceeds the payload's {ARENA >> 20} MiB arena")
    if op == "dma" and not (0 < out["len"] <= EDU_DMA_MAX and out["src"] + out["len"] <= EDU_DMA_LIMIT
                            and out["dst"] + out["len"] <= EDU_DMA_LIMIT):
        raise ValueError("vfio op-script: dma needs 0 < len <= 2048 and both ranges below "
                         "edu's 28-bit DMA mask")
    if op in ("get", "unmap") and out["fill"] and min(out["bsize"], (1 << 28) + 8) > 1 << 20:
        raise ValueError(f"vfio op-script: {op} with fill=1 needs bsize <= 1 MiB")
    if op == "info" and out["argsz"] > 8192:
        raise ValueError("vfio op-script: info argsz is limited to the payload's 8 KiB buffer")
    return out


SCRIPT_KEYS = {"iommu", "actions", "dma_entry_limit", "memlock"}


def normalise(script: dict) -> dict:
    unknown = set(script) - SCRIPT_KEYS
    if unknown:
        raise ValueError(f"vfio op-script: unknown keys {sorted(unknown)}")
    iommu = script.get("iommu", "v2")
    if iommu not in IOMMU_CODE:
        raise ValueError(f"vfio op-script: iommu must be one of {sorted(IOMMU_CODE)}")
    out = {"iommu": iommu}
    for key, default, limit in (("dma_entry_limit", DMA_ENTRY_LIMIT, 1 << 32), ("memlock", 0, 1 << 62)):
        value = script.get(key, default)
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < limit:
            raise ValueError(f"vfio op-script: {key} = {value!r} is out of range")
        out[key] = value
    out["actions"] = [normalise_action(a) for a in script.get("actions", [])]
    return out


def encode(scripts: Iterable[dict], first: int = 0) -> bytes:
    """The payload's stdin for normalised scripts (see guests/vfio/vfio.c). The payload
    numbers scripts in the order it reads them, so `first` is implied by what it was
    sent before."""
    lines = []
    for script in scripts:
        head = f"S {IOMMU_CODE[script['iommu']]}"
        if script.get("dma_entry_limit", DMA_ENTRY_LIMIT) != DMA_ENTRY_LIMIT:
            head += f" dma_entry_limit={script['dma_entry_limit']:#x}"
        if script.get("memlock", 0):
            head += f" memlock={script['memlock']:#x}"
        lines.append(head)
        for a in script["actions"]:
            fields = " ".join(f"{k}={a[k]:#x}" for k in ACTION_KEYS[a["op"]])
            lines.append(f"A {a['op']} {fields}".rstrip())
        lines.append("E")
    return ("\n".join(lines) + "\n").encode()


MAX_LINE = 1 << 20


def decode(stdout: bytes, count: int, first: int = 0) -> list[list[dict]]:
    """Split the payload's JSON lines per script, stripping the "script" tag."""
    return split_traces("vfio", stdout, count, MAX_LINE, first)


def describe(action: dict) -> str:
    """One line for a divergence message: `get iova=0x100000 size=0x5000 ...`."""
    keys = ACTION_KEYS.get(action["op"], {})
    parts = [f"{k}={action[k]:#x}" for k in keys if k in action]
    return " ".join([action["op"], *parts])


def locate(script: dict, index: int, event: dict) -> tuple[int, str]:
    """(step, action text) of event `index`: event 0 is the setup, event k action k-1."""
    if index == 0:
        extra = "".join(f" {k}={script[k]:#x}" for k in ("dma_entry_limit", "memlock")
                        if script.get(k, DMA_ENTRY_LIMIT if k == "dma_entry_limit" else 0)
                        != (DMA_ENTRY_LIMIT if k == "dma_entry_limit" else 0))
        return 0, f"setup iommu={script['iommu']}{extra}"
    if index - 1 < len(script["actions"]):
        return index, describe(script["actions"][index - 1])
    return index, str(event.get("op", "?"))


# ---------------------------------------------------------------------------
# ELF checks (called by harness/payloads/build.py after the generic ones)

# Functions the VFIO payload must contain: the user-bitmap buffer with guard
# words and the edu DMA engine driver (static, so they survive as local
# symbols in .symtab).
REQUIRED_SYMBOLS = ("main", "vfio_ubuf_setup", "vfio_ubuf_emit", "vfio_edu_dma", "vp")


def elf_checks(elf, symbols: dict[str, int]) -> list[str]:
    """Problems with a built VFIO payload (empty when fine)."""
    problems = [f"symbol {name} missing (not the VFIO payload?)"
                for name in REQUIRED_SYMBOLS if name not in symbols]
    if elf.get_section_by_name(".symtab") is None:
        problems.append("no .symtab (stripped)")
    return problems
