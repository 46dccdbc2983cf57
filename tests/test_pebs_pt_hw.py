"""The PEBS-via-PT hardware path (harness/pebs_pt_hw.py, guests/pebs_pt/capture/).

No Intel PT hardware here: the outcome's checks run on recorded captures
(tests/fixtures/pebs_pt/: the payload's output line for a guest PT buffer with four PEBS
records, synthesized with the reference encoder, and the same with the wrong applicable
counter, which must FAIL); the probe's verdicts on fact sets; and the payload itself on
this machine's /dev/kvm, whose guest must get as far as its first PT MSR write."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from harness import pebs_pt_hw as hw
from harness.errors import HarnessError, KernelFailure
from harness.payloads import build as payload_build

FIX = Path(__file__).parent / "fixtures" / "pebs_pt"
CASE = json.loads((FIX / "capture-case.json").read_text())


def recorded(name: str) -> dict:
    (event,) = hw.decode((FIX / name).read_bytes(), 1)
    return event


def test_the_recorded_capture_meets_its_case():
    assert hw.verdict(CASE, recorded("capture-good.json")) == 4


def test_a_record_with_the_wrong_counter_fails():
    with pytest.raises(KernelFailure, match=r"record 0 \(offset 27\): applicable counters 0x8, expected 0x4"):
        hw.verdict(CASE, recorded("capture-wrong-counter.json"))


@pytest.mark.parametrize("change, message", [
    ({"cfg": 0x1}, "blocks [4, 5, 1], PEBS_DATA_CFG 0x1 gives [4, 5]"),
    ({"loops": 4500}, "4 records for 9000 events with reload period 1000: expected 9"),
])
def test_each_programmed_value_is_checked(change, message):
    with pytest.raises(KernelFailure) as e:
        hw.verdict({**CASE, **change}, recorded("capture-good.json"))
    assert message in str(e.value)


@pytest.mark.parametrize("change, error, message", [
    ({"workload": [0x500000, 0x501000]}, KernelFailure, "IP 0x401010 outside the guest workload [0x500000, 0x501000)"),
    ({"setup": "KVM_SET_MSRS of the vCPU's IA32_PERF_CAPABILITIES", "errno": 22}, KernelFailure,
     "refused KVM_SET_MSRS of the vCPU's IA32_PERF_CAPABILITIES (errno 22)"),
    ({"fault": {"list": "setup", "msr": 0x3F1, "value": 1 << 61, "vector": 13}}, KernelFailure,
     "guest WRMSR IA32_PEBS_ENABLE (0x3f1) = 0x2000000000000000 in the setup raised vector 13"),
    ({"mask_ptrs": None}, KernelFailure, "IA32_RTIT_OUTPUT_MASK_PTRS / IA32_RTIT_STATUS refused"),
    ({"rtit_status": 0x10}, KernelFailure, "IA32_RTIT_STATUS 0x10 has Error set"),
    ({"rtit_status": 0x20}, HarnessError, "ToPA region filled"),
    ({"exit": "timeout: no exit within 20000 ms"}, HarnessError, "did not finish: timeout"),
    ({"buffer": "02"}, KernelFailure, "does not decode"),
    ({"buffer": ""}, KernelFailure, "no PEBS record in the PT buffer"),
])
def test_each_outcome_has_its_verdict(change, error, message):
    with pytest.raises(error) as e:
        hw.verdict(CASE, {**recorded("capture-good.json"), **change})
    assert message in str(e.value) and isinstance(e.value, error)


def test_unordered_timestamps_fail():
    good = recorded("capture-good.json")
    recs = hw.codec.pebs_records(hw.codec.decode(bytes.fromhex(good["buffer"]))[0])
    recs[2]["basic"]["timestamp"] = 0
    assert "record 2" in hw.check_records(recs, 3, 2, (0x401000, 0x402000))


def test_output_that_is_not_one_capture_is_refused():
    with pytest.raises(HarnessError, match="not one capture"):
        hw.decode(b'{"script":0,"op":"other"}\n{"script":0,"op":"done"}\n', 1)
    with pytest.raises(HarnessError, match="not JSON"):
        hw.decode(b"garbage\n", 1)


CAPABLE = {"vendor": "GenuineIntel", "pt": True, "pdcm": True, "perf_caps": 0x3_0000 | 0x400 | 0x4000,
           "msr_error": None, "kvm_intel": True, "pt_mode": "1", "kvm_perf_caps": 1 << 16}


@pytest.mark.parametrize("change, message", [
    ({}, None),
    ({"vendor": "AuthenticAMD"}, "an Intel CPU: this one is AuthenticAMD"),
    ({"pt": False}, "Intel PT missing: CPUID.7:EBX[25] clear"),
    ({"pdcm": False}, "PDCM missing"),
    ({"perf_caps": None, "msr_error": "/dev/cpu/0/msr: No such file or directory"},
     "IA32_PERF_CAPABILITIES unreadable (/dev/cpu/0/msr: No such file or directory; modprobe msr)"),
    ({"perf_caps": 0x3000}, "PEBS missing: IA32_PERF_CAPABILITIES 0x3000 has no PEBS format"),
    ({"perf_caps": 0x4400}, "PEBS output to PT missing: IA32_PERF_CAPABILITIES 0x4400 bit 16 clear"),
    ({"kvm_intel": False}, "kvm_intel not loaded"),
    ({"pt_mode": "0"}, "kvm_intel pt_mode=0: PT is not exposed to guests"),
    ({"kvm_perf_caps": 0x4400}, "KVM does not offer PEBS output to PT: the feature MSR PERF_CAPABILITIES is 0x4400"),
    ({"kvm_perf_caps": None}, "is refused"),
])
def test_the_probe_names_the_first_missing_capability(change, message):
    reason = hw.missing({**CAPABLE, **change})
    assert reason == message if message is None else message in reason


def test_a_probe_line_is_checked_key_by_key():
    assert hw.parse_probe(json.dumps(CAPABLE).encode()) == CAPABLE
    with pytest.raises(HarnessError, match="'pt' missing or not"):
        hw.parse_probe(json.dumps({**CAPABLE, "pt": 1}).encode())
    with pytest.raises(HarnessError, match="no JSON object"):
        hw.parse_probe(b"[]")


def _run(payload, *args, stdin=b""):
    return subprocess.run([str(payload.path), *args], input=stdin, capture_output=True, timeout=60)


@pytest.mark.skipif(not os.access("/dev/kvm", os.R_OK | os.W_OK), reason="/dev/kvm not usable on this machine")
def test_the_payload_runs_its_guest_on_this_machines_kvm():
    """This machine lacks the feature: its probe says what is missing, and the capture's
    guest runs until its first PT MSR write, which KVM refuses with #GP."""
    payload = payload_build.build(hw.PAYLOAD, payload_build.GUESTS / "pebs_pt" / "capture")
    facts = hw.parse_probe(_run(payload, "--probe").stdout)
    reason = hw.missing(facts)
    if reason is None:
        pytest.skip("this machine offers PEBS via PT: testcases/pebs_pt/test_pebs_pt_hw.py runs the capture")
    res = _run(payload, stdin=hw.encode([CASE]))
    assert res.returncode == 0, res.stderr
    (event,) = hw.decode(res.stdout, 1)
    assert event["setup"] is None and event["exit"] is None and event["buffer"] == ""
    start, end = event["workload"]
    assert 0x10000 <= start < end < 0x20000
    if not facts["pt"]:       # KVM without PT in CPUID: vmx.c/svm.c refuse RTIT MSRs
        assert event["fault"] == {"list": "setup", "msr": 0x570, "value": 0, "vector": 13}
        with pytest.raises(KernelFailure, match=r"IA32_RTIT_CTL \(0x570\)"):
            hw.verdict(CASE, event)


def test_bad_capture_input_is_refused_with_the_line():
    payload = payload_build.build(hw.PAYLOAD, payload_build.GUESTS / "pebs_pt" / "capture")
    res = _run(payload, stdin=b"capture 0 counter=9 period=1 loops=1 cfg=0\n")
    assert res.returncode != 0 and b"counter must be below 8" in res.stderr
    res = _run(payload, stdin=b"record 0\n")
    assert res.returncode != 0 and b"stdin line 1: expected 'capture N" in res.stderr
