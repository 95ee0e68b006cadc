/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * shim-bar2.h - for the test programs that reach a card's aperture raw, without libscif: map
 * the whole of BAR2 of kernel/shim's device @path (a card's view of the aperture).
 */
#ifndef SCIF_TESTS_SHIM_BAR2_H
#define SCIF_TESTS_SHIM_BAR2_H

#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "scif_shim.h"

/* BAR2 of @path mapped shared, its length in *@size; NULL if it cannot be (errno). */
static inline void *shim_map_bar2(const char *path, uint64_t *size)
{
	struct scif_shim_info info;
	void *p = MAP_FAILED;
	int fd = open(path, O_RDWR | O_CLOEXEC);

	memset(&info, 0, sizeof(info));
	if (fd >= 0 && ioctl(fd, SCIF_SHIM_IOC_INFO, &info) == 0 &&
	    (info.bars[2].flags & SCIF_SHIM_BAR_MMAP) && info.bars[2].size >= 4096)
		p = mmap(NULL, info.bars[2].size, PROT_READ | PROT_WRITE, MAP_SHARED, fd,
			 (off_t)info.bars[2].mmap_offset);
	if (fd >= 0)
		close(fd); /* the mapping keeps the device file */
	*size = info.bars[2].size;
	return p == MAP_FAILED ? NULL : p;
}

#endif /* SCIF_TESTS_SHIM_BAR2_H */
