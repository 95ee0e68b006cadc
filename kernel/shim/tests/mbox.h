/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The test mailbox the guest test (shim_guest_test) and the host peer (shim_host_peer) share in
 * ivshmem BAR2 / the server's shared memory: layout, commands and the test data pattern. */
#ifndef SCIF_SHIM_TEST_MBOX_H
#define SCIF_SHIM_TEST_MBOX_H

#include <assert.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Shared memory layout (4 MiB). Each side writes only its own page of the mailbox, as SCIF rings
 * do across PCIe; the two data regions are written by one side and checked by the other.
 */
#define MBOX_SHM_SIZE		(4u << 20)
#define MBOX_HOST_PAGE		0x0000u		/* struct mbox_host, written by the host */
#define MBOX_GUEST_PAGE		0x1000u		/* struct mbox_guest, written by the guest */
#define MBOX_H2G_OFF		0x100000u	/* host writes, guest checks */
#define MBOX_G2H_OFF		0x200000u	/* guest writes, host checks */
#define MBOX_REGION_SIZE	0x100000u

#define MBOX_HOST_MAGIC		0x484f5354u	/* "HOST": host page valid, H2G seeded */
#define MBOX_GUEST_MAGIC	0x47554553u	/* "GUES": guest has MSI-X and eventfds set up */

/* Vectors (QEMU vectors=4) */
#define MBOX_VEC_GUEST_PING	0	/* guest pings host, host pongs on the same vector */
#define MBOX_VEC_HOST_PING	1	/* host pings guest, guest pongs on the same vector */
#define MBOX_VEC_CMD		2	/* guest -> host: a command is waiting */
#define MBOX_VEC_TEST		3	/* host -> guest: MBOX_CMD_RING targets */
#define MBOX_NVECTORS		4

/* Commands, guest -> host (arg meaning in brackets) */
enum mbox_cmd {
	MBOX_CMD_HELLO = 1,	/* guest is ready for rings (MSI-X on, eventfds attached) */
	MBOX_CMD_WRITE_H2G,	/* [seed] fill the H2G region with pattern(seed) */
	MBOX_CMD_CHECK_G2H,	/* [seed] check the G2H region holds pattern(seed); result 0/1 */
	MBOX_CMD_RING,		/* [vector] ring the guest once on that vector */
	MBOX_CMD_HOST_PING,	/* [count] ping-pong initiated by the host, on MBOX_VEC_HOST_PING */
	MBOX_CMD_REPORT,	/* [rtt_ns, arg2=count] guest's own ping-pong result, for the log */
	MBOX_CMD_DONE,		/* guest finished; host prints its summary */
};

/**
 * struct mbox_host - the host's page
 * @magic: MBOX_HOST_MAGIC once the host has seeded the H2G region
 * @ack_seq: the guest's cmd_seq once the host has finished that command (release)
 * @result: outcome of the acked command (1 = ok, 0 = failed)
 * @pong_seq: echo of mbox_guest.ping_seq, written before the host's pong ring
 * @ping_seq: sequence of the host's current ping, written before the ring
 * @host_rtt_ns: MBOX_CMD_HOST_PING result: average round trip seen by the host
 * @lost: MBOX_CMD_HOST_PING result: pings without a matching pong
 */
struct mbox_host {
	uint32_t magic;
	uint32_t ack_seq;
	uint32_t result;
	uint32_t pong_seq;
	uint32_t ping_seq;
	uint32_t lost;
	uint64_t host_rtt_ns;
};
static_assert(sizeof(struct mbox_host) == 32, "mbox_host layout");

/**
 * struct mbox_guest - the guest's page
 * @magic: MBOX_GUEST_MAGIC once the guest can take rings
 * @cmd_seq: bumped (release) after @cmd and @arg are written, before the MBOX_VEC_CMD ring
 * @cmd: enum mbox_cmd
 * @ping_seq: sequence of the guest's current ping, written before the ring
 * @pong_seq: echo of mbox_host.ping_seq, written before the guest's pong ring
 * @pad: zero
 * @arg: command argument
 * @arg2: second command argument
 */
struct mbox_guest {
	uint32_t magic;
	uint32_t cmd_seq;
	uint32_t cmd;
	uint32_t ping_seq;
	uint32_t pong_seq;
	uint32_t pad;
	uint64_t arg;
	uint64_t arg2;
};
static_assert(sizeof(struct mbox_guest) == 40, "mbox_guest layout");

/* Test data: xorshift64 words from a seed, so each side can check without a copy. */
static inline uint64_t mbox_pattern_next(uint64_t *state)
{
	uint64_t x = *state;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	*state = x;
	return x;
}

static inline void mbox_pattern_fill(volatile uint64_t *p, size_t bytes, uint64_t seed)
{
	uint64_t st = seed | 1;
	size_t i;

	for (i = 0; i < bytes / 8; i++)
		p[i] = mbox_pattern_next(&st);
}

/* Index of the first wrong word, or (size_t)-1 when the region matches. */
static inline size_t mbox_pattern_check(const volatile uint64_t *p, size_t bytes, uint64_t seed)
{
	uint64_t st = seed | 1;
	size_t i;

	for (i = 0; i < bytes / 8; i++)
		if (p[i] != mbox_pattern_next(&st))
			return i;
	return (size_t)-1;
}

#endif /* SCIF_SHIM_TEST_MBOX_H */
