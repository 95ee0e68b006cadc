// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * fi_peer.c - scif_bench_fi: libfabric's tagged round trip, measured the way scif_bench
 * measures libscif's (`scif_bench --tests lat`) and scif_bench_mpi measures MPI's, so that
 * the three compare like for like.
 *
 *   scif_bench_fi SECONDS SIZE...   round trips over libfabric's FI_PROVIDER (default scif);
 *                                   prints "lat SIZE MEDIAN_US P99_US ITERS" per size
 *
 * It forks: the parent is node 0 on CPU 0 (SCIF_NODE=0), the child node 1 on CPU 1, each an
 * FI_EP_RDM endpoint (FI_TAGGED, FI_THREAD_DOMAIN); they swap addresses over a pipe. The
 * parent times each round trip alone (post the receive, fi_tinject or fi_tsend, read the CQ
 * until the answer is in) with scif_bench's clock, after a warm-up of a quarter of SECONDS;
 * the child echoes. The CQ is read in a plain loop: fabtests' fi_rdm_tagged_pingpong, which
 * bench-provider also runs, reads the clock after every completion and every empty read
 * (its timeout), which its figure includes. A side whose peer dies exits non-zero (EOF on
 * the pipe, a CQ error, or the peer seen gone while waiting); nothing waits forever (60 s
 * without an answer is an error too).
 */
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <rdma/fabric.h>
#include <rdma/fi_cm.h>
#include <rdma/fi_domain.h>
#include <rdma/fi_endpoint.h>
#include <rdma/fi_eq.h>
#include <rdma/fi_errno.h>
#include <rdma/fi_tagged.h>

#include "clock.h"

#define MAX_SAMPLES 1000000
#define TAG 0x5ca1ULL
#define GIVE_UP_NS (60ull * 1000000000ull)

static struct bench_clock clk;
static pid_t other_pid; /* node 0: the child; node 1: the parent */

struct peer {
	struct fi_info *info;
	struct fid_fabric *fabric;
	struct fid_domain *domain;
	struct fid_av *av;
	struct fid_cq *cq;
	struct fid_ep *ep;
	fi_addr_t other;
	size_t inject;
	char *buf;
	int role; /* 0: times, 1: echoes */
};

static void die(const struct peer *p, const char *what, long err)
{
	fprintf(stderr, "scif_bench_fi (node %d): %s: %s\n", p->role, what,
		err < 0 ? fi_strerror((int)-err) : strerror(errno));
	exit(1);
}

/* The pipe to the other side; it closing is the other side gone. */
static void xfer(int fd, void *buf, size_t len, int out)
{
	char *b = buf;

	while (len) {
		ssize_t n = out ? write(fd, b, len) : read(fd, b, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			fprintf(stderr, "scif_bench_fi: the other side exited (its pipe closed)\n");
			exit(1);
		}
		b += n;
		len -= (size_t)n;
	}
}

static void open_peer(struct peer *p, size_t max)
{
	struct fi_info *hints = fi_allocinfo();
	struct fi_av_attr ava = { .type = FI_AV_TABLE };
	struct fi_cq_attr cqa = { .format = FI_CQ_FORMAT_TAGGED, .size = 64 };
	const char *prov = getenv("FI_PROVIDER");
	struct fi_info *list = NULL;
	long ret;

	if (!hints)
		die(p, "fi_allocinfo", -FI_ENOMEM);
	hints->ep_attr->type = FI_EP_RDM;
	hints->caps = FI_TAGGED;
	hints->mode = FI_CONTEXT;
	hints->domain_attr->threading = FI_THREAD_DOMAIN;
	hints->domain_attr->mr_mode = FI_MR_LOCAL | FI_MR_VIRT_ADDR | FI_MR_ALLOCATED |
				      FI_MR_PROV_KEY;
	/* FI_PROVIDER filters what libfabric loads; "scif" unless it names one. */
	if (!prov || *prov == '^' || strchr(prov, ','))
		prov = "scif";
	hints->fabric_attr->prov_name = strdup(prov);
	ret = fi_getinfo(FI_VERSION(1, 17), NULL, NULL, 0, hints, &list);
	fi_freeinfo(hints);
	if (ret)
		die(p, "fi_getinfo", ret);
	/* The provider's own RDM endpoint, not a utility provider layered over it (libfabric
	 * lists "scif;ofi_rxm" first). */
	for (struct fi_info *i = list; i && !p->info; i = i->next)
		if (!strcmp(i->fabric_attr->prov_name, prov))
			p->info = fi_dupinfo(i);
	fi_freeinfo(list);
	if (!p->info)
		die(p, "no RDM endpoint of that provider itself", -FI_ENODATA);
	if ((ret = fi_fabric(p->info->fabric_attr, &p->fabric, NULL)) ||
	    (ret = fi_domain(p->fabric, p->info, &p->domain, NULL)) ||
	    (ret = fi_av_open(p->domain, &ava, &p->av, NULL)) ||
	    (ret = fi_cq_open(p->domain, &cqa, &p->cq, NULL)) ||
	    (ret = fi_endpoint(p->domain, p->info, &p->ep, NULL)) ||
	    (ret = fi_ep_bind(p->ep, &p->av->fid, 0)) ||
	    (ret = fi_ep_bind(p->ep, &p->cq->fid, FI_SEND | FI_RECV)) ||
	    (ret = fi_enable(p->ep)))
		die(p, "opening the endpoint", ret);
	p->inject = p->info->tx_attr->inject_size;
	p->buf = malloc(max ? max : 1);
	if (!p->buf)
		die(p, "malloc", -FI_ENOMEM);
	memset(p->buf, 0x5a, max);
}

/* Wait for one completion; its entry's flags (FI_RECV or FI_SEND). */
static uint64_t wait_one(struct peer *p)
{
	struct fi_cq_tagged_entry e;
	uint64_t start = 0;
	unsigned int spins = 0;
	ssize_t n;

	while ((n = fi_cq_read(p->cq, &e, 1)) == -FI_EAGAIN) {
		/* every 64Ki empty reads: is the other side alive, and for how long no answer */
		if (++spins & 0xffff)
			continue;
		if (p->role == 0 ? waitpid(other_pid, NULL, WNOHANG) == other_pid :
				   getppid() != other_pid)
			die(p, "the other side exited", -FI_ECONNRESET); /* message checked by check-provider */
		if (!start)
			start = bench_clock_ns(&clk);
		else if (bench_clock_ns(&clk) - start > GIVE_UP_NS)
			die(p, "no answer for 60 s", -FI_ETIMEDOUT);
	}
	if (n == -FI_EAVAIL) {
		struct fi_cq_err_entry err = { 0 };

		fi_cq_readerr(p->cq, &err, 0);
		die(p, "completion error", -(long)err.err);
	}
	if (n != 1)
		die(p, "fi_cq_read", n);
	return e.flags;
}

static void post_recv(struct peer *p, size_t size, struct fi_context *ctx)
{
	ssize_t ret;

	while ((ret = fi_trecv(p->ep, p->buf, size, NULL, p->other, TAG, 0, ctx)) == -FI_EAGAIN)
		;
	if (ret)
		die(p, "fi_trecv", ret);
}

static void send_one(struct peer *p, size_t size, struct fi_context *ctx)
{
	ssize_t ret;

	if (size <= p->inject) {
		while ((ret = fi_tinject(p->ep, p->buf, size, p->other, TAG)) == -FI_EAGAIN)
			;
		if (ret)
			die(p, "fi_tinject", ret);
		return;
	}
	while ((ret = fi_tsend(p->ep, p->buf, size, NULL, p->other, TAG, ctx)) == -FI_EAGAIN)
		;
	if (ret)
		die(p, "fi_tsend", ret);
}

/* n round trips of size bytes; the timing side stores each one's time in samples. */
static void pingpong(struct peer *p, size_t size, long n, uint64_t *samples)
{
	struct fi_context rctx, sctx;

	for (long i = 0; i < n; i++) {
		uint64_t t0 = p->role == 0 ? bench_clock_ns(&clk) : 0;
		int need = size > p->inject ? 2 : 1; /* a fi_tsend completes too */

		post_recv(p, size, &rctx);
		if (p->role == 0)
			send_one(p, size, &sctx);
		else
			need = 1;
		while (need) {
			uint64_t f = wait_one(p);

			if (f & FI_RECV) {
				need--;
				if (p->role == 1) {
					send_one(p, size, &sctx);
					need += size > p->inject;
				}
			} else {
				need--;
			}
		}
		if (samples)
			samples[i] = bench_clock_ns(&clk) - t0;
	}
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static void pin(int cpu)
{
	cpu_set_t s;

	CPU_ZERO(&s);
	CPU_SET(cpu, &s);
	(void)sched_setaffinity(0, sizeof(s), &s); /* fewer CPUs: run unpinned */
}

int main(int argc, char **argv)
{
	int to_child[2], to_parent[2], in, out, status;
	struct peer p = { 0 };
	uint64_t *samples = NULL;
	char name[256];
	size_t max = 1, nlen;
	pid_t child;

	if (argc < 3) {
		fprintf(stderr, "usage: scif_bench_fi SECONDS SIZE...\n");
		return 2;
	}
	for (int i = 2; i < argc; i++)
		if ((size_t)atol(argv[i]) > max)
			max = (size_t)atol(argv[i]);
	if (pipe(to_child) || pipe(to_parent)) {
		perror("scif_bench_fi: pipe");
		return 1;
	}
	signal(SIGPIPE, SIG_IGN);
	child = fork();
	if (child < 0) {
		perror("scif_bench_fi: fork");
		return 1;
	}
	p.role = child == 0;
	other_pid = p.role ? getppid() : child;
	in = p.role ? to_child[0] : to_parent[0];
	out = p.role ? to_parent[1] : to_child[1];
	close(p.role ? to_child[1] : to_parent[1]);
	close(p.role ? to_parent[0] : to_child[0]);
	setenv("SCIF_NODE", p.role ? "1" : "0", 1);
	pin(p.role);
	bench_clock_setup(&clk);
	open_peer(&p, max);

	/* Addresses: each sends its own, inserts the other's. */
	nlen = sizeof(name);
	if (fi_getname(&p.ep->fid, name, &nlen))
		die(&p, "fi_getname", -FI_EINVAL);
	xfer(out, &nlen, sizeof(nlen), 1);
	xfer(out, name, nlen, 1);
	xfer(in, &nlen, sizeof(nlen), 0);
	if (nlen > sizeof(name))
		die(&p, "peer address", -FI_EINVAL);
	xfer(in, name, nlen, 0);
	if (fi_av_insert(p.av, name, 1, &p.other, 0, NULL) != 1)
		die(&p, "fi_av_insert", -FI_EINVAL);
	if (p.role == 0) {
		samples = malloc(MAX_SAMPLES * sizeof(*samples));
		if (!samples)
			die(&p, "malloc", -FI_ENOMEM);
	}
	/* The connection (made on the first send) and its lane, before any warm-up counts. */
	pingpong(&p, 1, 1000, NULL);

	for (int i = 2; i < argc; i++) {
		size_t size = (size_t)atol(argv[i]);
		double seconds = atof(argv[1]);
		long n = 0, k;
		uint64_t t0;

		/* Warm-up, a quarter of the time (the timing side decides, the echo follows). */
		t0 = bench_clock_ns(&clk);
		for (k = 1;; k *= 2) {
			int done = 0;

			pingpong(&p, size, k, NULL);
			n += k;
			if (p.role == 0)
				done = (double)(bench_clock_ns(&clk) - t0) > seconds * 0.25e9;
			if (p.role == 0)
				xfer(out, &done, sizeof(done), 1);
			else
				xfer(in, &done, sizeof(done), 0);
			if (done)
				break;
		}
		if (p.role == 0) {
			double per = (double)(bench_clock_ns(&clk) - t0) / (double)n;

			n = per > 0 ? (long)(seconds * 1e9 / per) : 1;
			n = n < 1 ? 1 : n > MAX_SAMPLES ? MAX_SAMPLES : n;
			xfer(out, &n, sizeof(n), 1);
		} else {
			xfer(in, &n, sizeof(n), 0);
		}
		pingpong(&p, size, n, samples);
		if (p.role == 0) {
			qsort(samples, (size_t)n, sizeof(*samples), cmp_u64);
			printf("lat %zu %.4f %.4f %ld\n", size, samples[n / 2] / 1e3,
			       samples[(size_t)((double)n * 0.99)] / 1e3, n);
			fflush(stdout);
		}
	}
	fi_close(&p.ep->fid);
	fi_close(&p.cq->fid);
	fi_close(&p.av->fid);
	fi_close(&p.domain->fid);
	fi_close(&p.fabric->fid);
	fi_freeinfo(p.info);
	free(p.buf);
	free(samples);
	if (p.role)
		return 0;
	close(out);
	if (waitpid(child, &status, 0) != child || !WIFEXITED(status) || WEXITSTATUS(status)) {
		fprintf(stderr, "scif_bench_fi: the echoing side (node 1) failed (status %#x)\n",
			status);
		return 1;
	}
	return 0;
}
