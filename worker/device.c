#include "worker/device.h"

#include "common/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

backend_precision device_precision(const train_args *a, bool *fp16_asked) {
    if (fp16_asked) *fp16_asked = !strcmp(a->amp, "fp16");
    const char *env = getenv("YOLO_CUDA_PRECISION");
    if (env && *env)
        for (int p = 0; p < BACKEND_PRECISION_COUNT; p++)
            if (!strcmp(env, backend_precision_name((backend_precision)p)))
                return (backend_precision)p;
    bool mixed = !strcmp(a->amp, "True") || !strcmp(a->amp, "fp16") || !strcmp(a->amp, "bf16");
    return mixed ? BACKEND_PRECISION_BF16 : BACKEND_PRECISION_TF32;
}

conv2d_prec device_cpu_precision(const train_args *a, bool all_native, char *why, size_t len) {
    if (!strcmp(a->amp, "False") || !strcmp(a->amp, "fp32")) {
        snprintf(why, len, "fp32 convolutions (amp=%s)", a->amp);
        return CONV2D_FP32;
    }
    if (!strcmp(a->amp, "bf16")) {
        snprintf(why, len, "bf16 training convolutions, fp32 validation (amp=bf16%s)",
                 all_native ? "" : "; a worker's CPU has no AVX512_BF16: emulated, slow");
        return CONV2D_BF16;
    }
    if (!all_native) {
        snprintf(why, len, "fp32 convolutions (amp=%s, but a worker's CPU has no AVX512_BF16)",
                 a->amp);
        return CONV2D_FP32;
    }
    snprintf(why, len,
             "bf16 training convolutions; fp32 weights, BN, loss and validation (amp=%s and every "
             "worker's CPU has AVX512_BF16; amp=False for fp32)",
             a->amp);
    return CONV2D_BF16;
}

conv2d_prec device_gpu_conv_precision(const backend *be, backend_precision p) {
    bool graph = backend_supports(be, BACKEND_OP_TO_BF16) &&
                 backend_supports(be, BACKEND_OP_CONV2D_FORWARD_BF16) &&
                 backend_supports(be, BACKEND_OP_CONV2D_BACKWARD_BF16);
    return p == BACKEND_PRECISION_BF16 && graph ? CONV2D_BF16 : CONV2D_FP32;
}

backend_cuda_opts device_cuda_options(int gpu, backend_precision p, bool deterministic) {
    return (backend_cuda_opts){.device = gpu,
                               .precision = p,
                               .search = deterministic ? BACKEND_CONV_HEURISTIC : BACKEND_CONV_FIND,
                               .nondeterministic = !deterministic};
}

int device_gpu_for(const train_args *a, int local, int gpus_present, char *err, size_t errlen) {
    int ids[64], n = train_args_gpus(a, ids, 64);
    if (n == 0) return errf(err, errlen, "device=%s is not a GPU", a->device);
    if (n > 0 && local >= n)
        return errf(err, errlen,
                    "device=%s lists %d GPU(s) but this node runs at least %d workers: list one "
                    "GPU per worker of the node (e.g. device=0,1 for 2)",
                    a->device, n, local + 1);
    int gpu = n > 0 ? ids[local] : local;
    if (gpu >= gpus_present)
        return errf(err, errlen, "device=%s: %s %d does not exist (this node has %d GPU%s)",
                    a->device, n > 0 ? "GPU" : "worker of local rank", gpu, gpus_present,
                    gpus_present == 1 ? "" : "s");
    return gpu;
}

backend *device_backend_create(const train_args *a, MPI_Comm wcomm, int threads, char *err,
                               size_t errlen) {
    if (train_args_gpus(a, NULL, 0) == 0) {
        /* YOLO_TEST_DEVICE_MEMORY=1: the CPU backend's test mode, in which the trainer takes
         * every path of a GPU (batch ring, uploads, device-side loss) over host memory */
        const char *dm = getenv("YOLO_TEST_DEVICE_MEMORY");
        return backend_cpu_create(
            &(backend_cpu_opts){.threads = threads,
                                .conv_impl = conv2d_impl_from_env(CONV2D_AUTO),
                                .device_memory = dm && atoi(dm) > 0});
    }
    MPI_Comm node;
    int local = 0, wrank = 0;
    if (MPI_Comm_rank(wcomm, &wrank) != MPI_SUCCESS ||
        MPI_Comm_split_type(wcomm, MPI_COMM_TYPE_SHARED, wrank, MPI_INFO_NULL, &node) !=
            MPI_SUCCESS) {
        errf(err, errlen, "MPI_Comm_split_type failed: cannot tell the local rank");
        return NULL;
    }
    int rc = MPI_Comm_rank(node, &local);
    MPI_Comm_free(&node);
    if (rc != MPI_SUCCESS) {
        errf(err, errlen, "MPI_Comm_rank (node) failed");
        return NULL;
    }
    char why[256];
    int present = backend_cuda_device_count(why, sizeof why);
    if (present == 0) {
        errf(err, errlen, "device=%s: %s; use device=cpu", a->device, why);
        return NULL;
    }
    int gpu = device_gpu_for(a, local, present, err, errlen);
    if (gpu < 0) return NULL;
    backend_cuda_opts o = device_cuda_options(gpu, device_precision(a, NULL), a->deterministic);
    return backend_cuda_create(&o, err, errlen);
}

int device_check_local(const train_args *a, int workers, char *err, size_t errlen) {
    int listed = train_args_gpus(a, NULL, 0);
    if (listed == 0) return 0;
    if (listed == -2)
        return errf(err, errlen,
                    "device=%s: expected cpu, cuda, cuda:N or GPU indices such as 0 or 0,1",
                    a->device);
    char why[256];
    int present = backend_cuda_device_count(why, sizeof why);
    if (present == 0) return errf(err, errlen, "device=%s: %s; use device=cpu", a->device, why);
    return device_gpu_for(a, workers - 1, present, err, errlen) < 0 ? -1 : 0;
}

static int check_gpu_memory(const train_args *a, const mem_budget *b, int gpu, char *err,
                            size_t errlen) {
    double free_b, total_b;
    char why[256];
    if (backend_cuda_device_memory(gpu, &free_b, &total_b, why, sizeof why) != 0)
        return errf(err, errlen, "device=%s: %s", a->device, why);
    mem_budget on_gpu = *b;
    on_gpu.total -= on_gpu.loader;
    on_gpu.loader = 0;
    char msg[512];
    if (mem_budget_check(&on_gpu, 1, free_b, (int)a->imgsz, (int)a->batch, msg, sizeof msg) == 0)
        return 0;
    return errf(err, errlen, "device=%s, GPU %d (%.1f GiB in all): %s", a->device, gpu,
                total_b / (1024.0 * 1024 * 1024), msg);
}

int device_check_memory(const train_args *a, const mem_budget *b, int workers, int gpu, char *err,
                        size_t errlen) {
    if (train_args_gpus(a, NULL, 0) == 0)
        return mem_budget_check(b, workers, mem_available(), (int)a->imgsz, (int)a->batch, err,
                                errlen);
    if (gpu >= 0) return check_gpu_memory(a, b, gpu, err, errlen);
    char why[256];
    int present = backend_cuda_device_count(why, sizeof why);
    if (present == 0) return errf(err, errlen, "device=%s: %s; use device=cpu", a->device, why);
    for (int r = 0; r < workers; r++) {
        int g = device_gpu_for(a, r, present, err, errlen);
        if (g < 0 || check_gpu_memory(a, b, g, err, errlen) != 0) return -1;
    }
    return 0;
}
