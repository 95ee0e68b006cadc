/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * internal.h - what the two frameworks (host.c, card.c), the configuration (conf.c) and the
 * three programs (virtiod.c, card_main.c, scifctl.c) share, and nothing the devices need:
 * the framework entry points (also used by tests/virtio/test-vos.c with its own device
 * tables), the configuration, the message connection, the device thread's loop, what the
 * programs' main()s have in common and the shared-memory vocabulary.
 */
#ifndef VOS_INTERNAL_H
#define VOS_INTERNAL_H

#include <errno.h>
#include <poll.h>
#include <pthread.h>
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
/* The device thread (devloop.c), the same in both frameworks: each device embeds a struct
 * vos_devloop, and its thread runs vos_devloop_run. The loop waits on the command eventfd,
 * the device connection, the fds the device watches (vos_hdev_watch, vos_cdev_watch) and its
 * timers, and calls the framework back with `dev`. Everything in it is the device thread's,
 * but `status` (under *lock) and cmd_fd (the main thread wakes it). */

#define VOS_WATCH_MAX 16            /* fds one device may watch */
#define VOS_STATUS_MAX 320          /* a status line, NUL included */
#define VOS_STATUS_REFRESH_MS 1000  /* device counters in the status file, at most this often */

struct vos_devloop_ops {
	/* The command eventfd was readable (it is drained): false = leave the loop. */
	bool (*commands)(void *dev);
	/* A message came on the device connection. */
	void (*message)(void *dev, const struct vos_msg *m);
	/* The device connection failed or closed (-errno), maybe after messages. */
	void (*conn_lost)(void *dev, int err);
	/* Between the device's start() and stop(): only then are watches without `always`
	 * polled. */
	bool (*started)(void *dev);
	/* The device's event() and tick() ops: 0 or -errno (vos_devloop_failed follows). */
	int (*event)(void *dev, int fd, short revents);
	int (*tick)(void *dev);
	/* An op failed while attached (vos_devloop_failed): reset the device, log @why. */
	void (*reset)(void *dev, const char *why);
	/* retry_at has come (a framework that never sets retry_at may leave it NULL). */
	void (*retry)(void *dev);
	/* Time to refresh the status line (vos_devloop_publish). */
	void (*publish)(void *dev);
};

struct vos_watch {
	int fd;
	short events;
	bool always;                    /* also while the device is not started */
};

struct vos_devloop {
	const struct vos_devloop_ops *ops;
	void *dev;                      /* the framework's device, passed to the ops */
	const char *name;               /* the device's name, for log lines */
	int cmd_fd;                     /* eventfd: the main thread has a command */
	struct vos_conn conn;           /* the device connection; conn.epd < 0: not attached */
	struct vos_watch watch[VOS_WATCH_MAX];
	unsigned nwatch;
	unsigned tick_ms;               /* 0: no tick */
	uint64_t next_tick, next_status;
	uint64_t retry_at;              /* when ops->retry is due; 0: never */
	int err;                        /* sticky: a vq call or doorbell failed inside an op */
	pthread_mutex_t *lock;          /* the framework's lock: guards status */
	int status_fd;                  /* eventfd woken when the status line changed */
	char status[VOS_STATUS_MAX];    /* *lock */
};

/** Add one to eventfd @fd (errors other than EAGAIN are logged). */
void vos_wake(int fd);
/** Reset eventfd @fd (non-blocking; errors other than EAGAIN are logged). */
void vos_drain(int fd);

/**
 * Set up @l for device @dev, called @name in log lines: no connection, nothing watched,
 * the command eventfd created. @lock and @status_fd are the framework's (see the struct).
 * @return 0 or -errno.
 */
int vos_devloop_init(struct vos_devloop *l, const struct vos_devloop_ops *ops, void *dev,
		     const char *name, pthread_mutex_t *lock, int status_fd);
/** Close the command eventfd. */
void vos_devloop_destroy(struct vos_devloop *l);
/** Serve the device until ops->commands returns false. Device thread. */
void vos_devloop_run(struct vos_devloop *l);
/** Watch @fd for @events (0: stop watching): vos_hdev_watch, vos_cdev_watch. */
int vos_devloop_watch(struct vos_devloop *l, int fd, short events, bool always);
/** Ask for ops->tick every @ms milliseconds (0: never). */
void vos_devloop_set_tick(struct vos_devloop *l, unsigned ms);
/**
 * After an op that returned @r: if it failed, or a vq call or doorbell inside it did
 * (l->err), reset the device (ops->reset) or, if not attached, log it; l->err is cleared.
 * @return true if the op failed.
 */
bool vos_devloop_failed(struct vos_devloop *l, int r, const char *op);
/**
 * Make @line (at most VOS_STATUS_MAX bytes with its NUL; newlines become spaces) the status
 * line, wake status_fd if it changed, and plan the next refresh.
 */
void vos_devloop_publish(struct vos_devloop *l, char *line);

/* ---------------------------------------------------------------------------------------- */
/* What the main()s of scif-virtiod and scif-virtio-card share (prog.c). */

struct vos_prog {
	const char *name;               /* "scif-virtiod": the log's ident, messages */
	const char *run_dir;            /* --run-dir */
	uint16_t port;                  /* --port */
	bool use_syslog;                /* --syslog */
	int verbose;                    /* -v, --verbose */
	char status_path[4096];         /* RUN_DIR/status (vos_prog_rundir) */
	int sigfd;                      /* SIGTERM, SIGINT, SIGHUP (vos_prog_signals); -1 */
};

/* The long options of vos_prog_option, and --help, for the programs' option tables. */
#define VOS_PROG_LONGOPTS                                                              \
	{ "run-dir", required_argument, NULL, 'R' }, { "port", required_argument, NULL, 'P' }, \
	{ "syslog", no_argument, NULL, 'S' }, { "verbose", no_argument, NULL, 'v' },         \
	{ "help", no_argument, NULL, 'h' }

/**
 * Take option @opt of getopt_long (value @arg) if it is one of VOS_PROG_LONGOPTS but --help.
 * @return 1 if taken, 0 if not ours, -1 for a bad value (said on stderr).
 */
int vos_prog_option(struct vos_prog *p, int opt, const char *arg);
/** Open the log: stderr or syslog (--syslog), debug lines with -v. */
void vos_prog_log(const struct vos_prog *p);
/** Create the run directory (one level) and set status_path. @return 0 or -errno (logged). */
int vos_prog_rundir(struct vos_prog *p);
/**
 * Block SIGTERM, SIGINT and SIGHUP into p->sigfd and ignore SIGPIPE. Before any thread
 * starts. @return 0 or -errno (logged).
 */
int vos_prog_signals(struct vos_prog *p);
/** The signal p->sigfd has (one other than SIGHUP is logged: exiting), or 0 if none. */
int vos_prog_signal(struct vos_prog *p);
/** Rewrite the status file with what @fill writes (vos_write_atomic); failures are logged. */
void vos_prog_status(struct vos_prog *p, void (*fill)(FILE *out, void *arg), void *arg);
/** Remove the status file if the program @served, close p->sigfd. */
void vos_prog_end(struct vos_prog *p, bool served);

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
