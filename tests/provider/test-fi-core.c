/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test-fi-core.c - the core objects of the libfabric provider "scif", through libfabric's
 * public API only: fi_getinfo and its attribute rules, fabric/domain/CQ/EQ/AV/counter/MR
 * objects, wait objects and fi_trywait, provider variables, fi_info(1).
 *
 * The provider is found through FI_PROVIDER_PATH (make check sets it); every test pins
 * FI_PROVIDER=scif before libfabric initialises in its process.
 */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <poll.h>
#include <stdbool.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <rdma/fabric.h>
#include <rdma/fi_atomic.h>
#include <rdma/fi_cm.h>
#include <rdma/fi_domain.h>
#include <rdma/fi_endpoint.h>
#include <rdma/fi_eq.h>
#include <rdma/fi_errno.h>

#define FIVER FI_VERSION(1, 17)

/* The provider's raw address (providers/scif/sfi.h, struct sfi_addr). */
struct scif_fi_addr {
	uint16_t node;
	uint16_t port;
	uint32_t magic;
};
#define ADDR_MAGIC 0x53464931u

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* The native provider alone: libfabric would otherwise also offer its utility providers
 * layered over scif ("scif;ofi_rxm"), first. */
static void setup(void)
{
	setenv("FI_PROVIDER", "^ofi_rxm,^ofi_rxd,^ofi_mrail", 1);
}

TestSuite(fi_core, .init = setup, .timeout = 30);

/* hints for the scif provider; the caller fills in the rest */
static struct fi_info *scif_hints(void)
{
	struct fi_info *h = fi_allocinfo();

	cr_assert_not_null(h);
	h->fabric_attr->prov_name = strdup("scif");
	h->domain_attr->mr_mode = FI_MR_PROV_KEY;
	return h;
}

/* entries of the scif provider itself (libfabric may layer utility providers on it,
 * e.g. "scif;ofi_rxm") */
static bool ours(const struct fi_info *i)
{
	return !strcmp(i->fabric_attr->prov_name, "scif");
}

static int count_type(struct fi_info *list, enum fi_ep_type type)
{
	int n = 0;

	for (struct fi_info *i = list; i; i = i->next)
		if (ours(i) && i->ep_attr->type == type)
			n++;
	return n;
}

/* ------------------------------------------------------------------------------------ */
/* fi_getinfo */

Test(fi_core, getinfo_without_hints)
{
	struct fi_info *info = NULL;
	int ret = fi_getinfo(FIVER, NULL, NULL, 0, NULL, &info);

	cr_assert_eq(ret, 0, "fi_getinfo: %s", fi_strerror(-ret));
	cr_expect_eq(count_type(info, FI_EP_MSG), 1);
	cr_expect_eq(count_type(info, FI_EP_RDM), 1);
	for (struct fi_info *i = info; i; i = i->next) {
		if (!ours(i))
			continue;
		cr_expect_str_eq(i->fabric_attr->name, "scif");
		cr_expect_str_eq(i->domain_attr->name, "scif");
		cr_expect_eq(i->mode, 0);
		cr_expect_eq(i->addr_format, FI_FORMAT_UNSPEC);
		cr_expect_eq(i->domain_attr->mr_mode, FI_MR_PROV_KEY);
		cr_expect_eq(i->domain_attr->threading, FI_THREAD_SAFE);
		cr_expect_eq(i->domain_attr->data_progress, FI_PROGRESS_MANUAL);
		cr_expect_eq(i->domain_attr->control_progress, FI_PROGRESS_MANUAL);
		cr_expect_eq(i->domain_attr->mr_key_size, 8);
		cr_expect_eq(i->domain_attr->cq_data_size, 8);
		cr_expect(i->caps & FI_MSG);
		cr_expect(i->caps & FI_RMA);
		cr_expect_eq(i->src_addrlen, sizeof(struct scif_fi_addr));
		cr_assert_not_null(i->src_addr);
		struct scif_fi_addr *a = i->src_addr;

		cr_expect_eq(a->magic, ADDR_MAGIC);
		cr_expect_eq(a->node, 0); /* SCIF_NODE unset: the host */
		cr_expect_null(i->dest_addr);
		if (i->ep_attr->type == FI_EP_RDM) {
			cr_expect(i->caps & FI_TAGGED);
			cr_expect(i->caps & FI_SOURCE);
			cr_expect(i->caps & FI_DIRECTED_RECV);
			cr_expect(i->caps & FI_MULTI_RECV);
			cr_expect_neq(i->ep_attr->mem_tag_format, 0);
			cr_expect_eq(i->ep_attr->mem_tag_format >> 63, 0, "bit 63 is the app's");
		} else {
			cr_expect_eq(i->caps & FI_TAGGED, 0);
		}
		cr_expect_eq(i->tx_attr->iov_limit, 8);
		cr_expect_eq(i->tx_attr->inject_size, 64);
		cr_expect(i->tx_attr->msg_order & FI_ORDER_SAS);
	}
	fi_freeinfo(info);
}

Test(fi_core, getinfo_ep_type)
{
	struct fi_info *h = scif_hints(), *info = NULL;

	h->ep_attr->type = FI_EP_RDM;
	cr_assert_eq(fi_getinfo(FIVER, NULL, NULL, 0, h, &info), 0);
	cr_expect_eq(count_type(info, FI_EP_RDM), 1);
	cr_expect_eq(count_type(info, FI_EP_MSG), 0);
	fi_freeinfo(info);
	h->ep_attr->type = FI_EP_MSG;
	cr_assert_eq(fi_getinfo(FIVER, NULL, NULL, 0, h, &info), 0);
	cr_expect_eq(count_type(info, FI_EP_MSG), 1);
	cr_expect_eq(count_type(info, FI_EP_RDM), 0);
	fi_freeinfo(info);
	h->ep_attr->type = FI_EP_DGRAM;
	cr_expect_eq(fi_getinfo(FIVER, NULL, NULL, 0, h, &info), -FI_ENODATA);
	fi_freeinfo(h);
}

Test(fi_core, getinfo_caps)
{
	struct fi_info *h = scif_hints(), *info = NULL;

	/* tagged: RDM only, and primary caps not asked for are not returned */
	h->caps = FI_TAGGED;
	cr_assert_eq(fi_getinfo(FIVER, NULL, NULL, 0, h, &info), 0);
	cr_expect_eq(count_type(info, FI_EP_MSG), 0);
	cr_expect_eq(count_type(info, FI_EP_RDM), 1);
	cr_expect(info->caps & FI_TAGGED);
	cr_expect(info->caps & FI_SEND);
	cr_expect(info->caps & FI_RECV);
	cr_expect_eq(info->caps & (FI_RMA | FI_MSG), 0);
	cr_expect_eq(info->tx_attr->caps & ~info->caps, 0);
	cr_expect_eq(info->rx_attr->caps & ~info->caps, 0);
	fi_freeinfo(info);

	/* message + RMA: both types */
	h->caps = FI_MSG | FI_RMA;
	cr_assert_eq(fi_getinfo(FIVER, NULL, NULL, 0, h, &info), 0);
	cr_expect_eq(count_type(info, FI_EP_MSG), 1);
	cr_expect_eq(count_type(info, FI_EP_RDM), 1);
	for (struct fi_info *i = info; i; i = i->next) {
		if (!ours(i))
			continue;
		cr_expect_eq(i->caps & FI_TAGGED, 0);
		cr_expect_eq(i->caps & (FI_READ | FI_WRITE | FI_REMOTE_READ | FI_REMOTE_WRITE),
			     FI_READ | FI_WRITE | FI_REMOTE_READ | FI_REMOTE_WRITE);
	}
	fi_freeinfo(info);

	/* FI_SOURCE is an RDM capability, granted to who asks (it costs every receive a
	 * lookup): not with the other secondary ones when it was not asked for */
	h->caps = FI_MSG | FI_SOURCE;
	cr_assert_eq(fi_getinfo(FIVER, NULL, NULL, 0, h, &info), 0);
	cr_expect_eq(count_type(info, FI_EP_MSG), 0);
	cr_expect_eq(count_type(info, FI_EP_RDM), 1);
	for (struct fi_info *i = info; i; i = i->next)
		if (ours(i))
			cr_expect(i->caps & i->rx_attr->caps & FI_SOURCE);
	fi_freeinfo(info);
	h->caps = FI_TAGGED;
	cr_assert_eq(fi_getinfo(FIVER, NULL, NULL, 0, h, &info), 0);
	for (struct fi_info *i = info; i; i = i->next) {
		if (!ours(i))
			continue;
		cr_expect_eq(i->caps & FI_SOURCE, 0, "FI_SOURCE granted unasked");
		cr_expect_eq(i->rx_attr->caps & FI_SOURCE, 0);
		cr_expect(i->caps & FI_MULTI_RECV, "the free secondary ones still are");
	}
	fi_freeinfo(info);

	/* what we do not have */
	h->caps = FI_ATOMIC;
	cr_expect_eq(fi_getinfo(FIVER, NULL, NULL, 0, h, &info), -FI_ENODATA);
	h->caps = FI_MSG | FI_MULTICAST;
	cr_expect_eq(fi_getinfo(FIVER, NULL, NULL, 0, h, &info), -FI_ENODATA);
	fi_freeinfo(h);
}

Test(fi_core, getinfo_enodata)
{
	struct fi_info *h = scif_hints(), *info = NULL;

	h->fabric_attr->name = strdup("ethernet");
	cr_expect_eq(fi_getinfo(FIVER, NULL, NULL, 0, h, &info), -FI_ENODATA);
	free(h->fabric_attr->name);
	h->fabric_attr->name = NULL;

	h->domain_attr->data_progress = FI_PROGRESS_AUTO;
	cr_expect_eq(fi_getinfo(FIVER, NULL, NULL, 0, h, &info), -FI_ENODATA);
	h->domain_attr->data_progress = FI_PROGRESS_UNSPEC;

	h->tx_attr->inject_size = 1 << 20;
	cr_expect_eq(fi_getinfo(FIVER, NULL, NULL, 0, h, &info), -FI_ENODATA);
	h->tx_attr->inject_size = 0;

	h->tx_attr->iov_limit = 1000;
	cr_expect_eq(fi_getinfo(FIVER, NULL, NULL, 0, h, &info), -FI_ENODATA);
	h->tx_attr->iov_limit = 0;

	h->ep_attr->max_msg_size = SIZE_MAX;
	cr_expect_eq(fi_getinfo(FIVER, NULL, NULL, 0, h, &info), -FI_ENODATA);
	h->ep_attr->max_msg_size = 0;

	/* FI_SOCKADDR_IN is offered (ofi_rxm needs it), IPv6 and the others are not */
	h->addr_format = FI_SOCKADDR_IN6;
	cr_expect_eq(fi_getinfo(FIVER, NULL, NULL, 0, h, &info), -FI_ENODATA);
	h->addr_format = FI_ADDR_PSMX2;
	cr_expect_eq(fi_getinfo(FIVER, NULL, NULL, 0, h, &info), -FI_ENODATA);
	h->addr_format = FI_FORMAT_UNSPEC;

	cr_expect_eq(fi_getinfo(FIVER, "no-such-host.invalid", "1", 0, h, &info), -FI_ENODATA);
	cr_expect_eq(fi_getinfo(FIVER, "1", "70000", 0, h, &info), -FI_ENODATA);

	/* everything back to normal: matches again */
	cr_assert_eq(fi_getinfo(FIVER, NULL, NULL, 0, h, &info), 0);
	fi_freeinfo(info);
	fi_freeinfo(h);
}

Test(fi_core, getinfo_mr_mode)
{
	struct fi_info *h = scif_hints(), *info = NULL;

	/* a typical application's list: we only require provider keys */
	h->domain_attr->mr_mode = FI_MR_LOCAL | FI_MR_VIRT_ADDR | FI_MR_ALLOCATED |
				  FI_MR_PROV_KEY;
	cr_assert_eq(fi_getinfo(FIVER, NULL, NULL, 0, h, &info), 0);
	cr_expect_eq(info->domain_attr->mr_mode, FI_MR_PROV_KEY);
	fi_freeinfo(info);

	/* cannot take provider keys: no RMA ... */
	h->domain_attr->mr_mode = 0;
	h->caps = FI_MSG;
	cr_assert_eq(fi_getinfo(FIVER, NULL, NULL, 0, h, &info), 0);
	for (struct fi_info *i = info; i; i = i->next) {
		if (!ours(i))
			continue;
		cr_expect_eq(i->caps & FI_RMA, 0);
		cr_expect_eq(i->domain_attr->mr_mode, 0);
	}
	fi_freeinfo(info);
	/* ... and nothing when it asks for RMA */
	h->caps = FI_MSG | FI_RMA;
	cr_expect_eq(fi_getinfo(FIVER, NULL, NULL, 0, h, &info), -FI_ENODATA);

	/* legacy basic mode is granted */
	h->domain_attr->mr_mode = FI_MR_BASIC;
	cr_assert_eq(fi_getinfo(FIVER, NULL, NULL, 0, h, &info), 0);
	cr_expect_eq(info->domain_attr->mr_mode, FI_MR_BASIC);
	fi_freeinfo(info);
	fi_freeinfo(h);
}

Test(fi_core, getinfo_domain_attrs)
{
	struct fi_info *h = scif_hints(), *info = NULL;

	h->domain_attr->threading = FI_THREAD_DOMAIN;
	h->domain_attr->av_type = FI_AV_MAP;
	h->domain_attr->resource_mgmt = FI_RM_DISABLED;
	h->ep_attr->type = FI_EP_RDM;
	h->ep_attr->mem_tag_format = 0x0000FFFFFFFFFFFFULL;
	h->tx_attr->size = 1000;
	cr_assert_eq(fi_getinfo(FIVER, NULL, NULL, 0, h, &info), 0);
	cr_expect_eq(info->domain_attr->threading, FI_THREAD_DOMAIN);
	cr_expect_eq(info->domain_attr->av_type, FI_AV_MAP);
	cr_expect_eq(info->domain_attr->resource_mgmt, FI_RM_DISABLED);
	cr_expect_eq(info->ep_attr->mem_tag_format, 0x0000FFFFFFFFFFFFULL);
	cr_expect_eq(info->tx_attr->size, 1000);
	fi_freeinfo(info);
	/* every threading level is granted (we are FI_THREAD_SAFE) */
	for (int t = FI_THREAD_SAFE; t <= FI_THREAD_ENDPOINT; t++) {
		h->domain_attr->threading = t;
		cr_assert_eq(fi_getinfo(FIVER, NULL, NULL, 0, h, &info), 0, "threading %d", t);
		cr_expect_eq(info->domain_attr->threading, t);
		fi_freeinfo(info);
	}
	fi_freeinfo(h);
}

Test(fi_core, getinfo_addresses)
{
	struct fi_info *h = scif_hints(), *info = NULL;
	struct scif_fi_addr *a;

	/* node and service: the destination */
	cr_assert_eq(fi_getinfo(FIVER, "1", "4242", 0, h, &info), 0);
	cr_assert_not_null(info->dest_addr);
	cr_assert_eq(info->dest_addrlen, sizeof(*a));
	a = info->dest_addr;
	cr_expect_eq(a->node, 1);
	cr_expect_eq(a->port, 4242);
	cr_expect_eq(a->magic, ADDR_MAGIC);
	fi_freeinfo(info);

	/* the loopback name of a peer is the host, node 0 */
	cr_assert_eq(fi_getinfo(FIVER, "127.0.0.1", "5000", 0, h, &info), 0);
	a = info->dest_addr;
	cr_expect_eq(a->node, 0);
	cr_expect_eq(a->port, 5000);
	fi_freeinfo(info);

	/* the URI form */
	cr_assert_eq(fi_getinfo(FIVER, "fi_scif://2:17", NULL, 0, h, &info), 0);
	a = info->dest_addr;
	cr_expect_eq(a->node, 2);
	cr_expect_eq(a->port, 17);
	fi_freeinfo(info);

	/* FI_SOURCE: node/service are the local address */
	cr_assert_eq(fi_getinfo(FIVER, NULL, "99", FI_SOURCE, h, &info), 0);
	cr_assert_not_null(info->src_addr);
	a = info->src_addr;
	cr_expect_eq(a->node, 0);
	cr_expect_eq(a->port, 99);
	cr_expect_null(info->dest_addr);
	fi_freeinfo(info);
	cr_assert_eq(fi_getinfo(FIVER, "localhost", "98", FI_SOURCE, h, &info), 0);
	a = info->src_addr;
	cr_expect_eq(a->port, 98);
	fi_freeinfo(info);

	/* a string address format */
	h->addr_format = FI_ADDR_STR;
	cr_assert_eq(fi_getinfo(FIVER, "1", "77", 0, h, &info), 0);
	cr_expect_eq(info->addr_format, FI_ADDR_STR);
	cr_expect_str_eq((char *)info->dest_addr, "fi_scif://1:77");
	cr_expect_eq(info->dest_addrlen, strlen("fi_scif://1:77") + 1);
	fi_freeinfo(info);

	/* hints carrying a raw destination */
	struct scif_fi_addr d = { .node = 3, .port = 33, .magic = ADDR_MAGIC };

	h->addr_format = FI_FORMAT_UNSPEC;
	h->dest_addr = malloc(sizeof(d));
	memcpy(h->dest_addr, &d, sizeof(d));
	h->dest_addrlen = sizeof(d);
	cr_assert_eq(fi_getinfo(FIVER, NULL, NULL, 0, h, &info), 0);
	a = info->dest_addr;
	cr_expect_eq(a->node, 3);
	cr_expect_eq(a->port, 33);
	fi_freeinfo(info);
	/* ... and garbage instead */
	((struct scif_fi_addr *)h->dest_addr)->magic = 0x1234;
	cr_expect_eq(fi_getinfo(FIVER, NULL, NULL, 0, h, &info), -FI_ENODATA);
	fi_freeinfo(h);
}

Test(fi_core, provider_variable)
{
	struct fi_info *h = scif_hints(), *info = NULL;

	setenv("FI_SCIF_INJECT_SIZE", "32", 1);
	setenv("FI_SCIF_TX_SIZE", "77", 1);
	cr_assert_eq(fi_getinfo(FIVER, NULL, NULL, 0, h, &info), 0);
	cr_expect_eq(info->tx_attr->inject_size, 32);
	cr_expect_eq(info->tx_attr->size, 77);
	fi_freeinfo(info);
	fi_freeinfo(h);
}

/* ------------------------------------------------------------------------------------ */
/* Objects. */

struct objs {
	struct fi_info *info;
	struct fid_fabric *fabric;
	struct fid_domain *domain;
};

static void open_objs(struct objs *o, enum fi_ep_type type)
{
	struct fi_info *h = scif_hints();
	int ret;

	h->ep_attr->type = type;
	ret = fi_getinfo(FIVER, NULL, NULL, 0, h, &o->info);
	cr_assert_eq(ret, 0, "fi_getinfo: %s", fi_strerror(-ret));
	fi_freeinfo(h);
	ret = fi_fabric(o->info->fabric_attr, &o->fabric, NULL);
	cr_assert_eq(ret, 0, "fi_fabric: %s", fi_strerror(-ret));
	ret = fi_domain(o->fabric, o->info, &o->domain, NULL);
	cr_assert_eq(ret, 0, "fi_domain: %s", fi_strerror(-ret));
}

static void close_objs(struct objs *o)
{
	cr_expect_eq(fi_close(&o->domain->fid), 0);
	cr_expect_eq(fi_close(&o->fabric->fid), 0);
	fi_freeinfo(o->info);
}

Test(fi_core, fabric_domain_open_close)
{
	struct objs o;

	open_objs(&o, FI_EP_RDM);
	/* a fabric with a domain open is busy */
	cr_expect_eq(fi_close(&o.fabric->fid), -FI_EBUSY);
	/* not offered */
	struct fid_poll *ps;
	struct fi_poll_attr pa = { 0 };

	cr_expect_eq(fi_poll_open(o.domain, &pa, &ps), -FI_ENOSYS);
	cr_expect_eq(fi_query_atomic(o.domain, FI_INT32, FI_SUM, &(struct fi_atomic_attr){ 0 },
				     0), -FI_EOPNOTSUPP);
	close_objs(&o);
}

Test(fi_core, cq_empty_and_timeout)
{
	struct objs o;
	struct fid_cq *cq;
	struct fi_cq_attr attr = { .format = FI_CQ_FORMAT_TAGGED, .wait_obj = FI_WAIT_FD };
	struct fi_cq_tagged_entry ent;
	struct fi_cq_err_entry err = { 0 };
	int fd = -1;
	enum fi_wait_obj wobj = FI_WAIT_NONE;

	open_objs(&o, FI_EP_RDM);
	cr_assert_eq(fi_cq_open(o.domain, &attr, &cq, NULL), 0);
	cr_expect_eq(fi_cq_read(cq, &ent, 1), -FI_EAGAIN);
	cr_expect_eq(fi_cq_readerr(cq, &err, 0), -FI_EAGAIN);
	cr_expect_eq(fi_control(&cq->fid, FI_GETWAIT, &fd), 0);
	cr_expect_geq(fd, 0);
	cr_expect_eq(fi_control(&cq->fid, FI_GETWAITOBJ, &wobj), 0);
	cr_expect_eq(wobj, FI_WAIT_FD);

	/* nothing to read: safe to block; the descriptor is not readable */
	struct fid *f = &cq->fid;

	cr_expect_eq(fi_trywait(o.fabric, &f, 1), 0);
	struct pollfd p = { .fd = fd, .events = POLLIN };

	cr_expect_eq(poll(&p, 1, 0), 0);

	uint64_t t0 = now_ms();

	cr_expect_eq(fi_cq_sread(cq, &ent, 1, NULL, 200), -FI_EAGAIN);
	uint64_t dt = now_ms() - t0;

	cr_expect_geq(dt, 190, "sread returned after %" PRIu64 " ms", dt);
	cr_expect_lt(dt, 5000);
	/* the domain is busy while the CQ exists */
	cr_expect_eq(fi_close(&o.domain->fid), -FI_EBUSY);
	cr_expect_eq(fi_close(&cq->fid), 0);
	close_objs(&o);
}

struct signal_arg {
	struct fid_cq *cq;
	ssize_t ret;
	uint64_t elapsed;
};

static void *sread_thread(void *p)
{
	struct signal_arg *a = p;
	struct fi_cq_entry ent;
	uint64_t t0 = now_ms();

	a->ret = fi_cq_sread(a->cq, &ent, 1, NULL, 10000);
	a->elapsed = now_ms() - t0;
	return NULL;
}

Test(fi_core, cq_signal_wakes_sread)
{
	struct objs o;
	struct fid_cq *cq;
	struct fi_cq_attr attr = { .format = FI_CQ_FORMAT_CONTEXT, .wait_obj = FI_WAIT_UNSPEC };
	struct signal_arg a = { 0 };
	pthread_t th;

	open_objs(&o, FI_EP_MSG);
	cr_assert_eq(fi_cq_open(o.domain, &attr, &cq, NULL), 0);
	a.cq = cq;
	cr_assert_eq(pthread_create(&th, NULL, sread_thread, &a), 0);
	usleep(200 * 1000);
	cr_expect_eq(fi_cq_signal(cq), 0);
	pthread_join(th, NULL);
	cr_expect_eq(a.ret, -FI_EAGAIN);
	cr_expect_lt(a.elapsed, 5000, "woken after %" PRIu64 " ms", a.elapsed);
	cr_expect_geq(a.elapsed, 150);
	cr_expect_eq(fi_close(&cq->fid), 0);
	close_objs(&o);
}

Test(fi_core, cq_attrs)
{
	struct objs o;
	struct fid_cq *cq;
	struct fi_cq_attr attr = { 0 };

	open_objs(&o, FI_EP_RDM);
	/* every format, and no wait object */
	for (int f = FI_CQ_FORMAT_UNSPEC; f <= FI_CQ_FORMAT_TAGGED; f++) {
		attr.format = f;
		attr.wait_obj = FI_WAIT_NONE;
		cr_assert_eq(fi_cq_open(o.domain, &attr, &cq, NULL), 0, "format %d", f);
		int fd;

		cr_expect_eq(fi_control(&cq->fid, FI_GETWAIT, &fd), -FI_ENODATA);
		cr_expect_eq(fi_close(&cq->fid), 0);
	}
	attr.format = FI_CQ_FORMAT_CONTEXT;
	attr.wait_obj = FI_WAIT_MUTEX_COND;
	cr_expect_eq(fi_cq_open(o.domain, &attr, &cq, NULL), -FI_ENOSYS);
	close_objs(&o);
}

Test(fi_core, wait_set_and_trywait)
{
	struct objs o;
	struct fid_wait *ws;
	struct fi_wait_attr wa = { .wait_obj = FI_WAIT_FD };
	struct fid_cq *cq;
	struct fid_cntr *cntr;
	struct fi_cq_attr attr = { .format = FI_CQ_FORMAT_CONTEXT, .wait_obj = FI_WAIT_SET };
	struct fi_cntr_attr ca = { .events = FI_CNTR_EVENTS_COMP, .wait_obj = FI_WAIT_SET };
	int fd = -1;

	open_objs(&o, FI_EP_RDM);
	cr_assert_eq(fi_wait_open(o.fabric, &wa, &ws), 0);
	cr_expect_eq(fi_control(&ws->fid, FI_GETWAIT, &fd), 0);
	cr_expect_geq(fd, 0);
	attr.wait_set = ws;
	ca.wait_set = ws;
	cr_assert_eq(fi_cq_open(o.domain, &attr, &cq, NULL), 0);
	cr_assert_eq(fi_cntr_open(o.domain, &ca, &cntr, NULL), 0);
	/* in use */
	cr_expect_eq(fi_close(&ws->fid), -FI_EBUSY);

	uint64_t t0 = now_ms();

	cr_expect_eq(fi_wait(ws, 100), -FI_ETIMEDOUT);
	cr_expect_geq(now_ms() - t0, 90);
	struct fid *f = &ws->fid;

	cr_expect_eq(fi_trywait(o.fabric, &f, 1), 0);

	cr_expect_eq(fi_close(&cq->fid), 0);
	cr_expect_eq(fi_close(&cntr->fid), 0);
	cr_expect_eq(fi_close(&ws->fid), 0);
	close_objs(&o);
}

/* ------------------------------------------------------------------------------------ */
/* Event queues. */

Test(fi_core, eq_write_read)
{
	struct objs o;
	struct fid_eq *eq;
	struct fi_eq_attr attr = { .wait_obj = FI_WAIT_FD };
	struct fi_eq_entry in = { .fid = NULL, .context = (void *)0x1234, .data = 42 }, out;
	uint32_t event = 0;
	int fd = -1;

	open_objs(&o, FI_EP_MSG);
	cr_assert_eq(fi_eq_open(o.fabric, &attr, &eq, NULL), 0);
	cr_expect_eq(fi_control(&eq->fid, FI_GETWAIT, &fd), 0);
	cr_expect_geq(fd, 0);
	cr_expect_eq(fi_eq_read(eq, &event, &out, sizeof(out), 0), -FI_EAGAIN);
	cr_expect_eq(fi_eq_write(eq, FI_NOTIFY, &in, sizeof(in), 0), (ssize_t)sizeof(in));
	cr_expect_eq(fi_eq_write(eq, FI_MR_COMPLETE, &in, sizeof(in), 0), (ssize_t)sizeof(in));

	/* the descriptor says something is there */
	struct pollfd p = { .fd = fd, .events = POLLIN };

	cr_expect_eq(poll(&p, 1, 1000), 1);

	/* too small a buffer */
	cr_expect_eq(fi_eq_read(eq, &event, &out, sizeof(out) - 1, 0), -FI_ETOOSMALL);
	/* peek leaves it there */
	memset(&out, 0, sizeof(out));
	cr_expect_eq(fi_eq_read(eq, &event, &out, sizeof(out), FI_PEEK), (ssize_t)sizeof(out));
	cr_expect_eq(event, FI_NOTIFY);
	cr_expect_eq(out.data, 42);
	memset(&out, 0, sizeof(out));
	cr_expect_eq(fi_eq_read(eq, &event, &out, sizeof(out), 0), (ssize_t)sizeof(out));
	cr_expect_eq(event, FI_NOTIFY);
	cr_expect_eq(out.context, (void *)0x1234);
	cr_expect_eq(fi_eq_sread(eq, &event, &out, sizeof(out), 1000, 0), (ssize_t)sizeof(out));
	cr_expect_eq(event, FI_MR_COMPLETE);
	cr_expect_eq(fi_eq_read(eq, &event, &out, sizeof(out), 0), -FI_EAGAIN);

	uint64_t t0 = now_ms();

	cr_expect_eq(fi_eq_sread(eq, &event, &out, sizeof(out), 150, 0), -FI_EAGAIN);
	cr_expect_geq(now_ms() - t0, 140);
	struct fi_eq_err_entry err = { 0 };

	cr_expect_eq(fi_eq_readerr(eq, &err, 0), -FI_EAGAIN);
	cr_expect_eq(fi_close(&eq->fid), 0);
	close_objs(&o);
}

struct eq_arg {
	struct fid_eq *eq;
	ssize_t ret;
	uint32_t event;
};

static void *eq_sread_thread(void *p)
{
	struct eq_arg *a = p;
	struct fi_eq_entry out;

	a->ret = fi_eq_sread(a->eq, &a->event, &out, sizeof(out), 10000, 0);
	return NULL;
}

Test(fi_core, eq_write_wakes_sread)
{
	struct objs o;
	struct fid_eq *eq;
	struct fi_eq_attr attr = { .wait_obj = FI_WAIT_UNSPEC };
	struct fi_eq_entry in = { .data = 7 };
	struct eq_arg a = { 0 };
	pthread_t th;

	open_objs(&o, FI_EP_MSG);
	cr_assert_eq(fi_eq_open(o.fabric, &attr, &eq, NULL), 0);
	a.eq = eq;
	cr_assert_eq(pthread_create(&th, NULL, eq_sread_thread, &a), 0);
	usleep(100 * 1000);
	cr_expect_eq(fi_eq_write(eq, FI_NOTIFY, &in, sizeof(in), 0), (ssize_t)sizeof(in));
	pthread_join(th, NULL);
	cr_expect_eq(a.ret, (ssize_t)sizeof(in));
	cr_expect_eq(a.event, FI_NOTIFY);
	cr_expect_eq(fi_close(&eq->fid), 0);
	close_objs(&o);
}

/* ------------------------------------------------------------------------------------ */
/* Address vectors. */

Test(fi_core, av_table)
{
	struct objs o;
	struct fid_av *av;
	struct fi_av_attr attr = { .type = FI_AV_TABLE, .count = 2 };
	struct scif_fi_addr in[3] = {
		{ .node = 0, .port = 100, .magic = ADDR_MAGIC },
		{ .node = 1, .port = 200, .magic = 0xdeadbeef },  /* not a scif address */
		{ .node = 2, .port = 300, .magic = ADDR_MAGIC },
	};
	fi_addr_t fa[3];
	int errs[3] = { -1, -1, -1 };
	struct scif_fi_addr out;
	size_t len;
	char buf[64];

	open_objs(&o, FI_EP_RDM);
	cr_assert_eq(fi_av_open(o.domain, &attr, &av, NULL), 0);
	cr_expect_eq(fi_av_insert(av, in, 3, fa, 0, NULL), 2);
	cr_expect_eq(fa[0], 0);
	cr_expect_eq(fa[1], FI_ADDR_NOTAVAIL);
	cr_expect_eq(fa[2], 1);
	/* the same with per-entry errors */
	cr_expect_eq(fi_av_insert(av, in, 3, fa, FI_SYNC_ERR, errs), 2);
	cr_expect_eq(errs[0], 0);
	cr_expect_neq(errs[1], 0);
	cr_expect_eq(errs[2], 0);
	cr_expect_eq(fa[1], FI_ADDR_NOTAVAIL);
	cr_expect_eq(fa[2], 3);
	cr_expect_eq(fi_av_insert(av, in, 1, fa, 1ULL << 40, NULL), -FI_EBADFLAGS);

	len = sizeof(out);
	cr_expect_eq(fi_av_lookup(av, 1, &out, &len), 0);
	cr_expect_eq(len, sizeof(out));
	cr_expect_eq(out.node, 2);
	cr_expect_eq(out.port, 300);
	/* a short buffer: truncated, the full size reported */
	len = 2;
	memset(&out, 0, sizeof(out));
	cr_expect_eq(fi_av_lookup(av, 1, &out, &len), 0);
	cr_expect_eq(len, sizeof(out));
	cr_expect_eq(out.node, 2);
	cr_expect_eq(out.port, 0);

	len = sizeof(buf);
	cr_expect_str_eq(fi_av_straddr(av, &in[2], buf, &len), "fi_scif://2:300");
	cr_expect_eq(len, strlen("fi_scif://2:300") + 1);

	fi_addr_t rm = 1;

	cr_expect_eq(fi_av_remove(av, &rm, 1, 0), 0);
	len = sizeof(out);
	cr_expect_eq(fi_av_lookup(av, 1, &out, &len), -FI_EINVAL);
	cr_expect_eq(fi_av_lookup(av, 999, &out, &len), -FI_EINVAL);
	cr_expect_eq(fi_av_remove(av, &rm, 1, 0), -FI_EINVAL);
	/* other entries keep their index */
	cr_expect_eq(fi_av_lookup(av, 3, &out, &len), 0);
	cr_expect_eq(out.node, 2);

	/* by name */
	fi_addr_t s;

	cr_expect_eq(fi_av_insertsvc(av, "1", "42", &s, 0, NULL), 1);
	cr_expect_eq(fi_av_lookup(av, s, &out, &len), 0);
	cr_expect_eq(out.node, 1);
	cr_expect_eq(out.port, 42);
	cr_expect_eq(fi_av_insertsvc(av, "fi_scif://3:9", NULL, &s, 0, NULL), 1);
	cr_expect_eq(fi_av_lookup(av, s, &out, &len), 0);
	cr_expect_eq(out.node, 3);
	cr_expect_eq(out.port, 9);
	cr_expect_eq(fi_av_insertsvc(av, "bogus.invalid", "1", &s, 0, NULL), 0);
	cr_expect_eq(s, FI_ADDR_NOTAVAIL);

	fi_addr_t sym[6];

	cr_expect_eq(fi_av_insertsym(av, "1", 2, "10", 3, sym, 0, NULL), 6);
	cr_expect_eq(fi_av_lookup(av, sym[5], &out, &len), 0);
	cr_expect_eq(out.node, 2);
	cr_expect_eq(out.port, 12);

	cr_expect_eq(fi_close(&av->fid), 0);
	close_objs(&o);
}

Test(fi_core, av_map)
{
	struct objs o;
	struct fid_av *av;
	struct fi_av_attr attr = { .type = FI_AV_MAP };
	struct scif_fi_addr in = { .node = 5, .port = 0x1234, .magic = ADDR_MAGIC }, out;
	fi_addr_t fa;
	size_t len = sizeof(out);

	open_objs(&o, FI_EP_RDM);
	cr_assert_eq(fi_av_open(o.domain, &attr, &av, NULL), 0);
	cr_expect_eq(fi_av_insert(av, &in, 1, &fa, 0, NULL), 1);
	cr_expect_eq(fa, ((fi_addr_t)5 << 16) | 0x1234);
	cr_expect_eq(fi_av_lookup(av, fa, &out, &len), 0);
	cr_expect_eq(out.node, 5);
	cr_expect_eq(out.port, 0x1234);
	cr_expect_eq(fi_close(&av->fid), 0);
	close_objs(&o);
}

Test(fi_core, av_async_event)
{
	struct objs o;
	struct fid_av *av;
	struct fid_eq *eq;
	struct fi_av_attr attr = { .type = FI_AV_TABLE, .flags = FI_EVENT };
	struct fi_eq_attr eattr = { .wait_obj = FI_WAIT_NONE };
	struct scif_fi_addr in[2] = {
		{ .node = 0, .port = 1, .magic = ADDR_MAGIC },
		{ .node = 0, .port = 2, .magic = ADDR_MAGIC },
	};
	fi_addr_t fa[2];
	struct fi_eq_entry ev;
	uint32_t event;

	open_objs(&o, FI_EP_RDM);
	cr_assert_eq(fi_eq_open(o.fabric, &eattr, &eq, NULL), 0);
	cr_assert_eq(fi_av_open(o.domain, &attr, &av, NULL), 0);
	cr_expect_eq(fi_av_insert(av, in, 2, fa, 0, NULL), -FI_ENOEQ);
	cr_assert_eq(fi_av_bind(av, &eq->fid, 0), 0);
	cr_expect_eq(fi_av_insert(av, in, 2, fa, 0, (void *)0x77), 0);
	cr_expect_eq(fi_eq_read(eq, &event, &ev, sizeof(ev), 0), (ssize_t)sizeof(ev));
	cr_expect_eq(event, FI_AV_COMPLETE);
	cr_expect_eq(ev.data, 2);
	cr_expect_eq(ev.context, (void *)0x77);
	cr_expect_eq(ev.fid, &av->fid);
	cr_expect_eq(fi_close(&eq->fid), -FI_EBUSY);
	cr_expect_eq(fi_close(&av->fid), 0);
	cr_expect_eq(fi_close(&eq->fid), 0);
	close_objs(&o);
}

/* ------------------------------------------------------------------------------------ */
/* Counters. */

struct cntr_arg {
	struct fid_cntr *cntr;
};

static void *cntr_adder(void *p)
{
	struct cntr_arg *a = p;

	usleep(100 * 1000);
	fi_cntr_add(a->cntr, 5);
	return NULL;
}

Test(fi_core, counters)
{
	struct objs o;
	struct fid_cntr *c;
	struct fi_cntr_attr attr = { .events = FI_CNTR_EVENTS_COMP, .wait_obj = FI_WAIT_UNSPEC };
	int fd = -1;

	open_objs(&o, FI_EP_RDM);
	cr_assert_eq(fi_cntr_open(o.domain, &attr, &c, NULL), 0);
	cr_expect_eq(fi_control(&c->fid, FI_GETWAIT, &fd), 0);
	cr_expect_geq(fd, 0);
	cr_expect_eq(fi_cntr_read(c), 0);
	cr_expect_eq(fi_cntr_add(c, 3), 0);
	cr_expect_eq(fi_cntr_read(c), 3);
	cr_expect_eq(fi_cntr_set(c, 10), 0);
	cr_expect_eq(fi_cntr_read(c), 10);
	cr_expect_eq(fi_cntr_adderr(c, 2), 0);
	cr_expect_eq(fi_cntr_readerr(c), 2);
	cr_expect_eq(fi_cntr_seterr(c, 0), 0);
	cr_expect_eq(fi_cntr_readerr(c), 0);

	cr_expect_eq(fi_cntr_wait(c, 10, 1000), 0);
	uint64_t t0 = now_ms();

	cr_expect_eq(fi_cntr_wait(c, 11, 150), -FI_ETIMEDOUT);
	cr_expect_geq(now_ms() - t0, 140);

	/* woken by another thread's increment */
	struct cntr_arg a = { .cntr = c };
	pthread_t th;

	cr_assert_eq(pthread_create(&th, NULL, cntr_adder, &a), 0);
	t0 = now_ms();
	cr_expect_eq(fi_cntr_wait(c, 15, 10000), 0);
	cr_expect_lt(now_ms() - t0, 5000);
	pthread_join(th, NULL);
	cr_expect_eq(fi_cntr_read(c), 15);

	struct fi_cntr_attr bad = { .events = 42 };
	struct fid_cntr *c2;

	cr_expect_eq(fi_cntr_open(o.domain, &bad, &c2, NULL), -FI_ENOSYS);
	cr_expect_eq(fi_close(&c->fid), 0);
	close_objs(&o);
}

/* ------------------------------------------------------------------------------------ */
/* Memory regions. */

Test(fi_core, mr_keys)
{
	struct objs o;
	struct fid_mr *r1, *r2, *loc;
	long ps = sysconf(_SC_PAGESIZE);
	char *buf = aligned_alloc((size_t)ps, (size_t)ps * 8);

	cr_assert_not_null(buf);
	open_objs(&o, FI_EP_RDM);
	/* a remote region that starts inside a page */
	cr_assert_eq(fi_mr_reg(o.domain, buf + 100, 5000, FI_REMOTE_READ | FI_REMOTE_WRITE, 0,
			       0, 0, &r1, NULL), 0);
	cr_assert_eq(fi_mr_reg(o.domain, buf + 3 * ps, (size_t)ps, FI_REMOTE_WRITE, 0, 0, 0, &r2,
			       NULL), 0);
	cr_assert_eq(fi_mr_reg(o.domain, buf, 64, FI_SEND | FI_RECV, 0, 0, 0, &loc, NULL), 0);
	uint64_t k1 = fi_mr_key(r1), k2 = fi_mr_key(r2), k3 = fi_mr_key(loc);

	cr_expect_not_null(fi_mr_desc(r1));
	/* key = SCIF offset of the region's first byte: page aligned + in-page offset */
	cr_expect_eq(k1 % (uint64_t)ps, 100);
	cr_expect_eq(k2 % (uint64_t)ps, 0);
	/* the regions do not touch: at least one page between them */
	uint64_t end1 = (k1 - 100) + 2 * (uint64_t)ps; /* 100 + 5000 bytes: 2 pages */

	cr_expect_geq(k2, end1 + (uint64_t)ps, "k1 %#" PRIx64 " k2 %#" PRIx64, k1, k2);
	cr_expect_neq(k3, k1);
	cr_expect_neq(k3, k2);
	/* bad arguments */
	struct fid_mr *bad;

	cr_expect_eq(fi_mr_reg(o.domain, buf, 64, 1ULL << 60, 0, 0, 0, &bad, NULL), -FI_EINVAL);
	cr_expect_eq(fi_close(&o.domain->fid), -FI_EBUSY);
	cr_expect_eq(fi_close(&r1->fid), 0);
	cr_expect_eq(fi_close(&r2->fid), 0);
	cr_expect_eq(fi_close(&loc->fid), 0);

	struct iovec iov = { .iov_base = buf, .iov_len = 128 };
	struct fi_mr_attr ma = { .mr_iov = &iov, .iov_count = 1, .access = FI_REMOTE_READ };

	cr_expect_eq(fi_mr_regattr(o.domain, &ma, 0, &r1), 0);
	cr_expect_eq(fi_mr_key(r1) % (uint64_t)ps, 0);
	cr_expect_eq(fi_close(&r1->fid), 0);
	close_objs(&o);
	free(buf);
}

/* ------------------------------------------------------------------------------------ */
/* fi_info(1) finds the provider through FI_PROVIDER_PATH. */

/* whether @p s occurs in the first @p len bytes of @p out (fi_info may print NULs) */
static bool has(const char *out, size_t len, const char *s)
{
	return memmem(out, len, s, strlen(s)) != NULL;
}

/*
 * In a sanitizer build the provider is instrumented and fi_info is not: the ASan runtime
 * must then be loaded first, so the command gets this process's runtime in LD_PRELOAD (and
 * LeakSanitizer off: libfabric's own leaks at exit are not ours).
 */
static void preload_sanitizer(void)
{
	FILE *m = fopen("/proc/self/maps", "r");
	char line[4096];

	if (!m)
		return;
	while (fgets(line, sizeof(line), m)) {
		char *path = strchr(line, '/');

		if (path && strstr(path, "/libasan.so")) {
			path[strcspn(path, "\n")] = '\0';
			setenv("LD_PRELOAD", path, 1);
			setenv("ASAN_OPTIONS", "detect_leaks=0", 1);
			break;
		}
	}
	fclose(m);
}

static char *run(const char *cmd, size_t *outlen)
{
	FILE *p;

	preload_sanitizer();
	p = popen(cmd, "r");
	size_t cap = 1 << 16, len = 0, n;
	char *out = malloc(cap);

	unsetenv("LD_PRELOAD");
	cr_assert_not_null(p);
	cr_assert_not_null(out);
	while ((n = fread(out + len, 1, cap - 1 - len, p)) > 0) {
		len += n;
		if (len == cap - 1) {
			cap *= 2;
			out = realloc(out, cap);
			cr_assert_not_null(out);
		}
	}
	out[len] = '\0';
	*outlen = len;
	int st = pclose(p);

	cr_expect_eq(st, 0, "%s exited with status %d", cmd, st);
	return out;
}

Test(fi_core, fi_info_tool)
{
	char *out;
	size_t len;

	cr_assert_not_null(getenv("FI_PROVIDER_PATH"), "FI_PROVIDER_PATH must be set");
	out = run("fi_info -p scif 2>&1", &len);
	cr_expect(has(out, len, "fabric: scif"), "output: %s", out);
	cr_expect(has(out, len, "FI_EP_RDM"), "output: %s", out);
	cr_expect(has(out, len, "FI_EP_MSG"), "output: %s", out);
	free(out);
	out = run("fi_info -p scif -e 2>&1", &len);
	cr_expect(has(out, len, "FI_SCIF_EAGER_MAX"));
	cr_expect(has(out, len, "FI_SCIF_INJECT_SIZE"));
	cr_expect(has(out, len, "FI_SCIF_CONN_TIMEOUT"));
	free(out);
}

/* ------------------------------------------------------------------------------------ */
/* White box: the provider's internals that only endpoints reach (completion writing, the
 * completion helpers and bindings, regions on SCIF connections). This program links the
 * core sources itself; these objects are made by those copies, never by libfabric. */

#include "common.h"
#include "sfi.h"

/* The RDM endpoint's constructor lives in sfi_rdm.c, which this program does not link. */
int sfi_rdm_ep_open(struct fid_domain *domain, struct fi_info *info, struct fid_ep **ep,
		    void *context)
{
	(void)domain; (void)info; (void)ep; (void)context;
	return -FI_ENOSYS;
}

struct wb {
	struct fid_fabric *fabric;
	struct fid_domain *domain;
	struct sfi_domain *d;
};

static void wb_open(struct wb *w, uint64_t mr_mode)
{
	struct fi_fabric_attr fa = { .name = (char *)"scif", .api_version = FIVER };
	struct fi_domain_attr da = { .mr_mode = (int)mr_mode };
	struct fi_info info = { .domain_attr = &da };

	cr_assert_eq(sfi_fabric_open(&fa, &w->fabric, NULL), 0);
	cr_assert_eq(sfi_domain_open(w->fabric, &info, &w->domain, NULL), 0);
	w->d = sfi_container_of(w->domain, struct sfi_domain, domain_fid);
}

static void wb_close(struct wb *w)
{
	cr_expect_eq(fi_close(&w->domain->fid), 0);
	cr_expect_eq(fi_close(&w->fabric->fid), 0);
}

static struct sfi_cq *wb_cq(struct wb *w, enum fi_cq_format fmt, size_t size,
			    enum fi_wait_obj wobj)
{
	struct fi_cq_attr attr = { .format = fmt, .size = size, .wait_obj = wobj };
	struct fid_cq *cq;

	cr_assert_eq(sfi_cq_open(w->domain, &attr, &cq, NULL), 0);
	return sfi_container_of(cq, struct sfi_cq, cq_fid);
}

Test(core_internal, cq_order_errors_formats, .timeout = 30)
{
	struct wb w;
	struct sfi_cq *cq;
	struct fi_cq_tagged_entry t[4];
	struct fi_cq_err_entry err;
	fi_addr_t src[4];

	wb_open(&w, FI_MR_PROV_KEY);
	cq = wb_cq(&w, FI_CQ_FORMAT_TAGGED, 0, FI_WAIT_NONE);
	cr_expect_eq(sfi_cq_write(cq, (void *)1, FI_RECV | FI_TAGGED, 10, (void *)0x100, 5, 77, 3),
		     0);
	cr_expect_eq(sfi_cq_write(cq, (void *)2, FI_SEND | FI_MSG, 0, NULL, 0, 0, 4), 0);
	struct fi_cq_err_entry e = { .op_context = (void *)3, .flags = FI_RECV, .err = FI_ETRUNC,
				     .olen = 9, .len = 4 };

	cr_expect_eq(sfi_cq_write_err(cq, &e), 0);
	cr_expect_eq(sfi_cq_write(cq, (void *)4, FI_SEND, 0, NULL, 0, 0, FI_ADDR_NOTAVAIL), 0);

	/* the two before the error come out, then the error blocks the queue */
	cr_assert_eq(fi_cq_readfrom(&cq->cq_fid, t, 4, src), 2);
	cr_expect_eq(t[0].op_context, (void *)1);
	cr_expect_eq(t[0].flags, FI_RECV | FI_TAGGED);
	cr_expect_eq(t[0].len, 10);
	cr_expect_eq(t[0].buf, (void *)0x100);
	cr_expect_eq(t[0].data, 5);
	cr_expect_eq(t[0].tag, 77);
	cr_expect_eq(src[0], 3);
	cr_expect_eq(src[1], 4);
	cr_expect_eq(fi_cq_read(&cq->cq_fid, t, 4), -FI_EAVAIL);
	/* err_data_size 0: the provider's buffer (none here) */
	memset(&err, 0xff, sizeof(err));
	err.err_data_size = 0;
	cr_assert_eq(fi_cq_readerr(&cq->cq_fid, &err, 0), 1);
	cr_expect_eq(err.op_context, (void *)3);
	cr_expect_eq(err.err, FI_ETRUNC);
	cr_expect_eq(err.olen, 9);
	cr_expect_eq(err.err_data_size, 0);
	cr_expect_eq(fi_cq_readerr(&cq->cq_fid, &err, 0), -FI_EAGAIN);
	cr_assert_eq(fi_cq_read(&cq->cq_fid, t, 4), 1);
	cr_expect_eq(t[0].op_context, (void *)4);
	cr_expect_eq(fi_cq_read(&cq->cq_fid, t, 4), -FI_EAGAIN);
	cr_expect_eq(fi_close(&cq->cq_fid.fid), 0);

	/* a context-format CQ hands out only op_context, packed */
	cq = wb_cq(&w, FI_CQ_FORMAT_CONTEXT, 0, FI_WAIT_NONE);
	struct fi_cq_entry c[3];

	for (uintptr_t i = 1; i <= 3; i++)
		sfi_cq_write(cq, (void *)i, FI_SEND, 1, NULL, 0, 0, FI_ADDR_NOTAVAIL);
	cr_assert_eq(fi_cq_read(&cq->cq_fid, c, 3), 3);
	for (uintptr_t i = 0; i < 3; i++)
		cr_expect_eq(c[i].op_context, (void *)(i + 1));
	cr_expect_eq(fi_close(&cq->cq_fid.fid), 0);

	/* a data-format CQ */
	cq = wb_cq(&w, FI_CQ_FORMAT_DATA, 0, FI_WAIT_NONE);
	struct fi_cq_data_entry de[2];

	sfi_cq_write(cq, (void *)9, FI_RECV | FI_REMOTE_CQ_DATA, 3, NULL, 0xabc, 0, 0);
	cr_assert_eq(fi_cq_read(&cq->cq_fid, de, 2), 1);
	cr_expect_eq(de[0].data, 0xabc);
	cr_expect_eq(de[0].len, 3);
	cr_expect_eq(fi_close(&cq->cq_fid.fid), 0);
	wb_close(&w);
}

Test(core_internal, cq_grows, .timeout = 30)
{
	struct wb w;
	struct sfi_cq *cq;
	struct fi_cq_msg_entry m[64];
	uintptr_t next = 0;

	wb_open(&w, FI_MR_PROV_KEY);
	cq = wb_cq(&w, FI_CQ_FORMAT_MSG, 16, FI_WAIT_FD);
	/* interleave reads and writes so the ring wraps before it grows */
	for (uintptr_t i = 0; i < 10; i++)
		sfi_cq_write(cq, (void *)i, FI_SEND, i, NULL, 0, 0, FI_ADDR_NOTAVAIL);
	cr_assert_eq(fi_cq_read(&cq->cq_fid, m, 5), 5);
	for (; next < 5; next++)
		cr_expect_eq(m[next].op_context, (void *)next);
	for (uintptr_t i = 10; i < 5000; i++)
		cr_assert_eq(sfi_cq_write(cq, (void *)i, FI_SEND, i, NULL, 0, 0,
					  FI_ADDR_NOTAVAIL), 0);
	for (;;) {
		ssize_t n = fi_cq_read(&cq->cq_fid, m, 64);

		if (n == -FI_EAGAIN)
			break;
		cr_assert_gt(n, 0);
		for (ssize_t k = 0; k < n; k++, next++) {
			cr_assert_eq(m[k].op_context, (void *)next);
			cr_assert_eq(m[k].len, next);
		}
	}
	cr_expect_eq(next, 5000);
	cr_expect_eq(fi_close(&cq->cq_fid.fid), 0);
	wb_close(&w);
}

Test(core_internal, trywait_and_wait_fd, .timeout = 30)
{
	struct wb w;
	struct sfi_cq *cq;
	struct fid *f;
	int fd = -1;
	struct fi_cq_entry c;

	wb_open(&w, FI_MR_PROV_KEY);
	cq = wb_cq(&w, FI_CQ_FORMAT_CONTEXT, 0, FI_WAIT_FD);
	f = &cq->cq_fid.fid;
	cr_assert_eq(fi_control(f, FI_GETWAIT, &fd), 0);
	cr_expect_eq(fi_trywait(w.fabric, &f, 1), 0);
	sfi_cq_write(cq, (void *)1, FI_SEND, 0, NULL, 0, 0, FI_ADDR_NOTAVAIL);
	/* the descriptor wakes, and trywait says read first */
	struct pollfd p = { .fd = fd, .events = POLLIN };

	cr_expect_eq(poll(&p, 1, 1000), 1);
	cr_expect_eq(fi_trywait(w.fabric, &f, 1), -FI_EAGAIN);
	cr_expect_eq(fi_cq_sread(&cq->cq_fid, &c, 1, NULL, 1000), 1);
	cr_expect_eq(fi_trywait(w.fabric, &f, 1), 0);
	cr_expect_eq(poll(&p, 1, 0), 0, "signal cleared");
	cr_expect_eq(fi_close(f), 0);
	wb_close(&w);
}

Test(core_internal, wait_set_wakes, .timeout = 30)
{
	struct wb w;
	struct fid_wait *ws;
	struct fi_wait_attr wa = { .wait_obj = FI_WAIT_FD };
	struct fid_cq *cqf;

	wb_open(&w, FI_MR_PROV_KEY);
	cr_assert_eq(sfi_wait_open(w.fabric, &wa, &ws), 0);
	struct fi_cq_attr attr = { .format = FI_CQ_FORMAT_CONTEXT, .wait_obj = FI_WAIT_SET,
				   .wait_set = ws };

	cr_assert_eq(sfi_cq_open(w.domain, &attr, &cqf, NULL), 0);
	struct sfi_cq *cq = sfi_container_of(cqf, struct sfi_cq, cq_fid);

	cr_expect_eq(fi_wait(ws, 50), -FI_ETIMEDOUT);
	sfi_cq_write(cq, (void *)1, FI_SEND, 0, NULL, 0, 0, FI_ADDR_NOTAVAIL);
	cr_expect_eq(fi_wait(ws, 1000), 0);
	/* still readable until read: fi_wait reports it again at once */
	cr_expect_eq(fi_wait(ws, 0), 0);
	struct fi_cq_entry c;

	cr_expect_eq(fi_cq_read(cqf, &c, 1), 1);
	cr_expect_eq(fi_wait(ws, 20), -FI_ETIMEDOUT);
	cr_expect_eq(fi_close(&cqf->fid), 0);
	cr_expect_eq(fi_close(&ws->fid), 0);
	wb_close(&w);
}

/* a stand-in endpoint */
struct fake_ep {
	struct sfi_ep ep;
	int progressed;
	int fds_added, fds_removed;
};

static void fake_progress(struct sfi_ep *ep)
{
	sfi_container_of(ep, struct fake_ep, ep)->progressed++;
}

static void fake_wait_fds(struct sfi_ep *ep, struct sfi_wait *wt, bool add)
{
	struct fake_ep *f = sfi_container_of(ep, struct fake_ep, ep);

	cr_assert_not_null(wt);
	if (add)
		f->fds_added++;
	else
		f->fds_removed++;
}

Test(core_internal, bind_and_complete, .timeout = 30)
{
	struct wb w;
	struct fake_ep f = { 0 };
	struct sfi_cq *txcq, *rxcq;
	struct fid_cntr *sc, *rc, *wc;
	struct fi_cntr_attr ca = { .events = FI_CNTR_EVENTS_COMP, .wait_obj = FI_WAIT_NONE };
	struct fi_cq_tagged_entry t[4];
	struct fi_cq_err_entry err = { 0 };

	wb_open(&w, FI_MR_PROV_KEY);
	f.ep.domain = w.d;
	f.ep.type = FI_EP_RDM;
	f.ep.progress = fake_progress;
	f.ep.wait_fds = fake_wait_fds;
	txcq = wb_cq(&w, FI_CQ_FORMAT_TAGGED, 0, FI_WAIT_FD);
	rxcq = wb_cq(&w, FI_CQ_FORMAT_TAGGED, 0, FI_WAIT_NONE);
	cr_assert_eq(sfi_cntr_open(w.domain, &ca, &sc, NULL), 0);
	cr_assert_eq(sfi_cntr_open(w.domain, &ca, &rc, NULL), 0);
	cr_assert_eq(sfi_cntr_open(w.domain, &ca, &wc, NULL), 0);

	cr_expect_eq(sfi_ep_bind_common(&f.ep, &txcq->cq_fid.fid, 0), -FI_EBADFLAGS);
	cr_assert_eq(sfi_ep_bind_common(&f.ep, &txcq->cq_fid.fid,
					FI_TRANSMIT | FI_SELECTIVE_COMPLETION), 0);
	cr_expect_eq(f.fds_added, 1, "the CQ with a wait object got the fds");
	cr_expect_eq(sfi_ep_bind_common(&f.ep, &txcq->cq_fid.fid, FI_TRANSMIT), -FI_EINVAL);
	cr_assert_eq(sfi_ep_bind_common(&f.ep, &rxcq->cq_fid.fid, FI_RECV), 0);
	cr_assert_eq(sfi_ep_bind_common(&f.ep, &sc->fid, FI_SEND), 0);
	cr_assert_eq(sfi_ep_bind_common(&f.ep, &rc->fid, FI_RECV | FI_REMOTE_WRITE), 0);
	cr_assert_eq(sfi_ep_bind_common(&f.ep, &wc->fid, FI_WRITE), 0);
	cr_expect_eq(sfi_ep_bind_common(&f.ep, &wc->fid, FI_SEND), -FI_EINVAL);

	/* selective: only FI_COMPLETION ops get entries; counters count all */
	sfi_domain_lock(w.d);
	sfi_ep_complete_tx(&f.ep, (void *)1, FI_SEND | FI_MSG);
	sfi_ep_complete_tx(&f.ep, (void *)2, FI_SEND | FI_MSG | FI_COMPLETION);
	sfi_ep_complete_tx(&f.ep, (void *)3, FI_WRITE | FI_RMA);
	sfi_ep_error_tx(&f.ep, (void *)4, FI_SEND | FI_MSG, -FI_ECONNRESET);
	sfi_ep_complete_rx(&f.ep, (void *)5, FI_RECV | FI_MSG, 8, (void *)0x10, 0, 0, 7);
	sfi_ep_complete_rx(&f.ep, NULL, FI_REMOTE_WRITE | FI_RMA, 100, NULL, 0, 0, 7);
	sfi_ep_complete_rx(&f.ep, NULL, FI_REMOTE_WRITE | FI_RMA | FI_REMOTE_CQ_DATA, 100, NULL,
			   0x55, 0, 7);
	sfi_ep_error_rx(&f.ep, (void *)6, FI_RECV | FI_TAGGED, -FI_ETRUNC, 4, (void *)0x20, 0,
			99, 60);
	sfi_domain_unlock(w.d);

	int before = f.progressed;

	cr_assert_eq(fi_cq_read(&txcq->cq_fid, t, 4), 1);
	cr_expect_gt(f.progressed, before, "reading a CQ runs the endpoint's progress");
	cr_expect_eq(t[0].op_context, (void *)2);
	cr_expect_eq(t[0].flags, FI_SEND | FI_MSG, "FI_COMPLETION is not reported");
	cr_expect_eq(fi_cq_read(&txcq->cq_fid, t, 4), -FI_EAVAIL);
	cr_assert_eq(fi_cq_readerr(&txcq->cq_fid, &err, 0), 1);
	cr_expect_eq(err.op_context, (void *)4);
	cr_expect_eq(err.err, FI_ECONNRESET);

	cr_assert_eq(fi_cq_read(&rxcq->cq_fid, t, 4), 2);
	cr_expect_eq(t[0].op_context, (void *)5);
	cr_expect_eq(t[0].len, 8);
	cr_expect_eq(t[1].flags, FI_REMOTE_WRITE | FI_RMA | FI_REMOTE_CQ_DATA);
	cr_expect_eq(t[1].data, 0x55);
	cr_assert_eq(fi_cq_readerr(&rxcq->cq_fid, &err, 0), 1);
	cr_expect_eq(err.err, FI_ETRUNC);
	cr_expect_eq(err.olen, 60);
	cr_expect_eq(err.tag, 99);

	cr_expect_eq(fi_cntr_read(sc), 2);
	cr_expect_eq(fi_cntr_readerr(sc), 1);
	cr_expect_eq(fi_cntr_read(wc), 1);
	cr_expect_eq(fi_cntr_read(rc), 3);
	cr_expect_eq(fi_cntr_readerr(rc), 1);

	/* bound objects are busy until the endpoint lets go */
	cr_expect_eq(fi_close(&txcq->cq_fid.fid), -FI_EBUSY);
	cr_expect_eq(fi_close(&rc->fid), -FI_EBUSY);
	sfi_ep_unbind_all(&f.ep);
	cr_expect_eq(f.fds_removed, 1);
	cr_expect_null(f.ep.tx_cq);
	cr_expect_null(f.ep.rem_write_cntr);
	cr_expect_eq(fi_close(&txcq->cq_fid.fid), 0);
	cr_expect_eq(fi_close(&rxcq->cq_fid.fid), 0);
	cr_expect_eq(fi_close(&sc->fid), 0);
	cr_expect_eq(fi_close(&rc->fid), 0);
	cr_expect_eq(fi_close(&wc->fid), 0);
	wb_close(&w);
}

/* Whether another thread can take the domain's mutex right now (it is not held). */
static void *try_domain_mutex(void *arg)
{
	struct sfi_domain *d = arg;
	int r = pthread_mutex_trylock(&d->lock);

	if (r == 0)
		pthread_mutex_unlock(&d->lock);
	return (void *)(intptr_t)r;
}

static int domain_mutex_free(struct sfi_domain *d)
{
	pthread_t t;
	void *r;

	cr_assert_eq(pthread_create(&t, NULL, try_domain_mutex, d), 0);
	cr_assert_eq(pthread_join(t, &r), 0);
	return (intptr_t)r == 0;
}

static void wb_open_threading(struct wb *w, enum fi_threading th)
{
	struct fi_fabric_attr fa = { .name = (char *)"scif", .api_version = FIVER };
	struct fi_domain_attr da = { .mr_mode = FI_MR_PROV_KEY, .threading = th };
	struct fi_info info = { .domain_attr = &da };

	cr_assert_eq(sfi_fabric_open(&fa, &w->fabric, NULL), 0);
	cr_assert_eq(sfi_domain_open(w->fabric, &info, &w->domain, NULL), 0);
	w->d = sfi_container_of(w->domain, struct sfi_domain, domain_fid);
}

/*
 * FI_THREAD_DOMAIN: the application serialises its calls, so the domain lock is skipped,
 * until a fabric object (an EQ driving an endpoint, a wait set holding a CQ or counter) may
 * run the domain's progress from another thread; from then on it is taken, for good.
 */
Test(core_internal, domain_lock_skipped_only_while_serial, .timeout = 30)
{
	struct wb w;
	struct fid_wait *ws;
	struct fi_wait_attr wa = { .wait_obj = FI_WAIT_FD };
	struct fid_cq *cqf;
	struct fid_cntr *cf;
	struct fid_eq *eqf;
	struct fid_ep *epf;
	struct fi_eq_attr ea = { .wait_obj = FI_WAIT_NONE };

	/* FI_THREAD_SAFE (and anything but FI_THREAD_DOMAIN): always locked */
	wb_open_threading(&w, FI_THREAD_SAFE);
	cr_expect_not(w.d->serial);
	sfi_domain_lock(w.d);
	cr_expect_not(domain_mutex_free(w.d), "a FI_THREAD_SAFE domain takes its lock");
	sfi_domain_unlock(w.d);
	wb_close(&w);

	/* FI_THREAD_DOMAIN: skipped; a CQ with its own wait object changes nothing */
	wb_open_threading(&w, FI_THREAD_DOMAIN);
	cr_expect(w.d->serial);
	cqf = &wb_cq(&w, FI_CQ_FORMAT_CONTEXT, 0, FI_WAIT_FD)->cq_fid;
	cr_expect(w.d->serial);
	sfi_domain_lock(w.d);
	sfi_domain_lock(w.d); /* nested, as progress callbacks do */
	cr_expect(domain_mutex_free(w.d), "the lock of a serial domain is skipped");
	sfi_domain_unlock(w.d);
	sfi_domain_unlock(w.d);
	cr_expect_eq(fi_close(&cqf->fid), 0);

	/* a counter in a wait set: locked from then on */
	cr_assert_eq(sfi_wait_open(w.fabric, &wa, &ws), 0);
	struct fi_cntr_attr ca = { .events = FI_CNTR_EVENTS_COMP, .wait_obj = FI_WAIT_SET,
				   .wait_set = ws };

	cr_assert_eq(sfi_cntr_open(w.domain, &ca, &cf, NULL), 0);
	cr_expect_not(w.d->serial);
	sfi_domain_lock(w.d);
	cr_expect_not(domain_mutex_free(w.d), "shared: the lock is taken");
	sfi_domain_unlock(w.d);
	cr_expect(domain_mutex_free(w.d), "and released");
	cr_expect_eq(fi_close(&cf->fid), 0);
	cr_expect_eq(fi_close(&ws->fid), 0);
	wb_close(&w);

	/* a CQ in a wait set */
	wb_open_threading(&w, FI_THREAD_DOMAIN);
	cr_assert_eq(sfi_wait_open(w.fabric, &wa, &ws), 0);
	struct fi_cq_attr qa = { .format = FI_CQ_FORMAT_CONTEXT, .wait_obj = FI_WAIT_SET,
				 .wait_set = ws };

	cr_assert_eq(sfi_cq_open(w.domain, &qa, &cqf, NULL), 0);
	cr_expect_not(w.d->serial);
	cr_expect_eq(fi_close(&cqf->fid), 0);
	cr_expect_eq(fi_close(&ws->fid), 0);
	wb_close(&w);

	/* a MSG endpoint bound to an EQ (whose fi_eq_read runs the handshake) */
	wb_open_threading(&w, FI_THREAD_DOMAIN);
	struct fi_info *info = fi_allocinfo();
	int ret;

	cr_assert_not_null(info);
	info->caps = FI_MSG;
	info->ep_attr->type = FI_EP_MSG;
	info->domain_attr->threading = FI_THREAD_DOMAIN;
	cr_assert_eq(sfi_eq_open(w.fabric, &ea, &eqf, NULL), 0);
	ret = sfi_msg_ep_open(w.domain, info, &epf, NULL);
	cr_assert_eq(ret, 0, "sfi_msg_ep_open: %d", ret);
	fi_freeinfo(info);
	cr_expect(w.d->serial, "opening the endpoint shares nothing yet");
	cr_assert_eq(fi_ep_bind(epf, &eqf->fid, 0), 0);
	cr_expect_not(w.d->serial);
	sfi_domain_lock(w.d);
	cr_expect_not(domain_mutex_free(w.d));
	sfi_domain_unlock(w.d);
	cr_expect_eq(fi_close(&epf->fid), 0);
	cr_expect_eq(fi_close(&eqf->fid), 0);
	wb_close(&w);
}

static int eq_obj_runs;
static struct sfi_eq *eq_obj_eq;

static void eq_obj_progress(struct sfi_eq_obj *obj)
{
	(void)obj;
	if (eq_obj_runs++ == 0)
		sfi_eq_write(eq_obj_eq, FI_CONNECTED, &(struct fi_eq_cm_entry){ .fid = NULL },
			     sizeof(struct fi_eq_cm_entry), 0);
}

Test(core_internal, eq_cm_progress_and_errors, .timeout = 30)
{
	struct wb w;
	struct fid_eq *eqf;
	struct fi_eq_attr attr = { .wait_obj = FI_WAIT_FD };
	struct sfi_eq_obj obj = { .progress = eq_obj_progress, .fd = -1 };
	struct fi_eq_cm_entry cm;
	struct fi_eq_err_entry err;
	uint32_t event;
	char data[8] = "errdata";

	wb_open(&w, FI_MR_PROV_KEY);
	cr_assert_eq(sfi_eq_open(w.fabric, &attr, &eqf, NULL), 0);
	eq_obj_eq = sfi_container_of(eqf, struct sfi_eq, eq_fid);
	sfi_eq_attach(eq_obj_eq, &obj);
	cr_expect_eq(fi_close(&eqf->fid), -FI_EBUSY, "a participant is attached");
	cr_expect_eq(fi_eq_sread(eqf, &event, &cm, sizeof(cm), 1000, 0), (ssize_t)sizeof(cm));
	cr_expect_eq(event, FI_CONNECTED);
	cr_expect_geq(eq_obj_runs, 1);

	/* errors: in order, with their data copied or handed out */
	sfi_eq_write_err(eq_obj_eq, NULL, (void *)5, -FI_ECONNREFUSED, 111, data, sizeof(data));
	cr_expect_eq(fi_eq_read(eqf, &event, &cm, sizeof(cm), 0), -FI_EAVAIL);
	memset(&err, 0, sizeof(err));
	cr_assert_eq(fi_eq_readerr(eqf, &err, FI_PEEK), (ssize_t)sizeof(err));
	cr_expect_eq(err.err, FI_ECONNREFUSED);
	cr_expect_eq(err.prov_errno, 111);
	cr_expect_eq(err.err_data_size, sizeof(data));
	cr_assert_not_null(err.err_data);
	cr_expect_str_eq((char *)err.err_data, "errdata");
	char mine[4];

	err.err_data = mine;
	err.err_data_size = sizeof(mine);
	cr_assert_eq(fi_eq_readerr(eqf, &err, 0), (ssize_t)sizeof(err));
	cr_expect_eq(err.err_data_size, sizeof(mine));
	cr_expect_eq(memcmp(mine, "errd", 4), 0);
	cr_expect_eq(fi_eq_readerr(eqf, &err, 0), -FI_EAGAIN);
	sfi_eq_detach(eq_obj_eq, &obj);
	cr_expect_eq(fi_close(&eqf->fid), 0);
	wb_close(&w);
}

Test(core_internal, addr_parse, .timeout = 30)
{
	struct sfi_addr a;
	char buf[64];
	size_t len;

	cr_expect_eq(sfi_addr_parse("3", "4000", &a), 0);
	cr_expect_eq(a.node, 3);
	cr_expect_eq(a.port, 4000);
	cr_expect_eq(a.magic, SFI_ADDR_MAGIC);
	cr_expect_eq(sfi_addr_parse("fi_scif://7:8", NULL, &a), 0);
	cr_expect_eq(a.node, 7);
	cr_expect_eq(a.port, 8);
	cr_expect_eq(sfi_addr_parse(NULL, "12", &a), 0);
	cr_expect_eq(a.node, sfi_self_node());
	cr_expect_eq(a.port, 12);
	cr_expect_eq(sfi_addr_parse_ext("localhost", "1", 0, &a), 0);
	cr_expect_eq(a.node, 0);
	cr_expect_eq(sfi_addr_parse("fi_scif://7", NULL, &a), -FI_EINVAL);
	cr_expect_eq(sfi_addr_parse("fi_scif://x:1", NULL, &a), -FI_EINVAL);
	cr_expect_eq(sfi_addr_parse("-1", NULL, &a), -FI_EINVAL);
	cr_expect_eq(sfi_addr_parse("65535", NULL, &a), -FI_EINVAL);
	cr_expect_eq(sfi_addr_parse("1", "65536", &a), -FI_EINVAL);
	cr_expect_eq(sfi_addr_parse("1", "12x", &a), -FI_EINVAL);
	cr_expect_eq(sfi_addr_parse("host.invalid", NULL, &a), -FI_EINVAL);

	a = (struct sfi_addr){ .node = 12, .port = 345, .magic = SFI_ADDR_MAGIC };
	len = sizeof(buf);
	cr_expect_str_eq(sfi_addr_str(&a, buf, &len), "fi_scif://12:345");
	cr_expect_eq(len, 17);
	len = 5;
	sfi_addr_str(&a, buf, &len);
	cr_expect_str_eq(buf, "fi_s", "truncated, terminated");
	cr_expect_eq(len, 17, "the size needed");

	/* iov helpers */
	char x[4] = "abc", y[5] = "defg", out[16] = { 0 };
	struct iovec iov[2] = { { x, 3 }, { y, 4 } };

	cr_expect_eq(sfi_iov_len(iov, 2), 7);
	cr_expect_eq(sfi_copy_from_iov(out, 16, iov, 2, 2), 5);
	cr_expect_str_eq(out, "cdefg");
	cr_expect_eq(sfi_copy_to_iov(iov, 2, 1, "XYZW", 4), 4);
	cr_expect_eq(memcmp(x, "aXY", 3), 0);
	cr_expect_eq(memcmp(y, "ZWfg", 4), 0);
}

/*
 * Regions on a real SCIF connection: windows at key + addr on a connection added later and
 * on one that exists when the region is made; nothing past the end; gone after fi_close.
 */
static void mr_on_connection(uint64_t mr_mode)
{
	struct wb w;
	long ps = sysconf(_SC_PAGESIZE);
	size_t len = (size_t)ps + 300;
	char *mem = aligned_alloc((size_t)ps, (size_t)ps * 4);
	char *buf = mem + 200, *buf2 = mem + 2 * ps;
	char got[64];
	scif_epd_t a, b;
	struct fid_mr *mr, *mr2;
	struct sfi_conn conn;
	bool virt = mr_mode != FI_MR_PROV_KEY;

	cr_assert_not_null(mem);
	for (size_t i = 0; i < (size_t)ps * 4; i++)
		mem[i] = (char)(i * 7 + 1);
	wb_open(&w, mr_mode);
	cr_assert_eq(fi_mr_reg(w.domain, buf, len, FI_REMOTE_READ | FI_REMOTE_WRITE, 0, 0, 0, &mr,
			       NULL), 0);
	uint64_t base = virt ? (uint64_t)(uintptr_t)buf : 0; /* the addr of byte 0 */

	test_pair(&a, &b, NULL);
	memset(&conn, 0, sizeof(conn));
	conn.epd = a;
	cr_assert_eq(sfi_domain_conn_add(w.d, &conn), 0);

	/* the peer reads bytes 10.. of the region at key + addr */
	off_t roff = (off_t)sfi_rma_offset(base + 10, fi_mr_key(mr));

	cr_assert_eq(scif_vreadfrom(b, got, sizeof(got), roff, SCIF_RMA_SYNC), 0,
		     "vreadfrom: %s", strerror(errno));
	cr_expect_eq(memcmp(got, buf + 10, sizeof(got)), 0);
	/* and writes */
	memset(got, 0x5a, sizeof(got));
	cr_assert_eq(scif_vwriteto(b, got, 16, (off_t)sfi_rma_offset(base + len - 16,
								     fi_mr_key(mr)),
				   SCIF_RMA_SYNC), 0);
	cr_expect_eq(buf[len - 1], 0x5a);
	/* the page after the region's pages is no window */
	uint64_t first_page = (uint64_t)sfi_rma_offset(base, fi_mr_key(mr)) & ~(uint64_t)(ps - 1);

	errno = 0;
	cr_expect_eq(scif_vreadfrom(b, got, 8, (off_t)(first_page + 2 * (uint64_t)ps),
				    SCIF_RMA_SYNC), -1);
	cr_expect_eq(errno, ENXIO);
	cr_expect_not_null(sfi_mr_find(w.d, (uint64_t)roff, 16));
	cr_expect_null(sfi_mr_find(w.d, (uint64_t)roff, len));

	/* a region made while the connection exists is registered on it at once */
	cr_assert_eq(fi_mr_reg(w.domain, buf2, 100, FI_REMOTE_READ, 0, 0, 0, &mr2, NULL), 0);
	uint64_t base2 = virt ? (uint64_t)(uintptr_t)buf2 : 0;

	cr_assert_eq(scif_vreadfrom(b, got, 50, (off_t)sfi_rma_offset(base2 + 50, fi_mr_key(mr2)),
				    SCIF_RMA_SYNC), 0, "vreadfrom: %s", strerror(errno));
	cr_expect_eq(memcmp(got, buf2 + 50, 50), 0);
	/* read-only: writing fails */
	cr_expect_eq(scif_vwriteto(b, got, 8, (off_t)sfi_rma_offset(base2, fi_mr_key(mr2)),
				   SCIF_RMA_SYNC), -1);

	/* closing unregisters */
	cr_expect_eq(fi_close(&mr->fid), 0);
	errno = 0;
	cr_expect_eq(scif_vreadfrom(b, got, 8, roff, SCIF_RMA_SYNC), -1);
	cr_expect_eq(errno, ENXIO);
	cr_expect_eq(fi_close(&mr2->fid), 0);
	sfi_domain_conn_del(w.d, &conn);
	scif_close(a);
	scif_close(b);
	wb_close(&w);
	free(mem);
}

Test(core_internal, mr_windows_offsets, .timeout = 60)
{
	mr_on_connection(FI_MR_PROV_KEY);
}

Test(core_internal, mr_windows_virt_addr, .timeout = 60)
{
	mr_on_connection(FI_MR_PROV_KEY | FI_MR_VIRT_ADDR);
}

/*
 * sfi_conn's framing on a real SCIF connection: a header with no CQ data, id or size goes
 * in its 16-byte short form, one with CQ data only in the 24-byte one, any other in the
 * full one; the receiver takes all three, also when the bytes come one at a time, and a
 * frame whose prefix names no form costs the connection (-FI_EIO), nothing else.
 */
struct frames {
	struct sfi_hdr hdr[128];
	uint8_t *payload[128];   /* where each frame's payload went, in @buf */
	uint8_t *buf;
	size_t used, cap;
	int n;
	int err;
};

/* A frame sink of @cap bytes for the receiving connection. */
static void frames_init(struct frames *f, size_t cap)
{
	memset(f, 0, sizeof(*f));
	f->buf = malloc(cap ? cap : 1);
	cr_assert_not_null(f->buf);
	f->cap = cap;
}

static int frames_rx_hdr(struct sfi_conn *c, const struct sfi_hdr *hdr, struct iovec *iov,
			 void **cookie)
{
	struct frames *f = c->owner;

	(void)cookie;
	cr_assert_lt(f->n, 128);
	cr_assert_leq(f->used + hdr->len, f->cap);
	f->hdr[f->n] = *hdr;
	f->payload[f->n] = f->buf + f->used;
	iov[0].iov_base = f->payload[f->n];
	iov[0].iov_len = hdr->len;
	f->used += hdr->len;
	return hdr->len ? 1 : 0;
}

static void frames_rx_done(struct sfi_conn *c, const struct sfi_hdr *hdr, void *cookie)
{
	(void)hdr;
	(void)cookie;
	((struct frames *)c->owner)->n++;
}

static void frames_on_error(struct sfi_conn *c, int err)
{
	((struct frames *)c->owner)->err = err;
}

static void frames_tx_done(struct sfi_conn *c, struct sfi_tx *tx, int err)
{
	(void)c;
	(void)tx;
	cr_expect_eq(err, 0);
}

/* A frame whose connection may fail (a test that breaks it on purpose). */
static void frames_tx_done_any(struct sfi_conn *c, struct sfi_tx *tx, int err)
{
	(void)c;
	(void)tx;
	(void)err;
}

static const struct sfi_conn_ops frames_ops = { .rx_hdr = frames_rx_hdr,
						.rx_done = frames_rx_done,
						.on_error = frames_on_error };

/* Progress @c until @f holds @n frames or its connection failed (5 s). */
static void frames_wait(struct sfi_conn *c, struct frames *f, int n)
{
	uint64_t until = now_ms() + 5000;

	while (f->n < n && !f->err && now_ms() < until) {
		sfi_conn_progress(c);
		if (f->n < n && !f->err)
			usleep(100);
	}
}

/* Bytes of a frame: its header in the form @version says, then the payload. */
static size_t frame_bytes(uint8_t *out, const struct sfi_hdr *h, const void *payload, size_t len,
			  uint8_t version)
{
	struct sfi_hdr w = *h;
	size_t hl = version == SFI_WIRE_SHORT ? SFI_HDR_SHORT :
		    version == SFI_WIRE_DATA  ? SFI_HDR_DATA :
						sizeof(w);

	w.version = version;
	w.len = (uint32_t)len;
	memcpy(out, &w, hl);
	memcpy(out + hl, payload, len);
	return hl + len;
}

Test(core_internal, conn_short_and_full_headers, .timeout = 60)
{
	scif_epd_t a, b;
	struct sfi_conn rx, tx;
	struct frames f, unused;
	struct sfi_addr peer = { .magic = SFI_ADDR_MAGIC };
	struct sfi_tx t[3];
	struct sfi_hdr h[3] = {
		{ .op = 1, .flags = 3, .tag = 0x1122334455667788ull }, /* short */
		{ .op = 2, .tag = 7, .data = 99 },                   /* CQ data only */
		{ .op = 3, .id = 5, .size = 1 << 20 },               /* full: id, size */
	};
	struct iovec iov[3] = { { (void *)"hello", 5 }, { (void *)"abc", 3 }, { NULL, 0 } };
	uint8_t wire[128];
	size_t n;

	memset(&rx, 0, sizeof(rx));
	memset(&tx, 0, sizeof(tx));
	frames_init(&f, 4096);
	frames_init(&unused, 0);
	test_pair(&a, &b, NULL);
	cr_assert_eq(sfi_conn_init(&rx, a, &peer, &frames_ops, &f), 0);
	cr_assert_eq(sfi_conn_init(&tx, b, &peer, &frames_ops, &unused), 0);

	/* Through sfi_conn_send: the three arrive whole, in order, as they were sent. */
	for (int i = 0; i < 3; i++) {
		t[i].done = frames_tx_done;
		cr_assert_eq(sfi_conn_send(&tx, &t[i], &h[i], iov[i].iov_len ? &iov[i] : NULL,
					   iov[i].iov_len ? 1 : 0), 0);
	}
	sfi_conn_progress(&tx);
	frames_wait(&rx, &f, 3);
	cr_assert_eq(f.err, 0);
	cr_assert_eq(f.n, 3);
	for (int i = 0; i < 3; i++) {
		cr_expect_eq(f.hdr[i].op, h[i].op);
		cr_expect_eq(f.hdr[i].flags, h[i].flags);
		cr_expect_eq(f.hdr[i].tag, h[i].tag);
		cr_expect_eq(f.hdr[i].data, h[i].data, "frame %d: data", i);
		cr_expect_eq(f.hdr[i].id, h[i].id, "frame %d: id", i);
		cr_expect_eq(f.hdr[i].size, h[i].size, "frame %d: size", i);
		cr_expect_eq(f.hdr[i].len, iov[i].iov_len);
		if (iov[i].iov_len) /* memcmp wants a pointer even for 0 bytes */
			cr_expect_eq(memcmp(f.payload[i], iov[i].iov_base, iov[i].iov_len), 0);
	}
	cr_expect_eq(f.hdr[0].version, SFI_WIRE_SHORT, "no data, id or size: the short form");
	cr_expect_eq(f.hdr[1].version, SFI_WIRE_DATA, "CQ data only: the 24-byte form");
	cr_expect_eq(f.hdr[2].version, SFI_WIRE_VERSION);

	/*
	 * Byte by byte: a short frame, then a full one and a 24-byte one, in pieces. The sends
	 * do not block: at most 80 bytes go into this pair's empty 256 KiB ring, so each takes
	 * all it is given at once, and nothing here can wait for a peer.
	 */
	f.n = 0;
	f.used = 0;
	n = frame_bytes(wire, &h[0], "HELLO", 5, SFI_WIRE_SHORT);
	n += frame_bytes(wire + n, &h[1], "xyz", 3, SFI_WIRE_VERSION);
	n += frame_bytes(wire + n, &h[1], "uvw", 3, SFI_WIRE_DATA);
	cr_assert_eq(n, SFI_HDR_SHORT + 5 + sizeof(struct sfi_hdr) + 3 + SFI_HDR_DATA + 3);
	for (size_t i = 0; i < n; i++) {
		cr_assert_eq(scif_send(b, wire + i, 1, 0), 1);
		sfi_conn_progress(&rx);
		cr_assert_eq(f.err, 0);
		if (i + 1 < SFI_HDR_SHORT + 5)
			cr_expect_eq(f.n, 0, "a frame before its last byte (%zu)", i);
	}
	frames_wait(&rx, &f, 3);
	cr_assert_eq(f.n, 3);
	cr_expect_eq(f.hdr[0].tag, h[0].tag);
	cr_expect_eq(f.hdr[0].data, 0);
	cr_expect_eq(memcmp(f.payload[0], "HELLO", 5), 0);
	for (int i = 1; i < 3; i++) {
		cr_expect_eq(f.hdr[i].tag, 7);
		cr_expect_eq(f.hdr[i].data, 99);
		cr_expect_eq(f.hdr[i].id, 0);
		cr_expect_eq(f.hdr[i].size, 0);
	}
	cr_expect_eq(memcmp(f.payload[1], "xyz", 3), 0);
	cr_expect_eq(memcmp(f.payload[2], "uvw", 3), 0);

	/* A prefix that names neither form: the connection fails, and says why. */
	memset(wire, 0, sizeof(wire));
	wire[0] = 0x42;
	cr_assert_eq(scif_send(b, wire, SFI_HDR_SHORT, 0), (int)SFI_HDR_SHORT);
	frames_wait(&rx, &f, 4);
	cr_expect_eq(f.err, -FI_EIO);
	cr_expect_eq(f.n, 3);

	sfi_conn_fini(&rx, -FI_ECANCELED);
	sfi_conn_fini(&tx, -FI_ECANCELED);
	free(f.buf);
	free(unused.buf);
}

/*
 * sfi_conn_send_now: small frames go to SCIF at once, whole; when the ring has room for
 * only part of one, SCIF takes that part, the rest waits in the connection's spill buffer
 * and goes first, and no other frame overtakes it (neither a fast one, refused meanwhile,
 * nor a queued one). Every frame arrives whole and in order.
 */
static uint8_t frame_pat(unsigned int seq, size_t i)
{
	return (uint8_t)(seq * 131u + i * 7u + (i >> 8));
}

Test(core_internal, conn_send_now_spills_and_keeps_order, .timeout = 60)
{
	scif_epd_t a, b;
	struct sfi_conn rx, tx;
	struct frames k, unused;
	struct sfi_addr peer = { .magic = SFI_ADDR_MAGIC };
	static uint8_t pay[128][8000];
	size_t len[128];
	struct sfi_tx queued = { .done = frames_tx_done };
	int sent = 0, spilled = -1;
	uint64_t until;

	frames_init(&k, (size_t)128 * 8192);
	frames_init(&unused, 0);
	memset(&rx, 0, sizeof(rx));
	memset(&tx, 0, sizeof(tx));
	test_pair(&a, &b, NULL);
	cr_assert_eq(sfi_conn_init(&rx, a, &peer, &frames_ops, &k), 0);
	cr_assert_eq(sfi_conn_init(&tx, b, &peer, &frames_ops, &unused), 0);

	/* Frames of 2000-7999 bytes into the 256 KiB ring, nobody reading, until one spills. */
	for (int i = 0; i < 127; i++) {
		struct sfi_hdr h = { .op = 1, .tag = (uint64_t)i };

		len[i] = 2000 + ((size_t)i * 7919) % 6000;
		for (size_t j = 0; j < len[i]; j++)
			pay[i][j] = frame_pat((unsigned int)i, j);
		if (spilled >= 0) {
			cr_expect_eq(sfi_conn_send_now(&tx, &h, pay[i], len[i]), 0,
				     "frame %d: a fast frame would overtake the spilled rest", i);
			break;
		}
		cr_assert_eq(sfi_conn_send_now(&tx, &h, pay[i], len[i]), 1, "frame %d", i);
		sent++;
		if (tx.spill_busy)
			spilled = i;
	}
	cr_assert_geq(spilled, 0, "the ring never filled");
	cr_expect(tx.want_pollout, "the spilled rest waits for room");

	/* One frame through the queue: it must come after the spilled one. */
	struct sfi_hdr hq = { .op = 2, .tag = (uint64_t)sent, .data = 77 };
	struct iovec qv = { pay[sent], len[sent] };

	cr_assert_eq(sfi_conn_send(&tx, &queued, &hq, &qv, 1), 0);

	until = now_ms() + 5000;
	while (k.n < sent + 1 && !k.err && now_ms() < until) {
		sfi_conn_progress(&rx);
		sfi_conn_progress(&tx);
	}
	cr_assert_eq(k.err, 0);
	cr_assert_eq(k.n, sent + 1);
	cr_expect_not(tx.spill_busy, "the spill went out");
	cr_expect_not(tx.want_pollout);
	for (int i = 0; i <= sent; i++) {
		cr_expect_eq(k.hdr[i].tag, (uint64_t)i, "frame %d out of order", i);
		cr_assert_eq(k.hdr[i].len, len[i], "frame %d: length", i);
		cr_expect_eq(k.hdr[i].op, i == sent ? 2 : 1);
		cr_expect_eq(memcmp(k.payload[i], pay[i], len[i]), 0, "frame %d: payload", i);
	}
	cr_expect_eq(k.hdr[sent].data, 77);
	/* Both ways clear again: the fast path is open. */
	struct sfi_hdr h = { .op = 1, .tag = 1000 };

	cr_expect_eq(sfi_conn_send_now(&tx, &h, "x", 1), 1);
	sfi_conn_fini(&rx, -FI_ECANCELED);
	sfi_conn_fini(&tx, -FI_ECANCELED);
	free(k.buf);
	free(unused.buf);
}

/*
 * The mapped lane (sfi_lane.c) on a real SCIF connection: both sides offer a ring, each maps
 * the other's and switches after its ON frame; frames sent before, during and after the
 * switch arrive whole and in order, also over many laps of a small ring with records that
 * split and skip at its end.
 */
struct lane_pair {
	scif_epd_t a, b;
	struct sfi_conn rx, tx;   /* rx receives what tx sends (and the other way) */
	struct frames f, back;    /* what rx got, what tx got */
};

static void lane_pair_open(struct lane_pair *p, size_t ring, size_t sink)
{
	struct sfi_addr peer = { .magic = SFI_ADDR_MAGIC };

	memset(p, 0, sizeof(*p));
	frames_init(&p->f, sink);
	frames_init(&p->back, 4096);
	test_pair(&p->a, &p->b, NULL);
	cr_assert_eq(sfi_conn_init(&p->rx, p->a, &peer, &frames_ops, &p->f), 0);
	cr_assert_eq(sfi_conn_init(&p->tx, p->b, &peer, &frames_ops, &p->back), 0);
	if (ring) {
		cr_assert_eq(sfi_lane_offer(&p->rx, ring), 0);
		cr_assert_eq(sfi_lane_offer(&p->tx, ring), 0);
		cr_assert_not_null(p->rx.lane.rx_map, "scif_register of the ring");
		cr_assert_not_null(p->tx.lane.rx_map);
	}
}

static void lane_pair_close(struct lane_pair *p)
{
	sfi_conn_fini(&p->rx, -FI_ECANCELED);
	sfi_conn_fini(&p->tx, -FI_ECANCELED);
	free(p->f.buf);
	free(p->back.buf);
}

/* Progress both until rx holds @n frames, a connection failed, or 5 s passed. */
static void lane_pump(struct lane_pair *p, int n)
{
	uint64_t until = now_ms() + 5000;

	while (p->f.n < n && !p->f.err && !p->back.err && now_ms() < until) {
		sfi_conn_progress(&p->tx);
		sfi_conn_progress(&p->rx);
	}
}

/* Both directions switched (ON sent and taken). */
static void lane_pair_switch(struct lane_pair *p)
{
	uint64_t until = now_ms() + 5000;

	while (!(p->tx.lane.tx_on && p->rx.lane.rx_on && p->rx.lane.tx_on && p->tx.lane.rx_on) &&
	       now_ms() < until) {
		sfi_conn_progress(&p->tx);
		sfi_conn_progress(&p->rx);
	}
	cr_assert(p->tx.lane.tx_on && p->rx.lane.rx_on, "tx -> rx on the lane");
	cr_assert(p->rx.lane.tx_on && p->tx.lane.rx_on, "rx -> tx on the lane");
}

/* The stream of @epd holds @n bytes or more now (poll says readable). */
/*
 * Whether bytes wait on @epd's stream, within @ms (scif_poll: the descriptor alone may wake a
 * poller for nothing, which scif_poll then sees): a doorbell is a scif_send, on the stream at
 * once on the local fabric, a moment later on the pcie fabric (its progress thread carries it).
 */
static bool stream_readable_within(scif_epd_t epd, int ms)
{
	struct scif_pollepd p = { .epd = epd, .events = SCIF_POLLIN };

	return scif_poll(&p, 1, ms) == 1 && (p.revents & SCIF_POLLIN);
}

/* A doorbell came (within 2 s). */
static bool stream_rung(scif_epd_t epd)
{
	return stream_readable_within(epd, 2000);
}

/* Nothing came within 50 ms. */
static bool stream_quiet(scif_epd_t epd)
{
	return !stream_readable_within(epd, 50);
}

Test(core_internal, lane_switches_in_order_and_wraps, .timeout = 60)
{
	static uint8_t pay[128][3000];
	struct lane_pair p;
	struct sfi_tx q[8];
	size_t len[128];
	int sent = 0, round;

	lane_pair_open(&p, 4096, (size_t)128 * 3000);
	/* Queued before either offer is taken: these go on the stream, ahead of ON. */
	for (; sent < 4; sent++) {
		struct sfi_hdr h = { .op = 1, .tag = (uint64_t)sent };
		struct iovec v;

		len[sent] = 100 + (size_t)sent;
		for (size_t j = 0; j < len[sent]; j++)
			pay[sent][j] = frame_pat((unsigned int)sent, j);
		v = (struct iovec){ pay[sent], len[sent] };
		q[sent].done = frames_tx_done;
		cr_assert_eq(sfi_conn_send(&p.tx, &q[sent], &h, &v, 1), 0);
	}
	lane_pump(&p, 4);
	lane_pair_switch(&p);
	cr_assert_eq(p.f.n, 4);

	/* Then 124 frames of 1-2999 bytes through a 4 KiB ring, a few at a time: 40 laps. */
	for (round = 0; sent < 128; round++) {
		int burst = 1 + round % 3;

		for (int k = 0; k < burst && sent < 128; k++, sent++) {
			struct sfi_hdr h = { .op = 1, .tag = (uint64_t)sent, .data = (uint64_t)round };

			len[sent] = 1 + ((size_t)sent * 7919) % 2999;
			for (size_t j = 0; j < len[sent]; j++)
				pay[sent][j] = frame_pat((unsigned int)sent, j);
			if (sfi_conn_send_now(&p.tx, &h, pay[sent], len[sent]) == 1)
				continue;
			/* Refused (queued frames or no room): through the queue. */
			struct iovec v = { pay[sent], len[sent] };
			static struct sfi_tx tq[128];

			tq[sent].done = frames_tx_done;
			cr_assert_eq(sfi_conn_send(&p.tx, &tq[sent], &h, &v, 1), 0);
		}
		lane_pump(&p, sent);
		cr_assert_eq(p.f.err, 0);
		cr_assert_eq(p.back.err, 0);
		cr_assert_eq(p.f.n, sent, "round %d", round);
	}
	for (int i = 0; i < 128; i++) {
		cr_assert_eq(p.f.hdr[i].tag, (uint64_t)i, "frame %d out of order", i);
		cr_assert_eq(p.f.hdr[i].len, len[i], "frame %d: length", i);
		cr_assert_eq(memcmp(p.f.payload[i], pay[i], len[i]), 0, "frame %d: payload", i);
	}
	cr_expect_gt(p.tx.lane.tx_tail, 40 * 4096, "the ring went round");
	cr_expect(p.tx.lane.tx_wb || !sfi_wcache_usable(),
		  "libscif's window memory is shared memory: no sfence needed");
	cr_expect(stream_quiet(p.a), "nothing but frames before ON on the stream");
	lane_pair_close(&p);
}

/*
 * Small frames (every header form, payloads up to the line's room) are written in place
 * (sfi_lane_reserve, header field by field): a 4 KiB ring takes exactly 64 of them, refuses
 * the next, which queues behind with everything after it, and every frame arrives whole, in
 * order, with its header intact once the receiver reads.
 */
Test(core_internal, lane_small_frames_in_place_until_full, .timeout = 60)
{
	static struct sfi_tx tq[120];
	static uint8_t pay[120][32];
	size_t len[120];
	struct lane_pair p;
	int placed = 0, refused = -1;

	lane_pair_open(&p, 4096, (size_t)120 * 32);
	lane_pair_switch(&p);
	for (int i = 0; i < 120; i++) {
		int form = i % 3; /* short, with CQ data, full */
		struct sfi_hdr h = { .op = 1, .flags = (uint16_t)i, .tag = 1000u + (uint64_t)i,
				     .data = form ? 7u + (uint64_t)i : 0,
				     .id = form == 2 ? 9u + (uint64_t)i : 0,
				     .size = form == 2 ? 11u + (uint64_t)i : 0 };
		size_t room = form == 0 ? 32 : form == 1 ? 24 : 8;
		struct iovec v;

		len[i] = (size_t)i % (room + 1);
		for (size_t j = 0; j < len[i]; j++)
			pay[i][j] = frame_pat((unsigned int)i, j);
		if (sfi_conn_send_now(&p.tx, &h, pay[i], len[i]) == 1) {
			cr_assert_eq(refused, -1, "frame %d placed after frame %d was refused", i,
				     refused);
			placed++;
			continue;
		}
		if (refused < 0)
			refused = i;
		v = (struct iovec){ pay[i], len[i] };
		tq[i].done = frames_tx_done;
		cr_assert_eq(sfi_conn_send(&p.tx, &tq[i], &h, &v, 1), 0);
	}
	cr_expect_eq(placed, 4096 / 64, "a 4 KiB ring holds 64 one-line records");
	lane_pump(&p, 120);
	cr_assert_eq(p.f.err, 0);
	cr_assert_eq(p.back.err, 0);
	cr_assert_eq(p.f.n, 120);
	for (int i = 0; i < 120; i++) {
		int form = i % 3;

		cr_assert_eq(p.f.hdr[i].tag, 1000u + (uint64_t)i, "frame %d out of order", i);
		cr_assert_eq(p.f.hdr[i].flags, (uint16_t)i, "frame %d: flags", i);
		cr_assert_eq(p.f.hdr[i].data, form ? 7u + (uint64_t)i : 0, "frame %d: data", i);
		cr_assert_eq(p.f.hdr[i].id, form == 2 ? 9u + (uint64_t)i : 0, "frame %d: id", i);
		cr_assert_eq(p.f.hdr[i].size, form == 2 ? 11u + (uint64_t)i : 0, "frame %d", i);
		cr_assert_eq(p.f.hdr[i].len, len[i], "frame %d: length", i);
		cr_assert_eq(memcmp(p.f.payload[i], pay[i], len[i]), 0, "frame %d: payload", i);
	}
	cr_expect_eq(p.tx.lane.tx_tail, (uint64_t)120 * 64, "one line per small record");
	lane_pair_close(&p);
}

/* A receiver that offers no ring (FI_SCIF_LANE_SIZE=0 there), and one whose offer is
 * refused: each direction stays on the stream, and frames still arrive. */
Test(core_internal, lane_refused_keeps_the_stream, .timeout = 60)
{
	struct lane_pair p;
	size_t saved = sfi_params.lane_size;

	lane_pair_open(&p, 0, 4096);
	cr_assert_eq(sfi_lane_offer(&p.rx, 8192), 0); /* rx offers; tx refuses to map it */
	sfi_params.lane_size = 0;
	for (int i = 0; i < 20; i++) {
		struct sfi_hdr h = { .op = 1, .tag = (uint64_t)i };

		cr_assert_eq(sfi_conn_send_now(&p.tx, &h, "abcdefgh", 8), 1);
		lane_pump(&p, i + 1);
	}
	sfi_params.lane_size = saved;
	cr_assert_eq(p.f.n, 20);
	cr_expect_not(p.tx.lane.tx_on);
	cr_expect_not(p.rx.lane.rx_on);
	cr_expect_null(p.tx.lane.tx_map);
	for (int i = 0; i < 20; i++)
		cr_expect_eq(p.f.hdr[i].tag, (uint64_t)i);
	lane_pair_close(&p);
}

/*
 * Sleeping: a sender rings only a receiver that armed, once per arm; a receiver arming with
 * a record waiting is told not to sleep. A sender whose frames do not fit arms for room, and
 * the receiver's next read rings it.
 */
Test(core_internal, lane_arm_and_doorbells, .timeout = 60)
{
	struct lane_pair p;
	struct sfi_hdr h = { .op = 1 };
	int n = 0;

	char junk[16];

	lane_pair_open(&p, 4096, 1 << 20);
	lane_pair_switch(&p);
	cr_expect(stream_quiet(p.a), "the switch left nothing on the stream");

	/* Never armed: no doorbell. */
	cr_expect_eq(sfi_conn_send_now(&p.tx, &h, "x", 1), 1);
	n++;
	lane_pump(&p, n);
	cr_expect(stream_quiet(p.a), "a doorbell for a receiver that never armed");

	/* Armed on an empty ring: sleep; the next frame rings, the one after does not. */
	cr_expect_eq(sfi_conn_arm(&p.rx), 0);
	cr_expect_eq(sfi_conn_send_now(&p.tx, &h, "y", 1), 1);
	n++;
	cr_expect(stream_rung(p.a), "no doorbell for an armed receiver");
	cr_expect_eq(sfi_conn_send_now(&p.tx, &h, "z", 1), 1);
	n++;
	cr_expect_eq(scif_recv(p.a, junk, sizeof(junk), 0), 1, "one doorbell per arm");
	cr_expect_eq(sfi_conn_arm(&p.rx), 1, "arming with frames waiting");
	lane_pump(&p, n);
	cr_expect_eq(sfi_conn_arm(&p.rx), 0);
	cr_expect_eq(sfi_conn_send_now(&p.tx, &h, "w", 1), 1);
	n++;
	cr_expect(stream_rung(p.a));
	lane_pump(&p, n);
	cr_expect_eq(sfi_conn_arm(&p.rx), 0, "arming takes the doorbells off");
	cr_expect(stream_quiet(p.a));

	/* Fill the ring with nobody reading: frames queue; tx arms for room. */
	static uint8_t big[2000];
	static struct sfi_tx tq[8];
	int queued = 0;

	memset(big, 0x5a, sizeof(big));
	while (sfi_conn_send_now(&p.tx, &h, big, sizeof(big)) == 1)
		n++;
	for (; queued < 2; queued++) {
		struct iovec v = { big, sizeof(big) };

		tq[queued].done = frames_tx_done;
		cr_assert_eq(sfi_conn_send(&p.tx, &tq[queued], &h, &v, 1), 0);
	}
	sfi_conn_progress(&p.tx);
	cr_assert(p.tx.want_pollout, "the ring is full");
	cr_expect_eq(sfi_conn_events(&p.tx) & POLLOUT, 0, "room comes with a doorbell");
	usleep(100000); /* doorbells still on their way (pcie fabric) land before the drain */
	(void)sfi_conn_arm(&p.tx); /* drains the stream; arms for room */
	cr_expect_eq(sfi_conn_arm(&p.tx), 0, "no room yet");
	cr_expect(stream_quiet(p.b));
	sfi_conn_progress(&p.rx); /* takes frames: room, and tx asked to be rung */
	cr_expect(stream_rung(p.b), "the receiver did not ring a sender waiting for room");
	lane_pump(&p, n + queued);
	cr_expect_eq(p.f.n, n + queued);
	cr_expect_eq(p.f.err, 0);
	lane_pair_close(&p);
}

/* A peer gone: what it wrote before is taken, then the connection fails (FI_ECONNRESET). */
Test(core_internal, lane_peer_gone_after_its_frames, .timeout = 60)
{
	struct lane_pair p;
	uint64_t until;

	lane_pair_open(&p, 8192, 4096);
	lane_pair_switch(&p);
	for (int i = 0; i < 3; i++) {
		struct sfi_hdr h = { .op = 1, .tag = (uint64_t)i };

		cr_assert_eq(sfi_conn_send_now(&p.tx, &h, "last", 4), 1);
	}
	sfi_conn_fini(&p.tx, -FI_ECANCELED);
	until = now_ms() + 5000;
	while (!p.f.err && now_ms() < until)
		sfi_conn_progress(&p.rx);
	cr_expect_eq(p.f.n, 3, "frames written before the close");
	cr_expect_eq(p.f.err, -FI_ECONNRESET);
	lane_pair_close(&p);
}

/* A caller about to sleep learns of the peer's end from arming: not asleep for good. */
Test(core_internal, lane_arm_sees_the_peer_gone, .timeout = 60)
{
	struct lane_pair p;
	struct sfi_hdr h = { .op = 1 };
	uint64_t until;
	int armed;

	lane_pair_open(&p, 8192, 4096);
	lane_pair_switch(&p);
	cr_assert_eq(sfi_conn_send_now(&p.tx, &h, "bye", 3), 1);
	lane_pump(&p, 1);
	cr_assert_eq(sfi_conn_arm(&p.rx), 0, "nothing to take, the peer is there");
	sfi_conn_fini(&p.tx, -FI_ECANCELED);
	until = now_ms() + 5000;
	do
		armed = sfi_conn_arm(&p.rx);
	while (!armed && now_ms() < until);
	cr_expect_eq(armed, 1, "arming did not see the peer's end");
	cr_expect(p.rx.lane.rx_gone);
	cr_expect_not(sfi_conn_rx_quiet(&p.rx), "a quiet look would leave it for later");
	sfi_conn_progress(&p.rx);
	cr_expect_eq(p.f.err, -FI_ECONNRESET);
	lane_pair_close(&p);
}

/*
 * A hostile writer: a record that would pass the end of the ring, a flag nobody defined, or
 * a skip at the ring's start costs the connection (-FI_EIO), nothing else; so does a head
 * that goes back, for the sender that reads it.
 */
static void lane_poke(struct lane_pair *p, uint32_t len, uint32_t flags)
{
	struct sfi_lane *l = &p->rx.lane;
	uint8_t *ring = l->rx_map + 4096;
	uint64_t *rec = (uint64_t *)(void *)(ring + (l->rx_head & (l->rx_size - 1)));

	((uint32_t *)(rec + 1))[0] = len;
	((uint32_t *)(rec + 1))[1] = flags;
	__atomic_store_n(&rec[0], l->rx_salt + l->rx_head / 64, __ATOMIC_RELEASE);
}

Test(core_internal, lane_hostile_records_cost_the_connection, .timeout = 60)
{
	static const struct { uint32_t len, flags; const char *what; } bad[] = {
		{ 8192, 0, "past the end" }, { 0, 0, "empty" }, { 8, 0x80, "unknown flag" },
		{ 0, 1, "a skip at the start" },
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct lane_pair p;
		uint64_t until;

		lane_pair_open(&p, 8192, 4096);
		lane_pair_switch(&p);
		lane_poke(&p, bad[i].len, bad[i].flags);
		until = now_ms() + 5000;
		while (!p.f.err && now_ms() < until)
			sfi_conn_progress(&p.rx);
		cr_expect_eq(p.f.err, -FI_EIO, "%s", bad[i].what);
		cr_expect_eq(p.f.n, 0);
		lane_pair_close(&p);
	}

	/* The receiver's head, as the sender reads it, going back: the sender's connection. */
	struct lane_pair p;
	struct sfi_hdr h = { .op = 1 };
	static uint8_t big[3000];
	uint64_t until = now_ms() + 5000;

	lane_pair_open(&p, 8192, 1 << 20);
	lane_pair_switch(&p);
	/* 3 KiB records in an 8 KiB ring: the third makes the sender read the head. */
	for (int i = 0; i < 3; i++) {
		cr_assert_eq(sfi_conn_send_now(&p.tx, &h, big, sizeof(big)), 1);
		lane_pump(&p, i + 1);
	}
	cr_assert_eq(p.f.n, 3);
	cr_assert_gt(p.tx.lane.tx_head, 0, "the sender has read a head");
	__atomic_store_n((uint64_t *)(void *)p.rx.lane.rx_map, (uint64_t)64, __ATOMIC_RELEASE);
	while (!p.back.err && now_ms() < until) {
		struct iovec v = { big, sizeof(big) };
		static struct sfi_tx t;

		if (sfi_conn_send_now(&p.tx, &h, big, sizeof(big)) != 1 && !t.done) {
			t.done = frames_tx_done_any;
			(void)sfi_conn_send(&p.tx, &t, &h, &v, 1);
		}
		sfi_conn_progress(&p.tx);
	}
	cr_expect_eq(p.back.err, -FI_EIO, "a head that went back");
	lane_pair_close(&p);
}
