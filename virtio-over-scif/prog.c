// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * prog.c - what the main()s of scif-virtiod (virtiod.c) and scif-virtio-card (card_main.c)
 * share: their common options, the log, the run directory and its status file, the signals.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>
#include <sys/signalfd.h>
#include <sys/stat.h>

#include "internal.h"

int vos_prog_option(struct vos_prog *p, int opt, const char *arg)
{
	unsigned long v;
	char *end;

	switch (opt) {
	case 'R':
		p->run_dir = arg;
		return 1;
	case 'P':
		v = strtoul(arg, &end, 10);
		if (*end || !v || v > 65535) {
			fprintf(stderr, "%s: bad port %s\n", p->name, arg);
			return -1;
		}
		p->port = (uint16_t)v;
		return 1;
	case 'S':
		p->use_syslog = true;
		return 1;
	case 'v':
		p->verbose++;
		return 1;
	}
	return 0;
}

void vos_prog_log(const struct vos_prog *p)
{
	vos_log_open(p->name, p->use_syslog, p->verbose ? LOG_DEBUG : LOG_INFO);
}

int vos_prog_rundir(struct vos_prog *p)
{
	if (mkdir(p->run_dir, 0755) < 0 && errno != EEXIST) {
		int r = -errno;

		vos_log(LOG_ERR, "%s: %s", p->run_dir, strerror(-r));
		return r;
	}
	snprintf(p->status_path, sizeof(p->status_path), "%s/status", p->run_dir);
	return 0;
}

int vos_prog_signals(struct vos_prog *p)
{
	sigset_t sigs;

	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGHUP);
	signal(SIGPIPE, SIG_IGN);
	if (pthread_sigmask(SIG_BLOCK, &sigs, NULL) ||
	    (p->sigfd = signalfd(-1, &sigs, SFD_CLOEXEC)) < 0) {
		int r = -errno;

		vos_log(LOG_ERR, "signalfd: %s", strerror(-r));
		return r;
	}
	return 0;
}

int vos_prog_signal(struct vos_prog *p)
{
	struct signalfd_siginfo si;

	if (read(p->sigfd, &si, sizeof(si)) != sizeof(si))
		return 0;
	if (si.ssi_signo != SIGHUP)
		vos_log(LOG_NOTICE, "signal %u: exiting", si.ssi_signo);
	return (int)si.ssi_signo;
}

void vos_prog_status(struct vos_prog *p, void (*fill)(FILE *out, void *arg), void *arg)
{
	int r = vos_write_atomic(p->status_path, fill, arg);

	if (r < 0)
		vos_log(LOG_ERR, "%s: %s", p->status_path, strerror(-r));
}

void vos_prog_end(struct vos_prog *p, bool served)
{
	if (served)
		unlink(p->status_path);
	if (p->sigfd >= 0)
		close(p->sigfd);
	p->sigfd = -1;
}
