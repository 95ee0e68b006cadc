/* SPDX-License-Identifier: LGPL-2.1-or-later */
/**
 * @file procmap.h
 * @brief PROCMAP_QUERY, the kernel's one-mapping lookup on /proc/PID/maps (Linux 6.11).
 *
 * Internal, not installed: libscif (window.c) and the libfabric provider (sfi_wcache.c)
 * ask with it what is mapped at an address, a lookup in the kernel's tree of mappings
 * instead of reading every line of /proc/self/maps or smaps. The system headers may
 * predate it: this is the layout of the kernel's ABI (include/uapi/linux/fs.h), which
 * grows only at the end (@c size says how much the caller knows). Kernels without it
 * answer the ioctl with ENOTTY.
 */
#ifndef SCIF_PROCMAP_H
#define SCIF_PROCMAP_H

#include <stdint.h>
#include <sys/ioctl.h>

struct procmap_query_abi {
	uint64_t size;           /**< sizeof(struct procmap_query_abi) */
	uint64_t query_flags;    /**< 0: the mapping that contains query_addr */
	uint64_t query_addr;
	uint64_t vma_start, vma_end;
	uint64_t vma_flags;      /**< PROCMAP_VMA_* */
	uint64_t vma_page_size;
	uint64_t vma_offset;     /**< file offset of vma_start, in bytes */
	uint64_t inode;          /**< 0 for anonymous memory */
	uint32_t dev_major, dev_minor;
	uint32_t vma_name_size, build_id_size; /**< 0: not asked for */
	uint64_t vma_name_addr, build_id_addr;
};
#define PROCMAP_QUERY_IOCTL _IOWR('f', 17, struct procmap_query_abi)
#define PROCMAP_VMA_READABLE 0x01
#define PROCMAP_VMA_WRITABLE 0x02
#define PROCMAP_VMA_EXECUTABLE 0x04

#endif /* SCIF_PROCMAP_H */
