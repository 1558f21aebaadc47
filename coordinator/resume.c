/* Fresh or resumed start of `train`, with every resume check before launch (resume.h). */
#include "coordinator/resume.h"

#include "common/log.h"
#include "common/model_file.h"
#include "coordinator/ckpt_file.h"
#include "coordinator/ckpt_store.h"
#include "coordinator/model_source.h"
#include "coordinator/run_lock.h"
#include "dataio/dataset.h"
#include "dataio/pack_cache.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void note_warn(void *ctx, const char *line) {
    (void)ctx;
    log_warn("resume: %s", line);
}

static bool is_dir(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static bool ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

/* project/name as the command line (or the defaults) give them. */
static void project_name(kv_args *kv, char *out, size_t n) {
    const char *p = kv_get(kv, "project"), *nm = kv_get(kv, "name");
    snprintf(out, n, "%s/%s", p ? p : "runs/detect", nm ? nm : "train");
}

static int fresh(kv_args *kv, train_args *a, resume_plan *plan, bool verbose, char *err,
                 size_t errlen) {
    if (train_args_parse(kv, a, err, errlen) != 0) return -1;
    if (model_source_default_imgsz(a, kv_get(kv, "imgsz") != NULL, plan->imgsz_from,
                                   sizeof plan->imgsz_from) &&
        verbose)
        log_info("imgsz=%ld: the training imgsz recorded in %s (model=), Ultralytics' default when "
                 "fine-tuning from weights; imgsz= overrides it",
                 a->imgsz, plan->imgsz_from);
    if (!a->exist_ok) return 0; /* a new folder is made: nobody else can hold it */
    char dir[2400];
    snprintf(dir, sizeof dir, "%s/%s", a->project, a->name);
    return run_lock_check(dir, err, errlen);
}

/* args.yaml text -> key=value pairs (save_dir and resume are the new run's, null is a default). */
static void kv_from_yaml(const char *text, kv_args *out) {
    kv_args all;
    kv_from_args_yaml(text, &all);
    *out = (kv_args){0};
    for (int i = 0; i < all.n; i++)
        if (strcmp(all.items[i].key, "save_dir") && strcmp(all.items[i].key, "resume") &&
            strcmp(all.items[i].val, "null"))
            kv_set(out, all.items[i].key, all.items[i].val);
    kv_free(&all);
}

/* The run's own arguments with the command line's allowed changes; a change to any other key
 * is refused, naming it. skip_model: model= names the version file (resume=True's form). */
static int resumed_args(kv_args *cmd, const ckpt_meta *m, const char *version, bool skip_model,
                        train_args *a, char *err, size_t errlen) {
    kv_args base, merged;
    kv_from_yaml(m->args_yaml, &base);
    kv_from_yaml(m->args_yaml, &merged);
    char e2[512];
    int rc = 0;
    if (train_args_parse(&base, a, e2, sizeof e2) != 0) {
        rc = errf(err, errlen, "resume: the arguments of %s do not parse here: %s", version, e2);
        goto out;
    }
    char *y0 = train_args_yaml_text(a);
    for (int i = 0; i < cmd->n && rc == 0; i++) {
        const char *k = cmd->items[i].key, *v = cmd->items[i].val;
        cmd->items[i].used = true;
        if (skip_model && !strcmp(k, "model")) continue;
        if (train_args_resume_may_change(k)) {
            kv_set(&merged, k, v);
            continue;
        }
        kv_args one;
        kv_from_yaml(m->args_yaml, &one);
        kv_set(&one, k, v);
        train_args b;
        if (train_args_parse(&one, &b, e2, sizeof e2) != 0) {
            rc = errf(err, errlen, "resume: %s", e2);
        } else {
            char *y1 = train_args_yaml_text(&b), was[1024], now[1024];
            kv_args_yaml_value(y0, k, was, sizeof was);
            kv_args_yaml_value(y1, k, now, sizeof now);
            if (strcmp(was, now))
                rc = errf(err, errlen,
                          "resume: %s=%s differs from the run's %s: %s; a resumed run keeps its "
                          "arguments (start a new run to change it)",
                          k, v, k, was);
            free(y1);
        }
        kv_free(&one);
    }
    free(y0);
    if (rc == 0 && train_args_parse(&merged, a, e2, sizeof e2) != 0)
        rc = errf(err, errlen, "resume: %s", e2);
out:
    kv_free(&base);
    kv_free(&merged);
    return rc;
}

/* The model yaml and the dataset must be what the version was trained on. */
static int same_inputs(train_args *a, const ckpt_meta *m, const char *version, char *err,
                       size_t errlen) {
    char path[1024], e2[1024];
    /* a run fine-tuned from a weights file (model=x.h5) builds the architecture its version
     * records: the file itself is not needed any more */
    if (!model_source_is_weights(a->model)) {
        char *text = model_file_read(a->model, path, sizeof path, e2, sizeof e2);
        if (!text) return errf(err, errlen, "resume: %s", e2);
        int same = m->model_yaml && !strcmp(text, m->model_yaml);
        free(text);
        if (!same)
            return errf(err, errlen,
                        "resume: model yaml %s differs from the one %s was trained with "
                        "(model=%s)",
                        path, version, a->model);
    }
    char h5[sizeof a->data];
    pack_cache_result pc;
    if (pack_cache_resolve(a->data, NULL, h5, sizeof h5, &pc, e2, sizeof e2) != 0)
        return errf(err, errlen, "resume: %s", e2);
    dataset *ds = dataset_open(h5, e2, sizeof e2);
    if (!ds) return errf(err, errlen, "resume: %s", e2);
    int rc = 0;
    if (strcmp(dataset_hash(ds), m->dataset_sha256))
        rc = errf(err, errlen,
                  "resume: dataset %s (sha256 %.12s) is not the one %s was trained on (%.12s)", h5,
                  dataset_hash(ds), version, m->dataset_sha256);
    dataset_close(ds);
    memcpy(a->data, h5, sizeof h5);
    return rc;
}

/* The run folder a version file belongs to: <run>/weights/<file>. */
static bool run_of_version(const char *file, char *run, size_t n) {
    char real[PATH_MAX];
    if (!realpath(file, real)) return false;
    char *slash = strrchr(real, '/');
    if (!slash) return false;
    *slash = 0;
    slash = strrchr(real, '/');
    if (!slash || strcmp(slash + 1, "weights")) {
        snprintf(run, n, "%s", real); /* a version outside any run: its folder is the lineage */
        return false;
    }
    *slash = 0;
    snprintf(run, n, "%s", real[0] ? real : "/");
    return true;
}

/* Which version: the newest complete one of a run folder, or a given file (verified). 0, 1 for
 * "resume=auto and nothing to resume from: start fresh", -1 refused. */
static int pick_version(const char *run, const char *file, bool is_auto, bool verbose,
                        resume_plan *plan, char *err, size_t errlen) {
    if (run) {
        if (!is_dir(run)) {
            if (is_auto) return 1;
            return errf(err, errlen, "resume: no run folder %s", run);
        }
        int v = 0;
        char e2[1200];
        int rc =
            ckpt_store_newest_complete(run, verbose ? note_warn : NULL, NULL, plan->version_path,
                                       sizeof plan->version_path, &v, e2, sizeof e2);
        if (rc == 1 && is_auto) {
            if (verbose) log_info("resume=auto: %s; starting a fresh run there", e2);
            return 1;
        }
        if (rc != 0) return errf(err, errlen, "resume: %s", e2);
        return 0;
    }
    if (snprintf(plan->version_path, sizeof plan->version_path, "%s", file) >=
        (int)sizeof plan->version_path)
        return errf(err, errlen, "resume: path too long");
    ckpt_file *f = ckpt_open(file, err, errlen);
    int bad = f ? ckpt_verify(f, NULL, NULL, err, errlen) : 1;
    ckpt_close(f);
    if (bad) {
        char e2[1024];
        snprintf(e2, sizeof e2, "%s", err);
        return errf(err, errlen, "resume: %s", e2);
    }
    return 0;
}

int resume_prepare(kv_args *kv, train_args *a, resume_plan *plan, bool verbose, char *err,
                   size_t errlen) {
    memset(plan, 0, sizeof *plan);
    const char *r = kv_get(kv, "resume");
    bool b = false, is_auto = r && !strcmp(r, "auto");
    if (!r || (!is_auto && parse_bool(r, &b) && !b))
        return fresh(kv, a, plan, verbose, err, errlen);
    char run[2400] = "", file[2048] = "";
    bool model_is_version = false;
    if (is_auto || b) {
        const char *model = kv_get(kv, "model");
        if (!is_auto && model && ends_with(model, ".h5")) {
            snprintf(file, sizeof file, "%s", model);
            model_is_version = true;
        } else {
            project_name(kv, run, sizeof run);
        }
    } else if (is_dir(r)) {
        snprintf(run, sizeof run, "%s", r);
    } else if (access(r, F_OK) == 0) {
        snprintf(file, sizeof file, "%s", r);
    } else {
        return errf(err, errlen, "resume=%s: no such run folder or version file", r);
    }
    int rc = pick_version(run[0] ? run : NULL, file[0] ? file : NULL, is_auto, verbose, plan, err,
                          errlen);
    if (rc == 1) { /* resume=auto with nothing to resume: a fresh run in exactly project/name */
        kv_set(kv, "exist_ok", "True");
        return fresh(kv, a, plan, verbose, err, errlen);
    }
    if (rc != 0) return -1;
    ckpt_file *f = ckpt_open(plan->version_path, err, errlen);
    if (!f) return -1;
    const ckpt_meta *m = ckpt_file_meta(f);
    const char *vname = strrchr(plan->version_path, '/') ? strrchr(plan->version_path, '/') + 1
                                                         : plan->version_path;
    plan->version = ckpt_store_parse_name(plan->version_path);
    plan->in_run_dir =
        run_of_version(plan->version_path, plan->parent_run, sizeof plan->parent_run);
    if (m->finished) {
        if (is_auto) {
            printf("resume=auto: %s finished at epoch %d of %d (%s): nothing to resume\n",
                   plan->parent_run, m->epoch, m->epochs, vname);
            ckpt_close(f);
            return 1;
        }
        rc = errf(err, errlen,
                  "resume: %s finished at epoch %d of %d (%s): nothing to resume; start a new run",
                  plan->parent_run, m->epoch, m->epochs, vname);
    }
    if (rc == 0) rc = resumed_args(kv, m, vname, model_is_version, a, err, errlen);
    if (rc == 0) rc = same_inputs(a, m, vname, err, errlen);
    if (rc == 0) {
        snprintf(a->resume, sizeof a->resume, "%s", r);
        if (plan->in_run_dir) {
            if (snprintf(plan->run_dir, sizeof plan->run_dir, "%s", plan->parent_run) >=
                (int)sizeof plan->run_dir)
                rc = errf(err, errlen, "resume: %s: path too long", plan->parent_run);
            else
                rc = run_lock_check(plan->run_dir, err, errlen);
        }
    }
    if (rc == 0 && verbose)
        log_info("resuming %s from %s: epoch %d of %d, step %d of %d%s (written %s)",
                 plan->in_run_dir ? plan->run_dir : "a new run folder", plan->version_path,
                 m->epoch, m->epochs, m->step, m->steps, m->epoch_complete ? ", validated" : "",
                 m->created);
    ckpt_close(f);
    plan->active = rc == 0;
    return rc ? -1 : 0;
}

/* The arithmetic is the precision text's first word (bf16, fp32, tf32; device.c writes it). */
void resume_warn_precision_change(const resume_plan *plan, const char *was, const char *now) {
    if (!plan->active || !was[0] || !now[0]) return;
    size_t a = strcspn(was, " "), b = strcspn(now, " ");
    if (a == b && !strncmp(was, now, a)) return;
    log_warn("resume: v%04d was trained with %.*s arithmetic, this run computes in %.*s (%s): from "
             "here on it differs from an uninterrupted run",
             plan->version, (int)a, was, (int)b, now, now);
}
