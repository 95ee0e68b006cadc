// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * compat.h - the small header shared by the compat programs (tests/compat/c-*-host.c and
 * c-*-card.c), written the way MPSS-era applications carried one: failure exits, the
 * Intel-style errno check, a connect that retries, seeded data patterns. Only <scif.h> and libc.
 */
#ifndef COMPAT_H
#define COMPAT_H

#include <scif.h>
#include <errno.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define COMPAT_PAGE 4096
/* How long a connector keeps retrying ECONNREFUSED while its peer starts up. */
#define COMPAT_CONNECT_MS 20000
/* How long a program spins on a word of shared memory before it gives up. */
#define COMPAT_WAIT_MS 30000

/* "c-errno-host" etc.: main() sets it from argv[0]; it prefixes every message. */
static const char *compat_prog = "compat";

/* Where a looping program is ("round 3", "connection 17"); failure messages include it. */
static char compat_ctx[64];

/*
 * Intel-style strictness for the helpers below: when set, a call that succeeds but leaves
 * errno set counts as a failure too (the c-errno pair sets it; the others only check
 * the return value, so that they fail for their own subject only).
 */
static int compat_strict;

/*
 * Set in a fork() child: it leaves through _exit, as children of threaded programs should
 * (exit() would run the parent's atexit handlers and flush its stdio buffers a second time).
 */
static int compat_child;

/* Leave with a code that names the failure point, saying why on stderr. */
__attribute__((noreturn, format(printf, 2, 3))) static inline void fail(int code,
									  const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: step %d: %s%s", compat_prog, code, compat_ctx,
		compat_ctx[0] ? ": " : "");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	if (compat_child)
		_exit(code);
	exit(code);
}

__attribute__((noreturn)) static inline void compat_call_failed(int code, const char *call,
								 long long ret, int err)
{
	if (ret < 0)
		fail(code, "%s failed: returned %lld, errno %d (%s)", call, ret, err,
		     strerror(err));
	fail(code, "%s succeeded (returned %lld) but set errno %d (%s); Intel's libscif leaves "
		   "errno alone on success", call, ret, err, strerror(err));
}

/*
 * The MPSS-era idiom: clear errno, make the call, and treat a negative result or a set
 * errno as a failure.
 */
#define SCIF_TRY(code, var, call)                                                   \
	do {                                                                        \
		errno = 0;                                                          \
		(var) = (call);                                                     \
		if ((long long)(var) < 0 || errno)                                  \
			compat_call_failed((code), #call, (long long)(var), errno); \
	} while (0)

/* The plain idiom: only a negative result is a failure. */
#define SCIF_CHECK(code, var, call)                                                 \
	do {                                                                        \
		(var) = (call);                                                     \
		if ((long long)(var) < 0)                                           \
			compat_call_failed((code), #call, (long long)(var), errno); \
	} while (0)

/* Either of the two, as compat_strict says. */
#define SCIF_DO(code, var, call)                                                    \
	do {                                                                        \
		errno = 0;                                                          \
		(var) = (call);                                                     \
		if ((long long)(var) < 0 || (compat_strict && errno))               \
			compat_call_failed((code), #call, (long long)(var), errno); \
	} while (0)

static inline long long compat_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The port argument, as every compat program takes it: `prog <port> [...]`. */
static inline uint16_t compat_port(int argc, char **argv, int argi)
{
	long p = argc > argi ? strtol(argv[argi], NULL, 0) : 0;

	if (argc > 0) {
		const char *s = strrchr(argv[0], '/');

		compat_prog = s ? s + 1 : argv[0];
	}
	if (p < SCIF_ADMIN_PORT_END || p > 65534) {
		fprintf(stderr, "usage: %s PORT (1024..65534)\n", compat_prog);
		exit(2);
	}
	return (uint16_t)p;
}

/*
 * Connect, retrying while the listener is not up yet (ECONNREFUSED), as real card and host
 * programs did when either side could be started first. Returns the local port.
 */
static inline int compat_connect(int code, scif_epd_t ep, uint16_t node, uint16_t port)
{
	struct scif_portID dst = { .node = node, .port = port };
	long long until = compat_ms() + COMPAT_CONNECT_MS;
	int r;

	for (;;) {
		errno = 0;
		r = scif_connect(ep, &dst);
		if (r >= 0 && !(compat_strict && errno))
			return r;
		if (r >= 0 || errno != ECONNREFUSED || compat_ms() > until)
			compat_call_failed(code, "scif_connect", r, errno);
		usleep(20000);
	}
}

/* Blocking send / receive of exactly len bytes. */
static inline void compat_send(int code, scif_epd_t ep, const void *buf, int len)
{
	int r;

	SCIF_DO(code, r, scif_send(ep, (void *)buf, len, SCIF_SEND_BLOCK));
	if (r != len)
		fail(code, "scif_send of %d bytes sent %d", len, r);
}

static inline void compat_recv(int code, scif_epd_t ep, void *buf, int len)
{
	int r;

	SCIF_DO(code, r, scif_recv(ep, buf, len, SCIF_RECV_BLOCK));
	if (r != len)
		fail(code, "scif_recv of %d bytes got %d (peer gone?)", len, r);
}

/* Receive one token byte and insist on its value (the programs' lock-step protocol). */
static inline void compat_expect(int code, scif_epd_t ep, char want)
{
	char c = 0;

	compat_recv(code, ep, &c, 1);
	if (c != want)
		fail(code, "protocol: got token '%c' (0x%02x), expected '%c'", c,
		     (unsigned char)c, want);
}

/* A seeded data pattern: byte pos of stream seed, reproducible by either side. */
static inline uint64_t compat_mix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

static inline void compat_fill(void *buf, size_t len, uint64_t seed, uint64_t pos)
{
	const uint64_t ks = compat_mix(seed);
	uint8_t *b = buf;

	for (size_t i = 0; i < len; i++, pos++)
		b[i] = (uint8_t)(compat_mix(ks + (pos >> 3)) >> ((pos & 7) * 8));
}

/* Index of the first byte that differs from the pattern, or -1. */
static inline long long compat_verify(const void *buf, size_t len, uint64_t seed, uint64_t pos)
{
	const uint64_t ks = compat_mix(seed);
	const uint8_t *b = buf;

	for (size_t i = 0; i < len; i++, pos++)
		if (b[i] != (uint8_t)(compat_mix(ks + (pos >> 3)) >> ((pos & 7) * 8)))
			return (long long)i;
	return -1;
}

/* Fail unless buf holds len bytes of stream seed, starting at stream position pos. */
static inline void compat_check_at(int code, const void *buf, size_t len, uint64_t seed,
				   uint64_t pos, const char *what)
{
	long long bad = compat_verify(buf, len, seed, pos);
	uint64_t at = pos + (uint64_t)bad;

	if (bad >= 0)
		fail(code, "%s: byte %lld of %zu is 0x%02x, pattern %#llx wants 0x%02x", what, bad,
		     len, ((const uint8_t *)buf)[bad], (unsigned long long)seed,
		     (unsigned)(uint8_t)(compat_mix(compat_mix(seed) + (at >> 3)) >>
					 ((at & 7) * 8)));
}

static inline void compat_check(int code, const void *buf, size_t len, uint64_t seed,
				const char *what)
{
	compat_check_at(code, buf, len, seed, 0, what);
}

/* FNV-1a, 64-bit: the checksums the two sides exchange. */
#define COMPAT_FNV_INIT 0xcbf29ce484222325ULL
static inline uint64_t compat_fnv(uint64_t h, const void *p, size_t n)
{
	const uint8_t *b = p;

	for (size_t i = 0; i < n; i++) {
		h ^= b[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

/* Back off politely while spinning: the test machines have two cores for everyone. */
static inline void compat_relax(unsigned *spins)
{
	if (++*spins < 200) {
#if defined(__x86_64__) || defined(__i386__)
		__builtin_ia32_pause();
#endif
	} else if (*spins < 2000)
		sched_yield();
	else
		usleep(50);
}

/*
 * Spin until the 64-bit word at p (a signal word stored by scif_fence_signal, or a word the
 * peer stores through scif_mmap) equals want; the acquire load pairs with the writer's
 * release (or the fence's completion), so the data it guards is visible afterwards.
 */
static inline void compat_wait_word(int code, const void *p, uint64_t want, const char *what)
{
	const _Atomic uint64_t *w = (const _Atomic uint64_t *)p;
	long long until = compat_ms() + COMPAT_WAIT_MS;
	unsigned spins = 0;
	uint64_t v;

	while ((v = atomic_load_explicit(w, memory_order_acquire)) != want) {
		if ((spins & 255) == 255 && compat_ms() > until)
			fail(code, "%s: word is %#llx after %d s, waiting for %#llx", what,
			     (unsigned long long)v, COMPAT_WAIT_MS / 1000,
			     (unsigned long long)want);
		compat_relax(&spins);
	}
}

static inline void *compat_alloc(int code, size_t len)
{
	void *p = NULL;

	if (posix_memalign(&p, COMPAT_PAGE, len))
		fail(code, "posix_memalign(%zu) failed", len);
	memset(p, 0, len);
	return p;
}

#endif /* COMPAT_H */
