"""Unit tests of the shared op-script driver (harness/driver.py) and of the verdict
rules: a stand-in guest answers with a model's predictions (tests/standin.py)."""
from __future__ import annotations

import dataclasses
import functools
import importlib.util
import json
import shlex
from types import SimpleNamespace

import pytest

from harness import features, targets
from harness.compare import Divergence
from harness.driver import CapabilityMissing, Suite
from harness.reference import syndbg as m
from harness.reference import vfio as vfio_model
from harness.results.plugin import KvmconfPlugin
from harness.results.record import RunRecord
from tests import standin
from tests.conftest import REPO
from tests.standin import Kernel, Recorder, StandinGuest

PROBE = {"vendor": "amd", "smt_control": "notsupported",
         "caps": {"sys_hyperv_cpuid": 1, "hyperv_enforce_cpuid": 1, "disable_quirks2": 0x7F,
                  "x86_user_space_msr": 1}}


def syndbg_suite(predict=m.predict, probe=PROBE, kernel=None, shrink_budget_s=180.0, **kw):
    guest = StandinGuest(predict, probe, **kw)
    row = dataclasses.replace(features.get("syndbg"), shrink_budget_s=shrink_budget_s)
    suite = Suite(row, guest, "mainline", kernel or Kernel())
    guest.attach(suite)
    return suite, guest


def status_write_exits(script):
    """A syndbg mutant: guest writes of SYNDBG_STATUS exit to user space."""
    orig = m._Model.hv_set_msr

    def broken(self, v, msr, value, host):
        r, ex = orig(self, v, msr, value, host)
        if r == 0 and ex is None and not host and msr == m.MSR_STATUS:
            ex = self._syndbg_exit(msr, 2)
        return r, ex

    m._Model.hv_set_msr = broken
    try:
        return m.predict(script)
    finally:
        m._Model.hv_set_msr = orig


COUNT = "30"    # random scripts per test run: enough for the mutant, short in make test


@functools.lru_cache(maxsize=None)
def diverging_seed() -> int:
    """The first seed whose COUNT scripts reach the mutant (the strategy decides which)."""
    suite, _ = syndbg_suite()
    return next(seed for seed in range(1, 50)
                if any(status_write_exits(s) != m.predict(s) for s in suite.generate(seed, int(COUNT))))


def replay_script(line: str) -> dict:
    return json.loads(shlex.split(line)[0].split("=", 1)[1])


# ---- random op-scripts, shrinking, replay ---------------------------------------

def test_random_finds_shrinks_in_one_stream_and_replays_a_mutant(monkeypatch):
    monkeypatch.setenv("KVMCONF_SYNDBG_RANDOM", COUNT)
    seed = diverging_seed()
    suite, guest = syndbg_suite(status_write_exits, shrink_budget_s=15.0)
    rec = Recorder()
    with pytest.raises(Divergence) as caught:
        suite.random(seed, rec, f"kvmconf run --seed {seed}")
    found = caught.value
    assert found.field == "exits.length" and found.expected == 0 and found.observed == 1
    assert "wrmsr 0x400000f2" in found.action
    (feature, recorded_seed, scripts, actions, kinds, diverged), = rec.random
    assert (feature, recorded_seed, scripts) == ("syndbg", seed, int(COUNT)) and diverged > 0
    assert rec.fields["seed"] == seed
    # every shrink candidate went to one streamed payload process, closed afterwards
    (stream,) = guest.streams
    assert stream.sent > 0 and stream.closed
    assert "shrunk to" in found.detail
    script = replay_script(rec.fields["reproduce"])
    assert rec.fields["reproduce"].endswith("--case syndbg/random/replay")
    with pytest.raises(Divergence) as again:
        suite.replay(json.dumps(script), Recorder())
    assert again.value.as_record() == found.as_record()


def test_the_shrink_budget_ends_the_search_with_the_smallest_script_so_far(monkeypatch):
    monkeypatch.setenv("KVMCONF_SYNDBG_RANDOM", COUNT)
    seed = diverging_seed()
    suite, guest = syndbg_suite(status_write_exits, shrink_budget_s=0.0)
    rec = Recorder()
    with pytest.raises(Divergence) as caught:
        suite.random(seed, rec, "kvmconf run")
    assert "(budget of 0 s spent)" in caught.value.detail
    assert guest.streams == [] or guest.streams[0].sent == 0     # no candidate ran
    first = next(s for s in suite.generate(seed, int(COUNT)) if status_write_exits(s) != m.predict(s))
    assert replay_script(rec.fields["reproduce"]) == first


def test_random_on_the_model_itself_agrees_and_records_the_profiles(monkeypatch):
    monkeypatch.setenv("KVMCONF_SYNDBG_RANDOM", "100")    # every action kind drawn
    suite, _ = syndbg_suite()
    rec = Recorder()
    suite.random(3, rec, "kvmconf run")
    assert "mainline" in rec.profiles
    (_, _, scripts, _, kinds, diverged), = rec.random
    assert scripts == 100 and diverged == 0 and all(kinds.values()), kinds
    assert rec.coverage["random"]


def test_a_shrink_that_breaks_keeps_the_original_fail_and_its_script(monkeypatch):
    monkeypatch.setenv("KVMCONF_SYNDBG_RANDOM", COUNT)
    seed = diverging_seed()
    suite, _ = syndbg_suite(status_write_exits, stream_error="ssh 127.0.0.1:1: Channel closed.")
    rec = Recorder()
    with pytest.raises(Divergence) as caught:
        suite.random(seed, rec, "kvmconf run")
    assert "shrinking broke (ssh 127.0.0.1:1: Channel closed.)" in caught.value.detail
    first = next(s for s in suite.generate(seed, int(COUNT)) if status_write_exits(s) != m.predict(s))
    assert replay_script(rec.fields["reproduce"]) == first


def test_generation_is_seeded_for_every_feature():
    for name in ("syndbg", "vfio"):
        guest = StandinGuest(None, PROBE)
        suite = Suite(features.get(name), guest, features.get(name).profiles[0], Kernel())
        a = suite.generate(5, 15)
        assert a == suite.generate(5, 15) and a != suite.generate(6, 15)
        for script in a:
            suite.model.predict(script, suite.profile)
            suite.codec.encode([script])


# ---- verdict rules ------------------------------------------------------------------

CASE = {"id": "syndbg/t/x", "rationale": "r", "script": {"actions": [{"op": "nop"}]}}


def test_a_setup_refusal_the_model_does_not_predict_fails():
    refused = [{"op": "setup", "ok": False, "failed": "KVM_SET_CPUID2 vcpu 0", "errno": 22}]
    suite, _ = syndbg_suite(lambda script: refused)
    with pytest.raises(Divergence) as caught:
        suite.named(CASE, Recorder())
    assert caught.value.field == "ok" and caught.value.expected is True


@pytest.mark.parametrize("version,config,verdict", [
    ("6.1.0-28-amd64", None, "FAIL"),                 # 6.1 always has it
    ("5.4.0", None, "SKIP"),                          # before KVM_CAP_SYS_HYPERV_CPUID
    ("6.8.0", None, "SKIP"),                          # CONFIG_KVM_HYPERV may be off, config unknown
    ("6.8.0", {"CONFIG_KVM_HYPERV": "y"}, "FAIL"),
    ("6.8.0", {"CONFIG_KVM": "y"}, "SKIP"),
])
def test_a_missing_capability_skips_only_when_the_kernel_may_lack_it(version, config, verdict):
    probe = {**PROBE, "caps": {**PROBE["caps"], "sys_hyperv_cpuid": 0}}
    suite, _ = syndbg_suite(probe=probe, kernel=Kernel(version, config))
    if verdict == "FAIL":
        with pytest.raises(CapabilityMissing, match="KVM_CAP_SYS_HYPERV_CPUID .* must have it"):
            suite.named(CASE, Recorder())
    else:
        with pytest.raises(pytest.skip.Exception, match=r"KVM_CAP_SYS_HYPERV_CPUID \(191\) missing: 0 from"):
            suite.named(CASE, Recorder())


def test_random_scripts_needing_a_legitimately_missing_capability_are_dropped(monkeypatch):
    monkeypatch.setenv("KVMCONF_SYNDBG_RANDOM", "100")
    probe = {**PROBE, "caps": {**PROBE["caps"], "disable_quirks2": 0}}
    suite, _ = syndbg_suite(probe=probe, kernel=Kernel("5.18.0"))
    rec = Recorder()
    suite.random(3, rec, "kvmconf run")
    assert 0 < rec.random[0][2] < 100
    with pytest.raises(CapabilityMissing):          # 6.1 must have the quirk
        syndbg_suite(probe=probe)[0].random(3, Recorder(), "kvmconf run")


def _load_testcase(path: str):
    spec = importlib.util.spec_from_file_location("t_" + path.replace("/", "_"), REPO / path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_migration_case_compares_a_whole_predicted_trace():
    from harness.compare import first_divergence
    mig = _load_testcase("testcases/vfio/test_vfio.py")
    probe = {"op": "migprobe", "result": "ok", "v1_region": 2}
    for writes in mig.V1_SEQUENCES:
        predicted = mig.predicted_v1_trace(probe, writes)
        assert len(predicted) == len(writes) + 2
        assert first_divergence(predicted, predicted[:-1]) is not None    # a short trace fails
    ok = mig.predicted_v1_trace(probe, mig.V1_SEQUENCES[0])
    wrong = [dict(e) for e in ok]
    wrong[-1]["device_state"] = vfio_model.V1_RUNNING
    assert first_divergence(ok, mig.outcome_only(wrong)) is not None


SUITE = '''
import pytest
from harness.compare import Divergence
from harness.errors import HarnessError, KernelFailure
from tests import standin

def case(name):
    return pytest.mark.parametrize("x", [name], ids=[name])

@case("f/v/skip-with-kernel-report")
def test_a(x):
    standin.REPORTS.append("BUG: kernel NULL pointer dereference, address: 0")
    pytest.skip("CAP missing: 0 from probe")

@case("f/v/keyerror")
def test_b(x):
    {}["missing"]

@case("f/v/assertion")
def test_c(x):
    assert 1 == 2, "harness expectation"

@case("f/v/harness-error")
def test_d(x):
    raise HarnessError("ssh lost")

@case("f/v/divergence")
def test_e(x):
    raise Divergence(1, "op", "field", 1, 2)

@case("f/v/kernel-failure")
def test_f(x):
    raise KernelFailure("stuck in D")

@case("f/v/pass-with-kernel-report")
def test_g(x):
    standin.REPORTS.append("WARNING: CPU: 0 PID: 1 at arch/x86/kvm/hyperv.c:1 x")

@case("f/v/plain-skip")
def test_h(x):
    pytest.skip("CAP missing: 0 from probe")
'''


def test_verdict_rules_of_the_run_plugin(tmp_path):
    import pytest as pt
    (tmp_path / "suite").mkdir()
    (tmp_path / "suite" / "test_rules.py").write_text(SUITE)
    record = RunRecord(tmp_path / "run.json", "r", "", {}, {"f": "p1"}, {"f": ("p1", "p2")})
    replaced = []
    ctx = SimpleNamespace(booted=standin.Booted(), options=SimpleNamespace(reproduce="kvmconf run", target=targets.TargetSpec("qemu"),
                                                                          user_space_only=False, retries=1),
                          replace_guest=lambda cid: replaced.append(cid) or "")
    plugin = KvmconfPlugin(ctx, record, ["f"], [])
    pt.main([str(tmp_path / "suite"), "-q", "-p", "no:cacheprovider", "--rootdir", str(tmp_path)],
            plugins=[plugin])
    status = {c["id"]: c["status"] for c in record.data["cases"]}
    # each ERROR was retried once (the same again: both attempts kept), nothing else was
    errors = sorted(cid for cid, s in status.items() if s == "ERROR")
    assert sorted(replaced) == errors
    assert all([a["status"] for a in record.case(cid)["attempts"]] == ["ERROR", "ERROR"] for cid in errors)
    assert status == {"f/v/skip-with-kernel-report": "FAIL", "f/v/keyerror": "ERROR",
                      "f/v/assertion": "ERROR", "f/v/harness-error": "ERROR",
                      "f/v/divergence": "FAIL", "f/v/kernel-failure": "FAIL",
                      "f/v/pass-with-kernel-report": "FAIL", "f/v/plain-skip": "SKIP"}
    reasons = {c["id"]: c["reason"] for c in record.data["cases"]}
    assert reasons["f/v/skip-with-kernel-report"].startswith("kernel report: BUG: kernel NULL")
    assert reasons["f/v/keyerror"] == "KeyError: 'missing'"
    assert record.data["profile_verdict"] == {"f": None}


# ---- the run-level profile verdict ------------------------------------------------

def _record(tmp_path, cases):
    record = RunRecord(tmp_path / "run.json", "r", "", {}, {"syndbg": "mainline"},
                       {"syndbg": ("mainline", "v7")})
    record.plan([(cid, "syndbg") for cid, _, _ in cases], "kvmconf run")
    for cid, status, explained in cases:
        if explained is not None:
            record.annotate(cid, explained_by=explained)
        record.finish(cid, status, "", 0.0)
    return record.data["profile_verdict"]["syndbg"]


def test_profile_verdict_names_the_profile_that_explains_every_case(tmp_path):
    assert _record(tmp_path, [("syndbg/a", "PASS", ["mainline", "v7"]),
                              ("syndbg/b", "PASS", ["mainline"])]) == "mainline"
    # the v7-like kernel: every case, passing or failing, is explained by v7
    assert _record(tmp_path, [("syndbg/a", "PASS", ["mainline", "v7"]),
                              ("syndbg/b", "FAIL", ["v7"]), ("syndbg/c", "SKIP", None)]) == "v7"


def test_profile_verdict_is_null_when_no_profile_explains_every_case(tmp_path):
    assert _record(tmp_path, [("syndbg/a", "FAIL", ["v7"]), ("syndbg/b", "FAIL", [])]) is None
    assert _record(tmp_path, [("syndbg/a", "FAIL", ["v7"]), ("syndbg/b", "ERROR", None)]) is None
    assert _record(tmp_path, [("syndbg/a", "FAIL", None)]) is None     # a kernel report
    assert _record(tmp_path, [("syndbg/a", "SKIP", None)]) is None     # nothing observed


def test_a_seed_draws_the_same_scripts_whatever_else_is_loaded():
    """hypothesis would mix in constants of every loaded project module: not for us."""
    import subprocess
    import sys
    code = ("import json, sys, tests.test_mutate_campaign, tests.test_model_rules\n"
            "from harness import features\nfrom harness.driver import Suite\nfrom tests.standin import Kernel\n"
            "print(json.dumps(Suite(features.get('vfio'), None, '6.1', Kernel()).generate(2, 20)))")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    here = Suite(features.get("vfio"), None, "6.1", Kernel()).generate(2, 20)
    assert json.loads(done.stdout) == here
