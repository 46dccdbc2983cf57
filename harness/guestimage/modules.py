"""Kernel modules for the guest: find them, resolve `depends=`, order them.

The Debian package ships no modules.dep (depmod runs at install time), so the
dependencies come from each module's `.modinfo` section, read with pyelftools.
"""
from __future__ import annotations

import io
import lzma
from dataclasses import dataclass
from pathlib import Path

from elftools.elf.elffile import ELFFile

from harness.errors import HarnessError

def canonical(name: str) -> str:
    return name.replace("-", "_")


@dataclass(frozen=True)
class Module:
    name: str        # canonical name (underscores)
    path: Path
    depends: tuple[str, ...]


def _modinfo(path: Path) -> dict[str, str]:
    data = path.read_bytes()
    if path.suffix == ".xz":
        data = lzma.decompress(data)
    elf = ELFFile(io.BytesIO(data))
    section = elf.get_section_by_name(".modinfo")
    if section is None:
        raise HarnessError(f"{path}: no .modinfo section: not a kernel module")
    info: dict[str, str] = {}
    for entry in section.data().split(b"\0"):
        key, sep, value = entry.decode("utf-8", "replace").partition("=")
        if sep and key not in info:
            info[key] = value
    return info


class ModuleIndex:
    """All modules under lib/modules/<version>/kernel, by canonical name."""

    def __init__(self, modules_dir: Path | None, verify=None):
        """`verify(paths)`: checks module files against the cache's record before they are
        read (harness/kernel/debian.py: verify_files), or None."""
        self.verify = verify
        self.paths: dict[str, Path] = {}
        if modules_dir is not None:
            for path in (modules_dir / "kernel").rglob("*.ko*"):
                self.paths[canonical(path.name.split(".ko")[0])] = path
        self._cache: dict[str, Module] = {}

    def get(self, name: str) -> Module | None:
        name = canonical(name)
        if name not in self.paths:
            return None
        if name not in self._cache:
            if self.verify is not None:
                self.verify([self.paths[name]])
            depends = _modinfo(self.paths[name]).get("depends", "")
            self._cache[name] = Module(name, self.paths[name],
                                       tuple(canonical(d) for d in depends.split(",") if d))
        return self._cache[name]

    def load_order(self, name: str) -> list[Module]:
        """`name` with its dependencies, dependencies first; [] when not a module."""
        order: list[Module] = []
        visiting: set[str] = set()

        def visit(n: str) -> None:
            module = self.get(n)
            if module is None or module in order:
                return
            if n in visiting:
                raise HarnessError(f"module dependency cycle through {n}")
            visiting.add(n)
            for dep in module.depends:
                if self.get(dep) is None:
                    raise HarnessError(f"module {n} depends on {dep}, which is not in the package")
                visit(dep)
            order.append(module)

        visit(canonical(name))
        return order


def plan(index: ModuleIndex, groups: dict[str, tuple[str, ...]]) -> list[tuple[str, list[Module]]]:
    """For each group (machine profile: base groups plus each feature's row), the
    (group:alternative, modules in load order) of every alternative.

    Module specs separate alternatives by "|": the guest's init loads the one its
    CPU supports (kvm-amd needs the svm flag, kvm-intel vmx). An absent module
    means "built in or not there", which the probe then tells apart by the
    device node.
    """
    lines: list[tuple[str, list[Module]]] = []
    for group, specs in groups.items():
        for spec in specs:
            for alternative in spec.split("|"):
                lines.append((f"{group}:{alternative}", index.load_order(alternative)))
    return lines
