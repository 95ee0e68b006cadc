// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * shim_host_peer - the host side of the check-kernel harness: runs the ivshmem server library as
 * peer 0, serves the guest test's mailbox commands, and prints the host-side test results.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memfd_create */
#endif
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "fabric/ivshm_server.h"
#include "mbox.h"

/* What one ping may take before it counts as lost: TCG is slow, but not this slow. */
#define PING_TIMEOUT_MS 3000

struct host {
	struct scif__ivshm_server *srv;
	uint8_t *shm;
	struct mbox_host *mh;
	const struct mbox_guest *mg;
	int epfd;
	int peer;		/* the guest's id, -1 before it connects */
	bool peer_seen;
	bool peer_gone;
	bool done;
	uint32_t last_cmd;
	unsigned int pass, fail;
};

static void result(struct host *h, bool ok, const char *name, const char *detail)
{
	printf("%s: %s%s%s\n", ok ? "PASS" : "FAIL", name, detail ? ": " : "", detail ? detail : "");
	fflush(stdout);
	if (ok)
		h->pass++;
	else
		h->fail++;
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Shared-memory accessors: the guest writes its page concurrently (acquire pairs with the
 * guest's release stores; our release stores pair with its acquire loads). */
static uint32_t guest_load(const uint32_t *p)
{
	return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

static void host_store(uint32_t *p, uint32_t v)
{
	__atomic_store_n(p, v, __ATOMIC_RELEASE);
}

static void on_peer(void *arg, enum scif__ivshm_event ev, uint16_t id)
{
	struct host *h = arg;
	unsigned int v;

	if (ev == SCIF__IVSHM_PEER_CONNECTED && h->peer < 0) {
		h->peer = id;
		h->peer_seen = true;
		for (v = 0; v < MBOX_NVECTORS; v++) {
			struct epoll_event e = { .events = EPOLLIN, .data.u32 = v };

			/* MBOX_VEC_HOST_PING is waited for synchronously, not from the loop */
			if (v != MBOX_VEC_HOST_PING)
				epoll_ctl(h->epfd, EPOLL_CTL_ADD,
					  scif__ivshm_host_eventfd(h->srv, id, v), &e);
		}
		result(h, id >= 1, "server_assigns_guest_id", NULL);
	} else if (ev == SCIF__IVSHM_PEER_DISCONNECTED && id == h->peer) {
		h->peer_gone = true;
	}
}

/* Consume the rings pending on host eventfd @v of the guest; returns how many (coalesced). */
static uint64_t drain(struct host *h, unsigned int v)
{
	uint64_t n = 0;
	int fd = scif__ivshm_host_eventfd(h->srv, (uint16_t)h->peer, v);

	if (fd < 0 || read(fd, &n, sizeof(n)) != (ssize_t)sizeof(n))
		return 0;
	return n;
}

/* Host-initiated ping-pong: ring the guest on MBOX_VEC_HOST_PING, wait for its pong. */
static void host_ping(struct host *h, uint32_t count)
{
	int fd = scif__ivshm_host_eventfd(h->srv, (uint16_t)h->peer, MBOX_VEC_HOST_PING);
	uint64_t t0, total = 0;
	uint32_t i, lost = 0, wrong = 0;
	char detail[160];

	for (i = 1; i <= count; i++) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		uint64_t n;

		host_store(&h->mh->ping_seq, i);
		t0 = now_ns();
		scif__ivshm_ring(h->srv, (uint16_t)h->peer, MBOX_VEC_HOST_PING);
		if (poll(&pfd, 1, PING_TIMEOUT_MS) != 1 || read(fd, &n, sizeof(n)) != sizeof(n)) {
			lost++;
			break;	/* the guest stops after its own timeout too */
		}
		total += now_ns() - t0;
		if (guest_load(&h->mg->pong_seq) != i)
			wrong++;
	}
	h->mh->lost = lost + wrong;
	h->mh->host_rtt_ns = count ? total / count : 0;
	snprintf(detail, sizeof(detail), "%u round trips, %u lost, %u out of order, avg %.1f us",
		 count, lost, wrong, count ? (double)total / count / 1000.0 : 0.0);
	result(h, !lost && !wrong, "doorbell_pingpong_host_initiated", detail);
	if (!lost && !wrong)
		printf("RTT: host-initiated doorbell round trip %.1f us (avg of %u)\n",
		       (double)total / count / 1000.0, count);
}

static void command(struct host *h)
{
	uint32_t seq = guest_load(&h->mg->cmd_seq);
	uint32_t cmd = h->mg->cmd, ok = 1;
	uint64_t arg = h->mg->arg;
	char detail[96];
	size_t bad;

	if (seq == h->last_cmd)
		return;		/* coalesced ring for a command already served */
	h->last_cmd = seq;
	switch (cmd) {
	case MBOX_CMD_HELLO:
		result(h, guest_load(&h->mg->magic) == MBOX_GUEST_MAGIC, "guest_handshake", NULL);
		break;
	case MBOX_CMD_WRITE_H2G:
		mbox_pattern_fill((uint64_t *)(h->shm + MBOX_H2G_OFF), MBOX_REGION_SIZE, arg);
		break;
	case MBOX_CMD_CHECK_G2H:
		bad = mbox_pattern_check((uint64_t *)(h->shm + MBOX_G2H_OFF), MBOX_REGION_SIZE, arg);
		ok = bad == (size_t)-1;
		snprintf(detail, sizeof(detail), "first bad word %zu", bad);
		result(h, ok, "host_sees_guest_bar2_writes", ok ? NULL : detail);
		break;
	case MBOX_CMD_RING:
		ok = scif__ivshm_ring(h->srv, (uint16_t)h->peer, (unsigned int)arg) == 0;
		break;
	case MBOX_CMD_HOST_PING:
		host_ping(h, (uint32_t)arg);
		break;
	case MBOX_CMD_REPORT:
		printf("RTT: guest-initiated doorbell round trip %.1f us (avg of %" PRIu64
		       ", guest clock)\n", (double)arg / 1000.0, h->mg->arg2);
		break;
	case MBOX_CMD_DONE:
		h->done = true;
		break;
	default:
		ok = 0;
		break;
	}
	h->mh->result = ok;
	host_store(&h->mh->ack_seq, seq);
}

int main(int argc, char **argv)
{
	struct host h = { .peer = -1, .epfd = -1 };
	struct epoll_event e = { .events = EPOLLIN, .data.u32 = 0xffff };
	uint64_t deadline;
	int shm, err = 0, timeout_s;

	if (argc != 3) {
		fprintf(stderr, "usage: shim_host_peer SOCKET TIMEOUT_S\n");
		return 2;
	}
	timeout_s = atoi(argv[2]);
	signal(SIGPIPE, SIG_IGN);

	shm = memfd_create("scif-shim-test", MFD_CLOEXEC);
	if (shm < 0 || ftruncate(shm, MBOX_SHM_SIZE) < 0) {
		perror("memfd");
		return 1;
	}
	h.shm = mmap(NULL, MBOX_SHM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, shm, 0);
	if (h.shm == MAP_FAILED) {
		perror("mmap");
		return 1;
	}
	h.mh = (struct mbox_host *)(h.shm + MBOX_HOST_PAGE);
	h.mg = (const struct mbox_guest *)(h.shm + MBOX_GUEST_PAGE);
	/* seed before any guest exists: the guest's first check needs no command at all */
	mbox_pattern_fill((uint64_t *)(h.shm + MBOX_H2G_OFF), MBOX_REGION_SIZE, 1);
	host_store(&h.mh->magic, MBOX_HOST_MAGIC);

	h.srv = scif__ivshm_create(argv[1], shm, 0, MBOX_NVECTORS, &err);
	close(shm);
	if (!h.srv) {
		fprintf(stderr, "ivshm server on %s: %s\n", argv[1], strerror(-err));
		return 1;
	}
	h.epfd = epoll_create1(EPOLL_CLOEXEC);
	scif__ivshm_set_peer_cb(h.srv, on_peer, &h);
	epoll_ctl(h.epfd, EPOLL_CTL_ADD, scif__ivshm_fd(h.srv), &e);
	printf("host peer: listening on %s\n", argv[1]);
	fflush(stdout);

	deadline = now_ns() + (uint64_t)timeout_s * 1000000000u;
	while (!h.peer_gone && now_ns() < deadline) {
		struct epoll_event evs[8];
		int i, n = epoll_wait(h.epfd, evs, 8, 200);

		for (i = 0; i < n; i++) {
			uint32_t tag = evs[i].data.u32;

			if (tag == 0xffff) {
				err = scif__ivshm_dispatch(h.srv);
				if (err < 0) {
					fprintf(stderr, "dispatch: %s\n", strerror(-err));
					goto out;
				}
			} else if (tag == MBOX_VEC_GUEST_PING && drain(&h, tag)) {
				/* pong: echo the sequence first, then ring */
				host_store(&h.mh->pong_seq, guest_load(&h.mg->ping_seq));
				scif__ivshm_ring(h.srv, (uint16_t)h.peer, MBOX_VEC_GUEST_PING);
			} else if (tag == MBOX_VEC_CMD && drain(&h, tag)) {
				command(&h);
			} else if (tag < MBOX_NVECTORS) {
				drain(&h, tag);	/* MBOX_VEC_TEST is host -> guest only */
			}
		}
	}
out:
	if (!h.peer_seen)
		result(&h, false, "server_assigns_guest_id", "no guest connected");
	else if (!h.done)
		result(&h, false, "host_session_complete", "guest never sent DONE");
	else
		result(&h, h.peer_gone, "server_sees_guest_disconnect", NULL);
	scif__ivshm_destroy(h.srv);
	return h.fail ? 1 : 0;
}
