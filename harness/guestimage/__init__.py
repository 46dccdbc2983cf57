"""The guest image: a busybox initramfs with an SSH server, modules and payloads.

The base archive depends only on its inputs and is cached by their hash; the
per-run keys go into a small second archive appended to it (the kernel unpacks
concatenated cpio archives in order), so a new key never rebuilds the base.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from harness.cache import cache_root, load_verified, locked, sha256_bytes, store_verified
from harness.errors import HarnessError
from harness.guestimage import cpio
from harness.guestimage.modules import ModuleIndex, plan
from harness.kernel import KernelImage

PAYLOAD_DIR = "/opt/kvmconf/bin"
BUSYBOX = Path("/bin/busybox")
DROPBEAR = Path("/usr/sbin/dropbear")
SFTP_SERVER = Path("/usr/lib/openssh/sftp-server")
INIT = Path(__file__).with_name("init.sh")


class _Tree:
    """Archive entries by path, with parent folders added on the way."""

    def __init__(self) -> None:
        self.entries: dict[str, cpio.Entry] = {}

    def _parents(self, path: str) -> None:
        parts = path.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            parent = "/".join(parts[:i])
            self.entries.setdefault(parent, cpio.directory(parent))

    def add(self, entry: cpio.Entry) -> None:
        entry.path = entry.path.lstrip("/")
        self._parents(entry.path)
        self.entries[entry.path] = entry

    def add_host_file(self, host: Path, guest: str | None = None, perm: int = 0o755) -> None:
        self.add(cpio.file(guest or str(host), host.read_bytes(), perm))

    def archive(self) -> bytes:
        return cpio.archive([self.entries[p] for p in sorted(self.entries)])


def _shared_libraries(binary: Path) -> list[Path]:
    """The loader and libraries a dynamic binary needs, from ldd."""
    try:
        out = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, timeout=30).stdout
    except FileNotFoundError:
        raise HarnessError("ldd not found: needed to copy the SSH server's libraries") from None
    libs = [Path(m) for m in re.findall(r"(/\S+\.so[\S]*)", out)]
    return [lib for lib in libs if lib.exists()]


def _require(path: Path, package: str) -> Path:
    if not path.exists():
        raise HarnessError(f"{path} not found: install the Debian package {package}")
    return path


def _verifier(kernel: KernelImage):
    """What checks the kernel's module files against the cache's record before they are
    read and packed (Debian's unpacked package); None for modules from elsewhere."""
    if kernel.kind != "debian":
        return None
    from harness.kernel import debian
    return lambda paths: debian.verify_files(kernel, paths)


@dataclass
class GuestImage:
    base: Path            # cached base archive
    sha256: str
    modules: list[str]    # "spec name" lines, for the record


def build_base(kernel: KernelImage, payloads: dict[str, Path], groups: list[str]) -> GuestImage:
    """Build (or reuse) the base initramfs for this kernel, payload set and module groups."""
    tree = _Tree()
    for d in ("proc", "sys", "dev", "tmp", "run", "root", "etc/dropbear"):
        tree.add(cpio.directory(d))
    tree.add(cpio.directory("root/.ssh", 0o700))
    busybox = _require(BUSYBOX, "busybox-static")
    tree.add_host_file(busybox, "bin/busybox")
    applets = subprocess.run([str(busybox), "--list-full"], capture_output=True, text=True,
                             timeout=30).stdout.split()
    for applet in applets:
        if applet != "bin/busybox" and not applet.endswith("/init"):
            tree.add(cpio.symlink(applet, "/bin/busybox"))
    for binary, package in ((DROPBEAR, "dropbear-bin"), (SFTP_SERVER, "openssh-sftp-server")):
        _require(binary, package)
        tree.add_host_file(binary)
        for lib in _shared_libraries(binary):
            tree.add_host_file(lib.resolve(), str(lib))
    # dropbear looks for the SFTP subsystem at /usr/lib/sftp-server (its SFTPSERVER_PATH).
    tree.add(cpio.symlink("usr/lib/sftp-server", str(SFTP_SERVER)))
    tree.add(cpio.file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n"))
    tree.add(cpio.file("etc/group", b"root:x:0:\n"))
    tree.add(cpio.file("etc/shells", b"/bin/sh\n"))
    tree.add(cpio.file("etc/nsswitch.conf", b"passwd: files\ngroup: files\n"))
    tree.add(cpio.file("init", INIT.read_bytes(), 0o755))

    index = ModuleIndex(kernel.modules_dir, _verifier(kernel))
    lines = []
    for spec, modules in plan(index, groups):
        for module in modules:
            rel = module.path.relative_to(kernel.modules_dir)
            guest_path = f"/lib/modules/{kernel.version}/{rel}"
            tree.add_host_file(module.path, guest_path, 0o644)
            lines.append(f"{spec} {module.name} {guest_path}")
    tree.add(cpio.file("etc/kvmconf/modules", ("\n".join(lines) + "\n").encode()))
    tree.add(cpio.file("etc/kvmconf/image.json", json.dumps(
        {"kernel": kernel.version, "payloads": sorted(payloads)}).encode()))
    for name, path in sorted(payloads.items()):
        tree.add_host_file(path, f"{PAYLOAD_DIR}/{name}")

    data = tree.archive()
    digest = sha256_bytes(data)
    target = cache_root() / "images" / f"{digest}.cpio"
    with locked(target):
        if not load_verified(target):
            store_verified(target, data)
    return GuestImage(base=target, sha256=digest, modules=lines)


def with_keys(image: GuestImage, authorized_key: str, host_key: bytes, dest: Path) -> Path:
    """base + a per-run archive holding the client public key and the host key."""
    overlay = _Tree()
    overlay.add(cpio.directory("root/.ssh", 0o700))
    overlay.add(cpio.file("root/.ssh/authorized_keys", authorized_key.encode() + b"\n", 0o600))
    overlay.add(cpio.file("etc/dropbear/host_key", host_key, 0o600))
    with open(dest, "wb") as out, open(image.base, "rb") as base:
        shutil.copyfileobj(base, out)
        out.write(overlay.archive())
    os.chmod(dest, 0o600)
    return dest
