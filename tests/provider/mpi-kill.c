// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * mpi-kill.c - one rank dies abruptly in the middle of a run (SIGKILL: no MPI_Finalize, no
 * close of its endpoints) while the others are blocked in communication with it. The job
 * must then end with an error, never hang: check-provider.sh runs it under timeout(1) and
 * requires a non-zero exit that is not the timeout's.
 *
 * The ranks exchange messages in a ring and all-reduce a counter each round. Before the kill,
 * rank 0 prints "mpi-kill: ROUNDS rounds done by all ranks", which the script also requires:
 * a job that failed to start (no provider, say) must not pass for one that survived a death.
 * The victim (the last rank) prints "mpi-kill: rank R dies now" and kills itself; the others
 * go on: blocking receives from the dead rank, then collectives that include it.
 *
 * No watchdog here (unlike the other programs): a rank that hangs must show as a hang, not
 * as the abnormal exit this test expects.
 */
#include "mpi-common.h"

#define ROUNDS_BEFORE 20

int main(int argc, char **argv)
{
	int nranks;
	unsigned char sbuf[4096], rbuf[4096];

	MPI_Init(&argc, &argv);
	MPI_Comm_rank(MPI_COMM_WORLD, &mt_rank);
	MPI_Comm_size(MPI_COMM_WORLD, &nranks);
	if (nranks < 2) {
		if (mt_rank == 0)
			printf("error: mpi-kill needs at least 2 ranks\n");
		MPI_Finalize();
		return 1;
	}
	int right = (mt_rank + 1) % nranks, left = (mt_rank + nranks - 1) % nranks;
	const int victim = nranks - 1;

	for (int round = 0; round < 1000000; round++) {
		if (round == ROUNDS_BEFORE) {
			if (mt_rank == 0)
				printf("mpi-kill: %d rounds done by all ranks\n", ROUNDS_BEFORE);
			fflush(stdout);
			MPI_Barrier(MPI_COMM_WORLD);
			if (mt_rank == victim) {
				printf("mpi-kill: rank %d dies now\n", mt_rank);
				fflush(stdout);
				raise(SIGKILL);
			}
		}
		MPI_Request req;
		int one = 1, sum = 0;

		mt_fill(sbuf, sizeof(sbuf), (uint32_t)round);
		MPI_Irecv(rbuf, sizeof(rbuf), MPI_BYTE, left, round & 0x7fff, MPI_COMM_WORLD, &req);
		MPI_Send(sbuf, sizeof(sbuf), MPI_BYTE, right, round & 0x7fff, MPI_COMM_WORLD);
		MPI_Wait(&req, MPI_STATUS_IGNORE);
		mt_verify(rbuf, sizeof(rbuf), (uint32_t)round, "ring message");
		MPI_Allreduce(&one, &sum, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
		if (sum != nranks) {
			mt_fail("allreduce counted %d ranks, not %d", sum, nranks);
			break;
		}
	}
	/* Not reached while the victim is dead: every rank waits on it. */
	printf("mpi-kill: rank %d finished every round\n", mt_rank);
	MPI_Finalize();
	return 0;
}
