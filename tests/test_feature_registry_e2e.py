"""The feature registry: a feature is one row plus its own files. A minimal extra
feature from tests/fixtures (row, model, codec, strategy, one named case, payload)
is registered through $KVMCONF_EXTRA_FEATURES, listed, and run end to end in a
real nested guest through the shared driver, with no other edit."""
from __future__ import annotations

import json

import pytest

from harness.results.schema import problems
from tests.conftest import FIXTURES, kvmconf, load_run

ROW = FIXTURES / "features" / "kvmapi" / "row.py"
EXTRA = {"KVMCONF_EXTRA_FEATURES": str(ROW)}


def test_a_declared_but_unbuilt_or_unknown_feature_is_a_usage_error(tmp_path):
    for name in ("pebs_via_ds", "kvmapi"):
        done = kvmconf("run", "--features", name, "--output", str(tmp_path / name))
        assert done.returncode == 2
        assert done.stderr.strip().splitlines()[-1] == (
            f"kvmconf: --features {name}: unknown feature {name!r} (known: syndbg, vfio, sev_es, pebs_pt)")


def test_kvmconf_list_shows_features_profiles_and_cases_without_booting():
    done = kvmconf("list", "--json", timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    listing = json.loads(done.stdout)
    assert [f["name"] for f in listing["features"]] == ["syndbg", "vfio", "sev_es", "pebs_pt"]
    assert {f["name"]: f["profiles"] for f in listing["features"]} == {
        "syndbg": ["mainline", "v7"], "vfio": ["6.1", "fixed"], "sev_es": ["6.1", "architectural"],
        "pebs_pt": ["6.1", "series"]}
    ids = [c["id"] for c in listing["cases"]]
    assert "syndbg/random/op-scripts" in ids and "vfio/migration/v1-region-state-table" in ids
    assert sum(i.startswith("syndbg/") for i in ids) >= 70 and sum(i.startswith("vfio/") for i in ids) >= 70
    assert all(c["rationale"] for c in listing["cases"]), [c["id"] for c in listing["cases"] if not c["rationale"]]
    assert kvmconf("list", "--names").stdout.split() == ["syndbg", "vfio", "sev_es", "pebs_pt"]


def test_extra_feature_is_listed_from_its_row_alone():
    done = kvmconf("list", "--features", "kvmapi", "--json", env=EXTRA, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    listing = json.loads(done.stdout)
    (feature,) = listing["features"]
    assert feature["name"] == "kvmapi" and feature["machine"] == ["nested"]
    assert feature["profiles"] == ["mainline"]
    assert [c["id"] for c in listing["cases"]] == ["kvmapi/ioctl/api-version", "kvmapi/random/op-scripts"]


@pytest.mark.e2e
def test_extra_feature_runs_end_to_end_through_the_shared_driver(tmp_path, debian_kernel):
    out = tmp_path / "kvmapi"
    done = kvmconf("run", "--features", "kvmapi", "--suite", "kvmapi", "--seed", "4", "--output", str(out),
                   "--history", str(tmp_path / "h"), env=EXTRA, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    record = load_run(out)
    assert problems(record) == []
    assert {c["id"]: c["status"] for c in record["cases"]} == {
        "kvmapi/ioctl/api-version": "PASS", "kvmapi/random/op-scripts": "PASS"}
    (random,) = record["random"]
    assert random["feature"] == "kvmapi" and random["scripts"] == 20 and random["diverged"] == 0
    assert random["action_kinds"]["api"] and random["action_kinds"]["ext"]
    assert record["profile_verdict"] == {"kvmapi": "mainline"}
    assert record["platform"]["machine_profile"] == "nested"
