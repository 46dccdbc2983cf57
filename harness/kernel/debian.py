"""The default kernel under test: Debian's packaged kernel, unpacked, never installed.

Cached under debian/<package>_<version>/ (a Debian version's content never changes):
  download/   the .deb, its sha256 checked against apt's index (a folder artifact)
  tree/       the unpacked package (a folder artifact: its manifest lists every file)
Each reuse checks what it reads against the manifests (harness/cache.py): the boot
files here, each module a guest image packs through verify_files(); a damaged tree is
unpacked again from the .deb, a damaged .deb downloaded again.
"""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from harness.cache import (atomic_directory, cache_root, load_verified, locked, read_manifest,
                           sha256_file, store_verified)
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


def resolve_package() -> tuple[str, str]:
    """The exact image package `linux-image-amd64` depends on and its version, e.g.
    (linux-image-6.1.0-57-amd64, 6.1.192-3): the meta package pins it with `(= version)`."""
    for attempt in range(2):
        out = _run(["apt-cache", "show", "--no-all-versions", META_PACKAGE])
        for line in out.splitlines():
            if not line.startswith("Depends:"):
                continue
            for dep in line.removeprefix("Depends:").split(","):
                m = re.match(r"\s*(linux-image-[\w.+-]+)\s*(?:\(=\s*([^)\s]+)\))?", dep)
                if m:
                    return m.group(1), m.group(2) or candidate_version(m.group(1))
        if attempt == 0:  # an empty package list: refresh it once
            _run(["apt-get", "update", "-q"])
    raise HarnessError(f"apt-cache show {META_PACKAGE}: no linux-image dependency")


def candidate_version(package: str) -> str:
    found = re.search(r"Candidate:\s*(\S+)", _run(["apt-cache", "policy", package]))
    if not found or found.group(1) == "(none)":
        raise HarnessError(f"apt-cache policy {package}: no candidate version")
    return found.group(1)


def _index_entry(package: str, version: str) -> tuple[str, str]:
    """(file name, sha256) of the .deb in apt's index."""
    out = _run(["apt-get", "download", "--print-uris", f"{package}={version}"])
    m = re.search(r"^'[^']+' (\S+\.deb) \d+ SHA256:([0-9a-f]{64})", out, re.M)
    if not m:
        raise HarnessError(f"apt-get download --print-uris {package}={version}: no .deb with a "
                           "SHA256 in apt's index")
    return m.group(1), m.group(2)


def _download(package: str, version: str, dest: Path) -> None:
    """The .deb into `dest`, checked against the index's sha256; a .deb of that exact
    version kept by an earlier layout (debian/<package>/download) is reused if it matches."""
    name, wanted = _index_entry(package, version)
    legacy = cache_root() / "debian" / package / "download" / name
    if legacy.is_file() and sha256_file(legacy) == wanted:
        shutil.copyfile(legacy, dest / name)
    else:
        _run(["apt-get", "download", f"{package}={version}"], cwd=dest)
    debs = sorted(dest.glob("*.deb"))
    if not debs:
        raise HarnessError(f"apt-get download {package}={version}: no .deb arrived")
    got = sha256_file(debs[0])
    if got != wanted:
        raise HarnessError(f"apt-get download {package}={version}: {debs[0].name} has sha256 "
                           f"{got[:12]}..., apt's index says {wanted[:12]}...")


def _boot_files(tree: Path) -> list[str]:
    """The files of the tree a run reads directly (the kernel, its config), by the manifest."""
    return [rel for rel in (read_manifest(tree) or {}) if rel.startswith("boot/")] + ["deb.sha256"]


def fetch(package: str | None = None, version: str | None = None) -> KernelImage:
    """Download and unpack the package into the cache (once); describe its kernel."""
    if package is None:
        package, version = resolve_package()
    version = version or candidate_version(package)
    root = cache_root() / "debian" / f"{package}_{version}"
    download, tree = root / "download", root / "tree"
    with locked(root):
        if not load_verified(tree, _boot_files(tree)):
            if not load_verified(download):
                with atomic_directory(download) as tmp:
                    _download(package, version, tmp)
                    store_verified(tmp)
            debs = sorted(download.glob("*.deb"))
            with atomic_directory(tree) as tmp:
                _run(["dpkg", "-x", str(debs[0]), str(tmp)])
                (tmp / "deb.sha256").write_text(read_manifest(download)[debs[0].name])
                store_verified(tmp)
        manifest = read_manifest(tree)
    images = sorted((tree / "boot").glob("vmlinuz-*"))
    if not images:
        raise HarnessError(f"{package}: no boot/vmlinuz-* in the package")
    version_name = images[0].name.removeprefix("vmlinuz-")
    return KernelImage(kind="debian", version=version_name, bzimage=images[0],
                       sha256=manifest[f"boot/{images[0].name}"],
                       modules_dir=tree / "lib/modules" / version_name,
                       source={"path": f"apt:{package}", "sha256": (tree / "deb.sha256").read_text()})


def verify_files(kernel: KernelImage, paths: list[Path]) -> None:
    """Check files of a fetched package that the caller is about to read (a guest image's
    modules) against the tree's manifest; a damaged tree is unpacked again first."""
    tree = Path(kernel.bzimage).parents[1]
    root = tree.parent
    if kernel.kind != "debian" or root.parent != cache_root() / "debian" or not paths:
        return   # not an unpacked package of this cache
    rels = [Path(p).relative_to(tree) for p in paths]
    for attempt in range(2):
        with locked(root):
            if load_verified(tree, rels):
                return
        if attempt == 0:
            package, _, version = root.name.partition("_")
            fetch(package, version)
    raise HarnessError(f"{tree}: {rels[0]} does not match the manifest even after unpacking again")
