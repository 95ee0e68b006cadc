// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * ivshm_server_test - host-only test of libscif/fabric/ivshm_server: fake QEMU clients speak the
 * ivshmem client-server protocol to it, without any guest; prints one PASS/FAIL line per test.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "fabric/ivshm_server.h"

#define MAX_MSGS 1024

static unsigned int n_pass, n_fail;
static char fail_why[256];
static char sock_path[108];

static void why(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void why(const char *fmt, ...)
{
	va_list ap;

	if (fail_why[0])
		return;
	va_start(ap, fmt);
	vsnprintf(fail_why, sizeof(fail_why), fmt, ap);
	va_end(ap);
}

static void report(const char *name)
{
	if (!fail_why[0]) {
		printf("PASS: %s\n", name);
		n_pass++;
	} else {
		printf("FAIL: %s: %s\n", name, fail_why);
		n_fail++;
	}
	fflush(stdout);
	fail_why[0] = 0;
}

/**
 * struct client - a fake QEMU ivshmem-doorbell device
 * @sock: connection to the server
 * @n: messages received so far
 * @val: their values
 * @fd: their file descriptors (-1 when none came)
 */
struct client {
	int sock;
	unsigned int n;
	int64_t val[MAX_MSGS];
	int fd[MAX_MSGS];
};

static struct client *client_connect(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct client *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	strcpy(sa.sun_path, sock_path);
	c->sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->sock < 0 || connect(c->sock, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		why("connect: %s", strerror(errno));
		free(c);
		return NULL;
	}
	return c;
}

static void client_close(struct client *c)
{
	unsigned int i;

	if (!c)
		return;
	for (i = 0; i < c->n; i++)
		if (c->fd[i] >= 0)
			close(c->fd[i]);
	close(c->sock);
	free(c);
}

/* Receive what has arrived; returns false on EOF. One 8-byte message per recvmsg, as QEMU. */
static bool client_poll(struct client *c)
{
	for (;;) {
		union {
			char buf[CMSG_SPACE(sizeof(int))];
			struct cmsghdr align;
		} ctl;
		uint64_t le;
		struct iovec iov = { .iov_base = &le, .iov_len = sizeof(le) };
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf,
				     .msg_controllen = sizeof(ctl.buf) };
		struct cmsghdr *cm;
		ssize_t n = recvmsg(c->sock, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);

		if (n < 0)
			return errno == EAGAIN || errno == EWOULDBLOCK;
		if (n == 0)
			return false;
		if (n != sizeof(le) || c->n >= MAX_MSGS) {
			why("short or excess message (%zd bytes, %u msgs)", n, c->n);
			return false;
		}
		c->fd[c->n] = -1;
		for (cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm))
			if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS)
				memcpy(&c->fd[c->n], CMSG_DATA(cm), sizeof(int));
		c->val[c->n++] = (int64_t)le64toh(le);
	}
}

/* Run the server and the clients until each client has @want messages (or 2 s passed). */
static void pump(struct scif__ivshm_server *srv, struct client **cs, const unsigned int *want,
		 unsigned int ncs)
{
	unsigned int round, i;

	for (round = 0; round < 2000; round++) {
		bool all = true;
		struct pollfd p = { .fd = scif__ivshm_fd(srv), .events = POLLIN };

		poll(&p, 1, 1);
		if (scif__ivshm_dispatch(srv) < 0)
			why("dispatch failed");
		for (i = 0; i < ncs; i++) {
			client_poll(cs[i]);
			all &= cs[i]->n >= want[i];
		}
		if (all)
			return;
	}
	for (i = 0; i < ncs; i++)
		if (cs[i]->n < want[i])
			why("client %u got %u messages, want %u", i, cs[i]->n, want[i]);
}

/* Check @c's messages from @at: @id repeated @nvec times, each with an fd. Returns next index. */
static unsigned int expect_vectors(const struct client *c, unsigned int at, int64_t id,
				   unsigned int nvec)
{
	unsigned int v;

	for (v = 0; v < nvec; v++, at++)
		if (at >= c->n || c->val[at] != id || c->fd[at] < 0)
			why("message %u: %lld fd %d, want %lld with fd", at,
			    at < c->n ? (long long)c->val[at] : -99LL, at < c->n ? c->fd[at] : -1,
			    (long long)id);
	return at;
}

/* The setup of a client that joins with @nothers guests (ids @others) present. */
static int64_t expect_setup(const struct client *c, unsigned int nvec, const int64_t *others,
			    unsigned int nothers, uint64_t shm_size)
{
	struct stat st;
	unsigned int at = 3, i;
	int64_t id = c->n > 1 ? c->val[1] : -1;

	if (c->n < 3 || c->val[0] != 0 || c->fd[0] != -1 || id < 1 || c->fd[1] != -1 ||
	    c->val[2] != -1 || c->fd[2] < 0) {
		why("bad greeting (version/id/shm)");
		return -1;
	}
	if (fstat(c->fd[2], &st) < 0 || (uint64_t)st.st_size != shm_size)
		why("shm fd size %lld", (long long)st.st_size);
	at = expect_vectors(c, at, 0, nvec);	/* the host, peer 0, first */
	for (i = 0; i < nothers; i++)
		at = expect_vectors(c, at, others[i], nvec);
	at = expect_vectors(c, at, id, nvec);	/* its own interrupts last */
	if (at != c->n)
		why("%u messages, want %u", c->n, at);
	return id;
}

/* The fd client @c got for peer @id's vector @v (n-th repetition of that id). */
static int fd_for(const struct client *c, int64_t id, unsigned int v)
{
	unsigned int i, seen = 0;

	for (i = 3; i < c->n; i++)
		if (c->val[i] == id && c->fd[i] >= 0 && seen++ == v)
			return c->fd[i];
	return -1;
}

static bool readable(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };

	return poll(&p, 1, 100) == 1;
}

static void ring_fd(int fd)
{
	uint64_t one = 1;

	if (write(fd, &one, sizeof(one)) != sizeof(one))
		why("write eventfd: %s", strerror(errno));
}

static void drain_fd(int fd)
{
	uint64_t n;

	if (read(fd, &n, sizeof(n)) != sizeof(n))
		why("read eventfd: %s", strerror(errno));
}

static int events[8], nevents;

static void on_peer(void *arg, enum scif__ivshm_event ev, uint16_t id)
{
	(void)arg;
	if (nevents < 8)
		events[nevents++] = ev == SCIF__IVSHM_PEER_CONNECTED ? id : -(int)id;
}

static void t_create_errors(int shm)
{
	struct scif__ivshm_server *s, *s2;
	char longpath[200];
	int err = 0, odd;

	s = scif__ivshm_create(sock_path, shm, 0, 0, &err);
	if (s || err != -EINVAL)
		why("0 vectors: err %d", err);
	s = scif__ivshm_create(sock_path, shm, 0, SCIF__IVSHM_MAX_VECTORS + 1, &err);
	if (s || err != -EINVAL)
		why("too many vectors: err %d", err);
	odd = memfd_create("odd", MFD_CLOEXEC);
	if (odd < 0 || ftruncate(odd, 3 << 12) < 0)
		why("memfd");
	s = scif__ivshm_create(sock_path, odd, 0, 1, &err);
	if (s || err != -EINVAL)
		why("size not a power of two: err %d", err);
	close(odd);
	s = scif__ivshm_create(sock_path, shm, 4096, 1, &err);
	if (s || err != -EINVAL)
		why("size differs from the file: err %d", err);
	s = scif__ivshm_create(sock_path, -1, 0, 1, &err);
	if (s || err != -EBADF)
		why("bad shm fd: err %d", err);
	memset(longpath, 'x', sizeof(longpath) - 1);
	longpath[0] = '/';
	longpath[sizeof(longpath) - 1] = 0;
	s = scif__ivshm_create(longpath, shm, 0, 1, &err);
	if (s || err != -ENAMETOOLONG)
		why("long path: err %d", err);
	/* a second server on a live socket must not steal it; a dead one's socket is replaced */
	s = scif__ivshm_create(sock_path, shm, 0, 1, &err);
	s2 = s ? scif__ivshm_create(sock_path, shm, 0, 1, &err) : NULL;
	if (!s || s2 || err != -EADDRINUSE)
		why("second server on a live path: err %d", err);
	scif__ivshm_destroy(s);
	{
		struct sockaddr_un sa = { .sun_family = AF_UNIX };
		int l = socket(AF_UNIX, SOCK_STREAM, 0);

		strcpy(sa.sun_path, sock_path);
		if (l < 0 || bind(l, (struct sockaddr *)&sa, sizeof(sa)) < 0)
			why("stale socket setup: %s", strerror(errno));
		close(l);	/* the file stays, nobody listens */
		s = scif__ivshm_create(sock_path, shm, 0, 1, &err);
		if (!s)
			why("stale socket not replaced: err %d", err);
		scif__ivshm_destroy(s);
		if (!access(sock_path, F_OK))
			why("socket file left after destroy");
	}
	report("ivshm_server_create_errors");
}

static void t_protocol(int shm, uint64_t shm_size)
{
	const unsigned int nv = 3;
	struct scif__ivshm_server *s;
	struct client *a = NULL, *b = NULL, *c = NULL, *cs[3];
	unsigned int want[3];
	uint16_t ids[4];
	int64_t others[2];
	int err = 0;

	s = scif__ivshm_create(sock_path, shm, 0, nv, &err);
	if (!s) {
		why("create: %d", err);
		report("ivshm_server_setup_messages");
		return;
	}
	scif__ivshm_set_peer_cb(s, on_peer, NULL);

	/* first guest: version, id 1, shm, host (0) x nv, own x nv */
	a = client_connect();
	cs[0] = a;
	want[0] = 3 + 2 * nv;
	if (a)
		pump(s, cs, want, 1);
	if (a && expect_setup(a, nv, NULL, 0, shm_size) != 1)
		why("first guest is not id 1");
	/* second guest learns about the first; the first about the second */
	b = client_connect();
	cs[1] = b;
	want[0] += nv;
	want[1] = 3 + 3 * nv;
	if (a && b)
		pump(s, cs, want, 2);
	others[0] = 1;
	if (b && expect_setup(b, nv, others, 1, shm_size) != 2)
		why("second guest is not id 2");
	if (a && b)
		expect_vectors(a, 3 + 2 * nv, 2, nv);
	if (scif__ivshm_peer_ids(s, ids, 4) != 2 || ids[0] != 1 || ids[1] != 2)
		why("peer list");
	if (nevents != 2 || events[0] != 1 || events[1] != 2)
		why("connect callbacks");
	report("ivshm_server_setup_messages");

	if (a && b) {
		/* host rings guest 1 on vector 2: its own vector-2 fd fires */
		if (scif__ivshm_ring(s, 1, 2) || !readable(fd_for(a, 1, 2)))
			why("host ring did not reach guest 1 vector 2");
		else
			drain_fd(fd_for(a, 1, 2));
		if (readable(fd_for(a, 1, 1)))
			why("host ring reached the wrong vector");
		/* guest 2 rings the host on vector 1: only guest 2's host eventfd fires */
		ring_fd(fd_for(b, 0, 1));
		if (!readable(scif__ivshm_host_eventfd(s, 2, 1)))
			why("guest 2's ring did not reach the host");
		else
			drain_fd(scif__ivshm_host_eventfd(s, 2, 1));
		if (readable(scif__ivshm_host_eventfd(s, 1, 1)))
			why("guest 2's ring showed up as guest 1's");
		/* guest 1 rings guest 2 directly on vector 0 */
		ring_fd(fd_for(a, 2, 0));
		if (!readable(fd_for(b, 2, 0)))
			why("guest-to-guest ring lost");
		if (scif__ivshm_ring(s, 7, 0) != -ENOENT || scif__ivshm_ring(s, 1, nv) != -EINVAL ||
		    scif__ivshm_host_eventfd(s, 9, 0) != -ENOENT ||
		    scif__ivshm_peer_eventfd(s, 1, 99) != -EINVAL)
			why("bad peer/vector accepted");
	}
	report("ivshm_server_rings");

	/*
	 * guest 2 leaves: the host hears of it, guest 1 does not (QEMU cannot take an id back
	 * once told it left); a newcomer reuses id 2 with the same eventfds, so guest 1 is sent
	 * nothing and rings the newcomer through the eventfds it holds.
	 */
	client_close(b);
	b = NULL;
	cs[1] = NULL;
	if (a)
		pump(s, cs, want, 1);
	if (a && a->n != want[0])
		why("guest 1 was told of a departure (%d messages)", a->n);
	if (nevents != 3 || events[2] != -2 || scif__ivshm_peer_ids(s, ids, 4) != 1)
		why("disconnect not reported");
	c = client_connect();
	cs[1] = c;
	want[1] = 3 + 3 * nv;
	if (a && c)
		pump(s, cs, want, 2);
	if (c && expect_setup(c, nv, others, 1, shm_size) != 2)
		why("id 2 not reused");
	if (a && a->n != want[0])
		why("guest 1 was sent id 2's eventfds again");
	if (a && c) {
		drain_fd(fd_for(c, 2, 0));
		ring_fd(fd_for(a, 2, 0));
		if (!readable(fd_for(c, 2, 0)))
			why("guest 1's ring through its old eventfd did not reach the new guest 2");
	}
	/*
	 * A guest leaves and the next connects before the server looks: one dispatch sees the
	 * hangup and the newcomer together. The newcomer still gets the freed id (a card that
	 * restarts stays the same node), and its arrival is reported after the departure.
	 */
	client_close(c);
	c = client_connect();
	cs[1] = c;
	want[1] = 3 + 3 * nv;
	if (a && c)
		pump(s, cs, want, 2);
	if (c && expect_setup(c, nv, others, 1, shm_size) != 2)
		why("a guest connecting with a departure not yet seen did not get its id 2");
	if (nevents != 6 || events[4] != -2 || events[5] != 2)
		why("departure and arrival in the same dispatch: %d events, last %d, %d", nevents,
		    nevents > 1 ? events[nevents - 2] : 0, nevents ? events[nevents - 1] : 0);
	report("ivshm_server_disconnect_and_reuse");

	/* destroy hangs up on everyone and removes the socket */
	scif__ivshm_destroy(s);
	if ((a && client_poll(a)) || (c && client_poll(c)))
		why("guests not hung up on");
	if (!access(sock_path, F_OK))
		why("socket file left");
	client_close(a);
	client_close(c);
	report("ivshm_server_destroy");
}

/* Setup bursts larger than a socket buffer must arrive whole (queued until EPOLLOUT). */
static void t_burst(int shm, uint64_t shm_size)
{
	const unsigned int nv = SCIF__IVSHM_MAX_VECTORS, nc = 4;
	struct scif__ivshm_server *s;
	struct client *cs[4] = { NULL };
	unsigned int want[4], i, j;
	int err = 0;

	s = scif__ivshm_create(sock_path, shm, 0, nv, &err);
	if (!s) {
		why("create: %d", err);
		report("ivshm_server_large_setup");
		return;
	}
	/* connect everyone before anybody reads */
	for (i = 0; i < nc; i++) {
		cs[i] = client_connect();
		if (!cs[i])
			break;
		for (j = 0; j < 20; j++)
			scif__ivshm_dispatch(s);
	}
	for (i = 0; i < nc; i++)
		want[i] = 3 + (nc + 1) * nv;	/* setup + later arrivals */
	if (i == nc)
		pump(s, cs, want, nc);
	for (i = 0; i < nc && cs[i]; i++) {
		int64_t others[4];

		for (j = 0; j < i; j++)
			others[j] = j + 1;
		unsigned int got = cs[i]->n;

		/* the setup part: what it got at connect time */
		cs[i]->n = 3 + (i + 2) * nv;
		if (got >= cs[i]->n)
			expect_setup(cs[i], nv, others, i, shm_size);
		cs[i]->n = got;
	}
	scif__ivshm_destroy(s);
	for (i = 0; i < nc; i++)
		client_close(cs[i]);
	report("ivshm_server_large_setup");
}

int main(void)
{
	struct rlimit rl;
	uint64_t size = 1 << 16;
	int shm;

	/* 4 guests x 64 vectors: a few hundred fds in flight */
	if (!getrlimit(RLIMIT_NOFILE, &rl)) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	snprintf(sock_path, sizeof(sock_path), "/tmp/ivshm-test-%d.sock", (int)getpid());
	shm = memfd_create("ivshm-test", MFD_CLOEXEC);
	if (shm < 0 || ftruncate(shm, (off_t)size) < 0) {
		perror("memfd");
		return 1;
	}
	t_create_errors(shm);
	t_protocol(shm, size);
	t_burst(shm, size);
	unlink(sock_path);
	return n_fail ? 1 : 0;
}
