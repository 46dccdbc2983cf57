"""Commands on this machine with the interface of harness.remote.Remote: argv only
(no shell string), a deadline on every call enforced by killing the process group,
bounded output."""
from __future__ import annotations

import os
import selectors
import shutil
import signal
import subprocess
import time

from harness.errors import DeadlineExceeded, HarnessError
from harness.remote import Result, append_bounded


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
    proc.wait(timeout=10)


class LocalShell:
    where = "local"
    connected = True

    def run(self, argv: list[str], stdin: bytes = b"", timeout: float = 60.0,
            watch=None, watch_every: float = 5.0) -> Result:
        proc = _start(argv)
        deadline = time.monotonic() + timeout
        next_watch = time.monotonic() + watch_every
        out, err = bytearray(), bytearray()
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
                        append_bounded(key.data, chunk)
                    else:
                        sel.unregister(key.fileobj)
                if time.monotonic() > deadline:
                    raise DeadlineExceeded(f"local command {' '.join(argv)!r}: no exit within "
                                           f"{timeout:.0f} s (stdout tail: {bytes(out[-200:])!r})")
                if watch is not None and time.monotonic() > next_watch:
                    next_watch = time.monotonic() + watch_every
                    watch()
            rc = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        except BaseException:
            _kill(proc)
            raise
        finally:
            sel.close()
        return Result(rc, bytes(out), bytes(err))

    def stream(self, argv: list[str], timeout: float = 60.0) -> "LocalStream":
        return LocalStream(_start(argv), " ".join(argv))

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

    def __init__(self, proc: subprocess.Popen, command: str):
        self._proc, self.command = proc, command
        self._out = bytearray()
        self._err = bytearray()
        for pipe in (proc.stdout, proc.stderr):
            os.set_blocking(pipe.fileno(), False)

    def send(self, data: bytes, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        pending = memoryview(data)
        os.set_blocking(self._proc.stdin.fileno(), False)
        while pending:
            if self._proc.poll() is not None:
                raise HarnessError(f"local command {self.command!r} exited while fed input "
                                   f"(stderr: {bytes(self._err[-300:])!r})")
            try:
                pending = pending[os.write(self._proc.stdin.fileno(), pending[:1 << 16]):]
                continue
            except BlockingIOError:
                pass
            except BrokenPipeError:
                continue    # poll() sees the exit next
            self._drain()
            if time.monotonic() > deadline:
                raise DeadlineExceeded(f"local command {self.command!r}: input not taken within {timeout:.0f} s")
            time.sleep(0.002)

    def read_until(self, done, timeout: float) -> bytes:
        deadline = time.monotonic() + timeout
        while not done(bytes(self._out)):
            while not self._drain():
                if self._proc.poll() is not None and not self._drain():
                    raise HarnessError(f"local command {self.command!r} exited {self._proc.returncode} "
                                       f"before answering (stderr: {bytes(self._err[-300:]).decode(errors='replace')})")
                if time.monotonic() > deadline:
                    raise DeadlineExceeded(f"local command {self.command!r}: no answer within {timeout:.0f} s "
                                           f"(stdout tail: {bytes(self._out[-200:])!r})")
                time.sleep(0.002)
        out, self._out = bytes(self._out), bytearray()
        return out

    def _drain(self) -> bool:
        got = False
        for pipe, buf in ((self._proc.stdout, self._out), (self._proc.stderr, self._err)):
            try:
                chunk = os.read(pipe.fileno(), 1 << 16)
            except BlockingIOError:
                continue
            if chunk:
                append_bounded(buf, chunk)
                got = True
        return got

    def close(self, timeout: float = 10.0) -> int | None:
        try:
            self._proc.stdin.close()
        except OSError:
            pass
        deadline = time.monotonic() + timeout
        while self._proc.poll() is None and time.monotonic() < deadline:
            self._drain()
            time.sleep(0.005)
        if self._proc.poll() is None:
            _kill(self._proc)
            return None
        return self._proc.returncode
