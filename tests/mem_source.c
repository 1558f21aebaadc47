#include "tests/mem_source.h"

#include <stdlib.h>
#include <string.h>

static int mem_read(void *ctx, int index, dataset_sample *out, char *err, size_t errlen) {
    (void)err, (void)errlen;
    memset(out, 0, sizeof *out);
    out->index = index, out->encoding = IMG_RAW_RGB;
    mem_fill_fn fill;
    memcpy(&fill, &ctx, sizeof fill);
    fill(index, out);
    out->nbytes = (size_t)out->height * out->width * 3;
    return 0;
}

static int mem_decode(void *ctx, const dataset_sample *s, int min_h, int min_w, uint8_t **rgb,
                      int *h, int *w, char *err, size_t errlen) {
    (void)ctx, (void)min_h, (void)min_w, (void)err, (void)errlen;
    *rgb = malloc(s->nbytes);
    memcpy(*rgb, s->bytes, s->nbytes);
    *h = s->height, *w = s->width;
    return 0;
}

static void mem_free(void *ctx, dataset_sample *s) {
    (void)ctx;
    free(s->bytes);
    free(s->labels);
}

sample_source mem_source_of(const char *name, int size, mem_fill_fn fill) {
    /* a function pointer travels as the context (POSIX guarantees the round trip) */
    void *ctx;
    memcpy(&ctx, &fill, sizeof ctx);
    return (sample_source){.ctx = ctx,
                           .name = name,
                           .size = size,
                           .read = mem_read,
                           .decode = mem_decode,
                           .free_sample = mem_free};
}
