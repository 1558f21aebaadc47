#include "dataio/decode.h"

#include "common/log.h"

#include <spng.h>
#include <stdlib.h>
#include <string.h>
#include <turbojpeg.h>

/* Refuse absurd headers before allocating: a corrupt or hostile file must not ask for gigabytes. */
#define MAX_SIDE 32768
#define MAX_PIXELS (256u * 1024u * 1024u)

const char *image_encoding_name(int enc) {
    switch (enc) {
    case IMG_JPEG:
        return "jpeg";
    case IMG_PNG:
        return "png";
    case IMG_RAW_RGB:
        return "raw_rgb";
    default:
        return "unknown";
    }
}

int image_sniff_encoding(const uint8_t *b, size_t n) {
    if (n >= 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF) return IMG_JPEG;
    static const uint8_t png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
    if (n >= 8 && !memcmp(b, png_sig, 8)) return IMG_PNG;
    return 0;
}

static int size_ok(const char *what, int h, int w, char *err, size_t errlen) {
    if (h <= 0 || w <= 0 || h > MAX_SIDE || w > MAX_SIDE || (size_t)h * (size_t)w > MAX_PIXELS)
        return errf(err, errlen, "%s: image size %dx%d out of range", what, w, h);
    return 0;
}

/* ---- JPEG (TurboJPEG) ------------------------------------------------------------------------ */

static int jpeg_header(tjhandle tj, const uint8_t *b, size_t n, int *h, int *w, char *err,
                       size_t errlen) {
    int sub, cs;
    *h = *w = 0; /* a stream without a frame header can "succeed" without setting them */
    if (n > (size_t)0xFFFFFFFFu) return errf(err, errlen, "jpeg: %zu bytes is too large", n);
    if (tjDecompressHeader3(tj, b, (unsigned long)n, w, h, &sub, &cs) != 0)
        return errf(err, errlen, "jpeg: %s", tjGetErrorStr2(tj));
    return size_ok("jpeg", *h, *w, err, errlen);
}

/* The smallest downscale (num/denom <= 1) whose output still covers min_h x min_w. */
static void jpeg_pick_scale(int h, int w, int min_h, int min_w, int *oh, int *ow) {
    *oh = h, *ow = w;
    if (min_h <= 0 && min_w <= 0) return;
    int nsf = 0;
    tjscalingfactor *sf = tjGetScalingFactors(&nsf);
    if (!sf) return;
    for (int i = 0; i < nsf; i++) {
        if (sf[i].num > sf[i].denom) continue;
        int sh = TJSCALED(h, sf[i]), sw = TJSCALED(w, sf[i]);
        if (sh >= min_h && sw >= min_w && (size_t)sh * sw < (size_t)*oh * *ow) *oh = sh, *ow = sw;
    }
}

static int jpeg_decode(const uint8_t *b, size_t n, int min_h, int min_w, uint8_t **rgb, int *h,
                       int *w, char *err, size_t errlen) {
    tjhandle tj = tjInitDecompress();
    if (!tj) return errf(err, errlen, "jpeg: cannot create decoder: %s", tjGetErrorStr2(NULL));
    int fh, fw, rc = -1;
    if (jpeg_header(tj, b, n, &fh, &fw, err, errlen) == 0) {
        int oh, ow;
        jpeg_pick_scale(fh, fw, min_h, min_w, &oh, &ow);
        uint8_t *out = xmalloc((size_t)oh * ow * 3);
        /* A warning (e.g. a few trailing bytes missing) still yields a full image: accept it, as
         * every JPEG viewer does; only fatal errors fail. */
        if (tjDecompress2(tj, b, (unsigned long)n, out, ow, ow * 3, oh, TJPF_RGB, 0) != 0 &&
            tjGetErrorCode(tj) != TJERR_WARNING) {
            errf(err, errlen, "jpeg: %s", tjGetErrorStr2(tj));
            free(out);
        } else {
            *rgb = out, *h = oh, *w = ow, rc = 0;
        }
    }
    tjDestroy(tj);
    return rc;
}

/* ---- PNG (spng) ------------------------------------------------------------------------------ */

static spng_ctx *png_open(const uint8_t *b, size_t n, int *h, int *w, char *err, size_t errlen) {
    spng_ctx *ctx = spng_ctx_new(0);
    if (!ctx) return errf(err, errlen, "png: cannot create decoder"), NULL;
    struct spng_ihdr ihdr;
    int e = spng_set_image_limits(ctx, MAX_SIDE, MAX_SIDE);
    if (!e) e = spng_set_png_buffer(ctx, b, n);
    if (!e) e = spng_get_ihdr(ctx, &ihdr);
    if (e) {
        errf(err, errlen, "png: %s", spng_strerror(e));
        spng_ctx_free(ctx);
        return NULL;
    }
    *h = (int)ihdr.height, *w = (int)ihdr.width;
    if (size_ok("png", *h, *w, err, errlen) != 0) {
        spng_ctx_free(ctx);
        return NULL;
    }
    return ctx;
}

static int png_decode(const uint8_t *b, size_t n, uint8_t **rgb, int *h, int *w, char *err,
                      size_t errlen) {
    int ph, pw;
    spng_ctx *ctx = png_open(b, n, &ph, &pw, err, errlen);
    if (!ctx) return -1;
    size_t sz = 0;
    int e = spng_decoded_image_size(ctx, SPNG_FMT_RGB8, &sz);
    if (!e && sz != (size_t)ph * pw * 3) e = SPNG_EINTERNAL;
    uint8_t *out = e ? NULL : xmalloc(sz);
    /* SPNG_FMT_RGB8 converts gray, palette and 16-bit to 8-bit RGB and drops alpha. */
    if (!e) e = spng_decode_image(ctx, out, sz, SPNG_FMT_RGB8, 0);
    spng_ctx_free(ctx);
    if (e) {
        free(out);
        return errf(err, errlen, "png: %s", spng_strerror(e));
    }
    *rgb = out, *h = ph, *w = pw;
    return 0;
}

/* ---- public ---------------------------------------------------------------------------------- */

int image_decode(const uint8_t *bytes, size_t n, image_encoding enc, int min_h, int min_w,
                 uint8_t **rgb, int *h, int *w, char *err, size_t errlen) {
    *rgb = NULL;
    if (!bytes || n == 0) return errf(err, errlen, "%s: empty image", image_encoding_name(enc));
    switch (enc) {
    case IMG_JPEG:
        return jpeg_decode(bytes, n, min_h, min_w, rgb, h, w, err, errlen);
    case IMG_PNG:
        return png_decode(bytes, n, rgb, h, w, err, errlen);
    case IMG_RAW_RGB:
        if (size_ok("raw_rgb", *h, *w, err, errlen) != 0) return -1;
        if (n != (size_t)*h * *w * 3)
            return errf(err, errlen, "raw_rgb: %zu bytes, expected %dx%dx3 = %zu", n, *w, *h,
                        (size_t)*h * *w * 3);
        *rgb = xmalloc(n);
        memcpy(*rgb, bytes, n);
        return 0;
    default:
        return errf(err, errlen, "unknown image encoding %d", (int)enc);
    }
}

int image_decode_size(const uint8_t *bytes, size_t n, image_encoding enc, int *h, int *w, char *err,
                      size_t errlen) {
    if (!bytes || n == 0) return errf(err, errlen, "%s: empty image", image_encoding_name(enc));
    if (enc == IMG_JPEG) {
        tjhandle tj = tjInitDecompress();
        if (!tj) return errf(err, errlen, "jpeg: cannot create decoder");
        int rc = jpeg_header(tj, bytes, n, h, w, err, errlen);
        tjDestroy(tj);
        return rc;
    }
    if (enc == IMG_PNG) {
        spng_ctx *ctx = png_open(bytes, n, h, w, err, errlen);
        if (!ctx) return -1;
        spng_ctx_free(ctx);
        return 0;
    }
    return errf(err, errlen, "%s: size is not stored in the bytes", image_encoding_name(enc));
}
