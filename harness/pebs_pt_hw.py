"""The PEBS-via-PT hardware path (issue 13 item 5): what a host needs, the capture, and
the checks of the PEBS records a guest's PT buffer carries.

The payload pebs_pt_capture (guests/pebs_pt/capture/, built on guests/lib's mini VMM)
runs on the run's target, where the KVM under test is:

* `pebs_pt_capture --probe` reads the target: the CPU vendor, CPUID.7:EBX[25] (Intel PT),
  CPUID.1:ECX[15] (PDCM), IA32_PERF_CAPABILITIES (MSR 0x345, through /dev/cpu/0/msr)
  bit 16 (PEBS output to PT, PERF_CAP_PT_IDX) and its PEBS format, kvm_intel and its
  pt_mode parameter (1: host-guest, PT exposed to guests), and what KVM itself offers
  (KVM_GET_MSRS on /dev/kvm of the feature MSR PERF_CAPABILITIES: bit 16 must be there,
  which no merged KVM does: vmx.c vmx_get_perf_capabilities() never sets it);
  `parse_probe` reads that line and `missing` names the first capability absent.
* A capture (`encode`, one line per case): a VM with KVM's supported CPUID and its
  feature PERF_CAPABILITIES, whose guest programs PT to a 64 KiB ToPA region and one GP
  counter (INST_RETIRED.ALL) with PEBS output to PT and its reset value in
  MSR_RELOAD_PMCx, as ds.c intel_pmu_pebs_via_pt_enable() does, runs a loop of
  2 instructions per iteration and stops; the payload prints the buffer.
* `verdict(case, event)`: the capture's outcome. KVM refusing what it offers (a setup
  ioctl, a guest WRMSR #GP, the RTIT MSRs unreadable, RTIT_STATUS.Error) is the kernel's
  FAIL; so is a buffer that does not decode or records that differ from what the guest
  programmed (`check_records`). A guest that did not finish, or a region too small, is
  ERROR (ours or the machine's).
"""
from __future__ import annotations

import json

from harness.errors import HarnessError, KernelFailure
from harness.missing import Lack
from harness.payloads.trace import split_traces
from harness.reference import pebs_pt_codec as codec

PAYLOAD = "pebs_pt_capture"
MAX_LINE = 2 * 0x10000 + 4096          # the hex of a full 64 KiB region (json_max)
MSR_DEV = "/dev/cpu/0/msr"
KVM_INTEL = "/sys/module/kvm_intel"
DEV_KVM = "/dev/kvm"
PERF_CAP_PEBS_FORMAT = 0xF00
PERF_CAP_PT_IDX = 16                 # arch/x86/include/asm/msr-index.h: PERF_CAP_PT_IDX
RTIT_STATUS_ERROR = 1 << 4           # SDM 33.2.7.4 IA32_RTIT_STATUS: Error, Stopped
RTIT_STATUS_STOPPED = 1 << 5
INSNS_PER_LOOP = 2                   # guests/pebs_pt/capture/capture.S: dec; jnz
MSR_NAMES = {0x570: "IA32_RTIT_CTL", 0x571: "IA32_RTIT_STATUS", 0x560: "IA32_RTIT_OUTPUT_BASE",
             0x561: "IA32_RTIT_OUTPUT_MASK_PTRS", 0x3F1: "IA32_PEBS_ENABLE", 0x3F2: "MSR_PEBS_DATA_CFG",
             0x38F: "IA32_PERF_GLOBAL_CTRL", **{0x186 + n: f"IA32_PERFEVTSEL{n}" for n in range(8)},
             **{0xC1 + n: f"IA32_PMC{n}" for n in range(8)},
             **{0x14C1 + n: f"MSR_RELOAD_PMC{n}" for n in range(8)}}
PROBE_KEYS = {"vendor": str, "pt": bool, "pdcm": bool, "perf_caps": (int, type(None)),
              "msr_error": (str, type(None)), "kvm_intel": bool,
              "pt_mode": (str, type(None)), "kvm_perf_caps": (int, type(None))}


def parse_probe(stdout: bytes) -> dict:
    """The facts `pebs_pt_capture --probe` printed (one JSON object, every key typed)."""
    text = stdout.decode(errors="replace")
    try:
        facts = json.loads(text)
    except (ValueError, RecursionError):    # RecursionError: nesting past json's stack (hypothesis)
        facts = None
    if not isinstance(facts, dict):
        raise HarnessError(f"{PAYLOAD} --probe printed no JSON object: {text[:300]!r}")
    for key, kind in PROBE_KEYS.items():
        if key not in facts or not isinstance(facts[key], kind):
            raise HarnessError(f"{PAYLOAD} --probe: {key!r} missing or not {kind}: {text[:300]!r}")
    return facts


def encode(cases: list[dict]) -> bytes:
    """The payload's input: one `capture N counter= period= loops= cfg=` line per case."""
    return "".join(f"capture {n} counter={c['counter']} period={c['period']} loops={c['loops']} "
                   f"cfg={c['cfg']:#x}\n" for n, c in enumerate(cases)).encode()


def decode(stdout: bytes, count: int) -> list[dict]:
    """The capture event of each case, strictly (harness/payloads/trace.py)."""
    events = []
    for n, trace in enumerate(split_traces(PAYLOAD, stdout, count, MAX_LINE)):
        if len(trace) != 1 or trace[0]["op"] != "capture":
            raise HarnessError(f"{PAYLOAD}: capture {n} printed {len(trace)} events, not one capture")
        events.append(trace[0])
    return events


def _msr(n: int) -> str:
    return f"{MSR_NAMES.get(n, 'MSR')} ({n:#x})"


def verdict(case: dict, event: dict) -> int:
    """The number of PEBS records, when the capture is what the guest programmed;
    KernelFailure when KVM did otherwise; HarnessError when the capture did not run."""
    cid = case["id"]
    if event.get("setup"):
        raise KernelFailure(f"{cid}: KVM offers PEBS output to PT but refused {event['setup']} "
                            f"(errno {event.get('errno')})")
    if event.get("exit"):
        raise HarnessError(f"{cid}: the capture guest did not finish: {event['exit']}")
    fault = event.get("fault")
    if fault:
        raise KernelFailure(f"{cid}: guest WRMSR {_msr(fault['msr'])} = {fault['value']:#x} in the "
                            f"{fault['list']} raised vector {fault['vector']}, though KVM offers PEBS output to PT")
    if event.get("mask_ptrs") is None or event.get("rtit_status") is None:
        raise KernelFailure(f"{cid}: KVM_GET_MSRS of the vCPU's IA32_RTIT_OUTPUT_MASK_PTRS / IA32_RTIT_STATUS "
                            f"refused, though PT is exposed to the guest")
    status = event["rtit_status"]
    if status & RTIT_STATUS_ERROR:
        raise KernelFailure(f"{cid}: IA32_RTIT_STATUS {status:#x} has Error set: the guest's PT output failed")
    if status & RTIT_STATUS_STOPPED:
        raise HarnessError(f"{cid}: the 64 KiB ToPA region filled (IA32_RTIT_STATUS {status:#x} Stopped): "
                           f"fewer loops or a longer period")
    data = bytes.fromhex(event["buffer"])
    packets, error = codec.decode(data)
    if error:
        raise KernelFailure(f"{cid}: the guest's PT buffer ({len(data)} bytes) does not decode: {error}")
    try:
        records = codec.pebs_records(packets)
    except ValueError as e:
        raise KernelFailure(f"{cid}: the guest's PT buffer holds a malformed PEBS record: {e}") from None
    wrong = check_records(records, case["cfg"], case["counter"], tuple(event["workload"]),
                          INSNS_PER_LOOP * case["loops"], case["period"])
    if wrong:
        raise KernelFailure(f"{cid}: {wrong}")
    return len(records)


def missing(facts: dict) -> Lack | None:
    """The first capability PEBS via PT in a KVM guest lacks here, with where it was read."""
    if facts["vendor"] != "GenuineIntel":
        return Lack("Intel CPU", f"an Intel CPU: this one is {facts['vendor']} (CPUID leaf 0)")
    if not facts["pt"]:
        return Lack("Intel PT", "Intel PT missing: CPUID.7:EBX[25] clear")
    if not facts["pdcm"]:
        return Lack("PDCM", "PDCM missing: CPUID.1:ECX[15] clear, no IA32_PERF_CAPABILITIES")
    caps = facts["perf_caps"]
    if caps is None:
        return Lack("IA32_PERF_CAPABILITIES", f"IA32_PERF_CAPABILITIES unreadable ({facts['msr_error']}; modprobe msr)")
    if not caps & PERF_CAP_PEBS_FORMAT:
        return Lack("PEBS", f"PEBS missing: IA32_PERF_CAPABILITIES {caps:#x} has no PEBS format ({MSR_DEV})")
    if not caps >> PERF_CAP_PT_IDX & 1:
        return Lack("PEBS output to PT", f"PEBS output to PT missing: IA32_PERF_CAPABILITIES {caps:#x} "
                                         f"bit 16 clear ({MSR_DEV} MSR 0x345)")
    if not facts["kvm_intel"]:
        return Lack("kvm_intel", f"kvm_intel not loaded ({KVM_INTEL})")
    if facts["pt_mode"] != "1":
        return Lack("PT in KVM guests", f"kvm_intel pt_mode={facts['pt_mode']}: PT is not exposed to guests "
                                        f"({KVM_INTEL}/parameters/pt_mode)")
    caps = facts["kvm_perf_caps"]
    if caps is None or not caps >> PERF_CAP_PT_IDX & 1:
        shown = "refused" if caps is None else f"{caps:#x}"
        return Lack("PEBS output to PT in KVM",
                    f"KVM does not offer PEBS output to PT: the feature MSR PERF_CAPABILITIES is {shown} "
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
