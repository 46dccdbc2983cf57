"""A QEMU machine with a clear launch / wait / shutdown, after QEMU's QEMUMachine.

QMP goes over a unix socket in the run's 0700 folder (qemu.qmp, we listen and
QEMU connects); the serial console goes to a per-machine log; every wait has a
deadline; QEMU runs in its own process group and dies with the harness
(PR_SET_PDEATHSIG), so a killed run leaves no QEMU behind.
"""
from __future__ import annotations

import contextlib
import ctypes
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from qemu.qmp.legacy import QEMUMonitorProtocol

from harness.errors import BootFailure, DeadlineExceeded, HarnessError
from harness.machine import kernel_log
from harness.machine.profiles import Profile

READY_MARK = "kvmconf: ready"
_PR_SET_PDEATHSIG = 1


def qemu_binary() -> str:
    """KVMCONF_QEMU or qemu-system-x86_64 on PATH."""
    name = os.environ.get("KVMCONF_QEMU", "qemu-system-x86_64")
    path = shutil.which(name)
    if path is None:
        raise HarnessError(f"QEMU binary {name!r} not found (install qemu-system-x86 or set KVMCONF_QEMU)")
    return path


def qemu_pids_writing_to(folder: Path) -> list[int]:
    """The QEMU processes whose command line names `folder` (a run's output folder: its
    serial log is there), from the process table: for checks that none is left."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"qemu-system-x86_64") and str(folder).encode() in b" ".join(argv):
            pids.append(int(proc.name))
    return pids


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    os.setsid()
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class Machine:
    def __init__(self, name: str, profile: Profile, kernel: Path, initrd: Path, workdir: Path,
                 logdir: Path, accel: str = "tcg", memory_mb: int = 1024, smp: int = 2,
                 extra_append: list[str] | None = None):
        self.name, self.profile = name, profile
        self.kernel, self.initrd = kernel, initrd
        self.workdir = workdir    # private 0700 folder: QMP socket, QEMU stderr
        self.logdir = logdir      # the run's output folder: serial and QMP logs
        self.accel, self.memory_mb, self.smp = accel, memory_mb, smp
        self.extra_append = extra_append or []
        self.serial_log = logdir / f"{name}.serial.log"
        self.qmp_log = logdir / f"{name}.qmp.log"
        self.ssh_port = 0
        self.process: subprocess.Popen | None = None
        self._qmp: QEMUMonitorProtocol | None = None
        self._serial_seen = 0   # bytes of the serial log already checked for reports
        self.launched_at = 0.0

    # -- launch ---------------------------------------------------------
    def argv(self, qemu: str) -> list[str]:
        append = ["console=ttyS0", "loglevel=5", "panic=-1", "nokaslr", "tsc=reliable",
                  *self.profile.kernel_args(), *self.extra_append]
        argv = [qemu, "-nodefaults", "-display", "none", "-no-reboot",
                "-machine", "q35" + (",kernel-irqchip=split" if self.accel == "kvm" and self.profile.vfio else ""),
                "-accel", self.accel_option(), "-cpu", self.profile.cpu(self.accel),
                "-m", str(self.memory_mb), "-smp", str(self.smp),
                "-kernel", str(self.kernel), "-initrd", str(self.initrd),
                "-append", " ".join(append),
                "-serial", f"file:{self.serial_log}",
                "-chardev", f"socket,id=qmp,path={self.workdir / (self.name + '.qmp.sock')}",
                "-mon", "chardev=qmp,mode=control"]
        for device in self.profile.devices():
            argv += ["-device", device]
        argv += ["-netdev", f"user,id=net0,hostfwd=tcp:127.0.0.1:{self.ssh_port}-:22",
                 "-device", "virtio-net-pci,netdev=net0"]
        return argv

    def accel_option(self) -> str:
        # QEMU 7.2's multi-threaded TCG with nested SVM hangs the guest now and then
        # (RCU stalls, soft lockups in finish_task_switch on every vCPU); one TCG
        # thread for all vCPUs never did in hundreds of batches.
        if self.accel == "tcg" and self.profile.nested:
            return "tcg,thread=single"
        return self.accel

    def launch(self, qmp_timeout: float = 20.0) -> None:
        qemu = qemu_binary()
        self.ssh_port = free_port()
        sock = self.workdir / f"{self.name}.qmp.sock"
        with contextlib.suppress(FileNotFoundError):
            sock.unlink()
        self._qmp = QEMUMonitorProtocol(str(sock), server=True)
        argv = self.argv(qemu)
        (self.logdir / f"{self.name}.argv.json").write_text(json.dumps(argv, indent=1))
        self.serial_log.write_bytes(b"")
        stderr = open(self.workdir / f"{self.name}.qemu.stderr", "wb")
        self.launched_at = time.monotonic()
        self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr,
                                        preexec_fn=_die_with_parent)
        stderr.close()
        try:
            greeting = self._qmp.accept(timeout=qmp_timeout)
        except Exception as e:  # qemu.qmp raises several types; all mean "no QMP"
            self.kill()
            raise HarnessError(f"QEMU ({self.name}) did not connect to QMP within {qmp_timeout:.0f} s: "
                               f"{str(e) or type(e).__name__}; stderr: {self.qemu_stderr()}") from None
        self._qmp.settimeout(10.0)
        self._log_qmp("greeting", greeting)

    def qemu_stderr(self) -> str:
        path = self.workdir / f"{self.name}.qemu.stderr"
        text = path.read_text(errors="replace").strip() if path.exists() else ""
        return text[-500:] or "(empty)"

    # -- QMP ------------------------------------------------------------
    def _log_qmp(self, kind: str, payload) -> None:
        with open(self.qmp_log, "a") as f:
            f.write(json.dumps({"t": round(time.monotonic() - self.launched_at, 3), kind: payload}) + "\n")

    def qmp(self, command: str, **args):
        if self._qmp is None:
            raise HarnessError(f"{self.name}: QMP is not connected")
        self._log_qmp("command", {"execute": command, "arguments": args})
        try:
            reply = self._qmp.cmd_raw(command, args or None)
        except Exception as e:
            raise HarnessError(f"{self.name}: QMP {command}: {str(e) or type(e).__name__}") from None
        self._log_qmp("reply", reply)
        if "error" in reply:
            raise HarnessError(f"{self.name}: QMP {command}: {reply['error'].get('desc')}")
        return reply.get("return")

    def events(self, wait: float = 0.0) -> list[dict]:
        """QMP events received so far (waiting up to `wait` s for the first)."""
        if self._qmp is None:
            return []
        try:
            events = self._qmp.get_events(wait=wait) if wait else self._qmp.get_events()
        except Exception:
            return []
        self._qmp.clear_events()
        for event in events:
            self._log_qmp("event", event)
        return events

    def wait_event(self, name: str, timeout: float) -> dict | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for event in self.events(wait=min(0.5, max(0.01, deadline - time.monotonic()))):
                if event.get("event") == name:
                    return event
            if not self.running:
                return None
        return None

    # -- console ----------------------------------------------------------
    def serial_text(self) -> str:
        try:
            return self.serial_log.read_bytes().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def serial_tail(self, lines: int = 40) -> str:
        return "\n".join(self.serial_text().splitlines()[-lines:])

    def new_kernel_reports(self) -> list[str]:
        """Kernel report lines printed since the last call."""
        data = self.serial_log.read_bytes() if self.serial_log.exists() else b""
        fresh, self._serial_seen = data[self._serial_seen:], len(data)
        return kernel_log.reports(fresh.decode("utf-8", "replace").splitlines())

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def wait_console(self, pattern: str, timeout: float) -> str:
        """Wait for a serial line matching `pattern`; fail fast on a panic or a dead QEMU."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            text = self.serial_text()
            for line in text.splitlines():
                if regex.search(line):
                    return line
            lines = text.splitlines()
            if any(kernel_log.PANIC.search(l) for l in lines) or not self.running:
                time.sleep(0.3)  # let the last lines of the report reach the log
                lines = self.serial_text().splitlines()
                report = kernel_log.reports(lines)
                why = "the kernel panicked" if report else f"QEMU exited ({self.exit_description()})"
                raise BootFailure(f"{self.name}: {why} before {pattern!r}", kernel_report=report,
                                  evidence=self.serial_tail())
            if time.monotonic() > deadline:
                evidence = self.hang_evidence()
                raise DeadlineExceeded(f"{self.name}: no {pattern!r} on the console within "
                                       f"{timeout:.0f} s\n{evidence}")
            time.sleep(0.05)

    def exit_description(self) -> str:
        if self.process is None or self.process.poll() is None:
            return "running"
        rc = self.process.returncode
        how = f"killed by {signal.Signals(-rc).name}" if rc < 0 else f"exit status {rc}"
        return f"{how}; stderr: {self.qemu_stderr()}"

    def process_state(self) -> str:
        """QEMU's scheduler state from /proc (R, S, T (stopped), Z...)."""
        try:
            stat = Path(f"/proc/{self.process.pid}/stat").read_text()
        except (OSError, AttributeError):
            return "gone"
        state = stat[stat.rfind(")") + 2:].split()[0]
        return {"T": "T (stopped)", "t": "t (traced)", "Z": "Z (zombie)", "D": "D (uninterruptible)"}.get(state, state)

    def hang_evidence(self) -> str:
        """QMP state, registers and the serial tail, captured before killing."""
        parts = [f"QEMU process state {self.process_state()}"]
        try:
            parts.append(f"query-status: {self.qmp('query-status')}")
            regs = self.qmp("human-monitor-command", **{"command-line": "info registers"})
            parts.append("registers:\n" + "\n".join(str(regs).splitlines()[:20]))
        except HarnessError as e:   # a frozen QEMU (SIGSTOP) answers nothing: say so
            parts.append(f"QMP query-status: no answer ({e})")
        parts.append("serial tail:\n" + self.serial_tail(20))
        text = "\n".join(parts)
        (self.logdir / f"{self.name}.hang.txt").write_text(text)
        return text

    # -- shutdown ---------------------------------------------------------
    def shutdown(self, timeout: float = 5.0) -> str:
        """system_powerdown, then quit, then kill; returns which one ended it."""
        if not self.running:
            self._close_qmp()
            return "already stopped"
        for step, action in (("system_powerdown", lambda: self.qmp("system_powerdown")),
                             ("quit", lambda: self.qmp("quit"))):
            with contextlib.suppress(HarnessError):
                action()
                if self.wait_exit(timeout):
                    self._close_qmp()
                    return step
        self.kill()
        return "kill"

    def wait_exit(self, timeout: float) -> bool:
        try:
            self.process.wait(timeout=timeout)
            return True
        except subprocess.TimeoutExpired:
            return False

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        self._close_qmp()

    def _close_qmp(self) -> None:
        if self._qmp is not None:
            with contextlib.suppress(Exception):
                self._qmp.close()
            self._qmp = None
