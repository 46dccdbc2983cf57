"""What the commands share: the consoles, the repository paths, argument checks."""
from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
import sys
from pathlib import Path

from rich.console import Console

from harness import features
from harness.cache import sha256_file
from harness.errors import UsageError

REPO = Path(__file__).resolve().parents[2]
# KVMCONF_TESTCASES points the run at another suite folder: the project's own
# tests use it for fault-injection cases that do not belong in the real suite.
TESTCASES = Path(os.environ.get("KVMCONF_TESTCASES") or REPO / "testcases")
# A duplicate of fd 2, so progress lines reach the terminal even while pytest
# captures the cases' output.
err = Console(file=os.fdopen(os.dup(2), "w", buffering=1), highlight=False, soft_wrap=True)
# Piped output (CI logs, tests) gets wide tables instead of rich's 80 columns.
out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 200)


def suites() -> tuple[str, ...]:
    return ("smoke",) + features.names()


def parse_features(text: str) -> list[str]:
    return features.parse(text)


def parse_profiles(items: list[str]) -> dict[str, str]:
    profiles = {}
    for item in items:
        feature, sep, name = item.partition("=")
        if not sep or feature not in features.names() or not name:
            raise UsageError(f"--profile {item}: expected FEATURE=NAME with FEATURE one of "
                             f"{', '.join(features.names())}")
        known = features.get(feature).profiles
        if name not in known:
            raise UsageError(f"--profile {item}: unknown profile {name!r} for {feature} "
                             f"(known: {', '.join(known)})")
        profiles[feature] = name
    return profiles


def output_dir(path: Path) -> Path:
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise UsageError(f"--output {path}: not writable ({e.strerror})") from None
    return path


def harness_digest() -> str:
    """sha256 over every file of the harness, the run's cases and the payloads' sources
    (path and content, sorted): run.json's harness.sha256, which a certification
    bundle pins."""
    digest = hashlib.sha256()
    for part in (REPO / "harness", TESTCASES, REPO / "guests"):
        for path in sorted(part.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                digest.update(f"{part.name}/{path.relative_to(part)}\0{sha256_file(path)}\n".encode())
    return digest.hexdigest()


def git_describe() -> str:
    with contextlib.suppress(Exception):
        return subprocess.run(["git", "-C", str(REPO), "describe", "--always", "--dirty"],
                              capture_output=True, text=True, timeout=10).stdout.strip() or "unknown"
    return "unknown"
