// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * Interrupts of scif_shim: enable the device's MSI-X (or MSI) vectors and fan each one out to
 * the eventfds that open files attached to it. The handler does nothing else: no device ack.
 */
#include <linux/eventfd.h>
#include <linux/interrupt.h>
#include <linux/slab.h>
#include <linux/uaccess.h>

#include "shim.h"
#include "compat.h"

/*
 * Hard-irq handler. Every binding gets one eventfd increment; counting is the consumer's job
 * (eventfds add up, and back-to-back interrupts may coalesce in the device anyway).
 */
static irqreturn_t scif_shim_irq_handler(int irq, void *arg)
{
	struct scif_shim_vector *vec = arg;
	struct scif_shim_irq_binding *b;

	atomic64_inc(&vec->count);
	spin_lock(&vec->lock);
	list_for_each_entry(b, &vec->bindings, node)
		scif_shim_eventfd_signal(b->ctx);
	spin_unlock(&vec->lock);
	return IRQ_HANDLED;
}

/*
 * Enable every vector the device has (up to SCIF_SHIM_MAX_VECTORS) at probe, not on first use,
 * so that no interrupt is dropped because a process attached late: an unbound vector still
 * counts, and eventfds attached later only miss what happened before they existed.
 * A device with neither MSI-X nor MSI gets no vectors: INTx is shared and level-triggered, and
 * only a device-specific driver knows how to silence it.
 */
int scif_shim_irq_setup(struct scif_shim_dev *sdev)
{
	struct pci_dev *pdev = sdev->pdev;
	unsigned int i;
	int n, ret;

	n = pci_msix_vec_count(pdev);
	if (n <= 0)
		n = pci_msi_vec_count(pdev);
	if (n <= 0)
		return 0;
	n = min(n, SCIF_SHIM_MAX_VECTORS);

	n = pci_alloc_irq_vectors(pdev, 1, n, PCI_IRQ_MSIX | PCI_IRQ_MSI);
	if (n < 0)
		return n;
	sdev->msix = pdev->msix_enabled;
	sdev->vectors = kcalloc(n, sizeof(*sdev->vectors), GFP_KERNEL);
	if (!sdev->vectors) {
		pci_free_irq_vectors(pdev);
		return -ENOMEM;
	}
	sdev->nr_vectors = n;

	for (i = 0; i < sdev->nr_vectors; i++) {
		struct scif_shim_vector *vec = &sdev->vectors[i];

		spin_lock_init(&vec->lock);
		INIT_LIST_HEAD(&vec->bindings);
		atomic64_set(&vec->count, 0);
		snprintf(vec->name, sizeof(vec->name), "scif_shim%d-%u", sdev->minor, i);
		vec->irq = pci_irq_vector(pdev, i);
		ret = request_irq(vec->irq, scif_shim_irq_handler, 0, vec->name, vec);
		if (ret)
			goto err;
		vec->requested = true;
	}
	return 0;

err:
	scif_shim_irq_teardown(sdev);
	return ret;
}

/*
 * Free the irqs and disable MSI-X. The vector array (and any bindings on it) stays until the
 * device struct is released, because open files may still detach from it.
 */
void scif_shim_irq_teardown(struct scif_shim_dev *sdev)
{
	unsigned int i;

	if (!sdev->vectors)
		return;
	for (i = 0; i < sdev->nr_vectors; i++) {
		if (sdev->vectors[i].requested)
			free_irq(sdev->vectors[i].irq, &sdev->vectors[i]);
		sdev->vectors[i].requested = false;
	}
	pci_free_irq_vectors(sdev->pdev);
}

/*
 * Swap @sf's binding on @vector for @nb (NULL detaches); returns the old one for the caller
 * to drop outside the spinlock.
 */
static struct scif_shim_irq_binding *
scif_shim_irq_swap(struct scif_shim_file *sf, unsigned int vector, struct scif_shim_irq_binding *nb)
{
	struct scif_shim_vector *vec = &sf->sdev->vectors[vector];
	struct scif_shim_irq_binding *old;

	spin_lock_irq(&vec->lock);
	old = sf->irq[vector];
	if (old)
		list_del(&old->node);
	if (nb)
		list_add_tail(&nb->node, &vec->bindings);
	sf->irq[vector] = nb;
	spin_unlock_irq(&vec->lock);
	return old;
}

static void scif_shim_irq_binding_free(struct scif_shim_irq_binding *b)
{
	if (!b)
		return;
	eventfd_ctx_put(b->ctx);
	kfree(b);
}

long scif_shim_ioctl_set_irq(struct scif_shim_file *sf, void __user *uarg)
{
	struct scif_shim_dev *sdev = sf->sdev;
	struct scif_shim_irq_binding *nb = NULL, *old;
	struct scif_shim_irq req;
	long ret;

	if (copy_from_user(&req, uarg, sizeof(req)))
		return -EFAULT;
	if (req.flags || req.pad)
		return -EINVAL;
	if (req.fd < -1)
		return -EBADF;

	if (req.fd != -1) {
		nb = kzalloc(sizeof(*nb), GFP_KERNEL);
		if (!nb)
			return -ENOMEM;
		/* EBADF for a closed fd, EINVAL for an fd that is not an eventfd */
		nb->ctx = eventfd_ctx_fdget(req.fd);
		if (IS_ERR(nb->ctx)) {
			ret = PTR_ERR(nb->ctx);
			kfree(nb);
			return ret;
		}
	}

	mutex_lock(&sdev->lock);
	if (sdev->dead) {
		ret = -ENODEV;
		goto out_unlock;
	}
	if (req.vector >= sdev->nr_vectors) {
		ret = -EINVAL;
		goto out_unlock;
	}
	old = scif_shim_irq_swap(sf, req.vector, nb);
	nb = old;	/* the binding to drop below */
	ret = 0;
out_unlock:
	mutex_unlock(&sdev->lock);
	scif_shim_irq_binding_free(nb);
	return ret;
}

/* Last close of a file: drop its eventfds. Runs after remove() too (the vectors still exist). */
void scif_shim_irq_release_file(struct scif_shim_file *sf)
{
	unsigned int i;

	for (i = 0; i < sf->sdev->nr_vectors; i++)
		scif_shim_irq_binding_free(scif_shim_irq_swap(sf, i, NULL));
}
