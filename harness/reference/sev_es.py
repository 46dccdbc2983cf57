"""Reference model of the SEV-ES guest's #VC handling and GHCB protocol (Linux 6.1).

`predict(script, profile)` returns the events the payload `guests/sev_es/vcsim`
prints for an op-script (docs/sev-es-suite.md), without the "script" tag and
without the "done" marker.  The script is normalised by
`harness.payloads.sev_es.normalise` (every key present).

The model mirrors Debian's linux-source-6.1 (6.1.192): arch/x86/kernel/sev.c,
arch/x86/kernel/sev-shared.c (included by sev.c), arch/x86/lib/insn.c,
arch/x86/lib/insn-eval.c, arch/x86/include/asm/svm.h (struct ghcb and its
accessors), sev-common.h (MSR protocol) and sev.h.  Every branch that decides
an observable outcome calls `hit()` with a rule id `<file>:<function>:<branch>`
(harness/reference/rules.py) naming the function it mirrors; the model
hypervisor's branches are named after vcsim's table hypervisor (`hv.c`), which
answers as KVM's arch/x86/kvm/svm/sev.c does.

Profiles:
  "6.1"           what the 6.1 code does, deviations from the instruction set
                  included (see DEVIATIONS);
  "architectural" the same handler with each deviation replaced by what the
                  SDM/APM says the instruction does (the register, memory and
                  I/O effects of the emulated instruction), so a trace that
                  matches "6.1" and not "architectural" exhibits a deviation
                  (`findings`).

Machine facts the payload fixes (docs/sev-es-suite.md, "What vcsim fixes"):
the per-CPU GHCB is at guest-physical GHCB_PA (0x7ffe000); every script starts
with a zeroed GHCB and runtime data (alloc_runtime_data() + init_ghcb(): the
cached DR7 is 0), then an untraced sev_es_negotiate_protocol() against the
script's sev_info (ghcb_version min(max, 2), 0 when it fails); no SNP CPUID
table (snp_cpuid() returns -EOPNOTSUPP); x86_platform.hyper = kvm.c's hcall
hooks when the script has `kvm` (the default); page-table entries without a
C-bit (sme_me_mask 0); a user task's I/O bitmap only with `ioperm`
[first, count] (ksys_ioperm(first, count, 1): those ports permitted, all
others and any bit past 65535 denied); the trigger's bytes followed by 0x90 up to 15 bytes; a
vc_read_mem()/vc_write_mem() access to an MMIO page is a nested #VC (a
synthetic mov, exit 0x400) handled by the same code while the outer #VC holds
the GHCB.  A nested #VC that does not end in ES_OK is outside the model
(ModelError): the generator never injects faults into one.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

from harness.reference.rules import hit

PROFILES: tuple[str, ...] = ("6.1", "architectural")

U64 = (1 << 64) - 1
U32 = (1 << 32) - 1
PAGE = 4096
TASK_SIZE_MAX = (1 << 47) - PAGE
VSYSCALL_PAGE = 0xFFFFFFFFFF600000
RETRY_LIMIT = 64                    # vcsim: #VC deliveries per trigger
MAX_INSN_SIZE = 15

# ---------------------------------------------------------------- the GHCB page
# arch/x86/include/asm/svm.h: struct ghcb_save_area, struct ghcb
GHCB_PA = 0x7FFE000                 # vcsim: __pa() of the per-CPU GHCB page (VCSIM_GHCB_GPA)
SHARED_BUFFER = 0x800
SHARED_BUF_SIZE = 2032              # GHCB_SHARED_BUF_SIZE
PROTOCOL_VERSION_OFF = 0xFFA
GHCB_USAGE_OFF = 0xFFC
VALID_BITMAP_OFF = 0x3F0
X87_STATE_GPA_OFF = 0x400

GPRS = ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rsp", "rbp",
        "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15")
FIELDS: dict[str, tuple[int, int]] = {
    "cpl": (0x0CB, 1), "xss": (0x140, 8), "dr7": (0x160, 8), "rip": (0x178, 8),
    "rsp": (0x1D8, 8), "rax": (0x1F8, 8), "rcx": (0x308, 8), "rdx": (0x310, 8),
    "rbx": (0x318, 8), "rbp": (0x328, 8), "rsi": (0x330, 8), "rdi": (0x338, 8),
    **{f"r{n}": (0x340 + 8 * (n - 8), 8) for n in range(8, 16)},
    "sw_exit_code": (0x390, 8), "sw_exit_info_1": (0x398, 8), "sw_exit_info_2": (0x3A0, 8),
    "sw_scratch": (0x3A8, 8), "xcr0": (0x3E8, 8),
}
# the registers a vmgexit event shows (when valid), in the event's order
EVENT_REGS = ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "r8", "r9", "r10", "r11", "r12",
              "r13", "r14", "r15", "rsp", "rbp")


def bitmap_idx(name: str) -> int:
    """GHCB_BITMAP_IDX(field): offsetof(struct ghcb_save_area, field) / 8."""
    return FIELDS[name][0] // 8


class Ghcb:
    """The 4096-byte GHCB page, field accessors as DEFINE_GHCB_ACCESSORS."""

    def __init__(self, page: bytes | None = None):
        self.page = bytearray(page if page is not None else bytes(PAGE))
        assert len(self.page) == PAGE

    def encode(self) -> bytes:
        return bytes(self.page)

    @classmethod
    def decode(cls, page: bytes) -> "Ghcb":
        if len(page) != PAGE:  # not a rule: argument check
            raise ValueError(f"a GHCB page is {PAGE} bytes, not {len(page)}")
        return cls(page)

    def copy(self) -> "Ghcb":
        return Ghcb(bytes(self.page))

    def raw(self, name: str) -> int:
        off, size = FIELDS[name]
        return int.from_bytes(self.page[off:off + size], "little")

    def put(self, name: str, value: int) -> None:
        """Store without touching the bitmap (a plain `ghcb->save.x = v`)."""
        off, size = FIELDS[name]
        self.page[off:off + size] = (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little")

    def set(self, name: str, value: int) -> None:
        """ghcb_set_<field>(): store and mark valid."""
        self.put(name, value)
        self.set_valid(name)

    def set_valid(self, name: str) -> None:
        i = bitmap_idx(name)
        self.page[VALID_BITMAP_OFF + i // 8] |= 1 << (i % 8)

    def clear_valid(self, name: str) -> None:
        i = bitmap_idx(name)
        self.page[VALID_BITMAP_OFF + i // 8] &= ~(1 << (i % 8)) & 0xFF

    def is_valid(self, name: str) -> bool:
        """ghcb_<field>_is_valid()."""
        i = bitmap_idx(name)
        return bool(self.page[VALID_BITMAP_OFF + i // 8] >> (i % 8) & 1)

    def words(self) -> list[int]:
        b = self.page[VALID_BITMAP_OFF:VALID_BITMAP_OFF + 16]
        return [int.from_bytes(b[:8], "little"), int.from_bytes(b[8:], "little")]

    def invalidate(self) -> None:
        # sev-shared.c: vc_ghcb_invalidate(): sw_exit_code = 0, bitmap cleared
        self.put("sw_exit_code", 0)
        self.page[VALID_BITMAP_OFF:VALID_BITMAP_OFF + 16] = bytes(16)

    @property
    def protocol_version(self) -> int:
        return int.from_bytes(self.page[PROTOCOL_VERSION_OFF:PROTOCOL_VERSION_OFF + 2], "little")

    @protocol_version.setter
    def protocol_version(self, v: int) -> None:
        self.page[PROTOCOL_VERSION_OFF:PROTOCOL_VERSION_OFF + 2] = (v & 0xFFFF).to_bytes(2, "little")

    @property
    def usage(self) -> int:
        return int.from_bytes(self.page[GHCB_USAGE_OFF:GHCB_USAGE_OFF + 4], "little")

    @usage.setter
    def usage(self, v: int) -> None:
        self.page[GHCB_USAGE_OFF:GHCB_USAGE_OFF + 4] = (v & U32).to_bytes(4, "little")

    def buffer(self, n: int, off: int = 0) -> bytes:
        return bytes(self.page[SHARED_BUFFER + off:SHARED_BUFFER + off + n])

    def write_buffer(self, data: bytes, off: int = 0) -> None:
        assert off + len(data) <= SHARED_BUF_SIZE
        self.page[SHARED_BUFFER + off:SHARED_BUFFER + off + len(data)] = data


def valid_words(*names: str) -> list[int]:
    """The (w0, w1) bitmap words with exactly `names` valid."""
    g = Ghcb()
    for n in names:
        g.set_valid(n)
    return g.words()


# ---------------------------------------------------------------- MSR protocol
# arch/x86/include/asm/sev-common.h
GHCB_MSR_INFO_MASK = 0xFFF
GHCB_MSR_SEV_INFO_RESP = 0x001
GHCB_MSR_SEV_INFO_REQ = 0x002
GHCB_MSR_CPUID_REQ = 0x004
GHCB_MSR_CPUID_RESP = 0x005
GHCB_MSR_TERM_REQ = 0x100
GHCB_PROTOCOL_MIN, GHCB_PROTOCOL_MAX = 1, 2          # sev.h (6.1: version 2 for SNP)
GHCB_DEFAULT_USAGE = 0
SEV_TERM_SET_GEN, GHCB_SEV_ES_GEN_REQ, GHCB_SEV_ES_PROT_UNSUPPORTED = 0, 0, 1
CPUID_REG = {"eax": 0, "ebx": 1, "ecx": 2, "edx": 3}


def sev_info(max_v: int, min_v: int, cbit: int) -> int:
    """GHCB_MSR_SEV_INFO(max, min, cbit): the hypervisor's SEV_INFO response."""
    return ((max_v & 0xFFFF) << 48) | ((min_v & 0xFFFF) << 32) | ((cbit & 0xFF) << 24) | GHCB_MSR_SEV_INFO_RESP


def msr_info(v: int) -> int:
    return v & GHCB_MSR_INFO_MASK


def proto_max(v: int) -> int:
    return (v >> 48) & 0xFFFF


def proto_min(v: int) -> int:
    return (v >> 32) & 0xFFFF


def cpuid_req(fn: int, reg: int) -> int:
    """GHCB_CPUID_REQ(fn, reg)."""
    return GHCB_MSR_CPUID_REQ | ((reg & 3) << 30) | ((fn & U32) << 32)


def cpuid_resp(value: int, request: int) -> int:
    """KVM: the value in [63:32], GHCBInfo 0x005, the request's other bits kept."""
    return ((value & U32) << 32) | (request & 0xFFFFF000 & U32) | GHCB_MSR_CPUID_RESP


def term_req(reason_set: int, reason: int) -> int:
    """GHCB_MSR_TERM_REQ | GHCB_SEV_TERM_REASON(set, reason)."""
    return GHCB_MSR_TERM_REQ | ((reason_set & 0xF) << 12) | ((reason & 0xFF) << 16)


# ---------------------------------------------------------------- constants
SVM_EXIT_EXCP_BASE, SVM_EXIT_LAST_EXCP = 0x40, 0x5F
EXIT = {"read_dr7": 0x27, "write_dr7": 0x37, "db": 0x41, "ac": 0x51, "rdtsc": 0x6E, "rdpmc": 0x6F,
        "cpuid": 0x72, "invd": 0x76, "ioio": 0x7B, "msr": 0x7C, "vmmcall": 0x81, "rdtscp": 0x87,
        "wbinvd": 0x89, "monitor": 0x8A, "mwait": 0x8B, "npf": 0x400,
        "mmio_read": 0x80000001, "mmio_write": 0x80000002}
X86_TRAP_DB, X86_TRAP_UD, X86_TRAP_GP, X86_TRAP_PF, X86_TRAP_AC = 1, 6, 13, 14, 17
X86_PF_PROT, X86_PF_WRITE, X86_PF_USER, X86_PF_INSTR = 1, 2, 4, 16
# svm.h: SVM_EVTINJ_VALID is (1 << 31), an int: as a u64 mask it is 0xffffffff80000000
SVM_EVTINJ_VALID_MASK = (-(1 << 31)) & U64
SVM_EVTINJ_VALID_ERR = 1 << 11
SVM_EVTINJ_TYPE_MASK, SVM_EVTINJ_TYPE_EXEPT = 7 << 8, 3 << 8
GP_REPLY = (1, 0x8000030D)          # KVM: info1 1, #GP exception event, no error code
DR7_RESET_VALUE = 0x400
KVM_ENOSYS, KVM_EPERM = 1000, 1

ES_OK, ES_UNSUPPORTED, ES_VMM_ERROR, ES_DECODE_FAILED, ES_EXCEPTION, ES_RETRY = (
    "ok", "unsupported", "vmm-error", "decode-failed", "exception", "retry")

# ---------------------------------------------------------------- deviations
DEVIATIONS: dict[str, dict[str, str]] = {
    "in-al-ax-whole-rax": {
        "title": "IN AL / IN AX replace the whole RAX with the zero-extended port data",
        "mechanism": "arch/x86/kernel/sev-shared.c: vc_handle_ioio(): regs->ax = "
                     "lower_bits(ghcb->save.rax, bits) for every width; hardware writes only AL/AX "
                     "and keeps RAX[63:8] / RAX[63:16]"},
    "movzx-movsx-32-upper-kept": {
        "title": "MMIO MOVZX/MOVSX with a 32-bit destination keep bits 63:32 of the register",
        "mechanism": "arch/x86/kernel/sev.c: vc_handle_mmio(): MMIO_READ_ZERO_EXTEND / "
                     "MMIO_READ_SIGN_EXTEND memset() only insn->opnd_bytes (4) bytes of the 8-byte "
                     "pt_regs slot; a 32-bit register write zero-extends to 64 bits on hardware"},
    "high-byte-regs": {
        "title": "MMIO byte moves with AH/CH/DH/BH use the low byte of RSP/RBP/RSI/RDI instead",
        "mechanism": "arch/x86/lib/insn-eval.c: get_reg_offset(REG_TYPE_REG) maps ModRM.reg 4-7 "
                     "to pt_regs sp/bp/si/di whether or not a REX prefix is present; without REX "
                     "the 8-bit registers 4-7 are AH, CH, DH, BH (bits 15:8 of RAX..RBX)"},
    "rexw-c7-imm-upper-bytes": {
        "title": "MMIO `REX.W C7 /0 imm32` sends the decoder's bookkeeping bytes, not the "
                 "sign extension, as bytes 4-7",
        "mechanism": "arch/x86/kernel/sev.c: vc_handle_mmio(): MMIO_WRITE_IMM memcpy()s "
                     "bytes = 8 from insn->immediate1.bytes, a 4-byte field of struct insn_field "
                     "followed by `got` (1), `nbytes` (4) and two padding bytes"},
    "nonrep-string-io-retry": {
        "title": "INS/OUTS without REP and RCX != 0 return ES_RETRY: the instruction is "
                 "executed again and again",
        "mechanism": "arch/x86/kernel/sev-shared.c: vc_handle_ioio(): ret = regs->cx ? ES_RETRY "
                     ": ES_OK also when IOIO_REP is clear (RCX is not a count then)"},
    "rdmsr-no-valid-check": {
        "title": "RDMSR copies RAX/RDX from the GHCB without checking their valid bits",
        "mechanism": "arch/x86/kernel/sev.c: vc_handle_msr(): regs->ax = ghcb->save.rax, "
                     "regs->dx = ghcb->save.rdx after ES_OK with no ghcb_rax_is_valid()/"
                     "ghcb_rdx_is_valid(), unlike CPUID, RDTSC(P) and RDPMC"},
    "hv-upper-bits-copied": {
        "title": "CPUID/RDMSR/RDTSC(P)/RDPMC copy the hypervisor's 64-bit values into "
                 "RAX..RDX; the instructions write 32-bit values zero-extended",
        "mechanism": "arch/x86/kernel/sev-shared.c: vc_handle_cpuid(), vc_handle_rdtsc(); "
                     "arch/x86/kernel/sev.c: vc_handle_msr(), vc_handle_rdpmc(): "
                     "regs->ax = ghcb->save.rax etc. without truncation to 32 bits"},
    "string-seg-override-ignored": {
        "title": "OUTS and MMIO MOVS ignore an FS/GS segment override of the source",
        "mechanism": "arch/x86/kernel/sev-shared.c: vc_handle_ioio() reads OUTS data at "
                     "insn_get_seg_base(ES) + RSI and reports IOIO_SEG_DS; arch/x86/kernel/sev.c: "
                     "vc_handle_mmio_movs() reads at the DS base; in 64-bit mode an FS or GS "
                     "prefix selects that segment's base for the source"},
    "segment-prefix-counted-twice": {
        "title": "MMIO with three distinct legacy prefixes, the last a segment override, is "
                 "refused as having two overrides (ES_UNSUPPORTED)",
        "mechanism": "arch/x86/lib/insn.c: insn_get_prefixes() stores the last prefix byte in "
                     "prefixes.bytes[3]; with three distinct prefixes it is also in bytes[2], so "
                     "arch/x86/lib/insn-eval.c: get_seg_reg_override_idx() counts the override "
                     "twice (num_overrides > 1: -EINVAL) and insn_get_addr_ref() returns -1"},
    "rep-count-u32": {
        "title": "REP INS/OUTS take the count from ECX, not RCX",
        "mechanism": "arch/x86/kernel/sev-shared.c: vc_handle_ioio(): `unsigned int op_count = "
                     "regs->cx` truncates RCX; with RCX >= 2^32 a pass may move 0 elements and "
                     "the instruction retries without end"},
    "df-string-element-offset": {
        "title": "INS/OUTS with DF=1 address element i at +2^32 - i*size, not -i*size",
        "mechanism": "arch/x86/kernel/sev-shared.c: vc_insn_string_read()/vc_insn_string_write(): "
                     "`src + (i * data_size * b)` with int i, b = -1 and unsigned int data_size "
                     "is an unsigned int product, zero-extended when added to the pointer"},
}
ALL_FIXED = frozenset(DEVIATIONS)
# vcsim's page table: no C-bit (sme_me_mask 0, so _PAGE_ENC is 0 in every PTE)
PTE_ENC = 0

# (insn_get_seg_base() cannot fail in 64-bit mode and get_regno() cannot fail for a
# 64-bit instruction: vc_handle_mmio_movs()'s #GP and the NULL reg_data paths are
# not modelled)
UNREACHABLE: dict[str, str] = {
    "insn-eval.c:check_seg_overrides:string-rdi-no-override": (
        "insn_get_addr_ref() runs only for the non-string MMIO forms (vc_do_mmio(), the "
        "decode event); MOVS takes RSI/RDI directly and INS/OUTS never decode an address"),
    "sev.c:vc_slow_virt_to_phys:encrypted-unsupported": (
        "vcsim's PTEs carry no C-bit: sme_me_mask is 0, so _PAGE_ENC is 0 and the "
        "WARN_ON_ONCE(pte_val(*pte) & _PAGE_ENC) check never fires"),
}


_ARCH = ("the 'architectural' profile's rule (the instruction's documented effect in place of a "
         "6.1 deviation); rule coverage is computed for the expected profile, 6.1, which never "
         "takes it")
UNREACHABLE.update({rule: _ARCH for rule in (
    "sev-shared.c:vc_handle_cpuid:architectural-zero-extend",
    "insn-eval.c:get_reg_offset:architectural-high-byte",
    "sev-shared.c:vc_handle_ioio:architectural-in-keeps-upper",
    "sev-shared.c:vc_handle_ioio:architectural-outs-source-base",
    "sev-shared.c:vc_handle_ioio:architectural-rcx-count",
    "sev-shared.c:vc_handle_ioio:architectural-single-done",
    "sev-shared.c:vc_insn_string_read:architectural-backwards",
    "sev-shared.c:vc_ioio_exitinfo:architectural-outs-segment",
    "sev.c:vc_do_mmio:architectural-one-segment-prefix",
    "sev.c:vc_handle_mmio:architectural-32-zero-extend",
    "sev.c:vc_handle_mmio:architectural-imm-sign-extended",
    "sev.c:vc_handle_mmio_movs:architectural-source-segment",
    "sev.c:vc_handle_msr:architectural-invalid-vmm-error",
)})


class ModelError(ValueError):
    """A script the model does not cover (an ERROR, not a divergence)."""


# ---------------------------------------------------------------- the decoder
# arch/x86/lib/insn.c + the inat tables generated from x86-opcode-map.txt, for
# the opcodes the model covers (MODEL_OPCODES); anything else raises ModelError.
LEGACY_PREFIXES = {0x26: "es", 0x2E: "cs", 0x36: "ss", 0x3E: "ds", 0x64: "fs", 0x65: "gs",
                   0x66: "opnd", 0x67: "addr", 0xF0: "lock", 0xF2: "repne", 0xF3: "rep"}


def _one_byte_table() -> dict[int, tuple[bool, str]]:  # not a rule: opcode-map data
    t: dict[int, tuple[bool, str]] = {}
    for base in range(0x00, 0x40, 8):              # ALU Eb,Gb .. AL,Ib / eAX,Iz
        for k in range(4):
            t[base + k] = (True, "")
        t[base + 4] = (False, "b")
        t[base + 5] = (False, "z")
    for op in range(0x50, 0x60):                   # PUSH/POP r64
        t[op] = (False, "")
    t.update({0x63: (True, ""), 0x8C: (True, ""), 0x8E: (True, ""), 0x68: (False, "z"), 0x69: (True, "z"), 0x6A: (False, "b"),
              0x6B: (True, "b"), 0x80: (True, "b"), 0x81: (True, "z"), 0x83: (True, "b"),
              0xA8: (False, "b"), 0xA9: (False, "z"), 0xC0: (True, "b"), 0xC1: (True, "b"),
              0xC2: (False, "w"), 0xC6: (True, "b"), 0xC7: (True, "z"), 0xCD: (False, "b"),
              0xE4: (False, "b"), 0xE5: (False, "b"), 0xE6: (False, "b"), 0xE7: (False, "b"),
              0xE8: (False, "z"), 0xE9: (False, "z"), 0xEB: (False, "b")})
    for op in list(range(0x6C, 0x70)) + list(range(0x90, 0x9A)) + list(range(0x9B, 0xA0)) \
            + list(range(0xA4, 0xA8)) + list(range(0xAA, 0xB0)) \
            + [0xC3, 0xC9, 0xCB, 0xCC, 0xCF, 0xD7, 0xEC, 0xED, 0xEE, 0xEF, 0xF1, 0xF4, 0xF5] \
            + list(range(0xF8, 0xFE)):
        t[op] = (False, "")
    for op in list(range(0x84, 0x90)) + list(range(0xD0, 0xD4)) + list(range(0xD8, 0xE0)) \
            + [0xFE, 0xFF]:
        t[op] = (True, "")
    for op in range(0x70, 0x80):
        t[op] = (False, "b")
    for op in range(0xB0, 0xB8):
        t[op] = (False, "b")
    for op in range(0xB8, 0xC0):
        t[op] = (False, "v")
    return t


ONE_BYTE = _one_byte_table()
TWO_BYTE: dict[int, tuple[bool, str]] = {
    0x01: (True, ""), 0x05: (False, ""), 0x06: (False, ""), 0x08: (False, ""), 0x09: (False, ""),
    0x0B: (False, ""), 0x1F: (True, ""), 0x20: (True, ""), 0x21: (True, ""), 0x22: (True, ""),
    0x23: (True, ""),
    0x30: (False, ""), 0x31: (False, ""), 0x32: (False, ""), 0x33: (False, ""), 0xA2: (False, ""),
    0xA3: (True, ""), 0xAB: (True, ""), 0xAF: (True, ""), 0xB3: (True, ""), 0xBA: (True, "b"),
    0xBB: (True, ""), 0xB6: (True, ""), 0xB7: (True, ""), 0xBE: (True, ""), 0xBF: (True, ""),
    **{op: (True, "") for op in range(0x40, 0x50)}, **{op: (False, "z") for op in range(0x80, 0x90)},
    **{op: (True, "") for op in range(0x90, 0xA0)}, **{op: (False, "") for op in range(0xC8, 0xD0)},
}
REX = range(0x40, 0x50)
# inat: C5 VEX2, C4 VEX3, 62 EVEX (prefix bytes after the escape byte's position)
VEX_PREFIXES = {0xC5: 2, 0xC4: 3, 0x62: 4}
# inat_get_avx_attribute(opcode, m, pp) for the few VEX/EVEX forms the suite runs, checked
# against the tree's generated inat-tables.c through vcsim's decode action:
# (map, opcode, pp) -> (ModRM, immediate) as in ONE_BYTE/TWO_BYTE
AVX_ATTR: dict[tuple[int, int, int], tuple[bool, str]] = {
    (1, 0x6F, 1): (True, ""),    # vmovdqa (VEX.66.0F 6F), vmovdqa32/64 (EVEX.66.0F 6F)
    (1, 0x6F, 2): (True, ""),    # vmovdqu (VEX.F3.0F 6F), vmovdqu32/64 (EVEX.F3.0F 6F)
    (1, 0x77, 0): (False, ""),   # vzeroupper / vzeroall (VEX.0F 77)
}
# forms without a VEX attribute: insn_get_opcode() refuses them (-EINVAL)
AVX_REFUSED = {(1, 0x6F, 0), (1, 0x77, 1)}   # movq mm (0F 6F), 66 0F 77


@dataclass
class Insn:
    """struct insn, the fields the #VC code reads."""
    ok: bool = False
    length: int = 0
    prefixes: list[int] = field(default_factory=list)   # distinct legacy prefixes, in order
    slots: list[int] = field(default_factory=lambda: [0, 0, 0, 0])   # insn->prefixes.bytes[4]
    rex: int = 0
    opnd_bytes: int = 4
    addr_bytes: int = 8
    opcode: list[int] = field(default_factory=list)
    has_modrm: bool = False
    modrm: int = 0
    has_sib: bool = False
    sib: int = 0
    disp: int = 0
    imm: int = 0                 # immediate(1).value, sign-extended as the decoder stores it
    imm_nbytes: int = 0
    imm2: int = 0
    imm2_nbytes: int = 0

    @property
    def op0(self) -> int:
        return self.opcode[0] if self.opcode else 0

    @property
    def op1(self) -> int:
        return self.opcode[1] if len(self.opcode) > 1 else 0

    @property
    def mod(self) -> int:
        return self.modrm >> 6

    @property
    def reg_field(self) -> int:
        return (self.modrm >> 3) & 7

    @property
    def rm(self) -> int:
        return self.modrm & 7

    def has_rep(self) -> bool:
        # insn-eval.c: insn_has_rep_prefix(): any F2 or F3 prefix
        return any(p in (0xF2, 0xF3) for p in self.prefixes)

    def each_prefix(self) -> list[int]:
        """insn.h: for_each_insn_prefix(): bytes[0..3] up to the first zero."""
        out = []
        for b in self.slots:
            if not b:  # not a rule: the macro's loop condition
                break
            out.append(b)
        return out


def _sx(value: int, nbytes: int) -> int:
    """The C value of a little-endian signed field, as an int."""
    bits = 8 * nbytes
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


def insn_decode(code: bytes, buf_len: int = MAX_INSN_SIZE, x86_64: bool = True) -> Insn:  # not a rule: the decoder's own outcome (length, ok) is ruled by its callers
    """insn.c: insn_decode(insn, code, buf_len, INSN_MODE_64): ok False means ret < 0."""
    insn = Insn()
    end = min(buf_len, MAX_INSN_SIZE, len(code))     # insn_init(): at most MAX_INSN_SIZE
    pos = 0

    def peek(n: int = 0) -> int | None:
        return code[pos + n] if pos + n < end else None

    # insn_get_prefixes(): legacy prefixes, a repeated one counted once, at most 4 distinct
    b = peek()
    last = 0
    while b is not None and b in LEGACY_PREFIXES:
        if b not in insn.prefixes:
            if len(insn.prefixes) == 4:
                break                      # the fifth distinct prefix is taken as the opcode
            insn.prefixes.append(b)
            if b == 0x67:
                insn.addr_bytes ^= 12      # 8 <-> 4 in 64-bit mode
            elif b == 0x66:
                insn.opnd_bytes ^= 6       # 4 <-> 2
        last = b
        pos += 1
        b = peek()
    # "Set the last prefix": bytes[3] becomes the last prefix byte; with three distinct
    # prefixes it is then also in bytes[2] (for_each_insn_prefix() sees it twice)
    insn.slots = insn.prefixes + [0] * (4 - len(insn.prefixes))
    if last and last != insn.slots[3]:
        if insn.slots[3]:
            old = insn.slots[3]
            insn.slots = [old if x == last else x for x in insn.slots]
        insn.slots[3] = last
    if b is None:
        return insn
    if x86_64 and b in REX:
        insn.rex = b
        pos += 1
        if b & 8:
            insn.opnd_bytes = 8            # REX.W overrides the operand size
        b = peek()
        if b is None:
            return insn
    if x86_64 and b in VEX_PREFIXES:
        # insn_get_prefixes() "Decode VEX prefix" (64-bit mode: no LES/LDS/BOUND check):
        # vex_prefix.bytes[] and nbytes, then insn_get_opcode()'s AVX branch
        nbytes = VEX_PREFIXES[b]
        if pos + nbytes > end:
            return insn                    # peek_nbyte_next() past the buffer: -ENODATA
        vex = list(code[pos:pos + nbytes])
        if b == 0xC5:
            vex.append(vex[1] & 0x7F)      # VEX2: "fake VEX3-like byte#2"
        if b != 0xC5 and vex[nbytes - 1] & 0x80:
            insn.opnd_bytes = 8            # X86_VEX_W of byte 2 (VEX3) / byte 3 (EVEX, as 6.1 reads it)
        pos += nbytes
        op = peek()
        if op is None:
            return insn
        pos += 1
        insn.opcode = [op]                 # "VEX has only 1 opcode byte"
        # insn_vex_m_bits() / insn_vex_p_bits()
        m = 1 if nbytes == 2 else vex[1] & (0x1F if nbytes == 3 else 0x07)
        p = vex[1] & 3 if nbytes == 2 else vex[2] & 3
        if (m, op, p) in AVX_REFUSED:
            return insn                    # !inat_accept_vex(): "This instruction is bad", -EINVAL
        if (m, op, p) not in AVX_ATTR:
            raise ModelError(f"the sev_es model does not decode VEX/EVEX map {m} opcode {op:02x} "
                             f"pp {p} ({code.hex()})")
        attr = AVX_ATTR[(m, op, p)]
    else:
        attr = _legacy_opcode(insn, code[pos:end], b)
        pos += len(insn.opcode)
        if attr is None:
            return insn
    has_modrm, imm = attr
    # insn_get_modrm()
    if has_modrm:
        m = peek()
        if m is None:
            return insn
        pos += 1
        insn.has_modrm, insn.modrm = True, m
    # insn_get_sib()
    if insn.has_modrm and insn.addr_bytes != 2 and insn.mod != 3 and insn.rm == 4:
        s = peek()
        if s is None:
            return insn
        pos += 1
        insn.has_sib, insn.sib = True, s
    # insn_get_displacement()
    dlen = 0
    if insn.has_modrm and insn.mod != 3:
        if insn.mod == 1:
            dlen = 1
        elif (insn.mod == 0 and insn.rm == 5) or insn.mod == 2 or (insn.mod == 0 and (insn.sib & 7) == 5
                                                                   and insn.has_sib):
            dlen = 4
    if dlen:
        if pos + dlen > end:
            return insn
        insn.disp = _sx(int.from_bytes(code[pos:pos + dlen], "little"), dlen)
        pos += dlen
    # insn_get_immediate()
    sizes = {"": 0, "b": 1, "w": 2, "z": 2 if insn.opnd_bytes == 2 else 4,
             "v": {2: 2, 4: 4, 8: 8}[insn.opnd_bytes]}
    ilen = sizes[imm]
    if ilen:
        if pos + ilen > end:
            return insn
        raw = int.from_bytes(code[pos:pos + ilen], "little")
        if ilen == 8:                      # immediate1 (low 4) + immediate2 (high 4)
            insn.imm, insn.imm_nbytes = _sx(raw & U32, 4), 4
            insn.imm2, insn.imm2_nbytes = _sx(raw >> 32, 4), 4
        else:
            insn.imm, insn.imm_nbytes = _sx(raw, ilen), ilen
        pos += ilen
    insn.length = pos
    insn.ok = True
    return insn


def _legacy_opcode(insn: Insn, code: bytes, b: int) -> tuple[bool, str] | None:  # not a rule: part of insn_decode
    """insn_get_opcode() without VEX: insn.opcode filled, the attribute (ModRM, immediate);
    None when the escaped byte is past the buffer (`code` from the opcode's position on is
    what the caller's peek() sees)."""
    insn.opcode = [b]
    if b in LEGACY_PREFIXES:
        return (False, "")                 # a prefix taken as the opcode (5th distinct prefix)
    if b == 0x0F:
        b2 = code[1] if len(code) > 1 else None
        if b2 is None:
            return None
        insn.opcode.append(b2)
        if b2 not in TWO_BYTE:
            raise ModelError(f"the sev_es model does not decode 0f {b2:02x} ({code.hex()})")
        return TWO_BYTE[b2]
    if b in ONE_BYTE:
        return ONE_BYTE[b]
    raise ModelError(f"the sev_es model does not decode opcode {b:02x} ({code.hex()})")


def immediate1_bytes(insn: Insn) -> bytes:
    """The 8 bytes of struct insn_field immediate1 (x86-64 layout): value (4), got, nbytes,
    two padding bytes (zero: insn_init() memsets the struct)."""
    return (insn.imm & U32).to_bytes(4, "little") + bytes([1, insn.imm_nbytes, 0, 0])


# insn-eval.c: pt_regoff[] order
REGNO = ("rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi",
         "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15")
EDOM = "EDOM"
INAT_SEG = {0x26: "es", 0x2E: "cs", 0x36: "ss", 0x3E: "ds", 0x64: "fs", 0x65: "gs"}


def modrm_reg(insn: Insn) -> str:
    """insn-eval.c: get_regno(REG_TYPE_REG) (+8 with REX.R): the pt_regs slot."""
    return REGNO[insn.reg_field + (8 if insn.rex & 4 else 0)]


def modrm_rm(insn: Insn) -> str:
    """insn-eval.c: get_regno(REG_TYPE_RM): -EDOM for mod 0 rm 5 (disp32 / RIP-relative)."""
    if insn.mod == 0 and insn.rm == 5:
        hit("insn-eval.c:get_regno:rm-disp32-edom")
        return EDOM
    hit("insn-eval.c:get_regno:rm-register")
    return REGNO[insn.rm + (8 if insn.rex & 1 else 0)]


def seg_override(insn: Insn, arch: bool = False) -> str | None | bool:
    """insn-eval.c: get_seg_reg_override_idx(): the override, None, or False (-EINVAL: two).
    `arch`: count the distinct prefixes (the instruction's), not for_each_insn_prefix()."""
    found = [INAT_SEG[p] for p in (insn.prefixes if arch else insn.each_prefix()) if p in INAT_SEG]
    if len(found) > 1:
        hit("insn-eval.c:get_seg_reg_override_idx:more-than-one-einval")
        return False
    return found[0] if found else None


def seg_base(seg: str, regs: dict, user: bool) -> int:
    """insn-eval.c: insn_get_seg_base() in 64-bit mode for FS or GS (the other segments'
    bases are 0 and resolve_seg_reg() ignores them)."""
    if seg == "fs":
        hit("insn-eval.c:insn_get_seg_base:fs-base")
        return regs.get("fs_base", 0)
    # user mode reads MSR_KERNEL_GS_BASE (after swapgs), kernel MSR_GS_BASE: vcsim
    # answers both with the script's gs_base
    hit("insn-eval.c:insn_get_seg_base:gs-base")
    return regs.get("gs_base", 0)


def is_string_insn(insn: Insn) -> bool:
    return len(insn.opcode) == 1 and (0x6C <= insn.op0 <= 0x6F or 0xA4 <= insn.op0 <= 0xA7
                                      or 0xAA <= insn.op0 <= 0xAF)


def resolve_seg(insn: Insn, regoff: str, arch: bool = False) -> str | None | bool:
    """insn-eval.c: resolve_seg_reg() in 64-bit mode: "fs"/"gs", None (ignored) or False."""
    if regoff == "rdi" and is_string_insn(insn):
        # check_seg_overrides(): no override for rDI of a string instruction
        hit("insn-eval.c:check_seg_overrides:string-rdi-no-override")
        return None
    idx = seg_override(insn, arch)
    if idx is False:  # not a rule: the -EINVAL is ruled in get_seg_reg_override_idx
        return False
    if idx in ("fs", "gs"):
        hit("insn-eval.c:resolve_seg_reg:fs-gs-override")
        return idx
    hit("insn-eval.c:resolve_seg_reg:long-mode-ignore")
    return None


def insn_get_addr_ref(insn: Insn, regs: dict, rip: int, user: bool, arch: bool = False) -> int | None:
    """insn-eval.c: insn_get_addr_ref() for 64-bit code (None: -1L)."""
    if insn.addr_bytes == 8:
        hit("insn-eval.c:insn_get_addr_ref:addr64")
        mask = U64
    else:
        # get_addr_ref_32(): 32-bit effective address; no limit check in 64-bit mode
        hit("insn-eval.c:insn_get_addr_ref:addr32")
        mask = U32
    if insn.mod == 3:
        # get_eff_addr_reg(): the r/m register's value is the "address"
        hit("insn-eval.c:get_eff_addr_reg:register-form")
        regoff = modrm_rm(insn)
        ea = regs[regoff] & mask
    elif insn.has_sib:
        hit("insn-eval.c:get_eff_addr_sib:sib")
        base_no = insn.sib & 7
        if insn.mod == 0 and base_no == 5:
            hit("insn-eval.c:get_regno:sib-base-none")
            regoff, base = EDOM, 0
        else:
            hit("insn-eval.c:get_regno:sib-base-register")
            regoff = REGNO[base_no + (8 if insn.rex & 1 else 0)]
            base = regs[regoff]
        index_no = ((insn.sib >> 3) & 7) + (8 if insn.rex & 2 else 0)
        if index_no == 4:
            hit("insn-eval.c:get_regno:sib-index-none")
            index = 0
        else:
            hit("insn-eval.c:get_regno:sib-index-register")
            index = regs[REGNO[index_no]]
        ea = (base & mask) + (index & mask) * (1 << (insn.sib >> 6)) + insn.disp
        ea &= mask
    else:
        regoff = modrm_rm(insn)
        if regoff == EDOM:
            # get_eff_addr_modrm(): RIP-relative in 64-bit mode (rip of the next insn)
            hit("insn-eval.c:get_eff_addr_modrm:rip-relative")
            tmp = rip + insn.length
        else:
            hit("insn-eval.c:get_eff_addr_modrm:register-indirect")
            tmp = regs[regoff]
        ea = ((tmp & mask) + insn.disp) & mask
    seg = resolve_seg(insn, regoff, arch)
    if seg is False:
        hit("insn-eval.c:get_seg_base_limit:seg-einval")
        return None
    base = seg_base(seg, regs, user) if seg else 0
    linear = (ea + base) & U64
    if linear == U64:
        # the address -1 is the error value itself: vc_do_mmio() takes it as one
        hit("insn-eval.c:insn_get_addr_ref:all-ones-is-error")
        return None
    return linear


MMIO_TYPES = ("write", "write_imm", "read", "read_zero_extend", "read_sign_extend", "movs",
              "decode_failed")


def insn_decode_mmio(insn: Insn) -> tuple[str, int]:
    """insn-eval.c: insn_decode_mmio(): (type, bytes)."""
    op = insn.op0
    if op in (0x88, 0x89):
        hit("insn-eval.c:insn_decode_mmio:mov-store")
        return "write", 1 if op == 0x88 else insn.opnd_bytes
    if op in (0xC6, 0xC7):
        hit("insn-eval.c:insn_decode_mmio:mov-store-imm")
        return "write_imm", 1 if op == 0xC6 else insn.opnd_bytes
    if op in (0x8A, 0x8B):
        hit("insn-eval.c:insn_decode_mmio:mov-load")
        return "read", 1 if op == 0x8A else insn.opnd_bytes
    if op in (0xA4, 0xA5):
        hit("insn-eval.c:insn_decode_mmio:movs")
        return "movs", 1 if op == 0xA4 else insn.opnd_bytes
    if op == 0x0F and insn.op1 in (0xB6, 0xB7):
        hit("insn-eval.c:insn_decode_mmio:movzx")
        return "read_zero_extend", 1 if insn.op1 == 0xB6 else 2
    if op == 0x0F and insn.op1 in (0xBE, 0xBF):
        hit("insn-eval.c:insn_decode_mmio:movsx")
        return "read_sign_extend", 1 if insn.op1 == 0xBE else 2
    # everything else, MOVSXD (63) included: 6.1 has no case for it
    hit("insn-eval.c:insn_decode_mmio:other-decode-failed")
    return "decode_failed", 0


def decode_mmio(code: bytes, regs: dict, mode: str = "kernel") -> dict:
    """The decoder differential: insn_decode(INSN_MODE_64) of `code` (buffer = its length),
    then insn_decode_mmio(), insn_get_modrm_reg_off() and insn_get_addr_ref() with `regs`
    (16 GPRs, "rip", optional "fs_base"/"gs_base").  Keys as the decode event."""
    insn = insn_decode(code, len(code))
    if not insn.ok:
        hit("insn.c:insn_decode:incomplete")
        return {"ok": False, "len": 0, "mmio": "decode_failed", "bytes": 0, "reg": None, "ea": None}
    hit("insn.c:insn_decode:complete")
    mmio, nbytes = insn_decode_mmio(insn)
    out = {"ok": True, "len": insn.length, "mmio": mmio, "bytes": nbytes, "reg": None, "ea": None}
    if mmio == "decode_failed":
        hit("sev.c:vc_handle_mmio:decode-failed-no-operands")
        return out
    if mmio not in ("write_imm", "movs"):
        # vc_handle_mmio(): insn_get_modrm_reg_ptr()
        hit("insn-eval.c:insn_get_modrm_reg_off:register-operand")
        out["reg"] = modrm_reg(insn)
    if mmio != "movs":
        # vc_do_mmio(): insn_get_addr_ref() (MOVS uses RSI/RDI instead)
        hit("sev.c:vc_do_mmio:address")
        out["ea"] = insn_get_addr_ref(insn, regs, regs.get("rip", 0), mode == "user")
    return out


# ---------------------------------------------------------------- the machine
class NestedFailure(ModelError):
    """A nested #VC (vc_read_mem/vc_write_mem on MMIO) that did not end in ES_OK."""


@dataclass
class Fault:
    vector: int
    error_code: int = 0
    cr2: int = 0


class Machine:
    def __init__(self, script: dict, fixed: frozenset[str]):
        self.s = script
        self.fixed = fixed
        self.user = script["mode"] == "user"
        self.regs = {r: script["regs"][r] for r in GPRS}
        self.rflags = script["regs"]["rflags"]
        self.rip = script["rip"]
        self.fs_base, self.gs_base = script["fs_base"], script["gs_base"]
        self.pages = []
        for p in script["pages"]:
            data = bytearray(bytes.fromhex(p.get("data", "") or ""))
            data += bytes(p["len"] - len(data))
            self.pages.append({**p, "mem": data})
        hv = script["hv"]
        self.cpuid = {(e[0], e[1]): e[2:] for e in hv["cpuid"]}
        self.ports = {int(k, 0): bytearray(bytes.fromhex(v)) for k, v in hv["ports"].items()}
        self.msrs = {int(k, 0): v for k, v in hv["msrs"].items()}
        self.mmio = [(m["pa"], bytearray(bytes.fromhex(m["data"]))) for m in hv["mmio"]]
        self.pmc = {int(k, 0): v for k, v in hv["pmc"].items()}
        self.hv = hv
        # sev.c: alloc_runtime_data() (zeroed memblock) + init_ghcb(): a zeroed GHCB and
        # a zero cached DR7 (init_ghcb() does not set data->dr7 to DR7_RESET_VALUE)
        self.ghcb = Ghcb()
        self.ghcb_active = False
        self.dr7 = 0
        self.fault: Fault | None = None
        self.forwarded: Fault | None = None
        # vcsim's untraced set-up negotiation (setup_ghcb()): ghcb_version from sev_info
        self.ghcb_version = 0
        self.negotiate(self.hv_msr_protocol(GHCB_MSR_SEV_INFO_REQ, None))
        self.events: list[dict] = []
        self.step = 0
        self.reply: dict = {}
        self.deviations: set[str] = set()

    # -- bookkeeping ------------------------------------------------------------
    def deviates(self, name: str) -> bool:
        """True when the architectural behaviour replaces the 6.1 one here."""
        if name in self.fixed:  # not a rule: profile switch (the rules are in the callers' arms)
            return True
        self.deviations.add(name)
        return False

    def regs_for(self) -> dict:
        return {**self.regs, "rip": self.rip, "fs_base": self.fs_base, "gs_base": self.gs_base}

    # -- memory ------------------------------------------------------------------
    def page_of(self, va: int) -> dict | None:  # not a rule: page lookup (ruled by its callers)
        for p in self.pages:
            if p["va"] <= va < p["va"] + p["len"]:
                return p
        return None

    def ram_snapshot(self) -> list[bytes]:
        return [bytes(p["mem"]) for p in self.pages]

    def ram_diff(self, before: list[bytes]) -> list[dict]:  # not a rule: trace rendering
        out = []
        for p, old in zip(self.pages, before):
            if p["kind"] != "ram":
                continue
            new, i, n = p["mem"], 0, p["len"]
            while i < n:
                if new[i] == old[i]:
                    i += 1
                    continue
                j = i
                while j < n and new[j] != old[j]:
                    j += 1
                out.append({"va": p["va"] + i, "data": bytes(new[i:j]).hex()})
                i = j
        return out

    def mem_read(self, va: int, size: int) -> bytes | Fault:
        """sev.c: vc_read_mem(): __get_user() of `size` bytes; #PF(PROT[|USER]) on failure;
        an MMIO page raises a nested #VC (vcsim's synthetic mov)."""
        va &= U64
        p = self.page_of(va)
        if p is None or va + size > p["va"] + p["len"]:
            hit("sev.c:vc_read_mem:fault")
            return Fault(X86_TRAP_PF, X86_PF_PROT | (X86_PF_USER if self.user else 0), va)
        if p["kind"] == "mmio":
            hit("sev.c:vc_read_mem:mmio-nested-vc")
            return self.nested_mmio(va, size, None)
        hit("sev.c:vc_read_mem:ram")
        off = va - p["va"]
        return bytes(p["mem"][off:off + size])

    def mem_write(self, va: int, data: bytes) -> Fault | None:
        """sev.c: vc_write_mem(): __put_user(); #PF(PROT|WRITE[|USER]) on failure."""
        va &= U64
        p = self.page_of(va)
        if p is None or va + len(data) > p["va"] + p["len"]:
            hit("sev.c:vc_write_mem:fault")
            return Fault(X86_TRAP_PF, X86_PF_PROT | X86_PF_WRITE | (X86_PF_USER if self.user else 0), va)
        if p["kind"] == "mmio":
            hit("sev.c:vc_write_mem:mmio-nested-vc")
            self.nested_mmio(va, len(data), data)
            return None
        hit("sev.c:vc_write_mem:ram")
        off = va - p["va"]
        p["mem"][off:off + len(data)] = data
        return None

    def nested_mmio(self, va: int, size: int, data: bytes | None) -> bytes:
        """A nested #VC (SVM_EXIT_NPF) for vcsim's synthetic `mov` of `size` bytes at `va`."""
        # sev.c: __sev_get_ghcb(): the GHCB is active: back it up
        hit("sev.c:__sev_get_ghcb:nested-backup")
        backup = self.ghcb.copy()
        self.ghcb.invalidate()
        pa = self.virt_to_phys(va)
        if isinstance(pa, (Fault, str)):  # not a rule: guarded by mem_read/mem_write (MMIO page)
            raise NestedFailure("nested #VC on an unmapped address")
        if data is not None:  # not a rule: read or write is ruled in vc_read_mem/vc_write_mem
            self.ghcb.write_buffer(data)
        self.ghcb.set("sw_scratch", GHCB_PA + SHARED_BUFFER)
        res = self.hv_call(EXIT["mmio_write" if data is not None else "mmio_read"], pa, size)
        if res != ES_OK:  # not a rule: outside the model (an ERROR)
            raise NestedFailure(f"the nested #VC of a string/MOVS access ended in {res}: "
                                "the model does not follow vcsim's fixup of it")
        value = self.ghcb.buffer(size)
        # sev.c: __sev_put_ghcb(): restore the interrupted #VC's GHCB (the same page)
        self.ghcb.page[:] = backup.page
        return value

    def virt_to_phys(self, va: int) -> int | Fault | str:
        """sev.c: vc_slow_virt_to_phys()."""
        p = self.page_of(va)
        if p is None:
            hit("sev.c:vc_slow_virt_to_phys:no-pte-pf")
            return Fault(X86_TRAP_PF, X86_PF_USER if self.user else 0, va)
        if PTE_ENC:
            # WARN_ON_ONCE(pte_val(*pte) & _PAGE_ENC): MMIO emulation of encrypted memory
            hit("sev.c:vc_slow_virt_to_phys:encrypted-unsupported")
            return ES_UNSUPPORTED
        hit("sev.c:vc_slow_virt_to_phys:pa")
        return p["pa"] + (va - p["va"])

    # -- the hypervisor -------------------------------------------------------------
    def msr_write(self, value: int) -> None:
        self.events.append({"op": "msr", "step": self.step, "value": value & U64})

    def hv_msr_protocol(self, req: int, resp_code: int | None) -> int:
        """hv.c (KVM sev_handle_vmgexit_msr_protocol()): the MSR value after VMGEXIT."""
        code = msr_info(req)
        if code == GHCB_MSR_SEV_INFO_REQ:
            hit("hv.c:hv_msr_protocol:sev-info")
            resp = sev_info(*self.hv["sev_info"])
        else:
            # GHCB_MSR_CPUID_REQ (the termination request is never answered: the model
            # does not call this for it)
            fn, reg = (req >> 32) & U32, (req >> 30) & 3
            # the MSR protocol has no sub-leaf: KVM looks the leaf up with ECX = 0
            hit("hv.c:hv_msr_protocol:cpuid")
            resp = cpuid_resp(self.cpuid.get((fn, 0), (0, 0, 0, 0))[reg], req)
        if resp_code is not None:
            hit("hv.c:hv_msr_protocol:forced-response-code")
            resp = (resp & ~GHCB_MSR_INFO_MASK) | (resp_code & GHCB_MSR_INFO_MASK)
        return resp

    def hv_answer(self, exit_code: int, info1: int, info2: int) -> tuple[int, int]:
        """hv.c (KVM sev_handle_vmgexit()): perform the request, write the reply registers.
        Returns the reply's (sw_exit_info_1, sw_exit_info_2)."""
        g = self.ghcb
        # sev_es_sync_from_ghcb(): the vCPU registers are the valid ones, else 0
        r = {n: (g.raw(n) if g.is_valid(n) else 0) for n in ("rax", "rbx", "rcx", "rdx")}
        out = (0, 0)
        if exit_code == EXIT["cpuid"]:
            fn = r["rax"] & U32
            # kvm_cpuid(): the sub-leaf matters only for indexed functions
            if fn in INDEXED_LEAVES:
                hit("hv.c:cpuid_lookup:indexed-subleaf")
                sub = r["rcx"] & U32
            else:
                hit("hv.c:cpuid_lookup:subleaf-ignored")
                sub = 0
            leaf = self.cpuid.get((fn, sub), (0, 0, 0, 0))
            r.update(rax=leaf[0], rbx=leaf[1], rcx=leaf[2], rdx=leaf[3])
        elif exit_code == EXIT["ioio"]:
            port, size = (info1 >> 16) & 0xFFFF, (info1 >> 4) & 7
            if info1 & 4:
                count = info2 * size
                if info1 & 1:
                    hit("hv.c:hv_answer:ins")
                    g.write_buffer(self.port_in(port, min(count, SHARED_BUF_SIZE)))
                else:
                    hit("hv.c:hv_answer:outs")
            elif info1 & 1:
                hit("hv.c:hv_answer:in")
                mask = (1 << (8 * size)) - 1
                r["rax"] = (r["rax"] & ~mask) | int.from_bytes(self.port_in(port, size), "little")
            else:
                hit("hv.c:hv_answer:out")
        elif exit_code == EXIT["msr"]:
            ecx = r["rcx"] & U32
            if info1:
                # every WRMSR succeeds and is remembered (a later RDMSR returns it)
                hit("hv.c:hv_answer:wrmsr")
                self.msrs[ecx] = ((r["rdx"] & U32) << 32) | (r["rax"] & U32)
            elif ecx in self.msrs:
                hit("hv.c:hv_answer:rdmsr")
                r.update(rax=self.msrs[ecx] & U32, rdx=self.msrs[ecx] >> 32)
            else:
                hit("hv.c:hv_answer:rdmsr-unknown-gp")
                out = GP_REPLY
        elif exit_code in (EXIT["rdtsc"], EXIT["rdtscp"]):
            hit("hv.c:hv_answer:rdtsc")
            r.update(rax=self.hv["tsc"] & U32, rdx=(self.hv["tsc"] >> 32) & U32)
            if exit_code == EXIT["rdtscp"]:
                hit("hv.c:hv_answer:rdtscp-aux")
                r["rcx"] = self.hv["tsc_aux"] & U32
        elif exit_code == EXIT["rdpmc"]:
            if r["rcx"] & U32 in self.pmc:
                hit("hv.c:hv_answer:rdpmc")
                v = self.pmc[r["rcx"] & U32]
            else:
                hit("hv.c:hv_answer:rdpmc-unknown-zero")
                v = 0
            r.update(rax=v & U32, rdx=(v >> 32) & U32)
        elif exit_code == EXIT["vmmcall"]:
            if self.hv["vmmcall_rax"] is not None:
                hit("hv.c:hv_answer:vmmcall-table")
                r["rax"] = self.hv["vmmcall_rax"]
            elif g.raw("cpl") != 0:
                # kvm_emulate_hypercall(): CPL != 0 gets -KVM_EPERM
                hit("hv.c:hv_answer:vmmcall-cpl3-eperm")
                r["rax"] = (-KVM_EPERM) & U64
            else:
                # an unknown hypercall: -KVM_ENOSYS
                hit("hv.c:hv_answer:vmmcall-enosys")
                r["rax"] = (-KVM_ENOSYS) & U64
        elif exit_code == EXIT["mmio_read"]:
            hit("hv.c:hv_answer:mmio-read")
            g.write_buffer(self.device_read(info1, info2))
        elif exit_code == EXIT["mmio_write"]:
            hit("hv.c:hv_answer:mmio-write")
            self.device_write(info1, g.buffer(info2))
        else:
            # DR7 write, WBINVD: nothing to return
            hit("hv.c:hv_answer:no-data")
        # sev_es_sync_to_ghcb(): bitmap cleared, RAX..RDX written and valid
        g.page[VALID_BITMAP_OFF:VALID_BITMAP_OFF + 16] = bytes(16)
        for n, v in r.items():
            g.set(n, v)
        return out

    def port_in(self, port: int, n: int) -> bytes:
        q = self.ports.setdefault(port, bytearray())
        data, q[:] = bytes(q[:n]), q[n:]
        return data + b"\xff" * (n - len(data))

    def device_read(self, pa: int, n: int) -> bytes:  # not a rule: table hypervisor data
        out = bytearray(b"\xff" * n)
        for base, mem in self.mmio:
            for i in range(n):
                if base <= pa + i < base + len(mem):
                    out[i] = mem[pa + i - base]
        return bytes(out)

    def device_write(self, pa: int, data: bytes) -> None:  # not a rule: table hypervisor data
        for base, mem in self.mmio:
            for i, b in enumerate(data):
                if base <= pa + i < base + len(mem):
                    mem[pa + i - base] = b

    def hv_call(self, exit_code: int, info1: int, info2: int) -> str:
        """sev-shared.c: sev_es_ghcb_hv_call() + verify_exception_info()."""
        g = self.ghcb
        g.protocol_version = self.ghcb_version
        g.usage = GHCB_DEFAULT_USAGE
        g.set("sw_exit_code", exit_code)
        g.set("sw_exit_info_1", info1)
        g.set("sw_exit_info_2", info2)
        self.events.append(self.vmgexit_event())
        reply1, reply2 = self.hv_answer(exit_code, info1, info2)
        rep = self.reply
        if rep.get("info1") is not None:
            hit("hv.c:hv_reply:forced-info1")
            reply1 = rep["info1"]
        if rep.get("info2") is not None:
            hit("hv.c:hv_reply:forced-info2")
            reply2 = rep["info2"]
        g.set("sw_exit_info_1", reply1)
        g.set("sw_exit_info_2", reply2)
        for name, value in rep.get("set", {}).items():
            hit("hv.c:hv_reply:field-forced")
            g.set(name, value)
        for name in rep.get("drop", ()):
            hit("hv.c:hv_reply:valid-bit-dropped")
            g.clear_valid(name)
        ret = g.raw("sw_exit_info_1") & U32
        if not ret:
            hit("sev-shared.c:verify_exception_info:ok")
            return ES_OK
        if ret == 1:
            info = g.raw("sw_exit_info_2")
            v = info & 0xFF
            if (info & SVM_EVTINJ_VALID_MASK and v in (X86_TRAP_GP, X86_TRAP_UD)
                    and info & SVM_EVTINJ_TYPE_MASK == SVM_EVTINJ_TYPE_EXEPT):
                hit("sev-shared.c:verify_exception_info:exception")
                err = 0
                if info & SVM_EVTINJ_VALID_ERR:
                    hit("sev-shared.c:verify_exception_info:error-code")
                    err = info >> 32
                self.fault = Fault(v, err, 0)
                return ES_EXCEPTION
            hit("sev-shared.c:verify_exception_info:bad-exception-vmm-error")
            return ES_VMM_ERROR
        hit("sev-shared.c:verify_exception_info:nonzero-vmm-error")
        return ES_VMM_ERROR

    def vmgexit_event(self) -> dict:  # not a rule: trace rendering of the GHCB
        g = self.ghcb
        scratch = g.raw("sw_scratch") if g.is_valid("sw_scratch") else None
        buf = None
        if scratch is not None:
            exit_code, info1, info2 = g.raw("sw_exit_code"), g.raw("sw_exit_info_1"), g.raw("sw_exit_info_2")
            n = 0
            if exit_code == EXIT["ioio"] and info1 & 4:
                n = ((info1 >> 4) & 7) * info2
            elif exit_code in (EXIT["mmio_read"], EXIT["mmio_write"]):
                n = info2
            buf = g.buffer(min(n, SHARED_BUF_SIZE)).hex()
        return {"op": "vmgexit", "step": self.step, "exit": g.raw("sw_exit_code"),
                "info1": g.raw("sw_exit_info_1"), "info2": g.raw("sw_exit_info_2"),
                "scratch": scratch, "valid": g.words(),
                "regs": {n: g.raw(n) for n in EVENT_REGS if g.is_valid(n)},
                "cpl": g.raw("cpl") if g.is_valid("cpl") else None,
                "xcr0": g.raw("xcr0") if g.is_valid("xcr0") else None,
                "usage": g.usage, "version": g.protocol_version, "buf": buf}

    # -- #VC entry ----------------------------------------------------------------------
    def deliver(self, exit_code: int, code: bytes) -> str:
        """DEFINE_IDTENTRY_VC_KERNEL / _USER(exc_vmm_communication) for one #VC."""
        self.fault = None
        self.forwarded = None
        if exit_code == EXIT["db"]:
            # vc_is_db(): exc_debug() / noist_exc_debug(), no GHCB; the #VC returns
            hit("sev.c:exc_vmm_communication:db-first")
            self.forwarded = Fault(X86_TRAP_DB, 0, 0)
            return ES_OK
        result = self.vc_raw_handle_exception(exit_code, code)
        if result in (ES_UNSUPPORTED, ES_VMM_ERROR, ES_DECODE_FAILED):
            if self.user:
                # force_sig_fault(SIGBUS, BUS_OBJERR, 0)
                hit("sev.c:exc_vmm_communication:user-sigbus")
            else:
                # show_regs(); sev_es_terminate(SEV_TERM_SET_GEN, GHCB_SEV_ES_GEN_REQ)
                hit("sev.c:exc_vmm_communication:kernel-terminate")
                self.msr_write(term_req(SEV_TERM_SET_GEN, GHCB_SEV_ES_GEN_REQ))
        return result

    def vc_raw_handle_exception(self, exit_code: int, code: bytes) -> str:
        """sev.c: vc_raw_handle_exception()."""
        # __sev_get_ghcb(): not nested here (the trigger's own #VC)
        self.ghcb_active = True
        self.ghcb.invalidate()
        insn = None
        # vc_init_em_ctxt(): vc_decoding_needed()
        if SVM_EXIT_EXCP_BASE <= exit_code <= SVM_EXIT_LAST_EXCP:
            hit("sev-shared.c:vc_decoding_needed:exception-no-decode")
            insn = Insn(ok=True)
            result = ES_OK
        else:
            insn = insn_decode(code, MAX_INSN_SIZE)
            if insn.ok:
                hit("sev.c:vc_decode_insn:ok")
                result = ES_OK
            else:
                hit("sev.c:vc_decode_insn:decode-failed")
                result = ES_DECODE_FAILED
        if result == ES_OK:  # not a rule: the decode outcome is ruled above
            result = self.handle_exitcode(insn, exit_code)
        # __sev_put_ghcb(): invalidate
        self.ghcb.invalidate()
        self.ghcb_active = False
        if result == ES_OK:
            # vc_finish_insn()
            hit("sev.c:vc_raw_handle_exception:ok-advance-rip")
            self.rip = (self.rip + insn.length) & U64
        elif result == ES_RETRY:
            hit("sev.c:vc_raw_handle_exception:retry")
        elif result == ES_EXCEPTION:
            # vc_forward_exception(): exc_general_protection() etc.
            hit("sev.c:vc_raw_handle_exception:forward-exception")
            self.forwarded = self.fault
        else:
            hit("sev.c:vc_raw_handle_exception:error")
        return result

    def handle_exitcode(self, insn: Insn, exit_code: int) -> str:
        """sev.c: vc_handle_exitcode()."""
        handler = {
            EXIT["read_dr7"]: self.vc_handle_dr7_read, EXIT["write_dr7"]: self.vc_handle_dr7_write,
            EXIT["ac"]: self.vc_handle_trap_ac, EXIT["rdtsc"]: self.vc_handle_rdtsc,
            EXIT["rdtscp"]: self.vc_handle_rdtsc, EXIT["rdpmc"]: self.vc_handle_rdpmc,
            EXIT["invd"]: self.vc_handle_invd, EXIT["cpuid"]: self.vc_handle_cpuid,
            EXIT["ioio"]: self.vc_handle_ioio, EXIT["msr"]: self.vc_handle_msr,
            EXIT["vmmcall"]: self.vc_handle_vmmcall, EXIT["wbinvd"]: self.vc_handle_wbinvd,
            EXIT["monitor"]: self.vc_handle_monitor, EXIT["mwait"]: self.vc_handle_monitor,
            EXIT["npf"]: self.vc_handle_mmio,
        }.get(exit_code)
        if handler is None:
            hit("sev.c:vc_handle_exitcode:unexpected-unsupported")
            return ES_UNSUPPORTED
        return handler(insn, exit_code)

    # -- handlers ------------------------------------------------------------------------------
    def vc_handle_trap_ac(self, insn: Insn, exit_code: int) -> str:
        hit("sev.c:vc_handle_trap_ac:forward-ac")
        self.fault = Fault(X86_TRAP_AC, 0, 0)
        return ES_EXCEPTION

    def vc_handle_invd(self, insn: Insn, exit_code: int) -> str:
        # "#VC exception for INVD??? Seriously???"
        hit("sev.c:vc_handle_exitcode:invd-unsupported")
        return ES_UNSUPPORTED

    def vc_handle_monitor(self, insn: Insn, exit_code: int) -> str:
        # vc_handle_monitor()/vc_handle_mwait(): a NOP, no VMGEXIT
        hit("sev.c:vc_handle_monitor:nop")
        return ES_OK

    def vc_handle_wbinvd(self, insn: Insn, exit_code: int) -> str:
        hit("sev.c:vc_handle_wbinvd:hv-call")
        return self.hv_call(EXIT["wbinvd"], 0, 0)

    def rm_slot(self, insn: Insn) -> str | None:
        """sev.c: vc_insn_get_rm(): the ModRM.rm register, None for -EDOM."""
        slot = modrm_rm(insn)
        return None if slot == EDOM else slot

    def vc_handle_dr7_read(self, insn: Insn, exit_code: int) -> str:
        slot = self.rm_slot(insn)
        if slot is None:
            hit("sev.c:vc_handle_dr7_read:no-register-decode-failed")
            return ES_DECODE_FAILED
        hit("sev.c:vc_handle_dr7_read:cached")
        self.regs[slot] = self.dr7
        return ES_OK

    def vc_handle_dr7_write(self, insn: Insn, exit_code: int) -> str:
        slot = self.rm_slot(insn)
        if slot is None:
            hit("sev.c:vc_handle_dr7_write:no-register-decode-failed")
            return ES_DECODE_FAILED
        val = self.regs[slot]
        if val >> 32:
            hit("sev.c:vc_handle_dr7_write:upper-bits-gp")
            self.fault = Fault(X86_TRAP_GP, 0, 0)
            return ES_EXCEPTION
        val = (val & 0xFFFF23FF) | (1 << 10)
        self.ghcb.set("rax", val)
        ret = self.hv_call(EXIT["write_dr7"], 0, 0)
        if ret != ES_OK:
            hit("sev.c:vc_handle_dr7_write:hv-error")
            return ret
        hit("sev.c:vc_handle_dr7_write:cached")
        self.dr7 = val
        return ES_OK

    def reg32(self, value: int, name: str) -> int:
        """A 32-bit result written to a 64-bit register: 6.1 copies the GHCB's 64 bits."""
        if value >> 32 and self.deviates("hv-upper-bits-copied"):
            hit("sev-shared.c:vc_handle_cpuid:architectural-zero-extend")
            return value & U32
        return value

    def vc_handle_rdtsc(self, insn: Insn, exit_code: int) -> str:
        rdtscp = exit_code == EXIT["rdtscp"]
        ret = self.hv_call(exit_code, 0, 0)
        if ret != ES_OK:
            hit("sev-shared.c:vc_handle_rdtsc:hv-error")
            return ret
        g = self.ghcb
        if not (g.is_valid("rax") and g.is_valid("rdx") and (not rdtscp or g.is_valid("rcx"))):
            hit("sev-shared.c:vc_handle_rdtsc:invalid-vmm-error")
            return ES_VMM_ERROR
        hit("sev-shared.c:vc_handle_rdtsc:ok")
        self.regs["rax"] = self.reg32(g.raw("rax"), "rax")
        self.regs["rdx"] = self.reg32(g.raw("rdx"), "rdx")
        if rdtscp:
            hit("sev-shared.c:vc_handle_rdtsc:rdtscp-rcx")
            self.regs["rcx"] = self.reg32(g.raw("rcx"), "rcx")
        return ES_OK

    def vc_handle_rdpmc(self, insn: Insn, exit_code: int) -> str:
        self.ghcb.set("rcx", self.regs["rcx"])
        ret = self.hv_call(EXIT["rdpmc"], 0, 0)
        if ret != ES_OK:
            hit("sev.c:vc_handle_rdpmc:hv-error")
            return ret
        g = self.ghcb
        if not (g.is_valid("rax") and g.is_valid("rdx")):
            hit("sev.c:vc_handle_rdpmc:invalid-vmm-error")
            return ES_VMM_ERROR
        hit("sev.c:vc_handle_rdpmc:ok")
        self.regs["rax"] = self.reg32(g.raw("rax"), "rax")
        self.regs["rdx"] = self.reg32(g.raw("rdx"), "rdx")
        return ES_OK

    def vc_handle_cpuid(self, insn: Insn, exit_code: int) -> str:
        # vc_handle_cpuid_snp(): snp_cpuid() without a CPUID table: -EOPNOTSUPP
        g = self.ghcb
        g.set("rax", self.regs["rax"])
        g.set("rcx", self.regs["rcx"])
        if self.s["cr4_osxsave"]:
            hit("sev-shared.c:vc_handle_cpuid:xgetbv")
            g.set("xcr0", self.s["xcr0"])
        else:
            hit("sev-shared.c:vc_handle_cpuid:xcr0-reset-value")
            g.set("xcr0", 1)
        ret = self.hv_call(EXIT["cpuid"], 0, 0)
        if ret != ES_OK:
            hit("sev-shared.c:vc_handle_cpuid:hv-error")
            return ret
        if not all(g.is_valid(n) for n in ("rax", "rbx", "rcx", "rdx")):
            hit("sev-shared.c:vc_handle_cpuid:invalid-vmm-error")
            return ES_VMM_ERROR
        hit("sev-shared.c:vc_handle_cpuid:ok")
        for n in ("rax", "rbx", "rcx", "rdx"):
            self.regs[n] = self.reg32(g.raw(n), n)
        return ES_OK

    def vc_handle_msr(self, insn: Insn, exit_code: int) -> str:
        g = self.ghcb
        wr = 1 if insn.op1 == 0x30 else 0
        g.set("rcx", self.regs["rcx"])
        if wr:
            hit("sev.c:vc_handle_msr:wrmsr")
            g.set("rax", self.regs["rax"])
            g.set("rdx", self.regs["rdx"])
        else:
            hit("sev.c:vc_handle_msr:rdmsr")
        ret = self.hv_call(EXIT["msr"], wr, 0)
        if ret == ES_OK and not wr:
            if not (g.is_valid("rax") and g.is_valid("rdx")) and self.deviates("rdmsr-no-valid-check"):
                hit("sev.c:vc_handle_msr:architectural-invalid-vmm-error")
                return ES_VMM_ERROR
            hit("sev.c:vc_handle_msr:rdmsr-copy")
            self.regs["rax"] = self.reg32(g.raw("rax"), "rax")
            self.regs["rdx"] = self.reg32(g.raw("rdx"), "rdx")
        else:
            hit("sev.c:vc_handle_msr:no-copy")
        return ret

    def vc_handle_vmmcall(self, insn: Insn, exit_code: int) -> str:
        g = self.ghcb
        g.set("rax", self.regs["rax"])
        g.set("cpl", 3 if self.user else 0)
        if self.s["kvm"]:
            # x86_platform.hyper.sev_es_hcall_prepare = arch/x86/kernel/kvm.c:
            # kvm_sev_es_hcall_prepare(): "RAX and CPL are already in the GHCB"
            hit("kvm.c:kvm_sev_es_hcall_prepare:rbx-rcx-rdx-rsi")
            for n in ("rbx", "rcx", "rdx", "rsi"):
                g.set(n, self.regs[n])
        else:
            hit("sev.c:vc_handle_vmmcall:no-hypervisor-hooks")
        ret = self.hv_call(EXIT["vmmcall"], 0, 0)
        if ret != ES_OK:
            hit("sev.c:vc_handle_vmmcall:hv-error")
            return ret
        if not g.is_valid("rax"):
            hit("sev.c:vc_handle_vmmcall:invalid-vmm-error")
            return ES_VMM_ERROR
        hit("sev.c:vc_handle_vmmcall:ok")
        self.regs["rax"] = g.raw("rax")
        # kvm.c: kvm_sev_es_hcall_finish() returns true ("No checking of the return state")
        return ES_OK

    # -- IOIO -------------------------------------------------------------------------------
    def vc_ioio_exitinfo(self, insn: Insn) -> tuple[str, int]:
        """sev-shared.c: vc_ioio_exitinfo() (+ sev.c: vc_ioio_check())."""
        op = insn.op0
        if len(insn.opcode) != 1:
            hit("sev-shared.c:vc_ioio_exitinfo:not-io-decode-failed")
            return ES_DECODE_FAILED, 0
        if op in (0x6C, 0x6D):
            hit("sev-shared.c:vc_ioio_exitinfo:ins")
            info, port = 1 | 4, self.regs["rdx"] & 0xFFFF
        elif op in (0x6E, 0x6F):
            hit("sev-shared.c:vc_ioio_exitinfo:outs")
            info, port = 4 | (3 << 10), self.regs["rdx"] & 0xFFFF
            seg = seg_override(insn, True)
            if seg in ("fs", "gs") and self.deviates("string-seg-override-ignored"):
                hit("sev-shared.c:vc_ioio_exitinfo:architectural-outs-segment")
                info = 4 | ({"fs": 4, "gs": 5}[seg] << 10)
        elif op in (0xE4, 0xE5):
            hit("sev-shared.c:vc_ioio_exitinfo:in-imm")
            info, port = 1, insn.imm & 0xFF
        elif op in (0xE6, 0xE7):
            hit("sev-shared.c:vc_ioio_exitinfo:out-imm")
            info, port = 0, insn.imm & 0xFF
        elif op in (0xEC, 0xED):
            hit("sev-shared.c:vc_ioio_exitinfo:in-dx")
            info, port = 1, self.regs["rdx"] & 0xFFFF
        elif op in (0xEE, 0xEF):
            hit("sev-shared.c:vc_ioio_exitinfo:out-dx")
            info, port = 0, self.regs["rdx"] & 0xFFFF
        else:
            hit("sev-shared.c:vc_ioio_exitinfo:not-io-decode-failed")
            return ES_DECODE_FAILED, 0
        info |= port << 16
        if op in (0x6C, 0x6E, 0xE4, 0xE6, 0xEC, 0xEE):
            hit("sev-shared.c:vc_ioio_exitinfo:size8")
            info, size = info | 1 << 4, 1
        elif insn.opnd_bytes == 2:
            hit("sev-shared.c:vc_ioio_exitinfo:size16")
            info, size = info | 1 << 5, 2
        else:
            hit("sev-shared.c:vc_ioio_exitinfo:size32")
            info, size = info | 1 << 6, 4
        info |= {2: 1 << 7, 4: 1 << 8, 8: 1 << 9}[insn.addr_bytes]
        if insn.has_rep():
            hit("sev-shared.c:vc_ioio_exitinfo:rep")
            info |= 1 << 3
        # sev.c: vc_ioio_check()
        if self.user:
            # current->thread.io_bitmap: NULL without ioperm, else ksys_ioperm(first, count, 1)'s
            # (all ones, [first, first + count) cleared); a bit past 65535 (an access crossing
            # port 0xffff) is set: vcsim's word after bitmap[] (the kernel reads past the struct)
            perm = self.s["ioperm"]
            if not perm:
                hit("sev.c:vc_ioio_check:user-no-io-bitmap-gp")
                self.fault = Fault(X86_TRAP_GP, 0, 0)
                return ES_EXCEPTION, info
            first, count = perm
            # for (idx = port; idx < port + size; ++idx) if (test_bit(idx, iobm->bitmap)) goto fault;
            if any(not first <= idx < first + count for idx in range(port, port + size)):
                hit("sev.c:vc_ioio_check:user-port-denied-gp")
                self.fault = Fault(X86_TRAP_GP, 0, 0)
                return ES_EXCEPTION, info
            hit("sev.c:vc_ioio_check:user-port-allowed")
        return ES_OK, info

    def string_check(self, address: int, write: bool) -> Fault | None:
        """sev-shared.c: vc_insn_string_check()."""
        if self.user and address >= TASK_SIZE_MAX and address & ~(PAGE - 1) != VSYSCALL_PAGE:
            hit("sev-shared.c:vc_insn_string_check:user-kernel-address-pf")
            return Fault(X86_TRAP_PF, X86_PF_USER | (X86_PF_WRITE if write else 0), address)
        return None

    def element_va(self, base: int, i: int, size: int, backwards: bool) -> int:
        """`base + (i * data_size * b)`: int i, unsigned int data_size, int b (-1 or 1)."""
        if not backwards:
            hit("sev-shared.c:vc_insn_string_read:forwards")
            return (base + i * size) & U64
        if self.deviates("df-string-element-offset"):
            hit("sev-shared.c:vc_insn_string_read:architectural-backwards")
            return (base - i * size) & U64
        hit("sev-shared.c:vc_insn_string_read:backwards-u32-offset")
        return (base + ((i * size * U32) & U32)) & U64

    def vc_handle_ioio(self, insn: Insn, exit_code: int) -> str:
        ret, info1 = self.vc_ioio_exitinfo(insn)
        if ret != ES_OK:  # not a rule: ruled in vc_ioio_exitinfo / vc_ioio_check
            return ret
        g, regs = self.ghcb, self.regs
        if info1 & 4:
            df = bool(self.rflags & (1 << 10))
            io_bytes = (info1 >> 4) & 7
            ghcb_count = SHARED_BUF_SIZE // io_bytes
            if info1 & 8:
                if self.deviates("rep-count-u32"):
                    hit("sev-shared.c:vc_handle_ioio:architectural-rcx-count")
                    op_count = regs["rcx"]
                else:
                    hit("sev-shared.c:vc_handle_ioio:rep-count-ecx")
                    op_count = regs["rcx"] & U32
            else:
                hit("sev-shared.c:vc_handle_ioio:string-single")
                op_count = 1
            info2 = min(op_count, ghcb_count)
            exit_bytes = info2 * io_bytes
            if not info1 & 1:
                src = regs["rsi"]
                seg = seg_override(insn, True)
                if seg in ("fs", "gs") and "string-seg-override-ignored" in self.fixed:
                    hit("sev-shared.c:vc_handle_ioio:architectural-outs-source-base")
                    src += seg_base(seg, self.regs_for(), self.user)
                fault = self.string_check(src & U64, False)
                if fault is None:  # not a rule: the copy's outcome is ruled below
                    for i in range(info2):
                        data = self.mem_read(self.element_va(src, i, io_bytes, df), io_bytes)
                        if isinstance(data, Fault):  # not a rule: ruled below (outs-read-fault)
                            fault = data
                            break
                        g.write_buffer(data, i * io_bytes)
                if fault is not None:
                    hit("sev-shared.c:vc_handle_ioio:outs-read-fault")
                    self.fault = fault
                    return ES_EXCEPTION
                hit("sev-shared.c:vc_handle_ioio:outs-read")
            g.set("sw_scratch", GHCB_PA + SHARED_BUFFER)
            ret = self.hv_call(EXIT["ioio"], info1, info2)
            if ret != ES_OK:
                hit("sev-shared.c:vc_handle_ioio:string-hv-error")
                return ret
            if info1 & 1:
                dst = regs["rdi"]
                fault = self.string_check(dst, True)
                if fault is None:  # not a rule: the copy's outcome is ruled below
                    for i in range(info2):
                        fault = self.mem_write(self.element_va(dst, i, io_bytes, df),
                                               g.buffer(io_bytes, i * io_bytes))
                        if fault is not None:  # not a rule: ruled below (ins-write-fault)
                            break
                if fault is not None:
                    hit("sev-shared.c:vc_handle_ioio:ins-write-fault")
                    self.fault = fault
                    return ES_EXCEPTION
                hit("sev-shared.c:vc_handle_ioio:ins-write")
                regs["rdi"] = (regs["rdi"] + (-exit_bytes if df else exit_bytes)) & U64
            else:
                hit("sev-shared.c:vc_handle_ioio:outs-advance-rsi")
                regs["rsi"] = (regs["rsi"] + (-exit_bytes if df else exit_bytes)) & U64
            if info1 & 8:
                hit("sev-shared.c:vc_handle_ioio:rep-decrement")
                regs["rcx"] = (regs["rcx"] - info2) & U64
            elif self.deviates("nonrep-string-io-retry"):
                hit("sev-shared.c:vc_handle_ioio:architectural-single-done")
                return ES_OK
            if regs["rcx"]:
                hit("sev-shared.c:vc_handle_ioio:rcx-left-retry")
                return ES_RETRY
            hit("sev-shared.c:vc_handle_ioio:string-done")
            return ES_OK
        bits = (info1 & 0x70) >> 1
        mask = (1 << bits) - 1
        rax = 0
        if not info1 & 1:
            hit("sev-shared.c:vc_handle_ioio:out-rax")
            rax = regs["rax"] & mask
        g.set("rax", rax)
        ret = self.hv_call(EXIT["ioio"], info1, 0)
        if ret != ES_OK:
            hit("sev-shared.c:vc_handle_ioio:hv-error")
            return ret
        if info1 & 1:
            if not g.is_valid("rax"):
                hit("sev-shared.c:vc_handle_ioio:in-invalid-vmm-error")
                return ES_VMM_ERROR
            value = g.raw("rax") & mask
            if bits < 32 and self.deviates("in-al-ax-whole-rax"):
                hit("sev-shared.c:vc_handle_ioio:architectural-in-keeps-upper")
                value |= regs["rax"] & ~mask & U64
            hit("sev-shared.c:vc_handle_ioio:in-rax")
            regs["rax"] = value
        return ES_OK

    # -- MMIO ------------------------------------------------------------------------------
    def reg_bytes(self, insn: Insn, slot: str, nbytes: int) -> tuple[str, int]:
        """(slot, byte shift) of a ModRM.reg operand: 6.1 always the slot's low bytes."""
        if (nbytes == 1 and not insn.rex and insn.reg_field >= 4
                and self.deviates("high-byte-regs")):
            hit("insn-eval.c:get_reg_offset:architectural-high-byte")
            return ("rax", "rcx", "rdx", "rbx")[insn.reg_field - 4], 8
        return slot, 0

    def vc_do_mmio(self, insn: Insn, nbytes: int, read: bool) -> str:
        """sev.c: vc_do_mmio()."""
        arch = False
        if (seg_override(insn) is False) != (seg_override(insn, True) is False) \
                and self.deviates("segment-prefix-counted-twice"):
            hit("sev.c:vc_do_mmio:architectural-one-segment-prefix")
            arch = True
        ref = insn_get_addr_ref(insn, self.regs_for(), self.rip, self.user, arch)
        if ref is None:
            hit("sev.c:vc_do_mmio:no-address-unsupported")
            return ES_UNSUPPORTED
        pa = self.virt_to_phys(ref)
        if isinstance(pa, Fault):
            if not read:
                hit("sev.c:vc_do_mmio:write-pf")
                pa.error_code |= X86_PF_WRITE
            else:
                hit("sev.c:vc_do_mmio:read-pf")
            self.fault = pa
            return ES_EXCEPTION
        if isinstance(pa, str):  # not a rule: ES_UNSUPPORTED ruled in vc_slow_virt_to_phys
            return pa
        self.ghcb.set("sw_scratch", GHCB_PA + SHARED_BUFFER)
        hit("sev.c:vc_do_mmio:hv-call")
        return self.hv_call(EXIT["mmio_read" if read else "mmio_write"], pa, nbytes)

    def vc_handle_mmio(self, insn: Insn, exit_code: int) -> str:
        """sev.c: vc_handle_mmio()."""
        mmio, nbytes = insn_decode_mmio(insn)
        if mmio == "decode_failed":
            hit("sev.c:vc_handle_mmio:decode-failed")
            return ES_DECODE_FAILED
        slot = modrm_reg(insn)
        if self.user:
            # a37cd2a59d0c (CVE-2023-46813), in 6.1.60: no MMIO emulation for user space
            hit("sev.c:vc_handle_mmio:user-unsupported")
            return ES_UNSUPPORTED
        g = self.ghcb
        if mmio == "write":
            hit("sev.c:vc_handle_mmio:write")
            src, shift = self.reg_bytes(insn, slot, nbytes)
            g.write_buffer(((self.regs[src] >> shift) & ((1 << (8 * nbytes)) - 1)).to_bytes(nbytes, "little"))
            return self.vc_do_mmio(insn, nbytes, False)
        if mmio == "write_imm":
            data = immediate1_bytes(insn)[:nbytes]
            if nbytes == 8 and self.deviates("rexw-c7-imm-upper-bytes"):
                hit("sev.c:vc_handle_mmio:architectural-imm-sign-extended")
                data = (insn.imm & U64).to_bytes(8, "little")
            hit("sev.c:vc_handle_mmio:write-imm")
            g.write_buffer(data)
            return self.vc_do_mmio(insn, nbytes, False)
        if mmio == "movs":
            hit("sev.c:vc_handle_mmio:movs")
            return self.vc_handle_mmio_movs(insn, nbytes)
        ret = self.vc_do_mmio(insn, nbytes, True)
        if ret != ES_OK:
            hit("sev.c:vc_handle_mmio:read-error")
            return ret
        data = g.buffer(nbytes)
        value = int.from_bytes(data, "little")
        old = self.regs[slot]
        if mmio == "read":
            dst, shift = self.reg_bytes(insn, slot, nbytes)
            if nbytes == 4:
                # "Zero-extend for 32-bit operation"
                hit("sev.c:vc_handle_mmio:read32-zero-extend")
                self.regs[dst] = value
            else:
                hit("sev.c:vc_handle_mmio:read-partial")
                m = ((1 << (8 * nbytes)) - 1) << shift
                self.regs[dst] = (self.regs[dst] & ~m & U64) | (value << shift)
            return ES_OK
        if mmio == "read_sign_extend":
            top = 1 << (8 * nbytes - 1)
            if value & top:
                hit("sev.c:vc_handle_mmio:sign-byte-ff")
                fill = 0xFF
            else:
                hit("sev.c:vc_handle_mmio:sign-byte-00")
                fill = 0
        else:
            hit("sev.c:vc_handle_mmio:zero-extend")
            fill = 0
        # memset(reg_data, fill, insn->opnd_bytes); memcpy(reg_data, buffer, bytes)
        opnd = insn.opnd_bytes
        slot_bytes = bytearray(old.to_bytes(8, "little"))
        slot_bytes[:opnd] = bytes([fill]) * opnd
        slot_bytes[:nbytes] = data
        new = int.from_bytes(slot_bytes, "little")
        if opnd == 4 and self.deviates("movzx-movsx-32-upper-kept"):
            hit("sev.c:vc_handle_mmio:architectural-32-zero-extend")
            new &= U32
        self.regs[slot] = new
        return ES_OK

    def vc_handle_mmio_movs(self, insn: Insn, nbytes: int) -> str:
        """sev.c: vc_handle_mmio_movs(): a read and a write, each may be a nested #VC."""
        src = self.regs["rsi"]
        seg = seg_override(insn, True)
        if seg in ("fs", "gs") and self.deviates("string-seg-override-ignored"):
            hit("sev.c:vc_handle_mmio_movs:architectural-source-segment")
            src += seg_base(seg, self.regs_for(), self.user)
        data = self.mem_read(src, nbytes)
        if isinstance(data, Fault):
            hit("sev.c:vc_handle_mmio_movs:read-fault")
            self.fault = data
            return ES_EXCEPTION
        fault = self.mem_write(self.regs["rdi"], data)
        if fault is not None:
            hit("sev.c:vc_handle_mmio_movs:write-fault")
            self.fault = fault
            return ES_EXCEPTION
        off = -nbytes if self.rflags & (1 << 10) else nbytes
        self.regs["rsi"] = (self.regs["rsi"] + off) & U64
        self.regs["rdi"] = (self.regs["rdi"] + off) & U64
        if insn.has_rep():
            hit("sev.c:vc_handle_mmio_movs:rep-decrement")
            self.regs["rcx"] = (self.regs["rcx"] - 1) & U64
            if self.regs["rcx"]:
                hit("sev.c:vc_handle_mmio_movs:rep-retry")
                return ES_RETRY
        hit("sev.c:vc_handle_mmio_movs:done")
        return ES_OK

    # -- actions ---------------------------------------------------------------------------
    def result(self, result: str, passes: int, before: list[bytes], regs: dict | None = None,
               rip: int | None = None) -> dict:
        f = self.forwarded
        regs = self.regs if regs is None else regs
        return {"op": "result", "step": self.step, "result": result, "passes": passes,
                "rip": self.rip if rip is None else rip, "regs": {**regs, "rflags": self.rflags},
                "exception": None if f is None else {"vector": f.vector, "error_code": f.error_code & U64,
                                                     "cr2": f.cr2 if f.vector == X86_TRAP_PF else 0},
                "dr7": self.dr7, "ram": self.ram_diff(before)}

    def set_regs(self, regs: dict) -> None:
        for k, v in regs.items():
            if k == "rflags":  # not a rule: applying the action's register setup
                self.rflags = v
            else:
                self.regs[k] = v

    def place(self, code: bytes) -> None:
        """vcsim: the trigger's bytes at RIP (also into a RAM page there), 0x90 up to 15."""
        for i, b in enumerate(code):
            p = self.page_of((self.rip + i) & U64)
            if p is not None and p["kind"] == "ram":  # not a rule: vcsim's code placement
                p["mem"][self.rip + i - p["va"]] = b

    def op_insn(self, a: dict) -> None:
        code = bytes.fromhex(a["bytes"])
        self.place(code)
        self.set_regs(a["regs"])
        before = self.ram_snapshot()
        self.reply = a["reply"]
        fetched = code + b"\x90" * (MAX_INSN_SIZE - len(code))
        passes, result = 0, ES_RETRY
        while passes < RETRY_LIMIT:
            passes += 1
            result = self.deliver(a["exit"], fetched)
            if result != ES_RETRY:
                hit("vcsim.c:run_insn:done")
                break
        else:
            hit("vcsim.c:run_insn:retry-limit")
            result = "retry-limit"
        self.reply = {}
        self.events.append(self.result(result, passes, before))

    def op_early_cpuid(self, a: dict) -> None:
        """sev-shared.c: do_vc_no_ghcb(regs, exit)."""
        self.set_regs(a["regs"])
        before = self.ram_snapshot()
        entry = dict(self.regs)            # what a terminated action reports (never returned)
        self.forwarded = None
        fn, subfn = a["leaf"] & U32, self.regs["rcx"] & U32
        ok = False
        if a["exit"] != EXIT["cpuid"]:
            hit("sev-shared.c:do_vc_no_ghcb:not-cpuid-terminate")
        elif fn in INDEXED_LEAVES and subfn:
            # __sev_cpuid_hv_msr(): the MSR protocol cannot convey a sub-leaf: -EINVAL
            hit("sev-shared.c:__sev_cpuid_hv_msr:indexed-subleaf-einval")
        else:
            values = []
            for reg in range(4):
                req = cpuid_req(fn, reg)
                self.msr_write(req)
                resp = self.hv_msr_protocol(req, a["resp"])
                if msr_info(resp) != GHCB_MSR_CPUID_RESP:
                    hit("sev-shared.c:__sev_cpuid_hv:bad-response-eio")
                    break
                values.append(resp >> 32)
            else:
                hit("sev-shared.c:__sev_cpuid_hv_msr:four-registers")
                if fn == 0x80000000 and values[0] < 0x8000001F:
                    hit("sev-shared.c:do_vc_no_ghcb:no-sev-leaf-terminate")
                elif fn == 0x8000001F and not values[0] & 2:
                    hit("sev-shared.c:do_vc_no_ghcb:no-sev-bit-terminate")
                else:
                    hit("sev-shared.c:do_vc_no_ghcb:ok")
                    ok = True
        if ok:  # not a rule: the outcome is ruled above
            self.regs.update(rax=values[0], rbx=values[1], rcx=values[2], rdx=values[3])
            self.rip = (self.rip + 2) & U64
            self.events.append(self.result("ok", 1, before))
        else:
            # sev_es_terminate(SEV_TERM_SET_GEN, GHCB_SEV_ES_GEN_REQ): the handler never
            # returns, the registers are the ones it was entered with
            self.msr_write(term_req(SEV_TERM_SET_GEN, GHCB_SEV_ES_GEN_REQ))
            self.events.append(self.result("terminate", 1, before, regs=entry))

    def negotiate(self, val: int | None) -> bool:
        """sev-shared.c: sev_es_negotiate_protocol() given the hypervisor's reply."""
        if val is None or msr_info(val) != GHCB_MSR_SEV_INFO_RESP:
            hit("sev-shared.c:sev_es_negotiate_protocol:not-sev-info")
            return False
        if proto_max(val) < GHCB_PROTOCOL_MIN or proto_min(val) > GHCB_PROTOCOL_MAX:
            hit("sev-shared.c:sev_es_negotiate_protocol:version-mismatch")
            return False
        hit("sev-shared.c:sev_es_negotiate_protocol:ok")
        self.ghcb_version = min(proto_max(val), GHCB_PROTOCOL_MAX)
        return True

    def op_negotiate(self, a: dict) -> None:
        """sev-shared.c: sev_es_negotiate_protocol(); on false what setup_ghcb() does."""
        before = self.ram_snapshot()
        self.forwarded = None
        self.msr_write(GHCB_MSR_SEV_INFO_REQ)
        if self.negotiate(self.hv_msr_protocol(GHCB_MSR_SEV_INFO_REQ, a["resp"])):
            hit("sev.c:setup_ghcb:negotiated")
            self.events.append(self.result("ok", 1, before))
        else:
            # sev.c: setup_ghcb(): sev_es_terminate(SEV_TERM_SET_GEN, GHCB_SEV_ES_GEN_REQ)
            hit("sev.c:setup_ghcb:terminate")
            self.msr_write(term_req(SEV_TERM_SET_GEN, GHCB_SEV_ES_GEN_REQ))
            self.events.append(self.result("terminate", 1, before))

    def op_terminate(self, a: dict) -> None:
        """sev-shared.c: sev_es_terminate(set, reason)."""
        before = self.ram_snapshot()
        self.forwarded = None
        hit("sev-shared.c:sev_es_terminate:request")
        self.msr_write(term_req(a["set"], a["reason"]))
        self.events.append(self.result("terminate", 1, before))

    def op_decode(self, a: dict) -> None:
        out = decode_mmio(bytes.fromhex(a["bytes"]), self.regs_for(), self.s["mode"])
        self.events.append({"op": "decode", "step": self.step, **out})


# arch/x86/include/asm/cpuid.h: cpuid_function_is_indexed()
INDEXED_LEAVES = frozenset({4, 7, 0xB, 0xD, 0xF, 0x10, 0x12, 0x14, 0x17, 0x18, 0x1D, 0x1E, 0x1F,
                            0x8000001D})


def _run(script: dict, fixed: frozenset[str]) -> Machine:
    m = Machine(script, fixed)
    for step, a in enumerate(script["actions"]):
        m.step = step
        handler = getattr(m, f"op_{a['op']}", None)
        if handler is None:  # not a rule: argument check
            raise ModelError(f"the sev_es model has no action {a['op']!r}")
        handler(a)
    return m


def predict(script: dict, profile: str = PROFILES[0]) -> list[dict]:
    """The events vcsim prints for `script` (normalised), in order, without "done"."""
    if profile not in PROFILES:  # not a rule: argument check
        raise ValueError(f"unknown sev_es profile {profile!r} (known: {', '.join(PROFILES)})")
    return _run(script, ALL_FIXED if profile == "architectural" else frozenset()).events


def deviations(script: dict) -> set[str]:
    """The deviations the 6.1 code path takes for `script` (whether observable or not)."""
    return _run(script, frozenset()).deviations


# ---------------------------------------------------------------- findings
def findings(script: dict, observed: list[dict]) -> list[dict]:  # not a rule: run-record bookkeeping, not kernel behaviour
    """One finding per deviation the trace exhibits: the trace is the 6.1 one, and fixing
    that deviation alone changes the prediction."""
    import json

    from harness.compare import first_divergence
    from harness.payloads.sev_es import locate

    if first_divergence(predict(script, "6.1"), observed) is not None:
        return []
    out = []
    for name in sorted(deviations(script)):
        intended = _run(copy.deepcopy(script), frozenset({name})).events
        found = first_divergence(intended, observed, lambda index, event: locate(script, index, event)[1])
        if found is None:
            continue
        where = f"step {found.step} ({found.action}): {found.field}"

        def show(value) -> str:
            return hex(value) if isinstance(value, int) and not isinstance(value, bool) else json.dumps(value)
        out.append({"id": f"sev_es/{name}", **DEVIATIONS[name],
                    "intended": f"{where} = {show(found.expected)}",
                    "observed": f"{where} = {show(found.observed)}"})
    return out
