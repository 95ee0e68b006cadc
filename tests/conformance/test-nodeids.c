// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * test-nodeids.c - conformance of scif_get_nodeIDs() (spec 2.1, 3.20; cases C50, C51).
 */
#include <sys/mman.h>

#include "common.h"

/* Watchdog: a test that hangs fails after this long (its own .timeout wins). */
TestSuite(nodeids, .timeout = 120);

Test(nodeids, lists_online_nodes_in_order_C50)
{
	uint16_t nodes[16], self = 0xffff;
	int n, self_seen = 0;

	n = scif_get_nodeIDs(nodes, 16, &self);
	cr_assert_geq(n, 1, "returned %d (%s)", n, strerror(errno));
	cr_assert_leq(n, 16);
	for (int i = 1; i < n; i++)
		cr_expect_lt(nodes[i - 1], nodes[i], "nodes[%d]=%u nodes[%d]=%u", i - 1,
			     nodes[i - 1], i, nodes[i]);
	for (int i = 0; i < n; i++)
		self_seen |= nodes[i] == self;
	cr_expect(self_seen, "self %u is not among the %d nodes", self, n);
	/* The test process is the host unless SCIF_NODE says otherwise. */
	if (!getenv("SCIF_NODE"))
		cr_expect_eq(self, 0);
}

Test(nodeids, default_local_fabric_is_host_and_one_card)
{
	uint16_t nodes[16], self = 0xffff;
	int n;

	if (getenv("SCIF_LOCAL_NODES") || getenv("SCIF_NODE"))
		cr_skip_test("the fabric is configured by the environment");
	n = scif_get_nodeIDs(nodes, 16, &self);
	cr_assert_eq(n, 2);
	cr_expect_eq(nodes[0], 0);
	cr_expect_eq(nodes[1], 1);
	cr_expect_eq(self, 0);
}

Test(nodeids, count_only_with_null_array_C51)
{
	uint16_t nodes[16], self = 0xffff, self2 = 0xfffe;
	int n = scif_get_nodeIDs(nodes, 16, &self);
	int m = scif_get_nodeIDs(NULL, 0, &self2);

	cr_assert_geq(n, 1);
	cr_expect_eq(m, n);
	cr_expect_eq(self2, self);
}

Test(nodeids, null_self_is_efault_C51)
{
	uint16_t nodes[16];

	expect_errno(scif_get_nodeIDs(nodes, 16, NULL), EFAULT);
	expect_errno(scif_get_nodeIDs(NULL, 0, NULL), EFAULT);
}

/* A read-only page, for pointers the call cannot write through. */
static uint16_t *ro_page(void)
{
	uint16_t *ro = mmap(NULL, (size_t)sysconf(_SC_PAGESIZE), PROT_READ,
			    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	cr_assert_neq(ro, MAP_FAILED);
	return ro;
}

Test(nodeids, unwritable_array_is_efault)
{
	uint16_t *ro = ro_page(), self;

	expect_errno(scif_get_nodeIDs(ro, 16, &self), EFAULT);
	munmap(ro, (size_t)sysconf(_SC_PAGESIZE));
}

Test(nodeids, unwritable_self_is_efault)
{
	uint16_t *ro = ro_page(), nodes[16];

	expect_errno(scif_get_nodeIDs(nodes, 16, ro), EFAULT);
	munmap(ro, (size_t)sysconf(_SC_PAGESIZE));
}

Test(nodeids, null_array_with_length_is_efault)
{
	uint16_t self;

	expect_errno(scif_get_nodeIDs(NULL, 16, &self), EFAULT);
}

Test(nodeids, negative_length_is_einval)
{
	uint16_t nodes[16], self;

	expect_errno(scif_get_nodeIDs(nodes, -1, &self), EINVAL);
}

Test(nodeids, short_array_gets_the_first_ids_and_the_full_count)
{
	uint16_t all[16], some[2] = { 0xaaaa, 0xbbbb }, self;
	int n = scif_get_nodeIDs(all, 16, &self);
	int m;

	cr_assert_geq(n, 1);
	if (n < 2)
		cr_skip_test("needs two nodes online");
	m = scif_get_nodeIDs(some, 1, &self);
	cr_expect_eq(m, n, "returned %d with len 1, count is %d", m, n);
	cr_expect_eq(some[0], all[0]);
	cr_expect_eq(some[1], 0xbbbb, "wrote past len");
}

Test(nodeids, card_process_reports_its_node)
{
	uint16_t nodes[16], self = 0xffff;
	int n;

	if (getenv("SCIF_LOCAL_NODES"))
		cr_skip_test("the fabric is configured by the environment");
	/* A fresh test process: the library reads SCIF_NODE when it first starts. */
	cr_assert_eq(setenv("SCIF_NODE", "1", 1), 0);
	n = scif_get_nodeIDs(nodes, 16, &self);
	cr_assert_geq(n, 2, "returned %d (%s)", n, strerror(errno));
	cr_expect_eq(self, 1);
	cr_expect_eq(nodes[0], 0);
	cr_expect_eq(nodes[1], 1);
}

Test(nodeids, needs_no_endpoint)
{
	uint16_t self;

	/* Nothing opened in this process before. */
	cr_expect_geq(scif_get_nodeIDs(NULL, 0, &self), 1);
}
