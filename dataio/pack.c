#include "dataio/pack.h"

#include "common/log.h"
#include "common/sha256.h"
#include "dataio/decode.h"
#include "dataio/synth.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Open-addressing set of image digests, to spot duplicate images. */
typedef struct dup_entry {
    char hex[65];
    char *file;
} dup_entry;

struct pack_ctx {
    pack_stats *st;
    bool skip_bad, clip_reported;
    dup_entry *tab;
    size_t cap, used;
};

pack_stats *pack_ctx_stats(pack_ctx *c) {
    return c->st;
}

pack_ctx *pack_ctx_new(pack_stats *st, bool skip_bad) {
    pack_ctx *c = xcalloc(1, sizeof *c);
    memset(st, 0, sizeof *st);
    c->st = st, c->skip_bad = skip_bad;
    c->cap = 1024;
    c->tab = xcalloc(c->cap, sizeof *c->tab);
    return c;
}

void pack_ctx_free(pack_ctx *c) {
    if (!c) return;
    for (size_t i = 0; i < c->cap; i++) free(c->tab[i].file);
    free(c->tab), free(c);
}

static uint64_t hex_key(const char *hex) {
    uint64_t k = 0;
    for (int i = 0; i < 16; i++)
        k = k * 16 + (uint64_t)(hex[i] <= '9' ? hex[i] - '0' : hex[i] - 'a' + 10);
    return k;
}

/* Returns the earlier file with the same digest, or NULL after inserting this one. */
static const char *dup_check(pack_ctx *c, const char *hex, const char *file) {
    if (2 * (c->used + 1) > c->cap) {
        dup_entry *old = c->tab;
        size_t oc = c->cap;
        c->cap *= 2, c->used = 0;
        c->tab = xcalloc(c->cap, sizeof *c->tab);
        for (size_t i = 0; i < oc; i++)
            if (old[i].file) {
                size_t j = hex_key(old[i].hex) & (c->cap - 1);
                while (c->tab[j].file) j = (j + 1) & (c->cap - 1);
                c->tab[j] = old[i], c->used++;
            }
        free(old);
    }
    size_t j = hex_key(hex) & (c->cap - 1);
    for (; c->tab[j].file; j = (j + 1) & (c->cap - 1))
        if (!memcmp(c->tab[j].hex, hex, 64)) return c->tab[j].file;
    memcpy(c->tab[j].hex, hex, 65);
    c->tab[j].file = xstrdup(file);
    c->used++;
    return NULL;
}

int pack_read_file(const char *path, uint8_t **data, size_t *n, char *err, size_t errlen) {
    *data = NULL, *n = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return errf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
    size_t cap = 1 << 16, len = 0;
    uint8_t *buf = xmalloc(cap + 1);
    for (;;) {
        size_t got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (len < cap) break;
        cap *= 2;
        buf = xrealloc(buf, cap + 1);
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        return errf(err, errlen, "%s: read error", path);
    }
    buf[len] = 0;
    *data = buf, *n = len;
    return 0;
}

int pack_load_image(pack_ctx *c, const char *path, uint8_t **bytes, size_t *n, image_encoding *enc,
                    int *h, int *w, char *err, size_t errlen) {
    char why[256] = "";
    uint8_t *b = NULL, *rgb = NULL;
    size_t nb = 0;
    int e = 0;
    if (pack_read_file(path, &b, &nb, why, sizeof why) != 0) goto bad;
    e = image_sniff_encoding(b, nb);
    if (!e) {
        snprintf(why, sizeof why, "%s: not a JPEG or PNG file", path);
        goto bad;
    }
    /* A full decode proves the file is readable; for JPEG the 1/8 DCT scale still entropy-decodes
     * every block at a fraction of the cost. The header gives the full size. */
    int dh, dw;
    char derr[200];
    if (image_decode_size(b, nb, (image_encoding)e, h, w, derr, sizeof derr) != 0 ||
        image_decode(b, nb, (image_encoding)e, 1, 1, &rgb, &dh, &dw, derr, sizeof derr) != 0) {
        snprintf(why, sizeof why, "%s: does not decode: %s", path, derr);
        goto bad;
    }
    free(rgb);
    /* libjpeg fills a truncated scan with grey and only warns; Ultralytics keeps such images too */
    if (e == IMG_JPEG && (nb < 2 || b[nb - 2] != 0xFF || b[nb - 1] != 0xD9))
        log_warn("%s: JPEG has no end marker (truncated?); kept", path);
    char hex[65];
    sha256_hex(b, nb, hex);
    const char *first = dup_check(c, hex, path);
    if (first) {
        c->st->duplicates++;
        if (!strcmp(first, path))
            log_warn("duplicate image: %s is listed again (kept)", path);
        else
            log_warn("duplicate image: %s has the same bytes as %s (kept)", path, first);
    }
    *bytes = b, *n = nb, *enc = (image_encoding)e;
    return 0;
bad:
    free(b);
    if (c->skip_bad) {
        c->st->skipped++;
        log_warn("skipped: %s", why);
        return 1;
    }
    return errf(err, errlen, "%s (skip_bad=True skips such images)", why);
}

bool pack_clip_box(pack_ctx *c, float *b, const char *where) {
    if (!isfinite(b[0]) || !isfinite(b[1]) || !isfinite(b[2]) || !isfinite(b[3])) {
        c->st->dropped++; /* the parsers refuse these; never let one through */
        return false;
    }
    double x0 = b[0] - b[2] / 2.0, x1 = b[0] + b[2] / 2.0;
    double y0 = b[1] - b[3] / 2.0, y1 = b[1] + b[3] / 2.0;
    const double eps = 1e-6; /* label files round to 6 decimals */
    if (x0 < -eps || y0 < -eps || x1 > 1 + eps || y1 > 1 + eps) {
        c->st->clipped++;
        if (!c->clip_reported)
            log_warn("%s: box extends past the image and was clipped (further clipped boxes are "
                     "only counted)",
                     where);
        c->clip_reported = true;
    }
    x0 = x0 < 0 ? 0 : x0, y0 = y0 < 0 ? 0 : y0;
    x1 = x1 > 1 ? 1 : x1, y1 = y1 > 1 ? 1 : y1;
    if (x1 <= x0 || y1 <= y0) {
        c->st->dropped++;
        return false;
    }
    /* Leave in-range boxes bit-identical to their input. */
    if (x0 != b[0] - b[2] / 2.0 || x1 != b[0] + b[2] / 2.0 || y0 != b[1] - b[3] / 2.0 ||
        y1 != b[1] + b[3] / 2.0) {
        b[0] = (float)((x0 + x1) / 2), b[1] = (float)((y0 + y1) / 2);
        b[2] = (float)(x1 - x0), b[3] = (float)(y1 - y0);
    }
    return true;
}

int pack_synth(const char *out, const int count[SPLIT_COUNT], int imgsz, int classes, uint64_t seed,
               pack_stats *st, char *err, size_t errlen) {
    return pack_synth_styled(out, count, imgsz, classes, seed, NULL, st, err, errlen);
}

int pack_synth_styled(const char *out, const int count[SPLIT_COUNT], int imgsz, int classes,
                      uint64_t seed, const synth_style *style, pack_stats *st, char *err,
                      size_t errlen) {
    memset(st, 0, sizeof *st);
    synth_style sty = style ? *style : synth_style_default();
    if (!(sty.brightness > 0 && sty.brightness <= 4) ||
        !(sty.object_scale > 0 && sty.object_scale <= 2.5))
        return errf(err, errlen, "brightness=%g, object_scale=%g: expected (0, 4] and (0, 2.5]",
                    sty.brightness, sty.object_scale);
    if (imgsz < SYNTH_MIN_IMGSZ || imgsz > 4096)
        return errf(err, errlen, "imgsz=%d: expected %d..4096", imgsz, SYNTH_MIN_IMGSZ);
    if (classes < 1 || classes > SYNTH_MAX_CLASSES)
        return errf(err, errlen, "classes=%d: expected 1..%d (circle, rectangle, triangle)",
                    classes, SYNTH_MAX_CLASSES);
    if (count[SPLIT_TRAIN] < 1) return errf(err, errlen, "train=%d: expected >= 1", count[0]);
    const char *names[SYNTH_MAX_CLASSES];
    for (int k = 0; k < classes; k++) names[k] = synth_class_name(k);
    char source[256];
    int k = snprintf(source, sizeof source, "synth seed=%llu imgsz=%d classes=%d",
                     (unsigned long long)seed, imgsz, classes);
    if (sty.brightness != 1 || sty.object_scale != 1 || sty.background != SYNTH_BG_PLAIN)
        snprintf(source + k, sizeof source - (size_t)k,
                 " brightness=%g object_scale=%g background=%s", sty.brightness, sty.object_scale,
                 synth_background_name(sty.background));
    dataset_writer *w = dataset_writer_create(out, classes, names, source, err, errlen);
    if (!w) return -1;
    uint8_t *rgb = xmalloc((size_t)imgsz * imgsz * 3);
    float labels[SYNTH_MAX_OBJECTS * 5];
    int rc = 0;
    for (int s = 0; s < SPLIT_COUNT && rc == 0; s++) {
        if (count[s] <= 0) continue;
        rc = dataset_writer_begin_split(w, (split_id)s, err, errlen);
        for (int i = 0; i < count[s] && rc == 0; i++) {
            int nb = synth_image_styled(seed, (split_id)s, i, imgsz, classes, &sty, rgb, labels);
            char name[64];
            snprintf(name, sizeof name, "synth/%s/%06d", split_name((split_id)s), i);
            rc = dataset_writer_add(w, rgb, (size_t)imgsz * imgsz * 3, IMG_RAW_RGB, imgsz, imgsz,
                                    labels, nb, name, err, errlen);
            st->images[s]++, st->boxes[s] += nb;
        }
    }
    free(rgb);
    if (rc != 0) {
        dataset_writer_abort(w);
        return -1;
    }
    return dataset_writer_finish(w, st->hash, err, errlen);
}
