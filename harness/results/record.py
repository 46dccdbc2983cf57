"""run.json: the run record of design section 5, rewritten atomically after each case."""
from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from harness.cache import atomic_write_bytes

SCHEMA = "kvmconf-run/1"
STATUSES = ("PASS", "FAIL", "ERROR", "SKIP", "MISS")


class RunRecord:
    def __init__(self, path: Path, run_id: str, label: str, harness: dict, profiles: dict,
                 profile_order: dict[str, tuple[str, ...]] | None = None):
        """`profiles`: the expected model profile per feature; `profile_order`: every
        profile of each feature's model, in the model's order (for the verdict)."""
        self.path = path
        self._profile_order = profile_order or {f: (p,) for f, p in profiles.items() if p}
        self.data: dict = {
            "schema": SCHEMA, "run_id": run_id,
            "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "label": label, "harness": harness, "profiles": profiles,
            "kernel": None, "platform": None,
            "summary": {s.lower(): 0 for s in STATUSES},
            "cases": [], "random": [], "findings": [],
            "profile_verdict": {f: None for f in profiles},
            "model_coverage": [],
            "timing": {"boot_to_ready_s": None, "total_s": None},
        }
        self._by_id: dict[str, dict] = {}
        # The first write that failed (a full disk, the folder gone): the run stops, the
        # last good run.json stays in place and the command ends with this one line.
        self.write_error: str | None = None
        # feature -> {"declared", "unreachable", "named", "random"}: model rule ids
        self._coverage: dict[str, dict] = {}

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
               divergence: dict | None = None, attempts: list[dict] | None = None,
               capability: str | None = None) -> None:
        """`attempts`: the earlier attempts of a retried case ({status, reason,
        duration_s}); the case's own fields are its last attempt's. `capability`: what
        a SKIP found missing (harness/missing.py), None when it names nothing."""
        assert status in STATUSES, status
        case = self._by_id[case_id]
        case.update(status=status, reason=reason, duration_s=round(duration_s, 3),
                    divergence=divergence)
        if status == "SKIP":
            case["capability"] = capability
        if attempts:
            case.update(retried=True, attempts=attempts + [{"status": status, "reason": reason,
                                                            "duration_s": round(duration_s, 3)}])
        self.write()

    def annotate(self, case_id: str, **fields) -> None:
        """Set `seed`, `reproduce` (e.g. the replay line of a shrunk script) or
        `explained_by` (the model profiles that explain what the case observed)."""
        unknown = set(fields) - {"seed", "reproduce", "explained_by"}
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

    def add_coverage(self, feature: str, kind: str, reached: set[str], declared: set[str],
                     unreachable: dict[str, str]) -> None:
        """Model rules a named case (kind "named") or the random scripts ("random") reached."""
        cov = self._coverage.setdefault(feature, {"declared": set(declared), "unreachable": dict(unreachable),
                                                  "named": set(), "random": set()})
        cov[kind] |= set(reached) & cov["declared"]
        self.write()

    def model_coverage(self) -> list[dict]:
        """run.json's model_coverage (design section 5): rules, named and random reach,
        the reachable rules neither reached, and the unreachable ones with their reason."""
        out = []
        for feature, cov in self._coverage.items():
            rules = cov["declared"] - set(cov["unreachable"])
            out.append({"feature": feature, "rules": len(rules), "named": len(cov["named"] & rules),
                        "random": len(cov["random"] & rules),
                        "unreached": sorted(rules - cov["named"] - cov["random"]),
                        "unreachable": dict(sorted(cov["unreachable"].items()))})
        return out

    def add_differential(self, feature: str, name: str, compared: int, implementations: list[str],
                         disagreements: dict[str, int], case_id: str, counts: dict | None = None) -> None:
        """run.json's `differentials`: independent implementations that decoded the same
        inputs (e.g. the kernel's instruction decoder, the model's and capstone), how many
        inputs, and the disagreements per class (each a FAIL or a finding of the case);
        `counts`, when given, says what the inputs held (e.g. packets per type, inputs
        compared three ways and two ways)."""
        entry = {"feature": feature, "name": name, "compared": compared, "implementations": implementations,
                 "disagreements": dict(disagreements), "case": case_id}
        if counts is not None:
            entry["counts"] = dict(counts)
        self.data.setdefault("differentials", []).append(entry)
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

    def profile_verdict(self) -> dict[str, str | None]:
        """Per feature, the model profile that explains every case of the run, or None.

        A case's evidence is `explained_by`; a PASS without it is explained by the
        expected profile, a SKIP by every profile (it observed nothing). A case that
        ERRORed, never ran, or FAILed with nothing any profile explains (a kernel
        report, a missing capability) leaves no profile that explains it."""
        verdict = {}
        for feature, expected in self.data["profiles"].items():
            order = self._profile_order.get(feature, (expected,) if expected else ())
            left = list(order)
            cases = [c for c in self.data["cases"] if c["feature"] == feature]
            for case in cases:
                if case["status"] == "SKIP":
                    continue
                if case["status"] in ("ERROR", "MISS"):
                    left = []
                elif "explained_by" in case:
                    left = [p for p in left if p in case["explained_by"]]
                elif case["status"] == "PASS":
                    left = [p for p in left if p == expected]
                else:
                    left = []
            ran = any(c["status"] != "SKIP" for c in cases)
            verdict[feature] = (expected if expected in left else left[0]) if left and ran else None
        return verdict

    def write(self) -> None:
        self.data["summary"] = self.summary()
        self.data["profile_verdict"] = self.profile_verdict()
        self.data["model_coverage"] = self.model_coverage()
        if self.write_error:
            return
        try:
            atomic_write_bytes(self.path, (json.dumps(self.data, indent=1) + "\n").encode())
        except OSError as e:
            self.write_error = f"--output {self.path.parent}: cannot write {self.path.name}: {e.strerror or e}"


def load(path: Path) -> dict:
    """Read and check a run.json; a one-line error names the file and the problem."""
    from harness.errors import UsageError
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise UsageError(f"{path}: no such run record") from None
    except json.JSONDecodeError as e:
        raise UsageError(f"{path}: not JSON ({e})") from None
    # Found by tests/test_parser_properties.py, each was a traceback: bytes that are not
    # UTF-8 (b"\x80"), a number past int's 4300-digit limit (ValueError), nesting past
    # json's stack (b"[" * 1990: RecursionError), JSON that is not an object (b"null").
    # OSError: a run.json that is a folder, say.
    except UnicodeDecodeError as e:
        raise UsageError(f"{path}: not UTF-8 text (byte {e.start}), not a run record") from None
    except (ValueError, RecursionError) as e:
        raise UsageError(f"{path}: not JSON ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    except OSError as e:
        raise UsageError(f"{path}: unreadable ({e.strerror or e})") from None
    if not isinstance(data, dict):
        kind = {list: "list", str: "string", int: "number", float: "number", bool: "boolean"}.get(
            type(data), "null")
        raise UsageError(f"{path}: not a run record (a JSON {kind}, not an object)")
    if data.get("schema") != SCHEMA:
        raise UsageError(f"{path}: schema {repr(data.get('schema'))[:80]}, expected {SCHEMA!r}")
    return data
