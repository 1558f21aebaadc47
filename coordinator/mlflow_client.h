/* A small client of MLflow's tracking REST API (https://mlflow.org/docs/latest/rest-api.html)
 * over libcurl: what the MLflow sink needs to log a training run (experiments, runs, batches of
 * params / metrics / tags, the run's end). Blocking calls, one request at a time; the sink calls
 * them from its own thread.
 *
 * Credentials come from MLflow's standard environment variables, never from arguments (they would
 * end up in args.yaml): MLFLOW_TRACKING_TOKEN (a bearer token) or MLFLOW_TRACKING_USERNAME and
 * MLFLOW_TRACKING_PASSWORD (HTTP basic), and MLFLOW_TRACKING_INSECURE_TLS=true to skip TLS
 * verification. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct mlflow_client mlflow_client;

/* The outcome of a call: 0 done; MLFLOW_RETRY a failure worth retrying (connection refused,
 * timeout, HTTP 429 or 5xx); MLFLOW_FAIL any other (HTTP 4xx with the server's message). */
enum { MLFLOW_RETRY = 1, MLFLOW_FAIL = 2 };

/* uri: http:// or https:// (a trailing '/' is fine). NULL with one line in err for any other
 * (MLflow's file store is not a REST server). timeout_s bounds each request. */
mlflow_client *mlflow_client_new(const char *uri, double timeout_s, char *err, size_t errlen);
void mlflow_client_free(mlflow_client *c);
const char *mlflow_client_uri(const mlflow_client *c);

/* The experiment's id by name, created when absent. */
int mlflow_experiment_ensure(mlflow_client *c, const char *name, char *id, size_t n, char *err,
                             size_t errlen);

typedef struct mlflow_kv {
    const char *key, *value;
} mlflow_kv;

/* A new run (status RUNNING) with tags; its id into run_id. start_ms: unix milliseconds. */
int mlflow_run_create(mlflow_client *c, const char *experiment_id, const char *run_name,
                      int64_t start_ms, const mlflow_kv *tags, int ntags, char *run_id, size_t n,
                      char *err, size_t errlen);

/* The id of a run of the experiment whose tag `key` has `value` (run_id "" when none): how a
 * create that timed out, but may have reached the server, is found before it is tried again. */
int mlflow_run_find_by_tag(mlflow_client *c, const char *experiment_id, const char *key,
                           const char *value, char *run_id, size_t n, char *err, size_t errlen);

typedef struct mlflow_metric {
    char key[128];
    double value;
    int64_t timestamp_ms, step;
} mlflow_metric;

/* One log-batch request (at most 1000 metrics, 100 params and 100 tags: MLflow's limits; the
 * caller splits). Params may be logged again with the same value; a changed value is refused. */
int mlflow_log_batch(mlflow_client *c, const char *run_id, const mlflow_metric *m, int nm,
                     const mlflow_kv *params, int np, const mlflow_kv *tags, int nt, char *err,
                     size_t errlen);

/* status: "RUNNING" (a resumed run), "FINISHED", "FAILED" or "KILLED"; end_ms 0: none. */
int mlflow_run_update(mlflow_client *c, const char *run_id, const char *status, int64_t end_ms,
                      char *err, size_t errlen);

/* MLflow's metric key rule (letters, digits, _ - . space : /), as Ultralytics' MLflow callback
 * makes results.csv names fit it: parentheses removed ("metrics/mAP50(B)" -> "metrics/mAP50B");
 * any other character outside the rule becomes '_'. */
void mlflow_sanitize_key(const char *in, char *out, size_t n);

/* Unix time in milliseconds. */
int64_t mlflow_now_ms(void);
