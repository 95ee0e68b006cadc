// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * user.c - checking application buffers for EFAULT. The library copies bytes in user space,
 * so the kernel is asked once per buffer and thread whether they are there.
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "user.h"

/*
 * EFAULT for buffers the application cannot read (or write): the kernel checks them for us
 * by copying one byte of every page from (or, for writes, onto) itself with
 * process_vm_readv/writev. Each thread remembers the last ranges that passed, so a buffer
 * that is used again costs nothing; a range unmapped after it passed is not noticed.
 */
#define API_OK_SLOTS 8
static __thread struct { uintptr_t lo, hi; int write; } api_ok[API_OK_SLOTS];
static __thread unsigned int api_ok_next;

int scif__user_check(const void *p, size_t len, int write)
{
	uintptr_t lo = (uintptr_t)p & ~(uintptr_t)4095, hi;
	char scratch[256];
	struct iovec loc[256], rem[256], tmp[256];

	if (((uintptr_t)p < 4096 || (uintptr_t)p >= (1ULL << 47)) || (uintptr_t)p + len < (uintptr_t)p ||
	    (uintptr_t)p + len > (1ULL << 47))
		return -EFAULT;
	hi = ((uintptr_t)p + len + 4095) & ~(uintptr_t)4095;
	for (unsigned int i = 0; i < API_OK_SLOTS; i++)
		if (api_ok[i].lo <= lo && api_ok[i].hi >= hi && api_ok[i].write >= write)
			return 0;
	for (uintptr_t pg = lo; pg < hi;) {
		int n = 0;
		ssize_t r;

		for (; pg < hi && n < 256; pg += 4096, n++) {
			rem[n].iov_base = (void *)(pg < (uintptr_t)p ? (uintptr_t)p : pg);
			rem[n].iov_len = 1;
			loc[n].iov_base = &scratch[n];
			loc[n].iov_len = 1;
		}
		/* Read one byte a page; for writes, put the same bytes back: left as they were. */
		r = process_vm_readv(getpid(), loc, (unsigned long)n, rem, (unsigned long)n, 0);
		if (r == n && write) {
			memcpy(tmp, loc, sizeof(struct iovec) * (size_t)n);
			r = process_vm_writev(getpid(), tmp, (unsigned long)n, rem, (unsigned long)n, 0);
		}
		if (r < 0 && errno != EFAULT)
			return 0; /* the check itself is unavailable here (seccomp, ptrace policy) */
		if (r != n)
			return -EFAULT;
	}
	api_ok[api_ok_next % API_OK_SLOTS].lo = lo;
	api_ok[api_ok_next % API_OK_SLOTS].hi = hi;
	api_ok[api_ok_next % API_OK_SLOTS].write = write;
	api_ok_next++;
	return 0;
}
