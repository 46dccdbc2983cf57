"""Compare run records case by case: what regressed, what got fixed, what else differs."""
from __future__ import annotations

from pathlib import Path

from harness.results.record import load

BAD = {"FAIL", "ERROR"}


def load_run(path: str | Path) -> dict:
    path = Path(path)
    return load(path / "run.json" if path.is_dir() else path)


def classify(before: str | None, after: str | None) -> str:
    if before is None:
        return "new"
    if after is None:
        return "removed"
    if before not in BAD and after in BAD:
        return "regressed"
    if before in BAD and after not in BAD and after != "MISS":
        return "fixed"
    if before in BAD and after in BAD:
        return "unchanged failure"
    return "unchanged" if before == after else "changed"


def context_differences(a: dict, b: dict) -> list[str]:
    """What differs between two runs besides the kernel: comparisons across these mislead."""
    found = []
    pa, pb = a.get("platform") or {}, b.get("platform") or {}
    for key in ("host_cpu", "accel", "qemu", "machine_profile"):
        if pa.get(key) != pb.get(key):
            found.append(f"platform.{key}: {pa.get(key)!r} vs {pb.get(key)!r}")
    if a.get("profiles") != b.get("profiles"):
        found.append(f"profiles: {a.get('profiles')} vs {b.get('profiles')}")
    if (a.get("harness") or {}).get("version") != (b.get("harness") or {}).get("version"):
        found.append(f"harness version: {a['harness'].get('version')} vs {b['harness'].get('version')}")
    if a.get("seed") != b.get("seed"):
        found.append(f"seed: {a.get('seed')} vs {b.get('seed')} (random op-scripts differ)")
    return found


def compare(runs: list[dict]) -> dict:
    """Per case: the status in each run and the change from the previous run."""
    ids: list[str] = []
    for run in runs:
        for case in run["cases"]:
            if case["id"] not in ids:
                ids.append(case["id"])
    table = []
    for cid in ids:
        cases = [next((c for c in run["cases"] if c["id"] == cid), None) for run in runs]
        states = [c["status"] if c else None for c in cases]
        changes = [classify(states[i - 1], states[i]) for i in range(1, len(states))]
        # An ERROR that was retried is the infrastructure flaking, not the kernel
        # regressing: listed apart (a FAIL is a verdict, retried or not).
        changes = ["flaky" if ch == "regressed" and states[i + 1] == "ERROR" and cases[i + 1].get("retried")
                   else ch for i, ch in enumerate(changes)]
        table.append({"id": cid, "statuses": states, "changes": changes,
                      "retried": [bool(c and c.get("retried")) for c in cases]})
    warnings = [f"{runs[i - 1]['run_id']} -> {runs[i]['run_id']}: {w}"
                for i in range(1, len(runs)) for w in context_differences(runs[i - 1], runs[i])]
    regressed = [row["id"] for row in table if "regressed" in row["changes"]]
    return {"runs": [{"run_id": r["run_id"], "label": r["label"], "kernel": r["kernel"]} for r in runs],
            "cases": table, "warnings": warnings, "regressed": regressed,
            "fixed": [row["id"] for row in table if "fixed" in row["changes"]],
            "flaky": [row["id"] for row in table if any(row["retried"]) or "flaky" in row["changes"]]}
