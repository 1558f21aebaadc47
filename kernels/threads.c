#include "kernels/threads.h"

#include <omp.h>

static int nthreads = 1;

void kernels_set_threads(int n) {
    nthreads = n > 0 ? n : 1;
    omp_set_num_threads(nthreads);
}

int kernels_threads(void) {
    return nthreads;
}
