// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * mpi-coll.c - MPI collectives over the provider under test (any number of ranks >= 2).
 * With the cm PML and the ofi MTL, Open MPI's collectives are built on the provider's tagged
 * messages, so these exercise it with many peers at once and with MPI's internal tags.
 *   bcast      every rank as root in turn, 0 B to 16 MiB, data checked on every rank
 *   allreduce  MPI_SUM of ints and doubles, MPI_MAX, MPI_IN_PLACE, up to 4 Mi elements
 *   alltoall   each pair's block carries its own pattern, 1 B to 1 MiB per block
 *   barrier    ranks enter at different times; no rank may leave before the last entered
 *              (entry and exit times on CLOCK_MONOTONIC, which every process of a machine
 *              shares, gathered and compared)
 */
#include <time.h>

#include "mpi-common.h"

static int nranks;

static uint32_t seed_of(int root, int round, size_t size)
{
	return (uint32_t)root * 0x01000193u ^ (uint32_t)round * 0x85ebca6bu ^ (uint32_t)size;
}

static void test_bcast(void)
{
	static const size_t sizes[] = { 0, 1, 8, 4096, 65537, 1 << 20, 16 << 20 };
	unsigned char *buf = mt_alloc((size_t)16 << 20);
	char what[64];

	for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
		for (int root = 0; root < nranks; root++) {
			size_t n = sizes[k];

			/* The 16 MiB case once, from the last rank, keeps the run short. */
			if (n > ((size_t)1 << 20) && root != nranks - 1)
				continue;
			if (mt_rank == root)
				mt_fill(buf, n, seed_of(root, (int)k, n));
			else
				memset(buf, 0x5a, n);
			MPI_Bcast(buf, (int)n, MPI_BYTE, root, MPI_COMM_WORLD);
			snprintf(what, sizeof(what), "bcast %zu B from %d", n, root);
			mt_verify(buf, n, seed_of(root, (int)k, n), what);
		}
	}
	free(buf);
}

static void test_allreduce(void)
{
	static const size_t counts[] = { 1, 7, 1024, 65536, 4 << 20 };
	const size_t max = (size_t)4 << 20;
	int *isend = mt_alloc(max * sizeof(int)), *irecv = mt_alloc(max * sizeof(int));
	double *dbuf = mt_alloc(max * sizeof(double));

	for (size_t k = 0; k < sizeof(counts) / sizeof(counts[0]); k++) {
		size_t n = counts[k];
		size_t bad = 0;
		long long nr = nranks;

		/* Integers: element i of rank r is r * 1000 + i % 977. */
		for (size_t i = 0; i < n; i++)
			isend[i] = mt_rank * 1000 + (int)(i % 977);
		MPI_Allreduce(isend, irecv, (int)n, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
		for (size_t i = 0; i < n; i++) {
			long long want = 1000 * nr * (nr - 1) / 2 + nr * (long long)(i % 977);

			bad += irecv[i] != want;
		}
		MT_CHECK(!bad, "allreduce MPI_SUM of %zu ints: %zu elements wrong", n, bad);

		MPI_Allreduce(isend, irecv, (int)n, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
		bad = 0;
		for (size_t i = 0; i < n; i++)
			bad += irecv[i] != (nranks - 1) * 1000 + (int)(i % 977);
		MT_CHECK(!bad, "allreduce MPI_MAX of %zu ints: %zu elements wrong", n, bad);

		/* Doubles in place: exact, the values are small integers and halves. */
		for (size_t i = 0; i < n; i++)
			dbuf[i] = 0.5 * (double)(mt_rank + 1) + (double)(i % 13);
		MPI_Allreduce(MPI_IN_PLACE, dbuf, (int)n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
		bad = 0;
		for (size_t i = 0; i < n; i++)
			bad += dbuf[i] != 0.25 * (double)(nr * (nr + 1)) + (double)nr * (double)(i % 13);
		MT_CHECK(!bad, "allreduce MPI_SUM in place of %zu doubles: %zu elements wrong", n, bad);
	}
	free(isend);
	free(irecv);
	free(dbuf);
}

static void test_alltoall(void)
{
	static const size_t blocks[] = { 1, 64, 4096, 65536, 1 << 20 };
	const size_t max = (size_t)1 << 20;
	unsigned char *sbuf = mt_alloc(max * (size_t)nranks), *rbuf = mt_alloc(max * (size_t)nranks);
	char what[64];

	for (size_t k = 0; k < sizeof(blocks) / sizeof(blocks[0]); k++) {
		size_t b = blocks[k];

		/* Block j of rank r goes to rank j: its seed names both. */
		for (int j = 0; j < nranks; j++)
			mt_fill(sbuf + (size_t)j * b, b, seed_of(mt_rank * 64 + j, (int)k, b));
		memset(rbuf, 0xa5, b * (size_t)nranks);
		MPI_Alltoall(sbuf, (int)b, MPI_BYTE, rbuf, (int)b, MPI_BYTE, MPI_COMM_WORLD);
		for (int j = 0; j < nranks; j++) {
			snprintf(what, sizeof(what), "alltoall %zu B block from %d", b, j);
			mt_verify(rbuf + (size_t)j * b, b, seed_of(j * 64 + mt_rank, (int)k, b), what);
		}
	}
	free(sbuf);
	free(rbuf);
}

static int64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void test_barrier(void)
{
	int64_t *all = mt_alloc(2 * sizeof(int64_t) * (size_t)nranks);

	for (int round = 0; round < 10; round++) {
		/* A different rank arrives last in each round, 20 ms after the others. */
		int late = round % nranks;
		int64_t mine[2];

		if (mt_rank == late) {
			struct timespec d = { 0, 20 * 1000 * 1000 };

			nanosleep(&d, NULL);
		}
		mine[0] = mono_ns();
		MPI_Barrier(MPI_COMM_WORLD);
		mine[1] = mono_ns();
		MPI_Allgather(mine, 2, MPI_INT64_T, all, 2, MPI_INT64_T, MPI_COMM_WORLD);
		int64_t last_in = all[0], first_out = all[1];

		for (int r = 1; r < nranks; r++) {
			if (all[2 * r] > last_in)
				last_in = all[2 * r];
			if (all[2 * r + 1] < first_out)
				first_out = all[2 * r + 1];
		}
		MT_CHECK(first_out >= last_in,
			 "barrier round %d: a rank left %lld ns before rank %d entered", round,
			 (long long)(last_in - first_out), late);
	}
	free(all);
}

int main(int argc, char **argv)
{
	static const char *const names[] = { "bcast", "allreduce", "alltoall", "barrier" };

	mt_watchdog(240);
	MPI_Init(&argc, &argv);
	MPI_Comm_rank(MPI_COMM_WORLD, &mt_rank);
	MPI_Comm_size(MPI_COMM_WORLD, &nranks);
	if (nranks < 2) {
		if (mt_rank == 0)
			printf("error: mpi-coll needs at least 2 ranks\n");
		MPI_Finalize();
		return 1;
	}
	for (int step = 0; step < 4; step++) {
		int before = mt_failures;

		switch (step) {
		case 0: test_bcast(); break;
		case 1: test_allreduce(); break;
		case 2: test_alltoall(); break;
		case 3: test_barrier(); break;
		}
		int mine = mt_failures - before, all = 0;

		MPI_Allreduce(&mine, &all, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
		if (mt_rank == 0) {
			printf("%-24s %s (%d ranks)\n", names[step], all ? "failed" : "ok", nranks);
			fflush(stdout);
		}
	}
	return mt_finish("mpi-coll");
}
