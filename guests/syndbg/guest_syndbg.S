/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Raw hypercall sites for the syndbg payload, without a hypercall page.
 * Each symbol labels exactly one instruction: harness/payloads/syndbg.py
 * checks from the ELF that syndbg_vmcall_* hold 0F 01 C1 (VMCALL) and
 * syndbg_vmmcall_* hold 0F 01 D9 (VMMCALL).  The instruction is followed by
 * the completion OUT of guests/lib/guest_lib.S.
 */
#define UCALL_PORT_DONE 0xe0

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

	.code64
	.section .note.GNU-stack, "", @progbits
