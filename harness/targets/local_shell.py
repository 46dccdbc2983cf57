"""Commands on this machine with the interface of harness.remote.Remote: argv only
(no shell string), a deadline on every call enforced by killing the process group,
bounded output (harness.remote.output_bound() bytes per stream; past it the process
group is killed and OutputExceeded names the command, the stream and the bound)."""
from __future__ import annotations

import os
import selectors
import shutil
import signal
import subprocess
import time

from harness.errors import DeadlineExceeded, HarnessError
from harness.remote import Output, OutputExceeded, Result, output_bound, tail_text


def _start(argv: list[str]) -> subprocess.Popen:
    try:
        return subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, start_new_session=True)
    except OSError as e:
        raise HarnessError(f"local command {argv[0]!r}: {e.strerror}") from None


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:   # in the kernel (state D): reaped whenever it ends
        pass


class LocalShell:
    where = "local"
    connected = True

    def run(self, argv: list[str], stdin: bytes = b"", timeout: float = 60.0,
            watch=None, watch_every: float = 5.0, max_output: int | None = None) -> Result:
        proc = _start(argv)
        deadline = time.monotonic() + timeout
        next_watch = time.monotonic() + watch_every
        what = f"local command {' '.join(argv)!r}"
        limit = output_bound() if max_output is None else max_output
        out, err = Output(what, "stdout", limit), Output(what, "stderr", limit)
        pending = memoryview(stdin)
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ, out)
        sel.register(proc.stderr, selectors.EVENT_READ, err)
        if pending:
            os.set_blocking(proc.stdin.fileno(), False)
            sel.register(proc.stdin, selectors.EVENT_WRITE)
        else:
            proc.stdin.close()
        try:
            while sel.get_map():
                for key, _ in sel.select(timeout=0.2):
                    if key.fileobj is proc.stdin:
                        try:
                            pending = pending[os.write(proc.stdin.fileno(), pending[:1 << 16]):]
                        except BrokenPipeError:
                            pending = pending[:0]
                        if not pending:
                            sel.unregister(proc.stdin)
                            proc.stdin.close()
                        continue
                    chunk = os.read(key.fileobj.fileno(), 1 << 16)
                    if chunk:
                        key.data.add(chunk)
                    else:
                        sel.unregister(key.fileobj)
                if time.monotonic() > deadline:
                    raise DeadlineExceeded(f"{what}: no exit within {timeout:.0f} s, the bound of its run "
                                           f"(stdout tail: {out.tail()!r}; its process group killed)")
                if watch is not None and time.monotonic() > next_watch:
                    next_watch = time.monotonic() + watch_every
                    watch()
            try:       # both pipes closed: the exit is near, or it closed them and lives on
                rc = proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                raise DeadlineExceeded(f"{what}: no exit within {timeout:.0f} s, the bound of its run "
                                       f"(its stdout and stderr closed; its process group killed)") from None
        except OutputExceeded as e:
            _kill(proc)
            raise OutputExceeded(f"{e} (its process group killed)") from None
        except BaseException:
            _kill(proc)
            raise
        finally:
            sel.close()
        return Result(rc, out.value(), err.value())

    def stream(self, argv: list[str], timeout: float = 60.0, max_output: int | None = None) -> "LocalStream":
        return LocalStream(_start(argv), " ".join(argv), output_bound() if max_output is None else max_output)

    def upload(self, local: str, remote: str, timeout: float = 60.0, mode: int | None = None) -> None:
        try:
            shutil.copyfile(local, remote)
            if mode is None:
                shutil.copymode(local, remote)
            else:
                os.chmod(remote, mode)
        except OSError as e:
            raise HarnessError(f"copy {local} -> {remote}: {e.strerror}") from None

    def close(self) -> None:
        pass


class LocalStream:
    """A running local command with open stdin (see harness.remote.Stream)."""

    def __init__(self, proc: subprocess.Popen, command: str, limit: int):
        self._proc, self.command = proc, command
        what = f"local command {command!r}"
        self._out = Output(what, "stdout (one answer)", limit)
        self._err = Output(what, "stderr", limit)
        self._broken = False       # ran past a bound: close() kills it at once
        for pipe in (proc.stdout, proc.stderr):
            os.set_blocking(pipe.fileno(), False)

    def send(self, data: bytes, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        pending = memoryview(data)
        os.set_blocking(self._proc.stdin.fileno(), False)
        while pending:
            if self._proc.poll() is not None:
                raise HarnessError(f"local command {self.command!r} exited while fed input "
                                   f"(stderr: {tail_text(self._err.data)!r})")
            try:
                pending = pending[os.write(self._proc.stdin.fileno(), pending[:1 << 16]):]
                continue
            except BlockingIOError:
                pass
            except BrokenPipeError:
                continue    # poll() sees the exit next
            self._drain()
            if time.monotonic() > deadline:
                self._broken = True
                raise DeadlineExceeded(f"local command {self.command!r}: input not taken within {timeout:.0f} s")
            time.sleep(0.002)

    def read_until(self, done, timeout: float) -> bytes:
        deadline = time.monotonic() + timeout
        while not done(bytes(self._out.data)):
            while not self._drain():
                if self._proc.poll() is not None and not self._drain():
                    raise HarnessError(f"local command {self.command!r} exited {self._proc.returncode} "
                                       f"before answering (stderr: {tail_text(self._err.data)})")
                if time.monotonic() > deadline:
                    self._broken = True
                    raise DeadlineExceeded(f"local command {self.command!r}: no answer within {timeout:.0f} s "
                                           f"(stdout tail: {self._out.tail()!r})")
                time.sleep(0.002)
        out = bytes(self._out.data)
        self._out.data = bytearray()
        return out

    def _drain(self) -> bool:
        got = False
        for pipe, buf in ((self._proc.stdout, self._out), (self._proc.stderr, self._err)):
            try:
                chunk = os.read(pipe.fileno(), 1 << 16)
            except BlockingIOError:
                continue
            if chunk:
                try:
                    buf.add(chunk)
                except OutputExceeded:
                    self._broken = True
                    raise
                got = True
        return got

    def close(self, timeout: float = 10.0) -> int | None:
        try:
            self._proc.stdin.close()
        except OSError:
            pass
        deadline = time.monotonic() + (0.0 if self._broken else timeout)
        while self._proc.poll() is None and time.monotonic() < deadline:
            try:
                self._drain()
            except OutputExceeded:      # nobody reads it any more: ended now
                break
            time.sleep(0.005)
        if self._proc.poll() is None:
            _kill(self._proc)
            return None
        return self._proc.returncode
