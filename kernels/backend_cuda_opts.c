/* The CUDA backend's option names, in builds with and without CUDA. */
#include "kernels/backend_cuda.h"

const char *backend_precision_name(backend_precision p) {
    static const char *const names[] = {"fp32", "tf32", "bf16"};
    _Static_assert(sizeof names / sizeof *names == BACKEND_PRECISION_COUNT, "one name each");
    return (unsigned)p < BACKEND_PRECISION_COUNT ? names[p] : "?";
}
