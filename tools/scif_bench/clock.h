/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * clock.h - the clock scif_bench and scif_bench_mpi time every sample with, header-only so
 * that both programs (one built with mpicc) use the same one. With an invariant TSC
 * (constant_tsc and nonstop_tsc in /proc/cpuinfo) it is the TSC, scaled by a factor
 * measured against CLOCK_MONOTONIC over 20 ms: reading it costs a third of clock_gettime(),
 * which matters when the round trip being timed is 150 ns. Otherwise, or with
 * SCIF_BENCH_NO_TSC set, CLOCK_MONOTONIC. Nothing is ever subtracted from a figure: the
 * clock's own cost is part of every sample, baselines and peers included.
 */
#ifndef SCIF_BENCH_CLOCK_H
#define SCIF_BENCH_CLOCK_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct bench_clock {
	double ns_per_tick; /* 0: no usable TSC */
	uint64_t tick0;
};

static inline uint64_t bench_mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Both flags, or the TSC may stop in idle states or change rate with the clock speed. */
static inline int bench_tsc_invariant(void)
{
	FILE *f = fopen("/proc/cpuinfo", "r");
	char line[4096];
	int ok = 0;

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, "flags", 5)) {
			ok = strstr(line, " constant_tsc") && strstr(line, " nonstop_tsc");
			break;
		}
	fclose(f);
	return ok;
}

static inline void bench_clock_setup(struct bench_clock *c)
{
	c->ns_per_tick = 0;
	c->tick0 = 0;
#if defined(__x86_64__) || defined(__i386__)
	{
		struct timespec d = { 0, 20000000 };
		uint64_t n0, n1, t0, t1;

		if (getenv("SCIF_BENCH_NO_TSC") || !bench_tsc_invariant())
			return;
		n0 = bench_mono_ns();
		t0 = __builtin_ia32_rdtsc();
		nanosleep(&d, NULL);
		n1 = bench_mono_ns();
		t1 = __builtin_ia32_rdtsc();
		if (t1 > t0 && n1 > n0) {
			c->tick0 = t0;
			c->ns_per_tick = (double)(n1 - n0) / (double)(t1 - t0);
		}
	}
#endif
}

static inline uint64_t bench_clock_ns(const struct bench_clock *c)
{
#if defined(__x86_64__) || defined(__i386__)
	if (c->ns_per_tick > 0)
		return (uint64_t)((double)(__builtin_ia32_rdtsc() - c->tick0) * c->ns_per_tick);
#endif
	(void)c;
	return bench_mono_ns();
}

#endif
