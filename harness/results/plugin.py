"""The pytest plugin of `kvmconf run`: selects cases, maps outcomes to statuses,
checks the kernel log after every case and rewrites run.json as it goes."""
from __future__ import annotations

import fnmatch
import time

import pytest

from harness import features, interrupt
from harness.compare import Divergence
from harness.errors import HarnessError, KernelFailure
from harness.payloads import build as payload_build
from harness.results.record import RunRecord


def case_id(item) -> str:
    """`<feature>/<group>/<name>` from a parametrize id that holds a '/', else
    `<package>/<test name>` (testcases/smoke/test_smoke.py::test_boot -> smoke/boot)."""
    callspec = getattr(item, "callspec", None)
    if callspec is not None and "/" in callspec.id:
        return callspec.id
    package = item.path.parent.name
    name = item.originalname.removeprefix("test_").replace("_", "-")
    return f"{package}/{name}"


def accepts(item, cid: str, target: str) -> bool:
    """Whether a case runs on the target kind: a case marked `targets(...)` where it
    says, a feature's cases where its registry row says, the rest everywhere."""
    marker = item.get_closest_marker("targets")
    if marker is not None:
        return target in marker.args
    feature = cid.split("/", 1)[0]
    return feature not in features.names() or target in features.get(feature).targets


def _one_line(text: str, limit: int = 400) -> str:
    line = " ".join(str(text).strip().split())
    return line if len(line) <= limit else line[:limit - 3] + "..."


class KvmconfPlugin:
    def __init__(self, ctx, record: RunRecord, suites: list[str], cases: list[str], progress=None):
        self.__name__ = "kvmconf"  # pluggy registers the plugin under this name
        self.ctx, self.record = ctx, record
        self.suites, self.cases = suites, cases
        self.progress = progress or (lambda text: None)
        self._ids: dict[str, str] = {}       # nodeid -> case id
        self._outcome: dict[str, dict] = {}  # case id -> status so far
        self.unmatched: list[str] = []       # --case patterns that select nothing
        self.interrupted: str | None = None  # the signal that stopped the session
        self._session = None

    # -- selection ----------------------------------------------------------
    def pytest_configure(self, config):
        config.addinivalue_line("markers", "targets(*kinds): the target kinds a case runs on "
                                           "(qemu, local, ssh; default: all)")

    def _selected(self, cid: str) -> bool:
        if self.ctx.options.user_space_only and any(
                cid.startswith(p) for row in features.rows() for p in row.guest_cases):
            return False
        if self.cases:
            return any(fnmatch.fnmatchcase(cid, pattern) for pattern in self.cases)
        return cid.split("/", 1)[0] in self.suites

    def pytest_sessionstart(self, session):
        self._session = session

    def pytest_keyboard_interrupt(self, excinfo):
        self.interrupted = interrupt.signame(excinfo.value)

    def finish_interrupted(self, signame: str) -> None:
        """The case the signal arrived in is ERROR (the planned ones after it stay MISS)."""
        for cid, state in self._outcome.items():
            if not state.get("finished"):
                state["finished"] = True
                self.record.finish(cid, "ERROR", f"interrupted by {signame}", time.monotonic() - state["start"])

    def pytest_collection_modifyitems(self, session, config, items):
        keep, drop = [], []
        target = self.ctx.options.target.kind
        for item in items:
            cid = case_id(item)
            (keep if self._selected(cid) and accepts(item, cid, target) else drop).append(item)
            self._ids[item.nodeid] = cid
        self.unmatched = [p for p in self.cases
                          if not any(fnmatch.fnmatchcase(self._ids[i.nodeid], p) for i in keep)]
        if self.unmatched:
            raise pytest.UsageError(f"--case {self.unmatched[0]}: matches no case")
        items[:] = keep
        config.hook.pytest_deselected(items=drop)
        # Smoke first (it owns the boot case), the features, smoke/poweroff last.
        def rank(item) -> int:
            cid = self._ids[item.nodeid]
            return 2 if cid == "smoke/poweroff" else 0 if cid.startswith("smoke/") else 1
        items.sort(key=rank)
        self.record.plan([(self._ids[i.nodeid], self._ids[i.nodeid].split("/", 1)[0]) for i in items],
                         self.ctx.options.reproduce)
        if hasattr(self.progress, "planned"):
            self.progress.planned([self._ids[i.nodeid] for i in items])

    # -- outcomes -----------------------------------------------------------
    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_protocol(self, item, nextitem):
        """pytest's protocol, plus one retry of a case that ERRORed, in a fresh machine
        (a flake of the infrastructure is not a verdict): run.json keeps both attempts
        and the final status is the retry's."""
        from _pytest.runner import runtestprotocol
        item.ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
        runtestprotocol(item, nextitem=nextitem, log=True)
        cid = self._ids[item.nodeid]
        state = self._outcome[cid]
        for _ in range(self.ctx.options.retries):
            if state["status"] not in (None, "ERROR"):
                break
            attempt = {"status": state["status"] or "ERROR", "reason": state.get("reason") or "no outcome",
                       "duration_s": round(time.monotonic() - state["start"], 3)}
            replaced = self.ctx.replace_guest(cid)
            self.progress(f"retry {cid}" + (f" in a fresh machine ({replaced})" if replaced else ""))
            attempts = state.get("attempts", []) + [attempt]
            state = self._outcome[cid] = {"status": None, "start": time.monotonic(), "attempts": attempts}
            item._initrequest()      # fresh fixture values, as pytest-rerunfailures does
            runtestprotocol(item, nextitem=nextitem, log=True)
        item.ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
        return True

    def pytest_runtest_logstart(self, nodeid, location):
        self._outcome[self._ids[nodeid]] = {"status": None, "start": time.monotonic()}
        if hasattr(self.progress, "started"):
            self.progress.started(self._ids[nodeid])
        else:
            self.progress(f"running {self._ids[nodeid]}")

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item, call):
        outcome = yield
        report = outcome.get_result()
        cid = self._ids[item.nodeid]
        state = self._outcome[cid]
        excinfo = call.excinfo
        lost = None
        if call.when == "call" and self.ctx.booted:
            problems, alive = self.ctx.booted.after_case(cid.split("/", 1)[0])
            lost = None if alive else self.ctx.discard_dead_guest(cid)
            stuck = excinfo is not None and isinstance(excinfo.value, KernelFailure)
            if problems and not stuck:
                # A kernel report during the case is a FAIL on its own, whatever the
                # case concluded, SKIP included (design section 5); no model profile
                # explains it.
                report.outcome = "failed"
                report.longrepr = "kernel report during the case:\n" + "\n".join(problems)
                state.update(status="FAIL", reason="kernel report: " + _one_line(problems[0]),
                             divergence=None)
                self.record.annotate(cid, explained_by=[])
                return
            if lost and report.outcome == "passed":
                report.outcome = "failed"
                report.longrepr = (f"the guest stopped answering after the case; {self.ctx.lost_reason} "
                                   f"(evidence: {lost.name})")
                state.update(status="ERROR", reason=_one_line(report.longrepr))
                return
        if report.skipped:
            exc = excinfo.value if excinfo else None
            if isinstance(exc, pytest.skip.Exception):
                reason = exc.msg or ""      # pytest's text would prefix a subclass's name
            else:                           # a skip marker: pytest made the text
                reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
                reason = reason.removeprefix("Skipped: ")
            if state["status"] is None:
                # harness/missing.py: the capability the SKIP names, for certification
                state.update(status="SKIP", reason=_one_line(reason),
                             capability=getattr(exc, "capability", None))
        elif report.failed:
            if state["status"] in ("FAIL", "ERROR"):
                return  # the first failure is the one that counts
            exc = excinfo.value if excinfo else None
            if call.when == "call" and isinstance(exc, Divergence):
                state.update(status="FAIL", reason=_one_line(exc.summary()), divergence=exc.as_record())
            elif call.when == "call" and isinstance(exc, KernelFailure):
                state.update(status="FAIL", reason=_one_line(str(exc)))
            else:
                # Anything else is ours or the infrastructure's, never the kernel's:
                # a HarnessError, a bug in the harness or a case (KeyError...), a
                # fixture that broke. A guest lost on the way says how it was found.
                why = _failure_text(exc, report)
                if call.when == "call" and lost:
                    why = f"{self.ctx.lost_reason} (evidence: {lost.name}): {why}"
                state.update(status="ERROR", reason=_one_line(why))
        elif report.passed and call.when == "call" and state["status"] is None:
            state.update(status="PASS", reason="")

    def pytest_runtest_logfinish(self, nodeid, location):
        cid = self._ids[nodeid]
        state = self._outcome[cid]
        status = state["status"] or "ERROR"
        state["finished"] = True
        self.record.data["payloads"] = payload_build.built()   # what ran, by sha256
        self.record.finish(cid, status, state.get("reason") or ("" if status == "PASS" else "no outcome"),
                           time.monotonic() - state["start"], state.get("divergence"), state.get("attempts"),
                           state.get("capability"))
        if hasattr(self.progress, "finished"):
            self.progress.finished(cid, status, self.record.case(cid)["reason"], time.monotonic() - state["start"])
        else:
            self.progress(f"{status:5} {cid}")
        if self.record.write_error and self._session is not None:
            self._session.shouldstop = self.record.write_error


def _failure_text(exc, report) -> str:
    if isinstance(exc, HarnessError) and str(exc).strip():
        return str(exc)
    if exc is not None and str(exc).strip():
        return f"{type(exc).__name__}: {exc}"
    return report.longreprtext.strip().splitlines()[-1] if report.longreprtext else "failed"
