/* The op harness (ggml's test-backend-ops is the model): every backend op on random inputs of
 * several shapes, run on a reference backend and on a backend under test with the same inputs,
 * every output fetched and compared by its normalised mean squared error
 * (sum (t - r)^2 / sum r^2) against a limit per op and precision; an output that is NaN or
 * infinite where the reference's is not fails; an op the backend lacks is reported "not
 * supported". Accumulating outputs start from random values, so `+=` is checked too.
 *
 * Criterion-free, so that the standalone runner (tests/ops/backend_ops_main.c, `make
 * backend-ops`) links only the kernels, the backends and this; the Criterion suite is
 * tests/test_backend_ops.c. */
#pragma once
#include "kernels/backend.h"
#include "kernels/backend_cuda.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum bops_status { BOPS_PASS, BOPS_FAIL, BOPS_NOT_SUPPORTED } bops_status;

typedef struct bops_result {
    backend_op op;
    char shape[96]; /* the case, e.g. "n2 20x20x16->32 k3 s1 p1 g1" */
    bops_status status;
    double nmse, limit; /* the worst output's error and the limit it was held to */
    char detail[200];   /* which output failed and how */
} bops_result;

typedef void (*bops_report_fn)(const bops_result *r, void *arg);

typedef struct bops_opts {
    backend *ref, *test;
    backend_precision precision; /* of `test`: selects the limits */
    bool exact;                  /* every output bit for bit (two CPU backends) */
    const char *only;            /* an op name, or NULL for all */
    uint64_t seed;
} bops_opts;

/* Runs every case (report called once per case); returns the number of failures. Ops `test` does
 * not support are reported and not counted as failures. */
int bops_run(const bops_opts *o, bops_report_fn report, void *arg);

/* The NMSE limit of an op at a precision (bops_run may scale it per case; docs/cuda.md). */
double bops_limit(backend_op op, backend_precision p);
/* The least limit of a bf16 output (bops_take_bf16) outside exact mode: a bf16 value one rounding
 * step (2^-8 to 2^-7 relative) off costs 1.5e-5 to 6e-5 of NMSE over the values that differ, so
 * 1e-6 allows a last-bit difference in a few percent of them (float inputs one ulp apart that
 * straddle a rounding boundary) and catches a conversion that truncates instead of rounding to
 * nearest even (half the values one step off). */
#define BOPS_BF16_OUTPUT_LIMIT 1e-6

/* Whether the CUDA backend at precision p omits op by design (and must say "not supported"): the
 * bf16 graph's ops (to_bf16, the bf16 convolutions, the BN + SiLU ops writing bf16 copies) exist
 * only at bf16, whose cuDNN plans are bf16 (kernels/cuda/ops.cu); every other op always. */
bool bops_cuda_omits(backend_op op, backend_precision p);

/* Memory, copies (1-d, 2-d, device to device), zeroing and events of a backend: 0, or -1 with
 * the first difference in err. */
int bops_check_memory(backend *be, char *err, size_t errlen);

/* sum (t - r)^2 / sum r^2 (sum (t - r)^2 when r is all zero); *nonfinite counts the elements
 * where exactly one of t and r is NaN or infinite. */
double bops_nmse(const float *t, const float *r, size_t n, size_t *nonfinite);

/* ---- for the case definitions (tests/backend_ops_cases.c) ---- */

/* One case's run on one backend: its device buffers and the outputs fetched to the host. */
typedef struct bops_env {
    backend *be;
    uint64_t seed, draws; /* inputs: the same sequence on both backends */
    void *dev[64];
    int ndev;
    struct bops_out {
        const char *name;
        float *host;
        size_t n;
        bool bf16; /* taken by bops_take_bf16: held to at least BOPS_BF16_OUTPUT_LIMIT */
    } out[12];
    int nout;
} bops_env;

typedef struct bops_case {
    backend_op op;
    char shape[96];
    double limit_scale; /* the op's limit times this (0 means 1) */
    void (*run)(bops_env *e, const struct bops_case *c);
    int p[10]; /* integer parameters of the case */
} bops_case;

/* Random device input: n floats uniform in [lo, hi) (the host copy is returned in *host if asked,
 * owned by the env). */
float *bops_in(bops_env *e, size_t n, double lo, double hi);
/* Zeroed device buffer of n floats (bytes: for other element types). */
float *bops_zeros(bops_env *e, size_t n);
void *bops_bytes(bops_env *e, size_t bytes);
/* Fetches n floats of device memory as output `name`. */
void bops_take(bops_env *e, const char *name, const float *dev, size_t n);
/* The same for n bf16 values (converted to float, exactly: exact mode still compares bits). */
void bops_take_bf16(bops_env *e, const char *name, const bf16 *dev, size_t n);
/* The same for int32 (compared exactly: converted to float, values below 2^24). */
void bops_take_i32(bops_env *e, const char *name, const int32_t *dev, size_t n);
/* Uniform random host numbers of the env's input sequence. */
void bops_host_rand(bops_env *e, float *x, size_t n, double lo, double hi);

/* Fills cases (at most max); returns the count. tests/backend_ops_cases.c. */
int bops_cases(bops_case *cases, int max);
/* The nms op's case (tests/backend_ops_nms.c). */
void bops_run_nms(bops_env *e, const bops_case *c);
