// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * pty.c - the pty helpers of both virtio-console halves (pty.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/ioctl.h>

#include "pty.h"

int vos_pty_open(char *pts, size_t len, int *slave)
{
	int master = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC), e;

	if (master < 0)
		return -errno;
	if (grantpt(master) < 0 || unlockpt(master) < 0 || ptsname_r(master, pts, len) ||
	    (*slave = ioctl(master, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC)) < 0) {
		e = -errno;
		close(master);
		return e;
	}
	return master;
}

int vos_symlink_replace(const char *target, const char *link)
{
	char tmp[PATH_MAX + 32];
	int n = snprintf(tmp, sizeof(tmp), "%s.%ld.tmp", link, (long)getpid());

	if (n < 0 || (size_t)n >= sizeof(tmp))
		return -ENAMETOOLONG;
	unlink(tmp);
	if (symlink(target, tmp) < 0)
		return -errno;
	if (rename(tmp, link) < 0) {
		n = -errno;
		unlink(tmp);
		return n;
	}
	return 0;
}
