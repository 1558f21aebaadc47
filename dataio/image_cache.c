#include "dataio/image_cache.h"

#include "common/log.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

enum { LOADING, READY };

typedef struct entry {
    cached_image img; /* first: a cached_image * is its entry */
    int index, state, refs;
    int live_pos;   /* position in live[] */
    uint64_t stamp; /* last acquire, for least-recently-used eviction */
} entry;

struct image_cache {
    pthread_mutex_t mu;
    pthread_cond_t loaded_cv;
    int size, capacity;
    entry **by_index; /* [size] */
    entry **live;     /* the entries that exist, in no order */
    int nlive, live_cap;
    uint64_t clock;
    int64_t hits, loads;
    size_t bytes;
};

image_cache *image_cache_create(int size, int capacity) {
    image_cache *c = xcalloc(1, sizeof *c);
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->loaded_cv, NULL);
    c->size = size, c->capacity = capacity;
    c->by_index = xcalloc((size_t)size, sizeof *c->by_index);
    c->live_cap = capacity > 0 ? capacity + 1 : 64;
    c->live = xmalloc(sizeof *c->live * (size_t)c->live_cap);
    return c;
}

static void entry_free(entry *e) {
    free(e->img.rgb);
    free(e->img.labels);
    free(e);
}

void image_cache_destroy(image_cache *c) {
    if (!c) return;
    for (int i = 0; i < c->nlive; i++) entry_free(c->live[i]);
    free(c->live);
    free(c->by_index);
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->loaded_cv);
    free(c);
}

/* Under mu. */
static void unlink_entry(image_cache *c, entry *e) {
    c->by_index[e->index] = NULL;
    entry *last = c->live[--c->nlive];
    c->live[e->live_pos] = last;
    last->live_pos = e->live_pos;
    if (e->state == READY) c->bytes -= (size_t)e->img.h * e->img.w * 3;
}

/* Under mu: while over capacity, drops the least recently used unpinned ready entry. Pinned and
 * loading entries stay, so the cache may briefly hold more than its capacity. */
static void evict(image_cache *c) {
    while (c->capacity > 0 && c->nlive > c->capacity) {
        entry *victim = NULL;
        for (int i = 0; i < c->nlive; i++) {
            entry *e = c->live[i];
            if (e->refs == 0 && e->state == READY && (!victim || e->stamp < victim->stamp))
                victim = e;
        }
        if (!victim) return;
        unlink_entry(c, victim);
        entry_free(victim);
    }
}

cached_image *image_cache_acquire(image_cache *c, int index, int *must_load) {
    pthread_mutex_lock(&c->mu);
    entry *e;
    while ((e = c->by_index[index]) && e->state == LOADING)
        pthread_cond_wait(&c->loaded_cv, &c->mu);
    *must_load = e == NULL;
    if (e) {
        c->hits++;
    } else {
        c->loads++;
        e = xcalloc(1, sizeof *e);
        e->index = index, e->state = LOADING;
        if (c->nlive == c->live_cap) {
            c->live_cap *= 2;
            c->live = xrealloc(c->live, sizeof *c->live * (size_t)c->live_cap);
        }
        e->live_pos = c->nlive;
        c->live[c->nlive++] = e;
        c->by_index[index] = e;
    }
    e->refs++;
    e->stamp = ++c->clock;
    evict(c);
    pthread_mutex_unlock(&c->mu);
    return &e->img;
}

void image_cache_loaded(image_cache *c, cached_image *img, int ok) {
    entry *e = (entry *)img;
    pthread_mutex_lock(&c->mu);
    if (ok) {
        e->state = READY;
        c->bytes += (size_t)img->h * img->w * 3;
    } else {
        unlink_entry(c, e);
        e->index = -1; /* the loader still holds its pin; release frees it */
    }
    pthread_cond_broadcast(&c->loaded_cv);
    pthread_mutex_unlock(&c->mu);
}

void image_cache_release(image_cache *c, cached_image *img) {
    entry *e = (entry *)img;
    pthread_mutex_lock(&c->mu);
    if (--e->refs == 0 && e->index < 0)
        entry_free(e);
    else
        evict(c);
    pthread_mutex_unlock(&c->mu);
}

void image_cache_usage(image_cache *c, int *images, size_t *bytes) {
    pthread_mutex_lock(&c->mu);
    *images = c->nlive;
    *bytes = c->bytes;
    pthread_mutex_unlock(&c->mu);
}

void image_cache_counts(image_cache *c, int64_t *hits, int64_t *loads) {
    pthread_mutex_lock(&c->mu);
    *hits = c->hits;
    *loads = c->loads;
    pthread_mutex_unlock(&c->mu);
}
