// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * log.c - daemon-style logging for virtio over SCIF: "ident[pid]: level: message" lines on
 * stderr (one write(2) each, so threads never interleave), or syslog(3).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include "vos.h"

/* Set once by vos_log_open before threads start; read-only afterwards. */
static struct {
	char ident[64];
	bool syslog;
	int max_level;
} vos_log_conf = { .max_level = LOG_INFO };

void vos_log_open(const char *ident, bool use_syslog, int max_level)
{
	const char *slash = ident ? strrchr(ident, '/') : NULL;

	snprintf(vos_log_conf.ident, sizeof(vos_log_conf.ident), "%s",
		 slash ? slash + 1 : ident ? ident : "");
	vos_log_conf.max_level = max_level;
	if (vos_log_conf.syslog)
		closelog();
	vos_log_conf.syslog = use_syslog;
	if (use_syslog)
		openlog(vos_log_conf.ident, LOG_PID | LOG_NDELAY, LOG_DAEMON);
}

static const char *vos_log_word(int level)
{
	switch (level) {
	case LOG_WARNING: return "warning";
	case LOG_NOTICE: return "notice";
	case LOG_INFO: return "info";
	case LOG_DEBUG: return "debug";
	default: return "err";  /* LOG_ERR and anything more urgent */
	}
}

void vos_log(int level, const char *fmt, ...)
{
	int saved = errno;  /* callers may log between a failure and their use of errno */
	const char *ident = vos_log_conf.ident[0] ? vos_log_conf.ident
						   : program_invocation_short_name;
	char line[1024];
	va_list ap;
	int n, m;

	if (level > vos_log_conf.max_level)
		return;
	va_start(ap, fmt);
	if (vos_log_conf.syslog) {
		vsyslog(level, fmt, ap);
	} else {
		n = snprintf(line, sizeof(line), "%s[%ld]: %s: ", ident, (long)getpid(),
			     vos_log_word(level));
		if (n < 0 || (size_t)n >= sizeof(line) - 1)
			n = 0;
		errno = saved;  /* for %m */
		m = vsnprintf(line + n, sizeof(line) - n - 1, fmt, ap);
		if (m < 0)
			m = 0;
		n += (size_t)m < sizeof(line) - n - 1 ? m : (int)(sizeof(line) - n - 2);
		line[n++] = '\n';
		/* One write(2) per line; if stderr is gone, there is nowhere to report it. */
		ssize_t w = write(STDERR_FILENO, line, n);
		(void)w;
	}
	va_end(ap);
	errno = saved;
}
