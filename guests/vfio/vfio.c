// SPDX-License-Identifier: GPL-2.0
/*
 * kvmconf VFIO payload: executes op-scripts against the real VFIO type1
 * container of the kernel it runs on and prints what it observed.
 *
 * Usage:  vfio [--group N] [--bdf DDDD:BB:DD.F]  < script
 *
 *   Without arguments the payload picks the first PCI function with vendor
 *   0x1234 / device 0x11e8 (QEMU's `edu`) whose driver is vfio-pci, and
 *   its IOMMU group from /sys/bus/pci/devices/<bdf>/iommu_group.  The
 *   device must already be bound to vfio-pci (driver_override +
 *   drivers_probe) and the guest must run with a (virtual) IOMMU.
 *
 * Input (stdin), one record per line, integers in C syntax (0x.. allowed):
 *
 *   S <iommu> [dma_entry_limit=N] [memlock=B]
 *                          begin a script: new container, the group joins it,
 *                          then VFIO_SET_IOMMU(<iommu>) unless <iommu> is 0
 *                          (3 = VFIO_TYPE1v2_IOMMU, 1 = VFIO_TYPE1_IOMMU,
 *                          8 = VFIO_NOIOMMU_IOMMU).  dma_entry_limit: written
 *                          to vfio_iommu_type1's module parameter just before
 *                          VFIO_SET_IOMMU (the container copies it into
 *                          dma_avail) and restored right after.  memlock:
 *                          for the script, CAP_IPC_LOCK leaves the effective
 *                          set and RLIMIT_MEMLOCK is B bytes (restored at E).
 *   A <op> key=value ...   one action (see below)
 *   E                      end of script: device fd closed, group leaves the
 *                          container, container closed (all mappings go)
 *
 * Actions (keys in brackets are optional, defaults in the Python encoder,
 * harness/payloads/vfio.py, which is the only writer of this format):
 *   info   argsz arg                     VFIO_IOMMU_GET_INFO, caps walked
 *   map    argsz flags iova size voff vaddr arg
 *                                        VFIO_IOMMU_MAP_DMA, vaddr = arena+voff
 *                                        (or `vaddr` when it is not 0)
 *   unmap  argsz flags iova size pgsize bsize data fill arg child
 *                                        VFIO_IOMMU_UNMAP_DMA (+ vfio_bitmap)
 *   dirty  argsz flags [null]            VFIO_IOMMU_DIRTY_PAGES, no range
 *   get    argsz flags iova size pgsize bsize data fill arg
 *                                        VFIO_IOMMU_DIRTY_PAGES + dirty_bitmap_get
 *   dma    src dst len                   edu DMA src->device buffer->dst,
 *                                        then compare dst with what src held
 *   ext    arg                           VFIO_CHECK_EXTENSION on the container
 *   devdirty                             ioctl 0x3b75 {8, START} on the device fd
 *   migprobe                             v1 migration region / v2 feature probe
 *   mig1   state                         write v1 device_state, read it back
 *
 *   data: 0 = a buffer of `bsize` bytes (rounded up to u64) between two guard
 *   words, followed by an inaccessible page; 1 = NULL; 2 = a kernel address.
 *   fill: 0 = buffer zeroed, 1 = every byte 0x5a before the call.
 *   arg: where the ioctl argument lies: 0 = an ordinary buffer, 1 = NULL,
 *   2 = split: its fixed header (info 24, unmap 24, get 8 bytes) ends at a
 *   page boundary and the rest is on a PROT_NONE page.
 *   child: 1 = a forked child issues the unmap on the inherited container
 *   fd (argument and bitmap in shared memory); the parent reports it.
 *
 * unmap reports the four fields the kernel copies back (size, argsz, flags,
 * iova).  info fills its 8 KiB buffer with 0xa5 first and reports the header (pad =
 * bytes 20-23), every capability of the chain with its `next`, and
 * "outside": [[offset, byte], ...] for bytes beyond the header that lie in
 * no capability and changed.
 *
 * Output (stdout): one JSON object per observation, tagged "script" (index of
 * the S record, from 0) and "op".  "result" is "ok" (the ioctl returned 0),
 * the errno name (it returned -1), or "RET<n>" (it returned n > 0, which no
 * type1 ioctl but CHECK_EXTENSION may do).  User
 * bitmaps are reported sparsely as "bitmap": [[word, value], ...] listing the
 * words that differ from the fill value, plus "guards": [below, above].
 * Each script ends with {"script":N,"op":"done"} (also after a failed setup),
 * printed and flushed when its E record is read.  Diagnostics go to stderr.  Exit 0 when the payload ran, whatever the kernel
 * did; 2 when the payload itself broke (bad input, setup it cannot undo).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "json.h"
#include "lines.h"
#include "util.h"
#include "vfio_payload.h"

#define VP_ARENA_SIZE (16ul << 20)       /* backing memory for MAP_DMA */
#define VP_PAGE 4096ul
#define VP_BITMAP_CAP ((1ul << 28) + 8)  /* DIRTY_BITMAP_SIZE_MAX + one word */
#define VP_FILL_MAX (1ul << 20)          /* largest buffer we pre-fill/scan fully */
#define VP_GUARD 0xfeedfacecafebeefull
#define VP_FILL_WORD 0x5a5a5a5a5a5a5a5aull
#define VP_KERNEL_PTR 0xffff888000000000ull
#define VP_MAX_MAPS 1024
#define VP_MAX_BITMAP_ENTRIES 4096
#define VP_EDU_DMA_BUF 0x40000ull
#define VP_DMA_DEADLINE_NS 5000000000ll
#define VP_DMA_MAX 2048
#define VP_EVENT_MAX (1ul << 19)         /* longest event: 4096 bitmap words fit */
#define VP_INFO_FILL 0xa5
#define VP_INFO_OUTSIDE_MAX 64
#define VP_CHILD_DEADLINE_NS 10000000000ll
#define VP_DMA_ENTRY_LIMIT "/sys/module/vfio_iommu_type1/parameters/dma_entry_limit"
#define VP_CAP_VERSION_3 0x20080522u    /* _LINUX_CAPABILITY_VERSION_3 */
#define VP_CAP_IPC_LOCK 14
#define VP_ARG_NULL 1
#define VP_ARG_SPLIT 2
/*
 * A positive return of an ioctl that must return 0 on success: the kernel
 * returned a value no caller expects (e.g. `return 1` instead of 0).  It is
 * reported as "RET<n>", never folded into "ok".
 */
#define VP_RET_POSITIVE 0x40000000

struct vp_map {
	uint64_t iova, size;
	uint8_t *vaddr;
};

static struct {
	char bdf[64];
	int group_no;
	int group_fd;
	uint8_t *arena;
	/* per script */
	long script;
	int cfd;
	int dev_fd;
	volatile uint8_t *bar0;
	uint64_t bar0_size;
	uint64_t cfg_offset;
	int nmaps;
	struct vp_map maps[VP_MAX_MAPS];
	uint64_t dma_counter;
	/* RLIMIT_MEMLOCK and CAP_IPC_LOCK changed for this script */
	int memlock_set;
	struct rlimit memlock_saved;
	/* two shared pages, the second PROT_NONE: "split" arguments */
	uint8_t *split;
	/* one shared page: a child's ioctl argument */
	uint8_t *shared;
} vp = { .group_fd = -1, .cfd = -1, .dev_fd = -1 };

#define vfio_die(what) die("vfio payload: %s: %s", what, strerror(errno))
#define vfio_bad_input(what, line) die("vfio payload: bad input (%s): %s", what, line)

static void ev_begin(struct json *j, const char *op)
{
	json_begin(j);
	json_i64(j, "script", vp.script);
	json_str(j, "op", op);
}

static const char *vfio_errname(int e)
{
	static char buf[16];

	switch (e) {
	case 0: return "ok";
	case EPERM: return "EPERM";
	case ENOENT: return "ENOENT";
	case EIO: return "EIO";
	case E2BIG: return "E2BIG";
	case EBADF: return "EBADF";
	case EAGAIN: return "EAGAIN";
	case ENOMEM: return "ENOMEM";
	case EACCES: return "EACCES";
	case EFAULT: return "EFAULT";
	case EBUSY: return "EBUSY";
	case EEXIST: return "EEXIST";
	case ENODEV: return "ENODEV";
	case EINVAL: return "EINVAL";
	case ENOSPC: return "ENOSPC";
	case ENOTTY: return "ENOTTY";
	case ERANGE: return "ERANGE";
	case EOVERFLOW: return "EOVERFLOW";
	case EOPNOTSUPP: return "EOPNOTSUPP";
	}
	if (e & VP_RET_POSITIVE)
		snprintf(buf, sizeof(buf), "RET%d", e & 0xffff);
	else
		snprintf(buf, sizeof(buf), "E%d", e);
	return buf;
}

/* ioctl returning 0 on success, the errno, or VP_RET_POSITIVE | ret */
static int vfio_ioctl(int fd, unsigned long req, void *arg)
{
	int ret = ioctl(fd, req, arg);

	if (ret < 0)
		return errno;
	return ret > 0 ? VP_RET_POSITIVE | (ret & 0xffff) : 0;
}

static uint64_t vfio_need(const struct kv *a, const char *k, const char *line)
{
	if (!kv_has(a, k))
		vfio_bad_input(k, line);
	return kv_get(a, k, 0);
}

/* ---------------------------------------------------------------- setup */

static int vfio_read_sysfs_hex(const char *dir, const char *file, unsigned long *out)
{
	char path[512], buf[64];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, file);
	f = fopen(path, "r");
	if (!f)
		return -1;
	if (!fgets(buf, sizeof(buf), f)) {
		fclose(f);
		return -1;
	}
	fclose(f);
	*out = strtoul(buf, NULL, 0);
	return 0;
}

static int vfio_group_of(const char *bdf)
{
	char path[512], link[512];
	ssize_t n;
	char *slash;

	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/iommu_group", bdf);
	n = readlink(path, link, sizeof(link) - 1);
	if (n < 0)
		return -1;
	link[n] = 0;
	slash = strrchr(link, '/');
	return atoi(slash ? slash + 1 : link);
}

static void vfio_find_device(void)
{
	DIR *d;
	struct dirent *e;

	if (vp.bdf[0]) {
		if (vp.group_no < 0)
			vp.group_no = vfio_group_of(vp.bdf);
		return;
	}
	d = opendir("/sys/bus/pci/devices");
	if (!d)
		vfio_die("opendir /sys/bus/pci/devices");
	while ((e = readdir(d))) {
		char dir[300], drv[320], link[512];
		unsigned long vendor, device;
		ssize_t n;

		if (e->d_name[0] == '.')
			continue;
		if (strlen(e->d_name) > 200)
			continue;
		snprintf(dir, sizeof(dir), "/sys/bus/pci/devices/%.200s", e->d_name);
		if (vfio_read_sysfs_hex(dir, "vendor", &vendor) ||
		    vfio_read_sysfs_hex(dir, "device", &device))
			continue;
		if (vendor != 0x1234 || device != 0x11e8)
			continue;
		snprintf(drv, sizeof(drv), "%s/driver", dir);
		n = readlink(drv, link, sizeof(link) - 1);
		if (n < 0)
			continue;
		link[n] = 0;
		if (!strstr(link, "/vfio-pci"))
			continue;
		if (strlen(e->d_name) >= sizeof(vp.bdf))
			continue;
		memcpy(vp.bdf, e->d_name, strlen(e->d_name) + 1);
		break;
	}
	closedir(d);
	if (!vp.bdf[0])
		die("vfio payload: no edu device (1234:11e8) bound to vfio-pci");
	if (vp.group_no < 0)
		vp.group_no = vfio_group_of(vp.bdf);
	if (vp.group_no < 0)
		vfio_die("iommu_group of the edu device");
}

static void vfio_open_group(void)
{
	char path[64];

	snprintf(path, sizeof(path), "/dev/vfio/%d", vp.group_no);
	vp.group_fd = open(path, O_RDWR);
	if (vp.group_fd < 0)
		vfio_die(path);
}

/* vfio_iommu_type1's dma_entry_limit module parameter; 0 or an errno */
static int vfio_param_read(uint64_t *value)
{
	char buf[32];
	ssize_t n;
	int fd = open(VP_DMA_ENTRY_LIMIT, O_RDONLY);

	if (fd < 0)
		return errno;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return n < 0 ? errno : EIO;
	buf[n] = 0;
	*value = strtoull(buf, NULL, 0);
	return 0;
}

static int vfio_param_write(uint64_t value)
{
	char buf[32];
	int n = snprintf(buf, sizeof(buf), "%llu\n", (unsigned long long)value);
	int fd = open(VP_DMA_ENTRY_LIMIT, O_WRONLY), err = 0;

	if (fd < 0)
		return errno;
	if (write(fd, buf, n) != n)
		err = errno ? errno : EIO;
	close(fd);
	return err;
}

/* CAP_IPC_LOCK in or out of the effective set (it stays permitted); 0 or errno */
static int vfio_cap_ipc_lock(int on)
{
	struct { uint32_t version; int pid; } hdr = { VP_CAP_VERSION_3, 0 };
	struct { uint32_t effective, permitted, inheritable; } data[2];

	if (syscall(SYS_capget, &hdr, data))
		return errno;
	if (on)
		data[0].effective |= 1u << VP_CAP_IPC_LOCK;
	else
		data[0].effective &= ~(1u << VP_CAP_IPC_LOCK);
	if (syscall(SYS_capset, &hdr, data))
		return errno;
	return 0;
}

/* RLIMIT_MEMLOCK = bytes without CAP_IPC_LOCK for the script; 0 or errno */
static int vfio_memlock_begin(uint64_t bytes, const char **step)
{
	struct rlimit lim;

	*step = "RLIMIT_MEMLOCK";
	if (getrlimit(RLIMIT_MEMLOCK, &vp.memlock_saved))
		return errno;
	lim.rlim_cur = bytes;
	lim.rlim_max = vp.memlock_saved.rlim_max > bytes ? vp.memlock_saved.rlim_max : bytes;
	if (setrlimit(RLIMIT_MEMLOCK, &lim))
		return errno;
	vp.memlock_set = 1;
	*step = "CAP_IPC_LOCK";
	return vfio_cap_ipc_lock(0);
}

static void vfio_memlock_end(void)
{
	if (!vp.memlock_set)
		return;
	vp.memlock_set = 0;
	if (vfio_cap_ipc_lock(1))
		vfio_die("raising CAP_IPC_LOCK again");
	if (setrlimit(RLIMIT_MEMLOCK, &vp.memlock_saved))
		vfio_die("restoring RLIMIT_MEMLOCK");
}

/* returns 0 or an errno; *step names the failing step */
static int vfio_script_begin(int iommu, const struct kv *opts, const char **step)
{
	struct { uint32_t argsz, flags; } status = { sizeof(status), 0 };
	uint64_t saved_limit = 0;
	int err;

	vp.nmaps = 0;
	*step = "open /dev/vfio/vfio";
	vp.cfd = open("/dev/vfio/vfio", O_RDWR);
	if (vp.cfd < 0)
		return errno;
	*step = "VFIO_GET_API_VERSION";
	if (ioctl(vp.cfd, VP_GET_API_VERSION) != 0)
		return errno ? errno : EPROTO;
	*step = "VFIO_GROUP_GET_STATUS";
	err = vfio_ioctl(vp.group_fd, VP_GROUP_GET_STATUS, &status);
	if (err)
		return err;
	if (!(status.flags & VP_GROUP_FLAGS_VIABLE))
		return EBUSY;
	*step = "VFIO_GROUP_SET_CONTAINER";
	err = vfio_ioctl(vp.group_fd, VP_GROUP_SET_CONTAINER, &vp.cfd);
	if (err)
		return err;
	if (iommu) {
		/* vfio_iommu_type1_open() copies dma_entry_limit into dma_avail */
		if (kv_has(opts, "dma_entry_limit")) {
			*step = "dma_entry_limit";
			err = vfio_param_read(&saved_limit);
			if (!err)
				err = vfio_param_write(kv_get(opts, "dma_entry_limit", 0));
			if (err)
				return err;
		}
		*step = "VFIO_SET_IOMMU";
		err = ioctl(vp.cfd, VP_SET_IOMMU, (unsigned long)iommu) < 0 ? errno : 0;
		if (kv_has(opts, "dma_entry_limit") && vfio_param_write(saved_limit))
			vfio_die("restoring " VP_DMA_ENTRY_LIMIT);
		if (err)
			return err;
	}
	if (kv_get(opts, "memlock", 0))
		return vfio_memlock_begin(kv_get(opts, "memlock", 0), step);
	return 0;
}

static void vfio_script_end(void)
{
	vfio_memlock_end();
	if (vp.bar0) {
		munmap((void *)vp.bar0, vp.bar0_size);
		vp.bar0 = NULL;
	}
	if (vp.dev_fd >= 0) {
		close(vp.dev_fd);
		vp.dev_fd = -1;
	}
	if (vp.cfd >= 0) {
		/* may fail with EINVAL when SET_CONTAINER failed: nothing to undo */
		ioctl(vp.group_fd, VP_GROUP_UNSET_CONTAINER);
		close(vp.cfd);
		vp.cfd = -1;
	}
}

/* device fd, BAR0 mapping, bus mastering; returns 0 or errno */
static int vfio_device_open(void)
{
	struct vp_region_info ri;
	uint16_t cmd;
	int err;

	if (vp.dev_fd >= 0)
		return 0;
	vp.dev_fd = ioctl(vp.group_fd, VP_GROUP_GET_DEVICE_FD, vp.bdf);
	if (vp.dev_fd < 0) {
		err = errno;
		vp.dev_fd = -1;
		return err;
	}
	memset(&ri, 0, sizeof(ri));
	ri.argsz = sizeof(ri);
	ri.index = VP_PCI_CONFIG_REGION_INDEX;
	err = vfio_ioctl(vp.dev_fd, VP_DEVICE_GET_REGION_INFO, &ri);
	if (err)
		return err;
	vp.cfg_offset = ri.offset;
	if (pread(vp.dev_fd, &cmd, 2, vp.cfg_offset + 4) != 2)
		return errno ? errno : EIO;
	cmd |= 0x6; /* memory space + bus master */
	if (pwrite(vp.dev_fd, &cmd, 2, vp.cfg_offset + 4) != 2)
		return errno ? errno : EIO;

	memset(&ri, 0, sizeof(ri));
	ri.argsz = sizeof(ri);
	ri.index = 0;
	err = vfio_ioctl(vp.dev_fd, VP_DEVICE_GET_REGION_INFO, &ri);
	if (err)
		return err;
	vp.bar0_size = ri.size;
	vp.bar0 = mmap(NULL, ri.size, PROT_READ | PROT_WRITE, MAP_SHARED,
		       vp.dev_fd, ri.offset);
	if (vp.bar0 == MAP_FAILED) {
		vp.bar0 = NULL;
		return errno;
	}
	return 0;
}

/* ---------------------------------------------------------------- user bitmap */

struct vp_ubuf {
	uint8_t *region;
	size_t region_len;
	uint64_t *data;
	uint64_t nwords;
	uint64_t fillw;
};

/* shared: MAP_SHARED, so a forked child's kernel writes reach the parent */
static void vfio_ubuf_setup(struct vp_ubuf *u, uint64_t bsize, int fill, const char *line, int shared)
{
	uint64_t alloc = bsize > VP_BITMAP_CAP ? VP_BITMAP_CAP : bsize;

	alloc = (alloc + 7) & ~7ull;
	u->nwords = alloc / 8;
	u->fillw = fill ? VP_FILL_WORD : 0;
	if (fill && alloc > VP_FILL_MAX)
		vfio_bad_input("fill of a bitmap larger than 1 MiB", line);
	u->region_len = VP_PAGE + ((alloc + 8 + VP_PAGE - 1) & ~(VP_PAGE - 1)) + VP_PAGE;
	u->region = mmap(NULL, u->region_len, PROT_READ | PROT_WRITE,
			 (shared ? MAP_SHARED : MAP_PRIVATE) | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (u->region == MAP_FAILED)
		vfio_die("mmap bitmap");
	if (mprotect(u->region + u->region_len - VP_PAGE, VP_PAGE, PROT_NONE))
		vfio_die("mprotect bitmap guard page");
	u->data = (uint64_t *)(u->region + VP_PAGE);
	u->data[-1] = VP_GUARD;
	if (fill)
		memset(u->data, 0x5a, alloc);
	u->data[u->nwords] = VP_GUARD;
}

static uint64_t vfio_data_ptr(struct vp_ubuf *u, uint64_t kind)
{
	if (kind == 1)
		return 0;
	if (kind == 2)
		return VP_KERNEL_PTR;
	return (uint64_t)(uintptr_t)u->data;
}

static void vfio_ubuf_emit(struct json *j, struct vp_ubuf *u)
{
	uint64_t count = 0, w;
	int truncated = 0;
	unsigned char *vec = NULL;
	uint64_t bytes = u->nwords * 8;

	if (bytes > VP_FILL_MAX) {
		/* only resident pages can hold anything but zero */
		size_t pages = (bytes + VP_PAGE - 1) / VP_PAGE;

		vec = malloc(pages);
		if (!vec || mincore(u->data, pages * VP_PAGE, vec))
			vfio_die("mincore bitmap");
	}
	json_list_open(j, "bitmap");
	for (w = 0; w < u->nwords; w++) {
		if (vec && !(vec[(w * 8) / VP_PAGE] & 1)) {
			w = ((w * 8) / VP_PAGE + 1) * (VP_PAGE / 8) - 1;
			continue;
		}
		if (u->data[w] == u->fillw)
			continue;
		if (count++ >= VP_MAX_BITMAP_ENTRIES) {
			truncated = 1;
			break;
		}
		json_list_open(j, NULL);
		json_u64(j, NULL, w);
		json_u64(j, NULL, u->data[w]);
		json_list_close(j);
	}
	json_list_close(j);
	free(vec);
	if (truncated)
		json_bool(j, "bitmap_truncated", true);
	json_list_open(j, "guards");
	json_u64(j, NULL, u->data[-1]);
	json_u64(j, NULL, u->data[u->nwords]);
	json_list_close(j);
}

static void vfio_ubuf_free(struct vp_ubuf *u)
{
	munmap(u->region, u->region_len);
}

/* ---------------------------------------------------------------- actions */

/* the ioctl argument: NULL, or `len` bytes ending at the split page boundary */
static void *vfio_arg_place(uint64_t kind, void *normal, size_t head)
{
	if (kind == VP_ARG_NULL)
		return NULL;
	if (kind == VP_ARG_SPLIT) {
		uint8_t *p = vp.split + VP_PAGE - head;

		memcpy(p, normal, head);
		return p;
	}
	return normal;
}

static uint32_t vfio_cap_extent(const struct vp_cap_header *h, const uint8_t *buf, uint32_t off,
				uint32_t limit)
{
	switch (h->id) {
	case VP_CAP_MIGRATION:
		return 32;
	case VP_CAP_DMA_AVAIL:
		return 12;
	case VP_CAP_IOVA_RANGE:
		if (off + 16 > limit)
			return 8;
		return 16 + 16 * *(const uint32_t *)(buf + off + 8);
	}
	return 8;
}

static void vfio_op_info(const struct kv *a, const char *line)
{
	static uint64_t buf64[1024];
	static uint8_t covered[sizeof(buf64)];
	uint64_t argsz = vfio_need(a, "argsz", line), kind = vfio_need(a, "arg", line);
	uint8_t *buf = (uint8_t *)buf64;
	uint32_t bufsz = sizeof(buf64);
	struct vp_type1_info *info;
	uint32_t off, limit, count = 0;
	struct json j;
	int err, n = 0;

	if (argsz > sizeof(buf64))
		vfio_bad_input("info argsz larger than the payload's buffer", line);
	if (kind > VP_ARG_SPLIT)
		vfio_bad_input("info arg", line);
	if (kind == VP_ARG_SPLIT) {
		/* the 24-byte header readable, the capabilities on the PROT_NONE page */
		buf = vp.split + VP_PAGE - sizeof(*info);
		bufsz = sizeof(*info);
	}
	memset(buf, VP_INFO_FILL, bufsz);
	memset(covered, 0, sizeof(covered));
	info = (struct vp_type1_info *)buf;
	info->argsz = argsz;
	info->cap_offset = 0xdeadbeef; /* shows whether the kernel wrote it */
	err = vfio_ioctl(vp.cfd, VP_IOMMU_GET_INFO, kind == VP_ARG_NULL ? NULL : info);
	ev_begin(&j, "info");
	json_str(&j, "result", vfio_errname(err));
	if (!err) {
		json_u64(&j, "argsz", info->argsz);
		json_u64(&j, "flags", info->flags);
		json_u64(&j, "iova_pgsizes", info->iova_pgsizes);
		json_u64(&j, "cap_offset", info->cap_offset);
		json_u64(&j, "pad", info->pad);
		json_list_open(&j, "caps");
		limit = argsz < bufsz ? argsz : bufsz;
		off = (info->flags & VP_INFO_CAPS) && info->cap_offset != 0xdeadbeef ?
		      info->cap_offset : 0;
		while (off && off >= sizeof(*info) && off + 8 <= limit && n < 16) {
			struct vp_cap_header *h = (struct vp_cap_header *)(buf + off);
			uint32_t extent = vfio_cap_extent(h, buf, off, limit);

			for (uint32_t b = off; b < off + extent && b < bufsz; b++)
				covered[b] = 1;
			n++;
			json_obj_open(&j, NULL);
			json_u64(&j, "id", h->id);
			json_u64(&j, "version", h->version);
			json_u64(&j, "next", h->next);
			if (h->id == VP_CAP_MIGRATION && off + 32 <= limit) {
				json_u64(&j, "flags", *(uint32_t *)(buf + off + 8));
				json_u64(&j, "hole", *(uint32_t *)(buf + off + 12));
				json_u64(&j, "pgsize_bitmap", *(uint64_t *)(buf + off + 16));
				json_u64(&j, "max_dirty_bitmap_size", *(uint64_t *)(buf + off + 24));
			} else if (h->id == VP_CAP_DMA_AVAIL && off + 12 <= limit) {
				json_u64(&j, "avail", *(uint32_t *)(buf + off + 8));
			} else if (h->id == VP_CAP_IOVA_RANGE && off + 16 <= limit) {
				uint32_t nr = *(uint32_t *)(buf + off + 8);

				json_u64(&j, "nr_iovas", nr);
				json_u64(&j, "reserved", *(uint32_t *)(buf + off + 12));
				json_list_open(&j, "ranges");
				for (uint32_t i = 0; i < nr && off + 16 + 16 * (i + 1) <= limit; i++) {
					uint64_t *r = (uint64_t *)(buf + off + 16 + 16 * i);

					json_list_open(&j, NULL);
					json_u64(&j, NULL, r[0]);
					json_u64(&j, NULL, r[1]);
					json_list_close(&j);
				}
				json_list_close(&j);
			}
			json_obj_close(&j);
			if (h->next && h->next <= off)
				break; /* a loop in the chain: stop, the ids show it */
			off = h->next;
		}
		json_list_close(&j);
		/* what the kernel wrote beyond the header and outside the chain */
		json_list_open(&j, "outside");
		for (uint32_t b = sizeof(*info); b < bufsz; b++) {
			if (covered[b] || buf[b] == VP_INFO_FILL)
				continue;
			if (count++ >= VP_INFO_OUTSIDE_MAX)
				break;
			json_list_open(&j, NULL);
			json_u64(&j, NULL, b);
			json_u64(&j, NULL, buf[b]);
			json_list_close(&j);
		}
		json_list_close(&j);
	}
	json_end_line(&j);
}

static void vfio_op_map(const struct kv *a, const char *line)
{
	struct vp_dma_map m;
	uint64_t voff = vfio_need(a, "voff", line), vaddr = vfio_need(a, "vaddr", line);
	uint64_t kind = vfio_need(a, "arg", line);
	struct json j;
	int err;

	memset(&m, 0, sizeof(m));
	m.argsz = vfio_need(a, "argsz", line);
	m.flags = vfio_need(a, "flags", line);
	m.iova = vfio_need(a, "iova", line);
	m.size = vfio_need(a, "size", line);
	if (kind > VP_ARG_NULL)
		vfio_bad_input("map arg", line);
	if (!vaddr && (voff > VP_ARENA_SIZE || m.size > VP_ARENA_SIZE - voff))
		vfio_bad_input("map voff+size outside the 16 MiB arena", line);
	/* an explicit vaddr is one no VMA of ours covers (the encoder checks) */
	m.vaddr = vaddr ? vaddr : (uint64_t)(uintptr_t)(vp.arena + voff);
	err = vfio_ioctl(vp.cfd, VP_IOMMU_MAP_DMA, kind == VP_ARG_NULL ? NULL : &m);
	/* remember where an IOVA lives for DMA checks (newest entry wins) */
	if (!err && !(m.flags & 4) && !vaddr && vp.nmaps < VP_MAX_MAPS)
		vp.maps[vp.nmaps++] = (struct vp_map){ m.iova, m.size, vp.arena + voff };
	ev_begin(&j, "map");
	json_str(&j, "result", vfio_errname(err));
	json_end_line(&j);
}

static long long vfio_now_ns(void);

/*
 * ioctl(vp.cfd, req, arg) in a forked child: the same container fd, another
 * mm.  arg (and what the kernel writes) must be shared memory.  Returns the
 * child's result like vfio_ioctl(), or ETIMEDOUT / ECHILD.
 */
static int vfio_ioctl_in_child(unsigned long req, void *arg)
{
	volatile int *result = (volatile int *)(vp.shared + VP_PAGE - sizeof(int));
	long long deadline = vfio_now_ns() + VP_CHILD_DEADLINE_NS;
	int status;
	pid_t pid;

	*result = -1;
	fflush(stdout);
	pid = fork();
	if (pid < 0)
		vfio_die("fork");
	if (pid == 0) {
		*result = vfio_ioctl(vp.cfd, req, arg);
		_exit(0);
	}
	for (;;) {
		pid_t got = waitpid(pid, &status, WNOHANG);

		if (got == pid)
			break;
		if (got < 0)
			vfio_die("waitpid");
		if (vfio_now_ns() > deadline) {
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			return ETIMEDOUT;
		}
		usleep(1000);
	}
	if (!WIFEXITED(status) || *result < 0)
		return ECHILD;
	return *result;
}

static void vfio_op_unmap(const struct kv *a, const char *line)
{
	struct vp_dma_unmap local, *u;
	struct vp_ubuf ub;
	uint64_t kind = vfio_need(a, "data", line), where = vfio_need(a, "arg", line);
	uint64_t child = vfio_need(a, "child", line);
	int with_bitmap, err;
	struct json j;

	memset(&local, 0, sizeof(local));
	local.argsz = vfio_need(a, "argsz", line);
	local.flags = vfio_need(a, "flags", line);
	local.iova = vfio_need(a, "iova", line);
	local.size = vfio_need(a, "size", line);
	local.bitmap.pgsize = vfio_need(a, "pgsize", line);
	local.bitmap.size = vfio_need(a, "bsize", line);
	if (where > VP_ARG_SPLIT || child > 1)
		vfio_bad_input("unmap arg/child", line);
	vfio_ubuf_setup(&ub, local.bitmap.size, vfio_need(a, "fill", line), line, child);
	local.bitmap.data = vfio_data_ptr(&ub, kind);
	with_bitmap = (local.flags & VP_UNMAP_GET_DIRTY_BITMAP) && kind == 0;
	u = &local;
	if (child && where != VP_ARG_SPLIT) {
		u = (struct vp_dma_unmap *)vp.shared;
		*u = local;
	}
	/* split: the 24-byte header readable, the vfio_bitmap behind it not */
	u = vfio_arg_place(where, u, 24);
	if (child)
		err = vfio_ioctl_in_child(VP_IOMMU_UNMAP_DMA, u);
	else
		err = vfio_ioctl(vp.cfd, VP_IOMMU_UNMAP_DMA, u);
	ev_begin(&j, "unmap");
	json_str(&j, "result", vfio_errname(err));
	/* copy_to_user(arg, &unmap, minsz): argsz, flags, iova echoed, size unmapped */
	json_u64(&j, "size", u ? u->size : local.size);
	json_u64(&j, "argsz", u ? u->argsz : local.argsz);
	json_u64(&j, "flags", u ? u->flags : local.flags);
	json_u64(&j, "iova", u ? u->iova : local.iova);
	if (with_bitmap)
		vfio_ubuf_emit(&j, &ub);
	json_end_line(&j);
	vfio_ubuf_free(&ub);
}

static void vfio_op_dirty(const struct kv *a, const char *line)
{
	struct vp_dirty d;
	struct json j;
	int err;

	memset(&d, 0, sizeof(d));
	d.argsz = vfio_need(a, "argsz", line);
	d.flags = vfio_need(a, "flags", line);
	err = vfio_ioctl(vp.cfd, VP_IOMMU_DIRTY_PAGES, kv_get(a, "null", 0) ? NULL : &d);
	ev_begin(&j, "dirty");
	json_str(&j, "result", vfio_errname(err));
	json_end_line(&j);
}

static void vfio_op_get(const struct kv *a, const char *line)
{
	struct vp_dirty d;
	struct vp_ubuf ub;
	uint64_t kind = vfio_need(a, "data", line), where = vfio_need(a, "arg", line);
	struct json j;
	int err;

	memset(&d, 0, sizeof(d));
	d.argsz = vfio_need(a, "argsz", line);
	d.flags = vfio_need(a, "flags", line);
	d.iova = vfio_need(a, "iova", line);
	d.size = vfio_need(a, "size", line);
	d.bitmap.pgsize = vfio_need(a, "pgsize", line);
	d.bitmap.size = vfio_need(a, "bsize", line);
	if (where > VP_ARG_SPLIT)
		vfio_bad_input("get arg", line);
	vfio_ubuf_setup(&ub, d.bitmap.size, vfio_need(a, "fill", line), line, 0);
	d.bitmap.data = vfio_data_ptr(&ub, kind);
	/* split: argsz and flags readable, the dirty_bitmap_get behind them not */
	err = vfio_ioctl(vp.cfd, VP_IOMMU_DIRTY_PAGES, vfio_arg_place(where, &d, 8));
	ev_begin(&j, "get");
	json_str(&j, "result", vfio_errname(err));
	if (kind == 0)
		vfio_ubuf_emit(&j, &ub);
	json_end_line(&j);
	vfio_ubuf_free(&ub);
}

static void vfio_op_ext(const struct kv *a, const char *line)
{
	int ret = ioctl(vp.cfd, VP_CHECK_EXTENSION, (unsigned long)vfio_need(a, "arg", line));
	struct json j;

	ev_begin(&j, "ext");
	json_str(&j, "result", vfio_errname(ret < 0 ? errno : 0));
	json_u64(&j, "value", ret < 0 ? 0 : ret);
	json_end_line(&j);
}

static void vfio_op_devdirty(void)
{
	struct { uint32_t argsz, flags; uint64_t pad[8]; } d = { 8, 1, { 0 } };
	int err = vfio_device_open();
	struct json j;

	if (!err)
		err = vfio_ioctl(vp.dev_fd, VP_IOMMU_DIRTY_PAGES, &d);
	ev_begin(&j, "devdirty");
	json_str(&j, "result", vfio_errname(err));
	json_end_line(&j);
}

/* where the CPU sees IOVA `iova`: the newest successful map covering it */
static uint8_t *vfio_iova_ptr(uint64_t iova)
{
	for (int i = vp.nmaps - 1; i >= 0; i--)
		if (iova >= vp.maps[i].iova && iova - vp.maps[i].iova < vp.maps[i].size)
			return vp.maps[i].vaddr + (iova - vp.maps[i].iova);
	return NULL;
}

static long long vfio_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000ll + ts.tv_nsec;
}

/* one edu DMA transfer; 0 when it completed, ETIMEDOUT otherwise */
static int vfio_edu_dma(uint64_t src, uint64_t dst, uint64_t len, int to_ram)
{
	volatile uint64_t *r = (volatile uint64_t *)(vp.bar0 + 0x80);
	long long deadline = vfio_now_ns() + VP_DMA_DEADLINE_NS;

	r[0] = src;             /* 0x80 */
	r[1] = dst;             /* 0x88 */
	r[2] = len;             /* 0x90 */
	r[3] = 1 | (to_ram ? 2 : 0); /* 0x98: start, direction */
	while (r[3] & 1) {
		if (vfio_now_ns() > deadline)
			return ETIMEDOUT;
		usleep(1000);
	}
	return 0;
}

static void vfio_op_dma(const struct kv *a, const char *line)
{
	uint64_t src = vfio_need(a, "src", line), dst = vfio_need(a, "dst", line);
	uint64_t len = vfio_need(a, "len", line), i;
	const char *result = "match";
	uint8_t pattern[VP_DMA_MAX];
	struct json j;
	int err;

	/*
	 * edu (hw/misc/edu.c): device buffer 4 KiB at 0x40000, DMA mask 28 bits.
	 * QEMU 7.2's edu_check_range() calls hw_error() (QEMU aborts) unless
	 * the transfer ends strictly below 0x41000, so stay well inside.
	 */
	if (!len || len > VP_DMA_MAX || src + len > (1ull << 28) || dst + len > (1ull << 28))
		vfio_bad_input("dma range outside edu's limits", line);
	err = vfio_device_open();
	if (!err && *(volatile uint32_t *)vp.bar0 != 0x010000ed)
		err = ENODEV;
	if (err) {
		ev_begin(&j, "dma");
		json_str(&j, "result", vfio_errname(err));
		json_end_line(&j);
		return;
	}
	/*
	 * Pattern A goes to the source, the device copies it into its buffer;
	 * then the destination is set to ~A and the device copies its buffer
	 * out.  Only two completed transfers leave A at the destination, even
	 * when source and destination share memory (two IOVAs mapping the same
	 * arena pages).  A is fresh per transfer, so a failed first transfer
	 * leaves a different (older) pattern in the device buffer.
	 */
	vp.dma_counter++;
	for (i = 0; i < len; i++) {
		uint64_t x = (vp.dma_counter * 0x9e3779b97f4a7c15ull) ^ (i * 0xbf58476d1ce4e5b9ull);

		x ^= x >> 31;
		x *= 0x94d049bb133111ebull;
		pattern[i] = (uint8_t)(x >> 56);
	}
	for (i = 0; i < len; i++) {
		uint8_t *p = vfio_iova_ptr(src + i);

		if (p)
			*p = pattern[i];
	}
	__sync_synchronize();
	if (vfio_edu_dma(src, VP_EDU_DMA_BUF, len, 0)) {
		result = "timeout";
	} else {
		for (i = 0; i < len; i++) {
			uint8_t *p = vfio_iova_ptr(dst + i);

			if (p)
				*p = (uint8_t)~pattern[i];
		}
		__sync_synchronize();
		if (vfio_edu_dma(VP_EDU_DMA_BUF, dst, len, 1))
			result = "timeout";
	}
	if (!strcmp(result, "match")) {
		__sync_synchronize();
		for (i = 0; i < len; i++) {
			uint8_t *p = vfio_iova_ptr(dst + i);

			if (!p || *p != pattern[i]) {
				result = "mismatch";
				break;
			}
		}
	}
	ev_begin(&j, "dma");
	json_str(&j, "result", result);
	json_end_line(&j);
}

static int vp_mig_region = -1;
static uint64_t vp_mig_offset;

static void vfio_op_migprobe(void)
{
	struct vp_device_info di;
	struct { uint32_t argsz, flags; uint64_t mig_flags; } feat;
	uint64_t buf64[64];
	int err = vfio_device_open(), ferr = 0;
	struct json j;

	vp_mig_region = -1;
	memset(&di, 0, sizeof(di));
	di.argsz = sizeof(di);
	if (!err)
		err = vfio_ioctl(vp.dev_fd, VP_DEVICE_GET_INFO, &di);
	for (uint32_t i = 0; !err && i < di.num_regions && i < 64; i++) {
		struct vp_region_info *ri = (struct vp_region_info *)buf64;
		uint32_t off;

		memset(buf64, 0, sizeof(buf64));
		ri->argsz = sizeof(buf64);
		ri->index = i;
		if (vfio_ioctl(vp.dev_fd, VP_DEVICE_GET_REGION_INFO, ri))
			continue;
		if (!(ri->flags & VP_REGION_INFO_FLAG_CAPS))
			continue;
		for (off = ri->cap_offset; off && off + 16 <= sizeof(buf64);) {
			struct vp_region_cap_type *t = (struct vp_region_cap_type *)((uint8_t *)buf64 + off);

			if (t->header.id == VP_REGION_INFO_CAP_TYPE &&
			    t->type == VP_REGION_TYPE_MIGRATION_DEPRECATED &&
			    t->subtype == VP_REGION_SUBTYPE_MIGRATION_DEPRECATED) {
				vp_mig_region = i;
				vp_mig_offset = ri->offset;
			}
			if (t->header.next <= off)
				break;
			off = t->header.next;
		}
	}
	memset(&feat, 0, sizeof(feat));
	feat.argsz = sizeof(feat);
	feat.flags = VP_DEVICE_FEATURE_GET | VP_DEVICE_FEATURE_MIGRATION;
	if (!err)
		ferr = vfio_ioctl(vp.dev_fd, VP_DEVICE_FEATURE, &feat);
	ev_begin(&j, "migprobe");
	json_str(&j, "result", vfio_errname(err));
	json_str(&j, "bdf", vp.bdf);
	json_u64(&j, "num_regions", di.num_regions);
	json_i64(&j, "v1_region", vp_mig_region);
	json_str(&j, "v2_feature", vfio_errname(ferr));
	json_u64(&j, "v2_flags", ferr ? 0 : feat.mig_flags);
	json_end_line(&j);
}

static void vfio_op_mig1(const struct kv *a, const char *line)
{
	uint32_t state = vfio_need(a, "state", line), back = 0;
	struct json j;
	int err = 0;

	if (vp_mig_region < 0)
		err = ENODEV;
	else if (pwrite(vp.dev_fd, &state, 4, vp_mig_offset) != 4)
		err = errno;
	if (vp_mig_region >= 0 && pread(vp.dev_fd, &back, 4, vp_mig_offset) != 4)
		back = 0xffffffff;
	ev_begin(&j, "mig1");
	json_str(&j, "result", vfio_errname(err));
	json_u64(&j, "device_state", back);
	json_end_line(&j);
}

/* ---------------------------------------------------------------- main loop */

int main(int argc, char **argv)
{
	char line[1024], orig[1024];
	int in_script = 0, setup_failed = 0;

	json_max = VP_EVENT_MAX;
	vp.group_no = -1;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--group") && i + 1 < argc)
			vp.group_no = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--bdf") && i + 1 < argc)
			snprintf(vp.bdf, sizeof(vp.bdf), "%s", argv[++i]);
		else
			die("usage: %s [--group N] [--bdf DDDD:BB:DD.F] < script", argv[0]);
	}
	vfio_find_device();
	vfio_open_group();
	vp.arena = mmap(NULL, VP_ARENA_SIZE, PROT_READ | PROT_WRITE,
			MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	if (vp.arena == MAP_FAILED)
		vfio_die("mmap arena");
	vp.split = mmap(NULL, 2 * VP_PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	vp.shared = mmap(NULL, VP_PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (vp.split == MAP_FAILED || vp.shared == MAP_FAILED ||
	    mprotect(vp.split + VP_PAGE, VP_PAGE, PROT_NONE))
		vfio_die("mmap argument pages");
	vp.script = -1;

	while (fgets(line, sizeof(line), stdin)) {
		const char *bad;
		struct kv a;

		if (!strchr(line, '\n') && !feof(stdin))
			vfio_bad_input("line too long", line);
		snprintf(orig, sizeof(orig), "%s", line);
		orig[strcspn(orig, "\n")] = 0;
		if (line[0] == '\n' || line[0] == '#')
			continue;
		if (line[0] == 'S' && line[1] == ' ') {
			const char *step = "", *bad;
			struct kv opts;
			struct json j;
			int iommu, err;
			char *end;

			if (in_script)
				vfio_bad_input("S inside a script", orig);
			bad = kv_parse(line, 2, &opts);
			if (bad)
				vfio_bad_input(bad, orig);
			iommu = strtol(opts.name, &end, 0);
			if (*end || end == opts.name)
				vfio_bad_input("S needs an iommu number", orig);
			vp.script++;
			in_script = 1;
			err = vfio_script_begin(iommu, &opts, &step);
			setup_failed = err != 0;
			ev_begin(&j, "setup");
			json_u64(&j, "iommu", iommu);
			json_str(&j, "result", vfio_errname(err));
			if (err)
				json_str(&j, "step", step);
			json_end_line(&j);
			continue;
		}
		if (line[0] == 'E' && (line[1] == '\n' || line[1] == 0)) {
			if (!in_script)
				vfio_bad_input("E outside a script", orig);
			vfio_script_end();
			in_script = 0;
			script_done(vp.script);
			continue;
		}
		if (line[0] != 'A' || line[1] != ' ' || !in_script)
			vfio_bad_input("expected S, A or E", orig);
		bad = kv_parse(line + 2, 1, &a);
		if (bad)
			vfio_bad_input(bad, orig);
		if (setup_failed)
			continue; /* the setup event already tells why */
		if (!strcmp(a.name, "info"))
			vfio_op_info(&a, orig);
		else if (!strcmp(a.name, "map"))
			vfio_op_map(&a, orig);
		else if (!strcmp(a.name, "unmap"))
			vfio_op_unmap(&a, orig);
		else if (!strcmp(a.name, "dirty"))
			vfio_op_dirty(&a, orig);
		else if (!strcmp(a.name, "get"))
			vfio_op_get(&a, orig);
		else if (!strcmp(a.name, "dma"))
			vfio_op_dma(&a, orig);
		else if (!strcmp(a.name, "ext"))
			vfio_op_ext(&a, orig);
		else if (!strcmp(a.name, "devdirty"))
			vfio_op_devdirty();
		else if (!strcmp(a.name, "migprobe"))
			vfio_op_migprobe();
		else if (!strcmp(a.name, "mig1"))
			vfio_op_mig1(&a, orig);
		else
			vfio_bad_input("unknown action", orig);
	}
	if (in_script)
		vfio_bad_input("input ended inside a script", "<eof>");
	fflush(stdout);
	return 0;
}
