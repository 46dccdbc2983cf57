"""Exceptions that carry the status a failure maps to (design section 5)."""


class HarnessError(Exception):
    """The harness or its infrastructure broke: the case is ERROR, the exit code 2."""


class UsageError(HarnessError):
    """Bad input from the user: one line naming the input and what is wrong."""


class DeadlineExceeded(HarnessError):
    """A wait ran past its deadline; the message names what was awaited."""


class BootFailure(HarnessError):
    """The kernel under test did not come up.

    `kernel_report` holds the panic/Oops lines when the kernel itself failed
    (then the boot case is FAIL, not ERROR); `evidence` is the serial tail and
    QMP state.
    """

    def __init__(self, message: str, kernel_report: list[str] | None = None, evidence: str = ""):
        super().__init__(message)
        self.kernel_report = kernel_report or []
        self.evidence = evidence


class KernelFailure(Exception):
    """The kernel under test misbehaved in a way no model step describes (a task
    stuck in the kernel, say): the case is FAIL, with the evidence in the message."""
