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

/* Depthwise convolutions (groups == cin == cout, windows up to 7x7): our kernel
 * (kernels/cuda/conv2d_depthwise.cu) or cuDNN with a group count.
 *  AUTO (the default): chosen per shape and direction when the shape is planned, the way cuDNN
 *        chooses its algorithms: under search FIND both are timed on scratch buffers and the
 *        faster is kept for the backend's life (backend_depthwise_pick); under HEURISTIC no
 *        timing, our kernel. Runs on the same GPU may choose differently (timing noise), as
 *        cudnnFind may (docs/cuda.md, "Depthwise").
 *  OWN, CUDNN: always that one (the op harness checks both). */
typedef enum backend_depthwise {
    BACKEND_DEPTHWISE_AUTO,
    BACKEND_DEPTHWISE_OWN,
    BACKEND_DEPTHWISE_CUDNN,
    BACKEND_DEPTHWISE_COUNT
} backend_depthwise;
const char *backend_depthwise_name(backend_depthwise d); /* "auto", "own", "cudnn" */

/* How a conv shape's algorithms are chosen: cudnnFind* (runs each candidate once, at planning
 * time) or cudnnGet*_v7 (heuristics only, no trial runs). */
typedef enum backend_conv_search { BACKEND_CONV_FIND, BACKEND_CONV_HEURISTIC } backend_conv_search;

typedef struct backend_cuda_opts {
    int device;                  /* CUDA device index (the caller maps ranks to devices) */
    backend_precision precision; /* default FP32 */
    backend_depthwise depthwise; /* default AUTO */
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

/* AUTO's choice for one direction of one depthwise shape, from what was measured (a pure
 * function, unit-tested on the host). own_ms, cudnn_ms: mean milliseconds of one call of each
 * (<= 0 or not finite: not measured); cudnn_deterministic: the cuDNN algorithm chosen for the
 * direction gives the same bits every run; allow_nondeterministic: backend_cuda_opts'. Our kernel
 * (deterministic) unless cuDNN was measured faster by more than BACKEND_DEPTHWISE_MARGIN, and
 * never a nondeterministic cuDNN algorithm unless allowed. Returns OWN or CUDNN. */
#define BACKEND_DEPTHWISE_MARGIN 0.05 /* cuDNN must be 5% faster: near-ties stay on ours */
backend_depthwise backend_depthwise_pick(double own_ms, double cudnn_ms, bool cudnn_deterministic,
                                         bool allow_nondeterministic);

/* What AUTO chose for one depthwise shape (backend_cuda_depthwise_choices). */
typedef struct backend_depthwise_choice {
    conv2d_desc d;
    bool timed;                    /* false: search HEURISTIC, nothing measured */
    backend_depthwise use[3];      /* forward, backward data, backward filter: OWN or CUDNN */
    double own_ms[3], cudnn_ms[3]; /* mean ms of one call each, as the choice saw them */
    double find_ms[3];             /* cudnnFind's own time for its algorithm (-1: heuristics) */
    bool cudnn_deterministic[3];   /* cuDNN's algorithm for the direction is deterministic */
} backend_depthwise_choice;
/* The choices AUTO has made so far (one per depthwise shape planned, in planning order): up to
 * max into out; returns how many there are. 0 for any backend other than a CUDA one in AUTO. */
int backend_cuda_depthwise_choices(const backend *be, backend_depthwise_choice *out, int max);
