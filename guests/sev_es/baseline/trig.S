/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Run one trigger instruction with a given register file, in user space.
 *
 * trig_enter loads every GPR but RSP from trig_in (order: rax rbx rcx rdx rsi rdi
 * rsp rbp r8..r15, then rflags, of which the arithmetic flags and DF are taken) and jumps to the code
 * page, which holds the trigger's bytes followed by "jmp *trig_return".
 * trig_return stores every GPR and RFLAGS into trig_out and returns to C.
 * A faulting trigger never reaches trig_return: trigger.c's signal handler
 * takes the registers from the signal frame and siglongjmps back.
 */
	.text
	.globl trig_enter
trig_enter:
	push %rbx
	push %rbp
	push %r12
	push %r13
	push %r14
	push %r15
	mov %rsp, trig_saved_rsp(%rip)
	mov trig_in+128(%rip), %rax
	and $0xcd5, %rax        /* CF PF AF ZF SF DF OF: never TF or AC */
	or $0x202, %rax
	push %rax
	popfq
	mov trig_in+0(%rip), %rax
	mov trig_in+8(%rip), %rbx
	mov trig_in+16(%rip), %rcx
	mov trig_in+24(%rip), %rdx
	mov trig_in+32(%rip), %rsi
	mov trig_in+40(%rip), %rdi
	mov trig_in+56(%rip), %rbp
	mov trig_in+64(%rip), %r8
	mov trig_in+72(%rip), %r9
	mov trig_in+80(%rip), %r10
	mov trig_in+88(%rip), %r11
	mov trig_in+96(%rip), %r12
	mov trig_in+104(%rip), %r13
	mov trig_in+112(%rip), %r14
	mov trig_in+120(%rip), %r15
	jmp *trig_code(%rip)

	.globl trig_return
trig_return:
	pushfq
	popq trig_out+128(%rip)
	cld
	mov %rax, trig_out+0(%rip)
	mov %rbx, trig_out+8(%rip)
	mov %rcx, trig_out+16(%rip)
	mov %rdx, trig_out+24(%rip)
	mov %rsi, trig_out+32(%rip)
	mov %rdi, trig_out+40(%rip)
	mov %rsp, trig_out+48(%rip)
	mov %rbp, trig_out+56(%rip)
	mov %r8, trig_out+64(%rip)
	mov %r9, trig_out+72(%rip)
	mov %r10, trig_out+80(%rip)
	mov %r11, trig_out+88(%rip)
	mov %r12, trig_out+96(%rip)
	mov %r13, trig_out+104(%rip)
	mov %r14, trig_out+112(%rip)
	mov %r15, trig_out+120(%rip)
	mov trig_saved_rsp(%rip), %rsp
	pop %r15
	pop %r14
	pop %r13
	pop %r12
	pop %rbp
	pop %rbx
	ret

	.section .note.GNU-stack,"",@progbits
