"""A bzImage given with --kernel: validate it and read its version string."""
from __future__ import annotations

import os
import struct
from pathlib import Path

from harness.cache import sha256_file
from harness.errors import UsageError
from harness.kernel import KernelImage

# Documentation/x86/boot.rst: boot_flag 0xAA55 at 0x1fe, header magic "HdrS"
# at 0x202, kernel_version pointer (relative to 0x200) at 0x20e.
_BOOT_FLAG, _MAGIC, _VERSION_PTR = 0x1FE, 0x202, 0x20E
# setup_sects at 0x1f1, syssize at 0x1f4, the boot protocol version at 0x206
_SETUP_SECTS, _SYSSIZE, _PROTOCOL = 0x1F1, 0x1F4, 0x206


def read_version(path: Path) -> str:
    """The release (`uname -r`) embedded in a bzImage's setup header."""
    with open(path, "rb") as f:
        head = f.read(0x8000)
    if len(head) < 0x210 or struct.unpack_from("<H", head, _BOOT_FLAG)[0] != 0xAA55 \
            or head[_MAGIC:_MAGIC + 4] != b"HdrS":
        raise UsageError(f"--kernel {path}: not a bzImage (no x86 boot header)")
    # A truncated bzImage passed the header check and failed only at boot: the header
    # tells the size of the setup (setup_sects, 0 meaning 4) and of the protected-mode
    # kernel (syssize, in 16-byte units; boot protocol 2.04+).
    setup_sects = head[_SETUP_SECTS] or 4
    protocol = struct.unpack_from("<H", head, _PROTOCOL)[0]
    expected = (setup_sects + 1) * 512 + (struct.unpack_from("<I", head, _SYSSIZE)[0] * 16
                                           if protocol >= 0x204 else 0)
    size = os.path.getsize(path)
    if size < expected:
        raise UsageError(f"--kernel {path}: truncated bzImage ({size} of the {expected} bytes "
                         f"its header gives)")
    offset = struct.unpack_from("<H", head, _VERSION_PTR)[0] + 0x200
    text = head[offset:offset + 256].split(b"\0", 1)[0].decode("ascii", "replace")
    return text.split(" ", 1)[0]


def from_path(path: Path, modules: Path | None = None) -> KernelImage:
    if not path.is_file():
        raise UsageError(f"--kernel {path}: no such file")
    version = read_version(path)
    modules_dir = None
    if modules is not None:
        modules_dir = resolve_modules_dir(modules, version)
    return KernelImage(kind="bzimage", version=version, bzimage=path.resolve(),
                       sha256=sha256_file(path), modules_dir=modules_dir)


def resolve_modules_dir(modules: Path, version: str) -> Path:
    """Accept lib/modules/<version> itself, or a root that contains it."""
    for candidate in (modules, modules / "lib/modules" / version, modules / version):
        if (candidate / "kernel").is_dir():
            return candidate.resolve()
    raise UsageError(f"--modules {modules}: no kernel modules for {version} "
                     f"(expected {modules}/lib/modules/{version}/kernel)")
