"""A case that ERRORs is re-run once in a fresh machine (issue 15 item 4): run.json keeps
every attempt, the final status is the retry's, `retried` is set, and the exit code
follows the final statuses. The suite is tests/fixtures/retrysuite."""
from __future__ import annotations

import pytest

from harness.results.schema import problems
from tests.conftest import REPO, kvmconf, load_run, statuses

SUITE = {"KVMCONF_TESTCASES": str(REPO / "tests/fixtures/retrysuite")}


@pytest.mark.e2e
def test_an_error_is_retried_once_in_a_fresh_machine(tmp_path, debian_kernel):
    out = tmp_path / "o"
    done = kvmconf("run", "--suite", "smoke", "--output", str(out), "--history", str(tmp_path / "h"), env=SUITE)
    assert done.returncode == 2, done.stderr[-2000:]        # smoke/broken stays ERROR
    record = load_run(out)
    assert problems(record) == []
    assert statuses(record) == {"smoke/first": "PASS", "smoke/flaky": "PASS", "smoke/broken": "ERROR",
                                "smoke/last": "PASS"}
    cases = {c["id"]: c for c in record["cases"]}
    flaky, broken = cases["smoke/flaky"], cases["smoke/broken"]
    assert flaky["retried"] and [a["status"] for a in flaky["attempts"]] == ["ERROR", "PASS"]
    assert flaky["attempts"][0]["reason"] == "the infrastructure failed on the first attempt"
    assert broken["retried"] and [a["reason"] for a in broken["attempts"]] == \
        ["broken on attempt 1", "broken on attempt 2"] and broken["reason"] == "broken on attempt 2"
    assert "retried" not in cases["smoke/first"] and "retried" not in cases["smoke/last"]
    # each retry ran in a machine booted for it
    for name in ("flaky", "broken"):
        first, second = (out / f"{name}.machines").read_text().split()
        assert first != second
