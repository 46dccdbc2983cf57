"""Payload output: JSON lines tagged with a script index, split into one trace per script.

Guest output is untrusted: every line must be a JSON object of bounded length
with an integer `script` in range, a string `op`, and no `error` key (a
payload reports its own breakage that way); anything else is a HarnessError
naming the payload and the line.
"""
from __future__ import annotations

import json

from harness.errors import HarnessError


def split_traces(payload: str, stdout: bytes, count: int, max_line: int) -> list[list[dict]]:
    traces: list[list[dict]] = [[] for _ in range(count)]
    for n, raw in enumerate(stdout.split(b"\n"), 1):
        if not raw.strip():
            continue
        where = f"{payload} payload: output line {n}"
        if len(raw) > max_line:
            raise HarnessError(f"{where} is longer than {max_line} bytes")
        try:
            event = json.loads(raw)
        except ValueError as e:
            raise HarnessError(f"{where} is not JSON ({e}): {raw[:200]!r}") from None
        if not isinstance(event, dict) or "error" in event or not isinstance(event.get("op"), str):
            raise HarnessError(f"{where} is not an event: {raw[:200]!r}")
        index = event.pop("script", None)
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < count:
            raise HarnessError(f"{where} names script {index!r} of {count}")
        traces[index].append(event)
    return traces
