/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test-fi-msg.c - the scif provider's FI_EP_MSG and passive endpoints, end to end through
 * libfabric.
 *
 * Every test forks a server and a client process (libfabric is only initialised after the
 * fork); they exchange addresses, keys and barriers over a socketpair. A process checks
 * with CK(), which prints the failed condition and exits 1. The Criterion process asserts
 * that both exited 0 and reports the exit status or signal otherwise. Every wait is
 * bounded: each event/completion wait (T_WAIT_MS), an alarm() watchdog per process, the
 * parent's deadline (it kills both) and Criterion's .timeout.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <rdma/fabric.h>
#include <rdma/fi_cm.h>
#include <rdma/fi_domain.h>
#include <rdma/fi_endpoint.h>
#include <rdma/fi_errno.h>
#include <rdma/fi_rma.h>

#include <scif.h>

#define T_WAIT_MS 15000    /* longest one wait for an event or completion */
#define T_WATCHDOG_S 40    /* a process still alive after this dies of SIGALRM */
#define T_DEADLINE_MS 50000

/* ------------------------------------------------------------------------------------ */
/* Process side. */

static const char *g_role = "?";
static int g_sock = -1; /* to the other process */

#define CK(cond, ...)                                                                        \
	do {                                                                                 \
		if (!(cond)) {                                                               \
			fprintf(stderr, "[%s] %s:%d: check failed: %s: ", g_role, __FILE__,  \
				__LINE__, #cond);                                            \
			fprintf(stderr, __VA_ARGS__);                                        \
			fprintf(stderr, "\n");                                               \
			_exit(1);                                                            \
		}                                                                            \
	} while (0)

#define CKF(call)                                                                            \
	do {                                                                                 \
		long _r = (long)(call);                                                      \
		CK(_r == 0, "%s = %ld (%s)", #call, _r, fi_strerror((int)-_r));              \
	} while (0)

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/** Send/receive exactly @p len bytes to/from the other process (bounded wait). */
static void oob_send(const void *buf, size_t len)
{
	const char *p = buf;

	while (len) {
		ssize_t n = write(g_sock, p, len);

		CK(n > 0 || errno == EINTR, "oob write: %s", strerror(errno));
		if (n > 0) {
			p += n;
			len -= (size_t)n;
		}
	}
}

static void oob_recv(void *buf, size_t len)
{
	char *p = buf;
	uint64_t end = now_ms() + T_WAIT_MS;

	while (len) {
		struct pollfd pfd = { .fd = g_sock, .events = POLLIN };
		ssize_t n;

		CK(now_ms() < end, "peer process silent for %d ms", T_WAIT_MS);
		if (poll(&pfd, 1, 100) <= 0)
			continue;
		n = read(g_sock, p, len);
		CK(n > 0, "oob read: %s", n == 0 ? "peer process gone" : strerror(errno));
		p += n;
		len -= (size_t)n;
	}
}

static void barrier(void)
{
	char c = 'b';

	oob_send(&c, 1);
	oob_recv(&c, 1);
}

static unsigned char pattern(size_t i, size_t seed)
{
	return (unsigned char)((i * 131u + seed * 7u + (i >> 8)) & 0xff);
}

static void fill(void *buf, size_t len, size_t seed)
{
	for (size_t i = 0; i < len; i++)
		((unsigned char *)buf)[i] = pattern(i, seed);
}

static size_t first_bad(const void *buf, size_t len, size_t seed)
{
	for (size_t i = 0; i < len; i++)
		if (((const unsigned char *)buf)[i] != pattern(i, seed))
			return i;
	return len;
}

/** Everything one side of a test opens. */
struct side {
	struct fi_info *info;
	struct fid_fabric *fabric;
	struct fid_domain *domain;
	struct fid_eq *eq;
	struct fid_cq *cq;
	struct fid_pep *pep;
	struct fid_ep *ep;
};

static struct fi_info *get_info(void)
{
	struct fi_info *hints = fi_allocinfo(), *info = NULL;
	int ret;

	CK(hints, "fi_allocinfo");
	hints->ep_attr->type = FI_EP_MSG;
	hints->caps = FI_MSG | FI_RMA;
	hints->mode = FI_CONTEXT;
	hints->domain_attr->mr_mode = FI_MR_PROV_KEY | FI_MR_VIRT_ADDR | FI_MR_ALLOCATED;
	hints->fabric_attr->prov_name = strdup("scif");
	ret = fi_getinfo(FI_VERSION(1, 17), NULL, NULL, 0, hints, &info);
	CK(ret == 0 && info, "fi_getinfo: %s", fi_strerror(-ret));
	fi_freeinfo(hints);
	return info;
}

/** Fabric, domain and EQ; the info is kept. */
static void open_common(struct side *s)
{
	struct fi_eq_attr eq_attr = { .size = 64, .wait_obj = FI_WAIT_UNSPEC };

	s->info = get_info();
	CKF(fi_fabric(s->info->fabric_attr, &s->fabric, NULL));
	CKF(fi_eq_open(s->fabric, &eq_attr, &s->eq, NULL));
	CKF(fi_domain(s->fabric, s->info, &s->domain, NULL));
}

/** An active endpoint for @p info with a DATA-format CQ bound and enabled. */
static void open_ep(struct side *s, struct fi_info *info)
{
	struct fi_cq_attr cq_attr = { .size = 256, .format = FI_CQ_FORMAT_DATA,
				      .wait_obj = FI_WAIT_UNSPEC };

	CKF(fi_cq_open(s->domain, &cq_attr, &s->cq, NULL));
	CKF(fi_endpoint(s->domain, info, &s->ep, NULL));
	CKF(fi_ep_bind(s->ep, &s->eq->fid, 0));
	CKF(fi_ep_bind(s->ep, &s->cq->fid, FI_TRANSMIT | FI_RECV));
	CKF(fi_enable(s->ep));
}

static void close_side(struct side *s)
{
	if (s->ep)
		CKF(fi_close(&s->ep->fid));
	if (s->pep)
		CKF(fi_close(&s->pep->fid));
	if (s->cq)
		CKF(fi_close(&s->cq->fid));
	if (s->domain)
		CKF(fi_close(&s->domain->fid));
	if (s->eq)
		CKF(fi_close(&s->eq->fid));
	if (s->fabric)
		CKF(fi_close(&s->fabric->fid));
	fi_freeinfo(s->info);
	memset(s, 0, sizeof(*s));
}

/** One EQ event (or error event, returned as -FI_EAVAIL with @p err filled in). */
static ssize_t eq_wait(struct side *s, uint32_t *event, void *buf, size_t len,
		       struct fi_eq_err_entry *err)
{
	uint64_t end = now_ms() + T_WAIT_MS;
	ssize_t ret;

	for (;;) {
		/* one long blocking wait: a lost wake-up fails the test instead of hiding */
		ret = fi_eq_sread(s->eq, event, buf, len, (int)(end - now_ms()) + 1, 0);
		if (ret == -FI_EAVAIL) {
			CK(err, "unexpected EQ error");
			memset(err, 0, sizeof(*err));
			CK(fi_eq_readerr(s->eq, err, 0) > 0, "fi_eq_readerr");
			return -FI_EAVAIL;
		}
		if (ret != -FI_EAGAIN && ret != -FI_ETIMEDOUT)
			return ret;
		CK(now_ms() < end, "no EQ event in %d ms", T_WAIT_MS);
	}
}

/** Wait for one event of type @p want; returns the cm data length (bytes after the entry). */
static size_t eq_expect(struct side *s, uint32_t want, void *buf, size_t len)
{
	uint32_t event = 0;
	struct fi_eq_err_entry err;
	ssize_t ret = eq_wait(s, &event, buf, len, &err);

	CK(ret != -FI_EAVAIL, "EQ error event: %s", fi_strerror(err.err));
	CK(ret >= (ssize_t)sizeof(struct fi_eq_cm_entry), "fi_eq_sread: %zd (%s)", ret,
	   fi_strerror((int)-ret));
	CK(event == want, "event %u, expected %u", event, want);
	return (size_t)ret - sizeof(struct fi_eq_cm_entry);
}

/** One completion; 1 when it is an error (then @p err holds it). */
static int cq_wait(struct side *s, struct fi_cq_data_entry *e, struct fi_cq_err_entry *err)
{
	uint64_t end = now_ms() + T_WAIT_MS;

	for (;;) {
		ssize_t ret = fi_cq_sread(s->cq, e, 1, NULL, (int)(end - now_ms()) + 1);

		if (ret == 1)
			return 0;
		if (ret == -FI_EAVAIL) {
			CK(err, "unexpected error completion");
			memset(err, 0, sizeof(*err));
			CK(fi_cq_readerr(s->cq, err, 0) == 1, "fi_cq_readerr");
			return 1;
		}
		CK(ret == -FI_EAGAIN || ret == -FI_ETIMEDOUT, "fi_cq_sread: %s",
		   fi_strerror((int)-ret));
		CK(now_ms() < end, "no completion in %d ms", T_WAIT_MS);
	}
}

static void cq_expect(struct side *s, void *context, uint64_t flags)
{
	struct fi_cq_data_entry e;
	struct fi_cq_err_entry err;

	if (cq_wait(s, &e, &err))
		CK(0, "error completion: %s (context %p)", fi_strerror(err.err), err.op_context);
	CK(e.op_context == context, "completion for %p, expected %p", e.op_context, context);
	CK((e.flags & flags) == flags, "completion flags %#" PRIx64 ", expected %#" PRIx64,
	   (uint64_t)e.flags, flags);
}

/** Post, retrying while the queue is full. */
#define POST(sp, call)                                                                       \
	do {                                                                                 \
		uint64_t _end = now_ms() + T_WAIT_MS;                                        \
		ssize_t _r;                                                                  \
		while ((_r = (call)) == -FI_EAGAIN) {                                        \
			struct fi_cq_data_entry _e;                                          \
			CK(now_ms() < _end, "%s: queue full for too long", #call);           \
			(void)fi_cq_read((sp)->cq, &_e, 0);                                  \
		}                                                                            \
		CK(_r == 0, "%s = %zd (%s)", #call, _r, fi_strerror((int)-_r));              \
	} while (0)

static const char client_cm[] = "hello from the client";
static const char server_cm[] = "welcome, says the server";

/** Server: open a listener, hand its address to the client. */
static void server_listen(struct side *s)
{
	char addr[64];
	size_t alen = sizeof(addr);
	uint32_t alen32;

	open_common(s);
	CKF(fi_passive_ep(s->fabric, s->info, &s->pep, NULL));
	CKF(fi_pep_bind(s->pep, &s->eq->fid, 0));
	CKF(fi_listen(s->pep));
	CKF(fi_getname(&s->pep->fid, addr, &alen));
	alen32 = (uint32_t)alen;
	oob_send(&alen32, sizeof(alen32));
	oob_send(addr, alen);
}

/** Server: wait for the request, check its data, accept it with ours. */
static void server_accept(struct side *s)
{
	struct {
		struct fi_eq_cm_entry e;
		char data[256];
	} ev;
	size_t n = eq_expect(s, FI_CONNREQ, &ev, sizeof(ev));

	CK(n == sizeof(client_cm) && !memcmp(ev.data, client_cm, n), "connreq data (%zu bytes)",
	   n);
	CK(ev.e.info && ev.e.info->handle, "connreq info");
	CK(ev.e.fid == &s->pep->fid, "connreq fid");
	open_ep(s, ev.e.info);
	CKF(fi_accept(s->ep, server_cm, sizeof(server_cm)));
	fi_freeinfo(ev.e.info);
	n = eq_expect(s, FI_CONNECTED, &ev, sizeof(ev));
	CK(ev.e.fid == &s->ep->fid, "connected fid");
}

/** Client: open an endpoint and start connecting to the server's address. */
static void client_start(struct side *s, char *addr)
{
	uint32_t alen;

	oob_recv(&alen, sizeof(alen));
	CK(alen <= 64, "address length %u", alen);
	oob_recv(addr, alen);
	open_common(s);
	open_ep(s, s->info);
	CKF(fi_connect(s->ep, addr, client_cm, sizeof(client_cm)));
}

static void client_connect(struct side *s)
{
	char addr[64];
	struct {
		struct fi_eq_cm_entry e;
		char data[256];
	} ev;
	size_t n;

	client_start(s, addr);
	n = eq_expect(s, FI_CONNECTED, &ev, sizeof(ev));
	CK(n == sizeof(server_cm) && !memcmp(ev.data, server_cm, n), "accept data (%zu bytes)",
	   n);
	CK(ev.e.fid == &s->ep->fid, "connected fid");
}

/* ------------------------------------------------------------------------------------ */
/* Coordinator: fork both roles, watch them. */

typedef void (*role_fn)(void);

static pid_t start_role(const char *name, role_fn fn, int sock, int other)
{
	pid_t pid = fork();

	cr_assert(pid >= 0, "fork: %s", strerror(errno));
	if (pid == 0) {
		g_role = name;
		g_sock = sock;
		close(other);
		alarm(T_WATCHDOG_S);
		fn();
		_exit(0);
	}
	return pid;
}

static void run_pair(role_fn server, role_fn client)
{
	int sv[2], st, left = 2;
	pid_t pid[2];
	const char *name[2] = { "server", "client" };
	uint64_t end;

	cr_assert(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair");
	pid[0] = start_role("server", server, sv[0], sv[1]);
	pid[1] = start_role("client", client, sv[1], sv[0]);
	close(sv[0]);
	close(sv[1]);
	end = now_ms() + T_DEADLINE_MS;
	while (left) {
		for (int i = 0; i < 2; i++) {
			if (pid[i] <= 0)
				continue;
			if (waitpid(pid[i], &st, WNOHANG) != pid[i])
				continue;
			if (WIFSIGNALED(st))
				cr_expect(0, "%s died of signal %d", name[i], WTERMSIG(st));
			else
				cr_expect(WEXITSTATUS(st) == 0, "%s exited with status %d",
					  name[i], WEXITSTATUS(st));
			pid[i] = 0;
			left--;
		}
		if (left && now_ms() > end) {
			for (int i = 0; i < 2; i++) {
				if (pid[i] > 0) {
					kill(pid[i], SIGKILL);
					waitpid(pid[i], &st, 0);
					cr_expect(0, "%s still running at the deadline", name[i]);
				}
			}
			break;
		}
		usleep(2000);
	}
}

/* ------------------------------------------------------------------------------------ */
/* Connection management. */

static void connect_server(void)
{
	struct side s = { 0 };
	char buf[64] = { 0 };
	struct {
		struct fi_eq_cm_entry e;
		char data[256];
	} ev;
	char name[64], peer[64];
	size_t nlen = sizeof(name), plen = sizeof(peer);

	char pep_name[64];
	size_t pnlen = sizeof(pep_name);

	server_listen(&s);
	CKF(fi_getname(&s.pep->fid, pep_name, &pnlen));
	server_accept(&s);
	CKF(fi_getname(&s.ep->fid, name, &nlen));
	CKF(fi_getpeer(s.ep, peer, &plen));
	/* the accepted endpoint has the listener's address; the peer is the client's */
	CK(nlen == pnlen && !memcmp(name, pep_name, nlen), "accepted endpoint's name");
	oob_send(peer, plen);
	POST(&s, fi_recv(s.ep, buf, sizeof(buf), NULL, 0, buf));
	cq_expect(&s, buf, FI_RECV | FI_MSG);
	CK(!strcmp(buf, "ping"), "got '%s'", buf);
	POST(&s, fi_send(s.ep, "pong", 5, NULL, 0, &s));
	cq_expect(&s, &s, FI_SEND | FI_MSG);
	/* the client shuts down: we see FI_SHUTDOWN */
	eq_expect(&s, FI_SHUTDOWN, &ev, sizeof(ev));
	CK(ev.e.fid == &s.ep->fid, "shutdown fid");
	close_side(&s);
}

static void connect_client(void)
{
	struct side s = { 0 };
	char buf[64] = { 0 };
	size_t optlen = sizeof(size_t), cmsize = 0;

	char name[64], seen[64];
	size_t nlen = sizeof(name);

	client_connect(&s);
	CKF(fi_getname(&s.ep->fid, name, &nlen));
	oob_recv(seen, nlen);
	CK(!memcmp(name, seen, nlen), "the server's fi_getpeer differs from our fi_getname");
	CKF(fi_getopt(&s.ep->fid, FI_OPT_ENDPOINT, FI_OPT_CM_DATA_SIZE, &cmsize, &optlen));
	CK(cmsize >= 256, "cm data size %zu", cmsize);
	POST(&s, fi_recv(s.ep, buf, sizeof(buf), NULL, 0, buf));
	POST(&s, fi_send(s.ep, "ping", 5, NULL, 0, &s));
	for (int got = 0; got != 3;) {
		struct fi_cq_data_entry e;

		CK(cq_wait(&s, &e, NULL) == 0, "completion");
		if (e.op_context == &s) {
			CK((e.flags & (FI_SEND | FI_MSG)) == (FI_SEND | FI_MSG), "send flags");
			got |= 1;
		} else {
			CK(e.op_context == buf && (e.flags & FI_RECV) && e.len == 5, "recv");
			got |= 2;
		}
	}
	CK(!strcmp(buf, "pong"), "got '%s'", buf);
	CKF(fi_shutdown(s.ep, 0));
	CK(fi_send(s.ep, "x", 1, NULL, 0, NULL) != 0, "send after shutdown");
	close_side(&s);
}

Test(msg, connect_accept_cm_data_shutdown, .timeout = 60)
{
	run_pair(connect_server, connect_client);
}

static const char reject_data[] = "not today";

static void reject_server(void)
{
	struct side s = { 0 };
	struct {
		struct fi_eq_cm_entry e;
		char data[256];
	} ev;

	server_listen(&s);
	eq_expect(&s, FI_CONNREQ, &ev, sizeof(ev));
	CKF(fi_reject(s.pep, ev.e.info->handle, reject_data, sizeof(reject_data)));
	fi_freeinfo(ev.e.info);
	barrier();
	close_side(&s);
}

static void reject_client(void)
{
	struct side s = { 0 };
	char addr[64];
	struct fi_eq_err_entry err;
	uint32_t event;
	char buf[256];
	ssize_t ret;

	client_start(&s, addr);
	ret = eq_wait(&s, &event, buf, sizeof(buf), &err);
	CK(ret == -FI_EAVAIL, "expected an error event, got %zd (event %u)", ret, event);
	CK(err.err == FI_ECONNREFUSED, "error %d (%s)", err.err, fi_strerror(err.err));
	CK(err.fid == &s.ep->fid, "error fid");
	CK(err.err_data_size == sizeof(reject_data) &&
	   !memcmp(err.err_data, reject_data, sizeof(reject_data)), "reject data (%zu bytes)",
	   err.err_data_size);
	barrier();
	close_side(&s);
}

Test(msg, reject_with_data, .timeout = 60)
{
	run_pair(reject_server, reject_client);
}

/** Connecting to a port nobody listens on: an FI_ECONNREFUSED error event. */
static void refused_server(void)
{
	struct scif_portID id;
	uint16_t self;
	scif_epd_t epd = scif_open();

	/* a bound endpoint that does not listen holds the port: nobody else gets it */
	CK(epd >= 0, "scif_open");
	CK(scif_get_nodeIDs(NULL, 0, &self) >= 1, "scif_get_nodeIDs");
	id.node = self;
	id.port = (uint16_t)scif_bind(epd, 0);
	CK(id.port > 0, "scif_bind");
	oob_send(&id, sizeof(id));
	barrier();
	scif_close(epd);
}

static void refused_client(void)
{
	struct side s = { 0 };
	struct scif_portID id;
	struct fi_eq_err_entry err;
	uint32_t event;
	char buf[256];
	ssize_t ret;

	oob_recv(&id, sizeof(id));
	open_common(&s);
	open_ep(&s, s.info);
	if (s.info->addr_format == FI_SOCKADDR_IN) {
		struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(id.port) };

		sin.sin_addr.s_addr = htonl(0x7f000001u | ((uint32_t)id.node << 8));
		CKF(fi_connect(s.ep, &sin, NULL, 0));
	} else {
		struct { uint16_t node, port; uint32_t magic; } a = { id.node, id.port,
								    0x53464931u };

		CK(s.info->addr_format == FI_FORMAT_UNSPEC, "address format %u",
		   s.info->addr_format);
		CKF(fi_connect(s.ep, &a, NULL, 0));
	}
	ret = eq_wait(&s, &event, buf, sizeof(buf), &err);
	CK(ret == -FI_EAVAIL, "expected an error event, got %zd", ret);
	CK(err.err == FI_ECONNREFUSED, "error %d (%s)", err.err, fi_strerror(err.err));
	CK(err.fid == &s.ep->fid, "error fid");
	CK(fi_send(s.ep, "x", 1, NULL, 0, NULL) != 0, "send on a refused endpoint");
	barrier();
	close_side(&s);
}

Test(msg, connect_refused, .timeout = 60)
{
	run_pair(refused_server, refused_client);
}

/* ------------------------------------------------------------------------------------ */
/* Messages. */

static const size_t sizes[] = { 0, 1, 7, 64, 255, 256, 300, 4095, 4096, 65536, 1 << 20,
				4 << 20 };
#define NSIZES (sizeof(sizes) / sizeof(sizes[0]))

/** Server: receive every size, check it, send it back. */
static void sizes_server(void)
{
	struct side s = { 0 };
	char *buf = malloc(4 << 20);

	CK(buf, "malloc");
	server_listen(&s);
	server_accept(&s);
	for (size_t i = 0; i < NSIZES; i++) {
		struct fi_cq_data_entry e;
		size_t bad;

		memset(buf, 0, sizes[i]);
		POST(&s, fi_recv(s.ep, buf, sizes[i], NULL, 0, buf));
		CK(cq_wait(&s, &e, NULL) == 0, "recv");
		CK(e.op_context == buf && (e.flags & FI_RECV), "recv completion");
		CK(e.len == sizes[i], "len %zu, expected %zu", e.len, sizes[i]);
		bad = first_bad(buf, sizes[i], i);
		CK(bad == sizes[i], "size %zu: byte %zu differs", sizes[i], bad);
		POST(&s, fi_send(s.ep, buf, sizes[i], NULL, 0, &s));
		cq_expect(&s, &s, FI_SEND);
	}
	barrier();
	free(buf);
	close_side(&s);
}

static void sizes_client(void)
{
	struct side s = { 0 };
	char *out = malloc(4 << 20), *in = malloc(4 << 20);

	CK(out && in, "malloc");
	client_connect(&s);
	for (size_t i = 0; i < NSIZES; i++) {
		struct iovec iov[3];
		size_t a = sizes[i] / 3, b = sizes[i] / 2, bad;
		int got = 0;

		fill(out, sizes[i], i);
		memset(in, 0, sizes[i]);
		/* receive into three pieces, send from one */
		iov[0] = (struct iovec){ in, a };
		iov[1] = (struct iovec){ in + a, b - a };
		iov[2] = (struct iovec){ in + b, sizes[i] - b };
		POST(&s, fi_recvv(s.ep, iov, NULL, 3, 0, in));
		POST(&s, fi_send(s.ep, out, sizes[i], NULL, 0, out));
		while (got != 3) {
			struct fi_cq_data_entry e;

			CK(cq_wait(&s, &e, NULL) == 0, "completion");
			if (e.op_context == out) {
				got |= 1;
			} else {
				CK(e.op_context == in, "context %p", e.op_context);
				CK(e.len == sizes[i], "len %zu, expected %zu", e.len, sizes[i]);
				got |= 2;
			}
		}
		bad = first_bad(in, sizes[i], i);
		CK(bad == sizes[i], "size %zu: echoed byte %zu differs", sizes[i], bad);
	}
	barrier();
	free(out);
	free(in);
	close_side(&s);
}

Test(msg, send_recv_sizes_0_to_4MiB, .timeout = 60)
{
	run_pair(sizes_server, sizes_client);
}

/** Truncation, cancel, inject and remote CQ data: receiver side. */
static void misc_server(void)
{
	struct side s = { 0 };
	char small[100], big[400], spare[64];
	struct fi_cq_data_entry e;
	struct fi_cq_err_entry err;

	server_listen(&s);
	server_accept(&s);

	/* cancel a posted receive */
	POST(&s, fi_recv(s.ep, spare, sizeof(spare), NULL, 0, spare));
	CKF(fi_cancel(&s.ep->fid, spare));
	CK(cq_wait(&s, &e, &err) == 1, "cancelled receive completed");
	CK(err.err == FI_ECANCELED && err.op_context == spare, "cancel error %d", err.err);
	CK(fi_cancel(&s.ep->fid, spare) != 0, "second cancel");
	barrier();

	/* a 300-byte message into 100 bytes: FI_ETRUNC, then the stream goes on */
	POST(&s, fi_recv(s.ep, small, sizeof(small), NULL, 0, small));
	CK(cq_wait(&s, &e, &err) == 1, "truncated receive completed without error");
	CK(err.err == FI_ETRUNC, "error %d (%s)", err.err, fi_strerror(err.err));
	CK(err.op_context == small && err.olen == 200, "olen %zu", err.olen);
	CK(first_bad(small, sizeof(small), 300) == sizeof(small), "truncated data");
	POST(&s, fi_recv(s.ep, big, sizeof(big), NULL, 0, big));
	cq_expect(&s, big, FI_RECV);

	/* inject, then senddata with remote CQ data */
	POST(&s, fi_recv(s.ep, big, sizeof(big), NULL, 0, big));
	CK(cq_wait(&s, &e, NULL) == 0, "inject recv");
	CK(e.len == 32 && first_bad(big, 32, 32) == 32, "injected data (len %zu)", e.len);
	CK(!(e.flags & FI_REMOTE_CQ_DATA), "inject has no data");
	POST(&s, fi_recv(s.ep, big, sizeof(big), NULL, 0, big));
	CK(cq_wait(&s, &e, NULL) == 0, "senddata recv");
	CK(e.len == 17 && (e.flags & FI_REMOTE_CQ_DATA) && e.data == 0xdeadbeefULL,
	   "senddata: len %zu flags %#" PRIx64 " data %#" PRIx64, e.len, (uint64_t)e.flags,
	   (uint64_t)e.data);
	POST(&s, fi_recv(s.ep, big, sizeof(big), NULL, 0, big));
	CK(cq_wait(&s, &e, NULL) == 0, "injectdata recv");
	CK(e.len == 5 && (e.flags & FI_REMOTE_CQ_DATA) && e.data == 42, "injectdata");
	barrier();
	close_side(&s);
}

static void misc_client(void)
{
	struct side s = { 0 };
	char msg[300], inj[32], tail[20] = "after truncation";

	client_connect(&s);
	/* fi_tx/rx_size_left are deprecated wrappers: call the slots */
	CK(s.ep->ops->tx_size_left(s.ep) > 0 && s.ep->ops->rx_size_left(s.ep) > 0, "size_left");
	barrier();
	fill(msg, sizeof(msg), 300);
	POST(&s, fi_send(s.ep, msg, sizeof(msg), NULL, 0, msg));
	cq_expect(&s, msg, FI_SEND);
	POST(&s, fi_send(s.ep, tail, sizeof(tail), NULL, 0, tail));
	cq_expect(&s, tail, FI_SEND);
	fill(inj, sizeof(inj), 32);
	POST(&s, fi_inject(s.ep, inj, sizeof(inj), 0));
	memset(inj, 0, sizeof(inj)); /* the data was copied */
	POST(&s, fi_senddata(s.ep, "seventeen bytes!", 17, NULL, 0xdeadbeefULL, 0, inj));
	cq_expect(&s, inj, FI_SEND);
	POST(&s, fi_injectdata(s.ep, "five", 5, 42, 0));
	barrier();
	close_side(&s);
}

Test(msg, truncation_cancel_inject_senddata, .timeout = 60)
{
	run_pair(misc_server, misc_client);
}

/* ------------------------------------------------------------------------------------ */
/* RMA. */

#define RMA_LEN (1 << 20)

struct keys {
	uint64_t rw_addr, rw_key, ro_addr, ro_key;
};

static void rma_server(void)
{
	struct side s = { 0 };
	struct fid_mr *rw, *ro;
	char *rwbuf = calloc(1, RMA_LEN + 100), *robuf = malloc(8192);
	struct keys k;
	struct fi_cq_data_entry e;
	size_t bad;

	CK(rwbuf && robuf, "malloc");
	fill(robuf, 8192, 77);
	server_listen(&s);
	/* regions exist before the connection: they must become windows on it */
	CKF(fi_mr_reg(s.domain, rwbuf + 100, RMA_LEN, FI_REMOTE_READ | FI_REMOTE_WRITE, 0, 0, 0,
		      &rw, NULL));
	CKF(fi_mr_reg(s.domain, robuf, 8192, FI_REMOTE_READ, 0, 0, 0, &ro, NULL));
	server_accept(&s);
	/* remote addresses: virtual ones with FI_MR_VIRT_ADDR, else offsets in the region */
	if (s.info->domain_attr->mr_mode & FI_MR_VIRT_ADDR) {
		k.rw_addr = (uint64_t)(uintptr_t)(rwbuf + 100);
		k.ro_addr = (uint64_t)(uintptr_t)robuf;
	} else {
		k.rw_addr = k.ro_addr = 0;
	}
	k.rw_key = fi_mr_key(rw);
	k.ro_key = fi_mr_key(ro);
	/* keys travel as a message on the connection */
	POST(&s, fi_send(s.ep, &k, sizeof(k), NULL, 0, &k));
	cq_expect(&s, &k, FI_SEND);
	/* writedata: a completion with the data, and the bytes are there */
	CK(cq_wait(&s, &e, NULL) == 0, "writedata completion");
	CK((e.flags & (FI_REMOTE_WRITE | FI_REMOTE_CQ_DATA)) ==
	   (FI_REMOTE_WRITE | FI_REMOTE_CQ_DATA), "flags %#" PRIx64, (uint64_t)e.flags);
	CK(e.data == 0x1234, "data %#" PRIx64, (uint64_t)e.data);
	bad = first_bad(rwbuf + 100, RMA_LEN, 5);
	CK(bad == RMA_LEN, "written byte %zu differs", bad);
	barrier();
	CK(first_bad(robuf, 8192, 77) == 8192, "read-only region changed");
	CKF(fi_close(&rw->fid));
	CKF(fi_close(&ro->fid));
	close_side(&s);
	free(rwbuf);
	free(robuf);
}

static void rma_client(void)
{
	struct side s = { 0 };
	char *src = malloc(RMA_LEN), *dst = malloc(RMA_LEN);
	struct fi_cq_data_entry e;
	struct fi_cq_err_entry err;
	struct keys k;
	size_t bad;

	CK(src && dst, "malloc");
	client_connect(&s);
	POST(&s, fi_recv(s.ep, &k, sizeof(k), NULL, 0, &k));
	cq_expect(&s, &k, FI_RECV);

	fill(src, RMA_LEN, 4);
	POST(&s, fi_write(s.ep, src, RMA_LEN, NULL, 0, k.rw_addr, k.rw_key, src));
	cq_expect(&s, src, FI_WRITE | FI_RMA);
	memset(dst, 0, RMA_LEN);
	POST(&s, fi_read(s.ep, dst, RMA_LEN, NULL, 0, k.rw_addr, k.rw_key, dst));
	cq_expect(&s, dst, FI_READ | FI_RMA);
	bad = first_bad(dst, RMA_LEN, 4);
	CK(bad == RMA_LEN, "read back byte %zu differs", bad);
	/* read from the middle of the read-only region */
	POST(&s, fi_read(s.ep, dst, 1000, NULL, 0, k.ro_addr + 3000, k.ro_key, dst));
	cq_expect(&s, dst, FI_READ);
	for (size_t i = 0; i < 1000; i++)
		CK((unsigned char)dst[i] == pattern(i + 3000, 77), "ro byte %zu", i);
	/* writing into a region without FI_REMOTE_WRITE fails */
	POST(&s, fi_write(s.ep, src, 100, NULL, 0, k.ro_addr, k.ro_key, src));
	CK(cq_wait(&s, &e, &err) == 1, "write into a read-only region succeeded");
	CK(err.op_context == src && (err.err == FI_EACCES || err.err == FI_EINVAL),
	   "error %d (%s)", err.err, fi_strerror(err.err));
	/* far outside every region fails too */
	POST(&s, fi_read(s.ep, dst, 100, NULL, 0, k.rw_addr + (1ULL << 40), k.rw_key, dst));
	CK(cq_wait(&s, &e, &err) == 1, "read beyond a region succeeded");
	/* writedata */
	fill(src, RMA_LEN, 5);
	POST(&s, fi_writedata(s.ep, src, RMA_LEN, NULL, 0x1234, 0, k.rw_addr, k.rw_key, src));
	cq_expect(&s, src, FI_WRITE);
	barrier();
	close_side(&s);
	free(src);
	free(dst);
}

Test(msg, rma_write_read_writedata_access, .timeout = 60)
{
	run_pair(rma_server, rma_client);
}

/* ------------------------------------------------------------------------------------ */
/* Failures. */

static void killed_server(void)
{
	struct side s = { 0 };
	char buf[64];
	struct {
		struct fi_eq_cm_entry e;
		char data[256];
	} ev;
	struct fi_cq_data_entry e;
	struct fi_cq_err_entry err;

	server_listen(&s);
	server_accept(&s);
	POST(&s, fi_recv(s.ep, buf, sizeof(buf), NULL, 0, buf));
	barrier(); /* the client kills itself now */
	eq_expect(&s, FI_SHUTDOWN, &ev, sizeof(ev));
	CK(cq_wait(&s, &e, &err) == 1, "receive completed after the peer died");
	CK(err.op_context == buf && err.err == FI_ECANCELED, "error %d", err.err);
	CK(fi_send(s.ep, buf, 1, NULL, 0, NULL) != 0, "send on a dead connection");
	close_side(&s);
}

static void killed_client(void)
{
	struct side s = { 0 };

	client_connect(&s);
	barrier();
	raise(SIGKILL);
}

static void killed_pair_client(void)
{
	pid_t pid = fork();
	int st;

	/* the victim is a grandchild so that the pair's client itself exits 0 */
	CK(pid >= 0, "fork");
	if (pid == 0) {
		killed_client();
		_exit(3);
	}
	CK(waitpid(pid, &st, 0) == pid, "waitpid");
	CK(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "victim status %#x", st);
}

Test(msg, peer_killed_shutdown_and_flush, .timeout = 60)
{
	run_pair(killed_server, killed_pair_client);
}

/** A raw SCIF client sends a garbage header; the listener survives it. */
static void hostile_server(void)
{
	struct side s = { 0 };
	char buf[16] = { 0 };

	server_listen(&s);
	/* the garbage connection must not become a request; the next one is fine */
	server_accept(&s);
	POST(&s, fi_recv(s.ep, buf, sizeof(buf), NULL, 0, buf));
	cq_expect(&s, buf, FI_RECV);
	CK(!strcmp(buf, "still here"), "got '%s'", buf);
	barrier();
	close_side(&s);
}

static void hostile_client(void)
{
	uint32_t alen;
	char addr[64];
	struct scif_portID dst;
	scif_epd_t epd;
	unsigned char junk[40];
	char c;
	uint64_t end;
	struct side s = { 0 };

	/* peek at the address (node and port first), then give it back to client_connect */
	oob_recv(&alen, sizeof(alen));
	CK(alen >= 4 && alen <= sizeof(addr), "address length %u", alen);
	oob_recv(addr, alen);
	if (alen == sizeof(struct sockaddr_in) &&
	    ((struct sockaddr_in *)(void *)addr)->sin_family == AF_INET) {
		/* the FI_SOCKADDR_IN form: 127.N.N.1, the SCIF port */
		struct sockaddr_in sin;

		memcpy(&sin, addr, sizeof(sin));
		dst.node = (uint16_t)(ntohl(sin.sin_addr.s_addr) >> 8);
		dst.port = ntohs(sin.sin_port);
	} else {
		/* struct sfi_addr: node, port, magic */
		memcpy(&dst.node, addr, 2);
		memcpy(&dst.port, addr + 2, 2);
	}
	epd = scif_open();
	CK(epd >= 0, "scif_open");
	CK(scif_connect(epd, &dst) > 0, "scif_connect: %s", strerror(errno));
	memset(junk, 0xa5, sizeof(junk));
	junk[0] = 99; /* version */
	CK(scif_send(epd, junk, sizeof(junk), SCIF_SEND_BLOCK) == (int)sizeof(junk),
	   "scif_send");
	/* The server drops us as soon as its EQ is read; it is waiting in fi_eq_sread. */
	end = now_ms() + T_WAIT_MS;
	for (;;) {
		int n = scif_recv(epd, &c, 1, 0);

		if (n < 0) {
			CK(errno == ECONNRESET, "scif_recv: %s", strerror(errno));
			break;
		}
		CK(n == 0, "the server sent something to a garbage client");
		CK(now_ms() < end, "garbage connection not closed");
		usleep(1000);
	}
	scif_close(epd);

	/* a well-behaved client is served */
	{
		int sv[2];

		/* replay the address to client_connect through a private socketpair */
		CK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair");
		CK(write(sv[0], &alen, sizeof(alen)) == sizeof(alen), "write");
		CK(write(sv[0], addr, alen) == (ssize_t)alen, "write");
		int saved = g_sock;

		g_sock = sv[1];
		client_connect(&s);
		g_sock = saved;
		close(sv[0]);
		close(sv[1]);
	}
	POST(&s, fi_send(s.ep, "still here", 11, NULL, 0, &s));
	cq_expect(&s, &s, FI_SEND);
	barrier();
	close_side(&s);
}

Test(msg, hostile_raw_client_fails_alone, .timeout = 60)
{
	run_pair(hostile_server, hostile_client);
}

/** Many small messages back to back arrive complete and in order. */
static void many_server(void)
{
	struct side s = { 0 };
	static uint32_t slots[64];
	uint32_t expect = 0;

	server_listen(&s);
	server_accept(&s);
	for (int i = 0; i < 64; i++)
		POST(&s, fi_recv(s.ep, &slots[i], sizeof(slots[i]), NULL, 0, &slots[i]));
	while (expect < 20000) {
		struct fi_cq_data_entry e;
		uint32_t *slot;

		CK(cq_wait(&s, &e, NULL) == 0, "recv");
		slot = e.op_context;
		CK(*slot == expect, "message %u arrived as number %u", *slot, expect);
		expect++;
		POST(&s, fi_recv(s.ep, slot, sizeof(*slot), NULL, 0, slot));
	}
	POST(&s, fi_send(s.ep, "done", 5, NULL, 0, &s));
	cq_expect(&s, &s, FI_SEND);
	barrier();
	close_side(&s);
}

static void many_client(void)
{
	struct side s = { 0 };
	char done[8] = { 0 };

	client_connect(&s);
	POST(&s, fi_recv(s.ep, done, sizeof(done), NULL, 0, done));
	for (uint32_t i = 0; i < 20000; i++)
		POST(&s, fi_inject(s.ep, &i, sizeof(i), 0));
	/* Manual progress: injected messages still queued leave while we wait for the
	 * server's answer (a barrier outside libfabric would not move them). */
	cq_expect(&s, done, FI_RECV);
	CK(!strcmp(done, "done"), "got '%s'", done);
	barrier();
	close_side(&s);
}

Test(msg, many_small_messages_in_order, .timeout = 60)
{
	run_pair(many_server, many_client);
}

/*
 * Causality on the server's EQ: a client that connects a second endpoint as soon as its
 * first is up (fabtests' fi_multi_ep) made the second request after the first connection's
 * last handshake frame. The server reads its EQ only once both are in: it must report the
 * first connection's FI_CONNECTED before the second FI_CONNREQ.
 */
/** Both sides: the second endpoint is up; close it (its CQ too), then everything else. */
static void seq_finish(struct side *s, struct side *s2)
{
	struct {
		struct fi_eq_cm_entry e;
		char data[256];
	} ev;

	eq_expect(s, FI_CONNECTED, &ev, sizeof(ev));
	CK(ev.e.fid == &s2->ep->fid, "second FI_CONNECTED fid");
	barrier();
	CKF(fi_close(&s2->ep->fid));
	CKF(fi_close(&s2->cq->fid));
	close_side(s);
}

static void seq_server(void)
{
	struct side s = { 0 }, s2 = { 0 };
	struct {
		struct fi_eq_cm_entry e;
		char data[256];
	} ev;
	uint32_t event = 0;
	char token;
	ssize_t n;

	server_listen(&s);
	eq_expect(&s, FI_CONNREQ, &ev, sizeof(ev));
	open_ep(&s, ev.e.info);
	CKF(fi_accept(s.ep, NULL, 0));
	fi_freeinfo(ev.e.info);
	/* The client is connected and has asked for a second connection. */
	oob_recv(&token, 1);
	n = eq_wait(&s, &event, &ev, sizeof(ev), NULL);
	CK(n >= (ssize_t)sizeof(ev.e), "fi_eq_sread: %zd", n);
	CK(event == FI_CONNECTED && ev.e.fid == &s.ep->fid,
	   "first event %u (fid %p): the first connection's FI_CONNECTED must come first", event,
	   (void *)ev.e.fid);
	eq_expect(&s, FI_CONNREQ, &ev, sizeof(ev));
	s2.fabric = s.fabric;
	s2.domain = s.domain;
	s2.eq = s.eq;
	open_ep(&s2, ev.e.info);
	CKF(fi_accept(s2.ep, NULL, 0));
	fi_freeinfo(ev.e.info);
	seq_finish(&s, &s2);
}

static void seq_client(void)
{
	struct side s = { 0 }, s2 = { 0 };
	struct {
		struct fi_eq_cm_entry e;
		char data[256];
	} ev;
	char addr[64];
	uint64_t until;

	client_start(&s, addr);
	eq_expect(&s, FI_CONNECTED, &ev, sizeof(ev));
	s2.fabric = s.fabric;
	s2.domain = s.domain;
	s2.eq = s.eq;
	s2.info = s.info;
	open_ep(&s2, s.info);
	CKF(fi_connect(s2.ep, addr, NULL, 0));
	/* Progress for a while, so that the request reaches the server's listener. */
	until = now_ms() + 200;
	while (now_ms() < until) {
		uint32_t event;

		CK(fi_eq_read(s.eq, &event, &ev, sizeof(ev), 0) == -FI_EAGAIN,
		   "an event before the server accepted");
		usleep(1000);
	}
	oob_send("c", 1);
	seq_finish(&s, &s2);
}

Test(msg, sequential_connects_are_reported_in_order, .timeout = 60)
{
	run_pair(seq_server, seq_client);
}
