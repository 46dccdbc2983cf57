"""sev_es/baseline/*: the #VC triggers run natively in a normal guest booting the kernel
under test (QEMU, no SEV), on pc-testdev; the results must equal the model's
architectural prediction (harness/payloads/sev_es_baseline.py). This checks the model
against a real CPU and device, which the vcsim cases then trust: user-mode triggers run
from their bytes (guests/sev_es/baseline/trigger), kernel-mode ones through the
kvmconf_vc module built against the guest kernel (its Debian linux-headers, or its
build tree).

The module's load taints the kernel (O: out of tree, E: unsigned); those two bits are
recorded as the baseline before the cases, every other bit still counts afterwards.
"""
from __future__ import annotations

import contextlib

import pytest

from harness import missing
from harness.errors import HarnessError, KernelFailure
from harness.payloads import sev_es_baseline as baseline

from baseline_cases import CASES   # noqa: E402 (the case's own folder)


_setups: dict[int, baseline.GuestRunner] = {}


@pytest.fixture(scope="module", autouse=True)
def _unload_module():
    """The module leaves the guest after the last baseline case."""
    yield
    for done in _setups.values():
        with contextlib.suppress(HarnessError):
            done.close()
    _setups.clear()


@pytest.fixture
def setup(guest, kvmconf_ctx):
    if id(guest) not in _setups:
        _setups.clear()
        _setups[id(guest)] = baseline.GuestRunner(guest, kvmconf_ctx.kernel)
    return _setups[id(guest)]


@pytest.mark.targets("qemu")
@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_baseline_trigger(case, setup):
    """One trigger sequence run natively: every result field equals the architectural
    prediction (registers, RFLAGS, RIP, exception, RAM, pc-testdev's port and iomem)."""
    reason = setup.missing(case)
    if reason:
        missing.skip(reason)
    observed = setup.run(CASES.index(case), case)
    platform = setup.guest.machine.accel
    predicted = baseline.predict(case, setup.layout, observed, platform)
    wrong = baseline.compare(case, predicted, observed)
    if wrong:
        raise KernelFailure(f"{case['id']}: {wrong} (architectural model on pc-testdev, platform {platform})")
