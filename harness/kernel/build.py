"""Kernels from source and patches: cached, incremental, never touching the source.

Layout under the cache folder (design section 3):
  kernel/src/<source>/          pristine source, unpacked once from a tarball
  kernel/work/<source>/         private copy that patches are applied to
  kernel/obj/<source>-<config>/ the O= object tree, reused by incremental builds
  kernel/builds/<key>/          bzImage, .config and metadata.json of one build
The key hashes the source, the patches, the config fragments and the compiler,
so the same inputs are a cache hit with no make at all.

kernel/src/<source>/ and kernel/builds/<key>/ are folder artifacts with a manifest
(harness/cache.py: store_verified/load_verified): a cache hit checks every file of
the build, a build checks the source files it copies into the work tree. The work tree and the object trees
are mutable: every build holds one lock (kernel/work/tree.lock) from choosing them until its
output is in place, so two runs never write one tree at once (a second build waits).
"""
from __future__ import annotations

import hashlib
import json
import lzma
import os
import re
import shutil
import subprocess
import tarfile
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

from harness.cache import (MANIFEST, atomic_directory, atomic_write_bytes, cache_root, load_verified, locked,
                           read_manifest, sha256_file, store_verified)
from harness.cache import log as cache_log
from harness.errors import HarnessError, UsageError
from harness.kernel import KernelImage
from harness.kernel import patches as patchlib
from harness.kernel.bzimage import read_version

DEFAULT_SOURCE = Path("/usr/src/linux-source-6.1.tar.xz")
CONFIGS = Path(__file__).with_name("configs")
_OPTION = re.compile(r"^(CONFIG_\w+)=(.*)$|^# (CONFIG_\w+) is not set$")


@dataclass
class BuildResult:
    kernel: KernelImage
    cached: bool
    seconds: float
    directory: Path


def default_fragments() -> list[Path]:
    """base and debug, then each registered feature's fragment (its row)."""
    from harness import features
    return [CONFIGS / "base.config", CONFIGS / "debug.config"] + \
        [row.config_fragment for row in features.rows() if row.config_fragment is not None]


def parse_fragment(path: Path) -> dict[str, str]:
    """CONFIG_X -> value ('n' for "is not set"); a bad line is an error naming it."""
    if not path.is_file():
        raise UsageError(f"--config {path}: no such file")
    options = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        stripped = line.strip()
        match = _OPTION.match(stripped)
        if match:
            options[match.group(1) or match.group(3)] = match.group(2) if match.group(1) else "n"
        elif stripped and not stripped.startswith("#"):
            raise UsageError(f"--config {path}:{number}: not a config line: {stripped[:60]}")
    return options


def _run(argv: list[str], cwd: Path, log: Path | None = None, timeout: float = 3600) -> None:
    """Run a build step with a deadline (its whole process group is killed)."""
    with open(log, "a") if log else open(os.devnull, "w") as out:
        proc = subprocess.Popen(argv, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()
            raise HarnessError(f"{argv[0]} {argv[1] if len(argv) > 1 else ''}: no end within "
                               f"{timeout:.0f} s (log: {log})") from None
    if code != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-25:] if log else []
        errors = [l for l in tail if re.search(r"error|Error|\*\*\*", l)]
        raise BuildFailed(f"kernel build failed: {(errors or tail or ['?'])[0].strip()} (log: {log})",
                          tail, log)


class BuildFailed(HarnessError):
    def __init__(self, message: str, tail: list[str], log: Path | None):
        super().__init__(message)
        self.tail, self.log = tail, log


# -- the source ----------------------------------------------------------------
def _source_digest(source: Path) -> str:
    if source.is_file():
        return sha256_file(source)
    digest = hashlib.sha256()
    if (source / ".git").exists():
        head = subprocess.run(["git", "-C", str(source), "rev-parse", "HEAD"], capture_output=True,
                              text=True, timeout=60).stdout
        dirty = subprocess.run(["git", "-C", str(source), "diff", "HEAD"], capture_output=True,
                               timeout=300).stdout
        digest.update(head.encode() + dirty)
    else:
        for root, dirs, files in os.walk(source):
            dirs.sort()
            for name in sorted(files):
                st = os.stat(os.path.join(root, name))
                digest.update(f"{os.path.relpath(os.path.join(root, name), source)}\0{st.st_size}\0"
                              f"{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _check_tree(tree: Path, source: Path) -> None:
    makefile = tree / "Makefile"
    if not makefile.is_file() or not re.search(r"^VERSION = \d+", makefile.read_text(errors="replace"), re.M) \
            or not (tree / "arch/x86/Kconfig").is_file():
        raise UsageError(f"--source {source}: not a Linux kernel source "
                         f"(no top-level Makefile with VERSION, or no arch/x86)")


def tar_error(e: BaseException) -> str:
    """tarfile's error in one line: "file could not be opened successfully:" lists one
    line per compression method; the last (plain tar) tells what is wrong."""
    lines = [l.strip(" -") for l in str(e).splitlines() if l.strip()]
    if len(lines) > 1 and lines[0].endswith(":"):
        return f"{lines[0][:-1]}: {lines[-1]}"
    return lines[0] if lines else type(e).__name__


def install_linux_source() -> None:
    """apt-get install linux-source-6.1 (the default source); its absence after is the
    caller's error to report."""
    try:
        _run(["apt-get", "install", "-y", "-q", "linux-source-6.1"], Path("/"), timeout=900)
    except (OSError, HarnessError):
        pass


def pristine_tree(source: Path, verify: bool | list[str] = False) -> tuple[Path, str]:
    """The unpacked, unmodified source and its digest. An unpacked tarball is checked
    against its manifest: that it is complete (the manifest is written last), or the
    files `verify` lists, or all of them (True: 1.5 GB, 5-15 s, before a build copies
    the whole tree); a damaged tree is unpacked again beside it and swapped in."""
    if not source.exists():
        if source == DEFAULT_SOURCE:
            install_linux_source()
        if not source.exists():
            raise UsageError(f"--source {source}: no such file or folder")
    digest = _source_digest(source)
    if source.is_dir():
        _check_tree(source, source)
        return source.resolve(), digest
    target = cache_root() / "kernel" / "src" / digest[:24]
    with locked(target):
        files = None if verify is True else [] if verify is False else verify
        if not load_verified(target, files, keep=True):
            try:
                with tarfile.open(source) as tar:
                    tops = {m.name.split("/", 1)[0] for m in tar.getmembers()[:50]}
            # a truncated or corrupt compressed stream raises EOFError, zlib.error or
            # LZMAError, not a TarError: those were a traceback (issue 14, item 6)
            except (tarfile.TarError, OSError, EOFError, zlib.error, lzma.LZMAError) as e:
                raise UsageError(f"--source {source}: not a readable tarball ({tar_error(e)})") from None
            with atomic_directory(target) as tmp:
                strip = ["--strip-components=1"] if len(tops) == 1 else []
                _run(["tar", "-xf", str(source), "-C", str(tmp), *strip], cwd=tmp)
                _check_tree(tmp, source)
                store_verified(tmp)
    return target, digest


# -- the private copy with patches ------------------------------------------------
# One private work tree and one object tree per config serve every source: a
# new source is synced into the work tree file by file (only changed files get
# a new mtime), so switching between two trees that differ in one file, or
# between patch sets, rebuilds only what changed.
def _newest_dir(parent: Path, match) -> Path | None:
    found = [p for p in parent.iterdir() if p.is_dir() and match(p)] if parent.is_dir() else []
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def _build_lock() -> Path:
    """The lock every build holds for its whole length (kernel/work/tree.lock): the one
    work tree and the object trees are chosen, written and read only under it."""
    return cache_root() / "kernel" / "work" / "tree"


def _work_tree() -> Path:
    root = cache_root() / "kernel" / "work"
    return _newest_dir(root, lambda p: (p / ".kvmconf-patches.json").exists()) or root / "tree"


def _object_tree(fragments_digest: str) -> Path:
    root = cache_root() / "kernel" / "obj"
    tag = fragments_digest[:16]
    return _newest_dir(root, lambda p: p.name.split("-")[-1] == tag) or root / tag


def _sync_source(pristine: Path, work: Path) -> None:
    """Make `work` hold exactly `pristine`'s files; unchanged files keep their mtime."""
    _run(["rsync", "-rlp", "--checksum", "--delete", "--exclude=/.git", "--exclude=/.kvmconf-patches.json",
          f"--exclude=/{MANIFEST}", f"{pristine}/", f"{work}/"], cwd=work, timeout=1800)


def _prepare_work_tree(pristine: Path, digest: str, patch_list: list[patchlib.Patch],
                       work: Path, verify=lambda files: None) -> Path:
    """The private copy `work` holding `pristine` with exactly `patch_list` applied
    (called under the build lock). `verify(files)` checks the pristine files it is about
    to copy (True: all of them) against the pristine tree's manifest.

    Files touched by the previous patch set are restored from the pristine tree
    first (with a fresh mtime, so make rebuilds what depends on them).
    """
    state_file = work / ".kvmconf-patches.json"
    if not work.is_dir():
        verify(True)
        with atomic_directory(work) as tmp:
            _run(["cp", "-a", "--reflink=auto", f"{pristine}/.", str(tmp)], cwd=tmp)
            shutil.rmtree(tmp / ".git", ignore_errors=True)
            (tmp / MANIFEST).unlink(missing_ok=True)
            (tmp / ".kvmconf-patches.json").write_text(json.dumps(
                {"source": digest, "shas": [], "files": []}))
    state = json.loads(state_file.read_text())
    if state.get("source", work.name) not in (digest, digest[:24]):
        verify(True)
        state_file.write_text(json.dumps({"source": None, "shas": [], "files": []}))
        _sync_source(pristine, work)
        state = {"source": digest, "shas": [], "files": []}
        state_file.write_text(json.dumps(state))
    wanted = [p.sha256 for p in patch_list]
    if state["shas"] == wanted:
        return work
    verify([rel for rel in state["files"] if (pristine / rel).is_file()])
    for rel in state["files"]:
        original, copy = pristine / rel, work / rel
        if original.is_file():
            shutil.copyfile(original, copy)  # new mtime on purpose
        elif copy.exists():
            copy.unlink()
    state_file.write_text(json.dumps({"source": digest, "shas": [], "files": []}))
    touched: list[str] = []
    for patch in patch_list:
        touched += patch.files
        try:
            patchlib.apply(patch, work)
        except UsageError:
            # Leave the copy pristine again: restore what earlier patches touched.
            state_file.write_text(json.dumps({"source": digest, "shas": ["?"], "files": sorted(set(touched))}))
            _prepare_work_tree(pristine, digest, [], work, verify)
            raise
    state_file.write_text(json.dumps({"source": digest, "shas": wanted, "files": sorted(set(touched))}))
    return work


# -- config -------------------------------------------------------------------------
def _configure(work: Path, obj: Path, fragments: list[Path], log: Path) -> str:
    """tinyconfig + fragments + olddefconfig; an option that does not survive is an error."""
    wanted: dict[str, str] = {}
    for fragment in fragments:
        wanted.update(parse_fragment(fragment))
    make = ["make", "-C", str(work), f"O={obj}", "ARCH=x86_64"]
    _run([*make, "tinyconfig"], cwd=work, log=log)
    config = obj / ".config"
    lines = [l for l in config.read_text().splitlines()
             if not ((m := _OPTION.match(l)) and (m.group(1) or m.group(3)) in wanted)]
    lines += [f"{k}={v}" if v != "n" else f"# {k} is not set" for k, v in wanted.items()]
    config.write_text("\n".join(lines) + "\n")
    _run([*make, "olddefconfig"], cwd=work, log=log)
    final: dict[str, str] = {}
    for line in config.read_text().splitlines():
        m = _OPTION.match(line)
        if m:
            final[m.group(1) or m.group(3)] = m.group(2) if m.group(1) else "n"
    for option, value in wanted.items():
        got = final.get(option, "n")
        if got != value:
            origin = next(f for f in fragments if option in parse_fragment(f))
            raise UsageError(f"--config {origin.name}: {option}={value} was dropped by olddefconfig "
                             f"(now {got}): a dependency is missing or the option does not exist")
    return sha256_file(config)


def _check_patched_sources_built(obj: Path, patch_list: list[patchlib.Patch],
                                 only_in: Path | None = None) -> None:
    """Every C file a patch touches has its object file (only those in `only_in`, if given),
    except the files a feature compiles into a user-space program of its own."""
    from harness import features
    exempt = features.user_space_files()
    for patch in patch_list:
        for rel in patch.files:
            if (only_in is not None and not (only_in / rel).exists()) or rel in exempt:
                continue
            if rel.endswith(".c") and not (obj / rel).with_suffix(".o").exists():
                raise UsageError(f"--patch {patch.path.name} touches {rel}, which the merged config "
                                 f"does not build: the patch would go untested")


def _compiler() -> tuple[str, str]:
    """The CC make uses (through ccache when present) and the compiler's version line."""
    cc = "ccache gcc" if shutil.which("ccache") else "gcc"
    version = subprocess.run(["gcc", "--version"], capture_output=True, text=True,
                             timeout=30).stdout.splitlines()[0]
    return cc, version


# -- the build -----------------------------------------------------------------------
def build(source: Path | None = None, patch_files: list[Path] = (), fragments: list[Path] | None = None,
          series: list[dict] | None = None, jobs: int | None = None, progress=print) -> BuildResult:
    start = time.monotonic()
    source = Path(source or DEFAULT_SOURCE)
    fragments = [Path(f) for f in (fragments or default_fragments())]
    patch_list = [patchlib.load(Path(p)) for p in patch_files]
    for fragment in fragments:
        parse_fragment(fragment)
    pristine, src_digest = pristine_tree(source)
    cc, compiler = _compiler()
    key_parts = [src_digest, compiler, *[p.sha256 for p in patch_list],
                 *[sha256_file(f) for f in fragments]]
    key = hashlib.sha256("\n".join(key_parts).encode()).hexdigest()[:24]
    out = cache_root() / "kernel" / "builds" / key
    # The series record names this invocation's inputs (file names, message-ids), which the
    # content-addressed cache does not key on; so it is never taken from the cache.
    records = series or [p.record() for p in patch_list]
    with locked(out):   # held until the output is in place: a racing run of this key waits
        if _verified_build(out):
            return BuildResult(_image(out, records), True, time.monotonic() - start, out)
        fragments_digest = hashlib.sha256("".join(sha256_file(f) for f in fragments).encode()).hexdigest()
        with locked(_build_lock()):
            seconds = _build_into(out, key, source, pristine, src_digest, patch_list, records,
                                  fragments, fragments_digest, cc, compiler, jobs, progress, start)
        return BuildResult(_image(out, records), False, seconds, out)


def _build_into(out, key, source, pristine, src_digest, patch_list, records, fragments,
                fragments_digest, cc, compiler, jobs, progress, start) -> float:
    """make in the work and object trees, the output into `out` (under the build lock)."""
    obj = _object_tree(fragments_digest)
    obj.mkdir(parents=True, exist_ok=True)
    log = obj / "build.log"
    log.write_text("")
    progress(f"kernel: preparing {source.name} with {len(patch_list)} patch(es)")
    def verify(files):   # the pristine files about to be copied into the work tree
        if source.is_file() and files:
            pristine_tree(source, verify=files)
    work = _prepare_work_tree(pristine, src_digest, patch_list, _work_tree(), verify)
    config_sha = _configure(work, obj, fragments, log)
    if (obj / "vmlinux").exists() and not any(
            Path(f).name.startswith(("Kconfig", "Makefile", "Kbuild")) for p in patch_list for f in p.files):
        # The object tree already tells which files this config builds: fail before make.
        _check_patched_sources_built(obj, patch_list, pristine)
    progress(f"kernel: building in {obj} (log: {log})")
    env_make = ["make", "-C", str(work), f"O={obj}", "ARCH=x86_64", f"-j{jobs or os.cpu_count()}",
                f"CC={cc}", "KBUILD_BUILD_USER=kvmconf", "KBUILD_BUILD_HOST=kvmconf",
                "KBUILD_BUILD_TIMESTAMP=1970-01-01", "bzImage"]
    _run(env_make, cwd=work, log=log)
    _check_patched_sources_built(obj, patch_list)
    seconds = time.monotonic() - start
    with atomic_directory(out) as tmp:
        shutil.copyfile(obj / "arch/x86/boot/bzImage", tmp / "bzImage")
        shutil.copyfile(obj / ".config", tmp / "config")
        # the patches themselves, for what compiles the kernel's code outside the kernel
        # build (harness/kernel/source.py: the patched view of the tree)
        (tmp / "patches").mkdir()
        for i, p in enumerate(patch_list):
            shutil.copyfile(p.path, tmp / "patches" / f"{i:03d}-{p.path.name}")
        meta = {"key": key, "version": read_version(tmp / "bzImage"),
                "bzimage_sha256": sha256_file(tmp / "bzImage"),
                "source": {"path": str(source), "sha256": src_digest},
                "patches": [{"file": str(p.path), "sha256": p.sha256, "files": list(p.files),
                             "subject": p.subject} for p in patch_list],
                "series": records,
                "fragments": [{"file": str(f), "sha256": sha256_file(f)} for f in fragments],
                "config_sha256": config_sha, "compiler": compiler, "object_tree": str(obj),
                "build_time_s": round(seconds, 1)}
        atomic_write_bytes(tmp / "metadata.json", (json.dumps(meta, indent=1) + "\n").encode())
        store_verified(tmp)
    return seconds


def _verified_build(out: Path) -> bool:
    """Whether builds/<key> is there and every file matches its manifest (bzImage,
    config, metadata.json, patches: a few MB). A build from before manifests is
    adopted when it matches the hashes its metadata.json recorded."""
    if out.is_dir() and read_manifest(out) is None:
        _adopt_unsealed(out)
    return load_verified(out) is not None


def _adopt_unsealed(out: Path) -> None:
    try:
        meta = json.loads((out / "metadata.json").read_text())
        kept = sorted((out / "patches").glob("*")) if (out / "patches").is_dir() else None
        ok = (meta["key"] == out.name and sha256_file(out / "bzImage") == meta["bzimage_sha256"]
              and sha256_file(out / "config") == meta["config_sha256"]
              and (kept is None       # from before the patches were kept
                   or [sha256_file(p) for p in kept] == [p["sha256"] for p in meta["patches"]]))
    except (OSError, ValueError, KeyError, TypeError):
        ok = False
    if ok:
        store_verified(out)
        cache_log.warning("cache: %s: a build without a %s matches its metadata.json: sealed",
                    out, MANIFEST)


def _image(out: Path, series: list[dict]) -> KernelImage:
    meta = json.loads((out / "metadata.json").read_text())
    kept = sorted((out / "patches").glob("*")) if (out / "patches").is_dir() else \
        [Path(p["file"]) for p in meta["patches"]]     # a build from before patches were kept
    return KernelImage(kind="built", version=meta["version"], bzimage=out / "bzImage",
                       sha256=meta["bzimage_sha256"], modules_dir=None, source=meta["source"],
                       config_sha256=meta["config_sha256"], series=series, patch_files=kept)
