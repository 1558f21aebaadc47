/* coordinator data pack|synth|info|verify: build and inspect dataset files. */
#include "common/fs_check.h"
#include "common/kv.h"
#include "common/log.h"
#include "coordinator/commands.h"
#include "dataio/dataset.h"
#include "dataio/dataset_write.h"
#include "dataio/decode.h"
#include "dataio/pack.h"

#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void data_usage(FILE *f) {
    fprintf(f, "usage: coordinator data <subcommand> ...\n"
               "  pack data=<dataset.yaml|file.h5> out=<file.h5> [skip_bad=False]\n"
               "  pack coco=<instances.json> images=<dir> out=<file.h5> [val_coco=<json>]\n"
               "       [val_images=<dir>] [test_coco=<json>] [test_images=<dir>] [skip_bad=False]\n"
               "       either form: [imgsz=<n> [store=source|raw|jpeg|png] [quality=95]] stores\n"
               "       the images resized for training at imgsz\n"
               "  synth out=<file.h5> [train=2000] [val=400] [test=0] [imgsz=256] [classes=3] "
               "[seed=0]\n"
               "        [brightness=1] [object_scale=1] [background=plain|stripes]   (a shifted "
               "look)\n"
               "  info <file.h5>\n"
               "  verify <file.h5>\n");
}

static void print_stats(const char *out, const pack_stats *st) {
    printf("wrote %s\n", out);
    for (int s = 0; s < SPLIT_COUNT; s++)
        if (st->images[s])
            printf("  %-5s %lld images, %lld boxes\n", split_name((split_id)s),
                   (long long)st->images[s], (long long)st->boxes[s]);
    printf("  background images %lld, clipped boxes %lld, dropped boxes %lld, crowd boxes %lld, "
           "duplicate images %lld, skipped images %lld\n",
           (long long)st->background, (long long)st->clipped, (long long)st->dropped,
           (long long)st->crowd, (long long)st->duplicates, (long long)st->skipped);
    printf("  sha256 %s\n", st->hash);
}

/* Bad input (arguments, or the files they name) prints one line and gives exit code 2. */
#define USAGE_ERR(...) (log_error(__VA_ARGS__), 2)

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

/* imgsz= / store= / quality=: 0 in store->imgsz when images are kept as given. */
static int parse_store(kv_args *a, pack_store *store, char *err, size_t errlen) {
    long imgsz, quality;
    const char *as = kv_get(a, "store");
    if (kv_get_long(a, "imgsz", 0, &imgsz, err, errlen) ||
        kv_get_long(a, "quality", 95, &quality, err, errlen))
        return -1;
    store->imgsz = (int)imgsz, store->quality = (int)quality, store->as = 0;
    if (!imgsz && (as || kv_get(a, "quality")))
        return errf(err, errlen, "store= and quality= need imgsz=<n>");
    if (imgsz && (imgsz < 32 || imgsz > 8192))
        return errf(err, errlen, "imgsz=%ld: expected 32..8192", imgsz);
    if (quality < 1 || quality > 100)
        return errf(err, errlen, "quality=%ld: expected 1..100", quality);
    if (!as || !strcmp(as, "source"))
        store->as = 0;
    else if (!strcmp(as, "raw"))
        store->as = IMG_RAW_RGB;
    else if (!strcmp(as, "jpeg"))
        store->as = IMG_JPEG;
    else if (!strcmp(as, "png"))
        store->as = IMG_PNG;
    else
        return errf(err, errlen, "store=%s: expected source, raw, jpeg or png", as);
    return 0;
}

/* out=: a file name whose folder exists and is writable, checked before any work. */
static int check_out(const char *cmd, const char *out) {
    if (!out) return USAGE_ERR("data %s: out=<file.h5> is required", cmd);
    struct stat sb;
    if (!out[0] || out[strlen(out) - 1] == '/' || (stat(out, &sb) == 0 && S_ISDIR(sb.st_mode)))
        return USAGE_ERR("data %s: out=%s: expected a file name", cmd, out);
    char *copy = xstrdup(out);
    const char *dir = dirname(copy);
    bool ok = dir_writable(dir);
    if (!ok)
        log_error("data %s: out=%s: folder %s does not exist or is not writable", cmd, out, dir);
    free(copy);
    return ok ? 0 : 2;
}

static int cmd_pack(kv_args *a) {
    char err[512];
    const char *out = kv_get(a, "out"), *data = kv_get(a, "data"), *coco = kv_get(a, "coco");
    bool skip_bad;
    pack_store store;
    if (kv_get_bool(a, "skip_bad", false, &skip_bad, err, sizeof err) != 0 ||
        parse_store(a, &store, err, sizeof err) != 0)
        return USAGE_ERR("data pack: %s", err);
    if (!data == !coco)
        return USAGE_ERR("data pack: give exactly one of data=<yaml|file.h5> or coco=<json>");
    if (check_out("pack", out) != 0) return 2;
    int from_h5 = data && ends_with(data, ".h5");
    if (from_h5 && !store.imgsz)
        return USAGE_ERR("data pack: data=%s is a dataset file already; give imgsz=<n> to store "
                         "its images resized",
                         data);
    /* a yaml or COCO source with imgsz=: pack as given into a temporary file, then resize */
    char full[1100];
    snprintf(full, sizeof full, "%s.full.h5", out);
    const char *first = store.imgsz ? full : out;
    pack_stats st;
    int rc = 0;
    if (data && !from_h5) {
        if (kv_check_unused(a, err, sizeof err) != 0) return USAGE_ERR("data pack: %s", err);
        rc = pack_ultralytics(data, first, skip_bad, &st, err, sizeof err);
    } else if (coco) {
        const char *json[SPLIT_COUNT] = {coco, kv_get(a, "val_coco"), kv_get(a, "test_coco")};
        const char *imgs[SPLIT_COUNT] = {kv_get(a, "images"), kv_get(a, "val_images"),
                                         kv_get(a, "test_images")};
        if (!imgs[0]) return USAGE_ERR("data pack: coco= needs images=<dir>");
        for (int s = 1; s < SPLIT_COUNT; s++)
            if (!imgs[s]) imgs[s] = imgs[0];
        if (kv_check_unused(a, err, sizeof err) != 0) return USAGE_ERR("data pack: %s", err);
        rc = pack_coco(json, imgs, first, skip_bad, &st, err, sizeof err);
    } else if (kv_check_unused(a, err, sizeof err) != 0) {
        return USAGE_ERR("data pack: %s", err);
    }
    if (rc == 0 && store.imgsz) {
        pack_stats found = st;
        rc = pack_resized(from_h5 ? data : full, out, &store, &st, err, sizeof err);
        if (!from_h5) {
            remove(full);
            st.background = found.background, st.clipped = found.clipped;
            st.dropped = found.dropped, st.crowd = found.crowd;
            st.duplicates = found.duplicates, st.skipped = found.skipped;
        }
    }
    if (rc != 0) { /* the input could not be packed; nothing was written */
        log_error("data pack: %s", err);
        return 2;
    }
    print_stats(out, &st);
    return 0;
}

static int cmd_synth(kv_args *a) {
    char err[512];
    const char *out = kv_get(a, "out");
    long tr, va, te, imgsz, classes, seed;
    synth_style style = synth_style_default();
    const char *bg = kv_get(a, "background");
    if (bg && synth_background_parse(bg, &style.background) != 0)
        return USAGE_ERR("data synth: background=%s: expected plain or stripes", bg);
    if (kv_get_double(a, "brightness", 1, &style.brightness, err, sizeof err) ||
        kv_get_double(a, "object_scale", 1, &style.object_scale, err, sizeof err))
        return USAGE_ERR("data synth: %s", err);
    if (!(style.brightness > 0 && style.brightness <= 4))
        return USAGE_ERR("data synth: brightness=%g: expected (0, 4]", style.brightness);
    if (!(style.object_scale > 0 && style.object_scale <= 2.5))
        return USAGE_ERR("data synth: object_scale=%g: expected (0, 2.5]", style.object_scale);
    if (kv_get_long(a, "train", 2000, &tr, err, sizeof err) ||
        kv_get_long(a, "val", 400, &va, err, sizeof err) ||
        kv_get_long(a, "test", 0, &te, err, sizeof err) ||
        kv_get_long(a, "imgsz", 256, &imgsz, err, sizeof err) ||
        kv_get_long(a, "classes", 3, &classes, err, sizeof err) ||
        kv_get_long(a, "seed", 0, &seed, err, sizeof err) || kv_check_unused(a, err, sizeof err))
        return USAGE_ERR("data synth: %s", err);
    if (check_out("synth", out) != 0) return 2;
    if (tr < 1 || va < 0 || te < 0 || tr > 10000000 || va > 10000000 || te > 10000000)
        return USAGE_ERR("data synth: image counts must be train >= 1, val/test >= 0");
    if (imgsz < 32 || imgsz > 4096)
        return USAGE_ERR("data synth: imgsz=%ld: expected 32..4096", imgsz);
    if (classes < 1 || classes > 3)
        return USAGE_ERR("data synth: classes=%ld: expected 1..3", classes);
    int count[SPLIT_COUNT] = {(int)tr, (int)va, (int)te};
    pack_stats st;
    if (pack_synth_styled(out, count, (int)imgsz, (int)classes, (uint64_t)seed, &style, &st, err,
                          sizeof err)) {
        log_error("data synth: %s", err);
        return 1;
    }
    print_stats(out, &st);
    return 0;
}

static int cmd_info(const char *path) {
    char err[512];
    dataset *ds = dataset_open(path, err, sizeof err);
    if (!ds) {
        log_error("data info: %s", err);
        return 2;
    }
    int nc = dataset_num_classes(ds);
    int stored = dataset_stored_imgsz(ds);
    printf("%s\n  format version %d, %d classes\n  sha256 %s\n  source %s\n  created %s\n"
           "  packer %s\n",
           path, stored ? DATASET_FORMAT_VERSION : DATASET_FORMAT_VERSION_ORIGINAL, nc,
           dataset_hash(ds), dataset_source(ds), dataset_created(ds), dataset_packer_version(ds));
    if (stored)
        printf("  images stored at %d px (long side) as %s; sizes below are the originals\n",
               stored, dataset_stored_as(ds));
    int64_t *per_class = xcalloc((size_t)nc, sizeof *per_class);
    for (int s = 0; s < SPLIT_COUNT; s++) {
        if (!dataset_has_split(ds, (split_id)s)) continue;
        int n = dataset_split_size(ds, (split_id)s), hmin = 0, hmax = 0, wmin = 0, wmax = 0;
        int64_t bg = 0;
        memset(per_class, 0, (size_t)nc * sizeof *per_class);
        for (int i = 0; i < n; i++) {
            const float *lab;
            int nb, h, w;
            dataset_labels(ds, (split_id)s, i, &lab, &nb);
            dataset_image_size(ds, (split_id)s, i, &h, &w);
            bg += nb == 0;
            for (int b = 0; b < nb; b++) per_class[(int)lab[b * 5]]++;
            if (i == 0 || h < hmin) hmin = h;
            if (i == 0 || h > hmax) hmax = h;
            if (i == 0 || w < wmin) wmin = w;
            if (i == 0 || w > wmax) wmax = w;
        }
        printf("  %s: %d images (%lld background), %lld boxes, height %d..%d, width %d..%d\n",
               split_name((split_id)s), n, (long long)bg,
               (long long)dataset_split_boxes(ds, (split_id)s), hmin, hmax, wmin, wmax);
        printf("    boxes per class:");
        int shown = 0;
        for (int k = 0; k < nc; k++)
            if (per_class[k])
                printf("%s %d %s=%lld", shown++ ? "," : "", k, dataset_class_name(ds, k),
                       (long long)per_class[k]);
        printf("%s\n", shown ? "" : " none");
    }
    free(per_class);
    dataset_close(ds);
    return 0;
}

/* Re-reads every image: recomputes the content hash, decodes each image and checks its size and
 * boxes. Prints the first few problems and a summary; exit 1 when anything is wrong. */
static int cmd_verify(const char *path) {
    char err[512];
    if (access(path, R_OK) != 0) return USAGE_ERR("data verify: %s: file not found", path);
    dataset *ds = dataset_open(path, err, sizeof err); /* opens, or the file is damaged: 1 */
    if (!ds) {
        log_error("data verify: %s", err);
        return 1;
    }
    int nc = dataset_num_classes(ds), present[SPLIT_COUNT] = {0};
    char split_hex[SPLIT_COUNT][65] = {{0}};
    int64_t problems = 0, checked = 0;
    for (int s = 0; s < SPLIT_COUNT; s++) {
        if (!dataset_has_split(ds, (split_id)s)) continue;
        present[s] = 1;
        sha256_ctx *hc = sha256_begin();
        for (int i = 0; i < dataset_split_size(ds, (split_id)s); i++) {
            dataset_sample smp;
            char name[512] = "";
            if (dataset_read(ds, (split_id)s, i, &smp, err, sizeof err) != 0) {
                if (problems++ < 10) log_error("data verify: %s", err);
                continue;
            }
            checked++;
            dataset_hash_image(hc, smp.encoding, smp.height, smp.width, smp.bytes, smp.nbytes,
                               smp.labels, smp.nboxes);
            uint8_t *rgb = NULL;
            int h = smp.stored_h, w = smp.stored_w;
            char derr[256];
            const char *bad = NULL;
            if (image_decode(smp.bytes, smp.nbytes, smp.encoding, 0, 0, &rgb, &h, &w, derr,
                             sizeof derr) != 0)
                bad = derr;
            else if (h != smp.stored_h || w != smp.stored_w)
                bad = "decoded size differs from the stored size";
            for (int b = 0; !bad && b < smp.nboxes; b++) {
                const float *l = smp.labels + b * 5;
                if (!(l[0] >= 0 && l[0] < nc) || !(l[3] > 0 && l[4] > 0) ||
                    !(l[1] - l[3] / 2 >= -1e-5f && l[1] + l[3] / 2 <= 1 + 1e-5f &&
                      l[2] - l[4] / 2 >= -1e-5f && l[2] + l[4] / 2 <= 1 + 1e-5f))
                    bad = "box out of range";
            }
            if (bad && problems++ < 10) {
                dataset_filename(ds, (split_id)s, i, name, sizeof name);
                log_error("data verify: %s: %s image %d (%s): %s", path, split_name((split_id)s), i,
                          name, bad);
            }
            free(rgb);
            dataset_sample_free(&smp);
        }
        sha256_end(hc, split_hex[s]);
        if (strcmp(split_hex[s], dataset_split_hash(ds, (split_id)s)) != 0) {
            problems++;
            log_error("data verify: %s: split %s content hash mismatch (stored %.12s, computed "
                      "%.12s)",
                      path, split_name((split_id)s), dataset_split_hash(ds, (split_id)s),
                      split_hex[s]);
        }
    }
    const char **names = xcalloc((size_t)nc, sizeof *names);
    for (int k = 0; k < nc; k++) names[k] = dataset_class_name(ds, k);
    char hex[65];
    dataset_hash_file(hex, nc, names, (const char(*)[65])split_hex, present);
    free(names);
    if (strcmp(hex, dataset_hash(ds)) != 0) {
        problems++;
        log_error("data verify: %s: content hash mismatch (stored %s, computed %s)", path,
                  dataset_hash(ds), hex);
    }
    dataset_close(ds);
    if (problems) {
        log_error("data verify: %s: %lld problem(s)", path, (long long)problems);
        return 1;
    }
    printf("%s: OK, %lld images decode, sha256 %s\n", path, (long long)checked, hex);
    return 0;
}

int cmd_data(int argc, char **argv) {
    if (argc < 1 || !strcmp(argv[0], "help") || !strcmp(argv[0], "--help")) {
        data_usage(argc < 1 ? stderr : stdout);
        return argc < 1 ? 2 : 0;
    }
    const char *sub = argv[0];
    if (!strcmp(sub, "info") || !strcmp(sub, "verify")) {
        if (argc != 2) return USAGE_ERR("data %s: expected one file: data %s <file.h5>", sub, sub);
        return !strcmp(sub, "info") ? cmd_info(argv[1]) : cmd_verify(argv[1]);
    }
    if (strcmp(sub, "pack") && strcmp(sub, "synth")) {
        data_usage(stderr);
        return USAGE_ERR("data: unknown subcommand '%s'", sub);
    }
    kv_args a;
    char err[512];
    if (kv_parse(argc - 1, argv + 1, &a, err, sizeof err) != 0)
        return USAGE_ERR("data %s: %s", sub, err);
    int rc = !strcmp(sub, "pack") ? cmd_pack(&a) : cmd_synth(&a);
    kv_free(&a);
    return rc;
}
