"""Fixtures of the conformance suite (see docs/feature-suites.md).

The suite runs under `kvmconf run`, whose plugin owns the run: the kernel, the
machine, the run record. These fixtures hand its parts to the cases.
"""
from __future__ import annotations

import pytest

from harness import features, missing
from harness.driver import Suite
from harness.kernel import source
from harness.missing import Lack
from harness.results.plugin import case_id


def _plugin(config):
    plugin = config.pluginmanager.get_plugin("kvmconf")
    if plugin is None:
        raise pytest.UsageError("testcases/ run under `kvmconf run`, not plain pytest")
    return plugin


@pytest.fixture(scope="session")
def kvmconf_ctx(pytestconfig):
    return _plugin(pytestconfig).ctx


@pytest.fixture
def guest(kvmconf_ctx):
    """The booted guest of the run (booted once, on first use)."""
    return kvmconf_ctx.guest()


@pytest.fixture
def kvmconf_seed(kvmconf_ctx) -> int:
    return kvmconf_ctx.options.seed


@pytest.fixture
def kvmconf_profile(kvmconf_ctx):
    """kvmconf_profile(feature) -> the model profile to expect (--profile FEATURE=NAME)."""
    def choose(feature: str) -> str:
        return kvmconf_ctx.options.profiles.get(feature) or features.get(feature).profiles[0]
    return choose


@pytest.fixture
def suite(kvmconf_profile, kvmconf_ctx):
    """suite(feature) -> the shared driver (harness.driver.Suite) for that feature, on the
    run's guest or live host, or on this machine for a feature whose payload is built
    from the kernel's source (SKIP when no source is known for the kernel under test)."""
    def make(feature: str) -> Suite:
        row = features.get(feature)
        try:
            host = kvmconf_ctx.payload_host(row)
        except source.NoSource as e:
            missing.skip(Lack("kernel source", str(e)))
        return Suite(row, host, kvmconf_profile(feature), kvmconf_ctx.kernel)
    return make


class CaseRecorder:
    """run.json additions from inside a case, bound to that case."""

    def __init__(self, record, cid: str):
        self._record, self.case_id = record, cid

    def add_random(self, feature, seed, scripts, actions, action_kinds, diverged):
        self._record.add_random(feature, seed, scripts, actions, action_kinds, diverged)

    def add_finding(self, id, feature, title, intended, observed, mechanism, case_id=None):
        self._record.add_finding(id, feature, title, intended, observed, mechanism,
                                 case_id or self.case_id)

    def add_differential(self, feature, name, compared, implementations, disagreements, counts=None):
        self._record.add_differential(feature, name, compared, implementations, disagreements, self.case_id,
                                      counts)

    def annotate(self, **fields):
        self._record.annotate(self.case_id, **fields)

    def add_coverage(self, feature, kind, reached, declared, unreachable):
        self._record.add_coverage(feature, kind, reached, declared, unreachable)

    def explained(self, profiles: list[str]):
        """The model profiles whose predictions equal everything this case observed."""
        self._record.annotate(self.case_id, explained_by=list(profiles))


@pytest.fixture
def run_record(kvmconf_ctx, request) -> CaseRecorder:
    return CaseRecorder(kvmconf_ctx.record, case_id(request.node))
