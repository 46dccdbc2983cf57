"""`kvmconf run`: the suite on one kernel, recorded in run.json."""
from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import fnmatch
import json
import os
import random
import resource
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from rich.table import Table

import harness
from harness import features as registry
from harness.commands import argtypes as t
from harness.commands.common import (REPO, TESTCASES, err, git_describe, harness_digest, out, output_dir,
                                     parse_features, parse_profiles, suites as known_suites)
from harness.commands.kernel import add_build_options, resolve_kernel
from harness.errors import HarnessError, UsageError
from harness.machine.profiles import Profile, profile_for
from harness import interrupt, targets, tmpdirs


def add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kernel", type=t.bzimage, help="bzImage of the kernel under test (default: Debian's package)")
    add_build_options(p)
    p.add_argument("--modules", type=t.existing_dir,
                   help="its modules: lib/modules/<version> or a root containing it")
    p.add_argument("--features", type=t.feature_list,
                   help="comma list of registered features (kvmconf list; default: all)")
    p.add_argument("--suite", action="append", default=[], type=t.suite_name,
                   help="smoke or a feature; repeatable")
    p.add_argument("--case", action="append", default=[], type=t.case_pattern, help="case id or glob; repeatable")
    p.add_argument("--user-space-only", action="store_true",
                   help="only features whose payload is built from the kernel's source, without the "
                        "cases of theirs that run in a guest: no kernel is built or booted")
    p.add_argument("--profile", action="append", default=[], type=t.profile, help="model profile FEATURE=NAME")
    p.add_argument("--output", type=t.output_folder, help="run folder (default: results/<run-id>)")
    p.add_argument("--seed", type=t.integer, help="seed of the random op-scripts (default: random)")
    p.add_argument("--retries", type=t.non_negative_int, default=1,
                   help="re-runs of a case that ERRORs, each in a fresh machine (default 1; 0: none)")
    p.add_argument("--quiet", action="store_true", help="no progress and no table: the summary line only")
    p.add_argument("--json", action="store_true",
                   help="one JSON line per finished case on stdout, then the run's summary as JSON")
    p.add_argument("--label", default="", help="free text recorded in run.json")
    p.add_argument("--accel", choices=("auto", "tcg", "kvm"), default="auto")
    p.add_argument("--boot-timeout", type=t.positive_float, default=120.0, help="seconds (default 120)")
    p.add_argument("--history", type=t.history_db, help="SQLite history (default: results/history.sqlite)")
    p.add_argument("--db", type=t.db_url, default=os.environ.get("KVMCONF_DB") or None,
                   help="history store shared by many hosts: postgresql://[USER@]HOST[:PORT]/DBNAME "
                        "(default: $KVMCONF_DB; --history wins over it)")
    p.add_argument("--append", default="", type=t.shell_words, help="extra kernel command line for the guest")
    add_target_options(p)


def add_target_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--target", default="qemu", type=t.target,
                   help="qemu (a guest kvmconf boots; default), local (this machine's running kernel, "
                        "as root) or ssh://[USER@]HOST[:PORT] (an existing machine)")
    p.add_argument("--ssh-key", type=t.ssh_private_key,
                   help="ssh target: the private key (default: the agent and ~/.ssh keys)")
    p.add_argument("--host-key", type=t.host_key, help="ssh target: the host's public key line or a file with it "
                                      "(default: known_hosts; never accepted blindly)")
    p.add_argument("--vfio-device", type=t.pci_address,
                   help="local/ssh target: the PCI device (DDDD:BB:DD.F) VFIO cases may use; "
                                         "bound to vfio-pci for the run and given back afterwards")
    p.add_argument("--allow-module-changes", action="store_true",
                   help="local/ssh target: kvmconf may load the modules features need (unloaded "
                        "afterwards) and op-scripts may change module parameters")


def reproduce_line(args) -> str:
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
    if args.target != "qemu":
        words += ["--target", args.target]
    for option in ("ssh_key", "host_key", "vfio_device"):
        if getattr(args, option):
            words += ["--" + option.replace("_", "-"), getattr(args, option)]
    if args.allow_module_changes:
        words.append("--allow-module-changes")
    return shlex.join(words)


def cmd_run(args) -> int:
    from harness.probe import choose_accel
    from harness.targets.live import LiveHost, LiveOptions

    started = time.monotonic()
    reclaimed = tmpdirs.reclaim()      # folders of kvmconf commands that were killed
    target = targets.parse(args.target)
    targets.check_options(target, args)
    all_features = registry.names()
    features = parse_features(args.features) if args.features else list(all_features)
    for suite in args.suite:
        if suite not in known_suites():
            raise UsageError(f"--suite {suite}: unknown suite (known: {', '.join(known_suites())})")
    suites = args.suite or (["smoke"] + features)
    profiles = parse_profiles(args.profile)
    run_id = dt.datetime.now().strftime("%Y%m%d-%H%M%S-") + os.urandom(6).hex()   # unique across the hosts that share one store
    output = output_dir(Path(args.output) if args.output else REPO / "results" / run_id)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 32)
    wanted = {s for s in suites if s in all_features}
    if args.case:
        wanted = {c.split("/", 1)[0] for c in args.case if c.split("/", 1)[0] in all_features}
    with_smoke = any(c.startswith("smoke/") for c in args.case) if args.case else "smoke" in suites
    if args.user_space_only:
        needing = sorted(f for f in wanted if registry.get(f).runs_on != "harness")
        if with_smoke or needing:
            raise UsageError(f"--user-space-only: {(['smoke'] + needing)[0] if with_smoke else needing[0]} "
                             f"runs in a guest; name only features built from the kernel's source "
                             f"(--features/--suite)")
    machine_profile = profile_for(wanted | ({"smoke"} if with_smoke else set()))
    accel, accel_reason = choose_accel(args.accel)
    # the payloads that go to the target (a harness-side row builds its own from the source)
    payload_names = ["probe"] + [f for f in all_features if f in wanted
                                 and registry.get(f).runs_on == "target"]

    from harness.commands.run_progress import RunProgress, choose_mode, history_estimates
    from harness.results import history
    progress = RunProgress(choose_mode(args.quiet, args.json, sys.stderr), err,
                           history_estimates(history.destination(args.db, args.history,
                                                                 REPO / "results" / "history.sqlite")))
    live = None
    if target.live:
        live = LiveHost.open(LiveOptions(target, [f for f in all_features if f in wanted], payload_names,
                                         output, args.ssh_key, args.host_key, args.vfio_device,
                                         args.allow_module_changes), progress)
        kernel = live.kernel
    else:
        # a run whose features all compile the kernel's code into user-space programs
        # (and no smoke) boots nothing: a --source/--patch kernel is not built
        source_only = bool(wanted) and not with_smoke and all(
            registry.get(f).runs_on == "harness" for f in wanted) and (
            args.user_space_only or not _selects_guest_cases(args.case, [registry.get(f) for f in wanted]))
        kernel = resolve_kernel(args, source_only)
    try:
        return _run(args, RunPlan(target, features, suites, profiles, run_id, output, seed, machine_profile,
                                  accel, accel_reason, payload_names, started, reclaimed), kernel, live, progress)
    finally:
        if live is not None:
            live.close()     # a no-op when the run's context closed it


@dataclass
class RunPlan:
    target: targets.TargetSpec
    features: list[str]
    suites: list[str]
    profiles: dict[str, str]
    run_id: str
    output: Path
    seed: int
    machine_profile: Profile
    accel: str
    accel_reason: str
    payload_names: list[str]
    started: float
    reclaimed: list[str]


def _selects_guest_cases(patterns: list[str], rows) -> bool:
    """Whether the run selects a case that a harness-side row runs in a guest."""
    prefixes = [p for row in rows for p in row.guest_cases]
    if not patterns:
        return bool(prefixes)
    return any(fnmatch.fnmatchcase(prefix, pattern) or pattern.startswith(prefix)
               or fnmatch.fnmatchcase(prefix + "x", pattern) for pattern in patterns for prefix in prefixes)


def _run(args, plan: RunPlan, kernel, live, progress) -> int:
    import pytest

    from harness.kernel import pvh
    from harness.machine import qemu_binary
    from harness.probe import host_capabilities, qemu_version
    from harness.results import history, junit
    from harness.results.plugin import KvmconfPlugin
    from harness.results.record import RunRecord
    from harness.session import RunContext, RunOptions

    target, features, suites, profiles = plan.target, plan.features, plan.suites, plan.profiles
    run_id, output, seed, machine_profile = plan.run_id, plan.output, plan.seed, plan.machine_profile
    accel, accel_reason = plan.accel, plan.accel_reason
    record = RunRecord(output / "run.json", run_id, args.label,
                       {"version": harness.__version__, "git": git_describe(), "sha256": harness_digest()},
                       {f: profiles.get(f) or registry.get(f).profiles[0] for f in features},
                       {f: registry.get(f).profiles for f in features})
    record.data["kernel"] = kernel.record()
    record.data["target"] = {"kind": target.kind, "where": target.where}
    host = host_capabilities()
    if live is None:
        try:
            qemu = qemu_version(qemu_binary())
        except HarnessError as e:
            qemu = f"missing: {e}"
        record.data["platform"] = {"host_cpu": host["cpu_model"], "accel": accel,
                                   "accel_reason": accel_reason, "qemu": qemu,
                                   "machine_profile": machine_profile.name,
                                   "boot": None if kernel.kind == "source" else
                                   "pvh-vmlinux" if pvh.boot_file(kernel) != kernel.bzimage else "bzimage",
                                   "capabilities": {"host": host, "guest": None}}
    else:
        record.data["platform"] = {"host_cpu": live.capabilities.get("cpu_model", "unknown"), "accel": None,
                                   "accel_reason": f"target {target.kind}: the payloads run on that "
                                                   f"host's own kernel, no QEMU",
                                   "qemu": None, "machine_profile": None, "boot": None,
                                   "capabilities": {"host": host, "target": live.capabilities,
                                                    "target_missing": {f: why for f in features
                                                                       if (why := live.missing(f))}}}
    record.data["seed"] = seed
    record.data["reclaimed"] = plan.reclaimed
    record.write()
    if record.write_error:
        raise HarnessError(record.write_error)

    options = RunOptions(output=output, profiles=profiles, seed=seed, accel=accel,
                         accel_reason=accel_reason, machine_profile=machine_profile,
                         boot_timeout=args.boot_timeout, append=shlex.split(args.append),
                         reproduce=reproduce_line(args) + f" --seed {seed}", payload_names=plan.payload_names,
                         target=target, user_space_only=args.user_space_only, retries=args.retries)
    ctx = RunContext(options, kernel, record, progress, live)
    plugin = KvmconfPlugin(ctx, record, suites, args.case, progress)
    if progress.mode in ("bar", "lines"):
        err.print(f"run {run_id}: kernel {kernel.version} ({kernel.kind}), target {target.where}"
                  + (", no machine (only the kernel's own code compiled into user-space programs)"
                     if kernel.kind == "source" else
                     f", machine {machine_profile.name}, accel {accel} ({accel_reason})" if live is None else "")
                  + f", seed {seed}")
    pytest_args = [str(TESTCASES), "-p", "no:cacheprovider", "-q", "--no-header", "-rN",
                   "--tb=short", "--rootdir", str(REPO)]
    signame = None
    with _Log(output / "pytest.log") as log, contextlib.redirect_stdout(log):
        try:
            code = pytest.main(pytest_args, plugins=[plugin])
        finally:
            progress.close()
            signame = plugin.interrupted or interrupt.received()
            with interrupt.deferred():
                ctx.close(kill=signame is not None)
    if signame:
        plugin.finish_interrupted(signame)
        record.set("interrupted", signame)
    if record.write_error:
        raise HarnessError(record.write_error)
    if plugin.unmatched:
        raise UsageError(f"--case {plugin.unmatched[0]}: matches no case of the suite"
                         + (f" that runs on target {target.kind}" if target.live else ""))
    record.data["timing"]["total_s"] = round(time.monotonic() - plan.started, 3)
    # the harness's own peak memory (KiB on Linux), not its QEMU's
    record.data["timing"]["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    record.write()
    if record.write_error:
        raise HarnessError(record.write_error)
    try:
        junit.write(record.data, output / "junit.xml")
    except OSError as e:
        raise HarnessError(f"--output {output}: cannot write junit.xml: {e.strerror or e}") from None
    history.append(history.destination(args.db, args.history, REPO / "results" / "history.sqlite"),
                   record.data, record.path)
    if progress.mode in ("bar", "lines"):
        print_summary(record.data)
    elif progress.mode == "quiet":
        out.print(" ".join(f"{k}={v}" for k, v in record.data["summary"].items()) +
                  f"  total_s={record.data['timing']['total_s']}", markup=False)
    else:
        print(json.dumps({"run_id": record.data["run_id"], "summary": record.data["summary"],
                          "exit_code": record.exit_code(), "interrupted": signame,
                          "record": str(record.path)}), flush=True)
    if signame:
        err.print(f"kvmconf: interrupted by {signame}: the case it arrived in is ERROR, "
                  f"the {record.data['summary']['miss']} not started are MISS", markup=False)
    if code not in (0, 1) and not record.data["cases"]:
        raise HarnessError(f"pytest exited {code} without running a case: see {output / 'pytest.log'}")
    exit_code = record.exit_code()
    left = (record.data["target"].get("cleanup") or {}).get("left_behind")
    if left:
        err.print(f"kvmconf: target {target.where}: left behind: {'; '.join(left)}", markup=False)
        exit_code = exit_code or 2
    if exit_code:
        worst = next(c for c in record.data["cases"]
                     if c["status"] == ("FAIL" if exit_code == 1 else "ERROR")
                     or (exit_code == 2 and c["status"] == "MISS"))
        err.print(f"kvmconf: {worst['status']} {worst['id']}: {worst['reason']}", markup=False)
    err.print(f"run record: {record.path}")
    return exit_code


class _Log:
    """pytest's log file: a write that fails (a full disk) is dropped, not raised into
    pytest's reporting; run.json's own write reports the problem."""
    def __init__(self, path: Path):
        self._file = open(path, "w")

    def write(self, text: str) -> int:
        with contextlib.suppress(OSError):
            self._file.write(text)
        return len(text)

    def flush(self) -> None:
        with contextlib.suppress(OSError):
            self._file.flush()

    def __getattr__(self, name):      # isatty, encoding, fileno...: the file's own
        return getattr(self._file, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        with contextlib.suppress(OSError):
            self._file.close()


def print_summary(data: dict) -> None:
    colour = {"PASS": "green", "FAIL": "red", "ERROR": "magenta", "SKIP": "yellow", "MISS": "blue"}
    table = Table(title=f"kvmconf run {data['run_id']}", show_lines=False)
    for column in ("case", "status", "s", "reason"):
        table.add_column(column, overflow="fold")
    for case in data["cases"]:
        table.add_row(case["id"], f"[{colour[case['status']]}]{case['status']}[/]",
                      f"{case['duration_s']:.1f}", case["reason"][:160])
    out.print(table)
    ran = {c["feature"] for c in data["cases"] if c["status"] in ("PASS", "FAIL")}
    verdicts = {f: v for f, v in (data.get("profile_verdict") or {}).items() if f in ran}
    if verdicts:
        out.print("profile verdict: " + " ".join(
            f"{f}={v if v else 'none (no profile explains every case)'}" for f, v in verdicts.items()),
            markup=False)
    for cov in data.get("model_coverage") or []:
        out.print(f"model coverage {cov['feature']}: named {cov['named']}/{cov['rules']} rules, "
                  f"random {cov['random']}/{cov['rules']}"
                  + (f", never reached: {' '.join(cov['unreached'][:8])}" if cov["unreached"] else ""),
                  markup=False)
    summary = data["summary"]
    out.print(" ".join(f"{k}={v}" for k, v in summary.items()) +
              f"  boot_to_ready_s={data['timing']['boot_to_ready_s']} total_s={data['timing']['total_s']}")
