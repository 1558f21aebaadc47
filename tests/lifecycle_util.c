#include "lifecycle_util.h"

#include "dataio/decode.h"
#include "runs.h"
#include "testenv.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void lc_tmpdir(char *dir, const char *prefix) {
    test_temp_dir(dir, 256, prefix);
}

void lc_rm_rf(const char *dir) {
    test_remove_dir(dir);
}

void lc_synth(const char *dir, int classes, char *data) {
    snprintf(data, 400, "%s/s.h5", dir);
    cr_assert_eq(run_sh("\"$YOLO_COORD\" data synth out=%s train=32 val=20 imgsz=64 classes=%d "
                        "seed=0 > /dev/null",
                        data, classes),
                 0, "synth");
}

void lc_train(const char *dir, const char *data, int epochs, const char *extra) {
    int rc = run_sh("timeout 900 \"$YOLO_COORD\" train data=%s model=yolov8n.yaml epochs=%d "
                    "imgsz=64 batch=8 workers=1 threads=1 loader_threads=1 project=%s name=r %s "
                    "> %s/train.log 2>&1",
                    data, epochs, dir, extra, dir);
    cr_assert_eq(rc, 0, "training failed (%d); see %s/train.log", rc, dir);
}

char *lc_read(const char *path) {
    FILE *f = fopen(path, "rb");
    cr_assert(f, "%s missing", path);
    cr_assert_eq(fseek(f, 0, SEEK_END), 0);
    long n = ftell(f);
    rewind(f);
    char *s = malloc((size_t)n + 1);
    cr_assert_eq(fread(s, 1, (size_t)n, f), (size_t)n);
    s[n] = 0;
    fclose(f);
    return s;
}

char *lc_last_table(const char *text) {
    const char *h = NULL;
    for (const char *p = strstr(text, "Class     Images"); p; p = strstr(p + 1, "Class     Images"))
        h = p;
    if (!h) return strdup("");
    while (h > text && h[-1] != '\n') h--;
    const char *e = strchr(h, '\n');
    /* rows: a right-aligned name then six numbers; stop at the first other line */
    while (e && e[1] == ' ') {
        const char *n = strchr(e + 1, '\n');
        if (!n) break;
        e = n;
    }
    size_t len = e ? (size_t)(e - h) : strlen(h);
    char *out = malloc(len + 1);
    memcpy(out, h, len);
    out[len] = 0;
    return out;
}

void lc_check_speed_lines(const char *log, int images) {
    const char *sp = strstr(log, "Speed: "), *th = strstr(log, "Throughput: ");
    cr_assert(sp && th, "speed and throughput lines");
    double pre, inf, post;
    cr_assert_eq(sscanf(sp, "Speed: %lfms preprocess, %lfms inference, %lfms", &pre, &inf, &post),
                 3, "speed line: %.80s", sp);
    cr_assert(pre >= 0 && inf > 0 && post >= 0, "per-image times %g %g %g", pre, inf, post);
    int n;
    double secs, rate;
    cr_assert_eq(sscanf(th, "Throughput: %d images in %lf s, %lf images/s", &n, &secs, &rate), 3,
                 "throughput line: %.80s", th);
    cr_assert_eq(n, images, "images counted");
    cr_assert_gt(secs, 0);
    /* printed with 2 decimals (seconds) and 1 (rate) */
    double lo = n / (secs + 0.005), hi = secs > 0.005 ? n / (secs - 0.005) : 1e30;
    cr_assert(rate >= lo - 0.05 && rate <= hi + 0.05, "%g images/s for %d images in %g s", rate, n,
              secs);
}

lc_image lc_load_image(const char *path) {
    char *buf = NULL;
    FILE *f = fopen(path, "rb");
    cr_assert(f, "%s missing", path);
    cr_assert_eq(fseek(f, 0, SEEK_END), 0);
    long n = ftell(f);
    rewind(f);
    buf = malloc((size_t)n);
    cr_assert_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    lc_image im = {0};
    char err[256];
    int enc = image_sniff_encoding((uint8_t *)buf, (size_t)n);
    cr_assert(enc, "%s: PNG or JPEG", path);
    cr_assert_eq(
        image_decode((uint8_t *)buf, (size_t)n, enc, 0, 0, &im.rgb, &im.h, &im.w, err, sizeof err),
        0, "%s: %s", path, err);
    free(buf);
    return im;
}

size_t lc_ink(const lc_image *im) {
    size_t k = 0;
    for (size_t i = 0; i < (size_t)im->w * im->h; i++)
        k += im->rgb[3 * i] < 200 || im->rgb[3 * i + 1] < 200 || im->rgb[3 * i + 2] < 200;
    return k;
}
