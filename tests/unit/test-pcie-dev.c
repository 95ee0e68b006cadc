// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * test-pcie-dev.c - the pcie fabric's host device (libscif/fabric/pcie_dev.c) without the
 * fabric: the ivshmem server it runs, seen from raw ivshmem clients (a socket each, as QEMU's
 * ivshmem-doorbell device has). What pcie.c relies on: arrivals and departures are reported,
 * a departed id is given to the next client, and pcie_dev.departed runs before that client
 * is told the id, so that nothing the departed station left can be wiped after the newcomer
 * wrote it.
 */
#include <criterion/criterion.h>
#include <endian.h>
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "fabric.h"
#include "pcie.h"

static char sock_path[108];

/* What the callbacks saw, in order: 'U'/'D' (pcie_dev_cb) or 'X' (departed), with the id. */
struct seen {
	char what[32];
	uint16_t id[32];
	int n;
	int newcomer; /* the waiting client's socket, -1 while there is none */
	int newcomer_told; /* at the departure: had it been sent anything yet? */
};
static struct seen seen;

static void note(char what, uint16_t id)
{
	cr_assert_lt(seen.n, 32);
	seen.what[seen.n] = what;
	seen.id[seen.n++] = id;
}

static void on_event(void *arg, enum pcie_dev_event ev, uint16_t id)
{
	(void)arg;
	note(ev == PCIE_DEV_UP ? 'U' : 'D', id);
}

static void on_departed(struct pcie_dev *d, uint16_t id)
{
	cr_assert(d->host);
	note('X', id);
	if (seen.newcomer >= 0) {
		struct pollfd p = { .fd = seen.newcomer, .events = POLLIN };

		seen.newcomer_told = poll(&p, 1, 0) != 0;
	}
}

static int ready(struct pcie_dev *d)
{
	(void)d;
	return 0;
}

static void setup(void)
{
	snprintf(sock_path, sizeof(sock_path), "/tmp/scif-test-pcie-dev-%d.sock", (int)getpid());
	cr_assert_eq(setenv("SCIF_PCIE_SOCKET", sock_path, 1), 0);
	cr_assert_eq(setenv("SCIF_PCIE_SIZE", "4M", 1), 0);
	unsetenv("SCIF_PCIE_SHM");
	seen = (struct seen){ .newcomer = -1 };
}

static void teardown(void)
{
	char lock[128];

	unlink(sock_path);
	snprintf(lock, sizeof(lock), "%s.lock", sock_path);
	unlink(lock);
}

/* A raw ivshmem client: connected, nothing read yet. */
static int client(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	cr_assert_geq(fd, 0);
	strcpy(sa.sun_path, sock_path);
	cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0, "connect: %s",
		     strerror(errno));
	return fd;
}

/* The client's id: the second of the server's first two messages (version 0, then the id). */
static int64_t client_id(int fd)
{
	int64_t msg[2];
	size_t got = 0;
	struct pollfd p = { .fd = fd, .events = POLLIN };

	while (got < sizeof(msg)) {
		ssize_t r;

		cr_assert_eq(poll(&p, 1, 10000), 1, "no word from the server in 10 s");
		r = recv(fd, (char *)msg + got, sizeof(msg) - got, 0);
		cr_assert_gt(r, 0, "recv: %s", r ? strerror(errno) : "end of stream");
		got += (size_t)r;
	}
	cr_assert_eq(le64toh((uint64_t)msg[0]), 0, "protocol version");
	return (int64_t)le64toh((uint64_t)msg[1]);
}

TestSuite(pcie_dev, .init = setup, .fini = teardown, .timeout = 30);

/*
 * A client leaves and the next one connects before the server looks (a card process killed
 * and the next one started, the host's progress thread slow): one dispatch sees both. The
 * departure's callback runs before the newcomer is told anything, the newcomer gets the
 * departed id, and the events come departure first.
 */
Test(pcie_dev, departure_is_handled_before_its_id_is_given_again)
{
	struct pcie_dev d = { .fd = -1, .departed = on_departed };
	int first, second;

	d.ops = &scif__pcie_dev_host;
	cr_assert_eq(d.ops->open(&d, ready), 0);
	cr_assert(d.host);
	first = client();
	cr_assert_eq(d.ops->handle(&d, on_event, NULL), 0);
	cr_assert_eq(client_id(first), 1);
	cr_assert_eq(seen.n, 1);
	cr_assert(seen.what[0] == 'U' && seen.id[0] == 1, "arrival of 1: %c %u", seen.what[0],
		  seen.id[0]);

	/* Gone and replaced before the next dispatch. */
	close(first);
	second = client();
	seen.newcomer = second;
	cr_assert_eq(d.ops->handle(&d, on_event, NULL), 0);
	cr_assert_eq(seen.n, 4, "callbacks: %d", seen.n);
	cr_assert(seen.what[1] == 'X' && seen.id[1] == 1, "departed first: %c %u", seen.what[1],
		  seen.id[1]);
	cr_assert_not(seen.newcomer_told, "the newcomer was told before the departure was handled");
	cr_assert(seen.what[2] == 'D' && seen.id[2] == 1 && seen.what[3] == 'U' && seen.id[3] == 1,
		  "then down, up: %c %u, %c %u", seen.what[2], seen.id[2], seen.what[3],
		  seen.id[3]);
	cr_assert_eq(client_id(second), 1, "the newcomer takes the departed id");
	close(second);
	cr_assert_eq(d.ops->handle(&d, on_event, NULL), 0);
	cr_assert(seen.n == 6 && seen.what[4] == 'X' && seen.what[5] == 'D', "its departure");
	d.ops->close(&d);
	if (d.fd >= 0)
		close(d.fd);
}

/* A departure alone: departed, then PCIE_DEV_DOWN, nothing else; no id beyond the clients. */
Test(pcie_dev, departure_alone)
{
	struct pcie_dev d = { .fd = -1, .departed = on_departed };
	int a, b;

	d.ops = &scif__pcie_dev_host;
	cr_assert_eq(d.ops->open(&d, ready), 0);
	a = client();
	b = client();
	cr_assert_eq(d.ops->handle(&d, on_event, NULL), 0);
	cr_assert_eq(client_id(a), 1);
	cr_assert_eq(client_id(b), 2);
	cr_assert_eq(seen.n, 2);
	seen.n = 0;
	close(b);
	/* The server may need a second look to see the end of the stream: at most a few. */
	for (int i = 0; i < 100 && seen.n < 2; i++) {
		struct pollfd p = { .fd = -1, .events = POLLIN };
		int fds[8], nfd = d.ops->pollfds(&d, fds, 8);

		cr_assert_gt(nfd, 0);
		p.fd = fds[0];
		poll(&p, 1, 100);
		cr_assert_eq(d.ops->handle(&d, on_event, NULL), 0);
	}
	cr_assert_eq(seen.n, 2, "callbacks: %d", seen.n);
	cr_assert(seen.what[0] == 'X' && seen.id[0] == 2 && seen.what[1] == 'D' && seen.id[1] == 2,
		  "%c %u, %c %u", seen.what[0], seen.id[0], seen.what[1], seen.id[1]);
	close(a);
	d.ops->close(&d);
	if (d.fd >= 0)
		close(d.fd);
}
