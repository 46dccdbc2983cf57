"""The kernel under test: what it is, where its image and modules are."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


_UNREAD = object()   # KernelImage.config() not read yet


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
    _config: object = field(default=_UNREAD, init=False, repr=False, compare=False)

    def config(self) -> dict[str, str] | None:
        """CONFIG_X -> value of the kernel under test, when its .config is beside the image
        (Debian's boot/config-<version>, a build's `config`); None when unknown."""
        if self._config is not _UNREAD:
            return self._config
        self._config = self._read_config()
        return self._config

    def _read_config(self) -> dict[str, str] | None:
        folder = self.bzimage.parent
        for path in (folder / f"config-{self.version}", folder / "config", folder / ".config"):
            if path.is_file():
                options = {}
                for line in path.read_text(errors="replace").splitlines():
                    key, sep, value = line.partition("=")
                    if sep and key.startswith("CONFIG_"):
                        options[key] = value
                return options
        return None

    def record(self) -> dict:
        """The `kernel` object of run.json (design section 5)."""
        return {"kind": self.kind, "version": self.version, "sha256": self.sha256,
                "source": self.source, "config_sha256": self.config_sha256,
                "series": self.series}
