// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * mpi-p2p.c - MPI point-to-point over the provider under test (any number of ranks >= 2).
 *
 * Every message carries a pattern that depends on its source, destination, tag and size, and
 * every receive checks the bytes, MPI_SOURCE, MPI_TAG and MPI_Get_count:
 *   blocking      rank 0 ping-pongs with every other rank, 0 B to 16 MiB
 *   self          each rank sends to itself (the provider's loopback path)
 *   nonblocking   a ring: every rank posts all receives, then all sends, completes half of the
 *                 rounds with MPI_Waitall and half with a bounded MPI_Testall loop
 *   any-source    rank 0 receives from MPI_ANY_SOURCE, small and rendezvous-sized messages
 *   any-tag       rank 0 receives rank 1's messages with MPI_ANY_TAG: in order (MPI's
 *                 non-overtaking rule), then from MPI_ANY_SOURCE and MPI_ANY_TAG at once
 *   probe         MPI_Probe sizes a message before it is received; MPI_Iprobe (bounded loop)
 *                 finds messages from any source; an Iprobe for a tag never sent finds nothing
 *   unexpected    messages that arrive before their receive is posted (eager and rendezvous
 *                 sizes), received in another order than sent (different tags)
 */
#include <time.h>

#include "mpi-common.h"

static const size_t sizes[] = {
	0, 1, 8, 63, 64, 1000, 4096, 8191, 65536, 65537, 262144, 1 << 20, 4 << 20, 16 << 20,
};
#define NSIZES (sizeof(sizes) / sizeof(sizes[0]))
#define MAX_SIZE ((size_t)16 << 20)

static int nranks;

/* The pattern seed of a message: who sent it to whom, with which tag, and its size. */
static uint32_t seed_of(int src, int dst, int tag, size_t size)
{
	return (uint32_t)src * 0x01000193u ^ (uint32_t)dst * 0x2545f491u ^ (uint32_t)tag * 0x9e37u ^
	       (uint32_t)size;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Check a completed receive's status against what the sender sent. */
static void check_status(const MPI_Status *st, int src, int tag, size_t len, const char *what)
{
	int count = -1;

	MPI_Get_count(st, MPI_BYTE, &count);
	MT_CHECK(st->MPI_SOURCE == src, "%s: MPI_SOURCE %d, expected %d", what, st->MPI_SOURCE, src);
	MT_CHECK(st->MPI_TAG == tag, "%s: MPI_TAG %d, expected %d", what, st->MPI_TAG, tag);
	MT_CHECK(count >= 0 && (size_t)count == len, "%s: count %d, expected %zu", what, count, len);
}

/* Rank 0 and each other rank in turn: send, receive the peer's answer, every size. */
static void test_blocking(int rank, unsigned char *sbuf, unsigned char *rbuf)
{
	char what[96];

	for (int peer = 1; peer < nranks; peer++) {
		if (rank != 0 && rank != peer)
			continue;
		int other = rank == 0 ? peer : 0;

		for (size_t k = 0; k < NSIZES; k++) {
			size_t n = sizes[k];
			int tag = (int)k;
			MPI_Status st;

			snprintf(what, sizeof(what), "blocking %zu B %d->%d", n, other, rank);
			if (rank == 0) {
				mt_fill(sbuf, n, seed_of(0, peer, tag, n));
				MPI_Send(sbuf, (int)n, MPI_BYTE, peer, tag, MPI_COMM_WORLD);
				MPI_Recv(rbuf, (int)MAX_SIZE, MPI_BYTE, peer, tag, MPI_COMM_WORLD, &st);
			} else {
				MPI_Recv(rbuf, (int)MAX_SIZE, MPI_BYTE, 0, tag, MPI_COMM_WORLD, &st);
			}
			check_status(&st, other, tag, n, what);
			mt_verify(rbuf, n, seed_of(other, rank, tag, n), what);
			if (rank != 0) {
				mt_fill(sbuf, n, seed_of(rank, 0, tag, n));
				MPI_Send(sbuf, (int)n, MPI_BYTE, 0, tag, MPI_COMM_WORLD);
			}
		}
	}
}

/* A rank sending to itself: through the provider's own address with mtl ofi. */
static void test_self(int rank, unsigned char *sbuf, unsigned char *rbuf)
{
	static const size_t self_sizes[] = { 0, 8, 65536, 4 << 20 };
	char what[64];

	for (size_t k = 0; k < sizeof(self_sizes) / sizeof(self_sizes[0]); k++) {
		size_t n = self_sizes[k];
		MPI_Request req;
		MPI_Status st;

		snprintf(what, sizeof(what), "self %zu B", n);
		mt_fill(sbuf, n, seed_of(rank, rank, 50, n));
		MPI_Isend(sbuf, (int)n, MPI_BYTE, rank, 50, MPI_COMM_WORLD, &req);
		MPI_Recv(rbuf, (int)MAX_SIZE, MPI_BYTE, rank, 50, MPI_COMM_WORLD, &st);
		MPI_Wait(&req, MPI_STATUS_IGNORE);
		check_status(&st, rank, 50, n, what);
		mt_verify(rbuf, n, seed_of(rank, rank, 50, n), what);
	}
}

/*
 * The ring: every size at once, each its own tag. @p by_test completes with a bounded
 * MPI_Testall loop instead of MPI_Waitall.
 */
static void test_ring(int rank, bool by_test)
{
	int right = (rank + 1) % nranks, left = (rank + nranks - 1) % nranks;
	MPI_Request reqs[2 * NSIZES];
	MPI_Status sts[2 * NSIZES];
	unsigned char *sb[NSIZES], *rb[NSIZES];
	char what[96];

	for (size_t k = 0; k < NSIZES; k++) {
		rb[k] = mt_alloc(sizes[k]);
		memset(rb[k], 0xee, sizes[k]);
		MPI_Irecv(rb[k], (int)sizes[k], MPI_BYTE, left, 100 + (int)k, MPI_COMM_WORLD,
			  &reqs[k]);
	}
	for (size_t k = 0; k < NSIZES; k++) {
		sb[k] = mt_alloc(sizes[k]);
		mt_fill(sb[k], sizes[k], seed_of(rank, right, 100 + (int)k, sizes[k]));
		MPI_Isend(sb[k], (int)sizes[k], MPI_BYTE, right, 100 + (int)k, MPI_COMM_WORLD,
			  &reqs[NSIZES + k]);
	}
	if (by_test) {
		double deadline = now_s() + 60;
		int done = 0;

		while (!done && now_s() < deadline)
			MPI_Testall(2 * NSIZES, reqs, &done, sts);
		if (!done) {
			mt_fail("ring: MPI_Testall did not complete in 60 s");
			MPI_Abort(MPI_COMM_WORLD, 3);
		}
	} else {
		MPI_Waitall(2 * NSIZES, reqs, sts);
	}
	for (size_t k = 0; k < NSIZES; k++) {
		snprintf(what, sizeof(what), "ring (%s) %zu B %d->%d", by_test ? "Testall" : "Waitall",
			 sizes[k], left, rank);
		check_status(&sts[k], left, 100 + (int)k, sizes[k], what);
		mt_verify(rb[k], sizes[k], seed_of(left, rank, 100 + (int)k, sizes[k]), what);
		free(rb[k]);
		free(sb[k]);
	}
}

/* Every other rank sends one small and one large message; rank 0 takes them as they come. */
static void test_any_source(int rank, unsigned char *sbuf, unsigned char *rbuf)
{
	const int tags[2] = { 200, 201 };
	char what[96];

	for (int t = 0; t < 2; t++) {
		int tag = tags[t];

		if (rank != 0) {
			size_t n = t == 0 ? (size_t)rank * 100 : ((size_t)1 << 20) + (size_t)rank;

			mt_fill(sbuf, n, seed_of(rank, 0, tag, n));
			MPI_Send(sbuf, (int)n, MPI_BYTE, 0, tag, MPI_COMM_WORLD);
			continue;
		}
		unsigned seen = 0;

		for (int i = 1; i < nranks; i++) {
			MPI_Status st;
			int src;

			MPI_Recv(rbuf, (int)MAX_SIZE, MPI_BYTE, MPI_ANY_SOURCE, tag, MPI_COMM_WORLD,
				 &st);
			src = st.MPI_SOURCE;
			if (src <= 0 || src >= nranks || (seen & (1u << src))) {
				mt_fail("any-source tag %d: unexpected MPI_SOURCE %d", tag, src);
				continue;
			}
			seen |= 1u << src;
			size_t n = t == 0 ? (size_t)src * 100 : ((size_t)1 << 20) + (size_t)src;

			snprintf(what, sizeof(what), "any-source tag %d from %d", tag, src);
			check_status(&st, src, tag, n, what);
			mt_verify(rbuf, n, seed_of(src, 0, tag, n), what);
		}
	}
}

/* MPI_ANY_TAG: rank 1's messages in the order sent; then MPI_ANY_SOURCE + MPI_ANY_TAG. */
static void test_any_tag(int rank, unsigned char *sbuf, unsigned char *rbuf)
{
	static const int tags[] = { 307, 303, 311, 305, 302 };
	static const size_t lens[] = { 0, 16, 70000, 2 << 20, 9 };
	char what[96];

	if (rank == 1) {
		for (size_t i = 0; i < 5; i++) {
			mt_fill(sbuf, lens[i], seed_of(1, 0, tags[i], lens[i]));
			MPI_Send(sbuf, (int)lens[i], MPI_BYTE, 0, tags[i], MPI_COMM_WORLD);
		}
	} else if (rank == 0) {
		for (size_t i = 0; i < 5; i++) {
			MPI_Status st;

			MPI_Recv(rbuf, (int)MAX_SIZE, MPI_BYTE, 1, MPI_ANY_TAG, MPI_COMM_WORLD, &st);
			snprintf(what, sizeof(what), "any-tag message %zu (tag %d)", i, tags[i]);
			check_status(&st, 1, tags[i], lens[i], what);
			mt_verify(rbuf, lens[i], seed_of(1, 0, tags[i], lens[i]), what);
		}
	}
	MPI_Barrier(MPI_COMM_WORLD);

	/* Both wildcards: every other rank sends tag 400 + 3 * rank, its size tells it apart. */
	if (rank != 0) {
		size_t n = (size_t)rank * 3000;

		mt_fill(sbuf, n, seed_of(rank, 0, 400 + 3 * rank, n));
		MPI_Send(sbuf, (int)n, MPI_BYTE, 0, 400 + 3 * rank, MPI_COMM_WORLD);
		return;
	}
	unsigned seen = 0;

	for (int i = 1; i < nranks; i++) {
		MPI_Status st;

		MPI_Recv(rbuf, (int)MAX_SIZE, MPI_BYTE, MPI_ANY_SOURCE, MPI_ANY_TAG, MPI_COMM_WORLD,
			 &st);
		int src = st.MPI_SOURCE;

		if (src <= 0 || src >= nranks || (seen & (1u << src))) {
			mt_fail("any-source+any-tag: unexpected MPI_SOURCE %d", src);
			continue;
		}
		seen |= 1u << src;
		snprintf(what, sizeof(what), "any-source+any-tag from %d", src);
		check_status(&st, src, 400 + 3 * src, (size_t)src * 3000, what);
		mt_verify(rbuf, (size_t)src * 3000, seed_of(src, 0, 400 + 3 * src, (size_t)src * 3000),
			  what);
	}
}

/* MPI_Probe then a receive of exactly the probed size; MPI_Iprobe with a deadline. */
static void test_probe(int rank, unsigned char *sbuf)
{
	char what[96];

	if (rank != 0) {
		size_t n1 = (size_t)rank * 12345, n2 = ((size_t)3 << 20) + (size_t)rank;

		mt_fill(sbuf, n1, seed_of(rank, 0, 500, n1));
		MPI_Send(sbuf, (int)n1, MPI_BYTE, 0, 500, MPI_COMM_WORLD);
		mt_fill(sbuf, n2, seed_of(rank, 0, 501, n2));
		MPI_Send(sbuf, (int)n2, MPI_BYTE, 0, 501, MPI_COMM_WORLD);
	} else {
		/* MPI_Probe, from each rank by name. */
		for (int src = 1; src < nranks; src++) {
			MPI_Status st;
			int count = -1;

			MPI_Probe(src, 500, MPI_COMM_WORLD, &st);
			MPI_Get_count(&st, MPI_BYTE, &count);
			snprintf(what, sizeof(what), "probe from %d", src);
			check_status(&st, src, 500, (size_t)src * 12345, what);
			if (count < 0)
				continue;
			unsigned char *buf = mt_alloc((size_t)count);

			MPI_Recv(buf, count, MPI_BYTE, src, 500, MPI_COMM_WORLD, &st);
			check_status(&st, src, 500, (size_t)src * 12345, what);
			mt_verify(buf, (size_t)count, seed_of(src, 0, 500, (size_t)count), what);
			free(buf);
		}
		/* MPI_Iprobe from any source, polled for at most 60 s per message. */
		for (int i = 1; i < nranks; i++) {
			double deadline = now_s() + 60;
			MPI_Status st;
			int flag = 0, count = -1;

			while (!flag && now_s() < deadline)
				MPI_Iprobe(MPI_ANY_SOURCE, 501, MPI_COMM_WORLD, &flag, &st);
			if (!flag) {
				mt_fail("iprobe: message %d of %d not found in 60 s", i, nranks - 1);
				MPI_Abort(MPI_COMM_WORLD, 3);
			}
			int src = st.MPI_SOURCE;

			MPI_Get_count(&st, MPI_BYTE, &count);
			snprintf(what, sizeof(what), "iprobe from %d", src);
			if (src <= 0 || src >= nranks || count < 0) {
				mt_fail("%s: bad status (count %d)", what, count);
				MPI_Abort(MPI_COMM_WORLD, 3);
			}
			check_status(&st, src, 501, ((size_t)3 << 20) + (size_t)src, what);
			unsigned char *buf = mt_alloc((size_t)count);

			MPI_Recv(buf, count, MPI_BYTE, src, 501, MPI_COMM_WORLD, &st);
			check_status(&st, src, 501, ((size_t)3 << 20) + (size_t)src, what);
			mt_verify(buf, (size_t)count, seed_of(src, 0, 501, (size_t)count), what);
			free(buf);
		}
	}
	MPI_Barrier(MPI_COMM_WORLD);
	/* Nothing was sent with tag 599: Iprobe must say so. */
	int flag = 1;

	MPI_Iprobe(MPI_ANY_SOURCE, 599, MPI_COMM_WORLD, &flag, MPI_STATUS_IGNORE);
	MT_CHECK(!flag, "iprobe found a message with a tag never sent");
}

/*
 * Messages that arrive before their receive: each other rank starts a small and a large send
 * to rank 0, all meet in a barrier, and only then does rank 0 post its receives, large first.
 */
static void test_unexpected(int rank, unsigned char *sbuf, unsigned char *rbuf)
{
	const size_t small = 24, large = (size_t)8 << 20;
	char what[96];

	if (rank != 0) {
		MPI_Request reqs[2];
		unsigned char *small_buf = mt_alloc(small);

		mt_fill(small_buf, small, seed_of(rank, 0, 600, small));
		mt_fill(sbuf, large, seed_of(rank, 0, 601, large));
		MPI_Isend(small_buf, (int)small, MPI_BYTE, 0, 600, MPI_COMM_WORLD, &reqs[0]);
		MPI_Isend(sbuf, (int)large, MPI_BYTE, 0, 601, MPI_COMM_WORLD, &reqs[1]);
		MPI_Barrier(MPI_COMM_WORLD);
		MPI_Waitall(2, reqs, MPI_STATUSES_IGNORE);
		free(small_buf);
		return;
	}
	MPI_Barrier(MPI_COMM_WORLD);
	for (int src = nranks - 1; src >= 1; src--) {
		MPI_Status st;

		snprintf(what, sizeof(what), "unexpected large from %d", src);
		MPI_Recv(rbuf, (int)MAX_SIZE, MPI_BYTE, src, 601, MPI_COMM_WORLD, &st);
		check_status(&st, src, 601, large, what);
		mt_verify(rbuf, large, seed_of(src, 0, 601, large), what);
		snprintf(what, sizeof(what), "unexpected small from %d", src);
		MPI_Recv(rbuf, (int)MAX_SIZE, MPI_BYTE, src, 600, MPI_COMM_WORLD, &st);
		check_status(&st, src, 600, small, what);
		mt_verify(rbuf, small, seed_of(src, 0, 600, small), what);
	}
}

int main(int argc, char **argv)
{
	mt_watchdog(240);
	MPI_Init(&argc, &argv);
	MPI_Comm_rank(MPI_COMM_WORLD, &mt_rank);
	MPI_Comm_size(MPI_COMM_WORLD, &nranks);
	if (nranks < 2 || nranks > 32) {
		if (mt_rank == 0)
			printf("error: mpi-p2p needs 2 to 32 ranks, not %d\n", nranks);
		MPI_Finalize();
		return 1;
	}
	unsigned char *sbuf = mt_alloc(MAX_SIZE), *rbuf = mt_alloc(MAX_SIZE);
	static const char *const names[] = { "blocking", "self", "nonblocking (Waitall)",
					     "nonblocking (Testall)", "any-source", "any-tag",
					     "probe", "unexpected" };

	for (int step = 0; step < 8; step++) {
		int before = mt_failures;

		switch (step) {
		case 0: test_blocking(mt_rank, sbuf, rbuf); break;
		case 1: test_self(mt_rank, sbuf, rbuf); break;
		case 2: test_ring(mt_rank, false); break;
		case 3: test_ring(mt_rank, true); break;
		case 4: test_any_source(mt_rank, sbuf, rbuf); break;
		case 5: test_any_tag(mt_rank, sbuf, rbuf); break;
		case 6: test_probe(mt_rank, sbuf); break;
		case 7: test_unexpected(mt_rank, sbuf, rbuf); break;
		}
		int mine = mt_failures - before, all = 0;

		MPI_Allreduce(&mine, &all, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
		if (mt_rank == 0) {
			printf("%-24s %s (%d ranks)\n", names[step], all ? "failed" : "ok", nranks);
			fflush(stdout);
		}
	}
	free(sbuf);
	free(rbuf);
	return mt_finish("mpi-p2p");
}
