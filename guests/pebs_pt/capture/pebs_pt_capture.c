// SPDX-License-Identifier: GPL-2.0
/*
 * pebs_pt_capture payload (issue 13 item 5): PEBS records written into a KVM
 * guest's Intel PT buffer, through guests/lib.  The guest (capture.S)
 * programs PT to a ToPA buffer in its memory, one GP counter with PEBS output
 * to PT (IA32_PEBS_ENABLE bit 61, the reset value in MSR_RELOAD_PMCx, as
 * ds.c intel_pmu_pebs_via_pt_enable() does on a host) and MSR_PEBS_DATA_CFG,
 * runs a counted loop, stops everything and exits; the host hands the buffer
 * back.  harness/pebs_pt_hw.py decodes it with the reference codec and checks
 * the records.
 *
 * Input (stdin), one line per capture:
 *
 *   capture <index> counter=N period=N loops=N cfg=N
 *
 * The counter counts INST_RETIRED.ALL (event 0xc0, umask 1) in ring 0 and 3;
 * the loop retires 2 instructions per iteration.
 *
 * Output: one JSON line per capture, {"script": index, "op": "capture",
 * ...}: "setup" (what
 * the host could not do, or null), "fault" (the first guest WRMSR that
 * faulted: list, msr, value, vector; or null), "exit" (null, or why the guest
 * did not finish), "workload" [start, end) GPAs, "mask_ptrs" and
 * "rtit_status" (the vCPU's IA32_RTIT_OUTPUT_MASK_PTRS and IA32_RTIT_STATUS
 * after the run, by KVM_GET_MSRS) and "buffer" (the bytes PT wrote, hex);
 * then {"script": index, "op": "done"}.
 *
 * Usage: pebs_pt_capture           run the captures on stdin
 *        pebs_pt_capture --probe   the host's capabilities as one JSON line
 *                                  (the keys of harness/pebs_pt_hw.py missing())
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>
#include <cpuid.h>

#include "json.h"
#include "kvmlib.h"
#include "lines.h"

/* arch/x86/include/asm/msr-index.h */
#define MSR_PERF_CAPABILITIES   0x345
#define MSR_PEBS_ENABLE         0x3f1
#define MSR_PEBS_DATA_CFG       0x3f2
#define MSR_GLOBAL_CTRL         0x38f
#define MSR_PERFEVTSEL0         0x186
#define MSR_PMC0                0xc1
#define MSR_RELOAD_PMC0         0x14c1
#define MSR_RTIT_OUTPUT_BASE    0x560
#define MSR_RTIT_OUTPUT_MASK    0x561
#define MSR_RTIT_CTL            0x570
#define MSR_RTIT_STATUS         0x571

#define PEBS_OUTPUT_PT          (1ULL << 61)
#define EVTSEL_INST_RETIRED_ALL 0x01c0ULL
#define EVTSEL_USR              (1ULL << 16)
#define EVTSEL_OS               (1ULL << 17)
#define EVTSEL_EN               (1ULL << 22)
#define RTIT_CTL_TRACEEN        (1ULL << 0)
#define RTIT_CTL_OS             (1ULL << 2)
#define RTIT_CTL_USR            (1ULL << 3)
#define RTIT_CTL_TOPA           (1ULL << 8)
#define RTIT_CTL_TSC_EN         (1ULL << 10)
#define COUNTER_MASK            ((1ULL << 48) - 1)

/* ToPA (SDM 33.2.7.2): one 64 KiB region that stops tracing when full, then
 * the END entry back to the table. */
#define GPA_TOPA                GPA_DATA
#define GPA_LISTS               (GPA_DATA + 0x1000)
#define GPA_PT_BUF              0x100000ULL
#define PT_BUF_SIZE             0x10000ULL
#define TOPA_SIZE_64K           (4ULL << 6)
#define TOPA_STOP               (1ULL << 4)
#define TOPA_END                (1ULL << 0)

#define MAX_GP                  8
#define MAX_ENTRIES             16
#define RUN_DEADLINE_MS         20000
#define MAX_EXITS               4

extern const u8 g64_capture[], g64_workload[], g64_workload_end[];

struct entry { u64 msr, value; };

/* The guest's lists, in the order capture.S writes them. */
static int setup_list(struct entry *e, const struct kv *kv)
{
	u64 c = kv_get(kv, "counter", 0), period = kv_get(kv, "period", 10000);
	u64 reset = -period & COUNTER_MASK;
	int n = 0;

	e[n++] = (struct entry){ MSR_RTIT_CTL, 0 };
	e[n++] = (struct entry){ MSR_RTIT_STATUS, 0 };
	e[n++] = (struct entry){ MSR_RTIT_OUTPUT_BASE, GPA_TOPA };
	e[n++] = (struct entry){ MSR_RTIT_OUTPUT_MASK, 0x7f };
	e[n++] = (struct entry){ MSR_PERFEVTSEL0 + c, EVTSEL_INST_RETIRED_ALL | EVTSEL_USR |
						     EVTSEL_OS | EVTSEL_EN };
	e[n++] = (struct entry){ MSR_PMC0 + c, reset };
	e[n++] = (struct entry){ MSR_RELOAD_PMC0 + c, reset };
	e[n++] = (struct entry){ MSR_PEBS_DATA_CFG, kv_get(kv, "cfg", 0) };
	e[n++] = (struct entry){ MSR_PEBS_ENABLE, 1ULL << c | PEBS_OUTPUT_PT };
	e[n++] = (struct entry){ MSR_RTIT_CTL, RTIT_CTL_TRACEEN | RTIT_CTL_OS | RTIT_CTL_USR |
					       RTIT_CTL_TOPA | RTIT_CTL_TSC_EN };
	e[n++] = (struct entry){ MSR_GLOBAL_CTRL, 1ULL << c };
	return n;
}

static int teardown_list(struct entry *e, const struct kv *kv)
{
	int n = 0;

	e[n++] = (struct entry){ MSR_PEBS_ENABLE, 0 };
	e[n++] = (struct entry){ MSR_RTIT_CTL, 0 };
	e[n++] = (struct entry){ MSR_PERFEVTSEL0 + kv_get(kv, "counter", 0), 0 };
	return n;
}

static void put_hex(struct json *j, const char *key, const u8 *p, size_t n)
{
	static const char digits[] = "0123456789abcdef";
	char *s = malloc(2 * n + 1);

	if (!s)
		die("out of memory");
	for (size_t i = 0; i < n; i++) {
		s[2 * i] = digits[p[i] >> 4];
		s[2 * i + 1] = digits[p[i] & 15];
	}
	s[2 * n] = 0;
	json_str(j, key, s);
	free(s);
}

/* Runs the guest to its OUT; NULL, or why it did not get there. */
static const char *run_guest(struct vcpu *v, char *buf, size_t len)
{
	for (int n = 0; n < MAX_EXITS; n++) {
		struct kvm_run *run = v->run;

		if (vcpu_run(v, RUN_DEADLINE_MS)) {
			if (errno == EINTR)
				snprintf(buf, len, "timeout: no exit within %d ms", RUN_DEADLINE_MS);
			else
				snprintf(buf, len, "KVM_RUN failed: %s", strerror(errno));
			return buf;
		}
		if (run->exit_reason == KVM_EXIT_IO && run->io.port == UCALL_PORT_DONE)
			return NULL;
		if (run->exit_reason == KVM_EXIT_IO && run->io.port == UCALL_PORT_FATAL) {
			struct kvm_regs r;

			vcpu_get_regs(v, &r);
			snprintf(buf, len, "guest exception vector %llu", (unsigned long long)r.r15);
			return buf;
		}
		snprintf(buf, len, "unexpected exit reason %u", run->exit_reason);
		return buf;
	}
	snprintf(buf, len, "more than %d exits", MAX_EXITS);
	return buf;
}

static void put_fault(struct json *j, const struct kvm_regs *r, const struct entry *setup,
		      int nsetup, const struct entry *teardown, int nteardown)
{
	u64 at = r->r14;
	const char *list = "workload";
	u64 msr = MSR_GLOBAL_CTRL, value = 0;

	if (at >= GPA_LISTS && at < GPA_LISTS + nsetup * sizeof(struct entry)) {
		list = "setup";
		msr = setup[(at - GPA_LISTS) / sizeof(struct entry)].msr;
		value = setup[(at - GPA_LISTS) / sizeof(struct entry)].value;
	} else if (at) {
		u64 base = GPA_LISTS + MAX_ENTRIES * sizeof(struct entry);
		u64 k = (at - base) / sizeof(struct entry);

		if (at < base || k >= (u64)nteardown)
			die("guest reported a fault at %#llx, outside its lists", (unsigned long long)at);
		list = "teardown";
		msr = teardown[k].msr;
		value = teardown[k].value;
	}
	json_obj_open(j, "fault");
	json_str(j, "list", list);
	json_u64(j, "msr", msr);
	json_u64(j, "value", value);
	json_u64(j, "vector", r->r15 & 0xffffffff);
	json_obj_close(j);
}

static void capture(long index, const struct kv *kv)
{
	struct entry setup[MAX_ENTRIES], teardown[MAX_ENTRIES];
	int nsetup, nteardown, r;
	struct kvm_cpuid2 *c;
	struct kvm_regs regs = { 0 };
	struct vm *vm;
	struct vcpu *v;
	struct json j;
	u64 caps = 0, mask = 0, status = 0, *topa;
	const char *why, *failed = NULL;
	char buf[128];

	if (kv_get(kv, "counter", 0) >= MAX_GP || !kv_get(kv, "period", 1) || !kv_get(kv, "loops", 1))
		die("capture %ld: counter must be below %d, period and loops above 0", index, MAX_GP);
	nsetup = setup_list(setup, kv);
	nteardown = teardown_list(teardown, kv);
	json_begin(&j);
	json_i64(&j, "script", index);
	json_str(&j, "op", "capture");
	vm = vm_create();
	v = vm_add_vcpu(vm);
	c = kvm_supported_cpuid();
	if (!c)
		failed = "KVM_GET_SUPPORTED_CPUID";
	else if (vcpu_set_cpuid(v, c))
		failed = "KVM_SET_CPUID2";
	else if (kvm_msr_ioctl(kvm_fd(), KVM_GET_MSRS, MSR_PERF_CAPABILITIES, &caps) != 1)
		failed = "KVM_GET_MSRS of the feature MSR IA32_PERF_CAPABILITIES";
	else if (kvm_msr_ioctl(v->fd, KVM_SET_MSRS, MSR_PERF_CAPABILITIES, &caps) != 1)
		failed = "KVM_SET_MSRS of the vCPU's IA32_PERF_CAPABILITIES";
	else if (vcpu_set_mode(v, MODE_LONG64, 0))
		failed = "KVM_SET_SREGS";
	if (failed) {
		json_str(&j, "setup", failed);
		json_i64(&j, "errno", errno);
		json_end_line(&j);
		vm_destroy(vm);
		script_done(index);
		return;
	}
	json_null(&j, "setup");
	json_u64(&j, "perf_capabilities", caps);
	topa = gpa_ptr(vm, GPA_TOPA);
	topa[0] = GPA_PT_BUF | TOPA_SIZE_64K | TOPA_STOP;
	topa[1] = GPA_TOPA | TOPA_END;
	memcpy(gpa_ptr(vm, GPA_LISTS), setup, sizeof(setup));
	memcpy(gpa_ptr(vm, GPA_LISTS + sizeof(setup)), teardown, sizeof(teardown));
	regs.rflags = 0x2;
	regs.rsp = GPA_KSTACK_TOP;
	regs.rip = guest_sym_gpa(g64_capture);
	regs.r8 = GPA_LISTS;
	regs.r9 = nsetup;
	regs.r10 = GPA_LISTS + sizeof(setup);
	regs.r11 = nteardown;
	regs.rbx = kv_get(kv, "loops", 10000);
	regs.r15 = NO_VECTOR;
	vcpu_set_regs(v, &regs);
	why = run_guest(v, buf, sizeof(buf));
	if (why)
		json_str(&j, "exit", why);
	else
		json_null(&j, "exit");
	vcpu_get_regs(v, &regs);
	if (!why && (regs.r15 & 0xffffffff) != NO_VECTOR)
		put_fault(&j, &regs, setup, nsetup, teardown, nteardown);
	else
		json_null(&j, "fault");
	json_list_open(&j, "workload");
	json_u64(&j, NULL, guest_sym_gpa(g64_workload));
	json_u64(&j, NULL, guest_sym_gpa(g64_workload_end));
	json_list_close(&j);
	r = kvm_msr_ioctl(v->fd, KVM_GET_MSRS, MSR_RTIT_OUTPUT_MASK, &mask);
	if (r == 1)
		json_u64(&j, "mask_ptrs", mask);
	else
		json_null(&j, "mask_ptrs");
	r = kvm_msr_ioctl(v->fd, KVM_GET_MSRS, MSR_RTIT_STATUS, &status);
	if (r == 1)
		json_u64(&j, "rtit_status", status);
	else
		json_null(&j, "rtit_status");
	/* The output offset (MASK_PTRS bits 63:32) into the only region; a
	 * stopped trace filled it. */
	put_hex(&j, "buffer", gpa_ptr(vm, GPA_PT_BUF),
		(mask >> 32) < PT_BUF_SIZE ? mask >> 32 : PT_BUF_SIZE);
	json_end_line(&j);
	vm_destroy(vm);
	script_done(index);
}

static int run_stdin(void)
{
	char line[512];
	long lineno = 0;

	while (fgets(line, sizeof(line), stdin)) {
		const char *err;
		struct kv kv;
		char *p = line, *end;
		long index;

		lineno++;
		if (!strchr(line, '\n') && !feof(stdin))
			die("stdin line %ld: longer than %zu bytes", lineno, sizeof(line) - 2);
		line[strcspn(line, "\n")] = 0;
		if (!*p || *p == '#')
			continue;
		if (strncmp(p, "capture ", 8))
			die("stdin line %ld: expected 'capture N key=value...': '%.40s'", lineno, p);
		errno = 0;
		index = strtol(p + 8, &end, 0);
		if (errno || end == p + 8 || index < 0)
			die("stdin line %ld: bad capture index", lineno);
		err = kv_parse(end, 0, &kv);
		if (err)
			die("stdin line %ld: %s", lineno, err);
		capture(index, &kv);
	}
	return 0;
}

/* ---- probe: what harness/pebs_pt_hw.py missing() needs ------------------- */

static int probe(void)
{
	unsigned int max, a, b, c, d, vendor[3];
	char name[13], word[32];
	bool pdcm;
	struct json j;
	int fd;

	json_begin(&j);
	__cpuid(0, max, vendor[0], vendor[2], vendor[1]);
	memcpy(name, vendor, 12);
	name[12] = 0;
	json_str(&j, "vendor", name);
	__cpuid(1, a, b, c, d);
	pdcm = c >> 15 & 1;
	json_bool(&j, "pdcm", pdcm);
	b = 0;
	if (max >= 7)
		__cpuid_count(7, 0, a, b, c, d);
	json_bool(&j, "pt", b >> 25 & 1);
	/* IA32_PERF_CAPABILITIES through the msr driver, as the host kernel reads it. */
	fd = open("/dev/cpu/0/msr", O_RDONLY | O_CLOEXEC);
	if (!pdcm) {
		json_null(&j, "perf_caps");
		json_null(&j, "msr_error");
	} else {
		u64 caps;

		if (fd >= 0 && pread(fd, &caps, 8, MSR_PERF_CAPABILITIES) == 8) {
			json_u64(&j, "perf_caps", caps);
			json_null(&j, "msr_error");
		} else {
			char why[96];

			snprintf(why, sizeof(why), "/dev/cpu/0/msr: %s", strerror(errno));
			json_null(&j, "perf_caps");
			json_str(&j, "msr_error", why);
		}
	}
	if (fd >= 0)
		close(fd);
	json_bool(&j, "kvm_intel", access("/sys/module/kvm_intel", F_OK) == 0);
	if (sysfs_word("/sys/module/kvm_intel/parameters/pt_mode", word))
		json_str(&j, "pt_mode", word);
	else
		json_null(&j, "pt_mode");
	fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		json_null(&j, "kvm_perf_caps");
	} else {
		u64 caps = 0;

		if (kvm_msr_ioctl(fd, KVM_GET_MSRS, MSR_PERF_CAPABILITIES, &caps) == 1)
			json_u64(&j, "kvm_perf_caps", caps);
		else
			json_null(&j, "kvm_perf_caps");
		close(fd);
	}
	json_end_line(&j);
	return 0;
}

int main(int argc, char **argv)
{
	json_max = 2 * PT_BUF_SIZE + 4096;
	setvbuf(stdout, NULL, _IOFBF, 1 << 16);
	if (argc == 2 && !strcmp(argv[1], "--probe"))
		return probe();
	if (argc != 1)
		die("usage: %s [--probe] < captures", argv[0]);
	return run_stdin();
}
