"""Kernel reports in the serial log: what makes a case FAIL on its own."""
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


def reports(lines: list[str]) -> list[str]:
    """The lines of `lines` that belong to kernel reports (with a little context)."""
    hits = [i for i, line in enumerate(lines) if REPORT.search(line)]
    keep: list[int] = []
    for i in hits:
        for j in range(i, min(i + 3, len(lines))):
            if j not in keep:
                keep.append(j)
    return [lines[i].rstrip() for i in keep]
