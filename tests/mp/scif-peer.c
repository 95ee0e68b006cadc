// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * scif-peer.c - the card-side program of the multi-process tests (a separate executable, so
 * tests never fork the Criterion runner). Each mode is one role; exit 0 means it saw what it
 * expected.
 *
 *   echo <port>                     listen, accept one, echo until the peer leaves
 *   stream <node> <port> <n> <bytes> <seed>
 *                                   connect n times to node:port; on each connection send
 *                                   and receive <bytes> of seeded data at once, checking it
 *   flood <node> <port> <seed>      connect, then send and receive seeded data until killed
 *   reborn <node> <port> <port2> <seed> [<gap_ms> [<hold_ms>]]
 *                                   a child floods node:port and is SIGKILLed 1 s later; then,
 *                                   <gap_ms> (0) after, this process, a new SCIF process on the
 *                                   same node (in a guest: the same device), serves echo on
 *                                   <port2>. With <hold_ms>, the child's own fork child keeps
 *                                   its device (and nothing else of SCIF) that long: the
 *                                   device outlives the killed process
 *   echo-check <node> <port> <bytes> <seed>
 *                                   connect (retrying while the node is not up yet: 10 s, or
 *                                   SCIF_TEST_SPAWN_MS if longer, for a card that boots),
 *                                   send <bytes> of seeded data to an echo peer in 4 KiB
 *                                   pieces, check each piece that comes back
 *   group <role> [, <role>]...      run each role (a mode and its arguments) as a SCIF process
 *                                   of its own, at once, on this node; exit 0 if all did, else
 *                                   20 + the index of the first that failed (its status on
 *                                   stderr). This process itself never uses SCIF
 *   connect-hold <node> <port>      connect, then wait for the peer to leave
 *   connect-die <node> <port> <ms>  connect, send one byte, then <ms> later SIGKILL itself
 *   late-read <node> <port> <rounds>
 *                                   per round: connect twice; 50 ms later read the byte
 *                                   that came on the first (its sender has closed it), then
 *                                   send 64 bytes of the round on the second and wait for
 *                                   a byte back
 *   sip <node> <port>               connect; once bytes come, twice: wait 300 ms, read one
 *                                   byte; then read nothing more until the peer leaves
 *   second <node> <port>            connect, run this program again as a second SCIF process
 *                                   of this node (attach-refused: exit 0 if its first call
 *                                   fails with ENXIO), send its status as a byte, then echo
 *   churn <node> <port> <count>     connect and close <count> times
 *   hostile <node> <port> <kind>    lie to a listener (see hostile.c)
 *   rma-serve, rma-signal, mmap-pong, rma-flood   RMA roles (see peer-rma.c)
 *   bulk-echo, bulk-source, bulk-abandon, bulk-nbsink, bulk-nbsource
 *                                    single-copy transfer roles (see peer-bulk.c)
 *   connect-register, connect-close, mmap-hold, rma-async-sync   regression roles
 *                                   (see peer-compat.c)
 */
#include <errno.h>
#include <pthread.h>
#include <scif.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mp/hostile.h"
#include "mp/peer.h"
#include "mp/stream.h"

/* Connect to node:port, retrying while nobody listens yet (5 s); -1 if it never works. */
int peer_connect(uint16_t node, uint16_t port)
{
	struct scif_portID dst = { .node = node, .port = port };
	scif_epd_t ep = scif_open();

	if (ep < 0)
		return -1;
	for (int i = 0; i < 5000; i++) {
		if (scif_connect(ep, &dst) > 0)
			return ep;
		if (errno != ECONNREFUSED)
			break;
		usleep(1000);
	}
	scif_close(ep);
	return -1;
}

/* Send back what comes on @ep until the peer leaves: 0 when it did (ECONNRESET). */
static int echo_loop(scif_epd_t ep)
{
	char buf[65536];
	int n;

	for (;;) {
		n = scif_recv(ep, buf, (int)sizeof(buf), 0);
		if (n == 0)
			n = scif_recv(ep, buf, 1, SCIF_RECV_BLOCK);
		if (n < 0)
			return errno == ECONNRESET ? 0 : 3;
		if (scif_send(ep, buf, n, SCIF_SEND_BLOCK) != n)
			return errno == ECONNRESET ? 0 : 4;
	}
}

static int mode_echo(uint16_t port)
{
	struct scif_portID peer;
	scif_epd_t lep = scif_open(), ep;

	if (lep < 0 || scif_bind(lep, port) != port || scif_listen(lep, 4) ||
	    scif_accept(lep, &peer, &ep, SCIF_ACCEPT_SYNC))
		return 2;
	return echo_loop(ep);
}

/* The first SCIF call of a process that may not attach (its node is taken): 0 if ENXIO. */
static int mode_attach_refused(void)
{
	uint16_t nodes[64], self;

	return scif_get_nodeIDs(nodes, 64, &self) < 0 && errno == ENXIO ? 0 : 3;
}

/*
 * Connect, then run a second SCIF process on this node (this program again, in mode
 * attach-refused), send its exit status as one byte, then echo until the peer leaves.
 */
static int mode_second(uint16_t node, uint16_t port)
{
	scif_epd_t ep = peer_connect(node, port);
	unsigned char b;
	pid_t pid;
	int st;

	if (ep < 0)
		return 2;
	pid = fork();
	if (pid == 0) {
		execl("/proc/self/exe", "scif-peer", "attach-refused", (char *)NULL);
		_exit(127);
	}
	if (pid < 0 || waitpid(pid, &st, 0) != pid)
		return 5;
	b = (unsigned char)(WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
	if (scif_send(ep, &b, 1, SCIF_SEND_BLOCK) != 1)
		return 4;
	return echo_loop(ep);
}

static int mode_stream(uint16_t node, uint16_t port, int n, uint64_t bytes, uint64_t seed)
{
	struct stream_conn *c = calloc((size_t)n, sizeof(*c));
	int bad = 0;

	for (int i = 0; i < n; i++) {
		c[i].ep = peer_connect(node, port);
		if (c[i].ep < 0)
			return 2;
		/* Our send stream is the acceptor's receive stream and vice versa. */
		c[i].tx_seed = stream_seed(seed, (uint64_t)i, 1);
		c[i].rx_seed = stream_seed(seed, (uint64_t)i, 0);
		c[i].bytes = bytes;
		stream_start(&c[i]);
	}
	for (int i = 0; i < n; i++) {
		bad |= stream_join(&c[i]);
		scif_close(c[i].ep);
	}
	free(c);
	return bad ? 5 : 0;
}

static int mode_flood(uint16_t node, uint16_t port, uint64_t seed)
{
	struct stream_conn c = { 0 };

	c.ep = peer_connect(node, port);
	if (c.ep < 0)
		return 2;
	c.tx_seed = stream_seed(seed, 0, 1);
	c.rx_seed = stream_seed(seed, 0, 0);
	c.bytes = UINT64_MAX;
	stream_start(&c);
	stream_join(&c);
	return 0;
}

static int mode_echo_check(uint16_t node, uint16_t port, uint64_t bytes, uint64_t seed)
{
	struct scif_portID dst = { .node = node, .port = port };
	const char *v = getenv("SCIF_TEST_SPAWN_MS");
	long wait_ms = v && atol(v) > 10000 ? atol(v) : 10000;
	uint8_t out[4096], in[4096];
	scif_epd_t ep = scif_open();
	int r = -1;

	if (ep < 0)
		return 2;
	for (long i = 0; i < wait_ms / 2 && r < 0; i++) {
		r = scif_connect(ep, &dst);
		if (r < 0 && errno != ECONNREFUSED && errno != ENODEV)
			break;
		if (r < 0)
			usleep(2000);
	}
	if (r < 0)
		return 2;
	for (uint64_t pos = 0; pos < bytes; pos += sizeof(out)) {
		int n = bytes - pos < sizeof(out) ? (int)(bytes - pos) : (int)sizeof(out);

		stream_fill(seed, pos, out, (size_t)n);
		if (scif_send(ep, out, n, SCIF_SEND_BLOCK) != n ||
		    scif_recv(ep, in, n, SCIF_RECV_BLOCK) != n)
			return 4;
		if (memcmp(in, out, (size_t)n))
			return 5;
	}
	scif_close(ep);
	return 0;
}

static int mode_group(int argc, char **argv)
{
	pid_t pid[8];
	int n = 0, bad = 0;

	for (int i = 0; i < argc && n < 8; n++) {
		int end = i;

		while (end < argc && strcmp(argv[end], ","))
			end++;
		argv[end < argc ? end : argc] = NULL; /* argv[argc] is NULL already */
		pid[n] = fork();
		if (pid[n] == 0) {
			argv[i - 1] = "scif-peer"; /* the word before the role: ours to reuse */
			execv("/proc/self/exe", argv + i - 1);
			_exit(127);
		}
		if (pid[n] < 0)
			return 5;
		i = end + 1;
	}
	for (int k = 0; k < n; k++) {
		int st;

		if (waitpid(pid[k], &st, 0) != pid[k])
			return 5;
		st = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
		if (st && !bad) {
			fprintf(stderr, "group: role %d ended with status %d\n", k, st);
			bad = 20 + k;
		}
	}
	return bad;
}

static int mode_connect_die(uint16_t node, uint16_t port, int ms)
{
	scif_epd_t ep = peer_connect(node, port);

	if (ep < 0 || scif_send(ep, "d", 1, SCIF_SEND_BLOCK) != 1)
		return 2;
	usleep((useconds_t)ms * 1000);
	raise(SIGKILL);
	return 3;
}

static int mode_connect_hold(uint16_t node, uint16_t port)
{
	scif_epd_t ep = peer_connect(node, port);
	char c;

	if (ep < 0)
		return 2;
	printf("connect-hold: connected\n");
	fflush(stdout);
	while (scif_recv(ep, &c, 1, SCIF_RECV_BLOCK) == 1)
		;
	return errno == ECONNRESET ? 0 : 3;
}

static int mode_late_read(uint16_t node, uint16_t port, int rounds)
{
	for (int r = 0; r < rounds; r++) {
		scif_epd_t c1 = peer_connect(node, port), c2 = c1 < 0 ? -1 : peer_connect(node, port);
		char c, msg[64];

		if (c2 < 0)
			return 2;
		usleep(50000);
		if (scif_recv(c1, &c, 1, SCIF_RECV_BLOCK) != 1)
			return 3;
		memset(msg, 'a' + r % 26, sizeof(msg));
		if (scif_send(c2, msg, sizeof(msg), SCIF_SEND_BLOCK) != (int)sizeof(msg) ||
		    scif_recv(c2, &c, 1, SCIF_RECV_BLOCK) != 1)
			return 4;
		scif_close(c1);
		scif_close(c2);
	}
	return 0;
}

static int mode_sip(uint16_t node, uint16_t port)
{
	scif_epd_t ep = peer_connect(node, port);
	struct scif_pollepd p = { .epd = ep, .events = SCIF_POLLIN };
	char c;

	if (ep < 0)
		return 2;
	if (scif_poll(&p, 1, 10000) != 1)
		return 3;
	for (int i = 0; i < 2; i++) {
		usleep(300000);
		if (scif_recv(ep, &c, 1, SCIF_RECV_BLOCK) != 1)
			return 4;
	}
	/* Nothing more is read (it would free room): wait for the hang-up, 60 s at most. */
	for (int i = 0; i < 600; i++) {
		p.events = 0;
		if (scif_poll(&p, 1, 100) < 0)
			return 5;
		if (p.revents & SCIF_POLLHUP)
			return 0;
	}
	return 6;
}

static int mode_reborn(uint16_t node, uint16_t port, uint16_t port2, uint64_t seed, int gap_ms,
		       int hold_ms)
{
	pid_t child = fork();
	int st;

	if (child < 0)
		return 6;
	if (child == 0) {
		uint16_t nodes[64], self;

		/* attached (the device open and mapped), then forked: the fork holds the device */
		if (hold_ms > 0 && (scif_get_nodeIDs(nodes, 64, &self) < 1 ||
				    (child = fork()) < 0))
			_exit(8);
		if (hold_ms > 0 && child == 0) {
			usleep((useconds_t)hold_ms * 1000);
			_exit(0);
		}
		_exit(mode_flood(node, port, seed));
	}
	sleep(1);
	kill(child, SIGKILL);
	if (waitpid(child, &st, 0) != child || !WIFSIGNALED(st))
		return 7; /* it ended before the kill: it never connected */
	printf("reborn: the first card process is dead\n");
	fflush(stdout);
	if (gap_ms > 0)
		usleep((useconds_t)gap_ms * 1000);
	return mode_echo(port2);
}

static int mode_churn(uint16_t node, uint16_t port, int count)
{
	for (int i = 0; i < count; i++) {
		scif_epd_t ep = peer_connect(node, port);
		char c = (char)i;

		if (ep < 0 || scif_send(ep, &c, 1, SCIF_SEND_BLOCK) != 1)
			return 2;
		if (scif_recv(ep, &c, 1, SCIF_RECV_BLOCK) != 1)
			return 3;
		scif_close(ep);
	}
	return 0;
}

/* Wait until the test closes the other end of pipe @fd, then open an endpoint. */
static int mode_open_race(int fd)
{
	char c;
	scif_epd_t ep;

	while (read(fd, &c, 1) < 0 && errno == EINTR)
		;
	ep = scif_open();
	if (ep < 0) {
		fprintf(stderr, "scif-peer open-race: scif_open: %s\n", strerror(errno));
		return 2;
	}
	return scif_close(ep) == 0 ? 0 : 3;
}

int main(int argc, char **argv)
{
	if (argc >= 3 && !strcmp(argv[1], "echo"))
		return mode_echo((uint16_t)atoi(argv[2]));
	if (argc >= 7 && !strcmp(argv[1], "stream"))
		return mode_stream((uint16_t)atoi(argv[2]), (uint16_t)atoi(argv[3]), atoi(argv[4]),
				   strtoull(argv[5], NULL, 0), strtoull(argv[6], NULL, 0));
	if (argc >= 6 && !strcmp(argv[1], "reborn"))
		return mode_reborn((uint16_t)atoi(argv[2]), (uint16_t)atoi(argv[3]),
				   (uint16_t)atoi(argv[4]), strtoull(argv[5], NULL, 0),
				   argc >= 7 ? atoi(argv[6]) : 0, argc >= 8 ? atoi(argv[7]) : 0);
	if (argc >= 5 && !strcmp(argv[1], "flood"))
		return mode_flood((uint16_t)atoi(argv[2]), (uint16_t)atoi(argv[3]),
				  strtoull(argv[4], NULL, 0));
	if (argc >= 4 && !strcmp(argv[1], "second"))
		return mode_second((uint16_t)atoi(argv[2]), (uint16_t)atoi(argv[3]));
	if (argc >= 2 && !strcmp(argv[1], "attach-refused"))
		return mode_attach_refused();
	if (argc >= 5 && !strcmp(argv[1], "late-read"))
		return mode_late_read((uint16_t)atoi(argv[2]), (uint16_t)atoi(argv[3]),
				      atoi(argv[4]));
	if (argc >= 4 && !strcmp(argv[1], "sip"))
		return mode_sip((uint16_t)atoi(argv[2]), (uint16_t)atoi(argv[3]));
	if (argc >= 6 && !strcmp(argv[1], "echo-check"))
		return mode_echo_check((uint16_t)atoi(argv[2]), (uint16_t)atoi(argv[3]),
				       strtoull(argv[4], NULL, 0), strtoull(argv[5], NULL, 0));
	if (argc >= 3 && !strcmp(argv[1], "group"))
		return mode_group(argc - 2, argv + 2);
	if (argc >= 5 && !strcmp(argv[1], "connect-die"))
		return mode_connect_die((uint16_t)atoi(argv[2]), (uint16_t)atoi(argv[3]),
					atoi(argv[4]));
	if (argc >= 4 && !strcmp(argv[1], "connect-hold"))
		return mode_connect_hold((uint16_t)atoi(argv[2]), (uint16_t)atoi(argv[3]));
	if (argc >= 5 && !strcmp(argv[1], "churn"))
		return mode_churn((uint16_t)atoi(argv[2]), (uint16_t)atoi(argv[3]), atoi(argv[4]));
	if (argc >= 5 && !strcmp(argv[1], "hostile"))
		return hostile_run((uint16_t)atoi(argv[2]), (uint16_t)atoi(argv[3]), argv[4]);
	if (argc >= 6 && !strcmp(argv[1], "rma-serve"))
		return peer_rma_serve((uint16_t)atoi(argv[2]), (uint16_t)atoi(argv[3]),
				      strtoull(argv[4], NULL, 0), strtoull(argv[5], NULL, 0));
	if (argc >= 6 && !strcmp(argv[1], "rma-signal"))
		return peer_rma_signal((uint16_t)atoi(argv[2]), (uint16_t)atoi(argv[3]),
				       strtoull(argv[4], NULL, 0), atoi(argv[5]));
	if (argc >= 5 && !strcmp(argv[1], "mmap-pong"))
		return peer_mmap_pong((uint16_t)atoi(argv[2]), (uint16_t)atoi(argv[3]), atoi(argv[4]));
	if (argc >= 4 && !strcmp(argv[1], "rma-flood"))
		return peer_rma_flood((uint16_t)atoi(argv[2]), (uint16_t)atoi(argv[3]));
	if (argc >= 5 && !strcmp(argv[1], "bulk-echo"))
		return peer_bulk_echo((uint16_t)atoi(argv[2]), atoi(argv[3]), atoi(argv[4]));
	if (argc >= 4 && !strcmp(argv[1], "bulk-abandon"))
		return peer_bulk_abandon((uint16_t)atoi(argv[2]), (uint16_t)atoi(argv[3]));
	if (argc >= 6 && !strcmp(argv[1], "bulk-source"))
		return peer_bulk_source((uint16_t)atoi(argv[2]), (uint16_t)atoi(argv[3]),
					strtoull(argv[4], NULL, 0), strtoull(argv[5], NULL, 0));
	if (argc >= 7 && !strcmp(argv[1], "bulk-nbsink"))
		return peer_bulk_nbsink((uint16_t)atoi(argv[2]), (uint16_t)atoi(argv[3]),
					strtoull(argv[4], NULL, 0), atoi(argv[5]),
					strtoull(argv[6], NULL, 0));
	if (argc >= 6 && !strcmp(argv[1], "bulk-nbsource"))
		return peer_bulk_nbsource((uint16_t)atoi(argv[2]), (uint16_t)atoi(argv[3]),
					  strtoull(argv[4], NULL, 0), strtoull(argv[5], NULL, 0));
	if (argc >= 5 && !strcmp(argv[1], "connect-register"))
		return peer_connect_register((uint16_t)atoi(argv[2]), (uint16_t)atoi(argv[3]),
					     atoi(argv[4]));
	if (argc >= 5 && !strcmp(argv[1], "connect-close"))
		return peer_connect_close((uint16_t)atoi(argv[2]), (uint16_t)atoi(argv[3]),
					  atoi(argv[4]));
	if (argc >= 4 && !strcmp(argv[1], "mmap-hold"))
		return peer_mmap_hold((uint16_t)atoi(argv[2]), (uint16_t)atoi(argv[3]));
	if (argc >= 5 && !strcmp(argv[1], "low-fd-hold"))
		return peer_low_fd_hold((uint16_t)atoi(argv[2]), (uint16_t)atoi(argv[3]),
					atoi(argv[4]));
	if (argc >= 5 && !strcmp(argv[1], "rma-async-sync"))
		return peer_rma_async_sync((uint16_t)atoi(argv[2]), (uint16_t)atoi(argv[3]),
					   atoi(argv[4]));
	if (argc >= 3 && !strcmp(argv[1], "open-race"))
		return mode_open_race(atoi(argv[2]));
	fprintf(stderr, "usage: scif-peer echo|stream|flood|connect-hold|churn|hostile ...\n");
	return 64;
}
