/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * lock.h - a small futex mutex that works across threads and across processes sharing an
 * endpoint after fork() (it lives in MAP_SHARED memory; uncontended it is one CAS).
 */
#ifndef SCIF_LOCK_H
#define SCIF_LOCK_H

#include <stdint.h>

/* 0 = free, 1 = held, 2 = held with waiters (Drepper's "futexes are tricky" mutex #2). */
struct scif_lock {
	uint32_t word;
};

#define SCIF_LOCK_INIT { 0 }

void scif__lock_slow(struct scif_lock *l);
void scif__unlock_slow(struct scif_lock *l);
/* Wake every waiter of a futex word in shared memory (process-shared futex). */
void scif__futex_wake_all(uint32_t *word);
/* Wait while *word == val, at most timeout_ns (negative: forever). Returns 0 or -errno. */
int scif__futex_wait(uint32_t *word, uint32_t val, int64_t timeout_ns);

static inline void scif__lock(struct scif_lock *l)
{
	uint32_t exp = 0;

	/* Acquire pairs with the release in scif__unlock. */
	if (!__atomic_compare_exchange_n(&l->word, &exp, 1, 0, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED))
		scif__lock_slow(l);
}

static inline int scif__trylock(struct scif_lock *l)
{
	uint32_t exp = 0;

	return __atomic_compare_exchange_n(&l->word, &exp, 1, 0, __ATOMIC_ACQUIRE,
					   __ATOMIC_RELAXED);
}

static inline void scif__unlock(struct scif_lock *l)
{
	/* Release pairs with the acquire of the next locker. */
	if (__atomic_exchange_n(&l->word, 0, __ATOMIC_RELEASE) == 2)
		scif__unlock_slow(l);
}

#endif /* SCIF_LOCK_H */
