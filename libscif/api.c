// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * api.c - the public SCIF entry points: argument checks in the spec's order, then the core.
 * The only file that defines scif_* symbols and the only place that turns -errno into
 * -1 plus errno.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "scif.h"
#include "epd.h"
#include "rma.h"
#include "user.h"

#define SCIF_EXPORT __attribute__((visibility("default")))

/*
 * The one conversion from internal -errno to the user-mode convention. Intel's library is a
 * thin wrapper over ioctls and leaves errno alone when a call succeeds, and ported programs
 * rely on it (`errno = 0; scif_close(epd); if (errno) ...`). Internals may touch errno on
 * any path (EAGAIN from a non-blocking socket, ENOENT from epoll_ctl, ...), so every entry
 * point saves it first (API_ENTER) and puts it back on success.
 */
#define API_ENTER() const int api_errno0 = errno

static inline int api_ret_(int r, int errno0)
{
	if (r < 0) {
		errno = -r;
		return -1;
	}
	errno = errno0;
	return r;
}
#define api_ret(r) api_ret_((r), api_errno0)

/* Look an endpoint up; on failure the -errno of spec 2.3 (EBADF, ENOTTY). */
static struct scif_endpt *api_get(scif_epd_t epd, int *err)
{
	struct scif_endpt *ep = scif__epd_find(epd);

	if (!ep)
		*err = scif__epd_lookup_err(epd);
	return ep;
}

SCIF_EXPORT scif_epd_t scif_open(void)
{
	API_ENTER();
	struct scif_endpt *ep;
	int ret = scif__init();

	if (ret)
		return api_ret(-ENXIO);
	ret = scif__monitor_ensure();
	if (!ret)
		ret = scif__epd_create(&ep);
	if (ret)
		return api_ret(ret);
	return api_ret(ep->fd); /* the table holds the endpoint's reference */
}

SCIF_EXPORT int scif_close(scif_epd_t epd)
{
	API_ENTER();
	int err = 0, fd;
	struct scif_endpt *ep = api_get(epd, &err);

	if (!ep)
		return api_ret(err == -ENOTTY ? -EINVAL : err);
	/* A dup() of it stays open here: only this number goes (spec 3.2). */
	if (scif__epd_drop_alias(ep, epd)) {
		close(epd);
		scif__epd_put(ep);
		return api_ret(0);
	}
	/*
	 * Out of the table, so no new call finds it; the monitor stops watching its link (the
	 * replies it would deliver have no reader now); then every thread of ours still inside
	 * a call on it is woken (-EINTR) and we wait for them to leave.
	 */
	__atomic_store_n(&ep->closing, 1, __ATOMIC_RELEASE);
	scif__epd_unpublish(ep);
	scif__conn_closing(ep);
	while (__atomic_load_n(&ep->refs, __ATOMIC_ACQUIRE) > 1) {
		scif__epd_wake(ep);
		usleep(100);
	}
	fd = ep->fd;
	/* Our copy of the descriptor goes now; the endpoint ends when the last copy does. */
	scif__monitor_unwatch(ep->bell.fd);
	close(fd);
	scif__epd_put(ep);
	return api_ret(0);
}

SCIF_EXPORT int scif_bind(scif_epd_t epd, uint16_t pn)
{
	API_ENTER();
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
	API_ENTER();
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
	API_ENTER();
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
	API_ENTER();
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

/*
 * send and recv (spec 3.7): len 0 returns 0 before any other check, then the descriptor,
 * len and flags, then the buffer.
 */
static int api_msg(scif_epd_t epd, void *msg, int len, int flags, int recv)
{
	API_ENTER();
	struct scif_endpt *ep;
	int err = 0, ret;

	if (len == 0)
		return 0;
	ep = api_get(epd, &err);
	if (!ep)
		return api_ret(err);
	if (len < 0 || (flags && !(flags & 1)))
		ret = -EINVAL;
	else
		ret = scif__user_check(msg, (size_t)len, recv);
	if (!ret)
		ret = recv ? scif__msg_recv(ep, msg, len, flags) : scif__msg_send(ep, msg, len, flags);
	scif__epd_put(ep);
	return api_ret(ret);
}

SCIF_EXPORT int scif_send(scif_epd_t epd, void *msg, int len, int flags)
{
	return api_msg(epd, msg, len, flags, 0);
}

SCIF_EXPORT int scif_recv(scif_epd_t epd, void *msg, int len, int flags)
{
	return api_msg(epd, msg, len, flags, 1);
}

#define PAGE_MASK_ 4095ULL

SCIF_EXPORT off_t scif_register(scif_epd_t epd, void *addr, size_t len, off_t offset,
				int prot_flags, int map_flags)
{
	API_ENTER();
	int err = 0;
	off_t ret;
	struct scif_endpt *ep = api_get(epd, &err);

	if (!ep)
		return api_ret(err);
	/* Spec 3.9 check order: map flags, fixed offset, prot, length and address. */
	if (map_flags & ~SCIF_MAP_FIXED)
		ret = -EINVAL;
	else if ((map_flags & SCIF_MAP_FIXED) &&
		 (((uint64_t)offset & PAGE_MASK_) || offset < 0 ||
		  (uint64_t)offset + len < (uint64_t)offset ||
		  (uint64_t)offset + len > (1ULL << 63)))
		ret = -EINVAL;
	else if (prot_flags & ~(SCIF_PROT_READ | SCIF_PROT_WRITE))
		ret = -EINVAL;
	else if (!len || (len & PAGE_MASK_) || ((uintptr_t)addr & PAGE_MASK_))
		ret = -EINVAL;
	else
		ret = scif__rma_register(ep, addr, len, offset, prot_flags, map_flags);
	scif__epd_put(ep);
	if (ret < 0) {
		errno = (int)-ret;
		return SCIF_REGISTER_FAILED;
	}
	errno = api_errno0;
	return ret;
}

SCIF_EXPORT int scif_unregister(scif_epd_t epd, off_t offset, size_t len)
{
	API_ENTER();
	int err = 0, ret;
	struct scif_endpt *ep = api_get(epd, &err);

	if (!ep)
		return api_ret(err);
	if (!len || (len & PAGE_MASK_) || ((uint64_t)offset & PAGE_MASK_) || offset < 0 ||
	    (uint64_t)offset + len < (uint64_t)offset)
		ret = -EINVAL;
	else
		ret = scif__rma_unregister(ep, offset, len);
	scif__epd_put(ep);
	return api_ret(ret);
}

SCIF_EXPORT void *scif_mmap(void *addr, size_t len, int prot_flags, int map_flags,
			    scif_epd_t epd, off_t offset)
{
	API_ENTER();
	int err = 0;
	void *ret = SCIF_MMAP_FAILED;
	struct scif_endpt *ep = api_get(epd, &err);

	if (!ep) {
		errno = -err;
		return SCIF_MMAP_FAILED;
	}
	if ((map_flags & ~SCIF_MAP_FIXED) || (prot_flags & ~(SCIF_PROT_READ | SCIF_PROT_WRITE)) ||
	    !len || ((uint64_t)offset & PAGE_MASK_) ||
	    ((map_flags & SCIF_MAP_FIXED) && ((uintptr_t)addr & PAGE_MASK_)))
		err = -EINVAL;
	else
		ret = scif__rma_mmap(addr, len, prot_flags, map_flags, ep, offset, &err);
	scif__epd_put(ep);
	errno = ret == SCIF_MMAP_FAILED ? -err : api_errno0;
	return ret;
}

SCIF_EXPORT int scif_munmap(void *addr, size_t len)
{
	API_ENTER();

	if (((uintptr_t)addr & PAGE_MASK_) || len == 0)
		return api_ret(-EINVAL);
	return api_ret(scif__rma_munmap(addr, len));
}

/* The four RMA calls share one path; v-calls also check their buffer (EFAULT). */
static int api_rma(scif_epd_t epd, off_t loffset, void *vaddr, int is_v, size_t len,
		   off_t roffset, int flags, int write)
{
	API_ENTER();
	int err = 0, ret;
	struct scif_endpt *ep;

	/* The common in-window copy, without taking a reference (rma.c). */
	if (!scif__rma_copy_light(epd, loffset, vaddr, is_v, len, roffset, flags, write))
		return api_ret(0);
	ep = api_get(epd, &err);
	if (!ep)
		return api_ret(err);
	ret = scif__rma_copy(ep, loffset, is_v ? vaddr : NULL, is_v, len, roffset, flags, write);
	scif__epd_put(ep);
	return api_ret(ret);
}

SCIF_EXPORT int scif_readfrom(scif_epd_t epd, off_t loffset, size_t len, off_t roffset,
			      int rma_flags)
{
	return api_rma(epd, loffset, NULL, 0, len, roffset, rma_flags, 0);
}

SCIF_EXPORT int scif_writeto(scif_epd_t epd, off_t loffset, size_t len, off_t roffset,
			     int rma_flags)
{
	return api_rma(epd, loffset, NULL, 0, len, roffset, rma_flags, 1);
}

SCIF_EXPORT int scif_vreadfrom(scif_epd_t epd, void *addr, size_t len, off_t offset,
			       int rma_flags)
{
	return api_rma(epd, 0, addr, 1, len, offset, rma_flags, 0);
}

SCIF_EXPORT int scif_vwriteto(scif_epd_t epd, void *addr, size_t len, off_t offset,
			      int rma_flags)
{
	return api_rma(epd, 0, addr, 1, len, offset, rma_flags, 1);
}

SCIF_EXPORT int scif_fence_mark(scif_epd_t epd, int flags, int *mark)
{
	API_ENTER();
	int err = 0, ret, m = 0;
	struct scif_endpt *ep = api_get(epd, &err);

	if (!ep)
		return api_ret(err);
	ret = scif__fence_mark(ep, flags, &m);
	if (!ret)
		ret = scif__user_check(mark, sizeof(*mark), 1);
	if (!ret)
		*mark = m;
	scif__epd_put(ep);
	return api_ret(ret);
}

SCIF_EXPORT int scif_fence_wait(scif_epd_t epd, int mark)
{
	API_ENTER();
	int err = 0, ret;
	struct scif_endpt *ep = api_get(epd, &err);

	if (!ep)
		return api_ret(err);
	ret = scif__fence_wait(ep, mark);
	scif__epd_put(ep);
	return api_ret(ret);
}

SCIF_EXPORT int scif_fence_signal(scif_epd_t epd, off_t loff, uint64_t lval, off_t roff,
				  uint64_t rval, int flags)
{
	API_ENTER();
	int err = 0, ret;
	struct scif_endpt *ep = api_get(epd, &err);

	if (!ep)
		return api_ret(err);
	ret = scif__fence_signal(ep, loff, lval, roff, rval, flags);
	scif__epd_put(ep);
	return api_ret(ret);
}

SCIF_EXPORT int scif_get_nodeIDs(uint16_t *nodes, int len, uint16_t *self)
{
	API_ENTER();
	int n = 0;

	if (!self || scif__user_check(self, sizeof(*self), 1))
		return api_ret(-EFAULT);
	if (len < 0)
		return api_ret(-EINVAL);
	if (len > 0 && (!nodes || scif__user_check(nodes, (size_t)len * sizeof(*nodes), 1)))
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
	return api_ret(n);
}

SCIF_EXPORT int scif_get_fd(scif_epd_t epd)
{
	API_ENTER();

	/* Spec 3.21: the descriptor itself, always; a negative one is also an error. */
	return epd < 0 ? api_ret(-EINVAL) : api_ret(epd);
}

SCIF_EXPORT int scif_poll(struct scif_pollepd *epds, unsigned int nepds, long timeout)
{
	API_ENTER();
	struct rlimit rl;

	/* poll(2)'s order: too many entries (EINVAL) before an unreadable array (EFAULT). */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && nepds > rl.rlim_cur)
		return api_ret(-EINVAL);
	if (nepds && scif__user_check(epds, (size_t)nepds * sizeof(*epds), 1))
		return api_ret(-EFAULT);
	return api_ret(scif__poll(epds, nepds, timeout));
}
