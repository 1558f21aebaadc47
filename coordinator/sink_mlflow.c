/* The MLflow sink: a training run logged to an MLflow tracking server as Ultralytics' MLflow
 * callback logs it (experiment = project, run name = name, params = the arguments, metrics per
 * epoch at step = the 0-based epoch, keys without parentheses), plus the lineage as tags and every
 * checkpoint version as a reference (docs/tracking.md).
 *
 * The training loop must never wait for a server: every call only queues a job; one thread of the
 * sink sends them in order (mlflow_client.h), retrying transient failures (connection refused,
 * timeouts, HTTP 429/5xx) a few times. When it gives up, the next call of the training loop
 * returns -1 with the reason and the sink list turns the sink off with one warning. */
#include "common/atomic_file.h"
#include "common/code_version.h"
#include "common/log.h"
#include "coordinator/metric_sink.h"
#include "coordinator/mlflow_client.h"
#include "coordinator/model_source.h"

#include <cjson/cJSON.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#define REQUEST_TIMEOUT_S 10.0
#define RETRIES 3         /* after the first try; backoff 0.5, 1, 2 s */
#define CLOSE_WAIT_S 30.0 /* at the end of training, for the queue to drain */
#define MAX_PARAMS 100    /* per log-batch request (MLflow's limit) */
#define MAX_TAGS 100
#define TOKEN_TAG "yolo.create_token" /* see create_run */
#define RUN_FILE "mlflow.json" /* in the run folder: a resumed run logs to the same MLflow run */

typedef enum { JOB_LOG, JOB_END } job_kind;

/* Owned key/value strings. */
typedef struct kv_list {
    mlflow_kv *kv;
    int n, cap;
} kv_list;

typedef struct job {
    job_kind kind;
    kv_list params, tags;
    mlflow_metric *metrics;
    int nmetrics;
    char status[16]; /* JOB_END */
    struct job *next;
} job;

typedef struct mlflow_sink {
    mlflow_client *client;
    char experiment[1024], run_name[256], run_file[PATH_MAX + 16];
    char run_id[128]; /* from RUN_FILE (a resumed run) or created by the thread */
    char token[40];   /* TOKEN_TAG's value: random hex */
    kv_list create_tags;
    pthread_t thread;
    bool started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    job *head, *tail;
    bool done;    /* the thread has finished (JOB_END sent or given up) */
    bool failed;  /* gave up: message in error */
    bool abandon; /* close waited long enough: drop what is left */
    char error[1024];
} mlflow_sink;

static void kv_add(kv_list *l, const char *k, const char *v) {
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 16;
        l->kv = xrealloc(l->kv, (size_t)l->cap * sizeof *l->kv);
    }
    l->kv[l->n++] = (mlflow_kv){xstrdup(k), xstrdup(v)};
}

static void kv_clear(kv_list *l) {
    for (int i = 0; i < l->n; i++) free((void *)l->kv[i].key), free((void *)l->kv[i].value);
    free(l->kv);
    memset(l, 0, sizeof *l);
}

static void job_free(job *j) {
    kv_clear(&j->params);
    kv_clear(&j->tags);
    free(j->metrics);
    free(j);
}

const char *sink_mlflow_uri(const train_args *a) {
    const char *u = a->mlflow;
    if (!u[0] || !strcmp(u, "null") || !strcasecmp(u, "none")) u = getenv("MLFLOW_TRACKING_URI");
    if (!u || !u[0] || !strcasecmp(u, "false")) return NULL;
    return u;
}

/* ---- the thread ----------------------------------------------------------------------------- */

static void sleep_s(double s) {
    struct timespec t = {(time_t)s, (long)((s - (long)s) * 1e9)};
    nanosleep(&t, NULL);
}

/* Calls fn until it succeeds, fails for good, or RETRIES transient failures later. */
#define WITH_RETRIES(rc, call)                                                                     \
    do {                                                                                           \
        double wait_s = 0.5;                                                                       \
        for (int try_ = 0;; try_++) {                                                              \
            rc = (call);                                                                           \
            if (rc != MLFLOW_RETRY || try_ == RETRIES || s->abandon) break;                        \
            sleep_s(wait_s);                                                                       \
            wait_s *= 2;                                                                           \
        }                                                                                          \
    } while (0)

/* runs/create is not idempotent: a request that timed out may still have created the run, and
 * trying again would make a second one. Each attempt carries this sink's token as a tag, and a
 * retry first looks for a run with it. */
static int create_run(mlflow_sink *s, const char *exp_id, char *err, size_t errlen) {
    double wait_s = 0.5;
    for (int try_ = 0;; try_++) {
        int rc = 0;
        if (try_ > 0) {
            rc = mlflow_run_find_by_tag(s->client, exp_id, TOKEN_TAG, s->token, s->run_id,
                                        sizeof s->run_id, err, errlen);
            if (rc == 0 && s->run_id[0]) return 0;
        }
        if (rc == 0)
            rc = mlflow_run_create(s->client, exp_id, s->run_name, mlflow_now_ms(),
                                   s->create_tags.kv, s->create_tags.n, s->run_id, sizeof s->run_id,
                                   err, errlen);
        if (rc != MLFLOW_RETRY || try_ == RETRIES || s->abandon) return rc;
        sleep_s(wait_s);
        wait_s *= 2;
    }
}

/* The MLflow run: the one of RUN_FILE (set to RUNNING again), or a new one, recorded there. */
static int start_run(mlflow_sink *s, char *err, size_t errlen) {
    int rc;
    if (s->run_id[0]) {
        WITH_RETRIES(rc, mlflow_run_update(s->client, s->run_id, "RUNNING", 0, err, errlen));
        return rc;
    }
    char exp_id[128];
    WITH_RETRIES(
        rc, mlflow_experiment_ensure(s->client, s->experiment, exp_id, sizeof exp_id, err, errlen));
    if (rc != 0) return rc;
    if ((rc = create_run(s, exp_id, err, errlen)) != 0) return rc;
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "tracking_uri", mlflow_client_uri(s->client));
    cJSON_AddStringToObject(j, "experiment_id", exp_id);
    cJSON_AddStringToObject(j, "run_id", s->run_id);
    char *text = cJSON_Print(j);
    cJSON_Delete(j);
    char werr[512];
    if (atomic_write_file(s->run_file, text, strlen(text), werr, sizeof werr) != 0)
        log_warn("mlflow: %s (a resumed run will start a new MLflow run)", werr);
    free(text);
    return 0;
}

static int send_job(mlflow_sink *s, const job *j, char *err, size_t errlen) {
    int rc = 0;
    if (j->kind == JOB_END) {
        WITH_RETRIES(
            rc, mlflow_run_update(s->client, s->run_id, j->status, mlflow_now_ms(), err, errlen));
        return rc;
    }
    /* params and tags in slices of MLflow's per-request limits; metrics with the first slice */
    int np = j->params.n, nt = j->tags.n;
    for (int p = 0, t = 0, first = 1; rc == 0 && (first || p < np || t < nt); first = 0) {
        int kp = np - p < MAX_PARAMS ? np - p : MAX_PARAMS,
            kt = nt - t < MAX_TAGS ? nt - t : MAX_TAGS;
        WITH_RETRIES(rc, mlflow_log_batch(s->client, s->run_id, first ? j->metrics : NULL,
                                          first ? j->nmetrics : 0, j->params.kv + p, kp,
                                          j->tags.kv + t, kt, err, errlen));
        p += kp, t += kt;
    }
    return rc;
}

static void *thread_main(void *arg) {
    mlflow_sink *s = arg;
    char err[1024] = "";
    int rc = start_run(s, err, sizeof err);
    for (;;) {
        pthread_mutex_lock(&s->mu);
        while (!s->head && !s->abandon) pthread_cond_wait(&s->cv, &s->mu);
        job *j = s->abandon ? NULL : s->head;
        if (j) {
            s->head = j->next;
            if (!s->head) s->tail = NULL;
        }
        pthread_mutex_unlock(&s->mu);
        if (!j) break;
        if (rc == 0) rc = send_job(s, j, err, sizeof err);
        bool end = j->kind == JOB_END;
        job_free(j);
        if (rc != 0 || end) break;
    }
    pthread_mutex_lock(&s->mu);
    if (rc != 0) {
        s->failed = true;
        snprintf(s->error, sizeof s->error, "%s", err);
    }
    s->done = true;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* ---- the sink ------------------------------------------------------------------------------- */

/* Queues j; -1 with the thread's reason when it has given up (j is dropped). */
static int enqueue(mlflow_sink *s, job *j, char *err, size_t errlen) {
    pthread_mutex_lock(&s->mu);
    int rc = 0;
    if (s->failed || s->done) {
        rc = errf(err, errlen, "%s", s->failed ? s->error : "the MLflow run has ended");
        job_free(j);
    } else {
        if (s->tail)
            s->tail->next = j;
        else
            s->head = j;
        s->tail = j;
        pthread_cond_signal(&s->cv);
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

static int check(void *self, const sink_step *r, char *err, size_t errlen) {
    (void)r;
    mlflow_sink *s = self;
    pthread_mutex_lock(&s->mu);
    int rc = s->failed ? errf(err, errlen, "%s", s->error) : 0;
    pthread_mutex_unlock(&s->mu);
    return rc;
}

static int on_epoch(void *self, const sink_epoch *r, char *err, size_t errlen) {
    const char *names[RESULTS_MAX_COLUMNS];
    double v[RESULTS_MAX_COLUMNS];
    int n = results_csv_columns(r->row, names, v);
    job *j = xcalloc(1, sizeof *j);
    j->kind = JOB_LOG;
    j->metrics = xcalloc((size_t)n + 1, sizeof *j->metrics);
    int64_t now = mlflow_now_ms(), epoch = 0;
    for (int i = 0; i < n; i++)
        if (!strcmp(names[i], "epoch")) epoch = (int64_t)v[i];
    for (int i = 0; i < n; i++) {
        if (!strcmp(names[i], "epoch")) continue;
        mlflow_metric *m = &j->metrics[j->nmetrics++];
        mlflow_sanitize_key(names[i], m->key, sizeof m->key);
        m->value = v[i];
        m->timestamp_ms = now;
        m->step = epoch - 1; /* Ultralytics logs at trainer.epoch, 0-based */
    }
    return enqueue(self, j, err, errlen);
}

/* A version as a reference: tag checkpoint/vNNNN = its file URI (the file stays where it is;
 * the MLflow run points at it), and checkpoint/best, checkpoint/last following the links. */
static int on_version(void *self, const sink_version *v, char *err, size_t errlen) {
    char abs[PATH_MAX], uri[PATH_MAX + 64], key[64], desc[PATH_MAX + 256];
    if (!realpath(v->path, abs)) snprintf(abs, sizeof abs, "%s", v->path);
    snprintf(uri, sizeof uri, "file://%s", abs);
    job *j = xcalloc(1, sizeof *j);
    j->kind = JOB_LOG;
    snprintf(key, sizeof key, "checkpoint/v%04d", v->version);
    if (v->step < 0)
        snprintf(desc, sizeof desc, "%s (%s, end of epoch %d, %lld bytes)", uri, v->reason,
                 v->epoch, (long long)v->bytes);
    else
        snprintf(desc, sizeof desc, "%s (%s, epoch %d step %d, %lld bytes)", uri, v->reason,
                 v->epoch, v->step, (long long)v->bytes);
    kv_add(&j->tags, key, desc);
    kv_add(&j->tags, "checkpoint/last", uri);
    if (v->best) kv_add(&j->tags, "checkpoint/best", uri);
    return enqueue(self, j, err, errlen);
}

static int on_close(void *self, bool ok, char *err, size_t errlen) {
    mlflow_sink *s = self;
    int rc = 0;
    if (s->started) {
        job *j = xcalloc(1, sizeof *j);
        j->kind = JOB_END;
        snprintf(j->status, sizeof j->status, "%s", ok ? "FINISHED" : "FAILED");
        char e2[1024] = "";
        enqueue(s, j, e2, sizeof e2);
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += (time_t)CLOSE_WAIT_S;
        pthread_mutex_lock(&s->mu);
        while (!s->done)
            if (pthread_cond_timedwait(&s->cv, &s->mu, &until) != 0) break;
        if (!s->done) { /* a slow server: give up on what is left (one request may still run) */
            s->abandon = true;
            snprintf(s->error, sizeof s->error,
                     "the server did not take the run's last records within %.0f s; the MLflow "
                     "run may show as RUNNING",
                     CLOSE_WAIT_S);
            s->failed = true;
            pthread_cond_broadcast(&s->cv);
        }
        pthread_mutex_unlock(&s->mu);
        pthread_join(s->thread, NULL);
        if (s->failed) rc = errf(err, errlen, "%s", s->error);
    }
    for (job *k = s->head; k;) {
        job *next = k->next;
        job_free(k);
        k = next;
    }
    kv_clear(&s->create_tags);
    mlflow_client_free(s->client);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s);
    return rc;
}

static const metric_sink_ops mlflow_ops = {
    .name = "mlflow", .step = check, .epoch = on_epoch, .version = on_version, .close = on_close};

/* The MLflow run of RUN_FILE when it was made on this tracking server. */
static void read_run_file(mlflow_sink *s) {
    FILE *f = fopen(s->run_file, "rb");
    if (!f) return;
    char buf[4096];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    cJSON *j = cJSON_Parse(buf);
    const char *u = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "tracking_uri"));
    const char *id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "run_id"));
    if (u && id && !strcmp(u, mlflow_client_uri(s->client)))
        snprintf(s->run_id, sizeof s->run_id, "%s", id);
    cJSON_Delete(j);
}

/* Params: every `key: value` line of args.yaml, as written there. */
static void add_params(job *j, const train_args *a) {
    char *text = train_args_yaml_text(a);
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        char *colon = strstr(line, ": ");
        if (!colon) continue;
        *colon = 0;
        kv_add(&j->params, line, colon + 2);
    }
    free(text);
}

static void add_lineage_tags(kv_list *t, const sink_run *run) {
    const train_args *a = run->args;
    char buf[PATH_MAX + 64], name[1024], e[1200];
    kv_add(t, "yolo.dataset_sha256", dataset_hash(run->ds));
    kv_add(t, "yolo.dataset", a->data);
    kv_add(t, "yolo.model", a->model);
    /* a yaml's text, or the architecture a weights file records (fine-tuning) */
    char *yaml = model_source_yaml(a->model, name, sizeof name, e, sizeof e);
    if (yaml) {
        kv_add(t, "yolo.model_yaml", yaml);
        free(yaml);
    }
    kv_add(t, "yolo.code_version", code_version());
    snprintf(buf, sizeof buf, "%d", run->workers);
    kv_add(t, "yolo.world_size", buf);
    if (!realpath(run->save_dir, buf)) snprintf(buf, sizeof buf, "%s", run->save_dir);
    kv_add(t, "yolo.run_dir", buf);
    char host[256] = "";
    if (gethostname(host, sizeof host - 1) == 0) kv_add(t, "yolo.host", host);
    kv_add(t, "yolo.ultralytics", ul_version_name(a->ultralytics));
}

/* 128 random bits as hex; without getrandom (never expected), the clock and the process id,
 * which only need to differ from other runs' tokens in the same experiment. */
static void make_token(char *out, size_t n) {
    uint64_t v[2];
    if (getrandom(v, sizeof v, 0) != (ssize_t)sizeof v) {
        struct timespec t;
        clock_gettime(CLOCK_REALTIME, &t);
        v[0] = (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
        v[1] = (uint64_t)getpid();
    }
    snprintf(out, n, "%016llx%016llx", (unsigned long long)v[0], (unsigned long long)v[1]);
}

int sink_mlflow_open(const sink_run *run, metric_sink *out, char *err, size_t errlen) {
    const char *uri = sink_mlflow_uri(run->args);
    if (!uri) return errf(err, errlen, "no tracking URI");
    mlflow_client *c = mlflow_client_new(uri, REQUEST_TIMEOUT_S, err, errlen);
    if (!c) return -1;
    mlflow_sink *s = xcalloc(1, sizeof *s);
    s->client = c;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    const train_args *a = run->args;
    const char *en = getenv("MLFLOW_EXPERIMENT_NAME"), *rn = getenv("MLFLOW_RUN");
    snprintf(s->experiment, sizeof s->experiment, "%s",
             en && *en       ? en
             : a->project[0] ? a->project
                             : "/Shared/Ultralytics");
    /* the folder's actual name (train2 when train existed), which is what name= became */
    const char *base = strrchr(run->save_dir, '/');
    snprintf(s->run_name, sizeof s->run_name, "%s", rn && *rn ? rn : base ? base + 1 : a->name);
    snprintf(s->run_file, sizeof s->run_file, "%s/%s", run->save_dir, RUN_FILE);
    read_run_file(s);
    job *first = xcalloc(1, sizeof *first);
    first->kind = JOB_LOG;
    if (!s->run_id[0]) { /* a new MLflow run: its params (they cannot change later) and tags */
        add_params(first, a);
        add_lineage_tags(&s->create_tags, run);
        make_token(s->token, sizeof s->token);
        kv_add(&s->create_tags, TOKEN_TAG, s->token);
    } else {
        kv_add(&first->tags, "yolo.resumed", "true");
    }
    s->head = s->tail = first;
    int rc = pthread_create(&s->thread, NULL, thread_main, s);
    if (rc != 0) {
        errf(err, errlen, "cannot start its thread: %s", strerror(rc));
        on_close(s, false, NULL, 0);
        return -1;
    }
    s->started = true;
    log_info("mlflow: logging run '%s' of experiment '%s' to %s", s->run_name, s->experiment,
             mlflow_client_uri(c));
    *out = (metric_sink){.ops = &mlflow_ops, .self = s};
    return 0;
}
