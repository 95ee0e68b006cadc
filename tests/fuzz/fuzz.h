/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * fuzz.h - what the libFuzzer targets share: reading the input as a stream of numbers, the
 * process set-up (a private fabric directory, small rings, short timeouts), the check that a
 * failed call's errno is one the spec allows, and the "application thread" that makes the
 * library's blocking calls while the fuzzer, in the main thread, plays the peer.
 *
 * Every wait is bounded: a library call that does not return once the peer has hung up, or
 * a connection that never finishes, aborts the run (a hang is a bug like a crash is).
 */
#ifndef SCIF_FUZZ_H
#define SCIF_FUZZ_H

#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <scif.h>

/* ---- the input --------------------------------------------------------------------- */

/* The input, consumed from the front; reads past its end give zeros (the honest default). */
struct fz {
	const uint8_t *p;
	size_t n;
};

static inline uint8_t fz_u8(struct fz *f)
{
	if (!f->n)
		return 0;
	f->n--;
	return *f->p++;
}

static inline uint16_t fz_u16(struct fz *f)
{
	uint16_t v = fz_u8(f);

	return (uint16_t)(v | (uint16_t)fz_u8(f) << 8);
}

static inline uint32_t fz_u32(struct fz *f)
{
	uint32_t v = fz_u16(f);

	return v | (uint32_t)fz_u16(f) << 16;
}

static inline uint64_t fz_u64(struct fz *f)
{
	uint64_t v = fz_u32(f);

	return v | (uint64_t)fz_u32(f) << 32;
}

static inline void fz_bytes(struct fz *f, void *dst, size_t n)
{
	size_t k = n < f->n ? n : f->n;

	memcpy(dst, f->p, k);
	memset((uint8_t *)dst + k, 0, n - k);
	f->p += k;
	f->n -= k;
}

/* ---- set-up and checks (fuzz-common.c) --------------------------------------------------- */

/*
 * How long a library call may stay blocked, or the library take to reach the fuzzer, before
 * the harness calls it a hang: a watchdog, not a speed (on a loaded 2-core machine, beside the
 * CI's ThreadSanitizer build, a connect once took over 3 s to reach the fuzzer).
 */
#define FZ_HANG_MS 10000

/*
 * Once per process: a private fabric directory (SCIF_RUN_DIR, removed at exit), node 0 of
 * two, the given SCIF_RING_SIZE etc. already in the environment. Checks that the fabric
 * names listen sockets where peer.c looks for them.
 */
void fz_init(void);
/* Milliseconds on the monotonic clock. */
uint64_t fz_now_ms(void);
/* Open descriptors of this process. */
int fz_fd_count(void);
/*
 * After an input: no descriptor may be left over compared with @before (the library frees
 * a closed endpoint's descriptors when its last reference goes; this waits up to 1 s).
 */
void fz_expect_fds(int before, const char *what);

/* Print a diagnosis and abort: libFuzzer saves the input as a crash. */
#define fz_fail(...)                                                                   \
	do {                                                                           \
		fprintf(stderr, "fuzz: " __VA_ARGS__);                                 \
		fputc('\n', stderr);                                                   \
		abort();                                                               \
	} while (0)

/*
 * A call returned @ret: fine if it is not -1, or if errno is among the zero-terminated
 * @allowed (the call's errors in spec/scif-api.md); else abort with the call's name.
 */
void fz_expect_errno(const char *call, long ret, const int *allowed);
#define FZ_ERRNOS(...) ((const int[]){ __VA_ARGS__, 0 })

/* ---- the application thread ----------------------------------------------------------- */

/*
 * One thread that runs library calls for the fuzzer, one at a time, so that a call may block
 * (waiting for the peer) while the main thread, the peer, goes on. The call's arguments live
 * in @arg, which must stay valid until it returns.
 */
struct fz_app {
	pthread_t th;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	void (*fn)(void *arg);
	void *arg;
	int busy;
	int stop;
	int tid;
};

/* A listening endpoint of the library on a port it chose (returned); fails the run if not. */
int fz_listener(scif_epd_t *lep, int backlog);
void fz_app_start(struct fz_app *a);
/*
 * Start fn(arg) on the application thread and wait up to @wait_ms for it to return. Returns
 * 1 if it returned, 0 if it still runs (it goes on), -1 if a previous call still runs (then
 * fn is not started).
 */
int fz_app_call(struct fz_app *a, void (*fn)(void *), void *arg, int wait_ms);
/* Wait up to @ms for the running call to return; 1 if it did (or none ran). */
int fz_app_idle(struct fz_app *a, int ms);
/* Wait up to @ms until the running call sleeps in poll(2) (inside the library); 1 if so. */
int fz_app_sleeping(struct fz_app *a, int ms);

#endif /* SCIF_FUZZ_H */
