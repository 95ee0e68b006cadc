/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * user.h - EFAULT checks of application buffers (user.c), shared by the messaging and RMA
 * entry points.
 */
#ifndef SCIF_USER_H
#define SCIF_USER_H

#include <stddef.h>

/* 0 if [p, p+len) can be read (and written, with @write), else -EFAULT. */
int scif__user_check(const void *p, size_t len, int write);

#endif /* SCIF_USER_H */
