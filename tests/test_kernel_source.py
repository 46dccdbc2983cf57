"""The kernel under test's source tree for harness-side payloads (harness/kernel/source.py):
the patched view over the unpacked source, Debian's package/source version match."""
from __future__ import annotations

import difflib
from pathlib import Path
from types import SimpleNamespace

import pytest

from harness.errors import HarnessError
from harness.kernel import build, patches, source


@pytest.fixture(scope="module")
def pristine():
    return build.pristine_tree(build.DEFAULT_SOURCE)[0]


def _patch(tmp_path, pristine, rel: str, old: str, new: str) -> Path:
    text = (pristine / rel).read_text()
    diff = difflib.unified_diff(text.splitlines(True), text.replace(old, new, 1).splitlines(True),
                                f"a/{rel}", f"b/{rel}")
    path = tmp_path / "one.patch"
    path.write_text("".join(diff))
    return path


def test_the_patched_view_reads_like_the_patched_tree_and_leaves_the_source_alone(tmp_path, pristine):
    rel = "arch/x86/kernel/sev-shared.c"
    old = next(l for l in (pristine / rel).read_text().splitlines() if "GHCB_PROTOCOL_MAX" in l)
    before = (pristine / rel).read_text()
    view = source.patched_view(pristine, [patches.load(_patch(tmp_path, pristine, rel, old, old + " /* x */"))],
                               tmp_path)
    assert (view / rel).read_text() == before.replace(old, old + " /* x */", 1)
    assert not (view / rel).is_symlink() and (pristine / rel).read_text() == before
    # everything else is the source itself, down to siblings of the patched file
    assert (view / "arch/x86/kernel/sev.c").resolve() == (pristine / "arch/x86/kernel/sev.c").resolve()
    assert (view / "Makefile").read_text() == (pristine / "Makefile").read_text()
    assert (view / "arch/x86/include/asm/svm.h").is_file()


def test_a_patch_that_does_not_apply_names_itself(tmp_path, pristine):
    bad = tmp_path / "bad.patch"
    bad.write_text("--- a/Makefile\n+++ b/Makefile\n@@ -1,1 +1,1 @@\n-no such line\n+x\n")
    with pytest.raises(HarnessError, match="^--patch bad.patch does not apply"):
        source.patched_view(pristine, [patches.load(bad)], tmp_path)


def test_debian_kernel_needs_exactly_its_own_source_version(tmp_path, monkeypatch):
    (tmp_path / "download").mkdir()
    (tmp_path / "download" / "linux-image-6.1.0-99-amd64_6.1.999-1_amd64.deb").write_text("")
    kernel = SimpleNamespace(kind="debian", version="6.1.0-99-amd64",
                             bzimage=tmp_path / "tree" / "boot" / "vmlinuz-6.1.0-99-amd64")
    monkeypatch.setattr(source, "linux_source_version", lambda: "6.1.192-3")
    with pytest.raises(HarnessError, match=r"Debian package 6.1.999-1, but linux-source-6.1 is 6.1.192-3"):
        source.tree_of(kernel, tmp_path)


def test_debian_kernel_installs_linux_source_when_it_is_absent(tmp_path, monkeypatch):
    """A fresh machine has no linux-source-6.1: `make run` installs it, as a build does."""
    (tmp_path / "download").mkdir()
    (tmp_path / "download" / "linux-image-6.1.0-99-amd64_6.1.999-1_amd64.deb").write_text("")
    kernel = SimpleNamespace(kind="debian", version="6.1.0-99-amd64",
                             bzimage=tmp_path / "tree" / "boot" / "vmlinuz-6.1.0-99-amd64")
    installed = []
    monkeypatch.setattr(source, "linux_source_version", lambda: "6.1.999-1" if installed else None)
    monkeypatch.setattr(build, "install_linux_source", lambda: installed.append(True))
    monkeypatch.setattr(build, "pristine_tree", lambda src: (tmp_path / "tree", "digest"))
    assert source.tree_of(kernel, tmp_path) == tmp_path / "tree" and installed == [True]


def test_a_kernel_without_a_known_source_says_so():
    with pytest.raises(source.NoSource, match="no source tree is known for kernel 6.18.1"):
        source.tree_of(SimpleNamespace(kind="running", version="6.18.1"), Path("/tmp"))


def test_a_source_kernel_is_the_patched_source_unbuilt(tmp_path, pristine):
    kernel = source.SourceKernel(build.DEFAULT_SOURCE)
    assert kernel.version.startswith("6.1.") and kernel.record()["kind"] == "source"
    assert source.tree_of(kernel, tmp_path) == pristine
