/* SPDX-License-Identifier: LGPL-2.1-or-later */
/**
 * @file sfi_av.c
 * @brief Address vectors of struct sfi_addr.
 *
 * FI_AV_MAP: the fi_addr_t is the address itself, (node << 16) | port; nothing is stored.
 * FI_AV_TABLE (also the choice for FI_AV_UNSPEC): the fi_addr_t is an index into a table
 * that grows as needed; removed slots are not reused (indices stay stable).
 * With an EQ bound (FI_EVENT) inserts complete asynchronously: the call returns 0 and an
 * FI_AV_COMPLETE event carries the number inserted, preceded by one error entry per
 * failed address (data = its index in the request).
 */
#include "sfi.h"

#include <stdlib.h>
#include <string.h>

static bool addr_valid(const struct sfi_addr *a)
{
	return a->magic == SFI_ADDR_MAGIC && a->node != UINT16_MAX;
}

static fi_addr_t map_encode(const struct sfi_addr *a)
{
	return ((fi_addr_t)a->node << 16) | a->port;
}

int sfi_av_lookup_addr(struct sfi_av *av, fi_addr_t fi_addr, struct sfi_addr *out)
{
	if (fi_addr == FI_ADDR_NOTAVAIL || fi_addr == FI_ADDR_UNSPEC)
		return -FI_EINVAL;
	if (av->type == FI_AV_MAP) {
		if (fi_addr >> 32)
			return -FI_EINVAL;
		out->node = (uint16_t)(fi_addr >> 16);
		out->port = (uint16_t)fi_addr;
		out->magic = SFI_ADDR_MAGIC;
		return 0;
	}
	if (fi_addr >= av->size || !addr_valid(&av->table[fi_addr]))
		return -FI_EINVAL;
	*out = av->table[fi_addr];
	return 0;
}

fi_addr_t sfi_av_reverse(struct sfi_av *av, const struct sfi_addr *a)
{
	if (av->type == FI_AV_MAP)
		return map_encode(a);
	for (size_t i = 0; i < av->size; i++)
		if (addr_valid(&av->table[i]) && av->table[i].node == a->node &&
		    av->table[i].port == a->port)
			return i;
	return FI_ADDR_NOTAVAIL;
}

/** Store one address; its fi_addr_t or FI_ADDR_NOTAVAIL (domain lock held). */
static fi_addr_t av_add(struct sfi_av *av, const struct sfi_addr *a)
{
	struct sfi_addr clean = { .node = a->node, .port = a->port, .magic = SFI_ADDR_MAGIC };

	if (av->type == FI_AV_MAP)
		return map_encode(a);
	if (av->count == av->size_alloc) {
		size_t ns = av->size_alloc ? av->size_alloc * 2 : 64;
		struct sfi_addr *t = realloc(av->table, ns * sizeof(*t));

		if (!t)
			return FI_ADDR_NOTAVAIL;
		memset(t + av->size_alloc, 0, (ns - av->size_alloc) * sizeof(*t));
		av->table = t;
		av->size_alloc = ns;
	}
	av->table[av->count] = clean;
	av->size = ++av->count;
	return av->count - 1;
}

/**
 * Insert @p count addresses. Bad ones get FI_ADDR_NOTAVAIL (and with FI_SYNC_ERR their
 * error in the int array @p context). Returns the number inserted, or 0 with FI_EVENT.
 */
static int av_insert_addrs(struct sfi_av *av, const struct sfi_addr *addrs, size_t count,
			   fi_addr_t *fi_addr, uint64_t flags, void *context)
{
	int *errs = (flags & FI_SYNC_ERR) ? context : NULL;
	size_t ok = 0;

	if (flags & ~(uint64_t)(FI_MORE | FI_SYNC_ERR))
		return -FI_EBADFLAGS;
	if ((flags & FI_SYNC_ERR) && av->eq)
		return -FI_EINVAL;
	if (av->async && !av->eq)
		return -FI_ENOEQ; /* FI_EVENT: bind an EQ first */
	if (count && !addrs)
		return -FI_EINVAL;
	sfi_domain_lock(av->domain);
	for (size_t i = 0; i < count; i++) {
		struct sfi_addr a;
		fi_addr_t fa = FI_ADDR_NOTAVAIL;
		int err = FI_EINVAL;

		memcpy(&a, &addrs[i], sizeof(a));
		if (addr_valid(&a)) {
			fa = av_add(av, &a);
			err = fa == FI_ADDR_NOTAVAIL ? FI_ENOMEM : 0;
		} else {
			SFI_INFO(FI_LOG_AV, "entry %zu is not a scif address\n", i);
		}
		if (fi_addr)
			fi_addr[i] = fa;
		if (errs)
			errs[i] = err;
		if (!err)
			ok++;
		else if (av->eq)
			sfi_eq_write_err(av->eq, &av->av_fid.fid, context, err, err, NULL, 0);
	}
	sfi_domain_unlock(av->domain);
	if (av->eq) {
		struct fi_eq_entry ev = { .fid = &av->av_fid.fid, .context = context,
					  .data = ok };

		sfi_eq_write(av->eq, FI_AV_COMPLETE, &ev, sizeof(ev), 0);
		return 0;
	}
	return (int)ok;
}

static int av_insert(struct fid_av *av_fid, const void *addr, size_t count,
		     fi_addr_t *fi_addr, uint64_t flags, void *context)
{
	struct sfi_av *av = sfi_container_of(av_fid, struct sfi_av, av_fid);

	return av_insert_addrs(av, addr, count, fi_addr, flags, context);
}

static int av_insertsvc(struct fid_av *av_fid, const char *node, const char *service,
			fi_addr_t *fi_addr, uint64_t flags, void *context)
{
	struct sfi_av *av = sfi_container_of(av_fid, struct sfi_av, av_fid);
	struct sfi_addr a;

	if (sfi_addr_parse_ext(node, service, 0, &a))
		a.magic = 0; /* inserted as a bad entry: reported like one */
	return av_insert_addrs(av, &a, 1, fi_addr, flags, context);
}

/** Nodes node..node+nodecnt-1 times ports service..service+svccnt-1. */
static int av_insertsym(struct fid_av *av_fid, const char *node, size_t nodecnt,
			const char *service, size_t svccnt, fi_addr_t *fi_addr,
			uint64_t flags, void *context)
{
	struct sfi_av *av = sfi_container_of(av_fid, struct sfi_av, av_fid);
	struct sfi_addr base, *addrs;
	int ret;

	if (!nodecnt || !svccnt || nodecnt > UINT16_MAX || svccnt > UINT16_MAX)
		return -FI_EINVAL;
	if (sfi_addr_parse_ext(node, service, 0, &base))
		return -FI_EINVAL;
	if (base.node + nodecnt > UINT16_MAX || base.port + svccnt - 1 > UINT16_MAX)
		return -FI_EINVAL;
	addrs = calloc(nodecnt * svccnt, sizeof(*addrs));
	if (!addrs)
		return -FI_ENOMEM;
	for (size_t n = 0; n < nodecnt; n++) {
		for (size_t s = 0; s < svccnt; s++) {
			struct sfi_addr *a = &addrs[n * svccnt + s];

			a->node = (uint16_t)(base.node + n);
			a->port = (uint16_t)(base.port + s);
			a->magic = SFI_ADDR_MAGIC;
		}
	}
	ret = av_insert_addrs(av, addrs, nodecnt * svccnt, fi_addr, flags, context);
	free(addrs);
	return ret;
}

static int av_remove(struct fid_av *av_fid, fi_addr_t *fi_addr, size_t count, uint64_t flags)
{
	struct sfi_av *av = sfi_container_of(av_fid, struct sfi_av, av_fid);
	int ret = 0;

	if (flags)
		return -FI_EBADFLAGS;
	if (count && !fi_addr)
		return -FI_EINVAL;
	sfi_domain_lock(av->domain);
	for (size_t i = 0; i < count; i++) {
		struct sfi_addr a;

		if (sfi_av_lookup_addr(av, fi_addr[i], &a)) {
			ret = -FI_EINVAL;
			continue;
		}
		if (av->type != FI_AV_MAP)
			memset(&av->table[fi_addr[i]], 0, sizeof(a));
	}
	av->removals++;
	sfi_domain_unlock(av->domain);
	return ret;
}

static int av_lookup(struct fid_av *av_fid, fi_addr_t fi_addr, void *addr, size_t *addrlen)
{
	struct sfi_av *av = sfi_container_of(av_fid, struct sfi_av, av_fid);
	struct sfi_addr a;
	int ret;

	if (!addrlen)
		return -FI_EINVAL;
	sfi_domain_lock(av->domain);
	ret = sfi_av_lookup_addr(av, fi_addr, &a);
	sfi_domain_unlock(av->domain);
	if (ret)
		return ret;
	if (addr)
		memcpy(addr, &a, *addrlen < sizeof(a) ? *addrlen : sizeof(a));
	*addrlen = sizeof(a);
	return 0;
}

static const char *av_straddr(struct fid_av *av_fid, const void *addr, char *buf, size_t *len)
{
	struct sfi_addr a;

	(void)av_fid;
	if (!addr || !len)
		return NULL;
	memcpy(&a, addr, sizeof(a));
	return sfi_addr_str(&a, buf, len);
}

static int av_set(struct fid_av *av_fid, struct fi_av_set_attr *attr,
		  struct fid_av_set **av_set, void *context)
{
	(void)av_fid; (void)attr; (void)av_set; (void)context;
	return -FI_ENOSYS;
}

/** fi_av_bind: an EQ for asynchronous inserts (flags must be 0). */
static int av_bind(struct fid *fid, struct fid *bfid, uint64_t flags)
{
	struct sfi_av *av = sfi_container_of(fid, struct sfi_av, av_fid.fid);
	struct sfi_eq *eq;

	if (flags)
		return -FI_EBADFLAGS;
	if (!bfid || bfid->fclass != FI_CLASS_EQ)
		return -FI_EINVAL;
	eq = sfi_container_of(bfid, struct sfi_eq, eq_fid.fid);
	if (eq->fabric != av->domain->fabric)
		return -FI_EINVAL;
	sfi_domain_lock(av->domain);
	if (av->eq || !av->async) {
		sfi_domain_unlock(av->domain);
		return -FI_EINVAL;
	}
	pthread_mutex_lock(&eq->qlock);
	eq->refs++;
	pthread_mutex_unlock(&eq->qlock);
	av->eq = eq;
	sfi_domain_unlock(av->domain);
	return 0;
}

static int av_close(struct fid *fid)
{
	struct sfi_av *av = sfi_container_of(fid, struct sfi_av, av_fid.fid);
	struct sfi_domain *d = av->domain;

	sfi_domain_lock(d);
	if (av->refs) {
		sfi_domain_unlock(d);
		return -FI_EBUSY;
	}
	d->refs--;
	sfi_domain_unlock(d);
	if (av->eq) {
		pthread_mutex_lock(&av->eq->qlock);
		av->eq->refs--;
		pthread_mutex_unlock(&av->eq->qlock);
	}
	free(av->table);
	free(av);
	return 0;
}

static struct fi_ops sfi_av_fi_ops = {
	.size = sizeof(struct fi_ops),
	.close = av_close,
	.bind = av_bind,
	.control = sfi_no_control,
	.ops_open = sfi_no_ops_open,
	.tostr = sfi_no_tostr,
	.ops_set = sfi_no_ops_set,
};

static struct fi_ops_av sfi_av_ops = {
	.size = sizeof(struct fi_ops_av),
	.insert = av_insert,
	.insertsvc = av_insertsvc,
	.insertsym = av_insertsym,
	.remove = av_remove,
	.lookup = av_lookup,
	.straddr = av_straddr,
	.av_set = av_set,
};

int sfi_av_open(struct fid_domain *domain, struct fi_av_attr *attr, struct fid_av **av_fid,
		void *context)
{
	struct sfi_domain *d = sfi_container_of(domain, struct sfi_domain, domain_fid);
	struct sfi_av *av;

	if (!attr || !av_fid)
		return -FI_EINVAL;
	if (attr->flags & ~(uint64_t)(FI_EVENT | FI_SYMMETRIC))
		return -FI_EBADFLAGS;
	if (attr->name || attr->rx_ctx_bits)
		return -FI_ENOSYS; /* no shared (named) AVs, no scalable endpoints */
	if (attr->type != FI_AV_UNSPEC && attr->type != FI_AV_MAP && attr->type != FI_AV_TABLE)
		return -FI_EINVAL;
	av = calloc(1, sizeof(*av));
	if (!av)
		return -FI_ENOMEM;
	av->domain = d;
	av->type = attr->type == FI_AV_MAP ? FI_AV_MAP : FI_AV_TABLE;
	av->async = !!(attr->flags & FI_EVENT);
	if (av->type == FI_AV_TABLE && attr->count) {
		av->table = calloc(attr->count, sizeof(*av->table));
		if (!av->table) {
			free(av);
			return -FI_ENOMEM;
		}
		av->size_alloc = attr->count;
	}
	av->av_fid.fid.fclass = FI_CLASS_AV;
	av->av_fid.fid.context = context;
	av->av_fid.fid.ops = &sfi_av_fi_ops;
	av->av_fid.ops = &sfi_av_ops;
	attr->type = av->type;
	sfi_domain_lock(d);
	d->refs++;
	sfi_domain_unlock(d);
	*av_fid = &av->av_fid;
	return 0;
}
