"""Property tests of the parsers of untrusted input (issue 14, item 6): guest payload
output, run records, mboxes and patch series, probe lines. Whatever the bytes, each
either returns or raises the harness's own error, one line naming the input;
never another exception (a traceback of kvmconf)."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings, strategies as st

from harness import series as serieslib
from harness.errors import HarnessError, UsageError
from harness.payloads.trace import split_traces
from harness.results import record

SETTINGS = settings(max_examples=150, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
# the email package's header parsers hide their crashes deeper: more examples
SERIES_SETTINGS = settings(SETTINGS, max_examples=300)

# -- building blocks -------------------------------------------------------------------
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12)


def _json_line(value) -> bytes:
    return json.dumps(value).encode()


# What a broken or hostile payload may print on one line.
hostile_lines = st.one_of(
    st.binary(max_size=300),                                        # NUL, invalid UTF-8, anything
    json_values.map(_json_line),                                    # JSON that is not an event
    st.fixed_dictionaries({"script": st.integers(-2, 4) | st.booleans() | st.text(max_size=3) | st.none(),
                           "op": st.sampled_from(["done", "read", "write"]) | st.integers()},
                          optional={"error": st.text(max_size=5), "x": json_values}).map(_json_line),
    st.integers(1, 30000).map(lambda n: b"[" * n + b"]" * n),       # nesting past the parser's stack
    st.integers(1, 30000).map(lambda n: b'{"op": "done", "script": 0, "v": ' + b"9" * n + b"}"),  # a huge int
    st.sampled_from([b'{"op": "done", "script": 0, "v": NaN}', b'{"op": "x", "script": 0, "v": -Infinity}',
                     b'{"op": "done", "script": 0}', b"\x00" * 50, b"\xff\xfe", b"\r", b" \t "]),
    st.integers(16000, 70000).map(lambda n: b'{"op": "x", "script": 0, "s": "' + b"a" * n + b'"}'),  # huge
)


def _one_line_naming(message: str, name: str) -> None:
    assert name in message, message
    assert "\n" not in message, message


# -- guest payload output ------------------------------------------------------------------
@SETTINGS
@given(lines=st.lists(hostile_lines, max_size=8), count=st.integers(1, 3), first=st.integers(0, 2),
       max_line=st.sampled_from([64, 4096, 16384, 1 << 16]))
@example(lines=[b"[" * 20000 + b"]" * 20000], count=1, first=0, max_line=1 << 16)
@example(lines=[b"\xff" * 10], count=1, first=0, max_line=4096)
def test_split_traces_returns_traces_or_a_harness_error(lines, count, first, max_line):
    stdout = b"\n".join(lines)
    try:
        traces = split_traces("syndbg", stdout, count, max_line, first)
    except HarnessError as e:
        assert type(e) is HarnessError
        _one_line_naming(str(e), "syndbg payload")
        return
    assert len(traces) == count
    assert all(isinstance(event, dict) and isinstance(event["op"], str) and event["op"] != "done"
               for trace in traces for event in trace)


@SETTINGS
@given(events=st.lists(st.tuples(st.integers(0, 2), st.sampled_from(["read", "write"])), max_size=10))
def test_split_traces_keeps_well_formed_traces(events):
    """The other side: well-formed output is split, in order, with the end markers dropped."""
    lines = [_json_line({"script": s, "op": op, "n": i}) for i, (s, op) in enumerate(events)]
    lines += [_json_line({"script": s, "op": "done"}) for s in range(3)]
    traces = split_traces("syndbg", b"\n".join(lines) + b"\n", 3, 4096)
    assert traces == [[{"op": op, "n": i} for i, (s, op) in enumerate(events) if s == k] for k in range(3)]


# -- run records -----------------------------------------------------------------------
record_bytes = st.one_of(
    st.binary(max_size=400),
    json_values.map(_json_line),
    st.dictionaries(st.sampled_from(["schema", "cases", "run_id"]),
                    json_values | st.just(record.SCHEMA), max_size=3).map(_json_line),
    st.integers(1, 30000).map(lambda n: b"[" * n),
    st.integers(4301, 20000).map(lambda n: b"9" * n),
    st.just(b'{"schema": NaN}'),
)


@SETTINGS
@given(data=record_bytes)
@example(data=b"[1, 2]")
@example(data=b"\xff\xfe")
@example(data=b"[" * 100000)
@example(data=b"9" * 5000)
def test_record_load_returns_a_record_or_a_usage_error(data):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "run.json"
        path.write_bytes(data)
        try:
            loaded = record.load(path)
        except UsageError as e:
            _one_line_naming(str(e), str(path))
            return
        assert isinstance(loaded, dict) and loaded["schema"] == record.SCHEMA


# -- mboxes and patch series -------------------------------------------------------------------
header_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)
subjects = st.one_of(
    header_text,
    st.builds(lambda v, n, m, title: f"[PATCH{f' v{v}' if v else ''} {n}/{m}] {title}",
              st.integers(0, 3), st.integers(0, 4), st.integers(0, 4), header_text),
    st.sampled_from(["[PATCH] x", "Re: [PATCH 1/1] x", "[PATCH 99999999999999999999/1] x", "[PATCH v0 0/0]",
                     "=?utf-8?b?////?=", "[PATCH 1/2] x\n y", "[RFC PATCH v2 1/1] x"]),
)
bodies = st.one_of(
    st.binary(max_size=200),
    st.just(b"--- a/f.c\n+++ b/f.c\n@@ -1 +1 @@\n-a\n+b\n"),
    st.just(b"diff --git a/f b/f\n"),
    st.just(b"Content-Type: multipart/mixed; boundary=x\n\n--x\n"),
    st.just(b"--b\nContent-Type: text/plain\n\n--- a/x\n+++ b/x\n--b--\n"),
    st.just(b"--b\nContent-Type: text/html\n\nx\n--b\n"),
    st.just(b"=FF=\n--- a/x\n+++ b/x\n"),
)


# Header values the email package's parsers (headerregistry) choke on, and MIME that
# is not what it says.
hostile_header_values = ["<a@b>", "A <a@b>", "<0/0>", "", "<", "A <", "<<>", '"', "(", "\\", ":;", "@", "a@",
                         "=?utf-8?q?=FF?=", "=?bogus?b?AAAA?=", "=?utf-8?b?", "text/plain; charset=x-bogus",
                         "text/plain; charset=\"", "base64", "quoted-printable", "x-uuencode", "multipart/mixed",
                         "multipart/mixed; boundary=b", "multipart/alternative; boundary=", "message/rfc822",
                         "text/plain; charset=utf-8\n\tx"]


@st.composite
def mails(draw) -> bytes:
    headers = {"Subject": draw(subjects)}
    for name in draw(st.lists(st.sampled_from(["From", "Message-ID", "In-Reply-To", "References", "Date",
                                               "Content-Type", "Content-Transfer-Encoding"]), max_size=4)):
        headers[name] = draw(st.sampled_from(hostile_header_values) | header_text)
    text = "".join(f"{k}: {v}\n" for k, v in headers.items() if draw(st.booleans()) or k == "Subject")
    head = b"From kvmconf Mon Sep 17 00:00:00 2001\n" + text.encode(errors="surrogateescape")
    return head + b"\n" + draw(bodies)


series_bytes = st.one_of(
    st.binary(max_size=400),
    st.binary(max_size=300).map(lambda b: b"From " + b),
    st.lists(mails(), min_size=1, max_size=4).map(b"\n".join),
    st.lists(mails(), min_size=1, max_size=3).map(
        lambda ms: b"".join(b"```\n" + m + b"\n```\n" for m in ms)),        # a patchwork digest
)


@SERIES_SETTINGS
@given(data=series_bytes)
@example(data=b"From x\nSubject: [PATCH 1/1] a\n\n\xff\xfe--- a/x\n+++ b/x\n")
@example(data=b"From x\nSubject: [PATCH 1/1] a\nContent-Type: text/plain; charset=bogus\n\n--- a/x\n+++ b/x\n")
@example(data=b"From x\nSubject: [PATCH 1/1] a\nContent-Type: multipart/mixed\n\n--- a/x\n")
@example(data=b"From \nSubject:[PATCH]\nFrom:<")                       # IndexError in email's parser
@example(data=b"From \nSubject:[PATCH 0/0]\nMessage-ID:<")              # the same, another header
def test_series_load_returns_series_or_a_usage_error(data):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "series.mbox"
        path.write_bytes(data)
        try:
            found, _ = serieslib.load(path)
        except UsageError as e:
            _one_line_naming(str(e), str(path))
            return
        assert found and all(s.revisions for s in found)


@SERIES_SETTINGS
@given(files=st.lists(series_bytes, min_size=1, max_size=3))
def test_series_folder_returns_series_or_a_usage_error(files):
    """A format-patch folder: each file one message."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "series"
        folder.mkdir()
        for i, data in enumerate(files):
            (folder / f"{i:04d}.patch").write_bytes(data)
        try:
            serieslib.load(folder)
        except UsageError as e:
            _one_line_naming(str(e), str(folder))


# -- probe lines ---------------------------------------------------------------------------
@pytest.mark.parametrize("module", ["harness.payloads.pebs_pt_absent", "harness.pebs_pt_hw"])
@SETTINGS
@given(lines=st.lists(hostile_lines, max_size=3))
@example(lines=[b"[" * 100000])
def test_parse_probe_returns_facts_or_a_harness_error(module, lines):
    import importlib
    mod = importlib.import_module(module)
    try:
        facts = mod.parse_probe(b"\n".join(lines))
    except HarnessError as e:
        assert type(e) is HarnessError
        _one_line_naming(str(e), mod.PAYLOAD)
        return
    assert isinstance(facts, dict)
