"""Payload builds (harness/payloads/build.py) and the payloads' script protocol.

guests/lib is compiled once into libkvmconf.a and reused; every payload links
only the lib objects it needs; the registered feature's elf_checks run on the
same path `kvmconf run` uses; and each script's answer ends with exactly one
{"script": N, "op": "done"} line that arrives while stdin is still open, so a
harness can stream scripts one at a time into one payload process.
"""
from __future__ import annotations

import json
import os
import selectors
import shutil
import subprocess
import textwrap
import time

import pytest

from harness import features
from harness.errors import HarnessError
from harness.payloads import build
from harness.payloads import syndbg as syndbg_codec

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc missing: PATH has no gcc")

DEADLINE_S = 30.0


@pytest.fixture(scope="module", autouse=True)
def cache(tmp_path_factory):
    """A payload cache of this module's own, so that the builds below are real ones."""
    root = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KVMCONF_CACHE", str(root))
        yield root


def _spy(monkeypatch) -> list[list[str]]:
    """Record the argv of every subprocess build.py runs (gcc, ar)."""
    calls: list[list[str]] = []
    real = subprocess.run

    def run(argv, *args, **kwargs):
        calls.append(list(argv))
        return real(argv, *args, **kwargs)

    monkeypatch.setattr(build.subprocess, "run", run)
    return calls


def _tools(calls):
    return [c for c in calls if "--version" not in c]


def test_lib_is_built_once_and_reused(monkeypatch, tmp_path):
    monkeypatch.setenv("KVMCONF_CACHE", str(tmp_path))
    calls = _spy(monkeypatch)
    syndbg = build.build("syndbg")
    compiled = [c for c in calls if "-c" in c]
    assert len(compiled) == len(build.sources(build.LIB)) >= 5
    assert [c[:2] for c in calls if c[0] == "ar"] == [["ar", "rcs"]]
    lib = build.build_lib()
    assert lib.name == "libkvmconf.a" and lib.parent.parent == tmp_path / "payloads"

    calls.clear()
    vfio = build.build("vfio")
    tools = _tools(calls)
    assert len(tools) == 1 and tools[0][0] == "gcc" and "-c" not in tools[0], tools   # lib: cache hit
    assert tools[0][-2:] == [f"-L{lib.parent}", "-lkvmconf"]

    calls.clear()
    assert build.build("syndbg").path == syndbg.path and build.build("vfio").path == vfio.path
    assert _tools(calls) == []                                                         # all cache hits
    assert [p.name for p in (tmp_path / "payloads").iterdir() if p.name.startswith("lib-")] == \
        [lib.parent.name]


def test_payloads_build_and_pass_their_elf_checks(monkeypatch):
    seen = []
    for name in ("syndbg", "vfio"):
        codec = features.get(name).codec_module
        real = codec.elf_checks
        monkeypatch.setattr(codec, "elf_checks",
                            lambda elf, symbols, real=real, name=name: seen.append(name) or real(elf, symbols))
    syndbg, vfio, probe = build.build("syndbg"), build.build("vfio"), build.build("probe")
    assert seen == ["syndbg", "vfio"]                  # probe has no feature row: generic checks only
    assert "probe" not in features.names()
    # the archive links what a payload uses: guest_lib.o for syndbg, no VM code in vfio
    for sym in ("__start_guest_text", "__stop_guest_text", "g64_vectors", "kvm_fd", "die", "kv_parse"):
        assert sym in syndbg.symbols, sym
    for sym in ("script_done", "json_begin", "die", "kv_parse", "vp", "vfio_ubuf_emit"):
        assert sym in vfio.symbols, sym
    assert "__start_guest_text" not in vfio.symbols and "kvm_fd" not in vfio.symbols
    assert "json_begin" not in probe.symbols


OOT_MAIN = r"""
#include "json.h"
#include "lines.h"
#include "util.h"

int main(void)
{
	char line[] = "op x a=0x7 b=2";
	const char *bad;
	struct kv kv;

	bad = kv_parse(line, 2, &kv);
	if (bad)
		die("%s", bad);
	script_done((long)kv_get(&kv, "a", 0) + (long)kv_get(&kv, "b", 0));
	return 0;
}
"""


def test_out_of_tree_folder_links_the_lib_and_its_row_checks_the_elf(tmp_path, monkeypatch):
    folder = tmp_path / "oot"
    folder.mkdir()
    (folder / "main.c").write_text(OOT_MAIN)
    payload = build.build("oot", folder)
    out = subprocess.run([str(payload.path)], capture_output=True, timeout=DEADLINE_S)
    assert (out.returncode, out.stdout) == (0, b'{"script":9,"op":"done"}\n')

    # a registered out-of-tree feature: its codec's elf_checks decide
    (tmp_path / "codec.py").write_text(textwrap.dedent("""
        def elf_checks(elf, symbols):
            return ["kv_parse is linked", "no vmcall site"] if "kv_parse" in symbols else []
    """))
    (tmp_path / "feature.py").write_text(textwrap.dedent("""
        from pathlib import Path
        from harness.features import Feature
        FEATURE = Feature(name="oot", title="test fixture", machine=frozenset(), modules=(),
                          config=None, kernel_files=(), model="model.py", codec="codec.py",
                          cases="cases.py", strategy="gen.py", payload="oot",
                          origin=Path(__file__).parent)
    """))
    monkeypatch.setenv(features.EXTRA_ENV, str(tmp_path / "feature.py"))
    with pytest.raises(HarnessError, match=r"^payload oot: ELF check failed: kv_parse is linked; "
                                           r"no vmcall site$"):
        build.build("oot", features.get("oot").payload_dir)


def test_missing_folder_and_empty_folder_are_harness_errors(tmp_path):
    with pytest.raises(HarnessError, match="payload nope: no folder"):
        build.build("nope", tmp_path / "absent")
    with pytest.raises(HarnessError, match=r"payload empty: no \.c or \.S sources"):
        build.build("empty", tmp_path)


# ---- the end-of-script marker, streamed ---------------------------------------

def _kvm_unusable() -> str | None:
    try:
        os.close(os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC))
    except OSError as e:
        return f"/dev/kvm unusable on this host: open(/dev/kvm, O_RDWR) failed: {e.strerror}"
    return None


def _read_until_done(proc: subprocess.Popen, index: int, buf: bytearray) -> list[dict]:
    """The events up to and including script `index`'s done line; stdin stays open."""
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    end = time.monotonic() + DEADLINE_S
    try:
        while True:
            head, sep, rest = bytes(buf).rpartition(b"\n")
            events = [json.loads(line) for line in head.split(b"\n") if line.strip()] if sep else []
            if {"script": index, "op": "done"} in events:
                assert rest == b"" and events[-1] == {"script": index, "op": "done"}, buf
                buf.clear()
                return events
            left = end - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no done line for script {index} within {DEADLINE_S} s "
                                     f"with stdin open; got {bytes(buf)!r}")
            if sel.select(left):
                chunk = os.read(proc.stdout.fileno(), 1 << 16)
                if not chunk:
                    raise AssertionError(f"payload closed stdout before script {index}'s done line; "
                                         f"got {bytes(buf)!r}, stderr {proc.stderr.read()!r}")
                buf += chunk
    finally:
        sel.close()


def _stream(argv: list[str], scripts: list[bytes]) -> list[list[dict]]:
    """Send the scripts one at a time, each only after the previous one's done line."""
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, bufsize=0)
    try:
        answers, buf = [], bytearray()
        for index, text in enumerate(scripts):
            proc.stdin.write(text)
            answers.append(_read_until_done(proc, index, buf))
        proc.stdin.close()                                 # EOF: the payload ends, printing nothing more
        assert proc.wait(timeout=DEADLINE_S) == 0, proc.stderr.read()
        assert proc.stdout.read() == b""
        return answers
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _check_one_done_each(answers: list[list[dict]]) -> None:
    for index, events in enumerate(answers):
        assert all(e["script"] == index for e in events), events
        assert [e for e in events if e["op"] == "done"] == [{"script": index, "op": "done"}]
        assert events[-1]["op"] == "done" and len(events) >= 2          # setup, ..., done
        assert not any("error" in e for e in events), events


SYNDBG_SCRIPTS = [
    {"actions": [{"op": "rdmsr", "msr": 0x400000F1}, {"op": "check_ext", "cap": 191}]},
    {"mode": 32, "vcpus": [{"enforce": True}, {"hv": False}],
     "actions": [{"op": "wrmsr", "msr": 0x40000000, "value": 1, "vcpu": 1}]},
    {"actions": []},
]


def test_syndbg_answers_each_streamed_script_before_eof():
    why = _kvm_unusable()
    if why:
        pytest.skip(why)
    payload = build.build("syndbg")
    answers = _stream([str(payload.path)],
                      [syndbg_codec.encode_one(i, s).encode() for i, s in enumerate(SYNDBG_SCRIPTS)])
    _check_one_done_each(answers)
    for events in answers:
        setup = events[0]
        assert setup["op"] == "setup", events
        if not setup["ok"]:         # KVM refused the setup: an observation, not the payload's error
            assert isinstance(setup["failed"], str) and isinstance(setup["errno"], int), setup


def test_syndbg_batch_ends_every_script_with_one_done_line():
    why = _kvm_unusable()
    if why:
        pytest.skip(why)
    payload = build.build("syndbg")
    out = subprocess.run([str(payload.path)], input=syndbg_codec.encode(SYNDBG_SCRIPTS),
                         capture_output=True, timeout=DEADLINE_S)
    assert out.returncode == 0, out.stderr
    events = [json.loads(line) for line in out.stdout.splitlines()]
    _check_one_done_each([[e for e in events if e["script"] == i] for i in range(len(SYNDBG_SCRIPTS))])
    assert [e["script"] for e in events if e["op"] == "done"] == [0, 1, 2]


# The vfio payload opens its group before reading stdin and exits 2 without a
# VFIO device (this host has none). In a private mount namespace, regular
# files stand in for /dev/vfio/vfio and the group: every setup then fails at
# VFIO_GET_API_VERSION (ENOTTY), which is the setup-failed path, and the host's
# /dev is untouched.
FAKE_VFIO = ('mount -t tmpfs kvmconf /dev && mkdir /dev/vfio && : > /dev/vfio/vfio && '
             ': > /dev/vfio/0 && exec "$0" --group 0 --bdf 0000:00:04.0')


def test_vfio_answers_each_streamed_script_before_eof_even_when_setup_fails():
    if shutil.which("unshare") is None:
        pytest.skip("unshare missing: PATH has no unshare (util-linux) for a private /dev")
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", "mount -t tmpfs kvmconf /dev"],
                           capture_output=True, text=True, timeout=DEADLINE_S)
    if probe.returncode != 0:
        pytest.skip(f"no private mount namespace for a stand-in /dev/vfio: unshare -rm: "
                    f"{probe.stderr.strip()}")
    payload = build.build("vfio")
    scripts = [b"S 3\nA info argsz=24\nA map argsz=32 flags=3 iova=0x100000 size=0x1000 voff=0\nE\n",
               b"S 1\nE\n"]
    answers = _stream(["unshare", "-rm", "sh", "-c", FAKE_VFIO, str(payload.path)], scripts)
    _check_one_done_each(answers)
    assert answers[0][0] == {"script": 0, "op": "setup", "iommu": 3, "result": "ENOTTY",
                             "step": "VFIO_GET_API_VERSION"}
    assert [len(a) for a in answers] == [2, 2]       # actions after a failed setup are skipped


def test_a_built_payload_is_pinned_by_the_sha256_of_its_binary():
    """run.json's `payloads` (build.built()): the digest the cache checked is the binary's."""
    from harness.cache import sha256_file
    from harness.payloads import build as payload_build
    probe = payload_build.build("probe")
    assert payload_build.built()["probe"] == sha256_file(probe.path)
