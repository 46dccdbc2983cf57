"""Hyper-V synthetic debugger (syndbg) conformance: named cases and random op-scripts.

Each op-script runs in the guest kernel under test through the syndbg payload
(guests/syndbg) and in the reference model (harness/reference/syndbg.py); the
first divergence fails the case, naming step, action, field, expected and
observed values, and the other model profile the kernel matches, if any.
"""
from __future__ import annotations

import importlib.util
import json
import os
import shlex
import time
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed

from harness.compare import Divergence, first_divergence
from harness.errors import HarnessError
from harness.payloads import syndbg as payload
from harness.reference import syndbg as model

FEATURE = "syndbg"
HERE = Path(__file__).resolve().parent


def _load(name: str):
    """Sibling modules by path: works under any pytest import mode."""
    spec = importlib.util.spec_from_file_location(f"kvmconf_testcases_{name}", HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


CASES = _load("syndbg_cases").CASES
GEN = _load("syndbg_gen")

RANDOM_SCRIPTS = int(os.environ.get("KVMCONF_SYNDBG_RANDOM", "300"))
BATCH = 100                 # op-scripts per payload invocation
SHRINK_BUDGET_S = 180.0     # guest time spent shrinking one divergence
REPLAY_ENV = "KVMCONF_SYNDBG_REPLAY"

# ---- running op-scripts in the guest --------------------------------------

_probes: dict[int, dict] = {}


def probe(guest) -> dict:
    """`syndbg --probe` in the guest, once per guest: vendor and KVM capabilities."""
    key = id(guest)
    if key not in _probes:
        res = guest.run([guest.payload(FEATURE), "--probe"], timeout=60)
        if res.rc != 0:
            raise HarnessError(f"syndbg --probe exited {res.rc}: "
                               f"{res.stderr.decode(errors='replace')[-300:]}")
        try:
            _probes[key] = json.loads(res.stdout)
        except ValueError as e:
            raise HarnessError(f"syndbg --probe printed invalid JSON: {e}") from None
    return _probes[key]


def require(guest, script: dict) -> dict:
    """SKIP when the kernel lacks a capability the script needs; returns the probe."""
    p = probe(guest)
    caps = p["caps"]
    where = "KVM_CHECK_EXTENSION on /dev/kvm in the guest (syndbg --probe)"
    if caps["sys_hyperv_cpuid"] <= 0:
        pytest.skip(f"KVM_CAP_SYS_HYPERV_CPUID (191) missing: 0 from {where}; "
                    "a kernel without Hyper-V emulation (CONFIG_KVM_HYPERV=n)")
    if any(v.get("enforce") for v in script.get("vcpus", [])) and caps["hyperv_enforce_cpuid"] <= 0:
        pytest.skip(f"KVM_CAP_HYPERV_ENFORCE_CPUID (199) missing: 0 from {where}")
    if script.get("quirk_fix") is False and not caps["disable_quirks2"] & 0x20:
        pytest.skip(f"KVM_X86_QUIRK_FIX_HYPERCALL_INSN not in KVM_CAP_DISABLE_QUIRKS2 (213) "
                    f"= {caps['disable_quirks2']:#x} from {where}")
    if script.get("user_msr") and caps["x86_user_space_msr"] <= 0:
        pytest.skip(f"KVM_CAP_X86_USER_SPACE_MSR (188) missing: 0 from {where}")
    return p


def env(p: dict) -> dict:
    """What the model needs to know about the machine: the CPU vendor, and whether
    cpu_smt_possible() (CPUID 0x40000004 NO_NONARCH_CORESHARING) from the SMT control."""
    return {"vendor": p["vendor"], "smt": p.get("smt_control") in ("on", "off")}


def run_scripts(guest, scripts: list[dict], timeout: float | None = None) -> list[list[dict]]:
    """Run op-scripts in one payload invocation; one observed trace per script."""
    stdin = payload.encode(scripts)
    # The payload bounds each KVM_RUN by 5 s itself; this bounds the whole batch, which
    # takes ~0.035 s per op-script under TCG (x10 margin for a loaded host).
    timeout = timeout or 30.0 + 0.1 * sum(len(s["actions"]) for s in scripts)
    res = guest.run([guest.payload(FEATURE)], stdin=stdin, timeout=timeout)
    if res.rc != 0:
        raise HarnessError(f"syndbg payload exited {res.rc}: "
                           f"{res.stderr.decode(errors='replace').strip()[-300:]}")
    return payload.decode(res.stdout, len(scripts))


def divergence(script: dict, observed: list[dict], profile: str) -> Divergence | None:
    """The first divergence from `profile`, with matches_profile filled from the others."""
    norm = model.normalize(script)

    def action_of(step: int, event: dict) -> str:
        if "step" in event and 0 <= event["step"] < len(norm["actions"]):
            return model.describe(norm["actions"][event["step"]])
        return event.get("op", "?")

    found = first_divergence(model.predict(norm, profile), observed, action_of)
    if found is None:
        return None
    for other in model.PROFILES:
        if other != profile and first_divergence(model.predict(norm, other), observed) is None:
            found.matches_profile = other
            found.detail = f"(the whole trace matches the {other!r} profile)"
            break
    # Report the op-script's step, not the event index (event 0 is the VM setup).
    index = found.step
    events = observed if index < len(observed) else model.predict(norm, profile)
    if index < len(events) and "step" in events[index]:
        found.step = events[index]["step"]
    found.args = (found.summary(),)
    return found


# ---- named cases ------------------------------------------------------------

@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_case(case, guest, kvmconf_profile):
    p = require(guest, case["script"])
    script = {**case["script"], **env(p)}
    observed = run_scripts(guest, [script])[0]
    found = divergence(script, observed, kvmconf_profile(FEATURE))
    if found:
        found.detail = "\n".join(filter(None, [found.detail, f"rationale: {case['rationale']}",
                                               f"observed trace: {json.dumps(observed)}"]))
        found.args = (found.summary(),)
        raise found


# ---- random op-scripts ------------------------------------------------------

def _settings(count: int, phases) -> settings:
    return settings(max_examples=count, database=None, deadline=None, phases=phases,
                    suppress_health_check=list(HealthCheck), print_blob=False)


def generate(seed: int, count: int, vendor: str, smt: bool = False) -> list[dict]:
    """`count` op-scripts from hypothesis, deterministic for a seed."""
    out: list[dict] = []

    @hypothesis_seed(seed)
    @_settings(count, [Phase.generate])
    @given(GEN.scripts(vendor, smt))
    def collect(script):
        out.append(script)

    collect()
    return out


def shrink(guest, seed: int, count: int, vendor: str, profile: str,
           observed: dict[str, list[dict]], smt: bool = False) -> tuple[dict, Divergence] | None:
    """Replay the same hypothesis search with the guest as oracle and let it shrink.

    Scripts already run in the batch are answered from `observed`; new ones
    (the shrinker's candidates) run in the guest one by one, within a time budget.
    """
    deadline = time.monotonic() + SHRINK_BUDGET_S
    failing: list[tuple[dict, Divergence]] = []

    @hypothesis_seed(seed)
    @_settings(count, [Phase.generate, Phase.shrink])
    @given(GEN.scripts(vendor, smt))
    def search(script):
        key = json.dumps(script, sort_keys=True)
        if key not in observed:
            if time.monotonic() > deadline:
                return                      # budget spent: stop finding new failures
            observed[key] = run_scripts(guest, [script])[0]
        found = divergence(script, observed[key], profile)
        if found:
            failing.append((script, found))
            raise found

    try:
        search()
    except Divergence:
        pass
    return failing[-1] if failing else None   # hypothesis replays the minimal one last


@pytest.mark.parametrize("name", ["syndbg/random/op-scripts"], ids=["syndbg/random/op-scripts"])
def test_random(name, guest, kvmconf_seed, kvmconf_profile, kvmconf_ctx, run_record):
    p = require(guest, {})
    profile = kvmconf_profile(FEATURE)
    scripts = generate(kvmconf_seed, RANDOM_SCRIPTS, p["vendor"], env(p)["smt"])
    observed: dict[str, list[dict]] = {}
    diverged: list[int] = []
    start = time.monotonic()
    for first in range(0, len(scripts), BATCH):
        batch = scripts[first:first + BATCH]
        for i, trace in enumerate(run_scripts(guest, batch)):
            observed[json.dumps(batch[i], sort_keys=True)] = trace
            if divergence(batch[i], trace, profile):
                diverged.append(first + i)
    elapsed = time.monotonic() - start
    kinds = Counter(a["op"] for s in scripts for a in s["actions"])
    run_record.add_random(FEATURE, kvmconf_seed, len(scripts), sum(kinds.values()),
                          {k: kinds.get(k, 0) for k in model.ACTION_KINDS}, len(diverged))
    run_record.annotate(seed=kvmconf_seed)
    print(f"syndbg random: {len(scripts)} op-scripts, {sum(kinds.values())} actions in "
          f"{elapsed:.1f} s ({len(scripts) / max(elapsed, 1e-9):.1f} op-scripts/s), "
          f"{len(diverged)} diverged")
    if not diverged:
        return

    shrunk = shrink(guest, kvmconf_seed, RANDOM_SCRIPTS, p["vendor"], profile, observed,
                    env(p)["smt"])
    if shrunk is None:              # the shrinker could not reproduce it: report the original
        script = scripts[diverged[0]]
        found = divergence(script, observed[json.dumps(script, sort_keys=True)], profile)
    else:
        script, found = shrunk
    replay = (f"{REPLAY_ENV}={shlex.quote(json.dumps(script, separators=(',', ':')))} "
              f"{kvmconf_ctx.options.reproduce} --case syndbg/random/replay")
    run_record.annotate(seed=kvmconf_seed, reproduce=replay)
    found.detail = "\n".join(filter(None, [
        found.detail,
        f"{len(diverged)} of {len(scripts)} op-scripts diverged (seed {kvmconf_seed}); "
        f"shrunk to {len(script['actions'])} actions: {json.dumps(script)}",
        f"replay: {replay}"]))
    found.args = (found.summary(),)
    raise found


if os.environ.get(REPLAY_ENV):
    @pytest.mark.parametrize("name", ["syndbg/random/replay"], ids=["syndbg/random/replay"])
    def test_replay(name, guest, kvmconf_profile):
        """Replays one op-script given as JSON in KVMCONF_SYNDBG_REPLAY (a shrunk divergence)."""
        try:
            script = json.loads(os.environ[REPLAY_ENV])
            model.normalize(script)
        except (ValueError, KeyError, TypeError) as e:
            raise HarnessError(f"{REPLAY_ENV}: not a syndbg op-script: {e}") from None
        p = require(guest, script)
        script = {**env(p), **script}
        observed = run_scripts(guest, [script])[0]
        found = divergence(script, observed, kvmconf_profile(FEATURE))
        if found:
            raise found
