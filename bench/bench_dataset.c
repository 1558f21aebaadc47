/* Dataset reads and decode: random single-image reads by index (what the loader does) against
 * sequential reads of the same file, and JPEG decode at full size against DCT-scaled decode. */
#include "common/log.h"
#include "common/rng.h"
#include "common/timer.h"
#include "dataio/dataset.h"
#include "dataio/decode.h"
#include "dataio/pack.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static double read_all(dataset *ds, const int *order, int n, size_t *bytes) {
    char err[256];
    double t0 = now_seconds();
    for (int i = 0; i < n; i++) {
        dataset_sample s;
        if (dataset_read(ds, SPLIT_TRAIN, order[i], &s, err, sizeof err) != 0) FATAL("%s", err);
        *bytes += s.nbytes;
        dataset_sample_free(&s);
    }
    return now_seconds() - t0;
}

int main(void) {
    char path[] = "/tmp/bench_dataset.XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0) FATAL("mkstemp");
    close(fd);
    int count[SPLIT_COUNT] = {1024, 0, 0}, n = count[0];
    pack_stats st;
    char err[256];
    double t0 = now_seconds();
    if (pack_synth(path, count, 128, 3, 0, &st, err, sizeof err) != 0) FATAL("%s", err);
    double tw = now_seconds() - t0;
    printf("synth pack: %d images 128x128 raw in %.3f s (%.0f images/s)\n", n, tw, n / tw);
    dataset *ds = dataset_open(path, err, sizeof err);
    if (!ds) FATAL("%s", err);
    int *seq = malloc(sizeof *seq * n), *rnd = malloc(sizeof *rnd * n);
    for (int i = 0; i < n; i++) seq[i] = rnd[i] = i;
    rng r = rng_keyed(0, 1, 2);
    for (int i = n - 1; i > 0; i--) {
        int j = rng_int(&r, i + 1), t = rnd[i];
        rnd[i] = rnd[j], rnd[j] = t;
    }
    size_t b1 = 0, b2 = 0;
    double ts = read_all(ds, seq, n, &b1), tr = read_all(ds, rnd, n, &b2);
    printf("read by index: sequential %.0f images/s (%.0f MB/s), random %.0f images/s; "
           "random/sequential %.2f\n",
           n / ts, b1 / ts / 1e6, n / tr, ts / tr);
    dataset_close(ds);
    unlink(path);
    free(seq), free(rnd);

    /* a coco8 image from the shared data: $YOLO_SHARED, ../shared, ../../shared, /work/shared */
    const char *roots[] = {getenv("YOLO_SHARED"), "../shared", "../../shared", "/work/shared"};
    char jpg[512];
    uint8_t *bytes = NULL;
    size_t nb;
    for (int i = 0; i < 4 && !bytes; i++) {
        if (!roots[i]) continue;
        snprintf(jpg, sizeof jpg, "%s/data/coco8/images/train/000000000009.jpg", roots[i]);
        if (pack_read_file(jpg, &bytes, &nb, err, sizeof err) != 0) bytes = NULL;
    }
    if (!bytes) {
        printf("jpeg decode: skipped (%s)\n", err);
        return 0;
    }
    int reps = 50, h = 0, w = 0;
    double tf = 0, th = 0;
    for (int k = 0; k < 2; k++) {
        int mh = k ? 240 : 0, mw = k ? 320 : 0;
        t0 = now_seconds();
        for (int i = 0; i < reps; i++) {
            uint8_t *rgb;
            if (image_decode(bytes, nb, IMG_JPEG, mh, mw, &rgb, &h, &w, err, sizeof err) != 0)
                FATAL("%s", err);
            free(rgb);
        }
        *(k ? &th : &tf) = now_seconds() - t0;
        printf("jpeg decode %dx%d: %.0f images/s\n", w, h, reps / (k ? th : tf));
    }
    printf("jpeg decode scaled/full speedup %.2f (machine shared: timings are noisy)\n", tf / th);
    free(bytes);
    return 0;
}
