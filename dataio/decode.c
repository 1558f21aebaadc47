#include "dataio/decode.h"

#include "common/log.h"

#if defined(__AVX512BW__) && defined(__AVX512VBMI__)
#include <immintrin.h>
#endif
#include <libdeflate.h>
#include <pthread.h>
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

/* One TurboJPEG decoder and one inflater per thread, kept for the thread's life (a loader thread
 * decodes thousands of images) and freed when it exits. */
static pthread_key_t tj_key, inflater_key;
static pthread_once_t keys_once = PTHREAD_ONCE_INIT;

static void tj_free(void *h) {
    tjDestroy(h);
}
static void inflater_free(void *d) {
    libdeflate_free_decompressor(d);
}
static void make_keys(void) {
    if (pthread_key_create(&tj_key, tj_free) || pthread_key_create(&inflater_key, inflater_free))
        FATAL("decode: cannot create thread keys");
}

static tjhandle thread_tj(void) {
    pthread_once(&keys_once, make_keys);
    tjhandle tj = pthread_getspecific(tj_key);
    if (!tj && (tj = tjInitDecompress()) && pthread_setspecific(tj_key, tj) != 0) {
        tjDestroy(tj);
        tj = NULL;
    }
    return tj;
}

static int jpeg_decode(const uint8_t *b, size_t n, int min_h, int min_w, uint8_t **rgb, int *h,
                       int *w, char *err, size_t errlen) {
    tjhandle tj = thread_tj();
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

/* The common PNGs (8-bit gray, RGB or RGBA, not interlaced) decode here: libdeflate inflates
 * about twice as fast as zlib, and the checksums are not recomputed (a dataset's bytes are
 * hashed when packed and checked by `data verify`). Anything else, or any surprise, goes to
 * spng. Returns 1 when it did not handle the image, 0 when decoded, -1 on a corrupt stream. */
static uint32_t be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int paeth(int a, int b, int c) {
    int pa = abs(b - c), pb = abs(a - c), pc = abs(a + b - 2 * c);
    return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
}

#if defined(__AVX512BW__) && defined(__AVX512VBMI__)
/* The Sub filter is a running sum per channel: out[i] = raw[i] + out[i - bpp]. 64 / bpp pixels
 * at a time, by log-step shifted adds, plus the previous block's last pixel. OpenCV writes
 * every PNG row with this filter. */
static void unfilter_sub_avx512(const uint8_t *raw, uint8_t *out, size_t len, int bpp) {
    int block = 64 / bpp * bpp, nsteps = 0;
    __m512i shift[6];
    __mmask64 keep[6];
    uint8_t idx[64], last[64];
    for (int k = bpp; k < block; k *= 2, nsteps++) {
        for (int i = 0; i < 64; i++) idx[i] = (uint8_t)(i >= k ? i - k : 0);
        shift[nsteps] = _mm512_loadu_si512(idx);
        keep[nsteps] = ~0ull << k;
    }
    for (int i = 0; i < 64; i++) last[i] = (uint8_t)(block - bpp + i % bpp);
    const __m512i last_px = _mm512_loadu_si512(last);
    __m512i carry = _mm512_setzero_si512();
    for (size_t i = 0; i < len; i += (size_t)block) {
        size_t left = len - i < (size_t)block ? len - i : (size_t)block;
        __mmask64 m = left >= 64 ? ~0ull : (1ull << left) - 1;
        __m512i x = _mm512_maskz_loadu_epi8(m, raw + i);
        for (int k = 0; k < nsteps; k++)
            x = _mm512_add_epi8(x, _mm512_maskz_permutexvar_epi8(keep[k], shift[k], x));
        x = _mm512_add_epi8(x, carry);
        _mm512_mask_storeu_epi8(out + i, m, x);
        carry = _mm512_permutexvar_epi8(last_px, x);
    }
}
#endif

/* One PNG row (filter type f) into out; prev is the row above (zeros for the first). */
static int unfilter(int f, const uint8_t *raw, const uint8_t *prev, uint8_t *out, size_t len,
                    int bpp) {
    size_t i;
    switch (f) {
    case 0:
        memcpy(out, raw, len);
        return 0;
    case 1:
#if defined(__AVX512BW__) && defined(__AVX512VBMI__)
        unfilter_sub_avx512(raw, out, len, bpp);
#else
        for (i = 0; i < (size_t)bpp && i < len; i++) out[i] = raw[i];
        for (; i < len; i++) out[i] = (uint8_t)(raw[i] + out[i - bpp]);
#endif
        return 0;
    case 2:
        for (i = 0; i < len; i++) out[i] = (uint8_t)(raw[i] + prev[i]);
        return 0;
    case 3:
        for (i = 0; i < (size_t)bpp && i < len; i++) out[i] = (uint8_t)(raw[i] + (prev[i] >> 1));
        for (; i < len; i++) out[i] = (uint8_t)(raw[i] + ((out[i - bpp] + prev[i]) >> 1));
        return 0;
    case 4:
        for (i = 0; i < (size_t)bpp && i < len; i++) out[i] = (uint8_t)(raw[i] + prev[i]);
        for (; i < len; i++)
            out[i] = (uint8_t)(raw[i] + paeth(out[i - bpp], prev[i], prev[i - bpp]));
        return 0;
    default:
        return -1;
    }
}

static struct libdeflate_decompressor *thread_inflater(void) {
    pthread_once(&keys_once, make_keys);
    struct libdeflate_decompressor *d = pthread_getspecific(inflater_key);
    if (!d && (d = libdeflate_alloc_decompressor()) && pthread_setspecific(inflater_key, d) != 0) {
        libdeflate_free_decompressor(d);
        d = NULL;
    }
    return d;
}

static int png_decode_fast(const uint8_t *b, size_t n, uint8_t **rgb, int *h, int *w, char *err,
                           size_t errlen) {
    static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
    if (n < 33 || memcmp(b, sig, 8) || be32(b + 8) != 13 || memcmp(b + 12, "IHDR", 4)) return 1;
    const uint8_t *ih = b + 16;
    uint32_t pw = be32(ih), ph = be32(ih + 4);
    int depth = ih[8], ctype = ih[9], interlace = ih[12], ch;
    if (depth != 8 || interlace != 0 || ih[10] != 0 || ih[11] != 0) return 1;
    if (ctype == 0)
        ch = 1;
    else if (ctype == 2)
        ch = 3;
    else if (ctype == 6)
        ch = 4;
    else
        return 1; /* palette, gray + alpha */
    if (size_ok("png", (int)(ph > MAX_SIDE ? MAX_SIDE + 1 : ph),
                (int)(pw > MAX_SIDE ? MAX_SIDE + 1 : pw), err, errlen) != 0)
        return -1;
    /* the IDAT chunks, joined when there are several */
    const uint8_t *z = NULL;
    size_t zn = 0, zcap = 0;
    uint8_t *joined = NULL;
    int nidat = 0;
    for (size_t p = 33; p + 12 <= n;) {
        uint32_t len = be32(b + p);
        if (len > n - p - 12) break; /* truncated: let spng say so */
        const uint8_t *type = b + p + 4, *data = b + p + 8;
        if (!memcmp(type, "IDAT", 4)) {
            if (nidat++ == 0) {
                z = data, zn = len;
            } else {
                if (!joined) {
                    zcap = 2 * (zn + len);
                    joined = xmalloc(zcap);
                    memcpy(joined, z, zn);
                }
                if (zn + len > zcap) joined = xrealloc(joined, zcap = 2 * (zn + len));
                memcpy(joined + zn, data, len);
                zn += len;
                z = joined;
            }
        } else if (!memcmp(type, "IEND", 4)) {
            break;
        }
        p += 12 + (size_t)len;
    }
    size_t stride = (size_t)pw * ch, rawn = (size_t)ph * (stride + 1);
    /* a zlib stream: 2 header bytes (deflate, no preset dictionary), the deflate data, Adler-32 */
    if (!z || zn < 6 || (z[0] & 0x0F) != 8 || (z[0] << 8 | z[1]) % 31 != 0 || (z[1] & 0x20)) {
        free(joined);
        return 1;
    }
    struct libdeflate_decompressor *inflater = thread_inflater();
    if (!inflater) {
        free(joined);
        return 1;
    }
    uint8_t *raw = xmalloc(rawn);
    size_t got = 0;
    enum libdeflate_result r =
        libdeflate_deflate_decompress(inflater, z + 2, zn - 2, raw, rawn, &got);
    free(joined);
    if (r != LIBDEFLATE_SUCCESS || got != rawn) {
        free(raw);
        return 1; /* spng reports what is wrong */
    }
    uint8_t *out = xmalloc((size_t)ph * pw * 3);
    /* rows unfiltered into place (RGB), or into a row buffer first (gray, RGBA) */
    uint8_t *rows = ch == 3 ? NULL : xmalloc(2 * stride), *zero = xcalloc(stride, 1);
    int bad = 0;
    for (uint32_t y = 0; y < ph && !bad; y++) {
        const uint8_t *src = raw + (size_t)y * (stride + 1);
        uint8_t *cur = ch == 3 ? out + (size_t)y * stride : rows + (y & 1) * stride;
        const uint8_t *prev = y == 0    ? zero
                              : ch == 3 ? cur - stride
                                        : rows + ((y + 1) & 1) * stride;
        bad = unfilter(src[0], src + 1, prev, cur, stride, ch);
        if (ch == 3) continue;
        uint8_t *o = out + (size_t)y * pw * 3;
        for (uint32_t x = 0; x < pw; x++) {
            const uint8_t *q = cur + (size_t)x * ch;
            o[3 * x] = q[0], o[3 * x + 1] = q[ch == 1 ? 0 : 1], o[3 * x + 2] = q[ch == 1 ? 0 : 2];
        }
    }
    free(rows), free(zero), free(raw);
    if (bad) {
        free(out);
        return 1;
    }
    *rgb = out, *h = (int)ph, *w = (int)pw;
    return 0;
}

static int png_decode(const uint8_t *b, size_t n, uint8_t **rgb, int *h, int *w, char *err,
                      size_t errlen) {
    int fast = png_decode_fast(b, n, rgb, h, w, err, errlen);
    if (fast <= 0) return fast;
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

/* ---- encode ---------------------------------------------------------------------------------- */

static int jpeg_encode(const uint8_t *rgb, int h, int w, int quality, uint8_t **bytes, size_t *n,
                       char *err, size_t errlen) {
    tjhandle tj = tjInitCompress();
    if (!tj) return errf(err, errlen, "jpeg: cannot create encoder: %s", tjGetErrorStr2(NULL));
    unsigned char *buf = NULL;
    unsigned long len = 0;
    int rc = tjCompress2(tj, rgb, w, w * 3, h, TJPF_RGB, &buf, &len, TJSAMP_444, quality, 0);
    if (rc != 0) errf(err, errlen, "jpeg: %s", tjGetErrorStr2(tj));
    tjDestroy(tj);
    if (rc != 0) {
        tjFree(buf);
        return -1;
    }
    *bytes = xmalloc(len);
    memcpy(*bytes, buf, len);
    *n = len;
    tjFree(buf);
    return 0;
}

static int png_encode(const uint8_t *rgb, int h, int w, uint8_t **bytes, size_t *n, char *err,
                      size_t errlen) {
    spng_ctx *ctx = spng_ctx_new(SPNG_CTX_ENCODER);
    if (!ctx) return errf(err, errlen, "png: cannot create encoder");
    struct spng_ihdr ihdr = {.width = (uint32_t)w,
                             .height = (uint32_t)h,
                             .bit_depth = 8,
                             .color_type = SPNG_COLOR_TYPE_TRUECOLOR};
    int e = spng_set_option(ctx, SPNG_ENCODE_TO_BUFFER, 1);
    if (!e) e = spng_set_ihdr(ctx, &ihdr);
    if (!e) e = spng_encode_image(ctx, rgb, (size_t)h * w * 3, SPNG_FMT_PNG, SPNG_ENCODE_FINALIZE);
    size_t len = 0;
    void *buf = e ? NULL : spng_get_png_buffer(ctx, &len, &e);
    spng_ctx_free(ctx);
    if (e || !buf) {
        free(buf);
        return errf(err, errlen, "png: %s", spng_strerror(e));
    }
    *bytes = buf, *n = len;
    return 0;
}

int image_encode(const uint8_t *rgb, int h, int w, image_encoding enc, int quality, uint8_t **bytes,
                 size_t *n, char *err, size_t errlen) {
    *bytes = NULL, *n = 0;
    if (size_ok(image_encoding_name(enc), h, w, err, errlen) != 0) return -1;
    switch (enc) {
    case IMG_JPEG:
        if (quality < 1 || quality > 100)
            return errf(err, errlen, "jpeg: quality %d outside 1..100", quality);
        return jpeg_encode(rgb, h, w, quality, bytes, n, err, errlen);
    case IMG_PNG:
        return png_encode(rgb, h, w, bytes, n, err, errlen);
    case IMG_RAW_RGB:
        *n = (size_t)h * w * 3;
        *bytes = xmalloc(*n);
        memcpy(*bytes, rgb, *n);
        return 0;
    default:
        return errf(err, errlen, "unknown image encoding %d", (int)enc);
    }
}
