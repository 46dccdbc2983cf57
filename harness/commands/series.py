"""`kvmconf series show`, `kvmconf compare` and `kvmconf bisect`."""
from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from rich.table import Table

from harness.commands.common import REPO, err, out, output_dir
from harness.errors import UsageError


def cmd_series_show(args) -> int:
    from harness import series as serieslib
    all_series, is_digest = serieslib.load(Path(args.file))
    if args.json:
        print(json.dumps([{"subject": s.subject, "author": s.author, "revisions": [
            {"revision": r.revision, "date": r.date, "cover_message_id": r.cover_message_id,
             "expected": r.expected, "sha256": r.sha256, "cover_letter": r.cover_letter,
             "patches": [{"counter": p.counter, "subject": p.subject, "message_id": p.message_id,
                          "sha256": p.sha256} for p in r.patches]} for r in s.revisions]}
            for s in all_series], indent=1))
        return 0
    for s in all_series:
        out.print(f"[bold]{s.subject}[/bold]  ({s.author})", markup=True, highlight=False)
        for r in s.revisions:
            out.print(f"  v{r.revision}  {r.date}  cover <{r.cover_message_id}>  "
                      f"{len(r.patches)}/{r.expected} patches  series sha256 {r.sha256 or '-'}", markup=False)
            first = next((l for l in r.cover_letter.splitlines() if l.strip()), "")
            if first:
                out.print(f"      cover letter: {first[:100]}", markup=False)
            for p in r.patches:
                out.print(f"      {p.counter}/{p.expected} {p.subject}  <{p.message_id}>  {p.sha256 or '-'}",
                          markup=False)
            if is_digest and not r.patches and r.cover_message_id:
                out.print(f"      no patch bodies in this digest: fetch them with "
                          f"`b4 am {r.cover_message_id}`", markup=False)
    return 0


def cmd_compare(args) -> int:
    from harness.results.compare_runs import compare, load_run
    if len(args.runs) < 2:
        raise UsageError("compare needs at least two runs")
    result = compare([load_run(r) for r in args.runs])
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        table = Table(title="kvmconf compare")
        table.add_column("case")
        for run in result["runs"]:
            table.add_column(f"{run['run_id']}\n{run['label'] or run['kernel'].get('version', '')}")
        table.add_column("change")
        for row in result["cases"]:
            if args.all or any(c not in ("unchanged",) for c in row["changes"]):
                table.add_row(row["id"], *[s or "-" for s in row["statuses"]], ", ".join(row["changes"]))
        out.print(table)
        out.print(f"regressed: {len(result['regressed'])}  fixed: {len(result['fixed'])}  "
                  f"flaky (retried): {len(result['flaky'])}", markup=False)
        if result["flaky"]:
            out.print("flaky, not regressions: " + " ".join(result["flaky"][:20]), markup=False)
    for warning in result["warnings"]:
        err.print(f"warning: the runs differ in more than the kernel: {warning}", markup=False)
    if result["regressed"]:
        err.print(f"kvmconf: {len(result['regressed'])} case(s) regressed: {', '.join(result['regressed'][:5])}",
                  markup=False)
        return 1
    return 0


def cmd_bisect(args) -> int:
    from harness import series as serieslib
    from harness.kernel import build as kbuild
    from harness.series import bisect
    if not args.case:
        raise UsageError("bisect needs at least one --case ID")
    source = Path(args.source) if args.source else kbuild.DEFAULT_SOURCE
    revision = serieslib.pick(Path(args.series), args.revision)
    total = len(revision.patches)
    folder = output_dir(Path(args.output) if args.output else REPO / "results" /
                         ("bisect-" + dt.datetime.now().strftime("%Y%m%d-%H%M%S")))
    probes: dict[int, bisect.Probe] = {}

    def probe(k: int) -> dict[str, str]:
        err.print(f"bisect: building and running patches 1..{k} of {total}", markup=False)
        probes[k] = bisect.run_prefix(k, source, Path(args.series), args.revision, args.case, folder, args.seed)
        err.print(f"  {probes[k].statuses}", markup=False)
        return probes[k].statuses

    changes = bisect.first_changes(total, args.case, probe)
    for case, k in changes.items():
        if k is None:
            print(f"{case}: no change within the series ({probes[0].statuses.get(case)} throughout)")
            continue
        patch = revision.patches[k - 1]
        print(f"{case}: first change at patch {k}/{total}: {patch.subject} <{patch.message_id}> "
              f"({probes[k - 1].statuses.get(case)} -> {probes[k].statuses.get(case)})")
    print("evidence: " + " ".join(str(probes[k].record) for k in sorted(probes)))
    return 0
