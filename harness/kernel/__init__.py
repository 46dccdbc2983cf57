"""The kernel under test: what it is, where its image and modules are."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class KernelImage:
    kind: str                      # debian | bzimage | built
    version: str                   # what `uname -r` prints in the guest
    bzimage: Path
    sha256: str
    modules_dir: Path | None = None  # .../lib/modules/<version>, or None (all built in)
    source: dict | None = None     # {"path", "sha256"} for built kernels
    config_sha256: str | None = None
    series: list[dict] = field(default_factory=list)

    def record(self) -> dict:
        """The `kernel` object of run.json (design section 5)."""
        return {"kind": self.kind, "version": self.version, "sha256": self.sha256,
                "source": self.source, "config_sha256": self.config_sha256,
                "series": self.series}
