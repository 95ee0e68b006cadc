// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * test-abi.c - conformance of the shared library's ABI: exported symbols, their version
 * node, the SONAME and the file name (spec 5; case C95).
 */
#include <limits.h>

#include "common.h"

/* Watchdog: a test that hangs fails after this long (its own .timeout wins). */
TestSuite(abi, .timeout = 120);

#ifndef SCIF_TOP_BUILDDIR
#define SCIF_TOP_BUILDDIR "."
#endif

static const char *const api_names[] = {
	"scif_open",	     "scif_close",	 "scif_bind",	     "scif_listen",
	"scif_connect",	     "scif_accept",	 "scif_send",	     "scif_recv",
	"scif_register",     "scif_unregister",	 "scif_mmap",	     "scif_munmap",
	"scif_readfrom",     "scif_writeto",	 "scif_vreadfrom",   "scif_vwriteto",
	"scif_fence_mark",   "scif_fence_wait",	 "scif_fence_signal", "scif_get_nodeIDs",
	"scif_get_fd",	     "scif_poll",
};
#define N_API ((int)(sizeof(api_names) / sizeof(api_names[0])))

static void lib_path(char *buf, size_t n, const char *file)
{
	const char *t = getenv("SCIF_TEST_TOP");

	snprintf(buf, n, "%s/libscif/.libs/%s", t && *t ? t : SCIF_TOP_BUILDDIR, file);
}

/* popen() a readelf command on the library; skips the test if readelf is missing. */
static FILE *readelf(const char *opts)
{
	char path[PATH_MAX], cmd[PATH_MAX + 64];
	FILE *f;

	if (system("command -v readelf >/dev/null 2>&1") != 0)
		cr_skip_test("readelf not found");
	lib_path(path, sizeof(path), "libscif.so.0");
	cr_assert_eq(access(path, R_OK), 0, "%s: %s", path, strerror(errno));
	snprintf(cmd, sizeof(cmd), "LC_ALL=C readelf %s '%s'", opts, path);
	f = popen(cmd, "r");
	cr_assert_not_null(f, "popen %s", cmd);
	return f;
}

Test(abi, exports_exactly_the_api_in_scif_0_0_C95, .timeout = 60)
{
	FILE *f = readelf("--dyn-syms -W");
	int seen[N_API] = { 0 }, version_node = 0, lines = 0;
	char line[1024];

	while (fgets(line, sizeof(line), f)) {
		char num[32], value[64], size[32], type[32], bind[32], vis[32], ndx[32], name[512];
		int k = sscanf(line, "%31s %63s %31s %31s %31s %31s %31s %511s", num, value, size,
			       type, bind, vis, ndx, name);
		char *at;
		int i;

		if (k < 7 || num[strlen(num) - 1] != ':' || !strcmp(num, "Num:"))
			continue;
		lines++;
		if (!strcmp(ndx, "UND") || k < 8)
			continue;
		/* The version node's own symbol (some readelf versions print it versioned). */
		if (!strcmp(name, "SCIF_0.0") || !strcmp(name, "SCIF_0.0@@SCIF_0.0")) {
			cr_expect_str_eq(ndx, "ABS");
			version_node++;
			continue;
		}
		at = strchr(name, '@');
		for (i = 0; i < N_API; i++)
			if (at && (size_t)(at - name) == strlen(api_names[i]) &&
			    !strncmp(name, api_names[i], (size_t)(at - name)))
				break;
		if (i == N_API) {
			cr_expect_fail("unexpected export %s (%s %s)", name, type, bind);
			continue;
		}
		cr_expect_str_eq(at, "@@SCIF_0.0", "%s: not the default version SCIF_0.0", name);
		cr_expect_str_eq(type, "FUNC", "%s", name);
		cr_expect_str_eq(bind, "GLOBAL", "%s", name);
		cr_expect_str_eq(vis, "DEFAULT", "%s", name);
		seen[i]++;
	}
	cr_expect_eq(pclose(f), 0, "readelf failed");
	cr_assert_gt(lines, 0, "no symbols read");
	for (int i = 0; i < N_API; i++)
		cr_expect_eq(seen[i], 1, "%s exported %d times", api_names[i], seen[i]);
	cr_expect_eq(version_node, 1, "version node SCIF_0.0 defined %d times", version_node);
}

Test(abi, soname_is_libscif_so_0_C95, .timeout = 60)
{
	FILE *f = readelf("-d -W");
	char line[1024];
	int sonames = 0;

	while (fgets(line, sizeof(line), f)) {
		char *p = strstr(line, "(SONAME)");

		if (!p)
			continue;
		sonames++;
		cr_expect_not_null(strstr(p, "[libscif.so.0]"), "SONAME line: %s", line);
	}
	cr_expect_eq(pclose(f), 0, "readelf failed");
	cr_expect_eq(sonames, 1);
}

Test(abi, real_file_is_libscif_so_0_0_1)
{
	char path[PATH_MAX], real[PATH_MAX];
	const char *base;

	lib_path(path, sizeof(path), "libscif.so.0");
	cr_assert_not_null(realpath(path, real), "%s: %s", path, strerror(errno));
	base = strrchr(real, '/');
	cr_expect_str_eq(base ? base + 1 : real, "libscif.so.0.0.1");
}
