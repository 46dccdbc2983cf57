"""The cache's artifacts are verified on every reuse (harness/cache.py: store_verified /
load_verified), and two runs at once can share one cache.

Each artifact kind -- payload binary, guest image, kernel build, harness-side program,
Debian package, PVH vmlinux -- is corrupted on disk (truncated, a byte flipped, its
record removed) in a temporary KVMCONF_CACHE, seeded from the warm ~/.cache/kvmconf
where that saves a download; the next use must name it in one log line, not use it,
and build it again. The kernel build is exercised on a fake small build (make replaced)
through the real build() code path. Then two processes race on the same uncached
payload and image, two fake kernel builds of different configs must never overlap in
the mutable trees, and (nightly) two real `kvmconf run --suite smoke` share one cache.
"""
from __future__ import annotations

import json
import logging
import multiprocessing
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness import cache
from harness.cache import MANIFEST, load_verified, sidecar, store_verified
from harness.kernel import KernelImage
from tests.conftest import REPO, kvmconf, load_run, statuses

WARM = Path.home() / ".cache" / "kvmconf"
CORRUPTIONS = ("truncate", "flip", "no-record")
gcc = pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc missing: PATH has no gcc")


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv("KVMCONF_CACHE", str(root))
    return root


def corrupt(path: Path, how: str, record: Path | None = None) -> None:
    """Damage `path` as a disk would: cut it in half, or flip one byte in its middle;
    or ("no-record") delete its record (`record`: the sidecar or manifest)."""
    if how == "truncate":
        with open(path, "r+b") as f:
            f.truncate(max(0, path.stat().st_size // 2))
    elif how == "flip":
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0x40
        path.write_bytes(bytes(data))
    else:
        (record or sidecar(path)).unlink()


def warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "kvmconf.cache"]


def leftovers(root: Path) -> list[str]:
    """Temp files or folders a build left in the cache (every temp name starts with '.';
    the kernel's mutable work and object trees hold dot files of their own)."""
    return sorted(str(p.relative_to(root)) for p in root.rglob(".*") if p.name != MANIFEST
                  and not p.relative_to(root).as_posix().startswith(("kernel/obj/", "kernel/work/")))


# -- the mechanism ------------------------------------------------------------------------
@pytest.mark.parametrize("how", CORRUPTIONS)
def test_a_damaged_file_artifact_is_named_deleted_and_reported_absent(tmp_path, caplog, how):
    target = tmp_path / "a" / "blob"
    digest = store_verified(target, b"x" * 4096 + b"payload", 0o755)
    assert target.stat().st_mode & 0o777 == 0o755
    assert sidecar(target).read_text().split() == [digest, "blob"]
    assert load_verified(target) == digest and not warnings(caplog)
    corrupt(target, how)
    with caplog.at_level(logging.WARNING, "kvmconf.cache"):
        assert load_verified(target) is None
    (line,) = warnings(caplog)
    assert str(target) in line and "\n" not in line
    assert ("no blob.sha256 record" if how == "no-record" else "does not match the recorded") in line
    assert not target.exists() and not sidecar(target).exists()
    assert load_verified(target) is None and len(warnings(caplog)) == 1   # absent: silent


@pytest.mark.parametrize("how", CORRUPTIONS)
def test_a_damaged_folder_artifact_is_caught_by_its_manifest(tmp_path, caplog, how):
    folder = tmp_path / "tree"
    with cache.atomic_directory(folder) as tmp:
        (tmp / "boot").mkdir()
        (tmp / "boot" / "vmlinuz").write_bytes(os.urandom(8192))
        (tmp / "lib").mkdir()
        (tmp / "lib" / "m.ko").write_bytes(os.urandom(4096))
        (tmp / "link").symlink_to("boot/vmlinuz")
        store_verified(tmp)
    assert json.loads((folder / MANIFEST).read_text())["files"]["link"] == "symlink:boot/vmlinuz"
    assert load_verified(folder) and load_verified(folder, ["lib/m.ko"]) and load_verified(folder, [])
    corrupt(folder / "lib" / "m.ko", how, folder / MANIFEST)
    if how != "no-record":     # a use that does not read the damaged file does not see it
        assert load_verified(folder, ["boot/vmlinuz"])
    with caplog.at_level(logging.WARNING, "kvmconf.cache"):
        assert load_verified(folder, ["lib/m.ko"]) is None
    (line,) = warnings(caplog)
    assert str(folder) in line and ("lib/m.ko" in line or MANIFEST in line)
    assert not folder.exists() and leftovers(tmp_path) == []


def test_a_file_the_manifest_does_not_list_is_a_problem(tmp_path, caplog):
    folder = tmp_path / "tree"
    with cache.atomic_directory(folder) as tmp:
        (tmp / "a").write_text("a")
        store_verified(tmp)
    (folder / "stray.ko").write_text("not unpacked by us")
    with caplog.at_level(logging.WARNING, "kvmconf.cache"):
        assert load_verified(folder) is None
    assert "stray.ko: not in its manifest" in warnings(caplog)[0]


# -- payload binaries (and libkvmconf.a) --------------------------------------------------
def _gcc_calls(monkeypatch, module) -> list[list[str]]:
    calls: list[list[str]] = []
    real = module.subprocess.run

    def run(argv, *args, **kwargs):
        if argv[0] in ("gcc", "ar") and "--version" not in argv:
            calls.append(list(argv))
        return real(argv, *args, **kwargs)
    monkeypatch.setattr(module.subprocess, "run", run)
    return calls


@gcc
@pytest.mark.parametrize("how", CORRUPTIONS)
def test_payload_binary_corrupted_on_disk_is_rebuilt(fresh_cache, monkeypatch, caplog, how):
    from harness.payloads import build
    first = build.build("probe")
    target, lib = first.path, build.build_lib()
    good = target.read_bytes()
    calls = _gcc_calls(monkeypatch, build)
    assert build.build("probe").path == target and calls == []          # verified: reused
    corrupt(target, how)
    with caplog.at_level(logging.WARNING, "kvmconf.cache"):
        again = build.build("probe")
    assert [l for l in warnings(caplog) if str(target) in l], warnings(caplog)
    assert len(calls) == 1 and calls[0][calls[0].index("-o") + 1] != str(target)   # linked anew
    assert again.path == target and load_verified(target) == cache.sha256_file(target)
    assert len(target.read_bytes()) == len(good) and again.symbols == first.symbols
    corrupt(lib, how)                                                     # and the lib
    calls.clear()
    with caplog.at_level(logging.WARNING, "kvmconf.cache"):
        assert build.build_lib() == lib
    assert any(str(lib) in l for l in warnings(caplog)) and any(c[0] == "ar" for c in calls)
    assert load_verified(lib) and leftovers(fresh_cache) == []


# -- the guest image ----------------------------------------------------------------------
def _no_module_kernel(tmp_path: Path) -> KernelImage:
    bz = tmp_path / "bzImage"
    bz.write_bytes(b"fake")
    return KernelImage("bzimage", "6.1.0-fake", bz, cache.sha256_file(bz))


@gcc
@pytest.mark.parametrize("how", CORRUPTIONS)
def test_guest_image_corrupted_on_disk_is_rebuilt(fresh_cache, tmp_path, caplog, how):
    from harness.guestimage import build_base
    kernel = _no_module_kernel(tmp_path)
    payload = tmp_path / "probe"
    payload.write_bytes(b"\x7fELF not really")
    image = build_base(kernel, {"probe": payload}, {})
    assert image.base == fresh_cache / "images" / f"{image.sha256}.cpio"
    assert load_verified(image.base) == image.sha256
    corrupt(image.base, how)
    with caplog.at_level(logging.WARNING, "kvmconf.cache"):
        again = build_base(kernel, {"probe": payload}, {})
    assert [l for l in warnings(caplog) if str(image.base) in l], warnings(caplog)
    assert again.sha256 == image.sha256 and cache.sha256_file(again.base) == image.sha256
    assert leftovers(fresh_cache) == []


# -- kernel builds (a fake small build through the real build() path) ----------------------
def _fake_build_env(monkeypatch, tmp_path: Path, make_log: Path | None = None, delay: float = 0.0):
    """build() with the source, configure and make replaced by writes of small files; each
    make appends "<pid> <obj> start|end <time>" to `make_log`."""
    from harness.kernel import build as kb
    tree = tmp_path / "src"
    tree.mkdir(exist_ok=True)
    monkeypatch.setattr(kb, "pristine_tree", lambda source, verify=False: (tree, "5" * 64))
    monkeypatch.setattr(kb, "_compiler", lambda: ("gcc", "gcc (fake) 1"))
    monkeypatch.setattr(kb, "read_version", lambda path: "6.1.0-fake")

    def prepare(pristine, digest, patch_list, work, verify=None):
        work.mkdir(parents=True, exist_ok=True)
        (work / "in-use").write_text(str(os.getpid()))
        return work

    def configure(work, obj, fragments, log):
        (obj / ".config").write_text("".join(f.read_text() for f in fragments))
        return cache.sha256_file(obj / ".config")

    def run(argv, cwd, log=None, timeout=3600):
        obj = Path(next(a for a in argv if a.startswith("O="))[2:])
        if make_log:
            with open(make_log, "a") as f:
                f.write(f"{os.getpid()} {obj.name} start {time.monotonic()}\n")
        assert (Path(cwd) / "in-use").read_text() == str(os.getpid())   # nobody else's tree
        time.sleep(delay)
        (obj / "arch/x86/boot").mkdir(parents=True, exist_ok=True)
        (obj / "arch/x86/boot/bzImage").write_bytes(os.urandom(65536))
        if make_log:
            with open(make_log, "a") as f:
                f.write(f"{os.getpid()} {obj.name} end {time.monotonic()}\n")
    monkeypatch.setattr(kb, "_prepare_work_tree", prepare)
    monkeypatch.setattr(kb, "_configure", configure)
    monkeypatch.setattr(kb, "_run", run)
    monkeypatch.setattr(kb, "_check_patched_sources_built", lambda *a, **k: None)
    return kb


def _fragment(tmp_path: Path, option: str) -> Path:
    path = tmp_path / f"{option}.config"
    path.write_text(f"CONFIG_{option}=y\n")
    return path


@pytest.mark.parametrize("how", ("truncate", "flip"))   # no manifest: the next test
@pytest.mark.parametrize("victim", ["bzImage", "config", "metadata.json"])
def test_kernel_build_corrupted_on_disk_is_rebuilt(fresh_cache, tmp_path, monkeypatch, caplog,
                                                   how, victim):
    kb = _fake_build_env(monkeypatch, tmp_path)
    fragments = [_fragment(tmp_path, "KVM")]
    first = kb.build(fragments=fragments, progress=lambda text: None)
    out = first.directory
    assert not first.cached and (out / MANIFEST).is_file() and load_verified(out)
    assert first.kernel.sha256 == cache.sha256_file(out / "bzImage")
    hit = kb.build(fragments=fragments, progress=lambda text: None)
    assert hit.cached and hit.kernel.sha256 == first.kernel.sha256
    corrupt(out / victim, how, out / MANIFEST)
    with caplog.at_level(logging.WARNING, "kvmconf.cache"):
        again = kb.build(fragments=fragments, progress=lambda text: None)
    assert [l for l in warnings(caplog) if str(out) in l], warnings(caplog)
    assert not again.cached and again.directory == out and load_verified(out)
    assert again.kernel.sha256 == cache.sha256_file(out / "bzImage") != first.kernel.sha256
    assert leftovers(fresh_cache) == []


def test_a_kernel_build_from_before_manifests_is_adopted_only_if_its_metadata_matches(
        fresh_cache, tmp_path, monkeypatch, caplog):
    kb = _fake_build_env(monkeypatch, tmp_path)
    fragments = [_fragment(tmp_path, "KVM")]
    out = kb.build(fragments=fragments, progress=lambda text: None).directory
    (out / MANIFEST).unlink()                         # as every build before this change
    with caplog.at_level(logging.WARNING, "kvmconf.cache"):
        assert kb.build(fragments=fragments, progress=lambda text: None).cached
    assert "matches its metadata.json: sealed" in warnings(caplog)[0] and load_verified(out)
    (out / MANIFEST).unlink()
    corrupt(out / "bzImage", "flip")                  # no manifest and not what metadata says
    caplog.clear()
    with caplog.at_level(logging.WARNING, "kvmconf.cache"):
        assert not kb.build(fragments=fragments, progress=lambda text: None).cached
    assert "no readable" in warnings(caplog)[0]


def _race_build(cache_root: str, tmp_path: str, option: str, make_log: str, start: float) -> str:
    os.environ["KVMCONF_CACHE"] = cache_root
    mp = pytest.MonkeyPatch()
    kb = _fake_build_env(mp, Path(tmp_path), Path(make_log), delay=0.6)
    time.sleep(max(0.0, start - time.time()))
    result = kb.build(fragments=[_fragment(Path(tmp_path), option)], progress=lambda text: None)
    return str(result.directory)


def test_two_builds_of_different_configs_never_share_a_mutable_tree(fresh_cache, tmp_path):
    """The build lock is held from choosing the work and object trees until the output is
    in place: the two makes never overlap, and each config has its own object tree."""
    make_log = tmp_path / "make.log"
    start = time.time() + 1.0
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(2) as pool:
        jobs = [pool.apply_async(_race_build, (str(fresh_cache), str(tmp_path), opt, str(make_log), start))
                for opt in ("KVM", "KVM_INTEL")]
        outs = [j.get(timeout=60) for j in jobs]
    assert len(set(outs)) == 2 and all(load_verified(Path(o)) for o in outs)
    events = [line.split() for line in make_log.read_text().splitlines()]
    assert [e[2] for e in events] == ["start", "end", "start", "end"]       # one after the other
    assert events[0][0] == events[1][0] != events[2][0] == events[3][0]
    assert events[0][1] != events[2][1]                                       # an object tree each
    assert sorted(p.name for p in (fresh_cache / "kernel" / "obj").iterdir()) == sorted(
        {events[0][1], events[2][1]})
    assert leftovers(fresh_cache) == []


# -- a harness-side program (the pebs_pt packet decoder, compiled from the kernel's code) ---
def _kernel_tree() -> Path:
    trees = sorted(WARM.glob("kernel/src/*/tools/perf/util/intel-pt-decoder"))
    if not trees:
        pytest.skip("no unpacked kernel source in ~/.cache/kvmconf (kvmconf kernel build once)")
    return trees[0].parents[3]


@gcc
@pytest.mark.parametrize("how", CORRUPTIONS)
def test_harness_side_program_corrupted_on_disk_is_rebuilt(fresh_cache, caplog, how):
    from harness.payloads import pebs_pt_decoders as dec
    built = dec.build_ptdec(_kernel_tree())
    folder = built.path.parent
    assert load_verified(folder) and (folder / "kernel_files.json").is_file()
    corrupt(built.path, how, folder / MANIFEST)
    with caplog.at_level(logging.WARNING, "kvmconf.cache"):
        again = dec.build_ptdec(_kernel_tree())
    assert [l for l in warnings(caplog) if str(folder) in l], warnings(caplog)
    assert again.path == built.path and load_verified(folder)
    packets = dec.run_decoder(again.path, [bytes.fromhex("0d")])     # it runs: not the damaged copy
    assert packets[0]["packets"][0]["type"] == "tip"
    assert leftovers(fresh_cache) == []


@gcc
def test_vcsim_corrupted_on_disk_is_rebuilt(fresh_cache, monkeypatch, caplog):
    """vcsim (SEV-ES's #VC handler compiled from the kernel tree into a user-space
    program), copied from the warm cache (where a sev_es run keeps it; built there if
    not), then damaged in the temporary one and rebuilt (~10-15 s)."""
    from harness.payloads import build, sev_es_build
    tree = _kernel_tree()
    monkeypatch.setenv("KVMCONF_CACHE", str(WARM))
    warm = sev_es_build.build_vcsim(tree).path
    warm_lib = build.build_lib()
    caplog.clear()                    # (the warm cache's own upgrade, if any)
    monkeypatch.setenv("KVMCONF_CACHE", str(fresh_cache))
    for path in (warm, warm_lib):
        dest = fresh_cache / path.relative_to(WARM)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, dest)
        shutil.copy2(sidecar(path), sidecar(dest))
    vcsim = sev_es_build.build_vcsim(tree).path
    lib = build.build_lib()
    assert vcsim == fresh_cache / warm.relative_to(WARM) and not warnings(caplog)
    good_size = vcsim.stat().st_size
    corrupt(vcsim, "flip")
    with caplog.at_level(logging.WARNING, "kvmconf.cache"):
        again = sev_es_build.build_vcsim(tree).path
    assert [l for l in warnings(caplog) if str(vcsim) in l], warnings(caplog)
    assert again == vcsim and load_verified(vcsim) and lib.exists()
    assert sev_es_build.check_binary(vcsim) == []           # a whole ELF objdump reads
    assert vcsim.read_bytes()[:4] == b"\x7fELF" and vcsim.stat().st_size > 0.9 * good_size
    assert leftovers(fresh_cache) == []


# -- the PVH vmlinux taken out of a bzImage ---------------------------------------------------
def _warm_debian() -> tuple[str, str, Path]:
    found = sorted(WARM.glob(f"debian/linux-image-*_*/download/{MANIFEST}"))
    if not found:
        pytest.skip("no Debian kernel package in ~/.cache/kvmconf (kvmconf run once)")
    package, _, version = found[-1].parents[1].name.partition("_")
    return package, version, found[-1].parent


@pytest.mark.parametrize("how", ("truncate", "flip"))
def test_pvh_vmlinux_corrupted_on_disk_is_extracted_again(fresh_cache, caplog, how):
    from harness.kernel import pvh
    _, _, download = _warm_debian()
    tree = download.parent / "tree"
    images = sorted(tree.glob("boot/vmlinuz-*"))
    if not images or (cache.read_manifest(tree) or {}).get(f"boot/{images[0].name}") != \
            cache.sha256_file(images[0]):
        pytest.skip("the warm Debian tree is not unpacked")
    kernel = KernelImage("debian", images[0].name.removeprefix("vmlinuz-"), images[0],
                         cache.sha256_file(images[0]))
    boot = pvh.boot_file(kernel)
    if boot == kernel.bzimage:
        pytest.skip("this kernel has no PVH entry point")
    good = cache.sha256_file(boot)
    corrupt(boot, how)
    with caplog.at_level(logging.WARNING, "kvmconf.cache"):
        assert pvh.boot_file(kernel) == boot
    assert [l for l in warnings(caplog) if str(boot) in l] and cache.sha256_file(boot) == good


# -- the Debian package: the .deb and its unpacked tree -------------------------------------
@pytest.fixture
def seeded_debian(fresh_cache):
    """The Debian package's verified download copied from the warm cache (no network)."""
    package, version, download = _warm_debian()
    root = fresh_cache / "debian" / f"{package}_{version}"
    shutil.copytree(download, root / "download")
    return package, version, root


def _seed_tree(root: Path) -> None:
    """The unpacked tree too (a copy is faster than dpkg -x's xz), when the warm one is whole."""
    warm = WARM / "debian" / root.name / "tree"
    if (warm / MANIFEST).is_file():
        subprocess.run(["cp", "-a", "--reflink=auto", str(warm), str(root / "tree")], check=True)


@gcc
@pytest.mark.nightly   # 40 s of unpacking; the .deb and every other artifact kind are checked in make test
def test_debian_kernel_and_modules_corrupted_on_disk_are_unpacked_again(seeded_debian, caplog):
    """A flipped byte in the kernel, the tree's manifest gone, a truncated module (caught
    before the guest image reads it): each is named, and the tree unpacked again."""
    from harness.guestimage import build_base
    from harness.kernel import debian
    package, version, root = seeded_debian
    _seed_tree(root)
    kernel = debian.fetch(package, version)
    assert kernel.bzimage.is_relative_to(root / "tree") and load_verified(root / "tree")
    assert kernel.sha256 == cache.sha256_file(kernel.bzimage)
    for how in ("flip", "no-record"):
        unpacked = (root / "tree" / MANIFEST).stat().st_mtime_ns
        corrupt(kernel.bzimage, how, root / "tree" / MANIFEST)
        caplog.clear()
        with caplog.at_level(logging.WARNING, "kvmconf.cache"):
            again = debian.fetch(package, version)
        assert [l for l in warnings(caplog) if str(root / "tree") in l], (how, warnings(caplog))
        assert (root / "tree" / MANIFEST).stat().st_mtime_ns != unpacked
        assert again.sha256 == kernel.sha256 == cache.sha256_file(again.bzimage)

    groups = {"msr": ("msr",)}
    image = build_base(kernel, {}, groups)
    (module,) = [Path(line.split()[2]) for line in image.modules]
    on_disk = kernel.modules_dir / module.relative_to(f"/lib/modules/{kernel.version}")
    good = cache.sha256_file(on_disk)
    corrupt(on_disk, "truncate")
    caplog.clear()
    with caplog.at_level(logging.WARNING, "kvmconf.cache"):
        again = build_base(kernel, {}, groups)
    assert [l for l in warnings(caplog) if on_disk.name in l and str(root / "tree") in l], warnings(caplog)
    assert cache.sha256_file(on_disk) == good and again.sha256 == image.sha256


@pytest.mark.parametrize("how", ("truncate",))
def test_a_corrupted_deb_is_downloaded_again(seeded_debian, monkeypatch, caplog, how):
    from harness.kernel import debian
    package, version, root = seeded_debian
    (deb,) = (root / "download").glob("*.deb")
    warm_deb = WARM / "debian" / root.name / "download" / deb.name
    corrupt(deb, how)
    downloads = []

    def download(pkg, ver, dest):     # apt-get download, from the warm copy
        downloads.append((pkg, ver))
        shutil.copy2(warm_deb, dest / deb.name)
    monkeypatch.setattr(debian, "_download", download)
    with caplog.at_level(logging.WARNING, "kvmconf.cache"):
        kernel = debian.fetch(package, version)
    assert downloads == [(package, version)]
    assert [l for l in warnings(caplog) if str(root / "download") in l and deb.name in l]
    assert kernel.source["sha256"] == cache.sha256_file(deb) == cache.sha256_file(warm_deb)


# -- two processes at once on one fresh cache ------------------------------------------------
RACER = r"""
import json, sys, time
from pathlib import Path
from harness import cache
from harness.guestimage import build_base
from harness.kernel import KernelImage
from harness.payloads import build
start, bz = float(sys.argv[1]), Path(sys.argv[2])
time.sleep(max(0.0, start - time.time()))
payload = build.build("probe").path
kernel = KernelImage("bzimage", "6.1.0-fake", bz, cache.sha256_file(bz))
image = build_base(kernel, {"probe": payload}, {})
print(json.dumps({"payload": str(payload), "payload_sha": cache.sha256_file(payload),
                  "image": str(image.base), "image_sha": image.sha256}))
"""


@gcc
def test_two_processes_racing_on_one_payload_and_image_agree(fresh_cache, tmp_path):
    bz = tmp_path / "bzImage"
    bz.write_bytes(b"fake")
    start = f"{time.time() + 2.0}"
    procs = [subprocess.Popen([sys.executable, "-c", RACER, start, str(bz)], cwd=REPO,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-2000:]
        results.append(json.loads(out.splitlines()[-1]))
    assert results[0] == results[1]
    payload, image = Path(results[0]["payload"]), Path(results[0]["image"])
    assert load_verified(payload) == results[0]["payload_sha"]
    assert load_verified(image) == results[0]["image_sha"]
    assert sorted(p.name for p in (fresh_cache / "payloads").iterdir() if p.name.startswith("probe-")
                  and not p.name.endswith(".lock")) == sorted([payload.name, sidecar(payload).name])
    assert leftovers(fresh_cache) == []


# -- end to end: two real smoke runs at once sharing one cache --------------------------------
@pytest.mark.e2e
@pytest.mark.nightly
def test_two_smoke_runs_at_once_share_one_cache(seeded_debian, tmp_path):
    """Both finish green; the payloads, the image and the PVH vmlinux they raced on are
    built once and verified (the Debian package comes from the warm cache's .deb)."""
    env = {"KVMCONF_CACHE": os.environ["KVMCONF_CACHE"]}
    outs = [tmp_path / f"run{i}" for i in (1, 2)]
    procs = [subprocess.Popen([sys.executable, "-m", "harness.cli", "run", "--suite", "smoke",
                               "--output", str(out), "--label", f"shared-cache-{i}"],
                              cwd=REPO, env={**os.environ, **env}, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, start_new_session=True)
             for i, out in enumerate(outs, 1)]
    for proc in procs:
        try:
            _, err = proc.communicate(timeout=900)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            raise
        assert proc.returncode == 0, err[-3000:]
    records = [load_run(out) for out in outs]
    for record in records:
        assert set(statuses(record).values()) == {"PASS"} and len(statuses(record)) == 7
    assert records[0]["kernel"]["sha256"] == records[1]["kernel"]["sha256"]
    root = Path(env["KVMCONF_CACHE"])
    images = [p for p in (root / "images").glob("*.cpio")]
    assert len(images) == 1 and all(load_verified(p) for p in images)
    for payload in (root / "payloads").iterdir():
        if payload.is_file() and not payload.name.endswith((".lock", ".sha256")):
            assert load_verified(payload), payload
    assert leftovers(root) == []
