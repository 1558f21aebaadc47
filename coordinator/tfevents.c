#include "coordinator/tfevents.h"

#include "common/crc32c.h"
#include "common/log.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

struct tfevents {
    FILE *f;
    char path[PATH_MAX];
};

/* ---- a protobuf encoder for the few field kinds an Event needs ------------------------------ */

typedef struct {
    uint8_t *p;
    size_t n, cap;
} pbuf;

static void put(pbuf *b, const void *data, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = 2 * (b->n + n) + 64;
        b->p = xrealloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, data, n);
    b->n += n;
}

static void put_varint(pbuf *b, uint64_t v) {
    uint8_t tmp[10];
    size_t n = 0;
    do {
        tmp[n] = (uint8_t)(v & 0x7f);
        v >>= 7;
        if (v) tmp[n] |= 0x80;
        n++;
    } while (v);
    put(b, tmp, n);
}

enum { WIRE_VARINT = 0, WIRE_FIXED64 = 1, WIRE_BYTES = 2, WIRE_FIXED32 = 5 };

static void put_key(pbuf *b, int field, int wire) {
    put_varint(b, (uint64_t)field << 3 | (uint64_t)wire);
}

static void put_le(pbuf *b, uint64_t v, int bytes) {
    uint8_t tmp[8];
    for (int i = 0; i < bytes; i++) tmp[i] = (uint8_t)(v >> (8 * i));
    put(b, tmp, (size_t)bytes);
}

static void put_double(pbuf *b, int field, double x) {
    uint64_t u;
    memcpy(&u, &x, sizeof u);
    put_key(b, field, WIRE_FIXED64);
    put_le(b, u, 8);
}

static void put_float(pbuf *b, int field, float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    put_key(b, field, WIRE_FIXED32);
    put_le(b, u, 4);
}

static void put_int64(pbuf *b, int field, int64_t v) {
    put_key(b, field, WIRE_VARINT);
    put_varint(b, (uint64_t)v); /* negative int64: ten bytes of two's complement, as protobuf */
}

static void put_bytes(pbuf *b, int field, const void *data, size_t n) {
    put_key(b, field, WIRE_BYTES);
    put_varint(b, n);
    put(b, data, n);
}

/* ---- records ------------------------------------------------------------------------------- */

void tfrecord_frame(const void *data, size_t n, uint8_t *out) {
    uint8_t len[8];
    for (int i = 0; i < 8; i++) len[i] = (uint8_t)((uint64_t)n >> (8 * i));
    uint32_t c1 = crc32c_masked(len, 8), c2 = crc32c_masked(data, n);
    memcpy(out, len, 8);
    for (int i = 0; i < 4; i++) out[8 + i] = (uint8_t)(c1 >> (8 * i));
    memcpy(out + 12, data, n);
    for (int i = 0; i < 4; i++) out[12 + n + i] = (uint8_t)(c2 >> (8 * i));
}

static int write_record(tfevents *t, const pbuf *ev, char *err, size_t errlen) {
    uint8_t *rec = xmalloc(ev->n + 16);
    tfrecord_frame(ev->p, ev->n, rec);
    size_t w = fwrite(rec, 1, ev->n + 16, t->f);
    free(rec);
    if (w != ev->n + 16 || fflush(t->f) != 0)
        return errf(err, errlen, "%s: write failed: %s", t->path, strerror(errno));
    return 0;
}

static double unix_now(void) {
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec + 1e-6 * (double)tv.tv_usec;
}

tfevents *tfevents_open(const char *dir, char *err, size_t errlen) {
    char host[256] = "localhost";
    if (gethostname(host, sizeof host) != 0) snprintf(host, sizeof host, "localhost");
    host[sizeof host - 1] = 0;
    tfevents *t = xcalloc(1, sizeof *t);
    double now = unix_now();
    int fd = -1;
    for (int k = 0; fd < 0 && k < 100; k++) {
        int n = k ? snprintf(t->path, sizeof t->path, "%s/events.out.tfevents.%lld.%s.%ld.%d", dir,
                             (long long)now, host, (long)getpid(), k)
                  : snprintf(t->path, sizeof t->path, "%s/events.out.tfevents.%lld.%s.%ld", dir,
                             (long long)now, host, (long)getpid());
        if (n < 0 || (size_t)n >= sizeof t->path) {
            errf(err, errlen, "%s: path too long for an event file", dir);
            free(t);
            return NULL;
        }
        fd = open(t->path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (fd < 0 && errno != EEXIST) break;
    }
    if (fd < 0 || !(t->f = fdopen(fd, "wb"))) {
        errf(err, errlen, "%s: cannot create: %s", t->path, strerror(errno));
        if (fd >= 0) close(fd);
        free(t);
        return NULL;
    }
    pbuf ev = {0};
    put_double(&ev, 1, now);
    put_bytes(&ev, 3, TFEVENTS_FILE_VERSION, strlen(TFEVENTS_FILE_VERSION));
    int rc = write_record(t, &ev, err, errlen);
    free(ev.p);
    if (rc != 0) {
        fclose(t->f);
        free(t);
        return NULL;
    }
    return t;
}

const char *tfevents_path(const tfevents *t) {
    return t->path;
}

int tfevents_write_scalars(tfevents *t, double wall_time, int64_t step, int n,
                           const char *const *tags, const double *values, char *err,
                           size_t errlen) {
    pbuf summary = {0}, value = {0}, ev = {0};
    for (int i = 0; i < n; i++) {
        value.n = 0;
        put_bytes(&value, 1, tags[i], strlen(tags[i]));
        put_float(&value, 2, (float)values[i]);
        put_bytes(&summary, 1, value.p, value.n);
    }
    put_double(&ev, 1, wall_time);
    put_int64(&ev, 2, step);
    put_bytes(&ev, 5, summary.p, summary.n);
    int rc = write_record(t, &ev, err, errlen);
    free(summary.p);
    free(value.p);
    free(ev.p);
    return rc;
}

int tfevents_close(tfevents *t, char *err, size_t errlen) {
    if (!t) return 0;
    int rc = 0;
    if (fclose(t->f) != 0) rc = errf(err, errlen, "%s: close failed: %s", t->path, strerror(errno));
    free(t);
    return rc;
}
