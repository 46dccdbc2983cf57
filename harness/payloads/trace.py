"""Payload output: JSON lines tagged with a script index, split into one trace per script.

Guest output is untrusted: every line must be a JSON object of bounded length
with an integer `script` in range, a string `op`, and no `error` key (a
payload reports its own breakage that way); anything else is a HarnessError
naming the payload and the line. Each script's trace ends with exactly one
`{"op": "done"}` event (guests/lib script_done()), which is checked and dropped:
a script the payload did not finish is the payload's breakage, not a short trace.
"""
from __future__ import annotations

import json

from harness.errors import HarnessError

DONE = "done"


def split_traces(payload: str, stdout: bytes, count: int, max_line: int, first: int = 0) -> list[list[dict]]:
    """One event list per script `first` .. `first + count - 1`, in order."""
    traces: list[list[dict]] = [[] for _ in range(count)]
    finished = [False] * count
    for n, raw in enumerate(stdout.split(b"\n"), 1):
        if not raw.strip():
            continue
        where = f"{payload} payload: output line {n}"
        if len(raw) > max_line:
            raise HarnessError(f"{where} is longer than {max_line} bytes")
        try:
            event = json.loads(raw)
        # RecursionError: nesting past json's stack (b"[" * 5000, within max_line), found by
        # tests/test_parser_properties.py; it was a traceback
        except (ValueError, RecursionError) as e:
            raise HarnessError(f"{where} is not JSON ({e}): {raw[:200]!r}") from None
        if not isinstance(event, dict) or "error" in event or not isinstance(event.get("op"), str):
            raise HarnessError(f"{where} is not an event: {raw[:200]!r}")
        index = event.pop("script", None)
        if not isinstance(index, int) or isinstance(index, bool) or not first <= index < first + count:
            raise HarnessError(f"{where} names script {index!r}, not one of {first}..{first + count - 1}")
        index -= first
        if finished[index]:
            raise HarnessError(f"{where}: script {index + first} has events after its end")
        if event["op"] == DONE:
            finished[index] = True
        else:
            traces[index].append(event)
    unfinished = [i + first for i, ok in enumerate(finished) if not ok]
    if unfinished:
        raise HarnessError(f"{payload} payload: script {unfinished[0]} has no end marker "
                           f"({len(unfinished)} of {count} unfinished)")
    return traces


def finished(stdout: bytes, index: int) -> bool:
    """Whether `stdout` holds the end marker of script `index` (for streamed answers)."""
    marker = b'"op":"done"'
    for raw in stdout.split(b"\n")[:-1]:          # complete lines only
        if marker in raw.replace(b" ", b""):
            try:
                event = json.loads(raw)
            except ValueError:
                continue
            if isinstance(event, dict) and event.get("op") == DONE and event.get("script") == index:
                return True
    return False
