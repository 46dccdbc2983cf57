"""Certification without QEMU: PLATFORM.toml's checks, the verdict's rules, the
bundle's check against hostile tarballs, keys, and the declared capability names.
The run is a recorded real one (tests/fixtures/certify/run: smoke, pebs_pt absent
cpuid cases, and the hardware cases that SKIP here)."""
from __future__ import annotations

import ast
import copy
import datetime as dt
import io
import json
import os
import tarfile
from pathlib import Path

import pytest

from harness import features, missing
from harness.certify import bundle, expectations, keys
from harness.certify.verdict import judge
from harness.errors import UsageError
from tests import bundles
from tests.conftest import FIXTURES, REPO

RUN = FIXTURES / "certify" / "run"
TODAY = dt.date(2026, 12, 2)
NOW = dt.datetime(2026, 12, 2, 12, 0, tzinfo=dt.timezone.utc)

GOOD = """
schema = "kvmconf-platform/1"
name = "test platform"

[fingerprint]
cpu_vendor = "AuthenticAMD"
cpu_family = [0, 255]

[features.smoke]
must_pass = ["smoke/*"]

[features.pebs_pt]
must_pass = ["pebs_pt/absent/cpuid-*"]
allow_skip = ["Intel CPU"]

[features.sev_es]
allow_skip = ["SEV"]
"""


def record() -> dict:
    return json.loads((RUN / "run.json").read_text())


def parse(text: str) -> expectations.Expectations:
    return expectations.parse(text.encode(), "P.toml")


def test_the_recorded_run_meets_the_good_platform():
    verdict = judge(record(), parse(GOOD), TODAY)
    assert verdict["certified"] and verdict["reasons"] == []
    assert len(verdict["allowed_skips"]) == 7 and verdict["required"]["passed"] == verdict["required"]["cases"] == 12


@pytest.mark.parametrize("text, message", [
    ("schema = 1", r"^P.toml: schema: 1, expected 'kvmconf-platform/1'$"),
    ("= broken", r"^P.toml: not TOML \("),
    (GOOD.replace("cpu_family", "cpu_famly"), r"^P.toml: cpu_famly: not a key of \[fingerprint\]"),
    (GOOD.replace('"AuthenticAMD"', '"AMD"'), r"^P.toml: fingerprint.cpu_vendor: 'AMD', expected one of"),
    (GOOD.replace("[0, 255]", "[9, 3]"), r"^P.toml: fingerprint.cpu_family: \[9, 3\], expected a number or an inclusive"),
    (GOOD.replace("[features.smoke]", "[features.smok]").replace('"smoke/*"', '"smok/*"'),
     r"^P.toml: features.smok: no such feature \(known: smoke, syndbg"),
    (GOOD.replace('"Intel CPU"', '"Intel CPUs"'),
     r"^P.toml: features.pebs_pt.allow_skip: 'Intel CPUs' is not a capability pebs_pt's cases name \(known: "),
    (GOOD.replace('"smoke/*"', '"vfio/*"'), r"^P.toml: features.smoke.must_pass: 'vfio/\*' does not start with 'smoke/'"),
    (GOOD + '[[waivers]]\ncase = "vfio/*"\nreason = "r"\nissue = "https://x/1"\nexpires = "2027-01-31"\n',
     r"^P.toml: waivers\[0\].expires: '2027-01-31' is a string; write a TOML date: expires = 2027-01-31$"),
    (GOOD + '[[waivers]]\ncase = "vfio/*"\nreason = "r"\nissue = "soon"\nexpires = 2027-01-31\n',
     r"^P.toml: waivers\[0\].issue: 'soon' is not an issue link"),
    (GOOD + '[[waivers]]\ncase = "vfio/*"\nissue = "https://x/1"\nexpires = 2027-01-31\n',
     r"^P.toml: waivers\[0\].reason: missing or empty$"),
])
def test_a_bad_platform_file_is_one_line_naming_the_key(text, message):
    with pytest.raises(UsageError, match=message) as e:
        parse(text)
    assert "\n" not in str(e.value)


def test_config_options_and_general_capabilities_are_names():
    expect = parse(GOOD.replace('allow_skip = ["SEV"]', 'allow_skip = ["SEV", "CONFIG_MODULES", "kernel source"]'))
    assert expect.features["sev_es"].allow_skip == {"SEV", "CONFIG_MODULES", "kernel source"}
    with pytest.raises(UsageError, match=r"'CONFIG_modules' is not a capability sev_es's cases name"):
        parse(GOOD.replace('allow_skip = ["SEV"]', 'allow_skip = ["CONFIG_modules"]'))


def _waiver(expires: str, case: str = "pebs_pt/hardware/*") -> str:
    return f'\n[[waivers]]\ncase = "{case}"\nreason = "r"\nissue = "https://example.com/1"\nexpires = {expires}\n'


def test_a_waiver_holds_through_its_expiry_day_and_not_after():
    text = GOOD.replace('allow_skip = ["Intel CPU"]', "allow_skip = []") + _waiver("2026-12-02")
    on_the_day = judge(record(), parse(text), TODAY)
    assert on_the_day["certified"] and {w["case"] for w in on_the_day["waived"]} >= {"pebs_pt/hardware/records-basic"}
    after = judge(record(), parse(text), TODAY + dt.timedelta(days=1))
    assert not after["certified"]
    assert after["reasons"][0] == "waiver for pebs_pt/hardware/* (https://example.com/1) expired on 2026-12-02"
    assert any(r.startswith("unexpected SKIP of pebs_pt/hardware/records-basic: Intel CPU missing") for r in after["reasons"])


@pytest.mark.parametrize("status", ["FAIL", "ERROR", "MISS"])
def test_a_failure_outside_waivers_is_a_reason_and_a_waiver_covers_it(status):
    run = record()
    case = next(c for c in run["cases"] if c["id"] == "smoke/edu-device")
    case.update(status=status, reason="the edu device is gone")
    verdict = judge(run, parse(GOOD), TODAY)
    assert verdict["reasons"] == [f"required case smoke/edu-device (smoke/*) is {status}, not PASS: the edu device is gone"]
    waived = judge(run, parse(GOOD + _waiver("2027-01-01", "smoke/edu-device")), TODAY)
    assert waived["certified"] and waived["waived"][0]["status"] == status


def test_a_skip_naming_no_capability_is_never_allowed():
    run = record()
    case = next(c for c in run["cases"] if c["id"] == "pebs_pt/hardware/records-gprs")
    case["capability"] = None
    reasons = judge(run, parse(GOOD), TODAY)["reasons"]
    assert reasons == ["unexpected SKIP of pebs_pt/hardware/records-gprs: it names no missing capability "
                       f"({case['reason']})"]


def test_a_run_without_pins_or_interrupted_is_not_certified():
    run = record()
    del run["payloads"], run["harness"]["sha256"]
    run["interrupted"] = "SIGTERM"
    assert judge(run, parse(GOOD), TODAY)["reasons"] == [
        "run.json pins no payload hashes (a run before kvmconf recorded them): run it again",
        "run.json pins no harness hash (harness.sha256): run it again",
        "the run was interrupted by SIGTERM"]


@pytest.mark.parametrize("field, value, reason", [
    ("cpu_vendor", "GenuineIntel", "platform fingerprint: CPU vendor AuthenticAMD, the platform's is GenuineIntel"),
    ("microcode_min", "0xffffffff", "platform fingerprint: microcode 0x1000065 is older than the platform's floor 0xffffffff"),
    ("host_kernel", '"5.*"', "platform fingerprint: host kernel '6.18.44-fc-v1045' does not match '5.*'"),
    ("accel", '"kvm"', "platform fingerprint: accel tcg, the platform's is kvm"),
])
def test_each_fingerprint_field_is_checked(field, value, reason):
    run = record()
    host = run["platform"]["capabilities"]["host"]
    host.update(microcode="0x1000065", kernel="6.18.44-fc-v1045 #1 SMP")
    text = GOOD.replace('cpu_vendor = "AuthenticAMD"', f'cpu_vendor = "AuthenticAMD"\n{field} = {value}') \
        if field != "cpu_vendor" else GOOD.replace('"AuthenticAMD"', '"GenuineIntel"')
    assert judge(run, parse(text), TODAY)["reasons"] == [reason]


def test_a_live_target_is_fingerprinted_by_its_own_cpu():
    run = record()
    run["target"] = {"kind": "ssh", "where": "lab-host"}
    run["platform"]["capabilities"]["target"] = {"cpu_vendor": "GenuineIntel", "cpu_family": 6,
                                                 "cpu_model_number": 143, "microcode": "0x2b000590"}
    reasons = judge(run, parse(GOOD), TODAY)["reasons"]
    assert reasons == ["platform fingerprint: CPU vendor GenuineIntel, the platform's is AuthenticAMD"]


# -- the bundle -------------------------------------------------------------------------

@pytest.fixture
def signed(tmp_path):
    private, public, _ = keys.new_pair(tmp_path / "keys")
    key = keys.load_private(private)
    out = tmp_path / "b.tar.gz"
    raw = (RUN / "run.json").read_bytes()
    bundle.write(RUN, raw, json.loads(raw), parse(GOOD + _waiver("2026-12-10", "vfio/*")), key, out, NOW)
    return out, keys.load_public(public), key


def test_the_bundle_is_reproducible_and_checks(signed, tmp_path):
    out, public, key = signed
    again = tmp_path / "again.tar.gz"
    raw = (RUN / "run.json").read_bytes()
    bundle.write(RUN, raw, json.loads(raw), parse(GOOD + _waiver("2026-12-10", "vfio/*")), key, again, NOW)
    assert again.read_bytes() == out.read_bytes()
    checked = bundle.check(out, public, TODAY)
    assert checked.certified and checked.reasons == [] and checked.members == 13


def test_a_waiver_that_expired_since_certification_ends_it(signed):
    out, public, _ = signed
    later = bundle.check(out, public, dt.date(2026, 12, 11))
    assert later.verdict["certified"] and not later.certified
    assert later.reasons == ["since certification on 2026-12-02: waiver for vfio/* (https://example.com/1) "
                             "expired on 2026-12-10"]


def _hostile(path: Path, entries) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)


def _file(name: str, data: bytes = b"x") -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def _link(name: str) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
    return info, None


@pytest.mark.parametrize("entries, message", [
    ([_file("top/../../etc/x")], r"member 'top/\.\./\.\./etc/x' is not a file under the bundle's folder"),
    ([_file("/abs/x")], r"is not a file under the bundle's folder"),
    ([_file("top/a"), _file("other/b")], r"member 'other/b' is not a file under the bundle's folder top/"),
    ([_link("top/run/run.json")], r"member 'top/run/run.json' is not a regular file"),
    ([_file("top/a"), _file("top/a")], r"member a is in the tarball twice"),
    ([_file("top/run/run.json")], r"no MANIFEST.sha256 in the bundle"),
])
def test_a_hostile_tarball_is_invalid(tmp_path, signed, entries, message):
    bad = tmp_path / "hostile.tar.gz"
    _hostile(bad, entries)
    with pytest.raises(bundle.Invalid, match=message):
        bundle.check(bad, signed[1], TODAY)


def test_a_file_that_is_not_a_gzip_tarball_is_invalid(tmp_path, signed):
    bad = tmp_path / "x.tar.gz"
    bad.write_bytes(b"PK\x03\x04 a zip, say")
    with pytest.raises(bundle.Invalid, match=r"^not a readable gzip tarball"):
        bundle.check(bad, signed[1], TODAY)


def test_keys_are_ed25519_0600_and_never_overwritten(tmp_path):
    private, public, print_ = keys.new_pair(tmp_path)
    assert private.stat().st_mode & 0o777 == 0o600 and print_.startswith("SHA256:")
    assert keys.fingerprint(keys.load_public(public)) == print_
    with pytest.raises(UsageError, match=r"kvmconf-cert.key is already there"):
        keys.new_pair(tmp_path)
    os.chmod(private, 0o644)
    with pytest.raises(UsageError, match=r"^--key .*: permissions 0644 let others read the private key"):
        keys.load_private(private)
    with pytest.raises(UsageError, match=r"^--pubkey .*: not a PEM or OpenSSH public key"):
        keys.load_public(RUN / "junit.xml")


def test_every_capability_a_skip_names_is_declared():
    """Each Lack("NAME", ...) in the harness and the cases names a declared capability
    (GENERAL, a row's own, a CONFIG_ option), so PLATFORM.toml can allow it by name."""
    declared = set().union(*(features.get(f).capability_names for f in features.names()))
    found = {}
    for folder in ("harness", "testcases"):
        for path in (REPO / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Lack" and node.args:
                    first = node.args[0]
                    names = ([first.value] if isinstance(first, ast.Constant) else
                             [f"{w} in KVM" for w in ("SEV", "SEV-ES")] if isinstance(first, ast.JoinedStr) else [])
                    for name in names:
                        found[name] = path.name
    assert len(found) > 20
    undeclared = {n: p for n, p in found.items() if not missing.known(declared, n)}
    assert undeclared == {}


def test_certify_and_verify_refuse_bad_usage_in_one_line(tmp_path):
    from tests.conftest import kvmconf
    private, _, _ = keys.new_pair(tmp_path / "keys")
    done = kvmconf("certify", str(RUN), "--key", str(private))
    assert done.returncode == 2 and done.stderr == "kvmconf: certify needs --expect PLATFORM.toml (or --new-key DIR)\n"
    (tmp_path / "P.toml").write_text(GOOD.replace("cpu_family", "cpu_famly"))
    done = kvmconf("certify", str(RUN), "--expect", str(tmp_path / "P.toml"), "--key", str(private))
    assert done.returncode == 2 and done.stderr.startswith(f"kvmconf: --expect {tmp_path / 'P.toml'}: cpu_famly: not a key")
    done = kvmconf("certify", "--new-key", str(tmp_path / "keys"))
    assert done.returncode == 2 and done.stderr.endswith("kvmconf-cert.key is already there (kvmconf never overwrites a key)\n")
    done = kvmconf("verify", str(RUN / "junit.xml"), "--pubkey", str(tmp_path / "keys" / "kvmconf-cert.pub"))
    assert done.returncode == 2 and "not a certification bundle (not gzip)" in done.stderr


@pytest.mark.parametrize("name, data, message", [
    ("verdict.json", b"[]", r"^verdict.json: no judged_on date$"),
    ("run/run.json", b'{"schema": "kvmconf-run/1"}', r"^run/run.json: run_id: expected str"),
    ("PLATFORM.toml", b"schema = 2", r"^PLATFORM.toml: schema: 2, expected"),
    ("hashes.json", b"{}\n", r"^hashes.json does not match what run/run.json says$"),
    ("signer.json", b'{"fingerprint": "SHA256:someone-else"}', r"^signer.json names SHA256:someone-else, but SHA256:"),
])
def test_signed_members_that_do_not_hold_together_are_invalid(tmp_path, signed, name, data, message):
    out, public, key = signed
    bad = bundles.rewrite(out, tmp_path / "resigned.tar.gz", lambda m: m.update({name: data}), key)
    with pytest.raises(bundle.Invalid, match=message):
        bundle.check(bad, public, TODAY)


@pytest.mark.parametrize("path", sorted((REPO / "docs" / "platforms").glob("*.toml")), ids=lambda p: p.name)
def test_the_documented_example_platforms_load(path):
    expect = expectations.load(path)
    assert expect.name.startswith("Example: ") and "smoke" in expect.features


def test_a_live_target_reports_the_cpu_identity_the_host_probe_does():
    """The target's shell probe (what a --target local/ssh run records) and the host's
    own probe read the same family, model, stepping and microcode on this machine."""
    import subprocess

    from harness import probe
    shell = subprocess.run(["sh", "-c", probe.GUEST_SHELL_PROBE], capture_output=True, text=True, timeout=60)
    target = probe.parse_shell_probe(shell.stdout)
    host = probe.host_capabilities()
    keys_ = ("cpu_vendor", "cpu_family", "cpu_model_number", "cpu_stepping", "microcode")
    assert {k: target[k] for k in keys_} == {k: host[k] for k in keys_}
    assert isinstance(host["cpu_family"], int) and "cpuinfo" not in target
