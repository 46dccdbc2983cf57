"""`kvmconf mutate`: the mutation score of the suite.

The unmutated kernel runs first and must be green; then each mutant (the
hand-written ci/mutants/<feature>/*.patch, or the --patch files, plus the
generated one-spot mutants of the registry's scope) runs once and is judged by
harness.mutate.campaign.verdict(). ci/mutants.sh is this command with
--hand-written-only (through `python -m harness.mutate`, which also has --patch).
"""
from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path

from rich.table import Table

from harness.commands import argtypes as t
from harness.commands.common import REPO, err, out, output_dir
from harness.errors import UsageError


def add_mutate_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--features", type=t.feature_list,
                   help="comma list (default: every registered feature with kernel_files)")
    p.add_argument("--source", type=t.kernel_source, help="kernel source (default: linux-source-6.1)")
    p.add_argument("--limit", type=t.non_negative_int, help="sample this many generated mutants per feature")
    p.add_argument("--seed", type=t.integer, default=0, help="sampling and run seed (default 0)")
    p.add_argument("--hand-written-only", action="store_true", help="only ci/mutants/<feature>/*.patch")
    p.add_argument("--patch", action="append", default=[], type=t.patch_file,
                   help="hand-written mutant patch, instead of ci/mutants/<feature>/*.patch (one feature); "
                        "repeatable")
    p.add_argument("--output", type=t.output_folder, help="campaign folder (default: results/mutate-<time>)")


def _hand_written(args, features: list[str]) -> list:
    from harness.mutate import campaign
    patches = [Path(p) for p in getattr(args, "patch", None) or []]
    if patches and len(features) != 1:
        raise UsageError(f"--patch needs exactly one feature in --features (got {','.join(features)})")
    specs: list = []
    for feature in features:
        hand = patches or sorted((REPO / "ci" / "mutants" / feature).glob("*.patch"))
        if args.hand_written_only and not hand:
            raise UsageError(f"--features {feature}: no hand-written mutants in {REPO / 'ci' / 'mutants' / feature}")
        specs += campaign.hand_written(feature, hand)
    return specs


def _generated(args, features: list[str], source: Path, folder: Path) -> list:
    from harness.kernel import build as kbuild
    from harness.mutate import campaign, generate
    pristine, _ = kbuild.pristine_tree(source)
    specs: list = []
    for feature in features:
        generated = generate.generate(feature, pristine)
        chosen = generate.sample(generated, args.limit, args.seed)
        err.print(f"{feature}: {len(generated)} generated mutants, running {len(chosen)}", markup=False)
        for mutant in chosen:
            path = folder / "patches" / f"{mutant.id}.patch"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(mutant.patch((pristine / mutant.path).read_text(errors="replace").splitlines()))
            specs.append(campaign.MutantSpec(mutant.id, feature, path, "generated",
                                             f"{mutant.operator} in {mutant.function}() line {mutant.line}: "
                                             f"{mutant.mutated.strip()[:80]}"))
    return specs


def cmd_mutate(args) -> int:
    from harness import features as registry
    from harness.kernel import build as kbuild
    from harness.mutate import campaign, generate
    source = Path(args.source) if args.source else kbuild.DEFAULT_SOURCE
    if args.features:
        features = generate.check_mutable(registry.parse(args.features))
    else:
        features = generate.mutable_features()
        if not features:
            raise UsageError("mutate: no registered feature has kernel_files to mutate")
    if args.limit is not None and args.limit < 0:
        raise UsageError(f"--limit {args.limit}: must be 0 or more")
    specs = _hand_written(args, features)
    folder = output_dir(Path(args.output) if args.output else REPO / "results" /
                        ("mutate-" + dt.datetime.now().strftime("%Y%m%d-%H%M%S")))
    if not args.hand_written_only:
        generated = _generated(args, features, source, folder)
        # Per feature: its hand-written mutants, then its generated ones.
        specs = [s for f in features for s in specs + generated if s.feature == f]
    # BaseRed (a HarnessError) propagates: "kvmconf: base kernel is red: ...", exit 2.
    report = campaign.run_campaign(specs, source, folder, args.seed, lambda text: err.print(text, markup=False))
    table = Table(title=f"kvmconf mutate ({folder})")
    for column in ("mutant", "origin", "status", "killed by / reason"):
        table.add_column(column, overflow="fold")
    for m in report["mutants"]:
        killers = ", ".join(m["killers"][:3])
        table.add_row(m["id"], m["origin"], m["status"],
                      killers if m["status"] == "KILLED" else m["reason"])
    out.print(table)
    out.print(" ".join(f"{k.lower()}={v}" for k, v in report["counts"].items()) +
              f" wall_s={report['wall_s']}  report: {folder / 'mutants.json'}", markup=False)
    code, line = campaign.exit_code(report)
    if line:
        err.print(f"kvmconf: {line}", markup=False)
    return code
