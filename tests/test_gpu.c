#include "kernels/backend_cuda.h"
#include "kernels/gpu.h"

#include "tests/testenv.h"

#include <criterion/criterion.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

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
    be = backend_cuda_create(&(backend_cuda_opts){.depthwise = BACKEND_DEPTHWISE_COUNT}, err,
                             sizeof err);
    cr_assert_null(be);
    cr_assert(strstr(err, strstr(why, "built without CUDA") ? "built without CUDA" : "depthwise 3"),
              "err: %s", err);
    cr_assert_str_eq(backend_precision_name(BACKEND_PRECISION_BF16), "bf16");
    cr_assert_str_eq(backend_precision_name(BACKEND_PRECISION_COUNT), "?");
    cr_assert_null(backend_cuda_options(backend_cpu_default()));
}

/* `worker info ... device=cuda`, what `coordinator train` runs before it launches anything: where
 * there is no GPU (or no CUDA in the build) one line naming device= and the reason, exit 2; where
 * there is one, the model and its memory on the GPU. */
Test(gpu, worker_info_checks_the_device) {
    char why[256], cmd[PATH_MAX + 200], out[16384], line[1024];
    int n = backend_cuda_device_count(why, sizeof why);
    snprintf(cmd, sizeof cmd,
             "'%s' info model=yolov8n.yaml nc=2 imgsz=64 batch=2 workers=1 device=cuda 2>&1",
             bin_path("worker"));
    int rc = test_run(cmd, out, sizeof out);
    last_line(out, line, sizeof line);
    if (n == 0) {
        cr_assert_eq(rc, 2, "no GPU (%s) but exit %d:\n%s", why, rc, out);
        cr_assert(strstr(line, "error: device=cuda: ") && strstr(line, why), "line: %s", line);
    } else {
        cr_assert_eq(rc, 0, "%d GPU(s) but exit %d:\n%s", n, rc, out);
        cr_assert(strstr(out, "memory per worker"), "%s", out);
    }
    /* more workers than GPUs anywhere: refused with or without a GPU */
    snprintf(cmd, sizeof cmd,
             "'%s' info model=yolov8n.yaml nc=2 imgsz=64 device=0,1 workers=3 2>&1",
             bin_path("worker"));
    cr_assert_eq(test_run(cmd, out, sizeof out), 2, "%s", out);
    last_line(out, line, sizeof line);
    cr_assert(strstr(line, "device=0,1"), "line: %s", line);
}

/* `coordinator train device=cuda` on a machine without a GPU: refused before launch, one line,
 * exit 2, no run folder. (Where there is a GPU, tests/gpu/run.sh trains with device=0.) */
Test(gpu, train_device_cuda_refused_before_launch_without_gpu, .timeout = 120) {
    char why[256];
    if (backend_cuda_device_count(why, sizeof why) > 0)
        cr_skip_test("this machine has a GPU (%s): the refusal is for machines without one", why);
    char dir[PATH_MAX], cmd[3 * PATH_MAX], out[16384], line[1024];
    test_temp_dir(dir, sizeof dir, "gpurefuse");
    test_mpi_env();
    snprintf(cmd, sizeof cmd,
             "cd '%s' && '%s' data synth out=s.h5 train=8 val=2 imgsz=64 classes=2 >/dev/null && "
             "'%s' train data=s.h5 model=yolov8n.yaml imgsz=64 batch=2 epochs=1 project=runs "
             "device=cuda 2>&1",
             dir, bin_path("coordinator"), bin_path("coordinator"));
    int rc = test_run(cmd, out, sizeof out);
    last_line(out, line, sizeof line);
    cr_expect_eq(rc, 2, "exit %d:\n%s", rc, out);
    cr_expect(strstr(line, "error: device=cuda: ") && strstr(line, why), "line: %s", line);
    char runs[PATH_MAX + 8];
    snprintf(runs, sizeof runs, "%s/runs", dir);
    cr_expect_neq(access(runs, F_OK), 0, "%s was created", runs);
    test_remove_dir(dir);
}

/* AUTO's rule (backend_depthwise_pick), which the CUDA backend applies to the times it measured
 * at planning: ours unless cuDNN is faster by more than the margin; ours when either time is
 * missing (search=heuristic, no memory to time) or cuDNN's algorithm is nondeterministic and that
 * is not allowed. Host-only: no GPU needed. */
Test(gpu, depthwise_auto_pick_rule) {
    const backend_depthwise OWN = BACKEND_DEPTHWISE_OWN, CUDNN = BACKEND_DEPTHWISE_CUDNN;
    const double m = BACKEND_DEPTHWISE_MARGIN;
    cr_assert_eq(backend_depthwise_pick(1.0, 0.5, true, false), CUDNN);
    cr_assert_eq(backend_depthwise_pick(0.5, 1.0, true, false), OWN);
    cr_assert_eq(backend_depthwise_pick(1.0, 1.0, true, false), OWN, "a tie stays on ours");
    cr_assert_eq(backend_depthwise_pick(1.0, 1 - m / 2, true, false), OWN, "within the margin");
    cr_assert_eq(backend_depthwise_pick(1.0, 1 - 2 * m, true, false), CUDNN, "past the margin");
    /* a nondeterministic cuDNN algorithm only where allowed */
    cr_assert_eq(backend_depthwise_pick(1.0, 0.1, false, false), OWN);
    cr_assert_eq(backend_depthwise_pick(1.0, 0.1, false, true), CUDNN);
    /* not measured: ours */
    cr_assert_eq(backend_depthwise_pick(-1, -1, true, false), OWN);
    cr_assert_eq(backend_depthwise_pick(1.0, -1, true, false), OWN);
    cr_assert_eq(backend_depthwise_pick(-1, 0.5, true, false), OWN);
    cr_assert_eq(backend_depthwise_pick(1.0, 0, true, false), OWN);
    cr_assert_eq(backend_depthwise_pick(1.0, NAN, true, false), OWN);
    cr_assert_eq(backend_depthwise_pick(INFINITY, 0.5, true, false), OWN);
    /* names, and the default is AUTO (a zeroed options struct) */
    cr_assert_str_eq(backend_depthwise_name(BACKEND_DEPTHWISE_AUTO), "auto");
    cr_assert_str_eq(backend_depthwise_name(OWN), "own");
    cr_assert_str_eq(backend_depthwise_name(CUDNN), "cudnn");
    cr_assert_str_eq(backend_depthwise_name(BACKEND_DEPTHWISE_COUNT), "?");
    backend_cuda_opts zero = {0};
    cr_assert_eq(zero.depthwise, BACKEND_DEPTHWISE_AUTO);
    backend_depthwise_choice ch[1];
    cr_assert_eq(backend_cuda_depthwise_choices(backend_cpu_default(), ch, 1), 0,
                 "not a CUDA backend: no choices");
}
