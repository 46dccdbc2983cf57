"""Unit tests of the orchestrator's own modules (no QEMU)."""
from __future__ import annotations

import json
import os
import struct
import subprocess
from pathlib import Path

import pytest

from harness import cache
from harness.compare import Divergence, first_divergence, matching_profile
from harness.errors import HarnessError, UsageError
from harness.guestimage import cpio
from harness.guestimage.modules import ModuleIndex
from harness.kernel import bzimage
from harness.machine import kernel_log
from harness.machine.profiles import PROFILES, profile_for
from harness.probe import choose_accel, parse_shell_probe
from harness.remote import _quote
from harness.results.record import RunRecord
from harness.results.schema import problems


# -- compare -----------------------------------------------------------------
def test_first_divergence_names_step_field_and_values():
    expected = [{"op": "wrmsr", "exit": None}, {"op": "rdmsr", "value": 5, "vector": None}]
    observed = [{"op": "wrmsr", "exit": None}, {"op": "rdmsr", "value": 0, "vector": None}]
    div = first_divergence(expected, observed)
    assert (div.step, div.action, div.field, div.expected, div.observed) == (1, "rdmsr", "value", 5, 0)
    assert div.as_record()["expected"] == "5" and "step 1 (rdmsr): value" in div.summary()


def test_first_divergence_nested_paths_missing_events_and_agreement():
    assert first_divergence([{"a": {"b": [1, 2]}}], [{"a": {"b": [1, 3]}}]).field == "a.b[1]"
    assert first_divergence([{"a": 1}], [{"a": 1, "extra": 2}]).field == "extra"
    short = first_divergence([{"op": "x"}, {"op": "y"}], [{"op": "x"}])
    assert (short.step, short.field, short.observed) == (1, "event", "<absent>")
    assert first_divergence([{"op": "x", "v": 1}], [{"op": "x", "v": 1}]) is None
    assert first_divergence([{"v": True}], [{"v": 1}]) is not None  # bool is not int here


def test_matching_profile_picks_the_first_profile_that_reproduces():
    observed = [{"op": "rdmsr", "value": 0}]
    predictions = [("mainline", [{"op": "rdmsr", "vector": 13}]), ("v7", [{"op": "rdmsr", "value": 0}])]
    assert matching_profile(observed, predictions) == "v7"
    assert matching_profile(observed, predictions[:1]) is None
    assert isinstance(Divergence(0, "a", "f", 1, 2), AssertionError)


# -- cache ---------------------------------------------------------------------
def test_atomic_write_and_directory(tmp_path):
    target = tmp_path / "sub" / "file"
    cache.atomic_write_bytes(target, b"one")
    cache.atomic_write_bytes(target, b"two")
    assert target.read_bytes() == b"two" and os.listdir(target.parent) == ["file"]
    with pytest.raises(RuntimeError):
        with cache.atomic_directory(tmp_path / "dir") as tmp:
            (tmp / "x").write_text("partial")
            raise RuntimeError("build failed")
    assert not (tmp_path / "dir").exists() and sorted(os.listdir(tmp_path)) == ["sub"]


def test_cache_root_honours_kvmconf_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("KVMCONF_CACHE", str(tmp_path / "c"))
    assert cache.cache_root() == tmp_path / "c" and (tmp_path / "c").is_dir()


# -- cpio ------------------------------------------------------------------------
def test_cpio_archive_reads_back_with_gnu_cpio(tmp_path):
    data = cpio.archive([cpio.directory("etc"), cpio.file("etc/passwd", b"root:x:0:0\n", 0o600),
                         cpio.symlink("etc/link", "/etc/passwd")])
    (tmp_path / "a.cpio").write_bytes(data)
    out = tmp_path / "out"
    out.mkdir()
    subprocess.run(["cpio", "-idm", "--quiet", "-F", str(tmp_path / "a.cpio")], cwd=out, check=True)
    assert (out / "etc/passwd").read_bytes() == b"root:x:0:0\n"
    assert (out / "etc/passwd").stat().st_mode & 0o777 == 0o600
    assert os.readlink(out / "etc/link") == "/etc/passwd"


# -- modules -------------------------------------------------------------------------
def _fake_module(folder: Path, name: str, depends: str) -> None:
    """A relocatable ELF with a .modinfo section, as kbuild makes one."""
    src = folder / f"{name}.c"
    src.write_text(f'__attribute__((section(".modinfo"), used)) static const char info[] = '
                   f'"license=GPL\\0depends={depends}\\0name={name}";\n')
    subprocess.run(["gcc", "-c", "-o", str(folder / f"{name}.ko"), str(src)], check=True)


def test_module_load_order_resolves_depends(tmp_path):
    kdir = tmp_path / "kernel"
    kdir.mkdir()
    _fake_module(kdir, "kvm-amd", "kvm,ccp")
    _fake_module(kdir, "kvm", "irqbypass")
    _fake_module(kdir, "irqbypass", "")
    _fake_module(kdir, "ccp", "")
    index = ModuleIndex(tmp_path)
    order = [m.name for m in index.load_order("kvm-amd")]
    assert order == ["irqbypass", "kvm", "ccp", "kvm_amd"]
    assert index.load_order("absent") == []


def test_module_with_a_missing_dependency_is_an_error(tmp_path):
    (tmp_path / "kernel").mkdir()
    _fake_module(tmp_path / "kernel", "vfio-pci", "vfio")
    with pytest.raises(HarnessError, match="depends on vfio"):
        ModuleIndex(tmp_path).load_order("vfio_pci")


# -- bzImage -----------------------------------------------------------------------------
def _bzimage(tmp_path: Path, version: bytes) -> Path:
    image = bytearray(0x1000)
    struct.pack_into("<H", image, 0x1FE, 0xAA55)
    image[0x202:0x206] = b"HdrS"
    struct.pack_into("<H", image, 0x20E, 0x600 - 0x200)
    image[0x600:0x600 + len(version)] = version
    path = tmp_path / "bzImage"
    path.write_bytes(bytes(image))
    return path


def test_bzimage_version_from_setup_header(tmp_path):
    path = _bzimage(tmp_path, b"6.1.0-56-amd64 (debian-kernel@lists.debian.org) #1 SMP\0")
    assert bzimage.read_version(path) == "6.1.0-56-amd64"
    assert bzimage.from_path(path).version == "6.1.0-56-amd64"


def test_bzimage_errors_name_the_path(tmp_path):
    with pytest.raises(UsageError, match=r"--kernel .*/nope: no such file"):
        bzimage.from_path(tmp_path / "nope")
    (tmp_path / "text").write_text("not a kernel" * 100)
    with pytest.raises(UsageError, match=r"--kernel .*/text: not a bzImage"):
        bzimage.from_path(tmp_path / "text")
    with pytest.raises(UsageError, match="--modules"):
        bzimage.from_path(_bzimage(tmp_path, b"6.1.0\0"), tmp_path / "nomodules")


# -- run record ------------------------------------------------------------------------------
def _record(tmp_path) -> RunRecord:
    record = RunRecord(tmp_path / "run.json", "r1", "lbl", {"version": "0", "git": "x"}, {})
    record.data["kernel"] = {"kind": "debian", "version": "6.1", "sha256": "0", "source": None,
                             "config_sha256": None, "series": []}
    record.data["platform"] = {"host_cpu": "cpu", "accel": "tcg", "qemu": "7.2", "capabilities": {}}
    return record


def test_record_plans_miss_then_finishes_and_stays_valid(tmp_path):
    record = _record(tmp_path)
    record.plan([("smoke/boot", "smoke"), ("syndbg/msr/a", "syndbg")], "kvmconf run --seed 1")
    on_disk = json.loads((tmp_path / "run.json").read_text())
    assert [c["status"] for c in on_disk["cases"]] == ["MISS", "MISS"]
    assert on_disk["cases"][1]["reproduce"] == "kvmconf run --seed 1 --case syndbg/msr/a"
    assert problems(on_disk) == []
    assert record.exit_code() == 2
    record.finish("smoke/boot", "PASS", "", 1.0)
    record.finish("syndbg/msr/a", "FAIL", "diverged", 0.5,
                  Divergence(3, "wrmsr", "exit.msr", 1, 2, "v7").as_record())
    on_disk = json.loads((tmp_path / "run.json").read_text())
    assert on_disk["summary"] == {"pass": 1, "fail": 1, "error": 0, "skip": 0, "miss": 0}
    assert on_disk["cases"][1]["divergence"]["matches_profile"] == "v7"
    assert problems(on_disk) == [] and record.exit_code() == 1


def test_record_exit_codes_and_findings(tmp_path):
    record = _record(tmp_path)
    record.plan([("smoke/a", "smoke"), ("smoke/b", "smoke")], "kvmconf run")
    record.finish("smoke/a", "PASS", "", 0)
    record.finish("smoke/b", "SKIP", "no /dev/kvm", 0)
    assert record.exit_code() == 0
    record.finish("smoke/b", "ERROR", "ssh lost", 0)
    assert record.exit_code() == 2
    for case in ("vfio/a", "vfio/b", "vfio/a"):
        record.add_finding("vfio/stale", "vfio", "t", "i", "o", "m", case)
    assert record.data["findings"][0]["cases"] == ["vfio/a", "vfio/b"]
    with pytest.raises(ValueError):
        record.annotate("smoke/a", status="PASS")


def test_schema_check_reports_broken_records(tmp_path):
    record = _record(tmp_path)
    record.plan([("smoke/a", "smoke")], "kvmconf run")
    data = json.loads(json.dumps(record.data))
    data["summary"]["pass"] = 3
    data["cases"][0]["feature"] = "vfio"
    found = problems(data)
    assert any("summary" in p for p in found) and any("feature" in p for p in found)


# -- machine, probe, remote --------------------------------------------------------------------
def test_profile_choice_boots_once_when_it_can():
    assert profile_for({"syndbg"}) is PROFILES["nested"]
    assert profile_for({"vfio"}) is PROFILES["vfio"]
    assert profile_for({"syndbg", "vfio"}) is PROFILES["all"]
    assert profile_for({"smoke"}) is PROFILES["all"]
    assert PROFILES["all"].devices()[0].startswith("intel-iommu")
    assert PROFILES["nested"].cpu("tcg") == "EPYC,+svm" and PROFILES["all"].cpu("kvm") == "host"


def test_accel_auto_uses_kvm_only_with_nesting(monkeypatch):
    import harness.probe as probe
    monkeypatch.setattr(probe, "host_kvm_usable", lambda: (True, "ok"))
    monkeypatch.setattr(probe, "host_nested", lambda: {"kvm_intel.nested": "N", "kvm_amd.nested": None})
    assert choose_accel("auto")[0] == "tcg"
    monkeypatch.setattr(probe, "host_nested", lambda: {"kvm_intel.nested": "Y", "kvm_amd.nested": None})
    assert choose_accel("auto") == ("kvm", "host KVM with nesting (kvm_intel.nested)")
    monkeypatch.setattr(probe, "host_kvm_usable", lambda: (False, "/dev/kvm: Permission denied"))
    accel, reason = choose_accel("auto")
    assert accel == "tcg" and "Permission denied" in reason
    assert choose_accel("kvm")[0] == "kvm" and choose_accel("tcg")[0] == "tcg"


def test_shell_probe_parsing():
    facts = parse_shell_probe("uname_r=6.1.0\ncpu_flags= fpu svm\n"
                              "pci=0000:00:03.0 0x1234:0x11e8 driver=vfio-pci group=3\njunk\n")
    assert facts["uname_r"] == "6.1.0" and facts["cpu_flags"] == ["fpu", "svm"]
    assert facts["pci"] == [{"address": "0000:00:03.0", "id": "1234:11e8", "driver": "vfio-pci",
                             "iommu_group": "3"}]


def test_kernel_reports_are_found_with_context_and_noise_is_not():
    lines = ["[0.2] Speculative Return Stack Overflow: WARNING: See https://...",
             "[5.0] WARNING: CPU: 1 PID: 77 at arch/x86/kvm/hyperv.c:1234 kvm_hv_set_msr+0x1/0x2",
             "[5.0] Modules linked in: kvm_amd", "[5.0] CPU: 1 PID: 77", "[5.1] ok"]
    assert kernel_log.reports(lines[:1]) == []
    assert kernel_log.reports(lines) == lines[1:4]
    assert kernel_log.reports(["[1.0] BUG: kernel NULL pointer dereference, address: 0"])


@pytest.mark.parametrize("word", ["plain", "with space", "it's", "$(reboot)", "a\"b`c`", ""])
def test_remote_quoting_survives_a_posix_shell(word):
    out = subprocess.run(["sh", "-c", f"printf %s {_quote(word)}"], capture_output=True, text=True)
    assert out.stdout == word


# -- PVH boot file -------------------------------------------------------------------------
def test_pvh_payload_is_found_by_the_setup_header_and_falls_back_without_a_note(tmp_path, monkeypatch):
    import lzma
    from harness.kernel import KernelImage, pvh
    monkeypatch.setenv("KVMCONF_CACHE", str(tmp_path / "cache"))
    elf = (tmp_path / "e.c")
    elf.write_text("int main(void){return 0;}\n")
    subprocess.run(["gcc", "-o", str(tmp_path / "e"), str(elf)], check=True)
    payload = lzma.compress((tmp_path / "e").read_bytes(), format=lzma.FORMAT_XZ)
    image = bytearray(5 * 512)
    image[0x1F1] = 4
    image[0x202:0x206] = b"HdrS"
    struct.pack_into("<H", image, 0x206, 0x20F)
    struct.pack_into("<II", image, 0x248, 16, len(payload))
    image += b"\0" * 16 + payload
    assert pvh._payload(bytes(image)) == payload
    assert pvh._decompress(payload) == (tmp_path / "e").read_bytes()
    (tmp_path / "bz").write_bytes(bytes(image))
    kernel = KernelImage("bzimage", "x", tmp_path / "bz", "ab" * 32)
    # An ordinary ELF has no Xen PHYS32_ENTRY note: QEMU must get the bzImage.
    assert pvh.boot_file(kernel) == tmp_path / "bz"
    assert pvh.boot_file(kernel) == tmp_path / "bz"  # remembered
