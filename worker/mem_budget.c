#include "worker/mem_budget.h"

#include "common/log.h"
#include "common/protocol.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LOADER_DEPTH 4 /* batches a loader prefetches (trainer.c: lc.depth) */

int mem_budget_train(model *m, int share, int micro, int imgsz, mem_budget *b, char *err,
                     size_t errlen) {
    memset(b, 0, sizeof *b);
    size_t train1, eval1;
    if (model_plan_bytes(m, imgsz, imgsz, true, &train1, err, errlen) != 0 ||
        model_plan_bytes(m, imgsz, imgsz, false, &eval1, err, errlen) != 0)
        return -1;
    double P = (double)model_num_params(m), B = (double)model_num_buffer_floats(m);
    double px = (double)imgsz * imgsz * 3;
    double anchors = 0;
    for (int s = 8; s <= 32; s *= 2) anchors += (double)(imgsz / s) * (imgsz / s);
    b->model = (4 * P + 2 * B) * sizeof(float);
    b->optimizer = 2 * P * sizeof(float);
    b->train_act = (double)train1 * micro;
    b->val_act = (double)eval1 * VAL_CHUNK;
    /* scores, target scores and their gradient: ~4 floats per anchor and class per image */
    b->loss = 4.0 * micro * anchors * model_config(m)->nc * sizeof(float);
    b->loader = LOADER_DEPTH * (share + VAL_CHUNK) * px + micro * px * sizeof(float);
    b->total = b->model + b->optimizer + b->train_act + b->val_act + b->loss + b->loader;
    return 0;
}

/* "MemAvailable:  123 kB" -> bytes; 0 when absent */
static double meminfo_available(void) {
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f) return 0;
    char line[256];
    double kb = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %lf kB", &kb) == 1) break;
    fclose(f);
    return kb * 1024;
}

/* memory.max - memory.current of this process's cgroup (v2); 0 when unlimited or unknown */
static double cgroup_available(void) {
    char rel[512] = "", path[700], buf[64];
    FILE *f = fopen("/proc/self/cgroup", "r");
    if (!f) return 0;
    char line[600];
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "0::", 3)) {
            snprintf(rel, sizeof rel, "%.500s", line + 3);
            rel[strcspn(rel, "\n")] = 0;
        }
    fclose(f);
    double v[2] = {0, 0};
    const char *names[2] = {"memory.max", "memory.current"};
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof path, "/sys/fs/cgroup%s/%s", rel, names[i]);
        f = fopen(path, "r");
        if (!f) return 0;
        bool ok = fgets(buf, sizeof buf, f) != NULL;
        fclose(f);
        if (!ok || !strncmp(buf, "max", 3)) return 0;
        v[i] = atof(buf);
    }
    return v[0] > v[1] ? v[0] - v[1] : 1;
}

double mem_available(void) {
    double a = meminfo_available(), c = cgroup_available();
    return c > 0 && (a == 0 || c < a) ? c : a;
}

int mem_budget_check(const mem_budget *b, int workers, double available, int imgsz, int batch,
                     char *err, size_t errlen) {
    if (available <= 0 || b->total * workers <= available) return 0;
    const double GiB = 1024.0 * 1024 * 1024;
    return errf(err, errlen,
                "imgsz=%d batch=%d: training needs %.1f GiB of memory per worker (activations "
                "%.1f GiB) x %d worker(s) on this machine, but %.1f GiB is available; lower "
                "batch or imgsz, or set micro_batch",
                imgsz, batch, b->total / GiB, b->train_act / GiB, workers, available / GiB);
}
