// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * test-vos.c - the two frameworks of virtio over SCIF across processes: the host framework
 * (node 0) and the card framework (node 1) run in fork() children with a test device pair,
 * "echo" (the backend copies each request's readable part into its writable part, the
 * frontend sends checksummed buffers and checks what comes back). Covers attach and round
 * trips, event-idx suppression, either side killed and coming back, and hostile cards and
 * hosts (raw SCIF peers) that the frameworks must survive.
 *
 * The test process itself never uses SCIF (a child picks its node with SCIF_NODE before its
 * first call). Children leave with _exit and never call cr_*; they report through a shared
 * page. Every wait has a deadline and watches the children: one that dies early fails the
 * test with its exit status.
 */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <syslog.h>
#include <unistd.h>
#include <linux/virtio_ids.h>

#include "common.h"
#include "internal.h"
#include "vq.h"

TestSuite(vos, .timeout = 60);
TestSuite(hostile_card, .timeout = 60);
TestSuite(hostile_host, .timeout = 60);

#define PORT 4120               /* unprivileged: the tests need not run as root */
#define BUFSZ 512
#define NBUF 48
#define QSIZE 64
#define PAGE 4096u

static const char echo_config[] = "echo-config-v1";
static const char echo_config2[] = "echo-config-v2"; /* set by the backend after 100 requests */

/* What the children report; written by them, read by the test (relaxed atomics). */
struct shared {
	unsigned target;            /* the frontend sends requests while c_sent < target */
	unsigned h_open, h_start, h_kick, h_stop, h_close, h_reqs, h_bad;
	int h_stop_why;
	uint64_t h_stop_ms, h_features;
	unsigned c_open, c_start, c_irq, c_stop, c_close, c_sent, c_ok, c_bad, c_resets, c_config;
	int c_stop_why;
	uint64_t c_stop_ms;
	char msg[256];              /* why a hostile peer failed */
};

static struct shared *sh;
static char dir[200];

#define GET(f) __atomic_load_n(&sh->f, __ATOMIC_RELAXED)
#define SET(f, v) __atomic_store_n(&sh->f, (v), __ATOMIC_RELAXED)
#define INC(f) __atomic_add_fetch(&sh->f, 1, __ATOMIC_RELAXED)

/* ---------------------------------------------------------------------------------------- */
/* The echo device. A request: struct echo_hdr + payload, split into two readable segments
 * every third time; one writable segment of BUFSZ. */

struct echo_hdr {
	uint32_t seq, len;
	uint64_t sum;
};

static void echo_fill(uint8_t *p, uint32_t seq, uint32_t len)
{
	struct echo_hdr h = { .seq = seq, .len = len };
	uint32_t x = seq * 2654435761u + 1;

	for (uint32_t i = sizeof(h); i < len; i++) {
		x = x * 1103515245u + 12345u;
		p[i] = (uint8_t)(x >> 16);
	}
	h.sum = test_fnv(TEST_FNV_INIT, p + sizeof(h), len - sizeof(h));
	memcpy(p, &h, sizeof(h));
}

static int echo_open(struct vos_hdev *d, const struct vos_devconf *conf)
{
	(void)conf;
	vos_hdev_set_features(d, 0);
	INC(h_open);
	return vos_hdev_set_config(d, echo_config, sizeof(echo_config));
}

static int echo_start(struct vos_hdev *d)
{
	SET(h_features, vos_hdev_features(d));
	INC(h_start);
	return 0;
}

static int echo_kick(struct vos_hdev *d, unsigned q)
{
	static struct vos_req r;
	static uint8_t buf[BUFSZ];
	int n;

	INC(h_kick);
	while ((n = vos_hq_pop(d, q, &r)) > 0) {
		struct echo_hdr h;
		uint32_t len = r.out_len;

		if (len < sizeof(h) || len > BUFSZ || r.in_len < len) {
			INC(h_bad);
			len = 0;
		} else if (vos_req_read(d, &r, 0, buf, len) != (ssize_t)len) {
			return -EIO;
		} else {
			memcpy(&h, buf, sizeof(h));
			if (h.len != len || h.sum != test_fnv(TEST_FNV_INIT, buf + sizeof(h),
							      len - sizeof(h)))
				INC(h_bad);
			if (vos_req_write(d, &r, 0, buf, len) != (ssize_t)len)
				return -EIO;
		}
		if ((n = vos_hq_push(d, q, &r, len)) < 0)
			return n;
		if (INC(h_reqs) == 100 &&
		    (n = vos_hdev_set_config(d, echo_config2, sizeof(echo_config2))) < 0)
			return n;
	}
	return n < 0 ? n : vos_hq_notify(d, q);
}

static int echo_event(struct vos_hdev *d, int fd, short revents)
{
	(void)d, (void)fd, (void)revents;
	return 0;
}

static void echo_stop(struct vos_hdev *d, enum vos_stop_reason why)
{
	(void)d;
	SET(h_stop_why, (int)why);
	SET(h_stop_ms, test_now_ms());
	INC(h_stop);
}

static void echo_close(struct vos_hdev *d)
{
	(void)d;
	INC(h_close);
}

static void echo_status(struct vos_hdev *d, FILE *out)
{
	(void)d;
	fprintf(out, "reqs=%u", GET(h_reqs));
}

static const struct vos_backend_ops echo_backend = {
	.type = VIRTIO_ID_NET, .name = "echo", .nqueues = 1, .queue_max = 256,
	.open = echo_open, .start = echo_start, .kick = echo_kick, .event = echo_event,
	.stop = echo_stop, .close = echo_close, .status = echo_status,
};

/* Frontend: NBUF requests in flight, one buffer pair each. */
static struct {
	uint8_t *out[NBUF], *in[NBUF];
	uint32_t len[NBUF];
} fe;

static int fe_open(struct vos_cdev *d)
{
	char cfg[64] = "";

	vos_cdev_config(d, cfg, sizeof(cfg) - 1);
	INC(c_open);
	return strcmp(cfg, echo_config) && strcmp(cfg, echo_config2) ? -EINVAL : 0;
}

static int fe_size(struct vos_cdev *d, uint16_t qsize[VOS_MAX_QUEUES], size_t *pool)
{
	(void)d;
	if (qsize[0] > QSIZE)
		qsize[0] = QSIZE;
	*pool = 2 * NBUF * BUFSZ;
	return 0;
}

static int fe_post(struct vos_cdev *d, unsigned i)
{
	uint32_t seq, len;
	struct vos_sg sg[3];
	unsigned nout;

	if (GET(c_sent) >= GET(target))
		return 0;
	seq = INC(c_sent) - 1;
	len = (uint32_t)(sizeof(struct echo_hdr) + (seq * 37u) % (BUFSZ - sizeof(struct echo_hdr)));
	echo_fill(fe.out[i], seq, len);
	fe.len[i] = len;
	memset(fe.in[i], 0, BUFSZ);
	sg[0] = (struct vos_sg){ fe.out[i], len };
	nout = 1;
	if (seq % 3 == 0) {
		sg[0].len = len / 2;
		sg[1] = (struct vos_sg){ fe.out[i] + len / 2, len - len / 2 };
		nout = 2;
	}
	sg[nout] = (struct vos_sg){ fe.in[i], BUFSZ };
	return vos_cq_add(d, 0, sg, nout, 1, (void *)(uintptr_t)(i + 1));
}

static int fe_start(struct vos_cdev *d)
{
	int r = 0;

	INC(c_start);
	for (unsigned i = 0; i < NBUF; i++) {
		fe.out[i] = vos_cdev_alloc(d, BUFSZ, 64);
		fe.in[i] = vos_cdev_alloc(d, BUFSZ, 64);
		if (!fe.out[i] || !fe.in[i])
			return -ENOMEM;
	}
	for (unsigned i = 0; i < NBUF && r >= 0; i++)
		r = fe_post(d, i);
	return r < 0 ? r : vos_cq_kick(d, 0);
}

static int fe_irq(struct vos_cdev *d, unsigned q)
{
	uint32_t len;
	void *tok;
	int r = 0;

	INC(c_irq);
	while (r >= 0 && (tok = vos_cq_get(d, q, &len))) {
		unsigned i = (unsigned)(uintptr_t)tok - 1;

		if (len == fe.len[i] && !memcmp(fe.in[i], fe.out[i], len))
			INC(c_ok);
		else
			INC(c_bad);
		r = fe_post(d, i);
	}
	return r < 0 ? r : vos_cq_kick(d, q);
}

static int fe_config(struct vos_cdev *d)
{
	char cfg[64] = "";

	vos_cdev_config(d, cfg, sizeof(cfg) - 1);
	if (!strcmp(cfg, echo_config2))
		INC(c_config);
	return 0;
}

static int fe_event(struct vos_cdev *d, int fd, short revents)
{
	(void)d, (void)fd, (void)revents;
	return 0;
}

static void fe_stop(struct vos_cdev *d, enum vos_stop_reason why)
{
	(void)d;
	SET(c_stop_why, (int)why);
	SET(c_stop_ms, test_now_ms());
	if (why == VOS_STOP_RESET)
		INC(c_resets);
	INC(c_stop);
}

static void fe_close(struct vos_cdev *d)
{
	(void)d;
	INC(c_close);
}

static const struct vos_frontend_ops echo_frontend = {
	.type = VIRTIO_ID_NET, .name = "echo", .features = 0,
	.open = fe_open, .size = fe_size, .start = fe_start, .irq = fe_irq, .event = fe_event,
	.config = fe_config, .stop = fe_stop, .close = fe_close,
};

/* ---------------------------------------------------------------------------------------- */
/* Children. */

static int term_fd(void)
{
	sigset_t s;

	sigemptyset(&s);
	sigaddset(&s, SIGTERM);
	sigprocmask(SIG_BLOCK, &s, NULL);
	return signalfd(-1, &s, SFD_CLOEXEC);
}

static void child_env(const char *node, const char *ident)
{
	setenv("SCIF_NODE", node, 1);
	signal(SIGPIPE, SIG_IGN);
	vos_log_open(ident, false, getenv("VOS_TEST_VERBOSE") ? LOG_DEBUG : LOG_WARNING);
}

static int on_term_host(struct vos_host *h, void *arg)
{
	(void)h, (void)arg;
	return 1;
}

static int on_term_card(struct vos_card *c, void *arg)
{
	(void)c, (void)arg;
	return 1;
}

static void host_main(void)
{
	static const struct vos_backend_ops *const backends[] = { &echo_backend, NULL };
	struct vos_devconf dc = { .card = 1, .type = VIRTIO_ID_NET };
	struct vos_config conf = { .dev = &dc, .ndev = 1 };
	struct vos_host_opts o = { .run_dir = dir, .port = PORT, .backends = backends };
	struct vos_host *h;
	int fd = term_fd();

	child_env("0", "test-host");
	if (vos_host_new(&h, &o) < 0)
		_exit(10);
	if (vos_host_configure(h, &conf) < 0)
		_exit(11);
	if (vos_host_run(h, fd, on_term_host, NULL) < 0)
		_exit(12);
	vos_host_free(h);
	_exit(0);
}

static void card_main(void)
{
	static const struct vos_frontend_ops *const frontends[] = { &echo_frontend, NULL };
	struct vos_card_opts o = { .run_dir = dir, .port = PORT, .frontends = frontends };
	struct vos_card *c;
	int fd = term_fd();

	child_env("1", "test-card");
	if (vos_card_new(&c, &o) < 0)
		_exit(10);
	if (vos_card_run(c, fd, on_term_card, NULL) < 0)
		_exit(12);
	vos_card_free(c);
	_exit(0);
}

/* ---------------------------------------------------------------------------------------- */
/* The test process: children, watched. */

#define KIDS 4
static struct {
	pid_t pid;
	const char *name;
} kids[KIDS];

static pid_t spawn(const char *name, void (*fn)(void))
{
	pid_t pid;

	fflush(NULL);
	pid = fork();
	cr_assert_geq(pid, 0, "fork: %s", strerror(errno));
	if (pid == 0) {
		fn();
		_exit(99);
	}
	for (int i = 0; i < KIDS; i++)
		if (!kids[i].pid) {
			kids[i].pid = pid;
			kids[i].name = name;
			return pid;
		}
	cr_assert_fail("too many children");
	return -1;
}

static const char *kid_name(pid_t pid)
{
	for (int i = 0; i < KIDS; i++)
		if (kids[i].pid == pid)
			return kids[i].name;
	return "?";
}

static void forget(pid_t pid)
{
	for (int i = 0; i < KIDS; i++)
		if (kids[i].pid == pid)
			kids[i].pid = 0;
}

/* Fail the test if a child ended by itself (looked at without reaping). */
static void check_kids(void)
{
	for (int i = 0; i < KIDS; i++) {
		siginfo_t si;

		if (!kids[i].pid)
			continue;
		memset(&si, 0, sizeof(si));
		if (waitid(P_PID, (id_t)kids[i].pid, &si, WEXITED | WNOHANG | WNOWAIT) ||
		    !si.si_pid)
			continue;
		if (si.si_code == CLD_EXITED)
			cr_assert_fail("%s (pid %d) exited with status %d%s%s", kids[i].name,
				       (int)kids[i].pid, si.si_status, sh->msg[0] ? ": " : "",
				       sh->msg);
		cr_assert_fail("%s (pid %d) killed by signal %d", kids[i].name, (int)kids[i].pid,
			       si.si_status);
	}
}

/* Wait up to ms for expr, watching the children. Evaluates to whether expr came true. */
#define WAIT(expr, ms)                                                                   \
	({                                                                               \
		uint64_t _end = test_now_ms() + (ms);                                    \
		bool _ok;                                                                \
		while (!(_ok = (expr)) && test_now_ms() < _end) {                        \
			check_kids();                                                    \
			usleep(2000);                                                    \
		}                                                                        \
		_ok;                                                                     \
	})

/* Send sig and collect the exit status (killing after 5 s). */
static int end_kid(pid_t pid, int sig)
{
	int st;

	kill(pid, sig);
	test_waitpid(pid, &st, 5000);
	forget(pid);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* Wait for a child that ends by itself; its exit status. */
static int join_kid(pid_t pid, int ms)
{
	int st;

	test_waitpid(pid, &st, ms);
	forget(pid);
	cr_assert(WIFEXITED(st), "%s killed by signal %d", kid_name(pid), WTERMSIG(st));
	return WEXITSTATUS(st);
}

static void setup(void)
{
	char scif[220];

	sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	cr_assert_neq(sh, MAP_FAILED);
	memset(kids, 0, sizeof(kids));
	snprintf(dir, sizeof(dir), "%s/vos-test-XXXXXX",
		 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	cr_assert_not_null(mkdtemp(dir));
	snprintf(scif, sizeof(scif), "%s/scif", dir);
	cr_assert_eq(mkdir(scif, 0700), 0);
	setenv("SCIF_RUN_DIR", scif, 1);
	setenv("SCIF_LOCAL_NODES", "4", 1);
}

static void teardown(void)
{
	char cmd[240];

	for (int i = 0; i < KIDS; i++)
		if (kids[i].pid) {
			kill(kids[i].pid, SIGKILL);
			waitpid(kids[i].pid, NULL, 0);
		}
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd))
		cr_log_warn("could not remove %s", dir);
	munmap(sh, sizeof(*sh));
}

/* Host and card up, and n round trips done. */
static void start_both(unsigned n, pid_t *host, pid_t *card)
{
	SET(target, n);
	*host = spawn("host", host_main);
	*card = spawn("card", card_main);
	cr_assert(WAIT(GET(c_ok) >= n, 20000), "%u of %u round trips (bad %u, host saw %u)",
		  GET(c_ok), n, GET(c_bad), GET(h_reqs));
}

/* ---------------------------------------------------------------------------------------- */

Test(vos, attach_and_round_trips_with_checksums, .init = setup, .fini = teardown)
{
	pid_t host, card;

	start_both(3000, &host, &card);
	cr_expect_eq(GET(c_bad), 0);
	cr_expect_eq(GET(h_bad), 0);
	cr_expect_eq(GET(h_open), 1);
	cr_expect_eq(GET(c_open), 1);
	cr_expect_eq(GET(h_start), 1);
	cr_expect_eq(GET(c_start), 1);
	cr_expect(GET(h_features) & (1ULL << VIRTIO_F_VERSION_1));
	cr_expect(GET(h_features) & (1ULL << VIRTIO_RING_F_INDIRECT_DESC));
	cr_expect_eq(GET(c_config), 1, "config() saw the new config %u times", GET(c_config));
	/* Clean shutdown of both: the card says BYE, the host sees DETACH, not CARD_LOST. */
	cr_expect_eq(end_kid(card, SIGTERM), 0);
	cr_expect(WAIT(GET(h_stop) == 1, 2000));
	cr_expect_eq(GET(h_stop_why), VOS_STOP_DETACH);
	cr_expect_eq(GET(c_stop_why), VOS_STOP_DETACH);
	cr_expect_eq(GET(c_close), 1);
	cr_expect_eq(end_kid(host, SIGTERM), 0);
	cr_expect_eq(GET(h_close), 1);
}

Test(vos, event_idx_suppresses_doorbells, .init = setup, .fini = teardown)
{
	pid_t host, card;
	unsigned kicks, irqs;

	start_both(4000, &host, &card);
	cr_assert(GET(h_features) & (1ULL << VIRTIO_RING_F_EVENT_IDX));
	/* One kick() and one irq() follow start(); the rest are KICK and IRQ messages. */
	kicks = GET(h_kick) - 1;
	irqs = GET(c_irq) - 1;
	cr_log_info("4000 requests: %u KICKs, %u IRQs", kicks, irqs);
	cr_expect_lt(kicks + irqs, 4000 / 4, "%u KICKs + %u IRQs for 4000 requests", kicks, irqs);
}

Test(vos, card_killed_is_lost_within_1s_and_comes_back, .init = setup, .fini = teardown)
{
	pid_t host, card;
	uint64_t t0;
	unsigned ok;

	start_both(500, &host, &card);
	t0 = test_now_ms();
	cr_assert_eq(end_kid(card, SIGKILL), 128 + SIGKILL);
	cr_assert(WAIT(GET(h_stop) == 1, 2000), "the host did not stop the device");
	cr_expect_eq(GET(h_stop_why), VOS_STOP_CARD_LOST);
	cr_expect_lt(GET(h_stop_ms) - t0, 1000, "stop() %llu ms after the kill",
		     (unsigned long long)(GET(h_stop_ms) - t0));
	ok = GET(c_ok);
	SET(target, GET(c_sent) + 500);
	card = spawn("card again", card_main);
	cr_assert(WAIT(GET(c_ok) >= ok + 500, 20000), "%u round trips after the restart",
		  GET(c_ok) - ok);
	cr_expect_eq(GET(h_start), 2);
	cr_expect_eq(GET(h_open), 1, "the backend is opened once, not per card");
	cr_expect_eq(GET(c_bad) + GET(h_bad), 0);
}

Test(vos, host_killed_card_stops_and_reconnects, .init = setup, .fini = teardown)
{
	pid_t host, card;
	uint64_t t0;
	unsigned ok;

	start_both(500, &host, &card);
	t0 = test_now_ms();
	cr_assert_eq(end_kid(host, SIGKILL), 128 + SIGKILL);
	cr_assert(WAIT(GET(c_stop) == 1, 2000), "the card did not stop the device");
	cr_expect_eq(GET(c_stop_why), VOS_STOP_CARD_LOST);
	cr_expect_lt(GET(c_stop_ms) - t0, 1000);
	ok = GET(c_ok);
	SET(target, GET(c_sent) + 500);
	host = spawn("host again", host_main);
	cr_assert(WAIT(GET(c_ok) >= ok + 500, 20000), "%u round trips with the new host",
		  GET(c_ok) - ok);
	cr_expect_eq(GET(c_start), 2);
	cr_expect_eq(GET(c_open), 1, "the frontend keeps its device across host restarts");
	cr_expect_eq(GET(c_bad) + GET(h_bad), 0);
}

/* ---------------------------------------------------------------------------------------- */
/* A hostile card: a raw SCIF client on node 1 (child). Exits 0, or the step that failed with
 * a message in sh->msg. */

static int step;

#define CHECK(cond, ...)                                                                 \
	do {                                                                             \
		if (!(cond)) {                                                           \
			snprintf(sh->msg, sizeof(sh->msg), __VA_ARGS__);                 \
			_exit(step);                                                     \
		}                                                                        \
	} while (0)

static scif_epd_t raw_connect(uint16_t node)
{
	scif_epd_t epd = scif_open();

	CHECK(epd >= 0, "scif_open: %s", strerror(errno));
	CHECK(test_connect_retry(epd, node, PORT) >= 0, "connect: %s", strerror(errno));
	return epd;
}

static void raw_send(scif_epd_t epd, uint8_t type, uint16_t dev, uint8_t queue, uint32_t len,
		     uint64_t arg)
{
	struct vos_msg m = { .type = type, .queue = queue, .dev = dev, .len = len, .arg = arg };

	CHECK(scif_send(epd, &m, sizeof(m), SCIF_SEND_BLOCK) == sizeof(m), "send: %s",
	      strerror(errno));
}

/* The next message within ms: 1, 0 on timeout, -1 on EOF. */
static int raw_recv(scif_epd_t epd, struct vos_msg *m, int ms)
{
	uint64_t end = test_now_ms() + (uint64_t)ms;
	size_t got = 0;

	while (got < sizeof(*m)) {
		struct pollfd p = { .fd = epd, .events = POLLIN };
		int n = scif_recv(epd, (char *)m + got, (int)(sizeof(*m) - got), 0);

		if (n < 0)
			return -1;
		got += (size_t)n;
		if (n == 0 && test_now_ms() >= end)
			return 0;
		if (n == 0)
			poll(&p, 1, 10);
	}
	return 1;
}

/* The host must refuse: a REFUSE and/or the connection closed, within ms. */
static void raw_refused(scif_epd_t epd, int ms, const char *what)
{
	struct vos_msg m;
	int r;

	while ((r = raw_recv(epd, &m, ms)) == 1)
		CHECK(m.type == VOS_MSG_REFUSE, "%s: answered with message type %u", what, m.type);
	CHECK(r < 0, "%s: not refused within %d ms", what, ms);
	scif_close(epd);
}

static struct vos_devpage *raw_page(void)
{
	struct vos_devpage *p = mmap(NULL, VOS_DEVPAGE_SIZE, PROT_READ | PROT_WRITE,
				     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	CHECK(p != MAP_FAILED, "mmap");
	p->magic = VOS_MAGIC;
	p->version = VOS_VERSION;
	p->nslots = VOS_MAX_SLOTS;
	return p;
}

static uint32_t host_status(struct vos_devpage *page)
{
	return vos_load_acquire(&page->slot[0].host.host_gen) ? page->slot[0].host.host_status
							       : 0;
}

/* A device connection as a driver would make it, for slot 0 (echo, 1 queue). */
struct rawdev {
	scif_epd_t epd;
	uint8_t *win;
	size_t len;
	off_t off;
	struct vq_card vq;
};

static void raw_attach(struct rawdev *rd, struct vos_devpage *page, uint64_t cookie,
		       uint64_t features)
{
	struct vos_slot_card *sc = &page->slot[0].card;

	rd->epd = raw_connect(0);
	raw_send(rd->epd, VOS_MSG_ATTACH, 0, 0, 0, cookie);
	rd->len = ((vq_card_ring_bytes(QSIZE, features) + PAGE - 1) & ~(size_t)(PAGE - 1)) + PAGE;
	rd->win = mmap(NULL, rd->len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(rd->win != MAP_FAILED, "mmap");
	rd->off = scif_register(rd->epd, rd->win, rd->len, 0, SCIF_PROT_READ | SCIF_PROT_WRITE, 0);
	CHECK(rd->off != SCIF_REGISTER_FAILED, "register: %s", strerror(errno));
	CHECK(vq_card_init(&rd->vq, QSIZE, features, rd->win, rd->win, (uint64_t)rd->off,
			   rd->len) == 0, "vq_card_init");
	memset(sc, 0, sizeof(*sc));
	sc->status = VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
		     VIRTIO_CONFIG_S_FEATURES_OK | VIRTIO_CONFIG_S_DRIVER_OK;
	sc->features = features;
	sc->window = (uint64_t)rd->off;
	sc->window_len = rd->len;
	sc->queue[0].size = QSIZE;
	sc->queue[0].desc = vq_card_off(&rd->vq, rd->vq.desc);
	sc->queue[0].avail = vq_card_off(&rd->vq, rd->vq.avail);
	sc->queue[0].used = vq_card_off(&rd->vq, rd->vq.used);
	vos_store_release(&sc->card_gen, sc->card_gen + 2);
}

static void raw_detach(struct rawdev *rd)
{
	scif_close(rd->epd);
	vq_card_destroy(&rd->vq);
	munmap(rd->win, rd->len);
}

enum bad_ready { BAD_FEATURES, BAD_QSIZE, BAD_RINGS, BAD_QSIZE_HUGE, BAD_WINDOW_HUGE,
		 BAD_WINDOW_UNREGISTERED, BAD_STATUS };

/* READY with one thing wrong: the host closes the device connection, NEEDS_RESET set. */
static void raw_bad_ready(struct vos_devpage *page, uint64_t cookie, uint64_t features,
			  enum bad_ready bad)
{
	struct vos_slot_card *sc = &page->slot[0].card;
	static const char *const what[] = { "features not offered", "queue size 3",
		"rings outside the window", "queue size 32768", "window length overflowing",
		"window longer than registered", "status without DRIVER_OK" };
	struct rawdev rd;
	struct vos_msg m;
	uint64_t end;

	step++;
	raw_attach(&rd, page, cookie, features);
	switch (bad) {
	case BAD_FEATURES: sc->features |= 1ULL << 40; break;
	case BAD_QSIZE: sc->queue[0].size = 3; break;
	case BAD_RINGS: sc->queue[0].used = sc->window + sc->window_len; break;
	case BAD_QSIZE_HUGE: sc->queue[0].size = 32768; break;
	case BAD_WINDOW_HUGE: sc->window_len = UINT64_MAX - PAGE + 1; break;
	case BAD_WINDOW_UNREGISTERED: sc->window_len += 64 * PAGE; break;
	case BAD_STATUS: sc->status &= ~(uint32_t)VIRTIO_CONFIG_S_DRIVER_OK; break;
	}
	vos_store_release(&sc->card_gen, sc->card_gen + 2);
	raw_send(rd.epd, VOS_MSG_READY, 0, 0, 0, 0);
	while (raw_recv(rd.epd, &m, 3000) == 1)
		;
	end = test_now_ms() + 1000;
	while (!(host_status(page) & VOS_HSTATUS_NEEDS_RESET) && test_now_ms() < end)
		usleep(1000);
	CHECK(host_status(page) & VOS_HSTATUS_NEEDS_RESET, "READY with %s: no NEEDS_RESET",
	      what[bad]);
	CHECK(GET(h_start) == 0, "READY with %s: the device started", what[bad]);
	raw_detach(&rd);
}

static void hostile_card_main(void)
{
	struct vos_devpage *page, *bad;
	scif_epd_t ctl, silent, e;
	struct vos_msg m;
	struct rawdev rd;
	uint64_t cookie, features, t;
	off_t off;

	child_env("1", "test-hostile-card");
	step = 1; /* a first message that is neither HELLO nor ATTACH */
	e = raw_connect(0);
	raw_send(e, 77, 0, 0, 0, 0);
	raw_refused(e, 3000, "message type 77");

	step++; /* a silent connection, kept while the others go on */
	silent = raw_connect(0);
	t = test_now_ms();

	step++; /* HELLO naming a device page of the wrong size */
	page = raw_page();
	e = raw_connect(0);
	off = scif_register(e, page, VOS_DEVPAGE_SIZE, 0, SCIF_PROT_READ | SCIF_PROT_WRITE, 0);
	raw_send(e, VOS_MSG_HELLO, 0, 0, PAGE, (uint64_t)off);
	raw_refused(e, 1000, "HELLO with a 4096-byte page");

	step++; /* HELLO at an offset that is not page aligned */
	e = raw_connect(0);
	off = scif_register(e, page, VOS_DEVPAGE_SIZE, 0, SCIF_PROT_READ | SCIF_PROT_WRITE, 0);
	raw_send(e, VOS_MSG_HELLO, 0, 0, VOS_DEVPAGE_SIZE, (uint64_t)off + 123);
	raw_refused(e, 1000, "HELLO at an unaligned offset");

	step++; /* HELLO naming memory that is not registered */
	e = raw_connect(0);
	raw_send(e, VOS_MSG_HELLO, 0, 0, VOS_DEVPAGE_SIZE, 1ULL << 40);
	raw_refused(e, 1000, "HELLO with an unregistered page");

	step++; /* HELLO with a page of the wrong magic */
	bad = raw_page();
	bad->magic = 0x12345678;
	e = raw_connect(0);
	off = scif_register(e, bad, VOS_DEVPAGE_SIZE, 0, SCIF_PROT_READ | SCIF_PROT_WRITE, 0);
	raw_send(e, VOS_MSG_HELLO, 0, 0, VOS_DEVPAGE_SIZE, (uint64_t)off);
	raw_refused(e, 1000, "HELLO with a bad magic");

	step++; /* a good session, while the silent connection still waits */
	ctl = raw_connect(0);
	off = scif_register(ctl, page, VOS_DEVPAGE_SIZE, 0, SCIF_PROT_READ | SCIF_PROT_WRITE, 0);
	CHECK(off != SCIF_REGISTER_FAILED, "register: %s", strerror(errno));
	raw_send(ctl, VOS_MSG_HELLO, 0, 0, VOS_DEVPAGE_SIZE, (uint64_t)off);
	CHECK(raw_recv(ctl, &m, 1000) == 1 && m.type == VOS_MSG_WELCOME && m.arg,
	      "no WELCOME within 1 s");
	cookie = m.arg;
	CHECK(vos_load_acquire(&page->slot[0].host.host_gen) &&
	      page->slot[0].host.type == VIRTIO_ID_NET && page->slot[0].host.nqueues == 1 &&
	      !memcmp(page->slot[0].host.config, echo_config, sizeof(echo_config)),
	      "slot 0 is not the echo device");
	features = page->slot[0].host.features;
	CHECK((features & VOS_TRANSPORT_FEATURES) == VOS_TRANSPORT_FEATURES,
	      "features %#llx", (unsigned long long)features);

	step++; /* the silent connection is dropped after 2 s */
	while (raw_recv(silent, &m, 3000) == 1)
		;
	CHECK(test_now_ms() - t < 3500, "silent connection kept %llu ms",
	      (unsigned long long)(test_now_ms() - t));
	scif_close(silent);

	step++; /* ATTACH with a wrong cookie, and for a slot without a device */
	e = raw_connect(0);
	raw_send(e, VOS_MSG_ATTACH, 0, 0, 0, cookie + 1);
	raw_refused(e, 1000, "ATTACH with a wrong cookie");
	e = raw_connect(0);
	raw_send(e, VOS_MSG_ATTACH, 7, 0, 0, cookie);
	raw_refused(e, 1000, "ATTACH of an empty slot");

	raw_bad_ready(page, cookie, features, BAD_FEATURES);
	raw_bad_ready(page, cookie, features, BAD_QSIZE);
	raw_bad_ready(page, cookie, features, BAD_RINGS);
	raw_bad_ready(page, cookie, features, BAD_QSIZE_HUGE);
	raw_bad_ready(page, cookie, features, BAD_WINDOW_HUGE);
	raw_bad_ready(page, cookie, features, BAD_WINDOW_UNREGISTERED);
	raw_bad_ready(page, cookie, features, BAD_STATUS);

	step++; /* a live ring whose avail idx jumps past the queue size */
	raw_attach(&rd, page, cookie, features);
	raw_send(rd.epd, VOS_MSG_READY, 0, 0, 0, 0);
	t = test_now_ms() + 2000;
	while (GET(h_start) == 0 && test_now_ms() < t)
		usleep(1000);
	CHECK(GET(h_start) == 1, "a good READY did not start the device");
	CHECK(!(host_status(page) & VOS_HSTATUS_NEEDS_RESET), "NEEDS_RESET not cleared");
	vos_store_release(&rd.vq.avail->idx, (uint16_t)(QSIZE + 5));
	raw_send(rd.epd, VOS_MSG_KICK, 0, 0, 0, 0);
	while (raw_recv(rd.epd, &m, 3000) == 1)
		;
	t = test_now_ms() + 1000;
	while (!(host_status(page) & VOS_HSTATUS_NEEDS_RESET) && test_now_ms() < t)
		usleep(1000);
	CHECK(host_status(page) & VOS_HSTATUS_NEEDS_RESET, "avail idx jump: no NEEDS_RESET");
	CHECK(GET(h_stop) == 1 && GET(h_stop_why) == VOS_STOP_RESET,
	      "avail idx jump: stop %u why %d", GET(h_stop), GET(h_stop_why));
	raw_detach(&rd);

	step++; /* a KICK on a device connection that never said READY */
	e = raw_connect(0);
	raw_send(e, VOS_MSG_ATTACH, 0, 0, 0, cookie);
	raw_send(e, VOS_MSG_KICK, 0, 0, 0, 0);
	raw_refused(e, 2000, "KICK before READY");

	step++; /* garbage on the control connection ends the session */
	raw_send(ctl, 99, 0, 0, 0, 0);
	raw_refused(ctl, 2000, "garbage on the control connection");
	_exit(0);
}

Test(hostile_card, refused_or_reset_and_the_daemon_still_serves, .init = setup,
     .fini = teardown)
{
	pid_t host, evil;
	int st;

	SET(target, 300);
	host = spawn("host", host_main);
	evil = spawn("hostile card", hostile_card_main);
	st = join_kid(evil, 40000);
	cr_assert_eq(st, 0, "hostile card: step %d: %s", st, sh->msg);
	spawn("good card", card_main);
	cr_assert(WAIT(GET(c_ok) >= 300, 20000), "%u round trips for a good card afterwards",
		  GET(c_ok));
	cr_expect_eq(GET(h_open), 1);
	cr_expect_eq(GET(c_bad) + GET(h_bad), 0);
	cr_expect_eq(end_kid(host, SIGTERM), 0);
}

/* ---------------------------------------------------------------------------------------- */
/* A hostile host: a raw SCIF server on node 0 (child); the card framework must survive. */

static void slot_set(struct vos_devpage *p, unsigned i, uint8_t nqueues, uint16_t config_len)
{
	struct vos_slot_host *sh0 = &p->slot[i].host;

	sh0->type = VIRTIO_ID_NET;
	sh0->nqueues = nqueues;
	sh0->config_len = config_len;
	sh0->features = VOS_TRANSPORT_FEATURES;
	sh0->queue_max[0] = QSIZE;
	memcpy(sh0->config, echo_config, sizeof(echo_config));
	vos_store_release(&sh0->host_gen, 2);
}

static scif_epd_t raw_accept(scif_epd_t lep, int ms)
{
	struct pollfd p = { .fd = lep, .events = POLLIN };
	struct scif_portID peer;
	scif_epd_t epd;

	CHECK(poll(&p, 1, ms) == 1, "no connection within %d ms", ms);
	CHECK(scif_accept(lep, &peer, &epd, SCIF_ACCEPT_SYNC) == 0, "accept: %s",
	      strerror(errno));
	return epd;
}

static scif_epd_t hh_dev; /* the device connection the hostile host reads indirect tables on */

static int hh_read(void *ctx, void *buf, size_t len, uint64_t off)
{
	(void)ctx;
	return scif_vreadfrom(hh_dev, buf, len, (off_t)off, SCIF_RMA_SYNC) ? -errno : 0;
}

static int hh_write(void *ctx, const void *buf, size_t len, uint64_t off)
{
	(void)ctx;
	return scif_vwriteto(hh_dev, (void *)buf, len, (off_t)off, SCIF_RMA_SYNC) ? -errno : 0;
}

static const struct vq_mem_ops hh_mem = { .read = hh_read, .write = hh_write };

static void hostile_host_main(void)
{
	scif_epd_t lep, ctl, dev;
	struct vos_devpage *page;
	struct vos_slot_card sc;
	struct vq_host vq;
	struct vos_req req;
	struct vos_msg m;
	void *desc, *avail, *used;
	size_t map;
	int r;

	child_env("0", "test-hostile-host");
	lep = scif_open();
	step = 1;
	CHECK(scif_bind(lep, PORT) == PORT && scif_listen(lep, 8) == 0, "listen: %s",
	      strerror(errno));

	/* WELCOME garbage: the card hangs up and comes back. */
	for (int bad = 0; bad < 3; bad++) {
		static const struct vos_msg garbage[] = {
			{ .type = 99, .arg = 1 },
			{ .type = VOS_MSG_WELCOME, .arg = 0 },
			{ .type = VOS_MSG_WELCOME, .arg = 1, .len = 9999 },
		};

		step++;
		ctl = raw_accept(lep, 5000);
		CHECK(raw_recv(ctl, &m, 2000) == 1 && m.type == VOS_MSG_HELLO, "no HELLO");
		CHECK(scif_send(ctl, (void *)&garbage[bad], sizeof(m), SCIF_SEND_BLOCK) ==
		      sizeof(m), "send");
		while ((r = raw_recv(ctl, &m, 7000)) == 1)
			;
		CHECK(r < 0, "the card kept a connection with WELCOME garbage %d", bad);
		scif_close(ctl);
	}

	step++; /* slots with nqueues 99 and config_len 9999 are ignored; slot 2 is good */
	ctl = raw_accept(lep, 5000);
	CHECK(raw_recv(ctl, &m, 2000) == 1 && m.type == VOS_MSG_HELLO, "no HELLO");
	page = scif_mmap(NULL, VOS_DEVPAGE_SIZE, SCIF_PROT_READ | SCIF_PROT_WRITE, 0, ctl,
			 (off_t)m.arg);
	CHECK(page != SCIF_MMAP_FAILED, "mmap page: %s", strerror(errno));
	slot_set(page, 0, 99, sizeof(echo_config));
	slot_set(page, 1, 1, 9999);
	slot_set(page, 2, 1, sizeof(echo_config));
	raw_send(ctl, VOS_MSG_WELCOME, 0, 0, 3, 1234);

	step++; /* only slot 2 attaches, with the cookie */
	dev = raw_accept(lep, 3000);
	CHECK(raw_recv(dev, &m, 2000) == 1 && m.type == VOS_MSG_ATTACH && m.dev == 2 &&
	      m.arg == 1234, "ATTACH type %u dev %u arg %llu", m.type, m.dev,
	      (unsigned long long)m.arg);
	CHECK(raw_recv(dev, &m, 3000) == 1 && m.type == VOS_MSG_READY, "no READY");
	sc = page->slot[2].card;
	CHECK(sc.queue[0].size == QSIZE && (sc.features & (1ULL << VIRTIO_F_VERSION_1)),
	      "card half: size %u features %#llx", sc.queue[0].size,
	      (unsigned long long)sc.features);

	step++; /* used id out of range: the card re-attaches */
	map = (size_t)((sc.window_len + PAGE - 1) & ~(uint64_t)(PAGE - 1));
	desc = scif_mmap(NULL, map, SCIF_PROT_READ | SCIF_PROT_WRITE, 0, dev, (off_t)sc.window);
	CHECK(desc != SCIF_MMAP_FAILED, "mmap window: %s", strerror(errno));
	avail = (uint8_t *)desc + (sc.queue[0].avail - sc.window);
	used = (uint8_t *)desc + (sc.queue[0].used - sc.window);
	desc = (uint8_t *)desc + (sc.queue[0].desc - sc.window);
	hh_dev = dev;
	CHECK(vq_host_init(&vq, QSIZE, sc.features, desc, avail, used, sc.window, sc.window_len,
			   &hh_mem, NULL) == 0, "vq_host_init");
	for (uint64_t end = test_now_ms() + 3000; (r = vq_host_pop(&vq, &req)) == 0;) {
		CHECK(test_now_ms() < end, "no request from the card");
		usleep(1000);
	}
	CHECK(r == 1, "pop: %d", r);
	((struct vring_used *)used)->ring[0].id = 999;
	((struct vring_used *)used)->ring[0].len = 0;
	vos_store_release(&((struct vring_used *)used)->idx, 1);
	raw_send(dev, VOS_MSG_IRQ, 2, 0, 0, 0);
	while ((r = raw_recv(dev, &m, 3000)) == 1)
		CHECK(m.type == VOS_MSG_KICK, "message type %u", m.type);
	CHECK(r < 0, "the card kept using a ring with a bad used id");
	scif_close(dev);
	dev = raw_accept(lep, 3000);
	CHECK(raw_recv(dev, &m, 2000) == 1 && m.type == VOS_MSG_ATTACH && m.dev == 2,
	      "no new ATTACH after the bad used id");
	_exit(0);
}

Test(hostile_host, the_card_frontend_survives, .init = setup, .fini = teardown)
{
	pid_t evil, card;
	int st;

	SET(target, 1000000);
	evil = spawn("hostile host", hostile_host_main);
	card = spawn("card", card_main);
	st = join_kid(evil, 40000);
	cr_assert_eq(st, 0, "hostile host: step %d: %s", st, sh->msg);
	cr_expect_eq(GET(c_open), 1);
	/* stop(RESET) for the bad used id (the last stop may be CARD_LOST: the host left). */
	cr_expect_geq(GET(c_resets), 1, "%u stop(RESET)", GET(c_resets));
	/* Alive, and still a clean exit. */
	usleep(200000);
	check_kids();
	cr_expect_eq(end_kid(card, SIGTERM), 0);
	cr_expect_eq(GET(c_close), 1);
}
