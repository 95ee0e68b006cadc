/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * common.h - helpers shared by the Criterion tests: unique ports (tests run in parallel),
 * in-process connected pairs, spawning the card-side peer program on node 1.
 */
#ifndef SCIF_TESTS_COMMON_H
#define SCIF_TESTS_COMMON_H

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <scif.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

/* Expect a call to fail with -1 and this errno. */
#define expect_errno(call, err)                                                        \
	do {                                                                           \
		errno = 0;                                                             \
		long _r = (long)(call);                                                \
		cr_expect_eq(_r, -1, "%s returned %ld, expected -1", #call, _r);       \
		cr_expect_eq(errno, (err), "%s: errno %d (%s), expected %d (%s)", #call, \
			     errno, strerror(errno), (err), strerror(err));              \
	} while (0)

/*
 * A port no other test process is likely to use at the same time: Criterion runs tests in
 * parallel processes, forked back to back, so consecutive ports (ports 2000..61999) from a
 * start that a multiplicative hash of the pid scatters (a start of pid * 16 made a test
 * taking more than 16 ports walk into the next process's). test_pair still retries.
 */
static inline uint16_t test_port(void)
{
	static unsigned int next;
	unsigned int base = (unsigned int)(((uint64_t)(unsigned)getpid() * 2654435761u) % 60000u);

	return (uint16_t)(2000 + (base + next++) % 60000u);
}

static inline uint64_t test_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

struct test_acceptor {
	scif_epd_t lep;
	scif_epd_t ep;
	struct scif_portID peer;
	int ret;
};

static inline void *test_accept_thread(void *arg)
{
	struct test_acceptor *a = arg;

	a->ret = scif_accept(a->lep, &a->peer, &a->ep, SCIF_ACCEPT_SYNC);
	return NULL;
}

/*
 * A connected pair in this process: *a is the connector, *b the accepted endpoint; *lep the
 * listener (still open) if lep is not NULL, else it is closed.
 */
static inline void test_pair(scif_epd_t *a, scif_epd_t *b, scif_epd_t *lep)
{
	struct test_acceptor acc = { .ep = -1 };
	uint16_t self, port = test_port();
	struct scif_portID dst;
	pthread_t th;
	int bound;

	scif_get_nodeIDs(NULL, 0, &self);
	acc.lep = scif_open();
	cr_assert_geq(acc.lep, 0);
	/* Another test process may hold this port for now: any free one will do. */
	for (int tries = 0; (bound = scif_bind(acc.lep, port)) < 0 && errno == EADDRINUSE &&
			    tries < 64; tries++)
		port = test_port();
	cr_assert_eq(bound, port, "scif_bind(%u): %s", port, strerror(errno));
	cr_assert_eq(scif_listen(acc.lep, 8), 0);
	pthread_create(&th, NULL, test_accept_thread, &acc);
	*a = scif_open();
	cr_assert_geq(*a, 0);
	dst.node = self;
	dst.port = port;
	cr_assert_gt(scif_connect(*a, &dst), 0, "connect: %s", strerror(errno));
	pthread_join(th, NULL);
	cr_assert_eq(acc.ret, 0, "accept: %s", strerror(errno));
	*b = acc.ep;
	if (lep)
		*lep = acc.lep;
	else
		scif_close(acc.lep);
}

/* Path of the card-side peer program (tests/mp/scif-peer), from the build environment. */
static inline const char *test_peer_path(void)
{
	const char *p = getenv("SCIF_TEST_PEER");

	return p ? p : "tests/mp/scif-peer";
}

/*
 * The program that starts a peer on its node, or NULL: SCIF_TEST_NODE_EXEC, when set, names
 * a program (tests/ofi/node-exec.sh) that the spawners put in front of a peer's argv; it
 * execs the rest in the network namespace of the node in the peer's SCIF_NODE, so that
 * each node is a host of its own (tests/ofi/check-ofi.sh). Unset, peers start directly.
 */
static inline const char *test_node_exec(void)
{
	const char *p = getenv("SCIF_TEST_NODE_EXEC");

	return p && *p ? p : NULL;
}

/*
 * How long a freshly spawned peer may take to reach its first SCIF call: 5 s, or
 * SCIF_TEST_SPAWN_MS where starting a peer takes longer (check-pcie's guest pass boots a
 * guest for each one).
 */
static inline int test_spawn_ms(void)
{
	const char *v = getenv("SCIF_TEST_SPAWN_MS");
	int ms = v ? atoi(v) : 0;

	return ms > 0 ? ms : 5000;
}

/*
 * A stress test's amount of work: @dflt scaled by SCIF_TEST_SCALE_PCT percent (1 to 10000;
 * 100 when unset or out of range), at least 1. check-pcie's guest pass sets 25:
 * there every peer is a guest booted under TCG (about 5 s each) and every byte crosses an
 * emulated CPU, so a test that kills 24 peers or moves 1 GiB does a quarter of that.
 */
static inline uint64_t test_scaled(uint64_t dflt)
{
	const char *v = getenv("SCIF_TEST_SCALE_PCT");
	long pct = v ? atol(v) : 0;
	uint64_t n;

	if (pct <= 0 || pct > 10000)
		return dflt;
	n = dflt * (uint64_t)pct / 100;
	return n ? n : 1;
}

/*
 * Start @prog with @args (NULL-terminated) as a process of @node (SCIF_NODE=@node), behind
 * test_node_exec() if set, its stdout on @out unless that is -1. Spawned with exec, so
 * Criterion's runner is not forked into.
 */
static inline pid_t test_spawn(int node, const char *prog, char *const args[], int out)
{
	const char *wrap = test_node_exec();
	char nodebuf[32];
	char *argv[17];
	char *envp[256];
	int n = 0, e = 0, max = wrap ? 16 : 15, err;
	posix_spawn_file_actions_t fa;
	pid_t pid;

	if (wrap)
		argv[n++] = (char *)wrap;
	argv[n++] = (char *)prog;
	for (int i = 0; args[i] && n < max; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	snprintf(nodebuf, sizeof(nodebuf), "SCIF_NODE=%d", node);
	envp[e++] = nodebuf;
	for (char **v = environ; *v && e < 255; v++)
		if (strncmp(*v, "SCIF_NODE=", 10))
			envp[e++] = *v;
	envp[e] = NULL;
	posix_spawn_file_actions_init(&fa);
	if (out >= 0)
		posix_spawn_file_actions_adddup2(&fa, out, 1);
	err = posix_spawn(&pid, argv[0], &fa, NULL, argv, envp);
	posix_spawn_file_actions_destroy(&fa);
	cr_assert_eq(err, 0, "spawn %s: %s", prog, strerror(err));
	return pid;
}

/* Start the peer program (tests/mp/scif-peer) as a process of @node: `scif-peer <args...>`. */
static inline pid_t test_spawn_peer(int node, char *const args[])
{
	return test_spawn(node, test_peer_path(), args, -1);
}

/* Wait for a child; returns its exit status, or 128+signal. Fails the test after 60 s. */
static inline int test_wait(pid_t pid)
{
	uint64_t until = test_now_ms() + 60000;
	int st;

	for (;;) {
		pid_t r = waitpid(pid, &st, WNOHANG);

		if (r == pid)
			return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
		if (test_now_ms() > until) {
			kill(pid, SIGKILL);
			waitpid(pid, &st, 0);
			cr_assert_fail("child %d did not finish in 60 s", (int)pid);
		}
		usleep(2000);
	}
}

/*
 * waitpid() with a bound: the child's status in *st, or, after @timeout_ms, the child is
 * killed and the test fails. For children that are expected to end by themselves.
 */
static inline pid_t test_waitpid(pid_t pid, int *st, int timeout_ms)
{
	uint64_t until = test_now_ms() + (uint64_t)timeout_ms;

	for (;;) {
		pid_t r = waitpid(pid, st, WNOHANG);

		if (r != 0)
			return r;
		if (test_now_ms() > until) {
			kill(pid, SIGKILL);
			waitpid(pid, st, 0);
			cr_assert_fail("child %d did not finish in %d ms", (int)pid, timeout_ms);
		}
		usleep(2000);
	}
}

/* Whether the spawned peer @pid has exited (looked at without reaping: test_wait() gets it). */
static inline int test_peer_gone(pid_t pid, siginfo_t *si)
{
	memset(si, 0, sizeof(*si));
	return waitid(P_PID, (id_t)pid, si, WEXITED | WNOHANG | WNOWAIT) == 0 && si->si_pid == pid;
}

/* Fail the test, with the peer's exit status or signal, if the spawned peer @pid is gone. */
static inline void test_assert_peer_alive(pid_t pid, const char *when)
{
	siginfo_t si;

	if (!test_peer_gone(pid, &si))
		return;
	if (si.si_code == CLD_EXITED)
		cr_assert_fail("peer %d exited with status %d %s", (int)pid, si.si_status, when);
	cr_assert_fail("peer %d killed by signal %d %s", (int)pid, si.si_status, when);
}

/*
 * Accept a connection on the listener @lep from the spawned peer @pid, watching the peer
 * while waiting (a SYNC accept would wait forever for a peer that died first). If the peer
 * exits without a request left pending, the test fails with its status; after @timeout_ms
 * the peer is killed and the test fails. The peer stays unreaped (test_wait collects it).
 * Returns 0, with the accepted endpoint in *ep and its address in *peer.
 */
static inline int test_accept_or_peer_death(scif_epd_t lep, struct scif_portID *peer,
					    scif_epd_t *ep, pid_t pid, int timeout_ms)
{
	uint64_t until = test_now_ms() + (uint64_t)timeout_ms;
	int dead_polls = 0;

	for (;;) {
		struct scif_pollepd p = { .epd = lep, .events = SCIF_POLLIN };
		siginfo_t si;

		if (scif_accept(lep, peer, ep, 0) == 0)
			return 0;
		cr_assert_eq(errno, EAGAIN, "scif_accept: %s", strerror(errno));
		/* Gone, and no request of its left pending (it had 5 polls to show). */
		if (test_peer_gone(pid, &si) && dead_polls++ >= 5)
			test_assert_peer_alive(pid, "before connecting");
		if (test_now_ms() > until) {
			kill(pid, SIGKILL);
			cr_assert_fail("no connection from peer %d in %d ms (killed it)", (int)pid,
				       timeout_ms);
		}
		scif_poll(&p, 1, 20);
	}
}

/*
 * Wait until endpoint @ep reports one of @events, watching the spawned peer @pid: the test
 * fails with the peer's status if the endpoint hangs up or the peer exits first, and after
 * @timeout_ms (the peer killed). Returns the endpoint's revents.
 */
static inline short test_poll_or_peer_death(scif_epd_t ep, short events, pid_t pid,
					    int timeout_ms)
{
	uint64_t until = test_now_ms() + (uint64_t)timeout_ms;

	for (;;) {
		struct scif_pollepd p = { .epd = ep, .events = events };

		cr_assert_geq(scif_poll(&p, 1, 20), 0, "scif_poll: %s", strerror(errno));
		if (p.revents & events)
			return p.revents;
		if (p.revents & (SCIF_POLLHUP | SCIF_POLLERR)) {
			usleep(100000); /* the peer's exit, if that is why, to be seen */
			test_assert_peer_alive(pid, "while this side waited");
			cr_assert_fail("endpoint hung up (revents %#x), peer %d still running",
				       p.revents, (int)pid);
		}
		test_assert_peer_alive(pid, "while this side waited");
		if (test_now_ms() > until) {
			kill(pid, SIGKILL);
			cr_assert_fail("no event %#x in %d ms (peer %d killed)", events, timeout_ms,
				       (int)pid);
		}
	}
}

/*
 * A watchdog for one blocking call that waits on the spawned peer @pid (a blocking send or
 * receive, which no timeout bounds): test_watch_start() arms it, test_watch_end() disarms it
 * once the call returned. If the call is still blocked after @timeout_ms, the watchdog kills
 * the peer (the call then fails with ECONNRESET) and test_watch_end() fails the test; if the
 * call failed, test_watch_end() fails it with the peer's status when the peer is gone.
 */
struct test_watch {
	pid_t pid;
	int timeout_ms;
	int done;  /* the call returned (the caller, release) */
	int fired; /* the peer was killed (the watchdog, before done is seen) */
	pthread_t th;
};

static inline void *test_watch_run(void *arg)
{
	struct test_watch *w = arg;
	uint64_t until = test_now_ms() + (uint64_t)w->timeout_ms;

	while (!__atomic_load_n(&w->done, __ATOMIC_ACQUIRE)) {
		if (test_now_ms() > until) {
			__atomic_store_n(&w->fired, 1, __ATOMIC_RELEASE);
			kill(w->pid, SIGKILL);
			break;
		}
		usleep(2000);
	}
	return NULL;
}

static inline void test_watch_start(struct test_watch *w, pid_t pid, int timeout_ms)
{
	*w = (struct test_watch){ .pid = pid, .timeout_ms = timeout_ms };
	cr_assert_eq(pthread_create(&w->th, NULL, test_watch_run, w), 0);
}

/* Disarm @w after the call named @what returned @ok (nonzero: it did what it should). */
static inline void test_watch_end(struct test_watch *w, int ok, const char *what)
{
	__atomic_store_n(&w->done, 1, __ATOMIC_RELEASE);
	pthread_join(w->th, NULL);
	if (__atomic_load_n(&w->fired, __ATOMIC_ACQUIRE))
		cr_assert_fail("%s still blocked after %d ms (peer %d killed)", what,
			       w->timeout_ms, (int)w->pid);
	if (!ok) {
		char when[128];

		usleep(100000); /* the peer's exit, if that is why, to be seen */
		snprintf(when, sizeof(when), "while %s waited", what);
		test_assert_peer_alive(w->pid, when);
	}
}

/* Connect to (node, port), retrying while the listener or its node is not up yet. */
static inline int test_connect_retry(scif_epd_t ep, uint16_t node, uint16_t port)
{
	struct scif_portID dst = { .node = node, .port = port };
	uint64_t until = test_now_ms() + (uint64_t)test_spawn_ms();
	int r;

	/* ENODEV: the peer's node is not up yet (a card still booting, check-pcie's guests). */
	while ((r = scif_connect(ep, &dst)) < 0 && (errno == ECONNREFUSED || errno == ENODEV) &&
	       test_now_ms() < until)
		usleep(2000);
	return r;
}

/* A listening endpoint on port with backlog. */
static inline scif_epd_t test_listener(uint16_t port, int backlog)
{
	scif_epd_t l = scif_open();

	cr_assert_geq(l, 0);
	cr_assert_eq(scif_bind(l, port), port);
	cr_assert_eq(scif_listen(l, backlog), 0);
	return l;
}

/* A non-blocking connect to port of this node, left in progress (EINPROGRESS). */
static inline scif_epd_t test_request(uint16_t port)
{
	struct scif_portID dst = { .port = port };
	scif_epd_t e = scif_open();

	scif_get_nodeIDs(NULL, 0, &dst.node);
	cr_assert_geq(e, 0);
	cr_assert_eq(fcntl(scif_get_fd(e), F_SETFL, O_NONBLOCK), 0);
	errno = 0;
	cr_assert_eq(scif_connect(e, &dst), -1);
	cr_assert_eq(errno, EINPROGRESS, "non-blocking connect: %s", strerror(errno));
	return e;
}

/* Whether a connection request is pending on listener l within ms. */
static inline int test_wait_request(scif_epd_t l, int ms)
{
	struct scif_pollepd p = { .epd = l, .events = POLLIN };

	return scif_poll(&p, 1, ms) == 1 && (p.revents & POLLIN);
}

static inline void test_on_signal(int sig)
{
	(void)sig;
}

/* SIGUSR1 with a handler and no SA_RESTART, so it interrupts blocking calls. */
static inline void test_install_sigusr1(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = test_on_signal;
	sigemptyset(&sa.sa_mask);
	cr_assert_eq(sigaction(SIGUSR1, &sa, NULL), 0);
}

/* @v in decimal, in @buf (an argument for the peer program). */
static inline char *test_num(char *buf, unsigned long long v)
{
	sprintf(buf, "%llu", v);
	return buf;
}

/* A simple checksum for data tests (FNV-1a, 64-bit). */
static inline uint64_t test_fnv(uint64_t h, const void *p, size_t n)
{
	const uint8_t *b = p;

	for (size_t i = 0; i < n; i++) {
		h ^= b[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}
#define TEST_FNV_INIT 0xcbf29ce484222325ULL

#endif /* SCIF_TESTS_COMMON_H */
