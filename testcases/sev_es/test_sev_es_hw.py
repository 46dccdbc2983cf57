"""sev_es/hardware/*: the kernel under test booted as a real SEV-ES guest (QEMU `sev-guest`
with the ES policy bit, OVMF, no SMM, in-kernel irqchip) on an AMD host with SEV-ES.

The guest runs the baseline triggers (testcases/sev_es/baseline_cases.py, through the
same trigger program and kvmconf_vc module as sev_es/baseline/*), each script between two
OUTs of mark values to pc-testdev's port; the host's kvm_vmgexit_* tracepoints between
the marks are the guest kernel's GHCB requests (exit code, exit_info_1, exit_info_2:
all the tracepoints carry; the registers, scratch and valid bitmap are not visible from
the host). Both the requests and the results the program reports must be what the
model predicts under the 6.1 profile, i.e. the baseline's except where 6.1 deviates.
harness/sev_es_hw.py builds the command line, captures and parses the trace, cuts the
window and compares; those parts are tested on recorded fixtures in
tests/test_sev_es_hw.py.

Where the host lacks a capability each case SKIPs naming it and where the probe saw it
(CPUID 0x8000001F, kvm_amd's sev_es parameter, /dev/sev, OVMF).
"""
from __future__ import annotations

import pytest

from harness import missing, sev_es_hw
from harness.errors import KernelFailure
from harness.payloads import sev_es_baseline as baseline

from baseline_cases import CASES   # noqa: E402 (the case's own folder)


def _user(kind: str):
    return lambda c: c["mode"] == "user" and all(t["exit"] == kind for t in c["triggers"]) and "iomem" not in c


# Which baseline scripts each hardware case runs: none that touches the device from
# user-mode MMIO (6.1 refuses user MMIO under SEV-ES), none whose module run adds its own
# save/restore accesses (DR7, WRMSR) inside the window.
SELECT = {
    "sev_es/hardware/ioio-exchange": _user("ioio"),
    "sev_es/hardware/cpuid-msr-exchange": lambda c: _user("cpuid")(c) or (
        c["mode"] == "kernel" and all(t.get("kop") == "rdmsr" for t in c["triggers"])),
    "sev_es/hardware/mmio-exchange": lambda c: c["mode"] == "kernel" and all(
        t["exit"] == "npf" for t in c["triggers"]),
}
CASES_HW = {
    "sev_es/hardware/ioio-exchange": "OUT/IN/INS/OUTS triggers: exit 0x7b with the IOIO exit_info_1 the model predicts",
    "sev_es/hardware/cpuid-msr-exchange": "CPUID (0x72) and RDMSR (0x7c): exit codes and exit_info as predicted",
    "sev_es/hardware/mmio-exchange": "CPL0 MMIO on pc-testdev's iomem: 0x80000001/2 with the PA and length",
}
_runners: dict[int, baseline.GuestRunner] = {}


@pytest.mark.targets("qemu")
@pytest.mark.parametrize("cid", list(CASES_HW))
def test_hardware_exchange(cid, kvmconf_ctx):
    """The kernel under test as a real SEV-ES guest: its VMGEXIT exchange, read from the
    host's kvm_vmgexit tracepoints, and its results, against the model (SKIP without SEV-ES)."""
    facts = sev_es_hw.probe_sev_es()
    reason = sev_es_hw.missing(facts)
    if reason:
        missing.skip(reason.then(f"; {cid} boots the kernel under test as an SEV-ES guest on this host"))
    guest = kvmconf_ctx.boot_extra("sev-es", sev_es_hw.sev_es_machine(facts))
    runner = _runners.setdefault(id(guest), None) or _runners.setdefault(
        id(guest), baseline.GuestRunner(guest, kvmconf_ctx.kernel))
    ran = 0
    for index, case in enumerate(CASES):
        if not SELECT[cid](case) or runner.missing(case):
            continue
        with sev_es_hw.TraceSession() as trace:
            trace.follow(sev_es_hw.qemu_threads(guest.machine.process.pid))
            observed = runner.run(index, case, marks=(sev_es_hw.MARK_START, sev_es_hw.MARK_END))
            text = trace.read()
        requests = sev_es_hw.drop_setup_out(sev_es_hw.window(sev_es_hw.exchange(sev_es_hw.parse_trace(text))),
                                            case.get("port", 0))
        results, vmgexits = baseline.predict_sev_es(case, runner.layout, observed, "6.1")
        diverged = sev_es_hw.compare_exchange(requests, vmgexits)
        if diverged:
            raise diverged      # the first request that differs: FAIL with its fields in run.json
        wrong = baseline.compare(case, results, observed)
        if wrong:
            raise KernelFailure(f"{case['id']} as an SEV-ES guest: {wrong} (model profile 6.1)")
        ran += 1
    assert ran, f"{cid}: no baseline script applies"
