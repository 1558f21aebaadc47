// CUDA presence probe. No GPU is an ordinary state here, not an error: the CPU backend runs.
#include <cuda_runtime.h>
#include <cudnn.h>
#include <nccl.h>
#include <stdio.h>

extern "C" {
#include "kernels/gpu.h"
}

extern "C" int gpu_probe(char *msg, size_t msglen) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        // 35: driver too old or absent, 34: stub driver, 100: no device. All mean "no GPU".
        if (msg && msglen)
            snprintf(msg, msglen, "no CUDA device: %s (code %d)", cudaGetErrorString(e), (int)e);
        return 0;
    }
    if (n == 0 && msg && msglen) snprintf(msg, msglen, "no CUDA device");
    if (n > 0 && msg && msglen) snprintf(msg, msglen, "%d CUDA device(s)", n);
    return n;
}

extern "C" const char *gpu_build_info(void) {
    static char buf[128];
    int rt = 0, nccl = 0;
    cudaRuntimeGetVersion(&rt);
    ncclGetVersion(&nccl);
    size_t dnn = cudnnGetVersion();
    snprintf(buf, sizeof buf, "CUDA runtime %d.%d, cuDNN %zu.%zu.%zu, NCCL %d.%d.%d", rt / 1000,
             (rt % 1000) / 10, dnn / 10000, (dnn / 100) % 100, dnn % 100, nccl / 10000,
             (nccl / 100) % 100, nccl % 100);
    return buf;
}
