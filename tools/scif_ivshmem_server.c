// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * scif_ivshmem_server - runs the pcie fabric's ivshmem server standalone, for QEMU guests using
 * -device ivshmem-doorbell; logs peers and the rings they send the host, rings guests on request.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memfd_create */
#endif
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "fabric/ivshm_server.h"

/* epoll tags below this value are fixed sources; above it, a host eventfd (peer << 8 | vector) */
enum { TAG_SERVER = 1, TAG_SIGNAL, TAG_STDIN, TAG_HOST_EFD = 0x100 };

struct cli {
	struct scif__ivshm_server *srv;
	int epfd;
	bool verbose;
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: scif_ivshmem_server [-S socket] [-m size] [-M file] [-n vectors] [-v]\n"
		"  -S socket   UNIX socket QEMU connects to (default /tmp/ivshmem_socket)\n"
		"  -m size     shared memory size, power of two, k/M/G suffix (default 4M)\n"
		"  -M file     back the memory with this file (created if missing) instead of a memfd\n"
		"  -n vectors  interrupt vectors per peer, as in QEMU's vectors= (default 1)\n"
		"  -v          log every ring a guest sends the host\n"
		"The host is peer 0; guests get ids from 1. On stdin, \"ring PEER VECTOR\" rings a guest.\n"
		"QEMU: -chardev socket,path=SOCKET,id=ivs -device ivshmem-doorbell,chardev=ivs,vectors=N\n");
}

static int parse_size(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;
	unsigned int shift = 0;

	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno || end == s)
		return -1;
	switch (*end) {
	case 'k': case 'K': shift = 10; end++; break;
	case 'm': case 'M': shift = 20; end++; break;
	case 'g': case 'G': shift = 30; end++; break;
	default: break;
	}
	if (*end || v == 0 || v > (UINT64_MAX >> shift))
		return -1;
	*out = (uint64_t)v << shift;
	return 0;
}

static void watch_host_efds(struct cli *c, uint16_t peer, bool on)
{
	unsigned int v;

	for (v = 0; v < scif__ivshm_nvectors(c->srv); v++) {
		struct epoll_event ev = { .events = EPOLLIN,
					  .data.u64 = TAG_HOST_EFD + ((uint64_t)peer << 8 | v) };
		int fd = scif__ivshm_host_eventfd(c->srv, peer, v);

		if (fd >= 0)
			epoll_ctl(c->epfd, on ? EPOLL_CTL_ADD : EPOLL_CTL_DEL, fd, &ev);
	}
}

static void on_peer(void *arg, enum scif__ivshm_event event, uint16_t peer)
{
	struct cli *c = arg;
	bool up = event == SCIF__IVSHM_PEER_CONNECTED;

	printf("peer %u %s\n", peer, up ? "connected" : "disconnected");
	fflush(stdout);
	watch_host_efds(c, peer, up);
}

static void host_ring(struct cli *c, uint64_t tag)
{
	uint16_t peer = (uint16_t)((tag - TAG_HOST_EFD) >> 8);
	unsigned int v = (unsigned int)((tag - TAG_HOST_EFD) & 0xff);
	int fd = scif__ivshm_host_eventfd(c->srv, peer, v);
	uint64_t n;

	if (fd < 0 || read(fd, &n, sizeof(n)) != (ssize_t)sizeof(n))
		return;
	if (c->verbose) {
		printf("peer %u rang host vector %u (x%" PRIu64 ")\n", peer, v, n);
		fflush(stdout);
	}
}

static void stdin_line(struct cli *c, bool *eof)
{
	char line[128];
	unsigned int peer, v;
	int ret;

	if (!fgets(line, sizeof(line), stdin)) {
		*eof = true;
		return;
	}
	if (sscanf(line, "ring %u %u", &peer, &v) != 2 || peer > SCIF__IVSHM_MAX_ID) {
		fprintf(stderr, "unknown command (try: ring PEER VECTOR)\n");
		return;
	}
	ret = scif__ivshm_ring(c->srv, (uint16_t)peer, v);
	if (ret)
		fprintf(stderr, "ring %u %u: %s\n", peer, v, strerror(-ret));
}

int main(int argc, char **argv)
{
	const char *sock = "/tmp/ivshmem_socket", *file = NULL;
	uint64_t size = 4 << 20;
	unsigned long nvec = 1;
	struct cli c = { .epfd = -1 };
	struct epoll_event ev;
	bool in_eof = false;
	sigset_t sigs;
	int opt, shm, sfd, err = 0, status = 1;

	while ((opt = getopt(argc, argv, "S:m:M:n:vh")) != -1) {
		switch (opt) {
		case 'S': sock = optarg; break;
		case 'M': file = optarg; break;
		case 'v': c.verbose = true; break;
		case 'm':
			if (parse_size(optarg, &size)) {
				fprintf(stderr, "bad size: %s\n", optarg);
				return 2;
			}
			break;
		case 'n':
			nvec = strtoul(optarg, NULL, 0);
			if (nvec < 1 || nvec > SCIF__IVSHM_MAX_VECTORS) {
				fprintf(stderr, "vectors must be 1..%d\n", SCIF__IVSHM_MAX_VECTORS);
				return 2;
			}
			break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind != argc || (size & (size - 1))) {
		usage(stderr);
		return 2;
	}

	shm = file ? open(file, O_RDWR | O_CREAT | O_CLOEXEC, 0600)
		   : memfd_create("scif-ivshmem", MFD_CLOEXEC);
	if (shm < 0 || ftruncate(shm, (off_t)size) < 0) {
		perror(file ? file : "memfd_create");
		return 1;
	}
	c.srv = scif__ivshm_create(sock, shm, size, (unsigned int)nvec, &err);
	close(shm);	/* the server keeps its own */
	if (!c.srv) {
		fprintf(stderr, "%s: %s\n", sock, strerror(-err));
		return 1;
	}

	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	sigprocmask(SIG_BLOCK, &sigs, NULL);
	sfd = signalfd(-1, &sigs, SFD_CLOEXEC);
	c.epfd = epoll_create1(EPOLL_CLOEXEC);
	if (sfd < 0 || c.epfd < 0) {
		perror("signalfd/epoll");
		goto out;
	}
	scif__ivshm_set_peer_cb(c.srv, on_peer, &c);
	ev = (struct epoll_event){ .events = EPOLLIN, .data.u64 = TAG_SERVER };
	epoll_ctl(c.epfd, EPOLL_CTL_ADD, scif__ivshm_fd(c.srv), &ev);
	ev = (struct epoll_event){ .events = EPOLLIN, .data.u64 = TAG_SIGNAL };
	epoll_ctl(c.epfd, EPOLL_CTL_ADD, sfd, &ev);
	ev = (struct epoll_event){ .events = EPOLLIN, .data.u64 = TAG_STDIN };
	if (epoll_ctl(c.epfd, EPOLL_CTL_ADD, STDIN_FILENO, &ev) < 0)
		in_eof = true;	/* /dev/null or a file: no commands */

	printf("listening on %s: %" PRIu64 " bytes, %lu vector(s), host is peer %d\n", sock, size,
	       nvec, SCIF__IVSHM_HOST_ID);
	fflush(stdout);
	for (;;) {
		struct epoll_event evs[16];
		int i, n = epoll_wait(c.epfd, evs, 16, -1);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			perror("epoll_wait");
			goto out;
		}
		for (i = 0; i < n; i++) {
			uint64_t tag = evs[i].data.u64;

			if (tag == TAG_SIGNAL) {
				status = 0;
				goto out;
			} else if (tag == TAG_SERVER) {
				int r = scif__ivshm_dispatch(c.srv);

				if (r < 0) {
					fprintf(stderr, "server: %s\n", strerror(-r));
					goto out;
				}
			} else if (tag == TAG_STDIN) {
				stdin_line(&c, &in_eof);
				if (in_eof)
					epoll_ctl(c.epfd, EPOLL_CTL_DEL, STDIN_FILENO, NULL);
			} else {
				host_ring(&c, tag);
			}
		}
	}
out:
	scif__ivshm_set_peer_cb(c.srv, NULL, NULL);
	scif__ivshm_destroy(c.srv);
	return status;
}
