"""End to end: the VFIO dirty-tracking suite in a real guest (q35 + intel-iommu + edu),
on mutant kernels built from linux-source-6.1 (Debian's kernel: tests/test_targets_e2e.py)."""
from __future__ import annotations

import pytest

from harness.kernel import build
from tests.conftest import REPO, kvmconf, load_run

pytestmark = pytest.mark.e2e

STALE = "vfio/stale-bits-after-shifted-merge"


@pytest.mark.nightly   # minutes of make test's budget: ci/nightly.sh runs it
def test_kernel_that_fixes_the_stale_bits_matches_the_fixed_profile(tmp_path):
    patch = REPO / "ci/mutants/vfio/fix-stale-bits.patch"
    common = ["--source", str(build.DEFAULT_SOURCE), "--patch", str(patch), "--features", "vfio",
              "--seed", "3", "--history", str(tmp_path / "h")]
    done = kvmconf("run", *common, "--output", str(tmp_path / "a"), timeout=1800)
    assert done.returncode == 1, done.stderr[-2000:]
    record = load_run(tmp_path / "a")
    assert record["kernel"]["series"][0]["subject"] == "fix-stale-bits.patch"
    diverged = [c["divergence"] for c in record["cases"] if c["status"] == "FAIL" and c["divergence"]]
    assert diverged and all(d["matches_profile"] == "fixed" for d in diverged), diverged
    assert not any(f["id"] == STALE for f in record["findings"])
    assert record["profile_verdict"] == {"vfio": "fixed"}     # fixed explains every case
    # Told to expect the fixed behaviour, the same kernel passes.
    done = kvmconf("run", *common, "--profile", "vfio=fixed", "--output", str(tmp_path / "b"), timeout=1800)
    assert done.returncode == 0, done.stderr[-2000:]
    assert load_run(tmp_path / "b")["profile_verdict"] == {"vfio": "fixed"}
