/* Background checkpoint writer (ckpt_writer.h): one thread, a FIFO of jobs, a FIFO of results. */
#include "coordinator/ckpt_writer.h"

#include "common/log.h"
#include "common/timer.h"
#include "coordinator/ckpt_store.h"
#include "dataio/loader.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct node {
    struct node *next;
    ckpt_job job;
    ckpt_result res;
} node;

struct ckpt_writer {
    ckpt_writer_opts o;
    char *run_dir, parent_version[32], *parent_run;
    int next_version;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;   /* jobs queued, or stopping */
    pthread_cond_t done; /* a job finished */
    node *jobs, *jobs_tail, *results, *results_tail;
    int queued, busy; /* waiting; submitted and not finished */
    bool stopping;
};

void ckpt_job_free(ckpt_job *job) {
    ckpt_meta_free(&job->meta);
    free(job->t);
    free(job->blob);
    memset(job, 0, sizeof *job);
}

static void pruned_note(void *ctx, const char *path) {
    (void)ctx;
    log_info("keep: removed %s", path);
}

/* Links and retention after a version is on disk; problems become a warning in r->error. */
static void after_write(ckpt_writer *w, const ckpt_job *job, ckpt_result *r) {
    char err[600];
    if (ckpt_store_link(w->run_dir, "last.h5", r->version, err, sizeof err) != 0 ||
        (job->best && ckpt_store_link(w->run_dir, "best.h5", r->version, err, sizeof err) != 0) ||
        (job->extra_link[0] &&
         ckpt_store_link(w->run_dir, job->extra_link, r->version, err, sizeof err) != 0)) {
        snprintf(r->error, sizeof r->error, "v%04d.h5 written, but %.900s", r->version, err);
        return;
    }
    if (w->o.keep > 0) {
        int k = ckpt_store_prune(w->run_dir, w->o.keep, &w->o.protect, w->o.protect ? 1 : 0,
                                 pruned_note, NULL, err, sizeof err);
        if (k < 0)
            snprintf(r->error, sizeof r->error, "keep=%d: %s", w->o.keep, err);
        else
            r->pruned = k;
    }
}

static void write_job(ckpt_writer *w, node *nd) {
    ckpt_job *job = &nd->job;
    ckpt_result *r = &nd->res;
    r->started = now_seconds();
    if (w->o.test_delay_s > 0) usleep((useconds_t)(w->o.test_delay_s * 1e6));
    r->version = w->next_version++;
    job->meta.version = r->version;
    snprintf(job->meta.parent_version, sizeof job->meta.parent_version, "%s", w->parent_version);
    ckpt_meta_set(&job->meta.parent_run, w->parent_run);
    ckpt_store_version_path(w->run_dir, r->version, r->path, sizeof r->path);
    snprintf(r->reason, sizeof r->reason, "%s", job->meta.reason);
    r->epoch = job->meta.epoch;
    r->step = job->meta.step;
    r->best = job->best;
    loader_io_lock();
    r->ok = ckpt_write(r->path, &job->meta, job->t, job->n, r->error, sizeof r->error) == 0;
    loader_io_unlock();
    if (r->ok) {
        struct stat st;
        r->bytes = stat(r->path, &st) == 0 ? (int64_t)st.st_size : 0;
        snprintf(w->parent_version, sizeof w->parent_version, "v%04d", r->version);
        free(w->parent_run);
        w->parent_run = xstrdup(w->run_dir);
        after_write(w, job, r);
    }
    r->finished = now_seconds();
    r->seconds = r->finished - r->started;
}

static void *writer_main(void *arg) {
    ckpt_writer *w = arg;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (!w->jobs && !w->stopping) pthread_cond_wait(&w->cv, &w->mu);
        if (!w->jobs) break; /* stopping and nothing left */
        node *nd = w->jobs;
        w->jobs = nd->next;
        if (!w->jobs) w->jobs_tail = NULL;
        w->queued--;
        pthread_cond_broadcast(&w->done); /* room in the queue */
        pthread_mutex_unlock(&w->mu);
        write_job(w, nd);
        ckpt_job_free(&nd->job);
        pthread_mutex_lock(&w->mu);
        nd->next = NULL;
        if (w->results_tail)
            w->results_tail->next = nd;
        else
            w->results = nd;
        w->results_tail = nd;
        w->busy--;
        pthread_cond_broadcast(&w->done);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

ckpt_writer *ckpt_writer_start(const ckpt_writer_opts *o) {
    ckpt_writer *w = xcalloc(1, sizeof *w);
    w->o = *o;
    w->run_dir = xstrdup(o->run_dir);
    w->o.run_dir = w->run_dir;
    w->next_version = o->next_version > 0 ? o->next_version : 1;
    snprintf(w->parent_version, sizeof w->parent_version, "%s",
             o->parent_version ? o->parent_version : "");
    w->parent_run = xstrdup(o->parent_run ? o->parent_run : "");
    if (w->o.max_pending <= 0) w->o.max_pending = 2;
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    pthread_cond_init(&w->done, NULL);
    if (pthread_create(&w->thread, NULL, writer_main, w) != 0) FATAL("pthread_create failed");
    return w;
}

void ckpt_writer_submit(ckpt_writer *w, ckpt_job *job) {
    node *nd = xcalloc(1, sizeof *nd);
    nd->job = *job;
    memset(job, 0, sizeof *job);
    pthread_mutex_lock(&w->mu);
    while (w->queued >= w->o.max_pending) pthread_cond_wait(&w->done, &w->mu);
    if (w->jobs_tail)
        w->jobs_tail->next = nd;
    else
        w->jobs = nd;
    w->jobs_tail = nd;
    w->queued++;
    w->busy++;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

bool ckpt_writer_poll(ckpt_writer *w, ckpt_result *out) {
    pthread_mutex_lock(&w->mu);
    node *nd = w->results;
    if (nd) {
        w->results = nd->next;
        if (!w->results) w->results_tail = NULL;
    }
    pthread_mutex_unlock(&w->mu);
    if (!nd) return false;
    *out = nd->res;
    free(nd);
    return true;
}

int ckpt_writer_busy(ckpt_writer *w) {
    pthread_mutex_lock(&w->mu);
    int b = w->busy;
    pthread_mutex_unlock(&w->mu);
    return b;
}

void ckpt_writer_drain(ckpt_writer *w) {
    pthread_mutex_lock(&w->mu);
    while (w->busy > 0) pthread_cond_wait(&w->done, &w->mu);
    pthread_mutex_unlock(&w->mu);
}

void ckpt_writer_stop(ckpt_writer *w) {
    if (!w) return;
    pthread_mutex_lock(&w->mu);
    w->stopping = true;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->thread, NULL);
    for (node *nd = w->results; nd;) {
        node *next = nd->next;
        free(nd);
        nd = next;
    }
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    pthread_cond_destroy(&w->done);
    free(w->run_dir);
    free(w->parent_run);
    free(w);
}
