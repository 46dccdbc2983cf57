"""The history store (issue 15 item 1): SQLite by default, PostgreSQL with --db.

Every store test runs twice, on an SQLite file and on a real PostgreSQL that this
module starts itself: Debian's postgresql (make deps installs it), a throwaway
cluster made by initdb in a temporary folder, run as the `postgres` user when the
tests run as root (runuser), listening on a unix socket in that folder only
(listen_addresses=''), stopped with `pg_ctl -m immediate stop` afterwards. Each test
gets a database of its own.

Also: a file made by the store before migrations (its code is copied below) migrates
in place; 8 writer processes at once, each submitting runs of its own and duplicates
of the others', store every run exactly once; recent_cases and flake_scores on
crafted records; a bad --db is one line naming the flag, exit 2.
"""
from __future__ import annotations

import glob
import json
import os
import pwd
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.results import history
from harness.results.record import RunRecord
from tests.conftest import REPO, end_with_pytest, kvmconf

WRITERS = 8


# -- the PostgreSQL server -------------------------------------------------------------
def _pg_bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parts[4]) if Path(p).parts[4].isdigit() else 0)
    return Path(found[-1]).parent if found else None


@pytest.fixture(scope="session")
def postgres():
    """A PostgreSQL cluster of the tests' own: {"bindir", "socket", "url"} (the
    `postgres` database, as the superuser)."""
    bindir = _pg_bindir()
    if bindir is None:
        message = "PostgreSQL is not installed (/usr/lib/postgresql/*/bin/initdb): make deps installs it"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    history._psycopg()          # psycopg, or the one-line StoreError
    root = Path(tempfile.mkdtemp(prefix="kvmconf-pg-"))
    as_postgres: list[str] = []
    if os.geteuid() == 0:       # initdb and postgres refuse to run as root
        pw = pwd.getpwnam("postgres")
        os.chown(root, pw.pw_uid, pw.pw_gid)
        as_postgres = ["runuser", "-u", "postgres", "--"]
    data, log = root / "data", root / "server.log"

    def run(*argv, timeout: float) -> subprocess.CompletedProcess:
        return subprocess.run(as_postgres + [str(a) for a in argv], capture_output=True, text=True,
                              timeout=timeout, check=False)

    server = None
    try:
        done = run(bindir / "initdb", "-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8",
                   "--locale=C", "--no-sync", timeout=180)
        assert done.returncode == 0, f"initdb: {done.stdout[-2000:]}{done.stderr[-2000:]}"
        with open(log, "w") as out:
            if as_postgres:
                os.chown(log, pw.pw_uid, pw.pw_gid)
            # A child of this pytest (SIGTERM when it dies: runuser passes it on).
            server = subprocess.Popen(
                as_postgres + [str(bindir / "postgres"), "-D", str(data), "-k", str(root),
                               "-c", "listen_addresses=", "-c", "fsync=off", "-c", "shared_buffers=16MB",
                               "-c", "max_connections=60"],
                stdout=out, stderr=subprocess.STDOUT, preexec_fn=end_with_pytest)
        url = f"postgresql://postgres@/postgres?host={root}"
        psycopg = history._psycopg()
        deadline = time.monotonic() + 90
        while True:
            try:
                psycopg.connect(url, connect_timeout=5).close()
                break
            except psycopg.OperationalError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"postgres did not start: {log.read_text()[-3000:]}") from None
                time.sleep(0.2)
        yield {"bindir": bindir, "socket": root, "url": url}
    finally:
        if server is not None:
            run(bindir / "pg_ctl", "-D", data, "-m", "immediate", "-w", "-t", "30", "stop", timeout=60)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, 9)
                server.wait(timeout=10)
        shutil.rmtree(root, ignore_errors=True)


def _new_database(postgres) -> str:
    psycopg = history._psycopg()
    name = "t_" + uuid.uuid4().hex[:12]
    with psycopg.connect(postgres["url"], autocommit=True, connect_timeout=10) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return f"postgresql://postgres@/{name}?host={postgres['socket']}"


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path):
    """A fresh, empty store's address: an SQLite file path or a PostgreSQL URL."""
    if request.param == "sqlite":
        return str(tmp_path / "history.sqlite")
    return _new_database(request.getfixturevalue("postgres"))


@pytest.fixture
def store(url):
    with history.open_store(url) as s:
        yield s


# -- records ---------------------------------------------------------------------------
PLATFORM = {"host_cpu": "AMD EPYC", "accel": "tcg", "accel_reason": "test", "qemu": "QEMU 7.2",
            "machine_profile": "all", "boot": "pvh-vmlinux", "capabilities": {"host": {"cpu_vendor": "AuthenticAMD"}}}


def record(run_id: str, started: str, cases: dict, label: str = "", platform: dict | None = None) -> dict:
    """A run record of the shape RunRecord writes. `cases`: id -> status, or
    (status, [earlier attempts' statuses]) for a retried case."""
    out = []
    for case_id, status in cases.items():
        earlier = []
        if isinstance(status, tuple):
            status, earlier = status
        case = {"id": case_id, "feature": case_id.split("/")[0], "status": status, "reason": "",
                "duration_s": 1.25, "seed": None, "reproduce": f"kvmconf run --case {case_id}", "divergence": None}
        if earlier:
            case.update(retried=True, attempts=[{"status": s, "reason": "x", "duration_s": 1.0} for s in earlier]
                        + [{"status": status, "reason": "", "duration_s": 1.25}])
        out.append(case)
    summary = {s: sum(1 for c in out if c["status"].lower() == s) for s in ("pass", "fail", "error", "skip", "miss")}
    features = sorted({c["feature"] for c in out})
    return {"schema": "kvmconf-run/1", "run_id": run_id, "started": started, "label": label,
            "harness": {"version": "0.1.0", "git": "abc1234"}, "profiles": {f: "mainline" for f in features},
            "kernel": {"kind": "debian", "version": "6.1.0-57-amd64", "sha256": "ab" * 32},
            "platform": platform if platform is not None else PLATFORM, "summary": summary, "cases": out,
            "random": [], "findings": [], "profile_verdict": {f: "mainline" for f in features},
            "model_coverage": [], "timing": {"boot_to_ready_s": 7.5, "total_s": 60.0},
            "target": {"kind": "qemu", "where": "qemu"}, "seed": 12345}


def _started(n: int) -> str:
    return f"2026-12-01T{n // 60:02d}:{n % 60:02d}:00+00:00"


# -- the tests -------------------------------------------------------------------------
def test_a_run_is_stored_whole_and_once(store, tmp_path):
    """A record as RunRecord writes it (divergence, finding, coverage, a retried case):
    every table gets its rows; the same record again is a duplicate, ignored."""
    rec = RunRecord(tmp_path / "run.json", "20261201-120000-abcd", "whole", {"version": "0.1.0", "git": "x"},
                    {"syndbg": "mainline"}, {"syndbg": ("mainline", "v7")})
    rec.data["kernel"] = {"kind": "debian", "version": "6.1.0", "sha256": "cd" * 32}
    rec.data["platform"] = PLATFORM
    rec.data["seed"] = 2544189982           # past 2**31
    rec.plan([("syndbg/a", "syndbg"), ("syndbg/b", "syndbg"), ("syndbg/c", "syndbg")], "kvmconf run")
    rec.finish("syndbg/a", "PASS", "", 1.5)
    rec.finish("syndbg/b", "FAIL", "step 3: vector expected 0xd, observed null \x00 (a NUL)", 2.0,
               divergence={"step": 3, "action": "vcpu0 rdmsr 0x400000f1", "field": "vector",
                           "expected": "0xd", "observed": "null", "matches_profile": "v7"})
    rec.finish("syndbg/c", "PASS", "", 3.0, attempts=[{"status": "ERROR", "reason": "boot", "duration_s": 9.0}])
    rec.add_finding("syndbg/x", "syndbg", "a title", "intended", "observed", "mechanism", "syndbg/b")
    rec.add_coverage("syndbg", "named", {"r1", "r2"}, {"r1", "r2", "r3", "r4"}, {"r4": "needs hardware"})
    assert store.append(rec.data, rec.path) is True
    counts = {t: store.count(t) for t in ("runs", "cases", "case_attempts", "divergences", "findings",
                                          "profile_verdicts", "model_coverage", "platforms")}
    assert counts == {"runs": 1, "cases": 3, "case_attempts": 2, "divergences": 1, "findings": 1,
                      "profile_verdicts": 1, "model_coverage": 1, "platforms": 1}
    assert store.append(json.loads(json.dumps(rec.data)), rec.path) is False   # as read back from run.json
    assert {t: store.count(t) for t in counts} == counts
    (run,) = store.runs(10)
    assert run["run_id"] == "20261201-120000-abcd" and run["label"] == "whole"
    assert run["summary"] == {"pass": 2, "fail": 1, "error": 0, "skip": 0, "miss": 0}
    assert run["record_path"] == str(rec.path) and run["platform"] == history.fingerprint(PLATFORM)
    reasons = {r["case_id"]: r["reason"] for r in store.recent_cases(1)}
    assert reasons["syndbg/b"] == "step 3: vector expected 0xd, observed null \ufffd (a NUL)"
    assert store.schema_version() == history.LATEST


def test_a_run_id_collision_is_an_error_not_a_loss(store):
    assert store.append(record("r1", _started(1), {"a/x": "PASS"}), "p")
    with pytest.raises(history.StoreError, match=r"run r1 is already stored from a different run record"):
        store.append(record("r1", _started(1), {"a/x": "FAIL"}), "p")
    assert [r["status"] for r in store.recent_cases(5)] == ["PASS"]


def test_append_is_one_transaction(store):
    """A record that breaks half-way (a case without an id) leaves nothing behind."""
    bad = record("r1", _started(1), {"a/x": "PASS", "a/y": "PASS"})
    del bad["cases"][1]["id"]
    with pytest.raises(history.StoreError, match=r"run r1: not a run record"):
        store.append(bad, "p")
    assert store.count("runs") == 0 and store.count("cases") == 0 and store.count("platforms") == 0
    assert store.append(record("r1", _started(1), {"a/x": "PASS", "a/y": "PASS"}), "p")
    assert store.count("cases") == 2


def test_runs_and_recent_cases_newest_first(store):
    # appended out of order: the order is `started`'s
    for n in (2, 0, 3, 1):
        store.append(record(f"run-{n}", _started(n), {"b/two": "PASS", "a/one": "FAIL" if n == 3 else "PASS"},
                            label=f"n{n}"), f"/r/{n}")
    assert [r["run_id"] for r in store.runs(3)] == ["run-3", "run-2", "run-1"]
    rows = store.recent_cases(2)
    assert [(r["run_id"], r["case_id"]) for r in rows] == [
        ("run-3", "b/two"), ("run-3", "a/one"), ("run-2", "b/two"), ("run-2", "a/one")]  # the record's order
    assert rows[1] == {"run_id": "run-3", "started": _started(3), "case_id": "a/one", "feature": "a",
                       "status": "FAIL", "reason": "", "duration_s": 1.25}
    assert len(store.recent_cases(100)) == 8 and store.recent_cases(0) == []


def test_flake_scores(store):
    runs = [  # oldest first; each column one case
        {"flip/a": "PASS", "steady/b": "PASS", "window/f": "FAIL", "skips/e": "PASS", "retry/d": "PASS"},
        {"flip/a": "FAIL", "steady/b": "PASS", "window/f": "FAIL", "skips/e": "MISS", "retry/d": "PASS"},
        {"flip/a": "PASS", "steady/b": "PASS", "window/f": "PASS", "skips/e": "PASS",
         "retry/d": ("PASS", ["ERROR"])},
        {"flip/a": "PASS", "steady/b": "PASS", "window/f": "PASS", "skips/e": "SKIP", "retry/d": "PASS"},
        {"steady/b": "PASS", "window/f": "PASS", "skips/e": "PASS", "retry/d": "PASS",
         "once/c": ("PASS", ["ERROR"])},
    ]
    for n in reversed(range(len(runs))):        # appended newest first: the order is `started`'s
        store.append(record(f"run-{n}", _started(n), runs[n]), "p")
    scores = store.flake_scores(10)
    assert scores == {
        "flip/a": pytest.approx(2 / 3),      # PASS FAIL PASS PASS: 2 changes in 3 comparisons
        "steady/b": 0.0,
        "window/f": pytest.approx(1 / 4),    # FAIL FAIL PASS PASS PASS
        "skips/e": 0.0,                      # MISS and SKIP are not outcomes: PASS PASS PASS
        "retry/d": pytest.approx(1 / 5),     # 4 between runs + 1 within (ERROR then PASS on the retry)
        "once/c": 1.0,                       # one run, ERROR then PASS: flaky all the same
    }
    assert store.flake_scores(3)["window/f"] == 0.0     # its last 3 runs: PASS PASS PASS
    assert store.flake_scores(3)["flip/a"] == pytest.approx(1 / 2)
    assert store.flake_scores(1)["once/c"] == 1.0 and store.flake_scores(1)["flip/a"] == 0.0


def test_record_level_retried_counts_listed_attempts(store):
    """Attempts listed under a case count when the case or the record says `retried`."""
    rec = record("r1", _started(1), {"a/x": ("PASS", ["ERROR"]), "a/y": ("PASS", ["ERROR"])})
    del rec["cases"][0]["retried"], rec["cases"][1]["retried"]
    store.append(rec, "p")
    rec2 = record("r2", _started(2), {"b/x": ("PASS", ["ERROR"])})
    del rec2["cases"][0]["retried"]
    rec2["retried"] = True
    store.append(rec2, "p")
    assert store.flake_scores(5) == {"a/x": 0.0, "a/y": 0.0, "b/x": 1.0}


# -- many writers ------------------------------------------------------------------------
WRITER = r"""
import json, random, sys, time
from pathlib import Path
from harness.results import history
url, spec, go, ready = sys.argv[1], json.loads(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4])
ready.touch()
while not go.exists():
    time.sleep(0.005)
stored, duplicates, seconds = [], 0, []
store = history.open_store(url)          # all at once on a store not yet migrated
for n, rec in enumerate(spec["records"]):
    t = time.perf_counter()
    # half through the module-level append (a connection of its own each time)
    ok = history.append(url, rec, "run.json") if n % 2 else store.append(rec, "run.json")
    seconds.append(time.perf_counter() - t)
    if ok:
        stored.append(rec["run_id"])
    else:
        duplicates += 1
store.close()
print(json.dumps({"stored": stored, "duplicates": duplicates, "seconds": seconds}))
"""


def test_concurrent_writers_store_every_run_once(url, tmp_path):
    """8 processes at once: each submits 6 runs of its own, the runs of two other
    writers (duplicates racing their originals), and one run every writer submits."""
    import random
    own = {w: [record(f"w{w}-r{k}", _started(w * 10 + k),
                      {f"feat{w % 3}/case{c}": ("PASS", "FAIL", "ERROR")[(w + k + c) % 3] for c in range(20)},
                      platform=PLATFORM if w % 2 else {**PLATFORM, "accel": "kvm"})
               for k in range(6)] for w in range(WRITERS)}
    shared = record("shared-run", _started(500), {"smoke/boot": "PASS"})
    go = tmp_path / "go"
    procs = []
    for w in range(WRITERS):
        mine = own[w] + own[(w + 1) % WRITERS] + own[(w + 3) % WRITERS] + [shared]
        random.Random(w).shuffle(mine)
        procs.append(subprocess.Popen([sys.executable, "-c", WRITER, url, json.dumps({"records": mine}), str(go),
                                       str(tmp_path / f"ready-{w}")],
                                      cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                      preexec_fn=end_with_pytest))
    deadline = time.monotonic() + 120           # every interpreter up, polling for the start
    while len(list(tmp_path.glob("ready-*"))) < WRITERS:
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs), "a writer did not start"
        time.sleep(0.02)
    started = time.monotonic()
    go.touch()
    results = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-3000:]
        results.append(json.loads(out))
    wall = time.monotonic() - started
    distinct = {r["run_id"] for rs in own.values() for r in rs} | {"shared-run"}
    stored = [run_id for r in results for run_id in r["stored"]]
    submitted = WRITERS * (6 * 3 + 1)
    assert sorted(stored) == sorted(distinct), "a run lost, or stored twice"
    assert sum(r["duplicates"] for r in results) == submitted - len(distinct)
    with history.open_store(url) as s:
        assert s.count("runs") == len(distinct) == 49
        assert s.count("cases") == 48 * 20 + 1
        assert s.count("platforms") == 2
        assert s.schema_version() == history.LATEST
        per_run = {}
        for row in s.recent_cases(100):
            per_run[row["run_id"]] = per_run.get(row["run_id"], 0) + 1
        assert per_run == {**{r: 20 for r in distinct - {"shared-run"}}, "shared-run": 1}
    times = sorted(t for r in results for t in r["seconds"])
    print(f"\n{url.split(':')[0] if '://' in url else 'sqlite'}: {WRITERS} writers, {submitted} submissions, "
          f"{len(distinct)} runs stored in {wall:.2f} s; append median {1000 * times[len(times) // 2]:.1f} ms, "
          f"max {1000 * times[-1]:.1f} ms")


# -- migration of a file made before migrations ----------------------------------------------
# harness/results/history.py as it was before migrations (commit ae8f99d), verbatim.
OLD_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
  run_id TEXT PRIMARY KEY, started TEXT, label TEXT, kernel_version TEXT,
  kernel_sha256 TEXT, accel TEXT, summary TEXT, record_path TEXT);
CREATE TABLE IF NOT EXISTS cases (
  run_id TEXT, case_id TEXT, feature TEXT, status TEXT, reason TEXT, duration_s REAL,
  PRIMARY KEY (run_id, case_id));
"""


def old_append(db: Path, record: dict, record_path: Path) -> None:
    db.parent.mkdir(parents=True, exist_ok=True)
    kernel = record.get("kernel") or {}
    platform = record.get("platform") or {}
    with sqlite3.connect(db, timeout=30) as conn:
        conn.executescript(OLD_SCHEMA)
        conn.execute("INSERT OR REPLACE INTO runs VALUES (?,?,?,?,?,?,?,?)",
                     (record["run_id"], record["started"], record["label"], kernel.get("version"),
                      kernel.get("sha256"), platform.get("accel"), json.dumps(record["summary"]),
                      str(record_path)))
        conn.executemany("INSERT OR REPLACE INTO cases VALUES (?,?,?,?,?,?)",
                         [(record["run_id"], c["id"], c["feature"], c["status"], c["reason"],
                           c["duration_s"]) for c in record["cases"]])
    conn.close()


def test_a_file_from_before_migrations_migrates_in_place(tmp_path):
    db = tmp_path / "results" / "history.sqlite"
    old_append(db, record("old-1", _started(1), {"a/x": "PASS", "a/y": "FAIL"}), tmp_path / "o1" / "run.json")
    old_append(db, record("old-2", _started(2), {"a/x": "FAIL", "a/y": "FAIL"}), tmp_path / "o2" / "run.json")
    with history.open_store(db) as s:
        assert s.schema_version() == history.LATEST
        assert [r["run_id"] for r in s.runs(10)] == ["old-2", "old-1"]
        assert s.runs(10)[1]["record_path"] == str(tmp_path / "o1" / "run.json")
        assert s.append(record("old-2", _started(2), {"a/x": "FAIL", "a/y": "FAIL"}), "again") is False
        assert s.append(record("new-3", _started(3), {"a/x": "PASS", "a/y": ("FAIL", ["ERROR"])}), "n3") is True
        assert [(r["run_id"], r["case_id"], r["status"]) for r in s.recent_cases(2)] == [
            ("new-3", "a/x", "PASS"), ("new-3", "a/y", "FAIL"), ("old-2", "a/x", "FAIL"), ("old-2", "a/y", "FAIL")]
        assert s.flake_scores(10) == {"a/x": 1.0, "a/y": pytest.approx(1 / 3)}
    with sqlite3.connect(db) as conn:
        versions = conn.execute("SELECT version FROM schema_version ORDER BY version").fetchall()
        cases = conn.execute("SELECT run_id, case_id, feature, status, reason, duration_s FROM cases"
                             " WHERE run_id = 'old-1' ORDER BY case_id").fetchall()
    conn.close()
    assert versions == [(v.version,) for v in history.MIGRATIONS]
    assert cases == [("old-1", "a/x", "a", "PASS", "", 1.25), ("old-1", "a/y", "a", "FAIL", "", 1.25)]
    with history.open_store(db) as s:            # opened again: nothing more to do
        assert s.schema_version() == history.LATEST and s.count("runs") == 3


def test_module_level_append_still_works(tmp_path):
    db = tmp_path / "h.sqlite"
    assert history.append(db, record("r1", _started(1), {"a/x": "PASS"}), tmp_path / "run.json") is True
    assert history.append(db, record("r1", _started(1), {"a/x": "PASS"}), tmp_path / "run.json") is False
    with sqlite3.connect(db) as conn:        # the columns the older readers use are where they were
        assert conn.execute("SELECT label FROM runs").fetchall() == [("",)]
        assert conn.execute("SELECT case_id, status FROM cases").fetchall() == [("a/x", "PASS")]
    conn.close()


def test_sqlite_never_imports_psycopg(tmp_path):
    code = ("import sys; from pathlib import Path; from harness.results import history; "
            "from tests.test_history_store import record; "
            f"assert history.append(Path({str(tmp_path / 'h.sqlite')!r}), record('r', 'x', {{'a/b': 'PASS'}}), 'p'); "
            "assert 'psycopg' not in sys.modules, 'psycopg imported'")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


def test_destination():
    env = os.environ.pop(history.ENV, None)
    try:
        default = Path("/d/history.sqlite")
        assert history.destination(None, None, default) == default
        assert history.destination(None, "/h.sqlite", default) == Path("/h.sqlite")
        assert history.destination("postgresql://h/db", None, default) == "postgresql://h/db"
        assert history.destination("postgresql://h/db", "/h.sqlite", default) == "postgresql://h/db"
        os.environ[history.ENV] = "postgresql://env/db"
        assert history.destination("postgresql://env/db", None, default) == "postgresql://env/db"
        # --db's default is $KVMCONF_DB: a command that names its own --history keeps it
        assert history.destination("postgresql://env/db", "/h.sqlite", default) == Path("/h.sqlite")
    finally:
        os.environ.pop(history.ENV, None)
        if env is not None:
            os.environ[history.ENV] = env
    assert history.redact("postgresql://u:s3cret@h/db?password=x&sslmode=require") == \
        "postgresql://u:***@h/db?password=***&sslmode=require"


# -- a bad --db --------------------------------------------------------------------------------
@pytest.mark.parametrize("value, env, line", [
    ("mysql://h/db", None, "kvmconf: --db mysql://h/db: expected postgresql://[USER@]HOST[:PORT]/DBNAME"),
    ("postgresql://u:s3cret@/db?host=/nonexistent", None,
     "kvmconf: --db postgresql://u:***@/db?host=/nonexistent: cannot connect (connection"),
    (None, "postgresql:///db?host=/nonexistent", "kvmconf: --db postgresql:///db?host=/nonexistent: cannot connect"),
], ids=["scheme", "no-server", "from-env"])
def test_bad_db_is_one_line_exit_2(value, env, line):
    argv = ["run", "--case", "smoke/boot"] + (["--db", value] if value else [])
    done = kvmconf(*argv, env={history.ENV: env or "", "KVMCONF_QEMU": "qemu-system-nonexistent"}, timeout=120)
    assert done.returncode == 2, done.stderr[-2000:]
    assert len(done.stderr.splitlines()) == 1 and done.stderr.startswith(line), done.stderr
    assert "s3cret" not in done.stderr
    if env:
        assert done.stderr.rstrip().endswith("(from $KVMCONF_DB)"), done.stderr


def test_pg_a_broken_connection_is_retried(postgres):
    """The server ends the store's connection (a restart, a failover): append connects
    again and stores the run (idempotent, so a retry after a commit that went through
    finds it there)."""
    psycopg = history._psycopg()
    with history.open_store(_new_database(postgres)) as s:
        ended = s._conn.info.backend_pid
        with psycopg.connect(postgres["url"], autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (ended,))
        assert s.append(record("r1", _started(1), {"a/x": "PASS"}), "p") is True
        assert s._conn.info.backend_pid != ended
        assert s.count("runs") == 1 and s.append(record("r1", _started(1), {"a/x": "PASS"}), "p") is False


def test_pg_database_that_does_not_exist_is_a_store_error(postgres):
    url = f"postgresql://postgres@/no_such_db?host={postgres['socket']}"
    with pytest.raises(history.StoreError, match=r'cannot connect .*database "no_such_db" does not exist'):
        history.open_store(url)
    assert isinstance(history.StoreError("x"), HarnessError)
