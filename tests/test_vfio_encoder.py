"""Unit tests of the VFIO op-script encoder, output parser, generator and shrinker
(harness/payloads/vfio.py) and of the payload's build; no guest."""
from __future__ import annotations

import collections
import shutil
import subprocess
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.payloads import vfio as enc
from harness.reference import vfio as model

REPO = Path(__file__).resolve().parents[1]


def test_normalise_fills_defaults():
    s = enc.normalise({"actions": [
        {"op": "get", "iova": 0x100000, "size": 0x100000},
        {"op": "unmap", "iova": 0x100000, "size": 0x41000, "flags": 1},
        {"op": "unmap", "iova": 0x100000, "size": 0x1000},
        {"op": "map", "iova": 0, "size": 0x1000}]})
    get, unmapb, unmap, mp = s["actions"]
    assert s["iommu"] == "v2"
    assert (get["argsz"], get["flags"], get["pgsize"], get["bsize"]) == (48, 4, 4096, 32)
    assert (unmapb["argsz"], unmapb["bsize"]) == (48, 16)        # 65 pages -> 2 words
    assert (unmap["argsz"], unmap["bsize"]) == (24, 0)
    assert (mp["argsz"], mp["flags"], mp["voff"]) == (32, 3, 0)


@pytest.mark.parametrize("script, message", [
    ({"actions": [{"op": "nope"}]}, "unknown action"),
    ({"actions": [{"op": "map", "iova": 0}]}, "needs 'size'"),
    ({"actions": [{"op": "get", "iova": 0, "size": 1, "color": 3}]}, "unknown keys"),
    ({"actions": [{"op": "map", "iova": 0, "size": 0x1000, "voff": 16 << 20}]}, "arena"),
    ({"actions": [{"op": "dma", "src": 0, "dst": 0, "len": 4096}]}, "len <= 2048"),
    ({"actions": [{"op": "dma", "src": 1 << 28, "dst": 0}]}, "28-bit"),
    ({"actions": [{"op": "get", "iova": 0, "size": 1 << 40, "fill": 1}]}, "fill=1"),
    ({"actions": [{"op": "info", "argsz": -1}]}, "not a u64"),
    ({"iommu": "v3", "actions": []}, "iommu must be"),
])
def test_normalise_rejects(script, message):
    with pytest.raises(ValueError, match=message):
        enc.normalise(script)


def test_encode_format():
    s = enc.normalise({"iommu": "v1", "actions": [{"op": "dirty", "flags": 1}, {"op": "devdirty"}]})
    assert enc.encode([s]).decode() == "S 1\nA dirty argsz=0x8 flags=0x1 null=0x0\nA devdirty\nE\n"


def test_parse_output_splits_and_strips_tag():
    out = (b'{"script":1,"op":"setup","iommu":3,"result":"ok"}\n'
           b'{"script":0,"op":"get","result":"ok","bitmap":[[0,18446744073709551615]],"guards":[1,2]}\n')
    traces = enc.parse_output(out, 2)
    assert traces[1] == [{"op": "setup", "iommu": 3, "result": "ok"}]
    assert traces[0][0]["bitmap"] == [[0, (1 << 64) - 1]]


@pytest.mark.parametrize("raw", [b"garbage\n", b'{"op":"x"}\n', b'{"script":5,"op":"x"}\n',
                                 b'[1,2]\n', b'{"script":"0","op":"x"}\n'])
def test_parse_output_rejects_untrusted_lines(raw):
    with pytest.raises(HarnessError, match="vfio payload: output line 1"):
        enc.parse_output(raw, 2)


def test_describe_and_kinds():
    a = enc.normalise_action({"op": "unmap", "iova": 0x1000, "size": 0x1000, "flags": 1})
    assert enc.describe_action(a).startswith("unmap argsz=0x30 flags=0x1 iova=0x1000")
    assert enc.action_kind(a) == "unmap_bitmap"
    assert enc.action_kind({"op": "dirty", "flags": 3}) == "dirty_bad"


def test_generate_is_deterministic_and_covers_every_kind():
    a = enc.generate(1234, 120)
    assert a == enc.generate(1234, 120)
    assert a != enc.generate(1235, 120)
    assert all(5 <= len(s["actions"]) <= 30 for s in a)
    kinds = collections.Counter(enc.action_kind(x) for s in a for x in s["actions"])
    assert all(kinds[k] for k in enc.RANDOM_KINDS), kinds
    for s in a:                        # every script is one the model can predict
        model.predict(s, "6.1")


def test_random_scripts_reach_the_stale_bits():
    scripts = enc.generate(7, 100)
    differs = sum(model.predict(s, "6.1") != model.predict(s, "fixed") for s in scripts)
    assert differs >= 10


def test_shrink_finds_the_two_needed_actions():
    script = enc.normalise({"actions": [{"op": "info"}] * 7 + [{"op": "dirty", "flags": 1}]
                            + [{"op": "info"}] * 9 + [{"op": "dirty", "flags": 2}] + [{"op": "info"}] * 5})
    rounds = []

    def still_fails(cands):
        rounds.append(len(cands))
        return [sum(a["op"] == "dirty" for a in c["actions"]) == 2 for c in cands]

    small = enc.shrink(script, still_fails)
    assert [a["flags"] for a in small["actions"]] == [1, 2]
    assert len(rounds) < 30


def test_elf_checks_name_missing_symbols():
    class Elf:
        def get_section_by_name(self, name):
            return object()
    assert enc.elf_checks(Elf(), {s: 1 for s in enc.REQUIRED_SYMBOLS}) == []
    assert enc.elf_checks(Elf(), {"main": 1}) != []


@pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc missing: PATH")
def test_payload_builds_warning_free(tmp_path):
    srcs = sorted(str(p) for p in (REPO / "guests" / "vfio").glob("*.c"))
    done = subprocess.run(["gcc", "-static", "-O2", "-g", "-Wall", "-Werror", "-std=gnu11",
                           f"-I{REPO / 'guests' / 'vfio'}", "-o", str(tmp_path / "vfio"), *srcs],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    from elftools.elf.elffile import ELFFile
    with open(tmp_path / "vfio", "rb") as f:
        elf = ELFFile(f)
        syms = {s.name: s["st_value"] for s in elf.get_section_by_name(".symtab").iter_symbols() if s.name}
        assert enc.elf_checks(elf, syms) == []
    # bad input is a clear error (exit 2), not a crash; no device needed to parse
    bad = subprocess.run([str(tmp_path / "vfio"), "--nope"], capture_output=True, text=True)
    assert bad.returncode == 2 and "usage" in bad.stderr
