"""Rule ids of the reference models, and which of them a prediction reached.

Every branch of a model that decides an observable outcome calls
`hit("<kernel file>:<function>:<branch>")`, e.g.
`hit("hyperv.c:kvm_hv_hypercall:fast-post-invalid-parameter")`, naming the kernel
function and branch it mirrors. `reached()` collects the ids hit while a
prediction runs; the rules of a model are the ids its source passes to `hit`
(found statically, so a rule no script reaches is still counted). A model lists
rules it states but that cannot be reached on this machine in `UNREACHABLE`
({id: reason}); those are reported apart, not as misses.
"""
from __future__ import annotations

import contextlib
import contextvars
import functools
import inspect
import re
from types import ModuleType

_current: contextvars.ContextVar[set | None] = contextvars.ContextVar("kvmconf_rules", default=None)
_HIT = re.compile(r"""\bhit\(\s*f?["']([^"']+)["']""")


def hit(rule: str) -> None:
    """Mark `rule` reached by the prediction in progress (no-op outside `reached()`)."""
    seen = _current.get()
    if seen is not None:
        seen.add(rule)


@contextlib.contextmanager
def reached():
    """`with reached() as seen: model.predict(...)`: the rule ids hit, in `seen`."""
    seen: set[str] = set()
    token = _current.set(seen)
    try:
        yield seen
    finally:
        _current.reset(token)


@functools.lru_cache(maxsize=None)
def declared(model: ModuleType) -> frozenset[str]:
    """Every rule id the model's source passes to hit(), unreachable ones included
    (read once per model: the driver asks for every case)."""
    return frozenset(_HIT.findall(inspect.getsource(model)))


def unreachable(model: ModuleType) -> dict[str, str]:
    return dict(getattr(model, "UNREACHABLE", {}))


def reachable(model: ModuleType) -> set[str]:
    return declared(model) - set(unreachable(model))
