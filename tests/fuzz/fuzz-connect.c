// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * fuzz-connect.c - libFuzzer target: the connector's side of the connection handshake
 * (libscif/nodeqp.c: CNCT_GNT/CNCT_REJ parsing, the acceptor's region, non-blocking connect
 * finished by the monitor thread, blocking connect).
 *
 * Per input the library connects to node 1, where the fuzzer listens. The fuzzer takes the
 * link, checks the library's CNCT_REQ (well-formed, a sealed region of the announced size,
 * a bell), and answers as the input says: GNTs or REJs with any field changed, any
 * descriptors, several messages, silence, hang-ups. The library's connect is non-blocking
 * (finished by the monitor, collected by a second scif_connect after POLLOUT) or blocking
 * (on the application thread).
 *
 * Checked: no crash or sanitizer report; the connect finishes once the fuzzer has hung up
 * at the latest (within FZ_HANG_MS); scif_connect fails only with errnos the spec lists, succeeds
 * only on a valid GNT and never after a REJ (ENOMEM only for a REJ saying ENOMEM); the
 * connection it made works with the fuzzer's region; no descriptor is left over.
 *
 * Input: mode byte (bit 0: blocking), the answers (fzp_build_send, a GNT by default), a
 * byte of hang-ups, then operations on the connection. Zeros: one honest GNT.
 */
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fuzz.h"
#include "peer.h"

#define PORT 2050

static struct fz_app app;
static int lfd = -1;

struct connect_call {
	scif_epd_t ep;
	struct scif_portID dst;
	int ret, err;
};

static void do_connect(void *arg)
{
	struct connect_call *c = arg;

	c->ret = scif_connect(c->ep, &c->dst);
	c->err = errno;
}

/* The non-blocking connect has finished: POLLOUT (or the connection's readiness). */
static int nb_finished(scif_epd_t ep, int ms)
{
	uint64_t until = fz_now_ms() + (uint64_t)ms;

	do {
		struct scif_pollepd p = { .epd = ep, .events = SCIF_POLLOUT };
		int r = scif_poll(&p, 1, 10);

		fz_expect_errno("scif_poll", r, FZ_ERRNOS(EINTR, ENOMEM));
		if (r == 1 && (p.revents & (SCIF_POLLOUT | SCIF_POLLHUP)))
			return 1;
		if (r == 1 && (p.revents & SCIF_POLLERR))
			fz_fail("a connecting endpoint polled POLLERR");
	} while (fz_now_ms() < until);
	return 0;
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	setenv("SCIF_RING_SIZE", "4096", 1);
	fz_init();
	fz_app_start(&app);
	lfd = fzp_listen(FZP_NODE, PORT);
	if (lfd < 0)
		fz_fail("listen as node 1: %s", strerror(-lfd));
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz in = { data, size }, *f = &in;
	struct connect_call cc = { .dst = { .node = FZP_NODE, .port = PORT } };
	struct fzp_conn c = { .ep = -1, .link = -1, .user = -1, .lib_bell = -1,
			      .mine = { .fd = -1 } };
	struct fzp_region reg = { .fd = -1 };
	struct scif_ctl_msg m;
	struct pollfd p = { .fd = lfd, .events = POLLIN };
	int fds0 = fz_fd_count(), blocking = fz_u8(f) & 1, fds[4], nfds, n, valid = 0;
	int enomem = 0, done, r;

	cc.ep = scif_open();
	if (cc.ep < 0)
		fz_fail("scif_open: %s", strerror(errno));
	if (blocking) {
		fz_app_call(&app, do_connect, &cc, 0);
	} else {
		fcntl(cc.ep, F_SETFL, O_NONBLOCK);
		r = scif_connect(cc.ep, &cc.dst);
		fz_expect_errno("scif_connect", r, FZ_ERRNOS(EINPROGRESS, ENOMEM));
		if (r >= 0)
			fz_fail("a non-blocking connect finished before the fuzzer took the link");
		if (errno != EINPROGRESS)
			goto out;
	}
	/*
	 * The library's request: a well-formed REQ with its region and bell. A blocking connect
	 * may fail before it sends one, as a non-blocking one may (ENOMEM): then its errno is
	 * checked here instead of waiting FZ_HANG_MS for a link that never comes.
	 */
	for (uint64_t until = fz_now_ms() + FZ_HANG_MS; poll(&p, 1, 10) != 1;) {
		if (blocking && fz_app_idle(&app, 0) && poll(&p, 1, 0) != 1) {
			errno = cc.err;
			fz_expect_errno("scif_connect", cc.ret, FZ_ERRNOS(ENOMEM));
			if (cc.ret >= 0)
				fz_fail("a blocking connect finished before the fuzzer took the link");
			goto out;
		}
		if (fz_now_ms() >= until)
			fz_fail("the library did not connect within %d s", FZ_HANG_MS / 1000);
	}
	c.link = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
	if (c.link < 0)
		fz_fail("accept: %s", strerror(errno));
	n = fzp_recv(c.link, &m, sizeof(m), fds, 4, &nfds, FZ_HANG_MS);
	fzp_expect_msg(&m, n, SCIF_CNCT_REQ, nfds, 2);
	if (m.dst.node != FZP_NODE || m.dst.port != PORT || m.src.node != 0 || !m.src.port)
		fz_fail("REQ from %u:%u to %u:%u", m.src.node, m.src.port, m.dst.node, m.dst.port);
	fzp_take_qp(&c, &m, fds);
	/* The answers: a GNT by default. */
	for (int k = 0, nmsg = (fz_u8(f) % 4) ^ 1; k < nmsg; k++) {
		struct fzp_sent s;

		fzp_build_send(f, c.link, SCIF_CNCT_GNT, 0, m.src.port, &reg, &c.user, &s);
		if (k > 0)
			continue;
		/* What the library must refuse, at least. */
		valid = s.len == (int)sizeof(s.m) && fzp_valid_hdr(&s.m) && s.m.op == SCIF_CNCT_GNT &&
			s.nfds == 2 && s.kind0 == FZP_FD_REGION && fzp_valid_ring(s.m.ring_size);
		enomem = s.len == (int)sizeof(s.m) && fzp_valid_hdr(&s.m) &&
			 s.m.op == SCIF_CNCT_REJ && s.m.err == ENOMEM;
	}
	n = fz_u8(f);
	if (n & 1)
		shutdown(c.link, SHUT_WR);
	if (n & 2) {
		close(c.link);
		c.link = -1;
	}
	if (n & 4 && c.user >= 0) {
		close(c.user);
		c.user = -1;
	}
	/* The library finishes now, or at the latest once the fuzzer has hung up. */
	done = blocking ? fz_app_idle(&app, 300) : nb_finished(cc.ep, 300);
	if (!done) {
		if (c.link >= 0)
			close(c.link);
		c.link = -1;
		done = blocking ? fz_app_idle(&app, FZ_HANG_MS)
				: nb_finished(cc.ep, FZ_HANG_MS);
		if (!done)
			fz_fail("%s connect still running %d s after the peer hung up",
				blocking ? "a blocking" : "a non-blocking", FZ_HANG_MS / 1000);
	}
	if (!blocking) {
		cc.ret = scif_connect(cc.ep, &cc.dst);
		cc.err = errno;
	}
	errno = cc.err;
	fz_expect_errno("scif_connect", cc.ret, FZ_ERRNOS(ECONNREFUSED, ENOMEM, ENOBUFS, ENODEV));
	if (cc.ret >= 0 && !valid)
		fz_fail("connected on an answer that was not a valid GNT");
	if (cc.ret < 0 && cc.err == ENOMEM && !enomem)
		fz_fail("scif_connect said ENOMEM without a REJ saying so");
	if (cc.ret == 0)
		fz_fail("scif_connect returned port 0");
	if (cc.ret > 0)
		fzp_use_connection(f, cc.ep, &reg);
out:
	scif_close(cc.ep);
	if (!fz_app_idle(&app, FZ_HANG_MS))
		fz_fail("scif_connect still running %d s after scif_close", FZ_HANG_MS / 1000);
	fzp_region_free(&reg);
	fzp_conn_hangup(&c);
	/* A link of a connect that failed at once must not meet the next input. */
	while ((n = accept4(lfd, NULL, NULL, SOCK_CLOEXEC)) >= 0)
		close(n);
	fz_expect_fds(fds0, "fuzz-connect");
	return 0;
}
