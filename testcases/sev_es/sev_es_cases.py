"""Named SEV-ES #VC / GHCB cases, as data.

Each case: id (`sev_es/<group>/<name>`), rationale (what it pins down, with the kernel
function), script (an op-script, see harness/payloads/sev_es.py). Expected results
come from the reference model (harness/reference/sev_es.py), never from here; the
comments give the spec's worked values (/work/shared/specs/sev_es.md sections 3, 4, 6)
and, where 6.1 differs, what 6.1 does.

Layout: RAM at RAM_VA (PA 0x100000, 2 pages), a RAM page 4 GiB above it (where 6.1's
DF=1 string copies land), MMIO at MMIO_VA (PA 0xfebf0000, 2 pages), device memory at
MMIO_PA; kernel code at 0xffffffff81000000.
"""
from __future__ import annotations

RAM_VA, RAM_PA = 0xFFFF888000100000, 0x100000
WRAP_VA = RAM_VA + (1 << 32)
MMIO_VA, MMIO_PA = 0xFFFFC90000000000, 0xFEBF0000
UNMAPPED = 0xFFFF888040000000
PAGES = [{"va": RAM_VA, "pa": RAM_PA, "len": 0x2000, "kind": "ram", "data": "00112233445566778899aabbccddeeff"},
         {"va": WRAP_VA, "pa": 0x300000, "len": 0x1000, "kind": "ram", "data": "f0f1f2f3f4f5f6f7"},
         {"va": MMIO_VA, "pa": MMIO_PA, "len": 0x2000, "kind": "mmio"}]
USER_PAGES = PAGES + [{"va": 0x7F0000000000, "pa": 0x200000, "len": 0x1000, "kind": "ram"}]
DEVICE = {"pa": MMIO_PA, "data": "78563412018000ff" "efbeadde00000000"}
CPUID = [[0, 0, 0xD, 0x68747541, 0x444D4163, 0x69746E65], [0xD, 1, 0xF, 0x3C0, 0, 0],
         [0x8000001F, 0, 0x1000F, 0x40 | (51 & 0x3F), 0x1FD, 0x1], [0x80000000, 0, 0x80000021, 0, 0, 0],
         [1, 0, 0x00A20F10, 0x00040800, 0x7ED8320B, 0x178BFBFF]]
DF = 0x402
GP_REPLY = {"info1": 1, "info2": 0x8000030D}


def insn(code: str, exit_code: int, **regs) -> dict:
    return {"op": "insn", "bytes": code, "exit": exit_code, "regs": regs}


def faulty(action: dict, **reply) -> dict:
    return {**action, "reply": reply}


def case(id: str, rationale: str, actions: list, **settings) -> dict:
    script = {"pages": PAGES, "hv": {"cpuid": CPUID, "mmio": [DEVICE]}, **settings, "actions": actions}
    if "hv" in settings:
        script["hv"] = {"cpuid": CPUID, "mmio": [DEVICE], **settings["hv"]}
    return {"id": id, "rationale": rationale, "script": script}


CASES = [
    # ---------------------------------------------------------------- CPUID (#1-4, 34)
    case("sev_es/cpuid/leaf0",
         "CPUID: RAX, RCX, XCR0 valid (w0 0x8000000000000000, w1 0x201C000200000000), the HV's "
         "four registers copied, RIP+2 (sev-shared.c: vc_handle_cpuid)",
         [insn("0fa2", 0x72, rax=0, rcx=0)]),
    case("sev_es/cpuid/leaf-d-xcr0",
         "CPUID(0xD, 1) with CR4.OSXSAVE: XCR0 = XGETBV(0) (vc_handle_cpuid: ghcb_set_xcr0(xgetbv()))",
         [insn("0fa2", 0x72, rax=0xD, rcx=1)], xcr0=0xE7),
    case("sev_es/cpuid/xcr0-before-osxsave",
         "CPUID before CR4.OSXSAVE: XCR0 sent as 1 (vc_handle_cpuid: the reset value)",
         [insn("0fa2", 0x72, rax=1, rcx=0)], cr4_osxsave=0),
    case("sev_es/cpuid/reply-without-rbx",
         "HV reply lacking the RBX valid bit: ES_VMM_ERROR, kernel terminates with 0x100 "
         "(vc_handle_cpuid; exc_vmm_communication: sev_es_terminate(0, 0))",
         [faulty(insn("0fa2", 0x72, rax=0), drop=["rbx"])]),
    case("sev_es/cpuid/user-reply-without-rdx",
         "the same from user space: SIGBUS, no termination request (exc_vmm_communication user)",
         [faulty(insn("0fa2", 0x72, rax=0), drop=["rdx"])], mode="user", pages=USER_PAGES),
    case("sev_es/cpuid/user",
         "user-mode CPUID works like kernel CPUID (vc_decode_insn: __vc_decode_user_insn)",
         [insn("0fa2", 0x72, rax=0x8000001F, rcx=0)], mode="user", pages=USER_PAGES),
    case("sev_es/cpuid/hv-upper-bits",
         "a reply RAX with bits 63:32 set is copied whole (vc_handle_cpuid: regs->ax = "
         "ghcb->save.rax); CPUID writes EAX zero-extended [deviation hv-upper-bits-copied]",
         [faulty(insn("0fa2", 0x72, rax=0), set={"rax": 0xDEADBEEF0000000D})]),
    case("sev_es/cpuid/nop-with-cpuid-exit",
         "a #VC with exit code 0x72 on a NOP is emulated as CPUID, RIP+1: 6.1 has no "
         "vc_check_opcode_bytes() (CVE-2024-25742 fix e3ef461af35a not in 6.1.192)",
         [insn("90", 0x72, rax=0)]),
    case("sev_es/cpuid/vex-evex-with-cpuid-exit",
         "#VC(0x72) on VEX2 vzeroupper (c5 f8 77), VEX3 vmovdqa (c4 e1 79 6f c1) and EVEX "
         "vmovdqa32 (62 f1 7d 48 6f c1): emulated as CPUID, RIP + 3, 5, 6: the lengths of "
         "insn_get_prefixes()' VEX/EVEX decoding (next_byte += 2/3/4, pp from vex_prefix.bytes[2] "
         "for VEX3) and insn_get_opcode()'s AVX attribute (6.1: no vc_check_opcode_bytes())",
         [insn("c5f877", 0x72, rax=0), insn("c4e1796fc1", 0x72, rax=0), insn("62f17d486fc1", 0x72, rax=0)]),
    # ---------------------------------------------------------------- early CPUID, negotiation (#5-7)
    case("sev_es/msr-protocol/early-cpuid",
         "do_vc_no_ghcb: four MSR requests 0x8000001F_00000004, _40000004, _80000004, "
         "_C0000004, replies with code 0x005, RIP+2",
         [{"op": "early_cpuid", "leaf": 0x8000001F}]),
    case("sev_es/msr-protocol/early-cpuid-no-sev-bit",
         "do_vc_no_ghcb: leaf 0x8000001F without EAX bit 1 (SEV) terminates (0x100)",
         [{"op": "early_cpuid", "leaf": 0x8000001F}], hv={"cpuid": [[0x8000001F, 0, 0x8, 0x33, 0, 0]]}),
    case("sev_es/msr-protocol/early-cpuid-no-sev-leaf",
         "do_vc_no_ghcb: leaf 0x80000000 below 0x8000001F terminates",
         [{"op": "early_cpuid", "leaf": 0x80000000}], hv={"cpuid": [[0x80000000, 0, 0x80000008, 0, 0, 0]]}),
    case("sev_es/msr-protocol/early-cpuid-indexed-subleaf",
         "do_vc_no_ghcb: CPUID(7, 1) cannot go over the MSR protocol: __sev_cpuid_hv_msr() "
         "-EINVAL, terminate without any CPUID request",
         [{"op": "early_cpuid", "leaf": 7, "regs": {"rcx": 1}}]),
    case("sev_es/msr-protocol/early-cpuid-plain-leaf",
         "do_vc_no_ghcb: CPUID(1) (not indexed, ECX ignored), RAX..RDX zero-extended from "
         "the four replies",
         [{"op": "early_cpuid", "leaf": 1, "regs": {"rcx": 5, "rbx": 0xFFFFFFFFFFFFFFFF}}]),
    case("sev_es/msr-protocol/negotiate-ok",
         "sev_es_negotiate_protocol: MSR 0x002, SEV_INFO 0x0001_0001_3300_0001 accepted, "
         "the GHCB's protocol_version becomes min(max, 2)",
         [{"op": "negotiate"}, insn("0fa2", 0x72, rax=0)]),
    case("sev_es/msr-protocol/negotiate-v2",
         "SEV_INFO max=min=2: 6.1's GHCB_PROTOCOL_MAX is 2, so it is accepted (the 5.10 "
         "decompressor terminated with 0x10100) and protocol_version is 2",
         [{"op": "negotiate"}, insn("e680", 0x7B, rax=1)], hv={"sev_info": [2, 2, 51]}),
    case("sev_es/msr-protocol/negotiate-min-too-high",
         "SEV_INFO min=3 > GHCB_PROTOCOL_MAX: negotiation fails, setup_ghcb() terminates (0x100)",
         [{"op": "negotiate"}], hv={"sev_info": [3, 3, 51]}),
    case("sev_es/msr-protocol/terminate-protocol-unsupported",
         "sev_es_terminate(0, 1): MSR 0x10100 (GHCB_SEV_TERM_REASON)",
         [{"op": "terminate", "set": 0, "reason": 1}]),
    case("sev_es/msr-protocol/terminate-linux-set",
         "sev_es_terminate(1, 5): set in bits 15:12, reason in 23:16 (0x51100)",
         [{"op": "terminate", "set": 1, "reason": 5}]),
    # ---------------------------------------------------------------- IOIO (#8-18)
    case("sev_es/ioio/outb-imm8",
         "outb %al,$0x80: info1 0x00800210 (port, SZ8, A64), RAX = 0x5A valid, RIP+2 "
         "(sev-shared.c: vc_ioio_exitinfo, vc_handle_ioio)",
         [insn("e680", 0x7B, rax=0x5A)]),
    case("sev_es/ioio/inb-imm8-whole-rax",
         "inb $0x71,%al with RAX=0xffff...ff00: info1 0x00710211, RAX sent 0; 6.1 sets RAX = "
         "the zero-extended byte [deviation in-al-ax-whole-rax]",
         [insn("e471", 0x7B, rax=0xFFFFFFFFFFFFFF00)], hv={"ports": {"0x71": "12"}}),
    case("sev_es/ioio/inw-dx-whole-rax",
         "66 ED (in (%dx),%ax): SZ16 0x...0221; RAX[63:16] lost in 6.1 [in-al-ax-whole-rax]",
         [insn("66ed", 0x7B, rdx=0x1F0, rax=0x1111222233334444)], hv={"ports": {"0x1f0": "3412"}}),
    case("sev_es/ioio/inl-dx",
         "inl (%dx),%eax with DX=0xCFC: info1 0x0CFC0241, RAX = zero-extended reply, RIP+1",
         [insn("ed", 0x7B, rdx=0xCFC, rax=0xFFFFFFFFFFFFFFFF)], hv={"ports": {"0xcfc": "efbeadde"}}),
    case("sev_es/ioio/outw-dx",
         "outw %ax,(%dx) DX=0x1F0: info1 0x01F00220, RAX = AX only",
         [insn("66ef", 0x7B, rdx=0x1F0, rax=0xAAAABBBBCCCCDDDD)]),
    case("sev_es/ioio/outl-dx",
         "outl %eax,(%dx) DX=0xCF8 EAX=0x80000000: info1 0x0CF80240",
         [insn("ef", 0x7B, rdx=0xCF8, rax=0x80000000)]),
    case("sev_es/ioio/inb-reply-without-rax",
         "IN with the reply's RAX valid bit dropped: ES_VMM_ERROR (vc_handle_ioio)",
         [faulty(insn("e471", 0x7B), drop=["rax"])]),
    case("sev_es/ioio/user-inb-no-iobitmap",
         "user-mode IN without an I/O bitmap: #GP(0) (sev.c: vc_ioio_check, b9cb9c45583b in 6.1)",
         [insn("e471", 0x7B)], mode="user", pages=USER_PAGES),
    case("sev_es/ioio/user-inb-ioperm",
         "user-mode IN with an I/O bitmap permitting the port: emulated (vc_ioio_check)",
         [insn("e471", 0x7B)], mode="user", pages=USER_PAGES, ioperm=True, hv={"ports": {"0x71": "7f"}}),
    case("sev_es/ioio/user-inw-ioperm-exact",
         "user inw $0x70 with ioperm(0x70, 2, 1): bits 0x70, 0x71 clear, 0x72 set: emulated "
         "(vc_ioio_check() tests bits port..port+size-1 only; size from vc_ioio_exitinfo(): 2 "
         "for opnd_bytes 2)",
         [insn("66e570", 0x7B)], mode="user", pages=USER_PAGES, ioperm=[0x70, 2],
         hv={"ports": {"0x70": "3412"}}),
    case("sev_es/ioio/user-outl-ioperm-exact",
         "user outl %eax,(%dx) DX=0xCFC with ioperm(0xCFC, 4, 1): bits 0xCFC..0xCFF clear, "
         "0xD00 set: emulated (vc_ioio_check's loop ends at port + size)",
         [insn("ef", 0x7B, rdx=0xCFC, rax=0x80000000)], mode="user", pages=USER_PAGES, ioperm=[0xCFC, 4]),
    case("sev_es/ioio/user-inw-ioperm-half",
         "user inw $0x70 with ioperm(0x70, 1, 1): port 0x71 (the word's second byte) is not "
         "permitted: #GP(0), no VMGEXIT (vc_ioio_check tests every byte of the access)",
         [insn("66e570", 0x7B)], mode="user", pages=USER_PAGES, ioperm=[0x70, 1]),
    case("sev_es/ioio/user-rep-insw-ioperm-below",
         "user rep insw DX=0x1F0 with ioperm(0x1F1, 4, 1): port 0x1F0 itself is denied: #GP(0) "
         "before any VMGEXIT, RDI/RCX unchanged (vc_ioio_check from vc_ioio_exitinfo)",
         [insn("66f36d", 0x7B, rdx=0x1F0, rcx=2, rdi=0x7F0000000000)], mode="user", pages=USER_PAGES,
         ioperm=[0x1F1, 4]),
    case("sev_es/ioio/rep-outsb",
         "rep outsb DX=0x3F8 RCX=5: info1 0x03F80E1C, info2 5, scratch GHCB+0x800, buffer = 5 "
         "bytes at RSI, RSI+=5, RCX=0, RIP+2 (vc_handle_ioio, vc_insn_string_read)",
         [insn("f36e", 0x7B, rdx=0x3F8, rcx=5, rsi=RAM_VA)]),
    case("sev_es/ioio/rep-insw-256",
         "rep insw DX=0x1F0 RCX=256: info1 0x01F0022D, info2 256, RDI+=512, RIP+3",
         [insn("66f36d", 0x7B, rdx=0x1F0, rcx=256, rdi=RAM_VA)], hv={"ports": {"0x1f0": "a5" * 64}}),
    case("sev_es/ioio/rep-insb-5000",
         "rep insb RCX=5000: three #VCs of 2032, 2032, 936 elements (two ES_RETRY), RDI+=5000",
         [insn("f36c", 0x7B, rdx=0xE0, rcx=5000, rdi=RAM_VA)]),
    case("sev_es/ioio/rep-insl-508",
         "rep insl: at most 2032/4 = 508 dwords per #VC (RCX=509: 508 then 1)",
         [insn("f36d", 0x7B, rdx=0xE0, rcx=509, rdi=RAM_VA)]),
    case("sev_es/ioio/rep-outsw-df",
         "rep outsw with DF=1 RCX=3 RSI=p: 6.1 reads element i at p + 2^32 - 2i (unsigned int "
         "offset in vc_insn_string_read) from the page 4 GiB up, architecture p, p-2, p-4 "
         "[deviation df-string-element-offset]; RSI -= 6",
         [insn("f3666f", 0x7B, rdx=0xE0, rcx=3, rsi=RAM_VA + 8)], regs={"rflags": DF}),
    case("sev_es/ioio/rep-insb-df-fault",
         "rep insb with DF=1 RCX=3: the second element's address (+2^32-1) is unmapped: "
         "#PF(PROT|WRITE) after the VMGEXIT, RDI and RCX unchanged (vc_insn_string_write)",
         [insn("f36c", 0x7B, rdx=0xE0, rcx=3, rdi=RAM_VA + 0x1010)], regs={"rflags": DF}),
    case("sev_es/ioio/rep-outsb-then-insb-buffer",
         "rep outsb RCX=3 then rep insb RCX=4: INS's request shows the shared buffer as the "
         "kernel left it: the three OUTS bytes and byte 3 untouched (0): vc_insn_string_read() -> "
         "vc_read_mem() copies exactly data_size bytes per element (memcpy(buf, &d1, 1))",
         [insn("f36e", 0x7B, rdx=0xE0, rcx=3, rsi=RAM_VA), insn("f36c", 0x7B, rdx=0xE0, rcx=4, rdi=RAM_VA + 0x100)]),
    case("sev_es/ioio/outsl-no-rep-rcx0",
         "outsl without REP, RCX=0: info1 0x00E00244 | STR, info2 1, RIP+1",
         [insn("6f", 0x7B, rdx=0xE0, rcx=0, rsi=RAM_VA)]),
    case("sev_es/ioio/outsl-no-rep-rcx3",
         "outsl without REP, RCX=3: 6.1 returns ES_RETRY (RCX is not a count here): the "
         "instruction runs again and again, RSI moving each pass [nonrep-string-io-retry]",
         [insn("6f", 0x7B, rdx=0xE0, rcx=3, rsi=RAM_VA)]),
    case("sev_es/ioio/rep-outsb-rcx-4g",
         "rep outsb RCX=2^32+2: op_count is the low 32 bits (2); after one pass RCX=2^32 and "
         "every later pass moves 0 elements [rep-count-u32]",
         [insn("f36e", 0x7B, rdx=0xE0, rcx=(1 << 32) + 2, rsi=RAM_VA)]),
    case("sev_es/ioio/outsb-fs-override",
         "fs outsb: OUTS reports IOIO_SEG_DS and reads ES_base+RSI whatever the prefix "
         "[string-seg-override-ignored] (vc_ioio_exitinfo)",
         [insn("646e", 0x7B, rdx=0xE0, rcx=0, rsi=RAM_VA)]),
    case("sev_es/ioio/outsb-unmapped",
         "rep outsb from an unmapped address: #PF(PROT) with CR2 = RSI before any VMGEXIT "
         "(vc_insn_string_read, vc_read_mem)",
         [insn("f36e", 0x7B, rdx=0xE0, rcx=2, rsi=UNMAPPED)]),
    case("sev_es/ioio/outsb-from-mmio",
         "outsb from an MMIO page: vc_read_mem() takes a nested #VC (MMIO read) while the "
         "outer #VC holds the GHCB, which __sev_get_ghcb() backs up and restores",
         [insn("6e", 0x7B, rdx=0xE0, rcx=0, rsi=MMIO_VA)]),
    case("sev_es/ioio/user-rep-insb-kernel-address",
         "user rep insb with ioperm and RDI in kernel space: #PF(USER|WRITE) at RDI "
         "(vc_insn_string_check, 63e44bc52047 in 6.1)",
         [insn("f36c", 0x7B, rdx=0xE0, rcx=2, rdi=RAM_VA)], mode="user", pages=USER_PAGES, ioperm=True),
    case("sev_es/ioio/a32-string",
         "67 f3 6e: addr_bytes 4 gives A32 (bit 8) in info1 (vc_ioio_exitinfo)",
         [insn("67f36e", 0x7B, rdx=0xE0, rcx=1, rsi=RAM_VA)]),
    case("sev_es/ioio/rep-insw-four-prefixes-repeated",
         "66 f3 67 2e 66 6d: four distinct prefixes, the first repeated last: insn_get_prefixes() "
         "swaps it into bytes[3] and bytes[3]'s old 2e into its slot (2e f3 67 66), so "
         "for_each_insn_prefix() still sees F3: REP (bit 3), SZ16, A32, two words (insn.c "
         "\"Swap the last prefix\"; insn_has_rep_prefix)",
         [insn("66f3672e666d", 0x7B, rdx=0xE0, rcx=2, rdi=RAM_VA)], hv={"ports": {"0xe0": "a1b2c3d4"}}),
    case("sev_es/ioio/not-io-opcode",
         "exit 0x7B on a non-I/O instruction: vc_ioio_exitinfo() ES_DECODE_FAILED, terminate",
         [insn("90", 0x7B)]),
    # ---------------------------------------------------------------- MSR (#19-21)
    case("sev_es/msr/rdmsr",
         "rdmsr ECX=0x1B: info1 0, RCX valid (w1 0x001C000200000000), RAX/RDX from the reply",
         [insn("0f32", 0x7C, rcx=0x1B)], hv={"msrs": {"0x1b": 0xFEE00900}}),
    case("sev_es/msr/wrmsr",
         "wrmsr ECX=0x6E0: info1 1, RAX RCX RDX valid (w0 0x8000000000000000, w1 0x001C000600000000)",
         [insn("0f30", 0x7C, rcx=0x6E0, rax=0x12345678, rdx=0x9)]),
    case("sev_es/msr/rdmsr-unknown-gp",
         "RDMSR of an MSR the HV does not know: info1 1, info2 0x8000030D: #GP(0), no RIP advance",
         [insn("0f32", 0x7C, rcx=0xC0DE)]),
    case("sev_es/msr/rdmsr-no-valid-check",
         "RDMSR with the reply's RAX/RDX valid bits dropped: 6.1 copies them anyway "
         "(vc_handle_msr) [deviation rdmsr-no-valid-check]",
         [faulty(insn("0f32", 0x7C, rcx=0x1B), drop=["rax", "rdx"])], hv={"msrs": {"0x1b": 0xFEE00900}}),
    case("sev_es/msr/wrmsr-then-rdmsr",
         "the HV stores a WRMSR, a later RDMSR returns it",
         [insn("0f30", 0x7C, rcx=0xC0000080, rax=0xD01, rdx=0), insn("0f32", 0x7C, rcx=0xC0000080)]),
    # ---------------------------------------------------------------- DR7 (#22-24)
    case("sev_es/dr7/write-read",
         "mov %rax,%dr7 RAX=0x401: info1 0, RAX=(v & 0xFFFF23FF)|0x400, cached; mov %dr7,%rax "
         "returns the cache with no VMGEXIT (vc_handle_dr7_write/read)",
         [insn("0f23f8", 0x37, rax=0x401), insn("0f21f8", 0x27, rax=0)]),
    case("sev_es/dr7/write-reserved-bits-cleared",
         "mov %rax,%dr7 with every low bit set (RAX=0xFFFFFFFF): the request carries "
         "(v & 0xFFFF23FF) | 0x400 = 0xFFFF27FF, the reserved bits 10-12, 14 and 15 cleared, and "
         "the cache keeps it (vc_handle_dr7_write)",
         [insn("0f23f8", 0x37, rax=0xFFFFFFFF), insn("0f21f8", 0x27, rax=0)]),
    case("sev_es/dr7/read-before-write",
         "mov %dr7,%rax before any write: the cache is 0 in 6.1 (init_ghcb() never sets "
         "data->dr7; the spec's 0x400 is the VMSA's)",
         [insn("0f21f8", 0x27, rax=0xFFFF)]),
    case("sev_es/dr7/write-upper-bits-gp",
         "mov %rax,%dr7 with RAX=1<<32: #GP(0) and no VMGEXIT (vc_handle_dr7_write)",
         [insn("0f23f8", 0x37, rax=1 << 32)]),
    case("sev_es/dr7/write-disp32-form",
         "0f 23 3d (ModRM mod 0 rm 5): vc_insn_get_rm() has no register (-EDOM): ES_DECODE_FAILED",
         [insn("0f233d00000000", 0x37)]),
    # ---------------------------------------------------------------- other NAE events (#25-33)
    case("sev_es/nae/wbinvd",
         "wbinvd: exit 0x89, info 0/0, base bitmap only (vc_handle_wbinvd)",
         [insn("0f09", 0x89)]),
    case("sev_es/nae/rdtsc",
         "rdtsc: exit 0x6E, RAX/RDX from the reply (vc_handle_rdtsc)",
         [insn("0f31", 0x6E)], hv={"tsc": 0x123456789ABCDEF0}),
    case("sev_es/nae/rdtscp",
         "rdtscp: exit 0x87, RCX = TSC_AUX too, RIP+3",
         [insn("0f01f9", 0x87)], hv={"tsc": 0x1122334455, "tsc_aux": 3}),
    case("sev_es/nae/rdtscp-reply-without-rcx",
         "rdtscp with the reply's RCX dropped: ES_VMM_ERROR (vc_handle_rdtsc)",
         [faulty(insn("0f01f9", 0x87), drop=["rcx"])]),
    case("sev_es/nae/rdpmc",
         "rdpmc ECX=0: RCX valid, RAX/RDX from the reply (vc_handle_rdpmc)",
         [insn("0f33", 0x6F, rcx=0)], hv={"pmc": {"0": 0x1_0000_0002}}),
    case("sev_es/nae/invd",
         "invd: ES_UNSUPPORTED, kernel terminates 0x100 (vc_handle_exitcode)",
         [insn("0f08", 0x76)]),
    case("sev_es/nae/monitor-mwait",
         "monitor/mwait: NOPs without a VMGEXIT, RIP+3 each (vc_handle_monitor/mwait)",
         [insn("0f01c8", 0x8A), insn("0f01c9", 0x8B)]),
    case("sev_es/nae/monitorx-mwaitx",
         "monitorx/mwaitx: the same exit codes, also NOPs in 6.1 (no opcode check)",
         [insn("0f01fa", 0x8A), insn("0f01fb", 0x8B)]),
    case("sev_es/nae/vmmcall-kernel",
         "vmmcall on KVM: RAX and CPL 0 valid (w0 0x8000000002000000) plus RBX RCX RDX RSI from "
         "kvm.c's kvm_sev_es_hcall_prepare (w1 0x001C004E00000000), RAX from the reply, RIP+3 "
         "(vc_handle_vmmcall)",
         [insn("0f01d9", 0x81, rax=9, rbx=1, rsi=2)], hv={"vmmcall_rax": 0}),
    case("sev_es/nae/vmmcall-no-hooks",
         "vmmcall with no x86_platform.hyper hooks (not on KVM): only RAX and CPL valid",
         [insn("0f01d9", 0x81, rax=9, rbx=1)], kvm=0),
    case("sev_es/nae/vmmcall-user",
         "user vmmcall: CPL 3, KVM answers -KVM_EPERM, no signal",
         [insn("0f01d9", 0x81, rax=1)], mode="user", pages=USER_PAGES),
    case("sev_es/nae/ac",
         "#AC (exit 0x51): no decode, no VMGEXIT, #AC(0) forwarded, RIP unchanged (vc_handle_trap_ac)",
         [insn("8b07", 0x51)]),
    case("sev_es/nae/db",
         "#DB (exit 0x41): exc_debug() before the GHCB is taken (exc_vmm_communication)",
         [insn("90", 0x41)]),
    case("sev_es/nae/unknown-exit",
         "exit 0x8D (XSETBV): ES_UNSUPPORTED, kernel terminate (vc_handle_exitcode default)",
         [insn("0f01d1", 0x8D)]),
    case("sev_es/nae/unknown-exit-user",
         "exit 0x7A from user space: SIGBUS, no termination request",
         [insn("90", 0x7A)], mode="user", pages=USER_PAGES),
    # ---------------------------------------------------------------- MMIO (#35-43)
    case("sev_es/mmio/mov-load32",
         "mov (%rdi),%eax: exit 0x80000001, info1 PA, info2 4, scratch GHCB+0x800 (w1 "
         "0x003C000000000000), EAX from the buffer, RAX[63:32]=0 (vc_handle_mmio MMIO_READ)",
         [insn("8b07", 0x400, rdi=MMIO_VA, rax=0xFFFFFFFFFFFFFFFF)]),
    case("sev_es/mmio/mov-load8-16",
         "mov (%rdi),%al and %ax: 1- and 2-byte reads keep the upper bits",
         [insn("8a07", 0x400, rdi=MMIO_VA + 4, rax=0xFFFFFFFFFFFFFFFF),
          insn("668b07", 0x400, rdi=MMIO_VA + 4)]),
    case("sev_es/mmio/mov-load64-disp",
         "mov 0x8(%rdi),%r9 (REX.W+R, disp8): 8-byte read into R9",
         [insn("4c8b4f08", 0x400, rdi=MMIO_VA)]),
    case("sev_es/mmio/mov-store64",
         "mov %rax,(%rdi): exit 0x80000002, info2 8, buffer = RAX, RIP+3 (MMIO_WRITE)",
         [insn("488907", 0x400, rdi=MMIO_VA + 8, rax=0x1122334455667788)]),
    case("sev_es/mmio/mov-store-imm",
         "movb $0x5a,(%rdi) and movw $0x1234,(%rdi): buffer 5a / 34 12, RIP+3 / +5 (MMIO_WRITE_IMM)",
         [insn("c6075a", 0x400, rdi=MMIO_VA), insn("66c7073412", 0x400, rdi=MMIO_VA)]),
    case("sev_es/mmio/movq-imm-minus1",
         "movq $-1,(%rdi): 8 bytes from the 4-byte immediate field: ff ff ff ff then the "
         "decoder's got/nbytes (01 04 00 00), not the sign extension [rexw-c7-imm-upper-bytes]",
         [insn("48c707ffffffff", 0x400, rdi=MMIO_VA)]),
    case("sev_es/mmio/movzbl-upper-kept",
         "movzbl (%rdi),%eax with RAX=~0: EAX = the byte, 6.1 keeps RAX[63:32] "
         "[movzx-movsx-32-upper-kept] (MMIO_READ_ZERO_EXTEND)",
         [insn("0fb607", 0x400, rdi=MMIO_VA + 4, rax=0xFFFFFFFFFFFFFFFF)]),
    case("sev_es/mmio/movswq",
         "movswq (%rdi),%rax on 0x8001: RAX = 0xFFFFFFFFFFFF8001, RIP+4 (MMIO_READ_SIGN_EXTEND)",
         [insn("480fbf07", 0x400, rdi=MMIO_VA + 5)]),
    case("sev_es/mmio/movsbl-upper-kept",
         "movsbl (%rdi),%ecx on 0x80: ECX = 0xFFFFFF80, 6.1 keeps RCX[63:32] [movzx-movsx-32-upper-kept]",
         [insn("0fbe0f", 0x400, rdi=MMIO_VA + 5, rcx=0x123456789ABCDEF0)]),
    case("sev_es/mmio/movzwl-16-dest",
         "66 0f b7 (movzx r16, m16): opnd 2, the upper 48 bits kept (as the instruction does)",
         [insn("660fb707", 0x400, rdi=MMIO_VA, rax=0xFFFFFFFFFFFFFFFF)]),
    case("sev_es/mmio/store-ah",
         "mov %ah,(%rdi) (88 27): 6.1 sends the low byte of RSP (ModRM.reg 4 without REX) "
         "[high-byte-regs]; with a REX prefix (40 88 27) it is SPL in both",
         [insn("8827", 0x400, rdi=MMIO_VA, rax=0xA5B6, rsp=0x77),
          insn("408827", 0x400, rdi=MMIO_VA, rsp=0x77)]),
    case("sev_es/mmio/load-bh",
         "mov (%rdi),%bh (8a 3f): 6.1 writes the low byte of RDI [high-byte-regs]",
         [insn("8a3f", 0x400, rdi=MMIO_VA, rbx=0)]),
    case("sev_es/mmio/sib-rip-fs",
         "SIB base+index*4+disp8, RIP-relative and FS-override forms resolved by "
         "insn_get_addr_ref (get_eff_addr_sib/get_eff_addr_modrm; FS base 0 here)",
         [insn("8b448b10", 0x400, rbx=MMIO_VA, rcx=2), insn("648b07", 0x400, rdi=MMIO_VA),
          insn("8b0500000000", 0x400)]),
    case("sev_es/mmio/fs-gs-base",
         "64 8b 07 and 65 8b 47 08 with FS base = the first MMIO page, GS base = the second: "
         "resolve_seg_reg() keeps an FS/GS override in long mode and insn_get_seg_base() adds "
         "MSR_FS_BASE / MSR_GS_BASE (vc_handle_mmio via insn_get_addr_ref; info1 = the PA of "
         "base + RDI (+8)); the decoder differential's ea shows the same sum",
         [insn("648b07", 0x400, rdi=0x8), insn("658b4708", 0x400, rdi=0x10),
          {"op": "decode", "bytes": "648b07"}, {"op": "decode", "bytes": "65488b4708"}],
         fs_base=MMIO_VA, gs_base=MMIO_VA + 0x1000, regs={"rdi": 0x8}),
    case("sev_es/mmio/three-prefixes-fs",
         "66 f3 64 8b 07: the last of three distinct prefixes is duplicated into "
         "prefixes.bytes[3] (insn_get_prefixes), the FS override counts twice: "
         "insn_get_addr_ref -1, ES_UNSUPPORTED [segment-prefix-counted-twice]",
         [insn("66f3648b07", 0x400, rdi=MMIO_VA)]),
    case("sev_es/mmio/two-overrides",
         "64 65 8b 07: two segment overrides: get_seg_reg_override_idx -EINVAL, ES_UNSUPPORTED",
         [insn("64658b07", 0x400, rdi=MMIO_VA)]),
    case("sev_es/mmio/a32-address",
         "67 8b 07: a 32-bit address (EDI) in 64-bit mode: get_addr_ref_32, no limit check",
         [insn("678b07", 0x400, rdi=MMIO_VA)], pages=PAGES + [{"va": 0, "pa": 0x400000, "len": 0x1000,
                                                                 "kind": "mmio"}]),
    case("sev_es/mmio/register-form",
         "8b c6 (mov %esi,%eax, mod 3) with an NPF exit: get_eff_addr_reg() takes RSI's value "
         "as the address (a HV-injected #VC)",
         [insn("8bc6", 0x400, rsi=MMIO_VA + 8)]),
    case("sev_es/mmio/movsl-from-mmio",
         "movsl with RSI on MMIO, RDI in RAM: the outer #VC (0x400) makes no VMGEXIT, the "
         "read is a nested #VC (0x80000001, 4); RSI/RDI += 4, RIP+1 (vc_handle_mmio_movs)",
         [insn("a5", 0x400, rsi=MMIO_VA, rdi=RAM_VA + 0x100)]),
    case("sev_es/mmio/rep-movsb-to-mmio",
         "rep movsb RCX=3 RAM->MMIO: three outer #VCs (ES_RETRY twice), one nested write each",
         [insn("f3a4", 0x400, rsi=RAM_VA, rdi=MMIO_VA + 0x10, rcx=3)]),
    case("sev_es/mmio/movsq-df",
         "movsq with DF=1: RSI/RDI -= 8 after the copy",
         [insn("48a5", 0x400, rsi=MMIO_VA + 0x8, rdi=RAM_VA + 0x200)], regs={"rflags": DF}),
    case("sev_es/mmio/addl-unsupported",
         "addl $1,(%rdi) (83 07 01): not an MMIO form: 6.1's insn_decode_mmio() gives "
         "MMIO_DECODE_FAILED, so ES_DECODE_FAILED (5.10: ES_UNSUPPORTED), terminate",
         [insn("830701", 0x400, rdi=MMIO_VA)]),
    case("sev_es/mmio/movsxd-unsupported",
         "movslq (%rdi),%rax (48 63 07): 6.1's insn_decode_mmio() has no MOVSXD: ES_DECODE_FAILED",
         [insn("486307", 0x400, rdi=MMIO_VA)]),
    case("sev_es/mmio/user-unsupported",
         "user-mode MMIO: ES_UNSUPPORTED, SIGBUS (a37cd2a59d0c, CVE-2023-46813, in 6.1)",
         [insn("8b07", 0x400, rdi=MMIO_VA)], mode="user", pages=USER_PAGES),
    case("sev_es/mmio/unmapped-write-pf",
         "mov %eax,(%rdi) to an unmapped address: no PTE, #PF with X86_PF_WRITE (vc_do_mmio)",
         [insn("8907", 0x400, rdi=UNMAPPED)]),
    case("sev_es/mmio/ram-page",
         "an MMIO exit on a RAM page: vcsim's PTEs have no C-bit, so it is emulated as MMIO",
         [insn("8b07", 0x400, rdi=RAM_VA)]),
    # ---------------------------------------------------------------- HV fault injection (#46-48)
    case("sev_es/hv-reply/exception-gp-error-code",
         "reply info1=1, info2=0x80000B0D|(5<<32): #GP with error code 5 (verify_exception_info)",
         [faulty(insn("0f30", 0x7C, rcx=0x10), info1=1, info2=0x80000B0D | (5 << 32))]),
    case("sev_es/hv-reply/exception-ud",
         "reply with a #UD event: forwarded #UD (verify_exception_info)",
         [faulty(insn("0f09", 0x89), info1=1, info2=0x80000306)]),
    case("sev_es/hv-reply/exception-pf-refused",
         "reply with a #PF event (0x8000030E): only #GP/#UD are accepted: ES_VMM_ERROR",
         [faulty(insn("0f31", 0x6E), info1=1, info2=0x8000030E)]),
    case("sev_es/hv-reply/exception-valid-from-upper-bits",
         "info2 = 0x0000_0001_0000_030D: bit 31 clear but SVM_EVTINJ_VALID is the int 1<<31, "
         "sign-extended to 0xffffffff80000000 as a u64 mask, so bit 32 makes it valid: #GP",
         [faulty(insn("0f32", 0x7C, rcx=0x1B), info1=1, info2=0x000000010000030D)],
         hv={"msrs": {"0x1b": 1}}),
    case("sev_es/hv-reply/exception-not-exception-type",
         "event type 2 (NMI) with vector 13: not an exception: ES_VMM_ERROR",
         [faulty(insn("0f32", 0x7C, rcx=0x1B), info1=1, info2=0x8000020D)], hv={"msrs": {"0x1b": 1}}),
    case("sev_es/hv-reply/malformed-input",
         "reply info1=2 info2=4 (missing input): 6.1 (06f2ac3d4219) makes it ES_VMM_ERROR",
         [faulty(insn("0f30", 0x7C, rcx=0x10), info1=2, info2=4)]),
    case("sev_es/hv-reply/info1-upper-bits-ignored",
         "reply info1 = 1<<32: only bits 31:0 count, success",
         [faulty(insn("0f09", 0x89), info1=1 << 32)]),
    case("sev_es/hv-reply/cpuid-gp",
         "a #GP reply to CPUID: forwarded before the valid bits are looked at (vc_handle_cpuid)",
         [faulty(insn("0fa2", 0x72, rax=0), **GP_REPLY)]),
    case("sev_es/hv-reply/out-malformed",
         "info1=2 to an OUT: ES_VMM_ERROR (vc_handle_ioio)",
         [faulty(insn("e680", 0x7B, rax=1), info1=2, info2=4)]),
    case("sev_es/hv-reply/rep-outsb-gp",
         "a #GP reply to REP OUTSB: forwarded, RSI and RCX unchanged (vc_handle_ioio string path)",
         [faulty(insn("f36e", 0x7B, rdx=0xE0, rcx=4, rsi=RAM_VA), **GP_REPLY)]),
    case("sev_es/hv-reply/dr7-write-malformed",
         "info1=2 to a DR7 write: ES_VMM_ERROR, the cache keeps its value (vc_handle_dr7_write)",
         [faulty(insn("0f23f8", 0x37, rax=0x401), info1=2, info2=4), insn("0f21f8", 0x27)]),
    case("sev_es/hv-reply/rdpmc-errors",
         "RDPMC: a #UD reply is forwarded; a reply without RDX is ES_VMM_ERROR (vc_handle_rdpmc)",
         [faulty(insn("0f33", 0x6F, rcx=0), info1=1, info2=0x80000306),
          faulty(insn("0f33", 0x6F, rcx=0), drop=["rdx"])]),
    case("sev_es/hv-reply/vmmcall-errors",
         "VMMCALL: a #GP reply is forwarded; a reply without RAX is ES_VMM_ERROR (vc_handle_vmmcall)",
         [faulty(insn("0f01d9", 0x81, rax=1), **GP_REPLY), faulty(insn("0f01d9", 0x81, rax=1), drop=["rax"])]),
    case("sev_es/nae/rdpmc-unknown-counter",
         "RDPMC of a counter the HV has no value for: vcsim's HV answers 0",
         [insn("0f33", 0x6F, rcx=5)]),
    case("sev_es/nae/vmmcall-unknown-hypercall",
         "kernel VMMCALL with no vmmcall_rax: the HV answers -KVM_ENOSYS",
         [insn("0f01d9", 0x81, rax=0x1234)]),
    case("sev_es/nae/decode-failed-15-prefixes",
         "15 operand-size prefixes: no opcode within MAX_INSN_SIZE, insn_decode() fails: "
         "ES_DECODE_FAILED (__vc_decode_kern_insn)",
         [insn("66" * 15, 0x72)]),
    case("sev_es/dr7/read-disp32-form",
         "0f 21 3d: vc_insn_get_rm() -EDOM: ES_DECODE_FAILED (vc_handle_dr7_read)",
         [insn("0f213d00000000", 0x27)]),
    case("sev_es/mmio/movs-faults",
         "MOVS with an unmapped source, then an unmapped destination: #PF(PROT) at RSI, "
         "#PF(PROT|WRITE) at RDI (vc_handle_mmio_movs, vc_read_mem/vc_write_mem)",
         [insn("a4", 0x400, rsi=UNMAPPED, rdi=MMIO_VA), insn("a4", 0x400, rsi=MMIO_VA, rdi=UNMAPPED)]),
    case("sev_es/mmio/address-all-ones",
         "an MMIO operand at 0xffffffffffffffff: that is insn_get_addr_ref()'s -1, ES_UNSUPPORTED",
         [insn("8b06", 0x400, rsi=0xFFFFFFFFFFFFFFFF)]),
    case("sev_es/msr-protocol/early-cpuid-wrong-response",
         "early CPUID whose reply carries GHCBInfo 0x001 instead of 0x005: __sev_cpuid_hv() "
         "-EIO after the first request, terminate 0x100 (needs vcsim's early_cpuid resp=)",
         [{"op": "early_cpuid", "leaf": 0x8000001F, "resp": 0x001}]),
    case("sev_es/msr-protocol/early-cpuid-not-cpuid-exit",
         "do_vc_no_ghcb() with an exit code other than 0x72: terminate without a request "
         "(needs vcsim's early_cpuid exit=)",
         [{"op": "early_cpuid", "leaf": 0, "exit": 0x7B}]),
    case("sev_es/msr-protocol/negotiate-wrong-response",
         "a SEV_INFO reply with GHCBInfo 0x003: sev_es_negotiate_protocol() false, terminate "
         "(needs vcsim's negotiate resp=)",
         [{"op": "negotiate", "resp": 0x003}]),
    case("sev_es/decode/vex-evex",
         "insn_decode() of VEX2/VEX3/EVEX forms: vzeroupper (c5 f8 77, c4 e1 78 77), vmovdqa "
         "(c4 e1 79 6f c1), vmovdqu32 [rax] (62 f1 7e 48 6f 00) decode (3, 4, 5, 6 bytes); the same "
         "opcodes with a pp that has no VEX form (c4 e1 78 6f c1: movq mm; c5 f9 77) and a "
         "truncated VEX3 (c4 e1) fail: insn_get_opcode()'s !inat_accept_vex(), -ENODATA",
         [{"op": "decode", "bytes": b} for b in (
             "c5f877", "c4e17877", "c4e1796fc1", "62f17e486f00", "62f17d486fc1", "c4e1786fc1", "c5f977",
             "c4e1")]),
    # ---------------------------------------------------------------- decoder differential
    case("sev_es/decode/mmio-forms",
         "insn_decode + insn_decode_mmio + insn_get_addr_ref for every MMIO opcode, SIB, "
         "RIP-relative, REX, 66/67, segment overrides, and truncated/refused encodings",
         [{"op": "decode", "bytes": b} for b in (
             "8807", "4889470c", "8a24", "668b0c8b", "c6055a000000ff", "48c7c0ffffffff", "66c7073412",
             "a4", "f348a5", "0fb64510", "0fb7048d00010000", "480fbe07", "0fbf4f10", "678b07", "648b07",
             "658b442408", "2e8b07", "666764 8b07".replace(" ", ""), "63c7", "830701", "8b", "0fb6",
             "4c8b3c24", "41885d00", "8b0425efbeadde", "8b04a5f0000000", "8b0c24", "8b06")],
         regs={"rax": 0x1000, "rbx": 0x2000, "rcx": 3, "rsp": 0x7000, "rbp": 0x8000, "rdi": 0xFFFFC90000000010,
               "r13": 0x13000, "rsi": 0xFFFFFFFFFFFFFFFF}),
]
