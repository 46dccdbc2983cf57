"""Where the payloads run (design section 5, `target`).

- qemu: a guest kvmconf boots in QEMU with the kernel under test (the default);
- local: this machine's own running kernel, as root (a bare-metal lab host);
- ssh://[USER@]HOST[:PORT]: an existing machine (one a lab booted), over SSH.

On local and ssh targets the kernel under test is whatever that host runs, so
the options that choose or build a kernel are usage errors there.
"""
from __future__ import annotations

import platform
import re
from dataclasses import dataclass

from harness.errors import UsageError

KINDS = ("qemu", "local", "ssh")
# the `kvmconf run` options that only mean something when kvmconf boots the kernel
QEMU_ONLY_OPTIONS = ("kernel", "modules", "source", "series", "revision", "series_prefix",
                     "patch", "config", "append")
_SSH = re.compile(r"ssh://(?:(?P<user>[A-Za-z_][A-Za-z0-9_.-]*)@)?"
                  r"(?P<host>\[[0-9A-Fa-f:]+\]|[A-Za-z0-9][A-Za-z0-9.-]*)(?::(?P<port>\d{1,5}))?/?")


@dataclass(frozen=True)
class TargetSpec:
    kind: str                 # qemu | local | ssh
    user: str = "root"
    host: str = ""
    port: int = 22

    @property
    def where(self) -> str:
        """The target as run.json and every reason name it."""
        if self.kind == "ssh":
            return f"ssh://{self.user}@{self.host}:{self.port}"
        return f"local:{platform.node()}" if self.kind == "local" else "qemu"

    @property
    def live(self) -> bool:
        """The payloads run on a kernel kvmconf did not boot."""
        return self.kind != "qemu"


def parse(text: str) -> TargetSpec:
    """--target qemu | local | ssh://[USER@]HOST[:PORT]; a one-line error otherwise."""
    if text in ("qemu", "local"):
        return TargetSpec(text)
    m = _SSH.fullmatch(text or "")
    if not m:
        raise UsageError(f"--target {text}: expected qemu, local or ssh://[USER@]HOST[:PORT]")
    port = int(m.group("port") or 22)
    if not 0 < port < 65536:
        raise UsageError(f"--target {text}: port {port} out of range")
    return TargetSpec("ssh", m.group("user") or "root", m.group("host").strip("[]"), port)


def check_options(spec: TargetSpec, args) -> None:
    """Options that choose the kernel, the machine or the host's state, against the target."""
    if spec.live:
        for name in QEMU_ONLY_OPTIONS:
            value = getattr(args, name, None)
            if value not in (None, [], "", False):
                flag = "--" + name.replace("_", "-")
                raise UsageError(f"{flag} with --target {spec.kind}: the kernel under test is the one "
                                 f"{spec.where} runs (kvmconf boots no kernel there)")
        if getattr(args, "accel", "auto") != "auto":
            raise UsageError(f"--accel with --target {spec.kind}: no QEMU runs there")
    else:
        for flag, value in (("--vfio-device", getattr(args, "vfio_device", None)),
                            ("--allow-module-changes", getattr(args, "allow_module_changes", False)),
                            ("--ssh-key", getattr(args, "ssh_key", None)),
                            ("--host-key", getattr(args, "host_key", None))):
            if value:
                raise UsageError(f"{flag} needs --target local or ssh://HOST (the QEMU guest is kvmconf's own)")
    if spec.kind != "ssh":
        for flag, value in (("--ssh-key", getattr(args, "ssh_key", None)),
                            ("--host-key", getattr(args, "host_key", None))):
            if value:
                raise UsageError(f"{flag} needs --target ssh://HOST")
    device = getattr(args, "vfio_device", None)
    if device and not re.fullmatch(r"[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]", device):
        raise UsageError(f"--vfio-device {device}: expected a PCI address DDDD:BB:DD.F (lower-case hex)")
