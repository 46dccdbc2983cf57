"""A mutation campaign: the unmutated kernel first, then each mutant once, tallied.

Before any mutant, each feature's *base run* runs: the same `kvmconf run` a
mutant gets (same source, features, suite and seed) without a patch. It must be
green (exit 0, no FAIL or ERROR); otherwise the campaign stops, mutants.json says
`base: {"status": "RED", "cases": [...]}` and `BaseRed` names the first failing
case. Then every mutant is built and run once, and `verdict()` (the one
definition of killed, also used by ci/mutants.sh) compares its run with the base:

- KILLED: some case FAILs that does not FAIL on the base kernel (the killers),
  and, when the patch header says `profile_verdict NAME`, run.json's
  `profile_verdict[feature]` is NAME;
- WRONG-PROFILE: killed by a new FAIL, but the run's profile verdict is not the
  profile the patch names (not killed);
- SURVIVED: no case FAILs that the base does not FAIL;
- ERROR: the run broke (exit 2 with no new FAIL, no run record, a timeout), or a
  hand-written mutant does not build;
- DROPPED: a generated mutant that does not build (not counted either way).

Every run record stays in the campaign folder as evidence.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from harness import features
from harness.cache import atomic_write_bytes
from harness.errors import HarnessError, UsageError

STATUSES = ("KILLED", "SURVIVED", "WRONG-PROFILE", "DROPPED", "ERROR")
NOT_KILLED = ("SURVIVED", "WRONG-PROFILE")
RUN_TIMEOUT_S = 3600
_PROFILE = re.compile(r"\bprofile_verdict\s+([A-Za-z0-9_.-]+)")

# runner(argv) -> (exit code, last line of stderr): one `kvmconf run`
Runner = Callable[[list[str]], "tuple[int, str]"]


class BaseRed(HarnessError):
    """The unmutated kernel does not pass the suite: no mutant can be judged."""


@dataclass
class MutantSpec:
    id: str
    feature: str
    patch: Path
    origin: str            # "generated" | "hand-written"
    description: str
    expect_profile: str | None = None   # the patch header's `profile_verdict NAME`


@dataclass
class Outcome:
    spec: MutantSpec
    status: str            # one of STATUSES
    killers: list[str] = field(default_factory=list)
    reason: str = ""
    seconds: float = 0.0
    run: str | None = None
    profile_verdict: str | None = None

    def record(self) -> dict:
        return {"id": self.spec.id, "feature": self.spec.feature, "origin": self.spec.origin,
                "description": self.spec.description, "patch": str(self.spec.patch),
                "expect_profile": self.spec.expect_profile, "status": self.status,
                "killers": self.killers, "reason": self.reason, "profile_verdict": self.profile_verdict,
                "run": self.run, "seconds": round(self.seconds, 1)}


# -- the one definition of killed ---------------------------------------------------
def _one_line(text: str, limit: int = 200) -> str:
    return (str(text or "").strip().splitlines() or [""])[0][:limit]


def _case_text(case: dict) -> str:
    d = case.get("divergence")
    if d:
        return (f"{case['id']} step {d.get('step')} ({d.get('action')}): {d.get('field')} expected "
                f"{d.get('expected')}, observed {d.get('observed')}")
    return f"{case['id']}: {_one_line(case.get('reason'))}"


def _statuses(cases) -> dict[str, str]:
    if isinstance(cases, dict):
        return dict(cases)
    return {c["id"]: c["status"] for c in cases or ()}


def verdict(base_cases, mutant_run: dict | None, exit_code: int, expect_profile: str | None = None,
            feature: str | None = None, stderr: str = "") -> tuple[str, list[str], str]:
    """(status, killers, reason) of one mutant run against the base run.

    `base_cases` is the base run's cases (run.json's list, or id -> status);
    `mutant_run` the mutant's run.json (None: there is none); `exit_code` that of
    its `kvmconf run`; `expect_profile` the profile the patch names, checked
    against `profile_verdict[feature]` (feature: the run's only one when None).
    """
    if mutant_run is None:
        return "ERROR", [], f"no run record (exit {exit_code}{': ' + _one_line(stderr) if stderr else ''})"
    base = _statuses(base_cases)
    cases = mutant_run.get("cases") or []
    new = [c for c in cases if c.get("status") == "FAIL" and base.get(c.get("id")) != "FAIL"]
    if new:
        killers = [c["id"] for c in new]
        text = _case_text(new[0])
        if expect_profile is None:
            return "KILLED", killers, text[:300]
        verdicts = mutant_run.get("profile_verdict") or {}
        if feature is None:
            named = {c.get("feature") for c in cases} | set(verdicts)
            feature = next(iter(named)) if len(named) == 1 else None
        found = verdicts.get(feature) if feature else None
        if found == expect_profile:
            return "KILLED", killers, f"profile_verdict {feature}={found}; {text}"[:300]
        said = ("the run record has no profile_verdict" if "profile_verdict" not in mutant_run
                else f"profile_verdict {feature}={found if found is not None else 'null'}")
        return "WRONG-PROFILE", killers, f"the patch names profile {expect_profile}, {said}; {text}"[:300]
    fails = [c for c in cases if c.get("status") == "FAIL"]
    if exit_code == 0 or (exit_code == 1 and fails):
        if fails:
            return "SURVIVED", [], f"only the base kernel's own FAILs ({', '.join(c['id'] for c in fails[:3])})"
        return "SURVIVED", [], "every case agreed with the base kernel and the model"
    broken = [c for c in cases if c.get("status") in ("ERROR", "MISS")]
    why = _one_line(stderr) or (f"{broken[0]['id']} {broken[0]['status']}: {_one_line(broken[0].get('reason'))}"
                                if broken else "no FAIL in the run record")
    return "ERROR", [], f"run broke (exit {exit_code}): {why}"[:300]


def expected_profile(patch: Path) -> str | None:
    """The profile a hand-written mutant's header names (`profile_verdict NAME`), if any."""
    header = []
    for line in patch.read_text(errors="replace").splitlines():
        if line.startswith(("--- a/", "--- /dev/null", "diff --git ")):
            break
        header.append(line)
    m = _PROFILE.search("\n".join(header))
    return m.group(1).rstrip(".") if m else None


# -- running -----------------------------------------------------------------------
def run_kvmconf(argv: list[str]) -> tuple[int, str]:
    """One `kvmconf run` in its own session; (exit code, its last `kvmconf:` line)."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=RUN_TIMEOUT_S,
                              start_new_session=True)
    except subprocess.TimeoutExpired:
        return 2, f"run did not end within {RUN_TIMEOUT_S} s"
    lines = done.stderr.splitlines()
    last = [l for l in lines if l.startswith("kvmconf:")] or lines[-1:] or [""]
    return done.returncode, last[-1]


def run_argv(source: Path, patch: Path | None, feature: str, out: Path, seed: int, label: str,
             history: Path) -> list[str]:
    """The `kvmconf run` of the base (patch None) and of every mutant: only the patch differs."""
    argv = [sys.executable, "-m", "harness.cli", "run", "--source", str(source)]
    if patch is not None:
        argv += ["--patch", str(patch)]
    if features.get(feature).runs_on == "harness":
        # its mutants change only what the harness-side program compiles: its guest
        # cases (which run no code of those files) would only repeat the base's
        argv += ["--user-space-only"]
    return argv + ["--features", feature, "--suite", feature, "--output", str(out), "--seed", str(seed),
                   "--label", label, "--history", str(history)]


def _load_record(out: Path) -> dict | None:
    try:
        record = json.loads((out / "run.json").read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _fresh(out: Path) -> Path:
    # A stale record from an earlier campaign in the same folder must not be read as this run's.
    if out.exists():
        shutil.rmtree(out)
    return out


def run_base(feature: str, source: Path, folder: Path, seed: int, runner: Runner) -> dict:
    """The unmutated kernel's run of one feature: {feature, run, exit, status GREEN|RED, cases}."""
    out = _fresh(folder / f"base-{feature}")
    code, stderr = runner(run_argv(source, None, feature, out, seed, f"mutate base {feature}",
                                   folder / "history.sqlite"))
    record = _load_record(out)
    result = {"feature": feature, "run": str(out / "run.json"), "exit": code, "status": "GREEN", "cases": []}
    if record is None:
        result.update(status="RED", cases=[{"id": f"{feature} (no run record)", "status": "ERROR",
                                           "reason": f"exit {code}: {_one_line(stderr) or 'no stderr'}"}])
        return result
    bad = [c for c in record.get("cases") or [] if c.get("status") in ("FAIL", "ERROR", "MISS")]
    bad.sort(key=lambda c: ("FAIL", "ERROR", "MISS").index(c["status"]))
    result["cases"] = [{"id": c["id"], "status": c["status"], "reason": _one_line(c.get("reason"), 300)}
                       for c in bad]
    result["base_cases"] = {c["id"]: c["status"] for c in record.get("cases") or []}
    if code != 0 or bad:
        result["status"] = "RED"
        if not bad:
            result["cases"] = [{"id": f"{feature} (run)", "status": "ERROR",
                                "reason": f"exit {code}: {_one_line(stderr) or 'no failing case recorded'}"}]
    return result


def run_one(spec: MutantSpec, base_cases: dict, source: Path, folder: Path, seed: int,
            runner: Runner, builder) -> Outcome:
    start = time.monotonic()
    unbuildable = "ERROR" if spec.origin == "hand-written" else "DROPPED"
    try:
        (builder or _builder_for(spec.feature))(source, [spec.patch])
    except HarnessError as e:  # BuildFailed, a patch that does not apply, a config drop
        return Outcome(spec, unbuildable, reason=f"does not build: {_one_line(e)}",
                       seconds=time.monotonic() - start)
    except Exception as e:  # noqa: BLE001 - the mutant is unusable, the campaign goes on
        return Outcome(spec, unbuildable, reason=f"does not build: {type(e).__name__}: {_one_line(e)}",
                       seconds=time.monotonic() - start)
    out = _fresh(folder / spec.id)
    code, stderr = runner(run_argv(source, spec.patch, spec.feature, out, seed, f"mutant {spec.id}",
                                   folder / "history.sqlite"))
    record = _load_record(out)
    status, killers, reason = verdict(base_cases, record, code, spec.expect_profile, spec.feature, stderr)
    found = ((record or {}).get("profile_verdict") or {}).get(spec.feature)
    return Outcome(spec, status, killers, reason, time.monotonic() - start, str(out / "run.json"), found)


def _build(source: Path, patches: list[Path]) -> None:
    from harness.kernel import build as kbuild
    kbuild.build(source, patches, progress=lambda text: None)


def _build_user_space(feature: str):
    """For a feature that compiles the kernel's own code into a user-space program: build
    that program from the patched source (no kernel build; its run boots nothing)."""
    def build(source: Path, patches: list[Path]) -> None:
        import tempfile

        from harness.kernel import build as kbuild
        from harness.kernel import patches as patchlib
        from harness.kernel.source import patched_view
        with tempfile.TemporaryDirectory(prefix="kvmconf-mutant-") as tmp:
            tree = patched_view(kbuild.pristine_tree(source)[0], [patchlib.load(p) for p in patches], Path(tmp))
            features.get(feature).build_payload(tree)
    return build


def _builder_for(feature: str):
    return _build_user_space(feature) if features.get(feature).runs_on == "harness" else _build


def base_line(base: dict) -> str:
    """The one line that says why the campaign did not start."""
    case = base["cases"][0]
    return f"base kernel is red: {case['id']}: {case['reason'] or case['status']} (run record: {base['run']})"


def run_campaign(specs: list[MutantSpec], source: Path, folder: Path, seed: int, progress,
                 runner: Runner | None = None, builder=None) -> dict:
    """Base runs, then each mutant once; mutants.json after every step. Raises BaseRed.

    `runner` runs one `kvmconf run` argv (default: run_kvmconf, a subprocess) and
    `builder(source, [patch])` builds a mutant (default: the cached kernel build, or for a
    feature that compiles the kernel's code in user space, that program).
    """
    runner = runner or run_kvmconf
    folder.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    outcomes: list[Outcome] = []
    report_path = folder / "mutants.json"
    features = list(dict.fromkeys(s.feature for s in specs))
    base = {"status": "PENDING", "runs": [], "cases": []}

    def write() -> dict:
        counts = {s: sum(o.status == s for o in outcomes) for s in STATUSES}
        report = {"source": str(source), "seed": seed, "features": features, "base": base,
                  "planned": len(specs), "done": len(outcomes), "counts": counts,
                  "wall_s": round(time.monotonic() - started, 1), "mutants": [o.record() for o in outcomes]}
        atomic_write_bytes(report_path, (json.dumps(report, indent=1) + "\n").encode())
        return report

    write()
    base_cases: dict[str, dict] = {}
    for feature in features:
        progress(f"base {feature}: the unmutated kernel ({source.name}, seed {seed})")
        result = run_base(feature, source, folder, seed, runner)
        base_cases[feature] = result.pop("base_cases", {})
        base["runs"].append(result)
        if result["status"] == "RED":
            base.update(status="RED", cases=result["cases"], run=result["run"])
            write()
            raise BaseRed(base_line(base))
        progress(f"  base {feature} GREEN ({len(base_cases[feature])} cases)")
    base["status"] = "GREEN"
    write()

    for index, spec in enumerate(specs, 1):
        progress(f"mutant {index}/{len(specs)} {spec.id}: {spec.description}")
        outcome = run_one(spec, base_cases[spec.feature], source, folder, seed, runner, builder)
        outcomes.append(outcome)
        progress(f"  {outcome.status} {', '.join(outcome.killers[:3])} {outcome.reason[:160]}")
        write()
    return write()


def exit_code(report: dict) -> tuple[int, str | None]:
    """0 every mutant killed (or dropped), 1 one is not killed, 2 one broke; and the line to say."""
    counts = report["counts"]
    not_killed = sum(counts.get(s, 0) for s in NOT_KILLED)
    if not_killed:
        parts = [f"{counts[s]} {s.lower().replace('-', ' ')}" for s in NOT_KILLED if counts.get(s)]
        return 1, f"{not_killed} mutant(s) not killed ({', '.join(parts)})"
    if counts.get("ERROR"):
        first = next(m for m in report["mutants"] if m["status"] == "ERROR")
        return 2, f"{counts['ERROR']} mutant run(s) broke; first {first['id']}: {first['reason']}"
    return 0, None


def hand_written(feature: str, patches: list[Path]) -> list[MutantSpec]:
    """Specs of hand-written mutant patches, each with the profile its header names (checked)."""
    from harness import features as registry
    specs = []
    for patch in patches:
        if not patch.is_file():
            raise UsageError(f"--patch {patch}: no such file")
        profile = expected_profile(patch)
        if profile is not None:
            known = registry.get(feature).profiles
            if known and profile not in known:
                raise UsageError(f"{patch}: header names profile_verdict {profile!r}, not a {feature} "
                                 f"profile (known: {', '.join(known)})")
        specs.append(MutantSpec(f"{feature}-hand-{patch.stem}", feature, patch, "hand-written", patch.stem,
                                profile))
    return specs
