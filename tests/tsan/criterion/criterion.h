/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * criterion.h - a stand-in for Criterion's header, for the ThreadSanitizer runs only.
 *
 * Criterion cannot start under TSan: its sandbox maps an arena at random fixed addresses in
 * [0x2000_0000_0000, 0x7f00_0000_0000), where TSan keeps its shadow memory, and gives up
 * ("Could not initialize inheritable arena", Snaipe/Criterion#274). The TSan build therefore
 * compiles the unchanged test sources against this header (-I tests/tsan first) and links
 * tests/tsan/runner.c, which runs each test in a forked child of a single-threaded runner,
 * with its .timeout, and prints results the way Criterion does (the "Synthesis" line that
 * scripts/test.sh counts). Only what the multi-threaded tests use is provided.
 */
#ifndef SCIF_TSAN_CRITERION_H
#define SCIF_TSAN_CRITERION_H

/* Like the real header in /usr/include: the checks' comparisons (a == b of mixed signedness)
 * are the tests' business, not -Wsign-compare's. */
#pragma GCC system_header

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/**
 * struct tcr_test - one Test(), placed in the tcr_tests section.
 * @suite, @name: as in Test(suite, name).
 * @fn:      the body.
 * @init, @fini: run before and after the body, in the test's process; @fini also runs when
 *           a cr_assert fails in the test's main thread (as in Criterion).
 * @timeout: seconds (0: the suite's, else the runner's default).
 */
struct tcr_test {
	const char *suite;
	const char *name;
	void (*fn)(void);
	void (*init)(void);
	void (*fini)(void);
	double timeout;
};

/* struct tcr_suite - one TestSuite(): its default timeout. */
struct tcr_suite {
	const char *name;
	double timeout;
};

#define TCR_SECTION(s) __attribute__((used, section(s), aligned(sizeof(void *))))

#define Test(s, n, ...)                                                                   \
	static void tcr_fn_##s##_##n(void);                                               \
	static const struct tcr_test tcr_test_##s##_##n TCR_SECTION("tcr_tests") = {     \
		.suite = #s, .name = #n, .fn = tcr_fn_##s##_##n, __VA_ARGS__              \
	};                                                                                \
	static void tcr_fn_##s##_##n(void)

#define TestSuite(s, ...)                                                                 \
	static const struct tcr_suite tcr_suite_##s TCR_SECTION("tcr_suites") = {         \
		.name = #s, __VA_ARGS__                                                   \
	}

/* The checks: a failed cr_assert ends the test, a failed cr_expect marks it failed. */
void tcr_fatal(const char *file, int line, const char *what, const char *fmt, ...)
	__attribute__((format(printf, 4, 5), noreturn));
void tcr_soft(const char *file, int line, const char *what, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
void tcr_skip(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
void tcr_log(const char *tag, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define tcr_check_1(cond, what, ...)                                                      \
	do {                                                                              \
		if (!(cond))                                                              \
			tcr_fatal(__FILE__, __LINE__, what, " " __VA_ARGS__);             \
	} while (0)
#define tcr_check_0(cond, what, ...)                                                      \
	do {                                                                              \
		if (!(cond))                                                              \
			tcr_soft(__FILE__, __LINE__, what, " " __VA_ARGS__);              \
	} while (0)
#define tcr_check(fatal, cond, what, ...) tcr_check_##fatal(cond, what, __VA_ARGS__)

#define cr_assert(c, ...) tcr_check(1, c, #c, __VA_ARGS__)
#define cr_expect(c, ...) tcr_check(0, c, #c, __VA_ARGS__)
#define cr_assert_not(c, ...) tcr_check(1, !(c), "!(" #c ")", __VA_ARGS__)
#define cr_expect_not(c, ...) tcr_check(0, !(c), "!(" #c ")", __VA_ARGS__)
#define cr_assert_eq(a, b, ...) tcr_check(1, (a) == (b), #a " == " #b, __VA_ARGS__)
#define cr_expect_eq(a, b, ...) tcr_check(0, (a) == (b), #a " == " #b, __VA_ARGS__)
#define cr_assert_neq(a, b, ...) tcr_check(1, (a) != (b), #a " != " #b, __VA_ARGS__)
#define cr_expect_neq(a, b, ...) tcr_check(0, (a) != (b), #a " != " #b, __VA_ARGS__)
#define cr_assert_lt(a, b, ...) tcr_check(1, (a) < (b), #a " < " #b, __VA_ARGS__)
#define cr_expect_lt(a, b, ...) tcr_check(0, (a) < (b), #a " < " #b, __VA_ARGS__)
#define cr_assert_leq(a, b, ...) tcr_check(1, (a) <= (b), #a " <= " #b, __VA_ARGS__)
#define cr_expect_leq(a, b, ...) tcr_check(0, (a) <= (b), #a " <= " #b, __VA_ARGS__)
#define cr_assert_gt(a, b, ...) tcr_check(1, (a) > (b), #a " > " #b, __VA_ARGS__)
#define cr_expect_gt(a, b, ...) tcr_check(0, (a) > (b), #a " > " #b, __VA_ARGS__)
#define cr_assert_geq(a, b, ...) tcr_check(1, (a) >= (b), #a " >= " #b, __VA_ARGS__)
#define cr_expect_geq(a, b, ...) tcr_check(0, (a) >= (b), #a " >= " #b, __VA_ARGS__)
#define cr_assert_null(p, ...) tcr_check(1, (p) == NULL, #p " == NULL", __VA_ARGS__)
#define cr_assert_not_null(p, ...) tcr_check(1, (p) != NULL, #p " != NULL", __VA_ARGS__)
#define cr_expect_not_null(p, ...) tcr_check(0, (p) != NULL, #p " != NULL", __VA_ARGS__)
#define cr_assert_arr_eq(a, b, n, ...) \
	tcr_check(1, !memcmp((a), (b), (n)), #a " == " #b " (" #n " bytes)", __VA_ARGS__)
#define cr_expect_arr_eq(a, b, n, ...) \
	tcr_check(0, !memcmp((a), (b), (n)), #a " == " #b " (" #n " bytes)", __VA_ARGS__)
#define cr_assert_str_eq(a, b, ...) tcr_check(1, !strcmp((a), (b)), #a " == " #b, __VA_ARGS__)
#define cr_expect_str_eq(a, b, ...) tcr_check(0, !strcmp((a), (b)), #a " == " #b, __VA_ARGS__)
#define cr_assert_fail(...) tcr_fatal(__FILE__, __LINE__, "fail", " " __VA_ARGS__)
#define cr_expect_fail(...) tcr_soft(__FILE__, __LINE__, "fail", " " __VA_ARGS__)
#define cr_skip_test(...) tcr_skip(" " __VA_ARGS__)

/* Messages, tagged like Criterion's; the format is not optional. */
#define cr_log_info(...) tcr_log("[----] ", __VA_ARGS__)
#define cr_log_warn(...) tcr_log("[WARN] ", __VA_ARGS__)
#define cr_log_error(...) tcr_log("[ERR ] ", __VA_ARGS__)

#endif /* SCIF_TSAN_CRITERION_H */
