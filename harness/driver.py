"""The shared driver of op-script features (design section 3).

Every registered feature (harness/features.py) runs through this one driver:
named cases and seeded random op-scripts go to the feature's payload in the
guest, in batches; the feature's model predicts each trace for every profile;
the first divergence from the expected profile fails the case; the profiles
that explain a trace are kept as evidence for the run-level profile verdict.
A random divergence is shrunk with hypothesis's shrinker, its candidates
answered by one payload process fed one script at a time (a streamed batch),
and reported with a replay line.

The feature's own modules follow one protocol:
  model:    PROFILES, predict(script, profile) -> events, optional findings(script, observed)
  codec:    normalise(script), encode(scripts, first=0) -> bytes, decode(stdout, count, first=0),
            locate(script, index, event) -> (step, action text), elf_checks(elf, symbols),
            optional env(probe) -> dict (machine facts the model needs)
  strategy: scripts(**env) -> hypothesis strategy, KINDS, kind(action)
  cases:    CASES = [{"id", "rationale", "script"}]
"""
from __future__ import annotations

import contextlib
import json
import os
import shlex
import time
from collections import Counter

import pytest

from harness import missing
from harness.compare import Divergence, first_divergence
from harness.errors import HarnessError, KernelFailure
from harness.features import Feature, Requirement, kernel_version
from harness.missing import Lack
from harness.payloads import trace
from harness.reference import rules
from harness.remote import tail_text


class CapabilityMissing(KernelFailure):
    """A capability the kernel under test must have by its version and config is
    reported missing: the kernel's fault (FAIL), not a SKIP."""


def replay_env(feature: str) -> str:
    return f"KVMCONF_{feature.upper()}_REPLAY"


def _dotted(data: dict, path: str):
    for key in path.split("."):
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


_probes: dict[tuple[str, int], dict] = {}


class Suite:
    """One feature's op-scripts against one guest, checked for one expected profile."""

    def __init__(self, feature: Feature, guest, profile: str, kernel):
        self.feature, self.guest, self.profile, self.kernel = feature, guest, profile, kernel
        self.model, self.codec = feature.model_module, feature.codec_module
        if profile not in self.model.PROFILES:
            raise HarnessError(f"feature {feature.name}: no model profile {profile!r}")
        self._predicted: dict[str, tuple[dict, set[str]]] = {}   # script key -> predictions, rules

    # -- what the machine offers -------------------------------------------------
    def probe(self) -> dict:
        """The payload's `--probe` JSON, once per guest ({} for a feature without one)."""
        self._target_ready()
        if self.feature.probe_args is None:
            return {}
        key = (self.feature.name, id(self.guest))
        if key not in _probes:
            argv = [*self.guest.payload_argv(self.feature.name), *self.feature.probe_args]
            res = self.guest.run(argv, timeout=60)
            if res.rc != 0:
                raise HarnessError(f"{self.feature.name} probe exited {res.rc}: {tail_text(res.stderr)}")
            try:
                _probes[key] = trace.strict_json(res.stdout)
            except ValueError as e:
                raise HarnessError(f"{self.feature.name} probe printed invalid JSON: {e}") from None
        return _probes[key]

    def _target_ready(self) -> None:
        """SKIP every case of the feature when the target lacks what it needs there
        (a live host without /dev/kvm, no --vfio-device given: harness/targets/live.py)."""
        reason = self.guest.missing(self.feature.name)
        if reason:
            missing.skip(reason)

    def env(self) -> dict:
        env = getattr(self.codec, "env", None)
        return env(self.probe()) if env else {}

    def need(self, requirement: Requirement, value, seen: str | None = None) -> None:
        """SKIP when the capability is missing and this kernel may lack it; FAIL when it
        must have it (by the row: version, config); nothing when it is there."""
        if requirement.present(value):
            return
        seen = f"{seen or repr(value)} from {requirement.where} on {self.guest.where}"
        version = kernel_version(self.kernel.version)
        must = requirement.must_have(version, self.kernel.config())
        if must:
            raise CapabilityMissing(f"{requirement.name} reported missing ({seen}), but kernel "
                                    f"{self.kernel.version} must have it: {must}")
        config = self.kernel.config()
        why = (f"needs {requirement.device}" if requirement.device else
               f"kernel {self.kernel.version} may lack it"
               + ("" if not requirement.config else f" ({requirement.config} is not set in its config)"
                  if config is not None else f" ({requirement.config} may be off; its config is unknown)"))
        missing.skip(Lack(requirement.name, f"{requirement.name} missing: {seen}; {why}"))

    def require(self, script: dict) -> None:
        """`need` for every probed capability the script needs; on a live host, a script
        that changes kernel state needs the user's leave (--allow-module-changes)."""
        self._target_ready()
        change = self.feature.host_change(script) if self.feature.host_change else None
        if change and not self.guest.may_change_host():
            missing.skip(Lack("--allow-module-changes",
                              f"the op-script changes {change} on target {self.guest.where}; "
                              f"kvmconf changes no kernel state there without --allow-module-changes"))
        if self.feature.probe_args is None:
            return   # no probe payload: a case that reads a capability checks it itself
        probe = self.probe()
        for req in self.feature.requirements:
            if req.needed_by is None or req.needed_by(script):
                self.need(req, _dotted(probe, req.probe))

    def usable(self, script: dict) -> bool:
        """False when the script needs a capability this kernel may legitimately lack
        (random scripts are dropped, not the whole case); FAIL as in `need`."""
        try:
            self.require(script)
        except pytest.skip.Exception:
            return False
        return True

    def prepare(self, script: dict) -> dict:
        """The script as the payload and the model take it: machine facts added, defaults filled."""
        try:
            return self.codec.normalise({**script, **self.env()})
        except (ValueError, KeyError, TypeError) as e:
            raise HarnessError(f"{self.feature.name} op-script: {e}") from None

    # -- running -----------------------------------------------------------------
    def _timeout(self, scripts: list[dict]) -> float:
        actions = sum(len(s.get("actions", ())) for s in scripts)
        return self.feature.timeout_base_s + self.feature.timeout_per_action_s * actions

    def run(self, scripts: list[dict]) -> list[list[dict]]:
        """Observed traces of prepared scripts, `feature.batch` per payload invocation."""
        self._target_ready()
        traces: list[list[dict]] = []
        for first in range(0, len(scripts), self.feature.batch):
            batch = scripts[first:first + self.feature.batch]
            res = self.guest.run(self.guest.payload_argv(self.feature.name),
                                 stdin=self.codec.encode(batch), timeout=self._timeout(batch))
            if res.rc != 0:
                raise self.exit_error(res)
            traces += self.codec.decode(res.stdout, len(batch))
        return traces

    def exit_error(self, res) -> Exception:
        """A payload's non-zero exit: the target says whose fault it is (targets/host.py:
        ERROR for our own payloads; FAIL for a crash of a harness-side payload, which runs
        the kernel under test's code)."""
        decide = getattr(self.guest, "payload_exit_error", None)
        if decide is not None:
            return decide(self.feature.name, res)
        return HarnessError(f"{self.feature.name} payload exited {res.rc}: {tail_text(res.stderr)}")

    # -- checking ----------------------------------------------------------------
    def predictions(self, script: dict) -> dict[str, list[dict]]:
        """Every profile's prediction of `script`, made once per script (the rules the
        expected profile reaches are kept beside them: `rules_reached`)."""
        key = _key(script)
        if key not in self._predicted:
            out, reached = {}, set()
            for profile in self.model.PROFILES:
                with rules.reached() as seen:
                    out[profile] = self.model.predict(script, profile)
                if profile == self.profile:
                    reached = seen
            self._predicted[key] = (out, reached)
        return self._predicted[key][0]

    def explained_by(self, script: dict, observed: list[dict]) -> list[str]:
        """The profiles whose whole predicted trace equals the observed one."""
        return [p for p, predicted in self.predictions(script).items()
                if first_divergence(predicted, observed) is None]

    def divergence(self, script: dict, observed: list[dict], explained: list[str] | None = None,
                   context: str = "") -> Divergence | None:
        """The first divergence from the expected profile, or None. `matches_profile`
        names another profile whose whole trace equals the observed one (evidence only)."""
        predicted = self.predictions(script)[self.profile]

        def action_of(index: int, event: dict) -> str:
            return self.codec.locate(script, index, event)[1]

        found = first_divergence(predicted, observed, action_of)
        if found is None:
            return None
        index = found.step
        events = predicted if index < len(predicted) else observed
        step = self.codec.locate(script, index, events[index])[0] if index < len(events) else index
        explained = self.explained_by(script, observed) if explained is None else explained
        others = [p for p in explained if p != self.profile]
        detail = [context.strip()] if context.strip() else []
        detail += [f"profile {self.profile}; script: {json.dumps(script)}",
                   f"predicted[{index}]: {json.dumps(predicted[index]) if index < len(predicted) else '-'}",
                   f"observed[{index}]:  {json.dumps(observed[index]) if index < len(observed) else '-'}"]
        if others:
            detail.append(f"(the whole trace matches the {others[0]!r} profile)")
        return Divergence(step, found.action, found.field, found.expected, found.observed,
                          matches_profile=others[0] if others else None, detail="\n".join(detail))

    def rules_reached(self, script: dict) -> set[str]:
        """The model rules the expected profile's prediction of `script` reaches."""
        self.predictions(script)
        return self._predicted[_key(script)][1]

    def record_coverage(self, recorder, kind: str, reached: set[str]) -> None:
        recorder.add_coverage(self.feature.name, kind, reached, rules.declared(self.model),
                              rules.unreachable(self.model))

    def findings(self, script: dict, observed: list[dict]) -> list[dict]:
        hook = getattr(self.model, "findings", None)
        return hook(script, observed) if hook else []

    def check(self, script: dict, observed: list[dict], recorder, context: str = "") -> None:
        """Record the evidence of one trace (profiles, findings); raise its divergence."""
        explained = self.explained_by(script, observed)
        recorder.explained(explained)
        for finding in self.findings(script, observed):
            recorder.add_finding(feature=self.feature.name, **finding)
        found = self.divergence(script, observed, explained, context)
        if found:
            raise found

    # -- named cases -----------------------------------------------------------------
    def named(self, case: dict, recorder) -> None:
        script = self.prepare(case["script"])
        self.require(script)
        self.record_coverage(recorder, "named", self.rules_reached(script))
        observed = self.run([script])[0]
        self.check(script, observed, recorder, f"rationale: {case['rationale']}")

    def replay(self, raw: str, recorder) -> None:
        try:
            script = json.loads(raw)
        except ValueError as e:
            raise HarnessError(f"{replay_env(self.feature.name)}: not JSON: {e}") from None
        if not isinstance(script, dict):
            raise HarnessError(f"{replay_env(self.feature.name)}: not an op-script object")
        script = self.prepare(script)
        self.require(script)
        self.check(script, self.run([script])[0], recorder)

    # -- random op-scripts -----------------------------------------------------------
    def strategy(self):
        return self.feature.strategy_module.scripts(**self.env())

    def generate(self, seed: int, count: int) -> list[dict]:
        """`count` prepared op-scripts drawn by hypothesis, deterministic for a seed."""
        out: list[dict] = []

        @_hypothesis(seed, count, shrink=False)
        def collect(script):
            out.append(self.prepare(script))

        collect(self.strategy())
        return out

    def generate_covering(self, seed: int, count: int, rounds: int = 4) -> list[dict]:
        """`count` scripts for `seed`, topped up when a kind of action never came up: hypothesis's
        draws are correlated within a run (it mutates earlier examples), so a rare kind can miss
        a whole run. A top-up draws count/4 more from the derived seeds seed*7919+1..rounds and
        keeps the scripts that hold a missing kind; deterministic for a seed like the rest."""
        strategy = self.feature.strategy_module
        scripts = self.generate(seed, count)
        for extra in range(1, rounds + 1):
            seen = {strategy.kind(a) for s in scripts for a in s["actions"]}
            unseen = set(strategy.KINDS) - seen
            if not unseen:
                break
            scripts += [s for s in self.generate(seed * 7919 + extra, max(1, count // 4))
                        if unseen & {strategy.kind(a) for a in s["actions"]}]
        return scripts

    def random(self, seed: int, recorder, reproduce: str) -> None:
        count = int(os.environ.get(f"KVMCONF_{self.feature.name.upper()}_RANDOM",
                                   self.feature.random_scripts))
        self.require({})
        drawn = self.generate_covering(seed, count)
        scripts = [s for s in drawn if self.usable(s)]
        if len(scripts) < len(drawn):
            print(f"{self.feature.name} random: {len(drawn) - len(scripts)} of {len(drawn)} scripts "
                  f"need a capability this kernel lacks: not run")
        start = time.monotonic()
        traces = self.run(scripts)
        elapsed = time.monotonic() - start
        strategy = self.feature.strategy_module
        kinds = Counter({k: 0 for k in strategy.KINDS})
        kinds.update(strategy.kind(a) for s in scripts for a in s["actions"])
        explained_all = set(self.model.PROFILES)
        diverged = []
        self.record_coverage(recorder, "random", set().union(*map(self.rules_reached, scripts)))
        for i, (script, observed) in enumerate(zip(scripts, traces)):
            explained = self.explained_by(script, observed)
            explained_all &= set(explained)
            if self.profile not in explained:
                diverged.append(i)
            for finding in self.findings(script, observed):
                recorder.add_finding(feature=self.feature.name, **finding)
        recorder.explained([p for p in self.model.PROFILES if p in explained_all])
        recorder.add_random(self.feature.name, seed, len(scripts), sum(len(s["actions"]) for s in scripts),
                            dict(kinds), len(diverged))
        recorder.annotate(seed=seed)
        print(f"{self.feature.name} random: {len(scripts)} op-scripts in {elapsed:.1f} s "
              f"({len(scripts) / max(elapsed, 1e-9):.1f}/s), {len(diverged)} diverged")
        never = [k for k, n in kinds.items() if not n]
        if never and not diverged:
            raise HarnessError(f"{self.feature.name} random op-scripts never drew {never} (seed {seed}): "
                               f"the strategy misses action kinds")
        if not diverged:
            return
        original = scripts[diverged[0]]
        known = {_key(s): t for s, t in zip(scripts, traces)}
        shrunk, note = self.shrink(seed, count, known)
        script = shrunk if shrunk is not None else original
        line = (f"{replay_env(self.feature.name)}="
                f"{shlex.quote(json.dumps(script, separators=(',', ':')))} "
                f"{reproduce} --case {self.feature.name}/random/replay")
        recorder.annotate(reproduce=line)
        context = (f"{len(diverged)} of {len(scripts)} op-scripts diverged (seed {seed}); "
                   f"{note}; replay: {line}")
        found = self.divergence(script, known[_key(script)], context=context)
        if found is None:      # cannot happen: every script in `known` was judged
            raise HarnessError(f"{self.feature.name}: shrunk script no longer diverges")
        raise found

    def shrink(self, seed: int, count: int, known: dict[str, list[dict]]) -> tuple[dict | None, str]:
        """Replay the seed's search with the guest as oracle and let hypothesis shrink.

        Scripts already run are answered from `known`; the shrinker's candidates go
        to one streamed payload process within the feature's time budget. When the
        shrink itself breaks (SSH, the payload), the original divergence is kept."""
        deadline = time.monotonic() + self.feature.shrink_budget_s
        failing: list[dict] = []
        broke: list[str] = []
        session = _Session(self)

        @_hypothesis(seed, count, shrink=True)
        def search(raw):
            if broke:
                return
            script = self.prepare(raw)
            key = _key(script)
            if key not in known and not self.usable(script):
                return
            if key not in known:
                if time.monotonic() > deadline:
                    raise _BudgetSpent()
                try:
                    known[key] = session.ask(script)
                except HarnessError as e:
                    broke.append(str(e).splitlines()[0])
                    return
            if self.profile not in self.explained_by(script, known[key]):
                failing.append(script)
                raise _Failing()

        spent = False
        try:
            search(self.strategy())
        except _Failing:
            pass
        except _BudgetSpent:
            spent = True
        except Exception as e:   # hypothesis itself (Flaky, ...): keep the original
            broke.append(f"{type(e).__name__}: {e}")
        finally:
            session.close()
        if broke:
            return None, f"shrinking broke ({broke[0]}): the original script is reported"
        if not failing:
            return None, "the shrinker did not reproduce it: the original script is reported"
        # Each failing example the shrinker accepts is smaller than the last; at the end
        # hypothesis replays the minimal one.
        smallest = min(failing, key=lambda s: (len(s["actions"]), len(_key(s))))
        budget = f" (budget of {self.feature.shrink_budget_s:.0f} s spent)" if spent else ""
        return smallest, f"shrunk to {len(smallest['actions'])} actions in {session.asked} guest runs{budget}"


class _Failing(Exception):
    """Raised inside the hypothesis search for a diverging script."""


class _BudgetSpent(BaseException):
    """Ends the hypothesis search when the shrink budget is spent (a BaseException,
    so hypothesis does not take it for a failure to shrink)."""


class _Session:
    """One payload process answering scripts one at a time (shrink candidates)."""

    def __init__(self, suite: Suite):
        self.suite, self.stream, self.asked = suite, None, 0

    def ask(self, script: dict) -> list[dict]:
        suite = self.suite
        if self.stream is None:
            self.stream = suite.guest.stream(suite.guest.payload_argv(suite.feature.name))
        index = self.asked
        self.asked += 1
        self.stream.send(suite.codec.encode([script], first=index), timeout=30)
        out = self.stream.read_until(lambda got: trace.finished(got, index), suite._timeout([script]))
        return suite.codec.decode(out, 1, first=index)[0]

    def close(self) -> None:
        if self.stream is not None:
            self.stream.close()


def _hypothesis(seed: int, count: int, shrink: bool):
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hypothesis_seed

    phases = [Phase.generate, Phase.shrink] if shrink else [Phase.generate]

    def wrap(function):
        def run(strategy):
            test = hypothesis_seed(seed)(settings(
                max_examples=count, database=None, deadline=None, phases=phases,
                suppress_health_check=list(HealthCheck), print_blob=False)(given(strategy)(function)))
            with _no_local_constants():
                test()
        return run
    return wrap


@contextlib.contextmanager
def _no_local_constants():
    """Recent hypothesis mixes into its draws the constants it finds in every loaded
    module of the project, so one seed gave different scripts in `kvmconf run`, in
    the tests and after any edit; without them a seed replays everywhere."""
    try:
        from hypothesis.internal.conjecture import providers
        empty = providers.Constants()
        original = providers._get_local_constants
    except (ImportError, AttributeError, TypeError):   # an older hypothesis: nothing to do
        yield
        return
    providers._get_local_constants = lambda: empty
    try:
        yield
    finally:
        providers._get_local_constants = original


def _key(script: dict) -> str:
    return json.dumps(script, sort_keys=True)

