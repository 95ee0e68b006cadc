/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* peer.h - roles of the card-side test program implemented outside scif-peer.c. */
#ifndef SCIF_TESTS_PEER_H
#define SCIF_TESTS_PEER_H
#include <stddef.h>
#include <stdint.h>
/* Connect to node:port, retrying while nobody listens yet (5 s); -1 if it never works. */
int peer_connect(uint16_t node, uint16_t port);
int peer_rma_serve(uint16_t node, uint16_t port, size_t size, uint64_t seed);
int peer_rma_signal(uint16_t node, uint16_t port, size_t size, int rounds);
int peer_mmap_pong(uint16_t node, uint16_t port, int rounds);
int peer_rma_flood(uint16_t node, uint16_t port);
int peer_bulk_echo(uint16_t port, int thp, int use_fork);
int peer_bulk_abandon(uint16_t node, uint16_t port);
int peer_bulk_source(uint16_t node, uint16_t port, size_t bytes, uint64_t seed);
int peer_bulk_nbsink(uint16_t node, uint16_t port, size_t bytes, int rounds, uint64_t seed);
int peer_bulk_nbsource(uint16_t node, uint16_t port, size_t bytes, uint64_t seed);
int peer_connect_register(uint16_t node, uint16_t port, int count);
int peer_connect_close(uint16_t node, uint16_t port, int count);
int peer_mmap_hold(uint16_t node, uint16_t port);
int peer_rma_async_sync(uint16_t node, uint16_t port, int rounds);
int peer_low_fd_hold(uint16_t node, uint16_t port, int limit);
#endif
