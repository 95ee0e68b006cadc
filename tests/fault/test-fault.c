// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * tests/fault/test-fault.c - the fault-injection driver (docs/testing.md, "Fault injection").
 * One test per wrapped libc function: it runs tests/fault/fault-scenario once with counting
 * on (SCIF_FAULT_COUNT), then, for the host and the card side, each errno that the function
 * can really give and each N (at most MAX_N of them, spread over the calls counted), runs the
 * scenario with that call failing (SCIF_FAULT="fn:N:ERR" through LD_PRELOAD=libfault.so),
 * plus a few runs where every call from N on fails ("fn:N+:ERR"). Every run must exit 0
 * within WATCHDOG_S seconds; a hung run is killed after its threads' stacks are dumped with
 * gdb (when there is one; SCIF_FAULT_GDB=0 turns that off).
 *
 * SCIF_FAULT_DIR overrides where libfault.so and fault-scenario are found,
 * SCIF_FAULT_MAX_N the number of N per function, side and errno.
 */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef FAULT_DIR
#error "FAULT_DIR (the build directory of tests/fault) must be defined"
#endif

#define WATCHDOG_S 20
#ifdef __SANITIZE_ADDRESS__
#define MAX_N_DEFAULT 8 /* ASan runs are slower: fewer N per function */
#else
#define MAX_N_DEFAULT 40
#endif

static const char *fault_dir(void)
{
	const char *d = getenv("SCIF_FAULT_DIR");

	return d && *d ? d : FAULT_DIR;
}

static int max_n(void)
{
	const char *v = getenv("SCIF_FAULT_MAX_N");

	return v && atoi(v) > 0 ? atoi(v) : MAX_N_DEFAULT;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/*
 * Transient faults: EINTR, and EAGAIN of a non-blocking sendmsg (the link's buffer is full)
 * or of a futex wait. The library must absorb them; the scenario runs with SCIF_FAULT_STRICT=1 and
 * nothing may fail except with EINTR where the spec allows it. Every other fault is a
 * resource failure: calls may fail with the spec's errors, connections may end cleanly.
 */
static int transient(const char *fn, const char *err)
{
	static const char *const sock[] = { "sendmsg", "futex_wait", NULL };

	if (!strcmp(err, "EINTR"))
		return 1;
	if (strcmp(err, "EAGAIN"))
		return 0;
	for (int i = 0; sock[i]; i++)
		if (!strcmp(fn, sock[i]))
			return 1;
	return 0;
}

/* Stack dumps of every process of group pg (the scenario's host and card) into log. */
static void dump_stacks(pid_t pg, const char *log)
{
	const char *g = getenv("SCIF_FAULT_GDB");
	DIR *d;
	struct dirent *de;

	if ((g && !strcmp(g, "0")) || access("/usr/bin/gdb", X_OK))
		return;
	d = opendir("/proc");
	if (!d)
		return;
	while ((de = readdir(d))) {
		char path[64], buf[512], cmd[1024], *p;
		int pid = atoi(de->d_name), grp = 0;
		FILE *f;

		if (pid <= 0)
			continue;
		snprintf(path, sizeof(path), "/proc/%d/stat", pid);
		f = fopen(path, "r");
		if (!f)
			continue;
		if (fgets(buf, sizeof(buf), f) && (p = strrchr(buf, ')')))
			sscanf(p + 2, "%*c %*d %d", &grp);
		fclose(f);
		if (grp != pg)
			continue;
		snprintf(cmd, sizeof(cmd),
			 "(echo '--- stacks of pid %d:'; timeout 30 gdb -p %d -batch -nx "
			 "-ex 'thread apply all bt' 2>&1 | grep -E '^(Thread|#)') >> '%s' 2>&1",
			 pid, pid, log);
		if (system(cmd) < 0)
			break;
	}
	closedir(d);
}

enum outcome { RUN_OK, RUN_FAIL, RUN_CRASH, RUN_HANG };

/*
 * Run the scenario once with the given environment additions (NULL-terminated "K=V" list);
 * its output goes to log. Returns the outcome; *status gets the exit code or signal.
 */
static enum outcome run_scenario(char *const *env, const char *log, int *status)
{
	char prog[512], lib[512];
	pid_t pid;
	int st = 0;
	double t0 = now_s();

	snprintf(prog, sizeof(prog), "%s/fault-scenario", fault_dir());
	snprintf(lib, sizeof(lib), "%s/libfault.so", fault_dir());
	pid = fork();
	if (pid < 0)
		return RUN_FAIL;
	if (pid == 0) {
		int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);

		setpgid(0, 0);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
			close(fd);
		}
		setenv("LD_PRELOAD", lib, 1);
#ifdef __SANITIZE_ADDRESS__
		/*
		 * libfault must come before the ASan runtime, or ASan's interceptors would hide
		 * the wrapped functions from it; its calls then go on to ASan's interceptors.
		 */
		{
			const char *a = getenv("ASAN_OPTIONS");
			char opts[1024];

			snprintf(opts, sizeof(opts), "%s%sverify_asan_link_order=0", a ? a : "",
				 a && *a ? ":" : "");
			setenv("ASAN_OPTIONS", opts, 1);
		}
#endif
		/*
		 * A SCIF machine of the run's own: Criterion runs two functions' tests side by
		 * side, and the lowest free port a host listens on may be the one the other
		 * run's card, retrying after its host gave up, still connects to.
		 */
		{
			char rd[512], *slash;

			snprintf(rd, sizeof(rd), "%s", log);
			slash = strrchr(rd, '/');
			if (slash) {
				*slash = '\0';
				setenv("SCIF_RUN_DIR", rd, 1);
			}
		}
		/* A lost request costs 3 s, not 10 (README: SCIF_REQ_TIMEOUT_MS). */
		setenv("SCIF_REQ_TIMEOUT_MS", "3000", 0);
		for (int i = 0; env[i]; i++)
			putenv(env[i]);
		execl(prog, prog, (char *)NULL);
		_exit(127);
	}
	setpgid(pid, pid);
	for (;;) {
		pid_t r = waitpid(pid, &st, WNOHANG);

		if (r == pid)
			break;
		if (now_s() - t0 > WATCHDOG_S) {
			dump_stacks(pid, log);
			kill(-pid, SIGKILL);
			waitpid(pid, &st, 0);
			*status = WATCHDOG_S;
			return RUN_HANG;
		}
		usleep(2000);
	}
	/* The card is in the same group: make sure nothing is left behind. */
	kill(-pid, SIGKILL);
	if (WIFSIGNALED(st)) {
		*status = WTERMSIG(st);
		return RUN_CRASH;
	}
	*status = WEXITSTATUS(st);
	return *status ? RUN_FAIL : RUN_OK;
}

/* The calls of fn counted in a count file (0 if none). */
static unsigned long count_of(const char *file, const char *fn)
{
	char name[64];
	unsigned long c, found = 0;
	FILE *f = fopen(file, "r");

	if (!f)
		return 0;
	while (fscanf(f, "%63s %lu", name, &c) == 2)
		if (!strcmp(name, fn))
			found = c;
	fclose(f);
	return found;
}

/* The lines of a log that explain a failure, joined into buf. */
static void log_excerpt(const char *log, char *buf, size_t len)
{
	char line[512];
	FILE *f = fopen(log, "r");

	buf[0] = 0;
	if (!f)
		return;
	while (fgets(line, sizeof(line), f))
		if (strstr(line, "FAIL") || strstr(line, "CRASH") || strstr(line, "ERROR") ||
		    strstr(line, "libfault") || strstr(line, "stacks of") || line[0] == '#' ||
		    strstr(line, "Thread ") || strstr(line, "runtime error") ||
		    strstr(line, "gave up"))
			snprintf(buf + strlen(buf), len - strlen(buf), "      %s", line);
	fclose(f);
}

/* A function's test stops after this many hung runs (each costs WATCHDOG_S seconds). */
#define MAX_HANGS 3
/* ... and describes at most this many failed runs in detail. */
#define MAX_REPORTS 12

struct ctx {
	char dir[64];
	char log[128];
	int runs, fails, hangs;
};

/* Run with SCIF_FAULT (or SCIF_FAULT_CARD) = spec; report a failure under cr_log_error. */
static void one(struct ctx *c, int card, const char *spec, int strict)
{
	char fault[160], strictv[32], excerpt[4096];
	char *env[3] = { fault, strictv, NULL };
	int status = 0;
	enum outcome o;
	static const char *const what[] = { "ok", "failed", "crashed", "hung" };

	snprintf(fault, sizeof(fault), "%s=%s", card ? "SCIF_FAULT_CARD" : "SCIF_FAULT", spec);
	snprintf(strictv, sizeof(strictv), "SCIF_FAULT_STRICT=%d", strict);
	if (c->hangs >= MAX_HANGS)
		return;
	o = run_scenario(env, c->log, &status);
	c->runs++;
	if (o == RUN_OK)
		return;
	c->hangs += o == RUN_HANG;
	if (++c->fails > MAX_REPORTS)
		return;
	log_excerpt(c->log, excerpt, sizeof(excerpt));
	cr_log_error("%s fault %s%s: scenario %s (%s %d)\n%s"
		     "      reproduce: %s=%s SCIF_FAULT_STRICT=%d LD_PRELOAD=%s/libfault.so %s/fault-scenario",
		     card ? "card" : "host", spec, strict ? " (transient)" : "", what[o],
		     o == RUN_FAIL ? "exit" : o == RUN_CRASH ? "signal" : "after s", status,
		     excerpt, card ? "SCIF_FAULT_CARD" : "SCIF_FAULT", spec, strict, fault_dir(),
		     fault_dir());
}

/* The N to try among count calls: all of them, or max evenly spread ones. */
static int pick(unsigned long count, int max, unsigned long *out)
{
	int n = 0;

	if (count <= (unsigned long)max) {
		for (unsigned long i = 1; i <= count; i++)
			out[n++] = i;
		return n;
	}
	for (int i = 0; i < max; i++) {
		unsigned long v = 1 + (unsigned long)i * (count - 1) / (unsigned long)(max - 1);

		if (!n || out[n - 1] != v)
			out[n++] = v;
	}
	return n;
}

/* A fault-free run with counting on; returns the calls of fn on each side. */
static void baseline(struct ctx *c, const char *fn, unsigned long cnt[2])
{
	char host[160], card[160], excerpt[4096];
	char *env[3] = { host, card, NULL };
	int status = 0;
	enum outcome o;

	snprintf(host, sizeof(host), "SCIF_FAULT_COUNT=%s/count-host", c->dir);
	snprintf(card, sizeof(card), "SCIF_FAULT_COUNT_CARD=%s/count-card", c->dir);
	o = run_scenario(env, c->log, &status);
	log_excerpt(c->log, excerpt, sizeof(excerpt));
	cr_assert_eq(o, RUN_OK, "the scenario fails without any fault (outcome %d, status %d):\n%s",
		     o, status, excerpt);
	snprintf(host, sizeof(host), "%s/count-host", c->dir);
	snprintf(card, sizeof(card), "%s/count-card", c->dir);
	cnt[0] = count_of(host, fn);
	cnt[1] = count_of(card, fn);
	/* The interposer must see libscif's calls at all, or every run below proves nothing. */
	cr_assert(count_of(host, "socketpair") > 0 && count_of(card, "socketpair") > 0,
		  "libfault counted no socketpair() call of libscif: is it preloaded?");
}

static void run_function(const char *fn, const char *const *errs)
{
	struct ctx c = { .runs = 0 };
	unsigned long cnt[2], ns[256];
	double t0 = now_s();
	char spec[128];

	snprintf(c.dir, sizeof(c.dir), "/tmp/scif-fault-XXXXXX");
	cr_assert_not_null(mkdtemp(c.dir), "mkdtemp: %s", strerror(errno));
	snprintf(c.log, sizeof(c.log), "%s/log", c.dir);
	baseline(&c, fn, cnt);
	cr_log_info("%s: %lu calls on the host side, %lu on the card side\n", fn, cnt[0], cnt[1]);
	/* A function never called would make every run below a fault-free one. */
	cr_assert(cnt[0] || cnt[1], "%s: libscif made no call of it in the scenario: nothing to inject",
		  fn);
	for (int card = 0; card < 2; card++) {
		int n = pick(cnt[card], max_n(), ns);

		for (int e = 0; errs[e]; e++) {
			int strict = transient(fn, errs[e]);

			for (int i = 0; i < n; i++) {
				snprintf(spec, sizeof(spec), "%s:%lu:%s", fn, ns[i], errs[e]);
				one(&c, card, spec, strict);
			}
			/* Every call from N on fails: the first, one in the middle, the last. */
			if (!strict && cnt[card]) {
				unsigned long at[3] = { 1, cnt[card] / 2 + 1, cnt[card] };

				for (int i = 0; i < 3; i++) {
					if (i && at[i] == at[i - 1])
						continue;
					snprintf(spec, sizeof(spec), "%s:%lu+:%s", fn, at[i], errs[e]);
					one(&c, card, spec, 0);
				}
			}
		}
	}
	cr_log_info("%s: %d runs, %d failed, %.1f s\n", fn, c.runs, c.fails, now_s() - t0);
	if (c.hangs >= MAX_HANGS)
		cr_log_error("%s: stopped after %d hung runs\n", fn, c.hangs);
	if (c.fails > MAX_REPORTS)
		cr_log_error("%s: %d more failed runs not shown\n", fn, c.fails - MAX_REPORTS);
	{
		char cmd[128];

		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", c.dir);
		if (system(cmd) < 0)
			cr_log_warn("could not remove %s\n", c.dir);
	}
	cr_assert_eq(c.fails, 0, "%s: %d of %d fault runs failed (see the errors above)", fn,
		     c.fails, c.runs);
}

/* Whole-scenario sanity: it passes without faults, and libfault sees libscif's calls. */
Test(fault, baseline)
{
	struct ctx c = { .runs = 0 };
	unsigned long cnt[2];
	char cmd[128];

	snprintf(c.dir, sizeof(c.dir), "/tmp/scif-fault-XXXXXX");
	cr_assert_not_null(mkdtemp(c.dir));
	snprintf(c.log, sizeof(c.log), "%s/log", c.dir);
	baseline(&c, "mmap", cnt);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", c.dir);
	cr_expect(system(cmd) == 0);
}

/*
 * One test per function, with the errors it can really give in libscif's use of it. Left
 * out as impossible: EINTR of a non-blocking socket call; EAGAIN of a non-blocking read
 * (recv, recvmsg, accept4: it means "nothing there", which cannot be faked while something
 * is) and of a doorbell send (it means "full", so a wake-up is already pending). recv has
 * no realistic failure at all; listen, getsockopt, setsockopt and mlock2 are wrapped and
 * counted only (no realistic failure, or not called by the scenario).
 */
#define FAULT_TEST(fn, ...)                                                                    \
	Test(fault, fn)                                                                        \
	{                                                                                      \
		static const char *const errs[] = { __VA_ARGS__, NULL };                       \
		run_function(#fn, errs);                                                       \
	}

FAULT_TEST(mmap, "ENOMEM")
FAULT_TEST(munmap, "ENOMEM")
FAULT_TEST(mremap, "ENOMEM")
FAULT_TEST(mprotect, "ENOMEM")
/* ENOTTY: a kernel without PROCMAP_QUERY; registration reads smaps instead and succeeds. */
FAULT_TEST(ioctl, "ENOTTY", "ENOMEM")
FAULT_TEST(madvise, "ENOMEM", "EAGAIN")
FAULT_TEST(mlock, "ENOMEM", "EAGAIN", "EPERM")
FAULT_TEST(memfd_create, "EMFILE", "ENFILE", "ENOMEM")
FAULT_TEST(ftruncate, "ENOMEM")
/* fcntl(F_DUPFD): libscif no longer duplicates descriptors (windows share their backing's). */
FAULT_TEST(fstat, "ENOMEM")
FAULT_TEST(dup, "EMFILE")
FAULT_TEST(socket, "EMFILE", "ENFILE", "ENOMEM")
FAULT_TEST(socketpair, "EMFILE", "ENFILE", "ENOMEM")
FAULT_TEST(bind, "ENOSPC", "ENOMEM")
FAULT_TEST(connect, "EAGAIN", "ENOMEM")
FAULT_TEST(accept4, "EMFILE", "ENFILE", "ENOMEM")
FAULT_TEST(sendmsg, "EAGAIN", "ENOBUFS", "ENOMEM")
FAULT_TEST(recvmsg, "ENOMEM")
FAULT_TEST(send, "ENOBUFS")
FAULT_TEST(eventfd, "EMFILE", "ENFILE", "ENOMEM")
FAULT_TEST(epoll_create1, "EMFILE", "ENFILE", "ENOMEM")
FAULT_TEST(epoll_ctl, "ENOMEM", "ENOSPC")
FAULT_TEST(epoll_wait, "EINTR")
FAULT_TEST(poll, "EINTR", "ENOMEM")
FAULT_TEST(open, "EMFILE", "ENFILE", "ENOSPC", "ENOMEM")
FAULT_TEST(flock, "ENOLCK")
FAULT_TEST(mkdtemp, "ENOSPC", "ENOMEM")
FAULT_TEST(fopen, "EMFILE", "ENOMEM")
FAULT_TEST(malloc, "ENOMEM")
FAULT_TEST(calloc, "ENOMEM")
FAULT_TEST(pthread_create, "EAGAIN")
FAULT_TEST(process_vm_readv, "ENOMEM", "EPERM")
FAULT_TEST(process_vm_writev, "ENOMEM", "EPERM")
FAULT_TEST(futex_wait, "EINTR", "EAGAIN")
