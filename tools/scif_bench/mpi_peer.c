// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * mpi_peer.c - scif_bench_mpi, the Open MPI side of `scif_bench --peers`: the patterns
 * scif_bench measures over SCIF, through MPI between two ranks (run by scif_bench as
 * `mpirun -np 2 --bind-to core --mca pml ob1 --mca btl self,vader`, i.e. Open MPI's
 * shared-memory transport).
 *
 *   scif_bench_mpi lat SECONDS SIZE...   round trips (rank 0 sends, rank 1 echoes); prints
 *                                        "lat SIZE MEDIAN_US P99_US ITERS" per size
 *   scif_bench_mpi bw SECONDS SIZE...    a stream (windows of 64 MPI_Isend, one ack per
 *                                        window); prints "bw SIZE GBPS BYTES" per size
 *
 * Each size is measured for about SECONDS after a warm-up. Round trips are timed one by one
 * with the same clock as scif_bench (the TSC when it is invariant, scaled against
 * CLOCK_MONOTONIC; else CLOCK_MONOTONIC itself), so the figures compare like for like.
 * Only MPI and libc: it is built with mpicc when configure finds one.
 */
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"

#define WINDOW 64
#define MAX_SAMPLES 1000000

static struct bench_clock clk;

static uint64_t now_ns(void)
{
	return bench_clock_ns(&clk);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* n round trips of size bytes; rank 0 stores each one's time in samples (if not NULL). */
static void pingpong(int rank, char *buf, int size, long n, uint64_t *samples)
{
	for (long i = 0; i < n; i++) {
		if (rank == 0) {
			uint64_t t0 = now_ns();

			MPI_Send(buf, size, MPI_BYTE, 1, 1, MPI_COMM_WORLD);
			MPI_Recv(buf, size, MPI_BYTE, 1, 1, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
			if (samples)
				samples[i] = now_ns() - t0;
		} else {
			MPI_Recv(buf, size, MPI_BYTE, 0, 1, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
			MPI_Send(buf, size, MPI_BYTE, 0, 1, MPI_COMM_WORLD);
		}
	}
}

/* n windows of WINDOW messages from rank 0 to rank 1, each window acknowledged. */
static void stream(int rank, char *buf, int size, long n)
{
	MPI_Request req[WINDOW];
	char ack = 0;

	for (long i = 0; i < n; i++) {
		for (int w = 0; w < WINDOW; w++) {
			if (rank == 0)
				MPI_Isend(buf, size, MPI_BYTE, 1, 2, MPI_COMM_WORLD, &req[w]);
			else
				MPI_Irecv(buf, size, MPI_BYTE, 0, 2, MPI_COMM_WORLD, &req[w]);
		}
		MPI_Waitall(WINDOW, req, MPI_STATUSES_IGNORE);
		if (rank == 0)
			MPI_Recv(&ack, 1, MPI_BYTE, 1, 3, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
		else
			MPI_Send(&ack, 1, MPI_BYTE, 0, 3, MPI_COMM_WORLD);
	}
}

/* Rank 0 decides how many iterations fill the time (one took per_ns); both learn it. */
static long iterations(double seconds, double per_ns, long cap)
{
	long n = per_ns > 0 ? (long)(seconds * 1e9 / per_ns) : 1;

	if (n < 1)
		n = 1;
	if (n > cap)
		n = cap;
	MPI_Bcast(&n, 1, MPI_LONG, 0, MPI_COMM_WORLD);
	return n;
}

int main(int argc, char **argv)
{
	int rank, nranks, lat;
	double seconds;
	uint64_t *samples = NULL;
	size_t max = 1;
	char *buf;

	MPI_Init(&argc, &argv);
	MPI_Comm_rank(MPI_COMM_WORLD, &rank);
	MPI_Comm_size(MPI_COMM_WORLD, &nranks);
	if (argc < 4 || nranks != 2 || (strcmp(argv[1], "lat") && strcmp(argv[1], "bw"))) {
		if (rank == 0)
			fprintf(stderr, "usage: mpirun -np 2 scif_bench_mpi lat|bw SECONDS SIZE...\n");
		MPI_Finalize();
		return 2;
	}
	lat = !strcmp(argv[1], "lat");
	seconds = atof(argv[2]);
	for (int i = 3; i < argc; i++)
		if ((size_t)atol(argv[i]) > max)
			max = (size_t)atol(argv[i]);
	buf = malloc(max);
	if (rank == 0 && lat)
		samples = malloc(MAX_SAMPLES * sizeof(*samples));
	if (!buf || (rank == 0 && lat && !samples))
		MPI_Abort(MPI_COMM_WORLD, 1);
	memset(buf, 0x5a, max);
	bench_clock_setup(&clk);

	for (int i = 3; i < argc; i++) {
		int size = atoi(argv[i]);
		uint64_t t0, t;
		double per = 0;
		long n;

		if (size < 0)
			MPI_Abort(MPI_COMM_WORLD, 1);
		MPI_Barrier(MPI_COMM_WORLD);
		/* Warm-up, a quarter of the time, which also tells how long one iteration takes. */
		t0 = now_ns();
		n = 0;
		for (long k = 1;; k *= 2) {
			if (lat)
				pingpong(rank, buf, size, k, NULL);
			else
				stream(rank, buf, size, k);
			n += k;
			t = now_ns() - t0;
			per = (double)t / (double)n;
			/* Rank 0 decides when the warm-up is over; rank 1 follows. */
			{
				int done = rank == 0 && (double)t > seconds * 0.25e9;

				MPI_Bcast(&done, 1, MPI_INT, 0, MPI_COMM_WORLD);
				if (done)
					break;
			}
		}
		n = iterations(seconds, per, lat ? MAX_SAMPLES : 1L << 30);
		MPI_Barrier(MPI_COMM_WORLD);
		t0 = now_ns();
		if (lat)
			pingpong(rank, buf, size, n, samples);
		else
			stream(rank, buf, size, n);
		t = now_ns() - t0;
		if (rank != 0)
			continue;
		if (lat) {
			qsort(samples, (size_t)n, sizeof(*samples), cmp_u64);
			printf("lat %d %.4f %.4f %ld\n", size, samples[n / 2] / 1e3,
			       samples[(size_t)((double)n * 0.99)] / 1e3, n);
		} else {
			double bytes = (double)n * WINDOW * (double)size;

			printf("bw %d %.4f %.0f\n", size, bytes / (double)t, bytes);
		}
		fflush(stdout);
	}
	free(samples);
	free(buf);
	MPI_Finalize();
	return 0;
}
