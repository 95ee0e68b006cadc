// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * card_main.c - main() of scif-virtio-card, the card side of virtio over SCIF (node N):
 * options, signals (SIGTERM/SIGINT: BYE and a clean exit) and the status file. The framework
 * itself is card.c; what this main() shares with the daemon's is prog.c.
 */
#include <getopt.h>
#include <signal.h>
#include <string.h>
#include <syslog.h>

#include "internal.h"

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
	vos_prog_status(arg, fill_status, c);
}

static int on_signal(struct vos_card *c, void *arg)
{
	int sig = vos_prog_signal(arg);

	(void)c;
	return sig && sig != SIGHUP;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "opt", required_argument, NULL, 'o' },
		VOS_PROG_LONGOPTS,
		{ NULL, 0, NULL, 0 },
	};
	struct vos_prog prog = { .name = "scif-virtio-card", .run_dir = "/run/scif-card",
				 .port = VOS_DEFAULT_PORT, .sigfd = -1 };
	struct vos_card_opts o = { 0 };
	struct vos_config opts = { 0 };
	struct vos_card *c = NULL;
	int opt, r, ret = 1;
	char err[512];

	while ((opt = getopt_long(argc, argv, "vo:h", longopts, NULL)) != -1) {
		r = vos_prog_option(&prog, opt, optarg);
		if (r < 0)
			goto out;
		if (r)
			continue;
		switch (opt) {
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
	vos_prog_log(&prog);
	if (vos_prog_rundir(&prog) < 0 || vos_prog_signals(&prog) < 0)
		goto out;
	o = (struct vos_card_opts){ .run_dir = prog.run_dir, .port = prog.port, .opts = &opts,
				    .on_change = on_change, .arg = &prog };
	r = vos_card_new(&c, &o);
	if (r < 0) {
		vos_log(LOG_ERR, "%s", strerror(-r));
		goto out;
	}
	r = vos_card_run(c, prog.sigfd, on_signal, &prog);
	if (r < 0)
		vos_log(LOG_ERR, "%s", strerror(-r));
	ret = r < 0;
out:
	vos_card_free(c);
	vos_prog_end(&prog, c != NULL);
	vos_conf_free(&opts);
	return ret;
}
