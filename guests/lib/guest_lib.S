/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Guest-side code shared by the payloads.  Everything here is position
 * independent: the section "guest_text" is copied to GPA_CODE and the host
 * computes guest addresses with guest_sym_gpa().
 *
 * Protocol: the host loads registers, points RIP at an action stub and runs
 * the vCPU; the stub executes one instruction and reports completion with
 * `out %al, $UCALL_PORT_DONE`.  #UD and #GP are recorded (vector in R15, or
 * EBP in 32-bit mode) and the faulting instruction is skipped, so the stub
 * still reaches its OUT.  Any other exception is fatal: its vector goes to
 * R15/EBP and the guest reports on UCALL_PORT_FATAL.
 */
#define UCALL_PORT_DONE  0xe0
#define UCALL_PORT_FATAL 0xe1

	.section guest_text, "ax"

/* ---------------- 64-bit long mode ---------------- */
	.code64
	.balign 16
	.globl g64_vectors
g64_vectors:
	.irp v, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
	.balign 16
	pushq $\v
	jmp g64_common
	.endr

g64_common:
	cmpq $6, (%rsp)
	je g64_ud
	cmpq $13, (%rsp)
	je g64_gp
	movq (%rsp), %r15
	outb %al, $UCALL_PORT_FATAL
1:	hlt
	jmp 1b

g64_gp:
	addq $16, %rsp          /* vector and error code */
	movq $13, %r15
	jmp g64_skip
g64_ud:
	addq $8, %rsp           /* vector */
	movq $6, %r15
g64_skip:
	/* Skip the faulting instruction: 0F 01 xx is 3 bytes (VMCALL,
	 * VMMCALL), other 0F xx (RDMSR, WRMSR) are 2. */
	pushq %rax
	pushq %rbx
	movq 16(%rsp), %rbx
	movzbl 1(%rbx), %eax
	cmpb $0x01, %al
	movl $2, %eax
	jne 1f
	movl $3, %eax
1:	addq %rax, 16(%rsp)
	popq %rbx
	popq %rax
	iretq

	.globl g64_rdmsr, g64_wrmsr, g64_nop
g64_rdmsr:
	rdmsr
	outb %al, $UCALL_PORT_DONE
	hlt
g64_wrmsr:
	wrmsr
	outb %al, $UCALL_PORT_DONE
	hlt
g64_nop:
	/* The NOP keeps the OUT off the stub's first byte: KVM completes the
	 * previous action's OUT on the next KVM_RUN by skipping it only when RIP
	 * still equals that OUT's address (complete_fast_pio_out). */
	nop
	outb %al, $UCALL_PORT_DONE
	hlt

/* ---------------- 32-bit protected mode (no paging) ---------------- */
	.code32
	.balign 16
	.globl g32_vectors
g32_vectors:
	.irp v, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
	.balign 16
	pushl $\v
	jmp g32_common
	.endr

g32_common:
	cmpl $6, (%esp)
	je g32_ud
	cmpl $13, (%esp)
	je g32_gp
	movl (%esp), %ebp
	outb %al, $UCALL_PORT_FATAL
1:	hlt
	jmp 1b

g32_gp:
	addl $8, %esp
	movl $13, %ebp
	jmp g32_skip
g32_ud:
	addl $4, %esp
	movl $6, %ebp
g32_skip:
	pushl %eax
	pushl %ebx
	movl 8(%esp), %ebx
	movzbl 1(%ebx), %eax
	cmpb $0x01, %al
	movl $2, %eax
	jne 1f
	movl $3, %eax
1:	addl %eax, 8(%esp)
	popl %ebx
	popl %eax
	iret

	.globl g32_rdmsr, g32_wrmsr, g32_nop
g32_rdmsr:
	rdmsr
	outb %al, $UCALL_PORT_DONE
	hlt
g32_wrmsr:
	wrmsr
	outb %al, $UCALL_PORT_DONE
	hlt
g32_nop:
	nop
	outb %al, $UCALL_PORT_DONE
	hlt

	.code64
	.section .note.GNU-stack, "", @progbits
