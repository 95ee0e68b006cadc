// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * poll.c - scif_poll(): poll(2) over endpoints and any other descriptors. Endpoint
 * readiness is computed from SCIF state (spec 3.22); the kernel poll only provides sleeping,
 * on descriptors the library keeps readable/writable in step with that state.
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>

#include "atomic.h"
#include "epd.h"

/* Readiness of one endpoint; with @arm, prepare its descriptor to wake a sleep. */
static short poll_revents(struct scif_endpt *ep, short events, int arm)
{
	struct scif_ep_shared *sh = ep->sh;
	switch (scif__epd_state(ep)) {
	case SCIFEP_LISTENING:
		return (events & POLLIN) && scif__conn_listen_pending(ep) ? POLLIN : 0;
	case SCIFEP_CONNECTING:
		return 0;
	case SCIFEP_CONNECTED:
	case SCIFEP_DISCONNECTED:
		return (short)(scif__msg_revents(ep, events, arm) |
			       (scif__load_acquire(&sh->nb_collect) ? (events & POLLOUT) : 0));
	default:
		/* A finished (failed) non-blocking connect reports POLLOUT; else not pollable. */
		return scif__load_acquire(&sh->nb_collect) ? (short)(events & POLLOUT) : POLLERR;
	}
}

int scif__poll(struct scif_pollepd *epds, unsigned int nepds, long timeout)
{
	struct pollfd stack_pfd[32];
	struct scif_endpt *stack_ep[32];
	struct pollfd *pfd = stack_pfd;
	struct scif_endpt **eps = stack_ep;
	uint64_t deadline = 0;
	unsigned int nscif = 0;
	int ret;

	if (nepds > 32) {
		pfd = calloc(nepds, sizeof(*pfd));
		eps = calloc(nepds, sizeof(*eps));
		if (!pfd || !eps) {
			ret = -ENOMEM;
			goto out;
		}
	}
	/* Like poll(2), the timeout is an int of milliseconds; negative waits forever. */
	if (timeout > 0)
		deadline = scif__now_ns() + (uint64_t)(int)timeout * 1000000u;
	for (unsigned int i = 0; i < nepds; i++) {
		eps[i] = epds[i].epd >= 0 ? scif__epd_find(epds[i].epd) : NULL;
		nscif += eps[i] != NULL;
	}
	for (;;) {
		int ready = 0, wait_ms;

		for (unsigned int i = 0; i < nepds; i++) {
			pfd[i] = (struct pollfd){ .fd = epds[i].epd, .events = epds[i].events };
			/* Endpoints ready now are reported as seen now (poll is a snapshot). */
			epds[i].revents = eps[i] ? poll_revents(eps[i], epds[i].events, 1) : 0;
			ready += epds[i].revents != 0;
		}
		if (ready || timeout == 0) {
			wait_ms = 0;
		} else if (timeout < 0) {
			wait_ms = -1;
		} else {
			uint64_t now = scif__now_ns();

			wait_ms = now >= deadline ? 0 : (int)((deadline - now + 999999) / 1000000);
		}
		/*
		 * Endpoints are looked at again at least once a second (scif__wait_recheck_ms):
		 * readiness the library computes is never lost to a doorbell that could not be
		 * rung (ENOBUFS).
		 */
		if (nscif && (wait_ms < 0 || wait_ms > scif__wait_recheck_ms))
			wait_ms = scif__wait_recheck_ms;
		if (wait_ms && nscif)
			scif__fab_sleep(1);
		ret = poll(pfd, nepds, wait_ms);
		if (ret < 0)
			ret = -errno;
		if (wait_ms && nscif)
			scif__fab_sleep(0);
		if (ret < 0)
			break;
		ret = 0;
		for (unsigned int i = 0; i < nepds; i++) {
			short rev = pfd[i].revents;

			if (eps[i])
				rev = ready ? epds[i].revents : poll_revents(eps[i], epds[i].events, 0);
			epds[i].revents = rev;
			ret += rev != 0;
		}
		if (ret || wait_ms == 0)
			break;
		/* Woken for something already consumed by another thread: sleep again. */
	}
	for (unsigned int i = 0; i < nepds; i++)
		if (eps[i])
			scif__epd_put(eps[i]);
out:
	if (pfd != stack_pfd)
		free(pfd);
	if (eps != stack_ep)
		free(eps);
	return ret;
}
