"""The SEV-ES hardware path: a real SEV-ES guest under the host's KVM, observed from the host.

What runs where:

* on the host (an AMD EPYC 7002 or later with SEV-ES ASIDs, kvm_amd sev=1 sev_es=1):
  `probe_sev_es` reads the host's capabilities (CPUID 0x8000001F, kvm_amd's module
  parameters, /dev/sev, OVMF) and `missing` names the first one absent; `qemu_command`
  builds the SEV-ES guest's QEMU argv; `TraceSession` captures KVM's tracepoints in a
  private tracefs instance while the guest runs;
* in the guest (the kernel under test, booted by OVMF as an SEV-ES guest): the
  triggers (outb, inb, cpuid, wrmsr, rep outsb, MMIO ...), handled by the guest kernel's
  own #VC code, which asks the host through the GHCB (VMGEXIT) or the GHCB MSR protocol;
* anywhere, offline: `parse_trace` turns the captured ftrace text into events,
  `exchange` / `msr_exchange` pair each request with KVM's reply, `window` cuts out the
  requests between the payload's start and end marks (a real boot's trace also holds
  OVMF's and the kernel's own VMGEXITs), and `compare_exchange` compares the requests
  with the model's predicted `vmgexit` events (harness/reference/sev_es.py,
  docs/sev-es-suite.md).

The trace formats are the TP_printk formats of arch/x86/kvm/trace.h (kvm_vmgexit_*,
kvm_pio, kvm_msr, kvm_cpuid) and include/trace/events/kvm.h (kvm_mmio) of Debian's
6.1.192 source; arch/x86/kvm/trace.h of a later torvalds/linux (029e8c8ad655) prints
the same. The hex fields of the kvm_vmgexit_* events carry no 0x (``%llx``,
``%016llx``). The line prefix is 6.1's kernel/trace/trace_output.c
trace_print_context: ``%16s-%-7d [%03d] <5 flag chars> %5lu.%06lu: ``.

What 6.1's KVM records around a request (arch/x86/kvm/svm/sev.c, x86.c):
kvm_vmgexit_enter fires when the GHCB is mapped, before validation; kvm_vmgexit_exit
when it is unmapped before the next VMRUN, so its info1/info2 are KVM's reply; an OUT's
kvm_pio fires before the exit to QEMU, an IN's after QEMU answered; a string OUT's
kvm_pio shows only the first element ("(...)" marks count > 1); an MMIO write's
kvm_mmio always fires (write_mmio traces before dispatching), an MMIO read's only when
an in-kernel device (LAPIC, IOAPIC, ioeventfd) answered it: the SEV-ES read path to
QEMU's devices (kvm_sev_es_mmio_read, complete_sev_es_emulated_mmio) records none;
kvm_cpuid fires inside each MSR-protocol CPUID request too.

Nothing here boots a guest or changes the host beyond the tracefs instance it creates
and removes.
"""
from __future__ import annotations

import os
import re
import struct
from pathlib import Path
from typing import Callable, Iterable

from harness.compare import Divergence, first_divergence
from harness.errors import HarnessError
from harness.missing import Lack

# ---------------------------------------------------------------- probe

CPUID_DEV = "/dev/cpu/0/cpuid"
CPUINFO = "/proc/cpuinfo"
KVM_AMD = "/sys/module/kvm_amd"
DEV_SEV = "/dev/sev"
SEV_LEAF = 0x8000001F
# Debian's `ovmf` package: (code, vars template). Debian builds these two without
# SMM_REQUIRE (the .secboot/.ms variants need SMM, which SEV-ES guests cannot have).
OVMF_CANDIDATES = (("/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_VARS_4M.fd"),
                   ("/usr/share/OVMF/OVMF_CODE.fd", "/usr/share/OVMF/OVMF_VARS.fd"))


def read_text(path: str) -> str:
    """A file's text; OSError when it cannot be read."""
    with open(path) as f:
        return f.read()


def read_cpuid(leaf: int, subleaf: int = 0, device: str = CPUID_DEV) -> tuple[int, int, int, int]:
    """(eax, ebx, ecx, edx) of CPUID `leaf` through the cpuid driver: pread of 16 bytes at
    offset subleaf << 32 | leaf. OSError when the device is absent or unreadable."""
    fd = os.open(device, os.O_RDONLY | os.O_CLOEXEC)
    try:
        data = os.pread(fd, 16, (subleaf << 32) | leaf)
    finally:
        os.close(fd)
    if len(data) != 16:
        raise OSError(f"short read of {len(data)} bytes")
    return struct.unpack("<4I", data)


def _why(e: OSError) -> str:
    return e.strerror or str(e)


def _cpuid_facts(cpuid: Callable, read: Callable) -> dict:
    """SEV, SEV-ES, C-bit position and reduced phys bits: from the cpuid device, else
    (bits only) from /proc/cpuinfo flags."""
    try:
        max_ext = cpuid(0x80000000)[0]
        if max_ext < SEV_LEAF:
            return {"cpuid_source": CPUID_DEV, "cpuid_error": None, "max_ext_leaf": max_ext,
                    "sev": False, "sev_es": False, "cbitpos": None, "reduced_phys_bits": None}
        eax, ebx, _, _ = cpuid(SEV_LEAF)
        return {"cpuid_source": CPUID_DEV, "cpuid_error": None, "max_ext_leaf": max_ext,
                "sev": bool(eax & 1 << 1), "sev_es": bool(eax & 1 << 3),
                "cbitpos": ebx & 0x3F, "reduced_phys_bits": (ebx >> 6) & 0x3F}
    except OSError as e:
        error = f"{CPUID_DEV}: {_why(e)}"
    flags: list[str] = []
    try:
        for line in read(CPUINFO).splitlines():
            key, sep, value = line.partition(":")
            if sep and key.strip() == "flags":
                flags = value.split()
                break
    except OSError as e:
        error += f"; {CPUINFO}: {_why(e)}"
    return {"cpuid_source": f"{CPUINFO} flags", "cpuid_error": error, "max_ext_leaf": None,
            "sev": "sev" in flags, "sev_es": "sev_es" in flags,
            "cbitpos": None, "reduced_phys_bits": None}


def _param(read: Callable, name: str) -> str | None:
    try:
        return read(f"{KVM_AMD}/parameters/{name}").strip()
    except OSError:
        return None


def probe_sev_es(read: Callable[[str], str] = read_text,
                 cpuid: Callable[[int], tuple] = read_cpuid,
                 exists: Callable[[str], bool] = os.path.exists) -> dict:
    """The SEV-ES capability facts of this host (JSON scalars only).

    `read(path) -> str`, `cpuid(leaf) -> (eax, ebx, ecx, edx)` and `exists(path)` are the
    host's file readers; both readers raise OSError for a file that cannot be read.
    """
    facts = _cpuid_facts(cpuid, read)
    facts["kvm_amd_loaded"] = exists(KVM_AMD)   # a loaded module, or built in
    facts["kvm_amd_sev"] = _param(read, "sev")
    facts["kvm_amd_sev_es"] = _param(read, "sev_es")
    facts["dev_sev"] = exists(DEV_SEV)
    facts["ovmf_code"] = facts["ovmf_vars"] = None
    for code, vars_ in OVMF_CANDIDATES:
        if exists(code):
            facts["ovmf_code"] = code
            facts["ovmf_vars"] = vars_ if exists(vars_) else None
            break
    return facts


def _enabled(value: str | None) -> bool:
    return value in ("Y", "y", "1")


def missing(facts: dict) -> Lack | None:
    """The first capability an SEV-ES guest needs that this host lacks, with where it was
    seen; None when all are there."""
    src = facts["cpuid_source"]
    if facts["cpuid_error"]:
        src = f"{src}; {facts['cpuid_error']}"
    max_ext = facts.get("max_ext_leaf")
    if max_ext is not None and max_ext < SEV_LEAF:
        return Lack("SEV", f"SEV missing: CPUID 0x80000000 reports max extended leaf {max_ext:#x} "
                           f"< {SEV_LEAF:#x} ({src})")
    if not facts["sev"]:
        if facts["cpuid_error"]:
            return Lack("SEV", f"SEV missing: no 'sev' in {src}")
        return Lack("SEV", f"SEV missing: CPUID 0x8000001F EAX bit 1 clear ({src})")
    if not facts["sev_es"]:
        if facts["cpuid_error"]:
            return Lack("SEV-ES", f"SEV-ES missing: no 'sev_es' in {src}")
        return Lack("SEV-ES", f"SEV-ES missing: CPUID 0x8000001F EAX bit 3 clear ({src})")
    if facts["cbitpos"] is None:
        return Lack("C-bit position", f"C-bit position unknown: /proc/cpuinfo does not carry CPUID "
                                      f"0x8000001F EBX ({facts['cpuid_error']}; modprobe cpuid gives {CPUID_DEV})")
    if not 32 <= facts["cbitpos"] <= 63:
        return Lack("C-bit position", f"C-bit position {facts['cbitpos']} implausible: "
                                      f"CPUID 0x8000001F EBX[5:0] ({src})")
    if not facts["kvm_amd_loaded"]:
        return Lack("kvm_amd", f"kvm_amd missing: {KVM_AMD} absent (module not loaded)")
    for name, what in (("sev", "SEV"), ("sev_es", "SEV-ES")):
        value = facts[f"kvm_amd_{name}"]
        path = f"{KVM_AMD}/parameters/{name}"
        if value is None:
            return Lack(f"{what} in KVM", f"{what} disabled in KVM: {path} absent "
                                          f"(kvm_amd without CONFIG_KVM_AMD_SEV)")
        if not _enabled(value):
            hint = " (no SEV-ES ASIDs from the BIOS, or kvm_amd sev_es=0)" if name == "sev_es" else ""
            return Lack(f"{what} in KVM", f"{what} disabled in KVM: {path} is {value}{hint}")
    if not facts["dev_sev"]:
        return Lack("SEV firmware", f"SEV firmware missing: {DEV_SEV} absent "
                                    f"(ccp driver or PSP firmware not up)")
    if facts["ovmf_code"] is None:
        tried = " or ".join(code for code, _ in OVMF_CANDIDATES)
        return Lack("OVMF", f"OVMF missing: no {tried} (Debian package ovmf)")
    if facts["ovmf_vars"] is None:
        vars_ = dict(OVMF_CANDIDATES)[facts["ovmf_code"]]
        return Lack("OVMF vars", f"OVMF vars missing: {vars_} absent next to {facts['ovmf_code']}")
    return None


# ---------------------------------------------------------------- QEMU command line

# Guest policy: bit 0 NODBG (the host may not debug-decrypt the guest), bit 2 ES (the
# guest must run as SEV-ES: QEMU then launches with KVM_SEV_ES_INIT and encrypted VMSAs).
SEV_ES_POLICY = 0x5


def _check_file(what: str, path) -> str:
    if not Path(path).is_file():
        raise HarnessError(f"{what} {path}: no such file")
    return str(path)


def qemu_command(kernel, initrd, ovmf_code, ovmf_vars, cbitpos: int, reduced_phys_bits: int,
                 memory_mb: int = 1024, smp: int = 1, append: str = "",
                 qemu: str = "qemu-system-x86_64", cpu: str = "EPYC") -> list[str]:
    """The argv of an SEV-ES guest (docs: QEMU docs/system/i386/amd-memory-encryption.rst).

    No SMM (`smm=off`; OVMF must be a non-SMM build), no reboot (an SEV-ES guest cannot be
    reset), the in-kernel irqchip (QEMU's default with KVM, which SEV-ES requires; never
    pass kernel-irqchip=off). `ovmf_vars` must be a per-run copy of the vars template:
    the guest writes it. `cbitpos` and `reduced_phys_bits` are the host's CPUID
    0x8000001F EBX[5:0] and EBX[11:6]: QEMU's sev_kvm_init refuses a cbitpos other than
    the host's and a reduced-phys-bits outside 1..63, and refuses SEV-ES without an
    in-kernel irqchip ("SEV-ES guests require in-kernel irqchip support").
    """
    if not isinstance(cbitpos, int) or not 32 <= cbitpos <= 63:
        raise HarnessError(f"cbitpos {cbitpos!r}: the C-bit is a physical-address bit 32..63 "
                           f"(CPUID 0x8000001F EBX[5:0])")
    if not isinstance(reduced_phys_bits, int) or not 1 <= reduced_phys_bits <= 63:
        raise HarnessError(f"reduced_phys_bits {reduced_phys_bits!r}: QEMU needs 1..63 "
                           f"(CPUID 0x8000001F EBX[11:6])")
    if not isinstance(memory_mb, int) or memory_mb < 64:
        raise HarnessError(f"memory_mb {memory_mb!r}: at least 64 MiB")
    if not isinstance(smp, int) or not 1 <= smp <= 255:
        raise HarnessError(f"smp {smp!r}: 1..255 vCPUs")
    if cpu not in ("EPYC", "host") and not cpu.startswith("EPYC-"):
        raise HarnessError(f"cpu {cpu!r}: EPYC, an EPYC-* model or host")
    if "\n" in append:
        raise HarnessError("append: one line of kernel arguments")
    if str(ovmf_vars).startswith("/usr/share/"):
        raise HarnessError(f"ovmf_vars {ovmf_vars}: pass a per-run copy, the guest writes it")
    kernel, initrd = _check_file("kernel", kernel), _check_file("initrd", initrd)
    code, vars_ = _check_file("OVMF code", ovmf_code), _check_file("OVMF vars", ovmf_vars)
    return [qemu, "-accel", "kvm", "-cpu", cpu,
            "-machine", "q35,confidential-guest-support=sev0,vmport=off,smm=off",
            "-object", f"sev-guest,id=sev0,policy={SEV_ES_POLICY:#x},cbitpos={cbitpos},"
                       f"reduced-phys-bits={reduced_phys_bits}",
            "-m", str(memory_mb), "-smp", str(smp),
            "-drive", f"if=pflash,format=raw,unit=0,file={code},readonly=on",
            "-drive", f"if=pflash,format=raw,unit=1,file={vars_}",
            "-kernel", kernel, "-initrd", initrd,
            "-append", " ".join(["console=ttyS0", *append.split()]),
            "-device", "pc-testdev",
            "-device", "isa-debug-exit,iobase=0xf4,iosize=4",
            "-nographic", "-no-reboot"]


# ---------------------------------------------------------------- trace capture

VMGEXIT_EVENTS = ("kvm_vmgexit_enter", "kvm_vmgexit_exit",
                  "kvm_vmgexit_msr_protocol_enter", "kvm_vmgexit_msr_protocol_exit")
HOST_EVENTS = ("kvm_pio", "kvm_mmio", "kvm_msr", "kvm_cpuid")
EVENTS = VMGEXIT_EVENTS + HOST_EVENTS


class TraceSession:
    """KVM's SEV-ES tracepoints in a private tracefs instance (instances/kvmconf-<pid>),
    so the host's own trace buffer and event settings stay untouched.

    `mkdir` / `rmdir` are tracefs's own operations (an instance's rmdir removes all of it);
    tests pass stand-ins that work on a plain folder.
    """

    def __init__(self, tracefs: Path = Path("/sys/kernel/tracing"), name: str | None = None,
                 buffer_kb: int = 16384, mkdir: Callable[[Path], None] | None = None,
                 rmdir: Callable[[Path], None] | None = None):
        self.tracefs = Path(tracefs)
        self.instance = self.tracefs / "instances" / (name or f"kvmconf-{os.getpid()}")
        self.buffer_kb = buffer_kb
        self._mkdir = mkdir or (lambda p: p.mkdir())
        self._rmdir = rmdir or os.rmdir
        self.started = False

    def _write(self, rel: str, value: str) -> None:
        try:
            (self.instance / rel).write_text(value)
        except OSError as e:
            raise HarnessError(f"tracefs {self.instance / rel}: {_why(e)}") from None

    def start(self) -> None:
        if not (self.tracefs / "instances").is_dir():
            raise HarnessError(f"tracefs not mounted at {self.tracefs} (no instances/ folder)")
        try:
            self._mkdir(self.instance)
        except FileExistsError:
            raise HarnessError(f"tracefs instance {self.instance} exists: left by an earlier run "
                               f"(rmdir it)") from None
        except OSError as e:
            raise HarnessError(f"tracefs instance {self.instance}: {_why(e)}") from None
        self.started = True
        try:
            for event in EVENTS:
                if not (self.instance / "events" / "kvm" / event / "enable").exists():
                    raise HarnessError(f"tracepoint kvm:{event} missing in {self.instance}/events/kvm "
                                       f"(kvm_amd not loaded?)")
            self._write("tracing_on", "0")
            self._write("buffer_size_kb", str(self.buffer_kb))
            for event in EVENTS:
                self._write(f"events/kvm/{event}/enable", "1")
            self._write("trace", "")          # an O_TRUNC open empties the buffer
            self._write("tracing_on", "1")
        except HarnessError:
            self.stop()
            raise

    def follow(self, tids: Iterable[int]) -> None:
        """Record only these tasks (QEMU's threads: /proc/<pid>/task, read while QEMU
        waits under -S) and the threads they create later."""
        self._write("options/event-fork", "1")
        self._write("set_event_pid", " ".join(str(t) for t in tids))

    def read(self) -> str:
        try:
            return (self.instance / "trace").read_text()
        except OSError as e:
            raise HarnessError(f"tracefs {self.instance / 'trace'}: {_why(e)}") from None

    def stop(self) -> None:
        """Stop recording and remove the instance (idempotent)."""
        if not self.started:
            return
        errors = []
        for rel in ["tracing_on"] + [f"events/kvm/{e}/enable" for e in EVENTS]:
            path = self.instance / rel
            if path.exists():
                try:
                    path.write_text("0")
                except OSError as e:
                    errors.append(f"{path}: {_why(e)}")
        try:
            self._rmdir(self.instance)
        except OSError as e:
            raise HarnessError(f"tracefs instance {self.instance} not removed: {_why(e)}") from None
        self.started = False
        if errors:
            raise HarnessError(f"tracefs: {'; '.join(errors)}")

    def __enter__(self) -> "TraceSession":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def qemu_threads(pid: int, proc: Path = Path("/proc")) -> list[int]:
    """The thread ids of process `pid` (for TraceSession.follow)."""
    try:
        return sorted(int(t.name) for t in (Path(proc) / str(pid) / "task").iterdir())
    except OSError as e:
        raise HarnessError(f"{proc}/{pid}/task: {_why(e)}") from None


# ---------------------------------------------------------------- trace parsing

# trace_print_context: "%16s-%-7d ", optional "(%7d) " tgid, "[%03d] ", optional irq-info
# flags (4 or 5 chars), " %5lu.%06lu", ": ", then "<event>: <TP_printk output>".
_LINE = re.compile(r"^\s*(?P<task>.+?)-(?P<pid>\d+)\s+(?:\(\s*(?:\d+|-+)\)\s+)?\[(?P<cpu>\d+)\]\s+"
                   r"(?:[^\s\[\]]{4,5}\s+)?(?P<ts>\d+(?:\.\d+)?): (?P<event>\w+): (?P<body>.*?)\s*$")
_LOST = re.compile(r"^CPU:\s*\d+ \[LOST \d+ EVENTS\]")
_H = "([0-9a-f]+)"

# event -> (body regex from TP_printk, field names, converters)
_FORMATS: dict[str, tuple[re.Pattern, tuple[str, ...]]] = {
    # "vcpu %u, exit_reason %llx, exit_info1 %llx, exit_info2 %llx"
    "kvm_vmgexit_enter": (re.compile(rf"vcpu (\d+), exit_reason {_H}, exit_info1 {_H}, exit_info2 {_H}"),
                          ("vcpu", "exit_reason:x", "info1:x", "info2:x")),
    "kvm_vmgexit_exit": (re.compile(rf"vcpu (\d+), exit_reason {_H}, exit_info1 {_H}, exit_info2 {_H}"),
                         ("vcpu", "exit_reason:x", "info1:x", "info2:x")),
    # "vcpu %u, ghcb_gpa %016llx"
    "kvm_vmgexit_msr_protocol_enter": (re.compile(r"vcpu (\d+), ghcb_gpa ([0-9a-f]{16})"),
                                       ("vcpu", "ghcb_gpa:x")),
    # "vcpu %u, ghcb_gpa %016llx, result %d"
    "kvm_vmgexit_msr_protocol_exit": (re.compile(r"vcpu (\d+), ghcb_gpa ([0-9a-f]{16}), result (-?\d+)"),
                                      ("vcpu", "ghcb_gpa:x", "result")),
    # "pio_%s at 0x%x size %d count %d val 0x%x %s" (%s: "(...)" when count > 1)
    "kvm_pio": (re.compile(rf"pio_(read|write) at 0x{_H} size (\d+) count (\d+) val 0x{_H}(?: \(\.\.\.\))?"),
                ("rw:rw", "port:x", "size", "count", "val:x")),
    # "mmio %s len %u gpa 0x%llx val 0x%llx" (%s: unsatisfied-read, read, write)
    "kvm_mmio": (re.compile(rf"mmio (unsatisfied-read|read|write) len (\d+) gpa 0x{_H} val 0x{_H}"),
                 ("type:mmio", "len", "gpa:x", "val:x")),
    # "msr_%s %x = 0x%llx%s" (%s: " (#GP)" when the access faulted)
    "kvm_msr": (re.compile(rf"msr_(read|write) {_H} = 0x{_H}( \(#GP\))?"),
                ("write:rw", "ecx:x", "data:x", "exception:flag")),
    # "func %x idx %x rax %lx rbx %lx rcx %lx rdx %lx, cpuid entry %s%s"
    "kvm_cpuid": (re.compile(rf"func {_H} idx {_H} rax {_H} rbx {_H} rcx {_H} rdx {_H}, "
                             r"cpuid entry (found|not found)(, used max basic)?"),
                  ("function:x", "index:x", "rax:x", "rbx:x", "rcx:x", "rdx:x", "found:found",
                   "used_max_basic:flag")),
}
_MMIO_TYPES = {"unsatisfied-read": 0, "read": 1, "write": 2}   # KVM_TRACE_MMIO_*


def _convert(kind: str, text: str | None) -> int:
    if kind == "x":
        return int(text, 16)
    if kind == "rw":
        return int(text == "write")          # KVM_PIO_OUT = 1; kvm_msr's `write`
    if kind == "mmio":
        return _MMIO_TYPES[text]
    if kind == "flag":
        return int(bool(text))
    if kind == "found":
        return int(text == "found")
    return int(text)


def parse_trace(text: str) -> list[dict]:
    """The events of an ftrace text (the instance's `trace` or `trace_pipe`), in order:
    {"event", "vcpu" (None for events without one: kvm_pio, kvm_mmio, kvm_msr, kvm_cpuid),
    "task", "pid", "cpu", "ts", and the event's fields as ints}. An event of another kind
    keeps its text as "raw". A line that is not an event, a known event whose fields do
    not match its format, or a lost-events marker is a HarnessError naming the line."""
    events = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        if _LOST.match(line):
            raise HarnessError(f"trace line {number}: the ring buffer lost events ({line.strip()}); "
                               f"capture with a larger buffer_size_kb")
        m = _LINE.match(line)
        if not m:
            raise HarnessError(f"trace line {number}: not an ftrace event line: {line.strip()[:120]!r}")
        event = {"event": m["event"], "vcpu": None, "task": m["task"].strip(), "pid": int(m["pid"]),
                 "cpu": int(m["cpu"]), "ts": float(m["ts"])}
        fmt = _FORMATS.get(m["event"])
        if fmt is None:
            event["raw"] = m["body"]
        else:
            regex, names = fmt
            fm = regex.fullmatch(m["body"])
            if not fm:
                raise HarnessError(f"trace line {number}: {m['event']} fields do not match its format: "
                                   f"{m['body'][:120]!r}")
            for spec, value in zip(names, fm.groups()):
                name, _, kind = spec.partition(":")
                event[name] = _convert(kind, value)
        events.append(event)
    return events


# ---------------------------------------------------------------- the exchange

def _pairs(events: list[dict], enter: str, exit_: str, host: Iterable[str]):
    """(enter event, exit event | None, host events between them on the same task) per
    `enter`, pairing by vcpu on its thread (pid: vCPU 0 of another VM is another thread).
    An exit before any enter of its vcpu (the capture began mid-exchange) is skipped; two
    enters of one vcpu without an exit between are an error."""
    open_: dict[tuple[int, int], tuple[list, list]] = {}
    out: list[list] = []
    host = set(host)
    for index, ev in enumerate(events):
        kind = ev["event"]
        key = (ev["pid"], ev["vcpu"])
        if kind == enter:
            if key in open_:
                raise HarnessError(f"trace event {index}: {enter} of vcpu {ev['vcpu']} (pid {ev['pid']}) "
                                   f"before the {exit_} of its previous one")
            record = [ev, None, []]
            open_[key] = (record, record[2])
            out.append(record)
        elif kind == exit_:
            if key in open_:
                record, _ = open_.pop(key)
                record[1] = ev
        elif kind in host:
            for record, attached in open_.values():
                if record[0]["pid"] == ev["pid"]:
                    attached.append(ev)
    return out


def exchange(events: list[dict]) -> list[dict]:
    """The guest's GHCB requests as the host saw them, in order: one {"vcpu", "pid", "exit",
    "info1", "info2"} per kvm_vmgexit_enter (sw_exit_code, sw_exit_info_1, sw_exit_info_2
    as the guest wrote them), with KVM's reply {"reply_info1", "reply_info2"} from the
    next kvm_vmgexit_exit of the same vcpu (None when the trace ends first) and "host":
    the kvm_pio / kvm_mmio / kvm_msr / kvm_cpuid events KVM's handler recorded on that
    vCPU's thread in between (the data the request moved)."""
    out = []
    for index, (enter, exit_, host) in enumerate(_pairs(events, "kvm_vmgexit_enter", "kvm_vmgexit_exit",
                                                         HOST_EVENTS)):
        if exit_ is not None and exit_["exit_reason"] != enter["exit_reason"]:
            raise HarnessError(f"vmgexit {index}: kvm_vmgexit_exit exit_reason {exit_['exit_reason']:#x} "
                               f"for a request with exit_reason {enter['exit_reason']:#x}")
        out.append({"vcpu": enter["vcpu"], "pid": enter["pid"], "exit": enter["exit_reason"],
                    "info1": enter["info1"], "info2": enter["info2"],
                    "reply_info1": exit_["info1"] if exit_ else None,
                    "reply_info2": exit_["info2"] if exit_ else None,
                    "host": [{k: v for k, v in h.items() if k not in ("task", "pid", "cpu", "ts")}
                             for h in host]})
    return out


def msr_exchange(events: list[dict]) -> list[dict]:
    """The guest's GHCB MSR protocol requests: {"vcpu", "pid", "request" (the MSR value the guest
    wrote), "reply" (the MSR value KVM left), "result" (the handler's return), "host"}.
    A termination request (0x100) has reply and result None: 6.1's KVM exits to user
    space before its msr_protocol_exit tracepoint."""
    out = []
    for enter, exit_, host in _pairs(events, "kvm_vmgexit_msr_protocol_enter",
                                     "kvm_vmgexit_msr_protocol_exit", HOST_EVENTS):
        out.append({"vcpu": enter["vcpu"], "pid": enter["pid"], "request": enter["ghcb_gpa"],
                    "reply": exit_["ghcb_gpa"] if exit_ else None,
                    "result": exit_["result"] if exit_ else None,
                    "host": [{k: v for k, v in h.items() if k not in ("task", "pid", "cpu", "ts")}
                             for h in host]})
    return out


_PROJECTED = ("exit", "info1", "info2")


def _project(event: dict, what: str, index: int) -> dict:
    try:
        return {k: int(event[k]) for k in _PROJECTED}
    except (KeyError, TypeError, ValueError):
        raise HarnessError(f"{what} {index} lacks integer exit/info1/info2: {event}") from None


def compare_exchange(observed: list[dict], predicted_events: list[dict]) -> Divergence | None:
    """The first difference between the requests the host saw (`exchange`) and the model's
    predicted `vmgexit` events (other ops of the prediction are ignored); None when they
    agree. Only exit, info1 and info2 are compared: that is all kvm_vmgexit_enter
    carries. The valid bitmap, the registers, sw_scratch and the shared buffer of a
    prediction are not visible in the tracepoints."""
    predicted = [e for e in predicted_events if e.get("op") == "vmgexit"]
    expected = [_project(e, "predicted vmgexit", i) for i, e in enumerate(predicted)]
    seen = [_project(e, "observed vmgexit", i) for i, e in enumerate(observed)]

    def action(i: int, event: dict) -> str:
        text = f"vmgexit {i}, exit {event['exit']:#x}"
        if i < len(predicted) and "step" in predicted[i]:
            text += f", trigger step {predicted[i]['step']}"
        return text

    return first_divergence(expected, seen, action_of=action)


# The guest payload brackets its triggers with `outl %eax, $0xe0` (pc-testdev's 4-byte
# loopback register: harmless) of these values, so that OVMF's and the boot's own
# VMGEXITs can be cut away.
MARK_PORT, MARK_START, MARK_END = 0xE0, 0x6B766D73, 0x6B766D65     # "kvms", "kvme"


def _is_mark(request: dict, value: int, port: int) -> bool:
    return (request["exit"] == 0x7B and (request["info1"] >> 16) == port
            and (request["info1"] & 0x5) == 0                        # OUT, not string
            and any(h["event"] == "kvm_pio" and h["rw"] == 1 and h["port"] == port
                    and h["val"] == value for h in request["host"]))


def window(observed: list[dict], start: int = MARK_START, end: int = MARK_END,
           port: int = MARK_PORT) -> list[dict]:
    """The requests strictly between the first start mark and the next end mark, of the
    vCPU (thread) that wrote the start mark (the marks are OUTs to `port`, identified by the value
    kvm_pio recorded)."""
    begin = next((i for i, r in enumerate(observed) if _is_mark(r, start, port)), None)
    if begin is None:
        raise HarnessError(f"no start mark in the trace: no OUT of {start:#x} to port {port:#x}")
    vcpu, pid = observed[begin]["vcpu"], observed[begin]["pid"]
    out = []
    for request in observed[begin + 1:]:
        if (request["vcpu"], request["pid"]) != (vcpu, pid):
            continue
        if _is_mark(request, end, port):
            return out
        out.append(request)
    raise HarnessError(f"no end mark after the start mark: no OUT of {end:#x} to port {port:#x} "
                       f"on vcpu {vcpu} (the guest stopped early, or the ring buffer was too small)")


# ---------------------------------------------------------------- the SEV-ES machine

def machine_argv(sev_argv: list[str], serial_log: Path, qmp_socket: Path, ssh_port: int) -> list[str]:
    """`qemu_command`'s SEV-ES argv as a kvmconf machine: the serial console into the run's
    log instead of stdio (-nographic), the run's private QMP socket, SSH forwarded from
    127.0.0.1 only. The virtio NIC uses the platform IOMMU path (iommu_platform=on): an
    SEV guest's devices must DMA through its unencrypted bounce buffers."""
    argv = [a for a in sev_argv if a != "-nographic"]
    return argv + ["-display", "none", "-serial", f"file:{serial_log}",
                   "-chardev", f"socket,id=qmp,path={qmp_socket}", "-mon", "chardev=qmp,mode=control",
                   "-netdev", f"user,id=net0,hostfwd=tcp:127.0.0.1:{ssh_port}-:22",
                   "-device", "virtio-net-pci,netdev=net0,disable-legacy=on,iommu_platform=on"]


def sev_es_machine(facts: dict):
    """A factory for RunContext.boot_extra: the kernel under test (its bzImage, booted by
    OVMF) as an SEV-ES guest with the run's image, under the host's KVM."""
    import shutil

    from harness.machine import Machine, qemu_binary
    from harness.machine.profiles import PROFILES

    class SevEsMachine(Machine):
        def argv(self, qemu: str) -> list[str]:
            vars_copy = self.workdir / f"{self.name}.OVMF_VARS.fd"    # the guest writes it
            shutil.copyfile(facts["ovmf_vars"], vars_copy)
            sev = qemu_command(self.kernel, self.initrd, facts["ovmf_code"], vars_copy, facts["cbitpos"],
                               facts["reduced_phys_bits"], self.memory_mb, self.smp,
                               append="loglevel=5 panic=-1", qemu=qemu)
            return machine_argv(sev, self.serial_log, self.workdir / f"{self.name}.qmp.sock", self.ssh_port)

    def make(name, kernel, initrd, workdir, logdir):
        qemu_binary()    # a clear error before anything else when QEMU is missing
        # the machine's own profile only names its capabilities (SEV-ES adds its devices itself)
        return SevEsMachine(name, PROFILES["nested"], kernel.bzimage, initrd, workdir, logdir,
                            accel="kvm", smp=1)
    return make


def drop_setup_out(requests: list[dict], value: int, port: int = MARK_PORT) -> list[dict]:
    """The requests after the trigger program's set-up OUT of `value` to `port` (the
    device's starting state, written right after the start mark); an error when the
    window does not begin with it."""
    if not requests or not _is_mark(requests[0], value, port):
        first = requests[0] if requests else None
        raise HarnessError(f"the window does not begin with the set-up OUT of {value:#x} to port {port:#x} "
                           f"(first request: {first})")
    return requests[1:]
