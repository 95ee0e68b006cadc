# SPDX-License-Identifier: LGPL-2.1-or-later
# tests/ofi/programs.sh - sourced by check-ofi.sh and check-rxe.sh: the Criterion programs
# that run across hosts (path[PROGRAM], relative to the build tree), what of each does
# (filter[PROGRAM], a Criterion --filter pattern: extended globs on "suite/test"), and the
# programs that must run one test at a time (jobs[PROGRAM]). Every exclusion says why.
declare -A path filter
path[test-compat]=tests/compat/test-compat
path[test-mp]=tests/mp/test-mp
path[test-rma-mp]=tests/mp/test-rma-mp
path[test-bulk]=tests/mp/test-bulk
path[test-ofi]=tests/ofi/test-ofi

# compat pairs (host on node 0, card on node 1), all but:
#   errno, ring   the pair loads and stores through scif_mmap of the peer's window (errno's
#                 steps 60-67, ring's whole ring): memory of another host cannot be mapped.
filter[test-compat]='!(compat/@(errno|ring)_*)'

# test-ofi (--fabric ofi only): a peer host that becomes unreachable; all of it.
filter[test-ofi]='ofi/*'
# test-ofi's tests take node 1's link down: one at a time, or they cut each other's peers off.
declare -A jobs
jobs[test-ofi]=1

# test-mp, all but:
#   hostile/*     the lying peer (tests/mp/hostile.c) speaks the local fabric's own wire
#                 format: a Unix socket in SCIF_RUN_DIR, memfds passed by SCM_RIGHTS. Between
#                 hosts there is no such socket to lie on; each fabric needs its own liars.
#   mp/no_descriptor_or_port_leak_over_10000_connections
#                 one process connecting to its own node: nothing crosses to another node
#                 (make check runs it), and it counts the local fabric's socket files.
filter[test-mp]='!(hostile/*|mp/no_descriptor_or_port_leak_over_10000_connections)'

# test-rma-mp, all but:
#   rma_mp/mmap_ping_pong_across_processes
#                 the peer loads and stores through scif_mmap of our window.
# (window_survives_owner_fork stays: the fork child exits at once and never uses the
# endpoint; the parent's window must still work.)
filter[test-rma-mp]='!(rma_mp/mmap_ping_pong_across_processes)'

# test-bulk, all but:
#   bulk/echo_from_a_fork_child
#                 the peer's fork child uses the endpoint its parent opened.
#   hostile_bulk/*
#                 lies about single-copy offers, which name a pid and an address for
#                 process_vm_readv: the local fabric's wire format, one OS only.
#   bulk/nonblocking_sends_1m, bulk/nonblocking_sends_4m
#                 they require some non-blocking send larger than the ring to go whole,
#                 single-copy: the receiver copying from the sender's memory with
#                 process_vm_readv, which only works between processes of one OS.
#                 (nonblocking_sends_64k, below the ring size, checks only the data: it stays.)
#   bulk/abandoned_offer_is_not_delivered
#                 the peer makes a single-copy offer and withdraws it by closing; between
#                 hosts there are no offers: its bytes go through the ring and are delivered.
filter[test-bulk]='!(hostile_bulk/*|bulk/@(echo_from_a_fork_child|nonblocking_sends_1m|nonblocking_sends_4m|abandoned_offer_is_not_delivered))'
