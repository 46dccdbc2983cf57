"""Hypothesis strategy of random VFIO op-scripts (the driver's strategy protocol).

The generator keeps an optimistic picture of the container (which maps it
asked for, whether tracking was started) only to aim ranges at mapping
boundaries often; the reference model, not this picture, predicts results.
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
        return "unmap_bitmap" if action["flags"] & 1 else "unmap"
    return op


KINDS = ("info", "map", "unmap", "unmap_bitmap", "start", "stop", "dirty_bad", "get", "dma", "ext")


BASE_IOVA = 0x100000
SIZES_PAGES = (1, 2, 3, 4, 5, 7, 8, 15, 16, 17, 31, 32, 33, 63, 64, 65, 70, 100, 128)
# weights of the action kinds (a kind listed k times is drawn k times as often)
KIND_WEIGHTS = (["map"] * 7 + ["get"] * 7 + ["unmap_bitmap"] * 3 + ["unmap"] * 2
                + ["start"] * 3 + ["stop"] * 1 + ["dirty_bad"] * 1 + ["info"] * 1
                + ["dma"] * 1 + ["ext"] * 1)


def scripts(min_actions: int = 5, max_actions: int = 30):
    """Normalised v2 op-scripts of `min_actions` to `max_actions` actions."""

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
