// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * test-mp.c - multi-process tests across node 0 (this process) and node 1 (tests/mp/scif-peer):
 * data integrity under stress, peers killed at random points, hostile peers, and leaks.
 */
#include <dirent.h>
#include <sys/socket.h>

#include "mp/mp.h"

/* Watchdog: a test that hangs fails after this long (its own .timeout wins). */
TestSuite(mp, .timeout = 300);
TestSuite(hostile, .timeout = 300);

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	while ((e = readdir(d)))
		n += e->d_name[0] != '.';
	closedir(d);
	return n - 1; /* the directory stream's own descriptor */
}

/*
 * Names of this user's SCIF domain held by this process: port files it holds locked and
 * listen sockets bound in the domain's directory (the fabric's port and listen table as far
 * as we are concerned; other processes may use the domain too).
 */
static int count_scif_names(void)
{
	unsigned long inodes[4096];
	int ninodes = 0, n = 0;
	char line[512], dir[128], path[320], link[256];
	const char *base = getenv("SCIF_RUN_DIR");
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	FILE *f;

	snprintf(dir, sizeof(dir), "%s/scif-u%u/", base && *base ? base : "/tmp",
		 (unsigned)geteuid());
	while (d && (e = readdir(d)) && ninodes < 4096) {
		ssize_t k;

		snprintf(path, sizeof(path), "/proc/self/fd/%s", e->d_name);
		k = readlink(path, link, sizeof(link) - 1);
		if (k <= 0)
			continue;
		link[k] = 0;
		if (sscanf(link, "socket:[%lu]", &inodes[ninodes]) == 1)
			ninodes++;
		else if (!strncmp(link, dir, strlen(dir)))
			n++; /* a port held */
	}
	if (d)
		closedir(d);
	f = fopen("/proc/net/unix", "re");
	while (f && fgets(line, sizeof(line), f)) {
		unsigned long ino;

		if (!strstr(line, dir) || sscanf(line, "%*s %*s %*s %*s %*s %*s %lu", &ino) != 1)
			continue;
		for (int i = 0; i < ninodes; i++)
			if (inodes[i] == ino) {
				n++;
				break;
			}
	}
	if (f)
		fclose(f);
	return n;
}

/* Accept with a deadline (the peer may die before it connects). */
static int accept_deadline(scif_epd_t lep, scif_epd_t *ep, int ms)
{
	struct scif_portID peer;
	uint64_t until = test_now_ms() + (uint64_t)ms;

	while (test_now_ms() < until) {
		struct scif_pollepd p = { .epd = lep, .events = SCIF_POLLIN };

		if (scif_accept(lep, &peer, ep, 0) == 0)
			return 0;
		scif_poll(&p, 1, 20);
	}
	return -1;
}

Test(mp, echo_between_node0_and_node1)
{
	uint16_t port = test_port();
	char pbuf[16], msg[1000], back[1000];
	char *args[] = { "echo", test_num(pbuf, port), NULL };
	pid_t pid = test_spawn_peer(1, args);
	scif_epd_t ep = scif_open();

	cr_assert_gt(test_connect_retry(ep, 1, port), 0, "connect to node 1: %s", strerror(errno));
	for (int round = 0; round < 100; round++) {
		for (int i = 0; i < (int)sizeof(msg); i++)
			msg[i] = (char)(i * 7 + round);
		cr_assert_eq(scif_send(ep, msg, sizeof(msg), SCIF_SEND_BLOCK), (int)sizeof(msg));
		cr_assert_eq(scif_recv(ep, back, sizeof(back), SCIF_RECV_BLOCK), (int)sizeof(back));
		cr_assert_arr_eq(msg, back, sizeof(msg));
	}
	scif_close(ep);
	cr_expect_eq(test_wait(pid), 0);
}

/* Busy for @ns nanoseconds (a pause shorter than a sleep can be). */
static void busy_ns(uint64_t ns)
{
	struct timespec t0, t;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	do
		clock_gettime(CLOCK_MONOTONIC, &t);
	while ((uint64_t)(t.tv_sec - t0.tv_sec) * 1000000000u + (uint64_t)t.tv_nsec -
		       (uint64_t)t0.tv_nsec < ns);
}

/*
 * A ping-pong whose pauses put each receiver sometimes inside its spin (no doorbell needed:
 * on the local fabric the sender skips it, on the ofi fabric the receiving process leaves
 * it out, fabric.h bell_quiet) and sometimes asleep (a doorbell must wake it), and often
 * right at the edge between the two, where a lost wake-up hides. The library's own second
 * look is made 30 s long, so a lost wake-up stalls a round for 30 s and fails the test
 * (a round of 10 s is far beyond any machine's speed: this is no speed bound).
 */
Test(mp, pingpong_at_the_edge_of_the_spin_loses_no_wakeup, .timeout = 180)
{
	uint16_t port = test_port();
	char pbuf[16];
	char *args[] = { "echo", test_num(pbuf, port), NULL };
	uint64_t rounds = test_scaled(4000), rng = 0x9e3779b97f4a7c15ULL, r, took = 0;
	struct test_watch w;
	scif_epd_t ep;
	int ok = 1, same = 1;
	pid_t pid;

	setenv("SCIF_WAIT_RECHECK_MS", "30000", 1); /* for the peer, and for us (first call) */
	pid = test_spawn_peer(1, args);
	ep = scif_open();
	cr_assert_gt(test_connect_retry(ep, 1, port), 0, "connect to node 1: %s", strerror(errno));
	/* The blocking calls wait on the peer: a watchdog kills it if they stay blocked. */
	test_watch_start(&w, pid, 150000);
	for (r = 0; ok && same && took < 10000 && r < rounds; r++) {
		uint64_t msg[2] = { r, ~r }, back[2] = { 0, 0 }, t0 = test_now_ms(), pause;

		rng ^= rng << 13;
		rng ^= rng >> 7;
		rng ^= rng << 17;
		/* A third none, a third 5-45 us busy (about the spin), a third 50-250 us asleep. */
		pause = rng % 3;
		if (pause == 1)
			busy_ns(5000 + (rng >> 8) % 40000);
		else if (pause == 2)
			usleep((useconds_t)(50 + (rng >> 8) % 200));
		ok = scif_send(ep, msg, sizeof(msg), SCIF_SEND_BLOCK) == (int)sizeof(msg) &&
		     scif_recv(ep, back, sizeof(back), SCIF_RECV_BLOCK) == (int)sizeof(back);
		same = !ok || (back[0] == r && back[1] == ~r);
		took = test_now_ms() - t0;
	}
	test_watch_end(&w, ok, "the ping-pong");
	cr_assert(ok, "round %llu: %s", (unsigned long long)r, strerror(errno));
	cr_assert(same, "round %llu: the echo came back different", (unsigned long long)r);
	cr_assert_lt(took, 10000, "round %llu took %llu ms: a wake-up was lost (the second look "
		     "came 30 s later)", (unsigned long long)r, (unsigned long long)took);
	scif_close(ep);
	cr_expect_eq(test_wait(pid), 0, "the echo peer failed");
}

/*
 * Room a short read frees reaches a sender whose ring is full, through scif_poll and through a
 * blocking scif_send, although a fabric may carry the read index late (the ofi fabric holds it
 * until it has something else to send the sender: fabric.h SCIF_FLUSH_LAZY). The library's
 * own periodic second look is made 30 s long, so a wake-up lost in that path fails the test
 * instead of costing a second. The peer reads one byte 300 ms after the first bytes come, and
 * again 300 ms later: by then this side has filled the ring and waits.
 */
Test(mp, short_read_gives_room_to_a_full_sender, .timeout = 120)
{
	uint16_t port = test_port();
	char a1[16];
	char *args[] = { "sip", "0", test_num(a1, port), NULL };
	static char buf[65536];
	struct scif_portID peer;
	struct test_watch w;
	scif_epd_t lep, ep;
	pid_t pid;
	long total = 0;
	short rev;
	int n;

	setenv("SCIF_WAIT_RECHECK_MS", "30000", 1);
	lep = test_listener(port, 1);
	pid = test_spawn_peer(1, args);
	test_accept_or_peer_death(lep, &peer, &ep, pid, 30000);
	while ((n = scif_send(ep, buf, (int)sizeof(buf), 0)) > 0)
		total += n;
	cr_assert_eq(n, 0, "filling the ring: %s", strerror(errno));
	cr_assert_gt(total, 0);
	/* No room after the peer's read within 20 s fails the test. */
	rev = test_poll_or_peer_death(ep, SCIF_POLLOUT, pid, 20000);
	cr_assert(rev & SCIF_POLLOUT, "revents %#x", rev);
	cr_assert_eq(scif_send(ep, buf, 1, 0), 1);
	/* Full again, until the peer's second read. */
	test_watch_start(&w, pid, 20000);
	n = scif_send(ep, buf, 1, SCIF_SEND_BLOCK);
	test_watch_end(&w, n == 1, "the blocking send");
	cr_assert_eq(n, 1, "%s", strerror(errno));
	scif_close(ep);
	scif_close(lep);
	cr_expect_eq(test_wait(pid), 0);
}

/*
 * A read index held for a connection whose other end is closed must not cost another
 * connection its message (the ofi fabric carries a held index with the next message to the
 * same process, and the closed end's region is gone by then). Per round the peer connects
 * twice; this side sends a byte on the first and closes it; 50 ms later the peer reads that
 * byte, then sends 64 bytes on the second, which must arrive whole and right. (When such a
 * message was dropped, each round waited for the library's periodic second look: 20 s.)
 */
Test(mp, late_read_on_a_closed_connection_spares_the_next_message, .timeout = 120)
{
	enum { ROUNDS = 20 };
	uint16_t port = test_port();
	char a1[16], a2[16];
	char *args[] = { "late-read", "0", test_num(a1, port), test_num(a2, ROUNDS), NULL };
	struct scif_portID peer;
	scif_epd_t lep, c1, c2;
	pid_t pid;

	/* A lost message must fail the test, not be found by the library's second look. */
	setenv("SCIF_WAIT_RECHECK_MS", "30000", 1);
	lep = test_listener(port, 2);
	pid = test_spawn_peer(1, args);
	for (int r = 0; r < ROUNDS; r++) {
		char want[64], got[64], c = 'x';
		struct test_watch w;
		int n;

		test_accept_or_peer_death(lep, &peer, &c1, pid, 30000);
		test_accept_or_peer_death(lep, &peer, &c2, pid, 30000);
		cr_assert_eq(scif_send(c1, &c, 1, SCIF_SEND_BLOCK), 1);
		cr_assert_eq(scif_close(c1), 0);
		/* Nothing on the second within 10 s fails the test. */
		test_poll_or_peer_death(c2, SCIF_POLLIN, pid, 10000);
		test_watch_start(&w, pid, 10000);
		n = scif_recv(c2, got, sizeof(got), SCIF_RECV_BLOCK);
		test_watch_end(&w, n == (int)sizeof(got), "the receive on the second");
		cr_assert_eq(n, (int)sizeof(got), "round %d: %s", r, strerror(errno));
		memset(want, 'a' + r % 26, sizeof(want));
		cr_assert_arr_eq(got, want, sizeof(got), "round %d", r);
		cr_assert_eq(scif_send(c2, &c, 1, SCIF_SEND_BLOCK), 1);
		scif_close(c2);
	}
	scif_close(lep);
	cr_expect_eq(test_wait(pid), 0);
}

/*
 * At least 1 GiB in random-sized pieces, both directions at once, 16 connections (the amount
 * scaled by test_scaled(): a quarter in check-pcie's guest pass).
 */
Test(mp, stress_16_connections_1GiB_both_directions, .timeout = 600)
{
	enum { NCONN = 16 };
	/* 32 MiB each way on each connection, unscaled. */
	const uint64_t per_dir = test_scaled(1ULL << 30) / (2 * NCONN);
	const uint64_t seed = (uint64_t)time(NULL);
	struct stream_conn c[NCONN];
	uint16_t port = test_port();
	char a1[16], a2[16], a3[24], a4[24];
	char *args[] = { "stream", "0", test_num(a1, port), test_num(a2, NCONN), test_num(a3, per_dir),
			 test_num(a4, seed), NULL };
	scif_epd_t lep;
	pid_t pid;

	lep = test_listener(port, NCONN);
	pid = test_spawn_peer(1, args);
	for (int i = 0; i < NCONN; i++) {
		struct scif_portID peer;

		memset(&c[i], 0, sizeof(c[i]));
		test_accept_or_peer_death(lep, &peer, &c[i].ep, pid, 30000);
		cr_assert_eq(peer.node, 1);
	}
	/* The connector connected in order; its i-th stream seeds are (i, 1) and (i, 0). */
	for (int i = 0; i < NCONN; i++) {
		c[i].tx_seed = stream_seed(seed, (uint64_t)i, 0);
		c[i].rx_seed = stream_seed(seed, (uint64_t)i, 1);
		c[i].bytes = per_dir;
		stream_start(&c[i]);
	}
	for (int i = 0; i < NCONN; i++) {
		uint8_t *buf = malloc(1 << 20);
		uint64_t sum = 0xcbf29ce484222325ULL;

		cr_expect_eq(stream_join(&c[i]), 0, "connection %d failed (errno %d)", i,
			     c[i].err_errno);
		cr_expect_eq(c[i].received, per_dir);
		/* Checksum of the whole expected stream against what arrived. */
		for (uint64_t pos = 0; pos < per_dir; pos += 1 << 20) {
			size_t n = per_dir - pos < (1 << 20) ? (size_t)(per_dir - pos) : 1 << 20;

			stream_fill(c[i].rx_seed, pos, buf, n);
			sum = stream_fnv(sum, buf, n);
		}
		cr_expect_eq(c[i].rx_sum, sum, "connection %d checksum mismatch", i);
		free(buf);
	}
	cr_expect_eq(test_wait(pid), 0, "peer saw bad data");
	for (int i = 0; i < NCONN; i++)
		scif_close(c[i].ep);
	scif_close(lep);
}

/*
 * SIGKILL the peer at random moments of a bidirectional transfer (and of its handshake): 24
 * peers, scaled by test_scaled().
 */
Test(mp, sigkill_peer_at_random_points, .timeout = 300)
{
	const int rounds = (int)test_scaled(24);
	uint16_t port = test_port();
	scif_epd_t lep = scif_open();
	int fds_before;

	cr_assert_eq(scif_bind(lep, port), port);
	cr_assert_eq(scif_listen(lep, 4), 0);
	srand((unsigned)time(NULL));
	fds_before = count_fds();
	for (int round = 0; round < rounds; round++) {
		char a1[16], a2[24];
		uint64_t seed = (uint64_t)rand();
		char *args[] = { "flood", "0", test_num(a1, port), test_num(a2, seed), NULL };
		struct stream_conn c = { 0 };
		pid_t pid = test_spawn_peer(1, args);
		int delay_us = rand() % 30000;
		struct timespec ts;

		if (round % 4 == 0) { /* sometimes before or during the handshake */
			usleep((useconds_t)(rand() % 3000));
			kill(pid, SIGKILL);
			test_wait(pid);
			if (accept_deadline(lep, &c.ep, 200) == 0) {
				char b;

				/* Whatever got through, the connection reports the loss. */
				int r = scif_recv(c.ep, &b, 1, SCIF_RECV_BLOCK);
				cr_expect(r == -1 && errno == ECONNRESET, "round %d: %d/%d", round, r,
					  errno);
				scif_close(c.ep);
			}
			continue;
		}
		cr_assert_eq(accept_deadline(lep, &c.ep, test_spawn_ms()), 0, "round %d: accept",
			     round);
		c.tx_seed = stream_seed(seed, 0, 0);
		c.rx_seed = stream_seed(seed, 0, 1);
		c.bytes = UINT64_MAX;
		stream_start(&c);
		usleep((useconds_t)delay_us);
		kill(pid, SIGKILL);
		cr_expect_eq(test_wait(pid), 128 + SIGKILL);
		/* Both blocked threads must come back promptly with the connection reset. */
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += 5;
		cr_assert_eq(pthread_timedjoin_np(c.tx_th, NULL, &ts), 0, "round %d: sender hung",
			     round);
		cr_assert_eq(pthread_timedjoin_np(c.rx_th, NULL, &ts), 0,
			     "round %d: receiver hung", round);
		cr_expect_neq(c.error, 3, "round %d: corrupted data before the kill", round);
		cr_expect_eq(c.err_errno, ECONNRESET, "round %d: errno %d", round, c.err_errno);
		cr_expect_eq(scif_send(c.ep, a1, 1, 0), -1);
		cr_expect_eq(errno, ECONNRESET);
		scif_close(c.ep);
	}
	/*
	 * A fabric may close what it held for a dead peer asynchronously (the ofi fabric's
	 * provider closes its connection to a killed process when next progressed, and its
	 * progress thread may stand aside for up to a millisecond): give it the time the
	 * descriptor-leak test below gives the acceptor. A leak stays and still fails.
	 */
	for (int i = 0; i < 200 && count_fds() != fds_before; i++)
		usleep(10000);
	cr_expect_eq(count_fds(), fds_before, "descriptors leaked across %d killed peers",
		     rounds);
	scif_close(lep);
}

struct blocked {
	scif_epd_t ep;
	int ret, err;
};

static void *blocked_recv(void *arg)
{
	struct blocked *b = arg;
	char buf[16];

	b->ret = scif_recv(b->ep, buf, sizeof(buf), SCIF_RECV_BLOCK);
	b->err = errno;
	return NULL;
}

Test(mp, blocked_recv_returns_econnreset_when_peer_killed)
{
	uint16_t port = test_port();
	char a1[16];
	char *args[] = { "connect-hold", "0", test_num(a1, port), NULL };
	scif_epd_t lep, ep;
	struct scif_portID peer;
	struct blocked b = { 0 };
	struct timespec ts;
	pthread_t th;
	pid_t pid;

	lep = test_listener(port, 1);
	pid = test_spawn_peer(1, args);
	test_accept_or_peer_death(lep, &peer, &ep, pid, 30000);
	b.ep = ep;
	pthread_create(&th, NULL, blocked_recv, &b);
	usleep(100000);
	kill(pid, SIGKILL);
	test_wait(pid);
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += 2;
	cr_assert_eq(pthread_timedjoin_np(th, NULL, &ts), 0, "recv still blocked 2 s after kill");
	cr_expect_eq(b.ret, -1);
	cr_expect_eq(b.err, ECONNRESET);
	/* poll reports the hang-up, plain poll() wakes too. */
	struct scif_pollepd p = { .epd = ep, .events = SCIF_POLLIN };
	cr_expect_eq(scif_poll(&p, 1, 0), 1);
	cr_expect(p.revents & SCIF_POLLHUP);
	struct pollfd q = { .fd = ep, .events = POLLIN };
	cr_expect_eq(poll(&q, 1, 1000), 1, "plain poll() must wake on a dead peer");
	scif_close(ep);
	scif_close(lep);
}

Test(mp, killed_listener_leaves_no_port_behind)
{
	uint16_t port = test_port();
	char a1[16];
	char *args[] = { "echo", test_num(a1, port), NULL };

	for (int round = 0; round < 3; round++) {
		pid_t pid = test_spawn_peer(1, args);
		scif_epd_t ep = scif_open();

		/* The port on node 1 is free again each time the previous holder was killed. */
		cr_assert_gt(test_connect_retry(ep, 1, port), 0, "round %d", round);
		kill(pid, SIGKILL);
		test_wait(pid);
		char c;
		expect_errno(scif_recv(ep, &c, 1, SCIF_RECV_BLOCK), ECONNRESET);
		scif_close(ep);
	}
}

static void *churn_acceptor(void *arg)
{
	scif_epd_t lep = *(scif_epd_t *)arg;
	struct scif_portID peer;
	scif_epd_t ep;

	while (scif_accept(lep, &peer, &ep, SCIF_ACCEPT_SYNC) == 0)
		scif_close(ep);
	return NULL;
}

/*
 * open/connect/close 10,000 times (scaled by test_scaled()): descriptors and the port table
 * end as they began.
 */
Test(mp, no_descriptor_or_port_leak_over_10000_connections, .timeout = 600)
{
	const int n = (int)test_scaled(10000);
	uint16_t port = test_port(), self;
	scif_epd_t lep = scif_open();
	struct scif_portID dst;
	int fds0, names0;
	pthread_t th;

	scif_get_nodeIDs(NULL, 0, &self);
	dst.node = self;
	dst.port = port;
	cr_assert_eq(scif_bind(lep, port), port);
	cr_assert_eq(scif_listen(lep, 16), 0);
	pthread_create(&th, NULL, churn_acceptor, &lep);
	/* Warm up once so lazily created library state is counted in the baseline. */
	scif_epd_t w = scif_open();
	cr_assert_gt(scif_connect(w, &dst), 0);
	scif_close(w);
	usleep(20000);
	fds0 = count_fds();
	names0 = count_scif_names();
	for (int i = 0; i < n; i++) {
		scif_epd_t ep = scif_open();

		cr_assert_geq(ep, 0, "open %d: %s", i, strerror(errno));
		cr_assert_gt(scif_connect(ep, &dst), 0, "connect %d: %s", i, strerror(errno));
		cr_assert_eq(scif_close(ep), 0);
	}
	/* Let the acceptor close its side of the last connection. */
	for (int i = 0; i < 200 && (count_fds() != fds0 || count_scif_names() != names0); i++)
		usleep(10000);
	cr_expect_eq(count_fds(), fds0, "descriptor count changed");
	cr_expect_eq(count_scif_names(), names0, "port/listen table changed");
	scif_close(lep); /* the acceptor thread's accept returns EINTR */
	pthread_join(th, NULL);
}

/* 1000 connections (scaled by test_scaled()) from a peer process, each echoing a byte. */
Test(mp, churn_1000_connections_from_another_process, .timeout = 300)
{
	const int n = (int)test_scaled(1000);
	uint16_t port = test_port();
	char a1[16], a2[16];
	char *args[] = { "churn", "0", test_num(a1, port), test_num(a2, (uint64_t)n), NULL };
	scif_epd_t lep;
	int names0 = count_scif_names();
	pid_t pid;

	lep = test_listener(port, 16);
	pid = test_spawn_peer(1, args);
	for (int i = 0; i < n; i++) {
		struct scif_portID peer;
		scif_epd_t ep;
		char c;

		test_accept_or_peer_death(lep, &peer, &ep, pid, 30000);
		cr_assert_eq(scif_recv(ep, &c, 1, SCIF_RECV_BLOCK), 1);
		cr_assert_eq(scif_send(ep, &c, 1, SCIF_SEND_BLOCK), 1);
		scif_close(ep);
	}
	cr_expect_eq(test_wait(pid), 0);
	scif_close(lep);
	cr_expect_leq(count_scif_names(), names0, "names left behind");
}

/* A lying peer gets a clean refusal or reset; the listener keeps working. */
static void hostile_case(const char *kind, int connects)
{
	uint16_t port = test_port();
	char a1[16];
	char *args[] = { "hostile", "0", test_num(a1, port), (char *)kind, NULL };
	scif_epd_t lep, ep = -1;
	struct scif_portID peer;
	pid_t pid;

	lep = test_listener(port, 4);
	pid = test_spawn_peer(1, args);
	if (!connects) {
		/* The handshake fails: a non-SYNC accept says EAGAIN, nothing else happens. */
		uint64_t until = test_now_ms() + 5000;
		int r;

		while ((r = scif_accept(lep, &peer, &ep, 0)) < 0 && errno == EAGAIN &&
		       test_now_ms() < until) {
			struct scif_pollepd p = { .epd = lep, .events = SCIF_POLLIN };

			if (scif_poll(&p, 1, 50) == 1 && scif_accept(lep, &peer, &ep, 0) < 0)
				break;
		}
		cr_expect_eq(r, -1, "%s: a lying requester was accepted", kind);
	} else {
		char buf[64];
		int r;

		test_accept_or_peer_death(lep, &peer, &ep, pid, 30000);
		if (!strcmp(kind, "widx"))
			r = scif_recv(ep, buf, sizeof(buf), SCIF_RECV_BLOCK);
		else /* the lie shows when the sender next needs room (after one ring): it resets */
			for (uint64_t until = test_now_ms() + 5000;
			     (r = scif_send(ep, buf, sizeof(buf), 0)) >= 0 && test_now_ms() < until;)
				if (r == 0) /* full: the liar may not have lied yet */
					usleep(1000);
		cr_expect_eq(r, -1, "%s: bad index accepted", kind);
		cr_expect_eq(errno, ECONNRESET, "%s: errno %d", kind, errno);
		scif_close(ep);
	}
	test_wait(pid);
	mp_expect_listener_serves(lep, port);
	scif_close(lep);
}

Test(hostile, garbage_control_message) { hostile_case("garbage", 0); }
Test(hostile, truncated_control_message) { hostile_case("short", 0); }
Test(hostile, request_without_handles) { hostile_case("nofds", 0); }
Test(hostile, region_that_could_shrink) { hostile_case("unsealed", 0); }
Test(hostile, impossible_ring_size) { hostile_case("badsize", 0); }
Test(hostile, write_index_beyond_the_ring) { hostile_case("widx", 1); }
Test(hostile, read_index_beyond_what_was_sent) { hostile_case("ridx", 1); }
