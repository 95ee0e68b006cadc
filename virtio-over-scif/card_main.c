// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * card_main.c - main() of scif-virtio-card, the card side of virtio over SCIF (node N):
 * options, signals (SIGTERM/SIGINT: BYE and a clean exit) and the status file. The framework
 * itself is card.c.
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>
#include <sys/signalfd.h>
#include <sys/stat.h>

#include "internal.h"

struct frontend {
	char status_path[4096];
	int sigfd;
};

static void usage(FILE *out)
{
	fprintf(out,
		"usage: scif-virtio-card [--run-dir DIR] [--port N] [--syslog] [-v|--verbose]\n"
		"                        [-o|--opt DEV:key=val[,key=val...]]...\n"
		"Drives the virtio devices the host's scif-virtiod offers this SCIF node.\n");
}

static void fill_status(FILE *out, void *arg)
{
	vos_card_status(arg, out);
}

static void on_change(struct vos_card *c, void *arg)
{
	struct frontend *fe = arg;
	int r = vos_write_atomic(fe->status_path, fill_status, c);

	if (r < 0)
		vos_log(LOG_ERR, "%s: %s", fe->status_path, strerror(-r));
}

static int on_signal(struct vos_card *c, void *arg)
{
	struct frontend *fe = arg;
	struct signalfd_siginfo si;

	(void)c;
	if (read(fe->sigfd, &si, sizeof(si)) != sizeof(si) || si.ssi_signo == SIGHUP)
		return 0;
	vos_log(LOG_NOTICE, "signal %u: exiting", si.ssi_signo);
	return 1;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "run-dir", required_argument, NULL, 'R' },
		{ "port", required_argument, NULL, 'P' },
		{ "syslog", no_argument, NULL, 'S' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "opt", required_argument, NULL, 'o' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct frontend fe = { .sigfd = -1 };
	struct vos_card_opts o = { .run_dir = "/run/scif-card", .port = VOS_DEFAULT_PORT };
	struct vos_config opts = { 0 };
	struct vos_card *c = NULL;
	bool use_syslog = false;
	int verbose = 0, opt, r, ret = 1;
	char err[512], *end;
	sigset_t sigs;

	while ((opt = getopt_long(argc, argv, "vo:h", longopts, NULL)) != -1) {
		switch (opt) {
		case 'R':
			o.run_dir = optarg;
			break;
		case 'P': {
			unsigned long v = strtoul(optarg, &end, 10);

			if (*end || !v || v > 65535) {
				fprintf(stderr, "scif-virtio-card: bad port %s\n", optarg);
				goto out;
			}
			o.port = (uint16_t)v;
			break;
		}
		case 'S':
			use_syslog = true;
			break;
		case 'v':
			verbose++;
			break;
		case 'o':
			if (vos_conf_add_opt(&opts, optarg, err, sizeof(err)) < 0) {
				fprintf(stderr, "scif-virtio-card: %s\n", err);
				goto out;
			}
			break;
		case 'h':
			usage(stdout);
			ret = 0;
			goto out;
		default:
			usage(stderr);
			goto out;
		}
	}
	if (optind < argc) {
		usage(stderr);
		goto out;
	}
	vos_log_open("scif-virtio-card", use_syslog, verbose ? LOG_DEBUG : LOG_INFO);
	if (mkdir(o.run_dir, 0755) < 0 && errno != EEXIST) {
		vos_log(LOG_ERR, "%s: %s", o.run_dir, strerror(errno));
		goto out;
	}
	snprintf(fe.status_path, sizeof(fe.status_path), "%s/status", o.run_dir);
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGHUP);
	signal(SIGPIPE, SIG_IGN);
	if (pthread_sigmask(SIG_BLOCK, &sigs, NULL) ||
	    (fe.sigfd = signalfd(-1, &sigs, SFD_CLOEXEC)) < 0) {
		vos_log(LOG_ERR, "signalfd: %s", strerror(errno));
		goto out;
	}
	o.opts = &opts;
	o.on_change = on_change;
	o.arg = &fe;
	r = vos_card_new(&c, &o);
	if (r < 0) {
		vos_log(LOG_ERR, "%s", strerror(-r));
		goto out;
	}
	r = vos_card_run(c, fe.sigfd, on_signal, &fe);
	if (r < 0)
		vos_log(LOG_ERR, "%s", strerror(-r));
	ret = r < 0;
out:
	vos_card_free(c);
	if (c)
		unlink(fe.status_path);
	vos_conf_free(&opts);
	if (fe.sigfd >= 0)
		close(fe.sigfd);
	return ret;
}
