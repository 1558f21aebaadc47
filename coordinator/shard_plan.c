#include "coordinator/shard_plan.h"

#include "common/log.h"
#include "common/rng.h"

#include <stdlib.h>

int shard_plan_make(shard_plan *p, int n, int batch, int workers, uint64_t seed, int epoch) {
    *p = (shard_plan){0};
    if (n <= 0 || batch <= 0 || workers <= 0 || batch % workers) return -1;
    int32_t *perm = xmalloc((size_t)n * sizeof *perm);
    for (int i = 0; i < n; i++) perm[i] = i;
    rng r = rng_keyed(seed, 0x5348415244ull /* "SHARD" */, (uint64_t)epoch);
    for (int i = n - 1; i > 0; i--) { /* Fisher-Yates */
        int j = rng_int(&r, i + 1);
        int32_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    p->steps = (n + batch - 1) / batch;
    p->batch = batch;
    p->workers = workers;
    p->order = xmalloc((size_t)p->steps * batch * sizeof *p->order);
    for (int i = 0; i < p->steps * batch; i++) p->order[i] = perm[i % n];
    free(perm);
    return 0;
}

const int32_t *shard_plan_slice(const shard_plan *p, int step, int worker) {
    return p->order + (size_t)step * p->batch + (size_t)worker * (p->batch / p->workers);
}

void shard_plan_free(shard_plan *p) {
    free(p->order);
    *p = (shard_plan){0};
}
