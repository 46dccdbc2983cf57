"""Hypothesis strategy of random VFIO op-scripts (the driver's strategy protocol).

The generator keeps an optimistic picture of the container (which maps it
asked for, whether tracking was started) only to aim ranges at mapping
boundaries often; the reference model, not this picture, predicts results.

Weights are static (the tables below). They were chosen by measuring which
model rules (harness/reference/rules.py) 300 scripts reach, seed by seed
(`tests/test_model_rules.py`; seeds 1-5 are checked by make test, 1-20 were
looked at when tuning): every rule the 6.1 profile can reach here needs a
path that 300 scripts take a few times at least, so rare branches get their
own small, fixed share instead of being left to chance:
  * container kinds: v2 mostly; v1 (EACCES, v1 unmap semantics), no
    VFIO_SET_IOMMU and VFIO_NOIOMMU_IOMMU (ENODEV) in a small share;
  * script settings: a low dma_entry_limit (ENOSPC) or an RLIMIT_MEMLOCK
    without CAP_IPC_LOCK (ENOMEM) in about one script in twelve each;
  * each ioctl now and then with a NULL or split argument (the first and the
    second copy_from_user fault), maps with each argument error, UNMAP_ALL,
    unmaps issued by a forked child, the device-fd alias;
  * user bitmaps pre-filled with 0x5a in about half the GETs and unmaps, so
    that the words the kernel writes (zero bits included) are visible.
edu DMA costs 100 ms of guest time per transfer (two per action): it keeps a
small weight.
"""
from __future__ import annotations

from hypothesis import strategies as st

from harness.payloads.vfio import ARENA, EDU_DMA_MAX, PAGE, normalise, normalise_action


def kind(action: dict) -> str:
    """The kind counted in run.json's random.action_kinds."""
    op = action["op"]
    if op == "dirty":
        return {1: "start", 2: "stop"}.get(action["flags"], "dirty_bad")
    if op == "unmap":
        if action.get("child"):
            return "unmap_child"
        if action["flags"] & 2:
            return "unmap_all"
        return "unmap_bitmap" if action["flags"] & 1 else "unmap"
    return op


KINDS = ("info", "map", "unmap", "unmap_bitmap", "unmap_all", "unmap_child", "start", "stop",
         "dirty_bad", "get", "dma", "ext", "devdirty")


BASE_IOVA = 0x100000
TOP = 0xFFFFFFFFFFFFF000
KERNEL_PTR = 0xFFFF888000000000
SIZES_PAGES = (1, 2, 3, 4, 5, 7, 8, 15, 16, 17, 31, 32, 33, 63, 64, 65, 70, 100, 128)
# weights of the action kinds (a kind listed k times is drawn k times as often)
KIND_WEIGHTS = (["map"] * 7 + ["get"] * 7 + ["unmap_bitmap"] * 4 + ["unmap"] * 2
                + ["start"] * 3 + ["stop"] * 1 + ["dirty_bad"] * 1 + ["info"] * 1
                + ["dma"] * 1 + ["ext"] * 1 + ["unmap_all"] * 1 + ["devdirty"] * 1)
# container kinds of a script
IOMMUS = ["v2"] * 17 + ["v1", "none"] + ["v2"] * 4 + ["noiommu", "v1"]
# the action kinds of a script whose container has no type1 driver (no
# VFIO_SET_IOMMU): every type1 ioctl is EINVAL, CHECK_EXTENSION polls type1
NO_DRIVER_WEIGHTS = ["ext"] * 4 + ["map", "info", "start", "get", "unmap"]
# one wrong argument of a GET or unmap-with-bitmap (about one in five)
PERTURB = ("pgsize", "pgsize", "bsize", "argsz", "argsz", "iova", "size", "data", "data", "data",
           "over", "wrap", "iova1", "size1", "null", "split", "split", "flags", "flags")
# one wrong argument of a MAP_DMA (about one map in seven)
MAP_ERRORS = ("argsz", "flags", "noprot", "rwv", "iova", "size", "voff", "zero", "iova_wrap",
              "vaddr_wrap", "vaddr_bad", "vaddr_bad", "msi", "beyond", "null", "enoent")


def scripts(min_actions: int = 5, max_actions: int = 30):
    """Normalised op-scripts of `min_actions` to `max_actions` actions."""

    @st.composite
    def build(draw):
        n = draw(st.integers(min_actions, max_actions))
        iommu = draw(st.sampled_from(IOMMUS))
        script: dict = {"iommu": iommu}
        setting = draw(st.integers(0, 9))
        if setting == 5:
            script["dma_entry_limit"] = draw(st.sampled_from([2, 3, 0, 1, 4]))
        elif setting == 9:
            script["memlock"] = draw(st.sampled_from([16, 32, 64, 8, 128])) * PAGE
        maps: list[tuple[int, int, int]] = []     # (first page, pages, flags)
        tracking = False
        actions: list[dict] = []
        invalid: list[tuple[int, int, int]] = []  # maps whose vaddr was invalidated

        def page_range(kind: str) -> tuple[int, int]:
            """(iova, size) in bytes for a get/unmap."""
            choice = draw(st.integers(0, 9))
            if choice < 3 or not maps:
                return BASE_IOVA, 512 * PAGE                       # everything
            if (choice == 9 and draw(st.booleans())) or (iommu == "v1" and draw(st.booleans())):
                # cutting a mapping (v2: EINVAL; v1: an unmap from inside stops there)
                f, p, _ = draw(st.sampled_from(maps))
                if p > 1 and draw(st.booleans()):                  # from inside it
                    cut = draw(st.integers(1, p - 1))
                    return BASE_IOVA + (f + cut) * PAGE, draw(st.sampled_from(SIZES_PAGES)) * PAGE
                # from its start (or below), ending inside it or inside another
                first = max(0, f - draw(st.sampled_from([0, 0, 3])))
                return BASE_IOVA + first * PAGE, (f - first + max(1, p - 1)) * PAGE
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

        def bitmap_buffer(a: dict) -> dict:
            """A 0x5a-filled buffer about half the time (the written words show)."""
            if a["bsize"] <= 1 << 20 and draw(st.integers(0, 1)):
                a["fill"] = 1
            return a

        def perturb(a: dict) -> dict:
            """Now and then one wrong argument."""
            if draw(st.integers(0, 3)) != 0:
                return a
            what = draw(st.sampled_from(PERTURB))
            if what == "pgsize":
                # never 0: __ffs(0) is a shift by 64 in the kernel (UB, UBSAN reports it)
                a["pgsize"] = draw(st.sampled_from([1, 2048, 8192, 0x3000, 0x200000]))
            elif what == "bsize":
                a["bsize"] = max(0, a["bsize"] - draw(st.sampled_from([1, 8, a["bsize"], a["bsize"]])))
            elif what == "over":                                   # above DIRTY_BITMAP_SIZE_MAX
                a["bsize"], a["fill"] = 0x10000008, 0
            elif what == "argsz":
                a["argsz"] = draw(st.sampled_from([8, 24, 47, 40, 24, 47]))
            elif what == "flags":                                  # unmap: bitmap + ALL or VADDR
                a["flags"] |= draw(st.sampled_from([2, 4])) if a["op"] == "unmap" else 8
            elif what == "iova":
                a["iova"] += 0x800
            elif what == "size":
                a["size"] = draw(st.sampled_from([0, a["size"] + 0x800]))
            elif what == "data":
                a["data"] = draw(st.sampled_from([1, 2, 1]))
            elif what == "iova1":                                  # odd, not only 0x800
                a["iova"] += draw(st.sampled_from([1, 0x1001, 0x800]))
            elif what == "size1":
                a["size"] += draw(st.sampled_from([1, 0x800, 0x1800]))
            elif what == "null":                                   # the first copy faults
                a["arg"] = 1
            elif what == "split":                                  # the second copy faults
                a["arg"] = 2
            else:
                a["iova"] = TOP
                a["size"] = draw(st.sampled_from([0x1000, 0x2000]))
            return a

        def bad_map() -> dict:
            """A MAP_DMA with one argument error."""
            pages = draw(st.sampled_from(SIZES_PAGES[:8]))
            a = {"op": "map", "iova": BASE_IOVA + draw(st.integers(0, 300)) * PAGE,
                 "size": pages * PAGE, "voff": draw(st.integers(0, 64)) * PAGE}
            what = draw(st.sampled_from(MAP_ERRORS))
            if what == "argsz":
                a["argsz"] = 31
            elif what == "flags":
                a["flags"] = draw(st.sampled_from([8, 0x13]))
            elif what == "noprot":
                a["flags"] = 0
            elif what == "rwv":
                a["flags"] = draw(st.sampled_from([5, 7]))
            elif what == "iova":
                a["iova"] += draw(st.sampled_from([0x800, 1]))
            elif what == "size":
                a["size"] += draw(st.sampled_from([0x800, 1]))
            elif what == "voff":
                a["voff"] += 0x800
            elif what == "zero":
                a["size"] = 0
            elif what == "iova_wrap":
                a["iova"], a["size"] = TOP, 0x2000
            elif what == "vaddr_wrap":
                a["vaddr"], a["size"] = TOP, 0x2000
            elif what == "vaddr_bad":                              # pinning faults
                a["vaddr"] = draw(st.sampled_from([0x1000, KERNEL_PTR, TOP]))
                a["size"] = 0x1000 if a["vaddr"] == TOP else a["size"]
            elif what == "msi":
                a["iova"] = 0xFEE00000
            elif what == "beyond":
                a["iova"] = draw(st.sampled_from([1 << 39, TOP - 0x1000]))
            elif what == "null":
                a["arg"] = 1
            else:                                                  # MAP_FLAG_VADDR, nothing there
                a["flags"] = 4
                a["iova"] = BASE_IOVA + draw(st.integers(320, 400)) * PAGE
            return a

        for _ in range(n):
            if invalid and draw(st.integers(0, 7)) == 2:
                # restore an invalidated vaddr (UPDATE_VADDR), sometimes with a wrong size
                m = draw(st.sampled_from(invalid))
                f, p, _ = m
                if draw(st.integers(0, 3)):
                    invalid.remove(m)
                size = p * PAGE if draw(st.integers(0, 3)) else (p + 1) * PAGE
                actions.append({"op": "map", "iova": BASE_IOVA + f * PAGE, "size": size, "flags": 4,
                                "voff": draw(st.integers(0, ARENA // PAGE - p - 1)) * PAGE})
                continue
            kind = draw(st.sampled_from(NO_DRIVER_WEIGHTS if iommu == "none" else KIND_WEIGHTS))
            if kind == "start" or (kind in ("get", "unmap_bitmap") and not tracking
                                   and draw(st.integers(0, 2)) == 0):
                actions.append({"op": "dirty", "flags": 1})
                tracking = True
                if kind == "start":
                    continue
            if kind == "map":
                if draw(st.integers(0, 4)) == 3:
                    actions.append(bad_map())
                    continue
                pages = draw(st.sampled_from(SIZES_PAGES))
                where = draw(st.integers(0, 9))
                if maps and where < 3:                             # touching a mapping
                    f, p, _ = draw(st.sampled_from(maps))
                    first = f + p if where < 2 else max(0, f - pages)
                else:
                    first = draw(st.integers(0, 300))
                voff = draw(st.integers(0, ARENA // PAGE - pages)) * PAGE
                flags = draw(st.sampled_from([3, 3, 3, 1, 2]))
                if maps and draw(st.integers(0, 5)) == 5:         # (hypothesis favours 0)
                    # UPDATE_VADDR: invalidate the vaddr of a mapping, or of a
                    # range of mappings one of which may already be invalid
                    # (the rollback path); restored at the top of the loop
                    iova, size = page_range("unmap")
                    if invalid:                                    # over an invalid one: rollback
                        iova, size = BASE_IOVA, 512 * PAGE
                    actions.append({"op": "unmap", "iova": iova, "size": size, "flags": 4,
                                    "child": int(draw(st.integers(0, 5)) == 1)})
                    lo, hi = (iova - BASE_IOVA) // PAGE, (iova + size - BASE_IOVA) // PAGE
                    invalid.extend(m for m in maps if lo <= m[0] < hi and m not in invalid)
                    continue
                actions.append({"op": "map", "iova": BASE_IOVA + first * PAGE,
                                "size": pages * PAGE, "voff": voff, "flags": flags})
                if not any(f < first + pages and first < f + p for f, p, _ in maps):
                    maps.append((first, pages, flags))
            elif kind in ("get", "unmap_bitmap", "unmap"):
                iova, size = page_range(kind)
                if kind == "unmap" and iommu == "v1" and draw(st.booleans()):
                    # v1: an unmap starting inside a mapping unmaps nothing of it
                    inner = [m for m in maps if m[1] > 1]
                    if inner:
                        f, p, _ = draw(st.sampled_from(inner))
                        iova = BASE_IOVA + (f + draw(st.integers(1, p - 1))) * PAGE
                if kind == "unmap":
                    a = {"op": "unmap", "iova": iova, "size": size}
                    if draw(st.integers(0, 4)) == 1:                # a forked child unmaps it
                        a["child"] = 1
                    if draw(st.integers(0, 9)) == 0:                # one wrong argument
                        what = draw(st.sampled_from(["iova", "size", "argsz", "flags", "null"]))
                        if what == "iova":
                            a["iova"] += draw(st.sampled_from([1, 0x800]))
                        elif what == "size":
                            a["size"] += draw(st.sampled_from([1, 0x800]))
                        elif what == "argsz":
                            a["argsz"] = 23
                        elif what == "null":
                            a["arg"] = 1
                        else:
                            a["flags"] = draw(st.sampled_from([8, 2, 3]))
                else:
                    a = {"op": "get" if kind == "get" else "unmap", "iova": iova, "size": size}
                    if kind == "unmap_bitmap":
                        a["flags"] = 1
                        if draw(st.integers(0, 7)) == 1:
                            a["child"] = 1
                    a = bitmap_buffer(normalise_action(a))
                    a = perturb(a)
                if a["op"] == "unmap" and a.get("argsz", 48) >= 24:
                    lo, hi = (iova - BASE_IOVA) // PAGE, (iova + size - BASE_IOVA) // PAGE
                    maps[:] = [m for m in maps if not (lo <= m[0] < hi)]
                actions.append(a)
            elif kind == "unmap_all":
                # VFIO_DMA_UNMAP_FLAG_ALL: iova and size must be 0
                bad = draw(st.integers(0, 3)) == 0
                actions.append({"op": "unmap", "iova": PAGE if bad else 0, "size": 0, "flags": 2})
                if not bad:
                    maps.clear()
                    invalid.clear()
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
                actions.append({"op": "info",
                                "argsz": draw(st.sampled_from([4096, 4096, 16, 20, 24, 15, 115, 116, 117])),
                                "arg": draw(st.sampled_from([0, 0, 0, 0, 0, 1, 2]))})
            elif kind == "ext":
                actions.append({"op": "ext", "arg": draw(st.sampled_from([1, 3, 6, 9, 10, 4, 2, 8]))})
            elif kind == "devdirty":
                actions.append({"op": "devdirty"})
            elif kind == "dma" and draw(st.integers(0, 2)) == 0:
                # edu's DMA timer costs 100 ms of guest time per transfer:
                # draw it a third as often as its weight says
                def inside(prefer: int) -> int:
                    """In a mapping, one with flags `prefer` (read- or write-only) now and then."""
                    odd = [m for m in maps if m[2] == prefer]
                    if odd and draw(st.booleans()):
                        f, p, _ = draw(st.sampled_from(odd))
                        return BASE_IOVA + (f + draw(st.integers(0, p - 1))) * PAGE
                    if maps and draw(st.integers(0, 9)) < 9:
                        f, p, _ = draw(st.sampled_from(maps))
                        return BASE_IOVA + (f + draw(st.integers(0, p - 1))) * PAGE
                    return BASE_IOVA + draw(st.integers(0, 450)) * PAGE
                src, dst = inside(2), inside(1)
                length = draw(st.sampled_from([64, 256, EDU_DMA_MAX]))
                actions.append({"op": "dma", "src": src, "dst": dst, "len": length})
        script["actions"] = actions[:max_actions]
        return normalise(script)

    return build()
