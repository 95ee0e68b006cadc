// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * test-regress.c - regression tests for defects that programs written for Intel's libscif
 * and an adversarial user found: handshakes raced by the first control message, mappings
 * the owner did not count yet, synchronous RMAs overtaking asynchronous ones, memory advice
 * lost by registration, connections lost when the connector closes at once, close racing a
 * registration, replies and silence from a lying peer, silent connection requests.
 * Node 0 is this process; the card side is tests/mp/scif-peer (peer-compat.c, hostile.c).
 */
#include <grp.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "common.h"

TestSuite(regress, .timeout = 120);

/* Accept one connection from the spawned peer @pid; a peer that dies first fails the test. */
static scif_epd_t accept_from(scif_epd_t lep, pid_t pid, int ms)
{
	struct scif_portID peer;
	scif_epd_t ep = -1;

	test_accept_or_peer_death(lep, &peer, &ep, pid, ms);
	return ep;
}

static pid_t spawn(const char *role, uint16_t port, const char *arg)
{
	char a[16];
	char *args[] = { (char *)role, "0", test_num(a, port), (char *)arg, NULL };

	return test_spawn_peer(1, args);
}

/*
 * Intel 13.2: the connector registers a window the moment scif_connect returns, and so do
 * we the moment scif_accept does. Every connection must arrive whole, every registration
 * succeed.
 */
Test(regress, connect_then_register_at_once)
{
	const int rounds = 300;
	uint16_t port = test_port();
	scif_epd_t lep = test_listener(port, 16);
	pid_t pid = spawn("connect-register", port, "300");
	void *buf;

	cr_assert_eq(posix_memalign(&buf, 4096, 4096), 0);
	for (int i = 0; i < rounds; i++) {
		scif_epd_t ep = accept_from(lep, pid, 10000);
		char c;

		cr_assert_geq(scif_register(ep, buf, 4096, 0, SCIF_PROT_READ, 0), 0,
			      "round %d: register on the accepted endpoint: %s", i, strerror(errno));
		cr_assert_eq(scif_recv(ep, &c, 1, SCIF_RECV_BLOCK), 1, "round %d: %s", i,
			     strerror(errno));
		cr_assert_eq(c, 'r');
		c = 'a';
		cr_assert_eq(scif_send(ep, &c, 1, SCIF_SEND_BLOCK), 1);
		scif_close(ep);
	}
	cr_expect_eq(test_wait(pid), 0);
	scif_close(lep);
	free(buf);
}

/*
 * Intel 13.3: once the peer's scif_mmap has returned, our window's offsets stay reserved
 * after scif_unregister (EADDRINUSE) until the peer's scif_munmap has returned.
 */
Test(regress, peer_mapping_counted_when_mmap_returns)
{
	uint16_t port = test_port();
	scif_epd_t lep = test_listener(port, 1);
	pid_t pid = spawn("mmap-hold", port, NULL);
	scif_epd_t ep = accept_from(lep, pid, 10000);
	const size_t len = 64 << 10;
	uint64_t w[2];
	void *buf, *buf2;
	off_t off;
	char c;

	cr_assert_eq(posix_memalign(&buf, 4096, len), 0);
	cr_assert_eq(posix_memalign(&buf2, 4096, len), 0);
	off = scif_register(ep, buf, len, 0, SCIF_PROT_READ | SCIF_PROT_WRITE, 0);
	cr_assert_geq(off, 0);
	w[0] = (uint64_t)off;
	w[1] = len;
	cr_assert_eq(scif_send(ep, w, sizeof(w), SCIF_SEND_BLOCK), (int)sizeof(w));
	cr_assert_eq(scif_recv(ep, &c, 1, SCIF_RECV_BLOCK), 1);
	cr_assert_eq(c, 'm');
	cr_assert_eq(scif_unregister(ep, off, len), 0);
	errno = 0;
	cr_expect_eq(scif_register(ep, buf2, len, off, SCIF_PROT_READ, SCIF_MAP_FIXED),
		     SCIF_REGISTER_FAILED);
	cr_expect_eq(errno, EADDRINUSE, "register over a mapped window: %s", strerror(errno));
	c = 'u';
	cr_assert_eq(scif_send(ep, &c, 1, SCIF_SEND_BLOCK), 1);
	cr_assert_eq(scif_recv(ep, &c, 1, SCIF_RECV_BLOCK), 1);
	cr_assert_eq(c, 'x');
	/* The peer's munmap has returned: the offsets are free now. */
	cr_expect_eq(scif_register(ep, buf2, len, off, SCIF_PROT_READ, SCIF_MAP_FIXED), off,
		     "register after the peer unmapped: %s", strerror(errno));
	scif_close(ep);
	scif_close(lep);
	cr_expect_eq(test_wait(pid), 0);
	free(buf);
	free(buf2);
}

/* Intel 13.5: a SCIF_RMA_SYNC transfer returns after every RMA issued before it. */
Test(regress, sync_rma_after_async_lands_last)
{
	const size_t big = 1 << 20, small = 64 << 10;
	uint16_t port = test_port();
	scif_epd_t lep = test_listener(port, 1);
	pid_t pid = spawn("rma-async-sync", port, "20");
	scif_epd_t ep = accept_from(lep, pid, 10000);
	uint8_t *win;
	uint64_t roff;

	cr_assert_eq(posix_memalign((void **)&win, 4096, big), 0);
	memset(win, 0, big);
	roff = (uint64_t)scif_register(ep, win, big, 0, SCIF_PROT_READ | SCIF_PROT_WRITE, 0);
	cr_assert_eq(scif_send(ep, &roff, sizeof(roff), SCIF_SEND_BLOCK), (int)sizeof(roff));
	for (int r = 0; r < 20; r++) {
		char c;
		size_t bad_new = 0, bad_old = 0;

		cr_assert_eq(scif_recv(ep, &c, 1, SCIF_RECV_BLOCK), 1, "round %d", r);
		for (size_t i = 0; i < small; i++)
			bad_new += win[i] != 'a' + r % 26;
		for (size_t i = small; i < big; i++)
			bad_old += win[i] != 'A' + r % 26;
		cr_expect_eq(bad_new, 0, "round %d: %zu bytes of the synchronous write overwritten",
			     r, bad_new);
		cr_expect_eq(bad_old, 0, "round %d: %zu bytes of the asynchronous write missing", r,
			     bad_old);
		c = 'k';
		cr_assert_eq(scif_send(ep, &c, 1, SCIF_SEND_BLOCK), 1);
	}
	cr_expect_eq(test_wait(pid), 0);
	scif_close(ep);
	scif_close(lep);
	free(win);
}

/* The VmFlags of the mapping holding addr (/proc/self/smaps), in buf. */
static const char *vm_flags(void *addr, char *buf, size_t cap)
{
	FILE *f = fopen("/proc/self/smaps", "re");
	uintptr_t a = (uintptr_t)addr;
	char line[512];
	int in = 0;

	buf[0] = 0;
	while (f && fgets(line, sizeof(line), f)) {
		uintptr_t s, e;

		if (sscanf(line, "%lx-%lx ", &s, &e) == 2 && strchr(line, '-') < strchr(line, ' '))
			in = a >= s && a < e;
		else if (in && !strncmp(line, "VmFlags:", 8))
			snprintf(buf, cap, "%s", line + 8);
	}
	if (f)
		fclose(f);
	return buf;
}

/* A child of fork() writing addr: 0 if it could, else the signal that stopped it. */
static int child_writes(volatile char *addr)
{
	pid_t pid = fork();
	int st;

	if (pid == 0) {
		signal(SIGSEGV, SIG_DFL); /* a sanitizer's handler would turn the fault into exit 1 */
		addr[0] = 1;
		_exit(0);
	}
	cr_assert_gt(pid, 0);
	cr_assert_eq(test_waitpid(pid, &st, 10000), pid);
	return WIFSIGNALED(st) ? WTERMSIG(st) : 0;
}

/*
 * Intel 13.4: advice the application gave its memory before registering it survives
 * registration (DONTFORK: a fork child faults on it; DONTDUMP; locking), and advice given
 * after registration applies too.
 */
Test(regress, registration_keeps_memory_advice)
{
	scif_epd_t a, b;
	const size_t len = 16 << 10;
	char *before, *after, flags[512];
	int locked;

	test_pair(&a, &b, NULL);
	before = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	after = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	cr_assert(before != MAP_FAILED && after != MAP_FAILED);
	memset(before, 7, len);
	cr_assert_eq(madvise(before, len, MADV_DONTFORK), 0);
	cr_assert_eq(madvise(before, len, MADV_DONTDUMP), 0);
	cr_assert_eq(mlock(before, len), 0, "mlock: %s", strerror(errno));
	/* AddressSanitizer makes mlock() a no-op: expect the lock only if there was one. */
	locked = strstr(vm_flags(before, flags, sizeof(flags)), " lo") != NULL;
	cr_assert_geq(scif_register(a, before, len, 0, SCIF_PROT_READ | SCIF_PROT_WRITE, 0), 0);
	cr_expect_eq(before[len - 1], 7, "contents kept");
	vm_flags(before, flags, sizeof(flags));
	cr_expect(strstr(flags, " dc") != NULL, "DONTFORK lost: VmFlags%s", flags);
	cr_expect(strstr(flags, " dd") != NULL, "DONTDUMP lost: VmFlags%s", flags);
	cr_expect(!locked || strstr(flags, " lo") != NULL, "mlock lost: VmFlags%s", flags);
	cr_expect_eq(child_writes(before), SIGSEGV, "a fork child could write DONTFORK memory");

	cr_assert_geq(scif_register(a, after, len, 0, SCIF_PROT_READ | SCIF_PROT_WRITE, 0), 0);
	cr_assert_eq(madvise(after, len, MADV_DONTFORK), 0);
	cr_expect_eq(child_writes(after), SIGSEGV, "advice after registration ignored");
	munlock(before, len);
	scif_close(a);
	scif_close(b);
}

/*
 * SCIF_REG_ADVICE=0 skips reading the advice of fresh memory (scif(3)): registration still
 * works and keeps the contents, and the advice is not carried over.
 */
Test(regress, registration_without_advice_when_asked)
{
	scif_epd_t a, b;
	const size_t len = 16 << 10;
	char *buf, flags[512];

	setenv("SCIF_REG_ADVICE", "0", 1);
	test_pair(&a, &b, NULL);
	buf = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	cr_assert(buf != MAP_FAILED);
	memset(buf, 9, len);
	cr_assert_eq(madvise(buf, len, MADV_DONTFORK), 0);
	cr_assert_geq(scif_register(a, buf, len, 0, SCIF_PROT_READ | SCIF_PROT_WRITE, 0), 0);
	cr_expect_eq(buf[len - 1], 9, "contents kept");
	vm_flags(buf, flags, sizeof(flags));
	cr_expect(strstr(flags, " dc") == NULL, "DONTFORK carried over though not asked: VmFlags%s",
		  flags);
	scif_close(a);
	scif_close(b);
	unsetenv("SCIF_REG_ADVICE");
}

/*
 * Registering a part of a registered buffer shares the buffer's pages (the cheap path: the
 * kernel's tree of mappings names our memfd), whatever lies around it: the peer reads what
 * the application writes through its own addresses afterwards, in both windows.
 */
Test(regress, registering_part_of_a_window_shares_its_pages)
{
	enum { PAGES = 8 };
	const size_t pg = 4096, len = PAGES * pg;
	scif_epd_t a, b;
	off_t whole, part;
	char *buf, got[2 * 4096];

	test_pair(&a, &b, NULL);
	buf = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	cr_assert(buf != MAP_FAILED);
	memset(buf, 1, len);
	whole = scif_register(a, buf, len, 0, SCIF_PROT_READ | SCIF_PROT_WRITE, 0);
	cr_assert_geq(whole, 0, "%s", strerror(errno));
	/* Split the window's mapping in three (protections), then register the middle twice. */
	cr_assert_eq(mprotect(buf + 5 * pg, pg, PROT_READ), 0);
	part = scif_register(a, buf + 3 * pg, 2 * pg, 0, SCIF_PROT_READ | SCIF_PROT_WRITE, 0);
	cr_assert_geq(part, 0, "%s", strerror(errno));
	cr_assert_eq(scif_register(a, buf + 4 * pg, 2 * pg, 0, SCIF_PROT_READ, 0) >= 0, 1,
		     "a part spanning two of the window's mappings: %s", strerror(errno));
	memset(buf + 3 * pg, 2, 2 * pg);
	cr_assert_eq(scif_vreadfrom(b, got, 2 * pg, part, SCIF_RMA_SYNC), 0, "%s", strerror(errno));
	cr_expect(got[0] == 2 && got[2 * pg - 1] == 2, "the part's window does not see the writes");
	cr_assert_eq(scif_vreadfrom(b, got, 2 * pg, whole + (off_t)(3 * pg), SCIF_RMA_SYNC), 0);
	cr_expect(got[0] == 2 && got[2 * pg - 1] == 2, "the whole window does not see the writes");
	scif_close(a);
	scif_close(b);
	munmap(buf, len);
}

/* The byte at offset i of a pattern that differs in every page and every run of them. */
static uint8_t pattern_at(size_t i) { return (uint8_t)(i * 2654435761u >> 13) ^ (uint8_t)(i >> 12); }

/* How many mappings /proc/self/maps lists that overlap [p, p + len). */
static int mappings_over(const void *p, size_t len)
{
	uintptr_t a = (uintptr_t)p, b = a + len, s, e;
	FILE *f = fopen("/proc/self/maps", "re");
	char line[512];
	int n = 0;

	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "%lx-%lx ", &s, &e) == 2 && s < b && e > a)
			n++;
	if (f)
		fclose(f);
	return n;
}

/*
 * Registration moves the application's pages into window memory a chunk at a time, leaving
 * pages of zeros uncopied: a range of several chunks over four mappings (one read-only, one
 * DONTFORK, ends not on a chunk boundary, runs of zeros) keeps every byte and each mapping's
 * protection and advice, the chunks merge back into one mapping per original mapping, and
 * the peer reads what the application reads and writes.
 */
Test(regress, registration_moves_many_chunks_of_several_mappings)
{
	const size_t pg = 4096, len = (9 << 20) + 5 * pg, ro = (3 << 20) + pg, dc = (6 << 20) + 3 * pg;
	scif_epd_t a, b;
	char flags[512];
	uint8_t *buf, *got, *want;
	off_t off;

	test_pair(&a, &b, NULL);
	buf = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	got = malloc(len);
	want = malloc(len);
	cr_assert(buf != MAP_FAILED && got && want);
	for (size_t i = 0; i < len; i++)
		buf[i] = pattern_at(i);
	/* Pages of zeros (not copied into a fresh file): at both ends and across a chunk's end. */
	memset(buf, 0, pg);
	memset(buf + (2 << 20) - 3 * pg, 0, 5 * pg);
	memset(buf + len - pg, 0, pg);
	memcpy(want, buf, len);
	cr_assert_eq(mprotect(buf + ro, pg, PROT_READ), 0);
	cr_assert_eq(madvise(buf + dc, len - dc, MADV_DONTFORK), 0);
	cr_assert_eq(mappings_over(buf, len), 4);
	off = scif_register(a, buf, len, 0, SCIF_PROT_READ, 0);
	cr_assert_geq(off, 0, "%s", strerror(errno));
	cr_assert_eq(memcmp(buf, want, len), 0, "registration changed the bytes");
	cr_expect_eq(mappings_over(buf, len), 4, "the chunks did not merge back into 4 mappings");
	cr_expect(strstr(vm_flags(buf + len - 1, flags, sizeof(flags)), " dc") != NULL,
		  "DONTFORK lost: VmFlags%s", flags);
	cr_expect(strstr(vm_flags(buf + ro, flags, sizeof(flags)), " wr") == NULL,
		  "the read-only page became writable: VmFlags%s", flags);
	cr_assert_eq(scif_vreadfrom(b, got, len, off, SCIF_RMA_SYNC), 0, "%s", strerror(errno));
	cr_expect_eq(memcmp(got, buf, len), 0, "the peer reads other bytes than the application");
	/*
	 * The pages are the window's, those of zeros too: writes through the application's
	 * addresses reach it.
	 */
	buf[len - 1] = 0x5a;
	buf[(2 << 20) - 1] = 0xa5;
	cr_assert_eq(scif_vreadfrom(b, got, len, off, SCIF_RMA_SYNC), 0);
	cr_expect_eq(got[len - 1], 0x5a, "the window does not see the application's write");
	cr_expect_eq(got[(2 << 20) - 1], 0xa5, "the window does not see the application's write");
	scif_close(a);
	scif_close(b);
	munmap(buf, len);
	free(got);
	free(want);
}

/* nr_hugepages before the test raised it, restored after it whatever its outcome; or -1. */
static long hugepages_before = -1;

static void hugepages_restore(void)
{
	FILE *f;

	if (hugepages_before >= 0 && (f = fopen("/proc/sys/vm/nr_hugepages", "w"))) {
		fprintf(f, "%ld\n", hugepages_before);
		fclose(f);
	}
}

/*
 * hugetlbfs memory takes no write(2): registration copies it through a mapping, a huge page
 * at a time, into window memory of huge pages. As root the test reserves the two pages it
 * needs and gives back what it reserved.
 */
Test(regress, registration_moves_hugetlb_memory, .fini = hugepages_restore)
{
	const size_t huge = 2 << 20, len = 2 * huge;
	const int hflags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB;
	scif_epd_t a, b;
	uint8_t *buf, *got;
	FILE *f;
	off_t off;

	buf = mmap(NULL, len, PROT_READ | PROT_WRITE, hflags, -1, 0);
	if (buf == MAP_FAILED && geteuid() == 0 && (f = fopen("/proc/sys/vm/nr_hugepages", "r+"))) {
		if (fscanf(f, "%ld", &hugepages_before) == 1) {
			rewind(f);
			fprintf(f, "%ld\n", hugepages_before + 4);
		}
		fclose(f);
		buf = mmap(NULL, len, PROT_READ | PROT_WRITE, hflags, -1, 0);
	}
	cr_assert(buf != MAP_FAILED, "no huge pages (as root the test reserves them): %s",
		  strerror(errno));
	test_pair(&a, &b, NULL);
	got = malloc(len);
	cr_assert(got);
	for (size_t i = 0; i < len; i++)
		buf[i] = pattern_at(i);
	off = scif_register(a, buf, len, 0, SCIF_PROT_READ | SCIF_PROT_WRITE, 0);
	cr_assert_geq(off, 0, "%s", strerror(errno));
	for (size_t i = 0; i < len; i++)
		cr_assert_eq(buf[i], pattern_at(i), "byte %zu changed by registration", i);
	cr_assert_eq(scif_vreadfrom(b, got, len, off, SCIF_RMA_SYNC), 0, "%s", strerror(errno));
	cr_expect_eq(memcmp(got, buf, len), 0, "the peer reads other bytes than the application");
	scif_close(a);
	scif_close(b);
	munmap(buf, len);
	free(got);
}

/* ---- hardening (issue 9) ------------------------------------------------------------------ */

struct reg_loop {
	scif_epd_t ep;
	void *buf;
	int err, rounds;
};

static void *register_loop(void *arg)
{
	struct reg_loop *r = arg;

	for (;;) {
		off_t off = scif_register(r->ep, r->buf, 64 << 10, 0, SCIF_PROT_READ, 0);

		if (off < 0 || scif_unregister(r->ep, off, 64 << 10)) {
			r->err = errno;
			return NULL;
		}
		r->rounds++;
	}
}

/* scif_close returns while another thread is inside scif_register, which then fails cleanly. */
Test(regress, close_while_registering, .timeout = 60)
{
	void *buf;

	cr_assert_eq(posix_memalign(&buf, 4096, 64 << 10), 0);
	for (int i = 0; i < 20; i++) {
		struct reg_loop r = { .buf = buf };
		scif_epd_t b;
		pthread_t th;

		test_pair(&r.ep, &b, NULL);
		cr_assert_eq(pthread_create(&th, NULL, register_loop, &r), 0);
		usleep(1000 + (unsigned)i * 300);
		cr_assert_eq(scif_close(r.ep), 0);
		pthread_join(th, NULL);
		cr_expect(r.err == EINTR || r.err == EBADF || r.err == ENOTTY || r.err == ECONNRESET,
			  "round %d: register/unregister failed with %s", i, strerror(r.err));
		scif_close(b);
	}
	free(buf);
}

/* Accept the hostile peer of @kind; the connection it then ruins. */
static scif_epd_t hostile_conn(const char *kind, scif_epd_t *lep, pid_t *pid)
{
	char a[16];
	uint16_t port = test_port();
	char *args[] = { "hostile", "0", test_num(a, port), (char *)kind, NULL };

	*lep = test_listener(port, 4);
	*pid = test_spawn_peer(1, args);
	return accept_from(*lep, *pid, 10000);
}

/* Whatever error a peer answers a request with, the call returns an errno the spec allows. */
static void lying_reply(const char *kind)
{
	scif_epd_t lep, ep;
	pid_t pid;
	void *buf = NULL;
	int mark;

	cr_assert_eq(posix_memalign(&buf, 4096, 4096), 0);
	ep = hostile_conn(kind, &lep, &pid);
	errno = 0;
	cr_expect_eq(scif_register(ep, buf, 4096, 0, SCIF_PROT_READ, 0), SCIF_REGISTER_FAILED,
		     "%s: a registration the peer refused succeeded", kind);
	cr_expect_eq(errno, ECONNRESET, "%s: register: %s", kind, strerror(errno));
	scif_close(ep);
	cr_expect_eq(test_wait(pid), 0, "hostile peer saw no request");

	ep = hostile_conn(kind, &lep, &pid);
	errno = 0;
	cr_expect_eq(scif_fence_mark(ep, SCIF_FENCE_INIT_PEER, &mark), -1, "%s: mark", kind);
	cr_expect_eq(errno, ECONNRESET, "%s: fence_mark: %s", kind, strerror(errno));
	scif_close(ep);
	scif_close(lep);
	cr_expect_eq(test_wait(pid), 0);
	free(buf);
}

Test(regress, peer_reply_negative_error) { lying_reply("reply-err:-1000"); }
Test(regress, peer_reply_int_min_error) { lying_reply("reply-err:-2147483648"); }
Test(regress, peer_reply_unlisted_error) { lying_reply("reply-err:22"); }
Test(regress, peer_reply_huge_error) { lying_reply("reply-err:1000"); }

/* A peer that never answers costs itself the connection after SCIF_REQ_TIMEOUT_MS. */
Test(regress, peer_never_replies, .timeout = 60)
{
	setenv("SCIF_REQ_TIMEOUT_MS", "300", 1);
	lying_reply("reply-none");
}

/* Silent connection requests never make a non-blocking accept wait, nor refuse others. */
Test(regress, silent_requests_do_not_stall_accept, .timeout = 60)
{
	uint16_t port = test_port();
	scif_epd_t lep = test_listener(port, 8), ep;
	struct scif_portID peer;
	pid_t silent[4], pid;
	char a[16];
	char *args[] = { "hostile", "0", test_num(a, port), "silent", NULL };
	uint64_t t0;

	for (int i = 0; i < 4; i++)
		silent[i] = test_spawn_peer(1, args);
	usleep(300000); /* they connect at once, then say nothing */
	t0 = test_now_ms();
	errno = 0;
	cr_expect_eq(scif_accept(lep, &peer, &ep, 0), -1);
	cr_expect_eq(errno, EAGAIN);
	cr_expect_lt(test_now_ms() - t0, 500, "non-blocking accept waited %llu ms",
		     (unsigned long long)(test_now_ms() - t0));
	pid = spawn("connect-close", port, "1");
	ep = accept_from(lep, pid, 5000);
	cr_expect_eq(test_wait(pid), 0);
	scif_close(ep);
	for (int i = 0; i < 4; i++) {
		kill(silent[i], SIGKILL);
		test_wait(silent[i]);
	}
	scif_close(lep);
}

/* Every connection that completed is accepted, even when the connector closed at once. */
Test(regress, connect_then_close_all_accepted, .timeout = 120)
{
	const int rounds = 1000;
	uint16_t port = test_port();
	scif_epd_t lep = test_listener(port, 16);
	pid_t pid = spawn("connect-close", port, "1000");

	for (int i = 0; i < rounds; i++) {
		scif_epd_t ep = accept_from(lep, pid, 5000);
		char c;

		/* It reads as closed: nothing to receive, then ECONNRESET. */
		errno = 0;
		while (scif_recv(ep, &c, 1, SCIF_RECV_BLOCK) == 1)
			;
		cr_expect_eq(errno, ECONNRESET, "round %d: %s", i, strerror(errno));
		scif_close(ep);
	}
	cr_expect_eq(test_wait(pid), 0);
	scif_close(lep);
}

/* Small contract points: scif_get_fd of a negative descriptor, scif_poll of a closed one. */
Test(regress, get_fd_and_poll_closed)
{
	scif_epd_t a, b;
	struct scif_pollepd p;

	errno = 0;
	cr_expect_eq(scif_get_fd(-1), -1);
	cr_expect_eq(errno, EINVAL);
	test_pair(&a, &b, NULL);
	cr_assert_eq(scif_close(a), 0);
	p = (struct scif_pollepd){ .epd = a, .events = POLLIN };
	cr_expect_eq(scif_poll(&p, 1, 0), 1);
	cr_expect_eq(p.revents, POLLNVAL);
	scif_close(b);
}

/*
 * Another Unix user can neither take nor block our port names, nor hold a privileged port's
 * name: the domain's directory is closed to it (needs root, to be another user at all).
 */
Test(regress, other_user_cannot_take_our_ports, .timeout = 30)
{
	uint16_t port = test_port();
	const char *base = getenv("SCIF_RUN_DIR");
	char dir[64], name[192];
	int sync[2], st;
	scif_epd_t ep;
	pid_t pid;
	char c;

	if (geteuid() != 0)
		cr_skip_test("needs root to act as another user");
	ep = scif_open(); /* attaches: the domain's directory exists now */
	cr_assert_geq(ep, 0);
	snprintf(dir, sizeof(dir), "%s/scif-u0", base && *base ? base : "/tmp");
	cr_assert_eq(pipe(sync), 0);
	pid = fork();
	if (pid == 0) {
		/* As nobody: every way to squat a name of root's domain must fail. */
		struct sockaddr_un sa = { .sun_family = AF_UNIX };
		int s = socket(AF_UNIX, SOCK_SEQPACKET, 0), bad = 0;

		if (setgroups(0, NULL) || setgid(65534) || setuid(65534))
			_exit(10);
		snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/n0.l%u", dir, port);
		bad |= bind(s, (struct sockaddr *)&sa, sizeof(sa)) == 0;
		snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/admin/n0.l100", dir);
		bad |= bind(s, (struct sockaddr *)&sa, sizeof(sa)) == 0;
		snprintf(name, sizeof(name), "%s/n0.p%u", dir, port);
		bad |= open(name, O_RDWR | O_CREAT, 0666) >= 0;
		bad |= rename(dir, "/tmp/scif-stolen") == 0;
		if (write(sync[1], "x", 1) != 1)
			_exit(11);
		pause(); /* hold whatever we got until the parent has checked */
		_exit(bad ? 1 : 0);
	}
	cr_assert_gt(pid, 0);
	cr_assert_eq(read(sync[0], &c, 1), 1);
	cr_expect_eq(scif_bind(ep, port), port, "bind: %s", strerror(errno));
	cr_expect_eq(scif_listen(ep, 1), 0, "listen: %s", strerror(errno));
	kill(pid, SIGTERM);
	cr_assert_eq(test_waitpid(pid, &st, 10000), pid);
	cr_expect(WIFSIGNALED(st) && WTERMSIG(st) == SIGTERM,
		  "the other user squatted a name (status %d)", st);
	scif_close(ep);
	ep = scif_open();
	cr_expect_eq(scif_bind(ep, 100), 100, "privileged bind: %s", strerror(errno));
	cr_expect_eq(scif_listen(ep, 1), 0);
	scif_close(ep);
}

/*
 * Memory registered, unregistered, unmapped and mapped anew at the same address is the new
 * memory when registered again, not the old window's pages.
 */
Test(regress, registering_remapped_memory_sees_the_new_memory)
{
	const size_t len = 16 << 10;
	scif_epd_t a, b;
	char *p, out[64];
	off_t off;

	test_pair(&a, &b, NULL);
	p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	cr_assert(p != MAP_FAILED);
	memset(p, 'A', len);
	off = scif_register(a, p, len, 0, SCIF_PROT_READ | SCIF_PROT_WRITE, 0);
	cr_assert_geq(off, 0);
	cr_assert_eq(scif_unregister(a, off, len), 0);
	cr_assert_eq(munmap(p, len), 0);
	cr_assert(mmap(p, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1,
		       0) == p);
	memset(p, 'B', len);
	off = scif_register(a, p, len, 0, SCIF_PROT_READ | SCIF_PROT_WRITE, 0);
	cr_assert_geq(off, 0);
	cr_assert_eq(scif_vreadfrom(b, out, sizeof(out), off, SCIF_RMA_SYNC), 0);
	cr_expect_eq(out[0], 'B', "the peer read the old memory ('%c')", out[0]);
	p[0] = 'C'; /* and the window is the application's memory */
	cr_assert_eq(scif_vreadfrom(b, out, 1, off, SCIF_RMA_SYNC), 0);
	cr_expect_eq(out[0], 'C');
	scif_close(a);
	scif_close(b);
	munmap(p, len);
}

/* A non-blocking connect that succeeded reports its port even if the peer left since. */
Test(regress, nonblocking_connect_collected_after_peer_left)
{
	uint16_t port = test_port();
	scif_epd_t lep = test_listener(port, 1), c = test_request(port), ep;
	struct scif_pollepd p = { .epd = c, .events = POLLOUT };
	struct scif_portID peer;
	int r;

	cr_assert(test_wait_request(lep, 5000));
	cr_assert_eq(scif_accept(lep, &peer, &ep, 0), 0);
	cr_assert_eq(scif_poll(&p, 1, 5000), 1);
	scif_close(ep); /* the peer leaves before the result is collected */
	for (int i = 0; i < 500 && !(p.revents & POLLHUP); i++) {
		usleep(1000);
		scif_poll(&p, 1, 0);
	}
	r = scif_connect(c, &(struct scif_portID){ .node = peer.node, .port = port });
	cr_expect_eq(r, peer.port, "collected %d (%s), expected the local port %u", r,
		     r < 0 ? strerror(errno) : "-", peer.port);
	scif_close(c);
	scif_close(lep);
}

/*
 * Windows cost the peer no descriptor: a peer limited to 64 descriptors takes 1,000 of our
 * windows, and the connection stays up (it reset at the limit before).
 */
Test(regress, windows_cost_the_peer_no_descriptor, .timeout = 120)
{
	uint16_t port = test_port();
	scif_epd_t lep = test_listener(port, 1), ep;
	pid_t pid = spawn("low-fd-hold", port, "64");
	const int n = 1000;
	char *buf, c = 'x';

	ep = accept_from(lep, pid, 10000);
	buf = mmap(NULL, (size_t)n * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
		   -1, 0);
	cr_assert(buf != MAP_FAILED);
	for (int i = 0; i < n; i++)
		cr_assert_geq(scif_register(ep, buf + (size_t)i * 4096, 4096, 0, SCIF_PROT_READ, 0),
			      0, "window %d: %s", i, strerror(errno));
	cr_assert_eq(scif_send(ep, &c, 1, SCIF_SEND_BLOCK), 1);
	cr_assert_eq(scif_recv(ep, &c, 1, SCIF_RECV_BLOCK), 1, "the peer dropped the connection");
	scif_close(ep);
	scif_close(lep);
	cr_expect_eq(test_wait(pid), 0);
	munmap(buf, (size_t)n * 4096);
}

/*
 * Processes that start together on a machine where the domain's directory does not exist
 * yet all get in. The directory used to be made, then given its mode: a process looking in
 * between saw a directory with the wrong mode, took it for one planted by somebody else, and
 * its first scif_open() failed (ENXIO, about 1 in 240 opens of 8 processes at once).
 */
Test(regress, simultaneous_first_opens_all_succeed, .timeout = 120)
{
	enum { ROUNDS = 20, PROCS = 12 };
	const char *env = getenv("SCIF_RUN_DIR");
	char *saved = env ? strdup(env) : NULL;

	for (int round = 0; round < ROUNDS; round++) {
		char dir[] = "/tmp/scif-race-XXXXXX", fdarg[16], cmd[64];
		char *args[] = { "open-race", fdarg, NULL };
		pid_t pids[PROCS];
		int p[2];

		cr_assert_not_null(mkdtemp(dir));
		cr_assert_eq(chmod(dir, 01777), 0);
		/* Only the read end goes to the children, or none would ever see the end. */
		cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
		cr_assert_eq(fcntl(p[0], F_SETFD, 0), 0);
		snprintf(fdarg, sizeof(fdarg), "%d", p[0]);
		setenv("SCIF_RUN_DIR", dir, 1);
		for (int i = 0; i < PROCS; i++)
			pids[i] = test_spawn_peer(0, args);
		if (saved)
			setenv("SCIF_RUN_DIR", saved, 1);
		else
			unsetenv("SCIF_RUN_DIR");
		/* All of them are blocked in read(): closing the pipe starts them at once. */
		close(p[0]);
		close(p[1]);
		for (int i = 0; i < PROCS; i++) {
			int st = test_wait(pids[i]);

			cr_expect_eq(st, 0, "round %d: process %d of %d exited %d (scif_open failed)",
				     round, i, PROCS, st);
		}
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
		cr_expect_eq(system(cmd), 0);
	}
	free(saved);
}
