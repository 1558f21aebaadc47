/* The detection loss on a CUDA stream: what the CUDA backend's `detloss` op runs
 * (backend_detloss, kernels/backend.h). The algorithm and the per-index bodies are in
 * kernels/cuda/detloss_dev.h; the CPU reference is kernels/detloss.c.
 *
 * Per call: the targets are padded and converted on the host (detloss_preprocess_targets, tiny)
 * and copied up; everything else (decode, assigner, loss, gradient, the sums) runs on the stream,
 * and the results are added to a device buffer of doubles. Nothing is copied back, so the call
 * returns as soon as the work is enqueued. The sums are reduced in a fixed order: the same inputs
 * give the same bits on the same GPU. */
#pragma once
#include "kernels/backend.h"

#include <stddef.h>

typedef struct detloss_cuda detloss_cuda;

/* Device scratch (grows with B, A, M; freed by destroy). device: the CUDA device it lives on. */
detloss_cuda *detloss_cuda_create(int device);
void detloss_cuda_destroy(detloss_cuda *l);

/* backend_detloss on `stream` (a cudaStream_t): preds/dpreds and d's anchors are device memory,
 * result device memory of BACKEND_DETLOSS_RESULTS doubles (added to). 0, or -1 with one line in
 * err (a topk above 16, reg_max outside 1..64, nc < 1, a CUDA error). */
int detloss_cuda_run(detloss_cuda *l, void *stream, const backend_detloss_desc *d,
                     const float *const preds[2], float *const dpreds[2], double *result, char *err,
                     size_t errlen);
