// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * log.c - SCIF_LOG parsing and the one printing function. Errno is preserved so logging
 * never changes what a public call reports.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

int scif__log_level = SCIF_LOG_NONE;

void scif__log_init(void)
{
	static const char *const names[] = { "none", "error", "warn", "info", "debug" };
	const char *v = getenv("SCIF_LOG");

	if (!v)
		return;
	for (int i = 0; i < (int)(sizeof(names) / sizeof(names[0])); i++)
		if (!strcmp(v, names[i]))
			scif__log_level = i;
}

void scif__log_print(int level, const char *fmt, ...)
{
	static const char *const tags[] = { "", "error", "warn", "info", "debug" };
	int saved = errno;
	char buf[512];
	va_list ap;
	int n;

	n = snprintf(buf, sizeof(buf), "libscif[%d] %s: ", (int)getpid(),
		     tags[level < 0 || level > SCIF_LOG_DEBUG ? 0 : level]);
	va_start(ap, fmt);
	if (n > 0 && (size_t)n < sizeof(buf))
		vsnprintf(buf + n, sizeof(buf) - (size_t)n, fmt, ap);
	va_end(ap);
	fprintf(stderr, "%s\n", buf);
	errno = saved;
}
