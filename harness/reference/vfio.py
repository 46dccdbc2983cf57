"""Reference model of VFIO type1 dirty page tracking (Linux 6.1).

`predict(script, profile)` returns the events the payload `guests/vfio/vfio.c`
prints for an op-script (without the "script" tag).  A script is::

    {"iommu": "v2" | "v1" | "none", "actions": [action, ...]}

with the actions normalised by `harness.payloads.vfio.normalise` (every key
present).  The model mirrors drivers/vfio/vfio_iommu_type1.c and
drivers/vfio/container.c of Debian's linux-source-6.1 (6.1.192); each rule
names the function it follows.  Bitmaps are modelled word by word, including
the per-mapping kernel bitmap (`vfio_dma->bitmap`, with its extra scratch
word), because the kernel copies whole u64 words to the user and the stale
bits of the 6.1 profile live in the kernel copy.

Profiles:
  "6.1"   the kernel as released: after a GET that packs a mapping at a bit
          offset that is not a multiple of 64, the kernel bitmap keeps the bits
          shifted above nbits (see `_after_get`), later GETs and unmaps report
          them again.
  "fixed" the same kernel with ci/mutants/vfio/fix-stale-bits.patch: after a
          GET the whole kernel bitmap (all words, scratch word included) is
          cleared, so a GET reports exactly the pages of the covered mappings.

The machine is q35 + intel-iommu (QEMU 7.2 defaults, aw-bits 39) with one
`edu` function bound to vfio-pci in the container: an IOMMU-backed group, so
`iommu->num_non_pinned_groups == 1` and every mapping is `iommu_mapped`.
"""
from __future__ import annotations

from dataclasses import dataclass

PROFILES: tuple[str, ...] = ("6.1", "fixed")

U64 = (1 << 64) - 1
PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
INT_MAX = (1 << 31) - 1
SIZE_MAX = U64

# x86_64, 4-level paging: TASK_SIZE_MAX = (1 << 47) - PAGE_SIZE
TASK_SIZE_MAX = (1 << 47) - PAGE_SIZE
KERNEL_PTR = 0xFFFF888000000000
# the payload's buffers live in the mmap area; any address below 2^47 that
# leaves room for a 256 MiB buffer behaves the same for access_ok()
USER_BUF_PTR = 0x7F0000000000

FILL_WORD = 0x5A5A5A5A5A5A5A5A
GUARD = 0xFEEDFACECAFEBEEF
CAP_OFFSET_SENTINEL = 0xDEADBEEF
BITMAP_CAP = (1 << 28) + 8          # payload: largest buffer it allocates
MAX_BITMAP_ENTRIES = 4096           # payload: sparse output limit

# uapi, include/uapi/linux/vfio.h
VFIO_TYPE1_IOMMU = 1
VFIO_TYPE1v2_IOMMU = 3
VFIO_TYPE1_NESTING_IOMMU = 6
VFIO_UNMAP_ALL = 9
VFIO_UPDATE_VADDR = 10
VFIO_DMA_CC_IOMMU = 4
MAP_READ, MAP_WRITE, MAP_VADDR = 1, 2, 4
UNMAP_GET_DIRTY_BITMAP, UNMAP_ALL, UNMAP_VADDR = 1, 2, 4
DIRTY_START, DIRTY_STOP, DIRTY_GET = 1, 2, 4
INFO_PGSIZES, INFO_CAPS = 1, 2
CAP_IOVA_RANGE, CAP_MIGRATION, CAP_DMA_AVAIL = 1, 2, 3

IOMMU_OF = {"v2": VFIO_TYPE1v2_IOMMU, "v1": VFIO_TYPE1_IOMMU, "none": 0}

# The machine (observed on QEMU 7.2, q35 + intel-iommu,caching-mode=on, TCG):
# VT-d second-level page sizes 4K|2M|1G, 39-bit address width, the MSI window
# 0xfee00000-0xfeefffff reserved.
MACHINE = {
    "iova_pgsizes": 0x40201000,
    "iova_ranges": [[0, 0xFEDFFFFF], [0xFEF00000, 0x7FFFFFFFFF]],
    "dma_entry_limit": 0xFFFF,      # vfio_iommu_type1.c: dma_entry_limit = U16_MAX
    # QEMU's intel-iommu without snoop-control: intel_iommu_enforce_cache_coherency()
    # fails, so the domain does not enforce coherency (VFIO_DMA_CC_IOMMU -> 0)
    "enforce_cache_coherency": 0,
}

# drivers/vfio/vfio_iommu_type1.c
def DIRTY_BITMAP_BYTES(n: int) -> int:
    return ((n + 63) // 64) * 8


DIRTY_BITMAP_PAGES_MAX = INT_MAX
DIRTY_BITMAP_SIZE_MAX = DIRTY_BITMAP_BYTES(DIRTY_BITMAP_PAGES_MAX)


def ffs0(x: int) -> int:
    """__ffs() as the x86 kernel computes it (tzcnt: __ffs(0) == 64)."""
    x &= U64
    return (x & -x).bit_length() - 1 if x else 64


def shr(x: int, n: int) -> int:
    """x86 shr: the count is taken modulo 64."""
    return (x & U64) >> (n & 63)


def access_ok(addr: int, size: int) -> bool:
    # include/asm-generic/access_ok.h: __access_ok()
    return size <= TASK_SIZE_MAX and addr <= TASK_SIZE_MAX - size


def data_ptr(kind: int) -> int:
    return {0: USER_BUF_PTR, 1: 0, 2: KERNEL_PTR}[kind]


@dataclass
class Dma:
    """struct vfio_dma."""
    iova: int
    size: int
    prot: int
    vaddr_invalid: bool = False
    bitmap: list[int] | None = None   # words, DIRTY_BITMAP_BYTES(npages)/8 + 1

    @property
    def end(self) -> int:
        return self.iova + self.size


class Fault(Exception):
    """copy_{from,to}_user failed: -EFAULT."""


class UserBuffer:
    """The payload's bitmap buffer: `nwords` u64 between two guard words."""

    def __init__(self, bsize: int, fill: int, kind: int):
        alloc = (min(bsize, BITMAP_CAP) + 7) & ~7
        self.nwords = alloc // 8
        self.fillw = FILL_WORD if fill else 0
        self.kind = kind
        self.words: dict[int, int] = {}
        self.guards = [GUARD, GUARD]

    def read(self, idx: int) -> int:
        if self.kind != 0:
            raise Fault()
        if idx < self.nwords:
            return self.words.get(idx, self.fillw)
        if idx == self.nwords:
            return self.guards[1]
        raise Fault()        # the payload puts an inaccessible page there

    def write(self, idx: int, values: list[int]) -> None:
        if self.kind != 0:
            raise Fault()
        for j, v in enumerate(values):
            i = idx + j
            if i < self.nwords:
                self.words[i] = v & U64
            elif i == self.nwords:
                self.guards[1] = v & U64
            else:
                raise Fault()

    def report(self, ev: dict) -> None:
        entries = sorted((i, v) for i, v in self.words.items() if v != self.fillw)
        if len(entries) > MAX_BITMAP_ENTRIES:
            ev["bitmap"] = [list(e) for e in entries[:MAX_BITMAP_ENTRIES]]
            ev["bitmap_truncated"] = True
        else:
            ev["bitmap"] = [list(e) for e in entries]
        ev["guards"] = list(self.guards)


def bitmap_set(bm: list[int], start: int, n: int) -> None:
    # lib/bitmap.c: __bitmap_set()
    for b in range(start, start + n):
        bm[b >> 6] |= 1 << (b & 63)


def bitmap_clear(bm: list[int], start: int, n: int) -> None:
    # lib/bitmap.c: __bitmap_clear()
    for b in range(start, start + n):
        bm[b >> 6] &= ~(1 << (b & 63))


def bitmap_fill_range(bm: list[int], start: int, n: int, on: bool) -> None:
    """bitmap_set/clear on whole words at once (same result, faster)."""
    end = start + n
    while start < end:
        w, b = start >> 6, start & 63
        take = min(64 - b, end - start)
        mask = ((1 << take) - 1) << b
        bm[w] = (bm[w] | mask) if on else (bm[w] & ~mask)
        start += take


def bitmap_shift_left_inplace(bm: list[int], shift: int, nbits: int) -> None:
    # lib/bitmap.c: __bitmap_shift_left(dst == src, shift < 64): words below
    # BITS_TO_LONGS(nbits) are shifted; bits above nbits in the last word are
    # NOT masked off, words at or above BITS_TO_LONGS(nbits) are untouched.
    lim = (nbits + 63) // 64
    rem = shift % 64
    for k in range(lim - 1, -1, -1):
        lower = (bm[k - 1] >> (64 - rem)) if (rem and k > 0) else 0
        upper = (bm[k] << rem) & U64
        bm[k] = lower | upper


class Container:
    def __init__(self, iommu: int, profile: str):
        self.iommu = iommu                 # 0: no VFIO_SET_IOMMU
        self.v2 = iommu == VFIO_TYPE1v2_IOMMU
        self.profile = profile
        self.dmas: list[Dma] = []          # sorted by iova (the rb-tree)
        self.tracking = False              # iommu->dirty_page_tracking
        self.dma_avail = MACHINE["dma_entry_limit"]
        self.pgsize = 1 << ffs0(MACHINE["iova_pgsizes"])   # 1 << __ffs(pgsize_bitmap)
        self.pgshift = ffs0(self.pgsize)
        self.num_non_pinned_groups = 1     # the edu group (vfio-pci, IOMMU backed)
        self.findings: list[dict] = []

    # ---------------------------------------------------------------- lookups
    def find_dma(self, start: int, size: int) -> Dma | None:
        # vfio_find_dma(): rb-tree walk with u64 arithmetic (start + size may wrap)
        end = (start + size) & U64
        lo, hi = 0, len(self.dmas)
        # the tree is balanced, but for disjoint intervals any walk finds the
        # same overlapping node, so a scan is equivalent; wrap-around of
        # start+size makes "start + size <= dma->iova" true for every node
        # (the walk always goes left and finds nothing)
        for dma in self.dmas[lo:hi]:
            if end <= dma.iova:
                continue
            if start >= dma.end:
                continue
            return dma
        return None

    def insert(self, dma: Dma) -> None:
        self.dmas.append(dma)
        self.dmas.sort(key=lambda d: d.iova)

    def remove(self, dma: Dma) -> None:
        # vfio_remove_dma(): unmap/unpin, free the bitmap, dma_avail++
        self.dmas.remove(dma)
        self.dma_avail += 1

    def new_bitmap(self, dma: Dma) -> list[int]:
        # vfio_dma_bitmap_alloc(): kvzalloc(DIRTY_BITMAP_BYTES(npages) + sizeof(u64))
        npages = dma.size // self.pgsize
        return [0] * (DIRTY_BITMAP_BYTES(npages) // 8 + 1)

    # ---------------------------------------------------------------- bitmaps
    def update_user_bitmap(self, user: UserBuffer, dma: Dma, base_iova: int) -> None:
        """vfio_iommu_type1.c: update_user_bitmap(); raises Fault for -EFAULT."""
        pgshift = self.pgshift
        nbits = dma.size >> pgshift
        bit_offset = ((dma.iova - base_iova) & U64) >> pgshift
        copy_offset = bit_offset // 64
        shift = bit_offset % 64
        bm = dma.bitmap
        assert bm is not None
        # "mark all pages dirty if any IOMMU capable device is not able to
        # report dirty pages": num_non_pinned_groups && dma->iommu_mapped
        if self.num_non_pinned_groups:
            bitmap_fill_range(bm, 0, nbits, True)
        if shift:
            # bitmap_shift_left(dma->bitmap, dma->bitmap, shift, nbits + shift):
            # in place, the last word is not trimmed.
            bitmap_shift_left_inplace(bm, shift, nbits + shift)
            leftover = user.read(copy_offset)        # copy_from_user -> EFAULT
            # bitmap_or(dma->bitmap, dma->bitmap, &leftover, shift): shift is
            # not a compile-time constant, so __bitmap_or() ORs
            # BITS_TO_LONGS(shift) = 1 whole word: every bit of the user's
            # word, not only the low `shift` bits.
            bm[0] |= leftover
        nwords = DIRTY_BITMAP_BYTES(nbits + shift) // 8
        user.write(copy_offset, bm[:nwords])        # copy_to_user -> EFAULT

    def after_get(self, dma: Dma) -> None:
        """vfio_iova_dirty_bitmap(): the kernel bitmap after a GET copied it out."""
        nbits = dma.size >> self.pgshift
        bm = dma.bitmap
        assert bm is not None
        if self.profile == "6.1":
            # 6.1: bitmap_clear(dma->bitmap, 0, dma->size >> pgshift) clears
            # only [0, nbits).  When update_user_bitmap() shifted the bitmap by
            # `shift` (a mapping not at a multiple of 64 pages from the GET
            # base), bits [nbits, nbits + shift) now hold the mapping's top
            # bits and the neighbour bits OR-ed in from the user word; they
            # survive here and are copied out again by the next GET/unmap
            # (over-reporting until STOP frees the bitmap).
            bitmap_fill_range(bm, 0, nbits, False)
        else:
            # fixed: the whole allocation is cleared (fix-stale-bits.patch)
            for i in range(len(bm)):
                bm[i] = 0
        # vfio_dma_populate_bitmap(): no pinned pages with vfio-pci (no
        # vfio_pin_pages() callers), nothing to re-populate.

    # ---------------------------------------------------------------- ioctls
    def op_info(self, a: dict) -> dict:
        ev = {"op": "info"}
        if not self.iommu:
            # container.c: vfio_fops_unl_ioctl(), no driver -> -EINVAL
            ev["result"] = "EINVAL"
            return ev
        argsz = a["argsz"]
        # vfio_iommu_type1_get_info(): minsz = offsetofend(iova_pgsizes) = 16
        if argsz < 16:
            ev["result"] = "EINVAL"
            return ev
        caps = [
            # vfio_iommu_migration_build_caps(): pgsize_bitmap is only the
            # smallest page size; max = DIRTY_BITMAP_SIZE_MAX
            ({"id": CAP_MIGRATION, "version": 1, "flags": 0, "hole": 0,
              "pgsize_bitmap": self.pgsize,
              "max_dirty_bitmap_size": DIRTY_BITMAP_SIZE_MAX}, 32),
            # vfio_iommu_dma_avail_build_caps()
            ({"id": CAP_DMA_AVAIL, "version": 1, "avail": self.dma_avail}, 12),
            # vfio_iommu_iova_build_caps(): one IOVA list (IOMMU-backed group)
            ({"id": CAP_IOVA_RANGE, "version": 1,
              "ranges": [list(r) for r in MACHINE["iova_ranges"]]},
             16 + 16 * len(MACHINE["iova_ranges"])),
        ]
        caps_size = sum(size for _, size in caps)     # packed back to back in 6.1
        needed = 24 + caps_size
        capsz = 20                                    # offsetofend(cap_offset)
        ev.update(result="ok", flags=INFO_PGSIZES | INFO_CAPS,
                  iova_pgsizes=MACHINE["iova_pgsizes"])
        if argsz < needed:
            ev["argsz"] = needed
            ev["cap_offset"] = 0 if argsz >= capsz else CAP_OFFSET_SENTINEL
            ev["caps"] = []
        else:
            ev["argsz"] = argsz
            ev["cap_offset"] = 24
            ev["caps"] = [c for c, _ in caps]
        order = ["argsz", "flags", "iova_pgsizes", "cap_offset", "caps"]
        return {"op": "info", "result": "ok", **{k: ev[k] for k in order}}

    def op_map(self, a: dict) -> dict:
        ev = {"op": "map"}
        ev["result"] = self._map(a)
        return ev

    def _map(self, a: dict) -> str:
        if not self.iommu:
            return "EINVAL"
        # vfio_iommu_type1_map_dma(): minsz = 32, flags mask READ|WRITE|VADDR
        if a["argsz"] < 32 or a["flags"] & ~(MAP_READ | MAP_WRITE | MAP_VADDR):
            return "EINVAL"
        # vfio_dma_do_map()
        prot = a["flags"] & (MAP_READ | MAP_WRITE)
        set_vaddr = bool(a["flags"] & MAP_VADDR)
        if (prot and set_vaddr) or (not prot and not set_vaddr):
            return "EINVAL"
        iova, size, vaddr = a["iova"], a["size"], a["voff"]   # the arena is page aligned
        pg = self.pgsize
        if not size or (size | iova | vaddr) & (pg - 1):
            return "EINVAL"
        if ((iova + size - 1) & U64) < iova:
            return "EINVAL"
        dma = self.find_dma(iova, size)
        if set_vaddr:
            if dma is None:
                return "ENOENT"
            if not dma.vaddr_invalid or dma.iova != iova or dma.size != size:
                return "EINVAL"
            dma.vaddr_invalid = False                # vfio_change_dma_owner(): same mm
            return "ok"
        if dma is not None:
            return "EEXIST"
        if not self.dma_avail:
            return "ENOSPC"
        # vfio_iommu_iova_dma_valid(): [iova, iova + size - 1] inside one range
        last = iova + size - 1
        if not any(s <= iova and last <= e for s, e in MACHINE["iova_ranges"]):
            return "EINVAL"
        new = Dma(iova, size, prot)
        # vfio_pin_map_dma(): the arena is populated, pinning succeeds
        if self.tracking:
            # vfio_dma_bitmap_alloc() while tracking
            if size // pg > DIRTY_BITMAP_PAGES_MAX:
                return "EINVAL"
            new.bitmap = self.new_bitmap(new)
        self.dma_avail -= 1
        self.insert(new)
        return "ok"

    def op_unmap(self, a: dict) -> dict:
        user = UserBuffer(a["bsize"], a["fill"], a["data"])
        result, size = self._unmap(a, user)
        ev = {"op": "unmap", "result": result, "size": size}
        if a["flags"] & UNMAP_GET_DIRTY_BITMAP and a["data"] == 0:
            user.report(ev)
        return ev

    def _unmap(self, a: dict, user: UserBuffer) -> tuple[str, int]:
        insize = a["size"]
        if not self.iommu:
            return "EINVAL", insize
        flags = a["flags"]
        # vfio_iommu_type1_unmap_dma()
        if a["argsz"] < 24 or flags & ~(UNMAP_GET_DIRTY_BITMAP | UNMAP_ALL | UNMAP_VADDR):
            return "EINVAL", insize
        if flags & UNMAP_GET_DIRTY_BITMAP and flags & (UNMAP_ALL | UNMAP_VADDR):
            return "EINVAL", insize
        if flags & UNMAP_GET_DIRTY_BITMAP:
            if a["argsz"] < 24 + 24:
                return "EINVAL", insize
            if not access_ok(data_ptr(a["data"]), a["bsize"]):
                return "EINVAL", insize
            if verify_bitmap_size(shr(insize, ffs0(a["pgsize"])), a["bsize"]):
                return "EINVAL", insize
        # vfio_dma_do_unmap()
        iova, size = a["iova"], insize
        unmap_all = bool(flags & UNMAP_ALL)
        invalidate_vaddr = bool(flags & UNMAP_VADDR)
        pg = self.pgsize
        if iova & (pg - 1):
            return "EINVAL", insize
        if unmap_all:
            if iova or size:
                return "EINVAL", insize
            size = U64
        elif not size or size & (pg - 1) or ((iova + size - 1) & U64) < iova or size > SIZE_MAX:
            return "EINVAL", insize
        # "When dirty tracking is enabled, allow only min supported pgsize"
        if flags & UNMAP_GET_DIRTY_BITMAP and (not self.tracking or a["pgsize"] != pg):
            return "EINVAL", insize
        end = (iova + size) & U64
        if self.v2 and not unmap_all:
            dma = self.find_dma(iova, 1)
            if dma and dma.iova != iova:
                return "EINVAL", insize
            dma = self.find_dma((iova + size - 1) & U64, 0)
            if dma and dma.end != end:
                return "EINVAL", insize
        # vfio_find_dma_first_node(): lowest dma with end > iova, NULL when it
        # starts at or after iova + size (u64: a range ending at 2^64 finds none)
        first = next((i for i, d in enumerate(self.dmas) if iova < d.end), None)
        if first is not None and size and self.dmas[first].iova >= end:
            first = None
        unmapped = 0
        if first is None:
            return "ok", 0
        victims = []
        touched_vaddr: list[Dma] = []
        for dma in list(self.dmas[first:]):
            if dma.iova >= end:
                break
            if not self.v2 and iova > dma.iova:
                break
            if invalidate_vaddr:
                if dma.vaddr_invalid:
                    for d in touched_vaddr:
                        d.vaddr_invalid = False
                    return "EINVAL", insize
                dma.vaddr_invalid = True
                touched_vaddr.append(dma)
                unmapped += dma.size
                continue
            if flags & UNMAP_GET_DIRTY_BITMAP:
                try:
                    self.update_user_bitmap(user, dma, iova)
                except Fault:
                    # the faulting mapping and later ones stay; earlier ones are gone
                    return "EFAULT", insize
            unmapped += dma.size
            self.remove(dma)
            victims.append(dma)
        return "ok", unmapped

    def op_dirty(self, a: dict) -> dict:
        return {"op": "dirty", "result": self._dirty(a, None)}

    def op_get(self, a: dict) -> dict:
        user = UserBuffer(a["bsize"], a["fill"], a["data"])
        ev = {"op": "get", "result": self._dirty(a, user)}
        if a["data"] == 0:
            user.report(ev)
        return ev

    def _dirty(self, a: dict, user: UserBuffer | None) -> str:
        if not self.iommu:
            return "EINVAL"
        # vfio_iommu_type1_dirty_pages()
        if not self.v2:
            return "EACCES"
        if a.get("null"):
            return "EFAULT"
        flags = a["flags"]
        if a["argsz"] < 8 or flags & ~(DIRTY_START | DIRTY_STOP | DIRTY_GET):
            return "EINVAL"
        # "only one flag should be set at a time"; flags == 0 also ends in -EINVAL
        if bin(flags).count("1") != 1:
            return "EINVAL"
        if flags == DIRTY_START:
            if not self.tracking:
                # vfio_dma_bitmap_alloc_all()
                for dma in self.dmas:
                    if dma.size // self.pgsize > DIRTY_BITMAP_PAGES_MAX:
                        for d in self.dmas:
                            d.bitmap = None
                        return "EINVAL"
                    dma.bitmap = self.new_bitmap(dma)
                self.tracking = True
            return "ok"
        if flags == DIRTY_STOP:
            if self.tracking:
                self.tracking = False
                for dma in self.dmas:           # vfio_dma_bitmap_free_all()
                    dma.bitmap = None
            return "ok"
        # GET_BITMAP
        if a["argsz"] - 8 < 40:
            return "EINVAL"
        if user is None:
            # the "dirty" action passes a zeroed range: size 0 -> verify_bitmap_size()
            return "EINVAL"
        iova, size, pgsize, bsize = a["iova"], a["size"], a["pgsize"], a["bsize"]
        if ((iova + size) & U64) < iova:
            return "EINVAL"
        if not access_ok(data_ptr(a["data"]), bsize):
            return "EINVAL"
        if verify_bitmap_size(shr(size, ffs0(pgsize)), bsize):
            return "EINVAL"
        pg = self.pgsize
        if pgsize != pg:
            return "EINVAL"
        if iova & (pg - 1):
            return "EINVAL"
        if not size or size & (pg - 1):
            return "EINVAL"
        if not self.tracking:
            return "EINVAL"
        return self._iova_dirty_bitmap(user, iova, size)

    def _iova_dirty_bitmap(self, user: UserBuffer, iova: int, size: int) -> str:
        # vfio_iova_dirty_bitmap(): no bisected mapping at either end
        dma = self.find_dma(iova, 1)
        if dma and dma.iova != iova:
            return "EINVAL"
        dma = self.find_dma(iova + size - 1, 0)
        if dma and dma.end != iova + size:
            return "EINVAL"
        last = iova + size - 1
        for dma in list(self.dmas):
            if dma.iova < iova:
                continue
            if dma.iova > last:
                break
            try:
                self.update_user_bitmap(user, dma, iova)
            except Fault:
                return "EFAULT"
            self.after_get(dma)
        return "ok"

    def op_dma(self, a: dict) -> dict:
        # The edu device reads [src, src+len) and writes [dst, dst+len)
        # through the vIOMMU.  Writes need a mapping with WRITE.  Reads need
        # only a mapping: drivers/iommu/intel/iommu.c: __domain_mapping() sets
        # DMA_FL_PTE_PRESENT (bit 0, the same bit as DMA_PTE_READ) in every
        # PTE, so a write-only MAP_DMA is device-readable on VT-d.
        ok = (self._covered(a["src"], a["len"], MAP_READ | MAP_WRITE)
              and self._covered(a["dst"], a["len"], MAP_WRITE))
        return {"op": "dma", "result": "match" if ok else "mismatch"}

    def _covered(self, start: int, length: int, prot: int) -> bool:
        pos, end = start, start + length
        while pos < end:
            dma = next((d for d in self.dmas if d.iova <= pos < d.end), None)
            if dma is None or not dma.prot & prot:
                return False
            pos = dma.end
        return True

    def op_ext(self, a: dict) -> dict:
        # vfio_iommu_type1_check_extension(iommu, arg).  Before VFIO_SET_IOMMU,
        # container.c: vfio_container_ioctl_check_extension() polls every
        # registered driver with iommu_data == NULL (type1 is the only one:
        # no spapr on x86, no CONFIG_VFIO_NOIOMMU) and returns the first
        # positive answer, else 0.
        arg = a["arg"]
        have_iommu = bool(self.iommu)
        if arg in (VFIO_TYPE1_IOMMU, VFIO_TYPE1v2_IOMMU, VFIO_TYPE1_NESTING_IOMMU, VFIO_UNMAP_ALL):
            value = 1
        elif arg == VFIO_UPDATE_VADDR:
            # "iommu && !vfio_iommu_has_emulated(iommu)": no emulated (mdev) group
            value = 1 if have_iommu else 0
        elif arg == VFIO_DMA_CC_IOMMU:
            # "if (!iommu) return 0"; else vfio_domains_have_enforce_cache_coherency()
            value = MACHINE["enforce_cache_coherency"] if have_iommu else 0
        else:
            value = 0
        return {"op": "ext", "result": "ok", "value": value}

    def op_devdirty(self, a: dict) -> dict:
        # 0x3b75 on a device fd is VFIO_DEVICE_FEATURE: flags 1 = feature
        # MIGRATION without GET/SET/PROBE; vfio_main.c:
        # vfio_ioctl_device_feature() -> vfio-pci has no migration ops -> -ENOTTY
        return {"op": "devdirty", "result": "ENOTTY"}


def verify_bitmap_size(npages: int, bitmap_size: int) -> bool:
    """vfio_iommu_type1.c: verify_bitmap_size(); True means -EINVAL."""
    return (not npages or not bitmap_size or bitmap_size > DIRTY_BITMAP_SIZE_MAX
            or bitmap_size < DIRTY_BITMAP_BYTES(npages))


def predict(script: dict, profile: str = PROFILES[0]) -> list[dict]:
    """The events the payload prints for `script` (normalised), in order."""
    if profile not in PROFILES:
        raise ValueError(f"unknown vfio profile {profile!r} (known: {', '.join(PROFILES)})")
    iommu = IOMMU_OF[script["iommu"]]
    c = Container(iommu, profile)
    events: list[dict] = [{"op": "setup", "iommu": iommu, "result": "ok"}]
    for a in script["actions"]:
        op = a["op"]
        handler = getattr(c, f"op_{op}", None)
        if handler is None:
            raise ValueError(f"the vfio model has no action {op!r}")
        events.append(handler(a))
    return events


# ---------------------------------------------------------------------------
# v1 migration region (the series' KABI, include/uapi/linux/vfio.h of 5.8-5.17;
# struct vfio_device_migration_info, kept as VFIO_DEVICE_STATE_V1_* in 6.1)

V1_STOP, V1_RUNNING, V1_SAVING, V1_RESUMING = 0, 1, 2, 4
V1_MASK = V1_RUNNING | V1_SAVING | V1_RESUMING
V1_NAMES = {0: "STOP", 1: "RUNNING", 2: "STOP_COPY", 3: "PRE_COPY", 4: "RESUMING",
            5: "INVALID(101b)", 6: "ERROR", 7: "INVALID(111b)"}


def v1_state_valid(state: int) -> bool:
    """VFIO_DEVICE_STATE_VALID(): RESUMING excludes every other bit."""
    return (state & V1_MASK) == V1_RESUMING if state & V1_RESUMING else True


def v1_state_is_error(state: int) -> bool:
    """VFIO_DEVICE_STATE_IS_ERROR(): SAVING | RESUMING."""
    return (state & V1_MASK) == (V1_SAVING | V1_RESUMING)


# The transitions a vendor driver must support (uapi comment of the series,
# "State transitions"): shutdown, save/suspend, live migration, resume.
V1_REQUIRED = {
    (V1_RUNNING, V1_STOP),                                   # 1. normal shutdown
    (V1_RUNNING, V1_SAVING),                                 # 2. RUNNING -> stop-and-copy
    (V1_SAVING, V1_STOP),                                    #    stop-and-copy -> STOP
    (V1_RUNNING, V1_RUNNING | V1_SAVING),                    # 3. RUNNING -> pre-copy
    (V1_RUNNING | V1_SAVING, V1_SAVING),                     #    pre-copy -> stop-and-copy
    (V1_RUNNING, V1_RESUMING),                               # 4. RUNNING -> RESUMING
    (V1_RESUMING, V1_RUNNING),                               # 5. RESUMING -> RUNNING
}


def v1_transition(current: int, new: int) -> set[tuple[str, int]]:
    """Outcomes allowed by the v1 KABI for a write of `new` to device_state.

    Returns a set of (result, device_state read back).  Invalid encodings must
    fail and leave the state; the error state only leaves by device reset (not
    by a write); the required arcs must succeed; other valid arcs are the
    driver's choice ("must not require any other transitions"): success, or
    failure with the state unchanged or the error state.
    """
    if not v1_state_valid(new) or v1_state_is_error(new):
        return {("error", current)}
    if v1_state_is_error(current):
        return {("error", current)}
    if new == current:
        return {("ok", new)}
    if (current, new) in V1_REQUIRED:
        return {("ok", new)}
    return {("ok", new), ("error", current), ("error", V1_SAVING | V1_RESUMING)}


def v1_walk(writes: list[int], start: int = V1_RUNNING) -> list[set[tuple[str, int]]]:
    """Allowed outcomes per write of a sequence, following the required arcs.

    When an optional arc leaves the outcome open, the model follows the state
    the device reports (the caller compares outcome by outcome).
    """
    out = []
    state = start
    for new in writes:
        allowed = v1_transition(state, new)
        out.append(allowed)
        if len(allowed) == 1:
            state = next(iter(allowed))[1]
        else:
            state = new       # optimistic; the test re-reads device_state
    return out


# ---------------------------------------------------------------------------
# Findings: kernel behaviour the 6.1 profile reproduces but the intended
# semantics ("fixed") do not (design section 5).

STALE_BITS = {
    "id": "vfio/stale-bits-after-shifted-merge",
    "title": "type1 GET_BITMAP/unmap report stale dirty bits after a GET packed a mapping "
             "at a bit offset that is not a multiple of 64",
    "mechanism": (
        "drivers/vfio/vfio_iommu_type1.c: update_user_bitmap() shifts the mapping's own "
        "bitmap in place (bitmap_shift_left(dma->bitmap, dma->bitmap, shift, nbits + shift)) "
        "and ORs the whole user word at copy_offset into its first word (__bitmap_or over "
        "BITS_TO_LONGS(shift) = 1 word), so the kernel copy now holds bits up to "
        "nbits + shift (and the neighbour's bits); vfio_iova_dirty_bitmap() then clears only "
        "[0, nbits) (bitmap_clear(dma->bitmap, 0, dma->size >> pgshift)). The leftovers are "
        "copied out again, whole words, by later GETs and unmap-with-bitmap: over-reporting "
        "(never a lost page) until STOP frees the bitmap."),
}


def findings(script: dict, observed: list[dict]) -> list[dict]:
    """The stale-bits finding when this trace is the 6.1 one and the intended
    semantics (the "fixed" profile) predict different bits for some event."""
    import json

    from harness.compare import first_divergence
    from harness.payloads.vfio import locate

    if first_divergence(predict(script, "6.1"), observed) is not None:
        return []
    found = first_divergence(predict(script, "fixed"), observed,
                             lambda index, event: locate(script, index, event)[1])
    if found is None:
        return []
    where = f"step {found.step} ({found.action}): {found.field}"

    def show(value) -> str:
        return hex(value) if isinstance(value, int) else json.dumps(value)
    return [{**STALE_BITS, "intended": f"{where} = {show(found.expected)}",
             "observed": f"{where} = {show(found.observed)}"}]
