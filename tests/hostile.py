"""Helpers of the hostile-payload tests (tests/test_hostile_payload.py, tests/test_hostile_e2e.py):
the payload (guests/hostile), what each of its modes must end in, peak-RSS measurement
and the process-table check."""
from __future__ import annotations

import contextlib
import ctypes
import gc
import re
import resource
from dataclasses import dataclass
from pathlib import Path

from harness.errors import DeadlineExceeded
from harness.remote import OutputExceeded
from tests.conftest import FIXTURES, REPO, kvmconf, load_run

FOLDER = REPO / "guests" / "hostile"
ROW = FIXTURES / "features" / "hostile" / "row.py"
EXTRA = {"KVMCONF_EXTRA_FEATURES": str(ROW)}
FLOOD_MIB = 200
RSS_BOUND_MIB = 64       # the harness's peak RSS growth allowed for any mode

# mode argv -> (the error, what its message must say); the bound is the default 8 MiB
BOUNDED = {
    ("flood-stdout", str(FLOOD_MIB)): (OutputExceeded, "stdout ran past its bound of 8 MiB"),
    ("flood-stderr", str(FLOOD_MIB)): (OutputExceeded, "stderr ran past its bound of 8 MiB"),
    ("flood-both", str(FLOOD_MIB)): (OutputExceeded, "ran past its bound of 8 MiB"),
    ("flood-forever",): (OutputExceeded, "stdout ran past its bound of 8 MiB"),
    ("newlines", str(FLOOD_MIB)): (OutputExceeded, "stdout ran past its bound of 8 MiB"),
    ("endless-line", str(FLOOD_MIB)): (OutputExceeded, "stdout ran past its bound of 8 MiB"),
}
NEVER_EXITS = {
    ("hang",): (DeadlineExceeded, "no exit within 3 s"),
    ("busy",): (DeadlineExceeded, "no exit within 3 s"),
    ("close-stdout",): (DeadlineExceeded, "no exit within 3 s"),
}
NEVER_EXITS_TIMEOUT = 3.0

# `garbage K` (guests/hostile/hostile.c BAD[]): what split_traces says of line 2
GARBAGE = {
    0: "output line 2 is not JSON (Invalid control character",
    1: "output line 2 is not JSON (Extra data",
    2: "output line 2 is not JSON (Expecting value",
    3: "output line 2 is not JSON (Expecting value",
    4: "output line 2 is not an event: b'[\"script\",0]'",
    5: "output line 2 is not JSON (NaN is not JSON)",
    6: "output line 2 is not JSON (-Infinity is not JSON)",
    7: "output line 2 is not JSON ('utf-8' codec can't decode byte 0xff",
    8: "output line 2 is not an event",
    9: "output line 2 names script 7, not one of 0..0",
    10: "output line 2 names script True, not one of 0..0",
    11: "output line 2 is not JSON (nested too deeply)",
}


def payload() -> Path:
    from harness.payloads import build
    return build.build("hostile", FOLDER).path


def _status_kib(field: str) -> int:
    return int(re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M).group(1))


@dataclass
class Peak:
    growth_mib: float = 0.0
    exact: bool = True      # False: the peak could not be reset, growth is over the earlier peak


@contextlib.contextmanager
def peak_rss():
    """The growth of this process's peak RSS over the block, in MiB. The heap's free
    memory goes back to the kernel and the kernel's peak (VmHWM) is reset to the current
    RSS first (/proc/self/clear_refs "5"), so neither an earlier peak of the test process
    nor memory it freed hides the block's; without clear_refs, the growth of ru_maxrss
    (which stays at least the RSS the process had before its exec)."""
    peak = Peak()
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):     # freed heap back to the kernel, so
        ctypes.CDLL("libc.so.6").malloc_trim(0)            # the block cannot reuse it unseen
    try:
        Path("/proc/self/clear_refs").write_text("5")
        base = _status_kib("VmRSS")
    except OSError:
        peak.exact = False
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        yield peak
    finally:
        now = _status_kib("VmHWM") if peak.exact else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        peak.growth_mib = (now - base) / 1024


LIVE_HOSTILE = ('for f in /proc/[0-9]*/stat; do read -r l < "$f" 2>/dev/null || continue; '
                'case "$l" in *" (hostile) "[!Z]*) echo "$l";; esac; done; true')


def local_hostile() -> list[str]:
    """This machine's processes of the payload (named hostile, or hostile-<digest> as
    the payload cache names it) that are not zombies."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            line = stat.read_text()
            if re.match(r"\d+ \(hostile[-0-9a-f]*\) [^Z]", line):
                found.append(line.strip())
    return found


def run_hostile_suite(out: Path, history: Path, *target: str, timeout: float) -> dict:
    """`kvmconf run` of the hostile row (its cases, then its random op-scripts) on a
    target; checks that every hostile case ERRORed with its one-line reason and the
    well-behaved ones PASSed, and returns the record."""
    from tests.fixtures.features.hostile.cases import REASONS
    done = kvmconf("run", *target, "--features", "hostile", "--suite", "hostile", "--seed", "3", "--retries", "0",
                   "--output", str(out), "--history", str(history), env=EXTRA, timeout=timeout)
    assert done.returncode == 2, done.stderr[-2000:]
    record = load_run(out)
    got = {c["id"]: (c["status"], c["reason"]) for c in record["cases"]}
    assert list(got) == [*REASONS, "hostile/random/op-scripts"]
    for cid, says in {**REASONS, "hostile/random/op-scripts": None}.items():
        status, reason = got[cid]
        if says is None:
            assert status == "PASS", (cid, reason)
        else:
            assert status == "ERROR" and says in reason and "\n" not in reason, (cid, reason)
    assert "\0" not in (out / "junit.xml").read_text()
    return record
