/* MLflow tracking REST API over libcurl (mlflow_client.h). */
#include "coordinator/mlflow_client.h"

#include "common/log.h"

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

struct mlflow_client {
    char uri[1024]; /* without the trailing '/' */
    CURL *curl;
    struct curl_slist *headers;
    char auth[1200]; /* "Authorization: Bearer ..." or "" */
    long timeout_ms;
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;
static void curl_init(void) {
    curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

int64_t mlflow_now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

void mlflow_sanitize_key(const char *in, char *out, size_t n) {
    size_t k = 0;
    for (const char *p = in; *p && k + 1 < n; p++) {
        char ch = *p;
        if (ch == '(' || ch == ')') continue;
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                  (ch >= '0' && ch <= '9') || strchr("_-. :/", ch);
        out[k++] = ok ? ch : '_';
    }
    if (n) out[k] = 0;
}

mlflow_client *mlflow_client_new(const char *uri, double timeout_s, char *err, size_t errlen) {
    if (strncmp(uri, "http://", 7) && strncmp(uri, "https://", 8)) {
        errf(err, errlen,
             "mlflow=%s: expected an http:// or https:// tracking server (start one with "
             "`mlflow server`; MLflow's file store has no REST API)",
             uri);
        return NULL;
    }
    pthread_once(&curl_once, curl_init);
    if (curl_init_rc != CURLE_OK) {
        errf(err, errlen, "libcurl: %s", curl_easy_strerror(curl_init_rc));
        return NULL;
    }
    mlflow_client *c = xcalloc(1, sizeof *c);
    snprintf(c->uri, sizeof c->uri, "%s", uri);
    size_t len = strlen(c->uri);
    while (len > 0 && c->uri[len - 1] == '/') c->uri[--len] = 0;
    c->timeout_ms = (long)(timeout_s * 1000);
    c->curl = curl_easy_init();
    if (!c->curl) {
        free(c);
        errf(err, errlen, "libcurl: cannot create a handle");
        return NULL;
    }
    c->headers = curl_slist_append(NULL, "Content-Type: application/json");
    const char *token = getenv("MLFLOW_TRACKING_TOKEN");
    if (token && *token) {
        snprintf(c->auth, sizeof c->auth, "Authorization: Bearer %s", token);
        c->headers = curl_slist_append(c->headers, c->auth);
    }
    return c;
}

void mlflow_client_free(mlflow_client *c) {
    if (!c) return;
    curl_slist_free_all(c->headers);
    curl_easy_cleanup(c->curl);
    free(c);
}

const char *mlflow_client_uri(const mlflow_client *c) {
    return c->uri;
}

typedef struct buffer {
    char *p;
    size_t n;
} buffer;

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *ud) {
    buffer *b = ud;
    size_t k = size * nmemb;
    b->p = xrealloc(b->p, b->n + k + 1);
    memcpy(b->p + b->n, ptr, k);
    b->n += k;
    b->p[b->n] = 0;
    return k;
}

/* One request: GET when body is NULL, else POST of the JSON body. *reply: the parsed answer
 * (may be NULL). Returns 0, MLFLOW_RETRY or MLFLOW_FAIL with err. */
static int request(mlflow_client *c, const char *path, const cJSON *body, cJSON **reply, char *err,
                   size_t errlen) {
    char url[2048];
    snprintf(url, sizeof url, "%s%s", c->uri, path);
    CURL *h = c->curl;
    curl_easy_reset(h);
    buffer b = {0};
    char *text = body ? cJSON_PrintUnformatted(body) : NULL;
    if (body && !text) FATAL("cJSON_PrintUnformatted: out of memory");
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, c->headers);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, c->timeout_ms);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, c->timeout_ms < 5000 ? c->timeout_ms : 5000L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L); /* called from a thread */
    curl_easy_setopt(h, CURLOPT_USERAGENT, "yolo-cluster-mlflow/1");
    const char *user = getenv("MLFLOW_TRACKING_USERNAME"),
               *pass = getenv("MLFLOW_TRACKING_PASSWORD");
    if (user && *user && !c->auth[0]) {
        curl_easy_setopt(h, CURLOPT_HTTPAUTH, CURLAUTH_BASIC);
        curl_easy_setopt(h, CURLOPT_USERNAME, user);
        curl_easy_setopt(h, CURLOPT_PASSWORD, pass ? pass : "");
    }
    const char *insecure = getenv("MLFLOW_TRACKING_INSECURE_TLS");
    if (insecure && !strcasecmp(insecure, "true")) {
        curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    if (text) {
        curl_easy_setopt(h, CURLOPT_POST, 1L);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, text);
    }
    CURLcode rc = curl_easy_perform(h);
    long code = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
    free(text);
    if (reply) *reply = NULL;
    int out = 0;
    if (rc != CURLE_OK) {
        errf(err, errlen, "%s: %s", c->uri, curl_easy_strerror(rc));
        out = MLFLOW_RETRY;
    } else if (code < 200 || code >= 300) {
        cJSON *j = b.p ? cJSON_Parse(b.p) : NULL;
        const char *msg = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "message"));
        const char *ec = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "error_code"));
        errf(err, errlen, "%s%s: HTTP %ld%s%s%s%.300s", c->uri, path, code, ec ? " " : "",
             ec ? ec : "", msg || b.p ? ": " : "",
             msg   ? msg
             : b.p ? b.p
                   : "");
        out = code == 429 || code >= 500 ? MLFLOW_RETRY : MLFLOW_FAIL;
        if (reply && j)
            *reply = j; /* the caller may look at error_code */
        else
            cJSON_Delete(j);
    } else if (reply) {
        *reply = b.p ? cJSON_Parse(b.p) : cJSON_CreateObject();
        if (!*reply) {
            errf(err, errlen, "%s%s: the answer is not JSON", c->uri, path);
            out = MLFLOW_FAIL;
        }
    }
    free(b.p);
    return out;
}

static const char *error_code(const cJSON *reply) {
    return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(reply, "error_code"));
}

static int experiment_get(mlflow_client *c, const char *name, char *id, size_t n, char *err,
                          size_t errlen) {
    char *q = curl_easy_escape(c->curl, name, 0);
    if (!q) FATAL("curl_easy_escape: out of memory");
    char path[1400];
    snprintf(path, sizeof path, "/api/2.0/mlflow/experiments/get-by-name?experiment_name=%s", q);
    curl_free(q);
    cJSON *r = NULL;
    int rc = request(c, path, NULL, &r, err, errlen);
    if (rc == 0) {
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(r, "experiment");
        const char *eid =
            cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "experiment_id"));
        const char *stage =
            cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(e, "lifecycle_stage"));
        if (!eid) {
            errf(err, errlen, "%s: experiment '%s': no experiment_id in the answer", c->uri, name);
            rc = MLFLOW_FAIL;
        } else if (stage && !strcmp(stage, "deleted")) {
            errf(err, errlen,
                 "%s: experiment '%s' is deleted (restore it, or set MLFLOW_EXPERIMENT_NAME)",
                 c->uri, name);
            rc = MLFLOW_FAIL;
        } else
            snprintf(id, n, "%s", eid);
    } else if (rc == MLFLOW_FAIL && error_code(r) &&
               !strcmp(error_code(r), "RESOURCE_DOES_NOT_EXIST")) {
        rc = -1; /* absent: create it */
    }
    cJSON_Delete(r);
    return rc;
}

int mlflow_experiment_ensure(mlflow_client *c, const char *name, char *id, size_t n, char *err,
                             size_t errlen) {
    int rc = experiment_get(c, name, id, n, err, errlen);
    if (rc != -1) return rc;
    cJSON *body = cJSON_CreateObject(), *r = NULL;
    cJSON_AddStringToObject(body, "name", name);
    rc = request(c, "/api/2.0/mlflow/experiments/create", body, &r, err, errlen);
    cJSON_Delete(body);
    if (rc == 0) {
        const char *eid =
            cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(r, "experiment_id"));
        if (eid)
            snprintf(id, n, "%s", eid);
        else
            rc = MLFLOW_FAIL, errf(err, errlen, "%s: experiment create: no experiment_id", c->uri);
    } else if (rc == MLFLOW_FAIL && error_code(r) &&
               !strcmp(error_code(r), "RESOURCE_ALREADY_EXISTS")) {
        rc = experiment_get(c, name, id, n, err, errlen); /* created meanwhile by another run */
        if (rc == -1) rc = MLFLOW_RETRY;
    }
    cJSON_Delete(r);
    return rc;
}

static cJSON *kv_array(const mlflow_kv *kv, int n) {
    cJSON *a = cJSON_CreateArray();
    for (int i = 0; i < n; i++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "key", kv[i].key);
        cJSON_AddStringToObject(o, "value", kv[i].value);
        cJSON_AddItemToArray(a, o);
    }
    return a;
}

int mlflow_run_create(mlflow_client *c, const char *experiment_id, const char *run_name,
                      int64_t start_ms, const mlflow_kv *tags, int ntags, char *run_id, size_t n,
                      char *err, size_t errlen) {
    cJSON *body = cJSON_CreateObject(), *r = NULL;
    cJSON_AddStringToObject(body, "experiment_id", experiment_id);
    cJSON_AddStringToObject(body, "run_name", run_name);
    cJSON_AddNumberToObject(body, "start_time", (double)start_ms);
    cJSON_AddItemToObject(body, "tags", kv_array(tags, ntags));
    int rc = request(c, "/api/2.0/mlflow/runs/create", body, &r, err, errlen);
    cJSON_Delete(body);
    if (rc == 0) {
        const cJSON *info =
            cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(r, "run"), "info");
        const char *id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(info, "run_id"));
        if (id)
            snprintf(run_id, n, "%s", id);
        else
            rc = MLFLOW_FAIL, errf(err, errlen, "%s: run create: no run_id in the answer", c->uri);
    }
    cJSON_Delete(r);
    return rc;
}

int mlflow_run_find_by_tag(mlflow_client *c, const char *experiment_id, const char *key,
                           const char *value, char *run_id, size_t n, char *err, size_t errlen) {
    cJSON *body = cJSON_CreateObject(), *r = NULL;
    cJSON_AddItemToObject(body, "experiment_ids",
                          cJSON_CreateStringArray((const char *[]){experiment_id}, 1));
    char filter[512];
    snprintf(filter, sizeof filter, "tags.`%s` = '%s'", key, value);
    cJSON_AddStringToObject(body, "filter", filter);
    cJSON_AddNumberToObject(body, "max_results", 1);
    int rc = request(c, "/api/2.0/mlflow/runs/search", body, &r, err, errlen);
    cJSON_Delete(body);
    run_id[0] = 0;
    if (rc == 0) {
        const cJSON *runs = cJSON_GetObjectItemCaseSensitive(r, "runs");
        const cJSON *info = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(runs, 0), "info");
        const char *id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(info, "run_id"));
        if (id) snprintf(run_id, n, "%s", id);
    }
    cJSON_Delete(r);
    return rc;
}

int mlflow_log_batch(mlflow_client *c, const char *run_id, const mlflow_metric *m, int nm,
                     const mlflow_kv *params, int np, const mlflow_kv *tags, int nt, char *err,
                     size_t errlen) {
    cJSON *body = cJSON_CreateObject();
    cJSON_AddStringToObject(body, "run_id", run_id);
    cJSON *ms = cJSON_AddArrayToObject(body, "metrics");
    for (int i = 0; i < nm; i++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "key", m[i].key);
        /* JSON has no NaN: MLflow takes the strings "NaN" and "Infinity" for those */
        if (m[i].value != m[i].value)
            cJSON_AddStringToObject(o, "value", "NaN");
        else
            cJSON_AddNumberToObject(o, "value", m[i].value);
        cJSON_AddNumberToObject(o, "timestamp", (double)m[i].timestamp_ms);
        cJSON_AddNumberToObject(o, "step", (double)m[i].step);
        cJSON_AddItemToArray(ms, o);
    }
    cJSON_AddItemToObject(body, "params", kv_array(params, np));
    cJSON_AddItemToObject(body, "tags", kv_array(tags, nt));
    int rc = request(c, "/api/2.0/mlflow/runs/log-batch", body, NULL, err, errlen);
    cJSON_Delete(body);
    return rc;
}

int mlflow_run_update(mlflow_client *c, const char *run_id, const char *status, int64_t end_ms,
                      char *err, size_t errlen) {
    cJSON *body = cJSON_CreateObject();
    cJSON_AddStringToObject(body, "run_id", run_id);
    cJSON_AddStringToObject(body, "status", status);
    if (end_ms > 0) cJSON_AddNumberToObject(body, "end_time", (double)end_ms);
    int rc = request(c, "/api/2.0/mlflow/runs/update", body, NULL, err, errlen);
    cJSON_Delete(body);
    return rc;
}
