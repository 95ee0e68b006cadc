/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The only place where scif_shim looks at the kernel version: thin wrappers over the kernel
 * interfaces that changed between 6.1 (Debian 12) and current kernels.
 */
#ifndef SCIF_SHIM_COMPAT_H
#define SCIF_SHIM_COMPAT_H

#include <linux/version.h>
#include <linux/eventfd.h>
#include <linux/mm.h>
#include <linux/timer.h>

/*
 * eventfd_signal() lost its count argument in 6.8 (every caller passed 1).
 */
static inline void scif_shim_eventfd_signal(struct eventfd_ctx *ctx)
{
#if LINUX_VERSION_CODE < KERNEL_VERSION(6, 8, 0)
	eventfd_signal(ctx, 1);
#else
	eventfd_signal(ctx);
#endif
}

/*
 * vma->vm_flags became read-only in 6.3; writers must go through vm_flags_set(), which takes
 * care of the per-VMA lock. Before 6.3 the field is written directly (we hold mmap_lock for
 * writing in ->mmap either way).
 */
static inline void scif_shim_vm_flags_set(struct vm_area_struct *vma, vm_flags_t flags)
{
#if LINUX_VERSION_CODE < KERNEL_VERSION(6, 3, 0)
	vma->vm_flags |= flags;
#else
	vm_flags_set(vma, flags);
#endif
}

/* from_timer() became timer_container_of() in 6.16. */
#if LINUX_VERSION_CODE < KERNEL_VERSION(6, 16, 0)
#define scif_shim_timer_container_of(var, t, field) from_timer(var, t, field)
#else
#define scif_shim_timer_container_of(var, t, field) timer_container_of(var, t, field)
#endif

#endif /* SCIF_SHIM_COMPAT_H */
