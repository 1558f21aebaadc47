/* Which backend a worker trains on (device=, amp=): the CPU backend, or the CUDA backend on one
 * GPU per worker. A worker takes the GPU of its local rank (its rank among the workers on its
 * node, MPI_Comm_split_type): device=cuda gives local rank r GPU r; a list (device=0,1 or
 * cuda:N, Ultralytics' syntax) gives it the r-th listed GPU. */
#pragma once
#include "common/train_args.h"
#include "kernels/backend.h"
#include "kernels/backend_cuda.h"
#include "worker/mem_budget.h"

#include <mpi.h>
#include <stdbool.h>

/* amp= to the CUDA backend's arithmetic: True, fp16 and bf16 are mixed precision, which is bf16
 * here (no loss scaling; *fp16_asked is set for amp=fp16 so the caller can say so); False and
 * fp32 are fp32 data with TF32 convolutions, PyTorch's default for cuDNN. YOLO_CUDA_PRECISION
 * (fp32, tf32 or bf16) overrides it, e.g. fp32 for comparisons with the CPU reference. */
backend_precision device_precision(const train_args *a, bool *fp16_asked);

/* amp= to the CPU backend's training convolutions (validation runs fp32). False and fp32:
 * CONV2D_FP32. bf16: CONV2D_BF16 (through
 * oneDNN's bf16 primitives where the CPU multiplies bf16, else the float reference on rounded
 * inputs, slowly). True (the default) and fp16: CONV2D_BF16 when all_native (every worker's CPU
 * has AVX512_BF16: bf16_cpu_has_native, agreed over the workers), else CONV2D_FP32. why gets one
 * line saying which and why, for the run's log and its checkpoints. */
conv2d_prec device_cpu_precision(const train_args *a, bool all_native, char *why, size_t len);

/* The training convolutions of a worker on a GPU backend whose arithmetic is p
 * (model_set_conv_precision): CONV2D_BF16, the bf16 graph that the CPU's amp also trains (the
 * convolutions read bf16 copies of their inputs, which the BN + SiLU ops write instead of float
 * outputs that only convolutions read: worker/model_fuse.c), when p is BF16 and the backend has
 * the bf16 convolutions (backend_supports); else CONV2D_FP32, the backend's precision then
 * applying inside each fp32 convolution. */
conv2d_prec device_gpu_conv_precision(const backend *be, backend_precision p);

/* The CUDA backend's options for GPU `gpu` at arithmetic p. deterministic (train's
 * deterministic=, default True, as Ultralytics') picks cuDNN's algorithms by its heuristics
 * (BACKEND_CONV_HEURISTIC: no trial runs, so two runs on one GPU make the same choices and give
 * the same bits; Ultralytics' PyTorch leaves cudnn.benchmark off too) among deterministic ones;
 * deterministic=False times them (BACKEND_CONV_FIND, the depthwise AUTO timing included) and
 * also allows algorithms whose sums vary run to run: the fastest, not reproducible. */
backend_cuda_opts device_cuda_options(int gpu, backend_precision p, bool deterministic);

/* The GPU index for local rank `local` under device=, or -1 with one line in err (device=cpu,
 * more workers on the node than GPUs listed, or than GPUs present). */
int device_gpu_for(const train_args *a, int local, int gpus_present, char *err, size_t errlen);

/* The worker's backend: the CPU backend with `threads` for device=cpu (in its device-memory test
 * mode when YOLO_TEST_DEVICE_MEMORY=1, so tests take the GPU's paths), else the CUDA backend on
 * this worker's GPU (collective over wcomm, the workers' communicator). NULL with one line: the
 * reason (no GPU, a bad index, too many workers on the node); the caller names the rank. */
backend *device_backend_create(const train_args *a, MPI_Comm wcomm, int threads, char *err,
                               size_t errlen);

/* Before launch (worker info): can `workers` workers on this machine each get a GPU under
 * device=? 0, or -1 with one line. device=cpu is always fine. */
int device_check_local(const train_args *a, int workers, char *err, size_t errlen);

/* Does a training worker of budget b fit? device=cpu: `workers` of them in this machine's
 * available memory (MemAvailable). A GPU: one worker on GPU `gpu` (gpu < 0: on each GPU that
 * local ranks 0..workers-1 would take) in its free memory, less the loader's buffers, which stay
 * in host memory. 0, or -1 with one line giving what is needed and what there is. */
int device_check_memory(const train_args *a, const mem_budget *b, int workers, int gpu, char *err,
                        size_t errlen);
