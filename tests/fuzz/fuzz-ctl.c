// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * fuzz-ctl.c - libFuzzer target: the control messages of a connection after the handshake
 * and their replies (libscif/rma.c scif__rma_ctl and scif__ctl_call, window.c, mmap.c): the
 * peer's REGISTER, UNREGISTER, MAP_REF, MAP_UNREF, MARK, WAIT, SIG and REPLY, with and
 * without descriptors, and the peer's answers to the library's own requests.
 *
 * Per input the fuzzer makes an honest connection, then mixes: control messages it sends
 * (honest ones, and any field, length, opcode or descriptor changed: windows whose memfd
 * could shrink, is too short, is a pipe, or is missing), answers to the library's requests
 * (the right tag or another, any errno, any payload, or none: the library then times out),
 * and calls on the library's side, on the application thread: scif_register,
 * scif_unregister, the fences, the four RMA calls, scif_mmap and scif_munmap, over the
 * library's windows and the fuzzer's.
 *
 * Checked: no crash or sanitizer report (a write through a window the fuzzer registered
 * read-only faults); every call fails only with errnos the spec lists; the library's
 * messages are well-formed and its replies answer requests the fuzzer made; every call
 * returns once the fuzzer has hung up (FZ_HANG_MS); no descriptor is left over.
 *
 * Input: operations of one byte (low 4 bits: which; bit 4: a flag) with their operands.
 */
#include <fcntl.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fuzz.h"
#include "local.h"
#include "peer.h"
#include "window.h"

#define PAGE 4096u
#define LOCAL_PAGES 16 /* the library side's registrable memory, per input */
#define MAX_WIN 8
#define MAX_REQ 16
#define MAX_MAP 8

static struct fz_app app;
static scif_epd_t lep;
static uint16_t lport;
static uint8_t *vbuf; /* the library side's buffer for the v-calls */

/* A window one side registered: offset and length (and, for the fuzzer's, its memfd). */
struct win {
	uint64_t off, len;
	int fd;
	void *map;
};

/* A request the library sent and the fuzzer has not answered. */
struct req {
	uint32_t tag;
	uint16_t op;
};

struct peer {
	struct fzp_conn c;
	uint8_t *local;            /* LOCAL_PAGES pages the library side registers from */
	struct win lwin[MAX_WIN];  /* the library side's windows (scif_register results) */
	int nlwin;
	struct win rwin[MAX_WIN];  /* windows the fuzzer announced (REGISTER) */
	int nrwin;
	struct req reqs[MAX_REQ];  /* the library's requests not yet answered */
	int nreq;
	uint32_t tags_sent;        /* tags the fuzzer gave its messages so far */
	uint32_t asked[64];        /* tags of its last requests (the library answers those) */
	int nasked;
	uint32_t replies;          /* replies the library sent */
	uint32_t barrier;          /* the tag of the fuzzer's MARK waited for (0: none) */
	void *maps[MAX_MAP];       /* scif_mmap results (unmapped at the end) */
	size_t maplen[MAX_MAP];
	int nmap;
	int marks[4];
};

/* ---- the library side's calls (application thread) --------------------------------------- */

enum { C_REGISTER, C_UNREGISTER, C_MARK, C_WAIT, C_SIGNAL, C_RMA, C_MMAP, C_MUNMAP };

struct call {
	int kind;
	scif_epd_t ep;
	struct peer *p;
	uint64_t a, b, c, d; /* operands */
	int flags, sub;
	long ret;
};

static struct call call_buf;

static void app_call(void *arg)
{
	struct call *c = arg;
	struct peer *p = c->p;
	int mark, r;
	off_t o;
	void *m;

	switch (c->kind) {
	case C_REGISTER:
		o = scif_register(c->ep, p->local + c->a * PAGE, c->b * PAGE, (off_t)c->c, c->flags,
				  c->sub);
		fz_expect_errno("scif_register", (long)o,
				FZ_ERRNOS(EINVAL, ECONNRESET, ENOTCONN, ENODEV, EADDRINUSE, ENOMEM,
					  EFAULT, EAGAIN));
		if (o != -1 && ((uint64_t)o & (PAGE - 1)))
			fz_fail("scif_register returned offset %#llx", (unsigned long long)o);
		if (o != -1 && p->nlwin < MAX_WIN)
			p->lwin[p->nlwin++] = (struct win){ (uint64_t)o, c->b * PAGE, -1, NULL };
		c->ret = (long)o;
		break;
	case C_UNREGISTER:
		r = scif_unregister(c->ep, (off_t)c->a, (size_t)c->b);
		fz_expect_errno("scif_unregister", r,
				FZ_ERRNOS(EINVAL, ECONNRESET, ENOTCONN, ENODEV, ENXIO));
		c->ret = r;
		break;
	case C_MARK:
		r = scif_fence_mark(c->ep, c->flags, &mark);
		fz_expect_errno("scif_fence_mark", r,
				FZ_ERRNOS(ECONNRESET, ENOTCONN, ENODEV, EINVAL, ENOMEM));
		if (r == 0)
			p->marks[c->sub & 3] = mark;
		c->ret = r;
		break;
	case C_WAIT:
		r = scif_fence_wait(c->ep, (int)c->a);
		fz_expect_errno("scif_fence_wait", r,
				FZ_ERRNOS(ECONNRESET, ENOTCONN, ENODEV, EINVAL, ENOMEM, ETIMEDOUT,
					  EINTR));
		c->ret = r;
		break;
	case C_SIGNAL:
		r = scif_fence_signal(c->ep, (off_t)c->a, c->b, (off_t)c->c, c->d, c->flags);
		fz_expect_errno("scif_fence_signal", r,
				FZ_ERRNOS(ECONNRESET, ENOTCONN, ENODEV, EINVAL, ENXIO, EPERM,
					  ENOMEM));
		c->ret = r;
		break;
	case C_RMA:
		switch (c->sub & 3) {
		case 0:
			r = scif_readfrom(c->ep, (off_t)c->a, (size_t)c->b, (off_t)c->c, c->flags);
			break;
		case 1:
			r = scif_writeto(c->ep, (off_t)c->a, (size_t)c->b, (off_t)c->c, c->flags);
			break;
		case 2:
			r = scif_vreadfrom(c->ep, vbuf + c->a % PAGE, (size_t)c->b, (off_t)c->c,
					   c->flags);
			break;
		default:
			r = scif_vwriteto(c->ep, vbuf + c->a % PAGE, (size_t)c->b, (off_t)c->c,
					  c->flags);
			break;
		}
		fz_expect_errno("scif RMA", r,
				FZ_ERRNOS(ECONNRESET, ENOTCONN, ENODEV, EINVAL, ENXIO, EPERM, EACCES,
					  ENOMEM, EFAULT));
		c->ret = r;
		break;
	case C_MMAP:
		m = scif_mmap(NULL, (size_t)c->b, c->flags, 0, c->ep, (off_t)c->c);
		fz_expect_errno("scif_mmap", m == SCIF_MMAP_FAILED ? -1 : 0,
				FZ_ERRNOS(EINVAL, ENXIO, EPERM, EACCES, ENOTCONN, ECONNRESET, ENODEV,
					  ENOMEM));
		if (m != SCIF_MMAP_FAILED) {
			volatile uint8_t *b = m;

			if (c->flags & SCIF_PROT_READ)
				(void)b[0]; /* the page is there */
			if (p->nmap < MAX_MAP) {
				p->maps[p->nmap] = m;
				p->maplen[p->nmap++] = (size_t)c->b;
			} else {
				scif_munmap(m, (size_t)c->b);
			}
		}
		break;
	default:
		if (p->nmap) {
			p->nmap--;
			r = scif_munmap(p->maps[p->nmap], p->maplen[p->nmap]);
			fz_expect_errno("scif_munmap", r, FZ_ERRNOS(EINVAL));
		}
		break;
	}
}

/* ---- the fuzzer's side ------------------------------------------------------------------- */

/* Whether the fuzzer sent a request with this tag. */
static int peer_asked(const struct peer *p, uint32_t tag)
{
	for (int i = 0; i < p->nasked && i < 64; i++)
		if (p->asked[i] == tag)
			return 1;
	return 0;
}

/* A message the fuzzer sends: if the library answers its opcode, remember the tag. */
static void peer_sent(struct peer *p, const struct scif_ctl_msg *m)
{
	if (m->op >= SCIF_REGISTER && m->op <= SCIF_WAIT)
		p->asked[p->nasked++ % 64] = m->tag;
}

/* Read what the library sent: its requests (queued) and its replies (checked). */
static void peer_service(struct peer *p)
{
	for (;;) {
		struct scif_ctl_msg m;
		int fds[4], nfds, n = fzp_recv(p->c.link, &m, sizeof(m), fds, 4, &nfds, 0);

		if (n <= 0)
			return;
		fzp_close_fds(fds, nfds);
		if (n != (int)sizeof(m) || !fzp_valid_hdr(&m) || m.op < SCIF_REGISTER ||
		    m.op >= SCIF_CTL_MAX)
			fz_fail("the library sent a malformed control message (%d bytes, op %u)", n,
				n >= 8 ? m.op : 0);
		if (nfds != (m.op == SCIF_REGISTER))
			fz_fail("the library sent op %u with %d descriptors", m.op, nfds);
		if (m.op == SCIF_REPLY) {
			if (!peer_asked(p, m.tag))
				fz_fail("the library answered tag %u, which the fuzzer did not use",
					m.tag);
			if (m.err < 0)
				fz_fail("the library replied with errno %d", m.err);
			p->replies++;
			if (m.tag == p->barrier)
				p->barrier = 0;
			continue;
		}
		if (m.op == SCIF_SIG) /* no answer expected */
			continue;
		if (p->nreq < MAX_REQ)
			p->reqs[p->nreq++] = (struct req){ m.tag, m.op };
	}
}

/* Answer the oldest request of the library: honestly (0), or as the input says. */
static void peer_answer(struct peer *p, struct fz *f, int honest)
{
	static const int32_t errs[] = { 0, EINVAL, ENOMEM, ENXIO, EPERM, EADDRINUSE, ETIMEDOUT,
					ECONNRESET, -5, INT32_MIN, EINTR, 4095 };
	struct scif_ctl_msg m;
	uint8_t how = honest ? 0 : fz_u8(f);

	if (!p->nreq)
		return;
	fzp_msg(&m, SCIF_REPLY, 0, lport);
	m.tag = p->reqs[0].tag;
	if (how & 1)
		m.tag += fz_u8(f) - 128u;
	m.err = errs[(how >> 1) % (sizeof(errs) / sizeof(errs[0]))];
	if (how & 0x80)
		m.err = (int32_t)fz_u32(f);
	m.payload[0] = how & 0x40 ? fz_u64(f) : 0;
	fzp_send(p->c.link, &m, sizeof(m), NULL, 0);
	memmove(&p->reqs[0], &p->reqs[1], sizeof(p->reqs[0]) * (size_t)(p->nreq - 1));
	p->nreq--;
}

/*
 * A memfd for a window of @len bytes at offset @foff in it, of the kind the input says
 * (0: honest).
 */
static int peer_window_fd(struct peer *p, uint64_t foff, uint64_t len, int kind, void **map)
{
	int fd, sv[2];

	(void)p;
	*map = NULL;
	switch (kind) {
	case 0: /* honest: sealed, long enough */
	case 1: /* could shrink */
	case 2: /* too short */
		fd = memfd_create("fuzz-window", MFD_CLOEXEC | MFD_ALLOW_SEALING);
		if (fd < 0 || ftruncate(fd, (off_t)(kind == 2 ? (foff + len) / 2 : foff + len)))
			fz_fail("window memfd: %s", strerror(errno));
		if (kind != 1 && fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW))
			fz_fail("seal: %s", strerror(errno));
		if (kind == 0) {
			*map = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, (off_t)foff);
			if (*map == MAP_FAILED)
				fz_fail("mmap window: %s", strerror(errno));
		}
		return fd;
	default:
		if (pipe2(sv, O_CLOEXEC))
			fz_fail("pipe: %s", strerror(errno));
		close(sv[1]);
		return sv[0];
	}
}

/* A control message from the fuzzer: an honest one of the kind the input says, then lies. */
static void peer_message(struct peer *p, struct fz *f)
{
	static const uint16_t ops[] = { SCIF_REGISTER, SCIF_UNREGISTER, SCIF_MAP_REF,
					SCIF_MAP_UNREF, SCIF_MARK, SCIF_WAIT, SCIF_SIG, SCIF_REPLY };
	struct scif_ctl_msg m;
	uint8_t kind = fz_u8(f), mask = fz_u8(f);
	int fds[3], nfd = 0, len = sizeof(m);
	uint8_t raw[128];
	void *map = NULL;
	uint64_t wlen, foff = 0;

	fzp_msg(&m, ops[kind % 8], 0, lport);
	m.tag = ++p->tags_sent;
	switch (m.op) {
	case SCIF_REGISTER:
		wlen = (1 + fz_u8(f) % 4) * (uint64_t)PAGE;
		m.payload[0] = (fz_u8(f) % 32) * (uint64_t)PAGE;
		m.payload[0] += fz_u8(f) & 1 ? SCIF_RAS_AUTO_BASE : 0;
		m.payload[1] = wlen;
		m.payload[2] = fz_u8(f) % 4; /* prot */
		m.payload[3] = 0;
		/* The window at an offset of its memfd: the offset travels in a handle trailer. */
		if (kind & 0x20)
			foff = (1 + fz_u8(f) % 4) * (uint64_t)PAGE;
		fds[nfd++] = peer_window_fd(p, foff, wlen, (kind >> 3) & 3, &map);
		if (map && p->nrwin < MAX_WIN) {
			p->rwin[p->nrwin++] = (struct win){ m.payload[0], wlen, -1, map };
			map = NULL;
		}
		if (map)
			munmap(map, wlen);
		break;
	case SCIF_UNREGISTER:
	case SCIF_MAP_REF:
	case SCIF_MAP_UNREF:
		if (p->nrwin && m.op == SCIF_UNREGISTER) {
			struct win *w = &p->rwin[fz_u8(f) % p->nrwin];

			m.payload[0] = w->off;
			m.payload[1] = w->len;
		} else if (p->nlwin) {
			struct win *w = &p->lwin[fz_u8(f) % p->nlwin];

			m.payload[0] = w->off;
			m.payload[1] = w->len;
		}
		break;
	case SCIF_WAIT:
		m.payload[0] = fz_u8(f);
		break;
	case SCIF_SIG:
		m.err = fz_u8(f) % 4 * 0x10; /* SCIF_SIGNAL_LOCAL/REMOTE */
		m.payload[0] = p->nrwin ? p->rwin[0].off : 0;
		m.payload[1] = fz_u64(f);
		m.payload[2] = p->nlwin ? p->lwin[0].off : 0;
		m.payload[3] = fz_u64(f);
		break;
	case SCIF_REPLY: /* to nothing the library asked */
		m.tag = fz_u32(f);
		break;
	}
	if (mask & 1)
		m.magic = fz_u32(f);
	if (mask & 2)
		m.version = fz_u16(f);
	if (mask & 4)
		m.op = (uint16_t)(fz_u8(f) % (SCIF_CTL_MAX + 2));
	if (mask & 8)
		for (int i = 0; i < 4; i++)
			m.payload[i] = fz_u8(f) & 1 ? fz_u64(f) : m.payload[i] + fz_u8(f) * PAGE;
	if (mask & 16)
		m.err = (int32_t)fz_u32(f);
	if (mask & 32) { /* no descriptor, or one more */
		if (fz_u8(f) & 1) {
			fzp_close_fds(fds, nfd);
			nfd = 0;
		} else {
			fds[nfd++] = peer_window_fd(p, 0, PAGE, fz_u8(f) % 4, &map);
			if (map)
				munmap(map, PAGE);
		}
	}
	memcpy(raw, &m, sizeof(m));
	if (foff && nfd == 1) { /* local.h: one entry, for the one descriptor */
		struct local_fh_wire t = { .magic = LOCAL_FH_MAGIC, .flags = LOCAL_FH_HAS_FD,
					   .word = { foff } };

		memcpy(raw + sizeof(m), &t, sizeof(t));
		len += (int)sizeof(t);
	}
	if (mask & 64) {
		len = fz_u8(f) % sizeof(raw);
		if (len > (int)sizeof(m))
			fz_bytes(f, raw + sizeof(m), (size_t)len - sizeof(m));
	}
	peer_sent(p, &m);
	fzp_send(p->c.link, raw, (size_t)len, fds, nfd);
	fzp_close_fds(fds, nfd);
}

/* A MARK of its own, and everything the library sends until its reply (or disconnect). */
static void peer_barrier(struct peer *p, int answer)
{
	struct scif_ctl_msg m;
	uint64_t until = fz_now_ms() + 2000;

	fzp_msg(&m, SCIF_MARK, 0, lport);
	m.tag = ++p->tags_sent;
	p->barrier = m.tag;
	peer_sent(p, &m);
	if (fzp_send(p->c.link, &m, sizeof(m), NULL, 0))
		return;
	while (p->barrier) {
		struct scif_pollepd e = { .epd = p->c.ep, .events = SCIF_POLLIN };
		struct pollfd q = { .fd = p->c.link, .events = POLLIN };

		poll(&q, 1, 1);
		peer_service(p);
		while (answer && p->nreq)
			peer_answer(p, NULL, 1);
		if (scif_poll(&e, 1, 0) == 1 && (e.revents & SCIF_POLLHUP))
			return; /* it dropped the connection: fine */
		if (fz_now_ms() > until)
			fz_fail("no reply to MARK in 2 s on a live connection");
	}
}

/* Pick an offset inside a window of @list (or anything), for @len bytes. */
static uint64_t pick_off(struct fz *f, const struct win *list, int n, uint64_t *len)
{
	uint8_t how = fz_u8(f);

	*len = 1 + fz_u16(f) % (3 * PAGE);
	if (!n || (how & 0x80))
		return how & 0x40 ? fz_u64(f) : (uint64_t)fz_u16(f) * PAGE;
	const struct win *w = &list[how % n];
	uint64_t in = fz_u16(f) % w->len;

	if (*len > w->len - in && !(how & 0x20))
		*len = w->len - in;
	return w->off + (how & 0x10 ? in & ~7ull : in);
}

static void lib_call(struct peer *p, struct fz *f, int kind)
{
	struct call *c = &call_buf;
	uint64_t len;

	if (!fz_app_idle(&app, 0))
		return;
	*c = (struct call){ .kind = kind, .ep = p->c.ep, .p = p };
	switch (kind) {
	case C_REGISTER:
		c->a = fz_u8(f) % LOCAL_PAGES;
		c->b = 1 + fz_u8(f) % (LOCAL_PAGES - c->a);
		c->flags = fz_u8(f) % 4;
		c->sub = fz_u8(f) & 1 ? SCIF_MAP_FIXED : 0;
		c->c = (uint64_t)(fz_u8(f) % 32) * PAGE;
		c->c += fz_u8(f) & 1 ? SCIF_RAS_AUTO_BASE : 0;
		break;
	case C_UNREGISTER:
		c->a = pick_off(f, p->lwin, p->nlwin, &len);
		c->a &= ~(uint64_t)(PAGE - 1);
		c->b = (1 + fz_u8(f) % 4) * (uint64_t)PAGE;
		break;
	case C_MARK:
		c->flags = fz_u8(f) & 1 ? SCIF_FENCE_INIT_PEER : SCIF_FENCE_INIT_SELF;
		c->sub = fz_u8(f);
		break;
	case C_WAIT:
		c->a = (uint64_t)(int64_t)p->marks[fz_u8(f) & 3];
		break;
	case C_SIGNAL:
		c->a = pick_off(f, p->lwin, p->nlwin, &len) & ~3ull;
		c->b = fz_u64(f);
		c->c = pick_off(f, p->rwin, p->nrwin, &len) & ~3ull;
		c->d = fz_u64(f);
		c->flags = fz_u8(f) & 1 ? SCIF_FENCE_INIT_PEER : SCIF_FENCE_INIT_SELF;
		c->flags |= (1 + fz_u8(f) % 3) * SCIF_SIGNAL_LOCAL;
		break;
	case C_RMA:
		c->sub = fz_u8(f);
		c->c = pick_off(f, p->rwin, p->nrwin, &len);
		c->b = len;
		c->a = (c->sub & 3) < 2 ? pick_off(f, p->lwin, p->nlwin, &len) : fz_u16(f);
		c->flags = (int[]){ SCIF_RMA_SYNC, 0, SCIF_RMA_USECPU, SCIF_RMA_ORDERED,
				    SCIF_RMA_SYNC | SCIF_RMA_ORDERED }[fz_u8(f) % 5];
		break;
	case C_MMAP:
		c->c = pick_off(f, p->rwin, p->nrwin, &len) & ~(uint64_t)(PAGE - 1);
		c->b = (1 + fz_u8(f) % 4) * (uint64_t)PAGE;
		c->flags = fz_u8(f) % 4;
		break;
	}
	fz_app_call(&app, app_call, c, 2);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	setenv("SCIF_RING_SIZE", "4096", 1);
	setenv("SCIF_REQ_TIMEOUT_MS", "100", 1); /* a request the fuzzer leaves unanswered */
	fz_init();
	fz_app_start(&app);
	vbuf = mmap(NULL, 8 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (vbuf == MAP_FAILED)
		fz_fail("mmap: %s", strerror(errno));
	lport = (uint16_t)fz_listener(&lep, 4);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz in = { data, size }, *f = &in;
	struct peer *p = calloc(1, sizeof(*p));
	int fds0 = fz_fd_count();
	uint64_t until;

	if (!p)
		return 0;
	p->local = mmap(NULL, LOCAL_PAGES * PAGE, PROT_READ | PROT_WRITE,
			MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p->local == MAP_FAILED)
		fz_fail("mmap: %s", strerror(errno));
	if (fzp_conn_accept(&p->c, lep, lport, 4096, (uint32_t)getpid()))
		goto out;
	for (int ops = 0; f->n && ops < 64; ops++) {
		uint8_t op = fz_u8(f);

		switch (op & 15) { /* bit 4 and up: the operation's flags */
		case 0:
			peer_message(p, f);
			break;
		case 1:
			peer_service(p);
			break;
		case 2:
			peer_service(p);
			peer_answer(p, f, op & 16);
			break;
		case 3:
			lib_call(p, f, C_REGISTER);
			break;
		case 4:
			lib_call(p, f, C_UNREGISTER);
			break;
		case 5:
			lib_call(p, f, op & 16 ? C_WAIT : C_MARK);
			break;
		case 6:
			lib_call(p, f, C_SIGNAL);
			break;
		case 7:
		case 8:
			lib_call(p, f, C_RMA);
			break;
		case 9:
			lib_call(p, f, C_MMAP);
			break;
		case 10:
			lib_call(p, f, C_MUNMAP);
			break;
		case 11:
			peer_barrier(p, op & 16);
			break;
		case 12: /* the fuzzer's windows are its memory: it may write them any time */
			for (int i = 0; i < p->nrwin; i++)
				memset(p->rwin[i].map, op, (size_t)p->rwin[i].len);
			break;
		default:
			usleep(fz_u8(f) * 4u);
			break;
		}
	}
	/* Answer what the library still asks, honestly, until its call returns. */
	until = fz_now_ms() + 2000;
	while (!fz_app_idle(&app, 1) && fz_now_ms() < until) {
		peer_service(p);
		while (p->nreq)
			peer_answer(p, NULL, 1);
	}
	fzp_conn_hangup(&p->c);
	if (!fz_app_idle(&app, FZ_HANG_MS))
		fz_fail("a library call still blocked %d s after the peer hung up",
			FZ_HANG_MS / 1000);
	while (p->nmap) {
		p->nmap--;
		scif_munmap(p->maps[p->nmap], p->maplen[p->nmap]);
	}
	scif_close(p->c.ep);
out:
	for (int i = 0; i < p->nrwin; i++)
		munmap(p->rwin[i].map, (size_t)p->rwin[i].len);
	munmap(p->local, LOCAL_PAGES * PAGE);
	free(p);
	fz_expect_fds(fds0, "fuzz-ctl");
	return 0;
}
