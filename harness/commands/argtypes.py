"""argparse `type=` validators: bad input on a flag fails at parse time, before any
kernel build, QEMU boot or network, as one line "kvmconf: --FLAG VALUE: what is wrong".

Each validator takes the flag's text and returns the value the commands already
expect (the text itself for paths and names, int or float for numbers), or raises
argparse.ArgumentTypeError("VALUE: what is wrong"); harness.cli's parser puts
"kvmconf: --FLAG " in front (or not, when the message already starts with the
flag: the checks reused from the harness name their flag themselves).

A validator never opens what is not a regular file (a FIFO would block), and
never creates anything (--output and --history are created by the command).
"""
from __future__ import annotations

import argparse
import functools
import math
import os
import re
import shlex
import stat
from pathlib import Path

from harness.errors import UsageError

_PCI = re.compile(r"[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]")
_PRIVATE_KEY = re.compile(rb"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----")
_SQLITE_MAGIC = b"SQLite format 3\0"


def show(value: str) -> str:
    """The value as the error line names it ('' for an empty one)."""
    return value if value else "''"


def _bad(value: str, what: str) -> argparse.ArgumentTypeError:
    return argparse.ArgumentTypeError(f"{show(value)}: {what}")


def _reusing(check):
    """A validator that calls the harness's own checks: their UsageError becomes the
    flag's error (its first line; the checks' messages already name the flag or the path)."""
    @functools.wraps(check)
    def validator(value: str):
        try:
            return check(value)
        except UsageError as e:
            raise argparse.ArgumentTypeError(" ".join(str(e).split())) from None
    return validator


def _stat(value: str, missing: str) -> os.stat_result | None:
    """The path's stat (following links); None when nothing is there."""
    if not value:
        raise _bad(value, "empty path")
    path = Path(value)
    try:
        return path.stat()
    except (FileNotFoundError, NotADirectoryError):
        if path.is_symlink():
            raise _bad(value, f"{missing} (a dangling symlink)") from None
        return None
    except OSError as e:
        raise _bad(value, f"unreadable ({e.strerror})") from None


def _readable(value: str) -> None:
    try:
        with open(value, "rb"):
            pass
    except OSError as e:
        raise _bad(value, f"unreadable ({e.strerror})") from None


def _head(value: str, size: int) -> bytes:
    try:
        with open(value, "rb") as f:
            return f.read(size)
    except OSError as e:
        raise _bad(value, f"unreadable ({e.strerror})") from None


# -- paths ---------------------------------------------------------------------------
def existing_file(value: str) -> str:
    """A readable regular file (a folder, a FIFO or a device is not one)."""
    st = _stat(value, "no such file")
    if st is None:
        raise _bad(value, "no such file")
    if stat.S_ISDIR(st.st_mode):
        raise _bad(value, "is a folder, not a file")
    if not stat.S_ISREG(st.st_mode):
        raise _bad(value, "not a regular file (a FIFO, socket or device)")
    _readable(value)
    return value


def existing_dir(value: str) -> str:
    """A readable folder."""
    st = _stat(value, "no such folder")
    if st is None:
        raise _bad(value, "no such folder")
    if not stat.S_ISDIR(st.st_mode):
        raise _bad(value, "not a folder")
    if not os.access(value, os.R_OK | os.X_OK):
        raise _bad(value, "unreadable (Permission denied)")
    return value


def file_or_dir(value: str) -> str:
    """A readable regular file or folder."""
    st = _stat(value, "no such file or folder")
    if st is None:
        raise _bad(value, "no such file or folder")
    if stat.S_ISDIR(st.st_mode):
        return existing_dir(value)
    if not stat.S_ISREG(st.st_mode):
        raise _bad(value, "not a regular file or folder (a FIFO, socket or device)")
    _readable(value)
    return value


def _creatable(value: str) -> None:
    """`value` can be made: the nearest existing ancestor is a writable folder."""
    path = Path(value)
    for parent in path.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise _bad(value, "not writable (Not a directory)")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise _bad(value, "not writable (Permission denied)")
            return
        if parent.is_symlink():
            raise _bad(value, f"not writable ({parent} is a dangling symlink)")


def output_file(value: str) -> str:
    """certify --output: a file to write (or replace) in an existing writable folder."""
    st = _stat(value, "not writable")
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise _bad(value, "is a folder, not a file")
    parent = Path(value).absolute().parent
    if not parent.is_dir():
        raise _bad(value, f"not writable (no folder {parent})")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise _bad(value, "not writable (Permission denied)")
    return value


def output_folder(value: str) -> str:
    """--output: an existing writable folder, or one that can be created (the
    command creates it; nothing is created at parse time)."""
    st = _stat(value, "not writable")
    if st is None:
        _creatable(value)
        return value
    if not stat.S_ISDIR(st.st_mode):
        raise _bad(value, "not writable (File exists)")
    if not os.access(value, os.W_OK | os.X_OK):
        raise _bad(value, "not writable (Permission denied)")
    return value


def history_db(value: str) -> str:
    """--history: an SQLite database, or a file that can be created. Checked now because
    the run only writes it at its very end."""
    st = _stat(value, "no such file")
    if st is None:
        _creatable(value)
        return value
    if stat.S_ISDIR(st.st_mode):
        raise _bad(value, "is a folder, not a file")
    if not stat.S_ISREG(st.st_mode):
        raise _bad(value, "not a regular file (a FIFO, socket or device)")
    if st.st_size == 0:
        return value                    # SQLite makes an empty file a new database
    head = _head(value, 100)
    if not head.startswith(_SQLITE_MAGIC):
        raise _bad(value, "not an SQLite database")
    page = int.from_bytes(head[16:18], "big") if len(head) >= 18 else 0
    page = 65536 if page == 1 else page
    if len(head) < 100 or page < 512 or st.st_size < page or st.st_size % page:
        raise _bad(value, f"truncated SQLite database ({st.st_size} bytes)")
    import sqlite3
    conn = None
    try:
        conn = sqlite3.connect(Path(value).resolve().as_uri() + "?mode=ro", uri=True, timeout=5)
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.Error as e:
        raise _bad(value, f"unreadable SQLite database ({e})") from None
    finally:
        if conn is not None:
            conn.close()
    return value


def db_url(value: str) -> str:
    """--db (default $KVMCONF_DB): postgresql://... that parses and takes a connection
    now (5 s at most), or sqlite:///PATH (as --history). The line shows the URL without
    its password, and says when the value came from $KVMCONF_DB."""
    from harness.results import history
    if value.startswith("sqlite://"):
        history_db(value[len("sqlite://"):])
        return value
    shown = history.redact(value)
    source = f" (from ${history.ENV})" if value and value == os.environ.get(history.ENV) else ""
    try:
        history.check_url(value)
    except (ValueError, history.StoreError) as e:
        raise _bad(shown, f"{e}{source}") from None
    return value


@_reusing
def bzimage(value: str) -> str:
    """--kernel: a bzImage (its x86 boot header and the size that header promises)."""
    from harness.kernel.bzimage import read_version
    existing_file(value)
    read_version(Path(value))
    return value


@_reusing
def kernel_source(value: str) -> str:
    """--source: a Linux tree, or a tarball whose first member reads (a full listing
    of a compressed tarball costs seconds; the build reads the rest before any make)."""
    import lzma
    import tarfile
    import zlib

    from harness.kernel import build
    if value == str(build.DEFAULT_SOURCE) and not Path(value).exists():
        return value                    # the build installs linux-source-6.1 (apt-get)
    file_or_dir(value)
    if Path(value).is_dir():
        build._check_tree(Path(value), Path(value))
        return value
    try:
        with tarfile.open(value) as tar:
            if tar.next() is None:
                raise _bad(value, "not a readable tarball (no member)")
    except (tarfile.TarError, OSError, EOFError, zlib.error, lzma.LZMAError) as e:
        raise _bad(value, f"not a readable tarball ({build.tar_error(e)})") from None
    return value


@_reusing
def patch_file(value: str) -> str:
    """--patch: a file with ---/+++ file headers."""
    from harness.kernel import patches
    existing_file(value)
    patches.load(Path(value))
    return value


@_reusing
def config_fragment(value: str) -> str:
    """--config: a UTF-8 file of CONFIG_X=... / '# CONFIG_X is not set' lines."""
    from harness.kernel import build
    existing_file(value)
    try:
        Path(value).read_bytes().decode()
    except UnicodeDecodeError as e:
        raise _bad(value, f"not a config fragment (not UTF-8 text: byte {e.start})") from None
    build.parse_fragment(Path(value))
    return value


@_reusing
def series_source(value: str) -> str:
    """--series / `series show`: an mbox, a format-patch folder or a digest that parses."""
    from harness import series
    file_or_dir(value)
    series.load(Path(value))
    return value


@_reusing
def run_record(value: str) -> str:
    """`compare`: a run folder or run.json that loads."""
    from harness.results.compare_runs import load_run
    if _stat(value, "no such run record") is None:
        raise _bad(value, "no such run record")     # the text `compare` always gave
    file_or_dir(value)
    load_run(value)
    return value


def ssh_private_key(value: str) -> str:
    """--ssh-key, certify --key: a file holding a PEM/OpenSSH private key."""
    existing_file(value)
    if not _PRIVATE_KEY.search(_head(value, 1 << 16)):
        raise _bad(value, "not a private key (no -----BEGIN ... PRIVATE KEY----- line)")
    return value


def public_key_file(value: str) -> str:
    """verify --pubkey: a file holding a PEM public key or an OpenSSH public key line."""
    existing_file(value)
    head = _head(value, 1 << 16).lstrip()
    if not (head.startswith(b"-----BEGIN PUBLIC KEY-----") or head.startswith(b"ssh-")):
        raise _bad(value, "not a public key (no -----BEGIN PUBLIC KEY----- or ssh-... line)")
    return value


def bundle_file(value: str) -> str:
    """verify BUNDLE: a gzip file (what is inside is the check's to judge)."""
    existing_file(value)
    if _head(value, 2) != b"\x1f\x8b":
        raise _bad(value, "not a certification bundle (not gzip)")
    return value


def _platform_file(value: str) -> str:
    from harness.certify import expectations
    existing_file(value)
    expectations.load(value)
    return value


platform_file = _reusing(_platform_file)     # certify --expect: a PLATFORM.toml that loads


@_reusing
def host_key(value: str) -> str:
    """--host-key: an OpenSSH public key line or a file holding one."""
    from harness.targets.live import parse_host_key
    if not value:
        raise _bad(value, "empty (expected an OpenSSH public key line or a file holding one)")
    if Path(value).exists() and not Path(value).is_file() and not Path(value).is_dir():
        raise _bad(value, "not a regular file (a FIFO, socket or device)")
    parse_host_key(value)
    return value


# -- names and words -----------------------------------------------------------------
@_reusing
def target(value: str) -> str:
    """--target qemu | local | ssh://[USER@]HOST[:PORT]."""
    from harness import targets
    if not value:
        raise _bad(value, "empty (expected qemu, local or ssh://[USER@]HOST[:PORT])")
    targets.parse(value)
    return value


def pci_address(value: str) -> str:
    """--vfio-device DDDD:BB:DD.F."""
    if not _PCI.fullmatch(value):
        raise _bad(value, "expected a PCI address DDDD:BB:DD.F (lower-case hex)")
    return value


@_reusing
def feature_list(value: str) -> str:
    """--features: a comma list of registered features."""
    from harness import features
    if not value.replace(",", "").strip():     # named as typed, not as a repr
        raise _bad(value, "no feature named")
    features.parse(value)
    return value


def suite_name(value: str) -> str:
    """--suite: smoke or a feature."""
    from harness.commands.common import suites
    if value not in suites():
        raise _bad(value, f"unknown suite (known: {', '.join(suites())})")
    return value


@_reusing
def profile(value: str) -> str:
    """--profile FEATURE=NAME."""
    from harness.commands.common import parse_profiles
    if not value:
        raise _bad(value, "empty (expected FEATURE=NAME)")
    parse_profiles([value])
    return value


def case_pattern(value: str) -> str:
    """--case: a case id or glob (an empty one would match nothing, found only after
    the suite's collection)."""
    if not value.strip():
        raise _bad(value, "empty case id")
    return value


def shell_words(value: str) -> str:
    """--append: words split as a shell would (checked now: the run splits them only
    when it boots)."""
    try:
        shlex.split(value)
    except ValueError as e:
        raise _bad(value, f"not shell words ({e})") from None
    return value


_URL_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")


def artifacts_url(value: str) -> str:
    """--artifacts-url: an absolute URL ("{run_id}" is replaced by each run's id) that
    KCIDB takes as a URI once a file name is added to it (checked with the same
    checker kcidb-io validates with)."""
    import urllib.parse
    if not value:
        raise _bad(value, "empty (expected an absolute URL such as https://HOST/PATH/)")
    sample = value.replace("{run_id}", "20260101-000000-0000")
    parts = urllib.parse.urlsplit(sample)
    if not parts.scheme or not _URL_SCHEME.fullmatch(parts.scheme) or not sample.startswith(parts.scheme + ":"):
        raise _bad(value, "not an absolute URL (expected SCHEME://HOST/PATH, e.g. https:// or file://)")
    if parts.scheme.lower() != "file" and not parts.netloc:
        raise _bad(value, "no host (expected SCHEME://HOST/PATH)")
    if parts.scheme.lower() == "file" and not parts.path.startswith("/"):
        raise _bad(value, "not an absolute file URL (expected file:///PATH)")
    if parts.query or parts.fragment:
        raise _bad(value, "has a query or fragment (file names are added at its end)")
    import jsonschema
    probe = (sample if sample.endswith("/") else sample + "/") + "run.json"
    if not jsonschema.FormatChecker().conforms(probe, "uri"):
        raise _bad(value, "not a valid URI (spaces and characters such as <>\"{}| must be %-escaped)")
    return value


@_reusing
def token_file(value: str) -> str:
    """--token-file: a readable regular file holding one non-empty line (the token
    itself is never part of an error)."""
    from harness.report.publish import read_token
    existing_file(value)
    read_token(value)
    return value


@_reusing
def kcidb_url(value: str) -> str:
    """--kcidb: kcidb-rest's http(s) URL (the POST goes to its /submit)."""
    from harness.report.publish import kcidb_endpoint
    kcidb_endpoint(value)
    return value


@_reusing
def squad_url(value: str) -> str:
    """--squad: SQUAD's http(s) URL then /GROUP/PROJECT/BUILD/ENV (slugs; "{build}" and
    "{env}" stand for the run's suggestions)."""
    from harness.report.publish import squad_endpoint
    squad_endpoint(value)
    return value


# -- numbers -------------------------------------------------------------------------
def integer(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise _bad(value, "not an integer") from None


def non_negative_int(value: str) -> int:
    number = integer(value)
    if number < 0:
        raise _bad(value, "must be 0 or more")
    return number


def positive_int(value: str) -> int:
    number = integer(value)
    if number < 1:
        raise _bad(value, "must be 1 or more")
    return number


def positive_float(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise _bad(value, "not a number") from None
    if not math.isfinite(number):
        raise _bad(value, "not a finite number")
    if number <= 0:
        raise _bad(value, "must be more than 0")
    return number
