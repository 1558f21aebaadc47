/* The coordinator's side of the training-state message (common/protocol.h, worker/snapshot.h):
 * a worker's state into a checkpoint job, and a checkpoint's state back to the workers. */
#pragma once
#include <stddef.h>

#include "coordinator/ckpt_file.h"
#include "coordinator/ckpt_writer.h"

/* After CTRL_SAVE, CTRL_STOP or an epoch's validation: receives worker 0's state and, when an
 * optimizer step is half accumulated, every worker's gradient sum (stored as
 * grad_accum/rank<k>/<parameter>). Fills job->t, job->n, job->blob (with the
 * "<bn>.num_batches_tracked" counters a PyTorch state_dict has) and the counters, optimizer and
 * world size fields of job->meta; the caller fills the position, metrics and lineage. */
void ckpt_state_receive(int workers, ckpt_job *job);

/* A version's state read into memory for a resume. */
typedef struct ckpt_state ckpt_state;

/* Reads every tensor the workers need (each checked against its sha256). NULL with one line in
 * err. */
ckpt_state *ckpt_state_load(ckpt_file *f, char *err, size_t errlen);
/* Sends it to `workers` workers (their snapshot_receive): a broadcast, then each rank's pending
 * gradient sum. With another number of workers than the version was written by, rank 1 gets the
 * sum of all (scaled to the new count) and the others none: the same step up to rounding. */
void ckpt_state_broadcast(const ckpt_state *s, int workers);
void ckpt_state_free(ckpt_state *s);
