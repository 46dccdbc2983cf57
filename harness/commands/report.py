"""`kvmconf report RUN [RUN...] --output DIR`: a run record in the formats other tools
read. Without a format flag, every format.

    DIR/<run id>.html            --html   the run's page (harness/report/html.py)
    DIR/compare.html             --html   with two runs or more, the runs side by side
    DIR/<run id>.ktap            --ktap   KTAP version 1, one subtest per feature
    DIR/<run id>.kcidb.json      --kcidb  a KCIDB document, validated with kcidb-io
    DIR/<run id>.squad/          --squad  tests.json, metrics.json, metadata.json (SQUAD's submit API)
    DIR/<run id>.junit.xml       --junit  JUnit XML (harness/results/junit.py)

The HTML trends come from the history store (--db URL, --history PATH, else
$KVMCONF_DB, else results/history.sqlite): the case rows of its newest 50 runs.
"""
from __future__ import annotations

import importlib
import json
import os
import re
import time
from pathlib import Path

from harness.commands import argtypes as t
from harness.commands.common import REPO, err, out, output_dir
from harness.errors import HarnessError, UsageError

FORMATS = ("html", "ktap", "kcidb", "squad", "junit")
DEFAULT_HISTORY = REPO / "results" / "history.sqlite"
ENV = "KVMCONF_DB"          # the store `kvmconf run` writes when it is given no --db or --history
TREND_RUNS = 50
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def add_report_options(p) -> None:
    p.add_argument("runs", nargs="+", type=t.run_record,
                   help="run folders or run.json files (oldest first for --html's comparison)")
    p.add_argument("--html", action="store_true",
                   help="DIR/<run id>.html per run and, for two runs or more, DIR/compare.html")
    p.add_argument("--ktap", action="store_true", help="DIR/<run id>.ktap (KTAP version 1)")
    p.add_argument("--kcidb", action="store_true", help="DIR/<run id>.kcidb.json (KCIDB, checked with kcidb-io)")
    p.add_argument("--squad", action="store_true",
                   help="DIR/<run id>.squad/{tests,metrics,metadata}.json (SQUAD's submit API)")
    p.add_argument("--junit", action="store_true", help="DIR/<run id>.junit.xml")
    p.add_argument("--output", type=t.output_folder, metavar="DIR", help="folder for the reports (required)")
    p.add_argument("--artifacts-url", type=t.artifacts_url, metavar="URL",
                   help="URL the run folder's files are published under, for KCIDB and SQUAD "
                        "('{run_id}' is replaced; default: the folder's file:// URL)")
    store = p.add_mutually_exclusive_group()
    store.add_argument("--db", type=t.db_url, metavar="URL", help="history store URL, for --html's trends")
    store.add_argument("--history", type=t.history_db, metavar="PATH",
                       help="SQLite history store, for --html's trends (default: results/history.sqlite)")
    p.set_defaults(func=cmd_report)


def safe_name(run_id: str) -> str:
    """A run id as a file name (a record's id is data: no '/' or leading '.')."""
    return _UNSAFE.sub("_", run_id).lstrip(".") or "run"


def load_runs(paths: list[str]) -> list[tuple[dict, Path]]:
    """(record, run folder) per RUN; a record that breaks the run.json contract is one
    line naming it and its first problem."""
    from harness.results.compare_runs import load_run
    from harness.results.schema import problems
    runs, seen = [], {}
    for path in paths:
        record = load_run(path)
        found = problems(record)
        if found:
            raise UsageError(f"{path}: not a whole run record ({found[0]}"
                             f"{f'; {len(found) - 1} more problems' if len(found) > 1 else ''})")
        name = safe_name(record["run_id"])
        if name in seen:
            raise UsageError(f"{path}: the same run as {seen[name]} (run id {record['run_id']}): give each run once")
        seen[name] = path
        runs.append((record, Path(path) if Path(path).is_dir() else Path(path).parent))
    return runs


def trend_rows(args) -> list[dict]:
    """The history store's case rows of its newest 50 runs, for the HTML trends: from
    --db, --history, $KVMCONF_DB or results/history.sqlite, as `kvmconf run` picks it.
    [] (the pages then have no trends) when the history module cannot open a store yet,
    or the SQLite file is not there (a report does not make one); a store that fails
    is an error when named on the command line, else a warning."""
    from harness.results import history
    open_store = getattr(history, "open_store", None)
    named = args.db or args.history
    flag = "--db" if args.db else "--history" if args.history else f"${ENV}"
    url = named or os.environ.get(ENV) or str(DEFAULT_HISTORY)
    if open_store is None:
        if named:
            err.print("kvmconf: warning: the history store cannot list recent cases yet "
                      "(harness.results.history has no open_store): the pages have no trends", markup=False)
        return []
    shown = getattr(history, "redact", str)(url)
    if not url.startswith(("postgresql://", "postgres://")):
        path = Path(url.removeprefix("sqlite://"))
        if not path.is_file():          # a report reads the store: it does not make one
            if named or url != str(DEFAULT_HISTORY):
                err.print(f"kvmconf: warning: {flag} {shown}: no such history store: the pages have no trends",
                          markup=False)
            return []
    try:
        store = open_store(url)
        try:
            return [dict(row) for row in store.recent_cases(TREND_RUNS)]
        finally:
            close = getattr(store, "close", None)
            if close is not None:
                close()
    except Exception as e:          # the store's own errors (StoreError, sqlite3, psycopg): one line
        text = " ".join(str(e).split())[:300] or type(e).__name__
        if named:
            if isinstance(e, HarnessError):
                raise HarnessError(f"{flag} {shown}: {text}") from None
            raise HarnessError(f"{flag} {shown}: cannot read the history store ({type(e).__name__}: {text})") from None
        err.print(f"kvmconf: warning: {shown}: cannot read the history store ({text}): the pages have no trends",
                  markup=False)
        return []


class _Writer:
    """Writes the reports and keeps what it wrote: path, bytes, milliseconds."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.written: list[tuple[Path, int, float]] = []

    def text(self, name: str, make) -> Path:
        from harness.cache import atomic_write_bytes
        start = time.perf_counter()
        data = make().encode()
        path = self.folder / name
        atomic_write_bytes(path, data)
        self.written.append((path, len(data), (time.perf_counter() - start) * 1000))
        return path

    def timed(self, path: Path, write) -> Path:
        start = time.perf_counter()
        write()
        size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size
        self.written.append((path, size, (time.perf_counter() - start) * 1000))
        return path


def _html_module():
    try:
        return importlib.import_module("harness.report.html")
    except ModuleNotFoundError as e:
        if e.name != "harness.report.html":
            raise
        return None


def _squad(record: dict, folder: Path, job_url: str) -> None:
    from harness.cache import atomic_write_bytes
    from harness.report import squad
    files = squad.submission(record, job_url)
    for name in squad.FILES:
        atomic_write_bytes(folder / f"{name}.json", (json.dumps(files[name], indent=1) + "\n").encode())


def cmd_report(args) -> int:
    from harness.report import kcidb, ktap, squad
    from harness.results import junit
    if not args.output:
        raise UsageError("report needs --output DIR (the folder for the reports)")
    chosen = [f for f in FORMATS if getattr(args, f)]
    html = _html_module()
    if "html" in chosen and html is None:
        raise HarnessError("--html: harness/report/html.py is not there (the HTML report is not in this tree)")
    if not chosen:
        chosen = [f for f in FORMATS if f != "html" or html is not None]
    runs = load_runs(args.runs)
    if args.artifacts_url and len(runs) > 1 and "{run_id}" not in args.artifacts_url:
        raise UsageError(f"--artifacts-url {args.artifacts_url}: {len(runs)} runs share it: "
                         "put {run_id} in it where each run's folder goes")
    folder = output_dir(Path(args.output))
    writer = _Writer(folder)
    rows = trend_rows(args) if "html" in chosen else []
    hints = []
    for record, run_folder in runs:
        name = safe_name(record["run_id"])
        if "html" in chosen:
            writer.text(f"{name}.html", lambda: html.render_run(record, rows))
        if "ktap" in chosen:
            writer.text(f"{name}.ktap", lambda: ktap.render(record))
        if "kcidb" in chosen:
            writer.text(f"{name}.kcidb.json", lambda: json.dumps(kcidb.validate(
                kcidb.document(record, run_folder, args.artifacts_url)), indent=1) + "\n")
        if "squad" in chosen:
            base = kcidb.artifact_base(run_folder, args.artifacts_url, record["run_id"])
            target = folder / f"{name}.squad"
            writer.timed(target, lambda: _squad(record, target, base))
            build, env = squad.build_and_environment(record)
            hints.append(f"squad: cd {target} && curl --header \"Authorization: token $SQUAD_TOKEN\" "
                         f"--form tests=@tests.json --form metrics=@metrics.json --form metadata=@metadata.json "
                         f"https://SQUAD/api/submit/GROUP/PROJECT/{build}/{env}")
        if "junit" in chosen:
            path = folder / f"{name}.junit.xml"
            writer.timed(path, lambda: junit.write(record, path))
    if "html" in chosen and len(runs) > 1:
        writer.text("compare.html", lambda: html.render_compare([r for r, _ in runs], rows))
    for path, size, ms in writer.written:
        out.print(f"{path}  {size} bytes  {ms:.0f} ms", markup=False, highlight=False)
    for hint in hints:
        out.print(hint, markup=False, highlight=False)
    return 0
