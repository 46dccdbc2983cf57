"""A booted guest: its machine, its SSH connection, its capabilities."""
from __future__ import annotations

import contextlib
import time

from harness.errors import DeadlineExceeded, HarnessError, KernelFailure
from harness.guestimage import PAYLOAD_DIR
from harness.machine import READY_MARK, Machine
from harness.probe import guest_capabilities
from harness.remote import Remote, Result
from harness.remote.keys import RunKeys

# Checks (5 s apart) a payload must be in state D at, in a row, to count as stuck: a
# VM teardown waits in D for KVM's kthreads (kthread_stop in kvm_destroy_vm), which
# under TCG on a loaded host was seen to take over 10 s; a lock never released stays.
STUCK_CHECKS = 6
# The states (field 3 of /proc/PID/stat) of the processes named $1.
STATE_OF_COMM = 'for f in /proc/[0-9]*/stat; do read -r l < "$f" 2>/dev/null && case "$l" in *" ($1) "*) ' \
                'echo "${l#*) }" | cut -d" " -f1;; esac; done; true'


class Guest:
    def __init__(self, machine: Machine, remote: Remote, payload_errors: dict[str, str]):
        self.machine, self.remote = machine, remote
        self.payload_errors = payload_errors
        self.capabilities: dict = {}
        self.boot_to_ready_s = 0.0
        self.baseline_taint = 0
        self.poisoned = ""     # why this guest must be replaced, once it must

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
            guest.capabilities = guest_capabilities(guest.run)
        except BaseException:
            machine.kill()
            raise
        guest.baseline_taint = int(guest.capabilities.get("tainted", "0") or 0)
        return guest

    def run(self, argv: list[str], stdin: bytes = b"", timeout: float = 60.0) -> Result:
        if self.poisoned:
            raise HarnessError(f"{self.machine.name}: the guest is being replaced ({self.poisoned})")
        if not self.machine.running:
            raise HarnessError(f"{self.machine.name}: the guest is not running "
                               f"({self.machine.exit_description()})")
        watch = None
        if argv and argv[0].startswith(PAYLOAD_DIR + "/"):
            watch = self._stuck_watch(argv[0].rsplit("/", 1)[-1][:15])
        return self.remote.run(argv, stdin=stdin, timeout=timeout, watch=watch)

    def stream(self, argv: list[str], timeout: float = 60.0):
        """argv started with stdin open (harness.remote.Stream), for request/answer use."""
        if self.poisoned:
            raise HarnessError(f"{self.machine.name}: the guest is being replaced ({self.poisoned})")
        if not self.machine.running:
            raise HarnessError(f"{self.machine.name}: the guest is not running "
                               f"({self.machine.exit_description()})")
        return self.remote.stream(argv, timeout=timeout)

    def _stuck_watch(self, comm: str):
        """A watch that fails the command when the payload sits in uninterruptible
        sleep (D) at STUCK_CHECKS checks in a row: the kernel under test is stuck (a lock
        never released, a lost wakeup). The blocked tasks' stacks go to the serial
        log (sysrq w) and the guest is replaced before the next case."""
        seen = {"blocked": 0}

        def watch() -> None:
            states = self.remote.run(["sh", "-c", STATE_OF_COMM, "state", comm], timeout=10).text.split()
            seen["blocked"] = seen["blocked"] + 1 if "D" in states else 0
            if seen["blocked"] < STUCK_CHECKS:
                return
            # sysrq w prints the blocked tasks' stacks at KERN_INFO: into the kernel
            # log, not onto the console, so they are fetched from dmesg.
            evidence = self.machine.logdir / f"{self.machine.name}.blocked-tasks.txt"
            with contextlib.suppress(HarnessError):
                self.remote.run(["sh", "-c", "echo w > /proc/sysrq-trigger"], timeout=10)
                log = self.remote.run(["dmesg"], timeout=10).text
                evidence.write_text(log[log.rfind("Show Blocked State"):] if "Show Blocked State" in log
                                    else "no sysrq in this kernel; dmesg tail:\n" + log[-4000:])
            self.poisoned = f"{comm} stuck in the kernel"
            raise KernelFailure(f"{comm} blocked in the kernel (state D) for over {STUCK_CHECKS * 5} s: a deadlock "
                                f"or a lost wakeup in the kernel under test (stacks: {evidence.name})")
        return watch

    def payload(self, feature: str) -> str:
        if feature in self.payload_errors:
            raise HarnessError(self.payload_errors[feature])
        return f"{PAYLOAD_DIR}/{feature}"

    def after_case(self) -> tuple[list[str], bool]:
        """Kernel report lines and new taint bits since the last call, and whether the
        guest still answers (a dead guest is replaced before the next case)."""
        problems = self.machine.new_kernel_reports()
        if self.poisoned or not (self.machine.running and self.remote.connected):
            return problems, False
        try:
            taint = int(self.run(["cat", "/proc/sys/kernel/tainted"], timeout=15).text.strip() or 0)
        except (HarnessError, ValueError):
            return problems + self.machine.new_kernel_reports(), False
        gained = taint & ~self.baseline_taint
        if gained:
            problems.append(f"kernel gained taint bits {gained:#x} (tainted={taint:#x})")
            self.baseline_taint = taint
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
