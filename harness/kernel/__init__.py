"""The kernel under test: what it is, where its image and modules are."""
from __future__ import annotations

import functools
import hashlib
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
    patch_files: list[Path] = field(default_factory=list)   # a built kernel's patches, in order
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
                return parse_config(path.read_text(errors="replace"))
        return None

    def record(self) -> dict:
        """The `kernel` object of run.json (design section 5)."""
        return {"kind": self.kind, "version": self.version, "sha256": self.sha256,
                "source": self.source, "config_sha256": self.config_sha256,
                "series": self.series}


def parse_config(text: str) -> dict[str, str]:
    """CONFIG_X -> value of a kernel .config."""
    options = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.startswith("CONFIG_"):
            options[key] = value
    return options


@dataclass
class RunningKernel:
    """The kernel a live target (--target local or ssh) runs: the kernel under test
    there. Its config comes from /proc/config.gz or /boot when readable."""
    version: str                   # uname -r
    proc_version: str              # /proc/version
    config_text: str | None = None
    config_source: str | None = None   # where the config was read
    kind: str = "running"

    def config(self) -> dict[str, str] | None:
        return self._options

    @functools.cached_property
    def _options(self) -> dict[str, str] | None:
        return parse_config(self.config_text) if self.config_text is not None else None

    def record(self) -> dict:
        return {"kind": self.kind, "version": self.version, "proc_version": self.proc_version,
                "sha256": None, "source": None,
                "config_sha256": hashlib.sha256(self.config_text.encode()).hexdigest()
                if self.config_text is not None else None,
                "config_source": self.config_source, "series": []}
