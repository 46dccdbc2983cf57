"""SSH with paramiko: a deadline on every call, bounded output."""
from __future__ import annotations

import time
from dataclasses import dataclass

import paramiko

from harness.errors import DeadlineExceeded, HarnessError

MAX_OUTPUT = 64 << 20   # bytes kept per stream; guest output is untrusted


@dataclass
class Result:
    rc: int
    stdout: bytes
    stderr: bytes

    @property
    def text(self) -> str:
        return self.stdout.decode("utf-8", "replace")


class _PinnedHostKey(paramiko.MissingHostKeyPolicy):
    """Accept exactly one host key: the one this run put in the guest, or --host-key."""

    def __init__(self, expected: paramiko.PKey, source: str):
        self.expected, self.source = expected, source

    def missing_host_key(self, client, hostname, key):
        if key.get_base64() != self.expected.get_base64():
            raise HarnessError(f"ssh {hostname}: host key {key.get_name()} {key.fingerprint} differs from "
                               f"{self.source} ({self.expected.get_name()} {self.expected.fingerprint}): refused")


class _KnownHostsOnly(paramiko.MissingHostKeyPolicy):
    def __init__(self, files: list[str]):
        self.files = files

    def missing_host_key(self, client, hostname, key):
        raise HarnessError(f"ssh {hostname}: host key {key.get_name()} {key.fingerprint} is not in "
                           f"{' or '.join(self.files) or 'any known_hosts file'} and no --host-key was "
                           f"given: refused (a host key is never accepted blindly)")


class Remote:
    """One SSH connection: to a kvmconf guest on 127.0.0.1:port (the run's own keys), or to
    an existing host (the user's key or agent; the host key from --host-key or known_hosts)."""

    def __init__(self, port: int, client_key: paramiko.PKey | None, host_key: paramiko.PKey | None,
                 host: str = "127.0.0.1", user: str = "root", key_file: str | None = None,
                 known_hosts: list[str] | None = None, host_key_source: str = "the key this run put in the guest"):
        self.host, self.port, self.user = host, port, user
        self._key, self._host_key, self._key_file = client_key, host_key, key_file
        self._known_hosts = known_hosts or []
        self._host_key_source = host_key_source
        self._client: paramiko.SSHClient | None = None

    @property
    def where(self) -> str:
        return f"{self.user}@{self.host}:{self.port}"

    def connect(self, timeout: float = 10.0) -> None:
        client = paramiko.SSHClient()
        if self._host_key is not None:
            client.set_missing_host_key_policy(_PinnedHostKey(self._host_key, self._host_key_source))
        else:
            for path in self._known_hosts:
                client.load_host_keys(path)
            client.set_missing_host_key_policy(_KnownHostsOnly(self._known_hosts))
        # the run's own key alone for a kvmconf guest; else --ssh-key, or the agent and
        # ~/.ssh's default keys, as ssh(1) would
        own = self._key is not None or self._key_file is not None
        try:
            client.connect(self.host, self.port, username=self.user, pkey=self._key,
                           key_filename=self._key_file, timeout=timeout, banner_timeout=timeout,
                           auth_timeout=timeout, allow_agent=not own, look_for_keys=not own)
        except paramiko.BadHostKeyException as e:
            client.close()
            raise HarnessError(f"ssh {self.where}: host key {e.key.get_name()} {e.key.fingerprint} differs "
                               f"from known_hosts ({e.expected_key.fingerprint}): refused") from None
        except HarnessError:      # a host key refused by the policy
            client.close()
            raise
        except (OSError, paramiko.SSHException, EOFError) as e:
            client.close()
            raise HarnessError(f"ssh {self.where}: {e or type(e).__name__}") from None
        transport = client.get_transport()
        transport.set_keepalive(5)
        self._client = client

    def wait_ready(self, deadline: float, alive=lambda: True) -> None:
        """Connect, retrying until `deadline` (time.monotonic) while `alive()`."""
        last = "no attempt"
        while time.monotonic() < deadline:
            if not alive():
                raise HarnessError(f"guest stopped before SSH came up ({last})")
            try:
                self.connect(timeout=max(1.0, min(5.0, deadline - time.monotonic())))
                return
            except HarnessError as e:
                last = str(e)
                time.sleep(0.2)
        raise DeadlineExceeded(f"SSH on {self.where} not ready by the deadline ({last})")

    @property
    def connected(self) -> bool:
        return bool(self._client and self._client.get_transport()
                    and self._client.get_transport().is_active())

    def run(self, argv: list[str], stdin: bytes = b"", timeout: float = 60.0,
            watch=None, watch_every: float = 5.0) -> Result:
        """Run argv (each word quoted for the remote shell), wait at most `timeout` s.

        `watch()`, if given, is called every `watch_every` s while the command runs;
        it may raise to abandon the command (the channel is closed first).
        """
        if not self.connected:
            raise HarnessError(f"ssh {self.where}: not connected")
        command = " ".join(_quote(a) for a in argv)
        deadline = time.monotonic() + timeout
        next_watch = time.monotonic() + watch_every
        try:
            try:
                channel = self._client.get_transport().open_session(timeout=timeout)
            except paramiko.SSHException as e:
                raise DeadlineExceeded(f"guest command {command!r}: no session within {timeout:.0f} s "
                                       f"({e})") from None
            channel.settimeout(timeout)
            channel.exec_command(command)
            pending = memoryview(stdin)
            if not pending:
                channel.shutdown_write()
            out, err = bytearray(), bytearray()
            while True:
                drained = True
                # Feed stdin in pieces between reads, so a guest that writes
                # before it has read everything cannot deadlock us.
                if pending and channel.send_ready():
                    pending = pending[channel.send(pending[:1 << 15]):]
                    if not pending:
                        channel.shutdown_write()
                    drained = False
                if channel.recv_ready():
                    append_bounded(out, channel.recv(1 << 16))
                    drained = False
                if channel.recv_stderr_ready():
                    append_bounded(err, channel.recv_stderr(1 << 16))
                    drained = False
                if drained and channel.exit_status_ready():
                    break
                if time.monotonic() > deadline:
                    channel.close()
                    raise DeadlineExceeded(f"guest command {command!r}: no exit within {timeout:.0f} s "
                                           f"(stdout tail: {bytes(out[-200:])!r})")
                if watch is not None and time.monotonic() > next_watch:
                    next_watch = time.monotonic() + watch_every
                    try:
                        watch()
                    except BaseException:
                        channel.close()
                        raise
                if drained:
                    time.sleep(0.005)
            rc = channel.recv_exit_status()
            channel.close()
            return Result(rc, bytes(out), bytes(err))
        except (paramiko.SSHException, OSError, EOFError) as e:
            raise HarnessError(f"ssh {self.where}: {command!r}: {e or type(e).__name__}") from None

    def stream(self, argv: list[str], timeout: float = 60.0) -> "Stream":
        """Start argv with stdin left open: the caller feeds it piece by piece and reads
        each answer before sending the next (one payload process for many requests)."""
        if not self.connected:
            raise HarnessError(f"ssh {self.where}: not connected")
        command = " ".join(_quote(a) for a in argv)
        try:
            channel = self._client.get_transport().open_session(timeout=timeout)
            channel.settimeout(timeout)
            channel.exec_command(command)
        except (paramiko.SSHException, OSError, EOFError) as e:
            raise HarnessError(f"ssh {self.where}: {command!r}: {e or type(e).__name__}") from None
        return Stream(channel, command)

    def upload(self, local: str, remote: str, timeout: float = 60.0, mode: int | None = None) -> None:
        """Copy a file there over SFTP (and set its mode in the same SFTP session)."""
        if not self.connected:
            raise HarnessError(f"ssh {self.where}: not connected")
        try:
            sftp = self._client.open_sftp()
            sftp.get_channel().settimeout(timeout)
            sftp.put(local, remote)
            if mode is not None:
                sftp.chmod(remote, mode)
            _end_subsystem(sftp.get_channel(), timeout)
            sftp.close()
        except (paramiko.SSHException, OSError, EOFError) as e:
            raise HarnessError(f"sftp upload {local} -> {remote}: {e or type(e).__name__}") from None

    def close(self) -> None:
        if self._client:
            self._client.close()
            self._client = None


class Stream:
    """A running remote command with open stdin (see Remote.stream)."""

    def __init__(self, channel, command: str):
        self._channel, self.command = channel, command
        self._out, self._err = bytearray(), bytearray()

    def send(self, data: bytes, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        pending = memoryview(data)
        try:
            while pending:
                if self._channel.exit_status_ready():
                    raise HarnessError(f"guest command {self.command!r} exited while fed input "
                                       f"(stderr: {bytes(self._err[-300:])!r})")
                if self._channel.send_ready():
                    pending = pending[self._channel.send(pending[:1 << 15]):]
                    continue
                self._drain()
                if time.monotonic() > deadline:
                    raise DeadlineExceeded(f"guest command {self.command!r}: input not taken within "
                                           f"{timeout:.0f} s")
                time.sleep(0.002)
        except (paramiko.SSHException, OSError, EOFError) as e:
            raise HarnessError(f"{self.command!r}: {e or type(e).__name__}") from None

    def read_until(self, done, timeout: float) -> bytes:
        """Read stdout until `done(bytes_so_far)` holds; returns and consumes that output."""
        deadline = time.monotonic() + timeout
        try:
            while not done(bytes(self._out)):
                while not self._drain():        # done() is asked again only after new output
                    if self._channel.exit_status_ready() and not self._channel.recv_ready():
                        raise HarnessError(f"guest command {self.command!r} exited "
                                           f"{self._channel.recv_exit_status()} before answering "
                                           f"(stderr: {bytes(self._err[-300:]).decode(errors='replace')})")
                    if time.monotonic() > deadline:
                        raise DeadlineExceeded(f"guest command {self.command!r}: no answer within "
                                               f"{timeout:.0f} s (stdout tail: {bytes(self._out[-200:])!r})")
                    time.sleep(0.002)
        except (paramiko.SSHException, OSError, EOFError) as e:
            raise HarnessError(f"{self.command!r}: {e or type(e).__name__}") from None
        out, self._out = bytes(self._out), bytearray()
        return out

    def _drain(self) -> bool:
        got = False
        if self._channel.recv_ready():
            append_bounded(self._out, self._channel.recv(1 << 16))
            got = True
        if self._channel.recv_stderr_ready():
            append_bounded(self._err, self._channel.recv_stderr(1 << 16))
            got = True
        return got

    def close(self, timeout: float = 10.0) -> int | None:
        """End stdin, wait for the exit (the channel is closed either way)."""
        try:
            self._channel.shutdown_write()
            deadline = time.monotonic() + timeout
            while not self._channel.exit_status_ready() and time.monotonic() < deadline:
                self._drain()
                time.sleep(0.005)
            return self._channel.recv_exit_status() if self._channel.exit_status_ready() else None
        except (paramiko.SSHException, OSError, EOFError):
            return None
        finally:
            self._channel.close()


def _end_subsystem(channel, timeout: float) -> None:
    """End the SFTP server's input and wait for it to exit before the channel closes.

    Closing an SFTP channel while its server process still runs lets that process exit
    later, after the next channel is open; dropbear then reports the late exit on the new
    channel and closes it ("Unable to open channel." / "Channel closed." on the command
    right after an upload, about one upload in twenty under TCG)."""
    channel.shutdown_write()
    deadline = time.monotonic() + timeout
    while not channel.exit_status_ready():
        if time.monotonic() > deadline:
            raise DeadlineExceeded(f"SFTP server did not exit within {timeout:.0f} s of its input's end")
        time.sleep(0.005)


def append_bounded(buf: bytearray, chunk: bytes) -> None:
    if len(buf) < MAX_OUTPUT:
        buf += chunk[:MAX_OUTPUT - len(buf)]


def _quote(word: str) -> str:
    """POSIX single-quote a word for the remote shell: no shell string from unquoted input."""
    return "'" + word.replace("'", "'\"'\"'") + "'"
