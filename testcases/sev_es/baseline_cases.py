"""sev_es/baseline/*: #VC triggers run natively in a normal guest, as data.

Each case: "mode" (user: bytes run by the trigger program; kernel: ops of the
kvmconf_vc module's catalogue), "regs" (start; "ram+N" / "mmio+N" are addresses in the
program's RAM page and its /dev/mem mapping of pc-testdev's iomem), "port" (pc-testdev's
loopback register before), "iomem" / "ram" (hex, their first bytes before), "ioperm"
(user mode: ports 0xe0-0xef granted; default 1), "msrs" (the model hypervisor's MSRs),
"triggers" (each "bytes" or "kop", its "exit" kind (harness/reference/sev_es.py EXIT),
"regs" set before it). The expected results are the model's architectural predictions
(harness/payloads/sev_es_baseline.py), never written here.
"""
GARBAGE = 0xDEADBEEFCAFEBABE      # upper register bits a trigger must keep or clear


def _user(cid, why, triggers, **kw):
    return {"id": f"sev_es/baseline/{cid}", "rationale": why, "mode": "user", "triggers": triggers, **kw}


def _kernel(cid, why, triggers, **kw):
    return {"id": f"sev_es/baseline/{cid}", "rationale": why, "mode": "kernel", "triggers": triggers, **kw}


def _io(code, **regs):
    return {"bytes": code, "exit": "ioio", "regs": regs}


def _mmio(code, **regs):
    return {"bytes": code, "exit": "npf", "regs": regs}


DEV = 0x11223344
BLOB = "0102030405060708f1f2f3f4f5f6f7f8a0a1a2a3a4a5a6a7"

CASES = [
    # -- port I/O on pc-testdev (user mode, ioperm granted) --------------------------
    _user("ioio/out-al-in-al", "OUT AL then IN AL: one byte through the loopback; IN AL keeps RAX[63:8]",
          [_io("e6e0", rax=0x5A), _io("e4e0", rax=GARBAGE)], port=DEV),
    _user("ioio/in-al-offset-port", "IN AL from port 0xe1 reads byte 1 of the register",
          [_io("e4e1", rax=GARBAGE)], port=DEV),
    _user("ioio/in-ax-dx", "IN AX, DX keeps RAX[63:16] (6.1 replaces the whole RAX)",
          [_io("66ed", rax=GARBAGE, rdx=0xE0)], port=DEV),
    _user("ioio/in-eax-imm", "IN EAX zero-extends into RAX", [_io("e5e0", rax=GARBAGE)], port=DEV),
    _user("ioio/out-ax-imm", "OUT AX writes the low 16 bits of the register",
          [_io("66e7e0", rax=0xFFFF0000BEEF)], port=DEV),
    _user("ioio/out-eax-dx", "OUT EAX, DX writes all 32 bits", [_io("ef", rax=0xA5A5A5A5C3C3C3C3, rdx=0xE0)],
          port=DEV),
    _user("ioio/out-al-dx-port-e2", "OUT AL, DX to 0xe2 replaces byte 2 only",
          [_io("ee", rax=0x77, rdx=0xE2)], port=DEV),
    _user("ioio/rep-outsb", "REP OUTSB: each byte in turn, RSI and RCX advance",
          [_io("f36e", rsi="ram+0", rcx=5, rdx=0xE0)], ram=BLOB, port=DEV),
    _user("ioio/rep-outsb-df", "REP OUTSB with DF=1 walks down",
          [_io("f36e", rsi="ram+6", rcx=3, rdx=0xE0)], ram=BLOB, port=DEV, regs={"rflags": 0x402}),
    _user("ioio/rep-outsw", "REP OUTSW: 16-bit elements", [_io("66f36f", rsi="ram+2", rcx=3, rdx=0xE0)],
          ram=BLOB, port=DEV),
    _user("ioio/outsd-no-rep", "OUTSD without REP: one element, RCX untouched",
          [_io("6f", rsi="ram+4", rcx=GARBAGE, rdx=0xE0)], ram=BLOB, port=DEV),
    _user("ioio/rep-insb", "REP INSB: RDI advances, RAM gets the port's byte",
          [_io("f36c", rdi="ram+1", rcx=4, rdx=0xE0)], port=0xA5),
    _user("ioio/rep-insw-df", "REP INSW with DF=1", [_io("66f36d", rdi="ram+16", rcx=3, rdx=0xE0)],
          port=DEV, regs={"rflags": 0x402}),
    _user("ioio/rep-insd", "REP INSD", [_io("f36d", rdi="ram+8", rcx=2, rdx=0xE0)], port=DEV),
    _user("ioio/rep-count-zero", "REP OUTSB with RCX=0 does nothing",
          [_io("f36e", rsi="ram+0", rcx=0, rdx=0xE0)], ram=BLOB, port=DEV),
    _user("ioio/no-ioperm-gp", "IN without I/O permission: #GP(0), nothing changes",
          [_io("e4e0", rax=GARBAGE)], port=DEV, ioperm=0),
    # -- CPUID, RDTSC(P) ----------------------------------------------------------------
    _user("cpuid/leaf0", "CPUID zero-extends EAX..EDX into the 64-bit registers",
          [{"bytes": "0fa2", "exit": "cpuid", "regs": {"rax": 0xFFFFFFFF00000000, "rbx": GARBAGE,
                                                        "rcx": GARBAGE, "rdx": GARBAGE}}]),
    _user("cpuid/leaf1", "CPUID leaf 1 (sub-leaf ignored)",
          [{"bytes": "0fa2", "exit": "cpuid", "regs": {"rax": 1, "rcx": 7, "rsi": GARBAGE}}]),
    _user("cpuid/leaf7-sub0", "CPUID leaf 7 sub-leaf 0", [{"bytes": "0fa2", "exit": "cpuid",
                                                           "regs": {"rax": 7, "rcx": 0}}]),
    _user("rdtsc/upper-cleared", "RDTSC zero-extends EDX:EAX, other registers untouched",
          [{"bytes": "0f31", "exit": "rdtsc", "regs": {"rax": GARBAGE, "rdx": GARBAGE, "rcx": GARBAGE}}]),
    _user("rdtscp/aux-in-rcx", "RDTSCP: EDX:EAX and ECX = TSC_AUX, all zero-extended",
          [{"bytes": "0f01f9", "exit": "rdtscp", "regs": {"rax": GARBAGE, "rdx": GARBAGE, "rcx": GARBAGE}}]),
    # -- MMIO on pc-testdev's iomem -------------------------------------------------------
    _user("mmio/store-widths", "MOV stores of 1, 2, 4 and 8 bytes", [
        _mmio("8806", rsi="mmio+0", rax=0x11), _mmio("668906", rsi="mmio+2", rax=0x2222),
        _mmio("8906", rsi="mmio+4", rax=0x33333333), _mmio("48890e", rsi="mmio+8", rcx=0x4444444455555555)]),
    _user("mmio/load8-keeps-upper", "MOV r8 load keeps bits 63:8", [_mmio("8a06", rsi="mmio+3", rax=GARBAGE)],
          iomem=BLOB),
    _user("mmio/load16-keeps-upper", "MOV r16 load keeps bits 63:16",
          [_mmio("668b1e", rsi="mmio+2", rbx=GARBAGE)], iomem=BLOB),
    _user("mmio/load32-zero-extends", "MOV r32 load zero-extends", [_mmio("8b0e", rsi="mmio+4", rcx=GARBAGE)],
          iomem=BLOB),
    _user("mmio/load64", "MOV r64 load", [_mmio("4c8b06", rsi="mmio+8", r8=GARBAGE)], iomem=BLOB),
    _user("mmio/load-high-byte", "MOV AH load (no REX): AH, not SPL (6.1 writes the low byte of RSP)",
          [_mmio("8a26", rsi="mmio+1", rax=GARBAGE)], iomem=BLOB),
    _user("mmio/movzx-byte-32", "MOVZX r32, m8 clears bits 63:8", [_mmio("0fb606", rsi="mmio+9", rax=GARBAGE)],
          iomem=BLOB),
    _user("mmio/movzx-word-16", "MOVZX r16, m8 keeps bits 63:16", [_mmio("660fb606", rsi="mmio+9", rax=GARBAGE)],
          iomem=BLOB),
    _user("mmio/movzx-word-64", "MOVZX r64, m16", [_mmio("480fb716", rsi="mmio+10", rdx=GARBAGE)],
          iomem=BLOB),
    _user("mmio/movsx-byte-64", "MOVSX r64, m8 sign-extends", [_mmio("480fbe06", rsi="mmio+8", rax=0)],
          iomem=BLOB),
    _user("mmio/movsx-word-32", "MOVSX r32, m16 sign-extends to 32 and clears 63:32",
          [_mmio("0fbf06", rsi="mmio+12", rax=GARBAGE)], iomem=BLOB),
    _user("mmio/store-imm", "MOV m8/m32/m64 imm (the 64-bit form sign-extends imm32)", [
        _mmio("c60699", rsi="mmio+16"), _mmio("c74604efbeadde", rsi="mmio+16"),
        _mmio("48c74608f0ffffff", rsi="mmio+16")]),
    _user("mmio/movsb-to-ram", "MOVSB from MMIO to RAM: RSI and RDI advance",
          [_mmio("a4", rsi="mmio+5", rdi="ram+3")], iomem=BLOB),
    _user("mmio/rep-movsq-from-ram", "REP MOVSQ from RAM to MMIO", [_mmio("f348a5", rsi="ram+0", rdi="mmio+8",
                                                                          rcx=2)], ram=BLOB),
    _user("mmio/movsw-df", "MOVSW with DF=1 from MMIO to RAM", [_mmio("66a5", rsi="mmio+6", rdi="ram+10")],
          iomem=BLOB, regs={"rflags": 0x402}),
    # -- the module's catalogue (CPL0) --------------------------------------------------
    _kernel("msr/wrmsr-rdmsr", "WRMSR takes EDX:EAX; RDMSR zero-extends into RAX and RDX (TSC_AUX)",
            [{"kop": "wrmsr", "exit": "msr", "regs": {"rcx": 0xC0000103, "rax": 0xFFFFFFFF00001234, "rdx": 0}},
             {"kop": "rdmsr", "exit": "msr", "regs": {"rax": GARBAGE, "rdx": GARBAGE}}]),
    _kernel("msr/rdmsr-missing-gp", "RDMSR of an MSR nobody implements: #GP",
            [{"kop": "rdmsr", "exit": "msr", "regs": {"rcx": 0x12345678}}]),
    _kernel("nae/wbinvd", "WBINVD: no register effect", [{"kop": "wbinvd", "exit": "wbinvd",
                                                          "regs": {"rax": GARBAGE}}]),
    _kernel("dr7/write-read", "MOV DR7 then read it back: bit 10 reads as 1",
            [{"kop": "dr7_write", "exit": "write_dr7", "regs": {"rax": 0}},
             {"kop": "dr7_read", "exit": "read_dr7", "regs": {"rax": GARBAGE}}]),
    _kernel("dr7/write-read-rw-len", "DR7's R/W and LEN fields read back as written",
            [{"kop": "dr7_write", "exit": "write_dr7", "regs": {"rax": 0xFFFF0000}},
             {"kop": "dr7_read", "exit": "read_dr7", "regs": {"rax": 0}}]),
    _kernel("dr7/write-upper-gp", "MOV DR7 with bits 63:32 set: #GP",
            [{"kop": "dr7_write", "exit": "write_dr7", "regs": {"rax": 1 << 32}}]),
    _kernel("nae/vmmcall", "VMMCALL (KVM_HC_VAPIC_POLL_IRQ); #UD under TCG (platform)",
            [{"kop": "vmmcall", "exit": "vmmcall", "regs": {"rax": 1, "rbx": GARBAGE}}]),
    _kernel("nae/rdpmc", "RDPMC of counter 0; #UD under TCG (platform)",
            [{"kop": "rdpmc", "exit": "rdpmc", "regs": {"rcx": 0}}]),
    _kernel("nae/monitor-mwait", "MONITOR then MWAIT: no register effect (or #UD without MONITOR)",
            [{"kop": "monitor", "exit": "monitor", "regs": {"rax": 0, "rcx": 0, "rdx": 0}}]),
    _kernel("mmio/kernel-load-widths", "CPL0 MOV loads: r8/r16 keep the upper bits, r32 zero-extends, AH",
            [{"kop": "mmio_load8", "exit": "npf", "regs": {"rsi": "kmmio+3", "rax": GARBAGE}},
             {"kop": "mmio_load16", "exit": "npf", "regs": {"rsi": "kmmio+2", "rax": GARBAGE}},
             {"kop": "mmio_load32", "exit": "npf", "regs": {"rsi": "kmmio+4", "rax": GARBAGE}},
             {"kop": "mmio_load64", "exit": "npf", "regs": {"rsi": "kmmio+8", "rax": GARBAGE}},
             {"kop": "mmio_load_ah", "exit": "npf", "regs": {"rsi": "kmmio+1", "rax": GARBAGE}}], iomem=BLOB),
    _kernel("mmio/kernel-store-widths", "CPL0 MOV stores of 1, 2, 4 and 8 bytes",
            [{"kop": "mmio_store8", "exit": "npf", "regs": {"rsi": "kmmio+0", "rax": 0x11}},
             {"kop": "mmio_store16", "exit": "npf", "regs": {"rsi": "kmmio+2", "rax": 0x2222}},
             {"kop": "mmio_store32", "exit": "npf", "regs": {"rsi": "kmmio+4", "rax": 0x33333333}},
             {"kop": "mmio_store64", "exit": "npf", "regs": {"rsi": "kmmio+8", "rax": 0x4444444455555555}}]),
    _kernel("mmio/kernel-movzx-movsx", "CPL0 MOVZX/MOVSX: 32-bit destinations clear bits 63:32",
            [{"kop": "mmio_movzx8", "exit": "npf", "regs": {"rsi": "kmmio+9", "rax": GARBAGE}},
             {"kop": "mmio_movzx16", "exit": "npf", "regs": {"rsi": "kmmio+10", "rax": GARBAGE}},
             {"kop": "mmio_movsx8", "exit": "npf", "regs": {"rsi": "kmmio+8", "rax": 0}},
             {"kop": "mmio_movsx16", "exit": "npf", "regs": {"rsi": "kmmio+12", "rax": GARBAGE}}], iomem=BLOB),
    _kernel("ioio/kernel-out-in", "CPL0 OUT EAX then IN AX, DX: no I/O permission check",
            [{"kop": "out_eax_imm", "exit": "ioio", "regs": {"rax": 0x0BADF00D}},
             {"kop": "in_ax_dx", "exit": "ioio", "regs": {"rax": GARBAGE, "rdx": 0xE2}}], port=DEV),
]
