"""SEV-ES baseline triggers in a normal guest (issue 12 item 4).

The #VC triggers run natively in a kvmconf guest that is not an SEV-ES guest: user-mode
triggers from their bytes in guests/sev_es/baseline/trigger (trig.S), kernel-mode ones
through the kvmconf_vc module's fixed catalogue (harness/payloads/sev_es_module.py).
Ports 0xe0-0xe3 and the iomem at 0xff000000 are QEMU's pc-testdev. What the real CPU
and device did must equal the model's architectural prediction
(harness/reference/sev_es.py, profile "architectural") made with the model's own
machine, whose table hypervisor is replaced here by a model of pc-testdev
(`TestdevMachine`): the same register, memory and RIP rules that vcsim's runs are
checked with, now checked against hardware semantics.

A platform profile says what the platform does where the model's hypervisor answers
differently: under QEMU TCG, VMMCALL and RDPMC raise #UD (target/i386/tcg: helper_vmmcall
outside SVM guest mode, helper_rdpmc); MONITOR/MWAIT raise #UD where CPUID.1:ECX.MONITOR
is clear.

Values no model can know (the TSC, CPUID leaves, TSC_AUX) are taken from the
observation into the model's hypervisor tables before predicting: the check is then of
the register effects (zero-extension, untouched registers), not of the values.
"""
from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field

from harness.errors import HarnessError, KernelFailure
from harness.missing import Lack
from harness.payloads import build as payload_build
from harness.payloads import sev_es as codec
from harness.payloads import sev_es_module
from harness.reference import sev_es as model

PORT = 0xE0                  # pc-testdev's 4-byte loopback register, ports 0xe0-0xe3
IOMEM_PA, IOMEM_LEN = 0xFF000000, 0x10000
SHOWN = 64                   # bytes of iomem and RAM the program reports
KERNEL_RIP = 0xFFFFFFFFC0000000   # the model's RIP for module triggers (not observed)
FLAGS = 0xCD5                # CF PF AF ZF SF DF OF: the flags the program loads and compares
TCG_UD = frozenset({"vmmcall", "rdpmc"})
TAINT_MODULE = (1 << 12) | (1 << 13)    # O, E: include/linux/panic.h TAINT_OOT_MODULE, _UNSIGNED_MODULE
FOLDER = payload_build.GUESTS / "sev_es" / "baseline"


class Testdev:
    """QEMU hw/misc/pc-testdev.c: the ioport (test_ioport_read/_write: a 32-bit register
    at 0xe0-0xe3, an access at offset k of width w masks bits 8k..8(k+w)-1, truncated
    to 32 bits) and the iomem (test_iomem_read/_write: bytes read back at any width)."""

    def __init__(self, port_value: int = 0, iomem: bytes = b""):
        self.port_value = port_value & 0xFFFFFFFF
        self.iomem = bytearray(iomem) + bytearray(IOMEM_LEN - len(iomem))

    @staticmethod
    def _mask(port: int, n: int) -> tuple[int, int]:
        start = (port & 3) * 8
        return ((0xFFFFFFFF >> (32 - 8 * n)) << start) & 0xFFFFFFFF, start

    def port_read(self, port: int, n: int) -> bytes:
        if not PORT <= port < PORT + 4:
            return b"\xff" * n          # no device: the bus reads all ones
        mask, start = self._mask(port, n)
        return ((self.port_value & mask) >> start).to_bytes(n, "little")

    def port_write(self, port: int, data: bytes) -> None:
        if PORT <= port < PORT + 4:
            mask, start = self._mask(port, len(data))
            self.port_value = (self.port_value & ~mask) | ((int.from_bytes(data, "little") << start) & mask)


class TestdevMachine(model.Machine):
    """The model's machine with pc-testdev behind its hypervisor instead of tables."""

    def __init__(self, script: dict, dev: Testdev, fixed: frozenset[str] = model.ALL_FIXED):
        self.dev = dev
        super().__init__(script, fixed)

    def hv_answer(self, exit_code: int, info1: int, info2: int) -> tuple[int, int]:
        if exit_code == model.EXIT["ioio"]:
            port, size = (info1 >> 16) & 0xFFFF, (info1 >> 4) & 7
            count = info2 if info1 & 4 else 1
            if info1 & 1:       # IN / INS: the device answers each element
                self.ports[port] = bytearray(b"".join(self.dev.port_read(port, size) for _ in range(count)))
            else:               # OUT from RAX, OUTS from the shared buffer
                data = (self.ghcb.buffer(count * size) if info1 & 4
                        else (self.ghcb.raw("rax") & ((1 << 8 * size) - 1)).to_bytes(size, "little"))
                for i in range(count):
                    self.dev.port_write(port, data[i * size:(i + 1) * size])
        return super().hv_answer(exit_code, info1, info2)

    def device_read(self, pa: int, n: int) -> bytes:
        if IOMEM_PA <= pa and pa + n <= IOMEM_PA + IOMEM_LEN:
            return bytes(self.dev.iomem[pa - IOMEM_PA:pa - IOMEM_PA + n])
        return b"\xff" * n

    def device_write(self, pa: int, data: bytes) -> None:
        if IOMEM_PA <= pa and pa + len(data) <= IOMEM_PA + IOMEM_LEN:
            self.dev.iomem[pa - IOMEM_PA:pa - IOMEM_PA + len(data)] = data


@dataclass
class Layout:
    """Where the trigger program put things (its --probe line)."""
    code_va: int
    ram_va: int
    mmio_va: int
    ports: bool
    iomem: bool
    module: bool
    monitor: bool
    kernel_ops: dict[str, dict] = field(default_factory=dict)   # name -> {index, bytes, regs}
    kernel_iomem_va: int = 0      # the module's ioremap of the iomem (0: none)

    @classmethod
    def parse(cls, events: list[dict]) -> "Layout":
        head = events[0]
        ops = {e["name"]: e for e in events[1:] if e.get("op") == "kernel-op"}
        return cls(head["code_va"], head["ram_va"], head["mmio_va"], head["ports"], head["iomem"],
                   head["module"], head["monitor"], ops, head.get("kernel_iomem_va", 0))


def _resolve(value, lay: Layout) -> int:
    """A register value of a case: an int, or "ram+N" / "mmio+N" / "kmmio+N" relative to
    the layout (kmmio: the module's mapping of the same iomem)."""
    if isinstance(value, int):
        return value & model.U64
    base, _, off = value.partition("+")
    return ({"ram": lay.ram_va, "mmio": lay.mmio_va, "kmmio": lay.kernel_iomem_va}[base]
            + int(off or "0", 0)) & model.U64


def _regs(regs: dict, lay: Layout) -> dict[str, int]:
    return {k: _resolve(v, lay) for k, v in regs.items()}


def lines(index: int, case: dict, lay: Layout, marks: tuple[int, int] | None = None) -> list[str]:
    """The trigger program's input for one case. With `marks` (start, end), for a traced
    SEV-ES guest: the device is neither reset nor read back, the start value is written to
    the port before the set-up OUT of the case's port value, the end value after the
    script (the module's steps run at its E line)."""
    out = [f"S {index:#x} ioperm={int(case.get('ioperm', 1))}" + (" report=0" if marks else "")]
    regs = _regs(case.get("regs", {}), lay)
    out.append("R " + " ".join(f"{k}={v:#x}" for k, v in regs.items()))
    for what, flag in (("ram", 0), ("iomem", 1)):
        data = bytes.fromhex(case.get(what, ""))
        data += bytes(-len(data) % 8)
        for off in range(0, len(data), 8):
            out.append(f"M iomem={flag} off={off:#x} v={int.from_bytes(data[off:off + 8], 'little'):#x}")
    if marks:
        out.append(f"O v={marks[0]:#x}")
    out.append(f"O v={case.get('port', 0):#x}")
    for t in case["triggers"]:
        overlay = " ".join(f"{k}={v:#x}" for k, v in _regs(t.get("regs", {}), lay).items())
        if "kop" in t:
            out.append(f"K op={lay.kernel_ops[t['kop']]['index']:#x} {overlay}".rstrip())
        else:
            code = bytes.fromhex(t["bytes"]) + bytes(16)
            out.append(f"T len={len(bytes.fromhex(t['bytes']))} b0={int.from_bytes(code[:8], 'little'):#x} "
                       f"b1={int.from_bytes(code[8:16], 'little'):#x} {overlay}".rstrip())
    out.append("E")
    if marks:
        out.append(f"O v={marks[1]:#x}")
    return out


def _trigger_bytes(t: dict, lay: Layout) -> str:
    return lay.kernel_ops[t["kop"]]["bytes"] if "kop" in t else t["bytes"]


def script_for(case: dict, lay: Layout, observed: list[dict], platform: str) -> dict:
    """The model's op-script for a case; the unknowable values (TSC, TSC_AUX, CPUID
    leaves) come from `observed`.

    MMIO triggers run in user mode here (the module's catalogue takes no memory
    operands), but 6.1's vc_handle_mmio() refuses MMIO from user mode, so they are
    predicted by the kernel-mode model: a MOV's or MOVS's architectural effect does not
    depend on the CPL."""
    kernel = case["mode"] == "kernel"
    mode = "kernel" if all(t["exit"] == "npf" for t in case["triggers"]) else case["mode"]
    hv = {"cpuid": [], "msrs": dict(case.get("msrs", {}))}
    for t, obs in zip(case["triggers"], observed):
        kind = t["exit"]
        r = obs["regs"]
        if kind in ("rdtsc", "rdtscp"):
            hv["tsc"] = (r["rdx"] & 0xFFFFFFFF) << 32 | (r["rax"] & 0xFFFFFFFF)
            if kind == "rdtscp":
                hv["tsc_aux"] = r["rcx"] & 0xFFFFFFFF
        if kind == "cpuid":
            entry = {**_regs(case.get("regs", {}), lay), **_regs(t.get("regs", {}), lay)}
            leaf = entry.get("rax", 0) & 0xFFFFFFFF
            sub = entry.get("rcx", 0) & 0xFFFFFFFF if leaf in model.INDEXED_LEAVES else 0
            hv["cpuid"].append([leaf, sub, *(r[n] & 0xFFFFFFFF for n in ("rax", "rbx", "rcx", "rdx"))])
        if kind == "msr" and platform == "tcg" and t.get("kop") == "rdmsr":
            # QEMU TCG target/i386/tcg/sysemu/misc_helper.c helper_rdmsr(): an MSR it does
            # not implement reads as 0 ("XXX: exception?"), where hardware and KVM raise #GP
            ecx = {**_regs(case.get("regs", {}), lay), **_regs(t.get("regs", {}), lay)}.get("rcx", 0) & 0xFFFFFFFF
            hv["msrs"].setdefault(hex(ecx), 0)
    regs = {**_regs(case.get("regs", {}), lay)}
    regs.setdefault("rflags", 0x2)
    pages = [{"va": lay.ram_va, "pa": 0x100000, "len": 4096, "kind": "ram", "data": case.get("ram", "")},
             {"va": lay.mmio_va, "pa": IOMEM_PA, "len": 4096, "kind": "mmio"}]
    if lay.kernel_iomem_va:
        pages.append({"va": lay.kernel_iomem_va, "pa": IOMEM_PA, "len": 4096, "kind": "mmio"})
    return codec.normalise({
        "mode": mode, "ioperm": [PORT, 16] if case.get("ioperm", 1) else False, "kvm": 0,
        "regs": regs, "rip": KERNEL_RIP if kernel else lay.code_va, "pages": pages, "hv": hv,
        "actions": [{"op": "insn", "bytes": _trigger_bytes(t, lay), "exit": model.EXIT[t["exit"]],
                     "regs": _regs(t.get("regs", {}), lay)} for t in case["triggers"]]})


def predict(case: dict, lay: Layout, observed: list[dict], platform: str) -> list[dict]:
    """Per trigger: {"regs", "rip", "exception", "port", "iomem", "ram"} as the program
    reports them, predicted by the architectural model on pc-testdev."""
    return _simulate(case, lay, observed, platform, model.ALL_FIXED)[0]


def predict_sev_es(case: dict, lay: Layout, observed: list[dict], profile: str) -> tuple[list[dict], list[dict]]:
    """For the same triggers in a real SEV-ES guest under KVM (harness/sev_es_hw.py): the
    results as `predict` gives them, and the model's `vmgexit` events (the requests the
    host's tracepoints must show), both by the model `profile` ("6.1": the kernel's own
    deviations included)."""
    fixed = model.ALL_FIXED if profile == "architectural" else frozenset()
    results, m = _simulate(case, lay, observed, "kvm", fixed)
    return results, [e for e in m.events if e["op"] == "vmgexit"]


def _simulate(case: dict, lay: Layout, observed: list[dict], platform: str, fixed: frozenset[str]):
    script = script_for(case, lay, observed, platform)
    dev = Testdev(case.get("port", 0), bytes.fromhex(case.get("iomem", "")))
    m = TestdevMachine(copy.deepcopy(script), dev, fixed)
    ram = bytearray(bytes.fromhex(case.get("ram", "")).ljust(SHOWN, b"\0"))
    out = []
    for step, (t, a) in enumerate(zip(case["triggers"], script["actions"])):
        m.step = step
        m.rip = script["rip"]   # the program runs every trigger from the same place
        if _platform_ud(t, lay, platform):
            # the platform raises #UD before any #VC: nothing changes
            m.set_regs(a["regs"])
            event = {"result": "exception", "regs": {**m.regs, "rflags": m.rflags}, "rip": m.rip,
                     "exception": {"vector": model.X86_TRAP_UD, "error_code": 0, "cr2": 0}, "ram": []}
        else:
            m.op_insn(a)
            event = m.events[-1]
        for run in event["ram"]:
            off = run["va"] - lay.ram_va
            data = bytes.fromhex(run["data"])
            if 0 <= off < SHOWN:
                ram[off:off + len(data)] = data[:SHOWN - off]
        out.append({"result": event["result"], "regs": dict(event["regs"]), "rip": event["rip"],
                    "exception": event["exception"], "port": dev.port_value,
                    "iomem": bytes(dev.iomem[:SHOWN]).hex(), "ram": bytes(ram[:SHOWN]).hex()})
    return out, m


def _platform_ud(t: dict, lay: Layout, platform: str) -> bool:
    kind = t["exit"]
    return (platform == "tcg" and kind in TCG_UD) or (kind in ("monitor", "mwait") and not lay.monitor)


def compare(case: dict, predicted: list[dict], observed: list[dict]) -> str | None:
    """The first field where the guest's result differs from the prediction, or None."""
    kernel = case["mode"] == "kernel"
    if len(observed) != len(predicted):
        return f"{len(observed)} results for {len(predicted)} triggers"
    for step, (p, o) in enumerate(zip(predicted, observed)):
        where = f"step {step} ({case['triggers'][step].get('kop') or case['triggers'][step]['bytes']})"
        if p["result"] not in ("ok", "exception"):
            return f"{where}: the model predicts {p['result']!r}, which a baseline case must not reach"
        pe, oe = p["exception"], o["exception"]
        if (pe is None) != (oe is None) or (pe and pe["vector"] != oe["vector"]):
            return f"{where}: exception {_exc(oe)}, the model says {_exc(pe)}"
        if pe and not kernel and (pe["error_code"], pe["cr2"]) != (oe["error_code"], oe["cr2"]):
            return f"{where}: exception {_exc(oe)}, the model says {_exc(pe)}"
        # the module returns the registers as given on a fault, loads no flags and
        # reports no RIP; the program runs triggers on its own stack (RSP)
        for reg in () if pe and kernel else model.GPRS:
            if reg != "rsp" and p["regs"][reg] != o["regs"][reg]:
                return f"{where}: {reg} {o['regs'][reg]:#x}, the model says {p['regs'][reg]:#x}"
        if not kernel and (p["regs"]["rflags"] ^ o["regs"]["rflags"]) & FLAGS:
            return (f"{where}: rflags {o['regs']['rflags'] & FLAGS:#x}, the model says "
                    f"{p['regs']['rflags'] & FLAGS:#x} (CF PF AF ZF SF DF OF)")
        if not kernel and p["rip"] != o["rip"]:
            return f"{where}: rip {o['rip']:#x}, the model says {p['rip']:#x}"
        # the module runs all of a script's steps in one call: the device is read after the last
        for what in ("port", "iomem", "ram") if not kernel or step == len(predicted) - 1 else ():
            if o[what] is not None and p[what] != o[what]:
                shown = (lambda v: f"{v:#x}") if what == "port" else str
                return f"{where}: {what} {shown(o[what])}, the model says {shown(p[what])}"
    return None


def _exc(e: dict | None) -> str:
    return "none" if e is None else f"vector {e['vector']} error code {e.get('error_code', 0):#x}"


class GuestRunner:
    """The trigger program and the module in one guest (a replacement guest gets a new one)."""

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
        self.layout = Layout.parse([json.loads(line) for line in probe.text.splitlines()])
        for name, op in self.layout.kernel_ops.items():
            if sev_es_module.OPS.get(name, (None,))[0] != op["bytes"]:
                raise HarnessError(f"kvmconf_vc op {name} executes {op['bytes']}, the harness's table says "
                                   f"{sev_es_module.OPS.get(name, ('nothing',))[0]}")

    def missing(self, case: dict) -> Lack | None:
        lay, where = self.layout, f"probed by the trigger program in {self.guest.where}"
        if case["mode"] == "kernel" and self.module_missing:
            return Lack("CONFIG_MODULES", f"{self.module_missing}: the kernel-mode triggers need the kvmconf_vc module")
        if case["mode"] == "kernel" and not lay.module:
            return Lack("kvmconf_vc module", f"/dev/kvmconf_vc missing after the module's load ({where})")
        if case["mode"] == "user" and any(t["exit"] == "ioio" for t in case["triggers"]) and not lay.ports:
            return self._lack("I/O ports", "CONFIG_X86_IOPL_IOPERM", f"ioperm() refused ports 0xe0-0xef", where)
        if any(t["exit"] == "npf" for t in case["triggers"]) and case["mode"] == "kernel" \
                and not lay.kernel_iomem_va:
            return Lack("kvmconf_vc module", f"the kvmconf_vc module could not ioremap pc-testdev's iomem "
                                             f"at 0xff000000 ({where})")
        if any(t["exit"] == "npf" for t in case["triggers"]) and not lay.iomem:
            return self._lack("pc-testdev iomem", "CONFIG_DEVMEM",
                              "/dev/mem cannot map pc-testdev's iomem at 0xff000000", where)
        return None

    def _lack(self, capability: str, option: str, what: str, where: str) -> Lack:
        """What is missing: the kernel config `option` when the kernel's config lacks it."""
        if self.config and self.config.get(option) != "y":
            return Lack(option, f"{what}: {option} is not set in the kernel's config ({where})")
        return Lack(capability, f"{what} ({where})")

    def run(self, index: int, case: dict, marks: tuple[int, int] | None = None) -> list[dict]:
        text = "\n".join(lines(index, case, self.layout, marks)) + "\n"
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
