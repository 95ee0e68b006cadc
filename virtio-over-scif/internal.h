/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * internal.h - what the two frameworks (host.c, card.c), the configuration (conf.c) and the
 * three programs (virtiod.c, card_main.c, scifctl.c) share, and nothing the devices need:
 * the framework entry points (also used by tests/virtio/test-vos.c with its own device
 * tables), the configuration, the message connection and the shared-memory vocabulary.
 */
#ifndef VOS_INTERNAL_H
#define VOS_INTERNAL_H

#include <errno.h>
#include <poll.h>
#include <scif.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <linux/virtio_config.h>
#include <linux/virtio_ring.h>

#include "vos.h"

/* ---------------------------------------------------------------------------------------- */
/* Memory ordering on the device page (the peer is another process, maybe another OS). Every
 * use names its partner. Seqlock-style halves: the writer makes a generation odd, changes the
 * fields, makes it even again (release); a reader that saw an odd generation, or a different
 * one after copying (acquire fence first), copies again. */

#define vos_load_acquire(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define vos_store_release(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)
#define vos_read_once(p) __atomic_load_n((p), __ATOMIC_RELAXED)
#define vos_write_once(p, v) __atomic_store_n((p), (v), __ATOMIC_RELAXED)
#define vos_rmb() __atomic_thread_fence(__ATOMIC_ACQUIRE)
#define vos_wmb() __atomic_thread_fence(__ATOMIC_RELEASE)

/* Transport feature bits the frameworks handle themselves (offered by every device). */
#define VOS_TRANSPORT_FEATURES                                                          \
	((1ULL << VIRTIO_F_VERSION_1) | (1ULL << VIRTIO_RING_F_EVENT_IDX) |                \
	 (1ULL << VIRTIO_RING_F_INDIRECT_DESC))

#define VOS_HELLO_TIMEOUT_MS 2000   /* a new connection must say HELLO or ATTACH by then */
#define VOS_WELCOME_TIMEOUT_MS 5000 /* the card gives up on a daemon that does not answer */
#define VOS_RETRY_MS 500            /* card: reconnect period while the daemon is away */

/* Milliseconds on CLOCK_MONOTONIC. */
static inline uint64_t vos_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static inline bool vos_is_pow2(unsigned v)
{
	return v && !(v & (v - 1));
}

/** "net", "block", "console" for a virtio device id, NULL for any other. */
const char *vos_type_name(unsigned type);

/* ---------------------------------------------------------------------------------------- */
/* Configuration (conf.c). */

/** All devices of the daemon, or the per-device options of the card frontend. */
struct vos_config {
	struct vos_devconf *dev;
	size_t ndev;
};

/**
 * Parse the daemon's configuration: the lines of @file (NULL for none), then the -d specs
 * "CARD:TYPE[:key=val[,key=val...]]". Indices are numbered per card and type in that order.
 * On error *c is left empty and @err holds "FILE:LINE: message" (or "-d SPEC: message").
 * @return 0 or -errno.
 */
int vos_conf_load(struct vos_config *c, const char *file, char *const *specs, size_t nspecs,
		  char *err, size_t errlen);

/**
 * Add one card frontend option "DEV:key=val[,key=val...]" (DEV like net0) to @c; options of
 * the same DEV accumulate in one entry (card = 0). @return 0 or -errno, message in @err.
 */
int vos_conf_add_opt(struct vos_config *c, const char *spec, char *err, size_t errlen);

/** The entry of @c for (type, index), or NULL. */
const struct vos_devconf *vos_conf_find(const struct vos_config *c, uint8_t type,
					unsigned index);

/** Deep copy of one device configuration. @return 0 or -ENOMEM. */
int vos_devconf_copy(struct vos_devconf *dst, const struct vos_devconf *src);
/** True if both name the same device with the same options. */
bool vos_devconf_equal(const struct vos_devconf *a, const struct vos_devconf *b);
void vos_devconf_free(struct vos_devconf *d);
void vos_conf_free(struct vos_config *c);

/**
 * Replace @path atomically with what @fill writes (a temporary file beside it, then
 * rename). @return 0 or -errno.
 */
int vos_write_atomic(const char *path, void (*fill)(FILE *out, void *arg), void *arg);

/* ---------------------------------------------------------------------------------------- */
/* A message connection: 16-byte struct vos_msg both ways over a SCIF endpoint, never
 * blocking. Partial receives are kept in `in`; messages that did not fit the endpoint's ring
 * wait in `out` (sent with POLLOUT). Doorbells are coalesced: a message equal to one still
 * waiting whole in `out` is not queued twice, so `out` cannot grow past the distinct kinds. */

#define VOS_CONN_OUTQ 40

struct vos_conn {
	scif_epd_t epd;
	unsigned in_len;
	uint8_t in[sizeof(struct vos_msg)];
	unsigned out_head, out_n, out_sent; /* out_sent: bytes of out[out_head] already sent */
	struct vos_msg out[VOS_CONN_OUTQ];
};

static inline void vos_conn_init(struct vos_conn *c, scif_epd_t epd)
{
	memset(c, 0, sizeof(*c));
	c->epd = epd;
}

/* Events to poll the endpoint for. */
static inline short vos_conn_events(const struct vos_conn *c)
{
	return (short)(POLLIN | (c->out_n ? POLLOUT : 0));
}

/* Send what waits in `out`: 0 = all sent, 1 = some left (poll POLLOUT), -errno = broken. */
static inline int vos_conn_flush(struct vos_conn *c)
{
	while (c->out_n) {
		struct vos_msg *m = &c->out[c->out_head];
		int n = scif_send(c->epd, (uint8_t *)m + c->out_sent,
				  (int)(sizeof(*m) - c->out_sent), 0);

		if (n < 0)
			return errno ? -errno : -EIO;
		if (n == 0)
			return 1;
		c->out_sent += (unsigned)n;
		if (c->out_sent == sizeof(*m)) {
			c->out_sent = 0;
			c->out_head = (c->out_head + 1) % VOS_CONN_OUTQ;
			c->out_n--;
		}
	}
	return 0;
}

/* Queue @m (skipped if an equal one waits whole) and send. 0 or -errno (-ENOBUFS: the peer
 * has not read for so long that the queue is full: treat the connection as broken). */
static inline int vos_conn_send(struct vos_conn *c, const struct vos_msg *m)
{
	int r;

	for (unsigned i = c->out_sent ? 1 : 0; i < c->out_n; i++)
		if (!memcmp(&c->out[(c->out_head + i) % VOS_CONN_OUTQ], m, sizeof(*m)))
			return 0;
	if (c->out_n == VOS_CONN_OUTQ)
		return -ENOBUFS;
	c->out[(c->out_head + c->out_n) % VOS_CONN_OUTQ] = *m;
	c->out_n++;
	r = vos_conn_flush(c);
	return r < 0 ? r : 0;
}

/* The next whole message: 1 = *m filled, 0 = none yet, -errno = closed or broken. */
static inline int vos_conn_recv(struct vos_conn *c, struct vos_msg *m)
{
	while (c->in_len < sizeof(c->in)) {
		int n = scif_recv(c->epd, c->in + c->in_len, (int)(sizeof(c->in) - c->in_len), 0);

		if (n < 0)
			return errno ? -errno : -EIO;
		if (n == 0)
			return 0;
		c->in_len += (unsigned)n;
	}
	memcpy(m, c->in, sizeof(*m));
	c->in_len = 0;
	return 1;
}

/* Wait up to @timeout_ms for the next whole message (handshakes nothing else waits on):
 * 1 = *m filled, -ETIMEDOUT, or -errno. */
static inline int vos_conn_wait_msg(struct vos_conn *c, struct vos_msg *m, int timeout_ms)
{
	uint64_t end = vos_now_ms() + (uint64_t)timeout_ms;

	for (;;) {
		struct pollfd p = { .fd = c->epd, .events = POLLIN };
		uint64_t now;
		int r = vos_conn_recv(c, m);

		if (r)
			return r;
		now = vos_now_ms();
		if (now >= end)
			return -ETIMEDOUT;
		if (poll(&p, 1, (int)(end - now)) < 0 && errno != EINTR)
			return -errno;
	}
}

/* ---------------------------------------------------------------------------------------- */
/* The host framework (host.c). */

struct vos_host;

struct vos_host_opts {
	const char *run_dir;                      /* vos_hdev_rundir() */
	uint16_t port;                            /* SCIF port to listen on */
	/* Backends by type, NULL-terminated; NULL = net, block and console. */
	const struct vos_backend_ops *const *backends;
	/* Called on the thread running vos_host_run whenever the status changed. */
	void (*on_change)(struct vos_host *h, void *arg);
	void *arg;
};

/**
 * Create the host framework and listen on the port. Nothing is served before vos_host_run.
 * @return 0 or -errno (-EADDRINUSE: another daemon has the port).
 */
int vos_host_new(struct vos_host **hp, const struct vos_host_opts *o);

/**
 * Make @c the set of devices: devices no longer in it are stopped (SHUTDOWN), closed and
 * their slots marked REMOVED; new ones are opened (backend open() on their own thread) and
 * offered to their cards. Devices equal in both are left alone. Call from the thread that
 * runs vos_host_run (or before it). @return 0, or -errno if a new device failed to open
 * (the others are applied; the failures are logged).
 */
int vos_host_configure(struct vos_host *h, const struct vos_config *c);

/**
 * Serve cards until @on_wake returns non-zero. @on_wake runs on this thread whenever
 * @wake_fd (e.g. a signalfd) is readable; it may call vos_host_configure.
 * @return 0, or -errno if the listener failed.
 */
int vos_host_run(struct vos_host *h, int wake_fd, int (*on_wake)(struct vos_host *h, void *arg),
		 void *arg);

/** The status file's lines (common.md: daemon, card, device lines). */
void vos_host_status(struct vos_host *h, FILE *out);

/** Stop (SHUTDOWN) and close every device, drop every card, free @h. */
void vos_host_free(struct vos_host *h);

/* ---------------------------------------------------------------------------------------- */
/* The card framework (card.c). */

struct vos_card;

struct vos_card_opts {
	const char *run_dir;                      /* vos_cdev_rundir() */
	uint16_t port;                            /* daemon's port on node 0 */
	/* Frontends by type, NULL-terminated; NULL = net, block and console. */
	const struct vos_frontend_ops *const *frontends;
	const struct vos_config *opts;            /* vos_cdev_opt(), by type and index */
	void (*on_change)(struct vos_card *c, void *arg);
	void *arg;
};

/** Create the card framework (nothing connects before vos_card_run). @return 0 or -errno. */
int vos_card_new(struct vos_card **cp, const struct vos_card_opts *o);

/**
 * Connect to the daemon (retrying every VOS_RETRY_MS), serve the devices it offers, and
 * reconnect whenever it goes away, until @on_wake returns non-zero: then BYE, every device
 * stop(DETACH) and close(). @return 0 or -errno.
 */
int vos_card_run(struct vos_card *c, int wake_fd, int (*on_wake)(struct vos_card *c, void *arg),
		 void *arg);

/** The status file's lines (common.md: host line, one line per device). */
void vos_card_status(struct vos_card *c, FILE *out);

/** Free @c (after vos_card_run returned). */
void vos_card_free(struct vos_card *c);

#endif /* VOS_INTERNAL_H */
