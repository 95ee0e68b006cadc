// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * test-bulk.c - single-copy transfers of large messages (libscif/bulk.c) across processes:
 * the data arrives intact whichever way it travels (direct copies split between both sides,
 * declined offers finished through the ring, an endpoint used by a fork child, offers taken
 * in pieces and without blocking, readiness while an offer waits), and a peer lying about
 * offers or claims costs the victim its connection and nothing else.
 */
#include <poll.h>

#include "mp/mp.h"

/* Watchdog: a test that hangs fails after this long (its own .timeout wins). */
TestSuite(bulk, .timeout = 300);
TestSuite(hostile_bulk, .timeout = 300);

static uint8_t *buf_alloc(size_t len, int thp)
{
	uint8_t *p = stream_alloc(len, thp);

	cr_assert_not_null(p);
	return p;
}

/* Lengths of a few claims, odd ones, and long ones. */
static const size_t echo_sizes[] = { (1u << 20) - 1, 1u << 20, (1u << 20) + 1, (4u << 20) + 3,
				     16u << 20, (40u << 20) + 4095 };

/*
 * Send each length to the echo peer and compare what comes back. @thp: both sides' buffers
 * on huge pages (direct copies pay, so offers are taken and split); without, the receiver
 * declines them after its probe and the rest goes through the ring. @use_fork: the peer's
 * fork child echoes (it may not be copied into directly, only copy itself). @probe: the
 * receiver judges the speed of direct copies (0: it takes every offer). @nap_us: pause this
 * long before each round trip, so that the peer is asleep in scif_recv when the offer comes.
 */
static void echo_sizes_case(int thp, int use_fork, int probe, const size_t *sizes, size_t nsizes,
			    int rounds, unsigned int nap_us)
{
	uint16_t port = test_port();
	char a1[16], a2[4], a3[4];
	char *args[] = { "bulk-echo", test_num(a1, port), test_num(a2, (unsigned)thp),
			 test_num(a3, (unsigned)use_fork), NULL };
	size_t max;

	/* Without the speed probe every offer is taken and split, however loaded the machine. */
	setenv("SCIF_CMA_PROBE", probe ? "1" : "0", 1);
	/* Offers from 64 KiB (the default is 512 KiB), here and in the peer: short claims too. */
	setenv("SCIF_CMA_MIN", "65536", 1);
	max = 0;
	for (size_t i = 0; i < nsizes; i++)
		max = sizes[i] > max ? sizes[i] : max;
	uint8_t *out = buf_alloc(max, thp), *in = buf_alloc(max, thp);
	pid_t pid = test_spawn_peer(1, args);
	scif_epd_t ep = scif_open();
	uint64_t zero = 0;

	cr_assert_gt(test_connect_retry(ep, 1, port), 0, "connect: %s", strerror(errno));
	for (int round = 0; round < rounds; round++) {
		for (size_t i = 0; i < nsizes; i++) {
			uint64_t len = sizes[i], t0;

			stream_fill(stream_seed(round, i, (uint64_t)thp), 0, out, len);
			cr_assert_eq(scif_send(ep, &len, sizeof(len), SCIF_SEND_BLOCK), 8);
			if (nap_us)
				usleep(nap_us);
			t0 = test_now_ms();
			cr_assert_eq(scif_send(ep, out, (int)len, SCIF_SEND_BLOCK), (int)len,
				     "send %llu: %s", (unsigned long long)len, strerror(errno));
			cr_assert_eq(scif_recv(ep, in, (int)len, SCIF_RECV_BLOCK), (int)len,
				     "recv %llu: %s", (unsigned long long)len, strerror(errno));
			/* Not a speed bound: a lost wake-up costs SCIF_WAIT_RECHECK_MS (30 s). */
			cr_assert_lt(test_now_ms() - t0, 20000, "the echo of %llu bytes took %llu ms: "
				     "a sleeping side was not woken (round %d)",
				     (unsigned long long)len,
				     (unsigned long long)(test_now_ms() - t0), round);
			cr_assert(!memcmp(in, out, len), "echo of %llu bytes differs (round %d)",
				  (unsigned long long)len, round);
			memset(in, 0xee, len);
		}
	}
	cr_assert_eq(scif_send(ep, &zero, sizeof(zero), SCIF_SEND_BLOCK), 8);
	cr_expect_eq(test_wait(pid), 0, "the echo peer failed");
	scif_close(ep);
	free(out);
	free(in);
}

static void echo_case(int thp, int use_fork, int probe)
{
	echo_sizes_case(thp, use_fork, probe, echo_sizes, sizeof(echo_sizes) / sizeof(echo_sizes[0]),
			3, 0);
}

/*
 * Short claims, from SCIF_CMA_MIN (64 KiB here; 512 KiB by default) on, with many rounds:
 * claims split in two halves between both sides, every byte checked.
 */
static const size_t band_sizes[] = { 64u << 10, (64u << 10) + 1, (100u << 10) + 3,
				     (128u << 10) - 1, (96u << 10) + 4095 };

Test(bulk, echo_middle_sizes_either_path, .timeout = 120)
{
	echo_sizes_case(0, 0, 0, band_sizes, sizeof(band_sizes) / sizeof(band_sizes[0]), 120, 0);
}

/*
 * The receiver asleep in scif_recv when each offer comes (a pause first, far longer than it
 * spins), with claims short enough that it often copies the whole claim before the sender
 * looks at it: the sender's next offer must still wake it. It did not (the old claim was
 * taken for an answer to the new offer), and every such round trip took the 1 s the sleeper
 * waits before looking again by itself; here that is 30 s (SCIF_WAIT_RECHECK_MS), so a lost
 * wake-up cannot pass for a slow machine.
 */
static const size_t nap_sizes[] = { 64u << 10, (100u << 10) + 3, 256u << 10 };

Test(bulk, sleeping_receiver_woken_by_every_offer, .timeout = 120)
{
	setenv("SCIF_WAIT_RECHECK_MS", "30000", 1);
	echo_sizes_case(0, 0, 0, nap_sizes, sizeof(nap_sizes) / sizeof(nap_sizes[0]), 30, 2000);
}

Test(bulk, echo_split_between_both_sides, .timeout = 120) { echo_case(1, 0, 0); }
Test(bulk, echo_huge_pages_probed, .timeout = 120) { echo_case(1, 0, 1); }
Test(bulk, echo_small_pages_probed, .timeout = 120) { echo_case(0, 0, 1); }
Test(bulk, echo_from_a_fork_child, .timeout = 120) { echo_case(1, 1, 0); }

/*
 * One 24 MiB blocking send, taken in pieces of every kind: the descriptor is readable while
 * the offer waits (before any ring byte exists), single bytes, non-blocking pieces (the
 * receiver copies alone), blocking pieces large enough to split, and the rest.
 */
Test(bulk, one_offer_taken_in_pieces, .timeout = 120)
{
	const size_t total = 24u << 20;
	const uint64_t seed = 4242;
	uint16_t port = test_port();
	char a1[16], a2[16], a3[24];
	char *args[] = { "bulk-source", "0", test_num(a1, port), test_num(a2, total), test_num(a3, seed), NULL };
	uint8_t *got = buf_alloc(total, 1), *want = malloc(total);
	scif_epd_t lep, ep;
	struct scif_portID peer;
	struct scif_pollepd p;
	size_t have = 0;
	pid_t pid;

	cr_assert_not_null(want);
	stream_fill(seed, 0, want, total);
	lep = test_listener(port, 1);
	pid = test_spawn_peer(1, args);
	test_accept_or_peer_death(lep, &peer, &ep, pid, 30000);
	p = (struct scif_pollepd){ .epd = ep, .events = SCIF_POLLIN };
	cr_assert_eq(scif_poll(&p, 1, 10000), 1, "no POLLIN while an offer waits");
	cr_assert(p.revents & SCIF_POLLIN);
	{
		struct pollfd pf = { .fd = ep, .events = POLLIN };

		cr_assert_eq(poll(&pf, 1, 0), 1, "the descriptor itself is not readable");
	}
	static const struct {
		size_t len;
		int flags;
	} plan[] = {
		{ 1, SCIF_RECV_BLOCK },	       { 1, 0 },
		{ 3u << 20, SCIF_RECV_BLOCK }, { 700u << 10, 0 },
		{ 5u << 20, 0 },	       { 100, SCIF_RECV_BLOCK },
		{ 8u << 20, SCIF_RECV_BLOCK }, { 0, SCIF_RECV_BLOCK } /* the rest */
	};
	for (size_t i = 0; i < sizeof(plan) / sizeof(plan[0]); i++) {
		size_t len = plan[i].len ? plan[i].len : total - have;
		int r = scif_recv(ep, got + have, (int)len, plan[i].flags);

		cr_assert_geq(r, 0, "piece %zu: %s", i, strerror(errno));
		if (plan[i].flags)
			cr_assert_eq(r, (int)len, "piece %zu", i);
		have += (size_t)r;
	}
	cr_assert_eq(have, total);
	cr_assert(!memcmp(got, want, total), "the offer arrived corrupted");
	cr_assert_eq(scif_send(ep, "k", 1, SCIF_SEND_BLOCK), 1);
	cr_expect_eq(test_wait(pid), 0, "the source failed");
	scif_close(ep);
	scif_close(lep);
	free(got);
	free(want);
}

/*
 * An offer abandoned by its sender (another of its threads closed the endpoint under the
 * blocked send, and the process then reused the buffer) is not delivered after the
 * disconnect: the receiver gets ECONNRESET, never the scribbled buffer.
 */
Test(bulk, abandoned_offer_is_not_delivered, .timeout = 60)
{
	uint16_t port = test_port();
	char a1[16];
	char *args[] = { "bulk-abandon", "0", test_num(a1, port), NULL };
	scif_epd_t lep, ep;
	struct scif_portID peer;
	struct scif_pollepd p;
	uint8_t *buf = buf_alloc(1u << 20, 0);
	uint64_t until;
	pid_t pid;

	lep = test_listener(port, 1);
	pid = test_spawn_peer(1, args);
	test_accept_or_peer_death(lep, &peer, &ep, pid, 30000);
	until = test_now_ms() + 10000;
	do {
		p = (struct scif_pollepd){ .epd = ep, .events = SCIF_POLLIN };
		scif_poll(&p, 1, 100);
	} while (!(p.revents & SCIF_POLLHUP) && test_now_ms() < until);
	cr_assert(p.revents & SCIF_POLLHUP, "the sender's close was not seen");
	cr_expect_eq(scif_recv(ep, buf, 1 << 20, SCIF_RECV_BLOCK), -1);
	cr_expect_eq(errno, ECONNRESET);
	cr_expect_eq(test_wait(pid), 0, "the abandoning peer failed");
	scif_close(ep);
	scif_close(lep);
	free(buf);
}

/*
 * A peer lying about single-copy transfers (tests/mp/hostile.c). @resets: the lie costs the
 * connection (ECONNRESET); otherwise the victim declines the offer and receives "hello"
 * through the ring. The listener serves an honest peer afterwards either way.
 */
static void hostile_bulk_case(const char *kind, int resets)
{
	uint16_t port = test_port();
	char a1[16];
	char *args[] = { "hostile", "0", test_num(a1, port), (char *)kind, NULL };
	scif_epd_t lep, ep;
	struct scif_portID peer;
	char buf[16] = { 0 };
	pid_t pid;
	int r;

	if (!strcmp(kind, "nb-commit")) {
		/* How long a committed receiver may take, and (long) how long the peer may
		 * take to commit: both read when the library starts, below. */
		setenv("SCIF_REQ_TIMEOUT_MS", "500", 1);
		setenv("SCIF_CMA_WAIT_US", "2000000", 1);
	}
	lep = test_listener(port, 4);
	pid = test_spawn_peer(1, args);
	test_accept_or_peer_death(lep, &peer, &ep, pid, 30000);
	if (!strcmp(kind, "claim")) {
		uint8_t *big = buf_alloc(2u << 20, 1);

		r = scif_send(ep, big, 2 << 20, SCIF_SEND_BLOCK);
		free(big);
	} else if (!strcmp(kind, "nb-commit")) {
		uint8_t *big = buf_alloc(1u << 20, 1);
		uint64_t t0 = test_now_ms();


		/* The peer says it waits for 1 MiB, then sends a byte: after that byte, our
		 * non-blocking send is offered; the peer commits to it and never copies. */
		cr_assert_eq(scif_recv(ep, buf, 1, SCIF_RECV_BLOCK), 1);
		r = scif_send(ep, big, 1 << 20, 0);
		cr_expect_lt(test_now_ms() - t0, 20000, "the non-blocking send was held %llu ms",
			     (unsigned long long)(test_now_ms() - t0));
		free(big);
	} else {
		r = scif_recv(ep, buf, 5, SCIF_RECV_BLOCK);
	}
	if (resets) {
		cr_expect_eq(r, -1, "%s: the lie was accepted", kind);
		cr_expect_eq(errno, ECONNRESET, "%s: errno %d", kind, errno);
	} else {
		cr_expect_eq(r, 5, "%s: %s", kind, strerror(errno));
		cr_expect_str_eq(buf, "hello");
	}
	scif_close(ep);
	cr_expect_eq(test_wait(pid), 0, "%s: the victim did not decline as expected", kind);
	mp_expect_listener_serves(lep, port);
	scif_close(lep);
}

Test(hostile_bulk, offer_not_at_the_stream_position) { hostile_bulk_case("offer-pos", 1); }
Test(hostile_bulk, offer_longer_than_possible) { hostile_bulk_case("offer-len", 1); }
Test(hostile_bulk, offer_of_unmapped_memory) { hostile_bulk_case("offer-fault", 0); }
Test(hostile_bulk, region_naming_another_process) { hostile_bulk_case("offer-pid", 0); }
Test(hostile_bulk, claim_beyond_the_offer) { hostile_bulk_case("claim", 1); }
/* A non-blocking send is never held for ever by a receiver that commits and never copies. */
Test(hostile_bulk, nonblocking_offer_committed_and_abandoned) { hostile_bulk_case("nb-commit", 1); }

/* ---- non-blocking sends (bulk.c: offered only to a receiver waiting for them) ---------- */

#define NB_RING (256u << 10) /* the default ring: a non-blocking send through it moves less */

/* SIGKILL @pid after @after_us, or as soon as the test sets @now; @late: by the deadline. */
struct nb_kill {
	pid_t pid;
	useconds_t after_us;
	int now;  /* atomic: the test's word to kill at once */
	int late; /* read after the join */
};

static void *nb_killer(void *arg)
{
	struct nb_kill *k = arg;
	uint64_t until = test_now_ms() * 1000 + k->after_us;

	while (!__atomic_load_n(&k->now, __ATOMIC_ACQUIRE) && test_now_ms() * 1000 < until)
		usleep(k->after_us < 1000 ? k->after_us : 200);
	k->late = !__atomic_load_n(&k->now, __ATOMIC_ACQUIRE);
	kill(k->pid, SIGKILL);
	return NULL;
}

/* Accept the connection of a peer just spawned with @args on @lep. */
static scif_epd_t nb_accept(scif_epd_t lep, pid_t pid)
{
	struct scif_portID peer;
	scif_epd_t ep;

	test_accept_or_peer_death(lep, &peer, &ep, pid, 30000);
	return ep;
}

/*
 * Non-blocking sends of @len bytes to a receiver blocked in scif_recv() for as much: the
 * peer checks every byte; a send that moved more than the ring holds in one call went
 * single-copy, and some must have: every other round waits 20 ms first, so the receiver
 * is asleep in scif_recv and is woken by the offer, and the withdrawal deadline is made
 * long (SCIF_CMA_WAIT_US) so that a loaded machine's slow wake-up does not withdraw it.
 * The other rounds race the receiver back into scif_recv (offered or not, withdrawn or not).
 */
static void nb_sink_case(size_t len, int rounds)
{
	const uint64_t seed = 777 + len;
	uint16_t port = test_port();
	char a1[16], a2[24], a3[16], a4[24];
	char *args[] = { "bulk-nbsink", "0", test_num(a1, port), test_num(a2, len),
			 test_num(a3, (unsigned)rounds), test_num(a4, seed), NULL };
	uint8_t *out = buf_alloc(len, 1);
	scif_epd_t lep, ep;
	int whole = 0;
	char ack;
	pid_t pid;

	setenv("SCIF_CMA_WAIT_US", "2000000", 1); /* read when the library starts, below */
	lep = test_listener(port, 1);
	pid = test_spawn_peer(1, args);
	ep = nb_accept(lep, pid);
	for (int r = 0; r < rounds; r++) {
		uint64_t until = test_now_ms() + 30000;
		size_t done = 0;

		stream_fill(stream_seed(seed, (uint64_t)r, 0), 0, out, len);
		if (r & 1)
			usleep(20000); /* the receiver goes to sleep in scif_recv */
		while (done < len) {
			int n = scif_send(ep, out + done, (int)(len - done), 0);

			cr_assert_geq(n, 0, "round %d: %s", r, strerror(errno));
			if (!done && (size_t)n == len)
				whole++;
			done += (size_t)n;
			cr_assert_lt(test_now_ms(), until, "round %d: no progress", r);
		}
		/* The buffer is the application's again: scribbling must not reach the peer. */
		memset(out, 0x5a, len);
	}
	cr_assert_eq(scif_recv(ep, &ack, 1, SCIF_RECV_BLOCK), 1, "%s", strerror(errno));
	cr_expect_eq(test_wait(pid), 0, "the receiver saw wrong data (9) or failed");
	if (len > NB_RING)
		cr_expect_gt(whole, 0, "no non-blocking send of %zu bytes went single-copy", len);
	scif_close(ep);
	scif_close(lep);
	free(out);
}

Test(bulk, nonblocking_sends_64k, .timeout = 120) { nb_sink_case(64u << 10, 200); }
Test(bulk, nonblocking_sends_1m, .timeout = 120) { nb_sink_case((1u << 20) + 3, 60); }
Test(bulk, nonblocking_sends_4m, .timeout = 120) { nb_sink_case(4u << 20, 30); }

/*
 * The receiver is killed while it may be copying a non-blocking send's offer: the sender
 * neither hangs nor returns more than was taken; it ends with ECONNRESET (or all of it).
 */
Test(bulk, nonblocking_offer_receiver_killed, .timeout = 120)
{
	const size_t len = 128u << 20;
	uint16_t port = test_port();
	char a1[16], a2[24];
	char *args[] = { "bulk-nbsink", "0", test_num(a1, port), test_num(a2, len), "1", "5", NULL };
	uint8_t *out = buf_alloc(len, 1);
	scif_epd_t lep, ep;
	struct nb_kill k;
	pthread_t th;
	size_t done = 0;
	uint64_t until;
	pid_t pid;

	lep = test_listener(port, 1);
	pid = test_spawn_peer(1, args);
	ep = nb_accept(lep, pid);
	usleep(200000); /* the receiver allocates, then waits in scif_recv */
	k = (struct nb_kill){ .pid = pid, .after_us = 2000 };
	cr_assert_eq(pthread_create(&th, NULL, nb_killer, &k), 0);
	until = test_now_ms() + 30000;
	while (done < len) {
		int n = scif_send(ep, out + done, (int)(len - done), 0);

		if (n < 0) {
			cr_assert_eq(errno, ECONNRESET, "%s", strerror(errno));
			break;
		}
		done += (size_t)n;
		cr_assert_lt(test_now_ms(), until, "the sender never saw the receiver die");
	}
	pthread_join(th, NULL);
	cr_assert_leq(done, len);
	test_wait(pid);
	scif_close(ep);
	scif_close(lep);
	free(out);
}

/*
 * The sender is killed while its non-blocking offer is being copied: the receiver takes the
 * stream in pieces of 8 MiB and has the sender killed by another thread once the first is in,
 * while it copies the next. It gets a correct prefix of the stream, then ECONNRESET, and
 * never hangs. (A killed process's memory stays readable until its exit tears it down, so
 * how much more comes is the machine's business; when all of it did, the next receive says
 * ECONNRESET.) Under ThreadSanitizer, a quarter of the length keeps the allocation and
 * filling of the buffers (seconds there) short.
 */
Test(bulk, nonblocking_offer_sender_killed, .timeout = 120)
{
#ifdef __SANITIZE_THREAD__
	const size_t len = 32u << 20;
#else
	const size_t len = 128u << 20;
#endif
	const size_t piece = 8u << 20;
	const uint64_t seed = 99;
	uint16_t port = test_port();
	char a1[16], a2[24], a3[24];
	char *args[] = { "bulk-nbsource", "0", test_num(a1, port), test_num(a2, len),
			 test_num(a3, seed), NULL };
	uint8_t *in = buf_alloc(len, 1), *want = malloc(len);
	scif_epd_t lep, ep;
	struct nb_kill k;
	pthread_t th;
	size_t have = 0;
	pid_t pid;

	cr_assert_not_null(want);
	lep = test_listener(port, 1);
	pid = test_spawn_peer(1, args);
	ep = nb_accept(lep, pid);
	/* The watchdog of the blocking receives: a peer that sends nothing for 30 s is killed. */
	k = (struct nb_kill){ .pid = pid, .after_us = 30000000 };
	cr_assert_eq(pthread_create(&th, NULL, nb_killer, &k), 0);
	while (have < len) {
		size_t want_now = len - have < piece ? len - have : piece;
		int n = scif_recv(ep, in + have, (int)want_now, SCIF_RECV_BLOCK);

		if (n < 0) {
			cr_assert_eq(errno, ECONNRESET, "%s", strerror(errno));
			break;
		}
		cr_assert_gt(n, 0);
		if (!have) {
			cr_assert_eq((size_t)n, piece, "the first piece came short: %d", n);
			__atomic_store_n(&k.now, 1, __ATOMIC_RELEASE); /* kill it now */
		}
		have += (size_t)n;
	}
	__atomic_store_n(&k.now, 1, __ATOMIC_RELEASE); /* gone before any byte: no wait */
	pthread_join(th, NULL);
	cr_assert(!k.late, "no %zu bytes from the peer in 30 s (killed it: status %d)", piece,
		  test_wait(pid));
	if (!have)
		cr_assert_fail("the connection broke before any byte came (peer: %d)",
			       test_wait(pid));
	if (have == len) {
		char c;

		/* The peer is killed by now: this receive ends. */
		cr_assert_eq(scif_recv(ep, &c, 1, SCIF_RECV_BLOCK), -1);
		cr_assert_eq(errno, ECONNRESET, "%s", strerror(errno));
	}
	cr_assert_eq(test_wait(pid), 128 + SIGKILL, "the peer did not die of the SIGKILL");
	stream_fill(seed, 0, want, have);
	cr_assert(!memcmp(in, want, have), "the %zu bytes received are not the stream's", have);
	scif_close(ep);
	scif_close(lep);
	free(in);
	free(want);
}
