// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * card.c - the card framework of scif-virtio-card (node N): connects to the daemon on node 0
 * (again and again while it is away), registers the device page, and runs one thread per
 * device slot the host offers. A device thread owns its frontend's ops, its device window
 * (virtqueues + buffers) and its device connection. vos_cq_* and vos_cdev_* of vos.h are here.
 *
 * Threads and locks. The main thread (vos_card_run) runs the control connection and reads
 * the device page when the host says a slot changed; device threads attach, serve doorbells
 * and re-attach. c->lock guards what they share: session references and `dead`, a device's
 * command word and published status. Device threads (and their frontends: TAP, pty, NBD
 * socket) live until the slot is removed or the program exits, across daemon restarts.
 *
 * The host is not trusted: everything read from its half of a slot is copied once and
 * validated, WELCOME and every message are checked, a broken ring costs a re-attach.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>
#include <sys/eventfd.h>
#include <sys/mman.h>

#include "internal.h"
#include "vq.h"

#define PAGE 4096u
#define INFO_MAX 200
#define CONNECT_TIMEOUT_MS 2000
#define RESET_RETRY_MS 200       /* re-attach after the host reset the device */
#define LOST_RETRY_MS 1000       /* re-attach after the device connection broke */
#define OPEN_RETRY_MS 5000       /* retry a frontend whose open() failed */
#define POOL_MAX (256u << 20)    /* largest buffer pool a frontend may ask for */

/* Commands to a device thread (vos_cdev.cmd). */
#define CCMD_SESSION 0x1         /* a new session: new_sess */
#define CCMD_LOST 0x2            /* the session ended */
#define CCMD_CLOSE 0x4           /* stop(DETACH), close(), leave */

struct card_session {
	int refs;                    /* c->lock: main thread's + devices' */
	bool dead;                   /* c->lock */
	struct vos_devpage *page;    /* our memory, registered on the control connection */
	uint64_t cookie;
	struct vos_conn conn;        /* main thread; epd closed when the session ends */
};

struct vos_cdev {
	struct vos_card *c;
	const struct vos_frontend_ops *ops;
	uint8_t type;
	unsigned slot, index;
	char name[24];
	const struct vos_devconf *opts;
	pthread_t thread;
	struct vos_cdev *next;       /* c->devs, main thread */

	/* c->lock */
	unsigned cmd;
	struct card_session *new_sess; /* with a reference */

	/* device thread only (but loop.status: c->lock). loop.cmd_fd: cmd has bits;
	 * loop.retry_at: the next attach (0: none planned); loop.err: the host broke a ring,
	 * a KICK failed. */
	struct vos_devloop loop;
	void *priv;
	bool opened, up;
	struct card_session *sess;   /* a reference; NULL between sessions */
	struct vos_slot_host hs;     /* validated copy of the host's half, from the attach */
	uint8_t *win;
	size_t win_len, pool_off, pool_used;
	uint64_t features;
	unsigned nq;
	struct vq_card vq[VOS_MAX_QUEUES];
	char info[INFO_MAX];
};

struct vos_card {
	struct vos_card_opts o;
	char *run_dir;
	int evfd;                    /* device threads: status changed */
	pthread_mutex_t lock;
	struct card_session *sess;   /* main thread */
	struct vos_cdev *devs;
	bool connected;              /* c->lock */
};

static const struct vos_frontend_ops *const default_frontends[] = {
	&vos_net_frontend, &vos_blk_frontend, &vos_console_frontend, NULL
};

static void sess_put(struct vos_card *c, struct card_session *s)
{
	bool last;

	pthread_mutex_lock(&c->lock);
	last = --s->refs == 0;
	pthread_mutex_unlock(&c->lock);
	if (!last)
		return;
	munmap(s->page, VOS_DEVPAGE_SIZE);
	free(s);
}

/*
 * A validated copy of the host's half of slot @i (seqlock, internal.h). Returns 1 with a
 * device, 0 for an empty or removed slot, -EAGAIN if the host kept changing it, -EBADMSG
 * for nonsense (with a log line).
 */
static int slot_read(const struct card_session *s, unsigned i, struct vos_slot_host *out)
{
	const struct vos_slot_host *sh = &s->page->slot[i].host;
	const char *name;

	for (int tries = 0;; tries++) {
		uint32_t g = vos_load_acquire(&sh->host_gen); /* pairs with the host's release */

		if (tries == 1000)
			return -EAGAIN;
		if (g & 1)
			continue;
		memcpy(out, (const void *)sh, sizeof(*out));
		vos_rmb(); /* the copy before the re-read: pairs with the host's vos_wmb */
		if (vos_read_once(&sh->host_gen) == g)
			break;
	}
	if (!out->host_gen || !out->type || (out->host_status & VOS_HSTATUS_REMOVED))
		return 0;
	name = vos_type_name(out->type);
	if (!name || !out->nqueues || out->nqueues > VOS_MAX_QUEUES ||
	    out->config_len > VOS_CONFIG_MAX)
		goto bad;
	for (unsigned q = 0; q < out->nqueues; q++)
		if (!vos_is_pow2(out->queue_max[q]) || out->queue_max[q] > VOS_QUEUE_MAX)
			goto bad;
	return 1;
bad:
	vos_log(LOG_WARNING, "slot %u: host offers type %u with %u queues, config %u bytes: "
		"ignored", i, out->type, out->nqueues, out->config_len);
	return -EBADMSG;
}

/* ---------------------------------------------------------------------------------------- */
/* Device thread. */

static void cdev_publish(void *dev)
{
	struct vos_cdev *d = dev;
	char line[VOS_STATUS_MAX];

	snprintf(line, sizeof(line), "%s %s %s%s%s", d->name, d->ops->name,
		 d->up ? "up" : "down", d->info[0] ? " " : "", d->info);
	vos_devloop_publish(&d->loop, line);
}

/* Non-blocking connect to the daemon with a deadline. The endpoint, or -errno. */
static scif_epd_t connect_host(uint16_t port)
{
	struct scif_portID dst = { .node = 0, .port = port };
	scif_epd_t epd = scif_open();
	int r;

	if (epd < 0)
		return -errno;
	if (fcntl(scif_get_fd(epd), F_SETFL, O_NONBLOCK) < 0)
		goto fail;
	r = scif_connect(epd, &dst);
	if (r < 0 && errno == EINPROGRESS) {
		struct pollfd p = { .fd = epd, .events = POLLOUT };

		if (poll(&p, 1, CONNECT_TIMEOUT_MS) <= 0) {
			errno = ETIMEDOUT;
			goto fail;
		}
		r = scif_connect(epd, &dst);
	}
	if (r < 0)
		goto fail;
	return epd;
fail:
	r = -errno;
	scif_close(epd);
	return r;
}

/* Leave the host: stop() if started, close the connection (the window goes with it), free
 * the window. Re-attach after @retry_ms (0: only when a new session comes). */
static void cdev_detach(struct vos_cdev *d, enum vos_stop_reason why, unsigned retry_ms)
{
	struct vos_slot_card *sc;

	if (d->up)
		d->ops->stop(d, why);
	d->up = false;
	for (unsigned q = 0; q < d->nq; q++)
		vq_card_destroy(&d->vq[q]);
	d->nq = 0;
	if (d->loop.conn.epd >= 0)
		scif_close(d->loop.conn.epd);
	d->loop.conn.epd = -1;
	if (d->win)
		munmap(d->win, d->win_len);
	d->win = NULL;
	d->win_len = d->pool_off = d->pool_used = 0;
	d->loop.err = 0;
	if (d->sess) { /* our half says "not driven" until the next READY */
		sc = &d->sess->page->slot[d->slot].card;
		vos_write_once(&sc->status, 0);
		/* pairs with the host's acquire of card_gen */
		vos_store_release(&sc->card_gen, sc->card_gen + 2);
	}
	d->loop.retry_at = retry_ms ? vos_now_ms() + retry_ms : 0;
	cdev_publish(d);
}

static void cdev_reset(struct vos_cdev *d, unsigned retry_ms, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void cdev_reset(struct vos_cdev *d, unsigned retry_ms, const char *fmt, ...)
{
	char why[200];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	vos_log(LOG_WARNING, "%s: re-attaching: %s", d->name, why);
	cdev_detach(d, VOS_STOP_RESET, retry_ms);
}

/* The loop's ops->reset: an op failed, or a broken ring or doorbell inside it. */
static void cdev_op_reset(void *dev, const char *why)
{
	cdev_reset(dev, RESET_RETRY_MS, "%s", why);
}

static size_t page_align(size_t v)
{
	return (v + PAGE - 1) & ~(size_t)(PAGE - 1);
}

/* Attach to the current session: negotiate, lay out the window, ATTACH, READY, start. */
static void cdev_attach(struct vos_cdev *d)
{
	const uint32_t status = VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
				VIRTIO_CONFIG_S_FEATURES_OK | VIRTIO_CONFIG_S_DRIVER_OK;
	struct vos_msg m = { .dev = (uint16_t)d->slot };
	uint16_t qsize[VOS_MAX_QUEUES] = { 0 };
	size_t qoff[VOS_MAX_QUEUES], pool = 0, len = 0;
	struct vos_slot_card *sc;
	off_t off;
	int r;

	d->loop.retry_at = 0;
	r = slot_read(d->sess, d->slot, &d->hs);
	if (r == -EAGAIN) {
		d->loop.retry_at = vos_now_ms() + RESET_RETRY_MS;
		return;
	}
	if (r <= 0 || d->hs.type != d->type)
		return; /* wait for DEVPAGE: the main thread closes or re-creates us */
	if (!d->opened) {
		r = d->ops->open(d);
		if (r < 0) {
			vos_log(LOG_ERR, "%s: cannot open: %s", d->name, strerror(-r));
			d->loop.retry_at = vos_now_ms() + OPEN_RETRY_MS;
			return;
		}
		d->opened = true;
	}
	d->features = d->hs.features & (d->ops->features | VOS_TRANSPORT_FEATURES);
	if (!(d->features & (1ULL << VIRTIO_F_VERSION_1))) {
		vos_log(LOG_ERR, "%s: the host does not offer VIRTIO_F_VERSION_1", d->name);
		return;
	}
	for (unsigned q = 0; q < d->hs.nqueues; q++)
		qsize[q] = d->hs.queue_max[q];
	r = d->ops->size(d, qsize, &pool);
	if (r < 0) {
		vos_log(LOG_ERR, "%s: size: %s", d->name, strerror(-r));
		d->loop.retry_at = vos_now_ms() + OPEN_RETRY_MS;
		return;
	}
	for (unsigned q = 0; q < d->hs.nqueues; q++) {
		if (!vos_is_pow2(qsize[q]) || qsize[q] > d->hs.queue_max[q]) {
			vos_log(LOG_ERR, "%s: frontend chose queue %u size %u (max %u)", d->name, q,
				qsize[q], d->hs.queue_max[q]);
			return;
		}
		qoff[q] = len;
		len += page_align(vq_card_ring_bytes(qsize[q], d->features));
	}
	if (pool > POOL_MAX) {
		vos_log(LOG_ERR, "%s: frontend asks for a %zu-byte pool", d->name, pool);
		return;
	}
	d->pool_off = len;
	d->win_len = len + page_align(pool);
	d->win = mmap(NULL, d->win_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (d->win == MAP_FAILED) {
		d->win = NULL;
		return cdev_reset(d, LOST_RETRY_MS, "window of %zu bytes: %s", d->win_len,
				  strerror(errno));
	}
	r = connect_host(d->c->o.port);
	if (r < 0)
		return cdev_reset(d, LOST_RETRY_MS, "connect: %s", strerror(-r));
	vos_conn_init(&d->loop.conn, r);
	m.type = VOS_MSG_ATTACH;
	m.arg = d->sess->cookie;
	if ((r = vos_conn_send(&d->loop.conn, &m)) < 0)
		return cdev_reset(d, LOST_RETRY_MS, "ATTACH: %s", strerror(-r));
	off = scif_register(d->loop.conn.epd, d->win, d->win_len, 0,
			    SCIF_PROT_READ | SCIF_PROT_WRITE, 0);
	if (off == SCIF_REGISTER_FAILED)
		return cdev_reset(d, LOST_RETRY_MS, "register: %s", strerror(errno));
	for (unsigned q = 0; q < d->hs.nqueues; q++) {
		r = vq_card_init(&d->vq[q], qsize[q], d->features, d->win + qoff[q], d->win,
				 (uint64_t)off, d->win_len);
		if (r < 0)
			return cdev_reset(d, LOST_RETRY_MS, "queue %u: %s", q, strerror(-r));
		d->nq = q + 1;
	}
	sc = &d->sess->page->slot[d->slot].card;
	vos_write_once(&sc->card_gen, sc->card_gen + 1);
	vos_wmb(); /* odd gen before the fields (the host reads only after READY anyway) */
	sc->status = status;
	sc->features = d->features;
	sc->window = (uint64_t)off;
	sc->window_len = d->win_len;
	memset(sc->queue, 0, sizeof(sc->queue));
	for (unsigned q = 0; q < d->nq; q++) {
		sc->queue[q].size = qsize[q];
		sc->queue[q].desc = vq_card_off(&d->vq[q], d->vq[q].desc);
		sc->queue[q].avail = vq_card_off(&d->vq[q], d->vq[q].avail);
		sc->queue[q].used = vq_card_off(&d->vq[q], d->vq[q].used);
	}
	/* The half before READY is sent: pairs with the host's acquire of card_gen. */
	vos_store_release(&sc->card_gen, sc->card_gen + 1);
	m.type = VOS_MSG_READY;
	m.arg = 0;
	if ((r = vos_conn_send(&d->loop.conn, &m)) < 0)
		return cdev_reset(d, LOST_RETRY_MS, "READY: %s", strerror(-r));
	d->up = true;
	r = d->ops->start(d);
	if (r < 0 || d->loop.err) {
		d->up = false; /* start() failed: no stop() */
		vos_devloop_failed(&d->loop, r, "start");
		return;
	}
	vos_log(LOG_INFO, "%s: up, slot %u, features %#" PRIx64, d->name, d->slot, d->features);
	cdev_publish(d);
	for (unsigned q = 0; q < d->nq && d->up; q++)
		vos_devloop_failed(&d->loop, d->ops->irq(d, q), "irq");
}

/* The device connection broke: did the host reset the device, remove it, or go away? */
static void cdev_conn_lost(void *dev, int err)
{
	struct vos_cdev *d = dev;
	struct vos_slot_host hs;
	int r = slot_read(d->sess, d->slot, &hs);

	if (r > 0 && (hs.host_status & VOS_HSTATUS_NEEDS_RESET))
		return cdev_reset(d, RESET_RETRY_MS, "the host reset the device");
	vos_log(LOG_WARNING, "%s: device connection lost: %s", d->name, strerror(-err));
	cdev_detach(d, r == 0 ? VOS_STOP_DETACH : VOS_STOP_CARD_LOST, r == 0 ? 0 : LOST_RETRY_MS);
}

static void cdev_message(void *dev, const struct vos_msg *m)
{
	struct vos_cdev *d = dev;

	if (m->type == VOS_MSG_IRQ && d->up && m->queue < d->nq)
		return (void)vos_devloop_failed(&d->loop, d->ops->irq(d, m->queue), "irq");
	if (m->type == VOS_MSG_CONFIG) /* before start() the frontend reads the config anyway */
		return (void)(d->up && d->ops->config &&
			      vos_devloop_failed(&d->loop, d->ops->config(d), "config"));
	if (m->type == VOS_MSG_REFUSE)
		return cdev_reset(d, LOST_RETRY_MS, "the host refused: %s",
				  strerror(m->len < 4096 ? (int)m->len : EPROTO));
	cdev_reset(d, RESET_RETRY_MS, "unexpected message type %u queue %u", m->type, m->queue);
}

/* Commands from the main thread; false on CLOSE. */
static bool cdev_commands(void *dev)
{
	struct vos_cdev *d = dev;
	struct card_session *s;
	unsigned cmd;
	bool lost;

	pthread_mutex_lock(&d->c->lock);
	cmd = d->cmd;
	d->cmd = 0;
	s = cmd & CCMD_SESSION ? d->new_sess : NULL;
	d->new_sess = NULL;
	lost = d->sess && d->sess->dead;
	pthread_mutex_unlock(&d->c->lock);
	if (s && s == d->sess) { /* the slot changed within our session */
		sess_put(d->c, s);
		s = NULL;
		if (d->loop.conn.epd < 0 && !d->loop.retry_at)
			cdev_attach(d);
	}
	if (lost || s) { /* our session is over (or replaced by s) */
		if (d->loop.conn.epd >= 0 || d->up) {
			vos_log(LOG_WARNING, "%s: host lost", d->name);
			cdev_detach(d, VOS_STOP_CARD_LOST, 0);
		}
		if (d->sess)
			sess_put(d->c, d->sess);
		d->sess = NULL;
		d->loop.retry_at = 0;
	}
	if (cmd & CCMD_CLOSE) {
		if (s)
			sess_put(d->c, s);
		return false;
	}
	if (s) {
		d->sess = s;
		cdev_attach(d);
	}
	return true;
}

static bool cdev_started(void *dev)
{
	return ((struct vos_cdev *)dev)->up;
}

static int cdev_event(void *dev, int fd, short revents)
{
	struct vos_cdev *d = dev;

	return d->ops->event(d, fd, revents);
}

static int cdev_tick(void *dev)
{
	struct vos_cdev *d = dev;

	return d->ops->tick ? d->ops->tick(d) : 0;
}

/* The planned attach (after a reset, a lost connection or a failed open). */
static void cdev_retry(void *dev)
{
	struct vos_cdev *d = dev;

	if (d->sess && d->loop.conn.epd < 0)
		cdev_attach(d);
}

static const struct vos_devloop_ops cdev_loop_ops = {
	.commands = cdev_commands,
	.message = cdev_message,
	.conn_lost = cdev_conn_lost,
	.started = cdev_started,
	.event = cdev_event,
	.tick = cdev_tick,
	.reset = cdev_op_reset,
	.retry = cdev_retry,
	.publish = cdev_publish,
};

static void *cdev_thread(void *arg)
{
	struct vos_cdev *d = arg;

	vos_devloop_run(&d->loop);
	if (d->loop.conn.epd >= 0 || d->up)
		cdev_detach(d, VOS_STOP_DETACH, 0);
	if (d->opened)
		d->ops->close(d);
	if (d->sess)
		sess_put(d->c, d->sess);
	return NULL;
}

/* ---------------------------------------------------------------------------------------- */
/* The vos.h calls of a frontend (device thread, inside an op). */

static int cdev_fail(struct vos_cdev *d, int err)
{
	if (err == -EBADMSG && !d->loop.err)
		d->loop.err = err;
	return err;
}

static struct vq_card *cdev_vq(struct vos_cdev *d, unsigned q)
{
	return d->up && q < d->nq ? &d->vq[q] : NULL;
}

void *vos_cdev_alloc(struct vos_cdev *d, size_t len, size_t align)
{
	size_t start;

	if (!d->win || !len)
		return NULL;
	if (!align)
		align = 8;
	if (align & (align - 1) || align > PAGE)
		return NULL;
	start = (d->pool_off + d->pool_used + align - 1) & ~(align - 1);
	if (start > d->win_len || len > d->win_len - start)
		return NULL;
	d->pool_used = start + len - d->pool_off;
	return d->win + start;
}

int vos_cq_add(struct vos_cdev *d, unsigned q, const struct vos_sg *sg, unsigned nout,
	       unsigned nin, void *token)
{
	struct vq_card *vq = cdev_vq(d, q);

	return vq ? vq_card_add(vq, sg, nout, nin, token) : -ENOTCONN;
}

void *vos_cq_get(struct vos_cdev *d, unsigned q, uint32_t *len)
{
	void *token = NULL;

	return vos_cq_get_checked(d, q, &token, len) > 0 ? token : NULL;
}

int vos_cq_get_checked(struct vos_cdev *d, unsigned q, void **token, uint32_t *len)
{
	struct vq_card *vq = cdev_vq(d, q);

	return vq ? cdev_fail(d, vq_card_get(vq, token, len)) : -ENOTCONN;
}

int vos_cq_kick(struct vos_cdev *d, unsigned q)
{
	struct vq_card *vq = cdev_vq(d, q);
	struct vos_msg m = { .type = VOS_MSG_KICK, .queue = (uint8_t)q, .dev = (uint16_t)d->slot };
	int r;

	if (!vq)
		return -ENOTCONN;
	if (!vq_card_need_kick(vq))
		return 0;
	r = vos_conn_send(&d->loop.conn, &m);
	if (r < 0 && !d->loop.err)
		d->loop.err = r;
	return r;
}

int vos_cq_irqs(struct vos_cdev *d, unsigned q, bool on)
{
	struct vq_card *vq = cdev_vq(d, q);

	return vq ? vq_card_irqs(vq, on) : -ENOTCONN;
}

unsigned vos_cq_space(const struct vos_cdev *d, unsigned q)
{
	return d->up && q < d->nq ? vq_card_space(&d->vq[q]) : 0;
}

uint64_t vos_cdev_features(const struct vos_cdev *d)
{
	return d->features;
}

size_t vos_cdev_config(struct vos_cdev *d, void *buf, size_t len)
{
	struct vos_slot_host hs;

	if (!d->sess || slot_read(d->sess, d->slot, &hs) <= 0 || hs.type != d->type)
		hs = d->hs; /* no session, or no valid copy now: the one from the attach */
	if (len > hs.config_len)
		len = hs.config_len;
	memcpy(buf, hs.config, len);
	return len;
}

int vos_cdev_watch(struct vos_cdev *d, int fd, short events, bool always)
{
	return vos_devloop_watch(&d->loop, fd, events, always);
}

void vos_cdev_set_tick(struct vos_cdev *d, unsigned ms)
{
	vos_devloop_set_tick(&d->loop, ms);
}

void *vos_cdev_priv(const struct vos_cdev *d)
{
	return d->priv;
}

void vos_cdev_set_priv(struct vos_cdev *d, void *priv)
{
	d->priv = priv;
}

const char *vos_cdev_name(const struct vos_cdev *d)
{
	return d->name;
}

unsigned vos_cdev_index(const struct vos_cdev *d)
{
	return d->index;
}

const char *vos_cdev_rundir(const struct vos_cdev *d)
{
	return d->c->run_dir;
}

const char *vos_cdev_opt(const struct vos_cdev *d, const char *key)
{
	return d->opts ? vos_conf_get(d->opts, key) : NULL;
}

void vos_cdev_set_info(struct vos_cdev *d, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(d->info, sizeof(d->info), fmt, ap);
	va_end(ap);
	cdev_publish(d);
}

/* ---------------------------------------------------------------------------------------- */
/* Main thread: the control connection and the slots. */

static void cdev_command(struct vos_cdev *d, unsigned cmd, struct card_session *s)
{
	struct card_session *old = NULL;

	pthread_mutex_lock(&d->c->lock);
	if (s) {
		old = d->new_sess;
		d->new_sess = s;
		s->refs++;
	}
	d->cmd |= cmd;
	pthread_mutex_unlock(&d->c->lock);
	vos_wake(d->loop.cmd_fd);
	if (old)
		sess_put(d->c, old);
}

static void cdev_close(struct vos_card *c, struct vos_cdev *d)
{
	struct vos_cdev **pp;

	for (pp = &c->devs; *pp != d; pp = &(*pp)->next)
		;
	*pp = d->next;
	cdev_command(d, CCMD_CLOSE, NULL);
	pthread_join(d->thread, NULL);
	if (d->new_sess)
		sess_put(c, d->new_sess);
	vos_devloop_destroy(&d->loop);
	vos_log(LOG_INFO, "%s: closed", d->name);
	free(d);
}

static const struct vos_frontend_ops *frontend_find(struct vos_card *c, uint8_t type)
{
	for (const struct vos_frontend_ops *const *f = c->o.frontends; *f; f++)
		if ((*f)->type == type)
			return *f;
	return NULL;
}

static struct vos_cdev *cdev_new(struct vos_card *c, unsigned slot,
				 const struct vos_frontend_ops *ops)
{
	struct vos_cdev *d = calloc(1, sizeof(*d)), **pp;
	unsigned index = 0;
	int r;

	if (!d)
		return NULL;
	/* Index: the lowest one of this type that no live device has (stable for its life). */
	for (bool taken = true; taken; index += taken) {
		taken = false;
		for (struct vos_cdev *o = c->devs; o; o = o->next)
			taken |= o->type == ops->type && o->index == index;
	}
	d->c = c;
	d->ops = ops;
	d->type = ops->type;
	d->slot = slot;
	d->index = index;
	d->opts = vos_conf_find(c->o.opts, ops->type, index);
	snprintf(d->name, sizeof(d->name), "%s%u", ops->name, index);
	r = vos_devloop_init(&d->loop, &cdev_loop_ops, d, d->name, &c->lock, c->evfd);
	snprintf(d->loop.status, sizeof(d->loop.status), "%s %s down", d->name, ops->name);
	if (r < 0 || pthread_create(&d->thread, NULL, cdev_thread, d)) {
		vos_log(LOG_ERR, "%s: cannot start its thread", d->name);
		vos_devloop_destroy(&d->loop);
		free(d);
		return NULL;
	}
	for (pp = &c->devs; *pp && (*pp)->slot < slot; pp = &(*pp)->next)
		;
	d->next = *pp;
	*pp = d;
	return d;
}

/* Slot @i changed (or a session began): close, create or (re)attach its device. */
static void slot_update(struct vos_card *c, unsigned i)
{
	struct card_session *s = c->sess;
	const struct vos_frontend_ops *ops;
	struct vos_slot_host hs;
	struct vos_cdev *d;
	int r = slot_read(s, i, &hs);

	for (d = c->devs; d && d->slot != i; d = d->next)
		;
	if (r < 0)
		return; /* nonsense or busy: leave the device as it is */
	if (d && (r == 0 || hs.type != d->type)) {
		cdev_close(c, d);
		d = NULL;
	}
	if (r == 0)
		return;
	if (!d) {
		ops = frontend_find(c, hs.type);
		if (!ops) {
			vos_log(LOG_WARNING, "slot %u: no frontend for device type %u", i, hs.type);
			return;
		}
		d = cdev_new(c, i, ops);
		if (!d)
			return;
	}
	cdev_command(d, CCMD_SESSION, s);
}

static void sess_end(struct vos_card *c, const char *why)
{
	struct card_session *s = c->sess;

	if (!s)
		return;
	vos_log(LOG_WARNING, "host disconnected: %s", why);
	pthread_mutex_lock(&c->lock);
	s->dead = true;
	c->connected = false;
	pthread_mutex_unlock(&c->lock);
	c->sess = NULL;
	for (struct vos_cdev *d = c->devs; d; d = d->next)
		cdev_command(d, CCMD_LOST, NULL);
	scif_close(s->conn.epd);
	sess_put(c, s);
	if (c->o.on_change)
		c->o.on_change(c, c->o.arg);
}

/* One attempt: connect, HELLO, WELCOME. 0 = session up, else -errno (logged if new). */
static int sess_start(struct vos_card *c, int *last_err)
{
	struct card_session *s;
	struct vos_msg m;
	off_t off;
	scif_epd_t epd = connect_host(c->o.port);
	int r;

	if (epd < 0) {
		if (epd != *last_err)
			vos_log(LOG_INFO, "daemon not reachable (%s): retrying every %d ms",
				strerror(-epd), VOS_RETRY_MS);
		*last_err = epd;
		return epd;
	}
	s = calloc(1, sizeof(*s));
	if (!s) {
		scif_close(epd);
		return -ENOMEM;
	}
	vos_conn_init(&s->conn, epd);
	s->page = mmap(NULL, VOS_DEVPAGE_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
		       -1, 0);
	if (s->page == MAP_FAILED) {
		r = -errno;
		free(s);
		scif_close(epd);
		return r;
	}
	s->page->magic = VOS_MAGIC;
	s->page->version = VOS_VERSION;
	s->page->nslots = VOS_MAX_SLOTS;
	s->refs = 1;
	off = scif_register(epd, s->page, VOS_DEVPAGE_SIZE, 0, SCIF_PROT_READ | SCIF_PROT_WRITE, 0);
	r = off == SCIF_REGISTER_FAILED ? -errno : 0;
	m = (struct vos_msg){ .type = VOS_MSG_HELLO, .len = VOS_DEVPAGE_SIZE,
			      .arg = (uint64_t)off };
	if (!r)
		r = vos_conn_send(&s->conn, &m);
	if (!r)
		r = vos_conn_wait_msg(&s->conn, &m, VOS_WELCOME_TIMEOUT_MS);
	if (r == 1 && m.type == VOS_MSG_REFUSE) {
		vos_log(LOG_WARNING, "the daemon refused us: %s",
			strerror(m.len < 4096 ? (int)m.len : EPROTO));
		r = -ECONNREFUSED;
	} else if (r == 1 && (m.type != VOS_MSG_WELCOME || !m.arg || m.len > VOS_MAX_SLOTS)) {
		vos_log(LOG_WARNING, "bad WELCOME (type %u, %u slots): disconnecting", m.type,
			m.len);
		r = -EPROTO;
	} else if (r < 0) {
		vos_log(LOG_WARNING, "no WELCOME: %s", strerror(-r));
	}
	if (r < 0) {
		scif_close(epd);
		munmap(s->page, VOS_DEVPAGE_SIZE);
		free(s);
		*last_err = r;
		return r;
	}
	s->cookie = m.arg;
	*last_err = 0;
	c->sess = s;
	pthread_mutex_lock(&c->lock);
	c->connected = true;
	pthread_mutex_unlock(&c->lock);
	vos_log(LOG_NOTICE, "connected to the daemon, %u slots", m.len);
	for (unsigned i = 0; i < VOS_MAX_SLOTS; i++)
		slot_update(c, i);
	if (c->o.on_change)
		c->o.on_change(c, c->o.arg);
	return 0;
}

static void sess_event(struct vos_card *c, short revents)
{
	struct card_session *s = c->sess;
	struct vos_msg m;
	char why[64];
	int r = 0;

	if (revents & POLLOUT)
		r = vos_conn_flush(&s->conn);
	while (r >= 0 && (r = vos_conn_recv(&s->conn, &m)) > 0) {
		if (m.type != VOS_MSG_DEVPAGE) {
			snprintf(why, sizeof(why), "unexpected message type %u", m.type);
			return sess_end(c, why);
		}
		if (m.dev < VOS_MAX_SLOTS) {
			slot_update(c, m.dev);
		} else {
			for (unsigned i = 0; i < VOS_MAX_SLOTS; i++)
				slot_update(c, i);
		}
	}
	if (r < 0)
		sess_end(c, r == -ECONNRESET ? "connection lost" : strerror(-r));
}

/* Clean exit: every device stop(DETACH) and close(), then BYE. */
static void card_shutdown(struct vos_card *c)
{
	struct vos_msg bye = { .type = VOS_MSG_BYE };

	while (c->devs)
		cdev_close(c, c->devs);
	if (c->sess) {
		if (vos_conn_send(&c->sess->conn, &bye) == 0 && c->sess->conn.out_n) {
			struct pollfd p = { .fd = c->sess->conn.epd, .events = POLLOUT };

			poll(&p, 1, 1000);
			vos_conn_flush(&c->sess->conn);
		}
		c->o.on_change = NULL;
		sess_end(c, "shutting down (BYE sent)");
	}
}

int vos_card_run(struct vos_card *c, int wake_fd, int (*on_wake)(struct vos_card *c, void *arg),
		 void *arg)
{
	uint64_t next_try = 0;
	int last_err = 0;

	if (c->o.on_change)
		c->o.on_change(c, c->o.arg);
	for (;;) {
		struct pollfd pfd[3] = {
			{ .fd = wake_fd, .events = POLLIN },
			{ .fd = c->evfd, .events = POLLIN },
			{ .fd = -1 },
		};
		uint64_t now = vos_now_ms();
		int timeout = -1;

		if (!c->sess && now >= next_try) {
			next_try = now + VOS_RETRY_MS;
			sess_start(c, &last_err);
		}
		if (c->sess) {
			pfd[2].fd = c->sess->conn.epd;
			pfd[2].events = vos_conn_events(&c->sess->conn);
		} else {
			now = vos_now_ms();
			timeout = next_try > now ? (int)(next_try - now) : 0;
		}
		if (poll(pfd, 3, timeout) < 0 && errno != EINTR)
			return -errno;
		if (pfd[2].revents && c->sess)
			sess_event(c, pfd[2].revents);
		if (pfd[1].revents) {
			vos_drain(c->evfd);
			if (c->o.on_change)
				c->o.on_change(c, c->o.arg);
		}
		if (pfd[0].revents && on_wake && on_wake(c, arg)) {
			card_shutdown(c);
			return 0;
		}
	}
}

void vos_card_status(struct vos_card *c, FILE *out)
{
	pthread_mutex_lock(&c->lock);
	fprintf(out, "host %s\n", c->connected ? "connected" : "disconnected");
	for (struct vos_cdev *d = c->devs; d; d = d->next)
		fprintf(out, "%s\n", d->loop.status);
	pthread_mutex_unlock(&c->lock);
}

int vos_card_new(struct vos_card **cp, const struct vos_card_opts *o)
{
	struct vos_card *c = calloc(1, sizeof(*c));

	if (!c)
		return -ENOMEM;
	c->o = *o;
	if (!c->o.frontends)
		c->o.frontends = default_frontends;
	c->run_dir = strdup(o->run_dir ? o->run_dir : "/run/scif-card");
	c->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (!c->run_dir || c->evfd < 0) {
		int r = c->run_dir ? -errno : -ENOMEM;

		free(c->run_dir);
		free(c);
		return r;
	}
	pthread_mutex_init(&c->lock, NULL);
	*cp = c;
	return 0;
}

void vos_card_free(struct vos_card *c)
{
	if (!c)
		return;
	c->o.on_change = NULL;
	card_shutdown(c);
	close(c->evfd);
	pthread_mutex_destroy(&c->lock);
	free(c->run_dir);
	free(c);
}
