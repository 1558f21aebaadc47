// The CUDA backend: device selection, memory, copies, the stream, events, checked calls, and the
// function table whose ops live in kernels/cuda/*.cu (one file per op family, each beside the CPU
// kernel it matches). kernels/backend_cuda.h says what it promises; docs/cuda.md how it is built
// and tested.
#include "kernels/cuda/cuda_ctx.cuh"
#include "kernels/cuda/ops.cuh"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern "C" {
#include "common/log.h"
}

// ---- checked calls -------------------------------------------------------------------------

void cuda_fail(const cuda_ctx *c, const char *file, int line, const char *call, const char *what) {
    log_fatal_at(file, line, "CUDA backend %s, op %s: %s failed: %s", c ? c->name : "cuda",
                 c && c->op ? c->op : "-", call, what);
}

const char *cublas_status_name(cublasStatus_t s) {
    switch (s) {
    case CUBLAS_STATUS_SUCCESS:
        return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED:
        return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED:
        return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE:
        return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH:
        return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR:
        return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED:
        return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR:
        return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED:
        return "CUBLAS_STATUS_NOT_SUPPORTED";
    default:
        return "cuBLAS error";
    }
}

cuda_ctx *cuda_enter(backend *be, const char *op) {
    cuda_ctx *c = cuda_ctx_of(be);
    c->op = op;
    // the current device is per host thread: whoever calls, the op runs on this backend's GPU
    CUDA_CHECK(cudaSetDevice(c->opts.device));
    return c;
}

void cuda_leave(cuda_ctx *c) {
    if (c->opts.sync_each_op) {
        CUDA_CHECK(cudaGetLastError());
        CUDA_CHECK(cudaStreamSynchronize(c->stream));
    }
    c->op = NULL;
}

void *cuda_scratch(cuda_ctx *c, size_t bytes) {
    if (bytes > c->scratch_bytes) {
        // the old region may still be read by enqueued work
        CUDA_CHECK(cudaStreamSynchronize(c->stream));
        CUDA_CHECK(cudaFree(c->scratch));
        size_t grow = c->scratch_bytes + c->scratch_bytes / 2;
        size_t want = bytes > grow ? bytes : grow;
        c->scratch = NULL;
        CUDA_CHECK(cudaMalloc(&c->scratch, want));
        c->scratch_bytes = want;
    }
    return c->scratch;
}

void *cuda_buf_need(cuda_ctx *c, cuda_buf *b, size_t bytes) {
    if (bytes == 0) bytes = 16;
    if (b->cap < bytes) {
        CUDA_CHECK(cudaStreamSynchronize(c->stream)); // enqueued work may still use the old one
        cuda_buf_free(c, b);
        CUDA_CHECK(cudaMalloc(&b->p, bytes));
        b->cap = bytes;
    }
    return b->p;
}

void cuda_buf_free(cuda_ctx *c, cuda_buf *b) {
    CUDA_CHECK(cudaFree(b->p));
    b->p = NULL;
    b->cap = 0;
}

// ---- memory --------------------------------------------------------------------------------

static void *cu_alloc(backend *be, size_t bytes) {
    cuda_ctx *c = cuda_enter(be, "alloc");
    void *p = NULL;
    cudaError_t e = cudaMalloc(&p, bytes ? bytes : 1);
    if (e != cudaSuccess) {
        size_t free_b = 0, total_b = 0;
        cudaMemGetInfo(&free_b, &total_b); // best effort, for the message only
        FATAL("CUDA backend %s: cudaMalloc of %zu bytes failed: %s (%zu of %zu MiB free)", c->name,
              bytes, cudaGetErrorString(e), free_b >> 20, total_b >> 20);
    }
    c->op = NULL;
    return p;
}

static void cu_free(backend *be, void *p) {
    cuda_ctx *c = cuda_enter(be, "free");
    CUDA_CHECK(cudaFree(p));
    c->op = NULL;
}

// Returns when the host buffer may be reused: a copy from pageable memory is staged by the
// driver before cudaMemcpyAsync returns; from page-locked memory it is not, so then we wait.
static void cu_to_device(backend *be, void *dst, const void *src, size_t bytes) {
    cuda_ctx *c = cuda_enter(be, "to_device");
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, c->stream));
    cudaPointerAttributes a;
    CUDA_CHECK(cudaPointerGetAttributes(&a, src));
    if (a.type == cudaMemoryTypeHost) CUDA_CHECK(cudaStreamSynchronize(c->stream));
    cuda_leave(c);
}

static void cu_to_host(backend *be, void *dst, const void *src, size_t bytes) {
    cuda_ctx *c = cuda_enter(be, "to_host");
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, c->stream));
    CUDA_CHECK(cudaStreamSynchronize(c->stream));
    c->op = NULL;
}

static void cu_copy(backend *be, void *dst, const void *src, size_t bytes) {
    cuda_ctx *c = cuda_enter(be, "copy");
    if (dst != src)
        CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, c->stream));
    cuda_leave(c);
}

static void cu_copy_2d(backend *be, void *dst, size_t dst_pitch, const void *src, size_t src_pitch,
                       size_t width, size_t rows) {
    cuda_ctx *c = cuda_enter(be, "copy_2d");
    CUDA_CHECK(cudaMemcpy2DAsync(dst, dst_pitch, src, src_pitch, width, rows,
                                 cudaMemcpyDeviceToDevice, c->stream));
    cuda_leave(c);
}

static void cu_zero(backend *be, void *dst, size_t bytes) {
    cuda_ctx *c = cuda_enter(be, "zero");
    CUDA_CHECK(cudaMemsetAsync(dst, 0, bytes, c->stream));
    cuda_leave(c);
}

// ---- synchronisation and events ------------------------------------------------------------

static void cu_synchronize(backend *be) {
    cuda_ctx *c = cuda_enter(be, "synchronize");
    CUDA_CHECK(cudaStreamSynchronize(c->stream));
    c->op = NULL;
}

static void cu_event_init(backend *be, backend_event *ev) {
    cuda_ctx *c = cuda_enter(be, "event_create");
    cudaEvent_t e;
    CUDA_CHECK(cudaEventCreate(&e));
    ev->handle = (void *)e;
    c->op = NULL;
}

static void cu_event_fini(backend *be, backend_event *ev) {
    cuda_ctx *c = cuda_enter(be, "event_destroy");
    if (ev->handle) CUDA_CHECK(cudaEventDestroy((cudaEvent_t)ev->handle));
    ev->handle = NULL;
    c->op = NULL;
}

static void cu_event_record(backend *be, backend_event *ev) {
    cuda_ctx *c = cuda_enter(be, "event_record");
    CUDA_CHECK(cudaEventRecord((cudaEvent_t)ev->handle, c->stream));
    c->op = NULL;
}

static void cu_event_wait(backend *be, backend_event *ev) {
    cuda_ctx *c = cuda_enter(be, "event_wait");
    CUDA_CHECK(cudaStreamWaitEvent(c->stream, (cudaEvent_t)ev->handle, 0));
    c->op = NULL;
}

static void cu_event_synchronize(backend *be, backend_event *ev) {
    cuda_ctx *c = cuda_enter(be, "event_synchronize");
    CUDA_CHECK(cudaEventSynchronize((cudaEvent_t)ev->handle));
    c->op = NULL;
}

static double cu_event_elapsed(backend *be, backend_event *start, backend_event *end) {
    cuda_ctx *c = cuda_enter(be, "event_elapsed");
    CUDA_CHECK(cudaEventSynchronize((cudaEvent_t)end->handle));
    float ms = 0;
    CUDA_CHECK(cudaEventElapsedTime(&ms, (cudaEvent_t)start->handle, (cudaEvent_t)end->handle));
    c->op = NULL;
    return ms / 1000.0;
}

// ---- creation ------------------------------------------------------------------------------

static void cu_destroy(backend *be) {
    cuda_ctx *c = cuda_enter(be, "destroy");
    CUDA_CHECK(cudaStreamSynchronize(c->stream));
    cuda_ops_release(c);
    CUDA_CHECK(cudaFree(c->scratch));
    CUDA_CHECK(cudaFree(c->ws));
    CUDA_CHECK(cudaFree(c->gnorm));
    CUBLAS_CHECK(cublasDestroy(c->cublas));
    CUDNN_CHECK(cudnnDestroy(c->cudnn));
    CUDA_CHECK(cudaStreamDestroy(c->stream));
    free(c);
    free(be);
}

// Interop (backend_device, backend_native_stream): NCCL shares the device and waits on our events.
static int cu_device(const backend *be) {
    return cuda_ctx_of(be)->opts.device;
}
static void *cu_native_stream(const backend *be) {
    return (void *)cuda_ctx_of(be)->stream;
}

// The required entries (C++ has no partial designated initialisers without a warning).
static void fill_base(backend_i *f) {
    *f = backend_i{};
    f->destroy = cu_destroy;
    f->device = cu_device;
    f->native_stream = cu_native_stream;
    f->alloc = cu_alloc;
    f->free = cu_free;
    f->to_device = cu_to_device;
    f->to_host = cu_to_host;
    f->copy = cu_copy;
    f->copy_2d = cu_copy_2d;
    f->zero = cu_zero;
    f->synchronize = cu_synchronize;
    f->event_init = cu_event_init;
    f->event_fini = cu_event_fini;
    f->event_record = cu_event_record;
    f->event_wait = cu_event_wait;
    f->event_synchronize = cu_event_synchronize;
    f->event_elapsed = cu_event_elapsed;
}

extern "C" int backend_cuda_device_count(char *why, size_t whylen) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        if (why && whylen)
            snprintf(why, whylen, "no CUDA device: %s (code %d)", cudaGetErrorString(e), (int)e);
        return 0;
    }
    if (why && whylen) snprintf(why, whylen, n ? "%d CUDA device(s)" : "no CUDA device", n);
    return n;
}

extern "C" int backend_cuda_device_memory(int device, double *free_bytes, double *total_bytes,
                                          char *why, size_t whylen) {
    *free_bytes = *total_bytes = 0;
    int prev = 0;
    size_t f = 0, t = 0;
    cudaError_t e = cudaGetDevice(&prev);
    if (e == cudaSuccess) e = cudaSetDevice(device);
    if (e == cudaSuccess) e = cudaMemGetInfo(&f, &t);
    cudaError_t back = cudaSetDevice(prev); // the caller's device stays current
    if (e == cudaSuccess) e = back;
    if (e != cudaSuccess) {
        if (why && whylen)
            snprintf(why, whylen, "GPU %d: cudaMemGetInfo failed: %s", device,
                     cudaGetErrorString(e));
        return -1;
    }
    *free_bytes = (double)f;
    *total_bytes = (double)t;
    return 0;
}

extern "C" const backend_cuda_opts *backend_cuda_options(const backend *be) {
    return be && be->iface.destroy == cu_destroy ? &cuda_ctx_of(be)->opts : NULL;
}

// Creation reports failures to the caller (one line, no abort): a missing GPU is a user's
// situation, not a bug.
#define CREATE_TRY(call, what)                                                                     \
    do {                                                                                           \
        if (!(call)) {                                                                             \
            errf(err, errlen, "CUDA backend cuda:%d: %s", o.device, what);                         \
            goto fail;                                                                             \
        }                                                                                          \
    } while (0)

extern "C" backend *backend_cuda_create(const backend_cuda_opts *opts, char *err, size_t errlen) {
    backend_cuda_opts o = {};
    if (opts) o = *opts;
    if (!o.workspace_limit) o.workspace_limit = (size_t)256 << 20;
    char why[160];
    int n = backend_cuda_device_count(why, sizeof why);
    if ((unsigned)o.precision >= BACKEND_PRECISION_COUNT) {
        errf(err, errlen, "CUDA backend: precision %d unknown", (int)o.precision);
        return NULL;
    }
    if ((unsigned)o.depthwise >= BACKEND_DEPTHWISE_COUNT) {
        errf(err, errlen, "CUDA backend: depthwise %d unknown", (int)o.depthwise);
        return NULL;
    }
    if (n == 0) {
        errf(err, errlen, "CUDA backend: %s", why);
        return NULL;
    }
    if (o.device < 0 || o.device >= n) {
        errf(err, errlen, "CUDA backend: device %d does not exist (%d device%s: 0..%d)", o.device,
             n, n == 1 ? "" : "s", n - 1);
        return NULL;
    }
    cuda_ctx *c = (cuda_ctx *)xcalloc(1, sizeof *c);
    backend *be = (backend *)xcalloc(1, sizeof *be);
    char msg[200];
    c->opts = o;
    snprintf(c->name, sizeof c->name, "cuda:%d", o.device);
    cudaError_t e;
    cudnnStatus_t s;
    cublasStatus_t b;
    cudaDeviceProp prop;
#define CUDA_OK(call)                                                                              \
    ((e = (call)) == cudaSuccess ||                                                                \
     (snprintf(msg, sizeof msg, "%s: %s", #call, cudaGetErrorString(e)), 0))
#define CUDNN_OK(call)                                                                             \
    ((s = (call)) == CUDNN_STATUS_SUCCESS ||                                                       \
     (snprintf(msg, sizeof msg, "%s: %s", #call, cudnnGetErrorString(s)), 0))
#define CUBLAS_OK(call)                                                                            \
    ((b = (call)) == CUBLAS_STATUS_SUCCESS ||                                                      \
     (snprintf(msg, sizeof msg, "%s: %s", #call, cublas_status_name(b)), 0))
    CREATE_TRY(CUDA_OK(cudaSetDevice(o.device)), msg);
    CREATE_TRY(CUDA_OK(cudaGetDeviceProperties(&prop, o.device)), msg);
    c->sm_count = prop.multiProcessorCount;
    CREATE_TRY(CUDA_OK(cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking)), msg);
    CREATE_TRY(CUDNN_OK(cudnnCreate(&c->cudnn)), msg);
    CREATE_TRY(CUDNN_OK(cudnnSetStream(c->cudnn, c->stream)), msg);
    CREATE_TRY(CUBLAS_OK(cublasCreate(&c->cublas)), msg);
    CREATE_TRY(CUBLAS_OK(cublasSetStream(c->cublas, c->stream)), msg);
    // fp32 GEMMs (attention, Newton-Schulz) stay fp32: no TF32 unless the precision allows it
    CREATE_TRY(CUBLAS_OK(cublasSetMathMode(c->cublas, o.precision == BACKEND_PRECISION_TF32
                                                          ? CUBLAS_TF32_TENSOR_OP_MATH
                                                          : CUBLAS_DEFAULT_MATH)),
               msg);
    CREATE_TRY(CUDA_OK(cudaMalloc((void **)&c->gnorm, sizeof(double))), msg);
    CREATE_TRY(CUDA_OK(cudaMemsetAsync(c->gnorm, 0, sizeof(double), c->stream)), msg);
#undef CUDA_OK
#undef CUDNN_OK
#undef CUBLAS_OK
    fill_base(&be->iface);
    cuda_ops_fill(&be->iface, o.precision);
    be->name = c->name;
    be->host_memory = false;
    be->ctx = c;
    return backend_register(be);
fail:
    if (c->cublas) cublasDestroy(c->cublas);
    if (c->cudnn) cudnnDestroy(c->cudnn);
    if (c->stream) cudaStreamDestroy(c->stream);
    if (c->gnorm) cudaFree(c->gnorm);
    free(c);
    free(be);
    return NULL;
}
