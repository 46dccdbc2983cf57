"""Kernel reports in the serial log: what makes a case FAIL on its own.

On a live host (the suite's payloads run on this machine's kernel or on an SSH
host) the kernel log also carries reports of unrelated activity: a GPU driver's
WARN or another process's Oops is not the feature's doing. So there the log is
cut into report blocks and a block fails a case only when it is attributed to
the feature (its code paths in the block, or the case's payload as the task).
"""
from __future__ import annotations

import re

# Lines the kernel prints when something is wrong inside it (panic, Oops, BUG,
# WARN, sanitizers, lockdep), as printed by kernel/panic.c, arch/x86/mm/fault.c,
# lib/bug.c, mm/kasan/report.c, kernel/locking/lockdep.c.
REPORT = re.compile(
    r"Kernel panic - not syncing|Oops:|BUG:|WARNING: CPU: \d+ PID: \d+|general protection fault|"
    r"KASAN:|UBSAN:|KFENCE:|possible (circular|recursive) locking|"
    r"inconsistent lock state|suspicious RCU usage|Call Trace:|RIP: ")
PANIC = re.compile(r"Kernel panic - not syncing")

# REPORT lines that belong inside the report around them: the trace and the
# registers, and the line KASAN adds under a general protection fault.
_INSIDE = re.compile(r"Call Trace:|RIP: |KASAN: .* in range \[")
# The die() banner ("Oops: 0000 [#1] SMP", "Oops: invalid opcode: 0000 [#1]")
# that arch/x86/mm/fault.c and BUG_ON print a few lines under their "BUG".
_BANNER = re.compile(r"\[#\d+\]")
# BUG_ON ("kernel BUG at mm/x.c:12!") starts a report too, though REPORT has no match for it.
_START = re.compile(REPORT.pattern + r"|kernel BUG at ")
_BUG = re.compile(r"BUG: |kernel BUG at ")
# A block ends after "---[ end trace" (WARN, Oops) or the "=====" rule that
# closes KASAN, KCSAN and UBSAN reports (which print no end trace).
_END = re.compile(r"---\[ end trace|(^|\] )={16,}\s*$")
# x86's oops_end prints the registers once more after the end trace ("in case
# the oops scrolled away"): they belong to the block that just ended.
_SUMMARY = re.compile(r"^(?:\[[^\]]*\]\s*)?(?:RIP|Code|RSP|RAX|RDX|RBP|R1[03]|FS|CS|CR[02]|DR[0-7]|PKRU): ")
_COMM = re.compile(r"CPU: \d+ (?:UID: \d+ )?PID: \d+ Comm: (.+?)(?: (?:Not tainted|Tainted:)|$)")
MAX_BLOCK = 80
TASK_COMM_LEN = 15  # the kernel keeps (and prints) this many chars of a process name


def _continues(block: list[str], line: str) -> bool:
    if _INSIDE.search(line):
        return True
    return (bool(_BANNER.search(line)) and len(block) < 10 and bool(_BUG.search(block[0]))
            and not any(_BANNER.search(l) for l in block))


def report_blocks(lines: list[str]) -> list[list[str]]:
    """`lines` cut into kernel report blocks (each from its first line to its
    end trace, the next report or MAX_BLOCK lines, plus the registers x86
    repeats after an end trace); lines outside any block are dropped."""
    blocks: list[list[str]] = []
    block: list[str] | None = None
    ended: list[str] | None = None
    for line in (l.rstrip() for l in lines):
        if ended is not None and _SUMMARY.search(line) and len(ended) < MAX_BLOCK:
            ended.append(line)
            continue
        ended = None
        if block is not None and _START.search(line) and not _continues(block, line):
            block = None
        if block is None:
            if not _START.search(line):
                continue
            block = []
            blocks.append(block)
        block.append(line)
        if _END.search(line):
            ended, block = block, None
        elif len(block) >= MAX_BLOCK:
            block = None
    return blocks


def attributed(block: list[str], patterns: list[str], comms: list[str]) -> bool:
    """Whether `block` is the feature's: a line other than "Modules linked in:"
    (every loaded module) matches a regex of `patterns`, or its "CPU: N PID: P
    Comm: NAME" line names a process of `comms` (first TASK_COMM_LEN chars)."""
    regexes = [re.compile(p) for p in patterns]
    wanted = {c[:TASK_COMM_LEN] for c in comms}
    for line in block:
        if "Modules linked in" in line:
            continue
        if any(r.search(line) for r in regexes):
            return True
        comm = _COMM.search(line)
        if comm and comm.group(1)[:TASK_COMM_LEN] in wanted:
            return True
    return False


def feature_reports(lines: list[str], patterns: list[str],
                    comms: list[str]) -> tuple[list[str], list[str]]:
    """The lines of `lines`' report blocks: (those attributed to the feature, the others)."""
    mine: list[str] = []
    others: list[str] = []
    for block in report_blocks(lines):
        (mine if attributed(block, patterns, comms) else others).extend(block)
    return mine, others


def reports(lines: list[str]) -> list[str]:
    """The lines of `lines` that belong to kernel reports (with a little context)."""
    hits = [i for i, line in enumerate(lines) if REPORT.search(line)]
    keep: list[int] = []
    for i in hits:
        for j in range(i, min(i + 3, len(lines))):
            if j not in keep:
                keep.append(j)
    return [lines[i].rstrip() for i in keep]
