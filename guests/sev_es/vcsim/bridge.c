// SPDX-License-Identifier: GPL-2.0
/*
 * vcsim bridge: #includes the kernel's arch/x86/kernel/sev.c (which includes
 * sev-shared.c) so that its static #VC handlers can be called, and exports
 * plain-C entry points to vcsim.c.  Compiled freestanding against the
 * kernel's headers with vcsim_pre.h forced first.  The builder passes the
 * path of sev.c as VCSIM_SEV_C.
 */
#include VCSIM_SEV_C

static struct pt_regs vcsim_to_pt(const struct vcsim_regs *r)
{
	struct pt_regs p = {
		.ax = r->ax, .cx = r->cx, .dx = r->dx, .bx = r->bx,
		.sp = r->sp, .bp = r->bp, .si = r->si, .di = r->di,
		.r8 = r->r8, .r9 = r->r9, .r10 = r->r10, .r11 = r->r11,
		.r12 = r->r12, .r13 = r->r13, .r14 = r->r14, .r15 = r->r15,
		.ip = r->ip, .flags = r->flags, .cs = r->cs, .ss = r->ss,
	};
	return p;
}

static void vcsim_from_pt(struct vcsim_regs *r, const struct pt_regs *p)
{
	r->ax = p->ax; r->cx = p->cx; r->dx = p->dx; r->bx = p->bx;
	r->sp = p->sp; r->bp = p->bp; r->si = p->si; r->di = p->di;
	r->r8 = p->r8; r->r9 = p->r9; r->r10 = p->r10; r->r11 = p->r11;
	r->r12 = p->r12; r->r13 = p->r13; r->r14 = p->r14; r->r15 = p->r15;
	r->ip = p->ip; r->flags = p->flags; r->cs = p->cs; r->ss = p->ss;
}

static_assert(VCSIM_ES_OK == ES_OK && VCSIM_ES_UNSUPPORTED == ES_UNSUPPORTED &&
	      VCSIM_ES_VMM_ERROR == ES_VMM_ERROR && VCSIM_ES_DECODE_FAILED == ES_DECODE_FAILED &&
	      VCSIM_ES_EXCEPTION == ES_EXCEPTION && VCSIM_ES_RETRY == ES_RETRY);

/* The per-CPU runtime data as sev_es_init_vc_handling() leaves them for CPU 0:
 * the kernel's alloc_runtime_data() (memblock, zeroed) and init_ghcb(). */
void bridge_reset(void)
{
	ghcb_version = 0;
	per_cpu(runtime_data, 0) = NULL;
	alloc_runtime_data(0);
	init_ghcb(0);
}

void *bridge_ghcb(void)
{
	return &this_cpu_read(runtime_data)->ghcb_page;
}

unsigned long bridge_dr7(void)
{
	return this_cpu_read(runtime_data)->dr7;
}

int bridge_negotiate(void)
{
	return sev_es_negotiate_protocol();
}

/* setup_ghcb(): "Make sure the hypervisor talks a supported protocol." */
void bridge_negotiate_or_terminate(void)
{
	if (!sev_es_negotiate_protocol())
		sev_es_terminate(SEV_TERM_SET_GEN, GHCB_SEV_ES_GEN_REQ);
}

void bridge_terminate(unsigned int set, unsigned int reason)
{
	sev_es_terminate(set, reason);
}

void bridge_early_cpuid(struct vcsim_regs *r, unsigned long exit_code)
{
	struct pt_regs regs = vcsim_to_pt(r);

	do_vc_no_ghcb(&regs, exit_code);
	vcsim_from_pt(r, &regs);
}

/*
 * What the kernel's vc_raw_handle_exception() says about its es_result: it
 * returns only true/false, so the rest is read from what it does.  false:
 * the pr_err_ratelimited() of its ES_UNSUPPORTED / ES_VMM_ERROR /
 * ES_DECODE_FAILED arm names which (kshim's printk hands every message here);
 * true with an exception forwarded at this nesting level (vc_forward_exception
 * reached kshim's exc_* entry points): ES_EXCEPTION; true with RIP moved
 * (vc_finish_insn: ip += insn.length, never 0 after a decode): ES_OK; true
 * with RIP where it was: ES_RETRY (and what a handler that loses its
 * exception or its RIP advance looks like to the CPU: the #VC again).
 * The one ES_OK that would not move RIP is one for an exit that is not
 * decoded (vc_decoding_needed(): the exception exits); in 6.1 those end in
 * ES_EXCEPTION (#AC) or ES_UNSUPPORTED, #DB never gets here.
 */
#define BRIDGE_MAX_DEPTH 4
static int depth;                                /* nested #VC level */
static unsigned long forwarded[BRIDGE_MAX_DEPTH];
static int failure[BRIDGE_MAX_DEPTH];

static const struct { const char *text; int result; } failure_messages[] = {
	{ "Unsupported exit-code", ES_UNSUPPORTED },
	{ "Failure in communication with VMM", ES_VMM_ERROR },
	{ "Failed to decode instruction", ES_DECODE_FAILED },
};

void bridge_printk(const char *fmt)
{
	int i;

	if (!depth)
		return;
	for (i = 0; i < ARRAY_SIZE(failure_messages); i++)
		if (strstr(fmt, failure_messages[i].text))
			failure[depth - 1] = failure_messages[i].result;
}

void bridge_forwarded(void)
{
	if (depth)
		forwarded[depth - 1]++;
}

/*
 * One #VC: exc_vmm_communication()'s #DB check (vc_is_db: exc_debug() before
 * the GHCB is taken), then the kernel's own vc_raw_handle_exception(), with
 * the es_result read as above.  The caller (vcsim.c) does what
 * exc_vmm_communication() does with a false return: in kernel mode
 * show_regs() and sev_es_terminate(SEV_TERM_SET_GEN, GHCB_SEV_ES_GEN_REQ)
 * (bridge_terminate), in user mode force_sig_fault(SIGBUS, BUS_OBJERR).
 */
int bridge_handle_vc(struct vcsim_regs *r, unsigned long exit_code)
{
	struct pt_regs regs = vcsim_to_pt(r);
	int level = depth, result;
	bool ok;

	regs.orig_ax = exit_code;
	if (vc_is_db(exit_code)) {
		exc_debug(&regs);
		vcsim_from_pt(r, &regs);
		return ES_OK;
	}
	if (level == BRIDGE_MAX_DEPTH)
		panic("vcsim: #VC nested too deep");
	forwarded[level] = 0;
	failure[level] = -1;
	depth++;
	ok = vc_raw_handle_exception(&regs, exit_code);
	depth--;

	if (!ok)
		result = failure[level];
	else if (forwarded[level])
		result = ES_EXCEPTION;
	else if (regs.ip != r->ip)
		result = ES_OK;
	else
		result = ES_RETRY;
	if (result < 0)
		panic("vcsim: vc_raw_handle_exception() returned false without naming an es_result");
	vcsim_from_pt(r, &regs);
	return result;
}

const char *const bridge_mmio_names[] = {
	[MMIO_DECODE_FAILED] = "decode_failed", [MMIO_WRITE] = "write",
	[MMIO_WRITE_IMM] = "write_imm", [MMIO_READ] = "read",
	[MMIO_READ_ZERO_EXTEND] = "read_zero_extend",
	[MMIO_READ_SIGN_EXTEND] = "read_sign_extend", [MMIO_MOVS] = "movs",
};
const int bridge_mmio_count = ARRAY_SIZE(bridge_mmio_names);

/* The decoder differential: insn_decode() as __vc_decode_kern_insn() calls it,
 * then insn_decode_mmio() and the operands vc_handle_mmio() would use. */
void bridge_decode(const unsigned char *buf, int len, struct vcsim_regs *r, struct vcsim_decode *d)
{
	struct pt_regs regs = vcsim_to_pt(r);
	struct insn insn;
	int bytes = 0;
	void __user *ref;

	memset(d, 0, sizeof(*d));
	d->reg_off = -1;
	d->mmio = MMIO_DECODE_FAILED;
	if (insn_decode(&insn, buf, len, INSN_MODE_64) < 0)
		return;
	d->ok = 1;
	d->len = insn.length;
	d->mmio = insn_decode_mmio(&insn, &bytes);
	d->bytes = bytes;
	if (d->mmio == MMIO_DECODE_FAILED)
		return;
	if (d->mmio != MMIO_WRITE_IMM && d->mmio != MMIO_MOVS) {
		int off = insn_get_modrm_reg_off(&insn, &regs);

		if (off >= 0) {
			/* pt_regs offset -> struct vcsim_regs offset */
			unsigned long *slot = (unsigned long *)((char *)&regs + off);
			static const struct { size_t pt, vr; } map[] = {
#define M(f) { offsetof(struct pt_regs, f), offsetof(struct vcsim_regs, f) }
				M(ax), M(cx), M(dx), M(bx), M(sp), M(bp), M(si), M(di),
				M(r8), M(r9), M(r10), M(r11), M(r12), M(r13), M(r14), M(r15),
#undef M
			};
			int i;

			(void)slot;
			for (i = 0; i < ARRAY_SIZE(map); i++)
				if (map[i].pt == off)
					d->reg_off = map[i].vr;
		}
	}
	if (d->mmio != MMIO_MOVS) {
		ref = insn_get_addr_ref(&insn, &regs);
		if (ref != (void __user *)-1L) {
			d->ea_ok = 1;
			d->ea = (unsigned long)ref;
		}
	}
}
