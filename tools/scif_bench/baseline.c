// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * baseline.c - the yardsticks scif_bench divides by: single-thread memcpy, the one-line
 * ping-pong (one cache line bouncing between the two processes: the latency limit), the
 * two-line ping-pong (each side writes a flag line of its own), over a memfd both processes
 * map, and TCP and Unix-socket loopback doing the same.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"

/* ---- memcpy ----------------------------------------------------------------------------- */

static int prep_memcpy(struct bench *b, const struct bench_test *t, size_t size)
{
	(void)t;
	bench_fill(b->mc_src, size, b->seed);
	memset(b->mc_dst, 0, size);
	return 0;
}

static int run_memcpy(struct bench *b, const struct bench_test *t, size_t size, uint64_t iters,
		      uint64_t *samples)
{
	(void)t;
	(void)samples;
	for (uint64_t i = 0; i < iters; i++) {
		memcpy(b->mc_dst, b->mc_src, size);
		/* A compiler barrier: every copy happens, none is merged or hoisted. */
		atomic_signal_fence(memory_order_seq_cst);
	}
	return 0;
}

static int check_memcpy(struct bench *b, const struct bench_test *t, size_t size)
{
	if (bench_check(b->mc_dst, size, b->seed, 0) != SIZE_MAX) {
		bench_progress_end();
		fprintf(stderr, "scif_bench: DATA MISMATCH in %s, size %zu\n", t->name, size);
		b->mismatch = 1;
	}
	return 0;
}

/* ---- raw shared-memory ping-pong -------------------------------------------------------- */

/* Created by the client without close-on-exec: the spawned server inherits it by number. */
int bench_shm_create(struct bench *b)
{
	int fd = memfd_create("scif_bench-pingpong", 0);

	if (fd < 0) {
		perror("scif_bench: memfd_create");
		return -1;
	}
	b->shm_len = BENCH_PAGE + 2 * b->cap;
	if (ftruncate(fd, (off_t)b->shm_len) < 0) {
		perror("scif_bench: ftruncate");
		close(fd);
		return -1;
	}
	b->shm = mmap(NULL, b->shm_len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (b->shm == MAP_FAILED) {
		b->shm = NULL;
		perror("scif_bench: mmap");
		close(fd);
		return -1;
	}
	b->o.shm_fd = fd;
	return 0;
}

/* Server side: map the inherited memfd; its size says how large the client made it. */
int bench_shm_attach(struct bench *b)
{
	struct stat st;

	if (b->shm)
		return 0;
	if (b->o.shm_fd < 0 || fstat(b->o.shm_fd, &st) < 0 ||
	    (size_t)st.st_size < BENCH_PAGE + 2 * b->cap)
		return -EBADF;
	b->shm_len = (size_t)st.st_size;
	b->shm = mmap(NULL, b->shm_len, PROT_READ | PROT_WRITE, MAP_SHARED, b->o.shm_fd, 0);
	if (b->shm == MAP_FAILED) {
		b->shm = NULL;
		return -errno;
	}
	return 0;
}

static int prep_echo(struct bench *b, const struct bench_test *t, size_t size)
{
	(void)t;
	bench_fill(b->sbuf, size, b->seed);
	memset(b->rbuf, 0, size);
	return 0;
}

static int prep_stream(struct bench *b, const struct bench_test *t, size_t size)
{
	(void)t;
	bench_fill(b->sbuf, size, b->seed);
	return 0;
}

static int run_shm(struct bench *b, const struct bench_test *t, size_t size, uint64_t iters,
		   uint64_t *samples)
{
	(void)t;
	return bench_region_run(b, OP_SHM_LAT, bench_pp_client, b->shm, &b->shm_seq, 1,
				size, iters, samples);
}

static int run_line(struct bench *b, const struct bench_test *t, size_t size, uint64_t iters,
		    uint64_t *samples)
{
	(void)t;
	return bench_region_run(b, OP_LINE_LAT, bench_line_client, b->shm, &b->line_seq, 2,
				size, iters, samples);
}

static int run_futex(struct bench *b, const struct bench_test *t, size_t size, uint64_t iters,
		     uint64_t *samples)
{
	(void)t;
	return bench_region_run(b, OP_FUTEX_LAT, bench_futex_client, b->shm, &b->futex_seq, 2,
				size, iters, samples);
}

static int check_echo(struct bench *b, const struct bench_test *t, size_t size)
{
	size_t bad = bench_check(b->rbuf, size, b->seed, 0);

	if (bad != SIZE_MAX) {
		bench_progress_end();
		fprintf(stderr, "scif_bench: DATA MISMATCH in %s, size %zu, at byte %zu\n", t->name,
			size, bad);
		b->mismatch = 1;
	}
	return 0;
}

static int check_shm(struct bench *b, const struct bench_test *t, size_t size)
{
	return size > 8 ? check_echo(b, t, size) : 0;
}

/* ---- sockets ---------------------------------------------------------------------------- */

static int write_all(int fd, const uint8_t *p, size_t len)
{
	while (len) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -ECONNRESET;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int read_all(int fd, uint8_t *p, size_t len)
{
	while (len) {
		ssize_t n = read(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -ECONNRESET;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static void nodelay(int fd)
{
	int one = 1;

	/* Latency, not throughput by coalescing: each small message leaves at once. */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

/*
 * The client opens both listeners before spawning the server, so the server can connect as
 * its first act and the connections are already queued when the client accepts them.
 */
int bench_base_listen(struct bench *b, int *tcp_lfd, int *unix_lfd, char *path, size_t pathlen)
{
	struct sockaddr_in in = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct sockaddr_un un = { .sun_family = AF_UNIX };
	socklen_t len = sizeof(in);
	char dir[] = "/tmp/scif_bench.XXXXXX";

	*tcp_lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (*tcp_lfd < 0 || bind(*tcp_lfd, (struct sockaddr *)&in, sizeof(in)) < 0 ||
	    listen(*tcp_lfd, 1) < 0 || getsockname(*tcp_lfd, (struct sockaddr *)&in, &len) < 0) {
		perror("scif_bench: TCP listener");
		return -1;
	}
	b->o.tcp_port = ntohs(in.sin_port);
	if (!mkdtemp(dir)) {
		perror("scif_bench: mkdtemp");
		return -1;
	}
	snprintf(path, pathlen, "%s/sock", dir);
	snprintf(un.sun_path, sizeof(un.sun_path), "%s", path);
	*unix_lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (*unix_lfd < 0 || bind(*unix_lfd, (struct sockaddr *)&un, sizeof(un)) < 0 ||
	    listen(*unix_lfd, 1) < 0) {
		perror("scif_bench: Unix listener");
		return -1;
	}
	b->o.unix_path = path;
	return 0;
}

/* Accept the server's two connections (bounded wait), then remove the socket file. */
int bench_base_accept(struct bench *b, int tcp_lfd, int unix_lfd)
{
	struct pollfd p[2] = { { .fd = tcp_lfd, .events = POLLIN },
			       { .fd = unix_lfd, .events = POLLIN } };
	char dir[108];
	char *slash;
	int ret = -1;

	if (poll(p, 2, 10000) < 0 || poll(p, 1, 10000) != 1 || poll(p + 1, 1, 10000) != 1) {
		fprintf(stderr, "scif_bench: the server did not connect its baseline sockets\n");
		goto out;
	}
	b->tcp_fd = accept4(tcp_lfd, NULL, NULL, SOCK_CLOEXEC);
	b->unix_fd = accept4(unix_lfd, NULL, NULL, SOCK_CLOEXEC);
	if (b->tcp_fd < 0 || b->unix_fd < 0) {
		perror("scif_bench: accept");
		goto out;
	}
	nodelay(b->tcp_fd);
	ret = 0;
out:
	close(tcp_lfd);
	close(unix_lfd);
	snprintf(dir, sizeof(dir), "%s", b->o.unix_path);
	unlink(dir);
	slash = strrchr(dir, '/');
	if (slash) {
		*slash = 0;
		rmdir(dir);
	}
	return ret;
}

int bench_base_connect(struct bench *b)
{
	struct sockaddr_in in = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
				  .sin_port = htons((uint16_t)b->o.tcp_port) };
	struct sockaddr_un un = { .sun_family = AF_UNIX };

	b->tcp_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (b->tcp_fd < 0 || connect(b->tcp_fd, (struct sockaddr *)&in, sizeof(in)) < 0) {
		perror("scif_bench: server: TCP connect");
		return -1;
	}
	nodelay(b->tcp_fd);
	snprintf(un.sun_path, sizeof(un.sun_path), "%s", b->o.unix_path);
	b->unix_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (b->unix_fd < 0 || connect(b->unix_fd, (struct sockaddr *)&un, sizeof(un)) < 0) {
		perror("scif_bench: server: Unix connect");
		return -1;
	}
	return 0;
}

static int sock_lat(struct bench *b, const struct bench_test *t, size_t size, uint64_t iters,
		    uint64_t *samples, int which)
{
	int fd = which == SOCK_TCP ? b->tcp_fd : b->unix_fd;
	struct bench_reply r;
	int err = 0;

	if (bench_cmd(b, OP_SOCK_LAT, size, iters, (uint64_t)which))
		return -1;
	for (uint64_t i = 0; i < iters && !err; i++) {
		uint64_t t0 = bench_now_ns();

		err = write_all(fd, b->sbuf, size);
		if (!err)
			err = read_all(fd, b->rbuf, size);
		samples[i] = bench_now_ns() - t0;
	}
	if (err) {
		bench_progress_end();
		fprintf(stderr, "scif_bench: %s: %s\n", t->name, strerror(-err));
		return -1;
	}
	return bench_reply(b, &r);
}

/* Same framing as the SCIF stream test: an index per message, the last one checked whole. */
static int sock_bw(struct bench *b, const struct bench_test *t, size_t size, uint64_t iters,
		   int which)
{
	int fd = which == SOCK_TCP ? b->tcp_fd : b->unix_fd;
	struct bench_reply r;
	int err = 0;

	if (bench_cmd(b, OP_SOCK_BW, size, iters, (uint64_t)which))
		return -1;
	for (uint64_t i = 0; i < iters && !err; i++) {
		if (size >= 8)
			memcpy(b->sbuf, &i, 8);
		err = write_all(fd, b->sbuf, size);
	}
	if (err) {
		bench_progress_end();
		fprintf(stderr, "scif_bench: %s: %s\n", t->name, strerror(-err));
		return -1;
	}
	return bench_reply(b, &r);
}

static int run_tcp_lat(struct bench *b, const struct bench_test *t, size_t size, uint64_t iters,
		       uint64_t *samples)
{
	return sock_lat(b, t, size, iters, samples, SOCK_TCP);
}

static int run_unix_lat(struct bench *b, const struct bench_test *t, size_t size,
			uint64_t iters, uint64_t *samples)
{
	return sock_lat(b, t, size, iters, samples, SOCK_UNIX);
}

static int run_tcp_bw(struct bench *b, const struct bench_test *t, size_t size, uint64_t iters,
		      uint64_t *samples)
{
	(void)samples;
	return sock_bw(b, t, size, iters, SOCK_TCP);
}

static int run_unix_bw(struct bench *b, const struct bench_test *t, size_t size, uint64_t iters,
		       uint64_t *samples)
{
	(void)samples;
	return sock_bw(b, t, size, iters, SOCK_UNIX);
}

/* The server's half of the three remote baselines. */
int bench_serve_base(struct bench *b, const struct bench_cmd *c, uint8_t *buf,
		     struct bench_reply *r)
{
	int fd = c->arg == SOCK_TCP ? b->tcp_fd : b->unix_fd;
	size_t size = c->size;
	int err = 0;

	if (c->op == OP_SHM_LAT) {
		err = bench_shm_attach(b);
		return err ? err : bench_pp_server(b->shm, b->cap, size, c->iters, c->arg, b->ep);
	}
	if (c->op == OP_LINE_LAT) {
		err = bench_shm_attach(b);
		return err ? err : bench_line_server(b->shm, b->cap, size, c->iters, c->arg, b->ep);
	}
	if (c->op == OP_FUTEX_LAT) {
		err = bench_shm_attach(b);
		return err ? err : bench_futex_server(b->shm, b->cap, size, c->iters,
						      (uint32_t)c->arg, b->ep);
	}
	if (fd < 0)
		return -ENOTCONN;
	if (c->op == OP_SOCK_LAT) {
		for (uint64_t i = 0; i < c->iters && !err; i++) {
			err = read_all(fd, buf, size);
			if (!err)
				err = write_all(fd, buf, size);
		}
		return err;
	}
	for (uint64_t i = 0; i < c->iters && !err; i++) {
		err = read_all(fd, buf, size);
		if (!err && size >= 8 && !r->status && memcmp(buf, &i, 8)) {
			r->status = BENCH_MISMATCH;
			r->value = i * size;
		}
	}
	/* The last message's contents: OP_STREAM_CHECK, outside the timed part. */
	return err;
}

/* ---- placement probe ------------------------------------------------------------------- */

int bench_pin_nth(const cpu_set_t *set, int nth)
{
	cpu_set_t one;

	for (int cpu = 0, seen = 0; cpu < CPU_SETSIZE; cpu++) {
		if (!CPU_ISSET(cpu, set) || seen++ != nth)
			continue;
		CPU_ZERO(&one);
		CPU_SET(cpu, &one);
		return sched_setaffinity(0, sizeof(one), &one) ? -1 : 0;
	}
	return -1;
}

static int cmp_probe(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

#define PROBE_WARM 2000u
#define PROBE_ROUNDS 20000u

/*
 * The one-line round trip between the first two CPUs this process may use, right now,
 * without SCIF or the spawned server: this process and a forked partner bounce one line
 * PROBE_ROUNDS times. The host may place the two vCPUs on sibling threads of one core or on
 * separate cores, and move them during a run (0.05 against 0.38 us on the development VM);
 * the figure tells which placement a measurement made near it had. Median in us, or -1.
 */
double bench_line_probe(void)
{
	cpu_set_t allowed;
	uint64_t *samples = NULL;
	uint8_t src[8] = { 0 }, dst[8];
	double med = -1;
	int pfd[2], status;
	uint8_t *region;
	pid_t pid;

	if (sched_getaffinity(0, sizeof(allowed), &allowed) || CPU_COUNT(&allowed) < 2)
		return -1;
	region = mmap(NULL, BENCH_PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (region == MAP_FAILED)
		return -1;
	samples = calloc(PROBE_ROUNDS, sizeof(*samples));
	if (!samples || pipe(pfd)) {
		free(samples);
		munmap(region, BENCH_PAGE);
		return -1;
	}
	pid = fork();
	if (pid == 0) {
		/* The partner: answers every round trip; our pipe's hang-up ends it early. */
		close(pfd[1]);
		if (bench_pin_nth(&allowed, 1))
			_exit(1);
		_exit(bench_line_server(region, 0, 8, PROBE_WARM + PROBE_ROUNDS, 0, pfd[0]) ? 1 : 0);
	}
	close(pfd[0]);
	if (pid > 0 && bench_pin_nth(&allowed, 0) == 0) {
		bench_line_client(region, 0, 8, PROBE_WARM, 0, src, dst, samples);
		bench_line_client(region, 0, 8, PROBE_ROUNDS, 2 * PROBE_WARM, src, dst, samples);
		qsort(samples, PROBE_ROUNDS, sizeof(*samples), cmp_probe);
		med = (double)samples[PROBE_ROUNDS / 2] / 1e3;
	}
	close(pfd[1]);
	if (pid > 0 && (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
			WEXITSTATUS(status)))
		med = -1;
	sched_setaffinity(0, sizeof(allowed), &allowed);
	free(samples);
	munmap(region, BENCH_PAGE);
	return med;
}

/* ---- the baseline table ----------------------------------------------------------------- */

/* For a baseline, .base is the slot of struct bench.base its figures fill. */
const struct bench_test bench_baselines[] = {
	{ .name = "memcpy", .group = "memcpy", .kind = KIND_BW, .base = BASE_MEMCPY,
	  .tcp_base = BASE_NONE, .run = run_memcpy, .prep = prep_memcpy, .check = check_memcpy },
	{ .name = "line-pingpong", .group = "line-pingpong", .kind = KIND_LAT, .base = BASE_LINE,
	  .tcp_base = BASE_NONE, .run = run_line, .prep = prep_echo, .check = check_echo },
	{ .name = "2line-pingpong", .group = "2line-pingpong", .kind = KIND_LAT, .base = BASE_SHM2,
	  .tcp_base = BASE_NONE, .run = run_shm, .prep = prep_echo, .check = check_shm },
	{ .name = "futex-pingpong", .group = "futex-pingpong", .kind = KIND_LAT,
	  .base = BASE_FUTEX, .tcp_base = BASE_NONE, .run = run_futex, .prep = prep_echo,
	  .check = check_echo },
	{ .name = "tcp-lat", .group = "tcp-lat", .kind = KIND_LAT, .base = BASE_TCP_LAT,
	  .tcp_base = BASE_NONE, .run = run_tcp_lat, .prep = prep_echo, .check = check_echo },
	{ .name = "unix-lat", .group = "unix-lat", .kind = KIND_LAT, .base = BASE_UNIX_LAT,
	  .tcp_base = BASE_NONE, .run = run_unix_lat, .prep = prep_echo, .check = check_echo },
	{ .name = "tcp-bw", .group = "tcp-bw", .kind = KIND_BW, .base = BASE_TCP_BW,
	  .tcp_base = BASE_NONE, .run = run_tcp_bw, .prep = prep_stream,
	  .check = bench_check_stream },
	{ .name = "unix-bw", .group = "unix-bw", .kind = KIND_BW, .base = BASE_UNIX_BW,
	  .tcp_base = BASE_NONE, .run = run_unix_bw, .prep = prep_stream,
	  .check = bench_check_stream },
};
const int bench_nbaselines = (int)(sizeof(bench_baselines) / sizeof(bench_baselines[0]));
