/*
 * probe: what the kernel under test offers, as one JSON object on stdout.
 * The harness's SKIP reasons come from this (and from the shell probe that
 * runs beside it). Every ioctl result is printed with its errno, never guessed.
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

int main(void)
{
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
