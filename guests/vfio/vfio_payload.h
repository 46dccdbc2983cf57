/* SPDX-License-Identifier: GPL-2.0 */
/*
 * kvmconf VFIO payload: private copies of the type1 uapi (as in Linux 6.1
 * include/uapi/linux/vfio.h).  We do not include <linux/vfio.h>: its v1
 * migration names changed across releases.  Names carry a `vp_`/`VP_` prefix.
 */
#ifndef KVMCONF_VFIO_PAYLOAD_H
#define KVMCONF_VFIO_PAYLOAD_H

#include <stdint.h>
#include <sys/ioctl.h>

/* ---- uapi (include/uapi/linux/vfio.h, 6.1) ---- */
#define VP_VFIO_TYPE ';'
#define VP_VFIO_BASE 100
#define VP_IO(n) _IO(VP_VFIO_TYPE, VP_VFIO_BASE + (n))

#define VP_GET_API_VERSION        VP_IO(0)
#define VP_CHECK_EXTENSION        VP_IO(1)
#define VP_SET_IOMMU              VP_IO(2)
#define VP_GROUP_GET_STATUS       VP_IO(3)
#define VP_GROUP_SET_CONTAINER    VP_IO(4)
#define VP_GROUP_UNSET_CONTAINER  VP_IO(5)
#define VP_GROUP_GET_DEVICE_FD    VP_IO(6)
#define VP_DEVICE_GET_INFO        VP_IO(7)
#define VP_DEVICE_GET_REGION_INFO VP_IO(8)
#define VP_IOMMU_GET_INFO         VP_IO(12)
#define VP_IOMMU_MAP_DMA          VP_IO(13)
#define VP_IOMMU_UNMAP_DMA        VP_IO(14)
#define VP_IOMMU_DIRTY_PAGES      VP_IO(17)
#define VP_DEVICE_FEATURE         VP_IO(17) /* same number, device fd */

#define VP_TYPE1_IOMMU   1
#define VP_TYPE1v2_IOMMU 3

#define VP_GROUP_FLAGS_VIABLE 1u

#define VP_INFO_CAPS 2u /* VFIO_IOMMU_INFO_CAPS */

#define VP_CAP_IOVA_RANGE 1
#define VP_CAP_MIGRATION  2
#define VP_CAP_DMA_AVAIL  3

#define VP_UNMAP_GET_DIRTY_BITMAP 1u

#define VP_PCI_CONFIG_REGION_INDEX 7
#define VP_REGION_INFO_FLAG_CAPS (1u << 3)
#define VP_REGION_INFO_CAP_TYPE 1
#define VP_REGION_TYPE_MIGRATION_DEPRECATED 3
#define VP_REGION_SUBTYPE_MIGRATION_DEPRECATED 1

#define VP_DEVICE_FEATURE_GET (1u << 16)
#define VP_DEVICE_FEATURE_SET (1u << 17)
#define VP_DEVICE_FEATURE_MIGRATION 1
#define VP_DEVICE_FEATURE_MIG_DEVICE_STATE 2

struct vp_type1_info {          /* struct vfio_iommu_type1_info, 24 bytes */
	uint32_t argsz;
	uint32_t flags;
	uint64_t iova_pgsizes;
	uint32_t cap_offset;
	uint32_t pad;
};

struct vp_cap_header {          /* struct vfio_info_cap_header */
	uint16_t id;
	uint16_t version;
	uint32_t next;
};

struct vp_dma_map {             /* struct vfio_iommu_type1_dma_map, 32 bytes */
	uint32_t argsz;
	uint32_t flags;
	uint64_t vaddr;
	uint64_t iova;
	uint64_t size;
};

struct vp_bitmap {              /* struct vfio_bitmap, 24 bytes */
	uint64_t pgsize;
	uint64_t size;
	uint64_t data;          /* __u64 __user * */
};

struct vp_dma_unmap {           /* struct vfio_iommu_type1_dma_unmap + vfio_bitmap */
	uint32_t argsz;
	uint32_t flags;
	uint64_t iova;
	uint64_t size;
	struct vp_bitmap bitmap;
};

struct vp_dirty {               /* struct vfio_iommu_type1_dirty_bitmap + _get */
	uint32_t argsz;
	uint32_t flags;
	uint64_t iova;
	uint64_t size;
	struct vp_bitmap bitmap;
};

struct vp_device_info {
	uint32_t argsz;
	uint32_t flags;
	uint32_t num_regions;
	uint32_t num_irqs;
	uint32_t cap_offset;
	uint32_t pad;
};

struct vp_region_info {
	uint32_t argsz;
	uint32_t flags;
	uint32_t index;
	uint32_t cap_offset;
	uint64_t size;
	uint64_t offset;
};

struct vp_region_cap_type {
	struct vp_cap_header header;
	uint32_t type;
	uint32_t subtype;
};

#endif
