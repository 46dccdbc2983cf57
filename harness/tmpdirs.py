"""kvmconf's private temporary folders, each marked with its owner so that a folder
a killed command left behind (SIGKILL leaves no chance to clean) is reclaimed by the
next command: the owner is gone when no process has its pid and start time."""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

OWNER = ".kvmconf-owner"
PREFIX = "kvmconf-"


def _start_time(pid: int) -> str | None:
    """Field 22 of /proc/<pid>/stat (clock ticks since boot), None when pid is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rfind(")") + 2:].split()[19]


def make(prefix: str) -> Path:
    """A 0700 folder under the temp dir, owned by this process."""
    if not prefix.startswith(PREFIX):
        raise ValueError(f"{prefix!r}: kvmconf's temporary folders start with {PREFIX!r}")
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    (folder / OWNER).write_text(f"{os.getpid()} {_start_time(os.getpid())}\n")
    return folder


def owner_alive(folder: Path) -> bool | None:
    """True or False for a folder marked by make(), None for one without the mark."""
    try:
        pid, start = (folder / OWNER).read_text().split()
        return _start_time(int(pid)) == start
    except (OSError, ValueError):
        return None


def reclaim(root: Path | None = None) -> list[str]:
    """Remove the marked folders whose owner is gone; the names removed."""
    root = Path(root or tempfile.gettempdir())
    gone = []
    for folder in sorted(root.glob(PREFIX + "*")):
        if folder.is_dir() and not folder.is_symlink() and owner_alive(folder) is False:
            shutil.rmtree(folder, ignore_errors=True)
            gone.append(folder.name)
    return gone


def owned_by(pid: int, root: Path | None = None) -> list[Path]:
    """The marked folders process `pid` owns (for checks that nothing was left)."""
    root = Path(root or tempfile.gettempdir())
    found = []
    for folder in root.glob(PREFIX + "*"):
        try:
            if (folder / OWNER).read_text().split()[0] == str(pid):
                found.append(folder)
        except (OSError, IndexError):
            continue
    return found
