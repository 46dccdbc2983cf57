"""`kvmconf soak` (issue 14 item 7) for real: one cycle of two cases, one of which
panics the guest on purpose (tests/fixtures/faultsuite), so the report must count a
failure by kind, no leak, and each run's own peak memory."""
from __future__ import annotations

import json

import pytest

from harness.commands.soak import failure_kind
from tests.conftest import REPO, kvmconf


@pytest.mark.e2e
def test_a_soak_cycle_reports_failures_by_kind_leaks_and_memory(tmp_path, debian_kernel):
    done = kvmconf("soak", "--cycles", "1", "--minutes", "10", "--case", "smoke/before", "--case", "smoke/panic",
                   "--output", str(tmp_path / "soak"),
                   env={"KVMCONF_TESTCASES": str(REPO / "tests/fixtures/faultsuite")})
    assert done.returncode == 2, done.stderr[-2000:]          # a case failed: not clean
    report = json.loads((tmp_path / "soak" / "soak.json").read_text())
    summary, (cycle,) = report["summary"], report["cycles"]
    assert summary["cycles"] == 1 and summary["clean_cycles"] == 0
    assert summary["failures_by_kind"] == {"FAIL smoke/panic": 1}
    assert summary["leaked_processes"] == 0 and summary["leaked_files"] == 0
    assert summary["temporary_folders_left"] == []
    assert 20 < summary["peak_rss_mib_run"] < 1024 and cycle["exit"] == 1
    assert (tmp_path / "soak" / "cycle-0001" / "run.json").exists()


@pytest.mark.parametrize("text, kind", [
    ("ERROR smoke/ssh: guest command 'cat /tmp/blob': no session within 60 s", "ERROR smoke/ssh"),
    ("hang: no end within 600 s (killed)", "hang"),
    ("no valid run.json (FileNotFoundError: ...)", "no valid run.json"),
])
def test_failure_kinds_drop_the_details(text, kind):
    assert failure_kind(text) == kind
