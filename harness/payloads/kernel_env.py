"""What compiling kernel files into a user-space program needs from a kernel build, shared
by the programs that do it (vcsim: harness/payloads/sev_es_build.py; pmusim:
harness/payloads/pebs_pt_build.py): the include/generated headers a build would make
(the shared configuration in guests/lib/kernel/ plus a program's shim/autoconf_extra.h),
the include flags, and a subprocess runner with a deadline and one-line errors."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

from harness.errors import HarnessError
from harness.payloads import build as payload_build

KERNEL_SHIM = payload_build.LIB / "kernel"
TIMEOUT_S = 600


def shared_sources() -> list[Path]:
    """The shared headers (for a program's cache key)."""
    return sorted(KERNEL_SHIM.glob("*.h"))


def run(what: str, argv: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT_S, cwd=cwd)
    except subprocess.TimeoutExpired:
        raise HarnessError(f"{what}: {Path(argv[0]).name} timed out after {TIMEOUT_S} s ({argv[-1]})") from None
    except FileNotFoundError:
        raise HarnessError(f"{what}: {argv[0]} not found") from None
    if done.returncode != 0:
        lines = [ln for ln in done.stderr.splitlines() if "error" in ln.lower()]
        lines = (lines or done.stderr.strip().splitlines() or ["(no output)"])[-5:]
        raise HarnessError(f"{what}: {Path(argv[0]).name} failed: " + " | ".join(lines))
    return done


def _kbuild_list(path: Path) -> list[str]:
    """The headers a Kbuild file names as mandatory-y / generic-y."""
    if not path.is_file():
        return []
    return re.findall(r"^(?:mandatory|generic)-y\s*\+=\s*(\S+\.h)\s*$", path.read_text(), re.M)


def generated(tree: Path, gen: Path, shim: Path, program: str) -> None:
    """The include/generated and arch/x86/include/generated a kernel build makes (written
    into the private build folder `gen` only); `shim` may hold an autoconf_extra.h."""
    inc = gen / "include" / "generated"
    arch = gen / "arch/x86/include/generated"
    for d in (inc, arch / "asm", arch / "uapi/asm"):
        d.mkdir(parents=True, exist_ok=True)
    extra = shim / "autoconf_extra.h"
    (inc / "autoconf.h").write_bytes((KERNEL_SHIM / "autoconf.h").read_bytes()
                                     + (extra.read_bytes() if extra.is_file() else b""))
    for name in ("bounds.h", "timeconst.h"):
        (inc / name).write_bytes((KERNEL_SHIM / name).read_bytes())
    # asm-generic wrappers (scripts/Makefile.asm-generic)
    for kbuild, own, dest in (
            (tree / "include/uapi/asm-generic/Kbuild", tree / "arch/x86/include/uapi/asm", arch / "uapi/asm"),
            (tree / "include/asm-generic/Kbuild", tree / "arch/x86/include/asm", arch / "asm"),
            (tree / "arch/x86/include/asm/Kbuild", tree / "arch/x86/include/asm", arch / "asm")):
        for h in _kbuild_list(kbuild):
            if not (own / h).exists():
                (dest / h).write_text(f"#include <asm-generic/{h}>\n")
    # syscall numbers (arch/x86/entry/syscalls/Makefile, 64-bit ABI only)
    lines = ["#ifndef _UAPI_ASM_UNISTD_64_H", "#define _UAPI_ASM_UNISTD_64_H"]
    tbl = tree / "arch/x86/entry/syscalls/syscall_64.tbl"
    if tbl.is_file():
        for ln in tbl.read_text().splitlines():
            f = ln.split()
            if len(f) >= 3 and not ln.startswith("#") and f[1] in ("common", "64"):
                lines.append(f"#define __NR_{f[2]} {f[0]}")
    lines.append("#endif")
    (arch / "uapi/asm/unistd_64.h").write_text("\n".join(lines) + "\n")
    for name in ("unistd_64_x32.h", "unistd_32_ia32.h"):
        (arch / "asm" / name).write_text(f"/* {program}: 64-bit ABI only */\n")


def include_flags(tree: Path, gen: Path, shim: Path, pre_header: Path, extra_dirs: tuple[str, ...] = ()) -> list[str]:
    """The kernel build's include order, with the program's shim before the generated
    headers and `pre_header` included first in every unit after the kernel's own two."""
    gcc_inc = run("gcc include folder", ["gcc", "-print-file-name=include"]).stdout.strip()
    return [
        "-isystem", gcc_inc,
        f"-I{tree}/arch/x86/include", f"-I{gen}/arch/x86/include/generated",
        f"-I{tree}/include", f"-I{tree}/arch/x86/include/uapi",
        f"-I{gen}/arch/x86/include/generated/uapi", f"-I{tree}/include/uapi",
        f"-I{gen}/include/generated/uapi", f"-I{gen}/include", f"-I{shim}", f"-I{gen}",
        *(f"-I{tree}/{d}" for d in extra_dirs),
        "-include", f"{tree}/include/linux/kconfig.h",
        "-include", f"{tree}/include/linux/compiler_types.h",
        "-include", str(pre_header),
    ]
