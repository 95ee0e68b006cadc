// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * virtiod.c - main() of scif-virtiod, the host daemon of virtio over SCIF (node 0): options,
 * configuration, signals (SIGTERM/SIGINT exit, SIGHUP reloads) and the status file. The
 * framework itself is host.c; what this main() shares with the card's is prog.c.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include "internal.h"

struct daemon {
	struct vos_prog prog;
	const char *config_file;
	char **specs;
	size_t nspecs;
	int ready_fd;                /* write end of the pipe the parent waits on, or -1 */
};

static void usage(FILE *out)
{
	fprintf(out,
		"usage: scif-virtiod [-f|--foreground] [-c|--config FILE] [--run-dir DIR]\n"
		"                    [--port N] [--syslog] [-v|--verbose]\n"
		"                    [-d|--device CARD:TYPE[:key=val[,key=val...]]]...\n"
		"Serves SCIF cards virtio devices (TYPE net|block|console).\n");
}

static void fill_status(FILE *out, void *arg)
{
	vos_host_status(arg, out);
}

static void on_change(struct vos_host *h, void *arg)
{
	struct daemon *dm = arg;

	vos_prog_status(&dm->prog, fill_status, h);
}

static int load(struct daemon *dm, struct vos_config *c)
{
	char err[512];
	int r = vos_conf_load(c, dm->config_file, dm->specs, dm->nspecs, err, sizeof(err));

	if (r < 0)
		vos_log(LOG_ERR, "%s", err);
	return r;
}

static int on_signal(struct vos_host *h, void *arg)
{
	struct daemon *dm = arg;
	struct vos_config c;
	int sig = vos_prog_signal(&dm->prog);

	if (sig != SIGHUP)
		return sig != 0;
	vos_log(LOG_NOTICE, "SIGHUP: reloading the configuration");
	if (load(dm, &c) < 0) {
		vos_log(LOG_ERR, "keeping the old configuration");
		return 0;
	}
	if (vos_host_configure(h, &c) < 0)
		vos_log(LOG_ERR, "some devices of the new configuration failed to open");
	vos_conf_free(&c);
	return 0;
}

/* Without -f: fork; the parent exits 0 once the child serves, 1 if it failed to start. */
static int daemonize(struct daemon *dm)
{
	int p[2];
	pid_t pid;
	char ok;

	if (pipe(p) < 0)
		return -errno;
	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid > 0) {
		close(p[1]);
		_exit(read(p[0], &ok, 1) == 1 ? 0 : 1);
	}
	close(p[0]);
	dm->ready_fd = p[1];
	if (setsid() < 0 || chdir("/") < 0)
		return -errno;
	if (!freopen("/dev/null", "r", stdin) || !freopen("/dev/null", "w", stdout) ||
	    !freopen("/dev/null", "w", stderr))
		return -EIO;
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "foreground", no_argument, NULL, 'f' },
		{ "config", required_argument, NULL, 'c' },
		{ "device", required_argument, NULL, 'd' },
		VOS_PROG_LONGOPTS,
		{ NULL, 0, NULL, 0 },
	};
	struct daemon dm = {
		.prog = { .name = "scif-virtiod", .run_dir = "/run/scif", .port = VOS_DEFAULT_PORT,
			  .sigfd = -1 },
		.ready_fd = -1,
	};
	struct vos_host_opts o = { 0 };
	struct vos_host *h = NULL;
	struct vos_config conf = { 0 };
	bool foreground = false;
	int opt, r, ret = 1;

	dm.specs = calloc((size_t)argc, sizeof(char *));
	if (!dm.specs)
		return 1;
	while ((opt = getopt_long(argc, argv, "fc:vd:h", longopts, NULL)) != -1) {
		r = vos_prog_option(&dm.prog, opt, optarg);
		if (r < 0)
			goto out;
		if (r)
			continue;
		switch (opt) {
		case 'f':
			foreground = true;
			break;
		case 'c':
			dm.config_file = optarg;
			break;
		case 'd':
			dm.specs[dm.nspecs++] = optarg;
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
	/* stderr until we are a daemon: a broken config is reported where it was started. */
	vos_prog_log(&dm.prog);
	if (load(&dm, &conf) < 0 || vos_prog_rundir(&dm.prog) < 0)
		goto out;
	if (!foreground) {
		dm.prog.use_syslog = true;
		vos_prog_log(&dm.prog);
		if ((r = daemonize(&dm)) < 0) {
			vos_log(LOG_ERR, "cannot become a daemon: %s", strerror(-r));
			goto out;
		}
	}
	/* Signals go to the signalfd: block them before any thread exists. */
	if (vos_prog_signals(&dm.prog) < 0)
		goto out;
	o = (struct vos_host_opts){ .run_dir = dm.prog.run_dir, .port = dm.prog.port,
				    .on_change = on_change, .arg = &dm };
	r = vos_host_new(&h, &o);
	if (r < 0) {
		vos_log(LOG_ERR, "cannot listen on SCIF port %u: %s", o.port, strerror(-r));
		goto out;
	}
	if (vos_host_configure(h, &conf) < 0) {
		vos_log(LOG_ERR, "devices failed to open: not starting");
		goto out;
	}
	vos_log(LOG_NOTICE, "serving on SCIF port %u, %zu devices", o.port, conf.ndev);
	if (dm.ready_fd >= 0) {
		if (write(dm.ready_fd, "", 1) != 1)
			vos_log(LOG_WARNING, "cannot tell the parent we started");
		close(dm.ready_fd);
		dm.ready_fd = -1;
	}
	r = vos_host_run(h, dm.prog.sigfd, on_signal, &dm);
	if (r < 0)
		vos_log(LOG_ERR, "%s", strerror(-r));
	ret = r < 0;
out:
	vos_host_free(h);
	vos_prog_end(&dm.prog, h != NULL);
	vos_conf_free(&conf);
	free(dm.specs);
	return ret;
}
