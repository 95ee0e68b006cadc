// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * test-pcie.c - what only the pcie fabric has: an aperture that runs out, and a card that
 * corrupts the aperture. Run by tests/pcie/check-pcie.sh (this process node 0, the host,
 * serving the aperture; its peers node 1, ivshmem clients); built for check-pcie only.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "scif.h"
#include "../common.h"

#define RESET_BOUND_MS 5000 /* a corrupt queue pair costs the links at the next doorbell */

/* Start tests/pcie/pcie-liar MODE PORT as node 1 (behind SCIF_TEST_NODE_EXEC). */
static pid_t spawn_liar(const char *mode, uint16_t port)
{
	const char *top = getenv("SCIF_TEST_TOP");
	char path[4096], portbuf[16];
	char *args[] = { (char *)mode, portbuf, NULL };

	snprintf(path, sizeof(path), "%s/tests/pcie/pcie-liar", top ? top : ".");
	snprintf(portbuf, sizeof(portbuf), "%u", port);
	return test_spawn(1, path, args, -1);
}

/* Bound on a card's start: 5 s, or longer where it boots a guest (SCIF_TEST_SPAWN_MS). */
static uint64_t card_start_ms(void)
{
	return test_spawn_ms() > 5000 ? (uint64_t)test_spawn_ms() : 5000;
}

/* Is node 1 online (a card attached) within card_start_ms()? Stops early if @pid ends (*@st). */
static int wait_node1(pid_t pid, int *st)
{
	uint64_t until = test_now_ms() + card_start_ms();

	*st = -1;
	for (;;) {
		uint16_t nodes[8], self;
		int n = scif_get_nodeIDs(nodes, 8, &self), s;

		for (int i = 0; i < n && i < 8; i++)
			if (nodes[i] == 1)
				return 1;
		if (waitpid(pid, &s, WNOHANG) == pid) {
			*st = WIFEXITED(s) ? WEXITSTATUS(s) : 128 + WTERMSIG(s);
			return 0;
		}
		if (test_now_ms() > until)
			return 0;
		usleep(5000);
	}
}

/*
 * The echo peer answers after the liar is gone: the aperture serves the next card. Every
 * check is made before the verdict, so that the peer is killed and reaped whatever happens.
 */
static void echo_works(uint16_t port)
{
	char a1[16], buf[4] = "";
	char *args[] = { "echo", test_num(a1, port), NULL };
	pid_t pid = test_spawn_peer(1, args);
	scif_epd_t ep = scif_open();
	int st, up = wait_node1(pid, &st), conn = 0, ok = 0;

	if (up)
		conn = test_connect_retry(ep, 1, port);
	if (conn > 0)
		ok = scif_send(ep, "abc", 3, SCIF_SEND_BLOCK) == 3 &&
		     scif_recv(ep, buf, 3, SCIF_RECV_BLOCK) == 3 && !strcmp(buf, "abc");
	scif_close(ep);
	if (st < 0) {
		kill(pid, SIGKILL);
		test_wait(pid);
	}
	cr_assert(up, "the next card did not attach in %llu ms (it ended with status %d; -1: it "
		      "still ran)", (unsigned long long)card_start_ms(), st);
	cr_assert_gt(conn, 0, "connect to the next card: %s", strerror(errno));
	cr_assert(ok, "no echo from the next card");
}

static void liar_costs_only_its_links(const char *mode)
{
	uint16_t port = test_port();
	scif_epd_t lep = test_listener(port, 4), ep;
	struct scif_portID peer;
	pid_t pid = spawn_liar(mode, port);
	uint64_t until;
	char c;
	int st;

	cr_assert_eq(test_accept_or_peer_death(lep, &peer, &ep, pid, (int)card_start_ms() + 5000),
		     0);
	cr_assert_eq(scif_recv(ep, &c, 1, SCIF_RECV_BLOCK), 1);
	/* Then the corruption: the connection is lost within the bound, nothing hangs. */
	until = test_now_ms() + RESET_BOUND_MS;
	for (;;) {
		struct scif_pollepd p = { .epd = ep, .events = SCIF_POLLIN };
		int r = scif_poll(&p, 1, 100);

		if (r == 1 && (p.revents & SCIF_POLLHUP))
			break;
		if (r == 1 && scif_recv(ep, &c, 1, 0) < 0) {
			cr_assert_eq(errno, ECONNRESET, "recv: %s", strerror(errno));
			break;
		}
		if (waitpid(pid, &st, WNOHANG) == pid)
			cr_assert_fail("the liar (%d) ended first, status %d", (int)pid,
				       WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
		cr_assert_lt(test_now_ms(), until, "the %s corruption did not cost the link", mode);
	}
	scif_close(ep);
	kill(pid, SIGKILL);
	st = test_wait(pid);
	cr_assert_eq(st, 128 + SIGKILL, "the liar ended with status %d (2: no connect, 3: no spy)",
		     st);
	echo_works(port);
	scif_close(lep);
}

Test(pcie, corrupt_write_index_costs_the_links_not_the_host, .timeout = 60)
{
	liar_costs_only_its_links("windex");
}

Test(pcie, record_past_the_ring_end_costs_the_links_not_the_host, .timeout = 60)
{
	liar_costs_only_its_links("reclen");
}

Test(pcie, random_queue_pair_costs_the_links_not_the_host, .timeout = 60)
{
	liar_costs_only_its_links("garbage");
}

/*
 * A small aperture (8 MiB: a heap of about 3.5 MiB per node) fills up: scif_register says
 * ENOMEM, the connection goes on working, and freed windows can be registered again.
 */
Test(pcie, aperture_full_is_enomem_and_nothing_else_breaks, .timeout = 60)
{
	const size_t len = 256 * 1024;
	off_t off[64];
	void *mem[64];
	scif_epd_t a, b;
	char c = 0;
	int n;

	/* Before this process attaches (each Criterion test is a process of its own). */
	setenv("SCIF_PCIE_SIZE", "8M", 1);
	setenv("SCIF_PCIE_BOOT_MS", "0", 1);
	test_pair(&a, &b, NULL);
	for (n = 0; n < 64; n++) {
		mem[n] = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		cr_assert_neq(mem[n], MAP_FAILED);
		off[n] = scif_register(a, mem[n], len, 0, SCIF_PROT_READ | SCIF_PROT_WRITE, 0);
		if (off[n] < 0)
			break;
	}
	cr_assert_lt(n, 64, "64 windows of 256 KiB fit an 8 MiB aperture?");
	cr_assert_eq(errno, ENOMEM, "register when full: %s", strerror(errno));
	cr_assert_gt(n, 0, "not even one window fits");
	/* The connection is untouched. */
	cr_assert_eq(scif_send(a, "z", 1, SCIF_SEND_BLOCK), 1);
	cr_assert_eq(scif_recv(b, &c, 1, SCIF_RECV_BLOCK), 1);
	cr_assert_eq(c, 'z');
	/* A freed window makes room again. */
	cr_assert_eq(scif_unregister(a, off[0], len), 0);
	off[0] = scif_register(a, mem[0], len, 0, SCIF_PROT_READ | SCIF_PROT_WRITE, 0);
	cr_assert_geq(off[0], 0, "register after unregister: %s", strerror(errno));
	scif_close(a);
	scif_close(b);
}

/*
 * Read what @fd says until @word shows in *@line (up to @ms); the text read so far stays in
 * @line (NUL-terminated).
 */
static int read_until(int fd, char *line, size_t cap, size_t *have, const char *word, int ms)
{
	uint64_t until = test_now_ms() + (uint64_t)ms;

	line[*have] = 0;
	while (!strstr(line, word) && test_now_ms() < until && *have < cap - 1) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		ssize_t r;

		if (poll(&p, 1, 100) < 1)
			continue;
		r = read(fd, line + *have, cap - 1 - *have);
		if (r <= 0)
			break;
		*have += (size_t)r;
		line[*have] = 0;
	}
	return strstr(line, word) != NULL;
}

/*
 * Before this process attaches (each Criterion test is a process of its own): @slices
 * stations in the aperture, no boot wait, and @devices ivshmem devices for a card in a guest
 * (NULL: the default one).
 */
static void make_room(const char *slices, const char *devices)
{
	setenv("SCIF_PCIE_NODES", slices, 1);
	setenv("SCIF_PCIE_BOOT_MS", "0", 1);
	if (devices)
		setenv("SCIF_GUEST_DEVICES", devices, 1);
}

/*
 * A host process dies (SIGKILL) while a card holds a connection to it: the card's blocked
 * scif_recv returns ECONNRESET. With @hub_here 0 this test process stays out of the fabric,
 * so the dying process is the hub, serving the aperture: a card in a guest cannot see it end
 * (QEMU keeps the memory) and learns it from the hub's heartbeat stopping
 * (docs/pcie-fabric.md). With @hub_here 1 this process is the hub and the dying one a second
 * host process: the hub sees it go and tells the card (a ROSTER record).
 */
static void host_process_killed_under_a_card(int hub_here)
{
	uint16_t port = test_port();
	char a1[16], a2[16], line[256];
	char *host_args[] = { "echo", test_num(a1, port), NULL };
	char *card_args[] = { "connect-hold", "0", test_num(a2, port), NULL };
	uint64_t killed_at;
	int fds[2], st = -1;
	size_t have = 0;
	pid_t host, card;

	if (hub_here) {
		uint16_t self;

		make_room("3", NULL);
		/* Attach first: this process serves the aperture. */
		cr_assert_geq(scif_get_nodeIDs(NULL, 0, &self), 1, "attach: %s", strerror(errno));
	}
	cr_assert_eq(pipe2(fds, O_CLOEXEC), 0);
	host = test_spawn(0, test_peer_path(), host_args, -1);
	card = test_spawn(1, test_peer_path(), card_args, fds[1]);
	close(fds[1]);
	/* The card says when it is connected (a guest boots first). */
	if (!read_until(fds[0], line, sizeof(line), &have, "connected", test_spawn_ms())) {
		close(fds[0]);
		kill(card, SIGKILL);
		kill(host, SIGKILL);
		test_wait(card);
		test_wait(host);
		cr_assert_fail("the card never connected (it said \"%s\")", line);
	}
	close(fds[0]);
	kill(host, SIGKILL);
	killed_at = test_now_ms();
	cr_expect_eq(test_wait(host), 128 + SIGKILL);
	/* The card's recv ends with ECONNRESET (exit 0), within the heartbeat's bound. */
	test_waitpid(card, &st, 30000);
	fprintf(stderr, "pcie: the card saw its host process (%s) gone %llu ms after the kill\n",
		hub_here ? "a second one" : "the hub", (unsigned long long)(test_now_ms() - killed_at));
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0,
		  "the card ended with status %d (3: its recv did not end with ECONNRESET)",
		  WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
}

Test(pcie, host_killed_resets_the_card, .timeout = 180)
{
	host_process_killed_under_a_card(0);
}

Test(pcie, second_host_process_killed_resets_the_card, .timeout = 180)
{
	host_process_killed_under_a_card(1);
}

/*
 * The card is reset (a hard reset: its guest reboots, its QEMU and device stay; SIGUSR1 to
 * scripts/guest-run.sh with SCIF_GUEST_RESET=1) while its process holds a connection: the
 * host's endpoint resets within 2 s, and the card, booted again, connects again. Nothing runs
 * in the guest to say goodbye: the host learns it from the guest kernel's heartbeat stopping
 * (0.7 s), before the rebooted card's next process comes (about 3 s) or the process's own
 * heartbeat could tell (5 s). Guest pass only: a card process on the host has no guest.
 */
Test(pcie, card_reset_connects_again, .timeout = 240)
{
	uint16_t port = test_port();
	char a1[16], buf[16];
	char *args[] = { "connect-hold", "0", test_num(a1, port), NULL };
	scif_epd_t lep = test_listener(port, 1), ep, ep2;
	struct scif_pollepd pe;
	struct scif_portID peer;
	uint64_t reset_at, lost;
	pid_t card;

	setenv("SCIF_GUEST_RESET", "1", 1);
	card = test_spawn_peer(1, args);
	cr_assert_eq(test_accept_or_peer_death(lep, &peer, &ep, card, test_spawn_ms()), 0);
	kill(card, SIGUSR1);
	reset_at = test_now_ms();
	pe = (struct scif_pollepd){ .epd = ep, .events = SCIF_POLLIN };
	cr_assert_eq(scif_poll(&pe, 1, 30000), 1, "the connection outlived the card's reset by 30 s");
	lost = test_now_ms() - reset_at;
	cr_assert_eq(scif_recv(ep, buf, 1, 0), -1);
	cr_assert_eq(errno, ECONNRESET, "recv: %s", strerror(errno));
	fprintf(stderr, "pcie: the host lost the reset card's connection %llu ms after the reset\n",
		(unsigned long long)lost);
	cr_assert_lt(lost, 2000, "the reset was seen only %llu ms after (the kernel heartbeat "
		     "stops 0.7 s after it)", (unsigned long long)lost);
	/* The same program, run again by the rebooted guest, connects again. */
	cr_assert_eq(test_accept_or_peer_death(lep, &peer, &ep2, card, test_spawn_ms()), 0);
	cr_assert_eq(peer.node, 1);
	fprintf(stderr, "pcie: the reset card connected again %llu ms after the reset\n",
		(unsigned long long)(test_now_ms() - reset_at));
	scif_close(ep);
	scif_close(ep2); /* its connect-hold ends with ECONNRESET: exit 0 */
	scif_close(lep);
	cr_assert_eq(test_wait(card), 0);
}

/*
 * One process is the card: a second SCIF process in the same guest finds the device taken
 * (ENXIO from its first call), and the first goes on undisturbed. Guest pass only: on the
 * host, a second ivshmem client is another card.
 */
Test(pcie, second_card_process_in_a_guest_is_refused, .timeout = 180)
{
	uint16_t port = test_port();
	char a1[16], buf[4] = "";
	char *args[] = { "second", "0", test_num(a1, port), NULL };
	scif_epd_t lep = test_listener(port, 1), ep;
	struct scif_pollepd pe;
	struct scif_portID peer;
	unsigned char st = 255;
	pid_t card;

	card = test_spawn_peer(1, args);
	cr_assert_eq(test_accept_or_peer_death(lep, &peer, &ep, card, test_spawn_ms()), 0);
	pe = (struct scif_pollepd){ .epd = ep, .events = SCIF_POLLIN };
	if (scif_poll(&pe, 1, 60000) != 1 || scif_recv(ep, &st, 1, 0) != 1) {
		kill(card, SIGKILL);
		cr_assert_fail("no word on the second process from the card (card status %d)",
			       test_wait(card));
	}
	cr_assert_eq(st, 0, "the second card process ended with %d (3: it attached)", st);
	/* The first is undisturbed (its echo within 60 s, else its status is the verdict). */
	cr_assert_eq(scif_send(ep, "abc", 3, SCIF_SEND_BLOCK), 3);
	pe = (struct scif_pollepd){ .epd = ep, .events = SCIF_POLLIN };
	if (scif_poll(&pe, 1, 60000) != 1 || scif_recv(ep, buf, 3, SCIF_RECV_BLOCK) != 3) {
		kill(card, SIGKILL);
		cr_assert_fail("no echo from the first card process (card status %d)",
			       test_wait(card));
	}
	cr_assert_str_eq(buf, "abc");
	scif_close(ep);
	scif_close(lep);
	cr_assert_eq(test_wait(card), 0);
}

/*
 * A card process dies (SIGKILL) while its device stays (in a guest: the guest lives on): the
 * host's connection to it resets, and the next card process on the same device is served
 * (peer mode "reborn": the dead one was its fork child). With @gap_ms, the next process comes
 * that long after the death, so that its arrival cannot be what tells the host; without, it
 * may be. With @hold_ms, a fork of the dead process keeps its device that long, so the device
 * cannot tell either (no last will, no departure from the ivshmem server) and only the dead
 * process's stopped heartbeat can. @within_ms bounds how long after the connection (the kill
 * comes 1 s after the card's fork) the host must have seen the loss.
 */
static void card_process_killed(int gap_ms, int hold_ms, uint64_t within_ms)
{
	uint16_t port = test_port(), port2 = test_port();
	char a1[16], a2[16], a3[24], a4[16], a5[16], buf[1 << 16];
	char *args[] = { "reborn", "0", test_num(a1, port), test_num(a2, port2),
			 test_num(a3, 77), test_num(a4, (uint64_t)gap_ms),
			 test_num(a5, (uint64_t)hold_ms), NULL };
	scif_epd_t lep = test_listener(port, 1), ep, ep2;
	struct scif_portID peer;
	uint64_t lost, start;
	pid_t card;
	int n, st;

	card = test_spawn_peer(1, args);
	cr_assert_eq(test_accept_or_peer_death(lep, &peer, &ep, card, test_spawn_ms()), 0);
	start = test_now_ms();
	/*
	 * The flood goes on until its process is killed (1 s); then the connection resets. A
	 * card that stops sending without its connection resetting fails the test in 60 s.
	 */
	do {
		struct scif_pollepd pe = { .epd = ep, .events = SCIF_POLLIN };

		if (scif_poll(&pe, 1, 1000) < 1) {
			n = 0;
			continue;
		}
		n = scif_recv(ep, buf, sizeof(buf), 0);
		if (n < 0 && errno == EAGAIN)
			n = 0;
	} while (n >= 0 && test_now_ms() - start < 60000);
	lost = test_now_ms() - start;
	if (n >= 0) {
		kill(card, SIGKILL);
		cr_assert_fail("the connection did not reset in 60 s (card status %d)",
			       test_wait(card));
	}
	cr_assert_eq(errno, ECONNRESET, "recv: %s", strerror(errno));
	fprintf(stderr, "pcie: the host lost the killed card process %llu ms after it connected "
		"(killed 1 s after its fork; its device held %d ms; the next process %d ms after "
		"the death)\n", (unsigned long long)lost, hold_ms, gap_ms);
	cr_assert_lt(lost, within_ms, "the loss was seen only %llu ms after the connection",
		     (unsigned long long)lost);
	scif_close(ep);
	/* The next process on that device, @gap_ms after the death. */
	ep2 = scif_open();
	start = test_now_ms();
	while ((n = test_connect_retry(ep2, 1, port2)) < 0 && errno == ENODEV &&
	       test_now_ms() - start < (uint64_t)gap_ms + 1000)
		;
	if (n < 0) {
		int e = errno;

		/* Its status tells whether it attached (2: no listener; killed: it waits). */
		kill(card, SIGKILL);
		cr_assert_fail("connect to the next card process: %s (card status %d)",
			       strerror(e), test_wait(card));
	}
	cr_assert_eq(scif_send(ep2, "xyz", 3, SCIF_SEND_BLOCK), 3);
	cr_assert_eq(scif_recv(ep2, buf, 3, SCIF_RECV_BLOCK), 3);
	cr_assert(!memcmp(buf, "xyz", 3));
	scif_close(ep2);
	scif_close(lep);
	st = test_wait(card);
	cr_assert_eq(st, 0, "the card ended with status %d", st);
}

Test(pcie, card_process_killed_then_the_next_is_served, .timeout = 180)
{
	card_process_killed(0, 0, 60000);
}

/*
 * The device tells the host at once (kernel/shim's last will in a guest, the ivshmem server's
 * departure for a client card): well before the heartbeat's PCIE_CARD_LOST_MS (5 s), and
 * before the next process comes (4 s after the death).
 */
Test(pcie, card_process_killed_alone_is_lost_at_once, .timeout = 180)
{
	card_process_killed(4000, 0, 1000 + 2500);
}

/*
 * The device outlives the process (a fork keeps it 12 s): the stopped heartbeat tells, 5 s
 * after the death, well before the device could (12 s) or the next process comes (13 s).
 */
Test(pcie, card_process_killed_while_its_device_lives_on_is_lost_by_its_heartbeat,
     .timeout = 180)
{
	card_process_killed(13000, 12000, 1000 + 8000);
}

/*
 * This process's part of echo-check (scif-peer): @bytes of data echoed by the process @echo
 * holds. Each piece's blocking send and receive are under a watchdog: a peer that stops
 * echoing is killed after 30 s and the test fails with its status.
 */
static void echo_check_here(scif_epd_t ep, size_t bytes, uint64_t seed, pid_t echo)
{
	uint8_t out[4096], in[4096];

	for (size_t pos = 0; pos < bytes; pos += sizeof(out)) {
		struct test_watch w;
		int ok;

		for (size_t i = 0; i < sizeof(out); i++)
			out[i] = (uint8_t)(seed + pos + i * 7);
		test_watch_start(&w, echo, 30000);
		ok = scif_send(ep, out, sizeof(out), SCIF_SEND_BLOCK) == (int)sizeof(out) &&
		     scif_recv(ep, in, sizeof(in), SCIF_RECV_BLOCK) == (int)sizeof(in);
		test_watch_end(&w, ok, "an echoed piece");
		cr_assert(ok, "send or recv of the piece at %zu: %s", pos, strerror(errno));
		cr_assert_eq(memcmp(in, out, sizeof(in)), 0, "echoed bytes differ at %zu", pos);
	}
}

/*
 * The process behind @ep was killed: its connection must report the loss (ECONNRESET) within
 * 10 s, without a blocking call that could wait for ever.
 */
static void expect_reset(scif_epd_t ep, const char *who)
{
	uint64_t until = test_now_ms() + 10000;
	char byte;

	for (;;) {
		struct scif_pollepd p = { .epd = ep, .events = SCIF_POLLIN };

		cr_assert_geq(scif_poll(&p, 1, 100), 0, "scif_poll: %s", strerror(errno));
		if (p.revents)
			break;
		cr_assert_lt(test_now_ms(), until, "%s: no reset within 10 s", who);
	}
	cr_assert_eq(scif_recv(ep, &byte, 1, 0), -1, "%s: a byte after its death", who);
	cr_assert_eq(errno, ECONNRESET, "%s: %s", who, strerror(errno));
}

/* Are the online nodes exactly @want (a bit per node) within @ms? */
static int nodes_become(uint64_t want, int ms)
{
	uint64_t until = test_now_ms() + (uint64_t)ms;

	for (;;) {
		uint16_t nodes[8], self;
		uint64_t have = 0;
		int n = scif_get_nodeIDs(nodes, 8, &self);

		for (int i = 0; i < n && i < 8; i++)
			have |= 1ull << nodes[i];
		if (have == want)
			return 1;
		if (test_now_ms() > until)
			return 0;
		usleep(5000);
	}
}

/*
 * Several processes on each side at once, each with its own endpoints (issue 11, item 4):
 * this process (the host process that serves the aperture, station 0) and a second host
 * process; two card processes of node 1, two of node 2. Host to card with two stations of the
 * node asked (the one that listens accepts); card to the second host process (this process
 * refuses, it accepts); card to card, relayed by the hub; then a card process killed: only
 * its part goes (its node leaves when it was the last), and the next process on its node is
 * served in its slice.
 */
Test(pcie, several_processes_on_each_node, .timeout = 180)
{
	uint16_t pa = test_port(), pc = test_port(), ph = test_port(), pd = test_port();
	uint16_t pe = test_port();
	char b1[16], b2[16], b3[16], b4[16], b5[16], b6[16], b7[16];
	char *a_args[] = { "echo", test_num(b1, pa), NULL };
	char *c_args[] = { "echo", test_num(b2, pc), NULL };
	char *h_args[] = { "echo", test_num(b3, ph), NULL };
	char *x_args[] = { "echo-check", "2", test_num(b4, pc), "1048576", "11", NULL };
	char *y_args[] = { "echo-check", "0", test_num(b5, ph), "1048576", "12", NULL };
	char *d_args[] = { "echo", test_num(b6, pd), NULL };
	char *e_args[] = { "echo", test_num(b7, pe), NULL };
	pid_t a, c, h, x, y, d, e;
	scif_epd_t ep, epd, epe;
	int st;

	make_room("8", NULL);
	ep = scif_open();
	epd = scif_open();
	cr_assert(ep >= 0 && epd >= 0, "scif_open: %s", strerror(errno));
	a = test_spawn_peer(1, a_args);
	c = test_spawn_peer(2, c_args);
	h = test_spawn_peer(0, h_args);
	x = test_spawn_peer(1, x_args); /* node 1 -> node 2: card to card */
	y = test_spawn_peer(2, y_args); /* node 2 -> node 0's second process */
	d = test_spawn_peer(2, d_args);

	/* Host to card: node 1 has two processes (a, x); a listens. */
	cr_assert_gt(test_connect_retry(ep, 1, pa), 0, "connect to node 1: %s", strerror(errno));
	echo_check_here(ep, 1 << 20, 13, a);
	cr_assert_gt(test_connect_retry(epd, 2, pd), 0, "connect to node 2: %s", strerror(errno));
	echo_check_here(epd, 64 << 10, 14, d);
	cr_assert_eq(test_waitpid(x, &st, 60000), x);
	cr_assert(WIFEXITED(st) && !WEXITSTATUS(st), "card to card (node 1 -> 2) failed: %d", st);
	cr_assert_eq(test_waitpid(y, &st, 60000), y);
	cr_assert(WIFEXITED(st) && !WEXITSTATUS(st),
		  "card to the second host process (node 2 -> 0) failed: %d", st);
	cr_assert_eq(test_wait(c), 0, "node 2's echo for node 1 failed");
	cr_assert_eq(test_wait(h), 0, "the second host process's echo failed");
	cr_assert(nodes_become(7, 5000), "nodes 0, 1 and 2 are not all online");

	/* Node 2's last process killed: its connection resets, its node leaves, a's goes on. */
	kill(d, SIGKILL);
	cr_assert_eq(test_wait(d), 128 + SIGKILL);
	expect_reset(epd, "node 2's killed process");
	cr_assert(nodes_become(3, 5000), "node 2 stays online after its last process died");
	echo_check_here(ep, 64 << 10, 15, a);

	/* The next process of node 2 is served (in a slice the dead ones freed). */
	e = test_spawn_peer(2, e_args);
	epe = scif_open();
	cr_assert_gt(test_connect_retry(epe, 2, pe), 0, "connect to node 2's next process: %s",
		     strerror(errno));
	echo_check_here(epe, 64 << 10, 16, e);
	scif_close(epe);
	scif_close(epd);
	scif_close(ep);
	cr_assert_eq(test_wait(e), 0);
	cr_assert_eq(test_wait(a), 0);
}

/*
 * Three SCIF processes in one card at once, each on a device of its own (a guest with three
 * ivshmem-doorbell devices; in the host pass, three ivshmem clients of node 1): one serves
 * this process, one serves another process of the card, relayed by the hub. The card is one
 * node (SCIF_NODE, passed into the guest), whatever its devices' peer ids.
 */
Test(pcie, three_processes_in_one_card, .timeout = 240)
{
	uint16_t p1 = test_port(), p2 = test_port();
	char b1[16], b2[16], b3[16];
	char *args[] = { "group", "echo", test_num(b1, p1), ",", "echo", test_num(b2, p2), ",",
			 "echo-check", "1", test_num(b3, p2), "262144", "7", NULL };
	scif_epd_t ep;
	pid_t card;

	make_room("4", "3");
	ep = scif_open();
	cr_assert_geq(ep, 0, "scif_open: %s", strerror(errno));
	card = test_spawn_peer(1, args);
	cr_assert_gt(test_connect_retry(ep, 1, p1), 0, "connect to the card: %s", strerror(errno));
	echo_check_here(ep, 256 << 10, 21, card);
	cr_assert(nodes_become(3, 5000), "the card's processes are not one node 1");
	scif_close(ep);
	cr_assert_eq(test_wait(card), 0, "the card's processes (20 + which failed first)");
}

static pid_t hub_pid;

/* A hub left by a failed test would serve the next tests' socket: it goes with the test. */
static void hub_fini(void)
{
	if (hub_pid > 0) {
		kill(hub_pid, SIGKILL);
		waitpid(hub_pid, NULL, 0);
	}
}

/*
 * The hub daemon keeps the aperture served while host processes come and go: one card (in
 * the guest pass one QEMU, which could not reconnect to a new server) serves a host process,
 * then, after that one ended, the next. A second hub is refused; the hub ends cleanly on
 * SIGTERM. This test process stays out of the fabric.
 */
Test(pcie, hub_daemon_outlives_host_processes, .timeout = 240, .fini = hub_fini)
{
	uint16_t p1 = test_port(), p2 = test_port();
	char b1[16], b2[16], b3[16], b4[16], path[4096], log[4096];
	char *card_args[] = { "group", "echo", test_num(b1, p1), ",", "echo", test_num(b2, p2),
			      NULL };
	char *h1_args[] = { "echo-check", "1", test_num(b3, p1), "262144", "31", NULL };
	char *h2_args[] = { "echo-check", "1", test_num(b4, p2), "262144", "32", NULL };
	char *no_args[] = { NULL };
	const char *top = getenv("SCIF_TEST_TOP");
	pid_t hub, card, h, again;
	size_t have = 0;
	int fds[2], st;

	make_room("4", "2");
	snprintf(path, sizeof(path), "%s/tools/scif_pcie_hub", top ? top : ".");
	cr_assert_eq(pipe2(fds, O_CLOEXEC), 0);
	hub_pid = hub = test_spawn(0, path, no_args, fds[1]);
	close(fds[1]);
	if (!read_until(fds[0], log, sizeof(log), &have, "serving", 10000)) {
		kill(hub, SIGKILL);
		cr_assert_fail("scif_pcie_hub did not serve (it said \"%s\", status %d)", log,
			       test_wait(hub));
	}
	again = test_spawn(0, path, no_args, -1);
	cr_assert_eq(st = test_wait(again), 1, "a second hub: status %d, not refused", st);
	card = test_spawn_peer(1, card_args);
	h = test_spawn_peer(0, h1_args);
	cr_assert_eq(test_waitpid(h, &st, 120000), h);
	cr_assert(WIFEXITED(st) && !WEXITSTATUS(st), "the first host process failed: %d", st);
	test_assert_peer_alive(hub, "after the first host process");
	h = test_spawn_peer(0, h2_args);
	cr_assert_eq(test_waitpid(h, &st, 120000), h);
	cr_assert(WIFEXITED(st) && !WEXITSTATUS(st), "the next host process failed: %d", st);
	cr_assert_eq(test_wait(card), 0, "the card's processes (20 + which failed first)");
	kill(hub, SIGTERM);
	st = test_wait(hub);
	hub_pid = 0;
	cr_assert_eq(st, 0, "the hub ended with status %d on SIGTERM", st);
	close(fds[0]);
}

/*
 * Two processes in one card; one is killed (by itself, SIGKILL, 300 ms after it connected):
 * its connection to this process resets (in a guest the shim's last will tells the hub at
 * once, and the hub this process), and the other's goes on.
 */
Test(pcie, card_process_killed_beside_another, .timeout = 240)
{
	uint16_t p1 = test_port(), p2 = test_port();
	char b1[16], b2[16];
	char *args[] = { "group", "echo", test_num(b1, p1), ",", "connect-die", "0",
			 test_num(b2, p2), "300", NULL };
	scif_epd_t ep, lep, dying;
	struct scif_portID peer;
	uint64_t t0;
	pid_t card;
	char c;
	int st;

	make_room("4", "2");
	ep = scif_open();
	lep = test_listener(p2, 4);
	card = test_spawn_peer(1, args);
	cr_assert_eq(test_accept_or_peer_death(lep, &peer, &dying, card, test_spawn_ms()), 0);
	test_poll_or_peer_death(dying, SCIF_POLLIN, card, test_spawn_ms());
	cr_assert_eq(scif_recv(dying, &c, 1, 0), 1);
	t0 = test_now_ms();
	expect_reset(dying, "the card process that killed itself");
	fprintf(stderr, "pcie: a card process's death seen %llu ms after its last byte\n",
		(unsigned long long)(test_now_ms() - t0));
	cr_assert_gt(test_connect_retry(ep, 1, p1), 0, "connect to the other: %s", strerror(errno));
	echo_check_here(ep, 64 << 10, 41, card);
	scif_close(ep);
	scif_close(dying);
	scif_close(lep);
	st = test_wait(card);
	cr_assert_eq(st, 21, "the group: %d (21: the second role failed, as it killed itself)", st);
}
