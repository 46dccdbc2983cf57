"""pebs_pt/hardware/*: PEBS records written into a KVM guest's Intel PT stream, on an Intel
host whose IA32_PERF_CAPABILITIES reports PEBS output to PT and whose KVM offers it to
guests (harness/pebs_pt_hw.py: the probe, and the record checks, tested on recorded
buffers in tests/test_pebs_pt_hw.py). Elsewhere each case SKIPs naming the missing
capability and where the probe read it.
"""
from __future__ import annotations

import pytest

from harness import pebs_pt_hw
from harness.errors import HarnessError

CASES = {
    "pebs_pt/hardware/records-in-pt": "PEBS records in the guest's PT buffer: counter, IP, size per PEBS_DATA_CFG",
    "pebs_pt/hardware/reload-period": "records per workload events match the MSR_RELOAD_PMCx period",
}


@pytest.mark.parametrize("cid", list(CASES))
def test_hardware_pebs_via_pt(cid):
    """On a capable host: program PEBS via PT in a mini-VMM guest and check its records."""
    reason = pebs_pt_hw.missing(pebs_pt_hw.probe_pebs_pt())
    if reason:
        pytest.skip(f"{reason}; {cid} needs PEBS output to Intel PT in a KVM guest")
    # A capable host exists, but the mini-VMM guest that programs PEBS_ENABLE with
    # PEBS_OUTPUT_PT and a ToPA buffer is not built: an honest ERROR, never a PASS.
    raise HarnessError(f"{cid}: this host offers PEBS via PT to guests, but kvmconf's capture (a mini-VMM "
                       f"guest programming PEBS to a ToPA buffer) is not built yet")
