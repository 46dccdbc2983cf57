"""Shared helpers of the project's tests."""
from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).with_name("fixtures")
_PR_SET_PDEATHSIG = 1


def end_with_pytest() -> None:
    """preexec_fn of a child the tests start: its own session (killed as a group) and
    SIGTERM when this pytest dies, so a killed test run leaves no `kvmconf run` (and,
    through its cleanup, no QEMU) behind."""
    os.setsid()
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def kvmconf(*args: str, env: dict | None = None, timeout: float = 540,
            cwd: Path = REPO) -> subprocess.CompletedProcess:
    """Run the real `kvmconf` command line (as a user would), with a deadline."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout, preexec_fn=end_with_pytest)


def load_run(folder: Path) -> dict:
    return json.loads((folder / "run.json").read_text())


def statuses(record: dict) -> dict[str, str]:
    return {c["id"]: c["status"] for c in record["cases"]}


@pytest.fixture(scope="session")
def debian_kernel():
    """Debian's packaged kernel under test (downloaded into the cache once)."""
    from harness.kernel import debian
    return debian.fetch()
