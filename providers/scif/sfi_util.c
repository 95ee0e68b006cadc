/* SPDX-License-Identifier: LGPL-2.1-or-later */
/**
 * @file sfi_util.c
 * @brief Shared helpers: "not supported" ops tables, iovec copies, address strings, the
 *        endpoint bindings common to MSG and RDM endpoints and the completion helpers.
 */
#include "sfi.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ------------------------------------------------------------------------------------ */
/* fid ops that an object does not support. */

int sfi_no_bind(struct fid *fid, struct fid *bfid, uint64_t flags)
{
	(void)fid; (void)bfid; (void)flags;
	return -FI_ENOSYS;
}

int sfi_no_control(struct fid *fid, int command, void *arg)
{
	(void)fid; (void)command; (void)arg;
	return -FI_ENOSYS;
}

int sfi_no_ops_open(struct fid *fid, const char *name, uint64_t flags, void **ops,
		    void *context)
{
	(void)fid; (void)name; (void)flags; (void)ops; (void)context;
	return -FI_ENOSYS;
}

int sfi_no_tostr(const struct fid *fid, char *buf, size_t len)
{
	(void)fid; (void)buf; (void)len;
	return -FI_ENOSYS;
}

int sfi_no_ops_set(struct fid *fid, const char *name, uint64_t flags, void *ops,
		   void *context)
{
	(void)fid; (void)name; (void)flags; (void)ops; (void)context;
	return -FI_ENOSYS;
}

/* ---- atomics ---- */

static ssize_t no_atomic_write(struct fid_ep *ep, const void *buf, size_t count, void *desc,
			       fi_addr_t dest_addr, uint64_t addr, uint64_t key,
			       enum fi_datatype datatype, enum fi_op op, void *context)
{
	(void)ep; (void)buf; (void)count; (void)desc; (void)dest_addr; (void)addr; (void)key;
	(void)datatype; (void)op; (void)context;
	return -FI_ENOSYS;
}

static ssize_t no_atomic_writev(struct fid_ep *ep, const struct fi_ioc *iov, void **desc,
				size_t count, fi_addr_t dest_addr, uint64_t addr, uint64_t key,
				enum fi_datatype datatype, enum fi_op op, void *context)
{
	(void)ep; (void)iov; (void)desc; (void)count; (void)dest_addr; (void)addr; (void)key;
	(void)datatype; (void)op; (void)context;
	return -FI_ENOSYS;
}

static ssize_t no_atomic_writemsg(struct fid_ep *ep, const struct fi_msg_atomic *msg,
				  uint64_t flags)
{
	(void)ep; (void)msg; (void)flags;
	return -FI_ENOSYS;
}

static ssize_t no_atomic_inject(struct fid_ep *ep, const void *buf, size_t count,
				fi_addr_t dest_addr, uint64_t addr, uint64_t key,
				enum fi_datatype datatype, enum fi_op op)
{
	(void)ep; (void)buf; (void)count; (void)dest_addr; (void)addr; (void)key;
	(void)datatype; (void)op;
	return -FI_ENOSYS;
}

static ssize_t no_atomic_readwrite(struct fid_ep *ep, const void *buf, size_t count,
				   void *desc, void *result, void *result_desc,
				   fi_addr_t dest_addr, uint64_t addr, uint64_t key,
				   enum fi_datatype datatype, enum fi_op op, void *context)
{
	(void)ep; (void)buf; (void)count; (void)desc; (void)result; (void)result_desc;
	(void)dest_addr; (void)addr; (void)key; (void)datatype; (void)op; (void)context;
	return -FI_ENOSYS;
}

static ssize_t no_atomic_readwritev(struct fid_ep *ep, const struct fi_ioc *iov, void **desc,
				    size_t count, struct fi_ioc *resultv, void **result_desc,
				    size_t result_count, fi_addr_t dest_addr, uint64_t addr,
				    uint64_t key, enum fi_datatype datatype, enum fi_op op,
				    void *context)
{
	(void)ep; (void)iov; (void)desc; (void)count; (void)resultv; (void)result_desc;
	(void)result_count; (void)dest_addr; (void)addr; (void)key; (void)datatype; (void)op;
	(void)context;
	return -FI_ENOSYS;
}

static ssize_t no_atomic_readwritemsg(struct fid_ep *ep, const struct fi_msg_atomic *msg,
				      struct fi_ioc *resultv, void **result_desc,
				      size_t result_count, uint64_t flags)
{
	(void)ep; (void)msg; (void)resultv; (void)result_desc; (void)result_count; (void)flags;
	return -FI_ENOSYS;
}

static ssize_t no_atomic_compwrite(struct fid_ep *ep, const void *buf, size_t count,
				   void *desc, const void *compare, void *compare_desc,
				   void *result, void *result_desc, fi_addr_t dest_addr,
				   uint64_t addr, uint64_t key, enum fi_datatype datatype,
				   enum fi_op op, void *context)
{
	(void)ep; (void)buf; (void)count; (void)desc; (void)compare; (void)compare_desc;
	(void)result; (void)result_desc; (void)dest_addr; (void)addr; (void)key;
	(void)datatype; (void)op; (void)context;
	return -FI_ENOSYS;
}

static ssize_t no_atomic_compwritev(struct fid_ep *ep, const struct fi_ioc *iov, void **desc,
				    size_t count, const struct fi_ioc *comparev,
				    void **compare_desc, size_t compare_count,
				    struct fi_ioc *resultv, void **result_desc,
				    size_t result_count, fi_addr_t dest_addr, uint64_t addr,
				    uint64_t key, enum fi_datatype datatype, enum fi_op op,
				    void *context)
{
	(void)ep; (void)iov; (void)desc; (void)count; (void)comparev; (void)compare_desc;
	(void)compare_count; (void)resultv; (void)result_desc; (void)result_count;
	(void)dest_addr; (void)addr; (void)key; (void)datatype; (void)op; (void)context;
	return -FI_ENOSYS;
}

static ssize_t no_atomic_compwritemsg(struct fid_ep *ep, const struct fi_msg_atomic *msg,
				      const struct fi_ioc *comparev, void **compare_desc,
				      size_t compare_count, struct fi_ioc *resultv,
				      void **result_desc, size_t result_count, uint64_t flags)
{
	(void)ep; (void)msg; (void)comparev; (void)compare_desc; (void)compare_count;
	(void)resultv; (void)result_desc; (void)result_count; (void)flags;
	return -FI_ENOSYS;
}

static int no_atomic_valid(struct fid_ep *ep, enum fi_datatype datatype, enum fi_op op,
			   size_t *count)
{
	(void)ep; (void)datatype; (void)op; (void)count;
	return -FI_ENOSYS;
}

struct fi_ops_atomic sfi_no_atomic_ops = {
	.size = sizeof(struct fi_ops_atomic),
	.write = no_atomic_write,
	.writev = no_atomic_writev,
	.writemsg = no_atomic_writemsg,
	.inject = no_atomic_inject,
	.readwrite = no_atomic_readwrite,
	.readwritev = no_atomic_readwritev,
	.readwritemsg = no_atomic_readwritemsg,
	.compwrite = no_atomic_compwrite,
	.compwritev = no_atomic_compwritev,
	.compwritemsg = no_atomic_compwritemsg,
	.writevalid = no_atomic_valid,
	.readwritevalid = no_atomic_valid,
	.compwritevalid = no_atomic_valid,
};

/* ---- collectives ---- */

static ssize_t no_coll_barrier(struct fid_ep *ep, fi_addr_t coll_addr, void *context)
{
	(void)ep; (void)coll_addr; (void)context;
	return -FI_ENOSYS;
}

static ssize_t no_coll_broadcast(struct fid_ep *ep, void *buf, size_t count, void *desc,
				 fi_addr_t coll_addr, fi_addr_t root_addr,
				 enum fi_datatype datatype, uint64_t flags, void *context)
{
	(void)ep; (void)buf; (void)count; (void)desc; (void)coll_addr; (void)root_addr;
	(void)datatype; (void)flags; (void)context;
	return -FI_ENOSYS;
}

static ssize_t no_coll_gather_like(struct fid_ep *ep, const void *buf, size_t count,
				   void *desc, void *result, void *result_desc,
				   fi_addr_t coll_addr, enum fi_datatype datatype,
				   uint64_t flags, void *context)
{
	(void)ep; (void)buf; (void)count; (void)desc; (void)result; (void)result_desc;
	(void)coll_addr; (void)datatype; (void)flags; (void)context;
	return -FI_ENOSYS;
}

static ssize_t no_coll_reduce_like(struct fid_ep *ep, const void *buf, size_t count,
				   void *desc, void *result, void *result_desc,
				   fi_addr_t coll_addr, enum fi_datatype datatype, enum fi_op op,
				   uint64_t flags, void *context)
{
	(void)ep; (void)buf; (void)count; (void)desc; (void)result; (void)result_desc;
	(void)coll_addr; (void)datatype; (void)op; (void)flags; (void)context;
	return -FI_ENOSYS;
}

static ssize_t no_coll_reduce(struct fid_ep *ep, const void *buf, size_t count, void *desc,
			      void *result, void *result_desc, fi_addr_t coll_addr,
			      fi_addr_t root_addr, enum fi_datatype datatype, enum fi_op op,
			      uint64_t flags, void *context)
{
	(void)ep; (void)buf; (void)count; (void)desc; (void)result; (void)result_desc;
	(void)coll_addr; (void)root_addr; (void)datatype; (void)op; (void)flags; (void)context;
	return -FI_ENOSYS;
}

static ssize_t no_coll_rooted(struct fid_ep *ep, const void *buf, size_t count, void *desc,
			      void *result, void *result_desc, fi_addr_t coll_addr,
			      fi_addr_t root_addr, enum fi_datatype datatype, uint64_t flags,
			      void *context)
{
	(void)ep; (void)buf; (void)count; (void)desc; (void)result; (void)result_desc;
	(void)coll_addr; (void)root_addr; (void)datatype; (void)flags; (void)context;
	return -FI_ENOSYS;
}

static ssize_t no_coll_msg(struct fid_ep *ep, const struct fi_msg_collective *msg,
			   struct fi_ioc *resultv, void **result_desc, size_t result_count,
			   uint64_t flags)
{
	(void)ep; (void)msg; (void)resultv; (void)result_desc; (void)result_count; (void)flags;
	return -FI_ENOSYS;
}

static ssize_t no_coll_barrier2(struct fid_ep *ep, fi_addr_t coll_addr, uint64_t flags,
				void *context)
{
	(void)ep; (void)coll_addr; (void)flags; (void)context;
	return -FI_ENOSYS;
}

struct fi_ops_collective sfi_no_collective_ops = {
	.size = sizeof(struct fi_ops_collective),
	.barrier = no_coll_barrier,
	.broadcast = no_coll_broadcast,
	.alltoall = no_coll_gather_like,
	.allreduce = no_coll_reduce_like,
	.allgather = no_coll_gather_like,
	.reduce_scatter = no_coll_reduce_like,
	.reduce = no_coll_reduce,
	.scatter = no_coll_rooted,
	.gather = no_coll_rooted,
	.msg = no_coll_msg,
	.barrier2 = no_coll_barrier2,
};

/* ---- tagged ---- */

static ssize_t no_tagged_recv(struct fid_ep *ep, void *buf, size_t len, void *desc,
			      fi_addr_t src_addr, uint64_t tag, uint64_t ignore, void *context)
{
	(void)ep; (void)buf; (void)len; (void)desc; (void)src_addr; (void)tag; (void)ignore;
	(void)context;
	return -FI_ENOSYS;
}

static ssize_t no_tagged_recvv(struct fid_ep *ep, const struct iovec *iov, void **desc,
			       size_t count, fi_addr_t src_addr, uint64_t tag, uint64_t ignore,
			       void *context)
{
	(void)ep; (void)iov; (void)desc; (void)count; (void)src_addr; (void)tag; (void)ignore;
	(void)context;
	return -FI_ENOSYS;
}

static ssize_t no_tagged_recvmsg(struct fid_ep *ep, const struct fi_msg_tagged *msg,
				 uint64_t flags)
{
	(void)ep; (void)msg; (void)flags;
	return -FI_ENOSYS;
}

static ssize_t no_tagged_send(struct fid_ep *ep, const void *buf, size_t len, void *desc,
			      fi_addr_t dest_addr, uint64_t tag, void *context)
{
	(void)ep; (void)buf; (void)len; (void)desc; (void)dest_addr; (void)tag; (void)context;
	return -FI_ENOSYS;
}

static ssize_t no_tagged_sendv(struct fid_ep *ep, const struct iovec *iov, void **desc,
			       size_t count, fi_addr_t dest_addr, uint64_t tag, void *context)
{
	(void)ep; (void)iov; (void)desc; (void)count; (void)dest_addr; (void)tag; (void)context;
	return -FI_ENOSYS;
}

static ssize_t no_tagged_sendmsg(struct fid_ep *ep, const struct fi_msg_tagged *msg,
				 uint64_t flags)
{
	(void)ep; (void)msg; (void)flags;
	return -FI_ENOSYS;
}

static ssize_t no_tagged_inject(struct fid_ep *ep, const void *buf, size_t len,
				fi_addr_t dest_addr, uint64_t tag)
{
	(void)ep; (void)buf; (void)len; (void)dest_addr; (void)tag;
	return -FI_ENOSYS;
}

static ssize_t no_tagged_senddata(struct fid_ep *ep, const void *buf, size_t len, void *desc,
				  uint64_t data, fi_addr_t dest_addr, uint64_t tag,
				  void *context)
{
	(void)ep; (void)buf; (void)len; (void)desc; (void)data; (void)dest_addr; (void)tag;
	(void)context;
	return -FI_ENOSYS;
}

static ssize_t no_tagged_injectdata(struct fid_ep *ep, const void *buf, size_t len,
				    uint64_t data, fi_addr_t dest_addr, uint64_t tag)
{
	(void)ep; (void)buf; (void)len; (void)data; (void)dest_addr; (void)tag;
	return -FI_ENOSYS;
}

struct fi_ops_tagged sfi_no_tagged_ops = {
	.size = sizeof(struct fi_ops_tagged),
	.recv = no_tagged_recv,
	.recvv = no_tagged_recvv,
	.recvmsg = no_tagged_recvmsg,
	.send = no_tagged_send,
	.sendv = no_tagged_sendv,
	.sendmsg = no_tagged_sendmsg,
	.inject = no_tagged_inject,
	.senddata = no_tagged_senddata,
	.injectdata = no_tagged_injectdata,
};

/* ---- RMA ---- */

static ssize_t no_rma_io(struct fid_ep *ep, void *buf, size_t len, void *desc,
			 fi_addr_t addr_, uint64_t addr, uint64_t key, void *context)
{
	(void)ep; (void)buf; (void)len; (void)desc; (void)addr_; (void)addr; (void)key;
	(void)context;
	return -FI_ENOSYS;
}

static ssize_t no_rma_write(struct fid_ep *ep, const void *buf, size_t len, void *desc,
			    fi_addr_t dest_addr, uint64_t addr, uint64_t key, void *context)
{
	(void)ep; (void)buf; (void)len; (void)desc; (void)dest_addr; (void)addr; (void)key;
	(void)context;
	return -FI_ENOSYS;
}

static ssize_t no_rma_iov(struct fid_ep *ep, const struct iovec *iov, void **desc,
			  size_t count, fi_addr_t addr_, uint64_t addr, uint64_t key,
			  void *context)
{
	(void)ep; (void)iov; (void)desc; (void)count; (void)addr_; (void)addr; (void)key;
	(void)context;
	return -FI_ENOSYS;
}

static ssize_t no_rma_msg(struct fid_ep *ep, const struct fi_msg_rma *msg, uint64_t flags)
{
	(void)ep; (void)msg; (void)flags;
	return -FI_ENOSYS;
}

static ssize_t no_rma_inject(struct fid_ep *ep, const void *buf, size_t len,
			     fi_addr_t dest_addr, uint64_t addr, uint64_t key)
{
	(void)ep; (void)buf; (void)len; (void)dest_addr; (void)addr; (void)key;
	return -FI_ENOSYS;
}

static ssize_t no_rma_writedata(struct fid_ep *ep, const void *buf, size_t len, void *desc,
				uint64_t data, fi_addr_t dest_addr, uint64_t addr,
				uint64_t key, void *context)
{
	(void)ep; (void)buf; (void)len; (void)desc; (void)data; (void)dest_addr; (void)addr;
	(void)key; (void)context;
	return -FI_ENOSYS;
}

static ssize_t no_rma_injectdata(struct fid_ep *ep, const void *buf, size_t len,
				 uint64_t data, fi_addr_t dest_addr, uint64_t addr,
				 uint64_t key)
{
	(void)ep; (void)buf; (void)len; (void)data; (void)dest_addr; (void)addr; (void)key;
	return -FI_ENOSYS;
}

struct fi_ops_rma sfi_no_rma_ops = {
	.size = sizeof(struct fi_ops_rma),
	.read = no_rma_io,
	.readv = no_rma_iov,
	.readmsg = no_rma_msg,
	.write = no_rma_write,
	.writev = no_rma_iov,
	.writemsg = no_rma_msg,
	.inject = no_rma_inject,
	.writedata = no_rma_writedata,
	.injectdata = no_rma_injectdata,
};

/* ---- messages ---- */

static ssize_t no_msg_recv(struct fid_ep *ep, void *buf, size_t len, void *desc,
			   fi_addr_t src_addr, void *context)
{
	(void)ep; (void)buf; (void)len; (void)desc; (void)src_addr; (void)context;
	return -FI_ENOSYS;
}

static ssize_t no_msg_iov(struct fid_ep *ep, const struct iovec *iov, void **desc,
			  size_t count, fi_addr_t addr, void *context)
{
	(void)ep; (void)iov; (void)desc; (void)count; (void)addr; (void)context;
	return -FI_ENOSYS;
}

static ssize_t no_msg_msg(struct fid_ep *ep, const struct fi_msg *msg, uint64_t flags)
{
	(void)ep; (void)msg; (void)flags;
	return -FI_ENOSYS;
}

static ssize_t no_msg_send(struct fid_ep *ep, const void *buf, size_t len, void *desc,
			   fi_addr_t dest_addr, void *context)
{
	(void)ep; (void)buf; (void)len; (void)desc; (void)dest_addr; (void)context;
	return -FI_ENOSYS;
}

static ssize_t no_msg_inject(struct fid_ep *ep, const void *buf, size_t len,
			     fi_addr_t dest_addr)
{
	(void)ep; (void)buf; (void)len; (void)dest_addr;
	return -FI_ENOSYS;
}

static ssize_t no_msg_senddata(struct fid_ep *ep, const void *buf, size_t len, void *desc,
			       uint64_t data, fi_addr_t dest_addr, void *context)
{
	(void)ep; (void)buf; (void)len; (void)desc; (void)data; (void)dest_addr; (void)context;
	return -FI_ENOSYS;
}

static ssize_t no_msg_injectdata(struct fid_ep *ep, const void *buf, size_t len,
				 uint64_t data, fi_addr_t dest_addr)
{
	(void)ep; (void)buf; (void)len; (void)data; (void)dest_addr;
	return -FI_ENOSYS;
}

struct fi_ops_msg sfi_no_msg_ops = {
	.size = sizeof(struct fi_ops_msg),
	.recv = no_msg_recv,
	.recvv = no_msg_iov,
	.recvmsg = no_msg_msg,
	.send = no_msg_send,
	.sendv = no_msg_iov,
	.sendmsg = no_msg_msg,
	.inject = no_msg_inject,
	.senddata = no_msg_senddata,
	.injectdata = no_msg_injectdata,
};

/* ---- connection management ---- */

static int no_cm_setname(fid_t fid, void *addr, size_t addrlen)
{
	(void)fid; (void)addr; (void)addrlen;
	return -FI_ENOSYS;
}

static int no_cm_getname(fid_t fid, void *addr, size_t *addrlen)
{
	(void)fid; (void)addr; (void)addrlen;
	return -FI_ENOSYS;
}

int sfi_no_getpeer(struct fid_ep *ep, void *addr, size_t *addrlen)
{
	(void)ep; (void)addr; (void)addrlen;
	return -FI_ENOSYS;
}

int sfi_no_connect(struct fid_ep *ep, const void *addr, const void *param,
		   size_t paramlen)
{
	(void)ep; (void)addr; (void)param; (void)paramlen;
	return -FI_ENOSYS;
}

int sfi_no_listen(struct fid_pep *pep)
{
	(void)pep;
	return -FI_ENOSYS;
}

int sfi_no_accept(struct fid_ep *ep, const void *param, size_t paramlen)
{
	(void)ep; (void)param; (void)paramlen;
	return -FI_ENOSYS;
}

int sfi_no_reject(struct fid_pep *pep, fid_t handle, const void *param, size_t paramlen)
{
	(void)pep; (void)handle; (void)param; (void)paramlen;
	return -FI_ENOSYS;
}

int sfi_no_shutdown(struct fid_ep *ep, uint64_t flags)
{
	(void)ep; (void)flags;
	return -FI_ENOSYS;
}

int sfi_no_join(struct fid_ep *ep, const void *addr, uint64_t flags, struct fid_mc **mc,
		void *context)
{
	(void)ep; (void)addr; (void)flags; (void)mc; (void)context;
	return -FI_ENOSYS;
}

struct fi_ops_cm sfi_no_cm_ops = {
	.size = sizeof(struct fi_ops_cm),
	.setname = no_cm_setname,
	.getname = no_cm_getname,
	.getpeer = sfi_no_getpeer,
	.connect = sfi_no_connect,
	.listen = sfi_no_listen,
	.accept = sfi_no_accept,
	.reject = sfi_no_reject,
	.shutdown = sfi_no_shutdown,
	.join = sfi_no_join,
};

/* ---- endpoint control ---- */

int sfi_no_tx_ctx(struct fid_ep *sep, int index, struct fi_tx_attr *attr,
		  struct fid_ep **tx_ep, void *context)
{
	(void)sep; (void)index; (void)attr; (void)tx_ep; (void)context;
	return -FI_ENOSYS;
}

int sfi_no_rx_ctx(struct fid_ep *sep, int index, struct fi_rx_attr *attr,
		  struct fid_ep **rx_ep, void *context)
{
	(void)sep; (void)index; (void)attr; (void)rx_ep; (void)context;
	return -FI_ENOSYS;
}

ssize_t sfi_ep_queue_left(struct sfi_ep *ep, const size_t *size, const size_t *used)
{
	ssize_t n;

	sfi_domain_lock(ep->domain);
	n = ep->enabled ? (ssize_t)(*size - *used) : -FI_EOPBADSTATE;
	sfi_domain_unlock(ep->domain);
	return n;
}

/* ------------------------------------------------------------------------------------ */
/* RMA. */

int sfi_rma_copy(scif_epd_t epd, bool write, const struct iovec *iov, size_t count,
		 const struct fi_rma_iov *rma, size_t rma_count)
{
	size_t li = 0, loff = 0, ri = 0, roff = 0;

	for (;;) {
		size_t chunk;
		uint64_t off;
		char *base;
		int ret;

		while (li < count && loff == iov[li].iov_len) {
			li++;
			loff = 0;
		}
		while (ri < rma_count && roff == rma[ri].len) {
			ri++;
			roff = 0;
		}
		if (li == count || ri == rma_count)
			return 0;
		chunk = iov[li].iov_len - loff;
		if (chunk > rma[ri].len - roff)
			chunk = rma[ri].len - roff;
		/* key + addr is the SCIF offset (modulo 2^64: with FI_MR_VIRT_ADDR the key
		 * holds minus the region's address); SCIF itself checks the range */
		off = sfi_rma_offset(rma[ri].addr, rma[ri].key) + roff;
		if (off > (uint64_t)INT64_MAX || chunk > (uint64_t)INT64_MAX - off)
			return EACCES;
		base = (char *)iov[li].iov_base + loff;
		if (write)
			ret = scif_vwriteto(epd, base, chunk, (off_t)off, SCIF_RMA_SYNC);
		else
			ret = scif_vreadfrom(epd, base, chunk, (off_t)off, SCIF_RMA_SYNC);
		if (ret < 0) {
			int e = errno;

			SFI_WARN(FI_LOG_EP_DATA, "RMA %s of %zu bytes at %#" PRIx64 " failed: %s\n",
				 write ? "write" : "read", chunk, off, strerror(e));
			return e;
		}
		loff += chunk;
		roff += chunk;
	}
}

const char *sfi_strerror(int prov_errno, char *buf, size_t len)
{
	const char *s = fi_strerror(prov_errno < 0 ? -prov_errno : prov_errno);

	if (buf && len) {
		strncpy(buf, s, len - 1);
		buf[len - 1] = '\0';
		return buf;
	}
	return s;
}

/* ------------------------------------------------------------------------------------ */
/* iovec helpers. */

size_t sfi_copy_from_iov(void *buf, size_t len, const struct iovec *iov, size_t count,
			 size_t off)
{
	size_t done = 0;

	for (size_t i = 0; i < count && done < len; i++) {
		if (off >= iov[i].iov_len) {
			off -= iov[i].iov_len;
			continue;
		}
		size_t n = iov[i].iov_len - off;

		if (n > len - done)
			n = len - done;
		memcpy((char *)buf + done, (const char *)iov[i].iov_base + off, n);
		done += n;
		off = 0;
	}
	return done;
}

void sfi_zero(void *p, size_t n)
{
	memset(p, 0, n);
}

size_t sfi_copy_to_iov(const struct iovec *iov, size_t count, size_t off, const void *buf,
		       size_t len)
{
	size_t done = 0;

	for (size_t i = 0; i < count && done < len; i++) {
		if (off >= iov[i].iov_len) {
			off -= iov[i].iov_len;
			continue;
		}
		size_t n = iov[i].iov_len - off;

		if (n > len - done)
			n = len - done;
		memcpy((char *)iov[i].iov_base + off, (const char *)buf + done, n);
		done += n;
		off = 0;
	}
	return done;
}

/* ------------------------------------------------------------------------------------ */
/* Addresses. */

int sfi_self_node(void)
{
	uint16_t self = 0;

	if (scif_get_nodeIDs(NULL, 0, &self) < 0)
		return -FI_ENODEV;
	return self;
}

/** Parse a decimal number in [0, max] that fills the whole string; 0 or -FI_EINVAL. */
static int parse_num(const char *s, unsigned long max, unsigned long *out)
{
	char *end;

	if (!s || !*s || *s == '-' || *s == '+')
		return -FI_EINVAL;
	errno = 0;
	unsigned long v = strtoul(s, &end, 10);

	if (errno || *end || v > max)
		return -FI_EINVAL;
	*out = v;
	return 0;
}

/** True when @p node names this host: "localhost", a loopback address or our hostname. */
static bool is_local_host(const char *node)
{
	char host[256];

	if (!strcmp(node, "localhost") || !strncmp(node, "127.", 4) || !strcmp(node, "::1"))
		return true;
	if (gethostname(host, sizeof(host)) == 0) {
		host[sizeof(host) - 1] = '\0';
		if (!strcmp(node, host))
			return true;
		/* "host" also matches "host.domain" and the reverse */
		size_t n = strlen(node), h = strlen(host);

		if ((n < h && host[n] == '.' && !strncmp(node, host, n)) ||
		    (h < n && node[h] == '.' && !strncmp(node, host, h)))
			return true;
	}
	return false;
}

/**
 * Parse a node/service pair. @p host_node is the node a host name ("localhost", this
 * machine's name) stands for: this process's node for a local address, node 0 (the host)
 * for a peer's address. Returns 0 or -FI_EINVAL.
 */
int sfi_addr_parse_ext(const char *node, const char *service, int host_node,
		       struct sfi_addr *out)
{
	unsigned long v;
	int self;

	memset(out, 0, sizeof(*out));
	out->magic = SFI_ADDR_MAGIC;
	if (node && !strncmp(node, "fi_scif://", 10)) {
		const char *p = node + 10;
		const char *colon = strchr(p, ':');
		char tmp[16];

		if (!colon || (size_t)(colon - p) >= sizeof(tmp))
			return -FI_EINVAL;
		memcpy(tmp, p, (size_t)(colon - p));
		tmp[colon - p] = '\0';
		if (parse_num(tmp, UINT16_MAX - 1, &v))
			return -FI_EINVAL;
		out->node = (uint16_t)v;
		if (parse_num(colon + 1, UINT16_MAX, &v))
			return -FI_EINVAL;
		out->port = (uint16_t)v;
	} else if (node && *node && parse_num(node, UINT16_MAX - 1, &v) == 0) {
		out->node = (uint16_t)v;
	} else if (!node || !*node || is_local_host(node)) {
		if (host_node < 0) {
			self = sfi_self_node();
			if (self < 0)
				return self;
			host_node = self;
		}
		out->node = (uint16_t)host_node;
	} else {
		return -FI_EINVAL;
	}
	if (service && *service) {
		if (parse_num(service, UINT16_MAX, &v))
			return -FI_EINVAL;
		out->port = (uint16_t)v;
	}
	return 0;
}

int sfi_addr_parse(const char *node, const char *service, struct sfi_addr *out)
{
	return sfi_addr_parse_ext(node, service, -1, out);
}

const char *sfi_addr_str(const struct sfi_addr *a, char *buf, size_t *len)
{
	char tmp[40];
	int n = snprintf(tmp, sizeof(tmp), "fi_scif://%" PRIu16 ":%" PRIu16, a->node, a->port);

	if (buf && *len) {
		size_t c = (size_t)n < *len ? (size_t)n : *len - 1;

		memcpy(buf, tmp, c);
		buf[c] = '\0';
	}
	*len = (size_t)n + 1;
	return buf;
}

/* ------------------------------------------------------------------------------------ */
/* Endpoint bindings. */

#define SFI_CNTR_BIND_FLAGS (FI_SEND | FI_RECV | FI_READ | FI_WRITE | FI_REMOTE_READ | \
			     FI_REMOTE_WRITE)

/** Hold a reference on a counter for each of the slots selected by @p flags. */
static int bind_cntr(struct sfi_ep *ep, struct sfi_cntr *c, uint64_t flags)
{
	struct {
		uint64_t flag;
		struct sfi_cntr **slot;
	} map[] = {
		{ FI_SEND, &ep->send_cntr }, { FI_RECV, &ep->recv_cntr },
		{ FI_READ, &ep->read_cntr }, { FI_WRITE, &ep->write_cntr },
		{ FI_REMOTE_READ, &ep->rem_read_cntr }, { FI_REMOTE_WRITE, &ep->rem_write_cntr },
	};
	bool had = false;
	int ret;

	if (!(flags & SFI_CNTR_BIND_FLAGS) || (flags & ~SFI_CNTR_BIND_FLAGS))
		return -FI_EBADFLAGS;
	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
		if ((flags & map[i].flag) && *map[i].slot)
			return -FI_EINVAL;
	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
		if (*map[i].slot == c)
			had = true;
	if (!had) {
		ret = sfi_cntr_attach(c, ep);
		if (ret)
			return ret;
		if (c->wait && ep->wait_fds)
			ep->wait_fds(ep, c->wait, true);
	}
	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
		if (flags & map[i].flag) {
			*map[i].slot = c;
			c->refs++;
		}
	}
	return 0;
}

/** Bind a CQ to the transmit and/or receive side. */
static int bind_cq(struct sfi_ep *ep, struct sfi_cq *cq, uint64_t flags)
{
	const uint64_t valid = FI_TRANSMIT | FI_RECV | FI_SELECTIVE_COMPLETION;
	bool had;
	int ret;

	if (!(flags & (FI_TRANSMIT | FI_RECV)) || (flags & ~valid))
		return -FI_EBADFLAGS;
	if (((flags & FI_TRANSMIT) && ep->tx_cq) || ((flags & FI_RECV) && ep->rx_cq))
		return -FI_EINVAL;
	had = ep->tx_cq == cq || ep->rx_cq == cq;
	if (!had) {
		ret = sfi_cq_attach(cq, ep);
		if (ret)
			return ret;
		if (cq->wait && ep->wait_fds)
			ep->wait_fds(ep, cq->wait, true);
	}
	if (flags & FI_TRANSMIT) {
		ep->tx_cq = cq;
		cq->refs++;
		if (flags & FI_SELECTIVE_COMPLETION)
			ep->tx_flags |= FI_SELECTIVE_COMPLETION;
	}
	if (flags & FI_RECV) {
		ep->rx_cq = cq;
		cq->refs++;
		if (flags & FI_SELECTIVE_COMPLETION)
			ep->rx_flags |= FI_SELECTIVE_COMPLETION;
	}
	return 0;
}

int sfi_ep_bind_common(struct sfi_ep *ep, struct fid *bfid, uint64_t flags)
{
	int ret;

	if (!bfid)
		return -FI_EINVAL;
	switch (bfid->fclass) {
	case FI_CLASS_CQ: {
		struct sfi_cq *cq = sfi_container_of(bfid, struct sfi_cq, cq_fid.fid);

		if (cq->domain != ep->domain)
			return -FI_EINVAL;
		sfi_domain_lock(ep->domain);
		ret = bind_cq(ep, cq, flags);
		sfi_domain_unlock(ep->domain);
		return ret;
	}
	case FI_CLASS_CNTR: {
		struct sfi_cntr *c = sfi_container_of(bfid, struct sfi_cntr, cntr_fid.fid);

		if (c->domain != ep->domain)
			return -FI_EINVAL;
		sfi_domain_lock(ep->domain);
		ret = bind_cntr(ep, c, flags);
		sfi_domain_unlock(ep->domain);
		return ret;
	}
	case FI_CLASS_AV: {
		struct sfi_av *av = sfi_container_of(bfid, struct sfi_av, av_fid.fid);

		if (ep->type != FI_EP_RDM)
			return -FI_ENOSYS;
		if (av->domain != ep->domain || flags)
			return flags ? -FI_EBADFLAGS : -FI_EINVAL;
		sfi_domain_lock(ep->domain);
		if (ep->av) {
			ret = -FI_EINVAL;
		} else {
			ep->av = av;
			av->refs++;
			ret = 0;
		}
		sfi_domain_unlock(ep->domain);
		return ret;
	}
	case FI_CLASS_EQ: {
		struct sfi_eq *eq = sfi_container_of(bfid, struct sfi_eq, eq_fid.fid);

		if (eq->fabric != ep->domain->fabric)
			return -FI_EINVAL;
		sfi_domain_lock(ep->domain);
		if (ep->eq) {
			ret = -FI_EINVAL;
		} else {
			pthread_mutex_lock(&eq->qlock);
			eq->refs++;
			pthread_mutex_unlock(&eq->qlock);
			ep->eq = eq;
			ret = 0;
		}
		sfi_domain_unlock(ep->domain);
		return ret;
	}
	default:
		return -FI_EINVAL;
	}
}

void sfi_ep_unbind_all(struct sfi_ep *ep)
{
	struct sfi_cntr **slots[] = {
		&ep->send_cntr, &ep->recv_cntr, &ep->read_cntr, &ep->write_cntr,
		&ep->rem_read_cntr, &ep->rem_write_cntr,
	};
	const size_t n = sizeof(slots) / sizeof(slots[0]);

	sfi_domain_lock(ep->domain);
	for (size_t i = 0; i < n; i++) {
		struct sfi_cntr *c = *slots[i];
		bool last = true;

		if (!c)
			continue;
		for (size_t j = i + 1; j < n; j++)
			if (*slots[j] == c)
				last = false;
		if (last) {
			if (c->wait && ep->wait_fds)
				ep->wait_fds(ep, c->wait, false);
			sfi_cntr_detach(c, ep);
		}
		c->refs--;
		*slots[i] = NULL;
	}
	if (ep->tx_cq) {
		struct sfi_cq *cq = ep->tx_cq;

		if (cq != ep->rx_cq) {
			if (cq->wait && ep->wait_fds)
				ep->wait_fds(ep, cq->wait, false);
			sfi_cq_detach(cq, ep);
		}
		cq->refs--;
		ep->tx_cq = NULL;
	}
	if (ep->rx_cq) {
		struct sfi_cq *cq = ep->rx_cq;

		if (cq->wait && ep->wait_fds)
			ep->wait_fds(ep, cq->wait, false);
		sfi_cq_detach(cq, ep);
		cq->refs--;
		ep->rx_cq = NULL;
	}
	if (ep->av) {
		ep->av->refs--;
		ep->av = NULL;
	}
	if (ep->eq) {
		pthread_mutex_lock(&ep->eq->qlock);
		ep->eq->refs--;
		pthread_mutex_unlock(&ep->eq->qlock);
		ep->eq = NULL;
	}
	sfi_domain_unlock(ep->domain);
}

/* ------------------------------------------------------------------------------------ */
/* Completions. */

/** The flags a completion entry may carry (the operation's class and direction). */
#define SFI_CQ_FLAGS (FI_SEND | FI_RECV | FI_MSG | FI_TAGGED | FI_RMA | FI_ATOMIC | FI_READ | \
		      FI_WRITE | FI_REMOTE_READ | FI_REMOTE_WRITE | FI_REMOTE_CQ_DATA | \
		      FI_MULTI_RECV)

/** The counter of the initiator side an operation counts on. */
static struct sfi_cntr *tx_cntr(struct sfi_ep *ep, uint64_t op_flags)
{
	if (op_flags & FI_READ)
		return ep->read_cntr;
	if (op_flags & FI_WRITE)
		return ep->write_cntr;
	return ep->send_cntr;
}

/** The counter of the target side an operation counts on. */
static struct sfi_cntr *rx_cntr(struct sfi_ep *ep, uint64_t op_flags)
{
	if (op_flags & FI_REMOTE_READ)
		return ep->rem_read_cntr;
	if (op_flags & FI_REMOTE_WRITE)
		return ep->rem_write_cntr;
	return ep->recv_cntr;
}

void sfi_ep_complete_tx(struct sfi_ep *ep, void *context, uint64_t op_flags)
{
	struct sfi_cntr *c = tx_cntr(ep, op_flags);

	if (ep->tx_cq && (!(ep->tx_flags & FI_SELECTIVE_COMPLETION) ||
			  (op_flags & FI_COMPLETION))) {
		if (sfi_cq_write(ep->tx_cq, context, op_flags & SFI_CQ_FLAGS, 0, NULL, 0, 0,
				 FI_ADDR_NOTAVAIL))
			SFI_WARN(FI_LOG_CQ, "completion lost: out of memory\n");
	}
	if (c)
		sfi_cntr_inc(c);
}

void sfi_ep_complete_rx(struct sfi_ep *ep, void *context, uint64_t op_flags, size_t len,
			void *buf, uint64_t data, uint64_t tag, fi_addr_t src)
{
	struct sfi_cntr *c = rx_cntr(ep, op_flags);
	bool remote = op_flags & (FI_REMOTE_READ | FI_REMOTE_WRITE);
	bool want;

	if (remote) /* target-side RMA: an entry only to deliver remote CQ data */
		want = op_flags & FI_REMOTE_CQ_DATA;
	else
		want = !(ep->rx_flags & FI_SELECTIVE_COMPLETION) || (op_flags & FI_COMPLETION);
	if (ep->rx_cq && want) {
		if (sfi_cq_write(ep->rx_cq, context, op_flags & SFI_CQ_FLAGS, len, buf, data, tag,
				 src))
			SFI_WARN(FI_LOG_CQ, "completion lost: out of memory\n");
	}
	if (c)
		sfi_cntr_inc(c);
}

void sfi_ep_error_tx(struct sfi_ep *ep, void *context, uint64_t op_flags, int err)
{
	struct sfi_cntr *c = tx_cntr(ep, op_flags);
	struct fi_cq_err_entry e = {
		.op_context = context,
		.flags = op_flags & SFI_CQ_FLAGS,
		.err = err < 0 ? -err : err,
		.prov_errno = err < 0 ? -err : err,
	};

	if (ep->tx_cq && sfi_cq_write_err(ep->tx_cq, &e))
		SFI_WARN(FI_LOG_CQ, "error completion lost: out of memory\n");
	if (c)
		sfi_cntr_err(c);
}

void sfi_ep_error_rx(struct sfi_ep *ep, void *context, uint64_t op_flags, int err,
		     size_t len, void *buf, uint64_t data, uint64_t tag, size_t olen)
{
	struct sfi_cntr *c = rx_cntr(ep, op_flags);
	struct fi_cq_err_entry e = {
		.op_context = context,
		.flags = op_flags & SFI_CQ_FLAGS,
		.len = len,
		.buf = buf,
		.data = data,
		.tag = tag,
		.olen = olen,
		.err = err < 0 ? -err : err,
		.prov_errno = err < 0 ? -err : err,
	};

	if (ep->rx_cq && sfi_cq_write_err(ep->rx_cq, &e))
		SFI_WARN(FI_LOG_CQ, "error completion lost: out of memory\n");
	if (c)
		sfi_cntr_err(c);
}
