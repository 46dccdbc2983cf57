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
import json

import pytest

from harness.errors import HarnessError, KernelFailure
from harness.payloads import build as payload_build
from harness.payloads import sev_es_baseline as baseline
from harness.payloads import sev_es_module

from baseline_cases import CASES   # noqa: E402 (the case's own folder)

TAINT_MODULE = (1 << 12) | (1 << 13)    # O, E: include/linux/panic.h TAINT_OOT_MODULE, _UNSIGNED_MODULE
FOLDER = payload_build.GUESTS / "sev_es" / "baseline"


class Setup:
    """The trigger program and the module in one guest (redone for a replacement guest)."""

    def __init__(self, guest, kernel):
        self.guest, self.config = guest, kernel.config() or {}
        program = payload_build.build("sev_es_baseline", FOLDER).path
        self.program = f"{guest.scratch}/kvmconf-vc-trigger"
        guest.remote.upload(str(program), self.program, mode=0o700)
        self.module_missing = None
        try:
            ko = sev_es_module.build_module(kernel)
        except sev_es_module.ModulesUnsupported as e:
            self.module_missing = str(e)
        else:
            remote_ko = f"{guest.scratch}/kvmconf_vc.ko"
            guest.remote.upload(str(ko), remote_ko)
            done = guest.run(["insmod", remote_ko], timeout=60)
            if done.rc != 0:
                raise HarnessError(f"insmod kvmconf_vc.ko: {done.stderr.decode(errors='replace').strip()}")
            # the load's own taint is the baseline; any other bit it set is the kernel's
            problems = guest.taint_gained(ignore=TAINT_MODULE)
            if problems:
                raise KernelFailure(f"loading kvmconf_vc: {'; '.join(problems)}")
            guest.baseline_taint |= TAINT_MODULE
        probe = guest.run([self.program, "--probe"], timeout=30)
        if probe.rc != 0:
            raise HarnessError(f"trigger --probe exited {probe.rc}: {probe.stderr.decode(errors='replace')}")
        self.layout = baseline.Layout.parse([json.loads(line) for line in probe.text.splitlines()])
        for name, op in self.layout.kernel_ops.items():
            if sev_es_module.OPS.get(name, (None,))[0] != op["bytes"]:
                raise HarnessError(f"kvmconf_vc op {name} executes {op['bytes']}, the harness's table says "
                                   f"{sev_es_module.OPS.get(name, ('nothing',))[0]}")

    def missing(self, case: dict) -> str | None:
        lay, where = self.layout, f"probed by the trigger program in {self.guest.where}"
        if case["mode"] == "kernel" and self.module_missing:
            return f"{self.module_missing}: the kernel-mode triggers need the kvmconf_vc module"
        if case["mode"] == "kernel" and not lay.module:
            return f"/dev/kvmconf_vc missing after the module's load ({where})"
        if case["mode"] == "user" and any(t["exit"] == "ioio" for t in case["triggers"]) and not lay.ports:
            return f"ioperm() refused ports 0xe0-0xef{self._option('CONFIG_X86_IOPL_IOPERM')} ({where})"
        if any(t["exit"] == "npf" for t in case["triggers"]) and case["mode"] == "kernel" \
                and not lay.kernel_iomem_va:
            return f"the kvmconf_vc module could not ioremap pc-testdev's iomem at 0xff000000 ({where})"
        if any(t["exit"] == "npf" for t in case["triggers"]) and not lay.iomem:
            return f"/dev/mem cannot map pc-testdev's iomem at 0xff000000{self._option('CONFIG_DEVMEM')} ({where})"
        return None

    def _option(self, name: str) -> str:
        return f": {name} is not set in the kernel's config" if self.config.get(name) != "y" and self.config else ""

    def run(self, index: int, case: dict) -> list[dict]:
        text = "\n".join(baseline.lines(index, case, self.layout)) + "\n"
        done = self.guest.run([self.program], stdin=text.encode(), timeout=60)
        if done.rc != 0:
            raise HarnessError(f"trigger program exited {done.rc}: "
                               f"{done.stderr.decode(errors='replace').strip()[-300:]}")
        events = [json.loads(line) for line in done.text.splitlines()]
        if not events or events[-1] != {"script": index, "op": "done"}:
            raise HarnessError(f"trigger program: no end of script {index} in its output")
        return [e for e in events if e.get("op") == "result"]

    def close(self) -> None:
        if self.module_missing is None and self.guest.machine.running:
            self.guest.run(["rmmod", "kvmconf_vc"], timeout=30)


_setups: dict[int, Setup] = {}


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
        _setups[id(guest)] = Setup(guest, kvmconf_ctx.kernel)
    return _setups[id(guest)]


@pytest.mark.targets("qemu")
@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_baseline_trigger(case, setup):
    """One trigger sequence run natively: every result field equals the architectural
    prediction (registers, RFLAGS, RIP, exception, RAM, pc-testdev's port and iomem)."""
    reason = setup.missing(case)
    if reason:
        pytest.skip(reason)
    observed = setup.run(CASES.index(case), case)
    platform = setup.guest.machine.accel
    predicted = baseline.predict(case, setup.layout, observed, platform)
    wrong = baseline.compare(case, predicted, observed)
    if wrong:
        raise KernelFailure(f"{case['id']}: {wrong} (architectural model on pc-testdev, platform {platform})")
