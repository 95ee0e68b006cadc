// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * lock.c - slow paths of the shared futex mutex and the futex wait/wake helpers. The futexes
 * are not FUTEX_PRIVATE because forked processes share the words.
 */
#include <errno.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "atomic.h"
#include "lock.h"

static long lock_futex(uint32_t *uaddr, int op, uint32_t val, const struct timespec *ts)
{
	return syscall(SYS_futex, uaddr, op, val, ts, NULL, 0);
}

void scif__lock_slow(struct scif_lock *l)
{
	int spins = 100;
	uint32_t c;

	/* A short spin first: the holder of a send/recv lock usually finishes within a copy. */
	while (spins--) {
		uint32_t exp = 0;

		if (scif__read_once(&l->word) == 0 &&
		    __atomic_compare_exchange_n(&l->word, &exp, 1, 0, __ATOMIC_ACQUIRE,
						__ATOMIC_RELAXED))
			return;
		scif__cpu_relax();
	}
	/* Mark "contended" so the unlocker wakes us; acquire pairs with the unlock's release. */
	c = __atomic_exchange_n(&l->word, 2, __ATOMIC_ACQUIRE);
	while (c != 0) {
		lock_futex(&l->word, FUTEX_WAIT, 2, NULL);
		c = __atomic_exchange_n(&l->word, 2, __ATOMIC_ACQUIRE);
	}
}

void scif__unlock_slow(struct scif_lock *l)
{
	lock_futex(&l->word, FUTEX_WAKE, 1, NULL);
}

void scif__futex_wake_all(uint32_t *word)
{
	lock_futex(word, FUTEX_WAKE, 0x7fffffff, NULL);
}

int scif__futex_wait(uint32_t *word, uint32_t val, int64_t timeout_ns)
{
	struct timespec ts, *tsp = NULL;

	if (timeout_ns >= 0) {
		ts.tv_sec = timeout_ns / 1000000000;
		ts.tv_nsec = timeout_ns % 1000000000;
		tsp = &ts;
	}
	if (lock_futex(word, FUTEX_WAIT, val, tsp) < 0 && errno != EAGAIN)
		return -errno;
	return 0;
}
