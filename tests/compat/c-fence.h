// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * c-fence.h - the compat pair "fence": rounds of asynchronous writeto/readfrom and their
 * v-variants between two processes, ordered only by scif_fence_mark/scif_fence_wait and
 * scif_fence_signal (local and remote signal words); the side that sees a signal word
 * change then checks the data the fence covered. Layout and patterns shared by both sides.
 */
#ifndef C_FENCE_H
#define C_FENCE_H

#include "compat.h"

#define ROUNDS 16
#define REG_LEN (256 << 10)
#define R0 (0 * REG_LEN)
#define R1 (1 * REG_LEN)
#define R2 (2 * REG_LEN)
#define R3 (3 * REG_LEN)
#define FL (4 * REG_LEN)
#define WIN_LEN (FL + COMPAT_PAGE)

/* Signal words in each side's FL page; each holds the number of the round that set it. */
#define SIG_CARD 0  /* card's INIT_SELF signal: its writes of the round have landed */
#define SIG_IPEER 8 /* host's INIT_PEER signal: the card's unfenced writeto has landed */
#define SIG_HOST 16 /* host's INIT_SELF remote signal: its writes have landed */

/* Pattern k of round r. */
#define SEED(r, k) (0xfe000ULL + (uint64_t)(r) * 16 + (k))

/*
 * The RMA flags of round r, in turn: asynchronous on the DMA worker, with the CPU, SYNC, and
 * SYNC with the CPU (the fences then have nothing left to wait for, and must not mind).
 */
#define RMA_FLAGS(r)                                                                  \
	((int[]){ 0, SCIF_RMA_USECPU, SCIF_RMA_SYNC, SCIF_RMA_SYNC | SCIF_RMA_USECPU }[(r) % 4])

#endif /* C_FENCE_H */
