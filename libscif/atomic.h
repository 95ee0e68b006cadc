/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * atomic.h - the only memory-ordering vocabulary of libscif, over C11/GCC atomics.
 * Every acquire/release in the code names its partner in a comment.
 */
#ifndef SCIF_ATOMIC_H
#define SCIF_ATOMIC_H

/* Load that later loads/stores cannot move above; pairs with a scif__store_release. */
#define scif__load_acquire(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
/* Store that earlier loads/stores cannot move below; pairs with a scif__load_acquire. */
#define scif__store_release(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)
/* Untorn access with no ordering (a value another agent may change at any time). */
#define scif__read_once(p) __atomic_load_n((p), __ATOMIC_RELAXED)
#define scif__write_once(p, v) __atomic_store_n((p), (v), __ATOMIC_RELAXED)
/*
 * Full barrier: orders an earlier store before a later load (Dekker-style wake-ups). On
 * x86-64 a locked add of zero to the stack is a full barrier and several times cheaper than
 * mfence (which also orders non-temporal stores, which we do not need); the kernel's smp_mb
 * does the same. The word below the stack pointer is left unchanged.
 */
#if defined(__x86_64__)
#define scif__mb() __asm__ __volatile__("lock; addl $0,-8(%%rsp)" ::: "memory", "cc")
#else
#define scif__mb() __atomic_thread_fence(__ATOMIC_SEQ_CST)
#endif

#define scif__atomic_inc(p) __atomic_add_fetch((p), 1, __ATOMIC_ACQ_REL)
#define scif__atomic_dec(p) __atomic_sub_fetch((p), 1, __ATOMIC_ACQ_REL)
#define scif__atomic_xchg(p, v) __atomic_exchange_n((p), (v), __ATOMIC_ACQ_REL)
#define scif__atomic_cas(p, expp, v) \
	__atomic_compare_exchange_n((p), (expp), (v), 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)

static inline void scif__cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield" ::: "memory");
#else
	__asm__ __volatile__("" ::: "memory");
#endif
}

#endif /* SCIF_ATOMIC_H */
