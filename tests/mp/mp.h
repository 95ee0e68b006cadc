/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* mp.h - what the multi-process test files share (they also see common.h and stream.h). */
#ifndef SCIF_TESTS_MP_H
#define SCIF_TESTS_MP_H

#include "common.h"
#include "mp/stream.h"

/* After a lying peer: the listener @lep on @port still serves an honest one, intact. */
static inline void mp_expect_listener_serves(scif_epd_t lep, uint16_t port)
{
	char a[16];
	char *args[] = { "stream", "0", test_num(a, port), "1", "4096", "7", NULL };
	pid_t pid = test_spawn_peer(1, args);
	struct stream_conn c = { .tx_seed = stream_seed(7, 0, 0), .rx_seed = stream_seed(7, 0, 1),
				 .bytes = 4096 };
	struct scif_portID peer;

	test_accept_or_peer_death(lep, &peer, &c.ep, pid, 30000);
	stream_start(&c);
	cr_expect_eq(stream_join(&c), 0);
	cr_expect_eq(test_wait(pid), 0);
	scif_close(c.ep);
}

#endif /* SCIF_TESTS_MP_H */
