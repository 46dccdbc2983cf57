"""Build guests/<name>/ into a static binary and check its ELF.

Every payload links guests/lib (the mini VMM library). The build is cached by
the hash of its sources and the compiler version; a payload whose build or ELF
checks fail is recorded as an error for its feature only (its cases ERROR).
"""
from __future__ import annotations

import hashlib
import importlib
import subprocess
from dataclasses import dataclass
from pathlib import Path

from elftools.elf.elffile import ELFFile

from harness.cache import atomic_write_bytes, cache_root, locked
from harness.errors import HarnessError

GUESTS = Path(__file__).resolve().parents[2] / "guests"
CFLAGS = ["-static", "-O2", "-g", "-Wall", "-Werror", "-std=gnu11"]


@dataclass
class Payload:
    name: str
    path: Path
    symbols: dict[str, int]


def sources(name: str) -> list[Path]:
    folder = GUESTS / name
    if not folder.is_dir():
        raise HarnessError(f"payload {name}: no folder {folder}")
    own = sorted(p for p in folder.iterdir() if p.suffix in (".c", ".S"))
    lib = sorted(p for p in (GUESTS / "lib").glob("*") if p.suffix in (".c", ".S"))
    if not own:
        raise HarnessError(f"payload {name}: no .c or .S sources in {folder}")
    return own + lib


def _compiler_version() -> str:
    try:
        return subprocess.run(["gcc", "--version"], capture_output=True, text=True,
                              timeout=30).stdout.splitlines()[0]
    except (FileNotFoundError, IndexError):
        raise HarnessError("gcc not found: payloads need gcc and libc6-dev") from None


def build(name: str) -> Payload:
    srcs = sources(name)
    digest = hashlib.sha256(_compiler_version().encode() + " ".join(CFLAGS).encode())
    headers = sorted((GUESTS / name).glob("*.h")) + sorted((GUESTS / "lib").glob("*.h"))
    for path in srcs + headers:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    target = cache_root() / "payloads" / f"{name}-{digest.hexdigest()[:16]}"
    with locked(target):
        if not target.exists():
            tmp = target.with_suffix(".tmp")
            argv = ["gcc", *CFLAGS, f"-I{GUESTS / 'lib'}", f"-I{GUESTS / name}", "-o", str(tmp),
                    *map(str, srcs)]
            done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
            if done.returncode != 0:
                tail = done.stderr.strip().splitlines()[-1:] or ["(no output)"]
                raise HarnessError(f"payload {name}: gcc failed: {tail[0]}")
            atomic_write_bytes(target, tmp.read_bytes(), 0o755)
            tmp.unlink()
    return Payload(name, target, check(name, target))


def check(name: str, path: Path) -> dict[str, int]:
    """Generic ELF checks (static x86-64 executable), then the feature's own, if any.

    A feature module harness/payloads/<name>.py may define
    `elf_checks(elf: ELFFile, symbols: dict[str, int]) -> list[str]`, the problems found.
    """
    with open(path, "rb") as f:
        elf = ELFFile(f)
        if elf["e_machine"] != "EM_X86_64" or elf["e_type"] != "ET_EXEC":
            raise HarnessError(f"payload {name}: not a static x86-64 executable "
                               f"({elf['e_machine']}, {elf['e_type']})")
        if any(seg["p_type"] in ("PT_INTERP", "PT_DYNAMIC") for seg in elf.iter_segments()):
            raise HarnessError(f"payload {name}: dynamically linked; the guest has no libraries")
        symtab = elf.get_section_by_name(".symtab")
        symbols = {s.name: s["st_value"] for s in symtab.iter_symbols() if s.name} if symtab else {}
        try:
            feature = importlib.import_module(f"harness.payloads.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"harness.payloads.{name}":
                raise
            feature = None
        found = feature.elf_checks(elf, symbols) if hasattr(feature, "elf_checks") else []
        if found:
            raise HarnessError(f"payload {name}: ELF check failed: {'; '.join(found)}")
    return symbols
