#include "lifecycle/eval_args.h"

#include "common/log.h"
#include "coordinator/rundir.h"

#include <stdio.h>
#include <string.h>

int eval_args_parse(kv_args *a, long batch_def, double conf_def, const char *name_def, eval_args *o,
                    char *err, size_t errlen) {
    memset(o, 0, sizeof *o);
    long threads;
    const char *nms = kv_get(a, "nms");
    o->dev.device = kv_get(a, "device");
    if (kv_get_long(a, "threads", 0, &threads, err, errlen) ||
        kv_get_long(a, "imgsz", 0, &o->imgsz, err, errlen) ||
        kv_get_long(a, "batch", batch_def, &o->batch, err, errlen) ||
        kv_get_double(a, "conf", conf_def, &o->conf, err, errlen) ||
        kv_get_double(a, "iou", 0.7, &o->iou, err, errlen) ||
        kv_get_long(a, "max_det", 300, &o->max_det, err, errlen) ||
        kv_get_long(a, "workers", 2, &o->workers, err, errlen) ||
        kv_get_bool(a, "exist_ok", false, &o->exist_ok, err, errlen))
        return -1;
    o->dev.threads = (int)threads;
    kv_get_str(a, "project", "runs/detect", &o->project);
    kv_get_str(a, "name", name_def, &o->name);
    o->nms = -1;
    bool b;
    if (nms && strcmp(nms, "None")) {
        if (!parse_bool(nms, &b))
            return errf(err, errlen, "nms=%s: expected True, False or None", nms);
        o->nms = b;
    }
    if (threads < 0 || threads > 1024)
        return errf(err, errlen, "threads=%ld: expected 0..1024", threads);
    if (o->imgsz != 0 && (o->imgsz < 32 || o->imgsz > 8192))
        return errf(err, errlen, "imgsz=%ld: expected 32..8192", o->imgsz);
    if (o->batch < 1 || o->batch > 4096)
        return errf(err, errlen, "batch=%ld: expected 1..4096", o->batch);
    if (!(o->conf >= 0 && o->conf <= 1))
        return errf(err, errlen, "conf=%g: expected 0..1", o->conf);
    if (!(o->iou >= 0 && o->iou <= 1)) return errf(err, errlen, "iou=%g: expected 0..1", o->iou);
    if (o->max_det < 1 || o->max_det > 100000)
        return errf(err, errlen, "max_det=%ld: expected 1..100000", o->max_det);
    if (o->workers < 1 || o->workers > 256)
        return errf(err, errlen, "workers=%ld: expected 1..256 (loader threads)", o->workers);
    return 0;
}

void eval_args_opts(const eval_args *e, const eval_model *em, bool plots, eval_opts *o) {
    int imgsz = e->imgsz ? (int)e->imgsz : em->imgsz;
    if (imgsz % 32) {
        int up = (imgsz + 31) / 32 * 32;
        log_warn("imgsz=%d must be a multiple of the max stride 32, updating to %d", imgsz, up);
        imgsz = up;
    }
    *o = (eval_opts){.imgsz = imgsz,
                     .batch = (int)e->batch,
                     .conf = (float)e->conf,
                     .iou = (float)e->iou,
                     .max_det = (int)e->max_det,
                     .nms = e->nms,
                     .plots = plots,
                     .loader_threads = (int)e->workers};
}

int eval_args_out_dir(const eval_args *e, char *out, size_t n, char *err, size_t errlen) {
    return rundir_claim(e->project, e->name, e->exist_ok, out, n, err, errlen);
}
