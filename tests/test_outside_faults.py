"""Faults from outside a run (issue 14 items 1-2), each against real QEMU: a signal to
`kvmconf run` mid-case, QEMU killed or frozen, the SSH connection cut, and a folder a
killed run left behind. The suite is tests/fixtures/outsidefaults: cases that sit in a
guest command (8 s) after writing <output>/<name>.started."""
from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from harness import tmpdirs
from harness.machine import qemu_pids_writing_to as qemu_pids
from harness.results.schema import problems
from tests.conftest import REPO, end_with_pytest, kvmconf, load_run, statuses

SUITE = {"KVMCONF_TESTCASES": str(REPO / "tests/fixtures/outsidefaults")}
CASES = ["smoke/first", "smoke/wait-a", "smoke/after-a", "smoke/wait-b", "smoke/after-b",
         "smoke/wait-c", "smoke/after-c"]


def group_exists(pgid: int) -> bool:
    """Whether any process (a zombie included) is left in process group `pgid`."""
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


class Run:
    """A `kvmconf run` of the waiting suite in the background."""

    def __init__(self, tmp_path: Path):
        self.out, self.history = tmp_path / "o", tmp_path / "h.sqlite"
        self.stderr = open(tmp_path / "stderr", "w+")
        self.proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "run", "--suite", "smoke", "--retries", "0",
                                      "--output", str(self.out), "--history", str(self.history)],
                                     cwd=REPO, env={**os.environ, **SUITE}, stdout=subprocess.DEVNULL,
                                     stderr=self.stderr, preexec_fn=end_with_pytest)

    def wait_started(self, name: str, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while not (self.out / f"{name}.started").exists():
            assert self.proc.poll() is None, f"the run ended before {name}: {self.err()[-2000:]}"
            assert time.monotonic() < deadline, f"{name} did not start within {timeout} s"
            time.sleep(0.1)
        time.sleep(1.0)   # inside the guest command now

    def finish(self, timeout: float = 400) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGKILL)

    def err(self) -> str:
        self.stderr.seek(0)
        return self.stderr.read()


@pytest.mark.e2e
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_mid_case_ends_the_run_cleanly_and_records_it(tmp_path, debian_kernel, sig):
    run = Run(tmp_path)
    try:
        run.wait_started("wait-a")
        (qemu,) = qemu_pids(run.out)
        run.proc.send_signal(sig)
        sent = time.monotonic()
        while (qemu_pids(run.out) or group_exists(qemu)) and time.monotonic() - sent < 5:
            time.sleep(0.05)
        gone_after = time.monotonic() - sent
        assert not qemu_pids(run.out) and not group_exists(qemu), f"QEMU still there {gone_after:.1f} s after {sig.name}"
    finally:
        code = run.finish(60)
    assert code == 2, run.err()[-2000:]
    lines = [line for line in run.err().splitlines() if line.startswith("kvmconf: ")]
    assert lines[0] == f"kvmconf: interrupted by {sig.name}: the case it arrived in is ERROR, the 5 not started are MISS"
    assert "Traceback" not in run.err()
    record = load_run(run.out)
    assert problems(record) == [] and record["interrupted"] == sig.name
    assert statuses(record) == {"smoke/first": "PASS", "smoke/wait-a": "ERROR",
                                **{c: "MISS" for c in CASES[2:]}}
    assert next(c for c in record["cases"] if c["id"] == "smoke/wait-a")["reason"] == f"interrupted by {sig.name}"
    # junit and the history say the same
    suite = ET.parse(run.out / "junit.xml").getroot().find("testsuite")
    junit = {f"{t.get('classname')}/{t.get('name')}": (t[0].tag if len(t) else "passed") for t in suite.iter("testcase")}
    assert junit == {"smoke/first": "passed", "smoke/wait-a": "error", **{c: "skipped" for c in CASES[2:]}}
    with sqlite3.connect(run.history) as db:
        rows = dict(db.execute("SELECT case_id, status FROM cases WHERE run_id = ?", (record["run_id"],)))
    assert rows == statuses(record)
    assert tmpdirs.owned_by(run.proc.pid) == [], "the run's temporary folder was left behind"


@pytest.mark.e2e
def test_qemu_killed_frozen_or_cut_off_costs_one_case_each(tmp_path, debian_kernel):
    """wait-a: SIGKILL to QEMU; wait-b: SIGSTOP to QEMU (QMP stops answering too);
    wait-c: the SSH connection to the forwarded port destroyed (ss -K), not closed by us."""
    run = Run(tmp_path)
    try:
        run.wait_started("wait-a")
        (qemu,) = qemu_pids(run.out)
        os.kill(qemu, signal.SIGKILL)
        run.wait_started("wait-b")
        (frozen,) = qemu_pids(run.out)
        os.kill(frozen, signal.SIGSTOP)
        run.wait_started("wait-c")
        (qemu,) = qemu_pids(run.out)
        port = re.search(rb"hostfwd=tcp:127\.0\.0\.1:(\d+)-", Path(f"/proc/{qemu}/cmdline").read_bytes()).group(1)
        cut = subprocess.run(["ss", "-K", "-t", f"( sport = :{port.decode()} or dport = :{port.decode()} )"],
                             capture_output=True, text=True, timeout=30)
        assert cut.returncode == 0 and port.decode() in cut.stdout, cut
    finally:
        code = run.finish()
    assert code == 2, run.err()[-2000:]
    record = load_run(run.out)
    assert problems(record) == []
    assert statuses(record) == {c: "ERROR" if "wait-" in c else "PASS" for c in CASES}
    reasons = {c["id"]: c["reason"] for c in record["cases"]}
    assert "QEMU exited (killed by SIGKILL)" in reasons["smoke/wait-a"]
    assert "no exit within 12 s" in reasons["smoke/wait-b"] and "QEMU stopped (state T)" in reasons["smoke/wait-b"]
    assert "connection" in reasons["smoke/wait-c"].lower()
    evidence = {c: (run.out / f"{m}.lost-after-smoke_{c}.txt").read_text()
                for m, c in (("all", "wait-a"), ("all-2", "wait-b"), ("all-3", "wait-c"))}
    assert "QEMU exited (killed by SIGKILL;" in evidence["wait-a"] and "serial tail" in evidence["wait-a"]
    assert "QMP query-status: no answer" in evidence["wait-b"] and "state T (stopped)" in evidence["wait-b"]
    assert "'status': 'running'" in evidence["wait-c"]
    assert qemu_pids(run.out) == [] and tmpdirs.owned_by(run.proc.pid) == []


@pytest.mark.e2e
def test_a_killed_test_run_takes_its_kvmconf_run_and_qemu_with_it(tmp_path, debian_kernel):
    """A stand-in for pytest starts `kvmconf run` the way tests/conftest.py does and is
    SIGKILLed mid-case (as `pkill -9 pytest` would): the run gets SIGTERM, cleans up."""
    out = tmp_path / "o"
    parent = subprocess.Popen([sys.executable, "-c", (
        "import os, subprocess, sys\n"
        "from tests.conftest import end_with_pytest\n"
        f"subprocess.Popen([sys.executable, '-m', 'harness.cli', 'run', '--suite', 'smoke', '--retries', '0', '--output', {str(out)!r},"
        f" '--history', {str(tmp_path / 'h')!r}], preexec_fn=end_with_pytest, stdout=subprocess.DEVNULL,"
        " stderr=subprocess.DEVNULL).wait()\n")], cwd=REPO, env={**os.environ, **SUITE})
    deadline = time.monotonic() + 300
    while not (out / "wait-a.started").exists():
        assert parent.poll() is None and time.monotonic() < deadline, "wait-a never started"
        time.sleep(0.1)
    (qemu,) = qemu_pids(out)
    run_pid = int(subprocess.run(["pgrep", "-P", str(parent.pid)], capture_output=True, text=True).stdout.split()[0])
    parent.kill()
    parent.wait(timeout=10)
    killed = time.monotonic()
    while (Path(f"/proc/{run_pid}").exists() or group_exists(qemu)) and time.monotonic() - killed < 15:
        time.sleep(0.1)
    assert not Path(f"/proc/{run_pid}").exists() and not group_exists(qemu)
    record = load_run(out)
    assert record["interrupted"] == "SIGTERM" and statuses(record)["smoke/wait-a"] == "ERROR"
    assert tmpdirs.owned_by(run_pid) == []


def test_a_folder_left_by_a_killed_command_is_reclaimed(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    left = Path(tmpdirs.make("kvmconf-run-"))
    (left / tmpdirs.OWNER).write_text(f"{dead.pid} 1\n")        # its owner is gone
    (left / "initrd.cpio").write_bytes(b"\0" * 4096)
    mine = tmpdirs.make("kvmconf-run-")                          # owned by this live process
    stranger = Path(left.parent / "kvmconf-run-unmarked")        # no mark: not ours to judge
    stranger.mkdir(exist_ok=True)
    try:
        done = kvmconf("run", "--case", "smoke/no-such-case", "--output", str(tmp_path / "o"),
                       "--history", str(tmp_path / "h"))
        assert done.returncode == 2
        assert not left.exists() and mine.exists() and stranger.exists()
    finally:
        for folder in (left, mine, stranger):
            subprocess.run(["rm", "-rf", str(folder)], check=True)


@pytest.mark.e2e
def test_a_full_disk_under_the_results_ends_the_run_with_one_line(tmp_path, debian_kernel):
    """The output folder is a small tmpfs the test fills after the first case: the run
    stops with one line naming the folder, exit 2, and the run.json written before the
    disk filled is still whole."""
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], check=True, timeout=30)
    try:
        out = mount / "o"
        proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "run", "--suite", "smoke", "--retries", "0",
                                 "--output", str(out), "--history", str(tmp_path / "h.sqlite")],
                                cwd=REPO, env={**os.environ, **SUITE}, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True, preexec_fn=end_with_pytest)
        try:
            deadline = time.monotonic() + 300
            while not (out / "wait-a.started").exists():
                assert proc.poll() is None and time.monotonic() < deadline, "wait-a never started"
                time.sleep(0.1)
            with open(mount / "filler", "wb") as f, pytest.raises(OSError, match="No space left"):
                while True:
                    f.write(b"\0" * (1 << 16))
                    f.flush()
            _, stderr = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
        assert proc.returncode == 2, stderr[-2000:]
        assert "Traceback" not in stderr
        lines = [line for line in stderr.splitlines() if line.startswith("kvmconf: ")]
        assert lines == [f"kvmconf: --output {out}: cannot write run.json: No space left on device"], stderr[-2000:]
        record = load_run(out)            # the last whole record: the first case done
        assert problems(record) == [] and statuses(record)["smoke/first"] == "PASS"
        assert qemu_pids(out) == [] and tmpdirs.owned_by(proc.pid) == []
    finally:
        subprocess.run(["umount", "-l", str(mount)], timeout=30)
