# SPDX-License-Identifier: LGPL-2.1-or-later
# `make check-virtio`: the daemon and the card frontend end to end, with real clients, each
# card in network and mount namespaces of its own (tests/virtio/check-virtio.sh; run as root).
#   VIRTIO_CHECKS="console block" runs some of the check groups only.
# `make bench-virtio`: iperf3 over virtio-net against a veth pair, fio over virtio-block
# against the image file on the host (tests/virtio/bench-virtio.sh).
EXTRA_DIST += tests/virtio/virtio.mk tests/virtio/check-virtio.sh tests/virtio/lib.sh \
	tests/virtio/t-console.sh tests/virtio/t-block.sh tests/virtio/t-net.sh \
	tests/virtio/t-lifecycle.sh tests/virtio/bench-virtio.sh
VIRTIO_CHECKS =
VIRTIO_ENV = top_builddir='$(abs_top_builddir)' top_srcdir='$(abs_top_srcdir)'
.PHONY: check-virtio bench-virtio
check-virtio: all
	$(VIRTIO_ENV) bash $(srcdir)/tests/virtio/check-virtio.sh $(VIRTIO_CHECKS)
bench-virtio: all
	$(VIRTIO_ENV) bash $(srcdir)/tests/virtio/bench-virtio.sh
