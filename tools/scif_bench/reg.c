// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * reg.c - scif_bench --registration N: what scif_register() and scif_unregister() cost as an
 * endpoint's windows accumulate, at a few windows and at N, in the same run.
 *
 * The client registers N one-page windows, every other page of one private anonymous
 * buffer, in ascending order (so each is fresh memory, separate from the last), timing each
 * call. At 32 windows and again at N it also registers a page that is already a window
 * (registration shares its pages) 64 times and unregisters those windows again. Each row is
 * the median of its calls; the ratio is the cost at N windows over the cost at 32.
 *
 * Then it registers a large range of fresh memory (REG_LARGE), filled with bytes and filled
 * with zeros, against the limit in the same run: memcpy of the same bytes into fresh memory,
 * which is what moving them into window memory at least costs (a fresh buffer of zeros needs
 * no copy: its pages are left out). Each figure is the median of REG_LARGE_REPS.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "bench.h"

#define REG_FEW 32   /* the "few windows" point */
#define REG_REPS 64  /* calls per re-registration sample */
#define REG_LARGE ((size_t)256 << 20) /* the large range */
#define REG_LARGE_REPS 3

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static double median_us(uint64_t *v, size_t n)
{
	qsort(v, n, sizeof(*v), cmp_u64);
	return (double)v[n / 2] / 1e3;
}

/* REG_REPS registrations of @page, already a window, then their unregistrations. */
static int again(struct bench *b, uint8_t *page, double *reg_us, double *unreg_us)
{
	uint64_t treg[REG_REPS], tunreg[REG_REPS];
	off_t off[REG_REPS];

	for (int i = 0; i < REG_REPS; i++) {
		uint64_t t0 = now_ns();

		off[i] = scif_register(b->ep, page, BENCH_PAGE, 0, SCIF_PROT_READ, 0);
		treg[i] = now_ns() - t0;
		if (off[i] == SCIF_REGISTER_FAILED) {
			perror("scif_bench: --registration: scif_register (again)");
			return -1;
		}
	}
	for (int i = 0; i < REG_REPS; i++) {
		uint64_t t0 = now_ns();

		if (scif_unregister(b->ep, off[i], BENCH_PAGE) < 0) {
			perror("scif_bench: --registration: scif_unregister");
			return -1;
		}
		tunreg[i] = now_ns() - t0;
	}
	*reg_us = median_us(treg, REG_REPS);
	*unreg_us = median_us(tunreg, REG_REPS);
	return 0;
}

/*
 * One sample of the large rows, in ns: what = 0 memcpy into fresh memory, 1 register fresh
 * memory filled with bytes, 2 the same filled with zeros. 0 on failure.
 */
static uint64_t large_once(struct bench *b, int what, const uint8_t *src)
{
	const int prot = PROT_READ | PROT_WRITE, flags = MAP_PRIVATE | MAP_ANONYMOUS;
	uint8_t *buf = mmap(NULL, REG_LARGE, prot, flags, -1, 0);
	uint64_t t0, ns;
	off_t off;

	if (buf == MAP_FAILED)
		return 0;
	if (what == 0) {
		t0 = now_ns();
		memcpy(buf, src, REG_LARGE);
		ns = now_ns() - t0;
	} else {
		memset(buf, what == 1 ? 0x5a : 0, REG_LARGE);
		t0 = now_ns();
		off = scif_register(b->ep, buf, REG_LARGE, 0, SCIF_PROT_READ | SCIF_PROT_WRITE, 0);
		ns = now_ns() - t0;
		if (off == SCIF_REGISTER_FAILED || scif_unregister(b->ep, off, REG_LARGE) < 0) {
			perror("scif_bench: --registration: a large range");
			ns = 0;
		}
	}
	munmap(buf, REG_LARGE);
	return ns ? ns : 1;
}

static int large(struct bench *b)
{
	static const char *const row[] = { "memcpy into fresh memory (limit)",
					   "scif_register, bytes",
					   "scif_register, zeros" };
	uint64_t t[3][REG_LARGE_REPS];
	double med[3]; /* us */
	uint8_t *src = mmap(NULL, REG_LARGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
			    -1, 0);

	if (src == MAP_FAILED) {
		fprintf(stderr, "scif_bench: --registration: out of memory\n");
		return -1;
	}
	memset(src, 0x5a, REG_LARGE);
	/* Interleaved, so that a slow moment of the machine costs every row alike. */
	for (int r = 0; r < REG_LARGE_REPS; r++)
		for (int w = 0; w < 3; w++)
			if (!(t[w][r] = large_once(b, w, src))) {
				munmap(src, REG_LARGE);
				return -1;
			}
	munmap(src, REG_LARGE);
	for (int w = 0; w < 3; w++)
		med[w] = median_us(t[w], REG_LARGE_REPS);
	printf("\nregistration of %zu MiB of fresh memory (median of %d)\n", REG_LARGE >> 20,
	       REG_LARGE_REPS);
	printf("%-34s %12s %12s %10s\n", "", "ms", "GB/s", "x limit");
	for (int w = 0; w < 3; w++)
		printf("%-34s %12.1f %12.2f %10.2f\n", row[w], med[w] / 1e3,
		       (double)REG_LARGE / med[w] / 1e3, med[w] / med[0]);
	return 0;
}

int bench_registration(struct bench *b, int n)
{
	size_t len = (size_t)2 * (size_t)n * BENCH_PAGE;
	uint64_t *t = calloc((size_t)n, sizeof(*t));
	double fresh[2], reg[2], unreg[2];
	uint8_t *buf;
	int ret = -1;

	if (n < 2 * REG_FEW) {
		fprintf(stderr, "scif_bench: --registration: N must be at least %d\n", 2 * REG_FEW);
		free(t);
		return -1;
	}
	buf = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (!t || buf == MAP_FAILED) {
		fprintf(stderr, "scif_bench: --registration: out of memory\n");
		free(t);
		return -1;
	}
	memset(buf, 0x5a, len);
	for (int i = 0; i < n; i++) {
		uint64_t t0 = now_ns();

		if (scif_register(b->ep, buf + (size_t)2 * (size_t)i * BENCH_PAGE, BENCH_PAGE, 0,
				  SCIF_PROT_READ | SCIF_PROT_WRITE, 0) == SCIF_REGISTER_FAILED) {
			fprintf(stderr, "scif_bench: --registration: window %d: %s\n", i,
				strerror(errno));
			goto out;
		}
		t[i] = now_ns() - t0;
		if (i + 1 == REG_FEW && again(b, buf, &reg[0], &unreg[0]))
			goto out;
		bench_progress(i + 1, n, "registration", BENCH_PAGE);
	}
	if (again(b, buf, &reg[1], &unreg[1]))
		goto out;
	bench_progress_end();
	fresh[0] = median_us(t, REG_FEW);
	fresh[1] = median_us(t + n - REG_FEW, REG_FEW);
	printf("registration of one page, with W windows already registered (median, us)\n");
	printf("%-34s %12s %12s %10s\n", "", "W = 32", "W = N", "N / 32");
	printf("%-34s %12.1f %12.1f %10.2f\n", "scif_register, fresh memory", fresh[0], fresh[1],
	       fresh[1] / fresh[0]);
	printf("%-34s %12.1f %12.1f %10.2f\n", "scif_register, a window's memory", reg[0], reg[1],
	       reg[1] / reg[0]);
	printf("%-34s %12.1f %12.1f %10.2f\n", "scif_unregister", unreg[0], unreg[1],
	       unreg[1] / unreg[0]);
	printf("N = %d windows; fresh memory at W = N is the median of the last %d calls\n", n,
	       REG_FEW);
	ret = large(b);
out:
	bench_progress_end();
	free(t);
	/* The windows go with the endpoint; the buffer after them (scif_close comes first). */
	return ret;
}
