/* The backend seam (suite `backend`, kernels/backend.h): the op table names every op, the CPU
 * backend implements every op and a backend without one says so, memory / copy / zero / event
 * semantics in both memory modes of the CPU backend, the split conv backward against
 * conv2d_backward (bitwise, every implementation), the CPU backend's own state (threads, conv
 * context), and a whole model on a "device-memory" CPU backend (every host/device copy taken)
 * against the same model on host memory, bitwise. */
#include "common/log.h"
#include "common/rng.h"
#include "kernels/backend_impl.h"
#include "kernels/threads.h"
#include "tests/backend_ops.h"
#include "worker/model.h"

#include <criterion/criterion.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

static void one_thread(void) {
    kernels_set_threads(1);
}

static void fill(float *x, size_t n, uint64_t seed) {
    rng r = rng_keyed(seed, n, 7);
    for (size_t i = 0; i < n; i++) x[i] = (float)rng_range(&r, -1, 1);
}

/* ---- op table ------------------------------------------------------------------------------ */

Test(backend, op_table_names_every_op_once) {
    for (int i = 0; i < BACKEND_OP_COUNT; i++) {
        const char *n = backend_op_name((backend_op)i);
        cr_assert(n && *n && strcmp(n, "?"), "op %d has no name", i);
        for (int j = 0; j < i; j++)
            cr_assert(strcmp(n, backend_op_name((backend_op)j)), "ops %d and %d are both %s", i, j,
                      n);
    }
    cr_assert_str_eq(backend_op_name(BACKEND_OP_COUNT), "?");
    cr_assert_str_eq(backend_op_name((backend_op)-1), "?");
    cr_assert_str_eq(backend_op_name(BACKEND_OP_CONV2D_FORWARD), "conv2d_forward");
}

Test(backend, cpu_backend_implements_every_op) {
    backend *made = backend_cpu_create(NULL);
    backend *bes[] = {backend_cpu_default(), made};
    for (int b = 0; b < 2; b++) {
        cr_assert_str_eq(backend_name(bes[b]), "cpu");
        cr_assert(backend_memory_is_host(bes[b]));
        for (int i = 0; i < BACKEND_OP_COUNT; i++)
            cr_assert(backend_supports(bes[b], (backend_op)i), "cpu lacks %s",
                      backend_op_name((backend_op)i));
    }
    backend_destroy(made);
    backend_destroy(backend_cpu_default()); /* the shared one stays usable */
    cr_assert(backend_supports(backend_cpu_default(), BACKEND_OP_ADD));
}

/* A CPU backend without the add op: what a partial backend (e.g. a GPU one in progress) is. */
static void destroy_partial(backend *be) {
    free(be); /* the inner backend owns the context */
}
static backend *partial_backend(backend **inner) {
    *inner = backend_cpu_create(&(backend_cpu_opts){.threads = 1});
    backend *be = xcalloc(1, sizeof *be);
    *be = **inner;
    be->iface.add = NULL;
    be->iface.destroy = destroy_partial;
    be->name = "test-without-add";
    return backend_register(be);
}

Test(backend, missing_op_is_reported_not_supported) {
    backend *inner, *be = partial_backend(&inner);
    cr_assert_not(backend_supports(be, BACKEND_OP_ADD));
    for (int i = 0; i < BACKEND_OP_COUNT; i++)
        if (i != BACKEND_OP_ADD) cr_assert(backend_supports(be, (backend_op)i));
    float a[4] = {1, 2, 3, 4}; /* the ops it has still work */
    backend_scale(be, 4, 2.0f, a);
    cr_assert_eq(a[3], 8.0f);
    backend_destroy(be);
    backend_destroy(inner);
}

Test(backend, calling_a_missing_op_is_fatal, .signal = SIGABRT) {
    backend *inner, *be = partial_backend(&inner);
    float a[1] = {1}, b[1] = {2}, y[1];
    backend_add(be, 1, a, b, y);
}

Test(backend, register_refuses_a_backend_without_memory_functions, .signal = SIGABRT) {
    backend *inner = backend_cpu_create(NULL);
    backend be = *inner;
    be.iface.copy_2d = NULL;
    backend_register(&be);
}

/* ---- memory, copies, events ---------------------------------------------------------------- */

/* tests/backend_ops.c's memory check (the op harness runs it on every backend) */
static void check_memory(bool device_memory) {
    backend *be =
        backend_cpu_create(&(backend_cpu_opts){.threads = 1, .device_memory = device_memory});
    cr_assert_eq(backend_memory_is_host(be), !device_memory);
    char err[200] = "";
    cr_assert_eq(bops_check_memory(be, err, sizeof err), 0, "%s", err);
    backend_destroy(be);
}

Test(backend, memory_copies_zero_and_events_host_memory) {
    check_memory(false);
}

Test(backend, memory_copies_zero_and_events_device_memory_mode) {
    check_memory(true);
}

/* ---- the CPU backend's own state ------------------------------------------------------------ */

Test(backend, cpu_backend_applies_its_thread_count) {
    backend *be = backend_cpu_create(&(backend_cpu_opts){.threads = 3});
    float y[8] = {1};
    kernels_set_threads(1);
    backend_scale(be, 8, 1.0f, y);
    cr_assert_eq(kernels_threads(), 3, "an op of a 3-thread backend runs with 3 threads");
    kernels_set_threads(2);
    backend_scale(backend_cpu_default(), 8, 1.0f, y);
    cr_assert_eq(kernels_threads(), 2, "the default backend follows kernels_set_threads");
    backend_destroy(be);
    kernels_set_threads(1);
}

Test(backend, conv_contexts_keep_their_own_choice, .init = one_thread) {
    conv2d_desc d = conv2d_make(2, 16, 16, 8, 16, 3, 1, 1, 1);
    conv2d_ctx *g = conv2d_ctx_create(CONV2D_GEMM), *o = conv2d_ctx_create(CONV2D_ONEDNN);
    conv2d_set_impl(CONV2D_DIRECT); /* the default context's switch touches neither */
    cr_assert_str_eq(conv2d_ctx_path(g, &d), "im2col+dnnl_sgemm");
    cr_assert(!strncmp(conv2d_ctx_path(o, &d), "fwd:onednn/", 11), "%s", conv2d_ctx_path(o, &d));
    conv2d_set_impl(CONV2D_GEMM);
    cr_assert(!strncmp(conv2d_ctx_path(o, &d), "fwd:onednn/", 11));
    cr_assert_str_eq(conv2d_path(&d), "im2col+dnnl_sgemm");
    conv2d_set_impl(CONV2D_AUTO);
    conv2d_ctx_destroy(g);
    conv2d_ctx_destroy(o);
    conv2d_ctx_destroy(conv2d_default_ctx()); /* ignored */
    cr_assert_str_neq(conv2d_path(&d), "");
}

/* conv backward_filter + backward_data on a backend == conv2d_backward, bit for bit, for every
 * implementation, with the outputs holding earlier values (backward accumulates). */
Test(backend, split_conv_backward_equals_conv2d_backward, .init = one_thread) {
    const conv2d_desc shapes[] = {
        conv2d_make(2, 12, 10, 16, 24, 1, 1, 0, 1),  /* pointwise */
        conv2d_make(3, 16, 16, 64, 32, 3, 2, 1, 1),  /* strided, 64 channels */
        conv2d_make(2, 9, 11, 8, 16, 3, 1, 1, 1),    /* few channels */
        conv2d_make(2, 12, 12, 32, 32, 3, 1, 1, 32), /* depthwise */
        conv2d_make(2, 10, 10, 8, 8, 5, 1, 0, 2),    /* k5 p0, 2 groups */
    };
    const conv2d_impl impls[] = {CONV2D_AUTO, CONV2D_GEMM, CONV2D_ONEDNN, CONV2D_DIRECT};
    for (size_t ii = 0; ii < sizeof impls / sizeof *impls; ii++) {
        backend *be = backend_cpu_create(&(backend_cpu_opts){.threads = 1, .conv_impl = impls[ii]});
        conv2d_set_impl(impls[ii]);
        for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++) {
            const conv2d_desc *d = &shapes[si];
            size_t nx = (size_t)d->n * d->h * d->w * d->cin;
            size_t ny = (size_t)d->n * d->oh * d->ow * d->cout;
            size_t nw = (size_t)d->cout * d->kh * d->kw * (d->cin / d->groups);
            size_t nws = conv2d_workspace_floats(d);
            size_t bws = backend_conv2d_workspace_floats(be, d);
            if (bws > nws) nws = bws;
            float *x = xmalloc(nx * 4), *w = xmalloc(nw * 4), *dy = xmalloc(ny * 4);
            float *dx[2], *dw[2], *db[2], *ws = xmalloc((nws + 1) * 4);
            fill(x, nx, 1), fill(w, nw, 2), fill(dy, ny, 3);
            for (int k = 0; k < 2; k++) {
                dx[k] = xmalloc(nx * 4), dw[k] = xmalloc(nw * 4), db[k] = xmalloc(d->cout * 4);
                fill(dx[k], nx, 4), fill(dw[k], nw, 5), fill(db[k], (size_t)d->cout, 6);
            }
            conv2d_backward(d, x, w, dy, dx[0], dw[0], db[0], ws);
            backend_conv2d_backward_filter(be, d, x, dy, dw[1], db[1], ws);
            backend_conv2d_backward_data(be, d, w, dy, dx[1], ws);
            cr_assert(!memcmp(dx[0], dx[1], nx * 4), "dx, shape %zu impl %zu", si, ii);
            cr_assert(!memcmp(dw[0], dw[1], nw * 4), "dw, shape %zu impl %zu", si, ii);
            cr_assert(!memcmp(db[0], db[1], (size_t)d->cout * 4), "db, shape %zu", si);
            float *y0 = xmalloc(ny * 4), *y1 = xmalloc(ny * 4);
            conv2d_forward(d, x, w, db[0], y0, ws);
            backend_conv2d_forward(be, d, x, w, db[0], y1, ws);
            cr_assert(!memcmp(y0, y1, ny * 4), "forward, shape %zu impl %zu", si, ii);
            /* the writing backward-data: the values of backward-data into zeros, whatever dx held
             */
            memset(dx[0], 0, nx * 4);
            backend_conv2d_backward_data(be, d, w, dy, dx[0], ws);
            backend_conv2d_backward_data_set(be, d, w, dy, dx[1], ws);
            for (size_t i = 0; i < nx; i++)
                cr_assert(dx[0][i] == dx[1][i], "dx set [%zu], shape %zu impl %zu", i, si, ii);
            for (int k = 0; k < 2; k++) free(dx[k]), free(dw[k]), free(db[k]);
            free(x), free(w), free(dy), free(ws), free(y0), free(y1);
        }
        backend_destroy(be);
    }
    conv2d_set_impl(CONV2D_AUTO);
}

/* ---- a whole model across the host/device boundary ----------------------------------------- */

typedef struct run_out {
    float *out[2], *grads, *bufs, *input_grad, *decoded, *params;
    size_t nout, np, nb, nimg, ndec;
    int branches, A, nc;
    detection *det; /* model_detect: [B][VAL_MAX_DET] */
    int32_t *ndet;  /* [B] */
    double t_conv, t_other;
} run_out;

static void free_run(run_out *r) {
    free(r->out[0]), free(r->out[1]), free(r->grads), free(r->bufs), free(r->input_grad);
    free(r->decoded), free(r->params), free(r->det), free(r->ndet);
}

enum { VAL_MAX_DET = 40 };

/* Validation's post-processing (conf 0: random weights score low) */
static nms_cfg val_cfg(void) {
    nms_cfg c = nms_val_defaults();
    c.conf_thres = 0;
    c.max_det = VAL_MAX_DET;
    return c;
}

/* Train forward + backward from fixed head gradients, then an eval forward and decode, reading
 * everything back through the model's host boundary. */
static void run_model(backend *be, const char *yaml, int B, int S, run_out *r) {
    char err[512];
    model *m = model_create_on(be, yaml, 3, 11, err, sizeof err);
    cr_assert(m, "%s", err);
    cr_assert_eq(model_backend(m), be);
    cr_assert_eq(model_plan(m, B, S, S, err, sizeof err), 0, "%s", err);
    model_want_input_grad(m, true);
    r->nimg = (size_t)B * S * S * 3;
    uint8_t *img = xmalloc(r->nimg);
    rng g = rng_keyed(5, 0, 0);
    for (size_t i = 0; i < r->nimg; i++) img[i] = (uint8_t)rng_int(&g, 256);
    r->branches = model_num_branches(m);
    r->nout = (size_t)B * model_num_anchors(m) * model_out_channels(m);
    float *d[2] = {NULL, NULL};
    for (int b = 0; b < r->branches; b++) {
        d[b] = xmalloc(r->nout * sizeof(float));
        fill(d[b], r->nout, 20 + (uint64_t)b);
    }
    model_zero_grad(m);
    model_forward_u8(m, img, true);
    for (int b = 0; b < r->branches; b++) {
        r->out[b] = xmalloc(r->nout * sizeof(float));
        memcpy(r->out[b], model_output_host(m, b), r->nout * sizeof(float));
    }
    model_backward(m, d[0], d[1]);
    model_timing(m, &r->t_conv, &r->t_other);
    r->np = model_num_params(m);
    r->nb = model_num_buffer_floats(m);
    r->grads = xmalloc(r->np * sizeof(float));
    r->params = xmalloc(r->np * sizeof(float));
    r->bufs = xmalloc((r->nb + 1) * sizeof(float));
    r->input_grad = xmalloc(r->nimg * sizeof(float));
    backend_to_host(be, r->grads, model_grads(m), r->np * sizeof(float));
    backend_to_host(be, r->input_grad, model_input_grad(m), r->nimg * sizeof(float));
    model_params_to_host(m, r->params);
    model_buffers_to_host(m, r->bufs);
    /* parameters and buffers go in and come out unchanged */
    float *p2 = xmalloc(r->np * sizeof(float));
    model_params_from_host(m, r->params);
    model_params_to_host(m, p2);
    cr_assert(!memcmp(p2, r->params, r->np * sizeof(float)));
    model_buffers_from_host(m, r->bufs);
    free(p2);
    cr_assert_eq(model_plan_eval(m, B, S, S, err, sizeof err), 0, "%s", err);
    model_forward_u8(m, img, false);
    int A = model_num_anchors(m), nc = model_config(m)->nc;
    r->ndec = (size_t)B * A * (4 + nc);
    r->decoded = xmalloc(r->ndec * sizeof(float));
    model_decode(m, r->branches - 1, r->decoded);
    r->A = A, r->nc = nc;
    r->det = xcalloc((size_t)B * VAL_MAX_DET, sizeof *r->det);
    r->ndet = xcalloc((size_t)B, sizeof *r->ndet);
    nms_cfg cfg = val_cfg();
    model_detect(m, r->branches - 1, &cfg, r->det, r->ndet);
    model_free(m);
    free(img);
    free(d[0]);
    free(d[1]);
}

static void same_on_both_memory_modes(const char *yaml, int B, int S) {
    backend *host = backend_cpu_create(&(backend_cpu_opts){.threads = 1});
    backend *dev = backend_cpu_create(&(backend_cpu_opts){.threads = 1, .device_memory = true});
    run_out a = {0}, b = {0};
    run_model(host, yaml, B, S, &a);
    run_model(dev, yaml, B, S, &b);
    for (int br = 0; br < a.branches; br++)
        cr_assert(!memcmp(a.out[br], b.out[br], a.nout * sizeof(float)), "head output %d", br);
    cr_assert(!memcmp(a.grads, b.grads, a.np * sizeof(float)), "parameter gradients");
    cr_assert(!memcmp(a.input_grad, b.input_grad, a.nimg * sizeof(float)), "input gradient");
    cr_assert(!memcmp(a.params, b.params, a.np * sizeof(float)), "parameters");
    cr_assert(!memcmp(a.bufs, b.bufs, a.nb * sizeof(float)), "BN running statistics");
    cr_assert(!memcmp(a.decoded, b.decoded, a.ndec * sizeof(float)), "decoded boxes");
    /* model_detect: the kernels/nms.c post-processing of those boxes, in both modes */
    nms_cfg cfg = val_cfg();
    for (int i = 0; i < B; i++) {
        detection want[VAL_MAX_DET];
        const float *p = a.decoded + (size_t)i * a.A * (4 + a.nc);
        int n = a.branches == 2 ? topk_detect(p, a.A, a.nc, &cfg, want)
                                : nms_detect(p, a.A, a.nc, &cfg, want);
        cr_assert_gt(n, 0, "image %d keeps detections", i);
        for (int k = 0; k < 2; k++) {
            const run_out *r = k ? &b : &a;
            cr_assert_eq(r->ndet[i], n, "%s memory, image %d: %d detections, want %d",
                         k ? "device" : "host", i, r->ndet[i], n);
            cr_assert(!memcmp(r->det + (size_t)i * VAL_MAX_DET, want, (size_t)n * sizeof *want),
                      "%s memory, image %d: the kept detections", k ? "device" : "host", i);
        }
    }
    double gsum = 0;
    for (size_t i = 0; i < a.np; i++) gsum += a.grads[i] != 0.0f;
    cr_assert_gt(gsum, a.np / 2, "most parameters have a gradient");
    cr_assert_gt(a.t_conv, 0.0, "conv time from the backend's events");
    cr_assert_gt(a.t_other, 0.0);
    free_run(&a);
    free_run(&b);
    backend_destroy(host);
    backend_destroy(dev);
}

Test(backend, model_on_device_memory_equals_host_memory_yolov8n, .init = one_thread,
     .timeout = 120) {
    same_on_both_memory_modes("yolov8n.yaml", 2, 64);
}

Test(backend, model_on_device_memory_equals_host_memory_end2end, .init = one_thread,
     .timeout = 120) {
    same_on_both_memory_modes("tests/fixtures/tiny-yolo26n.yaml", 2, 64);
}

/* model_forward_u8 == model_forward of the same images scaled on the host; model_create uses the
 * default CPU backend. */
Test(backend, forward_u8_equals_float_forward, .init = one_thread, .timeout = 60) {
    char err[512];
    model *m = model_create("tests/fixtures/tiny-yolo26n.yaml", 0, 3, err, sizeof err);
    cr_assert(m, "%s", err);
    cr_assert_eq(model_backend(m), backend_cpu_default());
    cr_assert_eq(model_plan_eval(m, 2, 64, 64, err, sizeof err), 0, "%s", err);
    size_t n = (size_t)2 * 64 * 64 * 3,
           nout = (size_t)2 * model_num_anchors(m) * model_out_channels(m);
    uint8_t *u = xmalloc(n);
    float *f = xmalloc(n * sizeof *f), *o = xmalloc(nout * sizeof *o);
    rng g = rng_keyed(9, 0, 0);
    for (size_t i = 0; i < n; i++) u[i] = (uint8_t)rng_int(&g, 256);
    for (size_t i = 0; i < n; i++) f[i] = u[i] * (1.0f / 255.0f);
    model_forward_u8(m, u, false);
    memcpy(o, model_output_host(m, 0), nout * sizeof *o);
    model_forward(m, f, false);
    cr_assert(!memcmp(o, model_output(m, 0), nout * sizeof *o));
    model_free(m);
    free(u), free(f), free(o);
}

/* During the grad-ready hook, the model's event has just been recorded after the work of that
 * range: on the CPU backend, events come in stream order. */
typedef struct hook_ctx {
    model *m;
    backend_event *start;
    double last;
    size_t floats;
    int calls, out_of_order;
} hook_ctx;

static void on_ready(void *vctx, size_t first, size_t count) {
    hook_ctx *h = vctx;
    (void)first;
    backend *be = model_backend(h->m);
    double t = backend_event_elapsed(be, h->start, model_grad_ready_event(h->m));
    if (t < h->last) h->out_of_order++;
    h->last = t;
    h->floats += count;
    h->calls++;
}

Test(backend, grad_ready_hook_has_an_event_per_range, .init = one_thread, .timeout = 60) {
    char err[512];
    model *m = model_create("tests/fixtures/tiny-yolo26n.yaml", 0, 3, err, sizeof err);
    cr_assert(m, "%s", err);
    cr_assert_eq(model_plan(m, 1, 64, 64, err, sizeof err), 0, "%s", err);
    size_t n = (size_t)64 * 64 * 3, nout = (size_t)model_num_anchors(m) * model_out_channels(m);
    uint8_t *u = xcalloc(n, 1);
    float *d = xmalloc(nout * sizeof *d);
    fill(d, nout, 4);
    backend *be = model_backend(m);
    hook_ctx h = {.m = m, .start = backend_event_create(be)};
    model_forward_u8(m, u, true);
    backend_event_record(be, h.start);
    model_set_grad_ready_hook(m, on_ready, &h);
    model_backward(m, d, d);
    model_set_grad_ready_hook(m, NULL, NULL);
    cr_assert_eq(h.floats, model_num_params(m), "every parameter reported once");
    cr_assert_gt(h.calls, 10);
    cr_assert_eq(h.out_of_order, 0);
    cr_assert_geq(h.last, 0.0);
    char text[512];
    cr_assert(strstr(model_timing_text(m, text, sizeof text), "conv "), "%s", text);
    backend_event_destroy(be, h.start);
    model_free(m);
    free(u), free(d);
}
