"""A hostile payload (guests/hostile) against the harness's bounds, without QEMU:
megabytes of output, NUL-laden and malformed JSON lines, a line without end, output
without end, a payload that never exits. Each ends in a HarnessError with a one-line
reason naming the command and the bound, the harness's peak RSS stays bounded, no
payload process is left, and the next command runs.

Transports: the harness-side runner (harness/targets/local_shell.py, as HarnessSide and
--target local use it) and real SSH (harness/remote: paramiko against dropbear, the
guest's SSH server, started here on 127.0.0.1 in a private mount namespace whose
/root holds its authorized key). The case-level outcome: `kvmconf run --target local`
of the hostile fixture feature (tests/fixtures/features/hostile) ERRORs each hostile
case and goes on. tests/test_hostile_e2e.py does the same in a QEMU guest."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from harness.errors import DeadlineExceeded, HarnessError, UsageError
from harness.payloads import trace
from harness.remote import PID_MARK, Output, OutputExceeded, Remote, output_bound, tail_text
from harness.remote.keys import generate
from harness.targets.local_shell import LocalShell
from tests import hostile


@pytest.fixture(scope="module")
def payload() -> Path:
    return hostile.payload()


def _no_hostile_left(listing, within: float = 5.0) -> None:
    """No payload process (the killed ones are reaped within moments)."""
    end = time.monotonic() + within
    while (left := listing()) and time.monotonic() < end:
        time.sleep(0.1)
    assert not left, left


# ---- the parser: every bad line is a HarnessError naming it, read in place --------

@pytest.mark.parametrize("kind", sorted(hostile.GARBAGE))
def test_every_garbage_line_is_a_harness_error_naming_the_line(payload, kind):
    res = LocalShell().run([str(payload), "garbage", str(kind)], timeout=10)
    assert res.rc == 0
    with pytest.raises(HarnessError) as got:
        trace.split_traces("hostile", res.stdout, 1, 4096)
    message = str(got.value)
    assert message.startswith("hostile payload: " + hostile.GARBAGE[kind]), message
    assert "\n" not in message and "\0" not in message     # one line; NULs shown escaped


def test_the_end_marker_check_skips_garbage():
    assert not trace.finished(b'[[[[' * 1000 + b'"done"\n{"script":0,"op":"done"', 0)   # no newline yet
    assert trace.finished(b'{"op":"done","v":NaN}\n' + b'[' * 4000 + b'"done"\n{"script":0,"op":"done"}\n', 0)


def test_megabytes_of_lines_are_read_in_place_and_cut_at_the_line_bound():
    """64 MiB of newlines (one list element per line was 576 MiB of RSS before) and of
    events that never end (1 GiB of dicts before): refused at the line bound, fast."""
    for data in (b"\n" * (64 << 20), b'{"script":0,"op":"x"}\n' * (3 << 20)):
        start = time.monotonic()
        with hostile.peak_rss() as peak:
            with pytest.raises(HarnessError, match=r"output line 100001: more than 100000 lines for 1 script$"):
                trace.split_traces("hostile", data, 1, 4096)
        print(f"split_traces of {len(data) >> 20} MiB: {time.monotonic() - start:.2f} s, "
              f"peak RSS growth {peak.growth_mib:.1f} MiB")
        assert time.monotonic() - start < 5
        assert peak.growth_mib < 40                # 100,000 small dicts at most
    start = time.monotonic()
    assert not trace.finished(b"\n" * (8 << 20) + b'{"script":0,"op":"done"', 0)
    assert time.monotonic() - start < 1


# ---- the output bound ---------------------------------------------------------------

def test_the_bound_is_configurable_and_checked(monkeypatch, payload):
    assert output_bound() == 8 << 20
    monkeypatch.setenv("KVMCONF_MAX_OUTPUT_MIB", "1")
    assert output_bound() == 1 << 20
    with pytest.raises(OutputExceeded, match=r"stdout ran past its bound of 1 MiB \(\$KVMCONF_MAX_OUTPUT_MIB"):
        LocalShell().run([str(payload), "flood-stdout", "2"], timeout=10)
    assert len(LocalShell().run([str(payload), "flood-stdout", "1"], timeout=10).stdout) == 1 << 20
    with pytest.raises(OutputExceeded, match="stderr ran past its bound of 1000 bytes"):
        LocalShell().run([str(payload), "flood-stderr", "1"], timeout=10, max_output=1000)
    for bad in ("0", "-3", "lots"):
        monkeypatch.setenv("KVMCONF_MAX_OUTPUT_MIB", bad)
        with pytest.raises(UsageError, match=rf"^\$KVMCONF_MAX_OUTPUT_MIB='{bad}': not a number of MiB"):
            output_bound()


def test_the_pid_line_is_taken_out_of_stderr_and_nothing_else():
    err = Output("c", "stderr", 100, pid_line=True)
    for piece in (b"motd line\nkvmconf-", b"pid 4", b"2\nreal ", b"stderr\n"):
        err.add(piece)
    assert (err.pid, err.value()) == (42, b"motd line\nreal stderr\n")
    cut = Output("c", "stderr", 100, pid_line=True)
    cut.add(b"kvmconf-pi")            # the command ended before the line did
    assert (cut.pid, cut.value()) == (None, b"kvmconf-pi")
    assert tail_text(b"x" * 5000 + b"a\0b\x1b[2J\xff") == "x" * 292 + "a\\x00b\\x1b[2J\ufffd"


# ---- the harness-side runner -----------------------------------------------------

@pytest.mark.parametrize("mode", list(hostile.BOUNDED), ids=" ".join)
def test_local_runner_ends_a_flood_at_the_bound_with_bounded_memory(payload, mode):
    error, says = hostile.BOUNDED[mode]
    start = time.monotonic()
    with hostile.peak_rss() as peak:
        with pytest.raises(error) as got:
            LocalShell().run([str(payload), *mode], timeout=30)
    message = str(got.value)
    print(f"local {' '.join(mode)}: {time.monotonic() - start:.2f} s, peak RSS growth {peak.growth_mib:.1f} MiB")
    assert says in message and str(payload) in message and "(its process group killed)" in message
    assert "\n" not in message
    assert peak.growth_mib < hostile.RSS_BOUND_MIB
    _no_hostile_left(hostile.local_hostile)


@pytest.mark.parametrize("mode", list(hostile.NEVER_EXITS), ids=" ".join)
def test_local_runner_kills_a_payload_that_never_exits_at_the_deadline(payload, mode):
    error, says = hostile.NEVER_EXITS[mode]
    start = time.monotonic()
    with pytest.raises(error, match=says):
        LocalShell().run([str(payload), *mode], timeout=hostile.NEVER_EXITS_TIMEOUT)
    assert time.monotonic() - start < hostile.NEVER_EXITS_TIMEOUT + 2
    _no_hostile_left(hostile.local_hostile)      # the forked child of `hang` too


def test_local_stream_ends_a_flood_or_a_hang_and_kills_it(payload):
    stream = LocalShell().stream([str(payload)])
    stream.send(b"ok 3\nE\n", timeout=5)
    assert trace.finished(stream.read_until(lambda got: trace.finished(got, 0), timeout=5), 0)
    stream.send(b"flood-stdout 200\n", timeout=5)
    with pytest.raises(OutputExceeded, match=r"stdout \(one answer\) ran past its bound of 8 MiB"):
        stream.read_until(lambda got: trace.finished(got, 1), timeout=30)
    start = time.monotonic()
    assert stream.close() is None and time.monotonic() - start < 2       # killed at once
    hung = LocalShell().stream([str(payload), "hang"])
    with pytest.raises(DeadlineExceeded, match="no answer within 1 s"):
        hung.read_until(lambda got: trace.finished(got, 0), timeout=1)
    assert hung.close() is None
    _no_hostile_left(hostile.local_hostile)


# ---- real SSH: dropbear on 127.0.0.1 ---------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def sshd(tmp_path_factory, payload):
    """A Remote connected to dropbear (the guest's SSH server) on 127.0.0.1: its /root
    is a private folder holding the run's authorized key and the payload (a private
    mount namespace: nothing of this machine changes)."""
    if os.geteuid() != 0 or not all(shutil.which(p) for p in ("dropbear", "unshare", "mount")):
        pytest.skip("needs root, dropbear and unshare (a private /root for dropbear's authorized_keys)")
    home = tmp_path_factory.mktemp("sshd-home")
    home.chmod(0o700)
    keys = generate(home)
    (home / ".ssh").mkdir(mode=0o700)
    (home / ".ssh" / "authorized_keys").write_text(keys.client_public + "\n")
    (home / ".ssh" / "authorized_keys").chmod(0o600)
    shutil.copy(payload, home / "hostile")
    port = _free_port()
    log = open(home / "dropbear.log", "wb")
    server = subprocess.Popen(
        ["unshare", "-m", "--propagation", "private", "sh", "-c",
         'mount --bind "$1" /root && exec dropbear -F -E -s -p "127.0.0.1:$2" -r "$1/dropbear_host_key" '
         '-P "$1/dropbear.pid"', "sh", str(home), str(port)],
        stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    remote = Remote(port, keys.client, keys.host_public)
    try:
        try:
            remote.wait_ready(time.monotonic() + 20, alive=lambda: server.poll() is None)
        except HarnessError as e:
            pytest.skip(f"dropbear on 127.0.0.1:{port} did not come up ({e}): "
                        f"{(home / 'dropbear.log').read_text()[-300:]}")
        yield remote
    finally:
        remote.close()
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)
        log.close()


def _remote_hostile(remote: Remote):
    return lambda: remote.run(["sh", "-c", hostile.LIVE_HOSTILE], timeout=10).text.split("\n")[:-1]


def test_ssh_keeps_stderr_clean_of_the_pid_line(sshd):
    res = sshd.run(["sh", "-c", 'echo out; echo err >&2; exit 3'])
    assert (res.rc, res.stdout, res.stderr) == (3, b"out\n", b"err\n")
    assert PID_MARK not in sshd.run(["sh", "-c", "exec 2>&1; echo $$"]).stdout


@pytest.mark.parametrize("mode", [*hostile.BOUNDED, *hostile.NEVER_EXITS], ids=" ".join)
def test_ssh_ends_each_hostile_mode_kills_it_and_stays_usable(sshd, mode):
    error, says = {**hostile.BOUNDED, **hostile.NEVER_EXITS}[mode]
    timeout = hostile.NEVER_EXITS_TIMEOUT if mode in hostile.NEVER_EXITS else 60
    argv = ["/root/hostile", *mode]
    start = time.monotonic()
    with hostile.peak_rss() as peak:
        with pytest.raises(error) as got:
            sshd.run(argv, timeout=timeout)
    took = time.monotonic() - start
    message = str(got.value)
    print(f"ssh {' '.join(mode)}: {took:.2f} s, peak RSS growth {peak.growth_mib:.1f} MiB: {message}")
    assert message.startswith(f"guest command \"'/root/hostile' '{mode[0]}'") and says in message, message
    assert "and its children killed)" in message and "\n" not in message, message
    assert took < timeout + 10
    assert peak.growth_mib < hostile.RSS_BOUND_MIB
    assert sshd.connected and sshd.run(["echo", "next"], timeout=10).stdout == b"next\n"
    _no_hostile_left(_remote_hostile(sshd))


def test_ssh_stream_ends_a_flood_or_a_hang_and_kills_it(sshd):
    stream = sshd.stream(["/root/hostile"])
    stream.send(b"ok 3\nE\n", timeout=5)
    stream.read_until(lambda got: trace.finished(got, 0), timeout=10)
    stream.send(b"flood-forever 0\n", timeout=5)
    with pytest.raises(OutputExceeded, match=r"stdout \(one answer\) ran past its bound of 8 MiB"):
        stream.read_until(lambda got: trace.finished(got, 1), timeout=30)
    assert stream.close() is None
    hung = sshd.stream(["/root/hostile", "hang"])
    with pytest.raises(DeadlineExceeded, match="no answer within 1 s"):
        hung.read_until(lambda got: trace.finished(got, 0), timeout=1)
    start = time.monotonic()
    assert hung.close(timeout=1) is None and time.monotonic() - start < 10
    _no_hostile_left(_remote_hostile(sshd))
    assert sshd.run(["echo", "next"], timeout=10).stdout == b"next\n"


# ---- the case-level outcome: `kvmconf run --target local` --------------------------

def test_hostile_cases_error_one_by_one_and_the_run_goes_on(tmp_path):
    """A real run on this machine's kernel (--target local: the payload runs here
    through the harness-side runner): every hostile case ERRORs with its one-line
    reason, the well-behaved cases around them and the random op-scripts PASS."""
    if os.geteuid() != 0:
        pytest.skip("--target local runs payloads as root")
    record = hostile.run_hostile_suite(tmp_path / "run", tmp_path / "h", "--target", "local", timeout=300)
    assert json.dumps(record)            # NULs and all: still a JSON record
    _no_hostile_left(hostile.local_hostile)
