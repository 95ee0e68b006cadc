/* SPDX-License-Identifier: LGPL-2.1-or-later */
/**
 * @file sfi_eq.c
 * @brief Event queues.
 *
 * Events (and errors, in the order they happen) are kept in eq->events. Reading or waiting
 * first runs the connection-management progress of every participant attached with
 * sfi_eq_attach (passive endpoints, connecting/connected MSG endpoints).
 * Locks: eq->lock (recursive) is held while CM progress runs and guards cm_objs; eq->qlock
 * is a leaf lock for the event list, so sfi_eq_write can be called from anywhere.
 */
#include "sfi.h"

#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>

struct sfi_eq_event {
	struct sfi_list entry;
	uint32_t event;
	bool is_err;
	struct fi_eq_err_entry err;   /**< is_err: err_data points into data[] */
	size_t len;
	uint64_t flags;
	uint8_t data[];
};

static struct sfi_eq_event *eq_event_new(size_t len)
{
	struct sfi_eq_event *ev = calloc(1, sizeof(*ev) + len);

	if (ev)
		sfi_list_init(&ev->entry);
	return ev;
}

/** Queue an event and wake waiters (takes qlock); a listener's request may be held. */
static void eq_push(struct sfi_eq *eq, struct sfi_eq_event *ev)
{
	pthread_mutex_lock(&eq->qlock);
	if (eq->holding && !ev->is_err && ev->event == FI_CONNREQ) {
		sfi_list_insert_tail(&eq->held, &ev->entry);
		pthread_mutex_unlock(&eq->qlock);
		return;
	}
	sfi_list_insert_tail(&eq->events, &ev->entry);
	pthread_mutex_unlock(&eq->qlock);
	if (eq->wait)
		sfi_wait_signal(eq->wait);
}

int sfi_eq_write(struct sfi_eq *eq, uint32_t event, const void *buf, size_t len,
		 uint64_t flags)
{
	struct sfi_eq_event *ev = eq_event_new(len);

	if (!ev)
		return -FI_ENOMEM;
	ev->event = event;
	ev->len = len;
	ev->flags = flags;
	if (len)
		memcpy(ev->data, buf, len);
	eq_push(eq, ev);
	return 0;
}

int sfi_eq_write_err(struct sfi_eq *eq, fid_t fid, void *context, int err, int prov_errno,
		     const void *err_data, size_t err_data_size)
{
	struct sfi_eq_event *ev = eq_event_new(err_data_size);

	if (!ev)
		return -FI_ENOMEM;
	ev->is_err = true;
	ev->err.fid = fid;
	ev->err.context = context;
	ev->err.err = err < 0 ? -err : err;
	ev->err.prov_errno = prov_errno;
	if (err_data_size) {
		memcpy(ev->data, err_data, err_data_size);
		ev->len = err_data_size;
	}
	eq_push(eq, ev);
	return 0;
}

void sfi_eq_attach(struct sfi_eq *eq, struct sfi_eq_obj *obj)
{
	pthread_mutex_lock(&eq->lock);
	sfi_list_insert_tail(&eq->cm_objs, &obj->entry);
	if (obj->fd >= 0 && eq->wait)
		sfi_wait_fd(eq->wait, obj->fd, obj->events ? obj->events : EPOLLIN);
	pthread_mutex_unlock(&eq->lock);
}

void sfi_eq_detach(struct sfi_eq *eq, struct sfi_eq_obj *obj)
{
	pthread_mutex_lock(&eq->lock);
	sfi_list_remove(&obj->entry);
	if (obj->fd >= 0 && eq->wait)
		sfi_wait_fd(eq->wait, obj->fd, 0);
	pthread_mutex_unlock(&eq->lock);
}

/** Set whether listeners' FI_CONNREQ events are held; when no longer, queue the held ones. */
static void eq_hold(struct sfi_eq *eq, bool hold)
{
	bool moved;

	pthread_mutex_lock(&eq->qlock);
	eq->holding = hold;
	moved = !hold && !sfi_list_empty(&eq->held);
	while (!hold && !sfi_list_empty(&eq->held)) {
		struct sfi_list *e = eq->held.next;

		sfi_list_remove(e);
		sfi_list_insert_tail(&eq->events, e);
	}
	pthread_mutex_unlock(&eq->qlock);
	if (moved && eq->wait)
		sfi_wait_signal(eq->wait);
}

/**
 * Run the CM progress of every attached participant. A participant may detach itself
 * (or queue events) while its progress runs.
 *
 * Listeners go first and their connection requests are reported last: a peer that
 * connects again as soon as its last connection is up (fabtests' fi_multi_ep, any loop of
 * fi_connect) sent what completes that one (the ACK, FI_CONNECTED here) before it made
 * the new request, so a request the listener found is reported after whatever the other
 * participants find after it, and never before the event that caused it.
 */
static void eq_progress(struct sfi_eq *eq)
{
	struct sfi_list *it, *tmp;

	pthread_mutex_lock(&eq->lock);
	eq_hold(eq, true);
	sfi_list_foreach_safe(&eq->cm_objs, it, tmp) {
		struct sfi_eq_obj *obj = sfi_list_entry(it, struct sfi_eq_obj, entry);

		if (obj->listener)
			obj->progress(obj);
	}
	sfi_list_foreach_safe(&eq->cm_objs, it, tmp) {
		struct sfi_eq_obj *obj = sfi_list_entry(it, struct sfi_eq_obj, entry);

		if (!obj->listener)
			obj->progress(obj);
	}
	eq_hold(eq, false);
	pthread_mutex_unlock(&eq->lock);
}

/** Copy out (and unless FI_PEEK, remove) the oldest non-error event (qlock held). */
static ssize_t eq_read_locked(struct sfi_eq *eq, uint32_t *event, void *buf, size_t len,
			      uint64_t flags)
{
	struct sfi_eq_event *ev;

	if (sfi_list_empty(&eq->events))
		return -FI_EAGAIN;
	ev = sfi_list_entry(eq->events.next, struct sfi_eq_event, entry);
	if (ev->is_err)
		return -FI_EAVAIL;
	if (ev->len > len || (ev->len && !buf))
		return -FI_ETOOSMALL;
	if (event)
		*event = ev->event;
	if (ev->len)
		memcpy(buf, ev->data, ev->len);
	ssize_t ret = (ssize_t)ev->len;

	if (!(flags & FI_PEEK)) {
		sfi_list_remove(&ev->entry);
		free(ev);
	}
	return ret;
}

static ssize_t eq_read(struct fid_eq *eq_fid, uint32_t *event, void *buf, size_t len,
		       uint64_t flags)
{
	struct sfi_eq *eq = sfi_container_of(eq_fid, struct sfi_eq, eq_fid);
	ssize_t ret;

	if (flags & ~(uint64_t)FI_PEEK)
		return -FI_EBADFLAGS;
	eq_progress(eq);
	pthread_mutex_lock(&eq->qlock);
	ret = eq_read_locked(eq, event, buf, len, flags);
	pthread_mutex_unlock(&eq->qlock);
	return ret;
}

/** fi_eq_readerr; err_data follows the same 1.17 rule as fi_cq_readerr. */
static ssize_t eq_readerr(struct fid_eq *eq_fid, struct fi_eq_err_entry *buf, uint64_t flags)
{
	struct sfi_eq *eq = sfi_container_of(eq_fid, struct sfi_eq, eq_fid);
	struct sfi_eq_event *ev;
	ssize_t ret;

	if (!buf)
		return -FI_EINVAL;
	if (flags & ~(uint64_t)FI_PEEK)
		return -FI_EBADFLAGS;
	pthread_mutex_lock(&eq->qlock);
	if (sfi_list_empty(&eq->events)) {
		ret = -FI_EAGAIN;
		goto out;
	}
	ev = sfi_list_entry(eq->events.next, struct sfi_eq_event, entry);
	if (!ev->is_err) {
		ret = -FI_EAGAIN;
		goto out;
	}
	uint32_t api = eq->fabric->fabric_fid.api_version;
	void *app_data = buf->err_data;
	size_t app_size = buf->err_data_size;

	if (FI_VERSION_LT(api, FI_VERSION(1, 5))) {
		memcpy(buf, &ev->err, offsetof(struct fi_eq_err_entry, err_data));
		buf->err_data = NULL;
	} else {
		*buf = ev->err;
		if (app_size) {
			size_t n = ev->len < app_size ? ev->len : app_size;

			if (n)
				memcpy(app_data, ev->data, n);
			buf->err_data = app_data;
			buf->err_data_size = n;
		} else if (ev->len) {
			/* hand out our copy; it stays valid until the next readerr */
			free(eq->last_err_data);
			eq->last_err_data = malloc(ev->len);
			if (eq->last_err_data)
				memcpy(eq->last_err_data, ev->data, ev->len);
			buf->err_data = eq->last_err_data;
			buf->err_data_size = eq->last_err_data ? ev->len : 0;
		} else {
			buf->err_data = NULL;
			buf->err_data_size = 0;
		}
	}
	ret = sizeof(*buf);
	if (!(flags & FI_PEEK)) {
		sfi_list_remove(&ev->entry);
		free(ev);
	}
out:
	pthread_mutex_unlock(&eq->qlock);
	return ret;
}

static ssize_t eq_app_write(struct fid_eq *eq_fid, uint32_t event, const void *buf,
			    size_t len, uint64_t flags)
{
	struct sfi_eq *eq = sfi_container_of(eq_fid, struct sfi_eq, eq_fid);
	int ret;

	if (flags)
		return -FI_EBADFLAGS;
	if (len && !buf)
		return -FI_EINVAL;
	ret = sfi_eq_write(eq, event, buf, len, 0);
	return ret ? ret : (ssize_t)len;
}

static ssize_t eq_sread(struct fid_eq *eq_fid, uint32_t *event, void *buf, size_t len,
			int timeout, uint64_t flags)
{
	struct sfi_eq *eq = sfi_container_of(eq_fid, struct sfi_eq, eq_fid);
	int64_t deadline = sfi_deadline(timeout);
	ssize_t ret;

	if (flags & ~(uint64_t)FI_PEEK)
		return -FI_EBADFLAGS;
	for (;;) {
		ret = eq_read(eq_fid, event, buf, len, flags);
		if (ret != -FI_EAGAIN)
			return ret;
		int left = sfi_left_ms(deadline);

		if (left == 0)
			return -FI_EAGAIN;
		if (sfi_wait_once(eq->wait, left) == -FI_EINTR)
			return -FI_EINTR;
	}
}

static const char *eq_strerror(struct fid_eq *eq_fid, int prov_errno, const void *err_data,
			       char *buf, size_t len)
{
	(void)eq_fid; (void)err_data;
	return sfi_strerror(prov_errno, buf, len);
}

/** Progress the CM participants; -FI_EAGAIN when an event is waiting, else 0. */
int sfi_eq_ready(struct sfi_eq *eq)
{
	int ret;

	eq_progress(eq);
	pthread_mutex_lock(&eq->qlock);
	ret = sfi_list_empty(&eq->events) ? 0 : -FI_EAGAIN;
	pthread_mutex_unlock(&eq->qlock);
	return ret;
}

static int eq_control(struct fid *fid, int command, void *arg)
{
	struct sfi_eq *eq = sfi_container_of(fid, struct sfi_eq, eq_fid.fid);

	return sfi_wait_control(eq->wait, command, arg);
}

static int eq_close(struct fid *fid)
{
	struct sfi_eq *eq = sfi_container_of(fid, struct sfi_eq, eq_fid.fid);
	struct sfi_list *it, *tmp;

	pthread_mutex_lock(&eq->qlock);
	if (eq->refs || !sfi_list_empty(&eq->cm_objs)) {
		pthread_mutex_unlock(&eq->qlock);
		return -FI_EBUSY;
	}
	pthread_mutex_unlock(&eq->qlock);
	sfi_list_foreach_safe(&eq->events, it, tmp)
		free(sfi_list_entry(it, struct sfi_eq_event, entry));
	sfi_wait_release(&eq->wait_own, eq->wait, &eq->wobj);
	pthread_mutex_lock(&eq->fabric->lock);
	eq->fabric->refs--;
	pthread_mutex_unlock(&eq->fabric->lock);
	free(eq->last_err_data);
	pthread_mutex_destroy(&eq->lock);
	pthread_mutex_destroy(&eq->qlock);
	free(eq);
	return 0;
}

static struct fi_ops sfi_eq_fi_ops = {
	.size = sizeof(struct fi_ops),
	.close = eq_close,
	.bind = sfi_no_bind,
	.control = eq_control,
	.ops_open = sfi_no_ops_open,
	.tostr = sfi_no_tostr,
	.ops_set = sfi_no_ops_set,
};

static struct fi_ops_eq sfi_eq_ops = {
	.size = sizeof(struct fi_ops_eq),
	.read = eq_read,
	.readerr = eq_readerr,
	.write = eq_app_write,
	.sread = eq_sread,
	.strerror = eq_strerror,
};

int sfi_eq_open(struct fid_fabric *fabric, struct fi_eq_attr *attr, struct fid_eq **eq_fid,
		void *context)
{
	struct sfi_fabric *fab = sfi_container_of(fabric, struct sfi_fabric, fabric_fid);
	enum fi_wait_obj wobj = FI_WAIT_NONE;
	pthread_mutexattr_t ma;
	struct sfi_eq *eq;
	int ret;

	if (!eq_fid)
		return -FI_EINVAL;
	if (attr) {
		if (attr->flags & ~(uint64_t)FI_WRITE)
			return -FI_EBADFLAGS;
		wobj = attr->wait_obj;
	}
	eq = calloc(1, sizeof(*eq));
	if (!eq)
		return -FI_ENOMEM;
	eq->fabric = fab;
	sfi_list_init(&eq->events);
	sfi_list_init(&eq->errs);
	sfi_list_init(&eq->cm_objs);
	sfi_list_init(&eq->held);
	sfi_list_init(&eq->wobj.entry);
	ret = sfi_wait_setup(fab, wobj, attr ? attr->wait_set : NULL, &eq->wait_own, &eq->wait,
			     &eq->wobj, &eq->eq_fid.fid);
	if (ret) {
		free(eq);
		return ret;
	}
	pthread_mutexattr_init(&ma);
	pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_RECURSIVE);
	pthread_mutex_init(&eq->lock, &ma);
	pthread_mutexattr_destroy(&ma);
	pthread_mutex_init(&eq->qlock, NULL);
	eq->eq_fid.fid.fclass = FI_CLASS_EQ;
	eq->eq_fid.fid.context = context;
	eq->eq_fid.fid.ops = &sfi_eq_fi_ops;
	eq->eq_fid.ops = &sfi_eq_ops;
	pthread_mutex_lock(&fab->lock);
	fab->refs++;
	pthread_mutex_unlock(&fab->lock);
	*eq_fid = &eq->eq_fid;
	return 0;
}
