"""A mutation campaign: build each mutant kernel, run the features it touches, tally.

A mutant is KILLED when the run exits 1 (some case FAILs; those cases are the
killers), SURVIVED when it exits 0, and counted apart when it does not compile
(DROPPED) or the run itself broke (ERROR, exit 2). Every run record stays in
the campaign folder as evidence.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from harness.cache import atomic_write_bytes
from harness.kernel import build as kbuild


@dataclass
class MutantSpec:
    id: str
    feature: str
    patch: Path
    origin: str            # "generated" | "hand-written"
    description: str


@dataclass
class Outcome:
    spec: MutantSpec
    status: str            # KILLED | SURVIVED | DROPPED | ERROR
    killers: list[str] = field(default_factory=list)
    reason: str = ""
    seconds: float = 0.0

    def record(self) -> dict:
        return {"id": self.spec.id, "feature": self.spec.feature, "origin": self.spec.origin,
                "description": self.spec.description, "patch": str(self.spec.patch),
                "status": self.status, "killers": self.killers, "reason": self.reason,
                "seconds": round(self.seconds, 1)}


def run_one(spec: MutantSpec, source: Path, folder: Path, seed: int, progress) -> Outcome:
    start = time.monotonic()
    try:
        kbuild.build(source, [spec.patch], progress=lambda text: None)
    except kbuild.BuildFailed as e:
        return Outcome(spec, "DROPPED", reason=str(e).splitlines()[0], seconds=time.monotonic() - start)
    except Exception as e:  # a patch that no longer applies, a config drop: the mutant is unusable
        return Outcome(spec, "DROPPED", reason=f"{type(e).__name__}: {e}", seconds=time.monotonic() - start)
    out = folder / spec.id
    argv = [sys.executable, "-m", "harness.cli", "run", "--source", str(source), "--patch", str(spec.patch),
            "--features", spec.feature, "--suite", spec.feature, "--output", str(out), "--seed", str(seed),
            "--label", f"mutant {spec.id}", "--history", str(folder / "history.sqlite")]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=3600, start_new_session=True)
        code, stderr = done.returncode, done.stderr
    except subprocess.TimeoutExpired:
        code, stderr = 2, "run did not end within 3600 s"
    seconds = time.monotonic() - start
    try:
        cases = json.loads((out / "run.json").read_text())["cases"]
    except (OSError, ValueError):
        cases = []
    killers = [c["id"] for c in cases if c["status"] == "FAIL"]
    if code == 1:
        first = next(c for c in cases if c["status"] == "FAIL")
        return Outcome(spec, "KILLED", killers, first["reason"][:200], seconds)
    if code == 0:
        return Outcome(spec, "SURVIVED", [], "every case agreed with the model", seconds)
    last = [l for l in stderr.splitlines() if l.startswith("kvmconf:")] or stderr.splitlines()[-1:] or ["?"]
    return Outcome(spec, "ERROR", [], last[-1][:200], seconds)


def run_campaign(specs: list[MutantSpec], source: Path, folder: Path, seed: int, progress) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    outcomes: list[Outcome] = []
    report_path = folder / "mutants.json"

    def write() -> dict:
        counts = {s: sum(o.status == s for o in outcomes) for s in ("KILLED", "SURVIVED", "DROPPED", "ERROR")}
        report = {"source": str(source), "seed": seed, "planned": len(specs), "done": len(outcomes),
                  "counts": counts, "wall_s": round(time.monotonic() - started, 1),
                  "mutants": [o.record() for o in outcomes]}
        atomic_write_bytes(report_path, (json.dumps(report, indent=1) + "\n").encode())
        return report

    for index, spec in enumerate(specs, 1):
        progress(f"mutant {index}/{len(specs)} {spec.id}: {spec.description}")
        outcome = run_one(spec, source, folder, seed, progress)
        outcomes.append(outcome)
        progress(f"  {outcome.status} {', '.join(outcome.killers[:3])} {outcome.reason[:120]}")
        write()
    return write()
