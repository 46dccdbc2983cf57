"""VFIO cases beyond the shared op-script driver: the v1 migration region's state table.

The named cases and random op-scripts of VFIO dirty tracking run through
testcases/test_opscripts.py; what is here drives a device's migration state
machine, which the op-script model does not predict event by event.
"""
from __future__ import annotations

import pytest

from harness import features
from harness.compare import first_divergence
from harness.errors import HarnessError
from harness.reference import vfio as model

FEATURE = "vfio"

V1_SEQUENCES = [
    # the documented flows (uapi comment of the series): live migration, save, resume
    [model.V1_RUNNING | model.V1_SAVING, model.V1_SAVING, model.V1_STOP],
    [model.V1_SAVING, model.V1_STOP],
    [model.V1_RESUMING, model.V1_RUNNING],
    # invalid encodings must be refused with the state unchanged
    [model.V1_RESUMING | model.V1_RUNNING, model.V1_SAVING | model.V1_RESUMING, 7],
]


def predicted_v1_trace(probe_event: dict, writes: list[int]) -> list[dict]:
    """The whole trace of a v1 sequence: setup, migprobe, one event per write.

    Every sequence above follows required arcs or invalid writes only, so the
    state table (model.v1_walk) leaves exactly one outcome per write."""
    events = [{"op": "setup", "iommu": 3, "result": "ok"}, probe_event]
    for new, allowed in zip(writes, model.v1_walk(writes)):
        if len(allowed) != 1:
            raise HarnessError(f"v1 sequence {writes}: write {new} has {len(allowed)} allowed outcomes")
        (result, state), = allowed
        events.append({"op": "mig1", "result": result, "device_state": state})
    return events


def outcome_only(trace: list[dict]) -> list[dict]:
    """A refused write is "error" whichever errno the driver chose (the KABI fixes none)."""
    return [{**e, "result": "ok" if e["result"] == "ok" else "error"} if e.get("op") == "mig1" else e
            for e in trace]


@pytest.mark.parametrize("cid", ["vfio/migration/v1-region-state-table"])
def test_migration_region(cid, suite, run_record):
    """vfio/migration/v1-region-state-table: drive device_state of a device exposing the
    v1 migration region through the documented flows and invalid writes, each whole
    trace checked against the model's state table; SKIP with the probe when no device
    has the region (or the v2 migration feature, which this suite only probes)."""
    driver = suite(FEATURE)
    probe_script = driver.prepare({"iommu": "v2", "actions": [{"op": "migprobe"}]})
    probe = driver.run([probe_script])[0]
    if len(probe) != 2 or probe[1].get("op") != "migprobe" or probe[1].get("result") != "ok":
        raise HarnessError(f"vfio migration probe failed: {probe}")
    p = probe[1]
    (requirement,) = [r for r in features.get(FEATURE).requirements if r.probe == "migration"]
    if p["v1_region"] < 0:
        seen = (f"device {p['bdf']}: {p['num_regions']} regions, none of type "
                f"VFIO_REGION_TYPE_MIGRATION_DEPRECATED(3)/1; VFIO_DEVICE_FEATURE GET MIGRATION -> "
                f"{p['v2_feature']}" + (f" (v2 flags {p['v2_flags']:#x}, whose FSM this suite does "
                                        f"not drive yet)" if p["v2_feature"] == "ok" else ""))
        driver.need(requirement, 0, seen)
    for writes in V1_SEQUENCES:
        actions = [{"op": "migprobe"}] + [{"op": "mig1", "state": s} for s in writes]
        observed = driver.run([driver.prepare({"iommu": "v2", "actions": actions})])[0]
        predicted = predicted_v1_trace(p, writes)
        found = first_divergence(predicted, outcome_only(observed))
        if found:
            raise found
    run_record.explained(list(features.get(FEATURE).profiles))
