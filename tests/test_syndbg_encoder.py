"""Unit tests of the syndbg payload's Python side (encoder, decoder, ELF checks),
the op-script generator and the shrinking loop; no guest (the "guest" below
answers with a deliberately broken copy of the model)."""
from __future__ import annotations

import importlib.util
import json
import shutil
from collections import Counter
from pathlib import Path

import pytest

from harness import features
from harness.errors import HarnessError
from harness.payloads import build
from harness.payloads import syndbg as pl
from harness.reference import syndbg as m

ROOT = Path(__file__).resolve().parents[1]


def load(path, name):
    spec = importlib.util.spec_from_file_location(name, ROOT / path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_encode_format():
    text = pl.encode([{"mode": 32, "quirk_fix": False, "vcpus": [{"sd": "zero", "enforce": True}],
                       "actions": [{"op": "hcall", "insn": "vmmcall", "control": 0x6B, "status": 7},
                                   {"op": "hv_cpuid", "fd": "vcpu", "nent": 0},
                                   {"op": "set_cpuid", "sd": "absent", "hv": False}]}]).decode()
    lines = text.splitlines()
    assert lines[0] == "script 0"
    assert lines[1] == "vm vcpus=1 mode=32 quirk_fix=0 user_msr=0"
    assert lines[2] == "cpuid 0 hv=1 sd=1 dm=1 dbg=1 hc=1 xmm=1"
    assert lines[3] == "enforce 0"
    assert lines[4].startswith("op hcall insn=0x1 control=0x6b status=0x7 vcpu=0x0 cpl=0x0")
    assert "op hv_cpuid fd=0x1 nent=0x0 vcpu=0x0" == lines[5]
    assert lines[6] == "op set_cpuid sd=0x0 hv=0 vcpu=0x0"
    assert lines[-1] == "end"


def test_encode_rejects_out_of_range():
    with pytest.raises(ValueError):
        pl.encode([{"actions": [{"op": "wrmsr", "msr": 1, "value": 1 << 64}]}])
    with pytest.raises(ValueError):
        pl.encode([{"actions": [{"op": "wrmsr", "msr": 1, "value": -1}]}])


def test_decode_splits_by_script_and_is_strict():
    out = b'{"script":1,"op":"setup","ok":true}\n{"script":0,"op":"setup","ok":true}\n\n'
    assert pl.decode(out, 2) == [[{"op": "setup", "ok": True}], [{"op": "setup", "ok": True}]]
    for bad in (b"not json\n", b'{"script":5,"op":"x"}\n', b'[1,2]\n',
                b'{"error":"event larger than 8192 bytes"}\n', b'{"op":"setup"}\n'):
        with pytest.raises(HarnessError):
            pl.decode(bad, 2)


@pytest.fixture(scope="module")
def built_payload():
    """The syndbg payload as `kvmconf run` builds it (guests/lib linked as libkvmconf.a)."""
    if not shutil.which("gcc"):
        pytest.skip("gcc missing: PATH has no gcc")
    return build.build("syndbg")


def test_elf_checks_pass_on_the_real_payload(built_payload):
    symbols = build.check("syndbg", built_payload.path)
    assert symbols == built_payload.symbols
    for name in pl.SITES:
        assert symbols["__start_guest_text"] <= symbols[name] < symbols["__stop_guest_text"]
    assert pl.elf_checks.__module__ == features.get("syndbg").codec_module.__name__


def test_elf_checks_catch_a_wrong_instruction(built_payload, tmp_path):
    """A byte-patched copy fails on the plug-in path: build.check -> the row's codec elf_checks."""
    from elftools.elf.elffile import ELFFile
    addr = built_payload.symbols["syndbg_vmmcall_64"]
    with open(built_payload.path, "rb") as f:
        sec = next(s for s in ELFFile(f).iter_sections()
                   if s["sh_addr"] <= addr < s["sh_addr"] + s["sh_size"] and s["sh_type"] == "SHT_PROGBITS")
        offset = sec["sh_offset"] + addr - sec["sh_addr"]
    data = bytearray(built_payload.path.read_bytes())
    assert data[offset:offset + 3] == pl.VMMCALL
    data[offset:offset + 3] = pl.VMCALL
    broken = tmp_path / "broken"
    broken.write_bytes(data)
    with pytest.raises(HarnessError, match=r"^payload syndbg: ELF check failed: syndbg_vmmcall_64 at "
                                           r"0x[0-9a-f]+ holds 0f01c1, expected 0f01d9$"):
        build.check("syndbg", broken)


def test_generator_covers_every_kind_and_configuration():
    gen = load("testcases/syndbg/syndbg_gen.py", "t_gen")
    tst = load("testcases/syndbg/test_syndbg.py", "t_suite")
    scripts = tst.generate(3, 300, "amd")
    assert len(scripts) >= 250
    assert all(5 <= len(s["actions"]) <= 30 for s in scripts)
    kinds = Counter(a["op"] for s in scripts for a in s["actions"])
    assert set(kinds) == set(m.ACTION_KINDS)
    configs = Counter((v["hv"], v["sd"], v["dm"], v["dbg"], v["hc"], v["enforce"])
                      for s in scripts for v in s["vcpus"])
    assert {c[1] for c in configs} == {"set", "zero", "absent"}
    assert {c[5] for c in configs} == {True, False}
    assert {s["mode"] for s in scripts} == {32, 64} and {s["quirk_fix"] for s in scripts} == {True, False}
    options = {a["value"] & 4 for s in scripts for a in s["actions"]
               if a["op"] in ("wrmsr", "set_msr") and a["msr"] == m.MSR_OPTIONS}
    assert options == {0, 4}
    for s in scripts:
        m.predict(s)
        pl.encode([s])
    assert tst.generate(3, 50, "amd") == tst.generate(3, 50, "amd")   # seeded
    assert gen.OSID == 0x1000101010001


class _Result:
    def __init__(self, rc, stdout, stderr=b""):
        self.rc, self.stdout, self.stderr = rc, stdout, stderr


class MutantGuest:
    """Answers like a kernel whose guest STATUS writes exit (a syndbg mutant)."""

    def __init__(self):
        self.calls = 0
        self.by_text: dict[str, dict] = {}

    def payload(self, feature):
        return f"/opt/kvmconf/bin/{feature}"

    def run(self, argv, stdin=b"", timeout=60.0):
        self.calls += 1
        out = []
        blocks = stdin.decode().split("script ")[1:]
        for i, block in enumerate(blocks):
            script = self.by_text[block.split("\n", 1)[1]]
            for event in mutant_predict(script):
                out.append(json.dumps({"script": i, **event}))
        return _Result(0, "\n".join(out).encode())


def mutant_predict(script):
    orig = m._Model.hv_set_msr

    def broken(self, v, msr, value, host):
        r, ex = orig(self, v, msr, value, host)
        if r == 0 and ex is None and not host and msr == m.MSR_STATUS:
            ex = self._syndbg_exit(msr, 2)
        return r, ex

    m._Model.hv_set_msr = broken
    try:
        return m.predict(script)
    finally:
        m._Model.hv_set_msr = orig


def test_random_batch_finds_and_shrinks_a_mutant(monkeypatch):
    tst = load("testcases/syndbg/test_syndbg.py", "t_suite2")
    guest = MutantGuest()
    real_encode = pl.encode

    def encode(scripts):    # let the fake guest map its stdin back to scripts
        for s in scripts:
            guest.by_text[pl.encode_one(0, s).split("\n", 1)[1]] = s
        return real_encode(scripts)

    monkeypatch.setattr(tst.payload, "encode", encode)
    scripts = tst.generate(7, 300, "amd")
    observed, diverged = {}, []
    for i, trace in enumerate(tst.run_scripts(guest, scripts)):
        observed[json.dumps(scripts[i], sort_keys=True)] = trace
        if tst.divergence(scripts[i], trace, "mainline"):
            diverged.append(i)
    assert diverged, "the mutant went unnoticed by 300 random op-scripts"
    script, found = tst.shrink(guest, 7, 300, "amd", "mainline", observed)
    assert len(script["actions"]) <= len(scripts[diverged[0]]["actions"])
    assert found.field == "exits.length" and found.expected == 0 and found.observed == 1
    assert "wrmsr 0x400000f2" in found.action
    # the shrunk script alone reproduces the divergence
    assert tst.divergence(script, mutant_predict(script), "mainline").as_record() == found.as_record()
