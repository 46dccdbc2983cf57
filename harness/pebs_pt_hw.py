"""The PEBS-via-PT hardware path (issue 13 item 5): what a host needs, and the checks of
the PEBS records a guest's PT buffer carries.

* `probe_pebs_pt` reads the host: the CPU vendor, CPUID.7:EBX[25] (Intel PT),
  CPUID.1:ECX[15] (PDCM), IA32_PERF_CAPABILITIES (MSR 0x345, through /dev/cpu/0/msr)
  bit 16 (PEBS output to PT, PERF_CAP_PT_IDX) and its PEBS format, kvm_intel and its
  pt_mode parameter (1: host-guest, PT exposed to guests), and what KVM itself offers
  (KVM_GET_MSRS on /dev/kvm of the feature MSR PERF_CAPABILITIES: bit 16 must be there,
  which no merged KVM does: vmx.c vmx_get_perf_capabilities() never sets it);
  `missing` names the first capability absent and where the probe read it.
* `check_records` compares PEBS records decoded by the reference codec
  (harness/reference/pebs_pt_codec.py: pebs_records) with what the guest programmed:
  the counter (applicable counters), the IP inside the guest workload, the record's
  groups and size per PEBS_DATA_CFG, and the reload value between consecutive records.

The capture itself (a mini-VMM guest programming PEBS_ENABLE with PEBS_OUTPUT_PT and the
RTIT MSRs to a ToPA buffer in its memory) needs such a host; none exists here, so the
hardware cases SKIP with the probe's reason, and on a capable host they ERROR naming the
missing capture rather than pass.
"""
from __future__ import annotations

import fcntl
import os
import struct
from typing import Callable

from harness.reference import pebs_pt_codec as codec

MSR_DEV = "/dev/cpu/0/msr"
CPUID_DEV = "/dev/cpu/0/cpuid"
KVM_INTEL = "/sys/module/kvm_intel"
DEV_KVM = "/dev/kvm"
MSR_IA32_PERF_CAPABILITIES = 0x345
PERF_CAP_PEBS_FORMAT = 0xF00
PERF_CAP_PT_IDX = 16                 # arch/x86/include/asm/msr-index.h: PERF_CAP_PT_IDX
KVM_GET_MSRS = 0xC008AE88            # _IOWR(KVMIO, 0x88, struct kvm_msrs)


def _read_file(path: str) -> str:
    with open(path) as f:
        return f.read()


def _pread(path: str, offset: int, size: int) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.pread(fd, size, offset)
    finally:
        os.close(fd)


def read_cpuid(leaf: int, subleaf: int = 0) -> tuple[int, int, int, int]:
    return struct.unpack("<4I", _pread(CPUID_DEV, (subleaf << 32) | leaf, 16))


def read_msr(msr: int) -> int:
    return struct.unpack("<Q", _pread(MSR_DEV, msr, 8))[0]


def kvm_feature_msr(msr: int) -> int | None:
    """KVM_GET_MSRS on /dev/kvm: the feature MSR's value KVM offers, None when refused."""
    fd = os.open(DEV_KVM, os.O_RDWR | os.O_CLOEXEC)
    try:
        buf = bytearray(struct.pack("<II", 1, 0) + struct.pack("<IIQ", msr, 0, 0))
        done = fcntl.ioctl(fd, KVM_GET_MSRS, buf)
        return struct.unpack_from("<Q", buf, 16)[0] if done == 1 else None
    except OSError:
        return None
    finally:
        os.close(fd)


def _why(e: OSError) -> str:
    return e.strerror or type(e).__name__


def probe_pebs_pt(read: Callable[[str], str] = _read_file, cpuid=read_cpuid, rdmsr=read_msr,
                  kvm_msr=kvm_feature_msr, exists=os.path.exists) -> dict:
    facts: dict = {"vendor": None, "pt": None, "pdcm": None, "perf_caps": None, "cpuid_error": None,
                   "msr_error": None, "kvm_intel": exists(KVM_INTEL), "pt_mode": None, "kvm_perf_caps": None}
    try:
        _, b, c, d = cpuid(0)
        facts["vendor"] = struct.pack("<III", b, d, c).decode(errors="replace")
        facts["pdcm"] = bool(cpuid(1)[2] >> 15 & 1)
        facts["pt"] = bool(cpuid(7)[1] >> 25 & 1)
    except OSError as e:
        facts["cpuid_error"] = f"{CPUID_DEV}: {_why(e)}"
    if facts["pdcm"]:
        try:
            facts["perf_caps"] = rdmsr(MSR_IA32_PERF_CAPABILITIES)
        except OSError as e:
            facts["msr_error"] = f"{MSR_DEV}: {_why(e)}"
    if facts["kvm_intel"]:
        try:
            facts["pt_mode"] = read(f"{KVM_INTEL}/parameters/pt_mode").strip()
        except OSError:
            pass
        facts["kvm_perf_caps"] = kvm_msr(MSR_IA32_PERF_CAPABILITIES) if exists(DEV_KVM) else None
    return facts


def missing(facts: dict) -> str | None:
    """The first capability PEBS via PT in a KVM guest lacks here, with where it was read."""
    if facts["cpuid_error"]:
        return f"CPUID unreadable ({facts['cpuid_error']}; modprobe cpuid)"
    if facts["vendor"] != "GenuineIntel":
        return f"an Intel CPU: this one is {facts['vendor']} (CPUID 0 via {CPUID_DEV})"
    if not facts["pt"]:
        return f"Intel PT missing: CPUID.7:EBX[25] clear ({CPUID_DEV})"
    if not facts["pdcm"]:
        return f"PDCM missing: CPUID.1:ECX[15] clear, no IA32_PERF_CAPABILITIES ({CPUID_DEV})"
    if facts["perf_caps"] is None:
        return f"IA32_PERF_CAPABILITIES unreadable ({facts['msr_error']}; modprobe msr)"
    if not facts["perf_caps"] & PERF_CAP_PEBS_FORMAT:
        return f"PEBS missing: IA32_PERF_CAPABILITIES {facts['perf_caps']:#x} has no PEBS format ({MSR_DEV})"
    if not facts["perf_caps"] >> PERF_CAP_PT_IDX & 1:
        return (f"PEBS output to PT missing: IA32_PERF_CAPABILITIES {facts['perf_caps']:#x} bit 16 clear "
                f"({MSR_DEV} MSR 0x345)")
    if not facts["kvm_intel"]:
        return f"kvm_intel not loaded ({KVM_INTEL})"
    if facts["pt_mode"] != "1":
        return f"kvm_intel pt_mode={facts['pt_mode']}: PT is not exposed to guests ({KVM_INTEL}/parameters/pt_mode)"
    caps = facts["kvm_perf_caps"]
    if caps is None or not caps >> PERF_CAP_PT_IDX & 1:
        shown = "refused" if caps is None else f"{caps:#x}"
        return (f"KVM does not offer PEBS output to PT: the feature MSR PERF_CAPABILITIES is {shown} "
                f"(KVM_GET_MSRS on {DEV_KVM}; merged KVM masks bit 16, the series is needed)")
    return None


def check_records(records: list[dict], pebs_data_cfg: int, counter: int, ip_range: tuple[int, int],
                  events: int | None = None, period: int | None = None) -> str | None:
    """The first way the decoded records differ from what the guest programmed, or None.

    counter: the GP counter PEBS was enabled on (applicable counters must be that bit
    alone); ip_range: [start, end) of the guest workload; events and period: the workload
    retires `events` events of the counted kind and the counter reloads with -period from
    MSR_RELOAD_PMC<counter> after each record (ds.c intel_pmu_pebs_via_pt_enable()), so
    events // period records, give or take one, must arrive."""
    if not records:
        return "no PEBS record in the PT buffer"
    layout = [blk for blk, _ in codec.record_layout(pebs_data_cfg)]
    size = codec.record_size(pebs_data_cfg)
    last_tsc = None
    for n, rec in enumerate(records):
        where = f"record {n} (offset {rec['off']})"
        if rec["blocks"] != layout:
            return f"{where}: blocks {rec['blocks']}, PEBS_DATA_CFG {pebs_data_cfg:#x} gives {layout}"
        if rec["size"] != size:
            return f"{where}: size {rec['size']}, PEBS_DATA_CFG {pebs_data_cfg:#x} gives {size}"
        basic = rec["basic"]
        if basic["applicable_counters"] != 1 << counter:
            return f"{where}: applicable counters {basic['applicable_counters']:#x}, expected {1 << counter:#x}"
        if not ip_range[0] <= basic["ip"] < ip_range[1]:
            return f"{where}: IP {basic['ip']:#x} outside the guest workload [{ip_range[0]:#x}, {ip_range[1]:#x})"
        if last_tsc is not None and basic["timestamp"] <= last_tsc:
            return f"{where}: timestamp {basic['timestamp']:#x} not after the previous record's {last_tsc:#x}"
        last_tsc = basic["timestamp"]
    if events is not None and period:
        want = events // period
        if abs(len(records) - want) > 1:
            return (f"{len(records)} records for {events} events with reload period {period}: "
                    f"expected {want} (give or take one)")
    return None
