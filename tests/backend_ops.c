/* The op harness's machinery: inputs, outputs, comparison, limits, the run loop, the memory check.
 * The cases are in tests/backend_ops_cases.c; tests/backend_ops.h says what is compared. */
#include "tests/backend_ops.h"

#include "common/log.h"
#include "common/rng.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- inputs and outputs ---- */

static void *keep(bops_env *e, void *p) {
    if (e->ndev >= (int)(sizeof e->dev / sizeof *e->dev)) FATAL("op harness: too many buffers");
    e->dev[e->ndev++] = p;
    return p;
}

void bops_host_rand(bops_env *e, float *x, size_t n, double lo, double hi) {
    rng r = rng_keyed(e->seed, e->draws++, n);
    for (size_t i = 0; i < n; i++) x[i] = (float)rng_range(&r, lo, hi);
}

float *bops_in(bops_env *e, size_t n, double lo, double hi) {
    float *h = xmalloc((n ? n : 1) * sizeof *h);
    bops_host_rand(e, h, n, lo, hi);
    float *d = keep(e, backend_alloc(e->be, (n ? n : 1) * sizeof *d));
    backend_to_device(e->be, d, h, n * sizeof *h);
    free(h);
    return d;
}

void *bops_bytes(bops_env *e, size_t bytes) {
    void *d = keep(e, backend_alloc(e->be, bytes ? bytes : 1));
    backend_zero(e->be, d, bytes);
    return d;
}

float *bops_zeros(bops_env *e, size_t n) {
    return bops_bytes(e, n * sizeof(float));
}

static struct bops_out *new_out(bops_env *e, const char *name, size_t n) {
    if (e->nout >= (int)(sizeof e->out / sizeof *e->out)) FATAL("op harness: too many outputs");
    struct bops_out *o = &e->out[e->nout++];
    o->name = name;
    o->n = n;
    o->bf16 = false;
    o->host = xmalloc((n ? n : 1) * sizeof *o->host);
    return o;
}

void bops_take(bops_env *e, const char *name, const float *dev, size_t n) {
    struct bops_out *o = new_out(e, name, n);
    backend_to_host(e->be, o->host, dev, n * sizeof *o->host);
}

void bops_take_bf16(bops_env *e, const char *name, const bf16 *dev, size_t n) {
    struct bops_out *o = new_out(e, name, n);
    bf16 *h = xmalloc((n ? n : 1) * sizeof *h);
    backend_to_host(e->be, h, dev, n * sizeof *h);
    bf16_to_f32(n, h, o->host);
    o->bf16 = true;
    free(h);
}

void bops_take_i32(bops_env *e, const char *name, const int32_t *dev, size_t n) {
    struct bops_out *o = new_out(e, name, n);
    int32_t *h = xmalloc((n ? n : 1) * sizeof *h);
    backend_to_host(e->be, h, dev, n * sizeof *h);
    for (size_t i = 0; i < n; i++) o->host[i] = (float)h[i];
    free(h);
}

static void env_free(bops_env *e) {
    for (int i = 0; i < e->ndev; i++) backend_free(e->be, e->dev[i]);
    for (int i = 0; i < e->nout; i++) free(e->out[i].host);
    memset(e, 0, sizeof *e);
}

/* ---- comparison ---- */

double bops_nmse(const float *t, const float *r, size_t n, size_t *nonfinite) {
    double num = 0, den = 0;
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        int ft = isfinite(t[i]), fr = isfinite(r[i]);
        if (ft != fr) bad++;
        if (!ft || !fr) continue;
        double d = (double)t[i] - r[i];
        num += d * d;
        den += (double)r[i] * r[i];
    }
    if (nonfinite) *nonfinite = bad;
    return den > 0 ? num / den : num;
}

/* Limits. fp32: our kernels repeat the CPU's float operations (often bit for bit) and sum in
 * double where the CPU does; cuDNN and cuBLAS sum in another order: 1e-9 leaves 4 orders of
 * magnitude above what fp32 reordering gives at these sizes. TF32 keeps 10 mantissa bits in the
 * convolutions and GEMMs: 1e-5. bf16 rounds conv inputs and outputs to 8 bits: 2e-4, about 20
 * times the worst NMSE (1.1e-5; 7e-6 typical) of a CPU emulation of it on the same cases
 * (tests/test_backend_ops.c checks that it stays within 10x to 100x of the emulation). */
double bops_limit(backend_op op, backend_precision p) {
    bool conv = op == BACKEND_OP_CONV2D_FORWARD || op == BACKEND_OP_CONV2D_BACKWARD_DATA ||
                op == BACKEND_OP_CONV2D_BACKWARD_FILTER ||
                op == BACKEND_OP_CONV2D_BACKWARD_DATA_SET || op == BACKEND_OP_CONV2D_FORWARD_BF16 ||
                op == BACKEND_OP_CONV2D_BACKWARD_BF16;
    bool gemm = op == BACKEND_OP_ATTENTION_FORWARD || op == BACKEND_OP_ATTENTION_BACKWARD;
    if (op == BACKEND_OP_NMS) return 0; /* the same kept detections, bit for bit, everywhere */
    if (p == BACKEND_PRECISION_TF32 && (conv || gemm)) return 1e-5;
    if (p == BACKEND_PRECISION_BF16 && conv) return 2e-4;
    return 1e-9;
}

bool bops_cuda_omits(backend_op op, backend_precision p) {
    switch (op) {
    case BACKEND_OP_TO_BF16:
    case BACKEND_OP_CONV2D_FORWARD_BF16:
    case BACKEND_OP_CONV2D_BACKWARD_BF16:
    case BACKEND_OP_BATCHNORM_SILU_FORWARD_TRAIN_BF16:
    case BACKEND_OP_BATCHNORM_SILU_FORWARD_EVAL_BF16:
    case BACKEND_OP_BATCHNORM_SILU_BACKWARD_SET_BF16:
        return p != BACKEND_PRECISION_BF16;
    default:
        return false;
    }
}

static void compare(const bops_opts *o, const bops_case *c, const bops_env *r, const bops_env *t,
                    bops_result *res) {
    double limit =
        o->exact ? 0.0
                 : bops_limit(c->op, o->precision) * (c->limit_scale > 0 ? c->limit_scale : 1.0);
    res->limit = limit;
    res->nmse = 0;
    res->status = BOPS_PASS;
    if (r->nout != t->nout) {
        res->status = BOPS_FAIL;
        snprintf(res->detail, sizeof res->detail, "%d outputs, reference %d", t->nout, r->nout);
        return;
    }
    for (int i = 0; i < r->nout; i++) {
        const struct bops_out *a = &t->out[i], *b = &r->out[i];
        size_t bad = 0;
        double e = bops_nmse(a->host, b->host, b->n, &bad);
        bool differs = o->exact && memcmp(a->host, b->host, b->n * sizeof *b->host);
        double lim =
            b->bf16 && !o->exact && limit < BOPS_BF16_OUTPUT_LIMIT ? BOPS_BF16_OUTPUT_LIMIT : limit;
        if (e > res->nmse) res->nmse = e;
        if (bad || differs || e > lim || isnan(e)) {
            res->status = BOPS_FAIL;
            size_t k = 0;
            while (k < b->n && !memcmp(a->host + k, b->host + k, sizeof *b->host)) k++;
            snprintf(res->detail, sizeof res->detail,
                     "%s: nmse %.3g > %.3g, %zu non-finite mismatches, first difference [%zu] "
                     "%.9g vs %.9g",
                     b->name, e, lim, bad, k, k < b->n ? a->host[k] : 0.0,
                     k < b->n ? b->host[k] : 0.0);
            return;
        }
    }
}

int bops_run(const bops_opts *o, bops_report_fn report, void *arg) {
    enum { MAXC = 256 };
    bops_case *cases = xcalloc(MAXC, sizeof *cases);
    int n = bops_cases(cases, MAXC), fails = 0;
    for (int i = 0; i < n; i++) {
        const bops_case *c = &cases[i];
        if (o->only && strcmp(o->only, backend_op_name(c->op))) continue;
        bops_result res = {.op = c->op};
        snprintf(res.shape, sizeof res.shape, "%s", c->shape);
        if (!backend_supports(o->test, c->op)) {
            res.status = BOPS_NOT_SUPPORTED;
            snprintf(res.detail, sizeof res.detail, "backend %s does not support %s",
                     backend_name(o->test), backend_op_name(c->op));
        } else {
            bops_env r = {.be = o->ref, .seed = o->seed + (uint64_t)i};
            bops_env t = {.be = o->test, .seed = o->seed + (uint64_t)i};
            c->run(&r, c);
            c->run(&t, c);
            compare(o, c, &r, &t, &res);
            env_free(&r);
            env_free(&t);
        }
        if (res.status == BOPS_FAIL) fails++;
        if (report) report(&res, arg);
    }
    free(cases);
    return fails;
}

/* ---- memory ---- */

int bops_check_memory(backend *be, char *err, size_t errlen) {
    enum { N = 100 };
    float host[N], back[N], back2[N];
    for (int i = 0; i < N; i++) host[i] = (float)(i * 0.37 - 11.0);
    float *d = backend_alloc(be, N * sizeof(float)), *d2 = backend_alloc(be, N * sizeof(float));
    int rc = 0;
    backend_to_device(be, d, host, sizeof host);
    backend_to_host(be, back, d, sizeof back);
    if (memcmp(host, back, sizeof host)) {
        rc = errf(err, errlen, "%s: host -> device -> host changed the data", backend_name(be));
        goto out;
    }
    backend_zero(be, d + 10, 20 * sizeof(float));
    backend_to_host(be, back, d, sizeof back);
    for (int i = 0; i < N; i++)
        if (back[i] != (i >= 10 && i < 30 ? 0.0f : host[i])) {
            rc = errf(err, errlen, "%s: zero of [10, 30): element %d is %g", backend_name(be), i,
                      back[i]);
            goto out;
        }
    backend_copy(be, d2, d, N * sizeof(float));
    backend_copy(be, d2, d2, N * sizeof(float));
    backend_to_host(be, back2, d2, sizeof back2);
    if (memcmp(back, back2, sizeof back)) {
        rc = errf(err, errlen, "%s: device -> device copy changed the data", backend_name(be));
        goto out;
    }
    /* 5 rows of 7 floats, source rows 9 floats apart, destination rows 11 apart */
    backend_to_device(be, d, host, sizeof host);
    backend_zero(be, d2, N * sizeof(float));
    backend_copy_2d(be, d2, 11 * sizeof(float), d, 9 * sizeof(float), 7 * sizeof(float), 5);
    backend_to_host(be, back, d2, sizeof back);
    for (int r = 0; r < 5; r++)
        for (int c = 0; c < 11; c++)
            if (back[r * 11 + c] != (c < 7 ? host[r * 9 + c] : 0.0f)) {
                rc = errf(err, errlen, "%s: 2-d copy, row %d column %d", backend_name(be), r, c);
                goto out;
            }
    backend_event *a = backend_event_create(be), *b = backend_event_create(be);
    backend_event_record(be, a);
    backend_scale(be, N, 2.0f, d); /* some work between the events */
    backend_event_record(be, b);
    backend_event_wait(be, a);
    backend_event_synchronize(be, b);
    backend_synchronize(be);
    double el = backend_event_elapsed(be, a, b);
    if (!(el >= 0.0 && el < 60.0))
        rc = errf(err, errlen, "%s: %g s between two events", backend_name(be), el);
    backend_event_destroy(be, a);
    backend_event_destroy(be, b);
    backend_event_destroy(be, NULL);
    backend_to_device(be, d, host, 0); /* empty copies and NULL frees are fine */
    backend_to_host(be, back, d, 0);
    backend_zero(be, d, 0);
    backend_free(be, NULL);
out:
    backend_free(be, d);
    backend_free(be, d2);
    return rc;
}
