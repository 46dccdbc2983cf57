"""Generate one-spot mutants of the kernel functions a feature's model cites.

The scope comes from the feature's registry row (harness/features.py): the
functions its model names as `name()` that its `kernel_files` define, and, inside
a switch, only the cases its `mutate_case_scope` regex matches. The operators are
the classic ones: relational and logical operator flips, arithmetic flips,
constant changes, negated conditions and removed statements. Each mutant is a
-p1 patch.
"""
from __future__ import annotations

import difflib
import random
import re
from dataclasses import dataclass
from pathlib import Path

from harness import features as registry
from harness.errors import UsageError

_FLIPS = [("==", "!="), ("!=", "=="), ("<=", "<"), (">=", ">"), ("&&", "||"), ("||", "&&")]
_STRICT = [("<->.<=", re.compile(r"(?<![<>\-=])<(?![<=])"), "<="),
           (">->>=", re.compile(r"(?<![<>\-=])>(?![>=])"), ">=")]
_ARITH = [(re.compile(r" \+ "), " - "), (re.compile(r" - "), " + ")]
_NUMBER = re.compile(r"(?<![\w.])(\d+)(?![\w.])")
_IF = re.compile(r"^(\s*(?:\} else )?if \()(.*)(\)\s*\{?\s*)$")
_STATEMENT = re.compile(r"^\s*(?!return\b|break\b|continue\b|goto\b|case\b|default\b|else\b|if\b|for\b|while\b|"
                        r"switch\b|do\b|struct\b|union\b|enum\b|unsigned\b|int\b|u\d+\b|s\d+\b|bool\b|long\b|"
                        r"char\b|const\b|static\b|void\b|size_t\b)[\w>\-.\[\]*()]+.*;\s*$")


@dataclass
class Mutant:
    feature: str
    path: str          # kernel file, relative to the source root
    function: str
    line: int          # 1-based
    operator: str
    original: str
    mutated: str

    @property
    def id(self) -> str:
        return f"{self.feature}-{Path(self.path).stem}-{self.line}-{self.operator}"

    def patch(self, lines: list[str]) -> str:
        after = list(lines)
        after[self.line - 1] = self.mutated
        diff = difflib.unified_diff([l + "\n" for l in lines], [l + "\n" for l in after],
                                    f"a/{self.path}", f"b/{self.path}", n=3)
        return f"Subject: mutant {self.id}: {self.operator} in {self.function}()\n\n" + "".join(diff)


def mutable_features() -> list[str]:
    """The registered features whose row names kernel files to mutate."""
    return [row.name for row in registry.rows() if row.kernel_files]


def check_mutable(names: list[str]) -> list[str]:
    """The registry rows of `names`; a one-line UsageError names those without kernel files."""
    rows = [registry.get(name) for name in names]
    missing = [row.name for row in rows if not row.kernel_files]
    if missing:
        raise UsageError(f"--features {','.join(names)}: {', '.join(missing)} "
                         f"{'has' if len(missing) == 1 else 'have'} no kernel_files in the feature "
                         f"registry and cannot be mutated (mutable: {', '.join(mutable_features()) or 'none'})")
    return names


def function_bodies(lines: list[str], names: set[str]) -> dict[str, tuple[int, int]]:
    """name -> (first, last) 0-based line range of each defined function's body."""
    found = {}
    i = 0
    while i < len(lines):
        m = re.match(r"^(?:static |inline |noinline |__always_inline )*[\w \*]+?\b(\w+)\(", lines[i])
        if m and m.group(1) in names and not lines[i].rstrip().endswith(";"):
            j = i
            while j < len(lines) and not lines[j].startswith("{"):
                if lines[j].rstrip().endswith(";"):
                    break
                j += 1
            if j < len(lines) and lines[j].startswith("{"):
                k = j + 1
                while k < len(lines) and not lines[k].startswith("}"):
                    k += 1
                found[m.group(1)] = (j + 1, k - 1)
                i = k
        i += 1
    return found


def _code(line: str) -> bool:
    text = line.strip()
    return bool(text) and '"' not in line and not text.startswith(("/*", "*", "//", "#"))


def mutants_of_line(feature: str, path: str, function: str, number: int, line: str,
                    statement_start: bool = True) -> list[Mutant]:
    found: list[Mutant] = []

    def add(operator: str, mutated: str) -> None:
        if mutated != line:
            found.append(Mutant(feature, path, function, number, operator, line, mutated))

    code = line.split("/*")[0]
    for old, new in _FLIPS:
        if old in code:
            add(f"{old}->{new}", line.replace(old, new, 1))
    for operator, regex, new in _STRICT:
        if regex.search(code):
            add(operator.replace(".", ""), regex.sub(new, line, count=1))
    for regex, new in _ARITH:
        if regex.search(code):
            add(f"{regex.pattern.strip()[-1]}->{new.strip()}", regex.sub(new, line, count=1))
    number_match = _NUMBER.search(code)
    if number_match:
        value = int(number_match.group(1))
        replacement = "1" if value == 0 else str(value + 1)
        add(f"const{value}->{replacement}", line[:number_match.start()] + replacement + line[number_match.end():])
    if_match = _IF.match(line)
    if if_match:
        add("negate-if", f"{if_match.group(1)}!({if_match.group(2)}){if_match.group(3)}")
    if _STATEMENT.match(line) and statement_start:
        add("remove-statement", re.match(r"^\s*", line).group(0) + ";")
    return found


def generate(feature: str, source_root: Path) -> list[Mutant]:
    """Every mutant of the feature's registry scope in the source tree at `source_root`."""
    check_mutable([feature])
    row = registry.get(feature)
    cited = row.cited_functions()
    try:
        scope = re.compile(row.mutate_case_scope) if row.mutate_case_scope else None
    except re.error as e:
        raise UsageError(f"feature {feature}: mutate_case_scope {row.mutate_case_scope!r} is not a "
                         f"regex ({e})") from None
    mutants: list[Mutant] = []
    for path in row.kernel_files:
        file = source_root / path
        try:
            lines = file.read_text(errors="replace").splitlines()
        except OSError as e:
            raise UsageError(f"feature {feature}: kernel file {file} not readable ({e.strerror})") from None
        mutants += _generate_file(feature, path, lines, cited, scope)
    return mutants


def _generate_file(feature: str, path: str, lines: list[str], cited: set[str],
                   scope: re.Pattern | None) -> list[Mutant]:
    bodies = function_bodies(lines, cited)
    mutants = []
    for function, (first, last) in sorted(bodies.items(), key=lambda kv: kv[1]):
        switches: list[list] = []   # [indent, current case in scope, case block open]
        previous = "{"
        in_trace = False            # inside a tracepoint or debug print: unobservable
        for index in range(first, last + 1):
            line = lines[index]
            indent = len(line) - len(line.lstrip("\t"))
            text = line.strip()
            if switches and text.startswith("}") and indent == switches[-1][0]:
                if switches[-1][2]:
                    switches[-1][2] = False      # end of a `case X: {` block
                else:
                    switches.pop()
            elif switches and indent == switches[-1][0] and text.startswith(("case ", "default")):
                labels_in_scope = bool(scope is None or scope.search(text))
                # Fall-through labels share a body: any covered label keeps it in scope.
                switches[-1][1] = labels_in_scope or (previous.endswith(":") and switches[-1][1])
                switches[-1][2] = text.endswith("{")
            if re.match(r"(trace_\w+|vcpu_debug|vcpu_unimpl|pr_\w+|printk|WARN\w*)\(", text):
                in_trace = True
            in_scope = all(flag for _, flag, _ in switches) and not in_trace
            if in_scope and _code(line) and not text.startswith(("case ", "default")):
                mutants += mutants_of_line(feature, path, function, index + 1, line,
                                           statement_start=previous.endswith((";", "{", "}", ":")))
            if in_trace and text.endswith(";"):
                in_trace = False
            if text.startswith("switch ("):
                switches.append([indent, True, False])
            if _code(line):
                previous = text.split("/*")[0].rstrip()
    return mutants


def sample(mutants: list[Mutant], limit: int | None, seed: int) -> list[Mutant]:
    if limit is None or limit >= len(mutants):
        return mutants
    return sorted(random.Random(seed).sample(mutants, limit), key=lambda m: (m.path, m.line))
