/* backend_ops: the op harness as a standalone program, for a GPU machine that has none of our
 * Debian libraries: every op on the CUDA backend against the CPU backend (tests/backend_ops.h),
 * one line per case, a summary per configuration. Built by `make backend-ops` from the kernels,
 * the backends and the harness alone (docs/cuda.md).
 *
 *   build/backend_ops [device=0] [precision=fp32|tf32|bf16|all] [depthwise=auto|own|cudnn|both|all]
 *                     [search=find|heuristic] [op=NAME] [seed=N] [quiet=1] [backend=cuda|cpu]
 *
 * backend=cpu runs the CPU backend in device-memory mode against the CPU backend, bit for bit:
 * the same program end to end on a machine without a GPU (a rehearsal of the GPU run).
 *
 * Exit status: 0 every case passed, 1 a case failed (or an op is not supported), 2 bad
 * arguments, 77 no GPU (the reason is printed; 77 is "skipped" to automake-style runners). */
#include "common/log.h"
#include "kernels/backend_cuda.h"
#include "tests/backend_ops.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct counts {
    int pass, fail, unsupported, omitted;
    bool quiet;
    bool cuda;                   /* the backend under test is the CUDA backend ... */
    backend_precision precision; /* ... at this precision */
} counts;

static void report(const bops_result *r, void *arg) {
    counts *c = arg;
    static const char *const word[] = {"OK", "FAIL", "not supported"};
    if (r->status == BOPS_PASS) c->pass++;
    if (r->status == BOPS_FAIL) c->fail++;
    /* an op the CUDA backend omits by design at this precision is not a failure */
    if (r->status == BOPS_NOT_SUPPORTED && c->cuda && bops_cuda_omits(r->op, c->precision)) {
        c->omitted++;
        return;
    }
    if (r->status == BOPS_NOT_SUPPORTED) c->unsupported++;
    if (c->quiet && r->status == BOPS_PASS) return;
    printf("  %-24s %-40s %-4s nmse %.2e (limit %.0e)%s%s\n", backend_op_name(r->op), r->shape,
           word[r->status], r->nmse, r->limit, r->status == BOPS_PASS ? "" : ": ",
           r->status == BOPS_PASS ? "" : r->detail);
}

static int summary(const char *what, const counts *c) {
    printf("backend_ops %s: %d passed, %d failed, %d not supported (+ %d omitted by design at this "
           "precision)\n",
           what, c->pass, c->fail, c->unsupported, c->omitted);
    return c->fail + c->unsupported;
}

static int check_memory(backend *be) {
    char err[300];
    if (bops_check_memory(be, err, sizeof err)) {
        printf("  memory, copies, events: FAIL: %s\n", err);
        return 1;
    }
    printf("  memory, copies, events: OK\n");
    return 0;
}

static int run_on_cpu(const char *only, unsigned long long seed, bool quiet) {
    backend *ref = backend_cpu_create(&(backend_cpu_opts){.threads = 0});
    backend *t = backend_cpu_create(&(backend_cpu_opts){.threads = 0, .device_memory = true});
    printf("backend_ops: %s against cpu, bit for bit\n", backend_name(t));
    int failures = check_memory(t);
    counts c = {.quiet = quiet};
    bops_run(&(bops_opts){.ref = ref, .test = t, .exact = true, .only = only, .seed = seed}, report,
             &c);
    failures += summary("cpu", &c);
    backend_destroy(t);
    backend_destroy(ref);
    printf("backend_ops: %s\n", failures ? "FAILED" : "all passed");
    return failures ? 1 : 0;
}

static int usage(const char *bad) {
    fprintf(
        stderr,
        "backend_ops: %s\nusage: backend_ops [device=0] [precision=fp32|tf32|bf16|all] "
        "[depthwise=auto|own|cudnn|both|all] [search=find|heuristic] [op=NAME] [seed=N] [quiet=1] "
        "[backend=cuda|cpu]\n",
        bad);
    return 2;
}

int main(int argc, char **argv) {
    log_set_program("backend_ops");
    backend_cuda_opts base = {0};
    int prec_lo = 0, prec_hi = 0, dw_lo = 0, dw_hi = 0;
    const char *only = NULL;
    unsigned long long seed = 1;
    bool quiet = false, on_cpu = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = strchr(a, '=');
        if (!v) return usage(a);
        v++;
        if (!strncmp(a, "device=", 7)) {
            base.device = atoi(v);
        } else if (!strncmp(a, "precision=", 10)) {
            if (!strcmp(v, "all")) {
                prec_lo = 0, prec_hi = BACKEND_PRECISION_COUNT - 1;
            } else {
                int p = 0;
                while (p < BACKEND_PRECISION_COUNT && strcmp(v, backend_precision_name(p))) p++;
                if (p == BACKEND_PRECISION_COUNT) return usage(a);
                prec_lo = prec_hi = p;
            }
        } else if (!strncmp(a, "depthwise=", 10)) {
            if (!strcmp(v, "both")) { /* the two implementations; all: and AUTO's choice */
                dw_lo = BACKEND_DEPTHWISE_OWN, dw_hi = BACKEND_DEPTHWISE_CUDNN;
            } else if (!strcmp(v, "all")) {
                dw_lo = 0, dw_hi = BACKEND_DEPTHWISE_COUNT - 1;
            } else {
                int d = 0;
                while (d < BACKEND_DEPTHWISE_COUNT && strcmp(v, backend_depthwise_name(d))) d++;
                if (d == BACKEND_DEPTHWISE_COUNT) return usage(a);
                dw_lo = dw_hi = d;
            }
        } else if (!strncmp(a, "search=", 7)) {
            if (!strcmp(v, "find"))
                base.search = BACKEND_CONV_FIND;
            else if (!strcmp(v, "heuristic"))
                base.search = BACKEND_CONV_HEURISTIC;
            else
                return usage(a);
        } else if (!strncmp(a, "op=", 3)) {
            only = v;
            int op = 0;
            while (op < BACKEND_OP_COUNT && strcmp(v, backend_op_name(op))) op++;
            if (op == BACKEND_OP_COUNT) return usage(a);
        } else if (!strncmp(a, "seed=", 5)) {
            seed = strtoull(v, NULL, 10);
        } else if (!strncmp(a, "backend=", 8)) {
            if (!strcmp(v, "cpu"))
                on_cpu = true;
            else if (strcmp(v, "cuda"))
                return usage(a);
        } else if (!strncmp(a, "quiet=", 6)) {
            quiet = atoi(v) != 0;
        } else {
            return usage(a);
        }
    }
    if (on_cpu) return run_on_cpu(only, seed, quiet);
    char why[200];
    if (backend_cuda_device_count(why, sizeof why) == 0) {
        printf("backend_ops: SKIPPED: %s\n", why);
        return 77;
    }
    backend *ref = backend_cpu_create(&(backend_cpu_opts){.threads = 0});
    int failures = 0;
    for (int p = prec_lo; p <= prec_hi; p++)
        for (int dw = dw_lo; dw <= dw_hi; dw++) {
            backend_cuda_opts o = base;
            o.precision = (backend_precision)p;
            o.depthwise = (backend_depthwise)dw;
            char err[300];
            backend *g = backend_cuda_create(&o, err, sizeof err);
            if (!g) {
                printf("backend_ops: %s\n", err);
                return 1;
            }
            printf("backend_ops: %s, precision %s, depthwise %s, search %s\n", backend_name(g),
                   backend_precision_name(o.precision), backend_depthwise_name(o.depthwise),
                   o.search == BACKEND_CONV_FIND ? "find" : "heuristic");
            failures += check_memory(g);
            counts c = {.quiet = quiet, .cuda = true, .precision = o.precision};
            bops_run(
                &(bops_opts){
                    .ref = ref, .test = g, .precision = o.precision, .only = only, .seed = seed},
                report, &c);
            char what[64];
            snprintf(what, sizeof what, "%s %s", backend_precision_name(o.precision),
                     backend_depthwise_name(o.depthwise));
            failures += summary(what, &c);
            backend_destroy(g);
        }
    backend_destroy(ref);
    printf("backend_ops: %s\n", failures ? "FAILED" : "all passed");
    return failures ? 1 : 0;
}
