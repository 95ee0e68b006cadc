// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * c-fork-host.c - compat pair "fork", host side (node 0, listens on PORT): registers two
 * windows (one with MADV_DONTFORK as Intel advised, one without), forks a child that exits
 * at once and a child that connects to the card's PORT+1 and does its own registration and
 * RMA, then rewrites part of its windows, registers a third one and checks that RMA in both
 * directions still carries the right data. Peer: c-fork-card.
 * Usage: SCIF_NODE=0 c-fork-host PORT
 */
#include <sys/mman.h>
#include <sys/wait.h>

#include "c-fork.h"

/* The second child: a connection of its own to the card, a window and two RMAs. */
static int child_work(uint16_t port)
{
	uint8_t *buf, *vbuf;
	off_t off, cw;
	scif_epd_t ep;
	int r;

	buf = compat_alloc(101, CHILD_LEN);
	vbuf = malloc(CHILD_LEN);
	if (!vbuf)
		fail(101, "out of memory");
	SCIF_CHECK(102, ep, scif_open());
	compat_connect(103, ep, 1, port);
	compat_fill(buf, CHILD_LEN, SEED_CHILD, 0);
	SCIF_CHECK(104, off, scif_register(ep, buf, CHILD_LEN, 0, SCIF_PROT_READ, 0));
	compat_send(105, ep, &off, sizeof(off));
	compat_recv(106, ep, &cw, sizeof(cw));
	compat_fill(vbuf, CHILD_LEN, SEED_CHILD_W, 0);
	SCIF_CHECK(107, r, scif_vwriteto(ep, vbuf, CHILD_LEN, cw, SCIF_RMA_SYNC));
	compat_send(108, ep, "v", 1);
	compat_expect(109, ep, 'k');
	SCIF_CHECK(110, r, scif_close(ep));
	free(vbuf);
	free(buf);
	return 0;
}

static void reap(int code, pid_t pid, const char *what)
{
	int st;

	if (waitpid(pid, &st, 0) != pid)
		fail(code, "waitpid(%s): %s", what, strerror(errno));
	if (WIFSIGNALED(st))
		fail(code, "%s was killed by signal %d", what, WTERMSIG(st));
	if (WEXITSTATUS(st))
		fail(code, "%s exited with %d", what, WEXITSTATUS(st));
}

int main(int argc, char **argv)
{
	uint16_t port = compat_port(argc, argv, 1);
	struct fork_offsets offs;
	struct scif_portID peer;
	uint8_t *a, *b, *c, *vbuf;
	scif_epd_t lep, ep;
	off_t coff, offc;
	pid_t quitter, worker;
	int r, mark;

	a = compat_alloc(1, WIN_A_LEN);
	c = compat_alloc(1, WIN_C_LEN);
	vbuf = malloc(1 << 20);
	b = mmap(NULL, WIN_B_LEN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (!vbuf || b == MAP_FAILED)
		fail(1, "out of memory");

	SCIF_CHECK(2, lep, scif_open());
	SCIF_CHECK(3, r, scif_bind(lep, port));
	SCIF_CHECK(4, r, scif_listen(lep, 2));
	SCIF_CHECK(5, r, scif_accept(lep, &peer, &ep, SCIF_ACCEPT_SYNC));

	compat_fill(a, WIN_A_LEN, SEED_A, 0);
	if (madvise(a, WIN_A_LEN, MADV_DONTFORK))
		fail(6, "madvise(MADV_DONTFORK): %s", strerror(errno));
	SCIF_CHECK(7, offs.a, scif_register(ep, a, WIN_A_LEN, 0, SCIF_PROT_READ | SCIF_PROT_WRITE,
					    0));
	compat_fill(b, WIN_B_LEN, SEED_B, 0);
	SCIF_CHECK(8, offs.b, scif_register(ep, b, WIN_B_LEN, 0, SCIF_PROT_READ | SCIF_PROT_WRITE,
					    0));
	compat_send(9, ep, &offs, sizeof(offs));
	compat_recv(10, ep, &coff, sizeof(coff));

	/*
	 * Fork: one child leaves at once, one works. Both leave through _exit (see
	 * compat_child); the endpoints they inherited must stay the parent's.
	 */
	fflush(NULL);
	quitter = fork();
	if (quitter < 0)
		fail(11, "fork: %s", strerror(errno));
	if (quitter == 0)
		_exit(0);
	worker = fork();
	if (worker < 0)
		fail(12, "fork: %s", strerror(errno));
	if (worker == 0) {
		compat_child = 1;
		_exit(child_work(port + 1));
	}

	/* The parent writes into both registered windows after the fork (the COW hazard). */
	compat_fill(a, TOUCH_LEN, SEED_A_AFTER, 0);
	compat_fill(b, TOUCH_LEN, SEED_B_AFTER, 0);
	reap(13, quitter, "the child that exits at once");
	reap(14, worker, "the child that connects to the card");

	/* A window registered after the fork, then the card reads all three. */
	compat_fill(c, WIN_C_LEN, SEED_C, 0);
	SCIF_CHECK(15, offc, scif_register(ep, c, WIN_C_LEN, 0, SCIF_PROT_READ, 0));
	compat_send(16, ep, "P", 1);
	compat_send(17, ep, &offc, sizeof(offc));

	/* The card wrote the second halves of A and B. */
	compat_expect(18, ep, 'W');
	compat_check(19, a + HALF, WIN_A_LEN - HALF, SEED_A_CARD, "card's writeto into window A");
	compat_check(20, b + HALF, WIN_B_LEN - HALF, SEED_B_CARD, "card's writeto into window B");
	compat_check(21, a, TOUCH_LEN, SEED_A_AFTER, "window A after the fork");

	/* The parent's own RMA into the card's window: asynchronous and fenced, then sync. */
	compat_fill(vbuf, 1 << 20, SEED_PARENT, 0);
	SCIF_CHECK(22, r, scif_vwriteto(ep, vbuf, 1 << 20, coff, 0));
	SCIF_CHECK(23, r, scif_fence_mark(ep, SCIF_FENCE_INIT_SELF, &mark));
	SCIF_CHECK(24, r, scif_fence_wait(ep, mark));
	SCIF_CHECK(25, r, scif_writeto(ep, offs.a, TOUCH_LEN, coff + (1 << 20), SCIF_RMA_SYNC));
	compat_send(26, ep, "V", 1);
	compat_expect(27, ep, 'E');

	SCIF_CHECK(28, r, scif_unregister(ep, offs.a, WIN_A_LEN));
	SCIF_CHECK(29, r, scif_unregister(ep, offs.b, WIN_B_LEN));
	SCIF_CHECK(30, r, scif_unregister(ep, offc, WIN_C_LEN));
	compat_send(31, ep, "X", 1);
	compat_expect(32, ep, 'Y');
	SCIF_CHECK(33, r, scif_close(ep));
	SCIF_CHECK(34, r, scif_close(lep));
	munmap(b, WIN_B_LEN);
	free(a);
	free(c);
	free(vbuf);
	return 0;
}
