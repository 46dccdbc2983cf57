"""`kvmconf list`: the registered features, their model profiles and their cases,
collected from the suite as `kvmconf run` collects it, without booting anything."""
from __future__ import annotations

import contextlib
import io
import json

from rich.table import Table

from harness import features
from harness.commands.common import REPO, TESTCASES, out, parse_features


class _Collector:
    """Stands in for the run plugin during a collect-only pytest pass."""

    def __init__(self, target: str):
        self.__name__ = "kvmconf"
        self.target = target
        self.cases: list[dict] = []

    def pytest_configure(self, config):
        config.addinivalue_line("markers", "targets(*kinds): the target kinds a case runs on")

    def pytest_collection_modifyitems(self, session, config, items):
        from harness.results.plugin import accepts, case_id
        for item in items:
            cid = case_id(item)
            if not accepts(item, cid, self.target):
                continue
            params = getattr(getattr(item, "callspec", None), "params", {})
            if isinstance(params.get("case"), dict):
                rationale = params["case"].get("rationale", "")
            else:
                doc = (item.function.__doc__ or "").strip()
                rationale = " ".join(doc.split("\n\n")[0].split())
            self.cases.append({"id": cid, "feature": cid.split("/", 1)[0], "rationale": rationale})
        items[:] = []


def collect_cases(target: str = "qemu") -> list[dict]:
    """The cases `kvmconf run` plans on a target kind (qemu, local, ssh)."""
    import pytest
    collector = _Collector(target)
    with contextlib.redirect_stdout(io.StringIO()) as log:
        code = pytest.main([str(TESTCASES), "-p", "no:cacheprovider", "-q", "--co", "--rootdir", str(REPO)],
                           plugins=[collector])
    if code not in (0, 5):   # 5: nothing left to run (the collector empties the list)
        from harness.errors import HarnessError
        raise HarnessError(f"collecting the suite failed (pytest {code}): {log.getvalue()[-300:]}")
    return collector.cases


def feature_facts(row: features.Feature) -> dict:
    return {"name": row.name, "title": row.title, "machine": sorted(row.machine),
            "needs_hardware": row.needs_hardware, "profiles": list(row.profiles),
            "default_profile": row.profiles[0], "kernel_files": list(row.kernel_files),
            "modules": list(row.modules), "config": str(row.config_fragment) if row.config else None,
            "targets": sorted(row.targets), "runs_on": row.runs_on,
            "host_needs": [{"name": n.name, "path": n.path, "modules": list(n.modules),
                            "user_device": n.user_device, "device_ids": list(n.device_ids)}
                           for n in row.host_needs],
            "requirements": [{"name": r.name, "where": r.where,
                              "must_have_since": f"{r.since[0]}.{r.since[1]}" if not r.device else None,
                              "optional_with": r.config, "device": r.device}
                             for r in row.requirements],
            # what its SKIPs may name (harness/missing.py), for PLATFORM.toml's allow_skip
            "capabilities": sorted(row.capability_names)}


def cmd_list(args) -> int:
    from harness import targets
    target = targets.parse(args.target)
    chosen = parse_features(args.features) if args.features else list(features.names())
    chosen = [name for name in chosen if target.kind in features.get(name).targets]
    if args.names:
        print(" ".join(chosen))
        return 0
    cases = [c for c in collect_cases(target.kind) if c["feature"] in chosen
             or (c["feature"] == "smoke" and not args.features)]
    facts = [feature_facts(features.get(name)) for name in chosen]
    if args.json:
        print(json.dumps({"features": facts, "cases": cases}, indent=1))
        return 0
    table = Table(title=f"kvmconf features (target {target.kind})")
    for column in ("feature", "title", "machine", "on a live host", "hardware", "profiles", "cases"):
        table.add_column(column, overflow="fold")
    for f in facts:
        table.add_row(f["name"], f["title"], ",".join(f["machine"]) or "-",
                      "; ".join(n["name"] for n in f["host_needs"]) or "-",
                      f["needs_hardware"] or "none beyond QEMU", " ".join(f["profiles"]),
                      str(sum(c["feature"] == f["name"] for c in cases)))
    out.print(table)
    cases_table = Table(title="cases")
    cases_table.add_column("case", overflow="fold")
    cases_table.add_column("rationale", overflow="fold")
    for case in cases:
        cases_table.add_row(case["id"], case["rationale"][:200])
    out.print(cases_table)
    return 0
