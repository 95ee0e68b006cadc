/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * pty.h - what the two halves of virtio-console (backends/console.c on the host,
 * frontends/console.c on the card) share: a pty, and the stable symlink its users open.
 */
#ifndef VOS_PTY_H
#define VOS_PTY_H

#include <stddef.h>

/**
 * A new pty: its master (non-blocking, close-on-exec) is returned, its slave's path goes to
 * @pts (@len bytes) and an fd of the slave (O_NOCTTY, close-on-exec) to *@slave.
 * @return the master's fd, or -errno with nothing left open.
 */
int vos_pty_open(char *pts, size_t len, int *slave);

/**
 * Make @link a symlink to @target, replacing whatever @link was atomically: a temporary link
 * beside it is renamed over it. @return 0 or -errno.
 */
int vos_symlink_replace(const char *target, const char *link);

#endif /* VOS_PTY_H */
