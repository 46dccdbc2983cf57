"""`kvmconf kernel build`, and the kernel under test of every command."""
from __future__ import annotations

import argparse
import dataclasses
import tempfile
from pathlib import Path

from harness.commands.common import err
from harness.errors import UsageError


def resolve_kernel(args):
    """The kernel under test: --kernel/--modules, or built from --source/--patch/--config,
    else Debian's packaged kernel."""
    from harness.kernel import bzimage, debian
    if args.modules and not args.kernel:
        raise UsageError("--modules needs --kernel")
    source = getattr(args, "source", None)
    if source or getattr(args, "patch", None) or getattr(args, "config", None) or getattr(args, "series", None):
        if args.kernel:
            raise UsageError("--kernel and --source/--patch/--config exclude each other")
        return build_kernel(args).kernel
    if args.kernel:
        return bzimage.from_path(Path(args.kernel), Path(args.modules) if args.modules else None)
    err.print("kernel: Debian's packaged kernel (fetching into the cache if needed)")
    return debian.fetch()


def build_kernel(args):
    """Build from --source/--patch/--config/--series (its first --series-prefix patches)."""

    from harness import series as serieslib
    from harness.kernel import build
    from harness.kernel import patches as patchlib
    fragments = build.default_fragments() + [Path(f) for f in args.config]
    patch_files = [Path(p) for p in args.patch]
    records = None
    if args.series:
        revision = serieslib.pick(Path(args.series), args.revision)
        limit = getattr(args, "series_prefix", None)
        if limit is not None and not 0 <= limit <= len(revision.patches):
            raise UsageError(f"--series-prefix {limit}: the series has {len(revision.patches)} patches")
        chosen = revision.patches[:limit]
        folder = Path(tempfile.mkdtemp(prefix="kvmconf-series-"))
        trimmed = dataclasses.replace(revision, patches=chosen)
        patch_files += serieslib.write_patches(trimmed, folder)
        records = [patchlib.load(p).record() for p in patch_files[:len(args.patch)]] + trimmed.records()
    try:
        result = build.build(Path(args.source) if args.source else None, patch_files,
                             fragments, series=records, jobs=getattr(args, "jobs", None),
                             progress=lambda text: err.print(f"[dim]{text}[/dim]"))
    except build.BuildFailed as e:
        print("\n".join(e.tail))
        raise
    err.print(f"kernel: {result.kernel.version} {'from the cache' if result.cached else 'built'} "
              f"in {result.seconds:.1f} s: {result.kernel.bzimage}")
    return result


def add_build_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--source", help=f"kernel tarball or tree (default {'/usr/src/linux-source-6.1.tar.xz'})")
    p.add_argument("--patch", action="append", default=[], help="-p1 patch, applied in order; repeatable")
    p.add_argument("--config", action="append", default=[],
                   help="config fragment merged after the project's own; repeatable")
    p.add_argument("--series", help="mbox or format-patch folder: its patches are applied after --patch")
    p.add_argument("--revision", type=int, help="revision of --series to apply (default: the newest)")
    p.add_argument("--series-prefix", type=int, help="apply only the first N patches of --series")


def cmd_kernel_build(args) -> int:
    result = build_kernel(args)
    print(result.kernel.bzimage)
    print(result.directory / "metadata.json")
    return 0
