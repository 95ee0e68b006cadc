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

#include "epd.h"
#include "log.h"

struct scif_fabric scif__fab;

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static int init_err;

static void init_once_fn(void)
{
	scif__log_init();
	scif__msg_init();
	scif__bulk_init();
	scif__fab.ops = &scif__fabric_local;
	if (scif__fab.ops->size != sizeof(struct scif_fabric_ops)) {
		init_err = -ENXIO;
		return;
	}
	init_err = scif__fab.ops->attach(&scif__fab);
	if (init_err) {
		scif_info("fabric %s: attach failed: %d", scif__fab.ops->name, init_err);
		return;
	}
	/* Joined bottom-up: an endpoint's layers are set up in this order, let go in reverse. */
	scif__epd_add_layer(&scif__rma_layer);
	scif__epd_add_layer(&scif__conn_layer);
	scif__conn_setup();
	scif__monitor_setup();
}

int scif__init(void)
{
	pthread_once(&init_once, init_once_fn);
	return init_err;
}
