"""Build pmusim: the kernel's own KVM Intel PMU MSR code as a user-space program.

The kernel tree's arch/x86/kvm/vmx/pmu_intel.c, arch/x86/kvm/pmu.c,
arch/x86/kvm/cpuid.c, arch/x86/lib/cpu.c, lib/bitmap.c, lib/find_bit.c and
kernel/rcu/srcutiny.c are compiled whole, and so are
arch/x86/kvm/vmx/vmx.c and arch/x86/kvm/x86.c, each #included whole by a
bridge (guests/pebs_pt/pmusim/bridge_vmx.c, bridge_x86.c) that exports their
static MSR paths; perf's pt_caps[] table and intel_pt_validate_cap() are cut
out of arch/x86/events/intel/pt.c as they are (ptcap.c). All of them are
compiled freestanding against the tree's own headers with the shim's
include/generated (guests/pebs_pt/pmusim/shim: autoconf.h, bounds.h,
timeconst.h; the asm-generic wrappers and unistd_64.h generated from the
tree's Kbuild files and syscall table, as for vcsim), plus the shim's
kernel-side kshim.c; pmusim.c is hosted C linked with guests/lib.

Every other kernel symbol the compiled files reference (vmx.c and x86.c
reference a few hundred: the MMU, the local APIC, nested VMX, ...) gets a
generated definition (stubs.S, written in the build folder): a function
(referenced by a call or jump) becomes a trap that names itself (pmusim exits
3), anything else zeroed storage. pmusim.c's paths reach none of the
traps; a kernel whose MSR code does is seen as exit 3 naming the function.

Everything is built in a private temp folder (nothing is written into the
tree, so any tree, patched or not, works) and the binary is cached under the
payload cache by the sha256 of every input.
"""
from __future__ import annotations

import functools
import hashlib
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from harness.cache import cache_root, load_verified, locked, sha256_file, store_verified
from harness.errors import HarnessError
from harness.payloads import build as payload_build
from harness.payloads import kernel_env

PMUSIM = Path(__file__).resolve().parents[2] / "guests" / "pebs_pt" / "pmusim"
SHIM = PMUSIM / "shim"
_run = functools.partial(kernel_env.run, "pmusim build")

# The kernel files compiled (6.1 layout); the bridge that #includes a file, if any.
KERNEL_UNITS = {
    "arch/x86/kvm/vmx/pmu_intel.c": None,
    "arch/x86/kvm/pmu.c": None,
    "arch/x86/kvm/cpuid.c": None,
    "arch/x86/lib/cpu.c": None,          # x86_model() (cpuid_model_is_consistent)
    "lib/bitmap.c": None,                # __bitmap_set() & co. (intel_pmu_refresh)
    "lib/find_bit.c": None,              # for_each_set_bit (reprogram_counters)
    "kernel/rcu/srcutiny.c": None,       # __srcu_read_unlock (kvm_msr_allowed's SRCU section)
    "arch/x86/kvm/vmx/vmx.c": "bridge_vmx.c",
    "arch/x86/kvm/x86.c": "bridge_x86.c",
}
PT_C = "arch/x86/events/intel/pt.c"          # pt_caps[] + intel_pt_validate_cap, cut out
KVM_HEADER_DIR = "arch/x86/kvm"               # the KVM-local headers the units include
HEADER_DIRS = ("include", "arch/x86/include")
GEN_INPUTS = ("include/asm-generic/Kbuild", "include/uapi/asm-generic/Kbuild",
              "arch/x86/include/asm/Kbuild", "arch/x86/entry/syscalls/syscall_64.tbl")

KERNEL_CFLAGS = [
    "-nostdinc", "-D__KERNEL__", "-std=gnu11", "-O2", "-g",
    "-fno-strict-aliasing", "-fno-common", "-fshort-wchar", "-fno-PIE",
    "-mno-sse", "-mno-mmx", "-mno-sse2", "-mno-3dnow", "-mno-avx", "-m64", "-mno-red-zone",
    "-fno-asynchronous-unwind-tables", "-fno-delete-null-pointer-checks",
    "-fno-stack-protector", "-ffunction-sections", "-fdata-sections",
    "-w",  # the kernel's own files are compiled as they are; warnings are the kernel's
]
HOSTED_CFLAGS = ["-O2", "-g", "-Wall", "-Werror", "-std=gnu11"]
LDFLAGS = ["-static", "-Wl,--gc-sections"]
# objdump mnemonics that must not be left in the binary (pmusim_pre.h turns them into
# ud2 or harmless sequences)
FORBIDDEN = ("rdmsr", "wrmsr", "vmread", "vmwrite", "vmlaunch", "vmresume", "vmptrld",
             "vmclear", "vmxon", "vmxoff", "invept", "invvpid", "vmcall", "vmmcall", "hlt")
DATA_STUB_SIZE = 1 << 16
# the C library's, with the kernel's signatures (string.h): not stubbed
LIBC = frozenset({"memset", "memcpy", "memmove", "memcmp", "strlen", "strnlen", "strcmp",
                  "strncmp", "strcpy", "strncpy", "strchr", "strrchr", "strstr", "memchr"})


@dataclass
class PmuSim:
    path: Path
    kernel_files: dict[str, str]


def _kvm_headers(tree: Path) -> list[str]:
    root = tree / KVM_HEADER_DIR
    return sorted(str(p.relative_to(tree)) for p in root.rglob("*.h"))


def _kernel_inputs(tree: Path) -> dict[str, Path]:
    files = {}
    for rel in [*KERNEL_UNITS, PT_C, *_kvm_headers(tree)]:
        path = tree / rel
        if not path.is_file():
            raise HarnessError(f"pmusim: kernel tree {tree} has no {rel}")
        files[rel] = path
    return files


def _headers_digest(tree: Path) -> str:
    """One sha256 over the header trees (followed through symlinks: a patched tree is a
    view of symlinks into the pristine one, and must digest like the files it shows)."""
    digest = hashlib.sha256()
    paths = []
    for d in HEADER_DIRS:
        for root, dirs, files in os.walk(tree / d, followlinks=True):
            dirs.sort()
            paths += [Path(root) / f for f in files if f.endswith(".h")]
    paths += [tree / rel for rel in GEN_INPUTS if (tree / rel).is_file()]
    for path in sorted(paths, key=lambda p: str(p.relative_to(tree))):
        if path.is_file():
            digest.update(str(path.relative_to(tree)).encode() + b"\0")
            digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def kernel_digests(tree: Path) -> dict[str, str]:
    """relative path -> sha256 of each kernel file pmusim is built from (the compiled
    .c files, pt.c, the KVM-local headers), and "headers" (include/, arch/x86/include/)."""
    out = {rel: sha256_file(path) for rel, path in _kernel_inputs(tree).items()}
    out["headers"] = _headers_digest(tree)
    return out


def _shim_sources() -> list[Path]:
    return sorted([*PMUSIM.glob("*.c"), *PMUSIM.glob("*.h"), *SHIM.glob("*.h"), *kernel_env.shared_sources()])


def _ptcap(tree: Path) -> str:
    """perf's pt_caps[] and intel_pt_validate_cap() (vmx.c's PT checks call it), cut
    out of the tree's pt.c as they are: the rest of pt.c is the PT PMU driver."""
    src = (tree / PT_C).read_text()
    m = re.search(r"^#define PT_CAP\(.*?^EXPORT_SYMBOL_GPL\(intel_pt_validate_cap\);", src,
                  re.M | re.S)
    if not m or "intel_pt_validate_cap(u32 *caps" not in m.group(0):
        raise HarnessError(f"pmusim: {PT_C} has no pt_caps[] followed by intel_pt_validate_cap()")
    return "\n".join([f"// generated by harness/payloads/pebs_pt_build.py from {PT_C}",
                      "#include <linux/types.h>", "#include <linux/bits.h>",
                      "#include <linux/bitops.h>", "#include <linux/export.h>",
                      "#include <asm/processor.h>", "#include <asm/intel_pt.h>", "",
                      m.group(0), ""])


_RELOC = re.compile(r"^[0-9a-f]+\s+(R_X86_64_\w+)\s+([^\s+\-]+)", re.M)


def _stubs(objs: list[Path], undefined: set[str]) -> str:
    """Assembler definitions for the kernel symbols nobody defines: a symbol some
    object calls or jumps to (R_X86_64_PLT32) is a trap naming it; any other is
    zeroed, aligned storage."""
    called: set[str] = set()
    for obj in objs:
        out = _run(["objdump", "-r", str(obj)]).stdout
        for kind, sym in _RELOC.findall(out):
            if kind == "R_X86_64_PLT32" and sym in undefined:
                called.add(sym)
    lines = ["# generated by harness/payloads/pebs_pt_build.py: kernel symbols the compiled",
             "# KVM files reference and neither they nor the shim define"]
    for i, sym in enumerate(sorted(undefined)):
        if sym in called:
            lines += [f'.section .rodata.pmusim_trap_name_{i},"a"', f".Lname{i}:",
                      f'\t.asciz "{sym}"',
                      f'.section .text.pmusim_trap_{i},"ax",@progbits', f"\t.globl {sym}",
                      f"\t.type {sym}, @function", f"{sym}:",
                      f"\tleaq .Lname{i}(%rip), %rdi", "\tjmp pmusim_trap"]
        else:
            lines += [f'.section .bss.pmusim_data_{i},"aw",@nobits', "\t.balign 64",
                      f"\t.globl {sym}", f"\t.type {sym}, @object", f"{sym}:",
                      f"\t.zero {DATA_STUB_SIZE}", f"\t.size {sym}, {DATA_STUB_SIZE}"]
    return "\n".join(lines) + "\n"


def _undefined(objs: list[Path]) -> set[str]:
    defined, used = set(), set()
    for obj in objs:
        out = _run(["nm", str(obj)]).stdout
        for ln in out.splitlines():
            parts = ln.split()
            if len(parts) == 2 and parts[0] == "U":
                used.add(parts[1])
            elif len(parts) == 3 and parts[1] not in ("U", "w", "v"):
                defined.add(parts[2])
    return used - defined


def check_binary(path: Path) -> list[str]:
    """Privileged instructions found in an object or binary (objdump -d); [] when clean."""
    done = _run(["objdump", "-d", "--no-show-raw-insn", str(path)])
    found, func = [], "?"
    for ln in done.stdout.splitlines():
        m = re.match(r"^[0-9a-f]+ <(.*)>:$", ln)
        if m:
            func = m.group(1)
            continue
        parts = ln.split("\t")
        if len(parts) >= 2:
            words = parts[1].split()[:2]
            if any(w in FORBIDDEN for w in words):
                found.append(f"{func}: {parts[1].strip()}")
    return found


def build_pmusim(tree: Path) -> PmuSim:
    """pmusim built from kernel source `tree` (cached)."""
    tree = Path(tree).resolve()
    kernel_files = kernel_digests(tree)
    lib = payload_build.build_lib()
    digest = hashlib.sha256()
    digest.update(payload_build._compiler_version().encode())
    digest.update("\0".join(KERNEL_CFLAGS + HOSTED_CFLAGS + LDFLAGS).encode())
    digest.update(lib.parent.name.encode())
    digest.update(Path(__file__).read_bytes())
    for rel, sha in sorted(kernel_files.items()):
        digest.update(f"\0{rel}\0{sha}".encode())
    for path in _shim_sources():
        digest.update(b"\0" + str(path.relative_to(payload_build.GUESTS)).encode() + b"\0" + path.read_bytes())
    target = cache_root() / "payloads" / f"pmusim-{digest.hexdigest()[:16]}"
    with locked(target):
        digest = load_verified(target)
        if not digest:
            with tempfile.TemporaryDirectory(dir=target.parent, prefix=".build.pmusim.") as tmp:
                out = _compile(tree, Path(tmp), lib)
                digest = store_verified(target, out, 0o755)
    payload_build.note_built("pmusim", digest)
    return PmuSim(target, kernel_files)


def _compile(tree: Path, tmp: Path, lib: Path) -> Path:
    gen = tmp / "gen"
    kernel_env.generated(tree, gen, SHIM, "pmusim")
    kflags = KERNEL_CFLAGS + kernel_env.include_flags(tree, gen, SHIM, SHIM / "pmusim_pre.h", (KVM_HEADER_DIR,))
    (gen / "ptcap.c").write_text(_ptcap(tree))
    units: list[tuple[Path, list[str]]] = []
    for rel, bridge in KERNEL_UNITS.items():
        modname = "kvm-intel" if "/vmx/" in rel else "kvm"
        names = [f'-DKBUILD_MODNAME="{modname}"', f'-DKBUILD_BASENAME="{Path(rel).stem}"',
                 f'-DKBUILD_MODFILE="arch/x86/kvm/{modname}"']
        if bridge:
            macro = "PMUSIM_VMX_C" if rel.endswith("vmx.c") else "PMUSIM_X86_C"
            units.append((PMUSIM / bridge, names + [f'-D{macro}="{tree / rel}"']))
        else:
            units.append((tree / rel, names))
    units += [(PMUSIM / "kshim.c", ['-DKBUILD_MODNAME="pmusim"']),
              (gen / "ptcap.c", ['-DKBUILD_MODNAME="pmusim"'])]
    kobjs = []
    for n, (src, extra) in enumerate(units):
        obj = tmp / f"k{n}-{src.stem}.o"
        _run(["gcc", *kflags, *extra, "-c", "-o", str(obj), str(src)])
        kobjs.append(obj)
    main = tmp / "pmusim.o"
    _run(["gcc", *HOSTED_CFLAGS, f"-I{payload_build.LIB}", f"-I{SHIM}", "-c", "-o", str(main),
          str(PMUSIM / "pmusim.c")])
    # what the hosted side and libc provide is not the kernel's to stub
    hosted = {ln.split()[-1] for ln in _run(["nm", "--defined-only", str(main)]).stdout.splitlines()
              if len(ln.split()) == 3}
    for obj in kobjs:  # the kernel's objects, whole (libc's _exit has its own hlt)
        bad = check_binary(obj)
        if bad:
            raise HarnessError(f"pmusim: {obj.name} contains privileged instructions: "
                               + "; ".join(bad[:5]))
    undefined = _undefined(kobjs) - hosted - LIBC
    stubs = tmp / "stubs.S"
    stubs.write_text(_stubs(kobjs, undefined))
    sobj = tmp / "stubs.o"
    _run(["gcc", "-c", "-o", str(sobj), str(stubs)])
    out = tmp / "pmusim"
    _run(["gcc", *LDFLAGS, "-o", str(out), str(main), *map(str, kobjs), str(sobj),
          f"-L{lib.parent}", "-lkvmconf"])
    return out
