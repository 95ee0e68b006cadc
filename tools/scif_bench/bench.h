/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * bench.h - private interface of scif_bench: the command channel's wire format, the test
 * table, the result records and the helpers that main.c, tests.c, baseline.c and report.c share.
 */
#ifndef SCIF_BENCH_H
#define SCIF_BENCH_H

#include <assert.h>
#include <sched.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <stdio.h>
#include <time.h>

#include <scif.h>

#include "clock.h"

#define BENCH_MAGIC 0x48434e42u /* "BNCH": a peer speaking anything else is refused */
#define BENCH_DEFAULT_PORT 2091
#define BENCH_PAGE 4096u
#define BENCH_HUGE (2u << 20)
#define BENCH_LINE 64u
#define BENCH_MAX_SIZES 64
#define BENCH_MAX_RESULTS 1024
#define BENCH_MAX_SAMPLES 1000000u /* latency samples kept per point (8 MB) */

/* Opcodes the client sends on the command channel; the server answers each with a reply. */
enum bench_op {
	OP_HELLO = 1,  /* size: largest transfer; server sizes its buffers */
	OP_QUIT,       /* end of session */
	OP_LAT,        /* iters echoes of size bytes; arg 1 = non-blocking calls */
	OP_BW,         /* receive iters messages of size bytes; check their stamps */
	OP_MMAP_SETUP, /* register the ping-pong window; reply.value = its offset */
	OP_MMAP_LAT,   /* answer iters flag ping-pongs in that window, from sequence arg */
	OP_RMA_SETUP,  /* register the RMA window; reply.value = its offset */
	OP_FILL,       /* fill the RMA window's first size bytes: pattern(seed), or zero if arg */
	OP_VERIFY,     /* check the RMA window's first size bytes against pattern(seed) */
	OP_SHM_LAT,    /* two-line ping-pong on the inherited memfd, from sequence arg */
	OP_SOCK_LAT,   /* echo on a baseline socket (arg: SOCK_TCP or SOCK_UNIX) */
	OP_SOCK_BW,    /* stream receive on a baseline socket */
	OP_LINE_LAT,   /* one-line ping-pong on the inherited memfd, from sequence arg */
	OP_STREAM_CHECK, /* check the last stream's last message against pattern(seed) */
	OP_FUTEX_LAT,  /* futex ping-pong on the inherited memfd, from sequence arg */
};

enum { SOCK_TCP, SOCK_UNIX };

/*
 * The fixed command: 40 bytes, naturally aligned, no implicit padding, so the two ends may be
 * built by different compilers (host and card) and still agree.
 */
struct bench_cmd {
	uint32_t magic;
	uint32_t op;
	uint64_t size;
	uint64_t iters;
	uint64_t seed;
	uint64_t arg;
};
static_assert(sizeof(struct bench_cmd) == 40, "bench_cmd is a wire format");

/* status: 0, a positive errno from the server, or BENCH_MISMATCH (value = first bad byte). */
struct bench_reply {
	int32_t status;
	uint32_t pad;
	uint64_t value;
};
static_assert(sizeof(struct bench_reply) == 16, "bench_reply is a wire format");

#define BENCH_MISMATCH 100000

enum bench_kind { KIND_LAT, KIND_BW };

/* Baselines, in the order their figures are stored in struct bench.base. */
enum bench_base {
	BASE_NONE = -1,
	BASE_MEMCPY,
	BASE_LINE, /* one cache line bouncing: the latency limit */
	BASE_SHM2, /* two flag lines, one written by each side */
	BASE_TCP_LAT,
	BASE_UNIX_LAT,
	BASE_TCP_BW,
	BASE_UNIX_BW,
	BASE_FUTEX, /* a flag word and a futex wake-up: the limit when the receiver sleeps */
	/* --peers: what a user would pick instead, measured by peers.c */
	BASE_OMPI_LAT,    /* Open MPI vader, round trip */
	BASE_OMPI_BW,     /* Open MPI vader, stream */
	BASE_UCX_TAG_LAT, /* UCX tag matching, round trip */
	BASE_UCX_TAG_BW,
	BASE_UCX_PUT_LAT, /* UCX put ping-pong, round trip */
	BASE_UCX_PUT_BW,
	BASE_COUNT
};

struct bench;
struct bench_test;

/*
 * A runner performs iters iterations of one test at one size. Latency runners store each
 * round trip in ns in samples[]; bandwidth runners leave samples alone. Both return 0 or -1
 * (after printing why), and a data mismatch found on the way sets b->mismatch.
 */
typedef int (*bench_run_fn)(struct bench *b, const struct bench_test *t, size_t size,
			    uint64_t iters, uint64_t *samples);
/* prep runs before a point (fill, clear), check after it (compare); either may be NULL. */
typedef int (*bench_hook_fn)(struct bench *b, const struct bench_test *t, size_t size);

struct bench_test {
	const char *name;  /* row name: "rma-write/async-dma" */
	const char *group; /* what --tests selects: "rma-write" */
	enum bench_kind kind;
	int base;     /* enum bench_base this test is divided by, for the ratio column */
	int tcp_base; /* the TCP figure it is also compared with */
	int op;       /* server opcode, for runners shared by several tests */
	int rma;      /* RMA tests: which call (enum bench_rma in tests.c) */
	int rma_flags;
	int async;    /* lat-nb: non-blocking calls; RMA: batches without SYNC, then a fence */
	int sleeper;  /* lat-sleep: each round trip starts after the peer has gone to sleep */
	bench_run_fn run;
	bench_hook_fn prep, check;
};

/* One measured point. Latencies are in microseconds, bandwidths in GB/s (1e9 bytes/s). */
struct bench_result {
	const char *test;
	const char *group;
	enum bench_kind kind;
	size_t size;
	uint64_t iters;
	double median, p99; /* p99 only for latency */
	const char *baseline;
	double base, ratio; /* base < 0: no baseline */
	double tcp, tcp_ratio;
	const char *peer;	     /* the best peer's baseline at this size (--peers), or NULL */
	double peer_val, peer_ratio; /* its figure, and SCIF / it */
	int mismatch;
	int is_baseline; /* a baseline's own record (memcpy, tcp-bw, ...) */
	/*
	 * The point's own baseline, measured right before and right after it (the better of the
	 * two), and how far those two disagreed (worse / better, >= 1): the host may move the
	 * two vCPUs between sibling threads and separate cores during a run, so a baseline from
	 * another moment can be off by several times. pair_spread 0: not paired.
	 */
	double pair_base, pair_spread;
	/* --peers, latency rows: the one-line round trip measured around the best peer's run,
	 * to tell whether the peer ran with the CPUs placed as this point did (0: unknown). */
	double peer_line;
};

struct bench_opts {
	int server, client, spawned, quick, no_pin, peers;
	int registration; /* --registration N: windows, or 0 */
	uint16_t node, port;
	double duration; /* seconds each point is measured */
	int rounds;      /* bandwidth: median of this many timed rounds */
	size_t sizes[BENCH_MAX_SIZES];
	int nsizes;
	size_t min, max;
	const char *tests;
	const char *json, *csv, *plot;
	/* spawned-server plumbing, passed on the server's command line */
	int notify_fd, shm_fd, tcp_port;
	const char *unix_path;
};

struct bench {
	struct bench_opts o;
	scif_epd_t ep;
	size_t cap; /* largest size, rounded up to whole pages */
	/* client buffers, page aligned */
	uint8_t *sbuf, *rbuf, *vbuf, *lwin, *mc_src, *mc_dst;
	off_t loff, roff; /* RMA windows: ours and the server's */
	int rma_ready;
	uint8_t *map; /* scif_mmap of the server's ping-pong window */
	size_t map_len;
	uint8_t *shm; /* raw ping-pong region (memfd) */
	size_t shm_len;
	int tcp_fd, unix_fd;
	uint64_t seq;  /* scif_mmap ping-pong sequence, continued across rounds */
	uint64_t shm_seq; /* the same for the two-line shared-memory ping-pong */
	uint64_t line_seq; /* and for the one-line ping-pong (odd: the client's turn done) */
	uint64_t futex_seq; /* and for the futex ping-pong (odd: the client's turn done) */
	uint64_t seed; /* pattern seed, new for each point */
	int mismatch;  /* set by a runner or check that found bad data */
	const struct bench_test *cur; /* the point being measured, for messages */
	size_t cur_size;
	double base[BASE_COUNT][BENCH_MAX_SIZES];
	struct bench_result res[BENCH_MAX_RESULTS];
	/* --peers: one-line round trip (us) probed around each peer's run, by enum bench_base */
	double peer_line[BASE_COUNT];
	int nres;
	int failures;
};

/* The clock every sample is taken with (clock.h; set up once by main()). */
extern struct bench_clock bench_clk;
const char *bench_clock_name(void);

static inline uint64_t bench_now_ns(void)
{
	return bench_clock_ns(&bench_clk);
}

/* main.c */
extern const char *bench_base_name[BASE_COUNT];
int bench_size_index(const struct bench *b, size_t size);
extern int bench_no_thp;
void *bench_alloc(size_t len);

/* tests.c: the SCIF tests, both roles */
extern const struct bench_test bench_tests[];
extern const int bench_ntests;
int bench_cmd(struct bench *b, uint32_t op, size_t size, uint64_t iters, uint64_t arg);
int bench_reply(struct bench *b, struct bench_reply *r);
int bench_call(struct bench *b, uint32_t op, size_t size, uint64_t iters, uint64_t arg,
	       uint64_t *value);
int bench_serve(struct bench *b);
int bench_check_stream(struct bench *b, const struct bench_test *t, size_t size);
void bench_fill(void *buf, size_t len, uint64_t seed);
size_t bench_check(const void *buf, size_t len, uint64_t seed, size_t from);
void bench_line_client(uint8_t *region, size_t cap, size_t size, uint64_t iters, uint64_t seq0,
		       const uint8_t *src, uint8_t *dst, uint64_t *samples);
int bench_line_server(uint8_t *region, size_t cap, size_t size, uint64_t iters, uint64_t seq0,
		      int watch_fd);
void bench_pp_client(uint8_t *region, size_t cap, size_t size, uint64_t iters, uint64_t seq0,
		     const uint8_t *src, uint8_t *dst, uint64_t *samples);
/* The futex ping-pong's two ends (tests.c); the server sleeps for each message. */
void bench_futex_client(uint8_t *region, size_t cap, size_t size, uint64_t iters, uint64_t seq0,
			const uint8_t *src, uint8_t *dst, uint64_t *samples);
int bench_futex_server(uint8_t *region, size_t cap, size_t size, uint64_t iters, uint32_t seq0,
		       int watch_fd);
/* The pause before each round trip of lat-sleep and futex-pingpong, longer than any spin. */
#define BENCH_SLEEP_NS 200000u
void bench_pause(void);
/* The spawned server's process id, or -1 (--client). */
pid_t bench_server_pid(void);
/* The client end of a ping-pong in shared memory: bench_pp_client, line, futex. */
typedef void (*bench_region_client_fn)(uint8_t *region, size_t cap, size_t size, uint64_t iters,
				       uint64_t seq0, const uint8_t *src, uint8_t *dst,
				       uint64_t *samples);
/*
 * One batch of such a ping-pong: tell the server (@op, from *@seq), run @client over
 * @region, and advance *@seq by @step per round trip. 0, or -1 after printing why.
 */
int bench_region_run(struct bench *b, uint32_t op, bench_region_client_fn client,
		     uint8_t *region, uint64_t *seq, uint64_t step, size_t size, uint64_t iters,
		     uint64_t *samples);
int bench_pp_server(uint8_t *region, size_t cap, size_t size, uint64_t iters, uint64_t seq0,
		    int watch_fd);

/* report.c: a baseline pair further apart than this is flagged; a peer placed otherwise. */
#define BENCH_PAIR_SPREAD_OK 1.25
int bench_peer_moved(const struct bench_result *r);

/* baseline.c */
extern const struct bench_test bench_baselines[];
extern const int bench_nbaselines;
int bench_base_listen(struct bench *b, int *tcp_lfd, int *unix_lfd, char *path, size_t pathlen);
int bench_base_accept(struct bench *b, int tcp_lfd, int unix_lfd);
int bench_base_connect(struct bench *b);
int bench_shm_create(struct bench *b);
int bench_shm_attach(struct bench *b);
/* Pin the calling thread to the @nth CPU of @set; 0, or -1 (no such CPU, or refused). */
int bench_pin_nth(const cpu_set_t *set, int nth);
/* The one-line round trip between this process's first two CPUs now (us), or -1. */
double bench_line_probe(void);
int bench_serve_base(struct bench *b, const struct bench_cmd *c, uint8_t *buf,
		     struct bench_reply *r);

/* peers.c */
int bench_peers(struct bench *b);
/* --registration N (reg.c): registration cost at 32 and N windows, printed. */
int bench_registration(struct bench *b, int n);

/* report.c */
void bench_progress(int done, int total, const char *test, size_t size);
void bench_progress_end(void);
const char *bench_size_str(size_t size, char *buf, size_t len);
void bench_print_table(FILE *f, const struct bench *b);
int bench_print_summary(FILE *f, const struct bench *b);
int bench_write_json(const struct bench *b, const char *path);
int bench_write_csv(const struct bench *b, const char *path);
int bench_write_svg(const struct bench *b, const char *path);
const struct bench_result *bench_find(const struct bench *b, const char *test, size_t size);

#endif
