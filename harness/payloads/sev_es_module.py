"""Build kvmconf_vc.ko: the SEV-ES baseline triggers kernel module.

guests/sev_es/baseline/module/kvmconf_vc.c runs a fixed catalogue of CPL0
trigger instructions (OPS below, the ABI in guests/sev_es/baseline/kvc_abi.h)
for a user-space program. It is built out of tree against the guest kernel's
own headers:

- Debian's packaged kernel (KernelImage kind "debian"): the three packages of
  the image's exact version -- linux-headers-<release>,
  linux-headers-<abi>-common and linux-kbuild-<major.minor> -- are fetched
  with `apt-get download` and unpacked with `dpkg -x` into one tree in the
  cache, never installed. In that tree usr/src/linux-headers-<release> is the
  object tree: its scripts and tools are relative symlinks into
  usr/lib/linux-kbuild-<x.y> (which work unpacked) and its Makefile is one
  `include /usr/src/linux-headers-<abi>-common/Makefile` line (absolute: it is
  rewritten to the unpacked common tree; that Makefile takes its srctree from
  its own location). Then `make -C <tree>/usr/src/linux-headers-<release>
  M=<build>/module modules` builds it, with the packages' own compiler
  (gcc-<N>, from .kernelvariables).
- kvmconf's own kernel builds have CONFIG_MODULES off: ModulesUnsupported
  (the caller SKIPs with its message).

The .ko is cached under cache_root()/sev_es-module/<key>, the key being the
sha256 of the module sources, the header packages (name, version, sha256 of
each .deb) and the compiler's version line; its vermagic must start with the
kernel's release.
"""
from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from elftools.elf.elffile import ELFFile

from harness.cache import (atomic_directory, cache_root, load_verified, locked, read_manifest, sha256_file,
                           store_verified)
from harness.errors import HarnessError
from harness.kernel import KernelImage
from harness.payloads import build as payload_build

BASELINE = Path(__file__).resolve().parents[2] / "guests" / "sev_es" / "baseline"
ABI_HEADER = BASELINE / "kvc_abi.h"
MODULE_SOURCE = BASELINE / "module" / "kvmconf_vc.c"
KBUILD = BASELINE / "module" / "Kbuild"
SOURCES = (ABI_HEADER, MODULE_SOURCE, KBUILD)
MODULE_NAME = "kvmconf_vc"
DEVICE = "/dev/kvmconf_vc"
KEY_VERSION = "1"   # bump when the build recipe changes in a way the inputs do not show

# Register order of struct kvc_step.regs and of the kvc_op_info.regs bits.
REGS = ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rsp", "rbp",
        "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15")

# The catalogue, in op-number order (KVC_OP_* of kvc_abi.h):
# name -> (instruction bytes as hex, registers the op loads and stores).
OPS: dict[str, tuple[str, tuple[str, ...]]] = {
    "rdmsr": ("0f32", ("rax", "rcx", "rdx")),
    "wrmsr": ("0f30", ("rax", "rcx", "rdx")),
    "wbinvd": ("0f09", ()),
    "dr7_write": ("0f23f8", ("rax",)),          # mov %rax,%dr7
    "dr7_read": ("0f21f8", ("rax",)),           # mov %dr7,%rax
    "vmmcall": ("0f01d9", ("rax", "rbx", "rcx", "rdx", "rsi")),
    "rdpmc": ("0f33", ("rax", "rcx", "rdx")),
    "monitor": ("0f01c8", ("rax", "rcx", "rdx")),  # rax 0: the module's own line
    "mwait": ("0f01c9", ("rax", "rcx")),           # runs with interrupts enabled
    "cpuid": ("0fa2", ("rax", "rbx", "rcx", "rdx")),
    "rdtsc": ("0f31", ("rax", "rdx")),
    "rdtscp": ("0f01f9", ("rax", "rcx", "rdx")),
    "in_al_imm": ("e4e0", ("rax",)),
    "in_ax_imm": ("66e5e0", ("rax",)),
    "in_eax_imm": ("e5e0", ("rax",)),
    "out_al_imm": ("e6e0", ("rax",)),
    "out_ax_imm": ("66e7e0", ("rax",)),
    "out_eax_imm": ("e7e0", ("rax",)),
    "in_al_dx": ("ec", ("rax", "rdx")),
    "in_ax_dx": ("66ed", ("rax", "rdx")),
    "in_eax_dx": ("ed", ("rax", "rdx")),
    "out_al_dx": ("ee", ("rax", "rdx")),
    "out_ax_dx": ("66ef", ("rax", "rdx")),
    "out_eax_dx": ("ef", ("rax", "rdx")),
    "mmio_load8": ("8a06", ("rax", "rsi")),   # mov (%rsi),%al
    "mmio_load16": ("668b06", ("rax", "rsi")),
    "mmio_load32": ("8b06", ("rax", "rsi")),
    "mmio_load64": ("488b06", ("rax", "rsi")),
    "mmio_load_ah": ("8a26", ("rax", "rsi")),   # mov (%rsi),%ah
    "mmio_store8": ("8806", ("rax", "rsi")),   # mov %al,(%rsi)
    "mmio_store16": ("668906", ("rax", "rsi")),
    "mmio_store32": ("8906", ("rax", "rsi")),
    "mmio_store64": ("488906", ("rax", "rsi")),
    "mmio_movzx8": ("0fb606", ("rax", "rsi")),   # movzx (%rsi),%eax
    "mmio_movzx16": ("0fb706", ("rax", "rsi")),
    "mmio_movsx8": ("480fbe06", ("rax", "rsi")),   # movsx (%rsi),%rax
    "mmio_movsx16": ("0fbf06", ("rax", "rsi")),   # movsx (%rsi),%eax
}
OP_NUMBER = {name: i for i, name in enumerate(OPS)}
TESTDEV_PORT = 0xe0   # the imm forms' port: QEMU pc-testdev's loopback register

# ioctl numbers and struct sizes of kvc_abi.h (x86-64).
STEP_SIZE, RUN_SIZE, OP_INFO_SIZE, OPS_SIZE = 152, 1224, 36, 1448
MAX_STEPS, MAX_OPS = 8, 40
KVC_RUN = (3 << 30) | (RUN_SIZE << 16) | (ord("k") << 8) | 1   # _IOWR('k', 1, struct kvc_run)
KVC_OPS = (2 << 30) | (OPS_SIZE << 16) | (ord("k") << 8) | 2   # _IOR('k', 2, struct kvc_ops)
KVC_IOMEM = (2 << 30) | (8 << 16) | (ord("k") << 8) | 3        # _IOR('k', 3, __u64)

_TIMEOUT_APT = 600
_TIMEOUT_DPKG = 300
_TIMEOUT_MAKE = 900


class ModulesUnsupported(HarnessError):
    """The kernel under test cannot load modules: the module cases SKIP with this message."""


class HeadersUnavailable(HarnessError):
    """apt could not fetch the kernel's header packages."""


def regs_mask(regs: tuple[str, ...]) -> int:
    """The kvc_op_info.regs bitmask of a register tuple."""
    return sum(1 << REGS.index(r) for r in regs)


def _tail(text: str, lines: int = 4) -> str:
    kept = [line.strip() for line in text.strip().splitlines() if line.strip()][-lines:]
    return " | ".join(kept) or "(no output)"


def _run(what: str, argv: list[str], timeout: float, cwd: Path | None = None,
         error: type[HarnessError] = HarnessError) -> subprocess.CompletedProcess:
    try:
        done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        raise error(f"{what}: {argv[0]} not found") from None
    except subprocess.TimeoutExpired as exc:
        out = (exc.stdout or b"") + (exc.stderr or b"")
        if isinstance(out, bytes):
            out = out.decode(errors="replace")
        raise error(f"{what}: no end within {timeout:.0f} s: {_tail(out)}") from None
    if done.returncode != 0:
        raise error(f"{what} failed (exit {done.returncode}): "
                    f"{_tail(done.stdout + chr(10) + done.stderr)}")
    return done


def _config_path(kernel: KernelImage) -> Path | None:
    """The file KernelImage.config() reads (same search order)."""
    folder = kernel.bzimage.parent
    for path in (folder / f"config-{kernel.version}", folder / "config", folder / ".config"):
        if path.is_file():
            return path
    return None


def check_modules(kernel: KernelImage) -> None:
    """Raise ModulesUnsupported when the kernel's config says CONFIG_MODULES is off."""
    config = kernel.config()
    if config is not None and config.get("CONFIG_MODULES") != "y":
        raise ModulesUnsupported(f"kernel {kernel.version} ({kernel.kind}): CONFIG_MODULES is "
                                 f"not set (config {_config_path(kernel)})")


# --- Debian header packages -------------------------------------------------

def _image_package(kernel: KernelImage) -> str:
    path = (kernel.source or {}).get("path", "")
    if path.startswith("apt:"):
        return path.removeprefix("apt:")
    return f"linux-image-{kernel.version}"


def _image_package_version(kernel: KernelImage, package: str) -> str:
    """The Debian version of the image package the kernel came from (its cached .deb's
    name, as harness.kernel.debian downloaded it), else apt's candidate."""
    tree = kernel.bzimage.parent.parent   # <cache>/debian/<package>/tree/boot/vmlinuz-*
    for deb in sorted((tree.parent / "download").glob(f"{package}_*.deb")):
        return deb.name.split("_")[1].replace("%3a", ":")
    out = _run(f"apt-cache policy {package}", ["apt-cache", "policy", package],
               _TIMEOUT_APT, error=HeadersUnavailable).stdout
    found = re.search(r"Candidate:\s*(\S+)", out)
    if not found or found.group(1) == "(none)":
        raise HeadersUnavailable(f"apt-cache policy {package}: no candidate version")
    return found.group(1)


def header_packages(kernel: KernelImage) -> tuple[list[str], str]:
    """(the three header/kbuild package names, their version) for a Debian kernel."""
    release = kernel.version                    # 6.1.0-57-amd64
    found = re.fullmatch(r"((\d+)\.(\d+)\.\d+-\d+)-([\w-]+)", release)
    if not found:
        raise HarnessError(f"kernel release {release!r}: not a Debian <x.y.z-abi>-<flavour> name")
    abi, major, minor = found.group(1), found.group(2), found.group(3)
    version = _image_package_version(kernel, _image_package(kernel))
    names = [f"linux-headers-{release}", f"linux-headers-{abi}-common",
             f"linux-kbuild-{major}.{minor}"]
    return names, version


def fetch_headers(kernel: KernelImage, full: bool = False) -> tuple[Path, dict[str, dict[str, str]]]:
    """Unpack the kernel's header packages into the cache (once).

    The download and the tree are folder artifacts with manifests (harness/cache.py):
    a reuse checks packages.json, or with `full` (before make reads the headers) every
    file; a damaged tree is unpacked again. Returns the object tree to `make -C` and
    {package: {"version", "sha256"}}."""
    names, version = header_packages(kernel)
    root = cache_root() / "sev_es-module" / "headers" / f"{kernel.version}_{version}"
    tree = root / "tree"
    objtree = tree / "usr/src" / names[0]
    with locked(root):
        if not load_verified(tree, None if full else ["packages.json"]):
            if not load_verified(root / "download"):
                with atomic_directory(root / "download") as tmp:
                    _run(f"apt-get download {' '.join(names)} ({version})",
                         ["apt-get", "download", *(f"{n}={version}" for n in names)],
                         _TIMEOUT_APT, cwd=tmp, error=HeadersUnavailable)
                    store_verified(tmp)
            packages = {}
            with atomic_directory(tree) as tmp:
                for name in names:
                    debs = sorted((root / "download").glob(f"{name}_*.deb"))
                    if not debs:
                        raise HeadersUnavailable(f"apt-get download {name}={version}: "
                                                 "no .deb arrived")
                    _run(f"dpkg -x {debs[0].name}", ["dpkg", "-x", str(debs[0]), str(tmp)],
                         _TIMEOUT_DPKG)
                    packages[name] = {"version": version, "sha256": sha256_file(debs[0])}
                _point_at_unpacked_common(tmp / "usr/src" / names[0], tree / "usr/src")
                (tmp / "packages.json").write_text(json.dumps(packages, indent=1) + "\n")
                store_verified(tmp)
    packages = json.loads((tree / "packages.json").read_text())
    # Debian's object tree names its release in .kernelvariables (include/config/
    # kernel.release holds the upstream 6.1.x there).
    variables = objtree / ".kernelvariables"
    found = re.search(r"^override KERNELRELEASE = (\S+)", variables.read_text()
                      if variables.is_file() else "", flags=re.M)
    if found and found.group(1) != kernel.version:
        raise HarnessError(f"{variables} names release {found.group(1)!r}, not the kernel's "
                           f"{kernel.version!r}")
    return objtree, packages


def _point_at_unpacked_common(objtree: Path, final_src: Path) -> None:
    """Rewrite the object tree Makefile's absolute `include /usr/src/...` to the
    unpacked tree (`final_src`: where usr/src will be once the tree is in place)."""
    makefile = objtree / "Makefile"
    if not makefile.is_file():
        raise HarnessError(f"{makefile}: missing from linux-headers package")
    text = makefile.read_text()
    fixed, count = re.subn(r"^include /usr/src/", f"include {final_src}/", text, flags=re.M)
    if count != 1:
        raise HarnessError(f"{makefile}: expected one 'include /usr/src/...' line, found "
                           f"{count}: {_tail(text, 2)}")
    makefile.write_text(fixed)


def _compiler(objtree: Path) -> str:
    """The compiler the kernel Makefiles use (CC of .kernelvariables: gcc-N), checked."""
    variables = objtree / ".kernelvariables"
    cc = "gcc"
    if variables.is_file():
        found = re.search(r"\$\(CROSS_COMPILE\)(\S+)\s*$", variables.read_text(), flags=re.M)
        if found:
            cc = found.group(1)
    if shutil.which(cc) is None:
        raise HarnessError(f"{cc} not found: the kernel headers ({variables}) build with it "
                           f"(apt-get install {cc})")
    return _run(f"{cc} --version", [cc, "--version"], 30).stdout.splitlines()[0]


# --- the build ----------------------------------------------------------------

def _key(packages: dict, compiler: str) -> str:
    digest = hashlib.sha256(f"kvmconf_vc {KEY_VERSION}\0{compiler}\0".encode())
    for path in SOURCES:
        digest.update(f"{path.relative_to(BASELINE)}\0{sha256_file(path)}\0".encode())
    for name in sorted(packages):
        digest.update(f"{name}={packages[name]['version']}:{packages[name]['sha256']}\0".encode())
    return digest.hexdigest()[:24]


def modinfo(ko: Path) -> dict[str, str]:
    """key -> value of the module's .modinfo section."""
    with open(ko, "rb") as f:
        section = ELFFile(f).get_section_by_name(".modinfo")
        if section is None:
            raise HarnessError(f"{ko}: no .modinfo section")
        data = section.data()
    info = {}
    for entry in data.split(b"\0"):
        key, sep, value = entry.decode(errors="replace").partition("=")
        if sep:
            info.setdefault(key, value)
    return info


def op_bytes(ko: Path) -> dict[str, bytes]:
    """name -> the bytes between the module's kvc_<name>_start and _end labels."""
    with open(ko, "rb") as f:
        elf = ELFFile(f)
        symtab = elf.get_section_by_name(".symtab")
        if symtab is None:
            raise HarnessError(f"{ko}: no symbol table")
        labels = {}
        for sym in symtab.iter_symbols():
            found = re.fullmatch(r"kvc_(\w+)_(start|end)", sym.name)
            if found and isinstance(sym["st_shndx"], int):
                labels[(found.group(1), found.group(2))] = (sym["st_shndx"], sym["st_value"])
        result = {}
        for name in OPS:
            start, end = labels.get((name, "start")), labels.get((name, "end"))
            if start is None or end is None or start[0] != end[0]:
                raise HarnessError(f"{ko}: no kvc_{name}_start/_end labels in one section")
            data = elf.get_section(start[0]).data()
            result[name] = data[start[1]:end[1]]
    return result


def check_vermagic(ko: Path, kernel: KernelImage) -> str:
    vermagic = modinfo(ko).get("vermagic", "")
    if not vermagic.startswith(kernel.version + " "):
        raise HarnessError(f"{ko}: vermagic {vermagic!r} does not start with the kernel's "
                           f"release {kernel.version!r}")
    return vermagic


def build_module(kernel: KernelImage) -> Path:
    """The path of kvmconf_vc.ko built for `kernel` (cached)."""
    check_modules(kernel)
    if kernel.kind != "debian":
        raise HarnessError(f"kernel {kernel.version} ({kernel.kind}): kvmconf_vc builds only "
                           "against Debian's packaged kernels (their linux-headers packages)")
    objtree, packages = fetch_headers(kernel)
    compiler = _compiler(objtree)
    out = cache_root() / "sev_es-module" / _key(packages, compiler)
    ko = out / f"{MODULE_NAME}.ko"
    with locked(out):
        if not load_verified(out):
            objtree, _ = fetch_headers(kernel, full=True)   # every header make reads, checked
            with atomic_directory(out) as tmp:
                _compile(objtree, tmp, kernel, packages, compiler)
                store_verified(tmp)
    check_vermagic(ko, kernel)
    payload_build.note_built(ko.name, read_manifest(out)[ko.name])    # checked by load_verified
    return ko


def _compile(objtree: Path, dest: Path, kernel: KernelImage, packages: dict,
             compiler: str) -> None:
    with tempfile.TemporaryDirectory(prefix="kvmconf_vc.") as work:
        build = Path(work)
        (build / "module").mkdir()
        shutil.copy2(ABI_HEADER, build / ABI_HEADER.name)
        shutil.copy2(MODULE_SOURCE, build / "module" / MODULE_SOURCE.name)
        shutil.copy2(KBUILD, build / "module" / "Kbuild")
        done = _run(f"make -C {objtree} M={build / 'module'} (kvmconf_vc.ko for {kernel.version})",
                    ["make", "-C", str(objtree), f"M={build / 'module'}", "modules"],
                    _TIMEOUT_MAKE)
        built = build / "module" / f"{MODULE_NAME}.ko"
        if not built.is_file():
            raise HarnessError(f"make -C {objtree}: no {built.name} produced: "
                               f"{_tail(done.stdout + chr(10) + done.stderr)}")
        vermagic = check_vermagic(built, kernel)
        shutil.copy2(built, dest / built.name)
        (dest / "build.log").write_text(done.stdout + done.stderr)
        (dest / "build.json").write_text(json.dumps(
            {"kernel": kernel.version, "vermagic": vermagic, "compiler": compiler,
             "packages": packages, "headers": str(objtree),
             "sources": {str(p.relative_to(BASELINE)): sha256_file(p) for p in SOURCES}},
            indent=1) + "\n")
