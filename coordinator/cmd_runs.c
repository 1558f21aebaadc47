/* coordinator runs ls <project> | runs compare <run> <run> ...: runs side by side, from each run's
 * newest version (arguments, best metrics, dataset hash, epochs, training time) and its lock
 * (live or not). */
#include "common/kv.h"
#include "common/log.h"
#include "coordinator/ckpt_cli.h"
#include "coordinator/ckpt_store.h"
#include "coordinator/commands.h"
#include "coordinator/run_lock.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const cli_spec ls_spec = {
    "runs ls",
    "<project> [--json]",
    "One row per run folder of the project (a folder with args.yaml or weights/): its status\n"
    "(live: a run holds it now; finished; stopped: ended by ctl stop, resumable; interrupted:\n"
    "its newest version is mid-run; new: no version yet), epochs done of planned, the best\n"
    "epoch's mAP50-95 and fitness, number of versions, model, dataset sha256 (12 digits) and\n"
    "when its newest version was written. --json: the same as a JSON array.",
    "json",
    "",
    1,
    1};

static const cli_spec compare_spec = {
    "runs compare",
    "<run> <run> [<run> ...] [--json]",
    "Runs side by side, from each run's newest version: status, epochs, training time, best\n"
    "epoch, fitness, mAP50, mAP50-95 (what best.h5 holds), model, dataset sha256, then every\n"
    "argument (args.yaml) whose value is not the same in all runs. --json: all of it.",
    "json",
    "",
    2,
    CLI_MAX_POS};

typedef struct run_info {
    char dir[2048];
    bool live;
    int nversions;
    bool have; /* a version's metadata below */
    ckpt_meta m;
    char status[16];
} run_info;

static bool is_dir(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* The run's state from its newest version that opens (no full verification: metadata only). */
static void read_run(const char *dir, run_info *r) {
    memset(r, 0, sizeof *r);
    snprintf(r->dir, sizeof r->dir, "%s", dir);
    char err[1200];
    r->live = run_lock_check(dir, err, sizeof err) != 0;
    ckpt_entry *e = NULL;
    int n = 0;
    if (ckpt_store_list(dir, &e, &n, err, sizeof err) == 0) r->nversions = n;
    for (int i = n - 1; i >= 0 && !r->have; i--) {
        ckpt_file *f = ckpt_open(e[i].path, err, sizeof err);
        if (!f) continue;
        const ckpt_meta *m = ckpt_file_meta(f);
        r->m = *m; /* take the heap strings over */
        r->have = true;
        ckpt_meta blank = {0};
        *(ckpt_meta *)m = blank; /* so that closing does not free them */
        ckpt_close(f);
    }
    free(e);
    const char *s = r->live                        ? "live"
                    : !r->have                     ? "new"
                    : r->m.finished                ? "finished"
                    : !strcmp(r->m.reason, "stop") ? "stopped"
                                                   : "interrupted";
    snprintf(r->status, sizeof r->status, "%s", s);
}

static int epochs_done(const ckpt_meta *m) {
    return m->epoch_complete ? m->epoch : m->epoch - 1;
}

static cJSON *run_json(const run_info *r) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "run", r->dir);
    cJSON_AddStringToObject(j, "status", r->status);
    cJSON_AddNumberToObject(j, "versions", r->nversions);
    if (!r->have) return j;
    const ckpt_meta *m = &r->m;
    cJSON_AddNumberToObject(j, "newest_version", m->version);
    cJSON_AddStringToObject(j, "newest_written", m->created);
    cJSON_AddNumberToObject(j, "epochs_done", epochs_done(m));
    cJSON_AddNumberToObject(j, "epochs", m->epochs);
    cJSON_AddNumberToObject(j, "elapsed_s", m->elapsed_s);
    cJSON *b = cJSON_AddObjectToObject(j, "best");
    cJSON_AddNumberToObject(b, "epoch", m->best_epoch);
    if (m->best_epoch > 0) {
        cJSON_AddNumberToObject(b, "fitness", m->best_fitness);
        cJSON_AddNumberToObject(b, "mAP50", m->best_map50);
        cJSON_AddNumberToObject(b, "mAP50-95", m->best_map50_95);
    }
    cJSON_AddStringToObject(j, "model", m->model ? m->model : "");
    cJSON_AddStringToObject(j, "dataset", m->dataset ? m->dataset : "");
    cJSON_AddStringToObject(j, "dataset_sha256", m->dataset_sha256);
    cJSON *args = cJSON_AddObjectToObject(j, "args");
    kv_args kv;
    kv_from_args_yaml(m->args_yaml, &kv);
    for (int i = 0; i < kv.n; i++) cJSON_AddStringToObject(args, kv.items[i].key, kv.items[i].val);
    kv_free(&kv);
    return j;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int runs_ls(int argc, char **argv) {
    cli_args a;
    int rc = cli_parse(&ls_spec, argc, argv, &a);
    if (rc || a.help) return rc ? rc : cli_help(&ls_spec);
    const char *proj = a.pos[0];
    bool json = cli_flag(&a, "json");
    DIR *d = is_dir(proj) ? opendir(proj) : NULL;
    if (!d) {
        cli_free(&a);
        return cli_usage_error(&ls_spec, "%s: no such project folder", proj);
    }
    char **names = NULL;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        char p[4400], q[4500], w[4500];
        if (de->d_name[0] == '.') continue;
        snprintf(p, sizeof p, "%s/%s", proj, de->d_name);
        snprintf(q, sizeof q, "%s/args.yaml", p);
        snprintf(w, sizeof w, "%s/weights", p);
        if (!is_dir(p) || (access(q, F_OK) != 0 && !is_dir(w))) continue;
        names = xrealloc(names, (size_t)(n + 1) * sizeof *names);
        names[n++] = xstrdup(de->d_name);
    }
    closedir(d);
    qsort(names, (size_t)n, sizeof *names, cmp_str);
    cJSON *arr = json ? cJSON_CreateArray() : NULL;
    if (!json)
        printf("%-24s %-11s %7s %9s %8s %8s  %-14s %-12s  %s\n", "run", "status", "epochs",
               "mAP50-95", "fitness", "versions", "model", "dataset", "newest version (UTC)");
    for (int i = 0; i < n; i++) {
        char p[4400];
        snprintf(p, sizeof p, "%s/%s", proj, names[i]);
        run_info r;
        read_run(p, &r);
        if (json) {
            cJSON *j = run_json(&r);
            cJSON_AddStringToObject(j, "name", names[i]);
            cJSON_AddItemToArray(arr, j);
        } else {
            char ep[32] = "-", map[16] = "-", fit[16] = "-", when[32] = "-";
            if (r.have) {
                snprintf(ep, sizeof ep, "%d/%d", epochs_done(&r.m), r.m.epochs);
                if (r.m.best_epoch > 0) {
                    snprintf(map, sizeof map, "%.4f", r.m.best_map50_95);
                    snprintf(fit, sizeof fit, "%.4f", r.m.best_fitness);
                }
                ckpt_cli_time(r.m.created, when, sizeof when);
            }
            printf("%-24s %-11s %7s %9s %8s %8d  %-14s %-12.12s  %s\n", names[i], r.status, ep, map,
                   fit, r.nversions, r.have && r.m.model ? r.m.model : "-",
                   r.have ? r.m.dataset_sha256 : "-", when);
        }
        ckpt_meta_free(&r.m);
        free(names[i]);
    }
    free(names);
    if (json) cli_print_json(arr);
    if (!json && n == 0) printf("(no run folders in %s)\n", proj);
    cli_free(&a);
    return 0;
}

/* The args.yaml keys whose values are not the same in every run that has a version. */
static void print_args_differ(run_info *r, int n) {
    kv_args *kv = xcalloc((size_t)n, sizeof *kv);
    for (int i = 0; i < n; i++)
        if (r[i].have) kv_from_args_yaml(r[i].m.args_yaml, &kv[i]);
    int shown = 0;
    for (int i = 0; i < n; i++)
        for (int k = 0; k < kv[i].n; k++) {
            const char *key = kv[i].items[k].key;
            bool seen_before = false, differs = false;
            for (int j = 0; j < i && !seen_before; j++)
                for (int q = 0; q < kv[j].n; q++)
                    if (!strcmp(kv[j].items[q].key, key)) seen_before = true;
            if (seen_before || !strcmp(key, "save_dir")) continue;
            char vals[CLI_MAX_POS][256];
            for (int j = 0; j < n; j++) {
                char v[256];
                kv_args_yaml_value(r[j].have ? r[j].m.args_yaml : "", key, v, sizeof v);
                snprintf(vals[j], sizeof vals[j], "%s", r[j].have ? (v[0] ? v : "(absent)") : "-");
                if (j && strcmp(vals[j], vals[0])) differs = true;
            }
            if (!differs) continue;
            if (!shown++) printf("\narguments that differ:\n");
            printf("  %-20s", key);
            for (int j = 0; j < n; j++) printf(" %-20s", vals[j]);
            printf("\n");
        }
    if (!shown) printf("\narguments that differ: none\n");
    for (int i = 0; i < n; i++) kv_free(&kv[i]);
    free(kv);
}

static void print_row(const char *label, run_info *r, int n, int which) {
    printf("%-22s", label);
    for (int i = 0; i < n; i++) {
        char v[64] = "-";
        const ckpt_meta *m = &r[i].m;
        bool best = r[i].have && m->best_epoch > 0;
        switch (which) {
        case 0:
            snprintf(v, sizeof v, "%s", r[i].status);
            break;
        case 1:
            if (r[i].have) snprintf(v, sizeof v, "%d/%d", epochs_done(m), m->epochs);
            break;
        case 2:
            if (r[i].have) snprintf(v, sizeof v, "%.1f s", m->elapsed_s);
            break;
        case 3:
            if (best) snprintf(v, sizeof v, "%d", m->best_epoch);
            break;
        case 4:
            if (best) snprintf(v, sizeof v, "%.5f", m->best_fitness);
            break;
        case 5:
            if (best) snprintf(v, sizeof v, "%.5f", m->best_map50);
            break;
        case 6:
            if (best) snprintf(v, sizeof v, "%.5f", m->best_map50_95);
            break;
        case 7:
            if (r[i].have) snprintf(v, sizeof v, "%s", m->model ? m->model : "");
            break;
        case 8:
            if (r[i].have) snprintf(v, sizeof v, "%.12s", m->dataset_sha256);
            break;
        case 9:
            snprintf(v, sizeof v, "%d", r[i].nversions);
            break;
        }
        printf(" %-20s", v);
    }
    printf("\n");
}

static int runs_compare(int argc, char **argv) {
    cli_args a;
    int rc = cli_parse(&compare_spec, argc, argv, &a);
    if (rc || a.help) return rc ? rc : cli_help(&compare_spec);
    for (int i = 0; i < a.npos && rc == 0; i++)
        if (!is_dir(a.pos[i]))
            rc = cli_usage_error(&compare_spec, "%s: no such run folder", a.pos[i]);
    if (rc) {
        cli_free(&a);
        return rc;
    }
    run_info *r = xcalloc((size_t)a.npos, sizeof *r);
    for (int i = 0; i < a.npos; i++) read_run(a.pos[i], &r[i]);
    if (cli_flag(&a, "json")) {
        cJSON *arr = cJSON_CreateArray();
        for (int i = 0; i < a.npos; i++) cJSON_AddItemToArray(arr, run_json(&r[i]));
        cli_print_json(arr);
    } else {
        printf("%-22s", "run");
        for (int i = 0; i < a.npos; i++) printf(" %-20s", a.pos[i]);
        printf("\n");
        const char *labels[] = {"status",         "epochs",     "training time", "best epoch",
                                "best fitness",   "best mAP50", "best mAP50-95", "model",
                                "dataset sha256", "versions"};
        for (int k = 0; k < 10; k++) print_row(labels[k], r, a.npos, k);
        print_args_differ(r, a.npos);
    }
    for (int i = 0; i < a.npos; i++) ckpt_meta_free(&r[i].m);
    free(r);
    cli_free(&a);
    return 0;
}

int cmd_runs(int argc, char **argv) {
    if (argc < 1) {
        log_error("runs: missing subcommand (ls, compare; try: coordinator runs --help)");
        return 2;
    }
    if (!strcmp(argv[0], "--help") || !strcmp(argv[0], "-h") || !strcmp(argv[0], "help")) {
        printf("usage: coordinator runs <subcommand> ... (each takes --help)\n"
               "  ls      <project>  the runs of a project folder\n"
               "  compare <run> <run> ...  runs side by side\n");
        return 0;
    }
    if (!strcmp(argv[0], "ls")) return runs_ls(argc - 1, argv + 1);
    if (!strcmp(argv[0], "compare")) return runs_compare(argc - 1, argv + 1);
    log_error("runs: unknown subcommand '%s' (ls, compare)", argv[0]);
    return 2;
}
