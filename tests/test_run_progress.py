"""What `kvmconf run` shows while it runs (issue 15 item 5): the progress bar's plan and
estimate, plain lines, and the --quiet and --json modes of the real command (a
user-space-only pebs_pt case: no kernel build, no boot)."""
from __future__ import annotations

import io
import json

from rich.console import Console

from harness.results import history
from harness.commands.run_progress import RunProgress, choose_mode, history_estimates
from tests.conftest import kvmconf

CASE = ["--features", "pebs_pt", "--user-space-only", "--case", "pebs_pt/vector/padding*", "--seed", "1"]


def test_modes_follow_the_flags_and_the_terminal():
    tty, pipe = io.StringIO(), io.StringIO()
    tty.isatty = lambda: True
    assert choose_mode(False, False, tty) == "bar" and choose_mode(False, False, pipe) == "lines"
    assert choose_mode(True, False, tty) == "quiet" and choose_mode(True, True, tty) == "json"


def test_the_bar_counts_cases_and_estimates_what_is_left_from_the_history():
    screen = io.StringIO()
    progress = RunProgress("bar", Console(file=screen, force_terminal=True, width=160),
                           estimates={"f/a/1": 30.0, "f/a/2": 90.0})
    progress.planned(["f/a/1", "f/a/2", "f/a/3"])
    assert progress._left() == "2m10s"        # 30 + 90 + 10 (no history, nothing done yet)
    progress.started("f/a/1")
    progress.finished("f/a/1", "PASS", "", 20.0)
    assert progress._left() == "1m50s"        # 90 + 20 (this run's mean so far)
    task = progress._bar.tasks[0]
    assert (task.completed, task.total) == (1, 3) and "f: f/a/1" in task.description
    progress.close()


def test_lines_mode_prints_each_case_and_the_history_gives_means(tmp_path):
    screen = io.StringIO()
    progress = RunProgress("lines", Console(file=screen, width=160))
    progress.started("f/a/1")
    progress.finished("f/a/1", "FAIL", "why", 1.0)
    assert "running f/a/1" in screen.getvalue() and "FAIL  f/a/1" in screen.getvalue()
    db = tmp_path / "h.sqlite"
    store = history.open_store(db)
    for n, (status, seconds) in enumerate((("PASS", 10.0), ("FAIL", 20.0), ("ERROR", 500.0))):
        store.append({"schema": "kvmconf-run/1", "run_id": f"r{n}", "started": f"2026-12-0{n + 1}T00:00:00+00:00",
                      "label": "", "summary": {}, "cases": [{"id": "f/a/1", "feature": "f", "status": status,
                                                             "reason": "", "duration_s": seconds}]},
                     tmp_path / f"r{n}.json")
    store.close()
    assert history_estimates(db) == {"f/a/1": 15.0}          # an ERROR's time is no estimate
    (tmp_path / "not-a-db.sqlite").write_text("garbage")
    assert history_estimates(tmp_path / "not-a-db.sqlite") == {}


def test_json_mode_prints_a_line_per_case_then_the_summary(tmp_path):
    done = kvmconf("run", *CASE, "--json", "--output", str(tmp_path / "o"), "--history", str(tmp_path / "h"))
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert lines[0] == {"case": "pebs_pt/vector/padding-packet-1", "status": "PASS", "reason": "",
                        "duration_s": lines[0]["duration_s"]}
    assert lines[-1]["summary"]["pass"] == 1 and lines[-1]["exit_code"] == 0 and len(lines) == 2


def test_quiet_mode_prints_the_summary_line_only(tmp_path):
    done = kvmconf("run", *CASE, "--quiet", "--output", str(tmp_path / "o"), "--history", str(tmp_path / "h"))
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines() == [done.stdout.splitlines()[0]]
    assert done.stdout.startswith("pass=1 fail=0 error=0 skip=0 miss=0  total_s=")
    assert "running pebs_pt" not in done.stderr
