"""Check a run record against the contract of design section 5."""
from __future__ import annotations

from harness.results.record import SCHEMA, STATUSES

_TOP = {"schema": str, "run_id": str, "started": str, "label": str, "harness": dict,
        "profiles": dict, "kernel": dict, "platform": dict, "summary": dict, "cases": list,
        "random": list, "findings": list, "timing": dict}
_CASE = {"id": str, "feature": str, "status": str, "reason": str, "duration_s": (int, float),
         "reproduce": str}
_DIVERGENCE = ("step", "action", "field", "expected", "observed", "matches_profile")


def problems(record: dict) -> list[str]:
    """Every way `record` breaks the contract (empty when it keeps it)."""
    found = []
    for key, kind in _TOP.items():
        if not isinstance(record.get(key), kind):
            found.append(f"{key}: expected {kind.__name__}, got {type(record.get(key)).__name__}")
    if found:
        return found
    if record["schema"] != SCHEMA:
        found.append(f"schema: {record['schema']!r}")
    for key in ("kind", "version", "sha256", "source", "config_sha256", "series"):
        if key not in record["kernel"]:
            found.append(f"kernel.{key}: missing")
    for key in ("host_cpu", "accel", "qemu", "capabilities"):
        if key not in record["platform"]:
            found.append(f"platform.{key}: missing")
    for key in ("boot_to_ready_s", "total_s"):
        if key not in record["timing"]:
            found.append(f"timing.{key}: missing")
    counts = {s.lower(): 0 for s in STATUSES}
    for i, case in enumerate(record["cases"]):
        for key, kind in _CASE.items():
            if not isinstance(case.get(key), kind):
                found.append(f"cases[{i}].{key}: bad or missing")
        if case.get("status") not in STATUSES:
            found.append(f"cases[{i}].status: {case.get('status')!r}")
            continue
        counts[case["status"].lower()] += 1
        if not case["id"].startswith(case["feature"] + "/"):
            found.append(f"cases[{i}].id {case['id']!r} does not start with its feature")
        if "seed" not in case or "divergence" not in case:
            found.append(f"cases[{i}]: seed or divergence missing")
        elif case["divergence"] is not None:
            missing = [k for k in _DIVERGENCE if k not in case["divergence"]]
            if missing:
                found.append(f"cases[{i}].divergence: missing {missing}")
    if counts != record["summary"]:
        found.append(f"summary {record['summary']} does not count the cases {counts}")
    return found
