"""kvmconf: one command per intent (run, probe, bench, ...).

Exit codes: 0 all is well, 1 the kernel side is wrong, 2 the harness broke or
the usage is bad; the reason is one line on stderr.
"""
from __future__ import annotations

import argparse
import dataclasses
import contextlib
import datetime as dt
import json
import os
import random
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

import harness
from harness.errors import HarnessError, UsageError
from harness.machine.profiles import FEATURES, profile_for

REPO = Path(__file__).resolve().parents[1]
TESTCASES = REPO / "testcases"
SUITES = ("smoke",) + FEATURES
# A duplicate of fd 2, so progress lines reach the terminal even while pytest
# captures the cases' output.
err = Console(file=os.fdopen(os.dup(2), "w", buffering=1), highlight=False, soft_wrap=True)
# Piped output (CI logs, tests) gets wide tables instead of rich's 80 columns.
out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 200)


# -- argument helpers --------------------------------------------------------
def _features(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    for name in names:
        if name not in FEATURES:
            raise UsageError(f"--features {text}: unknown feature {name!r} "
                             f"(known: {', '.join(FEATURES)})")
    return names


def _profiles(items: list[str]) -> dict[str, str]:
    profiles = {}
    for item in items:
        feature, sep, name = item.partition("=")
        if not sep or feature not in FEATURES or not name:
            raise UsageError(f"--profile {item}: expected FEATURE=NAME with FEATURE one of "
                             f"{', '.join(FEATURES)}")
        try:
            model = __import__(f"harness.reference.{feature}", fromlist=["PROFILES"])
            known = model.PROFILES
        except ImportError:
            known = ()
        if known and name not in known:
            raise UsageError(f"--profile {item}: unknown profile {name!r} for {feature} "
                             f"(known: {', '.join(known)})")
        profiles[feature] = name
    return profiles


def _output_dir(path: Path) -> Path:
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise UsageError(f"--output {path}: not writable ({e.strerror})") from None
    return path


def _git_describe() -> str:
    with contextlib.suppress(Exception):
        return subprocess.run(["git", "-C", str(REPO), "describe", "--always", "--dirty"],
                              capture_output=True, text=True, timeout=10).stdout.strip() or "unknown"
    return "unknown"


def resolve_kernel(args):
    """The kernel under test: --kernel/--modules, or built from --source/--patch/--config,
    else Debian's packaged kernel."""
    from harness.kernel import bzimage, debian
    if args.modules and not args.kernel:
        raise UsageError("--modules needs --kernel")
    source = getattr(args, "source", None)
    if source or getattr(args, "patch", None) or getattr(args, "config", None) or getattr(args, "series", None):
        if args.kernel:
            raise UsageError("--kernel and --source/--patch/--config exclude each other")
        return build_kernel(args).kernel
    if args.kernel:
        return bzimage.from_path(Path(args.kernel), Path(args.modules) if args.modules else None)
    err.print("kernel: Debian's packaged kernel (fetching into the cache if needed)")
    return debian.fetch()


def build_kernel(args):
    """Build from --source/--patch/--config/--series (its first --series-prefix patches)."""
    import tempfile

    from harness import series as serieslib
    from harness.kernel import build
    from harness.kernel import patches as patchlib
    fragments = build.default_fragments() + [Path(f) for f in args.config]
    patch_files = [Path(p) for p in args.patch]
    records = None
    if args.series:
        revision = serieslib.pick(Path(args.series), args.revision)
        limit = getattr(args, "series_prefix", None)
        if limit is not None and not 0 <= limit <= len(revision.patches):
            raise UsageError(f"--series-prefix {limit}: the series has {len(revision.patches)} patches")
        chosen = revision.patches[:limit]
        folder = Path(tempfile.mkdtemp(prefix="kvmconf-series-"))
        trimmed = dataclasses.replace(revision, patches=chosen)
        patch_files += serieslib.write_patches(trimmed, folder)
        records = [patchlib.load(p).record() for p in patch_files[:len(args.patch)]] + trimmed.records()
    try:
        result = build.build(Path(args.source) if args.source else None, patch_files,
                             fragments, series=records, jobs=getattr(args, "jobs", None),
                             progress=lambda text: err.print(f"[dim]{text}[/dim]"))
    except build.BuildFailed as e:
        print("\n".join(e.tail))
        raise
    err.print(f"kernel: {result.kernel.version} {'from the cache' if result.cached else 'built'} "
              f"in {result.seconds:.1f} s: {result.kernel.bzimage}")
    return result


def add_build_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--source", help=f"kernel tarball or tree (default {'/usr/src/linux-source-6.1.tar.xz'})")
    p.add_argument("--patch", action="append", default=[], help="-p1 patch, applied in order; repeatable")
    p.add_argument("--config", action="append", default=[],
                   help="config fragment merged after the project's own; repeatable")
    p.add_argument("--series", help="mbox or format-patch folder: its patches are applied after --patch")
    p.add_argument("--revision", type=int, help="revision of --series to apply (default: the newest)")
    p.add_argument("--series-prefix", type=int, help="apply only the first N patches of --series")


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
        out.print(f"regressed: {len(result['regressed'])}  fixed: {len(result['fixed'])}", markup=False)
    for warning in result["warnings"]:
        err.print(f"warning: the runs differ in more than the kernel: {warning}", markup=False)
    if result["regressed"]:
        err.print(f"kvmconf: {len(result['regressed'])} case(s) regressed: {', '.join(result['regressed'][:5])}",
                  markup=False)
        return 1
    return 0


def cmd_mutate(args) -> int:
    from harness.kernel import build as kbuild
    from harness.mutate import campaign, generate
    source = Path(args.source) if args.source else kbuild.DEFAULT_SOURCE
    features = _features(args.features) if args.features else list(generate.TARGET_FILES)
    folder = _output_dir(Path(args.output) if args.output else REPO / "results" /
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


def cmd_bisect(args) -> int:
    from harness import series as serieslib
    from harness.kernel import build as kbuild
    from harness.series import bisect
    if not args.case:
        raise UsageError("bisect needs at least one --case ID")
    source = Path(args.source) if args.source else kbuild.DEFAULT_SOURCE
    revision = serieslib.pick(Path(args.series), args.revision)
    total = len(revision.patches)
    folder = _output_dir(Path(args.output) if args.output else REPO / "results" /
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


def cmd_kernel_build(args) -> int:
    result = build_kernel(args)
    print(result.kernel.bzimage)
    print(result.directory / "metadata.json")
    return 0


# -- run ---------------------------------------------------------------------
def add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kernel", help="bzImage of the kernel under test (default: Debian's package)")
    add_build_options(p)
    p.add_argument("--modules", help="its modules: lib/modules/<version> or a root containing it")
    p.add_argument("--features", help=f"comma list of {', '.join(FEATURES)} (default: all)")
    p.add_argument("--suite", action="append", default=[], help=f"one of {', '.join(SUITES)}; repeatable")
    p.add_argument("--case", action="append", default=[], help="case id or glob; repeatable")
    p.add_argument("--profile", action="append", default=[], help="model profile FEATURE=NAME")
    p.add_argument("--output", help="run folder (default: results/<run-id>)")
    p.add_argument("--seed", type=int, help="seed of the random op-scripts (default: random)")
    p.add_argument("--label", default="", help="free text recorded in run.json")
    p.add_argument("--accel", choices=("auto", "tcg", "kvm"), default="auto")
    p.add_argument("--boot-timeout", type=float, default=120.0, help="seconds (default 120)")
    p.add_argument("--history", help="SQLite history (default: results/history.sqlite)")
    p.add_argument("--append", default="", help="extra kernel command line for the guest")


def _reproduce(args, features: list[str]) -> str:
    words = ["kvmconf", "run"]
    if args.kernel:
        words += ["--kernel", args.kernel]
        if args.modules:
            words += ["--modules", args.modules]
    if args.source:
        words += ["--source", args.source]
    if args.series:
        words += ["--series", args.series]
        if args.revision is not None:
            words += ["--revision", str(args.revision)]
        if args.series_prefix is not None:
            words += ["--series-prefix", str(args.series_prefix)]
    for option in ("patch", "config"):
        for value in getattr(args, option):
            words += [f"--{option}", value]
    for item in args.profile:
        words += ["--profile", item]
    if args.accel != "auto":
        words += ["--accel", args.accel]
    if args.append:
        words += ["--append", args.append]
    return shlex.join(words)


def cmd_run(args) -> int:
    import pytest

    from harness.kernel import pvh
    from harness.probe import choose_accel, host_capabilities, qemu_version
    from harness.results import history
    from harness.results.plugin import KvmconfPlugin
    from harness.results.record import RunRecord
    from harness.session import RunContext, RunOptions
    from harness.machine import qemu_binary

    started = time.monotonic()
    features = _features(args.features) if args.features else list(FEATURES)
    for suite in args.suite:
        if suite not in SUITES:
            raise UsageError(f"--suite {suite}: unknown suite (known: {', '.join(SUITES)})")
    suites = args.suite or (["smoke"] + features)
    profiles = _profiles(args.profile)
    run_id = dt.datetime.now().strftime("%Y%m%d-%H%M%S-") + os.urandom(2).hex()
    output = _output_dir(Path(args.output) if args.output else REPO / "results" / run_id)
    kernel = resolve_kernel(args)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 32)
    wanted = {s for s in suites if s in FEATURES}
    if args.case:
        wanted = {c.split("/", 1)[0] for c in args.case if c.split("/", 1)[0] in FEATURES}
    machine_profile = profile_for(wanted | ({"smoke"} if "smoke" in suites else set()))
    accel, accel_reason = choose_accel(args.accel, machine_profile.nested)
    payload_names = ["probe"] + [f for f in FEATURES if (REPO / "guests" / f).is_dir() and f in wanted]

    record = RunRecord(output / "run.json", run_id, args.label,
                       {"version": harness.__version__, "git": _git_describe()},
                       {f: profiles.get(f) or _default_profile(f) for f in features})
    record.data["kernel"] = kernel.record()
    try:
        qemu = qemu_version(qemu_binary())
    except HarnessError as e:
        qemu = f"missing: {e}"
    host = host_capabilities()
    record.data["platform"] = {"host_cpu": host["cpu_model"], "accel": accel,
                               "accel_reason": accel_reason, "qemu": qemu,
                               "machine_profile": machine_profile.name,
                               "boot": "pvh-vmlinux" if pvh.boot_file(kernel) != kernel.bzimage else "bzimage",
                               "capabilities": {"host": host, "guest": None}}
    record.data["seed"] = seed
    record.write()

    options = RunOptions(output=output, features=features, suites=suites, cases=args.case,
                         profiles=profiles, seed=seed, label=args.label, accel=accel,
                         accel_reason=accel_reason, machine_profile=machine_profile,
                         boot_timeout=args.boot_timeout, append=shlex.split(args.append),
                         reproduce=_reproduce(args, features) +
                         f" --seed {seed}", payload_names=payload_names)
    def progress(text: str) -> None:
        err.print(f"[dim]{text}[/dim]")
    ctx = RunContext(options, kernel, record, progress)
    plugin = KvmconfPlugin(ctx, record, suites, args.case, progress)
    err.print(f"run {run_id}: kernel {kernel.version} ({kernel.kind}), machine "
              f"{machine_profile.name}, accel {accel} ({accel_reason}), seed {seed}")
    pytest_args = [str(TESTCASES), "-p", "no:cacheprovider", "-q", "--no-header", "-rN",
                   "--tb=short", f"--junitxml={output / 'junit.xml'}",
                   "-o", "junit_family=xunit2", "--rootdir", str(REPO)]
    with open(output / "pytest.log", "w") as log, contextlib.redirect_stdout(log):
        try:
            code = pytest.main(pytest_args, plugins=[plugin])
        finally:
            ctx.close()
    record.data["timing"]["total_s"] = round(time.monotonic() - started, 3)
    record.write()
    history.append(Path(args.history) if args.history else REPO / "results" / "history.sqlite",
                   record.data, record.path)
    print_summary(record.data)
    if code not in (0, 1) and not record.data["cases"]:
        raise HarnessError(f"pytest exited {code} without running a case: see {output / 'pytest.log'}")
    exit_code = record.exit_code()
    if exit_code:
        worst = next(c for c in record.data["cases"]
                     if c["status"] == ("FAIL" if exit_code == 1 else "ERROR")
                     or (exit_code == 2 and c["status"] == "MISS"))
        err.print(f"kvmconf: {worst['status']} {worst['id']}: {worst['reason']}", markup=False)
    err.print(f"run record: {record.path}")
    return exit_code


def _default_profile(feature: str) -> str | None:
    try:
        return __import__(f"harness.reference.{feature}", fromlist=["PROFILES"]).PROFILES[0]
    except ImportError:
        return None


def print_summary(data: dict) -> None:
    colour = {"PASS": "green", "FAIL": "red", "ERROR": "magenta", "SKIP": "yellow", "MISS": "blue"}
    table = Table(title=f"kvmconf run {data['run_id']}", show_lines=False)
    for column in ("case", "status", "s", "reason"):
        table.add_column(column, overflow="fold")
    for case in data["cases"]:
        table.add_row(case["id"], f"[{colour[case['status']]}]{case['status']}[/]",
                      f"{case['duration_s']:.1f}", case["reason"][:160])
    out.print(table)
    summary = data["summary"]
    out.print(" ".join(f"{k}={v}" for k, v in summary.items()) +
              f"  boot_to_ready_s={data['timing']['boot_to_ready_s']} total_s={data['timing']['total_s']}")


# -- probe / bench --------------------------------------------------------------
def _boot_once(args, kernel, profile_name: str, logdir: Path):
    from harness.guest import Guest
    from harness.guestimage import build_base, with_keys
    from harness.kernel import pvh
    from harness.machine import Machine
    from harness.machine.profiles import PROFILES
    from harness.payloads import build as payload_build
    from harness.probe import choose_accel
    from harness.remote.keys import generate
    import tempfile

    profile = PROFILES[profile_name]
    accel, reason = choose_accel(args.accel, profile.nested)
    workdir = Path(tempfile.mkdtemp(prefix="kvmconf-"))
    image = build_base(kernel, {"probe": payload_build.build("probe").path}, profile.module_groups)
    keys = generate(workdir)
    initrd = with_keys(image, keys.client_public, keys.host_key_file, workdir / "initrd.cpio")
    machine = Machine(profile.name, profile, pvh.boot_file(kernel), initrd, workdir, logdir, accel=accel)
    return Guest.boot(machine, keys, {}, args.boot_timeout), accel, reason, workdir


def cmd_probe(args) -> int:
    import shutil
    import tempfile

    from harness.machine import qemu_binary
    from harness.probe import host_capabilities, qemu_version
    kernel = resolve_kernel(args)
    logdir = Path(args.output) if args.output else Path(tempfile.mkdtemp(prefix="kvmconf-probe-"))
    _output_dir(logdir)
    guest, accel, reason, workdir = _boot_once(args, kernel, args.machine, logdir)
    try:
        facts = {"host": host_capabilities(), "accel": accel, "accel_reason": reason,
                 "qemu": qemu_version(qemu_binary()), "kernel": kernel.record(),
                 "guest": guest.capabilities, "boot_to_ready_s": round(guest.boot_to_ready_s, 3)}
    finally:
        guest.poweroff()
        shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        print(json.dumps(facts, indent=1))
        return 0
    table = Table(title="kvmconf probe")
    table.add_column("capability")
    table.add_column("value", overflow="fold")
    g = guest.capabilities
    kvm = g.get("kvm", {})
    rows = [
        ("host cpu", f"{facts['host']['cpu_vendor']} {facts['host']['cpu_model']}"),
        ("host kvm", str(facts["host"]["kvm"])),
        ("accel", f"{accel} ({reason})"), ("qemu", facts["qemu"]),
        ("guest kernel", g.get("uname_r", "?")),
        ("guest cpu", f"{g.get('cpu_vendor')} svm={'svm' in g.get('cpu_flags', [])} "
                      f"vmx={'vmx' in g.get('cpu_flags', [])}"),
        ("nested", " ".join(f"{k}={v}" for k, v in g.items() if k.startswith(("kvm_amd.", "kvm_intel.")))),
        ("/dev/kvm", f"present={kvm.get('present')} api={kvm.get('api_version')} caps={kvm.get('caps')}"),
        ("hyper-v cpuid", "errno " + str(kvm["hv_cpuid"]["errno"]) if isinstance(kvm.get("hv_cpuid"), dict)
         else f"{len(kvm.get('hv_cpuid') or [])} leaves"),
        ("iommu groups", g.get("iommu_groups", "?")),
        ("vfio devices", " ".join(f"{d['address']}({d['id']},{d['driver']},group {d['iommu_group']})"
                                  for d in g.get("pci", []) if d["driver"] == "vfio-pci") or "none"),
        ("perf capabilities", str(g.get("perf_capabilities"))),
        ("pt", str("intel_pt" in g.get("cpu_flags", []))),
        ("sev", f"cpuid 0x8000001f eax={g.get('cpuid_8000001f_eax')} sev_status={g.get('sev_status')}"),
        ("boot to ssh", f"{facts['boot_to_ready_s']} s"),
    ]
    for row in rows:
        table.add_row(*row)
    out.print(table)
    out.print_json(json.dumps(facts))
    return 0


def cmd_bench(args) -> int:
    import shutil
    import tempfile
    kernel = resolve_kernel(args)
    times = []
    for i in range(args.boots):
        logdir = Path(tempfile.mkdtemp(prefix="kvmconf-bench-"))
        guest, accel, _, workdir = _boot_once(args, kernel, args.machine, logdir)
        times.append(guest.boot_to_ready_s)
        guest.poweroff()
        shutil.rmtree(workdir, ignore_errors=True)
        shutil.rmtree(logdir, ignore_errors=True)
        err.print(f"boot {i + 1}/{args.boots}: {guest.boot_to_ready_s:.2f} s")
    result = {"kernel": kernel.version, "machine": args.machine, "accel": accel,
              "boot_to_ready_s": [round(t, 3) for t in times],
              "median_s": round(statistics.median(times), 3)}
    print(json.dumps(result))
    return 0


# -- main --------------------------------------------------------------------------
def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="kvmconf", description=__doc__.splitlines()[0])
    sub = top.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the conformance suite on a kernel")
    add_run_options(run)
    run.set_defaults(func=cmd_run)
    kernel = sub.add_parser("kernel", help="kernels under test").add_subparsers(dest="kernel_command",
                                                                                 required=True)
    kbuild = kernel.add_parser("build", help="build a kernel from source and patches (cached)")
    add_build_options(kbuild)
    kbuild.add_argument("--jobs", type=int, help="make -j (default: all cores)")
    kbuild.set_defaults(func=cmd_kernel_build)
    series = sub.add_parser("series", help="patch series").add_subparsers(dest="series_command", required=True)
    show = series.add_parser("show", help="list the series in an mbox, a format-patch folder or a digest")
    show.add_argument("file")
    show.add_argument("--json", action="store_true")
    show.set_defaults(func=cmd_series_show)
    cmp = sub.add_parser("compare", help="compare run records case by case")
    cmp.add_argument("runs", nargs="+", help="run folders or run.json files, oldest first")
    cmp.add_argument("--json", action="store_true")
    cmp.add_argument("--all", action="store_true", help="also list unchanged cases")
    cmp.set_defaults(func=cmd_compare)
    bis = sub.add_parser("bisect", help="find the patch of a series that changes a case")
    bis.add_argument("--source", help="kernel source (default: linux-source-6.1)")
    bis.add_argument("--series", required=True, help="mbox or format-patch folder")
    bis.add_argument("--revision", type=int, help="series revision (default: the newest)")
    bis.add_argument("--case", action="append", default=[], help="case id; repeatable")
    bis.add_argument("--seed", type=int, default=0)
    bis.add_argument("--output", help="folder for the probe runs (default: results/bisect-<time>)")
    bis.set_defaults(func=cmd_bisect)
    mut = sub.add_parser("mutate", help="mutation score of the suite over kernel mutants")
    mut.add_argument("--features", help="comma list (default: syndbg,vfio)")
    mut.add_argument("--source", help="kernel source (default: linux-source-6.1)")
    mut.add_argument("--limit", type=int, help="sample this many generated mutants per feature")
    mut.add_argument("--seed", type=int, default=0, help="sampling and run seed (default 0)")
    mut.add_argument("--hand-written-only", action="store_true", help="only ci/mutants/<feature>/*.patch")
    mut.add_argument("--output", help="campaign folder (default: results/mutate-<time>)")
    mut.set_defaults(func=cmd_mutate)
    for name, func, helptext in (("probe", cmd_probe, "print host and guest capabilities"),
                                 ("bench", cmd_bench, "measure boot-to-SSH-ready time")):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("--kernel")
        p.add_argument("--modules")
        p.add_argument("--machine", choices=("nested", "vfio", "all"), default="all")
        p.add_argument("--accel", choices=("auto", "tcg", "kvm"), default="auto")
        p.add_argument("--boot-timeout", type=float, default=120.0)
        p.set_defaults(func=func)
        if name == "probe":
            p.add_argument("--json", action="store_true", help="JSON only")
            p.add_argument("--output", help="folder for the serial and QMP logs")
        else:
            p.add_argument("--boots", type=int, default=5)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except HarnessError as e:
        err.print(f"kvmconf: {str(e).splitlines()[0]}", markup=False)
        return 2
    except KeyboardInterrupt:
        err.print("kvmconf: interrupted")
        return 2


if __name__ == "__main__":
    sys.exit(main())
