// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * ports.c - binding endpoints to ports. The fabric holds each port (local: an abstract
 * socket name the kernel frees with its last descriptor); here live the SCIF rules: the
 * privileged range, the dynamic range, and the sharing of a port by a listener and the
 * endpoints it accepted.
 */
#include <errno.h>
#include <linux/capability.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "epd.h"
#include "log.h"

#define SCIF_PORT_DYN_FIRST (SCIF_PORT_RSVD + 1)

static pthread_mutex_t port_lock = PTHREAD_MUTEX_INITIALIZER;

static int port_privileged(void)
{
	struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
	struct __user_cap_data_struct d[2];

	if (syscall(SYS_capget, &h, d) < 0)
		return geteuid() == 0;
	return (d[CAP_SYS_ADMIN / 32].effective >> (CAP_SYS_ADMIN % 32)) & 1;
}

struct scif_port *scif__port_ref(struct scif_port *p)
{
	pthread_mutex_lock(&port_lock);
	p->refs++;
	pthread_mutex_unlock(&port_lock);
	return p;
}

void scif__port_put(struct scif_port *p)
{
	int last;

	if (!p)
		return;
	pthread_mutex_lock(&port_lock);
	last = --p->refs == 0;
	pthread_mutex_unlock(&port_lock);
	if (last) {
		close(p->fd);
		free(p);
	}
}

static int port_try(uint16_t pn, struct scif_port **out)
{
	int fd = scif__fab.ops->port_reserve(&scif__fab, pn);
	struct scif_port *p;

	/* Taken, or privileged; anything else (descriptors, memory, locks) is a resource. */
	if (fd < 0)
		return fd == -EADDRINUSE || fd == -EACCES ? fd : -ENOMEM;
	p = malloc(sizeof(*p));
	if (!p) {
		close(fd);
		return -ENOMEM;
	}
	p->port = pn;
	p->fd = fd;
	p->refs = 1;
	*out = p;
	return 0;
}

/*
 * Called with the endpoint's ctl lock held and the state already checked. Returns the port.
 * An explicit port that looks taken is retried once after the monitor has run: the holder
 * may be one of our own endpoints whose peer just left (its port is released at disconnect).
 */
int scif__port_bind(struct scif_endpt *ep, uint16_t pn)
{
	struct scif_port *p = NULL;
	int ret;

	if (pn) {
		ret = port_try(pn, &p);
		if (ret == -EADDRINUSE) {
			scif__monitor_poll_now();
			ret = port_try(pn, &p);
		}
		if (ret == -EADDRINUSE)
			return -EINVAL;
		if (ret)
			return ret;
	} else {
		ret = -ENOSPC;
		for (unsigned int q = SCIF_PORT_DYN_FIRST; q <= 65535; q++) {
			ret = port_try((uint16_t)q, &p);
			if (ret != -EADDRINUSE)
				break;
		}
		if (ret == -EADDRINUSE)
			ret = -ENOSPC;
		if (ret)
			return ret;
	}
	ep->port = p;
	ep->sh->port = p->port;
	return p->port;
}

int scif__port_check_privilege(uint16_t pn)
{
	if (pn && pn < SCIF_ADMIN_PORT_END && !port_privileged())
		return -EACCES;
	return 0;
}
