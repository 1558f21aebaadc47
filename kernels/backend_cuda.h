/* The CUDA backend (kernels/backend_cuda.cu and kernels/cuda/ (one .cu per op family);
 * kernels/backend_cuda_nocuda.c in a build without nvcc): the backend interface of
 * kernels/backend.h on one GPU. docs/cuda.md has the whole picture.
 *
 * One backend = one device and one compute stream: every op, device copy and zeroing is enqueued
 * on that stream in call order; events are cudaEvents on it. Memory is plain cudaMalloc'd device
 * memory (backend_memory_is_host is false). Convolutions run through cuDNN (NHWC), with the
 * algorithm of each shape chosen once and kept in the backend, and one shared workspace; the
 * other ops are our own kernels, each beside the CPU kernel it must match (kernels/cuda/).
 *
 * Every CUDA, cuDNN and cuBLAS call is checked: a failure inside an op ends the process with one
 * line naming the file:line, the call, the error string and the backend ("cuda:0"), as every
 * other backend failure does (ops return nothing). backend_cuda_create itself never ends the
 * process: it returns NULL with the reason (no GPU, a bad device index, built without CUDA). */
#pragma once
#include "kernels/backend.h"

#include <stdbool.h>
#include <stddef.h>

/* Arithmetic of the convolutions (the other ops always compute in fp32):
 *  FP32: fp32 data, fp32 FMA math (no TF32): the mode the op harness compares tightly with the
 *        CPU reference;
 *  TF32: fp32 data, tensor-core TF32 math allowed (cuDNN's default on Ampere and later);
 *  BF16: amp=True: x and w rounded to bfloat16, tensor-core math with fp32 accumulation, y
 *        rounded to bfloat16 (then stored as fp32). Master weights, gradients' accumulation,
 *        optimizer state, BN statistics and the loss stay fp32. */
typedef enum backend_precision {
    BACKEND_PRECISION_FP32,
    BACKEND_PRECISION_TF32,
    BACKEND_PRECISION_BF16,
    BACKEND_PRECISION_COUNT
} backend_precision;
const char *backend_precision_name(backend_precision p); /* "fp32", "tf32", "bf16" */

/* Depthwise convolutions (groups == cin == cout): our kernel (kernels/cuda/conv2d_depthwise.cu)
 * or cuDNN with a group count. The GPU benchmark decides the default. */
typedef enum backend_depthwise { BACKEND_DEPTHWISE_OWN, BACKEND_DEPTHWISE_CUDNN } backend_depthwise;

/* How a conv shape's algorithms are chosen: cudnnFind* (runs each candidate once, at planning
 * time) or cudnnGet*_v7 (heuristics only, no trial runs). */
typedef enum backend_conv_search { BACKEND_CONV_FIND, BACKEND_CONV_HEURISTIC } backend_conv_search;

typedef struct backend_cuda_opts {
    int device;                  /* CUDA device index (the caller maps ranks to devices) */
    backend_precision precision; /* default FP32 */
    backend_depthwise depthwise; /* default OWN */
    backend_conv_search search;  /* default FIND */
    size_t workspace_limit;      /* bytes of cuDNN workspace one algorithm may use; 0: 256 MiB */
    bool nondeterministic;       /* also allow cuDNN algorithms whose sums vary run to run */
    bool sync_each_op;           /* debugging: synchronise and check after every op, so an
                                    asynchronous failure is reported by the op that caused it */
} backend_cuda_opts;

/* Number of CUDA devices; 0 with the reason in why (no driver, no device, built without CUDA). */
int backend_cuda_device_count(char *why, size_t whylen);
/* Free and total bytes of device `device` (cudaMemGetInfo); -1 with the reason in why. Checked
 * before a worker allocates its model, so a batch too large for the GPU is one line. */
int backend_cuda_device_memory(int device, double *free_bytes, double *total_bytes, char *why,
                               size_t whylen);

/* opts NULL: all defaults (device 0). NULL with a one-line reason in err when the backend cannot
 * be made (no device, bad index, a failed handle creation). */
backend *backend_cuda_create(const backend_cuda_opts *opts, char *err, size_t errlen);

/* The options a CUDA backend was made with; NULL for any other backend. */
const backend_cuda_opts *backend_cuda_options(const backend *be);
