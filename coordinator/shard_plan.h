/* The shard plan: which sample indices each worker reads at each step of an epoch. The global
 * batch of a step depends only on (seed, epoch, step), never on the number of workers: the epoch's
 * permutation is cut into global batches, and worker r takes slice r of each. The permutation is
 * extended by wrapping around so that every step has a full global batch (as a distributed sampler
 * pads); Ultralytics instead ends an epoch with a smaller batch. */
#pragma once
#include <stdint.h>

typedef struct shard_plan {
    int steps; /* global batches in the epoch: ceil(n / batch) */
    int batch; /* global batch */
    int workers;
    int32_t *order; /* [steps * batch]: global batch s is order[s*batch .. (s+1)*batch) */
} shard_plan;

/* n samples (after `fraction`), a permutation keyed by (seed, epoch). 0 or -1 when n == 0. */
int shard_plan_make(shard_plan *p, int n, int batch, int workers, uint64_t seed, int epoch);
/* Worker w's indices at step s: batch/workers consecutive entries. */
const int32_t *shard_plan_slice(const shard_plan *p, int step, int worker);
void shard_plan_free(shard_plan *p);
