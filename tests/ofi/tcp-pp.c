// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * tcp-pp.c - the plain TCP yardstick of tests/ofi/baseline.sh: a ping-pong and a one-way
 * stream over one TCP connection between two network namespaces, with nothing but sockets.
 *
 *   tcp-pp server ADDR PORT                      serve one client, then exit
 *   tcp-pp client ADDR PORT TEST SIZE ITERS...   TEST: lat (ping-pong of SIZE bytes) or bw
 *                                                (SIZE-byte messages one way, then an ack)
 *
 * One line per TEST, in fabtests' units: "usec/xfer" is half a round trip (fi_pingpong's
 * latency), MB/s is 10^6 bytes per second. Each test runs ITERS / 10 (at least 1) untimed
 * iterations first. TCP_NODELAY on both sides; buffers as the kernel tunes them.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* What the client asks for before each test; a zero kind ends the session. */
struct pp_req {
	uint32_t kind; /* 0 end, 1 lat, 2 bw */
	uint32_t pad;
	uint64_t size, iters;
};

static double now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int full_io(int fd, void *buf, size_t len, int out)
{
	uint8_t *p = buf;

	while (len) {
		ssize_t n = out ? send(fd, p, len, MSG_NOSIGNAL) : recv(fd, p, len, 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n == 0)
			errno = ECONNRESET; /* the peer closed early */
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int parse_addr(const char *host, const char *port, struct sockaddr_in *sa)
{
	memset(sa, 0, sizeof(*sa));
	sa->sin_family = AF_INET;
	sa->sin_port = htons((uint16_t)atoi(port));
	return inet_pton(AF_INET, host, &sa->sin_addr) == 1 ? 0 : -1;
}

static void nodelay(int fd)
{
	int one = 1;

	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

/* Echo lat requests, swallow bw streams and ack them, until the client ends. */
static int serve(int fd)
{
	struct pp_req r;
	uint8_t *buf = NULL;
	size_t cap = 0;

	while (full_io(fd, &r, sizeof(r), 0) == 0 && r.kind) {
		uint64_t n = r.iters + (r.iters / 10 ? r.iters / 10 : 1);

		if (r.size > cap) {
			free(buf);
			cap = (size_t)r.size;
			buf = malloc(cap);
			if (!buf)
				return 1;
		}
		for (uint64_t i = 0; i < n; i++)
			if (full_io(fd, buf, (size_t)r.size, 0) ||
			    (r.kind == 1 && full_io(fd, buf, (size_t)r.size, 1)))
				return 1;
		if (r.kind == 2 && full_io(fd, buf, 1, 1)) /* ack: all of it arrived */
			return 1;
	}
	free(buf);
	return 0;
}

static int run_test(int fd, const char *kind, uint64_t size, uint64_t iters)
{
	struct pp_req r = { .kind = !strcmp(kind, "lat") ? 1 : 2, .size = size, .iters = iters };
	uint64_t warm = iters / 10 ? iters / 10 : 1;
	uint8_t *buf = calloc(1, (size_t)size);
	double t0 = 0, us;

	if (!buf || full_io(fd, &r, sizeof(r), 1))
		goto fail;
	for (uint64_t i = 0; i < warm + iters; i++) {
		if (i == warm)
			t0 = now_us();
		if (full_io(fd, buf, (size_t)size, 1) ||
		    (r.kind == 1 && full_io(fd, buf, (size_t)size, 0)))
			goto fail;
	}
	/* bw: the last bytes may still be in flight: the ack says they all arrived. */
	if (r.kind == 2 && full_io(fd, buf, 1, 0))
		goto fail;
	us = now_us() - t0;
	if (r.kind == 1)
		printf("tcp-pp lat: %llu bytes, %llu iters, %.2f usec/xfer (half round trip)\n",
		       (unsigned long long)size, (unsigned long long)iters, us / (double)iters / 2);
	else
		printf("tcp-pp bw: %llu bytes, %llu iters, %.2f MB/s\n", (unsigned long long)size,
		       (unsigned long long)iters, (double)size * (double)iters / us);
	fflush(stdout);
	free(buf);
	return 0;
fail:
	free(buf);
	return -1;
}

int main(int argc, char **argv)
{
	struct sockaddr_in sa;
	int fd, one = 1, ret = 0;

	if (argc < 4 || parse_addr(argv[2], argv[3], &sa) ||
	    (strcmp(argv[1], "server") && (strcmp(argv[1], "client") || (argc - 4) % 3))) {
		fprintf(stderr, "usage: tcp-pp server ADDR PORT\n"
				"       tcp-pp client ADDR PORT {lat|bw} SIZE ITERS...\n");
		return 2;
	}
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		goto fail;
	if (!strcmp(argv[1], "server")) {
		int c;

		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) || listen(fd, 1))
			goto fail;
		c = accept(fd, NULL, NULL);
		if (c < 0)
			goto fail;
		nodelay(c);
		ret = serve(c);
		close(c);
		close(fd);
		return ret;
	}
	/* The server may still be starting: retry for 10 s, on a fresh socket each time. */
	for (int i = 0; connect(fd, (struct sockaddr *)&sa, sizeof(sa)); i++) {
		if (errno != ECONNREFUSED || i >= 1000)
			goto fail;
		close(fd);
		usleep(10000);
		fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0)
			goto fail;
	}
	nodelay(fd);
	for (int i = 4; i + 2 < argc; i += 3) {
		uint64_t size = strtoull(argv[i + 1], NULL, 0), iters = strtoull(argv[i + 2], NULL, 0);

		if ((strcmp(argv[i], "lat") && strcmp(argv[i], "bw")) || !size || !iters) {
			fprintf(stderr, "tcp-pp: bad test %s %s %s\n", argv[i], argv[i + 1], argv[i + 2]);
			return 2;
		}
		if (run_test(fd, argv[i], size, iters))
			goto fail;
	}
	{
		struct pp_req end = { 0 };

		if (full_io(fd, &end, sizeof(end), 1))
			goto fail;
	}
	close(fd);
	return 0;
fail:
	fprintf(stderr, "tcp-pp %s: %s\n", argv[1], strerror(errno));
	return 1;
}
