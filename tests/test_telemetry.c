/* Telemetry over ZeroMQ: control round trips, bad requests, events, CURVE, and the watch/ctl CLI.
 * The server runs in a thread of the test process (it polls like a training loop would). */
#include "coordinator/telemetry.h"

#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <dirent.h>
#include <grp.h>
#include <pwd.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "tests/testenv.h"

static void make_rundir(char *dir) {
    test_temp_dir(dir, 256, "tel");
}

/* Removes a run directory made by make_rundir (flat: files only). */
static void remove_rundir(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    char path[PATH_MAX];
    for (struct dirent *e; (e = readdir(d));) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        unlink(path);
    }
    closedir(d);
    rmdir(dir);
}

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

/* ---- a server thread that polls, and optionally publishes once somebody subscribed ---------- */

typedef struct server {
    telemetry *t;
    pthread_t th;
    atomic_bool quit;
    int publish_steps; /* > 0: after the first subscription, publish a scripted run */
    int poll_errors;
} server;

static void publish_run(telemetry *t, int nsteps) {
    const char *names[] = {"box", "cls", "dfl"};
    telemetry_worker_timing w[2] = {{1, 0.5, 0.05, 0.01, 0.001}, {2, 0.6, 0.04, 0.02, 0.002}};
    for (int i = 1; i <= nsteps; i++) {
        double losses[3] = {1.0 + i, 2.0, 3.0};
        telemetry_step s = {.epoch = 1 + (i - 1) / 3,
                            .epochs = (nsteps + 2) / 3,
                            .step = 1 + (i - 1) % 3,
                            .steps = 3,
                            .nloss = 3,
                            .loss_names = names,
                            .losses = losses,
                            .images_per_s = 100.0 + i,
                            .loader_stall_s = 0.001,
                            .compute_s = 0.5,
                            .comm_s = 0.05,
                            .comm_exposed_s = 0.01,
                            .lr = 0.01,
                            .eta_s = -1,
                            .nworkers = 2,
                            .workers = w};
        telemetry_publish_step(t, &s);
        if (i % 3 == 0) {
            const char *m[] = {"metrics/mAP50(B)", "metrics/mAP50-95(B)"};
            double v[] = {0.5, 0.25};
            telemetry_publish_epoch(t, i / 3, (nsteps + 2) / 3, 2, m, v);
            telemetry_publish_checkpoint(t, "v1", "weights/v1.h5", i / 3, 3);
        }
    }
    telemetry_publish_warning(t, "disk almost full");
    telemetry_publish_finished(t, true, "2 epochs done");
}

static void *server_main(void *arg) {
    server *s = arg;
    bool published = false;
    char err[256];
    while (!atomic_load(&s->quit)) {
        if (telemetry_poll(s->t, err, sizeof err) < 0) s->poll_errors++;
        if (s->publish_steps > 0 && !published && telemetry_subscribers(s->t) > 0) {
            publish_run(s->t, s->publish_steps);
            published = true;
        }
        sleep_ms(2);
    }
    return NULL;
}

static void server_start(server *s, telemetry *t, int publish_steps) {
    memset(s, 0, sizeof *s);
    s->t = t;
    s->publish_steps = publish_steps;
    cr_assert_eq(pthread_create(&s->th, NULL, server_main, s), 0);
}

static void server_stop(server *s) {
    atomic_store(&s->quit, true);
    pthread_join(s->th, NULL);
    cr_assert_eq(s->poll_errors, 0);
}

/* One request; returns the parsed reply (caller deletes), NULL on timeout. */
static cJSON *ask(telemetry_client *c, const char *req, size_t len, int timeout_ms, char *err,
                  size_t errlen) {
    char *r = telemetry_client_request(c, req, len, timeout_ms, err, errlen);
    if (!r) return NULL;
    cJSON *j = cJSON_Parse(r);
    cr_assert(j, "reply is JSON: %s", r);
    free(r);
    return j;
}

static bool reply_ok(const cJSON *j) {
    return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "ok"));
}

static cJSON *read_json(const char *dir, const char *name) {
    char path[PATH_MAX], err[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    char *text = telemetry_read_text(path, 1 << 16, NULL, err, sizeof err);
    cr_assert(text, "%s", err);
    cJSON *j = cJSON_Parse(text);
    free(text);
    cr_assert(j, "%s is JSON", path);
    return j;
}

static const char *jstr(const cJSON *o, const char *k) {
    return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, k));
}

/* ---- tests ------------------------------------------------------------------------------------
 */

Test(telemetry, control_round_trips_and_endpoints_file) {
    char dir[256], err[512], path[PATH_MAX];
    make_rundir(dir);
    telemetry *t = telemetry_open(dir, NULL, err, sizeof err);
    cr_assert(t, "%s", err);
    cr_assert_not(telemetry_uses_curve(t), "local binding needs no CURVE");
    cJSON *ep = read_json(dir, TELEMETRY_ENDPOINTS_FILE);
    cr_assert_eq(cJSON_GetObjectItemCaseSensitive(ep, "version")->valueint, 1);
    cr_assert_eq(cJSON_GetObjectItemCaseSensitive(ep, "pid")->valueint, (int)getpid());
    cr_assert(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(ep, "curve")));
    cr_assert_str_eq(jstr(ep, "pub"), telemetry_pub_endpoint(t));
    cr_assert_str_eq(jstr(ep, "ctl"), telemetry_ctl_endpoint(t));
    snprintf(path, sizeof path, "ipc://%s/.telemetry/telemetry-ctl.sock", dir);
    cr_assert_str_eq(jstr(ep, "ctl"), path,
                     "default binding is ipc in the run dir's private folder");
    cr_assert(!strncmp(jstr(ep, "pub"), "ipc://", 6));
    cJSON_Delete(ep);

    server s;
    server_start(&s, t, 0);
    telemetry_client *c = telemetry_client_open(dir, NULL, err, sizeof err);
    cr_assert(c, "%s", err);
    cJSON *r = ask(c, "{\"cmd\":\"status\"}", 16, 3000, err, sizeof err);
    cr_assert(r, "%s", err);
    cr_assert(reply_ok(r));
    cr_assert_str_eq(jstr(r, "state"), "starting");
    cr_assert(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(r, "save_pending")));
    cJSON_Delete(r);
    r = ask(c, "{\"cmd\":\"save\"}", 14, 3000, err, sizeof err);
    cr_assert(r && reply_ok(r) && !strcmp(jstr(r, "cmd"), "save"), "%s", err);
    cJSON_Delete(r);
    r = ask(c, "{\"cmd\":\"status\"}", 16, 3000, err, sizeof err);
    cr_assert(r && cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r, "save_pending")));
    cr_assert(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(r, "stop_requested")));
    cJSON_Delete(r);
    r = ask(c, "{\"cmd\":\"stop\"}", 14, 3000, err, sizeof err);
    cr_assert(r && reply_ok(r), "%s", err);
    cJSON_Delete(r);
    telemetry_client_close(c);
    server_stop(&s);

    cr_assert(telemetry_take_save(t), "save flag set by the request");
    cr_assert_not(telemetry_take_save(t), "save is taken once");
    cr_assert(telemetry_stop_requested(t));
    telemetry_close(t);
    snprintf(path, sizeof path, "%s/%s", dir, TELEMETRY_ENDPOINTS_FILE);
    cr_assert_neq(access(path, F_OK), 0, "endpoints.json withdrawn on close");
    snprintf(path, sizeof path, "%s/.telemetry", dir);
    cr_assert_neq(access(path, F_OK), 0, "socket folder removed on close");
    remove_rundir(dir);
}

Test(telemetry, bad_requests_get_errors_and_change_nothing) {
    char dir[256], err[512];
    make_rundir(dir);
    telemetry *t = telemetry_open(dir, NULL, err, sizeof err);
    cr_assert(t, "%s", err);
    server s;
    server_start(&s, t, 0);
    telemetry_client *c = telemetry_client_open(dir, NULL, err, sizeof err);
    cr_assert(c, "%s", err);
    /* Oversized but otherwise a valid "save": must be refused before it is parsed. */
    size_t big = TELEMETRY_MAX_REQUEST + 1000;
    char *huge = malloc(big + 1);
    int n = snprintf(huge, big, "{\"cmd\":\"save\",\"pad\":\"");
    memset(huge + n, 'x', big - (size_t)n - 2);
    memcpy(huge + big - 2, "\"}", 2);
    huge[big] = 0;
    cr_assert_not_null(cJSON_Parse(huge), "the oversized request is valid JSON");
    struct {
        const char *text;
        size_t len;
        const char *expect;
    } bad[] = {
        {"hello", 5, "not valid JSON"},    {"[1,2]", 5, "JSON object"},
        {"{\"cmd\":5}", 9, "JSON object"}, {"{\"cmd\":\"reboot\"}", 16, "unknown command 'reboot'"},
        {"", 0, "not valid JSON"},         {huge, big, "too large"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        cJSON *r = ask(c, bad[i].text, bad[i].len, 3000, err, sizeof err);
        cr_assert(r, "request %zu got a reply: %s", i, err);
        cr_assert_not(reply_ok(r), "request %zu refused", i);
        cr_assert(jstr(r, "error") && strstr(jstr(r, "error"), bad[i].expect), "%zu: %s", i,
                  jstr(r, "error"));
        cJSON_Delete(r);
    }
    free(huge);
    /* Multipart request, on a raw REQ socket. */
    void *ctx = zmq_ctx_new(), *req = zmq_socket(ctx, ZMQ_REQ);
    int to = 3000, zero = 0;
    zmq_setsockopt(req, ZMQ_RCVTIMEO, &to, sizeof to);
    zmq_setsockopt(req, ZMQ_LINGER, &zero, sizeof zero);
    cr_assert_eq(zmq_connect(req, telemetry_ctl_endpoint(t)), 0);
    zmq_send(req, "{\"cmd\":", 7, ZMQ_SNDMORE);
    zmq_send(req, "\"stop\"}", 7, 0);
    char buf[512];
    int got = zmq_recv(req, buf, sizeof buf - 1, 0);
    cr_assert(got > 0, "multipart request answered");
    buf[got] = 0;
    cr_assert(strstr(buf, "\"ok\":false") && strstr(buf, "single-part"), "%s", buf);
    zmq_close(req);
    zmq_ctx_term(ctx);

    cJSON *r = ask(c, "{\"cmd\":\"status\"}", 16, 3000, err, sizeof err);
    cr_assert(r && reply_ok(r), "server still serves after bad input: %s", err);
    cr_assert(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(r, "save_pending")));
    cr_assert(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(r, "stop_requested")));
    cJSON_Delete(r);
    telemetry_client_close(c);
    server_stop(&s);
    cr_assert_not(telemetry_take_save(t));
    cr_assert_not(telemetry_stop_requested(t));
    telemetry_close(t);
    remove_rundir(dir);
}

Test(telemetry, subscriber_receives_every_event_in_order) {
    char dir[256], err[512];
    make_rundir(dir);
    telemetry *t = telemetry_open(dir, NULL, err, sizeof err);
    cr_assert(t, "%s", err);
    telemetry_client *c = telemetry_client_open(dir, NULL, err, sizeof err);
    cr_assert(c, "%s", err);
    cr_assert_eq(telemetry_client_subscribe(c, err, sizeof err), 0, "%s", err);
    /* The server publishes only after it saw the subscription (XPUB), so nothing is lost. */
    server s;
    server_start(&s, t, 300);
    int steps = 0, epochs = 0, ckpts = 0, warnings = 0, finished = 0;
    long last_seq = 0;
    while (!finished) {
        char *ev = telemetry_client_next_event(c, 5000, err, sizeof err);
        cr_assert(ev, "event %ld arrived: %s", last_seq + 1, err);
        cJSON *e = cJSON_Parse(ev);
        cr_assert(e, "event is JSON: %s", ev);
        cr_assert(!strncmp(ev, "{\"event\":", 9), "kind comes first: %.40s", ev);
        long seq = (long)cJSON_GetObjectItemCaseSensitive(e, "seq")->valuedouble;
        cr_assert_eq(seq, last_seq + 1, "no gap in seq");
        last_seq = seq;
        const char *kind = jstr(e, "event");
        if (!strcmp(kind, "step")) {
            steps++;
            cJSON *losses = cJSON_GetObjectItemCaseSensitive(e, "losses");
            cr_assert_float_eq(cJSON_GetObjectItemCaseSensitive(losses, "box")->valuedouble,
                               1.0 + steps, 1e-12);
            cr_assert_float_eq(cJSON_GetObjectItemCaseSensitive(e, "images_per_s")->valuedouble,
                               100.0 + steps, 1e-9);
            cr_assert_eq(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(e, "workers")), 2);
            cr_assert(cJSON_GetObjectItemCaseSensitive(e, "comm_exposed_s"));
        } else if (!strcmp(kind, "epoch")) {
            epochs++;
            cJSON *m = cJSON_GetObjectItemCaseSensitive(e, "metrics");
            cr_assert_float_eq(
                cJSON_GetObjectItemCaseSensitive(m, "metrics/mAP50-95(B)")->valuedouble, 0.25,
                1e-12);
        } else if (!strcmp(kind, "checkpoint")) {
            ckpts++;
            cr_assert_str_eq(jstr(e, "version"), "v1");
        } else if (!strcmp(kind, "warning")) {
            warnings++;
        } else if (!strcmp(kind, "finished")) {
            finished++;
        } else {
            cr_assert_fail("unexpected event %s", kind);
        }
        cJSON_Delete(e);
        free(ev);
    }
    cr_assert_eq(steps, 300);
    cr_assert_eq(epochs, 100);
    cr_assert_eq(ckpts, 100);
    cr_assert_eq(warnings, 1);
    /* status reports the last step and the final state. */
    cJSON *r = ask(c, "{\"cmd\":\"status\"}", 16, 3000, err, sizeof err);
    cr_assert(r, "%s", err);
    cr_assert_str_eq(jstr(r, "state"), "finished");
    cJSON *ls = cJSON_GetObjectItemCaseSensitive(r, "last_step");
    cr_assert(ls && cJSON_GetObjectItemCaseSensitive(ls, "epoch")->valueint == 100);
    cr_assert_geq(cJSON_GetObjectItemCaseSensitive(r, "subscribers")->valueint, 1);
    cJSON_Delete(r);
    telemetry_client_close(c);
    server_stop(&s);
    telemetry_close(t);
    remove_rundir(dir);
}

Test(telemetry, curve_refuses_clients_without_the_key) {
    char dir[256], err[512], path[PATH_MAX];
    make_rundir(dir);
    telemetry_opts o = {.host = "127.0.0.1", .curve = true};
    telemetry *t = telemetry_open(dir, &o, err, sizeof err);
    cr_assert(t, "%s", err);
    cr_assert(telemetry_uses_curve(t));
    cJSON *ep = read_json(dir, TELEMETRY_ENDPOINTS_FILE);
    cr_assert(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(ep, "curve")));
    cr_assert(jstr(ep, "server_public_key") && strlen(jstr(ep, "server_public_key")) == 40);
    cr_assert(!strncmp(jstr(ep, "ctl"), "tcp://127.0.0.1:", 16), "%s", jstr(ep, "ctl"));
    cJSON_Delete(ep);
    const char *secret_files[] = {TELEMETRY_SERVER_KEY_FILE, TELEMETRY_CLIENT_KEY_FILE};
    for (int i = 0; i < 2; i++) {
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", dir, secret_files[i]);
        cr_assert_eq(stat(path, &st), 0, "%s exists", path);
        cr_assert_eq(st.st_mode & 0777, 0600, "%s is 0600", path);
    }
    server s;
    server_start(&s, t, 0);
    /* The run's client key works. */
    telemetry_client *good = telemetry_client_open(dir, NULL, err, sizeof err);
    cr_assert(good, "%s", err);
    cJSON *r = ask(good, "{\"cmd\":\"status\"}", 16, 3000, err, sizeof err);
    cr_assert(r && reply_ok(r), "authorized client answered: %s", err);
    cJSON_Delete(r);
    /* A client that knows the server's public key but has its own, unauthorized key pair. */
    char other[PATH_MAX];
    snprintf(other, sizeof other, "%s.otherkey", dir);
    cr_assert_eq(telemetry_keyfile_write(other, err, sizeof err), 0, "%s", err);
    telemetry_client *bad = telemetry_client_open(dir, other, err, sizeof err);
    cr_assert(bad, "%s", err);
    r = ask(bad, "{\"cmd\":\"stop\"}", 14, 700, err, sizeof err);
    cr_assert_null(r, "unauthorized client gets no reply");
    cr_assert(strstr(err, "no reply") && strstr(err, dir), "%s", err);
    telemetry_client_close(bad);
    unlink(other);
    /* A plain (no CURVE) client gets nothing either. */
    void *ctx = zmq_ctx_new(), *req = zmq_socket(ctx, ZMQ_REQ);
    int to = 500, zero = 0;
    zmq_setsockopt(req, ZMQ_RCVTIMEO, &to, sizeof to);
    zmq_setsockopt(req, ZMQ_LINGER, &zero, sizeof zero);
    cr_assert_eq(zmq_connect(req, telemetry_ctl_endpoint(t)), 0);
    zmq_send(req, "{\"cmd\":\"stop\"}", 14, ZMQ_DONTWAIT);
    char buf[256];
    cr_assert_lt(zmq_recv(req, buf, sizeof buf, 0), 0, "plain client gets no reply");
    zmq_close(req);
    zmq_ctx_term(ctx);
    /* A client without any key file is told why, before it tries. */
    snprintf(path, sizeof path, "%s/%s", dir, TELEMETRY_CLIENT_KEY_FILE);
    cr_assert_null(telemetry_client_open(dir, "/nonexistent/key", err, sizeof err));
    cr_assert(strstr(err, "CURVE"), "%s", err);
    /* The authorized client still works, and nothing was changed by the refused ones. */
    r = ask(good, "{\"cmd\":\"status\"}", 16, 3000, err, sizeof err);
    cr_assert(r && reply_ok(r), "%s", err);
    cr_assert(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(r, "stop_requested")));
    cJSON_Delete(r);
    telemetry_client_close(good);
    server_stop(&s);
    cr_assert_not(telemetry_stop_requested(t));
    telemetry_close(t);

    /* Any non-loopback binding turns CURVE on by itself. */
    telemetry_opts wide = {.host = "0.0.0.0"};
    t = telemetry_open(dir, &wide, err, sizeof err);
    cr_assert(t, "%s", err);
    cr_assert(telemetry_uses_curve(t));
    telemetry_close(t);
    remove_rundir(dir);
}

/* ---- the CLI, as a user runs it ----------------------------------------------------------------
 */

static int run_cli(const char *args, char *out, size_t outlen) {
    char cmd[2 * PATH_MAX];
    snprintf(cmd, sizeof cmd, "timeout 30 '%s' %s 2>&1", bin_path("coordinator"), args);
    FILE *p = popen(cmd, "r");
    cr_assert(p);
    size_t len = fread(out, 1, outlen - 1, p);
    out[len] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

Test(telemetry, cli_ctl_and_watch_live_run) {
    char dir[256], err[512], args[768], out[16384];
    make_rundir(dir);
    telemetry *t = telemetry_open(dir, NULL, err, sizeof err);
    cr_assert(t, "%s", err);
    server s;
    server_start(&s, t, 6);
    snprintf(args, sizeof args, "ctl %s status", dir);
    cr_assert_eq(run_cli(args, out, sizeof out), 0, "%s", out);
    cr_assert(strstr(out, "\"state\":") && strstr(out, "\"ok\":\ttrue"), "%s", out);
    snprintf(args, sizeof args, "ctl %s save", dir);
    cr_assert_eq(run_cli(args, out, sizeof out), 0, "%s", out);
    snprintf(args, sizeof args, "ctl %s reboot", dir);
    cr_assert_eq(run_cli(args, out, sizeof out), 2, "%s", out);
    snprintf(args, sizeof args, "watch %s", dir);
    cr_assert_eq(run_cli(args, out, sizeof out), 0, "%s", out);
    cr_assert(strstr(out, "watching"), "%s", out);
    cr_assert(strstr(out, "epoch 1/2 step 1/3  box 2.0000 cls 2.0000 dfl 3.0000  101.0 img/s"),
              "%s", out);
    cr_assert(strstr(out, "epoch 2/2 step 3/3"), "%s", out);
    cr_assert(strstr(out, "worker 2: compute 0.600s"), "%s", out);
    cr_assert(strstr(out, "epoch 1/2 done: metrics/mAP50(B) 0.5"), "%s", out);
    cr_assert(strstr(out, "checkpoint v1 written"), "%s", out);
    cr_assert(strstr(out, "warning: disk almost full"), "%s", out);
    cr_assert(strstr(out, "finished: 2 epochs done"), "%s", out);
    server_stop(&s);
    cr_assert(telemetry_take_save(t), "ctl save reached the run");
    telemetry_close(t);
    remove_rundir(dir);
}

Test(telemetry, cli_on_a_run_that_is_not_live) {
    char dir[256], args[768], out[16384], path[PATH_MAX];
    make_rundir(dir);
    /* No endpoints and no results. */
    snprintf(args, sizeof args, "watch %s", dir);
    cr_assert_eq(run_cli(args, out, sizeof out), 1, "%s", out);
    cr_assert(strstr(out, "not live"), "%s", out);
    snprintf(args, sizeof args, "ctl %s status", dir);
    cr_assert_eq(run_cli(args, out, sizeof out), 1, "%s", out);
    cr_assert(strstr(out, dir) && strstr(out, "not live"), "%s", out);
    /* A stale endpoints.json (the server is gone) and a results.csv. */
    snprintf(path, sizeof path, "%s/%s", dir, TELEMETRY_ENDPOINTS_FILE);
    FILE *f = fopen(path, "w");
    fprintf(f,
            "{\"version\":1,\"pid\":1,\"pub\":\"ipc://%s/gone-pub.sock\","
            "\"ctl\":\"ipc://%s/gone-ctl.sock\",\"curve\":false}",
            dir, dir);
    fclose(f);
    snprintf(path, sizeof path, "%s/results.csv", dir);
    f = fopen(path, "w");
    fprintf(f, "epoch,train/box_loss,metrics/mAP50(B),metrics/mAP50-95(B)\n"
               "1,1.5,0.30,0.20\n2,1.2,0.55,0.41\n3,1.1,0.52,0.39\n");
    fclose(f);
    snprintf(args, sizeof args, "ctl %s status timeout=0.3", dir);
    cr_assert_eq(run_cli(args, out, sizeof out), 1, "%s", out);
    cr_assert(strstr(out, dir) && strstr(out, "no reply"), "%s", out);
    snprintf(args, sizeof args, "watch %s timeout=0.3", dir);
    cr_assert_eq(run_cli(args, out, sizeof out), 0, "%s", out);
    cr_assert(strstr(out, "not live"), "%s", out);
    cr_assert(strstr(out, "3 epochs recorded"), "%s", out);
    cr_assert(strstr(out, "best metrics/mAP50-95(B): 0.41 at epoch 2"), "%s", out);
    cr_assert(strstr(out, "train/box_loss") && strstr(out, "1.1"), "%s", out);
    remove_rundir(dir);
}

Test(telemetry, refuses_a_run_dir_served_by_a_live_process) {
    char dir[256], err[512], path[PATH_MAX], host[256] = "";
    make_rundir(dir);
    gethostname(host, sizeof host - 1);
    snprintf(path, sizeof path, "%s/%s", dir, TELEMETRY_ENDPOINTS_FILE);
    pid_t dead = fork();
    if (dead == 0) _exit(0);
    waitpid(dead, NULL, 0);
    pid_t pids[2] = {getppid(), dead}; /* a live process, then one that is gone */
    for (int i = 0; i < 2; i++) {
        FILE *f = fopen(path, "w");
        cr_assert(f);
        fprintf(f, "{\"version\":1,\"pid\":%d,\"host\":\"%s\",\"pub\":\"x\",\"ctl\":\"y\"}",
                (int)pids[i], host);
        fclose(f);
        telemetry *t = telemetry_open(dir, NULL, err, sizeof err);
        if (i == 0) {
            cr_assert_null(t, "a live server's run dir is not taken over");
            cr_assert(strstr(err, "already served") && strstr(err, dir), "%s", err);
            cr_assert_eq(access(path, F_OK), 0, "the live server's endpoints.json is kept");
        } else {
            cr_assert(t, "a stale endpoints.json is replaced: %s", err);
            telemetry_close(t);
        }
    }
    remove_rundir(dir);
}

/* ---- access: only the run's owner controls a run -------------------------------------------- */

static mode_t mode_of(const char *path) {
    struct stat sb;
    cr_assert_eq(stat(path, &sb), 0, "%s exists", path);
    return sb.st_mode & 07777;
}

/* A run path too long for a Unix socket address (with umask 0, the most open there is) keeps its
 * sockets in a private folder elsewhere: never an unauthenticated TCP port. */
Test(telemetry, long_run_path_and_open_umask_stay_private) {
    char dir[256], deep[600], err[512], path[PATH_MAX];
    make_rundir(dir);
    snprintf(deep, sizeof deep,
             "%s/a-run-folder-whose-path-is-longer-than-a-unix-socket-address-"
             "can-hold-for-sure-xxxxxxxxxxxxxxxx",
             dir);
    cr_assert_eq(mkdir(deep, 0755), 0);
    mode_t old = umask(0);
    telemetry *t = telemetry_open(deep, NULL, err, sizeof err);
    umask(old);
    cr_assert(t, "%s", err);
    const char *ctl = telemetry_ctl_endpoint(t);
    cr_assert(!strncmp(ctl, "ipc://", 6), "ipc, not tcp: %s", ctl);
    cr_assert_not(telemetry_uses_curve(t));
    char sock[PATH_MAX], folder[PATH_MAX];
    snprintf(sock, sizeof sock, "%s", ctl + 6);
    snprintf(folder, sizeof folder, "%s", sock);
    *strrchr(folder, '/') = 0;
    cr_assert_eq(mode_of(folder), 0700, "socket folder %s is private", folder);
    cr_assert_eq(mode_of(sock) & 077, 0, "socket %s has no group/other bits", sock);
    snprintf(path, sizeof path, "%s/%s", deep, TELEMETRY_ENDPOINTS_FILE);
    cr_assert_eq(mode_of(path), 0600, "endpoints.json is 0600 under umask 0");
    telemetry_close(t);
    cr_assert_neq(access(folder, F_OK), 0, "the private folder goes with the run");
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", deep);
    cr_assert_eq(system(cmd), 0);
    remove_rundir(dir);
}

/* As uid `nobody` (a forked child, after setuid): `coordinator ctl <run> stop` fails, and a direct
 * REQ to the control endpoint gets no reply; the run never sees a stop. For the default ipc
 * binding (short and long run paths) and for TCP on loopback (CURVE). Everything above the run
 * folder is made traversable by others, so only the control channel's own protection is tested. */
static void other_user_cannot_stop(const char *rundir, const telemetry_opts *o) {
    struct passwd *pw = getpwnam("nobody");
    cr_assert(pw, "no user nobody");
    char err[512];
    mode_t old = umask(0);
    telemetry *t = telemetry_open(rundir, o, err, sizeof err);
    umask(old);
    cr_assert(t, "%s", err);
    char ctl[PATH_MAX + 16];
    snprintf(ctl, sizeof ctl, "%s", telemetry_ctl_endpoint(t));
    server s;
    server_start(&s, t, 0);
    int pipefd[2];
    cr_assert_eq(pipe(pipefd), 0);
    const char *coord = bin_path("coordinator");
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) { /* nobody: report "<ctl exit> <direct reply: 0/1>" on the pipe */
        close(pipefd[0]);
        if (setgroups(0, NULL) != 0 || setgid(pw->pw_gid) != 0 || setuid(pw->pw_uid) != 0)
            _exit(90);
        char cmd[2 * PATH_MAX];
        snprintf(cmd, sizeof cmd, "'%s' ctl '%s' stop timeout=1 >/dev/null 2>&1", coord, rundir);
        int st = system(cmd);
        int ctl_rc = WIFEXITED(st) ? WEXITSTATUS(st) : 100;
        void *ctx = zmq_ctx_new(), *req = zmq_socket(ctx, ZMQ_REQ);
        int zero = 0, ms = 1000;
        zmq_setsockopt(req, ZMQ_LINGER, &zero, sizeof zero);
        zmq_setsockopt(req, ZMQ_RCVTIMEO, &ms, sizeof ms);
        zmq_setsockopt(req, ZMQ_SNDTIMEO, &ms, sizeof ms);
        int replied = 0;
        char buf[256];
        if (zmq_connect(req, ctl) == 0 && zmq_send(req, "{\"cmd\":\"stop\"}", 14, 0) == 14)
            replied = zmq_recv(req, buf, sizeof buf, 0) >= 0;
        zmq_close(req);
        zmq_ctx_term(ctx);
        char msg[32];
        int n = snprintf(msg, sizeof msg, "%d %d", ctl_rc, replied);
        if (write(pipefd[1], msg, (size_t)n) != n) _exit(91);
        _exit(0);
    }
    close(pipefd[1]);
    char msg[32] = "";
    ssize_t n = read(pipefd[0], msg, sizeof msg - 1);
    close(pipefd[0]);
    int st = 0;
    waitpid(pid, &st, 0);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the nobody child ran (status %d)", st);
    cr_assert_gt(n, 0);
    msg[n] = 0;
    int ctl_rc = -1, replied = -1;
    cr_assert_eq(sscanf(msg, "%d %d", &ctl_rc, &replied), 2, "%s", msg);
    cr_assert_neq(ctl_rc, 0, "ctl stop as nobody fails (exit %d) on %s", ctl_rc, ctl);
    cr_assert_eq(replied, 0, "no reply to nobody's direct request on %s", ctl);
    sleep_ms(100); /* anything that did arrive would be served by now */
    server_stop(&s);
    cr_assert_not(telemetry_stop_requested(t), "the run saw no stop (%s)", ctl);
    telemetry_close(t);
}

Test(telemetry, another_user_cannot_stop_a_run, .timeout = 60) {
    if (geteuid() != 0) cr_skip_test("needs root to run a child as another uid (nobody)");
    char dir[256], run[300], deep[700];
    make_rundir(dir);
    cr_assert_eq(chmod(dir, 0755), 0); /* others may traverse up to the run folder */
    snprintf(run, sizeof run, "%s/run", dir);
    cr_assert_eq(mkdir(run, 0755), 0);
    other_user_cannot_stop(run, NULL);
    snprintf(deep, sizeof deep,
             "%s/a-run-folder-whose-path-is-longer-than-a-unix-socket-address-"
             "can-hold-for-sure-xxxxxxxxxxxxxxxx",
             dir);
    cr_assert_eq(mkdir(deep, 0755), 0);
    other_user_cannot_stop(deep, NULL);
    telemetry_opts tcp = {.host = "127.0.0.1"};
    other_user_cannot_stop(run, &tcp);
    char cmd[PATH_MAX];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}
