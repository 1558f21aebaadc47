#include "dataio/loader.h"

#include "common/log.h"
#include "common/timer.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A submitted step waiting for a free ring slot. */
typedef struct job {
    uint64_t seq;
    int64_t step;
    int epoch, n;
    int out_h, out_w; /* output size (imgsz x imgsz unless a validation shape was given) */
    int *indices;
    double mosaic;
    struct job *next;
} job;

enum { SLOT_FREE, SLOT_FILLING, SLOT_READY, SLOT_HELD };

/* One batch buffer. While FILLING, its job fields are fixed and each sample position b belongs to
 * the thread that took it, so workers write images and labels without holding the lock. */
typedef struct slot {
    int state;
    job *job;
    int next_sample, done;
    uint8_t *images;
    float **sample_labels; /* [max_batch] per-sample [k][5], malloc'd by workers */
    int *sample_nlabels;
    letterbox_info *info;
    float *labels; /* assembled [nlabels][6] */
    size_t labels_cap;
    int failed;
    char err[512];
    double prep_s; /* summed per-sample read + decode + transform seconds */
} slot;

struct loader {
    sample_source src;
    loader_config cfg;
    pthread_mutex_t mu;
    pthread_cond_t work_cv, ready_cv;
    pthread_t *threads;
    int nstarted;
    slot *slots;
    job *pending_head, *pending_tail;
    uint64_t next_submit_seq, next_consume_seq;
    slot *held;
    int stopping;
    double mosaic;
};

/* One lock for the whole process: HDF5 is built without thread safety, so two loaders (train and
 * val) must not read at the same time either. */
static pthread_mutex_t io_mu = PTHREAD_MUTEX_INITIALIZER;

void loader_io_lock(void) {
    pthread_mutex_lock(&io_mu);
}
void loader_io_unlock(void) {
    pthread_mutex_unlock(&io_mu);
}

loader_config loader_config_defaults(void) {
    return (loader_config){.imgsz = 640,
                           .augment = 1,
                           .aug = augment_defaults(),
                           .seed = 0,
                           .nthreads = 2,
                           .depth = 3,
                           .max_batch = 16};
}

/* ---- one sample ----------------------------------------------------------------------------- */

/* A sample at its load-time size with its own copy of the labels. */
typedef struct loaded {
    uint8_t *rgb;
    int h, w, orig_h, orig_w;
    float *labels;
    int nlabels;
} loaded;

static void loaded_free(loaded *x) {
    free(x->rgb);
    free(x->labels);
    memset(x, 0, sizeof *x);
}

/* Read (serialised), decode and resize to the load-time size (parallel). For validation the
 * resize is left to augment_val (resize_to_load = 0). */
static int load_sample(loader *L, int index, int resize_to_load, loaded *out, char *err,
                       size_t errlen) {
    memset(out, 0, sizeof *out);
    dataset_sample smp;
    memset(&smp, 0, sizeof smp);
    char e[400];
    e[0] = 0;
    loader_io_lock();
    int rc = L->src.read(L->src.ctx, index, &smp, e, sizeof e);
    loader_io_unlock();
    if (rc != 0) return errf(err, errlen, "%s: sample %d: %s", L->src.name, index, e);
    int S = L->cfg.imgsz, th, tw;
    augment_load_size(smp.height, smp.width, S, &th, &tw);
    uint8_t *rgb = NULL;
    int h = smp.height, w = smp.width;
    rc = L->src.decode(L->src.ctx, &smp, th, tw, &rgb, &h, &w, e, sizeof e);
    if (rc != 0) {
        L->src.free_sample(L->src.ctx, &smp);
        return errf(err, errlen, "%s: sample %d: %s", L->src.name, index, e);
    }
    out->orig_h = smp.height, out->orig_w = smp.width;
    out->nlabels = smp.nboxes;
    out->labels = xmalloc(sizeof(float) * 5 * (size_t)(smp.nboxes > 0 ? smp.nboxes : 1));
    if (smp.nboxes > 0) memcpy(out->labels, smp.labels, sizeof(float) * 5 * (size_t)smp.nboxes);
    L->src.free_sample(L->src.ctx, &smp);
    if (resize_to_load && (h != th || w != tw)) {
        uint8_t *r = xmalloc((size_t)th * tw * 3);
        image_resize_bilinear(rgb, h, w, r, th, tw);
        free(rgb);
        rgb = r, h = th, w = tw;
    }
    out->rgb = rgb, out->h = h, out->w = w;
    return 0;
}

static int process_sample(loader *L, slot *s, int b, char *err, size_t errlen) {
    const job *j = s->job;
    int S = L->cfg.imgsz, index = j->indices[b];
    uint8_t *dst = s->images + (size_t)b * j->out_h * j->out_w * 3;
    loaded im[4];
    memset(im, 0, sizeof im);
    int rc = 0;
    if (!L->cfg.augment) {
        rc = load_sample(L, index, 0, &im[0], err, errlen);
        if (rc == 0) {
            aug_image a = {im[0].rgb, im[0].h, im[0].w, im[0].labels, im[0].nlabels};
            float *lab = xmalloc(sizeof(float) * 5 * (size_t)(a.nlabels > 0 ? a.nlabels : 1));
            s->sample_nlabels[b] = augment_val_shape(&a, im[0].orig_h, im[0].orig_w, S, j->out_h,
                                                     j->out_w, dst, lab, &s->info[b]);
            s->sample_labels[b] = lab;
        }
        loaded_free(&im[0]);
        return rc;
    }
    augment_params p = L->cfg.aug;
    p.mosaic = j->mosaic;
    rng r = rng_keyed(L->cfg.seed, (uint64_t)j->epoch, (uint64_t)index);
    int partners[3];
    int mosaic = augment_draw_mosaic(&r, &p, L->src.size, partners);
    int nimg = mosaic ? 4 : 1;
    aug_image a[4];
    int total = 0;
    for (int i = 0; i < nimg && rc == 0; i++) {
        rc = load_sample(L, i == 0 ? index : partners[i - 1], 1, &im[i], err, errlen);
        a[i] = (aug_image){im[i].rgb, im[i].h, im[i].w, im[i].labels, im[i].nlabels};
        total += im[i].nlabels;
    }
    if (rc == 0) {
        float *lab = xmalloc(sizeof(float) * 5 * (size_t)(total > 0 ? total : 1));
        s->sample_nlabels[b] = augment_train(&p, S, &r, mosaic, a, dst, lab);
        s->sample_labels[b] = lab;
    }
    for (int i = 0; i < nimg; i++) loaded_free(&im[i]);
    return rc;
}

/* ---- threads -------------------------------------------------------------------------------- */

static void job_free(job *j) {
    if (!j) return;
    free(j->indices);
    free(j);
}

/* Under mu: the oldest filling slot with a sample left, else a pending job moved into a free
 * slot, else NULL. Oldest first, so batches complete in the order they are consumed. */
static slot *find_work(loader *L) {
    slot *best = NULL;
    for (int i = 0; i < L->cfg.depth; i++) {
        slot *s = &L->slots[i];
        if (s->state == SLOT_FILLING && s->next_sample < s->job->n &&
            (!best || s->job->seq < best->job->seq))
            best = s;
    }
    if (best || !L->pending_head) return best;
    for (int i = 0; i < L->cfg.depth; i++) {
        slot *s = &L->slots[i];
        if (s->state != SLOT_FREE) continue;
        job *j = L->pending_head;
        L->pending_head = j->next;
        if (!L->pending_head) L->pending_tail = NULL;
        job_free(s->job);
        s->job = j;
        s->state = SLOT_FILLING;
        s->next_sample = s->done = 0;
        s->prep_s = 0;
        s->failed = 0;
        s->err[0] = 0;
        return s;
    }
    return NULL;
}

static void *worker_main(void *arg) {
    loader *L = arg;
    char err[512];
    pthread_mutex_lock(&L->mu);
    while (!L->stopping) {
        slot *s = find_work(L);
        if (!s) {
            pthread_cond_wait(&L->work_cv, &L->mu);
            continue;
        }
        int b = s->next_sample++;
        int skip = s->failed; /* a failed batch is reported whole; don't waste work on it */
        pthread_mutex_unlock(&L->mu);
        err[0] = 0;
        double t0 = now_seconds();
        int rc = skip ? 0 : process_sample(L, s, b, err, sizeof err);
        double dt = now_seconds() - t0;
        pthread_mutex_lock(&L->mu);
        s->prep_s += dt;
        if (rc != 0 && !s->failed) {
            s->failed = 1;
            snprintf(s->err, sizeof s->err, "%s", err);
        }
        if (++s->done == s->job->n) {
            s->state = SLOT_READY;
            pthread_cond_broadcast(&L->ready_cv);
        }
    }
    pthread_mutex_unlock(&L->mu);
    return NULL;
}

/* ---- public --------------------------------------------------------------------------------- */

static void slot_clear_labels(slot *s, int n) {
    for (int b = 0; b < n; b++) {
        free(s->sample_labels[b]);
        s->sample_labels[b] = NULL;
        s->sample_nlabels[b] = 0;
    }
}

loader *loader_create_source(sample_source src, const loader_config *cfg, char *err,
                             size_t errlen) {
    const char *bad = NULL;
    if (cfg->imgsz <= 0 || cfg->imgsz % 2)
        bad = "imgsz must be a positive even number";
    else if (cfg->nthreads < 1)
        bad = "nthreads must be >= 1";
    else if (cfg->depth < 2)
        bad = "depth must be >= 2";
    else if (cfg->max_batch < 1)
        bad = "max_batch must be >= 1";
    else if (cfg->max_side && (cfg->max_side < cfg->imgsz || cfg->augment))
        bad = "max_side is for validation loaders and must be >= imgsz";
    else if (src.size < 1)
        bad = "no samples";
    else if (!src.read || !src.decode || !src.free_sample)
        bad = "incomplete sample source";
    if (bad) {
        errf(err, errlen, "%s: loader: %s (imgsz=%d nthreads=%d depth=%d max_batch=%d)",
             src.name ? src.name : "?", bad, cfg->imgsz, cfg->nthreads, cfg->depth, cfg->max_batch);
        if (src.close) src.close(src.ctx);
        return NULL;
    }
    loader *L = xcalloc(1, sizeof *L);
    L->src = src;
    L->cfg = *cfg;
    L->mosaic = cfg->aug.mosaic;
    pthread_mutex_init(&L->mu, NULL);
    pthread_cond_init(&L->work_cv, NULL);
    pthread_cond_init(&L->ready_cv, NULL);
    size_t side = (size_t)(cfg->max_side ? cfg->max_side : cfg->imgsz);
    size_t img_bytes = (size_t)cfg->max_batch * side * side * 3;
    L->slots = xcalloc((size_t)cfg->depth, sizeof(slot));
    for (int i = 0; i < cfg->depth; i++) {
        slot *s = &L->slots[i];
        s->images = xmalloc(img_bytes);
        s->sample_labels = xcalloc((size_t)cfg->max_batch, sizeof(float *));
        s->sample_nlabels = xcalloc((size_t)cfg->max_batch, sizeof(int));
        s->info = xcalloc((size_t)cfg->max_batch, sizeof(letterbox_info));
    }
    L->threads = xcalloc((size_t)cfg->nthreads, sizeof(pthread_t));
    for (int i = 0; i < cfg->nthreads; i++) {
        int rc = pthread_create(&L->threads[i], NULL, worker_main, L);
        if (rc != 0) {
            errf(err, errlen, "%s: loader: cannot start thread %d of %d: %s", src.name, i,
                 cfg->nthreads, strerror(rc));
            loader_destroy(L);
            return NULL;
        }
        L->nstarted++;
    }
    return L;
}

int loader_submit(loader *L, int64_t step, int epoch, const int *indices, int n, char *err,
                  size_t errlen) {
    return loader_submit_shape(L, step, epoch, indices, n, L->cfg.imgsz, L->cfg.imgsz, err, errlen);
}

int loader_submit_shape(loader *L, int64_t step, int epoch, const int *indices, int n, int out_h,
                        int out_w, char *err, size_t errlen) {
    int side = L->cfg.max_side ? L->cfg.max_side : L->cfg.imgsz;
    bool square = out_h == L->cfg.imgsz && out_w == L->cfg.imgsz;
    if (!square && (L->cfg.augment || out_h < 2 || out_w < 2 || out_h % 2 || out_w % 2 ||
                    out_h > side || out_w > side))
        return errf(err, errlen,
                    "%s: loader: step %lld: output %dx%d needs a validation loader and even sides "
                    "in [2, %d]",
                    L->src.name, (long long)step, out_h, out_w, side);
    if (n < 1 || n > L->cfg.max_batch)
        return errf(err, errlen, "%s: loader: step %lld has %d samples, allowed 1..%d", L->src.name,
                    (long long)step, n, L->cfg.max_batch);
    for (int i = 0; i < n; i++)
        if (indices[i] < 0 || indices[i] >= L->src.size)
            return errf(err, errlen, "%s: loader: step %lld: sample index %d out of range [0, %d)",
                        L->src.name, (long long)step, indices[i], L->src.size);
    job *j = xcalloc(1, sizeof *j);
    j->step = step, j->epoch = epoch, j->n = n;
    j->out_h = out_h, j->out_w = out_w;
    j->indices = xmalloc(sizeof(int) * (size_t)n);
    memcpy(j->indices, indices, sizeof(int) * (size_t)n);
    pthread_mutex_lock(&L->mu);
    j->mosaic = L->mosaic;
    j->seq = L->next_submit_seq++;
    if (L->pending_tail)
        L->pending_tail->next = j;
    else
        L->pending_head = j;
    L->pending_tail = j;
    pthread_cond_broadcast(&L->work_cv);
    pthread_mutex_unlock(&L->mu);
    return 0;
}

void loader_set_mosaic(loader *L, double p) {
    pthread_mutex_lock(&L->mu);
    L->mosaic = p;
    pthread_mutex_unlock(&L->mu);
}

int loader_next(loader *L, loader_batch *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&L->mu);
    if (L->held) {
        slot_clear_labels(L->held, L->held->job->n);
        L->held->state = SLOT_FREE;
        L->held = NULL;
        pthread_cond_broadcast(&L->work_cv);
    }
    if (L->next_consume_seq == L->next_submit_seq) {
        pthread_mutex_unlock(&L->mu);
        return errf(err, errlen, "%s: loader: loader_next with no step submitted", L->src.name);
    }
    double t0 = now_seconds();
    slot *s = NULL;
    for (;;) {
        for (int i = 0; i < L->cfg.depth && !s; i++)
            if (L->slots[i].state == SLOT_READY && L->slots[i].job->seq == L->next_consume_seq)
                s = &L->slots[i];
        if (s) break;
        pthread_cond_wait(&L->ready_cv, &L->mu);
    }
    double stall = now_seconds() - t0;
    s->state = SLOT_HELD;
    L->held = s;
    L->next_consume_seq++;
    pthread_mutex_unlock(&L->mu);

    const job *j = s->job;
    if (s->failed) {
        slot_clear_labels(s, j->n);
        return errf(err, errlen, "%s", s->err);
    }
    size_t total = 0;
    for (int b = 0; b < j->n; b++) total += (size_t)s->sample_nlabels[b];
    if (total > s->labels_cap) {
        s->labels = xrealloc(s->labels, sizeof(float) * 6 * total);
        s->labels_cap = total;
    }
    size_t k = 0;
    for (int b = 0; b < j->n; b++)
        for (int i = 0; i < s->sample_nlabels[b]; i++, k++) {
            float *o = s->labels + 6 * k;
            o[0] = (float)b;
            memcpy(o + 1, s->sample_labels[b] + 5 * i, 5 * sizeof(float));
        }
    out->step = j->step;
    out->epoch = j->epoch;
    out->n = j->n;
    out->imgsz = L->cfg.imgsz;
    out->h = j->out_h, out->w = j->out_w;
    out->indices = j->indices;
    out->images = s->images;
    out->nlabels = (int)total;
    out->labels = s->labels;
    out->info = L->cfg.augment ? NULL : s->info;
    out->stall_s = stall;
    out->prep_s = s->prep_s;
    return 0;
}

void loader_destroy(loader *L) {
    if (!L) return;
    pthread_mutex_lock(&L->mu);
    L->stopping = 1;
    pthread_cond_broadcast(&L->work_cv);
    pthread_mutex_unlock(&L->mu);
    for (int i = 0; i < L->nstarted; i++) pthread_join(L->threads[i], NULL);
    for (int i = 0; i < L->cfg.depth; i++) {
        slot *s = &L->slots[i];
        if (s->job) slot_clear_labels(s, s->job->n);
        job_free(s->job);
        free(s->images);
        free(s->sample_labels);
        free(s->sample_nlabels);
        free(s->info);
        free(s->labels);
    }
    for (job *j = L->pending_head; j;) {
        job *next = j->next;
        job_free(j);
        j = next;
    }
    free(L->slots);
    free(L->threads);
    pthread_mutex_destroy(&L->mu);
    pthread_cond_destroy(&L->work_cv);
    pthread_cond_destroy(&L->ready_cv);
    if (L->src.close) L->src.close(L->src.ctx);
    free(L);
}
