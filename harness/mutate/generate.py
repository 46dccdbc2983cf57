"""Generate one-spot mutants of the kernel functions a feature's model cites.

The targets are the functions named `name()` in harness/reference/<feature>.py
that the feature's kernel file defines; the operators are the classic ones:
relational and logical operator flips, arithmetic flips, constant changes,
negated conditions and removed statements. Each mutant is a -p1 patch.
"""
from __future__ import annotations

import difflib
import random
import re
from dataclasses import dataclass
from pathlib import Path

from harness.errors import UsageError

REFERENCE = Path(__file__).resolve().parents[1] / "reference"
TARGET_FILES = {"syndbg": "arch/x86/kvm/hyperv.c", "vfio": "drivers/vfio/vfio_iommu_type1.c"}
# Inside a switch, only the cases a feature covers are mutated: hyperv.c's MSR,
# CPUID and hypercall dispatchers also serve SynIC, stimers, TLB flushes...
CASE_SCOPE = {"syndbg": re.compile(r"SYNDBG|DEBUG|GUEST_OS_ID|HYPERCALL|FEATURES|INTERFACE|VENDOR|"
                                   r"HVCALL_POST|HVCALL_RETRIEVE|HVCALL_RESET|default")}

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


def cited_functions(feature: str) -> set[str]:
    model = REFERENCE / f"{feature}.py"
    if not model.is_file():
        raise UsageError(f"--features {feature}: no reference model {model}")
    return set(re.findall(r"\b([a-z_][a-z0-9_]*)\(\)", model.read_text()))


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
    path = TARGET_FILES.get(feature)
    if path is None:
        raise UsageError(f"--features {feature}: no kernel file to mutate (known: {', '.join(TARGET_FILES)})")
    lines = (source_root / path).read_text().splitlines()
    bodies = function_bodies(lines, cited_functions(feature))
    mutants = []
    scope = CASE_SCOPE.get(feature)
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
