#include "kernels/gpu.h"

#include <criterion/criterion.h>
#include <stdio.h>

/* Runs everywhere: a machine without a GPU must report 0 devices with a reason, never crash. */
Test(gpu, probe_reports_devices_or_reason) {
    char msg[256] = "";
    int n = gpu_probe(msg, sizeof msg);
    cr_assert(n >= 0);
    cr_assert(msg[0], "probe always explains itself");
    cr_log_info("gpu: %s; %s", msg, gpu_build_info());
}
