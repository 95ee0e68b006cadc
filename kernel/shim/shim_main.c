// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * scif_shim module entry: PCI driver registration, probe/remove of a device, its character
 * device and sysfs attributes. No SCIF protocol here: the shim only hands hardware to user space.
 */
#include <linux/fs.h>
#include <linux/fs_context.h>
#include <linux/io.h>
#include <linux/module.h>
#include <linux/mount.h>
#include <linux/pseudo_fs.h>
#include <linux/slab.h>
#include <linux/dma-mapping.h>

#include "shim.h"
#include "compat.h"

#define SCIF_SHIM_NAME		"scif_shim"
#define SCIF_SHIM_MAX_MINORS	256
#define SCIF_SHIM_FS_MAGIC	0x53434946	/* "SCIF" */

unsigned int scif_shim_max_dma_mb = 256;
module_param_named(max_dma_mb, scif_shim_max_dma_mb, uint, 0644);
MODULE_PARM_DESC(max_dma_mb, "DMA memory one open file may allocate, in MiB (default 256)");

static dev_t scif_shim_devt;
/*
 * Device structs not yet released. At module exit every device is removed and no file is open
 * (files pin the module), so anything left here is a leaked reference: exit warns about it.
 */
static atomic_t scif_shim_live_devs = ATOMIC_INIT(0);
static DEFINE_IDA(scif_shim_minors);
static struct vfsmount *scif_shim_mnt;

/*
 * The pseudo filesystem only exists to hand out anonymous inodes (one per device, see
 * scif_shim_dev.inode). It has no .owner on purpose: a mount of a type owned by this module would
 * pin the module and make rmmod impossible; instead the mount lives from init to exit, and every
 * inode on it is gone before exit because devices outlive no open file and files pin the module.
 */
static int scif_shim_fs_init_fs_context(struct fs_context *fc)
{
	return init_pseudo(fc, SCIF_SHIM_FS_MAGIC) ? 0 : -ENOMEM;
}

static struct file_system_type scif_shim_fs_type = {
	.name = SCIF_SHIM_NAME,
	.init_fs_context = scif_shim_fs_init_fs_context,
	.kill_sb = kill_anon_super,
};

/* ---- sysfs attributes of /sys/class/scif_shim/scif_shimN ---- */

static struct scif_shim_dev *to_sdev(struct device *dev)
{
	return container_of(dev, struct scif_shim_dev, dev);
}

static ssize_t peer_id_show(struct device *dev, struct device_attribute *attr, char *buf)
{
	struct scif_shim_dev *sdev = to_sdev(dev);
	ssize_t ret = -ENODEV;

	/* same rule as the info ioctl: only ivshmem-doorbell (with MSI-X) has a real id */
	mutex_lock(&sdev->lock);
	if (!sdev->dead && sdev->regs && sdev->msix)
		ret = sysfs_emit(buf, "%u\n", ioread32(sdev->regs + SCIF_SHIM_IVSHMEM_IVPOSITION));
	else if (!sdev->dead)
		ret = sysfs_emit(buf, "none\n");
	mutex_unlock(&sdev->lock);
	return ret;
}
static DEVICE_ATTR_RO(peer_id);

static ssize_t vectors_show(struct device *dev, struct device_attribute *attr, char *buf)
{
	return sysfs_emit(buf, "%u\n", to_sdev(dev)->nr_vectors);
}
static DEVICE_ATTR_RO(vectors);

/* One count per vector on one line: lets a test see whether an interrupt reached the driver. */
static ssize_t irq_counts_show(struct device *dev, struct device_attribute *attr, char *buf)
{
	struct scif_shim_dev *sdev = to_sdev(dev);
	unsigned int i;
	int len = 0;

	for (i = 0; i < sdev->nr_vectors; i++)
		len += sysfs_emit_at(buf, len, "%s%lld", i ? " " : "",
				     (long long)atomic64_read(&sdev->vectors[i].count));
	len += sysfs_emit_at(buf, len, "\n");
	return len;
}
static DEVICE_ATTR_RO(irq_counts);

static ssize_t open_files_show(struct device *dev, struct device_attribute *attr, char *buf)
{
	struct scif_shim_dev *sdev = to_sdev(dev);
	struct list_head *pos;
	unsigned int n = 0;

	mutex_lock(&sdev->lock);
	list_for_each(pos, &sdev->files)
		n++;
	mutex_unlock(&sdev->lock);
	return sysfs_emit(buf, "%u\n", n);
}
static DEVICE_ATTR_RO(open_files);

static ssize_t dma_bytes_show(struct device *dev, struct device_attribute *attr, char *buf)
{
	struct scif_shim_dev *sdev = to_sdev(dev);
	u64 v;

	mutex_lock(&sdev->lock);
	v = sdev->dma_bytes;
	mutex_unlock(&sdev->lock);
	return sysfs_emit(buf, "%llu\n", (unsigned long long)v);
}
static DEVICE_ATTR_RO(dma_bytes);

/* Eventfds attached over all vectors and files: lets tests prove that exit and kill drop them. */
static ssize_t irq_bindings_show(struct device *dev, struct device_attribute *attr, char *buf)
{
	struct scif_shim_dev *sdev = to_sdev(dev);
	struct list_head *pos;
	unsigned int i, n = 0;

	for (i = 0; i < sdev->nr_vectors; i++) {
		spin_lock_irq(&sdev->vectors[i].lock);
		list_for_each(pos, &sdev->vectors[i].bindings)
			n++;
		spin_unlock_irq(&sdev->vectors[i].lock);
	}
	return sysfs_emit(buf, "%u\n", n);
}
static DEVICE_ATTR_RO(irq_bindings);

static struct attribute *scif_shim_attrs[] = {
	&dev_attr_irq_bindings.attr,
	&dev_attr_peer_id.attr,
	&dev_attr_vectors.attr,
	&dev_attr_irq_counts.attr,
	&dev_attr_open_files.attr,
	&dev_attr_dma_bytes.attr,
	NULL,
};
ATTRIBUTE_GROUPS(scif_shim);

static struct class scif_shim_class = {
	.name = SCIF_SHIM_NAME,
	.dev_groups = scif_shim_groups,
};

/* ---- device lifetime ---- */

/* Last reference to the class device gone: no file is open and remove() has run. */
static void scif_shim_dev_release(struct device *dev)
{
	struct scif_shim_dev *sdev = to_sdev(dev);

	WARN_ON(!list_empty(&sdev->files));
	WARN_ON(!idr_is_empty(&sdev->dma_idr));
	idr_destroy(&sdev->dma_idr);
	if (sdev->inode)
		iput(sdev->inode);
	kfree(sdev->vectors);
	pci_dev_put(sdev->pdev);
	kfree(sdev);
	atomic_dec(&scif_shim_live_devs);
}

/*
 * Widen BAR @bar's excluded page range to cover the MSI-X structure at @reg (table or PBA
 * offset/BIR register) of @len bytes, if it lives in that BAR. The kernel programs the MSI-X
 * table; a process that could write it could aim interrupts (bus writes) anywhere.
 */
static void scif_shim_bar_exclude(struct scif_shim_dev *sdev, int bar, int reg, u64 len)
{
	struct scif_shim_bar *info = &sdev->bars[bar].info;
	u64 lo, hi, elo, ehi;
	u32 v;

	pci_read_config_dword(sdev->pdev, sdev->pdev->msix_cap + reg, &v);
	if ((v & PCI_MSIX_TABLE_BIR) != bar)
		return;
	lo = round_down((u64)(v & PCI_MSIX_TABLE_OFFSET), PAGE_SIZE);
	hi = round_up((u64)(v & PCI_MSIX_TABLE_OFFSET) + len, PAGE_SIZE);
	hi = min_t(u64, hi, PAGE_ALIGN(info->size));
	if (lo >= hi)
		return;
	elo = info->excl_size ? min(info->excl_offset, lo) : lo;
	ehi = info->excl_size ? max(info->excl_offset + info->excl_size, hi) : hi;
	info->excl_offset = elo;
	info->excl_size = ehi - elo;
}

/*
 * Describe BAR @i and decide whether user space may map it. A BAR smaller than a page can only be
 * mapped by mapping its whole page; that is safe only when the BAR starts the page and nothing
 * else lives in the rest of it, which we guarantee by claiming the rest in the resource tree.
 */
static void scif_shim_bar_probe(struct scif_shim_dev *sdev, int i)
{
	struct scif_shim_bar_state *b = &sdev->bars[i];
	struct pci_dev *pdev = sdev->pdev;
	struct resource *res = &pdev->resource[i];
	unsigned long flags = pci_resource_flags(pdev, i);
	resource_size_t len = pci_resource_len(pdev, i);

	b->info.mmap_offset = SCIF_SHIM_MMAP_OFFSET(i);
	if (!len || !(flags & (IORESOURCE_MEM | IORESOURCE_IO)))
		return;
	b->start = pci_resource_start(pdev, i);
	b->info.size = len;
	b->info.flags = SCIF_SHIM_BAR_PRESENT;
	if (!(flags & IORESOURCE_MEM))
		return;		/* port I/O cannot be mapped into user space */
	b->info.flags |= SCIF_SHIM_BAR_MEM;
	if (flags & IORESOURCE_MEM_64)
		b->info.flags |= SCIF_SHIM_BAR_MEM64;
	if (flags & IORESOURCE_PREFETCH)
		b->info.flags |= SCIF_SHIM_BAR_PREFETCH;

	if (pdev->msix_cap) {
		u16 ctrl;

		pci_read_config_word(pdev, pdev->msix_cap + PCI_MSIX_FLAGS, &ctrl);
		scif_shim_bar_exclude(sdev, i, PCI_MSIX_TABLE,
				      ((ctrl & PCI_MSIX_FLAGS_QSIZE) + 1) * PCI_MSIX_ENTRY_SIZE);
		scif_shim_bar_exclude(sdev, i, PCI_MSIX_PBA,
				      DIV_ROUND_UP((ctrl & PCI_MSIX_FLAGS_QSIZE) + 1, 64) * 8);
		if (b->info.excl_size >= PAGE_ALIGN(len))
			return;	/* nothing but MSI-X in it (ivshmem's BAR1) */
	}

	if (len < PAGE_SIZE) {
		if (!PAGE_ALIGNED(b->start) || !res->parent)
			return;
		b->pad_res.name = SCIF_SHIM_NAME " page pad";
		b->pad_res.start = b->start + len;
		b->pad_res.end = b->start + PAGE_SIZE - 1;
		b->pad_res.flags = res->flags;
		if (request_resource(res->parent, &b->pad_res))
			return;
		b->pad_held = true;
	}
	/*
	 * On x86 a PFN inserted at fault time gets the cache mode of the range's PAT reservation
	 * (UC- when there is none), not the one asked for in vm_page_prot; reserve WC up front so
	 * prefetchable BARs really map write-combining. Failure only costs speed: they map UC-.
	 */
	if ((flags & IORESOURCE_PREFETCH) &&
	    !arch_io_reserve_memtype_wc(b->start, PAGE_ALIGN(len)))
		b->wc_reserved = true;
	b->info.flags |= SCIF_SHIM_BAR_MMAP;
}

static void scif_shim_bars_release(struct scif_shim_dev *sdev)
{
	int i;

	for (i = 0; i < SCIF_SHIM_MAX_BARS; i++) {
		struct scif_shim_bar_state *b = &sdev->bars[i];

		if (b->wc_reserved)
			arch_io_free_memtype_wc(b->start, PAGE_ALIGN(b->info.size));
		if (b->pad_held)
			release_resource(&b->pad_res);
		b->wc_reserved = false;
		b->pad_held = false;
	}
}

/*
 * What the driver knows about a device beyond its BARs, from its ids. Not from the id table's
 * driver_data: new_id only accepts driver_data values the table already has, so every entry must
 * carry 0 for "new_id VENDOR DEVICE" to work.
 */
static unsigned long scif_shim_quirks(const struct pci_dev *pdev)
{
	if (pdev->vendor == PCI_VENDOR_ID_REDHAT_QUMRANET && pdev->device == 0x1110)
		return SCIF_SHIM_QUIRK_IVSHMEM;
	return 0;
}

static int scif_shim_probe(struct pci_dev *pdev, const struct pci_device_id *id)
{
	struct scif_shim_dev *sdev;
	int i, ret;

	sdev = kzalloc(sizeof(*sdev), GFP_KERNEL);
	if (!sdev)
		return -ENOMEM;
	atomic_inc(&scif_shim_live_devs);
	mutex_init(&sdev->lock);
	INIT_LIST_HEAD(&sdev->files);
	idr_init(&sdev->dma_idr);
	sdev->pdev = pci_dev_get(pdev);
	sdev->quirks = scif_shim_quirks(pdev);

	/* From here on, the class device's release frees sdev. */
	device_initialize(&sdev->dev);
	sdev->dev.class = &scif_shim_class;
	sdev->dev.parent = &pdev->dev;
	sdev->dev.release = scif_shim_dev_release;

	ret = ida_alloc_max(&scif_shim_minors, SCIF_SHIM_MAX_MINORS - 1, GFP_KERNEL);
	if (ret < 0)
		goto err_put;
	sdev->minor = ret;
	sdev->dev.devt = MKDEV(MAJOR(scif_shim_devt), sdev->minor);
	ret = dev_set_name(&sdev->dev, SCIF_SHIM_NAME "%d", sdev->minor);
	if (ret)
		goto err_minor;

	sdev->inode = alloc_anon_inode(scif_shim_mnt->mnt_sb);
	if (IS_ERR(sdev->inode)) {
		ret = PTR_ERR(sdev->inode);
		sdev->inode = NULL;
		goto err_minor;
	}

	ret = pci_enable_device_mem(pdev);
	if (ret)
		goto err_minor;
	ret = pci_request_regions(pdev, SCIF_SHIM_NAME);
	if (ret)
		goto err_disable;
	pci_set_master(pdev);

	/* Prefer 64-bit bus addresses; the info ioctl tells user space which width it got. */
	sdev->dma_mask_bits = 64;
	if (dma_set_mask_and_coherent(&pdev->dev, DMA_BIT_MASK(64))) {
		sdev->dma_mask_bits = 32;
		ret = dma_set_mask_and_coherent(&pdev->dev, DMA_BIT_MASK(32));
		if (ret)
			goto err_regions;
	}

	for (i = 0; i < SCIF_SHIM_MAX_BARS; i++)
		scif_shim_bar_probe(sdev, i);

	if ((sdev->quirks & SCIF_SHIM_QUIRK_IVSHMEM) &&
	    pci_resource_len(pdev, 0) >= SCIF_SHIM_IVSHMEM_DOORBELL + 4) {
		sdev->regs = pci_iomap(pdev, 0, 0);
		if (!sdev->regs) {
			ret = -ENOMEM;
			goto err_bars;
		}
	}

	ret = scif_shim_irq_setup(sdev);
	if (ret)
		goto err_iomap;

	cdev_init(&sdev->cdev, &scif_shim_fops);
	sdev->cdev.owner = THIS_MODULE;
	ret = cdev_device_add(&sdev->cdev, &sdev->dev);
	if (ret)
		goto err_irq;

	pci_set_drvdata(pdev, sdev);
	dev_info(&pdev->dev, "%s: %u %s vector(s), %u-bit DMA\n", dev_name(&sdev->dev),
		 sdev->nr_vectors, sdev->msix ? "MSI-X" : "MSI", sdev->dma_mask_bits);
	return 0;

err_irq:
	scif_shim_irq_teardown(sdev);
err_iomap:
	if (sdev->regs)
		pci_iounmap(pdev, sdev->regs);
	sdev->regs = NULL;
err_bars:
	scif_shim_bars_release(sdev);
err_regions:
	pci_clear_master(pdev);
	pci_release_regions(pdev);
err_disable:
	pci_disable_device(pdev);
err_minor:
	ida_free(&scif_shim_minors, sdev->minor);
err_put:
	put_device(&sdev->dev);
	return ret;
}

/*
 * Unbind (sysfs unbind, rmmod, hot removal). Files may still be open and mapped: take the
 * hardware away from them in an order that leaves no window where user space can reach it.
 */
static void scif_shim_remove(struct pci_dev *pdev)
{
	struct scif_shim_dev *sdev = pci_get_drvdata(pdev);
	struct scif_shim_file *sf;

	/* No new opens, no sysfs readers once this returns. */
	cdev_device_del(&sdev->cdev, &sdev->dev);

	/* Every ioctl and fault checks this under the lock: nothing new gets mapped after it. */
	mutex_lock(&sdev->lock);
	sdev->dead = true;
	mutex_unlock(&sdev->lock);

	/*
	 * Zap every PTE of every mapping of this device. PTEs are only inserted by the fault
	 * handler under sdev->lock while !dead, so after this no user mapping reaches a BAR or DMA
	 * buffer; later touches fault and get SIGBUS.
	 */
	unmap_mapping_range(sdev->inode->i_mapping, 0, 0, 1);

	/* free_irq() waits for running handlers; eventfds stay attached until their file closes. */
	scif_shim_irq_teardown(sdev);

	/* The device can no longer be reached from user space: give its DMA memory back now. */
	mutex_lock(&sdev->lock);
	list_for_each_entry(sf, &sdev->files, node) {
		scif_shim_beat_stop_locked(sf);	/* no timer writes a BAR given back below */
		scif_shim_dma_release_file_locked(sf);
	}
	mutex_unlock(&sdev->lock);

	if (sdev->regs)
		pci_iounmap(pdev, sdev->regs);
	sdev->regs = NULL;
	scif_shim_bars_release(sdev);
	pci_clear_master(pdev);
	pci_release_regions(pdev);
	pci_disable_device(pdev);
	pci_set_drvdata(pdev, NULL);
	ida_free(&scif_shim_minors, sdev->minor);
	dev_info(&pdev->dev, "%s: removed\n", dev_name(&sdev->dev));
	/* Freed now, or by the release of the last open file. */
	put_device(&sdev->dev);
}

static const struct pci_device_id scif_shim_ids[] = {
	{ PCI_DEVICE(PCI_VENDOR_ID_REDHAT_QUMRANET, 0x1110) },	/* QEMU ivshmem */
	{ }
};
MODULE_DEVICE_TABLE(pci, scif_shim_ids);

static struct pci_driver scif_shim_driver = {
	.name = SCIF_SHIM_NAME,
	.id_table = scif_shim_ids,
	.probe = scif_shim_probe,
	.remove = scif_shim_remove,
};

static int __init scif_shim_init(void)
{
	int ret;

	/* The uapi layout must not depend on the ABI (32/64-bit) of the caller. */
	BUILD_BUG_ON(sizeof(struct scif_shim_bar) != 40);
	BUILD_BUG_ON(sizeof(struct scif_shim_info) != 304);
	BUILD_BUG_ON(sizeof(struct scif_shim_irq) != 16);
	BUILD_BUG_ON(sizeof(struct scif_shim_dma_alloc) != 32);
	BUILD_BUG_ON(sizeof(struct scif_shim_dma_free) != 8);
	BUILD_BUG_ON(sizeof(struct scif_shim_will_write) != 16);
	BUILD_BUG_ON(sizeof(struct scif_shim_will) != 40);
	BUILD_BUG_ON(sizeof(struct scif_shim_beat) != 16);
	BUILD_BUG_ON(SCIF_SHIM_MMAP_DMA_FIRST + SCIF_SHIM_MAX_DMA_HANDLES >
		     (1ULL << (64 - SCIF_SHIM_MMAP_SHIFT)));

	scif_shim_mnt = kern_mount(&scif_shim_fs_type);
	if (IS_ERR(scif_shim_mnt))
		return PTR_ERR(scif_shim_mnt);
	ret = alloc_chrdev_region(&scif_shim_devt, 0, SCIF_SHIM_MAX_MINORS, SCIF_SHIM_NAME);
	if (ret)
		goto err_mnt;
	ret = class_register(&scif_shim_class);
	if (ret)
		goto err_chrdev;
	ret = pci_register_driver(&scif_shim_driver);
	if (ret)
		goto err_class;
	return 0;

err_class:
	class_unregister(&scif_shim_class);
err_chrdev:
	unregister_chrdev_region(scif_shim_devt, SCIF_SHIM_MAX_MINORS);
err_mnt:
	kern_unmount(scif_shim_mnt);
	return ret;
}

static void __exit scif_shim_exit(void)
{
	pci_unregister_driver(&scif_shim_driver);
	WARN(atomic_read(&scif_shim_live_devs), "scif_shim: %d device(s) leaked\n",
	     atomic_read(&scif_shim_live_devs));
	class_unregister(&scif_shim_class);
	unregister_chrdev_region(scif_shim_devt, SCIF_SHIM_MAX_MINORS);
	kern_unmount(scif_shim_mnt);
	ida_destroy(&scif_shim_minors);
}

module_init(scif_shim_init);
module_exit(scif_shim_exit);

MODULE_DESCRIPTION("SCIF shim: PCIe BARs, MSI-X and DMA memory for user-space SCIF");
MODULE_LICENSE("GPL");
