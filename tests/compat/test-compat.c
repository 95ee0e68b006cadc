// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * test-compat.c - runs the compat pairs (tests/compat/c-<pair>-host and c-<pair>-card, see
 * docs/compat.md): one test per pair and start order. Both programs are spawned as separate
 * processes (host on node 0, card on node 1) on a port of this test, under a watchdog: a
 * pair must finish within 60 s, and once one side has failed the other gets 5 s to notice
 * before it is killed. A failure names each side's exit status or signal.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef COMPAT_DIR
#define COMPAT_DIR "tests/compat"
#endif

#define PAIR_TIMEOUT_MS 60000 /* the whole pair */
#define GRACE_MS 5000         /* the survivor's time to notice that its peer failed */
#define START_GAP_MS 300      /* between starting the first program and the second */

extern char **environ;

struct side {
	const char *role; /* "host" or "card" */
	int node;
	char path[512];
	pid_t pid;
	int status;  /* from waitpid, once done */
	int done;    /* reaped */
	int started; /* spawned */
	const char *killed; /* why the runner killed it, or NULL */
};

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Where the pair programs are: SCIF_COMPAT_DIR if set (runs by hand), else the build tree. */
static const char *compat_dir(void)
{
	const char *d = getenv("SCIF_COMPAT_DIR");

	return d && *d ? d : COMPAT_DIR;
}

/*
 * A port no other test process uses at the same time (tests run in parallel): derived from
 * the pid like tests/common.h does. The pairs use port and port + 1.
 */
static uint16_t pair_port(void)
{
	return (uint16_t)(2000 + ((unsigned)getpid() * 16u) % 60000u);
}

static void kill_side(struct side *s, const char *why)
{
	if (s->started && !s->done) {
		kill(s->pid, SIGKILL);
		if (waitpid(s->pid, &s->status, 0) == s->pid)
			s->done = 1;
		s->killed = why;
	}
}

/*
 * Start one program of the pair with SCIF_NODE set to its node; 0 or an errno. When
 * SCIF_TEST_NODE_EXEC names a program (tests/ofi/node-exec.sh), it goes in front of argv: it
 * execs the pair program in its node's network namespace (tests/ofi/check-ofi.sh).
 */
static int spawn_side(struct side *s, const char *pair, const char *port, char *const extra[])
{
	const char *wrap = getenv("SCIF_TEST_NODE_EXEC");
	char nodebuf[32], *argv[9], *envp[512];
	int n = 0, e = 0, err, max;

	if (wrap && !*wrap)
		wrap = NULL;
	max = wrap ? 8 : 7;
	snprintf(s->path, sizeof(s->path), "%s/c-%s-%s", compat_dir(), pair, s->role);
	if (wrap)
		argv[n++] = (char *)wrap;
	argv[n++] = s->path;
	argv[n++] = (char *)port;
	for (int i = 0; extra && extra[i] && n < max; i++)
		argv[n++] = extra[i];
	argv[n] = NULL;
	snprintf(nodebuf, sizeof(nodebuf), "SCIF_NODE=%d", s->node);
	envp[e++] = nodebuf;
	for (char **v = environ; *v && e < 511; v++)
		if (strncmp(*v, "SCIF_NODE=", 10))
			envp[e++] = *v;
	envp[e] = NULL;
	err = posix_spawn(&s->pid, argv[0], NULL, NULL, argv, envp);
	if (!err)
		s->started = 1;
	return err;
}

/* Reap s if it has finished; returns 1 if it is done. */
static int poll_side(struct side *s)
{
	if (s->started && !s->done && waitpid(s->pid, &s->status, WNOHANG) == s->pid)
		s->done = 1;
	return s->done;
}

static int side_ok(const struct side *s)
{
	return s->done && !s->killed && WIFEXITED(s->status) && WEXITSTATUS(s->status) == 0;
}

static int side_failed(const struct side *s)
{
	return s->done && !side_ok(s);
}

static void describe(const struct side *s, char *buf, size_t len)
{
	const char *name = strrchr(s->path, '/') ? strrchr(s->path, '/') + 1 : s->path;

	if (!s->started)
		snprintf(buf, len, "%s (%s): never started", s->role, name);
	else if (s->killed)
		snprintf(buf, len, "%s (%s, pid %d): still running, SIGKILLed %s", s->role, name,
			 (int)s->pid, s->killed);
	else if (WIFSIGNALED(s->status))
		snprintf(buf, len, "%s (%s, pid %d): killed by signal %d (%s)", s->role, name,
			 (int)s->pid, WTERMSIG(s->status), strsignal(WTERMSIG(s->status)));
	else
		snprintf(buf, len, "%s (%s, pid %d): exit status %d%s", s->role, name, (int)s->pid,
			 WEXITSTATUS(s->status),
			 WEXITSTATUS(s->status) ? " (see its stderr above)" : "");
}

/*
 * Run one pair: the first program, START_GAP_MS later the second (whose peer may or may not
 * be up: the connecting side retries), then watch both until they exit or time runs out.
 */
static void run_pair(const char *pair, int card_first, char *const extra[])
{
	struct side sides[2] = { { .role = "host", .node = 0 }, { .role = "card", .node = 1 } };
	struct side *first = &sides[card_first], *second = &sides[!card_first];
	long long start = now_ms(), failed_at = 0;
	char port[16], d0[1024], d1[1024];
	int err;

	snprintf(port, sizeof(port), "%u", pair_port());
	fprintf(stderr, "compat: pair %s, %s first, port %s\n", pair, first->role, port);
	err = spawn_side(first, pair, port, extra);
	if (err)
		cr_assert_fail("cannot start %s: %s", first->path, strerror(err));
	while (now_ms() - start < START_GAP_MS && !poll_side(first))
		usleep(2000);
	err = spawn_side(second, pair, port, extra);
	if (err) {
		kill_side(first, "because its peer could not be started");
		cr_assert_fail("cannot start %s: %s", second->path, strerror(err));
	}

	for (;;) {
		int host_done = poll_side(&sides[0]), card_done = poll_side(&sides[1]);
		long long now = now_ms();

		if (host_done && card_done)
			break;
		if (!failed_at && (side_failed(&sides[0]) || side_failed(&sides[1])))
			failed_at = now;
		if (failed_at && now - failed_at > GRACE_MS) {
			kill_side(&sides[0], "5 s after its peer failed");
			kill_side(&sides[1], "5 s after its peer failed");
		} else if (now - start > PAIR_TIMEOUT_MS) {
			kill_side(&sides[0], "by the 60 s watchdog");
			kill_side(&sides[1], "by the 60 s watchdog");
		}
		usleep(5000);
	}
	describe(&sides[0], d0, sizeof(d0));
	describe(&sides[1], d1, sizeof(d1));
	fprintf(stderr, "compat: pair %s, %s first: %s; %s (%lld ms)\n", pair, first->role, d0, d1,
		now_ms() - start);
	cr_expect(side_ok(&sides[0]) && side_ok(&sides[1]), "pair %s, %s first: %s; %s", pair,
		  first->role, d0, d1);
}

/* One test per pair and start order (6.: either side may start first). */
#define COMPAT_PAIR(pair)                                                   \
	Test(compat, pair##_host_first, .timeout = 120)                     \
	{                                                                   \
		run_pair(#pair, 0, NULL);                                   \
	}                                                                   \
	Test(compat, pair##_card_first, .timeout = 120)                     \
	{                                                                   \
		run_pair(#pair, 1, NULL);                                   \
	}

/* 1. errno left alone by every successful call, blocking and non-blocking paths. */
COMPAT_PAIR(errno)
/* 2. producer/consumer rings over a scif_mmap'ed window, 8 MiB each way. */
COMPAT_PAIR(ring)
/* 3. fork after registration: a child that exits, one with its own connection. */
COMPAT_PAIR(fork)
/* 4. fences between processes: marks, waits, local and remote signals. */
COMPAT_PAIR(fence)
/* 5. four connections in one poll loop. */
COMPAT_PAIR(multi)
/* 7. a SYNC write after an asynchronous one must land after it. */
COMPAT_PAIR(mixsync)
/* 8. scif_register right after scif_connect / scif_accept, 200 connections. */
COMPAT_PAIR(regrace)
