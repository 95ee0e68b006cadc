// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * Coherent DMA buffers of scif_shim: allocated per open file, mapped into user space by the
 * fault handler, freed on request, on last close, or when the device goes away.
 */
#include <linux/dma-map-ops.h>
#include <linux/dma-mapping.h>
#include <linux/mm.h>
#include <linux/overflow.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include <linux/vmalloc.h>

#include "shim.h"

static u64 scif_shim_dma_offset(const struct scif_shim_dma_buf *buf)
{
	return SCIF_SHIM_MMAP_OFFSET(SCIF_SHIM_MMAP_DMA_FIRST + (u64)buf->handle);
}

/*
 * PFN of the page at @offset in @buf. dma_alloc_coherent() returns direct-map memory without an
 * IOMMU, but a vmap()ed range of scattered pages with one (dma-iommu remapping), so look the page
 * up the way the address was made. Assumes a cache-coherent platform, as the user mapping is
 * cached (the shim refuses DMA buffers on devices that are not coherent).
 */
unsigned long scif_shim_dma_pfn(const struct scif_shim_dma_buf *buf, size_t offset)
{
	void *p = buf->cpu_addr + offset;

	if (is_vmalloc_addr(p))
		return vmalloc_to_pfn(p);
	return virt_to_phys(p) >> PAGE_SHIFT;
}

/* The buffer behind @handle if @sf owns it; sdev->lock held. */
struct scif_shim_dma_buf *scif_shim_dma_find_locked(struct scif_shim_file *sf, u32 handle)
{
	struct scif_shim_dma_buf *buf = idr_find(&sf->sdev->dma_idr, handle);

	return buf && buf->owner == sf ? buf : NULL;
}

/* Unlink @buf from every index and the budgets; sdev->lock held. */
static void scif_shim_dma_unlink_locked(struct scif_shim_dma_buf *buf)
{
	struct scif_shim_file *sf = buf->owner;

	idr_remove(&sf->sdev->dma_idr, buf->handle);
	list_del(&buf->node);
	sf->dma_bytes -= buf->size;
	sf->sdev->dma_bytes -= buf->size;
}

static void scif_shim_dma_free_mem(struct scif_shim_dev *sdev, struct scif_shim_dma_buf *buf)
{
	dma_free_coherent(&sdev->pdev->dev, buf->size, buf->cpu_addr, buf->bus_addr);
	kfree(buf);
}

long scif_shim_ioctl_dma_alloc(struct scif_shim_file *sf, void __user *uarg)
{
	struct scif_shim_dev *sdev = sf->sdev;
	struct scif_shim_dma_alloc req;
	struct scif_shim_dma_buf *buf;
	u64 size, total, budget;
	long ret;
	int id;

	if (copy_from_user(&req, uarg, sizeof(req)))
		return -EFAULT;
	if (req.flags || !req.size)
		return -EINVAL;
	/* Round up to whole pages without wrapping, and the result must fit a size_t. */
	if (check_add_overflow(req.size, (u64)PAGE_SIZE - 1, &size))
		return -EINVAL;
	size &= ~((u64)PAGE_SIZE - 1);
	if (size > SIZE_MAX)
		return -EINVAL;
	budget = (u64)scif_shim_max_dma_mb << 20;

	buf = kzalloc(sizeof(*buf), GFP_KERNEL);
	if (!buf)
		return -ENOMEM;

	mutex_lock(&sdev->lock);
	if (sdev->dead) {
		ret = -ENODEV;
		goto err_unlock;
	}
	if (!dev_is_dma_coherent(&sdev->pdev->dev)) {
		ret = -EOPNOTSUPP;
		goto err_unlock;
	}
	if (check_add_overflow(sf->dma_bytes, size, &total) || total > budget) {
		ret = -ENOMEM;
		goto err_unlock;
	}
	/* cyclic: a freed handle (and mmap offset) is not handed out again soon */
	id = idr_alloc_cyclic(&sdev->dma_idr, buf, 0, SCIF_SHIM_MAX_DMA_HANDLES, GFP_KERNEL);
	if (id < 0) {
		ret = id == -ENOSPC ? -ENOMEM : id;
		goto err_unlock;
	}
	buf->handle = id;
	buf->size = size;
	buf->owner = sf;
	/*
	 * Zeroed by the allocator: no stale kernel data reaches user space. NOWARN: a size the
	 * allocator cannot serve is the caller's problem (ENOMEM), not worth a kernel backtrace.
	 */
	buf->cpu_addr = dma_alloc_coherent(&sdev->pdev->dev, size, &buf->bus_addr,
					   GFP_KERNEL | __GFP_NOWARN);
	if (!buf->cpu_addr) {
		idr_remove(&sdev->dma_idr, id);
		ret = -ENOMEM;
		goto err_unlock;
	}
	list_add_tail(&buf->node, &sf->dma_bufs);
	sf->dma_bytes += size;
	sdev->dma_bytes += size;

	req.size = size;
	req.handle = buf->handle;
	req.bus_addr = buf->bus_addr;
	req.mmap_offset = scif_shim_dma_offset(buf);
	mutex_unlock(&sdev->lock);

	if (copy_to_user(uarg, &req, sizeof(req))) {
		/* The caller cannot learn the handle: do not leave the buffer behind. */
		mutex_lock(&sdev->lock);
		if (scif_shim_dma_find_locked(sf, req.handle) == buf) {
			scif_shim_dma_unlink_locked(buf);
			mutex_unlock(&sdev->lock);
			/* Nobody can have mapped it: the offset was never returned. */
			scif_shim_dma_free_mem(sdev, buf);
		} else {
			mutex_unlock(&sdev->lock);	/* remove() freed it meanwhile */
		}
		return -EFAULT;
	}
	return 0;

err_unlock:
	mutex_unlock(&sdev->lock);
	kfree(buf);
	return ret;
}

long scif_shim_ioctl_dma_free(struct scif_shim_file *sf, void __user *uarg)
{
	struct scif_shim_dev *sdev = sf->sdev;
	struct scif_shim_dma_free req;
	struct scif_shim_dma_buf *buf;

	if (copy_from_user(&req, uarg, sizeof(req)))
		return -EFAULT;
	if (req.flags)
		return -EINVAL;

	mutex_lock(&sdev->lock);
	if (sdev->dead) {
		mutex_unlock(&sdev->lock);
		return -ENODEV;
	}
	buf = scif_shim_dma_find_locked(sf, req.handle);
	if (!buf) {
		mutex_unlock(&sdev->lock);
		return -ENOENT;
	}
	scif_shim_dma_unlink_locked(buf);
	mutex_unlock(&sdev->lock);

	/*
	 * Faults insert PTEs only under sdev->lock for buffers still in the idr, so once it is
	 * unlinked, zapping its offset range removes every user mapping for good (later touches get
	 * SIGBUS) and the memory can go back to the allocator.
	 */
	unmap_mapping_range(sdev->inode->i_mapping, scif_shim_dma_offset(buf), buf->size, 1);
	scif_shim_dma_free_mem(sdev, buf);
	return 0;
}

/*
 * Free every buffer of @sf; sdev->lock held. Callers guarantee no user mapping can reach them:
 * either the file is being released (mappings pin the file, so there are none), or remove() has
 * set dead and zapped everything.
 */
void scif_shim_dma_release_file_locked(struct scif_shim_file *sf)
{
	struct scif_shim_dma_buf *buf, *tmp;

	list_for_each_entry_safe(buf, tmp, &sf->dma_bufs, node) {
		scif_shim_dma_unlink_locked(buf);
		scif_shim_dma_free_mem(sf->sdev, buf);
	}
}
