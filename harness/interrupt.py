"""Polite interruption: SIGINT, SIGTERM and SIGHUP end a command the same way.

The first signal raises `Interrupted` (a KeyboardInterrupt, so pytest stops its session
the way it does for ^C and the run records the case it was in). While cleanup runs
under `deferred()`, a signal is only noted (the command reads `received()` afterwards),
so the machines are killed and the temporary folders removed before it exits. Later
signals are ignored: every cleanup step has its own deadline.
"""
from __future__ import annotations

import contextlib
import signal

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Interrupted(KeyboardInterrupt):
    def __init__(self, signame: str):
        super().__init__(signame)
        self.signame = signame


_state = {"received": None, "deferring": 0}


def _handler(signum, frame) -> None:
    if _state["received"] is not None:
        return
    _state["received"] = signal.Signals(signum).name
    if not _state["deferring"]:
        raise Interrupted(_state["received"])


def install() -> None:
    """Handle the signals in this (main) thread; a fresh command starts uninterrupted."""
    _state["received"], _state["deferring"] = None, 0
    for sig in SIGNALS:
        signal.signal(sig, _handler)


def received() -> str | None:
    """The name of the signal that interrupted the command, if one did."""
    return _state["received"]


def signame(exc: BaseException) -> str:
    """The signal a KeyboardInterrupt stands for (a bare one is ^C)."""
    return getattr(exc, "signame", None) or received() or "SIGINT"


@contextlib.contextmanager
def deferred():
    """Run a cleanup block without being interrupted by a signal arriving during it."""
    _state["deferring"] += 1
    try:
        yield
    finally:
        _state["deferring"] -= 1
