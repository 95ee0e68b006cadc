// SPDX-License-Identifier: GPL-2.0-or-later
/*
 * shim_guest_test - runs inside the QEMU guest of check-kernel: loads scif_shim, exercises its
 * uapi against the ivshmem device and the host peer, and prints one PASS/FAIL line per test.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/klog.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../uapi/scif_shim.h"
#include "mbox.h"

/* The uapi promises these sizes to every ABI; check what user space compiles. */
static_assert(sizeof(struct scif_shim_bar) == 40, "scif_shim_bar");
static_assert(sizeof(struct scif_shim_info) == 304, "scif_shim_info");
static_assert(sizeof(struct scif_shim_irq) == 16, "scif_shim_irq");
static_assert(sizeof(struct scif_shim_dma_alloc) == 32, "scif_shim_dma_alloc");
static_assert(sizeof(struct scif_shim_dma_free) == 8, "scif_shim_dma_free");
static_assert(sizeof(struct scif_shim_will) == 40, "scif_shim_will");
static_assert(sizeof(struct scif_shim_beat) == 16, "scif_shim_beat");

#define PINGS		1000
#define WAIT_MS		3000	/* longest a ring or an ack may take under TCG */
#define IVSHMEM_BAR2	2
#define HOST_PEER_ID	0	/* the project's ivshmem server is peer 0 itself */
#define DRV_SYSFS	"/sys/bus/pci/drivers/scif_shim"
#define CLASS_SYSFS	"/sys/class/scif_shim"

static const char *module_path;
static unsigned int n_pass, n_fail;
static char fail_why[256];	/* first reason the current test failed */

/**
 * struct session - the guest's working connection to the ivshmem device through the shim
 * @fd: open file of /dev/scif_shimN
 * @name: scif_shimN
 * @bar0: registers (doorbell)
 * @shm: BAR2, the memory shared with the host
 * @efd: one eventfd per vector, attached through @fd
 * @info: SCIF_SHIM_IOC_INFO result
 * @cmd_seq: last command sequence sent to the host
 */
struct session {
	int fd;
	char name[64];
	volatile uint8_t *bar0;
	uint8_t *shm;
	int efd[MBOX_NVECTORS];
	struct scif_shim_info info;
	uint32_t cmd_seq;
};

static struct session S = { .fd = -1 };
static char ivshmem_pci[64];	/* PCI address of the ivshmem device */

/* ---- reporting ---- */

static void why(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void why(const char *fmt, ...)
{
	va_list ap;

	if (fail_why[0])
		return;		/* keep the first reason */
	va_start(ap, fmt);
	vsnprintf(fail_why, sizeof(fail_why), fmt, ap);
	va_end(ap);
}

static void report(const char *name, bool ok, const char *extra)
{
	if (ok && !fail_why[0]) {
		printf("PASS: %s%s%s\n", name, extra ? ": " : "", extra ? extra : "");
		n_pass++;
	} else {
		printf("FAIL: %s: %s\n", name, fail_why[0] ? fail_why : "failed");
		n_fail++;
	}
	fflush(stdout);
	fail_why[0] = 0;
}

/* Check that @ret failed with @want (or succeeded, for @want == 0); record why not. */
static bool expect(long ret, int want, const char *what)
{
	int got = ret < 0 ? errno : 0;

	if (got == want)
		return true;
	why("%s: got %s, want %s", what, got ? strerror(got) : "success",
	    want ? strerror(want) : "success");
	return false;
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- sysfs and device discovery ---- */

static bool write_file(const char *path, const char *s)
{
	int err, fd = open(path, O_WRONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return false;
	n = write(fd, s, strlen(s));
	err = errno;
	close(fd);
	errno = err;	/* the caller reports why the write failed */
	return n == (ssize_t)strlen(s);
}

static bool read_file(const char *path, char *buf, size_t len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return false;
	n = read(fd, buf, len - 1);
	close(fd);
	if (n < 0)
		return false;
	buf[n] = 0;
	buf[strcspn(buf, "\n")] = 0;
	return true;
}

/* A numeric attribute of /sys/class/scif_shim/@name, or -1. */
static long long attr(const char *name, const char *a)
{
	char path[256], buf[64];

	snprintf(path, sizeof(path), CLASS_SYSFS "/%s/%s", name, a);
	if (!read_file(path, buf, sizeof(buf)))
		return -1;
	return strtoll(buf, NULL, 0);
}

/* The scif_shimN bound to PCI device @pci, into @name; false if there is none. */
static bool find_shim(const char *pci, char *name, size_t len)
{
	DIR *d = opendir(CLASS_SYSFS);
	struct dirent *de;
	bool found = false;

	if (!d)
		return false;
	while (!found && (de = readdir(d))) {
		char link[PATH_MAX], path[512];
		ssize_t n;

		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), CLASS_SYSFS "/%s/device", de->d_name);
		n = readlink(path, link, sizeof(link) - 1);
		if (n <= 0)
			continue;
		link[n] = 0;
		if (!strcmp(strrchr(link, '/') ? strrchr(link, '/') + 1 : link, pci) &&
		    strlen(de->d_name) < len) {
			memcpy(name, de->d_name, strlen(de->d_name) + 1);
			found = true;
		}
	}
	closedir(d);
	return found;
}

/* The PCI address of the first device with @vendor:@device, into @out. */
static bool find_pci(unsigned int vendor, unsigned int device, char *out, size_t len)
{
	DIR *d = opendir("/sys/bus/pci/devices");
	struct dirent *de;
	bool found = false;

	if (!d)
		return false;
	while (!found && (de = readdir(d))) {
		char path[512], v[32], dv[32];

		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/vendor", de->d_name);
		if (!read_file(path, v, sizeof(v)))
			continue;
		snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/device", de->d_name);
		if (!read_file(path, dv, sizeof(dv)))
			continue;
		if (strtoul(v, NULL, 0) == vendor && strtoul(dv, NULL, 0) == device &&
		    strlen(de->d_name) < len) {
			memcpy(out, de->d_name, strlen(de->d_name) + 1);
			found = true;
		}
	}
	closedir(d);
	return found;
}

static int open_shim(const char *name)
{
	char path[128];

	snprintf(path, sizeof(path), "/dev/%s", name);
	return open(path, O_RDWR | O_CLOEXEC);
}

static void *map_region(int fd, uint64_t offset, size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, (off_t)offset);

	return p == MAP_FAILED ? NULL : p;
}

/* ---- SIGBUS probing: touch a mapping that should have been revoked ---- */

static sigjmp_buf probe_jmp;
static volatile sig_atomic_t probe_sig;

static void probe_handler(int sig)
{
	probe_sig = sig;
	siglongjmp(probe_jmp, 1);
}

/* The signal a read of @p raises (SIGBUS for a revoked mapping), or 0 if it reads fine. */
static int touch(const volatile void *p)
{
	struct sigaction sa = { .sa_handler = probe_handler }, obus, osegv;

	probe_sig = 0;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGBUS, &sa, &obus);
	sigaction(SIGSEGV, &sa, &osegv);
	if (!sigsetjmp(probe_jmp, 1))
		(void)*(const volatile uint32_t *)p;
	sigaction(SIGBUS, &obus, NULL);
	sigaction(SIGSEGV, &osegv, NULL);
	return probe_sig;
}

/* ---- talking to the host ---- */

static void ring_host(unsigned int vector)
{
	/* BAR2 is write-combining: make the mailbox writes visible before the doorbell (UC). */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	*(volatile uint32_t *)(S.bar0 + SCIF_SHIM_IVSHMEM_DOORBELL) =
		SCIF_SHIM_IVSHMEM_DOORBELL_VAL(HOST_PEER_ID, vector);
}

static struct mbox_host *mh(void)
{
	return (struct mbox_host *)(S.shm + MBOX_HOST_PAGE);
}

static struct mbox_guest *mg(void)
{
	return (struct mbox_guest *)(S.shm + MBOX_GUEST_PAGE);
}

/* Post a command; the host sees it on the MBOX_VEC_CMD ring. */
static void cmd_post(enum mbox_cmd cmd, uint64_t arg, uint64_t arg2)
{
	mg()->cmd = cmd;
	mg()->arg = arg;
	mg()->arg2 = arg2;
	/* release: cmd and args before the sequence the host polls for */
	__atomic_store_n(&mg()->cmd_seq, ++S.cmd_seq, __ATOMIC_RELEASE);
	ring_host(MBOX_VEC_CMD);
}

/* Wait for the host to finish the last command; returns its result, or -1 on timeout. */
static int cmd_wait(void)
{
	uint64_t end = now_ns() + (uint64_t)WAIT_MS * 4 * 1000000u;

	while (now_ns() < end) {
		/* acquire: pairs with the host's release of ack_seq after its results */
		if (__atomic_load_n(&mh()->ack_seq, __ATOMIC_ACQUIRE) == S.cmd_seq)
			return (int)mh()->result;
		usleep(200);
	}
	why("host did not ack command %u", S.cmd_seq);
	return -1;
}

static int cmd(enum mbox_cmd c, uint64_t arg)
{
	cmd_post(c, arg, 0);
	return cmd_wait();
}

/* Wait until eventfd @fd fires; returns its count, 0 on timeout. */
static uint64_t efd_wait(int fd, int ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	uint64_t n = 0;

	if (poll(&p, 1, ms) != 1 || read(fd, &n, sizeof(n)) != (ssize_t)sizeof(n))
		return 0;
	return n;
}

static void efd_drain(int fd)
{
	uint64_t n;

	while (read(fd, &n, sizeof(n)) == (ssize_t)sizeof(n))
		;
}

static int set_irq(int fd, uint32_t vector, int efd)
{
	struct scif_shim_irq r = { .vector = vector, .fd = efd };

	return ioctl(fd, SCIF_SHIM_IOC_SET_IRQ, &r);
}

/* ---- the session: open the shim, map the BARs, attach eventfds ---- */

static void session_close(void)
{
	unsigned int v;

	if (S.bar0)
		munmap((void *)S.bar0, 4096);
	if (S.shm)
		munmap(S.shm, MBOX_SHM_SIZE);
	for (v = 0; v < MBOX_NVECTORS; v++)
		if (S.efd[v] > 0)
			close(S.efd[v]);
	if (S.fd >= 0)
		close(S.fd);
	S.bar0 = NULL;
	S.shm = NULL;
	S.fd = -1;
	memset(S.efd, 0, sizeof(S.efd));
}

static bool session_open(void)
{
	unsigned int v;

	if (!find_shim(ivshmem_pci, S.name, sizeof(S.name))) {
		why("no scif_shim device for %s", ivshmem_pci);
		return false;
	}
	S.fd = open_shim(S.name);
	if (S.fd < 0) {
		why("open /dev/%s: %s", S.name, strerror(errno));
		return false;
	}
	if (ioctl(S.fd, SCIF_SHIM_IOC_INFO, &S.info) < 0) {
		why("INFO: %s", strerror(errno));
		return false;
	}
	S.bar0 = map_region(S.fd, S.info.bars[0].mmap_offset, 4096);
	S.shm = map_region(S.fd, S.info.bars[IVSHMEM_BAR2].mmap_offset, MBOX_SHM_SIZE);
	if (!S.bar0 || !S.shm) {
		why("mmap BAR0/BAR2: %s", strerror(errno));
		return false;
	}
	for (v = 0; v < MBOX_NVECTORS; v++) {
		S.efd[v] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (S.efd[v] < 0 || set_irq(S.fd, v, S.efd[v]) < 0) {
			why("attach eventfd to vector %u: %s", v, strerror(errno));
			return false;
		}
	}
	/* continue the host's command sequence across re-opens */
	S.cmd_seq = __atomic_load_n(&mh()->ack_seq, __ATOMIC_ACQUIRE);
	return true;
}

/* ---- tests ---- */

static bool load_module(void)
{
	int fd = open(module_path, O_RDONLY | O_CLOEXEC);
	long ret;

	if (fd < 0) {
		why("%s: %s", module_path, strerror(errno));
		return false;
	}
	ret = syscall(SYS_finit_module, fd, "", 0);
	close(fd);
	if (ret < 0) {
		why("finit_module: %s", strerror(errno));
		return false;
	}
	return true;
}

static bool unload_module(void)
{
	if (syscall(SYS_delete_module, "scif_shim", O_NONBLOCK) < 0) {
		why("delete_module: %s", strerror(errno));
		return false;
	}
	return true;
}

static void t_load(void)
{
	bool ok = load_module();

	ok = ok && find_pci(0x1af4, 0x1110, ivshmem_pci, sizeof(ivshmem_pci));
	if (ok && !find_shim(ivshmem_pci, S.name, sizeof(S.name))) {
		why("module loaded but did not bind %s", ivshmem_pci);
		ok = false;
	}
	report("module_load_and_bind", ok, NULL);
}

static void t_info(void)
{
	const struct scif_shim_info *i = &S.info;
	const struct scif_shim_bar *b = i->bars;
	char extra[128];
	bool ok = session_open();

	if (ok && (i->abi_version != SCIF_SHIM_ABI_VERSION || i->vendor != 0x1af4 ||
		   i->device != 0x1110 || i->nr_bars != SCIF_SHIM_MAX_BARS))
		why("abi %u, id %04x:%04x, nr_bars %u", i->abi_version, i->vendor, i->device,
		    i->nr_bars);
	if (ok && (i->nr_vectors != MBOX_NVECTORS || !(i->flags & SCIF_SHIM_INFO_MSIX)))
		why("%u vectors, flags %#x", i->nr_vectors, i->flags);
	if (ok && (!(i->flags & SCIF_SHIM_INFO_PEER_ID) || i->peer_id < 1 ||
		   attr(S.name, "peer_id") != i->peer_id))
		why("peer id %u (flags %#x, sysfs %lld)", i->peer_id, i->flags,
		    attr(S.name, "peer_id"));
	/* ivshmem: BAR0 256-byte registers, BAR1 MSI-X only, BAR2 the shared memory */
	if (ok && (b[0].size != 256 || !(b[0].flags & SCIF_SHIM_BAR_MMAP) ||
		   (b[0].flags & SCIF_SHIM_BAR_PREFETCH)))
		why("BAR0 size %llu flags %#x", (unsigned long long)b[0].size, b[0].flags);
	if (ok && (!(b[1].flags & SCIF_SHIM_BAR_PRESENT) || (b[1].flags & SCIF_SHIM_BAR_MMAP) ||
		   !b[1].excl_size))
		why("BAR1 (MSI-X) flags %#x excl %llu", b[1].flags, (unsigned long long)b[1].excl_size);
	if (ok && (b[2].size != MBOX_SHM_SIZE || !(b[2].flags & SCIF_SHIM_BAR_PREFETCH) ||
		   !(b[2].flags & SCIF_SHIM_BAR_MMAP) || b[2].excl_size))
		why("BAR2 size %llu flags %#x", (unsigned long long)b[2].size, b[2].flags);
	if (ok && (b[3].flags || b[4].flags || b[5].flags || i->reserved[0]))
		why("unexpected BARs 3..5");
	if (ok && i->dma_mask_bits != 64 && i->dma_mask_bits != 32)
		why("dma_mask_bits %u", i->dma_mask_bits);
	snprintf(extra, sizeof(extra), "peer id %u, %u MSI-X vectors, BAR2 %llu KiB", i->peer_id,
		 i->nr_vectors, (unsigned long long)b[2].size >> 10);
	report("info_ioctl", ok, extra);
}

static void t_bar0(void)
{
	uint32_t pos = 0;
	bool ok = S.bar0 != NULL;

	if (ok)
		pos = *(volatile uint32_t *)(S.bar0 + SCIF_SHIM_IVSHMEM_IVPOSITION);
	if (ok && pos != S.info.peer_id)
		why("IVPosition through the mapping %u, info says %u", pos, S.info.peer_id);
	report("bar0_mmap_registers", ok, NULL);
}

static void t_handshake(void)
{
	bool ok = S.shm != NULL;

	/* The host seeded its page before QEMU started: no ring needed to see it. */
	if (ok && __atomic_load_n(&mh()->magic, __ATOMIC_ACQUIRE) != MBOX_HOST_MAGIC) {
		why("host magic %#x", mh()->magic);
		ok = false;
	}
	/* Rings to the guest are only safe now that MSI-X is on and eventfds are attached. */
	if (ok) {
		__atomic_store_n(&mg()->magic, MBOX_GUEST_MAGIC, __ATOMIC_RELEASE);
		ok = cmd(MBOX_CMD_HELLO, 0) == 1;
	}
	report("shm_handshake", ok, NULL);
}

static void t_host_to_guest(void)
{
	size_t bad;
	bool ok = S.shm != NULL;

	bad = ok ? mbox_pattern_check((uint64_t *)(S.shm + MBOX_H2G_OFF), MBOX_REGION_SIZE, 1) : 0;
	if (ok && bad != (size_t)-1)
		why("initial host data wrong at word %zu", bad);
	if (ok && cmd(MBOX_CMD_WRITE_H2G, 0x5eed) != 1)
		ok = false;
	bad = ok ? mbox_pattern_check((uint64_t *)(S.shm + MBOX_H2G_OFF), MBOX_REGION_SIZE,
				      0x5eed) : 0;
	if (ok && bad != (size_t)-1)
		why("rewritten host data wrong at word %zu", bad);
	report("guest_sees_host_bar2_writes", ok, NULL);
}

static void t_guest_to_host(void)
{
	if (!S.shm) {
		report("guest_bar2_writes_checked_by_host", false, NULL);
		return;
	}
	mbox_pattern_fill((uint64_t *)(S.shm + MBOX_G2H_OFF), MBOX_REGION_SIZE, 0xfeed);
	/* the host prints host_sees_guest_bar2_writes; here only a lost command is a failure */
	if (cmd(MBOX_CMD_CHECK_G2H, 0xfeed) < 0)
		report("guest_bar2_writes_checked_by_host", false, NULL);
}

/* Host rings vector v only: exactly eventfd v must fire. */
static void t_vectors(void)
{
	unsigned int v, w;
	bool ok = S.shm != NULL;

	for (v = 0; ok && v < MBOX_NVECTORS; v++) {
		for (w = 0; w < MBOX_NVECTORS; w++)
			efd_drain(S.efd[w]);
		if (cmd(MBOX_CMD_RING, v) != 1) {
			ok = false;
			break;
		}
		if (!efd_wait(S.efd[v], WAIT_MS)) {
			why("ring on vector %u never arrived", v);
			ok = false;
		}
		usleep(20000);	/* a stray interrupt on another vector would have come by now */
		for (w = 0; ok && w < MBOX_NVECTORS; w++)
			if (w != v && efd_wait(S.efd[w], 0)) {
				why("ring on vector %u also fired vector %u", v, w);
				ok = false;
			}
	}
	report("msix_vectors_to_eventfds", ok, NULL);
}

/* Guest-initiated ping-pong: each ping waits for its pong, so no ring can coalesce. */
static void t_guest_pingpong(void)
{
	uint64_t t0, total = 0;
	unsigned int i, lost = 0, wrong = 0;
	char extra[96];
	bool ok = S.shm != NULL;

	efd_drain(S.efd[MBOX_VEC_GUEST_PING]);
	for (i = 1; ok && i <= PINGS; i++) {
		__atomic_store_n(&mg()->ping_seq, i, __ATOMIC_RELEASE);
		t0 = now_ns();
		ring_host(MBOX_VEC_GUEST_PING);
		if (!efd_wait(S.efd[MBOX_VEC_GUEST_PING], WAIT_MS)) {
			lost++;
			break;
		}
		total += now_ns() - t0;
		/* acquire: pairs with the host's release of pong_seq before its ring */
		if (__atomic_load_n(&mh()->pong_seq, __ATOMIC_ACQUIRE) != i)
			wrong++;
	}
	if (lost || wrong)
		why("%u lost, %u out of order (at ping %u)", lost, wrong, i);
	snprintf(extra, sizeof(extra), "%u round trips, avg %.1f us", PINGS,
		 (double)total / PINGS / 1000.0);
	report("doorbell_pingpong_guest_initiated", ok, extra);
	if (ok && !lost && !wrong) {
		printf("RTT: guest-initiated doorbell round trip %.1f us (avg of %u, guest clock)\n",
		       (double)total / PINGS / 1000.0, PINGS);
		cmd_post(MBOX_CMD_REPORT, total / PINGS, PINGS);
		cmd_wait();
	}
}

/* Host-initiated ping-pong: answer each ring on MBOX_VEC_HOST_PING with the host's sequence. */
static void t_host_pingpong(void)
{
	unsigned int i, answered = 0;
	int res;
	bool ok = S.shm != NULL;

	if (!ok) {
		report("doorbell_pingpong_guest_answers", false, NULL);
		return;
	}
	efd_drain(S.efd[MBOX_VEC_HOST_PING]);
	cmd_post(MBOX_CMD_HOST_PING, PINGS, 0);
	for (i = 1; i <= PINGS; i++) {
		if (!efd_wait(S.efd[MBOX_VEC_HOST_PING], WAIT_MS)) {
			why("ping %u never arrived", i);
			break;
		}
		__atomic_store_n(&mg()->pong_seq,
				 __atomic_load_n(&mh()->ping_seq, __ATOMIC_ACQUIRE), __ATOMIC_RELEASE);
		ring_host(MBOX_VEC_HOST_PING);
		answered++;
	}
	res = cmd_wait();
	if (res == 1 && mh()->lost)
		why("host counted %u lost pongs", mh()->lost);
	report("doorbell_pingpong_guest_answers", answered == PINGS && res == 1, NULL);
}

/* Several files on one vector each get the interrupt; replacing and detaching work. */
static void t_fanout(void)
{
	int f1 = open_shim(S.name), f2 = open_shim(S.name);
	int a = eventfd(0, EFD_NONBLOCK), b = eventfd(0, EFD_NONBLOCK), c = eventfd(0, EFD_NONBLOCK);
	long long before = attr(S.name, "irq_bindings");
	bool ok = f1 >= 0 && f2 >= 0 && a >= 0 && b >= 0 && c >= 0;

	ok = ok && expect(set_irq(f1, MBOX_VEC_TEST, a), 0, "attach a");
	ok = ok && expect(set_irq(f2, MBOX_VEC_TEST, b), 0, "attach b");
	if (ok && attr(S.name, "irq_bindings") != before + 2)
		why("irq_bindings %lld, want %lld", attr(S.name, "irq_bindings"), before + 2);
	efd_drain(S.efd[MBOX_VEC_TEST]);
	if (ok && cmd(MBOX_CMD_RING, MBOX_VEC_TEST) == 1 &&
	    !(efd_wait(a, WAIT_MS) && efd_wait(b, WAIT_MS) && efd_wait(S.efd[MBOX_VEC_TEST], WAIT_MS)))
		why("one ring did not reach all three files");
	/* replace a by c on f1, detach f2 */
	ok = ok && expect(set_irq(f1, MBOX_VEC_TEST, c), 0, "replace a by c");
	ok = ok && expect(set_irq(f2, MBOX_VEC_TEST, -1), 0, "detach b");
	ok = ok && expect(set_irq(f2, MBOX_VEC_TEST, -1), 0, "detach b twice");
	if (ok && cmd(MBOX_CMD_RING, MBOX_VEC_TEST) == 1) {
		if (!efd_wait(c, WAIT_MS) || !efd_wait(S.efd[MBOX_VEC_TEST], WAIT_MS))
			why("replacement eventfd not signalled");
		usleep(20000);
		if (efd_wait(a, 0) || efd_wait(b, 0))
			why("replaced or detached eventfd still signalled");
	}
	close(f1);
	close(f2);
	if (ok && attr(S.name, "irq_bindings") != before)
		why("irq_bindings %lld after close, want %lld", attr(S.name, "irq_bindings"), before);
	close(a);
	close(b);
	close(c);
	report("irq_fanout_replace_detach", ok, NULL);
}

static void t_bad_ioctls(void)
{
	struct scif_shim_irq irq;
	struct scif_shim_dma_alloc da;
	struct scif_shim_dma_free df;
	int fd = open_shim(S.name), notefd = open("/dev/null", O_RDONLY);
	bool ok = fd >= 0;

	/* unknown numbers, and known numbers with another size or direction */
	ok &= expect(ioctl(fd, _IO(SCIF_SHIM_IOC_MAGIC, 0x40)), ENOTTY, "unknown nr");
	ok &= expect(ioctl(fd, _IOR(SCIF_SHIM_IOC_MAGIC, 0x00, uint64_t), &da), ENOTTY, "INFO size");
	ok &= expect(ioctl(fd, _IOW(SCIF_SHIM_IOC_MAGIC, 0x00, struct scif_shim_info), &da),
		     ENOTTY, "INFO dir");
	ok &= expect(ioctl(fd, _IOWR(SCIF_SHIM_IOC_MAGIC, 0x03, struct scif_shim_dma_free), &df),
		     ENOTTY, "FREE dir");
	ok &= expect(ioctl(fd, 0, 0), ENOTTY, "cmd 0");
	ok &= expect(ioctl(fd, _IOR('T', 1, int), &da), ENOTTY, "other magic");
	ok &= expect(ioctl(fd, SCIF_SHIM_IOC_INFO, NULL), EFAULT, "INFO NULL");
	ok &= expect(ioctl(fd, SCIF_SHIM_IOC_INFO, (void *)16), EFAULT, "INFO bad ptr");
	report("ioctl_unknown_and_info", ok, NULL);

	ok = fd >= 0;
	ok &= expect(ioctl(fd, SCIF_SHIM_IOC_SET_IRQ, NULL), EFAULT, "SET_IRQ NULL");
	irq = (struct scif_shim_irq){ .vector = S.info.nr_vectors, .fd = S.efd[0] };
	ok &= expect(ioctl(fd, SCIF_SHIM_IOC_SET_IRQ, &irq), EINVAL, "vector == nr_vectors");
	irq.vector = UINT32_MAX;
	ok &= expect(ioctl(fd, SCIF_SHIM_IOC_SET_IRQ, &irq), EINVAL, "vector ~0");
	irq = (struct scif_shim_irq){ .vector = 0, .fd = notefd };
	ok &= expect(ioctl(fd, SCIF_SHIM_IOC_SET_IRQ, &irq), EINVAL, "fd not an eventfd");
	irq.fd = fd;
	ok &= expect(ioctl(fd, SCIF_SHIM_IOC_SET_IRQ, &irq), EINVAL, "fd is the shim");
	irq.fd = 9999;
	ok &= expect(ioctl(fd, SCIF_SHIM_IOC_SET_IRQ, &irq), EBADF, "closed fd");
	irq.fd = -2;
	ok &= expect(ioctl(fd, SCIF_SHIM_IOC_SET_IRQ, &irq), EBADF, "fd -2");
	irq = (struct scif_shim_irq){ .vector = 0, .fd = S.efd[0], .flags = 1 };
	ok &= expect(ioctl(fd, SCIF_SHIM_IOC_SET_IRQ, &irq), EINVAL, "flags");
	irq = (struct scif_shim_irq){ .vector = 0, .fd = S.efd[0], .pad = 1 };
	ok &= expect(ioctl(fd, SCIF_SHIM_IOC_SET_IRQ, &irq), EINVAL, "pad");
	irq = (struct scif_shim_irq){ .vector = 0, .fd = -1 };
	ok &= expect(ioctl(fd, SCIF_SHIM_IOC_SET_IRQ, &irq), 0, "detach unattached");
	report("ioctl_set_irq_bad_args", ok, NULL);

	ok = fd >= 0;
	ok &= expect(ioctl(fd, SCIF_SHIM_IOC_DMA_ALLOC, NULL), EFAULT, "ALLOC NULL");
	da = (struct scif_shim_dma_alloc){ .size = 0 };
	ok &= expect(ioctl(fd, SCIF_SHIM_IOC_DMA_ALLOC, &da), EINVAL, "size 0");
	da = (struct scif_shim_dma_alloc){ .size = UINT64_MAX };
	ok &= expect(ioctl(fd, SCIF_SHIM_IOC_DMA_ALLOC, &da), EINVAL, "size ~0 (page round-up wraps)");
	da = (struct scif_shim_dma_alloc){ .size = UINT64_MAX - 4095 };
	ok &= expect(ioctl(fd, SCIF_SHIM_IOC_DMA_ALLOC, &da), ENOMEM, "size 2^64-4096 (budget)");
	da = (struct scif_shim_dma_alloc){ .size = 1ULL << 40 };
	ok &= expect(ioctl(fd, SCIF_SHIM_IOC_DMA_ALLOC, &da), ENOMEM, "size 1 TiB (budget)");
	da = (struct scif_shim_dma_alloc){ .size = 4096, .flags = 1 };
	ok &= expect(ioctl(fd, SCIF_SHIM_IOC_DMA_ALLOC, &da), EINVAL, "ALLOC flags");
	ok &= expect(ioctl(fd, SCIF_SHIM_IOC_DMA_FREE, NULL), EFAULT, "FREE NULL");
	df = (struct scif_shim_dma_free){ .handle = 12345 };
	ok &= expect(ioctl(fd, SCIF_SHIM_IOC_DMA_FREE, &df), ENOENT, "FREE unknown handle");
	df = (struct scif_shim_dma_free){ .handle = 0, .flags = 1 };
	ok &= expect(ioctl(fd, SCIF_SHIM_IOC_DMA_FREE, &df), EINVAL, "FREE flags");
	if (attr(S.name, "dma_bytes") != 0)
		why("dma_bytes %lld after failed allocations", attr(S.name, "dma_bytes"));
	report("ioctl_dma_bad_args", ok, NULL);
	close(notefd);
	close(fd);
}

static bool mmap_fails(int fd, uint64_t off, size_t len, int flags, const char *what)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, flags, fd, (off_t)off);

	if (p != MAP_FAILED) {
		munmap(p, len);
		why("mmap %s succeeded", what);
		return false;
	}
	return expect(-1, EINVAL, what);
}

static void t_bad_mmaps(void)
{
	const struct scif_shim_bar *b = S.info.bars;
	int fd = open_shim(S.name);
	bool ok = fd >= 0;

	ok &= mmap_fails(fd, b[2].mmap_offset, 4096, MAP_PRIVATE, "private BAR2");
	ok &= mmap_fails(fd, b[1].mmap_offset, 4096, MAP_SHARED, "BAR1 (MSI-X table)");
	ok &= mmap_fails(fd, SCIF_SHIM_MMAP_OFFSET(3), 4096, MAP_SHARED, "absent BAR3");
	ok &= mmap_fails(fd, SCIF_SHIM_MMAP_OFFSET(6), 4096, MAP_SHARED, "region 6");
	ok &= mmap_fails(fd, SCIF_SHIM_MMAP_OFFSET(SCIF_SHIM_MMAP_DMA_FIRST + 999), 4096,
			 MAP_SHARED, "unknown DMA handle");
	ok &= mmap_fails(fd, SCIF_SHIM_MMAP_OFFSET(0x7fff), 4096, MAP_SHARED, "region 0x7fff");
	ok &= mmap_fails(fd, b[2].mmap_offset, 2 * MBOX_SHM_SIZE, MAP_SHARED, "BAR2 too long");
	ok &= mmap_fails(fd, b[2].mmap_offset + MBOX_SHM_SIZE, 4096, MAP_SHARED, "past BAR2");
	ok &= mmap_fails(fd, b[0].mmap_offset, 8192, MAP_SHARED, "BAR0 two pages");
	report("mmap_bad_args", ok, NULL);
	close(fd);
}

static bool dma_alloc(int fd, uint64_t size, struct scif_shim_dma_alloc *out)
{
	*out = (struct scif_shim_dma_alloc){ .size = size };
	return expect(ioctl(fd, SCIF_SHIM_IOC_DMA_ALLOC, out), 0, "DMA_ALLOC");
}

static bool dma_free(int fd, uint32_t handle)
{
	struct scif_shim_dma_free f = { .handle = handle };

	return expect(ioctl(fd, SCIF_SHIM_IOC_DMA_FREE, &f), 0, "DMA_FREE");
}

static void t_dma(void)
{
	static const uint64_t sizes[3] = { 4096, 65537, 1 << 20 };
	struct scif_shim_dma_alloc d[3], x;
	uint64_t *m[3] = { NULL }, *alias = NULL, total = 0;
	int fd = open_shim(S.name), other = open_shim(S.name);
	char budget[32], extra[96];
	struct scif_shim_dma_free f;
	unsigned int i;
	bool ok = fd >= 0 && other >= 0;

	for (i = 0; ok && i < 3; i++) {
		ok = dma_alloc(fd, sizes[i], &d[i]);
		if (!ok)
			break;
		if (d[i].size != ((sizes[i] + 4095) & ~4095ULL) || !d[i].bus_addr ||
		    (d[i].bus_addr & 4095) || (i && d[i].handle == d[i - 1].handle) ||
		    (i && d[i].mmap_offset == d[i - 1].mmap_offset))
			why("buffer %u: size %llu bus %#llx handle %u", i,
			    (unsigned long long)d[i].size, (unsigned long long)d[i].bus_addr,
			    d[i].handle);
		total += d[i].size;
		m[i] = map_region(fd, d[i].mmap_offset, d[i].size);
		if (!m[i]) {
			why("mmap buffer %u: %s", i, strerror(errno));
			ok = false;
			break;
		}
		for (size_t w = 0; w < d[i].size / 8; w++)
			if (m[i][w]) {
				why("buffer %u not zeroed at word %zu", i, w);
				break;
			}
		mbox_pattern_fill(m[i], d[i].size, 100 + i);
	}
	if (ok && attr(S.name, "dma_bytes") != (long long)total)
		why("dma_bytes %lld, want %llu", attr(S.name, "dma_bytes"), (unsigned long long)total);
	for (i = 0; ok && i < 3; i++)
		if (mbox_pattern_check(m[i], d[i].size, 100 + i) != (size_t)-1)
			why("buffer %u lost its data", i);
	/* a second mapping sees the same memory; a partial one at an offset too */
	if (ok) {
		alias = map_region(fd, d[2].mmap_offset + 4096, 8192);
		if (!alias || alias[0] != m[2][512])
			why("second mapping of buffer 2 differs");
	}
	ok = ok && mmap_fails(fd, d[0].mmap_offset, 8192, MAP_SHARED, "DMA mapping too long");
	/* another file can neither map nor free this file's buffer */
	ok = ok && mmap_fails(other, d[0].mmap_offset, 4096, MAP_SHARED, "other file's buffer");
	f = (struct scif_shim_dma_free){ .handle = d[0].handle };
	ok = ok && expect(ioctl(other, SCIF_SHIM_IOC_DMA_FREE, &f), ENOENT, "free other's buffer");
	/* freeing revokes the mappings: the next touch gets SIGBUS, not freed memory */
	if (ok && dma_free(fd, d[2].handle)) {
		if (touch(m[2]) != SIGBUS || touch(alias) != SIGBUS)
			why("mapping of a freed buffer still readable");
		/* a new, smaller buffer gets a new handle; the old mapping stays dead past it too */
		if (dma_alloc(fd, 4096, &x)) {
			if (x.handle == d[2].handle || x.mmap_offset == d[2].mmap_offset)
				why("freed handle %u handed out again at once", d[2].handle);
			if (touch((uint8_t *)m[2] + (512 << 10)) != SIGBUS)
				why("old mapping reaches memory after a new allocation");
			dma_free(fd, x.handle);
		}
		ok = expect(ioctl(fd, SCIF_SHIM_IOC_DMA_FREE, &f), 0, "free buffer 0") &&
		     expect(ioctl(fd, SCIF_SHIM_IOC_DMA_FREE, &f), ENOENT, "double free");
	}
	/* the per-file budget (module parameter) */
	if (ok && read_file("/sys/module/scif_shim/parameters/max_dma_mb", budget, sizeof(budget)) &&
	    write_file("/sys/module/scif_shim/parameters/max_dma_mb", "1")) {
		ok = dma_alloc(other, 1 << 20, &x);
		if (ok && ioctl(other, SCIF_SHIM_IOC_DMA_ALLOC,
				&(struct scif_shim_dma_alloc){ .size = 4096 }) == 0)
			why("allocation over the 1 MiB budget succeeded");
		else if (ok)
			ok = expect(-1, ENOMEM, "over budget");
		ok = ok && dma_free(other, x.handle);
		write_file("/sys/module/scif_shim/parameters/max_dma_mb", budget);
	}
	ok = ok && dma_free(fd, d[1].handle);
	if (ok && attr(S.name, "dma_bytes") != 0)
		why("dma_bytes %lld after freeing all", attr(S.name, "dma_bytes"));
	for (i = 0; i < 3; i++)
		if (m[i])
			munmap(m[i], d[i].size);
	if (alias)
		munmap(alias, 8192);
	close(fd);
	close(other);
	snprintf(extra, sizeof(extra), "bus addresses %#llx.., %u-bit mask",
		 ok ? (unsigned long long)d[0].bus_addr : 0ULL, S.info.dma_mask_bits);
	report("dma_alloc_mmap_free", ok, extra);
}

/*
 * Open a file and use everything it offers: BAR and DMA mappings (touched), eventfds on every
 * vector. Returns the fd; the mappings and eventfds are left for the caller to leak on purpose.
 */
static int everything_open(void)
{
	struct scif_shim_dma_alloc d;
	uint8_t *bar0, *shm, *dma;
	unsigned int v;
	int fd = open_shim(S.name);

	if (fd < 0)
		return -1;
	bar0 = map_region(fd, S.info.bars[0].mmap_offset, 4096);
	shm = map_region(fd, S.info.bars[IVSHMEM_BAR2].mmap_offset, MBOX_SHM_SIZE);
	if (!bar0 || !shm || !dma_alloc(fd, 256 << 10, &d))
		return -1;
	dma = map_region(fd, d.mmap_offset, d.size);
	if (!dma)
		return -1;
	dma[0] = bar0[SCIF_SHIM_IVSHMEM_IVPOSITION] + shm[MBOX_H2G_OFF];
	for (v = 0; v < S.info.nr_vectors; v++)
		if (set_irq(fd, v, eventfd(0, 0)) < 0)
			return -1;
	return fd;
}

/* sysfs counters must be back at their values before the test: nothing left behind. */
static void expect_clean(long long files, long long bindings)
{
	if (attr(S.name, "open_files") != files || attr(S.name, "irq_bindings") != bindings ||
	    attr(S.name, "dma_bytes") != 0)
		why("left behind: open_files %lld (want %lld), irq_bindings %lld (want %lld), "
		    "dma_bytes %lld", attr(S.name, "open_files"), files,
		    attr(S.name, "irq_bindings"), bindings, attr(S.name, "dma_bytes"));
}

static void t_close_everything(void)
{
	long long files = attr(S.name, "open_files"), bindings = attr(S.name, "irq_bindings");
	pid_t pid;
	int st, fd;

	/* close() the fd first: the mappings keep the file alive, exit drops the rest */
	pid = fork();
	if (pid == 0) {
		fd = everything_open();
		if (fd < 0)
			_exit(2);
		close(fd);
		_exit(attr(S.name, "open_files") == files + 1 ? 0 : 3);
	}
	if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st))
		why("child failed (status %#x)", st);
	expect_clean(files, bindings);
	report("close_with_everything_open", true, NULL);

	/* plain exit without any cleanup */
	pid = fork();
	if (pid == 0)
		_exit(everything_open() < 0 ? 2 : 0);
	if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st))
		why("child failed (status %#x)", st);
	expect_clean(files, bindings);
	report("exit_with_everything_open", true, NULL);
}

static void t_kill_everything(void)
{
	long long files = attr(S.name, "open_files"), bindings = attr(S.name, "irq_bindings");
	int p[2], st;
	char c = 0;
	pid_t pid;

	if (pipe(p) < 0) {
		report("kill_with_everything_open", false, NULL);
		return;
	}
	pid = fork();
	if (pid == 0) {
		int fd = everything_open();
		uint64_t n;

		c = fd < 0 ? 'x' : 'r';
		if (write(p[1], &c, 1) != 1 || fd < 0)
			_exit(2);
		/* block in the kernel on an eventfd nobody signals, mappings and all */
		for (;;) {
			int e = eventfd(0, 0);

			if (read(e, &n, sizeof(n)) < 0)
				_exit(3);
		}
	}
	if (read(p[0], &c, 1) != 1 || c != 'r')
		why("child could not set up");
	usleep(50000);
	kill(pid, SIGKILL);
	waitpid(pid, &st, 0);
	close(p[0]);
	close(p[1]);
	if (!WIFSIGNALED(st) || WTERMSIG(st) != SIGKILL)
		why("child not killed (status %#x)", st);
	expect_clean(files, bindings);
	report("kill_with_everything_open", true, NULL);
}

/* ---- the last will ---- */

/* BAR2 words no mailbox command looks at after t_guest_to_host: the will's, the heartbeat's. */
#define WILL_WORD_OFF (MBOX_G2H_OFF + MBOX_REGION_SIZE - 8)
#define BEAT_WORD_OFF (MBOX_G2H_OFF + MBOX_REGION_SIZE - 16)

static volatile uint32_t *will_word(void)
{
	return (volatile uint32_t *)(S.shm + WILL_WORD_OFF);
}

static int set_will(int fd, uint32_t nr, const struct scif_shim_will_write *w)
{
	struct scif_shim_will req = { .nr = nr };

	memcpy(req.w, w, sizeof(req.w));
	return ioctl(fd, SCIF_SHIM_IOC_SET_WILL, &req);
}

/*
 * In a child: open the device, map BAR2 (so that the release comes only with the exit), set
 * the wills @nr1 then @nr2 writes of @w1, @w2 (@nr2 < 0: only the first), and exit.
 */
static int will_child(uint32_t nr1, const struct scif_shim_will_write *w1, int nr2,
		      const struct scif_shim_will_write *w2)
{
	pid_t pid = fork();
	int st;

	if (pid == 0) {
		int fd = open_shim(S.name);

		if (fd < 0 || !map_region(fd, S.info.bars[IVSHMEM_BAR2].mmap_offset, 4096) ||
		    set_will(fd, nr1, w1) < 0)
			_exit(2);
		if (nr2 >= 0 && set_will(fd, (uint32_t)nr2, w2) < 0)
			_exit(3);
		close(fd);
		_exit(0);
	}
	if (pid < 0 || waitpid(pid, &st, 0) != pid)
		return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/*
 * A will is made at the file's release, after the exit that released it: the word is there
 * when waitpid() returns. Replacing a will forgets the old one, nr = 0 clears it.
 */
static void t_will_exit(void)
{
	struct scif_shim_will_write a[SCIF_SHIM_WILL_MAX] = {
		{ .bar = IVSHMEM_BAR2, .offset = WILL_WORD_OFF, .value = 0x11111111 },
	};
	struct scif_shim_will_write b[SCIF_SHIM_WILL_MAX] = {
		{ .bar = IVSHMEM_BAR2, .offset = WILL_WORD_OFF, .value = 0x22222222 },
		{ .bar = IVSHMEM_BAR2, .offset = WILL_WORD_OFF, .value = 0x33333333 },
	};
	struct scif_shim_will_write none[SCIF_SHIM_WILL_MAX] = { { 0 } };
	bool ok = S.shm != NULL;
	int r;

	if (!ok) {
		report("last_will_written_at_exit", false, NULL);
		return;
	}
	*will_word() = 0;
	r = will_child(1, a, -1, NULL);
	ok &= r == 0 && *will_word() == 0x11111111;
	if (!ok)
		why("one write: child %d, word %#x", r, *will_word());
	/* two writes, in order: the second wins */
	r = will_child(1, a, 2, b);
	if (ok && (r != 0 || *will_word() != 0x33333333))
		why("replaced by two writes: child %d, word %#x", r, *will_word());
	*will_word() = 0;
	r = will_child(1, a, 0, none);
	if (ok && (r != 0 || *will_word() != 0))
		why("cleared: child %d, word %#x", r, *will_word());
	report("last_will_written_at_exit", ok, NULL);
}

/*
 * The use it is made for: a process killed with SIGKILL leaves a word in shared memory and a
 * doorbell, and the host, woken by the doorbell, reads the word (it pongs the guest's ping
 * sequence): the word reached the device before the doorbell. Nothing is rung before the kill.
 */
static void t_will_kill(void)
{
	const uint32_t seq = 0x5eed0001;
	uint64_t t0 = 0, dt = 0;
	int p[2] = { -1, -1 }, st;
	bool ok = S.shm != NULL;
	char c = 0, extra[64] = "";
	pid_t pid = -1;

	efd_drain(S.efd[MBOX_VEC_GUEST_PING]);
	if (!ok || pipe(p) < 0 || (pid = fork()) < 0) {
		report("last_will_rings_the_host_on_kill", false, NULL);
		return;
	}
	if (pid == 0) {
		struct scif_shim_will_write w[SCIF_SHIM_WILL_MAX] = {
			{ .bar = IVSHMEM_BAR2, .value = seq,
			  .offset = MBOX_GUEST_PAGE + offsetof(struct mbox_guest, ping_seq) },
			{ .bar = 0, .offset = SCIF_SHIM_IVSHMEM_DOORBELL,
			  .value = SCIF_SHIM_IVSHMEM_DOORBELL_VAL(HOST_PEER_ID, MBOX_VEC_GUEST_PING) },
		};
		int fd = open_shim(S.name);

		c = fd >= 0 && set_will(fd, 2, w) == 0 ? 'r' : 'x';
		if (write(p[1], &c, 1) != 1 || c != 'r')
			_exit(2);
		for (;;)
			pause();
	}
	if (read(p[0], &c, 1) != 1 || c != 'r')
		why("child could not set its will");
	else if (efd_wait(S.efd[MBOX_VEC_GUEST_PING], 200))
		why("a ring before the kill");
	t0 = now_ns();
	kill(pid, SIGKILL);
	waitpid(pid, &st, 0);
	if (!fail_why[0]) {
		if (!efd_wait(S.efd[MBOX_VEC_GUEST_PING], WAIT_MS))
			why("no ring from the killed process's will");
		/* acquire: pairs with the host's release of pong_seq before its ring */
		else if (__atomic_load_n(&mh()->pong_seq, __ATOMIC_ACQUIRE) != seq)
			why("the host read ping_seq %#x, not the will's %#x",
			    __atomic_load_n(&mh()->pong_seq, __ATOMIC_ACQUIRE), seq);
		dt = now_ns() - t0;
		snprintf(extra, sizeof(extra), "kill to host's pong %.2f ms", dt / 1e6);
	}
	close(p[0]);
	close(p[1]);
	report("last_will_rings_the_host_on_kill", ok, extra);
}

static void t_will_bad_args(void)
{
	const struct scif_shim_bar *b = S.info.bars;
	struct scif_shim_will_write w[SCIF_SHIM_WILL_MAX] = { { 0 } };
	struct scif_shim_will req;
	int fd = open_shim(S.name);
	bool ok = fd >= 0;

#define BAD_WILL(BAR, OFF, WHAT)                                                                \
	do {                                                                                   \
		w[0] = (struct scif_shim_will_write){ .bar = (BAR), .offset = (OFF), .value = 1 }; \
		ok &= expect(set_will(fd, 1, w), EINVAL, WHAT);                                  \
	} while (0)
	ok &= expect(ioctl(fd, SCIF_SHIM_IOC_SET_WILL, NULL), EFAULT, "WILL NULL");
	BAD_WILL(1, 0, "BAR1 (MSI-X table)");
	BAD_WILL(3, 0, "absent BAR3");
	BAD_WILL(6, 0, "BAR 6");
	BAD_WILL(UINT32_MAX, 0, "BAR ~0");
	BAD_WILL(2, 2, "misaligned");
	BAD_WILL(2, b[2].size - 2, "straddles BAR2's end");
	BAD_WILL(2, b[2].size, "at BAR2's end");
	BAD_WILL(2, UINT64_MAX - 3, "offset ~0 - 3 (wraps)");
	BAD_WILL(0, 4096, "past BAR0");
	req = (struct scif_shim_will){ .nr = SCIF_SHIM_WILL_MAX + 1 };
	ok &= expect(ioctl(fd, SCIF_SHIM_IOC_SET_WILL, &req), EINVAL, "nr > max");
	req = (struct scif_shim_will){ .nr = 0, .flags = 1 };
	ok &= expect(ioctl(fd, SCIF_SHIM_IOC_SET_WILL, &req), EINVAL, "flags");
	req = (struct scif_shim_will){ .nr = 1, .w = { { .bar = 2 }, { .value = 1 } } };
	ok &= expect(ioctl(fd, SCIF_SHIM_IOC_SET_WILL, &req), EINVAL, "unused entry not zero");
#undef BAD_WILL
	report("ioctl_set_will_bad_args", ok, NULL);
	close(fd);

	/* a refused will leaves the one before in force */
	if (S.shm) {
		struct scif_shim_will_write good[SCIF_SHIM_WILL_MAX] = {
			{ .bar = IVSHMEM_BAR2, .offset = WILL_WORD_OFF, .value = 0x44444444 },
		};
		struct scif_shim_will_write bad[SCIF_SHIM_WILL_MAX] = {
			{ .bar = IVSHMEM_BAR2, .offset = WILL_WORD_OFF, .value = 0x55555555 },
			{ .bar = IVSHMEM_BAR2, .offset = 3, .value = 1 },
		};
		int r;

		*will_word() = 0;
		r = will_child(1, good, 2, bad);
		ok = r == 3 && *will_word() == 0x44444444;
		if (!ok)
			why("child %d (want 3: second will refused), word %#x", r, *will_word());
		report("last_will_kept_when_a_new_one_is_refused", ok, NULL);
	}
}

/* ---- the kernel heartbeat ---- */

static int set_beat(int fd, uint32_t bar, uint32_t period_ms, uint64_t offset)
{
	struct scif_shim_beat b = { .bar = bar, .period_ms = period_ms, .offset = offset };

	return ioctl(fd, SCIF_SHIM_IOC_SET_BEAT, &b);
}

static uint32_t beat_word(void)
{
	return *(volatile uint32_t *)(S.shm + BEAT_WORD_OFF);
}

/*
 * The count moves every period while the file is open and stops when the heartbeat is
 * stopped, and when its file is released (a process killed). Bounds are loose: a guest's
 * timers run late under TCG.
 */
static void t_beat(void)
{
	uint32_t v0, v1, v2;
	int fd = open_shim(S.name), p[2] = { -1, -1 }, st;
	bool ok = fd >= 0 && S.shm;
	char c = 0;
	pid_t pid;

	if (S.shm)
		*(volatile uint32_t *)(S.shm + BEAT_WORD_OFF) = 0;
	if (!ok || set_beat(fd, IVSHMEM_BAR2, 1000, BEAT_WORD_OFF) < 0) {
		why("SET_BEAT: %s", strerror(errno));
		report("kernel_heartbeat_counts_and_stops", false, NULL);
		return;
	}
	/* the first count comes with the call, not a period later */
	if (beat_word() == 0)
		why("no count right after SET_BEAT");
	ok &= expect(set_beat(fd, IVSHMEM_BAR2, 10, BEAT_WORD_OFF), 0, "10 ms");
	usleep(20000);
	v0 = beat_word();
	usleep(300000);
	v1 = beat_word();
	if (v1 - v0 < 5)
		why("in 300 ms of 10 ms beats the count went from %u to %u", v0, v1);
	ok &= expect(set_beat(fd, 0, 0, 0), 0, "stop");
	v1 = beat_word();
	usleep(100000);
	if (beat_word() != v1)
		why("the count moved after the stop: %u, then %u", v1, beat_word());
	close(fd);

	/* in a process that is killed */
	if (pipe(p) < 0 || (pid = fork()) < 0) {
		report("kernel_heartbeat_counts_and_stops", false, NULL);
		return;
	}
	if (pid == 0) {
		int f = open_shim(S.name);

		c = f >= 0 && set_beat(f, IVSHMEM_BAR2, 10, BEAT_WORD_OFF) == 0 ? 'r' : 'x';
		if (write(p[1], &c, 1) != 1)
			_exit(2);
		for (;;)
			pause();
	}
	if (read(p[0], &c, 1) != 1 || c != 'r')
		why("the child could not start its heartbeat");
	usleep(100000);
	v0 = beat_word();
	usleep(100000);
	if (beat_word() == v0)
		why("the child's count did not move");
	kill(pid, SIGKILL);
	waitpid(pid, &st, 0);
	v2 = beat_word();
	usleep(100000);
	if (beat_word() != v2)
		why("the count moved after the kill: %u, then %u", v2, beat_word());
	close(p[0]);
	close(p[1]);
	report("kernel_heartbeat_counts_and_stops", ok, NULL);
}

static void t_beat_bad_args(void)
{
	const struct scif_shim_bar *b = S.info.bars;
	int fd = open_shim(S.name);
	bool ok = fd >= 0;

	ok &= expect(ioctl(fd, SCIF_SHIM_IOC_SET_BEAT, NULL), EFAULT, "BEAT NULL");
	ok &= expect(set_beat(fd, 2, SCIF_SHIM_BEAT_MIN_MS - 1, 0), EINVAL, "period too short");
	ok &= expect(set_beat(fd, 2, SCIF_SHIM_BEAT_MAX_MS + 1, 0), EINVAL, "period too long");
	ok &= expect(set_beat(fd, 2, 0, 0), EINVAL, "stop with a BAR");
	ok &= expect(set_beat(fd, 0, 0, 8), EINVAL, "stop with an offset");
	ok &= expect(set_beat(fd, 1, 100, 0), EINVAL, "BAR1 (MSI-X table)");
	ok &= expect(set_beat(fd, 3, 100, 0), EINVAL, "absent BAR3");
	ok &= expect(set_beat(fd, 2, 100, 6), EINVAL, "misaligned");
	ok &= expect(set_beat(fd, 2, 100, b[2].size), EINVAL, "at BAR2's end");
	ok &= expect(set_beat(fd, 0, 0, 0), 0, "stop when none runs");
	report("ioctl_set_beat_bad_args", ok, NULL);
	close(fd);
}

/* Any PCI device can be handed to the shim through new_id: QEMU's pci-testdev here. */
static void t_new_id(void)
{
	char pci[64], name[64], path[256], peer[32];
	struct scif_shim_info info;
	struct scif_shim_dma_alloc d;
	int fd = -1, i, mapped = 0;
	bool ok = find_pci(0x1b36, 0x0005, pci, sizeof(pci));

	if (!ok)
		why("no pci-testdev in the guest");
	if (ok && !write_file(DRV_SYSFS "/new_id", "1b36 0005")) {
		why("new_id: %s", strerror(errno));
		ok = false;
	}
	if (ok && !find_shim(pci, name, sizeof(name))) {
		why("new_id did not bind %s", pci);
		ok = false;
	}
	if (ok) {
		fd = open_shim(name);
		ok = fd >= 0 && expect(ioctl(fd, SCIF_SHIM_IOC_INFO, &info), 0, "INFO");
	}
	if (ok && (info.vendor != 0x1b36 || info.device != 0x0005 ||
		   (info.flags & SCIF_SHIM_INFO_PEER_ID)))
		why("info %04x:%04x flags %#x", info.vendor, info.device, info.flags);
	snprintf(path, sizeof(path), CLASS_SYSFS "/%s/peer_id", name);
	if (ok && (!read_file(path, peer, sizeof(peer)) || strcmp(peer, "none")))
		why("sysfs peer_id of a non-ivshmem device: %s", peer);
	for (i = 0; ok && i < SCIF_SHIM_MAX_BARS; i++) {
		volatile uint32_t *p;

		if (!(info.bars[i].flags & SCIF_SHIM_BAR_MMAP))
			continue;
		p = map_region(fd, info.bars[i].mmap_offset, 4096);
		if (!p) {
			why("mmap BAR%d: %s", i, strerror(errno));
			break;
		}
		(void)*p;
		munmap((void *)p, 4096);
		mapped++;
	}
	if (ok && !mapped)
		why("no mappable BAR on pci-testdev");
	if (ok && info.nr_vectors == 0)
		ok = expect(set_irq(fd, 0, S.efd[0]), EINVAL, "SET_IRQ without vectors");
	ok = ok && dma_alloc(fd, 4096, &d) && dma_free(fd, d.handle);
	if (fd >= 0)
		close(fd);
	write_file(DRV_SYSFS "/remove_id", "1b36 0005");
	if (!write_file(DRV_SYSFS "/unbind", pci))
		why("unbind %s: %s", pci, strerror(errno));
	if (find_shim(pci, name, sizeof(name)))
		why("still bound after unbind");
	report("bind_other_device_via_new_id", ok, NULL);
}

/* Unbind the ivshmem device under an open, mapped file; rebind; the old file fails cleanly. */
static void t_unbind_rebind(void)
{
	struct scif_shim_info info;
	struct scif_shim_dma_alloc d;
	struct scif_shim_dma_free f;
	uint8_t *bar0 = NULL, *shm = NULL, *dma = NULL;
	char path[128];
	int fd, e = eventfd(0, EFD_NONBLOCK);
	bool ok = true;

	fd = open_shim(S.name);
	if (fd < 0) {
		report("unbind_rebind_with_open_file", false, NULL);
		return;
	}
	bar0 = map_region(fd, S.info.bars[0].mmap_offset, 4096);
	shm = map_region(fd, S.info.bars[IVSHMEM_BAR2].mmap_offset, MBOX_SHM_SIZE);
	ok = bar0 && shm && dma_alloc(fd, 8192, &d);
	dma = ok ? map_region(fd, d.mmap_offset, d.size) : NULL;
	ok = ok && dma && expect(set_irq(fd, 0, e), 0, "attach");
	if (ok && (touch(bar0) || touch(shm) || touch(dma)))
		why("mappings not readable before unbind");
	snprintf(path, sizeof(path), "/dev/%s", S.name);

	ok = ok && write_file(DRV_SYSFS "/unbind", ivshmem_pci);
	if (ok) {
		if (touch(bar0) != SIGBUS || touch(shm) != SIGBUS || touch(dma) != SIGBUS)
			why("a mapping survived unbind");
		ok &= expect(ioctl(fd, SCIF_SHIM_IOC_INFO, &info), ENODEV, "INFO after unbind");
		ok &= expect(set_irq(fd, 0, e), ENODEV, "SET_IRQ after unbind");
		ok &= expect(ioctl(fd, SCIF_SHIM_IOC_DMA_ALLOC,
				   &(struct scif_shim_dma_alloc){ .size = 4096 }), ENODEV,
			     "DMA_ALLOC after unbind");
		f = (struct scif_shim_dma_free){ .handle = d.handle };
		ok &= expect(ioctl(fd, SCIF_SHIM_IOC_DMA_FREE, &f), ENODEV, "DMA_FREE after unbind");
		if (mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, 0) != MAP_FAILED)
			why("mmap after unbind succeeded");
		else
			ok &= expect(-1, ENODEV, "mmap after unbind");
		if (!access(path, F_OK))
			why("%s still exists after unbind", path);
		if (find_shim(ivshmem_pci, path, sizeof(path)))
			why("class device still present after unbind");
	}
	ok = ok && write_file(DRV_SYSFS "/bind", ivshmem_pci);
	/* the old file still works as a file: close and unmap are all it can do */
	munmap(bar0, 4096);
	munmap(shm, MBOX_SHM_SIZE);
	if (dma)
		munmap(dma, d.size);
	close(fd);
	close(e);
	/* the main session went with the old device too: reopen on the new one */
	session_close();
	if (ok && !session_open())
		ok = false;
	if (ok && ioctl(S.fd, SCIF_SHIM_IOC_INFO, &info) == 0 && info.peer_id != S.info.peer_id)
		why("peer id changed across rebind");
	report("unbind_rebind_with_open_file", ok, NULL);

	/* MSI-X comes back with the new binding */
	ok = ok && cmd(MBOX_CMD_RING, 0) == 1;
	if (ok && !efd_wait(S.efd[0], WAIT_MS))
		why("no interrupt after rebind");
	report("interrupts_after_rebind", ok, NULL);
}

/*
 * One worker of t_unbind_under_load: use every part of the uapi in a loop, on whatever device
 * is bound at the moment, and shrug off what an unbind in between causes (ENODEV, SIGBUS, a
 * vanished node). Counts completed rounds in *@rounds (shared memory).
 */
static void __attribute__((noreturn)) stress_worker(volatile uint32_t *rounds)
{
	struct sigaction sa = { .sa_handler = probe_handler };

	sigemptyset(&sa.sa_mask);
	sigaction(SIGBUS, &sa, NULL);
	sigaction(SIGSEGV, &sa, NULL);
	for (;;) {
		static volatile uint8_t *shm, *dma;
		static struct scif_shim_dma_alloc d;
		static int fd, e;
		struct scif_shim_info info;
		char name[64];

		shm = dma = NULL;
		fd = e = -1;
		if (!sigsetjmp(probe_jmp, 1)) {
			if (!find_shim(ivshmem_pci, name, sizeof(name))) {
				usleep(1000);	/* unbound right now */
				continue;
			}
			fd = open_shim(name);
			if (fd < 0 || ioctl(fd, SCIF_SHIM_IOC_INFO, &info) < 0)
				goto next;
			e = eventfd(0, EFD_NONBLOCK);
			set_irq(fd, (*rounds) % MBOX_NVECTORS, e);
			/* a heartbeat and a will that remove() and release race */
			ioctl(fd, SCIF_SHIM_IOC_SET_BEAT, &(struct scif_shim_beat){
				.bar = IVSHMEM_BAR2, .period_ms = 10, .offset = BEAT_WORD_OFF });
			ioctl(fd, SCIF_SHIM_IOC_SET_WILL, &(struct scif_shim_will){ .nr = 1,
				.w = { { .bar = IVSHMEM_BAR2, .offset = BEAT_WORD_OFF } } });
			shm = map_region(fd, info.bars[IVSHMEM_BAR2].mmap_offset, MBOX_SHM_SIZE);
			for (size_t off = 0; shm && off < MBOX_SHM_SIZE; off += 64 << 10)
				(void)shm[off];	/* faults while remove() may be zapping */
			d = (struct scif_shim_dma_alloc){ .size = 64 << 10 };
			if (ioctl(fd, SCIF_SHIM_IOC_DMA_ALLOC, &d) == 0) {
				dma = map_region(fd, d.mmap_offset, d.size);
				if (dma)
					memset((void *)dma, 0x5a, d.size);
				if (*rounds & 1)	/* else leave it to close */
					ioctl(fd, SCIF_SHIM_IOC_DMA_FREE,
					      &(struct scif_shim_dma_free){ .handle = d.handle });
			}
			(*rounds)++;
		}
next:
		/* reached normally or through SIGBUS: drop everything of this round */
		if (shm)
			munmap((void *)shm, MBOX_SHM_SIZE);
		if (dma)
			munmap((void *)dma, d.size);
		if (fd >= 0)
			close(fd);
		if (e >= 0)
			close(e);
	}
}

/*
 * Unbind and rebind repeatedly while workers fault, allocate, attach and close on the device:
 * remove() racing every other entry point must neither crash nor leak.
 */
static void t_unbind_under_load(void)
{
	enum { WORKERS = 3, CYCLES = 8 };
	volatile uint32_t *rounds = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
					 MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	pid_t pids[WORKERS];
	uint32_t before, total = 0;
	char extra[96];
	int i, st;
	bool ok = rounds != MAP_FAILED;

	session_close();
	for (i = 0; ok && i < WORKERS; i++) {
		pids[i] = fork();
		if (pids[i] == 0)
			stress_worker(&rounds[i]);
	}
	usleep(100000);
	for (i = 0; ok && i < CYCLES; i++) {
		before = rounds[0] + rounds[1] + rounds[2];
		ok = write_file(DRV_SYSFS "/unbind", ivshmem_pci);
		usleep(20000);
		ok = ok && write_file(DRV_SYSFS "/bind", ivshmem_pci);
		/* let the workers get going on the new binding before the next unbind */
		for (int w = 0; w < 100 && rounds[0] + rounds[1] + rounds[2] < before + WORKERS; w++)
			usleep(10000);
		if (!ok)
			why("unbind/bind cycle %d: %s", i, strerror(errno));
	}
	for (i = 0; i < WORKERS; i++) {
		kill(pids[i], SIGKILL);
		waitpid(pids[i], &st, 0);
		total += rounds[i];
	}
	if (ok && !session_open())
		ok = false;
	expect_clean(1, MBOX_NVECTORS);	/* only the new session remains */
	if (ok && (cmd(MBOX_CMD_RING, 1) != 1 || !efd_wait(S.efd[1], WAIT_MS)))
		why("no interrupt after the stress");
	snprintf(extra, sizeof(extra), "%d unbind/bind cycles under %d workers, %u rounds", CYCLES,
		 WORKERS, total);
	report("unbind_rebind_under_load", ok, extra);
	if (rounds != MAP_FAILED)
		munmap((void *)rounds, 4096);
}

/*
 * Hot removal: the PCI device itself goes away (sysfs remove) under an open, mapped file, and the
 * file is closed only after that, dropping the last reference to the departed pci_dev. A rescan
 * brings the device back and the shim binds it again.
 */
static void t_remove_rescan(void)
{
	char path[256];
	struct scif_shim_info info;
	struct scif_shim_dma_alloc d;
	uint8_t *shm = NULL, *dma = NULL;
	int fd, e = eventfd(0, EFD_NONBLOCK);
	bool ok;

	session_close();
	ok = find_shim(ivshmem_pci, S.name, sizeof(S.name)) && (fd = open_shim(S.name)) >= 0;
	if (!ok) {
		report("pci_remove_rescan_with_open_file", false, NULL);
		return;
	}
	shm = map_region(fd, S.info.bars[IVSHMEM_BAR2].mmap_offset, MBOX_SHM_SIZE);
	ok = shm && dma_alloc(fd, 8192, &d) && (dma = map_region(fd, d.mmap_offset, d.size)) &&
	     expect(set_irq(fd, 2, e), 0, "attach");
	if (ok && (touch(shm) || touch(dma)))
		why("mappings not readable before removal");
	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/remove", ivshmem_pci);
	ok = ok && write_file(path, "1");
	if (ok) {
		if (touch(shm) != SIGBUS || touch(dma) != SIGBUS)
			why("a mapping survived device removal");
		ok &= expect(ioctl(fd, SCIF_SHIM_IOC_INFO, &info), ENODEV, "INFO after removal");
		if (!access(path, F_OK))
			why("PCI device still present after remove");
	}
	if (shm)
		munmap(shm, MBOX_SHM_SIZE);
	if (dma)
		munmap(dma, d.size);
	close(fd);	/* the last reference to the removed device */
	close(e);
	ok = ok && write_file("/sys/bus/pci/rescan", "1");
	if (ok && !session_open())
		ok = false;
	if (ok && (cmd(MBOX_CMD_RING, 2) != 1 || !efd_wait(S.efd[2], WAIT_MS)))
		why("no interrupt after rescan");
	report("pci_remove_rescan_with_open_file", ok, NULL);
}

static void t_rmmod(void)
{
	struct stat st;
	bool ok;

	session_close();
	ok = unload_module();
	if (ok && (!stat("/sys/module/scif_shim", &st) || !stat(CLASS_SYSFS, &st)))
		why("module or class still registered after rmmod");
	report("rmmod_after_tests", ok, NULL);

	/* load again: binds again, and unloads again with a file used and closed in between */
	ok = load_module() && session_open();
	session_close();
	ok = ok && unload_module();
	report("reload_and_rmmod", ok, NULL);
}

/* No warning, oops or leak report from the kernel during the whole run. */
static void t_dmesg(bool dump)
{
	static const char *const bad[] = { "WARNING:", "BUG:", "] BUG ", "Oops", "Call Trace",
					    "UBSAN", "list_del corruption", "refcount_t",
					    "general protection", "leaked", "memory corruption",
					    "Poison overwritten" };
	int len = klogctl(10 /* SYSLOG_ACTION_SIZE_BUFFER */, NULL, 0);
	char *buf = len > 0 ? malloc((size_t)len + 1) : NULL, *line, *save = NULL;
	unsigned int i;
	bool ok = true;

	if (!buf || (len = klogctl(3 /* SYSLOG_ACTION_READ_ALL */, buf, len)) < 0) {
		why("klogctl: %s", strerror(errno));
		report("dmesg_clean", false, NULL);
		free(buf);
		return;
	}
	buf[len] = 0;
	for (line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		bool hit = false;

		for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
			hit |= strstr(line, bad[i]) != NULL;
		if (hit) {
			why("%s", line);
			ok = false;
		}
		/* after a failure, the shim's and the PCI core's messages help most */
		if (hit || (dump && (strstr(line, "scif_shim") || strstr(line, "pci"))))
			printf("dmesg: %s\n", line);
	}
	free(buf);
	report("dmesg_clean", ok, NULL);
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: shim_guest_test MODULE.ko\n");
		return 2;
	}
	module_path = argv[1];
	setvbuf(stdout, NULL, _IOLBF, 0);

	t_load();
	t_info();
	t_bar0();
	t_handshake();
	t_host_to_guest();
	t_guest_to_host();
	t_vectors();
	t_guest_pingpong();
	t_host_pingpong();
	t_fanout();
	t_bad_ioctls();
	t_bad_mmaps();
	t_dma();
	t_close_everything();
	t_kill_everything();
	t_will_exit();
	t_will_kill();
	t_will_bad_args();
	t_beat();
	t_beat_bad_args();
	t_new_id();
	t_unbind_rebind();
	t_unbind_under_load();
	t_remove_rescan();
	if (S.shm)
		cmd(MBOX_CMD_DONE, 0);
	t_rmmod();
	t_dmesg(n_fail > 0);
	printf("GUEST: %u passed, %u failed\n", n_pass, n_fail);
	return n_fail ? 1 : 0;
}
