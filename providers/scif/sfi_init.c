/* SPDX-License-Identifier: LGPL-2.1-or-later */
/**
 * @file sfi_init.c
 * @brief Provider entry point (fi_prov_ini), provider variables and fi_getinfo.
 *
 * Design notes (the fi_scif(7) man page summarises these):
 *
 * - Endpoint types: FI_EP_MSG (connection oriented, one SCIF connection per endpoint) and
 *   FI_EP_RDM (reliable unconnected; SCIF connections are opened lazily per peer, large
 *   messages use a rendezvous). No scalable/shared contexts, no atomics, no collectives.
 * - Progress: FI_PROGRESS_MANUAL for both control and data. Nothing runs in the background:
 *   reading or waiting on a CQ, counter or EQ (and fi_trywait) drives the endpoints bound
 *   to it. Wait objects are FI_WAIT_FD: fi_control(FI_GETWAIT) returns an epoll descriptor
 *   holding the SCIF endpoint descriptors plus an eventfd for signals; call fi_trywait
 *   before blocking on it.
 * - Threading: FI_THREAD_SAFE (one recursive lock per domain serialises its objects), so any
 *   weaker threading level requested is granted too.
 * - Memory registration: mr_mode FI_MR_PROV_KEY only; local buffers need no registration
 *   (no FI_MR_LOCAL) and desc may be NULL. A region with FI_REMOTE_READ/WRITE becomes a
 *   SCIF window at the same offset on every connection of the domain. RMA target addresses
 *   are byte offsets from the start of the region, not virtual addresses; the key is the
 *   SCIF offset of the region's first byte, so the SCIF offset accessed is key + addr.
 *   Applications that only support FI_MR_VIRT_ADDR style addressing get it (the key is then
 *   shifted by the region's virtual address so that key + addr still holds); legacy
 *   FI_MR_BASIC is granted the same way. An application that cannot take provider keys
 *   (FI_MR_SCALABLE, or 1.5+ mr_mode without FI_MR_PROV_KEY) gets endpoints without RMA
 *   (and no info at all if it asked for RMA).
 * - Addresses: addr_format FI_FORMAT_UNSPEC with struct sfi_addr {node, port, magic}
 *   (8 bytes), or FI_ADDR_STR "fi_scif://NODE:PORT". fi_getinfo's node is a SCIF node
 *   number, "fi_scif://N:P", or a host name: for a local (source) address "localhost",
 *   127.x or this machine's name mean this process's node; as a destination they mean
 *   node 0, the host. service is the SCIF port (decimal).
 * - Variables (environment, `fi_info -e`):
 *     FI_SCIF_EAGER_MAX     (16384)  RDM messages above this size use the rendezvous
 *     FI_SCIF_INJECT_SIZE   (64)     fi_inject limit (tx_attr->inject_size)
 *     FI_SCIF_CQ_SIZE       (1024)   default CQ depth (a CQ still grows when full)
 *     FI_SCIF_TX_SIZE       (256)    default tx_attr->size
 *     FI_SCIF_RX_SIZE       (256)    default rx_attr->size
 *     FI_SCIF_CONN_TIMEOUT  (10000)  ms before a lazy RDM connection attempt fails
 *     FI_SCIF_RNDV_WRITE_MIN (65536) RDM rendezvous from this size: the sender writes
 *                                    into a window over the receive buffer (one copy;
 *                                    sfi_wcache.c); 0 never
 *     FI_SCIF_LANE_SIZE     (262144) ring each side of an RDM connection offers for the
 *                                    peer's frames (sfi_lane.c); 0: the SCIF stream only
 */
#include "sfi.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct sfi_params sfi_params = {
	.eager_max = 16384,
	.inject_size = 64,
	.cq_size = 1024,
	.tx_size = 256,
	.rx_size = 256,
	.conn_timeout_ms = 10000,
	.rndv_write_min = 64 << 10,
	.lane_size = 256 << 10,
};

/* ------------------------------------------------------------------------------------ */
/* The templates. Sizes that come from variables are filled in when an info is built. */

#define SFI_MSG_CAPS (FI_MSG | FI_RMA | FI_READ | FI_WRITE | FI_RECV | FI_SEND | \
		      FI_REMOTE_READ | FI_REMOTE_WRITE | FI_LOCAL_COMM | FI_REMOTE_COMM)
#define SFI_RDM_CAPS (SFI_MSG_CAPS | FI_TAGGED | FI_DIRECTED_RECV | FI_SOURCE | FI_MULTI_RECV)

/** Capabilities an application must ask for to get them. */
#define SFI_PRIMARY_CAPS (FI_MSG | FI_RMA | FI_TAGGED | FI_ATOMIC | FI_MULTICAST | \
			  FI_COLLECTIVE | FI_NAMED_RX_CTX | FI_DIRECTED_RECV | FI_READ | \
			  FI_WRITE | FI_RECV | FI_SEND | FI_REMOTE_READ | FI_REMOTE_WRITE | \
			  FI_VARIABLE_MSG | FI_HMEM)
/** Secondary capabilities granted only to an application that asks for them: each costs
 *  every message something (FI_SOURCE: the sender's fi_addr looked up for each receive). */
#define SFI_ASKED_CAPS FI_SOURCE
#define SFI_DIR_CAPS (FI_READ | FI_WRITE | FI_RECV | FI_SEND | FI_REMOTE_READ | FI_REMOTE_WRITE)
#define SFI_TX_CAPS (FI_MSG | FI_RMA | FI_TAGGED | FI_READ | FI_WRITE | FI_SEND)
#define SFI_RX_CAPS (FI_MSG | FI_RMA | FI_TAGGED | FI_RECV | FI_REMOTE_READ | FI_REMOTE_WRITE | \
		     FI_DIRECTED_RECV | FI_SOURCE | FI_MULTI_RECV)

#define SFI_MSG_ORDER (FI_ORDER_SAS | FI_ORDER_RAR | FI_ORDER_RAW | FI_ORDER_WAR | \
		       FI_ORDER_WAW | FI_ORDER_SAW)
#define SFI_TX_OP_FLAGS (FI_COMPLETION | FI_INJECT | FI_INJECT_COMPLETE | \
			 FI_TRANSMIT_COMPLETE | FI_DELIVERY_COMPLETE)
#define SFI_RX_OP_FLAGS (FI_COMPLETION | FI_MULTI_RECV)

/** Tag bits offered to applications (bits 62 and 63 left to the application/MPI). */
#define SFI_TAG_FORMAT 0x3FFFFFFFFFFFFFFFULL

static struct fi_tx_attr sfi_tx_tmpl = {
	.caps = SFI_RDM_CAPS & SFI_TX_CAPS,
	.op_flags = FI_COMPLETION,
	.msg_order = SFI_MSG_ORDER,
	.comp_order = FI_ORDER_NONE,
	.iov_limit = SFI_MAX_IOV,
	.rma_iov_limit = 1,
};

static struct fi_rx_attr sfi_rx_tmpl = {
	.caps = SFI_RDM_CAPS & SFI_RX_CAPS,
	.op_flags = FI_COMPLETION,
	.msg_order = SFI_MSG_ORDER,
	.comp_order = FI_ORDER_NONE,
	.iov_limit = SFI_MAX_IOV,
};

/** The endpoint attributes MSG and RDM share; each template adds its type (and tags). */
#define SFI_EP_ATTR_COMMON                              \
	.protocol = FI_PROTO_UNSPEC,                    \
	.protocol_version = SFI_WIRE_VERSION,           \
	.max_msg_size = SFI_MAX_MSG,                    \
	.max_order_raw_size = SFI_MAX_MSG,              \
	.max_order_war_size = SFI_MAX_MSG,              \
	.max_order_waw_size = SFI_MAX_MSG,              \
	.tx_ctx_cnt = 1,                                \
	.rx_ctx_cnt = 1

static struct fi_ep_attr sfi_msg_ep_tmpl = {
	.type = FI_EP_MSG,
	SFI_EP_ATTR_COMMON,
};

static struct fi_ep_attr sfi_rdm_ep_tmpl = {
	.type = FI_EP_RDM,
	.mem_tag_format = SFI_TAG_FORMAT,
	SFI_EP_ATTR_COMMON,
};

static struct fi_domain_attr sfi_domain_tmpl = {
	.name = (char *)SFI_FABRIC_NAME,
	.threading = FI_THREAD_SAFE,
	.control_progress = FI_PROGRESS_MANUAL,
	.data_progress = FI_PROGRESS_MANUAL,
	.resource_mgmt = FI_RM_ENABLED,
	.av_type = FI_AV_UNSPEC,
	.mr_mode = FI_MR_PROV_KEY, /* none at all when RMA is not offered, see match_domain */
	.mr_key_size = sizeof(uint64_t),
	.cq_data_size = sizeof(uint64_t),
	.cq_cnt = 1024,
	.ep_cnt = 1024,
	.tx_ctx_cnt = 1024,
	.rx_ctx_cnt = 1024,
	.max_ep_tx_ctx = 1,
	.max_ep_rx_ctx = 1,
	.max_ep_stx_ctx = 0,
	.max_ep_srx_ctx = 0,
	.cntr_cnt = 1024,
	.mr_iov_limit = 1,
	.caps = FI_LOCAL_COMM | FI_REMOTE_COMM,
	.mr_cnt = 65536,
};

static struct fi_fabric_attr sfi_fabric_tmpl = {
	.name = (char *)SFI_FABRIC_NAME,
	.prov_name = (char *)SFI_PROV_NAME,
	.prov_version = SFI_PROV_VERSION,
	.api_version = SFI_FI_VERSION,
};

const struct fi_info sfi_msg_info = {
	.caps = SFI_MSG_CAPS,
	.addr_format = FI_FORMAT_UNSPEC,
	.tx_attr = &sfi_tx_tmpl,
	.rx_attr = &sfi_rx_tmpl,
	.ep_attr = &sfi_msg_ep_tmpl,
	.domain_attr = &sfi_domain_tmpl,
	.fabric_attr = &sfi_fabric_tmpl,
};

const struct fi_info sfi_rdm_info = {
	.caps = SFI_RDM_CAPS,
	.addr_format = FI_FORMAT_UNSPEC,
	.tx_attr = &sfi_tx_tmpl,
	.rx_attr = &sfi_rx_tmpl,
	.ep_attr = &sfi_rdm_ep_tmpl,
	.domain_attr = &sfi_domain_tmpl,
	.fabric_attr = &sfi_fabric_tmpl,
};

/* ------------------------------------------------------------------------------------ */
/* Matching hints. */

/** The capabilities to return for @p hint_caps against a template's @p caps, or 0 when
 *  the template cannot satisfy them. Primary capabilities are returned only when asked
 *  for (with the directions they imply); secondary ones are always offered. */
static uint64_t match_caps(uint64_t hint_caps, uint64_t caps)
{
	uint64_t primary, dirs;

	if (!hint_caps)
		return caps;
	if (hint_caps & ~caps)
		return 0;
	primary = hint_caps & SFI_PRIMARY_CAPS;
	if (!(primary & (FI_MSG | FI_TAGGED | FI_RMA)))
		primary |= caps & (FI_MSG | FI_TAGGED | FI_RMA); /* only secondary asked */
	if (!(primary & SFI_DIR_CAPS)) {
		dirs = 0;
		if (primary & (FI_MSG | FI_TAGGED))
			dirs |= FI_SEND | FI_RECV;
		if (primary & FI_RMA)
			dirs |= FI_READ | FI_WRITE | FI_REMOTE_READ | FI_REMOTE_WRITE;
		primary |= dirs & caps;
	}
	if ((primary & FI_DIRECTED_RECV) && !(primary & (FI_MSG | FI_TAGGED)))
		primary |= caps & (FI_MSG | FI_TAGGED);
	return primary | (caps & ~(SFI_PRIMARY_CAPS | SFI_ASKED_CAPS)) | (hint_caps & SFI_ASKED_CAPS);
}

/**
 * The mr_mode to grant for an application's @p hint (version-aware): 0 in the result
 * means no match (returned as -1).
 */
static int match_mr_mode(uint32_t version, int hint)
{
	if (hint == FI_MR_BASIC)
		return FI_MR_BASIC;
	if (hint == FI_MR_SCALABLE)
		return -1;
	if (hint == FI_MR_UNSPEC) {
		/* before 1.5 unspecified meant "either legacy mode": we pick basic */
		return FI_VERSION_LT(version, FI_VERSION(1, 5)) ? FI_MR_BASIC : -1;
	}
	if (!(hint & FI_MR_PROV_KEY))
		return -1;
	return FI_MR_PROV_KEY;
}

static bool str_mismatch(const char *hint, const char *ours)
{
	return hint && *hint && strcasecmp(hint, ours);
}

/** Whether the prov_name of the hints names us (it may list layered providers). */
static bool prov_name_mismatch(const char *hint)
{
	const char *p;

	if (!hint || !*hint)
		return false;
	/* "scif", or layered lists like "scif;ofi_rxm" / "scif;^ofi_rxm" */
	for (const char *q = hint; q; q = strchr(q, ';')) {
		if (*q == ';')
			q++;
		if (!strncasecmp(q, SFI_PROV_NAME, strlen(SFI_PROV_NAME)) &&
		    (q[strlen(SFI_PROV_NAME)] == ';' || !q[strlen(SFI_PROV_NAME)]))
			return false;
	}
	(void)p;
	return true;
}

/** Domain attributes: 0 and the granted values in @p out, or -FI_ENODATA. */
static int match_domain(uint32_t version, const struct fi_domain_attr *h,
			uint64_t hint_caps, uint64_t *caps, struct fi_domain_attr *out)
{
	int mr;

	if (!h)
		return 0;
	if (str_mismatch(h->name, SFI_FABRIC_NAME))
		return -FI_ENODATA;
	if (h->control_progress == FI_PROGRESS_AUTO || h->data_progress == FI_PROGRESS_AUTO)
		return -FI_ENODATA;
	if (h->av_type != FI_AV_UNSPEC && h->av_type != FI_AV_MAP && h->av_type != FI_AV_TABLE)
		return -FI_ENODATA;
	if (h->threading > FI_THREAD_ENDPOINT)
		return -FI_ENODATA; /* unknown value; every known level is granted */
	mr = match_mr_mode(version, h->mr_mode);
	if (mr < 0) {
		/* Keys only matter to RMA: an application that cannot take provider keys still
		 * gets the endpoint, without RMA, unless it asked for RMA. */
		if (hint_caps & (FI_RMA | FI_ATOMIC | FI_READ | FI_WRITE | FI_REMOTE_READ |
				 FI_REMOTE_WRITE))
			return -FI_ENODATA;
		*caps &= ~(uint64_t)(FI_RMA | FI_READ | FI_WRITE | FI_REMOTE_READ |
				     FI_REMOTE_WRITE);
		mr = h->mr_mode == FI_MR_SCALABLE ? FI_MR_SCALABLE : 0;
	}
	if (h->mr_key_size > out->mr_key_size || h->cq_data_size > out->cq_data_size)
		return -FI_ENODATA;
	if (h->caps & ~out->caps)
		return -FI_ENODATA;
	if (h->max_ep_tx_ctx > 1 || h->max_ep_rx_ctx > 1 || h->max_ep_stx_ctx ||
	    h->max_ep_srx_ctx || h->mr_iov_limit > out->mr_iov_limit)
		return -FI_ENODATA;
	if (h->auth_key_size || h->tclass)
		return -FI_ENODATA;
	out->mr_mode = mr;
	if (h->threading != FI_THREAD_UNSPEC)
		out->threading = h->threading;
	if (h->resource_mgmt != FI_RM_UNSPEC)
		out->resource_mgmt = h->resource_mgmt;
	if (h->av_type != FI_AV_UNSPEC)
		out->av_type = h->av_type;
	if (h->caps)
		out->caps = h->caps;
	return 0;
}

static int match_ep(const struct fi_ep_attr *h, struct fi_ep_attr *out)
{
	if (!h)
		return 0;
	if (h->type != FI_EP_UNSPEC && h->type != out->type)
		return -FI_ENODATA;
	if (h->protocol != FI_PROTO_UNSPEC)
		return -FI_ENODATA;
	if (h->max_msg_size > out->max_msg_size || h->msg_prefix_size)
		return -FI_ENODATA;
	if ((h->tx_ctx_cnt > 1 && h->tx_ctx_cnt != FI_SHARED_CONTEXT) ||
	    (h->rx_ctx_cnt > 1 && h->rx_ctx_cnt != FI_SHARED_CONTEXT) ||
	    h->tx_ctx_cnt == FI_SHARED_CONTEXT || h->rx_ctx_cnt == FI_SHARED_CONTEXT)
		return -FI_ENODATA;
	if (h->auth_key_size)
		return -FI_ENODATA;
	if (h->mem_tag_format && out->type == FI_EP_RDM)
		out->mem_tag_format = h->mem_tag_format; /* any layout: tags match on 64 bits */
	return 0;
}

static int match_tx(const struct fi_tx_attr *h, struct fi_tx_attr *out)
{
	if (!h)
		return 0;
	if ((h->caps & ~out->caps) || (h->msg_order & ~out->msg_order) ||
	    (h->comp_order & ~(uint64_t)(FI_ORDER_NONE | FI_ORDER_STRICT)) ||
	    h->inject_size > out->inject_size || h->iov_limit > out->iov_limit ||
	    h->rma_iov_limit > out->rma_iov_limit || (h->op_flags & ~SFI_TX_OP_FLAGS))
		return -FI_ENODATA;
	if (h->comp_order & FI_ORDER_STRICT)
		return -FI_ENODATA;
	if (h->size)
		out->size = h->size;
	if (h->op_flags)
		out->op_flags = h->op_flags;
	if (h->caps)
		out->caps = h->caps;
	return 0;
}

static int match_rx(const struct fi_rx_attr *h, struct fi_rx_attr *out)
{
	if (!h)
		return 0;
	if ((h->caps & ~out->caps) || (h->msg_order & ~out->msg_order) ||
	    (h->comp_order & FI_ORDER_STRICT) || h->iov_limit > out->iov_limit ||
	    (h->op_flags & ~SFI_RX_OP_FLAGS))
		return -FI_ENODATA;
	if (h->size)
		out->size = h->size;
	if (h->op_flags)
		out->op_flags = h->op_flags;
	if (h->caps)
		out->caps = h->caps;
	return 0;
}

/* ------------------------------------------------------------------------------------ */
/* Addresses in fi_info. */

void sfi_addr_to_sin(const struct sfi_addr *a, struct sockaddr_in *sin)
{
	memset(sin, 0, sizeof(*sin));
	sin->sin_family = AF_INET;
	sin->sin_port = htons(a->port);
	sin->sin_addr.s_addr = htonl(0x7f000001u | ((uint32_t)a->node << 8));
}

int sfi_addr_from_sin(const void *addr, size_t len, struct sfi_addr *out)
{
	const struct sockaddr_in *sin = addr;
	uint32_t ip;

	if (len < sizeof(*sin) || sin->sin_family != AF_INET)
		return -FI_EINVAL;
	ip = ntohl(sin->sin_addr.s_addr);
	if ((ip & 0xff0000ffu) != 0x7f000001u)
		return -FI_EINVAL;
	out->node = (uint16_t)(ip >> 8);
	out->port = ntohs(sin->sin_port);
	out->magic = SFI_ADDR_MAGIC;
	return 0;
}

int sfi_addr_from_info(uint32_t addr_format, const void *addr, size_t addrlen,
		       struct sfi_addr *out)
{
	if (!addr)
		return -FI_EINVAL;
	if (addr_format == FI_SOCKADDR_IN)
		return sfi_addr_from_sin(addr, addrlen, out);
	if (addr_format == FI_ADDR_STR) {
		const char *s = addr;

		if (!addrlen || !memchr(s, '\0', addrlen))
			return -FI_EINVAL;
		return sfi_addr_parse_ext(s, NULL, 0, out);
	}
	if (addr_format != FI_FORMAT_UNSPEC || addrlen != sizeof(*out))
		return -FI_EINVAL;
	memcpy(out, addr, sizeof(*out));
	return out->magic == SFI_ADDR_MAGIC ? 0 : -FI_EINVAL;
}

/** Store @p a into dst and dstlen in @p addr_format (malloc'ed, freed by fi_freeinfo). */
static int set_info_addr(uint32_t addr_format, const struct sfi_addr *a, void **dst,
			 size_t *dstlen)
{
	if (addr_format == FI_SOCKADDR_IN) {
		struct sockaddr_in *sin = malloc(sizeof(*sin));

		if (!sin)
			return -FI_ENOMEM;
		sfi_addr_to_sin(a, sin);
		*dst = sin;
		*dstlen = sizeof(*sin);
		return 0;
	}
	if (addr_format == FI_ADDR_STR) {
		char buf[40];
		size_t len = sizeof(buf);

		sfi_addr_str(a, buf, &len);
		*dst = strdup(buf);
		if (!*dst)
			return -FI_ENOMEM;
		*dstlen = strlen(buf) + 1;
		return 0;
	}
	*dst = malloc(sizeof(*a));
	if (!*dst)
		return -FI_ENOMEM;
	memcpy(*dst, a, sizeof(*a));
	*dstlen = sizeof(*a);
	return 0;
}

/* ------------------------------------------------------------------------------------ */
/* fi_getinfo. */

/** Build one fi_info from a template and the hints; *out NULL when they do not match. */
static int build_info(uint32_t version, const struct fi_info *tmpl, const struct fi_info *hints,
		      const struct sfi_addr *src, const struct sfi_addr *dest,
		      struct fi_info **out)
{
	struct fi_info *fi;
	uint32_t fmt = FI_FORMAT_UNSPEC;
	uint64_t caps;
	int ret;

	*out = NULL;
	caps = match_caps(hints ? hints->caps : 0, tmpl->caps);
	if (!caps)
		return 0;
	if (hints && hints->addr_format != FI_FORMAT_UNSPEC) {
		if (hints->addr_format != FI_ADDR_STR && hints->addr_format != FI_SOCKADDR_IN)
			return 0;
		fmt = hints->addr_format;
	} else if (hints && hints->fabric_attr && hints->fabric_attr->prov_name &&
		   strstr(hints->fabric_attr->prov_name, "ofi_rxm")) {
		fmt = FI_SOCKADDR_IN;
	}
	if (hints && hints->fabric_attr &&
	    (str_mismatch(hints->fabric_attr->name, SFI_FABRIC_NAME) ||
	     prov_name_mismatch(hints->fabric_attr->prov_name)))
		return 0;

	fi = fi_allocinfo();
	if (!fi)
		return -FI_ENOMEM;
	*fi->tx_attr = *tmpl->tx_attr;
	*fi->rx_attr = *tmpl->rx_attr;
	*fi->ep_attr = *tmpl->ep_attr;
	*fi->domain_attr = *tmpl->domain_attr;
	fi->domain_attr->name = NULL;
	fi->tx_attr->inject_size = sfi_params.inject_size;
	fi->tx_attr->size = sfi_params.tx_size;
	fi->rx_attr->size = sfi_params.rx_size;
	fi->tx_attr->caps = caps & SFI_TX_CAPS;
	fi->rx_attr->caps = caps & SFI_RX_CAPS;
	if (hints && (match_ep(hints->ep_attr, fi->ep_attr) ||
		      match_domain(version, hints->domain_attr, hints->caps, &caps,
				   fi->domain_attr) ||
		      match_tx(hints->tx_attr, fi->tx_attr) ||
		      match_rx(hints->rx_attr, fi->rx_attr)))
		goto nomatch;
	if (!(caps & (FI_MSG | FI_TAGGED | FI_RMA)))
		goto nomatch;
	/* the side attributes never claim more than the endpoint does */
	fi->tx_attr->caps &= caps;
	fi->rx_attr->caps &= caps;
	fi->caps = caps;
	fi->mode = 0;
	fi->addr_format = fmt;
	fi->domain_attr->name = strdup(SFI_FABRIC_NAME);
	fi->fabric_attr->name = strdup(SFI_FABRIC_NAME);
	fi->fabric_attr->prov_version = SFI_PROV_VERSION;
	fi->fabric_attr->api_version = version;
	/* prov_name stays NULL: libfabric fills it in (and appends it for layered ones) */
	if (!fi->domain_attr->name || !fi->fabric_attr->name) {
		ret = -FI_ENOMEM;
		goto fail;
	}
	if (src) {
		ret = set_info_addr(fmt, src, &fi->src_addr, &fi->src_addrlen);
		if (ret)
			goto fail;
	}
	if (dest) {
		ret = set_info_addr(fmt, dest, &fi->dest_addr, &fi->dest_addrlen);
		if (ret)
			goto fail;
	}
	*out = fi;
	return 0;
nomatch:
	fi->domain_attr->name = NULL;
	fi_freeinfo(fi);
	return 0;
fail:
	fi_freeinfo(fi);
	return ret;
}

/**
 * Work out the source and destination addresses from node/service/flags and the hints.
 * Returns 0, or -FI_ENODATA when an address is not a scif one.
 */
static int resolve_addrs(const char *node, const char *service, uint64_t flags,
			 const struct fi_info *hints, struct sfi_addr *src, bool *has_src,
			 struct sfi_addr *dest, bool *has_dest)
{
	int self = sfi_self_node();

	*has_src = *has_dest = false;
	if (hints && hints->src_addr) {
		if (sfi_addr_from_info(hints->addr_format, hints->src_addr, hints->src_addrlen,
				       src))
			return -FI_ENODATA;
		*has_src = true;
	}
	if (hints && hints->dest_addr) {
		if (sfi_addr_from_info(hints->addr_format, hints->dest_addr,
				       hints->dest_addrlen, dest))
			return -FI_ENODATA;
		*has_dest = true;
	}
	if (flags & FI_SOURCE) {
		if (sfi_addr_parse_ext(node, service, -1, src))
			return -FI_ENODATA;
		*has_src = true;
	} else if (node) {
		if (sfi_addr_parse_ext(node, service, 0, dest))
			return -FI_ENODATA;
		*has_dest = true;
	} else if (service) {
		/* a service alone names the local port (a listener) */
		if (sfi_addr_parse_ext(NULL, service, -1, src))
			return -FI_ENODATA;
		*has_src = true;
	}
	if (!*has_src && self >= 0) {
		src->node = (uint16_t)self;
		src->port = 0;
		src->magic = SFI_ADDR_MAGIC;
		*has_src = true;
	}
	return 0;
}

static int sfi_getinfo(uint32_t version, const char *node, const char *service,
		       uint64_t flags, const struct fi_info *hints, struct fi_info **info)
{
	const struct fi_info *tmpls[] = { &sfi_msg_info, &sfi_rdm_info };
	struct fi_info *head = NULL, **tail = &head;
	struct sfi_addr src, dest;
	bool has_src, has_dest;
	int ret;

	if (!info)
		return -FI_EINVAL;
	*info = NULL;
	if (sfi_self_node() < 0) {
		SFI_INFO(FI_LOG_CORE, "no SCIF node available\n");
		return -FI_ENODATA;
	}
	ret = resolve_addrs(node, service, flags, hints, &src, &has_src, &dest, &has_dest);
	if (ret)
		return ret;
	for (size_t i = 0; i < sizeof(tmpls) / sizeof(tmpls[0]); i++) {
		struct fi_info *fi;

		ret = build_info(version, tmpls[i], hints, has_src ? &src : NULL,
				 has_dest ? &dest : NULL, &fi);
		if (ret) {
			fi_freeinfo(head);
			return ret;
		}
		if (fi) {
			*tail = fi;
			tail = &fi->next;
		}
	}
	if (!head)
		return -FI_ENODATA;
	*info = head;
	return 0;
}

static void sfi_cleanup(void)
{
}

struct fi_provider sfi_prov = {
	.version = SFI_PROV_VERSION,
	.fi_version = SFI_FI_VERSION,
	.name = SFI_PROV_NAME,
	.getinfo = sfi_getinfo,
	.fabric = sfi_fabric_open,
	.cleanup = sfi_cleanup,
};

/** Define the FI_SCIF_* variables and read the ones that are set. */
static void sfi_read_params(void)
{
	size_t v;
	int i;

	fi_param_define(&sfi_prov, "eager_max", FI_PARAM_SIZE_T,
			"RDM messages up to this size are sent eagerly, larger ones by "
			"rendezvous (default: %zu)", sfi_params.eager_max);
	fi_param_define(&sfi_prov, "inject_size", FI_PARAM_SIZE_T,
			"Largest fi_inject message (default: %zu)", sfi_params.inject_size);
	fi_param_define(&sfi_prov, "cq_size", FI_PARAM_SIZE_T,
			"Default completion queue depth; queues grow when full (default: %zu)",
			sfi_params.cq_size);
	fi_param_define(&sfi_prov, "tx_size", FI_PARAM_SIZE_T,
			"Default transmit queue depth (default: %zu)", sfi_params.tx_size);
	fi_param_define(&sfi_prov, "rx_size", FI_PARAM_SIZE_T,
			"Default receive queue depth (default: %zu)", sfi_params.rx_size);
	fi_param_define(&sfi_prov, "conn_timeout", FI_PARAM_INT,
			"Milliseconds before an RDM connection attempt fails (default: %d)",
			sfi_params.conn_timeout_ms);

	fi_param_define(&sfi_prov, "rndv_write_min", FI_PARAM_SIZE_T,
			"RDM rendezvous messages from this size are written by the sender into "
			"a window over the receive buffer, in one copy; 0 never (default: %zu)",
			sfi_params.rndv_write_min);

	fi_param_define(&sfi_prov, "lane_size", FI_PARAM_SIZE_T,
			"Bytes of the ring each side of an RDM connection offers its peer to "
			"write frames into (scif_mmap); a power of two from 4096 to 67108864, "
			"0 keeps frames on the SCIF byte stream (default: %zu)",
			sfi_params.lane_size);

	if (fi_param_get_size_t(&sfi_prov, "rndv_write_min", &v) == FI_SUCCESS)
		sfi_params.rndv_write_min = v;
	if (fi_param_get_size_t(&sfi_prov, "lane_size", &v) == FI_SUCCESS &&
	    (v == 0 || (v >= 4096 && v <= ((size_t)64 << 20) && !(v & (v - 1)))))
		sfi_params.lane_size = v;
	if (fi_param_get_size_t(&sfi_prov, "eager_max", &v) == FI_SUCCESS && v > 0 &&
	    v <= SFI_MAX_MSG)
		sfi_params.eager_max = v;
	if (fi_param_get_size_t(&sfi_prov, "inject_size", &v) == FI_SUCCESS && v <= 65536)
		sfi_params.inject_size = v;
	if (fi_param_get_size_t(&sfi_prov, "cq_size", &v) == FI_SUCCESS && v > 0)
		sfi_params.cq_size = v;
	if (fi_param_get_size_t(&sfi_prov, "tx_size", &v) == FI_SUCCESS && v > 0)
		sfi_params.tx_size = v;
	if (fi_param_get_size_t(&sfi_prov, "rx_size", &v) == FI_SUCCESS && v > 0)
		sfi_params.rx_size = v;
	if (fi_param_get_int(&sfi_prov, "conn_timeout", &i) == FI_SUCCESS && i > 0)
		sfi_params.conn_timeout_ms = i;
}

FI_EXT_INI
{
	sfi_read_params();
	return &sfi_prov;
}
