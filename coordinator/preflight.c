#include "coordinator/preflight.h"

#include "common/fs_check.h"
#include "common/log.h"
#include "coordinator/launch.h"
#include "coordinator/model_source.h"
#include "dataio/pack_cache.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* The dataset: packed (a yaml) and opened, so its structure and labels are checked. */
static int check_data(train_args *a, bool quiet, dataset **ds, char *err, size_t errlen) {
    pack_cache_result pc;
    char h5[sizeof a->data];
    if (pack_cache_resolve(a->data, NULL, h5, sizeof h5, &pc, err, errlen) != 0) return -1;
    memcpy(a->data, h5, sizeof h5);
    if (pc == PACK_CACHE_REUSED && !quiet)
        log_info("data: using %s (packed earlier, source unchanged)", a->data);
    *ds = dataset_open(a->data, err, errlen);
    return *ds ? 0 : -1;
}

/* The train split against batch, fraction and workers. Like Ultralytics' loader (batch =
 * min(batch, len(dataset))), a batch larger than the split is lowered to fit, with a warning. */
static int check_split(train_args *a, const dataset *ds, int workers, bool quiet, char *err,
                       size_t errlen) {
    int n = dataset_split_size(ds, SPLIT_TRAIN);
    if (n == 0) return errf(err, errlen, "%s: the train split is empty", a->data);
    long used = train_args_train_images(a, n);
    if (used < workers)
        return errf(err, errlen,
                    "%s: %ld training image(s) (fraction=%g) cannot feed %d workers: use "
                    "workers<=%ld",
                    a->data, used, a->fraction, workers, used);
    if (a->batch > used) {
        long b = used - used % workers;
        if (!quiet)
            log_warn("batch=%ld is more than the %ld training images of %s: using batch=%ld",
                     a->batch, used, a->data, b);
        a->batch = b;
        long share = b / workers;
        if (a->micro_batch && share % a->micro_batch)
            return errf(err, errlen,
                        "micro_batch=%ld does not divide the per-worker batch %ld (batch lowered "
                        "to the %ld training images)",
                        a->micro_batch, share, used);
    }
    if (a->imgsz % 32) {
        long r = (a->imgsz + 31) / 32 * 32;
        if (!quiet)
            log_warn("imgsz=%ld must be a multiple of max stride 32, updating to %ld", a->imgsz, r);
        a->imgsz = r;
    }
    return 0;
}

/* The last line of text without its newline, and without our programs' "name: error: " prefix. */
static void last_error_line(char *text, char *out, size_t n) {
    size_t len = strlen(text);
    while (len && text[len - 1] == '\n') text[--len] = 0;
    char *line = strrchr(text, '\n');
    line = line ? line + 1 : text;
    char *p = strstr(line, ": error: ");
    if (p) line = p + 9;
    if (!strncmp(line, "info: ", 6)) line += 6;
    size_t k = strlen(line) < n ? strlen(line) : n - 1;
    memcpy(out, line, k);
    out[k] = 0;
}

/* The model, the device and memory: `worker info model=... nc=... imgsz=... batch=... workers=...
 * device=...`, the workers' own checks (a model yaml that builds; for a GPU device=, a build with
 * CUDA and a GPU for each worker; a batch that fits in host or GPU memory), output discarded unless
 * it fails. */
static int check_model_yaml(const train_args *a, const char *model, int nc, int workers, char *err,
                            size_t errlen) {
    char worker[4096];
    if (worker_binary(worker, sizeof worker, err, errlen) != 0) return -1;
    char argbuf[7][1100];
    snprintf(argbuf[0], sizeof argbuf[0], "model=%s", model);
    snprintf(argbuf[1], sizeof argbuf[1], "nc=%d", nc);
    snprintf(argbuf[2], sizeof argbuf[2], "imgsz=%ld", a->imgsz);
    snprintf(argbuf[3], sizeof argbuf[3], "batch=%ld", a->batch);
    snprintf(argbuf[4], sizeof argbuf[4], "workers=%d", workers);
    snprintf(argbuf[5], sizeof argbuf[5], "micro_batch=%ld", a->micro_batch);
    snprintf(argbuf[6], sizeof argbuf[6], "device=%s", a->device);
    char *av[] = {worker,    "info",    argbuf[0], argbuf[1], argbuf[2],
                  argbuf[3], argbuf[4], argbuf[5], argbuf[6], NULL};
    int pipefd[2];
    if (pipe(pipefd) != 0) return errf(err, errlen, "pipe: %s", strerror(errno));
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        close(pipefd[0]);
        close(pipefd[1]);
        return errf(err, errlen, "fork: %s", strerror(errno));
    }
    if (pid == 0) {
        if (dup2(pipefd[1], 2) < 0 || !freopen("/dev/null", "w", stdout)) _exit(127);
        close(pipefd[0]);
        close(pipefd[1]);
        execv(worker, av);
        _exit(127);
    }
    close(pipefd[1]);
    char out[8192];
    size_t len = 0;
    ssize_t got;
    char sink[1024];
    while ((got = read(pipefd[0], sink, sizeof sink)) != 0) {
        if (got < 0) {
            if (errno == EINTR) continue;
            break;
        }
        /* keep the tail: the verdict is the last line */
        if (len + (size_t)got >= sizeof out) {
            size_t drop = len + (size_t)got - (sizeof out - 1);
            memmove(out, out + (drop < len ? drop : len), len - (drop < len ? drop : len));
            len -= drop < len ? drop : len;
        }
        size_t keep = (size_t)got < sizeof out - 1 - len ? (size_t)got : sizeof out - 1 - len;
        memcpy(out + len, sink, keep);
        len += keep;
    }
    close(pipefd[0]);
    out[len] = 0;
    int st = 0;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR) return errf(err, errlen, "waitpid: %s", strerror(errno));
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0) return 0;
    char line[1024];
    last_error_line(out, line, sizeof line);
    if (WIFEXITED(st) && WEXITSTATUS(st) == 2 && line[0]) return errf(err, errlen, "%s", line);
    return errf(err, errlen, "model check (%s info %s) failed (%s %d): %s", worker, argbuf[0],
                WIFEXITED(st) ? "exit" : "signal", WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st),
                line[0] ? line : "no message");
}

/* A weights file or version (model=, or a resumed run's version) records its architecture:
 * `worker info` builds that yaml text, written to a temporary folder under the recorded name. */
static int check_model(const train_args *a, const char *model, int nc, int workers, char *err,
                       size_t errlen) {
    if (!model_source_is_weights(model))
        return check_model_yaml(a, model, nc, workers, err, errlen);
    char name[1024], dir[] = "/tmp/yolo-preflight-XXXXXX", path[1200];
    char *text = model_source_yaml(model, name, sizeof name, err, errlen);
    if (!text) return -1;
    if (!mkdtemp(dir)) {
        free(text);
        return errf(err, errlen, "mkdtemp %s: %s", dir, strerror(errno));
    }
    const char *base = strrchr(name, '/');
    snprintf(path, sizeof path, "%s/%s", dir, base ? base + 1 : name);
    FILE *f = fopen(path, "w");
    int rc = f && fputs(text, f) >= 0 ? 0 : -1;
    if (f && fclose(f) != 0) rc = -1;
    if (rc != 0)
        errf(err, errlen, "%s: %s", path, strerror(errno));
    else
        rc = check_model_yaml(a, path, nc, workers, err, errlen);
    free(text);
    if (f && unlink(path) != 0) log_warn("could not remove %s: %s", path, strerror(errno));
    if (rmdir(dir) != 0) log_warn("could not remove %s: %s", dir, strerror(errno));
    return rc;
}

/* project/name: creatable, or named in the message with what is in the way */
static int check_run_folder(const train_args *a, char *err, size_t errlen) {
    char run[sizeof a->project + sizeof a->name + 2], why[600];
    snprintf(run, sizeof run, "%s/%s", a->project, a->name);
    if (dir_creatable(run, why, sizeof why) == 0) return 0;
    return errf(err, errlen, "project=%s name=%s: %s", a->project, a->name, why);
}

int preflight_train(train_args *a, int workers, int flags, const char *model, dataset **ds,
                    char *err, size_t errlen) {
    bool quiet = flags & PREFLIGHT_QUIET;
    *ds = NULL;
    if (check_data(a, quiet, ds, err, errlen) != 0) return -1;
    int rc = check_split(a, *ds, workers, quiet, err, errlen);
    if (rc == 0 && !(flags & PREFLIGHT_RESUME)) rc = check_run_folder(a, err, errlen);
    if (rc == 0 && (flags & PREFLIGHT_MODEL))
        rc = check_model(a, model ? model : a->model, dataset_num_classes(*ds), workers, err,
                         errlen);
    if (rc) {
        dataset_close(*ds);
        *ds = NULL;
    }
    return rc;
}
