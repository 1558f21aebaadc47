/* `worker info model=yolov8n.yaml nc=80 imgsz=640`: the resolved layer table and a summary line
 * (parameters, and GFLOPs = 2 x (conv multiply-adds + Conv2d bias adds) for one image).
 * With batch=B [workers=W micro_batch=M], also the memory a training worker needs for that batch
 * (B / W images per worker) and a refusal (exit 2) when W of them do not fit in this machine's
 * available memory: `coordinator train` runs this before it launches anything. With device=
 * (train's syntax) other than cpu: a refusal when this machine has no GPU for each of the W
 * workers (or was built without CUDA), and the memory is checked on each worker's GPU. */
#include "common/kv.h"
#include "common/log.h"
#include "worker/commands.h"
#include "worker/device.h"
#include "worker/model.h"

#include <stdio.h>
#include <string.h>

/* 3157200 -> "3,157,200" */
static const char *commas(size_t v, char *buf, size_t n) {
    char tmp[32];
    int len = snprintf(tmp, sizeof tmp, "%zu", v), o = 0;
    for (int i = 0; i < len && o + 2 < (int)n; i++) {
        if (i && (len - i) % 3 == 0) buf[o++] = ',';
        buf[o++] = tmp[i];
    }
    buf[o] = 0;
    return buf;
}

/* The training memory line; -1 (message printed) when it does not fit on a's device. */
static int print_memory(model *m, const train_args *a, int workers, int micro) {
    char err[512];
    mem_budget b;
    int batch = (int)a->batch, imgsz = (int)a->imgsz, share = batch / workers;
    if (mem_budget_train(m, share, micro ? micro : share, imgsz, &b, err, sizeof err) != 0) {
        log_error("info: %s", err);
        return -1;
    }
    double avail = mem_available();
    const double GiB = 1024.0 * 1024 * 1024;
    printf("memory per worker for %d image(s) at imgsz %d: %.2f GiB (model %.2f, optimizer %.2f, "
           "activations %.2f, validation %.2f, loss %.2f, loader %.2f); %d worker(s): %.2f GiB of "
           "%.2f GiB available\n",
           share, imgsz, b.total / GiB, b.model / GiB, b.optimizer / GiB, b.train_act / GiB,
           b.val_act / GiB, b.loss / GiB, b.loader / GiB, workers, workers * b.total / GiB,
           avail / GiB);
    if (device_check_memory(a, &b, workers, -1, err, sizeof err) != 0) {
        log_error("%s", err);
        return -1;
    }
    return 0;
}

int worker_cmd_info(int argc, char **argv) {
    kv_args a;
    char err[512];
    if (kv_parse(argc, argv, &a, err, sizeof err)) {
        log_error("info: %s", err);
        return 2;
    }
    const char *spec, *device;
    long nc, imgsz, batch, workers, micro;
    int rc = 2;
    model *m = NULL;
    if (kv_get_str(&a, "model", "yolov8n.yaml", &spec) ||
        kv_get_long(&a, "nc", 0, &nc, err, sizeof err) ||
        kv_get_long(&a, "imgsz", 640, &imgsz, err, sizeof err) ||
        kv_get_long(&a, "batch", 0, &batch, err, sizeof err) ||
        kv_get_long(&a, "workers", 1, &workers, err, sizeof err) ||
        kv_get_long(&a, "micro_batch", 0, &micro, err, sizeof err) ||
        kv_get_str(&a, "device", "cpu", &device) || kv_check_unused(&a, err, sizeof err)) {
        log_error("info: %s", err);
        goto done;
    }
    if (nc < 0 || nc > MODEL_MAX_NC || imgsz < 32 || imgsz > 8192 || imgsz % 32) {
        log_error("info: need nc in 0..%d and imgsz a multiple of 32 in 32..8192 (got nc=%ld "
                  "imgsz=%ld)",
                  MODEL_MAX_NC, nc, imgsz);
        goto done;
    }
    if (batch < 0 || batch > 1000000 || workers < 1 || workers > 4096 || batch % workers ||
        micro < 0 || (micro && (batch / workers) % micro)) {
        log_error("info: need batch >= 0 divisible by workers >= 1, and micro_batch dividing "
                  "batch / workers (got batch=%ld workers=%ld micro_batch=%ld)",
                  batch, workers, micro);
        goto done;
    }
    train_args ta = {.imgsz = imgsz, .batch = batch};
    if (snprintf(ta.device, sizeof ta.device, "%s", device) >= (int)sizeof ta.device) {
        log_error("info: device=%.40s...: too long", device);
        goto done;
    }
    /* the GPUs first: the model is built on the host either way */
    if (device_check_local(&ta, (int)workers, err, sizeof err) != 0) {
        log_error("%s", err);
        goto done;
    }
    m = model_create(spec, (int)nc, 0, err, sizeof err);
    if (!m) {
        log_error("info: %s", err);
        goto done;
    }
    const model_yaml *y = model_config(m);
    printf("%3s %20s %3s %10s  %-12s %s\n", "", "from", "n", "params", "module", "arguments");
    for (int i = 0; i < y->nlayers; i++) {
        const model_layer *L = &y->layers[i];
        char from[64];
        if (L->nfrom == 1) {
            snprintf(from, sizeof from, "%d", L->from_yaml[0]);
        } else {
            int o = snprintf(from, sizeof from, "[");
            for (int k = 0; k < L->nfrom && o < (int)sizeof from - 8; k++)
                o += snprintf(from + o, sizeof from - o, "%s%d", k ? ", " : "", L->from_yaml[k]);
            snprintf(from + o, sizeof from - o, "]");
        }
        printf("%3d %20s %3d %10zu  %-12s %s\n", i, from, L->n, model_layer_params(m, i), L->module,
               L->args_text);
    }
    double macs, bias;
    model_conv_macs(m, (int)imgsz, (int)imgsz, &macs, &bias);
    char buf[32];
    printf("%s summary: %s parameters, %.1f GFLOPs\n", y->name,
           commas(model_num_params(m), buf, sizeof buf), 2.0 * (macs + bias) / 1e9);
    if (batch > 0 && print_memory(m, &ta, (int)workers, (int)micro) != 0) goto done;
    rc = 0;
done:
    model_free(m);
    kv_free(&a);
    return rc;
}
