"""End to end: the syndbg suite in a real nested guest (kvm-amd under TCG) on a mutant
built from linux-source-6.1 that behaves like the v7 series (Debian's kernel passing it:
tests/test_targets_e2e.py)."""
from __future__ import annotations

import shlex

import pytest

from harness.kernel import build
from tests.conftest import REPO, kvmconf, load_run

pytestmark = pytest.mark.e2e


@pytest.mark.nightly   # minutes of make test's budget: ci/nightly.sh runs it
def test_v7_like_mutant_fails_shows_v7_evidence_and_replays(tmp_path):
    """The mutant has one of v7's rules: some traces match v7 whole, others match no
    profile, so the run's profile verdict is null (the truth), not v7."""
    patch = REPO / "ci/mutants/syndbg/v7-inactive-ignored.patch"
    out = tmp_path / "mutant"
    done = kvmconf("run", "--source", str(build.DEFAULT_SOURCE), "--patch", str(patch), "--features", "syndbg",
                   "--seed", "11", "--output", str(out), "--history", str(tmp_path / "h"), timeout=1800)
    assert done.returncode == 1, done.stderr[-2000:]
    record = load_run(out)
    failed = [c for c in record["cases"] if c["status"] == "FAIL" and c["divergence"]]
    assert failed
    for case in failed:
        d = case["divergence"]
        assert d["step"] is not None and d["action"] and d["field"] and d["expected"] != d["observed"]
    v7 = next(c for c in failed if c["divergence"]["matches_profile"] == "v7")
    assert any(c["divergence"]["matches_profile"] is None for c in failed)
    assert record["profile_verdict"] == {"syndbg": None}
    # The reproduction line replays the case on the same kernel and gives the same divergence.
    words = shlex.split(v7["reproduce"])
    assert words[:2] == ["kvmconf", "run"] and "--case" in words
    again = kvmconf(*words[1:], "--output", str(tmp_path / "replay"), "--history", str(tmp_path / "h"),
                    timeout=1800)
    assert again.returncode == 1
    (replayed,) = [c for c in load_run(tmp_path / "replay")["cases"] if c["id"] == v7["id"]]
    assert replayed["divergence"] == v7["divergence"]
