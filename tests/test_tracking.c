/* Experiment tracking: the metric-sink list (warn and disable, never stop), TensorBoard event
 * files (decoded here by an independent reader, and by the tensorboard package), and a training
 * run's tracking outputs end to end. */
#include "common/crc32c.h"
#include "coordinator/metric_sink.h"
#include "coordinator/telemetry.h"
#include "coordinator/tfevents.h"
#include "dataio/decode.h"
#include "pyenv.h"

#include <criterion/criterion.h>
#include <glob.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- an independent TFRecord + Event reader -----------------------------------------------------
 */

/* CRC-32C bit by bit (no table), and TFRecord's mask. */
static uint32_t crc_bitwise(const uint8_t *p, size_t n) {
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1u)));
    }
    return ~c;
}

static uint32_t masked(const uint8_t *p, size_t n) {
    uint32_t c = crc_bitwise(p, n);
    return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

static uint64_t le(const uint8_t *p, int bytes) {
    uint64_t v = 0;
    for (int i = 0; i < bytes; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}

typedef struct {
    double wall_time;
    int64_t step;
    char version[32];
    int nv;
    char tag[24][48];
    float value[24];
} event;

static uint64_t varint(const uint8_t **p, const uint8_t *end) {
    uint64_t v = 0;
    for (int s = 0; *p < end && s < 64; s += 7) {
        uint8_t b = *(*p)++;
        v |= (uint64_t)(b & 0x7f) << s;
        if (!(b & 0x80)) return v;
    }
    cr_assert_fail("truncated varint");
    return 0;
}

/* Protobuf fields of a Summary.Value: tag (1), simple_value (2, fixed32). */
static void parse_value(const uint8_t *p, const uint8_t *end, event *e) {
    cr_assert_lt(e->nv, 24);
    while (p < end) {
        uint64_t key = varint(&p, end);
        int field = (int)(key >> 3), wire = (int)(key & 7);
        if (field == 1 && wire == 2) {
            uint64_t n = varint(&p, end);
            cr_assert_lt(n, sizeof e->tag[0]);
            memcpy(e->tag[e->nv], p, n);
            e->tag[e->nv][n] = 0;
            p += n;
        } else if (field == 2 && wire == 5) {
            uint32_t u = (uint32_t)le(p, 4);
            memcpy(&e->value[e->nv], &u, 4);
            p += 4;
        } else {
            cr_assert_fail("unexpected Summary.Value field %d wire %d", field, wire);
        }
    }
    e->nv++;
}

static void parse_event(const uint8_t *p, const uint8_t *end, event *e) {
    memset(e, 0, sizeof *e);
    e->step = -1;
    while (p < end) {
        uint64_t key = varint(&p, end);
        int field = (int)(key >> 3), wire = (int)(key & 7);
        if (field == 1 && wire == 1) {
            uint64_t u = le(p, 8);
            memcpy(&e->wall_time, &u, 8);
            p += 8;
        } else if (field == 2 && wire == 0) {
            e->step = (int64_t)varint(&p, end);
        } else if (field == 3 && wire == 2) {
            uint64_t n = varint(&p, end);
            cr_assert_lt(n, sizeof e->version);
            memcpy(e->version, p, n);
            p += n;
        } else if (field == 5 && wire == 2) {
            const uint8_t *s_end = p + varint(&p, end);
            while (p < s_end) { /* Summary.value (1, repeated) */
                uint64_t k = varint(&p, s_end);
                cr_assert_eq(k, (1u << 3) | 2u, "Summary field key %llu", (unsigned long long)k);
                uint64_t n = varint(&p, s_end);
                parse_value(p, p + n, e);
                p += n;
            }
        } else {
            cr_assert_fail("unexpected Event field %d wire %d", field, wire);
        }
    }
}

/* Every record of an event file; false at the first framing or CRC error. */
static bool read_events(const char *path, event *ev, int cap, int *n) {
    FILE *f = fopen(path, "rb");
    cr_assert(f, "%s", path);
    *n = 0;
    uint8_t hdr[12], crc[4];
    bool ok = true;
    while (fread(hdr, 1, 12, f) == 12) {
        uint64_t len = le(hdr, 8);
        if ((uint32_t)le(hdr + 8, 4) != masked(hdr, 8) || len > (1u << 20)) {
            ok = false;
            break;
        }
        uint8_t *data = malloc(len ? len : 1);
        bool got = fread(data, 1, len, f) == len && fread(crc, 1, 4, f) == 4;
        if (!got || (uint32_t)le(crc, 4) != masked(data, len)) {
            free(data);
            ok = false;
            break;
        }
        cr_assert_lt(*n, cap);
        parse_event(data, data + len, &ev[(*n)++]);
        free(data);
    }
    fclose(f);
    return ok;
}

static void event_file(const char *dir, char *path, size_t n) {
    char pat[800];
    snprintf(pat, sizeof pat, "%s/events.out.tfevents.*", dir);
    glob_t g;
    cr_assert_eq(glob(pat, 0, NULL, &g), 0, "no event file in %s", dir);
    cr_assert_eq(g.gl_pathc, 1u, "one event file");
    snprintf(path, n, "%s", g.gl_pathv[0]);
    globfree(&g);
}

Test(tracking, crc32c_standard_check_value) {
    cr_assert_eq(crc32c("123456789", 9), 0xE3069283u);
    uint8_t buf[300];
    for (int i = 0; i < 300; i++) buf[i] = (uint8_t)(i * 7 + 3);
    cr_assert_eq(crc32c(buf, 300), crc_bitwise(buf, 300));
    cr_assert_eq(crc32c_masked(buf, 300), masked(buf, 300));
}

Test(tracking, event_file_decodes_independently) {
    char dir[] = "/tmp/yolo-tfev-XXXXXX", err[256], path[600];
    cr_assert(mkdtemp(dir));
    tfevents *t = tfevents_open(dir, err, sizeof err);
    cr_assert(t, "%s", err);
    const char *tags[3] = {"train/box_loss", "metrics/mAP50(B)", "lr/pg0"};
    double v1[3] = {1.25, 0.5, 1e-3}, v2[3] = {-3.75, 0.0625, 123456.0};
    cr_assert_eq(tfevents_write_scalars(t, 1700000000.125, 1, 3, tags, v1, err, sizeof err), 0);
    cr_assert_eq(
        tfevents_write_scalars(t, 1700000001.5, (int64_t)1 << 40, 3, tags, v2, err, sizeof err), 0);
    snprintf(path, sizeof path, "%s", tfevents_path(t));
    cr_assert_eq(tfevents_close(t, err, sizeof err), 0, "%s", err);

    char host[256] = "", want[600];
    gethostname(host, sizeof host);
    snprintf(want, sizeof want, "%s/events.out.tfevents.", dir);
    cr_assert(strncmp(path, want, strlen(want)) == 0, "%s", path);
    char tail[300];
    snprintf(tail, sizeof tail, ".%s.%ld", host, (long)getpid());
    cr_assert(strstr(path, tail), "%s ends with <host>.<pid>", path);

    event ev[8];
    int n = 0;
    cr_assert(read_events(path, ev, 8, &n), "framing and CRCs");
    cr_assert_eq(n, 3);
    cr_assert_str_eq(ev[0].version, "brain.Event:2");
    cr_assert_gt(ev[0].wall_time, 1.6e9);
    cr_assert_eq(ev[1].wall_time, 1700000000.125);
    cr_assert_eq(ev[1].step, 1);
    cr_assert_eq(ev[2].step, (int64_t)1 << 40);
    for (int k = 0; k < 3; k++) {
        cr_assert_eq(ev[1].nv, 3);
        cr_assert_str_eq(ev[1].tag[k], tags[k]);
        cr_assert_eq(ev[1].value[k], (float)v1[k]);
        cr_assert_eq(ev[2].value[k], (float)v2[k]);
    }
    /* one flipped bit in the last record's data: the reader must see it */
    FILE *f = fopen(path, "r+b");
    cr_assert(f);
    cr_assert_eq(fseek(f, -6, SEEK_END), 0);
    int c = fgetc(f);
    cr_assert_eq(fseek(f, -6, SEEK_END), 0);
    fputc(c ^ 0x10, f);
    fclose(f);
    cr_assert(!read_events(path, ev, 8, &n), "a corrupt record fails its CRC");
    cr_assert_eq(n, 2, "the records before it still read");
    unlink(path);
    rmdir(dir);
}

/* ---- the sink list ----------------------------------------------------------------------------
 */

typedef struct {
    int steps, epochs, closes;
    int fail_at_step; /* the step call that fails (1-based), 0 never */
} fake;

static int fake_step(void *self, const sink_step *r, char *err, size_t errlen) {
    fake *f = self;
    (void)r;
    if (++f->steps == f->fail_at_step) {
        snprintf(err, errlen, "disk on fire");
        return -1;
    }
    return 0;
}

static int fake_epoch(void *self, const sink_epoch *r, char *err, size_t errlen) {
    (void)r, (void)err, (void)errlen;
    ((fake *)self)->epochs++;
    return 0;
}

static int fake_close(void *self, bool ok, char *err, size_t errlen) {
    (void)ok, (void)err, (void)errlen;
    ((fake *)self)->closes++;
    return 0;
}

static const metric_sink_ops fake_ops = {
    .name = "fake", .step = fake_step, .epoch = fake_epoch, .close = fake_close};

static int failing_open(const sink_run *run, metric_sink *out, char *err, size_t errlen) {
    (void)run, (void)out;
    snprintf(err, errlen, "server unreachable");
    return -1;
}

static char warned[4][512];
static int nwarned;

static void collect_warning(void *ctx, const char *msg) {
    (void)ctx;
    if (nwarned < 4) snprintf(warned[nwarned++], sizeof warned[0], "%s", msg);
}

Test(tracking, failing_sink_is_warned_about_once_and_disabled) {
    nwarned = 0;
    fake good = {0}, bad = {.fail_at_step = 2};
    metric_sinks *l = metric_sinks_new(collect_warning, NULL);
    metric_sinks_add(l, (metric_sink){&fake_ops, &bad});
    metric_sinks_add(l, (metric_sink){&fake_ops, &good});
    metric_sinks_open(l, "mlflow", failing_open, &(sink_run){0});
    cr_assert_eq(nwarned, 1, "a failed open is warned about");
    cr_assert(strstr(warned[0], "mlflow: server unreachable"), "%s", warned[0]);
    cr_assert_eq(metric_sinks_active(l), 2, "and left out");
    epoch_row row = {.epoch = 1, .n_lr = 3};
    for (int s = 0; s < 5; s++) metric_sinks_step(l, &(sink_step){.step = s});
    metric_sinks_epoch(l, &(sink_epoch){.row = &row});
    cr_assert_eq(good.steps, 5, "the other sink gets every record");
    cr_assert_eq(good.epochs, 1);
    cr_assert_eq(bad.steps, 2, "no calls after the failure");
    cr_assert_eq(bad.epochs, 0);
    cr_assert_eq(bad.closes, 1, "a failed sink is closed at once");
    cr_assert_eq(nwarned, 2);
    cr_assert(strstr(warned[1], "fake: disk on fire; fake is off for the rest of this run"), "%s",
              warned[1]);
    cr_assert_eq(metric_sinks_active(l), 1);
    metric_sinks_close(l, true);
    cr_assert_eq(good.closes, 1);
    cr_assert_eq(bad.closes, 1, "closed once only");
}

Test(tracking, sink_warning_reaches_the_pub_socket) {
    char dir[] = "/tmp/yolo-sinkpub-XXXXXX", err[512];
    cr_assert(mkdtemp(dir));
    telemetry *t = telemetry_open(dir, &(telemetry_opts){0}, err, sizeof err);
    cr_assert(t, "%s", err);
    telemetry_client *c = telemetry_client_open(dir, NULL, err, sizeof err);
    cr_assert(c, "%s", err);
    cr_assert_eq(telemetry_client_subscribe(c, err, sizeof err), 0, "%s", err);
    for (int i = 0; i < 500 && telemetry_subscribers(t) == 0; i++) {
        telemetry_poll(t, err, sizeof err);
        usleep(10000);
    }
    cr_assert_gt(telemetry_subscribers(t), 0, "subscription seen");
    fake bad = {.fail_at_step = 1};
    metric_sinks *l = metric_sinks_new(metric_sink_warn_telemetry, t);
    metric_sinks_add(l, (metric_sink){&fake_ops, &bad});
    metric_sinks_step(l, &(sink_step){0});
    char *ev = NULL;
    for (int i = 0; i < 50 && !ev; i++) {
        ev = telemetry_client_next_event(c, 100, err, sizeof err);
        if (ev && !strstr(ev, "\"warning\"")) free(ev), ev = NULL;
    }
    cr_assert(ev, "a warning event arrives");
    cr_assert(strstr(ev, "fake: disk on fire"), "%s", ev);
    free(ev);
    metric_sinks_close(l, false);
    telemetry_client_close(c);
    telemetry_close(t);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}

/* ---- a training run ---------------------------------------------------------------------------
 */

/* 2 epochs of yolov8n on 32 synthetic 64 px images into dir/r; extra arguments appended. */
static int train_tiny(const char *dir, const char *extra) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "\"$YOLO_COORD\" data synth out=%s/s.h5 train=32 val=20 imgsz=64 classes=2 seed=0 "
             ">/dev/null",
             dir);
    cr_assert_eq(system(cmd), 0, "synth");
    snprintf(cmd, sizeof cmd,
             "timeout 240 \"$YOLO_COORD\" train data=%s/s.h5 model=yolov8n.yaml epochs=2 "
             "imgsz=64 batch=8 workers=1 threads=1 loader_threads=1 project=%s name=r %s "
             "> %s/log.txt 2>&1",
             dir, dir, extra, dir);
    return system(cmd);
}

/* results.csv as a header and rows of numbers. */
static int read_csv(const char *path, char names[][48], int *ncol, double rows[][20]) {
    FILE *f = fopen(path, "r");
    cr_assert(f, "%s", path);
    char line[2048];
    cr_assert(fgets(line, sizeof line, f));
    *ncol = 0;
    for (char *tok = strtok(line, ",\n"); tok && *ncol < 20; tok = strtok(NULL, ",\n"))
        snprintf(names[(*ncol)++], 48, "%s", tok);
    int n = 0;
    while (n < 8 && fgets(line, sizeof line, f)) {
        int k = 0;
        for (char *tok = strtok(line, ",\n"); tok && k < 20; tok = strtok(NULL, ",\n"))
            rows[n][k++] = strtod(tok, NULL);
        cr_assert_eq(k, *ncol);
        n++;
    }
    fclose(f);
    return n;
}

static void rm_rf(const char *dir) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}

/* Decodes an image file of the run (PNG or JPEG) and checks its size and that it is not blank. */
static void check_image(const char *run, const char *file, int want_w, int want_h) {
    char path[700], err[256];
    snprintf(path, sizeof path, "%s/%s", run, file);
    FILE *f = fopen(path, "rb");
    cr_assert(f, "%s written", path);
    static uint8_t buf[8 << 20];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    uint8_t *rgb = NULL;
    int h = 0, w = 0, enc = image_sniff_encoding(buf, n);
    cr_assert(enc, "%s: PNG or JPEG", file);
    cr_assert_eq(image_decode(buf, n, enc, 0, 0, &rgb, &h, &w, err, sizeof err), 0, "%s: %s", file,
                 err);
    if (want_w) cr_assert(w == want_w && h == want_h, "%s: %dx%d", file, w, h);
    size_t ink = 0;
    for (size_t i = 0; i < (size_t)w * h; i++)
        ink += rgb[3 * i] < 200 || rgb[3 * i + 1] < 200 || rgb[3 * i + 2] < 200;
    cr_assert_gt(ink, (size_t)w * h / 200, "%s is not blank (%zu dark pixels)", file, ink);
    free(rgb);
}

Test(tracking, training_run_writes_events_and_charts, .timeout = 300) {
    char dir[] = "/tmp/yolo-track-XXXXXX", run[600], path[700];
    cr_assert(mkdtemp(dir));
    cr_assert_eq(train_tiny(dir, ""), 0, "training failed: see %s/log.txt", dir);
    snprintf(run, sizeof run, "%s/r", dir);
    /* TensorBoard: per epoch every results.csv column but epoch, at step = epoch */
    char names[20][48];
    double rows[8][20];
    int ncol = 0;
    snprintf(path, sizeof path, "%s/results.csv", run);
    int nrow = read_csv(path, names, &ncol, rows);
    cr_assert_eq(nrow, 2);
    event_file(run, path, sizeof path);
    static event ev[256];
    int n = 0;
    cr_assert(read_events(path, ev, 256, &n), "framing and CRCs");
    cr_assert_str_eq(ev[0].version, "brain.Event:2");
    int epochs_seen = 0, steps_seen = 0;
    for (int i = 1; i < n; i++) {
        if (ev[i].nv > 0 && strcmp(ev[i].tag[0], "step/box_loss") == 0) {
            steps_seen++;
            cr_assert_eq(ev[i].step, steps_seen, "global steps 1, 2, ...");
            cr_assert_eq(ev[i].nv, 6);
            continue;
        }
        int e = (int)ev[i].step;
        cr_assert(e >= 1 && e <= nrow, "epoch step %d", e);
        cr_assert_eq(ev[i].nv, ncol - 1, "every column but epoch");
        for (int k = 0; k < ev[i].nv; k++) {
            cr_assert_str_eq(ev[i].tag[k], names[k + 1]);
            double want = rows[e - 1][k + 1], got = ev[i].value[k];
            cr_assert(fabs(got - want) <= 1e-5 + 1e-5 * fabs(want), "%s epoch %d: %g vs csv %g",
                      names[k + 1], e, got, want);
        }
        epochs_seen++;
    }
    cr_assert_eq(epochs_seen, 2);
    cr_assert_eq(steps_seen, 2 * 4, "32 images / batch 8, 2 epochs");
    /* charts */
    check_image(run, "results.png", 2400, 1200);
    check_image(run, "labels.jpg", 1600, 1600);
    check_image(run, "PR_curve.png", 2250, 1500);
    check_image(run, "F1_curve.png", 2250, 1500);
    check_image(run, "P_curve.png", 2250, 1500);
    check_image(run, "R_curve.png", 2250, 1500);
    check_image(run, "confusion_matrix.png", 3000, 2250);
    check_image(run, "confusion_matrix_normalized.png", 3000, 2250);
    /* 20 val images: mosaics of 16 and 4 (grid 4 and 2) of 64 px tiles */
    check_image(run, "val_batch0_labels.jpg", 256, 256);
    check_image(run, "val_batch0_pred.jpg", 256, 256);
    check_image(run, "val_batch1_labels.jpg", 128, 128);
    check_image(run, "val_batch1_pred.jpg", 128, 128);
    snprintf(path, sizeof path, "%s/val_batch2_labels.jpg", run);
    cr_assert(access(path, F_OK) != 0, "no third mosaic for 20 images");
    rm_rf(dir);
}

Test(tracking, tensorboard_reads_the_events, .timeout = 600) {
    char py[1100], reason[1400];
    if (!test_pyenv_python("test", py, sizeof py, reason, sizeof reason))
        cr_skip_test("%s", reason);
    char dir[] = "/tmp/yolo-tbread-XXXXXX", run[600], path[700], cmd[4096];
    cr_assert(mkdtemp(dir));
    cr_assert_eq(train_tiny(dir, "plots=False"), 0, "training failed: see %s/log.txt", dir);
    snprintf(run, sizeof run, "%s/r", dir);
    snprintf(path, sizeof path, "%s/results.png", run);
    cr_assert(access(path, F_OK) != 0, "plots=False draws no charts");
    /* tensorboard's own loader (with its simple_value -> tensor migration): "tag step value" */
    snprintf(cmd, sizeof cmd,
             "%s - %s > %s/tb.txt 2>&1 <<'EOF'\n"
             "import sys, glob\n"
             "from tensorboard.backend.event_processing.event_file_loader import EventFileLoader\n"
             "from tensorboard.util import tensor_util\n"
             "f, = glob.glob(sys.argv[1] + '/events.out.tfevents.*')\n"
             "for e in EventFileLoader(f).Load():\n"
             "    if e.HasField('file_version'): print('version', e.file_version)\n"
             "    for v in e.summary.value:\n"
             "        x = tensor_util.make_ndarray(v.tensor).item()\n"
             "        print(v.tag, e.step, repr(x))\n"
             "EOF",
             py, run, dir);
    cr_assert_eq(system(cmd), 0, "tensorboard reader failed: see %s/tb.txt", dir);
    char names[20][48];
    double rows[8][20];
    int ncol = 0;
    snprintf(path, sizeof path, "%s/results.csv", run);
    int nrow = read_csv(path, names, &ncol, rows);
    snprintf(path, sizeof path, "%s/tb.txt", dir);
    FILE *f = fopen(path, "r");
    cr_assert(f);
    char line[512], tag[128];
    int matched = 0, steps = 0, version = 0;
    while (fgets(line, sizeof line, f)) {
        long long step;
        double v;
        if (strncmp(line, "version brain.Event:2", 21) == 0) {
            version++;
            continue;
        }
        cr_assert_eq(sscanf(line, "%127s %lld %lf", tag, &step, &v), 3, "%s", line);
        if (strncmp(tag, "step/", 5) == 0) {
            steps++;
            continue;
        }
        for (int k = 1; k < ncol; k++)
            if (strcmp(tag, names[k]) == 0) {
                cr_assert(step >= 1 && step <= nrow);
                double want = rows[step - 1][k];
                cr_assert(fabs(v - want) <= 1e-5 + 1e-5 * fabs(want), "%s %lld: %g vs %g", tag,
                          step, v, want);
                matched++;
            }
    }
    fclose(f);
    cr_assert_eq(version, 1);
    cr_assert_eq(matched, nrow * (ncol - 1), "every column of every epoch");
    cr_assert_eq(steps, 8 * 6, "6 scalars per step");
    rm_rf(dir);
}

Test(tracking, a_failing_chart_sink_warns_and_training_goes_on, .timeout = 300) {
    char dir[] = "/tmp/yolo-badsink-XXXXXX", path[700], cmd[1400];
    cr_assert(mkdtemp(dir));
    /* results.png cannot be written: a directory stands in its place (exist_ok reuses r/) */
    snprintf(path, sizeof path, "%s/r/results.png/x", dir);
    cr_assert_eq(system((snprintf(cmd, sizeof cmd, "mkdir -p %s", path), cmd)), 0);
    cr_assert_eq(train_tiny(dir, "exist_ok=True"), 0, "training must succeed: see %s/log.txt", dir);
    for (int k = 0; k < 2; k++) {
        snprintf(cmd, sizeof cmd,
                 "grep -c 'charts: .*results.png.*charts is off for the rest of this run' "
                 "%s/%s | grep -qx 1",
                 dir, k ? "r/train.log" : "log.txt");
        cr_assert_eq(system(cmd), 0, "one warning in %s", k ? "train.log" : "the terminal output");
    }
    char names[20][48];
    double rows[8][20];
    int ncol = 0;
    snprintf(path, sizeof path, "%s/r/results.csv", dir);
    cr_assert_eq(read_csv(path, names, &ncol, rows), 2, "results.csv complete");
    snprintf(path, sizeof path, "%s/r/confusion_matrix.png", dir);
    cr_assert(access(path, F_OK) != 0, "the disabled sink drew nothing more");
    rm_rf(dir);
}
