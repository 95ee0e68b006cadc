/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * scm.h - the test peers' raw sender on a local-fabric link: one datagram with up to
 * TEST_SCM_MAX descriptors, as a hostile or hand-driven peer builds it (tests/mp/hostile.c,
 * tests/fuzz/peer.c, tests/unit/test-fabric.c). Not the library's sender: the peers must be
 * able to send what the library never would.
 */
#ifndef SCIF_TESTS_SCM_H
#define SCIF_TESTS_SCM_H

#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>

#define TEST_SCM_MAX 8

/* sendmsg() of @len bytes with @nfds (clipped to TEST_SCM_MAX) descriptors; its result. */
static inline ssize_t test_scm_send(int link, const void *buf, size_t len, const int *fds,
				    int nfds, int flags)
{
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int) * TEST_SCM_MAX)];
	} c;
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };

	if (nfds > TEST_SCM_MAX)
		nfds = TEST_SCM_MAX;
	if (nfds > 0) {
		memset(&c, 0, sizeof(c));
		mh.msg_control = c.buf;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
		c.h.cmsg_level = SOL_SOCKET;
		c.h.cmsg_type = SCM_RIGHTS;
		c.h.cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
		memcpy(CMSG_DATA(&c.h), fds, sizeof(int) * (size_t)nfds);
	}
	return sendmsg(link, &mh, flags | MSG_NOSIGNAL);
}

#endif /* SCIF_TESTS_SCM_H */
