/* The coordinator's checkpoint writer: a background thread that writes versions in the order
 * they were submitted, one at a time (a save requested while one is being written waits in the
 * queue; writes never interleave), so training does not wait for the disk.
 *
 * After each version is on disk (ckpt_write: temporary name, fsync, rename, fsync of the folder)
 * the thread points last.h5 (and best.h5, and a save_period link) at it and applies keep=K
 * retention (ckpt_store_prune). Version numbers only grow: a failed write leaves a gap and the
 * next version's parent is the last one written. Results (ok or the one-line error) come back
 * through ckpt_writer_poll, on the caller's thread, which reports them (terminal, telemetry).
 *
 * HDF5 here is not thread-safe: while the writer runs, the thread takes the process-wide HDF5
 * lock (loader_io_lock) around each write; other HDF5 users in the process must take it too. */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "coordinator/ckpt_file.h"

typedef struct ckpt_writer ckpt_writer;

typedef struct ckpt_writer_opts {
    const char *run_dir;
    int next_version;           /* number of the first version written */
    const char *parent_version; /* lineage of the first version ("" for a fresh run) */
    const char *parent_run;     /* folder of that parent ("" for a fresh run) */
    int keep;                   /* retention: 0 keeps every version */
    int protect;                /* a version retention never deletes (a live resume's parent), 0 */
    int max_pending;            /* submit blocks while this many wait; default 2 */
    double test_delay_s;        /* tests: each write takes this much longer (to observe queueing) */
} ckpt_writer_opts;

/* One version to write. The writer owns it after submit: it frees `blob` (the memory the tensors
 * point into), the tensor array and the meta strings. meta.version and the lineage parent are
 * set by the writer. */
typedef struct ckpt_job {
    ckpt_meta meta;
    ckpt_tensor *t;
    int n;
    void *blob;
    bool best;           /* point best.h5 at it */
    char extra_link[32]; /* also point this link at it (save_period: "epoch4.h5"), "" none */
} ckpt_job;

typedef struct ckpt_result {
    bool ok;         /* the version is on disk */
    int version;     /* the number it got (also when the write failed) */
    char path[4200]; /* its file */
    char reason[16]; /* meta.reason */
    int epoch, step; /* meta.epoch (1-based), meta.step */
    bool best;
    double seconds;           /* write time: hashing, HDF5, fsync, rename */
    int64_t bytes;            /* file size */
    double started, finished; /* monotonic seconds (the tests check that writes never overlap) */
    int pruned;               /* versions deleted by retention after it */
    char error[1024];         /* !ok: why; ok: a warning about links or retention, or "" */
} ckpt_result;

ckpt_writer *ckpt_writer_start(const ckpt_writer_opts *o);
/* Queues a job (taken over, *job is cleared). Blocks while max_pending jobs are waiting. */
void ckpt_writer_submit(ckpt_writer *w, ckpt_job *job);
/* A finished job's result, oldest first: true and *out filled, false when none is ready. */
bool ckpt_writer_poll(ckpt_writer *w, ckpt_result *out);
/* Jobs submitted and not finished. */
int ckpt_writer_busy(ckpt_writer *w);
/* Waits until every submitted job is finished (results stay to be polled). */
void ckpt_writer_drain(ckpt_writer *w);
/* Drains, stops the thread, frees. Unpolled results are dropped. NULL is fine. */
void ckpt_writer_stop(ckpt_writer *w);
void ckpt_job_free(ckpt_job *job);
