/* SPDX-License-Identifier: ((GPL-2.0-or-later WITH Linux-syscall-note) OR LGPL-2.1-or-later) */
/*
 * User-space interface of the scif_shim PCI driver: one character device per bound device,
 * offering device info, BAR and DMA-buffer mmap, MSI-X to eventfd, coherent DMA buffers, a last
 * will (device writes made when the file is released) and a kernel heartbeat into a BAR word.
 */
#ifndef _UAPI_SCIF_SHIM_H
#define _UAPI_SCIF_SHIM_H

#include <linux/types.h>
#include <linux/ioctl.h>

/*
 * Rules that hold for every ioctl below:
 *  - every struct is a multiple of 8 bytes with explicit padding, so 32- and 64-bit callers see the
 *    same layout and no compat_ioctl translation is needed;
 *  - every flags, pad and reserved field must be zero on input (EINVAL otherwise), so later ABI
 *    versions can give them meaning without old binaries sending garbage;
 *  - after the device is unbound or removed, every ioctl on a file opened before returns ENODEV
 *    and closing the file is the only thing left to do;
 *  - unknown commands return ENOTTY.
 */

/** SCIF_SHIM_ABI_VERSION - bumped on any incompatible change; reported by SCIF_SHIM_IOC_INFO. */
#define SCIF_SHIM_ABI_VERSION	1

/** SCIF_SHIM_MAX_BARS - standard PCI BARs 0..5. */
#define SCIF_SHIM_MAX_BARS	6

/** SCIF_SHIM_MAX_VECTORS - most MSI-X/MSI vectors the shim enables on one device. */
#define SCIF_SHIM_MAX_VECTORS	64

/*
 * mmap offsets. The offset passed to mmap() selects a region: offset bits 40..63 hold the region
 * number, bits 0..39 the byte offset inside it (page-aligned). Regions 0..5 are BARs 0..5; DMA
 * buffers live at region SCIF_SHIM_MMAP_DMA_FIRST and above. Callers should use the mmap_offset
 * values the ioctls return rather than build offsets themselves.
 */
#define SCIF_SHIM_MMAP_SHIFT		40
#define SCIF_SHIM_MMAP_DMA_FIRST	16
#define SCIF_SHIM_MMAP_OFFSET(region)	((__u64)(region) << SCIF_SHIM_MMAP_SHIFT)

/* BAR flags (struct scif_shim_bar.flags) */
#define SCIF_SHIM_BAR_PRESENT	(1u << 0) /* the BAR is implemented (size > 0) */
#define SCIF_SHIM_BAR_MEM	(1u << 1) /* memory space (else I/O port space) */
#define SCIF_SHIM_BAR_MEM64	(1u << 2) /* 64-bit memory BAR (occupies two BAR slots) */
#define SCIF_SHIM_BAR_PREFETCH	(1u << 3) /* prefetchable: mapped write-combining */
#define SCIF_SHIM_BAR_MMAP	(1u << 4) /* can be mmap()ed through this file */

/**
 * struct scif_shim_bar - one BAR as seen by user space
 * @size: length in bytes, 0 when the BAR is not implemented
 * @mmap_offset: offset to pass to mmap() to map this BAR (valid when SCIF_SHIM_BAR_MMAP is set)
 * @excl_offset: start of the page range of this BAR that cannot be mapped, because it holds the
 *               device's MSI-X table or pending-bit array (which the kernel owns); page-aligned
 * @excl_size: length of that range, 0 when the whole BAR can be mapped. A BAR that holds nothing
 *             else has no SCIF_SHIM_BAR_MMAP flag at all.
 * @flags: SCIF_SHIM_BAR_* bits
 * @reserved: zero
 */
struct scif_shim_bar {
	__u64 size;
	__u64 mmap_offset;
	__u64 excl_offset;
	__u64 excl_size;
	__u32 flags;
	__u32 reserved;
};

/* Info flags (struct scif_shim_info.flags) */
#define SCIF_SHIM_INFO_PEER_ID	(1u << 0) /* peer_id is valid (ivshmem: IVPosition register) */
#define SCIF_SHIM_INFO_MSIX	(1u << 1) /* vectors are MSI-X (else MSI, or none) */

/**
 * struct scif_shim_info - SCIF_SHIM_IOC_INFO result
 * @abi_version: SCIF_SHIM_ABI_VERSION of the running module
 * @flags: SCIF_SHIM_INFO_* bits
 * @vendor: PCI vendor id
 * @device: PCI device id
 * @subsystem_vendor: PCI subsystem vendor id
 * @subsystem_device: PCI subsystem device id
 * @nr_vectors: interrupt vectors enabled; valid vector numbers are 0..nr_vectors-1
 * @peer_id: the device's own id on its link when SCIF_SHIM_INFO_PEER_ID is set, else 0
 * @dma_mask_bits: width of the bus addresses DMA buffers can have (64 or 32)
 * @nr_bars: number of entries in @bars (SCIF_SHIM_MAX_BARS)
 * @bars: BARs 0..5; the upper half of a 64-bit BAR reads as absent
 * @reserved: zero
 */
struct scif_shim_info {
	__u32 abi_version;
	__u32 flags;
	__u16 vendor;
	__u16 device;
	__u16 subsystem_vendor;
	__u16 subsystem_device;
	__u32 nr_vectors;
	__u32 peer_id;
	__u32 dma_mask_bits;
	__u32 nr_bars;
	struct scif_shim_bar bars[SCIF_SHIM_MAX_BARS];
	__u64 reserved[4];
};

/**
 * struct scif_shim_irq - SCIF_SHIM_IOC_SET_IRQ argument
 * @vector: vector number, below scif_shim_info.nr_vectors (EINVAL otherwise)
 * @fd: an eventfd to signal on each interrupt of @vector, or -1 to detach (EBADF/EINVAL when @fd
 *      is neither an eventfd nor -1). Each open file holds at most one eventfd per vector: setting
 *      a new one replaces the old. Several files may attach to the same vector; each is signalled.
 * @flags: zero
 * @pad: zero
 */
struct scif_shim_irq {
	__u32 vector;
	__s32 fd;
	__u32 flags;
	__u32 pad;
};

/**
 * struct scif_shim_dma_alloc - SCIF_SHIM_IOC_DMA_ALLOC argument
 * @size: in: bytes wanted (> 0); out: the size actually allocated, rounded up to whole pages.
 *        ENOMEM when the file's DMA budget (module parameter max_dma_mb) or the allocator runs out.
 * @flags: zero
 * @handle: out: identifies the buffer to SCIF_SHIM_IOC_DMA_FREE
 * @bus_addr: out: the address the device uses to reach the buffer
 * @mmap_offset: out: offset to pass to mmap() to map the buffer (cached, coherent)
 */
struct scif_shim_dma_alloc {
	__u64 size;
	__u32 flags;
	__u32 handle;
	__u64 bus_addr;
	__u64 mmap_offset;
};

/**
 * struct scif_shim_dma_free - SCIF_SHIM_IOC_DMA_FREE argument
 * @handle: a handle this file got from SCIF_SHIM_IOC_DMA_ALLOC (ENOENT otherwise). Existing
 *          mappings of the buffer are torn down; touching them afterwards raises SIGBUS.
 * @flags: zero
 */
struct scif_shim_dma_free {
	__u32 handle;
	__u32 flags;
};

/** SCIF_SHIM_WILL_MAX - most writes one file's last will holds. */
#define SCIF_SHIM_WILL_MAX	2

/**
 * struct scif_shim_will_write - one 32-bit write of a last will
 * @bar: a BAR this file could map (SCIF_SHIM_BAR_MMAP)
 * @value: the value written
 * @offset: byte offset in the BAR: 4-aligned, the 4 bytes inside the BAR and outside its
 *          excluded range (struct scif_shim_bar)
 */
struct scif_shim_will_write {
	__u32 bar;
	__u32 value;
	__u64 offset;
};

/**
 * struct scif_shim_will - SCIF_SHIM_IOC_SET_WILL argument: writes the driver makes to the
 * device when this file is released, so that whoever is on the other side of the device learns
 * at once that the file's owner went away (for instance a word in shared memory, then a
 * doorbell). Release is the file's last close: the owner's exit, kill or crash included, once
 * no mapping of the file and no copy of its descriptor (fork) remains. Nothing is written if the
 * device was unbound or removed before. Each call replaces the file's will; @nr = 0 clears it.
 * A will writes nothing the file could not write through a mapping of its own: EINVAL for a
 * BAR without SCIF_SHIM_BAR_MMAP, or an offset not 4-aligned, past the BAR or in its excluded
 * range; ENOMEM if the kernel cannot map the words.
 * @nr: entries of @w used, 0..SCIF_SHIM_WILL_MAX
 * @flags: zero
 * @w: the writes, made in this order, each one posted to the device before the next; entries
 *     past @nr must be zero
 */
struct scif_shim_will {
	__u32 nr;
	__u32 flags;
	struct scif_shim_will_write w[SCIF_SHIM_WILL_MAX];
};

/** SCIF_SHIM_BEAT_MIN_MS, SCIF_SHIM_BEAT_MAX_MS - the periods a kernel heartbeat may have. */
#define SCIF_SHIM_BEAT_MIN_MS	10
#define SCIF_SHIM_BEAT_MAX_MS	1000

/**
 * struct scif_shim_beat - SCIF_SHIM_IOC_SET_BEAT argument: while this file is open, a kernel
 * timer writes a count (1, 2, ...) into the 32-bit word at @offset of BAR @bar every
 * @period_ms, the first one before the call returns, so that the other side of the device can tell a running OS from one that
 * stopped, hung or was reset, sooner than a user thread's heartbeat could tell it (a process
 * can be starved for longer than the kernel's timers). It stops when the file is released or
 * the device unbound. Each call replaces the file's heartbeat (the count goes on); @period_ms
 * = 0 stops it. EINVAL for a period outside SCIF_SHIM_BEAT_MIN_MS..SCIF_SHIM_BEAT_MAX_MS or a
 * word a will could not write (struct scif_shim_will_write).
 * @bar: a BAR this file could map
 * @period_ms: 0, or SCIF_SHIM_BEAT_MIN_MS..SCIF_SHIM_BEAT_MAX_MS
 * @offset: the word's byte offset in the BAR
 */
struct scif_shim_beat {
	__u32 bar;
	__u32 period_ms;
	__u64 offset;
};

#define SCIF_SHIM_IOC_MAGIC	0xE5

#define SCIF_SHIM_IOC_INFO	_IOR(SCIF_SHIM_IOC_MAGIC, 0x00, struct scif_shim_info)
#define SCIF_SHIM_IOC_SET_IRQ	_IOW(SCIF_SHIM_IOC_MAGIC, 0x01, struct scif_shim_irq)
#define SCIF_SHIM_IOC_DMA_ALLOC	_IOWR(SCIF_SHIM_IOC_MAGIC, 0x02, struct scif_shim_dma_alloc)
#define SCIF_SHIM_IOC_DMA_FREE	_IOW(SCIF_SHIM_IOC_MAGIC, 0x03, struct scif_shim_dma_free)
#define SCIF_SHIM_IOC_SET_WILL	_IOW(SCIF_SHIM_IOC_MAGIC, 0x04, struct scif_shim_will)
#define SCIF_SHIM_IOC_SET_BEAT	_IOW(SCIF_SHIM_IOC_MAGIC, 0x05, struct scif_shim_beat)

/*
 * ivshmem (vendor 0x1af4, device 0x1110) BAR0 register offsets, for user space that drives the
 * doorbell itself through the BAR0 mapping.
 */
#define SCIF_SHIM_IVSHMEM_INTRMASK	0x00
#define SCIF_SHIM_IVSHMEM_INTRSTATUS	0x04
#define SCIF_SHIM_IVSHMEM_IVPOSITION	0x08
#define SCIF_SHIM_IVSHMEM_DOORBELL	0x0c
/* Doorbell value: peer id in bits 16..31, vector in bits 0..15. */
#define SCIF_SHIM_IVSHMEM_DOORBELL_VAL(peer, vector) \
	((((__u32)(peer) & 0xffff) << 16) | ((__u32)(vector) & 0xffff))

#endif /* _UAPI_SCIF_SHIM_H */
