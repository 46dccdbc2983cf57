"""Payload output: JSON lines tagged with a script index, split into one trace per script.

Guest output is untrusted: every line must be a strict JSON object (UTF-8, no
NaN or Infinity, nested no deeper than a parser's stack) of bounded length with
an integer `script` in range, a string `op`, and no `error` key (a payload
reports its own breakage that way); a batch is at most `max_lines` lines (blank
ones included); anything else is a HarnessError naming the payload and the
line. Each script's trace ends with exactly one `{"op": "done"}` event
(guests/lib script_done()), which is checked and dropped: a script the payload
did not finish is the payload's breakage, not a short trace.

The output is read line by line in place (no list of all its lines), so that the
harness's memory follows the events kept, not the bytes the payload printed.
"""
from __future__ import annotations

import json
from collections.abc import Iterator

from harness.errors import HarnessError

DONE = "done"
# Lines per batch, over all its scripts: far above any model's traces (a batch of
# 100 scripts of 50 actions is 5,000 events), far below what the harness can hold or
# read in a moment (an event is a dict of a few hundred bytes; a line takes ~1 us).
MAX_LINES = 100_000


def _lines(data: bytes) -> Iterator[tuple[int, bytes]]:
    """(number, line) of every line, without its newline, one at a time."""
    start, n = 0, 0
    while start < len(data):
        end = data.find(b"\n", start)
        if end < 0:
            end = len(data)
        n += 1
        yield n, data[start:end]
        start = end + 1


def _no_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def strict_json(raw: bytes) -> object:
    """Strict JSON (UTF-8, no NaN or Infinity, a bounded depth); ValueError (with the
    reason) when it is not."""
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
    except RecursionError:
        # nesting past json's stack (b"[" * 5000, within max_line), found by
        # tests/test_parser_properties.py; it was a traceback
        raise ValueError("nested too deeply") from None


def split_traces(payload: str, stdout: bytes, count: int, max_line: int, first: int = 0,
                 max_lines: int = MAX_LINES) -> list[list[dict]]:
    """One event list per script `first` .. `first + count - 1`, in order."""
    traces: list[list[dict]] = [[] for _ in range(count)]
    finished = [False] * count
    for n, raw in _lines(stdout):
        if n > max_lines:
            raise HarnessError(f"{payload} payload: output line {n}: more than {max_lines} lines for "
                               f"{count} script{'' if count == 1 else 's'}")
        if not raw.strip():
            continue
        where = f"{payload} payload: output line {n}"
        if len(raw) > max_line:
            raise HarnessError(f"{where} is longer than {max_line} bytes ({len(raw)}): {raw[:100]!r}...")
        try:
            event = strict_json(raw)
        except ValueError as e:
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
    """Whether `stdout` holds the end marker of script `index` (for streamed answers):
    only the complete lines that hold the word "done" are parsed."""
    marker = b'"done"'
    pos = stdout.find(marker)
    while pos >= 0:
        end = stdout.find(b"\n", pos)
        if end < 0:
            return False                                # not a complete line yet
        raw = stdout[stdout.rfind(b"\n", 0, pos) + 1:end]
        try:
            event = strict_json(raw)
        except ValueError:
            event = None
        if isinstance(event, dict) and event.get("op") == DONE and event.get("script") == index:
            return True
        pos = stdout.find(marker, end)
    return False
