/* coordinator ckpt ls|show|diff|verify|export|tag|untag|prune: inspect and manage the versions
 * of runs (docs/checkpoints.md, "The ckpt CLI"). This file: the dispatcher, the pieces the
 * subcommands share (ckpt_cli.h), and ls, verify, tag, untag, prune. */
#include "coordinator/ckpt_cli.h"

#include "common/log.h"
#include "coordinator/ckpt_store.h"
#include "coordinator/commands.h"
#include "coordinator/results_csv.h"
#include "coordinator/run_lock.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- shared (ckpt_cli.h) ---------------------------------------------------------------------
 */

int ckpt_cli_resolve(const cli_spec *spec, const cli_args *a, int first, bool two_words,
                     const char *deflt, ckpt_ref *ref) {
    char err[1200];
    const char *r = two_words && a->npos > first + 1 ? a->pos[first + 1] : NULL;
    if (ckpt_ref_resolve(a->pos[first], r, deflt, ref, err, sizeof err) != 0)
        return cli_usage_error(spec, "%s", err);
    return 0;
}

ckpt_file *ckpt_cli_open(const char *path) {
    char err[1200];
    ckpt_file *f = ckpt_open(path, err, sizeof err);
    if (!f) log_error("%s", err);
    return f;
}

double *ckpt_cli_read_values(ckpt_file *f, int i, int64_t *n, char *err, size_t errlen) {
    const ckpt_tensor *t = ckpt_tensor_at(f, i);
    *n = ckpt_tensor_numel(t);
    void *raw = xmalloc((size_t)(*n ? *n : 1) * ckpt_dtype_size(t->dtype));
    double *v = NULL;
    if (ckpt_read_tensor(f, i, raw, err, errlen) == 0) {
        v = xmalloc((size_t)(*n ? *n : 1) * sizeof *v);
        for (int64_t k = 0; k < *n; k++)
            v[k] = t->dtype == CKPT_I64 ? (double)((const int64_t *)raw)[k]
                                        : (double)((const float *)raw)[k];
    }
    free(raw);
    return v;
}

bool ckpt_meta_validated(const ckpt_meta *m) {
    return m->epoch_complete && m->has_row && m->row.epoch == m->epoch;
}

void ckpt_cli_time(const char *iso, char *out, size_t n) {
    snprintf(out, n, "%.19s", iso);
    char *t = strchr(out, 'T');
    if (t) *t = ' ';
}

cJSON *ckpt_row_json(const ckpt_meta *m) {
    if (!m->has_row) return cJSON_CreateNull();
    const char *names[RESULTS_MAX_COLUMNS];
    double values[RESULTS_MAX_COLUMNS];
    int n = results_csv_columns(&m->row, names, values);
    cJSON *j = cJSON_CreateObject(); /* "epoch" is the first column */
    for (int i = 0; i < n; i++) cJSON_AddNumberToObject(j, names[i], values[i]);
    cJSON_AddNumberToObject(j, "fitness", m->fitness);
    return j;
}

/* A number, or null when it is not finite (best_fitness before the first validation). */
static void add_num(cJSON *j, const char *k, double v) {
    if (isfinite(v))
        cJSON_AddNumberToObject(j, k, v);
    else
        cJSON_AddNullToObject(j, k);
}

cJSON *ckpt_meta_json(const ckpt_meta *m) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "version", m->version);
    cJSON_AddStringToObject(j, "reason", m->reason);
    cJSON_AddStringToObject(j, "created", m->created);
    cJSON_AddNumberToObject(j, "epoch", m->epoch);
    cJSON_AddNumberToObject(j, "epochs", m->epochs);
    cJSON_AddNumberToObject(j, "step", m->step);
    cJSON_AddNumberToObject(j, "steps", m->steps);
    cJSON_AddBoolToObject(j, "validated", ckpt_meta_validated(m));
    cJSON_AddBoolToObject(j, "finished", m->finished);
    cJSON_AddNumberToObject(j, "images_seen", (double)m->images_seen);
    cJSON_AddNumberToObject(j, "elapsed_s", m->elapsed_s);
    cJSON_AddItemToObject(j, "metrics", ckpt_row_json(m));
    cJSON *best = cJSON_AddObjectToObject(j, "best_so_far"); /* best.h5 as of this version */
    add_num(best, "fitness", m->best_fitness);
    cJSON_AddNumberToObject(best, "epoch", m->best_epoch);
    add_num(best, "mAP50", m->best_map50);
    add_num(best, "mAP50-95", m->best_map50_95);
    cJSON_AddStringToObject(j, "content_sha256", m->content_sha256);
    cJSON *l = cJSON_AddObjectToObject(j, "lineage");
    cJSON_AddStringToObject(l, "parent_version", m->parent_version);
    cJSON_AddStringToObject(l, "parent_run", m->parent_run ? m->parent_run : "");
    cJSON_AddStringToObject(l, "dataset", m->dataset ? m->dataset : "");
    cJSON_AddStringToObject(l, "dataset_sha256", m->dataset_sha256);
    cJSON_AddStringToObject(l, "model", m->model ? m->model : "");
    cJSON_AddStringToObject(l, "code_version", m->code_version);
    cJSON_AddNumberToObject(l, "world_size", m->world_size);
    cJSON_AddNumberToObject(l, "micro_batch", m->micro_batch);
    cJSON_AddStringToObject(l, "host", m->host);
    cJSON_AddStringToObject(l, "precision", m->precision);
    return j;
}

/* ---- ls --------------------------------------------------------------------------------------
 */

static const cli_spec ls_spec = {
    "ckpt ls",
    "<run> [--json]",
    "One row per version of the run: version, epoch, step (of the epoch's steps), when it was\n"
    "written, mAP50, mAP50-95 and fitness measured at it ('-' for a mid-epoch version: metrics\n"
    "are measured at epoch ends), file size, the first 12 hex digits of its content sha256, and\n"
    "its tags: best, last, save_period links (epoch4.h5) and user tags (ckpt tag).\n"
    "--json: the same as a JSON array, with every results.csv column of each version.",
    "json",
    "",
    1,
    1};

/* "best last epoch4.h5 production" */
static void entry_tags(const ckpt_entry *e, char *out, size_t n) {
    snprintf(out, n, "%s%s%s%s%s%s%s", e->best ? "best " : "", e->last ? "last " : "", e->links,
             e->links[0] ? " " : "", e->tags, e->tags[0] ? " " : "", "");
    for (char *p = out; *p; p++)
        if (*p == ',') *p = ' ';
    size_t len = strlen(out);
    if (len && out[len - 1] == ' ') out[len - 1] = 0;
}

static cJSON *entry_json(const ckpt_entry *e, const ckpt_meta *m) {
    cJSON *j = m ? ckpt_meta_json(m) : cJSON_CreateObject();
    if (!m) cJSON_AddNumberToObject(j, "version", e->version);
    cJSON_AddStringToObject(j, "file", e->file);
    cJSON_AddStringToObject(j, "path", e->path);
    cJSON_AddNumberToObject(j, "size", (double)e->size);
    cJSON_AddBoolToObject(j, "best", e->best);
    cJSON_AddBoolToObject(j, "last", e->last);
    cJSON *tags = cJSON_AddArrayToObject(j, "tags");
    char buf[1024];
    snprintf(buf, sizeof buf, "%s%s%s", e->links, e->links[0] && e->tags[0] ? "," : "", e->tags);
    for (char *p = strtok(buf, ","); p; p = strtok(NULL, ","))
        cJSON_AddItemToArray(tags, cJSON_CreateString(p));
    return j;
}

static void ls_row(const ckpt_entry *e, const ckpt_meta *m) {
    char when[32], size[32], tags[1024], step[32], m50[16] = "-", m5095[16] = "-", fit[16] = "-";
    ckpt_cli_time(m->created, when, sizeof when);
    cli_human_bytes(e->size, size, sizeof size);
    entry_tags(e, tags, sizeof tags);
    snprintf(step, sizeof step, "%d/%d", m->step, m->steps);
    if (ckpt_meta_validated(m)) {
        snprintf(m50, sizeof m50, "%.4f", m->row.map50);
        snprintf(m5095, sizeof m5095, "%.4f", m->row.map50_95);
        snprintf(fit, sizeof fit, "%.4f", m->fitness);
    }
    printf("v%04d    %5d %9s  %-19s %7s %8s %7s %9s  %.12s  %s\n", e->version, m->epoch, step, when,
           m50, m5095, fit, size, m->content_sha256, tags);
}

int ckpt_cmd_ls(int argc, char **argv) {
    cli_args a;
    int rc = cli_parse(&ls_spec, argc, argv, &a);
    if (rc || a.help) return rc ? rc : cli_help(&ls_spec);
    bool json = cli_flag(&a, "json");
    const char *run = a.pos[0];
    char err[1200];
    ckpt_entry *e = NULL;
    int n = 0;
    if (access(run, F_OK) != 0) {
        cli_free(&a);
        return cli_usage_error(&ls_spec, "%s: no such run folder", run);
    }
    if (ckpt_store_list(run, &e, &n, err, sizeof err) != 0) {
        log_error("%s", err);
        cli_free(&a);
        return 1;
    }
    cJSON *arr = json ? cJSON_CreateArray() : NULL;
    if (!json)
        printf("%-8s %5s %9s  %-19s %7s %8s %7s %9s  %-12s  %s\n", "version", "epoch", "step",
               "written (UTC)", "mAP50", "mAP50-95", "fitness", "size", "hash", "tags");
    int bad = 0;
    for (int i = 0; i < n; i++) {
        ckpt_file *f = ckpt_open(e[i].path, err, sizeof err);
        if (!f) {
            if (access(e[i].path, F_OK) != 0 && errno == ENOENT) continue; /* pruned meanwhile */
            bad++;
            log_error("%s", err);
            if (json) {
                cJSON *j = entry_json(&e[i], NULL);
                cJSON_AddStringToObject(j, "error", err);
                cJSON_AddItemToArray(arr, j);
            }
            continue;
        }
        if (json)
            cJSON_AddItemToArray(arr, entry_json(&e[i], ckpt_file_meta(f)));
        else
            ls_row(&e[i], ckpt_file_meta(f));
        ckpt_close(f);
    }
    if (json) cli_print_json(arr);
    if (!json && n == 0) printf("(no versions in %s/weights)\n", run);
    free(e);
    cli_free(&a);
    return bad ? 1 : 0;
}

/* ---- verify ----------------------------------------------------------------------------------
 */

static const cli_spec verify_spec = {
    "ckpt verify",
    "<run> [<version>] [--json]",
    "Re-hashes every tensor (its sha256) and the content listing (content_sha256) of one version,\n"
    "or of every version of the run, and checks that best.h5, last.h5, save_period links and user\n"
    "tags point at existing versions. Prints one line per version; each problem names the tensor\n"
    "or file. Exit 0: all intact; 1: a problem (each one printed); 2: bad usage.\n"
    "<version>: v3, best, last, a tag; or give <run>:v3, <run>@tag, or a version file.",
    "json",
    "",
    1,
    2};

typedef struct problems {
    cJSON *list; /* JSON strings, or NULL */
    bool quiet;  /* --json: nothing on stderr */
} problems;

static void report_problem(void *ctx, const char *line) {
    problems *p = ctx;
    if (!p->quiet) printf("  BAD: %s\n", line);
    if (p->list) cJSON_AddItemToArray(p->list, cJSON_CreateString(line));
}

/* One version: 0 intact, else the number of problems. */
static int verify_one(const char *path, const char *label, bool json, cJSON *arr) {
    char err[1200];
    cJSON *j = json ? cJSON_CreateObject() : NULL;
    problems p = {.list = cJSON_CreateArray(), .quiet = true}; /* printed after the verdict */
    ckpt_file *f = ckpt_open(path, err, sizeof err);
    int bad = 1, nt = 0;
    if (!f) {
        report_problem(&p, err);
    } else {
        nt = ckpt_num_tensors(f);
        bad = ckpt_verify(f, report_problem, &p, err, sizeof err);
    }
    if (!json && bad) {
        printf("%s: DAMAGED\n", label);
        cJSON *it;
        cJSON_ArrayForEach(it, p.list) printf("  BAD: %s\n", it->valuestring);
    }
    if (!json && !bad)
        printf("%s: ok (%d tensors, content sha256 %.12s)\n", label, nt,
               ckpt_file_meta(f)->content_sha256);
    if (!json) cJSON_Delete(p.list);
    if (json) {
        cJSON_AddStringToObject(j, "version", label);
        cJSON_AddStringToObject(j, "path", path);
        cJSON_AddBoolToObject(j, "ok", !bad);
        cJSON_AddNumberToObject(j, "tensors", nt);
        cJSON_AddItemToObject(j, "problems", p.list);
        cJSON_AddItemToArray(arr, j);
    }
    ckpt_close(f);
    return bad;
}

/* Links and tags that point at no version. */
static int verify_links(const char *run, bool json, cJSON *out) {
    char err[4600];
    const char *names[] = {"last.h5", "best.h5"};
    int bad = 0;
    for (int i = 0; i < 2; i++) {
        char p[4400], target[64];
        snprintf(p, sizeof p, "%s/weights/%s", run, names[i]);
        ssize_t k = readlink(p, target, sizeof target - 1);
        if (k <= 0 || access(p, F_OK) == 0) continue; /* no link, or it resolves */
        target[k] = 0;
        snprintf(err, sizeof err, "%s -> %s: the version it points at does not exist", p, target);
        bad++;
        if (json)
            cJSON_AddItemToArray(out, cJSON_CreateString(err));
        else
            printf("BAD: %s\n", err);
    }
    ckpt_tag *t = NULL;
    int nt = 0;
    if (ckpt_tags_read(run, &t, &nt, err, sizeof err) != 0) {
        bad++;
        if (json)
            cJSON_AddItemToArray(out, cJSON_CreateString(err));
        else
            printf("BAD: %s\n", err);
    }
    for (int i = 0; i < nt; i++) {
        char p[4400];
        ckpt_store_version_path(run, t[i].version, p, sizeof p);
        if (access(p, F_OK) == 0) continue;
        snprintf(err, sizeof err, "tag %s -> v%04d: that version does not exist", t[i].name,
                 t[i].version);
        bad++;
        if (json)
            cJSON_AddItemToArray(out, cJSON_CreateString(err));
        else
            printf("BAD: %s\n", err);
    }
    free(t);
    return bad;
}

static bool is_dir(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Every version of a run folder and its links and tags. */
static int verify_run(const char *run, bool json, cJSON *arr, cJSON *links, int *count) {
    char err[1200];
    ckpt_entry *e = NULL;
    int n = 0, bad = 0;
    if (ckpt_store_list(run, &e, &n, err, sizeof err) != 0) {
        report_problem(&(problems){.list = links, .quiet = json}, err);
        return 1;
    }
    for (int i = 0; i < n; i++) {
        if (access(e[i].path, F_OK) != 0) continue; /* pruned meanwhile */
        bad += verify_one(e[i].path, e[i].file, json, arr) != 0;
        (*count)++;
    }
    bad += verify_links(run, json, links);
    free(e);
    if (!json && n == 0) printf("(no versions in %s/weights)\n", run);
    return bad;
}

int ckpt_cmd_verify(int argc, char **argv) {
    cli_args a;
    int rc = cli_parse(&verify_spec, argc, argv, &a);
    if (rc || a.help) return rc ? rc : cli_help(&verify_spec);
    bool json = cli_flag(&a, "json");
    cJSON *arr = json ? cJSON_CreateArray() : NULL, *links = json ? cJSON_CreateArray() : NULL;
    int bad = 0, count = 0;
    if (a.npos == 1 && is_dir(a.pos[0])) {
        bad = verify_run(a.pos[0], json, arr, links, &count);
    } else {
        ckpt_ref ref;
        rc = ckpt_cli_resolve(&verify_spec, &a, 0, true, "last", &ref);
        if (rc) {
            cli_free(&a);
            cJSON_Delete(arr);
            cJSON_Delete(links);
            return rc;
        }
        bad = verify_one(ref.path, ref.label, json, arr) != 0;
        count = 1;
    }
    if (json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddBoolToObject(j, "ok", bad == 0);
        cJSON_AddItemToObject(j, "versions", arr);
        cJSON_AddItemToObject(j, "links", links);
        cli_print_json(j);
    } else if (count > 1) {
        printf("%d version(s) checked: %s\n", count, bad ? "PROBLEMS (above)" : "all intact");
    }
    if (bad) log_error("verify: %d damaged version(s) or link(s) (listed above)", bad);
    cli_free(&a);
    return bad ? 1 : 0;
}

/* ---- tag, untag, prune -----------------------------------------------------------------------
 */

static const cli_spec tag_spec = {
    "ckpt tag",
    "<run> <version> <tag>   (or <run>:<version> <tag>)",
    "Sets a user tag on a version (weights/tags.json), or moves it there if it is on another:\n"
    "  coordinator ckpt tag runs/detect/train v5 production\n"
    "Tags are [A-Za-z0-9._-], at most 63 characters, not best, last or a version name. A tagged\n"
    "version is never pruned; other commands take it as <run>@<tag>.",
    "",
    "",
    2,
    3};

static const cli_spec untag_spec = {
    "ckpt untag", "<run> <tag>", "Removes a user tag (the version itself stays).", "", "", 2, 2};

static const cli_spec prune_spec = {
    "ckpt prune",
    "<run> keep=K",
    "Deletes old versions so that the K newest remain, besides those never deleted: what best.h5\n"
    "and last.h5 point at, save_period links (epoch{e}.h5) and tagged versions. Refused while a\n"
    "run is training in the folder (its own keep= applies then).",
    "",
    "keep",
    1,
    1};

int ckpt_cmd_tag(int argc, char **argv) {
    cli_args a;
    int rc = cli_parse(&tag_spec, argc, argv, &a);
    if (rc || a.help) return rc ? rc : cli_help(&tag_spec);
    const char *tag = a.pos[a.npos - 1];
    cli_args v = a;
    v.npos = a.npos - 1; /* the version words */
    ckpt_ref ref;
    rc = ckpt_cli_resolve(&tag_spec, &v, 0, true, NULL, &ref);
    if (rc == 0 && (!ref.run_dir[0] || !ref.version))
        rc = cli_usage_error(&tag_spec, "%s is not a version of a run folder", ref.path);
    char err[1200];
    ckpt_tag *t = NULL;
    int nt = 0, was = 0;
    if (rc == 0 && ckpt_tags_read(ref.run_dir, &t, &nt, err, sizeof err) == 0)
        for (int i = 0; i < nt; i++)
            if (!strcmp(t[i].name, tag)) was = t[i].version;
    free(t);
    if (rc == 0 && ckpt_tag_set(ref.run_dir, tag, ref.version, err, sizeof err) != 0) {
        /* a bad name is bad usage; a folder we cannot write is a failure */
        rc = strstr(err, "tag '") ? cli_usage_error(&tag_spec, "%s", err) : 1;
        if (rc == 1) log_error("%s", err);
    }
    if (rc == 0 && was && was != ref.version)
        printf("%s: %s moved from v%04d to v%04d\n", ref.run_dir, tag, was, ref.version);
    else if (rc == 0)
        printf("%s: %s -> v%04d\n", ref.run_dir, tag, ref.version);
    cli_free(&a);
    return rc;
}

int ckpt_cmd_untag(int argc, char **argv) {
    cli_args a;
    int rc = cli_parse(&untag_spec, argc, argv, &a);
    if (rc || a.help) return rc ? rc : cli_help(&untag_spec);
    char err[1200];
    if (!is_dir(a.pos[0])) {
        rc = cli_usage_error(&untag_spec, "%s: no such run folder", a.pos[0]);
    } else if (ckpt_tag_remove(a.pos[0], a.pos[1], err, sizeof err) != 0) {
        rc = strstr(err, ": no tag '") ? cli_usage_error(&untag_spec, "%s", err) : 1;
        if (rc == 1) log_error("%s", err);
    } else {
        printf("%s: tag %s removed\n", a.pos[0], a.pos[1]);
    }
    cli_free(&a);
    return rc;
}

static void print_removed(void *ctx, const char *path) {
    (void)ctx;
    printf("removed %s\n", path);
}

int ckpt_cmd_prune(int argc, char **argv) {
    cli_args a;
    int rc = cli_parse(&prune_spec, argc, argv, &a);
    if (rc || a.help) return rc ? rc : cli_help(&prune_spec);
    char err[1200];
    long keep = 0;
    const char *kv = kv_get(&a.kv, "keep");
    if (!kv)
        rc = cli_usage_error(&prune_spec, "keep=K is required");
    else if (!parse_long(kv, &keep) || keep < 1 || keep > 1000000)
        rc = cli_usage_error(&prune_spec, "keep=%s: expected a whole number >= 1", kv);
    else if (!is_dir(a.pos[0]))
        rc = cli_usage_error(&prune_spec, "%s: no such run folder", a.pos[0]);
    else if (run_lock_check(a.pos[0], err, sizeof err) != 0) {
        log_error("%s; its keep= applies while it runs: prune after it ends", err);
        rc = 1;
    }
    if (rc == 0) {
        int n =
            ckpt_store_prune(a.pos[0], (int)keep, NULL, 0, print_removed, NULL, err, sizeof err);
        if (n < 0) {
            log_error("%s", err);
            rc = 1;
        } else {
            printf("%d version(s) removed\n", n);
        }
    }
    cli_free(&a);
    return rc;
}

/* ---- the dispatcher --------------------------------------------------------------------------
 */

typedef struct subcommand {
    const char *name, *help;
    int (*run)(int argc, char **argv);
} subcommand;

static const subcommand subs[] = {
    {"ls", "<run>  the versions of a run", ckpt_cmd_ls},
    {"show", "<run> [<version>]  one version: metadata, lineage, metrics, tensors", ckpt_cmd_show},
    {"diff", "<run> <a> <b> | <run:a> <run2:b>  what differs between two versions", ckpt_cmd_diff},
    {"verify", "<run> [<version>]  re-hash versions; names each bad tensor or file",
     ckpt_cmd_verify},
    {"export", "<run> <version> format=safetensors|h5 out=FILE  EMA weights for other tools",
     ckpt_cmd_export},
    {"tag", "<run> <version> <tag>  name a version (never pruned)", ckpt_cmd_tag},
    {"untag", "<run> <tag>  remove a tag", ckpt_cmd_untag},
    {"prune", "<run> keep=K  delete old untagged versions", ckpt_cmd_prune},
};

static void ckpt_usage(FILE *f) {
    fprintf(f, "usage: coordinator ckpt <subcommand> ... (each takes --help)\n"
               "versions: v3, 3, best, last, a tag; or <run>:v3, <run>@tag, a version file\n");
    for (size_t i = 0; i < sizeof subs / sizeof *subs; i++)
        fprintf(f, "  %-7s %s\n", subs[i].name, subs[i].help);
}

int cmd_ckpt(int argc, char **argv) {
    if (argc < 1) {
        log_error("ckpt: missing subcommand (ls, show, diff, verify, export, tag, untag, prune; "
                  "try: coordinator ckpt --help)");
        return 2;
    }
    if (!strcmp(argv[0], "--help") || !strcmp(argv[0], "-h") || !strcmp(argv[0], "help")) {
        ckpt_usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < sizeof subs / sizeof *subs; i++)
        if (!strcmp(argv[0], subs[i].name)) return subs[i].run(argc - 1, argv + 1);
    log_error("ckpt: unknown subcommand '%s' (ls, show, diff, verify, export, tag, untag, prune)",
              argv[0]);
    return 2;
}
