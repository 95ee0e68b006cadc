// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * ofi-hostile.c - a peer process that speaks libfabric to a process on the ofi fabric but
 * sends it nothing but malformed small messages: what a compromised or buggy peer could do
 * once it knows the victim's libfabric endpoint. Run by test-ofi.c in node 1's namespace.
 *
 *   ofi-hostile VICTIM_ADDR PORT OWN_ADDR
 *
 * It opens a TCP link to the victim's SCIF listener at VICTIM_ADDR:PORT, reads the victim's
 * HELLO (its endpoint name), says HELLO as node 1 with its own endpoint (bound to OWN_ADDR;
 * FI_PROVIDER as the victim's) followed by a connection request that is garbage, and waits
 * for the victim to drop that link. By then the victim knows our address. Then it sends the
 * victim's progress every kind of bad message (the layout of libscif/fabric/ofi.c's struct
 * ofi_note and its ranges, written here from the protocol, not shared with the library):
 * short, wrong magic, unknown operations, rings and unparks of guessed bells, PUTs to
 * unknown keys, cut short, of length 0, past any region, key changes that are malformed or
 * cut short, overlong messages, and a flood of random bytes. Then it sends a PING and waits for the ECHO: the victim's progress survived.
 * Last come messages longer than the victim takes, which may cost us our connection.
 *
 * Exit status: 0 if the echo came; 1 if it did not come within 10 s; 2 if the set-up failed;
 * 3 if even a PING before the garbage got no echo (the victim does not know our address).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <rdma/fabric.h>
#include <rdma/fi_cm.h>
#include <rdma/fi_domain.h>
#include <rdma/fi_endpoint.h>
#include <rdma/fi_errno.h>

#define LINK_MAGIC 0x4b4e4c4fu /* "OLNK" */
#define NOTE_MAGIC 0x45544e4fu /* "ONTE" */
enum { OP_RING = 1, OP_UNPARK, OP_PING, OP_ECHO, OP_PUT };
#define PUT_RING (1u << 16)

struct frame {
	uint32_t magic;
	uint16_t type;
	uint16_t nfh;
	uint32_t len;
	uint32_t flags;
};

struct note {
	uint32_t magic;
	uint32_t op;
	uint64_t arg;
};

/* A PUT's start: the key its ranges are for, then its first range's offset and length. */
struct put {
	uint64_t key;
	uint32_t off;
	uint32_t len;
};
#define PUT_KEY 0xffffffffu /* a range header's offset that says "another key follows" */

static struct fid_fabric *fabric;
static struct fid_domain *domain;
static struct fid_av *av;
static struct fid_cq *cq;
static struct fid_ep *ep;
static fi_addr_t victim;
static struct fi_context2 tx_ctx, rx_ctx;

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static unsigned int sent; /* messages sent so far */

static int die(const char *what)
{
	fprintf(stderr, "ofi-hostile: %s (after %u messages)\n", what, sent);
	exit(2);
}

/* Read exactly @n bytes within 5 s. */
static void read_full(int fd, void *buf, size_t n)
{
	uint64_t until = now_ms() + 20000;

	for (size_t got = 0; got < n;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		ssize_t r;

		if (now_ms() > until || poll(&p, 1, 100) < 0)
			die("the victim's HELLO did not come");
		r = recv(fd, (uint8_t *)buf + got, n - got, MSG_DONTWAIT);
		if (r == 0)
			die("the victim closed the link before its HELLO");
		if (r > 0)
			got += (size_t)r;
	}
}

/*
 * One message to the victim, waited for (an error completion is fine: it may be refused).
 * Returns 1 once it completed, or 0 if it did not within @ms (the provider may drop the
 * connection of a peer that sent something too long, and never complete what was on it).
 */
static int send_within(const void *buf, size_t len, int ms)
{
	struct fi_cq_msg_entry e;
	uint64_t until = now_ms() + (uint64_t)ms;
	ssize_t r;

	while ((r = fi_send(ep, buf, len, NULL, victim, &tx_ctx)) == -FI_EAGAIN) {
		fi_cq_read(cq, NULL, 0);
		if (now_ms() > until)
			die("the victim stopped taking messages");
	}
	if (r)
		die("fi_send failed");
	for (;;) {
		r = fi_cq_read(cq, &e, 1);
		if (r == 1 && e.op_context == &tx_ctx) {
			sent++;
			return 1;
		}
		if (r == -FI_EAVAIL) {
			struct fi_cq_err_entry err = { 0 };

			fi_cq_readerr(cq, &err, 0);
			if (err.op_context == &tx_ctx) {
				sent++;
				return 1;
			}
		}
		if (now_ms() > until)
			return 0;
	}
}

static void send_raw(const void *buf, size_t len)
{
	if (!send_within(buf, len, 20000))
		die("a send did not complete in 20 s");
}

static void send_note(uint32_t op, uint64_t arg, const void *tail, size_t tail_len)
{
	uint8_t buf[1024];
	struct note n = { .magic = NOTE_MAGIC, .op = op, .arg = arg };

	memcpy(buf, &n, sizeof(n));
	memcpy(buf + sizeof(n), tail, tail_len);
	send_raw(buf, sizeof(n) + tail_len);
}

/* A PUT with one range header @p and @data_len bytes after it. */
static void send_put(uint32_t op, uint64_t arg, struct put p, size_t data_len)
{
	uint8_t tail[sizeof(p) + 512];

	memcpy(tail, &p, sizeof(p));
	memset(tail + sizeof(p), 0xa5, data_len);
	send_note(op, arg, tail, sizeof(p) + data_len);
}

static void open_fabric(const char *own)
{
	struct fi_info *hints = fi_allocinfo(), *info;
	struct fi_cq_attr cqa = { .format = FI_CQ_FORMAT_MSG };
	struct fi_av_attr ava = { .type = FI_AV_TABLE };

	if (!hints)
		die("fi_allocinfo");
	hints->caps = FI_MSG;
	hints->mode = FI_CONTEXT | FI_CONTEXT2;
	hints->ep_attr->type = FI_EP_RDM;
	hints->addr_format = FI_SOCKADDR_IN;
	hints->domain_attr->mr_mode = FI_MR_VIRT_ADDR | FI_MR_ALLOCATED | FI_MR_PROV_KEY |
				      FI_MR_ENDPOINT;
	if (fi_getinfo(FI_VERSION(1, 9), own, NULL, FI_SOURCE, hints, &info))
		die("fi_getinfo");
	if (fi_fabric(info->fabric_attr, &fabric, NULL) || fi_domain(fabric, info, &domain, NULL) ||
	    fi_av_open(domain, &ava, &av, NULL) || fi_cq_open(domain, &cqa, &cq, NULL) ||
	    fi_endpoint(domain, info, &ep, NULL) || fi_ep_bind(ep, &av->fid, 0) ||
	    fi_ep_bind(ep, &cq->fid, FI_TRANSMIT | FI_RECV) || fi_enable(ep))
		die("opening the libfabric endpoint");
	fi_freeinfo(hints);
	fi_freeinfo(info);
}

/* The link: learn the victim's name, give it ours, and let it drop the link. */
static void introduce(const char *victim_addr, int port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	uint8_t out[sizeof(struct frame) * 2 + 8 + 256 + 8], body[8 + 256], name[256];
	size_t namelen = sizeof(name), at = 0;
	struct frame f;
	uint32_t node_len[2];
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	uint64_t until;

	if (fd < 0 || inet_pton(AF_INET, victim_addr, &sa.sin_addr) != 1 ||
	    connect(fd, (struct sockaddr *)&sa, sizeof(sa)))
		die("connecting the link");
	read_full(fd, &f, sizeof(f));
	if (f.magic != LINK_MAGIC || f.type != 1 || f.len < 8 || f.len > sizeof(body))
		die("the victim's first frame is no HELLO");
	read_full(fd, body, f.len);
	memcpy(node_len, body, sizeof(node_len));
	if (node_len[1] != f.len - 8 || fi_av_insert(av, body + 8, 1, &victim, 0, NULL) != 1)
		die("the victim's endpoint name");
	if (fi_getname(&ep->fid, name, &namelen) || namelen > 256)
		die("fi_getname");
	/* Our HELLO as node 1, then (flagged as following) a request that is garbage. */
	f = (struct frame){ LINK_MAGIC, 1, 0, (uint32_t)(8 + namelen), 1 };
	memcpy(out, &f, sizeof(f));
	at = sizeof(f);
	node_len[0] = 1;
	node_len[1] = (uint32_t)namelen;
	memcpy(out + at, node_len, 8);
	memcpy(out + at + 8, name, namelen);
	at += 8 + namelen;
	f = (struct frame){ LINK_MAGIC, 2, 0, 8, 0 };
	memcpy(out + at, &f, sizeof(f));
	memset(out + at + sizeof(f), 0x5a, 8);
	at += sizeof(f) + 8;
	if (send(fd, out, at, MSG_NOSIGNAL) != (ssize_t)at)
		die("sending our HELLO");
	/* The victim consumed our HELLO (and knows our address) when it drops the link. */
	until = now_ms() + 10000;
	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		char c[64];

		if (now_ms() > until)
			die("the victim did not drop the garbage link in 10 s");
		if (poll(&p, 1, 100) == 1) {
			ssize_t r = recv(fd, c, sizeof(c), MSG_DONTWAIT);

			if (r == 0 || (r < 0 && errno == ECONNRESET))
				break;
		}
	}
	close(fd);
}

/* A PING, answered by an ECHO with its argument within 10 s? */
static int ping_echo(uint64_t arg)
{
	struct note ping = { .magic = NOTE_MAGIC, .op = OP_PING, .arg = arg }, echo;
	uint64_t until = now_ms() + 10000;

	if (fi_recv(ep, &echo, sizeof(echo), NULL, FI_ADDR_UNSPEC, &rx_ctx))
		die("fi_recv");
	send_raw(&ping, sizeof(ping));
	while (now_ms() < until) {
		struct fi_cq_msg_entry e;

		if (fi_cq_read(cq, &e, 1) == 1 && e.op_context == &rx_ctx) {
			if (echo.magic == NOTE_MAGIC && echo.op == OP_ECHO && echo.arg == arg)
				return 1;
			if (fi_recv(ep, &echo, sizeof(echo), NULL, FI_ADDR_UNSPEC, &rx_ctx))
				die("fi_recv");
		}
		usleep(100);
	}
	fprintf(stderr, "ofi-hostile: no ECHO to our PING %llu within 10 s\n",
		(unsigned long long)arg);
	return 0;
}

int main(int argc, char **argv)
{
	static uint8_t rnd[70000];
	uint64_t key;

	if (argc != 4)
		die("usage: ofi-hostile VICTIM_ADDR PORT OWN_ADDR");
	open_fabric(argv[3]);
	introduce(argv[1], atoi(argv[2]));
	/* The victim knows us (our PING gets its ECHO) before the garbage starts. */
	if (!ping_echo(1))
		return 3;
	if (getrandom(&key, sizeof(key), 0) != sizeof(key))
		die("getrandom");

	send_raw("junk", 4);
	send_note(OP_RING, 0, NULL, 0); /* fine so far: a ring of a bell we guess */
	{
		struct note n = { .magic = 0xdeadbeef, .op = OP_RING, .arg = 0 };

		send_raw(&n, sizeof(n));
	}
	send_note(77, 0, NULL, 0);
	send_note(OP_ECHO, 0, NULL, 0); /* an echo of no fence */
	for (uint64_t t = 0; t < 64; t++) {
		send_note(OP_RING, t, NULL, 0);
		send_note(OP_UNPARK, t, NULL, 0);
		send_note(OP_ECHO, t, NULL, 0);
	}
	send_put(OP_PUT, 0, (struct put){ key, 0, 8 }, 8);		 /* unknown key */
	send_put(OP_PUT | PUT_RING, 3, (struct put){ key, 0, 8 }, 8);
	send_put(OP_PUT, 0, (struct put){ key, 0, 64 }, 8);		 /* cut short */
	send_put(OP_PUT, 0, (struct put){ key, 0, 0 }, 0);		 /* empty */
	send_put(OP_PUT, 0, (struct put){ key, 0xffffffffu, 8 }, 8); /* past any region */
	send_put(OP_PUT, 0, (struct put){ key, 0, 0xffffffffu }, 8);
	send_note(OP_PUT, 0, "abc", 3);					 /* a range header cut */
	send_put(OP_PUT, 0, (struct put){ key, 0, 400 }, 400);
	send_put(OP_PUT, 0, (struct put){ key, PUT_KEY, 8 }, 8); /* a key change with bytes */
	send_put(OP_PUT, 0, (struct put){ key, PUT_KEY, 0 }, 4); /* its key cut short */
	{
		/* A key change to another unknown key, then a range for it. */
		struct {
			struct put first;
			uint64_t key2;
			uint32_t off, len;
			uint8_t data[8];
		} k = { { key, PUT_KEY, 0 }, key ^ 1, 0, 8, { 0 } };

		send_note(OP_PUT | PUT_RING, 5, &k, sizeof(k));
		send_note(OP_RING, 6, &k, sizeof(k)); /* ranges beside another message */
	}
	if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
		die("getrandom");
	for (int i = 0; i < 2000; i++) {
		size_t off = (size_t)rnd[i] * 100, len = 1 + (rnd[i + 1] | rnd[i + 2] << 8) % 512;
		struct note n = { .magic = NOTE_MAGIC, .op = i % 2 ? OP_PUT : OP_PUT | PUT_RING };

		memcpy(rnd + off, &n, sizeof(n) - 8); /* half of them look like PUTs */
		send_raw(rnd + off, len);
	}

	/* Still there? */
	if (!ping_echo(2))
		return 1;
	/*
	 * Messages longer than any the victim takes: the provider may drop our connection for
	 * them (tcp;ofi_rxm does), so whether a PING gets through afterwards is only reported;
	 * the test checks the victim's other connections.
	 */
	{
		uint8_t big[sizeof(struct note) + sizeof(struct put) + 500];

		memset(big, 0, sizeof(big));
		memcpy(big, &(struct note){ .magic = NOTE_MAGIC, .op = OP_PUT }, sizeof(struct note));
		if (!send_within(big, sizeof(big), 3000) || !send_within(rnd, sizeof(rnd), 3000)) {
			fprintf(stderr, "ofi-hostile: the victim dropped our connection for an "
					"overlong message\n");
			return 0;
		}
	}
	fprintf(stderr, "ofi-hostile: after overlong messages, %s\n",
		ping_echo(3) ? "the victim still answers us" : "the victim no longer hears us");
	return 0;
}
