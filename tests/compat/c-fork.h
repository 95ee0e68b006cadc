// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * c-fork.h - the compat pair "fork": the host registers two windows, forks twice (one child
 * exits at once, one opens its own connection to the card on PORT+1 and does RMA there),
 * then keeps using its windows and its connection (spec 4.6). Shared layout and patterns.
 */
#ifndef C_FORK_H
#define C_FORK_H

#include "compat.h"

#define WIN_A_LEN (512 << 10) /* host window A: posix_memalign + MADV_DONTFORK (Intel's advice) */
#define WIN_B_LEN (512 << 10) /* host window B: plain anonymous memory, inherited by children */
#define WIN_C_LEN (64 << 10)  /* host window C: registered after the fork */
#define CARD_LEN (2 << 20)    /* the card's window on the parent's connection */
#define CHILD_LEN (64 << 10)  /* windows on the child's connection */
#define TOUCH_LEN (64 << 10)  /* bytes the parent rewrites after the fork */
#define HALF (256 << 10)

#define SEED_A 0xf0a0        /* window A before the fork */
#define SEED_B 0xf0b0
#define SEED_A_AFTER 0xf0a1  /* the parent's rewrite of A's first TOUCH_LEN after the fork */
#define SEED_B_AFTER 0xf0b1
#define SEED_A_CARD 0xf0a2   /* the card's writeto into A's second half */
#define SEED_B_CARD 0xf0b2
#define SEED_C 0xf0c0
#define SEED_PARENT 0xf0d0   /* the parent's vwriteto into the card's window */
#define SEED_CHILD 0xf0e0    /* the child's window */
#define SEED_CHILD_W 0xf0e1  /* the child's vwriteto into the card's child window */

/* What the host tells the card after registering. */
struct fork_offsets {
	int64_t a, b;
};

#endif /* C_FORK_H */
