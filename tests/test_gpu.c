#include "kernels/backend_cuda.h"
#include "kernels/gpu.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

/* Runs everywhere: a machine without a GPU must report 0 devices with a reason, never crash. */
Test(gpu, probe_reports_devices_or_reason) {
    char msg[256] = "";
    int n = gpu_probe(msg, sizeof msg);
    cr_assert(n >= 0);
    cr_assert(msg[0], "probe always explains itself");
    cr_log_info("gpu: %s; %s", msg, gpu_build_info());
}

/* Runs everywhere: a device index past the last one is refused with one line, never a crash. */
Test(gpu, cuda_backend_refuses_a_missing_device) {
    char why[256] = "", err[256] = "";
    int n = backend_cuda_device_count(why, sizeof why);
    cr_assert(why[0], "device count explains itself");
    backend *be = backend_cuda_create(&(backend_cuda_opts){.device = n}, err, sizeof err);
    cr_assert_null(be, "device %d of %d was accepted", n, n);
    cr_assert(strstr(err, "CUDA backend"), "err: %s", err);
    cr_assert_null(strchr(err, '\n'), "one line: %s", err);
    be = backend_cuda_create(&(backend_cuda_opts){.precision = BACKEND_PRECISION_COUNT}, err,
                             sizeof err);
    cr_assert_null(be);
    cr_assert_str_eq(backend_precision_name(BACKEND_PRECISION_BF16), "bf16");
    cr_assert_str_eq(backend_precision_name(BACKEND_PRECISION_COUNT), "?");
    cr_assert_null(backend_cuda_options(backend_cpu_default()));
}
