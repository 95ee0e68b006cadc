/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Private types of scif_shim: the bound device, an open file, an interrupt vector and a DMA
 * buffer, plus the functions the driver's files call in each other.
 */
#ifndef SCIF_SHIM_H
#define SCIF_SHIM_H

#include <linux/cdev.h>
#include <linux/device.h>
#include <linux/idr.h>
#include <linux/ioport.h>
#include <linux/list.h>
#include <linux/mutex.h>
#include <linux/pci.h>
#include <linux/spinlock.h>
#include <linux/timer.h>
#include <linux/types.h>

#include "uapi/scif_shim.h"

/* What the driver knows about a device beyond its BARs (scif_shim_quirks()) */
#define SCIF_SHIM_QUIRK_IVSHMEM	BIT(0)	/* QEMU ivshmem: IVPosition register in BAR0 */

/* DMA handles stay below this so that SCIF_SHIM_MMAP_DMA_FIRST + handle fits the 24 region bits */
#define SCIF_SHIM_MAX_DMA_HANDLES	BIT(20)

/**
 * struct scif_shim_bar_state - what probe learnt about one BAR
 * @info: the user-visible description returned by SCIF_SHIM_IOC_INFO
 * @start: bus/physical start address (for the PFNs the fault handler inserts)
 * @pad_res: the rest of the page after a sub-page BAR, reserved by us so that no other device can
 *           be placed there while we let user space map the whole page
 * @pad_held: @pad_res is registered in the resource tree
 * @wc_reserved: the BAR's PAT memtype is reserved write-combining (prefetchable BARs on x86)
 */
struct scif_shim_bar_state {
	struct scif_shim_bar info;
	resource_size_t start;
	struct resource pad_res;
	bool pad_held;
	bool wc_reserved;
};

/**
 * struct scif_shim_vector - one enabled MSI-X/MSI vector
 * @lock: protects @bindings; taken by the hard-irq handler, so process context uses _irq
 * @bindings: the scif_shim_irq_binding of every file that attached an eventfd to this vector
 * @count: interrupts seen since probe (sysfs irq_counts); lets tests tell "not delivered" from
 *         "delivered to nobody"
 * @irq: Linux irq number, valid while @requested
 * @requested: request_irq() succeeded and free_irq() has not run yet
 * @name: irq name shown in /proc/interrupts; must outlive the registration
 */
struct scif_shim_vector {
	spinlock_t lock;		/* guards @bindings, also in hard-irq context */
	struct list_head bindings;
	atomic64_t count;
	int irq;
	bool requested;
	char name[32];
};

/**
 * struct scif_shim_dev - one bound PCI device and its character device
 * @dev: class device (/sys/class/scif_shim/scif_shimN); its refcount is the lifetime of this
 *       struct: the cdev pins it while a file is open, so a removed device lingers until the last
 *       file closes
 * @cdev: character device, parented to @dev by cdev_device_add()
 * @pdev: the PCI device (reference held until @dev is released)
 * @inode: anonymous inode whose address space every open file uses as f_mapping, so that one
 *         unmap_mapping_range() reaches every user mapping of this device, whatever the device
 *         node the files were opened through
 * @lock: protects @dead, @files, @dma_idr, @dma_bytes and every file's DMA list and budget; PTEs
 *        are only inserted under it, which is what makes revocation race-free
 * @dead: set once by remove(); after it every ioctl returns ENODEV and every fault SIGBUS
 * @files: open files (struct scif_shim_file.node)
 * @dma_idr: DMA buffer handle -> struct scif_shim_dma_buf, device-wide so mmap offsets are unique
 * @dma_bytes: total DMA memory currently allocated through this device (sysfs dma_bytes)
 * @regs: BAR0 mapping for devices whose registers the driver reads itself (ivshmem), else NULL
 * @quirks: SCIF_SHIM_QUIRK_* bits
 * @minor: minor number, also the N in scif_shimN
 * @nr_vectors: vectors enabled; constant from probe to remove
 * @msix: the vectors are MSI-X (not MSI)
 * @dma_mask_bits: DMA addressing width set at probe
 * @bars: BAR 0..5 state
 * @vectors: @nr_vectors entries
 */
struct scif_shim_dev {
	struct device dev;
	struct cdev cdev;
	struct pci_dev *pdev;
	struct inode *inode;
	struct mutex lock;		/* see the kernel-doc above: dead, files, DMA state */
	bool dead;
	struct list_head files;
	struct idr dma_idr;
	u64 dma_bytes;
	void __iomem *regs;
	unsigned long quirks;
	int minor;
	unsigned int nr_vectors;
	bool msix;
	unsigned int dma_mask_bits;
	struct scif_shim_bar_state bars[SCIF_SHIM_MAX_BARS];
	struct scif_shim_vector *vectors;
};

/**
 * struct scif_shim_irq_binding - an eventfd a file attached to a vector
 * @node: entry in scif_shim_vector.bindings (under its lock)
 * @ctx: the eventfd, referenced until the binding is dropped
 */
struct scif_shim_irq_binding {
	struct list_head node;
	struct eventfd_ctx *ctx;
};

/**
 * struct scif_shim_file - one open file of the character device
 * @sdev: the device, referenced (get_device) for the life of the file
 * @node: entry in sdev->files (under sdev->lock)
 * @dma_bufs: DMA buffers this file owns (under sdev->lock)
 * @dma_bytes: their total size, checked against the max_dma_mb budget (under sdev->lock)
 * @irq: per vector, the binding this file attached or NULL; written under the vector's lock, by
 *       SET_IRQ (which also holds sdev->lock, serialising writers) or by the file's release
 * @will: the last will's writes (SCIF_SHIM_IOC_SET_WILL), @will_nr of them, each with @will_io,
 *        the kernel's mapping of its word (under sdev->lock)
 * @beat: the kernel heartbeat's timer (SCIF_SHIM_IOC_SET_BEAT); it writes @beat_count + 1 to
 *        @beat_io every @beat_period jiffies while @beat_on. @beat_io and @beat_period change
 *        only under sdev->lock with the timer stopped (@beat_on cleared, then
 *        timer_delete_sync); @beat_count belongs to the timer
 */
struct scif_shim_file {
	struct scif_shim_dev *sdev;
	struct list_head node;
	struct list_head dma_bufs;
	u64 dma_bytes;
	struct scif_shim_irq_binding **irq;
	struct scif_shim_will_write will[SCIF_SHIM_WILL_MAX];
	void __iomem *will_io[SCIF_SHIM_WILL_MAX];
	unsigned int will_nr;
	struct timer_list beat;
	void __iomem *beat_io;
	unsigned long beat_period;
	u32 beat_count;
	bool beat_on;
};

/**
 * struct scif_shim_dma_buf - one coherent DMA buffer
 * @node: entry in the owner's dma_bufs list
 * @owner: the file that allocated it; only that file may map or free it
 * @cpu_addr: kernel address from dma_alloc_coherent()
 * @bus_addr: device address from dma_alloc_coherent()
 * @size: bytes, a whole number of pages
 * @handle: id in sdev->dma_idr; the buffer's mmap region is SCIF_SHIM_MMAP_DMA_FIRST + @handle
 */
struct scif_shim_dma_buf {
	struct list_head node;
	struct scif_shim_file *owner;
	void *cpu_addr;
	dma_addr_t bus_addr;
	size_t size;
	u32 handle;
};

/* shim_main.c */
extern unsigned int scif_shim_max_dma_mb;

/* shim_fops.c */
extern const struct file_operations scif_shim_fops;

/* shim_irq.c */
int scif_shim_irq_setup(struct scif_shim_dev *sdev);
void scif_shim_irq_teardown(struct scif_shim_dev *sdev);
long scif_shim_ioctl_set_irq(struct scif_shim_file *sf, void __user *uarg);
void scif_shim_irq_release_file(struct scif_shim_file *sf);

/* shim_fops.c: the kernel heartbeat, stopped by remove() for every open file (under sdev->lock) */
void scif_shim_beat_stop_locked(struct scif_shim_file *sf);

/* shim_dma.c */
long scif_shim_ioctl_dma_alloc(struct scif_shim_file *sf, void __user *uarg);
long scif_shim_ioctl_dma_free(struct scif_shim_file *sf, void __user *uarg);
void scif_shim_dma_release_file_locked(struct scif_shim_file *sf);
struct scif_shim_dma_buf *scif_shim_dma_find_locked(struct scif_shim_file *sf, u32 handle);
unsigned long scif_shim_dma_pfn(const struct scif_shim_dma_buf *buf, size_t offset);

#endif /* SCIF_SHIM_H */
