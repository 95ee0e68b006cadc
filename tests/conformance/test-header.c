// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * test-header.c - conformance of the public header scif.h: types, layouts, constants, and
 * programs in C and C++ that include nothing else (spec 1.1-1.6; case C96).
 */
#include <stddef.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "common.h"

/* Watchdog: a test that hangs fails after this long (its own .timeout wins). */
TestSuite(header, .timeout = 300);

#ifndef SCIF_TOP_SRCDIR
#define SCIF_TOP_SRCDIR "."
#endif
#ifndef SCIF_TOP_BUILDDIR
#define SCIF_TOP_BUILDDIR "."
#endif
#ifndef SCIF_CC
#define SCIF_CC "cc"
#endif

/*
 * The program compiled by the tests. It uses only what scif.h must provide (itself and
 * through its includes): checks are compile-time where possible, the rest at run time.
 */
static const char prog_src[] =
	"#include <scif.h>\n"
	"#include <scif.h>\n"
	"#ifndef __SCIF_H__\n#error include guard\n#endif\n"
	"#ifndef MICACCESSAPI\n#error MICACCESSAPI\n#endif\n"
	/* Macros in Intel's header stay macros... */
	"#if !defined(SCIF_ACCEPT_SYNC) || !defined(SCIF_SEND_BLOCK) || !defined(SCIF_RECV_BLOCK) \\\n"
	"  || !defined(ACCEPT_SYNC) || !defined(SEND_BLOCK) || !defined(RECV_BLOCK) \\\n"
	"  || !defined(SCIF_RMA_USECPU) || !defined(SCIF_RMA_USECACHE) || !defined(SCIF_RMA_SYNC) \\\n"
	"  || !defined(SCIF_RMA_ORDERED) || !defined(SCIF_POLLIN) || !defined(SCIF_POLLOUT) \\\n"
	"  || !defined(SCIF_POLLERR) || !defined(SCIF_POLLHUP) || !defined(SCIF_POLLNVAL) \\\n"
	"  || !defined(SCIF_OPEN_FAILED) || !defined(SCIF_REGISTER_FAILED) \\\n"
	"  || !defined(SCIF_MMAP_FAILED) || !defined(SCIF_ADMIN_PORT_END) || !defined(SCIF_PORT_RSVD) \\\n"
	"  || !defined(portID)\n"
	"#error a constant that must be a macro is not one\n#endif\n"
	/* ...and enumerators stay enumerators. */
	"#if defined(SCIF_PROT_READ) || defined(SCIF_PROT_WRITE) || defined(SCIF_MAP_FIXED) \\\n"
	"  || defined(SCIF_MAP_KERNEL) || defined(SCIF_FENCE_INIT_SELF) || defined(SCIF_FENCE_INIT_PEER) \\\n"
	"  || defined(SCIF_FENCE_RAS_SELF) || defined(SCIF_FENCE_RAS_PEER) || defined(SCIF_SIGNAL_LOCAL) \\\n"
	"  || defined(SCIF_SIGNAL_REMOTE)\n"
	"#error an enumerator is a macro\n#endif\n"
	"#define CHECK(n, c) typedef char check_##n[(c) ? 1 : -1]\n"
	"CHECK(pollepd_size, sizeof(struct scif_pollepd) == 8);\n"
	"CHECK(pollepd_is_pollfd, sizeof(struct scif_pollepd) == sizeof(struct pollfd));\n"
	"CHECK(portid_size, sizeof(struct scif_portID) == 4);\n"
	"CHECK(portid_compat, sizeof(portID_t) == 4 && sizeof(struct portID) == 4);\n"
	"CHECK(epd_is_int, sizeof(scif_epd_t) == sizeof(int) && (scif_epd_t)-1 < 0);\n"
	"CHECK(flags, SCIF_ACCEPT_SYNC == 1 && SCIF_SEND_BLOCK == 1 && SCIF_RECV_BLOCK == 1\n"
	"      && ACCEPT_SYNC == 1 && SEND_BLOCK == 1 && RECV_BLOCK == 1);\n"
	"CHECK(prot, SCIF_PROT_READ == 1 && SCIF_PROT_WRITE == 2);\n"
	"CHECK(map, SCIF_MAP_FIXED == 0x10 && SCIF_MAP_KERNEL == 0x20);\n"
	"CHECK(fence, SCIF_FENCE_INIT_SELF == 1 && SCIF_FENCE_INIT_PEER == 2\n"
	"      && SCIF_FENCE_RAS_SELF == 4 && SCIF_FENCE_RAS_PEER == 8\n"
	"      && SCIF_SIGNAL_LOCAL == 0x10 && SCIF_SIGNAL_REMOTE == 0x20);\n"
	"CHECK(rma, SCIF_RMA_USECPU == 1 && SCIF_RMA_USECACHE == 2 && SCIF_RMA_SYNC == 4\n"
	"      && SCIF_RMA_ORDERED == 8);\n"
	"CHECK(pollbits, SCIF_POLLIN == POLLIN && SCIF_POLLOUT == POLLOUT && SCIF_POLLERR == POLLERR\n"
	"      && SCIF_POLLHUP == POLLHUP && SCIF_POLLNVAL == POLLNVAL);\n"
	"CHECK(sentinels, SCIF_OPEN_FAILED == -1 && SCIF_REGISTER_FAILED == -1);\n"
	"CHECK(coi, SCIF_COI_PORT_0 == 40 && SCIF_COI_PORT_1 == 41 && SCIF_COI_PORT_2 == 42\n"
	"      && SCIF_COI_PORT_3 == 43 && SCIF_COI_PORT_4 == 44 && SCIF_COI_PORT_5 == 45\n"
	"      && SCIF_COI_PORT_6 == 46 && SCIF_COI_PORT_7 == 47 && SCIF_COI_PORT_8 == 48\n"
	"      && SCIF_COI_PORT_9 == 49);\n"
	"CHECK(ofed, SCIF_OFED_PORT_0 == 60 && SCIF_OFED_PORT_1 == 61 && SCIF_OFED_PORT_2 == 62\n"
	"      && SCIF_OFED_PORT_3 == 63 && SCIF_OFED_PORT_4 == 64 && SCIF_OFED_PORT_5 == 65\n"
	"      && SCIF_OFED_PORT_6 == 66 && SCIF_OFED_PORT_7 == 67 && SCIF_OFED_PORT_8 == 68\n"
	"      && SCIF_OFED_PORT_9 == 69);\n"
	"CHECK(netdev, SCIF_NETDEV_PORT_0 == 80 && SCIF_NETDEV_PORT_1 == 81\n"
	"      && SCIF_NETDEV_PORT_2 == 82 && SCIF_NETDEV_PORT_3 == 83 && SCIF_NETDEV_PORT_4 == 84\n"
	"      && SCIF_NETDEV_PORT_5 == 85 && SCIF_NETDEV_PORT_6 == 86 && SCIF_NETDEV_PORT_7 == 87\n"
	"      && SCIF_NETDEV_PORT_8 == 88 && SCIF_NETDEV_PORT_9 == 89);\n"
	"CHECK(ras, SCIF_RAS_PORT_0 == 100 && SCIF_RAS_PORT_1 == 101 && SCIF_RAS_PORT_2 == 102\n"
	"      && SCIF_RAS_PORT_3 == 103 && SCIF_RAS_PORT_4 == 104 && SCIF_RAS_PORT_5 == 105\n"
	"      && SCIF_RAS_PORT_6 == 106 && SCIF_RAS_PORT_7 == 107 && SCIF_RAS_PORT_8 == 108\n"
	"      && SCIF_RAS_PORT_9 == 109);\n"
	"CHECK(pm, SCIF_PM_PORT_0 == 120 && SCIF_PM_PORT_1 == 121 && SCIF_PM_PORT_2 == 122\n"
	"      && SCIF_PM_PORT_3 == 123 && SCIF_PM_PORT_4 == 124 && SCIF_PM_PORT_5 == 125\n"
	"      && SCIF_PM_PORT_6 == 126 && SCIF_PM_PORT_7 == 127 && SCIF_PM_PORT_8 == 128\n"
	"      && SCIF_PM_PORT_9 == 129);\n"
	"CHECK(bt, SCIF_BT_PORT_0 == 130 && SCIF_BT_PORT_1 == 131 && SCIF_BT_PORT_2 == 132\n"
	"      && SCIF_BT_PORT_3 == 133 && SCIF_BT_PORT_4 == 134 && SCIF_BT_PORT_5 == 135\n"
	"      && SCIF_BT_PORT_6 == 136 && SCIF_BT_PORT_7 == 137 && SCIF_BT_PORT_8 == 138\n"
	"      && SCIF_BT_PORT_9 == 139);\n"
	"CHECK(mpssd, MPSSD_MONRECV == 160 && MIC_NOTIFY == 161 && MPSSD_CRED == 162\n"
	"      && MPSSD_MONSEND == 163 && MPSSD_MICCTRL == 164 && MPSSD_RESV5 == 165\n"
	"      && MPSSD_RESV6 == 166 && MPSSD_RESV7 == 167 && MPSSD_RESV8 == 168\n"
	"      && MPSSD_RESV9 == 169);\n"
	"CHECK(cosm, SCIF_COSM_LISTEN_PORT == 201 && SCIF_ADMIN_PORT_END == 1024);\n"
	"CHECK(myo, SCIF_MYO_PORT_0 == 1025 && SCIF_MYO_PORT_1 == 1026 && SCIF_MYO_PORT_2 == 1027\n"
	"      && SCIF_MYO_PORT_3 == 1028 && SCIF_MYO_PORT_4 == 1029 && SCIF_MYO_PORT_5 == 1030\n"
	"      && SCIF_MYO_PORT_6 == 1031 && SCIF_MYO_PORT_7 == 1032 && SCIF_MYO_PORT_8 == 1033\n"
	"      && SCIF_MYO_PORT_9 == 1034);\n"
	"CHECK(st, SCIF_ST_PORT_0 == 1044 && SCIF_ST_PORT_1 == 1045 && SCIF_ST_PORT_2 == 1046\n"
	"      && SCIF_ST_PORT_3 == 1047 && SCIF_ST_PORT_4 == 1048 && SCIF_ST_PORT_5 == 1049\n"
	"      && SCIF_ST_PORT_6 == 1050 && SCIF_ST_PORT_7 == 1051 && SCIF_ST_PORT_8 == 1052\n"
	"      && SCIF_ST_PORT_9 == 1053 && SCIF_PORT_RSVD == 1088);\n"
	/* Exact prototypes: a mismatch is an error in C++ and a warning (-Werror) in C. */
	"static scif_epd_t (*const p_open)(void) = scif_open;\n"
	"static int (*const p_close)(scif_epd_t) = scif_close;\n"
	"static int (*const p_bind)(scif_epd_t, uint16_t) = scif_bind;\n"
	"static int (*const p_listen)(scif_epd_t, int) = scif_listen;\n"
	"static int (*const p_connect)(scif_epd_t, struct scif_portID *) = scif_connect;\n"
	"static int (*const p_accept)(scif_epd_t, struct scif_portID *, scif_epd_t *, int)\n"
	"	= scif_accept;\n"
	"static int (*const p_send)(scif_epd_t, void *, int, int) = scif_send;\n"
	"static int (*const p_recv)(scif_epd_t, void *, int, int) = scif_recv;\n"
	"static off_t (*const p_register)(scif_epd_t, void *, size_t, off_t, int, int)\n"
	"	= scif_register;\n"
	"static int (*const p_unregister)(scif_epd_t, off_t, size_t) = scif_unregister;\n"
	"static void *(*const p_mmap)(void *, size_t, int, int, scif_epd_t, off_t) = scif_mmap;\n"
	"static int (*const p_munmap)(void *, size_t) = scif_munmap;\n"
	"static int (*const p_readfrom)(scif_epd_t, off_t, size_t, off_t, int) = scif_readfrom;\n"
	"static int (*const p_writeto)(scif_epd_t, off_t, size_t, off_t, int) = scif_writeto;\n"
	"static int (*const p_vreadfrom)(scif_epd_t, void *, size_t, off_t, int) = scif_vreadfrom;\n"
	"static int (*const p_vwriteto)(scif_epd_t, void *, size_t, off_t, int) = scif_vwriteto;\n"
	"static int (*const p_fence_mark)(scif_epd_t, int, int *) = scif_fence_mark;\n"
	"static int (*const p_fence_wait)(scif_epd_t, int) = scif_fence_wait;\n"
	"static int (*const p_fence_signal)(scif_epd_t, off_t, uint64_t, off_t, uint64_t, int)\n"
	"	= scif_fence_signal;\n"
	"static int (*const p_get_nodeIDs)(uint16_t *, int, uint16_t *) = scif_get_nodeIDs;\n"
	"static int (*const p_get_fd)(scif_epd_t) = scif_get_fd;\n"
	"static int (*const p_poll)(struct scif_pollepd *, unsigned int, long) = scif_poll;\n"
	"int main(void)\n"
	"{\n"
	"	const void *fns[] = { (const void *)&p_open, (const void *)&p_close,\n"
	"		(const void *)&p_bind, (const void *)&p_listen, (const void *)&p_connect,\n"
	"		(const void *)&p_accept, (const void *)&p_send, (const void *)&p_recv,\n"
	"		(const void *)&p_register, (const void *)&p_unregister, (const void *)&p_mmap,\n"
	"		(const void *)&p_munmap, (const void *)&p_readfrom, (const void *)&p_writeto,\n"
	"		(const void *)&p_vreadfrom, (const void *)&p_vwriteto,\n"
	"		(const void *)&p_fence_mark, (const void *)&p_fence_wait,\n"
	"		(const void *)&p_fence_signal, (const void *)&p_get_nodeIDs,\n"
	"		(const void *)&p_get_fd, (const void *)&p_poll };\n"
	"	struct scif_portID id = { 0, 0 };\n"
	"	portID_t old = id;\n"
	"	struct portID *op = &old;\n"
	"	struct scif_pollepd pe = { -1, SCIF_POLLIN, 0 };\n"
	"	struct pollfd pf = { -1, POLLIN, 0 };\n"
	"	uint16_t self = 0xffff;\n"
	"	int64_t big = INT64_MAX;\n"
	"	fd_set set;\n"
	"	unsigned int i;\n"
	"	FD_ZERO(&set);\n"
	"	errno = 0;\n"
	"	for (i = 0; i < sizeof(fns) / sizeof(fns[0]); i++)\n"
	"		if (!fns[i])\n"
	"			return 10;\n"
	"	if (poll(&pf, 1, 0) != 0 || scif_poll(&pe, 1, 0) != 0 || pe.revents != 0)\n"
	"		return 11;\n"
	"	if (scif_get_nodeIDs(NULL, 0, &self) < 1 || self == 0xffff)\n"
	"		return 12;\n"
	"	if (scif_get_fd(7) != 7 || op->node != 0 || big < 0)\n"
	"		return 13;\n"
	"	if (SCIF_MMAP_FAILED != (void *)-1 || (off_t)SCIF_REGISTER_FAILED != (off_t)-1)\n"
	"		return 14;\n"
	"	if (getpid() <= 0)\n"
	"		return 15;\n"
	"	return 0;\n"
	"}\n";

/* Names of the kernel API (spec 1.6): a program may use them for its own things. */
static const char kernel_names_src[] =
	"#include <scif.h>\n"
	"struct scif_range { int x; };\n"
	"struct scif_port_id { int y; };\n"
	"struct scif_callback { int z; };\n"
	"struct scif_peer_dev { int w; };\n"
	"typedef double scif_pinned_pages_t;\n"
	"typedef double scif_callback_t;\n"
	"union eventd { int v; };\n"
	"enum scif_event_type { MY_EVENT };\n"
	"int scif_pin_pages, scif_unpin_pages, scif_register_pinned_pages, scif_get_pages;\n"
	"int scif_put_pages, scif_event_register, scif_event_unregister, scif_pci_info;\n"
	"int scif_client_register, scif_client_unregister, scif_get_node_ids;\n"
	"int SCIF_NODE_ADDED, SCIF_NODE_REMOVED;\n"
	"int main(void)\n"
	"{\n"
	"	return scif_pin_pages + SCIF_NODE_ADDED + scif_get_node_ids;\n"
	"}\n";

static const char kernel_guard_src[] = "#include <scif.h>\nint main(void) { return 0; }\n";

struct workdir {
	char path[64];
};

static void workdir_make(struct workdir *w)
{
	snprintf(w->path, sizeof(w->path), "/tmp/scif-header-XXXXXX");
	cr_assert_not_null(mkdtemp(w->path), "mkdtemp: %s", strerror(errno));
}

static void workdir_write(struct workdir *w, const char *name, const char *text)
{
	char path[128];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", w->path, name);
	f = fopen(path, "w");
	cr_assert_not_null(f);
	cr_assert_eq(fputs(text, f) >= 0, 1);
	cr_assert_eq(fclose(f), 0);
}

/* Run a shell command in the work dir; its output goes to @log. Returns the exit status. */
static int workdir_run(struct workdir *w, const char *cmd, char *log, size_t logsz)
{
	char full[2048], path[128];
	char *argv[] = { "/bin/sh", "-c", full, NULL };
	size_t n = 0;
	pid_t pid;
	FILE *f;
	int st;

	snprintf(full, sizeof(full), "cd '%s' && (%s) >out.txt 2>&1", w->path, cmd);
	cr_assert_eq(posix_spawn(&pid, "/bin/sh", NULL, NULL, argv, environ), 0);
	cr_assert_eq(test_waitpid(pid, &st, 300000), pid);
	log[0] = 0;
	snprintf(path, sizeof(path), "%s/out.txt", w->path);
	f = fopen(path, "r");
	if (f) {
		n = fread(log, 1, logsz - 1, f);
		log[n] = 0;
		fclose(f);
	}
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static void workdir_remove(struct workdir *w)
{
	char log[256];

	workdir_run(w, "rm -f *", log, sizeof(log));
	rmdir(w->path);
}

/* Does the shell find @tool? */
static int have_tool(struct workdir *w, const char *tool)
{
	char cmd[256], log[256];

	snprintf(cmd, sizeof(cmd), "command -v %s", tool);
	return workdir_run(w, cmd, log, sizeof(log)) == 0;
}

/* The C++ compiler: $CXX if set, else c++. */
static const char *cxx(void)
{
	const char *c = getenv("CXX");

	return c && *c ? c : "c++";
}

static const char *top_builddir(void)
{
	const char *t = getenv("SCIF_TEST_TOP");

	return t && *t ? t : SCIF_TOP_BUILDDIR;
}

/* Compile, link against libscif and run @src with @compiler and @flags. */
static void build_and_run(const char *compiler, const char *flags, const char *src,
			  const char *name)
{
	static char log[8192];
	char cmd[1024];
	struct workdir w;
	int st;

	workdir_make(&w);
	workdir_write(&w, name, src);
	snprintf(cmd, sizeof(cmd),
		 "%s %s -Wall -Wextra -Wpedantic -Werror -I'%s/include' -o prog %s "
		 "-L'%s/libscif/.libs' -lscif",
		 compiler, flags, SCIF_TOP_SRCDIR, name, top_builddir());
	st = workdir_run(&w, cmd, log, sizeof(log));
	cr_expect_eq(st, 0, "%s failed (%d):\n%s", cmd, st, log);
	if (st == 0) {
		/* In a sanitizer build the library brings the ASan runtime along. */
		snprintf(cmd, sizeof(cmd),
			 "LD_LIBRARY_PATH='%s/libscif/.libs' ASAN_OPTIONS=verify_asan_link_order=0 ./prog",
			 top_builddir());
		st = workdir_run(&w, cmd, log, sizeof(log));
		cr_expect_eq(st, 0, "%s (%s %s): run-time check %d failed\n%s", name, compiler, flags,
			     st, log);
	}
	workdir_remove(&w);
}

Test(header, types_and_layouts_C96)
{
	struct scif_portID id;
	struct scif_pollepd pe;

	cr_expect_eq(sizeof(scif_epd_t), sizeof(int));
	cr_expect_eq(sizeof(struct scif_portID), 4);
	cr_expect_eq(offsetof(struct scif_portID, node), 0);
	cr_expect_eq(offsetof(struct scif_portID, port), 2);
	cr_expect_eq(sizeof(id.node), 2);
	cr_expect_eq(sizeof(id.port), 2);
	cr_expect_eq(sizeof(struct scif_pollepd), 8);
	cr_expect_eq(sizeof(struct scif_pollepd), sizeof(struct pollfd));
	cr_expect_eq(offsetof(struct scif_pollepd, epd), 0);
	cr_expect_eq(offsetof(struct scif_pollepd, events), 4);
	cr_expect_eq(offsetof(struct scif_pollepd, revents), 6);
	cr_expect_eq(sizeof(pe.events), sizeof(short));
	cr_expect_eq(sizeof(portID_t), sizeof(struct scif_portID));
	cr_expect_eq(SCIF_POLLIN, POLLIN);
	cr_expect_eq(SCIF_POLLOUT, POLLOUT);
	cr_expect_eq(SCIF_POLLERR, POLLERR);
	cr_expect_eq(SCIF_POLLHUP, POLLHUP);
	cr_expect_eq(SCIF_POLLNVAL, POLLNVAL);
	cr_expect_eq(SCIF_OPEN_FAILED, -1);
	cr_expect_eq(SCIF_REGISTER_FAILED, (off_t)-1);
	cr_expect_eq(SCIF_MMAP_FAILED, MAP_FAILED);
	cr_expect_eq(SCIF_PROT_READ, PROT_READ);
	cr_expect_eq(SCIF_PROT_WRITE, PROT_WRITE);
	cr_expect_eq(SCIF_MAP_FIXED, MAP_FIXED);
}

Test(header, c_program_with_only_scif_h_C96, .timeout = 120)
{
	build_and_run(SCIF_CC, "", prog_src, "prog.c");
}

Test(header, c99_program_with_only_scif_h_C96, .timeout = 120)
{
	build_and_run(SCIF_CC, "-std=c99 -Wstrict-prototypes -Wmissing-prototypes", prog_src,
		      "prog.c");
}

Test(header, cxx_program_with_only_scif_h_C96, .timeout = 120)
{
	struct workdir w;
	int have;

	workdir_make(&w);
	have = have_tool(&w, cxx());
	workdir_remove(&w);
	if (!have)
		cr_skip_test("no C++ compiler (%s)", cxx());
	build_and_run(cxx(), "", prog_src, "prog.cc");
}

Test(header, cxx11_program_with_only_scif_h_C96, .timeout = 120)
{
	struct workdir w;
	int have;

	workdir_make(&w);
	have = have_tool(&w, cxx());
	workdir_remove(&w);
	if (!have)
		cr_skip_test("no C++ compiler (%s)", cxx());
	build_and_run(cxx(), "-std=c++11", prog_src, "prog.cc");
}

Test(header, kernel_only_names_are_free_for_programs, .timeout = 120)
{
	static char log[8192];
	char cmd[1024];
	struct workdir w;
	int st;

	workdir_make(&w);
	workdir_write(&w, "k.c", kernel_names_src);
	snprintf(cmd, sizeof(cmd), "%s -Wall -Wextra -Werror -I'%s/include' -c k.c", SCIF_CC,
		 SCIF_TOP_SRCDIR);
	st = workdir_run(&w, cmd, log, sizeof(log));
	cr_expect_eq(st, 0, "a kernel-API name is declared by scif.h:\n%s", log);
	workdir_remove(&w);
}

Test(header, refuses_kernel_builds, .timeout = 120)
{
	static char log[8192];
	char cmd[1024];
	struct workdir w;
	int st;

	workdir_make(&w);
	workdir_write(&w, "k.c", kernel_guard_src);
	snprintf(cmd, sizeof(cmd), "%s -D__KERNEL__ -I'%s/include' -c k.c", SCIF_CC,
		 SCIF_TOP_SRCDIR);
	st = workdir_run(&w, cmd, log, sizeof(log));
	cr_expect_neq(st, 0, "scif.h compiled with __KERNEL__ defined");
	workdir_remove(&w);
}
