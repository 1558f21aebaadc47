/* val: a version's validation metrics on a dataset split, as `yolo val` prints them. */
#include "common/log.h"
#include "coordinator/cli.h"
#include "lifecycle/commands.h"
#include "lifecycle/eval_args.h"
#include "lifecycle/eval_report.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static const cli_spec spec = {
    .name = "val",
    .usage = "model=<run|run:vN|run@tag|version or weights file> [data=<h5|yaml>] [split=val]\n"
             "       [imgsz=<training imgsz>] [batch=16] [conf=0.001] [iou=0.7] [max_det=300]\n"
             "       [save_json=False] [plots=True] [nms=None] [device=cpu] [threads=0]\n"
             "       [workers=2] [project=runs/detect] [name=val] [exist_ok=False]",
    .help = "Validation metrics of a version on a dataset split, as `yolo val` prints them (all\n"
            "classes, then each class), the speed per image and images/s. data defaults to the\n"
            "dataset the version was trained on; batch=2 x the training batch gives exactly the\n"
            "numbers of the validation during training. save_json=True writes predictions.json\n"
            "(COCO format), plots=True the PR/F1/P/R curves, confusion matrices and mosaics, into\n"
            "project/name.",
    .keys = "model,data,split,save_json,plots," EVAL_ARGS_KEYS,
};

#define USAGE_ERR(...) cli_usage_error(&spec, __VA_ARGS__)

/* data=: given, else the training dataset when it is still there. */
static const char *data_of(kv_args *a, const eval_model *em) {
    const char *d = kv_get(a, "data");
    if (d) return d;
    return em->dataset[0] && access(em->dataset, R_OK) == 0 ? em->dataset : NULL;
}

int cmd_val(int argc, char **argv) {
    cli_args c;
    if (cli_parse(&spec, argc, argv, &c) != 0) return 2;
    if (c.help) return cli_free(&c), cli_help(&spec);
    kv_args a = c.kv;
    char err[2048];
    eval_args ea;
    bool save_json = false, plots = true;
    const char *model = kv_get(&a, "model"), *split = kv_get(&a, "split");
    int rc = 0;
    if (eval_args_parse(&a, 16, 0.001, "val", &ea, err, sizeof err) ||
        kv_get_bool(&a, "save_json", false, &save_json, err, sizeof err) ||
        kv_get_bool(&a, "plots", true, &plots, err, sizeof err))
        rc = USAGE_ERR("%s", err);
    else if (!model)
        rc = USAGE_ERR("model=<version> is required");
    eval_model em = {0};
    if (rc == 0 && eval_model_load(model, &ea.dev, &em, err, sizeof err) != 0)
        rc = 2, log_error("%s", err);
    const char *data = rc == 0 ? data_of(&a, &em) : NULL;
    if (rc == 0 && !data)
        rc = USAGE_ERR("data=<h5|yaml> is required (%s records no dataset that still exists)",
                       em.label);
    eval_source src = {0};
    if (rc == 0 && eval_source_open(data, split, &src, err, sizeof err) != 0)
        rc = 2, log_error("%s", err);
    if (rc == 0 && !eval_source_labelled(&src))
        rc = USAGE_ERR("data=%s: val needs a dataset with labels (an .h5 or a dataset yaml); "
                       "for images use predict",
                       data);
    eval_opts o;
    eval_result r = {0};
    char dir[PATH_MAX] = "";
    if (rc == 0) {
        eval_args_opts(&ea, &em, plots, &o);
        printf("val: %s (%s, %d classes) on %s [%s]: %d images, imgsz %d, batch %d\n", em.label,
               em.model, em.nc, src.path, split_name(src.split), src.n, o.imgsz, o.batch);
        if (eval_run(&em, &src, &o, &r, err, sizeof err) != 0) {
            log_error("%s", err);
            rc = 1;
        }
    }
    if (rc == 0) {
        eval_print_table(&em, &r);
        eval_print_speed(&r, true, o.batch);
        if ((save_json || plots) && eval_args_out_dir(&ea, dir, sizeof dir, err, sizeof err) != 0)
            rc = 1, log_error("%s", err);
    }
    if (rc == 0 && save_json) {
        char path[PATH_MAX + 32];
        snprintf(path, sizeof path, "%s/predictions.json", dir);
        if (eval_write_coco_json(path, &src, &r, err, sizeof err) != 0)
            rc = 1, log_error("%s", err);
        else
            printf("Saving %s...\n", path);
    }
    if (rc == 0 && plots && eval_write_plots(dir, &em, &src, &r, err, sizeof err) != 0)
        rc = 1, log_error("plots: %s", err);
    if (rc == 0 && dir[0]) printf("Results saved to %s\n", dir);
    eval_result_free(&r);
    eval_source_close(&src);
    eval_model_free(&em);
    cli_free(&c);
    return rc;
}
