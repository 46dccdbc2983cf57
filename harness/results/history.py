"""The history store: every run's record, for compare, report and flake scores.

SQLite by default (results/history.sqlite, or `kvmconf run --history PATH`);
PostgreSQL when `--db postgresql://...` (or $KVMCONF_DB) is given, through psycopg 3
(imported only then, so SQLite users never need it). Both hold one schema, built by
the versioned migrations of MIGRATIONS, applied when a store is opened:

  runs              one row per run (run_id unique), its kernel, harness, summary,
                    timing, the submitting host, the record's digest
  cases             one row per case of a run (run_id, case_id)
  case_attempts     every attempt of a retried case (`retried: true`, `attempts`)
  divergences       a case's first divergence from the model
  findings          the run's findings (id, feature, mechanism, the cases that hit it)
  profile_verdicts  per feature: the expected profile and the one that explains the run
  model_coverage    per feature: the model rules the named cases and random scripts reached
  platforms         platform fingerprints (sha256 of run.json's `platform`), each once

Many hosts may append at once: `append` is one transaction, and idempotent per run id
(INSERT ... ON CONFLICT DO NOTHING on runs.run_id; the rest of the run is written only
by the transaction whose runs row went in), so a run submitted twice, or by two hosts
at the same time, is stored once. A second record under a run id already stored with
a different digest is a run id collision: StoreError, not a silent loss.

Versions: 1 is the layout this module had before migrations (tables runs and cases,
CREATE TABLE IF NOT EXISTS, so a file made then is at version 1 without change);
2 adds the rest. A database is migrated in place, in one transaction per version,
under a lock (SQLite: BEGIN IMMEDIATE; PostgreSQL: an advisory lock).
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import socket
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path

from harness.errors import HarnessError, UsageError

DEFAULT = Path(__file__).resolve().parents[2] / "results" / "history.sqlite"
ENV = "KVMCONF_DB"
PG_SCHEMES = ("postgresql://", "postgres://")
_PG_LOCK = 0x6B766D63   # "kvmc": the advisory lock the migrations take


class StoreError(HarnessError):
    """The history store could not be opened or written: one line naming it."""


@dataclass(frozen=True)
class Migration:
    version: int
    title: str
    # each step: one SQL statement for both dialects, or {"sqlite": ..., "postgresql": ...}
    steps: list = field(default_factory=list)


def _add(table: str, *columns: str) -> list[str]:
    return [f"ALTER TABLE {table} ADD COLUMN {c}" for c in columns]


MIGRATIONS: list[Migration] = [
    Migration(1, "runs and cases (the layout before migrations)", [
        # As the original CREATE TABLE IF NOT EXISTS: a file it made is this version as is.
        # DOUBLE PRECISION: PostgreSQL's REAL is 4 bytes; in SQLite both are REAL.
        "CREATE TABLE IF NOT EXISTS runs ("
        " run_id TEXT PRIMARY KEY, started TEXT, label TEXT, kernel_version TEXT,"
        " kernel_sha256 TEXT, accel TEXT, summary TEXT, record_path TEXT)",
        "CREATE TABLE IF NOT EXISTS cases ("
        " run_id TEXT, case_id TEXT, feature TEXT, status TEXT, reason TEXT, duration_s DOUBLE PRECISION,"
        " PRIMARY KEY (run_id, case_id))",
    ]),
    Migration(2, "multi-host store: run details, attempts, divergences, findings, verdicts, coverage, platforms", [
        *_add("runs", "digest TEXT", "host TEXT", "stored_at TEXT", "harness_version TEXT", "harness_git TEXT",
              "kernel_kind TEXT", "target TEXT", "seed TEXT", "total_s DOUBLE PRECISION",
              "boot_to_ready_s DOUBLE PRECISION", "interrupted TEXT", "platform TEXT"),
        *_add("cases", "ordinal INTEGER", "seed TEXT", "reproduce TEXT", "retried INTEGER"),
        "CREATE TABLE case_attempts (run_id TEXT NOT NULL, case_id TEXT NOT NULL, attempt INTEGER NOT NULL,"
        " status TEXT, reason TEXT, duration_s DOUBLE PRECISION, PRIMARY KEY (run_id, case_id, attempt))",
        "CREATE TABLE divergences (run_id TEXT NOT NULL, case_id TEXT NOT NULL, step INTEGER, action TEXT,"
        " field TEXT, expected TEXT, observed TEXT, matches_profile TEXT, detail TEXT,"
        " PRIMARY KEY (run_id, case_id))",
        "CREATE TABLE findings (run_id TEXT NOT NULL, finding_id TEXT NOT NULL, feature TEXT, title TEXT,"
        " intended TEXT, observed TEXT, mechanism TEXT, cases TEXT, PRIMARY KEY (run_id, finding_id))",
        "CREATE TABLE profile_verdicts (run_id TEXT NOT NULL, feature TEXT NOT NULL, expected TEXT,"
        " verdict TEXT, PRIMARY KEY (run_id, feature))",
        "CREATE TABLE model_coverage (run_id TEXT NOT NULL, feature TEXT NOT NULL, rules INTEGER,"
        " named INTEGER, random INTEGER, unreached TEXT, unreachable TEXT, PRIMARY KEY (run_id, feature))",
        "CREATE TABLE platforms (fingerprint TEXT PRIMARY KEY, host_cpu TEXT, accel TEXT, qemu TEXT,"
        " machine_profile TEXT, boot TEXT, detail TEXT, first_seen TEXT)",
        "CREATE INDEX IF NOT EXISTS runs_by_started ON runs (started, run_id)",
        "CREATE INDEX IF NOT EXISTS cases_by_case ON cases (case_id)",
    ]),
]
LATEST = MIGRATIONS[-1].version


# -- where ---------------------------------------------------------------------------
def redact(url: str) -> str:
    """The URL as messages show it: without its password."""
    url = re.sub(r"(://[^/@:]*:)[^@/]*@", r"\1***@", str(url))
    return re.sub(r"([?&]password=)[^&]*", r"\1***", url)


def is_postgresql(url_or_path) -> bool:
    return isinstance(url_or_path, str) and url_or_path.startswith(PG_SCHEMES)


def _sqlite_path(url_or_path) -> Path:
    text = str(url_or_path)
    return Path(text[len("sqlite://"):]) if text.startswith("sqlite://") else Path(text)


def parse_url(url: str) -> dict:
    """A --db URL's connection parameters; ValueError("what is wrong") on a bad one."""
    if not url:
        raise ValueError("empty URL (expected postgresql://[USER@]HOST[:PORT]/DBNAME)")
    if not url.startswith(PG_SCHEMES):
        raise ValueError("expected postgresql://[USER@]HOST[:PORT]/DBNAME (or sqlite:///PATH)")
    psycopg = _psycopg()
    try:
        params = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.Error as e:
        raise ValueError(f"not a PostgreSQL URL ({_first_line(e)})") from None
    for port in filter(None, str(params.get("port") or "").split(",")):
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"port {port} is not a port number (1 to 65535)")
    return params


def check_url(url: str, timeout: float = 5) -> None:
    """--db at parse time: a URL that parses, and a server that takes a connection
    (the run writes the store only at its very end). ValueError or StoreError."""
    parse_url(url)
    psycopg = _psycopg()
    try:
        psycopg.connect(url, connect_timeout=max(1, int(timeout)), autocommit=True).close()
    except psycopg.Error as e:
        raise StoreError(f"cannot connect ({_first_line(e)})") from None


def destination(db: str | None, history: str | None, default: Path = DEFAULT) -> str | Path:
    """Where `kvmconf run` stores its run: --db; else --history (which also wins over
    $KVMCONF_DB, --db's default: a command that names its own --history, as soak, bisect
    and mutate do for their cycles, keeps it); else $KVMCONF_DB; else results/history.sqlite."""
    env = os.environ.get(ENV) or None
    if history and (not db or db == env):
        return Path(history)
    return db or env or default


def _psycopg():
    try:
        import psycopg
    except ImportError:
        raise StoreError("PostgreSQL needs psycopg 3: pip install 'psycopg[binary]'") from None
    return psycopg


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return " ".join(text.splitlines()[0].split()) if text else type(e).__name__


# -- values ----------------------------------------------------------------------------
def _text(value) -> str | None:
    """Text as stored: None stays NULL; NUL characters (which PostgreSQL's text refuses)
    become U+FFFD in both dialects."""
    if value is None:
        return None
    if not isinstance(value, str):
        value = json.dumps(value, sort_keys=True) if isinstance(value, (dict, list)) else str(value)
    return value.replace("\x00", "\ufffd")


def _json(value) -> str | None:
    return None if value is None else _text(json.dumps(value, default=str))


def _float(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _int(value) -> int | None:
    return int(value) if isinstance(value, int) and not isinstance(value, bool) and abs(value) < 2**31 else None


def digest(record: dict) -> str:
    """sha256 of the record's canonical JSON: the same run.json submitted again has the same."""
    return hashlib.sha256(json.dumps(record, sort_keys=True, separators=(",", ":"),
                                     default=str).encode()).hexdigest()


def fingerprint(platform: dict | None) -> str | None:
    return None if not platform else hashlib.sha256(
        json.dumps(platform, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()


def _statuses_of(case: dict) -> list[str]:
    """The statuses of a retried case's attempts, oldest first, ending with its own."""
    attempts = [a.get("status") if isinstance(a, dict) else a for a in case.get("attempts") or []]
    attempts = [str(a) for a in attempts if a]
    if not attempts or attempts[-1] != case.get("status"):
        attempts.append(case.get("status"))
    return attempts


# -- the store -------------------------------------------------------------------------
class Store:
    """One history database. `append`, `runs`, `recent_cases`, `flake_scores`."""

    dialect: str
    where: str

    def __init__(self, conn, dialect: str, where: str, url: str | None = None):
        self._conn, self.dialect, self.where, self._url = conn, dialect, where, url
        self._migrate()

    # -- plumbing, per dialect
    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.dialect == "postgresql" else sql

    def _exec(self, sql: str, params=()):
        return self._conn.execute(self._sql(sql), params)

    def _many(self, sql: str, rows: list) -> None:
        if not rows:
            return
        if self.dialect == "postgresql":
            self._conn.cursor().executemany(self._sql(sql), rows)
        else:
            self._conn.executemany(sql, rows)

    def _begin(self) -> None:
        if self.dialect == "sqlite":
            self._conn.execute("BEGIN IMMEDIATE")      # the write lock, before any read
        else:
            self._conn.execute("BEGIN")

    def _commit(self) -> None:
        self._conn.execute("COMMIT")

    def _rollback(self) -> None:
        try:
            self._conn.execute("ROLLBACK")
        except Exception:       # noqa: BLE001 - no transaction open, or a broken connection
            pass

    def _error(self, what: str, e: BaseException) -> StoreError:
        return StoreError(f"history {self.where}: {what}: {_first_line(e)}")

    def _errors(self) -> tuple:
        if self.dialect == "postgresql":
            return (sqlite3.Error, _psycopg().Error)
        return (sqlite3.Error,)

    def close(self) -> None:
        self._conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- migrations
    def _version_now(self) -> int:
        if self.dialect == "sqlite":
            exists = self._exec("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'").fetchone()
        else:
            exists = self._exec("SELECT to_regclass('schema_version')").fetchone()[0]
        if not exists:
            return 0
        return self._exec("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()[0]

    def schema_version(self) -> int:
        return self._version_now()

    def _migrate(self) -> None:
        try:
            if self._version_now() >= LATEST:
                return
            self._begin()
            try:
                if self.dialect == "postgresql":
                    self._exec(f"SELECT pg_advisory_xact_lock({_PG_LOCK})")
                self._exec("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY,"
                           " title TEXT, applied_at TEXT)")
                now = self._version_now()       # again, under the lock: another opener may have migrated
                for m in MIGRATIONS:
                    if m.version <= now:
                        continue
                    for step in m.steps:
                        self._exec(step[self.dialect] if isinstance(step, dict) else step)
                    self._exec("INSERT INTO schema_version (version, title, applied_at) VALUES (?, ?, ?)",
                               (m.version, m.title, _now()))
                self._commit()
            except BaseException:
                self._rollback()
                raise
        except self._errors() as e:
            raise self._error(f"cannot migrate the schema to version {LATEST}", e) from None

    # -- writing
    def append(self, record: dict, record_path=None) -> bool:
        """Store one run record, in one transaction. True when stored, False when this
        run (same run id, same digest) was already there. A connection that breaks is
        retried: the retry finds the run stored if the first try's commit went through."""
        for attempt in range(3):
            try:
                return self._append(record, record_path)
            except (KeyError, TypeError, AttributeError) as e:
                raise StoreError(f"history {self.where}: run {record.get('run_id')}: not a run record "
                                 f"({type(e).__name__}: {e})") from None
            except self._errors() as e:
                self._rollback()
                if self.dialect == "postgresql" and attempt < 2 and self._reconnect_after(e):
                    time.sleep(0.5 * (attempt + 1))
                    continue
                raise self._error(f"cannot store run {record.get('run_id')}", e) from None
        raise AssertionError("unreachable")

    def _reconnect_after(self, e: BaseException) -> bool:
        """After an error that closed the connection: a new one (True), else False."""
        if not self._conn.closed:
            return False
        try:
            self._conn = _psycopg().connect(self._url, connect_timeout=10, autocommit=True)
        except _psycopg().Error:
            return False
        return True

    def _append(self, record: dict, record_path) -> bool:
        run_id = record["run_id"]
        kernel = record.get("kernel") or {}
        platform = record.get("platform") or {}
        harness = record.get("harness") or {}
        timing = record.get("timing") or {}
        ours = digest(record)
        print_ = fingerprint(platform)
        self._begin()
        try:
            if print_:
                # platforms before runs: every transaction takes its locks in one order
                self._exec("INSERT INTO platforms (fingerprint, host_cpu, accel, qemu, machine_profile, boot,"
                           " detail, first_seen) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                           " ON CONFLICT (fingerprint) DO NOTHING",
                           (print_, _text(platform.get("host_cpu")), _text(platform.get("accel")),
                            _text(platform.get("qemu")), _text(platform.get("machine_profile")),
                            _text(platform.get("boot")), _json(platform), _now()))
            inserted = self._exec(
                "INSERT INTO runs (run_id, started, label, kernel_version, kernel_sha256, accel, summary,"
                " record_path, digest, host, stored_at, harness_version, harness_git, kernel_kind, target,"
                " seed, total_s, boot_to_ready_s, interrupted, platform)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (run_id) DO NOTHING",
                (_text(run_id), _text(record.get("started")), _text(record.get("label")),
                 _text(kernel.get("version")), _text(kernel.get("sha256")), _text(platform.get("accel")),
                 _json(record.get("summary")), _text(record_path), ours, _text(socket.gethostname()),
                 _now(), _text(harness.get("version")), _text(harness.get("git")), _text(kernel.get("kind")),
                 _text((record.get("target") or {}).get("where")), _text(record.get("seed")),
                 _float(timing.get("total_s")), _float(timing.get("boot_to_ready_s")),
                 _text(record.get("interrupted")), print_)).rowcount
            if inserted != 1:
                theirs = self._exec("SELECT digest, host, stored_at FROM runs WHERE run_id = ?",
                                    (run_id,)).fetchone()
                self._commit()
                if theirs and theirs[0] is not None and theirs[0] != ours:
                    raise StoreError(f"history {self.where}: run {run_id} is already stored from a different "
                                     f"run record (host {theirs[1]}, {theirs[2]}): a run id collision, not stored")
                return False
            self._write_parts(run_id, record)
            self._commit()
            return True
        except BaseException:
            self._rollback()
            raise

    def _write_parts(self, run_id: str, record: dict) -> None:
        cases, attempts, divergences = [], [], []
        for n, c in enumerate(record.get("cases") or []):
            case_id = _text(c["id"])
            # retried: the case's own flag (RunRecord.finish), or the record's with attempts listed
            retried = bool(c.get("retried") or (record.get("retried") is True and len(c.get("attempts") or []) > 1))
            cases.append((run_id, case_id, _text(c.get("feature")), _text(c.get("status")), _text(c.get("reason")),
                          _float(c.get("duration_s")), n, _text(c.get("seed")), _text(c.get("reproduce")),
                          1 if retried else 0))
            if retried:
                for k, a in enumerate(c.get("attempts") or []):
                    a = a if isinstance(a, dict) else {"status": a}
                    attempts.append((run_id, case_id, k, _text(a.get("status")), _text(a.get("reason")),
                                     _float(a.get("duration_s"))))
            d = c.get("divergence")
            if isinstance(d, dict):
                divergences.append((run_id, case_id, _int(d.get("step")), _text(d.get("action")),
                                    _text(d.get("field")), _text(d.get("expected")), _text(d.get("observed")),
                                    _text(d.get("matches_profile")), _json(d)))
        self._many("INSERT INTO cases (run_id, case_id, feature, status, reason, duration_s, ordinal, seed,"
                   " reproduce, retried) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                   " ON CONFLICT (run_id, case_id) DO NOTHING", cases)
        self._many("INSERT INTO case_attempts (run_id, case_id, attempt, status, reason, duration_s)"
                   " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (run_id, case_id, attempt) DO NOTHING", attempts)
        self._many("INSERT INTO divergences (run_id, case_id, step, action, field, expected, observed,"
                   " matches_profile, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
                   " ON CONFLICT (run_id, case_id) DO NOTHING", divergences)
        self._many("INSERT INTO findings (run_id, finding_id, feature, title, intended, observed, mechanism, cases)"
                   " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (run_id, finding_id) DO NOTHING",
                   [(run_id, _text(f.get("id")), _text(f.get("feature")), _text(f.get("title")),
                     _text(f.get("intended")), _text(f.get("observed")), _text(f.get("mechanism")),
                     _json(f.get("cases"))) for f in record.get("findings") or [] if isinstance(f, dict)])
        profiles = record.get("profiles") or {}
        verdicts = record.get("profile_verdict") or {}
        self._many("INSERT INTO profile_verdicts (run_id, feature, expected, verdict) VALUES (?, ?, ?, ?)"
                   " ON CONFLICT (run_id, feature) DO NOTHING",
                   [(run_id, _text(f), _text(profiles.get(f)), _text(verdicts.get(f)))
                    for f in sorted(set(profiles) | set(verdicts))])
        self._many("INSERT INTO model_coverage (run_id, feature, rules, named, random, unreached, unreachable)"
                   " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (run_id, feature) DO NOTHING",
                   [(run_id, _text(m.get("feature")), _int(m.get("rules")), _int(m.get("named")),
                     _int(m.get("random")), _json(m.get("unreached")), _json(m.get("unreachable")))
                    for m in record.get("model_coverage") or [] if isinstance(m, dict)])

    # -- reading
    def _query(self, sql: str, params=()) -> list[tuple]:
        try:
            return self._exec(sql, params).fetchall()
        except self._errors() as e:
            raise self._error("cannot read", e) from None

    def count(self, table: str) -> int:
        assert table.isidentifier(), table
        return self._query(f"SELECT count(*) FROM {table}")[0][0]

    def runs(self, limit: int = 20) -> list[dict]:
        """The newest `limit` runs, newest first (by `started`, then run id)."""
        cols = ("run_id", "started", "label", "kernel_version", "kernel_sha256", "accel", "summary",
                "record_path", "host", "stored_at", "harness_git", "platform")
        rows = self._query(f"SELECT {', '.join(cols)} FROM runs ORDER BY started DESC, run_id DESC LIMIT ?",
                           (int(limit),))
        out = []
        for row in rows:
            run = dict(zip(cols, row))
            run["summary"] = json.loads(run["summary"]) if run["summary"] else None
            out.append(run)
        return out

    def recent_cases(self, limit_runs: int) -> list[dict]:
        """The cases of the newest `limit_runs` runs: {run_id, started, case_id, feature,
        status, reason, duration_s}, newest run first, each run's cases in its order."""
        cols = ("run_id", "started", "case_id", "feature", "status", "reason", "duration_s")
        rows = self._query(
            "SELECT r.run_id, r.started, c.case_id, c.feature, c.status, c.reason, c.duration_s"
            " FROM (SELECT run_id, started FROM runs ORDER BY started DESC, run_id DESC LIMIT ?) r"
            " JOIN cases c ON c.run_id = r.run_id"
            " ORDER BY r.started DESC, r.run_id DESC, coalesce(c.ordinal, 0), c.case_id", (int(limit_runs),))
        return [dict(zip(cols, row)) for row in rows]

    def flake_scores(self, last_n: int = 10) -> dict[str, float]:
        """Per case id, how often its outcome flips: over the case's last `last_n` runs in
        which it ran, oldest first,

            score = changes / comparisons

        where each pair of consecutive runs is one comparison (a change when their
        statuses differ), and so is each pair of consecutive attempts of a retried case
        within one run (`retried: true`: ERROR then PASS on the retry is a change).
        0.0 for a case with no comparison (one run, not retried); 1.0 flips every time.
        A case "ran" when PASS, FAIL or ERROR (as the HTML report's trends count): a SKIP
        (a capability the host lacks) or MISS (planned, not run) is left out."""
        window = ("WITH recent AS (SELECT c.run_id, c.case_id, c.status, c.retried, r.started,"
                  " row_number() OVER (PARTITION BY c.case_id ORDER BY r.started DESC, r.run_id DESC) AS n"
                  " FROM cases c JOIN runs r ON r.run_id = c.run_id"
                  " WHERE c.status IN ('PASS', 'FAIL', 'ERROR')) ")
        runs = self._query(window + "SELECT case_id, run_id, status, retried, started FROM recent WHERE n <= ?"
                           " ORDER BY case_id, started, run_id", (int(last_n),))
        tries: dict[tuple[str, str], list[str]] = {}
        for run_id, case_id, status in self._query(
                window + "SELECT a.run_id, a.case_id, a.status FROM case_attempts a JOIN recent"
                " ON recent.run_id = a.run_id AND recent.case_id = a.case_id"
                " WHERE recent.n <= ? AND recent.retried = 1 ORDER BY a.run_id, a.case_id, a.attempt",
                (int(last_n),)):
            tries.setdefault((run_id, case_id), []).append(status)
        changes: dict[str, int] = {}
        comparisons: dict[str, int] = {}
        previous: dict[str, str] = {}
        for case_id, run_id, status, retried, _ in runs:
            changes.setdefault(case_id, 0)
            comparisons.setdefault(case_id, 0)
            if case_id in previous:
                comparisons[case_id] += 1
                changes[case_id] += previous[case_id] != status
            previous[case_id] = status
            attempts = _statuses_of({"status": status, "attempts": tries.get((run_id, case_id))}) if retried else []
            for a, b in zip(attempts, attempts[1:]):
                comparisons[case_id] += 1
                changes[case_id] += a != b
        return {c: (changes[c] / comparisons[c] if comparisons[c] else 0.0) for c in sorted(changes)}


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def open_store(url_or_path=None) -> Store:
    """The store at a postgresql:// URL, an sqlite:///PATH URL or an SQLite file path
    (None: $KVMCONF_DB, else results/history.sqlite), its schema migrated to LATEST."""
    if url_or_path is None or url_or_path == "":
        url_or_path = os.environ.get(ENV) or DEFAULT
    if is_postgresql(url_or_path):
        where = redact(url_or_path)
        try:
            parse_url(url_or_path)
        except ValueError as e:
            raise UsageError(f"--db {where}: {e}") from None
        psycopg = _psycopg()
        try:
            conn = psycopg.connect(url_or_path, connect_timeout=10, autocommit=True)
        except psycopg.Error as e:
            raise StoreError(f"history {where}: cannot connect ({_first_line(e)})") from None
        return Store(conn, "postgresql", where, url_or_path)
    path = _sqlite_path(url_or_path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, timeout=60, isolation_level=None)
    except (OSError, sqlite3.Error) as e:
        raise StoreError(f"history {path}: cannot open ({_first_line(e)})") from None
    return Store(conn, "sqlite", str(path))


def append(db, record: dict, record_path) -> bool:
    """Append one run to the store at `db` (a path or URL, as open_store): the
    original call, kept for its callers."""
    with open_store(db) as store:
        return store.append(record, record_path)
