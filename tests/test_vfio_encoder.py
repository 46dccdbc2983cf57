"""Unit tests of the VFIO codec (harness/payloads/vfio.py), its op-script strategy
(testcases/vfio/vfio_gen.py) and of the payload's build; no guest."""
from __future__ import annotations

import collections
import shutil
import subprocess
from pathlib import Path

import pytest

from harness import features
from harness.errors import HarnessError
from harness.payloads import vfio as enc
from harness.reference import vfio as model

REPO = Path(__file__).resolve().parents[1]
gen = features.get("vfio").strategy_module


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
    ({"actions": [{"op": "map", "iova": 0, "size": 0x1000, "vaddr": 0x400000}]}, "payload memory"),
    ({"actions": [{"op": "map", "iova": 0, "size": 0x1000, "vaddr": 0xFFFFFFFFFF600000}]},
     "payload memory"),
    ({"actions": [{"op": "map", "iova": 0, "size": 0x1000, "arg": 2}]}, "map.arg"),
    ({"actions": [{"op": "unmap", "iova": 0, "size": 0x1000, "child": 2}]}, "child"),
    ({"memlock": -1, "actions": []}, "memlock"),
    ({"dma_entry_limit": 1 << 32, "actions": []}, "dma_entry_limit"),
    ({"colour": 1, "actions": []}, "unknown keys"),
    ({"actions": [{"op": "unmap", "iova": 0, "size": 0x1000, "argsz": 1 << 32}]}, "not a u32"),
])
def test_normalise_rejects(script, message):
    with pytest.raises(ValueError, match=message):
        enc.normalise(script)


def test_encode_format():
    s = enc.normalise({"iommu": "v1", "actions": [{"op": "dirty", "flags": 1}, {"op": "devdirty"}]})
    assert enc.encode([s]).decode() == "S 1\nA dirty argsz=0x8 flags=0x1 null=0x0\nA devdirty\nE\n"


def test_encode_script_settings_only_when_set():
    s = enc.normalise({"iommu": "noiommu", "dma_entry_limit": 3, "memlock": 0x10000, "actions": []})
    assert enc.encode([s]).decode() == "S 8 dma_entry_limit=0x3 memlock=0x10000\nE\n"
    assert enc.encode([enc.normalise({"actions": []})]).decode() == "S 3\nE\n"
    assert enc.locate(s, 0, {}) == (0, "setup iommu=noiommu dma_entry_limit=0x3 memlock=0x10000")


def test_decode_splits_and_strips_tag():
    out = (b'{"script":1,"op":"setup","iommu":3,"result":"ok"}\n'
           b'{"script":0,"op":"get","result":"ok","bitmap":[[0,18446744073709551615]],"guards":[1,2]}\n'
           b'{"script":0,"op":"done"}\n{"script":1,"op":"done"}\n')
    traces = enc.decode(out, 2)
    assert traces[1] == [{"op": "setup", "iommu": 3, "result": "ok"}]
    assert traces[0][0]["bitmap"] == [[0, (1 << 64) - 1]]


@pytest.mark.parametrize("raw", [b"garbage\n", b'{"op":"x"}\n', b'{"script":5,"op":"x"}\n',
                                 b'[1,2]\n', b'{"script":"0","op":"x"}\n'])
def test_decode_rejects_untrusted_lines(raw):
    with pytest.raises(HarnessError, match="vfio payload: output line 1"):
        enc.decode(raw, 2)


def test_describe_locate_and_kinds():
    a = enc.normalise_action({"op": "unmap", "iova": 0x1000, "size": 0x1000, "flags": 1})
    assert enc.describe(a).startswith("unmap argsz=0x30 flags=0x1 iova=0x1000")
    script = enc.normalise({"actions": [a]})
    assert enc.locate(script, 0, {}) == (0, "setup iommu=v2")
    assert enc.locate(script, 1, {})[1].startswith("unmap argsz=0x30")
    assert gen.kind(a) == "unmap_bitmap"
    assert gen.kind({"op": "dirty", "flags": 3}) == "dirty_bad"
    assert gen.kind({**a, "child": 1}) == "unmap_child"
    assert gen.kind({**a, "flags": 2}) == "unmap_all"


def _generate(seed: int, count: int) -> list[dict]:
    from harness.driver import Suite
    from tests.standin import Kernel
    return Suite(features.get("vfio"), None, "6.1", Kernel()).generate(seed, count)


def test_generate_is_deterministic_and_covers_every_kind():
    a = _generate(1234, 120)
    assert a == _generate(1234, 120)
    assert a != _generate(1235, 120)
    assert all(1 <= len(s["actions"]) <= 30 for s in a)
    kinds = collections.Counter(gen.kind(x) for s in a for x in s["actions"])
    assert all(kinds[k] for k in gen.KINDS), kinds
    for s in a:                        # every script is one the model can predict
        model.predict(s, "6.1")


def test_random_scripts_reach_the_stale_bits():
    scripts = _generate(7, 200)
    differs = sum(model.predict(s, "6.1") != model.predict(s, "fixed") for s in scripts)
    assert differs >= 10
    assert any(model.findings(s, model.predict(s, "6.1")) for s in scripts)
    assert not any(model.findings(s, model.predict(s, "fixed")) for s in scripts)


def test_elf_checks_name_missing_symbols():
    class Elf:
        def get_section_by_name(self, name):
            return object()
    assert enc.elf_checks(Elf(), {s: 1 for s in enc.REQUIRED_SYMBOLS}) == []
    assert enc.elf_checks(Elf(), {"main": 1}) != []


@pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc missing: PATH")
def test_payload_builds_warning_free():
    from harness.payloads import build
    payload = build.build("vfio")      # -Wall -Werror, guests/lib linked; raises on a failed ELF check
    assert enc.elf_checks is features.get("vfio").codec_module.elf_checks
    # bad input is a clear error (exit 2), not a crash; no device needed to parse
    bad = subprocess.run([str(payload.path), "--nope"], capture_output=True, text=True)
    assert bad.returncode == 2 and "usage" in bad.stderr
