// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * host.c - the host framework of scif-virtiod (node 0): listens for cards, keeps one session
 * per card (its device page), and runs one thread per device that owns the device connection,
 * the card's rings (mapped) and the backend's ops. vos_hq_*, vos_req_* and vos_hdev_* of
 * vos.h are here.
 *
 * Threads and locks. The main thread (vos_host_run) accepts connections, reads their first
 * message (HELLO or ATTACH, with a deadline, never blocking), runs the control connections
 * and applies configurations. Each device thread calls its backend's ops and nothing else
 * does. h->lock guards what the two kinds share: the sessions (references, `dead`, every
 * write into a device page), a device's command word and published state, the cards' slots.
 * Commands go to a device thread through its eventfd; device threads tell the main thread
 * that the status changed through h->evfd.
 *
 * A second HELLO from a node whose session is still up means the card's frontend restarted
 * (its old process may not even be reaped yet): the old session is ended at once (its
 * devices stop with CARD_LOST) and the new one is welcomed, so a restarted card never waits.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <linux/virtio_ids.h>

#include "internal.h"
#include "vq.h"

#define PAGE 4096u
#define PENDING_MAX 64          /* connections that have not said HELLO/ATTACH yet */
#define LOST_GRACE_MS 300       /* device EOF: how long to wait for the control EOF too */

/* A device: down (no card) -> attached (connection, no READY yet) -> up (started); a reset
 * leaves it "reset" until the card attaches again. The status file says "down" for attached. */
enum hdev_state { HDEV_DOWN, HDEV_ATTACHED, HDEV_UP, HDEV_RESET };
static const char *const hdev_state_name[] = { "down", "attached", "up", "reset" };
static const char *const hdev_status_word[] = { "down", "down", "up", "reset" };

/* Commands to a device thread (vos_hdev.cmd). */
#define HCMD_ATTACH 0x1         /* take attach_epd / attach_sess */
#define HCMD_LOST 0x2           /* a session ended: detach if it was ours */
#define HCMD_SHUTDOWN 0x4       /* stop(SHUTDOWN), close(), leave */

/* One card's control connection and its device page. */
struct host_session {
	int refs;                          /* h->lock: main thread's + attached devices' */
	bool dead;                         /* h->lock: ended (EOF, BYE, replaced) */
	bool bye;                          /* h->lock: ended with BYE */
	uint16_t node;
	uint64_t cookie;
	struct vos_devpage *page;          /* the card's page, mapped; unmapped at refs 0 */
	/* h->lock: our shadows of what we wrote (the card could scribble on the page). */
	uint32_t page_gen;
	uint32_t slot_gen[VOS_MAX_SLOTS], config_gen[VOS_MAX_SLOTS], hstatus[VOS_MAX_SLOTS];
	struct vos_conn conn;              /* main thread only; epd closed when the session ends */
};

struct host_card {
	uint16_t node;
	bool online;                       /* h->lock */
	struct host_session *sess;         /* h->lock (written by the main thread only) */
	struct vos_hdev *slot[VOS_MAX_SLOTS]; /* h->lock */
	uint32_t slots_used;               /* slots ever given out: reused last */
	struct host_card *next;            /* sorted by node */
};

struct hmap {
	void *addr;
	size_t len;
};

struct vos_hdev {
	struct vos_host *h;
	const struct vos_backend_ops *ops;
	struct vos_devconf conf;
	struct host_card *card;
	unsigned slot;
	char name[32];
	pthread_t thread;
	struct vos_hdev *next;             /* h->devs, main thread */

	/* h->lock */
	unsigned cmd;
	scif_epd_t attach_epd;
	struct host_session *attach_sess;  /* with a reference */
	bool open_done;
	int open_ret;
	uint64_t offered;                  /* set in open() */
	uint16_t config_len;
	uint8_t config[VOS_CONFIG_MAX];

	/* device thread only (but loop.status: h->lock); loop.cmd_fd: cmd has bits */
	struct vos_devloop loop;
	void *priv;
	bool in_open;
	enum hdev_state state;
	struct host_session *sess;         /* attached (a reference), NULL if none */
	uint64_t features;
	unsigned nq;
	struct vq_host vq[VOS_MAX_QUEUES];
	struct hmap map[3 * VOS_MAX_QUEUES];
	unsigned nmap;
};

struct pending {
	struct vos_conn conn;
	uint16_t node;
	uint64_t deadline;
};

struct vos_host {
	struct vos_host_opts o;
	char *run_dir;
	scif_epd_t lep;
	int evfd;                          /* device threads: "status changed" */
	pthread_mutex_t lock;
	pthread_cond_t cond;               /* open_done */
	struct host_card *cards;
	struct vos_hdev *devs;
	struct pending pend[PENDING_MAX];
	unsigned npend;
};

static const struct vos_backend_ops *const default_backends[] = {
	&vos_net_backend, &vos_blk_backend, &vos_console_backend, NULL
};

static void send_refuse(scif_epd_t epd, uint16_t dev, int err)
{
	struct vos_msg m = { .type = VOS_MSG_REFUSE, .dev = dev, .len = (uint32_t)err };

	scif_send(epd, &m, sizeof(m), 0); /* best effort: the connection is closed next */
}

/* ---------------------------------------------------------------------------------------- */
/* Sessions and the device page. */

/* h->lock held. */
static void sess_get(struct host_session *s)
{
	s->refs++;
}

static void sess_put(struct vos_host *h, struct host_session *s)
{
	bool last;

	pthread_mutex_lock(&h->lock);
	last = --s->refs == 0;
	pthread_mutex_unlock(&h->lock);
	if (!last)
		return;
	scif_munmap(s->page, VOS_DEVPAGE_SIZE);
	free(s);
}

/*
 * h->lock held. Write slot @slot of @s's page from @d (NULL: an empty slot with only
 * s->hstatus[slot], e.g. REMOVED), @config_changed bumps config_gen. Seqlock (internal.h):
 * the odd host_gen goes out before the fields, the even one after them.
 */
static void slot_write(struct host_session *s, unsigned slot, const struct vos_hdev *d,
		       bool config_changed)
{
	struct vos_slot_host *sh = &s->page->slot[slot].host;
	uint32_t g = s->slot_gen[slot];

	vos_write_once(&sh->host_gen, g + 1);
	vos_wmb(); /* odd gen before the fields: pairs with the card's vos_rmb after its copy */
	sh->type = d ? d->ops->type : 0;
	sh->nqueues = d ? d->ops->nqueues : 0;
	sh->config_len = d ? d->config_len : 0;
	sh->features = d ? d->offered : 0;
	for (unsigned q = 0; q < VOS_MAX_QUEUES; q++) {
		uint16_t max = d && q < d->ops->nqueues ? d->ops->queue_max : 0;

		while (max & (max - 1))
			max &= (uint16_t)(max - 1); /* largest power of 2 below */
		sh->queue_max[q] = max > VOS_QUEUE_MAX ? VOS_QUEUE_MAX : max;
	}
	sh->host_status = s->hstatus[slot];
	if (d)
		memcpy(sh->config, d->config, d->config_len);
	if (config_changed) {
		s->config_gen[slot]++;
		vos_store_release(&sh->config_gen, s->config_gen[slot]); /* config before it */
	}
	s->slot_gen[slot] = g + 2;
	/* The fields before the even gen: pairs with the card's vos_load_acquire of host_gen. */
	vos_store_release(&sh->host_gen, g + 2);
	s->page_gen++;
	vos_store_release(&s->page->host_gen, s->page_gen); /* pairs with the card's acquire */
}

static struct host_card *card_find(struct vos_host *h, uint16_t node, bool create)
{
	struct host_card **pp = &h->cards, *c;

	while (*pp && (*pp)->node < node)
		pp = &(*pp)->next;
	if (*pp && (*pp)->node == node)
		return *pp;
	if (!create || !(c = calloc(1, sizeof(*c))))
		return NULL;
	c->node = node;
	pthread_mutex_lock(&h->lock);
	c->next = *pp;
	*pp = c;
	pthread_mutex_unlock(&h->lock);
	return c;
}

/* Send a device thread a command. */
static void hdev_command(struct vos_hdev *d, unsigned cmd)
{
	pthread_mutex_lock(&d->h->lock);
	d->cmd |= cmd;
	pthread_mutex_unlock(&d->h->lock);
	vos_wake(d->loop.cmd_fd);
}

/* Main thread: the card's control connection is gone (or replaced); its devices stop. */
static void sess_end(struct vos_host *h, struct host_card *c, bool bye, const char *why)
{
	struct host_session *s = c->sess;

	if (!s)
		return;
	vos_log(bye ? LOG_NOTICE : LOG_WARNING, "card%u: offline: %s", c->node, why);
	pthread_mutex_lock(&h->lock);
	s->dead = true;
	s->bye = bye;
	c->sess = NULL;
	c->online = false;
	pthread_mutex_unlock(&h->lock);
	for (unsigned i = 0; i < VOS_MAX_SLOTS; i++)
		if (c->slot[i])
			hdev_command(c->slot[i], HCMD_LOST);
	scif_close(s->conn.epd);
	sess_put(h, s);
	if (h->o.on_change)
		h->o.on_change(h, h->o.arg);
}

/* Main thread: a HELLO on a new connection @p. Takes over p->conn.epd. */
static void sess_hello(struct vos_host *h, struct pending *p, const struct vos_msg *m)
{
	struct host_session *s;
	struct host_card *c;
	struct vos_msg w = { .type = VOS_MSG_WELCOME };
	scif_epd_t epd = p->conn.epd;
	void *page;
	int err = EPROTO;

	if (m->len != VOS_DEVPAGE_SIZE || (m->arg & (PAGE - 1)) ||
	    m->arg > (uint64_t)INT64_MAX - VOS_DEVPAGE_SIZE) {
		vos_log(LOG_WARNING, "card%u: HELLO with a device page of %" PRIu32
			" bytes at %#" PRIx64 ": refused", p->node, m->len, m->arg);
		goto refuse;
	}
	c = card_find(h, p->node, true);
	if (!c) {
		err = ENOMEM;
		goto refuse;
	}
	if (c->sess)
		sess_end(h, c, false, "a new HELLO (the card frontend restarted)");
	page = scif_mmap(NULL, VOS_DEVPAGE_SIZE, SCIF_PROT_READ | SCIF_PROT_WRITE, 0, epd,
			 (off_t)m->arg);
	if (page == SCIF_MMAP_FAILED) {
		err = errno;
		vos_log(LOG_WARNING, "card%u: cannot map its device page: %s", p->node,
			strerror(err));
		goto refuse;
	}
	s = calloc(1, sizeof(*s));
	if (!s) {
		scif_munmap(page, VOS_DEVPAGE_SIZE);
		err = ENOMEM;
		goto refuse;
	}
	s->page = page;
	if (vos_read_once(&s->page->magic) != VOS_MAGIC ||
	    vos_read_once(&s->page->version) != VOS_VERSION ||
	    vos_read_once(&s->page->nslots) != VOS_MAX_SLOTS) {
		vos_log(LOG_WARNING, "card%u: device page has magic %#x version %u nslots %u: "
			"refused", p->node, vos_read_once(&s->page->magic),
			vos_read_once(&s->page->version), vos_read_once(&s->page->nslots));
		scif_munmap(page, VOS_DEVPAGE_SIZE);
		free(s);
		goto refuse;
	}
	s->refs = 1;
	s->node = p->node;
	s->conn = p->conn;
	while (getrandom(&s->cookie, sizeof(s->cookie), 0) != sizeof(s->cookie) || !s->cookie)
		;
	pthread_mutex_lock(&h->lock);
	for (unsigned i = 0; i < VOS_MAX_SLOTS; i++)
		if (c->slot[i]) {
			slot_write(s, i, c->slot[i], true);
			w.len = i + 1;
		}
	c->sess = s;
	c->online = true;
	pthread_mutex_unlock(&h->lock);
	w.arg = s->cookie;
	if (vos_conn_send(&s->conn, &w) < 0) {
		sess_end(h, c, false, "WELCOME not sent");
		return;
	}
	vos_log(LOG_NOTICE, "card%u: online, %u slots", c->node, w.len);
	if (h->o.on_change)
		h->o.on_change(h, h->o.arg);
	return;
refuse:
	send_refuse(epd, 0, err);
	scif_close(epd);
}

/* Main thread: an ATTACH on a new connection @p: hand it to the device's thread. */
static void dev_attach(struct vos_host *h, struct pending *p, const struct vos_msg *m)
{
	struct host_card *c = card_find(h, p->node, false);
	struct host_session *old = NULL;
	scif_epd_t old_epd = -1;
	struct vos_hdev *d = NULL;
	int err = 0;

	if (!c || !c->sess || m->arg != c->sess->cookie)
		err = EPERM;
	else if (m->dev >= VOS_MAX_SLOTS || !(d = c->slot[m->dev]))
		err = ENODEV;
	if (err) {
		vos_log(LOG_WARNING, "card%u: ATTACH of slot %u refused: %s", p->node, m->dev,
			err == EPERM ? "no session with that cookie" : "no such device");
		send_refuse(p->conn.epd, m->dev, err);
		scif_close(p->conn.epd);
		return;
	}
	pthread_mutex_lock(&h->lock);
	if (d->cmd & HCMD_ATTACH) { /* attached twice before the thread looked: keep the last */
		old_epd = d->attach_epd;
		old = d->attach_sess;
	}
	d->attach_epd = p->conn.epd;
	d->attach_sess = c->sess;
	sess_get(c->sess);
	d->cmd |= HCMD_ATTACH;
	pthread_mutex_unlock(&h->lock);
	vos_wake(d->loop.cmd_fd);
	if (old) {
		scif_close(old_epd);
		sess_put(h, old);
	}
}

/* ---------------------------------------------------------------------------------------- */
/* Device thread. */

static void hdev_publish(void *dev)
{
	struct vos_hdev *d = dev;
	char line[VOS_STATUS_MAX], *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	if (!f)
		return;
	fprintf(f, "%s %s %s", d->name, d->ops->name, hdev_status_word[d->state]);
	if (d->ops->status) {
		fputc(' ', f);
		d->ops->status(d, f);
	}
	if (fclose(f) || !buf)
		return;
	snprintf(line, sizeof(line), "%s", buf);
	free(buf);
	vos_devloop_publish(&d->loop, line);
}

static int hdev_mem_read(void *ctx, void *buf, size_t len, uint64_t off)
{
	struct vos_hdev *d = ctx;

	if (!len)
		return 0;
	if (off > INT64_MAX)
		return -ENXIO;
	return scif_vreadfrom(d->loop.conn.epd, buf, len, (off_t)off, SCIF_RMA_SYNC) ? -errno : 0;
}

static int hdev_mem_write(void *ctx, const void *buf, size_t len, uint64_t off)
{
	struct vos_hdev *d = ctx;

	if (!len)
		return 0;
	if (off > INT64_MAX)
		return -ENXIO;
	return scif_vwriteto(d->loop.conn.epd, (void *)buf, len, (off_t)off, SCIF_RMA_SYNC)
		       ? -errno
		       : 0;
}

static const struct vq_mem_ops hdev_mem_ops = { .read = hdev_mem_read, .write = hdev_mem_write };

/* Set or clear a host_status bit of our slot in the attached session's page. */
static void hdev_slot_status(struct vos_hdev *d, struct host_session *s, uint32_t set,
			     uint32_t clear)
{
	struct vos_host *h = d->h;

	pthread_mutex_lock(&h->lock);
	if (!s->dead && d->card->slot[d->slot] == d) { /* not after a removal */
		uint32_t old = s->hstatus[d->slot];

		s->hstatus[d->slot] = (old | set) & ~clear;
		if (s->hstatus[d->slot] != old)
			slot_write(s, d->slot, d, false);
	}
	pthread_mutex_unlock(&h->lock);
}

/* Leave the card: stop() if started, unmap the rings, close the device connection. With
 * @reset, NEEDS_RESET goes into the slot first, so the card knows to re-attach. */
static void hdev_detach(struct vos_hdev *d, enum vos_stop_reason why, bool reset)
{
	if (d->state == HDEV_UP)
		d->ops->stop(d, why);
	for (unsigned i = 0; i < d->nmap; i++)
		scif_munmap(d->map[i].addr, d->map[i].len);
	d->nmap = 0;
	d->nq = 0;
	d->features = 0;
	d->loop.err = 0;
	if (d->sess) {
		if (reset)
			hdev_slot_status(d, d->sess, VOS_HSTATUS_NEEDS_RESET, 0);
		sess_put(d->h, d->sess);
		d->sess = NULL;
	}
	if (d->loop.conn.epd >= 0)
		scif_close(d->loop.conn.epd);
	d->loop.conn.epd = -1;
	d->state = reset ? HDEV_RESET : HDEV_DOWN;
	hdev_publish(d);
}

static void hdev_reset(struct vos_hdev *d, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void hdev_reset(struct vos_hdev *d, const char *fmt, ...)
{
	char why[200];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	vos_log(LOG_WARNING, "%s: reset: %s", d->name, why);
	hdev_detach(d, VOS_STOP_RESET, true);
}

/* The loop's ops->reset: an op failed, or a vq call or doorbell inside it. */
static void hdev_op_reset(void *dev, const char *why)
{
	hdev_reset(dev, "%s", why);
}

static void hdev_attach(struct vos_hdev *d, scif_epd_t epd, struct host_session *s)
{
	if (d->loop.conn.epd >= 0) {
		vos_log(LOG_INFO, "%s: the card attached again", d->name);
		hdev_detach(d, VOS_STOP_DETACH, false);
	}
	vos_conn_init(&d->loop.conn, epd);
	d->sess = s;
	hdev_slot_status(d, s, 0, VOS_HSTATUS_NEEDS_RESET);
	d->state = HDEV_ATTACHED;
	vos_log(LOG_INFO, "%s: attached", d->name);
	hdev_publish(d);
}

/* Is [off, off + len) inside the window, aligned to @align? */
static bool in_window(const struct vos_slot_card *sc, uint64_t off, uint64_t len, unsigned align)
{
	return !(off & (align - 1)) && off >= sc->window && len <= sc->window_len &&
	       off - sc->window <= sc->window_len - len;
}

/* Map the pages holding [off, off + len) of the card's window. NULL + errno on failure. */
static void *hdev_map(struct vos_hdev *d, uint64_t off, size_t len, int prot)
{
	uint64_t start = off & ~(uint64_t)(PAGE - 1);
	size_t mlen = (size_t)((off + len - start + PAGE - 1) & ~(uint64_t)(PAGE - 1));
	uint8_t *p = scif_mmap(NULL, mlen, prot, 0, d->loop.conn.epd, (off_t)start);

	if (p == SCIF_MMAP_FAILED)
		return NULL;
	d->map[d->nmap].addr = p;
	d->map[d->nmap++].len = mlen;
	return p + (off - start);
}

/* READY: validate the card's half (a copy), map the rings, start. */
static void hdev_ready(struct vos_hdev *d)
{
	const uint32_t need = VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
			      VIRTIO_CONFIG_S_FEATURES_OK | VIRTIO_CONFIG_S_DRIVER_OK;
	struct vos_slot_card sc;
	struct vos_slot_card *src = &d->sess->page->slot[d->slot].card;
	uint16_t qmax = d->ops->queue_max;
	uint8_t last;
	int r;

	while (qmax & (qmax - 1))
		qmax &= (uint16_t)(qmax - 1);
	if (qmax > VOS_QUEUE_MAX)
		qmax = VOS_QUEUE_MAX;
	(void)vos_load_acquire(&src->card_gen); /* pairs with the card's release after its half */
	memcpy(&sc, src, sizeof(sc));            /* one copy: the card cannot change it under us */
	if ((sc.status & need) != need ||
	    (sc.status & (VIRTIO_CONFIG_S_FAILED | VIRTIO_CONFIG_S_NEEDS_RESET)))
		return hdev_reset(d, "READY with status %#x", sc.status);
	if (sc.features & ~d->offered)
		return hdev_reset(d, "READY with features %#" PRIx64 " not offered (%#" PRIx64 ")",
				  sc.features, d->offered);
	if (!(sc.features & (1ULL << VIRTIO_F_VERSION_1)))
		return hdev_reset(d, "READY without VIRTIO_F_VERSION_1");
	if ((sc.window & (PAGE - 1)) || !sc.window_len || (sc.window_len & (PAGE - 1)) ||
	    sc.window > INT64_MAX || sc.window_len > INT64_MAX - sc.window)
		return hdev_reset(d, "READY with window %#" PRIx64 "+%#" PRIx64, sc.window,
				  sc.window_len);
	for (unsigned q = 0; q < VOS_MAX_QUEUES; q++) {
		const struct vos_queue_desc *qd = &sc.queue[q];
		uint64_t n = qd->size;

		if (q >= d->ops->nqueues) {
			if (n)
				return hdev_reset(d, "READY with queue %u, the device has %u", q,
						  d->ops->nqueues);
			continue;
		}
		if (!vos_is_pow2(qd->size) || qd->size > qmax)
			return hdev_reset(d, "READY with queue %u of size %u (max %u)", q,
					  qd->size, qmax);
		if (!in_window(&sc, qd->desc, 16 * n, 16) ||
		    !in_window(&sc, qd->avail, 6 + 2 * n, 2) ||
		    !in_window(&sc, qd->used, 6 + 8 * n, 4))
			return hdev_reset(d, "READY with queue %u rings outside the window", q);
	}
	/* A window that ends in unregistered space would only fail on some later request. */
	if (scif_vreadfrom(d->loop.conn.epd, &last, 1, (off_t)(sc.window + sc.window_len - 1),
			   SCIF_RMA_SYNC) < 0)
		return hdev_reset(d, "READY with a window not registered to its end: %s",
				  strerror(errno));
	for (unsigned q = 0; q < d->ops->nqueues; q++) {
		const struct vos_queue_desc *qd = &sc.queue[q];
		void *desc = hdev_map(d, qd->desc, 16u * qd->size, SCIF_PROT_READ);
		void *avail = desc ? hdev_map(d, qd->avail, 6u + 2u * qd->size, SCIF_PROT_READ)
				   : NULL;
		void *used = avail ? hdev_map(d, qd->used, 6u + 8u * qd->size,
					      SCIF_PROT_READ | SCIF_PROT_WRITE)
				   : NULL;

		if (!used)
			return hdev_reset(d, "queue %u: cannot map its rings: %s", q,
					  strerror(errno));
		r = vq_host_init(&d->vq[q], qd->size, sc.features, desc, avail, used, sc.window,
				 sc.window_len, &hdev_mem_ops, d);
		if (r < 0)
			return hdev_reset(d, "queue %u: %s", q, strerror(-r));
	}
	d->features = sc.features;
	d->nq = d->ops->nqueues;
	d->state = HDEV_UP; /* the queues work inside start() already */
	r = d->ops->start(d);
	if (r < 0 || d->loop.err) {
		d->state = HDEV_ATTACHED; /* start() failed: no stop() */
		vos_devloop_failed(&d->loop, r, "start");
		return;
	}
	vos_log(LOG_INFO, "%s: up, features %#" PRIx64, d->name, d->features);
	hdev_publish(d);
	for (unsigned q = 0; q < d->nq && d->state == HDEV_UP; q++)
		vos_devloop_failed(&d->loop, d->ops->kick(d, q), "kick");
}

/* The device connection is gone: CARD_LOST if the control connection went with it (it may
 * be noticed a little later: wait for the main thread's word a short while), else DETACH. */
static void hdev_conn_lost(void *dev, int err)
{
	struct vos_hdev *d = dev;
	uint64_t end = vos_now_ms() + LOST_GRACE_MS;
	bool dead, bye;

	for (;;) {
		struct pollfd p = { .fd = d->loop.cmd_fd, .events = POLLIN };
		uint64_t now = vos_now_ms();

		pthread_mutex_lock(&d->h->lock);
		dead = d->sess->dead;
		bye = d->sess->bye;
		pthread_mutex_unlock(&d->h->lock);
		if (dead || now >= end)
			break;
		if (poll(&p, 1, (int)(end - now)) < 0 && errno != EINTR)
			break;
		if (p.revents)
			end = now; /* a command: look once more and go on */
	}
	vos_log(dead && !bye ? LOG_WARNING : LOG_INFO, "%s: detached (%s)", d->name,
		dead ? (bye ? "card shut down" : "card lost") : strerror(-err));
	hdev_detach(d, dead && !bye ? VOS_STOP_CARD_LOST : VOS_STOP_DETACH, false);
}

static void hdev_message(void *dev, const struct vos_msg *m)
{
	struct vos_hdev *d = dev;

	if (m->type == VOS_MSG_READY && d->state == HDEV_ATTACHED)
		return hdev_ready(d);
	if (m->type == VOS_MSG_KICK && d->state == HDEV_UP && m->queue < d->nq)
		return (void)vos_devloop_failed(&d->loop, d->ops->kick(d, m->queue), "kick");
	hdev_reset(d, "unexpected message type %u queue %u in state %s", m->type, m->queue,
		   hdev_state_name[d->state]);
}

/* Commands from the main thread. Returns false on SHUTDOWN. */
static bool hdev_commands(void *dev)
{
	struct vos_hdev *d = dev;
	struct host_session *s = NULL;
	scif_epd_t epd = -1;
	unsigned cmd;
	bool lost = false, card_gone;

	pthread_mutex_lock(&d->h->lock);
	cmd = d->cmd;
	d->cmd = 0;
	if (cmd & HCMD_ATTACH) {
		epd = d->attach_epd;
		s = d->attach_sess;
	}
	if (d->sess && d->sess->dead)
		lost = true;
	card_gone = !d->card->sess;
	pthread_mutex_unlock(&d->h->lock);
	if (d->state == HDEV_RESET && card_gone) { /* no card to re-attach any more */
		d->state = HDEV_DOWN;
		hdev_publish(d);
	}
	if (lost) {
		vos_log(LOG_INFO, "%s: detached (%s)", d->name,
			d->sess->bye ? "card shut down" : "card lost");
		hdev_detach(d, d->sess->bye ? VOS_STOP_DETACH : VOS_STOP_CARD_LOST, false);
	}
	if (cmd & HCMD_SHUTDOWN) {
		if (s) {
			scif_close(epd);
			sess_put(d->h, s);
		}
		return false;
	}
	if (s && s->dead) { /* the card went away again before we looked */
		scif_close(epd);
		sess_put(d->h, s);
	} else if (s) {
		hdev_attach(d, epd, s);
	}
	return true;
}

static bool hdev_started(void *dev)
{
	return ((struct vos_hdev *)dev)->state == HDEV_UP;
}

static int hdev_event(void *dev, int fd, short revents)
{
	struct vos_hdev *d = dev;

	return d->ops->event(d, fd, revents);
}

static int hdev_tick(void *dev)
{
	struct vos_hdev *d = dev;

	return d->ops->tick ? d->ops->tick(d) : 0;
}

static const struct vos_devloop_ops hdev_loop_ops = {
	.commands = hdev_commands,
	.message = hdev_message,
	.conn_lost = hdev_conn_lost,
	.started = hdev_started,
	.event = hdev_event,
	.tick = hdev_tick,
	.reset = hdev_op_reset,
	.publish = hdev_publish,
};

static void *hdev_thread(void *arg)
{
	struct vos_hdev *d = arg;
	int r;

	d->in_open = true;
	r = d->ops->open(d, &d->conf);
	d->in_open = false;
	pthread_mutex_lock(&d->h->lock);
	d->open_ret = r < 0 ? r : 0;
	d->open_done = true;
	pthread_cond_broadcast(&d->h->cond);
	pthread_mutex_unlock(&d->h->lock);
	if (r < 0)
		return NULL;
	hdev_publish(d);
	vos_devloop_run(&d->loop);
	if (d->loop.conn.epd >= 0 || d->state == HDEV_UP)
		hdev_detach(d, VOS_STOP_SHUTDOWN, false);
	d->ops->close(d);
	return NULL;
}

/* ---------------------------------------------------------------------------------------- */
/* The vos.h calls of a backend (device thread, inside an op). */

static int hdev_fail(struct vos_hdev *d, int err)
{
	if (err < 0 && !d->loop.err)
		d->loop.err = err;
	return err;
}

static struct vq_host *hdev_vq(struct vos_hdev *d, unsigned q)
{
	return d->state == HDEV_UP && q < d->nq ? &d->vq[q] : NULL;
}

int vos_hq_pop(struct vos_hdev *d, unsigned q, struct vos_req *r)
{
	struct vq_host *vq = hdev_vq(d, q);

	return vq ? hdev_fail(d, vq_host_pop(vq, r)) : -ENOTCONN;
}

int vos_hq_push(struct vos_hdev *d, unsigned q, const struct vos_req *r, uint32_t written)
{
	struct vq_host *vq = hdev_vq(d, q);

	return vq ? hdev_fail(d, vq_host_push(vq, r, written)) : -ENOTCONN;
}

int vos_hq_notify(struct vos_hdev *d, unsigned q)
{
	struct vq_host *vq = hdev_vq(d, q);
	struct vos_msg m = { .type = VOS_MSG_IRQ, .queue = (uint8_t)q, .dev = (uint16_t)d->slot };

	if (!vq)
		return -ENOTCONN;
	if (!vq_host_need_irq(vq))
		return 0;
	return hdev_fail(d, vos_conn_send(&d->loop.conn, &m));
}

int vos_hq_kicks(struct vos_hdev *d, unsigned q, bool on)
{
	struct vq_host *vq = hdev_vq(d, q);

	return vq ? vq_host_kicks(vq, on) : -ENOTCONN;
}

unsigned vos_hq_count(const struct vos_hdev *d)
{
	return d->state == HDEV_UP ? d->nq : 0;
}


ssize_t vos_req_read(struct vos_hdev *d, const struct vos_req *r, size_t off, void *buf,
		     size_t len)
{
	ssize_t n;

	if (d->state != HDEV_UP)
		return -ENOTCONN;
	n = vq_req_read(&d->vq[0], r, off, buf, len);
	if (n < 0)
		hdev_fail(d, (int)n);
	return n;
}

ssize_t vos_req_write(struct vos_hdev *d, const struct vos_req *r, size_t off,
		      const void *buf, size_t len)
{
	ssize_t n;

	if (d->state != HDEV_UP)
		return -ENOTCONN;
	n = vq_req_write(&d->vq[0], r, off, buf, len);
	if (n < 0)
		hdev_fail(d, (int)n);
	return n;
}

void vos_hdev_set_features(struct vos_hdev *d, uint64_t features)
{
	if (!d->in_open) {
		vos_log(LOG_ERR, "%s: features can only be set in open()", d->name);
		return;
	}
	pthread_mutex_lock(&d->h->lock);
	d->offered = features | VOS_TRANSPORT_FEATURES;
	pthread_mutex_unlock(&d->h->lock);
}

uint64_t vos_hdev_features(const struct vos_hdev *d)
{
	return d->features;
}

int vos_hdev_set_config(struct vos_hdev *d, const void *config, size_t len)
{
	struct vos_msg m = { .type = VOS_MSG_CONFIG, .dev = (uint16_t)d->slot };
	struct host_session *s;

	if (len > VOS_CONFIG_MAX)
		return -EINVAL;
	pthread_mutex_lock(&d->h->lock);
	memcpy(d->config, config, len);
	d->config_len = (uint16_t)len;
	s = d->card->sess;
	if (s && d->card->slot[d->slot] == d)
		slot_write(s, d->slot, d, true);
	pthread_mutex_unlock(&d->h->lock);
	if (d->state == HDEV_UP) /* a card attaching later reads the new config from its slot */
		return hdev_fail(d, vos_conn_send(&d->loop.conn, &m));
	return 0;
}

int vos_hdev_watch(struct vos_hdev *d, int fd, short events, bool always)
{
	return vos_devloop_watch(&d->loop, fd, events, always);
}

void vos_hdev_set_tick(struct vos_hdev *d, unsigned ms)
{
	vos_devloop_set_tick(&d->loop, ms);
}

void *vos_hdev_priv(const struct vos_hdev *d)
{
	return d->priv;
}

void vos_hdev_set_priv(struct vos_hdev *d, void *priv)
{
	d->priv = priv;
}

const char *vos_hdev_name(const struct vos_hdev *d)
{
	return d->name;
}

int vos_hdev_card(const struct vos_hdev *d)
{
	return d->conf.card;
}

unsigned vos_hdev_index(const struct vos_hdev *d)
{
	return d->conf.index;
}

const char *vos_hdev_rundir(const struct vos_hdev *d)
{
	return d->h->run_dir;
}

/* ---------------------------------------------------------------------------------------- */
/* Main thread: devices come and go with the configuration. */

static void dev_free(struct vos_hdev *d)
{
	vos_devloop_destroy(&d->loop);
	vos_devconf_free(&d->conf);
	free(d);
}

static void devpage_notify(struct host_session *s, unsigned slot)
{
	struct vos_msg m = { .type = VOS_MSG_DEVPAGE, .dev = (uint16_t)slot };

	if (vos_conn_send(&s->conn, &m) < 0)
		vos_log(LOG_WARNING, "card%u: DEVPAGE not sent", s->node);
}

static void dev_remove(struct vos_host *h, struct vos_hdev *d)
{
	struct host_card *c = d->card;
	struct host_session *s;

	pthread_mutex_lock(&h->lock);
	c->slot[d->slot] = NULL;
	s = c->sess;
	if (s) {
		s->hstatus[d->slot] = VOS_HSTATUS_REMOVED;
		slot_write(s, d->slot, NULL, false);
	}
	pthread_mutex_unlock(&h->lock);
	if (s)
		devpage_notify(s, d->slot);
	hdev_command(d, HCMD_SHUTDOWN);
	pthread_join(d->thread, NULL);
	vos_log(LOG_NOTICE, "%s: removed", d->name);
	dev_free(d);
}

static const struct vos_backend_ops *backend_find(struct vos_host *h, uint8_t type)
{
	const struct vos_backend_ops *const *b = h->o.backends;

	for (; *b; b++)
		if ((*b)->type == type)
			return *b;
	return NULL;
}

static int dev_add(struct vos_host *h, const struct vos_devconf *conf)
{
	const struct vos_backend_ops *ops = backend_find(h, conf->type);
	struct host_card *c;
	struct host_session *s;
	struct vos_hdev *d, **pp;
	int slot = -1, r;

	if (!ops || !ops->nqueues || ops->nqueues > VOS_MAX_QUEUES || !ops->queue_max) {
		vos_log(LOG_ERR, "card%d: no usable backend for device type %u", conf->card,
			conf->type);
		return -ENOENT;
	}
	c = card_find(h, (uint16_t)conf->card, true);
	if (!c)
		return -ENOMEM;
	for (int pass = 0; pass < 2 && slot < 0; pass++) /* never used slots first */
		for (int i = 0; i < VOS_MAX_SLOTS && slot < 0; i++)
			if (!c->slot[i] && (pass || !(c->slots_used & (1u << i))))
				slot = i;
	if (slot < 0) {
		vos_log(LOG_ERR, "card%d: more than %d devices", conf->card, VOS_MAX_SLOTS);
		return -ENOSPC;
	}
	d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	r = vos_devloop_init(&d->loop, &hdev_loop_ops, d, d->name, &h->lock, h->evfd);
	if (!r && vos_devconf_copy(&d->conf, conf) < 0)
		r = -ENOMEM;
	if (r < 0) {
		vos_devloop_destroy(&d->loop);
		free(d);
		return r;
	}
	d->h = h;
	d->ops = ops;
	d->card = c;
	d->slot = (unsigned)slot;
	d->offered = VOS_TRANSPORT_FEATURES;
	snprintf(d->name, sizeof(d->name), "card%d/%s%u", conf->card, ops->name, conf->index);
	snprintf(d->loop.status, sizeof(d->loop.status), "%s %s down", d->name, ops->name);
	r = pthread_create(&d->thread, NULL, hdev_thread, d);
	if (r) {
		dev_free(d);
		return -r;
	}
	pthread_mutex_lock(&h->lock);
	while (!d->open_done)
		pthread_cond_wait(&h->cond, &h->lock);
	r = d->open_ret;
	pthread_mutex_unlock(&h->lock);
	if (r < 0) {
		vos_log(LOG_ERR, "%s: cannot open: %s", d->name, strerror(-r));
		pthread_join(d->thread, NULL);
		dev_free(d);
		return r;
	}
	pthread_mutex_lock(&h->lock);
	c->slot[slot] = d;
	c->slots_used |= 1u << slot;
	s = c->sess;
	if (s) {
		s->hstatus[slot] = 0;
		slot_write(s, (unsigned)slot, d, true);
	}
	pthread_mutex_unlock(&h->lock);
	if (s)
		devpage_notify(s, (unsigned)slot);
	for (pp = &h->devs; *pp; pp = &(*pp)->next)
		;
	*pp = d;
	vos_log(LOG_INFO, "%s: open, slot %d", d->name, slot);
	return 0;
}

int vos_host_configure(struct vos_host *h, const struct vos_config *c)
{
	int ret = 0;

	for (struct vos_hdev **pp = &h->devs; *pp;) {
		struct vos_hdev *d = *pp;
		bool keep = false;

		for (size_t i = 0; i < c->ndev && !keep; i++)
			keep = vos_devconf_equal(&d->conf, &c->dev[i]);
		if (keep) {
			pp = &d->next;
			continue;
		}
		*pp = d->next;
		dev_remove(h, d);
	}
	for (size_t i = 0; i < c->ndev; i++) {
		bool have = false;
		int r;

		for (struct vos_hdev *d = h->devs; d && !have; d = d->next)
			have = vos_devconf_equal(&d->conf, &c->dev[i]);
		if (!have && (r = dev_add(h, &c->dev[i])) < 0 && !ret)
			ret = r;
	}
	if (h->o.on_change)
		h->o.on_change(h, h->o.arg);
	return ret;
}

/* ---------------------------------------------------------------------------------------- */
/* Main thread: connections. */

static void pend_drop(struct vos_host *h, unsigned i)
{
	h->pend[i] = h->pend[--h->npend];
}

static void accept_all(struct vos_host *h)
{
	for (;;) {
		struct scif_portID peer;
		scif_epd_t epd;

		if (scif_accept(h->lep, &peer, &epd, 0) < 0) {
			if (errno != EAGAIN)
				vos_log(LOG_WARNING, "accept: %s", strerror(errno));
			return;
		}
		if (peer.node == 0) {
			vos_log(LOG_WARNING, "connection from node 0 port %u: not a card",
				peer.port);
			scif_close(epd);
			continue;
		}
		if (h->npend == PENDING_MAX) {
			unsigned old = 0;

			for (unsigned i = 1; i < h->npend; i++)
				if (h->pend[i].deadline < h->pend[old].deadline)
					old = i;
			vos_log(LOG_WARNING, "card%u: too many silent connections: one dropped",
				h->pend[old].node);
			scif_close(h->pend[old].conn.epd);
			pend_drop(h, old);
		}
		vos_conn_init(&h->pend[h->npend].conn, epd);
		h->pend[h->npend].node = peer.node;
		h->pend[h->npend++].deadline = vos_now_ms() + VOS_HELLO_TIMEOUT_MS;
	}
}

/* A pending connection is readable: its first message decides what it is. */
static void pend_event(struct vos_host *h, unsigned i)
{
	struct pending p = h->pend[i];
	struct vos_msg m;
	int r = vos_conn_recv(&p.conn, &m);

	if (r == 0) {
		h->pend[i] = p;
		return;
	}
	pend_drop(h, i);
	if (r < 0) {
		scif_close(p.conn.epd);
	} else if (m.type == VOS_MSG_HELLO) {
		sess_hello(h, &p, &m);
	} else if (m.type == VOS_MSG_ATTACH) {
		dev_attach(h, &p, &m);
	} else {
		vos_log(LOG_WARNING, "card%u: first message of type %u: dropped", p.node, m.type);
		send_refuse(p.conn.epd, m.dev, EPROTO);
		scif_close(p.conn.epd);
	}
}

static void sess_event(struct vos_host *h, struct host_card *c, short revents)
{
	struct host_session *s = c->sess;
	struct vos_msg m;
	char why[64];
	int r = 0;

	if (revents & POLLOUT)
		r = vos_conn_flush(&s->conn);
	while (r >= 0 && (r = vos_conn_recv(&s->conn, &m)) > 0) {
		if (m.type == VOS_MSG_BYE)
			return sess_end(h, c, true, "BYE");
		snprintf(why, sizeof(why), "unexpected message type %u", m.type);
		return sess_end(h, c, false, why);
	}
	if (r < 0)
		sess_end(h, c, false, r == -ECONNRESET ? "connection lost" : strerror(-r));
}

int vos_host_run(struct vos_host *h, int wake_fd, int (*on_wake)(struct vos_host *h, void *arg),
		 void *arg)
{
	struct pollfd pfd[3 + PENDING_MAX + 256];
	struct host_card *pc[256];

	if (h->o.on_change)
		h->o.on_change(h, h->o.arg);
	for (;;) {
		uint64_t now = vos_now_ms();
		unsigned n = 0, npend = h->npend, ncard = 0;
		int timeout = -1;

		pfd[n++] = (struct pollfd){ .fd = h->lep, .events = POLLIN };
		pfd[n++] = (struct pollfd){ .fd = h->evfd, .events = POLLIN };
		pfd[n++] = (struct pollfd){ .fd = wake_fd, .events = POLLIN };
		for (unsigned i = 0; i < npend; i++) {
			uint64_t dl = h->pend[i].deadline;
			int t = dl > now ? (int)(dl - now) : 0;

			pfd[n++] = (struct pollfd){ .fd = h->pend[i].conn.epd, .events = POLLIN };
			if (timeout < 0 || t < timeout)
				timeout = t;
		}
		for (struct host_card *c = h->cards; c && ncard < 256; c = c->next) {
			if (!c->sess)
				continue;
			pc[ncard++] = c;
			pfd[n++] = (struct pollfd){ .fd = c->sess->conn.epd,
						    .events = vos_conn_events(&c->sess->conn) };
		}
		if (poll(pfd, n, timeout) < 0 && errno != EINTR)
			return -errno;
		if (pfd[0].revents & (POLLERR | POLLHUP | POLLNVAL)) {
			vos_log(LOG_ERR, "the listening endpoint failed");
			return -EIO;
		}
		/* Pending connections, last first (pend_drop moves the last one down). */
		now = vos_now_ms();
		for (unsigned i = npend; i-- > 0;) {
			if (pfd[3 + i].revents)
				pend_event(h, i);
			else if (now >= h->pend[i].deadline) {
				vos_log(LOG_WARNING,
					"card%u: no HELLO or ATTACH within %d ms: dropped",
					h->pend[i].node, VOS_HELLO_TIMEOUT_MS);
				scif_close(h->pend[i].conn.epd);
				pend_drop(h, i);
			}
		}
		for (unsigned i = 0; i < ncard; i++) {
			struct pollfd *p = &pfd[3 + npend + i];

			/* Skip a session that a HELLO above replaced meanwhile. */
			if (p->revents && pc[i]->sess && pc[i]->sess->conn.epd == p->fd)
				sess_event(h, pc[i], p->revents);
		}
		if (pfd[0].revents & POLLIN)
			accept_all(h);
		if (pfd[1].revents) {
			vos_drain(h->evfd);
			if (h->o.on_change)
				h->o.on_change(h, h->o.arg);
		}
		if (pfd[2].revents && on_wake && on_wake(h, arg))
			return 0;
	}
}

void vos_host_status(struct vos_host *h, FILE *out)
{
	pthread_mutex_lock(&h->lock);
	fprintf(out, "daemon pid=%d port=%u\n", (int)getpid(), h->o.port);
	for (struct host_card *c = h->cards; c; c = c->next)
		fprintf(out, "card %u %s\n", c->node, c->online ? "online" : "offline");
	for (struct host_card *c = h->cards; c; c = c->next)
		for (unsigned i = 0; i < VOS_MAX_SLOTS; i++)
			if (c->slot[i])
				fprintf(out, "%s\n", c->slot[i]->loop.status);
	pthread_mutex_unlock(&h->lock);
}

int vos_host_new(struct vos_host **hp, const struct vos_host_opts *o)
{
	struct vos_host *h = calloc(1, sizeof(*h));
	int r;

	if (!h)
		return -ENOMEM;
	h->o = *o;
	if (!h->o.backends)
		h->o.backends = default_backends;
	h->run_dir = strdup(o->run_dir ? o->run_dir : "/run/scif");
	h->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	h->lep = scif_open();
	if (!h->run_dir || h->evfd < 0 || h->lep < 0) {
		r = !h->run_dir ? -ENOMEM : -errno;
		goto fail;
	}
	if (scif_bind(h->lep, o->port) < 0) {
		r = errno == EINVAL ? -EADDRINUSE : -errno;
		goto fail;
	}
	if (scif_listen(h->lep, 64) < 0) {
		r = -errno;
		goto fail;
	}
	pthread_mutex_init(&h->lock, NULL);
	pthread_cond_init(&h->cond, NULL);
	*hp = h;
	return 0;
fail:
	if (h->lep >= 0)
		scif_close(h->lep);
	if (h->evfd >= 0)
		close(h->evfd);
	free(h->run_dir);
	free(h);
	return r;
}

void vos_host_free(struct vos_host *h)
{
	struct vos_hdev *d, *next;

	if (!h)
		return;
	h->o.on_change = NULL;
	/* Devices first (stop(SHUTDOWN), all at once), then the sessions. */
	for (d = h->devs; d; d = d->next)
		hdev_command(d, HCMD_SHUTDOWN);
	for (d = h->devs; d; d = next) {
		next = d->next;
		pthread_join(d->thread, NULL);
		pthread_mutex_lock(&h->lock);
		d->card->slot[d->slot] = NULL;
		pthread_mutex_unlock(&h->lock);
		dev_free(d);
	}
	while (h->cards) {
		struct host_card *c = h->cards;

		sess_end(h, c, true, "daemon exiting");
		h->cards = c->next;
		free(c);
	}
	for (unsigned i = 0; i < h->npend; i++)
		scif_close(h->pend[i].conn.epd);
	scif_close(h->lep);
	close(h->evfd);
	pthread_mutex_destroy(&h->lock);
	pthread_cond_destroy(&h->cond);
	free(h->run_dir);
	free(h);
}
