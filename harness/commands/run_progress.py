"""What `kvmconf run` shows while it runs: a progress bar on a terminal (cases done of
planned, the current case and feature, elapsed, the remaining time estimated from the
history's durations of the same cases), plain lines in a CI log, nothing with --quiet,
and with --json one JSON line per finished case on stdout (the summary line follows)."""
from __future__ import annotations

import json
import sys

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

MODES = ("bar", "lines", "quiet", "json")


def choose_mode(quiet: bool, as_json: bool, stream) -> str:
    if as_json:
        return "json"
    if quiet:
        return "quiet"
    return "bar" if stream.isatty() else "lines"


class RunProgress:
    """Called with a note (booting, retry) or told of the plan and of each case."""

    def __init__(self, mode: str, console, estimates: dict[str, float] | None = None):
        self.mode, self.console = mode, console
        self._stdout = sys.stdout     # the real one: pytest's output is redirected to its log
        self.estimates = estimates or {}      # case id -> seconds, from the history
        self._planned: list[str] = []
        self._done: dict[str, float] = {}
        self._bar: Progress | None = None
        self._task = None

    # -- notes -------------------------------------------------------------
    def __call__(self, text: str) -> None:
        if self.mode == "lines":
            self.console.print(f"[dim]{text}[/dim]")
        elif self.mode == "bar" and self._bar is not None:
            self._bar.update(self._task, note=text)
        elif self.mode == "bar":
            self.console.print(f"[dim]{text}[/dim]")

    # -- cases -------------------------------------------------------------
    def planned(self, case_ids: list[str]) -> None:
        self._planned = list(case_ids)
        if self.mode == "bar" and self._planned:
            self._bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), TextColumn("~{task.fields[left]} left"),
                                 TextColumn("[dim]{task.fields[note]}"), console=self.console, transient=True)
            self._bar.start()
            self._task = self._bar.add_task("starting", total=len(self._planned), left=self._left(), note="")

    def started(self, case_id: str) -> None:
        if self.mode == "lines":
            self.console.print(f"[dim]running {case_id}[/dim]")
        elif self._bar is not None:
            self._bar.update(self._task, description=f"{case_id.split('/', 1)[0]}: {case_id}", note="")

    def finished(self, case_id: str, status: str, reason: str, duration_s: float) -> None:
        self._done[case_id] = duration_s
        if self.mode == "lines":
            self.console.print(f"[dim]{status:5} {case_id}[/dim]")
        elif self.mode == "json":
            print(json.dumps({"case": case_id, "status": status, "reason": reason,
                              "duration_s": round(duration_s, 3)}), file=self._stdout, flush=True)
        elif self._bar is not None:
            self._bar.update(self._task, advance=1, left=self._left())

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def _left(self) -> str:
        """Seconds left: each planned case not done yet at its history mean, or at the
        mean of this run's cases so far when the history has none."""
        mean = (sum(self._done.values()) / len(self._done)) if self._done else 10.0
        left = sum(self.estimates.get(c, mean) for c in self._planned if c not in self._done)
        return f"{int(left // 60)}m{int(left % 60):02d}s"


def history_estimates(where) -> dict[str, float]:
    """Mean duration of each case over the history store's last 20 runs (SQLite path or
    PostgreSQL URL, as `run` appends to); {} when the store cannot be read: the estimate
    then comes from this run's own cases."""
    from harness.errors import HarnessError
    from harness.results import history
    try:
        store = history.open_store(where)
        try:
            rows = store.recent_cases(20)
        finally:
            store.close()
    except (HarnessError, OSError):
        return {}
    spent: dict[str, list[float]] = {}
    for row in rows:
        if row["status"] in ("PASS", "FAIL", "SKIP") and row["duration_s"] is not None:
            spent.setdefault(row["case_id"], []).append(float(row["duration_s"]))
    return {cid: sum(times) / len(times) for cid, times in spent.items()}
