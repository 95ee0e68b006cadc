/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * mpi-common.h - what the MPI test programs of tests/provider share: a data pattern that
 * depends on (seed, byte index) so that a misplaced, truncated or stale byte is caught, a
 * per-rank watchdog, and failure counting.
 *
 * The programs are clients of Open MPI (built with mpicc), not Criterion tests: each prints
 * one "error: rank R: ..." line per failed check (from the rank that saw it), rank 0 a verdict
 * line per step and a last "<program>: passed" or "<program>: N failed check(s)" line, and
 * the job exits 0 only when every check passed. tests/provider/check-provider.sh runs them
 * under mpirun and timeout(1) and prints the PASS/FAIL lines.
 */
#ifndef TESTS_PROVIDER_MPI_COMMON_H
#define TESTS_PROVIDER_MPI_COMMON_H

#include <mpi.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Failed checks of this rank. */
static int mt_failures;
static int mt_rank = -1;

/* Print one failure of this rank (to stdout, so mpirun keeps it in order with the rest). */
__attribute__((format(printf, 1, 2)))
static void mt_fail(const char *fmt, ...)
{
	va_list ap;

	mt_failures++;
	printf("error: rank %d: ", mt_rank);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
}

#define MT_CHECK(cond, ...)                                                                   \
	do {                                                                                  \
		if (!(cond))                                                                  \
			mt_fail(__VA_ARGS__);                                                 \
	} while (0)

/* The byte at index i of a message identified by seed: no two nearby messages agree. */
static inline unsigned char mt_byte(uint32_t seed, size_t i)
{
	uint64_t x = ((uint64_t)seed << 32) ^ (i * 0x9e3779b97f4a7c15ull);

	x ^= x >> 29;
	return (unsigned char)(x ^ (x >> 8) ^ (i >> 12));
}

static inline void mt_fill(void *buf, size_t len, uint32_t seed)
{
	unsigned char *p = buf;

	for (size_t i = 0; i < len; i++)
		p[i] = mt_byte(seed, i);
}

/* Check a received buffer; report the first bad byte (and how many are bad) as a failure. */
static inline int mt_verify(const void *buf, size_t len, uint32_t seed, const char *what)
{
	const unsigned char *p = buf;
	size_t bad = 0, first = 0;

	for (size_t i = 0; i < len; i++) {
		if (p[i] != mt_byte(seed, i)) {
			if (!bad)
				first = i;
			bad++;
		}
	}
	if (bad)
		mt_fail("%s: %zu of %zu bytes wrong, first at %zu (0x%02x, expected 0x%02x)",
			what, bad, len, first, p[first], mt_byte(seed, first));
	return bad ? -1 : 0;
}

/* Allocate or die: a test that cannot get its buffers fails loudly instead of crashing. */
static inline void *mt_alloc(size_t len)
{
	void *p = malloc(len ? len : 1);

	if (!p) {
		printf("error: rank %d: cannot allocate %zu bytes\n", mt_rank, len);
		fflush(stdout);
		MPI_Abort(MPI_COMM_WORLD, 2);
	}
	return p;
}

/*
 * The watchdog: a rank still running after @p seconds is killed by SIGALRM (default
 * action), which mpirun reports as an abnormal termination; the job fails instead of hanging
 * even when the outer timeout(1) is generous.
 */
static inline void mt_watchdog(unsigned seconds)
{
	signal(SIGALRM, SIG_DFL);
	alarm(seconds);
}

/*
 * Sum the failures of every rank; rank 0 prints the verdict. Returns the exit status for
 * main (0 when no rank failed).
 */
static inline int mt_finish(const char *prog)
{
	int total = 0;

	MPI_Allreduce(&mt_failures, &total, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
	if (mt_rank == 0) {
		if (total)
			printf("%s: %d failed check(s)\n", prog, total);
		else
			printf("%s: passed\n", prog);
		fflush(stdout);
	}
	MPI_Finalize();
	return total ? 1 : 0;
}

#endif /* TESTS_PROVIDER_MPI_COMMON_H */
