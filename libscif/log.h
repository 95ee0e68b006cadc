/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * log.h - opt-in diagnostics. Nothing is printed unless SCIF_LOG asks for it
 * (SCIF_LOG=error|warn|info|debug; output to stderr).
 */
#ifndef SCIF_LOG_H
#define SCIF_LOG_H

enum scif_log_level { SCIF_LOG_NONE, SCIF_LOG_ERROR, SCIF_LOG_WARN, SCIF_LOG_INFO, SCIF_LOG_DEBUG };

extern int scif__log_level;

void scif__log_init(void);
void scif__log_print(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The level test is inline so disabled logging costs one predictable branch. */
#define scif_log(level, ...)                                   \
	do {                                                   \
		if (__builtin_expect(scif__log_level >= (level), 0)) \
			scif__log_print((level), __VA_ARGS__); \
	} while (0)
#define scif_err(...) scif_log(SCIF_LOG_ERROR, __VA_ARGS__)
#define scif_warn(...) scif_log(SCIF_LOG_WARN, __VA_ARGS__)
#define scif_info(...) scif_log(SCIF_LOG_INFO, __VA_ARGS__)
#define scif_dbg(...) scif_log(SCIF_LOG_DEBUG, __VA_ARGS__)

#endif /* SCIF_LOG_H */
