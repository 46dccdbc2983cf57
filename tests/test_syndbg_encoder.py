"""Unit tests of the syndbg codec (encoder, decoder, locate, ELF checks on the
payload build's plug-in path) and of its op-script strategy; no guest (the shared
driver's random/shrink loop is tested in tests/test_driver.py)."""
from __future__ import annotations

import shutil
from collections import Counter

import pytest

from harness import features
from harness.errors import HarnessError
from harness.payloads import build
from harness.payloads import syndbg as pl
from harness.reference import syndbg as m



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
    done = b'{"script":0,"op":"done"}\n{"script":1,"op":"done"}\n'
    out = b'{"script":1,"op":"setup","ok":true}\n{"script":0,"op":"setup","ok":true}\n\n' + done
    assert pl.decode(out, 2) == [[{"op": "setup", "ok": True}], [{"op": "setup", "ok": True}]]
    assert pl.decode(b'{"script":7,"op":"setup","ok":true}\n{"script":7,"op":"done"}\n', 1, first=7) == \
        [[{"op": "setup", "ok": True}]]
    for bad in (b"not json\n", b'{"script":5,"op":"x"}\n', b'[1,2]\n',
                b'{"error":"event larger than 8192 bytes"}\n', b'{"op":"setup"}\n',
                b'{"script":0,"op":"setup","ok":true}\n{"script":1,"op":"done"}\n',       # 0 unfinished
                done + b'{"script":0,"op":"setup","ok":true}\n'):                           # after its end
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
    from harness import features
    from harness.driver import Suite
    from tests.standin import Kernel, StandinGuest
    gen = features.get("syndbg").strategy_module
    probe = {"vendor": "amd", "smt_control": "notsupported", "caps": {}}
    suite = Suite(features.get("syndbg"), StandinGuest(None, probe), "mainline", Kernel())
    scripts = suite.generate(3, 300)
    assert len(scripts) >= 250
    assert all(5 <= len(s["actions"]) <= 30 for s in scripts)
    kinds = Counter(gen.kind(a) for s in scripts for a in s["actions"])
    assert set(kinds) == set(m.ACTION_KINDS) == set(gen.KINDS)
    configs = Counter((v["hv"], v["sd"], v["dm"], v["dbg"], v["hc"], v["enforce"])
                      for s in scripts for v in s["vcpus"])
    assert {c[1] for c in configs} >= {"set", "zero", "absent", 0xFFFFFFFD, 0x3}
    assert {c[5] for c in configs} == {True, False}
    assert {s["mode"] for s in scripts} == {32, 64} and {s["quirk_fix"] for s in scripts} == {True, False}
    options = {a["value"] & 4 for s in scripts for a in s["actions"]
               if a["op"] in ("wrmsr", "set_msr") and a["msr"] == m.MSR_OPTIONS}
    assert options == {0, 4}
    for s in scripts:
        m.predict(s)
        pl.encode([s])
    assert suite.generate(3, 50) == suite.generate(3, 50)   # seeded
    assert gen.OSID == 0x1000101010001


def test_locate_names_the_op_script_step():
    s = pl.normalise({"actions": [{"op": "nop"}, {"op": "rdmsr", "msr": m.MSR_STATUS}]})
    assert pl.locate(s, 3, {"op": "rdmsr", "step": 1}) == (1, "vcpu0 rdmsr 0x400000f2")
    assert pl.locate(s, 0, {"op": "setup", "ok": True}) == (0, "setup")




def test_encode_new_cpuid_keys_modes_and_exit_msr():
    text = pl.encode([{"vcpus": [{"sd": 0xFFFFFFFD, "crash": False, "tlb_flush": False}],
                       "actions": [{"op": "hcall", "insn": "native", "control": 0x6B, "cpu_mode": "real"},
                                   {"op": "rdmsr", "msr": m.MSR_STATUS, "cpu_mode": "compat"},
                                   {"op": "wrmsr", "msr": m.MSR_CONTROL, "value": 1, "status": 2,
                                    "exit_msr": m.MSR_PENDING},
                                   {"op": "set_cpuid", "sd": 3, "post_msg": False}]}]).decode()
    lines = text.splitlines()
    assert lines[2] == "cpuid 0 hv=1 sd=3 sd_eax=0xfffffffd dm=1 dbg=1 hc=1 xmm=1 crash=0 tlb_flush=0"
    assert "cpu_mode=0x1" in lines[3] and "cpu_mode=0x2" in lines[4]
    assert "status=0x2 exit_msr=0x400000f5" in lines[5]
    assert lines[6] == "op set_cpuid sd=0x3 sd_eax=0x3 post_msg=0 vcpu=0x0"


def test_env_reads_the_probe():
    probe = {"vendor": "amd", "smt_control": "notsupported", "clocksource": "tsc"}
    assert pl.env(probe) == {"vendor": "amd", "smt": False, "master_clock": True}
    assert pl.env({**probe, "clocksource": "hpet", "smt_control": "on"})["master_clock"] is False
    assert pl.env({"vendor": "intel"})["master_clock"] is True       # an older probe


def test_elf_checks_need_the_real_mode_vectors(built_payload):
    symbols = dict(built_payload.symbols)
    symbols["g16_ivt"] = symbols["__stop_guest_text"] + 0x100
    from elftools.elf.elffile import ELFFile
    with open(built_payload.path, "rb") as f:
        assert pl.elf_checks(ELFFile(f), symbols) == [
            f"g16_ivt at {symbols['g16_ivt']:#x} is outside guest_text"]
