/* SPDX-License-Identifier: LGPL-2.1-or-later */
/**
 * @file sfi_domain.c
 * @brief The domain, its memory regions (SCIF windows) and its list of connections.
 *
 * A region with FI_REMOTE_READ/WRITE access gets a page-aligned range of SCIF offsets from
 * the domain's allocator (with one unused page after it) and is registered with
 * SCIF_MAP_FIXED at that offset on every connection of the domain: connections that exist
 * at fi_mr_reg, and new ones through sfi_domain_conn_add. So one key is valid towards every
 * peer. See struct sfi_mr in sfi.h for the key/address rule. Regions without remote access
 * are not registered with SCIF (local buffers need no registration).
 */
#include "sfi.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/** First SCIF offset handed out; SCIF chooses non-FIXED offsets at or above 2^62. */
#define SFI_OFFSET_BASE ((uint64_t)1 << 20)
#define SFI_OFFSET_LIMIT ((uint64_t)1 << 62)
/** Keys of regions without a window: above every SCIF offset, never dereferenced. */
#define SFI_LOCAL_KEY_BASE ((uint64_t)1 << 63)

static size_t page_size(void)
{
	static size_t ps;

	if (!ps) {
		long v = sysconf(_SC_PAGESIZE);

		ps = v > 0 ? (size_t)v : 4096;
	}
	return ps;
}

static int prot_of(uint64_t access)
{
	int prot = 0;

	if (access & FI_REMOTE_READ)
		prot |= SCIF_PROT_READ;
	if (access & FI_REMOTE_WRITE)
		prot |= SCIF_PROT_WRITE;
	return prot;
}

/**
 * Register one region on one connection; 0 or -FI_E*. A connection that has failed, or
 * whose peer is gone (its owner learns that at its next progress), is skipped: a region
 * must not become unusable because some unrelated peer died.
 */
static int mr_register_conn(struct sfi_mr *mr, struct sfi_conn *c)
{
	off_t off;

	if (c->err)
		return 0;
	off = scif_register(c->epd, mr->page_addr, mr->page_len, (off_t)mr->offset,
			    prot_of(mr->access), SCIF_MAP_FIXED);
	if (off == SCIF_REGISTER_FAILED) {
		int err = errno;

		if (err == ECONNRESET || err == ENOTCONN || err == ENODEV)
			return 0;

		SFI_WARN(FI_LOG_MR, "scif_register(offset %#llx, %zu bytes): %s\n",
			 (unsigned long long)mr->offset, mr->page_len, strerror(err));
		return err == ENOMEM ? -FI_ENOMEM : -(err ? err : FI_EIO);
	}
	return 0;
}

static void mr_unregister_conn(struct sfi_mr *mr, struct sfi_conn *c)
{
	if (c->err)
		return; /* the windows died with the SCIF endpoint */
	if (scif_unregister(c->epd, (off_t)mr->offset, mr->page_len))
		SFI_DBG(FI_LOG_MR, "scif_unregister(%#llx): %s\n",
			(unsigned long long)mr->offset, strerror(errno));
}

void sfi_domain_share(struct sfi_domain *d)
{
	if (!__atomic_load_n(&d->serial, __ATOMIC_RELAXED))
		return;
	pthread_mutex_lock(&d->lock);
	__atomic_store_n(&d->serial, false, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&d->lock);
}

int sfi_domain_conn_add(struct sfi_domain *d, struct sfi_conn *c)
{
	struct sfi_list *it;
	int ret = 0;

	sfi_domain_lock(d);
	sfi_list_foreach(&d->mrs, it) {
		struct sfi_mr *mr = sfi_list_entry(it, struct sfi_mr, entry);

		ret = mr_register_conn(mr, c);
		if (ret) {
			/* undo the ones done so far */
			struct sfi_list *u;

			sfi_list_foreach(&d->mrs, u) {
				if (u == it)
					break;
				mr_unregister_conn(sfi_list_entry(u, struct sfi_mr, entry), c);
			}
			break;
		}
	}
	if (!ret)
		sfi_list_insert_tail(&d->conns, &c->domain_entry);
	sfi_domain_unlock(d);
	return ret;
}

void sfi_domain_conn_del(struct sfi_domain *d, struct sfi_conn *c)
{
	sfi_domain_lock(d);
	if (c->domain_entry.next && !sfi_list_empty(&c->domain_entry))
		sfi_list_remove(&c->domain_entry);
	sfi_domain_unlock(d);
}

struct sfi_mr *sfi_mr_find(struct sfi_domain *d, uint64_t off, size_t len)
{
	struct sfi_list *it;
	uint64_t first = off, end = off + len;

	if (end < first)
		return NULL;
	sfi_list_foreach(&d->mrs, it) {
		struct sfi_mr *mr = sfi_list_entry(it, struct sfi_mr, entry);
		uint64_t start = mr->offset + ((uintptr_t)mr->addr - (uintptr_t)mr->page_addr);

		if (first >= start && end <= start + mr->len)
			return mr;
	}
	return NULL;
}

/* ------------------------------------------------------------------------------------ */
/* Memory regions. */

static int mr_close(struct fid *fid)
{
	struct sfi_mr *mr = sfi_container_of(fid, struct sfi_mr, mr_fid.fid);
	struct sfi_domain *d = mr->domain;
	struct sfi_list *it;

	sfi_domain_lock(d);
	if (!sfi_list_empty(&mr->entry)) { /* it has windows */
		sfi_list_foreach(&d->conns, it)
			mr_unregister_conn(mr, sfi_list_entry(it, struct sfi_conn, domain_entry));
		sfi_list_remove(&mr->entry);
	}
	d->refs--;
	sfi_domain_unlock(d);
	free(mr);
	return 0;
}

static int mr_control(struct fid *fid, int command, void *arg)
{
	(void)fid; (void)arg;
	/* FI_REFRESH and FI_ENABLE apply to FI_MR_ENDPOINT/FI_HMEM, which we do not use */
	return command == FI_REFRESH ? 0 : -FI_ENOSYS;
}

static int mr_bind(struct fid *fid, struct fid *bfid, uint64_t flags)
{
	(void)fid; (void)bfid; (void)flags;
	return -FI_ENOSYS; /* no FI_MR_ENDPOINT */
}

static struct fi_ops sfi_mr_fi_ops = {
	.size = sizeof(struct fi_ops),
	.close = mr_close,
	.bind = mr_bind,
	.control = mr_control,
	.ops_open = sfi_no_ops_open,
	.tostr = sfi_no_tostr,
	.ops_set = sfi_no_ops_set,
};

/**
 * Create a region over [buf, buf+len). Remote-access regions get their SCIF offset range
 * and are registered on every current connection.
 */
static int mr_create(struct sfi_domain *d, const void *buf, size_t len, uint64_t access,
		     uint64_t flags, void *context, struct fid_mr **mr_fid)
{
	const uint64_t valid_access = FI_SEND | FI_RECV | FI_READ | FI_WRITE | FI_REMOTE_READ |
				      FI_REMOTE_WRITE;
	size_t ps = page_size();
	struct sfi_mr *mr;
	struct sfi_list *it;
	int ret = 0;

	if (!mr_fid || (len && !buf))
		return -FI_EINVAL;
	if (access & ~valid_access)
		return -FI_EINVAL;
	if (flags & ~(uint64_t)FI_RMA_EVENT)
		return -FI_EBADFLAGS;
	if (flags & FI_RMA_EVENT)
		return -FI_ENOSYS;
	mr = calloc(1, sizeof(*mr));
	if (!mr)
		return -FI_ENOMEM;
	mr->domain = d;
	mr->addr = (void *)buf;
	mr->len = len;
	mr->access = access;
	sfi_list_init(&mr->entry);
	mr->mr_fid.fid.fclass = FI_CLASS_MR;
	mr->mr_fid.fid.context = context;
	mr->mr_fid.fid.ops = &sfi_mr_fi_ops;
	mr->mr_fid.mem_desc = mr;

	sfi_domain_lock(d);
	if ((access & (FI_REMOTE_READ | FI_REMOTE_WRITE)) && !len) {
		/* nothing to expose: a key in the offset space that no window backs */
		if (d->next_offset + ps > SFI_OFFSET_LIMIT) {
			ret = -FI_ENOSPC;
			goto fail;
		}
		mr->offset = d->next_offset;
		d->next_offset += ps;
		mr->mr_fid.key = mr->offset;
		if ((d->mr_mode & FI_MR_VIRT_ADDR) || d->mr_mode == FI_MR_BASIC)
			mr->mr_fid.key -= (uint64_t)(uintptr_t)buf;
	} else if (access & (FI_REMOTE_READ | FI_REMOTE_WRITE)) {
		uintptr_t a = (uintptr_t)buf;
		uintptr_t pa = a & ~(uintptr_t)(ps - 1);
		size_t plen = len;

		if (plen > SIZE_MAX - (a - pa) - ps) {
			ret = -FI_EINVAL;
			goto fail;
		}
		plen = (a - pa + plen + ps - 1) & ~(ps - 1);
		if (d->next_offset + plen + ps > SFI_OFFSET_LIMIT || d->next_offset + plen < plen) {
			ret = -FI_ENOSPC;
			goto fail;
		}
		mr->page_addr = (void *)pa;
		mr->page_len = plen;
		mr->offset = d->next_offset;
		sfi_list_foreach(&d->conns, it) {
			ret = mr_register_conn(mr, sfi_list_entry(it, struct sfi_conn, domain_entry));
			if (ret) {
				struct sfi_list *u;

				sfi_list_foreach(&d->conns, u) {
					if (u == it)
						break;
					mr_unregister_conn(mr, sfi_list_entry(u, struct sfi_conn,
									      domain_entry));
				}
				goto fail;
			}
		}
		d->next_offset += plen + ps; /* one unregistered page between regions */
		mr->mr_fid.key = mr->offset + (a - pa);
		if ((d->mr_mode & FI_MR_VIRT_ADDR) || d->mr_mode == FI_MR_BASIC)
			mr->mr_fid.key -= (uint64_t)a;
		sfi_list_insert_tail(&d->mrs, &mr->entry);
	} else {
		mr->mr_fid.key = SFI_LOCAL_KEY_BASE | d->next_local_key++;
	}
	d->refs++;
	sfi_domain_unlock(d);
	*mr_fid = &mr->mr_fid;
	return 0;
fail:
	sfi_domain_unlock(d);
	free(mr);
	return ret;
}

static int domain_mr_reg(struct fid *fid, const void *buf, size_t len, uint64_t access,
			 uint64_t offset, uint64_t requested_key, uint64_t flags,
			 struct fid_mr **mr, void *context)
{
	struct sfi_domain *d = sfi_container_of(fid, struct sfi_domain, domain_fid.fid);

	(void)requested_key; /* FI_MR_PROV_KEY: the key is ours */
	if (offset)
		return -FI_EINVAL; /* FI_MR_MMU_NOTIFY-style offsets are not supported */
	return mr_create(d, buf, len, access, flags, context, mr);
}

static int domain_mr_regv(struct fid *fid, const struct iovec *iov, size_t count,
			  uint64_t access, uint64_t offset, uint64_t requested_key,
			  uint64_t flags, struct fid_mr **mr, void *context)
{
	/* a region is one contiguous range: mr_iov_limit is 1 */
	if (count > 1 || (count && !iov))
		return -FI_EINVAL;
	return domain_mr_reg(fid, count ? iov[0].iov_base : NULL, count ? iov[0].iov_len : 0,
			     access, offset, requested_key, flags, mr, context);
}

static int domain_mr_regattr(struct fid *fid, const struct fi_mr_attr *attr, uint64_t flags,
			     struct fid_mr **mr)
{
	if (!attr)
		return -FI_EINVAL;
	if (attr->iface != FI_HMEM_SYSTEM)
		return -FI_ENOSYS;
	return domain_mr_regv(fid, attr->mr_iov, attr->iov_count, attr->access, attr->offset,
			      attr->requested_key, flags, mr, attr->context);
}

static struct fi_ops_mr sfi_mr_ops = {
	.size = sizeof(struct fi_ops_mr),
	.reg = domain_mr_reg,
	.regv = domain_mr_regv,
	.regattr = domain_mr_regattr,
};

/* ------------------------------------------------------------------------------------ */
/* Domain. */

static int domain_endpoint(struct fid_domain *domain, struct fi_info *info,
			   struct fid_ep **ep, void *context)
{
	if (!info || !info->ep_attr || !ep)
		return -FI_EINVAL;
	switch (info->ep_attr->type) {
	case FI_EP_MSG:
		return sfi_msg_ep_open(domain, info, ep, context);
	case FI_EP_RDM:
		return sfi_rdm_ep_open(domain, info, ep, context);
	default:
		return -FI_ENOPROTOOPT;
	}
}

static int domain_endpoint2(struct fid_domain *domain, struct fi_info *info,
			    struct fid_ep **ep, uint64_t flags, void *context)
{
	if (flags)
		return -FI_EBADFLAGS;
	return domain_endpoint(domain, info, ep, context);
}

static int domain_scalable_ep(struct fid_domain *domain, struct fi_info *info,
			      struct fid_ep **sep, void *context)
{
	(void)domain; (void)info; (void)sep; (void)context;
	return -FI_ENOSYS;
}

static int domain_poll_open(struct fid_domain *domain, struct fi_poll_attr *attr,
			    struct fid_poll **pollset)
{
	(void)domain; (void)attr; (void)pollset;
	return -FI_ENOSYS;
}

static int domain_stx_ctx(struct fid_domain *domain, struct fi_tx_attr *attr,
			  struct fid_stx **stx, void *context)
{
	(void)domain; (void)attr; (void)stx; (void)context;
	return -FI_ENOSYS;
}

static int domain_srx_ctx(struct fid_domain *domain, struct fi_rx_attr *attr,
			  struct fid_ep **rx_ep, void *context)
{
	(void)domain; (void)attr; (void)rx_ep; (void)context;
	return -FI_ENOSYS;
}

static int domain_query_atomic(struct fid_domain *domain, enum fi_datatype datatype,
			       enum fi_op op, struct fi_atomic_attr *attr, uint64_t flags)
{
	(void)domain; (void)datatype; (void)op; (void)attr; (void)flags;
	return -FI_EOPNOTSUPP;
}

static int domain_query_collective(struct fid_domain *domain, enum fi_collective_op coll,
				   struct fi_collective_attr *attr, uint64_t flags)
{
	(void)domain; (void)coll; (void)attr; (void)flags;
	return -FI_EOPNOTSUPP;
}

static int domain_close(struct fid *fid)
{
	struct sfi_domain *d = sfi_container_of(fid, struct sfi_domain, domain_fid.fid);
	struct sfi_fabric *fab = d->fabric;

	sfi_domain_lock(d);
	if (d->refs) {
		sfi_domain_unlock(d);
		return -FI_EBUSY;
	}
	sfi_domain_unlock(d);
	pthread_mutex_destroy(&d->lock);
	free(d);
	pthread_mutex_lock(&fab->lock);
	fab->refs--;
	pthread_mutex_unlock(&fab->lock);
	return 0;
}

static struct fi_ops sfi_domain_fi_ops = {
	.size = sizeof(struct fi_ops),
	.close = domain_close,
	.bind = sfi_no_bind,
	.control = sfi_no_control,
	.ops_open = sfi_no_ops_open,
	.tostr = sfi_no_tostr,
	.ops_set = sfi_no_ops_set,
};

static struct fi_ops_domain sfi_domain_ops = {
	.size = sizeof(struct fi_ops_domain),
	.av_open = sfi_av_open,
	.cq_open = sfi_cq_open,
	.endpoint = domain_endpoint,
	.scalable_ep = domain_scalable_ep,
	.cntr_open = sfi_cntr_open,
	.poll_open = domain_poll_open,
	.stx_ctx = domain_stx_ctx,
	.srx_ctx = domain_srx_ctx,
	.query_atomic = domain_query_atomic,
	.query_collective = domain_query_collective,
	.endpoint2 = domain_endpoint2,
};

int sfi_domain_open(struct fid_fabric *fabric, struct fi_info *info,
		    struct fid_domain **domain, void *context)
{
	struct sfi_fabric *fab = sfi_container_of(fabric, struct sfi_fabric, fabric_fid);
	pthread_mutexattr_t ma;
	struct sfi_domain *d;
	int self;

	if (!domain)
		return -FI_EINVAL;
	if (info && info->domain_attr) {
		const struct fi_domain_attr *da = info->domain_attr;

		if (da->name && strcmp(da->name, SFI_FABRIC_NAME))
			return -FI_EINVAL;
	}
	self = sfi_self_node();
	if (self < 0)
		return self;
	d = calloc(1, sizeof(*d));
	if (!d)
		return -FI_ENOMEM;
	d->fabric = fab;
	d->self_node = (uint16_t)self;
	d->threading = FI_THREAD_SAFE;
	d->mr_mode = FI_MR_PROV_KEY;
	if (info && info->domain_attr) {
		d->threading = info->domain_attr->threading ? info->domain_attr->threading
							    : FI_THREAD_SAFE;
		if (info->domain_attr->mr_mode == FI_MR_BASIC)
			d->mr_mode = FI_MR_BASIC;
		else if (info->domain_attr->mr_mode & FI_MR_VIRT_ADDR)
			d->mr_mode = FI_MR_PROV_KEY | FI_MR_VIRT_ADDR;
	}
	d->next_offset = SFI_OFFSET_BASE;
	sfi_list_init(&d->mrs);
	sfi_list_init(&d->conns);
	pthread_mutexattr_init(&ma);
	pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_RECURSIVE);
	pthread_mutex_init(&d->lock, &ma);
	pthread_mutexattr_destroy(&ma);
	d->serial = d->threading == FI_THREAD_DOMAIN;
	d->domain_fid.fid.fclass = FI_CLASS_DOMAIN;
	d->domain_fid.fid.context = context;
	d->domain_fid.fid.ops = &sfi_domain_fi_ops;
	d->domain_fid.ops = &sfi_domain_ops;
	d->domain_fid.mr = &sfi_mr_ops;
	pthread_mutex_lock(&fab->lock);
	fab->refs++;
	pthread_mutex_unlock(&fab->lock);
	*domain = &d->domain_fid;
	return 0;
}
