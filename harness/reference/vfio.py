"""Reference model of VFIO type1 dirty page tracking (Linux 6.1).

`predict(script, profile)` returns the events the payload `guests/vfio/vfio.c`
prints for an op-script (without the "script" tag).  A script is::

    {"iommu": "v2" | "v1" | "none" | "noiommu", "dma_entry_limit": 65535,
     "memlock": 0, "actions": [action, ...]}

normalised by `harness.payloads.vfio.normalise` (every key present).  The
model mirrors drivers/vfio/vfio_iommu_type1.c and drivers/vfio/container.c
of Debian's linux-source-6.1 (6.1.192).  Every branch that decides an
observable outcome calls `hit()` with a rule id `<file>:<function>:<branch>`
(harness/reference/rules.py) with the kernel function it follows; the
branches no case can take on this machine are listed in `UNREACHABLE` with the
reason.  Bitmaps are modelled word by word, including the per-mapping kernel
bitmap (`vfio_dma->bitmap`, with its extra scratch word), because the kernel
copies whole u64 words to the user and the stale bits of the 6.1 profile live
in the kernel copy.

Profiles:
  "6.1"   the kernel as released: after a GET that packs a mapping at a bit
          offset that is not a multiple of 64, the kernel bitmap keeps the bits
          shifted above nbits (see `after_get`), later GETs and unmaps report
          them again.
  "fixed" the same kernel with ci/mutants/vfio/fix-stale-bits.patch: after a
          GET the whole kernel bitmap (all words, scratch word included) is
          cleared, so a GET reports exactly the pages of the covered mappings.

The machine is q35 + intel-iommu (QEMU 7.2 defaults, aw-bits 39) with one
`edu` function bound to vfio-pci in the container: an IOMMU-backed group, so
`iommu->num_non_pinned_groups == 1`, there is one IOMMU domain and every
mapping is pinned and `iommu_mapped`.

Script-level settings (the payload applies them around the script):
  dma_entry_limit  written to /sys/module/vfio_iommu_type1/parameters/
                   dma_entry_limit before VFIO_SET_IOMMU (vfio_iommu_type1_open()
                   copies it into iommu->dma_avail), restored right after;
  memlock          0: the payload keeps CAP_IPC_LOCK (root: dma->lock_cap, no
                   limit); else it drops CAP_IPC_LOCK from its effective set and
                   sets RLIMIT_MEMLOCK to this many bytes for the script.
"""
from __future__ import annotations

from dataclasses import dataclass

from harness.reference.rules import hit

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
# where the payload's MAP_DMA arena stands in the model: page aligned, far
# from wrapping (the real one is an mmap below 2^47)
USER_ARENA_PTR = 0x7E0000000000

FILL_WORD = 0x5A5A5A5A5A5A5A5A
GUARD = 0xFEEDFACECAFEBEEF
CAP_OFFSET_SENTINEL = 0xDEADBEEF
INFO_FILL = 0xA5                     # payload: every byte of the GET_INFO buffer before the call
INFO_PAD = 0xA5A5A5A5                # bytes 20-23: never written (minsz <= 20)
BITMAP_CAP = (1 << 28) + 8          # payload: largest buffer it allocates
MAX_BITMAP_ENTRIES = 4096           # payload: sparse output limit

# how the payload passes an ioctl's argument ("arg" key)
ARG_OK, ARG_NULL, ARG_SPLIT = 0, 1, 2   # split: the fixed header readable, the rest on a PROT_NONE page

# uapi, include/uapi/linux/vfio.h
VFIO_TYPE1_IOMMU = 1
VFIO_TYPE1v2_IOMMU = 3
VFIO_TYPE1_NESTING_IOMMU = 6
VFIO_NOIOMMU_IOMMU = 8
VFIO_UNMAP_ALL = 9
VFIO_UPDATE_VADDR = 10
VFIO_DMA_CC_IOMMU = 4
MAP_READ, MAP_WRITE, MAP_VADDR = 1, 2, 4
UNMAP_GET_DIRTY_BITMAP, UNMAP_ALL, UNMAP_VADDR = 1, 2, 4
DIRTY_START, DIRTY_STOP, DIRTY_GET = 1, 2, 4
INFO_PGSIZES, INFO_CAPS = 1, 2
CAP_IOVA_RANGE, CAP_MIGRATION, CAP_DMA_AVAIL = 1, 2, 3

IOMMU_OF = {"v2": VFIO_TYPE1v2_IOMMU, "v1": VFIO_TYPE1_IOMMU, "none": 0, "noiommu": VFIO_NOIOMMU_IOMMU}

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
    # the container's groups: the edu function (vfio-pci, IOMMU backed); no
    # emulated-IOMMU (mdev) group
    "non_pinned_groups": 1,
    "emulated_groups": 0,
}

# Rules the model states (a hit() below) that no case can take on this
# machine, and why.
_NO_PINNING = ("only a driver that calls vfio_pin_pages() (in 6.1: i915 kvmgt on a real Intel "
               "iGPU, s390 vfio-ccw and vfio-ap) moves a group into the pinned-page dirty scope "
               "or puts pages on a vfio_dma's pfn_list; vfio-pci (edu) never pins, no in-tree "
               "sample (mtty, mdpy, mbochs) does either")
_NO_MDEV = ("needs an emulated-IOMMU (mdev) group in the container; the machine has only the "
            "edu function on vfio-pci (Debian's 6.1 has CONFIG_VFIO_MDEV=m but no sample "
            "driver, CONFIG_SAMPLES is off)")
_V1_REGION = ("no device here offers the v1 migration region (VFIO_REGION_TYPE_MIGRATION_"
              "DEPRECATED): no in-tree driver ever implemented it, edu on vfio-pci has none, so "
              "vfio/migration/v1-region-state-table SKIPs; the state table is only run on a "
              "device that has the region")
UNREACHABLE: dict[str, str] = {
    "vfio_iommu_type1.c:update_user_bitmap:pinned-scope-no-fill": _NO_PINNING,
    "vfio_iommu_type1.c:vfio_dma_do_unmap:pinned-pages-notify-driver": _NO_PINNING,
    "vfio_iommu_type1.c:vfio_dma_populate_bitmap:pinned-pages-set": _NO_PINNING,
    "vfio_iommu_type1.c:vfio_dma_do_unmap:vaddr-with-emulated-group-ebusy": _NO_MDEV,
    "vfio_iommu_type1.c:vfio_iommu_type1_check_extension:update-vaddr-emulated-group": _NO_MDEV,
    "vfio_iommu_type1.c:vfio_iommu_iova_build_caps:no-iova-list":
        "the IOVA list is empty only in a container of mdev groups alone; " + _NO_MDEV,
    "vfio_iommu_type1.c:vfio_dma_do_map:no-domain-not-pinned":
        "a container without an IOMMU domain holds only mdev groups; " + _NO_MDEV,
    "vfio_iommu_type1.c:vfio_dma_bitmap_alloc:too-many-pages-einval": (
        "a mapping of more than DIRTY_BITMAP_PAGES_MAX (2^31) pages is 8 TiB of pinned memory "
        "with an IOMMU domain (the guest has 1 GiB, the payload's arena 16 MiB); only an mdev-only "
        "container maps without pinning"),
    "vfio_iommu_type1.c:vfio_iova_dirty_bitmap:clear-whole-bitmap": (
        "the 'fixed' profile's rule (ci/mutants/vfio/fix-stale-bits.patch); rule coverage is "
        "computed for the expected profile, 6.1, which never takes it"),
    "vfio.h:vfio_device_migration_info:invalid-or-error-write-refused": _V1_REGION,
    "vfio.h:vfio_device_migration_info:error-state-sticks": _V1_REGION,
    "vfio.h:vfio_device_migration_info:same-state": _V1_REGION,
    "vfio.h:vfio_device_migration_info:required-arc": _V1_REGION,
    "vfio.h:vfio_device_migration_info:optional-arc": _V1_REGION,
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


def bitmap_size_error(npages: int, bitmap_size: int) -> str | None:
    """vfio_iommu_type1.c: verify_bitmap_size(); the reason for -EINVAL, or None."""
    if not npages:
        hit("vfio_iommu_type1.c:verify_bitmap_size:no-pages")
        return "no pages"
    if not bitmap_size:
        hit("vfio_iommu_type1.c:verify_bitmap_size:size-zero")
        return "bitmap.size 0"
    if bitmap_size > DIRTY_BITMAP_SIZE_MAX:
        hit("vfio_iommu_type1.c:verify_bitmap_size:over-max")
        return "bitmap.size above DIRTY_BITMAP_SIZE_MAX"
    if bitmap_size < DIRTY_BITMAP_BYTES(npages):
        hit("vfio_iommu_type1.c:verify_bitmap_size:short")
        return "bitmap.size below DIRTY_BITMAP_BYTES(npages)"
    hit("vfio_iommu_type1.c:verify_bitmap_size:fits")
    return None


def verify_bitmap_size(npages: int, bitmap_size: int) -> bool:
    """vfio_iommu_type1.c: verify_bitmap_size(); True means -EINVAL."""
    return bitmap_size_error(npages, bitmap_size) is not None


@dataclass
class Dma:
    """struct vfio_dma."""
    iova: int
    size: int
    prot: int
    vaddr_invalid: bool = False
    bitmap: list[int] | None = None   # words, DIRTY_BITMAP_BYTES(npages)/8 + 1
    iommu_mapped: bool = True         # pinned and mapped into the (one) IOMMU domain
    pinned: int = 0                   # pages on pfn_list (vfio_pin_pages(): never here)

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

    def read(self, idx: int) -> int:  # not a rule: the payload's memory; the fault is ruled where the kernel copies
        if self.kind != 0:
            raise Fault()
        if idx < self.nwords:
            return self.words.get(idx, self.fillw)
        if idx == self.nwords:
            return self.guards[1]
        raise Fault()        # the payload puts an inaccessible page there

    def write(self, idx: int, values: list[int]) -> None:  # not a rule: the payload's memory (as read)
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

    def report(self, ev: dict) -> None:  # not a rule: rendering (the payload's sparse output)
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


def bitmap_fill_range(bm: list[int], start: int, n: int, on: bool) -> None:  # not a rule: bitmap arithmetic
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
    def __init__(self, iommu: int, profile: str, dma_entry_limit: int = MACHINE["dma_entry_limit"],
                 memlock: int = 0):
        self.iommu = iommu                 # 0: no VFIO_SET_IOMMU (or it failed)
        self.v2 = iommu == VFIO_TYPE1v2_IOMMU
        self.profile = profile
        self.dmas: list[Dma] = []          # sorted by iova (the rb-tree)
        self.tracking = False              # iommu->dirty_page_tracking
        # vfio_iommu_type1_open(): iommu->dma_avail = dma_entry_limit
        self.dma_avail = dma_entry_limit
        self.pgsize = 1 << ffs0(MACHINE["iova_pgsizes"])   # 1 << __ffs(pgsize_bitmap)
        self.pgshift = ffs0(self.pgsize)
        self.num_non_pinned_groups = MACHINE["non_pinned_groups"]
        self.emulated_groups = MACHINE["emulated_groups"]
        self.iova_ranges = [list(r) for r in MACHINE["iova_ranges"]]
        self.domains = 1                   # the intel-iommu domain of the edu group
        # RLIMIT_MEMLOCK in pages when the payload dropped CAP_IPC_LOCK, else None
        self.memlock_pages = memlock >> PAGE_SHIFT if memlock else None
        self.findings: list[dict] = []

    def setup(self) -> dict:
        """The payload's setup event: new container, the group joins, VFIO_SET_IOMMU."""
        ev = {"op": "setup", "iommu": self.iommu, "result": "ok"}
        # iommu 0: no VFIO_SET_IOMMU, the container has no driver (every type1
        # ioctl then takes container.c:vfio_fops_unl_ioctl:no-driver-einval)
        if self.iommu in (VFIO_TYPE1_IOMMU, VFIO_TYPE1v2_IOMMU):
            # vfio_ioctl_set_iommu(): type1 answers CHECK_EXTENSION(arg) > 0,
            # vfio_iommu_type1_open() + vfio_iommu_type1_attach_group()
            if self.v2:
                hit("vfio_iommu_type1.c:vfio_iommu_type1_open:v2")
            else:
                hit("vfio_iommu_type1.c:vfio_iommu_type1_open:v1")
        elif self.iommu:
            # vfio_ioctl_set_iommu(): no registered driver answers
            # CHECK_EXTENSION(arg) > 0 (type1 only: CONFIG_VFIO_NOIOMMU is off)
            hit("container.c:vfio_ioctl_set_iommu:no-driver-enodev")
            ev.update(result="ENODEV", step="VFIO_SET_IOMMU")
            self.iommu = 0
        return ev

    # ---------------------------------------------------------------- lookups
    def find_dma(self, start: int, size: int) -> Dma | None:  # not a rule: rb-tree lookup helper
        # vfio_find_dma(): rb-tree walk with u64 arithmetic (start + size may wrap)
        end = (start + size) & U64
        # the tree is balanced, but for disjoint intervals any walk finds the
        # same overlapping node, so a scan is equivalent; wrap-around of
        # start+size makes "start + size <= dma->iova" true for every node
        # (the walk always goes left and finds nothing)
        for dma in self.dmas:
            if end <= dma.iova:
                continue
            if start >= dma.end:
                continue
            return dma
        return None

    def first_node(self, start: int, size: int) -> int | None:  # not a rule: rb-tree lookup helper
        """vfio_find_dma_first_node(): the index of the lowest dma with end >
        start, None when there is none or it starts at or after start + size
        (u64: a range ending at 2^64 finds none)."""
        first = next((i for i, d in enumerate(self.dmas) if start < d.end), None)
        if first is not None and size and self.dmas[first].iova >= (start + size) & U64:
            return None
        return first

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

    def locked_pages(self) -> int:
        # mm->locked_vm: every live mapping pinned all its pages from the
        # payload's mm (vfio_lock_acct(); a child's unmap credits the mapping's mm)
        return sum(d.size >> PAGE_SHIFT for d in self.dmas)

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
        if self.num_non_pinned_groups and dma.iommu_mapped:
            hit("vfio_iommu_type1.c:update_user_bitmap:non-pinned-group-all-dirty")
            bitmap_fill_range(bm, 0, nbits, True)
        else:
            hit("vfio_iommu_type1.c:update_user_bitmap:pinned-scope-no-fill")
        if shift:
            hit("vfio_iommu_type1.c:update_user_bitmap:shift-merge")
            # bitmap_shift_left(dma->bitmap, dma->bitmap, shift, nbits + shift):
            # in place, the last word is not trimmed.
            bitmap_shift_left_inplace(bm, shift, nbits + shift)
            try:
                leftover = user.read(copy_offset)        # copy_from_user -> EFAULT
            except Fault:
                hit("vfio_iommu_type1.c:update_user_bitmap:leftover-copy-from-user-efault")
                raise
            # bitmap_or(dma->bitmap, dma->bitmap, &leftover, shift): shift is
            # not a compile-time constant, so __bitmap_or() ORs
            # BITS_TO_LONGS(shift) = 1 whole word: every bit of the user's
            # word, not only the low `shift` bits.
            bm[0] |= leftover
        else:
            hit("vfio_iommu_type1.c:update_user_bitmap:word-aligned")
        nwords = DIRTY_BITMAP_BYTES(nbits + shift) // 8
        try:
            user.write(copy_offset, bm[:nwords])        # copy_to_user -> EFAULT
        except Fault:
            hit("vfio_iommu_type1.c:update_user_bitmap:copy-to-user-efault")
            raise

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
            hit("vfio_iommu_type1.c:vfio_iova_dirty_bitmap:clear-nbits-only")
            bitmap_fill_range(bm, 0, nbits, False)
        else:
            # fixed: the whole allocation is cleared (fix-stale-bits.patch)
            hit("vfio_iommu_type1.c:vfio_iova_dirty_bitmap:clear-whole-bitmap")
            for i in range(len(bm)):
                bm[i] = 0
        # vfio_dma_populate_bitmap(): no pinned pages with vfio-pci (no
        # vfio_pin_pages() callers), nothing to re-populate.
        if dma.pinned:
            hit("vfio_iommu_type1.c:vfio_dma_populate_bitmap:pinned-pages-set")

    # ---------------------------------------------------------------- GET_INFO
    def info_caps(self) -> tuple[list[dict], int]:
        """The capability chain as vfio_iommu_type1_get_info() builds it, at its
        place in the user buffer (offset 24 on), and its size."""
        caps: list[tuple[dict, int]] = []
        # vfio_iommu_migration_build_caps(): pgsize_bitmap is only the smallest
        # page size; max = DIRTY_BITMAP_SIZE_MAX; the struct is zero
        # initialised (the hole at offset 12 is 0)
        hit("vfio_iommu_type1.c:vfio_iommu_migration_build_caps:smallest-pgsize")
        caps.append(({"id": CAP_MIGRATION, "version": 1, "flags": 0, "hole": 0,
                      "pgsize_bitmap": self.pgsize,
                      "max_dirty_bitmap_size": DIRTY_BITMAP_SIZE_MAX}, 32))
        # vfio_iommu_dma_avail_build_caps()
        hit("vfio_iommu_type1.c:vfio_iommu_dma_avail_build_caps:avail")
        caps.append(({"id": CAP_DMA_AVAIL, "version": 1, "avail": self.dma_avail}, 12))
        if not self.iova_ranges:
            # "a container with a single mdev device will have an empty list"
            hit("vfio_iommu_type1.c:vfio_iommu_iova_build_caps:no-iova-list")
        else:
            # vfio_iommu_iova_build_caps(): kzalloc'ed, so reserved is 0
            hit("vfio_iommu_type1.c:vfio_iommu_iova_build_caps:ranges")
            caps.append(({"id": CAP_IOVA_RANGE, "version": 1, "nr_iovas": len(self.iova_ranges),
                          "reserved": 0, "ranges": [list(r) for r in self.iova_ranges]},
                         16 + 16 * len(self.iova_ranges)))
        # vfio_info_cap_add() chains the caps back to back (6.1 does not align
        # them); vfio_info_cap_shift(caps, sizeof(info)) makes each `next` an
        # offset in the user buffer; the last one keeps next = 0
        offsets, off = [], 24
        for _, size in caps:
            offsets.append(off)
            off += size
        nexts = offsets[1:] + [0]
        out = [{"id": cap["id"], "version": cap["version"], "next": nxt,
                **{k: v for k, v in cap.items() if k not in ("id", "version")}}
               for (cap, _), nxt in zip(caps, nexts)]
        return out, off - 24

    def op_info(self, a: dict) -> dict:
        if not self.iommu:
            # container.c: vfio_fops_unl_ioctl(), no driver -> -EINVAL
            hit("container.c:vfio_fops_unl_ioctl:no-driver-einval")
            return {"op": "info", "result": "EINVAL"}
        # vfio_iommu_type1_get_info(): minsz = offsetofend(iova_pgsizes) = 16
        if a["arg"] == ARG_NULL:
            hit("vfio_iommu_type1.c:vfio_iommu_type1_get_info:copy-from-user-efault")
            return {"op": "info", "result": "EFAULT"}
        argsz = a["argsz"]
        if argsz < 16:
            hit("vfio_iommu_type1.c:vfio_iommu_type1_get_info:argsz-below-minsz-einval")
            return {"op": "info", "result": "EINVAL"}
        caps, caps_size = self.info_caps()
        needed = 24 + caps_size                       # sizeof(info) + caps.size
        ev = {"op": "info", "result": "ok", "argsz": argsz, "flags": INFO_PGSIZES | INFO_CAPS,
              "iova_pgsizes": MACHINE["iova_pgsizes"], "cap_offset": CAP_OFFSET_SENTINEL,
              "pad": INFO_PAD, "caps": [], "outside": []}
        if argsz >= 20:
            # argsz >= capsz = offsetofend(cap_offset): minsz = 20, cap_offset = 0
            hit("vfio_iommu_type1.c:vfio_iommu_type1_get_info:capsz-cap-offset-zeroed")
            ev["cap_offset"] = 0
        else:
            # only 16 bytes go back: cap_offset is not written
            hit("vfio_iommu_type1.c:vfio_iommu_type1_get_info:below-capsz-cap-offset-kept")
        if argsz < needed:
            hit("vfio_iommu_type1.c:vfio_iommu_type1_get_info:caps-do-not-fit-argsz-grown")
            ev["argsz"] = needed
        elif a["arg"] == ARG_SPLIT:
            # copy_to_user(arg + sizeof(info), caps.buf, caps.size) faults
            hit("vfio_iommu_type1.c:vfio_iommu_type1_get_info:caps-copy-to-user-efault")
            return {"op": "info", "result": "EFAULT"}
        else:
            hit("vfio_iommu_type1.c:vfio_iommu_type1_get_info:caps-copied")
            ev["cap_offset"] = 24
            ev["caps"] = caps
        return ev

    # ---------------------------------------------------------------- MAP_DMA
    def op_map(self, a: dict) -> dict:
        return {"op": "map", "result": self._map(a)}

    def _map(self, a: dict) -> str:
        if not self.iommu:
            hit("container.c:vfio_fops_unl_ioctl:no-driver-einval")
            return "EINVAL"
        # vfio_iommu_type1_map_dma(): minsz = 32, flags mask READ|WRITE|VADDR
        if a["arg"] == ARG_NULL:
            hit("vfio_iommu_type1.c:vfio_iommu_type1_map_dma:copy-from-user-efault")
            return "EFAULT"
        if a["argsz"] < 32 or a["flags"] & ~(MAP_READ | MAP_WRITE | MAP_VADDR):
            hit("vfio_iommu_type1.c:vfio_iommu_type1_map_dma:argsz-or-flags-einval")
            return "EINVAL"
        # vfio_dma_do_map()
        prot = a["flags"] & (MAP_READ | MAP_WRITE)
        set_vaddr = bool(a["flags"] & MAP_VADDR)
        if (prot and set_vaddr) or (not prot and not set_vaddr):
            hit("vfio_iommu_type1.c:vfio_dma_do_map:prot-and-vaddr-flag-einval")
            return "EINVAL"
        iova, size = a["iova"], a["size"]
        # vaddr: the payload's arena + voff, or an address outside its memory
        vaddr = a["vaddr"] if a["vaddr"] else USER_ARENA_PTR + a["voff"]
        pg = self.pgsize
        if not size or (size | iova | vaddr) & (pg - 1):
            hit("vfio_iommu_type1.c:vfio_dma_do_map:empty-or-unaligned-einval")
            return "EINVAL"
        # "Don't allow IOVA or virtual address wrap"
        if ((iova + size - 1) & U64) < iova:
            hit("vfio_iommu_type1.c:vfio_dma_do_map:iova-wrap-einval")
            return "EINVAL"
        if ((vaddr + size - 1) & U64) < vaddr:
            hit("vfio_iommu_type1.c:vfio_dma_do_map:vaddr-wrap-einval")
            return "EINVAL"
        dma = self.find_dma(iova, size)
        if set_vaddr:
            if dma is None:
                hit("vfio_iommu_type1.c:vfio_dma_do_map:set-vaddr-no-mapping-enoent")
                return "ENOENT"
            if not dma.vaddr_invalid or dma.iova != iova or dma.size != size:
                hit("vfio_iommu_type1.c:vfio_dma_do_map:set-vaddr-not-invalid-or-other-range-einval")
                return "EINVAL"
            # vfio_change_dma_owner(): the same mm, nothing to move; no pinning
            hit("vfio_iommu_type1.c:vfio_dma_do_map:set-vaddr-restored")
            dma.vaddr_invalid = False
            return "ok"
        if dma is not None:
            hit("vfio_iommu_type1.c:vfio_dma_do_map:overlap-eexist")
            return "EEXIST"
        if not self.dma_avail:
            hit("vfio_iommu_type1.c:vfio_dma_do_map:dma-avail-exhausted-enospc")
            return "ENOSPC"
        # vfio_iommu_iova_dma_valid(): [iova, iova + size - 1] inside one range
        last = iova + size - 1
        if not any(s <= iova and last <= e for s, e in self.iova_ranges):
            hit("vfio_iommu_type1.c:vfio_dma_do_map:outside-iova-ranges-einval")
            return "EINVAL"
        if not self.domains:
            hit("vfio_iommu_type1.c:vfio_dma_do_map:no-domain-not-pinned")
        # vfio_pin_map_dma() -> vfio_pin_pages_remote(): a failure removes the
        # new vfio_dma again (vfio_remove_dma(): dma_avail back)
        if a["vaddr"]:
            # vaddr_get_pfns(): pin_user_pages_remote() finds no VMA (the
            # normaliser only lets through addresses no VMA of the payload
            # covers) and vma_lookup() none either: -EFAULT
            hit("vfio_iommu_type1.c:vaddr_get_pfns:no-vma-efault")
            return "EFAULT"
        pages = size >> PAGE_SHIFT
        if self.memlock_pages is None:
            # dma->lock_cap = capable(CAP_IPC_LOCK): no RLIMIT_MEMLOCK check
            hit("vfio_iommu_type1.c:vfio_pin_pages_remote:lock-cap-no-limit")
        elif self.locked_pages() + pages > self.memlock_pages:
            # "mm->locked_vm + lock_acct + 1 > limit" -> -ENOMEM
            hit("vfio_iommu_type1.c:vfio_pin_pages_remote:rlimit-memlock-enomem")
            return "ENOMEM"
        else:
            hit("vfio_iommu_type1.c:vfio_pin_pages_remote:within-rlimit-memlock")
        new = Dma(iova, size, prot)
        if self.tracking:
            # vfio_dma_bitmap_alloc() while tracking
            if size // pg > DIRTY_BITMAP_PAGES_MAX:
                hit("vfio_iommu_type1.c:vfio_dma_bitmap_alloc:too-many-pages-einval")
                return "EINVAL"
            hit("vfio_iommu_type1.c:vfio_dma_do_map:bitmap-while-tracking")
            new.bitmap = self.new_bitmap(new)
        hit("vfio_iommu_type1.c:vfio_dma_do_map:mapped")
        self.dma_avail -= 1
        self.insert(new)
        return "ok"

    # ---------------------------------------------------------------- UNMAP_DMA
    def op_unmap(self, a: dict) -> dict:
        user = UserBuffer(a["bsize"], a["fill"], a["data"])
        result, size = self._unmap(a, user)
        # copy_to_user(arg, &unmap, minsz) on success writes back argsz, flags
        # and iova as read (and the size unmapped); on an error nothing is written
        ev = {"op": "unmap", "result": result, "size": size, "argsz": a["argsz"], "flags": a["flags"],
              "iova": a["iova"]}
        if a["flags"] & UNMAP_GET_DIRTY_BITMAP and a["data"] == 0:  # not a rule: rendering (the payload prints the buffer it passed)
            user.report(ev)
        return ev

    def _unmap(self, a: dict, user: UserBuffer) -> tuple[str, int]:
        insize = a["size"]
        if not self.iommu:
            hit("container.c:vfio_fops_unl_ioctl:no-driver-einval")
            return "EINVAL", insize
        flags = a["flags"]
        # vfio_iommu_type1_unmap_dma(): minsz = offsetofend(size) = 24; on an
        # error the size is not copied back
        if a["arg"] == ARG_NULL:
            hit("vfio_iommu_type1.c:vfio_iommu_type1_unmap_dma:copy-from-user-efault")
            return "EFAULT", insize
        if a["argsz"] < 24 or flags & ~(UNMAP_GET_DIRTY_BITMAP | UNMAP_ALL | UNMAP_VADDR):
            hit("vfio_iommu_type1.c:vfio_iommu_type1_unmap_dma:argsz-or-flags-einval")
            return "EINVAL", insize
        if flags & UNMAP_GET_DIRTY_BITMAP and flags & (UNMAP_ALL | UNMAP_VADDR):
            hit("vfio_iommu_type1.c:vfio_iommu_type1_unmap_dma:bitmap-with-all-or-vaddr-einval")
            return "EINVAL", insize
        if flags & UNMAP_GET_DIRTY_BITMAP:
            if a["argsz"] < 24 + 24:
                hit("vfio_iommu_type1.c:vfio_iommu_type1_unmap_dma:bitmap-argsz-short-einval")
                return "EINVAL", insize
            if a["arg"] == ARG_SPLIT:
                # copy_from_user(&bitmap, arg + minsz, sizeof(bitmap)) faults
                hit("vfio_iommu_type1.c:vfio_iommu_type1_unmap_dma:bitmap-copy-from-user-efault")
                return "EFAULT", insize
            if not access_ok(data_ptr(a["data"]), a["bsize"]):
                hit("vfio_iommu_type1.c:vfio_iommu_type1_unmap_dma:bitmap-access-not-ok-einval")
                return "EINVAL", insize
            if bitmap_size_error(shr(insize, ffs0(a["pgsize"])), a["bsize"]):
                hit("vfio_iommu_type1.c:vfio_iommu_type1_unmap_dma:bitmap-size-einval")
                return "EINVAL", insize
        # vfio_dma_do_unmap()
        iova, size = a["iova"], insize
        unmap_all = bool(flags & UNMAP_ALL)
        invalidate_vaddr = bool(flags & UNMAP_VADDR)
        if invalidate_vaddr and self.emulated_groups:
            # "Cannot update vaddr if mdev is present."
            hit("vfio_iommu_type1.c:vfio_dma_do_unmap:vaddr-with-emulated-group-ebusy")
            return "EBUSY", insize
        pg = self.pgsize
        if iova & (pg - 1):
            hit("vfio_iommu_type1.c:vfio_dma_do_unmap:iova-unaligned-einval")
            return "EINVAL", insize
        if unmap_all:
            if iova or size:
                hit("vfio_iommu_type1.c:vfio_dma_do_unmap:all-with-range-einval")
                return "EINVAL", insize
            hit("vfio_iommu_type1.c:vfio_dma_do_unmap:all-whole-space")
            size = U64
        elif not size or size & (pg - 1) or ((iova + size - 1) & U64) < iova or size > SIZE_MAX:
            hit("vfio_iommu_type1.c:vfio_dma_do_unmap:size-empty-unaligned-or-wrap-einval")
            return "EINVAL", insize
        # "When dirty tracking is enabled, allow only min supported pgsize"
        if flags & UNMAP_GET_DIRTY_BITMAP:
            if not self.tracking:
                hit("vfio_iommu_type1.c:vfio_dma_do_unmap:bitmap-not-tracking-einval")
                return "EINVAL", insize
            if a["pgsize"] != pg:
                hit("vfio_iommu_type1.c:vfio_dma_do_unmap:bitmap-pgsize-einval")
                return "EINVAL", insize
        end = (iova + size) & U64
        if self.v2 and not unmap_all:
            dma = self.find_dma(iova, 1)
            if dma and dma.iova != iova:
                hit("vfio_iommu_type1.c:vfio_dma_do_unmap:v2-bisect-start-einval")
                return "EINVAL", insize
            dma = self.find_dma((iova + size - 1) & U64, 0)
            if dma and dma.end != end:
                hit("vfio_iommu_type1.c:vfio_dma_do_unmap:v2-bisect-end-einval")
                return "EINVAL", insize
        # vfio_find_dma_first_node(): lowest dma with end > iova, NULL when it
        # starts at or after iova + size (u64: a range ending at 2^64 finds none)
        first = self.first_node(iova, size)
        if first is None:
            hit("vfio_iommu_type1.c:vfio_dma_do_unmap:no-mapping-in-range")
            return "ok", 0
        unmapped = 0
        touched_vaddr: list[Dma] = []
        for dma in list(self.dmas[first:]):
            if dma.iova >= end:
                hit("vfio_iommu_type1.c:vfio_dma_do_unmap:past-range-stop")
                break
            if not self.v2 and iova > dma.iova:
                # v1: an unmap starting inside a mapping unmaps nothing of it
                hit("vfio_iommu_type1.c:vfio_dma_do_unmap:v1-starts-inside-stop")
                break
            if a["child"]:
                # 5.x broke out here when dma->task->mm != current->mm; 6.0
                # dropped the check ("vfio/type1: Unpin zero pages" series /
                # the UPDATE_VADDR rework), so any process holding the
                # container fd unmaps any mapping
                hit("vfio_iommu_type1.c:vfio_dma_do_unmap:other-mm-not-checked")
            if invalidate_vaddr:
                if dma.vaddr_invalid:
                    # roll back the mappings this call invalidated: -EINVAL
                    hit("vfio_iommu_type1.c:vfio_dma_do_unmap:vaddr-already-invalid-rollback-einval")
                    for d in touched_vaddr:
                        d.vaddr_invalid = False
                    return "EINVAL", insize
                hit("vfio_iommu_type1.c:vfio_dma_do_unmap:vaddr-invalidated")
                dma.vaddr_invalid = True
                touched_vaddr.append(dma)
                unmapped += dma.size
                continue
            if dma.pinned:
                # vfio_notify_dma_unmap(): the drivers unpin, then "goto again"
                hit("vfio_iommu_type1.c:vfio_dma_do_unmap:pinned-pages-notify-driver")
            if flags & UNMAP_GET_DIRTY_BITMAP:
                try:
                    self.update_user_bitmap(user, dma, iova)
                except Fault:
                    # the faulting mapping and later ones stay; earlier ones are gone
                    hit("vfio_iommu_type1.c:vfio_dma_do_unmap:bitmap-efault-stops")
                    return "EFAULT", insize
                hit("vfio_iommu_type1.c:vfio_dma_do_unmap:bitmap-copied")
            hit("vfio_iommu_type1.c:vfio_dma_do_unmap:removed")
            unmapped += dma.size
            self.remove(dma)
        # copy_to_user(arg, &unmap, minsz): the size unmapped
        hit("vfio_iommu_type1.c:vfio_iommu_type1_unmap_dma:size-copied-back")
        return "ok", unmapped

    # ---------------------------------------------------------------- DIRTY_PAGES
    def op_dirty(self, a: dict) -> dict:
        # START/STOP/flags: no range; with GET_BITMAP the payload's range is
        # all zeros (iova, size, pgsize, bitmap.size and data 0)
        zero = {"argsz": a["argsz"], "flags": a["flags"], "null": a["null"], "arg": ARG_OK,
                "iova": 0, "size": 0, "pgsize": 0, "bsize": 0, "data": 1}
        return {"op": "dirty", "result": self._dirty(zero, UserBuffer(0, 0, 1))}

    def op_get(self, a: dict) -> dict:
        user = UserBuffer(a["bsize"], a["fill"], a["data"])
        ev = {"op": "get", "result": self._dirty({**a, "null": int(a["arg"] == ARG_NULL)}, user)}
        if a["data"] == 0:  # not a rule: rendering (the payload prints the buffer it passed)
            user.report(ev)
        return ev

    def _dirty(self, a: dict, user: UserBuffer) -> str:
        if not self.iommu:
            hit("container.c:vfio_fops_unl_ioctl:no-driver-einval")
            return "EINVAL"
        # vfio_iommu_type1_dirty_pages()
        if not self.v2:
            hit("vfio_iommu_type1.c:vfio_iommu_type1_dirty_pages:not-v2-eacces")
            return "EACCES"
        if a["null"]:
            hit("vfio_iommu_type1.c:vfio_iommu_type1_dirty_pages:copy-from-user-efault")
            return "EFAULT"
        flags = a["flags"]
        if a["argsz"] < 8 or flags & ~(DIRTY_START | DIRTY_STOP | DIRTY_GET):
            hit("vfio_iommu_type1.c:vfio_iommu_type1_dirty_pages:argsz-or-flags-einval")
            return "EINVAL"
        if flags == 0:
            # __ffs(0) and __fls(0) are undefined; whether they compare equal
            # or not, no flag branch is taken and the function ends in -EINVAL
            hit("vfio_iommu_type1.c:vfio_iommu_type1_dirty_pages:no-flag-einval")
            return "EINVAL"
        # "only one flag should be set at a time"
        if bin(flags).count("1") != 1:
            hit("vfio_iommu_type1.c:vfio_iommu_type1_dirty_pages:more-than-one-flag-einval")
            return "EINVAL"
        if flags == DIRTY_START:
            if not self.tracking:
                # vfio_dma_bitmap_alloc_all()
                for dma in self.dmas:
                    if dma.size // self.pgsize > DIRTY_BITMAP_PAGES_MAX:
                        hit("vfio_iommu_type1.c:vfio_dma_bitmap_alloc:too-many-pages-einval")
                        for d in self.dmas:
                            d.bitmap = None
                        return "EINVAL"
                    dma.bitmap = self.new_bitmap(dma)
                hit("vfio_iommu_type1.c:vfio_iommu_type1_dirty_pages:start-allocates")
                self.tracking = True
            else:
                hit("vfio_iommu_type1.c:vfio_iommu_type1_dirty_pages:start-already-tracking")
            return "ok"
        if flags == DIRTY_STOP:
            if self.tracking:
                hit("vfio_iommu_type1.c:vfio_iommu_type1_dirty_pages:stop-frees")
                self.tracking = False
                for dma in self.dmas:           # vfio_dma_bitmap_free_all()
                    dma.bitmap = None
            else:
                hit("vfio_iommu_type1.c:vfio_iommu_type1_dirty_pages:stop-not-tracking")
            return "ok"
        # GET_BITMAP
        if a["argsz"] - 8 < 40:
            hit("vfio_iommu_type1.c:vfio_iommu_type1_dirty_pages:get-argsz-short-einval")
            return "EINVAL"
        if a["arg"] == ARG_SPLIT:
            # copy_from_user(&range, arg + minsz, sizeof(range)) faults
            hit("vfio_iommu_type1.c:vfio_iommu_type1_dirty_pages:get-range-copy-from-user-efault")
            return "EFAULT"
        iova, size, pgsize, bsize = a["iova"], a["size"], a["pgsize"], a["bsize"]
        if ((iova + size) & U64) < iova:
            hit("vfio_iommu_type1.c:vfio_iommu_type1_dirty_pages:get-wrap-einval")
            return "EINVAL"
        if not access_ok(data_ptr(a["data"]), bsize):
            hit("vfio_iommu_type1.c:vfio_iommu_type1_dirty_pages:get-access-not-ok-einval")
            return "EINVAL"
        if bitmap_size_error(shr(size, ffs0(pgsize)), bsize):
            hit("vfio_iommu_type1.c:vfio_iommu_type1_dirty_pages:get-bitmap-size-einval")
            return "EINVAL"
        pg = self.pgsize
        if pgsize != pg:
            hit("vfio_iommu_type1.c:vfio_iommu_type1_dirty_pages:get-pgsize-einval")
            return "EINVAL"
        if iova & (pg - 1):
            hit("vfio_iommu_type1.c:vfio_iommu_type1_dirty_pages:get-iova-unaligned-einval")
            return "EINVAL"
        if not size or size & (pg - 1):
            hit("vfio_iommu_type1.c:vfio_iommu_type1_dirty_pages:get-size-unaligned-einval")
            return "EINVAL"
        if not self.tracking:
            hit("vfio_iommu_type1.c:vfio_iommu_type1_dirty_pages:get-not-tracking-einval")
            return "EINVAL"
        return self._iova_dirty_bitmap(user, iova, size)

    def _iova_dirty_bitmap(self, user: UserBuffer, iova: int, size: int) -> str:
        # vfio_iova_dirty_bitmap(): no bisected mapping at either end
        dma = self.find_dma(iova, 1)
        if dma and dma.iova != iova:
            hit("vfio_iommu_type1.c:vfio_iova_dirty_bitmap:bisect-start-einval")
            return "EINVAL"
        dma = self.find_dma(iova + size - 1, 0)
        if dma and dma.end != iova + size:
            hit("vfio_iommu_type1.c:vfio_iova_dirty_bitmap:bisect-end-einval")
            return "EINVAL"
        last = iova + size - 1
        for dma in list(self.dmas):
            if dma.iova < iova:
                hit("vfio_iommu_type1.c:vfio_iova_dirty_bitmap:mapping-below-range-skipped")
                continue
            if dma.iova > last:
                hit("vfio_iommu_type1.c:vfio_iova_dirty_bitmap:mapping-above-range-stop")
                break
            try:
                self.update_user_bitmap(user, dma, iova)
            except Fault:
                # the error path skips the clear: a shifted bitmap stays shifted
                hit("vfio_iommu_type1.c:vfio_iova_dirty_bitmap:copy-efault")
                return "EFAULT"
            self.after_get(dma)
        hit("vfio_iommu_type1.c:vfio_iova_dirty_bitmap:done")
        return "ok"

    # ---------------------------------------------------------------- device DMA
    def op_dma(self, a: dict) -> dict:
        # The edu device reads [src, src+len) into its buffer and writes its
        # buffer to [dst, dst+len), each through the vIOMMU (QEMU 7.2:
        # hw/misc/edu.c edu_dma_timer(), hw/i386/intel_iommu.c translation).
        ok = self._dma_reaches(a["src"], a["len"], False) and self._dma_reaches(a["dst"], a["len"], True)
        if ok:
            hit("edu.c:edu_dma_timer:copied")
            return {"op": "dma", "result": "match"}
        hit("edu.c:edu_dma_timer:translation-fault-no-copy")
        return {"op": "dma", "result": "mismatch"}

    def _dma_reaches(self, start: int, length: int, write: bool) -> bool:
        pos, end = start, start + length
        while pos < end:
            dma = next((d for d in self.dmas if d.iova <= pos < d.end), None)
            if dma is None:
                # no IOMMU PTE: vtd_do_iommu_translate() reports a fault
                hit("intel_iommu.c:vtd_do_iommu_translate:not-mapped-fault")
                return False
            if write and not dma.prot & MAP_WRITE:
                hit("intel_iommu.c:vtd_do_iommu_translate:write-to-read-only-fault")
                return False
            if not write and not dma.prot & MAP_READ:
                # drivers/iommu/intel/iommu.c: __domain_mapping() sets
                # DMA_FL_PTE_PRESENT (bit 0, the same bit as DMA_PTE_READ) in
                # every PTE, so a write-only MAP_DMA is device-readable on VT-d
                hit("iommu.c:__domain_mapping:write-only-readable")
            pos = dma.end
        return True

    # ---------------------------------------------------------------- CHECK_EXTENSION
    def op_ext(self, a: dict) -> dict:
        # vfio_iommu_type1_check_extension(iommu, arg).  Before VFIO_SET_IOMMU,
        # container.c: vfio_container_ioctl_check_extension() polls every
        # registered driver with iommu_data == NULL (type1 is the only one:
        # no spapr on x86, no CONFIG_VFIO_NOIOMMU) and returns the first
        # positive answer, else 0.
        arg = a["arg"]
        have_iommu = bool(self.iommu)
        if have_iommu:
            hit("container.c:vfio_container_ioctl_check_extension:driver-set")
        else:
            hit("container.c:vfio_container_ioctl_check_extension:poll-drivers")
        if arg in (VFIO_TYPE1_IOMMU, VFIO_TYPE1v2_IOMMU, VFIO_TYPE1_NESTING_IOMMU, VFIO_UNMAP_ALL):
            hit("vfio_iommu_type1.c:vfio_iommu_type1_check_extension:type1-family")
            value = 1
        elif arg == VFIO_UPDATE_VADDR:
            # "iommu && !vfio_iommu_has_emulated(iommu)"
            if not have_iommu:
                hit("vfio_iommu_type1.c:vfio_iommu_type1_check_extension:update-vaddr-no-iommu")
                value = 0
            elif self.emulated_groups:
                hit("vfio_iommu_type1.c:vfio_iommu_type1_check_extension:update-vaddr-emulated-group")
                value = 0
            else:
                hit("vfio_iommu_type1.c:vfio_iommu_type1_check_extension:update-vaddr")
                value = 1
        elif arg == VFIO_DMA_CC_IOMMU:
            # "if (!iommu) return 0"; else vfio_domains_have_enforce_cache_coherency()
            if have_iommu:
                hit("vfio_iommu_type1.c:vfio_iommu_type1_check_extension:dma-cc-domains")
                value = MACHINE["enforce_cache_coherency"]
            else:
                hit("vfio_iommu_type1.c:vfio_iommu_type1_check_extension:dma-cc-no-iommu")
                value = 0
        else:
            hit("vfio_iommu_type1.c:vfio_iommu_type1_check_extension:other-zero")
            value = 0
        return {"op": "ext", "result": "ok", "value": value}

    def op_devdirty(self, a: dict) -> dict:
        # 0x3b75 on a device fd is VFIO_DEVICE_FEATURE: flags 1 = feature
        # MIGRATION without GET/SET/PROBE; vfio_main.c:
        # vfio_ioctl_device_feature() -> vfio_ioctl_device_feature_migration():
        # vfio-pci has no migration ops -> -ENOTTY
        hit("vfio_main.c:vfio_ioctl_device_feature_migration:no-mig-ops-enotty")
        return {"op": "devdirty", "result": "ENOTTY"}


def predict(script: dict, profile: str = PROFILES[0]) -> list[dict]:
    """The events the payload prints for `script` (normalised), in order."""
    if profile not in PROFILES:  # not a rule: argument check
        raise ValueError(f"unknown vfio profile {profile!r} (known: {', '.join(PROFILES)})")
    c = Container(IOMMU_OF[script["iommu"]], profile,
                  script.get("dma_entry_limit", MACHINE["dma_entry_limit"]), script.get("memlock", 0))
    events: list[dict] = [c.setup()]
    if events[0]["result"] != "ok":  # not a rule: the payload skips the actions of a failed setup (ruled in setup())
        return events
    for a in script["actions"]:
        handler = getattr(c, f"op_{a['op']}", None)
        if handler is None:  # not a rule: argument check
            raise ValueError(f"the vfio model has no action {a['op']!r}")
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
        hit("vfio.h:vfio_device_migration_info:invalid-or-error-write-refused")
        return {("error", current)}
    if v1_state_is_error(current):
        hit("vfio.h:vfio_device_migration_info:error-state-sticks")
        return {("error", current)}
    if new == current:
        hit("vfio.h:vfio_device_migration_info:same-state")
        return {("ok", new)}
    if (current, new) in V1_REQUIRED:
        hit("vfio.h:vfio_device_migration_info:required-arc")
        return {("ok", new)}
    hit("vfio.h:vfio_device_migration_info:optional-arc")
    return {("ok", new), ("error", current), ("error", V1_SAVING | V1_RESUMING)}


def v1_walk(writes: list[int], start: int = V1_RUNNING) -> list[set[tuple[str, int]]]:  # not a rule: follows the outcomes v1_transition() rules
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


def findings(script: dict, observed: list[dict]) -> list[dict]:  # not a rule: run-record bookkeeping, not kernel behaviour
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
