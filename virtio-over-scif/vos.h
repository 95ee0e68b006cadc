/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * vos.h - virtio over SCIF: the interface between the two frameworks (host daemon, card
 * frontend) and the devices they carry. A device is two small ops tables: a *backend* on the
 * host (net -> TAP, block -> image file, console -> pty) and a *frontend* on the card (TAP,
 * NBD export, pty). Both only see requests and buffers; the frameworks own SCIF, the device
 * page, the virtqueues and the doorbells.
 *
 * Threads: each device (on either side) is driven by one thread of its framework; every call
 * below that takes a device must be made from that thread, inside one of the device's ops.
 * Return values: 0 or a count on success, -errno on failure. An op that returns a negative
 * value has the device reset (host) or detached and re-attached (card), with a log line.
 */
#ifndef VOS_H
#define VOS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "vos_proto.h"

/* ---------------------------------------------------------------------------------------- */
/* Logging: daemon style. stderr ("prog[pid]: level: ...") or syslog (vos_log_open). */

void vos_log_open(const char *ident, bool use_syslog, int max_level);
void vos_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* levels are syslog's: LOG_ERR, LOG_WARNING, LOG_NOTICE, LOG_INFO, LOG_DEBUG */

/* ---------------------------------------------------------------------------------------- */
/* Device configuration: "key=value" options of one device, from the config file or the
 * command line (see docs/virtio-over-scif.md for the syntax). */

#define VOS_CONF_KV_MAX 16

struct vos_devconf {
	int card;                 /* node of the card this device is served to (host side) */
	uint8_t type;             /* VIRTIO_ID_NET, VIRTIO_ID_BLOCK, VIRTIO_ID_CONSOLE */
	unsigned index;           /* per-card, per-type index: net0, net1, block0, ... */
	unsigned nkv;
	struct { char *key, *val; } kv[VOS_CONF_KV_MAX];
};

/* The value of `key`, or NULL if absent ("ro" with no '=' has the value ""). */
const char *vos_conf_get(const struct vos_devconf *c, const char *key);

/* ---------------------------------------------------------------------------------------- */
/* Host side: requests popped from the card's virtqueues. */

#define VOS_REQ_SEGS 256          /* descriptors in one chain, indirect tables included */

/* One descriptor of a chain: memory of the card, by offset in the device connection's RAS. */
struct vos_seg {
	uint64_t addr;
	uint32_t len;
	uint32_t write;           /* 1 = device-writable (VRING_DESC_F_WRITE) */
};

/*
 * One available buffer (a descriptor chain), validated: readable segments first, then
 * writable ones, each inside the device window, chain shorter than the queue, no loops.
 */
struct vos_req {
	uint16_t head;            /* id to return in the used ring */
	uint16_t nseg;
	uint32_t out_len;         /* total bytes of the readable segments */
	uint32_t in_len;          /* total bytes of the writable segments */
	struct vos_seg seg[VOS_REQ_SEGS];
};

struct vos_hdev;

/* Take the next available buffer of queue q: 1 = *r filled, 0 = queue empty, -EBADMSG/-EINVAL
 * = the card broke the ring (return it from the op: the device is reset). */
int vos_hq_pop(struct vos_hdev *d, unsigned q, struct vos_req *r);
/* Return a buffer with `written` bytes written into its writable part (<= r->in_len). */
int vos_hq_push(struct vos_hdev *d, unsigned q, const struct vos_req *r, uint32_t written);
/* Send the card an IRQ for queue q if pushes happened since the last one and the card asked
 * for it (used_event / VRING_AVAIL_F_NO_INTERRUPT). Call after a batch of pushes. */
int vos_hq_notify(struct vos_hdev *d, unsigned q);
/* Stop (false) or resume (true) asking for KICKs of queue q. vos_hq_kicks(d, q, true)
 * returns 1 if buffers became available meanwhile (pop again), else 0. */
int vos_hq_kicks(struct vos_hdev *d, unsigned q, bool on);
/* Queues the card set up (0 before start). */
unsigned vos_hq_count(const struct vos_hdev *d);

/* Copy between the host and a request's buffers in the card: `off` counts bytes from the
 * start of the readable part (read) or of the writable part (write). Returns bytes copied
 * (short at the end of that part), -errno if SCIF failed (the connection is gone). */
ssize_t vos_req_read(struct vos_hdev *d, const struct vos_req *r, size_t off, void *buf,
		     size_t len);
ssize_t vos_req_write(struct vos_hdev *d, const struct vos_req *r, size_t off,
		      const void *buf, size_t len);

/* Only in open(): the device features offered (virtio bits; the framework adds
 * VIRTIO_F_VERSION_1, VIRTIO_RING_F_EVENT_IDX and VIRTIO_RING_F_INDIRECT_DESC). */
void vos_hdev_set_features(struct vos_hdev *d, uint64_t features);
/* After start(): what the card accepted. */
uint64_t vos_hdev_features(const struct vos_hdev *d);
/* Write the device's config space (any time); after open() the card is sent CONFIG. */
int vos_hdev_set_config(struct vos_hdev *d, const void *config, size_t len);

/* Watch one of the backend's file descriptors in the device thread: events = POLLIN/POLLOUT
 * (0 stops watching). Watched fds are served between start() and stop() only, unless
 * `always` is true (e.g. a pty whose hang-up must be drained while no card is attached). */
int vos_hdev_watch(struct vos_hdev *d, int fd, short events, bool always);
/* Ask for tick() every `ms` milliseconds (0 = never). */
void vos_hdev_set_tick(struct vos_hdev *d, unsigned ms);

void *vos_hdev_priv(const struct vos_hdev *d);
void vos_hdev_set_priv(struct vos_hdev *d, void *priv);
const char *vos_hdev_name(const struct vos_hdev *d);  /* "card1/net0", for log lines */
int vos_hdev_card(const struct vos_hdev *d);
unsigned vos_hdev_index(const struct vos_hdev *d);
const char *vos_hdev_rundir(const struct vos_hdev *d);  /* daemon run dir, e.g. /run/scif */

/* Why stop() is called. */
enum vos_stop_reason {
	VOS_STOP_DETACH,          /* the card closed the device cleanly (BYE, re-attach) */
	VOS_STOP_CARD_LOST,       /* the card's connections broke: crash, node gone */
	VOS_STOP_RESET,           /* the device was reset after bad input or an op's error */
	VOS_STOP_SHUTDOWN,        /* the daemon is exiting or reloading without this device */
};

struct vos_backend_ops {
	uint8_t type;             /* VIRTIO_ID_* */
	const char *name;         /* "net", "block", "console": config keyword and log name */
	uint8_t nqueues;          /* virtqueues it has */
	uint16_t queue_max;       /* largest queue size it accepts */
	/* Daemon start or reload: open the host resource (TAP, image, pty), set features and
	 * config. Lives until close(); a card attaching and detaching does not reopen it. */
	int (*open)(struct vos_hdev *d, const struct vos_devconf *conf);
	/* The card set DRIVER_OK: features negotiated, queues mapped. */
	int (*start)(struct vos_hdev *d);
	/* KICK of queue q (also called once after start() for every queue). */
	int (*kick)(struct vos_hdev *d, unsigned q);
	/* A watched fd is ready. */
	int (*event)(struct vos_hdev *d, int fd, short revents);
	/* Timer asked for with vos_hdev_set_tick (optional). */
	int (*tick)(struct vos_hdev *d);
	/* The card side is gone or reset: finish or drop I/O in flight, flush (no acknowledged
	 * write may be lost), show "no carrier" to the host side. Queues are unmapped after it. */
	void (*stop)(struct vos_hdev *d, enum vos_stop_reason why);
	/* Daemon exit or device removed: release everything. */
	void (*close)(struct vos_hdev *d);
	/* One line of state and counters for scifctl (no newline). */
	void (*status)(struct vos_hdev *d, FILE *out);
};

extern const struct vos_backend_ops vos_net_backend;
extern const struct vos_backend_ops vos_blk_backend;
extern const struct vos_backend_ops vos_console_backend;

/* ---------------------------------------------------------------------------------------- */
/* Card side: the driver half of the virtqueues, in the card's own registered memory. */

struct vos_cdev;

/* A buffer for vos_cq_add: must lie in memory from vos_cdev_alloc(). */
struct vos_sg {
	void *addr;
	uint32_t len;
};

/* Memory inside the device window (the host can reach nothing else). Only in probe() or
 * start(); freed when the device detaches. Returns NULL when the window is used up. */
void *vos_cdev_alloc(struct vos_cdev *d, size_t len, size_t align);
/* Post a buffer: nout readable segments then nin writable ones. `token` comes back from
 * vos_cq_get. -ENOSPC: not enough free descriptors. */
int vos_cq_add(struct vos_cdev *d, unsigned q, const struct vos_sg *sg, unsigned nout,
	       unsigned nin, void *token);
/* The next used buffer of queue q, or NULL. *len = bytes the host wrote (validated). A host
 * that returns an id not in flight or a length past the buffer gets -EBADMSG from
 * vos_cq_get_checked (and the device is re-attached). */
void *vos_cq_get(struct vos_cdev *d, unsigned q, uint32_t *len);
int vos_cq_get_checked(struct vos_cdev *d, unsigned q, void **token, uint32_t *len);
/* Send the host a KICK for queue q if it asked for one since the last. */
int vos_cq_kick(struct vos_cdev *d, unsigned q);
/* Stop (false) or resume (true) asking for IRQs of queue q; with true, returns 1 if used
 * buffers arrived meanwhile (get again). */
int vos_cq_irqs(struct vos_cdev *d, unsigned q, bool on);
/* Free descriptors in queue q. */
unsigned vos_cq_space(const struct vos_cdev *d, unsigned q);

uint64_t vos_cdev_features(const struct vos_cdev *d);   /* negotiated */
/* A consistent copy of the config space (retried while the host changes it). */
size_t vos_cdev_config(struct vos_cdev *d, void *buf, size_t len);
int vos_cdev_watch(struct vos_cdev *d, int fd, short events, bool always);
void vos_cdev_set_tick(struct vos_cdev *d, unsigned ms);
void *vos_cdev_priv(const struct vos_cdev *d);
void vos_cdev_set_priv(struct vos_cdev *d, void *priv);
const char *vos_cdev_name(const struct vos_cdev *d);   /* "net0" */
unsigned vos_cdev_index(const struct vos_cdev *d);
const char *vos_cdev_rundir(const struct vos_cdev *d); /* frontend run dir */
/* Extra state for the card's status file line ("tap=scifnet0", "pty=/dev/pts/3", counters):
 * one line, replaces the previous one, any time from the device's thread. */
void vos_cdev_set_info(struct vos_cdev *d, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* The frontend's options for this device (from its command line), like vos_conf_get. */
const char *vos_cdev_opt(const struct vos_cdev *d, const char *key);

struct vos_frontend_ops {
	uint8_t type;
	const char *name;
	uint64_t features;        /* device feature bits this frontend can use */
	/* First time the host offers this slot: create the card's device (TAP, NBD socket, pty).
	 * It outlives host restarts: between stop() and the next start() the card's users see
	 * no carrier, EIO or a hang-up, never a missing device. */
	int (*open)(struct vos_cdev *d);
	/* Before the device window is sized: choose queue sizes (<= queue_max on entry) and the
	 * bytes of buffers to allocate in the window. */
	int (*size)(struct vos_cdev *d, uint16_t qsize[VOS_MAX_QUEUES], size_t *pool);
	/* Queues are live: allocate buffers (vos_cdev_alloc), post receive buffers, resume I/O. */
	int (*start)(struct vos_cdev *d);
	/* IRQ of queue q (also called once after start() for every queue). */
	int (*irq)(struct vos_cdev *d, unsigned q);
	int (*event)(struct vos_cdev *d, int fd, short revents);
	int (*tick)(struct vos_cdev *d);
	/* Config space changed. */
	int (*config)(struct vos_cdev *d);
	/* The host is gone or reset the device: fail I/O in flight cleanly (EIO, carrier off,
	 * hang-up). Buffers from vos_cdev_alloc are released after it. */
	void (*stop)(struct vos_cdev *d, enum vos_stop_reason why);
	/* Slot removed or frontend exiting. */
	void (*close)(struct vos_cdev *d);
};

extern const struct vos_frontend_ops vos_net_frontend;
extern const struct vos_frontend_ops vos_blk_frontend;
extern const struct vos_frontend_ops vos_console_frontend;

#endif /* VOS_H */
