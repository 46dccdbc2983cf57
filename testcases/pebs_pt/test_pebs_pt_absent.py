"""pebs_pt/absent/*: issue 13 item 4, the feature-absent conformance in a real guest.

The payload pebs_pt_absent (guests/pebs_pt/absent/, built with guests/lib's mini VMM)
runs on the target's /dev/kvm: one VM per case with KVM_GET_SUPPORTED_CPUID's CPUID
(PDCM / PT flipped where the case says), guest RDMSR/WRMSR with #GP recorded, vCPU
KVM_GET_MSRS/KVM_SET_MSRS, the MSR and feature-MSR index lists and the system fd's
PERF_CAPABILITIES. Each answer must equal what harness/payloads/pebs_pt_absent.py
predicts a 6.1 kernel without PEBS-via-PT answers, for the CPU vendor and KVM module
parameters the payload's probe saw; a difference is the kernel's (FAIL, naming the MSR
and the field). No /dev/kvm on the target: SKIP, naming where the probe looked.
"""
from __future__ import annotations

import pytest

from harness import missing
from harness.errors import KernelFailure
from harness.missing import Lack
from harness.payloads import build as payload_build
from harness.payloads import on_target
from harness.payloads import pebs_pt_absent as codec

from absent_cases import CASES   # noqa: E402 (the case's own folder)

PAYLOAD_DIR = payload_build.GUESTS / "pebs_pt" / "absent"

def _show(v) -> str:
    return f"{v:#x}" if isinstance(v, int) and not isinstance(v, bool) else repr(v)


@pytest.mark.targets("qemu", "local", "ssh")
@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_pebs_pt_absent(case, guest, kvmconf_ctx):
    """One case: every event the payload prints equals the 6.1 prediction."""
    remote, probe = on_target.placed(guest, codec.PAYLOAD, PAYLOAD_DIR, codec.parse_probe)
    if not probe.get("dev_kvm"):
        missing.skip(Lack("/dev/kvm", f"/dev/kvm absent on {guest.where} ({codec.PAYLOAD} --probe: "
                                      f"{probe.get('dev_kvm_why', 'not a character device')})"))
    if "feature_get" in case["case"]["ops"] and probe.get("get_msr_features", 0) <= 0:
        missing.skip(Lack("KVM_CAP_GET_MSR_FEATURES",
                          f"KVM_CAP_GET_MSR_FEATURES missing on {guest.where} ({codec.PAYLOAD} --probe)"))
    try:
        predicted = codec.predict(case["case"], {**probe, "kernel": kvmconf_ctx.kernel.version})
    except codec.Unmodelled as e:
        pytest.skip(f"not modelled: {e}")
    (observed,) = codec.decode(on_target.run(guest, [remote], stdin=codec.encode([case["case"]])), 1)
    wrong = codec.compare(case["case"], predicted, observed)
    if wrong:
        kvm = f"kvm-{probe['vendor']}"
        lines = [f"{where} {field}: a 6.1 kernel without PEBS-via-PT answers {_show(want)}, "
                 f"{kvm} answered {_show(got)}" for where, field, want, got in wrong]
        raise KernelFailure(f"{case['id']} on {guest.where}:\n" + "\n".join(lines))
