"""A stand-in guest for unit tests of the driver: it answers a feature's payload
protocol with a model's predictions (often a deliberately broken model) instead
of running the payload in a real kernel. Never evidence that a feature works."""
from __future__ import annotations

import json

from harness.errors import HarnessError


class Result:
    def __init__(self, rc, stdout, stderr=b""):
        self.rc, self.stdout, self.stderr = rc, stdout, stderr


def answer(scripts: list[dict], first: int, predict) -> bytes:
    lines = []
    for i, script in enumerate(scripts, first):
        lines += [json.dumps({"script": i, **event}) for event in predict(script)]
        lines.append(json.dumps({"script": i, "op": "done"}))
    return ("\n".join(lines) + "\n").encode()


class StandinGuest:
    """`predict(script) -> events` plays the kernel; `probe` is the probe JSON."""

    def __init__(self, predict, probe: dict | None = None, stream_error: str | None = None):
        self.predict, self.probe = predict, probe or {}
        self.stream_error = stream_error
        self.pending: list[dict] = []     # scripts encoded, not yet answered
        self.runs = 0
        self.streams: list["StandinStream"] = []

    def attach(self, suite) -> None:
        """Let the guest see the scripts the suite encodes (the stdin they stand for)."""
        codec = suite.codec
        guest = self

        class Codec:
            def __getattr__(self, name):
                return getattr(codec, name)

            def encode(self, scripts, first=0):
                guest.pending += scripts
                return codec.encode(scripts, first)
        suite.codec = Codec()

    where = "a stand-in guest"

    def payload(self, feature):
        return f"/opt/kvmconf/bin/{feature}"

    def payload_argv(self, feature):
        return [self.payload(feature)]

    def missing(self, feature):
        return None

    def may_change_host(self):
        return True

    def run(self, argv, stdin=b"", timeout=60.0):
        self.runs += 1
        if argv[1:] == ["--probe"]:
            return Result(0, json.dumps(self.probe).encode())
        scripts, self.pending = self.pending, []
        return Result(0, answer(scripts, 0, self.predict))

    def stream(self, argv, timeout=60.0):
        stream = StandinStream(self)
        self.streams.append(stream)
        return stream


class StandinStream:
    def __init__(self, guest: StandinGuest):
        self.guest, self.sent, self.out, self.closed = guest, 0, b"", False

    def send(self, data, timeout):
        if self.guest.stream_error:
            raise HarnessError(self.guest.stream_error)
        scripts, self.guest.pending = self.guest.pending, []
        self.out += answer(scripts, self.sent, self.guest.predict)
        self.sent += len(scripts)

    def read_until(self, done, timeout):
        assert done(self.out)
        out, self.out = self.out, b""
        return out

    def close(self):
        self.closed = True
        return 0


class Kernel:
    """What the driver reads of the kernel under test."""

    def __init__(self, version="6.1.0-28-amd64", config=None):
        self.version, self._config = version, config

    def config(self):
        return self._config


class Recorder:
    """The case recorder of testcases/conftest.py, in memory."""

    def __init__(self):
        self.fields, self.findings, self.random, self.profiles = {}, [], [], None
        self.coverage: dict[str, set] = {}

    def annotate(self, **fields):
        self.fields.update(fields)

    def explained(self, profiles):
        self.profiles = list(profiles)

    def add_finding(self, **finding):
        self.findings.append(finding)

    def add_random(self, *args):
        self.random.append(args)

    def add_coverage(self, feature, kind, reached, declared, unreachable):
        self.coverage.setdefault(kind, set()).update(reached)


REPORTS: list[str] = []   # kernel report lines the next after_case() returns


class Booted:
    """The booted guest as the run plugin sees it after each case."""

    def after_case(self, feature=None):
        found = REPORTS[:]
        REPORTS.clear()
        return found, True
