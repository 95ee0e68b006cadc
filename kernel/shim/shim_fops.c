// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * File operations of /dev/scif_shimN: open/release bookkeeping with the last will and the
 * kernel heartbeat, the ioctl dispatcher with the info, will and heartbeat ioctls, and mmap of
 * BARs and DMA buffers through a fault handler that can be revoked.
 */
#include <linux/fs.h>
#include <linux/io.h>
#include <linux/mm.h>
#include <linux/slab.h>
#include <linux/uaccess.h>

#include "shim.h"
#include "compat.h"

/*
 * Most pages one fault maps ahead, so that mapping a large BAR costs a few faults, not one
 * per page, while a single fault never holds sdev->lock for long.
 */
#define SCIF_SHIM_FAULT_AHEAD	512

static void scif_shim_beat_fn(struct timer_list *t);

static int scif_shim_open(struct inode *inode, struct file *filp)
{
	struct scif_shim_dev *sdev = container_of(inode->i_cdev, struct scif_shim_dev, cdev);
	struct scif_shim_file *sf;
	int ret;

	sf = kzalloc(sizeof(*sf), GFP_KERNEL);
	if (!sf)
		return -ENOMEM;
	INIT_LIST_HEAD(&sf->dma_bufs);
	timer_setup(&sf->beat, scif_shim_beat_fn, 0);
	sf->sdev = sdev;
	if (sdev->nr_vectors) {
		sf->irq = kcalloc(sdev->nr_vectors, sizeof(*sf->irq), GFP_KERNEL);
		if (!sf->irq) {
			ret = -ENOMEM;
			goto err_free;
		}
	}

	mutex_lock(&sdev->lock);
	if (sdev->dead) {
		/* opened through a stale inode between cdev_device_del() and now */
		mutex_unlock(&sdev->lock);
		ret = -ENODEV;
		goto err_free;
	}
	get_device(&sdev->dev);
	list_add_tail(&sf->node, &sdev->files);
	mutex_unlock(&sdev->lock);

	/* All files of the device share one address space: see scif_shim_dev.inode. */
	filp->f_mapping = sdev->inode->i_mapping;
	filp->private_data = sf;
	return nonseekable_open(inode, filp);

err_free:
	kfree(sf->irq);
	kfree(sf);
	return ret;
}

/* Unmap the words of @sf's will and forget it; under sdev->lock. */
static void scif_shim_will_clear_locked(struct scif_shim_file *sf)
{
	unsigned int i;

	for (i = 0; i < sf->will_nr; i++)
		iounmap(sf->will_io[i]);
	memset(sf->will, 0, sizeof(sf->will));
	memset(sf->will_io, 0, sizeof(sf->will_io));
	sf->will_nr = 0;
}

/*
 * Make @sf's will's writes, in order, while the device is still ours (under sdev->lock, which
 * remove() takes before it gives the BARs up). wmb() after each: a write-combined word leaves
 * the CPU before the next write, typically an uncached doorbell, can overtake it.
 */
static void scif_shim_will_fire_locked(struct scif_shim_file *sf)
{
	unsigned int i;

	if (sf->sdev->dead)
		return;
	for (i = 0; i < sf->will_nr; i++) {
		iowrite32(sf->will[i].value, sf->will_io[i]);
		wmb();
	}
}

/* Is @w a word this file could write through a mapping of its own? Under sdev->lock. */
static bool scif_shim_will_write_ok(const struct scif_shim_dev *sdev,
				    const struct scif_shim_will_write *w)
{
	const struct scif_shim_bar *bar;

	if (w->bar >= SCIF_SHIM_MAX_BARS)
		return false;
	bar = &sdev->bars[w->bar].info;
	if (!(bar->flags & SCIF_SHIM_BAR_MMAP) || w->offset % 4 || bar->size < 4 ||
	    w->offset > bar->size - 4)
		return false;
	return !(bar->excl_size && w->offset < bar->excl_offset + bar->excl_size &&
		 bar->excl_offset < w->offset + 4);
}

/* The kernel's mapping of a word that passed scif_shim_will_write_ok(), with the cache mode
 * its BAR's user mappings get; NULL if it cannot be mapped. */
static void __iomem *scif_shim_word_map(const struct scif_shim_dev *sdev,
					const struct scif_shim_will_write *w)
{
	const struct scif_shim_bar_state *b = &sdev->bars[w->bar];
	resource_size_t addr = b->start + w->offset;

	return (b->info.flags & SCIF_SHIM_BAR_PREFETCH) ? ioremap_wc(addr, 4) : ioremap(addr, 4);
}

/*
 * The kernel heartbeat's timer (softirq): the next count into the word, then again a period
 * later. It reads @beat_io and @beat_period unlocked: they change only while it is stopped.
 */
static void scif_shim_beat_fn(struct timer_list *t)
{
	struct scif_shim_file *sf = scif_shim_timer_container_of(sf, t, beat);

	if (!READ_ONCE(sf->beat_on))
		return;
	iowrite32(++sf->beat_count, sf->beat_io);
	wmb();	/* out of the write-combining buffer now, not at the next write */
	mod_timer(&sf->beat, jiffies + sf->beat_period);
}

/*
 * Stop the heartbeat for good and unmap its word; under sdev->lock (the timer never takes
 * it). Cleared first, so that a callback running now does not re-arm after the wait.
 */
void scif_shim_beat_stop_locked(struct scif_shim_file *sf)
{
	WRITE_ONCE(sf->beat_on, false);
	timer_delete_sync(&sf->beat);
	if (sf->beat_io)
		iounmap(sf->beat_io);
	sf->beat_io = NULL;
}

static long scif_shim_ioctl_set_beat(struct scif_shim_file *sf, void __user *uarg)
{
	struct scif_shim_dev *sdev = sf->sdev;
	struct scif_shim_will_write w;
	struct scif_shim_beat req;
	void __iomem *io = NULL;
	long ret = 0;

	if (copy_from_user(&req, uarg, sizeof(req)))
		return -EFAULT;
	if (req.period_ms ? req.period_ms < SCIF_SHIM_BEAT_MIN_MS ||
			    req.period_ms > SCIF_SHIM_BEAT_MAX_MS :
			    req.bar || req.offset)
		return -EINVAL;
	w = (struct scif_shim_will_write){ .bar = req.bar, .offset = req.offset };

	mutex_lock(&sdev->lock);
	if (sdev->dead) {
		ret = -ENODEV;
		goto out;
	}
	if (req.period_ms) {
		if (!scif_shim_will_write_ok(sdev, &w)) {
			ret = -EINVAL;
			goto out;
		}
		io = scif_shim_word_map(sdev, &w);
		if (!io) {
			ret = -ENOMEM;
			goto out;
		}
	}
	scif_shim_beat_stop_locked(sf);
	if (io) {
		/* the first count at once: the word says "beating" from this call on */
		sf->beat_io = io;
		iowrite32(++sf->beat_count, io);
		wmb();
		sf->beat_period = max(1UL, msecs_to_jiffies(req.period_ms));
		WRITE_ONCE(sf->beat_on, true);
		mod_timer(&sf->beat, jiffies + sf->beat_period);
	}
out:
	mutex_unlock(&sdev->lock);
	return ret;
}

/* Last reference to the file gone (close, exit or kill, and every mapping unmapped). */
static int scif_shim_release(struct inode *inode, struct file *filp)
{
	struct scif_shim_file *sf = filp->private_data;
	struct scif_shim_dev *sdev = sf->sdev;

	scif_shim_irq_release_file(sf);
	mutex_lock(&sdev->lock);
	scif_shim_beat_stop_locked(sf);
	scif_shim_will_fire_locked(sf);
	scif_shim_will_clear_locked(sf);
	scif_shim_dma_release_file_locked(sf);
	list_del(&sf->node);
	mutex_unlock(&sdev->lock);
	kfree(sf->irq);
	kfree(sf);
	put_device(&sdev->dev);
	return 0;
}

static long scif_shim_ioctl_info(struct scif_shim_file *sf, void __user *uarg)
{
	struct scif_shim_dev *sdev = sf->sdev;
	struct pci_dev *pdev = sdev->pdev;
	struct scif_shim_info info;
	int i;

	memset(&info, 0, sizeof(info));
	mutex_lock(&sdev->lock);
	if (sdev->dead) {
		mutex_unlock(&sdev->lock);
		return -ENODEV;
	}
	info.abi_version = SCIF_SHIM_ABI_VERSION;
	info.vendor = pdev->vendor;
	info.device = pdev->device;
	info.subsystem_vendor = pdev->subsystem_vendor;
	info.subsystem_device = pdev->subsystem_device;
	info.nr_vectors = sdev->nr_vectors;
	if (sdev->msix)
		info.flags |= SCIF_SHIM_INFO_MSIX;
	/*
	 * ivshmem's IVPosition is only meaningful with interrupts (ivshmem-doorbell, which has
	 * MSI-X); ivshmem-plain reads 0 there, which would look like a real id. Read it live: the
	 * spec allows it to change after a migration.
	 */
	if (sdev->regs && sdev->msix) {
		info.flags |= SCIF_SHIM_INFO_PEER_ID;
		info.peer_id = ioread32(sdev->regs + SCIF_SHIM_IVSHMEM_IVPOSITION);
	}
	info.dma_mask_bits = sdev->dma_mask_bits;
	info.nr_bars = SCIF_SHIM_MAX_BARS;
	for (i = 0; i < SCIF_SHIM_MAX_BARS; i++)
		info.bars[i] = sdev->bars[i].info;
	mutex_unlock(&sdev->lock);

	return copy_to_user(uarg, &info, sizeof(info)) ? -EFAULT : 0;
}

static long scif_shim_ioctl_set_will(struct scif_shim_file *sf, void __user *uarg)
{
	struct scif_shim_dev *sdev = sf->sdev;
	void __iomem *io[SCIF_SHIM_WILL_MAX] = { NULL };
	struct scif_shim_will req;
	unsigned int i;
	long ret = 0;

	if (copy_from_user(&req, uarg, sizeof(req)))
		return -EFAULT;
	if (req.flags || req.nr > SCIF_SHIM_WILL_MAX)
		return -EINVAL;
	for (i = req.nr; i < SCIF_SHIM_WILL_MAX; i++)
		if (req.w[i].bar || req.w[i].value || req.w[i].offset)
			return -EINVAL;

	mutex_lock(&sdev->lock);
	if (sdev->dead) {
		ret = -ENODEV;
		goto out;
	}
	for (i = 0; i < req.nr; i++) {
		if (!scif_shim_will_write_ok(sdev, &req.w[i])) {
			ret = -EINVAL;
			goto out;
		}
		io[i] = scif_shim_word_map(sdev, &req.w[i]);
		if (!io[i]) {
			ret = -ENOMEM;
			goto out;
		}
	}
	scif_shim_will_clear_locked(sf);
	for (i = 0; i < req.nr; i++) {
		sf->will[i] = req.w[i];
		sf->will_io[i] = io[i];
		io[i] = NULL;
	}
	sf->will_nr = req.nr;
out:
	mutex_unlock(&sdev->lock);
	for (i = 0; i < SCIF_SHIM_WILL_MAX; i++)
		if (io[i])
			iounmap(io[i]);
	return ret;
}

static long scif_shim_ioctl(struct file *filp, unsigned int cmd, unsigned long arg)
{
	struct scif_shim_file *sf = filp->private_data;
	void __user *uarg = (void __user *)arg;

	/*
	 * Exact matches only: the size is part of each number, so a caller built against another
	 * layout gets ENOTTY rather than a misread struct.
	 */
	switch (cmd) {
	case SCIF_SHIM_IOC_INFO:
		return scif_shim_ioctl_info(sf, uarg);
	case SCIF_SHIM_IOC_SET_IRQ:
		return scif_shim_ioctl_set_irq(sf, uarg);
	case SCIF_SHIM_IOC_DMA_ALLOC:
		return scif_shim_ioctl_dma_alloc(sf, uarg);
	case SCIF_SHIM_IOC_DMA_FREE:
		return scif_shim_ioctl_dma_free(sf, uarg);
	case SCIF_SHIM_IOC_SET_WILL:
		return scif_shim_ioctl_set_will(sf, uarg);
	case SCIF_SHIM_IOC_SET_BEAT:
		return scif_shim_ioctl_set_beat(sf, uarg);
	default:
		return -ENOTTY;
	}
}

/* Split a mmap offset (in pages) into region number and byte offset inside the region. */
static void scif_shim_pgoff_split(unsigned long pgoff, u64 *region, u64 *offset)
{
	u64 byte = (u64)pgoff << PAGE_SHIFT;

	*region = byte >> SCIF_SHIM_MMAP_SHIFT;
	*offset = byte & ((1ULL << SCIF_SHIM_MMAP_SHIFT) - 1);
}

/*
 * Map lazily: ->mmap only validates and sets the VMA up; PTEs are inserted by the fault handler
 * under sdev->lock, which remove() and DMA_FREE also take before they zap. Inserting PTEs in
 * ->mmap instead would race with them: the VMA becomes visible to unmap_mapping_range() only
 * after ->mmap returns.
 */
static vm_fault_t scif_shim_fault(struct vm_fault *vmf)
{
	struct vm_area_struct *vma = vmf->vma;
	struct scif_shim_file *sf = vma->vm_private_data;
	struct scif_shim_dev *sdev = sf->sdev;
	struct scif_shim_dma_buf *buf = NULL;
	unsigned long addr, end, start_pfn = 0;
	u64 region, offset, limit;
	vm_fault_t ret;

	scif_shim_pgoff_split(vma->vm_pgoff, &region, &offset);
	mutex_lock(&sdev->lock);
	if (sdev->dead) {
		ret = VM_FAULT_SIGBUS;
		goto out;
	}
	if (region < SCIF_SHIM_MAX_BARS) {
		start_pfn = (sdev->bars[region].start + offset) >> PAGE_SHIFT;
		limit = PAGE_ALIGN(sdev->bars[region].info.size);
	} else {
		/* gone if DMA_FREE ran: the owner's mapping of it is dead */
		buf = scif_shim_dma_find_locked(sf, region - SCIF_SHIM_MMAP_DMA_FIRST);
		if (!buf) {
			ret = VM_FAULT_SIGBUS;
			goto out;
		}
		limit = buf->size;
	}

	/*
	 * mmap checked the VMA against the region, but a handle can be freed and handed out again
	 * for a smaller buffer while an old VMA of it lives on: never map past the region's end.
	 */
	addr = vmf->address & PAGE_MASK;
	if (offset > limit || addr - vma->vm_start >= limit - offset) {
		ret = VM_FAULT_SIGBUS;
		goto out;
	}
	end = min(vma->vm_end, addr + SCIF_SHIM_FAULT_AHEAD * PAGE_SIZE);
	end = min_t(u64, end, vma->vm_start + (limit - offset));
	ret = VM_FAULT_NOPAGE;
	for (; addr < end; addr += PAGE_SIZE) {
		unsigned long page = (addr - vma->vm_start) >> PAGE_SHIFT;
		unsigned long pfn;
		vm_fault_t r;

		if (buf)
			pfn = scif_shim_dma_pfn(buf, offset + ((size_t)page << PAGE_SHIFT));
		else
			pfn = start_pfn + page;
		r = vmf_insert_pfn(vma, addr, pfn);
		/* only the faulting page must succeed; the rest is a best-effort read-ahead */
		if (r != VM_FAULT_NOPAGE) {
			if (addr == (vmf->address & PAGE_MASK))
				ret = r;
			break;
		}
	}
out:
	mutex_unlock(&sdev->lock);
	return ret;
}

static const struct vm_operations_struct scif_shim_vm_ops = {
	.fault = scif_shim_fault,
};

static int scif_shim_mmap(struct file *filp, struct vm_area_struct *vma)
{
	struct scif_shim_file *sf = filp->private_data;
	struct scif_shim_dev *sdev = sf->sdev;
	u64 region, offset, len, limit;
	int ret = 0;

	/* A private (copy-on-write) mapping of device memory has no meaning. */
	if (!(vma->vm_flags & VM_SHARED))
		return -EINVAL;
	scif_shim_pgoff_split(vma->vm_pgoff, &region, &offset);
	len = vma->vm_end - vma->vm_start;

	mutex_lock(&sdev->lock);
	if (sdev->dead) {
		ret = -ENODEV;
		goto out;
	}
	if (region < SCIF_SHIM_MAX_BARS) {
		const struct scif_shim_bar *bar = &sdev->bars[region].info;

		if (!(bar->flags & SCIF_SHIM_BAR_MMAP)) {
			ret = -EINVAL;
			goto out;
		}
		/* a sub-page BAR is mappable as its whole page (the rest is reserved by us) */
		limit = PAGE_ALIGN(bar->size);
		if (bar->flags & SCIF_SHIM_BAR_PREFETCH)
			vma->vm_page_prot = pgprot_writecombine(vma->vm_page_prot);
		else
			vma->vm_page_prot = pgprot_noncached(vma->vm_page_prot);
	} else if (region >= SCIF_SHIM_MMAP_DMA_FIRST &&
		   region - SCIF_SHIM_MMAP_DMA_FIRST < SCIF_SHIM_MAX_DMA_HANDLES) {
		const struct scif_shim_dma_buf *buf;

		buf = scif_shim_dma_find_locked(sf, region - SCIF_SHIM_MMAP_DMA_FIRST);
		if (!buf) {
			ret = -EINVAL;
			goto out;
		}
		limit = buf->size;	/* cached: coherent DMA memory is ordinary RAM */
	} else {
		ret = -EINVAL;
		goto out;
	}
	if (offset > limit || len > limit - offset) {
		ret = -EINVAL;
		goto out;
	}
	if (region < SCIF_SHIM_MAX_BARS) {
		const struct scif_shim_bar *bar = &sdev->bars[region].info;

		/* keep clear of the MSI-X table and PBA pages */
		if (bar->excl_size && offset < bar->excl_offset + bar->excl_size &&
		    bar->excl_offset < offset + len) {
			ret = -EINVAL;
			goto out;
		}
	}

	/* PFN map of memory we own: no struct page refcounting, no core dumps, no mremap growth */
	scif_shim_vm_flags_set(vma, VM_IO | VM_PFNMAP | VM_DONTEXPAND | VM_DONTDUMP);
	vma->vm_ops = &scif_shim_vm_ops;
	vma->vm_private_data = sf;
out:
	mutex_unlock(&sdev->lock);
	return ret;
}

const struct file_operations scif_shim_fops = {
	.owner = THIS_MODULE,
	.open = scif_shim_open,
	.release = scif_shim_release,
	.unlocked_ioctl = scif_shim_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
	.mmap = scif_shim_mmap,
	.llseek = noop_llseek,
};
