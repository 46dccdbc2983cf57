"""Bad input on every flag (issue 14, item 6).

The flags come from argparse itself (harness.cli.parser(), every subparser, every
action), so a new flag is covered automatically, and one that is not classified in
FLAGS below fails test_every_flag_is_classified until it is. Each classified flag
gets the bad values of its kind (missing, a folder or FIFO where a file is expected,
empty, truncated, malformed...), each through the real command line; the outcome
must be exactly one stderr line "kvmconf: <flag> <value>: <what is wrong>", exit 2,
and no traceback. Every flag that takes a value also gets none, and every switch a
value (`--json=x`): argparse's own errors are one line too.

No invocation gets past argument parsing (the checks are argparse `type=`s,
harness/commands/argtypes.py), so none builds, boots or reaches the network; a
regression that does is stopped by the short deadline, by a QEMU binary that does
not exist and by an empty cache.
"""
from __future__ import annotations

import argparse
import collections
import concurrent.futures
import contextlib
import gzip
import io
import os
import re
import signal
import sqlite3
import struct
import subprocess
import tarfile

import pytest

from harness.cli import parser
from harness.commands import argtypes as t
from tests.conftest import kvmconf

# -- the classification: (command, flag) -> kind ------------------------------------------
# A positional is named by its dest ("file", "runs"); its errors name the command.
FLAGS: dict[str, dict[str, str]] = {
    "run": {"--kernel": "bzimage", "--source": "source", "--patch": "patch", "--config": "config",
            "--series": "series", "--revision": "positive-int", "--series-prefix": "non-negative-int",
            "--modules": "folder", "--features": "features", "--suite": "suite", "--case": "case",
            "--user-space-only": "switch", "--profile": "profile", "--output": "output",
            "--seed": "integer", "--retries": "non-negative-int", "--quiet": "switch", "--json": "switch", "--label": "text", "--accel": "choice", "--boot-timeout": "positive-float",
            "--history": "history", "--db": "db", "--append": "shell-words", "--target": "target",
            "--ssh-key": "ssh-key", "--host-key": "host-key", "--vfio-device": "pci",
            "--allow-module-changes": "switch"},
    "list": {"--features": "features", "--json": "switch", "--names": "switch", "--target": "target"},
    "kernel build": {"--source": "source", "--patch": "patch", "--config": "config", "--series": "series",
                     "--revision": "positive-int", "--series-prefix": "non-negative-int",
                     "--jobs": "positive-int"},
    "series show": {"file": "series", "--json": "switch"},
    "compare": {"runs": "run-record", "--json": "switch", "--all": "switch"},
    "bisect": {"--source": "source", "--series": "series", "--revision": "positive-int", "--case": "case",
               "--seed": "integer", "--output": "output"},
    "mutate": {"--features": "features", "--source": "source", "--limit": "non-negative-int",
               "--seed": "integer", "--hand-written-only": "switch", "--patch": "patch", "--output": "output"},
    "probe": {"--kernel": "bzimage", "--modules": "folder", "--machine": "choice", "--accel": "choice",
              "--boot-timeout": "positive-float", "--json": "switch", "--output": "output", "--target": "target",
              "--ssh-key": "ssh-key", "--host-key": "host-key", "--vfio-device": "pci",
              "--allow-module-changes": "switch"},
    "bench": {"--kernel": "bzimage", "--modules": "folder", "--machine": "choice", "--accel": "choice",
              "--boot-timeout": "positive-float", "--boots": "positive-int"},
    "soak": {"--minutes": "positive-float", "--cycles": "positive-int", "--case": "case", "--kernel": "bzimage",
             "--modules": "folder", "--output": "output", "--db": "db"},
    "report": {"runs": "run-record", "--html": "switch", "--ktap": "switch", "--kcidb": "switch",
               "--squad": "switch", "--junit": "switch", "--output": "output", "--artifacts-url": "url",
               "--db": "db", "--history": "history"},
    "publish": {"runs": "run-record", "--kcidb": "kcidb-url", "--squad": "squad-url", "--token-file": "token-file",
                "--artifacts-url": "url", "--deadline": "positive-float"},
    "certify": {"run": "run-record", "--expect": "platform", "--key": "ssh-key", "--output": "output-file",
                "--new-key": "output"},
    "verify": {"bundle": "bundle", "--pubkey": "public-key", "--json": "switch"},
}

# kind -> the argparse type= it must have (None: argparse's own: switches, choices, free text)
TYPES = {
    "bzimage": t.bzimage, "source": t.kernel_source, "patch": t.patch_file, "config": t.config_fragment,
    "series": t.series_source, "run-record": t.run_record, "folder": t.existing_dir, "output": t.output_folder,
    "history": t.history_db, "db": t.db_url, "ssh-key": t.ssh_private_key, "host-key": t.host_key, "target": t.target,
    "pci": t.pci_address, "features": t.feature_list, "suite": t.suite_name, "profile": t.profile,
    "case": t.case_pattern, "shell-words": t.shell_words, "integer": t.integer,
    "positive-int": t.positive_int, "non-negative-int": t.non_negative_int, "positive-float": t.positive_float,
    "url": t.artifacts_url, "kcidb-url": t.kcidb_url, "squad-url": t.squad_url, "token-file": t.token_file,
    "platform": t.platform_file, "output-file": t.output_file, "public-key": t.public_key_file,
    "bundle": t.bundle_file,
    "switch": None, "choice": None, "text": None,
}

# Bad values: (label, value, what the line must say). `{d}` is the folder of the bad
# files below. Tests run as root, so a file made unreadable by chmod 000 is still
# readable: "unreadable" is a folder where a file is expected, a FIFO (which would
# block a reader: the check must not open it) or a dangling symlink.
MISSING = ("missing", "{d}/missing", r"no such")
FOLDER = ("folder-for-file", "{d}/folder", r"is a folder, not a file")
FIFO = ("fifo", "{d}/fifo", r"not a regular file")
DANGLING = ("dangling-symlink", "{d}/dangling", r"no such .*dangling symlink")
EMPTY = ("empty", "", r"empty")
FILE_CASES = [MISSING, FOLDER, FIFO, DANGLING, ("empty", "", r"empty path")]

BAD: dict[str, list[tuple[str, str, str]]] = {
    "bzimage": FILE_CASES + [
        ("empty-file", "{d}/empty", r"not a bzImage \(no x86 boot header\)"),
        ("malformed", "{d}/text", r"not a bzImage"),
        ("truncated", "{d}/truncated.bzImage", r"truncated bzImage \(4096 of the 68096 bytes")],
    "source": [MISSING, FIFO, DANGLING, ("empty", "", r"empty path"),
               ("folder-not-a-tree", "{d}/folder", r"not a Linux kernel source"),
               ("empty-file", "{d}/empty", r"not a readable tarball \(.*empty file"),
               ("malformed", "{d}/text", r"not a readable tarball"),
               ("truncated", "{d}/truncated.tgz", r"not a readable tarball \(Compressed file ended")],
    "patch": FILE_CASES + [("empty-file", "{d}/empty", r"not a patch"),
                           ("malformed", "{d}/text", r"not a patch \(no ---/\+\+\+ file headers\)")],
    "config": FILE_CASES + [("malformed", "{d}/text", r":1: not a config line: hello"),
                            ("binary", "{d}/binary", r"not a config fragment \(not UTF-8")],
    "series": [MISSING, FIFO, DANGLING, ("empty", "", r"empty path"),
               ("empty-folder", "{d}/folder", r"no \.patch files in the folder"),
               ("empty-file", "{d}/empty", r"not an mbox"),
               ("malformed", "{d}/text", r"not an mbox"),
               ("binary", "{d}/binary", r"not an mbox"),
               ("bad-header", "{d}/bad-header.mbox", r"message 1: unparsable From header \(IndexError"),
               ("truncated", "{d}/truncated.mbox", r"message '.*' has no diff")],
    "run-record": [MISSING, FIFO, DANGLING, ("empty", "", r"empty path"),
                   ("folder-without-record", "{d}/folder", r"run\.json: no such run record"),
                   ("record-is-a-folder", "{d}/run", r"run\.json: unreadable \(Is a directory\)"),
                   ("empty-file", "{d}/empty", r"not JSON"),
                   ("truncated", "{d}/truncated.json", r"not JSON"),
                   ("not-an-object", "{d}/list.json", r"not a run record \(a JSON list"),
                   ("binary", "{d}/binary", r"not (UTF-8|JSON)"),
                   ("wrong-schema", "{d}/schema.json", r"schema 0, expected")],
    "folder": [("missing", "{d}/missing", r"no such folder"), ("fifo", "{d}/fifo", r"not a folder"), DANGLING,
               ("empty", "", r"empty path"), ("file-for-folder", "{d}/text", r"not a folder")],
    "output": [("a-file", "{d}/text", r"not writable \(File exists\)"),
               ("fifo", "{d}/fifo", r"not writable \(File exists\)"),
               ("dangling-symlink", "{d}/dangling", r"dangling symlink"), ("empty", "", r"empty path"),
               ("under-a-file", "{d}/text/run", r"not writable \(Not a directory\)")],
    "history": [FOLDER, FIFO, ("empty", "", r"empty path"),
                ("under-a-file", "{d}/text/h.sqlite", r"not writable \(Not a directory\)"),
                ("malformed", "{d}/text", r"not an SQLite database"),
                ("truncated", "{d}/truncated.sqlite", r"truncated SQLite database")],
    "db": [("empty", "", r"empty URL"), ("other-scheme", "mysql://h/db", r"expected postgresql://"),
           ("port", "postgresql://h:99999/db", r"port 99999 is not a port number"),
           ("malformed", "postgresql://h/db?bogus=1", r"not a PostgreSQL URL \(invalid URI query parameter"),
           ("no-server", "postgresql:///db?host={d}/folder", r"cannot connect \(connection")],
    "ssh-key": FILE_CASES + [("malformed", "{d}/text", r"not a private key")],
    "host-key": [("empty", "", r"empty"), ("fifo", "{d}/fifo", r"not a regular file"),
                 ("malformed-file", "{d}/text", r"not an OpenSSH public key"),
                 ("binary-file", "{d}/binary", r"not an OpenSSH public key"),
                 ("malformed-line", "ssh-ed25519 notbase64!", r"not an OpenSSH public key")],
    "target": [("empty", "", r"empty"), ("other-scheme", "http://x", r"expected qemu, local or ssh://"),
               ("port", "ssh://h:99999", r"port 99999 out of range"), ("no-host", "ssh://", r"expected")],
    "pci": [("empty", "", r"expected a PCI address"), ("short", "0000:00:1f", r"expected a PCI address"),
            ("function", "0000:00:1f.9", r"expected a PCI address")],
    "features": [("empty", "", r"no feature named"), ("unknown", "warpdrive", r"unknown feature 'warpdrive'"),
                 ("commas", ",", r"no feature named")],
    "suite": [("empty", "", r"unknown suite"), ("unknown", "warpdrive", r"unknown suite \(known: smoke")],
    "profile": [("empty", "", r"expected FEATURE=NAME"), ("no-name", "syndbg", r"expected FEATURE=NAME"),
                ("unknown", "syndbg=nope", r"unknown profile 'nope' for syndbg")],
    "case": [("empty", "", r"empty case id")],
    "shell-words": [("unbalanced", "'unclosed", r"not shell words \(No closing quotation\)")],
    "integer": [("word", "abc", r"not an integer"), ("empty", "", r"not an integer"),
                ("fraction", "1.5", r"not an integer")],
    "positive-int": [("word", "abc", r"not an integer"), ("empty", "", r"not an integer"),
                     ("zero", "0", r"must be 1 or more"), ("negative", "-3", r"must be 1 or more")],
    "non-negative-int": [("word", "abc", r"not an integer"), ("empty", "", r"not an integer"),
                         ("negative", "-1", r"must be 0 or more")],
    "positive-float": [("word", "abc", r"not a number"), ("empty", "", r"not a number"),
                ("zero", "0", r"must be more than 0"), ("negative", "-1", r"must be more than 0"),
                ("nan", "nan", r"not a finite number"), ("inf", "inf", r"not a finite number")],
    "choice": [("unknown", "bogus", r"invalid choice \(choose from ")],
    "url": [("empty", "", r"empty \(expected an absolute URL"), ("no-scheme", "ci.example.org/runs", r"not an absolute URL"),
            ("no-host", "https:///runs", r"no host"), ("relative-file", "file:runs", r"not an absolute file URL"),
            ("query", "https://ci.example.org/?x=1", r"has a query or fragment"),
            ("space", "https://ci.example.org/my runs/", r"not a valid URI")],
    "kcidb-url": [("empty", "", r"empty"), ("other-scheme", "ftp://kcidb.example.org/", r"expected an http"),
                  ("no-host", "https:///submit", r"no host"), ("port", "https://h:99999/", r"not a valid port"),
                  ("query", "https://kcidb.example.org/?x=1", r"has a query or fragment")],
    "squad-url": [("empty", "", r"empty"), ("no-host", "https:///g/p/b/e", r"no host"),
                  ("short", "https://squad.example.org/group/project", r"expected SQUAD's URL then /GROUP/PROJECT"),
                  ("not-a-slug", "https://squad.example.org/g/p/b/-env", r"environment '-env' is not a SQUAD slug")],
    "token-file": FILE_CASES + [("empty-file", "{d}/empty", r"empty \(expected the token on one line\)"),
                                ("two-lines", "{d}/two-lines", r"more than one line"),
                                ("binary", "{d}/binary", r"more than one line|not a token")],
    "platform": FILE_CASES + [("malformed", "{d}/text", r"not TOML"),
                              ("binary", "{d}/binary", r"not UTF-8 text|not TOML")],
    "output-file": [FOLDER, ("empty", "", r"empty path"),
                    ("under-a-file", "{d}/text/cert.tar.gz", r"not writable \(no folder")],
    "public-key": FILE_CASES + [("malformed", "{d}/text", r"not a public key")],
    "bundle": FILE_CASES + [("malformed", "{d}/text", r"not a certification bundle \(not gzip\)")],
    "switch": [], "text": [],
}


def _walk(p: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _walk(sub, path + (name,))
        elif not isinstance(action, argparse._HelpAction):
            yield " ".join(path), action


def _name(action: argparse.Action) -> str:
    return max(action.option_strings, key=len) if action.option_strings else action.dest


PARSER = parser()       # parse_args keeps no state between calls: one parser serves every case
ACTIONS = {(command, _name(action)): action for command, action in _walk(PARSER)}


def _cases():
    """Every classified flag x every bad value of its kind, plus the flag without its
    value (or a switch given one)."""
    for (command, name), action in ACTIONS.items():
        kind = FLAGS.get(command, {}).get(name)
        if kind is None:
            continue                    # test_every_flag_is_classified fails instead
        positional = not action.option_strings
        for label, value, what in BAD[kind]:
            yield f"{command}:{name}:{label}", (command, name, positional, value, what)
        if positional and action.nargs == "?":
            pass                        # an optional positional (certify RUN beside --new-key)
        elif positional or action.nargs != 0:
            yield f"{command}:{name}:no-value", (command, name, positional, None, None)
        else:
            yield f"{command}:{name}:given-a-value", (command, name, positional, "x", None)


CASES = dict(_cases())


def _through_the_cli() -> list[str]:
    """The cases also run as the real `kvmconf` command (a subprocess each, ~0.4 s of
    start-up, so not all ~400): each kind's last bad value (its truncated or malformed
    one), on a flag of a command no earlier pick covered; argparse's own errors (a flag
    without its value, a switch given one); and any command still uncovered."""
    by_kind: dict[str, list[tuple[str, str]]] = collections.defaultdict(list)
    for command, name in ACTIONS:
        if name in FLAGS.get(command, {}):
            by_kind[FLAGS[command][name]].append((command, name))
    chosen, covered = [], set()
    for kind, flags in by_kind.items():
        if BAD[kind]:
            command, name = min(flags, key=lambda flag: flag[0] in covered)
            chosen.append(f"{command}:{name}:{BAD[kind][-1][0]}")
            covered.add(command)
    for suffix in ("no-value", "given-a-value"):
        cid = min((c for c in CASES if c.endswith(":" + suffix)), key=lambda c: c.split(":")[0] in covered)
        chosen.append(cid)
        covered.add(cid.split(":")[0])
    for command in FLAGS:       # (one the parser lacks: test_every_flag_is_classified says so)
        first = next((c for c in CASES if c.startswith(command + ":")), None)
        if command not in covered and first:
            chosen.append(first)
    return chosen


CLI_CASES = _through_the_cli()


def test_every_flag_is_classified():
    unclassified = sorted(f"{c} {n}" for c, n in ACTIONS if n not in FLAGS.get(c, {}))
    assert not unclassified, f"classify these flags in FLAGS (and give their kind bad values): {unclassified}"
    stale = sorted(f"{c} {n}" for c, names in FLAGS.items() for n in names if (c, n) not in ACTIONS)
    assert not stale, f"FLAGS names flags the parser no longer has: {stale}"
    assert set(TYPES) == set(BAD)
    assert len(ACTIONS) >= 70


@pytest.mark.parametrize("key", sorted(ACTIONS), ids=lambda k: f"{k[0]}:{k[1]}")
def test_classification_matches_the_parser(key):
    """The kind agrees with what argparse does with the flag: its type=, its choices,
    whether it takes a value."""
    action, kind = ACTIONS[key], FLAGS.get(key[0], {}).get(key[1])
    assert kind is not None, f"{key}: not classified (see test_every_flag_is_classified)"
    assert action.type is TYPES[kind], f"{key}: type {action.type} but classified {kind}"
    assert (action.choices is not None) == (kind == "choice")
    assert (action.nargs == 0) == (kind == "switch")
    if kind not in ("switch", "text"):
        assert BAD[kind], f"{kind}: no bad values"


def _bad_files(d):
    (d / "folder").mkdir()
    os.mkfifo(d / "fifo")
    (d / "dangling").symlink_to(d / "missing")
    (d / "empty").write_bytes(b"")
    (d / "text").write_text("hello\n")
    (d / "two-lines").write_text("token-one\ntoken-two\n")
    (d / "binary").write_bytes(b"\xff\xfe\x00\x80kvm\xc3\x28\n" * 8)
    # a bzImage header that promises 4 setup sectors and 64 KiB of kernel, in 4 KiB
    image = bytearray(0x1000)
    struct.pack_into("<H", image, 0x1FE, 0xAA55)
    image[0x202:0x206] = b"HdrS"
    struct.pack_into("<H", image, 0x206, 0x20F)
    struct.pack_into("<I", image, 0x1F4, 0x1000)
    struct.pack_into("<H", image, 0x20E, 0x600 - 0x200)
    image[0x600:0x610] = b"6.1.0-kvmconf\0\0\0"
    (d / "truncated.bzImage").write_bytes(bytes(image))
    tarball = io.BytesIO()
    with tarfile.open(fileobj=tarball, mode="w:gz") as tar:
        data = os.urandom(20000)
        info = tarfile.TarInfo("linux/Makefile")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    assert gzip.decompress(tarball.getvalue())
    (d / "truncated.tgz").write_bytes(tarball.getvalue()[:60])
    (d / "truncated.mbox").write_text("From kvmconf Mon Sep 17 00:00:00 2001\nFrom: A <a@example.org>\n"
                                      "Subject: [PATCH 1/2] KVM: x86: cut before its diff\n\n")
    (d / "bad-header.mbox").write_text("From kvmconf Mon Sep 17 00:00:00 2001\nSubject: [PATCH 1/1] x\n"
                                       "From: <\n\n--- a/x\n+++ b/x\n")
    (d / "run" / "run.json").mkdir(parents=True)
    (d / "truncated.json").write_text('{"schema": "kvmconf-run/1", "cases": [')
    (d / "list.json").write_text("[1, 2]\n")
    (d / "schema.json").write_text('{"schema": 0}\n')
    with sqlite3.connect(d / "good.sqlite") as conn:
        conn.execute("CREATE TABLE t (x)")
    conn.close()
    (d / "truncated.sqlite").write_bytes((d / "good.sqlite").read_bytes()[:100])


def _argv(d, case) -> list[str]:
    command, name, positional, value, _ = case
    argv = command.split()
    if value is None:                       # the flag without its value
        return argv + ([] if positional else [name])
    if positional:
        return argv + [value.format(d=d)]
    if FLAGS[command][name] == "switch":
        return argv + [f"{name}={value}"]
    return argv + [name, value.format(d=d)]


def _check(d, case, stderr: str, returncode) -> None:
    """Exactly one stderr line "kvmconf: <flag> <value>: <what>", exit 2, no traceback."""
    command, name, positional, value, what = case
    assert "Traceback" not in stderr, stderr[-3000:]
    lines = stderr.splitlines()
    assert len(lines) == 1, f"{_argv(d, case)}: {stderr[-3000:]}"
    (line,) = lines
    assert returncode == 2, (_argv(d, case), line)
    if value is None:
        assert line == (f"kvmconf: {command}: the following arguments are required: {name}" if positional
                        else f"kvmconf: {name}: expected one argument"), line
    elif what is None:                      # a switch given a value
        assert line == f"kvmconf: {name}={value}: takes no value", line
    else:
        head = f"kvmconf: {command if positional else name} {t.show(value.format(d=d))}"
        assert line.startswith(head), f"{line!r} does not start with {head!r}"
        assert re.search(what, line[len(head):]), f"{line!r}: expected {what!r}"


@pytest.fixture(scope="module")
def bad(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    _bad_files(d)
    return d


class _Blocked(Exception):
    pass


@pytest.mark.parametrize("case_id", sorted(CASES))
def test_bad_value_fails_at_parse_time(case_id, bad):
    """The whole matrix through harness.cli.parser() in this process: the error is
    argparse's, so nothing of the command (no build, boot or network) ran."""
    case = CASES[case_id]

    def blocked(*_):
        raise _Blocked("the check blocked (opened a FIFO?)")
    previous = signal.signal(signal.SIGALRM, blocked)
    signal.alarm(20)
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr), pytest.raises(SystemExit) as done:
            PARSER.parse_args(_argv(bad, case))
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    _check(bad, case, stderr.getvalue(), done.value.code)


def _invoke(d, case) -> subprocess.CompletedProcess | str:
    # A value that parses would run the command itself (a build, a boot, a soak of
    # runs): it is not started; the in-process matrix names the regression.
    with contextlib.redirect_stderr(io.StringIO()):
        try:
            PARSER.parse_args(_argv(d, case))
            return f"{_argv(d, case)} was accepted at parse time: not run"
        except SystemExit:
            pass
    return kvmconf(*_argv(d, case), timeout=60, cwd=d,
                   env={"KVMCONF_QEMU": "qemu-system-nonexistent", "KVMCONF_CACHE": str(d / "cache")})


@pytest.fixture(scope="module")
def outcomes(request, bad):
    """The selected CLI cases, run up front one per core."""
    wanted = [item.callspec.params["case_id"] for item in request.session.items
              if item.originalname == "test_real_cli_bad_value" and item.module is request.module]
    with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        futures = {cid: pool.submit(_invoke, bad, CASES[cid]) for cid in wanted}
        return {cid: f.result() for cid, f in futures.items()}


@pytest.mark.parametrize("case_id", CLI_CASES)
def test_real_cli_bad_value(case_id, bad, outcomes):
    """The same, as a user meets it: the `kvmconf` command, its stderr and exit code."""
    done = outcomes[case_id]
    assert not isinstance(done, str), done
    _check(bad, CASES[case_id], done.stderr, done.returncode)
    assert done.stdout == "", done.stdout[-500:]
    assert not (bad / "cache").exists(), "the command got past its arguments to the cache"


def test_argparse_errors_are_one_line_too():
    for argv, expected in (((), "kvmconf: the following arguments are required: command"),
                           (("frob",), "kvmconf: command frob: invalid choice (choose from run, list, kernel,"),
                           (("run", "--bogus"), "kvmconf: unrecognized arguments: --bogus"),
                           (("bisect",), "kvmconf: bisect: the following arguments are required: --series")):
        done = kvmconf(*argv, timeout=60)
        assert done.returncode == 2 and done.stderr.startswith(expected), (argv, done.stderr)
        assert len(done.stderr.splitlines()) == 1, done.stderr


def test_help_still_prints_the_usage():
    done = kvmconf("run", "--help", timeout=60)
    assert done.returncode == 0 and done.stdout.startswith("usage: kvmconf run ")
    assert "--kernel KERNEL" in done.stdout
    assert done.stderr == ""
