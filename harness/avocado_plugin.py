"""kvmconf cases as avocado tests (docs/avocado.md).

- `KvmconfResolver` (entry point group avocado.plugins.resolver): a reference
  `kvmconf:<case-glob>` resolves to one runnable of kind "kvmconf" per case of the
  suite (`kvmconf list --json`), uri = the case id. A glob without '/' or '*' that
  names a feature (`kvmconf:syndbg`) selects all its cases.
- `KvmconfJob` (avocado.plugins.job.prepost): before the tests, writes the job's plan
  (the kvmconf cases of the job, by feature) to <job>/kvmconf-plan.json and a 0700
  state folder under the job's tmp dir; after them, ends any session still running.
- `KvmconfRunner` (avocado.plugins.runnable.runner, script avocado-runner-kvmconf):
  runs one case. The first runnable of a feature starts the job's session for that
  feature, one background `kvmconf run --case ... --json --output <job>/kvmconf-<feature>`
  for all the feature's cases in the job; every runnable of the feature waits for its
  own case's JSON line from that run and reports it (status map: STATUS_MAP).
"""
from __future__ import annotations

import fcntl
import fnmatch
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from avocado.core.nrunner.app import BaseRunnerApp
from avocado.core.nrunner.runnable import Runnable
from avocado.core.nrunner.runner import RUNNER_RUN_STATUS_INTERVAL, BaseRunner
from avocado.core.plugin_interfaces import JobPost, JobPre, Resolver
from avocado.core.resolver import ReferenceResolution, ReferenceResolutionResult
from avocado.core.utils import messages

PREFIX = "kvmconf:"
KIND = "kvmconf"
PLAN = "kvmconf-plan.json"
# extra `kvmconf run` words for every session of a job (e.g. "--kernel BZ --retries 0")
RUN_ARGS_ENV = "KVMCONF_AVOCADO_RUN_ARGS"
# seconds a runnable waits with no case of its session finishing before it ERRORs
IDLE_ENV = "KVMCONF_AVOCADO_IDLE_TIMEOUT"
IDLE_DEFAULT = 1800.0
# seconds the job's end waits for a session whose cases all reported to end by itself
END_GRACE = 120.0

# kvmconf status -> avocado result. MISS: a case kvmconf planned and never started
# because its run was interrupted by a signal (run.json "interrupted"); the kernel is
# not at fault and nothing ran, which is what avocado's INTERRUPTED says. A session
# that died without its summary (killed, crashed) makes its unreported cases ERROR.
STATUS_MAP = {"PASS": "pass", "FAIL": "fail", "ERROR": "error", "SKIP": "skip", "MISS": "interrupted"}


def avocado_result(status: str) -> str:
    """The avocado result of a kvmconf status; anything unknown is an error."""
    return STATUS_MAP.get(status, "error")


def kvmconf_command() -> list[str]:
    return [sys.executable, "-m", "harness.cli"]


def _target_words(words: list[str]) -> list[str]:
    for i, word in enumerate(words):
        if word == "--target" and i + 1 < len(words):
            return ["--target", words[i + 1]]
        if word.startswith("--target="):
            return [word]
    return []


# ---------------------------------------------------------------- resolver
_CASES: dict[tuple, list[dict]] = {}


def list_cases() -> list[dict]:
    """The suite's cases as `kvmconf list --json` gives them (cached per suite and target)."""
    target = _target_words(shlex.split(os.environ.get(RUN_ARGS_ENV, "")))
    key = (os.environ.get("KVMCONF_TESTCASES"), tuple(target))
    if key not in _CASES:
        done = subprocess.run(kvmconf_command() + ["list", "--json", *target], capture_output=True,
                              text=True, timeout=300, stdin=subprocess.DEVNULL,
                              cwd=Path(__file__).resolve().parents[1])
        if done.returncode != 0:
            lines = done.stderr.strip().splitlines() or [f"exit {done.returncode}"]
            raise RuntimeError(f"kvmconf list --json failed: {lines[-1]}")
        _CASES[key] = json.loads(done.stdout)["cases"]
    return _CASES[key]


def matches(case_id: str, pattern: str) -> bool:
    """A case glob, or a prefix of whole id components (`syndbg`, `syndbg/msr`)."""
    return fnmatch.fnmatchcase(case_id, pattern) or fnmatch.fnmatchcase(case_id, pattern.rstrip("/") + "/*")


def resolve_reference(reference: str, cases: list[dict] | None = None) -> ReferenceResolution:
    if not reference.startswith(PREFIX):
        return ReferenceResolution(reference, ReferenceResolutionResult.NOTFOUND)
    pattern = reference[len(PREFIX):]
    if not pattern:
        return ReferenceResolution(reference, ReferenceResolutionResult.NOTFOUND,
                                   info="kvmconf: an empty case glob (kvmconf:<case-glob>, e.g. kvmconf:smoke/*)")
    if cases is None:
        try:
            cases = list_cases()
        except (RuntimeError, OSError, ValueError, subprocess.TimeoutExpired) as e:
            return ReferenceResolution(reference, ReferenceResolutionResult.ERROR, info=str(e))
    chosen = [c for c in cases if matches(c["id"], pattern)]
    if not chosen:
        return ReferenceResolution(reference, ReferenceResolutionResult.NOTFOUND,
                                   info=f"kvmconf: {pattern!r} matches no case of the suite (kvmconf list)")
    runnables = [Runnable(KIND, c["id"], tags={"feature": {c["feature"]}}) for c in chosen]
    return ReferenceResolution(reference, ReferenceResolutionResult.SUCCESS, runnables)


class KvmconfResolver(Resolver):
    name = "kvmconf"
    description = "kvmconf:<case-glob> -> one kvmconf case per test"

    def resolve(self, reference):
        return resolve_reference(reference)


# ---------------------------------------------------------------- job plan
def write_plan(job_dir: Path, tmp_dir: Path, runnables) -> Path | None:
    """<job>/kvmconf-plan.json: the job's kvmconf cases by feature, where each
    feature's session writes, and the 0700 folder that holds the sessions' state."""
    features: dict[str, list[str]] = {}
    for runnable in runnables:
        if runnable.kind == KIND and runnable.uri not in features.get(runnable.uri.split("/", 1)[0], []):
            features.setdefault(runnable.uri.split("/", 1)[0], []).append(runnable.uri)
    if not features:
        return None
    state = tmp_dir / "kvmconf"
    state.mkdir(mode=0o700, exist_ok=True)
    os.chmod(state, 0o700)
    plan = {"state": str(state), "testcases": os.environ.get("KVMCONF_TESTCASES"),
            "run_args": shlex.split(os.environ.get(RUN_ARGS_ENV, "")),
            "idle_timeout": float(os.environ.get(IDLE_ENV) or IDLE_DEFAULT),
            "sessions": {f: {"cases": ids, "output": str(job_dir / f"kvmconf-{f}")}
                         for f, ids in features.items()}}
    path = job_dir / PLAN
    path.write_text(json.dumps(plan, indent=1))
    for runnable in runnables:
        if runnable.kind == KIND:
            runnable.kwargs["plan"] = str(path)
    return path


class KvmconfJob(JobPre, JobPost):
    name = "kvmconf"
    description = "plans the per-feature kvmconf sessions of a job and ends them"

    def pre(self, job):
        runnables = [r for suite in job.test_suites or [] for r in suite.tests or []]
        write_plan(Path(job.logdir), Path(job.tmpdir), runnables)

    def post(self, job):
        path = Path(job.logdir) / PLAN
        if path.exists():
            end_sessions(json.loads(path.read_text()))


# ---------------------------------------------------------------- sessions
def _escape(case_id: str) -> str:
    """A case id as a --case glob that matches only itself."""
    return "".join(f"[{ch}]" if ch in "*?[" else ch for ch in case_id)


class Session:
    """One feature's `kvmconf run` in one job. Files under the plan's 0700 state
    folder: <feature>.lock (who starts it), <feature>.alive (flock held by the running
    `kvmconf run` itself, so a dead session frees it), <feature>.json (pid, command).
    The run's stdout (one JSON line per finished case) is <output>/session.jsonl."""

    def __init__(self, plan: dict, feature: str):
        if feature not in plan["sessions"]:
            raise RuntimeError(f"the job's kvmconf plan has no case of feature {feature}")
        self.plan, self.feature = plan, feature
        self.state = Path(plan["state"])
        self.output = Path(plan["sessions"][feature]["output"])
        self.cases = plan["sessions"][feature]["cases"]
        self.stdout = self.output / "session.jsonl"
        self.stderr = self.output / "session.stderr.log"
        self.info_path = self.state / f"{feature}.json"
        self.alive_path = self.state / f"{feature}.alive"

    def command(self) -> list[str]:
        words = kvmconf_command() + ["run", "--json", "--output", str(self.output)]
        for case in self.cases:
            words += ["--case", _escape(case)]
        return words + list(self.plan.get("run_args") or [])

    def ensure_started(self) -> bool:
        """Start the session unless this job has one for the feature; True if this call started it."""
        with open(self.state / f"{self.feature}.lock", "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if self.info_path.exists():
                return False
            self.output.mkdir(parents=True, exist_ok=True)
            env = dict(os.environ)
            if self.plan.get("testcases"):
                env["KVMCONF_TESTCASES"] = self.plan["testcases"]
            alive = os.open(self.alive_path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(alive, fcntl.LOCK_EX)
                with open(self.stdout, "wb") as out, open(self.stderr, "wb") as err:
                    proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                            env=env, cwd=Path(__file__).resolve().parents[1],
                                            start_new_session=True, pass_fds=(alive,))
            finally:
                os.close(alive)     # the lock stays held through the child's copy
            self.info_path.write_text(json.dumps({"pid": proc.pid, "command": self.command(),
                                                  "started": time.time()}))
            return True

    def info(self) -> dict:
        try:
            return json.loads(self.info_path.read_text())
        except (OSError, ValueError):
            return {}

    def alive(self) -> bool:
        try:
            fd = os.open(self.alive_path, os.O_RDWR)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False

    def lines(self) -> list[dict]:
        try:
            text = self.stdout.read_text(errors="replace")
        except FileNotFoundError:
            return []
        out = []
        for line in text.splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                pass        # a line being written
        return out

    def result(self, case_id: str) -> dict | None:
        return next((l for l in self.lines() if l.get("case") == case_id), None)

    def summary(self) -> dict | None:
        return next((l for l in self.lines() if "summary" in l), None)

    def stderr_tail(self) -> str:
        try:
            lines = [l for l in self.stderr.read_text(errors="replace").splitlines() if l.strip()]
        except FileNotFoundError:
            return "no stderr"
        worst = [l for l in lines if l.startswith("kvmconf: ")]
        return (worst or lines or ["no stderr"])[-1]

    def record_case(self, case_id: str) -> dict | None:
        try:
            record = json.loads((self.output / "run.json").read_text())
        except (OSError, ValueError):
            return None
        case = next((c for c in record.get("cases", []) if c["id"] == case_id), None)
        return case and {**case, "interrupted": record.get("interrupted")}

    def end(self, grace: float) -> None:
        """Let the session end within `grace` s, else SIGTERM (kvmconf's own cleanup
        stops its guest) and, 30 s later, SIGKILL of its process group."""
        from avocado.utils.wait import wait_for
        if not self.alive():
            return
        pid = self.info().get("pid")
        if grace and wait_for(lambda: not self.alive(), timeout=grace, step=0.5):
            return
        for sig, wait in ((signal.SIGTERM, 30.0), (signal.SIGKILL, 10.0)):
            if not pid or not self.alive():
                return
            try:
                os.killpg(pid, sig)
            except ProcessLookupError:
                return
            wait_for(lambda: not self.alive(), timeout=wait, step=0.2)


def end_sessions(plan: dict) -> None:
    for feature in plan["sessions"]:
        session = Session(plan, feature)
        reported = {l.get("case") for l in session.lines()}
        session.end(END_GRACE if set(session.cases) <= reported else 0.0)


def outcome(session: Session, case_id: str) -> tuple[str, str, dict | None] | None:
    """(avocado result, reason, kvmconf line) once the case's outcome is known, else None."""
    line = session.result(case_id)
    if line:
        return avocado_result(line["status"]), line.get("reason") or "", line
    summary = session.summary()
    if summary is None and session.alive():
        return None
    line = session.result(case_id)         # written just before the session ended
    if line:
        return avocado_result(line["status"]), line.get("reason") or "", line
    case = session.record_case(case_id)
    pid = session.info().get("pid")
    if summary is None:
        status = f" (run.json has it {case['status']})" if case else ""
        return ("error", f"the kvmconf session of {session.feature} (pid {pid}) ended without "
                         f"a result for {case_id}{status}: {session.stderr_tail()}", None)
    if case is None:
        return "error", f"the kvmconf session of {session.feature} did not plan {case_id}", None
    if case["status"] == "MISS":
        why = f"interrupted by {case['interrupted']}" if case.get("interrupted") else "stopped"
        return avocado_result("MISS"), f"MISS: not started, the kvmconf run was {why}", case
    return avocado_result(case["status"]), case.get("reason") or "", case


def attach(session: Session, output_dir: str | None) -> list[str]:
    """A copy of the session's run.json and machine logs, as they are when the case ended."""
    if not output_dir:
        return []
    copied = []
    for path in sorted(session.output.iterdir()):
        if not path.is_file() or path.name in ("session.jsonl",) or path.stat().st_size > 64 << 20:
            continue
        if path.suffix in (".json", ".log", ".txt", ".xml"):
            try:
                shutil.copyfile(path, Path(output_dir) / path.name)
                copied.append(path.name)
            except OSError:
                pass
    return copied


# ---------------------------------------------------------------- runner
class KvmconfRunner(BaseRunner):
    """Runs one kvmconf case: its feature's session in this job (started by the
    first runnable of the feature) reports it; this runner waits for that report.

    Runnable attributes: uri = the case id; kwargs plan = the job's kvmconf-plan.json
    (set by the kvmconf job plugin)."""

    name = KIND
    description = "Runner for kvmconf cases (one kvmconf run per feature and job)"
    CONFIGURATION_USED = []

    def run(self, runnable):
        from avocado.utils.wait import wait_for
        yield messages.StartedMessage.get()
        case_id = runnable.uri or ""
        plan_path = (runnable.kwargs or {}).get("plan")
        try:
            if not plan_path:
                raise RuntimeError("no kvmconf plan for this job (the kvmconf job plugin did not run)")
            plan = json.loads(Path(plan_path).read_text())
            session = Session(plan, case_id.split("/", 1)[0])
            if case_id not in session.cases:
                raise RuntimeError(f"{case_id} is not in the job's kvmconf plan")
            started = session.ensure_started()
        except (OSError, ValueError, KeyError, RuntimeError) as e:
            yield messages.FinishedMessage.get("error", fail_reason=f"kvmconf: {e}")
            return
        info = session.info()
        yield messages.LogMessage.get(f"kvmconf session of {session.feature} "
                                      f"({'started by this test' if started else 'shared'}), "
                                      f"pid {info.get('pid')}: {shlex.join(info.get('command', []))}\n"
                                      f"output: {session.output}\n")
        idle = float(plan.get("idle_timeout") or IDLE_DEFAULT)
        last_size, last_change = -1, time.monotonic()
        while True:
            found = wait_for(lambda: outcome(session, case_id), timeout=RUNNER_RUN_STATUS_INTERVAL, step=0.1)
            if found:
                break
            size = session.stdout.stat().st_size if session.stdout.exists() else 0
            if size != last_size:
                last_size, last_change = size, time.monotonic()
            elif time.monotonic() - last_change > idle:
                found = ("error", f"no case of the kvmconf session of {session.feature} finished "
                                  f"within {idle:g} s ({IDLE_ENV})", None)
                break
            yield messages.RunningMessage.get()
        result, reason, line = found
        copied = attach(session, runnable.output_dir)
        yield messages.LogMessage.get(f"kvmconf: {json.dumps(line) if line else reason}\n"
                                      f"attached: {' '.join(copied) or 'nothing'}\n")
        yield messages.FinishedMessage.get(result, fail_reason=reason or None)


class RunnerApp(BaseRunnerApp):
    PROG_NAME = "avocado-runner-kvmconf"
    PROG_DESCRIPTION = "nrunner application for kvmconf cases"
    RUNNABLE_KINDS_CAPABLE = [KIND]

    # The runner class directly, not through its entry point: pkg_resources' load()
    # would first resolve the requirements of the distribution that declares it.
    def get_runner_from_runnable(self, runnable):
        if runnable.kind != KIND:
            raise ValueError(f"Unsupported kind of runnable: {runnable.kind}")
        return KvmconfRunner()

    def get_configuration_used_by_runners(self):
        return list(KvmconfRunner.CONFIGURATION_USED)


def main():
    app = RunnerApp(print)
    app.run()


if __name__ == "__main__":
    main()
