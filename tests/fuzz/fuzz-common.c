// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * fuzz-common.c - process set-up, bounded checks and the application thread of the libFuzzer
 * targets (fuzz.h).
 */
#include <dirent.h>
#include <ftw.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "fuzz.h"
#include "peer.h"

static char fz_dir[256];

static int fz_rm(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	remove(path);
	return 0;
}

static void fz_cleanup(void)
{
	if (fz_dir[0])
		nftw(fz_dir, fz_rm, 16, FTW_DEPTH | FTW_PHYS);
}

void fz_init(void)
{
	static int done;
	const char *tmp = getenv("TMPDIR");
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	struct stat st;
	scif_epd_t l;
	int port;

	if (done)
		return;
	done = 1;
	/* Socket paths are short (108 bytes): a short private directory under /tmp. */
	if (!tmp || !*tmp || strlen(tmp) > 40)
		tmp = "/tmp";
	snprintf(fz_dir, sizeof(fz_dir), "%s/scif-fuzz-XXXXXX", tmp);
	if (!mkdtemp(fz_dir))
		fz_fail("mkdtemp %s: %s", fz_dir, strerror(errno));
	atexit(fz_cleanup);
	setenv("SCIF_RUN_DIR", fz_dir, 1);
	setenv("SCIF_NODE", "0", 1);
	setenv("SCIF_LOCAL_NODES", "2", 1);
	unsetenv("SCIF_DOMAIN");
	/* The library names listen sockets where peer.c connects: check it once. */
	l = scif_open();
	if (l < 0)
		fz_fail("scif_open: %s", strerror(errno));
	port = scif_bind(l, 0);
	if (port <= 0 || scif_listen(l, 1))
		fz_fail("bind/listen: %s", strerror(errno));
	fzp_path(path, sizeof(path), 0, (uint16_t)port);
	if (stat(path, &st) < 0 || !S_ISSOCK(st.st_mode))
		fz_fail("no listen socket at %s: the local fabric's names changed (update "
			"tests/fuzz/peer.c fzp_path)", path);
	scif_close(l);
}

uint64_t fz_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

int fz_fd_count(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	if (!d)
		return -1;
	while ((e = readdir(d)))
		n += e->d_name[0] != '.';
	closedir(d);
	return n - 1; /* the directory stream's own */
}

void fz_expect_fds(int before, const char *what)
{
	static int off = -1;
	uint64_t until = fz_now_ms() + 1000;
	int now;

	/* FUZZ_NO_FD_CHECK=1 looks past a known descriptor leak (docs/testing.md). */
	if (off < 0)
		off = getenv("FUZZ_NO_FD_CHECK") && atoi(getenv("FUZZ_NO_FD_CHECK"));
	if (off)
		return;
	while ((now = fz_fd_count()) > before && fz_now_ms() < until)
		usleep(1000);
	if (now > before) {
		char cmd[64];

		snprintf(cmd, sizeof(cmd), "ls -l /proc/%d/fd >&2", (int)getpid());
		if (system(cmd) < 0)
			perror("system");
		fz_fail("%s: %d descriptors left over (%d before, %d after)", what, now - before,
			before, now);
	}
}

void fz_expect_errno(const char *call, long ret, const int *allowed)
{
	int err = errno;

	if (ret != -1)
		return;
	for (const int *e = allowed; *e; e++)
		if (*e == err)
			return;
	fz_fail("%s failed with errno %d (%s), which the spec does not list for it", call, err,
		strerror(err));
}

/* ---- the application thread ----------------------------------------------------------- */

static void *fz_app_main(void *arg)
{
	struct fz_app *a = arg;

	pthread_mutex_lock(&a->lock);
	a->tid = (int)gettid();
	pthread_cond_broadcast(&a->cond);
	for (;;) {
		while (!a->fn && !a->stop)
			pthread_cond_wait(&a->cond, &a->lock);
		if (!a->fn)
			break;
		void (*fn)(void *) = a->fn;
		void *fa = a->arg;

		pthread_mutex_unlock(&a->lock);
		fn(fa);
		pthread_mutex_lock(&a->lock);
		a->fn = NULL;
		a->busy = 0;
		pthread_cond_broadcast(&a->cond);
	}
	pthread_mutex_unlock(&a->lock);
	return NULL;
}

void fz_app_start(struct fz_app *a)
{
	pthread_condattr_t ca;

	memset(a, 0, sizeof(*a));
	pthread_mutex_init(&a->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&a->cond, &ca);
	pthread_condattr_destroy(&ca);
	if (pthread_create(&a->th, NULL, fz_app_main, a))
		fz_fail("pthread_create: %s", strerror(errno));
	pthread_mutex_lock(&a->lock);
	while (!a->tid)
		pthread_cond_wait(&a->cond, &a->lock);
	pthread_mutex_unlock(&a->lock);
}

/* Wait (lock held) until no call runs or @ms pass; 1 if idle. */
static int fz_app_wait(struct fz_app *a, int ms)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	while (a->busy)
		if (pthread_cond_timedwait(&a->cond, &a->lock, &ts) == ETIMEDOUT)
			break;
	return !a->busy;
}

int fz_app_call(struct fz_app *a, void (*fn)(void *), void *arg, int wait_ms)
{
	int ret;

	pthread_mutex_lock(&a->lock);
	if (a->busy) {
		pthread_mutex_unlock(&a->lock);
		return -1;
	}
	a->fn = fn;
	a->arg = arg;
	a->busy = 1;
	pthread_cond_broadcast(&a->cond);
	ret = fz_app_wait(a, wait_ms);
	pthread_mutex_unlock(&a->lock);
	return ret;
}

int fz_app_sleeping(struct fz_app *a, int ms)
{
	uint64_t until = fz_now_ms() + (uint64_t)ms;
	char path[64], buf[64];

	snprintf(path, sizeof(path), "/proc/self/task/%d/syscall", a->tid);
	do {
		FILE *f = fopen(path, "re");
		long nr = -1;

		if (f && fgets(buf, sizeof(buf), f))
			nr = strtol(buf, NULL, 10);
		if (f)
			fclose(f);
		if (nr == SYS_poll || nr == SYS_ppoll)
			return 1;
		usleep(200);
	} while (fz_now_ms() < until);
	return 0;
}

int fz_app_idle(struct fz_app *a, int ms)
{
	int ret;

	pthread_mutex_lock(&a->lock);
	ret = fz_app_wait(a, ms);
	pthread_mutex_unlock(&a->lock);
	return ret;
}

int fz_listener(scif_epd_t *lep, int backlog)
{
	int port;

	*lep = scif_open();
	port = scif_bind(*lep, 0);
	if (*lep < 0 || port <= 0 || scif_listen(*lep, backlog))
		fz_fail("listener: %s", strerror(errno));
	return port;
}
