// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * test-fabric.c - the local fabric's side of the ops-table contract (libscif/fabric/fabric.h),
 * without the core: fabric handles on a link (descriptors alone, or with words in a trailer,
 * fabric/local.h), what a malformed datagram costs (-EPROTO, no descriptor kept), and the
 * checks of region, bell and window-memory imports.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "scif.h"
#include "fabric.h"
#include "local.h"
#include "scm.h"

static const struct scif_fabric_ops *ops = &scif__fabric_local;
static struct scif_fabric fab;

/* Descriptors open in this process: nothing a test receives may stay open by accident. */
static int open_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;

	cr_assert(d);
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

static void link_pair(int sv[2])
{
	cr_assert_eq(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv), 0);
}

/* A sealed memfd of @len bytes (or an unsealed one). */
static int memfd(size_t len, int sealed)
{
	int fd = memfd_create("test-fabric", MFD_CLOEXEC | MFD_ALLOW_SEALING);

	cr_assert_geq(fd, 0);
	cr_assert_eq(ftruncate(fd, (off_t)len), 0);
	if (sealed)
		cr_assert_eq(fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW), 0);
	return fd;
}

/* Send raw bytes with @nfds descriptors, as a hostile peer would. */
static void raw_send(int link, const void *buf, size_t len, const int *fds, int nfds)
{
	cr_assert_eq(test_scm_send(link, buf, len, fds, nfds, 0), (ssize_t)len);
}

Test(fabric, ops_table_is_complete)
{
	cr_assert_eq(ops->size, sizeof(*ops));
	cr_assert(ops->link_send && ops->link_recv && ops->region_export && ops->bell_create &&
		  ops->bell_export && ops->bell_import && ops->ring && ops->drain && ops->unpark &&
		  ops->bell_close && ops->mem_alloc && ops->mem_export && ops->mem_import &&
		  ops->mem_free);
}

Test(fabric, handles_with_and_without_words)
{
	char msg[64] = "hello", got[64];
	struct scif_fh fh[3] = { { .fd = memfd(4096, 1) },
				 { .fd = memfd(4096, 1), .kind = 7, .word = { 1, 2, 3 } },
				 { .fd = -1, .word = { 0, 0, 42 } } };
	struct scif_fh in[SCIF_LINK_MAX_FH];
	int sv[2], n = SCIF_LINK_MAX_FH;

	link_pair(sv);
	/* Descriptors alone: the datagram is the message (the wire of protocol version 2). */
	cr_assert_eq(ops->link_send(sv[0], msg, sizeof(msg), fh, 1), 0);
	cr_assert_eq(recv(sv[1], got, sizeof(got), MSG_PEEK), (ssize_t)sizeof(msg));
	cr_assert_eq(ops->link_recv(sv[1], got, sizeof(got), in, &n), (int)sizeof(msg));
	cr_assert_eq(n, 1);
	cr_assert(in[0].fd >= 0 && in[0].kind == 0 && !in[0].word[0] && !in[0].word[2]);
	scif_fh_release(in, n);
	cr_assert_eq(in[0].fd, -1);
	/* Words and a handle without a descriptor: a trailer, handed back as sent. */
	n = SCIF_LINK_MAX_FH;
	cr_assert_eq(ops->link_send(sv[0], msg, sizeof(msg), fh, 3), 0);
	cr_assert_eq(ops->link_recv(sv[1], got, sizeof(got), in, &n), (int)sizeof(msg));
	cr_assert_eq(n, 3);
	cr_assert_str_eq(got, "hello");
	cr_assert(in[0].fd >= 0 && in[1].fd >= 0 && in[2].fd == -1);
	cr_assert(in[1].kind == 7 && in[1].word[0] == 1 && in[1].word[1] == 2 && in[1].word[2] == 3);
	cr_assert(in[2].kind == 0 && in[2].word[2] == 42);
	scif_fh_release(in, n);
	for (int i = 0; i < 2; i++)
		close(fh[i].fd);
	close(sv[0]);
	close(sv[1]);
}

/* Each malformed datagram is -EPROTO and leaves no descriptor behind. */
Test(fabric, malformed_trailers)
{
	char buf[64 + 2 * sizeof(struct local_fh_wire)];
	struct local_fh_wire t[2];
	struct scif_fh in[SCIF_LINK_MAX_FH];
	int sv[2], fd = memfd(4096, 1), before;

	link_pair(sv);
	before = open_fds();
	for (int c = 0; c < 6; c++) {
		size_t len = 64 + sizeof(t[0]);
		int n = SCIF_LINK_MAX_FH, nfds = 1;

		memset(buf, 0, sizeof(buf));
		memset(t, 0, sizeof(t));
		t[0] = (struct local_fh_wire){ .magic = LOCAL_FH_MAGIC, .flags = LOCAL_FH_HAS_FD };
		t[1] = (struct local_fh_wire){ .magic = LOCAL_FH_MAGIC, .index = 1 };
		switch (c) {
		case 0: t[0].magic ^= 1; break;         /* not a trailer */
		case 1: t[0].index = 1; break;          /* out of order */
		case 2: t[0].flags = 0; break;          /* a descriptor nobody claims */
		case 3: nfds = 0; break;                /* a claimed descriptor missing */
		case 4: len -= 8; break;                /* a partial entry */
		case 5: t[1].flags = 2; len += sizeof(t[1]); break; /* an unknown flag */
		}
		memcpy(buf + 64, t, sizeof(t));
		raw_send(sv[0], buf, len, &fd, nfds);
		cr_expect_eq(ops->link_recv(sv[1], buf, 64, in, &n), -EPROTO, "case %d", c);
		cr_expect_eq(n, 0, "case %d", c);
		cr_expect_eq(open_fds(), before, "case %d leaked a descriptor", c);
	}
	close(fd);
	close(sv[0]);
	close(sv[1]);
}

/*
 * More descriptors than a message may carry do not fit the control buffer: the kernel cuts
 * them off (MSG_CTRUNC) and closes the rest; the message stands with its handles lost
 * (*nfh = -1, as when this process is out of descriptors), and none is kept.
 */
Test(fabric, extra_descriptors_are_lost)
{
	int fds[6], sv[2], n = SCIF_LINK_MAX_FH, before;
	struct scif_fh in[SCIF_LINK_MAX_FH];
	char buf[64] = { 0 };

	link_pair(sv);
	for (int i = 0; i < 6; i++)
		fds[i] = memfd(4096, 1);
	before = open_fds();
	raw_send(sv[0], buf, sizeof(buf), fds, 6);
	cr_assert_eq(ops->link_recv(sv[1], buf, sizeof(buf), in, &n), 64);
	cr_assert_eq(n, -1);
	cr_assert_eq(open_fds(), before);
	for (int i = 0; i < 6; i++)
		close(fds[i]);
	close(sv[0]);
	close(sv[1]);
}

Test(fabric, region_import_checks)
{
	struct scif_region mine = { 0 }, theirs = { 0 };
	struct scif_fh fh;

	cr_assert_eq(ops->region_create(&fab, 8192, &mine), 0);
	fh = (struct scif_fh){ .fd = memfd(8192, 0) };
	cr_expect_eq(ops->region_import(&fab, &fh, 8192, &theirs), -EPROTO, "unsealed");
	close(fh.fd);
	fh = (struct scif_fh){ .fd = memfd(4096, 1) };
	cr_expect_eq(ops->region_import(&fab, &fh, 8192, &theirs), -EPROTO, "short");
	close(fh.fd);
	ops->region_export(&mine, &fh);
	fh.fd = dup(fh.fd);
	fh.word[0] = 1;
	cr_expect_eq(ops->region_import(&fab, &fh, 8192, &theirs), -EPROTO, "words");
	fh.word[0] = 0;
	cr_assert_eq(ops->region_import(&fab, &fh, 8192, &theirs), 0);
	cr_assert_eq(fh.fd, -1, "the import takes the descriptor");
	((char *)mine.addr)[100] = 'x';
	cr_expect_eq(((char *)theirs.addr)[100], 'x');
	ops->region_destroy(&theirs);
	ops->region_destroy(&mine);
	ops->region_destroy(&mine); /* empty: nothing */
}

Test(fabric, bells)
{
	struct scif_bell own, peer = { .fd = -1 };
	struct pollfd p;
	struct scif_fh fh;
	int user;

	cr_assert_eq(ops->bell_create(&fab, &user, &own), 0);
	ops->bell_export(&own, &fh);
	fh.fd = dup(fh.fd); /* what the link would hand the peer */
	cr_assert_eq(ops->bell_import(&fab, &fh, &peer), 0);
	cr_assert_eq(fh.fd, -1);
	p = (struct pollfd){ .fd = user, .events = POLLIN };
	cr_assert_eq(poll(&p, 1, 0), 0);
	cr_assert_eq(ops->ring(&peer), 0);
	cr_assert_eq(poll(&p, 1, 0), 1, "a ring makes the descriptor readable");
	ops->drain(user);
	cr_assert_eq(poll(&p, 1, 0), 0);
	ops->bell_close(&peer);
	ops->bell_close(&own);
	ops->bell_close(&own); /* closed: nothing */
	close(user);
}

Test(fabric, window_memory)
{
	struct scif_mem m, in;
	struct scif_fh fh;
	int before;

	cr_assert_eq(ops->mem_alloc(&fab, 4 * 4096, 0, &m), 0);
	cr_assert(m.fd >= 0 && m.len == 4 * 4096);
	uint8_t *p = mmap(NULL, m.len, PROT_READ | PROT_WRITE, MAP_SHARED, m.fd, m.off);

	cr_assert(p != MAP_FAILED);
	p[2 * 4096] = 0x5a;
	/* The window at 2 pages of the memory: the offset travels in the handle. */
	ops->mem_export(&m, 2 * 4096, 2 * 4096, SCIF_PROT_READ | SCIF_PROT_WRITE, &fh);
	cr_assert_eq(fh.word[0], 2 * 4096);
	before = open_fds();
	fh.fd = dup(fh.fd);
	cr_assert_eq(ops->mem_import(&fab, &fh, 2 * 4096, PROT_READ, &in), 0);
	cr_assert_eq(fh.fd, -1);
	cr_assert(in.addr);
	cr_expect_eq(((uint8_t *)in.addr)[0], 0x5a);
	cr_expect_eq(in.fd, -1, "ordinary pages keep no descriptor (remapped with mremap)");
	cr_expect_eq(open_fds(), before);
	ops->mem_free(&in);
	/* Longer than the memory, an unaligned offset, a memfd that could shrink: -EINVAL. */
	for (int c = 0; c < 3; c++) {
		int unsealed = c == 2 ? memfd(4 * 4096, 0) : -1;

		ops->mem_export(&m, c == 1 ? 100 : 2 * 4096, 0, SCIF_PROT_READ, &fh);
		fh.fd = unsealed >= 0 ? unsealed : dup(fh.fd);
		if (c == 2)
			fh.word[0] = 0;
		cr_expect_eq(ops->mem_import(&fab, &fh, c == 0 ? 4 * 4096 : 4096, PROT_READ, &in),
			     -EINVAL, "case %d", c);
		close(fh.fd);
	}
	munmap(p, m.len);
	ops->mem_free(&m);
}
