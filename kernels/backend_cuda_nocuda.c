/* The CUDA backend in a build without nvcc (Makefile CUDA=0): it cannot be made, and says why. */
#include "kernels/backend_cuda.h"

#include "common/log.h"

#include <stdio.h>

int backend_cuda_device_count(char *why, size_t whylen) {
    if (why && whylen) snprintf(why, whylen, "built without CUDA");
    return 0;
}

int backend_cuda_device_memory(int device, double *free_bytes, double *total_bytes, char *why,
                               size_t whylen) {
    (void)device;
    *free_bytes = *total_bytes = 0;
    if (why && whylen) snprintf(why, whylen, "built without CUDA");
    return -1;
}

backend *backend_cuda_create(const backend_cuda_opts *opts, char *err, size_t errlen) {
    (void)opts;
    errf(err, errlen, "CUDA backend: built without CUDA (nvcc was not found; see docs/cuda.md)");
    return NULL;
}

const backend_cuda_opts *backend_cuda_options(const backend *be) {
    (void)be;
    return NULL;
}

int backend_cuda_depthwise_choices(const backend *be, backend_depthwise_choice *out, int max) {
    (void)be, (void)out, (void)max;
    return 0;
}
