// SPDX-License-Identifier: GPL-2.0
/*
 * pebs_pt_absent payload (issue 13 item 4): what a KVM without PEBS-via-PT
 * answers for the Intel PEBS, reload and RTIT MSRs and for
 * IA32_PERF_CAPABILITIES, from a guest and from the host, through guests/lib.
 * The predictions are in harness/payloads/pebs_pt_absent.py.
 *
 * Input (stdin), one line per case:
 *
 *   case <index> [msr=N] [value=N] [pdcm=0|1|2] [pt=0|1|2] ops=MASK
 *
 * pdcm / pt: the guest's CPUID.1:ECX[15] / CPUID.7.0:EBX[25] in the VM's
 * CPUID (KVM_GET_SUPPORTED_CPUID's, then 0 clears, 1 sets, 2 keeps the bit).
 * ops: which observations, made in this order (the OP_* bits below):
 * supported CPUID, MSR index list, feature MSR index list, KVM_GET_MSRS on
 * the system fd, guest RDMSR, guest WRMSR of value, KVM_GET_MSRS,
 * KVM_SET_MSRS of value, KVM_SET_MSRS of 0, guest RDMSR again.  A VM (one
 * vCPU, 64-bit, CPL0) is created only when a guest or vCPU op is asked for.
 *
 * Output: JSON lines tagged {"script": index}, one event per observation,
 * then {"script": index, "op": "done"}.  Guest results: "ok" (value read) or
 * "fault" (#GP recorded by guests/lib's handler); anything else the guest did
 * ends the case's guest ops with "result": "abort" and a "why".
 *
 * Usage: pebs_pt_absent           run the cases on stdin
 *        pebs_pt_absent --probe   print the environment as one JSON line
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

#define OP_CPUID        (1u << 0)
#define OP_MSR_LIST     (1u << 1)
#define OP_FEAT_LIST    (1u << 2)
#define OP_FEAT_GET     (1u << 3)
#define OP_GUEST_RD     (1u << 4)
#define OP_GUEST_WR     (1u << 5)
#define OP_HOST_GET     (1u << 6)
#define OP_HOST_SET     (1u << 7)
#define OP_HOST_SET0    (1u << 8)
#define OP_GUEST_RD2    (1u << 9)
#define OP_ALL          ((1u << 10) - 1)
#define OP_NEED_VM      (OP_GUEST_RD | OP_GUEST_WR | OP_HOST_GET | OP_HOST_SET | \
			 OP_HOST_SET0 | OP_GUEST_RD2)

#define RUN_DEADLINE_MS 10000
#define MAX_EXITS       4

extern const u8 g64_rdmsr[], g64_wrmsr[];

/* ---- KVM's lists ------------------------------------------------------ */

static struct kvm_msr_list *get_list(unsigned long req)
{
	struct kvm_msr_list probe = { .nmsrs = 0 }, *l;

	if (ioctl(kvm_fd(), req, &probe) && errno != E2BIG)
		return NULL;
	l = calloc(1, sizeof(*l) + (probe.nmsrs + 16) * sizeof(u32));
	if (!l)
		die("out of memory");
	l->nmsrs = probe.nmsrs + 16;
	if (ioctl(kvm_fd(), req, l)) {
		free(l);
		return NULL;
	}
	return l;
}

/* Event for a list lookup: listed true/false, or the ioctl's errno. */
static void put_listed(struct json *j, unsigned long req, u32 msr)
{
	static struct kvm_msr_list *lists[2];
	static int errs[2];
	int k = req == KVM_GET_MSR_INDEX_LIST ? 0 : 1;
	bool found = false;

	if (!lists[k] && !errs[k]) {
		lists[k] = get_list(req);
		errs[k] = lists[k] ? 0 : (errno ? errno : EINVAL);
	}
	if (!lists[k]) {
		json_null(j, "listed");
		json_i64(j, "errno", errs[k]);
		return;
	}
	for (u32 i = 0; i < lists[k]->nmsrs; i++)
		found |= lists[k]->indices[i] == msr;
	json_bool(j, "listed", found);
}

static void put_ret(struct json *j, int r, u64 value, bool with_value)
{
	json_i64(j, "ret", r);
	if (r < 0)
		json_i64(j, "errno", errno);
	if (with_value) {
		if (r == 1)
			json_u64(j, "value", value);
		else
			json_null(j, "value");
	}
}

/* ---- supported CPUID -------------------------------------------------- */

static void put_leaf(struct json *j, const char *key, struct kvm_cpuid2 *c, u32 fn)
{
	struct kvm_cpuid_entry2 *e = cpuid_find(c, fn, 0);

	if (!e) {
		json_null(j, key);
		return;
	}
	json_list_open(j, key);
	json_u64(j, NULL, e->eax);
	json_u64(j, NULL, e->ebx);
	json_u64(j, NULL, e->ecx);
	json_u64(j, NULL, e->edx);
	json_list_close(j);
}

static u32 leaf_reg(struct kvm_cpuid2 *c, u32 fn, u32 idx, int reg)
{
	struct kvm_cpuid_entry2 *e = cpuid_find(c, fn, idx);

	if (!e)
		return 0;
	return reg == 0 ? e->eax : reg == 1 ? e->ebx : reg == 2 ? e->ecx : e->edx;
}

/* The bits the feature is about, from KVM_GET_SUPPORTED_CPUID. */
static void put_supported(struct json *j, struct kvm_cpuid2 *c)
{
	int n14 = 0;

	json_i64(j, "pdcm", leaf_reg(c, 1, 0, 2) >> 15 & 1);       /* 1.ECX[15] */
	json_i64(j, "dtes64", leaf_reg(c, 1, 0, 2) >> 2 & 1);      /* 1.ECX[2] */
	json_i64(j, "ds", leaf_reg(c, 1, 0, 3) >> 21 & 1);         /* 1.EDX[21] */
	json_i64(j, "pt", leaf_reg(c, 7, 0, 1) >> 25 & 1);         /* 7.0.EBX[25] */
	json_u64(j, "max_basic", leaf_reg(c, 0, 0, 0));
	put_leaf(j, "leaf_a", c, 0xa);
	put_leaf(j, "leaf_14", c, 0x14);
	for (u32 i = 0; i < c->nent; i++)
		n14 += c->entries[i].function == 0x14;
	json_i64(j, "leaf_14_entries", n14);
}

/* ---- one case ---------------------------------------------------------- */

struct ctx {
	long index;
	struct vm *vm;
	struct vcpu *v;
	bool aborted;
};

static void ev_begin(struct json *j, const struct ctx *x, const char *op)
{
	json_begin(j);
	json_i64(j, "script", x->index);
	json_str(j, "op", op);
}

/* One RDMSR or WRMSR in the guest.  The result is "ok" or "fault" (#GP), or
 * "abort" with what else happened. */
static void guest_msr(struct ctx *x, const char *op, bool write, u32 msr, u64 val)
{
	struct vcpu *v = x->v;
	struct kvm_regs r = { 0 };
	const char *why = NULL;
	char buf[96];
	struct json j;
	u64 stub = guest_sym_gpa(write ? g64_wrmsr : g64_rdmsr), vector;

	ev_begin(&j, x, op);
	json_u64(&j, "msr", msr);
	if (write)
		json_u64(&j, "value", val);
	if (x->aborted) {
		json_str(&j, "result", "abort");
		json_str(&j, "why", "an earlier guest op aborted");
		json_end_line(&j);
		return;
	}
	if (vcpu_set_mode(v, MODE_LONG64, 0))
		die("KVM_SET_SREGS (long mode, CPL0): %s", strerror(errno));
	r.rflags = 0x2;
	r.rsp = GPA_KSTACK_TOP;
	r.rip = stub;
	r.rcx = msr;
	r.rax = val & 0xffffffff;
	r.rdx = val >> 32;
	r.r15 = NO_VECTOR;
	vcpu_set_regs(v, &r);
	for (int n = 0; !why; n++) {
		struct kvm_run *run = v->run;

		if (n == MAX_EXITS) {
			why = "too many exits";
			break;
		}
		if (vcpu_run(v, RUN_DEADLINE_MS)) {
			snprintf(buf, sizeof(buf), errno == EINTR ? "timeout: no exit within %d ms" :
				 "KVM_RUN failed (%d)", errno == EINTR ? RUN_DEADLINE_MS : errno);
			why = buf;
			break;
		}
		if (run->exit_reason == KVM_EXIT_IO && run->io.port == UCALL_PORT_DONE)
			break;
		if (run->exit_reason == KVM_EXIT_IO && run->io.port == UCALL_PORT_FATAL) {
			struct kvm_regs f;

			vcpu_get_regs(v, &f);
			snprintf(buf, sizeof(buf), "guest exception vector %llu",
				 (unsigned long long)f.r15);
			why = buf;
			break;
		}
		snprintf(buf, sizeof(buf), "unexpected exit reason %u", run->exit_reason);
		why = buf;
	}
	if (why) {
		json_str(&j, "result", "abort");
		json_str(&j, "why", why);
		json_end_line(&j);
		x->aborted = true;
		return;
	}
	vcpu_get_regs(v, &r);
	vector = r.r15 & 0xffffffff;
	if (vector == NO_VECTOR) {
		json_str(&j, "result", "ok");
		if (!write)
			json_u64(&j, "value", (r.rdx & 0xffffffff) << 32 | (r.rax & 0xffffffff));
	} else if (vector == 13) {
		json_str(&j, "result", "fault");
		if (!write)
			json_null(&j, "value");
	} else {
		snprintf(buf, sizeof(buf), "vector %llu", (unsigned long long)vector);
		json_str(&j, "result", "abort");
		json_str(&j, "why", buf);
		x->aborted = true;
	}
	json_end_line(&j);
}

static struct kvm_cpuid2 *case_cpuid(int pdcm, int pt)
{
	struct kvm_cpuid2 *base = kvm_supported_cpuid(), *c;
	struct kvm_cpuid_entry2 *e;

	if (!base)
		return NULL;
	c = cpuid_dup(base);
	e = cpuid_find(c, 1, 0);
	if (e && pdcm != 2)
		e->ecx = pdcm ? e->ecx | 1u << 15 : e->ecx & ~(1u << 15);
	e = cpuid_find(c, 7, 0);
	if (e && pt != 2)
		e->ebx = pt ? e->ebx | 1u << 25 : e->ebx & ~(1u << 25);
	return c;
}

static void setup_event(struct ctx *x, const char *failed, int err)
{
	struct json j;

	ev_begin(&j, x, "setup");
	json_bool(&j, "ok", failed == NULL);
	if (failed) {
		json_str(&j, "failed", failed);
		json_i64(&j, "errno", err);
	}
	json_end_line(&j);
}

static void run_case(long index, const struct kv *kv)
{
	struct ctx x = { .index = index };
	u32 ops = (u32)kv_get(kv, "ops", 0), msr = (u32)kv_get(kv, "msr", 0);
	u64 value = kv_get(kv, "value", 0), data;
	int pdcm = (int)kv_get(kv, "pdcm", 2), pt = (int)kv_get(kv, "pt", 2), r;
	struct json j;

	if (ops & ~OP_ALL || pdcm > 2 || pt > 2)
		die("case %ld: bad ops, pdcm or pt", index);
	if (ops & OP_CPUID) {
		struct kvm_cpuid2 *c = kvm_supported_cpuid();

		ev_begin(&j, &x, "cpuid");
		if (c) {
			json_i64(&j, "ret", 0);
			put_supported(&j, c);
		} else {
			json_i64(&j, "ret", -1);
			json_i64(&j, "errno", errno);
		}
		json_end_line(&j);
	}
	if (ops & OP_MSR_LIST) {
		ev_begin(&j, &x, "msr_list");
		json_u64(&j, "msr", msr);
		put_listed(&j, KVM_GET_MSR_INDEX_LIST, msr);
		json_end_line(&j);
	}
	if (ops & OP_FEAT_LIST) {
		ev_begin(&j, &x, "feature_list");
		json_u64(&j, "msr", msr);
		put_listed(&j, KVM_GET_MSR_FEATURE_INDEX_LIST, msr);
		json_end_line(&j);
	}
	if (ops & OP_FEAT_GET) {
		data = 0;
		r = kvm_msr_ioctl(kvm_fd(), KVM_GET_MSRS, msr, &data);
		ev_begin(&j, &x, "feature_get");
		json_u64(&j, "msr", msr);
		put_ret(&j, r, data, true);
		json_end_line(&j);
	}
	if (ops & OP_NEED_VM) {
		struct kvm_cpuid2 *c;

		x.vm = vm_create();
		x.v = vm_add_vcpu(x.vm);
		c = case_cpuid(pdcm, pt);
		if (!c) {
			setup_event(&x, "KVM_GET_SUPPORTED_CPUID", errno);
			goto out;
		}
		if (vcpu_set_cpuid(x.v, c)) {
			setup_event(&x, "KVM_SET_CPUID2", errno);
			free(c);
			goto out;
		}
		free(c);
		setup_event(&x, NULL, 0);
	}
	if (ops & OP_GUEST_RD)
		guest_msr(&x, "guest_rdmsr", false, msr, 0);
	if (ops & OP_GUEST_WR)
		guest_msr(&x, "guest_wrmsr", true, msr, value);
	if (ops & OP_HOST_GET) {
		data = 0;
		r = kvm_msr_ioctl(x.v->fd, KVM_GET_MSRS, msr, &data);
		ev_begin(&j, &x, "host_get");
		json_u64(&j, "msr", msr);
		put_ret(&j, r, data, true);
		json_end_line(&j);
	}
	if (ops & OP_HOST_SET) {
		data = value;
		r = kvm_msr_ioctl(x.v->fd, KVM_SET_MSRS, msr, &data);
		ev_begin(&j, &x, "host_set");
		json_u64(&j, "msr", msr);
		json_u64(&j, "value", value);
		put_ret(&j, r, 0, false);
		json_end_line(&j);
	}
	if (ops & OP_HOST_SET0) {
		data = 0;
		r = kvm_msr_ioctl(x.v->fd, KVM_SET_MSRS, msr, &data);
		ev_begin(&j, &x, "host_set");
		json_u64(&j, "msr", msr);
		json_u64(&j, "value", 0);
		put_ret(&j, r, 0, false);
		json_end_line(&j);
	}
	if (ops & OP_GUEST_RD2)
		guest_msr(&x, "guest_rdmsr", false, msr, 0);
out:
	if (x.vm)
		vm_destroy(x.vm);
	script_done(index);
}

static int run_stdin(void)
{
	char line[1024], copy[1024];
	long lineno = 0, cases = 0;

	while (fgets(line, sizeof(line), stdin)) {
		const char *err;
		struct kv kv;
		char *p = line, *end;
		long index;

		lineno++;
		if (!strchr(line, '\n') && !feof(stdin))
			die("stdin line %ld: longer than %zu bytes", lineno, sizeof(line) - 2);
		while (*p == ' ' || *p == '\t')
			p++;
		if (*p == '\n' || *p == '#' || *p == 0)
			continue;
		snprintf(copy, sizeof(copy), "%s", p);
		copy[strcspn(copy, "\n")] = 0;
		if (strncmp(p, "case ", 5))
			die("stdin line %ld: expected 'case N ...': '%.40s'", lineno, copy);
		errno = 0;
		index = strtol(p + 5, &end, 0);
		if (errno || end == p + 5 || index < 0)
			die("stdin line %ld: bad case index in '%.40s'", lineno, copy);
		err = kv_parse(end, 0, &kv);
		if (err)
			die("stdin line %ld: %s in '%s'", lineno, err, copy);
		run_case(index, &kv);
		cases++;
	}
	fprintf(stderr, "pebs_pt_absent: %ld cases\n", cases);
	return 0;
}

/* ---- probe --------------------------------------------------------------- */

static void put_param(struct json *j, const char *key, const char *path)
{
	char buf[32];
	const char *w = sysfs_word(path, buf);

	if (w)
		json_str(j, key, w);
	else
		json_null(j, key);
}

/* The host kernel's rdmsr_safe() of the MSRs whose presence in KVM's
 * msrs_to_save depends on it (x86.c kvm_init_msr_list), through the msr
 * driver: "ok", "fault" (EIO), or null without /dev/cpu/0/msr. */
static const u32 HOST_MSRS[] = { 0x3f1, 0x3f2, 0x600, 0x345, 0x570, 0x571, 0x560, 0x561,
				 0x572, 0x580, 0x14c1, 0x1309 };

static void put_host_rdmsr(struct json *j)
{
	int fd = open("/dev/cpu/0/msr", O_RDONLY | O_CLOEXEC);
	char key[16];

	json_obj_open(j, "host_rdmsr");
	for (size_t i = 0; i < sizeof(HOST_MSRS) / sizeof(HOST_MSRS[0]); i++) {
		u64 v;

		snprintf(key, sizeof(key), "%#x", HOST_MSRS[i]);
		if (fd < 0)
			json_null(j, key);
		else
			json_str(j, key, pread(fd, &v, 8, HOST_MSRS[i]) == 8 ? "ok" : "fault");
	}
	json_obj_close(j);
	if (fd < 0)
		json_str(j, "host_rdmsr_why", strerror(errno));
	else
		close(fd);
}

static int probe(void)
{
	unsigned int a, b, c, d, max;
	struct json j;
	int fd;

	json_begin(&j);
	json_str(&j, "probe", "pebs_pt_absent");
	json_str(&j, "vendor", kvm_cpu_vendor());
	/* The host CPU as this kernel's user space sees it. */
	__cpuid(0, max, b, c, d);
	json_obj_open(&j, "host_cpuid");
	json_u64(&j, "max_basic", max);
	__cpuid(1, a, b, c, d);
	json_i64(&j, "pdcm", c >> 15 & 1);
	json_i64(&j, "dtes64", c >> 2 & 1);
	json_i64(&j, "ds", d >> 21 & 1);
	json_i64(&j, "hypervisor", c >> 31 & 1);
	if (max >= 7) {
		__cpuid_count(7, 0, a, b, c, d);
		json_i64(&j, "pt", b >> 25 & 1);
	} else {
		json_i64(&j, "pt", 0);
	}
	json_obj_close(&j);
	put_param(&j, "ignore_msrs", "/sys/module/kvm/parameters/ignore_msrs");
	put_param(&j, "enable_pmu", "/sys/module/kvm/parameters/enable_pmu");
	put_param(&j, "pt_mode", "/sys/module/kvm_intel/parameters/pt_mode");
	put_host_rdmsr(&j);
	fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		json_bool(&j, "dev_kvm", false);
		json_str(&j, "dev_kvm_why", strerror(errno));
	} else {
		struct kvm_cpuid2 *s;

		close(fd);
		json_bool(&j, "dev_kvm", true);
		json_i64(&j, "get_msr_features", kvm_check_extension(KVM_CAP_GET_MSR_FEATURES));
		s = kvm_supported_cpuid();
		json_obj_open(&j, "supported");
		if (s)
			put_supported(&j, s);
		json_obj_close(&j);
		{
			u64 v = 0;
			int r = kvm_msr_ioctl(kvm_fd(), KVM_GET_MSRS, 0x345, &v);

			json_obj_open(&j, "feature_perf_caps");
			put_ret(&j, r, v, true);
			json_obj_close(&j);
		}
	}
	json_end_line(&j);
	return 0;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOFBF, 1 << 16);
	if (argc == 2 && !strcmp(argv[1], "--probe"))
		return probe();
	if (argc != 1)
		die("usage: %s [--probe] < cases", argv[0]);
	return run_stdin();
}
