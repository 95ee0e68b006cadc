// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * test-bench.c - scif_bench as a user runs it: the default run (host plus the card copy it
 * spawns), the separate --server/--client pair, and bad options. What is checked is that
 * the tool works and that every point's data arrived intact (its JSON says so per point),
 * never how fast anything was: speed is for the benchmark itself.
 */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"

extern char **environ;

#define BENCH_TIMEOUT_MS 240000 /* sanitizer builds are several times slower */

static char bench_path[4096];

static void bench_init(void)
{
	const char *top = getenv("SCIF_TEST_TOP");

	snprintf(bench_path, sizeof(bench_path), "%s/tools/scif_bench/scif_bench",
		 top ? top : ".");
	cr_assert_eq(access(bench_path, X_OK), 0, "%s: not built", bench_path);
}

/* Start scif_bench with @args (after argv[0]) and SCIF_NODE=@node (-1: inherited);
 * its stdout and stderr go to @out. */
static pid_t bench_spawn(char *const args[], int node, const char *out)
{
	posix_spawn_file_actions_t fa;
	char *argv[32], *envp[256], nodebuf[32];
	int n = 0, e = 0;
	pid_t pid;

	argv[n++] = bench_path;
	for (int i = 0; args[i] && n < 31; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	if (node >= 0) {
		snprintf(nodebuf, sizeof(nodebuf), "SCIF_NODE=%d", node);
		envp[e++] = nodebuf;
	}
	for (char **v = environ; *v && e < 255; v++)
		if (node < 0 || strncmp(*v, "SCIF_NODE=", 10))
			envp[e++] = *v;
	envp[e] = NULL;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 1, out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	posix_spawn_file_actions_adddup2(&fa, 1, 2);
	cr_assert_eq(posix_spawn(&pid, bench_path, &fa, NULL, argv, envp), 0, "spawn %s",
		     bench_path);
	posix_spawn_file_actions_destroy(&fa);
	return pid;
}

/* Exit status of @pid (128+signal if killed); fails the test after BENCH_TIMEOUT_MS. */
static int bench_status(pid_t pid)
{
	int st;

	test_waitpid(pid, &st, BENCH_TIMEOUT_MS);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	char *buf;
	long n;

	cr_assert(f, "%s: %m", path);
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	rewind(f);
	buf = calloc(1, (size_t)n + 1);
	cr_assert(buf);
	cr_assert_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	return buf;
}

static int count(const char *hay, const char *needle)
{
	int n = 0;

	for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle))
		n++;
	return n;
}

/* The JSON has a point for @test at each of @sizes, and every point's data arrived intact. */
static void expect_points(const char *json, const char *test, const char *const sizes[])
{
	char key[128];

	for (int i = 0; sizes[i]; i++) {
		snprintf(key, sizeof(key), "{\"test\": \"%s\", \"size\": %s,", test, sizes[i]);
		cr_expect_eq(count(json, key), 1, "no single point %s at %s B", test, sizes[i]);
	}
}

static void dump_on_failure(int status, const char *log)
{
	if (status) {
		char *text = slurp(log);

		cr_log_error("scif_bench output:\n%s", text);
		free(text);
	}
}

TestSuite(bench, .init = bench_init, .timeout = 600);

Test(bench, spawned_run_delivers_every_point_intact)
{
	char json[] = "/tmp/test-bench-XXXXXX", log[64];
	char *args[] = { "--quick", "--tests", "lat,lat-nb,bw,mmap-lat,rma-write,rma-vread",
			 "--sizes", "1,8,4K,100K,1M", "--json", json, NULL };
	static const char *const sizes[] = { "1", "8", "4096", "102400", "1048576", NULL };
	int fd = mkstemp(json), status;
	char *text;

	cr_assert_geq(fd, 0);
	close(fd);
	snprintf(log, sizeof(log), "%s.log", json);
	status = bench_status(bench_spawn(args, -1, log));
	dump_on_failure(status, log);
	cr_assert_eq(status, 0, "scif_bench exited with %d", status);
	text = slurp(json);
	for (const char *const *t = (const char *const[]){ "lat", "lat-nb", "bw", "mmap-lat",
		     "rma-write/sync-cpu", "rma-write/async-dma", "rma-vread/sync-dma", NULL };
	     *t; t++)
		expect_points(text, *t, sizes);
	/* The baselines every ratio is taken against were measured too. */
	expect_points(text, "line-pingpong", sizes);
	expect_points(text, "memcpy", sizes);
	cr_expect_eq(count(text, "\"data_ok\": false"), 0, "a point delivered wrong data");
	cr_expect_gt(count(text, "\"data_ok\": true"), 0);
	free(text);
	unlink(json);
	unlink(log);
}

Test(bench, server_and_client_run_apart)
{
	char slog[] = "/tmp/test-bench-server-XXXXXX", clog[64], portbuf[16], nodebuf[16];
	uint16_t port = test_port();
	char *sargs[] = { "--server", "--port", portbuf, NULL };
	char *cargs[] = { "--client", "--node", nodebuf, "--port", portbuf, "--quick", "--tests",
			  "lat,bw,rma-read", "--sizes", "8,64K", NULL };
	int fd = mkstemp(slog), status;
	pid_t server;
	char *text;

	cr_assert_geq(fd, 0);
	close(fd);
	snprintf(clog, sizeof(clog), "%s.client", slog);
	snprintf(portbuf, sizeof(portbuf), "%u", port);
	snprintf(nodebuf, sizeof(nodebuf), "%d", 1);
	server = bench_spawn(sargs, 1, slog);
	/* The client retries a refused connection while the server comes up. */
	status = bench_status(bench_spawn(cargs, 0, clog));
	kill(server, SIGTERM);
	test_waitpid(server, &(int){ 0 }, 10000);
	dump_on_failure(status, clog);
	cr_assert_eq(status, 0, "scif_bench --client exited with %d", status);
	text = slurp(clog);
	cr_expect(strstr(text, "rma-read/sync-cpu"), "no RMA rows in the client's table");
	cr_expect_eq(count(text, "DATA MISMATCH"), 0);
	free(text);
	text = slurp(slog);
	cr_expect(strstr(text, "serving on node 1 port"), "server did not say where it serves");
	free(text);
	unlink(slog);
	unlink(clog);
}

Test(bench, bad_options_are_refused)
{
	char log[] = "/tmp/test-bench-bad-XXXXXX";
	char *const cases[][6] = {
		{ "--tests", "no-such-test", NULL },
		{ "--sizes", "banana", NULL },
		{ "--min", "1M", "--max", "1K", NULL },
		{ "--no-such-option", NULL },
	};
	int fd = mkstemp(log);

	cr_assert_geq(fd, 0);
	close(fd);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int status = bench_status(bench_spawn((char **)cases[i], -1, log));

		cr_expect(status != 0 && status < 128, "case %zu: exit status %d", i, status);
	}
	unlink(log);
}
