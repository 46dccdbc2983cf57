"""Machine profiles: which QEMU machine each feature needs (design section 2)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Profile:
    name: str
    nested: bool          # the guest runs KVM itself: -cpu with svm (TCG) or host (KVM)
    vfio: bool            # intel-iommu + edu devices, bound to vfio-pci in the guest
    edu_devices: int = 1

    @property
    def module_groups(self) -> list[str]:
        groups = ["net"]
        if self.nested:
            groups += ["kvm", "msr"]
        if self.vfio:
            groups.append("vfio")
        return groups

    def cpu(self, accel: str) -> str:
        if accel == "kvm":
            return "host"
        return "EPYC,+svm" if self.nested else "EPYC"

    def devices(self) -> list[str]:
        # intel-iommu must come before the PCI devices it translates for.
        devices = ["intel-iommu,caching-mode=on"] if self.vfio else []
        devices += ["edu"] * (self.edu_devices if self.vfio else 0)
        return devices

    def kernel_args(self) -> list[str]:
        return ["intel_iommu=on"] if self.vfio else []


PROFILES = {
    "nested": Profile("nested", nested=True, vfio=False),
    "vfio": Profile("vfio", nested=False, vfio=True),
    "all": Profile("all", nested=True, vfio=True),
}

# The machine each feature's cases run in. SEV-ES and PEBS-via-PT need
# hardware; without it their cases run the baseline/negative paths here.
FEATURE_NEEDS = {"smoke": {"nested", "vfio"}, "syndbg": {"nested"}, "vfio": {"vfio"},
                 "sev_es": {"nested"}, "pebs_pt": {"nested"}}
FEATURES = ("syndbg", "vfio", "sev_es", "pebs_pt")


def profile_for(features: set[str]) -> Profile:
    """One machine for the whole run: boot once when a single profile covers it all."""
    needs = set().union(*(FEATURE_NEEDS[f] for f in features)) if features else set()
    if needs == {"nested"}:
        return PROFILES["nested"]
    if needs == {"vfio"}:
        return PROFILES["vfio"]
    return PROFILES["all"]
