// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * epd.c - the endpoint descriptor table and endpoint lifetime. Lookups are lock-free: the
 * table maps a descriptor to a counted endpoint, and endpoint structs are type-stable (kept
 * on a free list, never unmapped) so a racing lookup can always test the count safely.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include "atomic.h"
#include "epd.h"
#include "log.h"
#include "rma.h"

#define L2_BITS 10
#define L2_SIZE (1u << L2_BITS)
#define L1_SIZE 4096u /* descriptors up to 4M */

static struct scif_endpt **ep_table[L1_SIZE];
static pthread_mutex_t ep_free_lock = PTHREAD_MUTEX_INITIALIZER;
static struct scif_endpt *ep_free_list; /* linked through ->port while free */
static uint32_t ep_gen;

uint64_t scif__now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t scif__coarse_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static struct scif_endpt **ep_slot(int fd, int create)
{
	unsigned int hi = (unsigned int)fd >> L2_BITS;
	struct scif_endpt **page;

	if (fd < 0 || hi >= L1_SIZE)
		return NULL;
	/* Acquire pairs with the release of a newly installed page below. */
	page = scif__load_acquire(&ep_table[hi]);
	if (!page && create) {
		struct scif_endpt **fresh = calloc(L2_SIZE, sizeof(*fresh));
		struct scif_endpt **exp = NULL;

		if (!fresh)
			return NULL;
		if (__atomic_compare_exchange_n(&ep_table[hi], &exp, fresh, 0, __ATOMIC_RELEASE,
						__ATOMIC_ACQUIRE)) {
			page = fresh;
		} else {
			free(fresh);
			page = exp;
		}
	}
	return page ? &page[(unsigned int)fd & (L2_SIZE - 1)] : NULL;
}

static pthread_mutex_t alias_lock = PTHREAD_MUTEX_INITIALIZER;

/*
 * A descriptor not in the table may be a dup() of an endpoint's descriptor: same socket,
 * other number. Recognise it by inode and enter it as an alias (spec 3.2).
 */
static struct scif_endpt *epd_get_alias(int fd)
{
	struct scif_endpt *found = NULL;
	struct stat st;

	if (fstat(fd, &st) < 0 || !S_ISSOCK(st.st_mode))
		return NULL;
	pthread_mutex_lock(&alias_lock);
	for (unsigned int hi = 0; hi < L1_SIZE && !found; hi++) {
		struct scif_endpt **page = scif__load_acquire(&ep_table[hi]);

		for (unsigned int lo = 0; page && lo < L2_SIZE && !found; lo++) {
			struct scif_endpt *ep = scif__load_acquire(&page[lo]);

			if (ep && ep->ino == (unsigned long)st.st_ino && ep->fd == (int)((hi << L2_BITS) | lo))
				found = ep;
		}
	}
	if (found && found->nalias < SCIF_MAX_ALIAS) {
		struct scif_endpt **slot = ep_slot(fd, 1);
		struct scif_endpt *exp = NULL;

		scif__atomic_inc(&found->refs); /* the alias slot's reference */
		if (slot && __atomic_compare_exchange_n(slot, &exp, found, 0, __ATOMIC_RELEASE,
							__ATOMIC_RELAXED)) {
			found->alias[found->nalias++] = fd;
		} else {
			scif__epd_put(found);
			found = NULL;
		}
	} else {
		found = NULL;
	}
	pthread_mutex_unlock(&alias_lock);
	return found ? scif__epd_get(fd) : NULL;
}

struct scif_endpt *scif__epd_get(int fd)
{
	struct scif_endpt **slot = ep_slot(fd, 0);
	struct scif_endpt *ep;
	uint32_t r;

	if (!slot)
		return NULL;
	/* Acquire pairs with the release in scif__epd_publish: the endpoint is initialised. */
	ep = scif__load_acquire(slot);
	if (!ep)
		return NULL;
	r = scif__load_acquire(&ep->refs);
	do {
		if (r == 0)
			return NULL;
	} while (!__atomic_compare_exchange_n(&ep->refs, &r, r + 1, 1, __ATOMIC_ACQUIRE,
					      __ATOMIC_RELAXED));
	/* The struct may have been recycled between the load and the count: recheck. */
	if (scif__load_acquire(slot) != ep) {
		scif__epd_put(ep);
		return NULL;
	}
	return ep;
}

struct scif_endpt *scif__epd_peek(int fd)
{
	struct scif_endpt **slot = ep_slot(fd, 0);

	/* Acquire pairs with the release in scif__epd_publish: the endpoint is initialised. */
	return slot ? scif__load_acquire(slot) : NULL;
}

struct scif_endpt *scif__epd_find(int fd)
{
	struct scif_endpt *ep = scif__epd_get(fd);

	/* Not in the table: maybe a dup() the application made (spec 3.2). */
	return ep || fd < 0 ? ep : epd_get_alias(fd);
}

void scif__epd_ref(struct scif_endpt *ep)
{
	scif__atomic_inc(&ep->refs);
}

static const struct scif_epd_layer *layers[SCIF_MAX_LAYERS];
static int nlayers;

void scif__epd_add_layer(const struct scif_epd_layer *l)
{
	if (nlayers < SCIF_MAX_LAYERS)
		layers[nlayers++] = l;
}

void scif__epd_disconnect(struct scif_endpt *ep)
{
	for (int i = 0; i < nlayers; i++)
		if (layers[i]->disconnect)
			layers[i]->disconnect(ep);
}

int scif__epd_ctl(struct scif_endpt *ep, const struct scif_ctl_msg *m, struct scif_fh *fh,
		  int nfh)
{
	for (int i = 0; i < nlayers; i++)
		if (layers[i]->ctl) {
			int ret = layers[i]->ctl(ep, m, fh, nfh);

			if (ret != -ENOMSG)
				return ret;
		}
	return -EPROTO; /* nobody speaks it: the peer broke the protocol */
}

void scif__epd_rewatch(struct scif_endpt *ep)
{
	/* After a disconnect only the bell's error means "closed" (nodeqp.c). */
	scif__monitor_watch(ep, SCIF_WATCH_BELL, ep->bell.fd,
			    EPOLLRDHUP | (scif__epd_state(ep) == SCIFEP_DISCONNECTED ? EPOLLET : 0));
	for (int i = 0; i < nlayers; i++)
		if (layers[i]->rewatch)
			layers[i]->rewatch(ep);
}

/* The last reference is gone: the layers let go (last joined first), then the table. */
static void ep_release(struct scif_endpt *ep)
{
	for (int i = nlayers - 1; i >= 0; i--)
		if (layers[i]->fini)
			layers[i]->fini(ep);
	scif__monitor_unwatch(ep->bell.fd);
	if (ep->own_fd && ep->fd >= 0)
		close(ep->fd);
	scif__fab.ops->bell_close(&ep->bell);
	if (ep->wake_fd >= 0)
		close(ep->wake_fd);
	ep->fd = ep->wake_fd = -1;
	if (ep->sh)
		munmap(ep->sh, sizeof(*ep->sh));
	ep->sh = NULL;
	pthread_cond_destroy(&ep->req_cond);
	pthread_mutex_destroy(&ep->req_lock);
	pthread_mutex_lock(&ep_free_lock);
	ep->port = (struct scif_port *)ep_free_list;
	ep_free_list = ep;
	pthread_mutex_unlock(&ep_free_lock);
}

void scif__epd_put(struct scif_endpt *ep)
{
	if (scif__atomic_dec(&ep->refs) == 0)
		ep_release(ep);
}

static struct scif_endpt *ep_new(void)
{
	struct scif_endpt *ep;
	pthread_condattr_t ca;

	pthread_mutex_lock(&ep_free_lock);
	ep = ep_free_list;
	if (ep)
		ep_free_list = (struct scif_endpt *)ep->port;
	pthread_mutex_unlock(&ep_free_lock);
	if (!ep) {
		ep = calloc(1, sizeof(*ep));
		if (!ep)
			return NULL;
	}
	ep->fd = ep->link = ep->lfd = -1;
	ep->bell = ep->peer_bell = (struct scif_bell){ .fd = -1 };
	ep->pend = NULL;
	ep->npend = 0;
	memset(&ep->mine, 0, sizeof(ep->mine));
	memset(&ep->theirs, 0, sizeof(ep->theirs));
	ep->port = NULL;
	ep->sh = NULL;
	ep->backlog = 0;
	scif__write_once(&ep->closing, 0);
	ep->waiters = 0;
	ep->wake_fd = -1;
	ep->own_fd = 0;
	ep->nalias = 0;
	ep->listen_dirty = 0;
	ep->bell_shut = 0;
	memset(&ep->tx, 0, sizeof(ep->tx));
	memset(&ep->rx, 0, sizeof(ep->rx));
	ep->gen = scif__atomic_inc(&ep_gen);
	/* Requests to the peer wait on this, with deadlines on the monotonic clock. */
	pthread_mutex_init(&ep->req_lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&ep->req_cond, &ca);
	pthread_condattr_destroy(&ca);
	ep->reqs = NULL;
	ep->next_tag = 0;
	for (int i = 0; i < nlayers; i++)
		if (layers[i]->init)
			layers[i]->init(ep);
	return ep;
}

int scif__epd_alloc(struct scif_endpt **out)
{
	const struct scif_fabric_ops *ops = scif__fab.ops;
	struct scif_endpt *ep = ep_new();
	int ret;

	if (!ep)
		return -ENOMEM;
	/* Fork-shared state: MAP_SHARED so a child sees the same positions and locks. */
	ep->sh = mmap(NULL, sizeof(*ep->sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
		      -1, 0);
	if (ep->sh == MAP_FAILED) {
		ep->sh = NULL;
		ret = -ENOMEM;
		goto fail;
	}
	ret = ops->bell_create(&scif__fab, &ep->fd, &ep->bell);
	if (ret)
		goto fail;
	/* A receiver spinning in scif_recv() looks at its ring itself (msg.c, rx_spin). */
	if (ops->bell_quiet)
		ops->bell_quiet(&ep->bell, &ep->sh->rx_arm, SCIF_DISARMED);
	{
		struct stat st;

		ep->ino = fstat(ep->fd, &st) == 0 ? (unsigned long)st.st_ino : 0;
	}
	/* Type-stable memory: a racing scif__epd_get may be reading this count. */
	scif__store_release(&ep->refs, 1);
	*out = ep;
	return 0;
fail:
	scif__store_release(&ep->refs, 0);
	ep_release(ep);
	return ret;
}

int scif__epd_create(struct scif_endpt **out)
{
	struct scif_endpt *ep;
	int ret = scif__epd_alloc(&ep);

	if (ret)
		return ret;
	ep->sh->state = SCIFEP_UNBOUND;
	ret = scif__epd_publish(ep);
	if (ret) {
		ep->own_fd = 1; /* never handed out: its descriptor goes with it */
		scif__epd_put(ep);
		return ret == -ENOSPC ? -ENOMEM : ret;
	}
	*out = ep;
	return 0;
}

int scif__epd_publish(struct scif_endpt *ep)
{
	struct scif_endpt **slot = ep_slot(ep->fd, 1);
	struct scif_endpt *old;
	int ret;

	if (!slot)
		return -ENOMEM;
	/*
	 * A stale entry means the application closed an endpoint with close(2) and the kernel
	 * reused the number before the monitor noticed: retire the old endpoint now.
	 */
	old = scif__atomic_xchg(slot, NULL);
	if (old) {
		scif__monitor_unwatch(old->bell.fd);
		scif__epd_put(old);
	}
	ret = scif__monitor_watch(ep, SCIF_WATCH_BELL, ep->bell.fd, EPOLLRDHUP);
	if (ret)
		return ret;
	/* Release pairs with the acquire in scif__epd_get. */
	scif__store_release(slot, ep);
	return 0;
}

static void epd_clear_slot(struct scif_endpt *ep, int fd)
{
	struct scif_endpt **slot = ep_slot(fd, 0);
	struct scif_endpt *exp = ep;

	if (slot && __atomic_compare_exchange_n(slot, &exp, NULL, 0, __ATOMIC_ACQ_REL,
						__ATOMIC_RELAXED))
		scif__epd_put(ep); /* that slot's reference */
}

void scif__epd_unpublish(struct scif_endpt *ep)
{
	int alias[SCIF_MAX_ALIAS], n;

	pthread_mutex_lock(&alias_lock);
	n = ep->nalias;
	memcpy(alias, ep->alias, sizeof(alias));
	ep->nalias = 0;
	pthread_mutex_unlock(&alias_lock);
	for (int i = 0; i < n; i++)
		epd_clear_slot(ep, alias[i]);
	epd_clear_slot(ep, ep->fd);
}

int scif__epd_drop_alias(struct scif_endpt *ep, int fd)
{
	int i, ret = 0;

	pthread_mutex_lock(&alias_lock);
	if (ep->nalias) {
		/* Another number stays: if the closing one is the main number, promote one. */
		if (fd == ep->fd) {
			ep->fd = ep->alias[--ep->nalias];
		} else {
			for (i = 0; i < ep->nalias && ep->alias[i] != fd; i++)
				;
			if (i < ep->nalias)
				ep->alias[i] = ep->alias[--ep->nalias];
		}
		ret = 1;
	}
	pthread_mutex_unlock(&alias_lock);
	if (ret) {
		epd_clear_slot(ep, fd);
		scif__monitor_rekey(ep);
	}
	return ret;
}

void scif__epd_wake(struct scif_endpt *ep)
{
	/* Acquire pairs with the CAS that published the eventfd (msg.c). */
	int wfd = scif__load_acquire(&ep->wake_fd);
	uint64_t one = 1;

	/* Sleepers on the descriptor: send, recv, accept, connect (msg.c's scif__msg_wait). */
	if (wfd >= 0 && scif__read_once(&ep->waiters) && write(wfd, &one, sizeof(one)) < 0)
		scif_dbg("endpoint %d: wake failed: %d", ep->fd, errno);
	/* Requests waiting for the peer's reply (rma.c's scif__ctl_call). */
	pthread_mutex_lock(&ep->req_lock);
	pthread_cond_broadcast(&ep->req_cond);
	pthread_mutex_unlock(&ep->req_lock);
	/* Fence waits and synchronous RMAs behind asynchronous ones. */
	scif__futex_wake_all(&ep->dma_done);
}

int scif__epd_lookup_err(int fd)
{
	return fcntl(fd, F_GETFD) < 0 ? -EBADF : -ENOTTY;
}

int scif__epd_verify_connected(struct scif_endpt *ep)
{
	switch (scif__epd_state(ep)) {
	case SCIFEP_CONNECTED:
		return 0;
	case SCIFEP_DISCONNECTED:
		return -ECONNRESET;
	default:
		return -ENOTCONN;
	}
}

void scif__epd_foreach(void (*fn)(struct scif_endpt *ep))
{
	for (unsigned int hi = 0; hi < L1_SIZE; hi++) {
		struct scif_endpt **page = scif__load_acquire(&ep_table[hi]);

		if (!page)
			continue;
		for (unsigned int lo = 0; lo < L2_SIZE; lo++) {
			struct scif_endpt *ep = scif__epd_get((int)((hi << L2_BITS) | lo));

			if (ep) {
				fn(ep);
				scif__epd_put(ep);
			}
		}
	}
}
