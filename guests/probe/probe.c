/*
 * probe: what the kernel under test offers, as one JSON object on stdout.
 * The harness's SKIP reasons come from this (and from the shell probe that
 * runs beside it). Every ioctl result is printed with its errno, never guessed.
 *
 * probe --kmsg-from SEQ: the kernel log records numbered SEQ and later, one
 * JSON line each {"seq","level","ts_us","text"}, then {"next":M}, M the seq
 * after the newest record read (SEQ if none): a live host's dmesg check.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <linux/kvm.h>
#include <cpuid.h>

#define MSR_IA32_PERF_CAPABILITIES 0x345
#define MSR_AMD64_SEV 0xc0010131

static int read_msr(uint32_t index, uint64_t *value)
{
	int fd = open("/dev/cpu/0/msr", O_RDONLY);
	if (fd < 0)
		return -errno;
	int ret = pread(fd, value, sizeof(*value), index) == sizeof(*value) ? 0 : -errno;
	close(fd);
	return ret;
}

static void print_msr(const char *name, uint32_t index)
{
	uint64_t value;
	int ret = read_msr(index, &value);
	if (ret == 0)
		printf("\"%s\":{\"value\":%llu}", name, (unsigned long long)value);
	else
		printf("\"%s\":{\"errno\":%d}", name, -ret);
}

static void print_kvm(void)
{
	static const struct { const char *name; int cap; } caps[] = {
		{"hyperv", KVM_CAP_HYPERV}, {"hyperv_cpuid", KVM_CAP_HYPERV_CPUID},
		{"sys_hyperv_cpuid", KVM_CAP_SYS_HYPERV_CPUID},
		{"hyperv_enforce_cpuid", KVM_CAP_HYPERV_ENFORCE_CPUID},
		{"nested_state", KVM_CAP_NESTED_STATE}, {"pmu_capability", KVM_CAP_PMU_CAPABILITY},
		{"disable_quirks2", KVM_CAP_DISABLE_QUIRKS2},
	};
	int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		printf("\"kvm\":{\"present\":false,\"errno\":%d}", errno);
		return;
	}
	printf("\"kvm\":{\"present\":true,\"api_version\":%d,\"caps\":{", ioctl(fd, KVM_GET_API_VERSION, 0));
	for (size_t i = 0; i < sizeof(caps) / sizeof(caps[0]); i++)
		printf("%s\"%s\":%d", i ? "," : "", caps[i].name, ioctl(fd, KVM_CHECK_EXTENSION, caps[i].cap));
	printf("},\"hv_cpuid\":");
	int nent = 64;
	struct kvm_cpuid2 *cpuid = calloc(1, sizeof(*cpuid) + nent * sizeof(struct kvm_cpuid_entry2));
	cpuid->nent = nent;
	if (ioctl(fd, KVM_GET_SUPPORTED_HV_CPUID, cpuid) < 0) {
		printf("{\"errno\":%d}", errno);
	} else {
		printf("[");
		for (uint32_t i = 0; i < cpuid->nent; i++) {
			struct kvm_cpuid_entry2 *e = &cpuid->entries[i];
			printf("%s{\"function\":%u,\"eax\":%u,\"ebx\":%u,\"ecx\":%u,\"edx\":%u}", i ? "," : "",
			       e->function, e->eax, e->ebx, e->ecx, e->edx);
		}
		printf("]");
	}
	free(cpuid);
	close(fd);
	printf("}");
}

/* A JSON string (as json.c's json_str, which probe does not link: it uses no lib code). */
static void print_json_str(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			printf("\\%c", c);
		else if (c < 0x20 || c >= 0x7f)
			printf("\\u%04x", c);
		else
			putchar(c);
	}
	putchar('"');
}

/* /dev/kmsg gives one record per read(): "prio,seq,ts_us,flags[,...];text\n",
 * then " KEY=VALUE\n" lines (dropped); the text has non-printables as \xNN. */
static int print_kmsg(unsigned long long from)
{
	static char buf[8192 + 1];
	unsigned long long next = from, seq, ts;
	unsigned int prio;
	int fd = open("/dev/kmsg", O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0) {
		fprintf(stderr, "probe: /dev/kmsg: %s\n", strerror(errno));
		return 1;
	}
	for (;;) {
		ssize_t n = read(fd, buf, sizeof(buf) - 1);
		if (n < 0 && errno == EPIPE)	/* records overwritten: go on with the oldest left */
			continue;
		if (n < 0 && errno == EAGAIN)
			break;
		if (n < 0) {
			fprintf(stderr, "probe: read /dev/kmsg: %s\n", strerror(errno));
			close(fd);
			return 1;
		}
		buf[n] = 0;
		char *text = strchr(buf, ';'), *end;
		if (!text || sscanf(buf, "%u,%llu,%llu", &prio, &seq, &ts) != 3)
			continue;
		text++;
		if ((end = strchr(text, '\n')))
			*end = 0;
		next = seq + 1;
		if (seq < from)
			continue;
		printf("{\"seq\":%llu,\"level\":%u,\"ts_us\":%llu,\"text\":", seq, prio & 7, ts);
		print_json_str(text);
		printf("}\n");
	}
	close(fd);
	printf("{\"next\":%llu}\n", next);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "--kmsg-from") == 0) {
		char *end;
		errno = 0;
		unsigned long long from = argc == 3 ? strtoull(argv[2], &end, 0) : 0;
		if (argc != 3 || errno || end == argv[2] || *end) {
			fprintf(stderr, "usage: probe [--kmsg-from SEQ]\n");
			return 2;
		}
		return print_kmsg(from);
	}

	unsigned int eax, ebx, ecx, edx;
	char vendor[13] = {0};
	__cpuid(0, eax, ebx, ecx, edx);
	memcpy(vendor, &ebx, 4); memcpy(vendor + 4, &edx, 4); memcpy(vendor + 8, &ecx, 4);
	printf("{\"cpu_vendor\":\"%s\",", vendor);
	unsigned int sev_eax = 0, max_ext = __get_cpuid_max(0x80000000, NULL);
	if (max_ext >= 0x8000001f)
		__cpuid(0x8000001f, sev_eax, ebx, ecx, edx);
	printf("\"cpuid_8000001f_eax\":%u,", sev_eax);
	print_msr("perf_capabilities", MSR_IA32_PERF_CAPABILITIES);
	printf(",");
	print_msr("sev_status", MSR_AMD64_SEV);
	printf(",");
	print_kvm();
	printf("}\n");
	return 0;
}
