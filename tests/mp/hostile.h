/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* hostile.h - the lying peer of the robustness tests (see hostile.c). */
#ifndef SCIF_TESTS_HOSTILE_H
#define SCIF_TESTS_HOSTILE_H
#include <stdint.h>
int hostile_run(uint16_t node, uint16_t port, const char *kind);
#endif
