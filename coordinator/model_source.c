/* The architecture and starting weights of a training run (model_source.h). */
#include "coordinator/model_source.h"

#include "common/log.h"
#include "common/model_file.h"
#include "common/protocol.h"
#include "common/sha256.h"
#include "coordinator/ckpt_store.h"
#include "coordinator/ckpt_weights.h"
#include "coordinator/model_weights.h"
#include "dataio/dataset.h"

#include <mpi.h>

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static bool ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

bool model_source_is_weights(const char *spec) {
    return ends_with(spec, ".h5") || ends_with(spec, ".pt");
}

bool model_source_default_imgsz(train_args *a, bool imgsz_given, char *from, size_t n) {
    if (n) from[0] = 0;
    if (imgsz_given || !model_source_is_weights(a->model)) return false;
    int s = model_weights_recorded_imgsz(a->model);
    if (s <= 0) return false;
    a->imgsz = s;
    snprintf(from, n, "%s", a->model);
    return true;
}

/* A top-level "scale:" line, or none. */
static bool has_scale_key(const char *text) {
    for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        if (!strncmp(p, "scale:", 6)) return true;
    return false;
}

/* text with "scale: <letter>" first when it has scales, no scale key, and name has the letter:
 * the text then builds the same model whatever name it goes by (a fine-tuned run's model=x.h5). */
static char *with_scale(char *text, const char *name) {
    char letter = model_file_scale(name);
    if (!letter || has_scale_key(text) || !strstr(text, "scales:")) return text;
    size_t n = strlen(text) + 64;
    char *out = xmalloc(n);
    snprintf(out, n, "scale: %c # the scale of %s\n%s", letter, name, text);
    free(text);
    return out;
}

char *model_source_yaml(const char *spec, char *name, size_t n, char *err, size_t errlen) {
    if (ends_with(spec, ".pt")) {
        errf(err, errlen,
             "%s: an Ultralytics .pt cannot be read here; convert it first: python "
             "scripts/ultralytics_to_weights.py %s <file.h5> (then model=<file.h5>)",
             spec, spec);
        return NULL;
    }
    if (!model_source_is_weights(spec)) { /* a yaml (or a typo: the lookup names it) */
        char path[1024];
        snprintf(name, n, "%s", spec);
        return model_file_read(spec, path, sizeof path, err, errlen);
    }
    char e1[1200], e2[1200];
    if (access(spec, R_OK) != 0) {
        errf(err, errlen, "model=%s: no such weights file (%s)", spec, strerror(errno));
        return NULL;
    }
    ckpt_file *f = NULL;
    int kind = model_weights_open_either(spec, &f, e1, sizeof e1);
    if (kind == 0) {
        const ckpt_meta *m = ckpt_file_meta(f);
        snprintf(name, n, "%s", m->model ? m->model : spec);
        char *text = xstrdup(m->model_yaml ? m->model_yaml : "");
        ckpt_close(f);
        return with_scale(text, name);
    }
    ckpt_weights *w = ckpt_weights_open(spec, e2, sizeof e2);
    if (!w) {
        errf(err, errlen, "%s", kind == 1 ? e2 : e1);
        return NULL;
    }
    snprintf(name, n, "%s", ckpt_weights_meta(w)->model);
    char *text = xstrdup(ckpt_weights_meta(w)->model_yaml);
    ckpt_weights_close(w);
    return with_scale(text, name);
}

static int file_sha256(const char *path, char hex[65], char *err, size_t errlen) {
    FILE *f = fopen(path, "rb");
    if (!f) return errf(err, errlen, "%s: %s", path, strerror(errno));
    sha256_ctx *c = sha256_begin();
    char buf[1 << 16];
    size_t k;
    while ((k = fread(buf, 1, sizeof buf, f)) > 0) sha256_update(c, buf, k);
    int bad = ferror(f);
    fclose(f);
    sha256_end(c, hex);
    return bad ? errf(err, errlen, "%s: read error", path) : 0;
}

static void report_problem(void *ctx, const char *line) {
    (void)ctx;
    log_error("%s", line);
}

/* The weights file: verified whole (so a damaged one stops the run before launch), hashed, and
 * placed in lineage: a run's version is "vNNNN" of its run folder, any other file its name in
 * its folder. */
static int weights_of(const char *path, model_source *s, char *err, size_t errlen) {
    char e2[1200];
    if (access(path, R_OK) != 0)
        return errf(err, errlen, "pretrained=%s: no such weights file (%s)", path, strerror(errno));
    if (ends_with(path, ".pt"))
        return errf(err, errlen,
                    "%s: an Ultralytics .pt cannot be read here; convert it first: python "
                    "scripts/ultralytics_to_weights.py %s <file.h5>",
                    path, path);
    ckpt_file *f = NULL;
    int kind = model_weights_open_either(path, &f, e2, sizeof e2), bad = 0;
    if (kind == 0) {
        bad = ckpt_verify(f, report_problem, NULL, e2, sizeof e2);
        ckpt_close(f);
    } else if (kind == 1) {
        ckpt_weights *w = ckpt_weights_open(path, e2, sizeof e2);
        bad = w ? ckpt_weights_verify(w, report_problem, NULL, e2, sizeof e2) : 1;
        ckpt_weights_close(w);
    } else {
        bad = 1;
    }
    if (bad) return errf(err, errlen, "pretrained weights %s: %s", path, e2);
    char real[PATH_MAX];
    if (!realpath(path, real)) return errf(err, errlen, "%s: %s", path, strerror(errno));
    snprintf(s->weights, sizeof s->weights, "%s", path);
    snprintf(s->weights_abs, sizeof s->weights_abs, "%s", real);
    if (file_sha256(real, s->weights_sha256, err, errlen) != 0) return -1;
    s->pretrained = true;
    char *slash = strrchr(real, '/');
    *slash = 0;
    int v = ckpt_store_parse_name(slash + 1);
    char *up = strrchr(real, '/');
    if (v && up && !strcmp(up + 1, "weights")) { /* <run>/weights/v0004.h5 */
        *up = 0;
        snprintf(s->parent_version, sizeof s->parent_version, "v%04d", v);
        snprintf(s->parent_run, sizeof s->parent_run, "%s", real[0] ? real : "/");
    } else {
        snprintf(s->parent_version, sizeof s->parent_version, "%.31s", slash + 1);
        snprintf(s->parent_run, sizeof s->parent_run, "%s", real[0] ? real : "/");
    }
    return 0;
}

int model_source_resolve(const train_args *a, const ckpt_meta *resumed, model_source *s, char *err,
                         size_t errlen) {
    memset(s, 0, sizeof *s);
    if (resumed) { /* the version's own architecture; its state comes with the resume */
        snprintf(s->yaml_name, sizeof s->yaml_name, "%s", a->model);
        s->yaml_text = xstrdup(resumed->model_yaml ? resumed->model_yaml : "");
        return 0;
    }
    s->yaml_text = model_source_yaml(a->model, s->yaml_name, sizeof s->yaml_name, err, errlen);
    if (!s->yaml_text) return -1;
    bool b = true, is_bool = parse_bool(a->pretrained, &b);
    const char *weights = !is_bool                                 ? a->pretrained
                          : b && model_source_is_weights(a->model) ? a->model
                                                                   : NULL;
    if (weights && weights_of(weights, s, err, errlen) != 0) {
        model_source_free(s);
        return -1;
    }
    return 0;
}

void model_source_free(model_source *s) {
    free(s->yaml_text);
    s->yaml_text = NULL;
}

/* ---- in the launched coordinator ------------------------------------------------------------ */

char *model_source_message(const model_source *s, int *len) {
    size_t a = strlen(s->yaml_name), b = strlen(s->yaml_text);
    char *msg = xmalloc(a + b + 2);
    memcpy(msg, s->yaml_name, a + 1);
    memcpy(msg + a + 1, s->yaml_text, b + 1);
    *len = (int)(a + 1 + b + 1);
    return msg;
}

int model_source_job(const model_source *s, bool rebuild, const ckpt_file *resumed_file,
                     job_info *job, model_weights *w, char *err, size_t errlen) {
    memset(w, 0, sizeof *w);
    job->pretrained = s->pretrained;
    job->cls_width = 0;
    if (s->pretrained) {
        if (model_weights_load(s->weights, w, report_problem, NULL, err, errlen) != 0) return -1;
        if (rebuild) model_head_widths(w->t, w->n, "", &job->cls_width, job->head_ch);
    } else if (resumed_file) {
        int n = ckpt_num_tensors(resumed_file);
        model_head_widths(ckpt_tensor_at(resumed_file, 0), n, "ema/", &job->cls_width,
                          job->head_ch);
    }
    return 0;
}

int model_source_broadcast(const model_weights *w, const dataset *ds, bool remap) {
    tensor_desc *t;
    float *data;
    int64_t nf;
    model_weights_pack(w, &t, &data, &nf);
    int nc = dataset_num_classes(ds), matched = 0;
    int *map = xcalloc((size_t)nc + 1, sizeof *map);
    if (remap) {
        const char **names = xcalloc((size_t)nc + 1, sizeof *names);
        for (int i = 0; i < nc; i++) names[i] = dataset_class_name(ds, i);
        matched = model_weights_cls_map(w, names, nc, map);
        free(names);
    }
    weights_header h = {.n_tensors = w->n, .n_floats = nf, .ncls = matched ? nc : 0};
    CHECK_MPI(MPI_Bcast(&h, sizeof h, MPI_BYTE, 0, MPI_COMM_WORLD));
    CHECK_MPI(MPI_Bcast(t, (int)(h.n_tensors * (int64_t)sizeof *t), MPI_BYTE, 0, MPI_COMM_WORLD));
    CHECK_MPI(MPI_Bcast(data, (int)nf, MPI_FLOAT, 0, MPI_COMM_WORLD));
    CHECK_MPI(MPI_Bcast(map, h.ncls, MPI_INT, 0, MPI_COMM_WORLD));
    free(t);
    free(data);
    free(map);
    pretrained_summary sum;
    CHECK_MPI(
        MPI_Recv(&sum, sizeof sum, MPI_BYTE, 1, TAG_PRETRAINED, MPI_COMM_WORLD, MPI_STATUS_IGNORE));
    if (!sum.ok) {
        log_error("pretrained weights %s: %s", w->source, sum.error);
        return -1;
    }
    if (sum.cls_width != sum.rule_width)
        log_info("Detect class branch built %d wide (the pretrained weights'), not %d (the yaml "
                 "rule for %d classes), so its hidden layers transfer",
                 sum.cls_width, sum.rule_width, nc);
    if (matched)
        log_info("Remapped %d/%d cls head rows from pretrained weights by class name", matched, nc);
    log_info("Transferred %d/%d items from pretrained weights (%s)", sum.transferred, sum.total,
             w->source);
    if (sum.n_not_loaded)
        log_info("kept their initialisation (no tensor of that name and shape in the weights): "
                 "%s%s",
                 sum.not_loaded, sum.n_not_loaded > 12 ? ", ..." : "");
    return 0;
}
