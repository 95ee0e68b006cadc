// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * frontends/blk.c - card side of virtio-blk: an NBD server (fixed newstyle handshake, simple
 * replies) on the Unix socket RUNDIR/block<i>.sock, export names "" and "block<i>". Each NBD
 * request becomes one or more virtio-blk requests ("units") whose buffers are "slots" of the
 * device window: a WRITE's payload goes socket -> slot -> host, a READ's data host -> slot ->
 * socket. Many requests of many clients are in flight at once; replies go out in completion
 * order.
 *
 * Slots are granted to units strictly in the order requests arrived (fe->waitq). A READ keeps
 * the slots of all its units until its reply is sent, so a READ needs at most FE_NSLOTS - 2
 * slots at once (max_len) and an op holding slots never waits for an op behind it: the pool
 * cannot deadlock. Everything runs in the device thread of the card framework.
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>
#include <linux/nbd.h>
#include <linux/virtio_blk.h>
#include <linux/virtio_ids.h>
#include <linux/virtio_ring.h>

#include "vos.h"

/* NBD protocol values (the protocol's doc/proto.md) that <linux/nbd.h> lacks, or has in a
 * different form (command flags there are shifted into the 32-bit type word). */
#define NBDP_MAGIC 0x4e42444d41474943ull          /* "NBDMAGIC" */
#define NBDP_IHAVEOPT 0x49484156454f5054ull       /* "IHAVEOPT" */
#define NBDP_REP_MAGIC 0x0003e889045565a9ull
#define NBDP_FLAG_FIXED_NEWSTYLE (1u << 0)        /* handshake flags (server) */
#define NBDP_FLAG_NO_ZEROES (1u << 1)
#define NBDP_FLAG_C_NO_ZEROES (1u << 1)           /* client flags: bit 0 is FIXED_NEWSTYLE */
#define NBDP_FLAG_C_KNOWN 3u
#define NBDP_FLAG_SEND_WRITE_ZEROES (1u << 6)     /* transmission flag */
#define NBDP_OPT_EXPORT_NAME 1u
#define NBDP_OPT_ABORT 2u
#define NBDP_OPT_LIST 3u
#define NBDP_OPT_INFO 6u
#define NBDP_OPT_GO 7u
#define NBDP_REP_ACK 1u
#define NBDP_REP_SERVER 2u
#define NBDP_REP_INFO 3u
#define NBDP_REP_ERR_UNSUP (1u << 31 | 1)
#define NBDP_REP_ERR_INVALID (1u << 31 | 3)
#define NBDP_REP_ERR_UNKNOWN (1u << 31 | 6)
#define NBDP_INFO_EXPORT 0u
#define NBDP_INFO_BLOCK_SIZE 3u
#define NBDP_CMD_WRITE_ZEROES 6u
#define NBDP_CMD_FLAG_FUA (1u << 0)
#define NBDP_CMD_FLAG_NO_HOLE (1u << 1)
#define NBDP_EPERM 1u
#define NBDP_EIO 5u
#define NBDP_EINVAL 22u
#define NBDP_ENOTSUP 95u

#define FE_SECTOR 512u
#define FE_SLOT_DATA (128u << 10)         /* data bytes of one slot */
#define FE_MAX_LEN (32u << 20)            /* largest READ / WRITE: NBD's interoperable limit */
#define FE_NSLOTS (FE_MAX_LEN / FE_SLOT_DATA + 4) /* a whole max READ, widened, plus spares */
#define FE_SLOT_HDR 64u                   /* window bytes per slot for header and status */
#define FE_POOL ((size_t)FE_NSLOTS * (FE_SLOT_DATA + FE_SLOT_HDR) + 8192)
#define FE_QSIZE 256                      /* ring size we ask for */
#define FE_SEGS 32u                       /* data segments per virtio request */
#define FE_OPT_MAX 8192u                  /* option data we accept (names are <= 4096) */
#define FE_CLIENT_OPS 256u                /* requests of one client not yet answered */
#define FE_CLIENTS 8u                     /* connections at once (each is a watched fd) */
#define FE_HANDSHAKE_S 30                 /* seconds a client has to finish the handshake */
#define FE_REQ_LEN 28u                    /* struct nbd_request on the wire */

struct fe_op;

enum fe_slot_state {
	SLOT_FREE,        /* on fe->free (or, after stop(), in no list: the window is gone) */
	SLOT_RX,          /* being filled with a WRITE's payload from the client's socket */
	SLOT_QUEUED,      /* ready, on fe->subq: the ring was full */
	SLOT_INFLIGHT,    /* posted to the ring */
	SLOT_HELD,        /* READ data, kept until the reply has been sent */
};

/* One virtio-blk request's buffers in the device window, and whose unit it carries. */
struct fe_slot {
	TAILQ_ENTRY(fe_slot) link;        /* fe->free or fe->subq */
	enum fe_slot_state state;
	struct fe_op *op;
	uint32_t unit;                    /* index in op: data units, then the FUA flush */
	uint32_t type;                    /* VIRTIO_BLK_T_* */
	uint32_t len;                     /* data bytes: IN/OUT data or the discard table */
	struct virtio_blk_outhdr *hdr;    /* window: written by us before vos_cq_add */
	uint8_t *status;                  /* window: written by the host */
	uint8_t *data;                    /* window: FE_SLOT_DATA bytes */
};

/* One NBD request. Its units are numbered 0..nunits-1 (data), then nunits (FUA flush). */
struct fe_op {
	TAILQ_ENTRY(fe_op) wait;          /* fe->waitq while it needs slots */
	bool waiting;
	bool fua;                         /* a flush follows the data units */
	struct fe_client *cl;
	uint8_t handle[8];                /* echoed as received */
	uint16_t cmd, flags;
	uint32_t err;                     /* NBD error of the reply, 0 = success */
	uint64_t start;                   /* bytes (READ/WRITE) or sectors (TRIM/WZ) of unit 0 */
	uint64_t count;                   /* the same unit: extent of all data units */
	uint64_t per_unit;                /* the same unit: extent of one data unit */
	uint32_t skip, len;               /* READ: reply data is [skip, skip + len) of the units */
	uint32_t nunits;
	uint32_t granted, done;           /* units given a slot / finished or abandoned */
	struct fe_slot **held;            /* READ: slot of each data unit */
};

/* Bytes queued for a client's socket: a handshake reply, or a reply header and READ data. */
struct fe_out {
	TAILQ_ENTRY(fe_out) link;
	struct fe_op *op;                 /* freed (slots released) once everything is sent */
	uint8_t *blob;                    /* bytes owned by the item */
	unsigned niov, idx;               /* iov[idx..niov) is what remains */
	struct iovec iov[];
};

enum fe_cl_state {
	CL_FLAGS,         /* handshake: the client's 4 flag bytes */
	CL_OPT,           /* handshake: an option header */
	CL_OPT_DATA,      /* handshake: an option's data */
	CL_REQ,           /* transmission: a request header */
	CL_PAYLOAD,       /* transmission: a WRITE's payload */
	CL_CLOSING,       /* NBD_CMD_DISC: answer what is in flight, then close */
};

struct fe_client {
	TAILQ_ENTRY(fe_client) link;
	int fd;                           /* -1 once closed; freed when nops is 0 */
	short events;                     /* what we watch */
	bool broken;                      /* to be closed by fe_reap() */
	bool no_zeroes;
	enum fe_cl_state state;
	time_t deadline;                  /* end of the handshake (monotonic seconds) */
	unsigned nops;                    /* ops not yet freed */
	uint32_t have, need;              /* bytes in in[] and bytes wanted there */
	struct fe_op *rx_op;              /* CL_PAYLOAD: the WRITE */
	struct fe_slot *rx_slot;          /* the slot being filled, NULL while waiting for one */
	uint32_t rx_fill;
	uint64_t discard;                 /* payload bytes to throw away first */
	TAILQ_HEAD(, fe_out) out;
	uint8_t in[16 + FE_OPT_MAX];
};

struct fe {
	struct vos_cdev *d;
	int lfd;
	bool accept_paused;               /* accept() failed hard: retried on the next tick */
	bool live;                        /* between start() and stop(): slots exist */
	bool need_kick;
	char *path;
	char name[16];                    /* "block<i>": the export name */
	uint64_t features;                /* negotiated at the last start() */
	uint64_t size;                    /* export bytes (config capacity) */
	uint32_t unit;                    /* data bytes per READ / WRITE unit */
	uint32_t seg_size;                /* bytes per data segment */
	uint32_t max_len;                 /* largest READ / WRITE */
	uint32_t dis_sectors, dis_segs;   /* discard: sectors per segment, segments per request */
	uint32_t wz_sectors, wz_segs;     /* write zeroes: the same */
	uint16_t qsize;
	unsigned nclients;
	TAILQ_HEAD(, fe_slot) free;
	TAILQ_HEAD(, fe_slot) subq;       /* filled slots the full ring refused, oldest first */
	TAILQ_HEAD(, fe_op) waitq;        /* ops needing slots, oldest first */
	TAILQ_HEAD(, fe_client) clients;
	struct fe_slot slot[FE_NSLOTS];
	uint8_t scratch[64 << 10];        /* discarded payload */
};

static void fe_grant(struct fe *fe);
static void fe_client_flush(struct fe *fe, struct fe_client *cl);
static void fe_client_watch(struct fe *fe, struct fe_client *cl);

static uint16_t get16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return be16toh(v); }
static uint32_t get32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return be32toh(v); }
static uint64_t get64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return be64toh(v); }
static uint8_t *put16(uint8_t *p, uint16_t v) { v = htobe16(v); memcpy(p, &v, 2); return p + 2; }
static uint8_t *put32(uint8_t *p, uint32_t v) { v = htobe32(v); memcpy(p, &v, 4); return p + 4; }
static uint8_t *put64(uint8_t *p, uint64_t v) { v = htobe64(v); memcpy(p, &v, 8); return p + 8; }

static time_t fe_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec;
}

static bool fe_has(const struct fe *fe, unsigned bit)
{
	return fe->features & (1ull << bit);
}

/* The card's status line: where to connect, what is served, who is connected. */
static void fe_info(struct fe *fe)
{
	vos_cdev_set_info(fe->d, "sock=%s size=%" PRIu64 "%s clients=%u", fe->path, fe->size,
			  fe_has(fe, VIRTIO_BLK_F_RO) ? " ro" : "", fe->nclients);
}

/* ---------------------------------------------------------------------------------------- */
/* Slots and units. */

static uint32_t fe_total(const struct fe_op *op)
{
	return op->nunits + op->fua;
}

static void fe_slot_free(struct fe *fe, struct fe_slot *s)
{
	s->op = NULL;
	s->state = SLOT_FREE;
	if (fe->live)
		TAILQ_INSERT_TAIL(&fe->free, s, link);
}

static void fe_wait(struct fe *fe, struct fe_op *op, bool front)
{
	if (op->waiting)
		return;
	op->waiting = true;
	if (front)
		TAILQ_INSERT_HEAD(&fe->waitq, op, wait);
	else
		TAILQ_INSERT_TAIL(&fe->waitq, op, wait);
}

static void fe_unwait(struct fe *fe, struct fe_op *op)
{
	if (op->waiting)
		TAILQ_REMOVE(&fe->waitq, op, wait);
	op->waiting = false;
}

/* Bytes (or sectors) of data unit u. */
static uint64_t fe_unit_extent(const struct fe_op *op, uint32_t u)
{
	uint64_t left = op->count - (uint64_t)u * op->per_unit;

	return left < op->per_unit ? left : op->per_unit;
}

/* Fill the header (and for TRIM/WZ the segment table) of a slot granted to unit s->unit. */
static void fe_prepare(struct fe *fe, struct fe_slot *s)
{
	struct fe_op *op = s->op;
	uint64_t sector = 0;

	s->len = 0;
	if (op->cmd == NBD_CMD_FLUSH || s->unit == op->nunits) {
		s->type = VIRTIO_BLK_T_FLUSH;
	} else if (op->cmd == NBD_CMD_READ || op->cmd == NBD_CMD_WRITE) {
		s->type = op->cmd == NBD_CMD_READ ? VIRTIO_BLK_T_IN : VIRTIO_BLK_T_OUT;
		sector = (op->start + (uint64_t)s->unit * op->per_unit) / FE_SECTOR;
		s->len = (uint32_t)fe_unit_extent(op, s->unit);
	} else {
		bool wz = op->cmd == NBDP_CMD_WRITE_ZEROES;
		uint32_t max = wz ? fe->wz_sectors : fe->dis_sectors;
		uint32_t flags = wz && !(op->flags & NBDP_CMD_FLAG_NO_HOLE) ?
				 VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP : 0;
		uint64_t first = op->start + (uint64_t)s->unit * op->per_unit;
		uint64_t left = fe_unit_extent(op, s->unit);
		struct virtio_blk_discard_write_zeroes seg;

		s->type = wz ? VIRTIO_BLK_T_WRITE_ZEROES : VIRTIO_BLK_T_DISCARD;
		while (left) {
			uint32_t n = left < max ? (uint32_t)left : max;

			seg.sector = htole64(first);
			seg.num_sectors = htole32(n);
			seg.flags = htole32(flags);
			memcpy(s->data + s->len, &seg, sizeof(seg));
			s->len += sizeof(seg);
			first += n;
			left -= n;
		}
	}
	s->hdr->type = htole32(s->type);
	s->hdr->ioprio = 0;
	s->hdr->sector = htole64(sector);
	*s->status = 0xff;                /* not a virtio status: "the host wrote nothing" */
}

/* Post a prepared slot: 0, -ENOSPC (ring full) or another -errno. */
static int fe_add(struct fe *fe, struct fe_slot *s)
{
	struct vos_sg sg[FE_SEGS + 2];
	unsigned n = 0, nout;
	int ret;

	/* Header, then data (readable for OUT and the discard table, writable for IN), then
	 * status. fe_read_config sized units so the data takes at most FE_SEGS segments. */
	sg[n++] = (struct vos_sg){ s->hdr, sizeof(*s->hdr) };
	nout = n;
	if (s->type == VIRTIO_BLK_T_DISCARD || s->type == VIRTIO_BLK_T_WRITE_ZEROES)
		sg[n++] = (struct vos_sg){ s->data, s->len };
	if (s->type == VIRTIO_BLK_T_IN || s->type == VIRTIO_BLK_T_OUT)
		for (uint32_t off = 0; off < s->len; off += fe->seg_size)
			sg[n++] = (struct vos_sg){ s->data + off, s->len - off < fe->seg_size ?
							   s->len - off : fe->seg_size };
	if (s->type != VIRTIO_BLK_T_IN)
		nout = n;
	sg[n++] = (struct vos_sg){ s->status, 1 };
	ret = vos_cq_add(fe->d, 0, sg, nout, n - nout, s);
	if (ret < 0)
		return ret;
	s->state = SLOT_INFLIGHT;
	fe->need_kick = true;
	return 0;
}

static void fe_unit_done(struct fe *fe, struct fe_slot *s, uint32_t err);

static void fe_submit(struct fe *fe, struct fe_slot *s)
{
	int ret = -ENOSPC;

	if (TAILQ_EMPTY(&fe->subq))
		ret = fe_add(fe, s);
	if (ret == -ENOSPC) {
		s->state = SLOT_QUEUED;
		TAILQ_INSERT_TAIL(&fe->subq, s, link);
	} else if (ret < 0) {
		vos_log(LOG_ERR, "%s: cannot post a request: %s", vos_cdev_name(fe->d),
			strerror(-ret));
		fe_unit_done(fe, s, NBDP_EIO);
	}
}

static void fe_drain_subq(struct fe *fe)
{
	struct fe_slot *s;

	while ((s = TAILQ_FIRST(&fe->subq))) {
		int ret = fe_add(fe, s);

		if (ret == -ENOSPC)
			return;
		TAILQ_REMOVE(&fe->subq, s, link);
		if (ret < 0)
			fe_unit_done(fe, s, NBDP_EIO);
	}
}

/* Give free slots to waiting units, oldest op first. */
static void fe_grant(struct fe *fe)
{
	struct fe_slot *s;
	struct fe_op *op;

	while ((s = TAILQ_FIRST(&fe->free)) && (op = TAILQ_FIRST(&fe->waitq))) {
		TAILQ_REMOVE(&fe->free, s, link);
		s->op = op;
		s->unit = op->granted++;
		if (op->cmd == NBD_CMD_WRITE && s->unit < op->nunits) {
			/* One slot at a time: the client's socket fills it (fe_payload). */
			fe_unwait(fe, op);
			s->state = SLOT_RX;
			s->len = (uint32_t)fe_unit_extent(op, s->unit);
			op->cl->rx_slot = s;
			op->cl->rx_fill = 0;
			fe_client_watch(fe, op->cl);
			continue;
		}
		/* The FUA flush waits for the data units: it is queued again when they are done. */
		if (op->granted == fe_total(op) || op->granted == op->nunits)
			fe_unwait(fe, op);
		fe_prepare(fe, s);
		fe_submit(fe, s);         /* may finish and free op */
	}
}

/* ---------------------------------------------------------------------------------------- */
/* Ops: NBD requests. */

static void fe_op_release(struct fe *fe, struct fe_op *op)
{
	if (!op->held)
		return;
	for (uint32_t i = 0; i < op->nunits; i++)
		if (op->held[i])
			fe_slot_free(fe, op->held[i]);
	free(op->held);
	op->held = NULL;
}

static void fe_op_free(struct fe *fe, struct fe_op *op)
{
	struct fe_client *cl = op->cl;

	fe_op_release(fe, op);
	free(op);
	cl->nops--;
	fe_client_watch(fe, cl);
}

static void fe_client_idle_check(struct fe_client *cl)
{
	if (cl->state == CL_CLOSING && !cl->nops && TAILQ_EMPTY(&cl->out))
		cl->broken = true;
}

static struct fe_out *fe_out_new(unsigned niov, size_t blob)
{
	struct fe_out *o = calloc(1, sizeof(*o) + niov * sizeof(struct iovec));

	if (!o)
		return NULL;
	o->niov = niov;
	if (blob) {
		o->blob = malloc(blob);
		if (!o->blob) {
			free(o);
			return NULL;
		}
		o->iov[0] = (struct iovec){ o->blob, blob };
	}
	return o;
}

static void fe_out_free(struct fe *fe, struct fe_out *o)
{
	if (o->op)
		fe_op_free(fe, o->op);
	free(o->blob);
	free(o);
}

/* All units are done: send the simple reply (with READ data straight from the slots). */
static void fe_op_finish(struct fe *fe, struct fe_op *op)
{
	struct fe_client *cl = op->cl;
	bool data = op->cmd == NBD_CMD_READ && !op->err && op->len;
	struct fe_out *o;
	uint8_t *p;

	if (cl->fd < 0 || cl->broken) {
		fe_op_free(fe, op);
		return;
	}
	o = fe_out_new(1 + (data ? op->nunits : 0), 16);
	if (!o) {
		cl->broken = true;
		fe_op_free(fe, op);
		return;
	}
	p = put32(o->blob, NBD_REPLY_MAGIC);
	p = put32(p, op->err);
	memcpy(p, op->handle, 8);
	if (data) {
		uint64_t from = op->skip, to = (uint64_t)op->skip + op->len;
		unsigned n = 1;

		/* Unit i holds bytes [base, base + extent) of the widened range; send its part
		 * of [from, to). */
		for (uint32_t i = 0; i < op->nunits; i++) {
			uint64_t base = (uint64_t)i * op->per_unit;
			uint64_t lo = base > from ? base : from;
			uint64_t hi = base + fe_unit_extent(op, i);

			hi = hi < to ? hi : to;
			if (lo < hi)
				o->iov[n++] = (struct iovec){ op->held[i]->data + (lo - base),
							      hi - lo };
		}
		o->niov = n;
	} else {
		fe_op_release(fe, op);    /* nothing to send from the slots: free them now */
	}
	o->op = op;
	TAILQ_INSERT_TAIL(&cl->out, o, link);
	fe_client_flush(fe, cl);
}

/* A unit finished or was abandoned: the flush after FUA data, or the reply. */
static void fe_op_progress(struct fe *fe, struct fe_op *op)
{
	if (op->fua && op->granted == op->nunits && op->done == op->nunits) {
		if (!op->err) {
			fe_wait(fe, op, true);   /* older than anything waiting */
			return;
		}
		op->granted++;            /* no flush after a failed write */
		op->done++;
	}
	if (op->done == fe_total(op) && op->cl->rx_op != op)
		fe_op_finish(fe, op);
}

static void fe_unit_done(struct fe *fe, struct fe_slot *s, uint32_t err)
{
	struct fe_op *op = s->op;

	if (err && !op->err)
		op->err = err;
	op->done++;
	if (op->held && s->unit < op->nunits) {
		s->state = SLOT_HELD;
		op->held[s->unit] = s;
	} else {
		fe_slot_free(fe, s);
	}
	fe_op_progress(fe, op);
}

/* Give up the units of op that have no slot yet (client gone, host gone). */
static void fe_op_abandon(struct fe *fe, struct fe_op *op, uint32_t err)
{
	fe_unwait(fe, op);
	if (!op->err)
		op->err = err;
	op->done += fe_total(op) - op->granted;
	op->granted = fe_total(op);
}

/* Completion of a posted slot: check what the host reports. */
static void fe_complete(struct fe *fe, struct fe_slot *s, uint32_t len)
{
	uint32_t need = (s->type == VIRTIO_BLK_T_IN ? s->len : 0) + 1, err = 0;
	uint8_t st = *s->status;

	if (len < need || st == 0xff)
		err = NBDP_EIO;
	else if (st == VIRTIO_BLK_S_UNSUPP)
		err = s->type == VIRTIO_BLK_T_DISCARD ? 0 : NBDP_ENOTSUP;  /* TRIM is a hint */
	else if (st != VIRTIO_BLK_S_OK)
		err = NBDP_EIO;
	fe_unit_done(fe, s, err);
}

/*
 * Plan a request: its units, or the NBD error of its reply. Requests are checked against the
 * export (range, alignment, size limit, read-only) before anything reaches the host.
 */
static uint32_t fe_plan(struct fe *fe, struct fe_op *op, uint64_t off, uint32_t len)
{
	bool wz = op->cmd == NBDP_CMD_WRITE_ZEROES;
	uint64_t end;

	if (op->flags & ~(NBDP_CMD_FLAG_FUA | NBDP_CMD_FLAG_NO_HOLE))
		return NBDP_EINVAL;
	if (__builtin_add_overflow(off, len, &end))
		return NBDP_EINVAL;
	switch (op->cmd) {
	case NBD_CMD_READ:
	case NBD_CMD_WRITE:
		if (len > fe->max_len || end > fe->size)
			return NBDP_EINVAL;
		/* Writes must be whole sectors (we advertise a 512-byte minimum block size);
		 * reads are widened to sectors. */
		if (op->cmd == NBD_CMD_WRITE && fe_has(fe, VIRTIO_BLK_F_RO))
			return NBDP_EPERM;
		if (op->cmd == NBD_CMD_WRITE && (off | len) % FE_SECTOR)
			return NBDP_EINVAL;
		if (!fe->live)
			return NBDP_EIO;
		if (!len)
			return 0;
		op->start = off / FE_SECTOR * FE_SECTOR;
		op->count = (end + FE_SECTOR - 1) / FE_SECTOR * FE_SECTOR - op->start;
		op->skip = (uint32_t)(off - op->start);
		op->len = len;
		op->per_unit = fe->unit;
		op->nunits = (uint32_t)((op->count + fe->unit - 1) / fe->unit);
		op->fua = op->cmd == NBD_CMD_WRITE && (op->flags & NBDP_CMD_FLAG_FUA) &&
			  fe_has(fe, VIRTIO_BLK_F_FLUSH);
		if (op->cmd == NBD_CMD_READ) {
			op->held = calloc(op->nunits, sizeof(*op->held));
			if (!op->held)
				return NBDP_EIO;
		}
		return 0;
	case NBD_CMD_FLUSH:
		if (!fe->live)
			return NBDP_EIO;
		op->nunits = fe_has(fe, VIRTIO_BLK_F_FLUSH);
		return 0;
	case NBD_CMD_TRIM:
	case NBDP_CMD_WRITE_ZEROES: {
		uint32_t sectors = wz ? fe->wz_sectors : fe->dis_sectors;
		uint32_t segs = wz ? fe->wz_segs : fe->dis_segs;
		uint64_t first, last;

		if (fe_has(fe, VIRTIO_BLK_F_RO))
			return NBDP_EPERM;
		if (!fe_has(fe, wz ? VIRTIO_BLK_F_WRITE_ZEROES : VIRTIO_BLK_F_DISCARD) ||
		    !sectors || !segs || end > fe->size)
			return NBDP_EINVAL;
		if (wz && (off | len) % FE_SECTOR)
			return NBDP_EINVAL;
		if (!fe->live)
			return NBDP_EIO;
		/* TRIM may drop less than asked: only the whole sectors inside the range. */
		first = (off + FE_SECTOR - 1) / FE_SECTOR;
		last = end / FE_SECTOR;
		if (last <= first)
			return 0;
		op->start = first;
		op->count = last - first;
		op->per_unit = (uint64_t)sectors * segs;
		op->nunits = (uint32_t)((op->count + op->per_unit - 1) / op->per_unit);
		op->fua = (op->flags & NBDP_CMD_FLAG_FUA) && fe_has(fe, VIRTIO_BLK_F_FLUSH);
		return 0;
	}
	default:
		return NBDP_EINVAL;
	}
}

/* ---------------------------------------------------------------------------------------- */
/* Clients: the socket side. */

static bool fe_client_wants_input(const struct fe_client *cl)
{
	if (cl->broken || cl->fd < 0)
		return false;
	switch (cl->state) {
	case CL_PAYLOAD:
		return cl->discard || cl->rx_slot;
	case CL_REQ:
		return cl->nops < FE_CLIENT_OPS;
	case CL_CLOSING:
		return false;
	default:
		return true;
	}
}

static void fe_client_watch(struct fe *fe, struct fe_client *cl)
{
	short ev;

	if (cl->fd < 0)
		return;
	ev = (short)((fe_client_wants_input(cl) ? POLLIN : 0) |
		     (TAILQ_EMPTY(&cl->out) ? 0 : POLLOUT));
	if (ev == cl->events)
		return;
	if (vos_cdev_watch(fe->d, cl->fd, ev, true) < 0)
		cl->broken = true;        /* cannot be served: closed by fe_reap() */
	else
		cl->events = ev;
}

/* Send what the socket takes now; the rest when it is writable. */
static void fe_client_flush(struct fe *fe, struct fe_client *cl)
{
	struct fe_out *o;

	while (!cl->broken && (o = TAILQ_FIRST(&cl->out))) {
		struct msghdr mh = { .msg_iov = o->iov + o->idx };
		ssize_t n;

		mh.msg_iovlen = o->niov - o->idx < IOV_MAX ? o->niov - o->idx : IOV_MAX;
		n = sendmsg(cl->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				cl->broken = true;
			break;
		}
		while (o->idx < o->niov && (size_t)n >= o->iov[o->idx].iov_len)
			n -= (ssize_t)o->iov[o->idx++].iov_len;
		if (o->idx < o->niov) {
			o->iov[o->idx].iov_base = (uint8_t *)o->iov[o->idx].iov_base + n;
			o->iov[o->idx].iov_len -= (size_t)n;
			continue;
		}
		TAILQ_REMOVE(&cl->out, o, link);
		fe_out_free(fe, o);
	}
	fe_client_idle_check(cl);
	fe_client_watch(fe, cl);
}

static void fe_send(struct fe *fe, struct fe_client *cl, const void *buf, size_t len)
{
	struct fe_out *o = fe_out_new(1, len);

	if (!o) {
		cl->broken = true;
		return;
	}
	memcpy(o->blob, buf, len);
	TAILQ_INSERT_TAIL(&cl->out, o, link);
	fe_client_flush(fe, cl);
}

/* An option reply: header and data. */
static void fe_send_rep(struct fe *fe, struct fe_client *cl, uint32_t opt, uint32_t type,
			const void *data, uint32_t len)
{
	uint8_t buf[20 + 64], *p = buf;

	p = put64(p, NBDP_REP_MAGIC);
	p = put32(p, opt);
	p = put32(p, type);
	p = put32(p, len);
	if (len)
		memcpy(p, data, len);
	fe_send(fe, cl, buf, 20 + len);
}

static void fe_expect(struct fe_client *cl, enum fe_cl_state state, uint32_t need)
{
	cl->state = state;
	cl->have = 0;
	cl->need = need;
}

static bool fe_export_name_ok(const struct fe *fe, const uint8_t *name, uint32_t len)
{
	return !len || (len == strlen(fe->name) && !memcmp(name, fe->name, len));
}

static uint16_t fe_tflags(const struct fe *fe)
{
	uint16_t f = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH | NBD_FLAG_SEND_FUA |
		     NBD_FLAG_CAN_MULTI_CONN;

	if (fe_has(fe, VIRTIO_BLK_F_RO))
		f |= NBD_FLAG_READ_ONLY;
	else {
		if (fe_has(fe, VIRTIO_BLK_F_DISCARD) && fe->dis_sectors && fe->dis_segs)
			f |= NBD_FLAG_SEND_TRIM;
		if (fe_has(fe, VIRTIO_BLK_F_WRITE_ZEROES) && fe->wz_sectors && fe->wz_segs)
			f |= NBDP_FLAG_SEND_WRITE_ZEROES;
	}
	return f;
}

/* NBD_OPT_INFO / NBD_OPT_GO: name, then the info requests (we send ours regardless). */
static void fe_opt_info(struct fe *fe, struct fe_client *cl, uint32_t opt, const uint8_t *data,
			uint32_t len)
{
	uint8_t buf[16], *p;
	uint32_t nl;

	if (len < 6 || (nl = get32(data)) > len - 6 || 6 + nl + 2u * get16(data + 4 + nl) != len) {
		fe_send_rep(fe, cl, opt, NBDP_REP_ERR_INVALID, NULL, 0);
		return;
	}
	if (!fe_export_name_ok(fe, data + 4, nl)) {
		fe_send_rep(fe, cl, opt, NBDP_REP_ERR_UNKNOWN, NULL, 0);
		return;
	}
	p = put16(buf, NBDP_INFO_EXPORT);
	p = put64(p, fe->size);
	p = put16(p, fe_tflags(fe));
	fe_send_rep(fe, cl, opt, NBDP_REP_INFO, buf, (uint32_t)(p - buf));
	p = put16(buf, NBDP_INFO_BLOCK_SIZE);
	p = put32(p, FE_SECTOR);
	p = put32(p, 4096);
	p = put32(p, fe->max_len);
	fe_send_rep(fe, cl, opt, NBDP_REP_INFO, buf, (uint32_t)(p - buf));
	fe_send_rep(fe, cl, opt, NBDP_REP_ACK, NULL, 0);
	if (opt == NBDP_OPT_GO)
		fe_expect(cl, CL_REQ, FE_REQ_LEN);
}

static void fe_option(struct fe *fe, struct fe_client *cl, uint32_t opt, const uint8_t *data,
		      uint32_t len)
{
	uint8_t buf[4 + sizeof(fe->name)], reply[8 + 2 + 124] = { 0 };
	uint32_t nl = (uint32_t)strlen(fe->name);

	fe_expect(cl, CL_OPT, 16);
	switch (opt) {
	case NBDP_OPT_EXPORT_NAME:
		if (!fe_export_name_ok(fe, data, len)) {
			vos_log(LOG_NOTICE, "%s: client asked for an unknown export",
				vos_cdev_name(fe->d));
			cl->broken = true;    /* the protocol has no error reply for this option */
			return;
		}
		put16(put64(reply, fe->size), fe_tflags(fe));
		fe_send(fe, cl, reply, cl->no_zeroes ? 10 : sizeof(reply));
		fe_expect(cl, CL_REQ, FE_REQ_LEN);
		return;
	case NBDP_OPT_ABORT:
		fe_send_rep(fe, cl, opt, NBDP_REP_ACK, NULL, 0);
		cl->state = CL_CLOSING;
		fe_client_idle_check(cl);
		return;
	case NBDP_OPT_LIST:
		if (len) {
			fe_send_rep(fe, cl, opt, NBDP_REP_ERR_INVALID, NULL, 0);
			return;
		}
		put32(buf, nl);
		memcpy(buf + 4, fe->name, nl);
		fe_send_rep(fe, cl, opt, NBDP_REP_SERVER, buf, 4 + nl);
		fe_send_rep(fe, cl, opt, NBDP_REP_ACK, NULL, 0);
		return;
	case NBDP_OPT_INFO:
	case NBDP_OPT_GO:
		fe_opt_info(fe, cl, opt, data, len);
		return;
	default:
		/* STRUCTURED_REPLY, STARTTLS, meta contexts, ...: simple replies only. */
		fe_send_rep(fe, cl, opt, NBDP_REP_ERR_UNSUP, NULL, 0);
		return;
	}
}

/* Payload bytes of a WRITE still to come from the socket (for discarding them). */
static uint64_t fe_payload_left(const struct fe_op *op, const struct fe_client *cl)
{
	uint64_t left = 0;

	if (op->granted < op->nunits)
		left = op->count - (uint64_t)op->granted * op->per_unit;
	if (cl->rx_slot)
		left += cl->rx_slot->len - cl->rx_fill;
	return left;
}

/* Progress of a WRITE's payload: post a filled slot, ask for the next, or finish. */
static void fe_payload(struct fe *fe, struct fe_client *cl)
{
	struct fe_op *op = cl->rx_op;

	if (cl->discard)
		return;
	if (cl->rx_slot) {
		struct fe_slot *s = cl->rx_slot;

		if (cl->rx_fill < s->len)
			return;
		cl->rx_slot = NULL;
		fe_prepare(fe, s);
		fe_submit(fe, s);
	}
	if (op->granted < op->nunits) {
		fe_wait(fe, op, true);    /* it had the head of the queue for its last unit */
		fe_grant(fe);
		return;
	}
	cl->rx_op = NULL;
	fe_expect(cl, CL_REQ, FE_REQ_LEN);
	fe_op_progress(fe, op);
}

static void fe_request(struct fe *fe, struct fe_client *cl)
{
	const uint8_t *p = cl->in;
	uint64_t off;
	uint32_t len;
	struct fe_op *op;

	if (get32(p) != NBD_REQUEST_MAGIC) {
		vos_log(LOG_WARNING, "%s: bad request magic from a client: disconnected",
			vos_cdev_name(fe->d));
		cl->broken = true;
		return;
	}
	fe_expect(cl, CL_REQ, FE_REQ_LEN);
	if (get16(p + 6) == NBD_CMD_DISC) {
		cl->state = CL_CLOSING;
		fe_client_idle_check(cl);
		return;
	}
	op = calloc(1, sizeof(*op));
	if (!op) {
		cl->broken = true;
		return;
	}
	cl->nops++;
	op->cl = cl;
	op->flags = get16(p + 4);
	op->cmd = get16(p + 6);
	memcpy(op->handle, p + 8, 8);
	off = get64(p + 16);
	len = get32(p + 24);
	op->err = fe_plan(fe, op, off, len);
	if (op->err) {
		free(op->held);
		op->held = NULL;
		op->nunits = 0;
		op->fua = false;
	}
	if (op->cmd == NBD_CMD_WRITE) {
		/* The payload follows even when the request is refused: it is read and dropped. */
		cl->rx_op = op;
		cl->discard = op->err ? len : 0;
		cl->state = CL_PAYLOAD;
		if (op->nunits) {
			fe_wait(fe, op, false);
			fe_grant(fe);
		} else {
			fe_payload(fe, cl);
		}
		return;
	}
	if (fe_total(op)) {
		fe_wait(fe, op, false);
		fe_grant(fe);
	} else {
		fe_op_progress(fe, op);
	}
}

/* in[] holds the `need` bytes of the current handshake or request step. */
static void fe_client_input(struct fe *fe, struct fe_client *cl)
{
	uint32_t flags, len;

	switch (cl->state) {
	case CL_FLAGS:
		flags = get32(cl->in);
		if (flags & ~NBDP_FLAG_C_KNOWN) {
			cl->broken = true;
			return;
		}
		cl->no_zeroes = flags & NBDP_FLAG_C_NO_ZEROES;
		fe_expect(cl, CL_OPT, 16);
		return;
	case CL_OPT:
		len = get32(cl->in + 12);
		if (get64(cl->in) != NBDP_IHAVEOPT || len > FE_OPT_MAX) {
			vos_log(LOG_WARNING, "%s: bad option from a client: disconnected",
				vos_cdev_name(fe->d));
			cl->broken = true;
			return;
		}
		if (len) {
			cl->state = CL_OPT_DATA;
			cl->need = 16 + len;
			return;
		}
		/* fall through */
	case CL_OPT_DATA:
		fe_option(fe, cl, get32(cl->in + 8), cl->in + 16, cl->need - 16);
		return;
	case CL_REQ:
		fe_request(fe, cl);
		return;
	default:
		return;
	}
}

static void fe_client_read(struct fe *fe, struct fe_client *cl)
{
	/* A bounded number of reads per event: one busy client cannot starve the others. */
	for (unsigned budget = 64; budget && fe_client_wants_input(cl); budget--) {
		uint8_t *buf;
		size_t want;
		ssize_t n;

		if (cl->state != CL_PAYLOAD) {
			buf = cl->in + cl->have;
			want = cl->need - cl->have;
		} else if (cl->discard) {
			buf = fe->scratch;
			want = sizeof(fe->scratch);
			if (cl->discard < want)
				want = cl->discard;
		} else {
			buf = cl->rx_slot->data + cl->rx_fill;
			want = cl->rx_slot->len - cl->rx_fill;
		}
		n = recv(cl->fd, buf, want, MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (n <= 0) {             /* EOF (a client may leave without NBD_CMD_DISC) */
			cl->broken = true;
			break;
		}
		if (cl->state != CL_PAYLOAD) {
			cl->have += (uint32_t)n;
			if (cl->have == cl->need)
				fe_client_input(fe, cl);
		} else {
			if (cl->discard)
				cl->discard -= (uint64_t)n;
			else
				cl->rx_fill += (uint32_t)n;
			fe_payload(fe, cl);
		}
	}
	fe_client_watch(fe, cl);
}

/* Close the socket; ops still in the ring finish later and are dropped (fe_op_finish). */
static void fe_client_close(struct fe *fe, struct fe_client *cl)
{
	struct fe_op *op, *next;
	struct fe_out *o;

	vos_cdev_watch(fe->d, cl->fd, 0, true);
	close(cl->fd);
	cl->fd = -1;
	fe->nclients--;
	while ((o = TAILQ_FIRST(&cl->out))) {
		TAILQ_REMOVE(&cl->out, o, link);
		fe_out_free(fe, o);
	}
	for (op = TAILQ_FIRST(&fe->waitq); op; op = next) {
		next = TAILQ_NEXT(op, wait);
		if (op->cl == cl && op != cl->rx_op) {
			fe_op_abandon(fe, op, NBDP_EIO);
			fe_op_progress(fe, op);   /* frees it unless units are in the ring */
		}
	}
	if ((op = cl->rx_op)) {
		if (cl->rx_slot) {
			fe_slot_free(fe, cl->rx_slot);
			cl->rx_slot = NULL;
			op->done++;
		}
		fe_op_abandon(fe, op, NBDP_EIO);
		cl->rx_op = NULL;
		fe_op_progress(fe, op);
	}
}

/* Close broken clients, free closed ones whose last op is gone. */
static void fe_reap(struct fe *fe)
{
	struct fe_client *cl, *next;
	bool changed = false;

	for (cl = TAILQ_FIRST(&fe->clients); cl; cl = next) {
		next = TAILQ_NEXT(cl, link);
		if (cl->broken && cl->fd >= 0) {
			vos_log(LOG_DEBUG, "%s: client disconnected", vos_cdev_name(fe->d));
			fe_client_close(fe, cl);
			changed = true;
		}
		if (cl->fd < 0 && !cl->nops) {
			TAILQ_REMOVE(&fe->clients, cl, link);
			free(cl);
		}
	}
	if (changed)
		fe_info(fe);
}

static void fe_accept(struct fe *fe)
{
	static const uint8_t greeting[18] = {
		'N', 'B', 'D', 'M', 'A', 'G', 'I', 'C', 'I', 'H', 'A', 'V', 'E', 'O', 'P', 'T',
		0, NBDP_FLAG_FIXED_NEWSTYLE | NBDP_FLAG_NO_ZEROES,
	};

	for (;;) {
		int fd = accept4(fe->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		struct fe_client *cl;

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK) {
				/* EMFILE and friends: stop polling until the next tick. */
				vos_log(LOG_WARNING, "%s: accept: %s", vos_cdev_name(fe->d),
					strerror(errno));
				fe->accept_paused = true;
				vos_cdev_watch(fe->d, fe->lfd, 0, true);
			}
			return;
		}
		if (fe->nclients >= FE_CLIENTS || !(cl = calloc(1, sizeof(*cl)))) {
			vos_log(LOG_WARNING, "%s: too many NBD clients: connection refused",
				vos_cdev_name(fe->d));
			close(fd);
			continue;
		}
		cl->fd = fd;
		cl->deadline = fe_now() + FE_HANDSHAKE_S;
		TAILQ_INIT(&cl->out);
		fe_expect(cl, CL_FLAGS, 4);
		TAILQ_INSERT_TAIL(&fe->clients, cl, link);
		fe->nclients++;
		vos_log(LOG_DEBUG, "%s: client connected", vos_cdev_name(fe->d));
		fe_info(fe);
		fe_send(fe, cl, greeting, sizeof(greeting));
	}
}

/* ---------------------------------------------------------------------------------------- */
/* The frontend ops. */

/* Export size and request limits from the config space (limits only apply from start()). */
static void fe_read_config(struct fe *fe, bool limits)
{
	struct virtio_blk_config cfg;
	uint64_t cap;

	memset(&cfg, 0, sizeof(cfg));
	vos_cdev_config(fe->d, &cfg, sizeof(cfg));
	cap = le64toh(cfg.capacity);
	/* A capacity that does not fit an off_t in bytes is the host's bug: serve what fits. */
	fe->size = (cap > (uint64_t)INT64_MAX / FE_SECTOR ? (uint64_t)INT64_MAX / FE_SECTOR : cap) *
		   FE_SECTOR;
	if (!limits)
		return;
	fe->dis_sectors = fe->dis_segs = fe->wz_sectors = fe->wz_segs = 0;
	if (fe_has(fe, VIRTIO_BLK_F_DISCARD)) {
		fe->dis_sectors = le32toh(cfg.max_discard_sectors);
		fe->dis_segs = le32toh(cfg.max_discard_seg);
	}
	if (fe_has(fe, VIRTIO_BLK_F_WRITE_ZEROES)) {
		fe->wz_sectors = le32toh(cfg.max_write_zeroes_sectors);
		fe->wz_segs = le32toh(cfg.max_write_zeroes_seg);
	}
	/* A segment table must fit one slot. */
	if (fe->dis_segs > FE_SLOT_DATA / sizeof(struct virtio_blk_discard_write_zeroes))
		fe->dis_segs = FE_SLOT_DATA / sizeof(struct virtio_blk_discard_write_zeroes);
	if (fe->wz_segs > FE_SLOT_DATA / sizeof(struct virtio_blk_discard_write_zeroes))
		fe->wz_segs = FE_SLOT_DATA / sizeof(struct virtio_blk_discard_write_zeroes);
	fe->seg_size = fe_has(fe, VIRTIO_BLK_F_SIZE_MAX) ? le32toh(cfg.size_max) : UINT32_MAX;
	{
		uint64_t segs = fe_has(fe, VIRTIO_BLK_F_SEG_MAX) ? le32toh(cfg.seg_max) : 1;
		uint64_t unit;

		if (segs > FE_SEGS)
			segs = FE_SEGS;
		/* Without indirect descriptors a request takes header + data + status slots. */
		if (!(fe->features & (1ull << VIRTIO_RING_F_INDIRECT_DESC)) && segs + 2 > fe->qsize)
			segs = fe->qsize > 2 ? fe->qsize - 2u : 0;
		unit = (uint64_t)fe->seg_size * segs;
		unit = unit < FE_SLOT_DATA ? unit : FE_SLOT_DATA;
		fe->unit = (uint32_t)(unit / FE_SECTOR * FE_SECTOR);
		if (fe->seg_size > fe->unit)
			fe->seg_size = fe->unit;
	}
	fe->max_len = (FE_NSLOTS - 2) * fe->unit < FE_MAX_LEN ? (FE_NSLOTS - 2) * fe->unit :
								FE_MAX_LEN;
}

static int fe_open(struct vos_cdev *d)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct fe *fe = calloc(1, sizeof(*fe));
	struct stat st;
	int ret, n;

	if (!fe)
		return -ENOMEM;
	fe->d = d;
	fe->lfd = -1;
	snprintf(fe->name, sizeof(fe->name), "block%u", vos_cdev_index(d) % 100000u);
	TAILQ_INIT(&fe->free);
	TAILQ_INIT(&fe->subq);
	TAILQ_INIT(&fe->waitq);
	TAILQ_INIT(&fe->clients);
	fe->unit = FE_SLOT_DATA;
	fe->max_len = FE_MAX_LEN;
	fe_read_config(fe, false);

	n = snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/%s.sock", vos_cdev_rundir(d), fe->name);
	if (n < 0 || (size_t)n >= sizeof(sa.sun_path)) {
		vos_log(LOG_ERR, "%s: socket path too long", vos_cdev_name(d));
		ret = -ENAMETOOLONG;
		goto fail;
	}
	fe->path = strdup(sa.sun_path);
	fe->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (!fe->path || fe->lfd < 0) {
		ret = fe->path ? -errno : -ENOMEM;
		goto fail;
	}
	/* A socket left by a dead frontend is replaced; a live one or any other file is not. */
	if (lstat(fe->path, &st) == 0) {
		int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		bool alive = probe >= 0 && S_ISSOCK(st.st_mode) &&
			     connect(probe, (struct sockaddr *)&sa, sizeof(sa)) == 0;

		if (probe >= 0)
			close(probe);
		if (!S_ISSOCK(st.st_mode) || alive) {
			vos_log(LOG_ERR, "%s: %s exists%s", vos_cdev_name(d), fe->path,
				alive ? " and is served by another process" : "");
			ret = -EEXIST;
			goto fail;
		}
		unlink(fe->path);
	}
	if (bind(fe->lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fe->lfd, 16) < 0) {
		ret = -errno;
		vos_log(LOG_ERR, "%s: %s: %s", vos_cdev_name(d), fe->path, strerror(-ret));
		goto fail;
	}
	ret = vos_cdev_watch(d, fe->lfd, POLLIN, true);
	if (ret < 0)
		goto fail_unlink;
	vos_cdev_set_tick(d, 1000);
	vos_cdev_set_priv(d, fe);
	fe_info(fe);
	vos_log(LOG_INFO, "%s: NBD export %s on %s", vos_cdev_name(d), fe->name, fe->path);
	return 0;
fail_unlink:
	unlink(fe->path);
fail:
	if (fe->lfd >= 0)
		close(fe->lfd);
	free(fe->path);
	free(fe);
	return ret;
}

static int fe_size(struct vos_cdev *d, uint16_t qsize[VOS_MAX_QUEUES], size_t *pool)
{
	struct fe *fe = vos_cdev_priv(d);

	if (qsize[0] > FE_QSIZE)
		qsize[0] = FE_QSIZE;
	fe->qsize = qsize[0];
	*pool = FE_POOL;
	return 0;
}

static int fe_service(struct fe *fe)
{
	int ret = 0;

	if (fe->live) {
		fe_drain_subq(fe);
		fe_grant(fe);
		if (fe->need_kick) {
			fe->need_kick = false;
			ret = vos_cq_kick(fe->d, 0);
		}
	}
	fe_reap(fe);
	return ret;
}

static int fe_start(struct vos_cdev *d)
{
	struct fe *fe = vos_cdev_priv(d);
	uint8_t *data = vos_cdev_alloc(d, (size_t)FE_NSLOTS * FE_SLOT_DATA, 4096);
	uint8_t *hdrs = vos_cdev_alloc(d, (size_t)FE_NSLOTS * FE_SLOT_HDR, 64);

	if (!data || !hdrs)
		return -ENOMEM;
	fe->features = vos_cdev_features(d);
	fe_read_config(fe, true);
	if (fe->unit < FE_SECTOR) {
		vos_log(LOG_ERR, "%s: the host's segment limits leave no room for a sector",
			vos_cdev_name(d));
		return -EINVAL;
	}
	TAILQ_INIT(&fe->free);
	TAILQ_INIT(&fe->subq);
	for (unsigned i = 0; i < FE_NSLOTS; i++) {
		struct fe_slot *s = &fe->slot[i];

		*s = (struct fe_slot){ .state = SLOT_FREE };
		s->hdr = (struct virtio_blk_outhdr *)(hdrs + (size_t)i * FE_SLOT_HDR);
		s->status = hdrs + (size_t)i * FE_SLOT_HDR + sizeof(*s->hdr);
		s->data = data + (size_t)i * FE_SLOT_DATA;
		TAILQ_INSERT_TAIL(&fe->free, s, link);
	}
	fe->live = true;
	fe_info(fe);
	vos_log(LOG_INFO, "%s: %" PRIu64 " bytes%s, %u-byte units, requests up to %u bytes",
		vos_cdev_name(d), fe->size, fe_has(fe, VIRTIO_BLK_F_RO) ? " read-only" : "",
		fe->unit, fe->max_len);
	return fe_service(fe);
}

static int fe_irq(struct vos_cdev *d, unsigned q)
{
	struct fe *fe = vos_cdev_priv(d);
	void *token;
	uint32_t len;
	int ret;

	while ((ret = vos_cq_get_checked(d, q, &token, &len)) > 0) {
		struct fe_slot *s = token;

		/* Tokens are ours, handed back by the framework after it checked the id. */
		if (s < fe->slot || s >= fe->slot + FE_NSLOTS || s->state != SLOT_INFLIGHT)
			return -EBADMSG;
		fe_complete(fe, s, len);
	}
	if (ret < 0) {
		vos_log(LOG_ERR, "%s: bad used buffer from the host", vos_cdev_name(d));
		return ret;
	}
	return fe_service(fe);
}

static struct fe_client *fe_find(struct fe *fe, int fd)
{
	struct fe_client *cl;

	TAILQ_FOREACH(cl, &fe->clients, link)
		if (cl->fd == fd)
			return cl;
	return NULL;
}

static int fe_event(struct vos_cdev *d, int fd, short revents)
{
	struct fe *fe = vos_cdev_priv(d);
	struct fe_client *cl;

	if (fd == fe->lfd) {
		fe_accept(fe);
	} else if ((cl = fe_find(fe, fd))) {
		if (revents & (POLLERR | POLLNVAL))
			cl->broken = true;
		if (revents & POLLOUT)
			fe_client_flush(fe, cl);
		if (revents & (POLLIN | POLLHUP))
			fe_client_read(fe, cl);
	}
	return fe_service(fe);
}

static int fe_tick(struct vos_cdev *d)
{
	struct fe *fe = vos_cdev_priv(d);
	time_t now = fe_now();
	struct fe_client *cl;

	TAILQ_FOREACH(cl, &fe->clients, link) {
		if (cl->fd >= 0 && cl->state < CL_REQ && now > cl->deadline) {
			vos_log(LOG_NOTICE, "%s: client handshake timed out", vos_cdev_name(d));
			cl->broken = true;
		}
	}
	if (fe->accept_paused && vos_cdev_watch(d, fe->lfd, POLLIN, true) == 0)
		fe->accept_paused = false;
	return fe_service(fe);
}

static int fe_config(struct vos_cdev *d)
{
	struct fe *fe = vos_cdev_priv(d);
	uint64_t old = fe->size;

	fe_read_config(fe, false);
	if (fe->size == old)
		return 0;
	fe_info(fe);
	vos_log(LOG_NOTICE, "%s: export size %" PRIu64 " -> %" PRIu64 " bytes (new clients)",
		vos_cdev_name(d), old, fe->size);
	return 0;
}

/*
 * The host is gone: the window (and every slot in it) is released after we return. Units in
 * the ring or waiting fail with EIO, a WRITE's remaining payload is read and dropped, and READ
 * replies already queued keep their data in a heap copy.
 */
static void fe_stop(struct vos_cdev *d, enum vos_stop_reason why)
{
	struct fe *fe = vos_cdev_priv(d);
	struct fe_client *cl;
	struct fe_op *op;

	(void)why;
	if (!fe->live)
		return;
	fe->live = false;                 /* slots freed from now on stay out of fe->free */
	for (unsigned i = 0; i < FE_NSLOTS; i++)
		if (fe->slot[i].state == SLOT_INFLIGHT || fe->slot[i].state == SLOT_QUEUED)
			fe_unit_done(fe, &fe->slot[i], NBDP_EIO);
	TAILQ_INIT(&fe->subq);
	TAILQ_FOREACH(cl, &fe->clients, link) {
		struct fe_out *o;

		if ((op = cl->rx_op)) {
			cl->discard += fe_payload_left(op, cl);
			if (cl->rx_slot) {
				cl->rx_slot = NULL;
				op->done++;
			}
			fe_op_abandon(fe, op, NBDP_EIO);
			fe_payload(fe, cl);
		}
		TAILQ_FOREACH(o, &cl->out, link) {
			size_t len = 0;
			uint8_t *blob, *p;

			if (!o->op || !o->op->held)
				continue;
			for (unsigned i = o->idx; i < o->niov; i++)
				len += o->iov[i].iov_len;
			blob = malloc(len);
			if (!blob) {
				cl->broken = true;
				break;
			}
			p = blob;
			for (unsigned i = o->idx; i < o->niov; i++)
				p = (uint8_t *)memcpy(p, o->iov[i].iov_base, o->iov[i].iov_len) +
				    o->iov[i].iov_len;
			free(o->blob);
			o->blob = blob;
			o->iov[0] = (struct iovec){ blob, len };
			o->idx = 0;
			o->niov = 1;
			free(o->op->held);
			o->op->held = NULL;
		}
	}
	while ((op = TAILQ_FIRST(&fe->waitq))) {
		fe_op_abandon(fe, op, NBDP_EIO);
		fe_op_progress(fe, op);
	}
	TAILQ_INIT(&fe->free);
	for (unsigned i = 0; i < FE_NSLOTS; i++)
		fe->slot[i] = (struct fe_slot){ .state = SLOT_FREE };
	fe_reap(fe);
}

static void fe_close(struct vos_cdev *d)
{
	struct fe *fe = vos_cdev_priv(d);
	struct fe_client *cl, *next;

	if (!fe)
		return;
	fe_stop(d, VOS_STOP_SHUTDOWN);
	for (cl = TAILQ_FIRST(&fe->clients); cl; cl = next) {
		next = TAILQ_NEXT(cl, link);
		if (cl->fd >= 0)
			fe_client_close(fe, cl);
		free(cl);
	}
	vos_cdev_watch(d, fe->lfd, 0, true);
	close(fe->lfd);
	unlink(fe->path);
	free(fe->path);
	free(fe);
	vos_cdev_set_priv(d, NULL);
}

const struct vos_frontend_ops vos_blk_frontend = {
	.type = VIRTIO_ID_BLOCK,
	.name = "block",
	.features = 1ull << VIRTIO_BLK_F_SIZE_MAX | 1ull << VIRTIO_BLK_F_SEG_MAX |
		    1ull << VIRTIO_BLK_F_BLK_SIZE | 1ull << VIRTIO_BLK_F_FLUSH |
		    1ull << VIRTIO_BLK_F_RO | 1ull << VIRTIO_BLK_F_DISCARD |
		    1ull << VIRTIO_BLK_F_WRITE_ZEROES,
	.open = fe_open,
	.size = fe_size,
	.start = fe_start,
	.irq = fe_irq,
	.event = fe_event,
	.tick = fe_tick,
	.config = fe_config,
	.stop = fe_stop,
	.close = fe_close,
};
