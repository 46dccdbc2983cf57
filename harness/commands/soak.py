"""`kvmconf soak`: boot, a short case set and shutdown, again and again, each cycle a
real `kvmconf run` in its own process; afterwards the cycles done, the failures by
kind, the QEMU processes and temporary folders a cycle left behind, and the peak
memory of the runs (design: an unattended lab runs kvmconf for months)."""
from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from harness import tmpdirs
from harness.commands import argtypes as t
from harness.commands.common import REPO, err, out, output_dir
from harness.errors import UsageError
from harness.machine import qemu_pids_writing_to

CYCLE_TIMEOUT_S = 600.0


def add_soak_options(p) -> None:
    p.add_argument("--minutes", type=t.positive_float, default=30.0, help="how long to go on (default 30)")
    p.add_argument("--cycles", type=t.positive_int, help="stop after this many cycles (default: as many as fit)")
    p.add_argument("--case", action="append", default=[], type=t.case_pattern,
                   help="case id or glob of each cycle; repeatable (default: the smoke suite)")
    p.add_argument("--kernel", type=t.bzimage, help="bzImage of the kernel under test (default: Debian's package)")
    p.add_argument("--modules", type=t.existing_dir, help="its modules: lib/modules/<version> or a root containing it")
    p.add_argument("--output", type=t.output_folder, help="soak folder (default: results/soak-<time>)")
    p.add_argument("--db", type=t.db_url,
                   help="the cycles' history store, postgresql://... (default: SQLite in the soak folder)")


def _cycle(n: int, args, folder: Path) -> dict:
    """One `kvmconf run` with a deadline; what it recorded and what it left behind."""
    argv = [sys.executable, "-m", "harness.cli", "run", "--output", str(folder / f"cycle-{n:04d}"),
            *(("--db", args.db) if args.db else ("--history", str(folder / "history.sqlite"))),
            "--label", f"soak cycle {n}",
            "--retries", "0"]      # a soak counts every ERROR: a retry would hide a flake
    argv += [w for case in args.case for w in ("--case", case)] or ["--suite", "smoke"]
    for flag in ("kernel", "modules"):
        if getattr(args, flag):
            argv += [f"--{flag}", getattr(args, flag)]
    cycle_out = folder / f"cycle-{n:04d}"
    started = time.monotonic()
    with open(folder / f"cycle-{n:04d}.stderr", "w") as stderr:
        proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.DEVNULL, stderr=stderr,
                                start_new_session=True)
        try:
            code = proc.wait(timeout=CYCLE_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
            code = None
    result = {"cycle": n, "exit": code, "seconds": round(time.monotonic() - started, 1),
              "failures": [], "leaked_processes": [], "leaked_files": []}
    if code is None:
        result["failures"].append(f"hang: no end within {CYCLE_TIMEOUT_S:.0f} s (killed)")
    try:
        record = json.loads((cycle_out / "run.json").read_text())
        result["peak_rss_mib"] = record["timing"].get("peak_rss_mib")
        for case in record["cases"]:
            if case["status"] != "PASS":
                result["failures"].append(f"{case['status']} {case['id']}: {case['reason'][:160]}")
    except (OSError, ValueError, KeyError) as e:
        result["failures"].append(f"no valid run.json ({type(e).__name__}: {e})")
    time.sleep(0.5)     # a QEMU being reaped
    result["leaked_processes"] = [f"qemu pid {pid}" for pid in qemu_pids_writing_to(cycle_out)]
    result["leaked_files"] = [str(p) for p in tmpdirs.owned_by(proc.pid)]
    return result


def failure_kind(text: str) -> str:
    """A failure's kind: its status and the reason's first words, numbers dropped."""
    words = [w for w in text.split(":")[0].split() if not any(ch.isdigit() for ch in w)]
    return " ".join(words[:3])


def cmd_soak(args) -> int:
    if args.minutes <= 0 or (args.cycles is not None and args.cycles <= 0):
        raise UsageError(f"--minutes {args.minutes} / --cycles {args.cycles}: must be above 0")
    folder = output_dir(Path(args.output) if args.output else
                        REPO / "results" / time.strftime("soak-%Y%m%d-%H%M%S"))
    tmpdirs.reclaim()
    before_tmp = set(Path(os.environ.get("TMPDIR", "/tmp")).glob(tmpdirs.PREFIX + "*"))
    end = time.monotonic() + args.minutes * 60
    cycles: list[dict] = []
    summary: dict = {}
    while time.monotonic() < end and (args.cycles is None or len(cycles) < args.cycles):
        cycles.append(_cycle(len(cycles) + 1, args, folder))
        last = cycles[-1]
        err.print(f"[dim]cycle {last['cycle']}: exit {last['exit']}, {last['seconds']} s, "
                  f"{len(last['failures'])} failures[/dim]")
        kinds = Counter(failure_kind(f) for c in cycles for f in c["failures"])
        summary = {
            "cycles": len(cycles), "minutes": round(sum(c["seconds"] for c in cycles) / 60, 1),
            "clean_cycles": sum(not c["failures"] for c in cycles),
            "failures_by_kind": dict(kinds),
            "leaked_processes": sum(len(c["leaked_processes"]) for c in cycles),
            "leaked_files": sum(len(c["leaked_files"]) for c in cycles),
            # each run's own peak (run.json timing.peak_rss_mib; RUSAGE_CHILDREN would
            # be QEMU's), the first and the last, to show growth; and this command's
            "peak_rss_mib_run": max((c.get("peak_rss_mib") or 0 for c in cycles), default=0),
            "peak_rss_mib_first_last": [cycles[0].get("peak_rss_mib"), cycles[-1].get("peak_rss_mib")],
            "peak_rss_mib_soak": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        }
        (folder / "soak.json").write_text(json.dumps({"summary": summary, "cycles": cycles}, indent=1) + "\n")
    new_tmp = sorted(str(p) for p in set(Path(os.environ.get("TMPDIR", "/tmp")).glob(tmpdirs.PREFIX + "*"))
                     - before_tmp if tmpdirs.owner_alive(p) is not True)
    summary["temporary_folders_left"] = new_tmp
    (folder / "soak.json").write_text(json.dumps({"summary": summary, "cycles": cycles}, indent=1) + "\n")
    out.print(" ".join(f"{k}={v}" for k, v in summary.items() if k != "failures_by_kind"), markup=False)
    for kind, count in summary.get("failures_by_kind", {}).items():
        out.print(f"  {count} x {kind}", markup=False)
    err.print(f"soak record: {folder / 'soak.json'}")
    clean = summary and summary["clean_cycles"] == summary["cycles"] and not (
        summary["leaked_processes"] or summary["leaked_files"] or new_tmp)
    return 0 if clean else 2
