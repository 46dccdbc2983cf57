"""Named VFIO dirty-tracking cases, as data.

Each case: id (`vfio/<group>/<name>`), rationale (what it pins down, with
the kernel function), script (an op-script, see harness/payloads/vfio.py).
Expected results come from the reference model (harness/reference/vfio.py),
never from here; the comments give the 6.1 values for the reader.

Common layout ("S1", spec vfio_dirty_detail.md section 6):
  M1 = 0x100000 + 0x100000 (256 pages), M2 = 0x200000 + 0x10000 (16 pages),
  M4 = 0x22c000 + 0x5000 (5 pages),     M3 = 0x300000 + 0x3000 (3 pages).
"""
from __future__ import annotations

KiB, MiB = 1 << 10, 1 << 20
M1 = (0x100000, 0x100000)
M2 = (0x200000, 0x10000)
M4 = (0x22C000, 0x5000)
M3 = (0x300000, 0x3000)
M5 = (0x400000, 0x8000)
TOP = 0xFFFFFFFFFFFFF000
KERNEL_PTR = 0xFFFF888000000000


def mp(region, voff=0, **kw):
    return {"op": "map", "iova": region[0], "size": region[1], "voff": voff, **kw}


def get(iova, size, **kw):
    return {"op": "get", "iova": iova, "size": size, **kw}


def getm(region, **kw):
    return get(region[0], region[1], **kw)


def unmap(iova, size, **kw):
    return {"op": "unmap", "iova": iova, "size": size, **kw}


def unmapb(iova, size, **kw):
    return {"op": "unmap", "iova": iova, "size": size, "flags": 1, **kw}


START = {"op": "dirty", "flags": 1}
STOP = {"op": "dirty", "flags": 2}
INFO = {"op": "info"}

S1 = [mp(M1, 0), mp(M2, 1 * MiB), mp(M4, 2 * MiB), mp(M3, 3 * MiB)]
S1_TRACKING = S1 + [START]


def case(id, rationale, actions, iommu="v2", **settings):
    return {"id": id, "rationale": rationale, "script": {"iommu": iommu, **settings, "actions": actions}}


CASES = [
    # ---------------------------------------------------------------- discovery
    case("vfio/discovery/migration-cap",
         "GET_INFO lists MIGRATION v1 (pgsize_bitmap = smallest IOMMU page, "
         "max_dirty_bitmap_size = DIRTY_BITMAP_SIZE_MAX), DMA_AVAIL and IOVA_RANGE, "
         "hole at offset 12 zero (vfio_iommu_migration_build_caps)",
         [INFO]),
    case("vfio/discovery/argsz-16-grows",
         "argsz 16: success, CAPS flag set, argsz rewritten to the needed size, cap_offset "
         "not written (capsz = 20 not reached; vfio_iommu_type1_get_info)",
         [{"op": "info", "argsz": 16}]),
    case("vfio/discovery/argsz-24-cap-offset-zero",
         "20 <= argsz < needed: cap_offset 0 and argsz = needed; argsz 15 is EINVAL",
         [{"op": "info", "argsz": 24}, {"op": "info", "argsz": 20}, {"op": "info", "argsz": 15}]),
    case("vfio/discovery/argsz-exactly-needed",
         "argsz == sizeof(info) + caps.size (116 here) is enough: caps copied, cap_offset 24; "
         "one byte less (115) is not: argsz grown to 116, cap_offset 0 "
         "(vfio_iommu_type1_get_info: info.argsz < sizeof(info) + caps.size)",
         [{"op": "info", "argsz": 116}, {"op": "info", "argsz": 115},
          {"op": "info", "argsz": 117}]),
    case("vfio/discovery/dma-avail-counts-mappings",
         "DMA_AVAIL is dma_entry_limit minus the live mappings (vfio_dma_do_map/vfio_remove_dma)",
         [INFO, mp(M1), mp(M2, MiB), INFO, unmap(*M1), INFO]),
    case("vfio/discovery/v1-container-has-migration-cap",
         "a VFIO_TYPE1_IOMMU container reports the migration cap too, though DIRTY_PAGES is EACCES",
         [INFO], iommu="v1"),
    case("vfio/discovery/extensions",
         "CHECK_EXTENSION on the type1 container: TYPE1, TYPE1v2, NESTING, UNMAP_ALL, UPDATE_VADDR "
         "(no mdev) are 1; SPAPR, NOIOMMU 0 (vfio_iommu_type1_check_extension)",
         [{"op": "ext", "arg": a} for a in (1, 3, 6, 9, 10, 2, 8)]),

    case("vfio/discovery/extensions-before-set-iommu",
         "CHECK_EXTENSION on a container with a group but no IOMMU driver polls type1 with "
         "iommu == NULL (container.c: vfio_container_ioctl_check_extension): TYPE1, TYPE1v2, "
         "NESTING, UNMAP_ALL 1; UPDATE_VADDR and DMA_CC_IOMMU 0 (vfio_iommu_type1_check_extension: "
         "iommu && ..., if (!iommu) return 0)",
         [{"op": "ext", "arg": a} for a in (1, 3, 6, 9, 10, 4, 2, 8)], iommu="none"),
    case("vfio/discovery/extension-cache-coherency",
         "DMA_CC_IOMMU with type1 set: vfio_domains_have_enforce_cache_coherency() of the "
         "intel-iommu domain (no snoop control in QEMU's VT-d: 0)",
         [{"op": "ext", "arg": 4}]),

    case("vfio/discovery/info-fields-outside-the-chain",
         "GET_INFO into a 0xa5-filled buffer: the kernel writes the 20-byte header (bytes 20-23, "
         "the struct's tail padding, stay 0xa5: copy_to_user(arg, &info, minsz) with minsz = "
         "capsz = 20) and the chain packed back to back from 24 (vfio_info_cap_add, "
         "vfio_info_cap_shift: next 56, 68, 0; IOVA_RANGE nr_iovas 2, reserved 0), nothing "
         "else of the 8 KiB; with argsz 116 exactly the same; with argsz 115 nothing beyond "
         "the header",
         [INFO, {"op": "info", "argsz": 116}, {"op": "info", "argsz": 115},
          {"op": "info", "argsz": 16}]),
    case("vfio/discovery/info-copy-faults",
         "GET_INFO with a NULL argument: EFAULT (the first copy_from_user); with the "
         "capabilities' place on an inaccessible page: EFAULT when the chain fits argsz "
         "(copy_to_user(arg + sizeof(info), caps.buf, caps.size) fails), 0 with argsz grown "
         "when it does not fit (only the header is written) (vfio_iommu_type1_get_info)",
         [{"op": "info", "arg": 1}, {"op": "info", "arg": 2}, {"op": "info", "argsz": 116, "arg": 2},
          {"op": "info", "argsz": 24, "arg": 2}, {"op": "info", "argsz": 16, "arg": 2}]),
    case("vfio/discovery/noiommu-container-enodev",
         "VFIO_SET_IOMMU(VFIO_NOIOMMU_IOMMU): no registered IOMMU driver answers "
         "CHECK_EXTENSION(8) > 0 (type1 says 0, CONFIG_VFIO_NOIOMMU is off in Debian's 6.1 and in "
         "the built kernel), so vfio_ioctl_set_iommu() returns ENODEV and the container stays "
         "without a driver; the payload runs no action after a failed setup",
         [INFO, START], iommu="noiommu"),

    # ---------------------------------------------------------------- tracking state
    case("vfio/tracking/no-iommu-einval",
         "before VFIO_SET_IOMMU every type1 ioctl is EINVAL (container.c: vfio_fops_unl_ioctl)",
         [START, INFO, mp(M1)], iommu="none"),
    case("vfio/tracking/v1-container-eacces",
         "type1 v1: DIRTY_PAGES is EACCES before any other check, flags 0 included; "
         "unmap with bitmap is EINVAL (never tracking)",
         [mp(M1), START, {"op": "dirty", "flags": 0}, getm(M1), unmapb(*M1)], iommu="v1"),
    case("vfio/tracking/v1-eacces-before-any-copy",
         "type1 v1: the !iommu->v2 check precedes even the copy of the header, so a NULL "
         "argument, argsz 4, flag 8 and a GET whose range is unreadable are all EACCES, not "
         "EFAULT/EINVAL (vfio_iommu_type1_dirty_pages)",
         [mp(M1), {"op": "dirty", "flags": 1, "null": 1}, {"op": "dirty", "flags": 1, "argsz": 4},
          {"op": "dirty", "flags": 8}, getm(M1, arg=2), getm(M1, arg=1), {"op": "dirty", "flags": 2}],
         iommu="v1"),
    case("vfio/tracking/start-twice",
         "START while tracking is a no-op returning 0; bitmaps are kept",
         S1 + [START, START, getm(M1)]),
    case("vfio/tracking/stop-not-tracking",
         "STOP while not tracking returns 0, twice",
         S1 + [STOP, STOP]),
    case("vfio/tracking/get-before-start",
         "GET_BITMAP with valid arguments while not tracking: EINVAL (checked after the "
         "parameter checks)",
         S1 + [getm(M1)]),
    case("vfio/tracking/get-after-stop",
         "STOP frees the bitmaps: GET and unmap-with-bitmap are EINVAL, nothing unmapped",
         S1_TRACKING + [getm(M1), STOP, getm(M1), unmapb(*M3), unmap(*M3)]),
    case("vfio/tracking/bad-flags",
         "flags 0, two flags, unknown bit: EINVAL (__ffs != __fls, mask check)",
         S1 + [{"op": "dirty", "flags": f} for f in (0, 3, 5, 6, 7, 8, 0x80000000)]),
    case("vfio/tracking/argsz-short",
         "argsz below offsetofend(flags) = 8: EINVAL",
         S1 + [{"op": "dirty", "flags": 1, "argsz": a} for a in (0, 4, 7)] + [getm(M1)]),
    case("vfio/tracking/null-arg-efault",
         "NULL argument: EFAULT (copy_from_user after the v2 check)",
         [{"op": "dirty", "flags": 1, "null": 1}]),
    case("vfio/tracking/device-fd-alias-enotty",
         "0x3b75 on a device fd is VFIO_DEVICE_FEATURE: feature 1 without GET/SET -> ENOTTY",
         [{"op": "devdirty"}]),
    case("vfio/tracking/restart-reallocates",
         "STOP + START gives fresh bitmaps; GET after it reports all pages again",
         S1_TRACKING + [getm(M1), STOP, START, getm(M1)]),

    # ---------------------------------------------------------------- GET arguments
    case("vfio/get/argsz",
         "GET needs argsz - 8 >= 40: 8 and 47 EINVAL, 48 and 112 fine",
         S1_TRACKING + [getm(M1, argsz=8), getm(M1, argsz=47), getm(M1, argsz=48),
                        getm(M1, argsz=112)]),
    case("vfio/get/pgsize-wrong",
         "bitmap.pgsize must be the smallest IOMMU page (4 KiB): 8192, 2048, 1, 0x3000 (same "
         "lowest bit as 4 KiB), 0x1001, 2 MiB EINVAL (vfio_iommu_type1_dirty_pages: "
         "range.bitmap.pgsize != iommu_pgsize).  Not 0: __ffs(0) makes `range.size >> pgshift` "
         "a shift by 64, undefined behaviour that UBSAN reports on a debug kernel",
         S1_TRACKING + [getm(M1, pgsize=p, bsize=4096)
                        for p in (8192, 2048, 1, 0x3000, 0x1001, 0x200000)]),
    case("vfio/get/iova-unaligned",
         "iova not page aligned: EINVAL (inside and before a mapping)",
         S1_TRACKING + [get(0x100800, 0x100000, bsize=64), get(0xFF800, 0x1000, bsize=8)]),
    case("vfio/get/size-zero-or-unaligned",
         "size 0 (verify_bitmap_size: no pages) and size not page aligned: EINVAL",
         S1_TRACKING + [get(0x100000, 0, bsize=8), get(0x100000, 0x100800, bsize=64)]),
    case("vfio/get/unaligned-in-empty-range",
         "iova or size not a multiple of the 4 KiB IOMMU page where no mapping could turn it "
         "into a bisect error: iova +0x800, iova +1, size 0x2800, size 0x2001 are each EINVAL "
         "(vfio_iommu_type1_dirty_pages: range.iova & (iommu_pgsize - 1), "
         "range.size & (iommu_pgsize - 1)); the aligned request over the same range is 0",
         S1_TRACKING + [get(0x600800, 0x1000), get(0x600001, 0x1000), get(0x600000, 0x2800),
                        get(0x600000, 0x2001), get(0x600000, 0x2000)]),
    case("vfio/get/wrap",
         "iova + size wraps: EINVAL; a range ending exactly at 2^64 also wraps to 0 in 6.1",
         S1_TRACKING + [get(TOP - 0x1000, 0x3000), get(TOP, 0x1000)]),
    case("vfio/get/bitmap-size",
         "bitmap.size 0, 1 byte short (31), one word short (24) of DIRTY_BITMAP_BYTES(256)=32: "
         "EINVAL; exactly 32 fine (guards intact)",
         S1_TRACKING + [getm(M1, bsize=b) for b in (0, 31, 24, 32)]),
    case("vfio/get/bitmap-size-over-max",
         "bitmap.size above DIRTY_BITMAP_SIZE_MAX (256 MiB): EINVAL",
         S1_TRACKING + [getm(M1, bsize=0x10000008)]),
    case("vfio/get/bitmap-max-accepted",
         "the largest request: 2^31 pages (8 TiB) from iova 0 into a 256 MiB bitmap is accepted; "
         "bits land at the mappings' page offsets",
         S1_TRACKING + [get(0, 1 << 43, bsize=0x10000000)]),
    case("vfio/get/too-many-pages",
         "8 TiB + 4 KiB needs more than 256 MiB of bitmap: EINVAL",
         S1_TRACKING + [get(0, (1 << 43) + 0x1000, bsize=0x10000000)]),
    case("vfio/get/data-null-efault",
         "bitmap.data NULL passes access_ok, the copy faults: EFAULT; the next GET works",
         S1_TRACKING + [getm(M1, data=1), getm(M1)]),
    case("vfio/get/efault-after-shift",
         "a GET whose user copy faults after update_user_bitmap() shifted the mapping's "
         "bitmap in place leaves it shifted and uncleared: the next GET of M4 alone reports "
         "the shifted bits too (both profiles; the error path skips the clear)",
         S1_TRACKING + [get(0x229000, 0x8000, data=1), getm(M4)]),
    case("vfio/get/range-copy-efault",
         "the GET range (struct vfio_iommu_type1_dirty_bitmap_get) on an inaccessible page "
         "behind a readable argsz/flags: the second copy_from_user faults, EFAULT; argsz 47 is "
         "refused before it (EINVAL); a NULL argument faults on the first copy; the buffer is "
         "untouched and the next GET works (vfio_iommu_type1_dirty_pages)",
         S1_TRACKING + [getm(M1, arg=2), getm(M1, arg=2, argsz=47), getm(M1, arg=1),
                        {"op": "dirty", "flags": 2, "null": 0}, START, getm(M1)]),
    case("vfio/get/data-kernel-einval",
         "bitmap.data a kernel address: access_ok fails, EINVAL",
         S1_TRACKING + [getm(M1, data=2)]),
    case("vfio/get/bisect",
         "a range that cuts a mapping at either end: EINVAL (vfio_iova_dirty_bitmap)",
         S1_TRACKING + [get(0x180000, 0x80000), get(0x100000, 0x80000), get(0x201000, 0x10000)]),

    # ---------------------------------------------------------------- bitmap contents
    case("vfio/bitmap/one-mapping-all-dirty",
         "IOMMU-backed group: every page of the mapping is dirty, on every GET",
         S1_TRACKING + [getm(M1), getm(M1)]),
    case("vfio/bitmap/adjacent-mappings",
         "M1 + M2 adjacent in one GET: bits 0-271, rest of word 4 zero",
         S1_TRACKING + [get(0x100000, 0x110000)]),
    case("vfio/bitmap/unaligned-merge",
         "M1, M2, M4 at bit 300 (shift 44 into M2's word), M3 at 512: bits merged at their "
         "offsets (update_user_bitmap shift/OR path)",
         S1_TRACKING + [get(0x100000, 0x205000, bsize=72)]),
    case("vfio/bitmap/range-without-mapping",
         "a GET over no mapping returns 0 and leaves a 0x5a-filled buffer untouched",
         S1_TRACKING + [get(0x10000000, 0x1000, fill=1)]),
    case("vfio/bitmap/whole-word-overwrite",
         "a 3-page mapping overwrites its whole u64 word: 0x5a..5a becomes 0x7",
         S1_TRACKING + [getm(M3, fill=1)]),
    case("vfio/bitmap/shifted-or-whole-user-word",
         "shifted path ORs the whole user word into the mapping's bits (__bitmap_or over "
         "BITS_TO_LONGS(shift) words), so 0x5a garbage above the shift survives",
         S1_TRACKING + [get(0x229000, 0x8000, fill=1)]),
    case("vfio/bitmap/map-while-tracking",
         "a mapping created while tracking gets a bitmap: GET reports its 8 pages",
         S1_TRACKING + [mp(M5, 4 * MiB), getm(M5)]),
    case("vfio/bitmap/exact-buffer-guards",
         "a 64-page mapping fills exactly one word; 65 pages need two; guard words intact",
         [mp((0x600000, 0x40000), 0), mp((0x700000, 0x41000), MiB), START,
          get(0x600000, 0x40000, bsize=8), get(0x700000, 0x41000, bsize=16)]),
    case("vfio/bitmap/filled-buffer-zero-bits-written",
         "a 0x5a-filled bitmap shows which words the kernel wrote: M1 + M2 adjacent write words "
         "0-4 whole (word 4 = 0xffff: its zero bits overwrite the fill), the gap words 5-7 stay "
         "0x5a, M3 at bit 512 writes word 8 = 0x7; a 65-page mapping writes 0x1 into its second "
         "word (update_user_bitmap copies DIRTY_BITMAP_BYTES(nbits + shift) bytes)",
         [mp(M1), mp(M2, MiB), mp(M3, 3 * MiB), mp((0x500000, 0x41000), 4 * MiB), START,
          get(0x100000, 0x203000, fill=1), get(0x500000, 0x41000, fill=1, bsize=64)]),
    case("vfio/bitmap/gap-then-mapping",
         "a GET starting in a gap 64 pages below M2 puts M2 at bit 64 (word 1, no shift)",
         S1_TRACKING + [get(0x1C0000, 0x50000)]),

    # ---------------------------------------------------------------- unmap with bitmap
    case("vfio/unmap/bitmap-while-tracking",
         "unmap-with-bitmap: 0, size written back, the mapping's bits",
         S1_TRACKING + [mp(M5, 4 * MiB), unmapb(*M5), getm(M5)]),
    case("vfio/unmap/bitmap-not-tracking",
         "unmap-with-bitmap while not tracking: EINVAL, nothing unmapped (plain unmap then "
         "removes it)",
         S1 + [unmapb(*M3), unmap(*M3)]),
    case("vfio/unmap/bitmap-with-all-or-vaddr",
         "GET_DIRTY_BITMAP with ALL or VADDR: EINVAL",
         S1_TRACKING + [unmapb(0, 0, flags=3), unmapb(*M3, flags=5), unmap(*M3)]),
    case("vfio/unmap/bitmap-args",
         "argsz 24 with the flag, pgsize 8192, bitmap.size 0, unknown flag 8: EINVAL",
         S1_TRACKING + [unmapb(*M3, argsz=24), unmapb(*M3, pgsize=8192),
                        unmapb(*M3, bsize=0), unmap(*M3, flags=8), unmapb(*M3)]),
    case("vfio/unmap/bitmap-args-more",
         "unmap-with-bitmap: bitmap.data a kernel address (access_ok), bitmap.size one byte "
         "short of DIRTY_BITMAP_BYTES(npages), bitmap.size above DIRTY_BITMAP_SIZE_MAX: EINVAL "
         "each and nothing unmapped (vfio_iommu_type1_unmap_dma, verify_bitmap_size); "
         "exactly DIRTY_BITMAP_BYTES(3) = 8 then works",
         S1_TRACKING + [unmapb(*M3, data=2), unmapb(*M1, bsize=31), unmapb(*M3, bsize=0x10000008),
                        unmapb(*M1, bsize=32), unmapb(*M3, bsize=8)]),
    case("vfio/unmap/unaligned-in-empty-range",
         "unmap with iova +0x800, iova +1, size 0x2800 or size 0x2001 where nothing is mapped: "
         "EINVAL (vfio_dma_do_unmap: iova & (pgsize - 1), size & (pgsize - 1)), plain and with "
         "a bitmap; argsz 23 is EINVAL (vfio_iommu_type1_unmap_dma minsz); the aligned unmap "
         "of the same range is 0 with size 0",
         S1_TRACKING + [unmap(0x600800, 0x1000), unmap(0x600001, 0x1000), unmap(0x600000, 0x2800),
                        unmap(0x600000, 0x2001), unmapb(0x600800, 0x1000), unmapb(0x600001, 0x1000),
                        unmapb(0x600000, 0x2800), unmapb(0x600000, 0x2001),
                        unmap(*M3, argsz=23), unmap(0x600000, 0x2000), INFO]),
    case("vfio/unmap/gap-right-after-mapping",
         "an unmap starting exactly where a mapping ends finds no mapping "
         "(vfio_find_dma_first_node: start < dma->iova + dma->size): after M2, M4 and M3, "
         "plain and with a bitmap, size 0 and everything still mapped",
         S1_TRACKING + [unmap(0x210000, 0x1000), unmapb(0x231000, 0x1000), unmap(0x303000, 0x1000),
                        unmapb(0x210000, 0x1C000), INFO, get(0x100000, 0x205000, bsize=72)]),
    case("vfio/unmap/bisect",
         "unmap (with bitmap) cutting M1: EINVAL",
         S1_TRACKING + [unmapb(0x100000, 0x1000), unmap(0x180000, 0x80000)]),
    case("vfio/unmap/no-mapping",
         "unmap-with-bitmap over no mapping: 0, size 0, buffer untouched",
         S1_TRACKING + [unmapb(0x600000, 0x1000)]),
    case("vfio/unmap/data-null-efault",
         "unmap-with-bitmap with data NULL: EFAULT and the mapping stays (GET then works)",
         S1_TRACKING + [mp(M5, 4 * MiB), unmapb(*M5, data=1), getm(M5), unmapb(*M5)]),
    case("vfio/unmap/bitmap-copy-efault",
         "unmap-with-bitmap whose struct vfio_bitmap lies on an inaccessible page behind a "
         "readable 24-byte header: the second copy_from_user faults, EFAULT, size not written "
         "back, nothing unmapped; a plain unmap of the same layout never reads further and "
         "works; a NULL argument faults on the first copy (vfio_iommu_type1_unmap_dma)",
         S1_TRACKING + [unmapb(*M3, arg=2), unmapb(*M3, arg=1), unmap(*M3, arg=1), getm(M3),
                        unmap(*M3, arg=2), getm(M3)]),
    case("vfio/unmap/bitmap-filled-buffer",
         "unmap-with-bitmap into a 0x5a-filled buffer: M2 at bit 0 overwrites word 0 with "
         "0xffff, M4 at bit 44 is shifted and ORs the word it lands in (now M2's), M3 at bit "
         "256 overwrites word 4 with 0x7; words 1-3 keep the fill",
         S1_TRACKING + [unmapb(0x200000, 0x103000, fill=1)]),
    case("vfio/unmap/child-unmaps-parent-mapping",
         "a forked child holding the container fd unmaps the parent's mappings: 6.0 dropped "
         "vfio_dma_do_unmap()'s dma->task->mm != current->mm check (which made the unmap stop "
         "with size 0), so in 6.1 the child's plain unmap returns the size, its unmap-with-"
         "bitmap writes the bits into its own (shared) buffer, and the mappings are gone for "
         "the parent (DMA_AVAIL, GET, a second unmap)",
         S1_TRACKING + [unmap(*M2, child=1), unmapb(*M3, child=1), INFO, getm(M3), unmap(*M2),
                        unmap(0x100000, 0x205000, child=1, flags=4), mp(M1, 5 * MiB, flags=4)]),
    case("vfio/unmap/several-with-gap",
         "unmap-with-bitmap over M2 + gap + M4: size 0x15000, bits at their offsets",
         S1_TRACKING + [unmapb(0x200000, 0x31000)]),
    case("vfio/unmap/plain-while-tracking",
         "a plain unmap while tracking is allowed and drops the range",
         S1_TRACKING + [unmap(*M2), get(0x100000, 0x205000, bsize=72)]),
    case("vfio/unmap/all",
         "UNMAP_ALL needs iova == size == 0 and removes everything (size = total)",
         S1_TRACKING + [unmap(0x1000, 0, flags=2), unmap(0, 0, flags=2), INFO]),
    case("vfio/unmap/ends-at-2^64",
         "unmap of a range ending exactly at 2^64 is accepted (iova + size - 1 does not wrap) "
         "and finds nothing (iova + size wraps to 0)",
         S1_TRACKING + [unmap(TOP, 0x1000), unmap(TOP, 0x2000)]),
    case("vfio/unmap/vaddr-invalidate-restore",
         "UNMAP_FLAG_VADDR marks vaddrs invalid (size reported), twice is EINVAL and rolls back; "
         "MAP_FLAG_VADDR restores; the mapping keeps its bits",
         S1_TRACKING + [unmap(0x200000, 0x31000, flags=4), unmap(*M2, flags=4),
                        mp(M2, 5 * MiB, flags=4), mp(M4, 6 * MiB, flags=4),
                        mp(M4, 6 * MiB, flags=4), getm(M2)]),
    case("vfio/unmap/vaddr-rollback",
         "UNMAP_FLAG_VADDR over M2 + M4 with M4 already invalid: M2 is invalidated, then the "
         "walk meets M4 and rolls M2 back (vfio_dma_do_unmap: for (n = first_n; n != last_n; "
         "...) vaddr_invalid = false): EINVAL; MAP_FLAG_VADDR of M2 is then EINVAL (still "
         "valid) and of M4 fine",
         S1_TRACKING + [unmap(*M4, flags=4), unmap(0x200000, 0x31000, flags=4),
                        mp(M2, 5 * MiB, flags=4), mp(M4, 6 * MiB, flags=4), mp(M4, 6 * MiB, flags=4),
                        mp((0x22C000, 0x4000), 7 * MiB, flags=4), mp((0x22D000, 0x4000), 7 * MiB, flags=4),
                        mp((0x600000, 0x1000), 7 * MiB, flags=4),
                        unmap(0x100000, 0x205000, flags=4), INFO]),
    case("vfio/unmap/v1-semantics",
         "type1 v1: an unmap starting inside a mapping unmaps nothing (size 0), one covering "
         "its first page unmaps all of it",
         [mp(M1), unmap(0x101000, 0x1000), unmap(0x100000, 0x1000), INFO], iommu="v1"),

    # ---------------------------------------------------------------- map
    case("vfio/map/errors",
         "MAP_DMA: overlap EEXIST; unaligned, size 0, no READ/WRITE, argsz 31, the MSI window "
         "and beyond the 39-bit IOVA space EINVAL (vfio_dma_do_map)",
         [mp(M1), mp((0x180000, 0x1000), 0), mp((0x100800, 0x1000), 0), mp((0x800000, 0), 0),
          mp((0x800000, 0x1000), 0, flags=0), mp((0x800000, 0x1000), 0, argsz=31),
          mp((0xFEE00000, 0x1000), 0), mp((1 << 39, 0x1000), 0), mp((0x800000, 0x1000), 0x800),
          mp((0x800000, 0x1000), 0, flags=7), mp((0x800000, 0x1000), 0, flags=4), INFO]),

    case("vfio/map/unaligned-odd",
         "MAP_DMA alignment is checked on size | iova | vaddr with the 4 KiB IOMMU page "
         "(vfio_dma_do_map: (size | iova | vaddr) & (pgsize - 1)): iova +1, vaddr +1, size +1, "
         "iova +0x800, size 0x800 EINVAL, nothing mapped (DMA_AVAIL unchanged)",
         [mp((0x800001, 0x1000), 0), mp((0x800000, 0x1000), 1), mp((0x800000, 0x1001), 0),
          mp((0x800800, 0x1000), 0), mp((0x800000, 0x800), 0), mp((0x800000, 0x1000), 0x800),
          INFO, mp((0x800000, 0x1000), 0), INFO]),
    case("vfio/map/wrap-and-bad-vaddr",
         "vfio_dma_do_map(): an IOVA or vaddr range that wraps past 2^64 is EINVAL, checked "
         "before the overlap (EEXIST) and before pinning; a vaddr no VMA covers passes the "
         "checks and fails pinning in vaddr_get_pfns() (EFAULT), and the vfio_dma it had "
         "linked is removed again (DMA_AVAIL unchanged); a NULL argument faults (EFAULT)",
         [mp(M1), mp((TOP, 0x2000)), mp((TOP, 0x1000)), mp(M1, vaddr=TOP, size=0x2000),
          mp((0x800000, 0x2000), vaddr=TOP), mp((0x800000, 0x1000), vaddr=TOP),
          mp((0x800000, 0x1000), vaddr=0x1000), mp((0x800000, 0x1000), vaddr=KERNEL_PTR),
          mp((0x800000, 0x1000), vaddr=0x1800), mp((0x800000, 0x1000), arg=1), INFO]),
    case("vfio/map/vaddr-update-takes-any-address",
         "MAP_FLAG_VADDR only records the new vaddr (vfio_change_dma_owner(): same mm, nothing "
         "pinned again), so an address no VMA covers is accepted; a wrapping one is still EINVAL",
         S1_TRACKING + [unmap(*M2, flags=4), mp(M2, vaddr=TOP, flags=4), mp(M2, vaddr=0x1000, flags=4),
                        mp(M2, flags=4), getm(M2)]),
    case("vfio/map/dma-entry-limit-enospc",
         "with vfio_iommu_type1.dma_entry_limit = 2 (read into iommu->dma_avail when the "
         "container opens): the third mapping is ENOSPC, after the overlap check (EEXIST) and "
         "before the IOVA range check (EINVAL); a failed pin gives its entry back; an unmap "
         "frees one (vfio_dma_do_map, vfio_remove_dma)",
         [INFO, mp(M1), mp(M2, MiB), mp(M4, 2 * MiB), mp(M1), mp((1 << 39, 0x1000)), INFO,
          unmap(*M1), mp((0x800000, 0x1000), vaddr=0x1000), mp(M4, 2 * MiB), INFO],
         dma_entry_limit=2),
    case("vfio/map/rlimit-memlock",
         "without CAP_IPC_LOCK (dma->lock_cap false) pinning counts against RLIMIT_MEMLOCK "
         "(16 pages here): 8 + 8 pages fit exactly, one page more is ENOMEM and leaves nothing "
         "mapped; an unmap credits the pages back, also when a forked child unmaps (the "
         "accounting goes to the mapping's mm) (vfio_pin_pages_remote, vfio_lock_acct)",
         [mp((0x100000, 0x8000)), mp((0x200000, 0x8000), MiB), mp((0x300000, 0x1000), 2 * MiB), INFO,
          unmap(0x100000, 0x8000), mp((0x300000, 0x1000), 2 * MiB), mp((0x400000, 0x8000), 3 * MiB),
          unmap(0x200000, 0x8000, child=1), mp((0x400000, 0x8000), 3 * MiB)],
         memlock=16 * 4096),
    case("vfio/map/iova-range-edges",
         "a mapping may start at the first and end at the last byte of each IOVA range "
         "(vfio_iommu_iova_dma_valid(iommu, iova, iova + size - 1): start >= node->start && "
         "end <= node->end): page 0, the page below the MSI window, the page after it, the last "
         "page of the 39-bit space; one page more at either window edge is EINVAL",
         [mp((0xFEDFF000, 0x2000), 0x4000), mp((0xFEEFF000, 0x2000), 0x4000),
          mp((0x7FFFFFF000, 0x2000), 0x4000),
          mp((0, 0x1000), 0), mp((0xFEDFF000, 0x1000), 0x1000), mp((0xFEF00000, 0x1000), 0x2000),
          mp((0x7FFFFFF000, 0x1000), 0x3000), INFO,
          START, get(0xFEDFF000, 0x102000), unmapb(0x7FFFFFF000, 0x1000)]),
    case("vfio/map/adjacent-below-and-above",
         "mappings that touch an existing one end to start are not overlaps "
         "(vfio_find_dma: start + size <= dma->iova, start >= dma->iova + dma->size): M2 first, "
         "then M1 right below it and a mapping right above it; one GET reports all three",
         [mp(M2, MiB), mp(M1, 0), mp((0x210000, 0x3000), 2 * MiB), START,
          get(0x100000, 0x113000), INFO]),

    # ---------------------------------------------------------------- the 6.1 stale bits
    case("vfio/stale/get-after-shifted-merge",
         "after a GET packed M4 at bit 300 (shift 44), GET of M4 alone reports "
         "0x0001f0000000ffff on 6.1 (stale bits) instead of 0x1f",
         S1_TRACKING + [get(0x100000, 0x205000, bsize=72), getm(M4), getm(M4)]),
    case("vfio/stale/unmap-after-shifted-merge",
         "the stale bits also come out of unmap-with-bitmap over M2 + gap + M4",
         S1_TRACKING + [get(0x100000, 0x205000, bsize=72), unmapb(0x200000, 0x31000)]),
    case("vfio/stale/cleared-by-stop-start",
         "STOP + START frees and reallocates the bitmaps: the stale bits are gone",
         S1_TRACKING + [get(0x100000, 0x205000, bsize=72), STOP, START, getm(M4)]),
    case("vfio/stale/two-word-mapping",
         "a 70-page mapping at shift 10 spills into a second word; the leftovers come back "
         "in both words",
         [mp((0x100000, 0xA000), 0), mp((0x10A000, 0x46000), MiB), START,
          get(0x100000, 0x50000), get(0x10A000, 0x46000), get(0x10A000, 0x46000)]),

    # ---------------------------------------------------------------- device DMA
    case("vfio/dma/copy-through-viommu",
         "edu copies 2 KiB from one mapping to another through the vIOMMU",
         S1 + [{"op": "dma", "src": 0x100000, "dst": 0x200000, "len": 2048}]),
    case("vfio/dma/unmapped-destination",
         "after unmapping the destination the DMA write faults in the vIOMMU: no copy",
         S1 + [unmap(*M2), {"op": "dma", "src": 0x100000, "dst": 0x200000, "len": 256}]),
    case("vfio/dma/read-only-destination",
         "a mapping without WRITE cannot be a DMA destination",
         [mp(M1), mp(M5, 4 * MiB, flags=1), {"op": "dma", "src": 0x100000, "dst": 0x400000, "len": 256},
          {"op": "dma", "src": 0x400000, "dst": 0x100000, "len": 256}]),
    case("vfio/dma/write-only-source-readable",
         "VT-d quirk the model carries: a MAP_DMA with WRITE only is still device-readable "
         "(intel __domain_mapping() sets DMA_FL_PTE_PRESENT = DMA_PTE_READ in every PTE)",
         [mp(M1), mp(M5, 4 * MiB, flags=2), {"op": "dma", "src": 0x400000, "dst": 0x100000, "len": 256}]),
    case("vfio/dma/while-tracking",
         "a real device write while tracking: data arrives, the bitmap is all ones as before",
         S1_TRACKING + [getm(M2), {"op": "dma", "src": 0x100000, "dst": 0x200100, "len": 512},
                        getm(M2)]),
]
