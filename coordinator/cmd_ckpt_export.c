/* coordinator ckpt export <run> [<version>] format=safetensors|h5 out=FILE: a version's EMA
 * weights, under Ultralytics state_dict names in PyTorch layout, for other tools. The version is
 * verified first; a damaged one is not exported. */
#include "coordinator/ckpt_cli.h"

#include "common/log.h"
#include "coordinator/ckpt_weights.h"
#include "coordinator/model_weights.h"
#include "coordinator/safetensors.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const cli_spec export_spec = {
    "ckpt export",
    "<run> [<version>] format=safetensors|h5 out=FILE",
    "Writes the EMA weights of a version (default: best) - what Ultralytics' best.pt holds as\n"
    "'ema' - under Ultralytics state_dict names in PyTorch layout (OIHW convolutions), BN\n"
    "running statistics and num_batches_tracked included:\n"
    "  format=safetensors  for the safetensors package (torch, numpy); its metadata holds the\n"
    "                      model yaml, class names, source version and hashes.\n"
    "                      scripts/safetensors_to_ultralytics.py turns it into an Ultralytics "
    ".pt.\n"
    "  format=h5           a yolo-cluster weights file (inference only, no training state):\n"
    "                      `train model=FILE` fine-tunes from it (docs/checkpoints.md).\n"
    "The version is verified first (every sha256); a damaged version is not exported (exit 1,\n"
    "naming each bad tensor). The file is written atomically (temporary name, then renamed).\n"
    "<version>: v3, best, last, a tag; or give <run>:v3, <run>@tag, or a version file.",
    "",
    "format,out",
    1,
    2};

static void report_bad(void *ctx, const char *line) {
    (void)ctx;
    log_error("%s", line);
}

static int write_safetensors(const char *out, const model_weights *w, char *err, size_t errlen) {
    char nc[16], imgsz[16];
    snprintf(nc, sizeof nc, "%d", w->nc);
    snprintf(imgsz, sizeof imgsz, "%d", w->imgsz);
    const safetensors_meta meta[] = {
        {"format", "pt"}, /* what transformers / safetensors.torch expect */
        {"producer", "yolo-cluster ckpt export"},
        {"source", w->source},
        {"source_content_sha256", w->content_sha256},
        {"model", w->model},
        {"model_yaml", w->model_yaml},
        {"nc", nc},
        {"imgsz", imgsz},
        {"names", w->names},
        {"dataset_sha256", w->dataset_sha256},
    };
    return safetensors_write(out, w->t, w->n, meta, (int)(sizeof meta / sizeof *meta), err, errlen);
}

static int write_h5(const char *out, model_weights *w, char *err, size_t errlen) {
    ckpt_weights_info info = {.nc = w->nc, .imgsz = w->imgsz};
    char source[4600];
    snprintf(source, sizeof source, "%s (content sha256 %s)", w->source, w->content_sha256);
    info.source = source;
    info.model = w->model;
    info.model_yaml = w->model_yaml;
    info.names = w->names;
    snprintf(info.dataset_sha256, sizeof info.dataset_sha256, "%s", w->dataset_sha256);
    ckpt_tensor *t = xcalloc((size_t)w->n + 1, sizeof *t);
    for (int i = 0; i < w->n; i++) {
        t[i] = w->t[i];
        char name[sizeof t[i].name + 8];
        snprintf(name, sizeof name, "model/%s", w->t[i].name);
        if (strlen(name) >= sizeof t[i].name) {
            free(t);
            return errf(err, errlen, "tensor name too long: %.60s...", name);
        }
        memcpy(t[i].name, name, strlen(name) + 1);
    }
    int rc = ckpt_weights_write(out, &info, t, w->n, err, errlen);
    free(t);
    return rc;
}

int ckpt_cmd_export(int argc, char **argv) {
    cli_args a;
    int rc = cli_parse(&export_spec, argc, argv, &a);
    if (rc || a.help) return rc ? rc : cli_help(&export_spec);
    const char *format = kv_get(&a.kv, "format"), *out = kv_get(&a.kv, "out");
    if (!format || (strcmp(format, "safetensors") && strcmp(format, "h5")))
        rc = cli_usage_error(&export_spec, "format=%s: expected safetensors or h5",
                             format ? format : "(missing)");
    else if (!out || !*out)
        rc = cli_usage_error(&export_spec, "out=FILE is required");
    ckpt_ref ref;
    if (rc == 0) rc = ckpt_cli_resolve(&export_spec, &a, 0, true, "best", &ref);
    if (rc) {
        cli_free(&a);
        return rc;
    }
    char err[1200];
    model_weights w;
    if (model_weights_load(ref.path, &w, report_bad, NULL, err, sizeof err) != 0) {
        log_error("%s: not exported: %s", ref.label, err);
        cli_free(&a);
        return 1;
    }
    if (!strcmp(format, "safetensors"))
        rc = write_safetensors(out, &w, err, sizeof err);
    else
        rc = write_h5(out, &w, err, sizeof err);
    if (rc)
        log_error("%s", err);
    else
        printf("%s -> %s (%s: %d tensors, EMA weights, nc %d, %s)\n", ref.label, out, format, w.n,
               w.nc, w.model);
    model_weights_free(&w);
    cli_free(&a);
    return rc ? 1 : 0;
}
