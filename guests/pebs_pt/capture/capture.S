/* SPDX-License-Identifier: GPL-2.0 */
/*
 * pebs_pt_capture's guest code (64-bit, CPL0, in guest_text like guests/lib).
 *
 * In: R8/R9 the setup list (its GPA and entry count), R10/R11 the teardown
 * list, RBX the workload's loop count, R15 = NO_VECTOR.  A list is an array
 * of { u64 msr; u64 value; } written in order with WRMSR; the setup list ends
 * with IA32_PERF_GLOBAL_CTRL, which starts the counter.
 *
 * Out (on UCALL_PORT_DONE): R15 = NO_VECTOR, or the vector guests/lib's
 * handler recorded for the first WRMSR that faulted; R14 = that entry's GPA
 * (0 when it was the GLOBAL_CTRL write that ends the workload).
 */
#define UCALL_PORT_DONE  0xe0
#define MSR_GLOBAL_CTRL  0x38f

	.section guest_text, "ax"
	.code64

	.globl g64_capture, g64_workload, g64_workload_end
g64_capture:
	movq %r8, %rsi
	movq %r9, %rdi
	call wrlist
	testq %r14, %r14
	jnz 9f
	/* The workload: every record's IP must fall in [g64_workload,
	 * g64_workload_end).  2 instructions retired per iteration. */
g64_workload:
1:	decq %rbx
	jnz 1b
	xorl %eax, %eax
	xorl %edx, %edx
	movl $MSR_GLOBAL_CTRL, %ecx
	wrmsr
	movl $0xffffffff, %eax
	cmpq %rax, %r15
g64_workload_end:
	jne 9f
	movq %r10, %rsi
	movq %r11, %rdi
	call wrlist
9:	outb %al, $UCALL_PORT_DONE
	hlt

/* WRMSR each entry of the list at RSI (RDI entries); R14 = the first entry
 * that faulted (R15 then holds its vector), else 0. */
wrlist:
	xorl %r14d, %r14d
	testq %rdi, %rdi
	jz 2f
1:	movl (%rsi), %ecx
	movl 8(%rsi), %eax
	movl 12(%rsi), %edx
	wrmsr
	movl $0xffffffff, %eax
	cmpq %rax, %r15
	jne 3f
	addq $16, %rsi
	decq %rdi
	jnz 1b
2:	ret
3:	movq %rsi, %r14
	ret
