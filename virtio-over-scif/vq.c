// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * vq.c - virtio 1.x split virtqueues: the device half (host, rings in the card's memory, every
 * value read back validated) and the driver half (card, rings in its own window).
 *
 * Who writes what (all little-endian):
 *   desc[], avail->flags/idx/ring[], used_event (avail->ring[size])   card only
 *   used->flags/idx/ring[], avail_event (used->ring[size])            host only
 *   indirect tables                                                   card only
 * Each side reads the other's fields once into a local copy and checks the copy; the card's
 * private bookkeeping (free list, tokens, lengths) never lives in shared memory.
 *
 * Barriers, named so each comment can point at its partner:
 *   [R-AVAIL] card: descriptors and ring entry, then release avail->idx (vq_card_add)
 *   [A-AVAIL] host: acquire avail->idx, then ring entry and descriptors (vq_host_pop)
 *   [R-USED]  host: used element, then release used->idx (vq_host_push)
 *   [A-USED]  card: acquire used->idx, then used element (vq_card_get)
 *   [MB-KICK] card: avail->idx store | full fence | avail_event/flags load (vq_card_need_kick)
 *             host: avail_event/flags store | full fence | avail->idx load (vq_host_kicks, pop)
 *   [MB-IRQ]  host: used->idx store | full fence | used_event/flags load (vq_host_need_irq)
 *             card: used_event/flags store | full fence | used->idx load (vq_card_irqs, get)
 * With the two full fences of a pair, at least one side sees the other's store: either the
 * notifier sees the request for a notification, or the waiter sees the new index itself.
 */
#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include "vq.h"

#define VQ_PAGE 4096u       /* the used ring and the indirect tables start on their own page */

/* Shared-memory accessors: untorn single loads/stores, little-endian on the bus. */
static inline uint16_t ld16(const volatile uint16_t *p)
{
	return le16toh(__atomic_load_n(p, __ATOMIC_RELAXED));
}

static inline uint16_t ld16_acquire(const volatile uint16_t *p)
{
	return le16toh(__atomic_load_n(p, __ATOMIC_ACQUIRE));
}

static inline uint32_t ld32(const volatile uint32_t *p)
{
	return le32toh(__atomic_load_n(p, __ATOMIC_RELAXED));
}

static inline uint64_t ld64(const volatile __u64 *p)
{
	return le64toh(__atomic_load_n(p, __ATOMIC_RELAXED));
}

static inline void st16(volatile uint16_t *p, uint16_t v)
{
	__atomic_store_n(p, htole16(v), __ATOMIC_RELAXED);
}

static inline void st16_release(volatile uint16_t *p, uint16_t v)
{
	__atomic_store_n(p, htole16(v), __ATOMIC_RELEASE);
}

static inline void st32(volatile uint32_t *p, uint32_t v)
{
	__atomic_store_n(p, htole32(v), __ATOMIC_RELAXED);
}

static inline void full_fence(void)
{
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
}

static bool vq_size_ok(uint16_t size)
{
	return size && size <= VOS_QUEUE_MAX && !(size & (size - 1));
}

/* [addr, addr + len) inside [off, off + wlen), with no overflow anywhere. */
static bool vq_in_window(uint64_t off, uint64_t wlen, uint64_t addr, uint64_t len)
{
	return addr >= off && len <= wlen && addr - off <= wlen - len;
}

/* Log why the peer's ring is refused; the framework logs the device reset itself. */
#define vq_bad(fmt, ...) (vos_log(LOG_WARNING, "virtqueue: " fmt, __VA_ARGS__), -EBADMSG)

/* ---------------------------------------------------------------------------------------- */
/* Device half (host). */

int vq_host_init(struct vq_host *vq, uint16_t size, uint64_t features,
		 void *desc, void *avail, void *used, uint64_t win_off, uint64_t win_len,
		 const struct vq_mem_ops *mem, void *mem_ctx)
{
	if (!vq_size_ok(size) || !desc || !avail || !used || !mem || !mem->read || !mem->write)
		return -EINVAL;
	if ((uintptr_t)desc % VRING_DESC_ALIGN_SIZE || (uintptr_t)avail % VRING_AVAIL_ALIGN_SIZE ||
	    (uintptr_t)used % VRING_USED_ALIGN_SIZE || win_off + win_len < win_off)
		return -EINVAL;
	*vq = (struct vq_host){
		.size = size,
		.event_idx = features & (1ULL << VIRTIO_RING_F_EVENT_IDX),
		.indirect = features & (1ULL << VIRTIO_RING_F_INDIRECT_DESC),
		.desc = desc, .avail = avail, .used = used,
		.win_off = win_off, .win_len = win_len,
		.mem = mem, .mem_ctx = mem_ctx,
	};
	return 0;
}

/* avail_event lives after the used ring: written by the host, read by the card. */
static volatile uint16_t *host_avail_event(struct vq_host *vq)
{
	return (volatile uint16_t *)&vq->used->ring[vq->size];
}

/* Append one segment to r, checking order, window and totals. */
static int host_seg(struct vq_host *vq, struct vos_req *r, uint64_t addr, uint32_t len,
		    bool write, uint64_t tot[2])
{
	if (r->nseg >= VOS_REQ_SEGS)
		return vq_bad("head %u: more than %u segments", r->head, VOS_REQ_SEGS);
	if (!write && r->nseg && r->seg[r->nseg - 1].write)
		return vq_bad("head %u: readable segment after a writable one", r->head);
	if (!vq_in_window(vq->win_off, vq->win_len, addr, len))
		return vq_bad("head %u: segment 0x%llx+%u outside the window", r->head,
			      (unsigned long long)addr, len);
	tot[write] += len;
	if (tot[write] > UINT32_MAX)
		return vq_bad("head %u: buffer longer than 4 GiB", r->head);
	r->seg[r->nseg++] = (struct vos_seg){ .addr = addr, .len = len, .write = write };
	return 0;
}

/* An indirect descriptor: read its table once into local memory, then walk the copy. */
static int host_indirect(struct vq_host *vq, struct vos_req *r, uint64_t addr, uint32_t len,
			 uint16_t flags, uint64_t tot[2])
{
	struct vring_desc tbl[VOS_REQ_SEGS];
	unsigned n, i = 0, k;
	int ret;

	if (!vq->indirect)
		return vq_bad("head %u: indirect descriptor not negotiated", r->head);
	if (flags & VRING_DESC_F_NEXT)
		return vq_bad("head %u: indirect descriptor with NEXT", r->head);
	if (!len || len % sizeof(struct vring_desc) || len > sizeof(tbl))
		return vq_bad("head %u: indirect table of %u bytes", r->head, len);
	if (!vq_in_window(vq->win_off, vq->win_len, addr, len))
		return vq_bad("head %u: indirect table outside the window", r->head);
	ret = vq->mem->read(vq->mem_ctx, tbl, len, addr);
	if (ret < 0)
		return ret;
	n = len / sizeof(struct vring_desc);
	for (k = 1;; k++) {
		uint16_t f = le16toh(tbl[i].flags), next = le16toh(tbl[i].next);

		if (f & VRING_DESC_F_INDIRECT)
			return vq_bad("head %u: nested indirect table", r->head);
		ret = host_seg(vq, r, le64toh(tbl[i].addr), le32toh(tbl[i].len),
			       f & VRING_DESC_F_WRITE, tot);
		if (ret < 0)
			return ret;
		if (!(f & VRING_DESC_F_NEXT))
			return 0;
		if (next >= n || k >= n)
			return vq_bad("head %u: indirect next %u of %u (or a loop)", r->head, next, n);
		i = next;
	}
}

int vq_host_pop(struct vq_host *vq, struct vos_req *r)
{
	uint16_t mask = vq->size - 1, avail_idx, idx, ndesc;
	uint64_t tot[2] = { 0, 0 };
	int ret;

	/* [A-AVAIL] pairs with [R-AVAIL]: the entries below are at least this new. */
	avail_idx = ld16_acquire(&vq->avail->idx);
	if (avail_idx == vq->last_avail) {
		if (!vq->event_idx || vq->kicks_off)
			return 0;
		/* Empty: ask for a kick at the next entry, then look again ([MB-KICK]). */
		st16(host_avail_event(vq), vq->last_avail);
		full_fence();
		avail_idx = ld16_acquire(&vq->avail->idx);  /* [A-AVAIL] as above */
		if (avail_idx == vq->last_avail)
			return 0;
	}
	if ((uint16_t)(avail_idx - vq->last_avail) > vq->size)
		return vq_bad("avail idx jumped from %u to %u (size %u)", vq->last_avail, avail_idx,
			      vq->size);
	idx = ld16(&vq->avail->ring[vq->last_avail & mask]);
	if (idx >= vq->size)
		return vq_bad("head %u out of range (size %u)", idx, vq->size);
	r->head = idx;
	r->nseg = 0;
	for (ndesc = 1;; ndesc++) {
		volatile struct vring_desc *d = &vq->desc[idx];
		/* One read of each field; only the copies are used. */
		uint64_t addr = ld64(&d->addr);
		uint32_t len = ld32(&d->len);
		uint16_t flags = ld16(&d->flags), next = ld16(&d->next);

		if (flags & VRING_DESC_F_INDIRECT) {
			ret = host_indirect(vq, r, addr, len, flags, tot);
			if (ret < 0)
				return ret;
			break;
		}
		ret = host_seg(vq, r, addr, len, flags & VRING_DESC_F_WRITE, tot);
		if (ret < 0)
			return ret;
		if (!(flags & VRING_DESC_F_NEXT))
			break;
		if (next >= vq->size)
			return vq_bad("head %u: next %u out of range", r->head, next);
		if (ndesc >= vq->size)
			return vq_bad("head %u: chain longer than the queue (a loop)", r->head);
		idx = next;
	}
	r->out_len = tot[0];
	r->in_len = tot[1];
	vq->last_avail++;
	return 1;
}

int vq_host_push(struct vq_host *vq, const struct vos_req *r, uint32_t written)
{
	volatile struct vring_used_elem *e = &vq->used->ring[vq->used_idx & (vq->size - 1)];

	if (written > r->in_len)
		return -EINVAL;
	st32(&e->id, r->head);
	st32(&e->len, written);
	vq->used_idx++;
	/* [R-USED] pairs with [A-USED]: the element is visible before the index. */
	st16_release(&vq->used->idx, vq->used_idx);
	return 0;
}

bool vq_host_need_irq(struct vq_host *vq)
{
	uint16_t old = vq->signalled_used, new = vq->used_idx;
	bool valid = vq->signalled_valid;

	if (old == new)
		return false;
	/* [MB-IRQ]: used->idx (stored by push) before used_event / avail->flags. */
	full_fence();
	vq->signalled_used = new;
	vq->signalled_valid = true;
	if (vq->event_idx)
		return !valid || vring_need_event(ld16(&vq->avail->ring[vq->size]), new, old);
	return !(ld16(&vq->avail->flags) & VRING_AVAIL_F_NO_INTERRUPT);
}

bool vq_host_kicks(struct vq_host *vq, bool on)
{
	vq->kicks_off = !on;
	if (vq->event_idx)
		/* Off: an event index just behind us, which the card's index cannot reach. */
		st16(host_avail_event(vq), on ? vq->last_avail : (uint16_t)(vq->last_avail - 1));
	else
		st16(&vq->used->flags, on ? 0 : VRING_USED_F_NO_NOTIFY);
	if (!on)
		return false;
	/* [MB-KICK]: the request for kicks before the second look at avail->idx. */
	full_fence();
	return ld16(&vq->avail->idx) != vq->last_avail;
}

/* Copy between buf and the segments of one direction, from byte `off` of that part. */
static ssize_t req_copy(struct vq_host *vq, const struct vos_req *r, bool write, size_t off,
			void *buf, size_t len)
{
	unsigned nseg = r->nseg < VOS_REQ_SEGS ? r->nseg : VOS_REQ_SEGS, i;
	uint8_t *p = buf;
	size_t done = 0;

	for (i = 0; i < nseg && done < len; i++) {
		uint64_t addr;
		size_t n;
		int ret;

		if (r->seg[i].write != write)
			continue;
		if (off >= r->seg[i].len) {
			off -= r->seg[i].len;
			continue;
		}
		addr = r->seg[i].addr + off;
		n = r->seg[i].len - off;
		off = 0;
		/* Coalesce segments that follow each other in the window. */
		while (i + 1 < nseg && r->seg[i + 1].write == write &&
		       r->seg[i + 1].addr == addr + n && n < len - done) {
			i++;
			n += r->seg[i].len;
		}
		if (n > len - done)
			n = len - done;
		ret = write ? vq->mem->write(vq->mem_ctx, p + done, n, addr)
			    : vq->mem->read(vq->mem_ctx, p + done, n, addr);
		if (ret < 0)
			return ret;
		done += n;
	}
	return done;
}

ssize_t vq_req_read(struct vq_host *vq, const struct vos_req *r, size_t off, void *buf,
		    size_t len)
{
	return req_copy(vq, r, false, off, buf, len);
}

ssize_t vq_req_write(struct vq_host *vq, const struct vos_req *r, size_t off,
		     const void *buf, size_t len)
{
	return req_copy(vq, r, true, off, (void *)buf, len);
}

/* ---------------------------------------------------------------------------------------- */
/* Driver half (card). */

/* Byte offsets from the start of the ring memory. */
struct vq_layout {
	size_t avail, used, indirect, total;
};

static int vq_layout(uint16_t size, uint64_t features, struct vq_layout *l)
{
	size_t end;

	if (!vq_size_ok(size))
		return -EINVAL;
	l->avail = sizeof(struct vring_desc) * size;
	end = l->avail + sizeof(uint16_t) * (3 + size);        /* flags, idx, ring, used_event */
	l->used = (end + VQ_PAGE - 1) & ~(size_t)(VQ_PAGE - 1);
	end = l->used + sizeof(uint16_t) * 3 + sizeof(struct vring_used_elem) * size;
	l->indirect = 0;
	if (features & (1ULL << VIRTIO_RING_F_INDIRECT_DESC)) {
		l->indirect = (end + VQ_PAGE - 1) & ~(size_t)(VQ_PAGE - 1);
		end = l->indirect + sizeof(struct vring_desc) * VQ_INDIRECT_MAX * size;
	}
	l->total = (end + VQ_PAGE - 1) & ~(size_t)(VQ_PAGE - 1);
	return 0;
}

size_t vq_card_ring_bytes(uint16_t size, uint64_t features)
{
	struct vq_layout l;

	return vq_layout(size, features, &l) ? 0 : l.total;
}

int vq_card_init(struct vq_card *vq, uint16_t size, uint64_t features, void *mem,
		 uint8_t *win_base, uint64_t win_off, uint64_t win_len)
{
	uintptr_t m = (uintptr_t)mem, b = (uintptr_t)win_base;
	struct vq_layout l;
	uint8_t *p = mem;

	memset(vq, 0, sizeof(*vq));
	if (vq_layout(size, features, &l) || !mem || !win_base || m % VQ_PAGE ||
	    win_off + win_len < win_off || m < b || !vq_in_window(0, win_len, m - b, l.total))
		return -EINVAL;
	vq->token = calloc(size, sizeof(*vq->token));
	vq->in_len = calloc(size, sizeof(*vq->in_len));
	vq->chain = calloc(size, sizeof(*vq->chain));
	vq->next = calloc(size, sizeof(*vq->next));
	if (!vq->token || !vq->in_len || !vq->chain || !vq->next) {
		vq_card_destroy(vq);
		return -ENOMEM;
	}
	memset(mem, 0, l.total);
	vq->size = size;
	vq->event_idx = features & (1ULL << VIRTIO_RING_F_EVENT_IDX);
	vq->indirect = features & (1ULL << VIRTIO_RING_F_INDIRECT_DESC);
	vq->desc = mem;
	vq->avail = (struct vring_avail *)(p + l.avail);
	vq->used = (struct vring_used *)(p + l.used);
	vq->indirect_tables = vq->indirect ? (struct vring_desc *)(p + l.indirect) : NULL;
	vq->win_base = win_base;
	vq->win_off = win_off;
	vq->win_len = win_len;
	for (unsigned i = 0; i < size; i++)
		vq->next[i] = (uint16_t)(i + 1);
	vq->free_head = 0;
	vq->num_free = size;
	return 0;
}

void vq_card_destroy(struct vq_card *vq)
{
	free(vq->token);
	free(vq->in_len);
	free(vq->chain);
	free(vq->next);
	memset(vq, 0, sizeof(*vq));  /* size 0: every call on it is a no-op or -EINVAL */
}

uint64_t vq_card_off(const struct vq_card *vq, const void *p)
{
	return (uintptr_t)p - (uintptr_t)vq->win_base + vq->win_off;
}

/* used_event lives after the avail ring: written by the card, read by the host. */
static uint16_t *card_used_event(struct vq_card *vq)
{
	return &vq->avail->ring[vq->size];
}

/* avail_event lives after the used ring: written by the host, read by the card. */
static uint16_t *card_avail_event(struct vq_card *vq)
{
	return (uint16_t *)&vq->used->ring[vq->size];
}

static void card_fill(struct vring_desc *d, uint64_t addr, uint32_t len, uint16_t flags,
		      uint16_t next)
{
	d->addr = htole64(addr);
	d->len = htole32(len);
	d->flags = htole16(flags);
	d->next = htole16(next);
}

int vq_card_add(struct vq_card *vq, const struct vos_sg *sg, unsigned nout, unsigned nin,
		void *token)
{
	unsigned n = nout + nin, k;
	uint16_t head = vq->free_head, i;
	uint64_t in_len = 0;

	if (!token || !n || n < nout || n > VOS_REQ_SEGS || !vq->size)
		return -EINVAL;
	for (k = 0; k < n; k++) {
		uintptr_t a = (uintptr_t)sg[k].addr, b = (uintptr_t)vq->win_base;

		if (a < b || !vq_in_window(0, vq->win_len, a - b, sg[k].len))
			return -EINVAL;
		if (k >= nout)
			in_len += sg[k].len;
	}
	if (in_len > UINT32_MAX)
		return -EINVAL;

	if (vq->indirect && n > 1 && n <= VQ_INDIRECT_MAX) {
		struct vring_desc *tbl;

		if (!vq->num_free)
			return -ENOSPC;
		tbl = vq->indirect_tables + (size_t)head * VQ_INDIRECT_MAX;
		for (k = 0; k < n; k++)
			card_fill(&tbl[k], vq_card_off(vq, sg[k].addr), sg[k].len,
				  (k >= nout ? VRING_DESC_F_WRITE : 0) |
				  (k + 1 < n ? VRING_DESC_F_NEXT : 0), k + 1 < n ? k + 1 : 0);
		card_fill(&vq->desc[head], vq_card_off(vq, tbl), n * sizeof(*tbl),
			  VRING_DESC_F_INDIRECT, 0);
		vq->free_head = vq->next[head];
		vq->num_free--;
		vq->chain[head] = 1;
	} else {
		if (n > vq->size)
			return -EINVAL;
		if (n > vq->num_free)
			return -ENOSPC;
		/* The free list links are the chain's links: take its first n entries. */
		for (k = 0, i = head; k < n; k++, i = vq->next[i])
			card_fill(&vq->desc[i], vq_card_off(vq, sg[k].addr), sg[k].len,
				  (k >= nout ? VRING_DESC_F_WRITE : 0) |
				  (k + 1 < n ? VRING_DESC_F_NEXT : 0), k + 1 < n ? vq->next[i] : 0);
		vq->free_head = i;
		vq->num_free -= n;
		vq->chain[head] = n;
	}
	vq->token[head] = token;
	vq->in_len[head] = in_len;
	__atomic_store_n(&vq->avail->ring[vq->avail_idx & (vq->size - 1)], htole16(head),
			 __ATOMIC_RELAXED);
	vq->avail_idx++;
	/* [R-AVAIL] pairs with [A-AVAIL]: descriptors and ring entry before the index. */
	st16_release(&vq->avail->idx, vq->avail_idx);
	return 0;
}

int vq_card_get(struct vq_card *vq, void **token, uint32_t *len)
{
	uint16_t used_idx, id, tail, k;
	volatile struct vring_used_elem *e;
	uint32_t id32, n;

	if (!vq->size)
		return 0;
	/* [A-USED] pairs with [R-USED]: the element below is at least this new. */
	used_idx = ld16_acquire(&vq->used->idx);
	if (used_idx == vq->last_used) {
		if (!vq->event_idx || vq->irqs_off)
			return 0;
		/* Empty: ask for an IRQ at the next element, then look again ([MB-IRQ]). */
		st16(card_used_event(vq), vq->last_used);
		full_fence();
		used_idx = ld16_acquire(&vq->used->idx);    /* [A-USED] as above */
		if (used_idx == vq->last_used)
			return 0;
	}
	if ((uint16_t)(used_idx - vq->last_used) > vq->size)
		return vq_bad("used idx jumped from %u to %u (size %u)", vq->last_used, used_idx,
			      vq->size);
	e = &vq->used->ring[vq->last_used & (vq->size - 1)];
	id32 = ld32(&e->id);
	n = ld32(&e->len);
	if (id32 >= vq->size || !vq->token[id32])
		return vq_bad("used id %u not in flight", id32);
	id = id32;
	if (n > vq->in_len[id])
		return vq_bad("used id %u: %u bytes written into a %u-byte buffer", id, n,
			      vq->in_len[id]);
	*token = vq->token[id];
	*len = n;
	vq->token[id] = NULL;
	for (k = 1, tail = id; k < vq->chain[id]; k++)
		tail = vq->next[tail];
	vq->next[tail] = vq->free_head;
	vq->free_head = id;
	vq->num_free += vq->chain[id];
	vq->last_used++;
	return 1;
}

bool vq_card_need_kick(struct vq_card *vq)
{
	uint16_t old = vq->kicked_avail, new = vq->avail_idx;

	if (old == new)
		return false;
	/* [MB-KICK]: avail->idx (stored by add) before avail_event / used->flags. */
	full_fence();
	vq->kicked_avail = new;
	if (vq->event_idx)
		return vring_need_event(ld16(card_avail_event(vq)), new, old);
	return !(ld16(&vq->used->flags) & VRING_USED_F_NO_NOTIFY);
}

bool vq_card_irqs(struct vq_card *vq, bool on)
{
	if (!vq->size)
		return false;
	vq->irqs_off = !on;
	if (vq->event_idx)
		/* Off: an event index just behind us, which the host's index cannot reach. */
		st16(card_used_event(vq), on ? vq->last_used : (uint16_t)(vq->last_used - 1));
	else
		st16(&vq->avail->flags, on ? 0 : VRING_AVAIL_F_NO_INTERRUPT);
	if (!on)
		return false;
	/* [MB-IRQ]: the request for IRQs before the second look at used->idx. */
	full_fence();
	return ld16(&vq->used->idx) != vq->last_used;
}

unsigned vq_card_space(const struct vq_card *vq)
{
	return vq->num_free;
}
