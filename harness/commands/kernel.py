"""`kvmconf kernel build`, and the kernel under test of every command."""
from __future__ import annotations

import argparse
import dataclasses
import tempfile
from pathlib import Path

from harness.commands import argtypes as t
from harness.commands.common import err
from harness.errors import UsageError


def resolve_kernel(args, source_only: bool = False):
    """The kernel under test: --kernel/--modules, or built from --source/--patch/--config,
    else Debian's packaged kernel. `source_only`: the run compiles only the kernel's own
    code into user-space programs, so --source/--patch give the patched source, unbuilt."""
    from harness.kernel import bzimage, debian
    if args.modules and not args.kernel:
        raise UsageError("--modules needs --kernel")
    source = getattr(args, "source", None)
    if source or getattr(args, "patch", None) or getattr(args, "config", None) or getattr(args, "series", None):
        if args.kernel:
            raise UsageError("--kernel and --source/--patch/--config exclude each other")
        return source_kernel(args) if source_only else build_kernel(args).kernel
    if args.kernel:
        return bzimage.from_path(Path(args.kernel), Path(args.modules) if args.modules else None)
    err.print("kernel: Debian's packaged kernel (fetching into the cache if needed)")
    return debian.fetch()


def _patches(args) -> tuple[list[Path], list[dict] | None]:
    """--patch files then the --series patches (its first --series-prefix), and the
    series records (None: the patches' own)."""
    from harness import series as serieslib
    from harness.kernel import patches as patchlib
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
    return patch_files, records


def source_kernel(args):
    """--source/--patch/--series as a patched source, not built (harness.kernel.source)."""
    from harness.kernel import build
    from harness.kernel import patches as patchlib
    from harness.kernel.source import SourceKernel
    patch_files, records = _patches(args)
    kernel = SourceKernel(Path(args.source) if args.source else build.DEFAULT_SOURCE, patch_files,
                          records or [patchlib.load(p).record() for p in patch_files])
    err.print(f"kernel: source {kernel.version} with {len(patch_files)} patch(es), not built "
              f"(the selected features compile the kernel's own code in user space)")
    return kernel


def build_kernel(args):
    """Build from --source/--patch/--config/--series (its first --series-prefix patches)."""
    from harness.kernel import build
    fragments = build.default_fragments() + [Path(f) for f in args.config]
    patch_files, records = _patches(args)
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
    p.add_argument("--source", type=t.kernel_source,
                   help=f"kernel tarball or tree (default {'/usr/src/linux-source-6.1.tar.xz'})")
    p.add_argument("--patch", action="append", default=[], type=t.patch_file,
                   help="-p1 patch, applied in order; repeatable")
    p.add_argument("--config", action="append", default=[], type=t.config_fragment,
                   help="config fragment merged after the project's own; repeatable")
    p.add_argument("--series", type=t.series_source,
                   help="mbox or format-patch folder: its patches are applied after --patch")
    p.add_argument("--revision", type=t.positive_int, help="revision of --series to apply (default: the newest)")
    p.add_argument("--series-prefix", type=t.non_negative_int, help="apply only the first N patches of --series")


def cmd_kernel_build(args) -> int:
    result = build_kernel(args)
    print(result.kernel.bzimage)
    print(result.directory / "metadata.json")
    return 0
