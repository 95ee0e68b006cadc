// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * fuzz-accept.c - libFuzzer target: the acceptor's side of the connection handshake
 * (libscif/nodeqp.c: the listener's request queue, CNCT_REQ parsing, region import).
 *
 * Per input the library listens on a fresh port and the fuzzer, as up to three connectors,
 * sends whatever the input says on each link: requests with any field changed, any number of
 * descriptors of any kind (regions that could shrink, of the wrong size or header, pipes,
 * sockets), short or long datagrams, several messages, hang-ups. Then the library accepts
 * (non-blocking, or SYNC on the application thread), polls, and uses what it accepted.
 *
 * Checked: no crash or sanitizer report; scif_accept and scif_poll fail only with errnos the
 * spec lists; the library accepts only a request that was valid, and answers it with a
 * well-formed CNCT_GNT (its own region sealed and of the announced size) or CNCT_REJ; a
 * SYNC accept returns (EINTR) when the listener is closed; no descriptor is left over.
 *
 * Input: see fzp_build_send() (peer.h) and LLVMFuzzerTestOneInput(). An input of zeros is
 * one honest connector that is accepted.
 */
#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fuzz.h"
#include "peer.h"

#define MAX_LINKS 3

struct link {
	int fd;                 /* the fuzzer's end of the link, -1 once closed */
	int user;               /* the user end of the first bell it sent */
	int valid;              /* its first message was a request the library may accept */
	int granted;            /* the library sent it a GNT */
	struct fzp_region reg;  /* the first region it sent, mapped here */
	struct fzp_conn conn;   /* the library's region and bell once granted */
};

static struct fz_app app;

/*
 * Read what the library sent on the links: GNTs (for accepted requests) and REJs. The
 * library sends a GNT before scif_accept returns, so nothing is waited for.
 */
static int collect_answers(struct link *links, int n)
{
	int grants = 0;

	for (int i = 0; i < n; i++) {
		struct link *l = &links[i];

		while (l->fd >= 0) {
			struct scif_ctl_msg m;
			int fds[4], nfds;
			int r = fzp_recv(l->fd, &m, sizeof(m), fds, 4, &nfds, 0);

			/* A library end closed with our messages unread reports ECONNRESET once,
			 * before what it had sent. */
			if (r == -ECONNRESET)
				r = fzp_recv(l->fd, &m, sizeof(m), fds, 4, &nfds, 0);
			if (r <= 0)
				break;
			if (l->granted || (r == (int)sizeof(m) && m.op == SCIF_REPLY)) {
				/*
				 * Replies to what else the fuzzer sent on it: the library watches
				 * the link before it sends the GNT, so they may come first.
				 */
				fzp_close_fds(fds, nfds);
				if (r != (int)sizeof(m) || !fzp_valid_hdr(&m) || m.op != SCIF_REPLY)
					fz_fail("link %d: the library sent op %u after its GNT", i,
						r >= 8 ? m.op : 0);
				continue;
			}
			if (r == (int)sizeof(m) && m.op == SCIF_CNCT_REJ) {
				fzp_expect_msg(&m, r, SCIF_CNCT_REJ, nfds, 0);
				if (m.err <= 0)
					fz_fail("CNCT_REJ with errno %d", m.err);
				continue;
			}
			fzp_expect_msg(&m, r, SCIF_CNCT_GNT, nfds, 2);
			if (!l->valid)
				fz_fail("link %d: granted a request that was not valid", i);
			if (l->granted)
				fz_fail("link %d: granted twice", i);
			l->granted = 1;
			l->conn.link = -1;
			fzp_take_qp(&l->conn, &m, fds);
			grants++;
		}
	}
	return grants;
}

/* Use a connection the library accepted: the fuzzer's region is the one it sent. */
static void use_accepted(struct fz *f, scif_epd_t ep, struct link *links, int n, int closed)
{
	struct link *l = NULL;

	for (int i = 0; i < n; i++)
		if (links[i].granted && links[i].conn.ep < 0) {
			l = &links[i];
			l->conn.ep = ep;
		}
	if (!l && !closed)
		fz_fail("scif_accept returned endpoint %d but no link got a GNT", ep);
	if (!l) { /* its link was closed by the fuzzer after the GNT */
		scif_close(ep);
		return;
	}
	fzp_use_connection(f, ep, &l->reg);
	scif_close(ep);
}

struct sync_accept {
	scif_epd_t lep, ep;
	struct scif_portID peer;
	int ret, err;
};

static void do_sync_accept(void *arg)
{
	struct sync_accept *s = arg;

	s->ret = scif_accept(s->lep, &s->peer, &s->ep, SCIF_ACCEPT_SYNC);
	s->err = errno;
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	setenv("SCIF_RING_SIZE", "4096", 1);
	fz_init();
	fz_app_start(&app);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz in = { data, size }, *f = &in;
	struct link links[MAX_LINKS];
	struct sync_accept sa = { .ep = -1, .ret = 1 };
	struct scif_portID peer;
	int nlinks, backlog, port, fds0 = fz_fd_count(), sync_started = 0, accepted = 0, grants = 0;
	int closed = 0;
	scif_epd_t lep, ep;

	/* The listener: a fresh port, backlog 1..4. */
	backlog = 1 + fz_u8(f) % 4;
	port = fz_listener(&lep, backlog);
	/* Connectors: each sends 0-3 messages (1 by default), then may shut down or leave. */
	nlinks = 1 + fz_u8(f) % MAX_LINKS;
	for (int i = 0; i < nlinks; i++) {
		struct link *l = &links[i];
		int nmsg, after;

		memset(l, 0, sizeof(*l));
		l->user = -1;
		l->reg.fd = -1;
		l->conn.ep = l->conn.link = l->conn.user = l->conn.lib_bell = -1;
		l->conn.mine.fd = -1;
		l->fd = fzp_connect(0, (uint16_t)port);
		if (l->fd < 0)
			continue; /* refused: the backlog is full */
		nmsg = (fz_u8(f) % 4) ^ 1;
		for (int k = 0; k < nmsg; k++) {
			struct fzp_sent s;

			fzp_build_send(f, l->fd, SCIF_CNCT_REQ, 0, (uint16_t)port, &l->reg, &l->user,
				       &s);
			/* What the library must refuse, at least (nodeqp.c may refuse more). */
			if (k == 0)
				l->valid = s.len == (int)sizeof(s.m) && fzp_valid_hdr(&s.m) &&
					   s.m.op == SCIF_CNCT_REQ && s.m.src.node <= 1 &&
					   s.m.dst.port == port && s.nfds == 2 &&
					   s.kind0 == FZP_FD_REGION && fzp_valid_ring(s.m.ring_size);
		}
		after = fz_u8(f);
		if (after & 1)
			shutdown(l->fd, SHUT_WR);
		if (after & 2) {
			close(l->fd);
			l->fd = -1;
		}
	}
	/* The library's side: accepts, polls, a SYNC accept, hang-ups (one accept by default). */
	for (int i = 0, n = 1 + fz_u8(f) % 8; i < n; i++) {
		struct scif_pollepd p = { .epd = lep, .events = SCIF_POLLIN | SCIF_POLLOUT };
		int r, k;

		switch (fz_u8(f) % 5) {
		case 0:
			r = scif_accept(lep, &peer, &ep, 0);
			fz_expect_errno("scif_accept", r, FZ_ERRNOS(EAGAIN, ENOMEM, ENOBUFS));
			if (r == 0) {
				accepted++;
				grants += collect_answers(links, nlinks);
				use_accepted(f, ep, links, nlinks, closed);
			}
			break;
		case 1:
			r = scif_poll(&p, 1, 0);
			fz_expect_errno("scif_poll", r, FZ_ERRNOS(EINTR, ENOMEM));
			if (r == 1 && (p.revents & ~(SCIF_POLLIN | SCIF_POLLERR)))
				fz_fail("a listener polled %#x", p.revents);
			break;
		case 2:
			k = fz_u8(f) % nlinks;
			grants += collect_answers(links, nlinks);
			if (links[k].fd >= 0)
				close(links[k].fd);
			links[k].fd = -1;
			closed = 1;
			break;
		case 3:
			if (sync_started)
				break;
			sync_started = 1;
			sa.lep = lep;
			if (fz_app_call(&app, do_sync_accept, &sa, 2) == 1) {
				errno = sa.err;
				fz_expect_errno("scif_accept(SYNC)", sa.ret,
						FZ_ERRNOS(ENOMEM, ENOBUFS));
				sync_started = 0;
				if (sa.ret == 0) {
					accepted++;
					grants += collect_answers(links, nlinks);
					use_accepted(f, sa.ep, links, nlinks, closed);
				}
			}
			break;
		default:
			usleep(100);
			break;
		}
	}
	/*
	 * A SYNC accept still waiting returns when the listener goes (EINTR), or took one. It
	 * must be inside the library first (asleep in poll), or the close would be a plain
	 * "closed descriptor" (EBADF) for it.
	 */
	if (sync_started && !fz_app_idle(&app, 0) && !fz_app_sleeping(&app, 2000) &&
	    !fz_app_idle(&app, 0))
		fz_fail("scif_accept(SYNC) neither returned nor slept within 2 s");
	scif_close(lep);
	if (sync_started) {
		if (!fz_app_idle(&app, FZ_HANG_MS))
			fz_fail("scif_accept(SYNC) blocked %d s after its listener's scif_close",
				FZ_HANG_MS / 1000);
		errno = sa.err;
		fz_expect_errno("scif_accept(SYNC)", sa.ret, FZ_ERRNOS(EINTR, ENOMEM, ENOBUFS));
		if (sa.ret == 0) {
			accepted++;
			scif_close(sa.ep);
		}
	}
	grants += collect_answers(links, nlinks);
	if (grants > accepted || (grants < accepted && !closed))
		fz_fail("%d accepted connections, %d CNCT_GNT sent", accepted, grants);
	for (int i = 0; i < nlinks; i++) {
		if (links[i].fd >= 0)
			close(links[i].fd);
		if (links[i].user >= 0)
			close(links[i].user);
		fzp_region_free(&links[i].reg);
		fzp_conn_hangup(&links[i].conn);
	}
	fz_expect_fds(fds0, "fuzz-accept");
	return 0;
}
