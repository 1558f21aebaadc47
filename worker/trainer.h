/* The worker's training role: started by mpirun next to the coordinator (world rank >= 1). */
#pragma once

/* Runs the whole job from this worker's side; returns the process exit code. */
int worker_train_main(void);
