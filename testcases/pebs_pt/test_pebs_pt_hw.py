"""pebs_pt/hardware/*: PEBS records written into a KVM guest's Intel PT stream.

The payload pebs_pt_capture (guests/pebs_pt/capture/) runs on the run's target, where
the KVM under test is: its probe must find an Intel host with PEBS output to PT and a
KVM that offers it to guests (harness/pebs_pt_hw.py missing()), else each case SKIPs
naming the missing capability and where it was read. On such a host each case captures
one guest's PT buffer and checks its records (counter, IP in the workload, blocks and
size per PEBS_DATA_CFG, timestamps, records per reload period); the outcome's checks are
tested on recorded captures in tests/test_pebs_pt_hw.py.
"""
from __future__ import annotations

import pytest

from harness import missing
from harness import pebs_pt_hw as hw
from harness.payloads import build as payload_build
from harness.payloads import on_target

PAYLOAD_DIR = payload_build.GUESTS / "pebs_pt" / "capture"

# One case per PEBS_DATA_CFG group set and counter; loops * 2 / period records each.
CAPTURES = [
    {"id": "pebs_pt/hardware/records-basic", "counter": 0, "period": 10000, "loops": 100000, "cfg": 0x0,
     "rationale": "basic-group records only (PEBS_DATA_CFG 0) on GP counter 0: one per 10000 instructions"},
    {"id": "pebs_pt/hardware/records-meminfo", "counter": 1, "period": 10000, "loops": 100000, "cfg": 0x1,
     "rationale": "basic + memory-info groups on GP counter 1: blocks and record size follow PEBS_DATA_CFG"},
    {"id": "pebs_pt/hardware/records-gprs", "counter": 2, "period": 20000, "loops": 100000, "cfg": 0x3,
     "rationale": "basic + memory-info + GPR groups on GP counter 2 (the largest record without XMM/LBR)"},
    {"id": "pebs_pt/hardware/reload-period", "counter": 3, "period": 3000, "loops": 30000, "cfg": 0x0,
     "rationale": "a short MSR_RELOAD_PMC3 period: records per workload instructions match the reload value"},
]

@pytest.mark.targets("qemu", "local", "ssh")
@pytest.mark.parametrize("case", CAPTURES, ids=[c["id"] for c in CAPTURES])
def test_hardware_pebs_via_pt(case, guest):
    """On a capable target: one guest's PT buffer, its PEBS records as programmed."""
    remote, facts = on_target.placed(guest, hw.PAYLOAD, PAYLOAD_DIR, hw.parse_probe)
    reason = hw.missing(facts)
    if reason:
        missing.skip(reason.then(f", on {guest.where} ({hw.PAYLOAD} --probe); {case['id']} needs "
                                 f"PEBS output to Intel PT in a KVM guest"))
    (event,) = hw.decode(on_target.run(guest, [remote], stdin=hw.encode([case])), 1)
    hw.verdict(case, event)
