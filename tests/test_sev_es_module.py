"""kvmconf_vc.ko (the SEV-ES baseline triggers module): its catalogue, its ABI header and
its build against Debian's kernel headers."""
from __future__ import annotations

import re
import shutil
import struct
import subprocess

import pytest
from elftools.elf.elffile import ELFFile
from elftools.elf.relocation import RelocationSection

from harness.cache import cache_root
from harness.errors import HarnessError
from harness.kernel import KernelImage
from harness.payloads import sev_es_module as m

CONSTRAINT_REG = {"a": "rax", "b": "rbx", "c": "rcx", "d": "rdx", "S": "rsi", "D": "rdi"}
EX_TYPE_FAULT = 2


def _c_table() -> list[dict]:
    """The rows of KVC_OP_TABLE in kvmconf_vc.c."""
    text = m.MODULE_SOURCE.read_text()
    rows = []
    for line in text.splitlines():
        found = re.match(r'\s*KVC_OP\((\w+),\s*(\w+),\s*"((?:[^"\\]|\\.)*)",\s*([^,]+),\s*(\w+)'
                         r'((?:,\s*"\+\w"\s*\(\w+\))*)\)\s*\\?$', line)
        if found:
            num, name, insn, mask, clob, operands = found.groups()
            mask_regs = tuple(r.lower() for r in re.findall(r"KVC_R\((\w+)\)", mask))
            if not mask_regs:
                assert mask.strip() == "0", line
            constraints = re.findall(r'"\+(\w)"\s*\((\w+)\)', operands)
            rows.append({"num": num, "name": name, "insn": insn, "mask": mask_regs,
                         "clob": clob, "constraints": constraints})
    return rows


def test_c_table_matches_ops():
    rows = _c_table()
    assert [r["name"] for r in rows] == list(m.OPS)
    for row in rows:
        name = row["name"]
        regs = m.OPS[name][1]
        assert row["num"] == name.upper()
        assert row["mask"] == regs, name
        # Each operand is the explicit register constraint of its own variable.
        assert tuple(CONSTRAINT_REG[c] for c, _ in row["constraints"]) == regs, name
        assert all(CONSTRAINT_REG[c] == var for c, var in row["constraints"]), name
        # The only op without rax as an operand clobbers it (the fault path writes rax).
        assert row["clob"] == ("none" if "rax" in regs else "rax"), name
        if name.startswith(("in_", "out_")) and name.endswith("_imm"):
            assert f"${m.TESTDEV_PORT:#x}" in row["insn"], name
    assert len(m.OPS) <= m.MAX_OPS


def test_header_matches_ops():
    text = m.ABI_HEADER.read_text()
    enum = re.findall(r"^\s*(KVC_OP_\w+)(?: = 0)?,", text, flags=re.M)
    assert enum == [f"KVC_OP_{name.upper()}" for name in m.OPS]
    # The catalogue comment: name, bytes, [registers].
    documented = {}
    for found in re.finditer(r"^ \*  (\w+)\s+((?:[0-9a-f]{2} )*[0-9a-f]{2})\s+\[([a-z0-9 ]*)\]",
                             text, flags=re.M):
        documented[found.group(1)] = (found.group(2).replace(" ", ""),
                                      tuple(found.group(3).split()))
    assert documented == m.OPS


def test_header_abi_numbers(tmp_path):
    """Struct sizes, offsets and ioctl numbers of kvc_abi.h, compiled as user space."""
    if shutil.which("gcc") is None:
        pytest.skip("gcc not found")
    source = tmp_path / "abi.c"
    source.write_text("""
#include <stdio.h>
#include <stddef.h>
#include "kvc_abi.h"
int main(void) {
    printf("%zu %zu %zu %zu %lu %lu %d %zu %zu %zu %zu %d %d\\n",
           sizeof(struct kvc_step), sizeof(struct kvc_run), sizeof(struct kvc_op_info),
           sizeof(struct kvc_ops), (unsigned long)KVC_RUN, (unsigned long)KVC_OPS, KVC_OP_COUNT,
           offsetof(struct kvc_step, regs), offsetof(struct kvc_step, vector),
           offsetof(struct kvc_op_info, len), offsetof(struct kvc_op_info, regs),
           KVC_MAX_STEPS, KVC_MAX_OPS);
    return 0;
}
""")
    subprocess.run(["gcc", "-Wall", "-Werror", f"-I{m.ABI_HEADER.parent}", "-o",
                    str(tmp_path / "abi"), str(source)], check=True, timeout=120)
    out = subprocess.run([str(tmp_path / "abi")], capture_output=True, text=True, check=True,
                         timeout=30).stdout.split()
    assert [int(v) for v in out] == [m.STEP_SIZE, m.RUN_SIZE, m.OP_INFO_SIZE, m.OPS_SIZE,
                                     m.KVC_RUN, m.KVC_OPS, len(m.OPS), 8, 136, 31, 32,
                                     m.MAX_STEPS, m.MAX_OPS]
    assert m.regs_mask(("rax", "rcx", "rdx")) == 0b1101


# --- kernels without modules -------------------------------------------------------

def _kernel(tmp_path, config_text: str | None, kind: str = "built") -> KernelImage:
    image = tmp_path / "bzImage"
    image.write_bytes(b"")
    if config_text is not None:
        (tmp_path / "config").write_text(config_text)
    return KernelImage(kind=kind, version="6.1.0-kvmconf", bzimage=image, sha256="0" * 64)


@pytest.mark.parametrize("text", ["CONFIG_X86_64=y\n",
                                  "CONFIG_X86_64=y\n# CONFIG_MODULES is not set\n"])
def test_modules_unsupported(tmp_path, text):
    kernel = _kernel(tmp_path, text)
    with pytest.raises(m.ModulesUnsupported) as caught:
        m.build_module(kernel)
    message = str(caught.value)
    assert isinstance(caught.value, HarnessError)
    assert "6.1.0-kvmconf" in message
    assert f"CONFIG_MODULES is not set (config {tmp_path / 'config'})" in message


def test_non_debian_kernel_with_modules_is_an_error(tmp_path):
    kernel = _kernel(tmp_path, "CONFIG_MODULES=y\n")
    with pytest.raises(HarnessError) as caught:
        m.build_module(kernel)
    assert not isinstance(caught.value, m.ModulesUnsupported)
    assert "Debian" in str(caught.value)


# --- the real build against Debian's headers ---------------------------------------

@pytest.fixture(scope="module")
def debian_built():
    from harness.kernel import debian
    try:
        kernel = debian.fetch()
    except HarnessError as exc:
        pytest.skip(f"apt cannot fetch the Debian kernel: {exc}")
    try:
        return kernel, m.build_module(kernel)
    except m.HeadersUnavailable as exc:
        pytest.skip(f"apt cannot fetch the kernel headers: {exc}")


def test_build_against_debian_headers(debian_built):
    kernel, ko = debian_built
    assert ko.name == "kvmconf_vc.ko"
    assert ko.parent.parent == cache_root() / "sev_es-module"
    info = m.modinfo(ko)
    assert info["vermagic"].startswith(kernel.version + " ")
    assert info["license"] == "GPL"
    assert m.build_module(kernel) == ko          # cached
    with pytest.raises(HarnessError, match=rf"vermagic '{re.escape(kernel.version)} .*' does not "
                                           r"start with the kernel's release '9\.9\.9-1-amd64'"):
        m.check_vermagic(ko, KernelImage(kind="debian", version="9.9.9-1-amd64",
                                         bzimage=kernel.bzimage, sha256=kernel.sha256))


def test_built_bytes_and_extable(debian_built):
    """The bytes between each op's labels are OPS's, and each op has one EX_TYPE_FAULT
    exception-table entry from its start label to a fixup past its end label."""
    _, ko = debian_built
    assert {name: data.hex() for name, data in m.op_bytes(ko).items()} == \
        {name: hexbytes for name, (hexbytes, _) in m.OPS.items()}
    with open(ko, "rb") as f:
        elf = ELFFile(f)
        symtab = elf.get_section_by_name(".symtab")
        text_index = next(i for i, s in enumerate(elf.iter_sections()) if s.name == ".text")
        labels = {}
        for sym in symtab.iter_symbols():
            found = re.fullmatch(r"kvc_(\w+)_(start|end)", sym.name)
            if found:
                assert sym["st_shndx"] == text_index
                labels[(found.group(1), found.group(2))] = sym["st_value"]
        table = elf.get_section_by_name("__ex_table")
        data = table.data()
        assert len(data) == 12 * len(m.OPS)
        rela = next(s for s in elf.iter_sections() if isinstance(s, RelocationSection)
                    and elf.get_section(s["sh_info"]).name == "__ex_table")
        targets = {}
        for rel in rela.iter_relocations():
            sym = symtab.get_symbol(rel["r_info_sym"])
            assert sym["st_shndx"] == text_index
            targets[rel["r_offset"]] = sym["st_value"] + rel["r_addend"]
    entries = {}
    for i in range(len(m.OPS)):
        assert struct.unpack_from("<i", data, 12 * i + 8)[0] == EX_TYPE_FAULT
        entries[targets[12 * i]] = targets[12 * i + 4]
    for name in m.OPS:
        start, end = labels[(name, "start")], labels[(name, "end")]
        assert start in entries, name
        # Resuming at the end label would not tell a fault from rax == trap number.
        assert end < entries[start] <= end + 16, name


def test_build_failure_names_make_and_tail(debian_built, tmp_path, monkeypatch):
    broken = tmp_path / "kvmconf_vc.c"
    broken.write_text(m.MODULE_SOURCE.read_text() + "\n#error kvmconf_deliberately_broken\n")
    monkeypatch.setattr(m, "MODULE_SOURCE", broken)
    monkeypatch.setattr(m, "BASELINE", tmp_path)
    monkeypatch.setattr(m, "SOURCES", (broken,))
    kernel, _ = debian_built
    with pytest.raises(HarnessError) as caught:
        m.build_module(kernel)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("make -C ")
    assert "kvmconf_deliberately_broken" in message
