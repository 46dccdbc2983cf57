"""The source tree of the kernel under test, for features that compile the kernel's own
code into a user-space program (harness-side payloads: the #VC code of SEV-ES).

- a built kernel: its source with its patches applied, as a read-only view: a private
  folder of symlinks into the unpacked source, with real copies only where a patch
  changed a file (the unpacked source is never written);
- Debian's packaged kernel: Debian's linux-source of exactly that package version (a
  mismatch is an error naming both);
- a source with patches that no feature of the run needs built (SourceKernel): the same
  view, no kernel build;
- a bzImage or a live host's running kernel: no source is known.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from harness.errors import HarnessError
from harness.kernel import build, patches


class NoSource(Exception):
    """No source tree is known for this kernel (the reason is the message)."""


@dataclass
class SourceKernel:
    """A kernel source with patches, not built: what a run needs when every selected
    feature compiles the kernel's own code into a user-space program (no boot)."""
    source: Path
    patch_files: list[Path] = field(default_factory=list)
    series: list[dict] = field(default_factory=list)
    kind: str = "source"

    def __post_init__(self):
        self.tree, self.digest = build.pristine_tree(self.source)
        self.version = makefile_version(self.tree)

    def config(self) -> None:
        return None

    def record(self) -> dict:
        return {"kind": self.kind, "version": self.version, "sha256": None,
                "source": {"path": str(self.source), "sha256": self.digest},
                "config_sha256": None, "series": self.series}


def makefile_version(tree: Path) -> str:
    """VERSION.PATCHLEVEL.SUBLEVEL[EXTRAVERSION] from a tree's top-level Makefile."""
    text = (tree / "Makefile").read_text(errors="replace")
    value = {k: (re.search(rf"^{k} = ?(.*)$", text, re.M) or [None, ""])[1].strip()
             for k in ("VERSION", "PATCHLEVEL", "SUBLEVEL", "EXTRAVERSION")}
    return f"{value['VERSION']}.{value['PATCHLEVEL']}.{value['SUBLEVEL']}{value['EXTRAVERSION']}"


def debian_package_version(kernel) -> str | None:
    """The Debian package version of a fetched linux-image (its .deb's file name)."""
    folder = Path(kernel.bzimage).parents[2] / "download"     # <package>/tree/boot/vmlinuz-*
    debs = sorted(folder.glob("*.deb")) if folder.is_dir() else []
    m = re.match(r"[^_]+_([^_]+)_", debs[0].name) if debs else None
    return m.group(1) if m else None


def linux_source_version() -> str | None:
    done = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "linux-source-6.1"],
                          capture_output=True, text=True, timeout=30)
    return done.stdout.strip() or None if done.returncode == 0 else None


def tree_of(kernel, workdir: Path) -> Path:
    """The kernel's source tree (a view made in `workdir` for a patched build)."""
    if kernel.kind == "debian":
        wanted = debian_package_version(kernel)
        have = linux_source_version()
        if have is None:
            # a fresh machine: `make run` installs what it needs (as pristine_tree does)
            build.install_linux_source()
            have = linux_source_version()
        if wanted is None or have is None or wanted != have:
            raise HarnessError(f"kernel {kernel.version} is Debian package {wanted or 'unknown'}, but "
                               f"linux-source-6.1 is {have or 'not installed'}: the kernel code a feature "
                               f"compiles must come from exactly the kernel under test's source")
        return build.pristine_tree(build.DEFAULT_SOURCE)[0]
    if kernel.kind in ("built", "source"):
        pristine = kernel.tree if kernel.kind == "source" else build.pristine_tree(Path(kernel.source["path"]))[0]
        missing = [p for p in kernel.patch_files if not Path(p).is_file()]
        if missing:
            raise HarnessError(f"kernel {kernel.version}: its patch {missing[0]} is gone (rebuild it)")
        changed = [patches.load(Path(p)) for p in kernel.patch_files]
        return patched_view(pristine, changed, workdir) if changed else pristine
    raise NoSource(f"no source tree is known for kernel {kernel.version} ({kernel.kind}): the feature "
                   f"compiles the kernel's own code from it (use --source, or Debian's kernel)")


def patched_view(pristine: Path, patch_list: list, workdir: Path) -> Path:
    """A tree that reads like `pristine` with the patches applied: symlinks everywhere,
    real files only along the paths the patches touch."""
    touched = sorted({rel for p in patch_list for rel in p.files})
    scratch = Path(tempfile.mkdtemp(prefix="patched-", dir=workdir))
    for rel in touched:                       # git apply on copies of just those files
        src, dst = pristine / rel, scratch / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.exists():
            shutil.copyfile(src, dst)
    for p in patch_list:
        done = subprocess.run(["git", "apply", "--unsafe-paths", str(p.path)], cwd=scratch,
                              capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise HarnessError(f"--patch {p.path.name} does not apply to {pristine.name}: "
                               f"{done.stderr.strip().splitlines()[0] if done.stderr.strip() else done.returncode}")
    view = Path(tempfile.mkdtemp(prefix="tree-", dir=workdir))
    dirs = {Path(rel).parent for rel in touched}
    chain = {parent for d in dirs for parent in [d, *d.parents]} - {Path(".")}
    _link_children(pristine, view, Path("."), chain)
    for d in sorted(chain, key=lambda p: len(p.parts)):
        _link_children(pristine, view, d, chain)
    for rel in touched:
        target = view / rel
        if target.is_symlink() or target.exists():
            target.unlink()
        if (scratch / rel).exists():
            os.replace(scratch / rel, target)
    return view


def _link_children(pristine: Path, view: Path, rel: Path, real_dirs: set[Path]) -> None:
    (view / rel).mkdir(parents=True, exist_ok=True)
    folder = pristine / rel
    if not folder.is_dir():
        return
    for child in folder.iterdir():
        sub = rel / child.name
        if sub in real_dirs or (view / sub).exists():
            continue
        (view / sub).symlink_to(child)
