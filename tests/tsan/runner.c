// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * runner.c - main() for the Criterion tests built against tests/tsan/criterion/criterion.h
 * (the ThreadSanitizer runs): each Test() runs, between its .init and .fini, in a forked child
 * of this single-threaded process, CRITERION_JOBS at a time, killed after its .timeout (or its
 * suite's, or 300 s).
 * A child that ThreadSanitizer saw race exits 66 and its test fails. The output mimics
 * Criterion's: [FAIL]/[SKIP] lines and the final "Synthesis" line scripts/test.sh counts.
 *
 *   test-xxx [--filter SUITE/NAME-GLOB]
 */
#include <fnmatch.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "criterion/criterion.h"

#define DEFAULT_TIMEOUT 300.0
#define TSAN_EXIT 66 /* ThreadSanitizer's exit code after a report */
#define SKIP_EXIT 77

extern const struct tcr_test __start_tcr_tests[], __stop_tcr_tests[];
extern const struct tcr_suite __start_tcr_suites[] __attribute__((weak));
extern const struct tcr_suite __stop_tcr_suites[] __attribute__((weak));

static const struct tcr_test *tcr_current; /* in a child: its test */
static pid_t tcr_pid;			    /* in a child: its pid */
static pthread_t tcr_thread;		    /* in a child: the thread that runs the test */
static int tcr_failed, tcr_in_fini;

/* The test's .fini, once, from the thread that runs the test and not from its own children. */
static void tcr_run_fini(void)
{
	if (!tcr_current || !tcr_current->fini || tcr_in_fini || getpid() != tcr_pid ||
	    !pthread_equal(pthread_self(), tcr_thread))
		return;
	tcr_in_fini = 1;
	tcr_current->fini();
}

static void tcr_vreport(const char *file, int line, const char *what, const char *fmt,
			va_list ap)
{
	char msg[1024];

	vsnprintf(msg, sizeof(msg), fmt, ap);
	fprintf(stderr, "[----] %s:%d: Assertion Failed (%s::%s)\n[----]   %s:%s\n", file, line,
		tcr_current ? tcr_current->suite : "?", tcr_current ? tcr_current->name : "?", what,
		msg);
}

void tcr_soft(const char *file, int line, const char *what, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	tcr_vreport(file, line, what, fmt, ap);
	va_end(ap);
	tcr_failed = 1;
}

void tcr_fatal(const char *file, int line, const char *what, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	tcr_vreport(file, line, what, fmt, ap);
	va_end(ap);
	tcr_run_fini();
	fflush(NULL);
	exit(1); /* exit, not _exit: ThreadSanitizer's exit code must still apply */
}

void tcr_skip(const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fprintf(stderr, "[SKIP] %s::%s:%s\n", tcr_current->suite, tcr_current->name, msg);
	tcr_run_fini();
	fflush(NULL);
	exit(SKIP_EXIT);
}

void tcr_log(const char *tag, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fprintf(stderr, "%s%s\n", tag, msg);
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double test_timeout(const struct tcr_test *t)
{
	if (t->timeout > 0)
		return t->timeout;
	for (const struct tcr_suite *s = __start_tcr_suites; s && s < __stop_tcr_suites; s++)
		if (!strcmp(s->name, t->suite) && s->timeout > 0)
			return s->timeout;
	return DEFAULT_TIMEOUT;
}

struct slot {
	pid_t pid;
	const struct tcr_test *t;
	double start, deadline;
	int timed_out;
};

int main(int argc, char **argv)
{
	const char *filter = NULL, *j = getenv("CRITERION_JOBS");
	int jobs = j && atoi(j) > 0 ? atoi(j) : 1, running = 0;
	int tested = 0, passing = 0, failing = 0, crashing = 0;
	const struct tcr_test *next = __start_tcr_tests;
	struct slot slots[16] = { { 0 } };

	for (int i = 1; i < argc; i++)
		if (!strcmp(argv[i], "--filter") && i + 1 < argc)
			filter = argv[++i];
		else if (!strncmp(argv[i], "--filter=", 9))
			filter = argv[i] + 9;
	if (jobs > 16)
		jobs = 16;
	setvbuf(stdout, NULL, _IOLBF, 0);
	while (next < __stop_tcr_tests || running) {
		/* Start tests while a slot is free. */
		while (next < __stop_tcr_tests && running < jobs) {
			const struct tcr_test *t = next++;
			char full[256];
			int k = 0;

			snprintf(full, sizeof(full), "%s/%s", t->suite, t->name);
			if (filter && fnmatch(filter, full, 0))
				continue;
			while (slots[k].pid)
				k++;
			fflush(NULL);
			slots[k].pid = fork();
			if (slots[k].pid < 0) {
				perror("fork");
				return 2;
			}
			if (slots[k].pid == 0) {
				tcr_current = t;
				tcr_pid = getpid();
				tcr_thread = pthread_self();
				if (t->init)
					t->init();
				t->fn();
				tcr_run_fini();
				fflush(NULL);
				exit(tcr_failed);
			}
			printf("[RUN ] %s::%s (pid %d)\n", t->suite, t->name, (int)slots[k].pid);
			slots[k].t = t;
			slots[k].start = now_s();
			slots[k].deadline = slots[k].start + test_timeout(t);
			slots[k].timed_out = 0;
			running++;
		}
		/* Collect finished ones; kill those past their timeout. */
		for (int k = 0; k < jobs; k++) {
			struct slot *s = &slots[k];
			int st;

			if (!s->pid)
				continue;
			if (waitpid(s->pid, &st, WNOHANG) != s->pid) {
				if (now_s() > s->deadline && !s->timed_out) {
					kill(s->pid, SIGKILL);
					s->timed_out = 1;
				}
				continue;
			}
			running--;
			s->pid = 0;
			if (WIFEXITED(st) && WEXITSTATUS(st) == SKIP_EXIT)
				continue;
			tested++;
			if (s->timed_out) {
				printf("[FAIL] %s::%s: Timed out. (%.2fs)\n", s->t->suite, s->t->name,
				       now_s() - s->start);
				failing++;
			} else if (WIFSIGNALED(st)) {
				printf("[----] %s::%s: CRASH! (signal %d)\n", s->t->suite, s->t->name,
				       WTERMSIG(st));
				crashing++;
			} else if (WEXITSTATUS(st) == TSAN_EXIT) {
				printf("[FAIL] %s::%s: ThreadSanitizer reported a data race (%.2fs)\n",
				       s->t->suite, s->t->name, now_s() - s->start);
				failing++;
			} else if (WEXITSTATUS(st)) {
				printf("[FAIL] %s::%s: (%.2fs)\n", s->t->suite, s->t->name,
				       now_s() - s->start);
				failing++;
			} else {
				printf("[PASS] %s::%s: (%.2fs)\n", s->t->suite, s->t->name,
				       now_s() - s->start);
				passing++;
			}
		}
		if (running)
			usleep(10000);
	}
	printf("[====] Synthesis: Tested: %d | Passing: %d | Failing: %d | Crashing: %d \n", tested,
	       passing, failing, crashing);
	return failing || crashing;
}
