"""End to end: a real run (Debian's kernel in QEMU) certified, bundled, signed and
verified with the real command line; each way a bundle can be wrong or a platform
unmet is refused with its one-line reason (issue 17's acceptance)."""
from __future__ import annotations

import json
import re
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests import bundles
from tests.conftest import kvmconf, load_run

pytestmark = pytest.mark.e2e

# PASSes (smoke, a few KVM feature-MSR rules in the guest) and SKIPs naming their capability
# (no Intel CPU for PEBS via PT, no SEV for SEV-ES on this AMD host's emulated guest).
CASES = ("smoke/*", "pebs_pt/absent/cpuid-*", "pebs_pt/hardware/*", "sev_es/hardware/*")


def platform_toml(record: dict, **change) -> str:
    """Expectations this machine meets (its CPU as the run recorded it), with `change`
    applied: family, allow_intel_skip, must_pass_extra, waiver_expires."""
    host = record["platform"]["capabilities"]["host"]
    family = change.get("family", host["cpu_family"])
    allow = '"Intel CPU"' if change.get("allow_intel_skip", True) else ""
    extra = change.get("must_pass_extra", "")
    expires = change.get("waiver_expires", "2099-12-31")
    return f"""
schema = "kvmconf-platform/1"
name = "kvmconf CI: {host['cpu_model']} under {record['platform']['accel']}"

[fingerprint]
cpu_vendor = "{host['cpu_vendor']}"
cpu_family = {family}
cpu_model = [0, 255]
qemu = "QEMU emulator version *"
target = "qemu"

[features.smoke]
must_pass = ["smoke/*"{extra}]

[features.pebs_pt]
must_pass = ["pebs_pt/absent/cpuid-*"]
allow_skip = [{allow}]

[features.sev_es]
allow_skip = ["SEV"]

[[waivers]]
case = "vfio/migration/*"
reason = "no vfio-pci variant driver with migration on this platform"
issue = "https://example.com/kvmconf/issues/17"
expires = {expires}
"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory, debian_kernel):
    """One real run, a key pair and a certified bundle of it."""
    root = tmp_path_factory.mktemp("certify")
    run = root / "run"
    args = [a for case in CASES for a in ("--case", case)]
    done = kvmconf("run", *args, "--output", str(run), "--label", "certify e2e")
    assert done.returncode == 0, done.stderr[-2000:]
    keys = root / "keys"
    made = kvmconf("certify", "--new-key", str(keys))
    assert made.returncode == 0, made.stderr
    record = load_run(run)
    good = root / "PLATFORM.toml"
    good.write_text(platform_toml(record))
    bundle = root / "bundle.tar.gz"
    done = kvmconf("certify", str(run), "--expect", str(good), "--key", str(keys / "kvmconf-cert.key"),
                   "--output", str(bundle))
    return {"root": root, "run": run, "record": record, "key": keys / "kvmconf-cert.key",
            "pub": keys / "kvmconf-cert.pub", "bundle": bundle, "certify": done, "keys_out": made.stdout}


def verify(bundle: Path, pub: Path) -> subprocess.CompletedProcess:
    return kvmconf("verify", str(bundle), "--pubkey", str(pub))


def test_a_real_run_certifies_and_verifies(lab, tmp_path):
    record, done = lab["record"], lab["certify"]
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("CERTIFIED: run " + record["run_id"])
    assert oct(lab["key"].stat().st_mode & 0o777) == "0o600"
    # the SKIPs name what is missing, and the platform accepts exactly those
    skipped = {c["id"]: c.get("capability") for c in record["cases"] if c["status"] == "SKIP"}
    assert set(skipped.values()) == {"Intel CPU", "SEV"} and len(skipped) == 7
    assert record["payloads"]["pebs_pt_absent"] and re.fullmatch(r"[0-9a-f]{64}", record["harness"]["sha256"])
    checked = verify(lab["bundle"], lab["pub"])
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.startswith("CERTIFIED") and "signature by SHA256:" in checked.stdout
    with tarfile.open(lab["bundle"]) as tar:
        names = {m.name.split("/", 1)[1] for m in tar}
        verdict = json.load(tar.extractfile(next(m for m in tar if m.name.endswith("/verdict.json"))))
    assert {"run/run.json", "run/all.serial.log", "run/all.qmp.log", "run/junit.xml", "PLATFORM.toml",
            "platform.json", "hashes.json", "verdict.json", "signer.json", "MANIFEST.sha256",
            "MANIFEST.sha256.sig"} <= names
    assert verdict["certified"] and verdict["reasons"] == [] and verdict["run_id"] == record["run_id"]
    assert {s["capability"] for s in verdict["allowed_skips"]} == {"Intel CPU", "SEV"}
    assert verdict["required"]["cases"] == verdict["required"]["passed"] > 7
    # a customer without kvmconf: sha256sum checks the members, openssl the signature
    with tarfile.open(lab["bundle"]) as tar:
        tar.extractall(tmp_path, filter="data")
    (folder,) = tmp_path.iterdir()
    sums = subprocess.run(["sha256sum", "--check", "--strict", "MANIFEST.sha256"], cwd=folder,
                          capture_output=True, text=True, timeout=60)
    assert sums.returncode == 0, sums.stdout + sums.stderr
    sig = subprocess.run(["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", str(lab["pub"]), "-rawin",
                          "-in", "MANIFEST.sha256", "-sigfile", "MANIFEST.sha256.sig"], cwd=folder,
                         capture_output=True, text=True, timeout=60)
    assert "Signature Verified Successfully" in sig.stdout, sig.stdout + sig.stderr


def _edit_json(name, edit):
    def change(members):
        data = json.loads(members[name])
        edit(data)
        members[name] = (json.dumps(data, indent=1, sort_keys=True) + "\n").encode()
    return change


def _signing_key(lab):
    from cryptography.hazmat.primitives import serialization
    return serialization.load_pem_private_key(lab["key"].read_bytes(), password=None)


def _pass_everything(record):
    for case in record["cases"]:
        case.update(status="PASS", reason="")


# kind -> (the edit, whether it is signed again with the real key, the one line verify prints)
TAMPERING = {
    "member-changed": (_edit_json("run/run.json", _pass_everything), False,
                       r"member run/run\.json changed after signing"),
    "member-added": (lambda m: m.update({"run/extra.log": b"added later\n"}), False,
                     r"member run/extra\.log is not in the signed MANIFEST\.sha256 \(added after signing\)"),
    "member-removed": (lambda m: m.pop("run/all.serial.log"), False,
                       r"member run/all\.serial\.log is listed in MANIFEST\.sha256 but missing"),
    "manifest-edited": (lambda m: m.update({"MANIFEST.sha256": m["MANIFEST.sha256"].replace(
        b"verdict.json", b"verdict.jsoN")}), False, r"signature: MANIFEST\.sha256 is not signed by --pubkey's key"),
    "verdict-forged-and-resigned": (_edit_json("verdict.json", lambda v: v.update(reasons=["forged"])), True,
                                    r"verdict\.json does not follow from run/run\.json and PLATFORM\.toml"),
    "run-json-forged-and-resigned": (
        _edit_json("run/run.json", lambda r: r["cases"][0].update(status="FAIL")), True,
        r"(platform|hashes)\.json does not match|verdict\.json does not follow|run/run\.json: summary"),
}


@pytest.mark.parametrize("kind", list(TAMPERING))
def test_a_tampered_bundle_is_invalid(lab, tmp_path, kind):
    change, resign, message = TAMPERING[kind]
    bad = bundles.rewrite(lab["bundle"], tmp_path / "bad.tar.gz", change, _signing_key(lab) if resign else None)
    done = verify(bad, lab["pub"])
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"kvmconf: {bad}: invalid bundle: "), done.stderr
    assert re.search(message, lines[0]), lines[0]


def test_a_wrong_public_key_is_refused(lab, tmp_path):
    other = kvmconf("certify", "--new-key", str(tmp_path / "other"))
    assert other.returncode == 0
    done = verify(lab["bundle"], tmp_path / "other" / "kvmconf-cert.pub")
    assert done.returncode == 2
    assert re.fullmatch(r"kvmconf: \S+: invalid bundle: signature: the bundle says it was signed by "
                        r"SHA256:\S+, not by --pubkey's key SHA256:\S+\n", done.stderr), done.stderr


UNMET = {
    "expired-waiver": ({"waiver_expires": "2026-01-31"},
                       r"waiver for vfio/migration/\* \(https://example.com/kvmconf/issues/17\) expired on 2026-01-31"),
    "required-case-missing": ({"must_pass_extra": ', "smoke/suspend-resume"'},
                              r"required case smoke/suspend-resume: no such case in the run"),
    "skip-of-a-must-have-capability": ({"allow_intel_skip": False},
                                       r"unexpected SKIP of pebs_pt/hardware/records-basic: Intel CPU missing, "
                                       r"a capability .* must have"),
    "fingerprint-mismatch": ({"family": 0x17},
                             r"platform fingerprint: CPU family 0x[0-9a-f]+, the platform's is 0x17"),
}


@pytest.mark.parametrize("kind", list(UNMET))
def test_an_unmet_platform_gets_a_bundle_marked_not_certified(lab, tmp_path, kind):
    change, reason = UNMET[kind]
    expect = tmp_path / "PLATFORM.toml"
    expect.write_text(platform_toml(lab["record"], **change))
    bundle = tmp_path / "b.tar.gz"
    done = kvmconf("certify", str(lab["run"]), "--expect", str(expect), "--key", str(lab["key"]),
                   "--output", str(bundle))
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stdout.startswith("NOT CERTIFIED") and re.search(r"  - " + reason, done.stdout), done.stdout
    reasons = [line for line in done.stdout.splitlines() if line.startswith("  - ")]
    assert len(reasons) == (4 if kind == "skip-of-a-must-have-capability" else 1), reasons
    checked = verify(bundle, lab["pub"])
    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert checked.stdout.startswith("NOT CERTIFIED") and re.search(reason, checked.stdout)
