"""The certification bundle: a gzip tarball anyone can check offline.

    kvmconf-cert-<run id>/
      run/run.json, run/...     the run folder as it was (machine logs, junit, evidence)
      PLATFORM.toml             the expectations, as given
      platform.json             the run's platform profile (from run.json)
      hashes.json               kernel, payload and harness hashes (from run.json)
      verdict.json              certified or not, with each reason
      signer.json               the signing key's fingerprint
      MANIFEST.sha256           sha256sum lines of every member above
      MANIFEST.sha256.sig       ed25519 signature of MANIFEST.sha256 (64 raw bytes)

The tarball is reproducible (sorted members, fixed owner, mode and time). `check`
trusts nothing in it but the signature: the manifest must be signed by the given
key, every member must be listed with its hash and nothing else may be there, and
the derived members and the verdict must follow from run.json and PLATFORM.toml.
"""
from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import io
import json
import re
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from harness.cache import atomic_write_bytes
from harness.certify import expectations as expect_mod
from harness.certify.keys import fingerprint
from harness.certify.verdict import judge
from harness.commands.report import safe_name
from harness.errors import UsageError
from harness.results.record import SCHEMA as RUN_SCHEMA
from harness.results.schema import problems

MANIFEST, SIGNATURE = "MANIFEST.sha256", "MANIFEST.sha256.sig"
RUN_JSON, PLATFORM_TOML, VERDICT, SIGNER = "run/run.json", "PLATFORM.toml", "verdict.json", "signer.json"
PLATFORM_JSON, HASHES = "platform.json", "hashes.json"
# What `check` reads whole (the rest is only hashed), and the most it reads.
_READ = {RUN_JSON, PLATFORM_TOML, VERDICT, SIGNER, PLATFORM_JSON, HASHES, MANIFEST, SIGNATURE}
MAX_READ = 256 << 20
MAX_TOTAL = 8 << 30
MAX_MEMBERS = 100_000
_LINE = re.compile(r"([0-9a-f]{64})  (\S.*)")


class Invalid(Exception):
    """The bundle cannot be trusted (exit 2): the message says why, in one line."""


def _json(value) -> bytes:
    return (json.dumps(value, indent=1, sort_keys=True) + "\n").encode()


def derived(record: dict) -> dict[str, bytes]:
    """The members made from run.json: the platform profile and the hashes."""
    kernel = record["kernel"]
    return {
        PLATFORM_JSON: _json({"platform": record["platform"], "target": record.get("target"),
                              "profiles": record["profiles"], "profile_verdict": record.get("profile_verdict")}),
        HASHES: _json({"kernel": {k: kernel.get(k) for k in ("kind", "version", "sha256", "source",
                                                              "config_sha256", "series")},
                       "payloads": record.get("payloads"), "harness": record["harness"]}),
    }


def top_folder(run_id: str) -> str:
    return "kvmconf-cert-" + safe_name(run_id)


def _run_files(folder: Path) -> dict[str, bytes]:
    """The run folder's files but run.json (the caller's bytes, the ones it judged)."""
    files, total = {}, 0
    for path in sorted(folder.rglob("*")):
        if path.is_symlink() or not path.is_file() or path == folder / "run.json":
            continue
        data = path.read_bytes()
        total += len(data)
        if total > MAX_TOTAL:
            raise UsageError(f"{folder}: more than {MAX_TOTAL >> 30} GiB of files, too big to bundle")
        files["run/" + path.relative_to(folder).as_posix()] = data
    return files


def write(folder: Path, run_json: bytes, record: dict, expect: expect_mod.Expectations,
          key: Ed25519PrivateKey, output: Path, now: dt.datetime) -> dict:
    """Judge the run, write the signed bundle to `output` (atomically) and return the
    verdict. `run_json` is the run.json the record was parsed from: that one is bundled."""
    verdict = judge(record, expect, now.date())
    verdict["certified_at"] = now.isoformat(timespec="seconds")
    members = _run_files(folder)
    members[RUN_JSON] = run_json
    members.update(derived(record))
    members[PLATFORM_TOML] = expect.text
    members[VERDICT] = _json(verdict)
    members[SIGNER] = _json({"fingerprint": fingerprint(key.public_key()), "algorithm": "ed25519"})
    manifest = "".join(f"{hashlib.sha256(data).hexdigest()}  {name}\n" for name, data in sorted(members.items()))
    members[MANIFEST] = manifest.encode()
    members[SIGNATURE] = key.sign(members[MANIFEST])
    top = top_folder(record["run_id"])
    packed = io.BytesIO()       # the members are in memory already; the tarball is smaller
    with gzip.GzipFile(fileobj=packed, mode="wb", mtime=0, filename="") as gz, \
            tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in sorted(members.items()):
            info = tarfile.TarInfo(f"{top}/{name}")
            info.size, info.mtime, info.mode = len(data), int(now.timestamp()), 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            tar.addfile(info, io.BytesIO(data))
    try:
        atomic_write_bytes(output, packed.getvalue())
    except OSError as e:
        raise UsageError(f"--output {output}: cannot write the bundle ({e.strerror or e})") from None
    return verdict


# ---------------------------------------------------------------------------- check

@dataclass
class Checked:
    verdict: dict              # verdict.json, recomputed and found equal
    certified: bool            # the verdict as of today (a waiver may have expired since)
    reasons: list[str]         # why not, as of today
    members: int
    signer: str


def _read_members(path: Path) -> tuple[dict[str, str], dict[str, bytes]]:
    """(name -> sha256, name -> bytes of the members check reads) of the bundle's
    one top folder; anything but plain files under one folder is Invalid."""
    digests: dict[str, str] = {}
    contents: dict[str, bytes] = {}
    top, total = None, 0
    try:
        with tarfile.open(path, mode="r:gz") as tar:
            for count, info in enumerate(tar, 1):
                if count > MAX_MEMBERS:
                    raise Invalid(f"more than {MAX_MEMBERS} members")
                first, _, rel = info.name.partition("/")
                top = top or first
                parts = rel.split("/")
                if first != top or not rel or info.name.startswith("/") or any(p in ("", ".", "..") for p in parts):
                    raise Invalid(f"member {info.name!r} is not a file under the bundle's folder {top}/")
                if not info.isreg():
                    raise Invalid(f"member {info.name!r} is not a regular file (a link, folder or device)")
                if rel in digests:
                    raise Invalid(f"member {rel} is in the tarball twice")
                total += info.size
                if total > MAX_TOTAL:
                    raise Invalid(f"members hold more than {MAX_TOTAL >> 30} GiB")
                keep = rel in _READ
                if keep and info.size > MAX_READ:
                    raise Invalid(f"member {rel} is {info.size} bytes, more than {MAX_READ >> 20} MiB")
                digest, held = hashlib.sha256(), []
                stream = tar.extractfile(info)
                while chunk := stream.read(1 << 20):
                    digest.update(chunk)
                    if keep:
                        held.append(chunk)
                digests[rel] = digest.hexdigest()
                if keep:
                    contents[rel] = b"".join(held)
    except (tarfile.TarError, EOFError, gzip.BadGzipFile, OSError, zlib.error) as e:
        raise Invalid(f"not a readable gzip tarball ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    if top is None:
        raise Invalid("the tarball is empty")
    return digests, contents


def _manifest(text: bytes) -> dict[str, str]:
    listed: dict[str, str] = {}
    try:
        lines = text.decode().splitlines()
    except UnicodeDecodeError:
        raise Invalid(f"{MANIFEST} is not UTF-8 text") from None
    for number, line in enumerate(lines, 1):
        m = _LINE.fullmatch(line)
        if not m:
            raise Invalid(f"{MANIFEST} line {number} is not 'SHA256  NAME': {line[:80]!r}")
        digest, name = m.groups()
        if name in listed or name in (MANIFEST, SIGNATURE):
            raise Invalid(f"{MANIFEST} line {number} lists {name} {'again' if name in listed else 'itself'}")
        listed[name] = digest
    return listed


def _load_json(contents: dict[str, bytes], name: str):
    try:
        return json.loads(contents[name])
    except (ValueError, RecursionError):
        raise Invalid(f"{name} is not JSON") from None


def check(path: Path, public: Ed25519PublicKey, today: dt.date) -> Checked:
    digests, contents = _read_members(path)
    for name in (MANIFEST, SIGNATURE):
        if name not in contents:
            raise Invalid(f"no {name} in the bundle: it was never signed, or it was removed")
    given = fingerprint(public)
    try:
        public.verify(contents[SIGNATURE], contents[MANIFEST])
    except InvalidSignature:
        signer = ""
        try:
            signer = json.loads(contents.get(SIGNER, b"{}")).get("fingerprint", "")
        except (ValueError, AttributeError):
            pass
        if signer and signer != given:
            raise Invalid(f"signature: the bundle says it was signed by {signer}, not by --pubkey's key "
                          f"{given}") from None
        raise Invalid(f"signature: {MANIFEST} is not signed by --pubkey's key {given} "
                      f"(the manifest changed after signing, or another key signed it)") from None
    listed = _manifest(contents[MANIFEST])
    for name, digest in listed.items():
        if name not in digests:
            raise Invalid(f"member {name} is listed in {MANIFEST} but missing from the bundle (removed after signing)")
        if digests[name] != digest:
            raise Invalid(f"member {name} changed after signing (sha256 {digests[name][:16]}..., "
                          f"the signed manifest says {digest[:16]}...)")
    extra = sorted(set(digests) - set(listed) - {MANIFEST, SIGNATURE})
    if extra:
        raise Invalid(f"member {extra[0]} is not in the signed {MANIFEST} (added after signing)")
    for name in (RUN_JSON, PLATFORM_TOML, VERDICT, SIGNER, PLATFORM_JSON, HASHES):
        if name not in listed:
            raise Invalid(f"the signed {MANIFEST} lists no {name}: not a kvmconf certification bundle")
    try:
        return _judge_contents(contents, given, today, len(listed) + 2)
    except (KeyError, TypeError, AttributeError, ValueError) as e:
        # signed, but not what kvmconf writes: a record or verdict of the wrong shape
        raise Invalid(f"signed members of the wrong shape ({type(e).__name__}: {e})") from None


def _judge_contents(contents: dict[str, bytes], given: str, today: dt.date, members: int) -> Checked:
    record = _load_json(contents, RUN_JSON)
    found = problems(record) if isinstance(record, dict) and record.get("schema") == RUN_SCHEMA \
        else ["not a kvmconf-run/1 record"]
    if found:
        raise Invalid(f"{RUN_JSON}: {found[0]}")
    try:
        expect = expect_mod.parse(contents[PLATFORM_TOML], PLATFORM_TOML)
    except UsageError as e:
        raise Invalid(str(e)) from None
    for name, data in derived(record).items():
        if contents[name] != data:
            raise Invalid(f"{name} does not match what {RUN_JSON} says")
    verdict = _load_json(contents, VERDICT)
    try:
        judged_on = dt.date.fromisoformat(verdict["judged_on"])
    except (TypeError, KeyError, ValueError):
        raise Invalid(f"{VERDICT}: no judged_on date") from None
    again = judge(record, expect, judged_on)
    claimed = {k: v for k, v in verdict.items() if k != "certified_at"}
    if claimed != again:
        said = "certified" if verdict.get("certified") else "not certified"
        now = "certified" if again["certified"] else "not certified: " + (again["reasons"] or ["?"])[0]
        differs = next((k for k in sorted(set(claimed) | set(again)) if claimed.get(k) != again.get(k)), "?")
        raise Invalid(f"{VERDICT} does not follow from {RUN_JSON} and {PLATFORM_TOML}: it says {said}, "
                      f"recomputed {now} (first difference: {differs})")
    signer = _load_json(contents, SIGNER)
    if not isinstance(signer, dict) or signer.get("fingerprint") != given:
        named = signer.get("fingerprint") if isinstance(signer, dict) else signer
        raise Invalid(f"{SIGNER} names {named}, but {given} signed the bundle")
    certified, reasons = again["certified"], list(again["reasons"])
    if certified and today > judged_on:
        later = judge(record, expect, today)
        if not later["certified"]:
            certified = False
            reasons = [f"since certification on {judged_on.isoformat()}: {r}" for r in later["reasons"]]
    return Checked(verdict, certified, reasons, members, given)
