"""What every target offers the cases: commands, payloads, capabilities, the stuck
watch and the taint check. harness.guest.Guest (QEMU) and
harness.targets.live.LiveHost (local, ssh) build on it."""
from __future__ import annotations

import signal
from pathlib import Path

from harness.errors import HarnessError, KernelFailure
from harness.remote import tail_text

# Checks (5 s apart) a payload must be in state D at, in a row, to count as stuck: a
# VM teardown waits in D for KVM's kthreads (kthread_stop in kvm_destroy_vm), which
# under TCG on a loaded host was seen to take over 10 s; a lock never released stays.
STUCK_CHECKS = 6
# The states (field 3 of /proc/PID/stat) of the processes named $1.
STATE_OF_COMM = 'for f in /proc/[0-9]*/stat; do read -r l < "$f" 2>/dev/null && case "$l" in *" ($1) "*) ' \
                'echo "${l#*) }" | cut -d" " -f1;; esac; done; true'


class PayloadHost:
    """One target's channel (harness.remote.Remote or a LocalShell) and payload folder."""
    kind = "qemu"

    def __init__(self, name: str, remote, payload_dir: str, payload_errors: dict[str, str],
                 evidence_dir: Path):
        self.name, self.remote, self.payload_dir = name, remote, payload_dir
        self.where = name
        self.payload_errors = payload_errors
        self.evidence_dir = evidence_dir
        self.capabilities: dict = {}
        self.baseline_taint = 0
        self.poisoned = ""     # why this target must not run more payloads, once it must

    def check_usable(self) -> None:
        if self.poisoned:
            raise HarnessError(f"{self.name}: no more payloads run here ({self.poisoned})")

    def run(self, argv: list[str], stdin: bytes = b"", timeout: float = 60.0):
        self.check_usable()
        watch = None
        if argv and argv[0].startswith(self.payload_dir + "/"):
            watch = self._stuck_watch(argv[0].rsplit("/", 1)[-1][:15])
        return self.remote.run(argv, stdin=stdin, timeout=timeout, watch=watch)

    def stream(self, argv: list[str], timeout: float = 60.0):
        """argv started with stdin open (Stream: send, read_until, close)."""
        self.check_usable()
        return self.remote.stream(argv, timeout=timeout)

    def payload(self, feature: str) -> str:
        if feature in self.payload_errors:
            raise HarnessError(self.payload_errors[feature])
        return f"{self.payload_dir}/{feature}"

    def payload_exit_error(self, feature: str, res) -> Exception:
        """What a non-zero exit of the feature's payload means: here (a payload of our
        own in a guest or on a live host), our failure (ERROR)."""
        return HarnessError(f"{feature} payload exited {res.rc}: {tail_text(res.stderr)}")

    def payload_argv(self, feature: str) -> list[str]:
        """The payload and the options this target adds (the user's device, on a live host)."""
        return [self.payload(feature)]

    def missing(self, feature: str) -> str | None:
        """Why the feature's cases cannot run on this target (None: they can)."""
        return None

    def may_change_host(self) -> bool:
        """Whether an op-script may change kernel state beyond its own processes (a
        module parameter): always in a guest kvmconf booted for the run."""
        return True

    def _stuck_watch(self, comm: str):
        """A watch that fails the command when the payload sits in uninterruptible
        sleep (D) at STUCK_CHECKS checks in a row: the kernel under test is stuck (a lock
        never released, a lost wakeup). The blocked tasks' stacks are kept as evidence
        and the target runs no more payloads until it is replaced."""
        seen = {"blocked": 0}

        def watch() -> None:
            states = self.remote.run(["sh", "-c", STATE_OF_COMM, "state", comm], timeout=10).text.split()
            seen["blocked"] = seen["blocked"] + 1 if "D" in states else 0
            if seen["blocked"] < STUCK_CHECKS:
                return
            evidence = self.evidence_dir / f"{self.name}.blocked-tasks.txt"
            try:
                evidence.write_text(self.blocked_stacks(comm))
            except HarnessError as e:
                evidence.write_text(f"stacks unavailable: {e}\n")
            self.poisoned = f"{comm} stuck in the kernel"
            raise KernelFailure(f"{comm} blocked in the kernel (state D) for over {STUCK_CHECKS * 5} s: a deadlock "
                                f"or a lost wakeup in the kernel under test (stacks: {evidence.name})")
        return watch

    def blocked_stacks(self, comm: str) -> str:
        """The kernel stacks of the processes named `comm` (root reads /proc/PID/stack)."""
        script = ('for p in /proc/[0-9]*; do [ "$(cat $p/comm 2>/dev/null)" = "$1" ] || continue; '
                  'echo "== ${p#/proc/} $1"; cat $p/stack 2>&1; done')
        return self.remote.run(["sh", "-c", script, "stacks", comm], timeout=15).text

    def taint_gained(self, ignore: int = 0) -> list[str]:
        """A problem line when /proc/sys/kernel/tainted gained bits (outside `ignore`)."""
        taint = int(self.run(["cat", "/proc/sys/kernel/tainted"], timeout=15).text.strip() or 0)
        gained = taint & ~self.baseline_taint & ~ignore
        self.baseline_taint |= taint
        return [f"kernel gained taint bits {gained:#x} (tainted={taint:#x})"] if gained else []



class HarnessSide(PayloadHost):
    """This machine as the place a feature's payload runs: a program built from the
    kernel under test's source (the kernel's own code in user space, against a shim)."""
    kind = "harness"

    def __init__(self, payload_dir: str, evidence_dir: Path):
        from harness.targets.local_shell import LocalShell
        super().__init__("harness", LocalShell(), payload_dir, {}, evidence_dir)
        self.where = "this machine (the kernel's own code compiled into a user-space program)"

    def payload_exit_error(self, feature: str, res) -> Exception:
        """A harness-side payload runs the kernel under test's own code: when it dies of a
        crash signal (SIGSEGV, SIGBUS, ...) that code crashed, the kernel's fault (FAIL),
        with the signal and the last trace lines as evidence. Any other exit stays ours
        (ERROR): a status the shim chose (its usage errors, die()), or a signal from outside
        (SIGKILL, SIGTERM: the deadline, the OOM killer, the user)."""
        if -res.rc not in CRASH_SIGNALS:
            return super().payload_exit_error(feature, res)
        name = signal.Signals(-res.rc).name
        # the last lines only: the output may be megabytes (a flood, then the crash)
        trace = [line for line in tail_text(res.stdout, TAIL_CHARS).splitlines() if line.strip()]
        stderr = [line for line in tail_text(res.stderr, TAIL_CHARS).splitlines() if line.strip()]
        evidence = "\n".join(["last trace lines:", *(trace[-TRACE_TAIL:] or ["(none)"]),
                              "stderr tail:", *(stderr[-TRACE_TAIL:] or ["(none)"])])
        return KernelFailure(f"{feature} payload killed by {name} (signal {-res.rc}) while running the kernel "
                             f"under test's code (built from its source into {self.where}): the kernel code "
                             f"crashed\n{evidence}")


# The signals a program raises itself by crashing: faults of its code, abort(), a trap.
CRASH_SIGNALS = {int(s) for s in (signal.SIGSEGV, signal.SIGBUS, signal.SIGILL, signal.SIGFPE,
                                  signal.SIGABRT, signal.SIGTRAP, signal.SIGSYS)}
TRACE_TAIL = 5     # trace and stderr lines kept as a crash's evidence
TAIL_CHARS = 8192  # of the output's end, where those lines are looked for
