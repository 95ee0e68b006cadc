/* SPDX-License-Identifier: LGPL-2.1-or-later */
/**
 * @file sfi_fabric.c
 * @brief The fabric object, wait objects (FI_WAIT_FD: an epoll set plus an eventfd for
 *        signals) and fi_trywait.
 */
#include "sfi.h"

#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

/* ------------------------------------------------------------------------------------ */
/* Wait objects. */

int sfi_wait_init(struct sfi_wait *w, struct sfi_fabric *fab)
{
	struct epoll_event ev = { .events = EPOLLIN };

	memset(w, 0, sizeof(*w));
	w->fabric = fab;
	sfi_list_init(&w->objs);
	w->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (w->epfd < 0)
		return -FI_EMFILE;
	w->sigfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (w->sigfd < 0) {
		close(w->epfd);
		return -FI_EMFILE;
	}
	ev.data.fd = w->sigfd;
	if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->sigfd, &ev)) {
		int err = errno;

		close(w->sigfd);
		close(w->epfd);
		return -err;
	}
	pthread_mutex_init(&w->lock, NULL);
	return 0;
}

void sfi_wait_fini(struct sfi_wait *w)
{
	if (w->epfd >= 0)
		close(w->epfd);
	if (w->sigfd >= 0)
		close(w->sigfd);
	w->epfd = w->sigfd = -1;
	pthread_mutex_destroy(&w->lock);
}

int sfi_wait_fd(struct sfi_wait *w, int fd, uint32_t events)
{
	struct epoll_event ev = { .events = events, .data.fd = fd };

	if (!events) {
		if (epoll_ctl(w->epfd, EPOLL_CTL_DEL, fd, NULL) && errno != ENOENT &&
		    errno != EBADF)
			return -errno;
		return 0;
	}
	if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, fd, &ev) == 0)
		return 0;
	if (errno == EEXIST && epoll_ctl(w->epfd, EPOLL_CTL_MOD, fd, &ev) == 0)
		return 0;
	SFI_WARN(FI_LOG_CORE, "epoll_ctl(%d): %s\n", fd, strerror(errno));
	return -errno;
}

void sfi_wait_signal(struct sfi_wait *w)
{
	uint64_t one = 1;

	/* one pending count is enough: skip the syscall until a waiter clears it */
	if (__atomic_exchange_n(&w->sig_pending, 1, __ATOMIC_ACQ_REL))
		return;
	if (write(w->sigfd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		SFI_WARN(FI_LOG_CORE, "eventfd write: %s\n", strerror(errno));
}

void sfi_wait_clear(struct sfi_wait *w)
{
	uint64_t v;

	/* drain first, then allow new writes: a signal in between is seen by the caller's
	 * next check of its queue, and the next one writes again */
	while (read(w->sigfd, &v, sizeof(v)) > 0)
		;
	__atomic_store_n(&w->sig_pending, 0, __ATOMIC_RELEASE);
}

int sfi_wait_block(struct sfi_wait *w, int timeout)
{
	struct epoll_event ev[8];
	int n = epoll_wait(w->epfd, ev, 8, timeout);

	if (n > 0)
		return 0;
	if (n == 0)
		return -FI_ETIMEDOUT;
	return errno == EINTR ? -FI_EINTR : -errno;
}

/** Whether an object (CQ, counter, EQ) has something to read after progress. */
static int fid_ready(struct fid *fid)
{
	switch (fid->fclass) {
	case FI_CLASS_CQ:
		return sfi_cq_ready(sfi_container_of(fid, struct sfi_cq, cq_fid.fid));
	case FI_CLASS_CNTR:
		return sfi_cntr_ready(sfi_container_of(fid, struct sfi_cntr, cntr_fid.fid));
	case FI_CLASS_EQ:
		return sfi_eq_ready(sfi_container_of(fid, struct sfi_eq, eq_fid.fid));
	default:
		return -FI_EINVAL;
	}
}

/** Check every object of a wait set (after clearing its signal). */
static int set_ready(struct sfi_wait *w)
{
	struct sfi_list *it;
	int ret = 0;

	sfi_wait_clear(w);
	pthread_mutex_lock(&w->lock);
	sfi_list_foreach(&w->objs, it) {
		struct sfi_waitobj *o = sfi_list_entry(it, struct sfi_waitobj, entry);

		ret = fid_ready(o->fid);
		if (ret)
			break;
	}
	pthread_mutex_unlock(&w->lock);
	return ret;
}

/** fi_wait on a wait set: 0 once one of its objects has something, -FI_ETIMEDOUT. */
static int wait_wait(struct fid_wait *wait_fid, int timeout)
{
	struct sfi_wait *w = sfi_container_of(wait_fid, struct sfi_wait, wait_fid);
	int64_t deadline = sfi_deadline(timeout);

	for (;;) {
		int ret = set_ready(w);

		if (ret == -FI_EAGAIN)
			return 0;
		if (ret)
			return ret;
		int left = sfi_left_ms(deadline);

		if (left == 0)
			return -FI_ETIMEDOUT;
		ret = sfi_wait_block(w, left);
		if (ret == -FI_EINTR)
			return ret;
	}
}

static int wait_control(struct fid *fid, int command, void *arg)
{
	struct sfi_wait *w = sfi_container_of(fid, struct sfi_wait, wait_fid.fid);

	switch (command) {
	case FI_GETWAIT:
		if (!arg)
			return -FI_EINVAL;
		*(int *)arg = w->epfd;
		return 0;
	case FI_GETWAITOBJ:
		if (!arg)
			return -FI_EINVAL;
		*(enum fi_wait_obj *)arg = FI_WAIT_FD;
		return 0;
	default:
		return -FI_ENOSYS;
	}
}

static int wait_close(struct fid *fid)
{
	struct sfi_wait *w = sfi_container_of(fid, struct sfi_wait, wait_fid.fid);
	struct sfi_fabric *fab = w->fabric;

	pthread_mutex_lock(&w->lock);
	if (w->refs) {
		pthread_mutex_unlock(&w->lock);
		return -FI_EBUSY;
	}
	pthread_mutex_unlock(&w->lock);
	sfi_wait_fini(w);
	free(w);
	pthread_mutex_lock(&fab->lock);
	fab->refs--;
	pthread_mutex_unlock(&fab->lock);
	return 0;
}

static struct fi_ops sfi_wait_fi_ops = {
	.size = sizeof(struct fi_ops),
	.close = wait_close,
	.bind = sfi_no_bind,
	.control = wait_control,
	.ops_open = sfi_no_ops_open,
	.tostr = sfi_no_tostr,
	.ops_set = sfi_no_ops_set,
};

static struct fi_ops_wait sfi_wait_ops = {
	.size = sizeof(struct fi_ops_wait),
	.wait = wait_wait,
};

/* ------------------------------------------------------------------------------------ */
/* The wait object of a CQ, counter or EQ. */

/**
 * Set up the wait object an attribute asks for: none, an own epoll set (FI_WAIT_FD and
 * FI_WAIT_UNSPEC), or a fi_wait_open set (FI_WAIT_SET). FI_WAIT_MUTEX_COND and
 * FI_WAIT_YIELD are not offered.
 */
int sfi_wait_setup(struct sfi_fabric *fab, enum fi_wait_obj obj, struct fid_wait *set,
		   struct sfi_wait *own, struct sfi_wait **out, struct sfi_waitobj *wobj,
		   struct fid *fid)
{
	struct sfi_wait *w;
	int ret;

	switch (obj) {
	case FI_WAIT_NONE:
		*out = NULL;
		return 0;
	case FI_WAIT_UNSPEC:
	case FI_WAIT_FD:
		ret = sfi_wait_init(own, fab);
		if (ret)
			return ret;
		*out = own;
		return 0;
	case FI_WAIT_SET:
		if (!set)
			return -FI_EINVAL;
		w = sfi_container_of(set, struct sfi_wait, wait_fid);
		if (w->fabric != fab)
			return -FI_EINVAL;
		pthread_mutex_lock(&w->lock);
		w->refs++;
		wobj->fid = fid;
		sfi_list_insert_tail(&w->objs, &wobj->entry);
		pthread_mutex_unlock(&w->lock);
		*out = w;
		return 0;
	default:
		return -FI_ENOSYS;
	}
}

void sfi_wait_release(struct sfi_wait *own, struct sfi_wait *w, struct sfi_waitobj *wobj)
{
	if (!w)
		return;
	if (w == own) {
		sfi_wait_fini(own);
		return;
	}
	pthread_mutex_lock(&w->lock);
	sfi_list_remove(&wobj->entry);
	w->refs--;
	pthread_mutex_unlock(&w->lock);
}

int sfi_wait_control(struct sfi_wait *w, int command, void *arg)
{
	switch (command) {
	case FI_GETWAIT:
		if (!w || !arg)
			return -FI_ENODATA;
		*(int *)arg = w->epfd;
		return 0;
	case FI_GETWAITOBJ:
		if (!arg)
			return -FI_EINVAL;
		*(enum fi_wait_obj *)arg = w ? FI_WAIT_FD : FI_WAIT_NONE;
		return 0;
	default:
		return -FI_ENOSYS;
	}
}

int sfi_wait_once(struct sfi_wait *w, int left)
{
	int r;

	if (!w) {
		sched_yield();
		return 0;
	}
	r = sfi_wait_block(w, left);
	sfi_wait_clear(w);
	return r == -FI_EINTR ? -FI_EINTR : 0;
}

int sfi_wait_open(struct fid_fabric *fabric, struct fi_wait_attr *attr,
		  struct fid_wait **waitset)
{
	struct sfi_fabric *fab = sfi_container_of(fabric, struct sfi_fabric, fabric_fid);
	struct sfi_wait *w;
	int ret;

	if (!waitset)
		return -FI_EINVAL;
	if (attr) {
		if (attr->flags)
			return -FI_EBADFLAGS;
		if (attr->wait_obj != FI_WAIT_UNSPEC && attr->wait_obj != FI_WAIT_FD)
			return -FI_ENOSYS;
	}
	w = calloc(1, sizeof(*w));
	if (!w)
		return -FI_ENOMEM;
	ret = sfi_wait_init(w, fab);
	if (ret) {
		free(w);
		return ret;
	}
	w->wait_fid.fid.fclass = FI_CLASS_WAIT;
	w->wait_fid.fid.ops = &sfi_wait_fi_ops;
	w->wait_fid.ops = &sfi_wait_ops;
	pthread_mutex_lock(&fab->lock);
	fab->refs++;
	pthread_mutex_unlock(&fab->lock);
	*waitset = &w->wait_fid;
	return 0;
}

/* ------------------------------------------------------------------------------------ */
/* Fabric. */

/** The wait object of a CQ/counter/EQ, for fi_trywait, or NULL. */
static struct sfi_wait *fid_wait_of(struct fid *fid)
{
	switch (fid->fclass) {
	case FI_CLASS_CQ:
		return sfi_container_of(fid, struct sfi_cq, cq_fid.fid)->wait;
	case FI_CLASS_CNTR:
		return sfi_container_of(fid, struct sfi_cntr, cntr_fid.fid)->wait;
	case FI_CLASS_EQ:
		return sfi_container_of(fid, struct sfi_eq, eq_fid.fid)->wait;
	default:
		return NULL;
	}
}

/**
 * fi_trywait: before an application blocks on wait descriptors, clear their signals, run
 * the progress of every object and return -FI_EAGAIN if one has something to read (the
 * application must read instead of blocking); 0 means blocking is safe.
 */
static int fabric_trywait(struct fid_fabric *fabric, struct fid **fids, int count)
{
	(void)fabric;
	for (int i = 0; i < count; i++) {
		struct sfi_wait *w;
		int ret;

		if (!fids || !fids[i])
			return -FI_EINVAL;
		if (fids[i]->fclass == FI_CLASS_WAIT) {
			ret = set_ready(sfi_container_of(fids[i], struct sfi_wait, wait_fid.fid));
		} else {
			w = fid_wait_of(fids[i]);
			if (!w)
				return -FI_EINVAL;
			sfi_wait_clear(w);
			ret = fid_ready(fids[i]);
		}
		if (ret)
			return ret;
	}
	return 0;
}

static int fabric_domain(struct fid_fabric *fabric, struct fi_info *info,
			 struct fid_domain **dom, void *context)
{
	return sfi_domain_open(fabric, info, dom, context);
}

static int fabric_domain2(struct fid_fabric *fabric, struct fi_info *info,
			  struct fid_domain **dom, uint64_t flags, void *context)
{
	if (flags)
		return -FI_EBADFLAGS;
	return sfi_domain_open(fabric, info, dom, context);
}

static int fabric_close(struct fid *fid)
{
	struct sfi_fabric *fab = sfi_container_of(fid, struct sfi_fabric, fabric_fid.fid);

	pthread_mutex_lock(&fab->lock);
	if (fab->refs) {
		pthread_mutex_unlock(&fab->lock);
		return -FI_EBUSY;
	}
	pthread_mutex_unlock(&fab->lock);
	pthread_mutex_destroy(&fab->lock);
	free(fab);
	return 0;
}

static struct fi_ops sfi_fabric_fi_ops = {
	.size = sizeof(struct fi_ops),
	.close = fabric_close,
	.bind = sfi_no_bind,
	.control = sfi_no_control,
	.ops_open = sfi_no_ops_open,
	.tostr = sfi_no_tostr,
	.ops_set = sfi_no_ops_set,
};

static struct fi_ops_fabric sfi_fabric_ops = {
	.size = sizeof(struct fi_ops_fabric),
	.domain = fabric_domain,
	.passive_ep = sfi_pep_open,
	.eq_open = sfi_eq_open,
	.wait_open = sfi_wait_open,
	.trywait = fabric_trywait,
	.domain2 = fabric_domain2,
};

int sfi_fabric_open(struct fi_fabric_attr *attr, struct fid_fabric **fabric, void *context)
{
	struct sfi_fabric *fab;

	if (!attr || !fabric)
		return -FI_EINVAL;
	if (attr->name && strcmp(attr->name, SFI_FABRIC_NAME))
		return -FI_ENODATA;
	fab = calloc(1, sizeof(*fab));
	if (!fab)
		return -FI_ENOMEM;
	pthread_mutex_init(&fab->lock, NULL);
	fab->fabric_fid.fid.fclass = FI_CLASS_FABRIC;
	fab->fabric_fid.fid.context = context;
	fab->fabric_fid.fid.ops = &sfi_fabric_fi_ops;
	fab->fabric_fid.ops = &sfi_fabric_ops;
	/* libfabric overwrites api_version with the application's after we return */
	fab->fabric_fid.api_version = attr->api_version ? attr->api_version : SFI_FI_VERSION;
	*fabric = &fab->fabric_fid;
	return 0;
}
