"""`kvmconf publish RUN [RUN...] --kcidb URL | --squad URL/GROUP/PROJECT/BUILD/ENV --token-file F`:
send run records to a results database over HTTP (harness/report/publish.py).

    --kcidb URL      kcidb-rest: POST URL/submit, the KCIDB document, Authorization: Bearer
    --squad URL/G/P/B/E   SQUAD: POST URL/api/submit/G/P/B/E, form fields tests, metrics,
                     metadata, header Auth-Token ("{build}" and "{env}" in the URL are the
                     run's suggestions, as `kvmconf report --squad` prints them)

Both may be given (they share --token-file). Each POST is retried (4 attempts, waits 1,
2 and 4 s) on connection errors, 5xx and 429, within --deadline seconds; publishing a run
again is harmless (KCIDB merges by id, SQUAD's duplicate job_id counts as done). Exit 0
when every destination took every run, 2 otherwise (one line naming the first failure).
"""
from __future__ import annotations

from harness.commands import argtypes as t
from harness.commands.common import err, out
from harness.errors import HarnessError, UsageError


def add_publish_options(p) -> None:
    p.add_argument("runs", nargs="+", type=t.run_record, help="run folders or run.json files")
    p.add_argument("--kcidb", type=t.kcidb_url, metavar="URL", help="kcidb-rest's URL (POST URL/submit)")
    p.add_argument("--squad", type=t.squad_url, metavar="URL/GROUP/PROJECT/BUILD/ENV",
                   help="SQUAD's URL then group, project, build and environment ({build}, {env}: the run's)")
    p.add_argument("--token-file", type=t.token_file, metavar="FILE",
                   help="file holding the API token on one line (required; never printed)")
    p.add_argument("--artifacts-url", type=t.artifacts_url, metavar="URL",
                   help="URL the run folder's files are published under ('{run_id}' is replaced)")
    p.add_argument("--deadline", type=t.positive_float, default=60.0, metavar="SECONDS",
                   help="time for all attempts of one POST (default: 60)")
    p.set_defaults(func=cmd_publish)


def cmd_publish(args) -> int:
    from harness.commands.report import load_runs
    from harness.report import publish
    if not args.kcidb and not args.squad:
        raise UsageError("publish needs --kcidb URL or --squad URL/GROUP/PROJECT/BUILD/ENV (or both)")
    if not args.token_file:
        raise UsageError("publish needs --token-file FILE (the API token, one line)")
    runs = load_runs(args.runs)
    if args.artifacts_url and len(runs) > 1 and "{run_id}" not in args.artifacts_url:
        raise UsageError(f"--artifacts-url {args.artifacts_url}: {len(runs)} runs share it: "
                         "put {run_id} in it where each run's folder goes")
    token = publish.read_token(args.token_file)
    policy = publish.Policy(deadline=args.deadline, attempt_timeout=min(30.0, args.deadline))
    failures: list[str] = []
    for record, folder in runs:
        for name, url, send in (("kcidb", args.kcidb, publish.kcidb), ("squad", args.squad, publish.squad)):
            if not url:
                continue
            try:
                done = send(record, folder, url, token, policy, args.artifacts_url)
            except HarnessError as e:
                text = str(e).splitlines()[0] if str(e) else type(e).__name__
                failures.append(f"{record['run_id']}: {text}")
                continue
            out.print(f"{name}: run {record['run_id']} -> {done.where}: HTTP {done.status}"
                      f"{', ' + done.note if done.note else ''} (attempt {done.attempts})",
                      markup=False, highlight=False)
    if failures:
        for extra in failures[1:]:
            err.print(f"kvmconf: warning: {extra}", markup=False)
        raise HarnessError(failures[0] + (f" (and {len(failures) - 1} more failure(s))" if len(failures) > 1 else ""))
    return 0
