"""Kernels from source: cache hit, incremental rebuild, bad patches and configs, a boot.

These build Debian's linux-source-6.1 for real (the first build takes minutes
on two cores and is cached outside the clone; the rest reuse its object tree).
"""
from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from harness.errors import UsageError
from harness.kernel import build
from harness.results.schema import problems
from tests.conftest import kvmconf, load_run, statuses

pytestmark = pytest.mark.e2e

HYPERV_C = "arch/x86/kvm/hyperv.c"


def _one_line_patch(tmp_path: Path, name: str, old: str, new: str, path: str = HYPERV_C) -> Path:
    """A -p1 patch that replaces line `old` of `path` in the pristine 6.1 source by `new`."""
    pristine, _ = build.pristine_tree(build.DEFAULT_SOURCE)
    lines = (pristine / path).read_text().splitlines()
    index = next(i for i, line in enumerate(lines) if line == old)
    before, after = lines[index - 3:index], lines[index + 1:index + 4]
    hunk = [f"@@ -{index - 2},7 +{index - 2},7 @@"] + [f" {l}" for l in before] + [f"-{old}", f"+{new}"] \
        + [f" {l}" for l in after]
    patch = tmp_path / name
    patch.write_text("\n".join([f"--- a/{path}", f"+++ b/{path}", *hunk]) + "\n")
    return patch


@pytest.fixture(scope="module")
def base_build():
    """linux-source-6.1 with the project's fragments and no patch (cold the first time)."""
    return build.build(progress=lambda text: None)


def test_cache_hit_does_not_rebuild(base_build):
    again = build.build(progress=lambda text: None)
    assert again.cached is True and again.directory == base_build.directory
    assert again.kernel.sha256 == base_build.kernel.sha256
    meta = json.loads((base_build.directory / "metadata.json").read_text())
    assert meta["source"]["path"] == str(build.DEFAULT_SOURCE) and len(meta["source"]["sha256"]) == 64
    assert meta["patches"] == [] and len(meta["config_sha256"]) == 64 and meta["compiler"].startswith("gcc")
    config = (base_build.directory / "config").read_text()
    for option in ("CONFIG_KVM_AMD=y", "CONFIG_VFIO_IOMMU_TYPE1=y", "CONFIG_INTEL_IOMMU=y", "CONFIG_PVH=y"):
        assert option in config.splitlines()


def test_incremental_rebuild_after_a_one_line_patch(base_build, tmp_path):
    nonce = os.urandom(4).hex()  # a patch no earlier run built, so this one is not a cache hit
    patch = _one_line_patch(tmp_path, "hyperv-comment.patch",
                            "static void stimer_mark_pending(struct kvm_vcpu_hv_stimer *stimer,",
                            f"static void stimer_mark_pending(struct kvm_vcpu_hv_stimer *stimer, /* {nonce} */")
    result = build.build(patch_files=[patch], progress=lambda text: None)
    assert result.cached is False and result.kernel.sha256 != base_build.kernel.sha256
    log = (Path(result.kernel.bzimage).parent / "metadata.json")
    meta = json.loads(log.read_text())
    assert meta["patches"][0]["files"] == [HYPERV_C] and meta["series"][0]["subject"] == patch.name
    # Incremental: the object tree was reused, so only the patched file was compiled.
    obj_log = (Path(meta["object_tree"]) / "build.log").read_text()
    compiled = re.findall(r"^\s+CC\s+(\S+)", obj_log, re.M)
    assert "arch/x86/kvm/hyperv.o" in compiled and len(compiled) < 30, compiled
    # The source tree itself is never modified.
    pristine, _ = build.pristine_tree(build.DEFAULT_SOURCE)
    assert nonce not in (pristine / HYPERV_C).read_text()


def test_patch_that_does_not_apply_names_file_and_hunk(tmp_path):
    patch = _one_line_patch(tmp_path, "stale.patch", "#include \"x86.h\"", "#include \"x86.h\" /* x */")
    text = patch.read_text().replace(' #include "lapic.h"', ' #include "no-such-context.h"')
    patch.write_text(text)
    with pytest.raises(UsageError, match=r"--patch stale.patch does not apply: arch/x86/kvm/hyperv.c, "
                                         r"hunk at line \d+"):
        build.build(patch_files=[patch], progress=lambda text: None)
    done = kvmconf("kernel", "build", "--patch", str(patch))
    assert done.returncode == 2 and "does not apply: arch/x86/kvm/hyperv.c, hunk at line" in done.stderr


def test_dropped_config_option_is_named(tmp_path):
    fragment = tmp_path / "sev.config"
    # SEV needs the PSP driver, which the fragments do not enable: olddefconfig drops it.
    fragment.write_text("CONFIG_KVM_AMD_SEV=y\n")
    done = kvmconf("kernel", "build", "--config", str(fragment))
    assert done.returncode == 2
    assert "kvmconf: --config sev.config: CONFIG_KVM_AMD_SEV=y was dropped by olddefconfig" in done.stderr


def test_patch_to_a_file_the_config_does_not_build_is_an_error(base_build, tmp_path):
    patch = _one_line_patch(tmp_path, "xen.patch", "#include \"x86.h\"", "#include \"x86.h\" /* kvmconf */",
                            path="arch/x86/kvm/xen.c")
    done = kvmconf("kernel", "build", "--patch", str(patch))
    assert done.returncode == 2
    assert "--patch xen.patch touches arch/x86/kvm/xen.c, which the merged config does not build" in done.stderr


def test_not_a_kernel_source_is_an_error(tmp_path):
    (tmp_path / "tree").mkdir()
    (tmp_path / "tree" / "Makefile").write_text("all:\n")
    done = kvmconf("kernel", "build", "--source", str(tmp_path / "tree"))
    assert done.returncode == 2
    assert f"--source {tmp_path / 'tree'}: not a Linux kernel source" in done.stderr


def test_built_kernel_boots_and_passes_smoke(base_build, tmp_path):
    out = tmp_path / "run"
    done = kvmconf("run", "--source", str(build.DEFAULT_SOURCE), "--suite", "smoke",
                   "--output", str(out), "--history", str(tmp_path / "h"))
    assert done.returncode == 0, done.stderr[-2000:]
    record = load_run(out)
    assert problems(record) == [] and set(statuses(record).values()) == {"PASS"}
    assert record["kernel"]["kind"] == "built" and record["kernel"]["source"]["path"] == str(build.DEFAULT_SOURCE)
    assert record["kernel"]["config_sha256"] == json.loads(
        (base_build.directory / "metadata.json").read_text())["config_sha256"]
    assert record["platform"]["capabilities"]["guest"]["uname_r"] == base_build.kernel.version


def test_build_failure_prints_the_log_tail_and_path(base_build, tmp_path):
    patch = _one_line_patch(tmp_path, "broken.patch",
                            "static void stimer_mark_pending(struct kvm_vcpu_hv_stimer *stimer,",
                            "static void stimer_mark_pending(struct kvm_vcpu_hv_stimer *stimer, not C,")
    done = kvmconf("kernel", "build", "--patch", str(patch))
    assert done.returncode == 2
    (line,) = [l for l in done.stderr.splitlines() if l.startswith("kvmconf:")]
    assert line.startswith("kvmconf: kernel build failed: ") and "(log: " in line
    log = Path(re.search(r"\(log: (\S+)\)", line).group(1))
    assert log.is_file() and "hyperv.c" in done.stdout and "error" in done.stdout  # the tail
    # The next build of the same tree without the patch still works (and hits the cache).
    assert build.build(progress=lambda text: None).kernel.sha256 == base_build.kernel.sha256


def test_tarball_that_is_not_a_kernel_source(tmp_path):
    import tarfile
    (tmp_path / "proj").mkdir()
    (tmp_path / "proj" / "README").write_text("not a kernel\n")
    with tarfile.open(tmp_path / "proj.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "proj", arcname="proj")
    done = kvmconf("kernel", "build", "--source", str(tmp_path / "proj.tar.gz"))
    assert done.returncode == 2
    assert f"--source {tmp_path / 'proj.tar.gz'}: not a Linux kernel source" in done.stderr


@pytest.mark.nightly   # 46 s; test_incremental_rebuild_after_a_one_line_patch covers the same object tree
def test_a_source_tree_that_differs_in_one_file_builds_incrementally(base_build, tmp_path):
    """A maintainer's tree (or a mutated copy of the source) reuses the work and object
    trees: only the files that differ are synced and rebuilt."""
    pristine, _ = build.pristine_tree(build.DEFAULT_SOURCE)
    tree = tmp_path / "linux"
    subprocess.run(["cp", "-al", str(pristine), str(tree)], check=True, timeout=300)  # hard links
    nonce = os.urandom(4).hex()
    target = tree / HYPERV_C
    text = target.read_text().replace("static void stimer_mark_pending(struct kvm_vcpu_hv_stimer *stimer,",
                                      f"static void stimer_mark_pending(struct kvm_vcpu_hv_stimer *stimer, /* {nonce} */")
    target.unlink()  # break the hard link before writing
    target.write_text(text)
    result = build.build(tree, progress=lambda text: None)
    meta = json.loads((result.directory / "metadata.json").read_text())
    assert result.cached is False and meta["source"]["path"] == str(tree) and meta["patches"] == []
    compiled = re.findall(r"^\s+CC\s+(\S+)", (Path(meta["object_tree"]) / "build.log").read_text(), re.M)
    assert "arch/x86/kvm/hyperv.o" in compiled and len(compiled) < 30, compiled
    assert nonce not in (pristine / HYPERV_C).read_text()
