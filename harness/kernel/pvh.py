"""Boot the uncompressed kernel through its PVH entry point when it has one.

Under TCG, decompressing a bzImage's xz payload takes about two seconds of
emulated time on every boot. A kernel built with CONFIG_PVH carries a Xen
PHYS32_ENTRY ELF note, and QEMU boots such an ELF vmlinux directly. We take
the vmlinux out of the bzImage once (cached by the bzImage's sha256) and boot
that; a kernel without the note, or with a payload we cannot decompress,
boots from the bzImage as before.
"""
from __future__ import annotations

import gzip
import io
import lzma
import struct
from pathlib import Path

from elftools.elf.elffile import ELFFile

from harness.cache import cache_root, load_verified, locked, store_verified
from harness.kernel import KernelImage

XEN_ELFNOTE_PHYS32_ENTRY = 18   # include/xen/interface/elfnote.h


def _payload(image: bytes) -> bytes | None:
    """The compressed vmlinux, located by the setup header (Documentation/x86/boot.rst)."""
    if len(image) < 0x250 or image[0x202:0x206] != b"HdrS":
        return None
    version = struct.unpack_from("<H", image, 0x206)[0]
    if version < 0x208:  # payload_offset/length exist since boot protocol 2.08
        return None
    setup_sects = image[0x1F1] or 4
    offset, length = struct.unpack_from("<II", image, 0x248)
    start = (setup_sects + 1) * 512 + offset
    return image[start:start + length]


def _decompress(blob: bytes) -> bytes | None:
    try:
        if blob.startswith(b"\xfd7zXZ\x00"):
            return lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(blob)
        if blob.startswith(b"\x1f\x8b"):
            return gzip.GzipFile(fileobj=io.BytesIO(blob)).read()
    except (lzma.LZMAError, OSError, EOFError):
        return None
    return None  # zstd, lz4, lzo, bzip2: boot the bzImage


def has_pvh_note(elf_bytes: bytes) -> bool:
    elf = ELFFile(io.BytesIO(elf_bytes))
    for segment in elf.iter_segments():
        if segment["p_type"] == "PT_NOTE":
            for note in segment.iter_notes():
                if note["n_name"] == "Xen" and note["n_type"] == XEN_ELFNOTE_PHYS32_ENTRY:
                    return True
    return False


def boot_file(kernel: KernelImage) -> Path:
    """The file to give QEMU's -kernel: a cached PVH vmlinux, else the bzImage."""
    target = cache_root() / "pvh" / f"{kernel.sha256}.vmlinux"
    marker = target.with_suffix(".none")
    with locked(target):
        if load_verified(target):
            return target
        if load_verified(marker):
            return kernel.bzimage
        blob = _payload(kernel.bzimage.read_bytes())
        vmlinux = _decompress(blob) if blob else None
        if vmlinux and vmlinux.startswith(b"\x7fELF") and has_pvh_note(vmlinux):
            store_verified(target, vmlinux)
            return target
        store_verified(marker, b"")
        return kernel.bzimage
