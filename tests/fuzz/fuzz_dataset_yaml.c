/* An Ultralytics dataset yaml over a tiny images/labels folder, through the pack cache's
 * fingerprint and the packer itself: a one-line error, or a dataset file that the reader opens.
 * Inputs naming paths outside the folder (absolute, "..") are skipped: the packer would walk them
 * (that is what it is for), and the fuzzer is not to read the machine's files. */
#include "dataio/dataset.h"
#include "dataio/pack.h"
#include "tests/fuzz/fuzz_common.h"

#include <ctype.h>
#include <spng.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void write_png(const char *path) {
    uint8_t rgb[8 * 8 * 3];
    for (int i = 0; i < (int)sizeof rgb; i++) rgb[i] = (uint8_t)(i * 37);
    spng_ctx *c = spng_ctx_new(SPNG_CTX_ENCODER);
    struct spng_ihdr ih = {
        .width = 8, .height = 8, .bit_depth = 8, .color_type = SPNG_COLOR_TYPE_TRUECOLOR};
    FILE *f = fopen(path, "wb");
    if (!c || !f || spng_set_png_file(c, f) || spng_set_ihdr(c, &ih) ||
        spng_encode_image(c, rgb, sizeof rgb, SPNG_FMT_PNG, SPNG_ENCODE_FINALIZE)) {
        fprintf(stderr, "fuzz: cannot write %s\n", path);
        abort();
    }
    spng_ctx_free(c);
    fclose(f);
}

static void layout(void) {
    const char *dirs[] = {"ds",        "ds/images",       "ds/images/train", "ds/images/val",
                          "ds/labels", "ds/labels/train", "ds/labels/val"};
    for (size_t i = 0; i < sizeof dirs / sizeof *dirs; i++) mkdir(fuzz_path(dirs[i]), 0700);
    write_png(fuzz_path("ds/images/train/a.png"));
    write_png(fuzz_path("ds/images/val/b.png"));
    const char *lab = "0 0.5 0.5 0.25 0.25\n1 0.2 0.3 0.1 0.1\n";
    fuzz_write("ds/labels/train/a.txt", (const uint8_t *)lab, strlen(lab));
    fuzz_write("ds/labels/val/b.txt", (const uint8_t *)lab, strlen(lab));
    const char *list = "images/train/a.png\n";
    fuzz_write("ds/train.txt", (const uint8_t *)list, strlen(list));
}

/* Only relative paths inside the folder: no "..", and every '/' follows a name character. */
static int stays_inside(const uint8_t *d, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (d[i] == '.' && i + 1 < n && d[i + 1] == '.') return 0;
        if (d[i] == '~') return 0;
        if (d[i] == '/' && (i == 0 || !(isalnum(d[i - 1]) || strchr("_-.", d[i - 1])))) return 0;
        if (d[i] == '\\') return 0; /* a yaml escape could spell either */
    }
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static int ready;
    if (!ready) fuzz_init(), layout(), ready = 1;
    if (!stays_inside(data, size)) return 0;
    char yaml[512], out[512], err[512] = "", hex[65];
    snprintf(yaml, sizeof yaml, "%s", fuzz_write("ds/data.yaml", data, size));
    snprintf(out, sizeof out, "%s", fuzz_path("out.h5"));
    if (pack_ultralytics_fingerprint(yaml, hex, err, sizeof err) != 0) fuzz_check_one_line(err);
    pack_stats st;
    if (pack_ultralytics(yaml, out, false, &st, err, sizeof err) != 0) {
        fuzz_check_one_line(err);
        return 0;
    }
    dataset *ds = dataset_open(out, err, sizeof err);
    if (!ds) {
        fprintf(stderr, "fuzz: packed %s does not open: %s\n", out, err);
        __builtin_trap();
    }
    dataset_close(ds);
    unlink(out);
    return 0;
}
