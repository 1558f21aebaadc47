/* Functions compiled for both the host and the device. The CUDA kernels of kernels/cuda/ are thin
 * loops over the per-element (or per-partial) functions of the kernels/cuda/ ..._hd.h headers;
 * those headers are plain C as well, so the CPU tests call the same functions over every element
 * and compare them with the CPU kernels without a GPU (tests/test_cuda_hd.c, docs/cuda.md). */
#pragma once
#include <stdint.h>

#ifdef __CUDACC__
#define YOLO_HD static inline __host__ __device__
#else
#define YOLO_HD static inline
#endif

/* The bits of a float and back (for sort keys and integer atomics on floats). */
YOLO_HD uint32_t hd_float_bits(float x) {
    union {
        float f;
        uint32_t u;
    } v;
    v.f = x;
    return v.u;
}
YOLO_HD float hd_bits_float(uint32_t u) {
    union {
        float f;
        uint32_t u;
    } v;
    v.u = u;
    return v.f;
}
