// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * api.c - the public SCIF entry points: argument checks in the spec's order, then the core.
 * The only file that defines scif_* symbols and the only place that turns -errno into
 * -1 plus errno.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <unistd.h>

#include "scif.h"
#include "epd.h"

#define SCIF_EXPORT __attribute__((visibility("default")))

/* The one conversion from internal -errno to the user-mode convention. */
static inline int api_ret(int r)
{
	if (r < 0) {
		errno = -r;
		return -1;
	}
	return r;
}

/* Look an endpoint up; on failure the -errno of spec 2.3 (EBADF, ENOTTY). */
static struct scif_endpt *api_get(scif_epd_t epd, int *err)
{
	struct scif_endpt *ep = scif__epd_get(epd);

	if (!ep)
		*err = scif__epd_lookup_err(epd);
	return ep;
}

/* Invalid user pointers the library can recognise without a system call. */
static inline int api_bad_ptr(const void *p)
{
	return (uintptr_t)p < 4096 || (uintptr_t)p >= (1ULL << 47);
}

SCIF_EXPORT scif_epd_t scif_open(void)
{
	struct scif_endpt *ep;
	int ret = scif__init();

	if (ret)
		return api_ret(-ENXIO);
	ret = scif__monitor_ensure();
	if (!ret)
		ret = scif__epd_create(&ep);
	if (ret)
		return api_ret(ret);
	return ep->fd; /* the table holds the endpoint's reference */
}

SCIF_EXPORT int scif_close(scif_epd_t epd)
{
	int err = 0, fd;
	struct scif_endpt *ep = api_get(epd, &err);

	if (!ep)
		return api_ret(err == -ENOTTY ? -EINVAL : err);
	/* Wake this process's threads sleeping on the endpoint, then wait for them to leave. */
	__atomic_store_n(&ep->closing, 1, __ATOMIC_RELEASE);
	scif__epd_unpublish(ep);
	while (__atomic_load_n(&ep->refs, __ATOMIC_ACQUIRE) > 1) {
		scif__msg_wake(ep);
		usleep(100);
	}
	fd = ep->fd;
	/* Our copy of the descriptor goes now; the endpoint ends when the last copy does. */
	scif__monitor_unwatch(ep->bell);
	close(fd);
	scif__epd_put(ep);
	return 0;
}

SCIF_EXPORT int scif_bind(scif_epd_t epd, uint16_t pn)
{
	int err = 0, ret;
	struct scif_endpt *ep = api_get(epd, &err);

	if (!ep)
		return api_ret(err);
	ret = scif__port_check_privilege(pn);
	if (!ret) {
		scif__lock(&ep->sh->ctl);
		switch (ep->sh->state) {
		case SCIFEP_UNBOUND:
			ret = scif__port_bind(ep, pn);
			if (ret > 0)
				ep->sh->state = SCIFEP_BOUND;
			break;
		case SCIFEP_BOUND:
			ret = -EINVAL;
			break;
		default:
			ret = -EISCONN;
			break;
		}
		scif__unlock(&ep->sh->ctl);
	}
	scif__epd_put(ep);
	return api_ret(ret);
}

SCIF_EXPORT int scif_listen(scif_epd_t epd, int backlog)
{
	int err = 0, ret;
	struct scif_endpt *ep = api_get(epd, &err);

	if (!ep)
		return api_ret(err);
	ret = backlog <= 0 ? -EINVAL : scif__conn_listen(ep, backlog);
	scif__epd_put(ep);
	return api_ret(ret);
}

SCIF_EXPORT int scif_connect(scif_epd_t epd, struct scif_portID *dst)
{
	struct scif_endpt *ep;
	int err = 0, ret;

	if (!dst)
		return api_ret(-EINVAL);
	ep = api_get(epd, &err);
	if (!ep)
		return api_ret(err);
	if (dst->node > scif__fab.max_node)
		ret = -ENODEV;
	else if (dst->port == 0)
		ret = -EINVAL;
	else if (!(scif__fab.online & (1ULL << dst->node)))
		ret = -ENODEV;
	else
		ret = scif__conn_connect(ep, dst);
	scif__epd_put(ep);
	return api_ret(ret);
}

SCIF_EXPORT int scif_accept(scif_epd_t epd, struct scif_portID *peer, scif_epd_t *newepd,
			    int flags)
{
	struct scif_endpt *ep;
	int err = 0, ret;

	if (!peer || !newepd)
		return api_ret(-EINVAL);
	ep = api_get(epd, &err);
	if (!ep)
		return api_ret(err);
	ret = scif__conn_accept(ep, peer, newepd, flags);
	scif__epd_put(ep);
	return api_ret(ret);
}

/* Checks shared by send and recv (spec 3.7): len 0 first, then len and flags, then msg. */
static int api_msg_check(void *msg, int len, int flags)
{
	if (len < 0 || (flags && !(flags & 1)))
		return -EINVAL;
	if (api_bad_ptr(msg))
		return -EFAULT;
	return 0;
}

SCIF_EXPORT int scif_send(scif_epd_t epd, void *msg, int len, int flags)
{
	struct scif_endpt *ep;
	int err = 0, ret;

	if (len == 0)
		return 0;
	ep = api_get(epd, &err);
	if (!ep)
		return api_ret(err);
	ret = api_msg_check(msg, len, flags);
	if (!ret)
		ret = scif__msg_send(ep, msg, len, flags);
	scif__epd_put(ep);
	return api_ret(ret);
}

SCIF_EXPORT int scif_recv(scif_epd_t epd, void *msg, int len, int flags)
{
	struct scif_endpt *ep;
	int err = 0, ret;

	if (len == 0)
		return 0;
	ep = api_get(epd, &err);
	if (!ep)
		return api_ret(err);
	ret = api_msg_check(msg, len, flags);
	if (!ret)
		ret = scif__msg_recv(ep, msg, len, flags);
	scif__epd_put(ep);
	return api_ret(ret);
}

/*
 * Registration, RMA, mmap and fences come with the RMA issue; until then they check the
 * endpoint and the connection state, then fail with ENOSYS (the core issue allows this).
 */
static int api_rma_pending(scif_epd_t epd)
{
	int err = 0, ret;
	struct scif_endpt *ep = api_get(epd, &err);

	if (!ep)
		return err;
	ret = scif__epd_verify_connected(ep);
	scif__epd_put(ep);
	return ret ? ret : -ENOSYS;
}

SCIF_EXPORT off_t scif_register(scif_epd_t epd, void *addr, size_t len, off_t offset,
				int prot_flags, int map_flags)
{
	(void)addr, (void)len, (void)offset, (void)prot_flags, (void)map_flags;
	return api_ret(api_rma_pending(epd));
}

SCIF_EXPORT int scif_unregister(scif_epd_t epd, off_t offset, size_t len)
{
	(void)offset, (void)len;
	return api_ret(api_rma_pending(epd));
}

SCIF_EXPORT void *scif_mmap(void *addr, size_t len, int prot_flags, int map_flags,
			    scif_epd_t epd, off_t offset)
{
	(void)addr, (void)len, (void)prot_flags, (void)map_flags, (void)offset;
	api_ret(api_rma_pending(epd));
	return SCIF_MMAP_FAILED;
}

SCIF_EXPORT int scif_munmap(void *addr, size_t len)
{
	if (((uintptr_t)addr & 4095) || len == 0)
		return api_ret(-EINVAL);
	return api_ret(-ENOSYS);
}

SCIF_EXPORT int scif_readfrom(scif_epd_t epd, off_t loffset, size_t len, off_t roffset,
			      int rma_flags)
{
	(void)loffset, (void)len, (void)roffset, (void)rma_flags;
	return api_ret(api_rma_pending(epd));
}

SCIF_EXPORT int scif_writeto(scif_epd_t epd, off_t loffset, size_t len, off_t roffset,
			     int rma_flags)
{
	(void)loffset, (void)len, (void)roffset, (void)rma_flags;
	return api_ret(api_rma_pending(epd));
}

SCIF_EXPORT int scif_vreadfrom(scif_epd_t epd, void *addr, size_t len, off_t offset,
			       int rma_flags)
{
	(void)addr, (void)len, (void)offset, (void)rma_flags;
	return api_ret(api_rma_pending(epd));
}

SCIF_EXPORT int scif_vwriteto(scif_epd_t epd, void *addr, size_t len, off_t offset,
			      int rma_flags)
{
	(void)addr, (void)len, (void)offset, (void)rma_flags;
	return api_ret(api_rma_pending(epd));
}

SCIF_EXPORT int scif_fence_mark(scif_epd_t epd, int flags, int *mark)
{
	(void)flags, (void)mark;
	return api_ret(api_rma_pending(epd));
}

SCIF_EXPORT int scif_fence_wait(scif_epd_t epd, int mark)
{
	(void)mark;
	return api_ret(api_rma_pending(epd));
}

SCIF_EXPORT int scif_fence_signal(scif_epd_t epd, off_t loff, uint64_t lval, off_t roff,
				  uint64_t rval, int flags)
{
	(void)loff, (void)lval, (void)roff, (void)rval, (void)flags;
	return api_ret(api_rma_pending(epd));
}

SCIF_EXPORT int scif_get_nodeIDs(uint16_t *nodes, int len, uint16_t *self)
{
	int n = 0;

	if (!self || api_bad_ptr(self))
		return api_ret(-EFAULT);
	if (len < 0)
		return api_ret(-EINVAL);
	if (len > 0 && (!nodes || api_bad_ptr(nodes)))
		return api_ret(-EFAULT);
	if (scif__init())
		return api_ret(-ENXIO);
	for (unsigned int id = 0; id <= scif__fab.max_node; id++) {
		if (!(scif__fab.online & (1ULL << id)))
			continue;
		if (n < len)
			nodes[n] = (uint16_t)id;
		n++;
	}
	*self = scif__fab.self;
	return n;
}

SCIF_EXPORT int scif_get_fd(scif_epd_t epd)
{
	return epd;
}

SCIF_EXPORT int scif_poll(struct scif_pollepd *epds, unsigned int nepds, long timeout)
{
	return api_ret(scif__poll(epds, nepds, timeout));
}
