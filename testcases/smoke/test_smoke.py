"""Smoke: the machine boots, answers over SSH and QMP, runs the kernel under
test, offers what the feature suites need, and powers off cleanly. On a live
host (--target local or ssh) only what applies there runs: commands, file
transfer into the run's private folder, the kernel version.

Only KernelFailure makes a case FAIL (the kernel under test is at fault); a
plain assertion here is about the harness or QEMU, and ERRORs."""
import re

import pytest

from harness import missing
from harness.errors import BootFailure, KernelFailure
from harness.missing import Lack


@pytest.mark.targets("qemu")
def test_boot(kvmconf_ctx):
    """The kernel under test boots to the SSH server; a panic is FAIL with its lines."""
    try:
        guest = kvmconf_ctx.guest()
    except BootFailure as e:
        if e.kernel_report:
            raise KernelFailure(f"{e}\n" + "\n".join(e.kernel_report)) from None
        raise
    assert guest.boot_to_ready_s > 0


def test_ssh(guest, tmp_path):
    """Commands keep their exit code and both streams; uploads (SFTP; a copy on the
    local target) arrive intact in the target's scratch folder."""
    result = guest.run(["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert (result.rc, result.stdout, result.stderr) == (3, b"out\n", b"err\n")
    assert guest.run(["cat"], stdin=b"x" * 200000).stdout == b"x" * 200000
    # A command right after each upload: the path where an SFTP server exiting late
    # once closed the next channel (about one round in twenty before the fix).
    for size in range(1, 25):
        blob = bytes(range(256)) * 3 * size + bytes([size])
        (tmp_path / "blob").write_bytes(blob)
        guest.remote.upload(str(tmp_path / "blob"), f"{guest.scratch}/blob")
        assert guest.run(["cat", f"{guest.scratch}/blob"]).stdout == blob


@pytest.mark.targets("qemu")
def test_qmp_status(guest):
    """QMP answers on the run's private unix socket and the machine is running."""
    status = guest.machine.qmp("query-status")
    assert status["status"] == "running" and status["running"] is True


def test_kernel_version(guest, kvmconf_ctx):
    """The target runs the kernel under test (uname -r is the version kvmconf recorded)."""
    assert guest.run(["uname", "-r"]).text.strip() == kvmconf_ctx.kernel.version


@pytest.mark.targets("qemu")
def test_dev_kvm(guest):
    """In the nested profile the kernel under test offers /dev/kvm (kvm-amd under TCG)."""
    if not guest.machine.profile.nested:
        missing.skip(Lack("nested virtualization",
                          f"machine profile {guest.machine.profile.name} has no nested virtualization"))
    result = guest.run(["sh", "-c", "test -c /dev/kvm || { dmesg | grep -i -e kvm -e svm; exit 1; }"])
    if result.rc != 0 or guest.capabilities["kvm"]["present"] is not True:
        raise KernelFailure(f"/dev/kvm missing on a CPU with svm; kernel log: {result.text[-300:]}")
    # kvm-amd/kvm-intel loaded (or built in) with nesting: the suites run nested guests.
    nested = [v for k, v in guest.capabilities.items() if k.endswith(".nested")]
    if not (nested and nested[0] in ("1", "Y")):
        raise KernelFailure(f"nested virtualization off in the kernel under test: {nested}")


@pytest.mark.targets("qemu")
def test_edu_device(guest):
    """In the VFIO profile the edu device is present and bound to vfio-pci in an IOMMU group."""
    if not guest.machine.profile.vfio:
        missing.skip(Lack("VFIO devices", f"machine profile {guest.machine.profile.name} has no VFIO devices"))
    edu = [d for d in guest.capabilities["pci"] if d["id"] == "1234:11e8"]
    assert edu, f"QEMU gave no edu device (1234:11e8): {guest.capabilities['pci']}"
    if not all(d["driver"] == "vfio-pci" and re.fullmatch(r"\d+", d["iommu_group"]) for d in edu):
        raise KernelFailure(f"edu not bound to vfio-pci in an IOMMU group: {edu}")
    groups = {d["iommu_group"] for d in edu}
    if not set(guest.capabilities["dev_vfio"].split()) >= groups | {"vfio"}:
        raise KernelFailure(f"/dev/vfio has {guest.capabilities['dev_vfio']!r}, expected groups {groups}")


@pytest.mark.targets("qemu")
def test_poweroff(kvmconf_ctx, guest):
    """Runs last in the smoke suite: a clean poweroff from inside the guest ends QEMU."""
    how = kvmconf_ctx.close_guest()
    assert how == "guest poweroff (SHUTDOWN guest-shutdown)", f"shutdown needed {how}"
