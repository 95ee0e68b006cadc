# SPDX-License-Identifier: LGPL-2.1-or-later
# `make check-provider` and `make bench-provider`: other projects' clients over the scif
# provider, next to references that do not use it. Not part of `make check`: they take
# minutes and need fabtests and Open MPI.
#   check-provider  fabtests (runfabtests.sh -t quick) on shm, scif and "scif;ofi_rxm", and
#                   the MPI programs below over scif (tests/provider/check-provider.sh;
#                   PROVIDER_CHECKS="fabtests-scif mpi-p2p" runs some of its checks only)
#   bench-provider  fabtests and MPI latency/bandwidth over scif against shm and vader, and
#                   scif_bench (tests/provider/bench-provider.sh)
# fabtests are built once, from FABTESTS_TARBALL, into tests/provider/fabtests-1.17.0 of the
# build tree, against the installed libfabric.
EXTRA_DIST += tests/provider/provider.mk tests/provider/check-provider.sh tests/provider/isolate.sh \
	tests/provider/fabtests-timeout.sh \
	tests/provider/bench-provider.sh tests/provider/scif-rank tests/provider/mpi-common.h \
	tests/provider/mpi-p2p.c tests/provider/mpi-coll.c tests/provider/mpi-kill.c

FABTESTS_TARBALL = $(abs_top_srcdir)/../shared/vendor/fabtests-1.17.0.tar.gz
PROVIDER_CHECKS =
PROVIDER_ENV = top_builddir='$(abs_top_builddir)' top_srcdir='$(abs_top_srcdir)' \
	FABTESTS_TARBALL='$(FABTESTS_TARBALL)' MPICC='$(MPICC)'
if HAVE_LIBFABRIC
PROVIDER_ENV += HAVE_LIBFABRIC=yes
else
PROVIDER_ENV += HAVE_LIBFABRIC=no
endif

# The MPI programs, built with Open MPI's mpicc (not libtool's compiler) when configure
# found it; check-provider.sh says so when it did not.
PROVIDER_MPI_PROGS =
if HAVE_MPICC
PROVIDER_MPI_PROGS += tests/provider/mpi-p2p tests/provider/mpi-coll tests/provider/mpi-kill
PROVIDER_MPI_CFLAGS = -O2 -g -Wall -Wextra -Werror
PROVIDER_MPI_DEPS = $(srcdir)/tests/provider/mpi-common.h
tests/provider/mpi-p2p: $(srcdir)/tests/provider/mpi-p2p.c $(PROVIDER_MPI_DEPS)
	@$(MKDIR_P) tests/provider
	$(AM_V_CC)$(MPICC) $(PROVIDER_MPI_CFLAGS) -o $@ $(srcdir)/tests/provider/mpi-p2p.c
tests/provider/mpi-coll: $(srcdir)/tests/provider/mpi-coll.c $(PROVIDER_MPI_DEPS)
	@$(MKDIR_P) tests/provider
	$(AM_V_CC)$(MPICC) $(PROVIDER_MPI_CFLAGS) -o $@ $(srcdir)/tests/provider/mpi-coll.c
tests/provider/mpi-kill: $(srcdir)/tests/provider/mpi-kill.c $(PROVIDER_MPI_DEPS)
	@$(MKDIR_P) tests/provider
	$(AM_V_CC)$(MPICC) $(PROVIDER_MPI_CFLAGS) -o $@ $(srcdir)/tests/provider/mpi-kill.c
CLEANFILES += $(PROVIDER_MPI_PROGS)
endif

.PHONY: check-provider bench-provider distclean-provider
check-provider: all $(PROVIDER_MPI_PROGS) $(PROVIDER_TESTS)
	$(PROVIDER_ENV) bash $(srcdir)/tests/provider/check-provider.sh $(PROVIDER_CHECKS)
bench-provider: all $(PROVIDER_MPI_PROGS)
	$(PROVIDER_ENV) bash $(srcdir)/tests/provider/bench-provider.sh

# The fabtests build and the results stay across `make clean` (built once); distclean
# removes them.
distclean-local: distclean-provider
distclean-provider:
	-rm -rf tests/provider/fabtests-1.17.0 tests/provider/results tests/provider/bench \
		tests/provider/fabtests-build.log
