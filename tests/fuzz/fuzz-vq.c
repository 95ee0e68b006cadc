// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * fuzz-vq.c - libFuzzer target: the split virtqueue of virtio over SCIF
 * (virtio-over-scif/vq.c) as a pure function, each half against a lying peer.
 *
 * Host half (the card lies): a queue of 1..1024 entries whose descriptor table and avail ring
 * come from the input, each in an allocation of exactly its size, and a window of 256 B..64 KiB
 * (indirect tables, request data) behind vq_mem_ops that fail the run on any access outside
 * it. Every request popped must lie inside the window, readable segments before writable ones,
 * with out_len and in_len the sums of its segments, and be what a reference walk of the chain
 * (written from the virtio spec, apart from vq.c) finds; what vq_host_pop refuses, the
 * reference must refuse too. Its data is read and written through vq_req_read/vq_req_write and
 * compared byte for byte with a model of the window; it is pushed at once or later, in any
 * order, and the used ring must show it. Between pops the card rewrites its rings and window
 * and publishes entries, and the mem ops may start failing; an empty pop, vq_host_need_irq
 * and vq_host_kicks are checked against the fields they read and write. A refused ring
 * (-EBADMSG, or the failing mem op's -EIO) ends the half: the device would be reset.
 *
 * Card half (the host lies): vq_card_init lays out a queue of 1..256 entries in a window with
 * a buffer pool behind the rings; buffers of 0..255 segments are added, an honest host (a
 * vq_host over the same memory) pops them, must see exactly the segments added, and pushes
 * them back, and a lying host writes used elements, used->idx and any byte of the used ring.
 * vq_card_add must succeed, or fail with -ENOSPC or -EINVAL, exactly as a model of the free
 * descriptors says; vq_card_get may only return a token in flight with a length within its
 * buffer, in the honest host's order until anyone lied, and -EBADMSG only after a lie; the
 * free descriptors always match the model.
 *
 * Input (reads past its end give zeros): byte 0: bit 0 VIRTIO_RING_F_EVENT_IDX, bit 1
 * VIRTIO_RING_F_INDIRECT_DESC, bits 2-5 log2 of the queue size (modulo 11 for the host half,
 * 9 for the card half), bit 7 the card half. Both halves then read the window's RAS offset
 * (u64) and a starting ring index (u16: the queue has been running for a while). Host half:
 * window size (u8, 256 << n % 9 bytes); avail flags, idx and used_event (u16 each); the avail
 * ring (u16 each); the descriptor table (16 bytes each, addresses counted from the window's
 * offset so that its edges are near); u16 count and that many bytes for the window's start
 * (the rest is a pattern); then ops. Card half: ops. An op is a byte (op % 8 says which)
 * followed by its operands: see host_op() and card_op().
 * FUZZ_VQ_VERBOSE=1 shows vq.c's log lines (why a ring was refused) when replaying an input.
 */
#include <endian.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include "fuzz.h"
#include "vq.h"

#define EVT (1ULL << VIRTIO_RING_F_EVENT_IDX)
#define IND (1ULL << VIRTIO_RING_F_INDIRECT_DESC)
#define OPS_MAX 512                  /* ops per input */
#define COPY_MAX (128u << 10)        /* bytes of one request copied through vq_req_* */
#define HELD_MAX 8                   /* popped requests the host half holds back */
#define POOL (16u << 10)             /* card half: buffer memory behind the rings */
#define SEG_MAX 1024                 /* card half: longest generated segment */

/* ---- the window: vq_mem_ops over an array ------------------------------------------- */

struct mem {
	uint8_t *buf;
	uint64_t off, len;           /* where the window sits in the RAS */
	int fail_in;                 /* mem op calls until they fail with -EIO; < 0: never */
};

static bool in_window(const struct mem *m, uint64_t addr, uint64_t len)
{
	return addr >= m->off && len <= m->len && addr - m->off <= m->len - len;
}

/* Every access must lie inside the window: vq.c checked each segment and table against it. */
static int mem_check(struct mem *m, size_t len, uint64_t off)
{
	if (!in_window(m, off, len))
		fz_fail("mem op at 0x%llx+%zu, the window is 0x%llx+%llu",
			(unsigned long long)off, len, (unsigned long long)m->off,
			(unsigned long long)m->len);
	if (!m->fail_in)
		return -EIO;
	if (m->fail_in > 0)
		m->fail_in--;
	return 0;
}

static int mem_read(void *ctx, void *buf, size_t len, uint64_t off)
{
	struct mem *m = ctx;
	int ret = mem_check(m, len, off);

	if (!ret)
		memcpy(buf, m->buf + (off - m->off), len);
	return ret;
}

static int mem_write(void *ctx, const void *buf, size_t len, uint64_t off)
{
	struct mem *m = ctx;
	int ret = mem_check(m, len, off);

	if (!ret)
		memcpy(m->buf + (off - m->off), buf, len);
	return ret;
}

static const struct vq_mem_ops mem_ops = { .read = mem_read, .write = mem_write };

static uint16_t rd16(const volatile uint16_t *p)
{
	return le16toh(*p);
}

static void wr16(volatile uint16_t *p, uint16_t v)
{
	*p = htole16(v);
}

/* The documented invariants of a request vq_host_pop returned. */
static void check_req(const struct vq_host *vq, const struct mem *m, const struct vos_req *r)
{
	uint64_t tot[2] = { 0, 0 };

	if (r->head >= vq->size)
		fz_fail("popped head %u of a queue of %u", r->head, vq->size);
	if (!r->nseg || r->nseg > VOS_REQ_SEGS || (!vq->indirect && r->nseg > vq->size))
		fz_fail("popped %u segments (queue of %u, indirect %d)", r->nseg, vq->size,
			vq->indirect);
	for (unsigned i = 0; i < r->nseg; i++) {
		const struct vos_seg *s = &r->seg[i];

		if (s->write > 1)
			fz_fail("segment %u: write flag %u", i, s->write);
		if (!in_window(m, s->addr, s->len))
			fz_fail("segment %u at 0x%llx+%u outside the window", i,
				(unsigned long long)s->addr, s->len);
		if (i && !s->write && r->seg[i - 1].write)
			fz_fail("segment %u: readable after a writable one", i);
		tot[s->write] += s->len;
	}
	if (tot[0] != r->out_len || tot[1] != r->in_len)
		fz_fail("out_len %u in_len %u, the segments add up to %llu and %llu", r->out_len,
			r->in_len, (unsigned long long)tot[0], (unsigned long long)tot[1]);
}

/* ---- host half -------------------------------------------------------------------- */

struct hfz {
	struct fz *f;
	struct vq_host vq;
	struct mem mem;
	uint8_t *model;              /* what the window must hold */
	struct vring_desc *desc;     /* the card's rings, each allocated to its exact size */
	struct vring_avail *avail;
	struct vring_used *used;
	size_t desc_bytes, avail_bytes;
	struct vos_req *held[HELD_MAX];
	unsigned nheld;
	bool dead;                   /* the ring was refused: the device is reset */
};

/* A mem op failed: fine only if the fuzzer made it fail. */
static void host_mem_error(struct hfz *h, long ret, const char *what)
{
	if (ret != -EIO || h->mem.fail_in != 0)
		fz_fail("%s returned %ld", what, ret);
	/* A write may have been cut anywhere: take the window as it is. */
	memcpy(h->model, h->mem.buf, h->mem.len);
}

/* vq_req_read of [off, off + len) of the readable part, against the window's model. */
static void host_read(struct hfz *h, const struct vos_req *r, size_t off, size_t len)
{
	size_t want = off < r->out_len ? r->out_len - off : 0, done = 0;
	uint8_t *buf = malloc(len ? len : 1);
	ssize_t n;

	if (!buf)
		return;
	want = want < len ? want : len;
	n = vq_req_read(&h->vq, r, off, buf, len);
	if (n < 0) {
		host_mem_error(h, n, "vq_req_read");
		free(buf);
		return;
	}
	if ((size_t)n != want)
		fz_fail("vq_req_read(%zu, %zu) of %u readable bytes returned %zd", off, len,
			r->out_len, n);
	for (unsigned i = 0; i < r->nseg && done < want; i++) {
		const struct vos_seg *s = &r->seg[i];
		size_t k;

		if (s->write)
			continue;
		if (off >= s->len) {
			off -= s->len;
			continue;
		}
		k = s->len - off < want - done ? s->len - off : want - done;
		if (memcmp(buf + done, h->model + (s->addr - h->mem.off) + off, k))
			fz_fail("vq_req_read: bytes %zu..%zu differ from segment %u", done,
				done + k, i);
		done += k;
		off = 0;
	}
	free(buf);
}

/* vq_req_write of a pattern at [off, off + len) of the writable part; the window must then
 * hold what the model says, and nothing else may have changed. */
static void host_write(struct hfz *h, const struct vos_req *r, size_t off, size_t len)
{
	size_t want = off < r->in_len ? r->in_len - off : 0, done = 0;
	uint8_t *buf = malloc(len ? len : 1);
	ssize_t n;

	if (!buf)
		return;
	for (size_t i = 0; i < len; i++)
		buf[i] = (uint8_t)(i * 7 + r->head + off);
	want = want < len ? want : len;
	n = vq_req_write(&h->vq, r, off, buf, len);
	if (n < 0) {
		host_mem_error(h, n, "vq_req_write");
		free(buf);
		return;
	}
	if ((size_t)n != want)
		fz_fail("vq_req_write(%zu, %zu) of %u writable bytes returned %zd", off, len,
			r->in_len, n);
	for (unsigned i = 0; i < r->nseg && done < want; i++) {
		const struct vos_seg *s = &r->seg[i];
		size_t k;

		if (!s->write)
			continue;
		if (off >= s->len) {
			off -= s->len;
			continue;
		}
		k = s->len - off < want - done ? s->len - off : want - done;
		memcpy(h->model + (s->addr - h->mem.off) + off, buf + done, k);
		done += k;
		off = 0;
	}
	if (memcmp(h->model, h->mem.buf, h->mem.len))
		fz_fail("vq_req_write: the window differs from its model");
	free(buf);
}

static void host_push(struct hfz *h, struct vos_req *r, uint32_t written)
{
	uint16_t idx = h->vq.used_idx;
	volatile struct vring_used_elem *e = &h->used->ring[idx & (h->vq.size - 1)];
	int ret = vq_host_push(&h->vq, r, written);

	if (written > r->in_len) {
		if (ret != -EINVAL || h->vq.used_idx != idx)
			fz_fail("push of %u bytes into %u returned %d", written, r->in_len, ret);
		written = r->in_len;
		ret = vq_host_push(&h->vq, r, written);
	}
	if (ret)
		fz_fail("vq_host_push returned %d", ret);
	if (rd16(&h->used->idx) != (uint16_t)(idx + 1) || h->vq.used_idx != (uint16_t)(idx + 1) ||
	    le32toh(e->id) != r->head || le32toh(e->len) != written)
		fz_fail("push: used idx %u element %u/%u, want %u and %u/%u", rd16(&h->used->idx),
			le32toh(e->id), le32toh(e->len), (uint16_t)(idx + 1), r->head, written);
	free(r);
}

/* Append a segment as the rules in vq.h say: -1 if the ring is invalid. */
static int ref_seg(const struct hfz *h, struct vos_req *r, uint64_t tot[2], uint64_t addr,
		   uint32_t len, bool write)
{
	if (r->nseg == VOS_REQ_SEGS || (!write && r->nseg && r->seg[r->nseg - 1].write) ||
	    !in_window(&h->mem, addr, len) || (tot[write] += len) > UINT32_MAX)
		return -1;
	r->seg[r->nseg++] = (struct vos_seg){ .addr = addr, .len = len, .write = write };
	return 0;
}

/*
 * The request at the next avail entry, read the way the virtio spec describes it and written
 * apart from vq.c (a loop is a descriptor seen twice, not a count): 1 and *r filled, 0 empty,
 * -1 the card broke the ring. vq_host_pop must agree.
 */
static int ref_pop(const struct hfz *h, struct vos_req *r)
{
	uint16_t size = h->vq.size, last = h->vq.last_avail, avail = rd16(&h->avail->idx);
	uint8_t seen[VOS_QUEUE_MAX] = { 0 }, tseen[VOS_REQ_SEGS];
	uint64_t tot[2] = { 0, 0 };
	unsigned idx;

	if (avail == last)
		return 0;
	if ((uint16_t)(avail - last) > size)
		return -1;
	idx = r->head = rd16(&h->avail->ring[last % size]);
	r->nseg = 0;
	while (idx < size && !seen[idx]++) {
		const struct vring_desc *d = &h->desc[idx];
		uint16_t fl = le16toh(d->flags);
		uint32_t len = le32toh(d->len);
		uint64_t addr = le64toh(d->addr);
		const uint8_t *t;
		unsigned n, i = 0;

		if (!(fl & VRING_DESC_F_INDIRECT)) {
			if (ref_seg(h, r, tot, addr, len, fl & VRING_DESC_F_WRITE))
				return -1;
			if (!(fl & VRING_DESC_F_NEXT))
				goto done;
			idx = le16toh(d->next);
			continue;
		}
		/* An indirect table: the whole rest of the request, inside the window. */
		n = len / sizeof(struct vring_desc);
		if (!h->vq.indirect || fl & VRING_DESC_F_NEXT || !n || n * sizeof(*d) != len ||
		    n > VOS_REQ_SEGS || !in_window(&h->mem, addr, len))
			return -1;
		t = h->model + (addr - h->mem.off);
		memset(tseen, 0, n);
		for (;;) {
			struct vring_desc e;

			memcpy(&e, t + i * sizeof(e), sizeof(e));   /* the window is not aligned */
			fl = le16toh(e.flags);
			if (tseen[i]++ || fl & VRING_DESC_F_INDIRECT ||
			    ref_seg(h, r, tot, le64toh(e.addr), le32toh(e.len),
				    fl & VRING_DESC_F_WRITE))
				return -1;
			if (!(fl & VRING_DESC_F_NEXT))
				goto done;
			if ((i = le16toh(e.next)) >= n)
				return -1;
		}
	}
	return -1;
done:
	r->out_len = tot[0];
	r->in_len = tot[1];
	return 1;
}

/*
 * One vq_host_pop: 1 popped (then copied and pushed or held), 0 empty, -1 refused. With
 * `args` (op 0), where to read and write and how to push come from the input: u16 offset and
 * u16 length of a second read, u16 offset of the write; bit 3 of `how`: hold the request
 * back, bit 4: push u32 bytes written (else its whole writable part).
 */
static int host_pop(struct hfz *h, uint8_t how, bool args)
{
	struct vos_req *r, *ref;
	uint16_t before = h->vq.last_avail;
	int ret, want;
	size_t off;

	if (h->dead || !(r = malloc(sizeof(*r))))
		return -1;
	if (!(ref = malloc(sizeof(*ref)))) {
		free(r);
		return -1;
	}
	want = ref_pop(h, ref);
	ret = vq_host_pop(&h->vq, r);
	if (ret != want && !(ret == -EBADMSG && want < 0) && !(ret == -EIO && !h->mem.fail_in))
		fz_fail("vq_host_pop returned %d, the reference %d", ret, want);
	if (ret == 1 && (r->head != ref->head || r->nseg != ref->nseg ||
			 memcmp(r->seg, ref->seg, r->nseg * sizeof(r->seg[0]))))
		fz_fail("popped head %u with %u segments, the reference head %u with %u", r->head,
			r->nseg, ref->head, ref->nseg);
	free(ref);
	if (ret < 0) {
		if (ret != -EBADMSG)
			host_mem_error(h, ret, "vq_host_pop");
		if (h->vq.last_avail != before)
			fz_fail("refused pop moved last_avail");
		free(r);
		h->dead = true;
		return -1;
	}
	if (!ret) {
		if (h->vq.last_avail != before || rd16(&h->avail->idx) != before)
			fz_fail("empty pop with avail idx %u, last_avail %u -> %u",
				rd16(&h->avail->idx), before, h->vq.last_avail);
		if (h->vq.event_idx && !h->vq.kicks_off &&
		    rd16((volatile uint16_t *)&h->used->ring[h->vq.size]) != before)
			fz_fail("empty pop did not ask for a kick at %u", before);
		free(r);
		return 0;
	}
	if (h->vq.last_avail != (uint16_t)(before + 1))
		fz_fail("pop moved last_avail from %u to %u", before, h->vq.last_avail);
	check_req(&h->vq, &h->mem, r);
	host_read(h, r, 0, r->out_len < COPY_MAX ? r->out_len : COPY_MAX);
	if (args) {
		off = fz_u16(h->f);
		host_read(h, r, off, fz_u16(h->f));
	}
	host_write(h, r, args ? fz_u16(h->f) : 0, r->in_len < COPY_MAX ? r->in_len : COPY_MAX);
	if (how & 8) {                        /* hold it back, push the oldest if full */
		if (h->nheld == HELD_MAX) {
			host_push(h, h->held[0], h->held[0]->in_len);
			memmove(h->held, h->held + 1, --h->nheld * sizeof(h->held[0]));
		}
		h->held[h->nheld++] = r;
	} else {
		host_push(h, r, how & 16 && args ? fz_u32(h->f) : r->in_len);
	}
	return 1;
}

/* Write n input bytes at off into a region (the card rewriting its memory). */
static void patch(struct fz *f, void *region, size_t size, uint8_t *model)
{
	size_t off = fz_u16(f) % size, n = fz_u8(f) % 17;

	for (size_t i = 0; i < n && off + i < size; i++) {
		uint8_t b = fz_u8(f);

		((volatile uint8_t *)region)[off + i] = b;
		if (model)
			model[off + i] = b;
	}
}

static void host_op(struct hfz *h)
{
	uint8_t op = fz_u8(h->f);
	uint16_t mask = h->vq.size - 1;

	switch (op % 8) {
	case 0: /* pop once; bit 3: hold it back, bit 4: push a length from the input */
		host_pop(h, op, true);
		break;
	case 1: /* push a held request (any of them: out of order) */
		if (h->nheld) {
			unsigned i = fz_u8(h->f) % h->nheld;

			host_push(h, h->held[i], fz_u32(h->f) % (h->held[i]->in_len + 1ull));
			memmove(h->held + i, h->held + i + 1, (--h->nheld - i) * sizeof(h->held[0]));
		}
		break;
	case 2: /* the card rewrites bytes of its descriptors, avail ring or window */
		switch (fz_u8(h->f) % 3) {
		case 0: patch(h->f, h->desc, h->desc_bytes, NULL); break;
		case 1: patch(h->f, h->avail, h->avail_bytes, NULL); break;
		default: patch(h->f, h->mem.buf, h->mem.len, h->model); break;
		}
		break;
	case 3: { /* the card publishes a head */
		uint16_t idx = rd16(&h->avail->idx);

		wr16(&h->avail->ring[idx & mask], fz_u16(h->f));
		wr16(&h->avail->idx, idx + 1);
		break;
	}
	case 4: { /* IRQ decision: the fields it must have read */
		uint16_t old = h->vq.signalled_used, new = h->vq.used_idx;
		bool valid = h->vq.signalled_valid, want;

		if (old == new)
			want = false;
		else if (h->vq.event_idx)
			want = !valid || vring_need_event(rd16(&h->avail->ring[h->vq.size]), new, old);
		else
			want = !(rd16(&h->avail->flags) & VRING_AVAIL_F_NO_INTERRUPT);
		if (vq_host_need_irq(&h->vq) != want)
			fz_fail("vq_host_need_irq: want %d", want);
		break;
	}
	case 5: { /* kicks on (bit 3) or off */
		bool on = op & 8, more = vq_host_kicks(&h->vq, on);
		uint16_t la = h->vq.last_avail;

		if (more != (on && rd16(&h->avail->idx) != la))
			fz_fail("vq_host_kicks(%d) returned %d", on, more);
		if (h->vq.event_idx ?
		    rd16((volatile uint16_t *)&h->used->ring[h->vq.size]) != (on ? la : (uint16_t)(la - 1)) :
		    rd16(&h->used->flags) != (on ? 0 : VRING_USED_F_NO_NOTIFY))
			fz_fail("vq_host_kicks(%d) asked the card wrongly", on);
		break;
	}
	case 6: /* the mem ops fail from the n-th call on (bit 3), or never again */
		h->mem.fail_in = op & 8 ? fz_u8(h->f) : -1;
		break;
	case 7: /* pop until empty or refused, pushing at once */
		for (unsigned k = 0; k <= h->vq.size && host_pop(h, 0, false) == 1; k++)
			;
		break;
	}
}

static void host_half(struct fz *f, uint64_t features, uint16_t size)
{
	struct hfz h = { .f = f, .mem.fail_in = -1 };
	uint64_t win_off = fz_u64(f);
	uint16_t start = fz_u16(f);
	size_t used_bytes = sizeof(struct vring_used) + sizeof(struct vring_used_elem) * size + 2;
	int ret;

	h.mem.len = 256u << (fz_u8(f) % 9);
	h.mem.off = win_off;
	h.desc_bytes = sizeof(struct vring_desc) * size;
	h.avail_bytes = sizeof(struct vring_avail) + sizeof(uint16_t) * (size + 1);
	h.desc = malloc(h.desc_bytes);
	h.avail = malloc(h.avail_bytes);
	h.used = malloc(used_bytes);
	h.mem.buf = malloc(h.mem.len);
	h.model = malloc(h.mem.len);
	if (!h.desc || !h.avail || !h.used || !h.mem.buf || !h.model)
		goto out;
	wr16(&h.avail->flags, fz_u16(f));
	wr16(&h.avail->idx, fz_u16(f));
	wr16(&h.avail->ring[size], fz_u16(f));           /* used_event */
	for (unsigned i = 0; i < size; i++)
		wr16(&h.avail->ring[i], fz_u16(f));
	fz_bytes(f, h.desc, h.desc_bytes);
	for (unsigned i = 0; i < size; i++)      /* addresses count from the window's start */
		h.desc[i].addr = htole64(le64toh(h.desc[i].addr) + win_off);
	memset(h.used, 0xa5, used_bytes);
	for (size_t i = 0; i < h.mem.len; i++)
		h.mem.buf[i] = (uint8_t)(i * 131 + 7);
	fz_bytes(f, h.mem.buf, fz_u16(f) % (h.mem.len + 1));
	memcpy(h.model, h.mem.buf, h.mem.len);

	ret = vq_host_init(&h.vq, size, features, h.desc, h.avail, h.used, win_off, h.mem.len,
			   &mem_ops, &h.mem);
	if (win_off + h.mem.len < win_off) {            /* a window across the end of the RAS */
		if (ret != -EINVAL)
			fz_fail("vq_host_init of a window across 2^64 returned %d", ret);
		goto out;
	}
	if (ret)
		fz_fail("vq_host_init returned %d", ret);
	/* A queue that has been running: its private indices anywhere. */
	h.vq.last_avail = h.vq.used_idx = h.vq.signalled_used = start;
	wr16(&h.used->idx, start);

	/* Pop until empty or refused, then what the ops say, then drain. */
	for (unsigned k = 0; k <= size && host_pop(&h, 0, false) == 1; k++)
		;
	for (int ops = 0; f->n && ops < OPS_MAX && !h.dead; ops++)
		host_op(&h);
	h.mem.fail_in = -1;
	for (unsigned k = 0; k <= size && host_pop(&h, 0, false) == 1; k++)
		;
	while (h.nheld)
		host_push(&h, h.held[--h.nheld], 0);
out:
	free(h.desc);
	free(h.avail);
	free(h.used);
	free(h.mem.buf);
	free(h.model);
}

/* ---- card half -------------------------------------------------------------------- */

/* A buffer the card added: its segments are generated again from (seed, n, nout, bad). */
struct slot {
	bool inflight, popped;
	uint8_t n, nout;
	uint16_t seed;
	uint16_t ndesc;              /* descriptors it holds (1 if indirect) */
	uint32_t in_len;
};

struct cfz {
	struct fz *f;
	struct vq_card c;
	struct vq_host h;            /* the honest host, over the same memory */
	struct mem mem;
	uint8_t *pool;
	struct slot *slots;          /* per head */
	unsigned used_desc;          /* descriptors in flight (the model of vq_card_space) */
	unsigned unpopped;           /* added, not yet popped by the honest host */
	struct vos_req **held;       /* popped by the honest host, not yet pushed */
	unsigned nheld;
	struct { struct slot *s; uint32_t len; } *fifo;  /* pushed, not yet got, in order */
	unsigned fifo_head, fifo_n;
	bool lied, host_dead, dead;
};

/* Segment k of a buffer: inside the pool, 0..SEG_MAX bytes. */
static struct vos_sg card_seg(const struct cfz *cz, uint16_t seed, unsigned k)
{
	uint32_t x = (seed + 1u) * 2654435761u + k * 40503u;

	x ^= x >> 15;
	return (struct vos_sg){ .addr = cz->pool + (x % (POOL - SEG_MAX)),
				.len = (x >> 16) % (SEG_MAX + 1) };
}

static void card_add(struct cfz *cz, uint8_t op)
{
	struct vos_sg sg[255];
	unsigned n = fz_u8(cz->f), nout = n ? fz_u8(cz->f) % (n + 1) : 0, space, ndesc;
	uint16_t seed = fz_u16(cz->f), head = cz->c.free_head;
	bool ind = cz->c.indirect && n > 1 && n <= VQ_INDIRECT_MAX, bad = op & 8;
	struct slot *s;
	uint32_t in_len = 0;
	int want, ret;

	for (unsigned k = 0; k < n; k++) {
		sg[k] = card_seg(cz, seed, k);
		in_len += k >= nout ? sg[k].len : 0;
	}
	if (bad && n)                         /* its last segment runs past the window */
		sg[n - 1] = (struct vos_sg){ .addr = cz->pool + POOL - 8, .len = 16 };
	ndesc = ind ? 1 : n;
	space = cz->c.size - cz->used_desc;
	if (!n || bad || (!ind && n > cz->c.size))
		want = -EINVAL;
	else
		want = ndesc > space ? -ENOSPC : 0;
	if (!want && (head >= cz->c.size || cz->slots[head].inflight))
		fz_fail("free list head %u is out of range or in flight", head);
	s = want ? NULL : &cz->slots[head];
	ret = vq_card_add(&cz->c, sg, nout, n - nout, s ? (void *)s : (void *)cz);
	if (ret != want)
		fz_fail("vq_card_add(%u + %u segments, %u of %u descriptors free) returned %d, "
			"want %d", nout, n - nout, space, cz->c.size, ret, want);
	if (ret)
		return;
	*s = (struct slot){ .inflight = true, .n = n, .nout = nout, .seed = seed,
			    .ndesc = ndesc, .in_len = in_len };
	cz->used_desc += ndesc;
	cz->unpopped++;
}

/* The honest host pops: it must see exactly the segments the card added at that head. */
static void card_host_pop(struct cfz *cz)
{
	struct vos_req *r;
	struct slot *s;
	int ret;

	if (cz->host_dead || !(r = malloc(sizeof(*r))))
		return;
	ret = vq_host_pop(&cz->h, r);
	if (ret <= 0) {
		free(r);
		if (ret < 0 && !cz->lied)
			fz_fail("honest host: vq_host_pop refused an honest card's ring (%d)", ret);
		if (!ret && !cz->lied && cz->unpopped)
			fz_fail("honest host: queue empty with %u buffers added", cz->unpopped);
		cz->host_dead = ret < 0;
		return;
	}
	check_req(&cz->h, &cz->mem, r);
	s = cz->c.token[r->head];
	if (s) {
		if (s != &cz->slots[r->head] || !s->inflight || r->nseg != s->n)
			fz_fail("honest host: head %u has %u segments, %u were added", r->head,
				r->nseg, s->n);
		for (unsigned k = 0; k < s->n; k++) {
			struct vos_sg sg = card_seg(cz, s->seed, k);

			if (r->seg[k].addr != vq_card_off(&cz->c, sg.addr) ||
			    r->seg[k].len != sg.len || r->seg[k].write != (k >= s->nout))
				fz_fail("honest host: head %u segment %u differs from the one added",
					r->head, k);
		}
		if (!cz->lied && s->popped)
			fz_fail("honest host: head %u popped twice", r->head);
		s->popped = true;
	} else if (!cz->lied) {
		fz_fail("honest host: popped head %u, which is not in flight", r->head);
	}
	if (!cz->lied)
		cz->unpopped--;
	if (cz->nheld == cz->c.size) {            /* only after lies */
		free(cz->held[0]);
		memmove(cz->held, cz->held + 1, --cz->nheld * sizeof(cz->held[0]));
	}
	cz->held[cz->nheld++] = r;
}

static void card_host_push(struct cfz *cz)
{
	unsigned i;
	struct vos_req *r;
	uint32_t len;

	if (!cz->nheld || cz->host_dead)
		return;
	i = fz_u8(cz->f) % cz->nheld;
	r = cz->held[i];
	len = fz_u32(cz->f) % (r->in_len + 1ull);
	if (vq_host_push(&cz->h, r, len))
		fz_fail("honest host: vq_host_push failed");
	if (!cz->lied) {
		unsigned t = (cz->fifo_head + cz->fifo_n++) % cz->c.size;

		cz->fifo[t].s = &cz->slots[r->head];
		cz->fifo[t].len = len;
	}
	free(r);
	memmove(cz->held + i, cz->held + i + 1, (--cz->nheld - i) * sizeof(cz->held[0]));
}

static void card_get(struct cfz *cz)
{
	void *tok = NULL;
	uint32_t len = 0;
	struct slot *s;
	int ret = vq_card_get(&cz->c, &tok, &len);

	if (ret < 0) {
		if (ret != -EBADMSG || !cz->lied)
			fz_fail("vq_card_get returned %d from %s host", ret,
				cz->lied ? "a lying" : "an honest");
		cz->dead = true;                     /* the device is re-attached */
		return;
	}
	if (!ret) {
		if (!cz->lied && cz->fifo_n)
			fz_fail("vq_card_get: nothing, with %u buffers pushed", cz->fifo_n);
		return;
	}
	s = tok;
	if (s < cz->slots || s >= cz->slots + cz->c.size || !s->inflight)
		fz_fail("vq_card_get returned a token not in flight");
	if (len > s->in_len)
		fz_fail("vq_card_get: %u bytes written into a %u-byte buffer", len, s->in_len);
	if (!cz->lied) {
		if (!cz->fifo_n || cz->fifo[cz->fifo_head].s != s || cz->fifo[cz->fifo_head].len != len)
			fz_fail("vq_card_get: not the buffer the host pushed next");
		cz->fifo_head = (cz->fifo_head + 1) % cz->c.size;
		cz->fifo_n--;
	}
	if (!s->popped && !cz->lied)
		fz_fail("vq_card_get: a buffer the host never popped");
	s->inflight = s->popped = false;
	cz->used_desc -= s->ndesc;
}

static void card_op(struct cfz *cz)
{
	uint8_t op = fz_u8(cz->f);
	uint16_t mask = cz->c.size - 1;

	switch (op % 8) {
	case 0: /* add a buffer; bit 3: with a segment outside the window */
		card_add(cz, op);
		break;
	case 1:
		card_get(cz);
		break;
	case 2:
		card_host_pop(cz);
		break;
	case 3:
		card_host_push(cz);
		break;
	case 4: { /* the host lies: a used element */
		volatile struct vring_used_elem *e = &cz->c.used->ring[fz_u16(cz->f) & mask];

		e->id = htole32(fz_u32(cz->f));
		e->len = htole32(fz_u32(cz->f));
		cz->lied = true;
		break;
	}
	case 5: /* the host lies: used->idx moved by -128..127 */
		wr16(&cz->c.used->idx, rd16(&cz->c.used->idx) + (int8_t)fz_u8(cz->f));
		cz->lied = true;
		break;
	case 6: /* the host lies: any bytes of the used ring, avail_event and flags included */
		patch(cz->f, cz->c.used, sizeof(struct vring_used) +
		      sizeof(struct vring_used_elem) * cz->c.size + 2, NULL);
		cz->lied = true;
		break;
	case 7: /* notifications, both ways; bit 3: IRQs on, bit 4: kicks on */
		vq_card_irqs(&cz->c, op & 8);
		vq_card_need_kick(&cz->c);
		if (!cz->host_dead) {
			vq_host_kicks(&cz->h, op & 16);
			vq_host_need_irq(&cz->h);
		}
		break;
	}
	if (vq_card_space(&cz->c) != cz->c.size - cz->used_desc)
		fz_fail("vq_card_space %u, the model has %u of %u in flight",
			vq_card_space(&cz->c), cz->used_desc, cz->c.size);
}

static void card_half(struct fz *f, uint64_t features, uint16_t size)
{
	struct cfz cz = { .f = f, .mem.fail_in = -1 };
	uint64_t win_off = fz_u64(f);
	uint16_t start = fz_u16(f);
	size_t ring_bytes = vq_card_ring_bytes(size, features);
	int ret;

	if (!ring_bytes)
		fz_fail("vq_card_ring_bytes(%u) returned 0", size);
	cz.mem.len = ring_bytes + POOL;
	cz.mem.off = win_off;
	cz.slots = calloc(size, sizeof(*cz.slots));
	cz.held = calloc(size, sizeof(*cz.held));
	cz.fifo = calloc(size, sizeof(*cz.fifo));
	if (!cz.slots || !cz.held || !cz.fifo || posix_memalign((void **)&cz.mem.buf, 4096, cz.mem.len))
		goto out;
	cz.pool = cz.mem.buf + ring_bytes;
	ret = vq_card_init(&cz.c, size, features, cz.mem.buf, cz.mem.buf, win_off, cz.mem.len);
	if (win_off + cz.mem.len < win_off) {
		if (ret != -EINVAL)
			fz_fail("vq_card_init of a window across 2^64 returned %d", ret);
		goto out;
	}
	if (ret)
		fz_fail("vq_card_init returned %d", ret);
	ret = vq_host_init(&cz.h, size, features, cz.c.desc, cz.c.avail, cz.c.used, win_off,
			   cz.mem.len, &mem_ops, &cz.mem);
	if (ret)
		fz_fail("vq_host_init over the card's rings returned %d", ret);
	/* A queue that has been running: every index anywhere, the two halves in step. */
	cz.c.avail_idx = cz.c.last_used = cz.c.kicked_avail = start;
	cz.h.last_avail = cz.h.used_idx = cz.h.signalled_used = start;
	wr16(&cz.c.avail->idx, start);
	wr16(&cz.c.used->idx, start);

	for (int ops = 0; f->n && ops < OPS_MAX && !cz.dead; ops++)
		card_op(&cz);
	/* An honest host returns everything; the card must get it all back. */
	if (!cz.lied && !cz.dead) {
		while (cz.unpopped || cz.nheld) {
			if (cz.unpopped)
				card_host_pop(&cz);
			while (cz.nheld) {
				struct vos_req *r = cz.held[--cz.nheld];
				unsigned t = (cz.fifo_head + cz.fifo_n++) % size;

				if (vq_host_push(&cz.h, r, r->in_len))
					fz_fail("honest host: vq_host_push failed");
				cz.fifo[t].s = &cz.slots[r->head];
				cz.fifo[t].len = r->in_len;
				free(r);
			}
		}
		while (cz.fifo_n)
			card_get(&cz);
		if (vq_card_space(&cz.c) != size)
			fz_fail("all buffers back, %u of %u descriptors free", vq_card_space(&cz.c),
				size);
	}
	vq_card_destroy(&cz.c);
out:
	while (cz.held && cz.nheld)
		free(cz.held[--cz.nheld]);
	free(cz.slots);
	free(cz.held);
	free(cz.fifo);
	free(cz.mem.buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool logs;
	struct fz in = { data, size }, *f = &in;
	uint8_t b = fz_u8(f);
	uint64_t features = (b & 1 ? EVT : 0) | (b & 2 ? IND : 0);

	if (!logs) {
		/* vq.c logs every ring it refuses: quiet, unless replaying an input. */
		const char *v = getenv("FUZZ_VQ_VERBOSE");

		vos_log_open("fuzz-vq", false, v && *v == '1' ? LOG_DEBUG : LOG_ERR);
		logs = true;
	}
	if (b & 0x80)
		card_half(f, features, (uint16_t)(1u << ((b >> 2 & 15) % 9)));
	else
		host_half(f, features, (uint16_t)(1u << ((b >> 2 & 15) % 11)));
	return 0;
}
