/* Thread count for every CPU kernel (OpenMP, and oneDNN, which follows OpenMP). The caller decides:
 * a worker on a 2-core machine running 2 ranks sets 1. */
#pragma once

void kernels_set_threads(int n);
int kernels_threads(void);
