#include "worker/batch_ring.h"

#include "common/log.h"

#include <stdlib.h>
#include <string.h>

typedef struct ring_slot {
    uint8_t *host, *dev;
    backend_event *uploaded, *consumed;
    int used; /* consumed has been recorded at least once */
} ring_slot;

struct batch_ring {
    backend *be;
    int n, next;
    size_t bytes;
    ring_slot *s;
};

batch_ring *batch_ring_create(backend *be, int slots, size_t bytes) {
    if (slots < 2) FATAL("batch_ring_create: %d slots", slots);
    batch_ring *r = xcalloc(1, sizeof *r);
    r->be = be;
    r->n = slots;
    r->bytes = bytes;
    r->s = xcalloc((size_t)slots, sizeof *r->s);
    for (int i = 0; i < slots; i++) {
        r->s[i].host = backend_host_alloc(be, bytes);
        r->s[i].dev = backend_alloc(be, bytes);
        r->s[i].uploaded = backend_event_create(be);
        r->s[i].consumed = backend_event_create(be);
    }
    return r;
}

void batch_ring_free(batch_ring *r) {
    if (!r) return;
    backend_synchronize(r->be); /* nothing may still read or fill a slot */
    for (int i = 0; i < r->n; i++) {
        backend_host_free(r->be, r->s[i].host);
        backend_free(r->be, r->s[i].dev);
        backend_event_destroy(r->be, r->s[i].uploaded);
        backend_event_destroy(r->be, r->s[i].consumed);
    }
    free(r->s);
    free(r);
}

int batch_ring_put(batch_ring *r, const uint8_t *images, size_t n) {
    if (n > r->bytes) FATAL("batch_ring_put: %zu bytes into slots of %zu", n, r->bytes);
    int k = r->next;
    r->next = (r->next + 1) % r->n;
    ring_slot *s = &r->s[k];
    /* the host buffer is free once its last upload is done */
    if (s->used) backend_event_synchronize(r->be, s->uploaded);
    memcpy(s->host, images, n);
    backend_to_device_async(r->be, s->dev, s->host, n, s->used ? s->consumed : NULL, s->uploaded);
    return k;
}

const uint8_t *batch_ring_take(batch_ring *r, int slot) {
    backend_event_wait(r->be, r->s[slot].uploaded);
    return r->s[slot].dev;
}

void batch_ring_release(batch_ring *r, int slot) {
    backend_event_record(r->be, r->s[slot].consumed);
    r->s[slot].used = 1;
}
