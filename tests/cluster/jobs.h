/* Training jobs for the cluster tests, started as a user starts them (bin/coordinator train, which
 * runs mpirun itself) in a session of their own, in the background; their processes found by
 * their parents and names; their versions checked with build/tests/ckpt-check. Every helper
 * asserts (Criterion) on its own failures. Runs are tiny (tests/fixtures/tiny-yolo26n.yaml, 64
 * synthetic images at imgsz 64, batch 8: 8 steps an epoch) and every wait is generous: the
 * machine is shared and nothing here asserts on speed. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* The training arguments every cluster test uses (plus project, name and its own). */
#define JOB_ARGS                                                                                   \
    "model=tests/fixtures/tiny-yolo26n.yaml imgsz=64 batch=8 threads=1 loader_threads=1 "          \
    "plots=False workers=2"

typedef struct job {
    char dir[128]; /* the test's folder: data s.h5, logs, runs */
    char name[64]; /* run folder dir/name */
    pid_t session; /* the session (setsid) every process of the job is in */
    char log[256]; /* the launcher's terminal output */
    char rc[256];  /* its exit status, once it has ended */
} job;

/* mkdtemp /tmp/<prefix>-XXXXXX with a 64-image synthetic dataset s.h5 (8 val images). */
void job_make_dir(char *dir, size_t n, const char *prefix);
/* Rank 1 stalls (once, after step 2 of epoch 1) until a stop signal reaches it or 10 s pass, and
 * says so (JOB_STALLED in the job's log): whatever is done to the job after that line surely lands
 * while steps remain, however fast the steps are (a few epochs of these jobs take under a second).
 * Pass JOB_STALL_ENV as job_start's env. */
#define JOB_STALLED "test: rank 1 stalls "
#define JOB_STALL_ENV "YOLO_TEST_STALL_RANK=1 YOLO_TEST_STALL_SECONDS=10"

/* Starts `env bin/coordinator train data=dir/s.h5 JOB_ARGS project=dir name=name args`. */
void job_start(job *j, const char *dir, const char *name, const char *env, const char *args);
/* The same in the foreground; returns its exit status. */
int job_run(const char *dir, const char *name, const char *env, const char *args);
/* Waits until the log shows `text`, or fails the test naming the log. */
void job_wait_text(const job *j, const char *text, double seconds);
/* Waits for the end: the exit status, or fails the test after `seconds`. */
int job_wait_end(const job *j, double seconds);

/* Processes: the launcher (bin/coordinator under the session's shell), mpirun, the coordinator
 * rank and the workers; 0 when not there. */
pid_t job_launcher(const job *j);
pid_t job_mpirun(const job *j);
pid_t job_coordinator(const job *j);
pid_t job_worker(const job *j, int k);         /* the k-th worker process found (0-based) */
pid_t job_worker_rank(const job *j, int rank); /* the worker of that world rank (0: none) */
/* Live processes of the job's session (the session's shell, which writes the status, excluded),
 * into out (at most max); returns how many. */
int job_processes(const job *j, pid_t *out, int max);
/* Asserts that within `seconds` no process of the job is left. */
void job_assert_no_process_left(const job *j, double seconds);

/* dir/name/weights/<file> (a version "v0003.h5", or "last.h5"). */
void job_version_path(char *out, size_t n, const char *dir, const char *name, const char *file);
/* Every v*.h5 of dir/name verifies (ckpt-check verify); returns how many there are. */
int job_verify_versions(const char *dir, const char *name);
/* The two versions hold the same tensors, bit for bit (ckpt-check same). */
void job_assert_same_weights(const char *a, const char *b);
/* The newest version's number (0: none). */
int job_newest_version(const char *dir, const char *name);
/* No endpoints.json and no *.sock file left in the run folder. */
void job_assert_endpoints_removed(const char *dir, const char *name);
/* After a job ended: no process of it left within `seconds`, its endpoints removed, every
 * version it wrote verifies; returns how many versions there are. */
int job_assert_ended_clean(const job *j, double seconds);
/* `bin/coordinator watch` of the running job in the background (its PUB socket), into
 * dir/name.watch; returns once it is subscribed. */
void job_watch_start(const job *j);
/* Waits for that watch to end: its exit status; out: the file with what it printed. */
int job_watch_end(const job *j, double seconds, char *out, size_t n);
