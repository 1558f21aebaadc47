/* Helpers of the lifecycle tests (val, predict, gate, drift): small training runs through the real
 * command, files as text, decoded images. Each helper asserts on its own failures. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* test_temp_dir(dir, 256, prefix): a fresh $TMPDIR/yolo-<prefix>-XXXXXX. */
void lc_tmpdir(char *dir, const char *prefix);
void lc_rm_rf(const char *dir);
/* `coordinator data synth out=<dir>/s.h5 train=32 val=20 imgsz=64 classes=<classes> seed=0` into
 * data[400] (asserts success). */
void lc_synth(const char *dir, int classes, char *data);
/* `coordinator train data=<data> model=yolov8n.yaml epochs=<epochs> imgsz=64 batch=8 workers=1
 * threads=1 loader_threads=1 project=<dir> name=r <extra>`, output in <dir>/train.log; asserts
 * success. */
void lc_train(const char *dir, const char *data, int epochs, const char *extra);
/* A whole file as a malloc'd string (asserts it exists). */
char *lc_read(const char *path);
/* The rows of the last validation table printed in text ("Class Images ..." header and the
 * rows under it), as one string; "" when there is none. */
char *lc_last_table(const char *text);

/* Checks the "Speed: ..." and "Throughput: N images in S s, R images/s" lines of a val / predict
 * log: N == images, R == N / S (as printed, rounded), and each per-image time is not negative. */
void lc_check_speed_lines(const char *log, int images);

typedef struct lc_image {
    uint8_t *rgb;
    int w, h;
} lc_image;
/* Decodes a PNG or JPEG file. */
lc_image lc_load_image(const char *path);
/* Pixels of an image that are not near-white: a chart is not blank. */
size_t lc_ink(const lc_image *im);
