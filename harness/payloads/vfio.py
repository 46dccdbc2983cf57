"""Op-scripts for the VFIO payload (guests/vfio/vfio.c): normalising, encoding,
parsing its output, random generation (hypothesis) and shrinking.

An op-script is a dict::

    {"iommu": "v2" | "v1" | "none",
     "actions": [{"op": "map", "iova": 0x100000, "size": 0x10000}, ...]}

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
    if op == "dma" and not (0 < out["len"] <= EDU_DMA_MAX and out["src"] + out["len"] <= EDU_DMA_LIMIT
                            and out["dst"] + out["len"] <= EDU_DMA_LIMIT):
        raise ValueError("vfio op-script: dma needs 0 < len <= 2048 and both ranges below "
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
    """Split the payload's JSON lines per script, stripping the "script" tag."""
    return split_traces("vfio", stdout, nscripts, MAX_LINE)


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


# ---------------------------------------------------------------------------
# Random op-scripts (hypothesis) and shrinking

BASE_IOVA = 0x100000
SIZES_PAGES = (1, 2, 3, 4, 5, 7, 8, 15, 16, 17, 31, 32, 33, 63, 64, 65, 70, 100, 128)
# weights of the action kinds (a kind listed k times is drawn k times as often)
KIND_WEIGHTS = (["map"] * 7 + ["get"] * 7 + ["unmap_bitmap"] * 3 + ["unmap"] * 2
                + ["start"] * 3 + ["stop"] * 1 + ["dirty_bad"] * 1 + ["info"] * 1
                + ["dma"] * 1 + ["ext"] * 1)


def script_strategy(min_actions: int = 5, max_actions: int = 30):
    """Hypothesis strategy of normalised v2 op-scripts.

    The generator keeps an optimistic picture of the container (which maps it
    asked for, whether tracking was started) only to aim ranges at mapping
    boundaries often; the reference model, not this picture, predicts results.
    """
    from hypothesis import strategies as st

    @st.composite
    def build(draw):
        n = draw(st.integers(min_actions, max_actions))
        maps: list[tuple[int, int, int]] = []     # (first page, pages, flags)
        tracking = False
        actions: list[dict] = []
        invalid: list[tuple[int, int, int]] = []  # maps whose vaddr was invalidated

        def page_range(kind: str) -> tuple[int, int]:
            """(iova, size) in bytes for a get/unmap."""
            choice = draw(st.integers(0, 9))
            if choice < 3 or not maps:
                return BASE_IOVA, 512 * PAGE                       # everything
            ordered = sorted(maps)
            if choice < 8:                                         # whole mappings
                i = draw(st.integers(0, len(ordered) - 1))
                j = draw(st.integers(i, min(len(ordered) - 1, i + 3)))
                first = ordered[i][0]
                last = ordered[j][0] + ordered[j][1]
                if draw(st.booleans()):                            # from a gap below
                    first = max(0, first - draw(st.integers(0, 70)))
                return BASE_IOVA + first * PAGE, (last - first) * PAGE
            if choice == 8:                                        # from a mapping's end
                f, p, _ = draw(st.sampled_from(maps))
                return BASE_IOVA + (f + p) * PAGE, draw(st.sampled_from(SIZES_PAGES)) * PAGE
            first = draw(st.integers(0, 300))                      # anywhere
            return BASE_IOVA + first * PAGE, draw(st.sampled_from(SIZES_PAGES)) * PAGE

        def perturb(a: dict) -> dict:
            """Now and then one wrong argument."""
            if draw(st.integers(0, 9)) != 0:
                return a
            what = draw(st.sampled_from(["pgsize", "bsize", "argsz", "iova", "size", "data",
                                         "fill", "wrap", "iova1", "size1"]))
            if what == "pgsize":
                # never 0: __ffs(0) is a shift by 64 in the kernel (UB, UBSAN reports it)
                a["pgsize"] = draw(st.sampled_from([1, 2048, 8192, 0x3000, 0x200000]))
            elif what == "bsize":
                a["bsize"] = max(0, a["bsize"] - draw(st.sampled_from([1, 8, a["bsize"]])))
            elif what == "argsz":
                a["argsz"] = draw(st.sampled_from([8, 24, 47, 40]))
            elif what == "iova":
                a["iova"] += 0x800
            elif what == "size":
                a["size"] = draw(st.sampled_from([0, a["size"] + 0x800]))
            elif what == "data":
                a["data"] = draw(st.sampled_from([1, 2]))
            elif what == "fill":
                a["fill"] = 1
            elif what == "iova1":                                  # odd, not only 0x800
                a["iova"] += draw(st.sampled_from([1, 0x1001, 0x800]))
            elif what == "size1":
                a["size"] += draw(st.sampled_from([1, 0x800, 0x1800]))
            else:
                a["iova"] = 0xFFFFFFFFFFFFF000
                a["size"] = draw(st.sampled_from([0x1000, 0x2000]))
            return a

        for _ in range(n):
            if invalid and draw(st.integers(0, 4)) == 2:
                # restore an invalidated vaddr (UPDATE_VADDR), sometimes with a wrong size
                m = draw(st.sampled_from(invalid))
                f, p, _ = m
                if draw(st.integers(0, 3)):
                    invalid.remove(m)
                size = p * PAGE if draw(st.integers(0, 3)) else (p + 1) * PAGE
                actions.append({"op": "map", "iova": BASE_IOVA + f * PAGE, "size": size, "flags": 4,
                                "voff": draw(st.integers(0, ARENA // PAGE - p - 1)) * PAGE})
                continue
            kind = draw(st.sampled_from(KIND_WEIGHTS))
            if kind == "start" or (kind == "get" and not tracking and draw(st.integers(0, 3)) == 0):
                actions.append({"op": "dirty", "flags": 1})
                tracking = True
                if kind == "start":
                    continue
            if kind == "map":
                pages = draw(st.sampled_from(SIZES_PAGES))
                where = draw(st.integers(0, 9))
                if maps and where < 3:                             # touching a mapping
                    f, p, _ = draw(st.sampled_from(maps))
                    first = f + p if where < 2 else max(0, f - pages)
                else:
                    first = draw(st.integers(0, 300))
                voff = draw(st.integers(0, ARENA // PAGE - pages)) * PAGE
                flags = draw(st.sampled_from([3, 3, 3, 1, 2]))
                if maps and draw(st.integers(0, 14)) == 7:        # (hypothesis favours 0)
                    # UPDATE_VADDR: invalidate the vaddr of a mapping, or of a
                    # range of mappings one of which may already be invalid
                    # (the rollback path); restored at the top of the loop
                    iova, size = page_range("unmap")
                    actions.append({"op": "unmap", "iova": iova, "size": size, "flags": 4})
                    lo, hi = (iova - BASE_IOVA) // PAGE, (iova + size - BASE_IOVA) // PAGE
                    invalid.extend(m for m in maps if lo <= m[0] < hi and m not in invalid)
                    continue
                actions.append({"op": "map", "iova": BASE_IOVA + first * PAGE,
                                "size": pages * PAGE, "voff": voff, "flags": flags})
                if not any(f < first + pages and first < f + p for f, p, _ in maps):
                    maps.append((first, pages, flags))
            elif kind in ("get", "unmap_bitmap", "unmap"):
                iova, size = page_range(kind)
                if kind == "unmap":
                    a = {"op": "unmap", "iova": iova, "size": size}
                    if draw(st.integers(0, 9)) == 0:                # one wrong argument
                        what = draw(st.sampled_from(["iova", "size", "argsz", "flags"]))
                        if what == "iova":
                            a["iova"] += draw(st.sampled_from([1, 0x800]))
                        elif what == "size":
                            a["size"] += draw(st.sampled_from([1, 0x800]))
                        elif what == "argsz":
                            a["argsz"] = 23
                        else:
                            a["flags"] = draw(st.sampled_from([8, 2, 3]))
                else:
                    a = {"op": "get" if kind == "get" else "unmap", "iova": iova, "size": size}
                    if kind == "unmap_bitmap":
                        a["flags"] = 1
                    a = normalise_action(a)
                    a = perturb(a)
                if a["op"] == "unmap" and a.get("argsz", 48) >= 24:
                    lo, hi = (iova - BASE_IOVA) // PAGE, (iova + size - BASE_IOVA) // PAGE
                    maps[:] = [m for m in maps if not (lo <= m[0] < hi)]
                actions.append(a)
            elif kind == "stop":
                actions.append({"op": "dirty", "flags": 2})
                tracking = False
            elif kind == "dirty_bad":
                actions.append(draw(st.sampled_from([
                    {"op": "dirty", "flags": 0}, {"op": "dirty", "flags": 3},
                    {"op": "dirty", "flags": 8}, {"op": "dirty", "flags": 1, "argsz": 4},
                    {"op": "dirty", "flags": 4}, {"op": "dirty", "flags": 4, "argsz": 48},
                    {"op": "dirty", "flags": 2, "null": 1}])))
            elif kind == "info":
                actions.append({"op": "info", "argsz": draw(st.sampled_from(
                    [4096, 4096, 16, 20, 24, 15, 115, 116, 117]))})
            elif kind == "ext":
                actions.append({"op": "ext", "arg": draw(st.sampled_from([1, 3, 6, 9, 10, 4, 2, 8]))})
            elif kind == "dma" and draw(st.integers(0, 2)) == 0:
                # edu's DMA timer costs 100 ms of guest time per transfer:
                # draw it a third as often as its weight says
                def inside() -> int:
                    if maps and draw(st.integers(0, 9)) < 9:
                        f, p, _ = draw(st.sampled_from(maps))
                        return BASE_IOVA + (f + draw(st.integers(0, p - 1))) * PAGE
                    return BASE_IOVA + draw(st.integers(0, 450)) * PAGE
                src, dst = inside(), inside()
                length = draw(st.sampled_from([64, 256, EDU_DMA_MAX]))
                actions.append({"op": "dma", "src": src, "dst": dst, "len": length})
        return normalise({"iommu": "v2", "actions": actions[:max_actions]})

    return build()


def generate(seed: int, count: int, min_actions: int = 5, max_actions: int = 30) -> list[dict]:
    """`count` op-scripts drawn by hypothesis, deterministic for `seed`."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hseed

    out: list[dict] = []

    # a drawn kind can yield no action (the thinned dma), so a few scripts come
    # out short: draw more and keep the first `count` long enough
    @hseed(seed)
    @settings(max_examples=count + count // 4 + 10, phases=[Phase.generate], database=None,
              deadline=None, suppress_health_check=list(HealthCheck))
    @given(script_strategy(min_actions, max_actions))
    def collect(script):
        if len(script["actions"]) >= min_actions and len(out) < count:
            out.append(script)

    collect()
    return out


def shrink(script: dict, still_fails, max_rounds: int = 40) -> dict:
    """Smallest script found for which `still_fails` holds, by removing actions.

    `still_fails(candidates) -> list[bool]` judges a batch of candidates at
    once (one payload run in the guest per round).  Delta debugging: remove
    chunks of n/2, n/4, ... 1 actions; keep the first candidate that still
    fails; stop when no single action can go.
    """
    current = script
    chunk = max(1, len(current["actions"]) // 2)
    rounds = 0
    while rounds < max_rounds and current["actions"]:
        rounds += 1
        acts = current["actions"]
        candidates = [{"iommu": current["iommu"], "actions": acts[:i] + acts[i + chunk:]}
                      for i in range(0, len(acts), chunk)]
        verdicts = still_fails(candidates)
        failing = [c for c, bad in zip(candidates, verdicts) if bad]
        if failing:
            current = failing[0]
            chunk = min(chunk, max(1, len(current["actions"]) // 2))
        elif chunk > 1:
            chunk //= 2
        else:
            break
    return current
