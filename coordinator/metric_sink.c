/* The sink list: fan-out, warn-and-disable. */
#include "coordinator/metric_sink.h"

#include "common/log.h"
#include "coordinator/telemetry.h"

#include <stdlib.h>
#include <string.h>

struct metric_sinks {
    metric_sink *s;
    bool *on;
    int n;
    metric_sink_warn_fn warn;
    void *warn_ctx;
};

metric_sinks *metric_sinks_new(metric_sink_warn_fn warn, void *warn_ctx) {
    metric_sinks *l = xcalloc(1, sizeof *l);
    l->warn = warn;
    l->warn_ctx = warn_ctx;
    return l;
}

static void warn(metric_sinks *l, const char *name, const char *err) {
    char msg[1400];
    snprintf(msg, sizeof msg, "%s: %s; %s is off for the rest of this run", name,
             err[0] ? err : "failed", name);
    log_warn("%s", msg);
    if (l->warn) l->warn(l->warn_ctx, msg);
}

void metric_sinks_add(metric_sinks *l, metric_sink s) {
    l->s = xrealloc(l->s, (size_t)(l->n + 1) * sizeof *l->s);
    l->on = xrealloc(l->on, (size_t)(l->n + 1) * sizeof *l->on);
    l->s[l->n] = s;
    l->on[l->n] = true;
    l->n++;
}

void metric_sinks_open(metric_sinks *l, const char *name, metric_sink_open_fn open,
                       const sink_run *run) {
    char err[1024] = "";
    metric_sink s = {0};
    if (open(run, &s, err, sizeof err) != 0)
        warn(l, name, err);
    else
        metric_sinks_add(l, s);
}

/* A sink whose call failed is closed at once (so it releases files and sockets) and skipped. */
static void disable(metric_sinks *l, int i, const char *err) {
    const char *name = l->s[i].ops->name;
    warn(l, name, err);
    char e2[512] = "";
    l->s[i].ops->close(l->s[i].self, false, e2, sizeof e2);
    l->on[i] = false;
}

#define FAN_OUT(fn, rec)                                                                           \
    do {                                                                                           \
        if (!l) return;                                                                            \
        for (int i = 0; i < l->n; i++) {                                                           \
            char err[1024] = "";                                                                   \
            if (l->on[i] && l->s[i].ops->fn &&                                                     \
                l->s[i].ops->fn(l->s[i].self, rec, err, sizeof err))                               \
                disable(l, i, err);                                                                \
        }                                                                                          \
    } while (0)

void metric_sinks_step(metric_sinks *l, const sink_step *r) {
    FAN_OUT(step, r);
}

void metric_sinks_epoch(metric_sinks *l, const sink_epoch *r) {
    FAN_OUT(epoch, r);
}

void metric_sinks_validation(metric_sinks *l, const sink_validation *v) {
    FAN_OUT(validation, v);
}

void metric_sinks_version(metric_sinks *l, const sink_version *v) {
    FAN_OUT(version, v);
}

void metric_sinks_close(metric_sinks *l, bool ok) {
    if (!l) return;
    for (int i = 0; i < l->n; i++) {
        char err[1024] = "";
        if (l->on[i] && l->s[i].ops->close(l->s[i].self, ok, err, sizeof err) != 0) {
            char msg[1200];
            snprintf(msg, sizeof msg, "%s: %s", l->s[i].ops->name, err[0] ? err : "close failed");
            log_warn("%s", msg);
            if (l->warn) l->warn(l->warn_ctx, msg);
        }
    }
    free(l->s);
    free(l->on);
    free(l);
}

int metric_sinks_active(const metric_sinks *l) {
    int n = 0;
    for (int i = 0; l && i < l->n; i++) n += l->on[i];
    return n;
}

/* ---- the training run's list ------------------------------------------------------------------
 */

void metric_sink_warn_telemetry(void *tel, const char *message) {
    if (tel) telemetry_publish_warning(tel, message);
}

metric_sinks *metric_sinks_for_training(const sink_run *run, telemetry *tel) {
    metric_sinks *l = metric_sinks_new(metric_sink_warn_telemetry, tel);
    metric_sinks_open(l, "results.csv", sink_results_csv_open, run);
    if (tel) metric_sinks_add(l, sink_telemetry(tel));
    metric_sinks_open(l, "tensorboard", sink_tensorboard_open, run);
    if (run->args->plots) metric_sinks_open(l, "charts", sink_charts_open, run);
    if (sink_mlflow_uri(run->args)) metric_sinks_open(l, "mlflow", sink_mlflow_open, run);
    return l;
}
