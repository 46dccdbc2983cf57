"""`kvmconf mutate`: the mutation score of the suite."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

from rich.table import Table

from harness.commands.common import REPO, err, out, output_dir, parse_features


def cmd_mutate(args) -> int:
    from harness.kernel import build as kbuild
    from harness.mutate import campaign, generate
    source = Path(args.source) if args.source else kbuild.DEFAULT_SOURCE
    features = parse_features(args.features) if args.features else list(generate.TARGET_FILES)
    folder = output_dir(Path(args.output) if args.output else REPO / "results" /
                         ("mutate-" + dt.datetime.now().strftime("%Y%m%d-%H%M%S")))
    pristine, _ = kbuild.pristine_tree(source)
    specs: list = []
    for feature in features:
        for patch in sorted((REPO / "ci" / "mutants" / feature).glob("*.patch")):
            specs.append(campaign.MutantSpec(f"{feature}-hand-{patch.stem}", feature, patch, "hand-written",
                                             patch.stem))
        if not args.hand_written_only:
            generated = generate.generate(feature, pristine)
            chosen = generate.sample(generated, args.limit, args.seed)
            err.print(f"{feature}: {len(generated)} generated mutants, running {len(chosen)}")
            for mutant in chosen:
                path = folder / "patches" / f"{mutant.id}.patch"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(mutant.patch((pristine / mutant.path).read_text().splitlines()))
                specs.append(campaign.MutantSpec(mutant.id, feature, path, "generated",
                                                 f"{mutant.operator} in {mutant.function}() line {mutant.line}: "
                                                 f"{mutant.mutated.strip()[:80]}"))
    report = campaign.run_campaign(specs, source, folder, args.seed,
                                   lambda text: err.print(text, markup=False))
    table = Table(title=f"kvmconf mutate ({folder})")
    for column in ("mutant", "origin", "status", "killed by / reason"):
        table.add_column(column, overflow="fold")
    for m in report["mutants"]:
        table.add_row(m["id"], m["origin"], m["status"], ", ".join(m["killers"][:3]) or m["reason"])
    out.print(table)
    out.print(" ".join(f"{k.lower()}={v}" for k, v in report["counts"].items()) +
              f" wall_s={report['wall_s']}  report: {folder / 'mutants.json'}", markup=False)
    if report["counts"]["SURVIVED"]:
        err.print(f"kvmconf: {report['counts']['SURVIVED']} mutant(s) survived", markup=False)
        return 1
    return 2 if report["counts"]["ERROR"] else 0
