#include "common/train_args.h"

#include "common/log.h"

#include <math.h>
#include <stddef.h>
#include <string.h>
#include <unistd.h>

typedef enum { T_STR, T_LONG, T_DOUBLE, T_BOOL } arg_type;

/* One row per accepted key, in the order args.yaml lists them. `def` is the default as text;
 * `lo`/`hi` bound numbers (inclusive). Keys that Ultralytics has but this engine does not act on
 * are accepted with `inert` set: a non-default value gives a warning instead of silent ignoring. */
typedef struct arg_spec {
    const char *key;
    arg_type type;
    size_t off; /* offset into train_args, or (size_t)-1 for inert keys kept as text only */
    const char *def;
    double lo, hi;
    bool inert;
} arg_spec;

#define F(field) offsetof(train_args, field)
#define INERT ((size_t)-1)
static const double BIG = 1e18;

static const arg_spec specs[] = {
    {"task", T_STR, INERT, "detect", 0, 0, false},
    {"mode", T_STR, INERT, "train", 0, 0, false},
    {"model", T_STR, F(model), "yolov8n.yaml", 0, 0, false},
    {"data", T_STR, F(data), "", 0, 0, false},
    {"epochs", T_LONG, F(epochs), "100", 0, BIG, false},
    {"time", T_DOUBLE, F(time_hours), "0", 0, BIG, false},
    {"patience", T_LONG, F(patience), "100", 0, BIG, false},
    {"batch", T_LONG, F(batch), "16", 1, BIG, false},
    {"imgsz", T_LONG, F(imgsz), "640", 32, 8192, false},
    {"save", T_BOOL, F(save), "True", 0, 0, false},
    {"save_period", T_LONG, F(save_period), "-1", -1, BIG, false},
    {"cache", T_STR, F(cache), "False", 0, 0, false},
    {"device", T_STR, F(device), "cpu", 0, 0, false},
    {"workers", T_LONG, F(workers), "1", 1, 4096, false},
    {"project", T_STR, F(project), "runs/detect", 0, 0, false},
    {"name", T_STR, F(name), "train", 0, 0, false},
    {"exist_ok", T_BOOL, F(exist_ok), "False", 0, 0, false},
    {"pretrained", T_STR, INERT, "True", 0, 0, true},
    {"optimizer", T_STR, F(optimizer), "auto", 0, 0, false},
    {"verbose", T_BOOL, F(verbose), "True", 0, 0, false},
    {"seed", T_LONG, F(seed), "0", 0, BIG, false},
    {"deterministic", T_BOOL, F(deterministic), "True", 0, 0, false},
    {"single_cls", T_BOOL, F(single_cls), "False", 0, 0, false},
    {"rect", T_STR, INERT, "False", 0, 0, true},
    {"cos_lr", T_BOOL, F(cos_lr), "False", 0, 0, false},
    {"close_mosaic", T_LONG, F(close_mosaic), "10", 0, BIG, false},
    {"resume", T_STR, INERT, "False", 0, 0, true},
    {"amp", T_STR, INERT, "True", 0, 0, false},
    {"fraction", T_DOUBLE, F(fraction), "1.0", 1e-9, 1, false},
    {"profile", T_STR, INERT, "False", 0, 0, true},
    {"freeze", T_STR, INERT, "None", 0, 0, true},
    {"multi_scale", T_STR, INERT, "0.0", 0, 0, true},
    {"val", T_BOOL, F(val), "True", 0, 0, false},
    {"split", T_STR, INERT, "val", 0, 0, true},
    {"conf", T_DOUBLE, F(conf), "0.001", 0, 1, false},
    {"iou", T_DOUBLE, F(iou), "0.7", 0, 1, false},
    {"max_det", T_LONG, F(max_det), "300", 1, BIG, false},
    {"plots", T_BOOL, F(plots), "True", 0, 0, false},
    {"lr0", T_DOUBLE, F(lr0), "0.01", 0, BIG, false},
    {"lrf", T_DOUBLE, F(lrf), "0.01", 0, BIG, false},
    {"momentum", T_DOUBLE, F(momentum), "0.937", 0, 1, false},
    {"weight_decay", T_DOUBLE, F(weight_decay), "0.0005", 0, BIG, false},
    {"warmup_epochs", T_DOUBLE, F(warmup_epochs), "3.0", 0, BIG, false},
    {"warmup_momentum", T_DOUBLE, F(warmup_momentum), "0.8", 0, 1, false},
    {"warmup_bias_lr", T_DOUBLE, F(warmup_bias_lr), "0.1", 0, BIG, false},
    {"box", T_DOUBLE, F(box), "7.5", 0, BIG, false},
    {"cls", T_DOUBLE, F(cls), "0.5", 0, BIG, false},
    {"dfl", T_DOUBLE, F(dfl), "1.5", 0, BIG, false},
    {"nbs", T_LONG, F(nbs), "64", 1, BIG, false},
    {"hsv_h", T_DOUBLE, F(hsv_h), "0.015", 0, 1, false},
    {"hsv_s", T_DOUBLE, F(hsv_s), "0.7", 0, 1, false},
    {"hsv_v", T_DOUBLE, F(hsv_v), "0.4", 0, 1, false},
    {"degrees", T_DOUBLE, F(degrees), "0.0", -360, 360, false},
    {"translate", T_DOUBLE, F(translate), "0.1", 0, 1, false},
    {"scale", T_DOUBLE, F(scale), "0.5", 0, BIG, false},
    {"shear", T_DOUBLE, F(shear), "0.0", -180, 180, false},
    {"perspective", T_DOUBLE, F(perspective), "0.0", 0, 0.001, false},
    {"flipud", T_DOUBLE, F(flipud), "0.0", 0, 1, false},
    {"fliplr", T_DOUBLE, F(fliplr), "0.5", 0, 1, false},
    {"bgr", T_STR, INERT, "0.0", 0, 0, true},
    {"mosaic", T_DOUBLE, F(mosaic), "1.0", 0, 1, false},
    {"mixup", T_STR, INERT, "0.0", 0, 0, true},
    {"cutmix", T_STR, INERT, "0.0", 0, 0, true},
    {"copy_paste", T_STR, INERT, "0.0", 0, 0, true},
    /* ours */
    {"micro_batch", T_LONG, F(micro_batch), "0", 0, BIG, false},
    {"threads", T_LONG, F(threads), "0", 0, 1024, false},
    {"loader_threads", T_LONG, F(loader_threads), "2", 1, 256, false},
    {"bucket_mb", T_DOUBLE, F(bucket_mb), "25", 0.001, 1024, false},
    {"stall_warn", T_DOUBLE, F(stall_warn), "60", 0, BIG, false},
    {"stall_abort", T_DOUBLE, F(stall_abort), "600", 0, BIG, false},
};
#define NSPECS (sizeof specs / sizeof *specs)

/* Inert keys keep their text so args.yaml still lists what the user gave. */
static char inert_vals[NSPECS][64];

static int set_value(train_args *a, const arg_spec *s, const char *val, char *err, size_t errlen) {
    if (s->off == INERT) {
        snprintf(inert_vals[s - specs], sizeof inert_vals[0], "%s", val);
        return 0;
    }
    char *p = (char *)a + s->off;
    long l;
    double d;
    bool b;
    switch (s->type) {
    case T_STR: {
        size_t cap = !strcmp(s->key, "name")        ? sizeof a->name
                     : !strcmp(s->key, "optimizer") ? sizeof a->optimizer
                     : !strcmp(s->key, "device")    ? sizeof a->device
                     : !strcmp(s->key, "cache")     ? sizeof a->cache
                                                    : sizeof a->data;
        if (strlen(val) >= cap) return errf(err, errlen, "%s: value too long", s->key);
        memcpy(p, val, strlen(val) + 1);
        return 0;
    }
    case T_LONG:
        if (!parse_long(val, &l))
            return errf(err, errlen, "%s=%s: expected an integer", s->key, val);
        if (l < s->lo || l > s->hi)
            return errf(err, errlen, "%s=%s: must be %s%.0f", s->key, val,
                        l < s->lo ? ">= " : "<= ", l < s->lo ? s->lo : s->hi);
        *(long *)p = l;
        return 0;
    case T_DOUBLE:
        if (!parse_double(val, &d))
            return errf(err, errlen, "%s=%s: expected a number", s->key, val);
        if (d < s->lo || d > s->hi)
            return errf(err, errlen, "%s=%s: must be in [%g, %g]", s->key, val, s->lo, s->hi);
        *(double *)p = d;
        return 0;
    case T_BOOL:
        if (!parse_bool(val, &b))
            return errf(err, errlen, "%s=%s: expected True or False", s->key, val);
        *(bool *)p = b;
        return 0;
    }
    return 0;
}

int train_args_parse(kv_args *args, train_args *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    for (size_t i = 0; i < NSPECS; i++)
        if (set_value(out, &specs[i], specs[i].def, err, errlen) != 0)
            FATAL("bad default for %s", specs[i].key);
    for (size_t i = 0; i < NSPECS; i++) {
        const char *v = kv_get(args, specs[i].key);
        if (!v) continue;
        if (set_value(out, &specs[i], v, err, errlen) != 0) return -1;
        if (specs[i].inert && strcmp(v, specs[i].def))
            log_warn("%s=%s is accepted for compatibility but has no effect in this engine",
                     specs[i].key, v);
    }
    if (kv_check_unused(args, err, errlen) != 0) return -1;
    if (!out->data[0]) return errf(err, errlen, "data: missing (data=<file.h5|dataset.yaml>)");
    if (access(out->data, R_OK) != 0)
        return errf(err, errlen, "data=%s: file not found", out->data);
    if (strcmp(out->optimizer, "auto") && strcmp(out->optimizer, "SGD") &&
        strcmp(out->optimizer, "AdamW") && strcmp(out->optimizer, "MuSGD"))
        return errf(err, errlen, "optimizer=%s: expected auto, SGD, AdamW or MuSGD",
                    out->optimizer);
    if (!strcmp(out->device, "cuda") || !strncmp(out->device, "cuda:", 5) ||
        (out->device[0] >= '0' && out->device[0] <= '9'))
        return errf(err, errlen,
                    "device=%s: the CUDA training backend is not implemented yet; use device=cpu",
                    out->device);
    if (strcmp(out->device, "cpu"))
        return errf(err, errlen, "device=%s: expected cpu", out->device);
    if (!strcmp(out->cache, "True") || !strcmp(out->cache, "true") || !strcmp(out->cache, "ram"))
        strcpy(out->cache, "ram");
    else if (!strcmp(out->cache, "False") || !strcmp(out->cache, "false") ||
             !strcmp(out->cache, "None"))
        strcpy(out->cache, "False");
    else if (!strcmp(out->cache, "disk"))
        return errf(err, errlen,
                    "cache=disk is not implemented: use cache=ram, or pack the images at the "
                    "training size once (coordinator data pack ... imgsz=%ld)",
                    out->imgsz);
    else
        return errf(err, errlen, "cache=%s: expected False, True or ram", out->cache);
    if (out->batch % out->workers != 0) {
        char ok[256] = "";
        size_t len = 0;
        for (long b = out->batch - out->batch % out->workers; b <= out->batch + out->workers;
             b += out->workers)
            if (b > 0)
                len += (size_t)snprintf(ok + len, sizeof ok - len, "%s%ld", len ? ", " : "", b);
        return errf(err, errlen, "batch=%ld is not divisible by workers=%ld (try batch=%s)",
                    out->batch, out->workers, ok);
    }
    long share = out->batch / out->workers;
    if (out->micro_batch && share % out->micro_batch != 0)
        return errf(err, errlen, "micro_batch=%ld does not divide the per-worker batch %ld",
                    out->micro_batch, share);
    return 0;
}

void train_args_write_yaml(const train_args *a, FILE *f) {
    for (size_t i = 0; i < NSPECS; i++) {
        const arg_spec *s = &specs[i];
        if (s->off == INERT) {
            fprintf(f, "%s: %s\n", s->key, inert_vals[i]);
            continue;
        }
        const char *p = (const char *)a + s->off;
        switch (s->type) {
        case T_STR:
            fprintf(f, "%s: %s\n", s->key, p[0] ? p : "null");
            break;
        case T_LONG:
            fprintf(f, "%s: %ld\n", s->key, *(const long *)p);
            break;
        case T_DOUBLE:
            fprintf(f, "%s: %.10g\n", s->key, *(const double *)p);
            break;
        case T_BOOL:
            fprintf(f, "%s: %s\n", s->key, *(const bool *)p ? "true" : "false");
            break;
        }
    }
    fprintf(f, "save_dir: %s\n", a->save_dir);
}
