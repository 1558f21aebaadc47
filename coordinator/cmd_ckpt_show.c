/* coordinator ckpt show <run> [<version>] [--tensors] [--args] [--json]: one version's metadata,
 * its lineage back to the first version (across runs when resumed or fine-tuned), metrics, and
 * with --tensors every tensor's shape, dtype, mean, std, min, max and sha256. */
#include "coordinator/ckpt_cli.h"

#include "common/log.h"
#include "coordinator/ckpt_weights.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const cli_spec show_spec = {
    "ckpt show",
    "<run> [<version>] [--tensors] [match=TEXT] [--args] [--json]",
    "One version (default: last): when and why it was written, its position (epoch, step),\n"
    "metrics, the best so far, optimizer and EMA counters, dataset (path and sha256), model,\n"
    "code version, world size, content hash, and its lineage: each parent version back to the\n"
    "first, across runs when the run was resumed from another run's version or fine-tuned from a\n"
    "weights file.\n"
    "--tensors: every tensor (or those whose name contains match=TEXT): dtype, shape, mean, std,\n"
    "min, max, sha256 (each re-hashed; a mismatch is named and exits 1).\n"
    "--args: the args.yaml the version was trained with.  --json: all of it as JSON.\n"
    "<version>: v3, best, last, a tag; or give <run>:v3, <run>@tag, or a version file.",
    "json,tensors,args",
    "match",
    1,
    2};

typedef struct stats {
    double mean, std, min, max;
} stats;

static stats stats_of(const double *v, int64_t n) {
    stats s = {0, 0, n ? v[0] : 0, n ? v[0] : 0};
    double sum = 0;
    for (int64_t i = 0; i < n; i++) {
        sum += v[i];
        if (v[i] < s.min) s.min = v[i];
        if (v[i] > s.max) s.max = v[i];
    }
    s.mean = n ? sum / (double)n : 0;
    double ss = 0;
    for (int64_t i = 0; i < n; i++) ss += (v[i] - s.mean) * (v[i] - s.mean);
    s.std = n > 1 ? sqrt(ss / (double)(n - 1)) : 0; /* torch.std: unbiased */
    return s;
}

static void shape_text(const ckpt_tensor *t, char *out, size_t n) {
    size_t k = (size_t)snprintf(out, n, "[");
    for (int d = 0; d < t->ndim && k < n; d++)
        k += (size_t)snprintf(out + k, n - k, "%s%lld", d ? ", " : "", (long long)t->shape[d]);
    if (k < n) snprintf(out + k, n - k, "]");
}

/* --tensors: the table (or JSON array); the number of tensors that failed their hash. */
static int show_tensors(ckpt_file *f, const char *match, bool json, cJSON *out) {
    int bad = 0;
    if (!json)
        printf("\n%-58s %-7s %-16s %12s %12s %12s %12s  %s\n", "tensor", "dtype", "shape", "mean",
               "std", "min", "max", "sha256");
    for (int i = 0; i < ckpt_num_tensors(f); i++) {
        const ckpt_tensor *t = ckpt_tensor_at(f, i);
        if (match && !strstr(t->name, match)) continue;
        char err[1200], shape[64];
        int64_t n = 0;
        double *v = ckpt_cli_read_values(f, i, &n, err, sizeof err);
        shape_text(t, shape, sizeof shape);
        const char *dt = t->dtype == CKPT_I64 ? "int64" : "float32";
        if (!v) {
            bad++;
            log_error("%s", err);
        }
        stats s = v ? stats_of(v, n) : (stats){NAN, NAN, NAN, NAN};
        if (json) {
            cJSON *j = cJSON_CreateObject();
            cJSON_AddStringToObject(j, "name", t->name);
            cJSON_AddStringToObject(j, "dtype", dt);
            cJSON *sh = cJSON_AddArrayToObject(j, "shape");
            for (int d = 0; d < t->ndim; d++)
                cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)t->shape[d]));
            if (v) {
                cJSON_AddNumberToObject(j, "mean", s.mean);
                cJSON_AddNumberToObject(j, "std", s.std);
                cJSON_AddNumberToObject(j, "min", s.min);
                cJSON_AddNumberToObject(j, "max", s.max);
            } else {
                cJSON_AddStringToObject(j, "error", err);
            }
            cJSON_AddStringToObject(j, "sha256", t->sha256);
            cJSON_AddItemToArray(out, j);
        } else {
            printf("%-58s %-7s %-16s %12.5g %12.5g %12.5g %12.5g  %s%s\n", t->name, dt, shape,
                   s.mean, s.std, s.min, s.max, t->sha256, v ? "" : "  MISMATCH");
        }
        free(v);
    }
    return bad;
}

/* "model 355, ema 355, optimizer 366" and the bytes of all tensors. */
static void tensor_groups(const ckpt_file *f, char *out, size_t n, int64_t *bytes) {
    const char *groups[] = {"model/", "ema/", "optimizer/", "grad_accum/"};
    int count[4] = {0};
    *bytes = 0;
    for (int i = 0; i < ckpt_num_tensors(f); i++) {
        const ckpt_tensor *t = ckpt_tensor_at(f, i);
        *bytes += ckpt_tensor_numel(t) * (int64_t)ckpt_dtype_size(t->dtype);
        for (int g = 0; g < 4; g++)
            if (!strncmp(t->name, groups[g], strlen(groups[g]))) count[g]++;
    }
    size_t k = 0;
    out[0] = 0;
    for (int g = 0; g < 4 && k < n; g++)
        if (count[g])
            k += (size_t)snprintf(out + k, n - k, "%s%.*s %d", k ? ", " : "",
                                  (int)strlen(groups[g]) - 1, groups[g], count[g]);
}

/* One ancestor: opened as a version, or as a weights file (a fine-tune's source). */
typedef struct ancestor {
    char path[4400], label[4400], created[32], dataset_sha256[65], content_sha256[65];
    int epoch, step, steps;
    char note[1300]; /* "first version", "weights file imported from ...", or why it stops */
} ancestor;

/* Fills l from the version at path; writes its parent's path to parent (false: the chain ends). */
static bool read_ancestor(const char *path, ancestor *l, char *parent, size_t n) {
    char err[1200];
    ckpt_ref r;
    snprintf(l->path, sizeof l->path, "%s", path);
    if (ckpt_ref_resolve(path, NULL, NULL, &r, err, sizeof err) == 0)
        snprintf(l->label, sizeof l->label, "%s", r.label);
    else
        snprintf(l->label, sizeof l->label, "%s", path);
    ckpt_file *f = ckpt_open(path, err, sizeof err);
    if (!f) {
        char werr[1200];
        ckpt_weights *w = ckpt_weights_open(path, werr, sizeof werr);
        if (w) {
            const ckpt_weights_info *wi = ckpt_weights_meta(w);
            snprintf(l->created, sizeof l->created, "%s", wi->created);
            snprintf(l->dataset_sha256, sizeof l->dataset_sha256, "%s", wi->dataset_sha256);
            snprintf(l->content_sha256, sizeof l->content_sha256, "%s", wi->content_sha256);
            snprintf(l->note, sizeof l->note, "weights file: %.1200s", wi->source);
            ckpt_weights_close(w);
        } else {
            snprintf(l->note, sizeof l->note, "%s",
                     access(path, F_OK) == 0 ? err : "not on disk (pruned or moved)");
        }
        return false;
    }
    const ckpt_meta *m = ckpt_file_meta(f);
    snprintf(l->created, sizeof l->created, "%s", m->created);
    snprintf(l->dataset_sha256, sizeof l->dataset_sha256, "%s", m->dataset_sha256);
    snprintf(l->content_sha256, sizeof l->content_sha256, "%s", m->content_sha256);
    l->epoch = m->epoch;
    l->step = m->step;
    l->steps = m->steps;
    bool more = ckpt_ref_parent(m, parent, n);
    if (!more) snprintf(l->note, sizeof l->note, "first version");
    ckpt_close(f);
    return more;
}

#define MAX_CHAIN 100000

static void show_lineage(const ckpt_meta *m, bool json, cJSON *out) {
    char path[4400];
    if (!json) printf("\nlineage (newest first; each continues the one below it):\n");
    if (!ckpt_ref_parent(m, path, sizeof path)) {
        if (!json) printf("  (first version: trained from the model yaml)\n");
        return;
    }
    for (int depth = 0; depth < MAX_CHAIN; depth++) {
        ancestor l = {0};
        char parent[4400];
        bool more = read_ancestor(path, &l, parent, sizeof parent);
        if (json) {
            cJSON *j = cJSON_CreateObject();
            cJSON_AddStringToObject(j, "version", l.label);
            cJSON_AddStringToObject(j, "path", l.path);
            cJSON_AddStringToObject(j, "created", l.created);
            cJSON_AddNumberToObject(j, "epoch", l.epoch);
            cJSON_AddNumberToObject(j, "step", l.step);
            cJSON_AddNumberToObject(j, "steps", l.steps);
            cJSON_AddStringToObject(j, "dataset_sha256", l.dataset_sha256);
            cJSON_AddStringToObject(j, "content_sha256", l.content_sha256);
            if (l.note[0]) cJSON_AddStringToObject(j, "note", l.note);
            cJSON_AddItemToArray(out, j);
        } else {
            char when[32];
            ckpt_cli_time(l.created, when, sizeof when);
            printf("  %-40s", l.label);
            if (l.steps) /* a version */
                printf(" epoch %3d step %4d/%-4d %s dataset %.12s", l.epoch, l.step, l.steps, when,
                       l.dataset_sha256);
            else if (l.created[0]) /* a weights file */
                printf(" written %s", when);
            printf("%s%s\n", l.note[0] ? "  " : "", l.note);
        }
        if (!more) return;
        if (!strcmp(parent, path)) break; /* a version cannot continue itself */
        snprintf(path, sizeof path, "%s", parent);
    }
    if (!json) printf("  (stopped: the chain loops or is longer than %d)\n", MAX_CHAIN);
}

static void show_text(const ckpt_ref *ref, ckpt_file *f) {
    const ckpt_meta *m = ckpt_file_meta(f);
    char when[32], groups[128], size[32];
    int64_t bytes;
    ckpt_cli_time(m->created, when, sizeof when);
    tensor_groups(f, groups, sizeof groups, &bytes);
    cli_human_bytes(bytes, size, sizeof size);
    printf("%s  (%s)\n", ref->label, ref->path);
    printf("written     %s UTC (%s)\n", when, m->reason);
    printf("position    epoch %d of %d, step %d of %d%s%s; %lld images seen, %lld iterations\n",
           m->epoch, m->epochs, m->step, m->steps, m->epoch_complete ? ", validated" : "",
           m->finished ? ", run finished here" : "", (long long)m->images_seen,
           (long long)m->iterations);
    if (m->has_row) {
        const epoch_row *r = &m->row;
        const char *l3 = r->third_loss ? r->third_loss : "dfl_loss";
        printf("metrics     epoch %d%s: precision %.5f recall %.5f mAP50 %.5f mAP50-95 %.5f "
               "fitness %.5f\n",
               r->epoch, ckpt_meta_validated(m) ? "" : " (the last validated epoch)", r->precision,
               r->recall, r->map50, r->map50_95, m->fitness);
        printf("losses      train box %.5f cls %.5f %s %.5f; val box %.5f cls %.5f %s %.5f\n",
               r->train[0], r->train[1], l3, r->train[2], r->val[0], r->val[1], l3, r->val[2]);
    } else {
        printf("metrics     none yet (no epoch validated before this version)\n");
    }
    if (m->best_epoch > 0)
        printf("best        epoch %d: fitness %.5f, mAP50 %.5f, mAP50-95 %.5f\n", m->best_epoch,
               m->best_fitness, m->best_map50, m->best_map50_95);
    printf("optimizer   %s, %lld steps, %d groups, lr", m->optimizer, (long long)m->optimizer_steps,
           m->ngroups);
    for (int g = 0; g < m->ngroups; g++) printf(" %s %.6g", m->group[g].tag, m->group[g].lr);
    printf("; EMA %lld updates%s\n", (long long)m->ema_updates,
           m->grad_accum_ranks ? "; an optimizer step half accumulated" : "");
    printf("dataset     %s\n            sha256 %s\n", m->dataset ? m->dataset : "",
           m->dataset_sha256);
    printf("model       %s\n", m->model ? m->model : "");
    if (m->pretrained && m->pretrained[0])
        printf("fine-tuned  from %s (sha256 %s)\n", m->pretrained, m->pretrained_sha256);
    printf("code        %s; world size %d, micro_batch %d, host %s\n", m->code_version,
           m->world_size, m->micro_batch, m->host);
    if (m->precision[0]) printf("precision   %s\n", m->precision);
    printf("content     sha256 %s\n            %d tensors (%s), %s\n", m->content_sha256,
           ckpt_num_tensors(f), groups, size);
}

int ckpt_cmd_show(int argc, char **argv) {
    cli_args a;
    int rc = cli_parse(&show_spec, argc, argv, &a);
    if (rc || a.help) return rc ? rc : cli_help(&show_spec);
    ckpt_ref ref;
    rc = ckpt_cli_resolve(&show_spec, &a, 0, true, "last", &ref);
    ckpt_file *f = rc ? NULL : ckpt_cli_open(ref.path);
    if (!rc && !f) rc = 1;
    if (rc) {
        cli_free(&a);
        return rc;
    }
    bool json = cli_flag(&a, "json"), tensors = cli_flag(&a, "tensors");
    const char *match = kv_get(&a.kv, "match");
    const ckpt_meta *m = ckpt_file_meta(f);
    int bad = 0;
    if (json) {
        cJSON *j = ckpt_meta_json(m);
        cJSON_AddStringToObject(j, "label", ref.label);
        cJSON_AddStringToObject(j, "path", ref.path);
        cJSON_AddStringToObject(j, "run", ref.run_dir);
        cJSON_AddNumberToObject(j, "tensors_count", ckpt_num_tensors(f));
        cJSON_AddStringToObject(j, "optimizer", m->optimizer);
        cJSON_AddNumberToObject(j, "ema_updates", (double)m->ema_updates);
        cJSON *l = cJSON_GetObjectItemCaseSensitive(j, "lineage");
        cJSON_AddStringToObject(l, "pretrained", m->pretrained ? m->pretrained : "");
        cJSON_AddStringToObject(l, "pretrained_sha256", m->pretrained_sha256);
        cJSON_AddStringToObject(l, "args_yaml", m->args_yaml ? m->args_yaml : "");
        cJSON_AddStringToObject(l, "model_yaml", m->model_yaml ? m->model_yaml : "");
        show_lineage(m, true, cJSON_AddArrayToObject(j, "chain"));
        if (tensors) bad = show_tensors(f, match, true, cJSON_AddArrayToObject(j, "tensors"));
        cli_print_json(j);
    } else {
        show_text(&ref, f);
        if (cli_flag(&a, "args")) printf("\nargs.yaml:\n%s", m->args_yaml ? m->args_yaml : "");
        show_lineage(m, false, NULL);
        if (tensors) bad = show_tensors(f, match, false, NULL);
    }
    if (bad) log_error("%s: %d tensor(s) do not match their sha256 (named above)", ref.label, bad);
    ckpt_close(f);
    cli_free(&a);
    return bad ? 1 : 0;
}
