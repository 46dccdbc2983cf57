"""The feature registry: one row per feature, declared as data.

A row says everything the shared parts of kvmconf need to know about a feature,
the way kvm-unit-tests' unittests.cfg declares a test: the machine it runs in,
the modules and kernel config it needs, the kernel files and functions its model
cites (mutation scope), the capabilities it requires (with the kernels that must
have them and where the probe reads them), its model, payload codec, named cases
and random-script strategy, batch sizes and timeouts, and whether it needs
hardware this machine lacks.

Adding a feature is one row here plus the feature's own files. A feature that
has no row does not exist: `--features NAME` is a usage error naming the rows.
Out-of-tree features (a lab's own, or the project's test fixture) register
rows from Python files named in $KVMCONF_EXTRA_FEATURES (colon-separated), each
defining `FEATURE = Feature(...)`.
"""
from __future__ import annotations

import functools
import importlib
import importlib.util
import os
import re
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Callable

from harness.errors import UsageError

REPO = Path(__file__).resolve().parents[1]
EXTRA_ENV = "KVMCONF_EXTRA_FEATURES"


def kernel_version(text: str) -> tuple[int, int] | None:
    """(major, minor) of a kernel release string such as 6.1.0-28-amd64."""
    m = re.match(r"(\d+)\.(\d+)", text or "")
    return (int(m.group(1)), int(m.group(2))) if m else None


@dataclass(frozen=True)
class Requirement:
    """A capability some of a feature's cases need, and who must have it.

    `probe` is a dotted path into the feature's probe output (the payload's
    `--probe` JSON); `present(value)` says whether the capability is there.
    From kernel `since` on the capability is part of the feature: missing, it
    is the kernel's fault (FAIL) unless `config` names an option that may turn
    it off from `config_since` on (then a kernel without that option may lack
    it: SKIP). `device` marks a capability that depends on the hardware or a
    variant driver rather than on the kernel: missing, it is always a SKIP.
    `needed_by(script)` selects the op-scripts that need it (None: all).
    """
    name: str
    probe: str
    where: str
    since: tuple[int, int] = (0, 0)
    config: str | None = None
    config_since: tuple[int, int] | None = None
    device: str | None = None
    present: Callable[[object], bool] = lambda value: isinstance(value, int) and value > 0
    needed_by: Callable[[dict], bool] | None = None

    def must_have(self, version: tuple[int, int] | None, config: dict[str, str] | None) -> str | None:
        """Why the kernel under test must have it (None: it may legitimately lack it)."""
        if self.device or version is None or version < self.since:
            return None
        if self.config and self.config_since and version >= self.config_since:
            if config is None or config.get(self.config) != "y":
                return None
            return f"{self.config}=y"
        return f"every kernel since {self.since[0]}.{self.since[1]} has it"


@dataclass(frozen=True)
class HostNeed:
    """What a feature's cases need on a live host (--target local or ssh) that a kvmconf
    guest has by construction.

    Present when `path` exists on the target. `modules` (specs, alternatives split
    by "|") provide it; kvmconf loads them only with --allow-module-changes and
    unloads them afterwards. `user_device` marks the need for a device the user
    names (--vfio-device): kvmconf never picks a host device itself; `device_ids`
    (vendor:device) are the devices the feature's model describes.
    """
    name: str
    path: str | None = None
    modules: tuple[str, ...] = ()
    user_device: bool = False
    device_ids: tuple[str, ...] = ()


ALL_TARGETS = frozenset({"qemu", "local", "ssh"})


@dataclass(frozen=True)
class Feature:
    name: str
    title: str
    machine: frozenset[str]          # machine capabilities: nested, vfio
    modules: tuple[str, ...]         # module specs, alternatives split by "|"
    config: str | None               # fragment in harness/kernel/configs/ (or a path)
    kernel_files: tuple[str, ...]    # what the model cites: mutation scope
    model: str                       # module (dotted name or .py path): PROFILES, predict
    codec: str                       # module: normalise, encode, decode, locate, elf_checks
    cases: str                       # module: CASES (id, rationale, script)
    strategy: str                    # module: scripts(**env) -> hypothesis strategy
    payload: str                     # guests/<name>/ or a folder path
    requirements: tuple[Requirement, ...] = ()
    mutate_case_scope: str | None = None   # regex: the switch cases the feature covers
    batch: int = 50                  # op-scripts per payload invocation
    random_scripts: int = 300
    timeout_base_s: float = 30.0     # per payload invocation, plus per action:
    timeout_per_action_s: float = 0.1
    shrink_budget_s: float = 180.0
    probe_args: tuple[str, ...] | None = None   # payload argv that prints the probe JSON
    needs_hardware: str | None = None            # what this machine class lacks, if anything
    targets: frozenset[str] = ALL_TARGETS        # where its cases run (harness/targets)
    host_needs: tuple[HostNeed, ...] = ()        # what they need on a live host
    # Kernel reports this feature can cause, on a live host (regexes over a report's
    # lines: source paths, function prefixes); a report raised by its payload counts too.
    report_patterns: tuple[str, ...] = ()
    device_option: str | None = None             # payload option naming the user's device
    # What an op-script changes in the kernel beyond its own processes (a module
    # parameter), or None: on a live host such a script runs only with
    # --allow-module-changes.
    host_change: Callable[[dict], str | None] | None = None
    # Where its payload runs: "target" (the guest or the live host) or "harness" (this
    # machine: a program `builder` builds from the kernel under test's source, the
    # kernel's own code in user space; "module:function(tree) -> object with .path
    # and .kernel_files"). `user_space_files` are the kernel files it compiles: a
    # --patch may touch them although the kernel build does not compile them.
    runs_on: str = "target"
    builder: str | None = None
    user_space_files: tuple[str, ...] = ()
    # Case-id prefixes of a harness-side row's cases that still run in the target
    # guest (in a machine with `machine`): a run selecting one boots the kernel under
    # test; `kvmconf run --user-space-only` leaves them out.
    guest_cases: tuple[str, ...] = ()
    # Capabilities its cases may SKIP for, beyond its requirements' and host needs'
    # names and harness/missing.py's GENERAL ones (name: what it is).
    capabilities: tuple[tuple[str, str], ...] = ()
    origin: Path = REPO                          # folder relative names are resolved from

    # -- the feature's own modules -------------------------------------------
    def _load(self, spec: str) -> ModuleType:
        return _load_module(spec, str(self.origin), self.name)

    @property
    def model_module(self) -> ModuleType:
        return self._load(self.model)

    @property
    def codec_module(self) -> ModuleType:
        return self._load(self.codec)

    @property
    def strategy_module(self) -> ModuleType:
        return self._load(self.strategy)

    @property
    def named_cases(self) -> list[dict]:
        cases = self._load(self.cases).CASES
        for case in cases:
            if not case["id"].startswith(self.name + "/"):
                raise UsageError(f"feature {self.name}: case {case['id']!r} does not start with "
                                 f"'{self.name}/'")
        return cases

    @property
    def profiles(self) -> tuple[str, ...]:
        return tuple(self.model_module.PROFILES)

    @property
    def capability_names(self) -> set[str]:
        """The feature's own capability names (harness/missing.py)."""
        return ({name for name, _ in self.capabilities} | {r.name for r in self.requirements}
                | {n.name for n in self.host_needs})

    @property
    def payload_dir(self) -> Path:
        return (self.origin / self.payload).resolve()

    @property
    def config_fragment(self) -> Path | None:
        if self.config is None:
            return None
        path = Path(self.config)
        return path if path.is_absolute() else REPO / "harness" / "kernel" / "configs" / path

    @property
    def model_file(self) -> Path:
        return Path(self.model_module.__file__)

    def build_payload(self, tree: Path):
        """The harness-side payload built from `tree` (rows with a `builder`)."""
        module, _, function = self.builder.partition(":")
        return getattr(self._load(module), function)(tree)

    def cited_functions(self) -> set[str]:
        """Functions the model names as `name()` in its comments: the mutation scope."""
        return set(re.findall(r"\b([a-z_][a-z0-9_]*)\(\)", self.model_file.read_text()))


@functools.lru_cache(maxsize=None)
def _load_module(spec: str, origin: str, feature: str) -> ModuleType:
    if not spec.endswith(".py"):
        return importlib.import_module(spec)
    path = Path(spec) if Path(spec).is_absolute() else Path(origin) / spec
    name = f"kvmconf_feature_{feature}_{path.stem}"
    loader_spec = importlib.util.spec_from_file_location(name, path)
    if loader_spec is None or not path.is_file():
        raise UsageError(f"feature {feature}: no module {path}")
    module = importlib.util.module_from_spec(loader_spec)
    loader_spec.loader.exec_module(module)
    return module


_SEV_ES_FILES = ("arch/x86/kernel/sev.c", "arch/x86/kernel/sev-shared.c", "arch/x86/lib/insn.c",
                 "arch/x86/lib/inat.c", "arch/x86/lib/insn-eval.c")

# What pmusim compiles (harness/payloads/pebs_pt_build.py) and perf's PT packet decoder
# (ptdec, harness/payloads/pebs_pt_decoders.py): the kernel's code the suite runs.
_PEBS_PT_FILES = ("arch/x86/kvm/vmx/pmu_intel.c", "arch/x86/kvm/pmu.c", "arch/x86/kvm/cpuid.c",
                  "arch/x86/kvm/vmx/vmx.c", "arch/x86/kvm/x86.c",
                  "tools/perf/util/intel-pt-decoder/intel-pt-pkt-decoder.c")

_DEVICE_MIGRATION = ("a vfio-pci variant driver with migration support (mlx5_vfio_pci, "
                     "hisi_acc_vfio_pci) and its device")

ROWS = (
    Feature(
        name="syndbg", title="Hyper-V synthetic debugger in KVM",
        machine=frozenset({"nested"}), modules=("kvm-amd|kvm-intel",), config="syndbg.config",
        kernel_files=("arch/x86/kvm/hyperv.c",),
        model="harness.reference.syndbg", codec="harness.payloads.syndbg",
        cases="testcases/syndbg/syndbg_cases.py", strategy="testcases/syndbg/syndbg_gen.py",
        payload="guests/syndbg", probe_args=("--probe",),
        # hyperv.c's MSR, CPUID and hypercall dispatchers also serve SynIC, stimers
        # and TLB flushes: only the cases the model covers are mutated.
        mutate_case_scope=r"SYNDBG|DEBUG|GUEST_OS_ID|HYPERCALL|FEATURES|INTERFACE|VENDOR|"
                          r"HVCALL_POST|HVCALL_RETRIEVE|HVCALL_RESET|REFERENCE_TSC|TIME_REF_COUNT|"
                          r"CRASH|REENLIGHTENMENT|TSC_EMULATION|HV_X64_MSR_RESET|"
                          r"HVCALL_FLUSH_VIRTUAL_ADDRESS_SPACE|default",
        requirements=(
            # Hyper-V emulation became optional (CONFIG_KVM_HYPERV) in 6.8.
            Requirement("KVM_CAP_SYS_HYPERV_CPUID (191)", "caps.sys_hyperv_cpuid",
                        "KVM_CHECK_EXTENSION on /dev/kvm (syndbg --probe)",
                        since=(5, 11), config="CONFIG_KVM_HYPERV", config_since=(6, 8)),
            Requirement("KVM_CAP_HYPERV_ENFORCE_CPUID (199)", "caps.hyperv_enforce_cpuid",
                        "KVM_CHECK_EXTENSION on /dev/kvm (syndbg --probe)",
                        since=(5, 14), config="CONFIG_KVM_HYPERV", config_since=(6, 8),
                        needed_by=lambda s: any(v.get("enforce") for v in s.get("vcpus", []))),
            Requirement("KVM_X86_QUIRK_FIX_HYPERCALL_INSN in KVM_CAP_DISABLE_QUIRKS2 (213)",
                        "caps.disable_quirks2",
                        "KVM_CHECK_EXTENSION on /dev/kvm (syndbg --probe)",
                        since=(5, 19), present=lambda v: isinstance(v, int) and bool(v & 0x20),
                        needed_by=lambda s: s.get("quirk_fix") is False),
            Requirement("KVM_CAP_X86_USER_SPACE_MSR (188)", "caps.x86_user_space_msr",
                        "KVM_CHECK_EXTENSION on /dev/kvm (syndbg --probe)",
                        since=(5, 10), needed_by=lambda s: bool(s.get("user_msr"))),
        ),
        host_needs=(HostNeed("/dev/kvm", path="/dev/kvm", modules=("kvm-amd|kvm-intel",)),),
        report_patterns=(r"arch/x86/kvm/", r"\b(kvm|svm|vmx|nested_svm|nested_vmx)_\w+\+0x",
                         r"\[kvm(_amd|_intel)?\]$"),
        batch=100, timeout_base_s=30.0, timeout_per_action_s=0.1),
    Feature(
        name="vfio", title="VFIO type1 dirty page tracking",
        machine=frozenset({"vfio"}), modules=("vfio-pci", "vfio_iommu_type1"), config="vfio.config",
        kernel_files=("drivers/vfio/vfio_iommu_type1.c",),
        model="harness.reference.vfio", codec="harness.payloads.vfio",
        cases="testcases/vfio/vfio_cases.py", strategy="testcases/vfio/vfio_gen.py",
        payload="guests/vfio",
        requirements=(
            # No in-tree driver ever offered the v1 region; v2 needs a variant driver.
            Requirement("VFIO device migration (v1 region or v2 feature)", "migration",
                        "VFIO_DEVICE_GET_REGION_INFO / VFIO_DEVICE_FEATURE on the edu device "
                        "(vfio migprobe)", device=_DEVICE_MIGRATION),
        ),
        host_needs=(
            HostNeed("a VFIO device named with --vfio-device BDF", user_device=True,
                     # the model's machine facts (IOMMU page sizes, IOVA ranges, the edu
                     # DMA engine) are QEMU q35's intel-iommu and its edu device
                     device_ids=("1234:11e8",)),
            HostNeed("the vfio-pci driver", path="/sys/bus/pci/drivers/vfio-pci", modules=("vfio-pci",)),
            HostNeed("the VFIO type1 IOMMU", path="/sys/module/vfio_iommu_type1",
                     modules=("vfio_iommu_type1",)),
        ),
        report_patterns=(r"drivers/vfio/", r"drivers/iommu/", r"\b(vfio|iommu|intel_iommu|dmar|amd_iommu)_\w+\+0x",
                         r"\[vfio(_iommu_type1|_pci|_pci_core)?\]$", r"DMAR:|AMD-Vi:"),
        device_option="--bdf",
        host_change=lambda s: ("the vfio_iommu_type1 module parameter dma_entry_limit"
                               if s.get("dma_entry_limit", 0xFFFF) != 0xFFFF else None),
        # edu's DMA timer is 100 ms of guest time per transfer
        batch=40, timeout_base_s=60.0, timeout_per_action_s=0.5),
    Feature(
        name="sev_es", title="SEV-ES guest #VC handling and the GHCB protocol",
        # The kernel under test's own #VC code (sev.c with sev-shared.c, the instruction
        # decoder) compiled into vcsim, a user-space program, against a shim whose
        # hypervisor answers as the model's KVM (docs/sev-es-suite.md). Only the
        # baseline cases boot a guest: the triggers run natively on pc-testdev.
        machine=frozenset({"testdev"}), modules=(), config=None, guest_cases=("sev_es/baseline/",),
        kernel_files=_SEV_ES_FILES, user_space_files=_SEV_ES_FILES,
        model="harness.reference.sev_es", codec="harness.payloads.sev_es",
        cases="testcases/sev_es/sev_es_cases.py", strategy="testcases/sev_es/sev_es_gen.py",
        payload="guests/sev_es", runs_on="harness", builder="harness.payloads.sev_es_build:build_vcsim",
        needs_hardware="the sev_es/hardware cases: an AMD EPYC 7002+ host with SEV-ES enabled in KVM "
                       "(kvm_amd sev_es=Y, /dev/sev) and OVMF",
        # harness/sev_es_hw.py missing(), harness/payloads/sev_es_baseline.py
        capabilities=(("SEV", "CPUID 0x8000001F EAX bit 1"), ("SEV-ES", "CPUID 0x8000001F EAX bit 3"),
                      ("C-bit position", "CPUID 0x8000001F EBX[5:0], read through /dev/cpu/0/cpuid"),
                      ("kvm_amd", "the kvm_amd module loaded"),
                      ("SEV in KVM", "kvm_amd sev=Y"), ("SEV-ES in KVM", "kvm_amd sev_es=Y"),
                      ("SEV firmware", "/dev/sev (ccp driver, PSP firmware)"),
                      ("OVMF", "OVMF code for an SEV-ES guest"), ("OVMF vars", "OVMF vars next to its code"),
                      ("kvmconf_vc module", "the baseline's CPL0 trigger module, loaded and working"),
                      ("I/O ports", "ioperm() on pc-testdev's ports"),
                      ("pc-testdev iomem", "a mapping of pc-testdev's iomem at 0xff000000")),
        batch=100, timeout_base_s=30.0, timeout_per_action_s=0.05),
    Feature(
        name="pebs_pt", title="PEBS via Intel PT: PT packet decoding and KVM's PMU MSR rules",
        # The kernel under test's KVM Intel PMU MSR code compiled into pmusim, a user-space
        # program, against a shim (docs/pebs-pt-suite.md); its perf PT decoder into ptdec
        # for the decoder differential. Only the feature-absent cases boot a guest: they
        # run KVM there (kvm-amd under nested SVM here).
        machine=frozenset({"nested"}), modules=(), config=None,
        guest_cases=("pebs_pt/absent/", "pebs_pt/hardware/"),
        # harness/pebs_pt_hw.py missing(), testcases/pebs_pt/
        capabilities=(("Intel CPU", "a GenuineIntel CPU (CPUID leaf 0)"), ("Intel PT", "CPUID.7:EBX[25]"),
                      ("PDCM", "CPUID.1:ECX[15]"), ("IA32_PERF_CAPABILITIES", "the MSR read through /dev/cpu/0/msr"),
                      ("PEBS", "a PEBS format in IA32_PERF_CAPABILITIES"),
                      ("PEBS output to PT", "IA32_PERF_CAPABILITIES bit 16"),
                      ("kvm_intel", "the kvm_intel module loaded"),
                      ("PT in KVM guests", "kvm_intel pt_mode=1"),
                      ("PEBS output to PT in KVM", "bit 16 of KVM's feature MSR PERF_CAPABILITIES"),
                      ("KVM_CAP_GET_MSR_FEATURES", "KVM's feature MSRs (KVM_CHECK_EXTENSION)"),
                      ("perf test vector", "a vector of the kernel's perf PT decoder tests")),
        kernel_files=_PEBS_PT_FILES, user_space_files=_PEBS_PT_FILES,
        model="harness.reference.pebs_pt", codec="harness.payloads.pebs_pt",
        cases="testcases/pebs_pt/pebs_pt_cases.py", strategy="testcases/pebs_pt/pebs_pt_gen.py",
        payload="guests/pebs_pt", runs_on="harness", builder="harness.payloads.pebs_pt_build:build_pmusim",
        needs_hardware="the pebs_pt/hardware cases: an Intel host with PEBS output to PT "
                       "(IA32_PERF_CAPABILITIES bit 16), Intel PT, kvm_intel pt_mode=1 and a KVM "
                       "that offers it to guests",
        host_needs=(HostNeed("/dev/kvm", path="/dev/kvm", modules=("kvm-amd|kvm-intel",)),),
        batch=100, timeout_base_s=30.0, timeout_per_action_s=0.05),
)


def _extra_rows() -> tuple[Feature, ...]:
    rows = []
    for item in filter(None, os.environ.get(EXTRA_ENV, "").split(":")):
        path = Path(item).resolve()
        module = _load_module(str(path), str(path.parent), "extra_" + path.stem)
        row = getattr(module, "FEATURE", None)
        if not isinstance(row, Feature):
            raise UsageError(f"{EXTRA_ENV}: {item} defines no FEATURE = Feature(...)")
        rows.append(row)
    return tuple(rows)


def rows() -> tuple[Feature, ...]:
    found = ROWS + _extra_rows()
    names = [f.name for f in found]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup:
        raise UsageError(f"feature {dup!r} is registered twice")
    return found


def user_space_files() -> frozenset[str]:
    """Kernel files some feature compiles into a user-space program (not the kernel build)."""
    return frozenset(f for row in rows() for f in row.user_space_files)


def names() -> tuple[str, ...]:
    return tuple(f.name for f in rows())


def get(name: str) -> Feature:
    for row in rows():
        if row.name == name:
            return row
    raise UsageError(f"unknown feature {name!r} (known: {', '.join(names())})")


def parse(text: str, option: str = "--features") -> list[str]:
    """A comma list of registered feature names; a one-line error names the first unknown."""
    chosen = [n.strip() for n in text.split(",") if n.strip()]
    if not chosen:
        raise UsageError(f"{option} {text!r}: no feature named")
    for name in chosen:
        if name not in names():
            raise UsageError(f"{option} {text}: unknown feature {name!r} (known: {', '.join(names())})")
    return chosen
