"""A payload a case runs on the run's target itself (the guest, or a live host) rather
than through the shared driver: built once, uploaded once per target (a replaced guest
is a new target), its `--probe` read once, and each run's exit status checked."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from harness.errors import HarnessError
from harness.payloads import build

TIMEOUT_S = 120.0
_placed: dict[tuple[int, str], tuple[str, dict]] = {}


def _tail(res) -> str:
    return res.stderr.decode(errors="replace").strip()[-300:]


def run(guest, argv: list[str], stdin: bytes = b"", timeout: float = TIMEOUT_S) -> bytes:
    """Its stdout; a non-zero exit is the payload's breakage (HarnessError), not a verdict."""
    res = guest.run(argv, stdin=stdin, timeout=timeout)
    if res.rc != 0:
        what = " ".join([Path(argv[0]).name, *argv[1:]])
        raise HarnessError(f"{what} exited {res.rc} on {guest.where}: {_tail(res)}")
    return res.stdout


def placed(guest, name: str, folder: Path, parse_probe: Callable[[bytes], dict]) -> tuple[str, dict]:
    """(its path on the target, its parsed `--probe`), once per target and payload."""
    key = (id(guest), name)
    if key not in _placed:
        for old in [k for k in _placed if k[1] == name]:    # an earlier, replaced target
            del _placed[old]
        remote = f"{guest.scratch}/{name}"
        guest.remote.upload(str(build.build(name, folder).path), remote, mode=0o700)
        _placed[key] = remote, parse_probe(run(guest, [remote, "--probe"]))
    return _placed[key]
