"""A booted guest: its machine, its SSH connection, its capabilities."""
from __future__ import annotations

import contextlib
import time

from harness.errors import DeadlineExceeded, HarnessError
from harness.guestimage import PAYLOAD_DIR
from harness.machine import READY_MARK, Machine
from harness.probe import guest_capabilities
from harness.remote import Remote
from harness.remote.keys import RunKeys
from harness.targets.host import PayloadHost


class Guest(PayloadHost):
    """The QEMU target: a machine kvmconf booted with the kernel under test."""
    kind = "qemu"

    def __init__(self, machine: Machine, remote: Remote, payload_errors: dict[str, str]):
        super().__init__(machine.name, remote, PAYLOAD_DIR, payload_errors, machine.logdir)
        self.machine = machine
        self.where = f"qemu guest {machine.name}"
        self.boot_to_ready_s = 0.0
        self.scratch = "/tmp"        # the guest's own tmpfs

    @classmethod
    def boot(cls, machine: Machine, keys: RunKeys, payload_errors: dict[str, str],
             timeout: float) -> "Guest":
        """Launch, wait for the init's ready line, then SSH; all within `timeout` s."""
        start = time.monotonic()
        deadline = start + timeout
        machine.launch()
        remote = Remote(machine.ssh_port, keys.client, keys.host_public)
        guest = cls(machine, remote, payload_errors)
        try:
            machine.wait_console(READY_MARK, timeout=max(1.0, deadline - time.monotonic()))
            try:
                remote.wait_ready(deadline, alive=lambda: machine.running)
            except DeadlineExceeded as e:
                raise DeadlineExceeded(f"{e}\n{machine.hang_evidence()}") from None
            guest.boot_to_ready_s = time.monotonic() - start
            guest.capabilities = guest_capabilities(guest.run, f"{PAYLOAD_DIR}/probe")
        except BaseException:
            machine.kill()
            raise
        guest.baseline_taint = int(guest.capabilities.get("tainted", "0") or 0)
        return guest

    def check_usable(self) -> None:
        if self.poisoned:
            raise HarnessError(f"{self.machine.name}: the guest is being replaced ({self.poisoned})")
        if not self.machine.running:
            raise HarnessError(f"{self.machine.name}: the guest is not running "
                               f"({self.machine.exit_description()})")

    def blocked_stacks(self, comm: str) -> str:
        # sysrq w prints the blocked tasks' stacks at KERN_INFO: into the kernel
        # log, not onto the console, so they are fetched from dmesg.
        self.remote.run(["sh", "-c", "echo w > /proc/sysrq-trigger"], timeout=10)
        log = self.remote.run(["dmesg"], timeout=10).text
        return (log[log.rfind("Show Blocked State"):] if "Show Blocked State" in log
                else "no sysrq in this kernel; dmesg tail:\n" + log[-4000:])

    def after_case(self, feature: str | None = None) -> tuple[list[str], bool]:
        """Kernel report lines (the serial log) and new taint bits since the last call,
        and whether the guest still answers (a dead guest is replaced before the next
        case). Everything in the guest is the kernel under test's: no attribution."""
        problems = self.machine.new_kernel_reports()
        if self.poisoned or not (self.machine.running and self.remote.connected):
            return problems, False
        try:
            problems += self.taint_gained()
        except (HarnessError, ValueError):
            return problems + self.machine.new_kernel_reports(), False
        return problems, True

    def poweroff(self, timeout: float = 15.0) -> str:
        """Clean poweroff from inside the guest, confirmed by QMP's SHUTDOWN event;
        falls back to system_powerdown, quit, kill."""
        if self.machine.running and self.remote.connected:
            with contextlib.suppress(HarnessError):
                self.remote.run(["sh", "-c", "sync; (sleep 0.2; poweroff -f) >/dev/null 2>&1 &"],
                                timeout=10)
            self.remote.close()
            event = self.machine.wait_event("SHUTDOWN", timeout)
            if event and self.machine.wait_exit(timeout):
                self.machine.kill()  # closes QMP
                return f"guest poweroff (SHUTDOWN {event['data'].get('reason')})"
        self.remote.close()
        return self.machine.shutdown(timeout=3.0)
