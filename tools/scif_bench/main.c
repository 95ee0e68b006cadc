// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * main.c - scif_bench's options, the two roles (client and server), spawning the card-side
 * peer, and the measurement loop: warm-up, calibration, timed runs and data checks per point.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"

extern char **environ;

const char *bench_base_name[BASE_COUNT] = { "memcpy", "line-pingpong", "2line-pingpong",
					     "tcp-lat", "unix-lat", "tcp-bw", "unix-bw",
					     "futex-pingpong",
					     "ompi-vader-lat", "ompi-vader-bw", "ucx-tag-lat",
					     "ucx-tag-bw", "ucx-put-lat", "ucx-put-bw" };

/* ---- the clock (clock.h) ---------------------------------------------------------------- */

struct bench_clock bench_clk;

const char *bench_clock_name(void)
{
	return bench_clk.ns_per_tick > 0 ? "TSC" : "CLOCK_MONOTONIC";
}

static pid_t child = -1;

pid_t bench_server_pid(void)
{
	return child;
}

/* ---- small helpers ---------------------------------------------------------------------- */

int bench_no_thp;

/*
 * Page-aligned and touched, so no page fault lands inside a timed loop. Buffers of 2 MiB
 * and more are on transparent huge pages where the kernel has them (as tuned HPC
 * applications allocate theirs), unless --no-thp; the memcpy baseline uses the same kind.
 */
void *bench_alloc(size_t len)
{
	size_t align = BENCH_PAGE;
	void *p;

	if (!bench_no_thp && len >= BENCH_HUGE) {
		align = BENCH_HUGE;
		len = (len + BENCH_HUGE - 1) & ~(size_t)(BENCH_HUGE - 1);
	}
	if (posix_memalign(&p, align, len ? len : BENCH_PAGE)) {
		fprintf(stderr, "scif_bench: out of memory (%zu bytes)\n", len);
		return NULL;
	}
	if (align == BENCH_HUGE)
		(void)madvise(p, len, MADV_HUGEPAGE); /* a hint; EINVAL without THP support */
	memset(p, 0, len);
	return p;
}

int bench_size_index(const struct bench *b, size_t size)
{
	for (int i = 0; i < b->o.nsizes; i++)
		if (b->o.sizes[i] == size)
			return i;
	return -1;
}

/* "8", "64K", "4M", "1G" (binary multiples). Returns 0 on a malformed or zero size. */
static size_t parse_size(const char *s)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || end == s)
		return 0;
	switch (*end) {
	case 'k': case 'K': v <<= 10; end++; break;
	case 'm': case 'M': v <<= 20; end++; break;
	case 'g': case 'G': v <<= 30; end++; break;
	}
	if (*end == 'i' || *end == 'B')
		end++;
	if (*end == 'B')
		end++;
	return *end ? 0 : (size_t)v;
}

static int cmp_size(const void *a, const void *b)
{
	size_t x = *(const size_t *)a, y = *(const size_t *)b;

	return x < y ? -1 : x > y;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static int cmp_dbl(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* Is test t chosen by --tests? A list names groups ("rma-write") or exact rows. */
static int selected(const char *list, const struct bench_test *t)
{
	const char *p = list;

	if (!list)
		return 1;
	while (*p) {
		size_t n = strcspn(p, ",");

		if ((strlen(t->group) == n && !strncmp(p, t->group, n)) ||
		    (strlen(t->name) == n && !strncmp(p, t->name, n)) || (n == 3 && !strncmp(p, "all", 3)))
			return 1;
		p += n;
		if (*p)
			p++;
	}
	return 0;
}

/*
 * Pin the calling thread (and the library threads it starts later) to the nth CPU this
 * process may use, so the two ends never share a core and never migrate mid-measurement.
 */
static void pin(int nth)
{
	cpu_set_t set;

	if (sched_getaffinity(0, sizeof(set), &set) || CPU_COUNT(&set) < 2)
		return;
	if (bench_pin_nth(&set, nth))
		perror("scif_bench: sched_setaffinity");
}

static void on_alarm(int sig)
{
	static const char msg[] = "\nscif_bench: a measurement hung; giving up\n";

	(void)sig;
	if (write(2, msg, sizeof(msg) - 1) < 0)
		_exit(1);
	if (child > 0)
		kill(child, SIGKILL);
	_exit(1);
}

/* ---- options ---------------------------------------------------------------------------- */

static void usage(FILE *f)
{
	fprintf(f,
		"usage: scif_bench [options]                  host (node 0) to a spawned card (node 1)\n"
		"       scif_bench --server [--port P]        serve clients on this node\n"
		"       scif_bench --client --node N --port P measure against a running server\n"
		"options:\n"
		"  --tests LIST   comma-separated tests or groups (default all; see --list)\n"
		"  --sizes LIST   transfer sizes, e.g. 8,64K,4M (default 1 B..16 MiB, powers of 4, and 8 B)\n"
		"  --min S, --max S  keep only sizes in [S, S]\n"
		"  --time SEC     seconds each point is timed (default 0.2)\n"
		"  --quick        short runs, for CI\n"
		"  --json FILE|-  --csv FILE|-  machine-readable results\n"
		"  --plot FILE.svg  bandwidth against size, log-log\n"
		"  --registration N  instead of the tests: the cost of scif_register/unregister\n"
		"                 with 32 and with N windows registered\n"
		"  --peers        also run the patterns through Open MPI (vader) and UCX, if installed,\n"
		"                 and divide every figure by the best of them too\n"
		"  --no-pin       do not pin client and server to CPUs 0 and 1\n"
		"  --no-thp       no transparent huge pages for buffers of 2 MiB and more\n"
		"  --list         list the tests\n");
}

enum { O_SERVER = 256, O_CLIENT, O_NODE, O_PORT, O_TESTS, O_SIZES, O_MIN, O_MAX, O_TIME,
       O_QUICK, O_JSON, O_CSV, O_PLOT, O_NOPIN, O_NOTHP, O_LIST, O_HELP, O_SPAWNED, O_NOTIFY, O_SHM,
       O_TCP, O_UNIX, O_PEERS, O_REG };

static const struct option longopts[] = {
	{ "server", no_argument, NULL, O_SERVER },   { "client", no_argument, NULL, O_CLIENT },
	{ "node", required_argument, NULL, O_NODE }, { "port", required_argument, NULL, O_PORT },
	{ "tests", required_argument, NULL, O_TESTS }, { "sizes", required_argument, NULL, O_SIZES },
	{ "min", required_argument, NULL, O_MIN },   { "max", required_argument, NULL, O_MAX },
	{ "time", required_argument, NULL, O_TIME }, { "quick", no_argument, NULL, O_QUICK },
	{ "json", required_argument, NULL, O_JSON }, { "csv", required_argument, NULL, O_CSV },
	{ "plot", required_argument, NULL, O_PLOT }, { "no-pin", no_argument, NULL, O_NOPIN },
	{ "no-thp", no_argument, NULL, O_NOTHP },    { "peers", no_argument, NULL, O_PEERS },
	{ "registration", required_argument, NULL, O_REG },
	{ "list", no_argument, NULL, O_LIST },       { "help", no_argument, NULL, O_HELP },
	/* the spawned server's plumbing; not for people */
	{ "spawned", no_argument, NULL, O_SPAWNED }, { "notify-fd", required_argument, NULL, O_NOTIFY },
	{ "shm-fd", required_argument, NULL, O_SHM }, { "tcp-port", required_argument, NULL, O_TCP },
	{ "unix-path", required_argument, NULL, O_UNIX },
	{ NULL, 0, NULL, 0 }
};

static int parse_sizes(struct bench_opts *o, const char *list)
{
	char buf[1024], *save, *tok;

	snprintf(buf, sizeof(buf), "%s", list);
	o->nsizes = 0;
	for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		size_t s = parse_size(tok);

		if (!s || o->nsizes == BENCH_MAX_SIZES) {
			fprintf(stderr, "scif_bench: bad size '%s'\n", tok);
			return -1;
		}
		o->sizes[o->nsizes++] = s;
	}
	return 0;
}

static int parse_opts(struct bench_opts *o, int argc, char **argv)
{
	int c;

	*o = (struct bench_opts){ .port = BENCH_DEFAULT_PORT, .node = 1, .duration = 0.2,
				  .rounds = 5, .min = 1, .max = (size_t)16 << 20, .notify_fd = -1,
				  .shm_fd = -1 };
	/* Default sweep: powers of 4 from 1 B to 16 MiB (64 KiB and 4 MiB among them), and 8 B,
	 * the size the latency targets are stated for. */
	for (size_t s = 1; s <= ((size_t)16 << 20); s *= 4) {
		o->sizes[o->nsizes++] = s;
		if (s == 4)
			o->sizes[o->nsizes++] = 8;
	}
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case O_SERVER: o->server = 1; break;
		case O_CLIENT: o->client = 1; break;
		case O_NODE: o->node = (uint16_t)atoi(optarg); break;
		case O_PORT: o->port = (uint16_t)atoi(optarg); break;
		case O_TESTS: o->tests = optarg; break;
		case O_SIZES:
			if (parse_sizes(o, optarg))
				return -1;
			break;
		case O_MIN: o->min = parse_size(optarg); break;
		case O_MAX: o->max = parse_size(optarg); break;
		case O_TIME: o->duration = atof(optarg); break;
		case O_QUICK: o->quick = 1; break;
		case O_JSON: o->json = optarg; break;
		case O_CSV: o->csv = optarg; break;
		case O_PLOT: o->plot = optarg; break;
		case O_NOPIN: o->no_pin = 1; break;
		case O_NOTHP: bench_no_thp = 1; break;
		case O_PEERS: o->peers = 1; break;
		case O_REG: o->registration = atoi(optarg); break;
		case O_LIST:
			for (int i = 0; i < bench_ntests; i++)
				printf("%-22s (group %s)\n", bench_tests[i].name, bench_tests[i].group);
			exit(0);
		case O_HELP: usage(stdout); exit(0);
		case O_SPAWNED: o->spawned = 1; break;
		case O_NOTIFY: o->notify_fd = atoi(optarg); break;
		case O_SHM: o->shm_fd = atoi(optarg); break;
		case O_TCP: o->tcp_port = atoi(optarg); break;
		case O_UNIX: o->unix_path = optarg; break;
		default: usage(stderr); return -1;
		}
	}
	if (optind < argc || (o->server && o->client) || o->duration <= 0 || !o->min ||
	    o->max < o->min || o->max > ((size_t)1 << 30)) {
		usage(stderr);
		return -1;
	}
	if (o->quick) {
		o->duration = o->duration < 0.02 ? o->duration : 0.02;
		o->rounds = 3;
	}
	/* Sorted, de-duplicated and clipped to [min, max]. */
	qsort(o->sizes, (size_t)o->nsizes, sizeof(o->sizes[0]), cmp_size);
	int n = 0;

	for (int i = 0; i < o->nsizes; i++)
		if (o->sizes[i] >= o->min && o->sizes[i] <= o->max && (!n || o->sizes[n - 1] != o->sizes[i]))
			o->sizes[n++] = o->sizes[i];
	o->nsizes = n;
	if (!o->server && !n) {
		fprintf(stderr, "scif_bench: no transfer size left in [--min, --max]\n");
		return -1;
	}
	return 0;
}

/* ---- server ----------------------------------------------------------------------------- */

static int server_main(struct bench *b)
{
	struct scif_portID peer;
	scif_epd_t lep;
	int port;

	if (b->o.spawned) {
		/* Our client is our parent; if it dies mid-run, so do we. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() == 1)
			return 1;
		if (b->o.tcp_port && b->o.unix_path && bench_base_connect(b))
			return 1;
	}
	lep = scif_open();
	if (lep == SCIF_OPEN_FAILED) {
		perror("scif_bench: server: scif_open");
		return 1;
	}
	/* Spawned: any free port, reported to the parent; standalone: the port asked for. */
	port = scif_bind(lep, b->o.spawned ? 0 : b->o.port);
	if (port < 0 || scif_listen(lep, 4) < 0) {
		perror("scif_bench: server: scif_bind/scif_listen");
		return 1;
	}
	if (b->o.spawned) {
		uint16_t p = (uint16_t)port;

		if (write(b->o.notify_fd, &p, sizeof(p)) != (ssize_t)sizeof(p))
			return 1;
		close(b->o.notify_fd);
	} else {
		uint16_t self;

		scif_get_nodeIDs(NULL, 0, &self);
		printf("scif_bench: serving on node %u port %d\n", self, port);
		fflush(stdout);
	}
	for (;;) {
		int ret;

		if (scif_accept(lep, &peer, &b->ep, SCIF_ACCEPT_SYNC) < 0) {
			if (errno == EINTR)
				continue;
			perror("scif_bench: server: scif_accept");
			return 1;
		}
		ret = bench_serve(b);
		if (b->o.spawned)
			return ret ? 1 : 0;
		if (ret)
			fprintf(stderr, "scif_bench: session with node %u port %u ended: %s\n", peer.node,
				peer.port, strerror(-ret));
	}
}

/* ---- client: connection ------------------------------------------------------------------ */

/*
 * Start our own peer: this very binary as a card-side process (SCIF_NODE=1), with the raw
 * ping-pong memfd, the baseline listeners and a pipe on which it reports its port.
 */
static int spawn_server(struct bench *b, uint16_t *port)
{
	char nfd[16], sfd[16], tport[16], path[108];
	char *argv[16];
	char **envp;
	int tcp_lfd = -1, unix_lfd = -1, pfd[2], n = 0, ne = 0, err;
	struct pollfd p;

	if (bench_shm_create(b) || bench_base_listen(b, &tcp_lfd, &unix_lfd, path, sizeof(path)))
		return -1;
	if (pipe2(pfd, O_CLOEXEC) || fcntl(pfd[1], F_SETFD, 0)) {
		perror("scif_bench: pipe");
		return -1;
	}
	snprintf(nfd, sizeof(nfd), "%d", pfd[1]);
	snprintf(sfd, sizeof(sfd), "%d", b->o.shm_fd);
	snprintf(tport, sizeof(tport), "%d", b->o.tcp_port);
	argv[n++] = "scif_bench";
	argv[n++] = "--server";
	argv[n++] = "--spawned";
	argv[n++] = "--notify-fd";
	argv[n++] = nfd;
	argv[n++] = "--shm-fd";
	argv[n++] = sfd;
	argv[n++] = "--tcp-port";
	argv[n++] = tport;
	argv[n++] = "--unix-path";
	argv[n++] = path;
	if (b->o.no_pin)
		argv[n++] = "--no-pin";
	if (bench_no_thp)
		argv[n++] = "--no-thp";
	argv[n] = NULL;
	for (char **e = environ; *e; e++)
		ne++;
	envp = calloc((size_t)ne + 2, sizeof(*envp));
	if (!envp)
		return -1;
	ne = 0;
	for (char **e = environ; *e; e++)
		if (strncmp(*e, "SCIF_NODE=", 10))
			envp[ne++] = *e;
	envp[ne++] = "SCIF_NODE=1";
	envp[ne] = NULL;
	err = posix_spawn(&child, "/proc/self/exe", NULL, NULL, argv, envp);
	free(envp);
	close(pfd[1]);
	if (err) {
		fprintf(stderr, "scif_bench: cannot start the server: %s\n", strerror(err));
		return -1;
	}
	/* EOF instead of a port means the server died before listening. */
	p = (struct pollfd){ .fd = pfd[0], .events = POLLIN };
	if (poll(&p, 1, 20000) != 1 || read(pfd[0], port, sizeof(*port)) != (ssize_t)sizeof(*port)) {
		fprintf(stderr, "scif_bench: the spawned server did not start\n");
		close(pfd[0]);
		return -1;
	}
	close(pfd[0]);
	return bench_base_accept(b, tcp_lfd, unix_lfd);
}

static int client_connect(struct bench *b)
{
	struct scif_portID dst = { .node = b->o.node, .port = b->o.port };
	int tries = 0;

	b->ep = scif_open();
	if (b->ep == SCIF_OPEN_FAILED) {
		perror("scif_bench: scif_open");
		return -1;
	}
	/* A server started by hand may still be on its way up: retry refusals for 5 s. */
	while (scif_connect(b->ep, &dst) < 0) {
		if (errno != ECONNREFUSED || ++tries > 50) {
			fprintf(stderr, "scif_bench: cannot connect to node %u port %u: %s\n", dst.node,
				dst.port, strerror(errno));
			return -1;
		}
		usleep(100000);
	}
	return bench_call(b, OP_HELLO, b->o.sizes[b->o.nsizes - 1], 0, 0, NULL);
}

/* ---- client: measurement ---------------------------------------------------------------- */

static double secs(uint64_t ns)
{
	return (double)ns / 1e9;
}

/* One timed call of the runner: seconds, or a negative value on failure. */
static double timed(struct bench *b, const struct bench_test *t, size_t size, uint64_t n,
		    uint64_t *samples)
{
	uint64_t t0 = bench_now_ns();

	if (t->run(b, t, size, n, samples))
		return -1;
	return secs(bench_now_ns() - t0);
}

/*
 * One point: prepare the data, warm up while finding how long one iteration takes, then time
 * enough iterations to fill --time, and check the data. Latency: every round trip is timed
 * (median, p99). Bandwidth: the median of several timed rounds.
 */
static int measure(struct bench *b, const struct bench_test *t, size_t size, uint64_t *samples,
		   struct bench_result *r)
{
	uint64_t cap = t->kind == KIND_LAT ? BENCH_MAX_SAMPLES : (uint64_t)1 << 32;
	double warm = b->o.duration / 4, el, per;
	uint64_t n = 1;

	b->seed = b->seed * 6364136223846793005ULL + 1442695040888963407ULL;
	b->mismatch = 0;
	b->cur = t;
	b->cur_size = size;
	alarm((unsigned)(120 + 50 * b->o.duration));
	if (t->prep && t->prep(b, t, size))
		return -1;
	/* Warm-up doubles as calibration: grow the batch until it takes a quarter of --time. */
	for (;;) {
		double grow;

		el = timed(b, t, size, n, samples);
		if (el < 0)
			return -1;
		if (el >= warm || n >= cap)
			break;
		grow = el > 0 ? 1.3 * warm / el : 16;
		grow = grow < 2 ? 2 : grow > 16 ? 16 : grow;
		n = (uint64_t)((double)n * grow);
		n = n > cap ? cap : n;
	}
	/* A second warm-up run of the same size: the faster of the two sets the pace, so one
	 * descheduled run cannot shrink the timed batches. */
	per = timed(b, t, size, n, samples);
	if (per < 0)
		return -1;
	per = (per < el ? per : el) / (double)n;
	n = (uint64_t)ceil(b->o.duration / (t->kind == KIND_LAT ? 4 : b->o.rounds) / per);
	n = n < 1 ? 1 : n > cap ? cap : n;
	*r = (struct bench_result){ .test = t->name, .group = t->group, .kind = t->kind,
				    .size = size, .base = -1, .tcp = -1, .peer_val = -1 };
	if (t->kind == KIND_LAT) {
		uint64_t got = 0;

		/* Batches until --time is spent (and at least 5 samples), every sample kept. */
		for (el = 0; (el < b->o.duration || got < 5) && got < cap;) {
			uint64_t k = n < cap - got ? n : cap - got;
			double e = timed(b, t, size, k, samples + got);

			if (e < 0)
				return -1;
			el += e;
			got += k;
		}
		qsort(samples, got, sizeof(*samples), cmp_u64);
		r->median = (got & 1 ? (double)samples[got / 2] :
				       ((double)samples[got / 2 - 1] + (double)samples[got / 2]) / 2) / 1e3;
		r->p99 = (double)samples[(uint64_t)ceil(0.99 * (double)got) - 1] / 1e3;
		r->iters = got;
	} else {
		double bw[16];
		int k = b->o.rounds;

		/* Each round: batches until its share of --time is spent; the figure is the median
		 * round, which shrugs off a round that lost the CPU to something else. */
		r->iters = 0;
		for (int i = 0; i < k; i++) {
			uint64_t got = 0;

			for (el = 0; el < b->o.duration / k;) {
				double e = timed(b, t, size, n, samples);

				if (e < 0)
					return -1;
				el += e;
				got += n;
			}
			bw[i] = (double)got * (double)size / el / 1e9;
			r->iters += got;
		}
		qsort(bw, (size_t)k, sizeof(bw[0]), cmp_dbl);
		r->median = k & 1 ? bw[k / 2] : (bw[k / 2 - 1] + bw[k / 2]) / 2;
	}
	if (t->check && t->check(b, t, size))
		return -1;
	alarm(0);
	r->mismatch = b->mismatch;
	return 0;
}

static int base_wanted(const struct bench *b, const struct bench_test *base);

/* The baseline a test is divided by, if this run measures it and it can be paired. */
static const struct bench_test *pair_baseline(const struct bench *b, const struct bench_test *t)
{
	if (t->base != BASE_LINE && t->base != BASE_MEMCPY && t->base != BASE_FUTEX)
		return NULL;
	for (int i = 0; i < bench_nbaselines; i++)
		if (bench_baselines[i].base == t->base && base_wanted(b, &bench_baselines[i]))
			return &bench_baselines[i];
	return NULL;
}

#define PAIR_TRIES 3

/*
 * One SCIF point between two short measurements of its baseline at the same size. The host
 * may move the two vCPUs between sibling threads of one core and separate cores during a
 * run (the one-line round trip then changes several times over), so the ratio is taken
 * against the baseline of the same moment: the better of the two (the ratio is never
 * flattered), and the whole triple is measured again, up to PAIR_TRIES times, while the two
 * disagree by more than BENCH_PAIR_SPREAD_OK. The last spread is kept and shown.
 */
static int measure_paired(struct bench *b, const struct bench_test *t, size_t size,
			  uint64_t *samples, struct bench_result *r)
{
	const struct bench_test *bt = pair_baseline(b, t);
	double full = b->o.duration, shortd = full / 4 > 0.02 ? full / 4 : 0.02;

	if (!bt)
		return measure(b, t, size, samples, r);
	for (int attempt = 1;; attempt++) {
		struct bench_result b0, b1;
		double lo, hi;
		int bad;

		b->o.duration = shortd;
		bad = measure(b, bt, size, samples, &b0);
		b->o.duration = full;
		if (bad || measure(b, t, size, samples, r))
			return -1;
		b->o.duration = shortd;
		bad = measure(b, bt, size, samples, &b1);
		b->o.duration = full;
		if (bad)
			return -1;
		if (b0.mismatch || b1.mismatch)
			b->failures++;
		lo = b0.median < b1.median ? b0.median : b1.median;
		hi = b0.median < b1.median ? b1.median : b0.median;
		if (lo <= 0)
			return 0;
		r->pair_base = t->kind == KIND_LAT ? lo : hi;
		r->pair_spread = hi / lo;
		if (r->pair_spread <= BENCH_PAIR_SPREAD_OK || attempt == PAIR_TRIES)
			return 0;
	}
}

/*
 * The peers (--peers) a SCIF test is compared with: the same pattern through each. The
 * best of them at a size is the one a user would pick, so that is the one a row is divided by.
 */
static int peer_bases(const char *group, int *out)
{
	if (!strcmp(group, "lat") || !strcmp(group, "lat-nb")) {
		out[0] = BASE_OMPI_LAT;
		out[1] = BASE_UCX_TAG_LAT;
		return 2;
	}
	if (!strcmp(group, "bw")) {
		out[0] = BASE_OMPI_BW;
		out[1] = BASE_UCX_TAG_BW;
		return 2;
	}
	if (!strcmp(group, "mmap-lat")) {
		out[0] = BASE_UCX_PUT_LAT;
		return 1;
	}
	if (!strcmp(group, "rma-write") || !strcmp(group, "rma-vwrite")) {
		out[0] = BASE_UCX_PUT_BW;
		return 1;
	}
	return 0;
}

static void peer_ratio(struct bench *b, struct bench_result *r, int k)
{
	int bases[2], n = peer_bases(r->group, bases);

	r->peer = NULL;
	r->peer_val = -1;
	for (int i = 0; i < n; i++) {
		double v = b->base[bases[i]][k];

		if (v <= 0)
			continue;
		if (!r->peer || (r->kind == KIND_LAT ? v < r->peer_val : v > r->peer_val)) {
			r->peer = bench_base_name[bases[i]];
			r->peer_val = v;
		}
	}
	if (r->peer) {
		r->peer_ratio = r->median / r->peer_val;
		for (int i = 0; i < n; i++)
			if (!strcmp(r->peer, bench_base_name[bases[i]]))
				r->peer_line = b->peer_line[bases[i]];
	}
}

/* Divide every SCIF figure by its baselines at the same size, now that all are measured. */
static void ratios(struct bench *b)
{
	for (int i = 0; i < b->nres; i++) {
		struct bench_result *r = &b->res[i];
		const struct bench_test *t = NULL;
		int k = bench_size_index(b, r->size);

		for (int j = 0; j < bench_ntests; j++)
			if (bench_tests[j].name == r->test)
				t = &bench_tests[j];
		if (!t || k < 0)
			continue;
		if (r->pair_base > 0 || b->base[t->base][k] > 0) {
			r->baseline = bench_base_name[t->base];
			r->base = r->pair_base > 0 ? r->pair_base : b->base[t->base][k];
			r->ratio = r->median / r->base;
		}
		if (b->base[t->tcp_base][k] > 0) {
			r->tcp = b->base[t->tcp_base][k];
			r->tcp_ratio = r->median / r->tcp;
		}
		peer_ratio(b, r, k);
	}
}

/* Which baselines the chosen tests need, and which this mode can measure. */
static int base_wanted(const struct bench *b, const struct bench_test *base)
{
	int lat = 0, bw = 0, sleeper = 0;

	for (int i = 0; i < bench_ntests; i++) {
		if (!selected(b->o.tests, &bench_tests[i]))
			continue;
		lat |= bench_tests[i].kind == KIND_LAT;
		bw |= bench_tests[i].kind == KIND_BW;
		sleeper |= bench_tests[i].sleeper;
	}
	if (base->base == BASE_FUTEX && !sleeper)
		return 0; /* slow (a pause per round trip): only for lat-sleep */
	if (base->base != BASE_MEMCPY && !b->o.spawned)
		return 0; /* the other baselines need the spawned peer on this machine */
	return base->kind == KIND_LAT ? lat : bw;
}

static int client_main(struct bench *b)
{
	const struct bench_test *plan[256];
	uint64_t *samples;
	uint16_t port;
	int np = 0, done = 0, status, ret = 0;

	b->cap = (b->o.sizes[b->o.nsizes - 1] + BENCH_PAGE - 1) & ~(size_t)(BENCH_PAGE - 1);
	b->tcp_fd = b->unix_fd = -1;
	b->seed = (uint64_t)getpid();
	for (int i = 0; i < BASE_COUNT; i++)
		for (int k = 0; k < BENCH_MAX_SIZES; k++)
			b->base[i][k] = -1;
	b->sbuf = bench_alloc(b->cap);
	b->rbuf = bench_alloc(b->cap);
	b->vbuf = bench_alloc(b->cap);
	b->mc_src = bench_alloc(b->cap);
	b->mc_dst = bench_alloc(b->cap);
	samples = calloc(BENCH_MAX_SAMPLES, sizeof(*samples));
	if (!b->sbuf || !b->rbuf || !b->vbuf || !b->mc_src || !b->mc_dst || !samples)
		return 1;
	if (!b->o.client) {
		/* Default: we are the host, our peer a card-side copy of ourselves. */
		b->o.spawned = 1;
		setenv("SCIF_NODE", "0", 1);
		if (spawn_server(b, &port))
			goto fail;
		b->o.node = 1;
		b->o.port = port;
	}
	/* After the spawn, so the server is free to take the next CPU; before any SCIF call, so
	 * the library's threads inherit our CPU. */
	if (!b->o.no_pin)
		pin(0);
	if (client_connect(b))
		goto fail;
	signal(SIGALRM, on_alarm);
	if (b->o.registration) {
		if (bench_registration(b, b->o.registration))
			goto fail;
		bench_call(b, OP_QUIT, 0, 0, 0, NULL);
		goto out;
	}

	for (int i = 0; i < bench_nbaselines; i++)
		if (base_wanted(b, &bench_baselines[i]))
			plan[np++] = &bench_baselines[i];
	for (int i = 0; i < bench_ntests; i++)
		if (selected(b->o.tests, &bench_tests[i]))
			plan[np++] = &bench_tests[i];
	if (np == 0) {
		fprintf(stderr, "scif_bench: --tests selects nothing (see --list)\n");
		goto fail;
	}
	for (int i = 0; i < np; i++) {
		const struct bench_test *t = plan[i];
		int is_base = t >= bench_baselines && t < bench_baselines + bench_nbaselines;

		for (int k = 0; k < b->o.nsizes; k++) {
			struct bench_result *r = &b->res[b->nres];

			bench_progress(++done, np * b->o.nsizes, t->name, b->o.sizes[k]);
			if (b->nres == BENCH_MAX_RESULTS ||
			    (is_base ? measure(b, t, b->o.sizes[k], samples, r) :
				       measure_paired(b, t, b->o.sizes[k], samples, r)))
				goto fail;
			r->is_baseline = is_base;
			if (is_base) {
				r->baseline = NULL;
				b->base[t->base][k] = r->median;
			}
			if (r->mismatch)
				b->failures++;
			b->nres++;
		}
	}
	/*
	 * The two physical-limit baselines again, after the tests: if something else on the
	 * machine slowed their first pass, the better of the two passes is kept, so a ratio is
	 * never flattered by a baseline measured in a bad moment.
	 */
	for (int i = 0; i < np; i++) {
		const struct bench_test *t = plan[i];

		if (t != &bench_baselines[0] && t != &bench_baselines[1])
			continue;
		for (int k = 0; k < b->o.nsizes; k++) {
			struct bench_result again, *r = NULL;

			for (int j = 0; j < b->nres; j++)
				if (b->res[j].test == t->name && b->res[j].size == b->o.sizes[k])
					r = &b->res[j];
			bench_progress(done, np * b->o.nsizes, t->name, b->o.sizes[k]);
			if (!r || measure(b, t, b->o.sizes[k], samples, &again))
				goto fail;
			if (again.mismatch) {
				r->mismatch = 1;
				b->failures++;
			}
			if (t->kind == KIND_LAT ? again.median < r->median : again.median > r->median) {
				again.is_baseline = 1;
				again.mismatch = r->mismatch;
				*r = again;
				b->base[t->base][k] = again.median;
			}
		}
	}
	bench_progress_end();
	bench_call(b, OP_QUIT, 0, 0, 0, NULL);
	/* After our server has quit: nothing of ours runs while the peers are measured. */
	if (b->o.peers && bench_peers(b))
		fprintf(stderr, "scif_bench: --peers: no peer could be measured\n");
	goto out;
fail:
	bench_progress_end();
	ret = 1;
out:
	alarm(0);
	if (b->ep >= 0)
		scif_close(b->ep);
	if (child > 0 && waitpid(child, &status, 0) == child && !ret &&
	    !(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
		fprintf(stderr, "scif_bench: the spawned server failed (status %#x)\n", status);
		ret = 1;
	}
	free(samples);
	ratios(b);
	if (b->nres) {
		/* JSON or CSV on stdout keeps stdout machine-readable: the table goes to stderr. */
		FILE *out = (b->o.json && !strcmp(b->o.json, "-")) || (b->o.csv && !strcmp(b->o.csv, "-")) ?
				    stderr : stdout;

		bench_print_table(out, b);
		bench_print_summary(out, b);
		fflush(out);
	}
	if (b->o.json && bench_write_json(b, b->o.json))
		ret = 1;
	if (b->o.csv && bench_write_csv(b, b->o.csv))
		ret = 1;
	if (b->o.plot && bench_write_svg(b, b->o.plot))
		ret = 1;
	if (b->failures) {
		fprintf(stderr, "scif_bench: %d point(s) delivered wrong data\n", b->failures);
		ret = 2;
	}
	return ret;
}

int main(int argc, char **argv)
{
	static struct bench b; /* large (results, baselines): not on the stack */

	b.ep = -1;
	if (parse_opts(&b.o, argc, argv))
		return 1;
	bench_clock_setup(&bench_clk);
	if (b.o.server) {
		if (!b.o.no_pin)
			pin(1);
		return server_main(&b);
	}
	return client_main(&b);
}
