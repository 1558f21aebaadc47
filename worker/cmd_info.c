/* `worker info model=yolov8n.yaml nc=80 imgsz=640`: the resolved layer table and a summary line
 * (parameters, and GFLOPs = 2 x (conv multiply-adds + Conv2d bias adds) for one image). */
#include "common/kv.h"
#include "common/log.h"
#include "worker/commands.h"
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

int worker_cmd_info(int argc, char **argv) {
    kv_args a;
    char err[512];
    if (kv_parse(argc, argv, &a, err, sizeof err)) {
        log_error("info: %s", err);
        return 2;
    }
    const char *spec;
    long nc, imgsz;
    int rc = 2;
    model *m = NULL;
    if (kv_get_str(&a, "model", "yolov8n.yaml", &spec) ||
        kv_get_long(&a, "nc", 0, &nc, err, sizeof err) ||
        kv_get_long(&a, "imgsz", 640, &imgsz, err, sizeof err) ||
        kv_check_unused(&a, err, sizeof err)) {
        log_error("info: %s", err);
        goto done;
    }
    if (nc < 0 || imgsz < 32 || imgsz % 32) {
        log_error("info: need nc >= 1 and imgsz a multiple of 32 (got nc=%ld imgsz=%ld)", nc,
                  imgsz);
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
    rc = 0;
done:
    model_free(m);
    kv_free(&a);
    return rc;
}
