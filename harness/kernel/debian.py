"""The default kernel under test: Debian's packaged kernel, unpacked, never installed."""
from __future__ import annotations

import subprocess
from pathlib import Path

from harness.cache import atomic_directory, cache_root, locked, sha256_file
from harness.errors import HarnessError
from harness.kernel import KernelImage

META_PACKAGE = "linux-image-amd64"


def _run(argv: list[str], cwd: Path | None = None, timeout: float = 600) -> str:
    try:
        done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        raise HarnessError(f"{argv[0]} not found: the Debian kernel needs apt and dpkg") from None
    except subprocess.TimeoutExpired:
        raise HarnessError(f"{' '.join(argv)}: no answer within {timeout:.0f} s") from None
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["(no output)"]
        raise HarnessError(f"{' '.join(argv)} failed: {tail[0]}")
    return done.stdout


def resolve_package() -> str:
    """The exact image package `linux-image-amd64` depends on (e.g. linux-image-6.1.0-56-amd64)."""
    for attempt in range(2):
        out = _run(["apt-cache", "depends", META_PACKAGE])
        for line in out.splitlines():
            name = line.strip().removeprefix("Depends:").strip()
            if line.strip().startswith("Depends:") and name.startswith("linux-image-"):
                return name
        if attempt == 0:  # an empty package list: refresh it once
            _run(["apt-get", "update", "-q"])
    raise HarnessError(f"apt-cache depends {META_PACKAGE}: no linux-image dependency")


def fetch(package: str | None = None) -> KernelImage:
    """Download and unpack the package into the cache (once); describe its kernel."""
    package = package or resolve_package()
    root = cache_root() / "debian" / package
    tree = root / "tree"
    with locked(root):
        if not (tree / "boot").is_dir():
            with atomic_directory(root / "download") as tmp:
                _run(["apt-get", "download", package], cwd=tmp)
            debs = sorted((root / "download").glob("*.deb"))
            if not debs:
                raise HarnessError(f"apt-get download {package}: no .deb arrived")
            with atomic_directory(tree) as tmp:
                _run(["dpkg", "-x", str(debs[0]), str(tmp)])
                (tmp / "deb.sha256").write_text(sha256_file(debs[0]))
    images = sorted((tree / "boot").glob("vmlinuz-*"))
    if not images:
        raise HarnessError(f"{package}: no boot/vmlinuz-* in the package")
    version = images[0].name.removeprefix("vmlinuz-")
    sha_file = tree / "vmlinuz.sha256"
    if not sha_file.exists():
        sha_file.write_text(sha256_file(images[0]))
    return KernelImage(kind="debian", version=version, bzimage=images[0],
                       sha256=sha_file.read_text().strip(),
                       modules_dir=tree / "lib/modules" / version,
                       source={"path": f"apt:{package}", "sha256": (tree / "deb.sha256").read_text()})
