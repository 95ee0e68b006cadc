// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * pcie-pingpong.c - the raw round trip through an ivshmem aperture, without SCIF: the yardstick
 * that check-pcie's guest pass prints beside scif_bench's round trip across the same kind of
 * window (under TCG the absolute figures say little; their ratio says what libscif adds).
 *
 *   pcie-pingpong host SOCKET ROUNDS   serve a 4 MiB aperture on SOCKET as ivshmem peer 0
 *                                      (libscif/fabric/ivshm_server.c), wait for one guest,
 *                                      then bounce one word with it ROUNDS times, timed
 *   pcie-pingpong card ROUNDS          in the guest: map BAR2 of SCIF_PCIE_DEV (default
 *                                      /dev/scif_shim0) and answer ROUNDS times
 *
 * One 8-byte word at offset 0, written by both sides in turn (the host odd counts, the card
 * even ones), both spinning on it: one line bouncing, the same limit scif_bench's
 * line-pingpong measures between two processes. The host prints the median round trip of
 * batches of 100 on stdout: "raw aperture round trip: X us (median of N batches of 100)".
 * Exit status: 0, 1 usage or setup, 2 the peer stopped answering (10 s; 120 s for the first
 * answer, while a guest boots).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "ivshm_server.h"
#include "shim-bar2.h"

#define APERTURE (4u << 20)
#define BATCH 100

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Spin until *w == want, at most @limit_ns; 0 or -1. */
static int await(volatile uint64_t *w, uint64_t want, uint64_t limit_ns)
{
	uint64_t until = 0;

	for (unsigned int i = 0;; i++) {
		if (__atomic_load_n(w, __ATOMIC_ACQUIRE) == want)
			return 0;
		if ((i & 1023) == 0) {
			uint64_t t = now_ns();

			if (!until)
				until = t + limit_ns;
			else if (t > until)
				return -1;
		}
		__builtin_ia32_pause();
	}
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static int host(const char *sock, unsigned int rounds)
{
	unsigned int batches = rounds / BATCH ? rounds / BATCH : 1;
	uint64_t *lat = calloc(batches, sizeof(*lat));
	struct scif__ivshm_server *srv;
	volatile uint64_t *w;
	int fd, err = 0;
	uint64_t until;

	fd = memfd_create("pcie-pingpong", MFD_CLOEXEC);
	if (!lat || fd < 0 || ftruncate(fd, APERTURE) < 0)
		return 1;
	w = mmap(NULL, APERTURE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	srv = scif__ivshm_create(sock, fd, APERTURE, 1, &err);
	if (w == MAP_FAILED || !srv) {
		fprintf(stderr, "pcie-pingpong: serve %s: %s\n", sock, strerror(-err));
		return 1;
	}
	/*
	 * Serve until the guest (its QEMU) has connected and answered the first bounce: that
	 * waits for its boot. The server is dispatched again only between batches.
	 */
	__atomic_store_n(w, 1, __ATOMIC_RELEASE);
	until = now_ns() + 120000000000ull;
	while (__atomic_load_n(w, __ATOMIC_ACQUIRE) != 2) {
		struct pollfd p = { .fd = scif__ivshm_fd(srv), .events = POLLIN };

		if (now_ns() > until)
			return 2;
		poll(&p, 1, 10);
		scif__ivshm_dispatch(srv);
	}
	for (unsigned int b = 0; b < batches; b++) {
		uint64_t t0 = now_ns();

		for (unsigned int i = 0; i < BATCH; i++) {
			uint64_t k = 2 + 2 * ((uint64_t)b * BATCH + i);

			__atomic_store_n(w, k + 1, __ATOMIC_RELEASE);
			if (await(w, k + 2, 10000000000ull))
				return 2;
		}
		lat[b] = (now_ns() - t0) / BATCH;
		scif__ivshm_dispatch(srv);
	}
	qsort(lat, batches, sizeof(*lat), cmp_u64);
	printf("raw aperture round trip: %.2f us (median of %u batches of %u)\n",
	       (double)lat[batches / 2] / 1000.0, batches, BATCH);
	scif__ivshm_destroy(srv);
	return 0;
}

static int card(unsigned int rounds)
{
	const char *path = getenv("SCIF_PCIE_DEV");
	unsigned int batches = rounds / BATCH ? rounds / BATCH : 1;
	volatile uint64_t *w;
	uint64_t size;

	if (!path || !*path)
		path = "/dev/scif_shim0";
	w = shim_map_bar2(path, &size);
	if (!w) {
		fprintf(stderr, "pcie-pingpong: no usable BAR2 behind %s\n", path);
		return 1;
	}
	if (await(w, 1, 120000000000ull))
		return 2;
	__atomic_store_n(w, 2, __ATOMIC_RELEASE);
	for (uint64_t k = 2; k < 2 + 2 * (uint64_t)batches * BATCH; k += 2) {
		if (await(w, k + 1, 10000000000ull))
			return 2;
		/* BAR2 is write-combining: the store goes out at once, not when the buffer fills. */
		__atomic_store_n(w, k + 2, __ATOMIC_SEQ_CST);
	}
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 4 && !strcmp(argv[1], "host"))
		return host(argv[2], (unsigned int)atoi(argv[3]));
	if (argc == 3 && !strcmp(argv[1], "card"))
		return card((unsigned int)atoi(argv[2]));
	fprintf(stderr, "usage: pcie-pingpong host SOCKET ROUNDS | card ROUNDS\n");
	return 1;
}
