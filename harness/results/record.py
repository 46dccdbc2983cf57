"""run.json: the run record of design section 5, rewritten atomically after each case."""
from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from harness.cache import atomic_write_bytes

SCHEMA = "kvmconf-run/1"
STATUSES = ("PASS", "FAIL", "ERROR", "SKIP", "MISS")


class RunRecord:
    def __init__(self, path: Path, run_id: str, label: str, harness: dict, profiles: dict):
        self.path = path
        self.data: dict = {
            "schema": SCHEMA, "run_id": run_id,
            "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "label": label, "harness": harness, "profiles": profiles,
            "kernel": None, "platform": None,
            "summary": {s.lower(): 0 for s in STATUSES},
            "cases": [], "random": [], "findings": [],
            "timing": {"boot_to_ready_s": None, "total_s": None},
        }
        self._by_id: dict[str, dict] = {}

    # -- cases ------------------------------------------------------------
    def plan(self, cases: list[tuple[str, str]], reproduce: str) -> None:
        """Every planned case starts as MISS, so a killed run is still a valid record."""
        for case_id, feature in cases:
            if case_id in self._by_id:
                continue
            case = {"id": case_id, "feature": feature, "status": "MISS",
                    "reason": "planned, not run", "duration_s": 0.0, "seed": None,
                    "reproduce": f"{reproduce} --case {case_id}", "divergence": None}
            self._by_id[case_id] = case
            self.data["cases"].append(case)
        self.write()

    def case(self, case_id: str) -> dict:
        return self._by_id[case_id]

    def finish(self, case_id: str, status: str, reason: str, duration_s: float,
               divergence: dict | None = None) -> None:
        assert status in STATUSES, status
        case = self._by_id[case_id]
        case.update(status=status, reason=reason, duration_s=round(duration_s, 3),
                    divergence=divergence)
        self.write()

    def annotate(self, case_id: str, **fields) -> None:
        """Set `seed` or `reproduce` of a case (e.g. the replay line of a shrunk script)."""
        unknown = set(fields) - {"seed", "reproduce"}
        if unknown:
            raise ValueError(f"annotate: unknown case fields {sorted(unknown)}")
        self._by_id[case_id].update(fields)
        self.write()

    # -- run-level data ------------------------------------------------------
    def set(self, key: str, value) -> None:
        self.data[key] = value
        self.write()

    def add_random(self, feature: str, seed: int, scripts: int, actions: int,
                   action_kinds: dict, diverged: int) -> None:
        self.data["random"].append({"feature": feature, "seed": seed, "scripts": scripts,
                                    "actions": actions, "action_kinds": dict(action_kinds),
                                    "diverged": diverged})
        self.write()

    def add_finding(self, id: str, feature: str, title: str, intended: str, observed: str,
                    mechanism: str, case_id: str) -> None:
        for finding in self.data["findings"]:
            if finding["id"] == id:
                if case_id not in finding["cases"]:
                    finding["cases"].append(case_id)
                break
        else:
            self.data["findings"].append({"id": id, "feature": feature, "title": title,
                                          "intended": intended, "observed": observed,
                                          "mechanism": mechanism, "cases": [case_id]})
        self.write()

    # -- output -------------------------------------------------------------
    def summary(self) -> dict:
        counts = {s.lower(): 0 for s in STATUSES}
        for case in self.data["cases"]:
            counts[case["status"].lower()] += 1
        return counts

    def exit_code(self) -> int:
        """1 on any FAIL; else 2 on any ERROR or MISS; else 0 (design section 5)."""
        counts = self.summary()
        if counts["fail"]:
            return 1
        return 2 if counts["error"] or counts["miss"] else 0

    def write(self) -> None:
        self.data["summary"] = self.summary()
        atomic_write_bytes(self.path, (json.dumps(self.data, indent=1) + "\n").encode())


def load(path: Path) -> dict:
    """Read and check a run.json; a one-line error names the file and the problem."""
    from harness.errors import UsageError
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise UsageError(f"{path}: no such run record") from None
    except json.JSONDecodeError as e:
        raise UsageError(f"{path}: not JSON ({e})") from None
    if data.get("schema") != SCHEMA:
        raise UsageError(f"{path}: schema {data.get('schema')!r}, expected {SCHEMA!r}")
    return data
