// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * init.c - library start-up: attach to the fabric, and stack the layers. Each layer knows
 * only those below it; this is the one place that knows them all:
 *
 *   api.c                        the scif_* entry points
 *   rma.c, window.c, mmap.c      registration, RMA, fences, scif_mmap    (a layer)
 *   nodeqp.c                     connections, control requests            (a layer)
 *   msg.c, bulk.c, rb.c, poll.c  the byte stream
 *   progress.c                   the monitor thread
 *   epd.c                        the endpoint table and an endpoint's life
 *   fabric/                      nodes, names, memory, doorbells
 *
 * Layers join the endpoint's life through struct scif_epd_layer (epd.h) and the monitor's
 * events through scif__monitor_handle, instead of being called by name from below.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "atomic.h"
#include "epd.h"
#include "log.h"

struct scif_fabric scif__fab;

static pthread_mutex_t init_lock = PTHREAD_MUTEX_INITIALIZER;
static int init_done;

/* Every op the core calls without looking (all but the optional ones) is there; a fabric
 * with shadow regions fences them too. */
static int fabric_ops_complete(const struct scif_fabric_ops *o)
{
	if (o->size != sizeof(*o) || (o->region_flush && !o->region_fence))
		return 0;
	return o->size == sizeof(*o) && o->attach && o->port_reserve && o->listen && o->connect &&
	       o->accept && o->relisten && o->peer_allowed && o->link_send && o->link_recv &&
	       o->region_create && o->region_export && o->region_import && o->region_destroy &&
	       o->bell_create && o->bell_export && o->bell_import && o->ring && o->drain &&
	       o->unpark && o->bell_close && o->mem_alloc && o->mem_export && o->mem_import &&
	       o->mem_free;
}

/* SCIF_FABRIC: "local" (the default), "pcie" or "ofi" (where built); any other name attaches none. */
static const struct scif_fabric_ops *fabric_choose(void)
{
	const char *v = getenv("SCIF_FABRIC");

	if (!v || !*v || !strcmp(v, "local"))
		return &scif__fabric_local;
	if (!strcmp(v, "pcie"))
		return &scif__fabric_pcie;
#ifdef SCIF_HAVE_OFI
	if (!strcmp(v, "ofi"))
		return &scif__fabric_ofi;
#endif
	scif_info("SCIF_FABRIC=%s: no such fabric", v);
	return NULL;
}

/*
 * Attach, and stack the layers once attached. A failure is not remembered: an attach that
 * ran out of memory or descriptors is tried again by the next call, which may succeed.
 */
static int init_locked(void)
{
	static int base_done;
	int ret;

	if (!base_done) {
		scif__log_init();
		scif__msg_init();
		scif__bulk_init();
		scif__fab.ops = fabric_choose();
		base_done = 1;
	}
	if (!scif__fab.ops)
		return -ENXIO;
	if (!fabric_ops_complete(scif__fab.ops))
		return -ENXIO;
	ret = scif__fab.ops->attach(&scif__fab);
	if (ret) {
		scif_info("fabric %s: attach failed: %d", scif__fab.ops->name, ret);
		return ret;
	}
	/* Joined bottom-up: an endpoint's layers are set up in this order, let go in reverse. */
	scif__epd_add_layer(&scif__rma_layer);
	scif__epd_add_layer(&scif__conn_layer);
	scif__conn_setup();
	scif__monitor_setup();
	return 0;
}

int scif__init(void)
{
	int ret = 0;

	if (scif__load_acquire(&init_done))
		return 0;
	pthread_mutex_lock(&init_lock);
	if (!init_done) {
		ret = init_locked();
		if (!ret)
			scif__store_release(&init_done, 1);
	}
	pthread_mutex_unlock(&init_lock);
	return ret;
}
