"""Smoke: the machine boots, answers over SSH and QMP, runs the kernel under
test, offers what the feature suites need, and powers off cleanly."""
import re

import pytest

from harness.errors import BootFailure


def test_boot(kvmconf_ctx):
    """The kernel under test boots to the SSH server; a panic is FAIL with its lines."""
    try:
        guest = kvmconf_ctx.guest()
    except BootFailure as e:
        if e.kernel_report:
            pytest.fail(f"{e}\n" + "\n".join(e.kernel_report), pytrace=False)
        raise
    assert guest.boot_to_ready_s > 0


def test_ssh(guest, tmp_path):
    """Commands keep their exit code and both streams; SFTP uploads arrive intact."""
    result = guest.run(["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert (result.rc, result.stdout, result.stderr) == (3, b"out\n", b"err\n")
    assert guest.run(["cat"], stdin=b"x" * 200000).stdout == b"x" * 200000
    blob = bytes(range(256)) * 64
    (tmp_path / "blob").write_bytes(blob)
    guest.remote.upload(str(tmp_path / "blob"), "/tmp/blob")
    assert guest.run(["cat", "/tmp/blob"]).stdout == blob


def test_qmp_status(guest):
    status = guest.machine.qmp("query-status")
    assert status["status"] == "running" and status["running"] is True


def test_kernel_version(guest, kvmconf_ctx):
    assert guest.run(["uname", "-r"]).text.strip() == kvmconf_ctx.kernel.version


def test_dev_kvm(guest):
    """In the nested profile the kernel under test offers /dev/kvm (kvm-amd under TCG)."""
    if not guest.machine.profile.nested:
        pytest.skip(f"machine profile {guest.machine.profile.name} has no nested virtualization")
    result = guest.run(["sh", "-c", "test -c /dev/kvm || { dmesg | grep -i -e kvm -e svm; exit 1; }"])
    assert result.rc == 0, f"/dev/kvm missing; kernel log: {result.text[-300:]}"
    assert guest.capabilities["kvm"]["present"] is True
    # kvm-amd/kvm-intel loaded (or built in) with nesting: the suites run nested guests.
    nested = [v for k, v in guest.capabilities.items() if k.endswith(".nested")]
    assert nested and nested[0] in ("1", "Y"), f"nested virtualization off: {nested}"


def test_edu_device(guest):
    """In the VFIO profile the edu device is present and bound to vfio-pci in an IOMMU group."""
    if not guest.machine.profile.vfio:
        pytest.skip(f"machine profile {guest.machine.profile.name} has no VFIO devices")
    edu = [d for d in guest.capabilities["pci"] if d["id"] == "1234:11e8"]
    assert edu, f"no edu device (1234:11e8) in {guest.capabilities['pci']}"
    assert all(d["driver"] == "vfio-pci" and re.fullmatch(r"\d+", d["iommu_group"]) for d in edu), edu
    groups = {d["iommu_group"] for d in edu}
    assert set(guest.capabilities["dev_vfio"].split()) >= groups | {"vfio"}


def test_poweroff(kvmconf_ctx, guest):
    """Runs last in the smoke suite: a clean poweroff from inside the guest ends QEMU."""
    how = kvmconf_ctx.close_guest()
    assert how == "guest poweroff (SHUTDOWN guest-shutdown)", f"shutdown needed {how}"
