"""VFIO type1 dirty page tracking: named cases, random op-scripts, v1 migration.

Every case runs op-scripts through the payload (guests/vfio) in the guest and
compares the observed trace with the reference model
(harness/reference/vfio.py) for the run's profile.  A divergence names the
profile the kernel matches, when one does.  Whenever a case observes the 6.1
stale-bits behaviour (the 6.1 and "fixed" profiles predict different bitmaps
and the kernel gave the 6.1 ones) the run lists the finding.
"""
from __future__ import annotations

import collections
import json
import os
import shlex
import time

import pytest

from harness.compare import Divergence, first_divergence
from harness.errors import HarnessError
from harness.payloads import vfio as enc
from harness.reference import vfio as model
from vfio_cases import CASES

FEATURE = "vfio"
BATCH = 40                     # op-scripts per payload invocation
RANDOM_SCRIPTS = int(os.environ.get("KVMCONF_VFIO_RANDOM", "300"))

STALE_FINDING = {
    "id": "vfio/stale-bits-after-shifted-merge",
    "title": "type1 GET_BITMAP/unmap report stale dirty bits after a GET packed a mapping "
             "at a bit offset that is not a multiple of 64",
    "mechanism": (
        "drivers/vfio/vfio_iommu_type1.c: update_user_bitmap() shifts the mapping's own "
        "bitmap in place (bitmap_shift_left(dma->bitmap, dma->bitmap, shift, nbits + shift)) "
        "and ORs the whole user word at copy_offset into its first word (__bitmap_or over "
        "BITS_TO_LONGS(shift) = 1 word), so the kernel copy now holds bits up to "
        "nbits + shift (and the neighbour's bits); vfio_iova_dirty_bitmap() then clears only "
        "[0, nbits) (bitmap_clear(dma->bitmap, 0, dma->size >> pgshift)). The leftovers are "
        "copied out again, whole words, by later GETs and unmap-with-bitmap: over-reporting "
        "(never a lost page) until STOP frees the bitmap."),
}


def run_scripts(guest, scripts: list[dict], timeout: float = 300.0) -> list[list[dict]]:
    """Run normalised scripts in one payload invocation; the per-script traces."""
    result = guest.run([guest.payload(FEATURE)], stdin=enc.encode(scripts), timeout=timeout)
    if result.rc != 0:
        raise HarnessError(f"vfio payload exited {result.rc}: "
                           f"{result.stderr.decode(errors='replace').strip()[-400:]}")
    return enc.parse_output(result.stdout, len(scripts))


def run_batched(guest, scripts: list[dict]) -> list[list[dict]]:
    out: list[list[dict]] = []
    for i in range(0, len(scripts), BATCH):
        out += run_scripts(guest, scripts[i:i + BATCH])
    return out


def _action_of(script: dict):
    def describe(step: int, event: dict) -> str:
        if step == 0:
            return f"setup iommu={script['iommu']}"
        if step - 1 < len(script["actions"]):
            return enc.describe_action(script["actions"][step - 1])
        return str(event.get("op", "?"))
    return describe


def divergence(script: dict, observed: list[dict], profile: str,
               context: str = "") -> Divergence | None:
    """First divergence from `profile`, naming the profile the kernel matches
    (if any) and carrying the script and both events at that step."""
    predicted = model.predict(script, profile)
    found = first_divergence(predicted, observed, _action_of(script))
    if found is None:
        return None
    matches = next((p for p in model.PROFILES if p != profile
                    and first_divergence(model.predict(script, p), observed) is None), None)
    step = found.step
    detail = (f"{context}profile {profile}; script: {json.dumps(script)}\n"
              f"predicted[{step}]: {json.dumps(predicted[step]) if step < len(predicted) else '-'}\n"
              f"observed[{step}]:  {json.dumps(observed[step]) if step < len(observed) else '-'}")
    return Divergence(found.step, found.action, found.field, found.expected, found.observed,
                      matches_profile=matches, detail=detail)


def stale_observation(script: dict, observed: list[dict]) -> tuple[str, str] | None:
    """(intended, observed) when this trace shows the 6.1 stale bits.

    The trace matches the 6.1 profile, and the fixed profile (the intended
    semantics: a GET reports exactly the covered mappings' pages) predicts
    different bits for some event.
    """
    as_61 = model.predict(script, "6.1")
    if first_divergence(as_61, observed) is not None:
        return None
    intended = model.predict(script, "fixed")
    found = first_divergence(intended, observed, _action_of(script))
    if found is None:
        return None
    where = f"step {found.step} ({found.action}): {found.field}"
    return f"{where} = {_hex(found.expected)}", f"{where} = {_hex(found.observed)}"


def _hex(value) -> str:
    return hex(value) if isinstance(value, int) else json.dumps(value)


def report_stale(run_record, case_id: str, seen: tuple[str, str]) -> None:
    intended, observed = seen
    run_record.add_finding(STALE_FINDING["id"], FEATURE, STALE_FINDING["title"],
                           intended, observed, STALE_FINDING["mechanism"], case_id)


def check(script: dict, observed: list[dict], profile: str, run_record, case_id: str) -> None:
    found = divergence(script, observed, profile)
    if found is not None:
        raise found
    seen = stale_observation(script, observed)
    if seen:
        report_stale(run_record, case_id, seen)


# ---------------------------------------------------------------------------
# named cases

@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_named(case, guest, kvmconf_profile, run_record):
    profile = kvmconf_profile(FEATURE)
    script = enc.normalise(case["script"])
    observed = run_scripts(guest, [script])[0]
    check(script, observed, profile, run_record, case["id"])


# ---------------------------------------------------------------------------
# random op-scripts

@pytest.mark.parametrize("cid", ["vfio/random/op-scripts"])
def test_random_op_scripts(cid, guest, kvmconf_profile, kvmconf_seed, kvmconf_ctx, run_record):
    """vfio/random/op-scripts: hypothesis-drawn op-scripts (5-30 actions, every kind)
    for the run's seed, batched; on divergence the first diverging script is shrunk
    in the guest and reported with a replay line."""
    profile = kvmconf_profile(FEATURE)
    seed = kvmconf_seed
    scripts = enc.generate(seed, RANDOM_SCRIPTS)
    start = time.monotonic()
    observed = run_batched(guest, scripts)
    elapsed = time.monotonic() - start
    kinds = collections.Counter({k: 0 for k in enc.RANDOM_KINDS})
    diverged = []
    for i, (script, trace) in enumerate(zip(scripts, observed)):
        kinds.update(enc.action_kind(a) for a in script["actions"])
        if divergence(script, trace, profile) is not None:
            diverged.append(i)
        else:
            seen = stale_observation(script, trace)
            if seen:
                report_stale(run_record, run_record.case_id, seen)
    run_record.add_random(FEATURE, seed, len(scripts), sum(len(s["actions"]) for s in scripts),
                          dict(kinds), len(diverged))
    run_record.annotate(seed=seed)
    print(f"vfio random: {len(scripts)} op-scripts in {elapsed:.1f} s "
          f"({len(scripts) / max(elapsed, 1e-9):.1f}/s), {len(diverged)} diverged")
    missing = [k for k in enc.RANDOM_KINDS if not kinds[k]]
    assert not missing, f"random op-scripts never drew action kinds {missing} (seed {seed})"
    if not diverged:
        return
    first = scripts[diverged[0]]

    def still_fails(candidates: list[dict]) -> list[bool]:
        traces = run_batched(guest, candidates)
        return [divergence(c, t, profile) is not None for c, t in zip(candidates, traces)]

    shrunk = enc.shrink(first, still_fails)
    context = (f"{len(diverged)} of {len(scripts)} op-scripts diverged (seed {seed}); "
               f"shrunk from {len(first['actions'])} to {len(shrunk['actions'])} actions; ")
    trace = run_scripts(guest, [shrunk])[0]
    found = divergence(shrunk, trace, profile, context)
    if found is None:      # did not reproduce alone: report the unshrunk one
        shrunk, trace = first, observed[diverged[0]]
        found = divergence(shrunk, trace, profile, context + "the shrunk script passed alone; ")
    replay = json.dumps(shrunk, separators=(",", ":"))
    base = kvmconf_ctx.record.case(run_record.case_id)["reproduce"]
    line = base.replace("--case vfio/random/op-scripts", "--case vfio/random/replay")
    run_record.annotate(reproduce=f"KVMCONF_VFIO_REPLAY={shlex.quote(replay)} {line}")
    raise found


# Collected only when a reproduction line sets the script, so ordinary runs
# carry no placeholder case.
if os.environ.get("KVMCONF_VFIO_REPLAY"):
    @pytest.mark.parametrize("cid", ["vfio/random/replay"])
    def test_random_replay(cid, guest, kvmconf_profile, run_record):
        """vfio/random/replay: replays one op-script given as JSON in $KVMCONF_VFIO_REPLAY
        (the reproduction line of a shrunk random script)."""
        raw = os.environ["KVMCONF_VFIO_REPLAY"]
        try:
            script = enc.normalise(json.loads(raw))
        except ValueError as e:
            raise HarnessError(f"KVMCONF_VFIO_REPLAY is not a vfio op-script: {e}") from None
        observed = run_scripts(guest, [script])[0]
        check(script, observed, kvmconf_profile(FEATURE), run_record, run_record.case_id)


# ---------------------------------------------------------------------------
# v1 migration region / v2 migration feature

V1_SEQUENCES = [
    # the documented flows (uapi comment of the series): live migration, save, resume
    [model.V1_RUNNING | model.V1_SAVING, model.V1_SAVING, model.V1_STOP],
    [model.V1_SAVING, model.V1_STOP],
    [model.V1_RESUMING, model.V1_RUNNING],
    # invalid encodings must be refused with the state unchanged
    [model.V1_RESUMING | model.V1_RUNNING, model.V1_SAVING | model.V1_RESUMING, 7],
]


@pytest.mark.parametrize("cid", ["vfio/migration/v1-region-state-table"])
def test_migration_region(cid, guest, run_record):
    """vfio/migration/v1-region-state-table: drive device_state of a device exposing the
    v1 migration region through the documented flows and invalid writes, checked against
    the state table of the model; SKIP with the probe when no device has the region (or
    the v2 migration feature, which this suite only probes)."""
    probe_script = enc.normalise({"iommu": "v2", "actions": [{"op": "migprobe"}]})
    probe = run_scripts(guest, [probe_script])[0]
    if len(probe) != 2 or probe[1].get("op") != "migprobe" or probe[1].get("result") != "ok":
        raise HarnessError(f"vfio migration probe failed: {probe}")
    p = probe[1]
    if p["v1_region"] < 0:
        where = (f"device {p['bdf']}: {p['num_regions']} regions, none of type "
                 f"VFIO_REGION_TYPE_MIGRATION_DEPRECATED(3)/1; VFIO_DEVICE_FEATURE GET "
                 f"MIGRATION -> {p['v2_feature']}")
        if p["v2_feature"] == "ok":
            pytest.skip(f"v1 migration region missing ({where}); the device offers only the "
                        f"v2 protocol (flags {p['v2_flags']:#x}), whose FSM this suite does "
                        f"not drive yet")
        pytest.skip(f"v1 migration region and v2 migration feature missing: {where} "
                    f"(edu under vfio-pci has no migration driver)")
    for writes in V1_SEQUENCES:
        actions = [{"op": "migprobe"}] + [{"op": "mig1", "state": s} for s in writes]
        trace = run_scripts(guest, [enc.normalise({"iommu": "v2", "actions": actions})])[0]
        state = model.V1_RUNNING
        for step, (new, event) in enumerate(zip(writes, trace[2:]), 2):
            allowed = model.v1_transition(state, new)
            got = ("ok" if event["result"] == "ok" else "error", event["device_state"])
            if got not in allowed:
                raise Divergence(step, f"mig1 device_state={model.V1_NAMES.get(new, new)}",
                                 "result,device_state", sorted(allowed), got)
            state = got[1]
