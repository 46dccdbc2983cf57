"""SSH with paramiko: a deadline on every call, bounded output.

Guest output is untrusted. Each stream of a command (stdout, stderr) may carry
at most `output_bound()` bytes (MAX_OUTPUT, or $KVMCONF_MAX_OUTPUT_MIB); one byte
more, or no exit by the deadline, ends the command: its processes on the remote
are killed (the shell that starts a command reports its pid first, on stderr:
PID_MARK) and an OutputExceeded or DeadlineExceeded names the command, the stream
and the bound. The connection stays usable for the next command.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass

import paramiko

from harness.errors import DeadlineExceeded, HarnessError, UsageError

MAX_OUTPUT = 8 << 20    # bytes per stream of one command, by default
OUTPUT_ENV = "KVMCONF_MAX_OUTPUT_MIB"
PID_MARK = b"kvmconf-pid "   # the first stderr line of every command: its pid
KILL_TIMEOUT_S = 10.0        # for the kill of a command that ran past a bound
EXIT_WAIT_S = 5.0            # for its exit report after the kill
# `sh -c` program: stop process $1 and every descendant (children before the walk ends
# are stopped, so none forks away), then kill them all. Not the process group: dropbear
# starts commands in its own group.
KILL_TREE = (
    'top=$1; kill -STOP "$top" 2>/dev/null || exit 0; all=" $top "; grew=1; '
    'while [ "$grew" = 1 ]; do grew=0; '
    'for f in /proc/[0-9]*/stat; do read -r l < "$f" 2>/dev/null || continue; '
    'p=${f#/proc/}; p=${p%/stat}; case "$all" in *" $p "*) continue;; esac; '
    'set -- ${l##*) }; case "$all" in *" $2 "*) kill -STOP "$p" 2>/dev/null; all="$all$p "; grew=1;; esac; '
    'done; done; kill -KILL $all 2>/dev/null; true')


class OutputExceeded(HarnessError):
    """A command's stdout or stderr ran past the bound: the command was ended."""


def output_bound() -> int:
    """Bytes allowed per stream of one command: MAX_OUTPUT, or $KVMCONF_MAX_OUTPUT_MIB."""
    raw = os.environ.get(OUTPUT_ENV, "").strip()
    if not raw:
        return MAX_OUTPUT
    try:
        mib = float(raw)
    except ValueError:
        mib = 0.0
    if not 0 < mib <= 1 << 20:
        raise UsageError(f"${OUTPUT_ENV}={raw!r}: not a number of MiB (0 < N <= {1 << 20})")
    return int(mib * (1 << 20))


def _size(n: int) -> str:
    return f"{n / (1 << 20):g} MiB" if n >= 1 << 20 else f"{n} bytes"


class Output:
    """One stream of a command, kept up to `limit` bytes; a byte more raises
    OutputExceeded naming the command (`what`), the stream and the bound. With
    `pid_line`, the stream's PID_MARK line (before any of the command's own
    output) is taken out and its number kept as `pid`."""

    def __init__(self, what: str, stream: str, limit: int, pid_line: bool = False):
        self.what, self.stream, self.limit = what, stream, limit
        self.data = bytearray()
        self.pid: int | None = None
        self._head = bytearray() if pid_line else None   # held back until the mark is seen

    def add(self, chunk: bytes) -> None:
        if self._head is not None:
            self._head += chunk
            chunk = self._take_mark()
        if len(self.data) + len(chunk) > self.limit:
            raise OutputExceeded(f"{self.what}: {self.stream} ran past its bound of {_size(self.limit)} "
                                 f"(${OUTPUT_ENV} sets it); the command was ended")
        self.data += chunk

    def _take_mark(self) -> bytes:
        """Lines before the mark are the remote shell's (a login script's): passed on."""
        passed = bytearray()
        while self._head is not None:
            end = self._head.find(b"\n")
            if end < 0:
                if len(self._head) > 4096:     # no mark where it belongs: give up looking
                    passed += self._head
                    self._head = None
                break
            line = bytes(self._head[:end])
            del self._head[:end + 1]
            number = line[len(PID_MARK):]
            if line.startswith(PID_MARK) and number.isdigit():
                self.pid = int(number)
                passed += self._head
                self._head = None
            else:
                passed += line + b"\n"
        return bytes(passed)

    def value(self) -> bytes:
        if self._head is not None:               # the command ended before a whole mark line
            rest, self._head = bytes(self._head), None
            self.add(rest)
        return bytes(self.data)

    def tail(self, n: int = 200) -> bytes:
        return bytes(self.data[-n:])


def tail_text(data: bytes, limit: int = 300) -> str:
    """The end of a guest's output for a reason: its last `limit` characters, decoded
    from the last bytes only, control characters (NUL, ESC...) shown escaped."""
    text = bytes(data[-4 * limit:]).decode("utf-8", "replace").strip()[-limit:]
    return "".join(c if c.isprintable() or c in "\n\t" else repr(c)[1:-1] for c in text)


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
            watch=None, watch_every: float = 5.0, max_output: int | None = None) -> Result:
        """Run argv (each word quoted for the remote shell), wait at most `timeout` s.

        Each of stdout and stderr may carry `max_output` bytes (default: output_bound());
        past that, or past the deadline, the command's processes are killed and
        OutputExceeded / DeadlineExceeded says which command ran past which bound.
        `watch()`, if given, is called every `watch_every` s while the command runs;
        it may raise to abandon the command (the channel is closed first).
        """
        return self._run(argv, stdin, timeout, watch, watch_every, max_output, reap=True)

    def _run(self, argv, stdin, timeout, watch, watch_every, max_output, reap: bool) -> Result:
        if not self.connected:
            raise HarnessError(f"ssh {self.where}: not connected")
        command = " ".join(_quote(a) for a in argv)
        limit = output_bound() if max_output is None else max_output
        deadline = time.monotonic() + timeout
        next_watch = time.monotonic() + watch_every
        what = f"guest command {command!r}"
        out, err = Output(what, "stdout", limit), Output(what, "stderr", limit, pid_line=True)
        channel = None
        try:
            try:
                channel = self._client.get_transport().open_session(timeout=timeout)
            except paramiko.SSHException as e:
                raise DeadlineExceeded(f"{what}: no session within {timeout:.0f} s ({e})") from None
            channel.settimeout(timeout)
            channel.exec_command(_with_pid(command))
            pending = memoryview(stdin)
            if not pending:
                channel.shutdown_write()
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
                    out.add(channel.recv(1 << 16))
                    drained = False
                if channel.recv_stderr_ready():
                    err.add(channel.recv_stderr(1 << 16))
                    drained = False
                if drained and channel.exit_status_ready():
                    break
                if time.monotonic() > deadline:
                    raise DeadlineExceeded(f"{what}: no exit within {timeout:.0f} s, the bound of its run "
                                           f"(stdout tail: {out.tail()!r})")
                if watch is not None and time.monotonic() > next_watch:
                    next_watch = time.monotonic() + watch_every
                    try:
                        watch()
                    except BaseException:      # the watch's verdict, not a bound of ours
                        channel.close()
                        channel = None
                        raise
                if drained:
                    time.sleep(0.005)
            rc = channel.recv_exit_status()
            if rc == -1 and not channel.get_transport().is_active():
                # no exit status and the transport is down (paramiko closes the
                # channels of a dead transport): the connection broke (QEMU killed,
                # the TCP connection cut), so the command's result is unknown
                channel.close()
                raise HarnessError(f"ssh {self.where}: {command!r}: the connection was lost before "
                                   f"the command exited (stdout tail: {out.tail()!r})")
            channel.close()
            return Result(rc, out.value(), err.value())
        except (OutputExceeded, DeadlineExceeded) as e:
            if channel is None:
                raise
            ended = self._end(channel, err.pid) if reap else "not killed"
            raise type(e)(f"{e} ({ended})") from None
        except (paramiko.SSHException, OSError, EOFError) as e:
            raise HarnessError(f"ssh {self.where}: {command!r}: {e or type(e).__name__}") from None

    def kill_tree(self, pid: int) -> str:
        """Kill remote process `pid` and its descendants; what happened, for a message."""
        try:
            done = self._run(["sh", "-c", KILL_TREE, "kill", str(pid)], b"", KILL_TIMEOUT_S, None, 5.0,
                             1 << 16, reap=False)
        except HarnessError as e:
            return f"the kill of pid {pid} failed: {str(e).splitlines()[0]}"
        if done.rc != 0:
            return f"the kill of pid {pid} exited {done.rc}: {tail_text(done.stderr, 120)}"
        return f"pid {pid} and its children killed"

    def _end(self, channel, pid: int | None) -> str:
        """End a command that ran past a bound: kill its processes through a second
        channel while its own stays open (dropbear reports a late exit on whichever
        channel is open next, see _end_subsystem), wait for its exit report with its
        output thrown away, then close its channel."""
        if channel.exit_status_ready():      # it has exited: its pid may be another's by now
            ended = f"it had exited {channel.recv_exit_status()}"
        elif pid is None:
            ended = "its pid is unknown: not killed"
        else:
            ended = self.kill_tree(pid)
        end = time.monotonic() + EXIT_WAIT_S
        try:
            while not channel.exit_status_ready() and time.monotonic() < end:
                while channel.recv_ready():
                    channel.recv(1 << 16)
                while channel.recv_stderr_ready():
                    channel.recv_stderr(1 << 16)
                time.sleep(0.005)
        except (paramiko.SSHException, OSError, EOFError):
            pass
        channel.close()
        return ended

    def stream(self, argv: list[str], timeout: float = 60.0, max_output: int | None = None) -> "Stream":
        """Start argv with stdin left open: the caller feeds it piece by piece and reads
        each answer before sending the next (one payload process for many requests).
        Each answer and the stderr may carry `max_output` bytes, as in run()."""
        if not self.connected:
            raise HarnessError(f"ssh {self.where}: not connected")
        command = " ".join(_quote(a) for a in argv)
        try:
            channel = self._client.get_transport().open_session(timeout=timeout)
            channel.settimeout(timeout)
            channel.exec_command(_with_pid(command))
        except (paramiko.SSHException, OSError, EOFError) as e:
            raise HarnessError(f"ssh {self.where}: {command!r}: {e or type(e).__name__}") from None
        return Stream(channel, command, self, output_bound() if max_output is None else max_output)

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

    def __init__(self, channel, command: str, remote: Remote, limit: int):
        self._channel, self.command, self._remote = channel, command, remote
        what = f"guest command {command!r}"
        self._limit = limit
        self._out = Output(what, "stdout (one answer)", limit)
        self._err = Output(what, "stderr", limit, pid_line=True)
        self._broken = False       # ran past a bound: close() kills it at once

    def send(self, data: bytes, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        pending = memoryview(data)
        try:
            while pending:
                if self._channel.exit_status_ready():
                    raise HarnessError(f"guest command {self.command!r} exited while fed input "
                                       f"(stderr: {tail_text(self._err.data)!r})")
                if self._channel.send_ready():
                    pending = pending[self._channel.send(pending[:1 << 15]):]
                    continue
                self._drain()
                if time.monotonic() > deadline:
                    self._broken = True
                    raise DeadlineExceeded(f"guest command {self.command!r}: input not taken within "
                                           f"{timeout:.0f} s")
                time.sleep(0.002)
        except (paramiko.SSHException, OSError, EOFError) as e:
            raise HarnessError(f"{self.command!r}: {e or type(e).__name__}") from None

    def read_until(self, done, timeout: float) -> bytes:
        """Read stdout until `done(bytes_so_far)` holds; returns and consumes that output."""
        deadline = time.monotonic() + timeout
        try:
            while not done(bytes(self._out.data)):
                while not self._drain():        # done() is asked again only after new output
                    if self._channel.exit_status_ready() and not self._channel.recv_ready():
                        raise HarnessError(f"guest command {self.command!r} exited "
                                           f"{self._channel.recv_exit_status()} before answering "
                                           f"(stderr: {tail_text(self._err.data)})")
                    if time.monotonic() > deadline:
                        self._broken = True
                        raise DeadlineExceeded(f"guest command {self.command!r}: no answer within "
                                               f"{timeout:.0f} s (stdout tail: {self._out.tail()!r})")
                    time.sleep(0.002)
        except (paramiko.SSHException, OSError, EOFError) as e:
            raise HarnessError(f"{self.command!r}: {e or type(e).__name__}") from None
        out = bytes(self._out.data)
        self._out.data = bytearray()
        return out

    def _drain(self) -> bool:
        got = False
        try:
            if self._channel.recv_ready():
                self._out.add(self._channel.recv(1 << 16))
                got = True
            if self._channel.recv_stderr_ready():
                self._err.add(self._channel.recv_stderr(1 << 16))
                got = True
        except OutputExceeded:
            self._broken = True
            raise
        return got

    def close(self, timeout: float = 10.0) -> int | None:
        """End stdin, wait for the exit (the channel is closed either way); a command
        that does not exit by then (at once, when it ran past a bound) is killed: None."""
        try:
            try:
                self._channel.shutdown_write()
                deadline = time.monotonic() + (0.0 if self._broken else timeout)
                while not self._channel.exit_status_ready() and time.monotonic() < deadline:
                    while self._channel.recv_ready():          # nobody asked: thrown away
                        self._channel.recv(1 << 16)
                    while self._channel.recv_stderr_ready():
                        self._channel.recv_stderr(1 << 16)
                    time.sleep(0.005)
                if self._channel.exit_status_ready():
                    return self._channel.recv_exit_status()
            except (paramiko.SSHException, OSError, EOFError):
                return None
            if self._err.pid is not None:
                self._remote._end(self._channel, self._err.pid)
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


def _with_pid(command: str) -> str:
    """The command as the remote shell gets it: its pid on stderr first (PID_MARK),
    then the command in that same process (exec), so that a kill can find it."""
    return f'echo "{PID_MARK.decode()}$$" >&2; exec {command}'


def _quote(word: str) -> str:
    """POSIX single-quote a word for the remote shell: no shell string from unquoted input."""
    return "'" + word.replace("'", "'\"'\"'") + "'"
