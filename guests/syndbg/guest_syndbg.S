/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Raw hypercall sites for the syndbg payload, without a hypercall page.
 * Each symbol labels exactly one instruction: harness/payloads/syndbg.py
 * checks from the ELF that syndbg_vmcall_* hold 0F 01 C1 (VMCALL) and
 * syndbg_vmmcall_* hold 0F 01 D9 (VMMCALL).  The instruction is followed by
 * the completion OUT of guests/lib/guest_lib.S.
 *
 * The *_32 sites (and guests/lib's g32_* stubs) also run in real mode and in
 * compatibility mode: VMCALL/VMMCALL, RDMSR/WRMSR, NOP, OUT imm8 and HLT
 * encode the same in 16-, 32- and 64-bit code.  Real mode needs its own
 * exception vectors (g16_vectors, reached through the real-mode interrupt
 * table g16_ivt that syndbg.c fills in): #UD and #GP are recorded in EBP and
 * the faulting instruction is skipped, as guests/lib does for the other modes.
 */
#define UCALL_PORT_DONE 0xe0
#define UCALL_PORT_FATAL 0xe1

	.section guest_text, "ax"

	.code64
	.globl syndbg_vmcall_64, syndbg_vmmcall_64
syndbg_vmcall_64:
	vmcall
	outb %al, $UCALL_PORT_DONE
	hlt
syndbg_vmmcall_64:
	vmmcall
	outb %al, $UCALL_PORT_DONE
	hlt

	.code32
	.globl syndbg_vmcall_32, syndbg_vmmcall_32
syndbg_vmcall_32:
	vmcall
	outb %al, $UCALL_PORT_DONE
	hlt
syndbg_vmmcall_32:
	vmmcall
	outb %al, $UCALL_PORT_DONE
	hlt

/* ---------------- real mode (CS base = GPA_CODE) ---------------- */
	.code16
	.balign 16
	.globl g16_vectors
g16_vectors:
	.irp v, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
	.balign 16
	pushw $\v
	jmp g16_common
	.endr

	/* Stack: vector, IP, CS, FLAGS (real mode pushes no error code). */
g16_common:
	pushw %bp
	movw %sp, %bp
	cmpw $6, 2(%bp)
	je 1f
	cmpw $13, 2(%bp)
	je 2f
	movzwl 2(%bp), %ebp
	outb %al, $UCALL_PORT_FATAL
3:	hlt
	jmp 3b
1:	addw $3, 4(%bp)         /* #UD: VMCALL/VMMCALL are 3 bytes */
	popw %bp
	addw $2, %sp
	movl $6, %ebp
	iret
2:	addw $2, 4(%bp)         /* #GP: RDMSR/WRMSR are 2 bytes */
	popw %bp
	addw $2, %sp
	movl $13, %ebp
	iret

	/* The real-mode interrupt table: 32 vectors of IP:CS, filled in by
	 * syndbg.c (the addresses are only known once guest_text is linked). */
	.balign 16
	.globl g16_ivt
g16_ivt:
	.fill 32 * 4, 1, 0

	.code64
	.section .note.GNU-stack, "", @progbits
