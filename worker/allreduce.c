/* The bucket bookkeeping of the gradient all-reduce, shared by its MPI and NCCL implementations:
 * ready marks per bucket, the check that no float is marked twice, and the fixed launch order. */
#include "worker/allreduce_impl.h"

#include "common/log.h"
#include "common/timer.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int allreduce_init_common(allreduce *ar, size_t count, size_t bucket_bytes, allreduce_order order,
                          char *err, size_t errlen) {
    ar->count = count;
    ar->order = order;
    if (count == 0)
        return errf(err, errlen, "allreduce: rank %d: empty gradient buffer", ar->world_rank);
    ar->bucket_floats = bucket_bytes / sizeof(float);
    if (ar->bucket_floats == 0) ar->bucket_floats = 1;
    if (ar->bucket_floats > (size_t)INT32_MAX) ar->bucket_floats = (size_t)INT32_MAX; /* MPI int */
    size_t nb = (count + ar->bucket_floats - 1) / ar->bucket_floats;
    if (nb > (size_t)INT32_MAX / 2)
        return errf(err, errlen, "allreduce: rank %d: %zu buckets is too many (bucket_bytes=%zu)",
                    ar->world_rank, nb, bucket_bytes);
    ar->nb = (int)nb;
    ar->ready = xcalloc(nb, sizeof *ar->ready);
    return 0;
}

void allreduce_free_common(allreduce *ar) {
    free(ar->ready);
    free(ar->spans);
    free(ar);
}

const char *allreduce_kind(const allreduce *ar) {
    return ar->ops->kind;
}

void allreduce_free(allreduce *ar) {
    if (!ar) return;
    ar->ops->destroy(ar);
    allreduce_free_common(ar);
}

int allreduce_num_buckets(const allreduce *ar) {
    return ar->nb;
}

void allreduce_bucket_range(const allreduce *ar, int b, size_t *first, size_t *count) {
    size_t a = (size_t)b * ar->bucket_floats;
    size_t e = a + ar->bucket_floats < ar->count ? a + ar->bucket_floats : ar->count;
    *first = a;
    *count = e - a;
}

static int bucket_at(const allreduce *ar, int pos) {
    return ar->order == ALLREDUCE_ORDER_BACKWARD ? ar->nb - 1 - pos : pos;
}

int allreduce_begin(allreduce *ar, char *err, size_t errlen) {
    if (ar->ops->in_flight(ar) || (ar->next > 0 && ar->next < ar->nb))
        return errf(err, errlen, "allreduce: rank %d: begin while a step is in flight",
                    ar->world_rank);
    memset(ar->ready, 0, (size_t)ar->nb * sizeof *ar->ready);
    ar->next = 0;
    ar->launched_early = 0;
    ar->nspans = 0;
    return 0;
}

static int launch_next(allreduce *ar, char *err, size_t errlen) {
    size_t first, n;
    allreduce_bucket_range(ar, bucket_at(ar, ar->next), &first, &n);
    if (ar->ops->launch(ar, bucket_at(ar, ar->next), first, n, err, errlen) != 0) return -1;
    ar->next++;
    return 0;
}

/* Launch, in the fixed order, every bucket whose predecessors are launched and which is full. */
static int launch_ready(allreduce *ar, char *err, size_t errlen) {
    while (ar->next < ar->nb) {
        size_t first, n;
        allreduce_bucket_range(ar, bucket_at(ar, ar->next), &first, &n);
        if (ar->ready[bucket_at(ar, ar->next)] < n) break;
        if (launch_next(ar, err, errlen) != 0) return -1;
        ar->launched_early++;
    }
    return 0;
}

int allreduce_progress(allreduce *ar, char *err, size_t errlen) {
    if (!ar->ops->in_flight(ar)) return 0;
    return ar->ops->complete(ar, false, err, errlen);
}

/* Adds [a, b) to the sorted, merged list of marked spans; -1 if any float was marked before. */
static int add_span(allreduce *ar, size_t a, size_t b) {
    int lo = 0, hi = ar->nspans; /* first span with spans[i].a >= a */
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (ar->spans[mid].a < a)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo > 0 && ar->spans[lo - 1].b > a) return -1;
    if (lo < ar->nspans && ar->spans[lo].a < b) return -1;
    int join_prev = lo > 0 && ar->spans[lo - 1].b == a;
    int join_next = lo < ar->nspans && ar->spans[lo].a == b;
    if (join_prev && join_next) {
        ar->spans[lo - 1].b = ar->spans[lo].b;
        memmove(ar->spans + lo, ar->spans + lo + 1,
                (size_t)(ar->nspans - lo - 1) * sizeof(allreduce_span));
        ar->nspans--;
    } else if (join_prev) {
        ar->spans[lo - 1].b = b;
    } else if (join_next) {
        ar->spans[lo].a = a;
    } else {
        if (ar->nspans == ar->capspans) {
            ar->capspans = ar->capspans ? 2 * ar->capspans : 64;
            ar->spans = xrealloc(ar->spans, (size_t)ar->capspans * sizeof(allreduce_span));
        }
        memmove(ar->spans + lo + 1, ar->spans + lo,
                (size_t)(ar->nspans - lo) * sizeof(allreduce_span));
        ar->spans[lo] = (allreduce_span){a, b};
        ar->nspans++;
    }
    return 0;
}

int allreduce_mark_ready(allreduce *ar, size_t first, size_t count, char *err, size_t errlen) {
    if (count == 0) return 0;
    if (first > ar->count || count > ar->count - first)
        return errf(err, errlen,
                    "allreduce: rank %d: mark_ready [%zu, %zu) is outside the buffer of %zu floats",
                    ar->world_rank, first, first + count, ar->count);
    if (add_span(ar, first, first + count) != 0)
        return errf(err, errlen,
                    "allreduce: rank %d: mark_ready [%zu, %zu) overlaps a range "
                    "already marked this step",
                    ar->world_rank, first, first + count);
    size_t end = first + count;
    for (size_t b = first / ar->bucket_floats; b < (size_t)ar->nb; b++) {
        size_t ba = b * ar->bucket_floats, be = ba + ar->bucket_floats;
        if (ba >= end) break;
        size_t lo = first > ba ? first : ba, hi = end < be ? end : be;
        ar->ready[b] += hi - lo;
    }
    if (launch_ready(ar, err, errlen) != 0) return -1;
    return allreduce_progress(ar, err, errlen);
}

int allreduce_wait(allreduce *ar, allreduce_stats *stats, char *err, size_t errlen) {
    double t0 = now_seconds();
    while (ar->next < ar->nb)
        if (launch_next(ar, err, errlen) != 0) return -1;
    if (ar->ops->complete(ar, true, err, errlen) != 0) return -1;
    double t1 = now_seconds(), comm_s, scale_s;
    ar->ops->step_times(ar, &comm_s, &scale_s); /* also resets them for the next step */
    if (stats) {
        stats->comm_s = comm_s;
        stats->scale_s = scale_s;
        stats->exposed_s = t1 - t0;
        stats->buckets = ar->nb;
        stats->launched_early = ar->launched_early;
        stats->bytes = ar->count * sizeof(float);
    }
    /* Ready for the next step without an explicit begin. */
    return allreduce_begin(ar, err, errlen);
}
