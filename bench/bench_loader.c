/* Loader throughput: decode (+ load-time resize) alone vs decode + full training augmentation
 * (mosaic on, so 4 decodes per output image), per thread, at imgsz 320 and 640, on
 *   - synth: the built-in synthetic shapes set packed into an .h5 in /tmp (raw RGB, 640 x 640),
 *     read through the real dataset reader;
 *   - coco8: the 8 COCO JPEGs, read from their files into memory (TurboJPEG, DCT scaling).
 * Numbers on a shared machine are noisy; the ratio is measured in the same process. */
#include "common/log.h"
#include "common/timer.h"
#include "dataio/augment.h"
#include "dataio/dataset.h"
#include "dataio/dataset_write.h"
#include "dataio/decode.h"
#include "dataio/loader.h"
#include "dataio/synth.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- in-memory source of encoded files ----------------------------------------------------- */

typedef struct mem_item {
    uint8_t *bytes;
    size_t nbytes;
    int h, w, enc, nboxes;
    float *labels;
} mem_item;

typedef struct mem_set {
    mem_item *items;
    int n;
} mem_set;

static int mem_read(void *ctx, int index, dataset_sample *out, char *err, size_t errlen) {
    (void)err, (void)errlen;
    const mem_item *it = &((mem_set *)ctx)->items[index];
    memset(out, 0, sizeof *out);
    out->index = index, out->height = it->h, out->width = it->w;
    out->encoding = (image_encoding)it->enc;
    out->bytes = xmalloc(it->nbytes);
    memcpy(out->bytes, it->bytes, it->nbytes);
    out->nbytes = it->nbytes;
    out->nboxes = it->nboxes;
    out->labels = xmalloc(sizeof(float) * 5 * (size_t)(it->nboxes + 1));
    memcpy(out->labels, it->labels, sizeof(float) * 5 * (size_t)it->nboxes);
    return 0;
}

static int mem_decode(void *ctx, const dataset_sample *s, int min_h, int min_w, uint8_t **rgb,
                      int *h, int *w, char *err, size_t errlen) {
    (void)ctx;
    *h = s->height, *w = s->width;
    return image_decode(s->bytes, s->nbytes, s->encoding, min_h, min_w, rgb, h, w, err, errlen);
}

static void mem_free(void *ctx, dataset_sample *s) {
    (void)ctx;
    free(s->bytes);
    free(s->labels);
}

static sample_source mem_source(mem_set *m, const char *name) {
    return (sample_source){.ctx = m,
                           .name = name,
                           .size = m->n,
                           .read = mem_read,
                           .decode = mem_decode,
                           .free_sample = mem_free};
}

static uint8_t *read_file(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = xmalloc((size_t)(sz > 0 ? sz : 1));
    *n = fread(b, 1, (size_t)sz, f);
    fclose(f);
    return b;
}

/* coco8 train + val JPEGs (labels from the .txt files). 0 images when the folder is missing. */
static mem_set load_coco8(void) {
    mem_set m = {xcalloc(16, sizeof(mem_item)), 0};
    const char *root = "/work/shared/data/coco8";
    const char *splits[2] = {"train", "val"};
    for (int s = 0; s < 2; s++) {
        char dir[512];
        snprintf(dir, sizeof dir, "%s/images/%s", root, splits[s]);
        DIR *d = opendir(dir);
        if (!d) continue;
        struct dirent *e;
        while ((e = readdir(d)) && m.n < 16) {
            size_t len = strlen(e->d_name);
            if (len < 5 || strcmp(e->d_name + len - 4, ".jpg")) continue;
            char path[1024], lpath[1024], err[256];
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            snprintf(lpath, sizeof lpath, "%s/labels/%s/%.*s.txt", root, splits[s], (int)len - 4,
                     e->d_name);
            mem_item *it = &m.items[m.n];
            it->bytes = read_file(path, &it->nbytes);
            if (!it->bytes) continue;
            if (image_decode_size(it->bytes, it->nbytes, IMG_JPEG, &it->h, &it->w, err,
                                  sizeof err)) {
                free(it->bytes);
                continue;
            }
            it->enc = IMG_JPEG;
            it->labels = xmalloc(sizeof(float) * 5 * 64);
            FILE *f = fopen(lpath, "r");
            float v[5];
            while (f && it->nboxes < 64 &&
                   fscanf(f, "%f %f %f %f %f", &v[0], &v[1], &v[2], &v[3], &v[4]) == 5)
                memcpy(it->labels + 5 * it->nboxes++, v, sizeof v);
            if (f) fclose(f);
            m.n++;
        }
        closedir(d);
    }
    return m;
}

/* ---- measurements ------------------------------------------------------------------------- */

/* CPU seconds of this process (all threads): on a shared, oversubscribed machine, images per CPU
 * second is a steadier per-thread rate than images per wall second. */
static double cpu_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Decode + load-time resize on one thread, the same work per image as the loader minus the
 * augmentation. Returns images per CPU second. */
static double bench_decode(sample_source *src, int imgsz, double min_s) {
    char err[512];
    int done = 0;
    double t0 = cpu_seconds(), t;
    do {
        for (int i = 0; i < src->size; i++, done++) {
            dataset_sample s;
            if (src->read(src->ctx, i, &s, err, sizeof err)) FATAL("%s", err);
            int th, tw, h, w;
            augment_load_size(s.height, s.width, imgsz, &th, &tw);
            uint8_t *rgb;
            if (src->decode(src->ctx, &s, th, tw, &rgb, &h, &w, err, sizeof err)) FATAL("%s", err);
            if (h != th || w != tw) {
                uint8_t *r = xmalloc((size_t)th * tw * 3);
                image_resize_bilinear(rgb, h, w, r, th, tw);
                free(r);
            }
            free(rgb);
            src->free_sample(src->ctx, &s);
        }
        t = cpu_seconds() - t0;
    } while (t < min_s);
    return done / t;
}

/* The loader (training pipeline, mosaic on): output images per wall second (returned) and per
 * CPU second (*per_cpu). */
static double bench_loader(loader *L, int size, int nimages, int batch, double *stall,
                           double *per_cpu) {
    char err[512];
    int n = 0, steps = nimages / batch, *idx = xmalloc(sizeof(int) * (size_t)batch);
    double t0 = now_seconds(), c0 = cpu_seconds();
    *stall = 0;
    for (int s = 0; s < steps; s++) {
        for (int b = 0; b < batch; b++) idx[b] = (s * batch + b) % size;
        if (loader_submit(L, s, 0, idx, batch, err, sizeof err)) FATAL("%s", err);
    }
    for (int s = 0; s < steps; s++) {
        loader_batch b;
        if (loader_next(L, &b, err, sizeof err)) FATAL("%s", err);
        n += b.n;
        *stall += b.stall_s;
    }
    free(idx);
    *per_cpu = n / (cpu_seconds() - c0);
    return n / (now_seconds() - t0);
}

static void run_set(const char *set, sample_source (*make)(void *), void *arg, int nimg,
                    double min_s) {
    int sizes[2] = {320, 640};
    for (int k = 0; k < 2; k++) {
        int imgsz = sizes[k];
        sample_source src = make(arg);
        double dec = bench_decode(&src, imgsz, min_s);
        if (src.close) src.close(src.ctx);
        double wall[2], cpu[2], stall[2];
        for (int t = 1; t <= 2; t++) {
            loader_config c = loader_config_defaults();
            c.imgsz = imgsz, c.nthreads = t, c.depth = 4, c.max_batch = 8;
            char err[512];
            sample_source src2 = make(arg);
            int size = src2.size;
            loader *L = loader_create_source(src2, &c, err, sizeof err);
            if (!L) FATAL("%s", err);
            wall[t - 1] = bench_loader(L, size, nimg, 8, &stall[t - 1], &cpu[t - 1]);
            loader_destroy(L);
        }
        printf("%-5s imgsz %3d  per CPU-second of one thread: decode+resize %6.1f img/s, "
               "decode+augment(mosaic) %5.1f img/s, ratio %.3f  |  loader wall: 1 thread %5.1f "
               "img/s, 2 threads %5.1f img/s (consumer stall %.2f s / %.2f s)\n",
               set, imgsz, dec, cpu[0], cpu[0] / dec, wall[0], wall[1], stall[0], stall[1]);
    }
}

/* ---- synth set through the real dataset file ---------------------------------------------- */

typedef struct h5_src {
    const char *path;
} h5_src;

/* The same source loader_create builds (dataio/loader_dataset.c), rebuilt here because the
 * decode-alone measurement needs the source itself. */
typedef struct ds_ctx {
    dataset *ds;
} ds_ctx;
static int ds_read(void *ctx, int i, dataset_sample *o, char *e, size_t n) {
    return dataset_read(((ds_ctx *)ctx)->ds, SPLIT_TRAIN, i, o, e, n);
}
static void ds_free(void *ctx, dataset_sample *s) {
    (void)ctx;
    dataset_sample_free(s);
}
static void ds_close(void *ctx) {
    dataset_close(((ds_ctx *)ctx)->ds);
    free(ctx);
}
static sample_source make_h5(void *arg) {
    char err[512];
    ds_ctx *c = xcalloc(1, sizeof *c);
    c->ds = dataset_open(((h5_src *)arg)->path, err, sizeof err);
    if (!c->ds) FATAL("%s", err);
    return (sample_source){.ctx = c,
                           .name = ((h5_src *)arg)->path,
                           .size = dataset_split_size(c->ds, SPLIT_TRAIN),
                           .read = ds_read,
                           .decode = mem_decode,
                           .free_sample = ds_free,
                           .close = ds_close};
}
static sample_source make_mem(void *arg) {
    return mem_source(arg, "coco8");
}

static int write_synth(const char *path, int n, int side) {
    char err[512];
    const char *names[3] = {"circle", "rectangle", "triangle"};
    dataset_writer *w =
        dataset_writer_create(path, 3, names, "bench_loader synth", err, sizeof err);
    if (!w || dataset_writer_begin_split(w, SPLIT_TRAIN, err, sizeof err)) {
        fprintf(stderr, "bench_loader: %s\n", err);
        return -1;
    }
    uint8_t *rgb = xmalloc((size_t)side * side * 3);
    float lab[SYNTH_MAX_OBJECTS * 5];
    for (int i = 0; i < n; i++) {
        int nb = synth_image(1, SPLIT_TRAIN, i, side, 3, rgb, lab);
        if (dataset_writer_add(w, rgb, (size_t)side * side * 3, IMG_RAW_RGB, side, side, lab, nb,
                               "synth", err, sizeof err)) {
            fprintf(stderr, "bench_loader: %s\n", err);
            dataset_writer_abort(w);
            free(rgb);
            return -1;
        }
    }
    free(rgb);
    if (dataset_writer_finish(w, NULL, err, sizeof err)) {
        fprintf(stderr, "bench_loader: %s\n", err);
        return -1;
    }
    return 0;
}

int main(void) {
    log_set_program("bench_loader");
    double min_s = 0.5;
    char path[256];
    snprintf(path, sizeof path, "/tmp/bench_loader_synth_%d.h5", (int)getpid());
    if (write_synth(path, 32, 640) == 0) {
        h5_src h = {path};
        run_set("synth", make_h5, &h, 32, min_s);
        unlink(path);
    }
    mem_set coco = load_coco8();
    if (coco.n == 0) {
        printf("coco8 not found under /work/shared/data/coco8: skipped\n");
    } else {
        run_set("coco8", make_mem, &coco, 48, min_s);
    }
    for (int i = 0; i < coco.n; i++) free(coco.items[i].bytes), free(coco.items[i].labels);
    free(coco.items);
    return 0;
}
