// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * mmap.c - scif_mmap()/scif_munmap(): the peer's windows mapped into this process as the same
 * memory (the windows' fabric memory), so loads and stores on either side see each other. The owner
 * is told about each mapping, so an unregistered window keeps its offsets reserved while
 * mapped (spec 3.10).
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "epd.h"
#include "nodeqp.h"
#include "rma.h"

#define PAGE 4096u

/* A live scif_mmap() mapping: what to tell the owner when it goes away. */
struct mapping {
	uintptr_t addr;
	size_t len, unmapped;
	int epfd;
	uint32_t gen;
	uint64_t roff;
	struct mapping *next;
};

static pthread_mutex_t map_lock = PTHREAD_MUTEX_INITIALIZER;
static struct mapping *mappings;

/*
 * Tell the owner of the windows that a mapping of [roff, roff+len) came or went, and wait
 * for its answer: when scif_mmap returns, the owner counts the mapping (its offsets stay
 * reserved past scif_unregister); when scif_munmap returns, it no longer does.
 */
static int map_notify(int epfd, uint32_t gen, uint16_t op, uint64_t roff, size_t len)
{
	struct scif_endpt *ep = scif__epd_get(epfd);
	struct scif_ctl_msg m;
	int ret = -ECONNRESET;

	if (!ep)
		return ret;
	if (ep->gen == gen && scif__epd_state(ep) == SCIFEP_CONNECTED) {
		scif__ctl_msg_init(&m, op, ep);
		m.payload[0] = roff;
		m.payload[1] = len;
		ret = scif__ctl_call(ep, &m, NULL, NULL);
	}
	scif__epd_put(ep);
	return ret;
}

/*
 * Map one piece of a peer window at @dst: a second mapping of the pages the library already
 * maps (mremap of a shared mapping with old size 0), so a remote window needs no descriptor
 * of its own. Memory that cannot be remapped that way (hugetlbfs) comes with a descriptor
 * from the fabric's mem_import.
 */
static int map_seg(uint8_t *dst, const struct scif_seg *seg, int prot)
{
	const struct scif_window *w = seg->win;
	void *p;

	if (w->mem.fd >= 0)
		p = mmap(dst, seg->len, prot, MAP_SHARED | MAP_FIXED, w->mem.fd,
			 w->mem.off + (off_t)(seg->addr - w->map));
	else
		p = mremap(seg->addr, 0, seg->len, MREMAP_MAYMOVE | MREMAP_FIXED, dst);
	if (p == MAP_FAILED)
		return -ENOMEM;
	/* The window's protection, narrowed to what was asked for. */
	return mprotect(dst, seg->len, prot) < 0 ? -ENOMEM : 0;
}

void *scif__rma_mmap(void *addr, size_t len, int prot, int flags, struct scif_endpt *ep,
		     off_t offset, int *err)
{
	struct scif_seg segs[SCIF_MAX_SEGS];
	int nsegs = 0, ret;
	struct mapping *rec;
	uint8_t *base;
	size_t pos = 0;

	ret = scif__epd_verify_connected(ep);
	if (!ret && offset < 0)
		ret = -ENXIO;
	len = (len + PAGE - 1) & ~(size_t)(PAGE - 1); /* like mmap(2), whole pages */
	if (!ret) {
		pthread_rwlock_rdlock(&ep->ras.lock);
		ret = scif__ras_lookup(&ep->ras.remote, offset, len, prot, segs, &nsegs);
		pthread_rwlock_unlock(&ep->ras.lock);
	}
	/* Memory the fabric reaches only by remote DMA cannot be loaded from or stored to. */
	for (int i = 0; !ret && i < nsegs; i++)
		if (!segs[i].addr)
			ret = -EOPNOTSUPP;
	rec = ret ? NULL : malloc(sizeof(*rec));
	if (!ret && !rec)
		ret = -ENOMEM;
	if (ret)
		goto fail;
	/* Reserve the whole range, then put each window's pages in it. */
	base = mmap(addr, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS |
					      (flags & SCIF_MAP_FIXED ? MAP_FIXED : 0), -1, 0);
	if (base == MAP_FAILED) {
		ret = -ENOMEM;
		goto fail;
	}
	for (int i = 0; i < nsegs; i++) {
		ret = map_seg(base + pos, &segs[i], (prot & SCIF_PROT_READ ? PROT_READ : 0) |
							    (prot & SCIF_PROT_WRITE ? PROT_WRITE : 0));
		if (ret) {
			munmap(base, len);
			goto fail;
		}
		pos += segs[i].len;
	}
	madvise(base, len, MADV_DONTFORK); /* spec 4.6: not inherited by fork() children */
	scif__segs_put(segs, nsegs);
	nsegs = 0;
	/* The owner counts the mapping before we hand it out (or refuses: unregistered). */
	ret = map_notify(ep->fd, ep->gen, SCIF_MAP_REF, (uint64_t)offset, len);
	if (ret) {
		munmap(base, len);
		goto fail;
	}
	rec->addr = (uintptr_t)base;
	rec->len = len;
	rec->unmapped = 0;
	rec->epfd = ep->fd;
	rec->gen = ep->gen;
	rec->roff = (uint64_t)offset;
	pthread_mutex_lock(&map_lock);
	rec->next = mappings;
	mappings = rec;
	pthread_mutex_unlock(&map_lock);
	return base;
fail:
	scif__segs_put(segs, nsegs);
	free(rec);
	*err = ret;
	return MAP_FAILED;
}

int scif__rma_munmap(void *addr, size_t len)
{
	uintptr_t a = (uintptr_t)addr, b;
	struct mapping *done = NULL;

	len = (len + PAGE - 1) & ~(size_t)(PAGE - 1);
	b = a + len;
	if (munmap(addr, len) < 0)
		return -errno;
	pthread_mutex_lock(&map_lock);
	for (struct mapping **pp = &mappings; *pp;) {
		struct mapping *m = *pp;
		uintptr_t lo = a > m->addr ? a : m->addr;
		uintptr_t hi = b < m->addr + m->len ? b : m->addr + m->len;

		if (lo < hi)
			m->unmapped += hi - lo;
		/* The whole mapping is gone: the owner may reclaim its offsets. */
		if (m->unmapped >= m->len) {
			*pp = m->next;
			m->next = done;
			done = m;
		} else {
			pp = &m->next;
		}
	}
	pthread_mutex_unlock(&map_lock);
	while (done) {
		struct mapping *m = done;

		done = m->next;
		map_notify(m->epfd, m->gen, SCIF_MAP_UNREF, m->roff, m->len); /* gone: nothing to tell */
		free(m);
	}
	return 0;
}
