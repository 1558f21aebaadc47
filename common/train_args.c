#include "common/train_args.h"

#include "common/log.h"

#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

typedef enum { T_STR, T_LONG, T_DOUBLE, T_BOOL, T_OPTBOOL } arg_type;

/* One row per accepted key, in the order args.yaml lists them. `def` is the default as text;
 * `lo`/`hi` bound numbers (inclusive). Keys that Ultralytics has but this engine does not act on
 * are accepted with `inert` set: a non-default value gives a warning instead of silent ignoring.
 * `since`: the first release (ultralytics=) that has the key; with an older one it is refused. */
typedef struct arg_spec {
    const char *key;
    arg_type type;
    size_t off; /* offset into train_args, or (size_t)-1 for inert keys kept as text only */
    const char *def;
    double lo, hi;
    bool inert;
    ul_version since;
} arg_spec;

#define F(field) offsetof(train_args, field)
#define INERT ((size_t)-1)
static const double BIG = 1e18;

static const arg_spec specs[] = {
    {"task", T_STR, INERT, "detect", 0, 0, false, 0},
    {"mode", T_STR, INERT, "train", 0, 0, false, 0},
    {"model", T_STR, F(model), "yolov8n.yaml", 0, 0, false, 0},
    {"data", T_STR, F(data), "", 0, 0, false, 0},
    {"epochs", T_LONG, F(epochs), "100", 1, 1e6, false, 0},
    {"time", T_DOUBLE, F(time_hours), "0", 0, BIG, false, 0},
    {"patience", T_LONG, F(patience), "100", 0, BIG, false, 0},
    {"batch", T_LONG, F(batch), "16", 1, 1e6, false, 0},
    {"imgsz", T_LONG, F(imgsz), "640", 32, 8192, false, 0},
    {"save", T_BOOL, F(save), "True", 0, 0, false, 0},
    {"save_period", T_LONG, F(save_period), "-1", -1, BIG, false, 0},
    {"cache", T_STR, F(cache), "False", 0, 0, false, 0},
    {"device", T_STR, F(device), "cpu", 0, 0, false, 0},
    {"workers", T_LONG, F(workers), "1", 1, 4096, false, 0},
    {"project", T_STR, F(project), "runs/detect", 0, 0, false, 0},
    {"name", T_STR, F(name), "train", 0, 0, false, 0},
    {"exist_ok", T_BOOL, F(exist_ok), "False", 0, 0, false, 0},
    {"pretrained", T_STR, F(pretrained), "True", 0, 0, false, 0},
    {"cls_remap", T_BOOL, F(cls_remap), "True", 0, 0, false, UL_8_4_190},
    {"optimizer", T_STR, F(optimizer), "auto", 0, 0, false, 0},
    {"verbose", T_BOOL, F(verbose), "True", 0, 0, false, 0},
    {"seed", T_LONG, F(seed), "0", 0, BIG, false, 0},
    {"deterministic", T_BOOL, F(deterministic), "True", 0, 0, false, 0},
    {"single_cls", T_BOOL, F(single_cls), "False", 0, 0, false, 0},
    {"rect", T_STR, INERT, "False", 0, 0, true, 0},
    {"cos_lr", T_BOOL, F(cos_lr), "False", 0, 0, false, 0},
    {"close_mosaic", T_LONG, F(close_mosaic), "10", 0, BIG, false, 0},
    {"resume", T_STR, F(resume), "False", 0, 0, false, 0},
    {"amp", T_STR, F(amp), "True", 0, 0, false, 0},
    {"fraction", T_DOUBLE, F(fraction), "1.0", 1e-9, BIG, false, 0},
    {"profile", T_STR, INERT, "False", 0, 0, true, 0},
    {"freeze", T_STR, INERT, "None", 0, 0, true, 0},
    {"multi_scale", T_STR, INERT, "0.0", 0, 0, true, 0},
    {"channels_last", T_OPTBOOL, F(channels_last), "None", 0, 0, false, UL_8_4_190},
    {"val", T_BOOL, F(val), "True", 0, 0, false, 0},
    {"split", T_STR, INERT, "val", 0, 0, true, 0},
    {"save_json", T_BOOL, F(save_json), "False", 0, 0, false, 0},
    {"conf", T_DOUBLE, F(conf), "0.001", 0, 1, false, 0},
    {"iou", T_DOUBLE, F(iou), "0.7", 0, 1, false, 0},
    {"max_det", T_LONG, F(max_det), "300", 1, 1e5, false, 0},
    {"plots", T_BOOL, F(plots), "True", 0, 0, false, 0},
    {"nms", T_OPTBOOL, F(nms), "None", 0, 0, false, UL_8_4_190},
    {"lr0", T_DOUBLE, F(lr0), "0.01", 0, BIG, false, 0},
    {"lrf", T_DOUBLE, F(lrf), "0.01", 0, BIG, false, 0},
    {"momentum", T_DOUBLE, F(momentum), "0.937", 0, 1, false, 0},
    {"weight_decay", T_DOUBLE, F(weight_decay), "0.0005", 0, BIG, false, 0},
    {"warmup_epochs", T_DOUBLE, F(warmup_epochs), "3.0", 0, BIG, false, 0},
    {"warmup_momentum", T_DOUBLE, F(warmup_momentum), "0.8", 0, 1, false, 0},
    {"warmup_bias_lr", T_DOUBLE, F(warmup_bias_lr), "0.1", 0, BIG, false, 0},
    {"box", T_DOUBLE, F(box), "7.5", 0, BIG, false, 0},
    {"cls", T_DOUBLE, F(cls), "0.5", 0, BIG, false, 0},
    {"cls_pw", T_DOUBLE, F(cls_pw), "0.0", 0, 1, false, UL_8_4_190},
    {"dfl", T_DOUBLE, F(dfl), "1.5", 0, BIG, false, 0},
    {"nbs", T_LONG, F(nbs), "64", 1, 1e6, false, 0},
    {"hsv_h", T_DOUBLE, F(hsv_h), "0.015", 0, 1, false, 0},
    {"hsv_s", T_DOUBLE, F(hsv_s), "0.7", 0, 1, false, 0},
    {"hsv_v", T_DOUBLE, F(hsv_v), "0.4", 0, 1, false, 0},
    {"degrees", T_DOUBLE, F(degrees), "0.0", -360, 360, false, 0},
    {"translate", T_DOUBLE, F(translate), "0.1", 0, 1, false, 0},
    {"scale", T_DOUBLE, F(scale), "0.5", 0, BIG, false, 0},
    {"shear", T_DOUBLE, F(shear), "0.0", -180, 180, false, 0},
    {"perspective", T_DOUBLE, F(perspective), "0.0", 0, 0.001, false, 0},
    {"flipud", T_DOUBLE, F(flipud), "0.0", 0, 1, false, 0},
    {"fliplr", T_DOUBLE, F(fliplr), "0.5", 0, 1, false, 0},
    {"bgr", T_STR, INERT, "0.0", 0, 0, true, 0},
    {"mosaic", T_DOUBLE, F(mosaic), "1.0", 0, 1, false, 0},
    {"mixup", T_STR, INERT, "0.0", 0, 0, true, 0},
    {"cutmix", T_STR, INERT, "0.0", 0, 0, true, 0},
    {"copy_paste", T_STR, INERT, "0.0", 0, 0, true, 0},
    /* ours */
    {"micro_batch", T_LONG, F(micro_batch), "0", 0, 1e6, false, 0},
    {"threads", T_LONG, F(threads), "0", 0, 1024, false, 0},
    {"loader_threads", T_LONG, F(loader_threads), "2", 1, 256, false, 0},
    {"bucket_mb", T_DOUBLE, F(bucket_mb), "25", 0.001, 1024, false, 0},
    {"stall_warn", T_DOUBLE, F(stall_warn), "60", 0, BIG, false, 0},
    {"stall_abort", T_DOUBLE, F(stall_abort), "600", 0, BIG, false, 0},
    {"keep", T_LONG, F(keep), "0", 0, BIG, false, 0},
    {"mlflow", T_STR, F(mlflow), "", 0, 0, false, 0},
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
                     : !strcmp(s->key, "amp")       ? sizeof a->amp
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
    case T_OPTBOOL:
        if (!strcmp(val, "None") || !strcmp(val, "null") || !val[0]) {
            *(int *)p = -1;
            return 0;
        }
        if (!parse_bool(val, &b))
            return errf(err, errlen, "%s=%s: expected True, False or None", s->key, val);
        *(int *)p = b;
        return 0;
    }
    return 0;
}

/* Case-insensitive optimizer name, as Ultralytics looks it up; refuses the ones it has and we
 * do not implement, by name. */
static int check_optimizer(train_args *a, char *err, size_t errlen) {
    static const char *const ours[] = {"auto", "SGD", "AdamW", "MuSGD"};
    static const char *const theirs[] = {"Adam", "Adamax", "NAdam", "RAdam", "RMSprop"};
    for (size_t i = 0; i < sizeof ours / sizeof *ours; i++)
        if (!strcasecmp(a->optimizer, ours[i])) {
            snprintf(a->optimizer, sizeof a->optimizer, "%s", ours[i]);
            return 0;
        }
    for (size_t i = 0; i < sizeof theirs / sizeof *theirs; i++)
        if (!strcasecmp(a->optimizer, theirs[i]))
            return errf(err, errlen,
                        "optimizer=%s: Ultralytics has it but this engine does not implement it "
                        "yet; use auto, SGD, AdamW or MuSGD",
                        a->optimizer);
    return errf(err, errlen, "optimizer=%s: expected auto, SGD, AdamW or MuSGD", a->optimizer);
}

int train_args_gpus(const train_args *a, int *ids, int max) {
    const char *d = a->device;
    if (!strcmp(d, "cpu")) return 0;
    if (!strcmp(d, "cuda")) return -1;
    if (!strncmp(d, "cuda:", 5)) d += 5;
    int n = 0;
    for (const char *p = d; *p;) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 0 || v > 1023 || (*end && *end != ',')) return -2;
        if (ids && n < max) ids[n] = (int)v;
        n++;
        p = *end ? end + 1 : end;
        if (*end && !*p) return -2; /* a trailing comma */
    }
    return n ? n : -2;
}

/* device=: cpu, cuda (one GPU per worker by its local rank), cuda:N, N or N,M,... (Ultralytics'
 * syntax); syntax only: whether the GPUs exist is checked where they are (worker info, setup). */
static int check_device(const train_args *a, char *err, size_t errlen) {
    int ids[64], n = train_args_gpus(a, ids, 64);
    if (n == -2)
        return errf(err, errlen,
                    "device=%s: expected cpu, cuda, cuda:N or GPU indices such as 0 or 0,1",
                    a->device);
    if (n > 64) return errf(err, errlen, "device=%s: more than 64 GPUs listed", a->device);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < i; j++)
            if (ids[i] == ids[j])
                return errf(err, errlen, "device=%s: GPU %d is listed twice", a->device, ids[i]);
    return 0;
}

/* amp: on the CPU, Ultralytics trains in float32 for True/fp16 (its AMP check is CUDA-only) and
 * for False/fp32. Here True/fp16 train with mixed-precision convolutions (inputs rounded to
 * bfloat16, float sums, float master weights, BN and loss; kernels/conv2d.h) where every worker's
 * CPU multiplies bf16 natively, else float32; False/fp32 float32 and bf16 (PyTorch's CPU bfloat16
 * autocast there) bf16 always (worker/device.h: device_cpu_precision). On a GPU (device=), True,
 * fp16 and bf16 train in bf16 mixed precision (device_precision). */
static int check_amp(train_args *a, const ul_behaviour *beh, char *err, size_t errlen) {
    bool b;
    if (parse_bool(a->amp, &b)) {
        snprintf(a->amp, sizeof a->amp, "%s", b ? "True" : "False");
        return 0;
    }
    if (!beh->args_8_4_190)
        return errf(err, errlen, "amp=%s: expected True or False (ultralytics=%s)", a->amp,
                    ul_version_name(a->ultralytics));
    if (!strcmp(a->amp, "fp16") || !strcmp(a->amp, "fp32") || !strcmp(a->amp, "bf16")) return 0;
    return errf(err, errlen, "amp=%s: expected True, False, fp16, fp32 or bf16", a->amp);
}

/* pretrained: True / False (as Ultralytics: they matter only with a model= weights file), or the
 * weights to start from (checked by coordinator/model_source.h, for a run that does not resume). */
static void normalise_pretrained(train_args *a) {
    bool b;
    if (parse_bool(a->pretrained, &b))
        snprintf(a->pretrained, sizeof a->pretrained, "%s", b ? "True" : "False");
}

/* The release first: the other keys (which exist, their defaults, their checks) depend on it. */
static int parse_version(kv_args *args, train_args *out, char *err, size_t errlen) {
    out->ultralytics = UL_VERSION_DEFAULT;
    const char *v = kv_get(args, "ultralytics");
    if (v && ul_version_parse(v, &out->ultralytics) != 0)
        return errf(err, errlen,
                    "ultralytics=%s: not a supported Ultralytics release; supported: %s", v,
                    ul_versions_supported());
    return 0;
}

/* 8.4.190 deprecates end2end for nms (end2end=True -> nms=False, False -> None); in 8.4.33 it
 * only selects the head of standalone val/predict, never of training validation. */
static int map_end2end(kv_args *args, train_args *a, char *err, size_t errlen) {
    const char *v = kv_get(args, "end2end");
    bool b;
    if (!v) return 0;
    if (!parse_bool(v, &b)) return errf(err, errlen, "end2end=%s: expected True or False", v);
    if (!ul_behaviour_of(a->ultralytics)->args_8_4_190) {
        log_warn("end2end=%s has no effect on training validation in Ultralytics 8.4.33 (its "
                 "one-to-one head is always used there); ignored as it is there",
                 v);
        return 0;
    }
    if (kv_get(args, "nms")) return 0; /* an explicit nms= wins */
    a->nms = b ? 0 : -1;
    log_warn("end2end=%s is deprecated in Ultralytics 8.4.190: using nms=%s", v,
             b ? "False" : "None");
    return 0;
}

int train_args_parse(kv_args *args, train_args *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    if (parse_version(args, out, err, errlen) != 0) return -1;
    const ul_behaviour *beh = ul_behaviour_of(out->ultralytics);
    for (size_t i = 0; i < NSPECS; i++)
        if (set_value(out, &specs[i], specs[i].def, err, errlen) != 0)
            FATAL("bad default for %s", specs[i].key);
    for (size_t i = 0; i < NSPECS; i++) {
        const char *v = kv_get(args, specs[i].key);
        if (!v) continue;
        if (specs[i].since > out->ultralytics)
            return errf(err, errlen,
                        "%s=%s: not a training argument of Ultralytics %s (ultralytics=%s); it "
                        "exists from %s on",
                        specs[i].key, v, ul_version_name(out->ultralytics),
                        ul_version_name(out->ultralytics), ul_version_name(specs[i].since));
        if (set_value(out, &specs[i], v, err, errlen) != 0) return -1;
        if (specs[i].inert && strcmp(v, specs[i].def))
            log_warn("%s=%s is accepted for compatibility but has no effect in this engine",
                     specs[i].key, v);
    }
    if (map_end2end(args, out, err, errlen) != 0) return -1;
    if (kv_check_unused(args, err, errlen) != 0) return -1;
    if (!out->deterministic && train_args_gpus(out, NULL, 0) == 0)
        log_warn("deterministic=False has no effect on the CPU: its training is always "
                 "deterministic (on a GPU it lets cuDNN time and pick any algorithm)");
    if (!out->data[0]) return errf(err, errlen, "data: missing (data=<file.h5|dataset.yaml>)");
    if (access(out->data, R_OK) != 0)
        return errf(err, errlen, "data=%s: file not found", out->data);
    if (check_optimizer(out, err, errlen) != 0 || check_amp(out, beh, err, errlen) != 0 ||
        (normalise_pretrained(out), 0))
        return -1;
    if (out->fraction > 1 && (!beh->fraction_count || out->fraction != floor(out->fraction)))
        return errf(err, errlen, "fraction=%g: must be in (0, 1]%s", out->fraction,
                    beh->fraction_count ? ", or a whole number of images" : "");
    if (out->channels_last == 0)
        log_warn("channels_last=False: this engine keeps activations NHWC (channels-last) "
                 "always; the layout changes no result, only speed");
    if (check_device(out, err, errlen) != 0) return -1;
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

bool train_args_resume_may_change(const char *key) {
    static const char *const keys[] = {"resume",      "data",       "workers",
                                       "micro_batch", "threads",    "loader_threads",
                                       "bucket_mb",   "stall_warn", "stall_abort",
                                       "device",      "patience",   "save_period",
                                       "keep",        "val",        "plots",
                                       "verbose",     "exist_ok",   "project",
                                       "name",        "time",       "mlflow",
                                       "save_json",   "cache"}; /* cache=ram changes no batch
                                                                   (docs/loader.md) */
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++)
        if (!strcmp(keys[i], key)) return true;
    return false;
}

char *train_args_yaml_text(const train_args *a) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (!f) FATAL("open_memstream failed");
    train_args_write_yaml(a, f);
    if (fclose(f) != 0) FATAL("open_memstream failed");
    return buf;
}

void train_args_write_yaml(const train_args *a, FILE *f) {
    for (size_t i = 0; i < NSPECS; i++) {
        const arg_spec *s = &specs[i];
        if (s->since > a->ultralytics) continue;
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
        case T_DOUBLE: {
            /* the shortest text that reads back as the same double */
            double v = *(const double *)p;
            char buf[40];
            for (int prec = 10; prec <= 17; prec++) {
                snprintf(buf, sizeof buf, "%.*g", prec, v);
                if (strtod(buf, NULL) == v) break;
            }
            fprintf(f, "%s: %s\n", s->key, buf);
            break;
        }
        case T_BOOL:
            fprintf(f, "%s: %s\n", s->key, *(const bool *)p ? "true" : "false");
            break;
        case T_OPTBOOL: {
            int v = *(const int *)p;
            fprintf(f, "%s: %s\n", s->key, v < 0 ? "null" : v ? "true" : "false");
            break;
        }
        }
    }
    fprintf(f, "ultralytics: %s\n", ul_version_name(a->ultralytics));
    fprintf(f, "save_dir: %s\n", a->save_dir);
}

/* Python's round() to an integer: half to even. */
static long round_half_even(double x) {
    double r = round(x);
    if (fabs(x - trunc(x)) == 0.5) r = 2.0 * round(x / 2.0);
    return (long)r;
}

long train_args_train_images(const train_args *a, long n) {
    long k = n;
    if (ul_behaviour_of(a->ultralytics)->fraction_count) {
        if (a->fraction > 1)
            k = (long)a->fraction; /* an image count */
        else if (a->fraction < 1)
            k = round_half_even((double)n * a->fraction);
    } else if (a->fraction < 1) {
        k = round_half_even((double)n * a->fraction);
    }
    if (k > n) k = n;
    return k > 1 ? k : 1;
}

bool train_args_val_one2one(const train_args *a) {
    return !ul_behaviour_of(a->ultralytics)->e2e_val_nms_default || a->nms == 0;
}

bool train_args_bf16(const train_args *a) {
    return !strcmp(a->amp, "bf16");
}
