#include "dataio/loader.h"

#include "common/log.h"
#include "common/timer.h"
#include "dataio/image_cache.h"

#include <malloc.h>
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
    int first; /* global position of indices[0] in the step's batch */
    /* mosaic pools of the blocks this step's samples are in: block block0 + k draws partners
     * from pool[pool_off[k] .. pool_off[k + 1]) */
    int block0, *pool, *pool_off;
    double mosaic;
    struct job *next;
} job;

/* Mosaic pools: the samples at the same POOL_BLOCK global batch positions in this step and the
 * POOL_STEPS - 1 steps submitted before it: up to 128 images, Ultralytics' buffer for batch 16. */
enum { POOL_BLOCK = 8, POOL_STEPS = 16 };

/* A global batch kept for the mosaic pools of the steps after it. */
typedef struct past_step {
    int n;
    int *indices;
} past_step;

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
    stage_times times; /* under mu */
    image_cache *cache;
    loader_read_stats reads; /* under mu */
    /* the last POOL_STEPS - 1 global batches submitted or noted, oldest first */
    int nhist;
    past_step hist[POOL_STEPS];
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
                           .max_batch = 16,
                           .cache = LOADER_CACHE_NONE,
                           .cache_sharers = 1,
                           .cache_limit = 0};
}

/* ---- cache=ram ------------------------------------------------------------------------------ */

/* MemAvailable from /proc/meminfo in bytes, 0 when unknown. */
static size_t mem_available(void) {
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f) return 0;
    char line[256];
    unsigned long long kb = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1) break;
    fclose(f);
    return (size_t)kb * 1024;
}

static void fmt_bytes(char *buf, size_t n, double b) {
    if (b >= 1024.0 * 1024 * 1024)
        snprintf(buf, n, "%.2f GB", b / (1024.0 * 1024 * 1024));
    else
        snprintf(buf, n, "%.1f MB", b / (1024.0 * 1024));
}

/* Logs what caching every image at its load-time size takes; refuses when it does not fit in
 * the allowed memory with Ultralytics' margin (x1.5), counting every process that caches. */
static int cache_ram_check(const sample_source *src, const loader_config *cfg, size_t *need,
                           char *err, size_t errlen) {
    if (!src->image_size)
        return errf(err, errlen, "%s: cache=ram: this source cannot tell image sizes", src->name);
    size_t bytes = 0;
    for (int i = 0; i < src->size; i++) {
        int h0, w0, h, w;
        if (src->image_size(src->ctx, i, &h0, &w0) != 0)
            return errf(err, errlen, "%s: cache=ram: no size for image %d", src->name, i);
        augment_load_size(h0, w0, cfg->imgsz, &h, &w);
        bytes += (size_t)h * w * 3;
    }
    *need = bytes;
    int sharers = cfg->cache_sharers > 1 ? cfg->cache_sharers : 1;
    size_t avail = cfg->cache_limit ? cfg->cache_limit : mem_available();
    char nb[32], na[32];
    fmt_bytes(nb, sizeof nb, (double)bytes);
    fmt_bytes(na, sizeof na, (double)avail);
    if (sharers > 1)
        log_info("%s: cache=ram: %d images at imgsz %d need %s in each of %d processes on this "
                 "machine (%s available)",
                 src->name, src->size, cfg->imgsz, nb, sharers, na);
    else
        log_info("%s: cache=ram: %d images at imgsz %d need %s in memory (%s available)", src->name,
                 src->size, cfg->imgsz, nb, na);
    if ((double)bytes * sharers * 1.5 > (double)avail)
        return errf(err, errlen,
                    "%s: cache=ram: %d images at imgsz %d need %s x %d process(es), with a 1.5x "
                    "margin more than the %s of memory available; train with cache=False, or pack "
                    "the images at the training size (coordinator data pack ... imgsz=%d)",
                    src->name, src->size, cfg->imgsz, nb, sharers, na, cfg->imgsz);
    return 0;
}

/* ---- one sample ----------------------------------------------------------------------------- */

static double cpu_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Read (without the lock where the source can, else serialised), decode and resize to the
 * load-time size (parallel) into out. Stage times are this thread's CPU time, so waiting for the
 * read lock or for a core does not count. */
static int load_sample(loader *L, int index, cached_image *out, stage_times *t, char *err,
                       size_t errlen) {
    dataset_sample smp;
    memset(&smp, 0, sizeof smp);
    char e[400];
    e[0] = 0;
    double t0 = cpu_now();
    int rc = L->src.read_unlocked ? L->src.read_unlocked(L->src.ctx, index, &smp, e, sizeof e) : 1;
    int locked = rc == 1;
    double tl = 0;
    if (locked) {
        loader_io_lock();
        double tl0 = cpu_now();
        rc = L->src.read(L->src.ctx, index, &smp, e, sizeof e);
        tl = cpu_now() - tl0;
        loader_io_unlock();
    }
    double t1 = cpu_now();
    pthread_mutex_lock(&L->mu);
    L->reads.unlocked += !locked, L->reads.locked += locked, L->reads.locked_s += tl;
    pthread_mutex_unlock(&L->mu);
    t->s[STAGE_READ] += t1 - t0;
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
    double t2 = cpu_now();
    t->s[STAGE_DECODE] += t2 - t1;
    out->orig_h = smp.height, out->orig_w = smp.width;
    out->nlabels = smp.nboxes;
    out->labels = xmalloc(sizeof(float) * 5 * (size_t)(smp.nboxes > 0 ? smp.nboxes : 1));
    if (smp.nboxes > 0) memcpy(out->labels, smp.labels, sizeof(float) * 5 * (size_t)smp.nboxes);
    L->src.free_sample(L->src.ctx, &smp);
    /* Validation resizes to the same load-time size first (augment_val), so both paths cache
     * the same image. */
    if (h != th || w != tw) {
        uint8_t *r = xmalloc((size_t)th * tw * 3);
        image_resize_bilinear(rgb, h, w, r, th, tw);
        free(rgb);
        rgb = r, h = th, w = tw;
    }
    t->s[STAGE_RESIZE] += cpu_now() - t2;
    out->rgb = rgb, out->h = h, out->w = w;
    return 0;
}

/* The image of index, pinned in the cache (loaded now unless it is there or being loaded). NULL
 * with err when it does not load. */
static cached_image *get_image(loader *L, int index, stage_times *t, char *err, size_t errlen) {
    int must_load;
    cached_image *im = image_cache_acquire(L->cache, index, &must_load);
    if (!must_load) return im;
    int rc = load_sample(L, index, im, t, err, errlen);
    image_cache_loaded(L->cache, im, rc == 0);
    if (rc == 0) return im;
    image_cache_release(L->cache, im);
    return NULL;
}

static int process_sample(loader *L, slot *s, int b, stage_times *t, char *err, size_t errlen) {
    const job *j = s->job;
    int S = L->cfg.imgsz, index = j->indices[b];
    uint8_t *dst = s->images + (size_t)b * j->out_h * j->out_w * 3;
    cached_image *im[4] = {NULL};
    if (!L->cfg.augment) {
        if (!(im[0] = get_image(L, index, t, err, errlen))) return -1;
        aug_image a = {im[0]->rgb, im[0]->h, im[0]->w, im[0]->labels, im[0]->nlabels};
        float *lab = xmalloc(sizeof(float) * 5 * (size_t)(a.nlabels > 0 ? a.nlabels : 1));
        s->sample_nlabels[b] = augment_val_shape(&a, im[0]->orig_h, im[0]->orig_w, S, j->out_h,
                                                 j->out_w, dst, lab, &s->info[b]);
        s->sample_labels[b] = lab;
        image_cache_release(L->cache, im[0]);
        return 0;
    }
    augment_params p = L->cfg.aug;
    p.mosaic = j->mosaic;
    rng r = rng_keyed(L->cfg.seed, (uint64_t)j->epoch, (uint64_t)index);
    int partners[3];
    int k = (j->first + b) / POOL_BLOCK - j->block0;
    const int *pool = j->pool + j->pool_off[k];
    int mosaic = augment_draw_mosaic(&r, &p, j->pool_off[k + 1] - j->pool_off[k], partners);
    int nimg = mosaic ? 4 : 1, rc = 0;
    aug_image a[4];
    int total = 0;
    /* The sample's own image first: a thread never waits on others while it has an image
     * half loaded. */
    for (int i = 0; i < nimg; i++) {
        im[i] = get_image(L, i == 0 ? index : pool[partners[i - 1]], t, err, errlen);
        if (!im[i]) {
            rc = -1;
            break;
        }
        a[i] = (aug_image){im[i]->rgb, im[i]->h, im[i]->w, im[i]->labels, im[i]->nlabels};
        total += im[i]->nlabels;
    }
    if (rc == 0) {
        float *lab = xmalloc(sizeof(float) * 5 * (size_t)(total > 0 ? total : 1));
        s->sample_nlabels[b] = augment_train_timed(&p, S, &r, mosaic, a, dst, lab, t);
        s->sample_labels[b] = lab;
    }
    for (int i = 0; i < nimg; i++)
        if (im[i]) image_cache_release(L->cache, im[i]);
    return rc;
}

/* ---- threads -------------------------------------------------------------------------------- */

static void job_free(job *j) {
    if (!j) return;
    free(j->indices);
    free(j->pool);
    free(j->pool_off);
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
        stage_times t = {{0}};
        double t0 = now_seconds();
        int rc = skip ? 0 : process_sample(L, s, b, &t, err, sizeof err);
        double dt = now_seconds() - t0;
        pthread_mutex_lock(&L->mu);
        s->prep_s += dt;
        for (int k = 0; k < STAGE_COUNT; k++) L->times.s[k] += t.s[k];
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

/* Decoded images and decoder buffers (0.2 - 1 MB each) are allocated and freed for every sample.
 * With glibc's defaults such blocks are mmap'd or returned to the system and faulted in again
 * each time (measured: 15% of the loader's CPU time); keep them in the heap instead. */
static void keep_freed_memory(void) {
#ifdef M_MMAP_THRESHOLD
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    mallopt(M_TRIM_THRESHOLD, 1 << 30);
#endif
}

loader *loader_create_source(sample_source src, const loader_config *cfg, char *err,
                             size_t errlen) {
    static pthread_once_t malloc_once = PTHREAD_ONCE_INIT;
    pthread_once(&malloc_once, keep_freed_memory);
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
    size_t need = 0;
    if (cfg->cache == LOADER_CACHE_RAM && cache_ram_check(&src, cfg, &need, err, errlen) != 0) {
        if (src.close) src.close(src.ctx);
        return NULL;
    }
    loader *L = xcalloc(1, sizeof *L);
    L->src = src;
    L->cfg = *cfg;
    L->mosaic = cfg->aug.mosaic;
    /* Training: the pools (this loader's blocks over POOL_STEPS steps), the batches in the ring
     * and those being worked on (more only costs memory). Validation reads each image once. */
    int per_step = cfg->max_batch > POOL_BLOCK ? cfg->max_batch : POOL_BLOCK;
    int keep = cfg->augment ? (POOL_STEPS + cfg->depth + 1) * per_step + 4 * cfg->nthreads
                            : cfg->max_batch + 4 * cfg->nthreads;
    L->cache = image_cache_create(src.size, cfg->cache == LOADER_CACHE_RAM ? 0 : keep);
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

/* Under mu: when j is not NULL, builds its pools from the history and the global batch; then
 * appends the batch to the history (dropping the oldest beyond what a pool spans). */
static void remember_step(loader *L, const int *batch, int bn, job *j) {
    if (j) {
        int b0 = j->first / POOL_BLOCK, b1 = (j->first + j->n - 1) / POOL_BLOCK;
        j->block0 = b0;
        j->pool = xmalloc(sizeof(int) * (size_t)(b1 - b0 + 1) * POOL_BLOCK * POOL_STEPS);
        j->pool_off = xmalloc(sizeof(int) * (size_t)(b1 - b0 + 2));
        int np = 0;
        for (int k = b0; k <= b1; k++) {
            j->pool_off[k - b0] = np;
            for (int h = 0; h <= L->nhist; h++) {
                const int *g = h < L->nhist ? L->hist[h].indices : batch;
                int gn = h < L->nhist ? L->hist[h].n : bn;
                for (int p = k * POOL_BLOCK; p < (k + 1) * POOL_BLOCK && p < gn; p++)
                    j->pool[np++] = g[p];
            }
        }
        j->pool_off[b1 - b0 + 1] = np;
    }
    if (L->nhist == POOL_STEPS - 1) {
        free(L->hist[0].indices);
        memmove(L->hist, L->hist + 1, sizeof *L->hist * (size_t)(L->nhist - 1));
        L->nhist--;
    }
    past_step *h = &L->hist[L->nhist++];
    h->n = bn;
    h->indices = xmalloc(sizeof(int) * (size_t)bn);
    memcpy(h->indices, batch, sizeof(int) * (size_t)bn);
}

/* A global batch of bn samples of which this loader takes positions [first, first + n). */
static int check_step(loader *L, int64_t step, const int *batch, int bn, int first, int n,
                      char *err, size_t errlen) {
    if (n < 1 || n > L->cfg.max_batch)
        return errf(err, errlen, "%s: loader: step %lld has %d samples, allowed 1..%d", L->src.name,
                    (long long)step, n, L->cfg.max_batch);
    if (first < 0 || first + n > bn || bn > (1 << 24))
        return errf(err, errlen, "%s: loader: step %lld: samples %d..%d of a batch of %d",
                    L->src.name, (long long)step, first, first + n - 1, bn);
    for (int i = 0; i < bn; i++)
        if (batch[i] < 0 || batch[i] >= L->src.size)
            return errf(err, errlen, "%s: loader: step %lld: sample index %d out of range [0, %d)",
                        L->src.name, (long long)step, batch[i], L->src.size);
    return 0;
}

int loader_note_step(loader *L, const int *batch, int bn, char *err, size_t errlen) {
    if (bn < 1 || check_step(L, -1, batch, bn, 0, 1, err, errlen) != 0)
        return bn < 1 ? errf(err, errlen, "%s: loader: noted batch of %d", L->src.name, bn) : -1;
    pthread_mutex_lock(&L->mu);
    remember_step(L, batch, bn, NULL);
    pthread_mutex_unlock(&L->mu);
    return 0;
}

static int submit(loader *L, int64_t step, int epoch, const int *batch, int bn, int first, int n,
                  int out_h, int out_w, char *err, size_t errlen) {
    int side = L->cfg.max_side ? L->cfg.max_side : L->cfg.imgsz;
    bool square = out_h == L->cfg.imgsz && out_w == L->cfg.imgsz;
    if (!square && (L->cfg.augment || out_h < 2 || out_w < 2 || out_h % 2 || out_w % 2 ||
                    out_h > side || out_w > side))
        return errf(err, errlen,
                    "%s: loader: step %lld: output %dx%d needs a validation loader and even sides "
                    "in [2, %d]",
                    L->src.name, (long long)step, out_h, out_w, side);
    if (check_step(L, step, batch, bn, first, n, err, errlen) != 0) return -1;
    job *j = xcalloc(1, sizeof *j);
    j->step = step, j->epoch = epoch, j->n = n, j->first = first;
    j->out_h = out_h, j->out_w = out_w;
    j->indices = xmalloc(sizeof(int) * (size_t)n);
    memcpy(j->indices, batch + first, sizeof(int) * (size_t)n);
    pthread_mutex_lock(&L->mu);
    remember_step(L, batch, bn, j);
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

int loader_submit(loader *L, int64_t step, int epoch, const int *indices, int n, char *err,
                  size_t errlen) {
    return submit(L, step, epoch, indices, n, 0, n, L->cfg.imgsz, L->cfg.imgsz, err, errlen);
}

int loader_submit_part(loader *L, int64_t step, int epoch, const int *batch, int bn, int first,
                       int n, char *err, size_t errlen) {
    return submit(L, step, epoch, batch, bn, first, n, L->cfg.imgsz, L->cfg.imgsz, err, errlen);
}

int loader_submit_shape(loader *L, int64_t step, int epoch, const int *indices, int n, int out_h,
                        int out_w, char *err, size_t errlen) {
    return submit(L, step, epoch, indices, n, 0, n, out_h, out_w, err, errlen);
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
    double tc = now_seconds();
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
    pthread_mutex_lock(&L->mu);
    L->times.s[STAGE_COPY] += now_seconds() - tc;
    pthread_mutex_unlock(&L->mu);
    return 0;
}

int loader_size(const loader *L) {
    return L->src.size;
}

void loader_stage_times(loader *L, stage_times *out) {
    pthread_mutex_lock(&L->mu);
    *out = L->times;
    pthread_mutex_unlock(&L->mu);
}

void loader_read_stats_get(loader *L, loader_read_stats *out) {
    pthread_mutex_lock(&L->mu);
    *out = L->reads;
    pthread_mutex_unlock(&L->mu);
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
    for (int i = 0; i < L->nhist; i++) free(L->hist[i].indices);
    image_cache_destroy(L->cache);
    free(L->slots);
    free(L->threads);
    pthread_mutex_destroy(&L->mu);
    pthread_cond_destroy(&L->work_cv);
    pthread_cond_destroy(&L->ready_cv);
    if (L->src.close) L->src.close(L->src.ctx);
    free(L);
}
