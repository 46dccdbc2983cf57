"""The maintainer's scenario end to end: a three-patch series on linux-source-6.1
whose patch 2 breaks syndbg (guest reads of SYNDBG_OPTIONS return 0).

The series run FAILs with a divergence, `compare` against the bare source
lists the regressed cases and exits 1, and `bisect` names patch 2/3.
"""
from __future__ import annotations

import pytest

from harness.kernel import build
from harness.results.schema import problems
from tests.conftest import FIXTURES, kvmconf, load_run

# Four kernel builds of a series' prefixes (about 3.5 min): ci/nightly.sh runs them;
# make test keeps the series parsing, compare and bisect logic (tests/test_series_compare.py)
# and real kernel builds (tests/test_kernel_build.py).
pytestmark = [pytest.mark.e2e, pytest.mark.nightly]

SERIES = FIXTURES / "syndbg-series-v2.mbox"
SOURCE = str(build.DEFAULT_SOURCE)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("series")
    common = ["--suite", "syndbg", "--seed", "7", "--history", str(folder / "h.sqlite")]
    base = kvmconf("run", "--source", SOURCE, "--output", str(folder / "base"), "--label", "base", *common,
                   timeout=3000)
    series = kvmconf("run", "--source", SOURCE, "--series", str(SERIES), "--output", str(folder / "series"),
                     "--label", "series v2", *common, timeout=3000)
    return folder, base, series


def test_bare_source_passes_syndbg(runs):
    folder, base, _ = runs
    assert base.returncode == 0, base.stderr[-2000:]
    assert problems(load_run(folder / "base")) == []


def test_series_run_fails_with_a_divergence_and_records_the_series(runs):
    folder, _, series = runs
    assert series.returncode == 1, series.stderr[-2000:]
    record = load_run(folder / "series")
    assert problems(record) == []
    assert [(p["revision"], p["message_id"]) for p in record["kernel"]["series"]] == [
        (2, f"20200319063836.000000-{n}-kvmconf@example.org") for n in (1, 2, 3)]
    failed = [c for c in record["cases"] if c["status"] == "FAIL"]
    assert failed and all(c["divergence"] for c in failed if not c["id"].startswith("syndbg/random"))
    first = next(c for c in failed if c["divergence"])
    assert first["divergence"]["action"] and first["divergence"]["field"]
    assert "kvmconf: FAIL syndbg/" in series.stderr


def test_compare_lists_the_regressed_cases(runs):
    folder, _, _ = runs
    done = kvmconf("compare", str(folder / "base"), str(folder / "series"))
    assert done.returncode == 1
    failed = [c["id"] for c in load_run(folder / "series")["cases"] if c["status"] == "FAIL"]
    for case in failed:
        assert case in done.stdout
    assert "regressed: " + str(len(failed)) in done.stdout


def test_bisect_names_patch_two(runs):
    folder, _, _ = runs
    case = next(c["id"] for c in load_run(folder / "series")["cases"]
                if c["status"] == "FAIL" and c["divergence"] and not c["id"].startswith("syndbg/random"))
    done = kvmconf("bisect", "--source", SOURCE, "--series", str(SERIES), "--case", case,
                   "--output", str(folder / "bisect"), timeout=3000)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (f"{case}: first change at patch 2/3: KVM: x86: hyper-v: hide SYNDBG_OPTIONS from the guest "
            f"<20200319063836.000000-2-kvmconf@example.org> (PASS -> FAIL)") in done.stdout
