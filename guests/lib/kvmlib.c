// SPDX-License-Identifier: GPL-2.0
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/time.h>
#include <unistd.h>
#include <cpuid.h>

#include "kvmlib.h"

static int kvm_sys_fd = -1;

int kvm_fd(void)
{
	if (kvm_sys_fd < 0) {
		kvm_sys_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
		if (kvm_sys_fd < 0)
			die("open /dev/kvm: %s", strerror(errno));
		if (ioctl(kvm_sys_fd, KVM_GET_API_VERSION, 0) != KVM_API_VERSION)
			die("KVM_GET_API_VERSION is not %d", KVM_API_VERSION);
	}
	return kvm_sys_fd;
}

int kvm_check_extension(long cap)
{
	return ioctl(kvm_fd(), KVM_CHECK_EXTENSION, cap);
}

const char *kvm_cpu_vendor(void)
{
	unsigned int a, b, c, d;

	__cpuid(0, a, b, c, d);
	if (b == 0x68747541 && d == 0x69746e65 && c == 0x444d4163)   /* AuthenticAMD */
		return "amd";
	if (b == 0x756e6547 && d == 0x49656e69 && c == 0x6c65746e)   /* GenuineIntel */
		return "intel";
	return "unknown";
}

u64 guest_sym_gpa(const void *sym)
{
	const u8 *p = sym;

	if (p < __start_guest_text || p >= __stop_guest_text)
		die("guest_sym_gpa: symbol %p outside guest_text", sym);
	return GPA_CODE + (u64)(p - __start_guest_text);
}

/* ---- CPUID ---------------------------------------------------------- */

struct kvm_cpuid2 *cpuid_alloc(int nent)
{
	struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + nent * sizeof(c->entries[0]));

	if (!c)
		die("out of memory");
	c->nent = nent;
	return c;
}

struct kvm_cpuid2 *cpuid_dup(const struct kvm_cpuid2 *c)
{
	struct kvm_cpuid2 *d = cpuid_alloc(c->nent);

	memcpy(d->entries, c->entries, c->nent * sizeof(c->entries[0]));
	return d;
}

static struct kvm_cpuid2 *get_cpuid(unsigned long req, int fd)
{
	int nent = 64;

	for (;;) {
		struct kvm_cpuid2 *c = cpuid_alloc(nent);

		if (ioctl(fd, req, c) == 0)
			return c;
		free(c);
		if (errno != E2BIG || nent >= 4096)
			return NULL;
		nent *= 2;
	}
}

struct kvm_cpuid2 *kvm_supported_cpuid(void)
{
	static struct kvm_cpuid2 *cached;

	if (!cached)
		cached = get_cpuid(KVM_GET_SUPPORTED_CPUID, kvm_fd());
	return cached;
}

struct kvm_cpuid2 *kvm_supported_hv_cpuid(void)
{
	static struct kvm_cpuid2 *cached;

	if (!cached)
		cached = get_cpuid(KVM_GET_SUPPORTED_HV_CPUID, kvm_fd());
	return cached;
}

struct kvm_cpuid_entry2 *cpuid_find(struct kvm_cpuid2 *c, u32 function, u32 index)
{
	for (u32 i = 0; i < c->nent; i++)
		if (c->entries[i].function == function && c->entries[i].index == index)
			return &c->entries[i];
	return NULL;
}

void cpuid_remove_range(struct kvm_cpuid2 *c, u32 first, u32 last)
{
	u32 i, j = 0;

	for (i = 0; i < c->nent; i++)
		if (c->entries[i].function < first || c->entries[i].function > last)
			c->entries[j++] = c->entries[i];
	c->nent = j;
}

void cpuid_remove(struct kvm_cpuid2 *c, u32 function)
{
	cpuid_remove_range(c, function, function);
}

struct kvm_cpuid2 *cpuid_append(struct kvm_cpuid2 *c, const struct kvm_cpuid_entry2 *e)
{
	struct kvm_cpuid2 *d = cpuid_alloc(c->nent + 1);

	memcpy(d->entries, c->entries, c->nent * sizeof(c->entries[0]));
	d->entries[c->nent] = *e;
	free(c);
	return d;
}

/* ---- VM and vCPU ---------------------------------------------------- */

void *gpa_ptr(struct vm *vm, u64 gpa)
{
	if (gpa >= vm->mem_size)
		die("gpa 0x%llx outside guest memory", (unsigned long long)gpa);
	return vm->mem + gpa;
}

static void put_gdt(u64 *gdt)
{
	gdt[SEL_CODE64 >> 3] = 0x00af9a000000ffffULL;   /* L=1, DPL0, code */
	gdt[SEL_DATA >> 3] = 0x00cf92000000ffffULL;     /* flat data, DPL0 */
	gdt[SEL_CODE32 >> 3] = 0x00cf9a000000ffffULL;   /* D=1, DPL0, code */
	gdt[SEL_UDATA >> 3] = 0x00cff2000000ffffULL;    /* flat data, DPL3 */
	gdt[SEL_UCODE64 >> 3] = 0x00affa000000ffffULL;  /* L=1, DPL3, code */
	/* 64-bit available TSS at GPA_TSS, limit 0x67 (two slots). */
	gdt[SEL_TSS >> 3] = 0x0000890000000067ULL | ((GPA_TSS & 0xffffff) << 16) |
			    ((GPA_TSS >> 24 & 0xff) << 56);
	gdt[(SEL_TSS >> 3) + 1] = GPA_TSS >> 32;
}

/* Defined in guest_lib.S: per-vector entry points. */
extern const u8 g64_vectors[], g32_vectors[];
#define VECTOR_STUB_SIZE 16

static void put_idts(struct vm *vm)
{
	u8 *idt64 = gpa_ptr(vm, GPA_IDT64), *idt32 = gpa_ptr(vm, GPA_IDT32);

	for (int v = 0; v < 32; v++) {
		u64 h64 = guest_sym_gpa(g64_vectors) + v * VECTOR_STUB_SIZE;
		u64 h32 = guest_sym_gpa(g32_vectors) + v * VECTOR_STUB_SIZE;
		u64 lo, hi;

		/* 64-bit interrupt gate, DPL0, present */
		lo = (h64 & 0xffff) | ((u64)SEL_CODE64 << 16) | (0x8eULL << 40) |
		     ((h64 >> 16 & 0xffff) << 48);
		hi = h64 >> 32;
		memcpy(idt64 + v * 16, &lo, 8);
		memcpy(idt64 + v * 16 + 8, &hi, 8);
		/* 32-bit interrupt gate */
		lo = (h32 & 0xffff) | ((u64)SEL_CODE32 << 16) | (0x8eULL << 40) |
		     ((h32 >> 16 & 0xffff) << 48);
		memcpy(idt32 + v * 8, &lo, 8);
	}
}

struct vm *vm_create(void)
{
	struct kvm_userspace_memory_region region;
	size_t blob = __stop_guest_text - __start_guest_text;
	struct vm *vm = calloc(1, sizeof(*vm));
	u64 *pt;

	if (!vm)
		die("out of memory");
	vm->fd = ioctl(kvm_fd(), KVM_CREATE_VM, 0);
	if (vm->fd < 0)
		die("KVM_CREATE_VM: %s", strerror(errno));
	vm->mem_size = GUEST_MEM_SIZE;
	vm->mem = mmap(NULL, vm->mem_size, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (vm->mem == MAP_FAILED)
		die("mmap guest memory: %s", strerror(errno));
	region = (struct kvm_userspace_memory_region){
		.slot = 0, .guest_phys_addr = 0, .memory_size = vm->mem_size,
		.userspace_addr = (u64)(unsigned long)vm->mem,
	};
	if (ioctl(vm->fd, KVM_SET_USER_MEMORY_REGION, &region))
		die("KVM_SET_USER_MEMORY_REGION: %s", strerror(errno));

	/* Identity map of the first 2 MiB with one large page, user accessible
	 * so that CPL3 actions can run the same code. */
	pt = gpa_ptr(vm, GPA_PML4);
	pt[0] = GPA_PDPT | 7;
	pt = gpa_ptr(vm, GPA_PDPT);
	pt[0] = GPA_PD | 7;
	pt = gpa_ptr(vm, GPA_PD);
	pt[0] = 0x0 | 0x87;

	put_gdt(gpa_ptr(vm, GPA_GDT));
	/* TSS: RSP0 (offset 4) is where CPL3 exceptions switch stacks to;
	 * no I/O bitmap (offset 0x66 past the limit), IOPL=3 allows OUT. */
	*(u64 *)gpa_ptr(vm, GPA_TSS + 4) = GPA_KSTACK_TOP;
	*(u16 *)gpa_ptr(vm, GPA_TSS + 0x66) = 0x68;

	if (blob > GPA_CODE_MAX)
		die("guest_text is %zu bytes, more than 0x%llx", blob, GPA_CODE_MAX);
	memcpy(gpa_ptr(vm, GPA_CODE), __start_guest_text, blob);
	put_idts(vm);
	return vm;
}

void vm_destroy(struct vm *vm)
{
	long run_size = ioctl(kvm_fd(), KVM_GET_VCPU_MMAP_SIZE, 0);

	for (int i = 0; i < vm->nr_vcpus; i++) {
		munmap(vm->vcpus[i].run, run_size);
		close(vm->vcpus[i].fd);
	}
	close(vm->fd);
	munmap(vm->mem, vm->mem_size);
	free(vm);
}

struct vcpu *vm_add_vcpu(struct vm *vm)
{
	long run_size = ioctl(kvm_fd(), KVM_GET_VCPU_MMAP_SIZE, 0);
	struct vcpu *v;

	if (vm->nr_vcpus >= VM_MAX_VCPUS)
		die("more than %d vCPUs", VM_MAX_VCPUS);
	v = &vm->vcpus[vm->nr_vcpus];
	v->id = vm->nr_vcpus;
	v->vm = vm;
	v->fd = ioctl(vm->fd, KVM_CREATE_VCPU, v->id);
	if (v->fd < 0)
		die("KVM_CREATE_VCPU %d: %s", v->id, strerror(errno));
	if (run_size < (long)sizeof(struct kvm_run))
		die("KVM_GET_VCPU_MMAP_SIZE: %ld", run_size);
	v->run = mmap(NULL, run_size, PROT_READ | PROT_WRITE, MAP_SHARED, v->fd, 0);
	if (v->run == MAP_FAILED)
		die("mmap kvm_run: %s", strerror(errno));
	vm->nr_vcpus++;
	return v;
}

int vm_enable_cap(struct vm *vm, u32 cap, u64 arg0)
{
	struct kvm_enable_cap c = { .cap = cap, .args = { arg0 } };

	return ioctl(vm->fd, KVM_ENABLE_CAP, &c);
}

int vcpu_enable_cap(struct vcpu *v, u32 cap, u64 arg0)
{
	struct kvm_enable_cap c = { .cap = cap, .args = { arg0 } };

	return ioctl(v->fd, KVM_ENABLE_CAP, &c);
}

int vcpu_set_cpuid(struct vcpu *v, struct kvm_cpuid2 *c)
{
	return ioctl(v->fd, KVM_SET_CPUID2, c);
}

static void seg(struct kvm_segment *s, u16 sel, u8 type, bool l, bool db, u8 dpl)
{
	*s = (struct kvm_segment){
		.base = 0, .limit = 0xffffffff, .selector = sel, .type = type,
		.present = 1, .dpl = dpl, .db = db, .s = 1, .l = l, .g = 1,
	};
}

int vcpu_set_mode(struct vcpu *v, enum guest_mode mode, int cpl)
{
	struct kvm_sregs sr;
	int r;

	if (v->cur_mode == (int)mode && v->cur_cpl == cpl)
		return 0;
	if (ioctl(v->fd, KVM_GET_SREGS, &sr))
		die("KVM_GET_SREGS: %s", strerror(errno));

	sr.gdt.base = GPA_GDT;
	sr.gdt.limit = 0x3f;
	sr.tr = (struct kvm_segment){
		.base = GPA_TSS, .limit = 0x67, .selector = SEL_TSS, .type = 11,
		.present = 1,
	};
	sr.ldt = (struct kvm_segment){ .unusable = 1 };

	if (mode == MODE_LONG64) {
		sr.idt.base = GPA_IDT64;
		sr.idt.limit = 32 * 16 - 1;
		sr.cr0 = 0x80010033;          /* PG|WP|NE|ET|MP|PE */
		sr.cr3 = GPA_PML4;
		sr.cr4 = 0x20;                /* PAE */
		sr.efer = 0x500;              /* LME|LMA */
		if (cpl == 3) {
			seg(&sr.cs, SEL_UCODE64, 11, true, false, 3);
			seg(&sr.ss, SEL_UDATA, 3, false, true, 3);
		} else {
			seg(&sr.cs, SEL_CODE64, 11, true, false, 0);
			seg(&sr.ss, SEL_DATA, 3, false, true, 0);
		}
		sr.ds = sr.es = sr.fs = sr.gs = sr.ss;
	} else {
		if (cpl != 0) {
			errno = EINVAL;
			return -1;
		}
		sr.idt.base = GPA_IDT32;
		sr.idt.limit = 32 * 8 - 1;
		sr.cr0 = 0x00000033;          /* NE|ET|MP|PE, no paging */
		sr.cr3 = 0;
		sr.cr4 = 0;
		sr.efer = 0;
		seg(&sr.cs, SEL_CODE32, 11, false, true, 0);
		seg(&sr.ss, SEL_DATA, 3, false, true, 0);
		sr.ds = sr.es = sr.fs = sr.gs = sr.ss;
	}
	r = ioctl(v->fd, KVM_SET_SREGS, &sr);
	if (r == 0) {
		v->cur_mode = mode;
		v->cur_cpl = cpl;
	}
	return r;
}

void vcpu_get_regs(struct vcpu *v, struct kvm_regs *r)
{
	if (ioctl(v->fd, KVM_GET_REGS, r))
		die("KVM_GET_REGS: %s", strerror(errno));
}

void vcpu_set_regs(struct vcpu *v, const struct kvm_regs *r)
{
	if (ioctl(v->fd, KVM_SET_REGS, r))
		die("KVM_SET_REGS: %s", strerror(errno));
}

static void on_alarm(int sig)
{
	(void)sig;  /* only interrupts KVM_RUN (EINTR) */
}

int vcpu_run(struct vcpu *v, unsigned int deadline_ms)
{
	static bool installed;
	struct itimerval it = { 0 }, off = { 0 };
	int r, saved;

	if (!installed) {
		struct sigaction sa = { .sa_handler = on_alarm };

		sigemptyset(&sa.sa_mask);
		sa.sa_flags = 0;   /* no SA_RESTART: KVM_RUN must return EINTR */
		if (sigaction(SIGALRM, &sa, NULL))
			die("sigaction: %s", strerror(errno));
		installed = true;
	}
	it.it_value.tv_sec = deadline_ms / 1000;
	it.it_value.tv_usec = (deadline_ms % 1000) * 1000;
	setitimer(ITIMER_REAL, &it, NULL);
	r = ioctl(v->fd, KVM_RUN, 0);
	saved = errno;
	setitimer(ITIMER_REAL, &off, NULL);
	errno = saved;
	return r;
}

int kvm_msr_ioctl(int fd, unsigned long req, u32 msr, u64 *data)
{
	struct {
		struct kvm_msrs hdr;
		struct kvm_msr_entry e;
	} m = { .hdr.nmsrs = 1, .e.index = msr, .e.data = *data };
	int r = ioctl(fd, req, &m);

	*data = m.e.data;
	return r;
}
