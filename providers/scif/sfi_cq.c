/* SPDX-License-Identifier: LGPL-2.1-or-later */
/**
 * @file sfi_cq.c
 * @brief Completion queues and counters.
 *
 * A CQ is a ring of struct sfi_cq_entry that doubles when full (it never overruns). An
 * error completion takes a ring slot too (a marker whose details sit in cq->errs), so
 * errors and successes come out in the order they happened: fi_cq_read returns
 * -FI_EAVAIL when the entry at the head is an error, and fi_cq_readerr takes it.
 * Everything runs under the domain lock. Reading or waiting runs the progress of every
 * endpoint bound to the CQ/counter (FI_PROGRESS_MANUAL).
 */
#include "sfi.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/** src value of a ring slot that stands for the oldest entry of cq->errs. */
#define SFI_SRC_ERR (FI_ADDR_NOTAVAIL - 1)

struct sfi_cq_err {
	struct sfi_list entry;
	struct fi_cq_err_entry e;
};

static size_t cq_entry_size(enum fi_cq_format f)
{
	switch (f) {
	case FI_CQ_FORMAT_CONTEXT: return sizeof(struct fi_cq_entry);
	case FI_CQ_FORMAT_MSG: return sizeof(struct fi_cq_msg_entry);
	case FI_CQ_FORMAT_DATA: return sizeof(struct fi_cq_data_entry);
	case FI_CQ_FORMAT_TAGGED: return sizeof(struct fi_cq_tagged_entry);
	default: return 0;
	}
}

/** Add an endpoint to a progress list (no duplicates). */
static int eps_add(struct sfi_ep ***eps, size_t *n, size_t *size, struct sfi_ep *ep)
{
	for (size_t i = 0; i < *n; i++)
		if ((*eps)[i] == ep)
			return 0;
	if (*n == *size) {
		size_t ns = *size ? *size * 2 : 4;
		struct sfi_ep **a = realloc(*eps, ns * sizeof(*a));

		if (!a)
			return -FI_ENOMEM;
		*eps = a;
		*size = ns;
	}
	(*eps)[(*n)++] = ep;
	return 0;
}

static void eps_del(struct sfi_ep **eps, size_t *n, struct sfi_ep *ep)
{
	for (size_t i = 0; i < *n; i++) {
		if (eps[i] == ep) {
			eps[i] = eps[--*n];
			return;
		}
	}
}

/** Run the data progress of every endpoint in a list (domain lock held). */
static void eps_progress(struct sfi_ep **eps, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (eps[i]->progress)
			eps[i]->progress(eps[i]);
}

/** Before sleeping on a wait set: arm the endpoints; nonzero if one has something after
 *  all (domain lock held, progress just ran). */
static int eps_arm(struct sfi_ep **eps, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (eps[i]->arm && eps[i]->arm(eps[i]))
			return 1;
	return 0;
}

int sfi_cq_attach(struct sfi_cq *cq, struct sfi_ep *ep)
{
	return eps_add(&cq->eps, &cq->neps, &cq->eps_size, ep);
}

void sfi_cq_detach(struct sfi_cq *cq, struct sfi_ep *ep)
{
	eps_del(cq->eps, &cq->neps, ep);
}

int sfi_cntr_attach(struct sfi_cntr *c, struct sfi_ep *ep)
{
	return eps_add(&c->eps, &c->neps, &c->eps_size, ep);
}

void sfi_cntr_detach(struct sfi_cntr *c, struct sfi_ep *ep)
{
	eps_del(c->eps, &c->neps, ep);
}

/* ------------------------------------------------------------------------------------ */
/* Completion queues. */

/** Make room for one more entry (domain lock held). */
static __attribute__((noinline, cold)) int cq_grow(struct sfi_cq *cq)
{
	size_t ns = cq->size * 2;
	struct sfi_cq_entry *r;

	if (cq->count < cq->size)
		return 0;
	r = malloc(ns * sizeof(*r));
	if (!r)
		return -FI_ENOMEM;
	for (size_t i = 0; i < cq->count; i++)
		r[i] = cq->ring[(cq->head + i) % cq->size];
	free(cq->ring);
	cq->ring = r;
	cq->head = 0;
	cq->size = ns;
	return 0;
}

/** Slot @p i positions after @p head (head < size, i <= size): a wrap, not a division. */
static inline size_t cq_slot(const struct sfi_cq *cq, size_t head, size_t i)
{
	size_t s = head + i;

	return s >= cq->size ? s - cq->size : s;
}

/**
 * The slot after the ring's last (grown when full), or NULL (out of memory). Entries are
 * filled in place, not composed elsewhere and copied: the copy's wide loads of a struct
 * just stored field by field wait for the store buffer (cq_commit counts the slot).
 */
static inline struct sfi_cq_entry *cq_tail(struct sfi_cq *cq)
{
	if (cq->count == cq->size && cq_grow(cq))
		return NULL;
	return &cq->ring[cq_slot(cq, cq->head, cq->count)];
}

/** Count the slot cq_tail gave, and wake a waiter on the empty -> non-empty edge. */
static inline void cq_commit(struct sfi_cq *cq)
{
	if (cq->count++ == 0 && cq->wait)
		sfi_wait_signal(cq->wait);
}

int sfi_cq_write(struct sfi_cq *cq, void *context, uint64_t flags, size_t len, void *buf,
		 uint64_t data, uint64_t tag, fi_addr_t src)
{
	struct sfi_cq_entry *ent = cq_tail(cq);

	if (!ent)
		return -FI_ENOMEM;
	ent->e.op_context = context;
	ent->e.flags = flags;
	ent->e.len = len;
	ent->e.buf = buf;
	ent->e.data = data;
	ent->e.tag = tag;
	ent->src = src == SFI_SRC_ERR ? FI_ADDR_NOTAVAIL : src;
	cq_commit(cq);
	return 0;
}

int sfi_cq_write_err(struct sfi_cq *cq, const struct fi_cq_err_entry *err)
{
	struct sfi_cq_err *e = calloc(1, sizeof(*e));
	struct sfi_cq_entry *ent;

	if (!e)
		return -FI_ENOMEM;
	e->e = *err;
	e->e.err_data = NULL;
	e->e.err_data_size = 0;
	if (!e->e.err)
		e->e.err = FI_EOTHER;
	ent = cq_tail(cq);
	if (!ent) {
		free(e);
		return -FI_ENOMEM;
	}
	memset(ent, 0, sizeof(*ent));
	ent->src = SFI_SRC_ERR;
	sfi_list_insert_tail(&cq->errs, &e->entry);
	cq_commit(cq);
	return 0;
}

/** One 8-byte field of an entry, at its offset in every format that has it. */
#define CQ_FIELD(dst, e, f) \
	memcpy((char *)(dst) + offsetof(struct fi_cq_tagged_entry, f), &(e)->f, sizeof((e)->f))

/**
 * Copy an entry out in the CQ's format (each a prefix of the tagged one). Field by field:
 * the entry was just stored that way (sfi_cq_write), and a wider load across two of those
 * stores waits for the store buffer to drain instead of being served from it.
 */
static inline void cq_copy_out(void *dst, const struct fi_cq_tagged_entry *e, size_t size)
{
	CQ_FIELD(dst, e, op_context);
	if (size == sizeof(struct fi_cq_entry))
		return;
	CQ_FIELD(dst, e, flags);
	CQ_FIELD(dst, e, len);
	if (size == sizeof(struct fi_cq_msg_entry))
		return;
	CQ_FIELD(dst, e, buf);
	CQ_FIELD(dst, e, data);
	if (size == sizeof(struct fi_cq_data_entry))
		return;
	CQ_FIELD(dst, e, tag);
}

/** Copy up to @p count entries out (domain lock held). */
static ssize_t cq_read_locked(struct sfi_cq *cq, void *buf, size_t count, fi_addr_t *src)
{
	size_t n = 0;

	while (n < count && cq->count) {
		struct sfi_cq_entry *ent = &cq->ring[cq->head];

		if (ent->src == SFI_SRC_ERR)
			break;
		cq_copy_out((char *)buf + n * cq->entry_size, &ent->e, cq->entry_size);
		if (src)
			src[n] = ent->src;
		cq->head = cq_slot(cq, cq->head, 1);
		cq->count--;
		n++;
	}
	if (n)
		return (ssize_t)n;
	if (cq->count && cq->ring[cq->head].src == SFI_SRC_ERR)
		return -FI_EAVAIL;
	if (cq->count)
		return 0; /* count was 0 */
	return -FI_EAGAIN;
}

static ssize_t cq_readfrom(struct fid_cq *cq_fid, void *buf, size_t count, fi_addr_t *src)
{
	struct sfi_cq *cq = sfi_container_of(cq_fid, struct sfi_cq, cq_fid);
	ssize_t ret;
	bool relax;

	if (count && !buf)
		return -FI_EINVAL;
	sfi_domain_lock(cq->domain);
	eps_progress(cq->eps, cq->neps);
	ret = cq_read_locked(cq, buf, count, src);
	/*
	 * A caller that finds nothing is most likely spinning on this call, waiting for an
	 * answer: one pause (about 20 ns here) before it looks again spaces its looks at the
	 * peers' ring lines, which the peers are about to write (and then wait for, at their
	 * barriers). fabtests' 8-byte tagged round trip: 13 % shorter, with the eager fast
	 * path (docs/fi_scif.7). Not
	 * for the read that only confirms a CQ drained (one that found something came just
	 * before, and nothing was sent since): a caller that reads until -FI_EAGAIN after every
	 * completion (Open MPI) would pay the pause on every message's path.
	 */
	relax = ret == -FI_EAGAIN && (cq->idle || cq->domain->sent);
	cq->idle = ret == -FI_EAGAIN;
	if (relax)
		cq->domain->sent = false;
	sfi_domain_unlock(cq->domain);
	if (relax)
		sfi_cpu_relax();
	return ret;
}

static ssize_t cq_read(struct fid_cq *cq_fid, void *buf, size_t count)
{
	return cq_readfrom(cq_fid, buf, count, NULL);
}

/**
 * fi_cq_readerr with the 1.17 err_data rule: an application that passes err_data_size 0
 * gets a pointer to the provider's buffer (valid until the next readerr); otherwise the
 * data is copied into its buffer. Our errors carry no provider data (size 0).
 */
static ssize_t cq_readerr(struct fid_cq *cq_fid, struct fi_cq_err_entry *buf, uint64_t flags)
{
	struct sfi_cq *cq = sfi_container_of(cq_fid, struct sfi_cq, cq_fid);
	struct sfi_cq_err *e;
	ssize_t ret = 1;

	if (!buf || (flags & ~(uint64_t)FI_PEEK))
		return buf ? -FI_EBADFLAGS : -FI_EINVAL;
	sfi_domain_lock(cq->domain);
	if (!cq->count || cq->ring[cq->head].src != SFI_SRC_ERR || sfi_list_empty(&cq->errs)) {
		ret = -FI_EAGAIN;
		goto out;
	}
	e = sfi_list_entry(cq->errs.next, struct sfi_cq_err, entry);
	if (FI_VERSION_LT(cq->api_version, FI_VERSION(1, 5))) {
		/* the pre-1.5 entry ends at err_data */
		memcpy(buf, &e->e, offsetof(struct fi_cq_err_entry, err_data_size));
		buf->err_data = NULL;
	} else {
		void *app_data = buf->err_data;
		size_t app_size = buf->err_data_size;

		*buf = e->e;
		if (app_size) {
			buf->err_data = app_data;
			buf->err_data_size = 0;
		} else {
			buf->err_data = NULL;
			buf->err_data_size = 0;
		}
	}
	if (!(flags & FI_PEEK)) {
		sfi_list_remove(&e->entry);
		free(e);
		cq->head = cq_slot(cq, cq->head, 1);
		cq->count--;
	}
out:
	sfi_domain_unlock(cq->domain);
	return ret;
}

/**
 * The blocking read: progress and read; when nothing is there block on the wait object
 * until activity, a signal or the timeout. Returns -FI_EAGAIN on timeout or after
 * fi_cq_signal.
 */
static ssize_t cq_sreadfrom(struct fid_cq *cq_fid, void *buf, size_t count, fi_addr_t *src,
			    const void *cond, int timeout)
{
	struct sfi_cq *cq = sfi_container_of(cq_fid, struct sfi_cq, cq_fid);
	int64_t deadline = sfi_deadline(timeout);
	size_t threshold = 1;
	ssize_t ret;

	if (count && !buf)
		return -FI_EINVAL;
	if (cond && cq->wait_cond == FI_CQ_COND_THRESHOLD)
		threshold = *(const size_t *)cond;
	if (threshold > count)
		threshold = count;
	if (threshold == 0)
		threshold = 1;
	for (;;) {
		sfi_domain_lock(cq->domain);
		eps_progress(cq->eps, cq->neps);
		if (cq->count >= threshold || (cq->count && sfi_left_ms(deadline) == 0))
			ret = cq_read_locked(cq, buf, count, src);
		else if (cq->count && cq->ring[cq->head].src == SFI_SRC_ERR)
			ret = -FI_EAVAIL;
		else
			ret = -FI_EAGAIN;
		if (ret == -FI_EAGAIN && cq->wait && eps_arm(cq->eps, cq->neps)) {
			sfi_domain_unlock(cq->domain);
			continue; /* it came in while arming: progress again, do not sleep */
		}
		sfi_domain_unlock(cq->domain);
		if (ret != -FI_EAGAIN)
			return ret;
		if (__atomic_exchange_n(&cq->signaled, 0, __ATOMIC_ACQ_REL))
			return -FI_EAGAIN;
		int left = sfi_left_ms(deadline);

		if (left == 0)
			return -FI_EAGAIN;
		if (sfi_wait_once(cq->wait, left) == -FI_EINTR)
			return -FI_EINTR;
	}
}

static ssize_t cq_sread(struct fid_cq *cq_fid, void *buf, size_t count, const void *cond,
			int timeout)
{
	return cq_sreadfrom(cq_fid, buf, count, NULL, cond, timeout);
}

static int cq_signal(struct fid_cq *cq_fid)
{
	struct sfi_cq *cq = sfi_container_of(cq_fid, struct sfi_cq, cq_fid);

	__atomic_store_n(&cq->signaled, 1, __ATOMIC_RELEASE);
	if (cq->wait)
		sfi_wait_signal(cq->wait);
	return 0;
}

static const char *cq_strerror(struct fid_cq *cq_fid, int prov_errno, const void *err_data,
			       char *buf, size_t len)
{
	(void)cq_fid; (void)err_data;
	return sfi_strerror(prov_errno, buf, len);
}

static int cq_control(struct fid *fid, int command, void *arg)
{
	struct sfi_cq *cq = sfi_container_of(fid, struct sfi_cq, cq_fid.fid);

	return sfi_wait_control(cq->wait, command, arg);
}

static int cq_close(struct fid *fid)
{
	struct sfi_cq *cq = sfi_container_of(fid, struct sfi_cq, cq_fid.fid);
	struct sfi_domain *dom = cq->domain;
	struct sfi_list *it, *tmp;

	sfi_domain_lock(dom);
	if (cq->refs) {
		sfi_domain_unlock(dom);
		return -FI_EBUSY;
	}
	dom->refs--;
	sfi_domain_unlock(dom);
	sfi_list_foreach_safe(&cq->errs, it, tmp)
		free(sfi_list_entry(it, struct sfi_cq_err, entry));
	sfi_wait_release(&cq->wait_own, cq->wait, &cq->wobj);
	free(cq->eps);
	free(cq->ring);
	free(cq);
	return 0;
}

static struct fi_ops sfi_cq_fi_ops = {
	.size = sizeof(struct fi_ops),
	.close = cq_close,
	.bind = sfi_no_bind,
	.control = cq_control,
	.ops_open = sfi_no_ops_open,
	.tostr = sfi_no_tostr,
	.ops_set = sfi_no_ops_set,
};

static struct fi_ops_cq sfi_cq_ops = {
	.size = sizeof(struct fi_ops_cq),
	.read = cq_read,
	.readfrom = cq_readfrom,
	.readerr = cq_readerr,
	.sread = cq_sread,
	.sreadfrom = cq_sreadfrom,
	.signal = cq_signal,
	.strerror = cq_strerror,
};

int sfi_cq_open(struct fid_domain *domain, struct fi_cq_attr *attr, struct fid_cq **cq_fid,
		void *context)
{
	struct sfi_domain *dom = sfi_container_of(domain, struct sfi_domain, domain_fid);
	enum fi_cq_format format = FI_CQ_FORMAT_CONTEXT;
	enum fi_wait_obj wobj = FI_WAIT_NONE;
	enum fi_cq_wait_cond wait_cond = FI_CQ_COND_NONE;
	struct sfi_cq *cq;
	size_t size = sfi_params.cq_size;
	int ret;

	if (!cq_fid)
		return -FI_EINVAL;
	if (attr) {
		if (attr->flags & ~(uint64_t)FI_AFFINITY)
			return -FI_EBADFLAGS;
		if (attr->format != FI_CQ_FORMAT_UNSPEC)
			format = attr->format;
		if (!cq_entry_size(format))
			return -FI_ENOSYS;
		if (attr->wait_cond != FI_CQ_COND_NONE && attr->wait_cond != FI_CQ_COND_THRESHOLD)
			return -FI_ENOSYS;
		wobj = attr->wait_obj;
		wait_cond = attr->wait_cond;
		if (attr->size)
			size = attr->size;
	}
	if (size < 16)
		size = 16;
	cq = calloc(1, sizeof(*cq));
	if (!cq)
		return -FI_ENOMEM;
	cq->ring = calloc(size, sizeof(*cq->ring));
	if (!cq->ring) {
		free(cq);
		return -FI_ENOMEM;
	}
	cq->size = size;
	cq->format = format;
	cq->wait_cond = wait_cond;
	cq->entry_size = cq_entry_size(format);
	cq->domain = dom;
	cq->api_version = dom->fabric->fabric_fid.api_version;
	sfi_list_init(&cq->errs);
	sfi_list_init(&cq->wobj.entry);
	cq->cq_fid.fid.fclass = FI_CLASS_CQ;
	cq->cq_fid.fid.context = context;
	cq->cq_fid.fid.ops = &sfi_cq_fi_ops;
	cq->cq_fid.ops = &sfi_cq_ops;
	/* A wait set is a fabric object: its fi_wait may progress this CQ from any thread. */
	if (wobj == FI_WAIT_SET)
		sfi_domain_share(dom);
	ret = sfi_wait_setup(dom->fabric, wobj, attr ? attr->wait_set : NULL, &cq->wait_own, &cq->wait,
			 &cq->wobj, &cq->cq_fid.fid);
	if (ret) {
		free(cq->ring);
		free(cq);
		return ret;
	}
	sfi_domain_lock(dom);
	dom->refs++;
	sfi_domain_unlock(dom);
	*cq_fid = &cq->cq_fid;
	return 0;
}

/** Run the progress of a CQ's endpoints and tell whether it has something to read
 *  (fi_trywait, fi_wait): -FI_EAGAIN when it has, else 0. */
int sfi_cq_ready(struct sfi_cq *cq)
{
	int ret;

	sfi_domain_lock(cq->domain);
	eps_progress(cq->eps, cq->neps);
	ret = cq->count || eps_arm(cq->eps, cq->neps) ? -FI_EAGAIN : 0;
	sfi_domain_unlock(cq->domain);
	return ret;
}

/* ------------------------------------------------------------------------------------ */
/* Counters. */

void sfi_cntr_inc(struct sfi_cntr *c)
{
	c->value++;
	if (c->wait)
		sfi_wait_signal(c->wait);
}

void sfi_cntr_err(struct sfi_cntr *c)
{
	c->errors++;
	if (c->wait)
		sfi_wait_signal(c->wait);
}

static uint64_t cntr_read(struct fid_cntr *cntr_fid)
{
	struct sfi_cntr *c = sfi_container_of(cntr_fid, struct sfi_cntr, cntr_fid);
	uint64_t v;

	sfi_domain_lock(c->domain);
	eps_progress(c->eps, c->neps);
	v = c->value;
	sfi_domain_unlock(c->domain);
	return v;
}

static uint64_t cntr_readerr(struct fid_cntr *cntr_fid)
{
	struct sfi_cntr *c = sfi_container_of(cntr_fid, struct sfi_cntr, cntr_fid);
	uint64_t v;

	sfi_domain_lock(c->domain);
	eps_progress(c->eps, c->neps);
	v = c->errors;
	sfi_domain_unlock(c->domain);
	return v;
}

/** Set or add to the success or error count, waking waiters. */
static int cntr_update(struct fid_cntr *cntr_fid, uint64_t value, bool add, bool err)
{
	struct sfi_cntr *c = sfi_container_of(cntr_fid, struct sfi_cntr, cntr_fid);
	uint64_t *p = err ? &c->errors : &c->value;

	sfi_domain_lock(c->domain);
	*p = add ? *p + value : value;
	if (c->wait)
		sfi_wait_signal(c->wait);
	sfi_domain_unlock(c->domain);
	return 0;
}

static int cntr_add(struct fid_cntr *c, uint64_t v) { return cntr_update(c, v, true, false); }
static int cntr_set(struct fid_cntr *c, uint64_t v) { return cntr_update(c, v, false, false); }
static int cntr_adderr(struct fid_cntr *c, uint64_t v) { return cntr_update(c, v, true, true); }
static int cntr_seterr(struct fid_cntr *c, uint64_t v) { return cntr_update(c, v, false, true); }

/**
 * fi_cntr_wait: progress until the count reaches @p threshold (0), the error count moves
 * (-FI_EAVAIL) or the timeout expires (-FI_ETIMEDOUT).
 */
static int cntr_wait(struct fid_cntr *cntr_fid, uint64_t threshold, int timeout)
{
	struct sfi_cntr *c = sfi_container_of(cntr_fid, struct sfi_cntr, cntr_fid);
	int64_t deadline = sfi_deadline(timeout);
	uint64_t errs;
	int ret;

	sfi_domain_lock(c->domain);
	errs = c->errors;
	sfi_domain_unlock(c->domain);
	for (;;) {
		sfi_domain_lock(c->domain);
		eps_progress(c->eps, c->neps);
		if (c->value >= threshold)
			ret = 0;
		else if (c->errors != errs)
			ret = -FI_EAVAIL;
		else
			ret = -FI_EAGAIN;
		if (ret == -FI_EAGAIN && c->wait && eps_arm(c->eps, c->neps)) {
			sfi_domain_unlock(c->domain);
			continue; /* it came in while arming: progress again, do not sleep */
		}
		sfi_domain_unlock(c->domain);
		if (ret != -FI_EAGAIN)
			return ret;
		int left = sfi_left_ms(deadline);

		if (left == 0)
			return -FI_ETIMEDOUT;
		if (sfi_wait_once(c->wait, left) == -FI_EINTR)
			return -FI_EINTR;
	}
}

/** Whether a counter moved is not something fi_trywait can know; report "not ready" after
 *  running progress so that the caller blocks on the descriptor. */
int sfi_cntr_ready(struct sfi_cntr *c)
{
	int ret;

	sfi_domain_lock(c->domain);
	eps_progress(c->eps, c->neps);
	ret = eps_arm(c->eps, c->neps) ? -FI_EAGAIN : 0;
	sfi_domain_unlock(c->domain);
	return ret;
}

static int cntr_control(struct fid *fid, int command, void *arg)
{
	struct sfi_cntr *c = sfi_container_of(fid, struct sfi_cntr, cntr_fid.fid);

	return sfi_wait_control(c->wait, command, arg);
}

static int cntr_close(struct fid *fid)
{
	struct sfi_cntr *c = sfi_container_of(fid, struct sfi_cntr, cntr_fid.fid);
	struct sfi_domain *dom = c->domain;

	sfi_domain_lock(dom);
	if (c->refs) {
		sfi_domain_unlock(dom);
		return -FI_EBUSY;
	}
	dom->refs--;
	sfi_domain_unlock(dom);
	sfi_wait_release(&c->wait_own, c->wait, &c->wobj);
	free(c->eps);
	free(c);
	return 0;
}

static struct fi_ops sfi_cntr_fi_ops = {
	.size = sizeof(struct fi_ops),
	.close = cntr_close,
	.bind = sfi_no_bind,
	.control = cntr_control,
	.ops_open = sfi_no_ops_open,
	.tostr = sfi_no_tostr,
	.ops_set = sfi_no_ops_set,
};

static struct fi_ops_cntr sfi_cntr_ops = {
	.size = sizeof(struct fi_ops_cntr),
	.read = cntr_read,
	.readerr = cntr_readerr,
	.add = cntr_add,
	.set = cntr_set,
	.wait = cntr_wait,
	.adderr = cntr_adderr,
	.seterr = cntr_seterr,
};

int sfi_cntr_open(struct fid_domain *domain, struct fi_cntr_attr *attr,
		  struct fid_cntr **cntr_fid, void *context)
{
	struct sfi_domain *dom = sfi_container_of(domain, struct sfi_domain, domain_fid);
	enum fi_wait_obj wobj = FI_WAIT_UNSPEC;
	struct sfi_cntr *c;
	int ret;

	if (!cntr_fid)
		return -FI_EINVAL;
	if (attr) {
		if (attr->events != FI_CNTR_EVENTS_COMP)
			return -FI_ENOSYS;
		if (attr->flags)
			return -FI_EBADFLAGS;
		wobj = attr->wait_obj;
	}
	c = calloc(1, sizeof(*c));
	if (!c)
		return -FI_ENOMEM;
	c->domain = dom;
	sfi_list_init(&c->wobj.entry);
	c->cntr_fid.fid.fclass = FI_CLASS_CNTR;
	c->cntr_fid.fid.context = context;
	c->cntr_fid.fid.ops = &sfi_cntr_fi_ops;
	c->cntr_fid.ops = &sfi_cntr_ops;
	if (wobj == FI_WAIT_SET)
		sfi_domain_share(dom); /* as for a CQ */
	ret = sfi_wait_setup(dom->fabric, wobj, attr ? attr->wait_set : NULL, &c->wait_own, &c->wait,
			 &c->wobj, &c->cntr_fid.fid);
	if (ret) {
		free(c);
		return ret;
	}
	sfi_domain_lock(dom);
	dom->refs++;
	sfi_domain_unlock(dom);
	*cntr_fid = &c->cntr_fid;
	return 0;
}
