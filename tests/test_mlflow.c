/* The MLflow sink (coordinator/sink_mlflow.c) against a real MLflow tracking server: a 2-epoch
 * training run read back with the mlflow client; a server that cannot be reached is one warning
 * and training goes on; the metric-key rule. */
#include "coordinator/mlflow_client.h"
#include "pyenv.h"
#include "runs.h"
#include "testenv.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* A loopback port nobody listens on right now (the kernel's choice of a free one). */
static int free_port(void) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_geq(s, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(bind(s, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t n = sizeof a;
    cr_assert_eq(getsockname(s, (struct sockaddr *)&a, &n), 0);
    close(s);
    return ntohs(a.sin_port);
}

static int train_2_epochs(const char *dir, const char *uri) {
    return run_sh("timeout 300 \"$YOLO_COORD\" train data=%s/s.h5 model=yolov8n.yaml epochs=2 "
                  "imgsz=64 batch=8 workers=1 threads=1 loader_threads=1 plots=False project=%s/p "
                  "name=exp mlflow=%s > %s/log.txt 2>&1",
                  dir, dir, uri, dir);
}

Test(mlflow, metric_keys_as_ultralytics_sanitises_them) {
    char out[128];
    mlflow_sanitize_key("metrics/mAP50-95(B)", out, sizeof out);
    cr_assert_str_eq(out, "metrics/mAP50-95B");
    mlflow_sanitize_key("lr/pg0", out, sizeof out);
    cr_assert_str_eq(out, "lr/pg0");
    mlflow_sanitize_key("a,b;c", out, sizeof out);
    cr_assert_str_eq(out, "a_b_c");
}

Test(mlflow, an_unreachable_server_is_a_warning_and_training_goes_on, .timeout = 400) {
    char dir[256], uri[64], path[400];
    run_make_data(dir, sizeof dir, "yolo-mlflow-down", 16, 8);
    snprintf(uri, sizeof uri, "http://127.0.0.1:%d", free_port());
    cr_assert_eq(train_2_epochs(dir, uri), 0, "training must succeed; see %s/log.txt", dir);
    snprintf(path, sizeof path, "%s/log.txt", dir);
    /* The sink gives up after its retries (about 3.5 s): during training ("... mlflow is off for
     * the rest of this run") or, when training was quicker, at close; either way one warning. */
    cr_assert_eq(run_sh("test $(grep -c 'warning: mlflow: %s' %s) -eq 1", uri, path), 0,
                 "one warning naming the sink and the server; see %s", path);
    snprintf(path, sizeof path, "%s/p/exp/results.csv", dir);
    cr_assert(run_file_has(path, "\n2,"), "both epochs in results.csv");
    cr_assert_eq(run_sh("rm -rf %s", dir), 0);
}

Test(mlflow, refuses_a_file_store_uri) {
    char err[512];
    cr_assert_null(mlflow_client_new("./mlruns", 5, err, sizeof err));
    cr_assert(strstr(err, "http://"), "%s", err);
}

Test(mlflow, a_training_run_reads_back_with_the_mlflow_client, .timeout = 900) {
    char py[1100], reason[1400];
    if (!test_pyenv_python("mlflow", py, sizeof py, reason, sizeof reason))
        cr_skip_test("%s", reason);
    char dir[256], uri[64], sidf[400];
    run_make_data(dir, sizeof dir, "yolo-mlflow", 16, 8);
    int port = free_port();
    snprintf(uri, sizeof uri, "http://127.0.0.1:%d", port);
    snprintf(sidf, sizeof sidf, "%s/server.sid", dir);
    /* mlflow next to the venv's python; a temporary sqlite store and artifact folder */
    char bin[1100];
    snprintf(bin, sizeof bin, "%s", py);
    *strrchr(bin, '/') = 0;
    cr_assert_eq(run_sh("setsid sh -c 'echo $$ > %s; exec %s/mlflow server --host 127.0.0.1 "
                        "--port %d --workers 1 --backend-store-uri sqlite:///%s/mlflow.db "
                        "--artifacts-destination %s/artifacts' > %s/server.log 2>&1 &",
                        sidf, bin, port, dir, dir, dir),
                 0);
    cr_assert(run_wait_file(sidf, 30));
    usleep(100000);
    pid_t sid = (pid_t)run_read_rc(sidf);
    bool up = false;
    for (int i = 0; i < 240 && !up; i++) {
        up = run_sh("curl -sf %s/health > /dev/null 2>&1", uri) == 0;
        if (!up) sleep(1);
    }
    if (!up) run_kill_session(sid, 30);
    cr_assert(up, "mlflow server did not come up; see %s/server.log", dir);
    int rc = train_2_epochs(dir, uri);
    char path[400];
    snprintf(path, sizeof path, "%s/log.txt", dir);
    bool warned = run_file_has(path, "warning: mlflow");
    int check = rc == 0 && !warned
                    ? run_sh("%s %s %s '%s/p' exp %s/p/exp > %s/check.txt "
                             "2>&1",
                             py, repo_path("tests/py/mlflow_readback.py"), uri, dir, dir, dir)
                    : -1;
    run_kill_session(sid, 30);
    cr_assert_eq(rc, 0, "training failed; see %s", path);
    cr_assert(!warned, "the sink warned; see %s", path);
    snprintf(path, sizeof path, "%s/check.txt", dir);
    cr_assert_eq(check, 0, "read back differs; see %s", path);
    cr_assert(run_file_has(path, "OK "), "%s", path);
    cr_assert_eq(run_sh("rm -rf %s", dir), 0);
}
