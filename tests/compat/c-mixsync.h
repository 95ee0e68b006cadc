// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * c-mixsync.h - the compat pair "mixsync": an asynchronous scif_writeto of 1 MiB, a fence
 * signal, then a SCIF_RMA_SYNC write of 64 KiB over the start of the same remote range. With
 * Intel's driver every RMA of an endpoint runs in issue order on its DMA channel and a SYNC
 * call returns only when the channel has drained, so once the SYNC call returns the peer sees
 * the newer 64 KiB at the start and the older data only after it. Layout and patterns.
 */
#ifndef C_MIXSYNC_H
#define C_MIXSYNC_H

#include "compat.h"

#define ROUNDS 16
#define BIG_LEN (1 << 20)
#define SMALL_LEN (64 << 10)
#define HOST_WIN_LEN (BIG_LEN + COMPAT_PAGE) /* data, then the page of the signal word */
#define CARD_WIN_LEN (BIG_LEN + SMALL_LEN)   /* async source, then the sync writeto source */
#define SEED_OLD(r) (0x5000ULL + (uint64_t)(r)) /* the asynchronous 1 MiB */
#define SEED_NEW(r) (0x6000ULL + (uint64_t)(r)) /* the later SYNC 64 KiB */

#endif /* C_MIXSYNC_H */
