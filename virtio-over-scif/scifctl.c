// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * scifctl.c - shows the state of virtio over SCIF from the status file that scif-virtiod
 * (or scif-virtio-card) keeps in its run directory: `scifctl status`, `scifctl cards`.
 * Exits 1 when the daemon is not running (no status file, or its pid is gone).
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

#define LINES_MAX 1024

static void usage(FILE *out)
{
	fprintf(out, "usage: scifctl [--run-dir DIR] status|cards\n"
		     "  status  the daemon, its cards and their devices (or a card frontend's\n"
		     "          devices, with the run dir of scif-virtio-card)\n"
		     "  cards   the cards the daemon knows and whether they are online\n"
		     "DIR is /run/scif unless given.\n");
}

/* Split "NAME TYPE STATE REST" of a device line; false if it is not one. */
static bool dev_fields(char *line, char **name, char **type, char **state, char **rest)
{
	char *save;

	*name = strtok_r(line, " ", &save);
	*type = strtok_r(NULL, " ", &save);
	*state = strtok_r(NULL, " ", &save);
	*rest = strtok_r(NULL, "", &save);
	if (!*rest)
		*rest = "";
	return *name && *type && *state;
}

static void print_devices(char **lines, size_t n, size_t from)
{
	bool header = false;

	for (size_t i = from; i < n; i++) {
		char *name, *type, *state, *rest;

		if (!strncmp(lines[i], "card ", 5) || !strncmp(lines[i], "daemon ", 7) ||
		    !strncmp(lines[i], "host ", 5))
			continue;
		if (!dev_fields(lines[i], &name, &type, &state, &rest))
			continue;
		if (!header)
			printf("%-16s %-8s %-6s %s\n", "DEVICE", "TYPE", "STATE", "DETAILS");
		header = true;
		printf("%-16s %-8s %-6s %s\n", name, type, state, rest);
	}
	if (!header)
		printf("no devices\n");
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "run-dir", required_argument, NULL, 'R' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *run_dir = "/run/scif", *cmd;
	char path[4096], *lines[LINES_MAX], *line = NULL;
	size_t cap = 0, n = 0;
	bool is_card;
	int opt, ret = 1;
	long pid = 0;
	unsigned port = 0;
	FILE *f;

	while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		if (opt == 'R') {
			run_dir = optarg;
		} else if (opt == 'h') {
			usage(stdout);
			return 0;
		} else {
			usage(stderr);
			return 2;
		}
	}
	if (optind + 1 != argc) {
		usage(stderr);
		return 2;
	}
	cmd = argv[optind];
	if (strcmp(cmd, "status") && strcmp(cmd, "cards")) {
		usage(stderr);
		return 2;
	}
	snprintf(path, sizeof(path), "%s/status", run_dir);
	f = fopen(path, "re");
	if (!f) {
		fprintf(stderr, "scifctl: not running (%s: %s)\n", path, strerror(errno));
		return 1;
	}
	while (n < LINES_MAX && getline(&line, &cap, f) >= 0) {
		line[strcspn(line, "\n")] = '\0';
		if (!(lines[n] = strdup(line)))
			break;
		n++;
	}
	fclose(f);
	free(line);
	is_card = n && !strncmp(lines[0], "host ", 5);
	if (!is_card && (n == 0 || sscanf(lines[0], "daemon pid=%ld port=%u", &pid, &port) != 2)) {
		fprintf(stderr, "scifctl: %s: not a status file\n", path);
		goto out;
	}
	if (!is_card && pid > 0 && kill((pid_t)pid, 0) < 0 && errno == ESRCH) {
		fprintf(stderr, "scifctl: not running (pid %ld in %s is gone)\n", pid, path);
		goto out;
	}
	if (is_card) {
		printf("card frontend, %s\n", lines[0]);
		if (!strcmp(cmd, "status"))
			print_devices(lines, n, 1);
		ret = 0;
		goto out;
	}
	if (!strcmp(cmd, "status"))
		printf("scif-virtiod pid %ld, SCIF port %u\n", pid, port);
	printf("%-6s %s\n", "CARD", "STATE");
	for (size_t i = 1; i < n; i++) {
		unsigned node;
		char state[16];

		if (!strncmp(lines[i], "card ", 5) &&
		    sscanf(lines[i] + 5, "%u %15s", &node, state) == 2)
			printf("%-6u %s\n", node, state);
	}
	if (!strcmp(cmd, "status")) {
		printf("\n");
		print_devices(lines, n, 1);
	}
	ret = 0;
out:
	for (size_t i = 0; i < n; i++)
		free(lines[i]);
	return ret;
}
