/* Waiting for an MPI message without spinning a core (the coordinator shares the machine with
 * the workers it waits for). */
#pragma once

/* Returns once a message from src with tag can be received: probes every millisecond. */
void mpi_wait_message(int src, int tag);
