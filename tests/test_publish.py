"""`kvmconf publish` (issue 16 item 3) against local stand-ins of kcidb-rest and SQUAD.

The stand-ins (http.server in a thread, on 127.0.0.1) check what a real server checks
and what the harness promises: the KCIDB document valid per kcidb-io, the bearer token,
SQUAD's form fields (JSON strings) and its Auth-Token header, job_id = the run id. They
answer from a script (503 first: the command must retry), SQUAD's keeps the job_ids it
took and answers a second one as SQUAD does (400 "There is already a test run with
job_id ..."). The run record is a real one (tests/fixtures/report/syndbg-vfio).
"""
from __future__ import annotations

import email.parser
import email.policy
import http.server
import json
import re
import socket
import threading
import time

import pytest

from harness.errors import DeadlineExceeded, HarnessError
from harness.report import publish
from tests.conftest import FIXTURES, kvmconf

RUN = FIXTURES / "report" / "syndbg-vfio"
TOKEN = "kvmconf-test-token-7f3a9c"


class Stand_in(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, answers: list[int]):
        super().__init__(("127.0.0.1", 0), Handler)
        self.answers = list(answers)    # statuses for the next requests; then 200/201
        self.requests: list[dict] = []
        self.job_ids: set[str] = set()
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *_):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        server: Stand_in = self.server
        with server.lock:
            request = {"path": self.path, "headers": dict(self.headers), "body": body}
            server.requests.append(request)
            scripted = server.answers.pop(0) if server.answers else None
        if scripted is not None and scripted != 200:
            text = f"scripted {scripted}"
            if scripted == 401:     # a server that echoes what it was given: the harness must not print it
                text = f"invalid token {self.headers.get('Authorization') or self.headers.get('Auth-Token')}"
            return self._answer(scripted, text, {"Retry-After": "0"} if scripted in (429, 503) else {})
        if self.path == "/echo":      # the in-process policy tests' endpoint
            return self._answer(200, "ok")
        if self.path.startswith("/api/submit/"):
            return self._squad(request)
        return self._kcidb(request)

    def _answer(self, status: int, text: str, headers: dict | None = None):
        data = text.encode()
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _kcidb(self, request):
        import kcidb_io
        if self.path != "/submit":
            return self._answer(404, "not found")
        if request["headers"].get("Authorization") != f"Bearer {TOKEN}":
            return self._answer(401, "bad token")
        try:
            doc = json.loads(request["body"])
            kcidb_io.schema.LATEST.validate(doc)
        except Exception as e:      # the stand-in's verdict goes back to the test
            request["invalid"] = str(e)[:300]
            return self._answer(400, "invalid KCIDB data")
        request["doc"] = doc
        return self._answer(200, "Submitted")

    def _squad(self, request):
        if request["headers"].get("Auth-Token") != TOKEN:
            return self._answer(401, "Authentication credentials were not provided.")
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            b"Content-Type: " + request["headers"]["Content-Type"].encode() + b"\r\n\r\n" + request["body"])
        fields = {part.get_param("name", header="content-disposition"): part.get_content()
                  for part in message.iter_parts()}
        request["fields"] = {k: json.loads(v) for k, v in fields.items()}     # JSON strings, as SQUAD's check
        job_id = request["fields"]["metadata"]["job_id"]
        with self.server.lock:
            if job_id in self.server.job_ids:
                return self._answer(400, f"There is already a test run with job_id {job_id}")
            self.server.job_ids.add(job_id)
        return self._answer(201, "")


@pytest.fixture
def server(request):
    answers = getattr(request, "param", [])
    s = Stand_in(answers)
    thread = threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield s
    s.shutdown()
    s.server_close()


@pytest.fixture
def token_file(tmp_path):
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    return path


def _record() -> dict:
    return json.loads((RUN / "run.json").read_text())


def _no_token(done):
    assert TOKEN not in done.stdout and TOKEN not in done.stderr, "the token was printed"
    assert "Traceback" not in done.stderr, done.stderr[-2000:]


@pytest.mark.parametrize("server", [[503]], indirect=True)
def test_kcidb_retries_a_503_then_submits_a_valid_document(server, token_file):
    started = time.monotonic()
    done = kvmconf("publish", str(RUN), "--kcidb", server.url + "/", "--token-file", str(token_file), timeout=60)
    _no_token(done)
    assert done.returncode == 0, done.stderr
    assert len(server.requests) == 2, [r["path"] for r in server.requests]
    assert time.monotonic() - started >= 1.0, "no backoff wait before the second attempt"
    last = server.requests[-1]
    assert last["path"] == "/submit" and "invalid" not in last, last.get("invalid")
    assert last["headers"]["Content-Type"] == "application/json"
    run_id = _record()["run_id"]
    doc = last["doc"]
    assert [c["id"] for c in doc["checkouts"]] == [f"kvmconf:{run_id}"]
    assert all(t["id"].startswith(f"kvmconf:{run_id}") for t in doc["tests"])
    assert len(doc["tests"]) == len(_record()["cases"]) + 1
    assert server.requests[0]["body"] == last["body"], "the retry sent another document"
    assert done.stdout.strip() == f"kcidb: run {run_id} -> {server.url}/submit: HTTP 200 (attempt 2)"


@pytest.mark.parametrize("server", [[503]], indirect=True)
def test_squad_retries_a_503_then_submits_the_form_fields(server, token_file):
    record = _record()
    done = kvmconf("publish", str(RUN), "--squad", server.url + "/kvm/kvmconf/{build}/{env}",
                   "--token-file", str(token_file), timeout=60)
    _no_token(done)
    assert done.returncode == 0, done.stderr
    assert len(server.requests) == 2
    from harness.report import squad
    build, env = squad.build_and_environment(record)
    last = server.requests[-1]
    assert last["path"] == f"/api/submit/kvm/kvmconf/{build}/{env}"
    assert last["headers"]["Content-Type"].startswith("multipart/form-data; boundary=")
    fields = last["fields"]
    assert set(fields) == {"tests", "metrics", "metadata"}
    assert fields["metadata"]["job_id"] == record["run_id"]
    assert fields["tests"] == squad.tests(record)
    assert squad.check(fields) == fields
    assert "HTTP 201 (attempt 2)" in done.stdout


def test_a_duplicate_squad_submission_counts_as_success(server, token_file):
    argv = ("publish", str(RUN), "--squad", server.url + "/kvm/kvmconf/6.1.0/qemu-tcg-all",
            "--token-file", str(token_file))
    first = kvmconf(*argv, timeout=60)
    assert first.returncode == 0 and "HTTP 201" in first.stdout, first.stderr
    again = kvmconf(*argv, timeout=60)
    _no_token(again)
    assert again.returncode == 0, again.stderr
    assert "HTTP 400, already there" in again.stdout
    assert len(server.requests) == 2            # the duplicate answer is final: not retried
    assert server.job_ids == {_record()["run_id"]}


@pytest.mark.parametrize("server", [[401]], indirect=True)
@pytest.mark.parametrize("where", ["kcidb", "squad"])
def test_401_is_not_retried_and_is_one_line(server, token_file, where):
    url = server.url if where == "kcidb" else server.url + "/g/p/b/e"
    done = kvmconf("publish", str(RUN), f"--{where}", url, "--token-file", str(token_file), timeout=60)
    _no_token(done)
    assert done.returncode == 2
    assert len(server.requests) == 1, "a 401 was retried"
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"kvmconf: {_record()['run_id']}: {where} {server.url}")
    assert "HTTP 401" in lines[0] and "not retried" in lines[0] and "<token>" in lines[0]


@pytest.fixture
def silent():
    """A server that takes connections and never answers (the kernel's accept queue)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    sock.close()


def test_a_server_that_never_answers_hits_the_deadline(silent, token_file):
    started = time.monotonic()
    done = kvmconf("publish", str(RUN), "--kcidb", silent, "--token-file", str(token_file),
                   "--deadline", "1.5", timeout=60)
    took = time.monotonic() - started
    _no_token(done)
    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert "deadline" in lines[0] and re.search(r"no answer in 1\.\d s", lines[0]), lines[0]
    assert took < 15, f"{took:.1f} s past a 1.5 s deadline"


# -- the retry policy in process (no waiting: a fake clock) ---------------------------
class FakeTime:
    def __init__(self):
        self.now, self.slept = 0.0, []

    def clock(self):
        return self.now

    def sleep(self, seconds):
        self.slept.append(seconds)
        self.now += seconds


def _policy(**kw):
    fake = FakeTime()
    return publish.Policy(sleep=fake.sleep, clock=fake.clock, **kw), fake


@pytest.mark.parametrize("server", [[503, 502, 500, 503]], indirect=True)
def test_backoff_is_1_2_4_then_it_gives_up(server):
    policy, fake = _policy()
    with pytest.raises(HarnessError, match=r"kcidb .*: failed 4 attempt\(s\): HTTP 503"):
        publish.post(server.url + "/submit", b"{}", {}, TOKEN, policy, "kcidb")
    assert fake.slept == [1.0, 2.0, 4.0] and len(server.requests) == 4


@pytest.mark.parametrize("server", [[429, 503]], indirect=True)
def test_429_is_retried(server):
    policy, fake = _policy()
    done = publish.post(server.url + "/echo", b"{}", {}, TOKEN, policy, "kcidb")
    assert (done.status, done.attempts) == (200, 3) and fake.slept == [1.0, 2.0]


@pytest.mark.parametrize("server", [[403]], indirect=True)
def test_other_4xx_is_final(server):
    policy, fake = _policy()
    with pytest.raises(HarnessError, match=r"HTTP 403 .*not retried"):
        publish.post(server.url + "/echo", b"{}", {}, TOKEN, policy, "kcidb")
    assert fake.slept == [] and len(server.requests) == 1


def test_connection_refused_is_retried_within_the_deadline():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()                    # nothing listens there now
    policy, fake = _policy(deadline=5.0)
    with pytest.raises(DeadlineExceeded, match=r"gave up after 3 attempt\(s\).*5 s deadline.*ConnectionRefused"):
        publish.post(f"http://127.0.0.1:{port}/submit", b"{}", {}, TOKEN, policy, "kcidb")
    assert fake.slept == [1.0, 2.0]     # 1 + 2 + 4 would pass 5 s: no third wait


def test_endpoints_and_credentials():
    assert publish.kcidb_endpoint("https://kcidb.example.org") == "https://kcidb.example.org/submit"
    assert publish.kcidb_endpoint("https://kcidb.example.org/rest/submit/") == "https://kcidb.example.org/rest/submit"
    assert (publish.squad_endpoint("https://squad.example.org/lkft/kvm/{build}/{env}", "6.1.0", "qemu-tcg-all")
            == "https://squad.example.org/api/submit/lkft/kvm/6.1.0/qemu-tcg-all")
    assert (publish.squad_endpoint("https://h/squad/api/submit/g/p/b/e")
            == "https://h/squad/api/submit/g/p/b/e")
    assert publish.shown("https://user:secret@h:8443/submit") == "https://h:8443/submit"
    with pytest.raises(HarnessError, match=r"^https://h/g/p/b/e: has user:password@") as e:
        publish.squad_endpoint("https://user:secret@h/g/p/b/e")
    assert "secret" not in str(e.value)


def test_token_file_forms(tmp_path):
    for text in (TOKEN, TOKEN + "\n", TOKEN + "\r\n"):
        (tmp_path / "t").write_text(text)
        assert publish.read_token(str(tmp_path / "t")) == TOKEN
    (tmp_path / "t").write_text(f"Bearer {TOKEN}\n")
    with pytest.raises(HarnessError, match=r"not a token") as e:
        publish.read_token(str(tmp_path / "t"))
    assert TOKEN not in str(e.value)


def test_publish_needs_a_destination(token_file):
    done = kvmconf("publish", str(RUN), "--token-file", str(token_file), timeout=60)
    assert done.returncode == 2 and done.stderr.splitlines() == [
        "kvmconf: publish needs --kcidb URL or --squad URL/GROUP/PROJECT/BUILD/ENV (or both)"]
