// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * rma.c - registration, one-sided RMA and fences. Windows of both sides are mapped in this
 * process (window.c), so a transfer is one memcpy between two mappings. Transfers without
 * SCIF_RMA_SYNC/USECPU are queued on the process's DMA worker, a FIFO thread: each
 * endpoint's transfers complete in issue order, which is what fence marks count on.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "atomic.h"
#include "epd.h"
#include "log.h"
#include "nodeqp.h"
#include "rma.h"
#include "user.h"

#define DMA_CHUNK (1u << 20)      /* large transfers are queued in pieces of this size */
#define RMA_FAST_MAX (1u << 20)   /* caller copies up to this long run under the read lock */
#define RMA_ASYNC_INLINE_MAX (64u << 10) /* async copies up to this long may run in the caller */
#define CACHELINE 64u
#define PEER_MARK_BIT 0x80000000u /* marks of the peer's RMAs are negative, like Intel's */

struct scif_peer_wait {
	uint32_t tag;
	uint32_t id;
	struct scif_peer_wait *next;
};

/* One transfer: the segments of both sides, shared by its chunks. */
struct scif_xfer {
	struct scif_seg src[SCIF_MAX_SEGS], dst[SCIF_MAX_SEGS];
	int nsrc, ndst;
	uint8_t *vbuf; /* v-calls: the application's buffer is one side */
	int vdir;      /* 1: vbuf is the source, 0: the destination */
	size_t len;
	int ordered;
	uint32_t chunks; /* chunks not yet done */
};

enum { DMA_COPY, DMA_SIGNAL };

struct scif_dma {
	int kind;
	struct scif_endpt *ep; /* referenced */
	struct scif_xfer *x;   /* DMA_COPY */
	size_t from, to;       /* DMA_COPY: byte range of the transfer */
	uint32_t id;           /* the transfer's id: dma_done reaches it when the last chunk is done */
	struct scif_seg sig[2]; /* DMA_SIGNAL: 8-byte targets (win NULL if unused) */
	uint64_t val[2];
	struct scif_dma *next;
};

#define DMA_SPIN_NS 50000u /* the worker waits this long for more work before it sleeps */

static pthread_mutex_t dma_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t dma_cond = PTHREAD_COND_INITIALIZER;
static struct scif_dma *dma_head, **dma_tail = &dma_head;
static int dma_running;
static int dma_sleeping; /* under dma_lock: queueing signals the worker only if set */

/* ---- the DMA worker -------------------------------------------------------------------- */

/*
 * Copy @n bytes between @local and byte @off of a window piece (@to_win: into the piece).
 * A piece of a window that is not mapped here goes by the fabric (remote DMA, complete on
 * return): 0, or -ECONNRESET if the peer is gone.
 */
static int seg_copy(const struct scif_seg *s, size_t off, void *local, size_t n, int to_win)
{
	if (!s->addr)
		return scif__fab.ops->mem_copy(&s->win->mem, s->woff + off, local, n, to_win);
	if (to_win)
		memcpy(s->addr + off, local, n);
	else
		memcpy(local, s->addr + off, n);
	return 0;
}

/* Copy bytes [from, to) of a transfer between its segment lists: 0 or the first error. */
static int xfer_copy(struct scif_xfer *x, size_t from, size_t to)
{
	int si = 0, di = 0, ret = 0;
	size_t soff = from, doff = from;

	if (x->vbuf) {
		struct scif_seg *segs = x->vdir ? x->dst : x->src;
		int n = x->vdir ? x->ndst : x->nsrc;
		size_t pos = 0;

		for (int i = 0; i < n && pos < to; pos += segs[i].len, i++) {
			size_t a = from > pos ? from - pos : 0, b = to - pos;

			if (b > segs[i].len)
				b = segs[i].len;
			if (a >= b)
				continue;
			if (!ret)
				ret = seg_copy(&segs[i], a, x->vbuf + pos + a, b - a, x->vdir);
		}
		return ret;
	}
	/* Find the segments holding byte `from` on each side, then walk both lists. */
	while (si < x->nsrc && soff >= x->src[si].len)
		soff -= x->src[si++].len;
	while (di < x->ndst && doff >= x->dst[di].len)
		doff -= x->dst[di++].len;
	for (size_t left = to - from; left;) {
		size_t n = x->src[si].len - soff;

		if (n > x->dst[di].len - doff)
			n = x->dst[di].len - doff;
		if (n > left)
			n = left;
		if (x->dst[di].addr && x->src[si].addr)
			memcpy(x->dst[di].addr + doff, x->src[si].addr + soff, n);
		else if (ret) /* the rest would fail the same way */
			;
		else if (x->src[si].addr) /* into a window that is not mapped here */
			ret = seg_copy(&x->dst[di], doff, x->src[si].addr + soff, n, 1);
		else if (x->dst[di].addr)
			ret = seg_copy(&x->src[si], soff, x->dst[di].addr + doff, n, 0);
		else
			ret = -ENXIO; /* neither end mapped: one of them is always ours */
		left -= n;
		soff += n;
		doff += n;
		if (soff == x->src[si].len) {
			si++;
			soff = 0;
		}
		if (doff == x->dst[di].len) {
			di++;
			doff = 0;
		}
	}
	return ret;
}

/* Where SCIF_RMA_ORDERED's last line begins: the destination's final 64-byte line. */
static size_t xfer_tail(const struct scif_xfer *x)
{
	const struct scif_seg *d = x->vdir || !x->vbuf ? &x->dst[x->ndst - 1] : NULL;
	uintptr_t end;
	size_t line;

	if (!d) /* vreadfrom: the destination is the application's buffer */
		end = (uintptr_t)x->vbuf + x->len;
	else
		end = d->addr ? (uintptr_t)d->addr + d->len : (uintptr_t)(d->woff + d->len);
	line = (size_t)(end - ((end - 1) & ~(uintptr_t)(CACHELINE - 1)));
	return x->len > line ? x->len - line : 0;
}

static void xfer_free(struct scif_xfer *x)
{
	scif__segs_put(x->src, x->nsrc);
	scif__segs_put(x->dst, x->ndst);
	free(x);
}

/* Run a whole transfer in the caller (SYNC / USECPU): 0 or the first error. */
static int xfer_run(struct scif_xfer *x)
{
	int ret;

	if (x->ordered) {
		size_t tail = xfer_tail(x);

		ret = xfer_copy(x, 0, tail);
		/* Release: every other byte is visible before the last line. */
		__atomic_thread_fence(__ATOMIC_RELEASE);
		if (!ret)
			ret = xfer_copy(x, tail, x->len);
		return ret;
	}
	return xfer_copy(x, 0, x->len);
}

static void signal_store(struct scif_seg *s, uint64_t v)
{
	/* Release: the transfers before the signal are visible before its value. */
	__atomic_thread_fence(__ATOMIC_RELEASE);
	seg_copy(s, 0, &v, sizeof(v), 1);
}

static void peer_waits_answer(struct scif_endpt *ep)
{
	struct scif_peer_wait **pp = &ep->peer_waits;

	while (*pp) {
		struct scif_peer_wait *w = *pp;

		if ((int32_t)(ep->dma_done - w->id) >= 0) {
			*pp = w->next;
			scif__ctl_reply(ep, w->tag, 0, 0);
			free(w);
		} else {
			pp = &w->next;
		}
	}
}

static void dma_complete(struct scif_endpt *ep, uint32_t id)
{
	/* Release pairs with the acquire in fence_wait: the copied bytes are visible first. */
	__atomic_store_n(&ep->dma_done, id, __ATOMIC_RELEASE);
	scif__futex_wake_all(&ep->dma_done);
	pthread_mutex_lock(&dma_lock);
	if (ep->peer_waits)
		peer_waits_answer(ep);
	pthread_mutex_unlock(&dma_lock);
}

static void *dma_worker(void *arg)
{
	(void)arg;
	for (;;) {
		struct scif_dma *d;

		/* Spin a little for the next transfer: a stream of them needs no wake-ups. */
		if (!scif__read_once(&dma_head)) {
			uint64_t until = scif__now_ns() + DMA_SPIN_NS;

			for (unsigned int i = 0; !scif__read_once(&dma_head); i++) {
				if ((i & 63) == 63 && scif__now_ns() > until)
					break;
				scif__cpu_relax();
			}
		}
		pthread_mutex_lock(&dma_lock);
		while (!dma_head) {
			dma_sleeping = 1;
			pthread_cond_wait(&dma_cond, &dma_lock);
			dma_sleeping = 0;
		}
		d = dma_head;
		scif__write_once(&dma_head, d->next); /* read unlocked by the spin above */
		if (!dma_head)
			dma_tail = &dma_head;
		pthread_mutex_unlock(&dma_lock);

		if (d->kind == DMA_COPY) {
			struct scif_xfer *x = d->x;
			size_t tail = x->ordered ? xfer_tail(x) : x->len;
			size_t to = d->to < tail ? d->to : tail;

			if (d->from < to)
				xfer_copy(x, d->from, to);
			if (--x->chunks == 0) { /* FIFO: every other chunk of it is done */
				if (x->ordered) {
					__atomic_thread_fence(__ATOMIC_RELEASE);
					xfer_copy(x, tail, x->len);
				}
				xfer_free(x);
				dma_complete(d->ep, d->id);
			}
		} else {
			for (int i = 0; i < 2; i++)
				if (d->sig[i].win) {
					signal_store(&d->sig[i], d->val[i]);
					scif__window_put(d->sig[i].win);
				}
			dma_complete(d->ep, d->id);
		}
		scif__epd_put(d->ep);
		free(d);
	}
	return NULL;
}

static int dma_start(void)
{
	pthread_attr_t attr;
	sigset_t all, old;
	pthread_t th;
	int ret;

	if (scif__load_acquire(&dma_running))
		return 0;
	pthread_mutex_lock(&dma_lock);
	ret = 0;
	if (!dma_running) {
		sigfillset(&all);
		pthread_sigmask(SIG_SETMASK, &all, &old);
		pthread_attr_init(&attr);
		pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
		ret = -pthread_create(&th, &attr, dma_worker, NULL);
		pthread_attr_destroy(&attr);
		pthread_sigmask(SIG_SETMASK, &old, NULL);
		if (!ret)
			scif__store_release(&dma_running, 1);
	}
	pthread_mutex_unlock(&dma_lock);
	return ret;
}

/* A fork() child has no worker: start its own on demand; queued work stayed in the parent. */
static void dma_atfork_child(void)
{
	dma_running = 0;
	dma_head = NULL;
	dma_tail = &dma_head;
	pthread_mutex_init(&dma_lock, NULL);
}

/* Queue descriptors (already linked through ->next) in one go; ids assigned by the caller. */
static void dma_queue(struct scif_dma *first, struct scif_dma **last_next)
{
	pthread_mutex_lock(&dma_lock);
	scif__write_once(dma_tail, first); /* may be dma_head, which the worker spins on */
	dma_tail = last_next;
	if (dma_sleeping)
		pthread_cond_signal(&dma_cond);
	pthread_mutex_unlock(&dma_lock);
}

/*
 * Wait until this endpoint's transfers up to @id are complete (the worker is FIFO, so
 * dma_done counts them in order). -ECONNRESET if the connection goes; -EINTR on a signal
 * if @intr (fence_wait may say so, an RMA call may not).
 */
static int dma_wait(struct scif_endpt *ep, uint32_t id, int intr)
{
	for (;;) {
		/* Acquire pairs with the release in dma_complete: the copied bytes are visible. */
		uint32_t done = __atomic_load_n(&ep->dma_done, __ATOMIC_ACQUIRE);
		int ret;

		if ((int32_t)(done - id) >= 0)
			return 0;
		if (scif__epd_state(ep) != SCIFEP_CONNECTED)
			return -ECONNRESET;
		if (intr && scif__load_acquire(&ep->closing))
			return -EINTR;
		ret = scif__futex_wait(&ep->dma_done, done, 100000000);
		if (ret == -EINTR && intr)
			return ret;
	}
}

/* ---- registration ---------------------------------------------------------------------- */

static void rma_once(void)
{
	pthread_atfork(NULL, NULL, dma_atfork_child);
}

static void rma_ep_init(struct scif_endpt *ep)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;

	pthread_once(&once, rma_once);
	scif__ras_init(&ep->ras);
	ep->dma_issued = ep->dma_done = ep->max_mark = ep->max_peer_mark = 0;
	ep->peer_waits = NULL;
}

static void rma_ep_fini(struct scif_endpt *ep)
{
	pthread_mutex_lock(&dma_lock);
	while (ep->peer_waits) {
		struct scif_peer_wait *w = ep->peer_waits;

		ep->peer_waits = w->next;
		free(w);
	}
	pthread_mutex_unlock(&dma_lock);
	scif__ras_destroy(&ep->ras);
}

off_t scif__rma_register(struct scif_endpt *ep, void *addr, size_t len, off_t offset, int prot,
			 int map_flags)
{
	const struct scif_mem *mem;
	struct scif_window *w;
	struct scif_ctl_msg m;
	struct scif_fh fh;
	uint64_t off = (uint64_t)offset;
	int ret;

	ret = scif__epd_verify_connected(ep);
	if (ret)
		return ret;
	w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->mem.fd = -1;
	w->refs = 1;
	w->len = len;
	w->prot = prot;
	ret = scif__window_back(addr, len, (prot & SCIF_PROT_WRITE) != 0, &w->foff, &w->backing);
	if (ret)
		goto fail;
	mem = scif__backing_mem(w->backing);
	w->map = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, mem->fd, mem->off + w->foff);
	if (w->map == MAP_FAILED) {
		w->map = NULL;
		ret = -ENOMEM;
		goto fail;
	}
	/* Place the window, reserving its offsets until the peer has acknowledged it. */
	scif__ras_write_lock(&ep->ras);
	ret = scif__ras_place(&ep->ras, len, map_flags & SCIF_MAP_FIXED, &off);
	if (!ret) {
		w->offset = off;
		w->dead = WIN_PENDING; /* not usable until announced */
		ret = scif__wl_insert(&ep->ras.self, w);
		if (!ret)
			scif__window_get(w);
	}
	scif__ras_write_unlock(&ep->ras);
	if (ret)
		goto fail;
	scif__ctl_msg_init(&m, SCIF_REGISTER, ep);
	m.payload[0] = off;
	m.payload[1] = len;
	m.payload[2] = (uint64_t)prot;
	scif__fab.ops->mem_export(mem, w->foff, len, prot, &fh);
	ret = scif__ctl_call(ep, &m, &fh, NULL);
	scif__ras_write_lock(&ep->ras);
	if (ret) /* withdraw */
		scif__wl_remove_win(&ep->ras.self, w);
	else
		w->dead = 0;
	scif__ras_write_unlock(&ep->ras);
	if (ret) {
		scif__window_put(w); /* the list's */
		if (ret == -ECONNRESET)
			ret = scif__epd_verify_connected(ep) ?: -ECONNRESET;
		goto fail;
	}
	scif__window_put(w); /* ours; the list keeps it */
	return (off_t)off;
fail:
	scif__window_put(w);
	return ret;
}

int scif__rma_unregister(struct scif_endpt *ep, off_t offset, size_t len)
{
	uint64_t a = (uint64_t)offset, b = a + len;
	struct scif_ctl_msg m, reply;
	struct scif_window *gone = NULL;
	size_t first, i;
	int ret;

	ret = scif__epd_verify_connected(ep);
	if (ret)
		return ret;
	scif__ras_write_lock(&ep->ras);
	/* Nothing may straddle either boundary (spec 3.10): only the first and last can. */
	first = scif__wl_find(&ep->ras.self, a);
	for (i = first; i < ep->ras.self.n && ep->ras.self.v[i]->offset < b; i++) {
		struct scif_window *w = ep->ras.self.v[i];

		if (!w->dead && (w->offset < a || w->offset + w->len > b)) {
			scif__ras_write_unlock(&ep->ras);
			return -EINVAL;
		}
	}
	for (i = first; i < ep->ras.self.n && ep->ras.self.v[i]->offset < b; i++)
		if (!ep->ras.self.v[i]->dead) {
			ep->ras.self.v[i]->dead = WIN_DEAD; /* out of lookups; offsets reserved below */
			gone = ep->ras.self.v[i];
		}
	scif__ras_write_unlock(&ep->ras);
	if (!gone)
		return 0;
	/* Synchronous: when this returns the peer can no longer reach the windows. */
	scif__ctl_msg_init(&m, SCIF_UNREGISTER, ep);
	m.payload[0] = a;
	m.payload[1] = len;
	ret = scif__ctl_call(ep, &m, NULL, &reply);
	scif__ras_write_lock(&ep->ras);
	for (i = scif__wl_find(&ep->ras.self, a);
	     i < ep->ras.self.n && ep->ras.self.v[i]->offset < b;) {
		struct scif_window *w = ep->ras.self.v[i];

		/* Windows the peer still maps keep their offsets reserved (EADDRINUSE). */
		if (w->dead == WIN_DEAD && w->offset >= a && w->offset + w->len <= b && !w->peer_maps)
			scif__window_put(scif__wl_remove(&ep->ras.self, i));
		else
			i++;
	}
	scif__ras_write_unlock(&ep->ras);
	return ret == -ECONNRESET ? scif__epd_verify_connected(ep) : 0;
}

/* ---- RMA ------------------------------------------------------------------------------- */

/*
 * One transfer. @vaddr != NULL for the v-calls (the local side is ordinary memory). @write:
 * local -> remote. Ranges are checked (ENXIO/EPERM) before anything is copied.
 */
/* Each end inside one window: one memcpy. On the read side of ep's windows; 1 if done. */
static int rma_copy_in_windows(struct scif_endpt *ep, off_t loffset, void *vaddr, int is_v,
			       size_t len, off_t roffset, int write)
{
	int lprot = write ? SCIF_PROT_READ : SCIF_PROT_WRITE;
	int rprot = write ? SCIF_PROT_WRITE : SCIF_PROT_READ;
	uint8_t *local, *remote;

	local = is_v ? vaddr : scif__ras_find(&ep->ras.self, loffset, len, lprot);
	remote = local ? scif__ras_find(&ep->ras.remote, roffset, len, rprot) : NULL;
	if (!remote)
		return 0;
	if (write)
		memcpy(remote, local, len);
	else
		memcpy(local, remote, len);
	return 1;
}

/*
 * The common short copy in the caller: each end inside one window. One memcpy on the read
 * side (usually a light read: no lock, no shared line written; unregistration waits for
 * it), no window references, no segment lists; 0 if this is not that case (the general path
 * then also finds the right error).
 */
static int rma_copy_fast(struct scif_endpt *ep, off_t loffset, void *vaddr, int is_v,
			 size_t len, off_t roffset, int write)
{
	int done, light;

	if (roffset < 0 || (!is_v && loffset < 0))
		return 0;
	light = scif__ras_read_lock(&ep->ras);
	done = rma_copy_in_windows(ep, loffset, vaddr, is_v, len, roffset, write);
	scif__ras_read_unlock(&ep->ras, light);
	return done;
}

int scif__rma_copy_light(int fd, off_t loffset, void *vaddr, int is_v, size_t len,
			 off_t roffset, int flags, int write)
{
	int sync = (flags & (SCIF_RMA_SYNC | SCIF_RMA_USECPU)) != 0, done = 0;
	struct scif_endpt *ep;

	/* What scif__rma_copy would copy in the caller at once (ORDERED is not that). */
	if ((flags & ~(SCIF_RMA_USECPU | SCIF_RMA_USECACHE | SCIF_RMA_SYNC)) || len == 0 ||
	    len > (sync ? RMA_FAST_MAX : RMA_ASYNC_INLINE_MAX) || roffset < 0 ||
	    (!is_v && loffset < 0) || (is_v && scif__user_check(vaddr, len, !write)))
		return 1;
	ep = scif__epd_peek(fd);
	if (!ep || !scif__ras_try_light(&ep->ras))
		return 1;
	/*
	 * Still published now that the light read has begun: the endpoint cannot be torn down
	 * before scif__ras_light_unlock (window.h). With nothing asynchronous in flight, a
	 * synchronous copy has nothing to wait for and an asynchronous one nothing to overtake.
	 */
	if (scif__epd_peek(fd) == ep && scif__epd_state(ep) == SCIFEP_CONNECTED &&
	    scif__load_acquire(&ep->dma_done) == scif__load_acquire(&ep->dma_issued))
		done = rma_copy_in_windows(ep, loffset, vaddr, is_v, len, roffset, write);
	scif__ras_light_unlock();
	return !done;
}

int scif__rma_copy(struct scif_endpt *ep, off_t loffset, void *vaddr, int is_v, size_t len,
		   off_t roffset, int flags, int write)
{
	struct scif_xfer *x, stack_x;
	int ret, light, sync = (flags & (SCIF_RMA_SYNC | SCIF_RMA_USECPU)) != 0;

	ret = scif__epd_verify_connected(ep);
	if (ret)
		return ret;
	if (flags && !(flags & (SCIF_RMA_USECPU | SCIF_RMA_USECACHE | SCIF_RMA_SYNC |
				SCIF_RMA_ORDERED)))
		return -EINVAL;
	if (len == 0 || (uint64_t)roffset + len < (uint64_t)roffset ||
	    (!is_v && (uint64_t)loffset + len < (uint64_t)loffset))
		return -EINVAL;
	/* The application's buffer last (spec order): readable for vwriteto, writable for vread. */
	if (is_v) {
		ret = scif__user_check(vaddr, len, !write);
		if (ret)
			return ret;
	}
	/*
	 * Intel's DMA channel runs an endpoint's RMAs in issue order and SYNC waits for it to
	 * drain, so a synchronous copy lands after every transfer issued before it (spec 5).
	 * Nothing in flight is the common case: one compare, and the copy runs at once.
	 */
	if (sync) {
		uint32_t issued = scif__load_acquire(&ep->dma_issued);

		if (scif__load_acquire(&ep->dma_done) != issued) {
			ret = dma_wait(ep, issued, 0);
			if (ret)
				return ret;
		}
	}
	/*
	 * Asynchronous, short, and nothing of this endpoint's in flight: the hand-off to the
	 * worker (allocation, queueing, its wake-up, the completion) costs more than such a
	 * copy, so it runs here, like a synchronous one. It overtakes nothing (the endpoint's
	 * queue is empty) and is complete on return, so no fence mark needs to count it.
	 * Longer transfers still go to the worker, so the caller overlaps them with its work.
	 */
	if (!sync && len <= RMA_ASYNC_INLINE_MAX &&
	    scif__load_acquire(&ep->dma_done) == scif__load_acquire(&ep->dma_issued))
		sync = 1;
	if (sync && !(flags & SCIF_RMA_ORDERED) && len <= RMA_FAST_MAX &&
	    rma_copy_fast(ep, loffset, vaddr, is_v, len, roffset, write))
		return 0;
	/* A copy done in the caller needs no allocation: the common small-transfer case. */
	x = sync ? &stack_x : malloc(sizeof(*x));
	if (!x)
		return -ENOMEM;
	x->nsrc = x->ndst = 0;
	x->len = len;
	x->ordered = (flags & SCIF_RMA_ORDERED) != 0;
	x->vbuf = vaddr;
	x->vdir = write;
	light = scif__ras_read_lock(&ep->ras);
	if (!is_v) {
		ret = scif__ras_lookup(&ep->ras.self, loffset, len,
				       write ? SCIF_PROT_READ : SCIF_PROT_WRITE,
				       write ? x->src : x->dst, write ? &x->nsrc : &x->ndst);
	}
	if (!ret)
		ret = scif__ras_lookup(&ep->ras.remote, roffset, len,
				       write ? SCIF_PROT_WRITE : SCIF_PROT_READ,
				       write ? x->dst : x->src, write ? &x->ndst : &x->nsrc);
	scif__ras_read_unlock(&ep->ras, light);
	if (ret || sync) {
		if (!ret)
			ret = xfer_run(x);
		scif__segs_put(x->src, x->nsrc);
		scif__segs_put(x->dst, x->ndst);
		if (!sync)
			free(x);
		return ret;
	}
	/* Asynchronous: queue chunk descriptors on the DMA worker and return. */
	uint32_t id = scif__atomic_inc(&ep->dma_issued);
	struct scif_dma *first = NULL, **tail = &first;

	if (dma_start()) {
		/* No worker to be had (no thread): nothing can be queued, so copy it now. */
		xfer_run(x);
		xfer_free(x);
		dma_complete(ep, id);
		return 0;
	}

	x->chunks = (uint32_t)((len + DMA_CHUNK - 1) / DMA_CHUNK);
	for (size_t pos = 0; pos < len; pos += DMA_CHUNK) {
		struct scif_dma *d = calloc(1, sizeof(*d));

		if (!d) { /* cannot queue the rest: finish it here, in order */
			x->chunks = 1;
			ret = -ENOMEM;
			break;
		}
		d->kind = DMA_COPY;
		scif__epd_ref(ep);
		d->ep = ep;
		d->x = x;
		d->from = pos;
		d->to = pos + DMA_CHUNK < len ? pos + DMA_CHUNK : len;
		d->id = id;
		*tail = d;
		tail = &d->next;
	}
	if (ret) {
		/* Fall back to a synchronous copy; the queued chunks are dropped unsent. */
		while (first) {
			struct scif_dma *d = first;

			first = d->next;
			scif__epd_put(d->ep);
			free(d);
		}
		xfer_run(x);
		xfer_free(x);
		dma_complete(ep, id);
		return 0;
	}
	dma_queue(first, tail);
	return 0;
}

/* ---- fences ---------------------------------------------------------------------------- */

int scif__fence_mark(struct scif_endpt *ep, int flags, int *mark)
{
	struct scif_ctl_msg m, reply;
	uint32_t id;
	int ret;

	ret = scif__epd_verify_connected(ep);
	if (ret)
		return ret;
	if (flags != SCIF_FENCE_INIT_SELF && flags != SCIF_FENCE_INIT_PEER)
		return -EINVAL;
	if (flags == SCIF_FENCE_INIT_SELF) {
		id = scif__load_acquire(&ep->dma_issued) & 0x7fffffffu;
		__atomic_store_n(&ep->max_mark, id, __ATOMIC_RELAXED);
		*mark = (int)id;
		return 0;
	}
	scif__ctl_msg_init(&m, SCIF_MARK, ep);
	ret = scif__ctl_call(ep, &m, NULL, &reply);
	if (ret)
		return ret;
	id = (uint32_t)reply.payload[0] & 0x7fffffffu;
	__atomic_store_n(&ep->max_peer_mark, id, __ATOMIC_RELAXED);
	*mark = (int)(PEER_MARK_BIT | id);
	return 0;
}

int scif__fence_wait(struct scif_endpt *ep, int mark)
{
	uint32_t id = (uint32_t)mark & 0x7fffffffu;
	struct scif_ctl_msg m;
	int ret;

	ret = scif__epd_verify_connected(ep);
	if (ret)
		return ret;
	if ((uint32_t)mark & PEER_MARK_BIT) {
		if (id > scif__read_once(&ep->max_peer_mark))
			return -EINVAL;
		scif__ctl_msg_init(&m, SCIF_WAIT, ep);
		m.payload[0] = id;
		return scif__ctl_call(ep, &m, NULL, NULL);
	}
	if (id > scif__read_once(&ep->max_mark))
		return -EINVAL;
	return dma_wait(ep, id, 1);
}

/* The 8 bytes at off must lie in one writable live window (spec 3.19). */
static int signal_target(const struct scif_wlist *list, int64_t off, struct scif_seg *seg)
{
	const struct scif_window *w;
	size_t i;
	int n;

	if (off < 0)
		return -ENXIO;
	i = scif__wl_find(list, (uint64_t)off);
	if (i == list->n)
		return -ENXIO;
	w = list->v[i];
	if (w->dead || (uint64_t)off < w->offset || (uint64_t)off + 8 > w->offset + w->len ||
	    !(w->prot & SCIF_PROT_WRITE))
		return -ENXIO;
	return scif__ras_lookup(list, off, 8, SCIF_PROT_WRITE, seg, &n) ? -ENXIO : 0;
}

/* Queue (or run, if nothing is pending) a signal behind this endpoint's transfers. */
static int signal_queue(struct scif_endpt *ep, struct scif_seg sig[2], uint64_t val[2])
{
	struct scif_dma *d;
	int ret;

	if (scif__load_acquire(&ep->dma_done) == scif__read_once(&ep->dma_issued)) {
		for (int i = 0; i < 2; i++)
			if (sig[i].win) {
				signal_store(&sig[i], val[i]);
				scif__window_put(sig[i].win);
			}
		return 0;
	}
	ret = dma_start();
	d = ret ? NULL : calloc(1, sizeof(*d));
	if (!d) {
		for (int i = 0; i < 2; i++)
			if (sig[i].win)
				scif__window_put(sig[i].win);
		return -ENOMEM;
	}
	d->kind = DMA_SIGNAL;
	scif__epd_ref(ep);
	d->ep = ep;
	memcpy(d->sig, sig, sizeof(d->sig));
	memcpy(d->val, val, sizeof(d->val));
	d->id = scif__atomic_inc(&ep->dma_issued);
	dma_queue(d, &d->next);
	return 0;
}

int scif__fence_signal(struct scif_endpt *ep, off_t loff, uint64_t lval, off_t roff,
		       uint64_t rval, int flags)
{
	struct scif_seg sig[2] = { { 0 }, { 0 } };
	uint64_t val[2] = { lval, rval };
	int init = flags & (SCIF_FENCE_INIT_SELF | SCIF_FENCE_INIT_PEER);
	int ret, light;

	ret = scif__epd_verify_connected(ep);
	if (ret)
		return ret;
	if ((flags & ~(SCIF_FENCE_INIT_SELF | SCIF_FENCE_INIT_PEER | SCIF_SIGNAL_LOCAL |
		       SCIF_SIGNAL_REMOTE)) ||
	    (init != SCIF_FENCE_INIT_SELF && init != SCIF_FENCE_INIT_PEER) ||
	    !(flags & (SCIF_SIGNAL_LOCAL | SCIF_SIGNAL_REMOTE)) ||
	    ((flags & SCIF_SIGNAL_LOCAL) && (loff & 3)) ||
	    ((flags & SCIF_SIGNAL_REMOTE) && (roff & 3)))
		return -EINVAL;
	light = scif__ras_read_lock(&ep->ras);
	if (flags & SCIF_SIGNAL_LOCAL)
		ret = signal_target(&ep->ras.self, loff, &sig[0]);
	if (!ret && (flags & SCIF_SIGNAL_REMOTE))
		ret = signal_target(&ep->ras.remote, roff, &sig[1]);
	scif__ras_read_unlock(&ep->ras, light);
	if (ret) {
		for (int i = 0; i < 2; i++)
			if (sig[i].win)
				scif__window_put(sig[i].win);
		return ret;
	}
	if (init == SCIF_FENCE_INIT_SELF)
		return signal_queue(ep, sig, val);
	/* The peer's RMAs: it writes after its own transfers, through its mappings. */
	struct scif_ctl_msg m;

	for (int i = 0; i < 2; i++)
		if (sig[i].win)
			scif__window_put(sig[i].win);
	scif__ctl_msg_init(&m, SCIF_SIG, ep);
	m.err = flags;
	m.payload[0] = (uint64_t)loff;
	m.payload[1] = lval;
	m.payload[2] = (uint64_t)roff;
	m.payload[3] = rval;
	return scif__ctl_send(ep, &m, NULL);
}

/* ---- the peer's control messages (monitor thread; never blocks) ------------------------ */

static int ctl_register(struct scif_endpt *ep, const struct scif_ctl_msg *m,
			struct scif_fh *fh, int nfh)
{
	uint64_t off = m->payload[0], len = m->payload[1], prot = m->payload[2];
	struct scif_window *w = NULL;
	int err = 0;
	size_t i;

	/* Our descriptor table is full: the window's memory was lost on the way (MSG_CTRUNC). */
	if (nfh < 0) {
		scif__ctl_reply(ep, m->tag, ENOMEM, 0);
		return 0;
	}
	/* Everything about the window is the peer's word: check it all (the fabric its handle). */
	if (nfh != 1 || !len || (off | len) & (4096 - 1) || off >= SCIF_RAS_END ||
	    len > SCIF_RAS_END - off || (prot & ~3ULL))
		err = EINVAL;
	if (!err && !(w = calloc(1, sizeof(*w))))
		err = ENOMEM;
	if (!err) {
		w->offset = off;
		w->len = len;
		w->prot = (int)prot;
		w->refs = 1;
		/* Map only what the window allows: a READ window cannot be written through us. */
		err = -scif__fab.ops->mem_import(&scif__fab, &fh[0], len,
						 (prot & SCIF_PROT_READ ? PROT_READ : 0) |
							 (prot & SCIF_PROT_WRITE ? PROT_WRITE : 0),
						 &w->mem);
		/* Memory only remote DMA reaches needs the fabric's copy op. */
		if (!err && !w->mem.addr && !scif__fab.ops->mem_copy) {
			scif__fab.ops->mem_free(&w->mem);
			err = ENOMEM;
		}
		if (!err)
			w->map = w->mem.addr;
		else if (err != EINVAL)
			err = ENOMEM;
	}
	if (!err) {
		scif__ras_write_lock(&ep->ras);
		i = scif__wl_find(&ep->ras.remote, off);
		if (i < ep->ras.remote.n && ep->ras.remote.v[i]->offset < off + len)
			err = EADDRINUSE;
		else
			err = -scif__wl_insert(&ep->ras.remote, w);
		scif__ras_write_unlock(&ep->ras);
	}
	if (err && w)
		scif__window_put(w);
	scif__ctl_reply(ep, m->tag, err, 0);
	return 0;
}

static int ctl_unregister(struct scif_endpt *ep, const struct scif_ctl_msg *m)
{
	uint64_t a = m->payload[0], b = a + m->payload[1];

	scif__ras_write_lock(&ep->ras);
	for (size_t i = scif__wl_find(&ep->ras.remote, a);
	     b >= a && i < ep->ras.remote.n && ep->ras.remote.v[i]->offset < b;) {
		struct scif_window *w = ep->ras.remote.v[i];

		if (w->offset >= a && w->offset + w->len <= b) /* RMAs in flight hold their own refs */
			scif__window_put(scif__wl_remove(&ep->ras.remote, i));
		else
			i++;
	}
	scif__ras_write_unlock(&ep->ras);
	scif__ctl_reply(ep, m->tag, 0, 0);
	return 0;
}

/* Whether the windows of @list (live or unregistered) cover [a, b) without a gap. */
static int ras_covers(const struct scif_wlist *list, uint64_t a, uint64_t b)
{
	for (size_t i = scif__wl_find(list, a); i < list->n && a < b; i++) {
		if (list->v[i]->offset > a)
			break;
		a = list->v[i]->offset + list->v[i]->len;
	}
	return a >= b;
}

/*
 * The peer mapped [a, b) of our windows (delta 1) or unmapped it (-1). A mapping is counted
 * only if our windows still cover the range: a window unregistered to the end refuses it
 * (ENXIO), so the peer's scif_mmap fails rather than hold pages we consider free.
 */
static int ctl_map_ref(struct scif_endpt *ep, const struct scif_ctl_msg *m, int delta)
{
	uint64_t a = m->payload[0], b = a + m->payload[1];
	int err = 0;

	scif__ras_write_lock(&ep->ras);
	if (delta > 0 && (b <= a || !ras_covers(&ep->ras.self, a, b)))
		err = ENXIO;
	for (size_t i = scif__wl_find(&ep->ras.self, a);
	     !err && b > a && i < ep->ras.self.n && ep->ras.self.v[i]->offset < b;) {
		struct scif_window *w = ep->ras.self.v[i];

		if (delta > 0)
			w->peer_maps++;
		else if (w->peer_maps)
			w->peer_maps--;
		if (w->dead == WIN_DEAD && !w->peer_maps) /* unregistered: offsets free now */
			scif__window_put(scif__wl_remove(&ep->ras.self, i));
		else
			i++;
	}
	scif__ras_write_unlock(&ep->ras);
	scif__ctl_reply(ep, m->tag, err, 0);
	return 0;
}

static int ctl_wait(struct scif_endpt *ep, const struct scif_ctl_msg *m)
{
	uint32_t id = (uint32_t)m->payload[0];
	struct scif_peer_wait *w;

	pthread_mutex_lock(&dma_lock);
	if ((int32_t)(scif__load_acquire(&ep->dma_done) - id) >= 0) {
		pthread_mutex_unlock(&dma_lock);
		scif__ctl_reply(ep, m->tag, 0, 0);
		return 0;
	}
	w = malloc(sizeof(*w));
	if (w) {
		w->tag = m->tag;
		w->id = id;
		w->next = ep->peer_waits;
		ep->peer_waits = w;
	}
	pthread_mutex_unlock(&dma_lock);
	if (!w)
		scif__ctl_reply(ep, m->tag, ENOMEM, 0);
	return 0;
}

static int ctl_sig(struct scif_endpt *ep, const struct scif_ctl_msg *m)
{
	struct scif_seg sig[2] = { { 0 }, { 0 } };
	/* The peer's LOCAL is our remote list; its REMOTE is our own windows. */
	uint64_t val[2] = { m->payload[1], m->payload[3] };
	int ret = 0, light;

	light = scif__ras_read_lock(&ep->ras);
	if (m->err & SCIF_SIGNAL_LOCAL)
		ret = signal_target(&ep->ras.remote, (int64_t)m->payload[0], &sig[0]);
	if (!ret && (m->err & SCIF_SIGNAL_REMOTE))
		ret = signal_target(&ep->ras.self, (int64_t)m->payload[2], &sig[1]);
	scif__ras_read_unlock(&ep->ras, light);
	if (ret) { /* it validated against its view; windows changed meanwhile */
		for (int i = 0; i < 2; i++)
			if (sig[i].win)
				scif__window_put(sig[i].win);
		return 0;
	}
	signal_queue(ep, sig, val);
	return 0;
}

/* A control message from the peer (monitor thread): 0, -EPROTO to drop the peer, or -ENOMSG. */
static int rma_ctl(struct scif_endpt *ep, const struct scif_ctl_msg *m, struct scif_fh *fh,
		   int nfh)
{
	switch (m->op) {
	case SCIF_REGISTER:
		return ctl_register(ep, m, fh, nfh);
	case SCIF_UNREGISTER:
		return ctl_unregister(ep, m);
	case SCIF_MAP_REF:
		return ctl_map_ref(ep, m, 1);
	case SCIF_MAP_UNREF:
		return ctl_map_ref(ep, m, -1);
	case SCIF_MARK:
		scif__ctl_reply(ep, m->tag, 0, scif__load_acquire(&ep->dma_issued));
		return 0;
	case SCIF_WAIT:
		return ctl_wait(ep, m);
	case SCIF_SIG:
		return ctl_sig(ep, m);
	default:
		return -ENOMSG; /* not ours */
	}
}

/* RMA's part in an endpoint's life (epd.h). */
const struct scif_epd_layer scif__rma_layer = {
	.name = "rma",
	.init = rma_ep_init,
	.fini = rma_ep_fini,
	.ctl = rma_ctl,
};
