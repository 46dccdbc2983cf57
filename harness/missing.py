"""A missing capability: why a case cannot run where it is, naming what is missing.

A SKIP says which capability the target lacks (`Lack.capability`, a name such as
"SEV-ES" or "Intel PT") as well as the one-line reason a person reads. run.json keeps
the name in the SKIPped case's `capability`, so a platform's expectations
(harness/certify) can accept a SKIP by the capability it names, never by its wording.

The names are declared: the ones every feature may give are GENERAL below, a
feature's own are its registry row's `capabilities` (its requirements' and host
needs' names count too); kernel config options (CONFIG_...) are names as they are.
"""
from __future__ import annotations

import re
from typing import NoReturn

import pytest

GENERAL = {
    "kernel source": "the source tree of the kernel under test (harness/kernel/source.py)",
    "/dev/kvm": "KVM's device on the target",
    "--allow-module-changes": "the user's leave to load modules or change module parameters on a live host",
    "nested virtualization": "a machine profile with a nested KVM guest",
    "VFIO devices": "a machine profile with a device bound to vfio-pci",
}
CONFIG_OPTION = re.compile(r"CONFIG_[A-Z0-9_]+")


class Lack(str):
    """A SKIP reason (the text) that names the missing capability (`.capability`)."""
    capability: str

    def __new__(cls, capability: str, text: str) -> "Lack":
        self = super().__new__(cls, text)
        self.capability = capability
        return self

    def then(self, more: str) -> "Lack":
        """The same capability, its reason followed by `more` (where, what needs it)."""
        return Lack(self.capability, f"{self}{more}")


class Missing(pytest.skip.Exception):
    """pytest's skip, carrying the capability to the results plugin."""

    def __init__(self, lack: Lack) -> None:
        super().__init__(str(lack))
        self.capability = lack.capability


def skip(reason: Lack | str) -> NoReturn:
    """SKIP the case; a reason that is not a Lack names no capability."""
    if isinstance(reason, Lack):
        raise Missing(reason)
    pytest.skip(reason)


def known(names_of_feature: set[str], name: str) -> bool:
    """Whether `name` is a capability a case of that feature may SKIP for."""
    return name in GENERAL or name in names_of_feature or bool(CONFIG_OPTION.fullmatch(name))
