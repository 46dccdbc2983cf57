"""The cache folder outside the clone: atomic writes under a lock, verified artifacts.

Every final artifact is named by a digest of its inputs (or of its content), written
atomically (a temp file or folder beside it, then a rename) and recorded with the
sha256 of what it holds: a file artifact gets a `<file>.sha256` sidecar, a folder
artifact a manifest of every file's sha256 inside it (MANIFEST), each written last and
atomically. `store_verified()` writes that record; `load_verified()` checks it on
every reuse, and an artifact that does not match (truncated, bytes flipped, a file
missing, no record) is named in one log line, deleted, and reported absent, so the
builder makes it again and the damaged copy is never used. Both are called under
`locked(path)`: the record of an artifact being written is only complete at the end.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

MANIFEST = ".kvmconf-manifest.json"     # inside a folder artifact: {"files": {rel: sha256}}
SIDECAR = ".sha256"                      # beside a file artifact: "<sha256>  <name>\n"
log = logging.getLogger("kvmconf.cache")


def cache_root() -> Path:
    """`KVMCONF_CACHE`, else `$XDG_CACHE_HOME/kvmconf`, else ~/.cache/kvmconf."""
    explicit = os.environ.get("KVMCONF_CACHE")
    if explicit:
        root = Path(explicit)
    else:
        root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "kvmconf"
    root.mkdir(parents=True, exist_ok=True)
    return root


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@contextlib.contextmanager
def locked(path: Path):
    """An exclusive flock on `path`.lock, for work two runs may race on."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{path}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def atomic_write_bytes(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write via a temp file in the same folder and rename over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_directory(path: Path):
    """Yield a temp folder beside `path`; it becomes `path` only if the block succeeds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}."))
    try:
        yield tmp
        if path.exists():   # a damaged or stale copy: moved aside, so the name is never half-empty
            aside = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.old."))
            os.replace(path, aside / "x")
            os.replace(tmp, path)
            shutil.rmtree(aside, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


# -- verified artifacts ------------------------------------------------------------------
def sidecar(path: Path) -> Path:
    """The `<file>.sha256` record of file artifact `path`."""
    return path.with_name(path.name + SIDECAR)


def _digests(folder: Path) -> dict[str, str]:
    """rel path -> sha256 of every file under `folder` ("symlink:<target>" for a link)."""
    files: dict[str, str] = {}
    for root, dirs, names in os.walk(folder):
        dirs.sort()
        for name in sorted(names + [d for d in dirs if os.path.islink(os.path.join(root, d))]):
            full = Path(root) / name
            rel = full.relative_to(folder).as_posix()
            if rel == MANIFEST:
                continue
            files[rel] = f"symlink:{os.readlink(full)}" if full.is_symlink() else sha256_file(full)
    return files


def store_verified(path: Path, content: bytes | Path | None = None, mode: int = 0o644) -> str:
    """Record artifact `path`'s content hash, writing the artifact first when given.

    - `content` bytes, or a file to copy: `path` is written atomically with `mode`,
      then its sidecar `<path>.sha256`; returns the file's sha256.
    - `content` None, `path` a folder (the temp folder of `atomic_directory`, before it
      is renamed into place): the manifest of every file in it is written last, inside
      it; returns the manifest's sha256.
    """
    path = Path(path)
    if content is None:
        if not path.is_dir():
            raise ValueError(f"store_verified({path}): no content and not a folder")
        data = (json.dumps({"files": _digests(path)}, indent=0, sort_keys=True) + "\n").encode()
        atomic_write_bytes(path / MANIFEST, data)
        return sha256_bytes(data)
    data = bytes(content) if isinstance(content, (bytes, bytearray, memoryview)) else \
        Path(content).read_bytes()
    digest = sha256_bytes(data)
    atomic_write_bytes(path, data, mode)
    atomic_write_bytes(sidecar(path), f"{digest}  {path.name}\n".encode())
    return digest


_manifests: dict[tuple, dict[str, str]] = {}


def read_manifest(folder: Path) -> dict[str, str] | None:
    """A folder artifact's manifest (rel path -> sha256), None when absent or unreadable."""
    path = Path(folder) / MANIFEST
    try:
        st = path.stat()
        key = (str(path), st.st_ino, st.st_mtime_ns, st.st_size)
        if key not in _manifests:
            files = json.loads(path.read_bytes())["files"]
            if not isinstance(files, dict):
                return None
            _manifests[key] = files
        return _manifests[key]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _short(digest: str) -> str:
    return digest[:12] if not digest.startswith("symlink:") else digest


def _file_problem(path: Path) -> tuple[str | None, str]:
    try:
        recorded = sidecar(path).read_text().split()[0]
    except (OSError, IndexError, ValueError):   # absent, empty, not text
        return f"no {sidecar(path).name} record", ""
    if not path.is_file():
        return "not a file", ""
    got = sha256_file(path)
    if got != recorded:
        return (f"sha256 {_short(got)}... ({path.stat().st_size} bytes) does not match the "
                f"recorded {_short(recorded)}..."), ""
    return None, got


def _file_in_folder(folder: Path, rel: str, recorded: str) -> str | None:
    full = folder / rel
    if recorded.startswith("symlink:"):
        if not full.is_symlink() or os.readlink(full) != recorded[len("symlink:"):]:
            return f"{rel}: not the recorded {recorded}"
        return None
    if full.is_symlink() or not full.is_file():
        return f"{rel}: missing"
    got = sha256_file(full)
    if got != recorded:
        return (f"{rel}: sha256 {_short(got)}... ({full.stat().st_size} bytes) does not match "
                f"the recorded {_short(recorded)}...")
    return None


def _folder_problem(folder: Path, files: Iterable[str | Path] | None) -> tuple[str | None, str]:
    if files is not None:
        files = list(files)
        if not files:   # only that the folder is complete (its manifest is written last)
            if not (folder / MANIFEST).is_file():
                return f"no {MANIFEST}", ""
            return None, sha256_file(folder / MANIFEST)
    manifest = read_manifest(folder)
    if manifest is None:
        return f"no readable {MANIFEST}", ""
    if files is None:
        present = set(_digests_names(folder))
        extra = sorted(present - set(manifest))
        if extra:
            return f"{extra[0]}: not in its manifest", ""
        wanted = list(manifest)
    else:
        wanted = [Path(f).as_posix() for f in files]
    for rel in wanted:
        if rel not in manifest:
            return f"{rel}: not in its manifest", ""
        problem = _file_in_folder(folder, rel, manifest[rel])
        if problem:
            return problem, ""
    return None, sha256_bytes((folder / MANIFEST).read_bytes())


def _digests_names(folder: Path) -> list[str]:
    names = []
    for root, dirs, files in os.walk(folder):
        for name in files + [d for d in dirs if os.path.islink(os.path.join(root, d))]:
            rel = (Path(root) / name).relative_to(folder).as_posix()
            if rel != MANIFEST:
                names.append(rel)
    return names


def load_verified(path: Path, files: Iterable[str | Path] | None = None,
                  keep: bool = False) -> str | None:
    """The artifact at `path` if it is there and intact, else None (build it again).

    A file must match its sidecar; a folder's files must match its manifest (`files`:
    only these, the ones this use reads, as paths relative to the folder; None: every
    file, and no file the manifest does not list; []: only that the manifest, written
    last, is there). An artifact that is there but does
    not match, or has no record, is named in one log line with the problem and
    deleted (`keep`: left for the rebuild to replace atomically, for a big tree others may
    still be reading). Returns the file's sha256, or the folder manifest's. Call it under
    `locked(path)`, as the writer holds that lock until the record is written.
    """
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        with contextlib.suppress(FileNotFoundError):
            sidecar(path).unlink()          # a record without its artifact
        return None
    problem, digest = _folder_problem(path, files) if path.is_dir() and not path.is_symlink() \
        else _file_problem(path)
    if problem is None:
        return digest
    log.warning("cache: %s: %s; %s, it is built again", path, problem,
                "not used" if keep else "deleted")
    if not keep:
        discard(path)
    return None


def discard(path: Path) -> None:
    """Delete an artifact (and its sidecar): a folder is renamed aside first, so that no
    half-deleted folder is ever at its name."""
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        aside = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.discard."))
        os.replace(path, aside / "x")
        shutil.rmtree(aside, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    with contextlib.suppress(FileNotFoundError):
        sidecar(path).unlink()
