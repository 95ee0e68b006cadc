// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * tests/fault/fault-scenario.c - a host/card program pair in one binary that uses every part
 * of the SCIF API and checks every result, for runs under tests/fault/libfault.so
 * (docs/testing.md, "Fault injection"). Only <scif.h> and libc.
 *
 * The host (no argument) starts the card (this program again, "card <fd>"), listens and
 * accepts; the card connects. Both then exchange small and 4 MiB blocking messages, poll,
 * register a window, writeto/readfrom (sync and async), vwriteto/vreadfrom, fence
 * mark/wait/signal, scif_mmap/munmap, verify every byte, unregister and close.
 *
 * Every call must succeed or fail with -1 and an errno the spec lists for it (the tables
 * below). After an allowed failure the program does what a real one would: it retries, or,
 * when the connection is gone (ECONNRESET) or a fault repeats forever ("N+" faults), it
 * gives up: it tells the other side over a plain socket (so that side does not take the
 * lost connection for a library bug), closes everything and still exits 0. At the end the
 * descriptors it has open must be those it started with (plus what the library keeps for the
 * process lifetime, see fd_check).
 *
 * Environment: SCIF_FAULT (host's fault, read by libfault), SCIF_FAULT_CARD (becomes the
 * card's SCIF_FAULT), SCIF_FAULT_COUNT_CARD (the card's SCIF_FAULT_COUNT), SCIF_FAULT_STRICT=1
 * (the fault is a transient one, EINTR or EAGAIN on a non-blocking socket: the library must
 * absorb it, so nothing may fail except with EINTR where the spec allows it, and nobody may
 * give up).
 *
 * Exit: 0 passed (perhaps after giving up cleanly), 1 a check failed (the message names the
 * side, the call, the errno and the fault), 3 the card stopped because the host failed.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <scif.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define PAGE 4096
#define WIN_PAGES 272 /* pages 16.. are for the transfer long enough for the DMA worker */
#define WORKER_PAGES 256 /* 1 MiB: the fence after it sleeps, however fast the worker */
#define BIG (4 << 20)
#define WAIT_MS 10000 /* the longest any step waits for the other side */

/* From libfault.so when it is preloaded (weak: the program also runs without it). */
extern unsigned long libfault_fired(void) __attribute__((weak, visibility("default")));
extern int libfault_persistent(void) __attribute__((weak, visibility("default")));

/*
 * The errors each call may report here. Argument and state errors cannot happen in this
 * program (every argument is valid, every call is made in the right state), so each list is
 * the part of the spec's list that a failing system call can cause.
 */
static const int E_OPEN[] = { ENOMEM, EMFILE, ENFILE, ENXIO, 0 };	      /* spec 3.1 */
static const int E_CLOSE[] = { 0 };     /* 3.2: EBADF only, for a descriptor that is not open */
/*
 * ENOMEM for any call that needs resources: the spec lists no resource errno for bind and
 * listen, but Intel's driver allocated in both and could fail with it; libscif reports every
 * shortage of memory, descriptors or locks there as ENOMEM (docs/architecture.md section 12).
 */
static const int E_BIND[] = { ENOSPC, ENOMEM, 0 };			      /* 3.3 */
static const int E_LISTEN[] = { ENOMEM, 0 }; /* 3.4: EINVAL, EISCONN are state errors */
static const int E_CONNECT[] = { ECONNREFUSED, ENODEV, ENOMEM, ENOBUFS, ENOSPC, 0 }; /* 3.5 */
static const int E_ACCEPT[] = { EMFILE, ENFILE, EINTR, ENODEV, ENOMEM, ENOBUFS, 0 }; /* 3.6 */
static const int E_SEND[] = { ENOMEM, ECONNRESET, EINTR, ENODEV, 0 };	      /* 3.7 */
static const int E_RECV[] = { ENOMEM, ECONNRESET, EINTR, ENODEV, 0 };	      /* 3.8 */
static const int E_REGISTER[] = { ECONNRESET, ENODEV, ENOMEM, EAGAIN, 0 };   /* 3.9 */
static const int E_UNREGISTER[] = { ECONNRESET, ENODEV, 0 };		      /* 3.10 */
static const int E_MMAP[] = { ECONNRESET, ENODEV, ENOMEM, 0 };		      /* 3.11 */
/* 3.12: scif_munmap is munmap(2), which fails with ENOMEM when a split exceeds the map limit. */
static const int E_MUNMAP[] = { ENOMEM, 0 };
static const int E_RMA[] = { ECONNRESET, ENODEV, ENOMEM, 0 };		      /* 3.13-3.16 */
static const int E_MARK[] = { ECONNRESET, ENODEV, ENOMEM, 0 };		      /* 3.17 */
static const int E_WAIT[] = { ECONNRESET, ENODEV, ENOMEM, ETIMEDOUT, EINTR, 0 }; /* 3.18 */
static const int E_SIGNAL[] = { ECONNRESET, ENODEV, ENOMEM, 0 };	      /* 3.19 */
/* 3.20: the errors of opening the device; ENXIO when the back-end is unusable (3.1 decision). */
static const int E_NODEIDS[] = { EMFILE, ENFILE, ENOMEM, ENXIO, 0 };
static const int E_POLL[] = { EINTR, ENOMEM, 0 };			      /* 3.22 */

/* Everything the program holds, so that failing and giving up can release it from anywhere. */
static struct {
	int host;	     /* 1: the host (listener, acceptor); 0: the card (connector) */
	int ctl;	     /* plain socket to the other side: port number and notes */
	pid_t card;	     /* host: the card's pid */
	int l, e;	     /* listener, connected endpoint (-1: none) */
	uint8_t *buf;	     /* the registered buffer, WIN_PAGES pages */
	uint8_t *big_tx, *big_rx;
	void *map[2];	     /* scif_mmap mappings */
	size_t maplen[2];
	char peer_note;	     /* 'G' the other side gave up, 'F' it failed */
	int strict;
	const char *fault;   /* this side's SCIF_FAULT, for messages */
	const char *other;   /* the other side's */
	const char *step;    /* what the program is doing, for messages */
	int nfd0;	     /* descriptors at start: fd numbers ... */
	char fd0[1024];	     /* ... as a bitmap */
} S = { .ctl = -1, .l = -1, .e = -1 };

static const char *side(void)
{
	return S.host ? "host" : "card";
}

static const char *ename(int e)
{
	static const struct { int e; const char *n; } t[] = {
		{ EPERM, "EPERM" },   { ENOENT, "ENOENT" },	{ EINTR, "EINTR" },
		{ ENXIO, "ENXIO" },   { EBADF, "EBADF" },	{ EAGAIN, "EAGAIN" },
		{ ENOMEM, "ENOMEM" }, { EACCES, "EACCES" },	{ EFAULT, "EFAULT" },
		{ EBUSY, "EBUSY" },   { ENODEV, "ENODEV" },	{ EINVAL, "EINVAL" },
		{ ENFILE, "ENFILE" }, { EMFILE, "EMFILE" },	{ ENOTTY, "ENOTTY" },
		{ ENOSPC, "ENOSPC" }, { EPIPE, "EPIPE" },	{ ENOLCK, "ENOLCK" },
		{ EOPNOTSUPP, "EOPNOTSUPP" }, { EADDRINUSE, "EADDRINUSE" },
		{ ECONNRESET, "ECONNRESET" }, { ENOBUFS, "ENOBUFS" }, { EISCONN, "EISCONN" },
		{ ENOTCONN, "ENOTCONN" },     { ETIMEDOUT, "ETIMEDOUT" },
		{ ECONNREFUSED, "ECONNREFUSED" }, { EINPROGRESS, "EINPROGRESS" },
		{ ECONNABORTED, "ECONNABORTED" },
	};

	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
		if (t[i].e == e)
			return t[i].n;
	return "E?";
}

static unsigned long fired(void)
{
	return libfault_fired ? libfault_fired() : 0;
}

/* Whether a fault repeats forever, here or on the other side (then either may give up). */
static int persistent(void)
{
	return (libfault_persistent && libfault_persistent()) || (S.other && strchr(S.other, '+'));
}

static void note(char c)
{
	if (S.ctl >= 0)
		(void)!send(S.ctl, &c, 1, MSG_NOSIGNAL | MSG_DONTWAIT);
}

/* Read what the other side said ('G' gave up, 'F' failed) without waiting. */
static char peer_note(void)
{
	char m[4];

	while (S.ctl >= 0) {
		ssize_t n = recv(S.ctl, m, sizeof(m), MSG_DONTWAIT);

		if (n <= 0)
			break;
		if (m[0] == 'G' || m[0] == 'F')
			S.peer_note = m[0];
	}
	return S.peer_note;
}

/* Release everything; failures here are ignored (the program is already leaving). */
static void release_all(void)
{
	for (int i = 0; i < 2; i++)
		if (S.map[i]) {
			scif_munmap(S.map[i], S.maplen[i]);
			S.map[i] = NULL;
		}
	if (S.e >= 0)
		scif_close(S.e);
	if (S.l >= 0)
		scif_close(S.l);
	S.e = S.l = -1;
}

/* Host: collect the card's exit status (after at most WAIT_MS, it is killed). */
static int wait_card(void)
{
	int st = 0;

	for (int ms = 0; S.card > 0; ms += 10) {
		pid_t r = waitpid(S.card, &st, WNOHANG);

		if (r == S.card)
			break;
		if (ms >= WAIT_MS) {
			fprintf(stderr, "fault-scenario[host]: the card did not exit; killing it\n");
			kill(S.card, SIGKILL);
			waitpid(S.card, &st, 0);
			S.card = 0;
			return 1;
		}
		usleep(10000);
	}
	S.card = 0;
	if (WIFSIGNALED(st)) {
		fprintf(stderr, "fault-scenario[card]: CRASH: killed by signal %d (%s)\n",
			WTERMSIG(st), strsignal(WTERMSIG(st)));
		return 1;
	}
	return WIFEXITED(st) ? WEXITSTATUS(st) : 1;
}

__attribute__((noreturn, format(printf, 1, 2))) static void fail(const char *fmt, ...)
{
	va_list ap;
	int st;

	fprintf(stderr, "fault-scenario[%s]: FAIL in %s: ", side(), S.step);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, " (SCIF_FAULT=%s, %lu fault(s) injected here)\n",
		S.fault ? S.fault : "none", fired());
	note('F');
	release_all();
	if (S.host) {
		st = wait_card();
		(void)st;
	}
	exit(1);
}

/* The other side failed: leave quietly; it reported the failure. */
__attribute__((noreturn)) static void quit_peer_failed(void)
{
	int st = 3;

	release_all();
	if (S.host)
		st = wait_card();
	exit(S.host ? (st ? st : 1) : 3);
}

/* Descriptors: the set at start, and at the end what is new (a leak, unless the library's). */
static void fd_snapshot(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *de;

	if (!d)
		fail("opendir /proc/self/fd: %s", strerror(errno));
	while ((de = readdir(d))) {
		int fd = atoi(de->d_name);

		if (de->d_name[0] != '.' && fd != dirfd(d) && fd < 8 * (int)sizeof(S.fd0))
			S.fd0[fd / 8] |= (char)(1 << (fd % 8));
	}
	closedir(d);
}

static void fd_check(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *de;
	char leaks[1024] = "";
	int nleak = 0, epolls = 0, windows = 0;

	if (!d)
		fail("opendir /proc/self/fd: %s", strerror(errno));
	while ((de = readdir(d))) {
		char path[64], target[256];
		int fd = atoi(de->d_name);
		ssize_t n;

		if (de->d_name[0] == '.' || fd == dirfd(d))
			continue;
		if (fd < 8 * (int)sizeof(S.fd0) && (S.fd0[fd / 8] & (1 << (fd % 8))))
			continue;
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
		n = readlink(path, target, sizeof(target) - 1);
		target[n > 0 ? n : 0] = 0;
		/*
		 * Kept by the library for the life of the process: the monitor thread's epoll
		 * instance, and the memfd that now backs the memory this program registered
		 * (docs/architecture.md: registered pages are moved into a memfd; the buffer stays
		 * backed by it after unregistering).
		 */
		if (!strcmp(target, "anon_inode:[eventpoll]") && !epolls++)
			continue;
		if (!strncmp(target, "/memfd:scif-window", 18) && !windows++)
			continue;
		nleak++;
		snprintf(leaks + strlen(leaks), sizeof(leaks) - strlen(leaks), " %d->%s", fd,
			 target);
	}
	closedir(d);
	if (nleak)
		fail("descriptor leak: %d descriptor(s) open at the end that were not at the start:%s",
		     nleak, leaks);
}

/* Leave cleanly after a failure the spec allows and a real program could not get past. */
__attribute__((noreturn)) static void give_up(const char *call, int err)
{
	int st = 0;

	if (S.strict && S.peer_note != 'G')
		fail("%s: %s under a transient fault: the program had to give up", call, ename(err));
	fprintf(stderr, "fault-scenario[%s]: gave up in %s: %s failed with %s (allowed)\n", side(),
		S.step, call, ename(err));
	note('G');
	release_all();
	if (S.buf)
		munmap(S.buf, WIN_PAGES * PAGE);
	S.buf = NULL;
	if (S.host) {
		st = wait_card();
		if (st)
			exit(st);
	}
	if (S.ctl >= 0)
		close(S.ctl);
	S.ctl = -1;
	fd_check();
	exit(0);
}

/*
 * Host: the card has exited. SIGCHLD is caught without SA_RESTART, so it interrupts a
 * blocking call (accept, recv, send, poll: EINTR is allowed there), as in a real server.
 */
static volatile sig_atomic_t card_exited;

static void on_sigchld(int sig)
{
	(void)sig;
	card_exited = 1;
}

static int in_list(const int *l, int e)
{
	for (; *l; l++)
		if (*l == e)
			return 1;
	return 0;
}

/*
 * A call returned its failure value with errno err. Checks err against the call's list and
 * decides what a real program does next: returns to retry; does not return when it gives up.
 */
static void failed(const char *call, int err, const int *ok, int *tries)
{
	char n = peer_note();

	/* Once the card has left, what the host's calls return no longer matters. */
	if (card_exited && n == 'F')
		quit_peer_failed();
	if (card_exited && n == 'G')
		give_up(call, err);
	if (!in_list(ok, err))
		fail("%s returned -1 with errno %s (%d), which the spec does not list for it", call,
		     ename(err), err);
	if (n == 'F')
		quit_peer_failed();
	if (n == 'G' && (err == ECONNRESET || err == ECONNREFUSED))
		give_up(call, err);
	if (err == ECONNRESET) {
		if (S.strict)
			fail("%s: connection lost (ECONNRESET) under a transient fault", call);
		give_up(call, err);
	}
	if (err == EINTR) { /* allowed here: a real program calls again */
		if (++*tries > 1000)
			fail("%s: EINTR %d times in a row", call, *tries);
		return;
	}
	if (S.strict)
		fail("%s failed with %s under a transient fault", call, ename(err));
	if (++*tries > (err == ECONNREFUSED ? 20 : 3)) {
		if (persistent())
			give_up(call, err);
		fail("%s keeps failing with %s after %d tries, although the fault was a one-shot "
		     "one (left unusable)", call, ename(err), *tries);
	}
	if (err == ECONNREFUSED)
		usleep(50000);
}

/* Data patterns: page p of side s (1 host, 2 card), byte i. */
static uint8_t pat(int s, int p, size_t i)
{
	return (uint8_t)(s * 131 + p * 17 + i * 7 + 1 + (i >> 8));
}

static int me(void)
{
	return S.host ? 1 : 2;
}

static int peer(void)
{
	return S.host ? 2 : 1;
}

/* ---- messaging ---- */

static void send_all(const void *b, int len)
{
	int done = 0, tries = 0;

	while (done < len) {
		int r = scif_send(S.e, (char *)b + done, len - done, SCIF_SEND_BLOCK);

		if (r == -1) {
			failed("scif_send", errno, E_SEND, &tries);
			continue;
		}
		/* 3.7: a blocking send returns len, or fewer bytes only when interrupted. */
		if (r <= 0 || r > len - done)
			fail("scif_send(%d bytes, SCIF_SEND_BLOCK) returned %d", len - done, r);
		done += r;
	}
}

static void recv_all(void *b, int len)
{
	int done = 0, tries = 0;

	while (done < len) {
		int r = scif_recv(S.e, (char *)b + done, len - done, SCIF_RECV_BLOCK);

		if (r == -1) {
			failed("scif_recv", errno, E_RECV, &tries);
			continue;
		}
		if (r <= 0 || r > len - done)
			fail("scif_recv(%d bytes, SCIF_RECV_BLOCK) returned %d", len - done, r);
		done += r;
	}
}

/* Both sides send one byte and wait for the other's: everything before it has happened. */
static void barrier(char c)
{
	char got = 0;

	send_all(&c, 1);
	recv_all(&got, 1);
	if (got != c)
		fail("barrier '%c': received 0x%02x", c, (unsigned char)got);
}

/* ---- the phases ---- */

static void host_setup(const char *self)
{
	int tries = 0, sv[2], r, port;
	uint16_t nodes[16], selfnode = 0xffff;
	char fdarg[16], *argv[4];
	posix_spawn_file_actions_t fa;
	const char *cf = getenv("SCIF_FAULT_CARD"), *cc = getenv("SCIF_FAULT_COUNT_CARD");

	/* The card gets its own fault (or none) and count file; libfault reads them at exec. */
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
		fail("socketpair: %s", strerror(errno));
	S.ctl = sv[0];
	if (fcntl(sv[1], F_SETFD, 0) < 0)
		fail("fcntl: %s", strerror(errno));
	snprintf(fdarg, sizeof(fdarg), "%d", sv[1]);
	argv[0] = (char *)self;
	argv[1] = "card";
	argv[2] = fdarg;
	argv[3] = NULL;
	if (cf && *cf)
		setenv("SCIF_FAULT", cf, 1);
	else
		unsetenv("SCIF_FAULT");
	if (cc && *cc)
		setenv("SCIF_FAULT_COUNT", cc, 1);
	else
		unsetenv("SCIF_FAULT_COUNT");
	/* Each side knows the other's fault (SCIF_FAULT_OTHER), to tell what may give up. */
	setenv("SCIF_FAULT_OTHER", S.fault ? S.fault : "", 1);
	{
		struct sigaction sa = { .sa_handler = on_sigchld }; /* no SA_RESTART */

		sigemptyset(&sa.sa_mask);
		sigaction(SIGCHLD, &sa, NULL);
	}
	posix_spawn_file_actions_init(&fa);
	r = posix_spawn(&S.card, self, &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	close(sv[1]);
	if (r)
		fail("posix_spawn %s: %s", self, strerror(r));

	S.step = "scif_get_nodeIDs";
	for (tries = 0;;) {
		r = scif_get_nodeIDs(nodes, 16, &selfnode);
		if (r >= 1)
			break;
		if (r != -1)
			fail("scif_get_nodeIDs returned %d", r);
		failed("scif_get_nodeIDs", errno, E_NODEIDS, &tries);
	}
	if (selfnode != 0 || nodes[0] != 0)
		fail("scif_get_nodeIDs: self %u, nodes[0] %u", selfnode, nodes[0]);

	S.step = "scif_open (listener)";
	for (tries = 0;;) {
		S.l = scif_open();
		if (S.l >= 0)
			break;
		if (S.l != -1)
			fail("scif_open returned %d", S.l);
		failed("scif_open", errno, E_OPEN, &tries);
	}
	S.step = "scif_bind";
	for (tries = 0;;) {
		port = scif_bind(S.l, 0);
		if (port > 0)
			break;
		if (port != -1)
			fail("scif_bind returned %d", port);
		failed("scif_bind", errno, E_BIND, &tries);
	}
	if (port < 1089)
		fail("scif_bind(0) returned port %d, outside the dynamic range", port);
	S.step = "scif_listen";
	for (tries = 0;;) {
		r = scif_listen(S.l, 4);
		if (r == 0)
			break;
		if (r != -1)
			fail("scif_listen returned %d", r);
		failed("scif_listen", errno, E_LISTEN, &tries);
	}
	/* Tell the card where to connect. */
	{
		char m[3] = { 'P', (char)(port & 0xff), (char)(port >> 8) };

		if (send(S.ctl, m, 3, MSG_NOSIGNAL) != 3)
			fail("ctl send: %s", strerror(errno));
	}
}

static void host_accept(void)
{
	struct scif_portID peer = { 0, 0 };
	struct scif_pollepd pe[2];
	int tries = 0, r, ptries = 0, flags = SCIF_ACCEPT_SYNC;
	const char *hf = S.fault, *cf = S.other;
	uint16_t port;

	/*
	 * A card that may give up for good (a repeating fault) can leave a request it withdraws
	 * right after poll() saw it; SCIF_ACCEPT_SYNC would then wait for the next request
	 * forever (3.6), so such runs poll and accept without it.
	 */
	if ((hf && strchr(hf, '+')) || (cf && strchr(cf, '+')))
		flags = 0;

	S.step = "scif_accept";
	for (;;) {
		/* Wait for a request, or for the card to give up (a real program has a timeout). */
		pe[0] = (struct scif_pollepd){ .epd = S.l, .events = SCIF_POLLIN };
		pe[1] = (struct scif_pollepd){ .epd = S.ctl, .events = SCIF_POLLIN };
		r = scif_poll(pe, 2, WAIT_MS);
		if (r == -1) {
			failed("scif_poll", errno, E_POLL, &ptries);
			continue;
		}
		if (r < 0 || r > 2)
			fail("scif_poll returned %d", r);
		if (r == 0)
			fail("no connection request within %d ms", WAIT_MS);
		if (pe[1].revents) {
			char n = peer_note();

			if (n == 'F')
				quit_peer_failed();
			if (n == 'G')
				give_up("scif_accept", ECONNREFUSED);
			fail("ctl: unexpected message or hang-up from the card");
		}
		if (pe[0].revents & ~SCIF_POLLIN)
			fail("scif_poll on the listener: revents 0x%x", pe[0].revents);
		r = scif_accept(S.l, &peer, &S.e, flags);
		if (r == 0)
			break;
		if (r != -1)
			fail("scif_accept returned %d", r);
		if (!flags && errno == EAGAIN) /* 3.6: the request went away meanwhile */
			continue;
		failed("scif_accept", errno, E_ACCEPT, &tries);
	}
	if (S.e < 0)
		fail("scif_accept: new endpoint %d", S.e);
	S.step = "scif_close (listener)";
	r = scif_close(S.l);
	S.l = -1;
	if (r != 0)
		fail("scif_close(listener) returned %d, errno %s", r, ename(errno));
	/* The card's first message carries the port its connect returned. */
	S.step = "hello";
	recv_all(&port, sizeof(port));
	if (peer.node != 0 || peer.port != port)
		fail("scif_accept: peer {%u, %u}, the card's connect returned port %u", peer.node,
		     peer.port, port);
}

static void card_connect(void)
{
	struct scif_portID dst = { 0, 0 };
	struct pollfd p = { .fd = S.ctl, .events = POLLIN };
	char m[4];
	int tries = 0, r;
	uint16_t port;

	S.step = "waiting for the host's port";
	if (poll(&p, 1, 2 * WAIT_MS) != 1)
		fail("no port from the host within %d ms", 2 * WAIT_MS);
	r = (int)recv(S.ctl, m, sizeof(m), 0);
	if (r == 1 && m[0] == 'F')
		quit_peer_failed();
	if (r == 1 && m[0] == 'G') {
		S.peer_note = 'G';
		give_up("(host gave up before listening)", 0);
	}
	if (r != 3 || m[0] != 'P')
		fail("ctl: bad message from the host (%d bytes)", r);
	dst.port = (uint16_t)((uint8_t)m[1] | (uint8_t)m[2] << 8);

	S.step = "scif_open";
	for (;;) {
		S.e = scif_open();
		if (S.e >= 0)
			break;
		if (S.e != -1)
			fail("scif_open returned %d", S.e);
		failed("scif_open", errno, E_OPEN, &tries);
	}
	S.step = "scif_connect";
	for (tries = 0;;) {
		r = scif_connect(S.e, &dst);
		if (r > 0)
			break;
		if (r != -1)
			fail("scif_connect returned %d", r);
		/* 3.5: after a failed connect the endpoint is BOUND and may connect again. */
		failed("scif_connect", errno, E_CONNECT, &tries);
	}
	port = (uint16_t)r;
	S.step = "hello";
	send_all(&port, sizeof(port));
}

static void phase_messages(void)
{
	uint8_t small[64], got[64];
	struct scif_pollepd pe;
	int tries = 0, r;
	char tok = 0;

	S.step = "small messages";
	for (size_t i = 0; i < sizeof(small); i++)
		small[i] = pat(me(), 100, i);
	if (S.host) {
		recv_all(got, sizeof(got));
		send_all(small, sizeof(small));
	} else {
		send_all(small, sizeof(small));
		recv_all(got, sizeof(got));
	}
	for (size_t i = 0; i < sizeof(got); i++)
		if (got[i] != pat(peer(), 100, i))
			fail("small message: byte %zu is 0x%02x, expected 0x%02x", i, got[i],
			     pat(peer(), 100, i));

	/* 4 MiB each way, blocking (the single-copy path above SCIF_CMA_MIN). */
	S.step = "4 MiB messages";
	for (size_t i = 0; i < BIG; i++)
		S.big_tx[i] = pat(me(), 200, i);
	memset(S.big_rx, 0, BIG);
	if (S.host) {
		recv_all(S.big_rx, BIG);
		send_all(S.big_tx, BIG);
	} else {
		send_all(S.big_tx, BIG);
		recv_all(S.big_rx, BIG);
	}
	for (size_t i = 0; i < BIG; i++)
		if (S.big_rx[i] != pat(peer(), 200, i))
			fail("4 MiB message: byte %zu is 0x%02x, expected 0x%02x", i, S.big_rx[i],
			     pat(peer(), 200, i));

	/* poll for the other side's token, then take it with a non-blocking recv. */
	S.step = "scif_poll";
	send_all(S.host ? "h" : "c", 1);
	for (;;) {
		pe = (struct scif_pollepd){ .epd = S.e, .events = SCIF_POLLIN };
		r = scif_poll(&pe, 1, WAIT_MS);
		if (r == -1) {
			failed("scif_poll", errno, E_POLL, &tries);
			continue;
		}
		if (r == 0)
			fail("scif_poll: no POLLIN within %d ms", WAIT_MS);
		if (r != 1)
			fail("scif_poll(1 entry) returned %d", r);
		if (pe.revents & (SCIF_POLLHUP | SCIF_POLLERR | SCIF_POLLNVAL)) {
			char n = peer_note();

			if (n == 'F')
				quit_peer_failed();
			if (n == 'G' || (!S.strict && (pe.revents & SCIF_POLLHUP)))
				give_up("scif_poll", ECONNRESET);
			fail("scif_poll: revents 0x%x", pe.revents);
		}
		r = scif_recv(S.e, &tok, 1, 0);
		if (r == 1)
			break;
		if (r == -1) {
			failed("scif_recv", errno, E_RECV, &tries);
			continue;
		}
		/* 3.22: POLLIN means at least one byte is readable. */
		fail("scif_poll reported POLLIN, then a non-blocking scif_recv(1 byte) returned %d", r);
	}
	if (tok != (S.host ? 'c' : 'h'))
		fail("poll token: got 0x%02x", (unsigned char)tok);
}

/* Wait until the 8 bytes at p hold v (a fence signal lands after the RMAs it covers). */
static void wait_u64(volatile uint64_t *p, uint64_t v, const char *what)
{
	for (int ms = 0; *p != v; ms++) {
		if (ms > WAIT_MS)
			fail("%s: 0x%llx after %d ms, expected 0x%llx", what,
			     (unsigned long long)*p, WAIT_MS, (unsigned long long)v);
		usleep(1000);
	}
}

static void check_page(const uint8_t *b, size_t n, int s, int p, const char *what)
{
	for (size_t i = 0; i < n; i++)
		if (b[i] != pat(s, p, i))
			fail("%s: byte %zu is 0x%02x, expected 0x%02x", what, i, b[i], pat(s, p, i));
}

#define LVAL(s) (0x1111000000000000ull | (uint64_t)(s))
#define RVAL(s) (0x2222000000000000ull | (uint64_t)(s))
#define VLEN 3000

/*
 * Window layout, pages: 0-3 written by the peer (0 SYNC writeto, 1 async writeto + fence
 * wait, 2 vwriteto of VLEN bytes, 3 async writeto + fence signal); 4-7 this side's pattern;
 * 8-9 readfrom targets (8 SYNC, 9 async + fence); 10 the peer's remote signal value; 11 the
 * local signal value; 12 written by the peer through scif_mmap.
 */
static void phase_rma(void)
{
	off_t lo = -1, ro = -1;
	int tries = 0, rc, mark = 0;
	uint8_t *vbuf, *vin;

	S.step = "scif_register";
	S.buf = mmap(NULL, WIN_PAGES * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
		     -1, 0);
	if (S.buf == MAP_FAILED) {
		S.buf = NULL;
		fail("mmap: %s", strerror(errno));
	}
	/*
	 * What Intel advises for registered memory of a program that forks (spec 3.9), and a
	 * lock, through the system call itself: ASan's mlock() does nothing, and then libscif
	 * would have no lock to carry over and the mlock fault runs nothing.
	 */
	madvise(S.buf, WIN_PAGES * PAGE, MADV_DONTFORK);
	(void)!syscall(SYS_mlock, S.buf, (size_t)(WIN_PAGES * PAGE));
	memset(S.buf, 0, WIN_PAGES * PAGE);
	for (int p = 4; p < 8; p++)
		for (size_t i = 0; i < PAGE; i++)
			S.buf[p * PAGE + i] = pat(me(), p, i);
	for (;;) {
		lo = scif_register(S.e, S.buf, WIN_PAGES * PAGE, 0,
				   SCIF_PROT_READ | SCIF_PROT_WRITE, 0);
		if (lo != SCIF_REGISTER_FAILED)
			break;
		failed("scif_register", errno, E_REGISTER, &tries);
	}
	if (lo < 0 || (lo & (PAGE - 1)))
		fail("scif_register returned offset %lld", (long long)lo);
	S.step = "exchanging offsets";
	send_all(&lo, sizeof(lo));
	recv_all(&ro, sizeof(ro));

#define RMA(call, ...)                                                                         \
	do {                                                                                   \
		S.step = #call;                                                                \
		for (tries = 0;;) {                                                            \
			rc = call(S.e, __VA_ARGS__);                                           \
			if (rc == 0)                                                           \
				break;                                                         \
			if (rc != -1)                                                          \
				fail(#call " returned %d", rc);                                \
			failed(#call, errno, E_RMA, &tries);                                   \
		}                                                                              \
	} while (0)
#define FENCE(call, list, ...)                                                                 \
	do {                                                                                   \
		S.step = #call;                                                                \
		for (tries = 0;;) {                                                            \
			rc = call(S.e, __VA_ARGS__);                                           \
			if (rc == 0)                                                           \
				break;                                                         \
			if (rc != -1)                                                          \
				fail(#call " returned %d", rc);                                \
			failed(#call, errno, list, &tries);                                    \
		}                                                                              \
	} while (0)

	RMA(scif_writeto, lo + 4 * PAGE, PAGE, ro + 0 * PAGE, SCIF_RMA_SYNC);
	RMA(scif_writeto, lo + 5 * PAGE, PAGE, ro + 1 * PAGE, 0);
	FENCE(scif_fence_mark, E_MARK, SCIF_FENCE_INIT_SELF, &mark);
	FENCE(scif_fence_wait, E_WAIT, mark);
	/* Longer than the library copies in the caller: the DMA worker's, and a fence that sleeps. */
	RMA(scif_writeto, lo + 16 * PAGE, WORKER_PAGES * PAGE, ro + 16 * PAGE, 0);
	FENCE(scif_fence_mark, E_MARK, SCIF_FENCE_INIT_SELF, &mark);
	FENCE(scif_fence_wait, E_WAIT, mark);
	RMA(scif_readfrom, lo + 8 * PAGE, PAGE, ro + 4 * PAGE, SCIF_RMA_SYNC);
	check_page(S.buf + 8 * PAGE, PAGE, peer(), 4, "scif_readfrom (SYNC) data");

	vbuf = malloc(VLEN + 16);
	vin = malloc(PAGE + 16);
	if (!vbuf || !vin)
		fail("malloc");
	for (size_t i = 0; i < VLEN; i++)
		vbuf[3 + i] = pat(me(), 2, i);
	RMA(scif_vwriteto, vbuf + 3, VLEN, ro + 2 * PAGE, SCIF_RMA_SYNC);
	memset(vin, 0, PAGE + 16);
	RMA(scif_vreadfrom, vin + 5, PAGE, ro + 5 * PAGE, SCIF_RMA_SYNC);
	check_page(vin + 5, PAGE, peer(), 5, "scif_vreadfrom data");
	free(vbuf);
	free(vin);

	/* An async write, then a signal that lands after it: locally and in the peer's window. */
	RMA(scif_writeto, lo + 6 * PAGE, PAGE, ro + 3 * PAGE, 0);
	FENCE(scif_fence_signal, E_SIGNAL, lo + 11 * PAGE, LVAL(me()), ro + 10 * PAGE, RVAL(me()),
	      SCIF_FENCE_INIT_SELF | SCIF_SIGNAL_LOCAL | SCIF_SIGNAL_REMOTE);
	S.step = "waiting for the local fence signal";
	wait_u64((volatile uint64_t *)(S.buf + 11 * PAGE), LVAL(me()), "local fence signal");

	/* Read the peer's pattern through a mapping; write page 12 through another. */
	S.step = "scif_mmap";
	for (tries = 0;;) {
		S.map[0] = scif_mmap(NULL, 2 * PAGE, SCIF_PROT_READ, 0, S.e, ro + 4 * PAGE);
		if (S.map[0] != SCIF_MMAP_FAILED)
			break;
		S.map[0] = NULL;
		failed("scif_mmap", errno, E_MMAP, &tries);
	}
	S.maplen[0] = 2 * PAGE;
	if ((uintptr_t)S.map[0] & (PAGE - 1))
		fail("scif_mmap returned %p", S.map[0]);
	check_page(S.map[0], PAGE, peer(), 4, "scif_mmap view (page 4)");
	check_page((uint8_t *)S.map[0] + PAGE, PAGE, peer(), 5, "scif_mmap view (page 5)");
	for (tries = 0;;) {
		S.map[1] = scif_mmap(NULL, PAGE, SCIF_PROT_READ | SCIF_PROT_WRITE, 0, S.e,
				     ro + 12 * PAGE);
		if (S.map[1] != SCIF_MMAP_FAILED)
			break;
		S.map[1] = NULL;
		failed("scif_mmap", errno, E_MMAP, &tries);
	}
	S.maplen[1] = PAGE;
	for (size_t i = 0; i < PAGE; i++)
		((uint8_t *)S.map[1])[i] = pat(me(), 12, i);
	S.step = "scif_munmap";
	for (int m = 0; m < 2; m++)
		for (tries = 0;;) {
			rc = scif_munmap(S.map[m], S.maplen[m]);
			if (rc == 0) {
				S.map[m] = NULL;
				break;
			}
			if (rc != -1)
				fail("scif_munmap returned %d", rc);
			failed("scif_munmap", errno, E_MUNMAP, &tries);
		}

	/* An async read covered by a mark. */
	RMA(scif_readfrom, lo + 9 * PAGE, PAGE, ro + 7 * PAGE, 0);
	FENCE(scif_fence_mark, E_MARK, SCIF_FENCE_INIT_SELF, &mark);
	FENCE(scif_fence_wait, E_WAIT, mark);
	check_page(S.buf + 9 * PAGE, PAGE, peer(), 7, "scif_readfrom (async, fenced) data");

	/* Both sides are done writing into each other: check what the peer wrote here. */
	S.step = "barrier D";
	barrier('D');
	S.step = "checking the window";
	check_page(S.buf + 0 * PAGE, PAGE, peer(), 4, "page 0 (peer's SYNC writeto)");
	check_page(S.buf + 1 * PAGE, PAGE, peer(), 5, "page 1 (peer's async writeto + fence wait)");
	check_page(S.buf + 2 * PAGE, VLEN, peer(), 2, "page 2 (peer's vwriteto)");
	wait_u64((volatile uint64_t *)(S.buf + 10 * PAGE), RVAL(peer()), "remote fence signal");
	check_page(S.buf + 3 * PAGE, PAGE, peer(), 6, "page 3 (peer's async writeto + signal)");
	check_page(S.buf + 12 * PAGE, PAGE, peer(), 12, "page 12 (peer's scif_mmap stores)");
	S.step = "barrier U";
	barrier('U');

	S.step = "scif_unregister";
	for (tries = 0;;) {
		rc = scif_unregister(S.e, lo, WIN_PAGES * PAGE);
		if (rc == 0)
			break;
		if (rc != -1)
			fail("scif_unregister returned %d", rc);
		failed("scif_unregister", errno, E_UNREGISTER, &tries);
	}
}

static void finish(void)
{
	int rc, st = 0;

	/* The last word: nobody closes while the other may still use the connection. */
	S.step = "barrier E";
	barrier('E');
	S.step = "scif_close";
	rc = scif_close(S.e);
	S.e = -1;
	if (rc != 0)
		fail("scif_close returned %d, errno %s", rc, ename(errno));
	(void)E_CLOSE;
	munlock(S.buf, WIN_PAGES * PAGE);
	munmap(S.buf, WIN_PAGES * PAGE);
	S.buf = NULL;
	if (S.host) {
		st = wait_card();
		if (st)
			exit(st);
	}
	close(S.ctl);
	S.ctl = -1;
	S.step = "descriptor check";
	fd_check();
}

int main(int argc, char **argv)
{
	S.host = !(argc == 3 && !strcmp(argv[1], "card"));
	S.fault = getenv("SCIF_FAULT") ? strdup(getenv("SCIF_FAULT")) : NULL;
	S.other = getenv(S.host ? "SCIF_FAULT_CARD" : "SCIF_FAULT_OTHER");
	S.other = S.other ? strdup(S.other) : NULL;
	S.strict = getenv("SCIF_FAULT_STRICT") && !strcmp(getenv("SCIF_FAULT_STRICT"), "1");
	S.step = "start";
	signal(SIGPIPE, SIG_IGN);
	fd_snapshot();
	S.big_tx = malloc(BIG);
	S.big_rx = malloc(BIG);
	if (!S.big_tx || !S.big_rx)
		fail("malloc");
	if (S.host) {
		host_setup(argv[0]);
		host_accept();
	} else {
		S.ctl = atoi(argv[2]);
		card_connect();
	}
	phase_messages();
	phase_rma();
	finish();
	free(S.big_tx);
	free(S.big_rx);
	return 0;
}
