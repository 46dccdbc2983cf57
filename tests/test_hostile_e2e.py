"""End to end: the hostile payload (guests/hostile) in a real QEMU guest over real SSH
(paramiko to the guest's dropbear). Each mode (megabytes on stdout or stderr, output
without end, a line without end, never exiting, closed output) ends in a HarnessError
with a one-line reason naming the command and the bound, the harness's peak RSS stays
bounded, no hostile process is left in the guest's process table and the same SSH
connection runs the next command. Then the case-level outcome: `kvmconf run` of the
hostile fixture feature in a guest ERRORs each hostile case and the run goes on (one
guest for the whole run: none was lost). tests/test_hostile_payload.py does the same
without QEMU."""
from __future__ import annotations

import re
import shutil
import time
from types import SimpleNamespace

import pytest

from harness.errors import DeadlineExceeded, HarnessError
from harness.guestimage import PAYLOAD_DIR
from harness.payloads import trace
from harness.remote import OutputExceeded
from tests import hostile

pytestmark = pytest.mark.e2e

GUEST_PAYLOAD = f"{PAYLOAD_DIR}/hostile"     # where the stuck watch looks at it too
NEVER_EXITS_TIMEOUT = 8.0                    # the stuck watch (every 5 s) runs once meanwhile


@pytest.fixture(scope="module")
def guest(debian_kernel, tmp_path_factory):
    """The default feature machine (nested) on Debian's kernel, booted once."""
    from harness.commands.probe import boot_once
    logdir = tmp_path_factory.mktemp("hostile-guest")
    booted, _, _, workdir = boot_once(SimpleNamespace(accel="auto", boot_timeout=120.0), debian_kernel,
                                      "nested", logdir)
    try:
        booted.remote.upload(str(hostile.payload()), GUEST_PAYLOAD, mode=0o755)
        yield booted
    finally:
        booted.poweroff()
        shutil.rmtree(workdir, ignore_errors=True)


def _left_in_guest(guest) -> list[str]:
    return guest.run(["sh", "-c", hostile.LIVE_HOSTILE], timeout=15).text.splitlines()


def _none_left(guest, within: float = 10.0) -> None:
    end = time.monotonic() + within
    while (left := _left_in_guest(guest)) and time.monotonic() < end:
        time.sleep(0.2)
    assert not left, left


MODES = {**hostile.BOUNDED,
         **{mode: (DeadlineExceeded, f"no exit within {NEVER_EXITS_TIMEOUT:.0f} s") for mode in hostile.NEVER_EXITS}}


def test_each_hostile_mode_ends_at_its_bound_and_the_connection_goes_on(guest):
    measured = []
    for mode, (error, says) in MODES.items():
        timeout = NEVER_EXITS_TIMEOUT if error is DeadlineExceeded else 120.0
        start = time.monotonic()
        with hostile.peak_rss() as peak:
            with pytest.raises(error) as got:
                guest.run([GUEST_PAYLOAD, *mode], timeout=timeout)
        took = time.monotonic() - start
        message = str(got.value)
        measured.append(f"{' '.join(mode):18} {took:5.1f} s  peak RSS growth {peak.growth_mib:5.1f} MiB"
                        f"{'' if peak.exact else ' (over the earlier peak)'}")
        assert message.startswith(f"guest command \"'{GUEST_PAYLOAD}' '{mode[0]}'"), message
        assert says in message and "and its children killed)" in message and "\n" not in message, message
        assert took < timeout + 20, message
        assert peak.growth_mib < hostile.RSS_BOUND_MIB, measured[-1]
        assert guest.remote.connected                            # the same connection, not a new one
        assert guest.run(["echo", "next"], timeout=15).stdout == b"next\n"
        _none_left(guest)                                        # the forked child of `hang` too
        assert guest.after_case() == ([], True)                  # not a guest to replace
    print("\n" + "\n".join(measured))


@pytest.mark.parametrize("kind", sorted(hostile.GARBAGE))
def test_garbage_lines_from_the_guest_are_harness_errors(guest, kind):
    res = guest.run([GUEST_PAYLOAD, "garbage", str(kind)], timeout=30)
    assert res.rc == 0 and res.stderr == b""
    with pytest.raises(HarnessError, match="^hostile payload: " + re.escape(hostile.GARBAGE[kind])):
        trace.split_traces("hostile", res.stdout, 1, 4096)


def test_a_streamed_payload_that_floods_or_hangs_is_ended_and_killed(guest):
    stream = guest.stream([GUEST_PAYLOAD])
    stream.send(b"ok 3\nE\n", timeout=10)
    stream.read_until(lambda got: trace.finished(got, 0), timeout=30)
    stream.send(b"flood-stdout 200\n", timeout=10)
    with pytest.raises(OutputExceeded, match=r"stdout \(one answer\) ran past its bound of 8 MiB"):
        stream.read_until(lambda got: trace.finished(got, 1), timeout=120)
    assert stream.close() is None
    hung = guest.stream([GUEST_PAYLOAD, "hang"])
    with pytest.raises(DeadlineExceeded, match="no answer within 2 s"):
        hung.read_until(lambda got: trace.finished(got, 0), timeout=2)
    assert hung.close(timeout=1) is None
    _none_left(guest)
    assert guest.run(["echo", "next"], timeout=15).stdout == b"next\n"


@pytest.mark.nightly   # make test has the same run on --target local (tests/test_hostile_payload.py)
def test_hostile_cases_error_one_by_one_and_the_run_goes_on_in_a_guest(tmp_path, debian_kernel):
    from tests.fixtures.features.hostile.cases import REASONS
    out = tmp_path / "run"
    record = hostile.run_hostile_suite(out, tmp_path / "h", timeout=900)
    for case in record["cases"]:
        says = REASONS.get(case["id"], "")
        if "bound of 8 MiB" in says or "no exit within" in says:
            assert "and its children killed)" in case["reason"], case
    # one guest served the whole run: none was lost or replaced
    assert not list(out.glob("*.lost-after-*")) and not (out / "nested-2.serial.log").exists()
