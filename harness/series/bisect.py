"""Bisect within a series: which patch first changes a case's verdict.

Prefix k of the series is patches 1..k on the source (prefix 0 is the bare
source). Each probed prefix is a cached incremental build plus a real run of
the chosen cases, whose run record stays as evidence. For each case the
search is a binary search for the first prefix whose status differs from
prefix 0's, assuming the change persists once it appears.
"""
from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from harness.errors import HarnessError


@dataclass
class Probe:
    prefix: int
    statuses: dict[str, str]
    record: Path


def run_prefix(prefix: int, source: Path, series: Path, revision: int | None, cases: list[str],
               folder: Path, seed: int) -> Probe:
    out = folder / f"prefix-{prefix}"
    argv = [sys.executable, "-m", "harness.cli", "run", "--source", str(source), "--output", str(out),
            "--seed", str(seed), "--label", f"bisect prefix {prefix}", "--history", str(folder / "history.sqlite")]
    if prefix:
        argv += ["--series", str(series), "--series-prefix", str(prefix)]
        if revision is not None:
            argv += ["--revision", str(revision)]
    for case in cases:
        argv += ["--case", case]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=7200, start_new_session=True)
    try:
        record = json.loads((out / "run.json").read_text())
    except (OSError, ValueError):
        raise HarnessError(f"bisect: prefix {prefix} left no run record: "
                           f"{(done.stderr.strip().splitlines() or ['?'])[-1]}") from None
    if done.returncode == 2 and not record["cases"]:
        raise HarnessError(f"bisect: prefix {prefix}: {(done.stderr.strip().splitlines() or ['?'])[-1]}")
    return Probe(prefix, {c["id"]: c["status"] for c in record["cases"]}, out / "run.json")


def first_changes(total: int, cases: list[str], probe) -> dict[str, int | None]:
    """For each case, the first prefix (1..total) whose status differs from prefix 0, or None.

    `probe(k)` returns the statuses at prefix k; it is called at most once per k.
    """
    seen: dict[int, dict[str, str]] = {}

    def at(k: int) -> dict[str, str]:
        if k not in seen:
            seen[k] = probe(k)
        return seen[k]

    result: dict[str, int | None] = {}
    for case in cases:
        base = at(0).get(case)
        if at(total).get(case) == base:
            result[case] = None
            continue
        low, high = 0, total   # status(low) == base, status(high) != base
        while high - low > 1:
            mid = (low + high) // 2
            if at(mid).get(case) == base:
                low = mid
            else:
                high = mid
        result[case] = high
    return result
