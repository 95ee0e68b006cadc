/* SPDX-License-Identifier: LGPL-2.1-or-later */
/**
 * @file sfi_wcache.c
 * @brief Windows kept over receive buffers, for rendezvous writes from the peer.
 *
 * A large RDM message moves with one copy when the receiver exposes its buffer as a SCIF
 * window and the sender scif_vwriteto()s into it (sfi_rdm.c). scif_register() costs far
 * more than copying a few MiB (the peer is told and maps the window), so a connection keeps
 * the windows it made, a few at a time, and uses one again for a buffer inside it.
 *
 * A kept window is only valid while the application's addresses still map the memory it
 * was made of: a buffer freed and allocated again at the same place is other memory, which
 * the old window would not see. Registration turns the buffer's pages into a file's pages
 * (libscif's window memory), so the mapping at the buffer's address names that file and an
 * offset in it; every use asks the kernel what is mapped there (PROCMAP_QUERY on
 * /proc/self/maps, one ioctl) and takes the window only if it is the same file at the same
 * offset. Kernels without PROCMAP_QUERY (before Linux 6.11) cannot answer cheaply: there
 * the cache is unusable and large messages go through the connection's byte stream.
 *
 * Registering fresh memory copies it, which costs more than the ring: a range gets a window
 * only the second time a receive uses it (programs that allocate a buffer per message never
 * pay), and a range whose window turned out stale SFI_WCACHE_STRIKES times (a program that
 * frees and allocates at the same place) never gets one again.
 *
 * What a window costs the application: the buffer's pages become shared memory (a fork
 * child shares them instead of copying them), and a window keeps its memory until it is
 * dropped, even if the application frees the buffer: at most SFI_WCACHE_BYTES bytes per
 * connection in windows, SFI_WCACHE_SLOTS ranges known, least recently used first out.
 *
 * A cache runs under the domain lock of its connection's endpoint.
 * Its windows go with the connection's SCIF endpoint (scif_close unregisters them).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "procmap.h"
#include "sfi.h"


/* /proc/self/maps of this process (reopened in a fork child: the parent's describes the
 * parent), -1 before the first use, -2 when the kernel cannot answer; under maps_lock (the
 * connections of several domains may ask at once). */
static pthread_mutex_t maps_lock = PTHREAD_MUTEX_INITIALIZER;
static int maps_fd = -1;
static pid_t maps_pid;

static int wcache_where_locked(uintptr_t addr, struct sfi_wfile *f, size_t *cover)
{
	struct procmap_query_abi q;
	pid_t pid = getpid();

	if (maps_fd == -2)
		return -1;
	if (maps_fd >= 0 && maps_pid != pid) {
		close(maps_fd);
		maps_fd = -1;
	}
	if (maps_fd < 0) {
		maps_fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
		if (maps_fd < 0) {
			maps_fd = -2;
			return -1;
		}
		maps_pid = pid;
	}
	memset(&q, 0, sizeof(q));
	q.size = sizeof(q);
	q.query_addr = addr;
	if (ioctl(maps_fd, PROCMAP_QUERY_IOCTL, &q) < 0) {
		if (errno == ENOTTY || errno == EINVAL) {
			/* no PROCMAP_QUERY here: never ask again */
			close(maps_fd);
			maps_fd = -2;
		}
		return -1;
	}
	if (q.vma_start > addr || q.vma_end <= addr)
		return -1;
	f->inode = q.inode;
	f->dev = ((uint64_t)q.dev_major << 32) | q.dev_minor;
	f->off = q.vma_offset + (addr - q.vma_start);
	*cover = q.vma_end - addr;
	return 0;
}

int sfi_map_where(uintptr_t addr, struct sfi_wfile *f, size_t *cover)
{
	int ret;

	pthread_mutex_lock(&maps_lock);
	ret = wcache_where_locked(addr, f, cover);
	pthread_mutex_unlock(&maps_lock);
	return ret;
}

bool sfi_wcache_usable(void)
{
	struct sfi_wfile f;
	size_t cover;

	/* Any mapped address will do: this function's own code. */
	return sfi_map_where((uintptr_t)&sfi_wcache_usable, &f, &cover) == 0;
}

/** Give up entry @p e's window, if it has one (the entry stays, as seen). */
static void wcache_unregister(struct sfi_wcache *wc, scif_epd_t epd, struct sfi_wentry *e)
{
	if (!e->registered)
		return;
	(void)scif_unregister(epd, e->roff, e->len);
	wc->bytes -= e->len;
	e->registered = false;
}

static void wcache_drop(struct sfi_wcache *wc, scif_epd_t epd, unsigned int i)
{
	wcache_unregister(wc, epd, &wc->e[i]);
	wc->e[i] = wc->e[--wc->n];
}

/** Drop least recently used entries until @p slots are free and @p bytes more fit. */
static void wcache_room(struct sfi_wcache *wc, scif_epd_t epd, unsigned int slots,
			size_t bytes)
{
	while (wc->n && (wc->n + slots > SFI_WCACHE_SLOTS || wc->bytes + bytes > SFI_WCACHE_BYTES)) {
		unsigned int lru = 0;

		for (unsigned int i = 1; i < wc->n; i++)
			if (wc->e[i].used < wc->e[lru].used)
				lru = i;
		wcache_drop(wc, epd, lru);
	}
}

int sfi_wcache_get(struct sfi_wcache *wc, scif_epd_t epd, uintptr_t addr, size_t len,
		   off_t *roff)
{
	struct sfi_wentry c = { 0 };
	struct sfi_wfile f;
	size_t cover;
	bool one, seen = false;
	off_t o;

	if (len > SFI_WCACHE_BYTES || sfi_map_where(addr, &f, &cover) < 0)
		return -FI_EOPNOTSUPP;
	/* A window is known again only where one mapping covers the whole range. */
	one = cover >= len;
	for (unsigned int i = 0; i < wc->n; i++) {
		struct sfi_wentry *e = &wc->e[i];

		if (addr < e->addr || addr + len > e->addr + e->len)
			continue;
		if (e->registered) {
			/* The same file at the same place: the window is this memory. */
			if (one && e->file.inode == f.inode && e->file.dev == f.dev &&
			    e->file.off + (addr - e->addr) == f.off) {
				e->used = ++wc->clock;
				*roff = e->roff + (off_t)(addr - e->addr);
				return 0;
			}
			/*
			 * Other memory now: the window is of no use, and the application
			 * allocates here anew, which registration (a copy of fresh pages)
			 * would only slow down: a strike against this range.
			 */
			wcache_unregister(wc, epd, e);
			e->strikes++;
			e->used = ++wc->clock;
			return -FI_EAGAIN;
		}
		/* Seen before, without a window: this is the one to decide on. */
		c = *e;
		wc->e[i] = wc->e[--wc->n];
		seen = true;
		break;
	}
	if (!seen || c.strikes >= SFI_WCACHE_STRIKES) {
		/*
		 * A buffer seen once may be a fresh one of a program that allocates one per
		 * message: the first receive into a range goes through the ring, the next
		 * registers it. A range found holding other memory twice never does.
		 */
		wcache_room(wc, epd, 1, 0);
		wc->e[wc->n++] = seen ? c : (struct sfi_wentry){ .addr = addr, .len = len };
		wc->e[wc->n - 1].used = ++wc->clock;
		return -FI_EAGAIN;
	}
	wcache_room(wc, epd, 1, len);
	c.addr = addr;
	c.len = len;
	c.used = ++wc->clock;
	o = scif_register(epd, (void *)addr, len, 0, SCIF_PROT_WRITE, 0);
	/*
	 * Registration made the pages a file's: remember which, to know them again. (Memory
	 * that was several windows' already may stay several files: such a window is never
	 * known again, and goes when it is overlapped or the least recently used.)
	 */
	if (o >= 0 && sfi_map_where(addr, &f, &cover) < 0) {
		(void)scif_unregister(epd, o, len);
		o = -1;
	}
	if (o < 0) {
		c.strikes = SFI_WCACHE_STRIKES; /* do not try again */
		wc->e[wc->n++] = c;
		return -FI_ENOMEM;
	}
	c.roff = o;
	c.file = f;
	c.registered = true;
	wc->e[wc->n++] = c;
	wc->bytes += len;
	*roff = o;
	return 0;
}
