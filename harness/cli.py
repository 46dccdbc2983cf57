"""kvmconf: one command per intent (run, list, probe, bench, kernel, series, compare, bisect, mutate, report, publish, certify, verify).

Exit codes: 0 all is well, 1 the kernel side is wrong, 2 the harness broke or
the usage is bad; the reason is one line on stderr.
"""
from __future__ import annotations

import argparse
import ast
import re
import sys

from harness import interrupt
from harness.commands import argtypes as t
from harness.commands.certify import add_certify_options, add_verify_options
from harness.commands.common import err
from harness.commands.kernel import add_build_options, cmd_kernel_build
from harness.commands.list import cmd_list
from harness.commands.mutate import add_mutate_options, cmd_mutate
from harness.commands.probe import cmd_bench, cmd_probe
from harness.commands.publish import add_publish_options
from harness.commands.report import add_report_options
from harness.commands.run import add_run_options, add_target_options, cmd_run
from harness.commands.series import cmd_bisect, cmd_compare, cmd_series_show
from harness.commands.soak import add_soak_options, cmd_soak
from harness.errors import HarnessError


# argparse's own wording that is about the flag, not about a value
_ARGPARSE_WORDING = re.compile(r"(expected |not allowed with argument)")


def one_line(prog: str, message: str) -> str:
    """argparse's error as kvmconf's one line: "--FLAG VALUE: what is wrong" (a
    positional is named by its command: "series show FILE: ...")."""
    message = " ".join(message.split())
    command = prog.removeprefix("kvmconf").strip()
    m = re.fullmatch(r"argument (\S+?): (.*)", message)
    if not m:       # unrecognized or missing arguments
        return f"{command}: {message}" if command else message
    name, text = m.groups()
    if not name.startswith("-") and command:
        name = command
    choice = re.fullmatch(r"invalid choice: (.*?) \(choose from (.*)\)", text)
    invalid = re.fullmatch(r"invalid (\S+) value: (.*)", text)
    if choice or invalid:
        value = choice.group(1) if choice else invalid.group(2)
        try:
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            pass
        what = (f"invalid choice (choose from {choice.group(2).replace(chr(39), '')})" if choice
                else f"not a valid {invalid.group(1)}")
        return f"{name} {t.show(str(value))}: {what}"
    if text.startswith(name + " "):     # the harness's own check named the flag already
        return text
    explicit = re.fullmatch(r"ignored explicit argument (.*)", text)
    if explicit:                        # --json=x
        return f"{name}={ast.literal_eval(explicit.group(1))}: takes no value"
    if _ARGPARSE_WORDING.match(text):
        return f"{name}: {text}"
    return f"{name} {text}"


class Parser(argparse.ArgumentParser):
    """Bad usage is one stderr line "kvmconf: ..." and exit 2, as every other error
    (no usage block; --help prints it)."""

    def error(self, message: str):
        self.exit(2, f"kvmconf: {one_line(self.prog, message)}\n")


def parser() -> argparse.ArgumentParser:
    top = Parser(prog="kvmconf", description=__doc__.splitlines()[0])
    sub = top.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the conformance suite on a kernel")
    add_run_options(run)
    run.set_defaults(func=cmd_run)
    lst = sub.add_parser("list", help="features, model profiles and cases, without booting")
    lst.add_argument("--features", type=t.feature_list, help="comma list of features (default: all)")
    lst.add_argument("--json", action="store_true")
    lst.add_argument("--names", action="store_true", help="only the feature names, one line")
    lst.add_argument("--target", default="qemu", type=t.target,
                     help="list what runs on this target: qemu, local, ssh://HOST")
    lst.set_defaults(func=cmd_list)
    kernel = sub.add_parser("kernel", help="kernels under test").add_subparsers(dest="kernel_command",
                                                                                 required=True)
    kbuild = kernel.add_parser("build", help="build a kernel from source and patches (cached)")
    add_build_options(kbuild)
    kbuild.add_argument("--jobs", type=t.positive_int, help="make -j (default: all cores)")
    kbuild.set_defaults(func=cmd_kernel_build)
    series = sub.add_parser("series", help="patch series").add_subparsers(dest="series_command", required=True)
    show = series.add_parser("show", help="list the series in an mbox, a format-patch folder or a digest")
    show.add_argument("file", type=t.series_source)
    show.add_argument("--json", action="store_true")
    show.set_defaults(func=cmd_series_show)
    cmp = sub.add_parser("compare", help="compare run records case by case")
    cmp.add_argument("runs", nargs="+", type=t.run_record, help="run folders or run.json files, oldest first")
    cmp.add_argument("--json", action="store_true")
    cmp.add_argument("--all", action="store_true", help="also list unchanged cases")
    cmp.set_defaults(func=cmd_compare)
    bis = sub.add_parser("bisect", help="find the patch of a series that changes a case")
    bis.add_argument("--source", type=t.kernel_source, help="kernel source (default: linux-source-6.1)")
    bis.add_argument("--series", required=True, type=t.series_source, help="mbox or format-patch folder")
    bis.add_argument("--revision", type=t.positive_int, help="series revision (default: the newest)")
    bis.add_argument("--case", action="append", default=[], type=t.case_pattern, help="case id; repeatable")
    bis.add_argument("--seed", type=t.integer, default=0)
    bis.add_argument("--output", type=t.output_folder,
                     help="folder for the probe runs (default: results/bisect-<time>)")
    bis.set_defaults(func=cmd_bisect)
    mut = sub.add_parser("mutate", help="mutation score of the suite over kernel mutants")
    add_mutate_options(mut)
    mut.set_defaults(func=cmd_mutate)
    soak = sub.add_parser("soak", help="repeat boot, a short case set and shutdown; report leaks")
    add_soak_options(soak)
    soak.set_defaults(func=cmd_soak)
    report = sub.add_parser("report", help="run records as HTML, KTAP, KCIDB, SQUAD or JUnit files")
    add_report_options(report)
    publish = sub.add_parser("publish", help="send run records to KCIDB (kcidb-rest) or SQUAD over HTTP")
    add_publish_options(publish)
    certify = sub.add_parser("certify", help="judge a run against PLATFORM.toml and write a signed bundle")
    add_certify_options(certify)
    verify = sub.add_parser("verify", help="check a certification bundle offline and print its verdict")
    add_verify_options(verify)
    for name, func, helptext in (("probe", cmd_probe, "print host and guest capabilities"),
                                 ("bench", cmd_bench, "measure boot-to-SSH-ready time")):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("--kernel", type=t.bzimage)
        p.add_argument("--modules", type=t.existing_dir)
        p.add_argument("--machine", choices=("nested", "vfio", "all"), default="all")
        p.add_argument("--accel", choices=("auto", "tcg", "kvm"), default="auto")
        p.add_argument("--boot-timeout", type=t.positive_float, default=120.0)
        p.set_defaults(func=func)
        if name == "probe":
            p.add_argument("--json", action="store_true", help="JSON only")
            p.add_argument("--output", type=t.output_folder, help="folder for the serial and QMP logs")
            add_target_options(p)
        else:
            p.add_argument("--boots", type=t.positive_int, default=5)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    interrupt.install()
    try:
        return args.func(args)
    except HarnessError as e:
        err.print(f"kvmconf: {str(e).splitlines()[0]}", markup=False)
        return 2
    except KeyboardInterrupt as e:
        err.print(f"kvmconf: interrupted by {interrupt.signame(e)}", markup=False)
        return 2


if __name__ == "__main__":
    sys.exit(main())
