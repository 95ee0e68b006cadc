// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * scif_pcie_hub - serve the pcie fabric's aperture for as long as it runs
 * (docs/man/scif_pcie_hub.8, docs/pcie-fabric.md).
 *
 * On the pcie fabric the first host process serves the aperture (the hub, station 0) and every
 * other process of every node reaches the others through it; when it ends, the cards are cut
 * off for good (QEMU does not reconnect to a new server). This daemon is that first process and
 * nothing else, so that host programs may come and go. It uses nothing but the SCIF API: its
 * first call attaches (with SCIF_PCIE_SERVE=1: serve, or fail if another process serves
 * already) and the library's progress thread does the rest. It logs the nodes that come and
 * go, and ends on SIGTERM, SIGINT or SIGHUP.
 */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "scif.h"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: scif_pcie_hub\n"
		"Serves the pcie fabric's aperture (SCIF_PCIE_SOCKET, SCIF_PCIE_SIZE, SCIF_PCIE_SHM,\n"
		"SCIF_PCIE_NODES as for any host process) until SIGTERM, SIGINT or SIGHUP, so that\n"
		"host processes may come and go while the cards stay attached.\n");
}

/* The online nodes, a bit each; -1 with errno if the fabric could not be attached. */
static int64_t online(void)
{
	uint16_t nodes[64], self;
	int n = scif_get_nodeIDs(nodes, 64, &self);
	int64_t bits = 0;

	if (n < 0)
		return -1;
	for (int i = 0; i < n && i < 64; i++)
		bits |= (int64_t)1 << nodes[i];
	return bits;
}

int main(int argc, char **argv)
{
	const char *node = getenv("SCIF_NODE"), *sock = getenv("SCIF_PCIE_SOCKET");
	struct timespec tick = { .tv_sec = 1 };
	int64_t bits, now;
	sigset_t set;
	int sig;

	if (argc > 1) {
		int help = !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help");

		usage(help ? stdout : stderr);
		return help ? 0 : 2;
	}
	if (node && *node && strcmp(node, "0")) {
		fprintf(stderr, "scif_pcie_hub: SCIF_NODE=%s: the hub is a host process (node 0)\n",
			node);
		return 2;
	}
	/* Signals are taken synchronously, below; none interrupts the library's threads. */
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	sigprocmask(SIG_BLOCK, &set, NULL);
	/* A log reader that goes away must not take the aperture, and every card, with it. */
	signal(SIGPIPE, SIG_IGN);
	setenv("SCIF_FABRIC", "pcie", 1);
	setenv("SCIF_PCIE_SERVE", "1", 1);
	bits = online();
	if (bits < 0) {
		fprintf(stderr,
			"scif_pcie_hub: cannot serve the aperture: %s (another process serves it, or "
			"SCIF_LOG=info says why)\n",
			strerror(errno));
		return 1;
	}
	if (sock && *sock)
		printf("scif_pcie_hub: serving %s\n", sock);
	else
		printf("scif_pcie_hub: serving /tmp/scif-pcie-%u.sock\n", (unsigned)geteuid());
	fflush(stdout);
	for (;;) {
		sig = sigtimedwait(&set, NULL, &tick);
		if (sig > 0) {
			printf("scif_pcie_hub: ending on signal %d\n", sig);
			return 0;
		}
		now = online();
		for (int n = 0; now >= 0 && n < 64; n++)
			if ((now ^ bits) >> n & 1)
				printf("scif_pcie_hub: node %d %s\n", n,
				       now >> n & 1 ? "online" : "offline");
		if (now >= 0)
			bits = now;
		fflush(stdout);
	}
}
