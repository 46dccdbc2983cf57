"""Hardware hosts (issue 16 item 4): what `--accel auto` picks on a bare-metal host and
the QEMU command line that follows, from recorded host files, without KVM or QEMU.

tests/fixtures/hosts/<host>/ holds the files harness/probe.py reads (proc/cpuinfo,
sys/module/kvm_{intel,amd}/parameters/nested, dev/kvm as a plain file that opens
read-write); probe.HOST_ROOT points at it. ci-vm/proc/cpuinfo is this project's CI VM's
own (a KVM guest: /dev/kvm, no kvm_amd module, so no nesting); the others are in the
kernel's format for the machine they name (see tests/fixtures/hosts/README.md).
"""
from __future__ import annotations

from pathlib import Path

import pytest

from harness import probe
from harness.machine import Machine
from harness.machine.profiles import PROFILES
from tests.conftest import FIXTURES

HOSTS = FIXTURES / "hosts"


@pytest.fixture
def host(monkeypatch):
    def use(name: str) -> Path:
        root = HOSTS / name
        assert root.is_dir(), root
        monkeypatch.setattr(probe, "HOST_ROOT", root)
        return root
    return use


def _argv(accel: str, profile: str, tmp_path: Path) -> list[str]:
    machine = Machine("all", PROFILES[profile], tmp_path / "bzImage", tmp_path / "initrd", tmp_path, tmp_path,
                      accel=accel)
    return machine.argv("qemu-system-x86_64")


def _option(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, word in enumerate(argv) if word == flag]


# -- the probe on recorded hosts -----------------------------------------------------
@pytest.mark.parametrize("name, nested, accel, reason", [
    ("intel-nested", {"kvm_intel.nested": "Y", "kvm_amd.nested": None}, "kvm",
     "host KVM with nesting (kvm_intel.nested)"),
    ("amd-nested", {"kvm_intel.nested": None, "kvm_amd.nested": "1"}, "kvm",
     "host KVM with nesting (kvm_amd.nested)"),
    ("intel-no-nesting", {"kvm_intel.nested": "N", "kvm_amd.nested": None}, "tcg",
     "host KVM cannot nest (kvm_amd/kvm_intel nested parameter not set)"),
    ("ci-vm", {"kvm_intel.nested": None, "kvm_amd.nested": None}, "tcg",
     "host KVM cannot nest (kvm_amd/kvm_intel nested parameter not set)"),
    ("no-kvm", {"kvm_intel.nested": None, "kvm_amd.nested": None}, "tcg",
     "host KVM not usable (/dev/kvm: No such file or directory)"),
])
def test_auto_picks_kvm_only_where_the_host_nests(host, name, nested, accel, reason):
    host(name)
    assert probe.host_nested() == nested
    assert probe.choose_accel("auto") == (accel, reason)
    # an explicit --accel is taken as given, whatever the host
    assert probe.choose_accel("tcg") == ("tcg", "--accel tcg")
    assert probe.choose_accel("kvm") == ("kvm", "--accel kvm")


@pytest.mark.parametrize("name, vendor, model, microcode, virt", [
    ("intel-nested", "GenuineIntel", "Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz", "0xd0003b9", "vmx"),
    ("amd-nested", "AuthenticAMD", "AMD EPYC 9254 24-Core Processor", "0xa101148", "svm"),
    ("ci-vm", "AuthenticAMD", "AMD EPYC", "0x1000065", None),
])
def test_host_capabilities_read_the_first_processor(host, name, vendor, model, microcode, virt):
    host(name)
    caps = probe.host_capabilities()
    assert (caps["cpu_vendor"], caps["cpu_model"], caps["microcode"]) == (vendor, model, microcode)
    assert ("vmx" in caps["cpu_flags"] or "svm" in caps["cpu_flags"]) == (virt is not None)
    if virt:
        assert virt in caps["cpu_flags"]
    assert caps["kvm"]["usable"] is True and caps["kvm"]["detail"] == "/dev/kvm opens read-write"
    assert "kvm_intel.nested" in caps["kvm"] and "kvm_amd.nested" in caps["kvm"]


def test_a_dev_kvm_that_does_not_open_is_not_usable(tmp_path, monkeypatch):
    (tmp_path / "dev" / "kvm").mkdir(parents=True)              # opens, but not read-write
    (tmp_path / "sys/module/kvm_intel/parameters").mkdir(parents=True)
    (tmp_path / "sys/module/kvm_intel/parameters/nested").write_text("Y\n")
    monkeypatch.setattr(probe, "HOST_ROOT", tmp_path)
    assert probe.host_kvm_usable() == (False, "/dev/kvm: Is a directory")
    assert probe.choose_accel("auto") == ("tcg", "host KVM not usable (/dev/kvm: Is a directory)")


def test_the_real_host_is_read_by_default():
    assert probe.HOST_ROOT == Path("/")
    assert probe.host_path("/proc/cpuinfo") == Path("/proc/cpuinfo")


# -- the QEMU command line that follows ------------------------------------------------
@pytest.mark.parametrize("name", ["intel-nested", "amd-nested"])
@pytest.mark.parametrize("profile, split", [("nested", False), ("vfio", True), ("all", True)])
def test_a_nesting_host_runs_the_machines_on_kvm(host, tmp_path, name, profile, split):
    host(name)
    accel, _ = probe.choose_accel("auto")
    argv = _argv(accel, profile, tmp_path)
    assert _option(argv, "-accel") == ["kvm"]
    assert _option(argv, "-cpu") == ["host"]            # the host's CPU, vmx/svm included: the guest nests
    # VFIO behind QEMU's intel-iommu needs the split irqchip (interrupt remapping) under KVM
    assert _option(argv, "-machine") == ["q35,kernel-irqchip=split" if split else "q35"]
    devices = _option(argv, "-device")
    assert ("intel-iommu,caching-mode=on" in devices) == PROFILES[profile].vfio
    if PROFILES[profile].vfio:
        assert devices.index("intel-iommu,caching-mode=on") < devices.index("edu")


@pytest.mark.parametrize("name", ["intel-no-nesting", "ci-vm", "no-kvm"])
@pytest.mark.parametrize("profile, cpu, accel", [("nested", "EPYC,+svm", "tcg,thread=single"),
                                                 ("vfio", "EPYC", "tcg"), ("all", "EPYC,+svm", "tcg,thread=single")])
def test_a_host_that_cannot_nest_runs_every_machine_on_tcg(host, tmp_path, name, profile, cpu, accel):
    host(name)
    chosen, _ = probe.choose_accel("auto")
    argv = _argv(chosen, profile, tmp_path)
    assert _option(argv, "-accel") == [accel]
    assert _option(argv, "-cpu") == [cpu]
    assert _option(argv, "-machine") == ["q35"]         # no split irqchip under TCG
