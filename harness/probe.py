"""Capabilities of the host and of the kernel under test; every SKIP reason comes from here."""
from __future__ import annotations

import json
import os
import platform
import subprocess
from pathlib import Path

from harness.errors import HarnessError

# Shell side of the guest probe: facts a file read answers. Printed as
# "key=value" lines; the C probe payload adds the ioctl and MSR facts.
GUEST_SHELL_PROBE = r"""
echo "uname_r=$(uname -r)"
echo "cpu_model=$(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')"
for f in vendor_id 'cpu family' model stepping microcode; do
  echo "cpuinfo.$f=$(grep -m1 "^$f[[:space:]]*:" /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')"
done
echo "cpu_flags=$(grep -m1 '^flags' /proc/cpuinfo | cut -d: -f2)"
for p in nested npt sev sev_es; do
  for m in kvm_amd kvm_intel; do
    f=/sys/module/$m/parameters/$p; [ -r $f ] && echo "$m.$p=$(cat $f)"
  done
done
echo "dev_kvm=$([ -c /dev/kvm ] && echo yes || echo no)"
echo "dev_vfio=$(ls /dev/vfio 2>/dev/null | tr '\n' ' ')"
echo "iommu_groups=$(ls /sys/kernel/iommu_groups 2>/dev/null | wc -l)"
for d in /sys/bus/pci/devices/*; do
  drv=$(basename "$(readlink $d/driver 2>/dev/null)" 2>/dev/null)
  grp=$(basename "$(readlink $d/iommu_group 2>/dev/null)" 2>/dev/null)
  echo "pci=${d##*/} $(cat $d/vendor):$(cat $d/device) driver=${drv:-none} group=${grp:-none}"
done
echo "tainted=$(cat /proc/sys/kernel/tainted)"
"""


# Where the host's /proc, /sys and /dev are read from: "/" but for the tests, which point
# it at a recorded host (tests/fixtures/hosts/<name>/, tests/test_hardware_hosts.py).
HOST_ROOT = Path("/")


def host_path(path: str) -> Path:
    """The host's `path` ("/proc/cpuinfo") under HOST_ROOT."""
    return HOST_ROOT / path.lstrip("/")


def _cpuinfo() -> dict[str, str]:
    info: dict[str, str] = {}
    try:
        for line in host_path("/proc/cpuinfo").read_text().splitlines():
            key, sep, value = line.partition(":")
            if not sep:
                break  # first processor only
            info.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return info


def _read(path: str) -> str | None:
    try:
        return host_path(path).read_text().strip()
    except OSError:
        return None


def host_nested() -> dict[str, str | None]:
    return {"kvm_amd.nested": _read("/sys/module/kvm_amd/parameters/nested"),
            "kvm_intel.nested": _read("/sys/module/kvm_intel/parameters/nested")}


def host_kvm_usable() -> tuple[bool, str]:
    try:
        fd = os.open(host_path("/dev/kvm"), os.O_RDWR | os.O_CLOEXEC)
    except OSError as e:
        return False, f"/dev/kvm: {e.strerror}"
    os.close(fd)
    return True, "/dev/kvm opens read-write"


def choose_accel(requested: str) -> tuple[str, str]:
    """accel `auto`: KVM only when the host can give the guest nested virtualization.

    Even the VFIO-only machine gets TCG on a host that cannot nest: such a host's
    KVM is not one we can vouch for (here it stopped a q35 + intel-iommu guest
    with an internal-error), and one accel for all profiles keeps runs comparable.
    """
    if requested in ("tcg", "kvm"):
        return requested, f"--accel {requested}"
    usable, why = host_kvm_usable()
    if not usable:
        return "tcg", f"host KVM not usable ({why})"
    nested = {k: v for k, v in host_nested().items() if v in ("1", "Y", "y")}
    if not nested:
        return "tcg", "host KVM cannot nest (kvm_amd/kvm_intel nested parameter not set)"
    return "kvm", f"host KVM with nesting ({', '.join(nested)})"


def qemu_version(binary: str) -> str:
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (FileNotFoundError, subprocess.TimeoutExpired) as e:
        raise HarnessError(f"{binary} --version: {e}") from None
    return out.splitlines()[0].strip() if out else "unknown"


def host_capabilities() -> dict:
    cpu = _cpuinfo()
    usable, why = host_kvm_usable()
    uname = platform.uname()
    return {"cpu_vendor": cpu.get("vendor_id", platform.machine()),
            "cpu_model": cpu.get("model name", "unknown"),
            **cpu_ident(cpu),
            "microcode": cpu.get("microcode"),          # None where /proc/cpuinfo has none (TCG)
            "kernel": f"{uname.release} {uname.version}",  # the host's, not the kernel under test
            "cpu_flags": cpu.get("flags", "").split(),
            "kvm": {"usable": usable, "detail": why, **host_nested()}}


def cpu_ident(cpuinfo: dict) -> dict:
    """CPU family, model and stepping (numbers) of /proc/cpuinfo's first processor;
    None where it has no such line (not x86)."""
    def number(key: str) -> int | None:
        value = (cpuinfo.get(key) or "").strip()
        return int(value) if value.isdigit() else None
    return {"cpu_family": number("cpu family"), "cpu_model_number": number("model"),
            "cpu_stepping": number("stepping")}


def parse_shell_probe(text: str) -> dict:
    facts: dict = {"pci": []}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if not sep:
            continue
        if key == "pci":
            addr, ident, driver, group = (value.split() + ["", "", "", ""])[:4]
            facts["pci"].append({"address": addr, "id": ident.replace("0x", ""),
                                 "driver": driver.removeprefix("driver="),
                                 "iommu_group": group.removeprefix("group=")})
        elif key == "cpu_flags":
            facts[key] = value.split()
        elif key.startswith("cpuinfo."):
            facts.setdefault("cpuinfo", {})[key.removeprefix("cpuinfo.")] = value.strip()
        else:
            facts[key] = value.strip()
    cpuinfo = facts.pop("cpuinfo", None)
    if cpuinfo is not None:
        facts.update(cpu_vendor=cpuinfo.get("vendor_id") or None, **cpu_ident(cpuinfo),
                     microcode=cpuinfo.get("microcode") or None)
    return facts


def guest_capabilities(run, probe_path: str) -> dict:
    """Probe the target (a booted guest or a live host). `run(argv, timeout=)` runs
    there; `probe_path` is the probe payload there."""
    shell = run(["sh", "-c", GUEST_SHELL_PROBE], timeout=30)
    facts = parse_shell_probe(shell.text)
    probe = run([probe_path], timeout=30)
    if probe.rc != 0:
        raise HarnessError(f"probe payload exited {probe.rc}: {probe.stderr[-200:]!r}")
    try:
        facts.update(json.loads(probe.text))
    except json.JSONDecodeError as e:
        raise HarnessError(f"guest probe printed invalid JSON: {e}") from None
    return facts
