"""Every model branch that decides an observable outcome carries a rule id
(harness/reference/rules.py), the named cases reach every reachable rule, and
300 random op-scripts reach at least 90% of them for seeds 1 to 5.

The branch check runs the model's own unit tests under coverage.py in branch
mode and, for every `if` the analysis lists as a branch line, asks that each arm
(the body, and an explicit else) calls hit() itself or through its own nested
branches: one coarse rule at the top of a function cannot hide the branches
below it. An `if` (or a whole `def`) that decides nothing observable says so
with a `# not a rule: <why>` comment on its line.
"""
from __future__ import annotations

import ast
import re
import subprocess
import sys

import pytest

from harness import features
from harness.driver import Suite
from harness.reference import rules
from tests.conftest import REPO
from tests.standin import Kernel, StandinGuest

MODEL_TESTS = {"syndbg": "tests/test_syndbg_model.py", "vfio": "tests/test_vfio_model.py"}
RULE_ID = re.compile(r"^[\w-]+\.[ch]:\w+:[a-z0-9][a-z0-9.+-]*$")
EXEMPT = "# not a rule:"
PROBE = {"vendor": "amd", "smt_control": "notsupported", "caps": {}}


def suite(name: str) -> Suite:
    row = features.get(name)
    return Suite(row, StandinGuest(None, PROBE), row.profiles[0], Kernel())


def _calls_hit(node: ast.AST) -> bool:
    return any(isinstance(n, ast.Call) and getattr(n.func, "id", getattr(n.func, "attr", None)) == "hit"
               for n in ast.walk(node))


def _arm_hits(stmts: list[ast.stmt]) -> bool:
    return any(_calls_hit(s) for s in stmts)


def unruled_branches(path, branch_lines: set[int]) -> list[str]:
    source = path.read_text()
    lines = source.splitlines()
    exempt_ranges = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and EXEMPT in lines[node.lineno - 1]:
            exempt_ranges.append((node.lineno, node.end_lineno))
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.If) or node.lineno not in branch_lines:
            continue
        if EXEMPT in lines[node.lineno - 1] or any(a <= node.lineno <= b for a, b in exempt_ranges):
            continue
        elif_chain = len(node.orelse) == 1 and isinstance(node.orelse[0], ast.If)
        if not _arm_hits(node.body):
            found.append(f"{path.name}:{node.lineno}: if-arm without a rule id: {lines[node.lineno - 1].strip()}")
        if node.orelse and not elif_chain and not _arm_hits(node.orelse):
            found.append(f"{path.name}:{node.lineno}: else-arm without a rule id: {lines[node.lineno - 1].strip()}")
    return found


@pytest.mark.parametrize("name", sorted(MODEL_TESTS))
def test_every_model_branch_carries_a_rule_id(name, tmp_path):
    model_file = features.get(name).model_file
    data = tmp_path / ".coverage"
    done = subprocess.run([sys.executable, "-m", "coverage", "run", "--branch", f"--data-file={data}",
                           f"--include={model_file}", "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           MODEL_TESTS[name]], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:]
    import coverage
    cov = coverage.Coverage(data_file=str(data))
    cov.load()
    branch_lines = set(cov._analyze(str(model_file)).branch_stats())
    assert branch_lines, f"coverage saw no branches in {model_file}"
    assert unruled_branches(model_file, branch_lines) == []


@pytest.mark.parametrize("name", sorted(MODEL_TESTS))
def test_rule_ids_name_a_kernel_function_and_branch(name):
    model = features.get(name).model_module
    declared = rules.declared(model)
    assert len(declared) >= 20, f"{name}: only {len(declared)} rules"
    assert [r for r in declared if not RULE_ID.match(r)] == []
    assert set(rules.unreachable(model)) <= declared
    assert all(reason.strip() for reason in rules.unreachable(model).values())


@pytest.mark.parametrize("name", sorted(MODEL_TESTS))
def test_named_cases_reach_every_reachable_rule(name):
    s = suite(name)
    reached = set()
    for case in features.get(name).named_cases:
        reached |= s.rules_reached(s.prepare(case["script"]))
    assert sorted(rules.reachable(s.model) - reached) == []


# seeds 3-5 in ci/nightly.sh: two seeds per model keep make test within its budget
@pytest.mark.parametrize("seed", [1, 2, *(pytest.param(s, marks=pytest.mark.nightly) for s in (3, 4, 5))])
@pytest.mark.parametrize("name", sorted(MODEL_TESTS))
def test_300_random_scripts_reach_90_percent_of_the_rules(name, seed):
    s = suite(name)
    wanted = rules.reachable(s.model)
    reached = set().union(*map(s.rules_reached, s.generate(seed, 300))) & wanted
    assert len(reached) >= 0.9 * len(wanted), sorted(wanted - reached)
