"""`python -m harness.mutate [kvmconf mutate options] [--patch FILE]...`: the same
command as `kvmconf mutate` (ci/mutants.sh calls it), with the same exit codes:
0 every mutant killed, 1 one is not killed, 2 the base kernel is red, a run broke
or the usage is bad; the reason is one line on stderr."""
from __future__ import annotations

import argparse
import sys

from harness.commands.common import err
from harness.commands.mutate import add_mutate_options, cmd_mutate
from harness.errors import HarnessError


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m harness.mutate",
                                description="mutation score of the suite over kernel mutants")
    add_mutate_options(p)
    args = p.parse_args(argv)
    try:
        return cmd_mutate(args)
    except HarnessError as e:
        err.print(f"kvmconf: {(str(e).splitlines() or [''])[0]}", markup=False)
        return 2
    except KeyboardInterrupt:
        err.print("kvmconf: interrupted", markup=False)
        return 2


if __name__ == "__main__":
    sys.exit(main())
