"""The SEV-ES baseline runner (harness/payloads/sev_es_baseline.py) on recorded-shape
observations: its pc-testdev model, its predictions, and that the comparison catches a
wrong field. The real runs are sev_es/baseline/* in a guest (tests/test_sev_es_e2e.py)."""
from __future__ import annotations

import copy
import sys
from pathlib import Path

import pytest

from harness.payloads import sev_es_baseline as baseline
from harness.payloads import sev_es_module

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "testcases" / "sev_es"))
from baseline_cases import CASES  # noqa: E402

LAYOUT = baseline.Layout(code_va=0x50000000, ram_va=0x51000000, mmio_va=0x52000000, ports=True,
                         iomem=True, module=True, monitor=True,
                         kernel_ops={name: {"index": i, "bytes": code}
                                     for i, (name, (code, _)) in enumerate(sev_es_module.OPS.items())})


def case(cid: str) -> dict:
    return next(c for c in CASES if c["id"] == f"sev_es/baseline/{cid}")


def as_observed(predicted: list[dict]) -> list[dict]:
    """What the program prints when the guest does exactly what the model says."""
    return [{"regs": dict(p["regs"]), "rip": p["rip"], "exception": p["exception"], "port": p["port"],
             "iomem": p["iomem"], "ram": p["ram"]} for p in predicted]


def test_testdev_port_masks_like_qemu():
    dev = baseline.Testdev(0x11223344)
    assert dev.port_read(0xE1, 1) == b"\x33" and dev.port_read(0xE2, 2) == b"\x22\x11"
    assert dev.port_read(0xE2, 4) == b"\x22\x11\x00\x00"     # mask truncated to 32 bits
    dev.port_write(0xE2, b"\x77")
    assert dev.port_value == 0x11773344
    assert baseline.Testdev().port_read(0x80, 2) == b"\xff\xff"


def predicted(cid: str, platform: str = "tcg") -> list[dict]:
    c = case(cid)
    first = baseline.predict(c, LAYOUT, [{"regs": {r: 0 for r in baseline.model.GPRS}}] * len(c["triggers"]),
                             platform)
    return baseline.predict(c, LAYOUT, as_observed(first), platform)


def test_in_ax_keeps_the_upper_bits_architecturally():
    (p,) = predicted("ioio/in-ax-dx")
    assert p["regs"]["rax"] == 0xDEADBEEFCAFE3344 and p["rip"] == LAYOUT.code_va + 2


def test_out_then_in_goes_through_the_loopback():
    out, back = predicted("ioio/out-al-in-al")
    assert out["port"] == 0x1122335A and back["regs"]["rax"] == 0xDEADBEEFCAFEBA5A


def test_mmio_store_reaches_the_iomem_and_rep_insb_the_ram():
    assert predicted("mmio/store-widths")[-1]["iomem"].startswith("1100222233333333" + "5555555544444444")
    (p,) = predicted("ioio/rep-insb")
    assert p["ram"].startswith("00a5a5a5a500") and p["regs"]["rcx"] == 0


def test_platform_profile_makes_vmmcall_ud_under_tcg_only():
    (tcg,) = predicted("nae/vmmcall", "tcg")
    assert tcg["exception"]["vector"] == 6
    (kvm,) = predicted("nae/vmmcall", "kvm")
    assert kvm["exception"] is None


@pytest.mark.parametrize("cid", [c["id"].removeprefix("sev_es/baseline/") for c in CASES])
def test_every_case_agrees_with_itself_and_a_wrong_field_is_caught(cid):
    c = case(cid)
    p = predicted(cid)
    observed = as_observed(p)
    assert baseline.compare(c, p, observed) is None
    wrong = copy.deepcopy(observed)
    wrong[-1]["regs"]["rbx"] ^= 1 << 40
    if wrong[-1]["exception"] is None or c["mode"] == "user":
        assert "rbx" in baseline.compare(c, p, wrong)
    wrong = copy.deepcopy(observed)
    wrong[-1]["port"] ^= 0x100
    assert "port" in baseline.compare(c, p, wrong)


def test_the_61_register_effect_would_fail_a_baseline_case():
    c = case("ioio/in-ax-dx")
    p = predicted("ioio/in-ax-dx")
    observed = as_observed(p)
    observed[0]["regs"]["rax"] = 0x3344          # what 6.1's vc_handle_ioio() leaves
    assert "rax 0x3344" in baseline.compare(c, p, observed)
