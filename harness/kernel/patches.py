"""Patches for a kernel build: what they touch, and applying them with git apply."""
from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from harness.cache import sha256_file
from harness.errors import UsageError

_TARGET = re.compile(r"^\+\+\+ (?:b/)?(\S+)", re.M)
_SOURCE = re.compile(r"^--- (?:a/)?(\S+)", re.M)


@dataclass(frozen=True)
class Patch:
    path: Path
    sha256: str
    files: tuple[str, ...]      # paths the patch touches (new names for renames/creations)
    subject: str | None = None  # from a git format-patch header, if any

    def record(self) -> dict:
        """An entry of run.json kernel.series: a --patch is named by its file (design section 5)."""
        return {"subject": self.path.name, "revision": None,
                "message_id": None, "sha256": self.sha256}


def load(path: Path) -> Patch:
    if not path.is_file():
        raise UsageError(f"--patch {path}: no such file")
    text = path.read_text(errors="replace")
    files = sorted({f for f in _TARGET.findall(text) + _SOURCE.findall(text) if f != "/dev/null"})
    if not files:
        raise UsageError(f"--patch {path}: not a patch (no ---/+++ file headers)")
    subject = re.search(r"^Subject: (.+)$", text, re.M)
    return Patch(path.resolve(), sha256_file(path), tuple(files),
                 subject.group(1).strip() if subject else None)


def apply(patch: Patch, tree: Path) -> None:
    """Apply one -p1 patch to `tree` (all or nothing); name the file and hunk that fail."""
    done = subprocess.run(["git", "apply", "-p1", "--whitespace=nowarn", str(patch.path)],
                          cwd=tree, capture_output=True, text=True, timeout=120)
    if done.returncode == 0:
        return
    failed = re.search(r"error: patch failed: (\S+):(\d+)", done.stderr)
    if failed:
        raise UsageError(f"--patch {patch.path.name} does not apply: {failed.group(1)}, "
                         f"hunk at line {failed.group(2)}")
    missing = re.search(r"error: (\S+): (No such file or directory|does not exist in index)", done.stderr)
    if missing:
        raise UsageError(f"--patch {patch.path.name} does not apply: {missing.group(1)} is not in the source")
    lines = done.stderr.strip().splitlines() or ["(no message)"]
    raise UsageError(f"--patch {patch.path.name} does not apply: {lines[0]}")
