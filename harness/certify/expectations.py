"""PLATFORM.toml: what a platform must show to be certified (docs/certification.md).

    schema = "kvmconf-platform/1"
    name = "Contoso EPYC 9004, BIOS 1.7, Linux 6.1, QEMU 7.2"

    [fingerprint]                       # the machine the run must come from
    cpu_vendor = "AuthenticAMD"
    cpu_family = 25                     # a number, or an inclusive [low, high] range
    cpu_model = [0x10, 0x1f]
    microcode_min = 0x0a101144          # optional floor
    qemu = "QEMU emulator version 7.2*" # optional globs and choices
    host_kernel = "6.1.*"
    accel = "kvm"                       # kvm | tcg | none (a live target)
    target = "qemu"                     # qemu | local | ssh

    [features.sev_es]                   # each listed feature is required
    must_pass = ["sev_es/model/*", "sev_es/hardware/*"]   # each matched case must PASS
    allow_skip = []                     # capabilities its other cases may SKIP for

    [[waivers]]
    case = "vfio/migration/*"
    reason = "no variant driver on this platform"
    issue = "https://bugs.example.com/1234"
    expires = 2027-03-31                # a TOML date

Every error is one line naming the file, the key and what is wrong.
"""
from __future__ import annotations

import datetime as dt
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from harness import features, missing
from harness.errors import UsageError

SCHEMA = "kvmconf-platform/1"
VENDORS = ("AuthenticAMD", "GenuineIntel", "HygonGenuine")
ACCELS = ("kvm", "tcg", "none")
TARGETS = ("qemu", "local", "ssh")
_TOP = {"schema", "name", "fingerprint", "features", "waivers"}
_FINGERPRINT = {"cpu_vendor", "cpu_family", "cpu_model", "microcode_min", "qemu", "host_kernel", "accel", "target"}
_FEATURE = {"must_pass", "allow_skip"}
_WAIVER = {"case", "reason", "issue", "expires"}
_ISSUE = re.compile(r"https?://\S+|[A-Za-z][\w.-]*#\d+")
_MAX_BYTES = 1 << 20


@dataclass(frozen=True)
class Waiver:
    case: str
    reason: str
    issue: str
    expires: dt.date

    def expired(self, on: dt.date) -> bool:
        """A waiver holds through its expiry date and not after it."""
        return on > self.expires


@dataclass(frozen=True)
class FeatureExpectation:
    must_pass: tuple[str, ...]
    allow_skip: frozenset[str]


@dataclass(frozen=True)
class Expectations:
    name: str
    fingerprint: dict
    features: dict[str, FeatureExpectation]
    waivers: tuple[Waiver, ...] = field(default=())
    text: bytes = b""                   # the file as given (it goes into the bundle)


def load(path: Path | str) -> Expectations:
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise UsageError(f"{path}: no such platform expectations file") from None
    except OSError as e:
        raise UsageError(f"{path}: unreadable ({e.strerror or e})") from None
    return parse(raw, str(path))


def parse(raw: bytes, where: str) -> Expectations:
    if len(raw) > _MAX_BYTES:
        raise UsageError(f"{where}: {len(raw)} bytes, more than a platform file's {_MAX_BYTES}")
    try:
        data = tomllib.loads(raw.decode())
    except UnicodeDecodeError as e:
        raise UsageError(f"{where}: not UTF-8 text (byte {e.start})") from None
    except tomllib.TOMLDecodeError as e:
        raise UsageError(f"{where}: not TOML ({e})") from None

    def bad(key: str, what: str) -> UsageError:
        return UsageError(f"{where}: {key}: {what}")

    _keys(data, _TOP, "the top level", bad)
    if data.get("schema") != SCHEMA:
        raise bad("schema", f"{data.get('schema')!r}, expected {SCHEMA!r}")
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        raise bad("name", "missing or empty (the platform's name, as the bundle shows it)")
    fingerprint = _fingerprint(data.get("fingerprint"), bad)
    wanted = data.get("features")
    if not isinstance(wanted, dict) or not wanted:
        raise bad("features", "missing: at least one [features.NAME] table (the features required)")
    return Expectations(name=name.strip(), fingerprint=fingerprint,
                        features={f: _feature(f, spec, bad) for f, spec in wanted.items()},
                        waivers=tuple(_waiver(i, w, bad) for i, w in enumerate(_list(data, "waivers", bad))),
                        text=raw)


def _keys(table: dict, known: set[str], where: str, bad) -> None:
    unknown = sorted(set(table) - known)
    if unknown:
        raise bad(unknown[0], f"not a key of {where} (known: {', '.join(sorted(known))})")


def _list(data: dict, key: str, bad) -> list:
    value = data.get(key, [])
    if not isinstance(value, list):
        raise bad(key, f"a {type(value).__name__}, expected an array")
    return value


def _fingerprint(spec, bad) -> dict:
    if not isinstance(spec, dict):
        raise bad("fingerprint", "missing: a [fingerprint] table with at least cpu_vendor")
    _keys(spec, _FINGERPRINT, "[fingerprint]", bad)
    if spec.get("cpu_vendor") not in VENDORS:
        raise bad("fingerprint.cpu_vendor", f"{spec.get('cpu_vendor')!r}, expected one of {', '.join(VENDORS)}")
    out = {"cpu_vendor": spec["cpu_vendor"]}
    for key in ("cpu_family", "cpu_model"):
        if key in spec:
            out[key] = _range(spec[key], f"fingerprint.{key}", bad)
    if "microcode_min" in spec:
        value = spec["microcode_min"]
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise bad("fingerprint.microcode_min", f"{value!r}, expected a number (e.g. 0x0a101144)")
        out["microcode_min"] = value
    for key in ("qemu", "host_kernel"):
        if key in spec:
            if not isinstance(spec[key], str) or not spec[key]:
                raise bad(f"fingerprint.{key}", f"{spec[key]!r}, expected a glob string")
            out[key] = spec[key]
    for key, choices in (("accel", ACCELS), ("target", TARGETS)):
        if key in spec:
            if spec[key] not in choices:
                raise bad(f"fingerprint.{key}", f"{spec[key]!r}, expected one of {', '.join(choices)}")
            out[key] = spec[key]
    return out


def _range(value, key: str, bad) -> tuple[int, int]:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return (value, value)
    if (isinstance(value, list) and len(value) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value)
            and value[0] <= value[1]):
        return (value[0], value[1])
    raise bad(key, f"{value!r}, expected a number or an inclusive [low, high] range with low <= high")


def _feature(name: str, spec, bad) -> FeatureExpectation:
    key = f"features.{name}"
    known = ("smoke",) + features.names()
    if name not in known:
        raise bad(key, f"no such feature (known: {', '.join(known)})")
    if not isinstance(spec, dict):
        raise bad(key, "expected a table with must_pass and allow_skip")
    _keys(spec, _FEATURE, f"[{key}]", bad)
    must = spec.get("must_pass", [])      # none: the run must select the feature, that is all
    if not isinstance(must, list) or not all(isinstance(g, str) and g for g in must):
        raise bad(f"{key}.must_pass", "expected an array of case globs")
    for glob in must:
        if not glob.startswith(name + "/"):
            raise bad(f"{key}.must_pass", f"{glob!r} does not start with '{name}/'")
    allow = spec.get("allow_skip", [])
    if not isinstance(allow, list) or not all(isinstance(c, str) for c in allow):
        raise bad(f"{key}.allow_skip", "expected an array of capability names")
    own = features.get(name).capability_names if name in features.names() else set()
    for capability in allow:
        if not missing.known(own, capability):
            raise bad(f"{key}.allow_skip", f"{capability!r} is not a capability {name}'s cases name "
                                           f"(known: {', '.join(sorted(own | set(missing.GENERAL)))}, CONFIG_...)")
    return FeatureExpectation(tuple(must), frozenset(allow))


def _waiver(index: int, spec, bad) -> Waiver:
    key = f"waivers[{index}]"
    if not isinstance(spec, dict):
        raise bad(key, "expected a table ([[waivers]]) with case, reason, issue and expires")
    _keys(spec, _WAIVER, f"[[waivers]]", bad)
    for name in ("case", "reason", "issue"):
        if not isinstance(spec.get(name), str) or not spec[name].strip():
            raise bad(f"{key}.{name}", "missing or empty")
    if "/" not in spec["case"]:
        raise bad(f"{key}.case", f"{spec['case']!r} is not a case glob (FEATURE/...)")
    if not _ISSUE.fullmatch(spec["issue"].strip()):
        raise bad(f"{key}.issue", f"{spec['issue']!r} is not an issue link (a URL, or TRACKER#N)")
    expires = spec.get("expires")
    if isinstance(expires, str):
        raise bad(f"{key}.expires", f"{expires!r} is a string; write a TOML date: expires = {expires}")
    if not isinstance(expires, dt.date) or isinstance(expires, dt.datetime):
        raise bad(f"{key}.expires", f"{expires!r}, expected a TOML date (expires = 2027-03-31)")
    return Waiver(spec["case"], spec["reason"].strip(), spec["issue"].strip(), expires)
