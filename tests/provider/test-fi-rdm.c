/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test-fi-rdm.c - the scif provider's FI_EP_RDM endpoint, end to end through libfabric.
 *
 * Every test forks its ranks (2 or 3 processes, plus a raw SCIF client for the hostile
 * test); the Criterion process only coordinates them through pipes: it relays all-gathers
 * (addresses, memory keys, barriers) and kills a rank on request. A rank checks with CK(),
 * which prints the failed condition and exits 1; the coordinator asserts that every rank
 * exited 0 and reports a rank's exit status or signal otherwise. Every wait is bounded: the
 * ranks' own waits (T_WAIT_MS), an alarm() watchdog per rank, the coordinator's deadline, and
 * Criterion's .timeout.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <rdma/fabric.h>
#include <rdma/fi_cm.h>
#include <rdma/fi_domain.h>
#include <rdma/fi_endpoint.h>
#include <rdma/fi_errno.h>
#include <rdma/fi_rma.h>
#include <rdma/fi_tagged.h>

#include <scif.h>

#define T_MAX_RANKS 4
#define T_WAIT_MS 20000     /* longest a rank waits for one thing */
#define T_WATCHDOG_S 50     /* a rank still alive after this is killed by SIGALRM */
#define T_STASH 8192

/* ------------------------------------------------------------------------------------ */
/* Rank side: checks, pattern, coordinator protocol. */

static int g_rank = -1;
static int g_up = -1, g_down = -1, g_nranks;

#define CK(cond, ...)                                                                        \
	do {                                                                                 \
		if (!(cond)) {                                                               \
			fprintf(stderr, "rank %d: %s:%d: check failed: %s: ", g_rank, __FILE__, \
				__LINE__, #cond);                                            \
			fprintf(stderr, __VA_ARGS__);                                        \
			fputc('\n', stderr);                                                 \
			_exit(1);                                                            \
		}                                                                            \
	} while (0)

#define CKR(call)                                                                            \
	do {                                                                                 \
		long _r = (long)(call);                                                      \
		CK(_r == 0, "%s returned %ld (%s)", #call, _r, fi_strerror((int)-_r));       \
	} while (0)

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static unsigned char pat(uint32_t seed, size_t i)
{
	uint64_t x = ((uint64_t)seed << 32) ^ (i * 0x9e3779b97f4a7c15ull);

	x ^= x >> 29;
	return (unsigned char)(x ^ (x >> 8) ^ (i >> 12));
}

static void fill(void *buf, size_t len, uint32_t seed)
{
	unsigned char *p = buf;

	for (size_t i = 0; i < len; i++)
		p[i] = pat(seed, i);
}

/** Index of the first wrong byte, or (size_t)-1. */
static size_t verify(const void *buf, size_t len, uint32_t seed)
{
	const unsigned char *p = buf;

	for (size_t i = 0; i < len; i++)
		if (p[i] != pat(seed, i))
			return i;
	return (size_t)-1;
}

static void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);

	CK(p, "out of memory (%zu bytes)", n);
	return p;
}

/* Coordinator requests. */
enum { REQ_GATHER = 1, REQ_KILL = 2 };
struct req {
	uint32_t op;
	uint32_t len; /* gather: blob bytes; kill: rank */
};

static void xwrite(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		CK(n > 0, "pipe write: %s", strerror(errno));
		p += n;
		len -= (size_t)n;
	}
}

static bool xread(int fd, void *buf, size_t len)
{
	char *p = buf;

	while (len) {
		ssize_t n = read(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return false;
		p += n;
		len -= (size_t)n;
	}
	return true;
}

/* ------------------------------------------------------------------------------------ */
/* Rank side: one endpoint and its completion stash. */

struct ent {
	bool err;
	struct fi_cq_tagged_entry e;
	struct fi_cq_err_entry ee;
	fi_addr_t src;
};

struct stash {
	struct ent *v;
	size_t n;
};

struct t {
	struct fi_info *info;
	struct fid_fabric *fabric;
	struct fid_domain *domain;
	struct fid_av *av;
	struct fid_cq *txcq, *rxcq;
	struct fid_ep *ep;
	fi_addr_t peer[T_MAX_RANKS];
	struct stash txs, rxs;
};

static void stash_pull(struct fid_cq *cq, struct stash *s)
{
	struct fi_cq_tagged_entry e[16];
	fi_addr_t src[16];
	ssize_t n;

	for (;;) {
		n = fi_cq_readfrom(cq, e, 16, src);
		if (n == -FI_EAVAIL) {
			struct ent *x;

			CK(s->n < T_STASH, "completion stash full");
			x = &s->v[s->n++];
			memset(x, 0, sizeof(*x));
			x->err = true;
			CK(fi_cq_readerr(cq, &x->ee, 0) == 1, "fi_cq_readerr");
			x->e.op_context = x->ee.op_context;
			x->e.flags = x->ee.flags;
			x->e.len = x->ee.len;
			x->e.buf = x->ee.buf;
			x->e.data = x->ee.data;
			x->e.tag = x->ee.tag;
			continue;
		}
		if (n == -FI_EAGAIN)
			return;
		CK(n > 0, "fi_cq_readfrom: %s", fi_strerror((int)-n));
		for (ssize_t i = 0; i < n; i++) {
			CK(s->n < T_STASH, "completion stash full");
			s->v[s->n].err = false;
			s->v[s->n].e = e[i];
			s->v[s->n].src = src[i];
			s->n++;
		}
		if (n < 16)
			return;
	}
}

static void t_progress(struct t *t)
{
	stash_pull(t->txcq, &t->txs);
	if (t->rxcq != t->txcq)
		stash_pull(t->rxcq, &t->rxs);
}

/** Take the first stashed completion for @p ctx; false if none. */
static bool stash_take(struct stash *s, void *ctx, struct ent *out)
{
	for (size_t i = 0; i < s->n; i++) {
		if (s->v[i].e.op_context != ctx)
			continue;
		*out = s->v[i];
		memmove(&s->v[i], &s->v[i + 1], (s->n - i - 1) * sizeof(s->v[0]));
		s->n--;
		return true;
	}
	return false;
}

/** Wait (bounded) for the completion of @p ctx on the rx (rx=true) or tx CQ. */
static struct ent t_wait(struct t *t, bool rx, void *ctx)
{
	struct stash *s = rx ? &t->rxs : &t->txs;
	uint64_t end = now_ms() + T_WAIT_MS;
	struct ent e;

	for (;;) {
		if (stash_take(s, ctx, &e))
			return e;
		CK(now_ms() < end, "no %s completion for context %p after %d ms",
		   rx ? "rx" : "tx", ctx, T_WAIT_MS);
		t_progress(t);
	}
}

/** Wait for a successful completion of @p ctx. */
static struct ent t_wait_ok(struct t *t, bool rx, void *ctx)
{
	struct ent e = t_wait(t, rx, ctx);

	CK(!e.err, "%s completion of %p failed: %s (%d)", rx ? "rx" : "tx", ctx,
	   fi_strerror(e.ee.err), e.ee.err);
	return e;
}

/** All-gather @p len bytes from every live rank through the coordinator, progressing. */
static void t_gather(struct t *t, const void *blob, uint32_t len, void *out)
{
	struct req r = { REQ_GATHER, len };
	uint64_t end = now_ms() + T_WAIT_MS;

	xwrite(g_up, &r, sizeof(r));
	if (len)
		xwrite(g_up, blob, len);
	for (;;) {
		struct pollfd p = { .fd = g_down, .events = POLLIN };

		if (poll(&p, 1, 1) > 0)
			break;
		CK(now_ms() < end, "gather timed out");
		if (t)
			t_progress(t);
	}
	{
		char token;

		CK(xread(g_down, &token, 1) && token == 'g', "gather token");
	}
	if (len)
		CK(xread(g_down, out, (size_t)len * (size_t)g_nranks), "gather reply");
}

static void t_barrier(struct t *t)
{
	char dummy[T_MAX_RANKS];

	t_gather(t, NULL, 0, dummy);
}

struct topts {
	enum fi_av_type av_type;
	size_t min_multi_recv; /* 0: default */
	bool no_exchange;
	bool wait_fd;          /* CQs with FI_WAIT_UNSPEC (fi_cq_sread) */
};

/** Open everything, enable, exchange addresses with every rank, fill t->peer[]. */
static void t_open(struct t *t, const struct topts *o)
{
	struct fi_info *hints = fi_allocinfo(), *list = NULL;
	struct fi_av_attr ava = { .type = o && o->av_type ? o->av_type : FI_AV_TABLE };
	struct fi_cq_attr cqa = { .format = FI_CQ_FORMAT_TAGGED,
				  .wait_obj = o && o->wait_fd ? FI_WAIT_UNSPEC : FI_WAIT_NONE };
	char addrs[T_MAX_RANKS][64];
	char me[64] = { 0 };
	size_t alen = sizeof(me);

	memset(t, 0, sizeof(*t));
	t->txs.v = xmalloc(T_STASH * sizeof(struct ent));
	t->rxs.v = xmalloc(T_STASH * sizeof(struct ent));
	CK(hints, "fi_allocinfo");
	hints->ep_attr->type = FI_EP_RDM;
	hints->caps = FI_MSG | FI_TAGGED | FI_RMA | FI_SOURCE | FI_DIRECTED_RECV |
		      FI_MULTI_RECV;
	hints->domain_attr->mr_mode = FI_MR_PROV_KEY | FI_MR_ALLOCATED;
	hints->fabric_attr->prov_name = strdup("scif");
	CKR(fi_getinfo(FI_VERSION(1, 17), NULL, NULL, 0, hints, &list));
	fi_freeinfo(hints);
	/* the native endpoint, not a utility provider layered over scif ("scif;ofi_rxm") */
	for (struct fi_info *i = list; i; i = i->next) {
		if (!strcmp(i->fabric_attr->prov_name, "scif") &&
		    i->ep_attr->type == FI_EP_RDM) {
			t->info = fi_dupinfo(i);
			break;
		}
	}
	fi_freeinfo(list);
	CK(t->info, "no native scif FI_EP_RDM in fi_getinfo's answer");
	CKR(fi_fabric(t->info->fabric_attr, &t->fabric, NULL));
	CKR(fi_domain(t->fabric, t->info, &t->domain, NULL));
	CKR(fi_av_open(t->domain, &ava, &t->av, NULL));
	CKR(fi_cq_open(t->domain, &cqa, &t->txcq, NULL));
	CKR(fi_cq_open(t->domain, &cqa, &t->rxcq, NULL));
	CKR(fi_endpoint(t->domain, t->info, &t->ep, NULL));
	CKR(fi_ep_bind(t->ep, &t->av->fid, 0));
	CKR(fi_ep_bind(t->ep, &t->txcq->fid, FI_TRANSMIT));
	CKR(fi_ep_bind(t->ep, &t->rxcq->fid, FI_RECV));
	if (o && o->min_multi_recv)
		CKR(fi_setopt(&t->ep->fid, FI_OPT_ENDPOINT, FI_OPT_MIN_MULTI_RECV,
			      &o->min_multi_recv, sizeof(size_t)));
	CKR(fi_enable(t->ep));
	CKR(fi_getname(&t->ep->fid, me, &alen));
	CK(alen <= sizeof(me), "address of %zu bytes", alen);
	if (o && o->no_exchange)
		return;
	t_gather(NULL, me, sizeof(me), addrs);
	for (int i = 0; i < g_nranks; i++)
		CK(fi_av_insert(t->av, addrs[i], 1, &t->peer[i], 0, NULL) == 1, "fi_av_insert");
}

static void t_close(struct t *t)
{
	CKR(fi_close(&t->ep->fid));
	CKR(fi_close(&t->txcq->fid));
	CKR(fi_close(&t->rxcq->fid));
	CKR(fi_close(&t->av->fid));
	CKR(fi_close(&t->domain->fid));
	CKR(fi_close(&t->fabric->fid));
	fi_freeinfo(t->info);
	free(t->txs.v);
	free(t->rxs.v);
}

/** Retry a transmit call while it says FI_EAGAIN (progressing), bounded. */
#define T_POST(t, call)                                                                      \
	do {                                                                                 \
		uint64_t _end = now_ms() + T_WAIT_MS;                                        \
		ssize_t _r;                                                                  \
		while ((_r = (call)) == -FI_EAGAIN) {                                        \
			CK(now_ms() < _end, "%s: FI_EAGAIN for %d ms", #call, T_WAIT_MS);    \
			t_progress(t);                                                       \
		}                                                                            \
		CK(_r == 0, "%s: %s", #call, fi_strerror((int)-_r));                         \
	} while (0)

/* ------------------------------------------------------------------------------------ */
/* Coordinator side. */

typedef void (*role_fn)(int rank);

/**
 * Run @p n ranks of @p fn; relay gathers, kill on request; assert that every rank exited
 * 0, except ranks killed on request.
 */
static void run_ranks(int n, role_fn fn, int timeout_s)
{
	int up[T_MAX_RANKS][2], down[T_MAX_RANKS][2];
	pid_t pid[T_MAX_RANKS];
	bool alive[T_MAX_RANKS], killed[T_MAX_RANKS], waiting[T_MAX_RANKS];
	int status[T_MAX_RANKS];
	char *blobs[T_MAX_RANKS] = { 0 };
	uint32_t blen = 0;
	uint64_t end = now_ms() + (uint64_t)timeout_s * 1000;
	bool failed = false;

	cr_assert(n <= T_MAX_RANKS);
	for (int i = 0; i < n; i++) {
		cr_assert(pipe(up[i]) == 0 && pipe(down[i]) == 0);
	}
	for (int i = 0; i < n; i++) {
		pid[i] = fork();
		cr_assert(pid[i] >= 0, "fork: %s", strerror(errno));
		if (pid[i] == 0) {
			for (int j = 0; j < n; j++) {
				if (j != i) {
					close(up[j][0]);
					close(up[j][1]);
					close(down[j][0]);
					close(down[j][1]);
				}
			}
			close(up[i][0]);
			close(down[i][1]);
			g_rank = i;
			g_nranks = n;
			g_up = up[i][1];
			g_down = down[i][0];
			signal(SIGALRM, SIG_DFL);
			alarm(T_WATCHDOG_S);
			fn(i);
			_exit(0);
		}
		alive[i] = true;
		killed[i] = false;
		waiting[i] = false;
		status[i] = 0;
	}
	for (int i = 0; i < n; i++) {
		close(up[i][1]);
		close(down[i][0]);
	}

	for (;;) {
		struct pollfd p[T_MAX_RANKS];
		int nalive = 0, nwait = 0;

		for (int i = 0; i < n; i++) {
			p[i].fd = alive[i] ? up[i][0] : -1;
			p[i].events = POLLIN;
			p[i].revents = 0;
			nalive += alive[i];
			nwait += alive[i] && waiting[i];
		}
		if (!nalive)
			break;
		if (nwait && nwait == nalive) {
			/* every live rank is in the gather: answer it */
			for (int i = 0; i < n; i++) {
				if (!alive[i])
					continue;
				/* a token first, so that a 0-byte gather (barrier) wakes it too */
				(void)!write(down[i][1], "g", 1);
				for (int j = 0; j < n; j++) {
					static const char zero[256];
					const char *b = blobs[j] ? blobs[j] : zero;

					if (blen)
						(void)!write(down[i][1], b, blen);
				}
				waiting[i] = false;
			}
			for (int j = 0; j < n; j++) {
				free(blobs[j]);
				blobs[j] = NULL;
			}
			continue;
		}
		if (now_ms() > end) {
			for (int i = 0; i < n; i++)
				if (alive[i])
					kill(pid[i], SIGKILL);
			cr_log_error("ranks still running after %d s: killed", timeout_s);
			failed = true;
			end = UINT64_MAX;
		}
		if (poll(p, (nfds_t)n, 100) <= 0)
			continue;
		for (int i = 0; i < n; i++) {
			struct req r;

			if (!p[i].revents)
				continue;
			if (!xread(up[i][0], &r, sizeof(r))) {
				/* the rank is gone: collect its status */
				int st = 0;

				waitpid(pid[i], &st, 0);
				status[i] = st;
				alive[i] = false;
				if (!killed[i] && !(WIFEXITED(st) && WEXITSTATUS(st) == 0)) {
					failed = true;
					if (WIFSIGNALED(st))
						cr_log_error("rank %d died of signal %d", i,
							     WTERMSIG(st));
					else
						cr_log_error("rank %d exited with status %d", i,
							     WEXITSTATUS(st));
					for (int j = 0; j < n; j++)
						if (alive[j])
							kill(pid[j], SIGKILL);
				}
				continue;
			}
			if (r.op == REQ_KILL) {
				if (r.len < (uint32_t)n && alive[r.len]) {
					killed[r.len] = true;
					kill(pid[r.len], SIGKILL);
				}
				continue;
			}
			blen = r.len;
			if (blen) {
				blobs[i] = malloc(blen);
				cr_assert(blobs[i] && xread(up[i][0], blobs[i], blen));
			}
			waiting[i] = true;
		}
	}
	for (int i = 0; i < n; i++) {
		close(up[i][0]);
		close(down[i][1]);
		free(blobs[i]);
	}
	cr_assert(!failed, "a rank failed (see its message above)");
	(void)status;
}

static void ask_kill(int rank)
{
	struct req r = { REQ_KILL, (uint32_t)rank };

	xwrite(g_up, &r, sizeof(r));
}

/* ------------------------------------------------------------------------------------ */
/* Tests. */

static const size_t sizes[] = { 0, 1, 7, 64, 1000, 4095, 4096, 16383, 16384, 16385,
				65536, 100000, 1 << 20, 8 << 20 };
#define NSIZES (sizeof(sizes) / sizeof(sizes[0]))

/** Both ranks send every size to each other at once and check every byte. */
static void role_sizes(int rank, bool tagged)
{
	struct t t;
	int peer = 1 - rank;
	char *sbuf[NSIZES], *rbuf[NSIZES];

	t_open(&t, NULL);
	for (size_t i = 0; i < NSIZES; i++) {
		sbuf[i] = xmalloc(sizes[i]);
		rbuf[i] = xmalloc(sizes[i] + 1);
		fill(sbuf[i], sizes[i], (uint32_t)(rank * 100 + i));
		memset(rbuf[i], 0xee, sizes[i] + 1);
		if (tagged)
			T_POST(&t, fi_trecv(t.ep, rbuf[i], sizes[i] + 1, NULL, t.peer[peer],
					    i, 0, &rbuf[i]));
		else
			T_POST(&t, fi_recv(t.ep, rbuf[i], sizes[i] + 1, NULL, t.peer[peer],
					   &rbuf[i]));
	}
	t_barrier(&t);
	for (size_t i = 0; i < NSIZES; i++) {
		if (tagged)
			T_POST(&t, fi_tsend(t.ep, sbuf[i], sizes[i], NULL, t.peer[peer], i,
					    &sbuf[i]));
		else
			T_POST(&t, fi_send(t.ep, sbuf[i], sizes[i], NULL, t.peer[peer],
					   &sbuf[i]));
	}
	for (size_t i = 0; i < NSIZES; i++) {
		struct ent e = t_wait_ok(&t, true, &rbuf[i]);
		size_t bad = verify(rbuf[i], sizes[i], (uint32_t)(peer * 100 + i));

		CK(e.e.len == sizes[i], "size %zu: completion says %zu", sizes[i], e.e.len);
		CK(bad == (size_t)-1, "size %zu: byte %zu wrong", sizes[i], bad);
		CK((unsigned char)rbuf[i][sizes[i]] == 0xee, "size %zu: overrun", sizes[i]);
		CK(e.e.flags & FI_RECV, "no FI_RECV flag");
		CK(!!(e.e.flags & FI_TAGGED) == tagged, "FI_TAGGED flag wrong");
		if (tagged)
			CK(e.e.tag == i, "tag %" PRIu64 " for %zu", e.e.tag, i);
		CK(e.src == t.peer[peer], "source %" PRIu64 ", expected %" PRIu64, e.src,
		   t.peer[peer]);
	}
	for (size_t i = 0; i < NSIZES; i++) {
		struct ent e = t_wait_ok(&t, false, &sbuf[i]);

		CK(e.e.flags & FI_SEND, "no FI_SEND flag");
	}
	t_barrier(&t);
	for (size_t i = 0; i < NSIZES; i++) {
		free(sbuf[i]);
		free(rbuf[i]);
	}
	t_close(&t);
}

static void role_sizes_tagged(int rank)
{
	role_sizes(rank, true);
}

static void role_sizes_msg(int rank)
{
	role_sizes(rank, false);
}

Test(rdm, tagged_sizes_both_ways, .timeout = 60)
{
	run_ranks(2, role_sizes_tagged, 55);
}

Test(rdm, untagged_sizes_both_ways, .timeout = 60)
{
	run_ranks(2, role_sizes_msg, 55);
}

/*
 * Unexpected messages: rank 0 sends (eager and rendezvous) before rank 1 posts anything;
 * a last small "marker" message with its own tag tells rank 1 that everything before it
 * (same connection, in order) has arrived and is queued unexpected.
 */
#define MARK_TAG 0xfeedull

static void role_unexpected(int rank)
{
	static const size_t usz[] = { 0, 10, 4000, 16384, 300000, 3 << 20 };
	const size_t n = sizeof(usz) / sizeof(usz[0]);
	struct t t;
	char *buf[8];
	int ctx[8], mctx;
	char mark = 'm', mrecv = 0;

	t_open(&t, NULL);
	if (rank == 0) {
		for (size_t i = 0; i < n; i++) {
			buf[i] = xmalloc(usz[i]);
			fill(buf[i], usz[i], (uint32_t)(7 + i));
			T_POST(&t, fi_tsend(t.ep, buf[i], usz[i], NULL, t.peer[1], 100 + i,
					    &ctx[i]));
		}
		T_POST(&t, fi_tsend(t.ep, &mark, 1, NULL, t.peer[1], MARK_TAG, &mctx));
		t_wait_ok(&t, false, &mctx);
		for (size_t i = 0; i < n; i++)
			t_wait_ok(&t, false, &ctx[i]);
		t_barrier(&t);
		for (size_t i = 0; i < n; i++)
			free(buf[i]);
	} else {
		T_POST(&t, fi_trecv(t.ep, &mrecv, 1, NULL, FI_ADDR_UNSPEC, MARK_TAG, 0, &mctx));
		t_wait_ok(&t, true, &mctx);
		CK(mrecv == 'm', "marker");
		/* everything is unexpected now; receive in reverse order of tags */
		for (size_t k = n; k-- > 0;) {
			struct ent e;

			buf[k] = xmalloc(usz[k]);
			T_POST(&t, fi_trecv(t.ep, buf[k], usz[k], NULL, FI_ADDR_UNSPEC, 100 + k,
					    0, &ctx[k]));
			e = t_wait_ok(&t, true, &ctx[k]);
			CK(e.e.len == usz[k], "len %zu for %zu", e.e.len, usz[k]);
			CK(verify(buf[k], usz[k], (uint32_t)(7 + k)) == (size_t)-1,
			   "data of unexpected message %zu", k);
		}
		t_barrier(&t);
		for (size_t i = 0; i < n; i++)
			free(buf[i]);
	}
	t_close(&t);
}

Test(rdm, unexpected_eager_and_rendezvous, .timeout = 60)
{
	run_ranks(2, role_unexpected, 55);
}

/*
 * Three ranks: 1 and 2 send tagged messages to 0 carrying their rank; rank 0 posts a
 * directed receive for rank 2 first, then for rank 1, then two FI_ADDR_UNSPEC receives.
 * FI_AV_MAP here (the other tests use FI_AV_TABLE).
 */
static void role_directed(int rank)
{
	struct t t;
	struct topts o = { .av_type = FI_AV_MAP };
	uint32_t v[4], r[4];
	int ctx[4];

	t_open(&t, &o);
	if (rank == 0) {
		T_POST(&t, fi_trecv(t.ep, &r[0], 4, NULL, t.peer[2], 5, 0, &ctx[0]));
		T_POST(&t, fi_trecv(t.ep, &r[1], 4, NULL, t.peer[1], 5, 0, &ctx[1]));
		t_barrier(&t);
		{
			struct ent e0 = t_wait_ok(&t, true, &ctx[0]);
			struct ent e1 = t_wait_ok(&t, true, &ctx[1]);

			CK(r[0] == 2000, "directed receive from rank 2 got %u", r[0]);
			CK(r[1] == 1000, "directed receive from rank 1 got %u", r[1]);
			CK(e0.src == t.peer[2] && e1.src == t.peer[1], "FI_SOURCE wrong");
		}
		T_POST(&t, fi_trecv(t.ep, &r[2], 4, NULL, FI_ADDR_UNSPEC, 5, 0, &ctx[2]));
		T_POST(&t, fi_trecv(t.ep, &r[3], 4, NULL, FI_ADDR_UNSPEC, 5, 0, &ctx[3]));
		{
			struct ent e2 = t_wait_ok(&t, true, &ctx[2]);
			struct ent e3 = t_wait_ok(&t, true, &ctx[3]);

			CK(r[2] + r[3] == 1001 + 2001, "any-source got %u and %u", r[2], r[3]);
			CK(e2.src == t.peer[r[2] / 1000] && e3.src == t.peer[r[3] / 1000],
			   "FI_SOURCE of any-source receives");
		}
		t_barrier(&t);
	} else {
		v[0] = (uint32_t)rank * 1000;
		v[1] = (uint32_t)rank * 1000 + 1;
		t_barrier(&t);
		T_POST(&t, fi_tsend(t.ep, &v[0], 4, NULL, t.peer[0], 5, &ctx[0]));
		T_POST(&t, fi_tsend(t.ep, &v[1], 4, NULL, t.peer[0], 5, &ctx[1]));
		t_wait_ok(&t, false, &ctx[0]);
		t_wait_ok(&t, false, &ctx[1]);
		t_barrier(&t);
	}
	t_close(&t);
}

Test(rdm, directed_and_any_source_3_ranks, .timeout = 60)
{
	run_ranks(3, role_directed, 55);
}

/* Tag/ignore: a receive for 0x1200 ignoring the low byte takes 0x12ab, not 0x1300. */
static void role_ignore(int rank)
{
	struct t t;
	uint64_t a = 0x12ab, b = 0x1300, ra = 0, rb = 0;
	int ca, cb;

	t_open(&t, NULL);
	if (rank == 0) {
		T_POST(&t, fi_tsend(t.ep, &b, 8, NULL, t.peer[1], b, &cb));
		T_POST(&t, fi_tsend(t.ep, &a, 8, NULL, t.peer[1], a, &ca));
		t_wait_ok(&t, false, &cb);
		t_wait_ok(&t, false, &ca);
		t_barrier(&t);
	} else {
		struct ent e;

		T_POST(&t, fi_trecv(t.ep, &ra, 8, NULL, FI_ADDR_UNSPEC, 0x1200, 0xff, &ca));
		e = t_wait_ok(&t, true, &ca);
		CK(ra == 0x12ab && e.e.tag == 0x12ab, "ignore mask took tag %#" PRIx64,
		   e.e.tag);
		T_POST(&t, fi_trecv(t.ep, &rb, 8, NULL, FI_ADDR_UNSPEC, 0x1300, 0, &cb));
		e = t_wait_ok(&t, true, &cb);
		CK(rb == 0x1300, "exact tag");
		t_barrier(&t);
	}
	t_close(&t);
}

Test(rdm, tag_ignore, .timeout = 30)
{
	run_ranks(2, role_ignore, 25);
}

/* FI_PEEK, FI_PEEK|FI_CLAIM then FI_CLAIM, FI_PEEK|FI_DISCARD, FI_ENOMSG. */
static void trecvmsg(struct t *t, void *buf, size_t len, uint64_t tag, void *ctx,
		     uint64_t flags)
{
	struct iovec iov = { buf, len };
	struct fi_msg_tagged m = {
		.msg_iov = &iov, .iov_count = buf ? 1 : 0, .addr = FI_ADDR_UNSPEC, .tag = tag,
		.ignore = 0, .context = ctx,
	};

	T_POST(t, fi_trecvmsg(t->ep, &m, flags));
}

static void role_peek(int rank)
{
	struct t t;
	char m1[100], m2[20000], m3[50], mark = 'x', r[20000];
	int c[4], pc, cc;
	struct ent e;

	t_open(&t, NULL);
	if (rank == 0) {
		fill(m1, sizeof(m1), 1);
		fill(m2, sizeof(m2), 2);
		fill(m3, sizeof(m3), 3);
		T_POST(&t, fi_tsenddata(t.ep, m1, sizeof(m1), NULL, 0xd1, t.peer[1], 1, &c[0]));
		T_POST(&t, fi_tsend(t.ep, m2, sizeof(m2), NULL, t.peer[1], 2, &c[1]));
		T_POST(&t, fi_tsend(t.ep, m3, sizeof(m3), NULL, t.peer[1], 3, &c[2]));
		T_POST(&t, fi_tsend(t.ep, &mark, 1, NULL, t.peer[1], MARK_TAG, &c[3]));
		for (int i = 0; i < 4; i++)
			t_wait_ok(&t, false, &c[i]);
		t_barrier(&t);
	} else {
		trecvmsg(&t, &mark, 1, MARK_TAG, &c[3], 0);
		t_wait_ok(&t, true, &c[3]);

		/* nothing with tag 9 */
		trecvmsg(&t, NULL, 0, 9, &pc, FI_PEEK);
		e = t_wait(&t, true, &pc);
		CK(e.err && e.ee.err == FI_ENOMSG, "peek of a missing tag: err %d", e.ee.err);

		/* peek tag 1: size, data, tag reported, message stays */
		trecvmsg(&t, NULL, 0, 1, &pc, FI_PEEK);
		e = t_wait_ok(&t, true, &pc);
		CK(e.e.len == sizeof(m1) && e.e.tag == 1, "peek: len %zu tag %" PRIu64, e.e.len,
		   e.e.tag);
		CK((e.e.flags & FI_REMOTE_CQ_DATA) && e.e.data == 0xd1, "peek: cq data");

		/* peek+claim tag 2, then receive it by claim */
		trecvmsg(&t, NULL, 0, 2, &cc, FI_PEEK | FI_CLAIM);
		e = t_wait_ok(&t, true, &cc);
		CK(e.e.len == sizeof(m2), "peek/claim len %zu", e.e.len);
		/* a plain receive for tag 2 must not take the claimed message */
		trecvmsg(&t, NULL, 0, 2, &pc, FI_PEEK);
		e = t_wait(&t, true, &pc);
		CK(e.err && e.ee.err == FI_ENOMSG, "claimed message still visible to peek");
		trecvmsg(&t, r, sizeof(r), 2, &cc, FI_CLAIM);
		e = t_wait_ok(&t, true, &cc);
		CK(e.e.len == sizeof(m2) && verify(r, sizeof(m2), 2) == (size_t)-1,
		   "claimed receive data");

		/* peek+discard tag 3: gone afterwards */
		trecvmsg(&t, NULL, 0, 3, &pc, FI_PEEK | FI_DISCARD);
		e = t_wait_ok(&t, true, &pc);
		trecvmsg(&t, NULL, 0, 3, &pc, FI_PEEK);
		e = t_wait(&t, true, &pc);
		CK(e.err && e.ee.err == FI_ENOMSG, "discarded message still there");

		/* tag 1 is still receivable */
		T_POST(&t, fi_trecv(t.ep, r, sizeof(r), NULL, FI_ADDR_UNSPEC, 1, 0, &c[0]));
		e = t_wait_ok(&t, true, &c[0]);
		CK(e.e.len == sizeof(m1) && verify(r, sizeof(m1), 1) == (size_t)-1, "tag 1 data");
		CK(e.e.data == 0xd1, "tag 1 cq data");
		t_barrier(&t);
	}
	t_close(&t);
}

Test(rdm, peek_claim_discard, .timeout = 30)
{
	run_ranks(2, role_peek, 25);
}

/* fi_cancel of posted receives (tagged and untagged): FI_ECANCELED, once. */
static void role_cancel(int rank)
{
	struct t t;
	char b1[10], b2[10];
	int c1, c2;
	struct ent e;

	(void)rank;
	t_open(&t, &(struct topts){ .no_exchange = true });
	T_POST(&t, fi_trecv(t.ep, b1, sizeof(b1), NULL, FI_ADDR_UNSPEC, 1, 0, &c1));
	T_POST(&t, fi_recv(t.ep, b2, sizeof(b2), NULL, FI_ADDR_UNSPEC, &c2));
	CKR(fi_cancel(&t.ep->fid, &c1));
	CKR(fi_cancel(&t.ep->fid, &c2));
	e = t_wait(&t, true, &c1);
	CK(e.err && e.ee.err == FI_ECANCELED, "tagged cancel: err %d", e.ee.err);
	e = t_wait(&t, true, &c2);
	CK(e.err && e.ee.err == FI_ECANCELED, "cancel: err %d", e.ee.err);
	for (int i = 0; i < 20; i++)
		t_progress(&t);
	CK(t.rxs.n == 0, "extra completions after cancel");
	t_close(&t);
}

Test(rdm, cancel, .timeout = 30)
{
	run_ranks(1, role_cancel, 25);
}

/* FI_MULTI_RECV: 8 messages of 3000 bytes; a 16 KiB buffer (min 4 KiB) takes 5 of them
 * (16384 - 15000 < 4096 releases it: that completion carries FI_MULTI_RECV), the second
 * buffer the other 3; cancelling the second one then reports FI_MULTI_RECV too. */
static void role_multi(int rank)
{
	struct t t;
	struct topts o = { .min_multi_recv = 4096 };
	enum { N = 8, SZ = 3000, BUF = 16384 };
	char *s[N];
	int c[N];

	t_open(&t, &o);
	if (rank == 0) {
		t_barrier(&t);
		for (int i = 0; i < N; i++) {
			s[i] = xmalloc(SZ);
			fill(s[i], SZ, (uint32_t)(50 + i));
			T_POST(&t, fi_send(t.ep, s[i], SZ, NULL, t.peer[1], &c[i]));
		}
		for (int i = 0; i < N; i++)
			t_wait_ok(&t, false, &c[i]);
		t_barrier(&t);
		for (int i = 0; i < N; i++)
			free(s[i]);
	} else {
		char *b1 = xmalloc(BUF), *b2 = xmalloc(BUF);
		struct iovec v1 = { b1, BUF }, v2 = { b2, BUF };
		struct fi_msg m1 = { .msg_iov = &v1, .iov_count = 1, .addr = FI_ADDR_UNSPEC,
				     .context = &c[0] };
		struct fi_msg m2 = { .msg_iov = &v2, .iov_count = 1, .addr = FI_ADDR_UNSPEC,
				     .context = &c[1] };
		int got = 0, released = 0;

		T_POST(&t, fi_recvmsg(t.ep, &m1, FI_MULTI_RECV));
		T_POST(&t, fi_recvmsg(t.ep, &m2, FI_MULTI_RECV));
		t_barrier(&t);
		for (int i = 0; i < N; i++) {
			void *ctx = i < 5 ? &c[0] : &c[1];
			struct ent e = t_wait_ok(&t, true, ctx);
			char *base = i < 5 ? b1 : b2;
			size_t off = (size_t)(i < 5 ? i : i - 5) * SZ;

			CK(e.e.len == SZ, "piece %d len %zu", i, e.e.len);
			CK(e.e.buf == base + off, "piece %d at %p, expected %p", i, e.e.buf,
			   (void *)(base + off));
			CK(verify(e.e.buf, SZ, (uint32_t)(50 + i)) == (size_t)-1, "piece %d data",
			   i);
			if (e.e.flags & FI_MULTI_RECV) {
				released++;
				CK(i == 4, "buffer released at piece %d", i);
			}
			got++;
		}
		CK(released == 1, "%d releases", released);
		CKR(fi_cancel(&t.ep->fid, &c[1]));
		{
			struct ent e = t_wait(&t, true, &c[1]);

			CK(e.err && e.ee.err == FI_ECANCELED && (e.e.flags & FI_MULTI_RECV),
			   "cancel of a multi-recv buffer");
		}
		t_barrier(&t);
		free(b1);
		free(b2);
	}
	t_close(&t);
}

Test(rdm, multi_recv, .timeout = 30)
{
	run_ranks(2, role_multi, 25);
}

/* Truncation, eager and rendezvous: FI_ETRUNC, olen, and the prefix is right. */
static void role_trunc(int rank)
{
	static const size_t big[] = { 1000, 500000 };
	const size_t small = 300;
	struct t t;
	char *s[2];
	int c[2];

	t_open(&t, NULL);
	if (rank == 0) {
		t_barrier(&t);
		for (int i = 0; i < 2; i++) {
			s[i] = xmalloc(big[i]);
			fill(s[i], big[i], (uint32_t)(90 + i));
			T_POST(&t, fi_tsend(t.ep, s[i], big[i], NULL, t.peer[1], (uint64_t)i,
					    &c[i]));
		}
		for (int i = 0; i < 2; i++)
			t_wait_ok(&t, false, &c[i]);
		t_barrier(&t);
		free(s[0]);
		free(s[1]);
	} else {
		char r[2][512];

		for (int i = 0; i < 2; i++) {
			memset(r[i], 0xcc, sizeof(r[i]));
			T_POST(&t, fi_trecv(t.ep, r[i], small, NULL, FI_ADDR_UNSPEC, (uint64_t)i,
					    0, &c[i]));
		}
		t_barrier(&t);
		for (int i = 0; i < 2; i++) {
			struct ent e = t_wait(&t, true, &c[i]);

			CK(e.err && e.ee.err == FI_ETRUNC, "message %d: err %d", i, e.ee.err);
			CK(e.ee.olen == big[i] - small, "olen %zu", e.ee.olen);
			CK(verify(r[i], small, (uint32_t)(90 + i)) == (size_t)-1, "prefix %d", i);
			CK((unsigned char)r[i][small] == 0xcc, "overrun %d", i);
		}
		t_barrier(&t);
	}
	t_close(&t);
}

Test(rdm, truncation, .timeout = 30)
{
	run_ranks(2, role_trunc, 25);
}

/* fi_inject / fi_tinject / fi_injectdata / fi_senddata: data and CQ data arrive; injects
 * leave no transmit completion. FI_INJECT given to fi_tsendmsg frees the buffer at once but
 * still completes (fabtests' fi_msg_inject -N waits for it). */
static void role_inject(int rank)
{
	struct t t;
	uint64_t v[5] = { 11, 22, 33, 44, 55 }, r[5];
	int c[5];

	t_open(&t, NULL);
	if (rank == 0) {
		t_barrier(&t);
		T_POST(&t, fi_inject(t.ep, &v[0], 8, t.peer[1]));
		v[0] = 0; /* the buffer is free again at once */
		T_POST(&t, fi_tinject(t.ep, &v[1], 8, t.peer[1], 7));
		T_POST(&t, fi_injectdata(t.ep, &v[2], 8, 0xabc, t.peer[1]));
		T_POST(&t, fi_senddata(t.ep, &v[3], 8, NULL, 0xdef, t.peer[1], &c[3]));
		{
			struct iovec iov = { &v[4], 8 };
			struct fi_msg_tagged m = { .msg_iov = &iov, .iov_count = 1,
						   .addr = t.peer[1], .tag = 9, .context = &c[4] };

			T_POST(&t, fi_tsendmsg(t.ep, &m, FI_INJECT | FI_COMPLETION));
			v[4] = 0;
		}
		t_wait_ok(&t, false, &c[3]);
		t_wait_ok(&t, false, &c[4]);
		t_barrier(&t);
		t_progress(&t);
		CK(t.txs.n == 0, "%zu transmit completions from injects", t.txs.n);
	} else {
		struct ent e;

		T_POST(&t, fi_recv(t.ep, &r[0], 8, NULL, FI_ADDR_UNSPEC, &c[0]));
		T_POST(&t, fi_trecv(t.ep, &r[1], 8, NULL, FI_ADDR_UNSPEC, 7, 0, &c[1]));
		T_POST(&t, fi_recv(t.ep, &r[2], 8, NULL, FI_ADDR_UNSPEC, &c[2]));
		T_POST(&t, fi_recv(t.ep, &r[3], 8, NULL, FI_ADDR_UNSPEC, &c[3]));
		T_POST(&t, fi_trecv(t.ep, &r[4], 8, NULL, FI_ADDR_UNSPEC, 9, 0, &c[4]));
		t_barrier(&t);
		e = t_wait_ok(&t, true, &c[0]);
		CK(r[0] == 11 && !(e.e.flags & FI_REMOTE_CQ_DATA), "inject");
		e = t_wait_ok(&t, true, &c[1]);
		CK(r[1] == 22 && e.e.tag == 7, "tinject");
		e = t_wait_ok(&t, true, &c[2]);
		CK(r[2] == 33 && (e.e.flags & FI_REMOTE_CQ_DATA) && e.e.data == 0xabc,
		   "injectdata");
		e = t_wait_ok(&t, true, &c[3]);
		CK(r[3] == 44 && (e.e.flags & FI_REMOTE_CQ_DATA) && e.e.data == 0xdef,
		   "senddata");
		e = t_wait_ok(&t, true, &c[4]);
		CK(r[4] == 55 && e.e.tag == 9, "tsendmsg with FI_INJECT");
		t_barrier(&t);
	}
	t_close(&t);
}

Test(rdm, inject_and_senddata, .timeout = 30)
{
	run_ranks(2, role_inject, 25);
}

/* RMA: rank 1 exposes a region; rank 0 writes, reads back, and writes with data. */
static void role_rma(int rank)
{
	struct t t;
	enum { LEN = 3 * 65536 + 123 };
	/* whole pages: SCIF registers pages, and the sanitizers watch every byte of them */
	char *mem = aligned_alloc(4096, (LEN + 4095) & ~4095), *loc = xmalloc(LEN);
	struct fid_mr *mr = NULL;
	uint64_t keys[2], mykey = 0;
	int c[3];

	CK(mem, "aligned_alloc");
	t_open(&t, NULL);
	memset(mem, 0, LEN);
	if (rank == 1) {
		CKR(fi_mr_reg(t.domain, mem, LEN, FI_REMOTE_READ | FI_REMOTE_WRITE, 0, 0, 0, &mr,
			      NULL));
		mykey = fi_mr_key(mr);
	}
	t_gather(&t, &mykey, sizeof(mykey), keys);
	if (rank == 0) {
		fill(loc, LEN, 77);
		T_POST(&t, fi_write(t.ep, loc, LEN, NULL, t.peer[1], 0, keys[1], &c[0]));
		t_wait_ok(&t, false, &c[0]);
		memset(loc, 0, LEN);
		T_POST(&t, fi_read(t.ep, loc, LEN - 100, NULL, t.peer[1], 100, keys[1], &c[1]));
		t_wait_ok(&t, false, &c[1]);
		{
			/* the read started at offset 100 of the pattern */
			char *ref = xmalloc(LEN);

			fill(ref, LEN, 77);
			CK(memcmp(loc, ref + 100, LEN - 100) == 0, "read back data");
			free(ref);
		}
		fill(loc, 4096, 78);
		T_POST(&t, fi_writedata(t.ep, loc, 4096, NULL, 0x5eed, t.peer[1], 8192, keys[1],
					&c[2]));
		t_wait_ok(&t, false, &c[2]);
		t_barrier(&t);
	} else {
		struct ent e = t_wait_ok(&t, true, NULL);

		CK((e.e.flags & FI_REMOTE_CQ_DATA) && e.e.data == 0x5eed, "write data: %#" PRIx64,
		   e.e.data);
		CK(verify(mem + 8192, 4096, 78) == (size_t)-1, "writedata payload");
		{
			char *ref = xmalloc(LEN);

			fill(ref, LEN, 77);
			CK(memcmp(mem, ref, 8192) == 0 &&
			   memcmp(mem + 8192 + 4096, ref + 8192 + 4096, LEN - 8192 - 4096) == 0,
			   "write payload");
			free(ref);
		}
		t_barrier(&t);
		CKR(fi_close(&mr->fid));
	}
	t_close(&t);
	free(mem);
	free(loc);
}

Test(rdm, rma_write_read_writedata, .timeout = 30)
{
	run_ranks(2, role_rma, 25);
}

/*
 * Peer killed mid-run: rank 1 takes a first message then stops progressing; rank 0 starts a
 * rendezvous send rank 1 never answers and asks the coordinator to kill rank 1. The send
 * must fail (no hang), and a later send to the dead address fails too.
 */
static void role_killed(int rank)
{
	struct t t;
	char *big = xmalloc(1 << 20);
	int c0, c1, c2;
	char one = 1, r1 = 0;

	t_open(&t, NULL);
	if (rank == 1) {
		T_POST(&t, fi_recv(t.ep, &r1, 1, NULL, FI_ADDR_UNSPEC, &c0));
		t_wait_ok(&t, true, &c0);
		/* progress a little so the RTS arrives, then play dead */
		for (int i = 0; i < 200; i++) {
			t_progress(&t);
			usleep(1000);
		}
		pause();
		_exit(3);
	}
	T_POST(&t, fi_send(t.ep, &one, 1, NULL, t.peer[1], &c0));
	t_wait_ok(&t, false, &c0);
	fill(big, 1 << 20, 5);
	T_POST(&t, fi_send(t.ep, big, 1 << 20, NULL, t.peer[1], &c1));
	for (int i = 0; i < 50; i++) {
		t_progress(&t);
		usleep(1000);
	}
	ask_kill(1);
	{
		struct ent e = t_wait(&t, false, &c1);

		CK(e.err, "rendezvous send to a killed peer succeeded");
		CK(e.ee.err == FI_ECONNRESET || e.ee.err == FI_EIO, "err %d", e.ee.err);
	}
	{
		/* It completes, one way or the other, without hanging: normally with
		 * FI_ECONNREFUSED after the connect retries, but the dead rank's port may have
		 * been reused by a test running alongside. */
		ssize_t r = fi_send(t.ep, &one, 1, NULL, t.peer[1], &c2);

		CK(r == 0 || r == -FI_EAGAIN, "send after death: %zd", r);
		if (r == 0)
			(void)t_wait(&t, false, &c2);
	}
	t_close(&t);
	free(big);
}

Test(rdm, peer_killed_error_completions, .timeout = 60)
{
	run_ranks(2, role_killed, 55);
}

/*
 * A hostile raw SCIF client (rank 2) connects to rank 0's listener and sends garbage;
 * that connection is dropped by rank 0 (the client sees the disconnect) while rank 1's
 * traffic to rank 0 goes on.
 */
struct sfi_addr_copy {
	uint16_t node, port;
	uint32_t magic;
};

static void hostile_one(const struct sfi_addr_copy *a, const void *junk, size_t len)
{
	scif_epd_t epd = scif_open();
	struct scif_portID dst = { .node = a->node, .port = a->port };
	uint64_t end = now_ms() + T_WAIT_MS;
	char buf[64];
	int r;

	CK(epd >= 0, "scif_open");
	CK(scif_connect(epd, &dst) >= 0, "scif_connect: %s", strerror(errno));
	CK(scif_send(epd, (void *)junk, (int)len, SCIF_SEND_BLOCK) == (int)len, "send junk");
	/* the provider must hang up: recv ends with ECONNRESET (or 0 bytes at EOF) */
	for (;;) {
		r = scif_recv(epd, buf, sizeof(buf), 0);
		if (r < 0 && errno != EAGAIN)
			break;
		CK(now_ms() < end, "the provider kept a garbage connection open");
		usleep(1000);
	}
	scif_close(epd);
}

/*
 * The provider's wire format (providers/scif/sfi.h, sfi_rdm.c), as a peer would write it:
 * a header is 40 bytes, or its first 24 (version T_WIRE_DATA) when id and size are 0, or
 * its first 16 (T_WIRE_SHORT) when data is 0 as well.
 */
#define T_WIRE_VERSION 4
#define T_WIRE_SHORT (0x80 | T_WIRE_VERSION)
#define T_WIRE_DATA (0x40 | T_WIRE_VERSION)
#define T_HDR_SHORT 16
#define T_HDR_DATA 24
enum { T_OP_HELLO = 1, T_OP_HELLO_ACK, T_OP_EAGER };
#define T_OP_CONN 31 /* the connection's own frames (a lane offer): a raw peer ignores them */

struct hdr_copy {
	uint8_t version, op;
	uint16_t flags;
	uint32_t len;
	uint64_t tag, data, id, size;
};

struct hello_copy {
	struct sfi_addr_copy addr;
	uint64_t incarnation;
};

static void role_hostile(int rank)
{
	struct t t;
	char addrs[T_MAX_RANKS][64];
	char me[64] = { 0 };

	if (rank == 2) {
		struct sfi_addr_copy a;
		struct hdr_copy h;
		char junk[200];

		t_gather(NULL, me, sizeof(me), addrs);
		memcpy(&a, addrs[0], sizeof(a));
		/* 1: random bytes */
		fill(junk, sizeof(junk), 1234);
		hostile_one(&a, junk, sizeof(junk));
		/* 2: a well-formed header with an unknown op */
		memset(&h, 0, sizeof(h));
		h.version = T_WIRE_VERSION;
		h.op = 30;
		hostile_one(&a, &h, sizeof(h));
		/* 3: a data frame before HELLO */
		h.op = 3;
		h.len = 8;
		memcpy(junk, &h, sizeof(h));
		memset(junk + sizeof(h), 0, 8);
		hostile_one(&a, junk, sizeof(h) + 8);
		/* 4: HELLO with a bad magic */
		h.op = 1;
		h.len = sizeof(struct hello_copy);
		memcpy(junk, &h, sizeof(h));
		memset(junk + sizeof(h), 0x41, sizeof(struct hello_copy));
		hostile_one(&a, junk, sizeof(h) + sizeof(struct hello_copy));
		/* 5: a good HELLO, then an eager frame claiming 1 GiB */
		{
			struct hello_copy me2 = { { a.node, 4242, 0x53464931u }, 7 };
			struct hdr_copy h2 = { .version = T_WIRE_VERSION, .op = 3, .len = 1u << 30 };

			memcpy(junk, &h, sizeof(h));
			memcpy(junk + sizeof(h), &me2, sizeof(me2));
			memcpy(junk + sizeof(h) + sizeof(me2), &h2, sizeof(h2));
			hostile_one(&a, junk, 2 * sizeof(h) + sizeof(me2));
			/* 6: the same in the short form */
			h2.version = T_WIRE_SHORT;
			me2.addr.port = 4243;
			memcpy(junk + sizeof(h), &me2, sizeof(me2));
			memcpy(junk + sizeof(h) + sizeof(me2), &h2, T_HDR_SHORT);
			hostile_one(&a, junk, sizeof(h) + sizeof(me2) + T_HDR_SHORT);
		}
		t_barrier(NULL);
		t_barrier(NULL);
		return;
	}
	t_open(&t, &(struct topts){ .no_exchange = true });
	{
		size_t alen = sizeof(me);

		CKR(fi_getname(&t.ep->fid, me, &alen));
	}
	t_gather(&t, me, sizeof(me), addrs);
	for (int i = 0; i < 2; i++)
		CK(fi_av_insert(t.av, addrs[i], 1, &t.peer[i], 0, NULL) == 1, "fi_av_insert");
	t_barrier(&t); /* the hostile client is done */
	if (rank == 0) {
		uint64_t r = 0;
		int c;
		struct ent e;

		T_POST(&t, fi_trecv(t.ep, &r, 8, NULL, t.peer[1], 1, 0, &c));
		e = t_wait_ok(&t, true, &c);
		CK(r == 0x600d && e.src == t.peer[1], "good traffic after garbage");
	} else {
		uint64_t v = 0x600d;
		int c;

		T_POST(&t, fi_tsend(t.ep, &v, 8, NULL, t.peer[0], 1, &c));
		t_wait_ok(&t, false, &c);
	}
	t_barrier(&t);
	t_close(&t);
}

Test(rdm, hostile_client_only_loses_its_connection, .timeout = 60)
{
	run_ranks(3, role_hostile, 55);
}

/*
 * A port is free again once its endpoint is closed, so the next endpoint to bind it has the
 * same address (fabtests' rdm_multi_client: one client after another in one process). SCIF
 * tells rank 0 that the first one is gone a little later, and in that window rank 0 must
 * not answer the new one over its connection to the old one (the answer would be lost, or
 * fail with FI_ECONNRESET under FI_DELIVERY_COMPLETE). Rank 1 plays both endpoints with raw
 * SCIF, speaking the wire format, so that the window stays open for as long as the test
 * wants: the first endpoint never reads its connection again, and never closes it.
 */
static void raw_send(scif_epd_t epd, uint8_t op, const void *payload, uint32_t len)
{
	struct hdr_copy h = { .version = T_WIRE_VERSION, .op = op, .len = len };

	CK(scif_send(epd, &h, sizeof(h), SCIF_SEND_BLOCK) == (int)sizeof(h), "send header");
	if (len)
		CK(scif_send(epd, (void *)payload, (int)len, SCIF_SEND_BLOCK) == (int)len,
		   "send payload");
}

/** Receive exactly @p len bytes within T_WAIT_MS, or fail the rank. */
static void raw_recv(scif_epd_t epd, void *buf, size_t len)
{
	struct scif_pollepd p = { .epd = epd, .events = POLLIN };
	uint64_t end = now_ms() + T_WAIT_MS;
	size_t got = 0;

	while (got < len) {
		int r = scif_recv(epd, (char *)buf + got, (int)(len - got), 0);

		CK(r >= 0 || errno == EAGAIN, "scif_recv: %s", strerror(errno));
		if (r > 0) {
			got += (size_t)r;
			continue;
		}
		CK(now_ms() < end, "%zu of %zu bytes after %d ms", got, len, T_WAIT_MS);
		scif_poll(&p, 1, 100);
	}
}

/** Receive one header in any form (the fields a shorter form leaves out are 0), past the
 *  connection's own frames: a raw peer never takes the lane rank 0 offers. */
static void raw_recv_hdr(scif_epd_t epd, struct hdr_copy *h)
{
	do {
		memset(h, 0, sizeof(*h));
		raw_recv(epd, h, 8);
		CK(h->version == T_WIRE_VERSION || h->version == T_WIRE_DATA ||
		   h->version == T_WIRE_SHORT, "header version %u", h->version);
		raw_recv(epd, (char *)h + 8, (h->version == T_WIRE_SHORT ? T_HDR_SHORT :
					      h->version == T_WIRE_DATA  ? T_HDR_DATA :
									   sizeof(*h)) - 8);
		CK(h->op != T_OP_CONN || h->len == 0, "a connection frame with a payload");
	} while (h->op == T_OP_CONN);
}

/** Rank 0 connects to the raw listener @p lep: accept, take its HELLO, say HELLO_ACK. */
static scif_epd_t raw_accept_hello(scif_epd_t lep, uint64_t incarnation)
{
	struct scif_pollepd p = { .epd = lep, .events = POLLIN };
	struct scif_portID peer;
	struct hdr_copy h;
	struct hello_copy hello;
	scif_epd_t epd;

	CK(scif_poll(&p, 1, T_WAIT_MS) == 1, "rank 0 did not connect to the address it answers");
	CK(scif_accept(lep, &peer, &epd, 0) == 0, "scif_accept: %s", strerror(errno));
	raw_recv_hdr(epd, &h);
	CK(h.op == T_OP_HELLO && h.len == sizeof(hello), "HELLO: op %u, %u bytes", h.op, h.len);
	raw_recv(epd, &hello, sizeof(hello));
	raw_send(epd, T_OP_HELLO_ACK, &incarnation, sizeof(incarnation));
	return epd;
}

/** Say HELLO as @p me of @p incarnation to rank 0 at @p a, and send it @p me and @p n. */
static scif_epd_t raw_hello_send(const struct sfi_addr_copy *a, const struct sfi_addr_copy *me,
				 uint64_t incarnation, uint64_t n)
{
	struct scif_portID dst = { .node = a->node, .port = a->port };
	struct hello_copy hello = { *me, incarnation };
	uint64_t msg[2] = { 0, n };
	scif_epd_t epd = scif_open();

	CK(epd >= 0, "scif_open");
	CK(scif_connect(epd, &dst) >= 0, "scif_connect: %s", strerror(errno));
	memcpy(msg, me, sizeof(*me));
	raw_send(epd, T_OP_HELLO, &hello, sizeof(hello));
	raw_send(epd, T_OP_EAGER, msg, sizeof(msg));
	return epd;
}

/** The eager message rank 0 answered with, on @p epd: its 8 bytes. */
static uint64_t raw_recv_answer(scif_epd_t epd)
{
	struct hdr_copy h;
	uint64_t v;

	raw_recv_hdr(epd, &h);
	CK(h.op == T_OP_EAGER && h.len == sizeof(v), "answer: op %u, %u bytes", h.op, h.len);
	raw_recv(epd, &v, sizeof(v));
	return v;
}

static void role_reborn(int rank)
{
	char addrs[T_MAX_RANKS][64];
	char me[64] = { 0 };

	if (rank == 1) {
		struct sfi_addr_copy a, self;
		scif_epd_t lep = scif_open(), old_in, old_out, new_in, new_out;
		struct scif_pollepd p;
		int port;

		t_gather(NULL, me, sizeof(me), addrs);
		memcpy(&a, addrs[0], sizeof(a));
		CK(lep >= 0, "scif_open");
		port = scif_bind(lep, 0);
		CK(port > 0 && scif_listen(lep, 4) == 0, "listen: %s", strerror(errno));
		self = (struct sfi_addr_copy){ a.node, (uint16_t)port, 0x53464931u };
		/* The first endpoint at this address: one message each way. */
		old_out = raw_hello_send(&a, &self, 0x1111, 1);
		old_in = raw_accept_hello(lep, 0x1111);
		CK(raw_recv_answer(old_in) == 101, "first answer");
		/* The next endpoint at the same address, the first one silent but connected. */
		new_out = raw_hello_send(&a, &self, 0x2222, 2);
		new_in = raw_accept_hello(lep, 0x2222);
		CK(raw_recv_answer(new_in) == 102, "the second answer came over a new connection");
		/* And rank 0 has hung up on the first one. */
		p = (struct scif_pollepd){ .epd = old_in, .events = POLLIN };
		CK(scif_poll(&p, 1, T_WAIT_MS) == 1 && (p.revents & POLLHUP),
		   "rank 0 kept its connection to the first endpoint (revents %#x)", p.revents);
		t_barrier(NULL);
		scif_close(old_out);
		scif_close(old_in);
		scif_close(new_out);
		scif_close(new_in);
		scif_close(lep);
		return;
	}
	{
		struct t t;
		size_t alen = sizeof(me);

		t_open(&t, &(struct topts){ .no_exchange = true });
		CKR(fi_getname(&t.ep->fid, me, &alen));
		t_gather(&t, me, sizeof(me), addrs);
		for (uint64_t i = 1; i <= 2; i++) {
			uint64_t in[2] = { 0, 0 }, out = 100 + i;
			fi_addr_t fa;
			int c;

			T_POST(&t, fi_recv(t.ep, in, sizeof(in), NULL, FI_ADDR_UNSPEC, &c));
			t_wait_ok(&t, true, &c);
			CK(in[1] == i, "message %" PRIu64 " says %" PRIu64, i, in[1]);
			CK(fi_av_insert(t.av, in, 1, &fa, 0, NULL) == 1, "fi_av_insert");
			T_POST(&t, fi_send(t.ep, &out, sizeof(out), NULL, fa, &c));
			t_wait_ok(&t, false, &c);
		}
		t_barrier(&t);
		t_close(&t);
	}
}

Test(rdm, address_reused_by_a_new_endpoint, .timeout = 60)
{
	run_ranks(2, role_reborn, 55);
}

/* 100k small tagged messages: every one arrives, in send order. */
static void role_many(int rank)
{
	struct t t;
	enum { N = 100000, WIN = 256 };

	t_open(&t, NULL);
	if (rank == 0) {
		static uint64_t v[WIN];
		int c[WIN];

		t_barrier(&t);
		for (uint64_t i = 0; i < N; i++) {
			v[i % WIN] = i;
			if (i % 7 == 0) {
				T_POST(&t, fi_tinject(t.ep, &v[i % WIN], 8, t.peer[1], 3));
			} else {
				T_POST(&t, fi_tsend(t.ep, &v[i % WIN], 8, NULL, t.peer[1], 3,
						    &c[i % WIN]));
			}
			/* keep at most WIN/2 sends in flight so v[] slots are not reused early */
			if (i % (WIN / 2) == WIN / 2 - 1 || i == N - 1) {
				uint64_t lo = i - (i % (WIN / 2));

				for (uint64_t k = lo; k <= i; k++)
					if (k % 7)
						t_wait_ok(&t, false, &c[k % WIN]);
			}
		}
		t_barrier(&t);
	} else {
		static uint64_t r[WIN];
		int c[WIN];
		uint64_t posted = 0;

		for (; posted < WIN; posted++)
			T_POST(&t, fi_trecv(t.ep, &r[posted % WIN], 8, NULL, FI_ADDR_UNSPEC, 3, 0,
					    &c[posted % WIN]));
		t_barrier(&t);
		for (uint64_t i = 0; i < N; i++) {
			t_wait_ok(&t, true, &c[i % WIN]);
			CK(r[i % WIN] == i, "message %" PRIu64 " carried %" PRIu64, i, r[i % WIN]);
			if (posted < N) {
				T_POST(&t, fi_trecv(t.ep, &r[posted % WIN], 8, NULL, FI_ADDR_UNSPEC,
						    3, 0, &c[posted % WIN]));
				posted++;
			}
		}
		t_barrier(&t);
	}
	t_close(&t);
}

Test(rdm, many_small_messages_in_order, .timeout = 120)
{
	run_ranks(2, role_many, 115);
}

/*
 * Blocking waits: FI_WAIT_UNSPEC CQs and fi_cq_sread only. Rank 1 sleeps in fi_cq_sread
 * while rank 0's lazy connect, HELLO, an eager message and a rendezvous (RTS, CTS, DATA)
 * reach it: every step must wake the sleeper through the wait set (listener, connection
 * descriptors), never hang.
 */
static struct ent sread_ctx(struct t *t, bool rx, void *ctx)
{
	struct fid_cq *cq = rx ? t->rxcq : t->txcq;
	uint64_t end = now_ms() + T_WAIT_MS;

	for (;;) {
		struct fi_cq_tagged_entry e;
		fi_addr_t src;
		ssize_t n = fi_cq_sreadfrom(cq, &e, 1, &src, NULL, 1000);
		struct ent x;

		CK(now_ms() < end, "fi_cq_sread: nothing for %p", ctx);
		if (n == -FI_EAGAIN || n == -FI_ETIMEDOUT)
			continue;
		memset(&x, 0, sizeof(x));
		if (n == -FI_EAVAIL) {
			CK(fi_cq_readerr(cq, &x.ee, 0) == 1, "readerr");
			x.err = true;
			x.e.op_context = x.ee.op_context;
		} else {
			CK(n == 1, "fi_cq_sread: %s", fi_strerror((int)-n));
			x.e = e;
			x.src = src;
		}
		CK(x.e.op_context == ctx, "completion for %p while waiting for %p",
		   x.e.op_context, ctx);
		return x;
	}
}

static void role_sread(int rank)
{
	struct t t;
	enum { SMALL = 100, BIG = 1 << 20 };
	char *s = xmalloc(BIG), *r = xmalloc(BIG);
	int c1, c2;
	struct ent e;

	t_open(&t, &(struct topts){ .wait_fd = true });
	if (rank == 1) {
		T_POST(&t, fi_trecv(t.ep, r, SMALL, NULL, FI_ADDR_UNSPEC, 1, 0, &c1));
		T_POST(&t, fi_trecv(t.ep, r + SMALL, BIG - SMALL, NULL, FI_ADDR_UNSPEC, 2, 0,
				    &c2));
		t_gather(NULL, NULL, 0, NULL); /* no progress here: the sread does it all */
		e = sread_ctx(&t, true, &c1);
		CK(!e.err && e.e.len == SMALL && verify(r, SMALL, 1) == (size_t)-1, "eager");
		e = sread_ctx(&t, true, &c2);
		CK(!e.err && e.e.len == BIG - SMALL && verify(r + SMALL, BIG - SMALL, 2) ==
		   (size_t)-1, "rendezvous");
	} else {
		fill(s, SMALL, 1);
		t_gather(NULL, NULL, 0, NULL);
		usleep(100000); /* let rank 1 fall asleep first */
		T_POST(&t, fi_tsend(t.ep, s, SMALL, NULL, t.peer[1], 1, &c1));
		e = sread_ctx(&t, false, &c1);
		CK(!e.err, "eager send");
		fill(r, BIG - SMALL, 2);
		T_POST(&t, fi_tsend(t.ep, r, BIG - SMALL, NULL, t.peer[1], 2, &c2));
		e = sread_ctx(&t, false, &c2);
		CK(!e.err, "rendezvous send");
	}
	t_barrier(&t);
	t_close(&t);
	free(s);
	free(r);
}

Test(rdm, blocking_sread_wakes_up, .timeout = 60)
{
	run_ranks(2, role_sread, 55);
}

/*
 * Both ranks asleep in turn: 300 round trips, each side waiting for every completion in
 * fi_cq_sread, so every message meets a receiver that armed its lane (or is arming it) and
 * must be rung; every 25th message is 4 KiB, every 100th a rendezvous. A lost doorbell
 * hangs a rank until the watchdog.
 */
static void role_sread_pp(int rank)
{
	struct t t;
	enum { ROUNDS = 300, BIG = 64 << 10 };
	char *s = xmalloc(BIG), *r = xmalloc(BIG);
	int cs, cr;
	struct ent e;

	t_open(&t, &(struct topts){ .wait_fd = true });
	t_gather(NULL, NULL, 0, NULL);
	for (int i = 0; i < ROUNDS; i++) {
		size_t len = i % 100 == 99 ? BIG : i % 25 == 24 ? 4096 : 8;
		bool mine = (i & 1) == rank; /* rank 0 sends on even rounds */

		if (mine) {
			fill(s, len, (unsigned int)i);
			T_POST(&t, fi_tsend(t.ep, s, len, NULL, t.peer[!rank], (uint64_t)i, &cs));
			e = sread_ctx(&t, false, &cs);
			CK(!e.err, "send %d", i);
		} else {
			T_POST(&t, fi_trecv(t.ep, r, BIG, NULL, FI_ADDR_UNSPEC, (uint64_t)i, 0,
					    &cr));
			e = sread_ctx(&t, true, &cr);
			CK(!e.err && e.e.len == len && verify(r, len, (unsigned int)i) == (size_t)-1,
			   "round %d: %zu bytes", i, (size_t)e.e.len);
		}
	}
	t_barrier(&t);
	t_close(&t);
	free(s);
	free(r);
}

Test(rdm, sread_ping_pong_rings_every_sleeper, .timeout = 90)
{
	run_ranks(2, role_sread_pp, 85);
}

/*
 * A reader with nothing coming sleeps: after one message each way (the connection and its
 * lanes are up), rank 1's fi_cq_sread of 1 s on an idle endpoint returns -FI_EAGAIN after
 * the second, having used a fraction of it on the CPU (a descriptor that stays readable with
 * nothing to read would make it spin: the whole second). A behaviour, not a speed: a
 * sleeping wait costs microseconds, a spinning one all of it.
 */
static void role_idle_sread(int rank)
{
	struct t t;
	char sbuf[8] = "idle", rbuf[8];
	int cs, cr;
	struct ent e;

	t_open(&t, &(struct topts){ .wait_fd = true });
	t_gather(NULL, NULL, 0, NULL);
	for (int turn = 0; turn < 2; turn++) {
		if (turn == rank) {
			T_POST(&t, fi_tsend(t.ep, sbuf, sizeof(sbuf), NULL, t.peer[!rank], 7,
					    &cs));
			e = sread_ctx(&t, false, &cs);
			CK(!e.err, "send");
		} else {
			T_POST(&t, fi_trecv(t.ep, rbuf, sizeof(rbuf), NULL, FI_ADDR_UNSPEC, 7, 0,
					    &cr));
			e = sread_ctx(&t, true, &cr);
			CK(!e.err && e.e.len == sizeof(sbuf), "recv");
		}
	}
	t_barrier(&t);
	if (rank == 1) {
		struct fi_cq_tagged_entry ce;
		struct timespec c0, c1;
		uint64_t w0, wall, cpu;
		ssize_t n;

		CK(clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c0) == 0, "thread CPU clock");
		w0 = now_ms();
		n = fi_cq_sread(t.rxcq, &ce, 1, NULL, 1000);
		wall = now_ms() - w0;
		CK(clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c1) == 0, "thread CPU clock");
		cpu = (uint64_t)((c1.tv_sec - c0.tv_sec) * 1000 +
				 (c1.tv_nsec - c0.tv_nsec) / 1000000);
		CK(n == -FI_EAGAIN || n == -FI_ETIMEDOUT, "idle sread: %zd", n);
		CK(wall >= 900, "idle sread returned after %" PRIu64 " ms", wall);
		CK(cpu * 4 < wall, "idle sread spun: %" PRIu64 " ms on the CPU in %" PRIu64 " ms",
		   cpu, wall);
	}
	t_barrier(&t);
	t_close(&t);
}

Test(rdm, idle_sread_sleeps, .timeout = 60)
{
	run_ranks(2, role_idle_sread, 55);
}

/* With FI_SCIF_LANE_SIZE=0 no ring is offered or taken: every frame on the SCIF stream. */
Test(rdm, tagged_sizes_on_the_stream, .timeout = 60)
{
	setenv("FI_SCIF_LANE_SIZE", "0", 1);
	run_ranks(2, role_sizes_tagged, 55);
}

Test(rdm, sread_ping_pong_on_the_stream, .timeout = 90)
{
	setenv("FI_SCIF_LANE_SIZE", "0", 1);
	run_ranks(2, role_sread_pp, 85);
}

/*
 * fi_av_remove at run time: a removed address cannot be sent to; inserted again it works
 * (over a fresh connection: the idle one to the removed address is closed). The receiver
 * removes and re-inserts the sender's address too: FI_SOURCE then names the new fi_addr,
 * never the removed one (the provider keeps translations while the AV loses nothing).
 */
static void role_avrm(int rank)
{
	struct t t;
	uint64_t v = 1, r = 0;
	int c;
	char addr[64];
	size_t alen = sizeof(addr);

	t_open(&t, NULL);
	if (rank == 0) {
		CKR(fi_av_lookup(t.av, t.peer[1], addr, &alen));
		T_POST(&t, fi_send(t.ep, &v, 8, NULL, t.peer[1], &c));
		t_wait_ok(&t, false, &c);
		CKR(fi_av_remove(t.av, &t.peer[1], 1, 0));
		CK(fi_send(t.ep, &v, 8, NULL, t.peer[1], &c) == -FI_EINVAL,
		   "send to a removed address");
		for (int i = 0; i < 300; i++) { /* the idle connection gets closed */
			t_progress(&t);
			usleep(1000);
		}
		CK(fi_av_insert(t.av, addr, 1, &t.peer[1], 0, NULL) == 1, "insert again");
		v = 2;
		T_POST(&t, fi_send(t.ep, &v, 8, NULL, t.peer[1], &c));
		t_wait_ok(&t, false, &c);
		t_barrier(&t);
	} else {
		fi_addr_t old = t.peer[0];
		struct ent e;

		T_POST(&t, fi_recv(t.ep, &r, 8, NULL, FI_ADDR_UNSPEC, &c));
		e = t_wait_ok(&t, true, &c);
		CK(r == 1, "first message");
		CK(e.src == old, "FI_SOURCE %llu, not %llu", (unsigned long long)e.src,
		   (unsigned long long)old);
		CKR(fi_av_lookup(t.av, old, addr, &alen));
		CKR(fi_av_remove(t.av, &old, 1, 0));
		CK(fi_av_insert(t.av, addr, 1, &t.peer[0], 0, NULL) == 1, "insert again");
		CK(t.peer[0] != old, "FI_AV_TABLE reused a removed index");
		T_POST(&t, fi_recv(t.ep, &r, 8, NULL, FI_ADDR_UNSPEC, &c));
		e = t_wait_ok(&t, true, &c);
		CK(r == 2, "message after re-insert");
		CK(e.src == t.peer[0], "FI_SOURCE after re-insert %llu, not %llu",
		   (unsigned long long)e.src, (unsigned long long)t.peer[0]);
		t_barrier(&t);
	}
	t_close(&t);
}

Test(rdm, av_remove_and_reinsert, .timeout = 30)
{
	run_ranks(2, role_avrm, 25);
}

/*
 * A send to an address nobody listens on: the lazy connect is retried until
 * FI_SCIF_CONN_TIMEOUT, then the send (and the one queued behind it) fail with
 * FI_ECONNREFUSED; the transmit queue space comes back.
 */
static void role_nobody(int rank)
{
	struct t t;
	struct {
		uint16_t node, port;
		uint32_t magic;
	} a;
	size_t alen = sizeof(a);
	fi_addr_t fa;
	char one = 1;
	int c1, c2;
	uint64_t t0;
	ssize_t left;
	struct ent e;

	(void)rank;
	setenv("FI_SCIF_CONN_TIMEOUT", "600", 1);
	t_open(&t, &(struct topts){ .no_exchange = true });
	left = t.ep->ops->tx_size_left(t.ep); /* fi_tx_size_left() is deprecated */
	CKR(fi_getname(&t.ep->fid, &a, &alen));
	a.port = 1001; /* below the dynamic range: nobody binds it here */
	CK(fi_av_insert(t.av, &a, 1, &fa, 0, NULL) == 1, "fi_av_insert");
	t0 = now_ms();
	T_POST(&t, fi_send(t.ep, &one, 1, NULL, fa, &c1));
	T_POST(&t, fi_tsend(t.ep, &one, 1, NULL, fa, 5, &c2));
	e = t_wait(&t, false, &c1);
	CK(e.err && e.ee.err == FI_ECONNREFUSED, "first send: err %d", e.ee.err);
	e = t_wait(&t, false, &c2);
	CK(e.err && e.ee.err == FI_ECONNREFUSED, "queued send: err %d", e.ee.err);
	CK(now_ms() - t0 >= 400 && now_ms() - t0 < 10000, "gave up after %" PRIu64 " ms",
	   now_ms() - t0);
	CK(t.ep->ops->tx_size_left(t.ep) == left, "tx queue space not returned");
	t_close(&t);
}

Test(rdm, send_to_nobody_is_refused, .timeout = 30)
{
	run_ranks(1, role_nobody, 25);
}

/*
 * FI_DELIVERY_COMPLETE: an eager send completes once the message is queued (unexpected) at
 * the target, a rendezvous send only once the target took the data, i.e. after it posted
 * its receive.
 */
static void role_dc(int rank)
{
	struct t t;
	enum { SMALL = 64, BIG = 300000 };
	char *s = xmalloc(BIG), *r = xmalloc(BIG);
	int ca, cb;

	t_open(&t, NULL);
	if (rank == 0) {
		struct iovec va = { s, SMALL }, vb = { s, BIG };
		struct fi_msg_tagged ma = { .msg_iov = &va, .iov_count = 1, .addr = t.peer[1],
					    .tag = 1, .context = &ca };
		struct fi_msg_tagged mb = { .msg_iov = &vb, .iov_count = 1, .addr = t.peer[1],
					    .tag = 2, .context = &cb };
		struct ent e;

		fill(s, BIG, 4);
		T_POST(&t, fi_tsendmsg(t.ep, &ma, FI_DELIVERY_COMPLETE | FI_COMPLETION));
		T_POST(&t, fi_tsendmsg(t.ep, &mb, FI_DELIVERY_COMPLETE | FI_COMPLETION));
		t_wait_ok(&t, false, &ca);
		for (int i = 0; i < 100; i++) {
			t_progress(&t);
			usleep(1000);
		}
		CK(!stash_take(&t.txs, &cb, &e), "rendezvous completed before the receive");
		t_barrier(&t);
		t_wait_ok(&t, false, &cb);
		t_barrier(&t);
	} else {
		struct ent e;

		t_barrier(&t); /* progresses: the eager message lands unexpected */
		T_POST(&t, fi_trecv(t.ep, s, SMALL, NULL, FI_ADDR_UNSPEC, 1, 0, &ca));
		T_POST(&t, fi_trecv(t.ep, r, BIG, NULL, FI_ADDR_UNSPEC, 2, 0, &cb));
		e = t_wait_ok(&t, true, &ca);
		CK(e.e.len == SMALL && verify(s, SMALL, 4) == (size_t)-1, "eager data");
		e = t_wait_ok(&t, true, &cb);
		CK(e.e.len == BIG && verify(r, BIG, 4) == (size_t)-1, "rendezvous data");
		t_barrier(&t);
	}
	t_close(&t);
	free(s);
	free(r);
}

Test(rdm, delivery_complete, .timeout = 30)
{
	run_ranks(2, role_dc, 25);
}

/*
 * Rendezvous into windows (sfi_rdm.c, sfi_wcache.c): from FI_SCIF_RNDV_WRITE_MIN (64 KiB)
 * the receiver offers its buffer's whole pages as a window and the sender writes them. A
 * buffer that took that path is a file's pages afterwards (registration made it window
 * memory), which /proc/self/maps shows: that is how the test knows the path was taken.
 * A range gets its window on its second receive. The cases: unaligned, the same buffer
 * again (a kept window), the buffer unmapped and mapped anew at the same address (the kept
 * window is other memory now and must not be used), truncation, whole pages only (nothing
 * left for DATA), a sender's iovec of three pieces, a receive of two pieces (no window:
 * every byte in DATA), and new memory at the same address before every receive (after two
 * stale windows the range gets none).
 */
#define WIN_AREA (8u << 20)

/** Whether @p addr is mapped from a file (window memory) rather than anonymous memory. */
static bool mapped_from_file(const void *addr)
{
	FILE *f = fopen("/proc/self/maps", "re");
	char line[512];
	bool file = false;

	CK(f, "/proc/self/maps: %s", strerror(errno));
	while (fgets(line, sizeof(line), f)) {
		unsigned long lo, hi, ino;

		if (sscanf(line, "%lx-%lx %*s %*s %*s %lu", &lo, &hi, &ino) == 3 &&
		    (uintptr_t)addr >= lo && (uintptr_t)addr < hi) {
			file = ino != 0;
			break;
		}
	}
	fclose(f);
	return file;
}

/** Whether this kernel answers PROCMAP_QUERY (Linux 6.11): the provider's condition. */
static bool have_procmap_query(void)
{
	struct {
		uint64_t size, flags, addr, start, end, vflags, psize, off, ino;
		uint32_t maj, min, nsz, bsz;
		uint64_t naddr, baddr;
	} q = { .size = sizeof(q), .addr = (uintptr_t)&have_procmap_query };
	int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
	bool ok = fd >= 0 && ioctl(fd, _IOWR('f', 17, q), &q) == 0;

	if (fd >= 0)
		close(fd);
	return ok;
}

struct win_case {
	size_t off;   /* receive buffer: this far into the area */
	size_t rlen;  /* receive length */
	size_t slen;  /* message length */
	int riov;     /* receive in this many pieces (1 or 2) */
	int siov;     /* send in this many pieces (1 or 3) */
	int reps;     /* receives into the same buffer; the checks of the last count */
	int remap;    /* rank 1 maps the area anew: 1 before the first, 2 before each */
	bool window;  /* the middle page must be window memory after the last */
};

/*
 * A range gets a window on its second receive (the first goes through the ring); a range
 * inside one that has a window uses it at once, and inherits its strikes.
 */
static const struct win_case win_cases[] = {
	{ 100, (3u << 20) + 5, (3u << 20) + 5, 1, 1, 2, 0, true },
	{ 100, (3u << 20) + 5, (3u << 20) + 5, 1, 1, 1, 0, true }, /* kept window */
	{ 1000, (2u << 20) + 999, (2u << 20) + 999, 1, 3, 1, 0, true }, /* inside it */
	{ 4096 * 3 + 7, (1u << 20) + 300, 2u << 20, 1, 1, 1, 0, true }, /* truncated */
	{ 100, (3u << 20) + 5, (3u << 20) + 5, 1, 1, 2, 1, true }, /* unmapped, mapped anew */
	{ 0, 1u << 20, 1u << 20, 1, 1, 2, 1, true },                /* whole pages only */
	{ 50, 1u << 20, 1u << 20, 2, 1, 2, 1, false },             /* two pieces: no window */
	/* new memory at the same place every time: two stale windows, then none */
	{ (5u << 20) + 200, 1u << 20, 1u << 20, 1, 1, 6, 2, false },
};
#define NWIN (sizeof(win_cases) / sizeof(win_cases[0]))

static void role_windows(int rank)
{
	bool procmap = have_procmap_query();
	char *area;
	struct t t;

	t_open(&t, NULL);
	area = mmap(NULL, WIN_AREA, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CK(area != MAP_FAILED, "mmap: %s", strerror(errno));
	for (size_t n = 0; n < NWIN * 8; n++) {
		size_t i = n / 8, rep = n % 8;
		const struct win_case *c = &win_cases[i];
		size_t got = c->rlen < c->slen ? c->rlen : c->slen;
		uint32_t seed = (uint32_t)(1000 + i * 16 + rep);
		bool last = rep + 1 == (size_t)c->reps;
		int ctx;

		if (rep >= (size_t)c->reps)
			continue;

		if (rank == 1) {
			char *buf = area + c->off;
			struct iovec iov[2] = { { buf, c->rlen / 3 },
						{ buf + c->rlen / 3, c->rlen - c->rlen / 3 } };

			if (c->remap == 2 || (c->remap == 1 && rep == 0)) {
				/* Other memory at the same address: a kept window is stale. */
				CK(mmap(area, WIN_AREA, PROT_READ | PROT_WRITE,
					MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) == area,
				   "mmap again: %s", strerror(errno));
			}
			memset(area, 0xee, WIN_AREA);
			if (c->riov == 1)
				T_POST(&t, fi_trecv(t.ep, buf, c->rlen, NULL, t.peer[0], 500 + i, 0,
						    &ctx));
			else
				T_POST(&t, fi_trecvv(t.ep, iov, NULL, 2, t.peer[0], 500 + i, 0,
						     &ctx));
			t_barrier(&t);
			struct ent e = t_wait(&t, true, &ctx);
			size_t bad = verify(buf, got, seed);

			if (c->slen > c->rlen) {
				CK(e.err && e.ee.err == FI_ETRUNC, "case %zu: err %d", i, e.ee.err);
				CK(e.ee.olen == c->slen - c->rlen, "case %zu: olen %zu", i,
				   e.ee.olen);
			} else {
				CK(!e.err, "case %zu: error %d", i, e.ee.err);
				CK(e.e.len == got, "case %zu: %zu bytes, expected %zu", i, e.e.len,
				   got);
			}
			CK(bad == (size_t)-1, "case %zu: byte %zu of %zu wrong", i, bad, got);
			for (size_t k = 0; k < c->off; k++)
				CK((unsigned char)area[k] == 0xee, "case %zu: byte %zu before", i, k);
			for (size_t k = c->off + got; k < c->off + got + 8192 && k < WIN_AREA; k++)
				CK((unsigned char)area[k] == 0xee, "case %zu: byte %zu after", i,
				   k - c->off - got);
			if (last && procmap && c->window)
				CK(mapped_from_file(buf + got / 2),
				   "case %zu: the buffer was not written through a window", i);
			if (last && !c->window)
				CK(!mapped_from_file(buf + got / 2),
				   "case %zu: the buffer got a window", i);
		} else {
			char *sbuf = xmalloc(c->slen);
			size_t a = c->slen / 4, b = c->slen / 2;
			struct iovec iov[3] = { { sbuf, a }, { sbuf + a, b }, { sbuf + a + b,
										 c->slen - a - b } };

			fill(sbuf, c->slen, seed);
			t_barrier(&t);
			if (c->siov == 1)
				T_POST(&t, fi_tsend(t.ep, sbuf, c->slen, NULL, t.peer[1], 500 + i,
						    &ctx));
			else
				T_POST(&t, fi_tsendv(t.ep, iov, NULL, 3, t.peer[1], 500 + i, &ctx));
			t_wait_ok(&t, false, &ctx);
			free(sbuf);
		}
		t_barrier(&t);
	}
	munmap(area, WIN_AREA);
	t_close(&t);
}

Test(rdm, rendezvous_into_windows, .timeout = 60)
{
	run_ranks(2, role_windows, 55);
}
