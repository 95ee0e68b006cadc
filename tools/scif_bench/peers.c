// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * peers.c - `scif_bench --peers`: the same patterns, in the same run, through what a user
 * would pick instead of SCIF on one machine. Open MPI's shared-memory transport (mpirun -np 2
 * --mca pml ob1 --mca btl self,vader, running scif_bench_mpi, built from mpi_peer.c when
 * configure finds mpicc) and UCX (ucx_perftest: tag matching and one-sided put, shared-memory
 * transports only). Each peer's figures become baselines that every SCIF row is also divided
 * by (the "peer" columns). A peer that is not installed or fails is reported and skipped.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"

extern char **environ;

/* Whether prog is an executable in PATH. */
static int in_path(const char *prog)
{
	const char *path = getenv("PATH");
	char buf[PATH_MAX];

	for (const char *p = path ? path : "/usr/bin:/bin"; *p;) {
		const char *e = strchr(p, ':');
		size_t n = e ? (size_t)(e - p) : strlen(p);

		snprintf(buf, sizeof(buf), "%.*s/%s", (int)n, p, prog);
		if (n && access(buf, X_OK) == 0)
			return 1;
		p += n + (e != NULL);
	}
	return 0;
}

/* scif_bench_mpi: $SCIF_BENCH_MPI, or next to this program. */
static int mpi_prog(char *buf, size_t len)
{
	const char *env = getenv("SCIF_BENCH_MPI");
	char self[PATH_MAX];
	ssize_t n;
	char *slash;

	if (env && *env) {
		snprintf(buf, len, "%s", env);
		return access(buf, X_OK) == 0 ? 0 : -1;
	}
	n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n <= 0)
		return -1;
	self[n] = '\0';
	slash = strrchr(self, '/');
	if (!slash)
		return -1;
	*slash = '\0';
	/* In the build tree scif_bench runs from libtool's .libs directory. */
	slash = strrchr(self, '/');
	if (slash && !strcmp(slash, "/.libs"))
		*slash = '\0';
	if ((size_t)snprintf(buf, len, "%.*s/scif_bench_mpi", (int)(len - 16), self) >= len)
		return -1;
	return access(buf, X_OK) == 0 ? 0 : -1;
}

/* Record a peer's figure at size index k as a baseline row. */
static void record(struct bench *b, enum bench_base base, int k, double v, uint64_t iters,
		   double p99)
{
	struct bench_result *r;

	if (k < 0 || v <= 0 || b->nres == BENCH_MAX_RESULTS)
		return;
	b->base[base][k] = v;
	r = &b->res[b->nres++];
	*r = (struct bench_result){ .test = bench_base_name[base], .group = bench_base_name[base],
				    .kind = base == BASE_OMPI_BW || base == BASE_UCX_TAG_BW ||
							    base == BASE_UCX_PUT_BW ?
						    KIND_BW :
						    KIND_LAT,
				    .size = b->o.sizes[k], .iters = iters, .median = v, .p99 = p99,
				    .base = -1, .tcp = -1, .peer_val = -1, .is_baseline = 1 };
}

/* ---- Open MPI --------------------------------------------------------------------------- */

static int run_ompi(struct bench *b, const char *prog, int lat)
{
	char cmd[4096], line[256];
	size_t len;
	FILE *f;
	int got = 0, status;

	len = (size_t)snprintf(cmd, sizeof(cmd),
			       "mpirun -np 2 --bind-to core --map-by core --mca pml ob1 "
			       "--mca btl self,vader '%s' %s %g",
			       prog, lat ? "lat" : "bw", b->o.duration);
	for (int k = 0; k < b->o.nsizes && len < sizeof(cmd) - 32; k++)
		len += (size_t)snprintf(cmd + len, sizeof(cmd) - len, " %zu", b->o.sizes[k]);
	snprintf(cmd + len, sizeof(cmd) - len, " 2>&1");
	f = popen(cmd, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		unsigned long long size, n;
		double v, p99;

		if (lat && sscanf(line, "lat %llu %lf %lf %llu", &size, &v, &p99, &n) == 4) {
			record(b, BASE_OMPI_LAT, bench_size_index(b, (size_t)size), v, n, p99);
			got++;
		} else if (!lat && sscanf(line, "bw %llu %lf %llu", &size, &v, &n) == 3) {
			record(b, BASE_OMPI_BW, bench_size_index(b, (size_t)size), v, n / size, -1);
			got++;
		} else if (!got) {
			fprintf(stderr, "scif_bench: mpirun: %s", line);
		}
	}
	status = pclose(f);
	if (status != 0 || got != b->o.nsizes) {
		fprintf(stderr, "scif_bench: Open MPI %s: %d of %d sizes measured (status %#x)\n",
			lat ? "latency" : "bandwidth", got, b->o.nsizes, status);
		return got ? 0 : -1;
	}
	return 0;
}

/* ---- UCX -------------------------------------------------------------------------------- */

/* One ucx_perftest run: a server on CPU 1, the client on CPU 0. Returns the "Final:" line's
 * typical latency (us, half a round trip) or overall bandwidth (MB/s, 2^20 B), or -1. */
static double ucx_run(const char *test, size_t size, long iters, int want_bw, int port)
{
	char sv_port[16], sv_cpu[8], cmd[512], line[512];
	char *sv_argv[] = { "ucx_perftest", "-p", sv_port, "-c", sv_cpu, NULL };
	posix_spawn_file_actions_t fa;
	double res = -1;
	pid_t pid;
	FILE *f;
	int st;

	snprintf(sv_port, sizeof(sv_port), "%d", port);
	snprintf(sv_cpu, sizeof(sv_cpu), "1");
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
	if (posix_spawnp(&pid, "ucx_perftest", &fa, NULL, sv_argv, environ)) {
		posix_spawn_file_actions_destroy(&fa);
		return -1;
	}
	posix_spawn_file_actions_destroy(&fa);
	/* The client connects to the server's TCP port: give the server time to open it. */
	for (int attempt = 0; attempt < 20 && res < 0; attempt++) {
		int fields;
		double lat50 = 0, bw = 0;

		usleep(100000);
		snprintf(cmd, sizeof(cmd),
			 "ucx_perftest 127.0.0.1 -p %d -c 0 -t %s -s %zu -n %ld -w %ld 2>&1", port,
			 test, size, iters, iters / 10 > 10 ? iters / 10 : 10);
		f = popen(cmd, "r");
		if (!f)
			break;
		fields = 0;
		while (fgets(line, sizeof(line), f)) {
			double it, avg, overall, bwavg;

			if (sscanf(line, "Final: %lf %lf %lf %lf %lf %lf", &it, &lat50, &avg, &overall,
				   &bwavg, &bw) == 6)
				fields = 6;
		}
		if (pclose(f) == 0 && fields == 6)
			res = want_bw ? bw : lat50;
		if (waitpid(pid, &st, WNOHANG) == pid) {
			pid = -1;
			break;
		}
	}
	if (pid > 0) {
		/* Normally gone after its one test; one that never saw a client is stopped. */
		for (int i = 0; i < 50 && waitpid(pid, &st, WNOHANG) == 0; i++)
			usleep(20000);
		if (waitpid(pid, &st, WNOHANG) == 0) {
			kill(pid, SIGKILL);
			waitpid(pid, &st, 0);
		}
	}
	return res;
}

static void run_ucx(struct bench *b)
{
	static const struct {
		const char *test;
		enum bench_base base;
		int bw;
	} tests[] = {
		{ "tag_lat", BASE_UCX_TAG_LAT, 0 },
		{ "tag_bw", BASE_UCX_TAG_BW, 1 },
		{ "ucp_put_lat", BASE_UCX_PUT_LAT, 0 },
		{ "ucp_put_bw", BASE_UCX_PUT_BW, 1 },
	};
	int port = 20000 + (int)(getpid() % 20000);

	/* Shared-memory transports only, as Open MPI's vader: no TCP loopback in the figures. */
	setenv("UCX_TLS", "sm,self", 0);
	for (size_t t = 0; t < sizeof(tests) / sizeof(tests[0]); t++) {
		int fails = 0;

		for (int k = 0; k < b->o.nsizes; k++) {
			size_t size = b->o.sizes[k];
			/* About --time seconds at 5 GB/s and 1 us per message. */
			double est = (double)size / 5.0 + 1000.0;
			long iters = (long)(b->o.duration * 1e9 / est);
			double v;

			if (iters < 100)
				iters = 100;
			if (iters > 1000000)
				iters = 1000000;
			bench_progress(k + 1, b->o.nsizes, tests[t].test, size);
			v = ucx_run(tests[t].test, size, iters, tests[t].bw, port++);
			if (v <= 0) {
				fails++;
				continue;
			}
			/* ucx_perftest gives half a round trip, and MB of 2^20 bytes. */
			v = tests[t].bw ? v * 1048576.0 / 1e9 : 2 * v;
			record(b, tests[t].base, k, v, (uint64_t)iters, -1);
		}
		if (fails) {
			bench_progress_end();
			fprintf(stderr, "scif_bench: ucx_perftest -t %s failed at %d of %d sizes\n",
				tests[t].test, fails, b->o.nsizes);
		}
	}
	bench_progress_end();
}

/* Two placement probes around a peer's run: their mean if they agree, else 0 (unknown). */
static double probe_pair(double a, double b)
{
	double lo = a < b ? a : b, hi = a < b ? b : a;

	return lo > 0 && hi <= 1.25 * lo ? (a + b) / 2 : 0;
}

int bench_peers(struct bench *b)
{
	char prog[PATH_MAX];
	cpu_set_t pinned, all;
	int any = 0, restore;

	/* The peers place their processes themselves (--bind-to core, -c): not on our one CPU. */
	restore = sched_getaffinity(0, sizeof(pinned), &pinned) == 0;
	CPU_ZERO(&all);
	for (int i = 0; i < CPU_SETSIZE; i++)
		CPU_SET(i, &all);
	if (restore)
		sched_setaffinity(0, sizeof(all), &all);

	/* mpirun refuses root unless told; CI and scripts/bench.sh run as root. */
	setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 0);
	setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 0);
	if (!in_path("mpirun"))
		fprintf(stderr, "scif_bench: --peers: no mpirun in PATH (Debian: openmpi-bin), "
				"Open MPI skipped\n");
	else if (mpi_prog(prog, sizeof(prog)))
		fprintf(stderr, "scif_bench: --peers: no scif_bench_mpi next to scif_bench (built "
				"when configure finds mpicc; or set SCIF_BENCH_MPI), Open MPI skipped\n");
	else {
		double before = bench_line_probe();

		bench_progress(1, 2, "ompi-vader-lat", 0);
		any |= run_ompi(b, prog, 1) == 0;
		b->peer_line[BASE_OMPI_LAT] = probe_pair(before, bench_line_probe());
		bench_progress(2, 2, "ompi-vader-bw", 0);
		any |= run_ompi(b, prog, 0) == 0;
		bench_progress_end();
	}
	if (!in_path("ucx_perftest")) {
		fprintf(stderr, "scif_bench: --peers: no ucx_perftest in PATH (Debian: ucx-utils), "
				"UCX skipped\n");
	} else {
		int before = b->nres;
		double line0 = bench_line_probe(), line;

		run_ucx(b);
		any |= b->nres > before;
		line = probe_pair(line0, bench_line_probe());
		b->peer_line[BASE_UCX_TAG_LAT] = b->peer_line[BASE_UCX_PUT_LAT] = line;
	}
	if (restore)
		sched_setaffinity(0, sizeof(pinned), &pinned);
	return any ? 0 : -1;
}
