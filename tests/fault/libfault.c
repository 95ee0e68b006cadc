// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * tests/fault/libfault.c - an LD_PRELOAD interposer that makes chosen libc calls of libscif
 * fail, for the fault-injection tests (docs/testing.md, "Fault injection"). Built for tests only.
 *
 * Every wrapped function counts its calls, but only those made from inside libscif (the
 * caller's return address lies in libscif's code), so the test program's own calls and the
 * calls libc makes internally are neither counted nor failed. Environment:
 *
 *   SCIF_FAULT="fn:N:ERR[,fn:N:ERR...]"   fail the Nth call of fn with ERR (once)
 *   SCIF_FAULT="fn:N+:ERR"                 fail the Nth call of fn and every later one
 *   SCIF_FAULT_COUNT=<file>                at exit, append "fn count" lines (calls per function)
 *   SCIF_FAULT_QUIET=1                     do not log injected faults on stderr
 *
 * ERR is a name (ENOMEM, EMFILE, ENFILE, EINTR, EAGAIN, ENOSPC, ...) or a number. A failed
 * call returns what the real one returns on that error: -1 and errno, NULL and errno
 * (malloc, calloc, fopen, mkdtemp), MAP_FAILED and errno (mmap, mremap) or the error number
 * (pthread_create).
 *
 * The test program may ask, through weak references to libfault_fired() and
 * libfault_persistent(), whether a fault has been injected yet and whether it repeats.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <linux/futex.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#define EXPORT __attribute__((visibility("default")))

/*
 * The wrapped functions; the names are the ones SCIF_FAULT and the count file use. Two are
 * narrower than the libc function: fcntl_dupfd is fcntl(F_DUPFD, F_DUPFD_CLOEXEC) (the other
 * commands libscif uses cannot fail on a valid descriptor), futex_wait is syscall(SYS_futex,
 * FUTEX_WAIT...) (the only system call libscif makes through syscall() that may fail
 * spuriously).
 */
#define FAULT_FUNCS(X)                                                                         \
	X(mmap) X(munmap) X(mremap) X(mprotect) X(madvise) X(mlock) X(mlock2) X(ioctl)        \
	X(memfd_create) X(ftruncate) X(fcntl_dupfd) X(fstat) X(dup)                            \
	X(socket) X(socketpair) X(bind) X(listen) X(connect) X(accept4)                        \
	X(sendmsg) X(recvmsg) X(send) X(recv) X(getsockopt) X(setsockopt)                      \
	X(eventfd) X(epoll_create1) X(epoll_ctl) X(epoll_wait) X(poll)                         \
	X(open) X(flock) X(mkdtemp) X(fopen)                                                   \
	X(malloc) X(calloc) X(pthread_create) X(process_vm_readv) X(process_vm_writev)         \
	X(futex_wait)

#define X_ENUM(f) FN_##f,
enum { FAULT_FUNCS(X_ENUM) FN_COUNT };
#define X_NAME(f) #f,
static const char *const fn_names[FN_COUNT] = { FAULT_FUNCS(X_NAME) };

static const struct { const char *name; int err; } err_names[] = {
	{ "EPERM", EPERM },   { "ENOENT", ENOENT }, { "EINTR", EINTR },     { "EIO", EIO },
	{ "EBADF", EBADF },   { "EAGAIN", EAGAIN }, { "ENOMEM", ENOMEM },   { "EACCES", EACCES },
	{ "EFAULT", EFAULT }, { "EBUSY", EBUSY },   { "EEXIST", EEXIST },   { "EINVAL", EINVAL },
	{ "ENFILE", ENFILE }, { "EMFILE", EMFILE }, { "ENOSPC", ENOSPC },   { "ENOLCK", ENOLCK },
	{ "ENOBUFS", ENOBUFS }, { "ECONNREFUSED", ECONNREFUSED }, { "ECONNRESET", ECONNRESET },
	{ "EPIPE", EPIPE },   { "ENOTTY", ENOTTY },   { "ETIMEDOUT", ETIMEDOUT }, { "ECONNABORTED", ECONNABORTED },
};

#define MAX_RULES 8
static struct rule {
	int fn;
	unsigned long n;
	int persistent; /* "N+": the Nth call and every later one */
	int err;
} rules[MAX_RULES];
static int nrules;

static unsigned long counts[FN_COUNT];
static unsigned long fired;
static int any_persistent, quiet;
static const char *count_file;

/* The code of libscif (all executable PT_LOAD segments of the object named libscif.so*). */
#define MAX_SEGS 4
static struct { uintptr_t lo, hi; } scif_code[MAX_SEGS];
static int nsegs;
static uintptr_t scif_base;

static int find_scif(struct dl_phdr_info *info, size_t size, void *arg)
{
	const char *slash;

	(void)size;
	(void)arg;
	if (!info->dlpi_name || !*info->dlpi_name)
		return 0;
	slash = strrchr(info->dlpi_name, '/');
	if (strncmp(slash ? slash + 1 : info->dlpi_name, "libscif.so", 10))
		return 0;
	scif_base = info->dlpi_addr;
	for (int i = 0; i < info->dlpi_phnum && nsegs < MAX_SEGS; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];

		if (ph->p_type == PT_LOAD && (ph->p_flags & PF_X)) {
			scif_code[nsegs].lo = info->dlpi_addr + ph->p_vaddr;
			scif_code[nsegs].hi = scif_code[nsegs].lo + ph->p_memsz;
			nsegs++;
		}
	}
	return 1;
}

static int from_scif(const void *ra)
{
	uintptr_t a = (uintptr_t)ra;

	for (int i = 0; i < nsegs; i++)
		if (a >= scif_code[i].lo && a < scif_code[i].hi)
			return 1;
	return 0;
}

static int parse_err(const char *s)
{
	char *end;
	long v;

	for (size_t i = 0; i < sizeof(err_names) / sizeof(err_names[0]); i++)
		if (!strcmp(s, err_names[i].name))
			return err_names[i].err;
	v = strtol(s, &end, 10);
	return *s && !*end && v > 0 && v < 4096 ? (int)v : -1;
}

static const char *err_name(int err)
{
	for (size_t i = 0; i < sizeof(err_names) / sizeof(err_names[0]); i++)
		if (err_names[i].err == err)
			return err_names[i].name;
	return "?";
}

/* Messages go straight to fd 2 with write(2) (no stdio, no malloc). */
static void say(const char *fmt, ...)
{
	char buf[256];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n > (int)sizeof(buf) - 1)
		n = (int)sizeof(buf) - 1;
	if (n > 0 && write(2, buf, (size_t)n) < 0)
		return;
}

static void parse_rules(const char *spec)
{
	char buf[512], *save = NULL, *tok;

	snprintf(buf, sizeof(buf), "%s", spec);
	for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		char *c1 = strchr(tok, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL, *end;
		struct rule r = { .fn = -1 };

		if (!c1 || !c2 || nrules == MAX_RULES)
			goto bad;
		*c1 = *c2 = 0;
		for (int i = 0; i < FN_COUNT; i++)
			if (!strcmp(tok, fn_names[i]))
				r.fn = i;
		r.n = strtoul(c1 + 1, &end, 10);
		if (*end == '+') {
			r.persistent = 1;
			end++;
		}
		r.err = parse_err(c2 + 1);
		if (r.fn < 0 || r.n == 0 || *end || r.err <= 0)
			goto bad;
		any_persistent |= r.persistent;
		rules[nrules++] = r;
		continue;
bad:
		say("libfault: bad rule in SCIF_FAULT=\"%s\"\n", spec);
		_exit(98);
	}
}

static void write_counts(void)
{
	char line[64];
	int fd, n;

	if (!count_file || !nsegs)
		return;
	fd = (int)syscall(SYS_openat, AT_FDCWD, count_file, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC,
			  0644);
	if (fd < 0)
		return;
	for (int i = 0; i < FN_COUNT; i++) {
		unsigned long c = __atomic_load_n(&counts[i], __ATOMIC_RELAXED);

		if (!c)
			continue;
		n = snprintf(line, sizeof(line), "%s %lu\n", fn_names[i], c);
		if (write(fd, line, (size_t)n) < 0)
			break;
	}
	close(fd);
}

/*
 * Count a call of fn made from ra; returns the errno to inject, or 0 to call the real function.
 */
static int fault_check(int fn, const void *ra)
{
	unsigned long k;

	if (!from_scif(ra))
		return 0;
	k = __atomic_add_fetch(&counts[fn], 1, __ATOMIC_RELAXED);
	for (int i = 0; i < nrules; i++) {
		const struct rule *r = &rules[i];

		if (r->fn != fn || k < r->n || (k > r->n && !r->persistent))
			continue;
		__atomic_add_fetch(&fired, 1, __ATOMIC_RELAXED);
		if (!quiet && (k == r->n || !(k & (k - 1))))
			say("libfault[%d]: %s #%lu -> %s (libscif+0x%lx)\n", (int)getpid(), fn_names[fn],
			    k, err_name(r->err), (unsigned long)((uintptr_t)ra - scif_base));
		return r->err;
	}
	return 0;
}

/* Set by the wrappers before they return a failure. */
#define FAULT(fn) int fault_err_ = fault_check(FN_##fn, __builtin_return_address(0))
#define REAL(fn) static __typeof__(fn) *real_; if (!real_) real_ = resolve(#fn)

static void *resolve(const char *name)
{
	void *p = dlsym(RTLD_NEXT, name);

	if (!p) {
		say("libfault: %s not found\n", name);
		_exit(97);
	}
	return p;
}

/*
 * malloc and calloc: the real ones are the ASan runtime's when it is loaded (its allocator
 * must see every block it will free; weak references, bound at load time, because ASan's
 * own start-up allocates through these wrappers before any constructor could call dlsym),
 * and glibc's otherwise.
 */
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__interceptor_malloc(size_t) __attribute__((weak));
extern void *__interceptor_calloc(size_t, size_t) __attribute__((weak));

__attribute__((constructor)) static void libfault_init(void)
{
	const char *spec = getenv("SCIF_FAULT"), *q = getenv("SCIF_FAULT_QUIET");

	dl_iterate_phdr(find_scif, NULL);
	quiet = q && *q && strcmp(q, "0");
	count_file = getenv("SCIF_FAULT_COUNT");
	if (count_file && !*count_file)
		count_file = NULL;
	if (spec && *spec)
		parse_rules(spec);
}

__attribute__((destructor)) static void libfault_fini(void)
{
	write_counts();
}

/* For the test program: how many faults were injected so far; whether they repeat. */
EXPORT unsigned long libfault_fired(void)
{
	return __atomic_load_n(&fired, __ATOMIC_RELAXED);
}

EXPORT int libfault_persistent(void)
{
	return any_persistent;
}

EXPORT void *malloc(size_t n)
{
	FAULT(malloc);
	if (fault_err_) {
		errno = fault_err_;
		return NULL;
	}
	return __interceptor_malloc ? __interceptor_malloc(n) : __libc_malloc(n);
}

EXPORT void *calloc(size_t n, size_t m)
{
	FAULT(calloc);
	if (fault_err_) {
		errno = fault_err_;
		return NULL;
	}
	return __interceptor_calloc ? __interceptor_calloc(n, m) : __libc_calloc(n, m);
}

/* The common shape: int-returning functions that fail with -1 and errno. */
#define WRAP_INT(ret, fn, params, args)                                                        \
	EXPORT ret fn params                                                                   \
	{                                                                                      \
		REAL(fn);                                                                      \
		FAULT(fn);                                                                     \
		if (fault_err_) {                                                              \
			errno = fault_err_;                                                    \
			return -1;                                                             \
		}                                                                              \
		return real_ args;                                                             \
	}

WRAP_INT(int, munmap, (void *a, size_t l), (a, l))
WRAP_INT(int, mprotect, (void *a, size_t l, int p), (a, l, p))
WRAP_INT(int, madvise, (void *a, size_t l, int adv), (a, l, adv))
WRAP_INT(int, mlock, (const void *a, size_t l), (a, l))
WRAP_INT(int, mlock2, (const void *a, size_t l, unsigned int f), (a, l, f))
WRAP_INT(int, memfd_create, (const char *name, unsigned int f), (name, f))
WRAP_INT(int, ftruncate, (int fd, off_t l), (fd, l))
WRAP_INT(int, fstat, (int fd, struct stat *st), (fd, st))
WRAP_INT(int, dup, (int fd), (fd))
WRAP_INT(int, socket, (int d, int t, int p), (d, t, p))
WRAP_INT(int, socketpair, (int d, int t, int p, int sv[2]), (d, t, p, sv))
WRAP_INT(int, bind, (int fd, const struct sockaddr *sa, socklen_t l), (fd, sa, l))
WRAP_INT(int, listen, (int fd, int b), (fd, b))
WRAP_INT(int, connect, (int fd, const struct sockaddr *sa, socklen_t l), (fd, sa, l))
WRAP_INT(int, accept4, (int fd, struct sockaddr *sa, socklen_t *l, int f), (fd, sa, l, f))
WRAP_INT(ssize_t, sendmsg, (int fd, const struct msghdr *m, int f), (fd, m, f))
WRAP_INT(ssize_t, recvmsg, (int fd, struct msghdr *m, int f), (fd, m, f))
WRAP_INT(ssize_t, send, (int fd, const void *b, size_t n, int f), (fd, b, n, f))
WRAP_INT(ssize_t, recv, (int fd, void *b, size_t n, int f), (fd, b, n, f))
WRAP_INT(int, getsockopt, (int fd, int lv, int o, void *v, socklen_t *l), (fd, lv, o, v, l))
WRAP_INT(int, setsockopt, (int fd, int lv, int o, const void *v, socklen_t l), (fd, lv, o, v, l))
WRAP_INT(int, eventfd, (unsigned int v, int f), (v, f))
WRAP_INT(int, epoll_create1, (int f), (f))
WRAP_INT(int, epoll_ctl, (int ep, int op, int fd, struct epoll_event *ev), (ep, op, fd, ev))
WRAP_INT(int, epoll_wait, (int ep, struct epoll_event *ev, int n, int t), (ep, ev, n, t))
WRAP_INT(int, poll, (struct pollfd *p, nfds_t n, int t), (p, n, t))
WRAP_INT(int, flock, (int fd, int op), (fd, op))
WRAP_INT(ssize_t, process_vm_readv,
	 (pid_t pid, const struct iovec *l, unsigned long nl, const struct iovec *r,
	  unsigned long nr, unsigned long f),
	 (pid, l, nl, r, nr, f))
WRAP_INT(ssize_t, process_vm_writev,
	 (pid_t pid, const struct iovec *l, unsigned long nl, const struct iovec *r,
	  unsigned long nr, unsigned long f),
	 (pid, l, nl, r, nr, f))

EXPORT void *mmap(void *a, size_t l, int p, int f, int fd, off_t o)
{
	REAL(mmap);
	FAULT(mmap);
	if (fault_err_) {
		errno = fault_err_;
		return MAP_FAILED;
	}
	return real_(a, l, p, f, fd, o);
}

/* ioctl: libscif's only one is PROCMAP_QUERY on /proc/self/maps (ENOTTY before Linux 6.11). */
EXPORT int ioctl(int fd, unsigned long req, ...)
{
	void *arg;
	va_list ap;

	REAL(ioctl);
	FAULT(ioctl);
	va_start(ap, req);
	arg = va_arg(ap, void *);
	va_end(ap);
	if (fault_err_) {
		errno = fault_err_;
		return -1;
	}
	return real_(fd, req, arg);
}

EXPORT void *mremap(void *old, size_t ol, size_t nl, int f, ...)
{
	void *na = NULL;
	va_list ap;

	REAL(mremap);
	FAULT(mremap);
	if (f & MREMAP_FIXED) {
		va_start(ap, f);
		na = va_arg(ap, void *);
		va_end(ap);
	}
	if (fault_err_) {
		errno = fault_err_;
		return MAP_FAILED;
	}
	return real_(old, ol, nl, f, na);
}

EXPORT int fcntl(int fd, int cmd, ...)
{
	va_list ap;
	void *arg;

	REAL(fcntl);
	va_start(ap, cmd);
	arg = va_arg(ap, void *); /* every argument fcntl takes fits a register */
	va_end(ap);
	if (cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC) {
		FAULT(fcntl_dupfd);
		if (fault_err_) {
			errno = fault_err_;
			return -1;
		}
	}
	return real_(fd, cmd, arg);
}

EXPORT int open(const char *path, int flags, ...)
{
	mode_t mode = 0;
	va_list ap;

	REAL(open);
	FAULT(open);
	if (flags & (O_CREAT | __O_TMPFILE)) {
		va_start(ap, flags);
		mode = va_arg(ap, mode_t);
		va_end(ap);
	}
	if (fault_err_) {
		errno = fault_err_;
		return -1;
	}
	return real_(path, flags, mode);
}

EXPORT char *mkdtemp(char *tmpl)
{
	REAL(mkdtemp);
	FAULT(mkdtemp);
	if (fault_err_) {
		errno = fault_err_;
		return NULL;
	}
	return real_(tmpl);
}

EXPORT FILE *fopen(const char *path, const char *mode)
{
	REAL(fopen);
	FAULT(fopen);
	if (fault_err_) {
		errno = fault_err_;
		return NULL;
	}
	return real_(path, mode);
}

EXPORT int pthread_create(pthread_t *th, const pthread_attr_t *attr, void *(*fn)(void *), void *arg)
{
	REAL(pthread_create);
	FAULT(pthread_create);
	if (fault_err_)
		return fault_err_;
	return real_(th, attr, fn, arg);
}

/* Only futex waits are failed (a spurious EINTR or EAGAIN, which the kernel may give too). */
EXPORT long syscall(long nr, ...)
{
	long a[6];
	va_list ap;

	REAL(syscall);
	va_start(ap, nr);
	for (int i = 0; i < 6; i++)
		a[i] = va_arg(ap, long);
	va_end(ap);
	if (nr == SYS_futex && ((a[1] & FUTEX_CMD_MASK) == FUTEX_WAIT ||
				(a[1] & FUTEX_CMD_MASK) == FUTEX_WAIT_BITSET)) {
		FAULT(futex_wait);
		if (fault_err_) {
			errno = fault_err_;
			return -1;
		}
	}
	return real_(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
}
