// SPDX-License-Identifier: GPL-2.0
/*
 * The SEV-ES baseline trigger program: runs #VC trigger instructions in a normal
 * (non-SEV) guest, so that the architectural results the model predicts are checked
 * against a real CPU and QEMU's pc-testdev (ports 0xe0-0xe3 loop back; iomem at
 * 0xff000000 reads back any width).  User-mode triggers are executed here from
 * arbitrary bytes (trig.S); kernel-mode triggers are a fixed catalogue that the
 * kvmconf_vc module executes at CPL0 (module/kvmconf_vc.c, kvc_abi.h).
 *
 * stdin, one script at a time (lines.h syntax):
 *   S <index> [ioperm=0|1] [report=0|1]   start: RAM page and the reported iomem zeroed;
 *                                  ioperm=1 grants ports 0xe0-0xef; report=0: the device is
 *                                  neither reset nor read (no port or MMIO access of the
 *                                  program's own: an SEV-ES guest's trace shows only triggers)
 *   R rax=.. ... r15=.. [rflags=..]   the registers the next triggers start from
 *   M iomem=1|0 off=N v=U64        8 bytes of pre-state: testdev iomem or the RAM buffer
 *   O v=U32                        pc-testdev port 0xe0 loopback register := v (outl)
 *   T len=N b0=U64 b1=U64 [rax=..]...   user trigger: len bytes, little-endian in b0,b1
 *   K op=N [rax=..]...             kernel trigger (queued; the whole queue runs at E)
 *   E                              end of script: queued kernel steps run in one ioctl
 * stdout, JSON lines: {"script","op":"result","step","regs":{...,"rflags"},"rip",
 *   "exception":{"vector","error_code","cr2"}|null,"port","iomem","ram"} per trigger,
 *   then {"script","op":"done"}.  `--probe` prints the addresses and capabilities.
 */
#define _GNU_SOURCE
#include <cpuid.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/io.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include "json.h"
#include "lines.h"
#include "util.h"
#include "kvc_abi.h"

#define CODE_VA   0x50000000UL
#define RAM_VA    0x51000000UL
#define MMIO_VA   0x52000000UL
#define TESTDEV_IOMEM 0xff000000UL
#define IOMEM_LEN 0x10000UL
#define SHOWN     64          /* bytes of iomem / RAM reported after each trigger */
#define PORT      0xe0

static const char *const names[16] = {
	"rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rsp", "rbp",
	"r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15",
};
/* ucontext's index of each of names[] */
static const int ureg[16] = {
	REG_RAX, REG_RBX, REG_RCX, REG_RDX, REG_RSI, REG_RDI, REG_RSP, REG_RBP,
	REG_R8, REG_R9, REG_R10, REG_R11, REG_R12, REG_R13, REG_R14, REG_R15,
};

struct regfile { uint64_t r[16]; uint64_t rflags; };
struct regfile trig_in, trig_out;
uint64_t trig_saved_rsp, trig_code = CODE_VA;
void trig_enter(void);
extern char trig_return[];

static sigjmp_buf recover;
static volatile sig_atomic_t in_trigger;
static struct { int faulted; uint64_t vector, error_code, cr2, rip; struct regfile regs; } fault;

static uint8_t *code, *ram;
static volatile uint8_t *iomem;
static int have_ports, script_ioperm = 1, report_device = 1, kvc = -1;
static long script = -1;

static void on_fault(int sig, siginfo_t *si, void *uc_)
{
	ucontext_t *uc = uc_;
	greg_t *g = uc->uc_mcontext.gregs;

	(void)si;
	if (!in_trigger) {
		signal(sig, SIG_DFL);
		return;          /* our own bug: re-raised on return */
	}
	fault.faulted = 1;
	fault.vector = g[REG_TRAPNO];
	fault.error_code = g[REG_ERR];
	fault.cr2 = g[REG_CR2];
	fault.rip = g[REG_RIP];
	for (int i = 0; i < 16; i++)
		fault.regs.r[i] = g[ureg[i]];
	fault.regs.rflags = g[REG_EFL];
	in_trigger = 0;
	siglongjmp(recover, 1);
}

static void hex(struct json *j, const char *key, const volatile uint8_t *p, size_t n)
{
	char s[2 * SHOWN + 1];

	for (size_t i = 0; i < n; i++)
		sprintf(s + 2 * i, "%02x", p[i]);
	json_str(j, key, s);
}

static void regs_json(struct json *j, const struct regfile *r)
{
	json_obj_open(j, "regs");
	for (int i = 0; i < 16; i++)
		json_u64(j, names[i], r->r[i]);
	json_u64(j, "rflags", r->rflags);
	json_obj_close(j);
}

static void device_json(struct json *j)
{
	/* read with ports granted, whatever the script's own ioperm */
	if (report_device && have_ports && ioperm(PORT, 4, 1) == 0) {
		json_u64(j, "port", inl(PORT));
		ioperm(PORT, 16, script_ioperm);
	} else {
		json_null(j, "port");
	}
	uint8_t shown[SHOWN];
	for (int i = 0; i < SHOWN; i++)
		shown[i] = iomem && report_device ? iomem[i] : 0;
	if (iomem && report_device)
		hex(j, "iomem", shown, SHOWN);
	else
		json_null(j, "iomem");
	hex(j, "ram", ram, SHOWN);
}

static void result(int step, const struct regfile *r, uint64_t rip, int faulted,
		   uint64_t vector, uint64_t error_code, uint64_t cr2)
{
	struct json j;

	json_begin(&j);
	json_i64(&j, "script", script);
	json_str(&j, "op", "result");
	json_i64(&j, "step", step);
	regs_json(&j, r);
	json_u64(&j, "rip", rip);
	if (faulted) {
		json_obj_open(&j, "exception");
		json_u64(&j, "vector", vector);
		json_u64(&j, "error_code", error_code);
		json_u64(&j, "cr2", cr2);
		json_obj_close(&j);
	} else {
		json_null(&j, "exception");
	}
	device_json(&j);
	json_end_line(&j);
}

/* Registers named on a line override the current ones. */
static void overlay(const struct kv *kv, struct regfile *r)
{
	for (int i = 0; i < 16; i++)
		r->r[i] = kv_get(kv, names[i], r->r[i]);
	r->rflags = kv_get(kv, "rflags", r->rflags);
}

static void run_user(const struct kv *kv, int step, struct regfile *cur)
{
	unsigned len = kv_get(kv, "len", 0);
	uint64_t b[2] = { kv_get(kv, "b0", 0), kv_get(kv, "b1", 0) };
	/* jmp *0(%rip); .quad trig_return */
	static const uint8_t jmp[6] = { 0xff, 0x25, 0, 0, 0, 0 };
	uint64_t back = (uint64_t)trig_return;

	if (len == 0 || len > 15)
		die("T line: len=%u is not 1..15", len);
	memcpy(code, b, len);
	memcpy(code + len, jmp, sizeof(jmp));
	memcpy(code + len + sizeof(jmp), &back, sizeof(back));
	__builtin___clear_cache((char *)code, (char *)code + 64);
	overlay(kv, cur);
	trig_in = *cur;
	fault.faulted = 0;
	if (sigsetjmp(recover, 1) == 0) {
		in_trigger = 1;
		trig_enter();
		in_trigger = 0;
		*cur = trig_out;
		result(step, cur, CODE_VA + len, 0, 0, 0, 0);
	} else {
		*cur = fault.regs;
		result(step, cur, fault.rip, 1, fault.vector, fault.error_code,
		       fault.vector == 14 ? fault.cr2 : 0);
	}
}

static struct kvc_run queue;

static void queue_kernel(const struct kv *kv, struct regfile *cur)
{
	if (queue.n >= sizeof(queue.step) / sizeof(queue.step[0]))
		die("K line: more than %zu kernel steps in one script",
		    sizeof(queue.step) / sizeof(queue.step[0]));
	overlay(kv, cur);
	struct kvc_step *s = &queue.step[queue.n++];
	memset(s, 0, sizeof(*s));
	s->op = kv_get(kv, "op", 0);
	memcpy(s->regs, cur->r, sizeof(s->regs));
}

static void run_kernel(int first_step, struct regfile *cur)
{
	if (!queue.n)
		return;
	if (kvc < 0)
		die("K line: /dev/kvmconf_vc is not open (the kvmconf_vc module is not loaded)");
	if (ioctl(kvc, KVC_RUN, &queue) < 0)
		die("KVC_RUN: %s", strerror(errno));
	for (unsigned i = 0; i < queue.n; i++) {
		struct kvc_step *s = &queue.step[i];
		memcpy(cur->r, s->regs, sizeof(s->regs));
		cur->rflags = s->rflags;
		/* the module reports no RIP: the instruction completed or faulted */
		result(first_step + i, cur, 0, s->faulted, s->vector, 0, 0);
	}
	queue.n = 0;
}

static void probe(void)
{
	struct json j;
	unsigned a, b, c, d;

	json_begin(&j);
	json_u64(&j, "code_va", CODE_VA);
	json_u64(&j, "ram_va", RAM_VA);
	json_u64(&j, "mmio_va", MMIO_VA);
	json_u64(&j, "mmio_pa", TESTDEV_IOMEM);
	json_bool(&j, "ports", have_ports);
	json_bool(&j, "iomem", iomem != NULL);
	json_bool(&j, "module", kvc >= 0);
	uint64_t kernel_iomem = 0;
	if (kvc >= 0 && ioctl(kvc, KVC_IOMEM, &kernel_iomem) < 0)
		die("KVC_IOMEM: %s", strerror(errno));
	json_u64(&j, "kernel_iomem_va", kernel_iomem);
	__cpuid(1, a, b, c, d);
	json_bool(&j, "monitor", (c >> 3) & 1);
	json_end_line(&j);
	if (kvc >= 0) {
		static struct kvc_ops ops;
		if (ioctl(kvc, KVC_OPS, &ops) < 0)
			die("KVC_OPS: %s", strerror(errno));
		for (unsigned i = 0; i < ops.count; i++) {
			json_begin(&j);
			json_str(&j, "op", "kernel-op");
			json_u64(&j, "index", i);
			json_str(&j, "name", ops.op[i].name);
			hex(&j, "bytes", ops.op[i].bytes, ops.op[i].len);
			json_u64(&j, "regs", ops.op[i].regs);
			json_end_line(&j);
		}
	}
}

static void setup(void)
{
	struct sigaction sa = { .sa_sigaction = on_fault, .sa_flags = SA_SIGINFO | SA_NODEFER };

	for (int sig = 1; sig < 32; sig++)
		if (sig == SIGSEGV || sig == SIGILL || sig == SIGBUS || sig == SIGFPE || sig == SIGTRAP)
			sigaction(sig, &sa, NULL);
	code = mmap((void *)CODE_VA, 4096, PROT_READ | PROT_WRITE | PROT_EXEC,
		    MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	ram = mmap((void *)RAM_VA, 4096, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE | MAP_POPULATE, -1, 0);
	if (code == MAP_FAILED || ram == MAP_FAILED)
		die("mmap of the code or RAM page: %s", strerror(errno));
	int fd = open("/dev/mem", O_RDWR | O_SYNC | O_CLOEXEC);
	if (fd >= 0) {
		void *p = mmap((void *)MMIO_VA, IOMEM_LEN, PROT_READ | PROT_WRITE,
			       MAP_SHARED | MAP_FIXED_NOREPLACE, fd, TESTDEV_IOMEM);
		iomem = p == MAP_FAILED ? NULL : p;
		close(fd);
	}
	have_ports = ioperm(PORT, 16, 1) == 0;
	kvc = open("/dev/kvmconf_vc", O_RDWR | O_CLOEXEC);
}

int main(int argc, char **argv)
{
	char line[4096];
	struct regfile cur = { .rflags = 0x2 };
	int step = 0;

	setup();
	if (argc > 1 && !strcmp(argv[1], "--probe")) {
		probe();
		return 0;
	}
	while (fgets(line, sizeof(line), stdin)) {
		struct kv kv;
		const char *bad;

		if (line[0] == 'S') {
			bad = kv_parse(line, 2, &kv);
			if (bad)
				die("S line: %s", bad);
			script = strtol(kv.name, NULL, 0);
			step = 0;
			memset(&cur, 0, sizeof(cur));
			cur.rflags = 0x2;
			memset(ram, 0, 4096);
			report_device = kv_get(&kv, "report", 1) != 0;
			for (int i = 0; iomem && report_device && i < SHOWN; i += 8)   /* the device keeps its state */
				*(volatile uint64_t *)(iomem + i) = 0;
			queue.n = 0;
			script_ioperm = kv_get(&kv, "ioperm", 1) ? 1 : 0;
			/* a kernel without ioperm(): the harness skips the cases that need ports */
			if (have_ports && ioperm(PORT, 16, script_ioperm) < 0)
				die("ioperm: %s", strerror(errno));
			continue;
		}
		bad = kv_parse(line, 1, &kv);
		if (bad)
			die("line %.40s: %s", line, bad);
		switch (kv.name[0]) {
		case 'R':
			memset(&cur, 0, sizeof(cur));
			cur.rflags = 0x2;
			overlay(&kv, &cur);
			break;
		case 'M': {
			uint64_t off = kv_get(&kv, "off", 0), v = kv_get(&kv, "v", 0);
			if (off > (kv_get(&kv, "iomem", 0) ? IOMEM_LEN : 4096) - 8)
				die("M line: off=%#lx out of range", (unsigned long)off);
			if (kv_get(&kv, "iomem", 0)) {
				if (!iomem)
					die("M line: no testdev iomem mapping (/dev/mem at %#lx)", TESTDEV_IOMEM);
				*(volatile uint64_t *)(iomem + off) = v;
			} else {
				memcpy(ram + off, &v, 8);
			}
			break;
		}
		case 'O':
			if (!have_ports)
				break;   /* no ioperm(): no case here touches the port */
			if (ioperm(PORT, 4, 1) < 0)
				die("ioperm: %s", strerror(errno));
			outl(kv_get(&kv, "v", 0), PORT);
			ioperm(PORT, 16, script_ioperm);
			break;
		case 'T':
			run_user(&kv, step++, &cur);
			break;
		case 'K':
			queue_kernel(&kv, &cur);
			step++;
			break;
		case 'E':
			run_kernel(step - queue.n, &cur);
			script_done(script);
			break;
		default:
			die("unknown line %.40s", line);
		}
	}
	return 0;
}
