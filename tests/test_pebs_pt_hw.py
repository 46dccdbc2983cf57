"""The PEBS-via-PT hardware path (harness/pebs_pt_hw.py) on fake hosts and on recorded PT
buffers (tests/fixtures/pebs_pt/: a guest PT buffer with four PEBS records, and the same
with the wrong applicable counter, which must fail); no Intel PT hardware here."""
from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from harness import pebs_pt_hw as hw
from harness.reference import pebs_pt_codec as codec

FIX = Path(__file__).parent / "fixtures" / "pebs_pt"
EXPECT = json.loads((FIX / "expectation.json").read_text())


def records(name: str) -> list[dict]:
    packets, error = codec.decode(bytes.fromhex((FIX / name).read_text()))
    assert error is None
    return codec.pebs_records(packets)


def check(recs, **change):
    e = {**EXPECT, **change}
    return hw.check_records(recs, e["pebs_data_cfg"], e["counter"], tuple(e["ip_range"]), e["events"], e["period"])


def test_the_recorded_buffer_meets_its_expectation():
    recs = records("pt-buffer-good.hex")
    assert len(recs) == 4 and check(recs) is None


def test_a_record_with_the_wrong_counter_fails():
    assert check(records("pt-buffer-wrong-counter.hex")) == \
        "record 0 (offset 27): applicable counters 0x8, expected 0x4"


@pytest.mark.parametrize("change, message", [
    ({"pebs_data_cfg": 0x1}, "blocks [4, 5, 1], PEBS_DATA_CFG 0x1 gives [4, 5]"),
    ({"ip_range": [0x500000, 0x501000]}, "IP 0x401010 outside the guest workload [0x500000, 0x501000)"),
    ({"events": 9000}, "4 records for 9000 events with reload period 1000: expected 9"),
])
def test_each_expectation_is_checked(change, message):
    assert message in check(records("pt-buffer-good.hex"), **change)


def test_no_records_and_unordered_timestamps():
    assert hw.check_records([], 3, 2, (0, 1)) == "no PEBS record in the PT buffer"
    recs = records("pt-buffer-good.hex")
    recs[2]["basic"]["timestamp"] = 0
    assert "record 2" in check(recs) and "not after the previous" in check(recs)


def fake(vendor=b"GenuineIntel", pt=True, pdcm=True, caps=0x3_0000 | 0x400 | 0x4000, kvm_intel=True,
         pt_mode="1\n", kvm_caps=1 << 16):
    files = {f"{hw.KVM_INTEL}/parameters/pt_mode": pt_mode}

    def read(path):
        if path not in files:
            raise FileNotFoundError(2, "No such file", path)
        return files[path]
    return dict(read=read, cpuid=lambda leaf, sub=0: _cpuid(vendor, pdcm, pt, leaf),
                rdmsr=lambda msr: caps, kvm_msr=lambda msr: kvm_caps,
                exists=lambda p: (p == hw.KVM_INTEL and kvm_intel) or p == hw.DEV_KVM)


def _cpuid(vendor, pdcm, pt, leaf):
    b, d, c = struct.unpack("<III", vendor)
    return {0: (0xD, b, c, d), 1: (0, 0, pdcm << 15, 0), 7: (0, pt << 25, 0, 0)}[leaf]


@pytest.mark.parametrize("change, message", [
    ({}, None),
    ({"vendor": b"AuthenticAMD"}, "an Intel CPU: this one is AuthenticAMD"),
    ({"pt": False}, "Intel PT missing: CPUID.7:EBX[25] clear"),
    ({"pdcm": False}, "PDCM missing"),
    ({"caps": 0x3000}, "PEBS missing: IA32_PERF_CAPABILITIES 0x3000 has no PEBS format"),
    ({"caps": 0x4400}, "PEBS output to PT missing: IA32_PERF_CAPABILITIES 0x4400 bit 16 clear"),
    ({"kvm_intel": False}, "kvm_intel not loaded"),
    ({"pt_mode": "0\n"}, "kvm_intel pt_mode=0: PT is not exposed to guests"),
    ({"kvm_caps": 0x4400}, "KVM does not offer PEBS output to PT: the feature MSR PERF_CAPABILITIES is 0x4400"),
    ({"kvm_caps": None}, "is refused"),
])
def test_probe_names_the_first_missing_capability(change, message):
    reason = hw.missing(hw.probe_pebs_pt(**fake(**change)))
    assert reason == message if message is None else message in reason


def test_this_host_lacks_it_and_says_why():
    reason = hw.missing(hw.probe_pebs_pt())
    assert reason and "(" in reason
