"""A harness-side payload runs the kernel under test's own code: its crash (a signal such
as SIGSEGV) is the kernel code's fault, FAIL with the signal and the last trace lines;
any other failed exit stays ours, ERROR (harness/targets/host.py HarnessSide,
harness/driver.py Suite.run)."""
from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from harness import features
from harness.driver import Suite
from harness.errors import HarnessError, KernelFailure
from harness.targets.host import HarnessSide, PayloadHost

TRACE = {"script": 0, "op": "vmgexit", "step": 0, "exit": 0x7b}


def suite_with(tmp_path, body: str, side=True):
    """A Suite of sev_es whose payload is a shell script doing `body`."""
    payload = tmp_path / "sev_es"
    payload.write_text("#!/bin/sh\ncat >/dev/null\n" + body + "\n")
    payload.chmod(0o755)
    if side:
        target = HarnessSide(str(tmp_path), tmp_path)
    else:
        from harness.targets.local_shell import LocalShell
        target = PayloadHost("guest", LocalShell(), str(tmp_path), {}, tmp_path)
    kernel = SimpleNamespace(version="6.1.0-57-amd64", config=lambda: None)
    return Suite(features.get("sev_es"), target, "6.1", kernel)


SCRIPT = {"mode": "kernel", "actions": [{"op": "insn", "bytes": "6e", "exit": 0x7b}]}


def test_crash_of_the_kernel_code_is_fail_with_signal_and_trace(tmp_path):
    suite = suite_with(tmp_path, f"echo '{json.dumps(TRACE)}'\necho 'kernel: a last word' >&2\nkill -SEGV $$")
    with pytest.raises(KernelFailure) as got:
        suite.run([suite.prepare(SCRIPT)])
    text = str(got.value)
    assert "SIGSEGV" in text and "signal 11" in text
    assert json.dumps(TRACE) in text and "kernel: a last word" in text


@pytest.mark.parametrize("signame", ["BUS", "ABRT", "ILL", "FPE"])
def test_other_crash_signals_are_fail(tmp_path, signame):
    suite = suite_with(tmp_path, f"kill -{signame} $$")
    with pytest.raises(KernelFailure, match=f"SIG{signame}"):
        suite.run([suite.prepare(SCRIPT)])


@pytest.mark.parametrize("body", ["echo 'vcsim: S: unknown key x' >&2; exit 2", "kill -KILL $$", "kill -TERM $$"])
def test_shim_exit_status_or_outside_signal_stays_error(tmp_path, body):
    suite = suite_with(tmp_path, body)
    with pytest.raises(HarnessError) as got:
        suite.run([suite.prepare(SCRIPT)])
    assert not isinstance(got.value, KernelFailure)


def test_a_guest_payload_crash_stays_error(tmp_path):
    # a payload of our own in a guest or on a live host: its crash is ours
    suite = suite_with(tmp_path, "kill -SEGV $$", side=False)
    with pytest.raises(HarnessError, match="exited -11"):
        suite.run([suite.prepare(SCRIPT)])
