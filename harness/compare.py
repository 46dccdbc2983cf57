"""Observed vs predicted traces: find the first divergence.

A trace is a list of events (dicts of JSON scalars, lists and dicts). The
payload emits one event per observation; the reference model predicts the same
list. `first_divergence` walks both in order and names the first differing
field with a dotted path (e.g. ``exit.msr``), so a maintainer sees at once
which step, which action and which field disagree.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable

_MISSING = "<absent>"


class Divergence(AssertionError):
    """Raised by a feature case when the kernel disagrees with the model.

    The pytest plugin of `kvmconf run` records its fields in run.json
    (design section 5, `cases[].divergence`).
    """

    def __init__(self, step: int, action: str, field: str, expected: Any, observed: Any,
                 matches_profile: str | None = None, detail: str = ""):
        self.step, self.action, self.field = step, action, field
        self.expected, self.observed = expected, observed
        self.matches_profile = matches_profile
        self.detail = detail
        super().__init__(self.summary())

    def summary(self) -> str:
        text = (f"step {self.step} ({self.action}): {self.field} expected "
                f"{_show(self.expected)}, observed {_show(self.observed)}")
        if self.matches_profile:
            text += f"; this trace matches profile {self.matches_profile}"
        if self.detail:
            text += f"\n{self.detail}"
        return text

    def as_record(self) -> dict:
        return {"step": self.step, "action": self.action, "field": self.field,
                "expected": _show(self.expected), "observed": _show(self.observed),
                "matches_profile": self.matches_profile}


def _show(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value).lower() if value is not None else "null"
    if isinstance(value, int):
        return hex(value) if abs(value) > 9 else str(value)
    return str(value)


def _diff(expected: Any, observed: Any, path: str) -> tuple[str, Any, Any] | None:
    """The first (path, expected, observed) where two JSON values differ."""
    if isinstance(expected, dict) and isinstance(observed, dict):
        for key in list(expected) + [k for k in observed if k not in expected]:
            sub = f"{path}.{key}" if path else key
            if key not in observed:
                return sub, expected[key], _MISSING
            if key not in expected:
                return sub, _MISSING, observed[key]
            found = _diff(expected[key], observed[key], sub)
            if found:
                return found
        return None
    if isinstance(expected, list) and isinstance(observed, list):
        for i, (e, o) in enumerate(zip(expected, observed)):
            found = _diff(e, o, f"{path}[{i}]")
            if found:
                return found
        if len(expected) != len(observed):
            return f"{path}.length", len(expected), len(observed)
        return None
    # True == 1 in Python; in a trace a flag and a number are different things.
    if expected != observed or isinstance(expected, bool) != isinstance(observed, bool):
        return path, expected, observed
    return None


def first_divergence(expected: list[dict], observed: list[dict],
                     action_of: Callable[[int, dict], str] | None = None) -> Divergence | None:
    """Compare two traces event by event; None when they agree.

    `action_of(step, event)` renders the op-script action behind an event for
    the message (defaults to the event's `op` field).
    """
    def describe(step: int, event: dict) -> str:
        if action_of:
            return action_of(step, event)
        return str(event.get("op", "?"))

    for step, (e, o) in enumerate(zip(expected, observed)):
        found = _diff(e, o, "")
        if found:
            path, exp, obs = found
            return Divergence(step, describe(step, e), path, exp, obs)
    if len(expected) != len(observed):
        step = min(len(expected), len(observed))
        if len(expected) > len(observed):
            return Divergence(step, describe(step, expected[step]), "event", expected[step], _MISSING)
        return Divergence(step, describe(step, observed[step]), "event", _MISSING, observed[step])
    return None


def matching_profile(observed: list[dict], predictions: Iterable[tuple[str, list[dict]]]) -> str | None:
    """Name of the first profile whose prediction equals the observed trace."""
    for name, predicted in predictions:
        if first_divergence(predicted, observed) is None:
            return name
    return None
