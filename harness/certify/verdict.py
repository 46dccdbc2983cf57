"""Whether a run meets a platform's expectations, and every reason it does not.

The verdict is a pure function of run.json, the expectations and the day it is
judged on (waivers expire), so `kvmconf verify` recomputes it rather than trusting
the bundle's verdict.json.
"""
from __future__ import annotations

import datetime as dt
import fnmatch

from harness.certify.expectations import Expectations, Waiver

SCHEMA = "kvmconf-verdict/1"


def platform_facts(record: dict) -> dict:
    """The run's platform fingerprint: the CPU the kernel under test's KVM ran on (a
    live target's own, else the host QEMU ran on), the QEMU, the host kernel, the accel."""
    platform = record["platform"]
    caps = platform.get("capabilities") or {}
    host = caps.get("host") or {}
    target = (record.get("target") or {}).get("kind", "qemu")
    live = target != "qemu"
    cpu = (caps.get("target") or {}) if live else host
    microcode = cpu.get("microcode")
    try:
        microcode = int(microcode, 0) if isinstance(microcode, str) else microcode
    except ValueError:
        microcode = None
    # a live target runs the kernel under test itself; QEMU's host keeps its own kernel
    host_kernel = record["kernel"].get("version") if live else (host.get("kernel") or "").split(" ")[0] or None
    return {"cpu_vendor": cpu.get("cpu_vendor"), "cpu_name": cpu.get("cpu_model"),
            "cpu_family": cpu.get("cpu_family"), "cpu_model": cpu.get("cpu_model_number"),
            "cpu_stepping": cpu.get("cpu_stepping"), "microcode": microcode,
            "qemu": platform.get("qemu"), "accel": platform.get("accel") or "none",
            "host_kernel": host_kernel, "target": target}


def fingerprint_mismatches(facts: dict, wanted: dict) -> list[str]:
    found = []
    if facts["cpu_vendor"] != wanted["cpu_vendor"]:
        found.append(f"platform fingerprint: CPU vendor {facts['cpu_vendor']}, the platform's is {wanted['cpu_vendor']}")
    for key, label in (("cpu_family", "family"), ("cpu_model", "model")):
        if key in wanted:
            low, high = wanted[key]
            shown = f"{low:#x}" if low == high else f"{low:#x}-{high:#x}"
            if facts[key] is None:
                found.append(f"platform fingerprint: the run recorded no CPU {label}; the platform's is {shown}")
            elif not low <= facts[key] <= high:
                found.append(f"platform fingerprint: CPU {label} {facts[key]:#x}, the platform's is {shown}")
    if "microcode_min" in wanted:
        if facts["microcode"] is None:
            found.append(f"platform fingerprint: the run recorded no microcode revision (/proc/cpuinfo), "
                         f"the platform needs {wanted['microcode_min']:#x} or later")
        elif facts["microcode"] < wanted["microcode_min"]:
            found.append(f"platform fingerprint: microcode {facts['microcode']:#x} is older than the "
                         f"platform's floor {wanted['microcode_min']:#x}")
    for key, label in (("qemu", "QEMU"), ("host_kernel", "host kernel")):
        if key in wanted and not fnmatch.fnmatchcase(facts[key] or "", wanted[key]):
            found.append(f"platform fingerprint: {label} {facts[key]!r} does not match {wanted[key]!r}")
    for key in ("accel", "target"):
        if key in wanted and facts[key] != wanted[key]:
            found.append(f"platform fingerprint: {key} {facts[key]}, the platform's is {wanted[key]}")
    return found


def _waiver_for(case_id: str, waivers: tuple[Waiver, ...], on: dt.date) -> Waiver | None:
    return next((w for w in waivers if not w.expired(on) and fnmatch.fnmatchcase(case_id, w.case)), None)


def judge(record: dict, expect: Expectations, on: dt.date) -> dict:
    """The verdict of `record` against `expect` judged on day `on` (JSON-ready)."""
    reasons: list[str] = []
    facts = platform_facts(record)
    reasons += fingerprint_mismatches(facts, expect.fingerprint)
    for waiver in expect.waivers:
        if waiver.expired(on):
            reasons.append(f"waiver for {waiver.case} ({waiver.issue}) expired on {waiver.expires.isoformat()}")
    # what ran must be pinned for the bundle to say it (hashes.json)
    if not record.get("payloads"):
        reasons.append("run.json pins no payload hashes (a run before kvmconf recorded them): run it again")
    if not record["harness"].get("sha256"):
        reasons.append("run.json pins no harness hash (harness.sha256): run it again")
    if record.get("interrupted"):
        reasons.append(f"the run was interrupted by {record['interrupted']}")
    cases = record["cases"]
    ran_features = set(record["profiles"]) | {c["feature"] for c in cases}
    required: dict[str, str] = {}       # case id -> the must_pass glob that requires it
    for feature, spec in expect.features.items():
        if feature not in ran_features:
            reasons.append(f"feature {feature} is required but the run did not select it")
            continue
        for glob in spec.must_pass:
            matched = [c["id"] for c in cases if fnmatch.fnmatchcase(c["id"], glob)]
            if not matched:
                reasons.append(f"required case {glob}: no such case in the run")
            for cid in matched:
                required.setdefault(cid, glob)
    waived, allowed = [], []
    for case in cases:
        cid, status = case["id"], case["status"]
        if status == "PASS":
            continue
        waiver = _waiver_for(cid, expect.waivers, on)
        if waiver:
            waived.append({"case": cid, "status": status, "waiver": waiver.case, "issue": waiver.issue,
                           "expires": waiver.expires.isoformat()})
            continue
        capability = case.get("capability")
        if cid in required:
            why = f" ({capability} missing)" if status == "SKIP" and capability else f": {case['reason']}"
            reasons.append(f"required case {cid} ({required[cid]}) is {status}, not PASS{why}")
        elif status == "SKIP":
            spec = expect.features.get(case["feature"])
            if capability and spec and capability in spec.allow_skip:
                allowed.append({"case": cid, "capability": capability})
            elif capability:
                reasons.append(f"unexpected SKIP of {cid}: {capability} missing, a capability "
                               f"{expect.name} must have")
            else:
                reasons.append(f"unexpected SKIP of {cid}: it names no missing capability ({case['reason']})")
        else:
            reasons.append(f"{cid} is {status}: {case['reason']}")
    passed = sum(1 for c in cases if c["id"] in required and c["status"] == "PASS")
    return {"schema": SCHEMA, "certified": not reasons, "platform": expect.name, "judged_on": on.isoformat(),
            "run_id": record["run_id"], "reasons": reasons, "waived": waived, "allowed_skips": allowed,
            "required": {"cases": len(required), "passed": passed}, "fingerprint": facts}
