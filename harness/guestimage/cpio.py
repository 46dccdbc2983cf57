"""newc cpio archives written in Python: deterministic, no external tool."""
from __future__ import annotations

import stat
from dataclasses import dataclass


@dataclass
class Entry:
    path: str          # inside the archive, no leading slash
    mode: int          # full st_mode (type + permissions)
    data: bytes = b""  # file content, or the target of a symlink


def _header(ino: int, entry: Entry, size: int) -> bytes:
    name = entry.path.encode() + b"\0"
    fields = [ino, entry.mode, 0, 0, 1, 0, size, 0, 0, 0, 0, len(name), 0]
    head = b"070701" + b"".join(b"%08X" % f for f in fields) + name
    return head + b"\0" * (-len(head) % 4)


def archive(entries: list[Entry]) -> bytes:
    """The archive of `entries` (parents must come before children)."""
    out = bytearray()
    for ino, entry in enumerate(entries, start=1):
        out += _header(ino, entry, len(entry.data))
        out += entry.data + b"\0" * (-len(entry.data) % 4)
    out += _header(0, Entry("TRAILER!!!", 0), 0)
    return bytes(out)


def directory(path: str, perm: int = 0o755) -> Entry:
    return Entry(path, stat.S_IFDIR | perm)


def file(path: str, data: bytes, perm: int = 0o644) -> Entry:
    return Entry(path, stat.S_IFREG | perm, data)


def symlink(path: str, target: str) -> Entry:
    return Entry(path, stat.S_IFLNK | 0o777, target.encode())
