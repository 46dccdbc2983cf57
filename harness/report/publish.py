"""Sending a run record to KCIDB or SQUAD over HTTP (`kvmconf publish`).

KCIDB   kcidb-rest's `POST <URL>/submit`: the KCIDB JSON document (harness/report/kcidb.py,
        validated with kcidb-io), header `Authorization: Bearer <token>`. KCIDB merges
        objects by id and every id derives from the run id: a resubmission is harmless.
SQUAD   `POST <SQUAD>/api/submit/<group>/<project>/<build>/<env>`: multipart form fields
        tests, metrics and metadata (JSON strings, harness/report/squad.py), header
        `Auth-Token: <token>`. SQUAD refuses a second test run with the same job_id in a
        build (core/tasks ReceiveTestRun raises DuplicatedTestJob: "There is already a
        test run with job_id X", api/views answers 400 with that text); job_id is the run
        id, so that answer means "already published" and counts as success.

Every POST is retried with exponential backoff (attempts 4, waits 1, 2, 4 s, or the
server's Retry-After when longer) on connection errors, timeouts, 5xx and 429; any other
4xx is final. No attempt starts, and no wait or read lasts, past the deadline. The token
is never printed: it is scrubbed from every message (a server may echo headers).
"""
from __future__ import annotations

import http.client
import json
import re
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from harness.errors import DeadlineExceeded, HarnessError, UsageError

SLUG = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*")       # SQUAD's slug_validator
DUPLICATE = re.compile(r"already a test run with job_id", re.I)
USER_AGENT = "kvmconf-publish/1"
_TOKEN_MAX = 4096


@dataclass
class Policy:
    attempts: int = 4
    waits: tuple[float, ...] = (1.0, 2.0, 4.0)     # before attempts 2, 3, 4
    deadline: float = 60.0                          # seconds for all attempts of one POST
    attempt_timeout: float = 30.0                   # one attempt's connect + answer
    sleep: object = time.sleep
    clock: object = time.monotonic


@dataclass
class Outcome:
    where: str              # the URL, without credentials
    status: int
    attempts: int
    note: str = ""          # "already there (duplicate job_id)" and the like
    body: bytes = field(default=b"", repr=False)


# -- inputs (also the flags' parse-time checks) --------------------------------------
def read_token(path: str) -> str:
    """The token in `path`: one non-empty line (a final newline allowed), printable
    ASCII without spaces. UsageError "PATH: what is wrong" (never the token)."""
    try:
        with open(path, "rb") as f:
            data = f.read(_TOKEN_MAX + 2)
    except OSError as e:
        raise UsageError(f"{path}: unreadable ({e.strerror})") from None
    if len(data) > _TOKEN_MAX + 1:
        raise UsageError(f"{path}: too long for a token (more than {_TOKEN_MAX} bytes)")
    text = data[:-1] if data.endswith(b"\n") else data
    text = text[:-1] if text.endswith(b"\r") else text
    if not text.strip():
        raise UsageError(f"{path}: empty (expected the token on one line)")
    if b"\n" in text or b"\r" in text:
        raise UsageError(f"{path}: more than one line (expected the token alone on one line)")
    if not all(0x21 <= b <= 0x7e for b in text):
        raise UsageError(f"{path}: not a token (spaces, control or non-ASCII characters)")
    return text.decode()


def _http_url(value: str) -> urllib.parse.SplitResult:
    if not value:
        raise UsageError("'': empty (expected http(s)://HOST/...)")
    parts = urllib.parse.urlsplit(value)
    if parts.scheme.lower() not in ("http", "https"):
        raise UsageError(f"{value}: expected an http:// or https:// URL")
    if not parts.hostname:
        raise UsageError(f"{value}: no host")
    if parts.username is not None or parts.password is not None:
        raise UsageError(f"{shown(value)}: has user:password@ (the token goes in --token-file)")
    try:
        parts.port
    except ValueError:
        raise UsageError(f"{value}: not a valid port") from None
    if parts.query or parts.fragment:
        raise UsageError(f"{value}: has a query or fragment")
    if any(c.isspace() for c in value):
        raise UsageError(f"{value}: has spaces (%-escape them)")
    return parts


def kcidb_endpoint(value: str) -> str:
    """--kcidb URL: kcidb-rest's base URL (or its /submit URL); the POST goes to .../submit."""
    parts = _http_url(value)
    path = parts.path.rstrip("/")
    if not path.endswith("/submit"):
        path += "/submit"
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def squad_endpoint(value: str, build: str = "build", env: str = "env") -> str:
    """--squad URL/GROUP/PROJECT/BUILD/ENV (or the .../api/submit/... URL itself): the
    submit URL. "{build}" and "{env}" are the run's suggestions (squad.build_and_environment)."""
    parts = _http_url(value.replace("{build}", build).replace("{env}", env))
    segments = [s for s in parts.path.split("/") if s]
    if len(segments) < 4:
        raise UsageError(f"{value}: expected SQUAD's URL then /GROUP/PROJECT/BUILD/ENV")
    base, names = segments[:-4], segments[-4:]
    for what, name in zip(("group", "project", "build", "environment"), names):
        name = urllib.parse.unquote(name)
        if not SLUG.fullmatch(name):
            raise UsageError(f"{value}: {what} {name!r} is not a SQUAD slug ([a-zA-Z0-9][a-zA-Z0-9_.-]*)")
    if base[-2:] == ["api", "submit"]:
        base = base[:-2]
    path = "/" + "/".join(base + ["api", "submit"] + names)
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def shown(url: str) -> str:
    """The URL without user:password."""
    parts = urllib.parse.urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


# -- the POST with retries ---------------------------------------------------------------
def _scrub(text: str, token: str) -> str:
    text = " ".join(text.split())
    return text.replace(token, "<token>") if token else text


def _retry_after(headers) -> float | None:
    value = (headers or {}).get("Retry-After") if headers is not None else None
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def post(url: str, body: bytes, headers: dict[str, str], token: str, policy: Policy,
         what: str, accept=None) -> Outcome:
    """POST `body` until a 2xx (or an answer `accept(status, text)` returns a note for),
    a final 4xx, the attempts or the deadline run out. HarnessError names `what`, the
    URL (no credentials) and the last problem, one line, never the token."""
    where = shown(url)
    start = policy.clock()
    end = start + policy.deadline
    last, retry_after = "no attempt", None
    for attempt in range(1, policy.attempts + 1):
        if attempt > 1:
            wait = policy.waits[min(attempt - 2, len(policy.waits) - 1)] if policy.waits else 0.0
            wait = max(wait, retry_after or 0.0)
            if policy.clock() + wait >= end:
                raise DeadlineExceeded(f"{what} {where}: gave up after {attempt - 1} attempt(s) "
                                       f"(the {policy.deadline:g} s deadline comes before the next): {last}")
            policy.sleep(wait)
        retry_after = None
        remaining = end - policy.clock()
        if remaining <= 0:
            raise DeadlineExceeded(f"{what} {where}: no answer within the {policy.deadline:g} s deadline "
                                   f"({attempt - 1} attempt(s)): {last}")
        request = urllib.request.Request(url, data=body, method="POST",
                                         headers={"User-Agent": USER_AGENT, **headers})
        try:
            with urllib.request.urlopen(request, timeout=min(policy.attempt_timeout, remaining)) as answer:
                return Outcome(where, answer.status, attempt, body=answer.read(1 << 20))
        except urllib.error.HTTPError as e:
            try:
                text = e.read(4096).decode("utf-8", "replace")
            except Exception:       # a connection dropped while reading the error body
                text = ""
            note = accept(e.code, text) if accept else None
            if note:
                return Outcome(where, e.code, attempt, note=note)
            last = f"HTTP {e.code} {e.reason}" + (f": {_scrub(text, token)[:200]}" if text.strip() else "")
            if e.code not in (429,) and e.code < 500:
                raise HarnessError(f"{what} {where}: {last} (not retried)") from None
            retry_after = _retry_after(e.headers)
        except (OSError, http.client.HTTPException) as e:    # URLError is an OSError
            reason = getattr(e, "reason", e)
            if isinstance(reason, (socket.timeout, TimeoutError)) or isinstance(e, (socket.timeout, TimeoutError)):
                last = f"no answer in {min(policy.attempt_timeout, remaining):.1f} s"
            else:
                last = _scrub(f"{type(reason).__name__}: {reason}", token)[:200]
    raise HarnessError(f"{what} {where}: failed {policy.attempts} attempt(s): {last}")


# -- KCIDB and SQUAD --------------------------------------------------------------------
def kcidb(record: dict, run_folder: Path, url: str, token: str, policy: Policy,
          artifacts_url: str | None = None) -> Outcome:
    from harness.report import kcidb as kcidb_doc
    doc = kcidb_doc.validate(kcidb_doc.document(record, run_folder, artifacts_url))
    body = json.dumps(doc).encode()
    return post(kcidb_endpoint(url), body, {"Content-Type": "application/json",
                                            "Authorization": f"Bearer {token}"},
                token, policy, "kcidb")


def multipart(fields: dict[str, str]) -> tuple[bytes, str]:
    """Form fields as multipart/form-data (what `curl --form name=value` sends)."""
    boundary = f"kvmconf-{uuid.uuid4().hex}"
    chunks = []
    for name, value in fields.items():
        chunks.append(f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n"
                      f"Content-Type: application/json; charset=utf-8\r\n\r\n".encode())
        chunks.append(value.encode() + b"\r\n")
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks), f"multipart/form-data; boundary={boundary}"


def _squad_duplicate(status: int, text: str) -> str | None:
    if status == 400 and DUPLICATE.search(text):
        return "already there (SQUAD has this job_id: the run was published before)"
    return None


def squad(record: dict, run_folder: Path, url: str, token: str, policy: Policy,
          artifacts_url: str | None = None) -> Outcome:
    from harness.report import kcidb as kcidb_doc
    from harness.report import squad as squad_files
    build, env = squad_files.build_and_environment(record)
    files = squad_files.submission(record, kcidb_doc.artifact_base(run_folder, artifacts_url, record["run_id"]))
    body, content_type = multipart({name: json.dumps(files[name]) for name in squad_files.FILES})
    return post(squad_endpoint(url, build, env), body, {"Content-Type": content_type, "Auth-Token": token},
                token, policy, "squad", accept=_squad_duplicate)
