/* predict: a version's boxes on images (a file, a folder, or a dataset split) as JSON lines, and
 * with save=True the images with their boxes drawn. */
#include "common/log.h"
#include "coordinator/cli.h"
#include "lifecycle/commands.h"
#include "lifecycle/eval_args.h"
#include "lifecycle/eval_report.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

static const cli_spec spec = {
    .name = "predict",
    .usage = "model=<run|run:vN|run@tag|file> source=<image|folder|h5|yaml> [split=val]\n"
             "       [conf=0.25] [iou=0.7] [max_det=300] [imgsz=<training imgsz>] [batch=1]\n"
             "       [save=False] [out=<file.jsonl>|-] [nms=None] [device=cpu] [threads=0]\n"
             "       [workers=2] [project=runs/detect] [name=predict] [exist_ok=False]",
    .help = "Boxes of a version on images, as JSON lines (file, index, class, name, confidence,\n"
            "xyxy in original pixels) into out= (default project/name/predictions.jsonl; - for\n"
            "stdout); save=True also draws them on the images in project/name. Image files are\n"
            "predicted one at a time, each in its own smallest canvas of multiples of 32; a\n"
            "dataset split is cut into validation batches of `batch` images (2 x the training\n"
            "batch gives the boxes of the validation during training).",
    .keys = "model,source,split,save,out," EVAL_ARGS_KEYS,
};

#define USAGE_ERR(...) cli_usage_error(&spec, __VA_ARGS__)

static int write_outputs(const char *dir, const char *out, bool save, const eval_model *em,
                         eval_source *src, const eval_result *r, float conf) {
    char err[2048], path[PATH_MAX + 32];
    FILE *f = stdout;
    if (!out || strcmp(out, "-")) {
        snprintf(path, sizeof path, "%s", out ? out : "");
        if (!out) snprintf(path, sizeof path, "%s/predictions.jsonl", dir);
        if (!(f = fopen(path, "w"))) {
            log_error("%s: %s", path, strerror(errno));
            return 1;
        }
    }
    eval_write_jsonl(f, em, src, r, conf);
    if (f != stdout && fclose(f) != 0) {
        log_error("%s: %s", path, strerror(errno));
        return 1;
    }
    if (f != stdout) printf("%d images, predictions in %s\n", r->n, path);
    for (int i = 0; save && i < r->n; i++)
        if (eval_write_annotated(dir, em, src, r, i, conf, path, sizeof path, err, sizeof err)) {
            log_error("%s", err);
            return 1;
        }
    if (save) printf("Results saved to %s\n", dir);
    return 0;
}

int cmd_predict(int argc, char **argv) {
    cli_args c;
    if (cli_parse(&spec, argc, argv, &c) != 0) return 2;
    if (c.help) return cli_free(&c), cli_help(&spec);
    kv_args a = c.kv;
    char err[2048];
    eval_args ea;
    bool save = false;
    const char *model = kv_get(&a, "model"), *source = kv_get(&a, "source"),
               *split = kv_get(&a, "split"), *out = kv_get(&a, "out");
    int rc = 0;
    if (eval_args_parse(&a, 1, 0.25, "predict", &ea, err, sizeof err) ||
        kv_get_bool(&a, "save", false, &save, err, sizeof err))
        rc = USAGE_ERR("%s", err);
    else if (!model || !source)
        rc = USAGE_ERR("model= and source= are required");
    eval_model em = {0};
    if (rc == 0 && eval_model_load(model, &ea.dev, &em, err, sizeof err) != 0)
        rc = 2, log_error("%s", err);
    eval_source src = {0};
    if (rc == 0 && eval_source_open(source, split, &src, err, sizeof err) != 0)
        rc = 2, log_error("%s", err);
    eval_opts o;
    eval_result r = {0};
    char dir[PATH_MAX] = "";
    if (rc == 0) {
        eval_args_opts(&ea, &em, false, &o);
        if (eval_run(&em, &src, &o, &r, err, sizeof err) != 0) {
            log_error("%s", err);
            rc = 1;
        }
    }
    bool need_dir = save || !out;
    if (rc == 0 && need_dir && eval_args_out_dir(&ea, dir, sizeof dir, err, sizeof err) != 0)
        rc = 1, log_error("%s", err);
    if (rc == 0) rc = write_outputs(dir, out, save, &em, &src, &r, o.conf);
    if (rc == 0) eval_print_speed(&r, false, src.ds ? o.batch : 1);
    eval_result_free(&r);
    eval_source_close(&src);
    eval_model_free(&em);
    cli_free(&c);
    return rc;
}
