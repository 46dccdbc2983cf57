"""Build a payload folder into a static binary and check its ELF.

guests/lib (the mini VMM library) is compiled once into libkvmconf.a, cached
by the hash of its sources and headers, the compiler and CFLAGS; every payload
links its own sources against it, so a payload gets only the lib objects it
uses. Both builds are cached under the payload cache; a payload whose build or
ELF checks fail is recorded as an error for its feature only (its cases ERROR).
"""
from __future__ import annotations

import hashlib
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from elftools.elf.elffile import ELFFile

from harness import features
from harness.cache import cache_root, load_verified, locked, store_verified
from harness.errors import HarnessError

GUESTS = Path(__file__).resolve().parents[2] / "guests"
LIB = GUESTS / "lib"
CFLAGS = ["-O2", "-g", "-Wall", "-Werror", "-std=gnu11"]
LDFLAGS = ["-static"]


@dataclass
class Payload:
    name: str
    path: Path
    symbols: dict[str, int]


def _files(folder: Path, suffixes: tuple[str, ...]) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix in suffixes)


def sources(folder: Path) -> list[Path]:
    """The .c and .S files of a payload folder (its own; the lib is linked)."""
    return _files(folder, (".c", ".S"))


def _compiler_version() -> str:
    try:
        return subprocess.run(["gcc", "--version"], capture_output=True, text=True,
                              timeout=30).stdout.splitlines()[0]
    except (FileNotFoundError, IndexError):
        raise HarnessError("gcc not found: payloads need gcc and libc6-dev") from None


def _digest(files: list[Path], *extra: str) -> str:
    digest = hashlib.sha256("\0".join((_compiler_version(), *CFLAGS, *LDFLAGS, *extra)).encode())
    for path in files:
        digest.update(b"\0" + path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def _run(what: str, argv: list[str], cwd: Path | None = None) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300, cwd=cwd)
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-1:] or ["(no output)"]
        raise HarnessError(f"{what}: {argv[0]} failed: {tail[0]}")


def build_lib() -> Path:
    """guests/lib as libkvmconf.a (compiled once per lib content and toolchain)."""
    srcs = sources(LIB)
    target = cache_root() / "payloads" / f"lib-{_digest(srcs + _files(LIB, ('.h',)))}" / "libkvmconf.a"
    with locked(target):
        if not load_verified(target):
            with tempfile.TemporaryDirectory(dir=target.parent, prefix=".build.") as tmp:
                objs = []
                for src in srcs:
                    obj = Path(tmp) / f"{src.name}.o"
                    _run("payload lib", ["gcc", *CFLAGS, f"-I{LIB}", "-c", "-o", str(obj), str(src)])
                    objs.append(str(obj))
                _run("payload lib", ["ar", "rcs", str(Path(tmp) / "libkvmconf.a"), *objs])
                store_verified(target, Path(tmp) / "libkvmconf.a")
    return target


# Every payload binary this process built or took from the cache, by name: its sha256
# (run.json's `payloads`: what ran, for a certification bundle to pin).
_BUILT: dict[str, str] = {}


def note_built(name: str, sha256: str) -> None:
    """`sha256`: the digest the cache checked or recorded (load_verified, store_verified,
    a folder artifact's manifest entry), so nothing is hashed twice."""
    _BUILT[name] = sha256


def built() -> dict[str, str]:
    return dict(sorted(_BUILT.items()))


def build(name: str, folder: Path | str | None = None) -> Payload:
    """Build payload `name` from `folder` (default guests/<name>) against guests/lib."""
    folder = Path(folder) if folder is not None else GUESTS / name
    if not folder.is_dir():
        raise HarnessError(f"payload {name}: no folder {folder}")
    srcs = sources(folder)
    if not srcs:
        raise HarnessError(f"payload {name}: no .c or .S sources in {folder}")
    lib = build_lib()
    digest = _digest(srcs + _files(folder, (".h",)), lib.parent.name)
    target = cache_root() / "payloads" / f"{name}-{digest}"
    with locked(target):
        digest = load_verified(target)
        if not digest:
            with tempfile.TemporaryDirectory(dir=target.parent, prefix=".build.") as tmp:
                out = Path(tmp) / name
                _run(f"payload {name}", ["gcc", *CFLAGS, *LDFLAGS, f"-I{LIB}", f"-I{folder}",
                                         "-o", str(out), *map(str, srcs),
                                         f"-L{lib.parent}", "-lkvmconf"])
                digest = store_verified(target, out, 0o755)
    note_built(name, digest)
    return Payload(name, target, check(name, target))


def check(name: str, path: Path) -> dict[str, int]:
    """Generic ELF checks (static x86-64 executable), then the feature's own, if any.

    A registered feature's codec module may define
    `elf_checks(elf: ELFFile, symbols: dict[str, int]) -> list[str]`, the problems
    found; a payload without a feature row (probe) gets the generic checks only.
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
        elf_checks = None
        if name in features.names():
            elf_checks = getattr(features.get(name).codec_module, "elf_checks", None)
        found = elf_checks(elf, symbols) if elf_checks else []
        if found:
            raise HarnessError(f"payload {name}: ELF check failed: {'; '.join(found)}")
    return symbols


def build_all(names: list[str]) -> tuple[dict[str, Path], dict[str, str]]:
    """Every named payload (a registered feature's from its row's folder): the built
    paths, and the error of each that failed (its feature's cases ERROR, the rest run)."""
    paths, errors = {}, {}
    for name in names:
        folder = features.get(name).payload_dir if name in features.names() else None
        try:
            paths[name] = build(name, folder).path
        except HarnessError as e:
            errors[name] = str(e)
        except Exception as e:  # a bug in a feature's checks: that feature ERRORs
            errors[name] = f"payload {name}: checks crashed: {type(e).__name__}: {e}"
    if "probe" in errors:
        raise HarnessError(errors["probe"])
    return paths, errors
