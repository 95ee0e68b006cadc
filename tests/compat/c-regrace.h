// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * c-regrace.h - the compat pair "regrace": the card connects many times in a row and calls
 * scif_register the moment scif_connect returns (the host likewise right after
 * scif_accept), as programs do that set up a window per connection; each side then reads the
 * other's page. Shared constants.
 */
#ifndef C_REGRACE_H
#define C_REGRACE_H

#include "compat.h"

#define DEFAULT_CONNS 200
#define SEED_HOST(i) (0x7000ULL + (uint64_t)(i))
#define SEED_CARD(i) (0x8000ULL + (uint64_t)(i))

/* `prog PORT [CONNECTIONS]` */
static inline int regrace_conns(int argc, char **argv)
{
	int n = argc > 2 ? atoi(argv[2]) : DEFAULT_CONNS;

	return n > 0 ? n : DEFAULT_CONNS;
}

/* Registration failures are counted, not fatal, so the run shows how often the race hits. */
struct regrace_stats {
	int failed, first_iter, first_errno;
};

static inline void regrace_note(struct regrace_stats *s, int iter, int err, const char *what)
{
	fprintf(stderr, "%s: connection %d: %s failed: %s\n", compat_prog, iter, what,
		strerror(err));
	if (!s->failed++) {
		s->first_iter = iter;
		s->first_errno = err;
	}
}

static inline void regrace_report(int code, const struct regrace_stats *s, int n,
				  const char *what)
{
	if (s->failed)
		fail(code, "%d of %d registrations %s failed "
			   "(first at connection %d: errno %d, %s)",
		     s->failed, n, what, s->first_iter, s->first_errno, strerror(s->first_errno));
}

#endif /* C_REGRACE_H */
