"""Machine profiles: the QEMU machines the features run in (design section 2).

A machine offers capabilities ("nested": the guest runs KVM itself; "vfio":
intel-iommu and edu devices bound to vfio-pci; "testdev": QEMU's pc-testdev, ports
0xe0-0xe3 looping back and iomem at 0xff000000, on every machine, as kvm-unit-tests
uses it); each registry row says which
it needs (harness/features.py). A machine loads the modules of every feature
it can host, so one boot serves every feature it covers.
"""
from __future__ import annotations

from dataclasses import dataclass

from harness import features

BASE_MODULE_GROUPS = {"net": ("virtio_pci", "virtio_net"), "msr": ("msr",)}   # ssh; the probe
SMOKE_NEEDS = frozenset({"nested", "vfio"})   # smoke checks what every machine offers


@dataclass(frozen=True)
class Profile:
    name: str
    nested: bool          # the guest runs KVM itself: -cpu with svm (TCG) or host (KVM)
    vfio: bool            # intel-iommu + edu devices, bound to vfio-pci in the guest
    edu_devices: int = 1

    @property
    def capabilities(self) -> frozenset[str]:
        return (frozenset({"testdev"}) | frozenset({"nested"} if self.nested else set())
                | frozenset({"vfio"} if self.vfio else set()))

    @property
    def module_groups(self) -> dict[str, tuple[str, ...]]:
        """Group name -> module specs ("a|b": the alternative the guest's CPU takes)."""
        groups = dict(BASE_MODULE_GROUPS)
        for row in features.rows():
            if row.machine <= self.capabilities and row.modules:
                groups[row.name] = row.modules
        return groups

    def cpu(self, accel: str) -> str:
        if accel == "kvm":
            return "host"
        return "EPYC,+svm" if self.nested else "EPYC"

    def devices(self) -> list[str]:
        # intel-iommu must come before the PCI devices it translates for.
        devices = ["intel-iommu,caching-mode=on"] if self.vfio else []
        devices += ["edu"] * (self.edu_devices if self.vfio else 0)
        return devices + ["pc-testdev"]

    def kernel_args(self) -> list[str]:
        return ["intel_iommu=on"] if self.vfio else []


PROFILES = {
    "nested": Profile("nested", nested=True, vfio=False),
    "vfio": Profile("vfio", nested=False, vfio=True),
    "all": Profile("all", nested=True, vfio=True),
}


def needs(names: set[str]) -> frozenset[str]:
    """Machine capabilities the named suites need ("smoke" or registered features)."""
    found: set[str] = set()
    for name in names:
        found |= SMOKE_NEEDS if name == "smoke" else features.get(name).machine
    return frozenset(found)


def profile_for(names: set[str]) -> Profile:
    """One machine for the whole run: the smallest profile that covers every need."""
    wanted = needs(names)
    for profile in PROFILES.values():   # smallest first
        if wanted <= profile.capabilities:
            return profile
    return PROFILES["all"]
