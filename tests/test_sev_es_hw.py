"""Unit tests of the SEV-ES hardware path (harness/sev_es_hw.py) on fake hosts and on a
recorded-by-hand trace in the kernel's exact formats; no guest, no SEV hardware."""
from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import pytest

from harness import sev_es_hw as hw
from harness.compare import Divergence
from harness.errors import HarnessError

FIX = Path(__file__).parent / "fixtures" / "sev_es"
TRACE = (FIX / "kvm-6.1-triggers.trace").read_text()
PREDICTED = json.loads((FIX / "predicted-triggers.json").read_text())

# ---------------------------------------------------------------- fake hosts

MILAN = {0x80000000: (0x80000023, 0, 0, 0),
         # SME SEV PageFlush SEV-ES ...; EBX: C-bit 51, reduced phys bits 1, 4 VMPLs in [15:12]
         0x8000001F: (0x0101FD3F, 0x4073, 0x1FD, 0x1)}
NAPLES = {0x80000000: (0x8000001F, 0, 0, 0),
          0x8000001F: (0x7, 0x16F, 0xF, 0x1)}      # SME, SEV, PageFlush; no SEV-ES
PARAMS = {"/sys/module/kvm_amd/parameters/sev": "Y\n",
          "/sys/module/kvm_amd/parameters/sev_es": "Y\n"}
GOOD_PATHS = {"/sys/module/kvm_amd", "/dev/sev",
              "/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_VARS_4M.fd"}


def fake(cpuid=MILAN, files=PARAMS, paths=GOOD_PATHS):
    """probe_sev_es's readers over dicts; cpuid=None: no /dev/cpu/0/cpuid."""
    def read(path):
        if path not in files:
            raise FileNotFoundError(2, "No such file or directory", path)
        return files[path]

    def read_cpuid(leaf):
        if cpuid is None:
            raise FileNotFoundError(2, "No such file or directory", hw.CPUID_DEV)
        return cpuid.get(leaf, (0, 0, 0, 0))

    return {"read": read, "cpuid": read_cpuid, "exists": lambda p: p in paths or p in files}


def probe(**kw):
    return hw.probe_sev_es(**fake(**kw))


def test_epyc_with_sev_es_has_everything():
    facts = probe()
    assert facts == {"cpuid_source": "/dev/cpu/0/cpuid", "cpuid_error": None,
                     "max_ext_leaf": 0x80000023, "sev": True, "sev_es": True,
                     "cbitpos": 51, "reduced_phys_bits": 1, "kvm_amd_loaded": True,
                     "kvm_amd_sev": "Y", "kvm_amd_sev_es": "Y", "dev_sev": True,
                     "ovmf_code": "/usr/share/OVMF/OVMF_CODE_4M.fd",
                     "ovmf_vars": "/usr/share/OVMF/OVMF_VARS_4M.fd"}
    assert hw.missing(facts) is None


def test_sev_only_epyc_7001():
    facts = probe(cpuid=NAPLES)
    assert (facts["sev"], facts["sev_es"], facts["cbitpos"], facts["reduced_phys_bits"]) == (True, False, 47, 5)
    assert hw.missing(facts) == "SEV-ES missing: CPUID 0x8000001F EAX bit 3 clear (/dev/cpu/0/cpuid)"


def test_no_sev_at_all_and_a_short_extended_range():
    assert hw.missing(probe(cpuid={0x80000000: (0x80000022, 0, 0, 0)})) == \
        "SEV missing: CPUID 0x8000001F EAX bit 1 clear (/dev/cpu/0/cpuid)"
    assert hw.missing(probe(cpuid={0x80000000: (0x80000008, 0, 0, 0)})) == \
        "SEV missing: CPUID 0x80000000 reports max extended leaf 0x80000008 < 0x8000001f (/dev/cpu/0/cpuid)"


def test_no_dev_sev():
    assert hw.missing(probe(paths=GOOD_PATHS - {"/dev/sev"})) == \
        "SEV firmware missing: /dev/sev absent (ccp driver or PSP firmware not up)"


def test_kvm_amd_sev_es_off():
    facts = probe(files={**PARAMS, "/sys/module/kvm_amd/parameters/sev_es": "N\n"})
    assert facts["kvm_amd_sev_es"] == "N"
    assert hw.missing(facts) == ("SEV-ES disabled in KVM: /sys/module/kvm_amd/parameters/sev_es is N "
                                 "(no SEV-ES ASIDs from the BIOS, or kvm_amd sev_es=0)")


def test_kvm_amd_sev_off_and_parameter_absent_and_module_absent():
    assert hw.missing(probe(files={**PARAMS, "/sys/module/kvm_amd/parameters/sev": "0\n"})) == \
        "SEV disabled in KVM: /sys/module/kvm_amd/parameters/sev is 0"
    assert hw.missing(probe(files={})) == ("SEV disabled in KVM: /sys/module/kvm_amd/parameters/sev "
                                           "absent (kvm_amd without CONFIG_KVM_AMD_SEV)")
    assert hw.missing(probe(files={}, paths=GOOD_PATHS - {"/sys/module/kvm_amd"})) == \
        "kvm_amd missing: /sys/module/kvm_amd absent (module not loaded)"


def test_no_cpuid_device_falls_back_to_the_cpuinfo_flags():
    flags = {"/proc/cpuinfo": "processor\t: 0\nflags\t\t: fpu sme sev sev_es svm\n\nprocessor\t: 1\n"}
    facts = probe(cpuid=None, files={**PARAMS, **flags})
    assert facts["cpuid_source"] == "/proc/cpuinfo flags"
    assert facts["cpuid_error"] == "/dev/cpu/0/cpuid: No such file or directory"
    assert (facts["sev"], facts["sev_es"], facts["cbitpos"]) == (True, True, None)
    assert hw.missing(facts) == ("C-bit position unknown: /proc/cpuinfo does not carry CPUID 0x8000001F "
                                 "EBX (/dev/cpu/0/cpuid: No such file or directory; modprobe cpuid "
                                 "gives /dev/cpu/0/cpuid)")
    no_es = probe(cpuid=None, files={**PARAMS, "/proc/cpuinfo": "flags\t\t: fpu sme sev svm\n"})
    assert hw.missing(no_es) == ("SEV-ES missing: no 'sev_es' in /proc/cpuinfo flags; "
                                 "/dev/cpu/0/cpuid: No such file or directory")


def test_ovmf_which_file_and_none():
    old = {"/sys/module/kvm_amd", "/dev/sev", "/usr/share/OVMF/OVMF_CODE.fd", "/usr/share/OVMF/OVMF_VARS.fd"}
    facts = probe(paths=old)
    assert (facts["ovmf_code"], facts["ovmf_vars"]) == ("/usr/share/OVMF/OVMF_CODE.fd",
                                                        "/usr/share/OVMF/OVMF_VARS.fd")
    assert hw.missing(facts) is None
    assert hw.missing(probe(paths={"/sys/module/kvm_amd", "/dev/sev"})) == \
        "OVMF missing: no /usr/share/OVMF/OVMF_CODE_4M.fd or /usr/share/OVMF/OVMF_CODE.fd (Debian package ovmf)"
    assert hw.missing(probe(paths=GOOD_PATHS - {"/usr/share/OVMF/OVMF_VARS_4M.fd"})) == \
        "OVMF vars missing: /usr/share/OVMF/OVMF_VARS_4M.fd absent next to /usr/share/OVMF/OVMF_CODE_4M.fd"


def test_this_host_lacks_sev_es_and_says_what():
    facts = hw.probe_sev_es()
    reason = hw.missing(facts)
    if reason is None:
        pytest.skip("this host has SEV-ES")
    assert "\n" not in reason and ("/" in reason)


# ---------------------------------------------------------------- QEMU argv

@pytest.fixture
def images(tmp_path):
    paths = {}
    for name in ("bzImage", "initrd.img", "OVMF_CODE_4M.fd", "OVMF_VARS_4M.fd"):
        (tmp_path / name).write_bytes(b"x")
        paths[name] = tmp_path / name
    return paths


def argv_of(images, **kw):
    args = dict(kernel=images["bzImage"], initrd=images["initrd.img"], ovmf_code=images["OVMF_CODE_4M.fd"],
                ovmf_vars=images["OVMF_VARS_4M.fd"], cbitpos=51, reduced_phys_bits=1)
    args.update(kw)
    return hw.qemu_command(**args)


def opt(argv, name):
    return [argv[i + 1] for i, a in enumerate(argv) if a == name]


def test_command_line(images):
    argv = argv_of(images, append="quiet kvmconf.case=3", smp=2)
    assert argv[0] == "qemu-system-x86_64"
    assert opt(argv, "-accel") == ["kvm"] and opt(argv, "-cpu") == ["EPYC"]
    assert opt(argv, "-machine") == ["q35,confidential-guest-support=sev0,vmport=off,smm=off"]
    assert opt(argv, "-object") == ["sev-guest,id=sev0,policy=0x5,cbitpos=51,reduced-phys-bits=1"]
    assert opt(argv, "-drive") == [f"if=pflash,format=raw,unit=0,file={images['OVMF_CODE_4M.fd']},readonly=on",
                                   f"if=pflash,format=raw,unit=1,file={images['OVMF_VARS_4M.fd']}"]
    assert opt(argv, "-kernel") == [str(images["bzImage"])] and opt(argv, "-initrd") == [str(images["initrd.img"])]
    assert opt(argv, "-append") == ["console=ttyS0 quiet kvmconf.case=3"]
    assert opt(argv, "-device") == ["pc-testdev", "isa-debug-exit,iobase=0xf4,iosize=4"]
    assert opt(argv, "-m") == ["1024"] and opt(argv, "-smp") == ["2"]
    assert argv[-2:] == ["-nographic", "-no-reboot"]
    assert not any("smm=on" in a or "kernel-irqchip" in a or a == "-bios" for a in argv)
    assert int(hw.SEV_ES_POLICY) & 0x4 and hw.SEV_ES_POLICY == 0x5


@pytest.mark.parametrize("change, message", [
    ({"cbitpos": 31}, "cbitpos 31: the C-bit is a physical-address bit 32..63 (CPUID 0x8000001F EBX[5:0])"),
    ({"cbitpos": 64}, "cbitpos 64: the C-bit is a physical-address bit 32..63 (CPUID 0x8000001F EBX[5:0])"),
    ({"reduced_phys_bits": 0}, "reduced_phys_bits 0: QEMU needs 1..63 (CPUID 0x8000001F EBX[11:6])"),
    ({"memory_mb": 16}, "memory_mb 16: at least 64 MiB"),
    ({"smp": 0}, "smp 0: 1..255 vCPUs"),
    ({"cpu": "qemu64"}, "cpu 'qemu64': EPYC, an EPYC-* model or host"),
    ({"append": "a\nb"}, "append: one line of kernel arguments"),
    ({"ovmf_vars": "/usr/share/OVMF/OVMF_VARS_4M.fd"},
     "ovmf_vars /usr/share/OVMF/OVMF_VARS_4M.fd: pass a per-run copy, the guest writes it"),
    ({"kernel": "/nonexistent/bzImage"}, "kernel /nonexistent/bzImage: no such file"),
])
def test_command_line_validation(images, change, message):
    with pytest.raises(HarnessError) as e:
        argv_of(images, **change)
    assert str(e.value) == message


def test_command_line_host_cpu(images):
    assert opt(argv_of(images, cpu="host"), "-cpu") == ["host"]


# ---------------------------------------------------------------- parse_trace

EVENTS = hw.parse_trace(TRACE)
CTX = {"task": "CPU 0/KVM", "pid": 4243, "cpu": 1}


def test_parse_counts_and_order():
    assert len(EVENTS) == 38
    assert [e["event"] for e in EVENTS[:3]] == ["kvm_vmgexit_msr_protocol_enter",
                                                "kvm_vmgexit_msr_protocol_exit",
                                                "kvm_vmgexit_msr_protocol_enter"]
    assert EVENTS[-1]["event"] == "kvm_vmgexit_exit"
    assert [e["ts"] for e in EVENTS] == sorted(e["ts"] for e in EVENTS)


def test_parse_every_field_of_the_vmgexit_events():
    got = [(e["event"][12:], e["vcpu"], e["exit_reason"], e["info1"], e["info2"])
           for e in EVENTS if e["event"] in ("kvm_vmgexit_enter", "kvm_vmgexit_exit")]
    assert got == [("enter", 0, 0x7b, 0x800210, 0), ("exit", 0, 0x7b, 0, 0),
                   ("enter", 0, 0x7b, 0x710211, 0), ("exit", 0, 0x7b, 0, 0),
                   ("enter", 0, 0x72, 0, 0), ("exit", 0, 0x72, 0, 0),
                   ("enter", 0, 0x7c, 1, 0), ("exit", 0, 0x7c, 0, 0),
                   ("enter", 0, 0x7c, 0, 0), ("exit", 0, 0x7c, 1, 0x8000030d),
                   ("enter", 0, 0x7b, 0xe00e1c, 5), ("exit", 0, 0x7b, 0, 0),
                   ("enter", 0, 0x80000002, 0xfec00000, 4), ("exit", 0, 0x80000002, 0, 0),
                   ("enter", 0, 0x80000001, 0xfec00010, 4), ("exit", 0, 0x80000001, 0, 0)]
    assert EVENTS[14] == {"event": "kvm_vmgexit_enter", **CTX, "vcpu": 0, "ts": 812.105157,
                          "exit_reason": 0x7b, "info1": 0x800210, "info2": 0}


def test_parse_every_field_of_the_msr_protocol_and_host_events():
    assert EVENTS[0] == {"event": "kvm_vmgexit_msr_protocol_enter", **CTX, "vcpu": 0, "ts": 812.104331,
                         "ghcb_gpa": 0x2}
    assert EVENTS[1] == {"event": "kvm_vmgexit_msr_protocol_exit", **CTX, "vcpu": 0, "ts": 812.104335,
                         "ghcb_gpa": 0x0001000133000001, "result": 1}
    assert EVENTS[3] == {"event": "kvm_cpuid", **CTX, "vcpu": None, "ts": 812.104459, "function": 0x8000001F,
                         "index": 0, "rax": 0xa, "rbx": 0x73, "rcx": 0, "rdx": 0, "found": 1,
                         "used_max_basic": 0}
    assert EVENTS[15] == {"event": "kvm_pio", **CTX, "vcpu": None, "ts": 812.105161, "rw": 1, "port": 0x80,
                          "size": 1, "count": 1, "val": 0x5a}
    assert EVENTS[18]["rw"] == 0 and EVENTS[18]["val"] == 0x12
    assert EVENTS[27] == {"event": "kvm_msr", **CTX, "vcpu": None, "ts": 812.106433, "write": 0,
                          "ecx": 0xc0012345, "data": 0, "exception": 1}
    assert (EVENTS[24]["write"], EVENTS[24]["ecx"], EVENTS[24]["exception"]) == (1, 0x6e0, 0)
    assert EVENTS[30] == {"event": "kvm_pio", **CTX, "vcpu": None, "ts": 812.106751, "rw": 1, "port": 0xe0,
                          "size": 1, "count": 5, "val": 0x68}
    assert EVENTS[33] == {"event": "kvm_mmio", **CTX, "vcpu": None, "ts": 812.107069, "type": 2, "len": 4,
                          "gpa": 0xfec00000, "val": 1}
    assert (EVENTS[36]["event"], EVENTS[36]["type"], EVENTS[36]["val"]) == ("kvm_mmio", 1, 0x170011)


def test_parse_other_line_layouts():
    # no irq-info flags, a tgid column, a task name with a dash, trace_pipe without header
    text = ("  qemu-system-x86-77      (     70) [000]   5.000001: kvm_vmgexit_enter: "
            "vcpu 3, exit_reason 81, exit_info1 0, exit_info2 0\n"
            "       CPU 1/KVM-4244    [000] d..2.     6.000002: kvm_exit: vcpu 1 reason npf rip 0x0\n"
            "       CPU 1/KVM-4244    [000] ....  123456789012: kvm_vmgexit_msr_protocol_exit: "
            "vcpu 1, ghcb_gpa 0000000000000005, result 1\n")          # trace_clock counter
    first, second, third = hw.parse_trace(text)
    assert (third["ts"], third["ghcb_gpa"], third["result"]) == (123456789012.0, 5, 1)
    assert (first["task"], first["pid"], first["vcpu"], first["exit_reason"]) == ("qemu-system-x86", 77, 3, 0x81)
    assert second == {"event": "kvm_exit", "vcpu": None, "task": "CPU 1/KVM", "pid": 4244, "cpu": 0,
                      "ts": 6.000002, "raw": "vcpu 1 reason npf rip 0x0"}


@pytest.mark.parametrize("bad, message", [
    # 0x-prefixed hex is not what 6.1 prints for kvm_vmgexit_*
    ("       CPU 0/KVM-4243    [001] .....   812.105157: kvm_vmgexit_enter: vcpu 0, exit_reason 0x7b, "
     "exit_info1 800210, exit_info2 0", "trace line 3: kvm_vmgexit_enter fields do not match its format"),
    ("       CPU 0/KVM-4243    [001] .....   812.104331: kvm_vmgexit_msr_protocol_enter: vcpu 0, ghcb_gpa 2",
     "trace line 3: kvm_vmgexit_msr_protocol_enter fields do not match its format"),
    ("       CPU 0/KVM-4243    [001] .....   812.105161: kvm_pio: pio_write at 80 size 1 count 1 val 0x5a",
     "trace line 3: kvm_pio fields do not match its format"),
    ("garbage that is no event", "trace line 3: not an ftrace event line"),
    ("CPU:1 [LOST 4711 EVENTS]", "trace line 3: the ring buffer lost events (CPU:1 [LOST 4711 EVENTS])"),
])
def test_parse_malformed_lines_name_the_line(bad, message):
    text = "# tracer: nop\n" + TRACE.splitlines()[13] + "\n" + bad + "\n"
    with pytest.raises(HarnessError) as e:
        hw.parse_trace(text)
    assert str(e.value).startswith(message)


# ---------------------------------------------------------------- exchange

def test_exchange_pairs_requests_with_replies():
    ex = hw.exchange(EVENTS)
    assert [(e["exit"], e["info1"], e["info2"], e["reply_info1"], e["reply_info2"]) for e in ex] == [
        (0x7b, 0x800210, 0, 0, 0), (0x7b, 0x710211, 0, 0, 0), (0x72, 0, 0, 0, 0), (0x7c, 1, 0, 0, 0),
        (0x7c, 0, 0, 1, 0x8000030d), (0x7b, 0xe00e1c, 5, 0, 0),
        (0x80000002, 0xfec00000, 4, 0, 0), (0x80000001, 0xfec00010, 4, 0, 0)]
    assert all(e["vcpu"] == 0 for e in ex)
    assert ex[0]["host"] == [{"event": "kvm_pio", "vcpu": None, "rw": 1, "port": 0x80, "size": 1, "count": 1,
                              "val": 0x5a}]
    assert ex[5]["host"][0]["count"] == 5
    assert ex[7]["host"][0]["val"] == 0x170011
    assert [len(e["host"]) for e in ex] == [1] * 8


def test_msr_exchange_of_the_early_cpuid():
    ms = hw.msr_exchange(EVENTS)
    assert [(m["request"], m["reply"], m["result"]) for m in ms] == [
        (0x2, 0x0001000133000001, 1),
        (0x8000001F00000004, 0x0000000A00000005, 1), (0x8000001F40000004, 0x0000007300000005, 1),
        (0x8000001F80000004, 0x0000000000000005, 1), (0x8000001FC0000004, 0x0000000000000005, 1)]
    assert [len(m["host"]) for m in ms] == [0, 1, 1, 1, 1]
    assert ms[2]["host"][0]["rbx"] == 0x73


def line(task, pid, event, body):
    return f"{task:>16}-{pid:<7} [000] .....   1.000000: {event}: {body}"


def vm(vcpu, what, code, i1=0, i2=0, pid=None):
    return line(f"CPU {vcpu}/KVM", pid or 100 + vcpu, f"kvm_vmgexit_{what}",
                f"vcpu {vcpu}, exit_reason {code:x}, exit_info1 {i1:x}, exit_info2 {i2:x}")


def test_exchange_two_vcpus_interleaved_orphans_and_open_ends():
    text = "\n".join([
        vm(1, "exit", 0x72),                       # the capture began mid-exchange: skipped
        vm(0, "enter", 0x7b, 0x800210), vm(1, "enter", 0x72),
        line("CPU 1/KVM", 101, "kvm_cpuid", "func 1 idx 0 rax 1 rbx 2 rcx 3 rdx 4, cpuid entry found"),
        line("CPU 0/KVM", 100, "kvm_pio", "pio_write at 0x80 size 1 count 1 val 0x5a "),
        vm(1, "exit", 0x72), vm(0, "exit", 0x7b), vm(0, "enter", 0x81)])
    ex = hw.exchange(hw.parse_trace(text))
    assert [(e["vcpu"], e["exit"], e["reply_info1"]) for e in ex] == [(0, 0x7b, 0), (1, 0x72, 0), (0, 0x81, None)]
    assert [h["event"] for h in ex[0]["host"]] == ["kvm_pio"]
    assert [h["event"] for h in ex[1]["host"]] == ["kvm_cpuid"]


def test_exchange_two_vms_vcpu_0_each():
    text = "\n".join([vm(0, "enter", 0x7b, 0x800210, pid=100), vm(0, "enter", 0x72, pid=200),
                      vm(0, "exit", 0x7b, 0, 0, pid=100), vm(0, "exit", 0x72, 5, 6, pid=200)])
    ex = hw.exchange(hw.parse_trace(text))
    assert [(e["pid"], e["exit"], e["reply_info1"], e["reply_info2"]) for e in ex] == [(100, 0x7b, 0, 0),
                                                                                       (200, 0x72, 5, 6)]


def test_exchange_inconsistent_traces_are_errors():
    with pytest.raises(HarnessError, match=r"trace event 1: kvm_vmgexit_enter of vcpu 0 \(pid 100\) before the "
                                           r"kvm_vmgexit_exit of its previous one"):
        hw.exchange(hw.parse_trace("\n".join([vm(0, "enter", 0x7b), vm(0, "enter", 0x72)])))
    with pytest.raises(HarnessError, match="exit_reason 0x72 for a request with exit_reason 0x7b"):
        hw.exchange(hw.parse_trace("\n".join([vm(0, "enter", 0x7b), vm(0, "exit", 0x72)])))


# ---------------------------------------------------------------- compare_exchange

def test_compare_exchange_agrees_with_the_prediction():
    assert hw.compare_exchange(hw.exchange(EVENTS), PREDICTED) is None


def test_a_wrong_exit_info_must_fail():
    predicted = copy.deepcopy(PREDICTED)
    inb = next(e for e in predicted if e.get("op") == "vmgexit" and e["step"] == 3)
    inb["info1"] = 0x710219                          # REP bit: not what the guest sent
    div = hw.compare_exchange(hw.exchange(EVENTS), predicted)
    assert isinstance(div, Divergence)
    assert (div.step, div.field, div.expected, div.observed) == (1, "info1", 0x710219, 0x710211)
    assert div.action == "vmgexit 1, exit 0x7b, trigger step 3"
    assert "step 1 (vmgexit 1, exit 0x7b, trigger step 3): info1 expected 0x710219, observed 0x710211" in str(div)


def test_compare_exchange_missing_and_extra_requests():
    observed = hw.exchange(EVENTS)
    div = hw.compare_exchange(observed[:-1], PREDICTED)
    assert (div.step, div.field, div.observed) == (7, "event", "<absent>")
    div = hw.compare_exchange(observed + observed[:1], PREDICTED)
    assert (div.step, div.field, div.expected) == (8, "event", "<absent>")
    with pytest.raises(HarnessError, match="predicted vmgexit 0 lacks integer exit/info1/info2"):
        hw.compare_exchange(observed, [{"op": "vmgexit", "exit": 0x7b}])


# ---------------------------------------------------------------- TraceSession

def fake_mkdir(path: Path) -> None:
    """What tracefs gives a new instance (the files the session touches)."""
    path.mkdir()
    for event in hw.EVENTS:
        (path / "events" / "kvm" / event).mkdir(parents=True)
        (path / "events" / "kvm" / event / "enable").write_text("0\n")
    (path / "options").mkdir()
    (path / "options" / "event-fork").write_text("0\n")
    for name, value in (("tracing_on", "1\n"), ("buffer_size_kb", "1408\n"), ("set_event_pid", ""),
                        ("trace", "# tracer: nop\nstale line\n")):
        (path / name).write_text(value)


@pytest.fixture
def tracefs(tmp_path):
    (tmp_path / "instances").mkdir()
    (tmp_path / "tracing_on").write_text("1\n")
    (tmp_path / "events" / "kvm" / "kvm_pio").mkdir(parents=True)
    (tmp_path / "events" / "kvm" / "kvm_pio" / "enable").write_text("0\n")
    return tmp_path


def host_files(root: Path) -> dict:
    return {p.relative_to(root).as_posix(): p.read_text() for p in root.rglob("*")
            if p.is_file() and "instances" not in p.parts}


def test_trace_session_writes_its_own_instance_and_removes_it(tracefs):
    before = host_files(tracefs)
    session = hw.TraceSession(tracefs, name="kvmconf-test", mkdir=fake_mkdir, rmdir=shutil.rmtree)
    assert hw.TraceSession(tracefs).instance.name.startswith("kvmconf-")
    session.start()
    inst = tracefs / "instances" / "kvmconf-test"
    assert (inst / "tracing_on").read_text() == "1"
    assert (inst / "buffer_size_kb").read_text() == "16384"
    assert (inst / "trace").read_text() == ""
    assert {e: (inst / "events" / "kvm" / e / "enable").read_text() for e in hw.EVENTS} == \
        {e: "1" for e in hw.EVENTS}
    assert set(hw.EVENTS) >= {"kvm_vmgexit_enter", "kvm_vmgexit_exit", "kvm_vmgexit_msr_protocol_enter",
                              "kvm_vmgexit_msr_protocol_exit", "kvm_pio", "kvm_mmio", "kvm_msr", "kvm_cpuid"}
    session.follow([4242, 4243])
    assert (inst / "set_event_pid").read_text() == "4242 4243"
    assert (inst / "options" / "event-fork").read_text() == "1"
    (inst / "trace").write_text(TRACE)
    assert hw.parse_trace(session.read()) == EVENTS
    session.stop()
    assert not inst.exists()
    session.stop()                                     # idempotent
    assert host_files(tracefs) == before               # the host's own tracing untouched


def test_trace_session_context_manager_and_errors(tracefs, tmp_path):
    with hw.TraceSession(tracefs, name="cm", mkdir=fake_mkdir, rmdir=shutil.rmtree) as s:
        assert s.instance.is_dir()
    assert not s.instance.exists()

    with pytest.raises(HarnessError, match="tracefs not mounted at .*nowhere"):
        hw.TraceSession(tmp_path / "nowhere").start()

    (tracefs / "instances" / "left").mkdir()
    with pytest.raises(HarnessError, match="instances/left exists: left by an earlier run"):
        hw.TraceSession(tracefs, name="left").start()

    def no_mmio(path):
        fake_mkdir(path)
        shutil.rmtree(path / "events" / "kvm" / "kvm_mmio")
    with pytest.raises(HarnessError, match="tracepoint kvm:kvm_mmio missing"):
        hw.TraceSession(tracefs, name="nommio", mkdir=no_mmio, rmdir=shutil.rmtree).start()
    assert not (tracefs / "instances" / "nommio").exists()   # cleaned up on failure

    # a real rmdir on a folder that is not tracefs fails, and says so
    s = hw.TraceSession(tracefs, name="plain", mkdir=fake_mkdir)
    s.start()
    with pytest.raises(HarnessError, match="instances/plain not removed"):
        s.stop()


# ---------------------------------------------------------------- window, qemu_threads

def mark(vcpu, value, pid=None):
    pid = pid or 100 + vcpu
    return [vm(vcpu, "enter", 0x7b, 0xe00240, pid=pid),
            line(f"CPU {vcpu}/KVM", pid, "kvm_pio", f"pio_write at 0xe0 size 4 count 1 val 0x{value:x} "),
            vm(vcpu, "exit", 0x7b, pid=pid)]


def test_window_cuts_the_triggers_out_of_a_boot():
    triggers = [l for l in TRACE.splitlines() if not l.startswith("#")][14:]   # the GHCB part
    text = "\n".join([
        vm(0, "enter", 0x72), vm(0, "exit", 0x72),                          # OVMF / boot
        *mark(0, 0x6B766D00),                                               # not a mark value
        *mark(0, hw.MARK_START, pid=4243),
        *triggers[:6],
        vm(1, "enter", 0x72), vm(1, "exit", 0x72),                          # another vCPU meanwhile
        *triggers[6:],
        *mark(0, hw.MARK_END, pid=4243),
        vm(0, "enter", 0x7b, 0x800210), vm(0, "exit", 0x7b)])               # after the payload
    ex = hw.exchange(hw.parse_trace(text))
    assert len(ex) == 14
    cut = hw.window(ex)
    assert cut == hw.exchange(EVENTS)
    assert hw.compare_exchange(cut, PREDICTED) is None
    assert hw.compare_exchange(ex, PREDICTED) is not None                   # uncut: the boot's requests differ
    with pytest.raises(HarnessError, match="no end mark after the start mark: no OUT of 0x6b766d65 to port 0xe0 on vcpu 0"):
        hw.window(ex[:-2])
    with pytest.raises(HarnessError, match="no start mark in the trace: no OUT of 0x6b766d73 to port 0xe0"):
        hw.window(hw.exchange(EVENTS))


def test_qemu_threads(tmp_path):
    for tid in ("4243", "4242", "4250"):
        (tmp_path / "4242" / "task" / tid).mkdir(parents=True)
    assert hw.qemu_threads(4242, proc=tmp_path) == [4242, 4243, 4250]
    with pytest.raises(HarnessError, match="4711/task: No such file or directory"):
        hw.qemu_threads(4711, proc=tmp_path)


# ---------------------------------------------------------------- the hardware cases' data path

def test_machine_argv_is_a_kvmconf_machine(images, tmp_path):
    argv = hw.machine_argv(argv_of(images), tmp_path / "s.log", tmp_path / "q.sock", 4022)
    assert "-nographic" not in argv and opt(argv, "-serial") == [f"file:{tmp_path / 's.log'}"]
    assert opt(argv, "-netdev") == ["user,id=net0,hostfwd=tcp:127.0.0.1:4022-:22"]
    assert "virtio-net-pci,netdev=net0,disable-legacy=on,iommu_platform=on" in opt(argv, "-device")
    assert any(a.startswith("sev-guest,") for a in opt(argv, "-object"))


def _hardware_trace(requests: list[dict], setup_value: int) -> str:
    """The trace an SEV-ES host records for one baseline script: the marks, the set-up
    OUT, then each request with KVM's reply (a write's kvm_pio for OUTs)."""
    body = []
    for r in requests:
        body += [vm(0, "enter", r["exit"], r["info1"], r["info2"], pid=4243), vm(0, "exit", r["exit"], pid=4243)]
    return "\n".join([vm(0, "enter", 0x72), vm(0, "exit", 0x72), *mark(0, hw.MARK_START, pid=4243),
                      *mark(0, setup_value, pid=4243), *body, *mark(0, hw.MARK_END, pid=4243)])


def _baseline_case(cid):
    import sys
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "testcases" / "sev_es"))
    from baseline_cases import CASES
    return next(c for c in CASES if c["id"] == cid)


def test_a_baseline_script_through_the_hardware_pipeline():
    from harness.payloads import sev_es_baseline as baseline
    from harness.payloads.sev_es_module import OPS
    lay = baseline.Layout(0x50000000, 0x51000000, 0x52000000, True, True, True, True,
                          {n: {"index": i, "bytes": b} for i, (n, (b, _)) in enumerate(OPS.items())},
                          0xFFFFC90000000000)
    case = _baseline_case("sev_es/baseline/ioio/rep-outsw")
    zeros = [{"regs": {r: 0 for r in baseline.model.GPRS}}] * len(case["triggers"])
    results, vmgexits = baseline.predict_sev_es(case, lay, zeros, "6.1")
    assert vmgexits and {e["exit"] for e in vmgexits} == {0x7B}
    assert baseline.lines(7, case, lay, (hw.MARK_START, hw.MARK_END))[-3:] == [
        baseline.lines(7, case, lay)[-2], "E", f"O v={hw.MARK_END:#x}"]
    text = _hardware_trace(vmgexits, case["port"])
    requests = hw.drop_setup_out(hw.window(hw.exchange(hw.parse_trace(text))), case["port"])
    assert hw.compare_exchange(requests, vmgexits) is None
    wrong = [dict(r) for r in vmgexits]
    wrong[0]["info1"] ^= 1 << 4                                  # the element size the guest announced
    requests = hw.drop_setup_out(hw.window(hw.exchange(hw.parse_trace(_hardware_trace(wrong, case["port"])))),
                                 case["port"])
    assert isinstance(hw.compare_exchange(requests, vmgexits), Divergence)
    with pytest.raises(HarnessError, match="does not begin with the set-up OUT of 0x1234"):
        hw.drop_setup_out(hw.window(hw.exchange(hw.parse_trace(text))), 0x1234)
