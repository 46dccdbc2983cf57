"""The avocado plugin (harness/avocado_plugin.py, docs/avocado.md): kvmconf:<glob>
references, one avocado test per kvmconf case, one `kvmconf run` per feature and job."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness import avocado_plugin as plugin
from tests.conftest import FIXTURES, REPO, end_with_pytest

AVOCADO = Path(sys.executable).with_name("avocado")


def avocado(*args: str, env: dict | None = None, cwd: Path, timeout: float = 900) -> subprocess.CompletedProcess:
    full = {**os.environ, **(env or {})}
    full["PATH"] = f"{Path(sys.executable).parent}:{full.get('PATH', '')}"   # avocado-runner-kvmconf
    return subprocess.run([str(AVOCADO), *args], cwd=cwd, env=full, capture_output=True, text=True,
                          timeout=timeout, preexec_fn=end_with_pytest)


def job_results(results: Path) -> tuple[Path, dict[str, dict]]:
    job = next(p for p in results.iterdir() if p.name.startswith("job-"))
    data = json.loads((job / "results.json").read_text())
    return job, {t["name"]: t for t in data["tests"]}


# ---------------------------------------------------------------- no guest
def test_avocado_lists_a_features_cases_and_says_why_a_reference_matches_nothing(tmp_path):
    done = avocado("-V", "list", "kvmconf:syndbg", "kvmconf:nosuch/*", cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    listed = [l.split()[1] for l in done.stdout.splitlines()
              if l.startswith("kvmconf ") and not l.split()[1].startswith("kvmconf:")]
    expected = json.loads(subprocess.run([sys.executable, "-m", "harness.cli", "list", "--json",
                                          "--features", "syndbg"], cwd=REPO, capture_output=True,
                                         text=True, check=True).stdout)["cases"]
    assert listed == [c["id"] for c in expected if c["feature"] == "syndbg"] and len(listed) > 50
    assert "kvmconf:nosuch/* kvmconf: 'nosuch/*' matches no case of the suite" in " ".join(done.stdout.split())


def test_resolver_on_references():
    from avocado.core.resolver import ReferenceResolutionResult as R
    cases = [{"id": "smoke/boot", "feature": "smoke"}, {"id": "syndbg/msr/all-ones", "feature": "syndbg"},
             {"id": "syndbg/msr/reads-never-exit", "feature": "syndbg"}]
    got = plugin.resolve_reference("kvmconf:syndbg/msr", cases)
    assert got.result == R.SUCCESS
    assert [(r.kind, r.uri) for r in got.resolutions] == [("kvmconf", "syndbg/msr/all-ones"),
                                                          ("kvmconf", "syndbg/msr/reads-never-exit")]
    assert [r.uri for r in plugin.resolve_reference("kvmconf:*/boot", cases).resolutions] == ["smoke/boot"]
    bad = plugin.resolve_reference("kvmconf:warpdrive/*", cases)
    assert bad.result == R.NOTFOUND and "'warpdrive/*' matches no case" in bad.info
    assert plugin.resolve_reference("kvmconf:", cases).result == R.NOTFOUND
    assert plugin.resolve_reference("tests/foo.py", cases).result == R.NOTFOUND   # another resolver's


def test_resolver_error_when_the_suite_does_not_collect(monkeypatch):
    from avocado.core.resolver import ReferenceResolutionResult as R

    def broken():
        raise RuntimeError("kvmconf list --json failed: kvmconf: collecting the suite failed")
    monkeypatch.setattr(plugin, "list_cases", broken)
    got = plugin.resolve_reference("kvmconf:smoke/*")
    assert got.result == R.ERROR and "collecting the suite failed" in got.info


def test_status_map():
    assert {s: plugin.avocado_result(s) for s in ("PASS", "FAIL", "ERROR", "SKIP", "MISS", "???")} == {
        "PASS": "pass", "FAIL": "fail", "ERROR": "error", "SKIP": "skip", "MISS": "interrupted", "???": "error"}


def _session(tmp_path, lines: list[dict], record: dict | None = None, stderr: str = "") -> plugin.Session:
    tmp_path.mkdir()
    runnable = type("R", (), {"kind": "kvmconf"})
    runs = []
    for cid in ("smoke/a", "smoke/b"):
        r = runnable()
        r.uri, r.kwargs = cid, {}
        runs.append(r)
    plan = json.loads(plugin.write_plan(tmp_path, tmp_path, runs).read_text())
    assert runs[0].kwargs["plan"] == str(tmp_path / plugin.PLAN)
    assert (tmp_path / "kvmconf").stat().st_mode & 0o777 == 0o700
    session = plugin.Session(plan, "smoke")
    session.output.mkdir()
    session.stdout.write_text("".join(json.dumps(l) + "\n" for l in lines))
    session.stderr.write_text(stderr)
    if record is not None:
        (session.output / "run.json").write_text(json.dumps(record))
    return session


def test_outcomes_of_a_finished_an_interrupted_and_a_dead_session(tmp_path):
    line = {"case": "smoke/a", "status": "FAIL", "reason": "Kernel panic - not syncing", "duration_s": 1.0}
    # finished: the case's own line; a case the run has as MISS after a signal: INTERRUPTED
    s = _session(tmp_path / "1", [line, {"run_id": "x", "summary": {}, "exit_code": 1, "interrupted": "SIGTERM"}],
                 {"interrupted": "SIGTERM", "cases": [{"id": "smoke/b", "status": "MISS", "reason": "not started"}]})
    assert plugin.outcome(s, "smoke/a") == ("fail", "Kernel panic - not syncing", line)
    assert plugin.outcome(s, "smoke/b")[:2] == (
        "interrupted", "MISS: not started, the kvmconf run was interrupted by SIGTERM")
    # dead (no summary, nobody holds the session's lock): ERROR with its last stderr line
    s = _session(tmp_path / "2", [line], {"cases": [{"id": "smoke/b", "status": "MISS", "reason": ""}]},
                 stderr="kernel: Debian's\nkvmconf: --case smoke/b: matches no case\n")
    result, reason, _ = plugin.outcome(s, "smoke/b")
    assert result == "error" and "ended without a result for smoke/b (run.json has it MISS)" in reason
    assert reason.endswith("kvmconf: --case smoke/b: matches no case")


def test_a_case_glob_matches_only_its_case():
    import fnmatch
    assert all(fnmatch.fnmatchcase(cid, plugin._escape(cid)) for cid in ("a/b[1]", "a/*", "a/?"))
    assert not fnmatch.fnmatchcase("a/bb", plugin._escape("a/*"))


PLAIN_CASES = '''
import os, signal, pytest
from harness.errors import KernelFailure

def test_a_pass():
    pass

def test_b_fail():
    raise KernelFailure("the kernel said no")

def test_c_error():
    raise RuntimeError("a harness bug")

def test_d_skip():
    pytest.skip("not on this host")

def test_e_die():
    os.kill(os.getpid(), signal.SIGKILL)

def test_f_after():
    pass
'''


def test_avocado_runs_a_suite_through_one_session_without_a_guest(tmp_path):
    """Cases that need no guest: every status, one `kvmconf run` for all, and a session
    killed mid-job (its case and the ones after it ERROR with the reason)."""
    suite = tmp_path / "suite"
    (suite / "smoke").mkdir(parents=True)
    (suite / "smoke" / "test_plain.py").write_text(PLAIN_CASES)
    env = {"KVMCONF_TESTCASES": str(suite), plugin.RUN_ARGS_ENV: f"--history {tmp_path / 'h.sqlite'} --retries 0"}
    done = avocado("run", "--job-results-dir", str(tmp_path / "r"), "kvmconf:smoke/a-pass",
                   "kvmconf:smoke/[b-d]-*", "kvmconf:smoke/e-die", "kvmconf:smoke/f-after", env=env, cwd=tmp_path)
    job, tests = job_results(tmp_path / "r")
    assert {n: t["status"] for n, t in tests.items()} == {
        "smoke/a-pass": "PASS", "smoke/b-fail": "FAIL", "smoke/c-error": "ERROR", "smoke/d-skip": "SKIP",
        "smoke/e-die": "ERROR", "smoke/f-after": "ERROR"}, done.stdout[-3000:]
    assert tests["smoke/b-fail"]["fail_reason"] == "the kernel said no"
    assert "RuntimeError: a harness bug" in tests["smoke/c-error"]["fail_reason"]
    assert tests["smoke/d-skip"]["fail_reason"] == "not on this host"
    assert "ended without a result for smoke/f-after (run.json has it MISS)" in tests["smoke/f-after"]["fail_reason"]
    plan = json.loads((job / plugin.PLAN).read_text())
    assert list(plan["sessions"]) == ["smoke"] and len(plan["sessions"]["smoke"]["cases"]) == 6
    lines = (job / "kvmconf-smoke" / "session.jsonl").read_text().splitlines()
    assert [json.loads(l)["case"] for l in lines] == ["smoke/a-pass", "smoke/b-fail", "smoke/c-error", "smoke/d-skip"]
    assert json.loads((Path(tests["smoke/b-fail"]["logdir"]) / "run.json").read_text())["cases"][1]["status"] == "FAIL"
    assert done.returncode != 0


# ---------------------------------------------------------------- a real guest
@pytest.mark.e2e
def test_avocado_runs_smoke_a_feature_and_a_panic_with_one_boot_per_feature(tmp_path, debian_kernel):
    """One job: smoke/boot, smoke/ssh and faultsuite's smoke/panic (one guest, the panic
    last), sev_es/msr/* (compiled from the kernel's source: no guest)."""
    suite = tmp_path / "suite"
    (suite / "smoke").mkdir(parents=True)
    (suite / "conftest.py").write_text(   # the real suite's fixtures, as faultsuite's conftest.py
        f"import runpy\nglobals().update({{k: v for k, v in runpy.run_path({str(REPO / 'testcases' / 'conftest.py')!r})"
        f".items() if not k.startswith('__')}})\n")
    (suite / "smoke" / "test_smoke.py").symlink_to(REPO / "testcases" / "smoke" / "test_smoke.py")
    # after test_smoke.py in collection order: the panic is the guest's last case
    (suite / "smoke" / "test_zz_breakers.py").symlink_to(FIXTURES / "faultsuite" / "smoke" / "test_guest_breakers.py")
    (suite / "sev_es").symlink_to(REPO / "testcases" / "sev_es")
    (suite / "test_opscripts.py").symlink_to(REPO / "testcases" / "test_opscripts.py")   # the named cases
    env = {"KVMCONF_TESTCASES": str(suite), plugin.RUN_ARGS_ENV: f"--history {tmp_path / 'h.sqlite'} --retries 0"}
    done = avocado("run", "--job-results-dir", str(tmp_path / "r"), "kvmconf:smoke/boot", "kvmconf:smoke/ssh",
                   "kvmconf:smoke/panic", "kvmconf:sev_es/msr/*", env=env, cwd=tmp_path)
    job, tests = job_results(tmp_path / "r")
    statuses = {n: t["status"] for n, t in tests.items()}
    msr = [n for n in statuses if n.startswith("sev_es/msr/")]
    assert len(msr) >= 3 and all(statuses[n] == "PASS" for n in msr), done.stdout[-3000:]
    assert {n: statuses[n] for n in ("smoke/boot", "smoke/ssh", "smoke/panic")} == {
        "smoke/boot": "PASS", "smoke/ssh": "PASS", "smoke/panic": "FAIL"}, done.stdout[-3000:]
    reason = tests["smoke/panic"]["fail_reason"]
    assert "Kernel panic" in reason or "sysrq" in reason.lower()
    # the reason reaches the XML and HTML results too
    assert "smoke/panic" in (job / "results.xml").read_text() and "smoke/panic" in (job / "results.html").read_text()
    # boots, from QEMU's launch logs: one per feature at most (sev_es boots none)
    boots = {f: len(list((job / f"kvmconf-{f}").glob("*.argv.json"))) for f in ("smoke", "sev_es")}
    assert boots == {"smoke": 1, "sev_es": 0}
    panic_dir = Path(tests["smoke/panic"]["logdir"])
    assert (panic_dir / "run.json").exists() and list(panic_dir.glob("*.serial.log"))
    assert "Kernel panic" in next(panic_dir.glob("*.serial.log")).read_text()


def test_avocado_loads_the_plugins_entry_points():
    """The way avocado loads them (pkg_resources, requirements resolved first): a
    distribution of their own that requires nothing (avocado-plugin/pyproject.toml)."""
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import pkg_resources
    for group, obj in (("avocado.plugins.resolver", plugin.KvmconfResolver),
                       ("avocado.plugins.runnable.runner", plugin.KvmconfRunner),
                       ("avocado.plugins.job.prepost", plugin.KvmconfJob)):
        eps = list(pkg_resources.iter_entry_points(group, "kvmconf"))
        assert len(eps) == 1 and eps[0].load() is obj
    done = subprocess.run([str(Path(sys.executable).with_name("avocado-runner-kvmconf")), "capabilities"],
                          capture_output=True, text=True, timeout=120)
    assert json.loads(done.stdout)["runnables"] == ["kvmconf"]
