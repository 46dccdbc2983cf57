"""A live host as the target: this machine (--target local) or an existing machine
over SSH (--target ssh://...). The kernel under test is the one running there.

Safety: kvmconf changes nothing on such a host beyond a private temporary folder
for its payloads, unless the user allows it: modules are loaded (and unloaded
afterwards) only with --allow-module-changes, a device is bound to vfio-pci (and
given back to its driver afterwards) only when named with --vfio-device. When the
run ends, `close` undoes all of it and checks that nothing was left behind.
"""
from __future__ import annotations

import base64
import contextlib
import gzip
import json
import os
from dataclasses import dataclass
from pathlib import Path

import paramiko

from harness import features
from harness.errors import HarnessError, UsageError
from harness.kernel import RunningKernel
from harness.machine import kernel_log
from harness.missing import Lack
from harness.payloads import build as payload_build
from harness.probe import guest_capabilities
from harness.remote import Remote
from harness.targets import TargetSpec
from harness.targets.host import PayloadHost
from harness.targets.local_shell import LocalShell

# Taint bits only a module load sets (P, C, O, E, K): on a live host that is the
# host's own activity (kvmconf loads no module during a case), not a feature's.
MODULE_LOAD_TAINTS = (1 << 0) | (1 << 10) | (1 << 12) | (1 << 13) | (1 << 15)
KNOWN_HOSTS = ("~/.ssh/known_hosts", "/etc/ssh/ssh_known_hosts")
# `sh -c` programs; their inputs arrive as "$1"... (never spliced into the string)
_WRITE = 'printf "%s\\n" "$1" > "$2"'
_DEVICE_FACTS = ('d=/sys/bus/pci/devices/$1; [ -d "$d" ] || exit 3; '
                 'echo "id=$(cat $d/vendor):$(cat $d/device)"; '
                 'echo "driver=$(basename "$(readlink $d/driver)" 2>/dev/null)"; '
                 'echo "override=$(cat $d/driver_override 2>/dev/null)"; '
                 'for o in $d/iommu_group/devices/*; do [ "${o##*/}" = "$1" ] && continue; '
                 'echo "peer=${o##*/} $(basename "$(readlink $o/driver)" 2>/dev/null)"; done')


@dataclass
class LiveOptions:
    spec: TargetSpec
    features: list[str]          # the features whose cases may run
    payload_names: list[str]     # "probe" and those features
    evidence_dir: Path
    ssh_key: str | None = None
    host_key: str | None = None
    vfio_device: str | None = None
    allow_module_changes: bool = False


def parse_host_key(value: str) -> paramiko.PKey:
    """--host-key: an OpenSSH public key line (TYPE BASE64 [comment]), a known_hosts
    line (HOSTS TYPE BASE64), or a file holding one."""
    # errors="replace": a file that is not UTF-8 is a bad key, not a traceback (issue 14)
    text = Path(value).read_text(errors="replace") if Path(value).is_file() else value
    for line in text.splitlines():
        words = line.split()
        for i, word in enumerate(words[:-1]):
            if word.startswith(("ssh-", "ecdsa-sha2-")):
                try:
                    return paramiko.PKey.from_type_string(word, base64.b64decode(words[i + 1]))
                except Exception:   # paramiko raises several kinds for a bad blob
                    break
    raise UsageError(f"--host-key {value}: not an OpenSSH public key (TYPE BASE64) nor a file holding one")


def _channel(options: LiveOptions):
    spec = options.spec
    if spec.kind == "local":
        if os.geteuid() != 0:
            raise UsageError("--target local: payloads run as root; run kvmconf as root")
        return LocalShell()
    if options.ssh_key and not Path(options.ssh_key).is_file():
        raise UsageError(f"--ssh-key {options.ssh_key}: no such file")
    pinned = parse_host_key(options.host_key) if options.host_key else None
    known = [str(Path(p).expanduser()) for p in KNOWN_HOSTS if Path(p).expanduser().is_file()]
    remote = Remote(spec.port, None, pinned, host=spec.host, user=spec.user, key_file=options.ssh_key,
                    known_hosts=[] if pinned else known, host_key_source="--host-key")
    remote.connect(timeout=15)
    return remote


class LiveHost(PayloadHost):
    def __init__(self, options: LiveOptions, remote):
        super().__init__(options.spec.kind, remote, "", {}, options.evidence_dir)
        self.options, self.kind, self.where = options, options.spec.kind, options.spec.where
        self.scratch = ""            # the private folder of this run's payloads and files
        self.kernel: RunningKernel | None = None
        self._modules_before: list[str] = []
        self._loaded: list[str] = []           # module names kvmconf loaded
        self._device: dict | None = None       # the --vfio-device facts before kvmconf bound it
        self._missing: dict[str, str] = {}     # feature -> why its cases cannot run here
        self._kmsg_next = 0
        self._cleanup: dict | None = None      # what close() found

    # -- opening -------------------------------------------------------------
    @classmethod
    def open(cls, options: LiveOptions, progress=lambda text: None) -> "LiveHost":
        """Connect, copy the payloads, read the kernel and the capabilities, meet the
        features' needs as far as the user allowed; everything is undone by close()."""
        host = cls(options, _channel(options))
        try:
            host._setup(progress)
        except BaseException:
            # undo what was done; a failing undo must not hide why the setup failed
            with contextlib.suppress(Exception):
                host.close()
            raise
        return host

    def _sh(self, script: str, *args: str, timeout: float = 30.0):
        return self.remote.run(["sh", "-c", script, "sh", *args], timeout=timeout)

    def _setup(self, progress) -> None:
        arch = self._sh("uname -m").text.strip()
        if arch != "x86_64":
            raise HarnessError(f"target {self.where}: machine {arch!r}: the payloads are x86-64 programs")
        made = self._sh("umask 077; mktemp -d /tmp/kvmconf-target.XXXXXXXX")
        if made.rc != 0 or not made.text.strip().startswith("/tmp/kvmconf-target."):
            raise HarnessError(f"target {self.where}: mktemp -d failed: {made.stderr.decode(errors='replace')[-200:]}")
        self.scratch = self.payload_dir = made.text.strip()
        progress(f"target {self.where}: payloads in {self.scratch}")
        paths, self.payload_errors = payload_build.build_all(self.options.payload_names)
        for name, path in paths.items():
            # the mode in the same SFTP session: no extra command channel per payload
            self.remote.upload(str(path), f"{self.scratch}/{name}", mode=0o700)
        self.kernel = self._running_kernel()
        self.capabilities = guest_capabilities(self.run, self.payload("probe"))
        self.baseline_taint = int(self.capabilities.get("tainted", "0") or 0)
        self._modules_before = self._modules()
        for name in self.options.features:
            reason = self._meet_needs(features.get(name))
            if reason:
                self._missing[name] = reason
        self._kmsg_next = self._kmsg()[1]

    def _running_kernel(self) -> RunningKernel:
        version = self._sh("uname -r").text.strip()
        proc_version = self._sh("cat /proc/version").text.strip()
        packed = self.remote.run(["cat", "/proc/config.gz"], timeout=30)
        if packed.rc == 0 and packed.stdout:
            try:
                return RunningKernel(version, proc_version, gzip.decompress(packed.stdout).decode(errors="replace"),
                                     "/proc/config.gz")
            except (OSError, EOFError):
                pass
        boot = f"/boot/config-{version}"
        plain = self.remote.run(["cat", boot], timeout=30)
        if plain.rc == 0 and plain.stdout:
            return RunningKernel(version, proc_version, plain.text, boot)
        return RunningKernel(version, proc_version)

    def _modules(self) -> list[str]:
        return [line.split()[0] for line in self._sh("cat /proc/modules 2>/dev/null; true").text.splitlines()
                if line.strip()]

    # -- the features' needs -------------------------------------------------
    def _exists(self, path: str) -> bool:
        return self._sh('test -e "$1"', path).rc == 0

    def _meet_needs(self, row: features.Feature) -> str | None:
        """Why `row`'s cases cannot run here (None: they can), after loading its
        modules and binding the user's device where the user allowed it."""
        for need in row.host_needs:
            if need.user_device:
                reason = self._use_device(row, need)
            elif need.path and not self._exists(need.path):
                reason = self._load_modules(need)
            else:
                reason = None
            if reason:
                return Lack(need.name, f"{reason}, on target {self.where}")
        return None

    def _load_modules(self, need) -> str | None:
        absent = f"{need.name} missing ({need.path} absent)"
        if not need.modules:
            return absent
        specs = " ".join(need.modules)
        if not self.options.allow_module_changes:
            return f"{absent}; module {specs} not loaded, and kvmconf loads none without --allow-module-changes"
        for spec in need.modules:
            for name in spec.split("|"):
                if self._sh('modprobe -- "$1"', name, timeout=120).rc == 0:
                    self._loaded.append(name)
                    break
        return None if self._exists(need.path) else f"{absent} even after modprobe {specs}"

    def _device_facts(self, bdf: str) -> dict:
        res = self._sh(_DEVICE_FACTS, bdf)
        if res.rc == 3:
            raise UsageError(f"--vfio-device {bdf}: no such PCI device on target {self.where} "
                             f"(/sys/bus/pci/devices/{bdf})")
        facts: dict = {"peers": {}}
        for line in res.text.splitlines():
            key, _, value = line.partition("=")
            if key == "peer":
                peer, _, driver = value.partition(" ")
                facts["peers"][peer] = driver
            else:
                facts[key] = value
        return facts

    def _use_device(self, row: features.Feature, need) -> str | None:
        bdf = self.options.vfio_device
        if not bdf:
            return f"{need.name}: none given (kvmconf binds no host device unless the user names it)"
        facts = self._device_facts(bdf)
        if need.device_ids and facts["id"].replace("0x", "") not in need.device_ids:
            return (f"the {row.name} model describes the device {', '.join(need.device_ids)} (QEMU's edu "
                    f"behind q35's intel-iommu); --vfio-device {bdf} is {facts['id'].replace('0x', '')}")
        busy = {p: d for p, d in facts["peers"].items() if d not in ("", "vfio-pci", "pcieport")}
        if busy:
            return (f"IOMMU group of --vfio-device {bdf} is not viable: "
                    + ", ".join(f"{p} is bound to {d}" for p, d in busy.items()))
        if facts["driver"] == "vfio-pci":
            return None
        if not self._exists("/sys/bus/pci/drivers/vfio-pci"):
            return None   # the vfio-pci need that follows names what is missing
        self._device = {"bdf": bdf, **facts}
        device = f"/sys/bus/pci/devices/{bdf}"
        if facts["driver"]:
            self._sh(_WRITE, bdf, f"{device}/driver/unbind")
        self._sh(_WRITE, "vfio-pci", f"{device}/driver_override")
        self._sh(_WRITE, bdf, "/sys/bus/pci/drivers_probe")
        now = self._device_facts(bdf)["driver"]
        return None if now == "vfio-pci" else f"--vfio-device {bdf} did not bind to vfio-pci (driver {now or 'none'})"

    # -- what the cases use --------------------------------------------------
    def check_usable(self) -> None:
        super().check_usable()
        if not self.remote.connected:
            raise HarnessError(f"target {self.where}: not connected")

    def missing(self, feature: str) -> str | None:
        return self._missing.get(feature)

    def payload_argv(self, feature: str) -> list[str]:
        row = features.get(feature)
        argv = [self.payload(feature)]
        if row.device_option and self.options.vfio_device:
            argv += [row.device_option, self.options.vfio_device]
        return argv

    def may_change_host(self) -> bool:
        return self.options.allow_module_changes

    def _kmsg(self) -> tuple[list[str], int]:
        """The kernel log records from self._kmsg_next on, and the next sequence number."""
        res = self.run([self.payload("probe"), "--kmsg-from", str(self._kmsg_next)], timeout=30)
        if res.rc != 0:
            raise HarnessError(f"target {self.where}: reading /dev/kmsg failed: "
                               f"{res.stderr.decode(errors='replace')[-200:]}")
        lines, following = [], self._kmsg_next
        for raw in res.text.splitlines():
            record = json.loads(raw)
            if "next" in record:
                following = record["next"]
            else:
                lines.append(record["text"])
        return lines, following

    def after_case(self, feature: str | None = None) -> tuple[list[str], bool]:
        """Reports logged since the last call that the case's feature can cause (its
        registry patterns, its payload's process), and taint bits gained; whether the
        host still answers. Other reports are kept as evidence and fail nothing."""
        if self.poisoned or not self.remote.connected:
            return [], False
        try:
            lines, self._kmsg_next = self._kmsg()
            rows = ([features.get(feature)] if feature in features.names()
                    else [features.get(f) for f in self.options.features])
            patterns = [p for row in rows for p in row.report_patterns]
            ours, others = kernel_log.feature_reports(lines, patterns, [row.name for row in rows])
            if others:
                with open(self.evidence_dir / f"{self.kind}.unrelated-kernel-reports.txt", "a") as log:
                    log.write("\n".join(others) + "\n")
            return ours + self.taint_gained(ignore=MODULE_LOAD_TAINTS), True
        except (HarnessError, ValueError, KeyError):
            return [], False

    # -- closing -------------------------------------------------------------
    def close(self) -> dict:
        """Undo what the run did here and check it: the device back on its driver, the
        modules kvmconf loaded unloaded, the private folder removed. Closing twice
        returns the first report."""
        if self._cleanup is None:
            self._cleanup = self._undo()
        return self._cleanup

    def _undo(self) -> dict:
        left: list[str] = []
        if not self.remote.connected:
            left.append(f"target {self.where}: connection lost; the private folder "
                        f"{self.scratch or '(none made)'} could not be checked")
            return {"scratch": self.scratch, "modules_loaded": self._loaded, "left_behind": left}
        if self._device:
            left += self._restore_device()
        for name in reversed(self._loaded):
            self._sh('modprobe -r -- "$1"', name, timeout=120)
        extra = sorted(set(self._modules()) - set(self._modules_before)) if self._loaded else []
        left += [f"module {m} still loaded" for m in extra]
        if self.scratch:
            self._sh('rm -rf -- "$1"', self.scratch)
            if self._exists(self.scratch):
                left.append(f"{self.scratch} still exists")
        self.remote.close()
        return {"scratch": self.scratch, "modules_loaded": self._loaded, "left_behind": left}

    def _restore_device(self) -> list[str]:
        before, bdf = self._device, self._device["bdf"]
        device = f"/sys/bus/pci/devices/{bdf}"
        self._sh(_WRITE, bdf, f"{device}/driver/unbind")
        self._sh(_WRITE, before["override"] if before["override"] != "(null)" else "", f"{device}/driver_override")
        if before["driver"]:
            self._sh(_WRITE, bdf, f"/sys/bus/pci/drivers/{before['driver']}/bind")
        now = self._device_facts(bdf)["driver"]
        return [] if now == before["driver"] else [
            f"--vfio-device {bdf} is on driver {now or 'none'}, was on {before['driver'] or 'none'}"]
