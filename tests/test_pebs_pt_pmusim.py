"""pmusim: the kernel's own KVM Intel PMU MSR code (the default tree's
arch/x86/kvm/vmx/pmu_intel.c, pmu.c, vmx.c, x86.c, cpuid.c) run against the
shim host, driven by op-scripts in the line format of docs/pebs-pt-suite.md
section 2. Each expected answer is read from the Linux 6.1 source (the
function named in the test)."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.payloads import pebs_pt_build

PERF_CAPABILITIES, PEBS_ENABLE, PEBS_DATA_CFG, DS_AREA = 0x345, 0x3F1, 0x3F2, 0x600
RELOAD_PMC0, RELOAD_FIXED_CTR0 = 0x14C1, 0x1309
RTIT_CTL, RTIT_STATUS = 0x570, 0x571
PEBS_OUTPUT_PT = 1 << 61
FW_WRITES = 1 << 13
PT_IDX = 1 << 16
# an Ice Lake server's IA32_PERF_CAPABILITIES: LBR format 5, PEBS trap, arch regs,
# record format 4, full-width writes, baseline, PEBS output to PT (bit 16)
ICX_CAPS = 0x5 | 0x40 | 0x80 | (4 << 8) | FW_WRITES | (1 << 14) | PT_IDX
HOST = f"host_perf_caps={ICX_CAPS:#x} host_pebs=1 host_pt=1 host_pebs_output_pt=1"


@pytest.fixture(scope="module")
def tree():
    from harness.kernel import build
    tree, _digest = build.pristine_tree(build.DEFAULT_SOURCE)
    return Path(tree)


@pytest.fixture(scope="module")
def pmusim(tree):
    return pebs_pt_build.build_pmusim(tree)


def run_raw(pmusim, text: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(pmusim.path)], input=text, capture_output=True, text=True,
                          timeout=60)


def run(pmusim, text: str) -> list[dict]:
    done = run_raw(pmusim, text)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def script(head: str, *actions: tuple, index: int = 0) -> str:
    lines = [f"S {index:#x} vendor=intel pmu_version=0x2 gp=0x4 fixed=0x3 {head}".rstrip()]
    for a in actions:
        op, msr, *value = a
        lines.append(f"A op={op} msr={msr:#x}" + (f" value={value[0]:#x}" if value else ""))
    return "\n".join([*lines, "E"]) + "\n"


def results(pmusim, head: str, *actions: tuple) -> list[tuple[str, int | None]]:
    ev = run(pmusim, script(head, *actions))
    assert ev[-1] == {"script": 0, "op": "done"}
    res = [e for e in ev if e["op"] == "result"]
    assert [e["step"] for e in res] == list(range(len(actions)))
    assert all(e["script"] == 0 for e in res)
    return [(e["result"], e["value"]) for e in res]


# ------------------------------------------------------------- the build

def test_build_names_every_kernel_file_and_is_cached(pmusim, tree):
    for rel in ("arch/x86/kvm/vmx/pmu_intel.c", "arch/x86/kvm/vmx/vmx.c", "arch/x86/kvm/x86.c",
                "arch/x86/kvm/pmu.c", "arch/x86/kvm/cpuid.c", "arch/x86/kvm/pmu.h",
                "arch/x86/kvm/vmx/capabilities.h", "arch/x86/events/intel/pt.c", "headers"):
        assert len(pmusim.kernel_files[rel]) == 64, rel
    assert pmusim.path.is_file()
    again = pebs_pt_build.build_pmusim(tree)
    assert again.path == pmusim.path and again.kernel_files == pmusim.kernel_files


def test_broken_tree_is_one_line_harness_error(tmp_path, tree):
    # a view of the tree whose pmu_intel.c does not compile
    view = tmp_path / "tree"
    for top in tree.iterdir():
        if top.name != "arch":
            (view / top.name).parent.mkdir(parents=True, exist_ok=True)
            (view / top.name).symlink_to(top)
    (view / "arch").mkdir()
    for a in (tree / "arch").iterdir():
        if a.name != "x86":
            (view / "arch" / a.name).symlink_to(a)
    (view / "arch/x86").mkdir()
    for a in (tree / "arch/x86").iterdir():
        if a.name != "kvm":
            (view / "arch/x86" / a.name).symlink_to(a)
    shutil.copytree(tree / "arch/x86/kvm", view / "arch/x86/kvm", symlinks=True)
    bad = view / "arch/x86/kvm/vmx/pmu_intel.c"
    bad.write_text(bad.read_text().replace("static bool intel_is_valid_msr(",
                                           "static bool intel_is_valid_msr(@@", 1))
    with pytest.raises(HarnessError) as err:
        pebs_pt_build.build_pmusim(view)
    msg = str(err.value)
    assert "\n" not in msg and "gcc failed" in msg and "pmu_intel.c" in msg


def test_no_privileged_instruction_left(pmusim):
    # the kernel objects are checked whole before linking; in the binary only the C
    # library's own hlt (abort, _exit, ...) is left
    bad = pebs_pt_build.check_binary(pmusim.path)
    assert all(b.endswith("hlt") for b in bad), bad


# ------------------------------------------- PERF_CAPABILITIES and PDCM

def test_guest_rdmsr_perf_capabilities_without_pdcm_faults(pmusim):
    # x86.c kvm_get_msr_common: !host_initiated && !guest_cpuid_has(PDCM) -> 1
    assert results(pmusim, f"pdcm=0 pt=0 {HOST}", ("guest_rdmsr", PERF_CAPABILITIES)) == [
        ("fault", None)]


def test_perf_capabilities_kvm_supports_on_61(pmusim):
    # vmx.c vmx_get_perf_capabilities: FW_WRITES; the host's LBR format with an LBR
    # stack (pmusim's default host_lbr=32) and no arch LBR; PEBS_MASK bits of the host
    # when vmx_pebs_supported(), minus PERF_CAP_PEBS_BASELINE; bit 16 (PEBS output to
    # PT) is not in PERF_CAP_PEBS_MASK
    expect = FW_WRITES | 0x40 | 0x80 | (4 << 8)
    acts = [("feature_get", PERF_CAPABILITIES), ("guest_rdmsr", PERF_CAPABILITIES),
            ("host_get", PERF_CAPABILITIES)]
    assert results(pmusim, f"pdcm=1 pt=1 {HOST}", *acts) == [("ok", expect | 0x5)] * 3
    assert results(pmusim, f"pdcm=1 pt=1 {HOST} host_lbr=0", *acts) == [("ok", expect)] * 3
    assert results(pmusim, f"pdcm=1 pt=1 {HOST} host_arch_lbr=1", *acts) == [("ok", expect)] * 3
    # without PEBS in the host (vmx_pebs_supported false): FW_WRITES and LBR only
    assert results(pmusim, f"pdcm=1 {HOST} host_pebs=0", acts[0]) == [("ok", FW_WRITES | 0x5)]
    assert not expect & PT_IDX


def test_guest_reads_what_user_space_set(pmusim):
    # x86.c kvm_set_msr_common (host_initiated, data within kvm_get_msr_feature) stores
    # vcpu->arch.perf_capabilities; kvm_get_msr_common returns it with PDCM
    got = results(pmusim, f"pdcm=1 {HOST}", ("host_set", PERF_CAPABILITIES, FW_WRITES),
                  ("guest_rdmsr", PERF_CAPABILITIES), ("host_get", PERF_CAPABILITIES))
    assert got == [("ok", None), ("ok", FW_WRITES), ("ok", FW_WRITES)]


def test_host_set_unsupported_bit_is_refused(pmusim):
    # bit 16 is in the host's caps but not in kvm_caps.supported_perf_cap:
    # kvm_set_msr_common `data & ~msr_ent.data` -> 1
    got = results(pmusim, f"pdcm=1 pt=1 {HOST}",
                  ("host_set", PERF_CAPABILITIES, FW_WRITES | PT_IDX),
                  ("guest_rdmsr", PERF_CAPABILITIES))
    assert got[0] == ("refused", None)
    assert got[1][0] == "ok" and not got[1][1] & PT_IDX


def test_guest_wrmsr_perf_capabilities_faults(pmusim):
    # x86.c kvm_set_msr_common: PERF_CAPABILITIES !host_initiated -> 1
    assert results(pmusim, f"pdcm=1 {HOST}", ("guest_wrmsr", PERF_CAPABILITIES, FW_WRITES)) == [
        ("fault", None)]


def test_pebs_format_needs_ds_and_dtes64(pmusim):
    # vmx.c vmx_set_msr PERF_CAPABILITIES: a PEBS format needs guest DS and DTES64
    caps = FW_WRITES | 0x40 | 0x80 | (4 << 8)
    assert results(pmusim, f"pdcm=1 {HOST}", ("host_set", PERF_CAPABILITIES, caps)) == [
        ("refused", None)]
    assert results(pmusim, f"pdcm=1 ds=1 dtes64=1 {HOST}",
                   ("host_set", PERF_CAPABILITIES, caps)) == [("ok", None)]


def test_perf_capabilities_with_pmu_version_0_is_refused(pmusim):
    # vmx.c vmx_set_msr: `data && !vcpu_to_pmu(vcpu)->version` -> 1
    assert results(pmusim, f"pdcm=1 {HOST} pmu_version=0x0",
                   ("host_set", PERF_CAPABILITIES, FW_WRITES),
                   ("host_set", PERF_CAPABILITIES, 0)) == [("refused", None), ("ok", None)]


# ------------------------------------------------------ PEBS_ENABLE on 6.1

def test_pebs_enable_output_pt_bit_faults(pmusim):
    # pmu_intel.c intel_pmu_refresh without PERF_CAP_PEBS_BASELINE (masked by
    # vmx_get_perf_capabilities): pebs_enable_mask = ~((1 << gp) - 1), so bit 61 is
    # reserved; intel_pmu_set_msr -> 1. GP counter bits are accepted.
    got = results(pmusim, f"pdcm=1 pt=1 {HOST}",
                  ("guest_rdmsr", PEBS_ENABLE),
                  ("guest_wrmsr", PEBS_ENABLE, PEBS_OUTPUT_PT),
                  ("guest_wrmsr", PEBS_ENABLE, PEBS_OUTPUT_PT | 1),
                  ("guest_wrmsr", PEBS_ENABLE, 0xf),
                  ("guest_rdmsr", PEBS_ENABLE),
                  ("guest_wrmsr", PEBS_ENABLE, 0x10),
                  ("host_set", PEBS_ENABLE, PEBS_OUTPUT_PT))
    assert got == [("ok", 0), ("fault", None), ("fault", None), ("ok", None), ("ok", 0xf),
                   ("fault", None), ("refused", None)]


def test_pebs_msrs_absent_without_pdcm(pmusim):
    # intel_is_valid_msr: PEBS_ENABLE needs a PEBS format in vcpu_get_perf_capabilities,
    # which is 0 without PDCM; PEBS_DATA_CFG needs baseline (never on 6.1)
    got = results(pmusim, f"pdcm=0 {HOST}", ("guest_rdmsr", PEBS_ENABLE),
                  ("guest_wrmsr", PEBS_ENABLE, PEBS_OUTPUT_PT), ("guest_rdmsr", PEBS_DATA_CFG))
    assert got == [("fault", None)] * 3
    assert results(pmusim, f"pdcm=1 {HOST}", ("guest_rdmsr", PEBS_DATA_CFG)) == [("fault", None)]


# --------------------------------------------------------- reload MSRs, PT

def test_reload_msrs_fault(pmusim):
    # no 6.1 code knows MSR_RELOAD_PMC0/MSR_RELOAD_FIXED_CTR0: kvm_get_msr_common's
    # default -> KVM_MSR_RET_INVALID
    acts = [("guest_rdmsr", RELOAD_PMC0), ("guest_rdmsr", RELOAD_PMC0 + 7),
            ("guest_wrmsr", RELOAD_PMC0, 1), ("guest_rdmsr", RELOAD_FIXED_CTR0 + 3),
            ("host_get", RELOAD_PMC0), ("feature_get", RELOAD_PMC0)]
    got = results(pmusim, f"pdcm=1 pt=1 {HOST}", *acts)
    assert got == [("fault", None)] * 4 + [("refused", None)] * 2


def test_rtit_ctl_without_pt_in_cpuid_faults(pmusim):
    # vmx.c vmx_get_msr/vmx_set_msr MSR_IA32_RTIT_*: !vmx_pt_mode_is_host_guest() -> 1
    # (kvm_intel's default pt_mode is PT_MODE_SYSTEM), and without PT in the guest's
    # CPUID even with pt_mode=1 (update_intel_pt_cfg leaves no capabilities)
    acts = [("guest_rdmsr", RTIT_CTL), ("guest_wrmsr", RTIT_CTL, 1), ("guest_rdmsr", RTIT_STATUS)]
    assert results(pmusim, f"pdcm=1 pt=0 {HOST}", *acts) == [("fault", None)] * 3
    assert results(pmusim, f"pdcm=1 pt=1 {HOST}", *acts) == [("fault", None)] * 3  # pt_mode 0
    got = results(pmusim, f"pdcm=1 pt=0 {HOST} pt_mode=1", *acts)
    assert got[1] == ("fault", None)


def test_rtit_ctl_with_pt_mode_host_guest(pmusim):
    # pt_mode=1 is kept when the host can give PT to a guest (hardware_setup); then
    # vmx_get_msr returns pt_desc.guest.ctl and vmx_set_msr checks vmx_rtit_ctl_check
    acts = [("guest_rdmsr", RTIT_CTL), ("guest_wrmsr", RTIT_CTL, 0x2001),
            ("guest_rdmsr", RTIT_CTL)]
    assert results(pmusim, f"pdcm=1 pt=1 {HOST} pt_mode=1", *acts) == [
        ("ok", 0), ("ok", None), ("ok", 0x2001)]
    assert results(pmusim, f"pdcm=1 pt=1 {HOST.replace('host_pt=1', 'host_pt=0')} pt_mode=1",
                   *acts[:1]) == [("fault", None)]


# ----------------------------------------------------------- the program

def test_scripts_are_independent(pmusim):
    text = (script(f"pdcm=1 {HOST}", ("host_set", PERF_CAPABILITIES, 0),
                   ("guest_rdmsr", PERF_CAPABILITIES), index=0)
            + script(f"pdcm=1 {HOST}", ("guest_rdmsr", PERF_CAPABILITIES), index=1))
    ev = run(pmusim, text)
    res = [(e["script"], e["step"], e["value"]) for e in ev if e["op"] == "result"]
    assert res == [(0, 0, None), (0, 1, 0), (1, 0, FW_WRITES | 0x40 | 0x80 | (4 << 8) | 0x5)]
    assert [e for e in ev if e["op"] == "done"] == [{"script": 0, "op": "done"},
                                                     {"script": 1, "op": "done"}]


@pytest.mark.parametrize("text", [
    "A op=guest_rdmsr msr=0x345\n",
    "S 0x0 bogus=1\nE\n",
    "S 0x0\nA op=fly msr=0x345\nE\n",
    "S 0x0\nA op=guest_wrmsr msr=0x3f1\nE\n",
    "S 0x0\nA op=guest_rdmsr msr=0x345\n",
    "S 0x0 vendor=amd\nA op=guest_rdmsr msr=0x345\nE\n",
])
def test_malformed_input_exit_2(pmusim, text):
    done = run_raw(pmusim, text)
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and done.stderr.startswith("pmusim: ")


def test_uncompiled_kernel_function_is_exit_3_naming_it(pmusim):
    # TSC_DEADLINE: kvm_get_msr_common -> kvm_get_lapic_tscdeadline_msr (lapic.c, not
    # compiled): the generated trap names it; the earlier steps' events are kept
    done = run_raw(pmusim, script("pdcm=1", ("guest_rdmsr", PEBS_ENABLE), ("guest_rdmsr", 0x6E0)))
    assert done.returncode == 3
    assert "step 1" in done.stderr and "kvm_get_lapic_tscdeadline_msr()" in done.stderr
    assert [json.loads(ln)["step"] for ln in done.stdout.splitlines()] == [0]


def test_lbr_format_and_lbr_msrs(pmusim):
    # vmx_set_msr PERF_CAPABILITIES: an LBR format must equal KVM's and needs
    # cpuid_model_is_consistent(); with it intel_pmu_refresh takes the host's LBR
    # stack and intel_pmu_handle_lbr_msrs_access reads 0 when perf refuses the
    # guest LBR event (pmusim's host perf refuses every event)
    got = results(pmusim, f"pdcm=1 {HOST}",
                  ("host_set", PERF_CAPABILITIES, FW_WRITES | 0x4),
                  ("host_set", PERF_CAPABILITIES, FW_WRITES | 0x5),
                  ("guest_rdmsr", 0x680), ("guest_rdmsr", 0x680 + 31), ("guest_rdmsr", 0x680 + 32),
                  ("host_set", PERF_CAPABILITIES, FW_WRITES),
                  ("guest_rdmsr", 0x680))
    assert got == [("refused", None), ("ok", None), ("ok", 0), ("ok", 0), ("fault", None),
                   ("ok", None), ("fault", None)]
    assert results(pmusim, f"pdcm=1 {HOST} host_model=0x6a guest_model=0x55",
                   ("host_set", PERF_CAPABILITIES, FW_WRITES | 0x5)) == [("refused", None)]


def test_p6_evntsel_without_pmu_is_ignored_with_a_message(pmusim):
    # x86.c kvm_set_msr_common MSR_P6_EVNTSEL0: not a valid PMU MSR (version 0) ->
    # kvm_pr_unimpl_wrmsr (a ratelimited printk through current) and success
    done = run_raw(pmusim, script("pdcm=1 pmu_version=0x0", ("guest_wrmsr", 0x186, 1),
                                  ("guest_rdmsr", 0x186)))
    assert done.returncode == 0, done.stderr
    assert [json.loads(ln).get("result") for ln in done.stdout.splitlines()] == ["ok", "ok", None]
    assert "Unhandled WRMSR" in done.stderr


def test_rtit_output_base_checks_the_guest_maxphyaddr(pmusim):
    # vmx_set_msr RTIT_OUTPUT_BASE: kvm_vcpu_is_illegal_gpa with 36 bits (no leaf
    # 0x80000008: cpuid_query_maxphyaddr)
    got = results(pmusim, f"pdcm=1 pt=1 {HOST} pt_mode=1", ("guest_wrmsr", 0x560, 1 << 36),
                  ("guest_wrmsr", 0x560, 1 << 20), ("guest_rdmsr", 0x560))
    assert got == [("fault", None), ("ok", None), ("ok", 1 << 20)]
