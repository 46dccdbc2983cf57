"""The pebs_pt suite's two foreign PT packet decoders (docs/pebs-pt-suite.md section 1).

ptdec: the kernel tree's own tools/perf/util/intel-pt-decoder/intel-pt-pkt-decoder.c,
compiled unmodified (gcc -O2 -Wall) against guests/pebs_pt/ptdec/shim (its
<linux/compiler.h>; <stdio.h> <string.h> <endian.h> <byteswap.h> are libc's), with
guests/pebs_pt/ptdec/ptdec.c as main. Every file of the tree that is compiled (the .c
and each header it includes with quotes, found relative to it: in 6.1 just
intel-pt-pkt-decoder.h) is recorded with its sha256. The packet type names are
generated at build time from the tree's `enum intel_pt_pkt_type` (lower case, without
INTEL_PT_), so a tree with other packet kinds prints what it decodes. Only the source
tree is needed, no kernel build; nothing is written into the tree.

ipt: guests/pebs_pt/ipt/ipt.c against the system's libipt (libipt-dev; -lipt), cached
by its sources, the compiler and libipt's version and library file.

Both speak the same line format (guests/pebs_pt/ptdec/declines.h); run_decoder() feeds
streams and parses the answers.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from harness.cache import (atomic_directory, cache_root, load_verified, locked, read_manifest, sha256_file,
                           store_verified)
from harness.errors import DeadlineExceeded, HarnessError
from harness.payloads import build as payload_build

GUESTS = Path(__file__).resolve().parents[2] / "guests" / "pebs_pt"
PTDEC = GUESTS / "ptdec"
PTDEC_SHIM = PTDEC / "shim"
IPT = GUESTS / "ipt"

DECODER_DIR = "tools/perf/util/intel-pt-decoder"
DECODER_C = f"{DECODER_DIR}/intel-pt-pkt-decoder.c"
DECODER_H = f"{DECODER_DIR}/intel-pt-pkt-decoder.h"

# perf's file: as perf builds it (-Wall; warnings are the tree's, not errors).
# -fno-strict-aliasing: it reads the byte buffer through uint16/32/64 pointers.
KERNEL_CFLAGS = ["-O2", "-Wall", "-std=gnu11", "-fno-strict-aliasing"]
OWN_CFLAGS = ["-O2", "-Wall", "-Werror", "-std=gnu11"]
IPT_LIBS = ["-lipt"]
LIBIPT_HEADER = Path("/usr/include/intel-pt.h")
MAX_STREAM = 64 * 1024


@dataclass
class PtDec:
    path: Path
    kernel_files: dict[str, str]   # path relative to the tree -> sha256


def _gcc(what: str, argv: list[str]) -> None:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    except FileNotFoundError:
        raise HarnessError(f"{what}: {argv[0]} not found (install gcc and libc6-dev)") from None
    except subprocess.TimeoutExpired:
        raise HarnessError(f"{what}: {argv[0]} ran past 300 s") from None
    if done.returncode != 0:
        lines = [ln.strip() for ln in done.stderr.splitlines() if ln.strip()]
        errors = [ln for ln in lines if "error" in ln.lower()]
        tail = (errors[:4] if errors else lines[-4:]) or ["(no output)"]
        raise HarnessError(f"{what}: {Path(argv[0]).name} failed (exit {done.returncode}): "
                           + " | ".join(tail))


def _quoted_includes(path: Path) -> list[str]:
    text = path.read_text(errors="replace")
    return re.findall(r'^\s*#\s*include\s+"([^"]+)"', text, re.M)


def kernel_files(tree: Path) -> dict[str, Path]:
    """The tree files ptdec compiles: the decoder .c and every header it includes with
    quotes (resolved as the compiler does, relative to the including file), recursively."""
    tree = Path(tree)
    src = tree / DECODER_C
    if not src.is_file():
        raise HarnessError(f"ptdec: kernel tree {tree} has no {DECODER_C}")
    found: dict[str, Path] = {}
    todo = [src]
    while todo:
        path = todo.pop()
        rel = os.path.relpath(path, tree)
        if rel in found:
            continue
        found[rel] = path
        for inc in _quoted_includes(path):
            cand = path.parent / inc
            if cand.is_file():
                todo.append(Path(os.path.normpath(cand)))
            # else: the compiler looks in -I folders (the shim) and fails with its message
    if DECODER_H not in found:
        raise HarnessError(f"ptdec: {DECODER_C} in {tree} does not include {Path(DECODER_H).name}")
    return dict(sorted(found.items()))


def type_names(header_text: str) -> list[str]:
    """The enumerators of `enum intel_pt_pkt_type`, without INTEL_PT_, in order."""
    m = re.search(r"enum\s+intel_pt_pkt_type\s*\{(.*?)\}\s*;", header_text, re.S)
    if not m:
        raise HarnessError(f"ptdec: {DECODER_H} has no enum intel_pt_pkt_type")
    body = re.sub(r"/\*.*?\*/|//[^\n]*", "", m.group(1), flags=re.S)
    names = []
    for item in body.split(","):
        item = item.strip()
        if not item:
            continue
        mm = re.match(r"INTEL_PT_(\w+)\s*(=.*)?$", item, re.S)
        if not mm:
            raise HarnessError(f"ptdec: {DECODER_H}: unexpected enumerator {item!r}")
        names.append(mm.group(1))
    return names


def names_header(header_text: str) -> str:
    lines = ["/* generated by harness/payloads/pebs_pt_decoders.py from the tree's",
             " * intel-pt-pkt-decoder.h enum intel_pt_pkt_type */",
             "#define PTDEC_NAMES \\"]
    lines += [f'\t[INTEL_PT_{n}] = "{n.lower()}", \\' for n in type_names(header_text)]
    return "\n".join(lines) + "\n\t/* end */\n"


def _own_sources(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in (".c", ".h"))


def build_ptdec(tree: Path) -> PtDec:
    """ptdec built from kernel source `tree` (cached by every input's content)."""
    tree = Path(tree).resolve()
    files = kernel_files(tree)
    digests = {rel: sha256_file(path) for rel, path in files.items()}
    names_h = names_header((tree / DECODER_H).read_text(errors="replace"))
    digest = hashlib.sha256()
    digest.update(payload_build._compiler_version().encode())
    digest.update("\0".join(KERNEL_CFLAGS + OWN_CFLAGS).encode())
    for rel, sha in digests.items():
        digest.update(f"\0{rel}\0{sha}".encode())
    digest.update(b"\0names\0" + names_h.encode())
    for path in _own_sources(PTDEC):
        digest.update(b"\0" + str(path.relative_to(PTDEC)).encode() + b"\0" + path.read_bytes())
    folder = cache_root() / "pebs_pt-ptdec" / digest.hexdigest()[:16]
    target = folder / "ptdec"
    with locked(folder):
        if not load_verified(folder):
            with atomic_directory(folder) as done, \
                    tempfile.TemporaryDirectory(dir=folder.parent, prefix=".build.") as tmp:
                tmp = Path(tmp)
                (tmp / "ptdec_names.h").write_text(names_h)
                pkt_o, main_o, out = tmp / "pkt.o", tmp / "ptdec.o", tmp / "ptdec"
                _gcc(f"ptdec build ({DECODER_C})",
                     ["gcc", *KERNEL_CFLAGS, f"-I{PTDEC_SHIM}", "-c", "-o", str(pkt_o),
                      str(tree / DECODER_C)])
                _gcc("ptdec build (ptdec.c)",
                     ["gcc", *OWN_CFLAGS, f"-I{PTDEC}", f"-I{tree / DECODER_DIR}", f"-I{tmp}",
                      "-c", "-o", str(main_o), str(PTDEC / "ptdec.c")])
                _gcc("ptdec link", ["gcc", "-o", str(out), str(main_o), str(pkt_o)])
                (done / "kernel_files.json").write_text(json.dumps(digests, indent=1) + "\n")
                shutil.copy2(out, done / "ptdec")
                store_verified(done)
    payload_build.note_built("ptdec", read_manifest(folder)["ptdec"])   # checked by load_verified
    return PtDec(target, digests)


def libipt_version() -> str:
    """libipt's version from its header, plus the library file the linker picks."""
    if not LIBIPT_HEADER.is_file():
        raise HarnessError("ipt build: /usr/include/intel-pt.h missing (install libipt-dev)")
    text = LIBIPT_HEADER.read_text(errors="replace")
    parts = [re.search(rf"#define\s+LIBIPT_VERSION_{k}\s+(\d+)", text) for k in
             ("MAJOR", "MINOR", "PATCH")]
    version = ".".join(m.group(1) if m else "?" for m in parts)
    lib = subprocess.run(["gcc", "-print-file-name=libipt.so"], capture_output=True,
                         text=True, timeout=30).stdout.strip()
    real = Path(lib).resolve() if lib and Path(lib).exists() else None
    lib_sha = sha256_file(real) if real else "none"
    return f"{version} {real or lib} {lib_sha} header {hashlib.sha256(text.encode()).hexdigest()}"


def build_ipt() -> Path:
    """ipt (libipt's packet decoder) built against the installed libipt (cached)."""
    digest = hashlib.sha256()
    digest.update(payload_build._compiler_version().encode())
    digest.update("\0".join(OWN_CFLAGS + IPT_LIBS).encode())
    digest.update(b"\0" + libipt_version().encode())
    for folder in (IPT, PTDEC):
        for path in _own_sources(folder):
            if folder == PTDEC and path.name != "declines.h":
                continue
            digest.update(b"\0" + path.name.encode() + b"\0" + path.read_bytes())
    folder = cache_root() / "pebs_pt-ipt" / digest.hexdigest()[:16]
    target = folder / "ipt"
    with locked(folder):
        if not load_verified(folder):
            with atomic_directory(folder) as done:
                _gcc("ipt build (ipt.c)",
                     ["gcc", *OWN_CFLAGS, f"-I{PTDEC}", "-o", str(done / "ipt"), str(IPT / "ipt.c"),
                      *IPT_LIBS])
                store_verified(done)
    return target


def encode_input(streams: list[bytes]) -> str:
    lines = []
    for i, data in enumerate(streams):
        data = bytes(data)
        if len(data) > MAX_STREAM:
            raise HarnessError(f"decoder input: stream {i} has {len(data)} bytes "
                               f"(at most {MAX_STREAM})")
        lines.append(f"D {i} {data.hex()}\n")
    return "".join(lines)


def run_decoder(path: Path, streams: list[bytes], timeout: float = 60) -> list[dict]:
    """Decode `streams` with decoder program `path`: one {"stream", "packets", "error"}
    per stream, in order. HarnessError (one line) when the program fails, is late
    (its process group is killed) or answers out of format."""
    name = Path(path).name
    text = encode_input(streams)
    try:
        proc = subprocess.Popen([str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)
    except OSError as e:
        raise HarnessError(f"{name}: cannot start {path}: {e}") from None
    try:
        out, err = proc.communicate(text, timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.communicate()
        raise DeadlineExceeded(f"{name}: no answer for {len(streams)} streams within {timeout:g} s "
                           "(killed)") from None
    if proc.returncode != 0:
        tail = (err.strip().splitlines() or ["(no message)"])[-1]
        raise HarnessError(f"{name}: exit {proc.returncode}: {tail}")
    results: list[dict] = []
    done = False
    for n, line in enumerate(out.splitlines(), 1):
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            raise HarnessError(f"{name}: output line {n} is not JSON: {line[:80]!r}") from None
        if done:
            raise HarnessError(f"{name}: output line {n} after the done line")
        if obj == {"op": "done"}:
            done = True
            continue
        if not isinstance(obj, dict) or obj.get("stream") != len(results) or \
                not isinstance(obj.get("packets"), list) or "error" not in obj:
            raise HarnessError(f"{name}: output line {n} is not stream {len(results)}'s answer: "
                               f"{line[:80]!r}")
        results.append(obj)
    if not done or len(results) != len(streams):
        raise HarnessError(f"{name}: {len(results)} answers for {len(streams)} streams"
                           + ("" if done else ", no done line"))
    return results
