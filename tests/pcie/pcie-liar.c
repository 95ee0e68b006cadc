// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * pcie-liar.c - a card that corrupts the aperture, for tests/pcie/test-pcie.c. It connects to
 * the host's PORT as an honest card (libscif, SCIF_FABRIC=pcie, node 1) and sends one byte;
 * then it reaches the aperture a second way, as one more ivshmem client of the host's server
 * (an id beyond the aperture's slices, which the host must ignore), or in a guest
 * (SCIF_PCIE_DEV) as a second mapping of the card's BAR2, and writes into what node 1 writes
 * in the host's slice (pcie.h):
 *   windex   its write index of ring 1 -> 0, moved by a length that is no record boundary
 *   reclen   a record whose length runs past the ring's end
 *   garbage  random bytes over the whole ring 1 -> 0 and its indices
 * then sends another byte (its doorbell makes the host look) and waits to be killed (30 s at
 * most). Exit status: 0 after the 30 s, 2 if it could not connect, 3 if the spy could not
 * attach. Usage: SCIF_NODE=1 pcie-liar MODE PORT
 */
#include <endian.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "scif.h"
#include "pcie.h"
#include "shim-bar2.h"

/* One ivshmem protocol message; its descriptor in *fd (or -1). 0, or -1 at EOF/error. */
static int spy_msg(int sock, int64_t *v, int *fd)
{
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} c;
	uint64_t le;
	struct iovec iov = { &le, sizeof(le) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = c.buf,
			     .msg_controllen = sizeof(c.buf) };
	struct cmsghdr *h;

	*fd = -1;
	if (recvmsg(sock, &mh, MSG_WAITALL) != (ssize_t)sizeof(le))
		return -1;
	h = CMSG_FIRSTHDR(&mh);
	if (h && h->cmsg_type == SCM_RIGHTS)
		memcpy(fd, CMSG_DATA(h), sizeof(int));
	*v = (int64_t)le64toh(le);
	return 0;
}

/* The aperture, mapped through a second connection to the server; NULL if that failed. */
static uint8_t *spy_attach(uint64_t *size)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	const char *path = getenv("SCIF_PCIE_SOCKET");
	int sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), fd;
	struct stat st;
	int64_t v;
	void *p;

	if (!path || sock < 0 || strlen(path) >= sizeof(sa.sun_path))
		return NULL;
	strcpy(sa.sun_path, path);
	if (connect(sock, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return NULL;
	/* version, our id, then the memory */
	for (int i = 0; i < 3; i++)
		if (spy_msg(sock, &v, &fd) < 0)
			return NULL;
	if (v != -1 || fd < 0 || fstat(fd, &st) < 0)
		return NULL;
	*size = (uint64_t)st.st_size;
	p = mmap(NULL, *size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	/* The socket stays open (leaked on purpose): the server would announce our departure. */
	return p == MAP_FAILED ? NULL : p;
}

int main(int argc, char **argv)
{
	struct scif_portID host = { .node = 0 };
	const char *mode = argc == 3 ? argv[1] : "";
	struct pcie_ap_hdr hdr;
	struct pcie_peer_ctl *ctl;
	uint64_t size = 0;
	uint8_t *ap, *ring;
	scif_epd_t ep;
	int tries;

	if (argc != 3)
		return 64;
	host.port = (uint16_t)atoi(argv[2]);
	ep = scif_open();
	for (tries = 0; ep >= 0 && scif_connect(ep, &host) < 0 && errno == ECONNREFUSED &&
			tries < 250; tries++)
		usleep(20000);
	if (ep < 0 || tries == 250 || scif_send(ep, "x", 1, SCIF_SEND_BLOCK) != 1)
		return 2;
	if (getenv("SCIF_PCIE_DEV") && *getenv("SCIF_PCIE_DEV"))
		ap = shim_map_bar2(getenv("SCIF_PCIE_DEV"), &size);
	else
		ap = spy_attach(&size);
	if (!ap)
		return 3;
	memcpy(&hdr, ap, sizeof(hdr));
	if (hdr.magic != PCIE_MAGIC || hdr.first_slice + hdr.slice_size > size)
		return 3;
	/* In the host's slice (slice 0): what node 1 writes. */
	ctl = (struct pcie_peer_ctl *)(ap + hdr.first_slice) + 1;
	ring = ap + hdr.first_slice + PCIE_RING_OFF + hdr.ring_bytes;
	if (!strcmp(mode, "windex")) {
		ctl->windex += 12345;
	} else if (!strcmp(mode, "reclen")) {
		uint64_t w = ctl->windex;
		struct pcie_rec r = { .len = (uint32_t)hdr.ring_bytes + 8, .type = PCIE_REC_MSG };

		memcpy(ring + w % hdr.ring_bytes, &r, 8);
		__atomic_store_n(&ctl->windex, w + 8, __ATOMIC_RELEASE);
	} else if (!strcmp(mode, "garbage")) {
		for (uint64_t i = 0; i < hdr.ring_bytes; i += 256)
			if (getrandom(ring + i, 256, 0) < 0)
				return 3;
		if (getrandom(ctl, sizeof(*ctl), 0) < 0)
			return 3;
	} else {
		return 64;
	}
	scif_send(ep, "y", 1, 0); /* may fail: the host may have dropped us already */
	sleep(30);
	return 0;
}
