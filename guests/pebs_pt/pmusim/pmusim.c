// SPDX-License-Identifier: GPL-2.0
/*
 * pmusim: the kernel's own KVM Intel PMU MSR code run as a user-space program.
 *
 * What is the kernel's (the kernel under test's tree, compiled whole against
 * its own headers by harness/payloads/pebs_pt_build.py):
 *   arch/x86/kvm/vmx/pmu_intel.c  intel_pmu_ops: intel_is_valid_msr,
 *                                 intel_pmu_get_msr/set_msr, intel_pmu_init,
 *                                 intel_pmu_refresh, the LBR MSR paths;
 *   arch/x86/kvm/pmu.c            kvm_pmu_is_valid_msr, kvm_pmu_get_msr/set_msr,
 *                                 kvm_pmu_init/refresh, reprogram_counter;
 *   arch/x86/kvm/vmx/vmx.c        (bridge_vmx.c #includes it) vmx_get_msr,
 *                                 vmx_set_msr (its MSR_IA32_PERF_CAPABILITIES
 *                                 and RTIT cases), vmx_get_msr_feature,
 *                                 vmx_get_perf_capabilities, update_intel_pt_cfg,
 *                                 vmx_init_ops;
 *   arch/x86/kvm/x86.c            (bridge_x86.c #includes it) the MSR paths
 *                                 kvm_get/set_msr_with_filter (a guest RDMSR/
 *                                 WRMSR exit), do_get_msr/do_set_msr (KVM_GET/
 *                                 SET_MSRS on the vCPU), do_get_msr_feature /
 *                                 kvm_get_msr_feature (KVM_GET_MSRS on /dev/kvm),
 *                                 kvm_get/set_msr_common, kvm_ops_update,
 *                                 kvm_init_pmu_capability (pmu.h);
 *   arch/x86/kvm/cpuid.c          kvm_find_cpuid_entry(_index), read by
 *                                 guest_cpuid_has and intel_pmu_refresh.
 *   arch/x86/lib/cpu.c, lib/bitmap.c, lib/find_bit.c, kernel/rcu/srcutiny.c
 *                                 x86_model(), __bitmap_set(), find_next_bit(),
 *                                 __srcu_read_unlock() (kvm_msr_allowed's SRCU);
 *   arch/x86/events/intel/pt.c    pt_caps[] and intel_pt_validate_cap(), cut out
 *                                 of the tree by the builder (ptcap.c).
 *
 * What is the shim's: guests/lib/kernel/autoconf.h + shim/autoconf_extra.h (the configuration), pmusim_pre.h (host
 * MSR accessors to kshim.c; VMREAD reads 0, VMWRITE is dropped), kshim.c (the
 * host: boot_cpu_data, host MSRs, perf's x86_pmu capability / LBR / event
 * creation (always refused), and the set-up sequence: kvm_arch_hardware_setup
 * -> vCPU creation -> KVM_SET_CPUID2), the generated definitions (stubs.S) of
 * every other kernel symbol the compiled files reference (a called function
 * is a trap: exit 3 naming it; anything else zeroed storage, so a function
 * only referenced by address, e.g. from vmx_x86_ops, is SIGSEGV if called:
 * the crash note names script and step), and this file (the
 * op-script reader, the JSON events).  Contract: docs/pebs-pt-suite.md
 * section 2.
 *
 * Input (stdin), one script:
 *   S <index> key=value...   vendor=intel|amd, pdcm, pt, pmu_version, gp, fixed,
 *                            host_perf_caps, host_pebs, host_pt, host_pebs_output_pt
 *   A op=<op> msr=<hex> [value=<hex>]    op: guest_rdmsr guest_wrmsr host_get
 *                                        host_set feature_get
 *   E
 * Numbers hex with 0x (decimal also read); booleans 0/1 or true/false.
 *
 * S keys pmusim adds to section 2 (inputs the kernel code reads that the
 * doc's line format does not name), with their defaults:
 *   ds=0 dtes64=0       guest CPUID.1:EDX[21] / ECX[2]: vmx_set_msr refuses a
 *                       PERF_CAPABILITIES with a PEBS format without them
 *   host_pmu_version=5 host_gp=8 host_fixed=4
 *                       perf_get_x86_pmu_capability() (kvm_init_pmu_capability
 *                       clamps to version 2, 8 GP, 3 fixed; intel_pmu_refresh
 *                       takes the minimum with the guest's leaf 0xA)
 *   host_pdcm=1         boot_cpu_has(X86_FEATURE_PDCM): whether
 *                       vmx_get_perf_capabilities reads host_perf_caps at all
 *   host_pebs_ept=host_pebs   x86_pmu_capability.pebs_ept (vmx_pebs_supported)
 *   host_lbr=32         x86_perf_get_lbr() nr (an Ice Lake's 32-entry stack: from/to/
 *                       info at 0x680/0x6c0/0xdc0); vmx_get_perf_capabilities passes
 *                       the host's LBR format only when nr > 0 and no arch LBR
 *   host_arch_lbr=0     X86_FEATURE_ARCH_LBR
 *   host_rtm=0          X86_FEATURE_HLE/RTM
 *   host_model=0 guest_model=0   cpuid_model_is_consistent()
 *   pt_mode=0           kvm_intel.pt_mode (module default PT_MODE_SYSTEM: the
 *                       RTIT MSRs fault whatever the CPUID; 1 = host_guest,
 *                       kept only when host_pt, as hardware_setup decides)
 *   enable_pmu=1        kvm.enable_pmu
 * host_pebs also sets the host's DS and DTES64; host_pebs_output_pt is read
 * and ignored (no 6.1 KVM code reads perf's pebs_output_pt_available: bit 16
 * reaches KVM only through host_perf_caps). vendor=amd: kvm-amd is not
 * compiled; the script is answered with an exit 2 message.
 *
 * Output: per action {"script": i, "op": "result", "step": n, "result":
 * "ok"|"fault"|"refused", "value": n|null} (value: what a read returned;
 * null for writes and failed reads), then {"script": i, "op": "done"}.
 * A malformed line: exit 2, one line on stderr.
 */
#define _GNU_SOURCE
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "json.h"
#include "util.h"
#include "pmusim_api.h"

#define MAX_ACTIONS 1024

struct pmusim_cfg pmusim_cfg;

static long cur_script = -1, cur_step = -1;

struct action { int op; unsigned int msr; uint64_t value; bool has_value; };

static struct {
	long index;
	int nactions;
	struct action a[MAX_ACTIONS];
} S;

void pmusim_note(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "pmusim: script %ld step %ld: ", cur_script, cur_step);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

void pmusim_unexpected(const char *what)
{
	fflush(stdout);
	fprintf(stderr, "pmusim: script %ld step %ld: the kernel code reached %s\n",
		cur_script, cur_step, what);
	exit(3);
}

/* a generated stub (stubs.S): a kernel function outside what pmusim compiles */
void pmusim_trap(const char *name) __attribute__((noreturn));
void pmusim_trap(const char *name)
{
	char what[160];

	snprintf(what, sizeof(what), "%s() (not compiled: a generated trap)", name);
	pmusim_unexpected(what);
}

void *pmusim_zalloc(unsigned long size)
{
	void *p = calloc(1, size);

	if (!p)
		die("pmusim: out of memory");
	return p;
}

static void crash(int sig)
{
	char msg[160];
	int n = snprintf(msg, sizeof(msg), "pmusim: signal %d in script %ld step %ld (in the kernel's KVM code)\n",
			 sig, cur_script, cur_step);

	if (write(2, msg, n) < 0) { /* nothing more to do */ }
	signal(sig, SIG_DFL);
	raise(sig);
}

static const char *const op_names[] = {
	[PMUSIM_GUEST_RDMSR] = "guest_rdmsr", [PMUSIM_GUEST_WRMSR] = "guest_wrmsr",
	[PMUSIM_HOST_GET] = "host_get", [PMUSIM_HOST_SET] = "host_set",
	[PMUSIM_FEATURE_GET] = "feature_get",
};

static uint64_t number(const char *key, const char *v)
{
	char *end;
	uint64_t x;

	if (!strcmp(v, "true"))
		return 1;
	if (!strcmp(v, "false"))
		return 0;
	x = strtoull(v, &end, 0);
	if (!*v || *end)
		die("pmusim: bad number %s=%.40s", key, v);
	return x;
}

static void defaults(void)
{
	memset(&pmusim_cfg, 0, sizeof(pmusim_cfg));
	pmusim_cfg.intel = 1;
	pmusim_cfg.host_pdcm = 1;
	pmusim_cfg.host_pmu_version = 5;
	pmusim_cfg.host_gp = 8;
	pmusim_cfg.host_fixed = 4;
	pmusim_cfg.host_pebs_ept = -1;
	pmusim_cfg.host_lbr_nr = 32;
	pmusim_cfg.enable_pmu = 1;
	pmusim_cfg.pmu_version = 2;
	pmusim_cfg.gp = 4;
	pmusim_cfg.fixed = 3;
}

static void s_key(const char *k, const char *v)
{
	struct pmusim_cfg *c = &pmusim_cfg;
	static const struct { const char *name; int *field; } ints[] = {
		{"pdcm", &pmusim_cfg.pdcm}, {"pt", &pmusim_cfg.pt},
		{"ds", &pmusim_cfg.ds}, {"dtes64", &pmusim_cfg.dtes64},
		{"pmu_version", &pmusim_cfg.pmu_version}, {"gp", &pmusim_cfg.gp},
		{"fixed", &pmusim_cfg.fixed}, {"host_pebs", &pmusim_cfg.host_pebs},
		{"host_pt", &pmusim_cfg.host_pt},
		{"host_pebs_output_pt", &pmusim_cfg.host_pebs_output_pt},
		{"host_pmu_version", &pmusim_cfg.host_pmu_version},
		{"host_gp", &pmusim_cfg.host_gp}, {"host_fixed", &pmusim_cfg.host_fixed},
		{"host_pdcm", &pmusim_cfg.host_pdcm},
		{"host_pebs_ept", &pmusim_cfg.host_pebs_ept},
		{"host_lbr", &pmusim_cfg.host_lbr_nr},
		{"host_arch_lbr", &pmusim_cfg.host_arch_lbr},
		{"host_rtm", &pmusim_cfg.host_rtm},
		{"host_model", &pmusim_cfg.host_model},
		{"guest_model", &pmusim_cfg.guest_model},
		{"pt_mode", &pmusim_cfg.pt_mode}, {"enable_pmu", &pmusim_cfg.enable_pmu},
	};
	size_t i;

	if (!strcmp(k, "vendor")) {
		if (!strcmp(v, "intel"))
			c->intel = 1;
		else if (!strcmp(v, "amd"))
			c->intel = 0;
		else
			die("pmusim: bad vendor=%.20s", v);
		return;
	}
	if (!strcmp(k, "host_perf_caps")) {
		c->host_perf_caps = number(k, v);
		return;
	}
	for (i = 0; i < sizeof(ints) / sizeof(ints[0]); i++) {
		if (!strcmp(k, ints[i].name)) {
			uint64_t x = number(k, v);

			if (x > 0x7fffffff)
				die("pmusim: %s=%.40s out of range", k, v);
			*ints[i].field = (int)x;
			return;
		}
	}
	die("pmusim: unknown S key %.40s", k);
}

static void result(int step, const char *res, bool has_value, uint64_t value)
{
	struct json j;

	json_begin(&j);
	json_i64(&j, "script", S.index);
	json_str(&j, "op", "result");
	json_i64(&j, "step", step);
	json_str(&j, "result", res);
	if (has_value)
		json_u64(&j, "value", value);
	else
		json_null(&j, "value");
	json_end_line(&j);
}

static void run_script(void)
{
	cur_script = S.index;
	cur_step = -1;
	if (!pmusim_cfg.intel)
		die("pmusim: script %ld: vendor=amd: kvm-amd (svm.c, svm/pmu.c) is not compiled "
		    "into pmusim", S.index);
	if (pmusim_cfg.host_pebs_ept < 0)
		pmusim_cfg.host_pebs_ept = pmusim_cfg.host_pebs;
	pmusim_setup();
	for (int i = 0; i < S.nactions; i++) {
		struct action *a = &S.a[i];
		unsigned long long v = a->value;
		bool read = a->op == PMUSIM_GUEST_RDMSR || a->op == PMUSIM_HOST_GET ||
			    a->op == PMUSIM_FEATURE_GET;
		bool guest = a->op == PMUSIM_GUEST_RDMSR || a->op == PMUSIM_GUEST_WRMSR;
		int r;

		cur_step = i;
		r = pmusim_msr(a->op, a->msr, &v);
		if (r)
			result(i, guest ? "fault" : "refused", false, 0);
		else
			result(i, "ok", read, v);
	}
	script_done(S.index);
}

int main(void)
{
	char *line = NULL, *save, *tok, *eq;
	size_t cap = 0;
	bool in_script = false;
	long lineno = 0;

	setvbuf(stdout, NULL, _IOLBF, 0);
	signal(SIGSEGV, crash);
	signal(SIGBUS, crash);
	signal(SIGILL, crash);
	signal(SIGFPE, crash);
	signal(SIGABRT, crash);
	while (getline(&line, &cap, stdin) > 0) {
		lineno++;
		tok = strtok_r(line, " \t\r\n", &save);
		if (!tok)
			continue;
		if (!strcmp(tok, "S")) {
			if (in_script)
				die("pmusim: line %ld: S inside a script", lineno);
			tok = strtok_r(NULL, " \t\r\n", &save);
			if (!tok)
				die("pmusim: line %ld: S without an index", lineno);
			S.index = (long)number("index", tok);
			S.nactions = 0;
			defaults();
			while ((tok = strtok_r(NULL, " \t\r\n", &save))) {
				eq = strchr(tok, '=');
				if (!eq || eq == tok)
					die("pmusim: line %ld: bad key=value '%.40s'", lineno, tok);
				*eq = 0;
				s_key(tok, eq + 1);
			}
			in_script = true;
		} else if (!strcmp(tok, "A")) {
			struct action a = { .op = -1 };
			bool has_msr = false;

			if (!in_script)
				die("pmusim: line %ld: A outside a script", lineno);
			if (S.nactions == MAX_ACTIONS)
				die("pmusim: line %ld: more than %d actions", lineno, MAX_ACTIONS);
			while ((tok = strtok_r(NULL, " \t\r\n", &save))) {
				eq = strchr(tok, '=');
				if (!eq || eq == tok)
					die("pmusim: line %ld: bad key=value '%.40s'", lineno, tok);
				*eq++ = 0;
				if (!strcmp(tok, "op")) {
					for (size_t i = 0; i < sizeof(op_names) / sizeof(op_names[0]); i++)
						if (!strcmp(eq, op_names[i]))
							a.op = (int)i;
					if (a.op < 0)
						die("pmusim: line %ld: unknown op %.40s", lineno, eq);
				} else if (!strcmp(tok, "msr")) {
					uint64_t m = number(tok, eq);

					if (m > 0xffffffffull)
						die("pmusim: line %ld: msr %.40s out of range", lineno, eq);
					a.msr = (unsigned int)m;
					has_msr = true;
				} else if (!strcmp(tok, "value")) {
					a.value = number(tok, eq);
					a.has_value = true;
				} else {
					die("pmusim: line %ld: unknown A key %.40s", lineno, tok);
				}
			}
			if (a.op < 0 || !has_msr)
				die("pmusim: line %ld: A needs op= and msr=", lineno);
			if ((a.op == PMUSIM_GUEST_WRMSR || a.op == PMUSIM_HOST_SET) && !a.has_value)
				die("pmusim: line %ld: %s needs value=", lineno, op_names[a.op]);
			S.a[S.nactions++] = a;
		} else if (!strcmp(tok, "E")) {
			if (!in_script)
				die("pmusim: line %ld: E outside a script", lineno);
			run_script();
			in_script = false;
		} else {
			die("pmusim: line %ld: unknown line '%.20s'", lineno, tok);
		}
	}
	if (in_script)
		die("pmusim: input ends inside script %ld", S.index);
	free(line);
	return 0;
}
