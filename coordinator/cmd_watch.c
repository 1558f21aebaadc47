/* coordinator watch <rundir> [timeout=3] [idle=10] [key=<client key file>]
 * Prints a live run's progress, one line per event, until it finishes or fails. A run that is not
 * live (no endpoints, or no answer to "status") is summarized from its results.csv instead. */
#include "common/kv.h"
#include "common/log.h"
#include "common/timer.h"
#include "coordinator/commands.h"
#include "coordinator/telemetry.h"

#include <cjson/cJSON.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct watch_state {
    double t0, g0; /* first step event seen: time and global step */
    bool have0;
} watch_state;

static double num(const cJSON *o, const char *k, double def) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : def;
}

static const char *str(const cJSON *o, const char *k) {
    const char *s = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, k));
    return s ? s : "";
}

static void fmt_hms(double s, char *buf, size_t n) {
    if (s < 0 || s > 1e8) {
        snprintf(buf, n, "--");
        return;
    }
    long t = (long)(s + 0.5);
    snprintf(buf, n, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
}

static void print_step(const cJSON *e, watch_state *ws) {
    double epoch = num(e, "epoch", 0), epochs = num(e, "epochs", 0);
    double step = num(e, "step", 0), steps = num(e, "steps", 0), t = num(e, "time", 0);
    /* ETA: the server's estimate if it sent one, else the rate seen since watching began. */
    double g = (epoch - 1) * steps + step, total = epochs * steps, eta = num(e, "eta_s", -1);
    if (eta < 0 && ws->have0 && g > ws->g0) eta = (total - g) * (t - ws->t0) / (g - ws->g0);
    if (!ws->have0) ws->t0 = t, ws->g0 = g, ws->have0 = true;
    char etas[32];
    fmt_hms(eta, etas, sizeof etas);
    printf("epoch %g/%g step %g/%g ", epoch, epochs, step, steps);
    const cJSON *l;
    cJSON_ArrayForEach(l, cJSON_GetObjectItemCaseSensitive(e, "losses")) {
        if (cJSON_IsNumber(l)) printf(" %s %.4f", l->string, l->valuedouble);
    }
    printf("  %.1f img/s  ETA %s  stall %.3fs compute %.3fs comm %.3fs (exposed %.3fs)\n",
           num(e, "images_per_s", 0), etas, num(e, "loader_stall_s", 0), num(e, "compute_s", 0),
           num(e, "comm_s", 0), num(e, "comm_exposed_s", 0));
    const cJSON *w;
    cJSON_ArrayForEach(w, cJSON_GetObjectItemCaseSensitive(e, "workers")) {
        printf("  worker %g: compute %.3fs comm %.3fs (exposed %.3fs) stall %.3fs\n",
               num(w, "rank", -1), num(w, "compute_s", 0), num(w, "comm_s", 0),
               num(w, "comm_exposed_s", 0), num(w, "stall_s", 0));
    }
}

/* Prints one event; returns 0 to go on, 1 when the run finished, 2 when it failed. */
static int print_event(const char *text, watch_state *ws) {
    cJSON *e = cJSON_Parse(text);
    const char *kind = str(e, "event");
    int rc = 0;
    if (!strcmp(kind, "step")) {
        print_step(e, ws);
    } else if (!strcmp(kind, "epoch")) {
        printf("epoch %g/%g done:", num(e, "epoch", 0), num(e, "epochs", 0));
        const cJSON *m;
        cJSON_ArrayForEach(m, cJSON_GetObjectItemCaseSensitive(e, "metrics")) {
            if (cJSON_IsNumber(m)) printf(" %s %.5g", m->string, m->valuedouble);
        }
        printf("\n");
    } else if (!strcmp(kind, "checkpoint")) {
        if (num(e, "step", 0) < 0) /* an epoch-end version */
            printf("checkpoint %s written: %s (end of epoch %g)\n", str(e, "version"),
                   str(e, "path"), num(e, "epoch", 0));
        else
            printf("checkpoint %s written: %s (epoch %g step %g)\n", str(e, "version"),
                   str(e, "path"), num(e, "epoch", 0), num(e, "step", 0));
    } else if (!strcmp(kind, "warning")) {
        printf("warning: %s\n", str(e, "message"));
    } else if (!strcmp(kind, "finished")) {
        printf("finished: %s\n", str(e, "message"));
        rc = 1;
    } else if (!strcmp(kind, "failed")) {
        printf("failed: %s\n", str(e, "message"));
        rc = 2;
    } else {
        printf("event: %s\n", text); /* a newer server's event: show it raw */
    }
    fflush(stdout);
    cJSON_Delete(e);
    return rc;
}

static char *trim(char *s) {
    while (*s == ' ' || *s == '\t') s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r')) s[--n] = 0;
    return s;
}

/* Splits a CSV line in place (no quoting: results.csv holds names and numbers). */
static int split(char *line, char **cells, int max) {
    int n = 0;
    for (char *p = line; n < max;) {
        char *comma = strchr(p, ',');
        if (comma) *comma = 0;
        cells[n++] = trim(p);
        if (!comma) break;
        p = comma + 1;
    }
    return n;
}

#define MAX_COLS 64

/* Summary of results.csv (Ultralytics columns): epochs, last row, best mAP50-95. 0, or -1 when
 * the file is absent or empty. */
static int print_results_summary(const char *rundir) {
    char path[PATH_MAX + 32], err[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/results.csv", rundir);
    char *text = telemetry_read_text(path, (size_t)64 << 20, NULL, err, sizeof err);
    if (!text) return -1;
    char *save = NULL, *line = strtok_r(text, "\n", &save);
    char *head[MAX_COLS], *cells[MAX_COLS], *last = NULL;
    int ncol = line ? split(line, head, MAX_COLS) : 0, rows = 0, best_col = -1;
    for (int i = 0; i < ncol; i++)
        if (!strcmp(head[i], "metrics/mAP50-95(B)")) best_col = i;
    double best = -1;
    char best_epoch[64] = "";
    for (char *l = strtok_r(NULL, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        if (!trim(l)[0]) continue;
        rows++;
        last = l;
        if (best_col < 0) continue;
        char copy[4096];
        snprintf(copy, sizeof copy, "%s", l);
        int n = split(copy, cells, MAX_COLS);
        if (n > best_col && atof(cells[best_col]) > best)
            best = atof(cells[best_col]), snprintf(best_epoch, sizeof best_epoch, "%s", cells[0]);
    }
    if (ncol == 0 || rows == 0) {
        free(text);
        return -1;
    }
    printf("%s: %d epoch%s recorded\n", path, rows, rows == 1 ? "" : "s");
    int n = split(last, cells, MAX_COLS);
    printf("last epoch:\n");
    for (int i = 0; i < n && i < ncol; i++) printf("  %-22s %s\n", head[i], cells[i]);
    if (best_col >= 0) printf("best metrics/mAP50-95(B): %.5g at epoch %s\n", best, best_epoch);
    fflush(stdout);
    free(text);
    return 0;
}

static int not_live(const char *rundir, const char *why) {
    printf("run %s is not live (%s)\n", rundir, why);
    if (print_results_summary(rundir) == 0) return 0;
    printf("no results.csv in %s: nothing to summarize\n", rundir);
    return 1;
}

static int usage(void) {
    log_error("usage: coordinator watch <rundir> [timeout=SECONDS] [idle=SECONDS] [key=FILE]");
    return 2;
}

int cmd_watch(int argc, char **argv) {
    if (argc < 1 || strchr(argv[0], '=')) return usage();
    const char *rundir = argv[0], *key;
    kv_args a;
    char err[PATH_MAX + 256];
    double timeout, idle;
    if (kv_parse(argc - 1, argv + 1, &a, err, sizeof err) != 0) {
        log_error("watch: %s", err);
        return 2;
    }
    if (kv_get_double(&a, "timeout", 3.0, &timeout, err, sizeof err) != 0 ||
        kv_get_double(&a, "idle", 10.0, &idle, err, sizeof err) != 0 ||
        kv_get_str(&a, "key", NULL, &key) != 0 || kv_check_unused(&a, err, sizeof err) != 0 ||
        ((timeout <= 0 || idle <= 0) && errf(err, sizeof err, "timeout and idle must be > 0"))) {
        log_error("watch: %s", err);
        kv_free(&a);
        return 2;
    }
    telemetry_client *c = telemetry_client_open(rundir, key, err, sizeof err);
    kv_free(&a);
    if (!c) {
        if (strstr(err, "not live")) return not_live(rundir, "no endpoints.json");
        log_error("watch: %s", err);
        return 1;
    }
    const char *status = "{\"cmd\":\"status\"}";
    char *reply =
        telemetry_client_request(c, status, strlen(status), (int)(timeout * 1000), err, sizeof err);
    if (!reply) {
        telemetry_client_close(c);
        return not_live(rundir, err);
    }
    cJSON *st = cJSON_Parse(reply);
    free(reply);
    watch_state ws = {0};
    printf("watching %s (state %s, pid %g)\n", rundir, str(st, "state"), num(st, "pid", 0));
    const cJSON *last = cJSON_GetObjectItemCaseSensitive(st, "last_step");
    if (last) print_step(last, &ws);
    fflush(stdout);
    /* Already over (the server lingers briefly after the end): nothing more will come. */
    int over = !strcmp(str(st, "state"), "finished") ? 0
               : !strcmp(str(st, "state"), "failed") ? 1
                                                     : -1;
    cJSON_Delete(st);
    if (over >= 0) {
        telemetry_client_close(c);
        return over;
    }
    if (telemetry_client_subscribe(c, err, sizeof err) != 0) {
        log_error("watch: %s", err);
        telemetry_client_close(c);
        return 1;
    }
    int rc = -1;
    double quiet_since = now_seconds();
    while (rc < 0) {
        char *ev = telemetry_client_next_event(c, 500, err, sizeof err);
        if (ev) {
            int r = print_event(ev, &ws);
            free(ev);
            if (r) rc = r == 1 ? 0 : 1;
            quiet_since = now_seconds();
        } else if (err[0]) {
            log_error("watch: %s", err);
            rc = 1;
        } else if (now_seconds() - quiet_since > idle) {
            /* No events for a while: is the run still there? */
            reply = telemetry_client_request(c, status, strlen(status), (int)(timeout * 1000), err,
                                             sizeof err);
            if (!reply) {
                log_error("watch: %s stopped answering: %s", rundir, err);
                rc = 1;
            }
            free(reply);
            quiet_since = now_seconds();
        }
    }
    telemetry_client_close(c);
    return rc;
}
