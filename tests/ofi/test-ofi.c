// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * test-ofi.c - what only the network fabric has: a peer *host* that becomes unreachable. Run
 * by tests/ofi/check-ofi.sh (node 0 in a network namespace, the peer in node 1's), which
 * sets SCIF_TEST_NETNS_RUN and SCIF_TEST_NETNS_SH; built for check-ofi only.
 *
 * Node 1's link is taken down (its bridge port, like a pulled cable): no reset reaches us,
 * only silence. Our endpoint must report ECONNRESET within the fabric's bound (about 4 s,
 * docs/network-fabric.md), both when it waits idle in scif_recv and when it is sending.
 * The link is brought back up by the test's fini, also when the test fails.
 *
 * And what the network fabric does differently on purpose: scif_mmap of a peer window fails
 * with EOPNOTSUPP (no load/store path to another host), while RMA to the same window works.
 * And a peer that does not speak the link protocol (raw TCP to a listener's port) costs only
 * its own link, dropped within a bound, never a crash or an accepted connection. And a server
 * whose clients come and go does not keep an address-vector entry for each of them.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "scif.h"
#include "../common.h"
#include "../mp/stream.h"

#define RESET_BOUND_MS 15000 /* far above the fabric's ~4 s: only "it does not hang" */

static void netns_link(const char *how)
{
	const char *sh = getenv("SCIF_TEST_NETNS_SH"), *run = getenv("SCIF_TEST_NETNS_RUN");
	char cmd[512];

	cr_assert(sh && run, "run through make check-ofi (SCIF_TEST_NETNS_SH/RUN unset)");
	snprintf(cmd, sizeof(cmd), "bash '%s' link '%s' 1 %s", sh, run, how);
	cr_assert_eq(system(cmd), 0, "%s", cmd);
}

static void link_up(void)
{
	const char *sh = getenv("SCIF_TEST_NETNS_SH"), *run = getenv("SCIF_TEST_NETNS_RUN");
	char cmd[512];

	if (sh && run) {
		snprintf(cmd, sizeof(cmd), "bash '%s' link '%s' 1 up", sh, run);
		if (system(cmd) != 0)
			fprintf(stderr, "test-ofi: could not bring node 1's link back up\n");
	}
}

/* Start the echo peer on node 1 and connect to it (it may take a moment to listen). */
static scif_epd_t echo_peer(pid_t *pid)
{
	uint16_t port = test_port();
	char a1[16];
	char *args[] = { "echo", test_num(a1, port), NULL };
	struct scif_portID dst = { .node = 1, .port = port };
	uint64_t until;
	scif_epd_t ep = -1;

	*pid = test_spawn_peer(1, args);
	until = test_now_ms() + 20000;
	for (;;) {
		ep = scif_open();
		cr_assert_geq(ep, 0);
		if (scif_connect(ep, &dst) > 0)
			break;
		scif_close(ep);
		cr_assert_lt(test_now_ms(), until, "no echo peer on node 1 port %u", port);
		usleep(50000);
	}
	/* One round: the connection works before the link goes. */
	cr_assert_eq(scif_send(ep, "ping", 4, SCIF_SEND_BLOCK), 4);
	char b[4];
	cr_assert_eq(scif_recv(ep, b, 4, SCIF_RECV_BLOCK), 4);
	cr_assert_eq(memcmp(b, "ping", 4), 0);
	return ep;
}

static void peer_gone(pid_t pid)
{
	int st;

	kill(pid, SIGKILL);
	waitpid(pid, &st, 0);
}

TestSuite(ofi, .fini = link_up);

Test(ofi, idle_receiver_sees_unreachable_host, .timeout = 60)
{
	pid_t pid;
	scif_epd_t ep = echo_peer(&pid);
	uint64_t t0, ms;
	char b;
	int r;

	netns_link("down");
	t0 = test_now_ms();
	r = scif_recv(ep, &b, 1, SCIF_RECV_BLOCK);
	ms = test_now_ms() - t0;
	cr_log_info("idle receiver: ECONNRESET after %llu ms", (unsigned long long)ms);
	cr_expect_eq(r, -1);
	cr_expect_eq(errno, ECONNRESET);
	cr_expect_lt(ms, RESET_BOUND_MS, "reset after %llu ms", (unsigned long long)ms);
	netns_link("up");
	scif_close(ep);
	peer_gone(pid);
}

struct flood {
	scif_epd_t ep;
	int ret, err;
};

static void *flood_tx(void *arg)
{
	struct flood *f = arg;
	static char buf[1 << 16];

	for (;;) {
		int n = scif_send(f->ep, buf, (int)sizeof(buf), SCIF_SEND_BLOCK);

		if (n < 0) {
			f->ret = n;
			f->err = errno;
			return NULL;
		}
	}
}

Test(ofi, sender_sees_unreachable_host, .timeout = 60)
{
	struct flood f = { .ret = 0 };
	struct timespec ts;
	pthread_t th;
	pid_t pid;
	uint64_t t0, ms;

	f.ep = echo_peer(&pid);
	cr_assert_eq(pthread_create(&th, NULL, flood_tx, &f), 0);
	usleep(200000); /* data in flight both ways (the peer echoes) */
	netns_link("down");
	t0 = test_now_ms();
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += RESET_BOUND_MS / 1000;
	cr_assert_eq(pthread_timedjoin_np(th, NULL, &ts), 0, "the sender hung");
	ms = test_now_ms() - t0;
	cr_log_info("sender: ECONNRESET after %llu ms", (unsigned long long)ms);
	cr_expect_eq(f.ret, -1);
	cr_expect_eq(f.err, ECONNRESET);
	netns_link("up");
	scif_close(f.ep);
	peer_gone(pid);
}

/* The peer's rma-serve role (tests/mp/peer-rma.c): its window, announced on the stream. */
struct hello {
	uint64_t offset, size;
};

Test(ofi, mmap_of_a_remote_window_is_eopnotsupp_rma_works, .timeout = 60)
{
	uint16_t port = test_port();
	uint64_t seed = 0x5eedULL;
	char a1[16], a2[24];
	char *args[] = { "rma-serve", "0", test_num(a1, port), "65536", test_num(a2, seed), NULL };
	scif_epd_t lep = scif_open(), ep;
	struct scif_portID peer;
	struct hello h;
	uint8_t got[4096], want[4096];
	uint64_t sum;
	void *map;
	pid_t pid;

	cr_assert_eq(scif_bind(lep, port), port);
	cr_assert_eq(scif_listen(lep, 1), 0);
	pid = test_spawn_peer(1, args);
	test_accept_or_peer_death(lep, &peer, &ep, pid, 30000);
	cr_assert_eq(scif_recv(ep, &h, sizeof(h), SCIF_RECV_BLOCK), (int)sizeof(h));
	map = scif_mmap(NULL, 4096, SCIF_PROT_READ | SCIF_PROT_WRITE, 0, ep, (off_t)h.offset);
	cr_expect_eq(map, SCIF_MMAP_FAILED);
	cr_expect_eq(errno, EOPNOTSUPP, "scif_mmap across hosts: errno %d", errno);
	cr_assert_eq(scif_vreadfrom(ep, got, sizeof(got), (off_t)h.offset, SCIF_RMA_SYNC), 0,
		     "scif_vreadfrom: %s", strerror(errno));
	stream_fill(seed, 0, want, sizeof(want));
	cr_expect_eq(memcmp(got, want, sizeof(got)), 0, "vreadfrom read other bytes");
	cr_assert_eq(scif_send(ep, "d", 1, SCIF_SEND_BLOCK), 1);
	cr_assert_eq(scif_recv(ep, &sum, sizeof(sum), SCIF_RECV_BLOCK), (int)sizeof(sum));
	scif_close(ep);
	scif_close(lep);
	cr_expect_eq(test_wait(pid), 0, "the rma-serve peer failed");
}

/* Node @node's address from the cluster file, as text. */
static void node_addr_str(unsigned int node, char *out, size_t len)
{
	const char *path = getenv("SCIF_NODES_FILE");
	char line[256], host[64];
	unsigned int n;
	FILE *f;
	int found = 0;

	cr_assert(path, "SCIF_NODES_FILE unset");
	f = fopen(path, "r");
	cr_assert(f, "%s: %s", path, strerror(errno));
	while (!found && fgets(line, sizeof(line), f))
		found = sscanf(line, "%u %63s", &n, host) == 2 && n == node;
	fclose(f);
	cr_assert(found, "no node %u in %s", node, path);
	snprintf(out, len, "%s", host);
}

/* Node 0's address, from the cluster file. */
static struct sockaddr_in node0_addr(uint16_t port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port) };
	char host[64];

	node_addr_str(0, host, sizeof(host));
	cr_assert_eq(inet_pton(AF_INET, host, &sa.sin_addr), 1, "node 0's address %s", host);
	return sa;
}

/*
 * Send @len raw bytes on a fresh TCP connection to the listener, as a peer that does not
 * speak the protocol would; the link must be dropped (we read the fabric's HELLO, then EOF)
 * within @bound_ms while the application polls its listener, and never reach scif_accept.
 */
static void hostile_link(scif_epd_t lep, uint16_t port, const void *bytes, size_t len,
			 int bound_ms, const char *what)
{
	struct sockaddr_in sa = node0_addr(port);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	uint64_t until = test_now_ms() + (uint64_t)bound_ms;
	struct scif_portID peer;
	scif_epd_t ep;
	char buf[512];
	ssize_t n;

	cr_assert_geq(fd, 0);
	cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0, "%s: connect: %s", what,
		     strerror(errno));
	if (len)
		cr_assert_eq(send(fd, bytes, len, MSG_NOSIGNAL), (ssize_t)len, "%s: send", what);
	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };

		cr_assert_lt(test_now_ms(), until, "%s: the link was not dropped in %d ms", what,
			     bound_ms);
		/* The application looking at its listener is what reads pending requests. */
		cr_assert_eq(scif_accept(lep, &peer, &ep, 0), -1, "%s: a link was accepted", what);
		cr_assert_eq(errno, EAGAIN, "%s: scif_accept: %s", what, strerror(errno));
		if (poll(&p, 1, 100) == 1) {
			n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
			if (n == 0 || (n < 0 && errno == ECONNRESET))
				break; /* dropped */
		}
	}
	close(fd);
}

/* The frame header of tests/ofi (libscif/fabric/ofi.c struct ofi_frame), little-endian. */
struct wire_frame {
	uint32_t magic, type_nfh, len, flags;
};
#define WIRE_MAGIC 0x4b4e4c4fu

Test(ofi, hostile_link_frames_cost_only_that_link, .timeout = 90)
{
	uint16_t port = test_port();
	scif_epd_t lep = scif_open();
	struct wire_frame f;
	uint8_t big[sizeof(f) + 16];
	char a1[16];
	char *args[] = { "churn", "0", test_num(a1, port), "1", NULL };
	struct scif_portID peer;
	scif_epd_t ep;
	pid_t pid;
	char c;

	cr_assert_eq(scif_bind(lep, port), port);
	cr_assert_eq(scif_listen(lep, 4), 0);
	hostile_link(lep, port, "GET / HTTP/1.0\r\n\r\n", 18, 5000, "garbage");
	f = (struct wire_frame){ WIRE_MAGIC, 2, 1u << 30, 0 };
	hostile_link(lep, port, &f, sizeof(f), 5000, "a message of 1 GiB");
	f = (struct wire_frame){ WIRE_MAGIC, 2 | 99u << 16, 0, 0 };
	hostile_link(lep, port, &f, sizeof(f), 5000, "99 handles");
	f = (struct wire_frame){ WIRE_MAGIC, 7, 0, 0 };
	hostile_link(lep, port, &f, sizeof(f), 5000, "an unknown frame type");
	f = (struct wire_frame){ WIRE_MAGIC, 2, 0, 1 };
	hostile_link(lep, port, &f, sizeof(f), 5000, "flags on a message");
	f = (struct wire_frame){ WIRE_MAGIC, 1, 8, 0 };
	memcpy(big, &f, sizeof(f));
	memset(big + sizeof(f), 0xff, 8); /* node 0xffffffff, name length 0xffffffff */
	hostile_link(lep, port, big, sizeof(f) + 8, 5000, "a HELLO from no node");
	f = (struct wire_frame){ WIRE_MAGIC, 2, 64, 0 };
	hostile_link(lep, port, &f, sizeof(f), 10000, "a frame cut short, then silence");
	hostile_link(lep, port, NULL, 0, 15000, "a link that never says anything");
	/* The listener is unharmed: a real peer connects and talks. */
	pid = test_spawn_peer(1, args);
	test_accept_or_peer_death(lep, &peer, &ep, pid, 30000);
	cr_assert_eq(scif_recv(ep, &c, 1, SCIF_RECV_BLOCK), 1);
	cr_assert_eq(scif_send(ep, &c, 1, SCIF_SEND_BLOCK), 1);
	cr_expect_eq(test_wait(pid), 0, "the real peer failed");
	scif_close(ep);
	scif_close(lep);
}

/*
 * Frames that arrive in pieces are waited for by no one: 16 raw links each send the header
 * of a message and then nothing, and a real peer that connects after them is accepted at
 * once. (A reader that waited up to 2 s for the rest of each frame kept one non-blocking
 * scif_accept 32 s.) The silent links are dropped by the listener's silence rule.
 */
#define PIECES 16
Test(ofi, frames_in_pieces_hold_up_no_one, .timeout = 90)
{
	uint16_t port = test_port();
	scif_epd_t lep = scif_open(), ep;
	struct sockaddr_in sa = node0_addr(port);
	struct wire_frame f = { WIRE_MAGIC, 2, 64, 0 };
	char a1[16];
	char *args[] = { "churn", "0", test_num(a1, port), "1", NULL };
	struct scif_portID peer;
	int fd[PIECES], open_links = PIECES;
	uint64_t t0, until;
	pid_t pid;
	char c;

	cr_assert_eq(scif_bind(lep, port), port);
	cr_assert_eq(scif_listen(lep, PIECES + 4), 0);
	for (int i = 0; i < PIECES; i++) {
		fd[i] = socket(AF_INET, SOCK_STREAM, 0);
		cr_assert_geq(fd[i], 0);
		cr_assert_eq(connect(fd[i], (struct sockaddr *)&sa, sizeof(sa)), 0, "connect: %s",
			     strerror(errno));
		cr_assert_eq(send(fd[i], &f, sizeof(f), MSG_NOSIGNAL), (ssize_t)sizeof(f));
	}
	/* Bound: far above a peer's start-up, far below what waiting 2 s per frame costs. */
	t0 = test_now_ms();
	pid = test_spawn_peer(1, args);
	test_accept_or_peer_death(lep, &peer, &ep, pid, 20000);
	cr_assert_lt(test_now_ms() - t0, 20000, "non-blocking scif_accept waited %llu ms in all",
		     (unsigned long long)(test_now_ms() - t0));
	cr_assert_eq(scif_recv(ep, &c, 1, SCIF_RECV_BLOCK), 1);
	cr_assert_eq(scif_send(ep, &c, 1, SCIF_SEND_BLOCK), 1);
	cr_expect_eq(test_wait(pid), 0, "the real peer failed");
	scif_close(ep);
	/* The silent links go (the application looking at its listener drops them). */
	until = test_now_ms() + 15000;
	while (open_links) {
		cr_assert_lt(test_now_ms(), until, "%d silent links still open", open_links);
		cr_assert_eq(scif_accept(lep, &peer, &ep, 0), -1, "a silent link was accepted");
		cr_assert_eq(errno, EAGAIN);
		for (int i = 0; i < PIECES; i++) {
			char b[512];
			ssize_t n;

			if (fd[i] < 0)
				continue;
			n = recv(fd[i], b, sizeof(b), MSG_DONTWAIT); /* our HELLO, then EOF */
			if (n == 0 || (n < 0 && errno == ECONNRESET)) {
				close(fd[i]);
				fd[i] = -1;
				open_links--;
			}
		}
		usleep(50000);
	}
	scif_close(lep);
}

/*
 * A peer that knows our libfabric endpoint and sends our progress nothing but malformed
 * small messages (tests/ofi/ofi-hostile.c, run in node 1: bad magic, unknown operations,
 * rings and unparks of guessed bells, PUTs to unknown keys, cut short, past any region,
 * overlong messages, random bytes) costs nothing: its garbage link is never accepted, our
 * progress still answers its last PING, and a connection open all along still carries
 * checksummed data both ways.
 */
Test(ofi, hostile_messages_cost_nothing, .timeout = 120)
{
	const char *sh = getenv("SCIF_TEST_NETNS_SH"), *run = getenv("SCIF_TEST_NETNS_RUN");
	const char *bin = getenv("SCIF_TEST_OFI_HOSTILE");
	uint16_t port = test_port();
	scif_epd_t lep, ep, nep;
	struct scif_portID peer;
	char a0[64], a1[64], p[16];
	uint8_t out[8192], in[8192];
	uint64_t until;
	pid_t epid, hpid;
	int st;

	cr_assert(sh && run && bin, "run through make check-ofi (SCIF_TEST_NETNS_SH/RUN, "
				    "SCIF_TEST_OFI_HOSTILE unset)");
	ep = echo_peer(&epid);
	lep = scif_open();
	cr_assert_eq(scif_bind(lep, port), port);
	cr_assert_eq(scif_listen(lep, 4), 0);
	node_addr_str(0, a0, sizeof(a0));
	node_addr_str(1, a1, sizeof(a1));
	snprintf(p, sizeof(p), "%u", port);
	hpid = fork();
	cr_assert_geq(hpid, 0);
	if (hpid == 0) {
		execlp("bash", "bash", sh, "exec", run, "1", bin, a0, p, a1, (char *)NULL);
		_exit(127);
	}
	/* Our listener is what reads the hostile's link; its requests must never be accepted. */
	until = test_now_ms() + 90000;
	for (;;) {
		pid_t w = waitpid(hpid, &st, WNOHANG);

		if (w == hpid)
			break;
		if (test_now_ms() > until) {
			kill(hpid, SIGKILL);
			waitpid(hpid, &st, 0);
			cr_assert_fail("ofi-hostile still running after 90 s (killed)");
		}
		cr_assert_eq(scif_accept(lep, &peer, &nep, 0), -1, "the garbage link was accepted");
		cr_assert_eq(errno, EAGAIN, "scif_accept: %s", strerror(errno));
		usleep(20000);
	}
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0,
		  "ofi-hostile: %s %d (1: our progress did not answer its PING after the garbage)",
		  WIFEXITED(st) ? "exit status" : "killed by signal",
		  WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
	/* The connection that was open all along. */
	for (size_t i = 0; i < sizeof(out); i++)
		out[i] = (uint8_t)(i * 131 + 7);
	cr_assert_eq(scif_send(ep, out, (int)sizeof(out), SCIF_SEND_BLOCK), (int)sizeof(out));
	cr_assert_eq(scif_recv(ep, in, (int)sizeof(in), SCIF_RECV_BLOCK), (int)sizeof(in));
	cr_assert_eq(memcmp(in, out, sizeof(in)), 0, "the echo came back different");
	scif_close(lep);
	scif_close(ep);
	cr_expect_eq(test_wait(epid), 0, "the echo peer failed");
}

/*
 * Peer processes that come and go leave our address vector (fabric/ofi.c ofi_forget_gone):
 * a server whose clients each connect once and exit keeps entries only for those in use and
 * those let go of since about the last arrival, not one per client it ever had; and the
 * clients that come after (which may get a freed entry's index) are served intact. What the
 * vector holds is read from the library's debug log (SCIF_LOG=debug), the one place it says.
 */
#define FORGET_MS 10000 /* fabric/ofi.c OFI_FORGET_MS */

/* One client process on node 1: a connection with 64 KiB each way, checked, then it exits. */
static void forget_client(scif_epd_t lep, uint16_t port, uint64_t seed)
{
	char a1[16], a2[24];
	char *args[] = { "stream", "0", test_num(a1, port), "1", "65536", test_num(a2, seed),
			 NULL };
	struct stream_conn c = { .bytes = 65536 };
	struct scif_portID peer;
	pid_t pid = test_spawn_peer(1, args);
	struct test_watch w;
	int err;

	test_accept_or_peer_death(lep, &peer, &c.ep, pid, 30000);
	/* The peer's send stream is our receive stream (tests/mp/scif-peer.c mode_stream). */
	c.tx_seed = stream_seed(seed, 0, 0);
	c.rx_seed = stream_seed(seed, 0, 1);
	/* The stream's blocking calls wait on the peer: a watchdog kills it if they stay. */
	test_watch_start(&w, pid, 30000);
	stream_start(&c);
	err = stream_join(&c);
	test_watch_end(&w, err == 0, "the stream");
	scif_close(c.ep);
	cr_assert_eq(err, 0, "client %llu: the stream failed (%d, errno %d)",
		     (unsigned long long)seed, err, c.err_errno);
	cr_assert_eq(test_wait(pid), 0, "client %llu: the stream peer failed",
		     (unsigned long long)seed);
}

Test(ofi, gone_peer_processes_leave_the_address_vector, .timeout = 120)
{
	char path[] = "/tmp/scif-test-ofi-av.XXXXXX", line[256];
	int logfd = mkstemp(path), saved = dup(2);
	unsigned int removed = 0, left = 0, lines = 0, n, in;
	uint16_t port = test_port();
	scif_epd_t lep;
	FILE *f;

	cr_assert_geq(logfd, 0);
	cr_assert_geq(saved, 0);
	/* The library reads SCIF_LOG at its first call: this process logs, its peers do not. */
	cr_assert_eq(dup2(logfd, 2), 2);
	setenv("SCIF_LOG", "debug", 1);
	lep = scif_open();
	unsetenv("SCIF_LOG");
	cr_assert_geq(lep, 0);
	cr_assert_eq(scif_bind(lep, port), port);
	cr_assert_eq(scif_listen(lep, 4), 0);
	for (uint64_t i = 1; i <= 4; i++)
		forget_client(lep, port, i);
	/* Clients 1-3 were seen gone when the next one came: gone long enough after this. */
	usleep((FORGET_MS + 1000) * 1000);
	for (uint64_t i = 5; i <= 6; i++)
		forget_client(lep, port, i);
	scif_close(lep);
	dup2(saved, 2);
	close(saved);

	f = fdopen(logfd, "r");
	cr_assert(f);
	rewind(f);
	while (fgets(line, sizeof(line), f)) {
		const char *at = strstr(line, "ofi: ");

		if (at && sscanf(at, "ofi: %u peer processes left the address vector, %u in it", &n,
				 &in) == 2) {
			removed += n;
			left = in;
			lines++;
		}
	}
	fclose(f);
	unlink(path);
	cr_assert_gt(lines, 0, "no client left the address vector (6 came and went)");
	cr_expect_geq(removed, 3, "%u of the first 3 clients left the address vector", removed);
	cr_expect_leq(left, 1, "%u peer processes still in the address vector after the last "
			       "clean-up (only client 4 may be)", left);
}
