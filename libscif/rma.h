/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * rma.h - registration, RMA, fences and remote mapping (rma.c, mmap.c). Each returns 0 / a
 * value, or -errno; argument checks that precede the state check live in api.c.
 */
#ifndef SCIF_RMA_H
#define SCIF_RMA_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct scif_endpt;

off_t scif__rma_register(struct scif_endpt *ep, void *addr, size_t len, off_t offset, int prot,
			 int map_flags);
int scif__rma_unregister(struct scif_endpt *ep, off_t offset, size_t len);
int scif__rma_copy(struct scif_endpt *ep, off_t loffset, void *vaddr, int is_v, size_t len,
		   off_t roffset, int flags, int write);
/*
 * The common case of scif__rma_copy, straight from the descriptor, with no reference and no
 * lock: an endpoint in the table, connected, nothing asynchronous in flight, each end inside
 * one window. 0 when done; 1 when scif__rma_copy must do it (it also finds every error).
 */
int scif__rma_copy_light(int fd, off_t loffset, void *vaddr, int is_v, size_t len,
			 off_t roffset, int flags, int write);
int scif__fence_mark(struct scif_endpt *ep, int flags, int *mark);
int scif__fence_wait(struct scif_endpt *ep, int mark);
int scif__fence_signal(struct scif_endpt *ep, off_t loff, uint64_t lval, off_t roff,
		       uint64_t rval, int flags);
void *scif__rma_mmap(void *addr, size_t len, int prot, int flags, struct scif_endpt *ep,
		     off_t offset, int *err);
int scif__rma_munmap(void *addr, size_t len);

#endif /* SCIF_RMA_H */
