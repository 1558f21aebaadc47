/* The CUDA backend's option names, in builds with and without CUDA. */
#include "kernels/backend_cuda.h"

#include <math.h>

const char *backend_precision_name(backend_precision p) {
    static const char *const names[] = {"fp32", "tf32", "bf16"};
    _Static_assert(sizeof names / sizeof *names == BACKEND_PRECISION_COUNT, "one name each");
    return (unsigned)p < BACKEND_PRECISION_COUNT ? names[p] : "?";
}

const char *backend_depthwise_name(backend_depthwise d) {
    static const char *const names[] = {"auto", "own", "cudnn"};
    _Static_assert(sizeof names / sizeof *names == BACKEND_DEPTHWISE_COUNT, "one name each");
    return (unsigned)d < BACKEND_DEPTHWISE_COUNT ? names[d] : "?";
}

backend_depthwise backend_depthwise_pick(double own_ms, double cudnn_ms, bool cudnn_deterministic,
                                         bool allow_nondeterministic) {
    if (!cudnn_deterministic && !allow_nondeterministic) return BACKEND_DEPTHWISE_OWN;
    if (!(isfinite(own_ms) && own_ms > 0 && isfinite(cudnn_ms) && cudnn_ms > 0))
        return BACKEND_DEPTHWISE_OWN; /* not both measured: no evidence against ours */
    return cudnn_ms < own_ms * (1 - BACKEND_DEPTHWISE_MARGIN) ? BACKEND_DEPTHWISE_CUDNN
                                                              : BACKEND_DEPTHWISE_OWN;
}
