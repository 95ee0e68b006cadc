/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * window.h - registration windows and the registered address space (RAS) of an endpoint.
 * A window is a range of the fabric's window memory (fabric.h struct scif_mem; local: a
 * sealed memfd): the owner maps it where the application's memory was, the peer maps it to
 * copy into or out of it (RMA) and to hand it out with scif_mmap.
 */
#ifndef SCIF_WINDOW_H
#define SCIF_WINDOW_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "fabric/fabric.h"

#define SCIF_RAS_AUTO_BASE (1ULL << 62) /* library-chosen offsets come from [2^62, 2^63) */
#define SCIF_RAS_END (1ULL << 63)

/**
 * struct scif_window - one window, on the owner's side (self) or the peer's side (remote).
 * @offset, @len: its range in the owner's RAS.
 * @prot:    SCIF_PROT_READ / SCIF_PROT_WRITE of the window.
 * @foff:    (self) offset of the window in its backing's memory (scif__backing_mem).
 * @mem:     (remote) the peer's memory as the fabric imported it; @mem.addr is @map.
 * @map:     the library's own mapping of it (RMA copies use this, never the application's
 *           address, so an unmapped or freed application buffer cannot fault a copy); NULL
 *           for a remote window the fabric cannot map (RMA then goes by its mem_copy op,
 *           and scif_mmap answers EOPNOTSUPP).
 * @refs:    list membership + each RMA in flight; the last put unmaps and closes.
 * @peer_maps: (self) scif_mmap mappings the peer holds; an unregistered window keeps its
 *           offsets reserved until this drops to 0.
 * @backing: (self) its hold on the window memory of the application's pages (window.c);
 *           NULL on the remote side.
 * @dead:    (self) WIN_DEAD: unregistered, kept only to reserve its offsets; WIN_PENDING:
 *           being registered, not usable until the peer has it. 0: live.
 */
enum { WIN_LIVE, WIN_DEAD, WIN_PENDING };

struct scif_window {
	uint64_t offset;
	uint64_t len;
	int prot;
	off_t foff;
	struct scif_mem mem;
	uint8_t *map;
	uint32_t refs;
	uint32_t peer_maps;
	int dead;
	void *backing;
};

/*
 * struct scif_wlist - windows sorted by offset, in an array: the windows of one list never
 * overlap, so their ends are sorted too and any offset is found by binary search. Lookups,
 * placement and insertion cost O(log n) comparisons (insertion moves pointers after it).
 */
struct scif_wlist {
	struct scif_window **v;
	size_t n, cap;
};

/**
 * struct scif_ras - an endpoint's windows (process-local; the control plane of an endpoint
 * shared across fork() is served by one process).
 * @lock:    protects both lists: changed under the write side (scif__ras_write_lock), looked
 *           up under the read side (scif__ras_read_lock); a short caller copy (rma.c) keeps
 *           the read side for the copy instead of taking window references.
 * @writer:  1 while a writer holds @lock or waits to (written by it only, under @lock's
 *           write side): light readers that see it take the read lock instead.
 * @self:    our windows, including dead ones still reserving offsets.
 * @remote:  the peer's windows as it announced them.
 */
struct scif_ras {
	pthread_rwlock_t lock;
	unsigned int writer;
	struct scif_wlist self;
	struct scif_wlist remote;
};

/*
 * The read side comes in two weights. A light reader publishes, in a word of its own thread,
 * which address space it is reading and then checks @writer: no shared cache line is
 * written, no locked instruction runs. The writer pays instead: it raises @writer, makes
 * every thread of the process pass a full barrier (membarrier(2), private expedited), and
 * waits until no thread's word names this address space; those that came later saw @writer.
 * Where membarrier is not to be had, every reader takes the lock.
 *
 * scif__ras_read_lock returns 1 for a light read, 0 when it took the read lock; the matching
 * unlock takes that value back. Light reads do not nest (a nested one takes the lock) and
 * must not block: a writer waits for them.
 */
int scif__ras_read_lock(struct scif_ras *ras);
void scif__ras_read_unlock(struct scif_ras *ras, int light);
/*
 * A light read or nothing (0: no lock taken). It touches only @ras->writer, so @ras may be in
 * an endpoint the caller holds no reference to, as long as endpoint memory is never given
 * back (epd.c): endpoint teardown drains light readers like any writer (scif__ras_destroy),
 * so an endpoint found still published after this returned 1 stays alive until the
 * scif__ras_light_unlock().
 */
int scif__ras_try_light(struct scif_ras *ras);
void scif__ras_light_unlock(void);
void scif__ras_write_lock(struct scif_ras *ras);
void scif__ras_write_unlock(struct scif_ras *ras);

/* One piece of a range that spans contiguous windows. */
struct scif_seg {
	struct scif_window *win; /* referenced */
	uint8_t *addr;           /* inside win->map, or NULL if the window is not mapped here */
	size_t len;
	uint64_t woff;           /* where the piece begins in its window */
};

#define SCIF_MAX_SEGS 64

void scif__ras_init(struct scif_ras *ras);
/* Drop every window (endpoint teardown); in-flight RMAs keep their own references. */
void scif__ras_destroy(struct scif_ras *ras);

void scif__window_get(struct scif_window *w);
void scif__window_put(struct scif_window *w);

/*
 * Back [addr, addr+len) by the fabric's window memory in place (same addresses, same contents
 * and protections): a hold on that memory in *backing and the range's offset in it in *foff.
 * -EFAULT if part of the range is not mapped, or not writable while @need_write; -ENOMEM.
 */
int scif__window_back(void *addr, size_t len, int need_write, off_t *foff, void **backing);
/* The memory a backing holds (valid while the hold is). */
const struct scif_mem *scif__backing_mem(const void *backing);
/* A window's hold on its memory (scif__window_back's *backing) goes. */
void scif__backing_put(void *backing);

/* Pick a free offset (auto) or check a fixed one; under ras->lock. */
int scif__ras_place(struct scif_ras *ras, uint64_t len, int fixed, uint64_t *offset);
/* Index of the first window of @l that ends after @off (l->n if none); under ras->lock. */
size_t scif__wl_find(const struct scif_wlist *l, uint64_t off);
/* Insert a window that overlaps none of @l (-ENOMEM); under ras->lock. */
int scif__wl_insert(struct scif_wlist *l, struct scif_window *w);
/* Take window i out of @l (the list's reference goes to the caller); under ras->lock. */
struct scif_window *scif__wl_remove(struct scif_wlist *l, size_t i);
/* Take @w out of @l if it is there; returns whether it was. */
int scif__wl_remove_win(struct scif_wlist *l, const struct scif_window *w);

/*
 * Look up [off, off+len) in a list: it must be covered by contiguous live windows that all
 * allow @prot. Fills referenced segments. -ENXIO (gap, miss, negative) or -EPERM (prot).
 */
int scif__ras_lookup(const struct scif_wlist *list, int64_t off, size_t len, int prot,
		     struct scif_seg *segs, int *nsegs);
/*
 * The one live window of @list holding all of [off, off+len) with @prot: the address of @off
 * in its mapping, or NULL (then scif__ras_lookup tells why, or the window is not mapped
 * here). Under ras->lock; no reference.
 */
uint8_t *scif__ras_find(const struct scif_wlist *list, int64_t off, size_t len, int prot);
void scif__segs_put(struct scif_seg *segs, int nsegs);

#endif /* SCIF_WINDOW_H */
