// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * peer-bulk.c - card-side roles for the single-copy transfer tests (test-bulk.c).
 *
 *   bulk-echo <port> <thp> <fork>   listen, accept one; then, until a zero length: receive
 *                                   an 8-byte length and that many bytes, send them back.
 *                                   <thp>: buffers on huge pages; <fork>: a fork child of
 *                                   the accepting process does the echoing.
 *   bulk-abandon <node> <port>      connect, start a 16 MiB blocking send in a thread,
 *                                   close the endpoint under it after 300 ms, then scribble
 *                                   over the buffer and stay alive for 3 s.
 *   bulk-source <node> <port> <bytes> <seed>
 *                                   connect, send <bytes> of seeded data in one blocking
 *                                   scif_send from a huge-page buffer, wait for one byte.
 *   bulk-nbsink <node> <port> <bytes> <rounds> <seed>
 *                                   connect; <rounds> times receive <bytes> in one blocking
 *                                   scif_recv (waiting for the test's non-blocking sends)
 *                                   and check them (round r is stream_seed(seed, r, 0));
 *                                   then send one byte. Exit 9: data differed.
 *   bulk-nbsource <node> <port> <bytes> <seed>
 *                                   connect, wait 100 ms (the test waits in scif_recv),
 *                                   send <bytes> of seeded data with non-blocking sends,
 *                                   wait for one byte.
 */
#include <errno.h>
#include <pthread.h>
#include <scif.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mp/peer.h"
#include "mp/stream.h"

static int echo_loop(scif_epd_t ep, int thp)
{
	uint8_t *buf = NULL;
	size_t cap = 0;

	int ret;

	for (;;) {
		uint64_t len;

		if (scif_recv(ep, &len, sizeof(len), SCIF_RECV_BLOCK) != (int)sizeof(len)) {
			ret = 3;
			break;
		}
		if (!len) {
			ret = 0;
			break;
		}
		if (len > cap) {
			free(buf);
			buf = stream_alloc(len, thp);
			cap = len;
			if (!buf)
				return 4;
		}
		if (scif_recv(ep, buf, (int)len, SCIF_RECV_BLOCK) != (int)len) {
			ret = 5;
			break;
		}
		if (scif_send(ep, buf, (int)len, SCIF_SEND_BLOCK) != (int)len) {
			ret = 6;
			break;
		}
	}
	free(buf);
	return ret;
}

int peer_bulk_echo(uint16_t port, int thp, int use_fork)
{
	struct scif_portID peer;
	scif_epd_t lep = scif_open(), ep;
	int st;
	pid_t pid;

	if (lep < 0 || scif_bind(lep, port) != port || scif_listen(lep, 1) ||
	    scif_accept(lep, &peer, &ep, SCIF_ACCEPT_SYNC))
		return 2;
	if (!use_fork)
		return echo_loop(ep, thp);
	pid = fork();
	if (pid == 0)
		_exit(echo_loop(ep, thp));
	if (pid < 0 || waitpid(pid, &st, 0) != pid)
		return 7;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 8;
}

int peer_bulk_source(uint16_t node, uint16_t port, size_t bytes, uint64_t seed)
{
	struct scif_portID dst = { .node = node, .port = port };
	scif_epd_t ep = scif_open();
	uint8_t *buf = stream_alloc(bytes, 1);
	char ack;
	int ret;

	if (ep < 0 || !buf)
		return 2;
	for (int i = 0; scif_connect(ep, &dst) < 0; i++) {
		if (errno != ECONNREFUSED || i == 5000)
			return 3;
		usleep(1000);
	}
	stream_fill(seed, 0, buf, bytes);
	ret = 0;
	if (scif_send(ep, buf, (int)bytes, SCIF_SEND_BLOCK) != (int)bytes)
		ret = 4;
	else if (scif_recv(ep, &ack, 1, SCIF_RECV_BLOCK) != 1)
		ret = 5;
	free(buf);
	return ret;
}

struct abandon {
	scif_epd_t ep;
	uint8_t *buf;
	int ret;
};

static void *abandon_send(void *arg)
{
	struct abandon *a = arg;

	a->ret = scif_send(a->ep, a->buf, 16 << 20, SCIF_SEND_BLOCK);
	return NULL;
}

int peer_bulk_abandon(uint16_t node, uint16_t port)
{
	struct scif_portID dst = { .node = node, .port = port };
	struct abandon a = { .ep = scif_open(), .buf = stream_alloc(16u << 20, 1) };
	pthread_t th;

	if (a.ep < 0 || !a.buf)
		return 2;
	for (int i = 0; scif_connect(a.ep, &dst) < 0; i++) {
		if (errno != ECONNREFUSED || i == 5000)
			return 3;
		usleep(1000);
	}
	memset(a.buf, 0x5a, 16u << 20);
	pthread_create(&th, NULL, abandon_send, &a);
	usleep(300000);
	scif_close(a.ep);
	pthread_join(th, NULL);
	if (a.ret == 16 << 20)
		return 4; /* nobody received it: it cannot have completed */
	memset(a.buf, 0xa5, 16u << 20);
	sleep(3);
	free(a.buf);
	return 0;
}

static int connect_retry(scif_epd_t ep, uint16_t node, uint16_t port)
{
	struct scif_portID dst = { .node = node, .port = port };

	for (int i = 0; scif_connect(ep, &dst) < 0; i++) {
		if (errno != ECONNREFUSED || i == 5000)
			return -1;
		usleep(1000);
	}
	return 0;
}

int peer_bulk_nbsink(uint16_t node, uint16_t port, size_t bytes, int rounds, uint64_t seed)
{
	scif_epd_t ep = scif_open();
	uint8_t *buf = stream_alloc(bytes, 1), *want = malloc(bytes);
	int ret = 0;

	if (ep < 0 || !buf || !want || connect_retry(ep, node, port))
		return 2;
	for (int r = 0; r < rounds && !ret; r++) {
		stream_fill(stream_seed(seed, (uint64_t)r, 0), 0, want, bytes);
		if (scif_recv(ep, buf, (int)bytes, SCIF_RECV_BLOCK) != (int)bytes)
			ret = 3;
		else if (memcmp(buf, want, bytes))
			ret = 9;
		memset(buf, 0xee, bytes);
	}
	if (!ret && scif_send(ep, "k", 1, SCIF_SEND_BLOCK) != 1)
		ret = 4;
	free(buf);
	free(want);
	return ret;
}

int peer_bulk_nbsource(uint16_t node, uint16_t port, size_t bytes, uint64_t seed)
{
	scif_epd_t ep = scif_open();
	uint8_t *buf = stream_alloc(bytes, 1);
	size_t done = 0;
	char ack;

	if (ep < 0 || !buf || connect_retry(ep, node, port))
		return 2;
	stream_fill(seed, 0, buf, bytes);
	usleep(100000);
	while (done < bytes) {
		int n = scif_send(ep, buf + done, (int)(bytes - done), 0);

		if (n < 0)
			return 4;
		done += (size_t)n;
	}
	if (scif_recv(ep, &ack, 1, SCIF_RECV_BLOCK) != 1)
		return 5;
	free(buf);
	return 0;
}
