// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * tests.c - the SCIF tests of scif_bench: the client's runners, the server's command loop that
 * plays the other end of each, the data pattern, and the flag ping-pong shared with baseline.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/futex.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

enum bench_rma { RMA_WRITE = 1, RMA_READ, RMA_VWRITE, RMA_VREAD };

/* Async RMA: bytes issued before each fence; at least 4 and at most 64 transfers in flight. */
#define ASYNC_BATCH_BYTES (32u << 20)

/* ---- data pattern --------------------------------------------------------------------- */

/* splitmix64: cheap, and every 8-byte word depends on the seed and its own position. */
static uint64_t mix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

void bench_fill(void *buf, size_t len, uint64_t seed)
{
	uint8_t *p = buf;
	size_t w;

	for (w = 0; w * 8 < len; w++) {
		uint64_t v = mix(seed + w);
		size_t n = len - w * 8 < 8 ? len - w * 8 : 8;

		memcpy(p + w * 8, &v, n);
	}
}

/* First byte in [from, len) that differs from pattern(seed), or SIZE_MAX if none. */
size_t bench_check(const void *buf, size_t len, uint64_t seed, size_t from)
{
	const uint8_t *p = buf;
	size_t w;

	for (w = from / 8; w * 8 < len; w++) {
		uint64_t v = mix(seed + w);
		size_t lo = w * 8 > from ? w * 8 : from;
		size_t hi = w * 8 + 8 < len ? w * 8 + 8 : len;

		if (memcmp(p + lo, (uint8_t *)&v + (lo - w * 8), hi - lo)) {
			for (size_t i = lo; i < hi; i++)
				if (p[i] != ((uint8_t *)&v)[i - w * 8])
					return i;
		}
	}
	return SIZE_MAX;
}

/* ---- flag ping-pong: scif_mmap latency and the raw shared-memory baseline --------------- */

/*
 * Region layout: the client's flag at byte 0, the server's at byte 64 (separate cache lines,
 * so each line has one writer), the client's payload at 4096 and the server's at 4096 + cap.
 * Transfers of up to 8 bytes travel in the flag word itself; larger ones are copied first and
 * published by the flag's release store.
 */
#define PP_FLAG_C 0
#define PP_FLAG_S BENCH_LINE
#define PP_DATA BENCH_PAGE

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#endif
}

static inline _Atomic uint64_t *pp_flag(uint8_t *region, size_t at)
{
	return (_Atomic uint64_t *)(void *)(region + at);
}

/*
 * The answering side's wait for the client's word to reach @want (acquire: pairs with the
 * client's release, so its payload is complete). It spins on memory only, so it glances at
 * watch_fd (the command channel) every few million spins to notice a client that died.
 */
static int pp_await(_Atomic uint64_t *word, uint64_t want, int watch_fd)
{
	unsigned spins = 0;

	while (atomic_load_explicit(word, memory_order_acquire) != want) {
		cpu_relax();
		if (++spins == 1u << 22) {
			struct pollfd p = { .fd = watch_fd, .events = POLLIN };

			spins = 0;
			if (poll(&p, 1, 0) > 0 && (p.revents & (POLLHUP | POLLERR | POLLNVAL)))
				return -ECONNRESET;
		}
	}
	return 0;
}

void bench_pp_client(uint8_t *region, size_t cap, size_t size, uint64_t iters, uint64_t seq0,
		     const uint8_t *src, uint8_t *dst, uint64_t *samples)
{
	_Atomic uint64_t *mine = pp_flag(region, PP_FLAG_C), *theirs = pp_flag(region, PP_FLAG_S);
	uint64_t seq = seq0;

	for (uint64_t i = 0; i < iters; i++) {
		uint64_t t0 = bench_now_ns();

		seq++;
		if (size > 8)
			memcpy(region + PP_DATA, src, size);
		/* Release: the payload is visible before the flag; pairs with the server's acquire. */
		atomic_store_explicit(mine, seq, memory_order_release);
		/* Acquire: pairs with the server's release, so its payload is complete. */
		while (atomic_load_explicit(theirs, memory_order_acquire) != seq)
			cpu_relax();
		if (size > 8)
			memcpy(dst, region + PP_DATA + cap, size);
		samples[i] = bench_now_ns() - t0;
	}
}

/*
 * The answering side of the two-line ping-pong (pp_await watches for a dead client).
 */
int bench_pp_server(uint8_t *region, size_t cap, size_t size, uint64_t iters, uint64_t seq0,
		    int watch_fd)
{
	_Atomic uint64_t *theirs = pp_flag(region, PP_FLAG_C), *mine = pp_flag(region, PP_FLAG_S);
	uint64_t seq = seq0;

	for (uint64_t i = 0; i < iters; i++) {
		seq++;
		if (pp_await(theirs, seq, watch_fd))
			return -ECONNRESET;
		/* The echo is one copy, straight from the client's payload to ours. */
		if (size > 8)
			memcpy(region + PP_DATA + cap, region + PP_DATA, size);
		/* Release: our payload before our flag; pairs with the client's acquire. */
		atomic_store_explicit(mine, seq, memory_order_release);
	}
	return 0;
}

/*
 * The one-line ping-pong: the latency limit. One word at byte 128 (a line of its own) that
 * both sides write in turn: the client makes it odd, the server the next even number.
 * Payloads of up to LINE_PAYLOAD bytes travel in the same line, right after the word, so a
 * round trip moves exactly one cache line each way; larger ones are copied through the
 * data areas of the two-line variant and published by the word's release store.
 */
#define LINE_AT (2 * BENCH_LINE)
#define LINE_PAYLOAD (BENCH_LINE - 8)

static void line_put(uint8_t *region, size_t size, const uint8_t *src, size_t data_at)
{
	if (size > LINE_PAYLOAD)
		memcpy(region + data_at, src, size);
	else if (size)
		memcpy(region + LINE_AT + 8, src, size);
}

static void line_get(const uint8_t *region, size_t size, uint8_t *dst, size_t data_at)
{
	if (size > LINE_PAYLOAD)
		memcpy(dst, region + data_at, size);
	else if (size)
		memcpy(dst, region + LINE_AT + 8, size);
}

void bench_line_client(uint8_t *region, size_t cap, size_t size, uint64_t iters, uint64_t seq0,
		       const uint8_t *src, uint8_t *dst, uint64_t *samples)
{
	_Atomic uint64_t *word = pp_flag(region, LINE_AT);
	uint64_t seq = seq0;

	for (uint64_t i = 0; i < iters; i++) {
		uint64_t t0 = bench_now_ns();

		line_put(region, size, src, PP_DATA);
		/* Release: the payload before the word; pairs with the server's acquire. */
		atomic_store_explicit(word, seq + 1, memory_order_release);
		/* Acquire: pairs with the server's release, so its answer is complete. */
		while (atomic_load_explicit(word, memory_order_acquire) != seq + 2)
			cpu_relax();
		line_get(region, size, dst, PP_DATA + cap);
		seq += 2;
		samples[i] = bench_now_ns() - t0;
	}
}

int bench_line_server(uint8_t *region, size_t cap, size_t size, uint64_t iters, uint64_t seq0,
		      int watch_fd)
{
	_Atomic uint64_t *word = pp_flag(region, LINE_AT);
	uint64_t seq = seq0;
	uint8_t buf[LINE_PAYLOAD];

	for (uint64_t i = 0; i < iters; i++) {
		if (pp_await(word, seq + 1, watch_fd))
			return -ECONNRESET;
		/* The echo: the payload read, and written back for the client. */
		if (size > LINE_PAYLOAD) {
			memcpy(region + PP_DATA + cap, region + PP_DATA, size);
		} else if (size) {
			memcpy(buf, region + LINE_AT + 8, size);
			memcpy(region + LINE_AT + 8, buf, size);
		}
		atomic_store_explicit(word, seq + 2, memory_order_release);
		seq += 2;
	}
	return 0;
}

/*
 * The futex ping-pong: the limit for a round trip whose receiver sleeps. One 32-bit word at
 * FUTEX_AT that both sides advance in turn (the client makes it odd, the server the next
 * even number), each waking the other with FUTEX_WAKE after its store. Each waits as
 * libscif does: it spins for SCIF_SPIN_US' default (20 us), then sleeps in FUTEX_WAIT. The
 * client pauses BENCH_SLEEP_NS before every round trip, so the server is asleep each time;
 * only the round trip is timed. Payloads go through the data areas, as in the two-line
 * ping-pong.
 */
#define FUTEX_AT (3 * BENCH_LINE)
#define FUTEX_SPIN_NS 20000u

static long futex(_Atomic uint32_t *w, int op, uint32_t val, const struct timespec *ts)
{
	/* Shared (not FUTEX_PRIVATE): the word is in a memfd mapped by both processes. */
	return syscall(SYS_futex, (uint32_t *)w, op, val, ts, NULL, 0);
}

/* Whether the spawned server's main thread is asleep (state S in /proc), or -1 if unknown. */
static int server_asleep(void)
{
	char path[64], buf[256], *p;
	pid_t pid = bench_server_pid();
	ssize_t n;
	int fd;

	if (pid <= 0)
		return -1;
	snprintf(path, sizeof(path), "/proc/%d/task/%d/stat", (int)pid, (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = 0;
	p = strrchr(buf, ')'); /* "pid (comm) S ..." */
	return p && p[1] == ' ' ? p[2] == 'S' : -1;
}

/*
 * Before a round trip whose receiver must be asleep: pause longer than any spin, then make
 * sure, where the server is ours, that it has gone to sleep (a pause alone is not always
 * enough on a busy or oddly scheduled machine). Gives up after 100 ms.
 */
void bench_pause(void)
{
	struct timespec ts = { 0, BENCH_SLEEP_NS }, tick = { 0, 20000 };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
	for (int i = 0; i < 5000 && server_asleep() == 0; i++)
		nanosleep(&tick, NULL);
}

/* Spin, then sleep, until *w == want. -ECONNRESET if watch_fd (>= 0) hangs up meanwhile. */
static int futex_await(_Atomic uint32_t *w, uint32_t want, int watch_fd)
{
	uint64_t until = bench_now_ns() + FUTEX_SPIN_NS;
	uint32_t v;

	/* Acquire: pairs with the other side's release, so its payload is complete. */
	while ((v = atomic_load_explicit(w, memory_order_acquire)) != want) {
		if (bench_now_ns() < until) {
			cpu_relax();
			continue;
		}
		struct timespec ts = { 0, 100000000 }; /* look for a dead peer every 100 ms */

		if (futex(w, FUTEX_WAIT, v, &ts) < 0 && errno == ETIMEDOUT && watch_fd >= 0) {
			struct pollfd p = { .fd = watch_fd, .events = POLLIN };

			if (poll(&p, 1, 0) > 0 && (p.revents & (POLLHUP | POLLERR | POLLNVAL)))
				return -ECONNRESET;
		}
	}
	return 0;
}

void bench_futex_client(uint8_t *region, size_t cap, size_t size, uint64_t iters, uint64_t seq0,
			const uint8_t *src, uint8_t *dst, uint64_t *samples)
{
	_Atomic uint32_t *word = (_Atomic uint32_t *)(void *)(region + FUTEX_AT);
	uint32_t seq = (uint32_t)seq0; /* the futex word is 32 bits; it wraps in step */

	for (uint64_t i = 0; i < iters; i++) {
		bench_pause();
		uint64_t t0 = bench_now_ns();

		memcpy(region + PP_DATA, src, size);
		/* Release: the payload before the word; pairs with the server's acquire. */
		atomic_store_explicit(word, seq + 1, memory_order_release);
		futex(word, FUTEX_WAKE, 1, NULL);
		futex_await(word, seq + 2, -1);
		memcpy(dst, region + PP_DATA + cap, size);
		samples[i] = bench_now_ns() - t0;
		seq += 2;
	}
}

int bench_futex_server(uint8_t *region, size_t cap, size_t size, uint64_t iters, uint32_t seq0,
		       int watch_fd)
{
	_Atomic uint32_t *word = (_Atomic uint32_t *)(void *)(region + FUTEX_AT);
	uint32_t seq = seq0;

	for (uint64_t i = 0; i < iters; i++) {
		if (futex_await(word, seq + 1, watch_fd))
			return -ECONNRESET;
		memcpy(region + PP_DATA + cap, region + PP_DATA, size);
		atomic_store_explicit(word, seq + 2, memory_order_release);
		futex(word, FUTEX_WAKE, 1, NULL);
		seq += 2;
	}
	return 0;
}

/* ---- command channel ------------------------------------------------------------------ */

int bench_region_run(struct bench *b, uint32_t op, bench_region_client_fn client,
		     uint8_t *region, uint64_t *seq, uint64_t step, size_t size, uint64_t iters,
		     uint64_t *samples)
{
	struct bench_reply r;

	if (bench_cmd(b, op, size, iters, *seq))
		return -1;
	client(region, b->cap, size, iters, *seq, b->sbuf, b->rbuf, samples);
	*seq += step * iters;
	return bench_reply(b, &r);
}

int bench_cmd(struct bench *b, uint32_t op, size_t size, uint64_t iters, uint64_t arg)
{
	struct bench_cmd c = { .magic = BENCH_MAGIC, .op = op, .size = size, .iters = iters,
			       .seed = b->seed, .arg = arg };

	if (scif_send(b->ep, &c, sizeof(c), SCIF_SEND_BLOCK) != (int)sizeof(c)) {
		perror("scif_bench: scif_send (command)");
		return -1;
	}
	return 0;
}

/* A data mismatch is recorded and is not a transport failure: the run goes on. */
int bench_reply(struct bench *b, struct bench_reply *r)
{
	if (scif_recv(b->ep, r, sizeof(*r), SCIF_RECV_BLOCK) != (int)sizeof(*r)) {
		perror("scif_bench: scif_recv (reply)");
		return -1;
	}
	if (r->status == BENCH_MISMATCH) {
		b->mismatch = 1;
		bench_progress_end();
		fprintf(stderr, "scif_bench: DATA MISMATCH in %s, size %zu, at byte %llu (found by "
			"the server)\n", b->cur ? b->cur->name : "?", b->cur_size,
			(unsigned long long)r->value);
		return 0;
	}
	if (r->status) {
		bench_progress_end();
		fprintf(stderr, "scif_bench: server failed: %s\n", strerror(r->status));
		return -1;
	}
	return 0;
}

int bench_call(struct bench *b, uint32_t op, size_t size, uint64_t iters, uint64_t arg,
	       uint64_t *value)
{
	struct bench_reply r;

	if (bench_cmd(b, op, size, iters, arg) || bench_reply(b, &r))
		return -1;
	if (value)
		*value = r.value;
	return 0;
}

/* ---- send/recv -------------------------------------------------------------------------- */

/* Move exactly len bytes; non-blocking mode spins on calls that return 0. */
static int xfer(scif_epd_t ep, uint8_t *buf, size_t len, int nb, int send)
{
	size_t done = 0;

	if (!len)
		return 0;
	if (!nb) {
		int n = send ? scif_send(ep, buf, (int)len, SCIF_SEND_BLOCK) :
			       scif_recv(ep, buf, (int)len, SCIF_RECV_BLOCK);

		return n == (int)len ? 0 : (n < 0 ? -errno : -ECONNRESET);
	}
	while (done < len) {
		int n = send ? scif_send(ep, buf + done, (int)(len - done), 0) :
			       scif_recv(ep, buf + done, (int)(len - done), 0);

		if (n < 0)
			return -errno;
		done += (size_t)n;
	}
	return 0;
}

static int run_lat(struct bench *b, const struct bench_test *t, size_t size, uint64_t iters,
		   uint64_t *samples)
{
	struct bench_reply r;
	int err;

	if (bench_cmd(b, OP_LAT, size, iters, (uint64_t)t->async))
		return -1;
	for (uint64_t i = 0; i < iters; i++) {
		if (t->sleeper)
			bench_pause(); /* the server goes to sleep in scif_recv */
		uint64_t t0 = bench_now_ns();

		err = xfer(b->ep, b->sbuf, size, t->async, 1);
		if (!err)
			err = xfer(b->ep, b->rbuf, size, t->async, 0);
		if (err) {
			bench_progress_end();
			fprintf(stderr, "scif_bench: %s: %s\n", t->name, strerror(-err));
			return -1;
		}
		samples[i] = bench_now_ns() - t0;
	}
	return bench_reply(b, &r);
}

/* The echo comes back from the server's buffer: it must be what we sent. */
static int prep_echo(struct bench *b, const struct bench_test *t, size_t size)
{
	(void)t;
	bench_fill(b->sbuf, size, b->seed);
	memset(b->rbuf, 0, size);
	return 0;
}

static int check_buf(struct bench *b, const struct bench_test *t, const uint8_t *buf, size_t size)
{
	size_t bad = bench_check(buf, size, b->seed, 0);

	if (bad != SIZE_MAX) {
		bench_progress_end();
		fprintf(stderr, "scif_bench: DATA MISMATCH in %s, size %zu, at byte %zu\n", t->name,
			size, bad);
		b->mismatch = 1;
	}
	return 0;
}

static int check_echo(struct bench *b, const struct bench_test *t, size_t size)
{
	return check_buf(b, t, b->rbuf, size);
}

/*
 * Streaming: messages carry their index in their first 8 bytes, so the server sees a lost,
 * repeated or reordered message; the last one is compared in full. The round ends with the
 * server's reply, so the time covers delivery, not just queueing.
 */
static int run_bw(struct bench *b, const struct bench_test *t, size_t size, uint64_t iters,
		  uint64_t *samples)
{
	struct bench_reply r;
	int err;

	(void)samples;
	if (bench_cmd(b, OP_BW, size, iters, 0))
		return -1;
	for (uint64_t i = 0; i < iters; i++) {
		if (size >= 8)
			memcpy(b->sbuf, &i, 8);
		err = xfer(b->ep, b->sbuf, size, 0, 1);
		if (err) {
			bench_progress_end();
			fprintf(stderr, "scif_bench: %s: %s\n", t->name, strerror(-err));
			return -1;
		}
	}
	return bench_reply(b, &r);
}

/*
 * After a stream's timed rounds: the server checks the last message it received, so that
 * checking 16 MiB (milliseconds) is not timed as if it were transfer.
 */
int bench_check_stream(struct bench *b, const struct bench_test *t, size_t size)
{
	(void)t;
	return bench_call(b, OP_STREAM_CHECK, size, 0, 0, NULL);
}

static int prep_bw(struct bench *b, const struct bench_test *t, size_t size)
{
	(void)t;
	bench_fill(b->sbuf, size, b->seed);
	return 0;
}

/* ---- scif_mmap ping-pong ---------------------------------------------------------------- */

/*
 * line-pingpong's pattern (bench_line_client/server), through the server's window mapped
 * with scif_mmap instead of memory the two processes share by other means: the same
 * code on both, so the ratio to line-pingpong is what the mapping costs, nothing else.
 */

static int prep_mmap(struct bench *b, const struct bench_test *t, size_t size)
{
	uint64_t off;

	if (!b->map) {
		b->map_len = PP_DATA + 2 * b->cap;
		if (bench_call(b, OP_MMAP_SETUP, b->cap, 0, 0, &off))
			return -1;
		b->map = scif_mmap(NULL, b->map_len, SCIF_PROT_READ | SCIF_PROT_WRITE, 0, b->ep,
				   (off_t)off);
		if (b->map == SCIF_MMAP_FAILED) {
			b->map = NULL;
			perror("scif_bench: scif_mmap");
			return -1;
		}
		b->seq = 0;
	}
	return prep_echo(b, t, size);
}

static int run_mmap(struct bench *b, const struct bench_test *t, size_t size, uint64_t iters,
		    uint64_t *samples)
{
	(void)t;
	return bench_region_run(b, OP_MMAP_LAT, bench_line_client, b->map, &b->seq, 2, size, iters,
				samples);
}

/* ---- RMA -------------------------------------------------------------------------------- */

static int rma_setup(struct bench *b)
{
	uint64_t off;

	if (b->rma_ready)
		return 0;
	b->lwin = bench_alloc(b->cap);
	if (!b->lwin)
		return -1;
	b->loff = scif_register(b->ep, b->lwin, b->cap, 0, SCIF_PROT_READ | SCIF_PROT_WRITE, 0);
	if (b->loff == SCIF_REGISTER_FAILED) {
		perror("scif_bench: scif_register");
		return -1;
	}
	if (bench_call(b, OP_RMA_SETUP, b->cap, 0, 0, &off))
		return -1;
	b->roff = (off_t)off;
	b->rma_ready = 1;
	return 0;
}

static int rma_writes(const struct bench_test *t)
{
	return t->rma == RMA_WRITE || t->rma == RMA_VWRITE;
}

/* The local end of a transfer: our window or, for the v-calls, plain unregistered memory. */
static uint8_t *rma_local(struct bench *b, const struct bench_test *t)
{
	return t->rma == RMA_VWRITE || t->rma == RMA_VREAD ? b->vbuf : b->lwin;
}

/* Writes: pattern here, zeros there. Reads: the other way round. New seed each point. */
static int prep_rma(struct bench *b, const struct bench_test *t, size_t size)
{
	if (rma_setup(b))
		return -1;
	if (rma_writes(t)) {
		bench_fill(rma_local(b, t), size, b->seed);
		return bench_call(b, OP_FILL, size, 0, 1, NULL);
	}
	memset(rma_local(b, t), 0, size);
	return bench_call(b, OP_FILL, size, 0, 0, NULL);
}

static int check_rma(struct bench *b, const struct bench_test *t, size_t size)
{
	if (rma_writes(t))
		return bench_call(b, OP_VERIFY, size, 0, 0, NULL);
	return check_buf(b, t, rma_local(b, t), size);
}

static int rma_one(struct bench *b, const struct bench_test *t, size_t size, int flags)
{
	switch (t->rma) {
	case RMA_WRITE:
		return scif_writeto(b->ep, b->loff, size, b->roff, flags);
	case RMA_READ:
		return scif_readfrom(b->ep, b->loff, size, b->roff, flags);
	case RMA_VWRITE:
		return scif_vwriteto(b->ep, b->vbuf, size, b->roff, flags);
	default:
		return scif_vreadfrom(b->ep, b->vbuf, size, b->roff, flags);
	}
}

static int run_rma(struct bench *b, const struct bench_test *t, size_t size, uint64_t iters,
		   uint64_t *samples)
{
	int flags = t->rma_flags | (t->async ? 0 : SCIF_RMA_SYNC);
	uint64_t batch = 1, i = 0;
	int err;

	(void)samples;
	if (t->async) {
		batch = ASYNC_BATCH_BYTES / size;
		batch = batch < 4 ? 4 : batch > 64 ? 64 : batch;
	}
	while (i < iters) {
		uint64_t k = iters - i < batch ? iters - i : batch;
		int mark;

		for (uint64_t j = 0; j < k; j++)
			if (rma_one(b, t, size, flags) < 0)
				goto fail;
		/* Async: the batch is in flight; one fence covers all of it. */
		if (t->async && (scif_fence_mark(b->ep, SCIF_FENCE_INIT_SELF, &mark) < 0 ||
				 scif_fence_wait(b->ep, mark) < 0))
			goto fail;
		i += k;
	}
	return 0;
fail:
	err = errno;
	bench_progress_end();
	fprintf(stderr, "scif_bench: %s, size %zu: %s\n", t->name, size, strerror(err));
	return -1;
}

/* ---- the test table --------------------------------------------------------------------- */

#define LAT(n, nb, r, p, c) \
	{ .name = n, .group = n, .kind = KIND_LAT, .base = BASE_LINE, .tcp_base = BASE_TCP_LAT, \
	  .async = nb, .run = r, .prep = p, .check = c }
#define RMA(grp, mode, which, fl, as) \
	{ .name = grp "/" mode, .group = grp, .kind = KIND_BW, .base = BASE_MEMCPY, \
	  .tcp_base = BASE_TCP_BW, .rma = which, .rma_flags = fl, .async = as, .run = run_rma, \
	  .prep = prep_rma, .check = check_rma }
#define RMA4(grp, which) \
	RMA(grp, "sync-cpu", which, SCIF_RMA_USECPU, 0), RMA(grp, "sync-dma", which, 0, 0), \
	RMA(grp, "async-cpu", which, SCIF_RMA_USECPU, 1), RMA(grp, "async-dma", which, 0, 1)

const struct bench_test bench_tests[] = {
	LAT("lat", 0, run_lat, prep_echo, check_echo),
	LAT("lat-nb", 1, run_lat, prep_echo, check_echo),
	{ .name = "lat-sleep", .group = "lat-sleep", .kind = KIND_LAT, .base = BASE_FUTEX,
	  .tcp_base = BASE_TCP_LAT, .sleeper = 1, .run = run_lat, .prep = prep_echo,
	  .check = check_echo },
	{ .name = "bw", .group = "bw", .kind = KIND_BW, .base = BASE_MEMCPY,
	  .tcp_base = BASE_TCP_BW, .run = run_bw, .prep = prep_bw, .check = bench_check_stream },
	LAT("mmap-lat", 0, run_mmap, prep_mmap, check_echo),
	RMA4("rma-write", RMA_WRITE),
	RMA4("rma-read", RMA_READ),
	RMA4("rma-vwrite", RMA_VWRITE),
	RMA4("rma-vread", RMA_VREAD),
};
const int bench_ntests = (int)(sizeof(bench_tests) / sizeof(bench_tests[0]));

/* ---- server ----------------------------------------------------------------------------- */

struct server_state {
	uint8_t *buf;       /* receive buffer, cap bytes */
	uint8_t *win;       /* RMA window */
	uint8_t *pp;        /* ping-pong window */
	size_t pp_len;
	size_t stream_size; /* the last stream's message size, for OP_STREAM_CHECK; 0: none */
};

static int serve_bw(struct bench *b, const struct bench_cmd *c, struct server_state *s,
		    struct bench_reply *r)
{
	size_t size = c->size;
	int err;

	for (uint64_t i = 0; i < c->iters; i++) {
		err = xfer(b->ep, s->buf, size, 0, 0);
		if (err)
			return err;
		if (size >= 8 && !r->status && memcmp(s->buf, &i, 8)) {
			r->status = BENCH_MISMATCH;
			r->value = i * size;
		}
	}
	/* The last message's contents are checked by OP_STREAM_CHECK, outside the timed part. */
	s->stream_size = c->iters ? size : 0;
	return 0;
}

static int serve_register(struct bench *b, uint8_t **mem, size_t len, struct bench_reply *r)
{
	off_t off;

	if (!*mem) {
		*mem = bench_alloc(len);
		if (!*mem)
			return -ENOMEM;
	}
	off = scif_register(b->ep, *mem, len, 0, SCIF_PROT_READ | SCIF_PROT_WRITE, 0);
	if (off == SCIF_REGISTER_FAILED)
		return -errno;
	r->value = (uint64_t)off;
	return 0;
}

/* One command; returns 1 on QUIT, 0 to go on, -errno when the connection is unusable. */
static int serve_one(struct bench *b, struct server_state *s, const struct bench_cmd *c)
{
	struct bench_reply r = { 0 };
	size_t bad;
	int err = 0;

	if (c->magic != BENCH_MAGIC)
		return -EPROTO;
	if (c->op != OP_HELLO && c->op != OP_QUIT && (!s->buf || c->size > b->cap))
		return -EPROTO;
	switch (c->op) {
	case OP_HELLO:
		if (s->buf || !c->size || c->size > (1u << 30))
			return -EPROTO;
		b->cap = (c->size + BENCH_PAGE - 1) & ~(size_t)(BENCH_PAGE - 1);
		s->buf = bench_alloc(b->cap);
		if (!s->buf)
			r.status = ENOMEM;
		break;
	case OP_QUIT:
		break;
	case OP_LAT:
		for (uint64_t i = 0; i < c->iters && !err; i++) {
			err = xfer(b->ep, s->buf, c->size, (int)c->arg, 0);
			if (!err)
				err = xfer(b->ep, s->buf, c->size, (int)c->arg, 1);
		}
		break;
	case OP_BW:
		err = serve_bw(b, c, s, &r);
		break;
	case OP_MMAP_SETUP:
		s->pp_len = PP_DATA + 2 * b->cap;
		err = serve_register(b, &s->pp, s->pp_len, &r);
		if (!err)
			memset(s->pp, 0, BENCH_PAGE);
		break;
	case OP_MMAP_LAT:
		err = s->pp ? bench_line_server(s->pp, b->cap, c->size, c->iters, c->arg, b->ep) :
			      -EPROTO;
		break;
	case OP_RMA_SETUP:
		err = serve_register(b, &s->win, b->cap, &r);
		break;
	case OP_FILL:
		if (!s->win)
			return -EPROTO;
		if (c->arg)
			memset(s->win, 0, c->size);
		else
			bench_fill(s->win, c->size, c->seed);
		break;
	case OP_VERIFY:
		if (!s->win)
			return -EPROTO;
		bad = bench_check(s->win, c->size, c->seed, 0);
		if (bad != SIZE_MAX) {
			r.status = BENCH_MISMATCH;
			r.value = bad;
		}
		break;
	case OP_STREAM_CHECK:
		/* The last message of the last stream (bw, tcp-bw, unix-bw), after its stamp. */
		bad = s->stream_size ? bench_check(s->buf, s->stream_size, c->seed,
						   s->stream_size >= 8 ? 8 : 0)
				     : SIZE_MAX;
		if (bad != SIZE_MAX) {
			r.status = BENCH_MISMATCH;
			r.value = bad;
		}
		break;
	case OP_SHM_LAT:
	case OP_LINE_LAT:
	case OP_FUTEX_LAT:
	case OP_SOCK_LAT:
	case OP_SOCK_BW:
		err = bench_serve_base(b, c, s->buf, &r);
		if (c->op == OP_SOCK_BW)
			s->stream_size = c->iters ? c->size : 0;
		break;
	default:
		return -EPROTO;
	}
	if (err)
		return err;
	if (scif_send(b->ep, &r, sizeof(r), SCIF_SEND_BLOCK) != (int)sizeof(r))
		return -errno;
	return c->op == OP_QUIT;
}

/*
 * The server's session with one client: commands until QUIT or the client goes away. The
 * endpoint is closed on return.
 */
int bench_serve(struct bench *b)
{
	struct server_state s = { 0 };
	struct bench_cmd c;
	int ret;

	for (;;) {
		int n = scif_recv(b->ep, &c, sizeof(c), SCIF_RECV_BLOCK);

		if (n != (int)sizeof(c)) {
			ret = n < 0 ? -errno : -ECONNRESET;
			break;
		}
		ret = serve_one(b, &s, &c);
		if (ret)
			break;
	}
	/* Close first: the windows must be gone before their memory goes back to malloc. */
	scif_close(b->ep);
	b->ep = -1;
	free(s.buf);
	free(s.win);
	free(s.pp);
	return ret == 1 ? 0 : ret;
}
